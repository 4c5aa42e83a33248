//! Socket-LB's namespaces: the sockets it translates are those of the
//! node's own network namespace and of this node's pods, nothing else (the
//! cgroup it attaches at may hold other processes). Pure: the agent writes
//! what `want` says through the kernel adapter.
use seta_abi::{SOCK_NETNS_HOST, SOCK_NETNS_POD};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct SockNamespaces {
    /// the node's own namespace
    pub host: Option<u64>,
    /// each endpoint's namespace, by endpoint id
    pub pods: BTreeMap<u16, u64>,
}

impl SockNamespaces {
    /// cookie -> SOCK_NETNS_* for every namespace socket-LB serves.
    pub fn want(&self) -> BTreeMap<u64, u8> {
        let mut w: BTreeMap<u64, u8> = self.pods.values().map(|c| (*c, SOCK_NETNS_POD)).collect();
        if let Some(h) = self.host {
            w.insert(h, SOCK_NETNS_HOST);
        }
        w
    }

    /// What a change from `have` to `want` writes: (cookie, Some(kind)) to
    /// set, (cookie, None) to remove.
    pub fn diff(have: &[(u64, u8)], want: &BTreeMap<u64, u8>) -> Vec<(u64, Option<u8>)> {
        let have: BTreeMap<u64, u8> = have.iter().copied().collect();
        let mut out: Vec<(u64, Option<u8>)> = have.keys().filter(|c| !want.contains_key(c)).map(|c| (*c, None)).collect();
        out.extend(want.iter().filter(|(c, k)| have.get(c) != Some(k)).map(|(c, k)| (*c, Some(*k))));
        out
    }

    /// An endpoint's namespace goes, unless another endpoint shares it.
    pub fn forget(&mut self, id: u16) -> Option<u64> {
        let c = self.pods.remove(&id)?;
        (!self.pods.values().any(|o| *o == c) && self.host != Some(c)).then_some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_of_the_node_and_its_pods_only() {
        let mut s = SockNamespaces {
            host: Some(1),
            ..Default::default()
        };
        s.pods.insert(7, 70);
        s.pods.insert(8, 80);
        s.pods.insert(9, 80); // two endpoints in one pod namespace
        let want = s.want();
        assert_eq!(
            want,
            BTreeMap::from([(1, SOCK_NETNS_HOST), (70, SOCK_NETNS_POD), (80, SOCK_NETNS_POD)])
        );
        // a stale pod namespace goes, a missing one is set, a right one stays
        let have = [(1, SOCK_NETNS_HOST), (55, SOCK_NETNS_POD), (70, SOCK_NETNS_POD)];
        assert_eq!(SockNamespaces::diff(&have, &want), vec![(55, None), (80, Some(SOCK_NETNS_POD))]);
        // the shared namespace stays while one of its endpoints does
        assert_eq!(s.forget(8), None);
        assert_eq!(s.forget(9), Some(80));
        assert_eq!(s.forget(9), None);
    }
}
