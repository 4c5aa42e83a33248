//! The lab as the kubelet (`seta lab up --k8s`), driven only by kubectl: a
//! Pod bound to a node and an unbound one (the lab binds it) get wired by
//! seta-cni and become Ready with their podIP; they talk to each other and
//! to the other pods, the unbound one's hostPort (from its Pod spec) answers
//! on its node's address from outside, from the node (also on 127.0.0.1,
//! with socket-LB) and from the pod itself; their CiliumEndpoints carry their address and
//! identity; a Pod that cannot be wired gets a FailedCreatePodSandBox Event
//! and leaves nothing; a deleted Pod leaves no namespace, no endpoint and
//! no CiliumEndpoint.
use super::*;

async fn privileged_policy_k8s_pods_from_kubectl(mut p: P) {
    let kubectl = |p: &P, args: &[&str], stdin: Option<&str>| {
        let (ok, out, err) = p.lab().kubectl(args, stdin).unwrap();
        assert!(ok, "kubectl {args:?}: {err}");
        out
    };
    let last = p.nodes().last().unwrap().clone();
    let pods = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: ka, namespace: default, labels: {{app: ka}}}}\nspec: {{nodeName: {last}, containers: [{{name: c, image: none}}]}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: kb, namespace: default, labels: {{app: kb}}}}\nspec: {{containers: [{{name: c, image: none, ports: [{{name: http, containerPort: 8080, hostPort: 8081}}]}}]}}\n"
    );
    assert_eq!(kubectl(&p, &["apply", "-f", "-"], Some(&pods)), "pod/ka created\npod/kb created");
    let out = kubectl(&p, &["wait", "--for=condition=Ready", "pod/ka", "pod/kb", "--timeout=60s"], None);
    assert_eq!(out, "pod/ka condition met\npod/kb condition met");
    p.t.lab = Lab::load(&p.lab().name).unwrap();
    let (a, b) = (p.ip("ka"), p.ip("kb"));
    let got = kubectl(
        &p,
        &[
            "get",
            "pod",
            "kb",
            "-o",
            "jsonpath={.spec.nodeName} {.status.podIP} {.status.phase}",
        ],
        None,
    );
    let kb_node = p.node_of("kb");
    assert_eq!(got, format!("{kb_node} {b} Running"));
    assert!(p.nodes().contains(&kb_node), "{kb_node}");
    assert_eq!(p.node_of("ka"), last);
    // they talk, to each other and to the pods `seta lab pod add` made
    peer_server(&p.ns("kb"), SocketAddr::new(b.into(), 8080));
    assert_eq!(read_from(&p.ns("ka"), SocketAddr::new(b.into(), 8080)), Ok(a.to_string()));
    assert_eq!(
        read_from(&p.ns("client"), SocketAddr::new(b.into(), 8080)),
        Ok(p.ip("client").to_string())
    );
    // the hostPort of kb's Pod spec, on its node's address from outside
    let ext = p.lab().external.clone().unwrap();
    let i = p.nodes().iter().position(|n| *n == kb_node).unwrap();
    let node_ip: Ipv4Addr = format!("172.30.0.{}", i + 1).parse().unwrap();
    assert!(
        read_from(&ext.netns, SocketAddr::new(node_ip.into(), 8081)).is_ok(),
        "hostPort 8081 of kb on {node_ip}"
    );
    // from its node, on the node's address and on 127.0.0.1 (socket-LB,
    // through the 0.0.0.0 surrogate); from kb itself through its node
    for addr in [node_ip.to_string(), "127.0.0.1".into()] {
        let argv: Vec<String> = [
            "python3",
            "-c",
            &format!("import socket; s = socket.create_connection(('{addr}', 8081), timeout=3); print(s.recv(64).decode())"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = p
            .lab()
            .node_exec(&kb_node, &argv)
            .unwrap()
            .output_within(std::time::Duration::from_secs(20))
            .unwrap();
        assert!(
            out.status.success() && !out.stdout.is_empty(),
            "the node to hostPort {addr}:8081: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        read_from(&p.ns("kb"), SocketAddr::new(node_ip.into(), 8081)).is_ok(),
        "kb to its own hostPort through its node"
    );
    // the CiliumEndpoint carries the address and the identity
    common::wait_for("kb's CiliumEndpoint", 20, || {
        let (ok, out, _) = p
            .lab()
            .kubectl(
                &[
                    "get",
                    "ciliumendpoint",
                    "kb",
                    "-o",
                    "jsonpath={.status.networking.addressing[0].ipv4} {.status.identity.labels}",
                ],
                None,
            )
            .unwrap();
        ok && out.starts_with(&format!("{b} ")) && out.contains("k8s:app=kb")
    });
    // CRD mode: kb's identity is a CiliumIdentity, every node a CiliumNode
    let id = kubectl(&p, &["get", "ciliumendpoint", "kb", "-o", "jsonpath={.status.identity.id}"], None);
    let cid: serde_json::Value = serde_json::from_str(&kubectl(&p, &["get", "ciliumidentity", &id, "-o", "json"], None)).unwrap();
    assert_eq!(cid["security-labels"]["k8s:app"], "kb", "{cid}");
    let cns = kubectl(
        &p,
        &[
            "get",
            "ciliumnodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.ipam.podCIDRs[0]}{\"\\n\"}{end}",
        ],
        None,
    );
    for n in &p.lab().nodes {
        assert!(cns.lines().any(|l| l == format!("{} {}", n.name, n.pod_cidr)), "{cns}");
    }
    assert!(p.seta(&["status"])["kvstore"].as_str().unwrap().starts_with("Disabled"));
    // a Pod that cannot be wired (its namespace name is a node's): an Event, nothing left
    let bad_name = last.strip_prefix(&format!("{}-", p.lab().name)).unwrap().to_string();
    let bad = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {bad_name}, namespace: default}}\nspec: {{nodeName: {last}, containers: [{{name: c, image: none}}]}}\n");
    kubectl(&p, &["apply", "-f", "-"], Some(&bad));
    common::wait_for("a FailedCreatePodSandBox Event", 20, || {
        let ev = kubectl(
            &p,
            &[
                "get",
                "events",
                "-o",
                "jsonpath={range .items[*]}{.reason} {.involvedObject.name} {.message}{\"\\n\"}{end}",
            ],
            None,
        );
        ev.lines()
            .any(|l| l.starts_with(&format!("FailedCreatePodSandBox {bad_name} ")) && l.contains("is taken"))
    });
    let phase = kubectl(&p, &["get", "pod", &bad_name, "-o", "jsonpath={.status.podIP}"], None);
    assert_eq!(phase, "", "an unwired Pod has no address");
    kubectl(&p, &["delete", "pod", &bad_name], None);
    // kb deleted: no namespace, no endpoint, no CiliumEndpoint; the hostPort is closed
    let kb_ns = p.ns("kb");
    assert_eq!(kubectl(&p, &["delete", "pod", "kb"], None), "pod \"kb\" deleted");
    common::wait_for("kb's namespace is gone", 20, || {
        !std::path::Path::new("/run/netns").join(&kb_ns).exists()
    });
    common::wait_for("kb's endpoint is gone", 20, || {
        !common::seta(&kb_node, &["endpoint", "list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["pod-name"] == "kb")
    });
    common::wait_for("kb's CiliumEndpoint is gone", 20, || {
        let (ok, _, err) = p.lab().kubectl(&["get", "ciliumendpoint", "kb"], None).unwrap();
        !ok && err.contains("NotFound")
    });
    p.t.lab = Lab::load(&p.lab().name).unwrap();
    assert!(p.lab().pod("kb").is_err());
    assert!(read_from(&ext.netns, SocketAddr::new(node_ip.into(), 8081)).is_err());
}

mod privileged_policy_k8s_pods_from_kubectl {
    use super::*;
    /// with socket-LB (127.0.0.1 reaches a hostPort through it)
    fn opts() -> LabOptions {
        LabOptions { socket_lb: true, ..k8s() }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_k8s_pods_from_kubectl::one") {
            return;
        }
        super::privileged_policy_k8s_pods_from_kubectl(P::with_opts("k8spone", Topo::One, opts()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_k8s_pods_from_kubectl::tunnel") {
            return;
        }
        super::privileged_policy_k8s_pods_from_kubectl(P::with_opts("k8sptun", Topo::Tunnel, opts()).await).await;
    }
}
