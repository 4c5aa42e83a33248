//! End-to-end tests in a lab with real traffic through the eBPF datapath.
mod common;
use common::bin_dir;
use seta_lab::wait::RunWithin;
use seta_lab::{privileged, spawn_in_netns, Lab, TestLab};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

fn seta(_lab: &Lab, node: &str, args: &[&str]) -> serde_json::Value {
    common::seta(node, args)
}

fn metric(_lab: &Lab, node: &str, reason: &str, dir: &str) -> u64 {
    common::metric(node, reason, dir)
}

fn ping(lab: &Lab, pod: &str, dst: Ipv4Addr, count: u32, interval: &str) -> (u32, u32) {
    let out = lab
        .pod_exec(
            pod,
            &[
                "ping",
                "-n",
                "-q",
                "-c",
                &count.to_string(),
                "-i",
                interval,
                "-W",
                "1",
                &dst.to_string(),
            ]
            .map(String::from),
        )
        .unwrap()
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {text}"));
    let nums: Vec<u32> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    (nums[0], nums[1])
}

fn ip_forwarded(ns: &str) -> u64 {
    spawn_in_netns(ns, || {
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
        let mut lines = snmp.lines().filter(|l| l.starts_with("Ip:"));
        let (h, v) = (lines.next().unwrap(), lines.next().unwrap());
        let i = h.split_whitespace().position(|x| x == "ForwDatagrams").unwrap();
        v.split_whitespace().nth(i).unwrap().parse().unwrap()
    })
    .join()
    .unwrap()
}

/// TCP echo of `n` bytes from netns `client` to a server in netns `server` at `addr`.
fn tcp_roundtrip(server_ns: &str, client_ns: &str, addr: SocketAddr, n: usize) -> usize {
    let listener = spawn_in_netns(server_ns, move || TcpListener::bind(addr).unwrap()).join().unwrap();
    let srv = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        loop {
            let k = s.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            s.write_all(&buf[..k]).unwrap();
            total += k;
        }
        total
    });
    let got = spawn_in_netns(client_ns, move || {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let mut c2 = c.try_clone().unwrap();
        let w = std::thread::spawn(move || {
            c2.write_all(&data).unwrap();
            c2.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        w.join().unwrap();
        assert!(back.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8), "echoed bytes differ");
        back.len()
    })
    .join()
    .unwrap();
    assert_eq!(srv.join().unwrap(), n);
    got
}

