use super::translate::*;
use serde_json::{json, Value};

fn cnp(name: &str, port: &str) -> Value {
    json!({
        "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
        "metadata": {"name": name, "namespace": "shop", "uid": "u1", "resourceVersion": "7", "generation": 1,
                     "managedFields": [{"manager": "kubectl"}], "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"endpointSelector": {"matchLabels": {"app": "web"}},
                 "ingress": [{"toPorts": [{"ports": [{"port": port, "protocol": "TCP"}]}]}]},
        "status": {"nodes": {"n1": {"ok": true}}}
    })
}

fn knp(name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}]}
    })
}

#[test]
fn objects_become_policies_and_bookkeeping_changes_nothing() {
    let mut s = PolicySource::default();
    assert_eq!(
        s.apply(PolicyKind::CiliumNetworkPolicy, &cnp("web", "8080")),
        Outcome::Accepted {
            changed: true,
            cleared: false
        }
    );
    assert_eq!(
        s.apply(PolicyKind::NetworkPolicy, &knp("np")),
        Outcome::Accepted {
            changed: true,
            cleared: false
        }
    );
    let docs = s.docs();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs.iter().map(|d| d.origin.to_string()).collect::<Vec<_>>().len(), 2);
    // a new resourceVersion, status or annotation: the same policy
    let mut again = cnp("web", "8080");
    again["metadata"]["resourceVersion"] = json!("9");
    again["status"] = json!({"nodes": {"n1": {"ok": false}}});
    assert_eq!(
        s.apply(PolicyKind::CiliumNetworkPolicy, &again),
        Outcome::Accepted {
            changed: false,
            cleared: false
        }
    );
    assert_eq!(s.docs(), docs);
    // a changed spec is a changed policy
    assert_eq!(
        s.apply(PolicyKind::CiliumNetworkPolicy, &cnp("web", "9090")),
        Outcome::Accepted {
            changed: true,
            cleared: false
        }
    );
}

#[test]
fn a_rejected_version_keeps_the_accepted_one_and_is_reported_once() {
    let mut s = PolicySource::default();
    s.apply(PolicyKind::CiliumNetworkPolicy, &cnp("web", "8080"));
    let before = s.docs();
    let Outcome::Rejected { msg, new } = s.apply(PolicyKind::CiliumNetworkPolicy, &cnp("web", "70000")) else {
        panic!("refused")
    };
    assert!(new);
    assert!(msg.starts_with("CiliumNetworkPolicy shop/web: "), "{msg}");
    assert!(msg.contains("spec.ingress[0].toPorts[0].ports[0].port"), "names the field: {msg}");
    assert!(msg.contains("70000"), "and the value: {msg}");
    assert_eq!(s.docs(), before, "the accepted version stays");
    assert_eq!(s.rejected().len(), 1);
    // the same bad version again (its status was written): not new
    assert!(matches!(
        s.apply(PolicyKind::CiliumNetworkPolicy, &cnp("web", "70000")),
        Outcome::Rejected { new: false, .. }
    ));
    // fixed: accepted, and the error is cleared
    assert_eq!(
        s.apply(PolicyKind::CiliumNetworkPolicy, &cnp("web", "8080")),
        Outcome::Accepted {
            changed: false,
            cleared: true
        }
    );
    assert!(s.rejected().is_empty());
    // an object that was never good contributes nothing
    assert!(matches!(
        s.apply(PolicyKind::CiliumNetworkPolicy, &cnp("bad", "99999")),
        Outcome::Rejected { .. }
    ));
    assert_eq!(s.docs().len(), 1);
    // a kind that does not match its watch is refused
    let mut wrong = knp("x");
    wrong["kind"] = json!("Pod");
    assert!(matches!(s.apply(PolicyKind::NetworkPolicy, &wrong), Outcome::Rejected { .. }));
}

