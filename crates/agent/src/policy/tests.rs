//! The policy subsystem alone: no agent, no kernel, no runtime.
use super::*;
use seta_core::policy::parse::parse_file;

/// A pod's identity labels in namespace default.
fn labels(ls: &[&str]) -> LabelSet {
    ls.iter()
        .chain(&["io.kubernetes.pod.namespace=default"])
        .map(|l| Label::parse(l, "k8s").unwrap())
        .collect()
}

fn docs(yaml: &str) -> Vec<PolicyDoc> {
    parse_file(yaml).unwrap()
}

const WEB_FROM_CLIENT: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
"#;

const TO_CIDR: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: out, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.10/32]}]
"#;

const IPBLOCK: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: block, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/8}}]
"#;

fn no_ports() -> BTreeMap<String, (u8, u16)> {
    BTreeMap::new()
}

#[test]
fn documents_are_kept_by_origin_sorted_and_replaced_only_when_different() {
    let mut p = Policy::new(Repository::default(), true);
    p.upsert(docs(WEB_FROM_CLIENT));
    p.upsert(docs(TO_CIDR));
    assert_eq!(p.docs().len(), 2);
    let names: Vec<String> = p.docs().iter().map(|d| d.origin.name.clone()).collect();
    assert_eq!(names, ["out", "web"], "sorted by origin");
    // the same origin again replaces, never duplicates
    p.upsert(docs(&WEB_FROM_CLIENT.replace("8080", "9090")));
    assert_eq!(p.docs().len(), 2);
    assert!(format!("{:?}", p.docs()[1]).contains("9090"));
    // replacing with an equal set is no change; a different one is
    assert!(!p.replace(p.docs().to_vec()));
    assert!(p.replace(docs(TO_CIDR)));
    assert_eq!(p.docs().len(), 1);
    let gone = p.remove(&docs(TO_CIDR));
    assert_eq!(gone.len(), 1);
    assert!(gone[0].contains("out"), "{gone:?}");
    assert!(p.docs().is_empty());
    assert!(p.remove(&docs(TO_CIDR)).is_empty(), "removing what is not there removes nothing");
}

#[test]
fn cidr_identities_follow_the_rules_and_stay_stable() {
    let mut p = Policy::new(Repository::default(), true);
    p.upsert(docs(TO_CIDR));
    assert_eq!(p.bump(), 1);
    let ids = p.cidr_ids().clone();
    assert_eq!(ids.len(), 2, "the prefix and its except: {ids:?}");
    assert!(ids.values().all(|id| *id > SCOPE_LOCAL), "node-local scope");
    // another rule: the existing prefixes keep their numbers
    p.upsert(docs(WEB_FROM_CLIENT));
    p.bump();
    assert_eq!(p.cidr_ids(), &ids);
    // the rule goes, its identities go
    p.remove(&docs(TO_CIDR));
    assert_eq!(p.bump(), 3);
    assert!(p.cidr_ids().is_empty());
    // they are in the universe while they exist, as world + cidr labels
    p.upsert(docs(TO_CIDR));
    p.bump();
    let u = p.universe([]);
    let cidrs: Vec<&IdentityInfo> = u.iter().filter(|i| matches!(i.kind, IdKind::Cidr(_))).collect();
    assert_eq!(cidrs.len(), 2);
    assert!(cidrs.iter().all(|i| i.labels.iter().any(|l| l.to_string() == "reserved:world")));
}

#[test]
fn ipblock_pod_ips_get_stable_per_ip_identities() {
    let mut p = Policy::new(Repository::default(), true);
    let a: Ipv4Addr = "10.1.0.2".parse().unwrap();
    let b: Ipv4Addr = "10.1.0.3".parse().unwrap();
    let outside: Ipv4Addr = "192.168.0.2".parse().unwrap();
    assert!(!p.sync_ipblock_ids([a, b]), "no ipBlock: no per-IP identities");
    p.upsert(docs(IPBLOCK));
    assert!(p.sync_ipblock_ids([a, b, outside]));
    let ids = p.ipblock_ids().clone();
    assert_eq!(ids.keys().copied().collect::<Vec<_>>(), [a, b], "only pod IPs inside the block");
    assert!(ids.values().all(|id| *id > seta_abi::IDENTITY_SCOPE_IPBLOCK));
    assert!(!p.sync_ipblock_ids([b, a]), "same set: no change");
    assert!(p.sync_ipblock_ids([b]), "a pod went");
    assert_eq!(p.ipblock_ids()[&b], ids[&b], "the other keeps its number");
    p.remove(&docs(IPBLOCK));
    assert!(p.sync_ipblock_ids([b]));
    assert!(p.ipblock_ids().is_empty());
}

