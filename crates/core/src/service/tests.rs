//! Service parsing, translation, backend choice and Maglev.
use super::maglev::{murmur3_x64_128, table};
use super::*;

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  uid: 6f1c3f0e-0000-0000-0000-000000000001
  resourceVersion: "4242"
  creationTimestamp: "2026-12-01T10:00:00Z"
  managedFields: [{manager: kubectl, operation: Update}]
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  selector: {app: web}
  externalIPs: [192.0.2.50]
  externalTrafficPolicy: Local
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  ports:
  - {name: http, port: 80, targetPort: web-http, protocol: TCP, nodePort: 30080}
  - {name: dns, port: 53, targetPort: 5353, protocol: UDP, nodePort: 30053}
status:
  loadBalancer: {}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
- {name: http, port: 8080, protocol: TCP}
- {name: dns, port: 5353, protocol: UDP}
endpoints:
- addresses: [10.200.1.5]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: n1
  targetRef: {kind: Pod, name: web-1, namespace: shop}
- addresses: [10.200.2.5]
  conditions: {ready: true}
  nodeName: n2
- addresses: [10.200.2.6]
  conditions: {ready: false, serving: true, terminating: true}
  nodeName: n2
- addresses: [10.200.1.7]
  conditions: {ready: false, serving: false, terminating: true}
  nodeName: n1
- addresses: [10.200.1.8]
  conditions: {ready: false}
  nodeName: n1
"#;

