//! The endpoint manager: desired state (IPAM, identities, endpoints) kept in
//! memory and on disk, and converged into the kernel through seta-datapath.
use crate::cluster::ClusterState;
use crate::config::Config;
use crate::endpoints::{Endpoints, Refusal};
use crate::identities::Identities;
use crate::ipcache::IpcacheSubsystem;
use crate::kernel::Kernel;
use crate::state::Store;
use anyhow::{Context, Result};
use seta_abi::{EndpointInfo, ENDPOINT_F_HOST};
use seta_core::api::{AgentConfig, Attachment, IpamAddress, IpamResponse, IpamStatus, Status};
use seta_core::endpoint::{parse_mac, Endpoint, EndpointChangeRequest, EndpointRef, EndpointState};
use seta_core::identity::ID_HOST;
use seta_core::ipam::Pool;
use seta_core::labelfilter::LabelFilter;
use seta_core::labels::{Label, LabelSet};
use seta_core::names::{HOST_DEV, NET_DEV};
use seta_core::policy::resolve::{self, IdKind, IdentityInfo};
use seta_core::policy::{parse, trace, PolicyDoc, Rule};
use seta_datapath::netlink::{LinkInfo, Netlink};
use seta_datapath::{Datapath, EndpointProgConfig};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;

mod background;
mod owned;
pub(crate) use owned::{off_runtime, Owned};
mod cluster;
mod cluster_ids;
mod health;
mod node;
mod observe;
mod outbox;
mod policy_trace;
mod services;
use node::{mount_cgroup2_if_none, setup_host_devices, underlay};
mod endpoints;
mod identities;
mod k8s;
mod k8s_services;
mod policy;
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

pub struct Agent {
    pub cfg: Config,
    /// every kernel side effect goes through this (a fake in unit tests)
    kernel: Arc<dyn Kernel>,
    /// the node's versioned pin directory (the events reader opens its ring buffer there)
    pin_dir: std::path::PathBuf,
    store: Store,
    /// the endpoints subsystem (IPAM pool, endpoints, creations in flight);
    /// its lock orders endpoint lifecycle and policy regeneration
    endpoints: Mutex<Endpoints>,
    /// the identities subsystem: this node's references, the cluster's identities, releases due
    identities: Owned<Identities>,
    /// the policy subsystem: repository, resolution, per-endpoint cache
    policy: Owned<Policy>,
    /// the merged desired ipcache (every source) and what is installed
    ipcache: Owned<IpcacheSubsystem>,
    /// other nodes, their pods and the cluster's policies (from the kvstore)
    cluster: Owned<ClusterState>,
    /// the Kubernetes API, when intent comes from it
    k8s: Option<Arc<crate::k8s::K8s>>,
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
    /// the services subsystem: its own lock, never the endpoint lock
    services: std::sync::Mutex<crate::services::Repository>,
    /// orders service changes and their writes to the state dir
    services_io: Mutex<()>,
    /// socket-LB's namespaces (the node's and its pods'), when it is on
    sock_ns: Owned<crate::services::SockNamespaces>,
    /// the digest of the services the maps were last written for (0: never)
    svc_synced: std::sync::atomic::AtomicU64,
    /// how the last write of the service maps went (kube-proxy's healthz)
    svc_sync: std::sync::Mutex<SyncOutcome>,
    /// what is measured as the agent works (rendered with a snapshot per scrape)
    pub metrics: crate::metrics::Metrics,
    /// the Hubble observer: datapath events as flows
    pub observer: Arc<crate::observer::Observer>,
    /// the observer's decoding context and when it was taken
    flow_ctx: std::sync::Mutex<Option<(Instant, Arc<seta_hubble::decode::Context>)>>,
    /// the services' frontends by address for flows (None: to be made
    /// again, after the service maps were synced)
    flow_services: std::sync::Mutex<Option<Arc<seta_hubble::decode::ServicesByAddr>>>,
    /// the health-check NodePort listeners (their answers come from services)
    health_server: crate::healthcheck::HealthServer,
    /// the cluster's services in the kvstore (shared stores)
    svc_view: std::sync::Mutex<crate::services::ClusterView>,
    svc_health: Arc<seta_kvstore::reflector::Health>,
    kv: Kv,
    /// this node's endpoint IPs queued for the kvstore (the IP publisher drains it)
    ip_outbox: outbox::IpOutbox,
    kv_health: crate::cluster::KvHealth,
    last_keepalive: std::sync::Mutex<Instant>,
    /// this node's address for other nodes
    node_ip: Option<Ipv4Addr>,
    underlay_mtu: u32,
    /// the device holding the node IP: from_netdev delivers to pods from it
    node_dev: Option<String>,
    /// the other native devices (--devices) from_netdev is attached to
    /// (followed while the agent runs: `follow_devices`)
    other_devs: std::sync::Mutex<Vec<(String, u32)>>,
    /// the addresses NodePorts are served on (`--nodeport-addresses`;
    /// followed while the agent runs)
    node_port_ips: std::sync::Mutex<Vec<Ipv4Addr>>,
    /// the destinations BPF masquerade leaves alone (native routing CIDR, ip-masq-agent)
    ipmasq: crate::ipmasq::IpMasq,
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

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::BadRequest(m) => Self::BadRequest(m),
            Refusal::NotFound(m) => Self::NotFound(m),
            Refusal::Conflict(m) => Self::Conflict(m),
        }
    }
}

