//! Endpoint, identity, namespace and policy lifecycles through the agent's
//! API methods on the fake kernel: idempotence, conflicts, refusals that
//! change nothing, relabels, revisions and `policy wait`.
use super::*;

#[tokio::test]
async fn create_is_idempotent_and_conflicts_change_nothing() {
    let d = Tmp::new("idem");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.211.1.0/24", &k, None, None).await;
    let ep = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    // the same request again: the same endpoint, nothing new in the kernel
    let log_before = k.state().log.len();
    let link = k.state().links[&ep.interface_name].clone();
    let again = a.create_endpoint(request("web", ep.ipv4, &link, &["app=web"])).await.unwrap();
    assert_eq!(again, ep);
    assert_eq!(k.state().log.len(), log_before, "an idempotent create touches nothing");
    // the same container with another address is a conflict
    let ip2 = a.ipam_allocate("other").await.unwrap().ipv4.ip;
    let e = a.create_endpoint(request("web", ip2, &link, &[])).await.unwrap_err();
    assert!(matches!(e, ApiError::Conflict(_)), "{e}");
    assert_eq!(a.list().await, vec![ep]);
    assert_eq!(k.state().log.len(), log_before, "a refused create touches nothing");
}

#[tokio::test]
async fn bad_requests_are_refused_before_anything_is_taken() {
    let d = Tmp::new("badreq");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.212.1.0/24", &k, None, None).await;
    let ids_before = a.identities().await.len();
    // a label Kubernetes rejects
    let e = pod(&a, &k, "bad1", &["app=web site"]).await.unwrap_err();
    assert!(e.to_string().starts_with("labels[0]: label \"app=web site\""), "{e}");
    // an address IPAM never gave out
    let link = k.add_link("lxcbad2");
    let e = a
        .create_endpoint(request("bad2", "10.212.1.77".parse().unwrap(), &link, &["app=fresh"]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("was not allocated through IPAM"), "{e}");
    // an interface index that is not the named interface's
    let ip = a.ipam_allocate("bad3").await.unwrap().ipv4.ip;
    let e = a
        .create_endpoint(EndpointChangeRequest {
            interface_index: link.index + 1000,
            ..request("bad3", ip, &link, &[])
        })
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("interface-index:"), "{e}");
    assert!(a.list().await.is_empty());
    assert!(k.state().filters.is_empty(), "no program attached");
    assert_eq!(
        a.identities().await.len(),
        ids_before,
        "no identity allocated for a refused endpoint"
    );
}

#[tokio::test]
async fn delete_is_idempotent_and_frees_the_address() {
    let d = Tmp::new("del");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.213.1.0/24", &k, None, None).await;
    let ep = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    a.delete_endpoint(&EndpointRef::Id(ep.id)).await.unwrap();
    let e = a.delete_endpoint(&EndpointRef::Id(ep.id)).await.unwrap_err();
    assert!(matches!(e, ApiError::NotFound(_)), "a second delete finds nothing: {e}");
    assert_eq!(a.status().await.ipam.allocated, 0, "the delete gave the address back");
    assert!(matches!(a.ipam_release(ep.ipv4).await, Err(ApiError::NotFound(_))));
    // the address and the id are free for the next pod
    let again = pod(&a, &k, "web2", &["app=web"]).await.unwrap();
    assert_eq!(again.ipv4, ep.ipv4);
}

#[tokio::test]
async fn relabel_moves_to_a_new_identity_and_back_to_a_known_one() {
    let d = Tmp::new("relabel");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.214.1.0/24", &k, None, None).await;
    a.policy_import(WEB_FROM_CLIENT).await.unwrap();
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let client = pod(&a, &k, "client", &["app=client"]).await.unwrap();
    let other = pod(&a, &k, "other", &["app=other"]).await.unwrap();
    assert!(peers(&k, web.id).contains(&client.identity));
    assert!(!peers(&k, web.id).contains(&other.identity));
    // other becomes a client: a known identity, no new number
    let moved = a.set_labels(&EndpointRef::Id(other.id), vec!["app=client".into()]).await.unwrap();
    assert_eq!(moved.identity, client.identity);
    assert_eq!(
        k.state().endpoints[&other.ipv4].sec_id,
        client.identity,
        "the program reads the new identity"
    );
    // client gets labels nobody had: a new identity, and web's map drops it
    let fresh = a
        .set_labels(&EndpointRef::Id(client.id), vec!["app=brand-new".into()])
        .await
        .unwrap();
    assert!(fresh.identity != client.identity && fresh.identity >= 256);
    assert!(!peers(&k, web.id).contains(&fresh.identity));
    assert!(
        peers(&k, web.id).contains(&client.identity),
        "other still holds the client identity"
    );
    // a label Kubernetes rejects changes nothing
    let e = a.set_labels(&EndpointRef::Id(client.id), vec!["app=-x".into()]).await.unwrap_err();
    assert!(matches!(e, ApiError::BadRequest(_)), "{e}");
    assert_eq!(a.get(&EndpointRef::Id(client.id)).await.unwrap().identity, fresh.identity);
    assert!(a.policy_verify().await.unwrap().is_empty());
}