fn parsed() -> (Service, EndpointSlice) {
    let objs = parse_file(WEB).unwrap();
    let (Object::Service(s), Object::EndpointSlice(e)) = (&objs[0], &objs[1]) else {
        panic!("{objs:?}")
    };
    (s.clone(), e.clone())
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn kubectl_output_parses_into_the_fields_that_matter() {
    let (s, e) = parsed();
    assert_eq!(
        (s.namespace.as_str(), s.name.as_str(), s.kind),
        ("shop", "web", ServiceType::NodePort)
    );
    assert_eq!(s.cluster_ips, [ip("10.96.0.10")]);
    assert_eq!(s.external_ips, [ip("192.0.2.50")]);
    assert_eq!(s.affinity, Some(600));
    assert_eq!(
        (s.external_policy, s.internal_policy),
        (TrafficPolicy::Local, TrafficPolicy::Cluster)
    );
    assert_eq!(s.ports[0].target, TargetPort::Name("web-http".into()));
    assert_eq!((s.ports[1].protocol, s.ports[1].node_port), (Proto::Udp, Some(30053)));
    assert_eq!(e.service, "web");
    assert_eq!(e.endpoints.len(), 5);
}

#[test]
fn endpoint_conditions_give_cilium_backend_states() {
    use BackendState::*;
    assert_eq!(
        BackendState::from_conditions(None, None, None),
        Some(Active),
        "unset ready means ready"
    );
    assert_eq!(BackendState::from_conditions(Some(true), Some(true), Some(false)), Some(Active));
    assert_eq!(
        BackendState::from_conditions(Some(false), None, None),
        None,
        "not ready: no backend"
    );
    assert_eq!(
        BackendState::from_conditions(Some(false), Some(true), Some(true)),
        Some(Terminating)
    );
    assert_eq!(
        BackendState::from_conditions(Some(false), Some(false), Some(true)),
        Some(TerminatingNotServing)
    );
    assert_eq!(Terminating.to_string(), "terminating");
}

#[test]
fn translation_gives_every_frontend_with_its_backends() {
    let (s, e) = parsed();
    let node_addrs = [ip("172.30.0.1")];
    let f = translate(&s, &[&e], &node_addrs);
    let kinds: Vec<(FrontendKind, Ipv4Addr, u16, Proto, Scope, bool)> =
        f.iter().map(|f| (f.kind, f.addr, f.port, f.proto, f.scope, f.local_only)).collect();
    // externalTrafficPolicy Local with internalTrafficPolicy Cluster: the
    // outside-facing frontends have two scopes, node-local for clients from
    // outside and every backend for the cluster's own (Cilium's matrix)
    use FrontendKind::*;
    use Scope::*;
    assert_eq!(
        kinds,
        [
            (ClusterIP, ip("10.96.0.10"), 80, Proto::Tcp, All, false),
            (NodePort, ip("172.30.0.1"), 30080, Proto::Tcp, External, true),
            (NodePort, ip("172.30.0.1"), 30080, Proto::Tcp, Internal, false),
            (ExternalIP, ip("192.0.2.50"), 80, Proto::Tcp, External, true),
            (ExternalIP, ip("192.0.2.50"), 80, Proto::Tcp, Internal, false),
            (ClusterIP, ip("10.96.0.10"), 53, Proto::Udp, All, false),
            (NodePort, ip("172.30.0.1"), 30053, Proto::Udp, External, true),
            (NodePort, ip("172.30.0.1"), 30053, Proto::Udp, Internal, false),
            (ExternalIP, ip("192.0.2.50"), 53, Proto::Udp, External, true),
            (ExternalIP, ip("192.0.2.50"), 53, Proto::Udp, Internal, false),
        ]
    );
    // the named target port is the slice's resolved number; not-ready endpoints are no backends
    let http = &f[0];
    let b: Vec<(Ipv4Addr, u16, BackendState)> = http.backends.iter().map(|b| (b.ip, b.port, b.state)).collect();
    assert_eq!(
        b,
        [
            (ip("10.200.1.5"), 8080, BackendState::Active),
            (ip("10.200.1.7"), 8080, BackendState::TerminatingNotServing),
            (ip("10.200.2.5"), 8080, BackendState::Active),
            (ip("10.200.2.6"), 8080, BackendState::Terminating),
        ]
    );
    assert_eq!(http.affinity, Some(600));
    // the same policies: one scope each
    let mut same = s.clone();
    same.internal_policy = TrafficPolicy::Local;
    let f = translate(&same, &[&e], &node_addrs);
    assert!(f.iter().all(|f| f.scope == All && f.local_only), "every frontend node-local");
    same.external_policy = TrafficPolicy::Cluster;
    same.internal_policy = TrafficPolicy::Cluster;
    let f = translate(&same, &[&e], &node_addrs);
    assert!(f.iter().all(|f| f.scope == All && !f.local_only));
    // iTP Local, eTP Cluster: the other way round
    same.internal_policy = TrafficPolicy::Local;
    let f = translate(&same, &[&e], &node_addrs);
    let np: Vec<(Scope, bool)> = f
        .iter()
        .filter(|f| f.kind == NodePort && f.port == 30080)
        .map(|f| (f.scope, f.local_only))
        .collect();
    assert_eq!(np, [(External, false), (Internal, true)]);
    assert!(f[0].local_only, "the ClusterIP follows internalTrafficPolicy");
}

#[test]
fn new_connections_prefer_active_backends_then_serving_terminating_ones() {
    let (s, mut e) = parsed();
    let f = &translate(&s, &[&e], &[ip("172.30.0.1")]);
    let cip = |f: &[Frontend]| f[0].clone();
    let np = |f: &[Frontend]| f[1].clone();
    let ips = |v: Vec<&Backend>| v.iter().map(|b| b.ip).collect::<Vec<_>>();
    assert_eq!(
        ips(cip(f).candidates("n1")),
        [ip("10.200.1.5"), ip("10.200.2.5")],
        "east-west: all active"
    );
    assert_eq!(ips(np(f).candidates("n1")), [ip("10.200.1.5")], "eTP Local: this node's only");
    assert!(np(f).candidates("n3").is_empty(), "a node without local backends refuses");
    // the active ones go: the serving terminating one is the fallback, never the non-serving one
    e.endpoints.retain(|x| x.terminating == Some(true));
    let f = translate(&s, &[&e], &[ip("172.30.0.1")]);
    assert_eq!(ips(cip(&f).candidates("n1")), [ip("10.200.2.6")]);
    e.endpoints.clear();
    let f = translate(&s, &[&e], &[]);
    assert!(f[0].candidates("n1").is_empty());
}

#[test]
fn headless_external_name_and_other_proxies_services_are_not_load_balanced() {
    let (mut s, e) = parsed();
    assert!(s.proxied_by("") && !s.proxied_by("other-proxy"));
    s.proxy_name = Some("other-proxy".into());
    assert!(!s.proxied_by("") && s.proxied_by("other-proxy"));
    // labelled headless: nobody's, whatever its cluster IP and value
    for labels in [
        "{service.kubernetes.io/headless: \"\"}",
        "{service.kubernetes.io/headless: x, service.kubernetes.io/service-proxy-name: p}",
    ] {
        let y = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: h, labels: {labels}}}\nspec: {{clusterIP: 10.96.0.9, ports: [{{port: 80}}]}}\n");
        let Object::Service(h) = &parse_file(&y).unwrap()[0] else {
            panic!()
        };
        assert!(h.headless_label && !h.proxied_by("") && !h.proxied_by("p"), "{labels}");
    }
    let headless = "apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec:\n  clusterIP: None\n  ports: [{port: 5432}]\n";
    let Object::Service(h) = &parse_file(headless).unwrap()[0] else {
        panic!()
    };
    assert!(h.headless() && translate(h, &[&e], &[]).is_empty());
    assert_eq!(h.namespace, "default");
    let ext = "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec: {type: ExternalName, externalName: example.com}\n";
    let Object::Service(x) = &parse_file(ext).unwrap()[0] else {
        panic!()
    };
    assert!(!x.handled());
}

