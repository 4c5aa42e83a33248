//! End-to-end policy scenarios in a lab: real TCP, UDP and ICMP through the
//! kernel, and the drop reason the datapath counted.
mod common;
use common::bin_dir;
use seta_lab::traffic::{ping_ok, tcp_ok, udp_ok, Responder};
use seta_lab::{privileged, Lab, TestLab};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

struct P {
    t: TestLab,
}

impl P {
    /// A lab with one node and pods web (app=web, port http=8080), client, other.
    async fn new(tag: &str) -> Self {
        let mut t = TestLab::up(tag, 1, 0, &bin_dir()).await.unwrap();
        let node = t.lab.nodes[0].name.clone();
        t.lab
            .pod_add(
                "web",
                &node,
                "default",
                &["app=web".into()],
                &["http=8080/TCP".into(), "dns=5353/UDP".into()],
            )
            .await
            .unwrap();
        t.lab
            .pod_add("client", &node, "default", &["app=client".into()], &[])
            .await
            .unwrap();
        t.lab.pod_add("other", &node, "default", &["app=other".into()], &[]).await.unwrap();
        Self { t }
    }
    fn lab(&self) -> &Lab {
        &self.t.lab
    }
    fn node(&self) -> String {
        self.lab().nodes[0].name.clone()
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
    /// Import a policy and wait until every endpoint enforces it.
    fn apply(&self, yaml: &str) {
        let f = std::env::temp_dir().join(format!("{}-{}.yaml", self.lab().name, rand_suffix()));
        std::fs::write(&f, yaml).unwrap();
        let r = self.seta(&["policy", "import", f.to_str().unwrap()]);
        let _ = std::fs::remove_file(&f);
        self.seta(&["policy", "wait", &r["revision"].to_string()]);
    }
    fn drops(&self, reason: &str, dir: &str) -> u64 {
        common::metric(&self.node(), reason, dir)
    }
    fn web_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip("web").into(), port)
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

const POLICY_DENIED: &str = "Policy denied";
const DENYLIST: &str = "Policy denied by denylist";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_policy_ingress_allow_from_label_named_port_label_change_and_delete() {
    if !privileged("privileged_policy_ingress_allow_from_label_named_port_label_change_and_delete") {
        return;
    }
    let mut p = P::new("pin").await;
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
        let id = p.seta(&["endpoint", "get", &format!("pod-name:default/{pod}")])["identity"].to_string();
        assert!(in_kv.contains(&id), "identity {id} of {pod} is in the kvstore: {kv}");
    }
    assert!(p.seta(&["status"])["kvstore"].as_str().unwrap().starts_with("embedded"));
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
    let node_ns = p.lab().nodes[0].netns.clone();
    assert!(tcp_ok(&node_ns, p.web_addr(8080)), "host -> web allowed");
    // verdict events name the connection and the verdict
    let ev = p.seta(&["events"]);
    assert!(ev
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["verdict"] == "denied" && e["drop-code"] == 133 && e["dst"] == format!("{}:8080", p.ip("web"))));
    // trace agrees
    let out = Command::new(env!("CARGO_BIN_EXE_seta"))
        .args([
            "--node",
            &p.node(),
            "policy",
            "trace",
            "--src-endpoint",
            "pod-name:default/other",
            "--dst-endpoint",
            "pod-name:default/web",
            "--dport",
            "8080/TCP",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "trace says DENIED: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // a label change flips connectivity
    p.t.lab.pod_label("other", &["app=client".into()]).await.unwrap();
    p.seta(&["policy", "wait"]);
    assert!(tcp_ok(&p.ns("other"), p.web_addr(8080)), "other relabelled app=client is allowed");
    p.t.lab.pod_label("other", &["app=other".into()]).await.unwrap();
    assert!(!tcp_ok(&p.ns("other"), p.web_addr(8080)), "and denied again");

    // deleting the policy restores connectivity
    let r = p.seta(&["policy", "delete", "web-from-client"]);
    p.seta(&["policy", "wait", &r["revision"].to_string()]);
    assert!(tcp_ok(&p.ns("other"), p.web_addr(8080)));
    assert!(ping_ok(&p.ns("other"), p.ip("web")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_policy_deny_all_egress_one_port_and_deny_beats_allow() {
    if !privileged("privileged_policy_deny_all_egress_one_port_and_deny_beats_allow") {
        return;
    }
    let p = P::new("pdn").await;
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
    p.seta(&["policy", "delete", "deny-all"]);

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
    p.seta(&["policy", "delete", "client-egress"]);

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
    let node = p.node();
    let mut lab = p.t.lab.clone();
    lab.pod_add("late1", &node, "default", &["app=late".into()], &[]).await.unwrap();
    lab.pod_add("late2", &node, "default", &["app=client,tier=x".into()], &[])
        .await
        .unwrap();
    lab.pod_del("late1").await.unwrap();
    assert_eq!(
        p.seta(&["policy", "verify"])["consistent"],
        true,
        "{}",
        p.seta(&["policy", "verify"])
    );
    let dl = p.drops(DENYLIST, "INGRESS");
    assert!(!tcp_ok(&p.ns("client"), p.web_addr(8080)), "the deny wins over allow-all");
    assert!(tcp_ok(&p.ns("other"), p.web_addr(8080)));
    assert!(p.drops(DENYLIST, "INGRESS") > dl, "counted as Policy denied by denylist (181)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_policy_namespace_selector_follows_namespace_labels() {
    if !privileged("privileged_policy_namespace_selector_follows_namespace_labels") {
        return;
    }
    let mut p = P::new("pns").await;
    let node = p.node();
    p.t.lab.namespace_set("prod", &["team=b".into()]).await.unwrap();
    p.t.lab
        .pod_add("prodpod", &node, "prod", &["app=client".into()], &[])
        .await
        .unwrap();
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
    p.seta(&["policy", "wait"]);
    assert!(tcp_ok(&p.ns("prodpod"), p.web_addr(8080)), "relabelling the namespace flips it");
    let ep = p.seta(&["endpoint", "get", "pod-name:prod/prodpod"]);
    assert!(ep["labels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["key"] == "io.cilium.k8s.namespace.labels.team" && l["value"] == "a"));
    // a CNP's fromEndpoints stays in its namespace unless it names one
    p.seta(&["policy", "delete", "--all"]);
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_policy_cidr_to_external_host_and_restart_keeps_enforcement() {
    if !privileged("privileged_policy_cidr_to_external_host_and_restart_keeps_enforcement") {
        return;
    }
    let mut p = P::new("pcd").await;
    let ext = p.lab().external.clone().unwrap();
    let ext_addr = SocketAddr::new(ext.ip.into(), 8443);
    let _e = Responder::start(&ext.netns, ext_addr);
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    assert!(tcp_ok(&p.ns("client"), ext_addr), "pods reach the external host through the node");
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
    let ipc = p.seta(&["bpf", "ipcache", "list"]);
    assert!(
        ipc.as_array()
            .unwrap()
            .iter()
            .any(|e| e["prefix"] == "192.0.2.0/24" && e["identity"].as_u64().unwrap() > (1 << 24)),
        "CIDR identity in the ipcache: {ipc}"
    );

    // SIGKILL the agent: enforcement continues; restart keeps it
    let node = p.node();
    p.t.lab.signal_agent(&node, nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(tcp_ok(&p.ns("client"), ext_addr), "allowed while the agent is down");
    assert!(!tcp_ok(&p.ns("client"), p.web_addr(8080)), "denied while the agent is down");
    p.t.lab.start_agent(&node).await.unwrap();
    p.seta(&["policy", "wait"]);
    assert_eq!(
        p.seta(&["policy", "get"])["policies"].as_array().unwrap().len(),
        1,
        "policies persisted"
    );
    assert!(tcp_ok(&p.ns("client"), ext_addr));
    assert!(!tcp_ok(&p.ns("client"), p.web_addr(8080)), "still denied after the restart");
    let eps = p.seta(&["endpoint", "list"]);
    let client = eps.as_array().unwrap().iter().find(|e| e["pod-name"] == "client").unwrap();
    assert_eq!(client["egress-enforced"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_policy_import_is_all_or_nothing_with_clear_errors() {
    if !privileged("privileged_policy_import_is_all_or_nothing_with_clear_errors") {
        return;
    }
    let p = P::new("pval").await;
    let f = std::env::temp_dir().join(format!("{}-bad.yaml", p.lab().name));
    std::fs::write(
        &f,
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: good, namespace: default}\nspec: {endpointSelector: {}, ingress: [{}]}\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad, namespace: default}\nspec:\n  endpointSelector: {}\n  egress:\n  - toFQDNs: [{matchName: example.com}]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["--node", &p.node(), "policy", "import", f.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&f);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("document 2") && err.contains("spec.egress[0].toFQDNs") && err.contains("not supported yet"),
        "{err}"
    );
    let st = p.seta(&["policy", "get"]);
    assert_eq!(st["revision"], 0, "nothing was imported");
    assert!(st["policies"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_policy_full_map_is_loud_and_never_allows() {
    if !privileged("privileged_policy_full_map_is_loud_and_never_allows") {
        return;
    }
    let p = P::new("pfull").await;
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
    let wait = Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["--node", &p.node(), "policy", "wait", "--timeout", "2"])
        .output()
        .unwrap();
    assert!(!wait.status.success(), "wait reports the endpoint that cannot enforce the policy");
    assert!(
        String::from_utf8_lossy(&wait.stderr).contains("policy map is full"),
        "{}",
        String::from_utf8_lossy(&wait.stderr)
    );
    let ep = p.seta(&["endpoint", "get", "pod-name:default/client"]);
    assert_eq!(ep["state"], "not-ready");
    assert!(ep["status-message"].as_str().unwrap().contains("full"));
    assert!(p.seta(&["status"])["policy-map-full-errors"].as_u64().unwrap() >= 1, "counted");
    assert!(
        !tcp_ok(&p.ns("client"), p.web_addr(8080)),
        "the old default-allow is gone: a full map never allows more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_policy_knp_ip_block_selects_pod_ips_per_ip() {
    if !privileged("privileged_policy_knp_ip_block_selects_pod_ips_per_ip") {
        return;
    }
    let mut p = P::new("pipb").await;
    let node = p.node();
    // a second client pod with the same labels (same identity) as `client`
    p.t.lab
        .pod_add("client2", &node, "default", &["app=client".into()], &[])
        .await
        .unwrap();
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    let (c1, c2) = (p.ip("client"), p.ip("client2"));
    let cidr = format!("{}/24", Ipv4Addr::from(u32::from(c1) & 0xffff_ff00));
    p.apply(&format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: ipblock, namespace: default}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress:
  - from: [{{ipBlock: {{cidr: {cidr}, except: [{c2}/32]}}}}]
"#
    ));
    assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)), "client's IP is in the block");
    assert!(
        !tcp_ok(&p.ns("client2"), p.web_addr(8080)),
        "same identity, but its IP is excepted: per IP, not per identity"
    );
    assert!(tcp_ok(&p.ns("other"), p.web_addr(8080)), "other's IP is in the block too");
    let out = Command::new(env!("CARGO_BIN_EXE_seta"))
        .args([
            "--node",
            &node,
            "policy",
            "trace",
            "--src-endpoint",
            "pod-name:default/client2",
            "--dst-endpoint",
            "pod-name:default/web",
            "--dport",
            "8080/TCP",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "trace agrees: {}", String::from_utf8_lossy(&out.stdout));
    // and a CNP fromCIDR over the same range selects no pod
    p.seta(&["policy", "delete", "--all"]);
    p.apply(&format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: cidr, namespace: default}}\nspec:\n  endpointSelector: {{matchLabels: {{app: web}}}}\n  ingress: [{{fromCIDR: [{cidr}]}}]\n"
    ));
    assert!(
        !tcp_ok(&p.ns("client"), p.web_addr(8080)),
        "CNP CIDR rules only select peers outside the cluster"
    );
}

/// For generated policies, `seta policy trace` predicts exactly what real TCP
/// connections between every pair of pods experience.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_policy_trace_agrees_with_real_packets() {
    if !privileged("privileged_policy_trace_agrees_with_real_packets") {
        return;
    }
    let p = P::new("ptr").await;
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
        p.seta(&["policy", "delete", "--all"]);
        p.apply(&format!(
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: gen{round}, namespace: default}}\nspec:\n  endpointSelector: {{matchLabels: {{app: {subject}}}}}\n  {dir}:\n  - {sel}: [{{matchLabels: {{app: {peer}}}}}]\n    toPorts: [{{ports: [{{port: \"{port}\", protocol: TCP}}]}}]{deny}\n"
        ));
        let _ = Command::new(env!("CARGO_BIN_EXE_seta"))
            .args(["--node", &p.node(), "bpf", "ct", "flush"])
            .output();
        for src in pods {
            for dst in pods {
                if src == dst {
                    continue;
                }
                for port in ports {
                    let out = Command::new(env!("CARGO_BIN_EXE_seta"))
                        .args(["--node", &p.node(), "-o", "json", "policy", "trace"])
                        .args([
                            "--src-endpoint",
                            &format!("pod-name:default/{src}"),
                            "--dst-endpoint",
                            &format!("pod-name:default/{dst}"),
                            "--dport",
                            &format!("{port}/TCP"),
                        ])
                        .output()
                        .unwrap();
                    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
