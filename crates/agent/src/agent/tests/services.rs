//! The services subsystem through the agent: import, list, get, delete,
//! persistence, refusals; never blocked by the endpoint lock.
use super::*;

const SVC: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [10.210.1.5], conditions: {ready: true}, nodeName: n1}
- {addresses: [10.210.1.6], conditions: {ready: false, serving: true, terminating: true}, nodeName: n1}
"#;

#[tokio::test]
async fn services_are_imported_listed_kept_over_a_restart_and_deleted() {
    let d = Tmp::new("services");
    let k = Fake::new();
    let node_ip: Ipv4Addr = "172.31.0.1".parse().unwrap();
    {
        let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, Some(node_ip)).await;
        let r = a.service_import(SVC).await.unwrap();
        assert_eq!(r.objects, ["Service default/web", "EndpointSlice default/web-1"]);
        let l = a.service_list();
        let fronts: Vec<(&str, &str)> = l.iter().map(|e| (e.frontend.as_str(), e.kind.as_str())).collect();
        // the NodePort on the node's address and on Cilium's 0.0.0.0 surrogate
        assert_eq!(
            fronts,
            [
                ("10.96.0.10:80/TCP", "ClusterIP"),
                ("172.31.0.1:30080/TCP", "NodePort"),
                ("0.0.0.0:30080/TCP", "NodePort")
            ]
        );
        let states: Vec<String> = l[0].backends.iter().map(|b| format!("{} {}", b.address, b.state)).collect();
        assert_eq!(states, ["10.210.1.5:8080/TCP active", "10.210.1.6:8080/TCP terminating"]);
        let g = a.service_get("web", "default").unwrap();
        assert_eq!(g["frontends"].as_array().unwrap().len(), 3);
    }
    // a restart finds them in the state dir
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, Some(node_ip)).await;
    assert_eq!(a.service_list().len(), 3);
    // bad input names the field and changes nothing
    let err = a.service_import(&SVC.replace("nodePort: 30080", "nodePort: 80")).await.unwrap_err();
    assert!(matches!(err, ApiError::BadRequest(_)), "{err}");
    assert!(err.to_string().contains("spec.ports[0].nodePort"), "{err}");
    assert_eq!(a.service_list()[1].frontend, "172.31.0.1:30080/TCP", "unchanged");
    // the endpoint lock held elsewhere never blocks service requests
    let held = a.endpoints.lock().await;
    assert_eq!(a.service_list().len(), 3);
    drop(held);
    let err = a.service_delete(Some("nope"), None, false).await.unwrap_err();
    assert!(matches!(err, ApiError::NotFound(_)), "{err}");
    let r = a.service_delete(Some("web"), None, false).await.unwrap();
    assert_eq!(r.objects.len(), 2, "the service takes its slices");
    assert!(a.service_list().is_empty());
    assert!(a.service_get("web", "default").is_err());
}

