//! The agent's handle on the cluster's kvstore: either backend behind one
//! type, with this node's lease (re-granted if it expired while etcd was away).
use crate::config::{Config, KvstoreKind};
use anyhow::Result;
use seta_core::labels::LabelSet;
use seta_kvstore::etcd::EtcdStore;
use seta_kvstore::identity::ClusterIdentities;
use seta_kvstore::ipcache::IpEntry;
use seta_kvstore::memory::MemoryStore;
use seta_kvstore::nodes::NodeInfo;
use seta_kvstore::reflector::{Health, Update};
use seta_kvstore::{KvError, KvStore};
use std::net::Ipv4Addr;
use std::sync::Arc;

pub enum Kv {
    /// the embedded store; `true` when several agents share it (unit tests
    /// of cluster events), else node-local
    Memory(ClusterIdentities<MemoryStore>, bool),
    /// identities, lease TTL, set when the lease was re-granted outside the announce loop
    Etcd(ClusterIdentities<EtcdStore>, i64, std::sync::atomic::AtomicBool),
}

/// Run `$e` with `$c` bound to the ClusterIdentities of either backend.
macro_rules! each {
    ($kv:expr, $c:ident => $e:expr) => {
        match $kv {
            Kv::Memory($c, _) => $e,
            Kv::Etcd($c, _, _) => $e,
        }
    };
}

impl Kv {
    pub async fn open(cfg: &Config) -> Result<Self> {
        match cfg.kvstore {
            KvstoreKind::Memory => {
                let store = MemoryStore::persistent(cfg.state_dir.join("kvstore.json"))?;
                Ok(Kv::Memory(
                    ClusterIdentities::new(Arc::new(store), &cfg.kvstore_prefix, &cfg.node, 0),
                    false,
                ))
            }
            KvstoreKind::Etcd => {
                anyhow::ensure!(
                    !cfg.kvstore_endpoints.is_empty(),
                    "--kvstore etcd needs --kvstore-endpoints URL[,URL...]"
                );
                let store = EtcdStore::connect(&cfg.kvstore_endpoints).await?;
                // this node's references, registry entry and IPs live under its lease
                let lease = store.grant_lease(cfg.kvstore_lease_ttl).await?;
                Ok(Kv::Etcd(
                    ClusterIdentities::new(Arc::new(store), &cfg.kvstore_prefix, &cfg.node, lease),
                    cfg.kvstore_lease_ttl,
                    Default::default(),
                ))
            }
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Kv::Memory(..) => "embedded (state dir)",
            Kv::Etcd(..) => "etcd",
        }
    }

