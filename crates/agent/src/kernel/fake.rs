//! An in-memory kernel for unit tests: it keeps what the real one would hold
//! (links, filters, policy maps, endpoint map, ipcache, routes) and can be
//! told to fail, so endpoint, identity, policy, cluster and ipcache logic is
//! tested without root.
use super::*;
use std::collections::BTreeSet;

/// Program id the fake's endpoint program has.
pub const PROG: u32 = 4242;

#[derive(Default)]
pub struct State {
    pub links: BTreeMap<String, LinkInfo>,
    /// ifindex -> program of the endpoint filter
    pub filters: BTreeMap<u32, u32>,
    /// registered policy maps (endpoint id -> entries)
    pub policy: BTreeMap<u16, PolicyEntries>,
    pub endpoints: BTreeMap<Ipv4Addr, EndpointInfo>,
    pub ipcache: BTreeMap<Ipv4Net, Entry>,
    pub ipblock: BTreeMap<Ipv4Addr, u32>,
    /// seta_ipmasq_v4, and how many times it was written
    pub ipmasq: BTreeMap<Ipv4Net, u8>,
    pub ipmasq_writes: usize,
    /// seta_masq_dev_v4
    pub masq_devs: BTreeMap<u32, Ipv4Addr>,
    /// the service maps
    pub lb: seta_datapath::maps::LbState,
    /// datapath counters the fake reports: (reason, direction, packets, bytes)
    pub metrics: Vec<(u8, u8, u64, u64)>,
    pub routes: BTreeMap<(Ipv4Addr, u8), Route>,
    pub pinned_devices: BTreeSet<String>,
    /// conntrack entries per IP (flushed on endpoint delete)
    pub ct: BTreeMap<Ipv4Addr, usize>,
    /// socket-LB's namespaces (cookie -> kind)
    pub sock_netns: BTreeMap<u64, u8>,
    /// IPv4 addresses of the links: (ifindex, address)
    pub addrs: Vec<(u32, Ipv4Addr)>,
    /// socket-LB's reverse entries: (socket cookie, backend)
    pub sock_rev: BTreeSet<(u64, SocketAddrV4)>,
    // --- injected failures ---
    /// attaching to these devices fails
    pub fail_attach: BTreeSet<String>,
    /// a policy map holds at most this many entries (then: MapFull)
    pub policy_capacity: Option<usize>,
    /// writes of these ipcache prefixes fail
    pub fail_ipcache: BTreeSet<Ipv4Net>,
    /// writes of the service maps fail
    pub fail_lb: bool,
    /// every change, in order ("attach lxc1", "ipcache put 10.0.0.1/32", ...)
    pub log: Vec<String>,
    next_index: u32,
}

#[derive(Default)]
pub struct Fake {
    pub st: Mutex<State>,
}

impl Fake {
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().expect("fake kernel")
    }

    /// A new device (a pod's host-side veth), as the CNI plugin would create it.
    pub fn add_link(&self, name: &str) -> LinkInfo {
        let mut st = self.state();
        st.next_index += 1;
        let index = 100 + st.next_index;
        let l = LinkInfo {
            index,
            name: name.into(),
            mac: [0x02, 0, 0, 0, (index >> 8) as u8, index as u8],
            up: true,
        };
        st.links.insert(name.into(), l.clone());
        l
    }

    pub fn remove_link(&self, name: &str) {
        let mut st = self.state();
        if let Some(l) = st.links.remove(name) {
            st.filters.remove(&l.index);
        }
    }
}

fn full(ep: u16, wanted: usize, max: usize) -> DatapathError {
    DatapathError::MapFull {
        path: format!("/fake/policy/{ep}").into(),
        wanted,
        max: max as u32,
        source: Box::new(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_update_elem",
            io_error: std::io::Error::from_raw_os_error(libc::ENOSPC),
        })),
    }
}

fn missing(what: String) -> DatapathError {
    DatapathError::Map {
        map: "seta_pol".into(),
        path: "/fake".into(),
        msg: what,
    }
}