#[tokio::test]
async fn the_service_maps_follow_imports_with_stable_numbers() {
    let d = Tmp::new("lbmaps");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, Some("172.31.0.1".parse().unwrap())).await;
    a.service_import(SVC).await.unwrap();
    let lb = k.state().lb.clone();
    let vip = seta_abi::Lb4Key {
        address: [10, 96, 0, 10],
        dport: 80u16.to_be_bytes(),
        proto: 6,
        ..Default::default()
    };
    let master = lb.services[&vip];
    assert_eq!(
        master.count, 1,
        "one slot: the active backend (the terminating one is only a fallback)"
    );
    let slot = lb.services[&seta_abi::Lb4Key { backend_slot: 1, ..vip }];
    let be = lb.backends[&slot.backend_id];
    assert_eq!((be.address, u16::from_be_bytes(be.port), be.flags), ([10, 210, 1, 5], 8080, 0));
    assert_eq!(lb.backends.len(), 2, "the terminating backend stays known for its connections");
    assert_eq!(lb.revnat[&master.rev_nat_index].address, [10, 96, 0, 10]);
    let np = seta_abi::Lb4Key {
        address: [172, 31, 0, 1],
        dport: 30080u16.to_be_bytes(),
        proto: 6,
        ..Default::default()
    };
    assert_eq!(lb.services[&np].flags & seta_abi::LB_F_NODEPORT, seta_abi::LB_F_NODEPORT);
    // the active backend goes: the serving terminating one takes the slot,
    // and every number that still exists stays
    let only_terminating = SVC.replace("- {addresses: [10.210.1.5], conditions: {ready: true}, nodeName: n1}\n", "");
    a.service_import(&only_terminating).await.unwrap();
    let lb2 = k.state().lb.clone();
    let slot2 = lb2.services[&seta_abi::Lb4Key { backend_slot: 1, ..vip }];
    assert_eq!(lb2.backends[&slot2.backend_id].address, [10, 210, 1, 6]);
    assert_eq!(lb2.backends[&slot2.backend_id].flags, 1, "terminating");
    assert_eq!(
        lb2.services[&vip].rev_nat_index, master.rev_nat_index,
        "the frontend keeps its rev-NAT index"
    );
    let old_terminating = lb.backends.iter().find(|(_, b)| b.address == [10, 210, 1, 6]).unwrap().0;
    assert_eq!(slot2.backend_id, *old_terminating, "the backend keeps its id");
    // deleted: nothing left in the maps
    a.service_delete(Some("web"), None, false).await.unwrap();
    assert_eq!(k.state().lb, Default::default());
}

