//! The services repository alone.
use super::*;
use seta_core::service::parse_file;

const SVC: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [10.200.1.5], conditions: {ready: true}, nodeName: n1}
"#;

#[test]
fn import_replaces_by_name_and_lists_frontends_with_backends() {
    let mut r = Repository::default();
    let (rev, names) = r.import(parse_file(SVC).unwrap());
    assert_eq!(rev, 1);
    assert_eq!(names, ["Service shop/web", "EndpointSlice shop/web-1"]);
    let f = r.frontends(&[]);
    assert_eq!(f.len(), 1);
    let e = entry(&f[0]);
    assert_eq!(
        (e.frontend.as_str(), e.kind.as_str(), e.service.as_str()),
        ("10.96.0.10:80/TCP", "ClusterIP", "shop/web")
    );
    assert_eq!(e.backends[0].address, "10.200.1.5:8080/TCP");
    // the same slice again with another backend replaces it
    let (rev, _) = r.import(parse_file(&SVC.replace("10.200.1.5", "10.200.1.6")).unwrap());
    assert_eq!(rev, 2);
    let b: Vec<String> = entry(&r.frontends(&[])[0]).backends.into_iter().map(|b| b.address).collect();
    assert_eq!(b, ["10.200.1.6:8080/TCP"]);
}

#[test]
fn deleting_a_service_takes_its_slices_and_a_miss_changes_nothing() {
    let mut r = Repository::default();
    r.import(parse_file(SVC).unwrap());
    let (rev, gone) = r.delete(Selection::Service {
        namespace: "shop",
        name: "nope",
    });
    assert!(gone.is_empty());
    assert_eq!(rev, 1, "no change, no new revision");
    let (rev, gone) = r.delete(Selection::Service {
        namespace: "shop",
        name: "web",
    });
    assert_eq!(gone, ["Service shop/web", "EndpointSlice shop/web-1"]);
    assert_eq!(rev, 2);
    assert!(r.frontends(&[]).is_empty());
    r.import(parse_file(SVC).unwrap());
    let (_, gone) = r.delete(Selection::All);
    assert_eq!(gone.len(), 2);
}

#[test]
fn the_repository_survives_a_restart() {
    let mut r = Repository::default();
    r.import(parse_file(SVC).unwrap());
    let json = serde_json::to_string(&r).unwrap();
    let back: Repository = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.frontends(&[]), r.frontends(&[]));
}

