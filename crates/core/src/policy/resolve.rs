//! Resolution of rules into per-endpoint policy map entries, and the lookup
//! the datapath performs on them (mirrored here for `policy trace`).
//!
//! Entries for a remote identity X depend only on X and the rules, so a new
//! identity adds exactly `entries_for_identity(X)` and a removed one deletes
//! the keys of X: incremental updates equal a full recompute by construction
//! (and a property test checks it).
use super::*;
use crate::identity::{ID_HEALTH, ID_HOST, ID_INGRESS, ID_INIT, ID_KUBE_APISERVER, ID_REMOTE_NODE, ID_UNMANAGED, ID_WORLD};
use crate::labels::LabelSet;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdKind {
    Reserved,
    /// a pod (workload endpoint)
    Endpoint,
    /// a local CIDR identity for this prefix
    Cidr(Ipv4Net),
    /// the per-IP identity of a pod IP that a Kubernetes ipBlock covers
    PodIp(std::net::Ipv4Addr),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityInfo {
    pub id: u32,
    pub labels: LabelSet,
    pub kind: IdKind,
}

/// A policy map key: remote identity (0 = any), direction, protocol (0 = any)
/// and a port block `port/bits` (bits = 0 matches every port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    pub identity: u32,
    pub egress: bool,
    pub proto: u8,
    pub port: u16,
    pub port_bits: u8,
}

