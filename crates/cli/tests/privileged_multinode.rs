//! Three-node clusters sharing a real etcd: cross-node traffic in tunnel and
//! native routing, policy by the identity of a pod on another node (carried
//! in the VNI in tunnel mode), etcd going away during traffic, a node removed.
mod common;
use common::{bin_dir, metric, seta, wait_for};
use seta_lab::traffic::{ping_ok, tcp_ok, udp_ok, Responder};
use seta_lab::wait::RunWithin;
use seta_lab::{privileged, Lab, LabOptions, TestLab};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

fn ipcache_has(node: &str, ip: Ipv4Addr) -> bool {
    seta(node, &["bpf", "ipcache", "list"])
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["prefix"] == format!("{ip}/32"))
}

/// Import a policy on node 1 only: it reaches every node through the
/// kvstore; wait until each node has it and enforces it.
fn apply_cluster(lab: &Lab, yaml: &str) {
    let f = std::env::temp_dir().join(format!("{}-policy.yaml", lab.name));
    std::fs::write(&f, yaml).unwrap();
    let r = seta(&lab.nodes[0].name, &["policy", "import", f.to_str().unwrap()]);
    let _ = std::fs::remove_file(&f);
    let names: Vec<String> = r["policies"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    assert!(!names.is_empty(), "import named its documents: {r}");
    for n in &lab.nodes {
        wait_for(&format!("{} has the policy", n.name), 10, || {
            let l = seta(&n.name, &["policy", "get"]);
            let text = l.to_string();
            names.iter().all(|want| text.contains(want.rsplit(['/', ' ']).next().unwrap()))
        });
        seta(&n.name, &["policy", "wait"]);
    }
}

/// web (app=web) on node 2, client (app=client) on node 1, other (app=other) on node 3.
async fn cluster(tag: &str, routing: &str) -> TestLab {
    let opts = LabOptions {
        etcd: true,
        routing: Some(routing.parse().unwrap()),
        operator: false,
        ..Default::default()
    };
    let mut t = TestLab::up_with(tag, 3, 0, &bin_dir(), &opts).await.unwrap();
    let n: Vec<String> = t.lab.nodes.iter().map(|n| n.name.clone()).collect();
    t.lab.pod_add("web", &n[1], "default", &["app=web".into()], &[]).await.unwrap();
    t.lab
        .pod_add("client", &n[0], "default", &["app=client".into()], &[])
        .await
        .unwrap();
    t.lab.pod_add("other", &n[2], "default", &["app=other".into()], &[]).await.unwrap();
    // every node learns every pod (ipcache) before traffic starts
    for node in &n {
        for p in ["web", "client", "other"] {
            let ip = t.lab.pod(p).unwrap().ip;
            if !t.lab.pod(p).unwrap().node.eq(node) {
                wait_for(&format!("{node} learns {p} ({ip})"), 30, || ipcache_has(node, ip));
            }
        }
    }
    t
}

const WEB_POLICY: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-from-client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}, {port: "8080", protocol: UDP}]}]
"#;