#[tokio::test]
async fn namespace_labels_move_their_pods_and_bad_ones_are_refused() {
    let d = Tmp::new("ns");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.215.1.0/24", &k, None, None).await;
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    a.set_namespace("default", [("team".to_string(), "a".to_string())].into())
        .await
        .unwrap();
    let moved = a.get(&EndpointRef::Id(web.id)).await.unwrap();
    assert_ne!(moved.identity, web.identity, "a namespace label is part of the identity");
    assert!(moved
        .labels
        .iter()
        .any(|l| l.key == "io.cilium.k8s.namespace.labels.team" && l.value == "a"));
    for (k2, v) in [("bad key", "x"), ("team", "-x"), ("a/b/c", "x")] {
        let e = a
            .set_namespace("default", [(k2.to_string(), v.to_string())].into())
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::BadRequest(_)), "{k2}={v}: {e}");
    }
    assert!(a.set_namespace("Bad_NS", BTreeMap::new()).await.is_err());
    assert_eq!(
        a.get(&EndpointRef::Id(web.id)).await.unwrap().identity,
        moved.identity,
        "refusals changed nothing"
    );
}

#[tokio::test]
async fn policy_revisions_wait_and_delete() {
    let d = Tmp::new("rev");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.216.1.0/24", &k, None, None).await;
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    assert_eq!(a.revision().await, 0);
    let (rev, names) = a.policy_import(WEB_FROM_CLIENT).await.unwrap();
    assert_eq!((rev, names), (1, vec!["CiliumNetworkPolicy default/web-from-client".to_string()]));
    assert_eq!(a.policy_wait(Some(1), Duration::from_secs(5)).await.unwrap(), 1);
    assert_eq!(a.get(&EndpointRef::Id(web.id)).await.unwrap().policy_revision, 1);
    assert!(a.get(&EndpointRef::Id(web.id)).await.unwrap().ingress_enforced);
    // validating changes nothing, importing the same again is a new revision
    a.policy_validate(WEB_FROM_CLIENT).await.unwrap();
    assert_eq!(a.revision().await, 1);
    assert_eq!(a.policy_import(WEB_FROM_CLIENT).await.unwrap().0, 2);
    assert_eq!(a.policy_list().await.policies.len(), 1, "replaced by (kind, namespace, name)");
    // a revision from the future times out with an error, not a hang
    assert!(a.policy_wait(Some(9), Duration::from_millis(200)).await.is_err());
    // deleting an unknown policy is an error and no new revision
    assert!(a.policy_delete(Some("nope"), Some("default"), None, false).await.is_err());
    assert_eq!(a.revision().await, 2);
    let (rev, gone) = a
        .policy_delete(Some("web-from-client"), Some("default"), None, false)
        .await
        .unwrap();
    assert_eq!((rev, gone.len()), (3, 1));
    assert_eq!(a.policy_wait(None, Duration::from_secs(5)).await.unwrap(), 3);
    assert!(
        !a.get(&EndpointRef::Id(web.id)).await.unwrap().ingress_enforced,
        "back to default allow"
    );
    assert!(a.policy_verify().await.unwrap().is_empty());
}

/// On the agent's multi-threaded runtime, map and file writes leave the
/// runtime (`off_runtime`): parallel creates, a policy change regenerating
/// every endpoint while readers ask, and deletes all converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_threaded_runtime_parallel_changes_converge_with_writes_off_the_runtime() {
    let d = Tmp::new("threaded");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.211.9.0/24", &k, None, None).await;
    let creates: Vec<_> = (0..8)
        .map(|i| {
            let (a, k) = (a.clone(), k.clone());
            let app = if i % 2 == 0 { "app=web" } else { "app=client" };
            tokio::spawn(async move { pod(&a, &k, &format!("p{i}"), &[app]).await })
        })
        .collect();
    for c in creates {
        assert_eq!(c.await.unwrap().unwrap().state, EndpointState::Ready);
    }
    let import = {
        let a = a.clone();
        tokio::spawn(async move { a.policy_import(WEB_FROM_CLIENT).await })
    };
    let readers = {
        let a = a.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                assert_eq!(a.status().await.endpoints, 8);
                assert!(!a.identities().await.is_empty());
            }
        })
    };
    let (rev, _) = import.await.unwrap().unwrap();
    readers.await.unwrap();
    assert_eq!(a.policy_wait(Some(rev), Duration::from_secs(5)).await.unwrap(), rev);
    assert!(a.policy_verify().await.unwrap().is_empty(), "every map equals a full recompute");
    let web = a.list().await.into_iter().find(|e| e.pod_name == "p0").unwrap();
    assert!(web.ingress_enforced);
    let deletes: Vec<_> = a
        .list()
        .await
        .into_iter()
        .map(|e| {
            let a = a.clone();
            tokio::spawn(async move { a.delete_endpoint(&EndpointRef::Id(e.id)).await })
        })
        .collect();
    for d in deletes {
        d.await.unwrap().unwrap();
    }
    assert_eq!(k.state().endpoints.len(), 1, "only the router's entry is left");
    assert_eq!(a.status().await.ipam.allocated, 0);
}
