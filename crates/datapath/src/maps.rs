//! Typed access to the pinned maps (used by the agent and, read-only, by the CLI).
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, HashOfMaps, Map, MapData, PerCpuArray, RingBuf};
use seta_abi::{
    CtEntry, CtKey, EndpointInfo, EndpointKey, IpcacheKey, IpcacheLpmData, MetricsValue, PolicyEntry, PolicyLpmData, RemoteEndpointInfo,
    SetaEvent,
};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::DatapathError;

pub const MAP_LXC: &str = "seta_lxc";
pub const MAP_LXC_SELF: &str = "seta_lxc_self";
pub const MAP_IPCACHE: &str = "seta_ipcache";
pub const MAP_METRICS: &str = "seta_metrics";
pub const MAP_POLICY: &str = "seta_policy";
pub const MAP_CT: &str = "seta_ct4";
pub const MAP_EVENTS: &str = "seta_events";
pub const MAP_CONFIG: &str = "seta_config";
pub const MAP_IPBLOCK: &str = "seta_ipblock";
pub const MAP_LB4_SVC: &str = "seta_lb4_svc";
pub const MAP_LB4_BE: &str = "seta_lb4_be";
pub const MAP_LB4_RNAT: &str = "seta_lb4_rnat";
pub const MAP_LB4_CONN: &str = "seta_lb4_conn";
pub const MAP_LB4_AFFINITY: &str = "seta_lb4_affinity";
pub const MAP_SNAT4: &str = "seta_snat_v4_external";
pub const MAP_EVENTS_LOST: &str = "seta_events_lost";
pub const MAP_LB4_SRC_RANGE: &str = "seta_lb4_source_range";
pub const MAP_LB4_MAGLEV: &str = "seta_lb4_maglev";
pub const MAP_LB4_REVERSE_SK: &str = "seta_lb4_reverse_sk";
pub const MAP_SOCK_NETNS: &str = "seta_sock_netns";
pub const MAP_LB4_DSR: &str = "seta_lb4_dsr";
pub const MAP_IPMASQ: &str = "seta_ipmasq_v4";
pub const MAP_MASQ_DEV: &str = "seta_masq_dev_v4";
pub const MAP_FRAG4: &str = "seta_ipv4_frag";

fn open(pin_dir: &Path, name: &str) -> Result<(MapData, PathBuf), DatapathError> {
    let path = pin_dir.join(name);
    let md = MapData::from_pin(&path).map_err(|e| DatapathError::Map {
        map: name.into(),
        path: path.clone(),
        msg: format!("open: {e}"),
    })?;
    Ok((md, path))
}

fn merr(map: &str, path: &Path, op: &str, e: impl std::fmt::Display) -> DatapathError {
    DatapathError::Map {
        map: map.into(),
        path: path.to_path_buf(),
        msg: format!("{op}: {e}"),
    }
}

/// `seta_lxc` (IP -> endpoint, the source of truth) together with its
/// per-device accelerator `seta_lxc_self`, kept in step on every write.
pub struct EndpointMap {
    map: HashMap<MapData, EndpointKey, EndpointInfo>,
    slots: Array<MapData, seta_abi::LxcSelf>,
    path: PathBuf,
}

fn slot_of(ifindex: u32) -> u32 {
    ifindex & (seta_abi::LXC_SELF_SLOTS - 1)
}

impl EndpointMap {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let (md, path) = open(pin_dir, MAP_LXC)?;
        let map = HashMap::try_from(Map::HashMap(md)).map_err(|e| merr(MAP_LXC, &path, "type", e))?;
        let (sd, spath) = open(pin_dir, MAP_LXC_SELF)?;
        let slots = Array::try_from(Map::Array(sd)).map_err(|e| merr(MAP_LXC_SELF, &spath, "type", e))?;
        Ok(Self { map, slots, path })
    }
    pub fn upsert(&mut self, ip: Ipv4Addr, info: &EndpointInfo) -> Result<(), DatapathError> {
        let old = self.get(ip);
        self.map
            .insert(EndpointKey::v4(ip.octets()), info, 0)
            .map_err(|e| merr(MAP_LXC, &self.path, "update", e))?;
        if let Some(old) = old.filter(|o| o.ifindex != info.ifindex) {
            self.clear_slot(old.ifindex, ip)?;
        }
        if info.flags & seta_abi::ENDPOINT_F_HOST == 0 && info.ifindex != 0 {
            let s = seta_abi::LxcSelf {
                ifindex: info.ifindex,
                ipv4: ip.octets(),
                sec_id: info.sec_id,
                lxc_id: info.lxc_id,
                node_mac: info.node_mac,
            };
            self.slots
                .set(slot_of(info.ifindex), s, 0)
                .map_err(|e| merr(MAP_LXC_SELF, &self.path, "update", e))?;
        }
        Ok(())
    }
    /// Empty `ifindex`'s slot if it still describes `ip` there.
    fn clear_slot(&mut self, ifindex: u32, ip: Ipv4Addr) -> Result<(), DatapathError> {
        let slot = slot_of(ifindex);
        match self.slots.get(&slot, 0) {
            Ok(s) if s.ifindex == ifindex && s.ipv4 == ip.octets() => self
                .slots
                .set(slot, seta_abi::LxcSelf::default(), 0)
                .map_err(|e| merr(MAP_LXC_SELF, &self.path, "update", e)),
            _ => Ok(()),
        }
    }
    /// The accelerator slot of a device (for tests and `seta bpf`).
    pub fn slot(&self, ifindex: u32) -> Option<seta_abi::LxcSelf> {
        self.slots.get(&slot_of(ifindex), 0).ok().filter(|s| s.ifindex == ifindex)
    }
    pub fn remove(&mut self, ip: Ipv4Addr) -> Result<bool, DatapathError> {
        if let Some(old) = self.get(ip) {
            self.clear_slot(old.ifindex, ip)?;
        }
        match self.map.remove(&EndpointKey::v4(ip.octets())) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(merr(MAP_LXC, &self.path, "delete", e)),
        }
    }
    pub fn get(&self, ip: Ipv4Addr) -> Option<EndpointInfo> {
        self.map.get(&EndpointKey::v4(ip.octets()), 0).ok()
    }
    pub fn list(&self) -> Vec<(Ipv4Addr, EndpointInfo)> {
        let mut v: Vec<_> = self.map.iter().flatten().map(|(k, v)| (Ipv4Addr::from(k.ip4), v)).collect();
        v.sort_by_key(|(ip, _)| *ip);
        v
    }
}