/// Traffic and policy checks shared by both routing modes.
fn cross_node_traffic_and_policy(lab: &Lab) {
    let ns = |p: &str| lab.pod(p).unwrap().netns.clone();
    let ip = |p: &str| lab.pod(p).unwrap().ip;
    let (n1, n2) = (lab.nodes[0].name.clone(), lab.nodes[1].name.clone());
    let web = SocketAddr::new(ip("web").into(), 8080);
    let _r = Responder::start(&ns("web"), web);
    // pod <-> pod across nodes: ICMP, TCP, UDP, both directions
    assert!(ping_ok(&ns("client"), ip("web")), "client (n1) -> web (n2) ping");
    assert!(ping_ok(&ns("web"), ip("client")), "web (n2) -> client (n1) ping");
    assert!(ping_ok(&ns("other"), ip("client")), "other (n3) -> client (n1) ping");
    assert!(tcp_ok(&ns("client"), web), "client -> web TCP");
    assert!(udp_ok(&ns("client"), web), "client -> web UDP");
    assert!(tcp_ok(&ns("other"), web), "other -> web TCP before any policy");
    // a pod reaches other nodes' addresses and the external host on the underlay
    assert!(ping_ok(&ns("client"), "172.30.0.2".parse().unwrap()), "pod -> node 2's IP");
    assert!(ping_ok(&ns("client"), "172.30.0.3".parse().unwrap()), "pod -> node 3's IP");
    assert!(ping_ok(&ns("client"), "192.0.2.10".parse().unwrap()), "pod -> external host");
    // the node itself reaches another node's pod
    assert!(tcp_ok(&lab.nodes[0].netns, web), "node 1 -> web on node 2");

    // policy by the labels of pods on other nodes
    apply_cluster(lab, WEB_POLICY);
    let denied_before = metric(&n2, "Policy denied", "INGRESS");
    assert!(tcp_ok(&ns("client"), web), "client (n1) -> web allowed by label");
    assert!(udp_ok(&ns("client"), web), "client (n1) -> web UDP allowed");
    assert!(!tcp_ok(&ns("other"), web), "other (n3) -> web denied");
    assert!(!udp_ok(&ns("other"), web), "other (n3) -> web UDP denied");
    assert!(!ping_ok(&ns("client"), ip("web")), "ICMP not in the rule");
    assert!(
        metric(&n2, "Policy denied", "INGRESS") >= denied_before + 3,
        "web's node counted the drops as Policy denied (133) at ingress"
    );
    // the verdict on web's node names the source identity of the remote pod
    let other_id = seta(&lab.nodes[2].name, &["endpoint", "get", "pod-name:default/other"])["identity"].clone();
    let client_id = seta(&n1, &["endpoint", "get", "pod-name:default/client"])["identity"].clone();
    let ev = seta(&n2, &["events"]);
    let evs = ev.as_array().unwrap();
    assert!(
        evs.iter()
            .any(|e| e["verdict"] == "denied" && e["src-identity"] == other_id && e["dst"] == format!("{web}")),
        "denied verdict from other's identity {other_id}: {ev}"
    );
    assert!(
        evs.iter()
            .any(|e| e["verdict"] == "allowed" && e["src-identity"] == client_id && e["dst"] == format!("{web}")),
        "allowed verdict from client's identity {client_id}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_multinode_tunnel_traffic_policy_etcd_outage_node_removal() {
    if !privileged("privileged_multinode_tunnel_traffic_policy_etcd_outage_node_removal") {
        return;
    }
    let mut t = cluster("mnt", "tunnel").await;
    let n: Vec<String> = t.lab.nodes.iter().map(|n| n.name.clone()).collect();
    let web_ip = t.lab.pod("web").unwrap().ip;
    // tunnel mode: the pod MTU leaves room for VXLAN; remote pods have tunnel endpoints
    let st = seta(&n[0], &["status"]);
    assert_eq!(st["routing-mode"], "tunnel");
    assert_eq!(st["pod-mtu"], 1450);
    // in the pod: the default route leaves room for VXLAN, the node's own pod CIDR does not
    let out = t
        .lab
        .pod_exec("client", &["ip".into(), "route".into()])
        .unwrap()
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    let routes = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        routes.lines().any(|l| l.starts_with("default") && l.contains("mtu 1450")),
        "{routes}"
    );
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with(&t.lab.nodes[0].pod_cidr.to_string()) && !l.contains("mtu")),
        "{routes}"
    );
    let tun = seta(&n[0], &["bpf", "tunnel", "list"]);
    assert!(
        tun.as_array()
            .unwrap()
            .iter()
            .any(|e| e["prefix"] == format!("{web_ip}/32") && e["tunnel-endpoint"] == "172.30.0.2"),
        "web is reached through node 2: {tun}"
    );
    let vx_before = vxlan_tx(&t.lab, &n[0]);
    cross_node_traffic_and_policy(&t.lab);
    assert!(vxlan_tx(&t.lab, &n[0]) > vx_before + 10, "node 1's traffic left through seta_vxlan");
    wait_for("cluster health: 2/2 reachable", 10, || {
        let h = seta(&n[0], &["status"])["cluster-health"].clone();
        h.as_array().unwrap().len() == 2
            && h.as_array()
                .unwrap()
                .iter()
                .all(|x| x["node-reachable"] == true && x["datapath-reachable"] == true)
    });

    // etcd goes away during traffic: forwarding goes on, status says degraded
    let client_ns = t.lab.pod("client").unwrap().netns.clone();
    // ICMP is denied by the web policy: allow it for this part
    apply_cluster(
        &t.lab,
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-icmp, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
"#,
    );
    let pinger = {
        let ns = client_ns.clone();
        let cmd = t.lab.exec_command(
            &ns,
            &[
                "ping".into(),
                "-n".into(),
                "-q".into(),
                "-c".into(),
                "60".into(),
                "-i".into(),
                "0.1".into(),
                "-W".into(),
                "1".into(),
                web_ip.to_string(),
            ],
        );
        std::thread::spawn(move || {
            let mut cmd = cmd;
            cmd.output_within(seta_lab::wait::PROGRAM_TIMEOUT).unwrap()
        })
    };
    t.lab.etcd_stop().unwrap();
    wait_for("node 1 reports the kvstore degraded", 15, || {
        seta(&n[0], &["status"])["kvstore-status"].as_str().unwrap().starts_with("degraded")
    });
    // a policy change needs the kvstore: refused, and nothing changes
    let f = std::env::temp_dir().join(format!("{}-outage.yaml", t.lab.name));
    std::fs::write(&f, WEB_POLICY.replace("web-from-client", "during-outage")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["--node", &n[0], "policy", "import", f.to_str().unwrap()])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    let _ = std::fs::remove_file(&f);
    assert!(!out.status.success(), "import without the kvstore must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kvstore") && err.contains("nothing was changed"), "{err}");
    assert!(!seta(&n[0], &["policy", "get"]).to_string().contains("during-outage"));
    // a pod whose labels need a new identity waits for the kvstore...
    let client_node = t.lab.pod("client").unwrap().node.clone();
    let blocked = Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["lab", "pod", "add", "newid", "--lab", &t.lab.name, "--node", &client_node])
        .args(["--labels", "app=brand-new"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // ...and stalls nothing that does not need it: status, endpoint listing
    // and a pod whose labels map to a known identity answer meanwhile
    let agent = seta_client::Client::new(seta_core::names::socket_path(&client_node)).with_timeout(Duration::from_secs(3));
    let st = agent.status().await.expect("status answers while an allocation waits for etcd");
    assert!(st.kvstore_status.starts_with("degraded"), "{st:?}");
    assert!(agent
        .endpoints()
        .await
        .expect("endpoint list answers")
        .iter()
        .any(|e| e.pod_name == "client"));
    t.lab
        .pod_add("known", &client_node, "default", &["app=client".into()], &[])
        .await
        .unwrap();
    assert_eq!(
        seta(&client_node, &["endpoint", "get", "pod-name:default/known"])["identity"],
        seta(&client_node, &["endpoint", "get", "pod-name:default/client"])["identity"],
        "a known label set needs no kvstore"
    );
    let (known_ns, client_ip) = (t.lab.pod("known").unwrap().netns.clone(), t.lab.pod("client").unwrap().ip);
    assert!(ping_ok(&known_ns, client_ip), "and the new pod works on its node");
    let out = blocked.wait_with_output().unwrap();
    assert!(!out.status.success(), "a new identity cannot be allocated without the kvstore");
    let msg = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        msg.contains("kvstore") && msg.contains("\"code\":11"),
        "retry later (11), naming the kvstore: {msg}"
    );
    let eps = seta(&client_node, &["endpoint", "list"]);
    assert!(!eps.to_string().contains("newid"), "the refused ADD left no endpoint: {eps}");
    std::thread::sleep(Duration::from_secs(1));
    t.lab.etcd_start().unwrap();
    let out = pinger.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" 0% packet loss"), "no loss while etcd was away: {text}");
    wait_for("node 1's kvstore ok again", 20, || {
        seta(&n[0], &["status"])["kvstore-status"].as_str().unwrap().starts_with("ok")
    });
    // the pod created during the outage is announced once etcd is back
    let known_ip = t.lab.pod("known").unwrap().ip;
    wait_for("web's node learns the pod created during the outage", 20, || {
        ipcache_has(&n[1], known_ip)
    });
    assert!(ping_ok(&known_ns, web_ip), "it reaches the other node's pod");
    // after the resync, a pod created on node 3 (new identity) is learned everywhere
    t.lab.pod_add("late", &n[2], "default", &["app=late".into()], &[]).await.unwrap();
    let late_ip = t.lab.pod("late").unwrap().ip;
    wait_for("node 1 learns the late pod", 10, || ipcache_has(&n[0], late_ip));
    assert!(ping_ok(&client_ns, late_ip), "client -> late pod on node 3");

    // a node removed: its agent dies; its pods and addresses leave the others' ipcache
    let late_id = seta(&n[2], &["endpoint", "get", "pod-name:default/late"]).get("identity").cloned();
    t.lab.signal_agent(&n[2], nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("node 3's entries expire on node 1", 20, || {
        !ipcache_has(&n[0], late_ip) && !ipcache_has(&n[0], "172.30.0.3".parse().unwrap())
    });
    let nodes = seta(&n[0], &["node", "list"]);
    assert_eq!(nodes.as_array().unwrap().len(), 2, "{nodes}");
    assert!(ping_ok(&client_ns, web_ip), "the rest of the cluster keeps working");
    // the node comes back: announced again, same identities, its pods reachable
    t.lab.start_agent(&n[2]).await.unwrap();
    wait_for("node 3's pods are learned again", 20, || ipcache_has(&n[0], late_ip));
    assert_eq!(
        seta(&n[2], &["endpoint", "get", "pod-name:default/late"]).get("identity").cloned(),
        late_id
    );
    assert!(ping_ok(&client_ns, late_ip));
}

