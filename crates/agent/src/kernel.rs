//! The agent's one adapter to the kernel: every side effect that endpoint,
//! identity, policy, ipcache and cluster changes cause (map writes, program
//! attachments, links, routes) goes through [`Kernel`]. [`Real`] does it with
//! seta-datapath (pinned maps, cls_bpf filters, rtnetlink); the unit tests use
//! [`fake::Fake`], an in-memory model that can be told to fail.
//!
//! Node bring-up (host devices, the tunnel device, node programs) is not here:
//! it runs once in `Agent::start`, before any subsystem exists.
use anyhow::Result;
use ipnet::Ipv4Net;
use seta_abi::{EndpointInfo, PolicyLpmData};
use seta_core::api::Attachment;
use seta_core::ipcache::Entry;
use seta_datapath::maps::{CtMap, EndpointMap, IpblockMaps, IpcacheMap, PolicyEntries, PolicyMap, PolicyOuter, SyncStats};
use seta_datapath::netlink::{LinkInfo, Netlink, Route};
use seta_datapath::{Datapath, DatapathError, EndpointProgConfig};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;

#[cfg(test)]
pub mod fake;

/// What a sync of the service maps took out of the datapath.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LbRemoved {
    /// backends no frontend has any more
    pub backends: Vec<seta_abi::Lb4Backend>,
    /// the sockets socket-LB had sent to them: (socket cookie, backend)
    pub sockets: Vec<(u64, SocketAddrV4)>,
}

