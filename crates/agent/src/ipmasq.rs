//! The masquerade subsystem: which destinations BPF masquerade leaves alone
//! (`seta_ipmasq_v4`), from `--ipv4-native-routing-cidr` and, with
//! `--enable-ip-masq-agent`, from the ip-masq-agent's file, which it
//! follows while the agent runs (a ConfigMap update lands within a second).
//!
//! At start a file that does not parse stops the agent (nothing written).
//! Later, a file that does not parse keeps the ranges the map has; the
//! error is logged and shown by `seta status`, until the file is fixed.
use crate::kernel::Kernel;
use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use seta_core::api::{MasqDevice, MasqStatus};
use seta_core::ipmasq::{self, MasqConfig};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The file as read: `None` when it is missing or empty (the defaults).
pub fn read(path: &Path) -> Result<Option<MasqConfig>> {
    parse_text(path, read_text(path)?.as_deref())
}

/// The file's text; `None` when it is missing.
fn read_text(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("ip-masq-agent config {}", path.display())),
    }
}

fn parse_text(path: &Path, text: Option<&str>) -> Result<Option<MasqConfig>> {
    match text {
        None => Ok(None),
        Some(t) => ipmasq::parse(t).map_err(|e| anyhow::anyhow!("ip-masq-agent config {}: {e}", path.display())),
    }
}

pub struct IpMasq {
    kernel: Arc<dyn Kernel>,
    /// BPF masquerade is on
    enabled: bool,
    /// the ip-masq-agent's file, when it is on
    path: Option<PathBuf>,
    native: Option<Ipv4Net>,
    st: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// the file's text last read (None: missing), to skip unchanged reads
    seen: Option<Option<String>>,
    /// what the map was last made to hold
    applied: Option<BTreeMap<Ipv4Net, u8>>,
    /// the file's error, while it does not parse
    error: Option<String>,
    /// what `seta_masq_dev_v4` was last made to hold (ifindex -> device, address)
    devices: Option<BTreeMap<u32, (String, Ipv4Addr)>>,
}