/// A LoadBalancer without node ports (allocateLoadBalancerNodePorts: false):
/// its load-balancer IP and cluster IP are frontends, no node port is.
#[test]
fn a_load_balancer_may_go_without_node_ports() {
    let (_, e) = parsed();
    let y = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n  clusterIP: 10.96.0.10\n  ports: [{name: http, port: 80, targetPort: 8080}]\nstatus: {loadBalancer: {ingress: [{ip: 192.0.2.50}]}}\n";
    let Object::Service(s) = &parse_file(y).unwrap()[0] else { panic!() };
    assert_eq!(s.ports[0].node_port, None);
    let f = translate(s, &[&e], &[ip("172.30.0.1")]);
    let addrs: Vec<String> = f.iter().map(|f| f.addr.to_string()).collect();
    assert!(!addrs.contains(&"172.30.0.1".to_string()), "{addrs:?}");
    assert!(addrs.contains(&"10.96.0.10".to_string()), "{addrs:?}");
    assert!(addrs.contains(&"192.0.2.50".to_string()), "{addrs:?}");
    assert!(f.iter().all(|f| f.port == 80), "no node port frontend");
}

/// Dual-stack services: the IPv4 cluster IP is served wherever it is listed
/// (IPv6 first or second); an IPv6-only service is valid and not served;
/// IPv6 external IPs are skipped; two addresses of one family are refused.
#[test]
fn dual_stack_services_are_served_on_their_ipv4_address() {
    let y = |spec: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\nspec:\n{spec}  ports: [{{name: http, port: 80}}]\n")
    };
    let svc = |spec: &str| match &parse_file(&y(spec)).unwrap()[0] {
        Object::Service(s) => s.clone(),
        o => panic!("{o:?}"),
    };
    let v4_first = svc("  clusterIP: 10.96.0.10\n  clusterIPs: [10.96.0.10, \"fd00::10\"]\n  ipFamilies: [IPv4, IPv6]\n  ipFamilyPolicy: PreferDualStack\n");
    assert_eq!(v4_first.cluster_ips, [ip("10.96.0.10")]);
    let v6_first = svc("  clusterIP: \"fd00::10\"\n  clusterIPs: [\"fd00::10\", 10.96.0.10]\n  ipFamilies: [IPv6, IPv4]\n  externalIPs: [\"2001:db8::7\", 192.0.2.7]\n");
    assert_eq!(v6_first.cluster_ips, [ip("10.96.0.10")]);
    assert_eq!(v6_first.external_ips, [ip("192.0.2.7")]);
    assert!(v6_first.handled());
    let v6_only = svc("  clusterIP: \"fd00::10\"\n  clusterIPs: [\"fd00::10\"]\n  ipFamilies: [IPv6]\n");
    assert!(v6_only.cluster_ips.is_empty() && !v6_only.handled());
    for (spec, path) in [
        ("  clusterIPs: [10.96.0.10, 10.96.0.11]\n", "spec.clusterIPs[1]"),
        ("  clusterIPs: [\"fd00::10\", \"fd00::11\"]\n", "spec.clusterIPs[1]"),
        ("  clusterIPs: [10.96.0.10, \"fd00::10\", 10.96.0.12]\n", "spec.clusterIPs"),
        ("  clusterIP: \"fd00::1x\"\n", "spec.clusterIP"),
    ] {
        let e = parse_file(&y(spec)).unwrap_err();
        assert!(e.path.contains(path), "{spec}: {e}");
    }
}

/// status.loadBalancer.ingress[].ipMode (KEP-1860): a Proxy address is the
/// load-balancer's to proxy, not translated here; VIP or unset is; an IPv6
/// address is valid and not served by this IPv4 load-balancer.
#[test]
fn load_balancer_ip_mode_proxy_is_not_served() {
    let y = |status: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.10\n  ports: [{{name: http, port: 80, nodePort: 30080}}]\nstatus: {{loadBalancer: {{ingress: [{status}]}}}}\n")
    };
    let lb = |status: &str| match &parse_file(&y(status)).unwrap()[0] {
        Object::Service(s) => s.lb_ips.clone(),
        o => panic!("{o:?}"),
    };
    assert_eq!(
        lb("{ip: 192.0.2.50}, {ip: 192.0.2.51, ipMode: VIP}, {ip: 192.0.2.52, ipMode: Proxy}, {ip: \"2001:db8::1\"}, {hostname: lb.example}"),
        [ip("192.0.2.50"), ip("192.0.2.51")]
    );
    for (bad, value) in [
        ("{ip: 192.0.2.50, ipMode: Direct}", "Direct"),
        ("{hostname: x, ipMode: Proxy}", "requires ip"),
    ] {
        let e = parse_file(&y(bad)).unwrap_err();
        assert!(
            e.path.contains("status.loadBalancer.ingress[0].ipMode") && e.to_string().contains(value),
            "{e}"
        );
    }
}

