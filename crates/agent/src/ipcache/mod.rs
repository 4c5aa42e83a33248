//! The ipcache reconciler: every source (local endpoints, the cluster, policy
//! CIDRs) changes only its part of the merged desired state
//! (`seta_core::ipcache`); this converges the pinned `seta_ipcache` map to it.
//! Failed writes stay pending and are retried by the periodic reconcile.
//! The subsystem owns its state and lock; the agent tells it what each
//! source wants.
use crate::kernel::Kernel;
use ipnet::Ipv4Net;
use seta_core::ipcache::{Entry, Ipcache, Source};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

pub fn host32(ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::new(ip, 32).expect("/32")
}

/// Desired ipcache, what is installed, and what failed.
#[derive(Default)]
pub struct IpcacheState {
    pub merged: Ipcache,
    pub installed: BTreeMap<Ipv4Net, Entry>,
    /// prefix -> last error, retried by the next full reconcile
    pub failed: BTreeMap<Ipv4Net, String>,
    /// counts the writes to `installed` (its readers tell a change by it)
    pub generation: u64,
}

impl IpcacheState {
    /// Start from what the kernel holds (a restart is the same reconcile).
    pub fn adopt(k: &dyn crate::kernel::Kernel) -> Self {
        Self {
            installed: k.ipcache_list(),
            ..Default::default()
        }
    }
}

/// Where the ipcache reconciler writes: the pinned map, or a fake in tests.
pub trait IpcacheSink {
    fn put(&mut self, net: Ipv4Net, e: &Entry) -> Result<(), String>;
    fn del(&mut self, net: Ipv4Net) -> Result<(), String>;
}

impl IpcacheState {
    /// Write the changed prefixes (or, with `full` or while writes are
    /// pending, everything that differs) to `sink`; failed writes stay
    /// pending with their error. Returns the number pending.
    pub fn reconcile(&mut self, sink: &mut impl IpcacheSink, full: bool) -> usize {
        let mut changes = self.merged.take_changes(&self.installed);
        if full || !self.failed.is_empty() {
            changes = self.merged.diff(&self.installed);
        }
        for (net, want) in changes {
            let res = match &want {
                Some(e) => sink.put(net, e),
                None => sink.del(net),
            };
            match res {
                Ok(()) => {
                    self.failed.remove(&net);
                    self.generation += 1;
                    match want {
                        Some(e) => self.installed.insert(net, e),
                        None => self.installed.remove(&net),
                    };
                }
                Err(e) => {
                    tracing::error!(prefix = %net, %e, "ipcache update failed; will retry");
                    self.failed.insert(net, e);
                }
            }
        }
        self.failed.len()
    }
}

/// The ipcache subsystem: the merged desired state and the kernel map it
/// converges (every write is a map syscall of a few microseconds).
pub struct IpcacheSubsystem {
    state: IpcacheState,
    kernel: Arc<dyn Kernel>,
}

impl IpcacheSubsystem {
    /// Start from what the kernel holds; the router is the host.
    pub fn adopt(kernel: Arc<dyn Kernel>, router: Ipv4Addr, host_id: u32) -> Self {
        let mut state = IpcacheState::adopt(kernel.as_ref());
        state.merged.upsert(
            Source::Local,
            host32(router),
            Entry {
                identity: host_id,
                tunnel_endpoint: None,
            },
        );
        Self { state, kernel }
    }

    /// Entries the kernel holds (as written; at start, as adopted).
    pub fn installed(&self) -> &BTreeMap<Ipv4Net, Entry> {
        &self.state.installed
    }

    /// Changes when `installed` does.
    pub fn generation(&self) -> u64 {
        self.state.generation
    }

    /// Keep an entry of `source` without writing it yet.
    pub fn keep(&mut self, source: Source, net: Ipv4Net, e: Entry) {
        self.state.merged.upsert(source, net, e);
    }

    /// Write the changed prefixes (or, with `full`, everything that differs)
    /// to the kernel map. Returns the number of failed writes.
    pub fn reconcile(&mut self, full: bool) -> usize {
        self.state.reconcile(&mut &*self.kernel, full)
    }

    /// A local endpoint's (or the router's) identity, written now; the
    /// error of its write, if it failed.
    pub fn set_local(&mut self, ip: Ipv4Addr, identity: Option<u32>) -> Result<(), String> {
        match identity {
            Some(id) => self.state.merged.upsert(
                Source::Local,
                host32(ip),
                Entry {
                    identity: id,
                    tunnel_endpoint: None,
                },
            ),
            None => self.state.merged.remove(Source::Local, host32(ip)),
        }
        self.reconcile(false);
        match self.state.failed.get(&host32(ip)) {
            Some(err) => Err(err.clone()),
            None => Ok(()),
        }
    }

