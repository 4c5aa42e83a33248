//! A real etcd (on loopback, no root) that goes away: what still answers at
//! once and what waits. Nothing the node already knows may wait for etcd.
use super::*;
use seta_kvstore::testing::EtcdServer;

/// Within this, an operation did not wait for the absent etcd (whose reads
/// time out after 2 s and whose allocations retry for seconds).
const PROMPT: Duration = Duration::from_secs(1);

async fn prompt<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    let t = Instant::now();
    match tokio::time::timeout(PROMPT, f).await {
        Ok(v) => {
            eprintln!("{what}: answered in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
            v
        }
        Err(_) => panic!("{what} waited for the absent etcd: no answer after {:?}", t.elapsed()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_stopped_everything_the_node_knows_answers_at_once() {
    outage(Away::Stopped).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_silent_everything_the_node_knows_answers_at_once() {
    outage(Away::Frozen).await
}

/// How etcd goes away: killed (connections refused at once) or frozen
/// (connections open, no answer: a network partition).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Away {
    Stopped,
    Frozen,
}

async fn outage(away: Away) {
    let Some(mut etcd) = EtcdServer::start(&format!("agent-outage-{away:?}")) else {
        assert!(std::env::var("CI").is_err(), "etcd must be installed under CI=true");
        eprintln!("skipped: no etcd binary");
        return;
    };
    let d = Tmp::new("outage");
    let k = Fake::new();
    let mut cfg = config(&d.0, "n1", "10.210.1.0/24", RoutingMode::Tunnel);
    cfg.kvstore = crate::config::KvstoreKind::Etcd;
    cfg.kvstore_endpoints = vec![etcd.endpoint.clone()];
    let kv = Kv::open(&cfg).await.unwrap();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, Some(kv), Some("172.30.0.1".parse().unwrap())).await;
    a.clone().spawn_background();
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let client = pod(&a, &k, "client", &["app=client"]).await.unwrap();
    a.policy_import(WEB_FROM_CLIENT).await.unwrap();

    match away {
        Away::Stopped => etcd.stop(),
        Away::Frozen => etcd.freeze(),
    }
    let st = prompt("status", a.status()).await;
    assert_eq!(st.endpoints, 2);
    assert_eq!(prompt("endpoint list", a.list()).await.len(), 2);
    // a pod whose label set this node already holds: no new number needed
    let web2 = prompt("CNI ADD with a known identity", pod(&a, &k, "web2", &["app=web"]))
        .await
        .unwrap();
    assert_eq!(web2.identity, web.identity);
    assert_eq!(web2.state, EndpointState::Ready);
    assert!(peers(&k, web2.id).contains(&client.identity), "and it enforces the policy");
    // a relabel to a label set this node holds
    let moved = prompt(
        "relabel to a known label set",
        a.set_labels(&EndpointRef::Id(web2.id), vec!["app=client".into()]),
    )
    .await
    .unwrap();
    assert_eq!(moved.identity, client.identity);
    assert_eq!(k.state().endpoints[&web2.ipv4].sec_id, client.identity, "the datapath follows");
    let gone = prompt("pod delete", a.delete_endpoint(&EndpointRef::Id(web2.id))).await.unwrap();
    assert_eq!(gone.state, EndpointState::Disconnected);
    assert!(!k.state().endpoints.contains_key(&web2.ipv4));
    assert_eq!(prompt("endpoint list", a.list()).await.len(), 2);

    // what needs a new number waits for etcd, and says so when it gives up
    let t = Instant::now();
    let err = pod(&a, &k, "new", &["app=new"]).await.unwrap_err();
    assert!(matches!(err, ApiError::Unavailable(_)), "{err}");
    a.ipam_release_owner("new").await.unwrap();
    assert!(err.to_string().contains("kvstore"), "{err}");
    assert!(
        t.elapsed() <= identities::ALLOCATE_DEADLINE + Duration::from_secs(2),
        "bounded: {:?}",
        t.elapsed()
    );
    assert_eq!(prompt("endpoint list", a.list()).await.len(), 2, "nothing half-made");
    // and status answers meanwhile, with the kvstore named
    let st = prompt("status", a.status()).await;
    assert_eq!(st.endpoints, 2);

    // etcd back: a new label set gets its number
    match away {
        Away::Stopped => assert!(etcd.resume()),
        Away::Frozen => etcd.thaw(),
    }
    let mut last = None;
    for i in 0..30 {
        let name = format!("back{i}");
        match pod(&a, &k, &name, &["app=new"]).await {
            Ok(ep) => {
                last = Some(Ok(ep));
                break;
            }
            Err(e) => {
                a.ipam_release_owner(&name).await.unwrap();
                last = Some(Err(e));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    let ep = last.unwrap().expect("a new identity once etcd is back");
    assert!(ep.identity >= 256);
}