/// Each bad input is refused with the document, the field path and the value.
#[test]
fn bad_services_are_refused_naming_the_field_and_value() {
    let base = "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: n}\nspec:\n";
    let cases: &[(&str, &str, &str)] = &[
        ("  clusterIP: 10.96.0.1\n  ports: [{port: 0}]\n", "spec.ports[0].port", "0"),
        ("  clusterIP: 10.96.0.1\n  ports: [{port: 65536}]\n", "spec.ports[0].port", "65536"),
        (
            "  clusterIP: 10.96.0.1\n  ports: [{port: 80, protocol: ICMP}]\n",
            "spec.ports[0].protocol",
            "ICMP",
        ),
        (
            "  clusterIP: 10.96.0.1\n  ports: [{port: 80, targetPort: \"8080\"}]\n",
            "spec.ports[0].targetPort",
            "8080",
        ),
        (
            "  clusterIP: 10.96.0.1\n  ports: [{port: 80, targetPort: Bad_Name}]\n",
            "spec.ports[0].targetPort",
            "Bad_Name",
        ),
        (
            "  type: NodePort\n  clusterIP: 10.96.0.1\n  ports: [{port: 80, nodePort: 80}]\n",
            "spec.ports[0].nodePort",
            "80",
        ),
        (
            "  clusterIP: 10.96.0.1\n  ports: [{port: 80, nodePort: 30080}]\n",
            "spec.ports[0].nodePort",
            "30080",
        ),
        ("  clusterIP: 10.096.0.1\n  ports: [{port: 80}]\n", "spec.clusterIP", "10.096.0.1"),
        ("  ports: [{port: 80}]\n", "spec.clusterIP", "required"),
        (
            "  clusterIP: 10.96.0.1\n  ports: [{port: 80}, {port: 81}]\n",
            "spec.ports[0].name",
            "required",
        ),
        (
            "  clusterIP: 10.96.0.1\n  ports: [{name: a, port: 80}, {name: b, port: 80}]\n",
            "spec.ports[1].port",
            "80",
        ),
        (
            "  clusterIP: 10.96.0.1\n  type: Magic\n  ports: [{port: 80}]\n",
            "spec.type",
            "Magic",
        ),
        (
            "  clusterIP: 10.96.0.1\n  externalTrafficPolicy: Global\n  ports: [{port: 80}]\n",
            "spec.externalTrafficPolicy",
            "Global",
        ),
        (
            "  clusterIP: 10.96.0.1\n  externalIPs: [1.2.3]\n  ports: [{port: 80}]\n",
            "spec.externalIPs[0]",
            "1.2.3",
        ),
        (
            "  clusterIP: 10.96.0.1\n  sessionAffinity: Cookie\n  ports: [{port: 80}]\n",
            "spec.sessionAffinity",
            "Cookie",
        ),
        (
            "  clusterIP: 10.96.0.1\n  selector: {\"a b\": x}\n  ports: [{port: 80}]\n",
            "spec.selector",
            "a b",
        ),
        ("  clusterIP: 10.96.0.1\n  portz: []\n  ports: [{port: 80}]\n", "spec", "portz"),
        (
            "  type: LoadBalancer\n  clusterIP: 10.96.0.1\n  ports: [{port: 80}]\n",
            "spec.ports[0].nodePort",
            "required",
        ),
        (
            "  type: NodePort\n  allocateLoadBalancerNodePorts: false\n  clusterIP: 10.96.0.1\n  ports: [{port: 80, nodePort: 30080}]\n",
            "spec.allocateLoadBalancerNodePorts",
            "LoadBalancer",
        ),
        (
            "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: no\n  clusterIP: 10.96.0.1\n  ports: [{port: 80}]\n",
            "spec.allocateLoadBalancerNodePorts",
            "no",
        ),
    ];
    for (spec, path, value) in cases {
        let e = parse_file(&format!("{base}{spec}")).unwrap_err();
        assert_eq!(e.doc, 1, "{e}");
        assert!(e.path.contains(path), "{spec}: path {path:?} in {e}");
        assert!(e.to_string().contains(value), "{spec}: value {value:?} in {e}");
        assert!(e.to_string().contains("Service n/s"), "names the object: {e}");
    }
    // duplicate keys, as the API server's strict decoding
    let dup = format!("{base}  clusterIP: 10.96.0.1\n  clusterIP: 10.96.0.2\n  ports: [{{port: 80}}]\n");
    assert!(parse_file(&dup).unwrap_err().to_string().contains("clusterIP"));
    // the same object twice in one input
    let one = format!("{base}  clusterIP: 10.96.0.1\n  ports: [{{port: 80}}]\n");
    assert!(parse_file(&format!("{one}---\n{one}")).unwrap_err().to_string().contains("twice"));
    assert!(parse_file("").is_err(), "nothing to import");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n";
    assert!(parse_file(pod).unwrap_err().to_string().contains("Pod"));
}