#[async_trait::async_trait]
impl Kernel for Fake {
    async fn link(&self, name: &str) -> Result<Option<LinkInfo>> {
        Ok(self.state().links.get(name).cloned())
    }
    async fn delete_link(&self, name: &str) -> Result<bool> {
        let had = self.state().links.contains_key(name);
        self.remove_link(name);
        self.state().log.push(format!("delete link {name}"));
        Ok(had)
    }
    async fn links(&self) -> Result<Vec<LinkInfo>> {
        Ok(self.state().links.values().cloned().collect())
    }
    async fn ipv4_addrs(&self) -> Result<Vec<(u32, Ipv4Addr)>> {
        Ok(self.state().addrs.clone())
    }

    async fn endpoint_program(&self) -> Result<u32> {
        Ok(PROG)
    }
    async fn endpoint_filter(&self, ifindex: u32) -> Result<Option<u32>> {
        Ok(self.state().filters.get(&ifindex).copied())
    }
    async fn attach_endpoint(&self, cfg: EndpointProgConfig, policy: Option<PolicyEntries>) -> Result<(), DatapathError> {
        let mut st = self.state();
        if st.fail_attach.contains(&cfg.ifname) {
            return Err(DatapathError::Link {
                path: format!("/fake/{}", cfg.ifname).into(),
                msg: "injected attach failure".into(),
            });
        }
        let Some(l) = st.links.get(&cfg.ifname).cloned() else {
            return Err(DatapathError::Link {
                path: format!("/fake/{}", cfg.ifname).into(),
                msg: "no such device".into(),
            });
        };
        if let Some(p) = policy {
            if let Some(max) = st.policy_capacity.filter(|m| p.len() > *m) {
                return Err(full(cfg.ep_id, p.len(), max));
            }
            st.policy.insert(cfg.ep_id, p);
        } else {
            st.policy.entry(cfg.ep_id).or_default();
        }
        st.filters.insert(l.index, PROG);
        st.log.push(format!("attach {}", cfg.ifname));
        Ok(())
    }
    fn detach_endpoint(&self, ifname: &str) -> Result<(), DatapathError> {
        let mut st = self.state();
        if let Some(i) = st.links.get(ifname).map(|l| l.index) {
            st.filters.remove(&i);
        }
        st.log.push(format!("detach {ifname}"));
        Ok(())
    }
    fn pinned_link_devices(&self) -> Vec<String> {
        self.state().pinned_devices.iter().cloned().collect()
    }
    async fn attach_netdev(&self, dev: &str) -> Result<()> {
        let mut st = self.state();
        if st.fail_attach.contains(dev) || !st.links.contains_key(dev) {
            anyhow::bail!("attach from_netdev to {dev}: injected failure or no such device");
        }
        st.pinned_devices.insert(dev.to_string());
        st.log.push(format!("attach netdev {dev}"));
        Ok(())
    }
    fn detach_links(&self, dev: &str) -> Result<(), DatapathError> {
        self.state().pinned_devices.remove(dev);
        Ok(())
    }
    async fn attachments(&self) -> Result<Vec<Attachment>> {
        let st = self.state();
        Ok(st
            .links
            .values()
            .filter_map(|l| {
                st.filters.get(&l.index).map(|p| Attachment {
                    device: l.name.clone(),
                    ifindex: l.index,
                    direction: "ingress".into(),
                    mode: "tc".into(),
                    program: "from_container".into(),
                    prog_id: *p,
                    pinned: None,
                })
            })
            .collect())
    }

