//! End-to-end policy scenarios in a lab: real TCP, UDP and ICMP through the
//! kernel, and the drop reason the datapath counted.
mod common;
#[path = "privileged_policy/dsr.rs"]
mod dsr;
#[path = "privileged_policy/k8s_outage.rs"]
mod k8s_outage;
#[path = "privileged_policy/k8s_pods.rs"]
mod k8s_pods;
#[path = "privileged_policy/k8s_services.rs"]
mod k8s_services;
#[path = "privileged_policy/k8s_topology.rs"]
mod k8s_topology;
#[path = "privileged_policy/north_south.rs"]
mod north_south;
#[path = "privileged_policy/relay.rs"]
mod relay;
#[path = "privileged_policy/sctp.rs"]
mod sctp;
#[path = "privileged_policy/socket_lb.rs"]
mod socket_lb;
#[path = "privileged_policy/svc_restart.rs"]
mod svc_restart;
use common::bin_dir;
use seta_lab::traffic::{ping_ok, tcp_ok, udp_ok, Responder};
use seta_lab::wait::RunWithin;
use seta_lab::{privileged, Lab, LabOptions, TestLab};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

/// Where a scenario runs: one node, or two nodes sharing a real etcd with the
/// pods of every namespace spread over both, in either routing mode.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Topo {
    One,
    /// one node on an underlay with etcd, the external host on it as in
    /// the two-node labs
    OneUnderlay,
    Tunnel,
    Native,
}

struct P {
    t: TestLab,
    topo: Topo,
}

fn maglev() -> LabOptions {
    LabOptions {
        maglev: true,
        ..Default::default()
    }
}

fn k8s() -> LabOptions {
    LabOptions {
        k8s: true,
        ..Default::default()
    }
}

impl P {
    /// Pods web (app=web, port http=8080) on the first node, client (app=client)
    /// on the second (the first with one node), other (app=other) on the first.
    async fn new(tag: &str, topo: Topo) -> Self {
        Self::with(tag, topo, false).await
    }
    /// As `new`; `masquerade`: the agents run with BPF masquerade.
    async fn with(tag: &str, topo: Topo, masquerade: bool) -> Self {
        Self::with_opts(
            tag,
            topo,
            LabOptions {
                masquerade,
                ..Default::default()
            },
        )
        .await
    }
    /// As `new`, with the agents' options of `o` (masquerade, maglev,
    /// k8s, socket_lb); etcd and routing follow `topo`.
    async fn with_opts(tag: &str, topo: Topo, o: LabOptions) -> Self {
        let t = match topo {
            Topo::One => TestLab::up_with(tag, 1, 0, &bin_dir(), &o).await.unwrap(),
            Topo::OneUnderlay => {
                let opts = LabOptions { etcd: !o.k8s, ..o };
                TestLab::up_with(tag, 1, 0, &bin_dir(), &opts).await.unwrap()
            }
            Topo::Tunnel | Topo::Native => {
                let opts = LabOptions {
                    // under Kubernetes agents share CRDs (CRD mode), no etcd
                    etcd: !o.k8s,
                    routing: Some(if topo == Topo::Tunnel {
                        seta_core::mode::RoutingMode::Tunnel
                    } else {
                        seta_core::mode::RoutingMode::Native
                    }),
                    ..o
                };
                TestLab::up_with(tag, 2, 0, &bin_dir(), &opts).await.unwrap()
            }
        };
        let mut p = Self { t, topo };
        p.pod_add("web", 0, "default", &["app=web"], &["http=8080/TCP", "dns=5353/UDP"])
            .await;
        p.pod_add("client", 1, "default", &["app=client"], &[]).await;
        p.pod_add("other", 0, "default", &["app=other"], &[]).await;
        p
    }
    /// Add a pod on node `idx` (modulo the number of nodes); every other node
    /// learns it before this returns.
    async fn pod_add(&mut self, name: &str, idx: usize, ns: &str, labels: &[&str], ports: &[&str]) {
        let node = self.lab().nodes[idx % self.lab().nodes.len()].name.clone();
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        let ports: Vec<String> = ports.iter().map(|s| s.to_string()).collect();
        self.t.lab.pod_add(name, &node, ns, &labels, &ports).await.unwrap();
        let ip = self.ip(name);
        for n in self.nodes() {
            if n != node {
                common::wait_for(&format!("{n} learns {name} ({ip})"), 30, || {
                    common::seta(&n, &["bpf", "ipcache", "list"])
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|e| e["prefix"] == format!("{ip}/32"))
                });
            }
        }
    }
    /// Node `i`'s address on the underlay, where the external host reaches it.
    fn node_addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(172, 30, 0, i as u8 + 1)
    }
    fn lab(&self) -> &Lab {
        &self.t.lab
    }
    fn nodes(&self) -> Vec<String> {
        self.lab().nodes.iter().map(|n| n.name.clone()).collect()
    }
    /// The node cluster-wide commands go to.
    fn node(&self) -> String {
        self.lab().nodes[0].name.clone()
    }
    /// The node a pod runs on.
    fn node_of(&self, pod: &str) -> String {
        self.lab().pod(pod).unwrap().node.clone()
    }
    fn node_netns(&self, node: &str) -> String {
        self.lab().nodes.iter().find(|n| n.name == node).unwrap().netns.clone()
    }
    fn ns(&self, pod: &str) -> String {
        self.lab().pod(pod).unwrap().netns.clone()
    }
    fn ip(&self, pod: &str) -> Ipv4Addr {
        self.lab().pod(pod).unwrap().ip
    }
    fn seta(&self, args: &[&str]) -> serde_json::Value {
        common::seta(&self.node(), args)
    }
    /// A node-local read on the node that hosts `pod`.
    fn seta_at(&self, pod: &str, args: &[&str]) -> serde_json::Value {
        common::seta(&self.node_of(pod), args)
    }
    /// After a policy change on the first node: every node holds the same
    /// policies and enforces them.
    fn sync(&self) {
        let names = |n: &str| {
            let mut v: Vec<String> = common::seta(n, &["policy", "get"])["policies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.to_string())
                .collect();
            v.sort();
            v
        };
        let want = names(&self.node());
        // every node maps every pod's IP to the identity its own node gave it
        let pods: Vec<(String, Ipv4Addr)> = self.lab().pods.iter().map(|x| (x.name.clone(), x.ip)).collect();
        let ids: Vec<(String, serde_json::Value)> = pods
            .iter()
            .map(|(name, ip)| {
                let ns = self.lab().pod(name).unwrap().namespace.clone();
                let ep = self.seta_at(name, &["endpoint", "get", &format!("pod-name:{ns}/{name}")]);
                (format!("{ip}/32"), ep["identity"].clone())
            })
            .collect();
        for n in self.nodes() {
            common::wait_for(&format!("{n} has the cluster's policies"), 10, || names(&n) == want);
            common::wait_for(&format!("{n} knows every pod's identity"), 10, || {
                let ipc = common::seta(&n, &["bpf", "ipcache", "list"]);
                let ipc = ipc.as_array().unwrap();
                ids.iter()
                    .all(|(prefix, id)| ipc.iter().any(|e| &e["prefix"] == prefix && &e["identity"] == id))
            });
            common::seta(&n, &["policy", "wait"]);
        }
    }
    /// Import a policy and wait until every endpoint on every node enforces it.
    fn apply(&self, yaml: &str) {
        let f = std::env::temp_dir().join(format!("{}-{}.yaml", self.lab().name, rand_suffix()));
        std::fs::write(&f, yaml).unwrap();
        let r = self.seta(&["policy", "import", f.to_str().unwrap()]);
        let _ = std::fs::remove_file(&f);
        self.seta(&["policy", "wait", &r["revision"].to_string()]);
        self.sync();
    }
    /// `seta policy delete ARGS` on the first node, enforced everywhere.
    fn delete(&self, args: &[&str]) {
        let mut a = vec!["policy", "delete"];
        a.extend_from_slice(args);
        self.seta(&a);
        self.sync();
    }
    /// Drops counted for (reason, direction), summed over the nodes.
    fn drops(&self, reason: &str, dir: &str) -> u64 {
        self.nodes().iter().map(|n| common::metric(n, reason, dir)).sum()
    }
    /// Every node's verdict events.
    fn events(&self) -> Vec<serde_json::Value> {
        self.nodes()
            .iter()
            .flat_map(|n| common::seta(n, &["events"]).as_array().unwrap().clone())
            .collect()
    }
    fn web_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip("web").into(), port)
    }
    /// `seta policy trace` between two pods (by IP, which resolves pods on
    /// any node) for dport/TCP on the destination's node; the exit status.
    fn trace(&self, src: &str, dst: &str, port: u16) -> (Option<i32>, serde_json::Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_seta"))
            .args(["--node", &self.node_of(dst), "-o", "json", "policy", "trace"])
            .args(["--src-ip", &self.ip(src).to_string(), "--dst-ip", &self.ip(dst).to_string()])
            .args(["--dport", &format!("{port}/TCP")])
            .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
            .unwrap();
        (out.status.code(), serde_json::from_slice(&out.stdout).unwrap_or_default())
    }
    /// Every node's ipcache, as (prefix, identity, tunnel endpoint) rows.
    fn ipcaches(&self) -> Vec<Vec<String>> {
        self.nodes()
            .iter()
            .map(|n| {
                common::seta(n, &["bpf", "ipcache", "list"])
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.to_string())
                    .collect()
            })
            .collect()
    }
    /// Every node's policy maps equal a full recompute.
    fn verify(&self) {
        for n in self.nodes() {
            let v = common::seta(&n, &["policy", "verify"]);
            assert_eq!(v["consistent"], true, "{n}: {v}");
        }
    }
}

/// Run a scenario in each topology as its own test.
macro_rules! scenario {
    ($name:ident, $tag:literal, [$($test:ident => $topo:ident),+]) => {
        mod $name {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if !privileged(concat!(stringify!($name), "::", stringify!($test))) {
                        return;
                    }
                    let tag = concat!($tag, stringify!($test)).chars().take(8).collect::<String>();
                    super::$name(P::new(&tag, Topo::$topo).await).await;
                }
            )+
        }
    };
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

const POLICY_DENIED: &str = "Policy denied";
const DENYLIST: &str = "Policy denied by denylist";

async fn privileged_policy_ingress_allow_from_label_named_port_label_change_and_delete(mut p: P) {
    let _r = Responder::start(&p.ns("web"), p.web_addr(8080));
    let _u = Responder::start(&p.ns("web"), p.web_addr(5353));
    // every endpoint identity was allocated through the kvstore (embedded backend)
    let kv = p.seta(&["kvstore", "list", "/seta/identities/v1/id/"]);
    let in_kv: std::collections::BTreeSet<String> = kv
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect();
    for pod in ["web", "client", "other"] {
        let id = p.seta_at(pod, &["endpoint", "get", &format!("pod-name:default/{pod}")])["identity"].to_string();
        assert!(in_kv.contains(&id), "identity {id} of {pod} is in the kvstore: {kv}");
    }
    let kind = if p.topo == Topo::One { "embedded" } else { "etcd" };
    assert!(p.seta(&["status"])["kvstore"].as_str().unwrap().starts_with(kind));
    // default allow
    assert!(tcp_ok(&p.ns("other"), p.web_addr(8080)));
    assert!(udp_ok(&p.ns("other"), p.web_addr(5353)));
    assert!(ping_ok(&p.ns("other"), p.ip("web")));

    p.apply(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-from-client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: http, protocol: TCP}, {port: dns, protocol: UDP}]}]
"#,
    );
    let before = p.drops(POLICY_DENIED, "INGRESS");
    assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)), "client -> web:http allowed (named port)");
    assert!(
        udp_ok(&p.ns("client"), p.web_addr(5353)),
        "client -> web:dns/UDP allowed (named port)"
    );
    assert!(!ping_ok(&p.ns("client"), p.ip("web")), "ICMP is not in the rule");
    assert!(!tcp_ok(&p.ns("other"), p.web_addr(8080)), "other -> web denied");
    assert!(!udp_ok(&p.ns("other"), p.web_addr(5353)));
    assert!(
        p.drops(POLICY_DENIED, "INGRESS") >= before + 3,
        "drops counted as Policy denied (133) at ingress"
    );
    // the node (host) is always allowed ingress
    let node_ns = p.node_netns(&p.node_of("web"));
    assert!(tcp_ok(&node_ns, p.web_addr(8080)), "host -> web allowed");
    // verdict events name the connection and the verdict
    let ev = p.events();
    assert!(ev
        .iter()
        .any(|e| e["verdict"] == "denied" && e["drop-code"] == 133 && e["dst"] == format!("{}:8080", p.ip("web"))));
    // trace agrees, for the local and the remote client
    let (code, out) = p.trace("other", "web", 8080);
    assert_eq!(code, Some(2), "trace says DENIED: {out}");
    let (code, out) = p.trace("client", "web", 8080);
    assert_eq!(code, Some(0), "trace says ALLOWED: {out}");

    // a label change flips connectivity
    p.t.lab.pod_label("other", &["app=client".into()]).await.unwrap();
    p.sync();
    assert!(tcp_ok(&p.ns("other"), p.web_addr(8080)), "other relabelled app=client is allowed");
    p.t.lab.pod_label("other", &["app=other".into()]).await.unwrap();
    p.sync();
    assert!(!tcp_ok(&p.ns("other"), p.web_addr(8080)), "and denied again");

    // deleting the policy restores connectivity
    p.delete(&["web-from-client"]);
    assert!(tcp_ok(&p.ns("other"), p.web_addr(8080)));
    assert!(ping_ok(&p.ns("other"), p.ip("web")));
}