/// The node's labels decide which services it exposes and its zone (the
/// slots under topology-aware routing); they are kept over a restart, so
/// the restarted agent serves the same before its Node watch is back.
#[test]
fn node_labels_pick_exposed_services_and_the_zone_and_survive_a_restart() {
    let two = "---\napiVersion: v1\nkind: Service\nmetadata: {name: beefy, namespace: shop, annotations: {service.cilium.io/node: beefy}}\nspec:\n  clusterIP: 10.96.0.11\n  trafficDistribution: PreferClose\n  ports: [{name: http, port: 80, targetPort: 8080}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: beefy-1, namespace: shop, labels: {kubernetes.io/service-name: beefy}}\naddressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints:\n- {addresses: [10.200.1.5], hints: {forZones: [{name: a}]}}\n- {addresses: [10.200.2.5], hints: {forZones: [{name: b}]}}\n";
    let mut r = Repository::default();
    r.import(parse_file(&format!("{SVC}{two}")).unwrap());
    let services = |r: &Repository| r.frontends(&[]).iter().map(|f| f.service.clone()).collect::<Vec<_>>();
    assert_eq!(services(&r), ["shop/web"], "no labels: not exposed here");
    let labels = |zone: &str| {
        [("service.cilium.io/node", "beefy"), ("topology.kubernetes.io/zone", zone)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    assert!(r.set_node_labels(labels("b")));
    assert!(!r.set_node_labels(labels("b")), "the same labels: no change");
    assert_eq!(services(&r), ["shop/beefy", "shop/web"]);
    let topology = LbChoices {
        service_topology: true,
        ..Default::default()
    };
    let slot_ips = |r: &mut Repository| {
        let st = r.lb_state("n1", &[], &topology).unwrap();
        let vip = seta_abi::Lb4Key {
            address: [10, 96, 0, 11],
            dport: 80u16.to_be_bytes(),
            proto: 6,
            ..Default::default()
        };
        let count = st.services[&vip].count;
        (1..=count)
            .map(|slot| st.backends[&st.services[&seta_abi::Lb4Key { backend_slot: slot, ..vip }].backend_id].address)
            .collect::<Vec<_>>()
    };
    assert_eq!(slot_ips(&mut r), [[10, 200, 2, 5]], "zone b's backend");
    let json = serde_json::to_string(&r).unwrap();
    let mut back: Repository = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    assert_eq!(services(&back), ["shop/beefy", "shop/web"], "kept over a restart");
    assert_eq!(slot_ips(&mut back), [[10, 200, 2, 5]]);
}

/// kube-proxy's and Cilium's service-proxy-name: the default proxy serves
/// the unlabelled services, a named one only those labelled with its name
/// (frontends, maps and health checks alike); the name is the agent's
/// configuration, not kept with the services.
#[test]
fn the_proxy_name_picks_the_services_this_node_serves() {
    let other = "---\napiVersion: v1\nkind: Service\nmetadata: {name: mine, namespace: shop, labels: {service.kubernetes.io/service-proxy-name: seta-a}}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.12\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 32001\n  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30093}]\n";
    let mut r = Repository::default();
    r.import(parse_file(&format!("{SVC}{other}")).unwrap());
    let services = |r: &Repository| {
        let mut s: Vec<String> = r.frontends(&[]).iter().map(|f| f.service.clone()).collect();
        s.dedup();
        s
    };
    let maps = |r: &mut Repository| r.lb_state("n1", &[], &LbChoices::default()).unwrap().services.len();
    assert_eq!(services(&r), ["shop/web"], "the default proxy: the unlabelled service only");
    assert!(r.health_checks("n1").is_empty());
    let unlabelled = maps(&mut r);
    let proxy = |name: &str| Serving {
        proxy_name: name.into(),
        ..Default::default()
    };
    r.set_serving(proxy("seta-a"));
    assert_eq!(services(&r), ["shop/mine"], "proxy seta-a: its labelled service only");
    assert_eq!(r.health_checks("n1").keys().collect::<Vec<_>>(), [&32001]);
    assert!(maps(&mut r) > 0 && maps(&mut r) != unlabelled);
    r.set_serving(proxy("seta-b"));
    assert!(services(&r).is_empty() && maps(&mut r) == 0, "nobody's services here");
    let back: Repository = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(
        services(&back),
        ["shop/web"],
        "a loaded repository serves as the default proxy until told"
    );
}

/// `--kube-proxy-replacement=false`: kube-proxy keeps NodePorts,
/// ExternalIPs, LoadBalancer IPs and hostPorts (and health checks); this
/// node serves the ClusterIPs only.
#[test]
fn without_kube_proxy_replacement_only_cluster_ips_are_served() {
    let lb = "---\napiVersion: v1\nkind: Service\nmetadata: {name: lb, namespace: shop}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.13\n  externalIPs: [198.51.100.7]\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 32002\n  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30094}]\nstatus: {loadBalancer: {ingress: [{ip: 192.0.2.70}]}}\n";
    let mut r = Repository::default();
    r.import(parse_file(&format!("{SVC}{lb}")).unwrap());
    let hp = seta_core::service::HostPort {
        host_port: 8081,
        container_port: 80,
        protocol: seta_core::service::Proto::Tcp,
        host_ip: None,
    };
    r.claim_host_ports("c1", "10.200.1.9".parse().unwrap(), &[hp]).unwrap();
    let node = ["172.30.0.1".parse().unwrap()];
    let kinds = |r: &Repository| {
        let mut k: Vec<String> = r.frontends(&node).iter().map(|f| format!("{:?}", f.kind)).collect();
        k.sort();
        k.dedup();
        k
    };
    assert_eq!(kinds(&r), ["ClusterIP", "ExternalIP", "HostPort", "LoadBalancer", "NodePort"]);
    assert_eq!(r.health_checks("n1").len(), 1);
    r.set_serving(Serving {
        no_node_port: true,
        no_external_ips: true,
        no_host_port: true,
        ..Default::default()
    });
    assert_eq!(kinds(&r), ["ClusterIP"]);
    let mut addrs: Vec<String> = r.frontends(&node).iter().map(|f| f.addr.to_string()).collect();
    addrs.sort();
    assert_eq!(addrs, ["10.96.0.10", "10.96.0.13"]);
    assert!(r.health_checks("n1").is_empty());
    let st = r.lb_state("n1", &node, &LbChoices::default()).unwrap();
    assert!(
        st.services.keys().all(|k| k.address[..2] == [10, 96]),
        "only ClusterIPs in the maps"
    );
    // partial replacement: NodePorts (with LoadBalancer IPs and health
    // checks), not ExternalIPs or hostPorts
    r.set_serving(Serving {
        no_external_ips: true,
        no_host_port: true,
        ..Default::default()
    });
    assert_eq!(kinds(&r), ["ClusterIP", "LoadBalancer", "NodePort"]);
    assert_eq!(r.health_checks("n1").len(), 1);
    r.set_serving(Serving {
        no_node_port: true,
        no_host_port: true,
        ..Default::default()
    });
    assert_eq!(kinds(&r), ["ClusterIP", "ExternalIP"]);
    assert!(r.health_checks("n1").is_empty());
}

/// `--enable-session-affinity=false` and `--enable-health-check-nodeport=false`:
/// sessionAffinity leaves the frontends (no timeout in the maps) and no
/// health check is served; the services are otherwise served as before.
#[test]
fn session_affinity_and_health_checks_can_be_turned_off() {
    let lb = "---\napiVersion: v1\nkind: Service\nmetadata: {name: lb, namespace: shop}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.14\n  sessionAffinity: ClientIP\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 32003\n  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30095}]\n";
    let mut r = Repository::default();
    r.import(parse_file(&format!("{SVC}{lb}")).unwrap());
    let sticky = |r: &Repository| r.frontends(&[]).iter().filter(|f| f.affinity.is_some()).count();
    assert!(sticky(&r) > 0);
    assert_eq!(r.health_checks("n1").len(), 1);
    let before = r.frontends(&[]).len();
    r.set_serving(Serving {
        no_session_affinity: true,
        no_health_checks: true,
        ..Default::default()
    });
    assert_eq!(sticky(&r), 0);
    assert!(r.health_checks("n1").is_empty());
    assert_eq!(r.frontends(&[]).len(), before, "the same frontends");
}

#[test]
fn backends_set_by_hand_leave_and_rejoin_the_choice() {
    use seta_core::service::BackendState;
    let mut r = Repository::default();
    r.import(parse_file(SVC).unwrap());
    let be: std::net::SocketAddrV4 = "10.200.1.5:8080".parse().unwrap();
    assert_eq!(r.set_backend_state(be, BackendState::Quarantined, &[]), Ok(1));
    let f = &r.frontends(&[])[0];
    assert_eq!(f.backends[0].state, BackendState::Quarantined);
    assert!(f.candidates("n1").is_empty(), "a quarantined backend gets no new connections");
    // kept over a re-import of the slices
    r.import(parse_file(SVC).unwrap());
    assert_eq!(r.frontends(&[])[0].backends[0].state, BackendState::Quarantined);
    assert_eq!(r.set_backend_state(be, BackendState::Active, &[]), Ok(1));
    assert_eq!(r.frontends(&[])[0].candidates("n1").len(), 1);
    assert_eq!(
        r.set_backend_state("10.9.9.9:1".parse().unwrap(), BackendState::Maintenance, &[]),
        Ok(0),
        "unknown backend"
    );
    assert!(
        r.set_backend_state(be, BackendState::Terminating, &[]).is_err(),
        "slices set that one"
    );
}

/// The master entry of the frontend at address `a` (its only port).
fn master_at(st: &seta_datapath::maps::LbState, a: [u8; 4]) -> seta_abi::Lb4Service {
    st.services
        .iter()
        .find(|(k, _)| k.address == a && k.backend_slot == 0)
        .map(|(_, v)| *v)
        .unwrap()
}

#[test]
fn source_ranges_mark_the_load_balancer_frontend_only() {
    let mut r = Repository::default();
    r.import(
        parse_file(
            r#"
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.42
  loadBalancerSourceRanges: [10.0.0.0/8, 192.0.2.7/32]
  ports: [{name: http, port: 80, nodePort: 30091}]
status:
  loadBalancer: {ingress: [{ip: 198.51.100.51}]}
"#,
        )
        .unwrap(),
    );
    let st = r.lb_state("n1", &["172.30.0.1".parse().unwrap()], &LbChoices::default()).unwrap();
    let master = |a: [u8; 4]| master_at(&st, a);
    let lb = master([198, 51, 100, 51]);
    assert_ne!(lb.flags & seta_abi::LB_F_SOURCE_RANGE, 0, "the LoadBalancer IP checks the ranges");
    assert_eq!(
        master([172, 30, 0, 1]).flags & seta_abi::LB_F_SOURCE_RANGE,
        0,
        "the NodePort does not"
    );
    assert_eq!(
        master([10, 96, 0, 42]).flags & seta_abi::LB_F_SOURCE_RANGE,
        0,
        "the ClusterIP does not"
    );
    let want: std::collections::BTreeSet<(u16, ipnet::Ipv4Net)> = [
        (lb.rev_nat_index, "10.0.0.0/8".parse().unwrap()),
        (lb.rev_nat_index, "192.0.2.7/32".parse().unwrap()),
    ]
    .into();
    assert_eq!(st.source_ranges, want);
    // --bpf-lb-source-range-all-types: the NodePort and the ClusterIP too,
    // each under its own rev-NAT index; the deny policy follows them
    let all = LbChoices {
        source_range_all_types: true,
        ..Default::default()
    };
    let st = r.lb_state("n1", &["172.30.0.1".parse().unwrap()], &all).unwrap();
    let master = |a: [u8; 4]| master_at(&st, a);
    let checked: Vec<u16> = [[198, 51, 100, 51], [172, 30, 0, 1], [10, 96, 0, 42]]
        .into_iter()
        .map(master)
        .inspect(|m| assert_ne!(m.flags & seta_abi::LB_F_SOURCE_RANGE, 0, "{m:?}"))
        .map(|m| m.rev_nat_index)
        .collect();
    let ids: std::collections::BTreeSet<u16> = st.source_ranges.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, checked.into_iter().collect(), "{:?}", st.source_ranges);
    assert_eq!(st.source_ranges.len(), 6);
}

#[test]
fn health_checks_count_this_nodes_active_backends() {
    let mut r = Repository::default();
    r.import(
        parse_file(
            r#"
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.43
  externalTrafficPolicy: Local
  healthCheckNodePort: 32000
  ports: [{name: http, port: 80, nodePort: 30092}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: lb-1, namespace: shop, labels: {kubernetes.io/service-name: lb}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [10.200.1.5], conditions: {ready: true}, nodeName: n1}
- {addresses: [10.200.1.6], conditions: {ready: false}, nodeName: n1}
- {addresses: [10.200.1.7], conditions: {ready: false, serving: true, terminating: true}, nodeName: n1}
- {addresses: [10.200.2.5], conditions: {ready: true}, nodeName: n2}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80}]
"#,
        )
        .unwrap(),
    );
    let n1 = r.health_checks("n1");
    assert_eq!(n1.keys().copied().collect::<Vec<_>>(), [32000], "only the eTP=Local LoadBalancer");
    assert_eq!(n1[&32000].local_endpoints, 1, "ready ones only");
    assert_eq!(n1[&32000].response().0, 200);
    assert_eq!(r.health_checks("n2")[&32000].local_endpoints, 1);
    let n3 = &r.health_checks("n3")[&32000];
    assert_eq!((n3.local_endpoints, n3.response().0), (0, 503));
    // a backend taken out by hand does not count
    r.set_backend_state(
        "10.200.1.5:8080".parse().unwrap(),
        seta_core::service::BackendState::Quarantined,
        &[],
    )
    .unwrap();
    assert_eq!(r.health_checks("n1")[&32000].local_endpoints, 0);
}