pub struct IpcacheMap {
    map: LpmTrie<MapData, IpcacheLpmData, RemoteEndpointInfo>,
    path: PathBuf,
}

impl IpcacheMap {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let (md, path) = open(pin_dir, MAP_IPCACHE)?;
        let map = LpmTrie::try_from(Map::LpmTrie(md)).map_err(|e| merr(MAP_IPCACHE, &path, "type", e))?;
        Ok(Self { map, path })
    }
    pub fn upsert(&mut self, ip: Ipv4Addr, prefix: u8, info: &RemoteEndpointInfo) -> Result<(), DatapathError> {
        let k = IpcacheKey::v4(ip.octets(), prefix);
        self.map
            .insert(&Key::new(k.prefixlen, k.lpm_data()), info, 0)
            .map_err(|e| merr(MAP_IPCACHE, &self.path, "update", e))
    }
    pub fn remove(&mut self, ip: Ipv4Addr, prefix: u8) -> Result<bool, DatapathError> {
        let k = IpcacheKey::v4(ip.octets(), prefix);
        match self.map.remove(&Key::new(k.prefixlen, k.lpm_data())) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(merr(MAP_IPCACHE, &self.path, "delete", e)),
        }
    }
    /// (prefix address, prefix length, value)
    pub fn list(&self) -> Vec<(Ipv4Addr, u8, RemoteEndpointInfo)> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .flatten()
            .map(|(k, v)| {
                let key = IpcacheKey::from_lpm(k.prefix_len(), k.data());
                (Ipv4Addr::from(key.ip4), key.ip_prefix_len(), v)
            })
            .collect();
        v.sort_by_key(|(ip, p, _)| (*ip, *p));
        v
    }
}

pub struct MetricsMap {
    map: PerCpuArray<MapData, MetricsValue>,
}

impl MetricsMap {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let (md, path) = open(pin_dir, MAP_METRICS)?;
        let map = PerCpuArray::try_from(Map::PerCpuArray(md)).map_err(|e| merr(MAP_METRICS, &path, "type", e))?;
        Ok(Self { map })
    }
    /// Non-zero counters summed over CPUs: (reason, direction, totals).
    pub fn totals(&self) -> Vec<(u8, u8, MetricsValue)> {
        let mut out = Vec::new();
        for idx in 0..seta_abi::METRICS_SLOTS {
            let Ok(per_cpu) = self.map.get(&idx, 0) else { continue };
            let mut t = MetricsValue::default();
            for v in per_cpu.iter() {
                t.count += v.count;
                t.bytes += v.bytes;
            }
            if t.count > 0 {
                let (r, d) = seta_abi::metrics_slot(idx);
                out.push((r, d, t));
            }
        }
        out
    }
}

/// Desired policy map contents: (prefixlen, key data) -> entry.
pub type PolicyEntries = BTreeMap<(u32, PolicyLpmData), PolicyEntry>;

/// Convert resolved entries (seta-core) into map keys and values.
const _: () = assert!(seta_abi::POLICY_COOKIE_NOT_ENFORCED == seta_core::policy::resolve::COOKIE_NOT_ENFORCED);

