//! CNI contract tests against a real agent in a lab node: every command ×
//! version, error codes for bad input, DEL edge cases, ADD rollback, and
//! chaining with Debian's reference portmap plugin.
use serde_json::{json, Value};
use seta_lab::wait::RunWithin;
use seta_lab::{privileged, spawn_in_netns, Lab, TestLab};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn bin_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_BIN_EXE_seta-cni")).parent().unwrap().to_path_buf();
    assert!(
        d.join("seta-agent").exists(),
        "seta-agent missing in {}: run `cargo build --workspace`",
        d.display()
    );
    d
}

struct Ctx {
    t: TestLab,
}

impl Ctx {
    async fn new(tag: &str) -> Self {
        Self {
            t: TestLab::up(tag, 1, 0, &bin_dir()).await.unwrap(),
        }
    }
    fn lab(&self) -> &Lab {
        &self.t.lab
    }
    fn node(&self) -> String {
        self.lab().nodes[0].name.clone()
    }
    fn netns(&self, name: &str) -> String {
        let ns = format!("{}-{name}", self.lab().name);
        let out = Command::new("ip")
            .args(["netns", "add", &ns])
            .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
            .unwrap();
        assert!(out.status.success(), "ip netns add {ns}");
        ns
    }
    fn conf(&self, version: &str) -> Value {
        let mut c = self.lab().cni_conf(&self.node(), 0).unwrap();
        c["cniVersion"] = json!(version);
        c
    }
    fn env(cmd: &str, cid: &str, ns: &str) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", cmd.to_string()),
            ("CNI_CONTAINERID", cid.to_string()),
            ("CNI_NETNS", format!("/run/netns/{ns}")),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=x;K8S_POD_NAMESPACE=default".to_string()),
        ]
    }
    fn cni(&self, env: &[(&'static str, String)], conf: &Value) -> (bool, Value) {
        self.lab().invoke_cni(&self.node(), env, conf).unwrap()
    }
    fn agent(&self, path: &str) -> Value {
        let out = Command::new(bin_dir().join("seta"))
            .args(["--node", &self.node(), "-o", "json"])
            .args(path.split(' '))
            .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
            .unwrap();
        assert!(out.status.success(), "seta {path}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
    fn allocations(&self) -> usize {
        self.agent("status")["ipam"]["allocated"].as_u64().unwrap() as usize
    }
    fn lxc_devices(&self) -> Vec<String> {
        let ns = self.lab().nodes[0].netns.clone();
        let out = Command::new("ip")
            .args(["-n", &ns, "-o", "link", "show"])
            .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap().to_string())
            .filter(|n| n.starts_with("lxc") || n.starts_with("tmp"))
            .collect()
    }
    fn pod_has_link(&self, ns: &str, ifname: &str) -> bool {
        Command::new("ip")
            .args(["-n", ns, "link", "show", ifname])
            .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
            .unwrap()
            .status
            .success()
    }
    fn pod_pings_router(&self, ns: &str) -> bool {
        let router = seta_core::ipam::Pool::new(self.lab().nodes[0].pod_cidr).unwrap().router();
        Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", &router.to_string()])
            .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
            .unwrap()
            .status
            .success()
    }
}

fn assert_code(r: (bool, Value), code: u64, needle: &str) {
    assert!(!r.0, "expected failure with code {code}, got success {}", r.1);
    assert_eq!(r.1["code"], code, "error {}", r.1);
    let msg = r.1["msg"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "message {msg:?} should mention {needle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_cni_every_command_and_version() {
    if !privileged("privileged_cni_every_command_and_version") {
        return;
    }
    let c = Ctx::new("ver").await;
    for (i, v) in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"].iter().enumerate() {
        let ns = c.netns(&format!("v{i}"));
        let cid = format!("cid-version-{i}");
        let conf = c.conf(v);

        let (ok, out) = c.cni(&[("CNI_COMMAND", "VERSION".into())], &conf);
        assert!(ok);
        assert_eq!(out["cniVersion"], *v);
        assert_eq!(out["supportedVersions"], json!(["0.3.1", "0.4.0", "1.0.0", "1.1.0"]));

        let (ok, res) = c.cni(&Ctx::env("ADD", &cid, &ns), &conf);
        assert!(ok, "ADD {v}: {res}");
        assert_eq!(res["cniVersion"], *v, "result is in the version the runtime asked for");
        assert_eq!(
            res["ips"][0].get("version").is_some(),
            *v < "1.0.0",
            "ips[].version only before 1.0.0: {res}"
        );
        assert_eq!(res["interfaces"][1]["sandbox"], format!("/run/netns/{ns}"));
        assert!(res["interfaces"][0]["name"].as_str().unwrap().starts_with("lxc"));
        assert!(c.pod_pings_router(&ns), "ADD {v} wired a working pod");
        let ep = c.agent(&format!("endpoint get container-id:{cid}"));
        assert_eq!(ep["state"], "ready");

        // a second ADD of the same attachment fails and leaves the first
        // exactly as it was (interface, address, endpoint, programs)
        let (devs, allocs, progs) = (c.lxc_devices(), c.allocations(), c.agent("bpf prog list"));
        assert_code(c.cni(&Ctx::env("ADD", &cid, &ns), &conf), 4, "already exists");
        // ... also from another netns: the container is attached already
        let ns2 = c.netns(&format!("v{i}b"));
        assert_code(c.cni(&Ctx::env("ADD", &cid, &ns2), &conf), 4, "attached already");
        assert!(!c.pod_has_link(&ns2, "eth0"), "the refused ADD created nothing in its netns");
        assert_eq!(c.agent(&format!("endpoint get container-id:{cid}")), ep, "{v}: endpoint untouched");
        assert_eq!(c.lxc_devices(), devs, "{v}: host interfaces untouched");
        assert_eq!(c.allocations(), allocs, "{v}: no address taken or released");
        assert_eq!(c.agent("bpf prog list"), progs, "{v}: programs untouched");
        assert!(c.pod_pings_router(&ns), "{v}: the first attachment still works");

        let mut with_prev = conf.clone();
        with_prev["prevResult"] = res.clone();
        let check = c.cni(&Ctx::env("CHECK", &cid, &ns), &with_prev);
        if *v == "0.3.1" {
            assert_code(check, 1, "CHECK needs cniVersion 0.4.0");
        } else {
            assert!(check.0, "CHECK {v}: {}", check.1);
        }

        let status = c.cni(&[("CNI_COMMAND", "STATUS".into())], &conf);
        let mut gc_conf = conf.clone();
        gc_conf["cni.dev/valid-attachments"] = json!([{"containerID": cid, "ifname": "eth0"}]);
        let gc = c.cni(&[("CNI_COMMAND", "GC".into())], &gc_conf);
        if *v == "1.1.0" {
            assert!(status.0, "STATUS: {}", status.1);
            assert!(gc.0, "GC: {}", gc.1);
            assert_eq!(
                c.agent("endpoint list").as_array().unwrap().len(),
                1,
                "GC kept the valid attachment"
            );
        } else {
            assert_code(status, 1, "STATUS needs cniVersion 1.1.0");
            assert_code(gc, 1, "GC needs cniVersion 1.1.0");
        }

        let (ok, out) = c.cni(&Ctx::env("DEL", &cid, &ns), &with_prev);
        assert!(ok, "DEL {v}: {out}");
        assert_eq!(out, Value::Null, "DEL prints nothing");
        let (ok, _) = c.cni(&Ctx::env("DEL", &cid, &ns), &with_prev);
        assert!(ok, "a second DEL succeeds");
        assert_eq!(c.allocations(), 0);
        assert!(c.lxc_devices().is_empty(), "{:?}", c.lxc_devices());
    }

    // GC removes endpoints that are no valid attachment any more
    let ns = c.netns("gc");
    assert!(c.cni(&Ctx::env("ADD", "stale-one", &ns), &c.conf("1.1.0")).0);
    let mut gc_conf = c.conf("1.1.0");
    gc_conf["cni.dev/valid-attachments"] = json!([]);
    assert!(c.cni(&[("CNI_COMMAND", "GC".into())], &gc_conf).0);
    assert!(c.agent("endpoint list").as_array().unwrap().is_empty());
    assert_eq!(c.allocations(), 0);
    assert!(c.lxc_devices().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_cni_bad_input_gets_spec_error_codes_and_changes_nothing() {
    if !privileged("privileged_cni_bad_input_gets_spec_error_codes_and_changes_nothing") {
        return;
    }
    let c = Ctx::new("bad").await;
    let ns = c.netns("b");
    let conf = c.conf("1.0.0");
    let good = Ctx::env("ADD", "cid-bad", &ns);
    let without = |k: &str| good.iter().filter(|(n, _)| *n != k).cloned().collect::<Vec<_>>();
    let with = |k: &'static str, v: &str| {
        let mut e = without(k);
        e.push((k, v.to_string()));
        e
    };

    assert_code(c.cni(&without("CNI_COMMAND"), &conf), 4, "CNI_COMMAND");
    assert_code(c.cni(&with("CNI_COMMAND", "FROB"), &conf), 4, "FROB");
    assert_code(c.cni(&without("CNI_IFNAME"), &conf), 4, "CNI_IFNAME");
    assert_code(c.cni(&without("CNI_NETNS"), &conf), 4, "CNI_NETNS");
    assert_code(c.cni(&with("CNI_IFNAME", "eth/0"), &conf), 4, "CNI_IFNAME");
    assert_code(c.cni(&with("CNI_ARGS", "FOO=bar"), &conf), 4, "FOO");
    // labels Kubernetes would reject
    assert_code(c.cni(&with("CNI_ARGS", "SETA_LABELS=app=web,tier=-x"), &conf), 4, "SETA_LABELS[1]");
    assert_code(c.cni(&with("CNI_ARGS", "SETA_LABELS=bad key=x"), &conf), 4, "SETA_LABELS[0]");
    assert_code(
        c.cni(&with("CNI_ARGS", "K8S_POD_NAMESPACE=Not_A_Namespace"), &conf),
        4,
        "K8S_POD_NAMESPACE",
    );
    assert_code(c.cni(&with("CNI_NETNS", "/run/netns/does-not-exist"), &conf), 3, "does-not-exist");
    let mut v = conf.clone();
    v["cniVersion"] = json!("0.2.0");
    assert_code(c.cni(&good, &v), 1, "0.2.0");
    let mut v = conf.clone();
    v.as_object_mut().unwrap().remove("name");
    assert_code(c.cni(&good, &v), 7, "\"name\"");
    let mut v = conf.clone();
    v["agent-socket"] = json!("relative/agent.sock");
    assert_code(c.cni(&good, &v), 7, "agent-socket");
    let mut v = conf.clone();
    v["frobnicate"] = json!(true);
    assert_code(c.cni(&good, &v), 2, "frobnicate");
    assert_code(c.cni(&good, &json!("not an object")), 6, "JSON object");
    // non-JSON stdin: invoke directly
    let mut cmd = Command::new(bin_dir().join("seta-cni"));
    cmd.envs(good.iter().map(|(k, v)| (*k, v.clone())));
    let out = cmd.output_with_input_within(b"{not json", seta_lab::wait::PROGRAM_TIMEOUT).unwrap();
    assert!(!out.status.success());
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["code"], 6);
    // agent unreachable -> try again later (11)
    let mut v = conf.clone();
    v["agent-socket"] = json!("/run/seta/nowhere/agent.sock");
    assert_code(c.cni(&good, &v), 11, "/run/seta/nowhere/agent.sock");

    assert_eq!(c.allocations(), 0, "no address leaked");
    assert!(c.lxc_devices().is_empty(), "no interface leaked: {:?}", c.lxc_devices());
    assert!(c.agent("endpoint list").as_array().unwrap().is_empty());
    // and the same netns still takes a good ADD
    assert!(c.cni(&good, &conf).0);
    assert!(c.pod_pings_router(&ns));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_cni_add_rolls_back_after_injected_failures() {
    if !privileged("privileged_cni_add_rolls_back_after_injected_failures") {
        return;
    }
    let c = Ctx::new("rb").await;
    let ns = c.netns("r");
    let conf = c.conf("1.0.0");
    for step in ["veth", "netns", "endpoint"] {
        let mut env = Ctx::env("ADD", "cid-rollback", &ns);
        env.push(("SETA_CNI_INJECT_FAILURE", step.into()));
        assert_code(c.cni(&env, &conf), 5, &format!("injected failure after {step}"));
        assert_eq!(c.allocations(), 0, "address released after failure at {step}");
        assert!(
            c.lxc_devices().is_empty(),
            "veth removed after failure at {step}: {:?}",
            c.lxc_devices()
        );
        assert!(
            c.agent("endpoint list").as_array().unwrap().is_empty(),
            "no endpoint after failure at {step}"
        );
        let pins: Vec<String> =
            std::fs::read_dir(seta_core::names::pin_dir(Path::new("/sys/fs/bpf"), &c.node(), seta_abi::ABI_VERSION).join("links"))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into())
                .collect();
        assert!(
            pins.contains(&"seta_host_egress".to_string()) && !pins.iter().any(|p| p.starts_with("lxc")),
            "no endpoint link pins after failure at {step}: {pins:?}"
        );
        let eth0 = spawn_in_netns(&ns, || nix::net::if_::if_nametoindex("eth0").is_ok())
            .join()
            .unwrap();
        assert!(!eth0, "no eth0 left in the pod after failure at {step}");
    }
    assert!(
        c.cni(&Ctx::env("ADD", "cid-rollback", &ns), &conf).0,
        "a clean ADD works afterwards"
    );
    assert!(c.pod_pings_router(&ns));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_cni_del_is_idempotent_survives_missing_netns_and_agent_down() {
    if !privileged("privileged_cni_del_is_idempotent_survives_missing_netns_and_agent_down") {
        return;
    }
    let mut c = Ctx::new("dl").await;
    let conf = c.conf("1.0.0");

    // netns already gone
    let ns = c.netns("gone");
    assert!(c.cni(&Ctx::env("ADD", "cid-gone", &ns), &conf).0);
    Command::new("ip")
        .args(["netns", "del", &ns])
        .status_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    let (ok, out) = c.cni(&Ctx::env("DEL", "cid-gone", &ns), &conf);
    assert!(ok, "DEL with the netns gone: {out}");
    assert_eq!(c.allocations(), 0);
    assert!(c.lxc_devices().is_empty());
    assert!(c.cni(&Ctx::env("DEL", "cid-gone", &ns), &conf).0, "DEL twice");
    let mut no_netns = Ctx::env("DEL", "cid-gone", &ns);
    no_netns.retain(|(k, _)| *k != "CNI_NETNS");
    assert!(c.cni(&no_netns, &conf).0, "DEL without CNI_NETNS");

    // agent down: DEL is queued, the agent finishes it on start
    let ns = c.netns("q");
    assert!(c.cni(&Ctx::env("ADD", "cid-queued", &ns), &conf).0);
    let node = c.node();
    c.t.lab.signal_agent(&node, nix::sys::signal::Signal::SIGTERM).unwrap();
    let (ok, out) = c.cni(&Ctx::env("DEL", "cid-queued", &ns), &conf);
    assert!(ok, "DEL with the agent down succeeds: {out}");
    assert!(c.lxc_devices().is_empty(), "interface removed even with the agent down");
    let queue = Path::new(conf["delete-queue-dir"].as_str().unwrap()).to_path_buf();
    assert_eq!(std::fs::read_dir(&queue).unwrap().count(), 1, "DEL queued in {}", queue.display());
    c.t.lab.start_agent(&node).await.unwrap();
    assert!(
        c.agent("endpoint list").as_array().unwrap().is_empty(),
        "queued DEL finished on start"
    );
    assert_eq!(c.allocations(), 0, "queued DEL released the address");
    assert_eq!(std::fs::read_dir(&queue).map(|r| r.count()).unwrap_or(0), 0, "queue drained");
    let eps = c.agent("bpf endpoint list");
    assert_eq!(eps.as_array().unwrap().len(), 1, "only the router entry is left: {eps}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_cni_chains_in_front_of_portmap() {
    if !privileged("privileged_cni_chains_in_front_of_portmap") {
        return;
    }
    let portmap = Path::new("/usr/lib/cni/portmap");
    assert!(
        portmap.exists(),
        "Debian's containernetworking-plugins must be installed (make test installs it)"
    );
    let c = Ctx::new("pm").await;
    let ns = c.netns("web");
    let conf = c.conf("1.0.0");
    let (ok, res) = c.cni(&Ctx::env("ADD", "cid-web", &ns), &conf);
    assert!(ok, "{res}");
    let pm_conf = json!({
        "cniVersion": "1.0.0", "name": conf["name"], "type": "portmap",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
        "prevResult": res,
    });
    let (ok, out) = c
        .lab()
        .invoke_plugin(&c.node(), portmap, &Ctx::env("ADD", "cid-web", &ns), &pm_conf)
        .unwrap();
    assert!(ok, "portmap ADD: {out}");
    assert_eq!(out["ips"], res["ips"], "portmap passed seta's result through");

    // node:8080 -> pod:80 through the DNAT portmap installed and seta's datapath
    let pod_ip: std::net::Ipv4Addr = res["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let listener = spawn_in_netns(&ns, move || TcpListener::bind(SocketAddr::new(pod_ip.into(), 80)).unwrap())
        .join()
        .unwrap();
    let srv = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"served by the pod").unwrap();
    });
    let router = seta_core::ipam::Pool::new(c.lab().nodes[0].pod_cidr).unwrap().router();
    let got = spawn_in_netns(&c.lab().nodes[0].netns, move || {
        let mut s = TcpStream::connect_timeout(&SocketAddr::new(router.into(), 8080), Duration::from_secs(3)).unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        b
    })
    .join()
    .unwrap();
    srv.join().unwrap();
    assert_eq!(got, "served by the pod");

    let (ok, out) = c
        .lab()
        .invoke_plugin(&c.node(), portmap, &Ctx::env("DEL", "cid-web", &ns), &pm_conf)
        .unwrap();
    assert!(ok, "portmap DEL: {out}");
    assert!(c.cni(&Ctx::env("DEL", "cid-web", &ns), &conf).0);
    assert_eq!(c.allocations(), 0);
}

/// A real runtime drives the plugin: Podman 4.3 with its CNI backend (VERSION,
/// ADD with `IgnoreUnknown=1;K8S_POD_NAME=…` CNI_ARGS, DEL on --rm), run inside
/// the lab node's network namespace so nothing touches the root namespace.
/// What a podman test needs: podman, runc and busybox present, a busybox
/// image imported, and a containers.conf that uses the node's CNI config.
struct Podman {
    node_ns: String,
    router: std::net::Ipv4Addr,
    work: PathBuf,
    image: String,
    conf: PathBuf,
}

impl Podman {
    /// `podman run --rm` on the node with seta's network, `args` before the
    /// image (e.g. `-p`), `script` by sh in the container. nsenter --net
    /// keeps the host's mount namespace (cgroups), unlike `ip netns exec`.
    fn run(&self, args: &[&str], script: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.node_ns))
            .args(["podman", "--runtime", "runc", "run", "--rm"])
            .args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"])
            .args(["--network", "seta"])
            .args(args)
            .args([self.image.as_str(), "sh", "-c", script])
            .env("CONTAINERS_CONF", &self.conf);
        c
    }

    /// The image and the work dir.
    fn remove(&self) {
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.image])
            .output_within(seta_lab::wait::PROGRAM_TIMEOUT);
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn podman_setup(c: &Ctx) -> Podman {
    for tool in ["podman", "runc", "busybox"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
            .unwrap()
            .status
            .success();
        assert!(found, "{tool} is required (make test installs podman, runc, busybox-static)");
    }
    let node_ns = c.lab().nodes[0].netns.clone();
    let router = seta_core::ipam::Pool::new(c.lab().nodes[0].pod_cidr).unwrap().router();
    let work = std::env::temp_dir().join(format!("{}-podman", c.lab().name));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("root/bin")).unwrap();
    std::fs::copy(
        Command::new("sh")
            .args(["-c", "command -v busybox"])
            .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
            .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_string())
            .unwrap(),
        work.join("root/bin/busybox"),
    )
    .unwrap();
    for app in ["sh", "ip", "ping", "nc"] {
        std::os::unix::fs::symlink("busybox", work.join("root/bin").join(app)).unwrap();
    }
    let image = format!("localhost/{}-busybox:latest", c.lab().name);
    let tar = Command::new("tar")
        .arg("-C")
        .arg(work.join("root"))
        .args(["-cf"])
        .arg(work.join("root.tar"))
        .arg(".")
        .status_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    assert!(tar.success());
    let imported = Command::new("podman")
        .args(["import"])
        .arg(work.join("root.tar"))
        .arg(&image)
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    assert!(
        imported.status.success(),
        "podman import: {}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let conf = work.join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\nnetwork_config_dir = \"{}\"\n[engine]\ncgroup_manager = \"cgroupfs\"\n",
            bin_dir().display(),
            c.lab().nodes[0].cni_conf_dir.display()
        ),
    )
    .unwrap();
    Podman {
        node_ns,
        router,
        work,
        image,
        conf,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_cni_driven_by_podman() {
    if !privileged("privileged_cni_driven_by_podman") {
        return;
    }
    let c = Ctx::new("pdm").await;
    let p = podman_setup(&c);
    let out = p
        .run(&[], &format!("ip -4 addr show eth0 && ping -c 2 -W 2 {}", p.router))
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    p.remove();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "podman run: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("inet 10.201.1."), "the container got a pod address from seta: {text}");
    assert!(
        text.contains("2 packets received"),
        "the container reached the node through seta: {text}"
    );
    // --rm made podman call DEL: nothing is left behind
    assert!(c.agent("endpoint list").as_array().unwrap().is_empty());
    assert_eq!(c.allocations(), 0);
    assert!(c.lxc_devices().is_empty(), "{:?}", c.lxc_devices());
}

/// `podman run -p 18080:8080` on seta's network: the runtime hands the
/// mapping to seta-cni (portMappings capability) and the datapath serves it
/// (no iptables, no portmap): a pod connecting to the node's address on
/// 18080 reaches the container's 8080; the mapping goes with the container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_cni_podman_host_port_in_ebpf() {
    if !privileged("privileged_cni_podman_host_port_in_ebpf") {
        return;
    }
    let mut c = Ctx::new("php").await;
    let node = c.node();
    c.t.lab.pod_add("client", &node, "default", &[], &[]).await.unwrap();
    let client_ns = c.lab().pod("client").unwrap().netns.clone();
    let p = podman_setup(&c);
    let addr = SocketAddr::new(p.router.into(), 18080);
    // the container answers one connection on 8080, then exits (--rm: DEL)
    let mut child = p.run(&["-p", "18080:8080"], "echo hostport | nc -l -p 8080");
    let run = std::thread::spawn(move || child.output_within(seta_lab::wait::PROGRAM_TIMEOUT).unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let mut got = String::new();
    while std::time::Instant::now() < deadline && !run.is_finished() {
        got = spawn_in_netns(&client_ns, move || {
            let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
                return String::new();
            };
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .join()
        .unwrap();
        if !got.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = run.join().unwrap();
    p.remove();
    assert_eq!(
        got.trim(),
        "hostport",
        "the pod reached the container through hostPort 18080; podman: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // the container is gone (--rm made podman call DEL): so is its hostPort
    let left: Vec<Value> = c.agent("service list").as_array().unwrap().clone();
    assert!(left.iter().all(|e| e["type"] != "HostPort"), "{left:?}");
    assert_eq!(c.agent("endpoint list").as_array().unwrap().len(), 1, "only the client pod");
}