const MAGLEV_SVC: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec:
  type: NodePort
  clusterIP: 10.96.0.44
  externalIPs: [198.51.100.70]
  ports: [{name: http, port: 80, nodePort: 30093}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ext-1, namespace: shop, labels: {kubernetes.io/service-name: ext}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [10.200.1.5, 10.200.1.6, 10.200.2.7], conditions: {ready: true}}
"#;

/// The table a frontend's Maglev chunks hold, as backend addresses.
fn maglev_table(st: &seta_datapath::maps::LbState, addr: [u8; 4], m: u32) -> Vec<String> {
    let master = st
        .services
        .iter()
        .find(|(k, _)| k.address == addr && k.backend_slot == 0)
        .unwrap()
        .1;
    let mut t: Vec<u32> = st
        .maglev
        .iter()
        .filter(|(k, _)| k.rev_nat_id == master.rev_nat_index)
        .flat_map(|(_, c)| c.backend_ids)
        .collect();
    t.truncate(m as usize);
    t.iter()
        .map(|id| {
            let b = st.backends[id];
            format!("{}:{}", std::net::Ipv4Addr::from(b.address), u16::from_be_bytes(b.port))
        })
        .collect()
}

#[test]
fn maglev_tables_for_north_south_frontends_agree_across_nodes() {
    let (m, seed) = (251, 7);
    let mut n1 = Repository::default();
    n1.import(parse_file(MAGLEV_SVC).unwrap());
    let st1 = n1
        .lb_state("n1", &["172.30.0.1".parse().unwrap()], &LbChoices::maglev(Some((m, seed))))
        .unwrap();
    let master =
        |st: &seta_datapath::maps::LbState, a: [u8; 4]| *st.services.iter().find(|(k, _)| k.address == a && k.backend_slot == 0).unwrap().1;
    assert_eq!(
        master(&st1, [198, 51, 100, 70]).backend_id >> 24,
        seta_abi::LB_ALG_MAGLEV,
        "ExternalIP"
    );
    assert_eq!(master(&st1, [172, 30, 0, 1]).backend_id >> 24, seta_abi::LB_ALG_MAGLEV, "NodePort");
    assert_eq!(master(&st1, [10, 96, 0, 44]).backend_id, 0, "a ClusterIP stays random");
    // one table per north-south frontend, M slots in ceil(M / chunk) chunks
    assert_eq!(st1.maglev.len(), 2);
    let t1 = maglev_table(&st1, [198, 51, 100, 70], m);
    assert_eq!(t1.len(), m as usize);
    for b in ["10.200.1.5:8080", "10.200.1.6:8080", "10.200.2.7:8080"] {
        let n = t1.iter().filter(|x| *x == b).count();
        assert!((80..=88).contains(&n), "{b} has {n} of {m} slots");
    }
    // another node, whose numbering differs (another service first), has
    // the same table by backend
    let mut n2 = Repository::default();
    n2.import(parse_file(&SVC.replace("10.200.1.5", "10.200.1.9")).unwrap());
    n2.lb_state("n2", &[], &LbChoices::maglev(Some((m, seed)))).unwrap();
    n2.import(parse_file(MAGLEV_SVC).unwrap());
    let st2 = n2
        .lb_state("n2", &["172.30.0.2".parse().unwrap()], &LbChoices::maglev(Some((m, seed))))
        .unwrap();
    assert_ne!(st1.backends.keys().collect::<Vec<_>>(), st2.backends.keys().collect::<Vec<_>>());
    assert_eq!(maglev_table(&st2, [198, 51, 100, 70], m), t1);
    // without Maglev nothing is built
    assert!(n1.lb_state("n1", &[], &LbChoices::default()).unwrap().maglev.is_empty());
}

