//! NodePort, LoadBalancer IP and ExternalIP DSR (`--bpf-lb-mode
//! dsr|hybrid`, native routing): from outside through the node without the
//! backend, the backend sees the client's own address and its replies leave
//! its node straight to the client; nothing is in the entry node's NAT table.
use super::*;

/// A datagram from `ns` to `addr`: who the server says sent it, and where the answer came from.
fn udp_from(ns: &str, addr: SocketAddr) -> Option<(String, SocketAddr)> {
    seta_lab::spawn_in_netns(ns, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_millis(800))).unwrap();
        for _ in 0..3 {
            let _ = s.send_to(b"hi", addr);
            let mut b = [0u8; 64];
            if let Ok((n, from)) = s.recv_from(&mut b) {
                return Some((String::from_utf8_lossy(&b[..n]).to_string(), from));
            }
        }
        None
    })
    .join()
    .unwrap()
}

async fn privileged_policy_service_node_port_dsr(p: P, udp_dsr: bool) {
    let web = p.ip("web");
    assert_eq!(p.node_of("web"), p.nodes()[0]);
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 8080));
    udp_server(&p.ns("web"), SocketAddr::new(web.into(), 8080), |_, from| from.ip());
    services_import(
        &p,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: np, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.32\n  ports: [{{name: tcp, port: 80, nodePort: 30090}}, {{name: udp, port: 80, nodePort: 30090, protocol: UDP}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: np-a, namespace: default, labels: {{kubernetes.io/service-name: np}}}}\naddressType: IPv4\nports: [{{name: tcp, port: 8080}}, {{name: udp, port: 8080, protocol: UDP}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n"
        ),
    );
    let mode = if udp_dsr { "DSR" } else { "Hybrid" };
    assert_eq!(p.seta(&["status"])["kube-proxy-replacement"]["mode"], mode);
    let ext = p.lab().external.clone().unwrap();
    let ext_src = "172.30.0.200";
    let other_node: SocketAddr = "172.30.0.2:30090".parse().unwrap();
    // TCP through the node without the backend: the client's address kept
    assert_eq!(
        read_from(&ext.netns, other_node),
        Ok(ext_src.to_string()),
        "DSR: web sees the client, not the node"
    );
    // the entry node translated nothing to its own address
    let nat = common::seta(&p.nodes()[1], &["bpf", "nat", "list"]);
    assert!(
        nat.as_array().unwrap().iter().all(|r| r["proto"] != "tcp"),
        "no TCP connection in the entry node's NAT table: {nat}"
    );
    // UDP: by DSR too (dsr), or SNAT (hybrid); the answer comes from the NodePort either way
    let (seen, from) = udp_from(&ext.netns, other_node).expect("an answer over UDP");
    assert_eq!(from, other_node, "the reply comes from the NodePort");
    assert_eq!(seen, if udp_dsr { ext_src } else { "172.30.0.2" }, "{mode}");
    // the backend's own node still serves it directly, and pods still reach it
    assert_eq!(read_from(&ext.netns, "172.30.0.1:30090".parse().unwrap()), Ok(ext_src.to_string()));
    assert_eq!(read_from(&p.ns("client"), other_node), Ok(p.ip("client").to_string()));

    // a LoadBalancer IP and an ExternalIP, routed to the node without the
    // backend, go the same way: the client's address kept, the answer from
    // the service's address
    services_import(
        &p,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: lbd, namespace: default}}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.33\n  externalIPs: [198.51.100.81]\n  ports: [{{name: tcp, port: 80, nodePort: 30091}}, {{name: udp, port: 80, nodePort: 30091, protocol: UDP}}]\nstatus:\n  loadBalancer: {{ingress: [{{ip: 198.51.100.80}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: lbd-a, namespace: default, labels: {{kubernetes.io/service-name: lbd}}}}\naddressType: IPv4\nports: [{{name: tcp, port: 8080}}, {{name: udp, port: 8080, protocol: UDP}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n"
        ),
    );
    p.lab().external_route("198.51.100.0/24".parse().unwrap(), 1).await.unwrap();
    for (vip, what) in [("198.51.100.80:80", "LoadBalancer IP"), ("198.51.100.81:80", "ExternalIP")] {
        let vip: SocketAddr = vip.parse().unwrap();
        assert_eq!(read_from(&ext.netns, vip), Ok(ext_src.to_string()), "DSR at the {what}");
        let (seen, from) = udp_from(&ext.netns, vip).expect("an answer over UDP");
        assert_eq!(from, vip, "the reply comes from the {what}");
        assert_eq!(seen, if udp_dsr { ext_src } else { "172.30.0.2" }, "{mode} at the {what}");
    }
    let nat = common::seta(&p.nodes()[1], &["bpf", "nat", "list"]);
    assert!(
        nat.as_array().unwrap().iter().all(|r| r["proto"] != "tcp"),
        "still no TCP connection in the entry node's NAT table: {nat}"
    );
}

/// `--bpf-lb-mode-annotation` (default SNAT): a service annotated
/// `service.cilium.io/forwarding-mode: dsr` forwards by DSR (the backend sees
/// the client, TCP and UDP), one without the annotation or with `snat` by
/// SNAT, side by side on the same nodes; the status names the mode.
async fn privileged_policy_service_forwarding_mode_annotation(p: P) {
    let web = p.ip("web");
    assert_eq!(p.node_of("web"), p.nodes()[0]);
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 8080));
    udp_server(&p.ns("web"), SocketAddr::new(web.into(), 8080), |_, from| from.ip());
    let svc = |name: &str, np: u16, annotation: &str| {
        format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default{annotation}}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.{}\n  ports: [{{name: tcp, port: 80, nodePort: {np}}}, {{name: udp, port: 80, nodePort: {np}, protocol: UDP}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-a, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: tcp, port: 8080}}, {{name: udp, port: 8080, protocol: UDP}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n", np - 30000)
    };
    services_import(
        &p,
        &[
            svc("plain", 30093, ""),
            svc("direct", 30094, ", annotations: {service.cilium.io/forwarding-mode: dsr}"),
            svc("natted", 30095, ", annotations: {service.cilium.io/forwarding-mode: snat}"),
        ]
        .concat(),
    );
    assert_eq!(
        p.seta(&["status"])["kube-proxy-replacement"]["mode"],
        "SNAT (per-service annotation)"
    );
    let ext = p.lab().external.clone().unwrap();
    let (ext_src, entry) = ("172.30.0.200", "172.30.0.2");
    for (port, seen) in [(30093, entry), (30094, ext_src), (30095, entry)] {
        let at: SocketAddr = format!("{entry}:{port}").parse().unwrap();
        assert_eq!(read_from(&ext.netns, at), Ok(seen.to_string()), "TCP at {at}");
        let (who, from) = udp_from(&ext.netns, at).expect("an answer over UDP");
        assert_eq!((who.as_str(), from), (seen, at), "UDP at {at}");
    }
    // the entry node's map marks the annotated frontend, as Cilium prints it
    let lb = common::seta(&p.nodes()[1], &["bpf", "lb", "list"]);
    let master = |svc: &str| {
        lb.as_array()
            .unwrap()
            .iter()
            .find(|e| e["service"] == svc && e["slot"] == 0)
            .map(|e| e["entry"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(master("172.30.0.2:30094/TCP").ends_with("[NodePort, dsr]"), "{lb}");
    assert!(master("172.30.0.2:30093/TCP").ends_with("[NodePort]"), "{lb}");
    // the DSR one left nothing in the entry node's NAT table, the others did
    let nat = common::seta(&p.nodes()[1], &["bpf", "nat", "list"]);
    let rows = nat.as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["direction"] == "OUT" && r["src"].as_str().unwrap_or("").starts_with("172.30.0.200:")),
        "{nat}"
    );
    p.verify();
}

mod privileged_policy_service_forwarding_mode_annotation {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native() {
        if !privileged("privileged_policy_service_forwarding_mode_annotation::native") {
            return;
        }
        let o = LabOptions {
            agent_args: vec!["--bpf-lb-mode-annotation".into()],
            ..Default::default()
        };
        super::privileged_policy_service_forwarding_mode_annotation(P::with_opts("fwdmode", Topo::Native, o).await).await;
    }
}

mod privileged_policy_service_node_port_dsr {
    use super::*;
    fn opts(mode: &str) -> LabOptions {
        LabOptions {
            agent_args: vec!["--bpf-lb-mode".into(), mode.into()],
            ..Default::default()
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dsr() {
        if !privileged("privileged_policy_service_node_port_dsr::dsr") {
            return;
        }
        super::privileged_policy_service_node_port_dsr(P::with_opts("dsr", Topo::Native, opts("dsr")).await, true).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hybrid() {
        if !privileged("privileged_policy_service_node_port_dsr::hybrid") {
            return;
        }
        super::privileged_policy_service_node_port_dsr(P::with_opts("hybrid", Topo::Native, opts("hybrid")).await, false).await;
    }
}