#[tokio::test]
async fn services_are_cluster_wide_through_a_shared_kvstore() {
    let d = Tmp::new("svc-cluster");
    let store = Arc::new(MemoryStore::new());
    let (k1, k2) = (Fake::new(), Fake::new());
    // node 1 had a service before it joined: it becomes the cluster's
    {
        let a = agent(&d.0.join("n1"), "n1", "10.210.1.0/24", &k1, None, None).await;
        a.service_import(SVC).await.unwrap();
    }
    let shared = |n: &str| Some(Kv::shared_memory(store.clone(), "/seta", n));
    let a1 = agent(
        &d.0.join("n1"),
        "n1",
        "10.210.1.0/24",
        &k1,
        shared("n1"),
        Some("172.31.0.1".parse().unwrap()),
    )
    .await;
    let a2 = agent(
        &d.0.join("n2"),
        "n2",
        "10.210.2.0/24",
        &k2,
        shared("n2"),
        Some("172.31.0.2".parse().unwrap()),
    )
    .await;
    for a in [&a1, &a2] {
        tokio::spawn(a.clone().services_sync());
    }
    let cluster_ips = |a: &Agent| a.service_list().into_iter().filter(|e| e.kind == "ClusterIP").count();
    eventually("node 2 learns node 1's service", || cluster_ips(&a2) == 1).await;
    eventually("node 2's maps follow", || !k2.state().lb.services.is_empty()).await;
    assert_eq!(
        a2.service_list().iter().find(|e| e.kind == "NodePort").unwrap().frontend,
        "172.31.0.2:30080/TCP",
        "NodePort on each node's own address"
    );
    // `service wait`'s view: the same services on both nodes, in their maps
    eventually("both nodes' maps hold the same services", || {
        let (s1, s2) = (a1.service_state(), a2.service_state());
        s1["digest"] == s2["digest"] && s1["synced"] == true && s2["synced"] == true
    })
    .await;
    // a delete on node 2 is the cluster's
    a2.service_delete(Some("web"), None, false).await.unwrap();
    eventually("node 1 forgets it", || cluster_ips(&a1) == 0).await;
    eventually("node 1's maps follow", || k1.state().lb.services.is_empty()).await;
    assert!(store.list("/seta/services/v1/").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_backend_quarantined_by_hand_leaves_the_slots_and_comes_back() {
    let d = Tmp::new("quarantine");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    a.service_import(SVC).await.unwrap();
    let vip = seta_abi::Lb4Key {
        address: [10, 96, 0, 10],
        dport: 80u16.to_be_bytes(),
        proto: 6,
        ..Default::default()
    };
    let slot_backend = |k: &Fake| {
        let st = k.state();
        let s = st.lb.services[&seta_abi::Lb4Key { backend_slot: 1, ..vip }];
        st.lb.backends[&s.backend_id].address
    };
    assert_eq!(slot_backend(&k), [10, 210, 1, 5]);
    let r = a.service_backend_state("10.210.1.5:8080", "quarantined").await.unwrap();
    assert_eq!(r["frontends"], 3, "ClusterIP and NodePort (and its surrogate)");
    // the only active one is out: the serving terminating one is the fallback
    assert_eq!(slot_backend(&k), [10, 210, 1, 6]);
    let l = a.service_list();
    assert!(l[0]
        .backends
        .iter()
        .any(|b| b.state == seta_core::service::BackendState::Quarantined));
    a.service_backend_state("10.210.1.5:8080", "active").await.unwrap();
    assert_eq!(slot_backend(&k), [10, 210, 1, 5]);
    for (b, s, want) in [
        ("10.210.1.5", "active", "IP:PORT"),
        ("10.210.1.5:8080", "gone", "state"),
        ("10.210.1.5:8080", "terminating", "by hand"),
    ] {
        let e = a.service_backend_state(b, s).await.unwrap_err();
        assert!(matches!(e, ApiError::BadRequest(_)) && e.to_string().contains(want), "{e}");
    }
    assert!(matches!(
        a.service_backend_state("10.9.9.9:80", "maintenance").await.unwrap_err(),
        ApiError::NotFound(_)
    ));
}

#[tokio::test]
async fn session_affinity_marks_the_frontend_with_its_timeout() {
    let d = Tmp::new("affinity");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    let sticky = SVC.replace(
        "  clusterIP: 10.96.0.10\n",
        "  clusterIP: 10.96.0.10\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}\n",
    );
    a.service_import(&sticky).await.unwrap();
    let vip = seta_abi::Lb4Key {
        address: [10, 96, 0, 10],
        dport: 80u16.to_be_bytes(),
        proto: 6,
        ..Default::default()
    };
    let m = k.state().lb.services[&vip];
    assert_eq!(m.flags & seta_abi::LB_F_AFFINITY, seta_abi::LB_F_AFFINITY);
    assert_eq!((m.backend_id >> 24, m.backend_id & 0xff_ffff), (seta_abi::LB_ALG_RANDOM, 600));
    a.service_import(SVC).await.unwrap();
    let m = k.state().lb.services[&vip];
    assert_eq!((m.flags & seta_abi::LB_F_AFFINITY, m.backend_id), (0, 0), "affinity off again");
}

/// hostPorts (CNI portMappings): a frontend on the node's address per
/// mapping while the pod exists; a second pod asking for a held port is
/// refused and leaves nothing behind; a restart keeps them; delete ends them.
#[tokio::test]
async fn host_ports_follow_their_pod_and_never_clash() {
    use seta_core::service::{HostPort, Proto};
    let d = Tmp::new("hostports");
    let k = Fake::new();
    let node_ip: Ipv4Addr = "172.31.0.1".parse().unwrap();
    let hp = |host_port, container_port| HostPort {
        host_port,
        container_port,
        protocol: Proto::Tcp,
        host_ip: None,
    };
    let hostport_masters = |k: &Fake| -> Vec<(Ipv4Addr, u16)> {
        k.state()
            .lb
            .services
            .iter()
            .filter(|(key, v)| key.backend_slot == 0 && v.flags & seta_abi::LB_F_HOSTPORT != 0)
            .map(|(key, _)| (Ipv4Addr::from(key.address), u16::from_be_bytes(key.dport)))
            .collect()
    };
    let web = {
        let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, Some(node_ip)).await;
        let ip = a.ipam_allocate("web").await.unwrap().ipv4.ip;
        let link = k.add_link("lxcweb");
        let web = a
            .create_endpoint(EndpointChangeRequest {
                host_ports: vec![hp(8080, 80)],
                ..request("web", ip, &link, &["app=web"])
            })
            .await
            .unwrap();
        assert_eq!(hostport_masters(&k), [(Ipv4Addr::UNSPECIFIED, 8080), (node_ip, 8080)]);
        let l = a.service_list();
        let e = l.iter().find(|e| e.kind == "HostPort").expect("listed");
        assert_eq!(e.frontend, "172.31.0.1:8080/TCP");
        assert_eq!(e.backends[0].address, format!("{}:80/TCP", web.ipv4));
        // another pod asking for the same port: refused, nothing left behind
        let ip2 = a.ipam_allocate("other").await.unwrap().ipv4.ip;
        let link2 = k.add_link("lxcother");
        let err = a
            .create_endpoint(EndpointChangeRequest {
                host_ports: vec![hp(8080, 9090)],
                ..request("other", ip2, &link2, &[])
            })
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Conflict(_)), "{err}");
        assert!(
            err.to_string()
                .contains("hostPort 8080/TCP on every node address is held by container web"),
            "{err}"
        );
        assert_eq!(a.list().await.len(), 1);
        assert!(!k.state().filters.contains_key(&link2.index), "its program is gone again");
        assert_eq!(hostport_masters(&k), [(Ipv4Addr::UNSPECIFIED, 8080), (node_ip, 8080)]);
        web
    };
    // a restart keeps the live pod's hostPorts
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, Some(node_ip)).await;
    assert_eq!(hostport_masters(&k), [(Ipv4Addr::UNSPECIFIED, 8080), (node_ip, 8080)]);
    a.delete_endpoint(&EndpointRef::ContainerId(web.container_id.clone()))
        .await
        .unwrap();
    assert!(hostport_masters(&k).is_empty(), "gone with its pod");
    assert!(a.service_list().iter().all(|e| e.kind != "HostPort"));
}