/// Kernel side effects of the agent's subsystems.
#[async_trait::async_trait]
pub trait Kernel: Send + Sync + 'static {
    // --- links (netlink) ---
    /// A device of this node by name.
    async fn link(&self, name: &str) -> Result<Option<LinkInfo>>;
    /// Delete a device by name; `false` when there was none.
    async fn delete_link(&self, name: &str) -> Result<bool>;
    /// This node's devices and their IPv4 addresses.
    async fn links(&self) -> Result<Vec<LinkInfo>>;
    async fn ipv4_addrs(&self) -> Result<Vec<(u32, Ipv4Addr)>>;

    // --- endpoint programs ---
    /// Kernel id of this build's shared endpoint program.
    async fn endpoint_program(&self) -> Result<u32>;
    /// Program id of the endpoint filter on `ifindex` (ingress), if any.
    async fn endpoint_filter(&self, ifindex: u32) -> Result<Option<u32>>;
    /// Attach the endpoint program to its veth; with `policy`, its policy map
    /// is filled first (enforced from the first packet).
    async fn attach_endpoint(&self, cfg: EndpointProgConfig, policy: Option<PolicyEntries>) -> Result<(), DatapathError>;
    fn detach_endpoint(&self, ifname: &str) -> Result<(), DatapathError>;
    /// Attach from_netdev to a native device (its TCX ingress, pinned).
    async fn attach_netdev(&self, dev: &str) -> Result<()>;
    /// Devices with pinned TCX links, and removing them.
    fn pinned_link_devices(&self) -> Vec<String>;
    fn detach_links(&self, dev: &str) -> Result<(), DatapathError>;
    /// Programs per device (TCX links and cls_bpf filters), for `seta bpf attachments`.
    async fn attachments(&self) -> Result<Vec<Attachment>>;

    // --- per-endpoint policy maps ---
    fn policy_map_exists(&self, ep: u16) -> bool;
    /// Make the map hold exactly `want`.
    fn policy_sync(&self, ep: u16, want: &PolicyEntries) -> Result<SyncStats, DatapathError>;
    /// Write `upsert`, remove `remove`.
    fn policy_apply(&self, ep: u16, upsert: &PolicyEntries, remove: &[(u32, PolicyLpmData)]) -> Result<(), DatapathError>;
    fn policy_list(&self, ep: u16) -> Result<PolicyEntries, DatapathError>;
    /// Endpoint ids with a registered policy map.
    fn policy_map_ids(&self) -> Vec<u32>;
    /// Empty the map and keep it registered (for the next endpoint of this id).
    fn recycle_policy_map(&self, ep: u16) -> Result<(), DatapathError>;
    fn remove_endpoint_policy(&self, ep: u16) -> Result<(), DatapathError>;
    /// Register maps for these ids ahead of time (slow: RCU grace periods).
    async fn prepare_policy_maps(&self, ids: Vec<u16>);

    // --- endpoint map (local delivery) ---
    fn endpoint_upsert(&self, ip: Ipv4Addr, info: &EndpointInfo) -> Result<(), DatapathError>;
    fn endpoint_remove(&self, ip: Ipv4Addr) -> Result<bool, DatapathError>;
    fn endpoint_list(&self) -> Vec<(Ipv4Addr, EndpointInfo)>;

    // --- ipcache, ipBlock identities, conntrack ---
    fn ipcache_put(&self, net: Ipv4Net, e: &Entry) -> Result<(), String>;
    fn ipcache_del(&self, net: Ipv4Net) -> Result<(), String>;
    fn ipcache_list(&self) -> BTreeMap<Ipv4Net, Entry>;
    fn ipblock_sync(&self, want: &BTreeMap<Ipv4Addr, u32>) -> Result<(), DatapathError>;
    /// Make `seta_ipmasq_v4` (destinations masquerade leaves alone) hold
    /// exactly `want` (range -> IPMASQ_F_* sources).
    fn ipmasq_sync(&self, want: &BTreeMap<Ipv4Net, u8>) -> Result<(), DatapathError>;
    /// Make `seta_masq_dev_v4` (the address BPF masquerade gives a
    /// connection leaving by each native device) hold exactly `want`
    /// (ifindex -> address).
    fn masq_dev_sync(&self, want: &BTreeMap<u32, Ipv4Addr>) -> Result<(), DatapathError>;
    /// Make the service maps hold exactly `want` (a blocking map walk); the
    /// translations to backends that went are forgotten. Returns those
    /// backends and the sockets socket-LB had sent to them.
    fn lb_sync(&self, want: &seta_datapath::maps::LbState) -> Result<LbRemoved, DatapathError>;
    /// Close the sockets of `proto` that are one of `targets` (socket cookie
    /// and peer) in the network namespace at `netns` (None: the agent's);
    /// how many.
    fn sock_destroy(&self, netns: Option<&str>, proto: u8, targets: &[(u64, SocketAddrV4)]) -> Result<usize, DatapathError>;
    /// Drop conntrack entries of `ip`; how many went.
    fn ct_flush_ip(&self, ip: Ipv4Addr) -> Result<usize, DatapathError>;
    /// Drop expired conntrack entries; how many went.
    fn ct_gc(&self) -> Result<usize, DatapathError>;

    // --- socket-LB ---
    /// The cookie of the network namespace at `path` (None: the agent's own).
    fn netns_cookie(&self, path: Option<&str>) -> Result<u64, DatapathError>;
    /// Socket-LB translates the sockets of these namespaces (cookie ->
    /// SOCK_NETNS_HOST | SOCK_NETNS_POD); `None` removes one.
    fn sock_netns_set(&self, cookie: u64, kind: Option<u8>) -> Result<(), DatapathError>;
    /// The namespaces socket-LB translates now.
    fn sock_netns_list(&self) -> Vec<(u64, u8)>;
    /// The datapath's counters summed over CPUs: (reason, direction, packets, bytes).
    fn datapath_metrics(&self) -> Vec<(u8, u8, u64, u64)>;

    // --- routes to other nodes' pod CIDRs (tagged with a protocol number) ---
    async fn replace_route(&self, r: &Route) -> Result<()>;
    async fn delete_route(&self, net: Ipv4Addr, plen: u8) -> Result<()>;
    async fn routes_with_protocol(&self, protocol: u8) -> Result<Vec<(Ipv4Addr, u8)>>;
}

/// The kernel: pinned maps and programs under the node's pin directory, and
/// rtnetlink in the agent's network namespace.
pub struct Real {
    dp: Datapath,
    nl: Netlink,
    eps: Mutex<EndpointMap>,
    ipc: Mutex<IpcacheMap>,
    /// what the service maps hold since the last sync (None: read them)
    lb: Mutex<Option<seta_datapath::maps::LbState>>,
}