#[test]
fn bad_endpoint_slices_are_refused() {
    let base = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e, namespace: n, labels: {kubernetes.io/service-name: s}}\n";
    let cases: &[(&str, &str)] = &[
        ("addressType: IPv6\n", "addressType"),
        ("addressType: IPv4\nendpoints: [{addresses: []}]\n", "endpoints[0].addresses"),
        (
            "addressType: IPv4\nendpoints: [{addresses: [10.0.0.256]}]\n",
            "endpoints[0].addresses[0]",
        ),
        ("addressType: IPv4\nports: [{port: 70000}]\n", "ports[0].port"),
        (
            "addressType: IPv4\nendpoints: [{addresses: [10.0.0.1], hints: {forZones: [{name: \"\"}]}}]\n",
            "endpoints[0].hints.forZones[0].name",
        ),
        (
            "addressType: IPv4\nendpoints: [{addresses: [10.0.0.1], hints: {forZone: [{name: a}]}}]\n",
            "forZone",
        ),
    ];
    for (body, path) in cases {
        let e = parse_file(&format!("{base}{body}")).unwrap_err();
        assert!(e.path.contains(path), "{body}: {e}");
    }
    let orphan = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4\n";
    assert!(parse_file(orphan).unwrap_err().to_string().contains("kubernetes.io/service-name"));
}

/// `service.cilium.io/type` serves only the frontends of its kind (Cilium's
/// svc-type-annotation); a kind Cilium does not know is refused.
#[test]
fn the_cilium_type_annotation_exposes_one_kind_of_frontend() {
    let (_, e) = parsed();
    let svc = |t: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop{t}}}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.10\n  externalIPs: [192.0.2.60]\n  ports: [{{name: http, port: 80, nodePort: 30080}}]\nstatus: {{loadBalancer: {{ingress: [{{ip: 192.0.2.50}}]}}}}\n")
    };
    let kinds = |t: &str| {
        let Object::Service(s) = &parse_file(&svc(t)).unwrap()[0] else {
            panic!()
        };
        let mut k: Vec<FrontendKind> = translate(s, &[&e], &[ip("172.30.0.1")]).iter().map(|f| f.kind).collect();
        k.dedup();
        k
    };
    use FrontendKind::*;
    assert_eq!(kinds(""), [ClusterIP, NodePort, ExternalIP, LoadBalancer]);
    assert_eq!(kinds(", annotations: {service.cilium.io/type: LoadBalancer}"), [LoadBalancer]);
    assert_eq!(kinds(", annotations: {service.cilium.io/type: NodePort}"), [NodePort]);
    assert_eq!(kinds(", annotations: {service.cilium.io/type: ClusterIP}"), [ClusterIP]);
    let e = parse_file(&svc(", annotations: {service.cilium.io/type: ExternalName}")).unwrap_err();
    assert_eq!(e.path, "metadata.annotations[service.cilium.io/type]");
    assert!(
        e.msg.contains("\"ExternalName\": must be ClusterIP or NodePort or LoadBalancer"),
        "{e}"
    );
}

/// spec.trafficDistribution, or the older topology-mode annotation (Auto:
/// PreferClose); a value the API server does not know is refused.
#[test]
fn traffic_distribution_and_topology_hints_parse() {
    let svc = |extra: &str, meta: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: n{meta}}}\nspec:\n  clusterIP: 10.96.0.1\n  ports: [{{port: 80}}]\n{extra}")
    };
    let td = |extra: &str, meta: &str| match &parse_file(&svc(extra, meta)).unwrap()[0] {
        Object::Service(s) => s.traffic_distribution,
        _ => panic!(),
    };
    use TrafficDistribution::*;
    assert_eq!(td("", ""), None);
    assert_eq!(td("  trafficDistribution: PreferClose\n", ""), Some(PreferClose));
    assert_eq!(td("  trafficDistribution: PreferSameZone\n", ""), Some(PreferSameZone));
    assert_eq!(td("  trafficDistribution: PreferSameNode\n", ""), Some(PreferSameNode));
    assert_eq!(
        td("", ", annotations: {service.kubernetes.io/topology-mode: Auto}"),
        Some(PreferClose)
    );
    assert_eq!(
        td("", ", annotations: {service.kubernetes.io/topology-aware-hints: auto}"),
        Some(PreferClose)
    );
    assert_eq!(td("", ", annotations: {service.kubernetes.io/topology-mode: Disabled}"), None);
    assert_eq!(
        td(
            "  trafficDistribution: PreferSameNode\n",
            ", annotations: {service.kubernetes.io/topology-mode: Auto}"
        ),
        Some(PreferSameNode),
        "the field wins over the annotation"
    );
    let e = parse_file(&svc("  trafficDistribution: Nearby\n", "")).unwrap_err();
    assert_eq!(e.path, "spec.trafficDistribution");
    assert!(e.msg.contains("\"Nearby\""), "{e}");
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e, namespace: n, labels: {kubernetes.io/service-name: s}}\naddressType: IPv4\nendpoints:\n- {addresses: [10.0.0.1], zone: a, hints: {forZones: [{name: a}, {name: b}], forNodes: [{name: n1}]}}\n- {addresses: [10.0.0.2]}\n";
    let Object::EndpointSlice(e) = &parse_file(slice).unwrap()[0] else {
        panic!()
    };
    assert_eq!(e.endpoints[0].for_zones, ["a", "b"]);
    assert!(e.endpoints[1].for_zones.is_empty());
}