async fn privileged_policy_deny_all_egress_one_port_and_deny_beats_allow(mut p: P) {
    let _a = Responder::start(&p.ns("web"), p.web_addr(8080));
    let _b = Responder::start(&p.ns("web"), p.web_addr(9090));
    // deny-all ingress (KNP)
    p.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
"#,
    );
    assert!(!tcp_ok(&p.ns("client"), p.web_addr(8080)));
    assert!(!ping_ok(&p.ns("client"), p.ip("web")));
    p.delete(&["deny-all"]);

    // egress to one port only (client)
    p.apply(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-egress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
"#,
    );
    let eg = p.drops(POLICY_DENIED, "EGRESS");
    assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)));
    assert!(!tcp_ok(&p.ns("client"), p.web_addr(9090)), "other port denied at egress");
    assert!(!udp_ok(&p.ns("client"), p.web_addr(8080)), "UDP denied at egress");
    assert!(!ping_ok(&p.ns("client"), p.ip("web")));
    assert!(p.drops(POLICY_DENIED, "EGRESS") > eg);
    assert!(tcp_ok(&p.ns("other"), p.web_addr(9090)), "other endpoints unaffected");
    p.delete(&["client-egress"]);

    // deny beats allow
    p.apply(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deny-client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [all]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
"#,
    );
    // identity churn under active policies goes through the incremental path;
    // the kernel's maps must equal a full recompute
    p.pod_add("late1", 1, "default", &["app=late"], &[]).await;
    p.pod_add("late2", 0, "default", &["app=client", "tier=x"], &[]).await;
    p.t.lab.pod_del("late1").await.unwrap();
    p.verify();
    let dl = p.drops(DENYLIST, "INGRESS");
    assert!(!tcp_ok(&p.ns("client"), p.web_addr(8080)), "the deny wins over allow-all");
    assert!(tcp_ok(&p.ns("other"), p.web_addr(8080)));
    assert!(p.drops(DENYLIST, "INGRESS") > dl, "counted as Policy denied by denylist (181)");
}

async fn privileged_policy_namespace_selector_follows_namespace_labels(mut p: P) {
    p.t.lab.namespace_set("prod", &["team=b".into()]).await.unwrap();
    p.pod_add("prodpod", 1, "prod", &["app=client"], &[]).await;
    let _r = Responder::start(&p.ns("web"), p.web_addr(8080));
    p.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-team-a, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: a}}}]
"#,
    );
    assert!(!tcp_ok(&p.ns("prodpod"), p.web_addr(8080)), "namespace prod is team=b");
    assert!(!tcp_ok(&p.ns("client"), p.web_addr(8080)), "namespace default is not team=a");
    p.t.lab.namespace_set("prod", &["team=a".into()]).await.unwrap();
    p.sync();
    assert!(tcp_ok(&p.ns("prodpod"), p.web_addr(8080)), "relabelling the namespace flips it");
    let ep = p.seta_at("prodpod", &["endpoint", "get", "pod-name:prod/prodpod"]);
    assert!(ep["labels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["key"] == "io.cilium.k8s.namespace.labels.team" && l["value"] == "a"));
    // a CNP's fromEndpoints stays in its namespace unless it names one
    p.delete(&["--all"]);
    p.apply(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: same-ns-clients, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
"#,
    );
    assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)));
    assert!(
        !tcp_ok(&p.ns("prodpod"), p.web_addr(8080)),
        "app=client in prod is another namespace"
    );
    // ... and a selector on namespace labels reaches across namespaces
    p.delete(&["--all"]);
    p.apply(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: team-a-clients, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client, io.cilium.k8s.namespace.labels.team: a}}]
  - fromEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": default, app: client}}]
"#,
    );
    assert!(
        tcp_ok(&p.ns("prodpod"), p.web_addr(8080)),
        "namespace-label selector spans namespaces"
    );
    assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)), "explicit namespace selector");
    assert!(!tcp_ok(&p.ns("other"), p.web_addr(8080)));
}

async fn privileged_policy_cidr_to_external_host_and_restart_keeps_enforcement(mut p: P) {
    let ext = p.lab().external.clone().unwrap();
    let ext_addr = SocketAddr::new(ext.ip.into(), 8443);
    let _e = Responder::start(&ext.netns, ext_addr);
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    assert!(tcp_ok(&p.ns("client"), ext_addr), "pods reach the external host through the node");
    let before = p.ipcaches();
    p.apply(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-to-ext, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.128/25]}]
    toPorts: [{ports: [{port: "8443", protocol: TCP}]}]
"#,
    );
    assert!(tcp_ok(&p.ns("client"), ext_addr), "allowed by CIDR");
    assert!(!tcp_ok(&p.ns("client"), p.web_addr(8080)), "a CIDR rule never selects pods");
    assert!(tcp_ok(&p.ns("other"), ext_addr), "unselected pods are unaffected");
    for n in p.nodes() {
        let ipc = common::seta(&n, &["bpf", "ipcache", "list"]);
        assert!(
            ipc.as_array()
                .unwrap()
                .iter()
                .any(|e| e["prefix"] == "192.0.2.0/24" && e["identity"].as_u64().unwrap() > (1 << 24)),
            "{n}: CIDR identity in the ipcache: {ipc}"
        );
    }

    // SIGKILL the client's agent: enforcement continues; restart keeps it
    let node = p.node_of("client");
    p.t.lab.signal_agent(&node, nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(tcp_ok(&p.ns("client"), ext_addr), "allowed while the agent is down");
    assert!(!tcp_ok(&p.ns("client"), p.web_addr(8080)), "denied while the agent is down");
    p.t.lab.start_agent(&node).await.unwrap();
    p.sync();
    assert_eq!(
        p.seta_at("client", &["policy", "get"])["policies"].as_array().unwrap().len(),
        1,
        "policies persisted"
    );
    assert!(tcp_ok(&p.ns("client"), ext_addr));
    assert!(!tcp_ok(&p.ns("client"), p.web_addr(8080)), "still denied after the restart");
    let eps = p.seta_at("client", &["endpoint", "list"]);
    let client = eps.as_array().unwrap().iter().find(|e| e["pod-name"] == "client").unwrap();
    assert_eq!(client["egress-enforced"], true);
    // deleting the policy leaves every node's ipcache as it was
    p.delete(&["--all"]);
    common::wait_for("the CIDR entries are withdrawn", 10, || p.ipcaches() == before);
    p.verify();
    assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)));
}

async fn privileged_policy_import_is_all_or_nothing_with_clear_errors(p: P) {
    let good = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: good, namespace: default}\nspec: {endpointSelector: {}, ingress: [{}]}\n---\n";
    let knp = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: default}\n";
    // each: the file, then what the error must name (import and validate agree)
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            format!("{good}apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: bad, namespace: default}}\nspec:\n  endpointSelector: {{}}\n  egress:\n  - toFQDNs: [{{matchName: example.com}}]\n"),
            vec!["document 2", "spec.egress[0].toFQDNs", "not supported yet"],
        ),
        // port 0 once meant "every port": now refused as the API server does
        (
            format!("{good}{knp}spec:\n  podSelector: {{}}\n  ingress:\n  - ports: [{{port: 0}}]\n"),
            vec!["document 2", "spec.ingress[0].ports[0].port", "not a port number"],
        ),
        (
            format!("{good}{knp}spec:\n  podSelector: {{}}\n  ingress: []\nspec:\n  podSelector: {{}}\n"),
            vec!["document 2", "spec: duplicate key"],
        ),
        (format!("{good}{knp}spec:\n  podSelector: {{matchLabels: {{app: \"a b\"}}}}\n"), vec!["document 2", "matchLabels", "value \"a b\""]),
        ("# nothing here\n".to_string(), vec!["nothing to import"]),
    ];
    for (text, words) in cases {
        let f = std::env::temp_dir().join(format!("{}-bad.yaml", p.lab().name));
        std::fs::write(&f, &text).unwrap();
        for verb in ["import", "validate"] {
            let out = Command::new(env!("CARGO_BIN_EXE_seta"))
                .args(["--node", &p.node(), "policy", verb, f.to_str().unwrap()])
                .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{verb} must fail for\n{text}");
            assert!(words.iter().all(|w| err.contains(w)), "{verb}: {err} should name {words:?}");
        }
        let _ = std::fs::remove_file(&f);
        for n in p.nodes() {
            let st = common::seta(&n, &["policy", "get"]);
            assert_eq!(st["revision"], 0, "{n}: nothing was imported");
            assert!(st["policies"].as_array().unwrap().is_empty());
        }
    }
}

async fn privileged_policy_full_map_is_loud_and_never_allows(p: P) {
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)), "default allow before");
    // 200 CIDR identities x 90 ports = 18000 entries > 16384
    let cidrs: Vec<String> = (1..=200).map(|i| format!("198.51.100.{i}/32")).collect();
    let ports: Vec<String> = (1..=90).map(|i| format!("{{port: \"{}\", protocol: TCP}}", 10000 + i)).collect();
    let yaml = format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: huge, namespace: default}}\nspec:\n  endpointSelector: {{matchLabels: {{app: client}}}}\n  egress:\n  - toCIDR: [{}]\n    toPorts: [{{ports: [{}]}}]\n",
        cidrs.join(", "),
        ports.join(", ")
    );
    let f = std::env::temp_dir().join(format!("{}-huge.yaml", p.lab().name));
    std::fs::write(&f, yaml).unwrap();
    p.seta(&["policy", "import", f.to_str().unwrap()]);
    let _ = std::fs::remove_file(&f);
    let cnode = p.node_of("client");
    let mut wait = None;
    // the client's node may still be fetching the policy from the kvstore
    common::wait_for("the client's node reports the full map", 15, || {
        let out = Command::new(env!("CARGO_BIN_EXE_seta"))
            .args(["--node", &cnode, "policy", "wait", "--timeout", "2"])
            .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
            .unwrap();
        let full = !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("policy map is full");
        wait = Some(out);
        full
    });
    let wait = wait.unwrap();
    assert!(!wait.status.success(), "wait reports the endpoint that cannot enforce the policy");
    let ep = p.seta_at("client", &["endpoint", "get", "pod-name:default/client"]);
    assert_eq!(ep["state"], "not-ready");
    assert!(ep["status-message"].as_str().unwrap().contains("full"));
    let st = p.seta_at("client", &["status"]);
    assert!(st["policy-map-full-errors"].as_u64().unwrap() >= 1, "counted");
    let failed = st["reconcile"]["endpoints-failed"].as_array().unwrap();
    assert!(
        failed.iter().any(|f| f[0] == ep["id"] && f[1].as_str().unwrap().contains("full")),
        "status lists the pending regeneration: {st}"
    );
    assert!(
        !tcp_ok(&p.ns("client"), p.web_addr(8080)),
        "the old default-allow is gone: a full map never allows more"
    );
    assert!(tcp_ok(&p.ns("other"), p.web_addr(8080)), "unselected endpoints keep working");
    // the retry loop keeps trying (and keeps failing while the cause is there)
    let cnode = p.node_of("client");
    common::wait_for("the failed regeneration is retried", 10, || {
        common::seta(&cnode, &["status"])["reconcile"]["retries"].as_u64().unwrap() >= 1
    });
    assert_eq!(
        p.seta_at("client", &["endpoint", "get", "pod-name:default/client"])["state"],
        "not-ready"
    );
    // once the cause is gone the endpoint recovers and status converges
    p.delete(&["huge"]);
    common::wait_for("the endpoint recovers", 10, || {
        p.seta_at("client", &["endpoint", "get", "pod-name:default/client"])["state"] == "ready"
    });
    let st = p.seta_at("client", &["status"]);
    assert!(st["reconcile"]["endpoints-failed"].as_array().unwrap().is_empty(), "{st}");
    assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)), "default allow again");
    p.verify();
}

async fn privileged_policy_knp_ip_block_selects_pod_ips_per_ip(mut p: P) {
    // a second client pod with the same labels (same identity) as `client`,
    // on another node than `client` when there are two
    p.pod_add("client2", 0, "default", &["app=client"], &[]).await;
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    let before = p.ipcaches();
    let c2 = p.ip("client2");
    p.apply(&format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: ipblock, namespace: default}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress:
  - from: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [{c2}/32]}}}}]