/// Services that would overflow the maps (`--bpf-lb-map-max`) are refused
/// whole, naming the map and the flag: nothing is stored or written.
#[tokio::test]
async fn services_over_the_map_size_are_refused_and_change_nothing() {
    let d = Tmp::new("svcfull");
    let k = Fake::new();
    let mut cfg = config(&d.0, "n1", "10.210.7.0/24", RoutingMode::Tunnel);
    cfg.map_sizes.lb = 16;
    let a = agent_cfg(&d.0, cfg, &k, None, Some("172.31.0.1".parse().unwrap()), None).await;
    a.service_import(SVC).await.unwrap();
    let before = (a.service_list(), k.state().lb.clone());
    let addrs: Vec<String> = (10..40).map(|i| format!("10.210.7.{i}")).collect();
    let big = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: big, namespace: default}}\nspec:\n  clusterIP: 10.96.0.99\n  ports: [{{name: http, port: 80}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: big-1, labels: {{kubernetes.io/service-name: big}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{}], conditions: {{ready: true}}}}\n",
        addrs.join(", ")
    );
    let err = a.service_import(&big).await.unwrap_err();
    assert!(matches!(err, ApiError::TooLarge(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("seta_lb4_svc would need") && msg.contains("--bpf-lb-map-max is 16") && msg.contains("nothing was changed"),
        "{msg}"
    );
    assert_eq!((a.service_list(), k.state().lb.clone()), before, "nothing stored, nothing written");
}

/// Socket-LB on: the node's namespace and each pod's are in the map while
/// they exist; a restart keeps the live ones and drops stale ones; with
/// socket-LB off again every namespace goes.
#[tokio::test]
async fn socket_lb_serves_the_node_and_its_pods_namespaces() {
    let d = Tmp::new("socklb");
    let k = Fake::new();
    let cfg = |on: bool| {
        let mut c = config(&d.0, "n1", "10.210.1.0/24", RoutingMode::Tunnel);
        c.sock_lb = on.then(|| d.0.join("cgroup"));
        c
    };
    let netns = |k: &Fake| k.state().sock_netns.clone();
    let a = agent_cfg(&d.0, cfg(true), &k, None, None, None).await;
    assert_eq!(netns(&k), BTreeMap::from([(1, seta_abi::SOCK_NETNS_HOST)]), "the node's own");
    let mk = |name: &str| {
        let link = k.add_link(&format!("lxc{name}"));
        (name.to_string(), link)
    };
    let mut eps = vec![];
    for (name, link) in [mk("a"), mk("b")] {
        let ip = a.ipam_allocate(&name).await.unwrap().ipv4.ip;
        let ep = a
            .create_endpoint(EndpointChangeRequest {
                netns_path: format!("/run/netns/{name}"),
                ..request(&name, ip, &link, &[])
            })
            .await
            .unwrap();
        eps.push(ep);
    }
    let cookie = |p: &str| k.netns_cookie(Some(p)).unwrap();
    assert_eq!(netns(&k).len(), 3);
    assert_eq!(netns(&k).get(&cookie("/run/netns/a")), Some(&seta_abi::SOCK_NETNS_POD));
    a.delete_endpoint(&EndpointRef::Id(eps[0].id)).await.unwrap();
    assert!(!netns(&k).contains_key(&cookie("/run/netns/a")), "a deleted pod's namespace goes");
    // a stale entry (a namespace no endpoint has) goes at restart; b stays
    k.state().sock_netns.insert(99, seta_abi::SOCK_NETNS_POD);
    drop(a);
    let a = agent_cfg(&d.0, cfg(true), &k, None, None, None).await;
    assert_eq!(
        netns(&k),
        BTreeMap::from([(1, seta_abi::SOCK_NETNS_HOST), (cookie("/run/netns/b"), seta_abi::SOCK_NETNS_POD)])
    );
    assert!(a.status().await.kube_proxy_replacement.socket_lb.starts_with("Enabled"));
    // a UDP backend that goes: the sockets socket-LB sent to it (its
    // reverse entries) are closed in the node's namespace and in each
    // pod's; a TCP one's are left alone
    let dns = |backend: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: dns, namespace: default}}\nspec:\n  clusterIP: 10.96.0.53\n  ports: [{{name: d, port: 53, protocol: UDP}}, {{name: t, port: 53, protocol: TCP}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: dns-1, namespace: default, labels: {{kubernetes.io/service-name: dns}}}}\naddressType: IPv4\nports: [{{name: d, port: 5353, protocol: UDP}}, {{name: t, port: 5353, protocol: TCP}}]\nendpoints:\n- {{addresses: [{backend}], conditions: {{ready: true}}}}\n")
    };
    let destroys = |k: &Fake| -> Vec<String> {
        let mut st = k.state();
        let d = st.log.iter().filter(|l| l.starts_with("sock destroy")).cloned().collect();
        st.log.clear();
        d
    };
    let translated = |k: &Fake, cookie: u64, to: &str| {
        k.state().sock_rev.insert((cookie, to.parse().unwrap()));
    };
    a.service_import(&dns("10.210.9.1")).await.unwrap();
    translated(&k, 7, "10.210.9.1:5353");
    translated(&k, 8, "10.210.9.9:5353");
    k.state().log.clear();
    a.service_import(&dns("10.210.9.2")).await.unwrap();
    assert_eq!(
        destroys(&k),
        [
            "sock destroy host 17 10.210.9.1:5353 cookie 7",
            "sock destroy /run/netns/b 17 10.210.9.1:5353 cookie 7"
        ]
    );
    assert_eq!(
        k.state().sock_rev.len(),
        1,
        "the removed backend's reverse entry went, the other stays"
    );
    // a backend no socket was sent to: nothing to close, no namespace walked
    a.service_import(&dns("10.210.9.3")).await.unwrap();
    assert!(destroys(&k).is_empty());
    drop(a);
    // --bpf-lb-sock-terminate-pod-connections=false: the node's own only
    let a = agent_cfg(
        &d.0,
        Config {
            sock_lb_terminate_pod_connections: false,
            ..cfg(true)
        },
        &k,
        None,
        None,
        None,
    )
    .await;
    translated(&k, 9, "10.210.9.3:5353");
    k.state().log.clear();
    a.service_import(&dns("10.210.9.4")).await.unwrap();
    assert_eq!(destroys(&k), ["sock destroy host 17 10.210.9.3:5353 cookie 9"]);
    drop(a);
    let a = agent_cfg(&d.0, cfg(false), &k, None, None, None).await;
    assert!(netns(&k).is_empty(), "socket-LB off: nothing served");
    assert_eq!(a.status().await.kube_proxy_replacement.socket_lb, "Disabled");
}