pub use crate::kv::Kv;

/// The state file of the cluster's identities as last seen.
const CLUSTER_IDS: &str = "cluster-identities.json";

use crate::policy::{Policy, SCOPE_LOCAL};

impl Agent {
    /// Make an endpoint visible to the datapath: its endpoint-map entry
    /// (local delivery) and its ipcache entry (its identity for everyone's
    /// policy).
    fn publish(&self, ep: &Endpoint) -> Result<(), ApiError> {
        off_runtime(|| {
            self.kernel
                .endpoint_upsert(ep.ipv4, &host_entry(ep).map_err(ApiError::BadRequest)?)?;
            self.ipcache
                .get()
                .set_local(ep.ipv4, Some(ep.identity))
                .map_err(|err| ApiError::Internal(format!("ipcache entry for {}: {err}", ep.ipv4)))
        })
    }
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
        let dp = Datapath::with_sizes(&cfg.pin_dir, cfg.map_sizes)?;
        // a pinned map of another size than the flags ask is an error that says what to do
        dp.check_pinned_sizes()?;
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
            // socket-LB at the node's cgroup, or its links gone when it is off
            let dp3 = dp.clone();
            let (cgroup, bind_protection) = (cfg.sock_lb.clone(), cfg.bind_protection);
            tokio::task::spawn_blocking(move || match cgroup {
                Some(dir) => {
                    mount_cgroup2_if_none(&dir)?;
                    Ok(dp3.attach_cgroup(&dir, bind_protection)?)
                }
                None => Ok(dp3.detach_cgroup()?),
            })
            .await?
            .map_err(|e: anyhow::Error| e)?;
        }
        cluster::setup_routing_mode(&dp, &nl, &cfg, &node).await?;
        if cfg.serve_node_port {
            cluster::protect_node_port_range(&cfg)?;
        }
        let mut kv = Kv::open(&cfg).await?;
        let pin_dir = dp.pin_dir().to_path_buf();
        let kernel: Arc<dyn Kernel> = Arc::new(crate::kernel::Real::new(dp, nl)?);
        let k8s = match &cfg.k8s {
            Some(src) => {
                let client = crate::k8s::connect(src).await?;
                if cfg.identity_allocation_mode == crate::config::IdentityAllocationMode::Crd {
                    kv = kv.with_crd(crate::k8s::crd::Crd::new(client.clone(), &cfg.node, &cfg.kvstore_prefix, node.ip));
                }
                Some(Arc::new(
                    crate::k8s::K8s::new(client, src.clone(), &k8s::watches()).with_node_port_range(cfg.node_port_range),
                ))
            }
            None => None,
        };
        let node = NodeFacts { k8s, ..node };
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
        let ipmasq = crate::ipmasq::IpMasq::new(
            kernel.clone(),
            cfg.enable_bpf_masquerade,
            cfg.ip_masq_agent.clone(),
            cfg.native_routing_cidr,
        );
        ipmasq.start()?;
        kernel.endpoint_upsert(
            router,
            &EndpointInfo {
                flags: ENDPOINT_F_HOST,
                ..Default::default()
            },
        )?;
        // start from what is pinned: nothing is rewritten until every source
        // has said what it wants (the full reconcile at the end of start)
        let mut ipcache = IpcacheSubsystem::adopt(kernel.clone(), router, ID_HOST);
        // other nodes' entries a previous run left stay until the first
        // cluster sync says otherwise (no gap for cross-node traffic)
        let kept: Vec<_> = ipcache
            .installed()
            .iter()
            .filter(|(net, e)| net.prefix_len() == 32 && !cfg.pod_cidr.contains(&net.addr()) && e.identity < SCOPE_LOCAL)
            .map(|(net, e)| (*net, *e))
            .collect();
        for (net, e) in kept {
            ipcache.keep(seta_core::ipcache::Source::Cluster, net, e);
        }

        let identities = Identities::new(store.load("identities.json")?);
        let policy = Policy::new(store.load("policy.json")?, cfg.allow_host_ingress);
        let others: Vec<Vec<Ipv4Addr>> = node.other_devs.iter().map(|(_, _, a)| a.clone()).collect();
        let node_port_ips = seta_core::service::node_port_addresses_of_devices(node.ip, &node.dev_addrs, &others, &cfg.nodeport_addresses);
        if node_port_ips.is_empty() && !cfg.nodeport_addresses.is_empty() {
            tracing::warn!(cidrs = ?cfg.nodeport_addresses, device = ?node.dev, "--nodeport-addresses: no address of the node's device is inside; NodePorts are served on none");
        }
        let mut services: crate::services::Repository = store.load("services.json")?;
        services.set_serving(crate::services::Serving {
            proxy_name: cfg.service_proxy_name.clone(),
            no_node_port: !cfg.serve_node_port,
            no_external_ips: !cfg.serve_external_ips,
            no_host_port: !cfg.serve_host_port,
            no_session_affinity: !cfg.session_affinity,
            no_health_checks: !cfg.health_check_node_port,
        });
        // Pool allocations without an endpoint are kept: a CNI ADD may be between
        // its IPAM call and its endpoint call. They are released by CNI DEL/GC.
        pool.cidr = cfg.pod_cidr;
        let mut observer = crate::observer::Observer::new(&cfg.node, cfg.hubble_event_buffer_capacity).map_err(anyhow::Error::msg)?;
        observer.metrics = crate::observer::metrics::FlowMetrics::new(cfg.hubble_metrics.clone());
        observer.agent_events.started();
        let observer = Arc::new(observer);
        let agent = Arc::new(Self {
            cfg,
            kernel: kernel.clone(),
            pin_dir,
            store,
            endpoints: Mutex::new(Endpoints::new(pool)),
            identities: Owned::new(identities),
            policy: Owned::new(policy),
            ipcache: Owned::new(ipcache),
            cluster: Owned::new(ClusterState::default()),
            k8s: node.k8s,
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
            ip_outbox: Default::default(),
            services: std::sync::Mutex::new(services),
            services_io: Mutex::new(()),
            sock_ns: Owned::new(Default::default()),
            svc_synced: Default::default(),
            svc_sync: std::sync::Mutex::new(SyncOutcome {
                last_ok: std::time::SystemTime::now(),
                error: None,
            }),
            health_server: Default::default(),
            metrics: Default::default(),
            observer,
            flow_ctx: Default::default(),
            flow_services: Default::default(),
            svc_view: Default::default(),
            svc_health: Default::default(),
            kv_health: Default::default(),
            last_keepalive: std::sync::Mutex::new(Instant::now()),
            node_ip: node.ip,
            underlay_mtu: node.mtu,
            node_port_ips: std::sync::Mutex::new(node_port_ips),
            node_dev: node.dev,
            other_devs: std::sync::Mutex::new(node.other_devs.iter().map(|(n, i, _)| (n.clone(), *i)).collect()),
            ipmasq,
        });
        // the cluster's identities as last seen: a restart while the
        // kvstore or the API is away keeps remote identities in policy
        // (the first snapshot after that corrects them)
        let known: BTreeMap<String, String> = agent.store.load(CLUSTER_IDS)?;
        if !known.is_empty() {
            let changes = agent.cluster.get().seed_identities(known);
            let mut eps = agent.endpoints.lock().await;
            agent.remote_identities_changed(&mut eps, changes);
        }
        agent.restore().await?;
        let addrs = agent.kernel.ipv4_addrs().await?;
        agent.set_host_ips(&addrs);
        agent.set_masq_devices(&agent.kernel.links().await?, &addrs)?;
        agent.process_delete_queue().await;
        // the service maps follow the persisted services (a restart is the same reconcile)
        if let Err(e) = agent.sync_services().await {
            tracing::error!(%e, "service maps");
        }
        {
            let mut eps = agent.endpoints.lock().await;
            agent.policy.get().sync_cidr_identities();
            agent.sync_cidr_ipcache();
            agent.sync_ipblock()?;
            // a restart is the same reconcile: the kernel map, whatever it holds
            agent.sync_ipblock_map()?;
            agent.ipcache.get().reconcile(true);
            agent.regenerate_all(&mut eps);
            agent.save_pool_and_ids(&eps)?;
        }
        Ok(agent)
    }

    /// The cluster's identities as last seen (key → labels), for a restart
    /// without the kvstore or the API.
    pub(crate) fn save_cluster_identities(&self) {
        let known: BTreeMap<String, String> = self.cluster.get().identities_seen();
        if let Err(e) = off_runtime(|| self.store.save(CLUSTER_IDS, &known)) {
            tracing::warn!(%e, "could not save the cluster's identities");
        }
    }

    /// The pool, this node's identities and the policy repository, to the
    /// state dir (under the endpoint lock, which orders these writes).
    fn save_pool_and_ids(&self, eps: &Endpoints) -> Result<()> {
        off_runtime(|| {
            self.store.save("ipam.json", eps.pool())?;
            self.store.save("identities.json", self.identities.get().local())?;
            self.store.save("policy.json", self.policy.get().repository())
        })
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
        let (mut nodes_registered, cluster_health): (Vec<String>, Vec<_>) = {
            let c = self.cluster.get();
            let names = c.nodes().keys().cloned().chain([self.cfg.node.clone()]).collect();
            (names, c.health().values().cloned().collect())
        };
        let (policy_revision, policies) = {
            let p = self.policy.get();
            (p.revision(), p.docs().len())
        };
        let ipcache_failed = self
            .ipcache
            .get()
            .failed()
            .iter()
            .map(|(n, e)| (n.to_string(), e.clone()))
            .collect();
        let eps = self.endpoints.lock().await;
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
        Status {
            node: self.cfg.node.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            healthy: true,
            uptime_seconds: self.started.elapsed().as_secs(),
            datapath: format!("eBPF, pins {}", self.cfg.pin_dir.display()),
            attach_mode: "tc (endpoints), tcx (host devices)".into(),
            endpoints: eps.len(),
            endpoint_states: eps.state_counts(),
            ipam: IpamStatus {
                cidr: eps.cidr(),
                allocated: eps.pool().allocated.len(),
                capacity: eps.pool().capacity(),
                allocations: eps.pool().allocated.clone(),
            },
            restored_endpoints: self.restored.load(std::sync::atomic::Ordering::Relaxed),
            cni_config: self.cfg.cni_conf_path().display().to_string(),
            policy_revision,
            policies,
            policy_map_full_errors: self.policy_map_full_count(),
            kvstore: format!("{} {}", self.kv.describe(), self.cfg.kvstore_endpoints.join(","))
                .trim()
                .to_string(),
            kvstore_status,
            kubernetes: self.k8s.as_ref().map_or_else(|| "disabled".to_string(), |k| k.status()),
            nodes_registered,
            routing_mode: self.cfg.routing_mode,
            node_ip: self.node_ip,
            pod_mtu: self.pod_mtu(),
            cluster_health,
            tasks: self.supervisor.status(),
            reconcile: seta_core::api::ReconcileStatus {
                ipcache_failed,
                endpoints_failed: eps
                    .values()
                    .filter(|e| e.state == EndpointState::NotReady)
                    .map(|e| (e.id, e.status_message.clone()))
                    .collect(),
                retries: self.regen_retries.load(std::sync::atomic::Ordering::Relaxed),
            },
            kube_proxy_replacement: self.kpr_status(),
            masquerading: self.ipmasq.status(),
        }
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

/// How the last write of the service maps went.
struct SyncOutcome {
    /// when they were last written successfully
    last_ok: std::time::SystemTime,
    /// why the last write failed (None: it did not)
    error: Option<String>,
}

/// What node bring-up learnt about the underlay.
pub(crate) struct NodeFacts {
    /// this node's address for other nodes
    pub ip: Option<Ipv4Addr>,
    pub mtu: u32,
    /// the device holding the node IP
    pub dev: Option<String>,
    /// that device's IPv4 addresses (NodePorts may be served on them)
    pub dev_addrs: Vec<Ipv4Addr>,
    /// the other native devices (--devices) and their IPv4 addresses
    pub other_devs: Vec<(String, u32, Vec<Ipv4Addr>)>,
    /// the Kubernetes API client, when configured
    pub k8s: Option<Arc<crate::k8s::K8s>>,
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
        ("hubble socket", cfg.hubble_socket()),
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
    /// One pass of the retry loop: regenerate not-ready endpoints and rewrite
    /// failed ipcache entries.
    pub(crate) async fn retry_once(&self) -> Retry {
        let mut eps = self.endpoints.lock().await;
        let failed = eps.not_ready();
        let ipc_failed = !self.ipcache.get().failed().is_empty();
        if failed.is_empty() && !ipc_failed {
            return Retry::Idle;
        }
        if !failed.is_empty() {
            self.regen_retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.regenerate(&mut eps, &failed);
        }
        let ipc_left = if ipc_failed { self.ipcache.get().reconcile(true) } else { 0 };
        let still = !eps.not_ready().is_empty();
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
}