impl Key {
    /// LPM prefix length after the static identity+direction part.
    pub fn l4_prefix(&self) -> u8 {
        if self.proto == 0 {
            0
        } else {
            8 + self.port_bits
        }
    }
    fn port_range(&self) -> (u32, u32) {
        let size = 1u32 << (16 - self.port_bits as u32);
        let lo = self.port as u32 & !(size - 1);
        (lo, lo + size - 1)
    }
    fn covers(&self, other: &Key) -> bool {
        if self.identity != other.identity || self.egress != other.egress {
            return false;
        }
        if self.proto == 0 {
            return true;
        }
        if self.proto != other.proto {
            return false;
        }
        let (a, b) = self.port_range();
        let (c, d) = other.port_range();
        a <= c && d <= b
    }
    fn matches(&self, proto: u8, port: u16) -> bool {
        if self.proto == 0 {
            return true;
        }
        let (a, b) = self.port_range();
        self.proto == proto && (a..=b).contains(&(port as u32))
    }
    pub fn port_text(&self) -> String {
        if self.proto == 0 {
            return "ANY".into();
        }
        let (a, b) = self.port_range();
        let name = proto_name(self.proto);
        match (self.port_bits, a == b) {
            (0, _) => format!("ANY/{name}"),
            (_, true) => format!("{a}/{name}"),
            _ => format!("{a}-{b}/{name}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub deny: bool,
    /// 1-based index of the deciding rule in the repository (0 = built-in,
    /// [`COOKIE_NOT_ENFORCED`] = no policy in this direction)
    pub cookie: u32,
}

/// The cookie of the allow-all entry of a direction no policy enforces: the
/// datapath makes no policy-verdict event for it, as Cilium's per-endpoint
/// verdict filter (verdicts only where policy is enforced).
pub const COOKIE_NOT_ENFORCED: u32 = u32::MAX;

pub type MapState = BTreeMap<Key, Entry>;

/// Split `lo..=hi` into aligned power-of-two blocks (port, prefix bits).
pub fn port_prefixes(lo: u16, hi: u16) -> Vec<(u16, u8)> {
    let (mut start, end) = (lo as u32, hi as u32);
    let mut out = Vec::new();
    while start <= end {
        let mut size: u32 = if start == 0 { 1 << 16 } else { start & start.wrapping_neg() };
        while start + size - 1 > end {
            size >>= 1;
        }
        out.push((start as u16, 16 - size.trailing_zeros() as u8));
        start += size;
    }
    out
}

/// Named ports: name -> (protocol, port)
pub type NamedPorts = BTreeMap<String, (u8, u16)>;

/// The rules that select one endpoint, ready to produce map entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointPolicy {
    pub ingress_enforced: bool,
    pub egress_enforced: bool,
    /// (cookie, egress, deny, rule)
    pub rules: Vec<(u32, bool, bool, PeerRule)>,
    /// this endpoint's named ports (ingress rules)
    pub own_ports: NamedPorts,
    /// named ports of every endpoint on the node (egress rules)
    pub peer_ports: BTreeMap<String, BTreeSet<(u8, u16)>>,
    pub allow_host_ingress: bool,
}

/// Select the rules whose subject matches `labels` (cookie = index + 1 in `rules`).
pub fn endpoint_policy(
    rules: &[Rule],
    labels: &LabelSet,
    own_ports: NamedPorts,
    peer_ports: BTreeMap<String, BTreeSet<(u8, u16)>>,
    allow_host_ingress: bool,
) -> EndpointPolicy {
    let mut p = EndpointPolicy {
        own_ports,
        peer_ports,
        allow_host_ingress,
        ..Default::default()
    };
    for (i, r) in rules.iter().enumerate() {
        if !r.subject.matches(labels) {
            continue;
        }
        let cookie = i as u32 + 1;
        p.ingress_enforced |= r.enforce_ingress;
        p.egress_enforced |= r.enforce_egress;
        for (list, egress, deny) in [
            (&r.ingress, false, false),
            (&r.ingress_deny, false, true),
            (&r.egress, true, false),
            (&r.egress_deny, true, true),
        ] {
            for pr in list {
                p.rules.push((cookie, egress, deny, pr.clone()));
            }
        }
    }
    p
}

fn peer_selects(peer: &Peer, id: &IdentityInfo) -> bool {
    match peer {
        Peer::Endpoints(sel) => match id.kind {
            IdKind::Endpoint => sel.matches(&id.labels),
            IdKind::Reserved => sel.reqs.iter().any(|r| r.key.starts_with("reserved:")) && sel.matches(&id.labels),
            IdKind::Cidr(_) | IdKind::PodIp(_) => false,
        },
        // only Kubernetes ipBlock selects pod IPs, and exactly per IP
        _ if matches!(id.kind, IdKind::PodIp(_)) => match (peer, &id.kind) {
            (Peer::IpBlock { cidr, except }, IdKind::PodIp(ip)) => cidr.contains(ip) && !except.iter().any(|e| e.contains(ip)),
            _ => false,
        },
        Peer::Entity(e) => match e {
            Entity::All => true,
            Entity::World => id.id == ID_WORLD || matches!(id.kind, IdKind::Cidr(_)),
            Entity::Cluster => {
                matches!(id.kind, IdKind::Endpoint)
                    || [ID_HOST, ID_UNMANAGED, ID_HEALTH, ID_INIT, ID_REMOTE_NODE, ID_KUBE_APISERVER].contains(&id.id)
            }
            Entity::Host => id.id == ID_HOST,
            Entity::RemoteNode => id.id == ID_REMOTE_NODE,
            Entity::Health => id.id == ID_HEALTH,
            Entity::Init => id.id == ID_INIT,
            Entity::Unmanaged => id.id == ID_UNMANAGED,
            Entity::KubeApiserver => id.id == ID_KUBE_APISERVER,
            Entity::Ingress => id.id == ID_INGRESS,
        },
        Peer::Cidr { cidr, except } | Peer::IpBlock { cidr, except } => match id.kind {
            IdKind::Cidr(p) => cidr.contains(&p) && !except.iter().any(|e| e.contains(&p)),
            _ => id.id == ID_WORLD && cidr.prefix_len() == 0,
        },
    }
}

fn is_wildcard(peers: &Peers) -> bool {
    match peers {
        Peers::Any => true,
        Peers::Some(list) => list.iter().any(|p| matches!(p, Peer::Entity(Entity::All))),
    }
}

fn keys_for(p: &EndpointPolicy, identity: u32, egress: bool, ports: &[L4]) -> Vec<Key> {
    let base = Key {
        identity,
        egress,
        proto: 0,
        port: 0,
        port_bits: 0,
    };
    if ports.is_empty() {
        return vec![base];
    }
    let mut out = Vec::new();
    let mut push_range = |proto: u8, lo: u16, hi: u16| {
        for (port, bits) in port_prefixes(lo, hi) {
            out.push(Key {
                proto,
                port,
                port_bits: bits,
                ..base
            });
        }
    };
    for l4 in ports {
        let protos: &[u8] = if l4.proto == PROTO_ANY {
            &[PROTO_TCP, PROTO_UDP, PROTO_SCTP]
        } else {
            std::slice::from_ref(&l4.proto)
        };
        match &l4.port {
            Port::Any if l4.proto == PROTO_ANY => return vec![base],
            Port::Any => push_range(l4.proto, 0, u16::MAX),
            Port::Range(lo, hi) => {
                for pr in protos {
                    push_range(*pr, *lo, *hi);
                }
            }
            Port::Named(name) => {
                let resolved: Vec<(u8, u16)> = if egress {
                    p.peer_ports.get(name).map(|s| s.iter().copied().collect()).unwrap_or_default()
                } else {
                    p.own_ports.get(name).copied().into_iter().collect()
                };
                for (proto, port) in resolved {
                    if l4.proto == PROTO_ANY || l4.proto == proto {
                        push_range(proto, port, port);
                    }
                }
            }
        }
    }
    out
}

fn insert(out: &mut MapState, k: Key, e: Entry) {
    match out.get(&k) {
        Some(old) if old.deny && !e.deny => {}
        Some(old) if old.deny == e.deny && old.cookie <= e.cookie => {}
        _ => {
            out.insert(k, e);
        }
    }
}

/// The keys of one rule for `identity` (0 = any), with its verdict.
fn insert_rule(m: &mut MapState, p: &EndpointPolicy, identity: u32, egress: bool, deny: bool, cookie: u32, ports: &[L4]) {
    for k in keys_for(p, identity, egress, ports) {
        insert(m, k, Entry { deny, cookie });
    }
}

/// Deny beats allow: an allow whose key lies inside a deny of the same identity
/// and direction becomes that deny (otherwise the LPM would prefer the longer allow).
fn deny_over_allow(m: &mut MapState) {
    let denies: Vec<(Key, Entry)> = m.iter().filter(|(_, e)| e.deny).map(|(k, e)| (*k, *e)).collect();
    for (k, e) in m.iter_mut() {
        if !e.deny {
            if let Some((_, d)) = denies.iter().find(|(dk, _)| dk.covers(k)) {
                *e = *d;
            }
        }
    }
}

/// Entries whose remote identity is the wildcard 0 (L4-only rules, `all`, default-allow).
pub fn wildcard_entries(p: &EndpointPolicy) -> MapState {
    let mut m = MapState::new();
    for (egress, enforced) in [(false, p.ingress_enforced), (true, p.egress_enforced)] {
        if !enforced {
            insert(
                &mut m,
                Key {
                    identity: 0,
                    egress,
                    proto: 0,
                    port: 0,
                    port_bits: 0,
                },
                Entry {
                    deny: false,
                    cookie: COOKIE_NOT_ENFORCED,
                },
            );
        }
    }
    for (cookie, egress, deny, r) in &p.rules {
        if is_wildcard(&r.peers) {
            insert_rule(&mut m, p, 0, *egress, *deny, *cookie, &r.ports);
        }
    }
    deny_over_allow(&mut m);
    m
}

/// Entries for one remote identity.
pub fn entries_for_identity(p: &EndpointPolicy, id: &IdentityInfo) -> MapState {
    let mut m = MapState::new();
    if id.id == 0 {
        return m;
    }
    if id.id == ID_HOST && p.allow_host_ingress && p.ingress_enforced {
        insert(
            &mut m,
            Key {
                identity: ID_HOST,
                egress: false,
                proto: 0,
                port: 0,
                port_bits: 0,
            },
            Entry { deny: false, cookie: 0 },
        );
    }
    for (cookie, egress, deny, r) in &p.rules {
        let Peers::Some(peers) = &r.peers else { continue };
        if is_wildcard(&r.peers) || !peers.iter().any(|peer| peer_selects(peer, id)) {
            continue;
        }
        insert_rule(&mut m, p, id.id, *egress, *deny, *cookie, &r.ports);
    }
    deny_over_allow(&mut m);
    m
}

/// The full map state of an endpoint over every known identity.
pub fn compute<'a>(p: &EndpointPolicy, universe: impl IntoIterator<Item = &'a IdentityInfo>) -> MapState {
    let mut m = wildcard_entries(p);
    for id in universe {
        m.extend(entries_for_identity(p, id));
    }
    m
}

/// Incremental: identity `id` appeared (or changed).
pub fn add_identity(m: &mut MapState, p: &EndpointPolicy, id: &IdentityInfo) {
    remove_identity(m, id.id);
    m.extend(entries_for_identity(p, id));
}

/// Incremental: identity `id` is gone.
pub fn remove_identity(m: &mut MapState, id: u32) {
    m.retain(|k, _| k.identity != id || id == 0);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Allow {
        cookie: u32,
    },
    /// DROP_POLICY_DENY (181)
    Deny {
        cookie: u32,
    },
    /// no entry: DROP_POLICY (133)
    NoMatch,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
    pub fn drop_code(&self) -> Option<u8> {
        match self {
            Decision::Allow { .. } => None,
            Decision::Deny { .. } => Some(181),
            Decision::NoMatch => Some(133),
        }
    }
    pub fn cookie(&self) -> Option<u32> {
        match self {
            Decision::Allow { cookie } | Decision::Deny { cookie } => Some(*cookie),
            Decision::NoMatch => None,
        }
    }
}

fn lpm(m: &MapState, identity: u32, egress: bool, proto: u8, port: u16) -> Option<(Key, Entry)> {
    m.range(
        Key {
            identity,
            egress,
            proto: 0,
            port: 0,
            port_bits: 0,
        }..,
    )
    .take_while(|(k, _)| k.identity == identity && k.egress == egress)
    .filter(|(k, _)| k.matches(proto, port))
    .max_by_key(|(k, _)| k.l4_prefix())
    .map(|(k, e)| (*k, *e))
}

/// What the datapath decides for a packet: an LPM lookup for the remote
/// identity and one for the wildcard identity; a deny in either wins.
pub fn lookup(m: &MapState, remote: u32, egress: bool, proto: u8, port: u16) -> Decision {
    let l3 = lpm(m, remote, egress, proto, port);
    let l4 = lpm(m, 0, egress, proto, port);
    let deny = [l3, l4].into_iter().flatten().find(|(_, e)| e.deny);
    if let Some((_, e)) = deny {
        return Decision::Deny { cookie: e.cookie };
    }
    match l3.or(l4) {
        Some((_, e)) => Decision::Allow { cookie: e.cookie },
        None => Decision::NoMatch,
    }
}

/// The datapath's full decision for a peer: its identity first, then — only
/// when nothing matched — the per-IP identity of a pod IP under an ipBlock.
pub fn lookup_peer(m: &MapState, remote: u32, ip_identity: Option<u32>, egress: bool, proto: u8, port: u16) -> Decision {
    let d = lookup(m, remote, egress, proto, port);
    if d != Decision::NoMatch {
        return d;
    }
    match ip_identity.map(|ip| lookup(m, ip, egress, proto, port)) {
        Some(a @ Decision::Allow { .. }) => a,
        _ => d,
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_file;
    use super::*;
    use crate::labels::parse_list;
    use proptest::prelude::*;

    fn ep(id: u32, labels: &str) -> IdentityInfo {
        IdentityInfo {
            id,
            labels: parse_list(labels, "k8s").unwrap(),
            kind: IdKind::Endpoint,
        }
    }
    fn reserved(id: u32, name: &str) -> IdentityInfo {
        IdentityInfo {
            id,
            labels: parse_list(&format!("reserved:{name}"), "k8s").unwrap(),
            kind: IdKind::Reserved,
        }
    }
    fn cidr_id(id: u32, c: &str) -> IdentityInfo {
        IdentityInfo {
            id,
            labels: LabelSet::new(),
            kind: IdKind::Cidr(c.parse().unwrap()),
        }
    }
    const NS: &str = "io.kubernetes.pod.namespace";

    fn universe() -> Vec<IdentityInfo> {
        vec![
            reserved(1, "host"),
            reserved(2, "world"),
            reserved(6, "remote-node"),
            ep(256, &format!("app=web,{NS}=default")),
            ep(257, &format!("app=client,{NS}=default")),
            ep(258, &format!("app=client,{NS}=other,io.cilium.k8s.namespace.labels.team=a")),
            ep(259, &format!("app=db,{NS}=default")),
            cidr_id(0x0100_0001, "192.0.2.0/24"),
            cidr_id(0x0100_0002, "192.0.2.128/25"),
        ]
    }

    fn state_for(yaml: &str, labels: &str) -> MapState {
        let docs = if yaml.trim().is_empty() {
            vec![]
        } else {
            parse_file(yaml).unwrap()
        };
        let rules: Vec<Rule> = docs.into_iter().flat_map(|d| d.rules).collect();
        let p = endpoint_policy(
            &rules,
            &parse_list(labels, "k8s").unwrap(),
            BTreeMap::from([("http".into(), (PROTO_TCP, 8080))]),
            Default::default(),
            true,
        );
        compute(&p, &universe())
    }

    const WEB: &str = "app=web,io.kubernetes.pod.namespace=default";

    #[test]
    fn port_blocks() {
        assert_eq!(port_prefixes(80, 80), vec![(80, 16)]);
        assert_eq!(port_prefixes(0, 65535), vec![(0, 0)]);
        assert_eq!(port_prefixes(80, 83), vec![(80, 14)]);
        assert_eq!(port_prefixes(80, 90), vec![(80, 13), (88, 15), (90, 16)]);
        let blocks = port_prefixes(1000, 2000);
        let covered: u32 = blocks.iter().map(|(_, b)| 1u32 << (16 - *b as u32)).sum();
        assert_eq!(covered, 1001);
    }

    #[test]
    fn default_allow_until_selected() {
        let m = state_for("", WEB);
        let unenforced = Decision::Allow {
            cookie: COOKIE_NOT_ENFORCED,
        };
        assert_eq!(lookup(&m, 257, false, PROTO_TCP, 80), unenforced);
        assert_eq!(lookup(&m, 2, true, PROTO_UDP, 53), unenforced);
    }

    #[test]
    fn cnp_ingress_from_label_with_port_and_host_always_allowed() {
        let y = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"#;
        let m = state_for(y, WEB);
        assert_eq!(lookup(&m, 257, false, PROTO_TCP, 80), Decision::Allow { cookie: 1 });
        assert_eq!(lookup(&m, 257, false, PROTO_TCP, 81), Decision::NoMatch);
        assert_eq!(lookup(&m, 257, false, PROTO_UDP, 80), Decision::NoMatch);
        assert_eq!(lookup(&m, 259, false, PROTO_TCP, 80), Decision::NoMatch, "db is not a client");
        assert_eq!(
            lookup(&m, 258, false, PROTO_TCP, 80),
            Decision::NoMatch,
            "client in another namespace: CNP selectors are namespaced"
        );
        assert!(lookup(&m, 1, false, PROTO_TCP, 22).allowed(), "host is always allowed ingress");
        assert_eq!(
            lookup(&m, 2, true, PROTO_TCP, 443),
            Decision::Allow {
                cookie: COOKIE_NOT_ENFORCED
            },
            "egress not enforced: allowed, and marked so (no verdict event)"
        );
        // not selected: other endpoints stay default-allow
        assert!(lookup(
            &state_for(y, "app=db,io.kubernetes.pod.namespace=default"),
            259,
            false,
            PROTO_TCP,
            1
        )
        .allowed());
    }

    #[test]
    fn deny_beats_allow_at_any_width() {
        let y = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  endpointSelector: {}
  ingress:
  - fromEntities: [all]
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
  - toPorts: [{ports: [{port: "22", protocol: TCP}]}]
"#;
        let m = state_for(y, WEB);
        assert_eq!(
            lookup(&m, 257, false, PROTO_TCP, 80),
            Decision::Deny { cookie: 1 },
            "broad deny beats narrow allow"
        );
        assert!(lookup(&m, 259, false, PROTO_TCP, 80).allowed());
        assert_eq!(
            lookup(&m, 259, false, PROTO_TCP, 22).drop_code(),
            Some(181),
            "L4-only deny beats allow-all"
        );
        assert_eq!(lookup(&m, 1, false, PROTO_TCP, 22).drop_code(), Some(181), "even for the host");
    }

    #[test]
    fn port_ranges_and_protocol_any() {
        let y = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: r, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEntities: [world]
    toPorts: [{ports: [{port: "8000", endPort: 8099}, {port: "53", protocol: UDP}]}]
"#;
        let m = state_for(y, WEB);
        for port in [8000, 8050, 8099] {
            assert!(lookup(&m, 2, true, PROTO_TCP, port).allowed(), "{port}");
            assert!(lookup(&m, 2, true, PROTO_UDP, port).allowed(), "ANY covers UDP {port}");
        }
        assert!(!lookup(&m, 2, true, PROTO_TCP, 8100).allowed());
        assert!(!lookup(&m, 2, true, PROTO_TCP, 7999).allowed());
        assert!(lookup(&m, 2, true, PROTO_UDP, 53).allowed());
        assert!(!lookup(&m, 2, true, PROTO_TCP, 53).allowed());
        assert!(
            lookup(&m, 0x0100_0001, true, PROTO_TCP, 8001).allowed(),
            "CIDR identities are world"
        );
        assert!(!lookup(&m, 256, true, PROTO_TCP, 8001).allowed(), "pods are not world");
        assert!(lookup(&m, 256, false, PROTO_TCP, 1).allowed(), "ingress still default-allow");
    }

    #[test]
    fn knp_policy_types_and_default_deny() {
        let deny_all = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
"#;
        let m = state_for(deny_all, WEB);
        assert_eq!(lookup(&m, 257, false, PROTO_TCP, 80), Decision::NoMatch);
        assert_eq!(lookup(&m, 2, true, PROTO_UDP, 53), Decision::NoMatch);
        assert!(lookup(&m, 1, false, PROTO_TCP, 80).allowed(), "host still allowed");
        let ingress_only = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: i, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: http}]
"#;
        let m = state_for(ingress_only, WEB);
        assert!(lookup(&m, 257, false, PROTO_TCP, 8080).allowed(), "named port http = 8080");
        assert!(!lookup(&m, 257, false, PROTO_TCP, 80).allowed());
        assert!(
            lookup(&m, 2, true, PROTO_TCP, 80).allowed(),
            "egress absent from policyTypes: allowed"
        );
        let allow_all =
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec:\n  podSelector: {}\n  ingress: [{}]\n";
        let m = state_for(allow_all, WEB);
        assert!(lookup(&m, 2, false, PROTO_UDP, 9).allowed(), "KNP empty rule allows everything");
    }