    fn policy_map_exists(&self, ep: u16) -> bool {
        self.state().policy.contains_key(&ep)
    }
    fn policy_sync(&self, ep: u16, want: &PolicyEntries) -> Result<SyncStats, DatapathError> {
        let mut st = self.state();
        let cap = st.policy_capacity;
        let m = st
            .policy
            .get_mut(&ep)
            .ok_or_else(|| missing(format!("no policy map for endpoint {ep}")))?;
        let stats = SyncStats {
            added: want.keys().filter(|k| !m.contains_key(*k)).count(),
            updated: want.iter().filter(|(k, v)| m.get(*k).is_some_and(|h| h != *v)).count(),
            removed: m.keys().filter(|k| !want.contains_key(*k)).count(),
        };
        if let Some(max) = cap.filter(|m| want.len() > *m) {
            // as the kernel's: what fits stays, nothing unwanted does
            *m = want.iter().take(max).map(|(k, v)| (*k, *v)).collect();
            return Err(full(ep, want.len(), max));
        }
        *m = want.clone();
        Ok(stats)
    }
    fn policy_apply(&self, ep: u16, upsert: &PolicyEntries, remove: &[(u32, PolicyLpmData)]) -> Result<(), DatapathError> {
        let mut st = self.state();
        let cap = st.policy_capacity;
        let m = st
            .policy
            .get_mut(&ep)
            .ok_or_else(|| missing(format!("no policy map for endpoint {ep}")))?;
        for k in remove {
            m.remove(k);
        }
        for (k, v) in upsert {
            if cap.is_some_and(|c| m.len() >= c && !m.contains_key(k)) {
                return Err(full(ep, m.len() + 1, cap.unwrap()));
            }
            m.insert(*k, *v);
        }
        Ok(())
    }
    fn policy_list(&self, ep: u16) -> Result<PolicyEntries, DatapathError> {
        self.state()
            .policy
            .get(&ep)
            .cloned()
            .ok_or_else(|| missing(format!("no policy map for endpoint {ep}")))
    }
    fn policy_map_ids(&self) -> Vec<u32> {
        self.state().policy.keys().map(|k| *k as u32).collect()
    }
    fn recycle_policy_map(&self, ep: u16) -> Result<(), DatapathError> {
        self.state().policy.insert(ep, Default::default());
        Ok(())
    }
    fn remove_endpoint_policy(&self, ep: u16) -> Result<(), DatapathError> {
        self.state().policy.remove(&ep);
        Ok(())
    }
    async fn prepare_policy_maps(&self, ids: Vec<u16>) {
        let mut st = self.state();
        for id in ids {
            st.policy.entry(id).or_default();
        }
    }

