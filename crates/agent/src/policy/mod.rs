//! The policy subsystem: the repository (policy documents, namespaces'
//! labels, the revision, local CIDR and per-IP identities) and per-endpoint
//! resolution, with each endpoint's resolved state cached for incremental
//! identity churn. Pure: it knows nothing of the kernel, the kvstore or the
//! runtime. It answers with what an endpoint's policy map must hold
//! ([`Resolution::entries`]) or how it must change ([`MapDelta`]); the
//! agent writes that to the kernel and reports back ([`Policy::cache`],
//! [`Policy::forget`]).
use seta_core::identity::reserved_name;
use seta_core::labels::{Label, LabelSet};
use seta_core::policy::resolve::{self, EndpointPolicy, IdKind, IdentityInfo, MapState};
use seta_core::policy::{Peer, Peers, PolicyDoc, Rule};
use seta_datapath::maps::{policy_entries, PolicyEntries};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

#[cfg(test)]
mod tests;

/// Local (node-scoped) identities for CIDRs: 1<<24 and up, like Cilium.
pub const SCOPE_LOCAL: u32 = 1 << 24;

/// The reserved identities (host, world, unmanaged, health, init, ...).
pub const RESERVED: &[u32] = &[1, 2, 3, 4, 5, 6, 7, 8];

/// What is persisted (policy.json): documents, namespaces, revision, CIDR ids.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Repository {
    revision: u64,
    docs: Vec<PolicyDoc>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    cidr_ids: BTreeMap<ipnet::Ipv4Net, u32>,
}

/// One endpoint's policy and the map state it resolves to.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub policy: EndpointPolicy,
    pub state: MapState,
}

impl Resolution {
    /// The entries the endpoint's policy map must hold, exactly.
    pub fn entries(&self) -> PolicyEntries {
        policy_entries(&self.state)
    }
}

/// An incremental change of one endpoint's policy map.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MapDelta {
    pub upsert: PolicyEntries,
    pub drop: Vec<(u32, seta_abi::PolicyLpmData)>,
}

impl MapDelta {
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.drop.is_empty()
    }
}

/// What a resolution needs to know about an endpoint.
pub struct Subject<'a> {
    pub labels: &'a LabelSet,
    pub named_ports: &'a BTreeMap<String, (u8, u16)>,
}

#[derive(Default)]
pub struct Policy {
    repo: Repository,
    /// per-IP identities of pod IPs under a Kubernetes ipBlock
    ipblock_ids: BTreeMap<Ipv4Addr, u32>,
    /// each endpoint's resolution as its map holds it (for incremental updates)
    resolved: BTreeMap<u16, Resolution>,
    /// allow traffic from the node itself (Cilium's allow-localhost)
    allow_host: bool,
}