impl IpMasq {
    pub fn new(kernel: Arc<dyn Kernel>, enabled: bool, path: Option<PathBuf>, native: Option<Ipv4Net>) -> Self {
        Self {
            kernel,
            enabled,
            path,
            native,
            st: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The map as the flags and the file say, whatever it held before (a
    /// restart with other flags); a file that does not parse is an error
    /// and nothing is written.
    pub fn start(&self) -> Result<()> {
        let Some(path) = &self.path else {
            self.apply(None)?;
            return Ok(());
        };
        let text = read_text(path)?;
        let file = parse_text(path, text.as_deref())?;
        self.apply(Some(file.as_ref()))?;
        self.state().seen = Some(text);
        Ok(())
    }

    /// Follow the ip-masq-agent's file: `true` when the map changed. A file
    /// that does not parse changes nothing and is reported.
    pub fn refresh(&self) -> Result<bool> {
        let Some(path) = &self.path else { return Ok(false) };
        let text = match read_text(path) {
            Ok(t) => t,
            Err(e) => return Ok(self.not_taken(format!("{e:#}"), None)),
        };
        if self.state().seen.as_ref() == Some(&text) {
            return Ok(false);
        }
        let file = match parse_text(path, text.as_deref()) {
            Ok(f) => f,
            Err(e) => return Ok(self.not_taken(format!("{e:#}"), Some(text))),
        };
        let changed = self.apply(Some(file.as_ref()))?;
        let mut st = self.state();
        st.error = None;
        st.seen = Some(text);
        Ok(changed)
    }

    /// The file could not be taken: the ranges stay, the error is kept for
    /// status (and logged once). `seen`: the text that failed, if read.
    fn not_taken(&self, e: String, seen: Option<Option<String>>) -> bool {
        let mut st = self.state();
        if st.error.as_ref() != Some(&e) {
            tracing::error!(error = %e, "ip-masq-agent config not taken; the non-masquerade CIDRs stay as they were");
        }
        st.error = Some(e);
        if seen.is_some() {
            st.seen = seen;
        }
        false
    }

    fn apply(&self, file: Option<Option<&MasqConfig>>) -> Result<bool> {
        let want = ipmasq::desired(file, self.native);
        if self.state().applied.as_ref() == Some(&want) {
            return Ok(false);
        }
        self.kernel.ipmasq_sync(&want)?;
        tracing::info!(ranges = ?want.keys().map(ToString::to_string).collect::<Vec<_>>(), "masquerade leaves these destinations alone");
        self.state().applied = Some(want);
        Ok(true)
    }

    /// The native devices and the address a connection leaving by each is
    /// masqueraded to (`seta_core::ipmasq::device_addresses`); `true` when
    /// the map changed. Nothing is written with BPF masquerade off.
    pub fn set_devices(&self, want: BTreeMap<u32, (String, Ipv4Addr)>) -> Result<bool> {
        if !self.enabled || self.state().devices.as_ref() == Some(&want) {
            return Ok(false);
        }
        self.kernel.masq_dev_sync(&want.iter().map(|(i, (_, a))| (*i, *a)).collect())?;
        tracing::info!(devices = ?want.values().map(|(d, a)| format!("{d} {a}")).collect::<Vec<_>>(), "masquerading to each native device's address");
        self.state().devices = Some(want);
        Ok(true)
    }

    pub fn status(&self) -> MasqStatus {
        let st = self.state();
        let applied = st.applied.clone().unwrap_or_default();
        MasqStatus {
            enabled: self.enabled,
            ip_masq_agent: self.path.as_ref().map(|p| p.display().to_string()),
            native_routing_cidr: self.native.map(|n| n.to_string()),
            non_masquerade_cidrs: applied
                .iter()
                .filter(|(_, v)| *v & ipmasq::FROM_IP_MASQ_AGENT != 0)
                .map(|(n, _)| n.to_string())
                .collect(),
            config_error: st.error.clone(),
            devices: st
                .devices
                .iter()
                .flat_map(|d| d.values())
                .map(|(device, address)| MasqDevice {
                    device: device.clone(),
                    address: *address,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake::Fake;

    fn nets(f: &Fake) -> Vec<String> {
        f.state().ipmasq.keys().map(ToString::to_string).collect()
    }

    #[test]
    fn the_file_is_followed_and_a_bad_one_changes_nothing() {
        let dir = crate::testutil::Tmp::new("ipmasq");
        let path = dir.0.join("config");
        let fake = Fake::new();
        let native: Ipv4Net = "10.0.0.0/8".parse().unwrap();
        let m = IpMasq::new(fake.clone(), true, Some(path.clone()), Some(native));
        // no file: the defaults, link-local and the native routing CIDR
        m.start().unwrap();
        assert_eq!(fake.state().ipmasq.len(), 12);
        assert_eq!(
            fake.state().ipmasq[&native],
            ipmasq::FROM_IP_MASQ_AGENT | ipmasq::FROM_NATIVE_ROUTING_CIDR
        );
        assert!(!m.refresh().unwrap(), "nothing changed");
        // a file replaces the defaults
        std::fs::write(&path, "nonMasqueradeCIDRs: [192.0.2.0/24]\nmasqLinkLocal: true\n").unwrap();
        assert!(m.refresh().unwrap());
        assert_eq!(nets(&fake), ["10.0.0.0/8", "192.0.2.0/24"]);
        assert_eq!(m.status().non_masquerade_cidrs, ["192.0.2.0/24"]);
        // a bad file: the map stays, status says why
        std::fs::write(&path, "nonMasqueradeCIDRs: [192.0.2.0/24, 10.0.0.0/40]\n").unwrap();
        let writes = fake.state().ipmasq_writes;
        assert!(!m.refresh().unwrap());
        assert_eq!(fake.state().ipmasq_writes, writes, "nothing written");
        assert_eq!(nets(&fake), ["10.0.0.0/8", "192.0.2.0/24"]);
        let e = m.status().config_error.unwrap();
        assert!(e.contains("nonMasqueradeCIDRs[1]: \"10.0.0.0/40\""), "{e}");
        // fixed: followed again, the error goes
        std::fs::write(&path, "nonMasqueradeCIDRs: [172.16.0.0/12]\n").unwrap();
        assert!(m.refresh().unwrap());
        assert_eq!(nets(&fake), ["10.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12"]);
        assert_eq!(m.status().config_error, None);
        // removed: the defaults again
        std::fs::remove_file(&path).unwrap();
        assert!(m.refresh().unwrap());
        assert_eq!(fake.state().ipmasq.len(), 12);
    }

    #[test]
    fn each_native_device_gets_its_address_in_the_map() {
        let fake = Fake::new();
        let a = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
        let want = BTreeMap::from([
            (2, ("ul0".to_string(), a("172.30.0.2"))),
            (7, ("ext2gw".to_string(), a("203.0.113.1"))),
        ]);
        let off = IpMasq::new(fake.clone(), false, None, None);
        assert!(!off.set_devices(want.clone()).unwrap(), "BPF masquerade off: nothing written");
        assert!(fake.state().masq_devs.is_empty());
        let m = IpMasq::new(fake.clone(), true, None, None);
        assert!(m.set_devices(want.clone()).unwrap());
        assert_eq!(
            fake.state().masq_devs,
            BTreeMap::from([(2, a("172.30.0.2")), (7, a("203.0.113.1"))])
        );
        assert!(!m.set_devices(want).unwrap(), "unchanged");
        let devices = m.status().devices;
        assert_eq!((devices[1].device.as_str(), devices[1].address), ("ext2gw", a("203.0.113.1")));
        // a device's address changes, one goes
        assert!(m.set_devices(BTreeMap::from([(2, ("ul0".to_string(), a("172.30.0.3")))])).unwrap());
        assert_eq!(fake.state().masq_devs, BTreeMap::from([(2, a("172.30.0.3"))]));
    }

    #[test]
    fn a_bad_file_at_start_is_an_error_and_nothing_is_written() {
        let dir = crate::testutil::Tmp::new("ipmasq");
        let path = dir.0.join("config");
        std::fs::write(&path, "nonMasqueradeCIDR: [10.0.0.0/8]\n").unwrap();
        let fake = Fake::new();
        let m = IpMasq::new(fake.clone(), true, Some(path), None);
        let e = m.start().unwrap_err().to_string();
        assert!(e.contains("unknown field `nonMasqueradeCIDR`"), "{e}");
        assert_eq!(fake.state().ipmasq_writes, 0);
    }

    #[test]
    fn without_the_ip_masq_agent_only_the_native_routing_cidr_is_kept() {
        let fake = Fake::new();
        fake.state().ipmasq.insert("192.168.0.0/16".parse().unwrap(), 1);
        let m = IpMasq::new(fake.clone(), true, None, None);
        m.start().unwrap();
        assert!(fake.state().ipmasq.is_empty(), "a previous run's ranges go");
        assert!(!m.refresh().unwrap());
        let m = IpMasq::new(fake.clone(), true, None, Some("10.0.0.0/8".parse().unwrap()));
        m.start().unwrap();
        assert_eq!(nets(&fake), ["10.0.0.0/8"]);
        assert!(m.status().non_masquerade_cidrs.is_empty());
    }
}
