//! Finding what labs, tests and the bench left behind, by prefix, never by
//! state file alone: a run killed with SIGKILL leaves namespaces, processes,
//! pins and run/state directories but may never have written its state file.
//!
//! Names the project uses (so they can be recognised without a state file):
//! - a lab `L`: namespaces `L-n<i>` (nodes), `L-ul` (underlay), `L-ext`,
//!   `L-<pod>`; pins, run and state dirs `L-n<i>`; operator logs
//!   `/run/seta/L-op<i>.log`; etcd data `/run/seta/labs/L-etcd`; agents run
//!   with `--node L-n<i>`, operators with `--id L-op<i>`.
//! - test labs are named `t<digits><tag>`; the BPF packet tests pin under
//!   `/sys/fs/bpf/seta/t<digits>-<tag>`; test etcds keep their data in
//!   `$TMPDIR/seta-etcd-*`.
//! - the bench uses the lab `sbench` and namespaces `sbench-*`.
use crate::*;
use std::collections::BTreeSet;

/// Which leftovers to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// everything any lab, test or bench run left on this machine
    All,
    /// only what test runs leave (test labs, BPF test pins, test etcds)
    Tests,
}

/// Test labs are `t<digits><tag>` (see [`TestLab`]).
pub fn is_test_lab(name: &str) -> bool {
    name.strip_prefix('t')
        .is_some_and(|r| r.chars().next().is_some_and(|c| c.is_ascii_digit()))
}

/// The lab a project name belongs to: `L-n3` → `L`, `L-ul`, `L-ext`,
/// `L-op1.log`, `L-etcd`, `L-relay`, `L.json` → `L`.
pub fn lab_of(name: &str) -> Option<&str> {
    if let Some(l) = name.strip_suffix(".json") {
        return Some(l);
    }
    let (lab, rest) = name.rsplit_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let ok = match rest {
        "ul" | "ext" | "etcd" | "etcd.log" | "relay" | "relay.log" | "conf" => true,
        r => r.strip_prefix('n').is_some_and(digits) || r.strip_prefix("op").and_then(|r| r.strip_suffix(".log")).is_some_and(digits),
    };
    (ok && validate_lab_name(lab).is_ok()).then_some(lab)
}

/// BPF packet tests pin as `t<digits>-<tag>` (no agent, no lab).
fn is_test_pin(name: &str) -> bool {
    name.split_once('-')
        .is_some_and(|(head, _)| is_test_lab(head) && head[1..].chars().all(|c| c.is_ascii_digit()))
}

fn dir_names(dir: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// The value after `flag` in a process's argv.
fn arg_after<'a>(argv: &[&'a [u8]], flag: &[u8]) -> Option<&'a str> {
    argv.windows(2).find(|w| w[0] == flag).and_then(|w| std::str::from_utf8(w[1]).ok())
}

fn cmdlines() -> Vec<(u32, Vec<Vec<u8>>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if agent_alive(pid) {
                out.push((pid, cmd.split(|b| *b == 0).map(<[u8]>::to_vec).collect()));
            }
        }
    }
    out
}

/// Every lab with something left on this machine (state file, namespace,
/// process, pins, run or state directory), in `scope`.
pub fn find_labs(scope: Scope) -> BTreeSet<String> {
    let mut labs = BTreeSet::new();
    let mut add = |n: &str| {
        if validate_lab_name(n).is_ok() {
            labs.insert(n.to_string());
        }
    };
    for n in list_labs() {
        add(&n);
    }
    let cg = crate::cgroups::cgroup_root().map(|p| p.display().to_string()).unwrap_or_default();
    for dir in ["/run/netns", "/run/seta", "/var/lib/seta", "/sys/fs/bpf/seta", LABS_DIR, &cg] {
        for n in dir_names(dir) {
            if let Some(l) = lab_of(&n) {
                add(l);
            }
        }
    }
    for (_, argv) in cmdlines() {
        let argv: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
        let Some(prog) = argv.first() else { continue };
        let l = if prog.ends_with(b"seta-agent") {
            arg_after(&argv, b"--node").and_then(lab_of)
        } else if prog.ends_with(b"seta-operator") {
            arg_after(&argv, b"--id").and_then(|id| lab_of(id).or_else(|| id.rsplit_once("-op").map(|(l, _)| l)))
        } else if prog.ends_with(b"seta-relay") {
            // --listen-address unix://LABS_DIR/L-relay/relay.sock
            argv.iter()
                .filter_map(|a| std::str::from_utf8(a).ok())
                .find_map(|a| a.strip_prefix("unix://")?.strip_prefix(LABS_DIR))
                .and_then(|d| d.trim_start_matches('/').split('/').next())
                .and_then(lab_of)
        } else if prog.ends_with(b"etcd") {
            arg_after(&argv, b"--data-dir")
                .and_then(|d| d.strip_prefix(LABS_DIR))
                .and_then(|d| d.trim_start_matches('/').split('/').next())
                .and_then(lab_of)
        } else {
            None
        };
        if let Some(l) = l {
            add(l);
        }
    }
    if scope == Scope::Tests {
        labs.retain(|l| is_test_lab(l));
    }
    labs
}

/// Kill every process inside network namespace `ns` (by pid), then delete it.
pub fn remove_netns(ns: &str, done: &mut Vec<String>) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).is_ok() {
                done.push(format!("killed pid {pid} in {ns}"));
            }
        }
    }
    if run_ip(&["netns", "del", ns]).is_ok() {
        done.push(format!("deleted netns {ns}"));
    }
}

