//! seta-operator: cluster-wide chores that no single agent owns.
//!
//! Under Kubernetes (`--k8s-kubeconfig`, or a pod's service account) it
//! works on the API's objects, leader-elected through a Lease: see `k8s`.
//! Otherwise replicas campaign for leadership through etcd's election API under a
//! lease; only the leader works, and a replica whose lease is lost stops
//! working and campaigns again. The leader:
//! - cluster-pool IPAM: answers agents' pod-CIDR requests with the first free
//!   /mask of the cluster CIDR (persistent, so stable across restarts);
//! - identity GC: deletes identities no node has referenced for a grace period;
//! - node GC: deletes IP entries of nodes that are not registered (entries
//!   under a dead node's lease expire by themselves) and releases the pod CIDR
//!   of a node that has been gone for longer than the node grace period.
mod k8s;

use anyhow::Result;
use clap::Parser;
use seta_kvstore::etcd::EtcdStore;
use seta_kvstore::reflector::{self, Health};
use seta_kvstore::KvStore;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "seta-operator",
    version,
    about = "seta operator: cluster-pool IPAM and garbage collection, leader-elected through etcd or a Kubernetes Lease"
)]
struct Args {
    /// Name of this replica (shown as the leader)
    #[arg(long, env = "SETA_OPERATOR_ID")]
    id: Option<String>,
    /// etcd endpoints, e.g. http://10.0.0.1:2379 (without Kubernetes)
    #[arg(long, env = "SETA_KVSTORE_ENDPOINTS", value_delimiter = ',')]
    kvstore_endpoints: Vec<String>,
    /// Work on the Kubernetes API through this kubeconfig (CiliumNodes, CiliumIdentities, CiliumEndpoints; a Lease elects the leader) [default: the pod's service account when KUBERNETES_SERVICE_HOST is set]
    #[arg(long, env = "SETA_K8S_KUBECONFIG")]
    k8s_kubeconfig: Option<std::path::PathBuf>,
    /// Namespace of the leadership Lease (Kubernetes)
    #[arg(long, default_value = "kube-system")]
    leader_election_namespace: String,
    /// A leader that stops renewing is replaced this long after its last renewal (Kubernetes)
    #[arg(long, default_value = "15s", value_parser = seta_core::time::parse_duration)]
    leader_election_lease_duration: Duration,
    /// A leader that cannot renew for this long stops working (Kubernetes)
    #[arg(long, default_value = "10s", value_parser = seta_core::time::parse_duration)]
    leader_election_renew_deadline: Duration,
    /// How often replicas try to take or renew the Lease (Kubernetes)
    #[arg(long, default_value = "2s", value_parser = seta_core::time::parse_duration)]
    leader_election_retry_period: Duration,
    /// Key prefix of the cluster state
    #[arg(long, env = "SETA_KVSTORE_PREFIX", default_value = "/seta")]
    kvstore_prefix: String,
    /// Leadership lease: a dead leader is replaced this many seconds after its last renewal
    #[arg(long, default_value_t = 15)]
    lease_ttl: i64,
    /// Cluster CIDR that node pod CIDRs are carved from (cluster-pool IPAM); none = IPAM off
    #[arg(long, env = "SETA_CLUSTER_POOL_CIDR")]
    cluster_pool_cidr: Option<ipnet::Ipv4Net>,
    /// Size of each node's pod CIDR
    #[arg(long, default_value_t = 24)]
    cluster_pool_mask_size: u8,
    /// Seconds between garbage-collection runs
    #[arg(long, default_value_t = 60)]
    gc_interval: u64,
    /// Seconds an identity stays unreferenced before it is deleted
    #[arg(long, default_value_t = 900)]
    identity_gc_grace: u64,
    /// Seconds a node stays unregistered before its pod CIDR is released
    #[arg(long, default_value_t = 3600)]
    node_gc_grace: u64,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SETA_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut args = Args::parse();
    if let Some(c) = args.cluster_pool_cidr {
        // fail early on a mask that cannot work
        seta_core::ipam::next_free_subnet(c, args.cluster_pool_mask_size, &[]).map_err(anyhow::Error::msg)?;
    }
    args.kvstore_prefix = args.kvstore_prefix.trim_end_matches('/').to_string();
    let id = args.id.clone().unwrap_or_else(|| format!("operator-{}", std::process::id()));
    let rt = tokio::runtime::Runtime::new()?;
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    if args.k8s_kubeconfig.is_some() || (in_cluster && args.kvstore_endpoints.is_empty()) {
        return rt.block_on(run_k8s(args, id));
    }
    anyhow::ensure!(
        !args.kvstore_endpoints.is_empty(),
        "--kvstore-endpoints URL[,URL...] is required without Kubernetes (--k8s-kubeconfig)"
    );
    rt.block_on(run(args, id))
}