"#
    ));
    assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)), "client's IP is in the block");
    assert!(
        !tcp_ok(&p.ns("client2"), p.web_addr(8080)),
        "same identity, but its IP is excepted: per IP, not per identity"
    );
    assert!(tcp_ok(&p.ns("other"), p.web_addr(8080)), "other's IP is in the block too");
    let (code, out) = p.trace("client2", "web", 8080);
    assert_eq!(code, Some(2), "trace agrees: {out}");
    let (code, out) = p.trace("client", "web", 8080);
    assert_eq!(code, Some(0), "trace agrees: {out}");
    // the except entry must not replace the pod's own ipcache entry (its
    // identity and, across nodes, its tunnel endpoint)
    let c2_row = |ipc: &[String]| ipc.iter().find(|e| e.contains(&format!("\"{c2}/32\""))).cloned().unwrap();
    for ((n, now), was) in p.nodes().iter().zip(p.ipcaches()).zip(&before) {
        assert_eq!(c2_row(&now), c2_row(was), "{n}: client2's ipcache entry is untouched");
    }
    // and a CNP fromCIDR over the same range selects no pod
    p.delete(&["--all"]);
    p.apply(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: cidr, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  ingress: [{fromCIDR: [10.0.0.0/8]}]\n",
    );
    assert!(
        !tcp_ok(&p.ns("client"), p.web_addr(8080)),
        "CNP CIDR rules only select peers outside the cluster"
    );
    p.delete(&["--all"]);
    common::wait_for("every ipcache is as before", 10, || p.ipcaches() == before);
    p.verify();
    assert!(tcp_ok(&p.ns("client2"), p.web_addr(8080)));
}

/// CIDR rules across nodes: ipBlock with and without except, toCIDR/toCIDRSet
/// (including 0.0.0.0/0 with an except), fromCIDR; deleting restores every
/// node's ipcache exactly.
async fn privileged_policy_cidr_rules_leave_pods_and_ipcache_intact(mut p: P) {
    p.pod_add("client2", 0, "default", &["app=client"], &[]).await;
    let ext = p.lab().external.clone().unwrap();
    let ext_addr = SocketAddr::new(ext.ip.into(), 8443);
    let _e = Responder::start(&ext.netns, ext_addr);
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    let before = p.ipcaches();
    let (c1, c2) = (p.ip("client"), p.ip("client2"));
    // ipBlock naming exactly one pod, without except
    p.apply(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: one-ip, namespace: default}}\nspec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  ingress:\n  - from: [{{ipBlock: {{cidr: {c1}/32}}}}]\n"
    ));
    assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)), "the named pod IP is allowed");
    assert!(!tcp_ok(&p.ns("client2"), p.web_addr(8080)), "its twin is not");
    assert!(!tcp_ok(&p.ns("other"), p.web_addr(8080)));
    p.delete(&["one-ip"]);
    common::wait_for("the /32 left no trace in any ipcache", 10, || p.ipcaches() == before);
    // egress: everything but the client2 /32 (0.0.0.0/0 except)
    p.apply(&format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: world-but, namespace: default}}\nspec:\n  endpointSelector: {{matchLabels: {{app: other}}}}\n  egress:\n  - toCIDRSet: [{{cidr: 0.0.0.0/0, except: [{c2}/32, 192.0.2.10/32]}}]\n  - toEndpoints: [{{matchLabels: {{app: web}}}}]\n"
    ));
    assert!(tcp_ok(&p.ns("other"), p.web_addr(8080)), "toEndpoints allows web");
    assert!(!tcp_ok(&p.ns("other"), ext_addr), "the external host is excepted");
    assert!(tcp_ok(&p.ns("client"), ext_addr), "unselected pods are unaffected");
    // client2 still reachable from unselected pods, over its own node
    let _c2 = Responder::start(&p.ns("client2"), SocketAddr::new(c2.into(), 8080));
    assert!(
        tcp_ok(&p.ns("client"), SocketAddr::new(c2.into(), 8080)),
        "client2 keeps its routing"
    );
    p.delete(&["world-but"]);
    common::wait_for("every ipcache is as before", 10, || p.ipcaches() == before);
    // a toCIDR to the external host only
    p.apply(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: to-ext, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: client}}\n  egress: [{toCIDR: [192.0.2.10/32]}]\n",
    );
    assert!(tcp_ok(&p.ns("client"), ext_addr));
    assert!(tcp_ok(&p.ns("client2"), ext_addr), "client2 has the same identity");
    assert!(!tcp_ok(&p.ns("client"), p.web_addr(8080)), "pods are not in a CIDR rule");
    assert!(tcp_ok(&p.ns("other"), p.web_addr(8080)));
    p.delete(&["--all"]);
    common::wait_for("every ipcache is as before", 10, || p.ipcaches() == before);
    p.verify();
}

/// Import services on the first node; they are cluster-wide (through the
/// kvstore): every node lists the same frontends before this returns.
fn services_import(p: &P, yaml: &str) {
    let f = std::env::temp_dir().join(format!("{}-svc-{}.yaml", p.lab().name, rand_suffix()));
    std::fs::write(&f, yaml).unwrap();
    common::seta(&p.node(), &["service", "import", f.to_str().unwrap()]);
    let _ = std::fs::remove_file(&f);
    services_synced(p);
}

/// Every node lists what the first node lists (frontends; NodePort
/// addresses differ per node, so ClusterIPs are compared).
fn services_synced(p: &P) {
    let cluster_ips = |n: &str| {
        let mut v: Vec<String> = common::seta(n, &["service", "list"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "ClusterIP")
            .map(|e| e.to_string())
            .collect();
        v.sort();
        v
    };
    let want = cluster_ips(&p.node());
    for n in p.nodes() {
        common::wait_for(&format!("{n} has the cluster's services"), 10, || cluster_ips(&n) == want);
    }
}

/// A ClusterIP in front of web: pods reach it on one node and across nodes
/// (the backend is web, on another node than client when there are two);
/// policy applies to the backend after translation (its identity and its
/// port); a service without backends drops with reason 158; a deleted
/// service is gone from the datapath.
async fn privileged_policy_service_cluster_ip_reaches_its_backend_with_policy(p: P) {
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    let web = p.ip("web");
    services_import(
        &p,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\nspec:\n  clusterIP: 10.96.0.10\n  ports: [{{name: http, port: 80, targetPort: http}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-a, namespace: default, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: empty, namespace: default}}\nspec:\n  clusterIP: 10.96.0.11\n  ports: [{{port: 80}}]\n"
        ),
    );
    let vip: SocketAddr = "10.96.0.10:80".parse().unwrap();
    assert!(tcp_ok(&p.ns("client"), vip), "client reaches web through the ClusterIP");
    assert!(tcp_ok(&p.ns("other"), vip), "and so does other (web's node)");
    // the datapath holds the frontend, its slot and the backend
    let l = p.seta_at("client", &["service", "list"]);
    let e = l
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["frontend"] == "10.96.0.10:80/TCP")
        .expect("listed");
    assert_eq!(e["backends"][0]["address"], format!("{web}:8080/TCP"), "{l}");
    // policy sees the backend: web admits only other, on port 8080
    p.apply(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web-from-other, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: other}}]\n    toPorts: [{ports: [{port: \"8080\", protocol: TCP}]}]\n",
    );
    assert!(!tcp_ok(&p.ns("client"), vip), "client is not allowed into web");
    assert!(tcp_ok(&p.ns("other"), vip), "other is, on the backend's port");
    // hairpin: web reaches itself through its service, from the loopback
    // address (Cilium's 169.254.42.1), whatever its ingress policy says
    assert!(tcp_ok(&p.ns("web"), vip), "web reaches itself through its ClusterIP");
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 9091));
    services_import(
        &p,
        &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: hp, namespace: default}}\nspec:\n  clusterIP: 10.96.0.12\n  ports: [{{name: p, port: 80}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: hp-a, namespace: default, labels: {{kubernetes.io/service-name: hp}}}}\naddressType: IPv4\nports: [{{name: p, port: 9091}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n"),
    );
    assert_eq!(
        read_from(&p.ns("web"), "10.96.0.12:80".parse().unwrap()),
        Ok("169.254.42.1".to_string())
    );
    p.delete(&["--all"]);
    // no backend: refused at once (ICMP port unreachable, the default
    // reject), and counted with Cilium's reason
    let before = p.drops("Service backend not found", "EGRESS");
    let empty: SocketAddr = "10.96.0.11:80".parse().unwrap();
    let refused = seta_lab::spawn_in_netns(&p.ns("client"), move || {
        std::net::TcpStream::connect_timeout(&empty, std::time::Duration::from_secs(3))
            .map(|_| ())
            .map_err(|e| e.kind())
    })
    .join()
    .unwrap();
    assert_eq!(
        refused,
        Err(std::io::ErrorKind::ConnectionRefused),
        "a connect to a service without backends is refused"
    );
    assert!(p.drops("Service backend not found", "EGRESS") > before);
    // and Hubble shows it as a drop with its reason, not only as a count,
    // to the service by name (its frontend's address and port)
    let node = p.node_of("client");
    let mut seen = String::new();
    common::wait_for("the no-backend drop as a flow", 10, || {
        seen = observe(&p, &node, &["--verdict", "DROPPED", "--to-ip", "10.96.0.11", "--last", "20"]);
        seen.lines()
            .any(|l| l.contains("-> default/empty:80 (") && l.contains("Service backend not found DROPPED (TCP Flags: SYN)"))
    });
    let by_name = observe(
        &p,
        &node,
        &["--verdict", "DROPPED", "--to-service", "default/empty", "-o", "json", "--last", "1"],
    );
    let v: serde_json::Value = serde_json::from_str(by_name.lines().next().expect("a drop to the service")).unwrap();
    assert_eq!(
        v["flow"]["destination_service"],
        serde_json::json!({"name": "empty", "namespace": "default"}),
        "{v}"
    );
    assert_eq!(v["flow"]["IP"]["destination"], "10.96.0.11", "{v}");
    // deleted (on one node, for the cluster): the address means nothing any more
    common::seta(&p.node(), &["service", "delete", "web"]);
    services_synced(&p);
    assert!(!tcp_ok(&p.ns("client"), vip), "the deleted service's address leads nowhere");
    p.verify();
}

/// A TCP server in `ns` on `addr` answering every connection with `tag`.
fn tag_server(ns: &str, addr: SocketAddr, tag: &'static str) {
    let l = seta_lab::spawn_in_netns(ns, move || std::net::TcpListener::bind(addr).unwrap())
        .join()
        .unwrap();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut c, tag.as_bytes());
        }
    });
}

/// The tags of `n` connections from `ns` to `addr`.
fn tags(ns: &str, addr: SocketAddr, n: usize) -> std::collections::BTreeMap<String, usize> {
    seta_lab::spawn_in_netns(ns, move || {
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..n {
            let mut c = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).unwrap();
            c.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut c, &mut s);
            *seen.entry(s).or_insert(0) += 1;
        }
        seen
    })
    .join()
    .unwrap()
}

/// Two backends: without affinity connections spread over both (random
/// slots); with sessionAffinity ClientIP every connection of a client goes
/// to the same one.
async fn privileged_policy_service_session_affinity_keeps_a_client_on_one_backend(p: P) {
    let (web, other) = (p.ip("web"), p.ip("other"));
    tag_server(&p.ns("web"), SocketAddr::new(web.into(), 8080), "web");
    tag_server(&p.ns("other"), SocketAddr::new(other.into(), 8080), "other");
    let slice = |svc: &str| {
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {svc}-a, namespace: default, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n- {{addresses: [{other}], conditions: {{ready: true}}}}\n")
    };
    services_import(
        &p,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: spread, namespace: default}}\nspec:\n  clusterIP: 10.96.0.21\n  ports: [{{name: http, port: 80}}]\n---\n{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: sticky, namespace: default}}\nspec:\n  clusterIP: 10.96.0.20\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 600}}}}\n  ports: [{{name: http, port: 80}}]\n---\n{}",
            slice("spread"),
            slice("sticky")
        ),
    );
    let spread = tags(&p.ns("client"), "10.96.0.21:80".parse().unwrap(), 24);
    assert_eq!(
        spread.keys().cloned().collect::<Vec<_>>(),
        ["other", "web"],
        "both backends serve: {spread:?}"
    );
    let sticky = tags(&p.ns("client"), "10.96.0.20:80".parse().unwrap(), 24);
    assert_eq!(sticky.len(), 1, "one backend for this client: {sticky:?}");
    assert_eq!(sticky.values().sum::<usize>(), 24);
}

/// A UDP server on `addr` in `ns`, for as long as the test runs, answering
/// each datagram with the address `answer` gives from its own address and
/// the sender's (the sender's: what the backend sees of its client; its
/// own: which backend answered).
fn udp_server(ns: &str, addr: SocketAddr, answer: fn(SocketAddr, SocketAddr) -> std::net::IpAddr) {
    let s = seta_lab::spawn_in_netns(ns, move || std::net::UdpSocket::bind(addr).unwrap())
        .join()
        .unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 64];
        while let Ok((_, from)) = s.recv_from(&mut b) {
            let _ = s.send_to(answer(addr, from).to_string().as_bytes(), from);
        }
    });
}

