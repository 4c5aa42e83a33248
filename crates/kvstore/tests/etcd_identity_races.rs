//! Identity allocation against a real etcd on loopback with many concurrent
//! allocators ("agents", each with its own client): no duplicates, no splits.
use seta_core::labels::parse_list;
use seta_kvstore::etcd::EtcdStore;
use seta_kvstore::identity::ClusterIdentities;
use seta_kvstore::testing::etcd_or_skip;
use seta_kvstore::KvStore;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_agents_never_duplicate_or_split_identities() {
    let Some(etcd) = etcd_or_skip("identity-races") else { return };
    let ep = vec![etcd.endpoint.clone()];
    let label_sets: Vec<String> = (0..40).map(|i| format!("app=a{i},tier=t{}", i % 3)).collect();
    let mut tasks = Vec::new();
    for agent in 0..12 {
        let ep = ep.clone();
        let sets = label_sets.clone();
        tasks.push(tokio::spawn(async move {
            let store = Arc::new(EtcdStore::connect(&ep).await.unwrap());
            let lease = store.grant_lease(60).await.unwrap();
            let ids = ClusterIdentities::new(store, "/seta-test", &format!("node{agent}"), lease);
            let mut got = Vec::new();
            // every agent walks the label sets in its own order
            for j in 0..sets.len() {
                let s = &sets[(j * (agent + 1) * 7) % sets.len()];
                let id = ids.allocate(&parse_list(s, "k8s").unwrap()).await.unwrap();
                got.push((s.clone(), id));
            }
            got
        }));
    }
    let mut by_labels: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for t in tasks {
        for (s, id) in t.await.unwrap() {
            by_labels.entry(s).or_default().insert(id);
        }
    }
    assert_eq!(by_labels.len(), 40);
    for (s, ids) in &by_labels {
        assert_eq!(ids.len(), 1, "label set {s} got several ids: {ids:?} (split)");
    }
    let all: Vec<u32> = by_labels.values().map(|s| *s.iter().next().unwrap()).collect();
    let distinct: BTreeSet<u32> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "two label sets share an id (duplicate)");
    // the store agrees: exactly one id key per label set
    let store = Arc::new(EtcdStore::connect(&ep).await.unwrap());
    let listed = ClusterIdentities::new(store, "/seta-test", "check", 0).list().await.unwrap();
    assert_eq!(listed.len(), 40);
}

/// An expired lease is a typed error (`KvError::LeaseExpired`) for writes
/// under it and for its keep-alive, not a message to recognise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_is_a_typed_error() {
    let Some(etcd) = etcd_or_skip("lease-expired") else { return };
    let store = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint)).await.unwrap();
    let lease = store.grant_lease(1).await.unwrap();
    store.put("/seta-test/lease/a", b"1", lease).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    match store.put("/seta-test/lease/b", b"1", lease).await {
        Err(seta_kvstore::KvError::LeaseExpired(l)) => assert_eq!(l, lease),
        other => panic!("put under an expired lease: {other:?}"),
    }
    match store.create_all(&[("/seta-test/lease/c".into(), b"1".to_vec())], lease).await {
        Err(seta_kvstore::KvError::LeaseExpired(l)) => assert_eq!(l, lease),
        other => panic!("txn under an expired lease: {other:?}"),
    }
    match store.keep_alive(lease).await {
        Err(seta_kvstore::KvError::LeaseExpired(l)) => assert_eq!(l, lease),
        other => panic!("keep-alive of an expired lease: {other:?}"),
    }
    assert_eq!(store.get("/seta-test/lease/a").await.unwrap(), None, "its key went with it");
    // other failures keep their source error
    let e = store.put("/seta-test/lease/d", b"1", 0x7777).await.unwrap_err();
    assert!(matches!(e, seta_kvstore::KvError::LeaseExpired(0x7777)), "{e:?}");
}
