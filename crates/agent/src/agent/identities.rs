//! Security identities: allocation through the kvstore (reserved before any
//! lock), local references, releases.
use super::*;

/// How long a request waits for the kvstore to number a new label set.
pub(super) const ALLOCATE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

impl Agent {
    /// A reference on the identity of `labels`; a label set new to this node
    /// gets its number from the cluster's kvstore.
    pub(super) async fn acquire_identity(&self, labels: &LabelSet) -> Result<u32, ApiError> {
        {
            let mut ids = self.identities.get();
            if ids.holds(labels) {
                return ids.acquire_held(labels).map_err(|e| ApiError::Conflict(e.to_string()));
            }
        }
        let id = self
            .kv
            .allocate(labels)
            .await
            .map_err(|e| ApiError::Internal(format!("identity allocation in the kvstore: {e}")))?;
        Ok(self.identities.get().acquire_numbered(labels, id))
    }

    /// Drop a reference; the node's reference in the kvstore goes with the
    /// last one, written by the identity-release task (no I/O under the lock).
    pub(super) fn release_identity(&self, labels: &LabelSet) {
        if self.identities.get().release(labels).is_some() {
            self.releases_due.notify_one();
        }
    }

    /// Drop the kvstore references of identities no local endpoint holds any
    /// more (one that got a reference again meanwhile keeps it).
    pub(super) async fn flush_identity_releases(&self) {
        let _io = self.ids_io.lock().await;
        let due = self.identities.get().take_releases();
        for id in due {
            if let Err(e) = self.kv.release(id).await {
                tracing::warn!(id, %e, "could not drop the identity reference in the kvstore");
            }
        }
    }

    /// Before the inner lock: the number of a label set this node does not
    /// hold yet comes from the kvstore now, so a slow or absent etcd stalls
    /// only this request, and at most for [`ALLOCATE_DEADLINE`]. The
    /// returned guard keeps releases of this node's references out until
    /// the caller has taken its local reference.
    pub(super) async fn reserve_identity(&self, labels: &LabelSet) -> Result<(Option<u32>, tokio::sync::MutexGuard<'_, ()>), ApiError> {
        let (mut ids, io) = self.reserve_identities(std::slice::from_ref(labels)).await?;
        Ok((ids.pop().flatten(), io))
    }

    /// [`reserve_identity`] for several label sets under one deadline.
    pub(super) async fn reserve_identities(
        &self,
        sets: &[LabelSet],
    ) -> Result<(Vec<Option<u32>>, tokio::sync::MutexGuard<'_, ()>), ApiError> {
        let io = self.ids_io.lock().await;
        let unknown: Vec<bool> = {
            let ids = self.identities.get();
            sets.iter().map(|l| !ids.holds(l)).collect()
        };
        let allocate = async {
            let mut out = Vec::with_capacity(sets.len());
            for (labels, unknown) in sets.iter().zip(unknown) {
                out.push(match unknown {
                    true => Some(self.kv.allocate(labels).await?),
                    false => None,
                });
            }
            Ok::<_, seta_kvstore::KvError>(out)
        };
        match tokio::time::timeout(ALLOCATE_DEADLINE, allocate).await {
            Ok(Ok(ids)) => Ok((ids, io)),
            Ok(Err(e)) => Err(ApiError::Unavailable(format!("identity allocation in the kvstore: {e}"))),
            Err(_) => Err(ApiError::Unavailable(format!(
                "identity allocation in the kvstore: no answer within {} s",
                ALLOCATE_DEADLINE.as_secs()
            ))),
        }
    }

    /// The local reference for a reservation from `reserve_identity`.
    pub(super) async fn take_reserved(&self, labels: &LabelSet, reserved: Option<u32>) -> Result<u32, ApiError> {
        if let Some(id) = reserved {
            let mut ids = self.identities.get();
            if !ids.holds(labels) {
                return Ok(ids.acquire_numbered(labels, id));
            }
        }
        self.acquire_identity(labels).await
    }

    /// The identity labels of a pod: its labels, its namespace and the
    /// namespace's labels, through the identity-relevant label filter.
    pub(super) fn identity_labels(&self, pod_labels: &[String], namespace: &str) -> Result<LabelSet, ApiError> {
        let mut set = LabelSet::new();
        for (i, l) in pod_labels.iter().enumerate() {
            set.insert(Label::parse(l, "k8s").map_err(|e| ApiError::BadRequest(format!("labels[{i}]: {e}")))?);
        }
        if !namespace.is_empty() {
            let ns_labels = self.policy.get().namespace_labels(namespace);
            set.insert(Label::new("k8s", "io.kubernetes.pod.namespace", namespace));
            for (k, v) in ns_labels {
                set.insert(Label::new("k8s", &format!("io.cilium.k8s.namespace.labels.{k}"), &v));
            }
        }
        Ok(self.filter.filter(&set))
    }

    pub async fn identities(&self) -> Vec<IdentityEntry> {
        let universe = self.universe();
        let ids = self.identities.get();
        let mut out: Vec<IdentityEntry> = universe
            .into_iter()
            .map(|i| IdentityEntry {
                id: i.id,
                labels: i.labels.iter().map(|l| l.to_string()).collect(),
                refcount: ids.get(i.id).map(|a| a.refcount),
            })
            .collect();
        out.sort_by_key(|e| e.id);
        out
    }
}
