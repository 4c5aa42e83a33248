//! Requests at the agent's API surface on the fake kernel: rollbacks of
//! each failing step, IPAM, refusals, policy waits and traces, status, and
//! what reaches the cluster's kvstore.
use super::*;

/// The create request for `name` with an address taken from IPAM first
/// (so a test can arrange a failure for that address).
async fn prepared(a: &Agent, k: &Fake, name: &str, labels: &[&str]) -> EndpointChangeRequest {
    let ip = a.ipam_allocate(name).await.unwrap().ipv4.ip;
    let link = k.add_link(&format!("lxc{name}"));
    request(name, ip, &link, labels)
}

/// Everything the fake kernel holds for endpoints.
fn kernel_view(k: &Fake) -> impl PartialEq + std::fmt::Debug {
    let st = k.state();
    (st.endpoints.clone(), st.ipcache.clone(), st.filters.clone())
}

#[tokio::test]
async fn a_failed_ipcache_write_rolls_the_create_back() {
    let d = Tmp::new("ipc-rollback");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let req = prepared(&a, &k, "bad", &["app=bad"]).await;
    let before = kernel_view(&k);
    k.state().fail_ipcache.insert(h32(req.ipv4));
    let err = a.create_endpoint(req.clone()).await.unwrap_err();
    assert!(err.to_string().contains(&req.ipv4.to_string()), "names the address: {err}");
    assert_eq!(kernel_view(&k), before, "no endpoint entry, filter or ipcache entry stays");
    assert_eq!(a.list().await, vec![web]);
    assert!(a
        .identities()
        .await
        .iter()
        .all(|i| i.refcount.is_none() || i.labels.iter().all(|l| !l.contains("app=bad"))));
    // the cause gone, the same request succeeds
    k.state().fail_ipcache.clear();
    let ok = a.create_endpoint(req).await.unwrap();
    assert_eq!(ok.state, EndpointState::Ready);
}

#[tokio::test]
async fn a_policy_too_big_for_a_new_endpoint_is_refused_and_leaves_nothing() {
    let d = Tmp::new("full-create");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    let _client = pod(&a, &k, "client", &["app=client"]).await.unwrap();
    a.policy_import(WEB_FROM_CLIENT).await.unwrap();
    k.state().policy_capacity = Some(1);
    let req = prepared(&a, &k, "web", &["app=web"]).await;
    let before = kernel_view(&k);
    let err = a.create_endpoint(req.clone()).await.unwrap_err();
    assert!(err.to_string().contains("full") || err.to_string().contains("entries"), "{err}");
    assert_eq!(kernel_view(&k), before, "never attached without its policy");
    assert_eq!(a.list().await.len(), 1);
    k.state().policy_capacity = None;
    assert_eq!(a.create_endpoint(req).await.unwrap().state, EndpointState::Ready);
}

#[tokio::test]
async fn ipam_hands_out_each_address_once_and_says_when_it_is_exhausted() {
    let d = Tmp::new("ipam");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/29", &k, None, None).await;
    let mut got = std::collections::BTreeSet::new();
    let mut err = None;
    for i in 0..16 {
        match a.ipam_allocate(&format!("c{i}")).await {
            Ok(r) => assert!(got.insert(r.ipv4.ip), "{} handed out twice", r.ipv4.ip),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("a /29 runs out");
    assert!(matches!(err, ApiError::Conflict(_)), "{err}");
    assert!(
        !got.contains(&"10.210.1.1".parse().unwrap()),
        "the router address is never handed out"
    );
    // released by owner, an address is free again
    assert_eq!(a.ipam_release_owner("c0").await.unwrap(), 1);
    assert_eq!(a.ipam_release_owner("c0").await.unwrap(), 0, "idempotent");
    assert!(a.ipam_allocate("again").await.is_ok());
}

#[tokio::test]
async fn unknown_endpoints_and_bad_references_are_told_apart() {
    let d = Tmp::new("refs");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    let err = a.get(&EndpointRef::Id(999)).await.unwrap_err();
    assert!(matches!(err, ApiError::NotFound(_)), "{err}");
    let err = a
        .set_labels(&EndpointRef::ContainerId("nope".into()), vec!["app=x".into()])
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound(_)), "{err}");
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let err = a.set_labels(&EndpointRef::Id(web.id), vec!["bad label!".into()]).await.unwrap_err();
    assert!(matches!(err, ApiError::BadRequest(_)), "{err}");
    assert_eq!(
        a.get(&EndpointRef::Id(web.id)).await.unwrap(),
        web,
        "a refused relabel changes nothing"
    );
}

