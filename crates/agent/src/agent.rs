//! The endpoint manager: desired state (IPAM, identities, endpoints) kept in
//! memory and on disk, and converged into the kernel through seta-datapath.
use crate::config::Config;
use crate::state::Store;
use anyhow::{Context, Result};
use seta_abi::{EndpointInfo, RemoteEndpointInfo, ENDPOINT_F_HOST};
use seta_core::api::{AgentConfig, Attachment, IpamAddress, IpamResponse, IpamStatus, Status};
use seta_core::endpoint::{next_endpoint_id, parse_mac, Endpoint, EndpointChangeRequest, EndpointRef, EndpointState};
use seta_core::identity::{reserved_name, IdentityAllocator, ID_HOST};
use seta_core::ipam::Pool;
use seta_core::labelfilter::LabelFilter;
use seta_core::labels::{Label, LabelSet};
use seta_core::names::{HOST_DEV, NET_DEV};
use seta_core::policy::resolve::{self, IdKind, IdentityInfo};
use seta_core::policy::{parse, trace, PolicyDoc, Rule};
use crate::kernel::Kernel;
use seta_datapath::maps::policy_entries;
use seta_datapath::netlink::Netlink;
use seta_datapath::{Datapath, EndpointProgConfig};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;

mod cluster;
pub(crate) mod ipcache;
#[cfg(test)]
mod tests;
pub use cluster::VXLAN_DEV;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
    /// a dependency (the kvstore) is unavailable; nothing was changed
    #[error("{0}")]
    Unavailable(String),
    /// the request is over a stated size limit
    #[error("{0}")]
    TooLarge(String),
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(format!("{e:#}"))
    }
}

/// Policies, namespaces and CIDR identities: persisted as policy.json.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct PolicyState {
    revision: u64,
    docs: Vec<PolicyDoc>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    cidr_ids: BTreeMap<ipnet::Ipv4Net, u32>,
}

impl PolicyState {
    /// All rules, in a stable order (cookies index into this list).
    fn rules(&self) -> Vec<Rule> {
        self.docs.iter().flat_map(|d| d.rules.iter().cloned()).collect()
    }
}

struct Inner {
    pool: Pool,
    identities: IdentityAllocator,
    endpoints: BTreeMap<u16, Endpoint>,
    /// ids handed out to creations still loading their programs
    reserved_ids: std::collections::BTreeSet<u16>,
    /// container ids with a create in flight (a second one is a conflict)
    creating: std::collections::BTreeSet<String>,
    /// the one adapter to the kernel (also held by the agent)
    kernel: Arc<dyn Kernel>,
    /// the merged desired ipcache (every source) and what is installed
    ipc_state: ipcache::IpcacheState,
    policy: PolicyState,
    /// per-IP identities of pod IPs under a Kubernetes ipBlock
    ipblock_ids: BTreeMap<Ipv4Addr, u32>,
    /// each endpoint's resolved policy and map state, for incremental updates
    resolved: BTreeMap<u16, (resolve::EndpointPolicy, resolve::MapState)>,
    /// other nodes, their pods and the cluster's identities (from the kvstore)
    cluster: cluster::ClusterState,
    /// identity numbers whose kvstore reference is to be dropped
    kv_releases: Vec<u32>,
}

pub struct Agent {
    pub cfg: Config,
    /// every kernel side effect goes through this (a fake in unit tests)
    kernel: Arc<dyn Kernel>,
    /// the node's versioned pin directory (the events reader opens its ring buffer there)
    pin_dir: std::path::PathBuf,
    store: Store,
    inner: Mutex<Inner>,
    started: Instant,
    restored: std::sync::atomic::AtomicUsize,
    filter: LabelFilter,
    pub events: crate::events::EventLog,
    policy_map_full: std::sync::atomic::AtomicU64,
    /// regenerations retried after a failure
    regen_retries: std::sync::atomic::AtomicU64,
    /// a spare policy map refill runs / was asked for while one ran
    refilling: std::sync::atomic::AtomicBool,
    refill_again: std::sync::atomic::AtomicBool,
    pub supervisor: Arc<crate::supervisor::Supervisor>,
    /// orders policy changes (their kvstore writes run without the inner lock)
    policy_io: Mutex<()>,
    /// the routes to other nodes' pod CIDRs that are installed (node CIDR ->
    /// via); the route reconciler holds it while it writes, not the inner lock
    routes_io: Mutex<BTreeMap<(Ipv4Addr, u8), Ipv4Addr>>,
    /// serializes this node's identity reference writes in the kvstore
    /// (allocations and releases), which run without the inner lock
    ids_io: Mutex<()>,
    /// identities whose last local reference went: their kvstore reference
    /// is dropped by the identity-release task, off the inner lock
    releases_due: tokio::sync::Notify,
    kv: Kv,
    kv_health: cluster::KvHealth,
    last_keepalive: std::sync::Mutex<Instant>,
    /// this node's address for other nodes
    node_ip: Option<Ipv4Addr>,
    underlay_mtu: u32,
    /// the device holding the node IP: from_netdev delivers to pods from it
    node_dev: Option<String>,
}

fn host_entry(ep: &Endpoint) -> Result<EndpointInfo, String> {
    Ok(EndpointInfo {
        ifindex: ep.interface_index,
        lxc_id: ep.id,
        mac: parse_mac(&ep.mac)?,
        node_mac: parse_mac(&ep.host_mac)?,
        sec_id: ep.identity,
        ..Default::default()
    })
}

const RESERVED: &[u32] = &[1, 2, 3, 4, 5, 6, 7, 8];

impl Inner {
    /// The id of the endpoint `r` names, or 404.
    fn find(&self, r: &EndpointRef) -> Result<u16, ApiError> {
        self.endpoints
            .values()
            .find(|e| r.matches(e))
            .map(|e| e.id)
            .ok_or_else(|| ApiError::NotFound(format!("endpoint {r:?} not found")))
    }