async fn run_k8s(args: Args, id: String) -> Result<()> {
    let cfg = match &args.k8s_kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p).map_err(|e| anyhow::anyhow!("--k8s-kubeconfig {}: {e}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::incluster()?,
    };
    let client = kube::Client::try_from(cfg)?;
    let election = k8s::Election {
        namespace: args.leader_election_namespace.clone(),
        name: "seta-operator-resource-lock".into(),
        lease_duration: args.leader_election_lease_duration,
        renew_deadline: args.leader_election_renew_deadline,
        retry_period: args.leader_election_retry_period,
    };
    let work = k8s::Work {
        cluster_pool: args.cluster_pool_cidr.map(|c| (c, args.cluster_pool_mask_size)),
        gc_interval: Duration::from_secs(args.gc_interval.max(1)),
        identity_gc_grace: Duration::from_secs(args.identity_gc_grace),
    };
    k8s::run(client, election, work, id).await
}

async fn run(args: Args, id: String) -> Result<()> {
    let election = format!("{}/operator/v1/election", args.kvstore_prefix);
    let mut backoff = Duration::from_millis(200);
    loop {
        let r = async {
            let store = Arc::new(EtcdStore::connect(&args.kvstore_endpoints).await?);
            let lease = store.grant_lease(args.lease_ttl).await?;
            // keep the lease alive; `lost` fires when that fails
            let lost = Arc::new(tokio::sync::Notify::new());
            let keeper = {
                let (store, lost) = (store.clone(), lost.clone());
                let period = Duration::from_millis((args.lease_ttl as u64 * 1000 / 3).max(300));
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(period).await;
                        if let Err(e) = store.keep_alive(lease).await {
                            tracing::warn!(%e, "leadership lease lost");
                            lost.notify_one();
                            return;
                        }
                    }
                })
            };
            tracing::info!(%id, "campaigning for leadership");
            let elected = async {
                loop {
                    match store.campaign(&election, &id, lease).await {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::debug!(%e, "campaign interrupted; again");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            };
            tokio::select! {
                _ = elected => {},
                _ = lost.notified() => { keeper.abort(); anyhow::bail!("lease lost while campaigning") },
            }
            tracing::info!(%id, "elected leader");
            let since = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            store
                .put(
                    &format!("{}/operator/v1/leader", args.kvstore_prefix),
                    serde_json::json!({"id": id, "since": since}).to_string().as_bytes(),
                    lease,
                )
                .await?;
            let r = tokio::select! {
                r = lead(&args, store.clone()) => r,
                _ = lost.notified() => Err(anyhow::anyhow!("leadership lost")),
            };
            keeper.abort();
            r
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(%e, "not leading; campaigning again");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The leader's work, until it fails (the caller campaigns again).
async fn lead(args: &Args, store: Arc<EtcdStore>) -> Result<()> {
    let p = &args.kvstore_prefix;
    let health = Arc::new(Health::default());
    let mut requests = reflector::spawn(store.clone(), seta_kvstore::ipam::requests(p), health.clone());
    let mut gc = Gc::default();
    let mut gc_tick = tokio::time::interval(Duration::from_secs(args.gc_interval.max(1)));
    loop {
        tokio::select! {
            u = requests.recv() => {
                if u.is_none() { anyhow::bail!("request watch ended"); }
                while requests.try_recv().is_ok() {}
                if let Some(c) = args.cluster_pool_cidr {
                    allocate_pod_cidrs(&store, p, c, args.cluster_pool_mask_size).await?;
                }
            }
            _ = gc_tick.tick() => {
                gc.run(args, &store).await?;
                if let Some(c) = args.cluster_pool_cidr {
                    allocate_pod_cidrs(&store, p, c, args.cluster_pool_mask_size).await?;
                }
            }
        }
    }
}

fn node_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or("")
}

/// Answer every pending request: a free subnet, created with a uniqueness key
/// in one transaction (two leaders in a split brain cannot hand out the same one).
async fn allocate_pod_cidrs(store: &EtcdStore, p: &str, cluster: ipnet::Ipv4Net, mask: u8) -> Result<()> {
    let reqs = store.list(&seta_kvstore::ipam::requests(p)).await?;
    if reqs.is_empty() {
        return Ok(());
    }
    let allocs = store.list(&seta_kvstore::ipam::allocations(p)).await?;
    let have: BTreeSet<String> = allocs.iter().map(|(k, _)| node_name(k).to_string()).collect();
    let mut used: Vec<ipnet::Ipv4Net> = allocs
        .iter()
        .filter_map(|(_, v)| String::from_utf8_lossy(v).trim().parse().ok())
        .collect();
    // statically configured nodes' CIDRs are taken too
    for n in seta_kvstore::nodes::list(store, p).await? {
        if let Ok(c) = n.pod_cidr.parse() {
            used.push(c);
        }
    }
    for (k, _) in reqs {
        let node = node_name(&k).to_string();
        if have.contains(&node) {
            continue;
        }
        let cidr = match seta_core::ipam::next_free_subnet(cluster, mask, &used) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(%node, %e, "cannot allocate a pod CIDR");
                continue;
            }
        };
        let claim = format!("{p}/ipam/v1/cidrs/{}-{}", cidr.network(), cidr.prefix_len());
        let created = store
            .create_all(
                &[
                    (
                        format!("{}{node}", seta_kvstore::ipam::allocations(p)),
                        cidr.to_string().into_bytes(),
                    ),
                    (claim, node.clone().into_bytes()),
                ],
                0,
            )
            .await?;
        if created {
            tracing::info!(%node, %cidr, "allocated pod CIDR");
            used.push(cidr);
        }
    }
    Ok(())
}