    /// Make `source`'s part equal `want` and write the difference. Returns
    /// how many prefixes came and went.
    pub fn replace_source(&mut self, source: Source, want: &BTreeMap<Ipv4Net, Entry>) -> (usize, usize) {
        let before = self.state.merged.source(source);
        let up = want.iter().filter(|(k, v)| before.get(k) != Some(v)).count();
        let down = before.keys().filter(|k| !want.contains_key(k)).count();
        self.state.merged.replace_source(source, want);
        self.reconcile(false);
        (up, down)
    }

    pub fn failed(&self) -> &BTreeMap<Ipv4Net, String> {
        &self.state.failed
    }

    pub fn winner(&self, ip: Ipv4Addr) -> Option<(Source, Entry)> {
        self.state.merged.winner(host32(ip))
    }

    /// Pod IPs of the cluster (local and remote) with an allocated identity
    /// below `below`.
    pub fn pod_ips(&self, below: u32) -> Vec<Ipv4Addr> {
        self.state
            .merged
            .pod_ips()
            .filter(|(_, _, id)| *id >= seta_core::identity::MIN_ALLOCATED && *id < below)
            .map(|(ip, _, _)| ip)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake map: what it holds, and prefixes whose writes fail.
    #[derive(Default)]
    struct Fake {
        held: BTreeMap<Ipv4Net, Entry>,
        broken: std::collections::BTreeSet<Ipv4Net>,
        writes: usize,
    }

    impl IpcacheSink for Fake {
        fn put(&mut self, net: Ipv4Net, e: &Entry) -> Result<(), String> {
            self.writes += 1;
            if self.broken.contains(&net) {
                return Err(format!("injected failure for {net}"));
            }
            self.held.insert(net, *e);
            Ok(())
        }
        fn del(&mut self, net: Ipv4Net) -> Result<(), String> {
            self.writes += 1;
            self.held.remove(&net);
            Ok(())
        }
    }

    fn e(id: u32, tun: Option<[u8; 4]>) -> Entry {
        Entry {
            identity: id,
            tunnel_endpoint: tun.map(Ipv4Addr::from),
        }
    }

    #[test]
    fn sources_keep_their_entries_failed_writes_retry_and_a_restart_converges() {
        let pod: Ipv4Net = "10.200.2.5/32".parse().unwrap();
        let other: Ipv4Net = "10.200.2.6/32".parse().unwrap();
        let world: Ipv4Net = "10.0.0.0/8".parse().unwrap();
        let mut st = IpcacheState::default();
        let mut map = Fake::default();
        // a remote pod, then a CIDR policy covering it: the pod keeps its entry
        st.merged.upsert(Source::Cluster, pod, e(300, Some([172, 30, 0, 2])));
        st.merged.upsert(Source::Cluster, other, e(301, Some([172, 30, 0, 2])));
        assert_eq!(st.reconcile(&mut map, false), 0);
        let before = map.held.clone();
        st.merged.replace_source(
            Source::Cidr,
            &[(pod, e(16777217, None)), (world, e(16777218, None))].into_iter().collect(),
        );
        map.broken.insert(world);
        assert_eq!(st.reconcile(&mut map, false), 1, "the world /8 write failed and is pending");
        assert_eq!(map.held[&pod], before[&pod], "a CIDR never replaces a pod's entry");
        assert!(st.failed.contains_key(&world));
        // the cause goes away: the next reconcile writes it
        map.broken.clear();
        assert_eq!(st.reconcile(&mut map, false), 0);
        assert_eq!(map.held[&world].identity, 16777218);
        // the policy goes: back to exactly what was there
        st.merged.replace_source(Source::Cidr, &Default::default());
        st.reconcile(&mut map, false);
        assert_eq!(map.held, before);
        // a restart adopts what the kernel holds and converges in one full pass
        let mut restarted = IpcacheState {
            installed: map.held.clone(),
            ..Default::default()
        };
        restarted.merged.upsert(Source::Cluster, pod, e(300, Some([172, 30, 0, 2])));
        let writes = map.writes;
        assert_eq!(restarted.reconcile(&mut map, true), 0);
        assert!(!map.held.contains_key(&other), "what no source wants any more goes");
        assert_eq!(map.writes, writes + 1, "only the difference is written");
    }
}