    /// Every identity policies can refer to: reserved, endpoints', CIDR.
    fn universe(&self) -> Vec<IdentityInfo> {
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
        u.extend(self.identities.list().map(|a| IdentityInfo {
            id: a.id,
            labels: a.labels.clone(),
            kind: IdKind::Endpoint,
        }));
        // identities of the rest of the cluster (not held here)
        u.extend(
            self.cluster
                .remote_ids
                .iter()
                .filter(|(id, _)| self.identities.get(**id).is_none())
                .map(|(id, labels)| IdentityInfo {
                    id: *id,
                    labels: labels.clone(),
                    kind: IdKind::Endpoint,
                }),
        );
        u.extend(self.ipblock_ids.iter().map(|(ip, id)| IdentityInfo {
            id: *id,
            labels: [Label::new("ipblock", &ip.to_string(), "")].into_iter().collect(),
            kind: IdKind::PodIp(*ip),
        }));
        u.extend(self.policy.cidr_ids.iter().map(|(net, id)| {
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

    fn peer_ports(&self) -> BTreeMap<String, std::collections::BTreeSet<(u8, u16)>> {
        let mut m: BTreeMap<String, std::collections::BTreeSet<(u8, u16)>> = BTreeMap::new();
        for e in self.endpoints.values() {
            for (n, p) in &e.named_ports {
                m.entry(n.clone()).or_default().insert(*p);
            }
        }
        m
    }

    fn endpoint_policy(&self, rules: &[Rule], ep: &Endpoint, allow_host: bool) -> resolve::EndpointPolicy {
        resolve::endpoint_policy(rules, &ep.labels, ep.named_ports.clone(), self.peer_ports(), allow_host)
    }

    /// Prefixes of Kubernetes ipBlock peers (they also select pod IPs).
    fn ipblock_prefixes(&self) -> Vec<ipnet::Ipv4Net> {
        let mut out = Vec::new();
        for r in self.policy.docs.iter().flat_map(|d| &d.rules) {
            for pr in r.ingress.iter().chain(&r.egress) {
                if let seta_core::policy::Peers::Some(peers) = &pr.peers {
                    for p in peers {
                        if let seta_core::policy::Peer::IpBlock { cidr, .. } = p {
                            out.push(*cidr);
                        }
                    }
                }
            }
        }
        out
    }

    /// Give every pod IP under an ipBlock a per-IP identity (stable while the
    /// pod lives); returns whether the set changed.
    fn sync_ipblock_ids(&mut self) -> bool {
        let prefixes = self.ipblock_prefixes();
        // every pod IP of the cluster (local endpoints and other nodes' pods),
        // never node addresses or reserved identities
        let want: std::collections::BTreeSet<Ipv4Addr> = if prefixes.is_empty() {
            Default::default()
        } else {
            self.ipc_state
                .merged
                .pod_ips()
                .filter(|(_, _, id)| *id >= seta_core::identity::MIN_ALLOCATED && *id < SCOPE_LOCAL)
                .map(|(ip, _, _)| ip)
                .filter(|ip| prefixes.iter().any(|p| p.contains(ip)))
                .collect()
        };
        let before = self.ipblock_ids.clone();
        self.ipblock_ids.retain(|ip, _| want.contains(ip));
        for ip in want {
            if !self.ipblock_ids.contains_key(&ip) {
                let used: std::collections::BTreeSet<u32> = self.ipblock_ids.values().copied().collect();
                let id = (seta_abi::IDENTITY_SCOPE_IPBLOCK + 1..).find(|i| !used.contains(i)).unwrap();
                self.ipblock_ids.insert(ip, id);
            }
        }
        before != self.ipblock_ids
    }

    /// Allocate or free local CIDR identities so every prefix in a policy has one.
    fn sync_cidr_identities(&mut self) -> Vec<(ipnet::Ipv4Net, Option<u32>)> {
        let mut want = std::collections::BTreeSet::new();
        for r in self.policy.docs.iter().flat_map(|d| &d.rules) {
            for pr in r.ingress.iter().chain(&r.ingress_deny).chain(&r.egress).chain(&r.egress_deny) {
                if let seta_core::policy::Peers::Some(peers) = &pr.peers {
                    for p in peers {
                        if let seta_core::policy::Peer::Cidr { cidr, except } | seta_core::policy::Peer::IpBlock { cidr, except } = p {
                            if cidr.prefix_len() > 0 {
                                want.insert(*cidr);
                            }
                            want.extend(except.iter().copied());
                        }
                    }
                }
            }
        }
        let mut changes = Vec::new();
        let stale: Vec<_> = self.policy.cidr_ids.keys().filter(|k| !want.contains(*k)).copied().collect();
        for k in stale {
            self.policy.cidr_ids.remove(&k);
            changes.push((k, None));
        }
        for net in want {
            if !self.policy.cidr_ids.contains_key(&net) {
                let used: std::collections::BTreeSet<u32> = self.policy.cidr_ids.values().copied().collect();
                let id = (SCOPE_LOCAL + 1..).find(|i| !used.contains(i)).unwrap();
                self.policy.cidr_ids.insert(net, id);
                changes.push((net, Some(id)));
            }
        }
        changes
    }
}

pub use crate::kv::Kv;

/// Local (node-scoped) identities for CIDRs: 1<<24 and up, like Cilium.
const SCOPE_LOCAL: u32 = 1 << 24;

/// Make an endpoint visible to the datapath: its endpoint-map entry (local
/// delivery) and its ipcache entry (its identity for everyone's policy).
fn publish(inner: &mut Inner, ep: &Endpoint) -> Result<(), ApiError> {
    inner.kernel.endpoint_upsert(ep.ipv4, &host_entry(ep).map_err(ApiError::BadRequest)?)?;
    inner.ipcache_local(ep.ipv4, Some(ep.identity));
    if let Some(err) = inner.ipc_state.failed.get(&ipcache::host32(ep.ipv4)) {
        return Err(ApiError::Internal(format!("ipcache entry for {}: {err}", ep.ipv4)));
    }
    Ok(())
}

fn prog_config(ep: &Endpoint) -> Result<EndpointProgConfig, String> {
    parse_mac(&ep.host_mac)?;
    Ok(EndpointProgConfig {
        ep_id: ep.id,
        ifname: ep.interface_name.clone(),
    })
}

impl Agent {
    /// Bring the node up: bpffs, host devices, maps and node programs, then
    /// restore what a previous run left (state dir + pins).
    pub async fn start(cfg: Config, filter: LabelFilter) -> Result<Arc<Self>> {
        seta_datapath::sysfs::ensure_bpffs(&cfg.bpffs).with_context(|| format!("mounting bpffs at {}", cfg.bpffs.display()))?;
        let store = Store::open(&cfg.state_dir)?;
        let dp = Datapath::new(&cfg.pin_dir)?;
        let nl = Netlink::current()?;

        let pool: Pool = store.load::<Option<Pool>>("ipam.json")?.unwrap_or(Pool::new(cfg.pod_cidr)?);
        if pool.cidr != cfg.pod_cidr {
            anyhow::bail!(
                "pod CIDR changed from {} (in {}/ipam.json) to {}; run `seta-agent cleanup --node {}` first",
                pool.cidr,
                cfg.state_dir.display(),
                cfg.pod_cidr,
                cfg.node
            );
        }
        setup_host_devices(&nl, &cfg, pool.router()).await?;
        let node = underlay(&nl, &cfg).await?;
        {
            let dp1 = dp.clone();
            tokio::task::spawn_blocking(move || dp1.attach_host(HOST_DEV)).await??;
            // the shared endpoint program, verified now rather than on the first pod
            let dp2 = dp.clone();
            let prog = tokio::task::spawn_blocking(move || dp2.lxc_prog_id()).await??;
            tracing::info!(prog, "endpoint program ready");
        }
        cluster::setup_routing_mode(&dp, &nl, &cfg, &node).await?;
        let kv = Kv::open(&cfg).await?;
        let pin_dir = dp.pin_dir().to_path_buf();
        let kernel: Arc<dyn Kernel> = Arc::new(crate::kernel::Real::new(dp, nl)?);
        Self::assemble(cfg, filter, kernel, kv, store, pool, node, pin_dir).await
    }

    /// The subsystems on top of a brought-up node (or of fakes, in unit
    /// tests): state from the store, then the same reconcile a restart does.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn assemble(
        cfg: Config,
        filter: LabelFilter,
        kernel: Arc<dyn Kernel>,
        kv: Kv,
        store: Store,
        mut pool: Pool,
        node: NodeFacts,
        pin_dir: std::path::PathBuf,
    ) -> Result<Arc<Self>> {
        let router = pool.router();
        kernel.endpoint_upsert(
            router,
            &EndpointInfo {
                flags: ENDPOINT_F_HOST,
                ..Default::default()
            },
        )?;
        // start from what is pinned: nothing is rewritten until every source
        // has said what it wants (the full reconcile at the end of start)
        let mut ipc_state = ipcache::IpcacheState::adopt(kernel.as_ref());
        ipc_state.merged.upsert(
            seta_core::ipcache::Source::Local,
            ipcache::host32(router),
            seta_core::ipcache::Entry {
                identity: ID_HOST,
                tunnel_endpoint: None,
            },
        );
        // other nodes' entries a previous run left stay until the first
        // cluster sync says otherwise (no gap for cross-node traffic)
        for (net, e) in &ipc_state.installed {
            if net.prefix_len() == 32 && !cfg.pod_cidr.contains(&net.addr()) && e.identity < SCOPE_LOCAL {
                let (net, e) = (*net, *e);
                ipc_state.merged.upsert(seta_core::ipcache::Source::Cluster, net, e);
            }
        }

        let identities: IdentityAllocator = store.load("identities.json")?;
        let policy: PolicyState = store.load("policy.json")?;
        // Pool allocations without an endpoint are kept: a CNI ADD may be between
        // its IPAM call and its endpoint call. They are released by CNI DEL/GC.
        pool.cidr = cfg.pod_cidr;
        let agent = Arc::new(Self {
            cfg,
            kernel: kernel.clone(),
            pin_dir,
            store,
            inner: Mutex::new(Inner {
                pool,
                identities,
                endpoints: BTreeMap::new(),
                reserved_ids: Default::default(),
                creating: Default::default(),
                kv_releases: Default::default(),
                kernel,
                ipc_state,
                policy,
                ipblock_ids: BTreeMap::new(),
                resolved: BTreeMap::new(),
                cluster: Default::default(),
            }),
            started: Instant::now(),
            restored: Default::default(),
            filter,
            events: crate::events::EventLog::new(4096),
            policy_map_full: Default::default(),
            regen_retries: Default::default(),
            refilling: Default::default(),
            refill_again: Default::default(),
            supervisor: crate::supervisor::Supervisor::new(),
            ids_io: Mutex::new(()),
            policy_io: Mutex::new(()),
            routes_io: Mutex::new(BTreeMap::new()),
            releases_due: tokio::sync::Notify::new(),
            kv,
            kv_health: Default::default(),
            last_keepalive: std::sync::Mutex::new(Instant::now()),
            node_ip: node.ip,
            underlay_mtu: node.mtu,
            node_dev: node.dev,
        });
        agent.restore().await?;
        agent.process_delete_queue().await;
        {
            let mut inner = agent.inner.lock().await;
            inner.sync_cidr_identities();
            agent.sync_cidr_ipcache(&mut inner)?;
            agent.sync_ipblock(&mut inner)?;
            // a restart is the same reconcile: the kernel map, whatever it holds
            agent.sync_ipblock_map(&inner)?;
            inner.reconcile_ipcache(true);
            agent.regenerate_all(&mut inner);
            agent.save_pool_and_ids(&inner)?;
        }
        Ok(agent)
    }

    /// Re-adopt endpoints from the state dir. Live ones keep their pinned
    /// programs (no reload, no gap); vanished ones are cleaned up; stray pins
    /// and map entries are removed.
    async fn restore(&self) -> Result<()> {
        let saved = self.store.load_endpoints();
        let mut inner = self.inner.lock().await;
        // identities keep their numbers; references are re-counted from the
        // endpoints that survive
        inner.identities.reset_refcounts();
        let mut restored = 0;
        // a live endpoint keeps its filter if it runs this build's program
        let want = self.kernel.endpoint_program().await?;
        for mut ep in saved {
            let link = self.kernel.link(&ep.interface_name).await?;
            match link {
                Some(l) if l.index == ep.interface_index => {
                    ep.identity = self
                        .acquire_identity(&mut inner, &ep.labels)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    // attached with this build's program (an older one is replaced in place)
                    let attached = self.kernel.endpoint_filter(l.index).await? == Some(want);
                    if !attached || !self.kernel.policy_map_exists(ep.id) {
                        ep.state = EndpointState::Regenerating;
                        let cfg = prog_config(&ep).map_err(anyhow::Error::msg)?;
                        // an existing policy map is kept as is; the regeneration below brings it up to date
                        self.kernel.attach_endpoint(cfg, None).await?;
                    }
                    publish(&mut inner, &ep).map_err(|e| anyhow::anyhow!("{e}"))?;
                    let _ = inner.pool.allocate_ip(ep.ipv4, &ep.container_id);
                    ep.state = EndpointState::Ready;
                    self.store.save_endpoint(&ep)?;
                    tracing::info!(id = ep.id, ip = %ep.ipv4, "restored endpoint");
                    inner.endpoints.insert(ep.id, ep);
                    restored += 1;
                }
                _ => {
                    tracing::info!(id = ep.id, ifname = %ep.interface_name, "endpoint's interface is gone; removing it");
                    self.kernel.detach_endpoint(&ep.interface_name)?;
                    self.kernel.remove_endpoint_policy(ep.id)?;
                    self.kernel.endpoint_remove(ep.ipv4)?;
                    inner.ipcache_local(ep.ipv4, None);
                    let _ = inner.pool.release(ep.ipv4);
                    self.store.remove_endpoint(ep.id)?;
                }
            }
        }
        // stray kernel state that no endpoint owns
        let router = inner.pool.router();
        let known: std::collections::BTreeSet<Ipv4Addr> = inner.endpoints.values().map(|e| e.ipv4).chain([router]).collect();
        for (ip, _) in self.kernel.endpoint_list() {
            if !known.contains(&ip) {
                self.kernel.endpoint_remove(ip)?;
            }
        }
        // (stray ipcache entries go in the full reconcile at the end of start)
        let devs: std::collections::BTreeSet<String> = inner
            .endpoints
            .values()
            .map(|e| e.interface_name.clone())
            .chain([HOST_DEV.to_string(), VXLAN_DEV.to_string()])
            .chain(self.node_dev.clone())
            .collect();
        for d in self.kernel.pinned_link_devices() {
            if !devs.contains(&d) {
                self.kernel.detach_links(&d)?;
            }
        }
        let ids: std::collections::BTreeSet<u16> = inner.endpoints.keys().copied().collect();
        for id in self.kernel.policy_map_ids() {
            if id <= u16::MAX as u32 && !ids.contains(&(id as u16)) {
                self.kernel.recycle_policy_map(id as u16)?; // a spare, emptied
            }
        }
        inner.identities.drop_unreferenced();
        self.save_pool_and_ids(&inner)?;
        self.restored.store(restored, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Finish DELs that seta-cni queued while the agent was down.
    async fn process_delete_queue(&self) {
        let dir = self.cfg.delete_queue_dir();
        let Ok(rd) = std::fs::read_dir(&dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let parsed = std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
            if let Some(cid) = parsed.as_ref().and_then(|v| v["container-id"].as_str()) {
                let _ = self.delete_endpoint(&EndpointRef::ContainerId(cid.into())).await;
                let _ = self.ipam_release_owner(cid).await;
                if let Some(ifname) = parsed.as_ref().and_then(|v| v["host-ifname"].as_str()) {
                    let _ = self.kernel.delete_link(ifname).await;
                }
                tracing::info!(container = cid, "processed queued CNI DEL");
            }
            let _ = std::fs::remove_file(&p);
        }
    }

    fn save_pool_and_ids(&self, inner: &Inner) -> Result<()> {
        self.store.save("ipam.json", &inner.pool)?;
        self.store.save("identities.json", &inner.identities)?;
        self.store.save("policy.json", &inner.policy)
    }

    /// A reference on the identity of `labels`; a label set new to this node
    /// gets its number from the cluster's kvstore.
    async fn acquire_identity(&self, inner: &mut Inner, labels: &LabelSet) -> Result<u32, ApiError> {
        if labels.is_empty() || inner.identities.contains(labels) {
            return inner.identities.acquire(labels).map_err(|e| ApiError::Conflict(e.to_string()));
        }
        let id = self
            .kv
            .allocate(labels)
            .await
            .map_err(|e| ApiError::Internal(format!("identity allocation in the kvstore: {e}")))?;
        Ok(inner.identities.acquire_as(labels, id))
    }

    /// Drop a reference; the node's reference in the kvstore goes with the
    /// last one, written by the identity-release task (no I/O under the lock).
    async fn release_identity(&self, inner: &mut Inner, labels: &LabelSet) {
        let id = inner.identities.list().find(|a| a.labels == *labels).map(|a| a.id);
        inner.identities.release(labels);
        if let Some(id) = id.filter(|id| inner.identities.get(*id).is_none()) {
            inner.kv_releases.push(id);
            self.releases_due.notify_one();
        }
    }

    /// Drop the kvstore references of identities no local endpoint holds any
    /// more (one that got a reference again meanwhile keeps it).
    async fn flush_identity_releases(&self) {
        let _io = self.ids_io.lock().await;
        let due: Vec<u32> = {
            let mut inner = self.inner.lock().await;
            let due = std::mem::take(&mut inner.kv_releases);
            due.into_iter().filter(|id| inner.identities.get(*id).is_none()).collect()
        };
        for id in due {
            if let Err(e) = self.kv.release(id).await {
                tracing::warn!(id, %e, "could not drop the identity reference in the kvstore");
            }
        }
    }

    /// Before the inner lock: the number of a label set this node does not
    /// hold yet comes from the kvstore now, so a slow or absent etcd stalls
    /// only this request. The returned guard keeps releases of this node's
    /// references out until the caller has taken its local reference.
    async fn reserve_identity(&self, labels: &LabelSet) -> Result<(Option<u32>, tokio::sync::MutexGuard<'_, ()>), ApiError> {
        let io = self.ids_io.lock().await;
        if labels.is_empty() || self.inner.lock().await.identities.contains(labels) {
            return Ok((None, io));
        }
        let id = self
            .kv
            .allocate(labels)
            .await
            .map_err(|e| ApiError::Unavailable(format!("identity allocation in the kvstore: {e}")))?;
        Ok((Some(id), io))
    }

    /// The local reference for a reservation from `reserve_identity`.
    async fn take_reserved(&self, inner: &mut Inner, labels: &LabelSet, reserved: Option<u32>) -> Result<u32, ApiError> {
        match reserved {
            Some(id) if !inner.identities.contains(labels) => Ok(inner.identities.acquire_as(labels, id)),
            _ => self.acquire_identity(inner, labels).await,
        }
    }

    /// The identity labels of a pod: its labels, its namespace and the
    /// namespace's labels, through the identity-relevant label filter.
    fn identity_labels(&self, inner: &mut Inner, pod_labels: &[String], namespace: &str) -> Result<LabelSet, ApiError> {
        let mut set = LabelSet::new();
        for (i, l) in pod_labels.iter().enumerate() {
            set.insert(Label::parse(l, "k8s").map_err(|e| ApiError::BadRequest(format!("labels[{i}]: {e}")))?);
        }
        if !namespace.is_empty() {
            let ns_labels = inner
                .policy
                .namespaces
                .entry(namespace.to_string())
                .or_insert_with(|| BTreeMap::from([("kubernetes.io/metadata.name".to_string(), namespace.to_string())]))
                .clone();
            set.insert(Label::new("k8s", "io.kubernetes.pod.namespace", namespace));
            for (k, v) in ns_labels {
                set.insert(Label::new("k8s", &format!("io.cilium.k8s.namespace.labels.{k}"), &v));
            }
        }
        Ok(self.filter.filter(&set))
    }

    /// Identity churn, incrementally: only the entries of `added` / `removed`
    /// identities change in each endpoint's map (the resolver guarantees this
    /// equals a full recompute). Endpoints without a cached state get a full one.
    fn identities_changed(&self, inner: &mut Inner, added: &[IdentityInfo], removed: &[u32], skip: Option<u16>) {
        let ids: Vec<u16> = inner.endpoints.keys().copied().filter(|i| Some(*i) != skip).collect();
        let mut full = false;
        for id in ids {
            let Some((p, state)) = inner.resolved.get_mut(&id) else {
                full = true;
                continue;
            };
            let mut drop_keys = Vec::new();
            for rid in removed {
                drop_keys
                    .extend(policy_entries(&state.iter().filter(|(k, _)| k.identity == *rid).map(|(k, e)| (*k, *e)).collect()).into_keys());
                resolve::remove_identity(state, *rid);
            }
            let mut upsert = resolve::MapState::new();
            for a in added {
                let before: Vec<resolve::Key> = state.keys().filter(|k| k.identity == a.id).copied().collect();
                resolve::add_identity(state, p, a);
                upsert.extend(state.iter().filter(|(k, _)| k.identity == a.id).map(|(k, e)| (*k, *e)));
                let now: std::collections::BTreeSet<resolve::Key> = upsert.keys().copied().collect();
                let gone: resolve::MapState = before
                    .into_iter()
                    .filter(|k| !now.contains(k))
                    .map(|k| (k, resolve::Entry { deny: false, cookie: 0 }))
                    .collect();
                drop_keys.extend(policy_entries(&gone).into_keys());
            }
            let res = self.kernel.policy_apply(id, &policy_entries(&upsert), &drop_keys);
            if let Err(err) = res {
                tracing::warn!(id, %err, "incremental policy update failed; full regeneration");
                full = true;
            }
        }
        if full {
            self.regenerate_all(inner);
        }
    }

    /// Recompute per-IP identities and write them (and the datapath flag).
    fn sync_ipblock(&self, inner: &mut Inner) -> Result<bool> {
        let changed = inner.sync_ipblock_ids();
        if changed {
            self.sync_ipblock_map(inner)?;
        }
        Ok(changed)
    }

    /// Make the kernel's ipBlock map hold exactly the per-IP identities.
    fn sync_ipblock_map(&self, inner: &Inner) -> Result<()> {
        self.kernel.ipblock_sync(&inner.ipblock_ids)?;
        Ok(())
    }

    /// CIDR identities in the ipcache (prefix -> identity); stale ones removed.
    /// They are the lowest-precedence source: a prefix that is also a pod's
    /// or node's address keeps that identity.
    fn sync_cidr_ipcache(&self, inner: &mut Inner) -> Result<()> {
        let want: BTreeMap<ipnet::Ipv4Net, seta_core::ipcache::Entry> = inner
            .policy
            .cidr_ids
            .iter()
            .map(|(n, id)| {
                (
                    n.trunc(),
                    seta_core::ipcache::Entry {
                        identity: *id,
                        tunnel_endpoint: None,
                    },
                )
            })
            .collect();
        inner.ipc_state.merged.replace_source(seta_core::ipcache::Source::Cidr, &want);
        inner.reconcile_ipcache(false);
        Ok(())
    }

    /// Compute every endpoint's policy and make its map hold exactly that
    /// (diff: only changed entries are written). Failures are recorded on the
    /// endpoint (not-ready + message) and counted, never silently allowed.
    fn regenerate_all(&self, inner: &mut Inner) {
        let ids: Vec<u16> = inner.endpoints.keys().copied().collect();
        self.regenerate(inner, &ids);
    }

    /// `regenerate_all` for some endpoints.
    fn regenerate(&self, inner: &mut Inner, ids: &[u16]) {
        let rules = inner.policy.rules();
        let universe = inner.universe();
        let revision = inner.policy.revision;
        for &id in ids {
            if !inner.endpoints.contains_key(&id) {
                continue;
            }
            let ep = inner.endpoints[&id].clone();
            let p = inner.endpoint_policy(&rules, &ep, self.cfg.allow_host_ingress);
            let state = resolve::compute(&p, &universe);
            let entries = policy_entries(&state);
            let res = self.kernel.policy_sync(id, &entries);
            let ok = res.is_ok();
            if ok {
                inner.resolved.insert(id, (p.clone(), state));
            } else {
                inner.resolved.remove(&id);
            }
            let e = inner.endpoints.get_mut(&id).unwrap();
            e.ingress_enforced = p.ingress_enforced;
            e.egress_enforced = p.egress_enforced;
            match res {
                Ok(stats) => {
                    e.policy_revision = revision;
                    e.policy_entries = entries.len();
                    e.state = EndpointState::Ready;
                    e.status_message.clear();
                    if stats != Default::default() {
                        tracing::debug!(id, ?stats, revision, "policy map synced");
                    }
                }
                Err(err) => {
                    if err.is_map_full() {
                        self.policy_map_full.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    tracing::error!(id, %err, "policy regeneration failed; endpoint is not ready");
                    e.state = EndpointState::NotReady;
                    e.status_message = format!("policy regeneration failed: {err}");
                }
            }
            let _ = self.store.save_endpoint(e);
        }
    }

    pub fn config(&self) -> AgentConfig {
        AgentConfig {
            node: self.cfg.node.clone(),
            pod_cidr: self.cfg.pod_cidr,
            router_ip: seta_core::ipam::router_ip(self.cfg.pod_cidr),
            state_dir: self.cfg.state_dir.display().to_string(),
            socket: self.cfg.socket.display().to_string(),
            bpffs: self.cfg.bpffs.display().to_string(),
            pin_dir: self.cfg.pin_dir.display().to_string(),
            cni_conf_dir: self.cfg.cni_conf_dir.display().to_string(),
            abi_version: seta_abi::ABI_VERSION,
        }
    }

    pub async fn status(&self) -> Status {
        let inner = self.inner.lock().await;
        let mut nodes_registered: Vec<String> = inner.cluster.nodes.keys().cloned().chain([self.cfg.node.clone()]).collect();
        nodes_registered.sort();
        let kvstore_status = if self.kv_health.connected() {
            match self.kv_health.resyncs() {
                0 => "ok".to_string(),
                n => format!("ok ({n} resyncs after watch breaks)"),
            }
        } else {
            format!(
                "degraded: {} (datapath keeps forwarding with the last known state; retrying)",
                self.kv_health.last_error().unwrap_or_else(|| "connecting".into())
            )
        };
        let mut states = BTreeMap::new();
        for e in inner.endpoints.values() {
            *states.entry(e.state.to_string()).or_insert(0) += 1;
        }
        Status {
            node: self.cfg.node.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            healthy: true,
            uptime_seconds: self.started.elapsed().as_secs(),
            datapath: format!("eBPF, pins {}", self.cfg.pin_dir.display()),
            attach_mode: "tc (endpoints), tcx (host devices)".into(),
            endpoints: inner.endpoints.len(),
            endpoint_states: states,
            ipam: IpamStatus {
                cidr: inner.pool.cidr,
                allocated: inner.pool.allocated.len(),
                capacity: inner.pool.capacity(),
                allocations: inner.pool.allocated.clone(),
            },
            restored_endpoints: self.restored.load(std::sync::atomic::Ordering::Relaxed),
            cni_config: self.cfg.cni_conf_path().display().to_string(),
            policy_revision: inner.policy.revision,
            policies: inner.policy.docs.len(),
            policy_map_full_errors: self.policy_map_full_count(),
            kvstore: format!("{} {}", self.kv.describe(), self.cfg.kvstore_endpoints.join(","))
                .trim()
                .to_string(),
            kvstore_status,
            nodes_registered,
            routing_mode: self.cfg.routing_mode,
            node_ip: self.node_ip,
            pod_mtu: self.pod_mtu(),
            cluster_health: inner.cluster.health.values().cloned().collect(),
            tasks: self.supervisor.status(),
            reconcile: seta_core::api::ReconcileStatus {
                ipcache_failed: inner.ipc_state.failed.iter().map(|(n, e)| (n.to_string(), e.clone())).collect(),
                endpoints_failed: inner
                    .endpoints
                    .values()
                    .filter(|e| e.state == EndpointState::NotReady)
                    .map(|e| (e.id, e.status_message.clone()))
                    .collect(),
                retries: self.regen_retries.load(std::sync::atomic::Ordering::Relaxed),
            },
        }
    }

    pub async fn ipam_allocate(&self, owner: &str) -> Result<IpamResponse, ApiError> {
        if owner.is_empty() {
            return Err(ApiError::BadRequest(
                "query parameter owner is required (container id or namespace/pod)".into(),
            ));
        }
        let mut inner = self.inner.lock().await;
        let ip = inner.pool.allocate(owner).map_err(|e| ApiError::Conflict(e.to_string()))?;
        self.save_pool_and_ids(&inner)?;
        Ok(IpamResponse {
            ipv4: IpamAddress {
                ip,
                gateway: inner.pool.router(),
                cidr: inner.pool.cidr,
            },
            mtu: self.underlay_mtu,
            route_mtu: self.pod_mtu(),
        })
    }

    pub async fn ipam_release(&self, ip: Ipv4Addr) -> Result<(), ApiError> {
        let mut inner = self.inner.lock().await;
        if inner.endpoints.values().any(|e| e.ipv4 == ip) {
            return Err(ApiError::Conflict(format!(
                "{ip} is used by an endpoint; delete the endpoint instead"
            )));
        }
        inner.pool.release(ip).map_err(|e| ApiError::NotFound(e.to_string()))?;
        self.save_pool_and_ids(&inner)?;
        Ok(())
    }

    /// Release every address of `owner` that no endpoint uses. Returns how many.
    pub async fn ipam_release_owner(&self, owner: &str) -> Result<usize, ApiError> {
        let mut inner = self.inner.lock().await;
        let ips: Vec<Ipv4Addr> = inner
            .pool
            .allocated
            .iter()
            .filter(|(ip, o)| o.as_str() == owner && !inner.endpoints.values().any(|e| e.ipv4 == **ip))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &ips {
            let _ = inner.pool.release(*ip);
        }
        self.save_pool_and_ids(&inner)?;
        Ok(ips.len())
    }

    pub async fn list(&self) -> Vec<Endpoint> {
        self.inner.lock().await.endpoints.values().cloned().collect()
    }

    pub async fn get(&self, r: &EndpointRef) -> Result<Endpoint, ApiError> {
        let inner = self.inner.lock().await;
        Ok(inner.endpoints[&inner.find(r)?].clone())
    }

    /// Create (or idempotently confirm) an endpoint; returns once its programs
    /// and map entries are live.
    pub async fn create_endpoint(&self, req: EndpointChangeRequest) -> Result<Endpoint, ApiError> {
        let t0 = Instant::now();
        let bad = |m: String| ApiError::BadRequest(m);
        if req.container_id.is_empty() {
            return Err(bad("container-id: must not be empty".into()));
        }
        let mac = parse_mac(&req.mac).map_err(|e| bad(format!("mac: {e}")))?;
        let host_mac = parse_mac(&req.host_mac).map_err(|e| bad(format!("host-mac: {e}")))?;
        let named_ports: BTreeMap<String, (u8, u16)> = req
            .named_ports
            .iter()
            .enumerate()
            .map(|(i, p)| seta_core::endpoint::parse_named_port(p).map_err(|e| bad(format!("named-ports[{i}]: {e}"))))
            .collect::<Result<_, _>>()?;
        for (i, l) in req.labels.iter().enumerate() {
            Label::parse(l, "k8s").map_err(|e| bad(format!("labels[{i}]: {e}")))?;
        }
        let link = self
            .kernel
            .link(&req.interface_name)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .ok_or_else(|| bad(format!("interface-name: no interface {:?} on this node", req.interface_name)))?;
        if link.index != req.interface_index {
            return Err(bad(format!(
                "interface-index: {} does not match {} (ifindex {})",
                req.interface_index, req.interface_name, link.index
            )));
        }
        if link.mac != host_mac {
            return Err(bad(format!("host-mac: {} is not the MAC of {}", req.host_mac, req.interface_name)));
        }

        // Phase 0: the identity's number (kvstore I/O only for a new label set)
        let labels = {
            let mut inner = self.inner.lock().await;
            self.identity_labels(&mut inner, &req.labels, &req.namespace)?
        };
        let (reserved, ids_guard) = self.reserve_identity(&labels).await?;
        // Phase 1 (locked): validate against current state, reserve id + identity.
        let t_lock1 = Instant::now();
        let phase1 = async {
            let mut inner = self.inner.lock().await;
            let lock1_ms = t_lock1.elapsed().as_secs_f64() * 1e3;
            tracing::debug!(lock1_ms, "create: phase 1 lock");
            if let Some(existing) = inner.endpoints.values().find(|e| e.container_id == req.container_id) {
                if existing.ipv4 == req.ipv4 && existing.interface_index == req.interface_index && existing.state == EndpointState::Ready {
                    return Ok(Err(existing.clone()));
                }
                return Err(ApiError::Conflict(format!(
                    "container {} already has endpoint {} ({}); delete it first",
                    req.container_id, existing.id, existing.ipv4
                )));
            }
            if inner.creating.contains(&req.container_id) {
                return Err(ApiError::Conflict(format!(
                    "container {} is being attached by another request",
                    req.container_id
                )));
            }
            if !inner.pool.cidr.contains(&req.ipv4) {
                return Err(bad(format!(
                    "ipv4: {} is not in this node's pod CIDR {}",
                    req.ipv4, inner.pool.cidr
                )));
            }
            match inner.pool.owner_of(req.ipv4) {
                None => return Err(bad(format!("ipv4: {} was not allocated through IPAM", req.ipv4))),
                Some(_) if inner.endpoints.values().any(|e| e.ipv4 == req.ipv4) => {
                    return Err(ApiError::Conflict(format!(
                        "ipv4: {} is already used by another endpoint",
                        req.ipv4
                    )))
                }
                _ => {}
            }
            let used: Vec<u16> = inner.endpoints.keys().copied().chain(inner.reserved_ids.iter().copied()).collect();
            let id = next_endpoint_id(used.iter()).ok_or_else(|| ApiError::Conflict("no free endpoint id".into()))?;
            let identity = self.take_reserved(&mut inner, &labels, reserved).await?;
            inner.reserved_ids.insert(id);
            inner.creating.insert(req.container_id.clone());
            let ep = Endpoint {
                id,
                container_id: req.container_id.clone(),
                container_interface_name: req.container_interface_name.clone(),
                pod_name: req.pod_name.clone(),
                namespace: req.namespace.clone(),
                ipv4: req.ipv4,
                mac: seta_core::endpoint::format_mac(&mac),
                host_mac: seta_core::endpoint::format_mac(&host_mac),
                interface_name: req.interface_name.clone(),
                interface_index: req.interface_index,
                netns_path: req.netns_path.clone(),
                pod_labels: req.labels.clone(),
                labels: labels.clone(),
                identity,
                state: EndpointState::Regenerating,
                named_ports,
                ingress_enforced: false,
                egress_enforced: false,
                policy_revision: 0,
                policy_entries: 0,
                status_message: String::new(),
            };
            // its policy, computed before the program exists: enforced from the first packet
            let rules = inner.policy.rules();
            let mut universe = inner.universe();
            universe.retain(|u| u.id != identity);
            universe.push(IdentityInfo {
                id: identity,
                labels: labels.clone(),
                kind: IdKind::Endpoint,
            });
            let p = inner.endpoint_policy(&rules, &ep, self.cfg.allow_host_ingress);
            let entries = policy_entries(&resolve::compute(&p, &universe));
            Ok(Ok((ep, entries, p.ingress_enforced, p.egress_enforced, inner.policy.revision)))
        };
        let phase1: Result<_, ApiError> = phase1.await;
        if let (Err(_), Some(id)) = (&phase1, reserved) {
            // refused after the kvstore gave this node a reference: give it back
            let mut inner = self.inner.lock().await;
            if inner.identities.get(id).is_none() {
                inner.kv_releases.push(id);
                self.releases_due.notify_one();
            }
        }
        drop(ids_guard);
        // (Err: the same attachment again, already ready: idempotent)
        let (mut ep, entries, ing, egr, revision) = match phase1? {
            Ok(p) => p,
            Err(existing) => return Ok(existing),
        };
        ep.ingress_enforced = ing;
        ep.egress_enforced = egr;
        ep.policy_revision = revision;
        ep.policy_entries = entries.len();

        // Phase 2 (unlocked): load the program, fill its policy map, attach.
        let t_attach = Instant::now();
        let attached = match prog_config(&ep) {
            Ok(cfg) => Some(self.kernel.attach_endpoint(cfg, Some(entries)).await),
            Err(e) => {
                // nothing was created in the kernel: give back what phase 1 took
                let mut inner = self.inner.lock().await;
                inner.reserved_ids.remove(&ep.id);
                inner.creating.remove(&ep.container_id);
                self.release_identity(&mut inner, &ep.labels).await;
                return Err(bad(e));
            }
        };
        let attach_ms = t_attach.elapsed().as_secs_f64() * 1e3;

        // Phase 3 (locked): maps, state, or roll back what this request did.
        let t_lock3 = Instant::now();
        let mut inner = self.inner.lock().await;
        let lock3_ms = t_lock3.elapsed().as_secs_f64() * 1e3;
        inner.reserved_ids.remove(&ep.id);
        inner.creating.remove(&ep.container_id);
        let result = match attached.expect("set above") {
            Ok(()) => (|| -> Result<(), ApiError> {
                publish(&mut inner, &ep)?;
                ep.state = EndpointState::Ready;
                self.store.save_endpoint(&ep)?;
                Ok(())
            })(),
            Err(e) => Err(ApiError::Internal(format!("attaching programs to {}: {e}", ep.interface_name))),
        };
        if let Err(e) = result {
            let _ = self.kernel.detach_endpoint(&ep.interface_name);
            let _ = self.kernel.remove_endpoint_policy(ep.id);
            let _ = self.kernel.endpoint_remove(ep.ipv4);
            inner.ipcache_local(ep.ipv4, None);
            self.release_identity(&mut inner, &ep.labels).await;
            let _ = self.store.remove_endpoint(ep.id);
            return Err(e);
        }
        self.share_endpoint_ip(&mut inner, ep.ipv4, Some(&ep)).await;
        // (also when the kvstore watch already reported it: adding is idempotent)
        let new_identity = !inner.endpoints.values().any(|e| e.identity == ep.identity);
        let new_ports = !ep.named_ports.is_empty();
        inner.endpoints.insert(ep.id, ep.clone());
        let ipblock_changed = self.sync_ipblock(&mut inner)?;
        if new_ports || ipblock_changed {
            // named ports and per-IP identities change other rules' keys: full
            self.regenerate_all(&mut inner);
        } else {
            let me = inner.universe().into_iter().find(|u| u.id == ep.identity);
            let added: Vec<IdentityInfo> = if new_identity { me.into_iter().collect() } else { vec![] };
            // the new endpoint's own state is cached; peers learn its identity
            let p = inner.endpoint_policy(&inner.policy.rules(), &ep, self.cfg.allow_host_ingress);
            let state = resolve::compute(&p, &inner.universe());
            inner.resolved.insert(ep.id, (p, state));
            if !added.is_empty() {
                self.identities_changed(&mut inner, &added, &[], Some(ep.id));
            }
        }
        self.save_pool_and_ids(&inner)?;
        let total_ms = t0.elapsed().as_secs_f64() * 1e3;
        tracing::info!(id = ep.id, ip = %ep.ipv4, identity = ep.identity, dev = %ep.interface_name, attach_ms, lock3_ms, total_ms, "endpoint ready");
        Ok(inner.endpoints[&ep.id].clone())
    }

    /// Remove an endpoint: programs, map entries, identity reference, IP.
    pub async fn delete_endpoint(&self, r: &EndpointRef) -> Result<Endpoint, ApiError> {
        let mut inner = self.inner.lock().await;
        let id = inner.find(r)?;
        let mut ep = inner.endpoints.remove(&id).expect("present");
        ep.state = EndpointState::Disconnecting;
        self.kernel
            .detach_endpoint(&ep.interface_name)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        self.kernel.endpoint_remove(ep.ipv4)?;
        inner.ipcache_local(ep.ipv4, None);
        self.share_endpoint_ip(&mut inner, ep.ipv4, None).await;
        // keep the emptied map registered: the next endpoint with this id finds it ready
        self.kernel.recycle_policy_map(ep.id)?;
        match self.kernel.ct_flush_ip(ep.ipv4) {
            Ok(n) if n > 0 => tracing::debug!(ip = %ep.ipv4, flushed = n, "conntrack entries of the deleted endpoint"),
            Ok(_) => {}
            Err(e) => tracing::warn!(ip = %ep.ipv4, %e, "could not flush conntrack entries of the deleted endpoint"),
        }
        self.release_identity(&mut inner, &ep.labels).await;
        let _ = inner.pool.release(ep.ipv4);
        // others' policies lose entries for a freed identity / ports / pod IP
        inner.resolved.remove(&ep.id);
        let ipblock_changed = self.sync_ipblock(&mut inner)?;
        if !ep.named_ports.is_empty() || ipblock_changed {
            self.regenerate_all(&mut inner);
        } else if inner.identities.get(ep.identity).is_none() && !inner.cluster.remote_ids.contains_key(&ep.identity) {
            self.identities_changed(&mut inner, &[], &[ep.identity], None);
        }
        self.store.remove_endpoint(ep.id)?;
        self.save_pool_and_ids(&inner)?;
        ep.state = EndpointState::Disconnected;
        tracing::info!(id = ep.id, ip = %ep.ipv4, "endpoint deleted");
        Ok(ep)
    }

    /// Programs per device in this node's namespace: TCX links and cls_bpf
    /// filters.
    pub async fn attachments(&self) -> Result<Vec<Attachment>, ApiError> {
        self.kernel.attachments().await.map_err(|e| ApiError::Internal(format!("{e:#}")))
    }
}

impl From<seta_datapath::DatapathError> for ApiError {
    fn from(e: seta_datapath::DatapathError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// Outcome of a retry pass.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// nothing had failed
    Idle,
    /// everything that had failed converged (this many endpoints)
    Converged(usize),
    /// something is still failing
    Pending,
}

/// What node bring-up learnt about the underlay.
pub(crate) struct NodeFacts {
    /// this node's address for other nodes
    pub ip: Option<Ipv4Addr>,
    pub mtu: u32,
    /// the device holding the node IP
    pub dev: Option<String>,
}

/// This node's address for other nodes and the underlay MTU: from the
/// configuration, else the first address outside the pod network and its
/// device's MTU.
async fn underlay(nl: &Netlink, cfg: &Config) -> Result<NodeFacts> {
    let links = nl.links().await?;
    let ours = |name: &str| name == "lo" || name.starts_with("lxc") || name.starts_with("seta_");
    let addrs = nl.ipv4_addrs().await?;
    let found = addrs
        .iter()
        .filter(|(i, ip)| {
            links.iter().any(|l| l.index == *i && !ours(&l.name)) && !cfg.pod_cidr.contains(ip) && cfg.node_ip.is_none_or(|n| n == *ip)
        })
        .min_by_key(|(_, ip)| *ip)
        .copied();
    if let (Some(want), None) = (cfg.node_ip, found) {
        anyhow::bail!("--node-ip {want}: no interface of this node has that address");
    }
    let mtu = match (cfg.mtu, found) {
        (Some(m), _) => m,
        (None, Some((idx, _))) => nl.mtu(idx).await?.unwrap_or(1500),
        (None, None) => 1500,
    };
    let dev = found.and_then(|(idx, _)| links.iter().find(|l| l.index == idx).map(|l| l.name.clone()));
    Ok(NodeFacts {
        ip: found.map(|(_, ip)| ip),
        mtu,
        dev,
    })
}

async fn setup_host_devices(nl: &Netlink, cfg: &Config, router: Ipv4Addr) -> Result<()> {
    if nl.link(HOST_DEV).await?.is_none() {
        nl.create_veth(HOST_DEV, NET_DEV).await?;
    }
    let host = nl.link(HOST_DEV).await?.context("seta_host missing after creation")?;
    let net = nl.link(NET_DEV).await?.context("seta_net missing after creation")?;
    nl.set_arp(host.index, false).await?;
    nl.set_up(host.index).await?;
    nl.set_up(net.index).await?;
    nl.add_addr(host.index, router, 32).await?;
    nl.replace_route(cfg.pod_cidr.network(), cfg.pod_cidr.prefix_len(), None, host.index, Some(router))
        .await?;
    use seta_datapath::sysfs::set_ipv4_sysctl;
    set_ipv4_sysctl("ip_forward", "1")?;
    for dev in ["all", "default", HOST_DEV, NET_DEV] {
        set_ipv4_sysctl(&format!("conf/{dev}/rp_filter"), "0")?;
    }
    Ok(())
}

/// `seta-agent cleanup`: remove everything of this node (pins, devices, state, socket, CNI conf).
pub async fn cleanup(cfg: &Config) -> Result<Vec<String>> {
    let mut done = Vec::new();
    Datapath::new(&cfg.pin_dir)?.remove_all()?;
    done.push(format!("removed pins {}", cfg.pin_dir.display()));
    if let Ok(nl) = Netlink::current() {
        for (net, plen) in nl.routes_with_protocol(cluster::ROUTE_PROTO).await.unwrap_or_default() {
            if nl.del_route(net, plen).await.is_ok() {
                done.push(format!("deleted route {net}/{plen}"));
            }
        }
        for l in nl.links().await.unwrap_or_default() {
            if (l.name == HOST_DEV || l.name == VXLAN_DEV || l.name.starts_with("lxc")) && nl.del_link(l.index).await.is_ok() {
                done.push(format!("deleted device {}", l.name));
            }
        }
    }
    for (what, p) in [
        ("state dir", cfg.state_dir.clone()),
        ("socket", cfg.socket.clone()),
        ("CNI config", cfg.cni_conf_path()),
    ] {
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if r.is_ok() {
            done.push(format!("removed {what} {}", p.display()));
        }
    }
    let _ = std::fs::remove_dir_all(cfg.delete_queue_dir());
    Ok(done)
}

pub use seta_core::api::{IdentityEntry, PolicyListing, TraceRequest, TraceSpec};

/// Spare policy maps kept registered for the next free endpoint ids.
const SPARE_POLICY_MAPS: usize = 64;

impl Agent {
    /// Pre-register policy maps for the next free endpoint ids (each
    /// registration waits for an RCU grace period; do it off the ADD path).
    pub async fn refill_spare_policy_maps(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        // single flight: a burst of creations asks once more, not once each
        if self.refilling.swap(true, SeqCst) {
            self.refill_again.store(true, SeqCst);
            return;
        }
        loop {
            self.refill_again.store(false, SeqCst);
            self.refill_once().await;
            if !self.refill_again.load(SeqCst) {
                break;
            }
        }
        self.refilling.store(false, SeqCst);
    }

    async fn refill_once(&self) {
        let want: Vec<u16> = {
            let inner = self.inner.lock().await;
            let used: std::collections::BTreeSet<u16> = inner.endpoints.keys().chain(inner.reserved_ids.iter()).copied().collect();
            (1..=u16::MAX).filter(|i| !used.contains(i)).take(SPARE_POLICY_MAPS).collect()
        };
        self.kernel.prepare_policy_maps(want).await;
    }

    /// Background work, each loop supervised: drain datapath events,
    /// garbage-collect conntrack, keep the node announced, follow the
    /// cluster, retry failed reconciliations.
    pub fn spawn_background(self: Arc<Self>) {
        let sup = self.supervisor.clone();
        let (pin, log) = (self.pin_dir.clone(), self.events.clone());
        sup.spawn("events-reader", move || events_reader(pin.clone(), log.clone()));
        let me = self.clone();
        tokio::spawn(async move {
            me.refill_spare_policy_maps().await;
        });
        let me = self.clone();
        sup.spawn("kvstore-announce", move || {
            let me = me.clone();
            async move {
                me.announce_loop().await;
                Ok(())
            }
        });
        self.spawn_cluster_sync();
        let k = self.kernel.clone();
        sup.spawn("conntrack-gc", move || {
            let k = k.clone();
            async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
                loop {
                    tick.tick().await;
                    let k = k.clone();
                    let n = tokio::task::spawn_blocking(move || k.ct_gc()).await??;
                    if n > 0 {
                        tracing::debug!(removed = n, "conntrack GC");
                    }
                }
            }
        });
        let me = self.clone();
        sup.spawn("reconcile-retry", move || me.clone().retry_loop());
        let me = self.clone();
        sup.spawn("identity-release", move || {
            let me = me.clone();
            async move {
                loop {
                    me.releases_due.notified().await;
                    me.flush_identity_releases().await;
                }
            }
        });
    }

    /// Retry what did not converge: endpoints whose regeneration failed (a
    /// full policy map recovers once entries go away) and failed ipcache
    /// writes; backoff doubles while retries keep failing.
    async fn retry_loop(self: Arc<Self>) -> anyhow::Result<()> {
        const MIN: std::time::Duration = std::time::Duration::from_millis(500);
        const MAX: std::time::Duration = std::time::Duration::from_secs(30);
        let mut wait = MIN;
        loop {
            tokio::time::sleep(wait).await;
            wait = match self.retry_once().await {
                Retry::Idle => MIN,
                Retry::Converged(n) => {
                    tracing::info!(endpoints = n, "failed reconciliations converged");
                    MIN
                }
                Retry::Pending => (wait * 2).min(MAX),
            };
        }
    }

    /// One pass of the retry loop: regenerate not-ready endpoints and rewrite
    /// failed ipcache entries.
    pub(crate) async fn retry_once(&self) -> Retry {
        let mut inner = self.inner.lock().await;
        let failed: Vec<u16> = inner
            .endpoints
            .values()
            .filter(|e| e.state == EndpointState::NotReady)
            .map(|e| e.id)
            .collect();
        let ipc_failed = !inner.ipc_state.failed.is_empty();
        if failed.is_empty() && !ipc_failed {
            return Retry::Idle;
        }
        if !failed.is_empty() {
            self.regen_retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.regenerate(&mut inner, &failed);
        }
        let ipc_left = if ipc_failed { inner.reconcile_ipcache(true) } else { 0 };
        let still = inner.endpoints.values().any(|e| e.state == EndpointState::NotReady);
        if still || ipc_left > 0 {
            Retry::Pending
        } else {
            Retry::Converged(failed.len())
        }
    }

    /// This node as the registry shows it: underlay addresses, pod CIDR, boot id.
    pub async fn node_info(&self) -> seta_kvstore::nodes::NodeInfo {
        let links = self.kernel.links().await.unwrap_or_default();
        let skip: std::collections::BTreeSet<u32> = links
            .iter()
            .filter(|l| l.name == "lo" || l.name.starts_with("lxc") || l.name.starts_with("seta_"))
            .map(|l| l.index)
            .collect();
        let mut ips: Vec<Ipv4Addr> = self
            .kernel
            .ipv4_addrs()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|(i, _)| !skip.contains(i))
            .map(|(_, ip)| ip)
            .collect();
        ips.sort();
        seta_kvstore::nodes::NodeInfo {
            name: self.cfg.node.clone(),
            ips,
            pod_cidr: self.cfg.pod_cidr.to_string(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .unwrap_or_default()
                .trim()
                .to_string(),
            internal_ip: self.node_ip,
            routing_mode: self.cfg.routing_mode.to_string(),
            health_address: self.node_ip.map(|ip| format!("{ip}:{}", cluster::HEALTH_PORT)),
        }
    }

    pub async fn nodes(&self) -> Result<Vec<seta_kvstore::nodes::NodeInfo>, ApiError> {
        self.kv
            .nodes(&self.cfg.kvstore_prefix)
            .await
            .map_err(|e| ApiError::Internal(format!("kvstore: {e}")))
    }

    pub async fn kvstore_list(&self, prefix: &str, exact: bool) -> Result<Vec<(String, String)>, ApiError> {
        self.kv
            .list(prefix, exact)
            .await
            .map_err(|e| ApiError::Internal(format!("kvstore: {e}")))
    }

    pub fn policy_map_full_count(&self) -> u64 {
        self.policy_map_full.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn revision(&self) -> u64 {
        self.inner.lock().await.policy.revision
    }

    /// Parse and validate without changing anything. Parsing runs on a
    /// blocking thread (never on the runtime threads that serve status and
    /// endpoint calls, never under a lock) and stops when the request is
    /// dropped (its client went away).
    pub async fn policy_validate(&self, text: &str) -> Result<Vec<PolicyDoc>, ApiError> {
        struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let text = text.to_string();
        tokio::task::spawn_blocking(move || parse::parse_file_cancellable(&text, Some(&cancel)))
            .await
            .map_err(|e| ApiError::Internal(format!("policy parser: {e}")))?
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    /// Create or replace each document by (kind, namespace, name), all or
    /// nothing; bump the revision; push the new state into every endpoint.
    pub async fn policy_import(&self, text: &str) -> Result<(u64, Vec<String>), ApiError> {
        let docs = self.policy_validate(text).await?;
        if docs.is_empty() {
            return Err(ApiError::BadRequest("no policy documents in the input".into()));
        }
        let names: Vec<String> = docs.iter().map(|d| d.origin.to_string()).collect();
        // a cluster's policies live in the kvstore: written there first, all
        // or nothing, without the agent's lock (policy changes are ordered
        // by their own)
        let _order = self.policy_io.lock().await;
        let written = self.write_policies(&docs, &[]).await?;
        let mut inner = self.inner.lock().await;
        cluster::record_policy_writes(&mut inner, written);
        for d in docs {
            match inner.policy.docs.iter_mut().find(|x| x.origin == d.origin) {
                Some(x) => *x = d,
                None => inner.policy.docs.push(d),
            }
        }
        inner.policy.docs.sort_by(|a, b| a.origin.cmp(&b.origin));
        self.policy_changed(&mut inner)?;
        Ok((inner.policy.revision, names))
    }

    fn policy_changed(&self, inner: &mut Inner) -> Result<(), ApiError> {
        inner.policy.revision += 1;
        inner.sync_cidr_identities();
        self.sync_cidr_ipcache(inner)?;
        self.sync_ipblock(inner)?;
        self.save_pool_and_ids(inner)?;
        self.regenerate_all(inner);
        tracing::info!(
            revision = inner.policy.revision,
            policies = inner.policy.docs.len(),
            "policy changed"
        );
        Ok(())
    }

    /// Recompute every endpoint's policy from scratch and compare it with the
    /// kernel's map: the incremental updates must have produced the same.
    pub async fn policy_verify(&self) -> Result<Vec<String>, ApiError> {
        let inner = self.inner.lock().await;
        let rules = inner.policy.rules();
        let universe = inner.universe();
        let mut problems = Vec::new();
        for ep in inner.endpoints.values() {
            let p = inner.endpoint_policy(&rules, ep, self.cfg.allow_host_ingress);
            let want = policy_entries(&resolve::compute(&p, &universe));
            let have = self.kernel.policy_list(ep.id)?;
            if want != have {
                let missing = want.keys().filter(|k| !have.contains_key(*k)).count();
                let extra = have.keys().filter(|k| !want.contains_key(*k)).count();
                let differ = want.iter().filter(|(k, v)| have.get(*k).is_some_and(|h| h != *v)).count();
                problems.push(format!(
                    "endpoint {}: {missing} missing, {extra} extra, {differ} different entries",
                    ep.id
                ));
            }
        }
        Ok(problems)
    }

    pub async fn policy_list(&self) -> PolicyListing {
        let inner = self.inner.lock().await;
        PolicyListing {
            revision: inner.policy.revision,
            policies: inner.policy.docs.clone(),
        }
    }

    /// Delete by name (any kind; CNP/KNP need the namespace) or everything.
    pub async fn policy_delete(
        &self,
        name: Option<&str>,
        namespace: Option<&str>,
        kind: Option<&str>,
        all: bool,
    ) -> Result<(u64, Vec<String>), ApiError> {
        let _order = self.policy_io.lock().await;
        let gone: Vec<PolicyDoc> = {
            let inner = self.inner.lock().await;
            if all {
                inner.policy.docs.clone()
            } else {
                let name = name.ok_or_else(|| ApiError::BadRequest("give a policy name or --all".into()))?;
                let hit = |d: &PolicyDoc| {
                    d.origin.name == name
                        && kind.is_none_or(|k| {
                            d.origin.kind.short() == k.to_ascii_lowercase() || format!("{:?}", d.origin.kind).eq_ignore_ascii_case(k)
                        })
                        && match (&d.origin.namespace, namespace) {
                            (None, _) => true,
                            (Some(ns), Some(want)) => ns == want,
                            (Some(ns), None) => ns == "default",
                        }
                };
                let gone: Vec<PolicyDoc> = inner.policy.docs.iter().filter(|d| hit(d)).cloned().collect();
                if gone.is_empty() {
                    return Err(ApiError::NotFound(format!(
                        "no policy named {name:?} in namespace {}",
                        namespace.unwrap_or("default")
                    )));
                }
                gone
            }
        };
        // the kvstore first, without the agent's lock; nothing changes if it fails
        let written = self.write_policies(&[], &gone).await?;
        let mut inner = self.inner.lock().await;
        cluster::record_policy_writes(&mut inner, written);
        let before: Vec<String> = inner.policy.docs.iter().map(|d| d.origin.to_string()).collect();
        inner.policy.docs.retain(|d| !gone.iter().any(|g| g.origin == d.origin));
        let after: std::collections::BTreeSet<String> = inner.policy.docs.iter().map(|d| d.origin.to_string()).collect();
        let removed: Vec<String> = before.into_iter().filter(|d| !after.contains(d)).collect();
        if !removed.is_empty() {
            self.policy_changed(&mut inner)?;
        }
        Ok((inner.policy.revision, removed))
    }

    /// Wait until every endpoint enforces at least `rev` (None: the current revision).
    pub async fn policy_wait(&self, rev: Option<u64>, timeout: std::time::Duration) -> Result<u64, ApiError> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let inner = self.inner.lock().await;
                let want = rev.unwrap_or(inner.policy.revision);
                if want > inner.policy.revision {
                    return Err(ApiError::BadRequest(format!(
                        "revision {want} does not exist yet (current {})",
                        inner.policy.revision
                    )));
                }
                let lagging: Vec<String> = inner
                    .endpoints
                    .values()
                    .filter(|e| e.policy_revision < want)
                    .map(|e| format!("{} ({}: {})", e.id, e.state, e.status_message))
                    .collect();
                if lagging.is_empty() {
                    return Ok(want);
                }
                if Instant::now() > deadline {
                    return Err(ApiError::Conflict(format!(
                        "endpoints not at revision {want} yet: {}",
                        lagging.join(", ")
                    )));
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    pub async fn identities(&self) -> Vec<IdentityEntry> {
        let inner = self.inner.lock().await;
        let mut out: Vec<IdentityEntry> = inner
            .universe()
            .into_iter()
            .map(|i| IdentityEntry {
                id: i.id,
                labels: i.labels.iter().map(|l| l.to_string()).collect(),
                refcount: inner.identities.get(i.id).map(|a| a.refcount),
            })
            .collect();
        out.sort_by_key(|e| e.id);
        out
    }

    /// Replace an endpoint's pod labels; a new identity follows, and every
    /// policy map that depends on it.
    pub async fn set_labels(&self, r: &EndpointRef, labels: Vec<String>) -> Result<Endpoint, ApiError> {
        let mut inner = self.inner.lock().await;
        let id = inner.find(r)?;
        let ns = inner.endpoints[&id].namespace.clone();
        let new_labels = self.identity_labels(&mut inner, &labels, &ns)?;
        inner.endpoints.get_mut(&id).unwrap().pod_labels = labels;
        self.relabel(&mut inner, id, new_labels).await?;
        self.regenerate_all(&mut inner);
        self.save_pool_and_ids(&inner)?;
        Ok(inner.endpoints[&id].clone())
    }

    async fn relabel(&self, inner: &mut Inner, id: u16, new_labels: LabelSet) -> Result<(), ApiError> {
        let old = inner.endpoints[&id].clone();
        if old.labels == new_labels {
            return Ok(());
        }
        let identity = self.acquire_identity(inner, &new_labels).await?;
        let mut ep = old.clone();
        ep.labels = new_labels;
        ep.identity = identity;
        if identity != old.identity {
            // the new identity's policy first, then the endpoint entry the program reads
            let rules = inner.policy.rules();
            let mut universe = inner.universe();
            universe.retain(|u| u.id != identity);
            universe.push(IdentityInfo {
                id: identity,
                labels: ep.labels.clone(),
                kind: IdKind::Endpoint,
            });
            let p = inner.endpoint_policy(&rules, &ep, self.cfg.allow_host_ingress);
            let entries = policy_entries(&resolve::compute(&p, &universe));
            let cfg = prog_config(&ep).map_err(ApiError::BadRequest)?;
            self.kernel.attach_endpoint(cfg, Some(entries)).await?;
            publish(inner, &ep)?;
            self.share_endpoint_ip(inner, ep.ipv4, Some(&ep)).await;
        }
        self.release_identity(inner, &old.labels).await;
        tracing::info!(id, old = old.identity, new = identity, "endpoint relabelled");
        inner.endpoints.insert(id, ep);
        Ok(())
    }

    pub async fn namespaces(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.inner.lock().await.policy.namespaces.clone()
    }

    /// Create or replace a namespace's labels; its endpoints follow.
    pub async fn set_namespace(&self, ns: &str, mut labels: BTreeMap<String, String>) -> Result<(), ApiError> {
        if !ns.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') || ns.is_empty() || ns.len() > 63 {
            return Err(ApiError::BadRequest(format!("{ns:?} is not a valid namespace name")));
        }
        for (k, v) in &labels {
            seta_core::labels::validate_key(k)
                .and_then(|_| seta_core::labels::validate_value(v))
                .map_err(|e| ApiError::BadRequest(format!("labels.{}: {e}", seta_core::labels::quote(k))))?;
        }
        labels.insert("kubernetes.io/metadata.name".into(), ns.into());
        let mut inner = self.inner.lock().await;
        inner.policy.namespaces.insert(ns.to_string(), labels);
        let ids: Vec<u16> = inner.endpoints.values().filter(|e| e.namespace == ns).map(|e| e.id).collect();
        for id in ids {
            let pod_labels = inner.endpoints[&id].pod_labels.clone();
            let l = self.identity_labels(&mut inner, &pod_labels, ns)?;
            self.relabel(&mut inner, id, l).await?;
        }
        self.regenerate_all(&mut inner);
        self.save_pool_and_ids(&inner)?;
        Ok(())
    }

    fn trace_side(&self, inner: &mut Inner, rules: &[Rule], s: &TraceSpec, what: &str) -> Result<trace::Side, ApiError> {
        let n = [s.endpoint.is_some(), s.labels.is_some(), s.ip.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if n != 1 {
            return Err(ApiError::BadRequest(format!("{what}: give exactly one of endpoint, labels or ip")));
        }
        let ep_side = |inner: &Inner, ep: &Endpoint| trace::Side {
            description: format!("endpoint {} ({}/{} {})", ep.id, ep.namespace, ep.pod_name, ep.ipv4),
            identity: IdentityInfo {
                id: ep.identity,
                labels: ep.labels.clone(),
                kind: IdKind::Endpoint,
            },
            ip_identity: inner.ipblock_ids.get(&ep.ipv4).map(|id| IdentityInfo {
                id: *id,
                labels: LabelSet::new(),
                kind: IdKind::PodIp(ep.ipv4),
            }),
            policy: Some(inner.endpoint_policy(rules, ep, self.cfg.allow_host_ingress)),
        };
        if let Some(e) = &s.endpoint {
            let r = EndpointRef::parse(e).map_err(|m| ApiError::BadRequest(format!("{what}.endpoint: {m}")))?;
            let ep = inner.endpoints[&inner.find(&r).map_err(|e| ApiError::NotFound(format!("{what}: {e}")))?].clone();
            return Ok(ep_side(inner, &ep));
        }
        // a pod on another node: its identity and labels from the cluster, its
        // policy computed from the same rules
        let remote_pod = s.ip.and_then(|ip| {
            let (src, e) = inner.ipc_state.merged.winner(ipcache::host32(ip))?;
            let labels = inner.cluster.remote_ids.get(&e.identity)?.clone();
            (src == seta_core::ipcache::Source::Cluster).then_some((ip, e.identity, labels))
        });
        if s.labels.is_some() || remote_pod.is_some() {
            let (ns, l, id, ip, pod_labels) = match (&s.labels, remote_pod) {
                (Some(labels), _) => {
                    let ns = s.namespace.clone().unwrap_or_else(|| "default".into());
                    let l = self.identity_labels(inner, labels, &ns)?;
                    let id = inner
                        .identities
                        .list()
                        .find(|a| a.labels == l)
                        .map(|a| a.id)
                        .unwrap_or(u32::MAX >> 8);
                    (ns, l, id, Ipv4Addr::UNSPECIFIED, labels.clone())
                }
                (None, Some((ip, id, l))) => {
                    let ns = l
                        .iter()
                        .find(|x| x.key == "io.kubernetes.pod.namespace")
                        .map(|x| x.value.clone())
                        .unwrap_or_default();
                    (ns, l, id, ip, vec![])
                }
                _ => unreachable!(),
            };
            let labels = &pod_labels;
            let fake = Endpoint {
                id: 0,
                container_id: String::new(),
                container_interface_name: String::new(),
                pod_name: String::new(),
                namespace: ns.clone(),
                ipv4: ip,
                mac: String::new(),
                host_mac: String::new(),
                interface_name: String::new(),
                interface_index: 0,
                netns_path: String::new(),
                pod_labels: labels.clone(),
                labels: l.clone(),
                identity: id,
                state: EndpointState::Ready,
                named_ports: BTreeMap::new(),
                ingress_enforced: false,
                egress_enforced: false,
                policy_revision: 0,
                policy_entries: 0,
                status_message: String::new(),
            };
            let mut side = ep_side(inner, &fake);
            side.description = if ip.is_unspecified() {
                format!("pod with labels [{}] in {ns} (identity {id})", labels.join(", "))
            } else {
                format!("pod {ip} on another node (identity {id})")
            };
            return Ok(side);
        }
        let ip = s.ip.unwrap();
        if let Some(ep) = inner.endpoints.values().find(|e| e.ipv4 == ip).cloned() {
            return Ok(ep_side(inner, &ep));
        }
        if ip == inner.pool.router() {
            return Ok(trace::Side {
                description: format!("host {ip}"),
                identity: inner.universe().into_iter().find(|u| u.id == ID_HOST).unwrap(),
                ip_identity: None,
                policy: None,
            });
        }
        // longest CIDR identity, else world
        let cidr = inner
            .policy
            .cidr_ids
            .iter()
            .filter(|(n, _)| n.contains(&ip))
            .max_by_key(|(n, _)| n.prefix_len())
            .map(|(n, id)| (*n, *id));
        let identity = match cidr {
            Some((n, id)) => IdentityInfo {
                id,
                labels: [Label::new("cidr", &n.to_string(), "")].into_iter().collect(),
                kind: IdKind::Cidr(n),
            },
            None => inner
                .universe()
                .into_iter()
                .find(|u| u.id == seta_core::identity::ID_WORLD)
                .unwrap(),
        };
        Ok(trace::Side {
            description: format!("{ip} (identity {})", identity.id),
            identity,
            ip_identity: None,
            policy: None,
        })
    }

    pub async fn trace(&self, req: &TraceRequest) -> Result<trace::TraceResult, ApiError> {
        let proto = match req.protocol.to_ascii_uppercase().as_str() {
            "TCP" => 6,
            "UDP" => 17,
            "SCTP" => 132,
            "ICMP" => 1,
            "ANY" | "" => 0,
            p => return Err(ApiError::BadRequest(format!("protocol: {p:?} is not TCP, UDP, SCTP, ICMP or ANY"))),
        };
        let mut inner = self.inner.lock().await;
        let rules = inner.policy.rules();
        let src = self.trace_side(&mut inner, &rules, &req.from, "from")?;
        let dst = self.trace_side(&mut inner, &rules, &req.to, "to")?;
        Ok(trace::trace(&rules, &src, &dst, proto, req.port))
    }
}

/// Drain the `seta_events` ring buffer into the event log, woken by the
/// kernel (epoll on the ring buffer) when records arrive.
async fn events_reader(pin: std::path::PathBuf, log: crate::events::EventLog) -> anyhow::Result<()> {
    let reader = seta_datapath::maps::EventReader::open(&pin)?;
    // SAFETY: the reader owns the ring buffer's fd; it stays open and the same
    // for as long as the AsyncFd (which owns the reader) exists.
    let mut fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(reader, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("register the events ring buffer with epoll: {e}"))?;
    loop {
        let mut guard = fd.readable_mut().await?;
        for ev in guard.get_inner_mut().drain() {
            log.push(&ev);
        }
        guard.clear_ready();
    }
}