pub fn policy_entries(state: &seta_core::policy::resolve::MapState) -> PolicyEntries {
    state
        .iter()
        .map(|(k, e)| {
            let key = PolicyLpmData {
                sec_label: k.identity,
                egress: k.egress as u8,
                protocol: k.proto,
                dport: k.port.to_be_bytes(),
            };
            let l4 = k.l4_prefix();
            (
                (seta_abi::POLICY_STATIC_PREFIX + l4 as u32, key),
                PolicyEntry {
                    deny: e.deny as u8,
                    l4_prefix: l4,
                    pad: 0,
                    cookie: e.cookie,
                },
            )
        })
        .collect()
}

/// One endpoint's policy map (`seta_pol_NNNNN`).
pub struct PolicyMap {
    map: LpmTrie<MapData, PolicyLpmData, PolicyEntry>,
    path: PathBuf,
}

/// Outcome of a policy map sync.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
}

impl PolicyMap {
    pub fn open_pinned(path: &Path) -> Result<Self, DatapathError> {
        let md = MapData::from_pin(path).map_err(|e| merr("seta_pol", path, "open", e))?;
        let map = LpmTrie::try_from(Map::LpmTrie(md)).map_err(|e| merr("seta_pol", path, "type", e))?;
        Ok(Self {
            map,
            path: path.to_path_buf(),
        })
    }

    pub fn list(&self) -> PolicyEntries {
        self.map.iter().flatten().map(|(k, v)| ((k.prefix_len(), k.data()), v)).collect()
    }

    /// Make the map hold exactly `want`: add and update first, remove last, so
    /// an allowed connection never sees a gap. A full map is an error (and the
    /// entries that fit stay, which never allows more than the old state did
    /// plus the new allows that fit).
    pub fn sync(&mut self, want: &PolicyEntries) -> Result<SyncStats, DatapathError> {
        let have = self.list();
        let mut st = SyncStats::default();
        let mut failed = None;
        for ((plen, k), v) in want {
            match have.get(&(*plen, *k)) {
                Some(old) if old == v => continue,
                Some(_) => st.updated += 1,
                None => st.added += 1,
            }
            if let Err(e) = self.map.insert(&Key::new(*plen, *k), v, 0) {
                let full = matches!(&e, aya::maps::MapError::SyscallError(s) if matches!(s.io_error.raw_os_error(), Some(libc::ENOSPC) | Some(libc::E2BIG) | Some(libc::ENOMEM)));
                failed = Some(if full {
                    DatapathError::MapFull {
                        path: self.path.clone(),
                        wanted: want.len(),
                        max: seta_abi::POLICY_MAP_SIZE,
                        source: Box::new(e),
                    }
                } else {
                    merr("seta_pol", &self.path, "update", e)
                });
                break;
            }
        }
        // Entries that are not wanted go, also after a failure: what stays is a
        // subset of the desired state, never an old, wider allow.
        for (plen, k) in have.keys() {
            if !want.contains_key(&(*plen, *k)) {
                let _ = self.map.remove(&Key::new(*plen, *k));
                st.removed += 1;
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(st),
        }
    }
}

impl PolicyMap {
    /// Incremental change: write `upsert`, delete `remove` (no full listing).
    pub fn apply(&mut self, upsert: &PolicyEntries, remove: &[(u32, PolicyLpmData)]) -> Result<(), DatapathError> {
        for ((plen, k), v) in upsert {
            self.map
                .insert(&Key::new(*plen, *k), v, 0)
                .map_err(|e| merr("seta_pol", &self.path, "update", e))?;
        }
        for (plen, k) in remove {
            let _ = self.map.remove(&Key::new(*plen, *k));
        }
        Ok(())
    }
}

/// `seta_policy`: endpoint id -> its policy map.
pub struct PolicyOuter {
    map: HashOfMaps<MapData, u32, LpmTrie<MapData, PolicyLpmData, PolicyEntry>>,
    path: PathBuf,
}

impl PolicyOuter {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let (md, path) = open(pin_dir, MAP_POLICY)?;
        let map = HashOfMaps::try_from(Map::HashOfMaps(md)).map_err(|e| merr(MAP_POLICY, &path, "type", e))?;
        Ok(Self { map, path })
    }
    pub fn register(&mut self, ep_id: u16, pm: &PolicyMap) -> Result<(), DatapathError> {
        self.map
            .insert(ep_id as u32, &pm.map, 0)
            .map_err(|e| merr(MAP_POLICY, &self.path, "update", e))
    }
    pub fn unregister(&mut self, ep_id: u16) -> Result<(), DatapathError> {
        match self.map.remove(&(ep_id as u32)) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(merr(MAP_POLICY, &self.path, "delete", e)),
        }
    }
    pub fn ids(&self) -> Vec<u32> {
        self.map.keys().flatten().collect()
    }
    /// Is endpoint `ep_id`'s map registered? (one lookup, not a key walk)
    pub fn contains(&self, ep_id: u16) -> bool {
        self.map.get(&(ep_id as u32), 0).is_ok()
    }
}

/// Nanoseconds of CLOCK_MONOTONIC, the clock of conntrack lifetimes.
pub fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock_gettime");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// The NAT engine's table (both directions of each SNATed connection).
pub struct NatMap {
    map: HashMap<MapData, CtKey, seta_abi::Nat4Entry>,
}

