//! Leftovers are found by prefix: `seta lab up` killed with SIGKILL halfway
//! (its state file gone too) leaves namespaces, agents, etcd, operators,
//! pins and run/state directories; `seta lab down --all` removes every one.
//! (Its own binary, run alone: `down --all` takes down every lab.)
mod common;
use common::*;
use seta_lab::wait::{poll, Deadline, RunWithin, PROGRAM_TIMEOUT};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Live (non-zombie) processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit(')').next().and_then(|r| r.split_whitespace().next()) == Some("Z"))
            .unwrap_or(true);
        if pid != me && !zombie && cmd.contains(needle) {
            out.push((pid, cmd));
        }
    }
    out
}

/// Entries of `dir` that start with `prefix`.
fn entries(dir: &str, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .filter(|n| n.starts_with(prefix))
                .map(|n| format!("{dir}/{n}"))
                .collect()
        })
        .unwrap_or_default()
}

fn leftovers(lab: &str) -> Vec<String> {
    let prefix = format!("{lab}-");
    let mut v = vec![];
    for dir in ["/run/netns", "/sys/fs/bpf/seta", "/run/seta", "/var/lib/seta"] {
        v.extend(entries(dir, &prefix));
    }
    v.extend(entries("/run/seta/labs", lab));
    v.extend(
        processes_mentioning(&prefix)
            .into_iter()
            .map(|(pid, cmd)| format!("pid {pid}: {cmd}")),
    );
    v
}

#[test]
fn privileged_cleanup_lab_down_all_finds_a_killed_labs_leftovers_by_prefix() {
    if !seta_lab::privileged("privileged_cleanup") {
        return;
    }
    let _ = bin_dir();
    let lab = format!("t{}kill", std::process::id() % 100000);
    let _ = seta_lab::Lab::down(&lab);
    let mut up = Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["lab", "up", "--lab", &lab, "--nodes", "2", "--pods", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // whatever happens below, this lab goes at the end
    struct Down(String);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = seta_lab::Lab::down(&self.0);
        }
    }
    let _down = Down(lab.clone());
    // midway: the first node's agent is ready (after etcd and the
    // operators), the second node is being built, the pods are to come
    let agent1 = format!("--node {lab}-n1");
    let n2 = format!("/run/netns/{lab}-n2");
    let d = Deadline::new(format!("{n2} to appear (node 1 ready)"), Duration::from_secs(60));
    let got = poll(&d, Duration::from_millis(5), || {
        if let Ok(Some(st)) = up.try_wait() {
            return Ok(Err(format!("seta lab up ended early: {st}")));
        }
        if Path::new(&n2).exists() {
            Ok(Ok(()))
        } else {
            Err(format!("leftovers so far: {:?}", leftovers(&lab)))
        }
    });
    let killed = up.kill();
    let _ = up.wait();
    got.unwrap().unwrap();
    killed.unwrap();
    // the state file may or may not have been written: take it away, so only prefixes can find the rest
    let _ = std::fs::remove_file(format!("/run/seta/labs/{lab}.json"));
    let before = leftovers(&lab);
    for want in [
        format!("/run/netns/{lab}-n1"),
        format!("/run/netns/{lab}-ul"),
        format!("/run/seta/{lab}-n1"),
        format!("/var/lib/seta/{lab}-n1"),
        format!("/sys/fs/bpf/seta/{lab}-n1"),
    ] {
        assert!(before.contains(&want), "the killed lab left {want}: {before:#?}");
    }
    for what in [agent1.as_str(), "seta-operator", "etcd"] {
        assert!(
            before.iter().any(|l| l.starts_with("pid ") && l.contains(what)),
            "a process {what:?} of the killed lab is still running: {before:#?}"
        );
    }
    assert!(!Path::new(&format!("/run/seta/labs/{lab}.json")).exists());

    let out = Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["lab", "down", "--all"])
        .output_within(PROGRAM_TIMEOUT)
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "seta lab down --all: {report}");
    assert!(report.contains(&format!("==> {lab}: ")), "reports the lab it found: {report}");
    let d = Deadline::new(format!("every leftover of {lab} to be gone"), Duration::from_secs(10));
    poll(&d, Duration::from_millis(50), || {
        let left = leftovers(&lab);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:#?}"))
        }
    })
    .unwrap();

    // and a second pass finds nothing of it
    let out = Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["lab", "down", "--all"])
        .output_within(PROGRAM_TIMEOUT)
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !report.contains(&lab), "{report}");
}
