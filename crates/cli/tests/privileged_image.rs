//! `make image`: the root filesystem scripts/image-rootfs assembles from this
//! build's binaries (no base image from a registry) and deploy/image's
//! Containerfile, built by podman: every binary starts in the image, and the
//! image holds nothing else (no shell).
mod common;
use common::*;
use seta_lab::wait::RunWithin;
use std::process::Command;
use std::time::Duration;

/// `podman run` of `entry` in `image` with `args` (no network, the
/// ulimits runc may set here): (exit success, stdout).
fn run_in(image: &str, entry: &str, args: &[&str], env: &[&str], stdin: &str) -> (bool, String) {
    let mut c = Command::new("podman");
    c.args(["--runtime", "runc", "run", "-i", "--rm", "--network", "none"]).args([
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ]);
    for e in env {
        c.args(["-e", e]);
    }
    c.args(["--entrypoint", entry, image]).args(args);
    let out = c.output_with_input_within(stdin.as_bytes(), Duration::from_secs(60)).unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn privileged_image_runs_every_binary_without_a_base_image() {
    if !seta_lab::privileged("privileged_image_runs_every_binary_without_a_base_image") {
        return;
    }
    let out = std::env::temp_dir().join(format!("seta-image-test-{}", std::process::id()));
    let image = format!("localhost/seta-test-{}:latest", std::process::id());
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/image-rootfs");
    let r = Command::new(&script)
        .arg(bin_dir())
        .arg(&out)
        .output_within(Duration::from_secs(120))
        .unwrap();
    assert!(r.status.success(), "image-rootfs: {}", String::from_utf8_lossy(&r.stderr));
    let b = Command::new("podman")
        .args(["build", "-q", "-t", &image])
        .arg(&out)
        .output_within(Duration::from_secs(300))
        .unwrap();
    let result = std::panic::catch_unwind(|| {
        assert!(b.status.success(), "podman build: {}", String::from_utf8_lossy(&b.stderr));
        for bin in ["seta-agent", "seta-operator", "seta-relay", "seta"] {
            let (ok, text) = run_in(&image, &format!("/usr/bin/{bin}"), &["--version"], &[], "");
            assert!(ok && text.trim() == format!("{bin} {}", env!("CARGO_PKG_VERSION")), "{bin}: {text}");
        }
        // the CNI plugin answers a runtime's VERSION call
        let (ok, text) = run_in(
            &image,
            "/usr/bin/seta-cni",
            &[],
            &["CNI_COMMAND=VERSION"],
            r#"{"cniVersion":"1.0.0"}"#,
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert!(
            ok && v["supportedVersions"].as_array().is_some_and(|a| a.contains(&"1.1.0".into())),
            "{text}"
        );
        // and nothing else is in it
        let (ok, _) = run_in(&image, "/bin/sh", &["-c", "true"], &[], "");
        assert!(!ok, "no shell in the image");
    });
    let _ = Command::new("podman")
        .args(["rmi", "-f", &image])
        .output_within(Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(&out);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