impl NatMap {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let (md, path) = open(pin_dir, MAP_SNAT4)?;
        let map = HashMap::try_from(Map::LruHashMap(md)).map_err(|e| merr(MAP_SNAT4, &path, "type", e))?;
        Ok(Self { map })
    }
    pub fn list(&self) -> Vec<(CtKey, seta_abi::Nat4Entry)> {
        let mut v: Vec<_> = self.map.iter().flatten().collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }
}

/// `seta_ipmasq_v4`: the destinations BPF masquerade leaves alone, each
/// with the bits of its sources (`IPMASQ_F_*`).
pub struct IpmasqMap {
    map: LpmTrie<MapData, [u8; 4], u8>,
    path: PathBuf,
}

impl IpmasqMap {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let (md, path) = open(pin_dir, MAP_IPMASQ)?;
        let map = LpmTrie::try_from(Map::LpmTrie(md)).map_err(|e| merr(MAP_IPMASQ, &path, "type", e))?;
        Ok(Self { map, path })
    }

    pub fn list(&self) -> BTreeMap<ipnet::Ipv4Net, u8> {
        self.map
            .iter()
            .flatten()
            .filter_map(|(k, v)| Some((ipnet::Ipv4Net::new(Ipv4Addr::from(k.data()), k.prefix_len() as u8).ok()?, v)))
            .collect()
    }

    /// Make the map hold exactly `want`: new and changed ranges first, then
    /// the ones that went (no moment without a range that stays).
    pub fn sync(&mut self, want: &BTreeMap<ipnet::Ipv4Net, u8>) -> Result<(), DatapathError> {
        let have = self.list();
        for (n, v) in want {
            if have.get(n) != Some(v) {
                self.map
                    .insert(&Key::new(n.prefix_len() as u32, n.network().octets()), v, 0)
                    .map_err(|e| merr(MAP_IPMASQ, &self.path, &format!("update {n}"), e))?;
            }
        }
        for n in have.keys().filter(|n| !want.contains_key(n)) {
            self.map
                .remove(&Key::new(n.prefix_len() as u32, n.network().octets()))
                .map_err(|e| merr(MAP_IPMASQ, &self.path, &format!("delete {n}"), e))?;
        }
        Ok(())
    }
}

/// `seta_masq_dev_v4`: the address BPF masquerade gives a connection
/// leaving by each native device (ifindex); other devices: the node's.
pub struct MasqDevMap {
    map: HashMap<MapData, u32, u32>,
    path: PathBuf,
}

impl MasqDevMap {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let (md, path) = open(pin_dir, MAP_MASQ_DEV)?;
        let map = HashMap::try_from(Map::HashMap(md)).map_err(|e| merr(MAP_MASQ_DEV, &path, "type", e))?;
        Ok(Self { map, path })
    }

    pub fn list(&self) -> BTreeMap<u32, Ipv4Addr> {
        self.map
            .iter()
            .flatten()
            .map(|(i, a)| (i, Ipv4Addr::from(u32::from_be(a))))
            .collect()
    }

    /// Make the map hold exactly `want` (ifindex -> address).
    pub fn sync(&mut self, want: &BTreeMap<u32, Ipv4Addr>) -> Result<(), DatapathError> {
        let have = self.list();
        for (i, a) in want.iter().filter(|(i, a)| have.get(i) != Some(a)) {
            self.map
                .insert(i, u32::from(*a).to_be(), 0)
                .map_err(|e| merr(MAP_MASQ_DEV, &self.path, &format!("update {i}"), e))?;
        }
        for i in have.keys().filter(|i| !want.contains_key(i)) {
            self.map
                .remove(i)
                .map_err(|e| merr(MAP_MASQ_DEV, &self.path, &format!("delete {i}"), e))?;
        }
        Ok(())
    }
}

/// `seta_ipv4_frag`: the ports of fragmented datagrams, from their first
/// fragments (read-only here: the datapath writes it).
pub struct Frag4Map {
    map: HashMap<MapData, seta_abi::Frag4Key, seta_abi::Frag4Ports>,
}

impl Frag4Map {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let (md, path) = open(pin_dir, MAP_FRAG4)?;
        let map = HashMap::try_from(Map::LruHashMap(md)).map_err(|e| merr(MAP_FRAG4, &path, "type", e))?;
        Ok(Self { map })
    }

    pub fn list(&self) -> Vec<(seta_abi::Frag4Key, seta_abi::Frag4Ports)> {
        let mut v: Vec<_> = self.map.iter().flatten().collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }
}

pub struct CtMap {
    map: HashMap<MapData, CtKey, CtEntry>,
    path: PathBuf,
}

