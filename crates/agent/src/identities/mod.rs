//! The identities subsystem: the identities this node's endpoints hold (by
//! label set, reference-counted, numbered by the cluster's kvstore), the
//! identities of the rest of the cluster (from the kvstore watch), and the
//! kvstore references due to be dropped. Pure: the agent does the kvstore
//! I/O (numbering before its lock, releases in a background task) and
//! tells this subsystem the outcome.
use seta_core::identity::{Allocated, IdentityAllocator, IdentityError};
use seta_core::labels::LabelSet;
use seta_core::policy::resolve::{IdKind, IdentityInfo};
use std::collections::BTreeMap;

#[cfg(test)]
mod tests;

#[derive(Default)]
pub struct Identities {
    /// held by this node's endpoints (persisted as identities.json)
    local: IdentityAllocator,
    /// every identity of the cluster (id -> labels), from the kvstore
    cluster: BTreeMap<u32, LabelSet>,
    /// identities whose last local reference went: their kvstore
    /// reference is to be dropped
    releases: Vec<u32>,
}

/// How the set of identities policies can select changed.
#[derive(Debug, Default, PartialEq)]
pub struct Churn {
    pub added: Vec<IdentityInfo>,
    pub removed: Vec<u32>,
}

impl Churn {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

impl Identities {
    pub fn new(local: IdentityAllocator) -> Self {
        Self {
            local,
            ..Default::default()
        }
    }

    /// What is persisted.
    pub fn local(&self) -> &IdentityAllocator {
        &self.local
    }

    /// Whether this node holds the label set (no kvstore round trip needed).
    pub fn holds(&self, labels: &LabelSet) -> bool {
        labels.is_empty() || self.local.contains(labels)
    }

    /// A reference on a label set this node holds (or `reserved:init` for none).
    pub fn acquire_held(&mut self, labels: &LabelSet) -> Result<u32, IdentityError> {
        self.local.acquire(labels)
    }

    /// A reference on a label set numbered `id` by the kvstore; a label set
    /// held meanwhile keeps its number.
    pub fn acquire_numbered(&mut self, labels: &LabelSet, id: u32) -> u32 {
        self.local.acquire_as(labels, id)
    }

    /// Drop a reference; with the last one the identity leaves this node
    /// and its kvstore reference is queued for release (returned).
    pub fn release(&mut self, labels: &LabelSet) -> Option<u32> {
        let id = self.local.list().find(|a| a.labels == *labels).map(|a| a.id);
        self.local.release(labels);
        let gone = id.filter(|id| self.local.get(*id).is_none())?;
        self.releases.push(gone);
        Some(gone)
    }

    /// A kvstore reference this node took but never used (a refused
    /// request): queued for release unless the label set is held now.
    pub fn release_unused(&mut self, id: u32) -> bool {
        let unused = self.local.get(id).is_none();
        if unused {
            self.releases.push(id);
        }
        unused
    }

    /// The releases due: those not taken again meanwhile.
    pub fn take_releases(&mut self) -> Vec<u32> {
        let due = std::mem::take(&mut self.releases);
        due.into_iter().filter(|id| self.local.get(*id).is_none()).collect()
    }

    /// Recount after a restart: every identity keeps its number, live
    /// endpoints take their references again (`acquire_*`), then
    /// [`finish_recount`](Self::finish_recount) frees the rest.
    pub fn start_recount(&mut self) {
        self.local.reset_refcounts();
    }

    pub fn finish_recount(&mut self) {
        self.local.drop_unreferenced();
    }

    pub fn get(&self, id: u32) -> Option<&Allocated> {
        self.local.get(id)
    }

    pub fn held(&self) -> impl Iterator<Item = &Allocated> {
        self.local.list()
    }

    /// The labels of an identity of the cluster (any node's).
    pub fn cluster_labels(&self, id: u32) -> Option<&LabelSet> {
        self.cluster.get(&id)
    }

    /// Whether anything (this node or the cluster) still uses the identity.
    pub fn in_use(&self, id: u32) -> bool {
        self.local.get(id).is_some() || self.cluster.contains_key(&id)
    }

    /// Every endpoint identity policies can select: this node's and the
    /// rest of the cluster's.
    pub fn selectable(&self) -> Vec<(u32, LabelSet)> {
        let local = self.local.list().map(|a| (a.id, a.labels.clone()));
        let remote = self
            .cluster
            .iter()
            .filter(|(id, _)| self.local.get(**id).is_none())
            .map(|(id, l)| (*id, l.clone()));
        local.chain(remote).collect()
    }

    /// The cluster's identities changed (id, new labels or None when
    /// deleted); the churn for local policies. Identities this node holds
    /// are already in every policy and cause none.
    pub fn cluster_changed(&mut self, changes: impl IntoIterator<Item = (u32, Option<LabelSet>)>) -> Churn {
        let mut churn = Churn::default();
        for (id, labels) in changes {
            let local = self.local.get(id).is_some();
            match labels {
                Some(labels) => {
                    let prev = self.cluster.insert(id, labels.clone());
                    if !local && prev.as_ref() != Some(&labels) {
                        if prev.is_some() {
                            churn.removed.push(id);
                        }
                        churn.added.push(IdentityInfo {
                            id,
                            labels,
                            kind: IdKind::Endpoint,
                        });
                    }
                }
                None => {
                    if self.cluster.remove(&id).is_some() && !local {
                        churn.removed.push(id);
                    }
                }
            }
        }
        churn
    }
}
