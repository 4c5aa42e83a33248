//! North-south services on one node: the external host reaches the node on
//! the underlay (the node also runs etcd's kvstore, as the two-node labs do)
//! and every backend is local, so no packet takes another node's way.
use super::*;

/// From outside, one node: NodePort (the client's address kept, a bulk
/// stream whole), ExternalIP, a LoadBalancer without node ports
/// (`allocateLoadBalancerNodePorts: false`), a LoadBalancer address with
/// `ipMode: Proxy` (not translated here, KEP-1860), source ranges (reason
/// 177 for a client outside them, not for the service's NodePort or a pod;
/// with `service.cilium.io/src-ranges-policy: deny`, for a client in them),
/// externalTrafficPolicy Local with its health check, a pod to its own
/// node's NodePort, and a NodePort without backends refused at once; with
/// `--bpf-lb-external-clusterip`, a ClusterIP from outside too; with
/// `service.cilium.io/type: LoadBalancer`, only the LoadBalancer address.
async fn privileged_policy_service_north_south_on_one_node(p: P) {
    let web = p.ip("web");
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 8080));
    let slice = |svc: &str, ports: &str| {
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {svc}-a, namespace: default, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: IPv4\nports: [{ports}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}, nodeName: {}}}\n", p.node())
    };
    let http = "{name: http, port: 8080}";
    let svc = |name: &str, spec: &str, status: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}{status}---\n")
    };
    let yaml = [
        svc(
            "np",
            "  type: NodePort\n  clusterIP: 10.96.0.30\n  ports: [{name: http, port: 80, nodePort: 30080}, {name: bulk, port: 90, nodePort: 30090}]\n",
            "",
        ),
        slice("np", "{name: http, port: 8080}, {name: bulk, port: 9000}"),
        "---\n".into(),
        svc("none", "  type: NodePort\n  clusterIP: 10.96.0.31\n  ports: [{name: http, port: 80, nodePort: 30081}]\n", ""),
        svc("eip", "  clusterIP: 10.96.0.40\n  externalIPs: [198.51.100.60]\n  ports: [{name: http, port: 80}]\n", ""),
        slice("eip", http),
        "---\n".into(),
        svc(
            "open",
            "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n  clusterIP: 10.96.0.41\n  loadBalancerSourceRanges: [172.30.0.200/32]\n  ports: [{name: http, port: 80}]\n",
            "status:\n  loadBalancer: {ingress: [{ip: 198.51.100.50}, {ip: 198.51.100.52, ipMode: Proxy}]}\n",
        ),
        slice("open", http),
        "---\n".into(),
        svc(
            "closed",
            "  type: LoadBalancer\n  clusterIP: 10.96.0.42\n  loadBalancerSourceRanges: [10.0.0.0/8]\n  ports: [{name: http, port: 80, nodePort: 30091}]\n",
            "status:\n  loadBalancer: {ingress: [{ip: 198.51.100.51}]}\n",
        ),
        slice("closed", http),
        "---\n".into(),
        svc(
            "denied",
            "  type: LoadBalancer\n  clusterIP: 10.96.0.44\n  loadBalancerSourceRanges: [172.30.0.200/32]\n  ports: [{name: http, port: 80, nodePort: 30093}]\n",
            "status:\n  loadBalancer: {ingress: [{ip: 198.51.100.54}]}\n",
        )
        .replace("namespace: default}", "namespace: default, annotations: {service.cilium.io/src-ranges-policy: deny}}"),
        slice("denied", http),
        "---\n".into(),
        svc(
            "local",
            "  type: LoadBalancer\n  clusterIP: 10.96.0.43\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 32000\n  ports: [{name: http, port: 80, nodePort: 30092}]\n",
            "",
        ),
        slice("local", http),
        "---\n".into(),
        svc(
            "lbonly",
            "  type: LoadBalancer\n  clusterIP: 10.96.0.45\n  ports: [{name: http, port: 80, nodePort: 30094}]\n",
            "status:\n  loadBalancer: {ingress: [{ip: 198.51.100.55}]}\n",
        )
        .replace("namespace: default}", "namespace: default, annotations: {service.cilium.io/type: LoadBalancer}}"),
        slice("lbonly", http),
    ]
    .concat();
    services_import(&p, &yaml);
    p.lab().external_route("198.51.100.0/24".parse().unwrap(), 0).await.unwrap();
    p.lab().external_route("10.96.0.0/16".parse().unwrap(), 0).await.unwrap();
    let ext = p.lab().external.clone().unwrap();
    let (node, ext_src) = ("172.30.0.1", "172.30.0.200".to_string());
    let at = |a: &str| -> SocketAddr { a.parse().unwrap() };
    // what the node serves: the VIP-mode address, not the Proxy one, and no
    // node port for the LoadBalancer that has none
    let list = p.seta(&["service", "list"]);
    let fronts: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["frontend"].as_str().unwrap()).collect();
    assert!(fronts.contains(&"198.51.100.50:80/TCP"), "{fronts:?}");
    assert!(!fronts.iter().any(|f| f.starts_with("198.51.100.52:")), "{fronts:?}");
    assert_eq!(
        fronts
            .iter()
            .filter(|f| f.starts_with(&format!("{node}:")) && !f.ends_with("/i"))
            .count(),
        6,
        "node ports of np (2), none, closed, denied and local (not lbonly's): {fronts:?}"
    );
    // eTP Local and iTP Cluster: the local service's node port has two scopes
    assert!(fronts.contains(&format!("{node}:30092/TCP/i").as_str()), "{fronts:?}");
    // service.cilium.io/type: LoadBalancer: its address only, no cluster IP
    assert!(fronts.contains(&"198.51.100.55:80/TCP"), "{fronts:?}");
    assert!(!fronts.contains(&"10.96.0.45:80/TCP"), "{fronts:?}");
    assert_eq!(
        read_from(&ext.netns, at("198.51.100.55:80")),
        Ok(ext_src.clone()),
        "LB address only"
    );
    assert_eq!(read_from(&ext.netns, at(&format!("{node}:30080"))), Ok(ext_src.clone()), "NodePort");
    let (sent, got) = seta_lab::traffic::Stream::start(
        &ext.netns,
        &p.ns("web"),
        SocketAddr::new(web.into(), 9000),
        at(&format!("{node}:30090")),
        1,
    )
    .finish();
    assert!(
        sent > 8 << 20 && got == sent,
        "a stream through the NodePort: {got} of {sent} bytes"
    );
    assert_eq!(read_from(&ext.netns, at("198.51.100.60:80")), Ok(ext_src.clone()), "ExternalIP");
    // --bpf-lb-external-clusterip: the ClusterIP is served from outside too
    assert_eq!(
        read_from(&ext.netns, at("10.96.0.30:80")),
        Ok(ext_src.clone()),
        "ClusterIP from outside"
    );
    let lb = p.seta(&["bpf", "lb", "list"]);
    let master = lb
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["service"] == "10.96.0.30:80/TCP" && e["slot"] == 0)
        .map(|e| e["entry"].to_string());
    assert!(master.is_some_and(|m| m.ends_with("[ClusterIP]\"")), "routable: {lb}");
    assert_eq!(
        read_from(&ext.netns, at("198.51.100.50:80")),
        Ok(ext_src.clone()),
        "LB IP without node ports, client in range"
    );
    assert!(
        read_from(&ext.netns, at("198.51.100.52:80")).is_err(),
        "ipMode Proxy: not served by the node"
    );
    let before = p.drops("Not in source range", "INGRESS");
    assert!(
        read_from(&ext.netns, at("198.51.100.51:80")).is_err(),
        "LB IP, client outside the ranges"
    );
    assert!(p.drops("Not in source range", "INGRESS") > before, "dropped with reason 177");
    // src-ranges-policy deny: the ranges are a deny list, and the client is in it
    let before = p.drops("Not in source range", "INGRESS");
    assert!(
        read_from(&ext.netns, at("198.51.100.54:80")).is_err(),
        "LB IP, client in the deny list"
    );
    assert!(p.drops("Not in source range", "INGRESS") > before, "dropped with reason 177");
    assert_eq!(
        read_from(&ext.netns, at(&format!("{node}:30091"))),
        Ok(ext_src.clone()),
        "the ranged service's NodePort"
    );
    let client = p.ip("client").to_string();
    assert_eq!(read_from(&p.ns("client"), at("198.51.100.51:80")), Ok(client.clone()), "a pod");
    assert_eq!(
        read_from(&ext.netns, at(&format!("{node}:30092"))),
        Ok(ext_src),
        "eTP Local, the backend's node"
    );
    let h = http_get(&ext.netns, at(&format!("{node}:32000")));
    assert!(h.starts_with("HTTP/1.1 200") && h.contains(r#""localEndpoints":1"#), "{h}");
    assert_eq!(
        read_from(&p.ns("client"), at(&format!("{node}:30080"))),
        Ok(client),
        "a pod to its own node's NodePort"
    );
    assert_eq!(
        read_from(&ext.netns, at(&format!("{node}:30081"))),
        Err(std::io::ErrorKind::ConnectionRefused),
        "no backend: refused"
    );
    p.verify();
}

mod privileged_policy_service_north_south_on_one_node {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_north_south_on_one_node::one") {
            return;
        }
        let o = LabOptions {
            agent_args: vec!["--bpf-lb-external-clusterip".into()],
            ..Default::default()
        };
        super::privileged_policy_service_north_south_on_one_node(P::with_opts("nsone", Topo::OneUnderlay, o).await).await;
    }
}