impl CtMap {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let (md, path) = open(pin_dir, MAP_CT)?;
        let map = HashMap::try_from(Map::LruHashMap(md)).map_err(|e| merr(MAP_CT, &path, "type", e))?;
        Ok(Self { map, path })
    }
    pub fn list(&self) -> Vec<(CtKey, CtEntry)> {
        let mut v: Vec<_> = self.map.iter().flatten().collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }
    /// Delete entries; `expired_only` keeps the live ones (garbage collection).
    pub fn flush(&mut self, expired_only: bool) -> Result<usize, DatapathError> {
        let now = monotonic_ns();
        self.flush_where(|_, e| !expired_only || e.expires < now)
    }

    /// Delete every entry of connections to or from `ip` (a deleted endpoint:
    /// a pod that gets its address later must not inherit its connections).
    pub fn flush_ip(&mut self, ip: Ipv4Addr) -> Result<usize, DatapathError> {
        let o = ip.octets();
        self.flush_where(|k, _| k.saddr == o || k.daddr == o)
    }

    fn flush_where(&mut self, pred: impl Fn(&CtKey, &CtEntry) -> bool) -> Result<usize, DatapathError> {
        let keys: Vec<CtKey> = self.map.iter().flatten().filter(|(k, e)| pred(k, e)).map(|(k, _)| k).collect();
        let mut n = 0;
        for k in keys {
            match self.map.remove(&k) {
                Ok(()) => n += 1,
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(aya::maps::MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(merr(MAP_CT, &self.path, "delete", e)),
            }
        }
        Ok(n)
    }
}

/// Reader of the `seta_events` ring buffer (one consumer per node: the agent).
/// Its fd becomes readable when records arrive (epoll).
pub struct EventReader {
    ring: RingBuf<MapData>,
    lost: aya::maps::PerCpuArray<MapData, u64>,
}

impl std::os::fd::AsRawFd for EventReader {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_raw_fd()
    }
}

impl EventReader {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let (md, path) = open(pin_dir, MAP_EVENTS)?;
        let ring = RingBuf::try_from(Map::RingBuf(md)).map_err(|e| merr(MAP_EVENTS, &path, "type", e))?;
        let (md, path) = open(pin_dir, MAP_EVENTS_LOST)?;
        let lost = aya::maps::PerCpuArray::try_from(Map::PerCpuArray(md)).map_err(|e| merr(MAP_EVENTS_LOST, &path, "type", e))?;
        Ok(Self { ring, lost })
    }
    /// Events the datapath could not put in the ring buffer, per CPU, since
    /// its maps were created.
    pub fn lost_per_cpu(&self) -> Vec<u64> {
        self.lost.get(&0, 0).map(|v| v.iter().copied().collect()).unwrap_or_default()
    }
    /// Everything available right now.
    pub fn drain(&mut self) -> Vec<SetaEvent> {
        self.drain_records().into_iter().map(|r| r.ev).collect()
    }
    /// Everything available right now, with drops' packet bytes.
    pub fn drain_records(&mut self) -> Vec<seta_abi::Record> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            if let Some(r) = seta_abi::Record::from_bytes(&item) {
                out.push(r);
            }
        }
        out
    }
}

/// Per-IP identities of pod IPs selected by Kubernetes ipBlock rules, and the
/// flag that makes the datapath consult them.
pub struct IpblockMaps {
    ips: HashMap<MapData, [u8; 4], u32>,
    config: Array<MapData, u32>,
    path: PathBuf,
}

impl IpblockMaps {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let (md, path) = open(pin_dir, MAP_IPBLOCK)?;
        let ips = HashMap::try_from(Map::HashMap(md)).map_err(|e| merr(MAP_IPBLOCK, &path, "type", e))?;
        let (md, cpath) = open(pin_dir, MAP_CONFIG)?;
        let config = Array::try_from(Map::Array(md)).map_err(|e| merr(MAP_CONFIG, &cpath, "type", e))?;
        Ok(Self { ips, config, path })
    }

    /// Make the map hold exactly `want` and set the flag iff it is non-empty.
    pub fn sync(&mut self, want: &BTreeMap<Ipv4Addr, u32>) -> Result<(), DatapathError> {
        for (ip, id) in want {
            self.ips
                .insert(ip.octets(), id, 0)
                .map_err(|e| merr(MAP_IPBLOCK, &self.path, "update", e))?;
        }
        let have: Vec<[u8; 4]> = self.ips.keys().flatten().collect();
        for k in have {
            if !want.contains_key(&Ipv4Addr::from(k)) {
                let _ = self.ips.remove(&k);
            }
        }
        let flags = if want.is_empty() { 0 } else { seta_abi::CONFIG_F_IPBLOCK };
        self.config
            .set(seta_abi::CONFIG_FLAGS, flags, 0)
            .map_err(|e| merr(MAP_CONFIG, &self.path, "update", e))
    }
}