/// Numbers run from 1 to their most and then run out (they do not wrap).
#[test]
fn numbers_stop_at_their_most() {
    let mut n: Numbers<u16> = Numbers::new([1u16, 3].into_iter(), 5);
    let taken: Vec<Option<u16>> = (0..4).map(|_| n.take()).collect();
    assert_eq!(taken, [Some(2), Some(4), Some(5), None]);
    let mut full: Numbers<u16> = Numbers::new(1..=u16::MAX, u16::MAX);
    assert_eq!(full.take(), None);
}

/// One frontend more than a 16-bit rev-NAT index numbers is an error that
/// says so, and the repository's numbers stay as they were.
#[test]
fn frontends_beyond_the_rev_nat_space_are_an_error() {
    let mut r = Repository::default();
    r.import(parse_file(SVC).unwrap());
    // every rev-NAT number is held (by frontends that went in this trial)
    r.revnat_ids = (1..=u16::MAX).map(|i| (format!("gone-{i}"), i)).collect();
    let before = (r.revnat_ids.clone(), r.backend_ids.clone());
    let err = r.lb_state("n1", &[], &LbChoices::default()).unwrap_err();
    assert!(err.contains("more than the 65535 a 16-bit rev-NAT index numbers"), "{err}");
    assert_eq!((r.revnat_ids.clone(), r.backend_ids.clone()), before);
}

