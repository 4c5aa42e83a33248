//! Topology-aware routing under Kubernetes (`--enable-service-topology`,
//! Cilium's enable-service-topology), driven by kubectl: a Service with
//! `trafficDistribution: PreferClose` and EndpointSlice zone hints sends a
//! node's clients to the backends hinted for the zone of its Node
//! (`topology.kubernetes.io/zone`, set with `kubectl label node`); when no
//! backend is hinted for that zone, every backend serves. A `PreferSameNode`
//! service keeps a node's clients on its own backends.
use super::*;

/// The tags of 24 connections from `ns` to `vip` ("" for a connection that
/// failed).
fn seen(ns: &str, vip: SocketAddr) -> std::collections::BTreeMap<String, usize> {
    seta_lab::spawn_in_netns(ns, move || {
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..24 {
            let mut s = String::new();
            if let Ok(mut c) = std::net::TcpStream::connect_timeout(&vip, std::time::Duration::from_secs(1)) {
                c.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
                let _ = std::io::Read::read_to_string(&mut c, &mut s);
            }
            *seen.entry(s).or_insert(0) += 1;
        }
        seen
    })
    .join()
    .unwrap()
}

/// Wait until connections from `ns` to `vip` reach exactly the backends
/// tagged `want` (the maps follow a label or object change within seconds).
fn until_tags(ns: &str, vip: SocketAddr, want: &[&str], what: &str) {
    let t = std::time::Instant::now();
    loop {
        let seen = seen(ns, vip);
        if seen.keys().map(String::as_str).eq(want.iter().copied()) {
            return;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{what}: want only {want:?}, saw {seen:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

async fn privileged_policy_k8s_service_topology(mut p: P) {
    // backends: "web" on the first node, "near" on the last (the same one
    // node in a one-node lab); clients: "other" on the first, "client" on the last
    p.pod_add("near", 1, "default", &["app=near"], &[]).await;
    let kubectl = |args: &[&str], stdin: Option<&str>| {
        let (ok, out, err) = p.lab().kubectl(args, stdin).unwrap();
        assert!(ok, "kubectl {args:?}: {err}");
        out
    };
    let nodes = p.nodes();
    let (n0, n1) = (nodes[0].clone(), nodes[nodes.len() - 1].clone());
    let two = n0 != n1;
    let (web, near) = (p.ip("web"), p.ip("near"));
    tag_server(&p.ns("web"), SocketAddr::new(web.into(), 8080), "web");
    tag_server(&p.ns("near"), SocketAddr::new(near.into(), 8080), "near");
    let label = |node: &str, zone: &str| {
        kubectl(
            &["label", "node", node, &format!("topology.kubernetes.io/zone={zone}"), "--overwrite"],
            None,
        )
    };
    label(&n0, "a");
    if two {
        label(&n1, "b");
    }
    let objects = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: zonal, namespace: default}}\nspec:\n  clusterIP: 10.96.0.71\n  trafficDistribution: PreferClose\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: zonal-1, namespace: default, labels: {{kubernetes.io/service-name: zonal}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}, nodeName: {n0}, zone: a, hints: {{forZones: [{{name: a}}]}}}}\n- {{addresses: [{near}], conditions: {{ready: true}}, nodeName: {n1}, zone: b, hints: {{forZones: [{{name: b}}]}}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: local, namespace: default}}\nspec:\n  clusterIP: 10.96.0.72\n  trafficDistribution: PreferSameNode\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: local-1, namespace: default, labels: {{kubernetes.io/service-name: local}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}, nodeName: {n0}}}\n- {{addresses: [{near}], conditions: {{ready: true}}, nodeName: {n1}}}\n"
    );
    kubectl(&["apply", "-f", "-"], Some(&objects));
    let zonal: SocketAddr = "10.96.0.71:80".parse().unwrap();
    let local: SocketAddr = "10.96.0.72:80".parse().unwrap();
    // the first node (zone a) sends its clients to web, hinted for zone a
    until_tags(&p.ns("other"), zonal, &["web"], "zone a's node");
    if two {
        // the last node (zone b) to near; and each node to its own backend
        until_tags(&p.ns("client"), zonal, &["near"], "zone b's node");
        until_tags(&p.ns("client"), local, &["near"], "PreferSameNode, the last node");
        until_tags(&p.ns("other"), local, &["web"], "PreferSameNode, the first node");
        // a zone no backend is hinted for: every backend serves
        label(&n1, "z");
        until_tags(&p.ns("client"), zonal, &["near", "web"], "a zone without hints");
        until_tags(&p.ns("other"), zonal, &["web"], "zone a's node is unchanged");
    } else {
        // both backends are on this node: PreferSameNode keeps both
        until_tags(&p.ns("client"), local, &["near", "web"], "PreferSameNode, both local");
        label(&n0, "b");
        until_tags(&p.ns("client"), zonal, &["near"], "the node moved to zone b");
        label(&n0, "z");
        until_tags(&p.ns("client"), zonal, &["near", "web"], "a zone without hints");
    }
    // the service without a traffic distribution any more: every backend
    kubectl(
        &[
            "patch",
            "service",
            "zonal",
            "--type=merge",
            "-p",
            r#"{"spec":{"trafficDistribution":null}}"#,
        ],
        None,
    );
    label(&n0, "a");
    until_tags(&p.ns("other"), zonal, &["near", "web"], "no traffic distribution");
}

