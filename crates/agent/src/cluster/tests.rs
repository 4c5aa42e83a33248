use super::*;
use seta_kvstore::ipcache::IpEntry;

fn node(name: &str, ip: &str, cidr: &str) -> (String, Vec<u8>) {
    let n = NodeInfo {
        name: name.into(),
        ips: vec![ip.parse().unwrap()],
        pod_cidr: cidr.into(),
        boot_id: "b".into(),
        internal_ip: None,
        routing_mode: "tunnel".into(),
        health_address: None,
    };
    (format!("/seta/nodes/v1/{name}"), serde_json::to_vec(&n).unwrap())
}

fn pod(ip: &str, id: u32, node: &str, host: &str) -> (String, Vec<u8>) {
    let e = IpEntry {
        ip: ip.parse().unwrap(),
        identity: id,
        node: node.into(),
        host_ip: host.parse().unwrap(),
    };
    (format!("/seta/ip/v1/default/{ip}"), serde_json::to_vec(&e).unwrap())
}

fn net(s: &str) -> ipnet::Ipv4Net {
    format!("{s}/32").parse().unwrap()
}

#[test]
fn other_nodes_and_their_pods_become_the_remote_ipcache_and_routes() {
    let mut c = ClusterState::default();
    let own: ipnet::Ipv4Net = "10.200.1.0/24".parse().unwrap();
    let a = c.apply(
        vec![
            (
                Watch::Nodes,
                Update::Reset(vec![
                    node("n1", "172.30.0.1", "10.200.1.0/24"),
                    node("n2", "172.30.0.2", "10.200.2.0/24"),
                    // overlaps ours: ignored
                    node("bad", "172.30.0.9", "10.200.0.0/16"),
                ]),
            ),
            (
                Watch::Ips,
                Update::Reset(vec![
                    pod("10.200.2.5", 300, "n2", "172.30.0.2"),
                    // ours, and one in our CIDR that another node claims
                    pod("10.200.1.5", 301, "n1", "172.30.0.1"),
                    pod("10.200.1.6", 302, "n2", "172.30.0.2"),
                ]),
            ),
        ],
        "n1",
    );
    assert!(a.topology && a.identities.is_empty() && !a.policies);
    assert_eq!(
        c.nodes().keys().collect::<Vec<_>>(),
        ["bad", "n2"],
        "this node is not among the others"
    );
    let r = c.remote("n1", own, true);
    assert_eq!(c.routes().len(), 1);
    assert_eq!(
        c.routes()[&("10.200.2.0".parse().unwrap(), 24)],
        "172.30.0.2".parse::<Ipv4Addr>().unwrap()
    );
    let tun = Some("172.30.0.2".parse().unwrap());
    assert_eq!(
        r[&net("10.200.2.5")],
        Entry {
            identity: 300,
            tunnel_endpoint: tun
        }
    );
    assert_eq!(r[&net("172.30.0.2")].identity, seta_abi::REMOTE_NODE_ID);
    assert_eq!(r[&net("10.200.2.1")].identity, seta_abi::REMOTE_NODE_ID, "the node's router");
    assert!(!r.contains_key(&net("10.200.1.5")) && !r.contains_key(&net("10.200.1.6")));
    assert!(!r.contains_key(&net("172.30.0.9")));
    // native routing: no tunnel endpoints
    let r = c.remote("n1", own, false);
    assert_eq!(r[&net("10.200.2.5")].tunnel_endpoint, None);
    // the pod moves to another node, then goes
    c.apply(
        vec![(Watch::Ips, Update::Reset(vec![pod("10.200.2.5", 300, "n3", "172.30.0.3")]))],
        "n1",
    );
    assert_eq!(
        c.remote("n1", own, true)[&net("10.200.2.5")].tunnel_endpoint,
        Some("172.30.0.3".parse().unwrap())
    );
    c.apply(vec![(Watch::Ips, Update::Reset(vec![]))], "n1");
    assert!(!c.remote("n1", own, true).contains_key(&net("10.200.2.5")));
}

/// After a restart the pod IPs and the nodes arrive as two snapshots, in
/// either order: the remote ipcache is computed only once both are in, so
/// remote pods restored in the maps are never taken out meanwhile.
#[test]
fn the_remote_ipcache_waits_for_both_snapshots() {
    let mut c = ClusterState::default();
    let a = c.apply(
        vec![(Watch::Nodes, Update::Reset(vec![node("n2", "172.30.0.2", "10.200.2.0/24")]))],
        "n1",
    );
    assert!(!a.topology, "nodes alone: the pods are not known yet");
    let a = c.apply(vec![(Watch::Ips, Update::Reset(vec![]))], "n1");
    assert!(a.topology, "both in (even an empty one): converge once");
    let a = c.apply(vec![(Watch::Ips, Update::Reset(vec![]))], "n1");
    assert!(!a.topology, "nothing changed");
    let mut c = ClusterState::default();
    let a = c.apply(
        vec![(Watch::Ips, Update::Reset(vec![pod("10.200.2.5", 300, "n2", "172.30.0.2")]))],
        "n1",
    );
    assert!(!a.topology, "pods alone: their nodes are not known yet");
    assert!(c.apply(vec![(Watch::Nodes, Update::Reset(vec![]))], "n1").topology);
}

fn doc(name: &str) -> PolicyDoc {
    let text = format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  endpointSelector: {{}}\n  ingress:\n  - fromEndpoints:\n    - {{}}\n"
    );
    seta_core::policy::parse::parse_file(&text).unwrap().remove(0)
}

#[test]
fn own_policy_writes_count_until_the_watch_shows_them() {
    let mut c = ClusterState::default();
    let a = c.apply(vec![(Watch::Policies, Update::Reset(vec![]))], "n1");
    assert!(a.policies, "the first snapshot always counts");
    assert!(c.first_policy_sync());
    assert!(!c.first_policy_sync());
    let d = doc("p1");
    let key = policy_key("/seta/", &d);
    assert_eq!(key, "/seta/policies/v1/cnp/default/p1");
    let v = serde_json::to_vec(&d).unwrap();
    c.record_policy_writes(PolicyWrites {
        puts: vec![(key.clone(), v.clone())],
        deletes: vec![],
    });
    // an older snapshot without it: this node's write still counts
    assert_eq!(c.policies().len(), 1);
    // the watch catches up; then another node deletes it
    c.apply(vec![(Watch::Policies, Update::Reset(vec![(key.clone(), v.clone())]))], "n1");
    assert_eq!(c.policies().len(), 1);
    c.apply(vec![(Watch::Policies, Update::Reset(vec![]))], "n1");
    assert!(c.policies().is_empty(), "a write the watch showed no longer masks later changes");
    // a delete of a key the watch never had is not pending
    c.record_policy_writes(PolicyWrites {
        puts: vec![],
        deletes: vec![key],
    });
    assert!(c.policies().is_empty());
}

#[test]
fn identity_keys_and_labels_parse() {
    assert_eq!(id_of_key("/seta/identities/v1/id/1234"), Some(1234));
    assert_eq!(id_of_key("/seta/identities/v1/id/x"), None);
    let l = parse_labels(b"k8s:app=web;k8s:io.kubernetes.pod.namespace=default").unwrap();
    assert_eq!(l.len(), 2);
}