/// `--bpf-lb-source-range-all-types` (Cilium's): a LoadBalancer service's
/// `loadBalancerSourceRanges` hold for its NodePort and (served from outside
/// with `--bpf-lb-external-clusterip`) its ClusterIP too, allow list or
/// (`src-ranges-policy: deny`) deny list, with reason 177 for a client they
/// keep out; a pod is not held back by them. From the external host, to the
/// node without the backend on two nodes.
async fn privileged_policy_service_source_ranges_all_types(p: P) {
    let web = p.ip("web");
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 8080));
    let lb = |name: &str, n: u8, range: &str, annotations: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default{annotations}}}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.{n}\n  loadBalancerSourceRanges: [{range}]\n  ports: [{{name: http, port: 80, nodePort: 30{n}}}]\nstatus:\n  loadBalancer: {{ingress: [{{ip: 198.51.100.{n}}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-a, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n---\n")
    };
    let ext = p.lab().external.clone().unwrap();
    let yaml = [
        lb("closed", 161, "10.0.0.0/8", ""),
        lb("open", 162, &format!("{}/32", ext.gateway), ""),
        lb(
            "denied",
            163,
            &format!("{}/32", ext.gateway),
            ", annotations: {service.cilium.io/src-ranges-policy: deny}",
        ),
    ]
    .concat();
    services_import(&p, &yaml);
    // the router sends service addresses to the last node (web is on the first)
    let last = p.nodes().len() - 1;
    let node = format!("172.30.0.{}", last + 1);
    for net in ["198.51.100.0/24", "10.96.0.0/16"] {
        p.lab().external_route(net.parse().unwrap(), last).await.unwrap();
    }
    let at = |a: String| -> SocketAddr { a.parse().unwrap() };
    let frontends = |n: u8| [format!("198.51.100.{n}:80"), format!("{node}:30{n}"), format!("10.96.0.{n}:80")];
    for f in frontends(162) {
        assert!(read_from(&ext.netns, at(f.clone())).is_ok(), "{f}: the client is in the allow list");
    }
    for n in [161, 163] {
        for f in frontends(n) {
            let before = p.drops("Not in source range", "INGRESS");
            assert!(read_from(&ext.netns, at(f.clone())).is_err(), "{f}: kept out");
            assert!(p.drops("Not in source range", "INGRESS") > before, "{f}: reason 177");
        }
    }
    // the maps: each of the closed service's three frontends checks its ranges
    let lbl = p.seta_at("client", &["bpf", "lb", "list"]);
    for f in frontends(161) {
        let f = f.replace(":30161", ":30161/TCP").replace(":80", ":80/TCP");
        let master = lbl
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["service"] == f.as_str() && e["slot"] == 0)
            .unwrap_or_else(|| panic!("{f}: {lbl}"));
        assert!(master["entry"].as_str().unwrap().contains("check source-range"), "{master}");
    }
    // in-cluster clients are not held back
    assert_eq!(
        read_from(&p.ns("client"), at("10.96.0.161:80".into())),
        Ok(p.ip("client").to_string())
    );
    assert!(
        read_from(&p.ns("client"), at(format!("{node}:30161"))).is_ok(),
        "a pod to the NodePort"
    );
}

mod privileged_policy_service_source_ranges_all_types {
    use super::*;
    fn o() -> LabOptions {
        LabOptions {
            agent_args: vec!["--bpf-lb-source-range-all-types".into(), "--bpf-lb-external-clusterip".into()],
            ..Default::default()
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_source_ranges_all_types::one") {
            return;
        }
        super::privileged_policy_service_source_ranges_all_types(P::with_opts("srone", Topo::OneUnderlay, o()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_source_ranges_all_types::tunnel") {
            return;
        }
        super::privileged_policy_service_source_ranges_all_types(P::with_opts("srtun", Topo::Tunnel, o()).await).await;
    }
}

/// `--node-port-range 30000,40000` (Cilium's node-port-range, for an API
/// server with a wider `--service-node-port-range`): a nodePort of 35000 is
/// taken and served from outside, one of 45000 is refused at its field with
/// the range named and nothing imported; `seta status` shows the range; the
/// node's ephemeral ports (32768-60999) overlap it, so it joins the node's
/// `ip_local_reserved_ports` (auto-protection); BPF SNAT gives a port above
/// it, also to a client whose own port is inside it (two nodes).
async fn privileged_policy_service_node_port_range(p: P) {
    let web = p.ip("web");
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 8080));
    let svc = |name: &str, node_port: u16| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.{}\n  ports: [{{name: http, port: 80, nodePort: {node_port}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-a, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n---\n", node_port % 256)
    };
    // above the range: refused, naming the field and the range; nothing in
    let f = std::env::temp_dir().join(format!("{}-npr.yaml", p.lab().name));
    std::fs::write(&f, [svc("wide", 35000), svc("above", 45000)].concat()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["--node", &p.node(), "service", "import", f.to_str().unwrap()])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    let _ = std::fs::remove_file(&f);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("Service default/above") && err.contains("spec.ports[0].nodePort: 45000: must be in the NodePort range 30000-40000"),
        "{err}"
    );
    let listed = p.seta(&["service", "list"]);
    assert!(listed.as_array().unwrap().is_empty(), "all or nothing: {listed}");
    // inside the agent's range (above the default one): served from outside
    services_import(&p, &svc("wide", 35000));
    let last = p.nodes().len() - 1;
    let node: std::net::Ipv4Addr = format!("172.30.0.{}", last + 1).parse().unwrap();
    let ext = p.lab().external.clone().unwrap();
    let got = read_from(&ext.netns, SocketAddr::new(node.into(), 35000));
    assert!(got.is_ok(), "NodePort 35000 from outside: {got:?}");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["--node", &p.nodes()[last], "status"])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("NodePort (Range: 30000-40000)"), "{status}");
    // the range is reserved from the node's ephemeral ports
    let reserved = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &p.node_netns(&p.nodes()[last]),
            "cat",
            "/proc/sys/net/ipv4/ip_local_reserved_ports",
        ])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&reserved.stdout).trim(), "30000-40000");
    if p.nodes().len() == 1 {
        return;
    }
    // web is on the first node: the last SNATs, from a port above the range
    // even for a client port inside it (35555 would be kept by default)
    let peer = read_from_port(&ext.netns, 35555, SocketAddr::new(node.into(), 35000));
    assert_eq!(peer, node.to_string(), "SNAT to the node");
    let nat = common::seta(&p.nodes()[last], &["bpf", "nat", "list"]);
    let port = nat
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["direction"] == "OUT" && r["src"].as_str().is_some_and(|s| s.ends_with(":35555")))
        .and_then(|r| r["to"].as_str()?.rsplit_once(':')?.1.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no NAT entry of the client: {nat}"));
    assert!(port > 40000, "the SNAT port {port} is above the NodePort range");
}