#[tokio::test]
async fn kube_proxy_healthz_follows_the_sources_and_the_service_maps() {
    let d = Tmp::new("kpr-healthz");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, Some("172.31.0.1".parse().unwrap())).await;
    // until the kvstore has been listed, the node is not ready for services
    assert!(
        a.kpr_health().problems.iter().any(|p| p.starts_with("kvstore")),
        "{:?}",
        a.kpr_health()
    );
    tokio::spawn(a.clone().cluster_sync());
    for _ in 0..100 {
        if a.kpr_health().problems.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(a.kpr_health().problems, Vec::<String>::new());
    a.service_import(SVC).await.unwrap();
    let good = a.kpr_health();
    assert!(good.problems.is_empty(), "{good:?}");
    // the service maps cannot be written: unhealthy, since the last good write
    k.state().fail_lb = true;
    a.service_import(&SVC.replace("10.210.1.5", "10.210.1.7")).await.unwrap_err();
    let bad = a.kpr_health();
    assert_eq!(bad.problems.len(), 1, "{bad:?}");
    assert!(
        bad.problems[0].contains("seta_lb4_svc") && bad.problems[0].contains("injected failure"),
        "{bad:?}"
    );
    assert_eq!(bad.last_updated, good.last_updated);
    let (status, _) = crate::kpr_healthz::response(&bad, std::time::SystemTime::now());
    assert_eq!(status.as_u16(), 503);
    // written again: healthy
    k.state().fail_lb = false;
    a.services_resync().await;
    let again = a.kpr_health();
    assert!(again.problems.is_empty(), "{again:?}");
    assert!(again.last_updated > good.last_updated);
}