/// Topology-aware routing (Cilium's writer): PreferSameNode keeps this
/// node's backends, PreferClose those hinted for this node's zone when every
/// candidate has hints; with nothing left, or topology off, all serve.
#[test]
fn topology_aware_routing_prefers_near_backends_and_falls_back_to_all() {
    let be = |ip_: &str, node: &str, zones: &[&str]| Backend {
        ip: ip(ip_),
        port: 80,
        state: BackendState::Active,
        node: Some(node.into()),
        for_zones: zones.iter().map(|z| z.to_string()).collect(),
    };
    let fe = |td: Option<TrafficDistribution>, backends: Vec<Backend>| Frontend {
        addr: ip("10.96.0.1"),
        port: 80,
        proto: Proto::Tcp,
        kind: FrontendKind::ClusterIP,
        service: "n/s".into(),
        port_name: String::new(),
        backends,
        local_only: false,
        affinity: None,
        source_ranges: vec![],
        annotations: Default::default(),
        traffic_distribution: td,
        scope: Default::default(),
    };
    let at = |node, zone| Locality {
        node,
        zone,
        topology: true,
    };
    let ips = |v: Vec<&Backend>| v.iter().map(|b| b.ip.to_string()).collect::<Vec<_>>();
    use TrafficDistribution::*;
    let hinted = vec![be("10.0.1.1", "n1", &["a"]), be("10.0.2.1", "n2", &["b", "c"])];
    let f = fe(Some(PreferClose), hinted.clone());
    assert_eq!(ips(f.candidates_at(at("n1", Some("a")))), ["10.0.1.1"]);
    assert_eq!(
        ips(f.candidates_at(at("n1", Some("c")))),
        ["10.0.2.1"],
        "a zone named in another backend's hints"
    );
    assert_eq!(
        ips(f.candidates_at(at("n1", Some("z")))),
        ["10.0.1.1", "10.0.2.1"],
        "no hint for this zone: all"
    );
    assert_eq!(
        ips(f.candidates_at(at("n1", None))),
        ["10.0.1.1", "10.0.2.1"],
        "a node without a zone: all"
    );
    let off = Locality {
        topology: false,
        ..at("n1", Some("a"))
    };
    assert_eq!(ips(f.candidates_at(off)), ["10.0.1.1", "10.0.2.1"], "topology off: all");
    assert_eq!(
        ips(fe(Some(PreferSameZone), hinted.clone()).candidates_at(at("n2", Some("b")))),
        ["10.0.2.1"]
    );
    assert_eq!(
        ips(fe(None, hinted.clone()).candidates_at(at("n1", Some("a")))),
        ["10.0.1.1", "10.0.2.1"]
    );
    let mut partly = hinted.clone();
    partly.push(be("10.0.3.1", "n3", &[]));
    assert_eq!(
        ips(fe(Some(PreferClose), partly).candidates_at(at("n1", Some("a")))).len(),
        3,
        "an endpoint without hints: the hints are ignored"
    );
    let near = fe(Some(PreferSameNode), hinted.clone());
    assert_eq!(ips(near.candidates_at(at("n2", None))), ["10.0.2.1"]);
    assert_eq!(
        ips(near.candidates_at(at("n9", None))),
        ["10.0.1.1", "10.0.2.1"],
        "none on this node: all"
    );
    // a terminating local backend does not win over an active remote one
    let mut t = hinted;
    t[1].state = BackendState::Terminating;
    assert_eq!(ips(fe(Some(PreferSameNode), t).candidates_at(at("n2", None))), ["10.0.1.1"]);
}

