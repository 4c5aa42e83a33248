//! Numeric security identities: reserved ones with Cilium's numbers, and a
//! reference-counted allocator for label sets from 256 upwards.
use crate::labels::{labels_key, LabelSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const ID_UNKNOWN: u32 = 0;
pub const ID_HOST: u32 = 1;
pub const ID_WORLD: u32 = 2;
pub const ID_UNMANAGED: u32 = 3;
pub const ID_HEALTH: u32 = 4;
pub const ID_INIT: u32 = 5;
pub const ID_REMOTE_NODE: u32 = 6;
pub const ID_KUBE_APISERVER: u32 = 7;
pub const ID_INGRESS: u32 = 8;
pub const MIN_ALLOCATED: u32 = 256;
pub const MAX_ALLOCATED: u32 = 65535;

pub fn reserved_name(id: u32) -> Option<&'static str> {
    Some(match id {
        ID_HOST => "host",
        ID_WORLD => "world",
        ID_UNMANAGED => "unmanaged",
        ID_HEALTH => "health",
        ID_INIT => "init",
        ID_REMOTE_NODE => "remote-node",
        ID_KUBE_APISERVER => "kube-apiserver",
        ID_INGRESS => "ingress",
        _ => return None,
    })
}

/// A reserved identity by its name (`world`, `host`, …), as Cilium's
/// `identity.GetReservedID`.
pub fn reserved_id(name: &str) -> Option<u32> {
    (ID_HOST..=ID_INGRESS).find(|id| reserved_name(*id) == Some(name))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("identity space {MIN_ALLOCATED}..={MAX_ALLOCATED} is exhausted")]
    Exhausted,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Allocated {
    pub id: u32,
    pub labels: LabelSet,
    /// references of this node's endpoints: counted again from the endpoints
    /// at every start, so not persisted
    #[serde(skip)]
    pub refcount: u32,
}

/// Node-local allocator (the cluster-wide kvstore backend comes later).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityAllocator {
    by_key: BTreeMap<String, Allocated>,
}

impl IdentityAllocator {
    /// Take a reference on the identity of `labels`, allocating it if needed.
    /// An endpoint without labels is `reserved:init`.
    pub fn acquire(&mut self, labels: &LabelSet) -> Result<u32, IdentityError> {
        if labels.is_empty() {
            return Ok(ID_INIT);
        }
        let key = labels_key(labels);
        if let Some(a) = self.by_key.get_mut(&key) {
            a.refcount += 1;
            return Ok(a.id);
        }
        let used: std::collections::BTreeSet<u32> = self.by_key.values().map(|a| a.id).collect();
        let id = (MIN_ALLOCATED..=MAX_ALLOCATED)
            .find(|i| !used.contains(i))
            .ok_or(IdentityError::Exhausted)?;
        self.by_key.insert(
            key,
            Allocated {
                id,
                labels: labels.clone(),
                refcount: 1,
            },
        );
        Ok(id)
    }

    /// Take a reference on `labels` with an id chosen elsewhere (the cluster's
    /// kvstore); an existing local entry keeps its id.
    pub fn acquire_as(&mut self, labels: &LabelSet, id: u32) -> u32 {
        let key = labels_key(labels);
        let a = self.by_key.entry(key).or_insert_with(|| Allocated {
            id,
            labels: labels.clone(),
            refcount: 0,
        });
        a.refcount += 1;
        a.id
    }

    pub fn contains(&self, labels: &LabelSet) -> bool {
        self.by_key.contains_key(&labels_key(labels))
    }

    /// Drop a reference; the identity is freed when the last one goes.
    pub fn release(&mut self, labels: &LabelSet) {
        let key = labels_key(labels);
        if let Some(a) = self.by_key.get_mut(&key) {
            a.refcount = a.refcount.saturating_sub(1);
            if a.refcount == 0 {
                self.by_key.remove(&key);
            }
        }
    }

    /// Start a recount (agent restart): every identity keeps its number, its
    /// references are re-taken by the endpoints that still exist, and
    /// [`Self::drop_unreferenced`] then frees the rest.
    pub fn reset_refcounts(&mut self) {
        for a in self.by_key.values_mut() {
            a.refcount = 0;
        }
    }

    pub fn drop_unreferenced(&mut self) {
        self.by_key.retain(|_, a| a.refcount > 0);
    }

    pub fn list(&self) -> impl Iterator<Item = &Allocated> {
        self.by_key.values()
    }

    pub fn get(&self, id: u32) -> Option<&Allocated> {
        self.by_key.values().find(|a| a.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::parse_list;

    #[test]
    fn same_labels_same_id_and_refcount() {
        let mut a = IdentityAllocator::default();
        let l1 = parse_list("app=a", "k8s").unwrap();
        let l2 = parse_list("app=b", "k8s").unwrap();
        let i1 = a.acquire(&l1).unwrap();
        assert_eq!(i1, 256);
        assert_eq!(a.acquire(&l1).unwrap(), i1);
        let i2 = a.acquire(&l2).unwrap();
        assert_ne!(i1, i2);
        a.release(&l1);
        assert!(a.get(i1).is_some());
        a.release(&l1);
        assert!(a.get(i1).is_none());
        assert_eq!(a.acquire(&LabelSet::new()).unwrap(), ID_INIT);
        // a restart recount keeps numbers stable even when lower ids are free
        let l3 = parse_list("app=c", "k8s").unwrap();
        let i3 = a.acquire(&l3).unwrap();
        a.release(&l2);
        a.reset_refcounts();
        assert_eq!(a.acquire(&l3).unwrap(), i3, "same number after a recount");
        a.drop_unreferenced();
        assert!(a.get(i2).is_none());
        assert_eq!(a.acquire(&l2).unwrap(), i2, "freed numbers are reused");
        // survives a serialisation round trip (agent restart)
        let json = serde_json::to_string(&a).unwrap();
        let mut b: IdentityAllocator = serde_json::from_str(&json).unwrap();
        assert_eq!(b.acquire(&l2).unwrap(), i2);
    }
}