impl Real {
    pub fn new(dp: Datapath, nl: Netlink) -> Result<Self> {
        let eps = EndpointMap::open(dp.pin_dir())?;
        let ipc = IpcacheMap::open(dp.pin_dir())?;
        Ok(Self {
            dp,
            nl,
            eps: Mutex::new(eps),
            ipc: Mutex::new(ipc),
            lb: Mutex::new(None),
        })
    }
}

/// Kernel value of a merged ipcache entry.
pub fn to_kernel(e: &Entry) -> seta_abi::RemoteEndpointInfo {
    seta_abi::RemoteEndpointInfo {
        sec_identity: e.identity,
        tunnel_endpoint: e.tunnel_endpoint.map(|t| t.octets()).unwrap_or([0; 4]),
        ..Default::default()
    }
}

pub fn from_kernel(v: &seta_abi::RemoteEndpointInfo) -> Entry {
    Entry {
        identity: v.sec_identity,
        tunnel_endpoint: (v.tunnel_endpoint != [0; 4]).then(|| Ipv4Addr::from(v.tunnel_endpoint)),
    }
}

#[async_trait::async_trait]
impl Kernel for Real {
    async fn link(&self, name: &str) -> Result<Option<LinkInfo>> {
        Ok(self.nl.link(name).await?)
    }
    async fn delete_link(&self, name: &str) -> Result<bool> {
        Ok(self.nl.del_link_by_name(name).await?)
    }
    async fn links(&self) -> Result<Vec<LinkInfo>> {
        Ok(self.nl.links().await?)
    }
    async fn ipv4_addrs(&self) -> Result<Vec<(u32, Ipv4Addr)>> {
        Ok(self.nl.ipv4_addrs().await?)
    }

