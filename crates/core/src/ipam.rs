//! Host-scope IPAM: hands out addresses of the node's pod CIDR.
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("pod CIDR {0} is too small: it needs room for the router IP and at least one pod (prefix /30 or shorter)")]
    TooSmall(Ipv4Net),
    #[error("no free address left in {0}")]
    Exhausted(Ipv4Net),
    #[error("{ip} is not in the pod CIDR {cidr}")]
    OutOfRange { ip: Ipv4Addr, cidr: Ipv4Net },
    #[error("{0} is reserved (network, broadcast or router address)")]
    Reserved(Ipv4Addr),
    #[error("{ip} is already allocated to {owner}")]
    InUse { ip: Ipv4Addr, owner: String },
    #[error("{0} is not allocated")]
    NotAllocated(Ipv4Addr),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pool {
    pub cidr: Ipv4Net,
    /// address -> owner (e.g. "default/pod1" or a container id)
    pub allocated: BTreeMap<Ipv4Addr, String>,
}

impl Pool {
    pub fn new(cidr: Ipv4Net) -> Result<Self, IpamError> {
        let cidr = cidr.trunc();
        if cidr.prefix_len() > 30 {
            return Err(IpamError::TooSmall(cidr));
        }
        Ok(Self {
            cidr,
            allocated: BTreeMap::new(),
        })
    }

    /// The router IP (held by `seta_host`): the first host address.
    pub fn router(&self) -> Ipv4Addr {
        router_ip(self.cidr)
    }

    pub fn capacity(&self) -> usize {
        // network, broadcast and router are not for pods
        (1usize << (32 - self.cidr.prefix_len())) - 3
    }

    fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        ip == self.cidr.network() || ip == self.cidr.broadcast() || ip == self.router()
    }

    pub fn allocate(&mut self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        let first = u32::from(self.router()) + 1;
        let last = u32::from(self.cidr.broadcast());
        let ip = (first..last)
            .map(Ipv4Addr::from)
            .find(|ip| !self.allocated.contains_key(ip))
            .ok_or(IpamError::Exhausted(self.cidr))?;
        self.allocated.insert(ip, owner.to_string());
        Ok(ip)
    }

    pub fn allocate_ip(&mut self, ip: Ipv4Addr, owner: &str) -> Result<(), IpamError> {
        if !self.cidr.contains(&ip) {
            return Err(IpamError::OutOfRange { ip, cidr: self.cidr });
        }
        if self.is_reserved(ip) {
            return Err(IpamError::Reserved(ip));
        }
        match self.allocated.get(&ip) {
            Some(o) if o != owner => Err(IpamError::InUse { ip, owner: o.clone() }),
            _ => {
                self.allocated.insert(ip, owner.to_string());
                Ok(())
            }
        }
    }

    pub fn release(&mut self, ip: Ipv4Addr) -> Result<String, IpamError> {
        self.allocated.remove(&ip).ok_or(IpamError::NotAllocated(ip))
    }

    pub fn owner_of(&self, ip: Ipv4Addr) -> Option<&str> {
        self.allocated.get(&ip).map(String::as_str)
    }
}

/// The router IP of a pod CIDR: its first address (on seta_host).
pub fn router_ip(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + 1)
}

/// Cluster-pool IPAM (the operator's side): the first /`mask` subnet of
/// `cluster` that overlaps none of `used`.
pub fn next_free_subnet(cluster: Ipv4Net, mask: u8, used: &[Ipv4Net]) -> Result<Ipv4Net, String> {
    if mask < cluster.prefix_len() || mask > 30 {
        return Err(format!(
            "mask size /{mask} does not fit the cluster CIDR {cluster} (expected /{}../30)",
            cluster.prefix_len()
        ));
    }
    let overlaps = |a: &Ipv4Net, b: &Ipv4Net| a.contains(&b.network()) || b.contains(&a.network());
    cluster
        .subnets(mask)
        .map_err(|e| e.to_string())?
        .find(|s| !used.iter().any(|u| overlaps(s, u)))
        .ok_or_else(|| format!("cluster CIDR {cluster} has no free /{mask} left"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(c: &str) -> Pool {
        Pool::new(c.parse().unwrap()).unwrap()
    }

    #[test]
    fn router_and_first_allocation() {
        let mut p = pool("10.200.1.0/24");
        assert_eq!(p.router(), Ipv4Addr::new(10, 200, 1, 1));
        assert_eq!(p.allocate("a").unwrap(), Ipv4Addr::new(10, 200, 1, 2));
        assert_eq!(p.allocate("b").unwrap(), Ipv4Addr::new(10, 200, 1, 3));
        assert_eq!(p.capacity(), 253);
    }

    #[test]
    fn exhaustion_and_release() {
        let mut p = pool("10.0.0.0/30"); // .0 net, .1 router, .2 pod, .3 bcast
        assert_eq!(p.allocate("a").unwrap(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.allocate("b"), Err(IpamError::Exhausted(p.cidr)));
        assert_eq!(p.release(Ipv4Addr::new(10, 0, 0, 2)).unwrap(), "a");
        assert_eq!(
            p.release(Ipv4Addr::new(10, 0, 0, 2)),
            Err(IpamError::NotAllocated(Ipv4Addr::new(10, 0, 0, 2)))
        );
        assert_eq!(p.allocate("c").unwrap(), Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn specific_allocation_rules() {
        let mut p = pool("10.0.0.0/24");
        assert!(matches!(
            p.allocate_ip("10.0.1.5".parse().unwrap(), "x"),
            Err(IpamError::OutOfRange { .. })
        ));
        assert!(matches!(
            p.allocate_ip("10.0.0.1".parse().unwrap(), "x"),
            Err(IpamError::Reserved(_))
        ));
        assert!(matches!(
            p.allocate_ip("10.0.0.255".parse().unwrap(), "x"),
            Err(IpamError::Reserved(_))
        ));
        p.allocate_ip("10.0.0.9".parse().unwrap(), "x").unwrap();
        p.allocate_ip("10.0.0.9".parse().unwrap(), "x").unwrap(); // idempotent for same owner
        assert!(matches!(
            p.allocate_ip("10.0.0.9".parse().unwrap(), "y"),
            Err(IpamError::InUse { .. })
        ));
        assert!(Pool::new("10.0.0.0/31".parse().unwrap()).is_err());
    }

    #[test]
    fn never_hands_out_duplicates() {
        let mut p = pool("10.9.0.0/28");
        let mut seen = std::collections::BTreeSet::new();
        while let Ok(ip) = p.allocate("o") {
            assert!(seen.insert(ip));
            assert!(!p.is_reserved(ip));
        }
        assert_eq!(seen.len(), p.capacity());
    }

    #[test]
    fn cluster_pool_hands_out_the_first_free_subnet() {
        let c: Ipv4Net = "10.200.0.0/16".parse().unwrap();
        let n = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert_eq!(next_free_subnet(c, 24, &[]).unwrap(), n("10.200.0.0/24"));
        assert_eq!(
            next_free_subnet(c, 24, &[n("10.200.0.0/24"), n("10.200.2.0/24")]).unwrap(),
            n("10.200.1.0/24")
        );
        // a statically configured larger block is skipped entirely
        assert_eq!(next_free_subnet(c, 24, &[n("10.200.0.0/23")]).unwrap(), n("10.200.2.0/24"));
        assert!(next_free_subnet(n("10.0.0.0/30"), 30, &[n("10.0.0.0/30")])
            .unwrap_err()
            .contains("no free"));
        assert!(next_free_subnet(c, 8, &[]).unwrap_err().contains("does not fit"));
    }
}