#[test]
fn namespaces_start_with_their_name_label() {
    let mut p = Policy::new(Repository::default(), true);
    let l = p.namespace_labels("team-a");
    assert_eq!(l["kubernetes.io/metadata.name"], "team-a");
    let old = p.set_namespace("team-a", Some(BTreeMap::from([("env".into(), "prod".into())])));
    assert_eq!(old, Some(l));
    assert_eq!(p.namespaces()["team-a"]["env"], "prod");
    p.set_namespace("team-a", None);
    assert!(p.namespaces().is_empty());
}

/// Identities of a small cluster: web, client, other.
fn universe(p: &Policy, extra: &[(u32, LabelSet)]) -> Vec<IdentityInfo> {
    let mut eps = vec![
        (1000, labels(&["app=web"])),
        (1001, labels(&["app=client"])),
        (1002, labels(&["app=other"])),
    ];
    eps.extend(extra.iter().cloned());
    p.universe(eps)
}

#[test]
fn resolution_selects_its_endpoints_and_allows_what_the_rules_say() {
    let mut p = Policy::new(Repository::default(), false);
    p.upsert(docs(WEB_FROM_CLIENT));
    p.bump();
    let u = universe(&p, &[]);
    let web = labels(&["app=web"]);
    let ports = no_ports();
    let r = p.resolve(
        &p.rules(),
        &Subject {
            labels: &web,
            named_ports: &ports,
        },
        BTreeMap::new(),
        &u,
    );
    assert!(r.policy.ingress_enforced && !r.policy.egress_enforced);
    let peers: BTreeSet<u32> = r.state.keys().filter(|k| !k.egress).map(|k| k.identity).collect();
    assert!(peers.contains(&1001), "client may reach web: {peers:?}");
    assert!(!peers.contains(&1002), "other may not");
    assert!(r
        .state
        .keys()
        .filter(|k| k.identity == 1001)
        .all(|k| k.port == 8080 && k.proto == 6));
    // an unselected endpoint enforces nothing
    let other = labels(&["app=other"]);
    let r = p.resolve(
        &p.rules(),
        &Subject {
            labels: &other,
            named_ports: &ports,
        },
        BTreeMap::new(),
        &u,
    );
    assert!(!r.policy.ingress_enforced && !r.policy.egress_enforced);
    assert_eq!(r.entries().len(), r.state.len());
}

#[test]
fn identity_churn_as_deltas_equals_a_full_recompute() {
    let mut p = Policy::new(Repository::default(), true);
    p.upsert(docs(WEB_FROM_CLIENT));
    p.bump();
    let web = labels(&["app=web"]);
    let ports = no_ports();
    let subject = Subject {
        labels: &web,
        named_ports: &ports,
    };
    assert!(
        p.identity_delta(7, &[], &[1001]).is_none(),
        "nothing cached: a full resolution is needed"
    );
    let r = p.resolve(&p.rules(), &subject, BTreeMap::new(), &universe(&p, &[]));
    let mut map = r.entries();
    p.cache(7, r);
    // a second client identity appears, then the first one goes
    let client2 = (1003, labels(&["app=client", "tier=2"]));
    let added = IdentityInfo {
        id: 1003,
        labels: client2.1.clone(),
        kind: IdKind::Endpoint,
    };
    let d = p.identity_delta(7, std::slice::from_ref(&added), &[]).unwrap();
    assert!(d.drop.is_empty() && !d.upsert.is_empty(), "{d:?}");
    map.extend(d.upsert);
    let d = p.identity_delta(7, &[], &[1001]).unwrap();
    assert!(d.upsert.is_empty() && !d.drop.is_empty());
    for k in d.drop {
        map.remove(&k);
    }
    // an identity no rule selects changes nothing
    let stranger = IdentityInfo {
        id: 1004,
        labels: labels(&["app=stranger"]),
        kind: IdKind::Endpoint,
    };
    assert!(p.identity_delta(7, &[stranger], &[]).unwrap().is_empty());
    // the map built from deltas is what a full resolution gives now
    let now: Vec<(u32, LabelSet)> = vec![
        (1000, web.clone()),
        client2,
        (1002, labels(&["app=other"])),
        (1004, labels(&["app=stranger"])),
    ];
    let full = p.resolve(&p.rules(), &subject, BTreeMap::new(), &p.universe(now));
    assert_eq!(map, full.entries());
    assert_eq!(p.cached(7).unwrap().entries(), full.entries(), "and so is the cache");
    p.forget(7);
    assert!(p.cached(7).is_none() && p.identity_delta(7, &[], &[1003]).is_none());
}

#[test]
fn the_repository_round_trips_through_its_file_format() {
    let mut p = Policy::new(Repository::default(), true);
    p.upsert(docs(TO_CIDR));
    p.bump();
    p.namespace_labels("default");
    let json = serde_json::to_string(p.repository()).unwrap();
    let q = Policy::new(serde_json::from_str(&json).unwrap(), true);
    assert_eq!(q.revision(), 1);
    assert_eq!(q.cidr_ids(), p.cidr_ids(), "CIDR numbers survive a restart");
    assert_eq!(q.namespaces(), p.namespaces());
    assert_eq!(q.docs().len(), 1);
}
