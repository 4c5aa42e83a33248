//! Services (kube-proxy replacement), the pure part: Kubernetes `v1`
//! `Service` and `discovery.k8s.io/v1` `EndpointSlice` objects decoded as
//! strictly as the API server does ([`parse`]), translated into the
//! frontends a node load-balances ([`translate`]) with backend states after
//! Cilium's, the choice of a backend ([`Frontend::candidates`]) and the
//! Maglev table ([`maglev`]). No I/O.
pub mod exposure;
pub mod maglev;
pub mod parse;
#[cfg(test)]
mod tests;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub use parse::{parse_file, parse_file_with, parse_value, parse_value_with, ServiceError};

/// The NodePort range (Kubernetes' default, as Cilium's).
pub const NODE_PORT_MIN: u16 = 30000;
pub const NODE_PORT_MAX: u16 = 32767;
/// Default ClientIP affinity timeout (3 h), as Kubernetes and Cilium.
pub const AFFINITY_TIMEOUT_DEFAULT: u32 = 10800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Sctp => "SCTP",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

/// `spec.trafficDistribution` (or the older `service.kubernetes.io/topology-mode:
/// Auto` annotation, as PreferClose): which backends a node prefers, when the
/// agent runs with `--enable-service-topology` (Cilium's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficDistribution {
    /// backends whose EndpointSlice hints name this node's zone
    PreferClose,
    /// the same as PreferClose
    PreferSameZone,
    /// backends on this node
    PreferSameNode,
}

impl std::fmt::Display for TrafficDistribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PreferClose => "PreferClose",
            Self::PreferSameZone => "PreferSameZone",
            Self::PreferSameNode => "PreferSameNode",
        })
    }
}

/// The node label that names a node's zone (topology-aware routing).
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";
/// A Service with this label is not load-balanced by any proxy (kube-proxy's
/// and Cilium's service watchers select it out).
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    pub name: String,
    pub protocol: Proto,
    pub port: u16,
    pub target: TargetPort,
    pub node_port: Option<u16>,
}

