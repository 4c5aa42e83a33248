//! The agent's handle on the cluster's kvstore: either backend behind one
//! type, with this node's lease (re-granted if it expired while etcd was away).
use crate::config::{Config, KvstoreKind};
use anyhow::Result;
use seta_core::labels::LabelSet;
use seta_kvstore::dynamic::AnyStore;
use seta_kvstore::etcd::EtcdStore;
use seta_kvstore::identity::ClusterIdentities;
use seta_kvstore::ipcache::IpEntry;
use seta_kvstore::memory::MemoryStore;
use seta_kvstore::nodes::NodeInfo;
use seta_kvstore::reflector::{Health, Update};
use seta_kvstore::{KvError, KvStore};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The kvstore as the agent's dependency: any [`KvStore`] backend (etcd in
/// production, the embedded store on one node and as the fake in unit tests),
/// with this node's lease.
pub struct Kv {
    ids: ClusterIdentities<AnyStore>,
    kind: &'static str,
    /// the lease TTL when the backend's leases expire (etcd), else None
    lease_ttl: Option<i64>,
    /// whether other nodes share this store
    shared: bool,
    /// set when the lease was re-granted outside the announce loop
    renewed: AtomicBool,
    /// CRD mode: identities, this node's registration and the shared
    /// prefixes' reflections go to the Kubernetes API instead
    crd: Option<Arc<crate::k8s::crd::Crd>>,
}

impl Kv {
    /// The kvstore of `store`, where this node's keys live under `lease`
    /// (renewed with `lease_ttl` when it expires).
    pub fn new(
        store: Arc<dyn seta_kvstore::dynamic::DynKvStore>,
        kind: &'static str,
        prefix: &str,
        node: &str,
        lease: i64,
        lease_ttl: Option<i64>,
        shared: bool,
    ) -> Self {
        Kv {
            ids: ClusterIdentities::new(Arc::new(AnyStore::new(store)), prefix, node, lease),
            kind,
            lease_ttl,
            shared,
            renewed: AtomicBool::new(false),
            crd: None,
        }
    }

    /// CRD mode (`--identity-allocation-mode crd`): identities are
    /// CiliumIdentities, this node is a CiliumNode, and pod IPs come from
    /// CiliumEndpoints; nothing of that is written to the kvstore.
    pub fn with_crd(mut self, crd: crate::k8s::crd::Crd) -> Self {
        self.crd = Some(Arc::new(crd));
        self
    }

