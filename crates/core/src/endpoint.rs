//! Endpoint model: states, ids and the change request the CNI plugin sends.
use crate::labels::LabelSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// Endpoint states, with Cilium's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointState {
    WaitingForIdentity,
    NotReady,
    WaitingToRegenerate,
    Regenerating,
    Restoring,
    Ready,
    Disconnecting,
    Disconnected,
    Invalid,
}

impl fmt::Display for EndpointState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// Ways to name an endpoint in the API: `123`, `cilium-local:123`,
/// `container-id:<id>`, `pod-name:<ns>/<pod>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointRef {
    Id(u16),
    ContainerId(String),
    PodName { namespace: String, pod: String },
}

impl EndpointRef {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("container-id:") {
            if rest.is_empty() {
                return Err("container-id: needs a container id".into());
            }
            return Ok(Self::ContainerId(rest.into()));
        }
        if let Some(rest) = s.strip_prefix("pod-name:") {
            let (ns, pod) = rest
                .split_once('/')
                .ok_or_else(|| format!("{s:?}: expected pod-name:<namespace>/<pod>"))?;
            return Ok(Self::PodName {
                namespace: ns.into(),
                pod: pod.into(),
            });
        }
        let n = s.strip_prefix("cilium-local:").unwrap_or(s);
        n.parse::<u16>()
            .ok()
            .filter(|id| *id > 0)
            .map(Self::Id)
            .ok_or_else(|| format!("{s:?} is not an endpoint id (1..65535), container-id:<id> or pod-name:<ns>/<pod>"))
    }

    pub fn matches(&self, ep: &Endpoint) -> bool {
        match self {
            Self::Id(id) => ep.id == *id,
            Self::ContainerId(c) => &ep.container_id == c,
            Self::PodName { namespace, pod } => &ep.namespace == namespace && &ep.pod_name == pod,
        }
    }
}

impl std::fmt::Display for EndpointRef {
    /// The form `parse` accepts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::ContainerId(c) => write!(f, "container-id:{c}"),
            Self::PodName { namespace, pod } => write!(f, "pod-name:{namespace}/{pod}"),
        }
    }
}

/// What the CNI plugin asks the agent to create (Cilium's EndpointChangeRequest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct EndpointChangeRequest {
    pub container_id: String,
    pub container_interface_name: String,
    #[serde(default)]
    pub pod_name: String,
    #[serde(default)]
    pub namespace: String,
    pub ipv4: Ipv4Addr,
    /// MAC of the container-side interface
    pub mac: String,
    /// MAC of the host-side veth
    pub host_mac: String,
    pub interface_name: String,
    pub interface_index: u32,
    #[serde(default)]
    pub netns_path: String,
    /// `[source:]key=value` strings; the source defaults to `k8s`
    #[serde(default)]
    pub labels: Vec<String>,
    /// named container ports, `name=port/PROTO` (e.g. `http=8080/TCP`)
    #[serde(default)]
    pub named_ports: Vec<String>,
    /// hostPorts (the runtime's CNI `portMappings`)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<crate::service::HostPort>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Endpoint {
    pub id: u16,
    pub container_id: String,
    pub container_interface_name: String,
    pub pod_name: String,
    pub namespace: String,
    pub ipv4: Ipv4Addr,
    pub mac: String,
    pub host_mac: String,
    pub interface_name: String,
    pub interface_index: u32,
    pub netns_path: String,
    /// labels given to the pod (CNI args, `seta endpoint labels`)
    #[serde(default)]
    pub pod_labels: Vec<String>,
    /// security-relevant labels (pod + namespace labels, filtered): the identity's labels
    pub labels: LabelSet,
    pub identity: u32,
    pub state: EndpointState,
    #[serde(default)]
    pub named_ports: BTreeMap<String, (u8, u16)>,
    #[serde(default)]
    pub ingress_enforced: bool,
    #[serde(default)]
    pub egress_enforced: bool,
    /// policy revision the datapath enforces for this endpoint
    #[serde(default)]
    pub policy_revision: u64,
    #[serde(default)]
    pub policy_entries: usize,
    /// why the endpoint is not ready, if it is not
    #[serde(default)]
    pub status_message: String,
    /// hostPorts served by the datapath (CNI `portMappings`)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<crate::service::HostPort>,
}

/// Parse `name=port/PROTO` (PROTO: TCP, UDP or SCTP; default TCP).
pub fn parse_named_port(s: &str) -> Result<(String, (u8, u16)), String> {
    let (name, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected name=port[/TCP|UDP|SCTP]"))?;
    let ok = !name.is_empty() && name.len() <= 15 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(format!("{name:?} is not a port name (lowercase letters, digits, '-', at most 15)"));
    }
    let (port, proto) = rest.split_once('/').unwrap_or((rest, "TCP"));
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{port:?} is not a port (1..65535)"))?;
    let proto = match proto.to_ascii_uppercase().as_str() {
        "TCP" => 6,
        "UDP" => 17,
        "SCTP" => 132,
        other => return Err(format!("{other:?} is not TCP, UDP or SCTP")),
    };
    Ok((name.to_string(), (proto, port)))
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        mac[i] = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?} is not a MAC address"))?;
    }
    Ok(mac)
}

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Lowest free endpoint id (1..=65535).
pub fn next_endpoint_id<'a>(used: impl Iterator<Item = &'a u16>) -> Option<u16> {
    let used: std::collections::BTreeSet<u16> = used.copied().collect();
    (1..=u16::MAX).find(|i| !used.contains(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs() {
        assert_eq!(EndpointRef::parse("12").unwrap(), EndpointRef::Id(12));
        assert_eq!(EndpointRef::parse("cilium-local:7").unwrap(), EndpointRef::Id(7));
        assert_eq!(
            EndpointRef::parse("container-id:abc").unwrap(),
            EndpointRef::ContainerId("abc".into())
        );
        assert!(EndpointRef::parse("pod-name:x").is_err());
        assert!(EndpointRef::parse("0").is_err());
        assert!(EndpointRef::parse("abc").is_err());
    }

    #[test]
    fn macs_and_states() {
        let m = parse_mac("0a:1B:02:03:04:ff").unwrap();
        assert_eq!(format_mac(&m), "0a:1b:02:03:04:ff");
        assert!(parse_mac("zz").is_err());
        assert_eq!(EndpointState::WaitingForIdentity.to_string(), "waiting-for-identity");
        assert_eq!(next_endpoint_id([1u16, 2, 4].iter()), Some(3));
        assert_eq!(parse_named_port("http=8080/TCP").unwrap(), ("http".into(), (6, 8080)));
        assert_eq!(parse_named_port("dns=53/udp").unwrap(), ("dns".into(), (17, 53)));
        assert!(parse_named_port("HTTP=80").is_err());
        assert!(parse_named_port("x=0").is_err());
    }
}
