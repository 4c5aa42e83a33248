//! The ipcache reconciler: every source (local endpoints, the cluster, policy
//! CIDRs) changes only its part of the merged desired state
//! (`seta_core::ipcache`); this converges the pinned `seta_ipcache` map to it.
//! Failed writes stay pending and are retried by the periodic reconcile.
use super::*;
use ipnet::Ipv4Net;
use seta_core::ipcache::{Entry, Ipcache, Source};

/// Kernel value of a merged entry.
pub(super) fn to_kernel(e: &Entry) -> RemoteEndpointInfo {
    RemoteEndpointInfo {
        sec_identity: e.identity,
        tunnel_endpoint: e.tunnel_endpoint.map(|t| t.octets()).unwrap_or([0; 4]),
        ..Default::default()
    }
}

pub(super) fn from_kernel(v: &RemoteEndpointInfo) -> Entry {
    Entry {
        identity: v.sec_identity,
        tunnel_endpoint: (v.tunnel_endpoint != [0; 4]).then(|| Ipv4Addr::from(v.tunnel_endpoint)),
    }
}

pub(super) fn host32(ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::new(ip, 32).expect("/32")
}

/// Desired ipcache, what is installed, and what failed.
#[derive(Default)]
pub struct IpcacheState {
    pub merged: Ipcache,
    pub installed: BTreeMap<Ipv4Net, Entry>,
    /// prefix -> last error, retried by the next full reconcile
    pub failed: BTreeMap<Ipv4Net, String>,
}

impl IpcacheState {
    /// Start from what the pinned map holds (a restart is the same reconcile).
    pub fn adopt(map: &IpcacheMap) -> Self {
        let installed = map
            .list()
            .into_iter()
            .filter_map(|(ip, plen, v)| Ipv4Net::new(ip, plen).ok().map(|n| (n, from_kernel(&v))))
            .collect();
        Self {
            installed,
            ..Default::default()
        }
    }
}

impl Inner {
    /// Write the changed prefixes (or, with `full`, everything that differs)
    /// to the kernel map. Returns the number of failed writes.
    pub(super) fn reconcile_ipcache(&mut self, full: bool) -> usize {
        let st = &mut self.ipc_state;
        let mut changes = st.merged.take_changes(&st.installed);
        if full || !st.failed.is_empty() {
            changes = st.merged.diff(&st.installed);
        }
        for (net, want) in changes {
            let res = match &want {
                Some(e) => self.ipc.upsert(net.addr(), net.prefix_len(), &to_kernel(e)),
                None => self.ipc.remove(net.addr(), net.prefix_len()).map(|_| ()),
            };
            match res {
                Ok(()) => {
                    st.failed.remove(&net);
                    match want {
                        Some(e) => st.installed.insert(net, e),
                        None => st.installed.remove(&net),
                    };
                }
                Err(e) => {
                    tracing::error!(prefix = %net, %e, "ipcache update failed; will retry");
                    st.failed.insert(net, e.to_string());
                }
            }
        }
        st.failed.len()
    }

    /// A local endpoint's (or the router's) identity.
    pub(super) fn ipcache_local(&mut self, ip: Ipv4Addr, identity: Option<u32>) {
        match identity {
            Some(id) => self.ipc_state.merged.upsert(
                Source::Local,
                host32(ip),
                Entry {
                    identity: id,
                    tunnel_endpoint: None,
                },
            ),
            None => self.ipc_state.merged.remove(Source::Local, host32(ip)),
        }
        self.reconcile_ipcache(false);
    }
}