    fn endpoint_upsert(&self, ip: Ipv4Addr, info: &EndpointInfo) -> Result<(), DatapathError> {
        self.state().endpoints.insert(ip, *info);
        Ok(())
    }
    fn endpoint_remove(&self, ip: Ipv4Addr) -> Result<bool, DatapathError> {
        Ok(self.state().endpoints.remove(&ip).is_some())
    }
    fn endpoint_list(&self) -> Vec<(Ipv4Addr, EndpointInfo)> {
        self.state().endpoints.iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn ipcache_put(&self, net: Ipv4Net, e: &Entry) -> Result<(), String> {
        let mut st = self.state();
        if st.fail_ipcache.contains(&net) {
            return Err(format!("injected failure for {net}"));
        }
        st.ipcache.insert(net, *e);
        st.log.push(format!("ipcache put {net}"));
        Ok(())
    }
    fn ipcache_del(&self, net: Ipv4Net) -> Result<(), String> {
        let mut st = self.state();
        st.ipcache.remove(&net);
        st.log.push(format!("ipcache del {net}"));
        Ok(())
    }
    fn ipcache_list(&self) -> BTreeMap<Ipv4Net, Entry> {
        self.state().ipcache.clone()
    }
    fn ipblock_sync(&self, want: &BTreeMap<Ipv4Addr, u32>) -> Result<(), DatapathError> {
        self.state().ipblock = want.clone();
        Ok(())
    }
    fn ipmasq_sync(&self, want: &BTreeMap<Ipv4Net, u8>) -> Result<(), DatapathError> {
        let mut st = self.state();
        st.ipmasq_writes += 1;
        st.ipmasq = want.clone();
        Ok(())
    }
    fn masq_dev_sync(&self, want: &BTreeMap<u32, Ipv4Addr>) -> Result<(), DatapathError> {
        self.state().masq_devs = want.clone();
        Ok(())
    }
    fn lb_sync(&self, want: &seta_datapath::maps::LbState) -> Result<LbRemoved, DatapathError> {
        let mut st = self.state();
        if st.fail_lb {
            return Err(DatapathError::Map {
                map: "seta_lb4_svc".into(),
                path: "fake".into(),
                msg: "injected failure".into(),
            });
        }
        let kept: BTreeSet<_> = want.backends.values().map(|b| (b.address, b.port, b.proto)).collect();
        let gone: Vec<seta_abi::Lb4Backend> = st
            .lb
            .backends
            .values()
            .filter(|b| !kept.contains(&(b.address, b.port, b.proto)))
            .copied()
            .collect();
        let is_gone = |a: &SocketAddrV4| {
            gone.iter()
                .any(|b| b.address == a.ip().octets() && b.port == a.port().to_be_bytes())
        };
        let sockets: Vec<(u64, SocketAddrV4)> = st.sock_rev.iter().filter(|(_, a)| is_gone(a)).copied().collect();
        st.sock_rev.retain(|(_, a)| !is_gone(a));
        st.lb = want.clone();
        st.log.push("lb sync".into());
        Ok(LbRemoved { backends: gone, sockets })
    }
    fn sock_destroy(&self, netns: Option<&str>, proto: u8, targets: &[(u64, SocketAddrV4)]) -> Result<usize, DatapathError> {
        let mut st = self.state();
        for (cookie, peer) in targets {
            st.log
                .push(format!("sock destroy {} {proto} {peer} cookie {cookie}", netns.unwrap_or("host")));
        }
        Ok(0)
    }
    fn ct_flush_ip(&self, ip: Ipv4Addr) -> Result<usize, DatapathError> {
        Ok(self.state().ct.remove(&ip).unwrap_or(0))
    }
    fn ct_gc(&self) -> Result<usize, DatapathError> {
        Ok(0)
    }
    /// a cookie derived from the path (the agent's own namespace: 1)
    fn netns_cookie(&self, path: Option<&str>) -> Result<u64, DatapathError> {
        use std::hash::{Hash, Hasher};
        let Some(p) = path else { return Ok(1) };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        p.hash(&mut h);
        Ok(h.finish() | 2)
    }
    fn sock_netns_set(&self, cookie: u64, kind: Option<u8>) -> Result<(), DatapathError> {
        let mut st = self.state();
        match kind {
            Some(k) => st.sock_netns.insert(cookie, k),
            None => st.sock_netns.remove(&cookie),
        };
        Ok(())
    }
    fn sock_netns_list(&self) -> Vec<(u64, u8)> {
        self.state().sock_netns.iter().map(|(c, k)| (*c, *k)).collect()
    }
    fn datapath_metrics(&self) -> Vec<(u8, u8, u64, u64)> {
        self.state().metrics.clone()
    }

    async fn replace_route(&self, r: &Route) -> Result<()> {
        let mut st = self.state();
        st.routes.insert((r.dst, r.prefix), r.clone());
        st.log.push(format!("route {}/{}", r.dst, r.prefix));
        Ok(())
    }
    async fn delete_route(&self, net: Ipv4Addr, plen: u8) -> Result<()> {
        let mut st = self.state();
        st.routes.remove(&(net, plen));
        st.log.push(format!("route del {net}/{plen}"));
        Ok(())
    }
    async fn routes_with_protocol(&self, protocol: u8) -> Result<Vec<(Ipv4Addr, u8)>> {
        Ok(self
            .state()
            .routes
            .iter()
            .filter(|(_, r)| r.protocol == Some(protocol))
            .map(|(k, _)| *k)
            .collect())
    }
}