#[tokio::test]
async fn policy_wait_refuses_future_revisions_and_names_lagging_endpoints() {
    let d = Tmp::new("wait");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let (rev, _) = a.policy_import(WEB_FROM_CLIENT).await.unwrap();
    let err = a.policy_wait(Some(rev + 5), Duration::from_millis(50)).await.unwrap_err();
    assert!(
        matches!(err, ApiError::BadRequest(_)) && err.to_string().contains("does not exist"),
        "{err}"
    );
    assert_eq!(a.policy_wait(None, Duration::from_secs(1)).await.unwrap(), rev);
    // an endpoint that cannot take the next revision holds the wait
    k.state().policy_capacity = Some(0);
    let (rev2, _) = a
        .policy_import(&WEB_FROM_CLIENT.replace("web-from-client", "second"))
        .await
        .unwrap();
    let err = a.policy_wait(Some(rev2), Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(err, ApiError::Conflict(_)), "{err}");
    assert!(err.to_string().contains(&web.id.to_string()), "names the endpoint: {err}");
    let st = a.status().await;
    assert_eq!(st.policy_revision, rev2);
    assert_eq!(st.endpoint_states.get("not-ready"), Some(&1), "{:?}", st.endpoint_states);
}

#[tokio::test]
async fn a_bad_policy_import_changes_nothing() {
    let d = Tmp::new("bad-import");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let (rev, _) = a.policy_import(WEB_FROM_CLIENT).await.unwrap();
    let map = k.state().policy[&web.id].clone();
    let bad = format!(
        "{WEB_FROM_CLIENT}---\n{}",
        WEB_FROM_CLIENT
            .replace("web-from-client", "other")
            .replace("app: client", "app: [x")
    );
    let err = a.policy_import(&bad).await.unwrap_err();
    assert!(matches!(err, ApiError::BadRequest(_)), "{err}");
    assert_eq!(a.revision().await, rev);
    assert_eq!(a.policy_list().await.policies.len(), 1);
    assert_eq!(k.state().policy[&web.id], map, "the map is untouched");
    let err = a.policy_import("").await.unwrap_err();
    assert!(err.to_string().contains("no policy"), "{err}");
    let err = a.policy_delete(Some("missing"), None, None, false).await.unwrap_err();
    assert!(matches!(err, ApiError::NotFound(_)), "{err}");
    assert!(a.policy_verify().await.unwrap().is_empty(), "maps equal a full recompute");
}

#[tokio::test]
async fn trace_answers_from_the_same_policy_the_maps_hold() {
    let d = Tmp::new("trace");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let client = pod(&a, &k, "client", &["app=client"]).await.unwrap();
    let other = pod(&a, &k, "other", &["app=other"]).await.unwrap();
    a.policy_import(WEB_FROM_CLIENT).await.unwrap();
    let spec = |ep: &Endpoint| TraceSpec {
        endpoint: Some(ep.id.to_string()),
        labels: None,
        namespace: None,
        ip: None,
    };
    let t = |from: &Endpoint, to: &Endpoint| TraceRequest {
        from: spec(from),
        to: spec(to),
        protocol: "TCP".into(),
        port: 80,
    };
    let r = a.trace(&t(&client, &web)).await.unwrap();
    assert!(r.allowed, "{r:?}");
    assert_eq!((r.source_identity, r.destination_identity), (client.identity, web.identity));
    assert!(!a.trace(&t(&other, &web)).await.unwrap().allowed);
    assert!(peers(&k, web.id).contains(&client.identity) && !peers(&k, web.id).contains(&other.identity));
    // by labels: a pod that does not exist yet
    let r = a
        .trace(&TraceRequest {
            from: TraceSpec {
                endpoint: None,
                labels: Some(vec!["app=client".into()]),
                namespace: Some("default".into()),
                ip: None,
            },
            to: spec(&web),
            protocol: "TCP".into(),
            port: 80,
        })
        .await
        .unwrap();
    assert!(r.allowed);
    let mut bad = t(&client, &web);
    bad.protocol = "QUIC".into();
    assert!(matches!(a.trace(&bad).await.unwrap_err(), ApiError::BadRequest(_)));
}