#[test]
fn a_relist_drops_what_was_deleted_meanwhile() {
    let mut s = PolicySource::default();
    s.apply(PolicyKind::CiliumNetworkPolicy, &cnp("a", "80"));
    s.apply(PolicyKind::CiliumNetworkPolicy, &cnp("b", "81"));
    s.apply(PolicyKind::NetworkPolicy, &knp("np"));
    let (outcomes, changed) = s.replace(PolicyKind::CiliumNetworkPolicy, &[cnp("b", "81")]);
    assert!(changed, "a is gone");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(s.docs().len(), 2, "b and the NetworkPolicy (another kind) stay");
    let (_, changed) = s.replace(PolicyKind::CiliumNetworkPolicy, &[cnp("b", "81")]);
    assert!(!changed);
    assert!(s.delete(PolicyKind::NetworkPolicy, &knp("np")));
    assert!(!s.delete(PolicyKind::NetworkPolicy, &knp("np")));
    let (name, labels) = namespace_labels(&json!({"metadata": {"name": "shop", "labels": {"team": "a"}}})).unwrap();
    assert_eq!((name.as_str(), labels["team"].as_str()), ("shop", "a"));
}

#[test]
fn pods_give_labels_and_named_ports() {
    let pod = json!({"metadata": {"name": "web", "namespace": "shop", "uid": "u9", "labels": {"app": "web", "tier": "fe"}},
                     "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]}});
    let ((ns, name), info) = pod_info(&pod).unwrap();
    assert_eq!((ns.as_str(), name.as_str(), info.uid.as_str()), ("shop", "web", "u9"));
    assert_eq!(info.labels, ["app=web", "tier=fe"]);
    assert_eq!(info.named_ports, ["http=8080/TCP", "dns=53/UDP"]);
    assert!(pod_info(&json!({"metadata": {"name": "x"}})).is_none(), "a Pod has a namespace");
}

/// The watch every Kubernetes source uses, against kube-rs's tower-test
/// mock of the API: a list, then a watch from its resourceVersion whose
/// bookmarks are not surfaced and which resumes from the last one when the
/// stream ends; a 410 Gone (compaction) starts over with a list that shows
/// what changed meanwhile; a 500 and a 403 are reported and the list is
/// retried after a backoff that doubles.
mod relisting_watch {
    use futures::StreamExt;
    use http::{Request, Response};
    use kube::client::Body;
    use kube::runtime::watcher::Event;
    use serde_json::json;
    use std::time::{Duration, Instant};

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn pod(name: &str, rv: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "resourceVersion": rv}})
    }

    /// The next request: (is a watch, its resourceVersion parameter), and where to answer.
    async fn next(h: &mut Handle) -> (bool, String, tower_test::mock::SendResponse<Response<Body>>) {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), h.next_request())
            .await
            .expect("a request within 5 s")
            .expect("the client is alive");
        let q = req.uri().query().unwrap_or("").to_string();
        let param = |k: &str| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap_or("")
                .to_string()
        };
        (param("watch") == "true", param("resourceVersion"), send)
    }

    fn answer(send: tower_test::mock::SendResponse<Response<Body>>, code: u16, body: String) {
        send.send_response(Response::builder().status(code).body(Body::from(body.into_bytes())).unwrap());
    }

    fn list(items: Vec<serde_json::Value>, rv: &str) -> String {
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": rv}, "items": items}).to_string()
    }

    fn status(code: u16, reason: &str) -> String {
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": reason}).to_string()
    }

    fn names(ev: &Event<kube::api::DynamicObject>) -> String {
        match ev {
            Event::Init => "init".into(),
            Event::InitApply(o) => format!("list {}", o.metadata.name.clone().unwrap_or_default()),
            Event::InitDone => "listed".into(),
            Event::Apply(o) => format!("apply {}", o.metadata.name.clone().unwrap_or_default()),
            Event::Delete(o) => format!("delete {}", o.metadata.name.clone().unwrap_or_default()),
        }
    }

    #[tokio::test]
    async fn relists_after_410_and_backs_off_after_errors() {
        let (svc, mut h) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(svc, "default");
        let ar = kube::api::ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk("", "v1", "Pod"), "pods");
        let api: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(client, &ar);
        let mut s = crate::k8s::relisting_watch(api, kube::runtime::watcher::Config::default());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(ev) = s.next().await {
                let _ = tx.send((ev.map(|e| names(&e)).map_err(|e| e.to_string()), Instant::now()));
            }
        });
        type Got = (Result<String, String>, Instant);
        async fn take_from(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Got>, n: usize) -> Vec<Got> {
            let mut out = vec![];
            for _ in 0..n {
                out.push(tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap());
            }
            out
        }
        macro_rules! take {
            ($n:expr) => {
                take_from(&mut rx, $n)
            };
        }
        let ok = |v: &[(Result<String, String>, Instant)]| v.iter().map(|(e, _)| e.clone().unwrap()).collect::<Vec<_>>();

        // the list, then the watch from its resourceVersion
        let (watch, _, send) = next(&mut h).await;
        assert!(!watch, "a list first");
        answer(send, 200, list(vec![pod("a", "10")], "10"));
        assert_eq!(ok(&take!(3).await), ["init", "list a", "listed"]);
        let (watch, rv, send) = next(&mut h).await;
        assert!(watch && rv == "10", "watch from the list's resourceVersion ({rv})");
        let bookmark = json!({"type": "BOOKMARK", "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"resourceVersion": "12"}}});
        let added = json!({"type": "ADDED", "object": pod("b", "13")});
        answer(send, 200, format!("{bookmark}\n{added}\n"));
        assert_eq!(ok(&take!(1).await), ["apply b"], "a bookmark is no event");
        // the stream ended: it resumes from the last resourceVersion, no list
        let (watch, rv, send) = next(&mut h).await;
        assert!(watch && rv == "13", "resumed from 13, not {rv}");
        // 410 Gone (the API compacted past 13): reported, then a fresh list
        let gone = json!({"type": "ERROR", "object": serde_json::from_str::<serde_json::Value>(&status(410, "Expired")).unwrap()});
        answer(send, 200, format!("{gone}\n"));
        let e = take!(1).await;
        assert!(e[0].0.is_err(), "{e:?}");
        let (watch, _, send) = next(&mut h).await;
        assert!(!watch, "after 410: a list");
        answer(send, 200, list(vec![pod("b", "20")], "20"));
        assert_eq!(ok(&take!(3).await), ["init", "list b", "listed"], "a is gone in the list");
        // 500 on the watch: reported; the list again after the backoff
        let (watch, _, send) = next(&mut h).await;
        assert!(watch);
        answer(send, 500, status(500, "InternalError"));
        let e = take!(1).await;
        assert!(e[0].0.is_err(), "{e:?}");
        let t500 = e[0].1;
        let (watch, _, send) = next(&mut h).await;
        let waited = t500.elapsed();
        assert!(!watch && waited >= Duration::from_millis(150), "relisted after {waited:?}");
        // 403 on that list: reported; the next list waits twice as long
        answer(send, 403, status(403, "Forbidden"));
        let e = take!(2).await;
        assert_eq!(e[0].0, Ok("init".to_string()), "a restarted watch begins a list");
        assert!(
            e[1].0.as_ref().unwrap_err().contains("403") || e[1].0.as_ref().unwrap_err().contains("Forbidden"),
            "{e:?}"
        );
        let t403 = e[1].1;
        let (watch, _, send) = next(&mut h).await;
        let waited = t403.elapsed();
        assert!(!watch && waited >= Duration::from_millis(350), "backoff doubled: {waited:?}");
        answer(send, 200, list(vec![pod("b", "21"), pod("c", "22")], "22"));
        assert_eq!(ok(&take!(4).await), ["init", "list b", "list c", "listed"]);
        drop(h);
    }
}