#[derive(Default)]
struct Gc {
    /// identity -> when it was first seen without references
    unreferenced: BTreeMap<u32, Instant>,
    /// node -> when its allocation was first seen without a registered node
    absent: BTreeMap<String, Instant>,
}

impl Gc {
    async fn run(&mut self, args: &Args, store: &EtcdStore) -> Result<()> {
        let p = &args.kvstore_prefix;
        let base = format!("{p}/identities/v1");
        // identities
        let ids = store.list(&format!("{base}/id/")).await?;
        let refs: BTreeSet<u32> = store
            .list(&format!("{base}/ref/"))
            .await?
            .iter()
            .filter_map(|(k, _)| k.strip_prefix(&format!("{base}/ref/"))?.split('/').next()?.parse().ok())
            .collect();
        let now = Instant::now();
        let live: BTreeSet<u32> = ids.iter().filter_map(|(k, _)| node_name(k).parse().ok()).collect();
        self.unreferenced.retain(|id, _| live.contains(id) && !refs.contains(id));
        let mut deleted = 0;
        for (k, v) in &ids {
            let Ok(id) = node_name(k).parse::<u32>() else { continue };
            if refs.contains(&id) {
                continue;
            }
            let since = *self.unreferenced.entry(id).or_insert(now);
            if now.duration_since(since) >= Duration::from_secs(args.identity_gc_grace) {
                let labels = String::from_utf8_lossy(v).into_owned();
                store.delete(&format!("{base}/labels/{labels}")).await?;
                store.delete(k).await?;
                self.unreferenced.remove(&id);
                deleted += 1;
                tracing::info!(id, %labels, "identity garbage-collected (no references)");
            }
        }
        // nodes: IP entries of unregistered nodes, then allocations of long-gone nodes
        let nodes: BTreeSet<String> = seta_kvstore::nodes::list(store, p).await?.into_iter().map(|n| n.name).collect();
        let mut stale_ips = 0;
        for (k, v) in store.list(&seta_kvstore::ipcache::base(p)).await? {
            if let Some(e) = seta_kvstore::ipcache::parse(&v) {
                if !nodes.contains(&e.node) {
                    store.delete(&k).await?;
                    stale_ips += 1;
                }
            }
        }
        let requests: BTreeSet<String> = store
            .list(&seta_kvstore::ipam::requests(p))
            .await?
            .iter()
            .map(|(k, _)| node_name(k).to_string())
            .collect();
        for (k, v) in store.list(&seta_kvstore::ipam::allocations(p)).await? {
            let node = node_name(&k).to_string();
            if nodes.contains(&node) || requests.contains(&node) {
                self.absent.remove(&node);
                continue;
            }
            let since = *self.absent.entry(node.clone()).or_insert(now);
            if now.duration_since(since) >= Duration::from_secs(args.node_gc_grace) {
                if let Ok(c) = String::from_utf8_lossy(&v).trim().parse::<ipnet::Ipv4Net>() {
                    store
                        .delete(&format!("{p}/ipam/v1/cidrs/{}-{}", c.network(), c.prefix_len()))
                        .await?;
                }
                store.delete(&k).await?;
                self.absent.remove(&node);
                tracing::info!(%node, "released the pod CIDR of a node gone for longer than the grace period");
            }
        }
        if deleted + stale_ips > 0 {
            tracing::info!(identities = deleted, ip_entries = stale_ips, "garbage collection");
        }
        Ok(())
    }
}
