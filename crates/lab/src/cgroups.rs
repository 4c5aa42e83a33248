//! Socket-LB in the lab: each node gets a cgroup of its own under the lab's
//! directory of the cgroup v2 mount (`<cgroup2>/seta/<node>`); its agent
//! attaches there (`--cgroup-root`), and the processes the lab runs in the
//! node's namespace or its pods' namespaces join it. Nothing attaches to the
//! machine's root cgroup. Teardown ends the processes in a node's cgroup
//! (all were started by the lab) and removes it.
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lab's directory in the cgroup v2 mount (this machine mounts cgroup2
/// beside v1: found in /proc/self/mounts).
pub fn cgroup_root() -> Option<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        })
        .map(|m| m.join("seta"))
}

/// A node's cgroup (not created).
pub fn node_cgroup(node: &str) -> Result<PathBuf> {
    Ok(cgroup_root().context("no cgroup2 mount for socket-LB")?.join(node))
}

/// Create a node's cgroup.
pub fn create_node_cgroup(node: &str) -> Result<PathBuf> {
    let dir = node_cgroup(node)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("create cgroup {}", dir.display()))?;
    Ok(dir)
}

/// End the processes in a node's cgroup (by pid) and remove it.
pub fn remove_node_cgroup(dir: &Path, done: &mut Vec<String>) {
    let pids = || -> Vec<i32> {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    for pid in pids() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        done.push(format!("killed pid {pid} in {}", dir.display()));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if std::fs::remove_dir(dir).is_ok() {
        done.push(format!("removed cgroup {}", dir.display()));
    }
}

/// Make `cmd`'s process join the cgroup `dir` before it runs (its children
/// stay there).
pub fn spawn_in(cmd: &mut std::process::Command, dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .with_context(|| format!("open {}/cgroup.procs", dir.display()))?;
    // SAFETY: between fork and exec only write(2) on an fd opened before
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::write(procs.as_raw_fd(), b"0".as_ptr() as *const libc::c_void, 1);
            if r != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}