/// Run `ip ARGS` (iproute2) and require it to succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A TCP server in `ns` on `addr` answering every connection with the
/// address it came from (what the backend sees of its client).
fn peer_server(ns: &str, addr: SocketAddr) {
    let l = seta_lab::spawn_in_netns(ns, move || std::net::TcpListener::bind(addr).unwrap())
        .join()
        .unwrap();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let peer = c.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
            let _ = std::io::Write::write_all(&mut c, peer.as_bytes());
        }
    });
}

/// An HTTP GET of `/` at `addr` from `ns`: the whole response.
fn http_get(ns: &str, addr: SocketAddr) -> String {
    http_get_path(ns, addr, "/")
}

/// `http_get` of `path`.
fn http_get_path(ns: &str, addr: SocketAddr, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n");
    seta_lab::spawn_in_netns(ns, move || {
        let mut c = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(3))).unwrap();
        std::io::Write::write_all(&mut c, req.as_bytes()).unwrap();
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut c, &mut s);
        s
    })
    .join()
    .unwrap()
}

/// What a connection from `ns` to `addr` reads until the server closes, or
/// the error kind.
fn read_from(ns: &str, addr: SocketAddr) -> Result<String, std::io::ErrorKind> {
    seta_lab::spawn_in_netns(ns, move || {
        let mut c = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)).map_err(|e| e.kind())?;
        c.set_read_timeout(Some(std::time::Duration::from_secs(3))).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut c, &mut s).map_err(|e| e.kind())?;
        Ok(s)
    })
    .join()
    .unwrap()
}

/// A UDP socket made in `ns` (it stays there, whichever thread uses it),
/// connected to `to`, its receives waiting up to `wait`.
fn udp_connected(ns: &str, to: SocketAddr, wait: std::time::Duration) -> std::net::UdpSocket {
    seta_lab::spawn_in_netns(ns, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect(to).unwrap();
        s.set_read_timeout(Some(wait)).unwrap();
        s
    })
    .join()
    .unwrap()
}

/// A connected UDP socket in `ns` sends to `addr` and waits up to 3 s for
/// an answer: its length, or the error kind (ConnectionRefused when an ICMP
/// port unreachable about it came back).
fn udp_ask(ns: &str, addr: SocketAddr) -> Result<usize, std::io::ErrorKind> {
    let s = udp_connected(ns, addr, std::time::Duration::from_secs(3));
    s.send(b"anyone?").unwrap();
    s.recv(&mut [0u8; 16]).map_err(|e| e.kind())
}

