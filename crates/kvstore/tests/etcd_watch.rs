//! Watching a prefix on a real etcd: snapshot then changes, entries under a
//! lease vanish when it expires, and after etcd stops and comes back the
//! reflector re-lists (a full snapshot that includes what changed meanwhile).
use seta_kvstore::etcd::EtcdStore;
use seta_kvstore::reflector::{self, Health, Mirror, Update};
use seta_kvstore::testing::etcd_or_skip;
use seta_kvstore::KvStore;
use std::sync::Arc;
use std::time::Duration;

async fn next(rx: &mut tokio::sync::mpsc::Receiver<Update>) -> Update {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("an update within 20 s")
        .expect("reflector alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_lease_expiry_and_resync_after_etcd_restart() {
    let Some(mut etcd) = etcd_or_skip("watch") else { return };
    let ep = vec![etcd.endpoint.clone()];
    let store = Arc::new(EtcdStore::connect(&ep).await.unwrap());
    store.put("/w/ip/a", b"1", 0).await.unwrap();
    let health = Arc::new(Health::default());
    let mut rx = reflector::spawn(store.clone(), "/w/ip/".into(), health.clone());
    let mut m = Mirror::default();
    m.apply(next(&mut rx).await);
    assert_eq!(m.data.len(), 1);
    assert!(health.connected());

    // a leased entry appears, then expires by itself
    let lease = store.grant_lease(2).await.unwrap();
    store.put("/w/ip/leased", b"x", lease).await.unwrap();
    let c = m.apply(next(&mut rx).await);
    assert_eq!(c[0].0, "/w/ip/leased");
    let c = m.apply(next(&mut rx).await);
    assert_eq!(
        c,
        vec![("/w/ip/leased".to_string(), Some(b"x".to_vec()), None)],
        "expired with its lease"
    );

    // etcd goes away: the reflector notices; a change made by another client
    // after etcd returns is seen through a fresh snapshot or the new watch
    etcd.stop();
    for _ in 0..100 {
        if !health.connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!health.connected(), "reflector reports the broken watch");
    assert!(etcd.resume());
    let other = EtcdStore::connect(&ep).await.unwrap();
    other.put("/w/ip/b", b"2", 0).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !m.data.contains_key("/w/ip/b") {
        assert!(std::time::Instant::now() < deadline, "resynced within 20 s");
        m.apply(next(&mut rx).await);
    }
    assert!(health.connected());
    assert!(health.resyncs() >= 1);
    assert_eq!(
        m.data.keys().cloned().collect::<Vec<_>>(),
        vec!["/w/ip/a".to_string(), "/w/ip/b".to_string()]
    );
}