/// A `v1` Service, reduced to what load-balancing needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub kind: ServiceType,
    /// empty for a headless service (`clusterIP: None`)
    pub cluster_ips: Vec<Ipv4Addr>,
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip`
    pub lb_ips: Vec<Ipv4Addr>,
    pub ports: Vec<ServicePort>,
    /// `sessionAffinity: ClientIP`: the timeout in seconds
    pub affinity: Option<u32>,
    pub external_policy: TrafficPolicy,
    pub internal_policy: TrafficPolicy,
    pub source_ranges: Vec<Ipv4Net>,
    pub health_check_node_port: Option<u16>,
    /// `service.kubernetes.io/service-proxy-name`: which proxy serves it
    /// (None: the default one)
    pub proxy_name: Option<String>,
    /// labelled `service.kubernetes.io/headless` (whatever its value): no
    /// proxy serves it, as kube-proxy's and Cilium's watchers skip it
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub headless_label: bool,
    pub selector: BTreeMap<String, String>,
    /// Cilium's per-service annotations
    #[serde(default)]
    pub annotations: SvcAnnotations,
    /// which backends a node prefers (topology-aware routing)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_distribution: Option<TrafficDistribution>,
}

/// Cilium's per-service annotations (`service.cilium.io/*`). The forwarding
/// mode and the algorithm count only where the agent honours them
/// (`--bpf-lb-mode-annotation`, `--bpf-lb-algorithm-annotation`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SvcAnnotations {
    /// `service.cilium.io/forwarding-mode: dsr|snat`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding_mode: Option<crate::mode::LbMode>,
    /// `service.cilium.io/lb-algorithm: maglev|random`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lb_algorithm: Option<crate::mode::LbAlgorithm>,
    /// `service.cilium.io/src-ranges-policy: deny`: loadBalancerSourceRanges
    /// is a deny list (`allow`, the default: an allow list)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub source_ranges_deny: bool,
    /// `service.cilium.io/type: ClusterIP|NodePort|LoadBalancer`: only the
    /// frontends of that kind are served (e.g. a LoadBalancer's address
    /// without its node ports and cluster IP)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<FrontendKind>,
    /// `service.cilium.io/node`: only nodes whose `service.cilium.io/node`
    /// label has this value expose the service
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `service.cilium.io/node-selector`: only nodes whose labels match
    /// this label selector expose the service (wins over `node`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
}

/// The annotation keys of [`SvcAnnotations`].
pub const ANNOTATION_FORWARDING_MODE: &str = "service.cilium.io/forwarding-mode";
pub const ANNOTATION_LB_ALGORITHM: &str = "service.cilium.io/lb-algorithm";
pub const ANNOTATION_SRC_RANGES_POLICY: &str = "service.cilium.io/src-ranges-policy";
pub const ANNOTATION_TYPE: &str = "service.cilium.io/type";
pub const ANNOTATION_NODE: &str = "service.cilium.io/node";
pub const ANNOTATION_NODE_SELECTOR: &str = "service.cilium.io/node-selector";
/// Kubernetes' annotations that asked for topology-aware routing before
/// `spec.trafficDistribution` (value `Auto`: PreferClose)
pub const ANNOTATIONS_TOPOLOGY_MODE: [&str; 2] = ["service.kubernetes.io/topology-mode", "service.kubernetes.io/topology-aware-hints"];

impl Service {
    pub fn headless(&self) -> bool {
        self.cluster_ips.is_empty()
    }

    /// Whether it is load-balanced at all (not headless, not ExternalName).
    pub fn handled(&self) -> bool {
        !self.headless() && self.kind != ServiceType::ExternalName
    }

    /// Whether a proxy named `name` serves it (kube-proxy's and Cilium's
    /// `service.kubernetes.io/service-proxy-name`): the default proxy ("")
    /// serves the services without the label, a named one only those
    /// labelled with its name; none serves one labelled
    /// `service.kubernetes.io/headless`.
    pub fn proxied_by(&self, name: &str) -> bool {
        !self.headless_label && self.proxy_name.as_deref().unwrap_or("") == name
    }

    /// Whether a node with `labels` exposes it (`service.cilium.io/node`,
    /// `service.cilium.io/node-selector`).
    pub fn exposed_on(&self, labels: &BTreeMap<String, String>) -> bool {
        let a = &self.annotations;
        exposure::exposed(a.node.as_deref(), a.node_selector.as_deref(), labels)
    }
}

/// A container's hostPort (CNI `portMappings`): the node's `host_port`
/// (on `host_ip`, else on every NodePort address) to the pod's
/// `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPort {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Proto,
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
}

/// The node addresses NodePorts (and hostPorts without a host IP) are served
/// on, Cilium's `nodeport-addresses`: without CIDRs, the node's primary
/// address; with them, each of the node device's addresses inside one of
/// them (the primary too, when a CIDR holds it), in order, once each.
pub fn node_port_addresses(primary: Option<Ipv4Addr>, device: &[Ipv4Addr], cidrs: &[Ipv4Net]) -> Vec<Ipv4Addr> {
    if cidrs.is_empty() {
        return primary.into_iter().collect();
    }
    let mut out: Vec<Ipv4Addr> = primary
        .iter()
        .chain(device)
        .copied()
        .filter(|a| cidrs.iter().any(|c| c.contains(a)))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// NodePort addresses over several native devices (Cilium's `devices`):
/// the node IP's device as [`node_port_addresses`], and each other device
/// (its IPv4 addresses) by the same rule: its primary (lowest) address
/// without `cidrs`, else its addresses inside them. Sorted, no repeats.
pub fn node_port_addresses_of_devices(
    primary: Option<Ipv4Addr>,
    device: &[Ipv4Addr],
    others: &[Vec<Ipv4Addr>],
    cidrs: &[Ipv4Net],
) -> Vec<Ipv4Addr> {
    let mut out = node_port_addresses(primary, device, cidrs);
    for addrs in others {
        out.extend(node_port_addresses(addrs.iter().min().copied(), addrs, cidrs));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The NodePort range (Cilium's `--node-port-range`, which must match the API
/// server's `--service-node-port-range`): a service's nodePort must be in it,
/// a hostPort must not (Cilium's rule), and BPF SNAT takes its ports above
/// it (Cilium's NODEPORT_PORT_MIN_NAT = max + 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePortRange {
    pub min: u16,
    pub max: u16,
}

/// At least this many ports stay above the range for BPF SNAT.
pub const NAT_PORTS_MIN_COUNT: u32 = 1024;

impl Default for NodePortRange {
    fn default() -> Self {
        Self {
            min: NODE_PORT_MIN,
            max: NODE_PORT_MAX,
        }
    }
}

impl NodePortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.min..=self.max).contains(&port)
    }
    /// The first port BPF SNAT may give a connection (the rest up to 65535).
    pub fn nat_port_min(&self) -> u16 {
        self.max + 1
    }
    /// Whether the two inclusive ranges share a port.
    pub fn overlaps(&self, lo: u16, hi: u16) -> bool {
        self.min <= hi && lo <= self.max
    }

    /// Cilium's check of the range against the node's ephemeral ports: with
    /// `local_port_range` (`ip_local_port_range`, "MIN\tMAX") overlapping
    /// the range, local sockets could take a NodePort as their own port, so
    /// the range joins `reserved` (`ip_local_reserved_ports`, "1,2-4,...")
    /// with `auto_protect` (the new value to write), and is an error
    /// without. `None`: nothing to write (no overlap, or reserved already).
    pub fn protect(&self, local_port_range: &str, reserved: &str, auto_protect: bool) -> Result<Option<String>, String> {
        let mut it = local_port_range.split_whitespace().map(str::parse::<u16>);
        let (Some(Ok(lo)), Some(Ok(hi)), None) = (it.next(), it.next(), it.next()) else {
            return Err(format!("ip_local_port_range: {local_port_range:?}: not two ports"));
        };
        if !self.overlaps(lo, hi) {
            return Ok(None);
        }
        if !auto_protect {
            return Err(format!(
                "the NodePort range {self} overlaps the ephemeral ports {lo}-{hi} (ip_local_port_range); \
                 reserve it in ip_local_reserved_ports or enable --enable-auto-protect-node-port-range"
            ));
        }
        let mut held = vec![false; usize::from(self.max - self.min) + 1];
        for part in reserved.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) else {
                return Err(format!("ip_local_reserved_ports: {part:?}: not a port or range"));
            };
            for p in a.max(self.min)..=b.min(self.max) {
                held[usize::from(p - self.min)] = true;
            }
        }
        if held.iter().all(|h| *h) {
            return Ok(None);
        }
        Ok(Some(match reserved.trim() {
            "" => self.to_string(),
            r => format!("{r},{self}"),
        }))
    }
}

impl std::fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

impl std::str::FromStr for NodePortRange {
    type Err = String;
    /// `MIN,MAX` (Cilium's form) or `MIN-MAX` (the API server's).
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once(',')
            .or_else(|| s.split_once('-'))
            .ok_or_else(|| format!("{s:?}: must be MIN,MAX (e.g. 30000,32767)"))?;
        let num = |t: &str| {
            t.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{s:?}: {:?} is not a port (1-65535)", t.trim()))
        };
        let (min, max) = (num(a)?, num(b)?);
        if min > max {
            return Err(format!("{s:?}: the first port must not be above the second"));
        }
        if 65535 - u32::from(max) < NAT_PORTS_MIN_COUNT {
            return Err(format!(
                "{s:?}: leaves {} ports above the range for BPF SNAT; it needs {NAT_PORTS_MIN_COUNT} (max at most {})",
                65535 - u32::from(max),
                65535 - NAT_PORTS_MIN_COUNT
            ));
        }
        Ok(Self { min, max })
    }
}

/// A backend's state, as Cilium's (`pkg/loadbalancer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendState {
    Active,
    /// terminating and still serving: used only when no backend is active
    Terminating,
    /// never chosen; kept so established connections continue
    TerminatingNotServing,
    Quarantined,
    Maintenance,
}

impl BackendState {
    /// The state an EndpointSlice endpoint's conditions give; None: not
    /// ready and not terminating (not a backend at all).
    pub fn from_conditions(ready: Option<bool>, serving: Option<bool>, terminating: Option<bool>) -> Option<Self> {
        let terminating = terminating.unwrap_or(false);
        // "ready" unset means ready (the API's rule); serving defaults to ready
        let ready = ready.unwrap_or(!terminating);
        let serving = serving.unwrap_or(ready);
        match (terminating, ready, serving) {
            (false, true, _) => Some(Self::Active),
            (false, false, _) => None,
            (true, _, true) => Some(Self::Terminating),
            (true, _, false) => Some(Self::TerminatingNotServing),
        }
    }
}

impl std::fmt::Display for BackendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Active => "active",
            Self::Terminating => "terminating",
            Self::TerminatingNotServing => "terminating-not-serving",
            Self::Quarantined => "quarantined",
            Self::Maintenance => "maintenance",
        })
    }
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceEndpoint {
    pub addresses: Vec<Ipv4Addr>,
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
    pub node: Option<String>,
    /// `hints.forZones[].name`: the zones whose nodes should use it
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub for_zones: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlicePort {
    pub name: String,
    pub protocol: Proto,
    pub port: u16,
}

/// A `discovery.k8s.io/v1` EndpointSlice (IPv4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSlice {
    pub namespace: String,
    pub name: String,
    /// `kubernetes.io/service-name`
    pub service: String,
    pub ports: Vec<SlicePort>,
    pub endpoints: Vec<SliceEndpoint>,
}

/// An object of a service file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Object {
    Service(Service),
    EndpointSlice(EndpointSlice),
}

impl Object {
    /// (kind, namespace, name): what create-or-replace is keyed by.
    pub fn key(&self) -> (&'static str, &str, &str) {
        match self {
            Object::Service(s) => ("Service", &s.namespace, &s.name),
            Object::EndpointSlice(e) => ("EndpointSlice", &e.namespace, &e.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub state: BackendState,
    /// the node the backend runs on (for traffic policy Local)
    pub node: Option<String>,
    /// the zones whose nodes should use it (EndpointSlice hints)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub for_zones: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FrontendKind {
    ClusterIP,
    NodePort,
    ExternalIP,
    LoadBalancer,
    HostPort,
}

impl FrontendKind {
    /// Reached from outside the cluster (north-south).
    pub fn external(self) -> bool {
        self != FrontendKind::ClusterIP
    }
}

/// An address and port this node load-balances, with its backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frontend {
    /// the node's address for NodePort frontends
    pub addr: Ipv4Addr,
    pub port: u16,
    pub proto: Proto,
    pub kind: FrontendKind,
    /// "namespace/name"
    pub service: String,
    pub port_name: String,
    pub backends: Vec<Backend>,
    /// traffic policy Local applies: only this node's backends
    pub local_only: bool,
    pub affinity: Option<u32>,
    /// the service's `loadBalancerSourceRanges`, on its LoadBalancer,
    /// NodePort and ClusterIP frontends ([`Frontend::checked_source_ranges`]
    /// says where they are checked)
    pub source_ranges: Vec<Ipv4Net>,
    /// the service's annotations (forwarding mode, algorithm, ranges policy)
    #[serde(default)]
    pub annotations: SvcAnnotations,
    /// the service's traffic distribution (topology-aware routing)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_distribution: Option<TrafficDistribution>,
    /// which clients this entry serves
    #[serde(default, skip_serializing_if = "Scope::is_all")]
    pub scope: Scope,
}

/// Which clients a frontend's entry serves: Cilium's lookup scopes. A
/// NodePort, ExternalIP or LoadBalancer frontend whose service has
/// different external and internal traffic policies has two entries, so
/// that clients from outside follow `externalTrafficPolicy` and the
/// cluster's pods and nodes `internalTrafficPolicy` (Cilium's matrix).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// every client: the frontend's only entry
    #[default]
    All,
    /// clients from outside the cluster (an `Internal` twin serves the rest)
    External,
    /// the cluster's own clients (Cilium's `/i` frontend)
    Internal,
}

impl Scope {
    pub fn is_all(&self) -> bool {
        *self == Scope::All
    }
}

/// Where a node is, for topology-aware routing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Locality<'a> {
    pub node: &'a str,
    /// its `topology.kubernetes.io/zone` label
    pub zone: Option<&'a str>,
    /// `--enable-service-topology`: traffic distributions count
    pub topology: bool,
}

impl Frontend {
    /// The backends new connections may go to, in order: the active ones
    /// (this node's only, under traffic policy Local); when none is
    /// active, the terminating ones that still serve. Empty: no backend
    /// (the client gets a refusal).
    pub fn candidates(&self, node: &str) -> Vec<&Backend> {
        let usable = |b: &&Backend| !self.local_only || b.node.as_deref() == Some(node);
        let active: Vec<&Backend> = self
            .backends
            .iter()
            .filter(usable)
            .filter(|b| b.state == BackendState::Active)
            .collect();
        if !active.is_empty() {
            return active;
        }
        self.backends
            .iter()
            .filter(usable)
            .filter(|b| b.state == BackendState::Terminating)
            .collect()
    }

    /// The source ranges clients from outside are checked against: a
    /// LoadBalancer frontend's, and with `all_types` (Cilium's
    /// `bpf-lb-source-range-all-types`) also the NodePort's and ClusterIP's
    /// of the same service.
    pub fn checked_source_ranges(&self, all_types: bool) -> &[Ipv4Net] {
        match self.kind {
            FrontendKind::LoadBalancer => &self.source_ranges,
            FrontendKind::NodePort | FrontendKind::ClusterIP if all_types => &self.source_ranges,
            _ => &[],
        }
    }

    /// The candidates ([`Frontend::candidates`]) a node at `at` uses, after
    /// the service's traffic distribution when topology-aware routing is on
    /// (Cilium's rules): PreferSameNode keeps this node's backends;
    /// PreferClose and PreferSameZone keep those whose hints name this
    /// node's zone, when every candidate has hints. Whenever that leaves
    /// none, all candidates serve (the safeguard of Kubernetes' topology-aware
    /// routing).
    pub fn candidates_at(&self, at: Locality<'_>) -> Vec<&Backend> {
        let all = self.candidates(at.node);
        let near: Vec<&Backend> = match (at.topology, self.traffic_distribution, at.zone) {
            (true, Some(TrafficDistribution::PreferSameNode), _) => {
                all.iter().copied().filter(|b| b.node.as_deref() == Some(at.node)).collect()
            }
            (true, Some(TrafficDistribution::PreferClose | TrafficDistribution::PreferSameZone), Some(zone))
                if all.iter().all(|b| !b.for_zones.is_empty()) =>
            {
                all.iter().copied().filter(|b| b.for_zones.iter().any(|z| z == zone)).collect()
            }
            _ => vec![],
        };
        if near.is_empty() {
            all
        } else {
            near
        }
    }
}

/// The frontends of `svc` on node `node` (whose NodePort addresses are
/// `node_addrs`), with backends from the service's `slices`.
pub fn translate(svc: &Service, slices: &[&EndpointSlice], node_addrs: &[Ipv4Addr]) -> Vec<Frontend> {
    if !svc.handled() {
        return vec![];
    }
    let mut out = Vec::new();
    for p in &svc.ports {
        let backends = backends_of(p, slices);
        let mut push = |addr: Ipv4Addr, port: u16, kind: FrontendKind| {
            // service.cilium.io/type: only the frontends of that kind
            if svc.annotations.exposure.is_some_and(|k| k != kind) {
                return;
            }
            let ext_local = svc.external_policy == TrafficPolicy::Local;
            let int_local = svc.internal_policy == TrafficPolicy::Local;
            // an outside-facing frontend whose traffic policies differ has
            // two entries (Cilium's two scopes): one for clients from
            // outside (externalTrafficPolicy), one for the cluster's own
            // (internalTrafficPolicy)
            let scopes: &[(Scope, bool)] = match (kind.external(), ext_local == int_local) {
                (false, _) => &[(Scope::All, int_local)],
                (true, true) => &[(Scope::All, ext_local)],
                (true, false) => &[(Scope::External, ext_local), (Scope::Internal, int_local)],
            };
            let source_ranges = match kind {
                FrontendKind::LoadBalancer | FrontendKind::NodePort | FrontendKind::ClusterIP => svc.source_ranges.clone(),
                _ => vec![],
            };
            for &(scope, local_only) in scopes {
                out.push(Frontend {
                    addr,
                    port,
                    proto: p.protocol,
                    kind,
                    service: format!("{}/{}", svc.namespace, svc.name),
                    port_name: p.name.clone(),
                    backends: backends.clone(),
                    local_only,
                    affinity: svc.affinity,
                    source_ranges: source_ranges.clone(),
                    annotations: svc.annotations.clone(),
                    traffic_distribution: svc.traffic_distribution,
                    scope,
                });
            }
        };
        for ip in &svc.cluster_ips {
            push(*ip, p.port, FrontendKind::ClusterIP);
        }
        if let (Some(np), ServiceType::NodePort | ServiceType::LoadBalancer) = (p.node_port, svc.kind) {
            for a in node_addrs {
                push(*a, np, FrontendKind::NodePort);
            }
        }
        for ip in &svc.external_ips {
            push(*ip, p.port, FrontendKind::ExternalIP);
        }
        if svc.kind == ServiceType::LoadBalancer {
            for ip in &svc.lb_ips {
                push(*ip, p.port, FrontendKind::LoadBalancer);
            }
        }
    }
    out
}

/// The backends of one service port: every slice port with the service
/// port's name and protocol (EndpointSlices carry the resolved target port,
/// named ports included), every address of every endpoint that is a backend.
fn backends_of(p: &ServicePort, slices: &[&EndpointSlice]) -> Vec<Backend> {
    let mut out: Vec<Backend> = Vec::new();
    for s in slices {
        for sp in s.ports.iter().filter(|sp| sp.name == p.name && sp.protocol == p.protocol) {
            for e in &s.endpoints {
                let Some(state) = BackendState::from_conditions(e.ready, e.serving, e.terminating) else {
                    continue;
                };
                for ip in &e.addresses {
                    if !out.iter().any(|b| b.ip == *ip && b.port == sp.port) {
                        out.push(Backend {
                            ip: *ip,
                            port: sp.port,
                            state,
                            node: e.node.clone(),
                            for_zones: e.for_zones.clone(),
                        });
                    }
                }
            }
        }
    }
    out.sort_by_key(|b| (b.ip, b.port));
    out
}