/// Selective node exposure (Cilium's svc-node-exposure): the node value,
/// the label selector (which wins), Kubernetes' selector syntax; a selector
/// that does not parse is refused naming the annotation.
#[test]
fn node_exposure_annotations_pick_the_nodes_that_serve() {
    use crate::labelselector::LabelSelector;
    use exposure::exposed;
    let labels = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
    let beefy = labels(&[("service.cilium.io/node", "beefy"), ("topology.kubernetes.io/zone", "a")]);
    let none = labels(&[]);
    assert!(exposed(None, None, &none), "no annotation: every node");
    assert!(exposed(Some("beefy"), None, &beefy));
    assert!(!exposed(Some("slow"), None, &beefy));
    assert!(!exposed(Some("beefy"), None, &none));
    let sel = |s: &str, l: &BTreeMap<String, String>| exposed(Some("nope"), Some(s), l);
    assert!(
        sel("service.cilium.io/node == beefy", &beefy),
        "the selector wins over the node value"
    );
    assert!(sel("service.cilium.io/node=beefy,topology.kubernetes.io/zone", &beefy));
    assert!(sel("service.cilium.io/node in ( beefy , slow )", &beefy));
    assert!(!sel("service.cilium.io/node notin (beefy)", &beefy));
    assert!(sel("service.cilium.io/node notin (beefy)", &none));
    assert!(sel("service.cilium.io/node != slow, !gpu", &beefy));
    assert!(!sel("gpu", &beefy));
    for bad in ["a in b", "a in (b", "Bad Key=x", "a=b,,c", "a=b c"] {
        assert!(LabelSelector::parse(bad).is_err(), "{bad}");
    }
    let svc = |a: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: n, annotations: {{{a}}}}}\nspec:\n  clusterIP: 10.96.0.1\n  ports: [{{port: 80}}]\n")
    };
    let Object::Service(s) = &parse_file(&svc("service.cilium.io/node: beefy")).unwrap()[0] else {
        panic!()
    };
    assert!(s.exposed_on(&beefy) && !s.exposed_on(&none));
    let e = parse_file(&svc("\"service.cilium.io/node-selector\": \"a in b\"")).unwrap_err();
    assert_eq!(e.path, "metadata.annotations[service.cilium.io/node-selector]");
    assert!(e.msg.contains("not a label selector"), "{e}");
    let e = parse_file(&svc("service.cilium.io/node: \"has space\"")).unwrap_err();
    assert_eq!(e.path, "metadata.annotations[service.cilium.io/node]");
}

#[test]
fn murmur3_matches_the_reference_implementation() {
    // values from the reference (Python mmh3.hash_bytes, little-endian halves)
    assert_eq!(murmur3_x64_128(b"", 0), (0, 0));
    assert_eq!(murmur3_x64_128(b"hello", 0), (0xcbd8a7b341bd9b02, 0x5b1e906a48ae1d19));
    assert_eq!(murmur3_x64_128(b"10.0.1.5:8080", 42), (0xa26c1a08a635b55e, 0x3149417a47c5b642));
    assert_eq!(
        murmur3_x64_128(b"a much longer backend name over 16 bytes", 7),
        (0x19bf26a86e32a250, 0xce0a30b63b60465d)
    );
}

#[test]
fn maglev_is_deterministic_balanced_and_disrupts_little() {
    let names: Vec<String> = (1..=10).map(|i| format!("10.0.0.{i}:80")).collect();
    let m = 1021;
    let (sorted, t) = table(&names, m, 1).unwrap();
    assert_eq!(t.len(), m as usize);
    assert!(t.iter().all(|i| (*i as usize) < sorted.len()), "every slot filled");
    // the same backends in another order: the same table (every node agrees)
    let mut rev = names.clone();
    rev.reverse();
    assert_eq!(table(&rev, m, 1).unwrap().1, t);
    // balanced: each backend within a slot of M/N
    let mut count = vec![0usize; sorted.len()];
    t.iter().for_each(|i| count[*i as usize] += 1);
    assert!(count.iter().all(|c| c.abs_diff(m as usize / 10) <= 1), "{count:?}");
    // one backend removed: only its slots (and few others) change
    let fewer: Vec<String> = names.iter().filter(|n| *n != "10.0.0.4:80").cloned().collect();
    let (s2, t2) = table(&fewer, m, 1).unwrap();
    let moved = t
        .iter()
        .zip(&t2)
        .filter(|(a, b)| sorted[**a as usize] != "10.0.0.4:80" && sorted[**a as usize] != s2[**b as usize])
        .count();
    assert!(moved * 100 <= m as usize * 15, "{moved} of {m} slots of remaining backends moved");
    // another seed: another table; a size that is not prime is refused
    assert_ne!(table(&names, m, 2).unwrap().1, t);
    assert!(matches!(table(&names, 1000, 1), Err(maglev::MaglevError::NotPrime(1000))));
    assert!(table(&[], m, 1).unwrap().1.is_empty());
    assert!(maglev::is_prime(maglev::DEFAULT_M));
}