fn vxlan_tx(lab: &Lab, node: &str) -> u64 {
    let out = lab
        .node_exec(node, &["cat".into(), "/sys/class/net/seta_vxlan/statistics/tx_packets".into()])
        .unwrap()
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_multinode_native_routing_traffic_and_policy() {
    if !privileged("privileged_multinode_native_routing_traffic_and_policy") {
        return;
    }
    let t = cluster("mnn", "native").await;
    let n1 = t.lab.nodes[0].name.clone();
    let st = seta(&n1, &["status"]);
    assert_eq!(st["routing-mode"], "native");
    assert_eq!(st["pod-mtu"], 1500);
    assert!(
        seta(&n1, &["bpf", "tunnel", "list"]).as_array().unwrap().is_empty(),
        "no tunnel endpoints"
    );
    // routes to the other nodes' pod CIDRs via their underlay addresses
    let out = t
        .lab
        .node_exec(&n1, &["ip".into(), "route".into()])
        .unwrap()
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    let routes = String::from_utf8_lossy(&out.stdout);
    for (i, node) in t.lab.nodes.iter().enumerate().skip(1) {
        assert!(
            routes.contains(&format!("{} via 172.30.0.{}", node.pod_cidr, i + 1)),
            "route to {}: {routes}",
            node.pod_cidr
        );
    }
    // BPF host routing: pod -> remote pod leaves through a FIB redirect and is
    // delivered by from_netdev, so neither node's IP stack forwards it
    let (client, web) = (t.lab.pod("client").unwrap().clone(), t.lab.pod("web").unwrap().clone());
    let fwd = |lab: &Lab| -> u64 { lab.nodes.iter().take(2).map(|n| ip_forwarded(lab, &n.name)).sum() };
    let before = fwd(&t.lab);
    let out = t
        .lab
        .pod_exec(
            &client.name,
            &[
                "ping".into(),
                "-c".into(),
                "20".into(),
                "-i".into(),
                "0.05".into(),
                "-q".into(),
                web.ip.to_string(),
            ],
        )
        .unwrap()
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(" 0% packet loss"));
    assert!(
        fwd(&t.lab) - before < 5,
        "the nodes' forwarding path was bypassed (IpForwDatagrams +{})",
        fwd(&t.lab) - before
    );
    cross_node_traffic_and_policy(&t.lab);
    // a policy deleted on another node is gone everywhere: other -> web allowed again
    seta(&t.lab.nodes[1].name, &["policy", "delete", "web-from-client"]);
    wait_for("node 1 dropped the policy", 10, || {
        !seta(&t.lab.nodes[0].name, &["policy", "get"])
            .to_string()
            .contains("web-from-client")
    });
    let web_addr = SocketAddr::new(web.ip.into(), 8080);
    let _r = Responder::start(&web.netns, web_addr);
    assert!(
        tcp_ok(&t.lab.pod("other").unwrap().netns, web_addr),
        "other -> web allowed after the delete"
    );
}