    pub async fn open(cfg: &Config) -> Result<Self> {
        match cfg.kvstore {
            KvstoreKind::Memory => {
                let store = MemoryStore::persistent(cfg.state_dir.join("kvstore.json"))?;
                Ok(Kv::new(
                    Arc::new(store),
                    "embedded (state dir)",
                    &cfg.kvstore_prefix,
                    &cfg.node,
                    0,
                    None,
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
                let ttl = Some(cfg.kvstore_lease_ttl);
                Ok(Kv::new(Arc::new(store), "etcd", &cfg.kvstore_prefix, &cfg.node, lease, ttl, true))
            }
        }
    }

    pub fn describe(&self) -> &'static str {
        match self.crd {
            Some(_) => "Disabled (identities, nodes and pod IPs in CiliumIdentity, CiliumNode and CiliumEndpoint objects)",
            None => self.kind,
        }
    }

    fn store(&self) -> &AnyStore {
        self.ids.store()
    }

    /// Allocate (or reference) the identity of `labels`; a transport error
    /// (the connection is re-established underneath) is retried twice.
    pub async fn allocate(&self, labels: &LabelSet) -> seta_kvstore::Result<u32> {
        if let Some(c) = &self.crd {
            return c.allocate(labels).await;
        }
        let mut attempt = 0;
        loop {
            match self.ids.allocate(labels).await {
                Err(KvError::LeaseExpired(lease)) if attempt < 2 => {
                    // our lease expired (etcd was slow or away): take a new one now
                    tracing::debug!(lease, "identity allocation found its lease expired; renewing");
                    attempt += 1;
                    if let Ok(true) = self.keep_alive().await {
                        self.renewed.store(true, Ordering::Relaxed);
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
        if self.crd.is_some() {
            return Ok(()); // the operator collects identities no CiliumEndpoint uses
        }
        self.ids.release(id).await
    }

    /// Keys under `prefix` (a key itself when `exact`), values as text.
    pub async fn list(&self, prefix: &str, exact: bool) -> seta_kvstore::Result<Vec<(String, String)>> {
        let raw = if exact {
            self.store()
                .get(prefix)
                .await?
                .map(|v| vec![(prefix.to_string(), v)])
                .unwrap_or_default()
        } else {
            self.store().list(prefix).await?
        };
        Ok(raw
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect())
    }

    pub async fn register_node(&self, prefix: &str, info: &NodeInfo) -> seta_kvstore::Result<()> {
        if let Some(c) = &self.crd {
            return c.register_node(info).await;
        }
        seta_kvstore::nodes::register(self.store(), prefix, info, self.ids.lease()).await
    }

    pub async fn nodes(&self, prefix: &str) -> seta_kvstore::Result<Vec<NodeInfo>> {
        if let Some(c) = &self.crd {
            return c.nodes().await;
        }
        seta_kvstore::nodes::list(self.store(), prefix).await
    }

    pub async fn publish_ip(&self, prefix: &str, e: &IpEntry) -> seta_kvstore::Result<()> {
        seta_kvstore::ipcache::publish(self.store(), prefix, e, self.ids.lease()).await
    }

    pub async fn withdraw_ip(&self, prefix: &str, ip: Ipv4Addr) -> seta_kvstore::Result<()> {
        seta_kvstore::ipcache::withdraw(self.store(), prefix, ip).await
    }

    /// Renew the lease. When the store no longer knows it (it expired while we
    /// were cut off), a new one is granted and `Ok(true)` says everything this
    /// node put under the old one must be written again.
    pub async fn keep_alive(&self) -> seta_kvstore::Result<bool> {
        let Some(ttl) = self.lease_ttl else { return Ok(false) };
        match self.store().keep_alive(self.ids.lease()).await {
            Ok(()) => Ok(false),
            Err(KvError::LeaseExpired(old)) => {
                let lease = self.store().grant_lease(ttl).await?;
                tracing::warn!(
                    old = format!("{old:x}"),
                    new = format!("{lease:x}"),
                    "lease had expired; re-announcing under a new one"
                );
                self.ids.set_lease(lease);
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// An in-memory store several agents of one process share (unit tests).
    #[cfg(test)]
    pub fn shared_memory(store: Arc<MemoryStore>, prefix: &str, node: &str) -> Self {
        Kv::new(store, "embedded (shared)", prefix, node, 0, None, true)
    }

    /// Whether other nodes share this store (etcd) for what it holds; in
    /// CRD mode pod IPs are shared as CiliumEndpoints instead.
    pub fn shared(&self) -> bool {
        self.shared && self.crd.is_none()
    }

    /// Put and delete keys in one transaction.
    pub async fn apply(&self, puts: &[(String, Vec<u8>)], deletes: &[String]) -> seta_kvstore::Result<()> {
        self.store().apply(puts, deletes).await
    }

    /// Replace the connection (after a request got no answer).
    pub async fn reconnect(&self) {
        if let Err(e) = self.store().reconnect().await {
            tracing::warn!(%e, "reconnecting to the kvstore failed");
        }
    }

    /// Whether the lease was re-granted outside `keep_alive`'s caller (and clear it).
    pub fn take_renewed(&self) -> bool {
        self.renewed.swap(false, Ordering::Relaxed)
    }

    /// Reflect `prefix` (list + watch, re-list after breaks).
    pub fn reflect(&self, prefix: String, health: Arc<Health>) -> tokio::sync::mpsc::Receiver<Update> {
        seta_kvstore::reflector::spawn(self.ids.store().clone(), prefix, health)
    }

    /// Reflect one of the prefixes other nodes share (identities, pod IPs,
    /// nodes): from the kvstore, or in CRD mode from the API's objects.
    pub fn reflect_shared(
        &self,
        which: crate::k8s::crd::Shared,
        prefix: String,
        health: Arc<Health>,
    ) -> tokio::sync::mpsc::Receiver<Update> {
        match &self.crd {
            Some(c) => c.reflect(which, health),
            None => self.reflect(prefix, health),
        }
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
