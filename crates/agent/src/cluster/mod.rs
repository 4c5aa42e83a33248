//! The cluster subsystem: what other nodes publish in the kvstore (their
//! registry entries, their pods' IPs and identities, the cluster's policies),
//! mirrored, and what follows from it for this node (the remote part of the
//! ipcache, routes to other nodes' pod CIDRs, the policy set). Pure state:
//! the agent feeds it the watches' updates and applies what it computes.
use seta_core::ipam::router_ip;
use seta_core::ipcache::Entry;
use seta_core::labels::{Label, LabelSet};
use seta_core::policy::PolicyDoc;
use seta_kvstore::nodes::NodeInfo;
use seta_kvstore::reflector::{Change, Health, Mirror, Update};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// The watched prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    Identities,
    Ips,
    Nodes,
    Policies,
}

/// What a batch of watch updates changed.
#[derive(Default)]
pub struct Applied {
    /// identity keys created, changed or deleted
    pub identities: Vec<Change>,
    /// nodes or pod IPs changed: the remote ipcache and routes follow
    pub topology: bool,
    /// the policy set may differ (or was never synced)
    pub policies: bool,
}

/// What this node knows about the rest of the cluster.
#[derive(Default)]
pub struct ClusterState {
    ids: Mirror,
    ips: Mirror,
    nodes_m: Mirror,
    /// other nodes, by name
    nodes: BTreeMap<String, NodeInfo>,
    /// desired routes to other nodes' pod CIDRs (node CIDR -> via)
    routes: BTreeMap<(Ipv4Addr, u8), Ipv4Addr>,
    /// probe results by node name
    health: BTreeMap<String, seta_core::api::NodeHealth>,
    /// the cluster's policies (etcd mode)
    policies_m: Mirror,
    /// the first policy snapshot was applied
    policies_synced: bool,
    /// the first snapshot of the pod IPs and of the nodes was applied: the
    /// remote ipcache is computed only from both (an agent restarted with
    /// one and not yet the other would take remote pods out of the maps)
    ips_synced: bool,
    nodes_synced: bool,
    /// this node's policy writes not yet seen through the watch (key ->
    /// value or deletion, when): the watch may still deliver older states
    policy_writes: BTreeMap<String, (Option<Vec<u8>>, Instant)>,
}

/// How long this node's own policy write counts before the watch shows it.
const OWN_WRITE_GRACE: Duration = Duration::from_secs(10);

/// Policy keys this node wrote (values) and deleted.
#[derive(Default)]
pub struct PolicyWrites {
    pub puts: Vec<(String, Vec<u8>)>,
    pub deletes: Vec<String>,
}

impl ClusterState {
    /// Apply a batch of watch updates; `me` is this node (not in `nodes`).
    pub fn apply(&mut self, batch: Vec<(Watch, Update)>, me: &str) -> Applied {
        let mut out = Applied::default();
        let topology_was_synced = self.ips_synced && self.nodes_synced;
        for (which, u) in batch {
            let reset = matches!(u, seta_kvstore::reflector::Update::Reset(_));
            match which {
                Watch::Identities => out.identities.extend(self.ids.apply(u)),
                Watch::Ips => {
                    out.topology |= !self.ips.apply(u).is_empty();
                    self.ips_synced |= reset;
                }
                Watch::Policies => out.policies |= !self.policies_m.apply(u).is_empty() || !self.policies_synced,
                Watch::Nodes => {
                    self.nodes_synced |= reset;
                    if !self.nodes_m.apply(u).is_empty() {
                        out.topology = true;
                        self.nodes = self
                            .nodes_m
                            .data
                            .values()
                            .filter_map(|v| serde_json::from_slice::<NodeInfo>(v).ok())
                            .filter(|n| n.name != me)
                            .map(|n| (n.name.clone(), n))
                            .collect();
                    }
                }
            }
        }
        // the remote ipcache follows only once both snapshots are in, and
        // then at once, whatever they changed
        let synced = self.ips_synced && self.nodes_synced;
        out.topology = synced && (out.topology || !topology_was_synced);
        out
    }

    /// Start from the identities last seen (key → labels text), as if a
    /// snapshot had brought them: the changes to apply.
    pub fn seed_identities(&mut self, known: BTreeMap<String, String>) -> Vec<Change> {
        let snap = known.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
        self.ids.apply(seta_kvstore::reflector::Update::Reset(snap))
    }

