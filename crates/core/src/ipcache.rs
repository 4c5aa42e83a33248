//! The ipcache as one merge of every source (pure).
//!
//! Several sources want entries in the node's `prefix -> identity` map: the
//! node's own endpoints, the rest of the cluster (other nodes' pods and
//! addresses, from the kvstore) and the CIDRs that policies name. Each
//! source owns its entries; for a prefix wanted by several, the one with the
//! highest precedence is installed ([`Source`] order: local endpoints, then
//! the node's own addresses, then cluster, then CIDR identities). So a policy's CIDR can never change how a
//! pod IP is identified, and withdrawing a source reveals the next one
//! instead of leaving a hole.
//!
//! [`Ipcache::diff`] compares the merged desired state with what is
//! installed and returns the changes a reconciler applies.
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Who wants an entry. Lower = higher precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// this node's endpoints, its router IP
    Local,
    /// this node's own addresses (the host identity, as Cilium's host IP sync)
    Host,
    /// other nodes' pods and addresses (kvstore)
    Cluster,
    /// prefixes named by policies (node-local identities)
    Cidr,
}

/// One ipcache value: the identity and, for a remote pod in tunnel mode, the
/// node to tunnel to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Entry {
    pub identity: u32,
    pub tunnel_endpoint: Option<Ipv4Addr>,
}

/// The node's own addresses that are the host in the ipcache (Cilium's
/// local addresses): every IPv4 address of the node's devices but loopback,
/// link-local, multicast and the unspecified one.
pub fn host_addresses(addrs: impl IntoIterator<Item = Ipv4Addr>) -> std::collections::BTreeSet<Ipv4Addr> {
    addrs
        .into_iter()
        .filter(|a| !(a.is_loopback() || a.is_link_local() || a.is_multicast() || a.is_unspecified() || a.is_broadcast()))
        .collect()
}

/// A change for the reconciler: install `Some(entry)` at the prefix, or
/// remove it (`None`).
pub type Change = (Ipv4Net, Option<Entry>);

#[derive(Debug, Default, Clone)]
pub struct Ipcache {
    wants: BTreeMap<Ipv4Net, BTreeMap<Source, Entry>>,
    /// prefixes changed since the last [`Self::take_changes`]
    dirty: std::collections::BTreeSet<Ipv4Net>,
}

impl Ipcache {
    pub fn new() -> Self {
        Self::default()
    }

    /// `source` wants `entry` at `prefix`.
    pub fn upsert(&mut self, source: Source, prefix: Ipv4Net, entry: Entry) {
        self.wants.entry(prefix.trunc()).or_default().insert(source, entry);
        self.dirty.insert(prefix.trunc());
    }

    /// `source` no longer wants `prefix`.
    pub fn remove(&mut self, source: Source, prefix: Ipv4Net) {
        let p = prefix.trunc();
        if let Some(m) = self.wants.get_mut(&p) {
            if m.remove(&source).is_some() {
                self.dirty.insert(p);
            }
            if m.is_empty() {
                self.wants.remove(&p);
            }
        }
    }

    /// Make `source`'s entries exactly `want` (others' untouched).
    pub fn replace_source(&mut self, source: Source, want: &BTreeMap<Ipv4Net, Entry>) {
        let stale: Vec<Ipv4Net> = self
            .wants
            .iter()
            .filter(|(p, m)| m.contains_key(&source) && !want.contains_key(p))
            .map(|(p, _)| *p)
            .collect();
        for p in stale {
            self.remove(source, p);
        }
        for (p, e) in want {
            self.upsert(source, *p, *e);
        }
    }

    /// The entries one source wants (whether or not they win).
    pub fn source(&self, source: Source) -> BTreeMap<Ipv4Net, Entry> {
        self.wants.iter().filter_map(|(p, m)| m.get(&source).map(|e| (*p, *e))).collect()
    }

