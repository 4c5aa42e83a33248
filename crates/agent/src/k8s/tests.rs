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