impl Policy {
    pub fn new(repo: Repository, allow_host: bool) -> Self {
        Self {
            repo,
            allow_host,
            ..Default::default()
        }
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    pub fn revision(&self) -> u64 {
        self.repo.revision
    }

    pub fn docs(&self) -> &[PolicyDoc] {
        &self.repo.docs
    }

    /// All rules, in a stable order (cookies index into this list).
    pub fn rules(&self) -> Vec<Rule> {
        self.repo.docs.iter().flat_map(|d| d.rules.iter().cloned()).collect()
    }

    /// Create or replace each document by origin (kind, namespace, name).
    pub fn upsert(&mut self, docs: Vec<PolicyDoc>) {
        for d in docs {
            match self.repo.docs.iter_mut().find(|x| x.origin == d.origin) {
                Some(x) => *x = d,
                None => self.repo.docs.push(d),
            }
        }
        self.repo.docs.sort_by(|a, b| a.origin.cmp(&b.origin));
    }

    /// Remove the documents with these origins; the names of those removed.
    pub fn remove(&mut self, gone: &[PolicyDoc]) -> Vec<String> {
        let mut removed = Vec::new();
        self.repo.docs.retain(|d| {
            let hit = gone.iter().any(|g| g.origin == d.origin);
            if hit {
                removed.push(d.origin.to_string());
            }
            !hit
        });
        removed
    }

    /// Replace every document (the cluster's set); false when nothing changed.
    pub fn replace(&mut self, mut docs: Vec<PolicyDoc>) -> bool {
        docs.sort_by(|a, b| a.origin.cmp(&b.origin));
        let as_json = |d: &[PolicyDoc]| d.iter().map(|x| serde_json::to_value(x).ok()).collect::<Vec<_>>();
        if as_json(&docs) == as_json(&self.repo.docs) {
            return false;
        }
        self.repo.docs = docs;
        true
    }

    /// A new revision after the documents changed: CIDR identities follow
    /// the rules. Returns the new revision.
    pub fn bump(&mut self) -> u64 {
        self.repo.revision += 1;
        self.sync_cidr_identities();
        self.repo.revision
    }

    pub fn namespaces(&self) -> &BTreeMap<String, BTreeMap<String, String>> {
        &self.repo.namespaces
    }

    /// A namespace's labels; a namespace seen for the first time gets the
    /// label Kubernetes gives every namespace (its name).
    pub fn namespace_labels(&mut self, ns: &str) -> BTreeMap<String, String> {
        self.repo
            .namespaces
            .entry(ns.to_string())
            .or_insert_with(|| BTreeMap::from([("kubernetes.io/metadata.name".to_string(), ns.to_string())]))
            .clone()
    }

    /// Set a namespace's labels (None: forget the namespace); the previous ones.
    pub fn set_namespace(&mut self, ns: &str, labels: Option<BTreeMap<String, String>>) -> Option<BTreeMap<String, String>> {
        match labels {
            Some(l) => self.repo.namespaces.insert(ns.to_string(), l),
            None => self.repo.namespaces.remove(ns),
        }
    }

    pub fn cidr_ids(&self) -> &BTreeMap<ipnet::Ipv4Net, u32> {
        &self.repo.cidr_ids
    }

    pub fn ipblock_ids(&self) -> &BTreeMap<Ipv4Addr, u32> {
        &self.ipblock_ids
    }

    fn peers(&self) -> impl Iterator<Item = (&Peer, bool)> {
        self.repo.docs.iter().flat_map(|d| &d.rules).flat_map(|r| {
            let allow = r.ingress.iter().chain(&r.egress).map(|p| (p, true));
            let deny = r.ingress_deny.iter().chain(&r.egress_deny).map(|p| (p, false));
            allow.chain(deny).flat_map(|(pr, allow)| match &pr.peers {
                Peers::Some(peers) => peers.iter().map(move |p| (p, allow)).collect::<Vec<_>>(),
                _ => vec![],
            })
        })
    }

    /// Prefixes of Kubernetes ipBlocks (they select pod IPs, per IP).
    pub fn ipblock_prefixes(&self) -> Vec<ipnet::Ipv4Net> {
        self.peers()
            .filter(|(_, allow)| *allow)
            .filter_map(|(p, _)| match p {
                Peer::IpBlock { cidr, .. } => Some(*cidr),
                _ => None,
            })
            .collect()
    }

    /// Number (or free) local CIDR identities so every prefix in a rule has
    /// one; the changes (prefix, new id or None when freed).
    pub fn sync_cidr_identities(&mut self) -> Vec<(ipnet::Ipv4Net, Option<u32>)> {
        let mut want = BTreeSet::new();
        for (p, _) in self.peers() {
            if let Peer::Cidr { cidr, except } | Peer::IpBlock { cidr, except } = p {
                if cidr.prefix_len() > 0 {
                    want.insert(*cidr);
                }
                want.extend(except.iter().copied());
            }
        }
        let mut changes = Vec::new();
        let stale: Vec<_> = self.repo.cidr_ids.keys().filter(|k| !want.contains(*k)).copied().collect();
        for k in stale {
            self.repo.cidr_ids.remove(&k);
            changes.push((k, None));
        }
        for net in want {
            if !self.repo.cidr_ids.contains_key(&net) {
                let used: BTreeSet<u32> = self.repo.cidr_ids.values().copied().collect();
                let id = (SCOPE_LOCAL + 1..).find(|i| !used.contains(i)).unwrap();
                self.repo.cidr_ids.insert(net, id);
                changes.push((net, Some(id)));
            }
        }
        changes
    }

    /// Give every pod IP under an ipBlock a per-IP identity, stable while the
    /// pod lives. `pod_ips`: every pod IP of the cluster (never node
    /// addresses). Returns whether the set changed.
    pub fn sync_ipblock_ids(&mut self, pod_ips: impl IntoIterator<Item = Ipv4Addr>) -> bool {
        let prefixes = self.ipblock_prefixes();
        let want: BTreeSet<Ipv4Addr> = if prefixes.is_empty() {
            BTreeSet::new()
        } else {
            pod_ips.into_iter().filter(|ip| prefixes.iter().any(|p| p.contains(ip))).collect()
        };
        let before = self.ipblock_ids.clone();
        self.ipblock_ids.retain(|ip, _| want.contains(ip));
        for ip in want {
            if !self.ipblock_ids.contains_key(&ip) {
                let used: BTreeSet<u32> = self.ipblock_ids.values().copied().collect();
                let id = (seta_abi::IDENTITY_SCOPE_IPBLOCK + 1..).find(|i| !used.contains(i)).unwrap();
                self.ipblock_ids.insert(ip, id);
            }
        }
        before != self.ipblock_ids
    }

    /// Every identity rules can select: the reserved ones, the endpoints'
    /// (`endpoints`: this node's and the rest of the cluster's), per-IP and
    /// CIDR identities.
    pub fn universe(&self, endpoints: impl IntoIterator<Item = (u32, LabelSet)>) -> Vec<IdentityInfo> {
        let mut u: Vec<IdentityInfo> = RESERVED
            .iter()
            .map(|id| IdentityInfo {
                id: *id,
                labels: [Label::new("reserved", reserved_name(*id).unwrap_or("?"), "")]
                    .into_iter()
                    .collect(),
                kind: IdKind::Reserved,
            })
            .collect();
        u.extend(endpoints.into_iter().map(|(id, labels)| IdentityInfo {
            id,
            labels,
            kind: IdKind::Endpoint,
        }));
        u.extend(self.ipblock_ids.iter().map(|(ip, id)| IdentityInfo {
            id: *id,
            labels: [Label::new("ipblock", &ip.to_string(), "")].into_iter().collect(),
            kind: IdKind::PodIp(*ip),
        }));
        u.extend(self.repo.cidr_ids.iter().map(|(net, id)| {
            IdentityInfo {
                id: *id,
                labels: [Label::new("cidr", &net.to_string(), ""), Label::new("reserved", "world", "")]
                    .into_iter()
                    .collect(),
                kind: IdKind::Cidr(*net),
            }
        }));
        u
    }

    /// The policy of an endpoint under `rules` (named ports of peers:
    /// `peer_ports`).
    pub fn endpoint_policy(&self, rules: &[Rule], ep: &Subject<'_>, peer_ports: BTreeMap<String, BTreeSet<(u8, u16)>>) -> EndpointPolicy {
        resolve::endpoint_policy(rules, ep.labels, ep.named_ports.clone(), peer_ports, self.allow_host)
    }

    /// Resolve an endpoint from scratch against `universe`.
    pub fn resolve(
        &self,
        rules: &[Rule],
        ep: &Subject<'_>,
        peer_ports: BTreeMap<String, BTreeSet<(u8, u16)>>,
        universe: &[IdentityInfo],
    ) -> Resolution {
        let policy = self.endpoint_policy(rules, ep, peer_ports);
        let state = resolve::compute(&policy, universe);
        Resolution { policy, state }
    }

    /// The endpoint's map now holds `r`.
    pub fn cache(&mut self, id: u16, r: Resolution) {
        self.resolved.insert(id, r);
    }

    /// The endpoint is gone, or its map is in an unknown state (the next
    /// change resolves it from scratch).
    pub fn forget(&mut self, id: u16) {
        self.resolved.remove(&id);
    }

    #[cfg(test)]
    pub fn cached(&self, id: u16) -> Option<&Resolution> {
        self.resolved.get(&id)
    }

    /// Identity churn for one endpoint, incrementally: only the entries of
    /// `added` / `removed` identities change (equal to a full recompute; the
    /// resolver guarantees it). None when the endpoint has no cached
    /// resolution (it needs a full one). The cache moves to the new state:
    /// if writing the delta fails, [`forget`](Self::forget) the endpoint.
    pub fn identity_delta(&mut self, id: u16, added: &[IdentityInfo], removed: &[u32]) -> Option<MapDelta> {
        let Resolution { policy, state } = self.resolved.get_mut(&id)?;
        let mut delta = MapDelta::default();
        for rid in removed {
            let gone: MapState = state.iter().filter(|(k, _)| k.identity == *rid).map(|(k, e)| (*k, *e)).collect();
            delta.drop.extend(policy_entries(&gone).into_keys());
            resolve::remove_identity(state, *rid);
        }
        for a in added {
            let before: Vec<resolve::Key> = state.keys().filter(|k| k.identity == a.id).copied().collect();
            resolve::add_identity(state, policy, a);
            let now: MapState = state.iter().filter(|(k, _)| k.identity == a.id).map(|(k, e)| (*k, *e)).collect();
            let gone: MapState = before
                .into_iter()
                .filter(|k| !now.contains_key(k))
                .map(|k| (k, resolve::Entry { deny: false, cookie: 0 }))
                .collect();
            delta.drop.extend(policy_entries(&gone).into_keys());
            delta.upsert.extend(policy_entries(&now));
        }
        Some(delta)
    }
}