mod privileged_policy_service_node_port_range {
    use super::*;
    fn o() -> LabOptions {
        LabOptions {
            agent_args: vec!["--node-port-range".into(), "30000,40000".into()],
            ..Default::default()
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_node_port_range::one") {
            return;
        }
        super::privileged_policy_service_node_port_range(P::with_opts("nprone", Topo::OneUnderlay, o()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_node_port_range::tunnel") {
            return;
        }
        super::privileged_policy_service_node_port_range(P::with_opts("nprtun", Topo::Tunnel, o()).await).await;
    }
}

/// `--k8s-service-proxy-name seta-a` (Cilium's, kube-proxy's
/// `service.kubernetes.io/service-proxy-name`): the agents serve the
/// service labelled with their name, from a pod by its ClusterIP and from
/// outside by its NodePort, and neither the unlabelled service nor one
/// labelled for another proxy, nor one of theirs also labelled
/// `service.kubernetes.io/headless` (Kubernetes' e2e "should implement
/// service.kubernetes.io/headless"): those are not listed, not in the maps,
/// and their addresses are not translated. Without the headless label, that
/// last one is served.
async fn privileged_policy_service_proxy_name(p: P) {
    let web = p.ip("web");
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 8080));
    let svc = |name: &str, label: &str, n: u8| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default{label}}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.{n}\n  ports: [{{name: http, port: 80, nodePort: 30{n}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-a, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n---\n")
    };
    let label = |proxy: &str| format!(", labels: {{service.kubernetes.io/service-proxy-name: {proxy}}}");
    let headless = ", labels: {service.kubernetes.io/service-proxy-name: seta-a, service.kubernetes.io/headless: \"\"}";
    services_import(
        &p,
        &[
            svc("mine", &label("seta-a"), 170),
            svc("plain", "", 171),
            svc("theirs", &label("other"), 172),
            svc("quiet", headless, 173),
        ]
        .concat(),
    );
    for n in p.nodes() {
        let listed = common::seta(&n, &["service", "list"]);
        let services: std::collections::BTreeSet<&str> =
            listed.as_array().unwrap().iter().map(|e| e["service"].as_str().unwrap()).collect();
        assert_eq!(services.into_iter().collect::<Vec<_>>(), ["default/mine"], "{n}: {listed}");
        let lb = common::seta(&n, &["bpf", "lb", "list"]).to_string();
        assert!(
            lb.contains("10.96.0.170:80") && ![171, 172, 173].iter().any(|i| lb.contains(&format!("10.96.0.{i}"))),
            "{n}: {lb}"
        );
    }
    let client = p.ip("client").to_string();
    let vip = |n: u8| SocketAddr::new(std::net::Ipv4Addr::new(10, 96, 0, n).into(), 80);
    assert_eq!(read_from(&p.ns("client"), vip(170)), Ok(client.clone()), "the labelled ClusterIP");
    for n in [171, 172, 173] {
        assert!(read_from(&p.ns("client"), vip(n)).is_err(), "10.96.0.{n} is not translated");
    }
    let ext = p.lab().external.clone().unwrap();
    let last = p.nodes().len() - 1;
    let node: std::net::Ipv4Addr = format!("172.30.0.{}", last + 1).parse().unwrap();
    assert!(
        read_from(&ext.netns, SocketAddr::new(node.into(), 30170)).is_ok(),
        "the labelled NodePort from outside"
    );
    for port in [30171, 30172, 30173] {
        assert!(
            read_from(&ext.netns, SocketAddr::new(node.into(), port)).is_err(),
            "NodePort {port} is nobody's here"
        );
    }
    // the headless label taken away: served like the other one of seta-a
    services_import(&p, &svc("quiet", &label("seta-a"), 173));
    assert_eq!(read_from(&p.ns("client"), vip(173)), Ok(client), "no longer labelled headless");
    assert!(
        read_from(&ext.netns, SocketAddr::new(node.into(), 30173)).is_ok(),
        "its NodePort from outside"
    );
}

mod privileged_policy_service_proxy_name {
    use super::*;
    fn o() -> LabOptions {
        LabOptions {
            agent_args: vec!["--k8s-service-proxy-name".into(), "seta-a".into()],
            ..Default::default()
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_proxy_name::one") {
            return;
        }
        super::privileged_policy_service_proxy_name(P::with_opts("pxone", Topo::OneUnderlay, o()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_proxy_name::tunnel") {
            return;
        }
        super::privileged_policy_service_proxy_name(P::with_opts("pxtun", Topo::Tunnel, o()).await).await;
    }
}

/// Service `np` (NodePort `node_port`, ExternalIP `external_ip`) with the
/// pod at `web` as its one backend, on port 8080.
fn np_service(web: std::net::Ipv4Addr, cluster_ip: &str, external_ip: &str, node_port: u16) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: np, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: {cluster_ip}\n  externalIPs: [{external_ip}]\n  ports: [{{name: http, port: 80, targetPort: 8080, nodePort: {node_port}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: np-a, namespace: default, labels: {{kubernetes.io/service-name: np}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n")
}

/// `--kube-proxy-replacement=false` (Cilium's default, beside kube-proxy):
/// a pod still reaches a ClusterIP (per-packet LB, on one node and across
/// nodes), while the service's NodePort and ExternalIP are not served by
/// the agent (kube-proxy's then): not listed, not in the maps, and nothing
/// answers from outside; `seta status` says False.
async fn privileged_policy_service_without_kube_proxy_replacement(p: P) {
    let web = p.ip("web");
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 8080));
    services_import(&p, &np_service(web, "10.96.0.180", "198.51.100.81", 30180));
    for n in p.nodes() {
        let listed = common::seta(&n, &["service", "list"]);
        let frontends: Vec<&str> = listed.as_array().unwrap().iter().map(|e| e["frontend"].as_str().unwrap()).collect();
        assert_eq!(frontends, ["10.96.0.180:80/TCP"], "{n}: {listed}");
        let lb = common::seta(&n, &["bpf", "lb", "list"]).to_string();
        assert!(!lb.contains(":30180") && !lb.contains("198.51.100.81"), "{n}: {lb}");
        let status = common::seta_text(&n, &["status"]);
        assert!(
            status.contains("KubeProxyReplacement:") && status.contains("False [Socket LB: Disabled"),
            "{status}"
        );
    }
    assert_cluster_ip_and_node_port(&p, "10.96.0.180:80", 30180, false);
}

/// The ClusterIP `vip` answers the client pod; the NodePort `node_port`
/// answers the external host through every node when `served`, else
/// through none.
fn assert_cluster_ip_and_node_port(p: &P, vip: &str, node_port: u16, served: bool) {
    assert_eq!(
        read_from(&p.ns("client"), vip.parse().unwrap()),
        Ok(p.ip("client").to_string()),
        "the ClusterIP from a pod"
    );
    let ext = p.lab().external.clone().unwrap();
    for i in 0..p.nodes().len() {
        assert_eq!(
            read_from(&ext.netns, SocketAddr::new(p.node_addr(i).into(), node_port)).is_ok(),
            served,
            "the NodePort through node {i}: served by the agent: {served}"
        );
    }
}

mod privileged_policy_service_without_kube_proxy_replacement {
    use super::*;
    fn o() -> LabOptions {
        LabOptions {
            agent_args: vec!["--kube-proxy-replacement=false".into()],
            ..Default::default()
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_without_kube_proxy_replacement::one") {
            return;
        }
        super::privileged_policy_service_without_kube_proxy_replacement(P::with_opts("nokone", Topo::OneUnderlay, o()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_without_kube_proxy_replacement::tunnel") {
            return;
        }
        super::privileged_policy_service_without_kube_proxy_replacement(P::with_opts("noktun", Topo::Tunnel, o()).await).await;
    }
}

/// Cilium's partial replacement: `--kube-proxy-replacement=false
/// --enable-node-port` serves ClusterIPs and NodePorts (from the external
/// host, through either node), not ExternalIPs; status says which is whose.
async fn privileged_policy_service_partial_kube_proxy_replacement(p: P) {
    let web = p.ip("web");
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 8080));
    services_import(&p, &np_service(web, "10.96.0.181", "198.51.100.82", 30181));
    for n in p.nodes() {
        let listed = common::seta(&n, &["service", "list"]);
        let mut frontends: Vec<&str> = listed.as_array().unwrap().iter().map(|e| e["frontend"].as_str().unwrap()).collect();
        frontends.dedup();
        assert!(frontends.contains(&"10.96.0.181:80/TCP"), "{n}: {listed}");
        assert!(
            frontends.iter().any(|f| f.ends_with(":30181/TCP")),
            "{n}: the NodePort is served: {listed}"
        );
        assert!(
            !frontends.iter().any(|f| f.starts_with("198.51.100.82")),
            "{n}: not the ExternalIP: {listed}"
        );
        let status = common::seta_text(&n, &["status"]);
        assert!(
            status.contains("False [")
                && status.contains("Services: ClusterIP, NodePort, LoadBalancer; externalIPs, HostPort are kube-proxy's"),
            "{status}"
        );
    }
    assert_cluster_ip_and_node_port(&p, "10.96.0.181:80", 30181, true);
}

mod privileged_policy_service_partial_kube_proxy_replacement {
    use super::*;
    fn o() -> LabOptions {
        LabOptions {
            agent_args: vec!["--kube-proxy-replacement=false".into(), "--enable-node-port".into()],
            ..Default::default()
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_partial_kube_proxy_replacement::one") {
            return;
        }
        super::privileged_policy_service_partial_kube_proxy_replacement(P::with_opts("pkone", Topo::OneUnderlay, o()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_partial_kube_proxy_replacement::tunnel") {
            return;
        }
        super::privileged_policy_service_partial_kube_proxy_replacement(P::with_opts("pktun", Topo::Tunnel, o()).await).await;
    }
}

/// Cilium's `--nodeport-addresses`: each node's device gets a second
/// address. By default a NodePort is served on the primary address only
/// (the second one answers nothing: no listener, a reset); with
/// `--nodeport-addresses 172.30.0.0/24` on both, listed and shown in
/// status, and on a third address while it is there (added and removed
/// with the agent running); with the second addresses' /32s, on them and
/// not on the primary.
async fn privileged_policy_service_nodeport_addresses(mut p: P) {
    let web = p.ip("web");
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 8080));
    services_import(
        &p,
        &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: np, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.190\n  ports: [{{name: http, port: 80, targetPort: 8080, nodePort: 30190}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: np-a, namespace: default, labels: {{kubernetes.io/service-name: np}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n"),
    );
    let nodes = p.nodes();
    let primary = |i: usize| -> std::net::Ipv4Addr { format!("172.30.0.{}", i + 1).parse().unwrap() };
    let second = |i: usize| -> std::net::Ipv4Addr { format!("172.30.0.{}", i + 101).parse().unwrap() };
    let addr = |p: &P, op: &str, n: &str, a: std::net::Ipv4Addr| {
        ip(&["-n", &p.node_netns(n), "addr", op, &format!("{a}/24"), "dev", "ul0"]);
    };
    for (i, n) in nodes.iter().enumerate() {
        addr(&p, "add", n, second(i));
    }
    let ext = p.lab().external.clone().unwrap();
    let served = |a: std::net::Ipv4Addr| read_from(&ext.netns, SocketAddr::new(a.into(), 30190)).is_ok();
    // (re)start the agents with `args` after the lab's own (routing, kvstore):
    // they read the device's addresses then
    let base = p.t.lab.agent_args.clone();
    async fn restart(p: &mut P, base: &[String], args: &[&str]) {
        p.t.lab.agent_args = base.iter().cloned().chain(args.iter().map(|a| a.to_string())).collect();
        for n in p.nodes() {
            p.t.lab.stop_agent(&n).unwrap();
            p.t.lab.start_agent(&n).await.unwrap();
        }
        services_synced(p);
    }
    for i in 0..nodes.len() {
        assert!(served(primary(i)), "node {i}: the primary address serves, by default");
        assert!(!served(second(i)), "node {i}: the second address does not, by default");
    }
    let node_ports = |n: &str| -> Vec<String> {
        let l = common::seta(n, &["service", "list"]);
        let mut v: Vec<String> = l
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "NodePort")
            .map(|e| e["frontend"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(node_ports(&nodes[0]), ["0.0.0.0:30190/TCP", "172.30.0.1:30190/TCP"]);
    restart(&mut p, &base, &["--nodeport-addresses", "172.30.0.0/24"]).await;
    for i in 0..nodes.len() {
        assert!(served(primary(i)) && served(second(i)), "node {i}: both addresses serve");
    }
    assert_eq!(
        node_ports(&nodes[0]),
        ["0.0.0.0:30190/TCP", "172.30.0.101:30190/TCP", "172.30.0.1:30190/TCP"]
    );
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["--node", &nodes[0], "status"])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("NodePort Addresses: 172.30.0.1, 172.30.0.101,"), "{status}");
    // followed while the agents run: an address added inside serves, and
    // stops when it is removed
    let third = |i: usize| -> std::net::Ipv4Addr { format!("172.30.0.{}", i + 151).parse().unwrap() };
    for (i, n) in nodes.iter().enumerate() {
        addr(&p, "add", n, third(i));
        common::wait_for(&format!("{n} serves its new address"), 10, || served(third(i)));
        addr(&p, "del", n, third(i));
        common::wait_for(&format!("{n} stops serving the removed address"), 10, || {
            !node_ports(n).contains(&format!("{}:30190/TCP", third(i)))
        });
    }
    let seconds: Vec<String> = (0..nodes.len()).map(|i| format!("{}/32", second(i))).collect();
    restart(&mut p, &base, &["--nodeport-addresses", &seconds.join(",")]).await;
    for i in 0..nodes.len() {
        assert!(!served(primary(i)) && served(second(i)), "node {i}: the second address only");
    }
}

mod privileged_policy_service_nodeport_addresses {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_nodeport_addresses::one") {
            return;
        }
        super::privileged_policy_service_nodeport_addresses(P::with_opts("npaone", Topo::OneUnderlay, Default::default()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_nodeport_addresses::tunnel") {
            return;
        }
        super::privileged_policy_service_nodeport_addresses(P::with_opts("npatun", Topo::Tunnel, Default::default()).await).await;
    }
}

/// `--enable-session-affinity=false --enable-health-check-nodeport=false`
/// (Cilium's flags, on by default): a service with `sessionAffinity:
/// ClientIP` spreads one client's connections over both backends, and its
/// healthCheckNodePort is not served (nothing listens), while its NodePort
/// is.
async fn privileged_policy_service_affinity_and_health_checks_off(p: P) {
    let (web, other) = (p.ip("web"), p.ip("other"));
    tag_server(&p.ns("web"), SocketAddr::new(web.into(), 8080), "web");
    tag_server(&p.ns("other"), SocketAddr::new(other.into(), 8080), "other");
    services_import(
        &p,
        &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: sticky, namespace: default}}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.200\n  sessionAffinity: ClientIP\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 32010\n  ports: [{{name: http, port: 80, targetPort: 8080, nodePort: 30200}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: sticky-a, namespace: default, labels: {{kubernetes.io/service-name: sticky}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}, nodeName: {n}}}\n- {{addresses: [{other}], conditions: {{ready: true}}, nodeName: {n}}}\n", n = p.node()),
    );
    let seen = tags(&p.ns("client"), "10.96.0.200:80".parse().unwrap(), 24);
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        ["other", "web"],
        "no affinity: both backends serve one client: {seen:?}"
    );
    let ext = p.lab().external.clone().unwrap();
    let node0: std::net::Ipv4Addr = "172.30.0.1".parse().unwrap();
    assert!(
        read_from(&ext.netns, SocketAddr::new(node0.into(), 30200)).is_ok(),
        "the NodePort of the backends' node serves"
    );
    assert_eq!(
        read_from(&ext.netns, SocketAddr::new(node0.into(), 32010)),
        Err(std::io::ErrorKind::ConnectionRefused),
        "no health check server"
    );
}