    /// The entry installed for `prefix` and who owns it.
    pub fn winner(&self, prefix: Ipv4Net) -> Option<(Source, Entry)> {
        self.wants.get(&prefix.trunc()).and_then(|m| m.iter().next().map(|(s, e)| (*s, *e)))
    }

    /// The merged desired map.
    pub fn desired(&self) -> BTreeMap<Ipv4Net, Entry> {
        self.wants.iter().filter_map(|(p, m)| m.values().next().map(|e| (*p, *e))).collect()
    }

    /// Changes that turn `installed` into [`Self::desired`].
    pub fn diff(&self, installed: &BTreeMap<Ipv4Net, Entry>) -> Vec<Change> {
        let want = self.desired();
        let mut out: Vec<Change> = installed.keys().filter(|p| !want.contains_key(p)).map(|p| (*p, None)).collect();
        out.extend(
            want.into_iter()
                .filter(|(p, e)| installed.get(p) != Some(e))
                .map(|(p, e)| (p, Some(e))),
        );
        out
    }

    /// Changes for the prefixes touched since the last call (cheaper than a
    /// full [`Self::diff`]; the reconciler runs a full diff on start and retry).
    pub fn take_changes(&mut self, installed: &BTreeMap<Ipv4Net, Entry>) -> Vec<Change> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|p| {
                let want = self.wants.get(&p).and_then(|m| m.values().next().copied());
                (installed.get(&p).copied() != want).then_some((p, want))
            })
            .collect()
    }

    /// Pod IPs (/32 entries of local endpoints and cluster pods), with the
    /// source that owns them and their identity.
    pub fn pod_ips(&self) -> impl Iterator<Item = (Ipv4Addr, Source, u32)> + '_ {
        self.wants
            .iter()
            .filter(|(p, _)| p.prefix_len() == 32)
            .filter_map(|(p, m)| m.iter().find(|(s, _)| **s != Source::Cidr).map(|(s, e)| (p.addr(), *s, e.identity)))
    }

    pub fn len(&self) -> usize {
        self.wants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wants.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }
    fn e(id: u32, tun: Option<&str>) -> Entry {
        Entry {
            identity: id,
            tunnel_endpoint: tun.map(|t| t.parse().unwrap()),
        }
    }

    #[test]
    fn local_beats_cluster_beats_cidr_whatever_the_order() {
        let p = net("10.200.1.3/32");
        let orders = [
            [Source::Cidr, Source::Cluster, Source::Local],
            [Source::Local, Source::Cidr, Source::Cluster],
            [Source::Cluster, Source::Local, Source::Cidr],
            [Source::Host, Source::Cluster, Source::Local],
        ];
        for order in orders {
            let mut c = Ipcache::new();
            for s in order {
                let id = match s {
                    Source::Local => 300,
                    Source::Host => 1,
                    Source::Cluster => 400,
                    Source::Cidr => (1 << 24) + 1,
                };
                c.upsert(s, p, e(id, None));
            }
            assert_eq!(c.winner(p).unwrap().0, Source::Local, "{order:?}");
            assert_eq!(c.desired()[&p].identity, 300);
        }
    }

    #[test]
    fn the_hosts_addresses_leave_out_loopback_and_link_local() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let got = host_addresses(["127.0.0.1", "172.30.0.1", "169.254.1.1", "10.200.0.1", "0.0.0.0", "224.0.0.1"].map(a));
        assert_eq!(got.into_iter().collect::<Vec<_>>(), [a("10.200.0.1"), a("172.30.0.1")]);
    }

    #[test]
    fn cidr_for_a_pod_ip_never_replaces_the_pod_and_leaves_it_intact_on_withdraw() {
        let mut c = Ipcache::new();
        let pod = net("10.200.1.3/32");
        c.upsert(Source::Cluster, pod, e(24614, Some("172.30.0.2")));
        let before = c.desired();
        // a policy names the pod's IP and its node's pod CIDR
        c.upsert(Source::Cidr, pod, e((1 << 24) + 2, None));
        c.upsert(Source::Cidr, net("10.200.0.0/16"), e((1 << 24) + 1, None));
        assert_eq!(c.desired()[&pod], e(24614, Some("172.30.0.2")));
        // policy deleted: exactly the state from before
        c.replace_source(Source::Cidr, &BTreeMap::new());
        assert_eq!(c.desired(), before);
    }

    #[test]
    fn withdrawing_the_winner_reveals_the_next_source() {
        let mut c = Ipcache::new();
        let p = net("192.0.2.10/32");
        c.upsert(Source::Cidr, p, e((1 << 24) + 5, None));
        c.upsert(Source::Cluster, p, e(6, Some("172.30.0.9")));
        assert_eq!(c.desired()[&p].identity, 6);
        c.remove(Source::Cluster, p);
        assert_eq!(c.desired()[&p].identity, (1 << 24) + 5);
        c.remove(Source::Cidr, p);
        assert!(c.desired().is_empty());
    }

    #[test]
    fn diff_converges_installed_to_desired() {
        let mut c = Ipcache::new();
        c.upsert(Source::Local, net("10.200.0.2/32"), e(300, None));
        c.upsert(Source::Cidr, net("10.0.0.0/8"), e((1 << 24) + 1, None));
        let mut installed = BTreeMap::new();
        installed.insert(net("10.200.0.9/32"), e(301, None)); // stale
        installed.insert(net("10.0.0.0/8"), e((1 << 24) + 7, None)); // wrong value
        let changes = c.diff(&installed);
        for (p, v) in &changes {
            match v {
                Some(v) => installed.insert(*p, *v),
                None => installed.remove(p),
            };
        }
        assert_eq!(installed, c.desired());
        assert!(c.diff(&installed).is_empty(), "idempotent");
    }

    #[test]
    fn take_changes_sees_only_touched_prefixes_and_equals_the_full_diff() {
        let mut c = Ipcache::new();
        let mut installed = BTreeMap::new();
        let apply = |inst: &mut BTreeMap<Ipv4Net, Entry>, ch: Vec<Change>| {
            for (p, v) in ch {
                match v {
                    Some(v) => inst.insert(p, v),
                    None => inst.remove(&p),
                };
            }
        };
        c.upsert(Source::Cluster, net("10.200.1.2/32"), e(300, Some("172.30.0.2")));
        c.upsert(Source::Cidr, net("10.200.1.2/32"), e((1 << 24) + 1, None));
        let ch = c.take_changes(&installed);
        assert_eq!(ch.len(), 1);
        apply(&mut installed, ch);
        assert!(c.take_changes(&installed).is_empty());
        c.remove(Source::Cidr, net("10.200.1.2/32")); // the loser leaves: nothing to write
        assert!(c.take_changes(&installed).is_empty());
        c.remove(Source::Cluster, net("10.200.1.2/32"));
        let ch = c.take_changes(&installed);
        apply(&mut installed, ch);
        assert!(installed.is_empty());
        assert!(c.diff(&installed).is_empty());
    }

    #[test]
    fn replace_source_touches_only_that_source() {
        let mut c = Ipcache::new();
        c.upsert(Source::Local, net("10.200.0.2/32"), e(300, None));
        c.upsert(Source::Cluster, net("10.200.1.2/32"), e(300, Some("172.30.0.2")));
        let mut want = BTreeMap::new();
        want.insert(net("10.200.1.5/32"), e(301, Some("172.30.0.2")));
        c.replace_source(Source::Cluster, &want);
        assert_eq!(c.source(Source::Cluster), want);
        assert_eq!(c.source(Source::Local).len(), 1);
        let ips: Vec<_> = c.pod_ips().map(|(ip, _, _)| ip.to_string()).collect();
        assert_eq!(ips, vec!["10.200.0.2", "10.200.1.5"]);
    }
}