    /// The identities as now seen (key → labels text).
    pub fn identities_seen(&self) -> BTreeMap<String, String> {
        self.ids
            .data
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    pub fn nodes(&self) -> &BTreeMap<String, NodeInfo> {
        &self.nodes
    }

    pub fn health(&self) -> &BTreeMap<String, seta_core::api::NodeHealth> {
        &self.health
    }

    pub fn set_health(&mut self, h: BTreeMap<String, seta_core::api::NodeHealth>) {
        self.health = h;
    }

    pub fn routes(&self) -> &BTreeMap<(Ipv4Addr, u8), Ipv4Addr> {
        &self.routes
    }

    /// Other nodes and their pods as this node's remote ipcache (the
    /// cluster's source); the routes to their pod CIDRs are kept as the
    /// desired [`routes`](Self::routes). A node whose pod CIDR overlaps
    /// `own_cidr` is ignored; in tunnel mode entries carry the node's
    /// address as tunnel endpoint.
    pub fn remote(&mut self, me: &str, own_cidr: ipnet::Ipv4Net, tunnel: bool) -> BTreeMap<ipnet::Ipv4Net, Entry> {
        let mut want: BTreeMap<ipnet::Ipv4Net, Entry> = BTreeMap::new();
        let mut routes = BTreeMap::new();
        let entry = |identity: u32, host: Ipv4Addr| Entry {
            identity,
            tunnel_endpoint: (tunnel && !host.is_unspecified()).then_some(host),
        };
        let host32 = crate::ipcache::host32;
        for n in self.nodes.values() {
            let Some(primary) = n.primary_ip() else { continue };
            let Ok(cidr) = n.pod_cidr.parse::<ipnet::Ipv4Net>() else { continue };
            if cidr.contains(&own_cidr.network()) || own_cidr.contains(&cidr.network()) {
                tracing::error!(node = %n.name, %cidr, "node's pod CIDR overlaps ours; ignoring it");
                continue;
            }
            routes.insert((cidr.network(), cidr.prefix_len()), primary);
            for ip in n.ips.iter().chain([&router_ip(cidr)]) {
                want.insert(host32(*ip), entry(seta_abi::REMOTE_NODE_ID, primary));
            }
        }
        for v in self.ips.data.values() {
            let Some(e) = seta_kvstore::ipcache::parse(v) else { continue };
            if e.node == me || own_cidr.contains(&e.ip) {
                continue;
            }
            want.insert(host32(e.ip), entry(e.identity, e.host_ip));
        }
        self.routes = routes;
        want
    }

    /// This node's writes count before the watch shows them. A write the
    /// watch already delivered (the write ran without the lock, so the
    /// watch may have been faster) is not pending: recording it would mask
    /// later changes.
    pub fn record_policy_writes(&mut self, w: PolicyWrites) {
        let now = Instant::now();
        for (k, v) in w.puts {
            if self.policies_m.data.get(&k) != Some(&v) {
                self.policy_writes.insert(k, (Some(v), now));
            }
        }
        for k in w.deletes {
            if self.policies_m.data.contains_key(&k) {
                self.policy_writes.insert(k, (None, now));
            }
        }
    }

    /// The cluster's policies as this node should hold them: the watch's,
    /// with this node's recent writes over them, sorted by origin.
    pub fn policies(&mut self) -> Vec<PolicyDoc> {
        let mirror = &self.policies_m.data;
        self.policy_writes
            .retain(|k, (v, at)| mirror.get(k) != v.as_ref() && at.elapsed() < OWN_WRITE_GRACE);
        let mut data = mirror.clone();
        for (k, (v, _)) in &self.policy_writes {
            match v {
                Some(v) => data.insert(k.clone(), v.clone()),
                None => data.remove(k),
            };
        }
        let mut want: Vec<PolicyDoc> = Vec::new();
        for (k, v) in &data {
            match serde_json::from_slice::<PolicyDoc>(v) {
                Ok(d) => want.push(d),
                Err(e) => tracing::error!(key = %k, %e, "unreadable policy in the kvstore; ignored"),
            }
        }
        want.sort_by(|a, b| a.origin.cmp(&b.origin));
        want
    }

    /// Mark the first policy snapshot as applied; true the first time.
    pub fn first_policy_sync(&mut self) -> bool {
        !std::mem::replace(&mut self.policies_synced, true)
    }

    /// Publishing this node's policies failed: the next snapshot tries again.
    pub fn policies_unsynced(&mut self) {
        self.policies_synced = false;
    }
}

/// `<prefix>/policies/v1/<kind>/<namespace or _>/<name>`
pub fn policy_key(prefix: &str, d: &PolicyDoc) -> String {
    format!(
        "{}/policies/v1/{}/{}/{}",
        prefix.trim_end_matches('/'),
        d.origin.kind.short(),
        d.origin.namespace.as_deref().unwrap_or("_"),
        d.origin.name
    )
}

/// Watch health of the four prefixes.
#[derive(Default)]
pub struct KvHealth {
    pub ids: Arc<Health>,
    pub ips: Arc<Health>,
    pub nodes: Arc<Health>,
    pub policies: Arc<Health>,
}

impl KvHealth {
    pub fn connected(&self) -> bool {
        self.ids.connected() && self.ips.connected() && self.nodes.connected() && self.policies.connected()
    }
    pub fn resyncs(&self) -> u64 {
        self.ids.resyncs() + self.ips.resyncs() + self.nodes.resyncs() + self.policies.resyncs()
    }
    pub fn last_error(&self) -> Option<String> {
        self.ids
            .last_error()
            .or(self.ips.last_error())
            .or(self.nodes.last_error())
            .or(self.policies.last_error())
    }
}

/// An identity's labels as the kvstore holds them (`a;b;c`).
pub fn parse_labels(v: &[u8]) -> Option<LabelSet> {
    let s = std::str::from_utf8(v).ok()?;
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| Label::parse(p, "k8s").ok())
        .collect()
}

/// The identity number at the end of an identity key.
pub fn id_of_key(k: &str) -> Option<u32> {
    k.rsplit('/').next()?.parse().ok()
}
