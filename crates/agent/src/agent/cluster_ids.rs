//! The cluster's identities (from the kvstore watch) applied to every local
//! policy incrementally.
use super::*;
use crate::cluster::{id_of_key, parse_labels};
use seta_kvstore::reflector::Change;

impl Agent {
    /// Identities created or deleted anywhere in the cluster enter or leave
    /// every local policy (incrementally).
    pub(super) fn remote_identities_changed(&self, eps: &mut Endpoints, changes: Vec<Change>) {
        let changes = changes
            .into_iter()
            .filter_map(|(k, _old, new)| Some((id_of_key(&k)?, new.as_deref().and_then(parse_labels))));
        let churn = self.identities.get().cluster_changed(changes.collect::<Vec<_>>());
        if !churn.is_empty() {
            tracing::debug!(
                added = churn.added.len(),
                removed = churn.removed.len(),
                "cluster identities changed"
            );
            self.identities_changed(eps, &churn.added, &churn.removed, None);
        }
    }
}