/// What the service maps must hold (computed by the agent's services
/// subsystem; written as a difference).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbState {
    pub services: BTreeMap<seta_abi::Lb4Key, seta_abi::Lb4Service>,
    pub backends: BTreeMap<u32, seta_abi::Lb4Backend>,
    pub revnat: BTreeMap<u16, seta_abi::Lb4ReverseNat>,
    /// loadBalancerSourceRanges: (rev-NAT index, range)
    pub source_ranges: std::collections::BTreeSet<(u16, ipnet::Ipv4Net)>,
    /// Maglev tables in chunks: (rev-NAT index, chunk) -> backend ids
    pub maglev: BTreeMap<seta_abi::Lb4MaglevKey, seta_abi::Lb4MaglevChunk>,
}

impl LbState {
    /// Whether this state fits maps of `max` entries (`--bpf-lb-map-max`);
    /// else which map overflows and by how much. Checked before anything is
    /// written, so a change that does not fit changes nothing.
    pub fn fits(&self, max: u32) -> Result<(), String> {
        for (map, n) in [
            (MAP_LB4_SVC, self.services.len()),
            (MAP_LB4_BE, self.backends.len()),
            (MAP_LB4_RNAT, self.revnat.len()),
            (MAP_LB4_SRC_RANGE, self.source_ranges.len()),
        ] {
            if n > max as usize {
                return Err(format!("{map} would need {n} entries, but --bpf-lb-map-max is {max}"));
            }
        }
        if self.maglev.len() > seta_abi::LB_MAGLEV_MAP_SIZE as usize {
            return Err(format!(
                "{MAP_LB4_MAGLEV} would need {} chunks, but it holds {}",
                self.maglev.len(),
                seta_abi::LB_MAGLEV_MAP_SIZE
            ));
        }
        Ok(())
    }
}

/// The service maps: `seta_lb4_svc`, `seta_lb4_be`, `seta_lb4_rnat`.
pub struct LbMaps {
    svc: HashMap<MapData, seta_abi::Lb4Key, seta_abi::Lb4Service>,
    be: HashMap<MapData, u32, seta_abi::Lb4Backend>,
    rnat: HashMap<MapData, u16, seta_abi::Lb4ReverseNat>,
    src: LpmTrie<MapData, seta_abi::Lb4SrcRangeData, u8>,
    maglev: HashMap<MapData, seta_abi::Lb4MaglevKey, seta_abi::Lb4MaglevChunk>,
    path: PathBuf,
}

fn src_range_key(id: u16, net: &ipnet::Ipv4Net) -> Key<seta_abi::Lb4SrcRangeData> {
    let d = seta_abi::Lb4SrcRangeData {
        rev_nat_id: id,
        pad: 0,
        addr: net.network().octets(),
    };
    Key::new(32 + net.prefix_len() as u32, d)
}