fn udp_roundtrip(server_ns: &str, client_ns: &str, addr: SocketAddr) -> Vec<u8> {
    let sock = spawn_in_netns(server_ns, move || UdpSocket::bind(addr).unwrap()).join().unwrap();
    let srv = std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1500];
        let (k, from) = sock.recv_from(&mut buf).unwrap();
        sock.send_to(&buf[..k], from).unwrap();
    });
    let got = spawn_in_netns(client_ns, move || {
        let c = UdpSocket::bind("0.0.0.0:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(b"seta-udp-probe", addr).unwrap();
        let mut buf = [0u8; 1500];
        let (k, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(from, addr, "reply comes from the server address");
        buf[..k].to_vec()
    })
    .join()
    .unwrap();
    srv.join().unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_e2e_pod_to_pod_and_node_traffic() {
    if !privileged("privileged_e2e_pod_to_pod_and_node_traffic") {
        return;
    }
    let t = TestLab::up("traf", 1, 3, &bin_dir()).await.unwrap();
    let lab = &t.lab;
    let node = &lab.nodes[0];
    let (p1, p2) = (lab.pod("pod1").unwrap().clone(), lab.pod("pod2").unwrap().clone());
    let router = seta_core::ipam::Pool::new(node.pod_cidr).unwrap().router();
    let fwd_before = ip_forwarded(&node.netns);
    let egress_before = metric(lab, &node.name, "Forwarded", "EGRESS");

    // ICMP pod->pod, pod->node, node->pod
    assert_eq!(ping(lab, "pod1", p2.ip, 3, "0.2"), (3, 3));
    assert_eq!(ping(lab, "pod2", router, 3, "0.2"), (3, 3));
    let out = lab
        .node_exec(&node.name, &["ping", "-c", "2", "-W", "1", &p1.ip.to_string()].map(String::from))
        .unwrap()
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    assert!(out.status.success(), "node -> pod ping: {}", String::from_utf8_lossy(&out.stdout));

    // TCP and UDP pod<->pod
    assert_eq!(
        tcp_roundtrip(&p2.netns, &p1.netns, SocketAddr::new(p2.ip.into(), 8080), 1 << 20),
        1 << 20
    );
    assert_eq!(
        udp_roundtrip(&p2.netns, &p1.netns, SocketAddr::new(p2.ip.into(), 5353)),
        b"seta-udp-probe"
    );
    // pod -> node (server in the node's namespace on the router IP) and node -> pod
    assert_eq!(
        tcp_roundtrip(&node.netns, &p1.netns, SocketAddr::new(router.into(), 9090), 65536),
        65536
    );
    assert_eq!(
        udp_roundtrip(&node.netns, &p2.netns, SocketAddr::new(router.into(), 5354)),
        b"seta-udp-probe"
    );
    assert_eq!(
        tcp_roundtrip(&p1.netns, &node.netns, SocketAddr::new(p1.ip.into(), 7070), 65536),
        65536
    );
    assert_eq!(
        udp_roundtrip(&p1.netns, &node.netns, SocketAddr::new(p1.ip.into(), 5355)),
        b"seta-udp-probe"
    );

    // Same-node pod<->pod never crossed the host stack: nothing was IP-forwarded in the node.
    assert_eq!(
        ip_forwarded(&node.netns),
        fwd_before,
        "pod-to-pod must bypass the node's IP stack (bpf_redirect_peer)"
    );
    assert!(
        metric(lab, &node.name, "Forwarded", "EGRESS") > egress_before + 100,
        "datapath counted the forwarded packets"
    );

    // A drop carries Cilium's reason: IPv6 is not enabled, so it is dropped as "Unsupported L3 protocol" (139).
    let before = metric(lab, &node.name, "Unsupported L3 protocol", "EGRESS");
    let _ = lab
        .pod_exec(
            "pod1",
            &["ping", "-6", "-c", "1", "-W", "1", "-I", "eth0", "ff02::1"].map(String::from),
        )
        .unwrap()
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT);
    assert!(
        metric(lab, &node.name, "Unsupported L3 protocol", "EGRESS") > before,
        "IPv6 is dropped with reason 139"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_e2e_agent_sigkill_keeps_traffic_and_restores() {
    if !privileged("privileged_e2e_agent_sigkill_keeps_traffic_and_restores") {
        return;
    }
    let mut t = TestLab::up("kill", 1, 2, &bin_dir()).await.unwrap();
    let node = t.lab.nodes[0].name.clone();
    let (p1, p2) = (t.lab.pod("pod1").unwrap().clone(), t.lab.pod("pod2").unwrap().clone());
    let progs_before = seta(&t.lab, &node, &["bpf", "prog", "list"]);

    // continuous ping and a TCP stream across the kill and the restart
    let ping_cmd = t
        .lab
        .pod_exec(
            "pod1",
            &["ping", "-n", "-q", "-c", "300", "-i", "0.01", &p2.ip.to_string()].map(String::from),
        )
        .unwrap();
    let pinger = std::thread::spawn(move || {
        let mut c = ping_cmd;
        c.output_within(seta_lab::wait::PROGRAM_TIMEOUT).unwrap()
    });
    let addr = SocketAddr::new(p2.ip.into(), 8081);
    let stream = seta_lab::traffic::Stream::start(&p1.netns, &p2.netns, addr, addr, 4);

    tokio::time::sleep(Duration::from_millis(700)).await;
    t.lab.signal_agent(&node, nix::sys::signal::Signal::SIGKILL).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await; // traffic continues with no agent at all
    t.lab.start_agent(&node).await.unwrap();

    let (sent, received) = stream.finish();
    assert_eq!(received, sent, "every byte of the TCP stream arrived");
    let out = pinger.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("300 packets transmitted, 300 received"),
        "no ping lost across SIGKILL + restart: {text}"
    );

    // restored, without reloading the endpoints' programs
    let st = seta(&t.lab, &node, &["status"]);
    assert_eq!(st["restored-endpoints"], 2);
    // every background loop is supervised and running
    let tasks = st["tasks"].as_array().unwrap();
    for name in [
        "events-reader",
        "conntrack-gc",
        "kvstore-announce",
        "cluster-sync",
        "reconcile-retry",
    ] {
        assert!(
            tasks.iter().any(|t| t["name"] == name && t["state"] == "running"),
            "{name} runs: {tasks:?}"
        );
    }
    assert!(st["reconcile"]["endpoints-failed"].as_array().unwrap().is_empty());
    let eps = seta(&t.lab, &node, &["endpoint", "list"]);
    assert_eq!(eps.as_array().unwrap().len(), 2);
    assert!(eps.as_array().unwrap().iter().all(|e| e["state"] == "ready"));
    let progs_after = seta(&t.lab, &node, &["bpf", "prog", "list"]);
    let lxc_ids = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .filter(|a| a["device"].as_str().unwrap().starts_with("lxc"))
            .map(|a| a["prog-id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        lxc_ids(&progs_before),
        lxc_ids(&progs_after),
        "endpoint programs were kept, not reloaded"
    );
    assert_eq!(lxc_ids(&progs_after).len(), 2, "one from-container program per endpoint");
    // per-endpoint programs are cls_bpf filters (no RCU grace period per
    // attach), which live in the kernel on their own: no pin, no agent needed
    for a in progs_after.as_array().unwrap() {
        let lxc = a["device"].as_str().unwrap().starts_with("lxc");
        assert_eq!(a["mode"], if lxc { "tc" } else { "tcx" }, "{a}");
        assert_eq!(a["pinned"].is_null(), lxc, "{a}");
    }
    assert_eq!(ping(&t.lab, "pod2", p1.ip, 2, "0.2"), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_e2e_pod_delete_leaves_nothing_behind() {
    if !privileged("privileged_e2e_pod_delete_leaves_nothing_behind") {
        return;
    }
    let mut t = TestLab::up("del", 1, 2, &bin_dir()).await.unwrap();
    let node = t.lab.nodes[0].clone();
    let p1 = t.lab.pod("pod1").unwrap().clone();
    let lxc = seta_core::names::lxc_name(&p1.container_id, "eth0");
    let has_link = |name: String| {
        // sysfs is the host's in this mount namespace; ask the kernel by name instead
        spawn_in_netns(&node.netns, move || nix::net::if_::if_nametoindex(name.as_str()).is_ok())
            .join()
            .unwrap()
    };
    assert!(has_link(lxc.clone()));
    // pod1 talks first, so it has conntrack entries
    let router = seta_core::ipam::Pool::new(node.pod_cidr).unwrap().router();
    assert_eq!(ping(&t.lab, "pod1", router, 1, "0.2"), (1, 1));
    // Cilium's form names the table: `bpf ct list global`
    let ct = seta(&t.lab, &node.name, &["bpf", "ct", "list", "global"]);
    assert!(
        ct.as_array()
            .unwrap()
            .iter()
            .any(|e| e["src"].as_str().unwrap().starts_with(&format!("{}:", p1.ip))),
        "pod1 has CT entries: {ct}"
    );
    t.lab.pod_del("pod1").await.unwrap();

    assert!(!has_link(lxc.clone()), "host-side veth {lxc} removed");
    let st = seta(&t.lab, &node.name, &["status"]);
    let allocs = st["ipam"]["allocations"].as_object().unwrap();
    assert!(!allocs.contains_key(&p1.ip.to_string()), "IP {} released: {allocs:?}", p1.ip);
    assert_eq!(st["endpoints"], 1);
    let eps = seta(&t.lab, &node.name, &["bpf", "endpoint", "list"]);
    assert!(
        eps.as_array().unwrap().iter().all(|e| e["ip"] != p1.ip.to_string()),
        "endpoint map entry removed"
    );
    let ipc = seta(&t.lab, &node.name, &["bpf", "ipcache", "list"]);
    assert!(
        ipc.as_array().unwrap().iter().all(|e| e["prefix"] != format!("{}/32", p1.ip)),
        "ipcache entry removed"
    );
    let progs = seta(&t.lab, &node.name, &["bpf", "prog", "list"]);
    assert!(
        progs.as_array().unwrap().iter().all(|a| a["device"] != lxc.as_str()),
        "no program left for {lxc}"
    );
    let pin = seta_core::names::pin_dir(std::path::Path::new("/sys/fs/bpf"), &node.name, seta_abi::ABI_VERSION)
        .join("links")
        .join(format!("{lxc}_ingress"));
    assert!(!pin.exists(), "link pin removed");
    let ct = seta(&t.lab, &node.name, &["bpf", "ct", "list"]);
    let mine = |a: &serde_json::Value| a.as_str().unwrap().starts_with(&format!("{}:", p1.ip));
    assert!(
        ct.as_array().unwrap().iter().all(|e| !mine(&e["src"]) && !mine(&e["dst"])),
        "no conntrack entry of the deleted pod's address: {ct}"
    );
    // the deleted endpoint's policy map is kept only as an empty (deny-all) spare
    assert_eq!(
        seta(&t.lab, &node.name, &["bpf", "policy", "get", "1"]),
        serde_json::json!([]),
        "policy map emptied"
    );
    // `bpf policy get --all`: the endpoints the node still has, by id
    let all = seta(&t.lab, &node.name, &["bpf", "policy", "get", "--all"]);
    let ids: Vec<&String> = all.as_object().unwrap().keys().collect();
    assert!(ids.len() == 1 && ids[0] != "1" && all[ids[0]].is_array(), "{all}");
    // the remaining pod still works
    let p2 = t.lab.pod("pod2").unwrap().clone();
    assert_eq!(ping(&t.lab, &p2.name, router, 1, "0.2"), (1, 1));
}

/// Several agents allocate identities from one real etcd (in the lab's
/// underlay): the same labels get the same number on every node, and an agent
/// restart keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_e2e_identities_are_cluster_wide_through_etcd() {
    if !privileged("privileged_e2e_identities_are_cluster_wide_through_etcd") {
        return;
    }
    let found = Command::new("sh")
        .args(["-c", "command -v etcd"])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap()
        .status
        .success();
    assert!(
        found || std::env::var("CI").as_deref() != Ok("true"),
        "etcd is required (make test installs etcd-server)"
    );
    if !found {
        eprintln!("SKIP: no etcd");
        return;
    }
    let mut t = TestLab::up_with(
        "etcd",
        2,
        0,
        &bin_dir(),
        &seta_lab::LabOptions {
            etcd: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (n1, n2) = (t.lab.nodes[0].name.clone(), t.lab.nodes[1].name.clone());
    t.lab.pod_add("a1", &n1, "default", &["app=a".into()], &[]).await.unwrap();
    t.lab.pod_add("a2", &n2, "default", &["app=a".into()], &[]).await.unwrap();
    t.lab.pod_add("b2", &n2, "default", &["app=b".into()], &[]).await.unwrap();
    let id = |lab: &Lab, node: &str, pod: &str| {
        seta(lab, node, &["endpoint", "get", &format!("pod-name:default/{pod}")])["identity"]
            .as_u64()
            .unwrap()
    };
    let (a1, a2, b2) = (id(&t.lab, &n1, "a1"), id(&t.lab, &n2, "a2"), id(&t.lab, &n2, "b2"));
    assert_eq!(a1, a2, "same labels, same identity on both nodes");
    assert_ne!(a1, b2);
    let st = seta(&t.lab, &n1, &["status"]);
    assert!(st["kvstore"].as_str().unwrap().starts_with("etcd"));
    // connected (a loaded machine may have made the watches re-list once)
    assert!(st["kvstore-status"].as_str().unwrap().starts_with("ok"), "{st}");
    assert_eq!(st["nodes-registered"], serde_json::json!([n1, n2]));
    let refs = seta(&t.lab, &n1, &["kvstore", "list", "/seta/identities/v1/ref/"]);
    let keys: Vec<&str> = refs.as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert!(
        keys.contains(&format!("/seta/identities/v1/ref/{a1}/{n1}").as_str())
            && keys.contains(&format!("/seta/identities/v1/ref/{a1}/{n2}").as_str()),
        "{keys:?}"
    );
    // both nodes are registered, with their underlay addresses and pod CIDRs
    let nodes = seta(&t.lab, &n1, &["node", "list"]);
    let names: Vec<&str> = nodes.as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec![n1.as_str(), n2.as_str()]);
    assert!(nodes[1]["ips"].as_array().unwrap().iter().any(|ip| ip == "172.30.0.2"), "{nodes}");
    assert_eq!(nodes[1]["pod-cidr"], t.lab.nodes[1].pod_cidr.to_string());
    // a dead node's entry expires with its lease (3 s in the lab); a restart announces it again
    t.lab.signal_agent(&n2, nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while seta(&t.lab, &n1, &["node", "list"]).as_array().unwrap().len() != 1 {
        assert!(std::time::Instant::now() < deadline, "node 2 never expired");
        std::thread::sleep(Duration::from_millis(250));
    }
    t.lab.start_agent(&n2).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seta(&t.lab, &n1, &["node", "list"]).as_array().unwrap().len() != 2 {
        assert!(std::time::Instant::now() < deadline, "node 2 was not announced again");
        std::thread::sleep(Duration::from_millis(100));
    }
    // a new pod with the same labels on node 1 after an agent restart: same number
    t.lab.signal_agent(&n1, nix::sys::signal::Signal::SIGKILL).unwrap();
    t.lab.start_agent(&n1).await.unwrap();
    t.lab.pod_add("b1", &n1, "default", &["app=b".into()], &[]).await.unwrap();
    assert_eq!(id(&t.lab, &n1, "b1"), b2, "node 1 learns b's number from etcd");
    assert_eq!(id(&t.lab, &n1, "a1"), a1, "restored endpoint keeps its identity");
}

/// `seta service` against a real agent: import as kubectl prints objects,
/// list with Cilium's columns (-o json here), refusals that name the field
/// and change nothing, delete. (The datapath side of services comes next.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_e2e_service_cli_import_list_delete() {
    if !privileged("privileged_e2e_service_cli_import_list_delete") {
        return;
    }
    let t = TestLab::up("svc", 1, 0, &bin_dir()).await.unwrap();
    let node = t.lab.nodes[0].name.clone();
    let dir = std::env::temp_dir().join(format!("seta-svc-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("web.yaml");
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default, uid: x, resourceVersion: \"1\"}\nspec:\n  clusterIP: 10.96.0.10\n  clusterIPs: [10.96.0.10]\n  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]\nstatus: {loadBalancer: {}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-x1, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n- {addresses: [10.200.0.9], conditions: {ready: true}}\n";
    std::fs::write(&file, yaml).unwrap();
    let r = seta(&t.lab, &node, &["service", "import", file.to_str().unwrap()]);
    assert_eq!(r["objects"].as_array().unwrap().len(), 2, "{r}");
    let l = seta(&t.lab, &node, &["service", "list"]);
    assert_eq!(l[0]["frontend"], "10.96.0.10:80/TCP", "{l}");
    assert_eq!(l[0]["type"], "ClusterIP");
    assert_eq!(l[0]["backends"][0]["address"], "10.200.0.9:8080/TCP");
    assert_eq!(l[0]["backends"][0]["state"], "active");
    // a bad port: refused with the field path, nothing changes
    std::fs::write(&file, yaml.replace("port: 80,", "port: 0,")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["--node", &node, "service", "import", file.to_str().unwrap()])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.ports[0].port") && err.contains("Service default/web"), "{err}");
    assert_eq!(seta(&t.lab, &node, &["service", "list"]), l, "unchanged");
    // a backend quarantined by hand: listed so, and the datapath's slot is gone
    let r = seta(
        &t.lab,
        &node,
        &["service", "update", "--backend", "10.200.0.9:8080", "--state", "quarantined"],
    );
    assert_eq!(r["frontends"], 1, "{r}");
    let l2 = seta(&t.lab, &node, &["service", "list"]);
    assert_eq!(l2[0]["backends"][0]["state"], "quarantined", "{l2}");
    let lb = seta(&t.lab, &node, &["bpf", "lb", "list"]);
    assert_eq!(lb.as_array().unwrap().len(), 1, "only the master entry, no slot: {lb}");
    seta(
        &t.lab,
        &node,
        &["service", "update", "--backend", "10.200.0.9:8080", "--state", "active"],
    );
    assert_eq!(seta(&t.lab, &node, &["bpf", "lb", "list"]).as_array().unwrap().len(), 2);
    let r = seta(&t.lab, &node, &["service", "delete", "web"]);
    assert_eq!(r["objects"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(seta(&t.lab, &node, &["service", "list"]), serde_json::json!([]));
    let _ = std::fs::remove_dir_all(&dir);
    drop(t);
}