/// IpForwDatagrams of a node's namespace (/proc/net/snmp).
fn ip_forwarded(lab: &Lab, node: &str) -> u64 {
    let out = lab
        .node_exec(node, &["cat".into(), "/proc/net/snmp".into()])
        .unwrap()
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with("Ip:"));
    let (h, v) = (lines.next().unwrap(), lines.next().unwrap());
    let i = h.split_whitespace().position(|k| k == "ForwDatagrams").unwrap();
    v.split_whitespace().nth(i).unwrap().parse().unwrap()
}

fn kv_get(node: &str, key: &str) -> Option<String> {
    seta(node, &["kvstore", "get", key])
        .as_array()
        .and_then(|a| a.first().map(|e| e["value"].as_str().unwrap_or_default().to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_multinode_operator_ipam_gc_and_failover() {
    if !privileged("privileged_multinode_operator_ipam_gc_and_failover") {
        return;
    }
    let opts = LabOptions {
        etcd: true,
        routing: Some(seta_core::mode::RoutingMode::Tunnel),
        operator: true,
        ..Default::default()
    };
    let mut t = TestLab::up_with("mop", 3, 0, &bin_dir(), &opts).await.unwrap();
    let (n1, n2) = (t.lab.nodes[0].name.clone(), t.lab.nodes[1].name.clone());
    // cluster-pool IPAM: each agent got a distinct /24 of the cluster CIDR from the operator
    let c1 = seta(&n1, &["status"])["ipam"]["cidr"].as_str().unwrap().to_string();
    let c2 = seta(&n2, &["status"])["ipam"]["cidr"].as_str().unwrap().to_string();
    let c3 = seta(&t.lab.nodes[2].name, &["status"])["ipam"]["cidr"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(c1 != c2 && c2 != c3 && c1 != c3, "{c1} {c2} {c3}");
    for c in [&c1, &c2, &c3] {
        let net: ipnet::Ipv4Net = c.parse().unwrap();
        assert!(t.lab.cluster_cidr.contains(&net.network()) && net.prefix_len() == 24, "{c}");
    }
    assert_eq!(kv_get(&n1, &format!("/seta/ipam/v1/nodes/{n1}")).as_deref(), Some(c1.as_str()));

    // leader election: one leader; kill it and the other replica takes over
    let leader = |n: &str| -> Option<String> {
        kv_get(n, "/seta/operator/v1/leader")
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
            .and_then(|v| v["id"].as_str().map(String::from))
    };
    wait_for("a leader", 10, || leader(&n1).is_some());
    let first = leader(&n1).unwrap();
    let other = t.lab.operators.iter().map(|o| o.id.clone()).find(|i| *i != first).unwrap();
    t.lab.kill_operator(&first).unwrap();
    wait_for("the other replica leads", 15, || leader(&n1).as_deref() == Some(other.as_str()));

    // the new leader garbage-collects an identity nobody references any more
    t.lab.pod_add("tmp", &n1, "default", &["app=tmp-only".into()], &[]).await.unwrap();
    let id = seta(&n1, &["endpoint", "get", "pod-name:default/tmp"])["identity"]
        .as_u64()
        .unwrap();
    let id_key = format!("/seta/identities/v1/id/{id}");
    assert!(kv_get(&n1, &id_key).is_some());
    t.lab.pod_del("tmp").await.unwrap();
    wait_for("identity garbage-collected", 20, || kv_get(&n1, &id_key).is_none());

    // the pod CIDR is stable: node 2 wiped and restarted gets the same one back
    t.lab.signal_agent(&n2, nix::sys::signal::Signal::SIGKILL).unwrap();
    // nsenter --net only: `ip netns exec` would remount /sys and hide bpffs
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", t.lab.nodes[1].netns))
        .arg(bin_dir().join("seta-agent"))
        .args(["cleanup", "--node", &n2])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    t.lab.start_agent(&n2).await.unwrap();
    assert_eq!(
        seta(&n2, &["status"])["ipam"]["cidr"].as_str().unwrap(),
        c2,
        "same pod CIDR after a wipe"
    );

    // and the cluster works across nodes with operator-assigned CIDRs
    t.lab.pod_add("a", &n1, "default", &["app=a".into()], &[]).await.unwrap();
    t.lab.pod_add("b", &n2, "default", &["app=b".into()], &[]).await.unwrap();
    let b_ip = t.lab.pod("b").unwrap().ip;
    let a_ip = t.lab.pod("a").unwrap().ip;
    wait_for("node 1 learns b", 30, || ipcache_has(&n1, b_ip));
    wait_for("node 2 (restarted after a wipe) learns a", 30, || ipcache_has(&n2, a_ip));
    let a_ns = t.lab.pod("a").unwrap().netns.clone();
    wait_for("a pings b across nodes", 20, || ping_ok(&a_ns, b_ip));
}

/// The operator under Kubernetes (`seta lab up --k8s` with two replicas,
/// CRD mode, no etcd), seen through kubectl: one replica holds the Lease and
/// the other takes it over when the holder is killed; cluster-pool IPAM
/// writes each CiliumNode's `spec.ipam.podCIDRs`, which the agents take; pods
/// on both nodes talk; the leader collects a CiliumIdentity no CEP uses any
/// more, a CiliumEndpoint whose Pod is gone and a CiliumNode whose Node is
/// gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_multinode_k8s_operator_lease_ipam_and_gc() {
    if !privileged("privileged_multinode_k8s_operator_lease_ipam_and_gc") {
        return;
    }
    let opts = LabOptions {
        k8s: true,
        routing: Some(seta_core::mode::RoutingMode::Tunnel),
        operator: true,
        ..Default::default()
    };
    let mut t = TestLab::up_with("kop", 2, 0, &bin_dir(), &opts).await.unwrap();
    let kubectl = |l: &Lab, args: &[&str], stdin: Option<&str>| -> String {
        let (ok, out, err) = l.kubectl(args, stdin).unwrap();
        assert!(ok, "kubectl {args:?}: {err}");
        out
    };
    let (n1, n2) = (t.lab.nodes[0].name.clone(), t.lab.nodes[1].name.clone());
    // IPAM: distinct /24s of the cluster pool in the CiliumNodes, the agents use them
    let cns = kubectl(
        &t.lab,
        &[
            "get",
            "ciliumnodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec.ipam.podCIDRs[0]} {end}",
        ],
        None,
    );
    let mut got = std::collections::BTreeMap::new();
    for pair in cns.split_whitespace() {
        let (n, c) = pair.split_once('=').unwrap();
        got.insert(n.to_string(), c.to_string());
    }
    for n in [&n1, &n2] {
        let c = seta(n, &["status"])["ipam"]["cidr"].as_str().unwrap().to_string();
        assert_eq!(got.get(n.as_str()), Some(&c), "{cns}");
        let net: ipnet::Ipv4Net = c.parse().unwrap();
        assert!(t.lab.cluster_cidr.contains(&net.network()) && net.prefix_len() == 24, "{c}");
    }
    assert_ne!(got[&n1], got[&n2]);
    assert!(seta(&n1, &["status"])["kvstore"].as_str().unwrap().starts_with("Disabled"));

    // pods on both nodes talk
    t.lab.pod_add("a", &n1, "default", &["app=a".into()], &[]).await.unwrap();
    t.lab.pod_add("b", &n2, "default", &["app=b".into()], &[]).await.unwrap();
    let (a_ns, b_ip) = (t.lab.pod("a").unwrap().netns.clone(), t.lab.pod("b").unwrap().ip);
    wait_for("a pings b across nodes", 20, || ping_ok(&a_ns, b_ip));

    // the Lease: one holder; killed, the other replica takes it over
    let holder = |l: &Lab| {
        let (ok, out, _) = l
            .kubectl(
                &[
                    "get",
                    "lease",
                    "-n",
                    "kube-system",
                    "seta-operator-resource-lock",
                    "-o",
                    "jsonpath={.spec.holderIdentity}",
                ],
                None,
            )
            .unwrap();
        Some(out).filter(|o| ok && !o.is_empty())
    };
    wait_for("a Lease holder", 15, || holder(&t.lab).is_some());
    let first = holder(&t.lab).unwrap();
    let other = t.lab.operators.iter().map(|o| o.id.clone()).find(|i| *i != first).unwrap();
    t.lab.kill_operator(&first).unwrap();
    wait_for("the other replica holds the Lease", 20, || {
        holder(&t.lab).as_deref() == Some(other.as_str())
    });
    let transitions = kubectl(
        &t.lab,
        &[
            "get",
            "lease",
            "-n",
            "kube-system",
            "seta-operator-resource-lock",
            "-o",
            "jsonpath={.spec.leaseTransitions}",
        ],
        None,
    );
    assert_eq!(transitions, "1");

    // GC by the new leader: a pod's identity once no CEP uses it
    t.lab.pod_add("tmp", &n1, "default", &["app=tmp-only".into()], &[]).await.unwrap();
    let id = seta(&n1, &["endpoint", "get", "pod-name:default/tmp"])["identity"]
        .as_u64()
        .unwrap()
        .to_string();
    assert_eq!(
        kubectl(&t.lab, &["get", "ciliumidentity", &id, "-o", "name"], None),
        format!("ciliumidentity.cilium.io/{id}")
    );
    t.lab.pod_del("tmp").await.unwrap();
    let gone = |l: &Lab, args: &[&str]| {
        let (ok, _, err) = l.kubectl(args, None).unwrap();
        !ok && err.contains("NotFound")
    };
    wait_for("the unused CiliumIdentity is collected", 20, || {
        gone(&t.lab, &["get", "ciliumidentity", &id])
    });
    // a CEP without its Pod, a CiliumNode without its Node
    kubectl(
        &t.lab,
        &["apply", "-f", "-"],
        Some("apiVersion: cilium.io/v2\nkind: CiliumEndpoint\nmetadata: {name: orphan, namespace: default}\nstatus: {id: 9, identity: {id: 999}}\n---\napiVersion: cilium.io/v2\nkind: CiliumNode\nmetadata: {name: ghost}\nspec: {ipam: {podCIDRs: [10.201.250.0/24]}}\n"),
    );
    wait_for("the orphan CEP is collected", 20, || gone(&t.lab, &["get", "cep", "orphan"]));
    wait_for("the ghost CiliumNode is collected", 20, || {
        gone(&t.lab, &["get", "ciliumnode", "ghost"])
    });
    // the live ones stay
    for n in [&n1, &n2] {
        kubectl(&t.lab, &["get", "ciliumnode", n], None);
    }
    kubectl(&t.lab, &["get", "cep", "a"], None);
}
