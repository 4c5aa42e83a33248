//! Cluster-wide identity allocation on a [`KvStore`].
//!
//! Keys under `<prefix>/identities/v1/`:
//! - `id/<id>` = the label-set key (the identity exists cluster-wide);
//! - `labels/<label-set key>` = the id (the reverse index);
//! - `ref/<id>/<node>` = a node's reference, under the node's lease.
//!
//! An identity is created with one transaction that creates `id/<n>` and
//! `labels/<key>` only if neither exists. So two label sets never share an id,
//! and one label set never gets two ids, however many agents race.
use crate::{KvError, KvStore, LeaseId, Result};
use rand::Rng;
use seta_core::identity::{ID_INIT, MAX_ALLOCATED, MIN_ALLOCATED};
use seta_core::labels::{labels_key, LabelSet};
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct ClusterIdentities<S: KvStore> {
    store: Arc<S>,
    base: String,
    node: String,
    /// this node's lease (replaced when it expired while etcd was away)
    lease: std::sync::atomic::AtomicI64,
}

const ATTEMPTS: usize = 64;

impl<S: KvStore> ClusterIdentities<S> {
    pub fn new(store: Arc<S>, prefix: &str, node: &str, lease: LeaseId) -> Self {
        Self {
            store,
            base: format!("{}/identities/v1", prefix.trim_end_matches('/')),
            node: node.to_string(),
            lease: std::sync::atomic::AtomicI64::new(lease),
        }
    }

    pub fn lease(&self) -> LeaseId {
        self.lease.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_lease(&self, lease: LeaseId) {
        self.lease.store(lease, std::sync::atomic::Ordering::Relaxed)
    }

    /// The store underneath (for debugging listings).
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    fn id_key(&self, id: u32) -> String {
        format!("{}/id/{id}", self.base)
    }
    fn labels_key(&self, key: &str) -> String {
        format!("{}/labels/{key}", self.base)
    }
    fn ref_key(&self, id: u32) -> String {
        format!("{}/ref/{id}/{}", self.base, self.node)
    }

    fn parse_id(v: &[u8]) -> Result<u32> {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| KvError::Other(format!("identity value {:?} is not a number", String::from_utf8_lossy(v))))
    }

    /// The identity of `labels`, allocating it cluster-wide if needed, and a
    /// reference from this node.
    pub async fn allocate(&self, labels: &LabelSet) -> Result<u32> {
        if labels.is_empty() {
            return Ok(ID_INIT);
        }
        let key = labels_key(labels);
        for _ in 0..ATTEMPTS {
            if let Some(v) = self.store.get(&self.labels_key(&key)).await? {
                let id = Self::parse_id(&v)?;
                self.store.put(&self.ref_key(id), b"1", self.lease()).await?;
                return Ok(id);
            }
            let used: BTreeSet<u32> = self
                .store
                .list(&format!("{}/id/", self.base))
                .await?
                .iter()
                .filter_map(|(k, _)| k.rsplit('/').next()?.parse().ok())
                .collect();
            let free = (MAX_ALLOCATED - MIN_ALLOCATED + 1) as usize - used.len();
            if free == 0 {
                return Err(KvError::Other(format!(
                    "identity space {MIN_ALLOCATED}..={MAX_ALLOCATED} is exhausted"
                )));
            }
            // a random free id: racing agents rarely pick the same one
            let nth = rand::thread_rng().gen_range(0..free);
            let id = (MIN_ALLOCATED..=MAX_ALLOCATED).filter(|i| !used.contains(i)).nth(nth).unwrap();
            let created = self
                .store
                .create_all(
                    &[
                        (self.id_key(id), key.clone().into_bytes()),
                        (self.labels_key(&key), id.to_string().into_bytes()),
                    ],
                    0,
                )
                .await?;
            if created {
                self.store.put(&self.ref_key(id), b"1", self.lease()).await?;
                return Ok(id);
            }
            // someone took this id or allocated these labels meanwhile: look again
        }
        Err(KvError::Other(format!(
            "could not allocate an identity for {key} after {ATTEMPTS} attempts"
        )))
    }

    /// Drop this node's reference (the operator frees identities nobody refers to).
    pub async fn release(&self, id: u32) -> Result<()> {
        self.store.delete(&self.ref_key(id)).await
    }

    /// Every identity in the cluster: (id, label-set key).
    pub async fn list(&self) -> Result<Vec<(u32, String)>> {
        let mut out: Vec<(u32, String)> = self
            .store
            .list(&format!("{}/id/", self.base))
            .await?
            .into_iter()
            .filter_map(|(k, v)| Some((k.rsplit('/').next()?.parse().ok()?, String::from_utf8_lossy(&v).into_owned())))
            .collect();
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use seta_core::labels::parse_list;

    #[tokio::test]
    async fn stable_unique_and_referenced() {
        let store = Arc::new(MemoryStore::new());
        let a = ClusterIdentities::new(store.clone(), "/seta", "n1", 0);
        let b = ClusterIdentities::new(store.clone(), "/seta", "n2", 0);
        let web = parse_list("app=web", "k8s").unwrap();
        let db = parse_list("app=db", "k8s").unwrap();
        let i1 = a.allocate(&web).await.unwrap();
        assert!((256..=65535).contains(&i1));
        assert_eq!(b.allocate(&web).await.unwrap(), i1, "another node gets the same id");
        let i2 = b.allocate(&db).await.unwrap();
        assert_ne!(i1, i2);
        assert_eq!(a.allocate(&LabelSet::new()).await.unwrap(), ID_INIT);
        assert_eq!(store.list("/seta/identities/v1/ref/").await.unwrap().len(), 3);
        a.release(i1).await.unwrap();
        assert_eq!(store.list("/seta/identities/v1/ref/").await.unwrap().len(), 2);
        assert_eq!(a.list().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn embedded_store_persists() {
        let dir = std::env::temp_dir().join(format!("seta-kv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("kv.json");
        let id = {
            let s = Arc::new(MemoryStore::persistent(f.clone()).unwrap());
            ClusterIdentities::new(s, "/seta", "n1", 0)
                .allocate(&parse_list("app=x", "k8s").unwrap())
                .await
                .unwrap()
        };
        let s = Arc::new(MemoryStore::persistent(f).unwrap());
        assert_eq!(
            ClusterIdentities::new(s, "/seta", "n1", 0)
                .allocate(&parse_list("app=x", "k8s").unwrap())
                .await
                .unwrap(),
            id
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
