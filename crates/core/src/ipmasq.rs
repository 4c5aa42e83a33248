//! BPF masquerade's exceptions: the destinations pods reach with their own
//! address. Two sources, as in Cilium:
//!
//! - `--ipv4-native-routing-cidr`: the network where pod addresses are
//!   routable;
//! - the ip-masq-agent configuration file (`--enable-ip-masq-agent`, the
//!   file of kubernetes-sigs/ip-masq-agent): `nonMasqueradeCIDRs` and
//!   `masqLinkLocal`. A missing or empty file means the agent's default
//!   reserved ranges; link-local (169.254.0.0/16) is never masqueraded
//!   unless `masqLinkLocal: true`.
//!
//! Parsing is strict: an unknown key or a bad CIDR is an error naming the
//! field path and the value, and the caller keeps what it had.
use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The ranges kubernetes-sigs/ip-masq-agent (and Cilium's) never
/// masquerade when its file gives none: RFC 1918, shared address space,
/// and the IANA special-purpose ranges.
pub const DEFAULT_NON_MASQ: [&str; 11] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "240.0.0.0/4",
];

/// IPv4 link-local: not masqueraded unless `masqLinkLocal: true`.
pub const LINK_LOCAL: &str = "169.254.0.0/16";

/// A map entry's sources (bits of the map value).
pub const FROM_IP_MASQ_AGENT: u8 = 1;
pub const FROM_NATIVE_ROUTING_CIDR: u8 = 2;

/// The ip-masq-agent file, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasqConfig {
    /// the IPv4 ranges of `nonMasqueradeCIDRs`, host bits cleared (IPv6
    /// ones are accepted and have no effect: seta masquerades IPv4 only)
    pub non_masq: Vec<Ipv4Net>,
    pub masq_link_local: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    #[serde(default, rename = "nonMasqueradeCIDRs")]
    non_masquerade_cidrs: Vec<String>,
    #[serde(default)]
    masq_link_local: bool,
    /// accepted for compatibility; IPv6 is not masqueraded
    #[serde(default, rename = "masqLinkLocalIPv6")]
    _masq_link_local_ipv6: bool,
    /// accepted for compatibility; seta follows the file as it changes
    #[serde(default)]
    _resync_interval: Option<serde_norway::Value>,
}

/// Parse the file (YAML or JSON). `Ok(None)`: empty (only whitespace or
/// comments), which means the defaults.
pub fn parse(text: &str) -> Result<Option<MasqConfig>, String> {
    let v: serde_norway::Value = serde_norway::from_str(text).map_err(|e| format!("not YAML or JSON: {e}"))?;
    if v.is_null() {
        return Ok(None);
    }
    if !v.is_mapping() {
        return Err("(file): expected a mapping with nonMasqueradeCIDRs and masqLinkLocal".into());
    }
    let f: File = serde_path_to_error::deserialize(v).map_err(|e| {
        let msg = e.inner().to_string();
        let path = e.path().to_string();
        match msg.starts_with("unknown field") {
            true => format!("{msg} (check the spelling; unknown keys are not ignored)"),
            false => format!("{path}: {msg}"),
        }
    })?;
    let mut non_masq = Vec::new();
    for (i, c) in f.non_masquerade_cidrs.iter().enumerate() {
        let net: IpNet = c
            .trim()
            .parse()
            .map_err(|_| format!("nonMasqueradeCIDRs[{i}]: {c:?}: expected a CIDR such as 10.0.0.0/8"))?;
        if let IpNet::V4(n) = net.trunc() {
            non_masq.push(n);
        }
    }
    Ok(Some(MasqConfig {
        non_masq,
        masq_link_local: f.masq_link_local,
    }))
}

/// What the datapath's map must hold: each range and its sources. `agent`:
/// the ip-masq-agent is on, with its file (`None`: missing or empty, the
/// defaults); `native`: `--ipv4-native-routing-cidr`.
pub fn desired(agent: Option<Option<&MasqConfig>>, native: Option<Ipv4Net>) -> BTreeMap<Ipv4Net, u8> {
    let mut out = BTreeMap::new();
    if let Some(file) = agent {
        let nets: Vec<Ipv4Net> = match file {
            Some(c) => c.non_masq.clone(),
            None => DEFAULT_NON_MASQ.iter().map(|s| s.parse().unwrap()).collect(),
        };
        for n in nets {
            *out.entry(n).or_insert(0) |= FROM_IP_MASQ_AGENT;
        }
        if !file.is_some_and(|c| c.masq_link_local) {
            *out.entry(LINK_LOCAL.parse().unwrap()).or_insert(0) |= FROM_IP_MASQ_AGENT;
        }
    }
    if let Some(n) = native {
        *out.entry(n.trunc()).or_insert(0) |= FROM_NATIVE_ROUTING_CIDR;
    }
    out
}