#[tokio::test]
async fn endpoint_ips_reach_the_cluster_through_the_outbox() {
    let d = Tmp::new("outbox");
    let store = Arc::new(MemoryStore::new());
    let k = Fake::new();
    let a = agent(
        &d.0,
        "n1",
        "10.210.1.0/24",
        &k,
        Some(Kv::shared_memory(store.clone(), "/seta", "n1")),
        Some("172.31.0.1".parse().unwrap()),
    )
    .await;
    // the publisher writes while the cluster sync reports the kvstore connected
    tokio::spawn(a.clone().cluster_sync());
    tokio::spawn(a.clone().ip_publisher());
    eventually("the kvstore watches are up", || a.kv_health.connected()).await;
    let key = |ip: Ipv4Addr| format!("/seta/ip/v1/{ip}");
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let published = |store: &Arc<MemoryStore>, ip| {
        let store = store.clone();
        let key = key(ip);
        async move { store.get(&key).await.unwrap() }
    };
    for _ in 0..100 {
        if published(&store, web.ipv4).await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = published(&store, web.ipv4).await.expect("the pod's IP is published");
    let e = seta_kvstore::ipcache::parse(&v).unwrap();
    assert_eq!((e.identity, e.node.as_str()), (web.identity, "n1"));
    assert_eq!(e.host_ip, "172.31.0.1".parse::<Ipv4Addr>().unwrap());
    a.delete_endpoint(&EndpointRef::Id(web.id)).await.unwrap();
    for _ in 0..100 {
        if published(&store, web.ipv4).await.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(published(&store, web.ipv4).await.is_none(), "withdrawn with the pod");
}

/// An agent on a store shared with "other nodes" the test writes for.
async fn clustered(d: &Path, k: &Arc<Fake>) -> (Arc<Agent>, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    k.add_link(HOST_DEV);
    let a = agent(
        d,
        "n1",
        "10.210.1.0/24",
        k,
        Some(Kv::shared_memory(store.clone(), "/seta", "n1")),
        Some("172.31.0.1".parse().unwrap()),
    )
    .await;
    tokio::spawn(a.clone().cluster_sync());
    eventually("the kvstore watches are up", || a.kv_health.connected()).await;
    (a, store)
}

fn remote(ip: &str, identity: u32, node: &str, host: &str) -> seta_kvstore::ipcache::IpEntry {
    seta_kvstore::ipcache::IpEntry {
        ip: ip.parse().unwrap(),
        identity,
        node: node.into(),
        host_ip: host.parse().unwrap(),
    }
}

#[tokio::test]
async fn a_remote_pod_appears_moves_to_another_node_and_disappears() {
    let d = Tmp::new("moves");
    let k = Fake::new();
    let (_a, store) = clustered(&d.0, &k).await;
    let ip: Ipv4Addr = "10.210.2.7".parse().unwrap();
    let at = |host: &str| seta_core::ipcache::Entry {
        identity: 4000,
        tunnel_endpoint: Some(host.parse().unwrap()),
    };
    seta_kvstore::ipcache::publish(&*store, "/seta", &remote("10.210.2.7", 4000, "n2", "172.31.0.2"), 0)
        .await
        .unwrap();
    eventually("the pod appears behind n2", || {
        k.state().ipcache.get(&h32(ip)) == Some(&at("172.31.0.2"))
    })
    .await;
    // rescheduled with the same address on n3: the tunnel endpoint follows
    seta_kvstore::ipcache::publish(&*store, "/seta", &remote("10.210.2.7", 4000, "n3", "172.31.0.3"), 0)
        .await
        .unwrap();
    eventually("the pod moves behind n3", || {
        k.state().ipcache.get(&h32(ip)) == Some(&at("172.31.0.3"))
    })
    .await;
    seta_kvstore::ipcache::withdraw(&*store, "/seta", ip).await.unwrap();
    eventually("the pod disappears", || !k.state().ipcache.contains_key(&h32(ip))).await;
}

#[tokio::test]
async fn other_nodes_never_claim_this_nodes_addresses() {
    let d = Tmp::new("claims");
    let k = Fake::new();
    let (a, store) = clustered(&d.0, &k).await;
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let mine = k.state().ipcache[&h32(web.ipv4)];
    // a stale or hostile entry for our pod's address, from another node
    let ip = web.ipv4.to_string();
    seta_kvstore::ipcache::publish(&*store, "/seta", &remote(&ip, 4000, "n2", "172.31.0.2"), 0)
        .await
        .unwrap();
    // and a node whose pod CIDR overlaps ours
    let overlapping = seta_kvstore::nodes::NodeInfo {
        name: "n9".into(),
        ips: vec!["172.31.0.9".parse().unwrap()],
        pod_cidr: "10.210.0.0/16".into(),
        ..Default::default()
    };
    seta_kvstore::nodes::register(&*store, "/seta", &overlapping, 0).await.unwrap();
    // a proper third node, to know the events were seen
    let n3 = seta_kvstore::nodes::NodeInfo {
        name: "n3".into(),
        ips: vec!["172.31.0.3".parse().unwrap()],
        pod_cidr: "10.210.3.0/24".into(),
        ..Default::default()
    };
    seta_kvstore::nodes::register(&*store, "/seta", &n3, 0).await.unwrap();
    eventually("n3's pods are routed", || {
        k.state().routes.contains_key(&("10.210.3.0".parse().unwrap(), 24))
    })
    .await;
    // a later entry under the same prefix: once it is in, the claim was seen
    seta_kvstore::ipcache::publish(&*store, "/seta", &remote("10.210.3.5", 4001, "n3", "172.31.0.3"), 0)
        .await
        .unwrap();
    eventually("n3's pod is known", || {
        k.state().ipcache.contains_key(&h32("10.210.3.5".parse().unwrap()))
    })
    .await;
    assert_eq!(k.state().ipcache[&h32(web.ipv4)], mine, "our pod keeps its own entry");
    assert!(
        !k.state().routes.contains_key(&("10.210.0.0".parse().unwrap(), 16)),
        "no route for an overlapping pod CIDR"
    );
}

#[tokio::test]
async fn delete_flushes_the_pods_conntrack_and_keeps_its_map_ready_for_the_next() {
    let d = Tmp::new("ct");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let client = pod(&a, &k, "client", &["app=client"]).await.unwrap();
    a.policy_import(WEB_FROM_CLIENT).await.unwrap();
    k.state().ct.insert(web.ipv4, 3);
    k.state().ct.insert(client.ipv4, 2);
    a.delete_endpoint(&EndpointRef::Id(web.id)).await.unwrap();
    {
        let st = k.state();
        assert!(!st.ct.contains_key(&web.ipv4), "the deleted pod's connections are gone");
        assert_eq!(st.ct.get(&client.ipv4), Some(&2), "others' stay");
        assert!(st.policy[&web.id].is_empty(), "its map stays registered, emptied");
    }
    // the next endpoint with that id starts from an empty map plus its own policy
    let next = pod(&a, &k, "next", &["app=web"]).await.unwrap();
    assert_eq!(next.id, web.id, "the lowest free id is reused");
    assert!(peers(&k, next.id).contains(&client.identity));
    assert!(a.policy_verify().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_node_joining_a_cluster_without_policies_publishes_its_own() {
    let d = Tmp::new("join");
    let k = Fake::new();
    {
        // on its own first: the policy lives in the state dir only
        let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
        a.policy_import(WEB_FROM_CLIENT).await.unwrap();
    }
    let store = Arc::new(MemoryStore::new());
    let a = agent(
        &d.0,
        "n1",
        "10.210.1.0/24",
        &k,
        Some(Kv::shared_memory(store.clone(), "/seta", "n1")),
        Some("172.31.0.1".parse().unwrap()),
    )
    .await;
    assert_eq!(a.policy_list().await.policies.len(), 1, "kept over the restart");
    tokio::spawn(a.clone().cluster_sync());
    for _ in 0..100 {
        if !store.list("/seta/policies/v1/").await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kept = store.list("/seta/policies/v1/").await.unwrap();
    assert_eq!(kept.len(), 1, "the node's policy became the cluster's");
    assert!(kept[0].0.contains("web-from-client"), "{}", kept[0].0);
    // and the node keeps enforcing it (the cluster's set is now the same)
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(a.policy_list().await.policies.len(), 1);
}

/// A scrape reflects the subsystems: endpoints by state, identities, the
/// datapath's counters, endpoint creations and API-free timings.
#[tokio::test]
async fn metrics_scrape_reflects_endpoints_datapath_and_creations() {
    let d = Tmp::new("metrics");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let bad = prepared(&a, &k, "bad", &[]).await;
    k.state().fail_attach.insert(bad.interface_name.clone());
    assert!(a.create_endpoint(bad).await.is_err());
    k.state().metrics = vec![(133, seta_abi::METRIC_INGRESS, 5, 300), (0, seta_abi::METRIC_EGRESS, 9, 900)];
    let text = a.metrics_text().await;
    for line in [
        "seta_endpoint 1",
        "seta_endpoint_state{endpoint_state=\"ready\"} 1",
        "seta_drop_count_total{reason=\"Policy denied\",direction=\"INGRESS\"} 5",
        "seta_forward_count_total{direction=\"EGRESS\"} 9",
        "seta_endpoint_create_duration_seconds_count{outcome=\"success\"} 1",
        "seta_endpoint_create_duration_seconds_count{outcome=\"failure\"} 1",
        "seta_identity{type=\"cluster_local\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}