/// NodePort from outside the cluster (the lab's external host on the
/// underlay), Cilium's SNAT mode: a backend on the node that was asked sees
/// the client's own address; a backend on another node sees the asked
/// node's address (SNAT) and the reply still comes from the NodePort. A pod
/// of another node reaches the NodePort too; a NodePort without backends
/// refuses.
async fn privileged_policy_service_node_port_from_outside(p: P) {
    let web = p.ip("web");
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 8080));
    services_import(
        &p,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: np, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.30\n  ports: [{{name: http, port: 80, nodePort: 30080}}, {{name: bulk, port: 90, nodePort: 30090}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: np-a, namespace: default, labels: {{kubernetes.io/service-name: np}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}, {{name: bulk, port: 9000}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: none, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.31\n  ports: [{{name: http, port: 80, nodePort: 30081}}]\n"
        ),
    );
    let ext = p.lab().external.clone().unwrap();
    let node_ip = |i: usize| -> Ipv4Addr { format!("172.30.0.{}", i + 1).parse().unwrap() };
    let ext_src = "172.30.0.200";
    // web runs on the first node: the client's address is kept
    assert_eq!(
        read_from(&ext.netns, SocketAddr::new(node_ip(0).into(), 30080)),
        Ok(ext_src.to_string()),
        "NodePort of web's node from outside"
    );
    // the second node forwards to web, from its own address
    assert_eq!(
        read_from(&ext.netns, SocketAddr::new(node_ip(1).into(), 30080)),
        Ok(node_ip(1).to_string()),
        "NodePort of the other node from outside: SNAT to that node"
    );
    // a bulk stream that way: GRO-merged packets, SNATed and forwarded by
    // BPF (the stack would drop them: their source is its own address)
    let (sent, got) = seta_lab::traffic::Stream::start(
        &ext.netns,
        &p.ns("web"),
        SocketAddr::new(web.into(), 9000),
        SocketAddr::new(node_ip(1).into(), 30090),
        1,
    )
    .finish();
    assert!(
        sent > 8 << 20 && got == sent,
        "a stream through the NodePort: {got} of {sent} bytes"
    );
    // the NAT engine holds both directions of that connection
    let nat = common::seta(&p.nodes()[1], &["bpf", "nat", "list"]);
    let rows = nat.as_array().unwrap();
    let starts = |v: &serde_json::Value, p: &str| v.as_str().unwrap_or("").starts_with(p);
    assert!(
        rows.iter().any(|r| r["direction"] == "OUT"
            && starts(&r["src"], "172.30.0.200:")
            && r["dst"] == format!("{web}:8080")
            && starts(&r["to"], "172.30.0.2:")),
        "{nat}"
    );
    assert!(
        rows.iter()
            .any(|r| r["direction"] == "IN" && r["src"] == format!("{web}:8080") && starts(&r["to"], "172.30.0.200:")),
        "{nat}"
    );
    // a pod of the second node, to the first node's NodePort and its own
    let client = p.ip("client").to_string();
    assert_eq!(
        read_from(&p.ns("client"), SocketAddr::new(node_ip(0).into(), 30080)),
        Ok(client.clone())
    );
    assert_eq!(read_from(&p.ns("client"), SocketAddr::new(node_ip(1).into(), 30080)), Ok(client));
    // no backend: refused at once
    assert_eq!(
        read_from(&ext.netns, SocketAddr::new(node_ip(0).into(), 30081)),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    p.verify();
}

/// ExternalIPs and LoadBalancer IPs from outside, routed to the node without
/// the backend (SNAT), and loadBalancerSourceRanges: a client outside the
/// ranges is dropped (reason 177) at the LoadBalancer IP but not at the
/// service's NodePort, and pods in the cluster are not subject to them.
/// externalTrafficPolicy Local: only the backend's node serves it (client
/// address kept), and its healthCheckNodePort answers 200 there, 503 on the
/// other node. `service.cilium.io/type: NodePort`: the node port serves,
/// the LoadBalancer address does not.
async fn privileged_policy_service_external_ip_and_source_ranges(p: P) {
    let web = p.ip("web");
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 8080));
    let slice = |svc: &str| {
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {svc}-a, namespace: default, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n")
    };
    let lb = |name: &str, cip: &str, np: u16, (ip, proxied): (&str, &str), range: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  type: LoadBalancer\n  clusterIP: {cip}\n  loadBalancerSourceRanges: [{range}]\n  ports: [{{name: http, port: 80, nodePort: {np}}}]\nstatus:\n  loadBalancer: {{ingress: [{{ip: {ip}}}, {{ip: {proxied}, ipMode: Proxy}}]}}\n---\n{}", slice(name))
    };
    services_import(
        &p,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: eip, namespace: default}}\nspec:\n  clusterIP: 10.96.0.40\n  externalIPs: [198.51.100.60]\n  ports: [{{name: http, port: 80}}]\n---\n{}---\n{}---\n{}",
            slice("eip"),
            lb("open", "10.96.0.41", 30090, ("198.51.100.50", "198.51.100.52"), "172.30.0.200/32"),
            lb("closed", "10.96.0.42", 30091, ("198.51.100.51", "198.51.100.53"), "10.0.0.0/8"),
        ),
    );
    // src-ranges-policy deny: the ranges are a deny list; the client is not in it
    services_import(
        &p,
        &lb("denyall", "10.96.0.44", 30093, ("198.51.100.55", "198.51.100.56"), "10.0.0.0/8").replace(
            "name: denyall, namespace: default}",
            "name: denyall, namespace: default, annotations: {service.cilium.io/src-ranges-policy: deny}}",
        ),
    );
    // service.cilium.io/type: NodePort: the node ports only
    services_import(
        &p,
        &lb("nponly", "10.96.0.45", 30094, ("198.51.100.57", "198.51.100.58"), "0.0.0.0/0").replace(
            "name: nponly, namespace: default}",
            "name: nponly, namespace: default, annotations: {service.cilium.io/type: NodePort}}",
        ),
    );
    let web_node = p.node_of("web");
    services_import(
        &p,
        &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: local, namespace: default}}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.43\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 32000\n  ports: [{{name: http, port: 80, nodePort: 30092}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: local-a, namespace: default, labels: {{kubernetes.io/service-name: local}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}, nodeName: {web_node}}}\n"),
    );
    // a router sends the service addresses to the second node; web is on the first
    p.lab().external_route("198.51.100.0/24".parse().unwrap(), 1).await.unwrap();
    let ext = p.lab().external.clone().unwrap();
    let second = "172.30.0.2".to_string();
    let at = |a: &str| -> SocketAddr { a.parse().unwrap() };
    assert_eq!(read_from(&ext.netns, at("198.51.100.60:80")), Ok(second.clone()), "ExternalIP");
    assert_eq!(
        read_from(&ext.netns, at("198.51.100.50:80")),
        Ok(second.clone()),
        "LB IP, client in range"
    );
    // a ClusterIP is not served from outside (Cilium's default)
    p.lab().external_route("10.96.0.0/16".parse().unwrap(), 1).await.unwrap();
    assert!(read_from(&ext.netns, at("10.96.0.40:80")).is_err(), "ClusterIP from outside");
    // a second ingress address with ipMode Proxy is the load-balancer's
    // to proxy (KEP-1860): the nodes do not translate it
    assert!(read_from(&ext.netns, at("198.51.100.52:80")).is_err(), "ipMode Proxy");
    let before = p.drops("Not in source range", "INGRESS");
    assert!(
        read_from(&ext.netns, at("198.51.100.51:80")).is_err(),
        "LB IP, client outside the ranges"
    );
    assert!(p.drops("Not in source range", "INGRESS") > before, "dropped with reason 177");
    assert_eq!(
        read_from(&ext.netns, at("198.51.100.55:80")),
        Ok(second.clone()),
        "LB IP, client outside the deny list"
    );
    assert_eq!(
        read_from(&ext.netns, at("172.30.0.2:30094")),
        Ok(second.clone()),
        "service.cilium.io/type NodePort: its node port"
    );
    assert!(
        read_from(&ext.netns, at("198.51.100.57:80")).is_err(),
        "service.cilium.io/type NodePort: not its LoadBalancer address"
    );
    // the ranges cover the LoadBalancer IP only, and only traffic from outside
    assert_eq!(read_from(&ext.netns, at("172.30.0.2:30091")), Ok(second), "the service's NodePort");
    assert_eq!(
        read_from(&p.ns("client"), at("198.51.100.51:80")),
        Ok(p.ip("client").to_string()),
        "a pod"
    );
    // externalTrafficPolicy Local: the backend's node only, client address kept
    assert_eq!(
        read_from(&ext.netns, at("172.30.0.1:30092")),
        Ok("172.30.0.200".to_string()),
        "eTP Local, backend's node"
    );
    assert!(read_from(&ext.netns, at("172.30.0.2:30092")).is_err(), "eTP Local, the other node");
    let health = |node: &str| http_get(&ext.netns, at(&format!("{node}:32000")));
    let (h1, h2) = (health("172.30.0.1"), health("172.30.0.2"));
    assert!(
        h1.starts_with("HTTP/1.1 200") && h1.ends_with(r#""localEndpoints":1,"service":{"name":"local","namespace":"default"}}"#),
        "{h1}"
    );
    assert!(h2.starts_with("HTTP/1.1 503") && h2.contains(r#""localEndpoints":0"#), "{h2}");
    // the datapath holds the range under the frontend's rev-NAT index
    let ranges = common::seta(&p.nodes()[1], &["bpf", "lb", "list", "--source-ranges"]);
    let mut nets: Vec<&str> = ranges.as_array().unwrap().iter().map(|r| r["range"].as_str().unwrap()).collect();
    nets.sort();
    assert_eq!(
        nets,
        ["10.0.0.0/8", "10.0.0.0/8", "172.30.0.200/32"],
        "closed, denyall, open: {ranges}"
    );
}

/// A real Prometheus (in the underlay) scraping every agent's `/metrics`
/// sees a policy drop in `seta_drop_count_total` with Cilium's labels, on
/// the node that dropped it, and the agents' endpoint gauges.
async fn privileged_policy_metrics_scraped_by_prometheus(p: P) {
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    p.apply(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web-from-other, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: other}}]\n",
    );
    p.lab().prometheus_start().unwrap();
    assert!(!tcp_ok(&p.ns("client"), p.web_addr(8080)), "client is not allowed into web");
    let web_node = p.lab().nodes.iter().position(|n| n.name == p.node_of("web")).unwrap();
    let instance = format!("172.30.0.{}:9962", web_node + 1);
    let q = "seta_drop_count_total{reason=\"Policy denied\",direction=\"INGRESS\"}";
    let mut seen = vec![];
    common::wait_for("Prometheus to see the policy drop", 30, || {
        seen = p.lab().prometheus_query(q).unwrap_or_default();
        seen.iter().any(|r| {
            r["metric"]["instance"] == instance.as_str() && r["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) > 0.0
        })
    });
    let r = seen.iter().find(|r| r["metric"]["instance"] == instance.as_str()).unwrap();
    assert_eq!(r["metric"]["job"], "seta-agent", "{r}");
    // and Hubble's flow metrics on :9965, with the context labels asked for
    // (the destination as namespace/pod)
    let hubble = format!("172.30.0.{}:9965", web_node + 1);
    common::wait_for("Prometheus to see the drop in hubble_drop_total", 30, || {
        p.lab()
            .prometheus_query("hubble_drop_total{reason=\"POLICY_DENIED\",protocol=\"TCP\",destination=\"default/web\"}")
            .unwrap_or_default()
            .iter()
            .any(|r| {
                r["metric"]["instance"] == hubble.as_str()
                    && r["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) > 0.0
            })
    });
    // every agent is scraped and reports its endpoints (web, client, other)
    let mut eps = vec![];
    common::wait_for("Prometheus to have every node's endpoints", 15, || {
        eps = p.lab().prometheus_query("sum(seta_endpoint)").unwrap_or_default();
        eps.first().is_some_and(|e| e["value"][1] == "3")
    });
}

/// `seta observe` for the node that dropped a connection.
fn observe(p: &P, node: &str, args: &[&str]) -> String {
    let out = Command::new(bin_dir().join("seta"))
        .args(["--node", node, "observe"])
        .args(args)
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    assert!(
        out.status.success(),
        "seta observe {args:?} ({}): {}",
        p.lab().name,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Python message classes protoc generates from seta's .proto files (in
/// a directory of the lab's name).
fn python_protos(p: &P) -> std::path::PathBuf {
    let gen = std::env::temp_dir().join(format!("{}-pyproto", p.lab().name));
    std::fs::create_dir_all(&gen).unwrap();
    let proto = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hubble/proto");
    let protoc = Command::new("protoc")
        .arg("-I")
        .arg(&proto)
        .arg(format!("--python_out={}", gen.display()))
        .args([
            "flow/flow.proto",
            "relay/relay.proto",
            "observer/observer.proto",
            "health/v1/health.proto",
        ])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    assert!(protoc.status.success(), "protoc: {}", String::from_utf8_lossy(&protoc.stderr));
    gen
}

/// The Python grpcio client (`hubble_client.py`) against a node's observer
/// socket, with message classes protoc generates from seta's .proto files.
fn python_client(gen: &std::path::Path, node: &str, args: &[&str]) -> serde_json::Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hubble_client.py");
    let sock = format!("/run/seta/{node}/hubble.sock");
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(gen)
        .arg(&sock)
        .args(args)
        .output_within(std::time::Duration::from_secs(40))
        .unwrap();
    assert!(
        out.status.success(),
        "hubble_client.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A policy drop as a Hubble flow: `seta observe` (compact and json) on the
/// node that dropped it, and an independent Python gRPC client (generated
/// from the .proto) reading GetFlows with a filter, following a new drop,
/// ServerStatus and GetNodes.
async fn privileged_policy_flows_observed_by_seta_observe_and_a_grpc_client(p: P) {
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    p.apply(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web-from-other, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: other}}]\n",
    );
    assert!(!tcp_ok(&p.ns("client"), p.web_addr(8080)), "client is not allowed into web");
    let node = p.node_of("web");
    let client_ip = p.ip("client").to_string();
    let mut compact = String::new();
    common::wait_for("the drop as a flow", 10, || {
        compact = observe(&p, &node, &["--verdict", "DROPPED", "--to-pod", "default/web", "--last", "50"]);
        compact
            .lines()
            .any(|l| l.contains("-> default/web:8080") && l.contains("Policy denied DROPPED"))
    });
    // the policy's verdict, as Hubble prints it, and the drop with its reason
    assert!(
        compact
            .lines()
            .any(|l| l.contains("-> default/web:8080") && l.contains("policy-verdict:none INGRESS DENIED (TCP Flags: SYN)")),
        "{compact}"
    );
    // an allowed one names the entry that allowed it: other's own, any port
    assert!(tcp_ok(&p.ns("other"), p.web_addr(8080)), "other is allowed into web");
    let mut allowed = String::new();
    common::wait_for("the allowed verdict", 10, || {
        allowed = observe(
            &p,
            &node,
            &["--type", "policy-verdict", "--from-pod", "default/other", "--last", "20"],
        );
        allowed.contains("policy-verdict:L3-Only INGRESS ALLOWED (TCP Flags: SYN)")
    });
    let line = compact
        .lines()
        .find(|l| l.contains("-> default/web:8080") && l.contains("Policy denied DROPPED"))
        .unwrap();
    assert!(
        line.contains(&format!("{client_ip}:")) || line.contains("default/client:"),
        "{line}"
    );
    assert!(line.ends_with("DROPPED (TCP Flags: SYN)"), "{line}");
    // the agent's own events (GetAgentEvents): its start, web's endpoint, the policy
    let agent = observe(&p, &node, &["--type", "agent", "--all"]);
    assert!(agent.lines().any(|l| l.contains(": AGENT_STARTED (start time: ")), "{agent}");
    assert!(
        agent
            .lines()
            .any(|l| l.contains(": ENDPOINT_CREATED (id: ") && l.ends_with("namespace: default, pod name: web)")),
        "{agent}"
    );
    assert!(
        agent.lines().any(|l| l.contains(": POLICY_UPDATED (labels: [], revision: ")),
        "{agent}"
    );
    // the ipcache's prefixes as they are written: web's own, and in tunnel
    // mode the client's on the other node, with that node's address
    let web_prefix = format!(": IPCACHE_UPSERTED (cidr: {}/32, identity: ", p.ip("web"));
    let client_remote = p.node_of("client") != node;
    let mut ipc = String::new();
    common::wait_for("the ipcache's prefixes as agent events", 10, || {
        ipc = observe(&p, &node, &["agent-events", "--all"]);
        ipc.lines().any(|l| l.contains(&web_prefix))
            && (!client_remote
                || ipc.lines().any(|l| {
                    l.contains(&format!(": IPCACHE_UPSERTED (cidr: {}/32, identity: ", p.ip("client"))) && l.contains(", host ip: ")
                }))
    });
    let last: serde_json::Value =
        serde_json::from_str(observe(&p, &node, &["--type", "agent", "--last", "1", "-o", "json"]).trim()).unwrap();
    assert!(last["agent_event"]["type"].as_str().is_some(), "{last}");
    // the drop's first bytes are kept: the SYN from client to web, whole
    let hex = |ip: Ipv4Addr| ip.octets().iter().map(|b| format!("{b:02x}")).collect::<String>();
    let evs = common::seta(&node, &["events"]);
    let drop = evs
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "drop" && e["dst"] == format!("{}:8080", p.ip("web")))
        .unwrap_or_else(|| panic!("the drop in seta events: {evs}"));
    let packet = drop["packet"].as_str().unwrap();
    assert!(drop["packet-len"].as_u64().unwrap() >= 54, "{drop}");
    assert_eq!(&packet[24..28], "0800", "an IPv4 frame: {drop}");
    assert!(packet.contains(&format!("{}{}", hex(p.ip("client")), hex(p.ip("web")))), "{drop}");
    // on the client's node the SYN left through the tunnel: to-overlay
    if p.topo == Topo::Tunnel {
        let client_node = p.node_of("client");
        let mut t = String::new();
        common::wait_for("the SYN traced into the tunnel", 10, || {
            t = observe(
                &p,
                &client_node,
                &["--type", "trace", "--from-pod", "default/client", "--last", "50"],
            );
            t.lines()
                .any(|l| l.contains(&format!("{}:8080", p.ip("web"))) && l.contains("to-overlay FORWARDED (TCP Flags: SYN)"))
        });
    }
    let json = observe(&p, &node, &["-o", "json", "--verdict", "DROPPED", "--to-pod", "default/web"]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().expect("a json line")).unwrap();
    assert_eq!(first["flow"]["verdict"], "DROPPED", "{first}");
    assert_eq!(first["flow"]["destination"]["pod_name"], "web", "{first}");
    assert_eq!(first["flow"]["IP"]["source"], client_ip.as_str(), "{first}");
    assert_eq!(first["flow"]["traffic_direction"], "INGRESS", "{first}");
    assert_eq!(first["node_name"], node.as_str());
    // the same flow in the node's export file (--hubble-export-file-path), one JSON line each
    let export = p
        .lab()
        .nodes
        .iter()
        .find(|n| n.name == node)
        .unwrap()
        .socket
        .with_file_name("hubble-events.log");
    common::wait_for("the drop in the export file", 10, || {
        std::fs::read_to_string(&export).unwrap_or_default().lines().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["flow"]["verdict"] == "DROPPED"
                && v["flow"]["destination"]["pod_name"] == "web"
                && v["flow"]["IP"]["source"] == client_ip.as_str()
        })
    });
    // an allowed flow is not a drop; filters see the difference
    assert!(tcp_ok(&p.ns("other"), p.web_addr(8080)));
    let none = observe(&p, &node, &["--verdict", "DROPPED", "--from-pod", "default/other"]);
    assert!(!none.lines().any(|l| l.contains("DROPPED") && l.contains("other")), "{none}");
    // --not turns the next filter into a blacklist entry
    let not = observe(
        &p,
        &node,
        &["--to-pod", "default/web", "--not", "--from-pod", "default/other", "--last", "100"],
    );
    assert!(not.lines().any(|l| l.contains("Policy denied DROPPED")), "{not}");
    assert!(
        !not.lines().any(|l| l.contains("default/other:")),
        "--not --from-pod default/other: {not}"
    );
    // as Hubble: a bare pod name is in namespace default, another
    // namespace's is not; a bad value is refused with Hubble's words
    let bare = observe(&p, &node, &["--to-pod", "web", "--verdict", "DROPPED", "--last", "100"]);
    assert!(bare.lines().any(|l| l.contains("Policy denied DROPPED")), "{bare}");
    let elsewhere = observe(&p, &node, &["--to-pod", "kube-system/web", "--last", "100"]);
    assert!(elsewhere.trim().is_empty(), "{elsewhere}");
    // hubble observe's namespace flags qualify the names of their side
    let qualified = observe(
        &p,
        &node,
        &[
            "--to-namespace",
            "default",
            "--to-pod",
            "web",
            "--verdict",
            "DROPPED",
            "--last",
            "100",
        ],
    );
    assert!(qualified.lines().any(|l| l.contains("Policy denied DROPPED")), "{qualified}");
    let other_ns = observe(&p, &node, &["--to-namespace", "shop", "--to-pod", "web", "--last", "100"]);
    assert!(other_ns.trim().is_empty(), "{other_ns}");
    let mixed = Command::new(bin_dir().join("seta"))
        .args(["--node", &node, "observe", "--namespace", "default", "--to-pod", "web"])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    let err = String::from_utf8_lossy(&mixed.stderr);
    assert!(
        !mixed.status.success() && err.contains("filters --to-pod and --namespace cannot be combined"),
        "{err}"
    );
    let bad = Command::new(bin_dir().join("seta"))
        .args(["--node", &node, "observe", "--from-ip", "10.0.0.300"])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains(r#"invalid IP address in filter: "10.0.0.300""#),
        "{err}"
    );
    // and it is traced where it is delivered (to-endpoint), the SYN and the handshake's reply
    let other_ip = p.ip("other").to_string();
    let mut traced = String::new();
    common::wait_for("the allowed connection traced to web", 10, || {
        traced = observe(&p, &node, &["--type", "trace", "--to-pod", "default/web", "--last", "50"]);
        traced.lines().any(|l| {
            l.contains("to-endpoint FORWARDED (TCP Flags: SYN)") && (l.contains("default/other:") || l.contains(&format!("{other_ip}:")))
        })
    });
    // an independent gRPC client, from the .proto alone
    let gen = python_protos(&p);
    // gRPC health for Hubble's observer, as Hubble's clients probe it
    assert_eq!(
        python_client(&gen, &node, &["health", "hubble.server.Observer"])["status"],
        "SERVING"
    );
    assert_eq!(python_client(&gen, &node, &["health", "no.such.Service"])["code"], "NOT_FOUND");
    let flows = python_client(&gen, &node, &["flows", "10"]);
    let f = flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["destination_pod"] == "default/web")
        .expect("the drop");
    assert_eq!(f["verdict"], "DROPPED");
    assert_eq!(f["source_ip"], client_ip.as_str());
    assert_eq!(f["destination_port"], 8080);
    assert_eq!(f["syn"], true);
    let status = python_client(&gen, &node, &["status"]);
    assert_eq!(status["max_flows"], 4095);
    assert!(status["num_flows"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(
        python_client(&gen, &node, &["debug", "10"]),
        serde_json::json!([]),
        "no debug messages"
    );
    let nodes = python_client(&gen, &node, &["nodes"]);
    assert_eq!(nodes[0]["name"], node.as_str());
    // follow: the client waits, a new drop arrives
    let (g, n) = (gen.clone(), node.clone());
    let follower = std::thread::spawn(move || python_client(&g, &n, &["follow"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !follower.is_finished() && std::time::Instant::now() < deadline {
        let _ = tcp_ok(&p.ns("client"), p.web_addr(8080));
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let live = follower.join().unwrap();
    assert_eq!(live["verdict"], "DROPPED", "{live}");
    assert_eq!(live["destination_pod"], "default/web", "{live}");
    let _ = std::fs::remove_dir_all(&gen);
    // no debug messages unless the agent is asked for them
    assert_eq!(observe(&p, &node, &["debug-events", "--all"]), "");
    // seta monitor: the same denial as cilium-dbg monitor prints it, live
    let seen = monitor_until(
        &node,
        &["--type", "policy-verdict"],
        || {
            let _ = tcp_ok(&p.ns("client"), p.web_addr(8080));
        },
        |l| l.contains("action deny"),
    );
    let l = seen.expect("seta monitor printed the denial");
    assert!(l.starts_with("Policy verdict log: flow 0x0 local EP ID "), "{l}");
    assert!(l.contains(", proto 6, ingress, action deny, auth: disabled, match none, "), "{l}");
    assert!(l.contains(&format!("-> {}:8080 tcp SYN", p.ip("web"))), "{l}");
    // -v: the drop's header and its packet dissected; --hex: as a hex dump
    let web_ip = p.ip("web");
    let lines = monitor_lines_until(
        &node,
        &["--type", "drop", "-v"],
        || {
            let _ = tcp_ok(&p.ns("client"), p.web_addr(8080));
        },
        |l| l.starts_with("TCP\t{") && l.contains(" DstPort=8080 ") && l.contains(" SYN=true "),
    )
    .expect("seta monitor -v printed the dropped SYN");
    let n = lines.len();
    assert!(n >= 4, "{lines:?}");
    assert!(
        lines[n - 2].starts_with("IPv4\t{") && lines[n - 2].contains(&format!(" DstIP={web_ip} ")),
        "{lines:?}"
    );
    assert!(
        lines[n - 3].starts_with("Ethernet\t{") && lines[n - 3].contains(" EthernetType=IPv4 "),
        "{lines:?}"
    );
    let h = &lines[n - 4];
    // the CPU the datapath saw it on (this machine's: 00 or 01)
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert!((0..cpus).any(|c| h.starts_with(&format!("CPU {c:02}: MARK 0x0 FROM "))), "{h}");
    assert!(
        h.contains(" DROP: ") && h.contains(" bytes, reason Policy denied, identity "),
        "{h}"
    );
    assert!(h.contains(", to endpoint "), "{h}");
    assert_eq!(lines[n - 5], "-".repeat(78));
    let hex = |ip: Ipv4Addr| ip.octets().iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
    let lines = monitor_lines_until(
        &node,
        &["--type", "drop", "--hex"],
        || {
            let _ = tcp_ok(&p.ns("client"), p.web_addr(8080));
        },
        // (bytes 26..30 of the frame, on the second line: the client's address)
        |l| l.starts_with("00000010  ") && l.contains(&hex(p.ip("client"))),
    )
    .expect("seta monitor --hex printed the dropped SYN's bytes");
    assert!(lines[lines.len() - 2].starts_with("00000000  "), "{lines:?}");
}

/// BPF masquerade: a pod's connection to the world (the external host)
/// leaves from its node's address and its replies come back to the pod;
/// traffic between pods keeps the pods' addresses; a CIDR policy still
/// applies (to the pod, before the translation).
async fn privileged_policy_bpf_masquerade_to_the_world(p: P) {
    let ext = p.lab().external.clone().unwrap();
    let ext_addr = SocketAddr::new(ext.ip.into(), 8443);
    peer_server(&ext.netns, ext_addr);
    let client_node = p.lab().nodes.iter().position(|n| n.name == p.node_of("client")).unwrap();
    let node_addr = format!("172.30.0.{}", client_node + 1);
    assert_eq!(
        read_from(&p.ns("client"), ext_addr),
        Ok(node_addr.clone()),
        "the world sees the node"
    );
    let nat = common::seta(&p.node_of("client"), &["bpf", "nat", "list"]);
    assert!(
        nat.as_array().unwrap().iter().any(|r| r["direction"] == "OUT"
            && r["src"].as_str().unwrap().starts_with(&format!("{}:", p.ip("client")))
            && r["dst"] == ext_addr.to_string()
            && r["to"].as_str().unwrap().starts_with(&format!("{node_addr}:"))),
        "{nat}"
    );
    // a bulk stream to the world: GRO-merged packets masqueraded and
    // forwarded by BPF
    let bulk = SocketAddr::new(ext.ip.into(), 9500);
    let (sent, got) = seta_lab::traffic::Stream::start(&p.ns("client"), &ext.netns, bulk, bulk, 1).finish();
    assert!(sent > 8 << 20 && got == sent, "a masqueraded stream: {got} of {sent} bytes");
    // between pods (and nodes) nothing is translated
    let web = p.ip("web");
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 9092));
    assert_eq!(
        read_from(&p.ns("client"), SocketAddr::new(web.into(), 9092)),
        Ok(p.ip("client").to_string())
    );
    // a ping is masqueraded too (its echo identifier is the NAT's port): the
    // external host, with no route back to the pod, answers the node
    let cidr = p.lab().nodes[client_node].pod_cidr.to_string();
    ip(&["-n", &ext.netns, "route", "del", &cidr]);
    assert!(ping_ok(&p.ns("client"), ext.ip), "a masqueraded ping is answered");
    let nat = common::seta(&p.node_of("client"), &["bpf", "nat", "list"]);
    assert!(
        nat.as_array().unwrap().iter().any(|r| r["proto"] == "ICMP"
            && r["direction"] == "OUT"
            && r["src"].as_str().unwrap().starts_with(&format!("{}:", p.ip("client")))
            && r["to"].as_str().unwrap().starts_with(&format!("{node_addr}:"))),
        "{nat}"
    );
    assert_eq!(
        read_from(&p.ns("client"), ext_addr),
        Ok(node_addr.clone()),
        "TCP needs no route back either"
    );
    // the external host's ICMP error (port unreachable, sent to the node)
    // reaches the pod's UDP socket: refused at once, not a timeout
    assert_eq!(
        udp_ask(&p.ns("client"), SocketAddr::new(ext.ip.into(), 9)),
        Err(std::io::ErrorKind::ConnectionRefused),
        "the ICMP error came back into the pod"
    );
    // a CIDR rule on the pod still decides: deny the external host
    p.apply(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: no-ext, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: client}}\n  egressDeny:\n  - toCIDR: [192.0.2.0/24]\n",
    );
    assert!(read_from(&p.ns("client"), ext_addr).is_err(), "denied before masquerade");
}

mod privileged_policy_bpf_masquerade_to_the_world {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_bpf_masquerade_to_the_world::tunnel") {
            return;
        }
        super::privileged_policy_bpf_masquerade_to_the_world(P::with("mqtunnel", Topo::Tunnel, true).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native() {
        if !privileged("privileged_policy_bpf_masquerade_to_the_world::native") {
            return;
        }
        super::privileged_policy_bpf_masquerade_to_the_world(P::with("mqnative", Topo::Native, true).await).await;
    }
}

/// The ip-masq-agent (Cilium's BPF one): its file's nonMasqueradeCIDRs keep
/// pods' addresses, everything else is masqueraded; the file is followed
/// while the agents run; a file that does not parse changes nothing and
/// `seta status` says why. No file: the default reserved ranges, among them
/// the external host's 192.0.2.0/24 (it routes pod CIDRs back).
async fn privileged_policy_bpf_masquerade_ip_masq_agent(p: P) {
    let ext = p.lab().external.clone().unwrap();
    let ext_addr = SocketAddr::new(ext.ip.into(), 8443);
    peer_server(&ext.netns, ext_addr);
    let node = p.node_of("client");
    let client_node = p.lab().nodes.iter().position(|n| n.name == node).unwrap();
    let node_addr = format!("172.30.0.{}", client_node + 1);
    let pod = p.ip("client").to_string();
    let conf = p.lab().ip_masq_agent_config();
    let ipmasq = |node: &str| -> Vec<(String, String)> {
        common::seta(node, &["bpf", "ipmasq", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["prefix"].as_str().unwrap().to_string(), r["sources"].to_string()))
            .collect()
    };
    let seen_as = |want: &str, why: &str| {
        common::wait_for(&format!("the external host sees {want} ({why})"), 15, || {
            read_from(&p.ns("client"), ext_addr).as_deref() == Ok(want)
        })
    };
    // no file: the defaults (with 192.0.2.0/24) and link-local, on every node
    for n in p.nodes() {
        let m = ipmasq(&n);
        assert_eq!(m.len(), 12, "{n}: {m:?}");
        assert!(m.contains(&("192.0.2.0/24".into(), r#"["ip-masq-agent"]"#.into())), "{m:?}");
        assert!(m.iter().any(|(p, _)| p == "169.254.0.0/16"), "{m:?}");
    }
    assert_eq!(
        read_from(&p.ns("client"), ext_addr).as_deref(),
        Ok(pod.as_str()),
        "a non-masquerade range"
    );
    let st = common::seta(&node, &["status"]);
    assert_eq!(st["masquerading"]["ip-masq-agent"], conf.display().to_string(), "{st}");
    // the file replaces the defaults: the world sees the node now
    std::fs::write(&conf, "nonMasqueradeCIDRs:\n- 10.0.0.0/8\n").unwrap();
    seen_as(&node_addr, "192.0.2.0/24 is no longer in the file");
    for n in p.nodes() {
        common::wait_for(&format!("{n} follows the file"), 15, || {
            ipmasq(&n).iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>() == ["10.0.0.0/8", "169.254.0.0/16"]
        });
    }
    // pods still reach each other with their own addresses
    let web = p.ip("web");
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 9092));
    assert_eq!(read_from(&p.ns("client"), SocketAddr::new(web.into(), 9092)), Ok(pod.clone()));
    // a file that does not parse: nothing changes, status names the field
    std::fs::write(&conf, "nonMasqueradeCIDRs: [192.0.2.0/24, 10.0.0.0/33]\n").unwrap();
    common::wait_for("status reports the bad file", 15, || {
        common::seta(&node, &["status"])["masquerading"]["config-error"]
            .as_str()
            .is_some_and(|e| e.contains("nonMasqueradeCIDRs[1]: \"10.0.0.0/33\""))
    });
    let text = common::seta_text(&node, &["status"]);
    assert!(text.contains("Masquerading:") && text.contains("CONFIG NOT TAKEN"), "{text}");
    assert_eq!(ipmasq(&node).len(), 2, "the ranges before stay");
    assert_eq!(read_from(&p.ns("client"), ext_addr), Ok(node_addr.clone()), "still masqueraded");
    // fixed, with masqLinkLocal: the external host's range keeps the pod's address again
    std::fs::write(&conf, "nonMasqueradeCIDRs: [192.0.2.0/25]\nmasqLinkLocal: true\n").unwrap();
    seen_as(&pod, "192.0.2.0/25 is in the file");
    assert_eq!(ipmasq(&node), [("192.0.2.0/25".to_string(), r#"["ip-masq-agent"]"#.to_string())]);
    assert!(common::seta(&node, &["status"])["masquerading"].get("config-error").is_none());
    // removed: the defaults again
    std::fs::remove_file(&conf).unwrap();
    common::wait_for("the defaults again", 15, || ipmasq(&node).len() == 12);
    assert_eq!(read_from(&p.ns("client"), ext_addr), Ok(pod));
}

mod privileged_policy_bpf_masquerade_ip_masq_agent {
    use super::*;
    fn opts() -> LabOptions {
        LabOptions {
            masquerade: true,
            ip_masq_agent: true,
            ..Default::default()
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_bpf_masquerade_ip_masq_agent::tunnel") {
            return;
        }
        super::privileged_policy_bpf_masquerade_ip_masq_agent(P::with_opts("imtunnel", Topo::Tunnel, opts()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native() {
        if !privileged("privileged_policy_bpf_masquerade_ip_masq_agent::native") {
            return;
        }
        super::privileged_policy_bpf_masquerade_ip_masq_agent(P::with_opts("imnative", Topo::Native, opts()).await).await;
    }
}

/// --ipv4-native-routing-cidr: destinations inside keep pods' addresses
/// (here the external host's network, routed back to pod CIDRs).
async fn privileged_policy_bpf_masquerade_native_routing_cidr(p: P) {
    let ext = p.lab().external.clone().unwrap();
    let ext_addr = SocketAddr::new(ext.ip.into(), 8443);
    peer_server(&ext.netns, ext_addr);
    assert_eq!(read_from(&p.ns("client"), ext_addr), Ok(p.ip("client").to_string()));
    for n in p.nodes() {
        let m = common::seta(&n, &["bpf", "ipmasq", "list"]);
        assert_eq!(
            m,
            serde_json::json!([{"prefix": "192.0.2.0/24", "sources": ["native-routing-cidr"]}]),
            "{n}"
        );
        let st = common::seta(&n, &["status"]);
        assert_eq!(st["masquerading"]["native-routing-cidr"], "192.0.2.0/24", "{st}");
        assert_eq!(st["masquerading"]["non-masquerade-cidrs"], serde_json::json!([]), "{st}");
    }
}

mod privileged_policy_bpf_masquerade_native_routing_cidr {
    use super::*;
    fn opts() -> LabOptions {
        LabOptions {
            masquerade: true,
            agent_args: vec!["--ipv4-native-routing-cidr".into(), "192.0.2.0/24".into()],
            ..Default::default()
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_bpf_masquerade_native_routing_cidr::tunnel") {
            return;
        }
        super::privileged_policy_bpf_masquerade_native_routing_cidr(P::with_opts("nrtunnel", Topo::Tunnel, opts()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native() {
        if !privileged("privileged_policy_bpf_masquerade_native_routing_cidr::native") {
            return;
        }
        super::privileged_policy_bpf_masquerade_native_routing_cidr(P::with_opts("nrnative", Topo::Native, opts()).await).await;
    }
}

/// Every address of a node is the host (identity 1) in its ipcache, as
/// Cilium's host IP sync makes it: `toEntities: [host]` covers a pod's
/// connection to any of them, `world` does not; an address added or
/// removed while the agent runs is followed.
async fn privileged_policy_host_entity_covers_the_nodes_addresses(p: P) {
    let node = p.node_of("client");
    let node_ns = p.lab().nodes.iter().find(|n| n.name == node).unwrap().netns.clone();
    let has = |ip: &str, id: u64| {
        common::seta(&node, &["bpf", "ipcache", "list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["prefix"] == format!("{ip}/32") && e["identity"] == id)
    };
    if p.topo != Topo::One {
        let idx = p.lab().nodes.iter().position(|n| n.name == node).unwrap();
        assert!(has(&format!("172.30.0.{}", idx + 1), 1), "the node's own address is the host");
    }
    // a new address of the node (on lo) becomes the host within seconds
    let extra = "198.51.100.7";
    ip(&["-n", &node_ns, "addr", "add", &format!("{extra}/32"), "dev", "lo"]);
    common::wait_for("the new address is the host in the ipcache", 15, || has(extra, 1));
    let to = SocketAddr::new(extra.parse::<Ipv4Addr>().unwrap().into(), 7070);
    peer_server(&node_ns, to);
    p.apply("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: to-host, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: client}}\n  egress:\n  - toEntities: [host]\n");
    assert_eq!(read_from(&p.ns("client"), to), Ok(p.ip("client").to_string()), "host covers it");
    p.delete(&["to-host"]);
    p.apply("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: to-world, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: client}}\n  egress:\n  - toEntities: [world]\n");
    assert!(read_from(&p.ns("client"), to).is_err(), "world does not");
    // removed: no longer the host
    ip(&["-n", &node_ns, "addr", "del", &format!("{extra}/32"), "dev", "lo"]);
    common::wait_for("the address leaves the ipcache", 15, || !has(extra, 1));
}

mod privileged_policy_host_entity_covers_the_nodes_addresses {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_host_entity_covers_the_nodes_addresses::one") {
            return;
        }
        super::privileged_policy_host_entity_covers_the_nodes_addresses(P::new("hostone", Topo::One).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_host_entity_covers_the_nodes_addresses::tunnel") {
            return;
        }
        super::privileged_policy_host_entity_covers_the_nodes_addresses(P::new("hosttunnel", Topo::Tunnel).await).await;
    }
}

/// For generated policies, `seta policy trace` predicts exactly what real TCP
/// connections between every pair of pods experience.
async fn privileged_policy_trace_agrees_with_real_packets(p: P) {
    let pods = ["web", "client", "other"];
    let ports = [8080u16, 9090];
    let _servers: Vec<Responder> = pods
        .iter()
        .flat_map(|pod| ports.iter().map(move |port| (pod, port)))
        .map(|(pod, port)| Responder::start(&p.ns(pod), SocketAddr::new(p.ip(pod).into(), *port)))
        .collect();
    let apps = ["web", "client", "other"];
    // deterministic pseudo-random policy generator (xorshift)
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut checked = 0;
    for round in 0..3 {
        let subject = apps[next(3) as usize];
        let peer = apps[next(3) as usize];
        let port = ports[next(2) as usize];
        let dir = if next(2) == 0 { "ingress" } else { "egress" };
        let sel = if dir == "ingress" { "fromEndpoints" } else { "toEndpoints" };
        let deny = if next(3) == 0 {
            format!(
                "\n  {dir}Deny:\n  - {sel}: [{{matchLabels: {{app: {}}}}}]\n    toPorts: [{{ports: [{{port: \"9090\", protocol: TCP}}]}}]",
                apps[next(3) as usize]
            )
        } else {
            String::new()
        };
        p.delete(&["--all"]);
        p.apply(&format!(
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: gen{round}, namespace: default}}\nspec:\n  endpointSelector: {{matchLabels: {{app: {subject}}}}}\n  {dir}:\n  - {sel}: [{{matchLabels: {{app: {peer}}}}}]\n    toPorts: [{{ports: [{{port: \"{port}\", protocol: TCP}}]}}]{deny}\n"
        ));
        for n in p.nodes() {
            let _ = Command::new(env!("CARGO_BIN_EXE_seta"))
                .args(["--node", &n, "bpf", "ct", "flush"])
                .output_within(seta_lab::wait::PROGRAM_TIMEOUT);
        }
        for src in pods {
            for dst in pods {
                if src == dst {
                    continue;
                }
                for port in ports {
                    // the verdict is the destination's ingress and the
                    // source's egress; trace on the destination's node
                    // resolves both from its view of the cluster
                    let (_, t) = p.trace(src, dst, port);
                    let real = tcp_ok(&p.ns(src), SocketAddr::new(p.ip(dst).into(), port));
                    assert_eq!(
                        t["allowed"] == true,
                        real,
                        "round {round}: {src} -> {dst}:{port}: trace {t}, packets {real}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 36);
}

scenario!(privileged_policy_ingress_allow_from_label_named_port_label_change_and_delete, "ia", [one => One, tunnel => Tunnel]);
scenario!(privileged_policy_deny_all_egress_one_port_and_deny_beats_allow, "da", [one => One, tunnel => Tunnel]);
scenario!(privileged_policy_namespace_selector_follows_namespace_labels, "ns", [one => One, tunnel => Tunnel]);
scenario!(privileged_policy_cidr_to_external_host_and_restart_keeps_enforcement, "ce", [one => One, tunnel => Tunnel, native => Native]);
scenario!(privileged_policy_import_is_all_or_nothing_with_clear_errors, "im", [one => One, tunnel => Tunnel]);
scenario!(privileged_policy_full_map_is_loud_and_never_allows, "fm", [one => One, tunnel => Tunnel]);
scenario!(privileged_policy_knp_ip_block_selects_pod_ips_per_ip, "ib", [one => One, tunnel => Tunnel, native => Native]);
scenario!(privileged_policy_cidr_rules_leave_pods_and_ipcache_intact, "cr", [one => One, tunnel => Tunnel, native => Native]);
scenario!(privileged_policy_trace_agrees_with_real_packets, "tr", [one => One, tunnel => Tunnel]);
scenario!(privileged_policy_service_cluster_ip_reaches_its_backend_with_policy, "sv", [one => One, tunnel => Tunnel, native => Native]);
scenario!(privileged_policy_service_session_affinity_keeps_a_client_on_one_backend, "sa", [one => One, tunnel => Tunnel]);
scenario!(privileged_policy_service_node_port_from_outside, "np", [tunnel => Tunnel, native => Native]);
scenario!(privileged_policy_service_external_ip_and_source_ranges, "ex", [tunnel => Tunnel, native => Native]);
mod privileged_policy_metrics_scraped_by_prometheus {
    use super::*;
    /// Agents count Hubble's metrics with context labels (`--hubble-metrics`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_metrics_scraped_by_prometheus::tunnel") {
            return;
        }
        let o = LabOptions {
            agent_args: vec![
                "--hubble-metrics".into(),
                "drop:sourceContext=pod|ip;destinationContext=pod flow tcp port-distribution policy".into(),
            ],
            ..Default::default()
        };
        super::privileged_policy_metrics_scraped_by_prometheus(P::with_opts("pmtunnel", Topo::Tunnel, o).await).await;
    }
}
scenario!(privileged_policy_flows_observed_by_seta_observe_and_a_grpc_client, "hb", [one => One, tunnel => Tunnel]);

/// `seta monitor` until a line `want` accepts shows, with `traffic` made
/// meanwhile; the line.
fn monitor_until(node: &str, args: &[&str], traffic: impl Fn(), want: impl Fn(&str) -> bool) -> Option<String> {
    monitor_lines_until(node, args, traffic, want).and_then(|l| l.last().cloned())
}

/// As [`monitor_until`]: every line printed up to the one `want` accepts.
fn monitor_lines_until(node: &str, args: &[&str], traffic: impl Fn(), want: impl Fn(&str) -> bool) -> Option<Vec<String>> {
    let mut mon = Command::new(bin_dir().join("seta"))
        .args(["--node", node, "monitor"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = mon.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (mut all, mut seen) = (vec![], false);
    while !seen && std::time::Instant::now() < deadline {
        traffic();
        while let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(300)) {
            seen = want(&l);
            all.push(l);
            if seen {
                break;
            }
        }
    }
    let _ = mon.kill();
    let _ = mon.wait();
    seen.then_some(all)
}

/// The datapath's debug messages (`--debug-verbose=datapath`, Cilium's
/// `cilium_dbg`): a connection's CT lookups, its verdict, the ipcache's
/// answer, the delivery (and in tunnel mode the encapsulation and the
/// decapsulation) on each node, in `seta observe debug-events` (Hubble's
/// compact line and protojson) and live in `seta monitor -t debug`.
async fn privileged_policy_datapath_debug_events(p: P) {
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)));
    let (cnode, wnode) = (p.node_of("client"), p.node_of("web"));
    let (cip, wip) = (p.ip("client"), p.ip("web"));
    let lookup = format!("Conntrack lookup 1/2: src={cip}:");
    let mut out = String::new();
    // (connections go on meanwhile: a message made just as the pods came up
    // may name the endpoint by its id only, as a flow would)
    common::wait_for("the client's CT lookup as a debug message", 15, || {
        assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)));
        out = observe(&p, &cnode, &["debug-events", "--last", "1000"]);
        out.lines().any(|l| {
            l.contains(": default/client (ID: ")
                && l.contains(" DBG_CT_LOOKUP4_1 MARK: 0x")
                && l.contains(&lookup)
                && l.ends_with(&format!(" dst={wip}:8080)"))
        })
    });
    assert!(
        out.lines()
            .any(|l| l.contains(" DBG_CT_VERDICT ") && l.contains("(CT verdict: New, revnat=0)")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains(" DBG_CT_LOOKUP4_2 ") && l.contains("(Conntrack lookup 2/2: nexthdr=6 flags=0)")),
        "{out}"
    );
    // delivered to web: on its node, from the client's identity
    let web = observe(&p, &wnode, &["debug-events", "--last", "1000"]);
    assert!(
        web.lines()
            .any(|l| l.contains(" DBG_LOCAL_DELIVERY ") && l.contains("(Attempting local delivery for container id ")),
        "{web}"
    );
    if p.topo == Topo::Tunnel {
        assert!(
            out.lines()
                .any(|l| l.contains(" DBG_IP_ID_MAP_SUCCEED4 ") && l.contains(&format!("(Successfully mapped addr={wip} to identity="))),
            "{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.contains(" DBG_ENCAP ") && l.contains("(Encapsulating to node ")),
            "{out}"
        );
        assert!(
            web.lines().any(|l| l.contains(" DBG_DECAP ") && l.contains("(Tunnel decap: id=")),
            "{web}"
        );
        let mut web = web;
        common::wait_for("the ingress lookup on web's node, from web's endpoint", 15, || {
            web = observe(&p, &wnode, &["debug-events", "--last", "1000"]);
            let named = web
                .lines()
                .any(|l| l.contains(" DBG_CT_LOOKUP4_1 ") && l.contains(": default/web (ID: ") && l.contains(&lookup));
            if !named {
                assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)));
            }
            named
        });
    }
    // protojson, the type by name
    let last: serde_json::Value =
        serde_json::from_str(observe(&p, &cnode, &["--type", "debug", "--last", "1", "-o", "json"]).trim()).unwrap();
    assert!(last["debug_event"]["type"].as_str().unwrap().starts_with("DBG_"), "{last}");
    assert!(last["debug_event"]["cpu"].is_number(), "{last}");
    assert_eq!(last["node_name"], cnode.as_str());
    // an independent gRPC client (GetDebugEvents from the .proto alone)
    let gen = python_protos(&p);
    let got = python_client(&gen, &cnode, &["debug", "0"]);
    let _ = std::fs::remove_dir_all(&gen);
    let lookup1 = got
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["type"] == "DBG_CT_LOOKUP4_1" && e["message"].as_str().unwrap().starts_with(&lookup) && e["source_pod"] == "default/client"
        })
        .unwrap_or_else(|| panic!("the lookup over gRPC, from the client's endpoint: {got}"));
    assert!(lookup1["cpu"].is_number(), "{lookup1}");
    assert_eq!(lookup1["node"], cnode.as_str());
    // live, as cilium-dbg monitor prints them
    let l = monitor_until(
        &cnode,
        &["--type", "debug"],
        || {
            let _ = tcp_ok(&p.ns("client"), p.web_addr(8080));
        },
        |l| l.contains(&lookup),
    )
    .expect("seta monitor -t debug printed the lookup");
    assert!(l.starts_with("CPU "), "{l}");
    assert!(l.contains(": MARK 0x") && l.contains(" DEBUG: Conntrack lookup 1/2: src="), "{l}");
}

mod privileged_policy_datapath_debug_events {
    use super::*;
    async fn with(tag: &str, topo: Topo) {
        let o = LabOptions {
            agent_args: vec!["--debug-verbose".into(), "datapath".into()],
            ..Default::default()
        };
        super::privileged_policy_datapath_debug_events(P::with_opts(tag, topo, o).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_datapath_debug_events::one") {
            return;
        }
        with("dbone", Topo::One).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_datapath_debug_events::tunnel") {
            return;
        }
        with("dbtunnel", Topo::Tunnel).await;
    }
}

/// What a connection from `ns` and local port `port` to `addr` reads (the
/// same 5-tuple every time it is called with the same arguments).
fn read_from_port(ns: &str, port: u16, addr: SocketAddr) -> String {
    seta_lab::spawn_in_netns(ns, move || {
        use nix::sys::socket::{bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
        use std::os::fd::AsRawFd;
        let SocketAddr::V4(a) = addr else { unreachable!() };
        let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::empty(), None).unwrap();
        setsockopt(&fd, sockopt::ReuseAddr, &true).unwrap();
        // a bounded connect (Linux honours the send timeout for it)
        setsockopt(&fd, sockopt::SendTimeout, &nix::sys::time::TimeVal::new(3, 0)).unwrap();
        bind(fd.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, port)).unwrap();
        connect(fd.as_raw_fd(), &SockaddrIn::from(a)).unwrap_or_else(|e| panic!("connect {addr} from port {port}: {e}"));
        let mut c = std::net::TcpStream::from(fd);
        c.set_read_timeout(Some(std::time::Duration::from_secs(3))).unwrap();
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut c, &mut s);
        s
    })
    .join()
    .unwrap()
}

/// Maglev (`--bpf-lb-algorithm maglev`): a flow from outside to an
/// ExternalIP reaches the same backend whichever node the router sends it
/// to, flows spread over the backends, and every node holds one table of M
/// slots for the frontend (`seta bpf lb maglev list`).
async fn privileged_policy_service_maglev_same_backend_on_every_node(p: P, annotated: bool) {
    for pod in ["web", "other", "client"] {
        let tag: &'static str = match pod {
            "web" => "web",
            "other" => "other",
            _ => "client",
        };
        tag_server(&p.ns(pod), SocketAddr::new(p.ip(pod).into(), 8080), tag);
    }
    let (web, other, client) = (p.ip("web"), p.ip("other"), p.ip("client"));
    let svc = |name: &str, n: u8, annotations: &str| {
        format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default{annotations}}}\nspec:\n  clusterIP: 10.96.0.{}\n  externalIPs: [198.51.100.{}]\n  ports: [{{name: http, port: 80}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-a, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}, {other}, {client}], conditions: {{ready: true}}}}\n", 45 + n, 70 + n)
    };
    // node-wide Maglev; or (annotated) random by default, and the service
    // annotated service.cilium.io/lb-algorithm: maglev next to one that is not
    services_import(
        &p,
        &match annotated {
            false => svc("mag", 0, ""),
            true => svc("mag", 0, ", annotations: {service.cilium.io/lb-algorithm: maglev}") + &svc("rnd", 1, ""),
        },
    );
    let want = if annotated {
        "Random (per-service annotation)"
    } else {
        "Maglev (Table Size: 16381)"
    };
    assert_eq!(p.seta(&["status"])["kube-proxy-replacement"]["backend-selection"], want);
    let ext = p.lab().external.clone().unwrap();
    let vip: SocketAddr = "198.51.100.70:80".parse().unwrap();
    let mut rounds = vec![];
    for node in 0..2 {
        p.lab().external_route("198.51.100.0/24".parse().unwrap(), node).await.unwrap();
        rounds.push((0..16).map(|i| read_from_port(&ext.netns, 41000 + i, vip)).collect::<Vec<String>>());
    }
    assert_eq!(rounds[0], rounds[1], "each flow has one backend, whichever node it enters");
    let seen: std::collections::BTreeSet<&String> = rounds[0].iter().collect();
    assert!(seen.len() >= 2, "flows spread over the backends: {:?}", rounds[0]);
    assert!(seen.iter().all(|t| ["web", "other", "client"].contains(&t.as_str())), "{seen:?}");
    for n in p.nodes() {
        let t = common::seta(&n, &["bpf", "lb", "maglev", "list"]);
        let t = t.as_array().unwrap();
        assert_eq!(t.len(), 1, "one table, mag's ExternalIP's (its ClusterIP and rnd are random): {n}");
        assert_eq!(t[0]["m"], 16381);
        let slots: Vec<u64> = t[0]["slots"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(slots.len(), 3, "{n}: {slots:?}");
        assert_eq!(slots.iter().sum::<u64>(), 16381);
        assert!(slots.iter().all(|s| (5400..=5520).contains(s)), "{n}: even shares {slots:?}");
    }
}

mod privileged_policy_service_maglev_same_backend_on_every_node {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_maglev_same_backend_on_every_node::tunnel") {
            return;
        }
        super::privileged_policy_service_maglev_same_backend_on_every_node(P::with_opts("mgtunnel", Topo::Tunnel, maglev()).await, false)
            .await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native() {
        if !privileged("privileged_policy_service_maglev_same_backend_on_every_node::native") {
            return;
        }
        // per-service: --bpf-lb-algorithm-annotation, random by default
        let o = LabOptions {
            agent_args: vec!["--bpf-lb-algorithm-annotation".into()],
            ..Default::default()
        };
        super::privileged_policy_service_maglev_same_backend_on_every_node(P::with_opts("mgnative", Topo::Native, o).await, true).await;
    }
}

/// Wait (at most 20 s) until a TCP connection from `ns` to `addr` is
/// `want` (allowed or denied): a policy from the API reaches every node.
fn until_tcp(ns: &str, addr: SocketAddr, want: bool, what: &str) {
    let t = std::time::Instant::now();
    while tcp_ok(ns, addr) != want {
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "timed out waiting for: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Under Kubernetes (`seta lab up --k8s`), driven only by kubectl: a
/// NetworkPolicy applied is enforced on every node; a CNP with a bad port
/// is refused with the field in its `status.nodes` (every node) and a
/// Warning Event, and changes nothing; a namespace label set with kubectl
/// flips a namespaceSelector; a deleted policy stops applying; `seta policy
/// import` is refused.
async fn privileged_policy_k8s_policies_from_kubectl(mut p: P) {
    let kubectl = |p: &P, args: &[&str], stdin: Option<&str>| {
        let (ok, out, err) = p.lab().kubectl(args, stdin).unwrap();
        assert!(ok, "kubectl {args:?}: {err}");
        out
    };
    assert_eq!(
        kubectl(
            &p,
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
        ),
        "namespace/shop created"
    );
    p.pod_add("shopper", 0, "shop", &["app=shopper"], &[]).await;
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    let web = p.web_addr(8080);
    assert!(tcp_ok(&p.ns("other"), web), "no policy yet");
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-ingress, namespace: default}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}, {namespaceSelector: {matchLabels: {team: a}}}]\n";
    assert_eq!(
        kubectl(&p, &["apply", "-f", "-"], Some(np)),
        "networkpolicy.networking.k8s.io/web-ingress created"
    );
    until_tcp(&p.ns("other"), web, false, "other is denied into web");
    assert!(tcp_ok(&p.ns("client"), web), "client (another node in tunnel mode) is allowed");
    assert!(!tcp_ok(&p.ns("shopper"), web), "shop has no team=a label yet");

    // a bad CNP: refused on every node, with the field; nothing changes
    let bad = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - toPorts: [{ports: [{port: \"99999\", protocol: TCP}]}]\n";
    assert_eq!(
        kubectl(&p, &["apply", "-f", "-"], Some(bad)),
        "ciliumnetworkpolicy.cilium.io/bad created"
    );
    let t = std::time::Instant::now();
    loop {
        let st = kubectl(&p, &["get", "cnp", "bad", "-o", "jsonpath={.status.nodes}"], None);
        let st: serde_json::Value = serde_json::from_str(if st.is_empty() { "{}" } else { &st }).unwrap();
        if p.nodes().iter().all(|n| st[n]["ok"] == false) {
            for n in p.nodes() {
                let e = st[&n]["error"].as_str().unwrap();
                assert!(
                    e.contains("spec.ingress[0].toPorts[0].ports[0].port") && e.contains("99999"),
                    "{n}: {e}"
                );
            }
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "every node's refusal in the status: {st}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let reasons = kubectl(
        &p,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=bad",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
        None,
    );
    assert!(
        reasons.split(' ').all(|r| r == "PolicyRejected") && reasons.split(' ').count() == p.nodes().len(),
        "{reasons}"
    );
    assert!(
        !tcp_ok(&p.ns("other"), web) && tcp_ok(&p.ns("client"), web),
        "the refused CNP changed nothing"
    );
    let st = p.seta(&["status"]);
    assert!(
        st["kubernetes"]
            .as_str()
            .unwrap()
            .contains("refused: CiliumNetworkPolicy default/bad"),
        "{st}"
    );

    // a namespace label flips the namespaceSelector
    assert_eq!(
        kubectl(&p, &["label", "namespace", "shop", "team=a"], None),
        "namespace/shop labeled"
    );
    until_tcp(&p.ns("shopper"), web, true, "shop's pods are allowed once it has team=a");

    // local imports are refused under Kubernetes
    let f = std::env::temp_dir().join(format!("{}-k8s.yaml", p.lab().name));
    std::fs::write(&f, np).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["--node", &p.node(), "policy", "import", f.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&f);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kubectl"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // the lab is the kubelet: Pods carry their phase and IP; every endpoint has its CiliumEndpoint
    assert_eq!(
        kubectl(&p, &["get", "pod", "web", "-o", "jsonpath={.status.phase} {.status.podIP}"], None),
        format!("Running {}", p.ip("web"))
    );
    let cep_identity = |p: &P, pod: &str, ns: &str| {
        let (ok, out, _) = p
            .lab()
            .kubectl(&["get", "cep", pod, "-n", ns, "-o", "jsonpath={.status.identity.id}"], None)
            .unwrap();
        ok.then(|| out.parse::<u64>().unwrap())
    };
    for (pod, ns) in [("web", "default"), ("client", "default"), ("shopper", "shop")] {
        let ep = p.seta_at(pod, &["endpoint", "get", &format!("pod-name:{ns}/{pod}")]);
        assert_eq!(cep_identity(&p, pod, ns), ep["identity"].as_u64(), "{pod}'s CiliumEndpoint");
    }
    // a Pod's label change re-identifies its endpoint (and the CEP follows)
    let before = p.seta_at("other", &["endpoint", "get", "pod-name:default/other"])["identity"].as_u64();
    assert_eq!(
        kubectl(&p, &["label", "pod", "other", "app=client", "--overwrite"], None),
        "pod/other labeled"
    );
    until_tcp(&p.ns("other"), web, true, "other, now app=client, is allowed into web");
    let after = p.seta_at("other", &["endpoint", "get", "pod-name:default/other"])["identity"].as_u64();
    assert_ne!(before, after);
    let t = std::time::Instant::now();
    while cep_identity(&p, "other", "default") != after {
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "other's CEP follows its identity");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        kubectl(&p, &["label", "pod", "other", "app=other", "--overwrite"], None),
        "pod/other labeled"
    );
    until_tcp(&p.ns("other"), web, false, "other is denied again");
    // a deleted pod takes its CEP
    p.t.lab.pod_del("shopper").await.unwrap();
    let t = std::time::Instant::now();
    while cep_identity(&p, "shopper", "shop").is_some() {
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "shopper's CEP is deleted");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // deleted: web is open again
    assert!(kubectl(&p, &["delete", "netpol", "web-ingress"], None).starts_with("networkpolicy.networking.k8s.io \"web-ingress\" deleted"));
    until_tcp(&p.ns("other"), web, true, "no policy selects web any more");
    assert!(p.seta(&["status"])["kubernetes"].as_str().unwrap().starts_with("ok (8 watches"));
}

mod privileged_policy_k8s_policies_from_kubectl {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_k8s_policies_from_kubectl::one") {
            return;
        }
        super::privileged_policy_k8s_policies_from_kubectl(P::with_opts("k8sone", Topo::One, k8s()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_k8s_policies_from_kubectl::tunnel") {
            return;
        }
        super::privileged_policy_k8s_policies_from_kubectl(P::with_opts("k8stunnel", Topo::Tunnel, k8s()).await).await;
    }
}