/// `--node-port-range` as Cilium takes it (MIN,MAX; the API server's
/// MIN-MAX too); a nodePort outside the agent's range is refused at the
/// field, one inside a wider range is taken; BPF SNAT ports start above.
#[test]
fn node_port_range_parses_and_bounds_node_ports() {
    let r: NodePortRange = "30000,40000".parse().unwrap();
    assert_eq!((r.min, r.max, r.nat_port_min()), (30000, 40000, 40001));
    assert_eq!("30000-40000".parse::<NodePortRange>().unwrap(), r);
    assert_eq!(r.to_string(), "30000-40000");
    assert_eq!(NodePortRange::default().nat_port_min(), 32768, "Cilium's NODEPORT_PORT_MIN_NAT");
    for (bad, why) in [
        ("30000", "MIN,MAX"),
        ("40000,30000", "must not be above"),
        ("0,100", "not a port"),
        ("30000,x", "not a port"),
        ("30000,65000", "BPF SNAT"),
    ] {
        let e = bad.parse::<NodePortRange>().unwrap_err();
        assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
    }
    let svc = |np: u16| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: n, namespace: d}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.9\n  ports: [{{port: 80, nodePort: {np}}}]\n")
    };
    let e = parse_file(&svc(35000)).unwrap_err();
    assert!(e.path.ends_with("spec.ports[0].nodePort"), "{e}");
    assert!(e.to_string().contains("35000: must be in the NodePort range 30000-32767"), "{e}");
    let got = parse_file_with(&svc(35000), r).unwrap();
    let Object::Service(s) = &got[0] else { panic!() };
    assert_eq!(s.ports[0].node_port, Some(35000));
    let e = parse_file_with(&svc(45000), r).unwrap_err();
    assert!(e.to_string().contains("45000: must be in the NodePort range 30000-40000"), "{e}");
}

/// Cilium's auto-protection of the NodePort range: only when it overlaps
/// the ephemeral ports, appended to what is reserved already, not twice;
/// without auto-protection an overlap is an error naming both ranges.
#[test]
fn node_port_range_joins_the_reserved_ports_when_it_overlaps_the_ephemeral_ones() {
    let def = NodePortRange::default();
    assert_eq!(def.protect("32768\t60999", "", true), Ok(None), "the defaults do not overlap");
    let wide: NodePortRange = "30000,40000".parse().unwrap();
    assert_eq!(wide.protect("32768\t60999", "", true), Ok(Some("30000-40000".into())));
    assert_eq!(
        wide.protect("32768\t60999", "8080,9148", true),
        Ok(Some("8080,9148,30000-40000".into()))
    );
    assert_eq!(
        wide.protect("32768 60999", "29000-35000,35001-41000", true),
        Ok(None),
        "already held"
    );
    assert_eq!(
        wide.protect("32768 60999", "30000-35000", true),
        Ok(Some("30000-35000,30000-40000".into()))
    );
    assert_eq!(def.protect("1024\t65535", "", true), Ok(Some("30000-32767".into())));
    let e = wide.protect("32768\t60999", "", false).unwrap_err();
    assert!(e.contains("30000-40000") && e.contains("32768-60999"), "{e}");
    assert!(wide.protect("x", "", true).is_err());
    assert!(wide.protect("32768 60999", "1-x", true).is_err());
}

/// Cilium's nodeport-addresses: the primary address by default; with CIDRs
/// every device address inside them, the primary only when inside.
#[test]
fn node_port_addresses_follow_the_cidrs() {
    let primary = Some(ip("172.30.0.1"));
    let dev = [ip("172.30.0.1"), ip("172.30.0.101"), ip("10.9.0.1")];
    let net = |s: &str| s.parse::<ipnet::Ipv4Net>().unwrap();
    assert_eq!(node_port_addresses(primary, &dev, &[]), [ip("172.30.0.1")]);
    assert_eq!(node_port_addresses(None, &dev, &[]), Vec::<Ipv4Addr>::new());
    assert_eq!(
        node_port_addresses(primary, &dev, &[net("172.30.0.0/24")]),
        [ip("172.30.0.1"), ip("172.30.0.101")]
    );
    assert_eq!(
        node_port_addresses(primary, &dev, &[net("172.30.0.101/32"), net("10.0.0.0/8")]),
        [ip("10.9.0.1"), ip("172.30.0.101")]
    );
    assert!(node_port_addresses(primary, &dev, &[net("192.0.2.0/24")]).is_empty());
}

/// Several native devices (Cilium's devices): each one's primary address
/// by default, and with CIDRs every address of every device inside them.
#[test]
fn node_port_addresses_cover_every_native_device() {
    let primary = Some(ip("172.30.0.1"));
    let dev = [ip("172.30.0.1"), ip("172.30.0.101")];
    let others = vec![vec![ip("203.0.113.9"), ip("203.0.113.1")], vec![]];
    let net = |s: &str| s.parse::<ipnet::Ipv4Net>().unwrap();
    assert_eq!(
        node_port_addresses_of_devices(primary, &dev, &others, &[]),
        [ip("172.30.0.1"), ip("203.0.113.1")]
    );
    assert_eq!(
        node_port_addresses_of_devices(primary, &dev, &others, &[net("203.0.113.0/24"), net("172.30.0.101/32")]),
        [ip("172.30.0.101"), ip("203.0.113.1"), ip("203.0.113.9")]
    );
    assert_eq!(node_port_addresses_of_devices(primary, &dev, &[], &[]), [ip("172.30.0.1")]);
}