/// Cilium's per-service annotations: the forwarding mode (DSR flag in the
/// master entry of north-south frontends) and the algorithm count only
/// where the node honours them; src-ranges-policy deny marks the ranged
/// frontend; a bad value is refused naming the annotation.
#[test]
fn service_annotations_choose_mode_algorithm_and_ranges_policy() {
    let svc = |name: &str, ip: &str, np: u16, annotations: &str| {
        format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop, annotations: {{{annotations}}}}}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.{np}\n  loadBalancerSourceRanges: [10.0.0.0/8]\n  ports: [{{name: http, port: 80, nodePort: 30{np}}}]\nstatus: {{loadBalancer: {{ingress: [{{ip: {ip}}}]}}}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-a, namespace: shop, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [10.200.1.5], conditions: {{ready: true}}}}\n")
    };
    let yaml = [
        svc("plain", "198.51.100.1", 101, ""),
        svc(
            "dsr",
            "198.51.100.2",
            102,
            "service.cilium.io/forwarding-mode: dsr, service.cilium.io/lb-algorithm: maglev, service.cilium.io/src-ranges-policy: deny",
        ),
        svc(
            "snat",
            "198.51.100.3",
            103,
            "service.cilium.io/forwarding-mode: snat, service.cilium.io/lb-algorithm: random",
        ),
    ]
    .concat();
    let mut r = Repository::default();
    r.import(parse_file(&yaml).unwrap());
    let node = ["172.30.0.1".parse().unwrap()];
    // the master entry of a frontend (address; port 80, or the node port on the node's address)
    let master = |st: &seta_datapath::maps::LbState, a: [u8; 4], port: u16| {
        st.services
            .iter()
            .find(|(k, _)| k.address == a && k.dport == port.to_be_bytes() && k.backend_slot == 0)
            .map(|(_, v)| *v)
            .unwrap()
    };
    let dsr = |st: &seta_datapath::maps::LbState, a| master(st, a, 80).flags2 & seta_abi::LB_F2_FWD_MODE_DSR != 0;
    let maglev = |st: &seta_datapath::maps::LbState, a| master(st, a, 80).backend_id >> 24 == seta_abi::LB_ALG_MAGLEV;
    // annotations not honoured: node-wide SNAT (no flag: the datapath reads the option bits), random
    let off = r.lb_state("n1", &node, &LbChoices::default()).unwrap();
    assert!(!dsr(&off, [198, 51, 100, 2]) && !maglev(&off, [198, 51, 100, 2]));
    // the ranges policy is always Cilium's: deny marks the ranged frontend only
    let deny = |st: &seta_datapath::maps::LbState, a| master(st, a, 80).flags2 & seta_abi::LB_F2_SOURCE_RANGE_DENY != 0;
    assert!(deny(&off, [198, 51, 100, 2]) && !deny(&off, [198, 51, 100, 1]) && !deny(&off, [10, 96, 0, 102]));
    // honoured, default SNAT and random: only the annotated service is DSR and Maglev
    let on = LbChoices {
        maglev: Some((251, 1)),
        algorithm_annotation: true,
        mode_annotation: true,
        ..Default::default()
    };
    let st = r.lb_state("n1", &node, &on).unwrap();
    assert!(dsr(&st, [198, 51, 100, 2]), "the annotated LoadBalancer IP");
    assert_ne!(
        master(&st, [172, 30, 0, 1], 30102).flags2 & seta_abi::LB_F2_FWD_MODE_DSR,
        0,
        "and its NodePort"
    );
    assert!(!dsr(&st, [198, 51, 100, 1]) && !dsr(&st, [198, 51, 100, 3]));
    assert!(!dsr(&st, [10, 96, 0, 102]), "a ClusterIP is east-west: no DSR");
    assert!(maglev(&st, [198, 51, 100, 2]) && !maglev(&st, [198, 51, 100, 1]) && !maglev(&st, [198, 51, 100, 3]));
    // honoured, default DSR and Maglev: the snat/random one is the exception
    let st = r
        .lb_state(
            "n1",
            &node,
            &LbChoices {
                maglev_default: true,
                dsr_default: true,
                ..on
            },
        )
        .unwrap();
    assert!(dsr(&st, [198, 51, 100, 1]) && dsr(&st, [198, 51, 100, 2]) && !dsr(&st, [198, 51, 100, 3]));
    assert!(maglev(&st, [198, 51, 100, 1]) && !maglev(&st, [198, 51, 100, 3]));
    // --bpf-lb-external-clusterip: the ClusterIP master is routable (served from outside)
    let routable = |st: &seta_datapath::maps::LbState, a| master(st, a, 80).flags & seta_abi::LB_F_ROUTABLE != 0;
    assert!(!routable(&off, [10, 96, 0, 101]));
    let ext = r
        .lb_state(
            "n1",
            &node,
            &LbChoices {
                external_cluster_ip: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(routable(&ext, [10, 96, 0, 101]) && !routable(&ext, [198, 51, 100, 1]));
    // a value Cilium does not know
    let bad = svc("bad", "198.51.100.9", 109, "service.cilium.io/forwarding-mode: direct");
    let e = parse_file(&bad).unwrap_err();
    assert!(
        e.path.contains("service.cilium.io/forwarding-mode") && e.to_string().contains("\"direct\": must be dsr or snat"),
        "{e}"
    );
}

#[test]
fn external_ips_not_of_the_node_are_marked_for_the_cve_2020_8554_mitigation() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: eip, namespace: shop}\nspec:\n  clusterIP: 10.96.0.9\n  externalIPs: [192.0.2.10, 172.30.0.1]\n  ports: [{name: http, port: 80}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: eip-a, namespace: shop, labels: {kubernetes.io/service-name: eip}}\naddressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints:\n- {addresses: [10.200.1.5], conditions: {ready: true}}\n";
    let mut r = Repository::default();
    r.import(parse_file(yaml).unwrap());
    let node = ["172.30.0.1".parse().unwrap(), std::net::Ipv4Addr::UNSPECIFIED];
    let foreign = |st: &seta_datapath::maps::LbState, a: [u8; 4]| master_at(st, a).flags2 & seta_abi::LB_F2_EXTERNAL_IP_FOREIGN != 0;
    let on = LbChoices {
        external_ip_mitigation: true,
        ..Default::default()
    };
    let st = r.lb_state("n1", &node, &on).unwrap();
    assert!(foreign(&st, [192, 0, 2, 10]), "an address outside the node");
    assert!(!foreign(&st, [172, 30, 0, 1]), "the node's own address");
    assert!(!foreign(&st, [10, 96, 0, 9]), "a ClusterIP");
    // on another node, that node's address is foreign too
    let st = r.lb_state("n2", &["172.30.0.2".parse().unwrap()], &on).unwrap();
    assert!(foreign(&st, [172, 30, 0, 1]));
    // --disable-external-ip-mitigation: nothing marked
    let st = r.lb_state("n1", &node, &LbChoices::default()).unwrap();
    assert!(!foreign(&st, [192, 0, 2, 10]) && !foreign(&st, [172, 30, 0, 1]));
}

