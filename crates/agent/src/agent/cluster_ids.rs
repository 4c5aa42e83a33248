//! The cluster's identities (from the kvstore watch) applied to every local
//! policy incrementally.
use super::cluster::{id_of_key, parse_labels};
use super::*;
use seta_kvstore::reflector::Change;

impl Agent {
    /// Identities created or deleted anywhere in the cluster enter or leave
    /// every local policy (incrementally).
    pub(super) fn remote_identities_changed(&self, inner: &mut Inner, changes: Vec<Change>) {
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for (k, _old, new) in changes {
            let Some(id) = id_of_key(&k) else { continue };
            let local = inner.identities.get(id).is_some();
            match new.as_deref().and_then(parse_labels) {
                Some(labels) => {
                    let prev = inner.cluster.remote_ids.insert(id, labels.clone());
                    if !local && prev.as_ref() != Some(&labels) {
                        if prev.is_some() {
                            removed.push(id);
                        }
                        added.push(IdentityInfo {
                            id,
                            labels,
                            kind: IdKind::Endpoint,
                        });
                    }
                }
                None => {
                    if inner.cluster.remote_ids.remove(&id).is_some() && !local {
                        removed.push(id);
                    }
                }
            }
        }
        if !added.is_empty() || !removed.is_empty() {
            tracing::debug!(added = added.len(), removed = removed.len(), "cluster identities changed");
            self.identities_changed(inner, &added, &removed, None);
        }
    }
}