impl LbMaps {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let (md, path) = open(pin_dir, MAP_LB4_SVC)?;
        let svc = HashMap::try_from(Map::HashMap(md)).map_err(|e| merr(MAP_LB4_SVC, &path, "type", e))?;
        let (md, p) = open(pin_dir, MAP_LB4_BE)?;
        let be = HashMap::try_from(Map::HashMap(md)).map_err(|e| merr(MAP_LB4_BE, &p, "type", e))?;
        let (md, p) = open(pin_dir, MAP_LB4_RNAT)?;
        let rnat = HashMap::try_from(Map::HashMap(md)).map_err(|e| merr(MAP_LB4_RNAT, &p, "type", e))?;
        let (md, p) = open(pin_dir, MAP_LB4_SRC_RANGE)?;
        let src = LpmTrie::try_from(Map::LpmTrie(md)).map_err(|e| merr(MAP_LB4_SRC_RANGE, &p, "type", e))?;
        let (md, p) = open(pin_dir, MAP_LB4_MAGLEV)?;
        let maglev = HashMap::try_from(Map::HashMap(md)).map_err(|e| merr(MAP_LB4_MAGLEV, &p, "type", e))?;
        Ok(Self {
            svc,
            be,
            rnat,
            src,
            maglev,
            path,
        })
    }

    /// Everything the maps hold now.
    pub fn list(&self) -> LbState {
        LbState {
            services: self.svc.iter().flatten().collect(),
            backends: self.be.iter().flatten().collect(),
            revnat: self.rnat.iter().flatten().collect(),
            source_ranges: self
                .src
                .keys()
                .flatten()
                .filter_map(|k| {
                    let d = k.data();
                    let net = ipnet::Ipv4Net::new(d.addr.into(), k.prefix_len().checked_sub(32)? as u8).ok()?;
                    Some((d.rev_nat_id, net))
                })
                .collect(),
            maglev: self.maglev.iter().flatten().collect(),
        }
    }

    /// Make the maps hold exactly `want`: backends and rev-NAT entries
    /// first, then the slots, then the masters (a frontend never points at
    /// something missing); removals in the opposite order. Returns the
    /// backends (address, port, protocol) that are gone.
    pub fn sync(&mut self, want: &LbState) -> Result<Vec<seta_abi::Lb4Backend>, DatapathError> {
        let have = self.list();
        self.sync_from(&have, want)
    }

    /// `sync`, given what the maps hold (the state this process wrote last,
    /// so the maps are not walked again: 2 syscalls per entry).
    pub fn sync_from(&mut self, have: &LbState, want: &LbState) -> Result<Vec<seta_abi::Lb4Backend>, DatapathError> {
        let kept: std::collections::BTreeSet<([u8; 4], [u8; 2], u8)> =
            want.backends.values().map(|b| (b.address, b.port, b.proto)).collect();
        let mut gone: Vec<seta_abi::Lb4Backend> = have
            .backends
            .values()
            .filter(|b| !kept.contains(&(b.address, b.port, b.proto)))
            .copied()
            .collect();
        gone.dedup_by_key(|b| (b.address, b.port, b.proto));
        let e = |m: &str, e| merr(m, &self.path, "update", e);
        for (k, v) in &want.backends {
            if have.backends.get(k) != Some(v) {
                self.be.insert(k, v, 0).map_err(|x| e(MAP_LB4_BE, x))?;
            }
        }
        for (k, v) in &want.revnat {
            if have.revnat.get(k) != Some(v) {
                self.rnat.insert(k, v, 0).map_err(|x| e(MAP_LB4_RNAT, x))?;
            }
        }
        // ranges before the masters that check them; stale ones after
        for (id, net) in want.source_ranges.difference(&have.source_ranges) {
            self.src
                .insert(&src_range_key(*id, net), 1, 0)
                .map_err(|x| e(MAP_LB4_SRC_RANGE, x))?;
        }
        // Maglev tables before the masters that use them
        for (k, v) in &want.maglev {
            if have.maglev.get(k) != Some(v) {
                self.maglev.insert(k, v, 0).map_err(|x| e(MAP_LB4_MAGLEV, x))?;
            }
        }
        let (masters, slots): (Vec<_>, Vec<_>) = want.services.iter().partition(|(k, _)| k.backend_slot == 0);
        for (k, v) in slots.into_iter().chain(masters) {
            if have.services.get(k) != Some(v) {
                self.svc.insert(k, v, 0).map_err(|x| e(MAP_LB4_SVC, x))?;
            }
        }
        let mut stale: Vec<&seta_abi::Lb4Key> = have.services.keys().filter(|k| !want.services.contains_key(*k)).collect();
        stale.sort_by_key(|k| k.backend_slot != 0); // masters first
        for k in stale {
            let _ = self.svc.remove(k);
        }
        for k in have.backends.keys().filter(|k| !want.backends.contains_key(*k)) {
            let _ = self.be.remove(k);
        }
        for k in have.revnat.keys().filter(|k| !want.revnat.contains_key(*k)) {
            let _ = self.rnat.remove(k);
        }
        for (id, net) in have.source_ranges.difference(&want.source_ranges) {
            let _ = self.src.remove(&src_range_key(*id, net));
        }
        for k in have.maglev.keys().filter(|k| !want.maglev.contains_key(*k)) {
            let _ = self.maglev.remove(k);
        }
        Ok(gone)
    }
}

/// What [`purge_backends`] forgot.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    /// entries removed from the maps
    pub entries: usize,
    /// the sockets socket-LB had sent to those backends: (socket cookie,
    /// backend), from the reverse entries that went
    pub sockets: Vec<(u64, std::net::SocketAddrV4)>,
}

/// Forget the translations to backends that are gone: the per-packet LB's
/// connections (both ways) and socket-LB's reverse entries, so nothing
/// keeps pointing at them.
pub fn purge_backends(pin_dir: &Path, gone: &[seta_abi::Lb4Backend]) -> Result<Purged, DatapathError> {
    if gone.is_empty() {
        return Ok(Purged::default());
    }
    let is_gone = |a: [u8; 4], p: [u8; 2], proto: u8| gone.iter().any(|b| b.address == a && b.port == p && b.proto == proto);
    let (md, path) = open(pin_dir, MAP_LB4_CONN)?;
    let mut conn: HashMap<MapData, CtKey, seta_abi::Lb4Conn> =
        HashMap::try_from(Map::LruHashMap(md)).map_err(|e| merr(MAP_LB4_CONN, &path, "type", e))?;
    let keys: Vec<CtKey> = conn
        .iter()
        .flatten()
        .filter(|(k, v)| match k.pad[0] {
            seta_abi::LB_CONN_FWD => is_gone(v.address, v.port, k.proto),
            _ => is_gone(k.daddr, k.dport, k.proto),
        })
        .map(|(k, _)| k)
        .collect();
    let mut n = 0;
    for k in keys {
        n += conn.remove(&k).is_ok() as usize;
    }
    // socket-LB's reverse entries (when it ever ran on this node)
    let mut sockets = vec![];
    if let Ok(m) = SockMaps::open(pin_dir) {
        let mut rev = m.rev;
        let keys: Vec<seta_abi::SockRevnatKey> = rev
            .iter()
            .flatten()
            .filter(|(k, _)| gone.iter().any(|b| b.address == k.address && b.port == k.port))
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            n += rev.remove(&k).is_ok() as usize;
            sockets.push((k.cookie, std::net::SocketAddrV4::new(k.address.into(), u16::from_be_bytes(k.port))));
        }
    }
    Ok(Purged { entries: n, sockets })
}