    /// Allocate (or reference) the identity of `labels`; a transport error
    /// (the connection is re-established underneath) is retried twice.
    pub async fn allocate(&self, labels: &LabelSet) -> seta_kvstore::Result<u32> {
        let mut attempt = 0;
        loop {
            match each!(self, c => c.allocate(labels).await) {
                Err(KvError::LeaseExpired(lease)) if attempt < 2 => {
                    // our lease expired (etcd was slow or away): take a new one now
                    tracing::debug!(lease, "identity allocation found its lease expired; renewing");
                    attempt += 1;
                    if let (Ok(true), Kv::Etcd(_, _, renewed)) = (self.keep_alive().await, self) {
                        renewed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e @ KvError::Etcd { .. }) if attempt < 2 => {
                    tracing::debug!(%e, "identity allocation failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                r => return r,
            }
        }
    }

    pub async fn release(&self, id: u32) -> seta_kvstore::Result<()> {
        each!(self, c => c.release(id).await)
    }

    /// Keys under `prefix` (a key itself when `exact`), values as text.
    pub async fn list(&self, prefix: &str, exact: bool) -> seta_kvstore::Result<Vec<(String, String)>> {
        let raw = if exact {
            each!(self, c => c.store().get(prefix).await)?
                .map(|v| vec![(prefix.to_string(), v)])
                .unwrap_or_default()
        } else {
            each!(self, c => c.store().list(prefix).await)?
        };
        Ok(raw
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect())
    }

    pub async fn register_node(&self, prefix: &str, info: &NodeInfo) -> seta_kvstore::Result<()> {
        each!(self, c => seta_kvstore::nodes::register(c.store().as_ref(), prefix, info, c.lease()).await)
    }

    pub async fn nodes(&self, prefix: &str) -> seta_kvstore::Result<Vec<NodeInfo>> {
        each!(self, c => seta_kvstore::nodes::list(c.store().as_ref(), prefix).await)
    }

    pub async fn publish_ip(&self, prefix: &str, e: &IpEntry) -> seta_kvstore::Result<()> {
        each!(self, c => seta_kvstore::ipcache::publish(c.store().as_ref(), prefix, e, c.lease()).await)
    }

    pub async fn withdraw_ip(&self, prefix: &str, ip: Ipv4Addr) -> seta_kvstore::Result<()> {
        each!(self, c => seta_kvstore::ipcache::withdraw(c.store().as_ref(), prefix, ip).await)
    }

    /// Renew the lease. When etcd no longer knows it (it expired while we were
    /// cut off), a new one is granted and `Ok(true)` says everything this node
    /// put under the old one must be written again.
    pub async fn keep_alive(&self) -> seta_kvstore::Result<bool> {
        match self {
            Kv::Memory(..) => Ok(false),
            Kv::Etcd(c, ttl, _) => match c.store().keep_alive(c.lease()).await {
                Ok(()) => Ok(false),
                Err(KvError::LeaseExpired(old)) => {
                    let lease = c.store().grant_lease(*ttl).await?;
                    tracing::warn!(
                        old = format!("{old:x}"),
                        new = format!("{lease:x}"),
                        "lease had expired; re-announcing under a new one"
                    );
                    c.set_lease(lease);
                    Ok(true)
                }
                Err(e) => Err(e),
            },
        }
    }

    /// An in-memory store several agents of one process share (unit tests).
    #[cfg(test)]
    pub fn shared_memory(store: Arc<MemoryStore>, prefix: &str, node: &str) -> Self {
        Kv::Memory(ClusterIdentities::new(store, prefix, node, 0), true)
    }

    /// Whether other nodes share this store (etcd).
    pub fn shared(&self) -> bool {
        matches!(self, Kv::Etcd(..) | Kv::Memory(_, true))
    }

    /// Put and delete keys in one transaction.
    pub async fn apply(&self, puts: &[(String, Vec<u8>)], deletes: &[String]) -> seta_kvstore::Result<()> {
        each!(self, c => c.store().apply(puts, deletes).await)
    }

    /// Replace the etcd connection (after a request got no answer).
    pub async fn reconnect(&self) {
        if let Kv::Etcd(c, _, _) = self {
            if let Err(e) = c.store().reconnect().await {
                tracing::warn!(%e, "reconnecting to etcd failed");
            }
        }
    }

    /// Whether the lease was re-granted outside `keep_alive`'s caller (and clear it).
    pub fn take_renewed(&self) -> bool {
        match self {
            Kv::Etcd(_, _, r) => r.swap(false, std::sync::atomic::Ordering::Relaxed),
            _ => false,
        }
    }

    /// Reflect `prefix` (list + watch, re-list after breaks).
    pub fn reflect(&self, prefix: String, health: Arc<Health>) -> tokio::sync::mpsc::Receiver<Update> {
        each!(self, c => seta_kvstore::reflector::spawn(c.store().clone(), prefix, health))
    }
}

/// This node's pod CIDR from cluster-pool IPAM: the one a previous run used
/// (state dir), else the operator's allocation, requested under a lease and
/// awaited (the allocation itself is persistent, so it survives restarts).
pub async fn pod_cidr_from_operator(cfg: &Config) -> Result<ipnet::Ipv4Net> {
    if let Ok(b) = std::fs::read(cfg.state_dir.join("ipam.json")) {
        if let Ok(pool) = serde_json::from_slice::<seta_core::ipam::Pool>(&b) {
            tracing::info!(cidr = %pool.cidr, "pod CIDR from the previous run");
            return Ok(pool.cidr);
        }
    }
    let store = EtcdStore::connect(&cfg.kvstore_endpoints).await?;
    let key = format!("{}{}", seta_kvstore::ipam::allocations(&cfg.kvstore_prefix), cfg.node);
    let lease = store.grant_lease(cfg.kvstore_lease_ttl.max(10)).await?;
    let req = format!("{}{}", seta_kvstore::ipam::requests(&cfg.kvstore_prefix), cfg.node);
    store.put(&req, b"ipv4", lease).await?;
    tracing::info!(node = %cfg.node, "waiting for the operator to allocate a pod CIDR");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(v) = store.get(&key).await? {
            let text = String::from_utf8_lossy(&v).into_owned();
            let cidr: ipnet::Ipv4Net = text
                .trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("{key} = {text:?} is not a CIDR: {e}"))?;
            let _ = store.delete(&req).await;
            tracing::info!(%cidr, "pod CIDR allocated by the operator");
            return Ok(cidr);
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "no pod CIDR after 60 s: no --pod-cidr was given and no seta-operator with --cluster-pool-cidr answered the request {req}"
            );
        }
        let _ = store.keep_alive(lease).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