/// Test etcds (`$TMPDIR/seta-etcd-*`): their processes and data.
fn remove_test_etcds(done: &mut Vec<String>) {
    let tmp = std::env::temp_dir().join("seta-etcd-");
    let tmp = tmp.to_string_lossy().into_owned();
    for (pid, argv) in cmdlines() {
        let argv: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
        if argv.first().is_some_and(|p| p.ends_with(b"etcd")) && arg_after(&argv, b"--data-dir").is_some_and(|d| d.starts_with(&tmp)) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            done.push(format!("killed test etcd pid {pid}"));
        }
    }
    for n in dir_names(&std::env::temp_dir().to_string_lossy()) {
        if n.starts_with("seta-etcd-") && std::fs::remove_dir_all(std::env::temp_dir().join(&n)).is_ok() {
            done.push(format!("removed {}", std::env::temp_dir().join(&n).display()));
        }
    }
}

/// Images the image test builds (`localhost/seta-test-<pid>`), and their
/// build directories, left by a killed run. Nothing when podman is absent.
fn remove_test_images(done: &mut Vec<String>) {
    use crate::wait::RunWithin;
    let listed = std::process::Command::new("podman")
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .output_within(std::time::Duration::from_secs(30));
    for image in listed
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
        .lines()
    {
        if image.starts_with("localhost/seta-test-") {
            let rm = std::process::Command::new("podman")
                .args(["rmi", "-f", image])
                .output_within(std::time::Duration::from_secs(60));
            if rm.is_ok_and(|o| o.status.success()) {
                done.push(format!("removed image {image}"));
            }
        }
    }
    for n in dir_names(&std::env::temp_dir().to_string_lossy()) {
        if n.starts_with("seta-image-test-") && std::fs::remove_dir_all(std::env::temp_dir().join(&n)).is_ok() {
            done.push(format!("removed {}", std::env::temp_dir().join(&n).display()));
        }
    }
}

/// Whether a seta-agent runs in this process's (the root) network namespace.
fn agent_in_root_netns() -> bool {
    let me = std::fs::read_link("/proc/self/ns/net").ok();
    cmdlines().into_iter().any(|(pid, argv)| {
        argv.first().is_some_and(|p| p.ends_with(b"seta-agent")) && std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() == me
    })
}

/// Devices with the project's names in the root namespace. Labs and tests
/// never create any; a device there is a leftover unless an agent runs in
/// the root namespace (a real node), which is left alone.
fn remove_root_devices(done: &mut Vec<String>) {
    if agent_in_root_netns() {
        return;
    }
    for name in dir_names("/sys/class/net") {
        let ours = matches!(name.as_str(), "seta_host" | "seta_net" | "seta_vxlan")
            || name
                .strip_prefix("lxc")
                .is_some_and(|h| h.len() == 12 && h.chars().all(|c| c.is_ascii_hexdigit()));
        if ours && run_ip(&["link", "del", &name]).is_ok() {
            done.push(format!("deleted root-namespace device {name}"));
        }
    }
}

/// Remove every leftover in `scope`: each lab found by prefix (its
/// processes, namespaces and the processes in them, pins, run and state
/// dirs), BPF test pins, test etcds, and (scope All) the bench's namespaces
/// and root-namespace devices with the project's names.
pub fn remove(scope: Scope) -> Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    for lab in find_labs(scope) {
        out.push((lab.clone(), Lab::down(&lab)?));
    }
    let mut done = Vec::new();
    for n in dir_names("/sys/fs/bpf/seta") {
        if is_test_pin(&n) && std::fs::remove_dir_all(Path::new("/sys/fs/bpf/seta").join(&n)).is_ok() {
            done.push(format!("removed /sys/fs/bpf/seta/{n}"));
        }
    }
    let _ = std::fs::remove_dir("/sys/fs/bpf/seta");
    remove_test_etcds(&mut done);
    remove_test_images(&mut done);
    if scope == Scope::All {
        for ns in dir_names("/run/netns") {
            if ns.starts_with("sbench-") {
                remove_netns(&ns, &mut done);
            }
        }
        if std::fs::remove_dir_all("/run/sbench-ipam").is_ok() {
            done.push("removed /run/sbench-ipam".into());
        }
        remove_root_devices(&mut done);
    }
    if !done.is_empty() {
        out.push(("(no lab)".into(), done));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_lead_back_to_their_lab() {
        for (name, lab) in [
            ("demo-n1", Some("demo")),
            ("t123ab-n12", Some("t123ab")),
            ("my-lab-ul", Some("my-lab")),
            ("x-ext", Some("x")),
            ("x-op2.log", Some("x")),
            ("x-etcd", Some("x")),
            ("x-etcd.log", Some("x")),
            ("x-conf", Some("x")),
            ("x.json", Some("x")),
            ("x-pod1", None),
            ("x-n", None),
            ("labs", None),
            ("x-nfoo", None),
        ] {
            assert_eq!(lab_of(name), lab, "{name}");
        }
        assert!(is_test_lab("t4242cni") && is_test_lab("t1") && !is_test_lab("test") && !is_test_lab("demo"));
        assert!(is_test_pin("t4242-ct") && !is_test_pin("t4242cni-n1") && !is_test_pin("demo-n1"));
    }
}