/// Set one `seta_config` slot (e.g. [`seta_abi::CONFIG_VXLAN_IFINDEX`]).
pub fn set_config(pin_dir: &Path, slot: u32, value: u32) -> Result<(), DatapathError> {
    let (md, path) = open(pin_dir, MAP_CONFIG)?;
    let mut config: Array<MapData, u32> = Array::try_from(Map::Array(md)).map_err(|e| merr(MAP_CONFIG, &path, "type", e))?;
    config.set(slot, value, 0).map_err(|e| merr(MAP_CONFIG, &path, "update", e))
}

/// Read one `seta_config` slot.
pub fn get_config(pin_dir: &Path, slot: u32) -> Result<u32, DatapathError> {
    let (md, path) = open(pin_dir, MAP_CONFIG)?;
    let config: Array<MapData, u32> = Array::try_from(Map::Array(md)).map_err(|e| merr(MAP_CONFIG, &path, "type", e))?;
    config.get(&slot, 0).map_err(|e| merr(MAP_CONFIG, &path, "lookup", e))
}

/// Socket-LB's maps: the namespaces whose sockets it translates, and its
/// reverse translations (socket cookie + backend -> frontend).
pub struct SockMaps {
    netns: HashMap<MapData, u64, u8>,
    rev: HashMap<MapData, seta_abi::SockRevnatKey, seta_abi::SockRevnatEntry>,
    path: PathBuf,
}

impl SockMaps {
    /// Fails while socket-LB was never loaded on this node (no pins yet).
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let (md, path) = open(pin_dir, MAP_SOCK_NETNS)?;
        let netns = HashMap::try_from(Map::HashMap(md)).map_err(|e| merr(MAP_SOCK_NETNS, &path, "type", e))?;
        let (md, rpath) = open(pin_dir, MAP_LB4_REVERSE_SK)?;
        let rev = HashMap::try_from(Map::LruHashMap(md)).map_err(|e| merr(MAP_LB4_REVERSE_SK, &rpath, "type", e))?;
        Ok(Self { netns, rev, path })
    }

    /// Translate the sockets of the namespace `cookie` (SOCK_NETNS_HOST or _POD).
    pub fn netns_put(&mut self, cookie: u64, kind: u8) -> Result<(), DatapathError> {
        self.netns
            .insert(cookie, kind, 0)
            .map_err(|e| merr(MAP_SOCK_NETNS, &self.path, "update", e))
    }

    pub fn netns_remove(&mut self, cookie: u64) -> Result<(), DatapathError> {
        match self.netns.remove(&cookie) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(merr(MAP_SOCK_NETNS, &self.path, "delete", e)),
        }
    }

    pub fn netns_list(&self) -> Vec<(u64, u8)> {
        let mut v: Vec<_> = self.netns.iter().flatten().collect();
        v.sort();
        v
    }

    pub fn reverse_list(&self) -> Vec<(seta_abi::SockRevnatKey, seta_abi::SockRevnatEntry)> {
        let mut v: Vec<_> = self.rev.iter().flatten().collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }
}

/// The cookie of the network namespace at `path` (None: the caller's),
/// read from a socket opened inside it on a thread of its own.
pub fn netns_cookie(path: Option<&Path>) -> std::io::Result<u64> {
    let path = path.map(Path::to_path_buf);
    std::thread::spawn(move || -> std::io::Result<u64> {
        use std::os::fd::AsRawFd;
        if let Some(p) = &path {
            let f = std::fs::File::open(p)?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        }
        let s = std::net::UdpSocket::bind("127.0.0.1:0").or_else(|_| std::net::UdpSocket::bind("0.0.0.0:0"))?;
        let mut cookie: u64 = 0;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: a valid socket and a u64 buffer of the length given
        let r = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NETNS_COOKIE,
                &mut cookie as *mut u64 as *mut libc::c_void,
                &mut len,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(cookie)
    })
    .join()
    .map_err(|_| std::io::Error::other("netns cookie thread panicked"))?
}

/// DSR connections this node is the backend's node of: the reply's tuple
/// -> the service it leaves from (`seta_lb4_dsr`).
pub fn dsr_list(pin_dir: &Path) -> Result<Vec<(CtKey, seta_abi::Lb4ReverseNat)>, DatapathError> {
    let (md, path) = open(pin_dir, MAP_LB4_DSR)?;
    let m: HashMap<MapData, CtKey, seta_abi::Lb4ReverseNat> =
        HashMap::try_from(Map::LruHashMap(md)).map_err(|e| merr(MAP_LB4_DSR, &path, "type", e))?;
    let mut v: Vec<_> = m.iter().flatten().collect();
    v.sort_by_key(|(k, _)| *k);
    Ok(v)
}
