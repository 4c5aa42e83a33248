//! Helpers shared by the end-to-end test crates: the built binaries and the
//! `seta` CLI as a JSON source.
#![allow(dead_code)]
use seta_lab::wait::RunWithin;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The directory with the workspace's binaries (all must be built).
pub fn bin_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_BIN_EXE_seta")).parent().unwrap().to_path_buf();
    for b in ["seta-agent", "seta-cni", "seta-operator"] {
        assert!(
            d.join(b).exists(),
            "{} missing: run `cargo build --workspace` (make test does)",
            d.join(b).display()
        );
    }
    d
}

/// `seta --node NODE -o json ARGS...`, which must succeed.
pub fn seta(node: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["--node", node, "-o", "json"])
        .args(args)
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    assert!(
        out.status.success(),
        "seta {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `seta --node NODE ARGS...` as a user reads it, which must succeed.
pub fn seta_text(node: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["--node", node])
        .args(args)
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    assert!(out.status.success(), "seta {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Packets a node's datapath counted for (reason, direction).
pub fn metric(node: &str, reason: &str, dir: &str) -> u64 {
    seta(node, &["bpf", "metrics", "list"])
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["reason"] == reason && m["direction"] == dir)
        .map(|m| m["packets"].as_u64().unwrap())
        .unwrap_or(0)
}

pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