mod privileged_policy_service_affinity_and_health_checks_off {
    use super::*;
    fn o() -> LabOptions {
        LabOptions {
            agent_args: vec![
                "--enable-session-affinity=false".into(),
                "--enable-health-check-nodeport=false".into(),
            ],
            ..Default::default()
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_affinity_and_health_checks_off::one") {
            return;
        }
        super::privileged_policy_service_affinity_and_health_checks_off(P::with_opts("affone", Topo::OneUnderlay, o()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_affinity_and_health_checks_off::tunnel") {
            return;
        }
        super::privileged_policy_service_affinity_and_health_checks_off(P::with_opts("afftun", Topo::Tunnel, o()).await).await;
    }
}

/// ICMP errors about service connections name the frontend, as kube-proxy's
/// conntrack NAT makes them: a UDP service answers through its ClusterIP
/// and NodePort while its backend listens; once nothing listens on the
/// target port, each client is refused at once (ECONNREFUSED, the
/// backend's port unreachable, not the no-backend reject: the service
/// keeps its backend) instead of waiting for an answer: the ClusterIP from
/// a pod on the backend's node and from one on the other node, and the
/// NodePort from the external host through the backend's node (the
/// client's address kept) and through the other node (SNAT, or DSR).
async fn privileged_policy_service_icmp_errors_name_the_frontend(p: P) {
    let web = p.ip("web");
    services_import(
        &p,
        &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: ie, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.190\n  ports: [{{name: dns, protocol: UDP, port: 53, targetPort: 5399, nodePort: 30190}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: ie-a, namespace: default, labels: {{kubernetes.io/service-name: ie}}}}\naddressType: IPv4\nports: [{{name: dns, protocol: UDP, port: 5399}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n"),
    );
    let ext = p.lab().external.clone().unwrap();
    let vip: SocketAddr = "10.96.0.190:53".parse().unwrap();
    let node_ports: Vec<SocketAddr> = (0..p.nodes().len())
        .map(|i| SocketAddr::new(p.node_addr(i).into(), 30190))
        .collect();
    let asks = || {
        let mut got = vec![];
        for pod in ["other", "client"] {
            got.push((format!("{pod} -> ClusterIP"), udp_ask(&p.ns(pod), vip)));
        }
        for (i, np) in node_ports.iter().enumerate() {
            got.push((format!("external -> NodePort of node {i}"), udp_ask(&ext.netns, *np)));
        }
        got
    };
    {
        let _r = Responder::start(&p.ns("web"), SocketAddr::new(web.into(), 5399));
        for (who, got) in asks() {
            assert_eq!(got, Ok(2), "{who}: answered from the frontend");
        }
    }
    for (who, got) in asks() {
        assert_eq!(
            got,
            Err(std::io::ErrorKind::ConnectionRefused),
            "{who}: the backend's port unreachable"
        );
    }
}

/// The other way: the client's ICMP error about a service's reply reaches
/// the backend, about the reply as the backend sent it. A UDP backend
/// answers a datagram 300 ms later, on a socket connected to its sender;
/// the client's socket is closed by then, so the client answers with a port
/// unreachable (to the frontend it asked), and the backend's next receive
/// is refused at once: from the external host through the backend's node
/// (the client's address kept) and through the other node (SNAT: the
/// backend's peer is that node's NAT port), and from a pod on the backend's
/// node and one on the other node through the ClusterIP (per-packet LB: the
/// pod's error to the ClusterIP goes to the backend).
async fn privileged_policy_service_icmp_errors_reach_the_backend(p: P) {
    use std::net::UdpSocket;
    use std::time::Duration;
    let web = p.ip("web");
    services_import(
        &p,
        &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: ib, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.191\n  ports: [{{name: dns, protocol: UDP, port: 53, targetPort: 5398, nodePort: 30191}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: ib-a, namespace: default, labels: {{kubernetes.io/service-name: ib}}}}\naddressType: IPv4\nports: [{{name: dns, protocol: UDP, port: 5398}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n"),
    );
    let ext = p.lab().external.clone().unwrap();
    // (who, where the client runs, what it asks, whether the backend sees
    // the client's own address)
    let mut cases: Vec<(String, String, SocketAddr, bool)> = (0..p.nodes().len())
        .map(|i| {
            let np = SocketAddr::new(p.node_addr(i).into(), 30191);
            (format!("external -> NodePort of node {i}"), ext.netns.clone(), np, i == 0)
        })
        .collect();
    for pod in ["other", "client"] {
        cases.push((format!("{pod} -> ClusterIP"), p.ns(pod), "10.96.0.191:53".parse().unwrap(), true));
    }
    for (who, ns, target, own) in cases {
        let bind = SocketAddr::new(web.into(), 5398);
        let (tx, rx) = std::sync::mpsc::channel();
        let server = seta_lab::spawn_in_netns(&p.ns("web"), move || -> Result<SocketAddr, String> {
            let s = UdpSocket::bind(bind).unwrap();
            tx.send(()).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 64];
            let (_, peer) = s.recv_from(&mut buf).map_err(|e| format!("no request: {e}"))?;
            std::thread::sleep(Duration::from_millis(300));
            s.connect(peer).unwrap();
            s.send(b"late").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            match s.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(peer),
                other => Err(format!("after the late answer to {peer}: {other:?}")),
            }
        });
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        // the client's socket is gone when this returns
        let client = seta_lab::spawn_in_netns(&ns, move || {
            let c = UdpSocket::bind("0.0.0.0:0").unwrap();
            c.connect(target).unwrap();
            c.send(b"hello").unwrap();
            c.local_addr().unwrap()
        })
        .join()
        .unwrap();
        let peer = server.join().unwrap().unwrap_or_else(|e| panic!("{who}: {e}"));
        // the backend's peer: the client itself, or the other node (SNAT)
        match own {
            true => assert_eq!(peer, client, "{who}"),
            false => assert_eq!(peer.ip(), target.ip(), "{who}"),
        }
    }
}

mod privileged_policy_service_icmp_errors_reach_the_backend {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_icmp_errors_reach_the_backend::one") {
            return;
        }
        super::privileged_policy_service_icmp_errors_reach_the_backend(P::new("ibone", Topo::OneUnderlay).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_icmp_errors_reach_the_backend::tunnel") {
            return;
        }
        super::privileged_policy_service_icmp_errors_reach_the_backend(P::new("ibtun", Topo::Tunnel).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native() {
        if !privileged("privileged_policy_service_icmp_errors_reach_the_backend::native") {
            return;
        }
        super::privileged_policy_service_icmp_errors_reach_the_backend(P::new("ibnat", Topo::Native).await).await;
    }
}

mod privileged_policy_service_icmp_errors_name_the_frontend {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_icmp_errors_name_the_frontend::one") {
            return;
        }
        super::privileged_policy_service_icmp_errors_name_the_frontend(P::new("ieone", Topo::OneUnderlay).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_icmp_errors_name_the_frontend::tunnel") {
            return;
        }
        super::privileged_policy_service_icmp_errors_name_the_frontend(P::new("ietun", Topo::Tunnel).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native() {
        if !privileged("privileged_policy_service_icmp_errors_name_the_frontend::native") {
            return;
        }
        super::privileged_policy_service_icmp_errors_name_the_frontend(P::new("ienat", Topo::Native).await).await;
    }
    /// the NodePort through the other node by DSR: the backend's node
    /// sends the error straight to the client, from the service
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dsr() {
        if !privileged("privileged_policy_service_icmp_errors_name_the_frontend::dsr") {
            return;
        }
        let o = LabOptions {
            agent_args: vec!["--bpf-lb-mode".into(), "dsr".into()],
            ..Default::default()
        };
        super::privileged_policy_service_icmp_errors_name_the_frontend(P::with_opts("iedsr", Topo::Native, o).await).await;
    }
}

/// Cilium's devices: node 0 gets a second native device, a veth to a
/// second external host (203.0.113.0/24). Before `--devices` names it, a
/// NodePort at node 0's address there is the node stack's (refused). With
/// `--devices ext+` given before the device exists, it is served once it
/// appears (and forgotten when it goes): from_netdev serves NodePorts there too: to a backend on node 0 (the
/// client's address kept) and to one on the other node (SNAT to node 0's
/// address), the answers going back out of that device; the underlay's
/// external host is served as before; the other node, which has no such
/// device, starts and serves as before; `seta status` and `service list`
/// show the devices and the new frontends. With BPF masquerade, a pod's
/// connection leaving by the new device gets its address, one leaving by
/// the underlay the node's.
async fn privileged_policy_service_node_port_on_several_devices(mut p: P) {
    let n0 = p.lab().nodes[0].clone();
    // the second external host, by the lab's prefix (removed with the lab)
    let ext2 = format!("{}-ext2", p.lab().name);
    ip(&["netns", "add", &ext2]);
    ip(&["-n", &ext2, "link", "set", "lo", "up"]);
    let make_device = || {
        ip(&[
            "-n", &n0.netns, "link", "add", "ext2gw", "type", "veth", "peer", "name", "eth0", "netns", &ext2,
        ]);
        ip(&["-n", &n0.netns, "addr", "add", "203.0.113.1/24", "dev", "ext2gw"]);
        ip(&["-n", &n0.netns, "link", "set", "ext2gw", "up"]);
        ip(&["-n", &ext2, "addr", "add", "203.0.113.2/24", "dev", "eth0"]);
        ip(&["-n", &ext2, "link", "set", "eth0", "up"]);
        ip(&["-n", &ext2, "route", "add", "default", "via", "203.0.113.1"]);
    };
    make_device();
    // a backend on node 0 and one on the other node
    let (local, remote) = match p.node_of("web") == n0.name {
        true => ("web", "client"),
        false => ("client", "web"),
    };
    let mut yaml = String::new();
    for (name, pod, port) in [("nd-local", local, 30195u16), ("nd-remote", remote, 30196)] {
        let ip = p.ip(pod);
        peer_server(&p.ns(pod), SocketAddr::new(ip.into(), 9000 + port % 1000));
        yaml.push_str(&format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.{}\n  ports: [{{name: http, port: 80, targetPort: {}, nodePort: {port}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-a, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints:\n- {{addresses: [{ip}], conditions: {{ready: true}}}}\n---\n", port % 1000, 9000 + port % 1000, 9000 + port % 1000));
    }
    services_import(&p, &yaml);
    let at = |port: u16| SocketAddr::new(std::net::Ipv4Addr::new(203, 0, 113, 1).into(), port);
    assert!(
        read_from(&ext2, at(30195)).is_err(),
        "not a native device yet: the node's stack refuses"
    );
    // the agents with --devices ext+ (Cilium's wildcard) before the device
    // is there (the other node never has one); it appears while they run
    ip(&["-n", &n0.netns, "link", "del", "ext2gw"]);
    let base = p.t.lab.agent_args.clone();
    p.t.lab.agent_args = base.iter().cloned().chain(["--devices".to_string(), "ext+".to_string()]).collect();
    for n in p.nodes() {
        p.t.lab.stop_agent(&n).unwrap();
        p.t.lab.start_agent(&n).await.unwrap();
    }
    services_synced(&p);
    let devices = |n: &str| common::seta(n, &["status"])["kube-proxy-replacement"]["devices"].clone();
    assert_eq!(devices(&n0.name), serde_json::json!(["ul0"]));
    make_device();
    common::wait_for("a matching device that appears is served", 10, || {
        read_from(&ext2, at(30195)).is_ok()
    });
    assert_eq!(
        read_from(&ext2, at(30195)),
        Ok("203.0.113.2".to_string()),
        "local backend: the client's address"
    );
    assert_eq!(
        read_from(&ext2, at(30196)),
        Ok(p.node_addr(0).to_string()),
        "remote backend: SNAT to the node's address"
    );
    let ext = p.lab().external.clone().unwrap();
    for port in [30195, 30196] {
        assert!(
            read_from(&ext.netns, SocketAddr::new(p.node_addr(0).into(), port)).is_ok(),
            "the underlay's side"
        );
        assert!(
            read_from(&ext.netns, SocketAddr::new(p.node_addr(1).into(), port)).is_ok(),
            "the other node"
        );
    }
    assert_eq!(devices(&n0.name), serde_json::json!(["ul0", "ext2gw"]));
    assert_eq!(devices(&p.nodes()[1]), serde_json::json!(["ul0"]));
    let listed = |n: &str| common::seta(n, &["service", "list"]).to_string();
    assert!(listed(&n0.name).contains("203.0.113.1:30195/TCP"), "{}", listed(&n0.name));
    assert!(!listed(&p.nodes()[1]).contains("203.0.113.1"));
    // BPF masquerade: a pod's connection leaving by each device gets that
    // device's address (Cilium masquerades on each native device to its
    // own), its replies come back to the pod
    let srv2 = SocketAddr::new(std::net::Ipv4Addr::new(203, 0, 113, 2).into(), 8444);
    peer_server(&ext2, srv2);
    let srv = SocketAddr::new(ext.ip.into(), 8444);
    peer_server(&ext.netns, srv);
    assert_eq!(read_from(&p.ns(local), srv2), Ok("203.0.113.1".to_string()), "by the second device");
    assert_eq!(read_from(&p.ns(local), srv), Ok(p.node_addr(0).to_string()), "by the underlay");
    let nat = common::seta(&n0.name, &["bpf", "nat", "list"]);
    assert!(
        nat.as_array()
            .unwrap()
            .iter()
            .any(|r| r["direction"] == "OUT" && r["dst"] == srv2.to_string() && r["to"].as_str().unwrap().starts_with("203.0.113.1:")),
        "{nat}"
    );
    let masq = common::seta(&n0.name, &["status"])["masquerading"]["devices"].clone();
    assert_eq!(
        masq,
        serde_json::json!([{"device": "ul0", "address": p.node_addr(0)}, {"device": "ext2gw", "address": "203.0.113.1"}]),
    );
    // the device goes: forgotten, with its links
    ip(&["-n", &n0.netns, "link", "del", "ext2gw"]);
    common::wait_for("the device that went is forgotten", 10, || {
        devices(&n0.name) == serde_json::json!(["ul0"])
    });
    let pins = seta_core::names::pin_dir(std::path::Path::new("/sys/fs/bpf"), &n0.name, seta_abi::ABI_VERSION).join("links");
    assert!(pins.join("ul0_ingress").exists(), "{}", pins.display());
    assert!(!pins.join("ext2gw_ingress").exists(), "its pinned link is removed");
    // (the lab's own agents again, for the checks at the end)
    p.t.lab.agent_args = base;
}

mod privileged_policy_service_node_port_on_several_devices {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_node_port_on_several_devices::tunnel") {
            return;
        }
        super::privileged_policy_service_node_port_on_several_devices(P::with("mdtun", Topo::Tunnel, true).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native() {
        if !privileged("privileged_policy_service_node_port_on_several_devices::native") {
            return;
        }
        super::privileged_policy_service_node_port_on_several_devices(P::with("mdnat", Topo::Native, true).await).await;
    }
}

/// One datagram on the connected socket `s`: who answered.
fn udp_who_answers(s: &std::net::UdpSocket) -> Result<String, std::io::ErrorKind> {
    s.send(b"who?").map_err(|e| e.kind())?;
    let mut buf = [0u8; 64];
    let n = s.recv(&mut buf).map_err(|e| e.kind())?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Kubernetes' e2e "Conntrack should be able to preserve UDP traffic when
/// server pod cycles for a ClusterIP / NodePort service", without socket-LB
/// (each packet translated): a UDP client keeps one socket, so one 5-tuple,
/// while the service's only backend is replaced by another pod. The flow's
/// next datagrams reach the new backend (its connection-tracking entries
/// pointing at the removed backend are purged), even though the old pod
/// still listens: from a pod through the ClusterIP, and from the external
/// host through each node's NodePort (the backend's own node, and on two
/// nodes the other one by SNAT).
async fn privileged_policy_service_udp_flow_follows_a_replaced_backend(p: P) {
    use std::time::{Duration, Instant};
    let (web, other) = (p.ip("web"), p.ip("other"));
    udp_server(&p.ns("web"), SocketAddr::new(web.into(), 5396), |own, _| own.ip());
    udp_server(&p.ns("other"), SocketAddr::new(other.into(), 5396), |own, _| own.ip());
    let yaml = |backend: std::net::Ipv4Addr| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: cyc, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.192\n  ports: [{{name: dns, protocol: UDP, port: 53, targetPort: 5396, nodePort: 30192}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: cyc-a, namespace: default, labels: {{kubernetes.io/service-name: cyc}}}}\naddressType: IPv4\nports: [{{name: dns, protocol: UDP, port: 5396}}]\nendpoints:\n- {{addresses: [{backend}], conditions: {{ready: true}}}}\n")
    };
    services_import(&p, &yaml(web));
    let ext = p.lab().external.clone().unwrap();
    let open = |ns: &str, to: SocketAddr| udp_connected(ns, to, Duration::from_millis(500));
    let mut flows = vec![(
        "client -> ClusterIP".to_string(),
        open(&p.ns("client"), "10.96.0.192:53".parse().unwrap()),
    )];
    for i in 0..p.nodes().len() {
        let np = SocketAddr::new(p.node_addr(i).into(), 30192);
        flows.push((format!("external -> NodePort of node {i}"), open(&ext.netns, np)));
    }
    for (who, s) in &flows {
        assert_eq!(udp_who_answers(s), Ok(web.to_string()), "{who}: the first backend");
    }
    services_import(&p, &yaml(other));
    for (who, s) in &flows {
        let d = Instant::now() + Duration::from_secs(10);
        let mut seen = vec![];
        loop {
            let got = udp_who_answers(s);
            if got == Ok(other.to_string()) {
                break;
            }
            seen.push(got);
            assert!(Instant::now() < d, "{who}: the same socket never reached the new backend: {seen:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{who}: answered by the new backend after {seen:?}");
        for _ in 0..3 {
            assert_eq!(udp_who_answers(s), Ok(other.to_string()), "{who}: stays on the new backend");
        }
    }
}

mod privileged_policy_service_udp_flow_follows_a_replaced_backend {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_udp_flow_follows_a_replaced_backend::one") {
            return;
        }
        super::privileged_policy_service_udp_flow_follows_a_replaced_backend(P::new("ucone", Topo::OneUnderlay).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_udp_flow_follows_a_replaced_backend::tunnel") {
            return;
        }
        super::privileged_policy_service_udp_flow_follows_a_replaced_backend(P::new("uctun", Topo::Tunnel).await).await;
    }
}

/// `sessionAffinity: ClientIP` as Kubernetes' e2e checks it ("should have
/// session affinity work / timeout work / be able to switch session
/// affinity for NodePort / ClusterIP service"), per packet: with two
/// backends, 15 connections of the external host to each node's NodePort
/// and 15 of a pod to the ClusterIP each land on one backend; switched off,
/// connections spread over both; switched on again with `timeoutSeconds:
/// 1`, a client idle for longer than the timeout can land on the other
/// backend.
async fn privileged_policy_service_session_affinity_from_outside_switched_and_timed_out(p: P) {
    use std::time::Duration;
    let (web, other) = (p.ip("web"), p.ip("other"));
    tag_server(&p.ns("web"), SocketAddr::new(web.into(), 8080), "web");
    tag_server(&p.ns("other"), SocketAddr::new(other.into(), 8080), "other");
    let yaml = |affinity: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: aff, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.193\n{affinity}  ports: [{{name: http, port: 80, targetPort: 8080, nodePort: 30193}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: aff-a, namespace: default, labels: {{kubernetes.io/service-name: aff}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n- {{addresses: [{other}], conditions: {{ready: true}}}}\n")
    };
    let sticky =
        |timeout: u32| format!("  sessionAffinity: ClientIP\n  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: {timeout}}}}}\n");
    let ext = p.lab().external.clone().unwrap();
    let vip: SocketAddr = "10.96.0.193:80".parse().unwrap();
    let mut clients: Vec<(String, String, SocketAddr)> = vec![("client -> ClusterIP".into(), p.ns("client"), vip)];
    for i in 0..p.nodes().len() {
        let np = SocketAddr::new(p.node_addr(i).into(), 30193);
        clients.push((format!("external -> NodePort of node {i}"), ext.netns.clone(), np));
    }
    services_import(&p, &yaml(&sticky(600)));
    for (who, ns, to) in &clients {
        let seen = tags(ns, *to, 15);
        assert_eq!(seen.values().sum::<usize>(), 15, "{who}: {seen:?}");
        assert_eq!(seen.len(), 1, "{who}: one backend with affinity: {seen:?}");
    }
    services_import(&p, &yaml(""));
    for (who, ns, to) in &clients {
        let seen = tags(ns, *to, 24);
        assert_eq!(seen.keys().collect::<Vec<_>>(), ["other", "web"], "{who}: spread without affinity");
    }
    services_import(&p, &yaml(&sticky(1)));
    for (who, ns, to) in &clients {
        let first = tags(ns, *to, 15);
        assert_eq!(first.len(), 1, "{who}: one backend with affinity again: {first:?}");
        // idle past the timeout: a new choice, which is the other backend at
        // half odds each time
        let mut after = vec![];
        while !after.iter().any(|t: &String| !first.contains_key(t)) {
            assert!(
                after.len() < 16,
                "{who}: never another backend after the timeout: {first:?} then {after:?}"
            );
            std::thread::sleep(Duration::from_millis(1300));
            after.extend(tags(ns, *to, 1).into_keys());
        }
    }
}

mod privileged_policy_service_session_affinity_from_outside_switched_and_timed_out {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_session_affinity_from_outside_switched_and_timed_out::one") {
            return;
        }
        super::privileged_policy_service_session_affinity_from_outside_switched_and_timed_out(P::new("saone", Topo::OneUnderlay).await)
            .await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_session_affinity_from_outside_switched_and_timed_out::tunnel") {
            return;
        }
        super::privileged_policy_service_session_affinity_from_outside_switched_and_timed_out(P::new("satun", Topo::Tunnel).await).await;
    }
}

/// A UDP server on `addr` in `ns` sending each datagram back as it came
/// (as large as it came: the answer is fragmented too), until the test
/// ends.
fn udp_echo(ns: &str, addr: SocketAddr) {
    let s = seta_lab::spawn_in_netns(ns, move || std::net::UdpSocket::bind(addr).unwrap())
        .join()
        .unwrap();
    std::thread::spawn(move || {
        let mut b = vec![0u8; 65536];
        while let Ok((n, from)) = s.recv_from(&mut b) {
            let _ = s.send_to(&b[..n], from);
        }
    });
}

/// A datagram of `len` bytes from `ns` to `to`, larger than the path's MTU
/// so the IP layer fragments it: whether the same bytes came back (three
/// tries, a second each).
fn udp_large_echoed(ns: &str, to: SocketAddr, len: usize) -> bool {
    let s = udp_connected(ns, to, std::time::Duration::from_secs(1));
    let sent: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut b = vec![0u8; 65536];
    (0..3).any(|_| {
        let _ = s.send(&sent);
        matches!(s.recv(&mut b), Ok(n) if b[..n] == sent[..])
    })
}

/// IPv4 fragments (Cilium's fragment tracking, `cilium_ipv4_frag_datagrams`):
/// the later fragments of a datagram carry no ports, so the datapath takes
/// them from its first fragment. A 3000-byte UDP datagram (three fragments
/// on the lab's 1500-byte links) and its 3000-byte echo pass an L4 policy
/// (UDP 5394 only), a ClusterIP, each node's NodePort from the external
/// host (the backend's node, and the other one by SNAT), and BPF masquerade
/// to the external host; a client the policy does not allow still gets
/// nothing. Without the tracking, the later fragments were denied by the
/// policy (port 0) or left untranslated.
async fn privileged_policy_fragmented_udp_through_policy_services_and_masquerade(p: P) {
    let web = p.ip("web");
    udp_echo(&p.ns("web"), SocketAddr::new(web.into(), 5394));
    let ext = p.lab().external.clone().unwrap();
    let ext_echo = SocketAddr::new(ext.ip.into(), 5394);
    udp_echo(&ext.netns, ext_echo);
    p.apply(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-udp-5394, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "5394", protocol: UDP}]}]
  - fromEntities: [world, remote-node, host]
    toPorts: [{ports: [{port: "5394", protocol: UDP}]}]
"#,
    );
    services_import(
        &p,
        &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: frag, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.194\n  ports: [{{name: echo, protocol: UDP, port: 53, targetPort: 5394, nodePort: 30194}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: frag-a, namespace: default, labels: {{kubernetes.io/service-name: frag}}}}\naddressType: IPv4\nports: [{{name: echo, protocol: UDP, port: 5394}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n"),
    );
    let mut cases = vec![
        (
            "client -> web, L4 policy".to_string(),
            p.ns("client"),
            SocketAddr::new(web.into(), 5394),
        ),
        ("client -> ClusterIP".to_string(), p.ns("client"), "10.96.0.194:53".parse().unwrap()),
        ("client -> external host, masqueraded".to_string(), p.ns("client"), ext_echo),
    ];
    for i in 0..p.nodes().len() {
        let np = SocketAddr::new(p.node_addr(i).into(), 30194);
        cases.push((format!("external -> NodePort of node {i}"), ext.netns.clone(), np));
    }
    for (who, ns, to) in &cases {
        assert!(udp_large_echoed(ns, *to, 1000), "{who}: a datagram that fits");
        assert!(
            udp_large_echoed(ns, *to, 3000),
            "{who}: a fragmented datagram and its fragmented echo"
        );
    }
    assert!(
        !udp_large_echoed(&p.ns("other"), SocketAddr::new(web.into(), 5394), 3000),
        "other -> web is not allowed, fragmented or not"
    );
    // a ping larger than the MTU (ICMP fragments: the echo's identifier is
    // in the first) masqueraded to the external host and back
    let ping: Vec<String> = ["ping", "-c", "1", "-W", "2", "-s", "3000", &ext.ip.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = p.lab().pod_exec("client", &ping).unwrap().output().unwrap();
    assert!(out.status.success(), "a fragmented ping: {}", String::from_utf8_lossy(&out.stdout));
    // the datagrams' first fragments, as `bpf frag list` shows them
    let client = p.ip("client");
    let frags = common::seta(&p.node_of("client"), &["bpf", "frag", "list"]);
    assert!(
        frags.as_array().unwrap().iter().any(|f| f["proto"] == "UDP"
            && f["source"].as_str().unwrap().starts_with(&format!("{client}:"))
            && f["destination"] == format!("{web}:5394")),
        "{frags}"
    );
    // a later fragment whose first never came: dropped, reason 175
    const LONE: &str = "import socket,struct,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_RAW)\nd=sys.argv[1]\np=b'x'*64\ns.sendto(struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(p),0x4242,185,64,17,0,bytes(4),socket.inet_aton(d))+p,(d,0))\n";
    let before = p.drops(FRAG_NOT_FOUND, "EGRESS");
    let argv: Vec<String> = ["python3", "-c", LONE, &web.to_string()].iter().map(|s| s.to_string()).collect();
    let out = p.lab().pod_exec("client", &argv).unwrap().output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    common::wait_for("the lone fragment's drop", 5, || p.drops(FRAG_NOT_FOUND, "EGRESS") > before);
}

const FRAG_NOT_FOUND: &str = "First logical datagram fragment not found";

mod privileged_policy_fragmented_udp_through_policy_services_and_masquerade {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_fragmented_udp_through_policy_services_and_masquerade::one") {
            return;
        }
        super::privileged_policy_fragmented_udp_through_policy_services_and_masquerade(P::with("fgone", Topo::OneUnderlay, true).await)
            .await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_fragmented_udp_through_policy_services_and_masquerade::tunnel") {
            return;
        }
        super::privileged_policy_fragmented_udp_through_policy_services_and_masquerade(P::with("fgtun", Topo::Tunnel, true).await).await;
    }
}

/// Kubernetes' e2e "Networking Granular Checks: Services should function for
/// service endpoints using hostNetwork": the backend is a hostNetwork pod,
/// so its address is node 0's own. A pod (on node 0, or on the other node)
/// reaches it through the ClusterIP by TCP and UDP with its own address
/// kept, and the external host through the other node's NodePort.
async fn privileged_policy_service_host_network_backend(p: P) {
    let n0 = p.node_addr(0);
    let host = p.node_netns(&p.nodes()[0]);
    peer_server(&host, SocketAddr::new(n0.into(), 8089));
    udp_server(&host, SocketAddr::new(n0.into(), 8089), |_, from| from.ip());
    services_import(
        &p,
        &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: hn, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.195\n  ports: [{{name: tcp, port: 80, targetPort: 8089, nodePort: 30195}}, {{name: udp, protocol: UDP, port: 80, targetPort: 8089, nodePort: 30195}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: hn-a, namespace: default, labels: {{kubernetes.io/service-name: hn}}}}\naddressType: IPv4\nports: [{{name: tcp, port: 8089}}, {{name: udp, protocol: UDP, port: 8089}}]\nendpoints:\n- {{addresses: [{n0}], conditions: {{ready: true}}, nodeName: {}}}\n", p.nodes()[0]),
    );
    let vip: SocketAddr = "10.96.0.195:80".parse().unwrap();
    for pod in ["other", "client"] {
        let me = p.ip(pod).to_string();
        assert_eq!(read_from(&p.ns(pod), vip), Ok(me.clone()), "{pod} -> ClusterIP by TCP");
        let s = udp_connected(&p.ns(pod), vip, std::time::Duration::from_secs(2));
        assert_eq!(udp_who_answers(&s), Ok(me), "{pod} -> ClusterIP by UDP, from the ClusterIP");
    }
    // from outside through another node's NodePort (SNAT); node 0's own
    // NodePort to itself would need the reply translated on its way out
    // (Cilium's to-netdev program), which seta does not have
    let ext = p.lab().external.clone().unwrap();
    for i in 1..p.nodes().len() {
        let np = SocketAddr::new(p.node_addr(i).into(), 30195);
        assert_eq!(
            read_from(&ext.netns, np),
            Ok(p.node_addr(i).to_string()),
            "external -> NodePort of node {i}, SNATed to that node"
        );
    }
}

mod privileged_policy_service_host_network_backend {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_host_network_backend::one") {
            return;
        }
        super::privileged_policy_service_host_network_backend(P::new("hnone", Topo::OneUnderlay).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_host_network_backend::tunnel") {
            return;
        }
        super::privileged_policy_service_host_network_backend(P::new("hntun", Topo::Tunnel).await).await;
    }
}