    #[test]
    fn namespace_selectors_and_entities() {
        let y = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ns, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: a}}}]
"#;
        let m = state_for(y, WEB);
        assert!(lookup(&m, 258, false, PROTO_TCP, 80).allowed());
        assert!(!lookup(&m, 257, false, PROTO_TCP, 80).allowed());
        let e = r#"
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: ents}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEntities: [cluster]}]
  egress: [{toEntities: [host, remote-node]}]
"#;
        let m = state_for(e, WEB);
        assert!(
            lookup(&m, 258, false, PROTO_TCP, 80).allowed(),
            "CCNP selectors are cluster-wide; cluster includes pods everywhere"
        );
        assert!(lookup(&m, 6, false, PROTO_TCP, 80).allowed());
        assert!(!lookup(&m, 2, false, PROTO_TCP, 80).allowed(), "world is not cluster");
        assert!(lookup(&m, 1, true, PROTO_TCP, 80).allowed());
        assert!(lookup(&m, 6, true, PROTO_TCP, 80).allowed());
        assert!(!lookup(&m, 257, true, PROTO_TCP, 80).allowed());
    }

    #[test]
    fn cidr_with_except() {
        let y = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: c, namespace: default}
spec:
  endpointSelector: {}
  egress:
  - toCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.128/25]}]