    async fn endpoint_program(&self) -> Result<u32> {
        let dp = self.dp.clone();
        Ok(tokio::task::spawn_blocking(move || dp.lxc_prog_id()).await??)
    }
    async fn endpoint_filter(&self, ifindex: u32) -> Result<Option<u32>> {
        Ok(self
            .nl
            .tc_bpf_filters(ifindex, true)
            .await?
            .iter()
            .find(|f| {
                f.priority == seta_datapath::loader::ENDPOINT_FILTER_PRIORITY && f.handle == seta_datapath::loader::ENDPOINT_FILTER_HANDLE
            })
            .map(|f| f.prog_id))
    }
    async fn attach_endpoint(&self, cfg: EndpointProgConfig, policy: Option<PolicyEntries>) -> Result<(), DatapathError> {
        let dp = self.dp.clone();
        tokio::task::spawn_blocking(move || dp.attach_endpoint(&cfg, policy.as_ref()))
            .await
            .map_err(|e| DatapathError::Io {
                what: "attach task".into(),
                source: std::io::Error::other(e.to_string()),
            })?
    }
    fn detach_endpoint(&self, ifname: &str) -> Result<(), DatapathError> {
        self.dp.detach_endpoint(ifname)
    }
    async fn attach_netdev(&self, dev: &str) -> Result<()> {
        let (dp, dev) = (self.dp.clone(), dev.to_string());
        Ok(tokio::task::spawn_blocking(move || dp.attach_netdev(&dev)).await??)
    }
    fn pinned_link_devices(&self) -> Vec<String> {
        self.dp.pinned_link_devices()
    }
    fn detach_links(&self, dev: &str) -> Result<(), DatapathError> {
        self.dp.detach_links(dev)
    }
    async fn attachments(&self) -> Result<Vec<Attachment>> {
        let links = self.nl.links().await?;
        let mut out = Vec::new();
        for l in &links {
            for (ingress, dir) in [(true, "ingress"), (false, "egress")] {
                for f in self.nl.tc_bpf_filters(l.index, ingress).await.unwrap_or_default() {
                    out.push(Attachment {
                        device: l.name.clone(),
                        ifindex: l.index,
                        direction: dir.into(),
                        mode: "tc".into(),
                        program: f.name,
                        prog_id: f.prog_id,
                        pinned: None,
                    });
                }
            }
        }
        let dp = self.dp.clone();
        let tcx = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for l in links {
                let Ok(progs) = seta_datapath::loader::query_tcx(&l.name) else {
                    continue;
                };
                for (dir, name, id) in progs {
                    let pin = dp.link_pin(&l.name, &dir);
                    out.push(Attachment {
                        device: l.name.clone(),
                        ifindex: l.index,
                        direction: dir,
                        mode: "tcx".into(),
                        program: name,
                        prog_id: id,
                        pinned: pin.exists().then(|| pin.display().to_string()),
                    });
                }
            }
            out
        })
        .await?;
        out.extend(tcx);
        out.sort_by(|a, b| (a.ifindex, &a.direction).cmp(&(b.ifindex, &b.direction)));
        Ok(out)
    }

    fn policy_map_exists(&self, ep: u16) -> bool {
        self.dp.policy_pin(ep).exists()
    }
    fn policy_sync(&self, ep: u16, want: &PolicyEntries) -> Result<SyncStats, DatapathError> {
        PolicyMap::open_pinned(&self.dp.policy_pin(ep))?.sync(want)
    }
    fn policy_apply(&self, ep: u16, upsert: &PolicyEntries, remove: &[(u32, PolicyLpmData)]) -> Result<(), DatapathError> {
        PolicyMap::open_pinned(&self.dp.policy_pin(ep))?.apply(upsert, remove)
    }
    fn policy_list(&self, ep: u16) -> Result<PolicyEntries, DatapathError> {
        Ok(PolicyMap::open_pinned(&self.dp.policy_pin(ep))?.list())
    }
    fn policy_map_ids(&self) -> Vec<u32> {
        PolicyOuter::open(self.dp.pin_dir()).map(|o| o.ids()).unwrap_or_default()
    }
    fn recycle_policy_map(&self, ep: u16) -> Result<(), DatapathError> {
        self.dp.recycle_policy_map(ep)
    }
    fn remove_endpoint_policy(&self, ep: u16) -> Result<(), DatapathError> {
        self.dp.remove_endpoint_policy(ep)
    }
    async fn prepare_policy_maps(&self, ids: Vec<u16>) {
        let dp = self.dp.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for id in ids {
                if let Err(e) = dp.ensure_policy_map(id) {
                    tracing::warn!(id, %e, "could not prepare a spare policy map");
                }
            }
        })
        .await;
    }

    fn endpoint_upsert(&self, ip: Ipv4Addr, info: &EndpointInfo) -> Result<(), DatapathError> {
        self.eps.lock().expect("endpoint map").upsert(ip, info)
    }
    fn endpoint_remove(&self, ip: Ipv4Addr) -> Result<bool, DatapathError> {
        self.eps.lock().expect("endpoint map").remove(ip)
    }
    fn endpoint_list(&self) -> Vec<(Ipv4Addr, EndpointInfo)> {
        self.eps.lock().expect("endpoint map").list()
    }

    fn ipcache_put(&self, net: Ipv4Net, e: &Entry) -> Result<(), String> {
        self.ipc
            .lock()
            .expect("ipcache")
            .upsert(net.addr(), net.prefix_len(), &to_kernel(e))
            .map_err(|e| e.to_string())
    }
    fn ipcache_del(&self, net: Ipv4Net) -> Result<(), String> {
        self.ipc
            .lock()
            .expect("ipcache")
            .remove(net.addr(), net.prefix_len())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn ipcache_list(&self) -> BTreeMap<Ipv4Net, Entry> {
        self.ipc
            .lock()
            .expect("ipcache")
            .list()
            .into_iter()
            .filter_map(|(ip, plen, v)| Ipv4Net::new(ip, plen).ok().map(|n| (n, from_kernel(&v))))
            .collect()
    }
    fn ipblock_sync(&self, want: &BTreeMap<Ipv4Addr, u32>) -> Result<(), DatapathError> {
        IpblockMaps::open(self.dp.pin_dir())?.sync(want)
    }
    fn ipmasq_sync(&self, want: &BTreeMap<Ipv4Net, u8>) -> Result<(), DatapathError> {
        seta_datapath::maps::IpmasqMap::open(self.dp.pin_dir())?.sync(want)
    }
    fn masq_dev_sync(&self, want: &BTreeMap<u32, Ipv4Addr>) -> Result<(), DatapathError> {
        seta_datapath::maps::MasqDevMap::open(self.dp.pin_dir())?.sync(want)
    }
    fn lb_sync(&self, want: &seta_datapath::maps::LbState) -> Result<LbRemoved, DatapathError> {
        let mut have = self.lb.lock().unwrap_or_else(|p| p.into_inner());
        let mut maps = seta_datapath::maps::LbMaps::open(self.dp.pin_dir())?;
        let from = have.take().unwrap_or_else(|| maps.list());
        // on an error `have` stays None: the next sync reads the maps again
        let gone = maps.sync_from(&from, want)?;
        *have = Some(want.clone());
        drop(have);
        // the maps hold `want` now; a purge that fails leaves stale entries
        // that point nowhere (the datapath re-selects), not a failed sync
        let sockets = match seta_datapath::maps::purge_backends(self.dp.pin_dir(), &gone) {
            Ok(p) => p.sockets,
            Err(e) => {
                tracing::warn!(%e, "forgetting translations to removed backends");
                vec![]
            }
        };
        Ok(LbRemoved { backends: gone, sockets })
    }
    fn sock_destroy(&self, netns: Option<&str>, proto: u8, targets: &[(u64, SocketAddrV4)]) -> Result<usize, DatapathError> {
        seta_datapath::sockdiag::destroy_sockets(netns.map(std::path::Path::new), proto, targets).map_err(|source| DatapathError::Io {
            what: format!("closing sockets to {targets:?} in {}", netns.unwrap_or("the agent's namespace")),
            source,
        })
    }
    fn ct_flush_ip(&self, ip: Ipv4Addr) -> Result<usize, DatapathError> {
        CtMap::open(self.dp.pin_dir())?.flush_ip(ip)
    }
    fn ct_gc(&self) -> Result<usize, DatapathError> {
        CtMap::open(self.dp.pin_dir())?.flush(true)
    }
    fn netns_cookie(&self, path: Option<&str>) -> Result<u64, DatapathError> {
        seta_datapath::maps::netns_cookie(path.map(std::path::Path::new)).map_err(|source| DatapathError::Io {
            what: format!("network namespace cookie of {}", path.unwrap_or("the agent's namespace")),
            source,
        })
    }
    fn sock_netns_set(&self, cookie: u64, kind: Option<u8>) -> Result<(), DatapathError> {
        let mut m = seta_datapath::maps::SockMaps::open(self.dp.pin_dir())?;
        match kind {
            Some(k) => m.netns_put(cookie, k),
            None => m.netns_remove(cookie),
        }
    }
    fn sock_netns_list(&self) -> Vec<(u64, u8)> {
        seta_datapath::maps::SockMaps::open(self.dp.pin_dir())
            .map(|m| m.netns_list())
            .unwrap_or_default()
    }
    fn datapath_metrics(&self) -> Vec<(u8, u8, u64, u64)> {
        seta_datapath::maps::MetricsMap::open(self.dp.pin_dir())
            .map(|m| m.totals().into_iter().map(|(r, d, v)| (r, d, v.count, v.bytes)).collect())
            .unwrap_or_default()
    }

    async fn replace_route(&self, r: &Route) -> Result<()> {
        Ok(self.nl.replace_route_with(r).await?)
    }
    async fn delete_route(&self, net: Ipv4Addr, plen: u8) -> Result<()> {
        Ok(self.nl.del_route(net, plen).await?)
    }
    async fn routes_with_protocol(&self, protocol: u8) -> Result<Vec<(Ipv4Addr, u8)>> {
        Ok(self.nl.routes_with_protocol(protocol).await?)
    }
}

/// The ipcache reconciler writes through the kernel adapter.
impl crate::ipcache::IpcacheSink for &dyn Kernel {
    fn put(&mut self, net: Ipv4Net, e: &Entry) -> Result<(), String> {
        self.ipcache_put(net, e)
    }
    fn del(&mut self, net: Ipv4Net) -> Result<(), String> {
        self.ipcache_del(net)
    }
}
