//! Typed access to the pinned maps (used by the agent and, read-only, by the CLI).
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use seta_abi::{EndpointInfo, EndpointKey, IpcacheKey, IpcacheLpmData, MetricsValue, RemoteEndpointInfo};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::DatapathError;

pub const MAP_LXC: &str = "seta_lxc";
pub const MAP_IPCACHE: &str = "seta_ipcache";
pub const MAP_METRICS: &str = "seta_metrics";

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

pub struct EndpointMap {
    map: HashMap<MapData, EndpointKey, EndpointInfo>,
    path: PathBuf,
}

impl EndpointMap {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let (md, path) = open(pin_dir, MAP_LXC)?;
        let map = HashMap::try_from(Map::HashMap(md)).map_err(|e| merr(MAP_LXC, &path, "type", e))?;
        Ok(Self { map, path })
    }
    pub fn upsert(&mut self, ip: Ipv4Addr, info: &EndpointInfo) -> Result<(), DatapathError> {
        self.map
            .insert(EndpointKey::v4(ip.octets()), info, 0)
            .map_err(|e| merr(MAP_LXC, &self.path, "update", e))
    }
    pub fn remove(&mut self, ip: Ipv4Addr) -> Result<bool, DatapathError> {
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