/// The address BPF masquerade gives a connection leaving by each native
/// device (Cilium masquerades on each native device to that device's
/// address): the node IP on the device that has it, else the device's
/// primary (lowest) address, the one NodePorts are served on. A device
/// without an IPv4 address is left out: its connections get the node IP.
/// `devices`: (ifindex, name, addresses), the node IP's device first.
pub fn device_addresses(node_ip: Option<Ipv4Addr>, devices: &[(u32, String, Vec<Ipv4Addr>)]) -> BTreeMap<u32, (String, Ipv4Addr)> {
    devices
        .iter()
        .filter_map(|(index, name, addrs)| {
            let a = node_ip.filter(|n| addrs.contains(n)).or_else(|| addrs.iter().min().copied())?;
            Some((*index, (name.clone(), a)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_native_device_masquerades_to_its_own_address() {
        let a = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
        let devs = vec![
            (2, "ul0".to_string(), vec![a("172.30.0.9"), a("172.30.0.2")]),
            (7, "ext2gw".to_string(), vec![a("203.0.113.9"), a("203.0.113.1")]),
            (8, "bare".to_string(), vec![]),
        ];
        let got = device_addresses(Some(a("172.30.0.9")), &devs);
        assert_eq!(
            got,
            BTreeMap::from([
                (2, ("ul0".to_string(), a("172.30.0.9"))),
                (7, ("ext2gw".to_string(), a("203.0.113.1"))),
            ]),
            "the node IP on its device (not its lowest), the primary elsewhere, none without an address"
        );
        assert_eq!(device_addresses(None, &devs)[&2].1, a("172.30.0.2"));
    }

    fn nets(m: &BTreeMap<Ipv4Net, u8>, bit: u8) -> Vec<String> {
        m.iter().filter(|(_, v)| *v & bit != 0).map(|(n, _)| n.to_string()).collect()
    }

    #[test]
    fn an_empty_file_means_the_defaults_and_link_local() {
        for text in ["", "  \n", "# nothing\n"] {
            assert_eq!(parse(text), Ok(None), "{text:?}");
        }
        let d = desired(Some(None), None);
        assert_eq!(d.len(), 12);
        assert!(d.contains_key(&"192.0.2.0/24".parse().unwrap()));
        assert!(d.contains_key(&"169.254.0.0/16".parse().unwrap()));
        assert!(d.values().all(|v| *v == FROM_IP_MASQ_AGENT));
    }

    #[test]
    fn the_file_replaces_the_defaults() {
        let c = parse("nonMasqueradeCIDRs:\n- 10.1.2.3/16\n- fd00::/64\nmasqLinkLocal: false\nresyncInterval: 60s\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            c.non_masq,
            vec!["10.1.0.0/16".parse::<Ipv4Net>().unwrap()],
            "host bits cleared, IPv6 skipped"
        );
        assert_eq!(
            nets(&desired(Some(Some(&c)), None), FROM_IP_MASQ_AGENT),
            ["10.1.0.0/16", "169.254.0.0/16"]
        );
        // JSON, as a ConfigMap may hold it; masqLinkLocal masquerades link-local
        let c = parse(r#"{"nonMasqueradeCIDRs": [], "masqLinkLocal": true}"#).unwrap().unwrap();
        assert!(
            desired(Some(Some(&c)), None).is_empty(),
            "an explicit empty list: everything is masqueraded"
        );
    }

    #[test]
    fn bad_files_name_the_field_and_value() {
        let e = parse("nonMasqueradeCIDRs: [10.0.0.0/8, 192.0.2.0/33]\n").unwrap_err();
        assert_eq!(e, "nonMasqueradeCIDRs[1]: \"192.0.2.0/33\": expected a CIDR such as 10.0.0.0/8");
        let e = parse("nonMasqueradeCIDR: [10.0.0.0/8]\n").unwrap_err();
        assert!(e.contains("unknown field `nonMasqueradeCIDR`") && e.contains("spelling"), "{e}");
        let e = parse("masqLinkLocal: maybe\n").unwrap_err();
        assert!(e.starts_with("masqLinkLocal: "), "{e}");
        let e = parse("nonMasqueradeCIDRs: 10.0.0.0/8\n").unwrap_err();
        assert!(e.starts_with("nonMasqueradeCIDRs: "), "{e}");
        assert!(parse("- 10.0.0.0/8\n").unwrap_err().starts_with("(file): "));
        assert!(parse("{").unwrap_err().starts_with("not YAML or JSON"));
    }

    #[test]
    fn the_native_routing_cidr_joins_whichever_is_on() {
        let n: Ipv4Net = "10.0.0.0/8".parse().unwrap();
        assert_eq!(desired(None, Some(n)), BTreeMap::from([(n, FROM_NATIVE_ROUTING_CIDR)]));
        let d = desired(Some(None), Some(n));
        assert_eq!(d[&n], FROM_IP_MASQ_AGENT | FROM_NATIVE_ROUTING_CIDR);
        assert!(desired(None, None).is_empty());
    }
}