/// `--nodeport-addresses`: NodePorts on the device's addresses inside the
/// CIDRs, followed while the agent runs (an address added serves, one
/// removed stops), in the list and in the maps.
#[tokio::test]
async fn nodeport_addresses_follow_the_devices_addresses() {
    let d = Tmp::new("npaddrs");
    let k = Fake::new();
    let ul = k.add_link("ul0");
    let (primary, second): (Ipv4Addr, Ipv4Addr) = ("172.31.0.1".parse().unwrap(), "172.31.0.101".parse().unwrap());
    k.state().addrs = vec![(ul.index, primary), (ul.index + 1, "10.9.9.9".parse().unwrap())];
    let cfg = Config {
        nodeport_addresses: vec!["172.31.0.0/24".parse().unwrap(), "10.0.0.0/8".parse().unwrap()],
        ..config(&d.0, "n1", "10.210.1.0/24", RoutingMode::Tunnel)
    };
    let a = agent_cfg(&d.0, cfg, &k, None, Some(primary), None).await;
    a.service_import(SVC).await.unwrap();
    let node_ports = |a: &Agent| -> Vec<String> {
        let mut v: Vec<String> = a
            .service_list()
            .into_iter()
            .filter(|e| e.kind == "NodePort")
            .map(|e| e.frontend)
            .collect();
        v.sort();
        v
    };
    let in_maps = |a: Ipv4Addr| {
        k.state()
            .lb
            .services
            .keys()
            .any(|s| s.address == a.octets() && s.dport == 30080u16.to_be_bytes())
    };
    assert_eq!(
        node_ports(&a),
        ["0.0.0.0:30080/TCP", "172.31.0.1:30080/TCP"],
        "another device's address is not the node's"
    );
    assert!(!a.refresh_node_addresses().await.unwrap(), "nothing changed");
    k.state().addrs.push((ul.index, second));
    assert!(a.refresh_node_addresses().await.unwrap());
    assert_eq!(
        node_ports(&a),
        ["0.0.0.0:30080/TCP", "172.31.0.101:30080/TCP", "172.31.0.1:30080/TCP"]
    );
    assert!(in_maps(second) && in_maps(primary));
    assert_eq!(
        a.status().await.kube_proxy_replacement.node_port_addresses,
        ["172.31.0.1", "172.31.0.101"]
    );
    k.state().addrs.retain(|(_, x)| *x != second);
    assert!(a.refresh_node_addresses().await.unwrap());
    assert!(!in_maps(second) && in_maps(primary), "a removed address stops serving");
}