mod privileged_policy_k8s_service_topology {
    use super::*;
    fn opts() -> LabOptions {
        LabOptions {
            agent_args: vec!["--enable-service-topology".into()],
            ..k8s()
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_k8s_service_topology::one") {
            return;
        }
        super::privileged_policy_k8s_service_topology(P::with_opts("ktone", Topo::One, opts()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_k8s_service_topology::tunnel") {
            return;
        }
        super::privileged_policy_k8s_service_topology(P::with_opts("kttunnel", Topo::Tunnel, opts()).await).await;
    }
}

/// Cilium's selective service node exposure, driven by kubectl: a Service
/// annotated `service.cilium.io/node: beefy` is served only by nodes
/// labelled `service.cilium.io/node=beefy`, one annotated with a
/// `service.cilium.io/node-selector` only by nodes whose labels match it;
/// relabelling a node moves the service (Cilium needs the service updated
/// for that).
async fn privileged_policy_k8s_service_node_exposure(p: P) {
    let kubectl = |args: &[&str], stdin: Option<&str>| {
        let (ok, out, err) = p.lab().kubectl(args, stdin).unwrap();
        assert!(ok, "kubectl {args:?}: {err}");
        out
    };
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    let web = p.ip("web");
    let (client_node, other_node) = (p.node_of("client"), p.node_of("other"));
    let svc = |name: &str, ip: &str, annotation: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default, annotations: {{{annotation}}}}}\nspec:\n  clusterIP: {ip}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n---\n")
    };
    kubectl(
        &["label", "node", &client_node, "service.cilium.io/node=beefy", "--overwrite"],
        None,
    );
    let objects = [
        svc("beefy", "10.96.0.73", "service.cilium.io/node: beefy"),
        svc(
            "picky",
            "10.96.0.74",
            "\"service.cilium.io/node-selector\": \"service.cilium.io/node in (beefy, slow)\"",
        ),
    ]
    .concat();
    kubectl(&["apply", "-f", "-"], Some(&objects));
    let (beefy, picky): (SocketAddr, SocketAddr) = ("10.96.0.73:80".parse().unwrap(), "10.96.0.74:80".parse().unwrap());
    until_tcp(&p.ns("client"), beefy, true, "the labelled node serves the node-annotated service");
    until_tcp(
        &p.ns("client"),
        picky,
        true,
        "the labelled node serves the selector-annotated service",
    );
    let listed = |node: &str| {
        common::seta(node, &["service", "list"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["service"] == "default/beefy" || e["service"] == "default/picky")
            .count()
    };
    assert_eq!(listed(&client_node), 2);
    let st = common::seta(&client_node, &["status"]);
    assert_eq!(
        st["kube-proxy-replacement"]["annotations"],
        serde_json::json!([
            "service.cilium.io/node",
            "service.cilium.io/node-selector",
            "service.cilium.io/src-ranges-policy",
            "service.cilium.io/type"
        ]),
        "{st}"
    );
    if client_node != other_node {
        // the unlabelled node serves neither, nor lists them
        assert_eq!(listed(&other_node), 0);
        assert!(!tcp_ok(&p.ns("other"), beefy), "the unlabelled node does not serve it");
        assert!(!tcp_ok(&p.ns("other"), picky), "the unlabelled node does not serve it");
    }
    // a label the selector does not take: both are gone from that node
    kubectl(&["label", "node", &client_node, "service.cilium.io/node=fast", "--overwrite"], None);
    until_tcp(&p.ns("client"), beefy, false, "relabelled: the node-annotated service leaves");
    until_tcp(&p.ns("client"), picky, false, "relabelled: the selector-annotated service leaves");
    assert_eq!(listed(&client_node), 0);
    kubectl(&["label", "node", &client_node, "service.cilium.io/node=slow", "--overwrite"], None);
    until_tcp(&p.ns("client"), picky, true, "slow is in the selector's set");
    assert!(!tcp_ok(&p.ns("client"), beefy), "but not beefy");
}

mod privileged_policy_k8s_service_node_exposure {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_k8s_service_node_exposure::one") {
            return;
        }
        super::privileged_policy_k8s_service_node_exposure(P::with_opts("kxone", Topo::One, k8s()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_k8s_service_node_exposure::tunnel") {
            return;
        }
        super::privileged_policy_k8s_service_node_exposure(P::with_opts("kxtunnel", Topo::Tunnel, k8s()).await).await;
    }
}