"#;
        let m = state_for(y, WEB);
        assert!(lookup(&m, 0x0100_0001, true, PROTO_TCP, 80).allowed());
        assert!(!lookup(&m, 0x0100_0002, true, PROTO_TCP, 80).allowed(), "except");
        assert!(!lookup(&m, 2, true, PROTO_TCP, 80).allowed());
        assert!(!lookup(&m, 259, true, PROTO_TCP, 80).allowed(), "CNP CIDR never selects pods");
    }

    #[test]
    fn knp_ip_block_matches_pod_ips_per_ip_with_except() {
        let y = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ipb, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{ipBlock: {cidr: 10.200.1.0/24, except: [10.200.1.128/25]}}]
"#;
        let mut uni = universe();
        let pod_ip = |id: u32, ip: &str| IdentityInfo {
            id,
            labels: LabelSet::new(),
            kind: IdKind::PodIp(ip.parse().unwrap()),
        };
        uni.push(pod_ip(0x0300_0001, "10.200.1.5"));
        uni.push(pod_ip(0x0300_0002, "10.200.1.200"));
        let rules: Vec<Rule> = parse_file(y).unwrap().into_iter().flat_map(|d| d.rules).collect();
        let p = endpoint_policy(
            &rules,
            &parse_list(WEB, "k8s").unwrap(),
            NamedPorts::new(),
            Default::default(),
            true,
        );
        let m = compute(&p, &uni);
        // client (257) at 10.200.1.5 is allowed by IP, not by its identity
        assert_eq!(lookup(&m, 257, false, PROTO_TCP, 80), Decision::NoMatch);
        assert!(lookup_peer(&m, 257, Some(0x0300_0001), false, PROTO_TCP, 80).allowed());
        assert!(!lookup_peer(&m, 257, Some(0x0300_0002), false, PROTO_TCP, 80).allowed(), "except");
        assert!(
            !lookup_peer(&m, 257, None, false, PROTO_TCP, 80).allowed(),
            "another pod with the same identity, outside the block"
        );
        // CNP CIDR rules never select pod IPs
        let c = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: c, namespace: default}\nspec:\n  endpointSelector: {}\n  ingress: [{fromCIDR: [10.200.1.0/24]}]\n";
        let rules: Vec<Rule> = parse_file(c).unwrap().into_iter().flat_map(|d| d.rules).collect();
        let p = endpoint_policy(
            &rules,
            &parse_list(WEB, "k8s").unwrap(),
            NamedPorts::new(),
            Default::default(),
            true,
        );
        assert!(!lookup_peer(&compute(&p, &uni), 257, Some(0x0300_0001), false, PROTO_TCP, 80).allowed());
    }

    #[test]
    fn empty_rule_enforces_and_allows_nothing() {
        let y = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: d, namespace: default}\nspec:\n  endpointSelector: {}\n  ingress: [{}]\n";
        let m = state_for(y, WEB);
        assert_eq!(lookup(&m, 257, false, PROTO_TCP, 80), Decision::NoMatch);
        let y2 = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: d, namespace: default}\nspec:\n  endpointSelector: {}\n  enableDefaultDeny: {ingress: false}\n  ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]\n";
        let m = state_for(y2, WEB);
        assert!(
            lookup(&m, 259, false, PROTO_TCP, 80).allowed(),
            "enableDefaultDeny.ingress=false keeps default allow"
        );
    }

    fn arb_identity() -> impl Strategy<Value = IdentityInfo> {
        (
            256u32..300,
            prop::sample::select(vec!["web", "client", "db"]),
            prop::sample::select(vec!["default", "other"]),
            any::<bool>(),
        )
            .prop_map(|(id, app, ns, cidr)| {
                if cidr {
                    cidr_id(0x0100_0000 + id, if id % 2 == 0 { "192.0.2.0/24" } else { "192.0.2.128/25" })
                } else {
                    ep(id, &format!("app={app},{NS}={ns}"))
                }
            })
    }

    proptest! {
        /// Adding and removing identities one by one gives the same map as a full recompute.
        #[test]
        fn incremental_equals_full(ids in prop::collection::vec(arb_identity(), 1..25), removals in prop::collection::vec(0usize..25, 0..10)) {
            let y = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", endPort: 90, protocol: TCP}]}]
  - fromEndpoints: [{matchExpressions: [{key: app, operator: NotIn, values: [web]}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "85"}]}]
  egress:
  - toCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.128/25]}]
  - toEntities: [cluster]
    toPorts: [{ports: [{port: "53", protocol: UDP}]}]
"#;
            let rules: Vec<Rule> = parse_file(y).unwrap().into_iter().flat_map(|d| d.rules).collect();
            let p = endpoint_policy(&rules, &parse_list(WEB, "k8s").unwrap(), NamedPorts::new(), Default::default(), true);
            let mut uni: BTreeMap<u32, IdentityInfo> = BTreeMap::new();
            let mut inc = compute(&p, []);
            for id in &ids {
                uni.insert(id.id, id.clone());
                add_identity(&mut inc, &p, id);
            }
            for r in removals {
                if let Some(id) = ids.get(r) {
                    uni.remove(&id.id);
                    remove_identity(&mut inc, id.id);
                }
            }
            prop_assert_eq!(inc, compute(&p, uni.values()));
        }
    }
}