/// `--devices eth+` (Cilium's wildcard), followed while the agent runs: a
/// matching device that appears gets from_netdev and serves NodePorts on
/// its primary address, BPF masquerade uses that address through it; one
/// that goes is forgotten (its links removed, its NodePorts gone); one made
/// again under the same name is attached again. seta's own devices and
/// other names never match.
#[tokio::test]
async fn devices_are_followed_by_name_and_prefix() {
    let d = Tmp::new("devfollow");
    let k = Fake::new();
    let ul = k.add_link("ul0");
    let primary: Ipv4Addr = "172.31.0.1".parse().unwrap();
    k.state().addrs = vec![(ul.index, primary)];
    let cfg = Config {
        devices: vec!["eth+".into()],
        enable_bpf_masquerade: true,
        ..config(&d.0, "n1", "10.210.1.0/24", RoutingMode::Tunnel)
    };
    let a = agent_cfg(&d.0, cfg, &k, None, Some(primary), None).await;
    a.service_import(SVC).await.unwrap();
    let devices = |a: Arc<Agent>| async move { a.status().await.kube_proxy_replacement.devices };
    let serves = |a: Ipv4Addr| {
        k.state()
            .lb
            .services
            .keys()
            .any(|s| s.address == a.octets() && s.dport == 30080u16.to_be_bytes())
    };
    assert!(!a.refresh_node_addresses().await.unwrap(), "nothing changed");
    assert_eq!(devices(a.clone()).await, ["ul0"]);
    // eth1 appears (and a name the pattern does not match)
    let eth1 = k.add_link("eth1");
    k.add_link("bond0");
    let (e1, e1b): (Ipv4Addr, Ipv4Addr) = ("198.51.100.7".parse().unwrap(), "198.51.100.3".parse().unwrap());
    k.state().addrs.extend([(eth1.index, e1), (eth1.index, e1b)]);
    assert!(a.refresh_node_addresses().await.unwrap());
    assert_eq!(devices(a.clone()).await, ["ul0", "eth1"]);
    assert!(k.state().pinned_devices.contains("eth1") && !k.state().pinned_devices.contains("bond0"));
    assert!(serves(e1b) && !serves(e1), "its primary (lowest) address serves");
    assert_eq!(k.state().masq_devs.get(&eth1.index), Some(&e1b));
    assert_eq!(k.state().masq_devs.get(&ul.index), Some(&primary));
    let masq = a.status().await.masquerading.devices;
    assert_eq!(masq.iter().map(|m| m.device.as_str()).collect::<Vec<_>>(), ["ul0", "eth1"]);
    // made again under the same name: attached again
    k.remove_link("eth1");
    let again = k.add_link("eth1");
    k.state().log.clear();
    k.state().addrs = vec![(ul.index, primary), (again.index, e1b)];
    a.refresh_node_addresses().await.unwrap();
    assert!(k.state().log.contains(&"attach netdev eth1".to_string()), "{:?}", k.state().log);
    assert_eq!(k.state().masq_devs.get(&again.index), Some(&e1b));
    // gone: forgotten, links and NodePorts with it
    k.remove_link("eth1");
    k.state().addrs = vec![(ul.index, primary)];
    assert!(a.refresh_node_addresses().await.unwrap());
    assert_eq!(devices(a.clone()).await, ["ul0"]);
    assert!(!k.state().pinned_devices.contains("eth1"));
    assert!(!serves(e1b) && serves(primary));
    assert_eq!(k.state().masq_devs.keys().copied().collect::<Vec<_>>(), [ul.index]);
}