#[test]
fn differing_traffic_policies_give_outside_facing_frontends_two_scopes() {
    let mut r = Repository::default();
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: lb, namespace: shop}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.43\n  externalTrafficPolicy: Local\n  ports: [{name: http, port: 80, nodePort: 30092}]\nstatus: {loadBalancer: {ingress: [{ip: 198.51.100.43}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: lb-1, namespace: shop, labels: {kubernetes.io/service-name: lb}}\naddressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints:\n- {addresses: [10.200.1.5], conditions: {ready: true}, nodeName: n1}\n- {addresses: [10.200.2.5], conditions: {ready: true}, nodeName: n2}\n";
    r.import(parse_file(yaml).unwrap());
    let st = r.lb_state("n1", &["172.30.0.1".parse().unwrap()], &LbChoices::default()).unwrap();
    // the master and slot count of (address, port, scope)
    let master = |a: [u8; 4], port: u16, scope: u8| {
        st.services
            .iter()
            .find(|(k, _)| k.address == a && k.dport == port.to_be_bytes() && k.scope == scope && k.backend_slot == 0)
            .map(|(_, v)| *v)
    };
    for (a, port) in [([198, 51, 100, 43], 80), ([172, 30, 0, 1], 30092)] {
        let ext = master(a, port, 0).unwrap();
        let int = master(a, port, 1).unwrap();
        assert_ne!(ext.flags2 & seta_abi::LB_F2_TWO_SCOPES, 0);
        assert_eq!(int.flags2 & seta_abi::LB_F2_TWO_SCOPES, 0);
        assert_eq!((ext.count, int.count), (1, 2), "outside: this node's backend; inside: both");
        assert_eq!(ext.rev_nat_index, int.rev_nat_index, "one frontend, one rev-NAT entry");
        assert_eq!(ext.flags & !seta_abi::LB_F_EXT_LOCAL_SCOPE, int.flags, "the same kind");
    }
    let cip = master([10, 96, 0, 43], 80, 0).unwrap();
    assert_eq!(
        (cip.count, cip.flags2 & seta_abi::LB_F2_TWO_SCOPES),
        (2, 0),
        "a ClusterIP has one scope"
    );
    assert!(master([10, 96, 0, 43], 80, 1).is_none());
    // service list: Cilium's "/i" for the internal scope
    let fronts: Vec<String> = r
        .frontends(&["172.30.0.1".parse().unwrap()])
        .iter()
        .map(|f| entry(f).frontend)
        .collect();
    assert!(fronts.contains(&"198.51.100.43:80/TCP/i".to_string()), "{fronts:?}");
    assert!(fronts.contains(&"198.51.100.43:80/TCP".to_string()), "{fronts:?}");
}
