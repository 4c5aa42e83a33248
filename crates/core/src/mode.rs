//! Cluster-wide choices shared by the agent, the lab and the CLI: one enum
//! each (clap `ValueEnum` with the `clap` feature), never strings.
use serde::{Deserialize, Serialize};

/// What a pod gets for a service without backends (Cilium's
/// `--service-no-backend-response`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum NoBackendResponse {
    /// an ICMP port unreachable: a TCP connect fails at once
    #[default]
    Reject,
    /// the packet is dropped (the client times out)
    Drop,
}

/// How north-south traffic reaches a backend on another node
/// (`--bpf-lb-mode`, Cilium's): `snat` (from the node's address, back through
/// it), `dsr` (the client's address kept, the reply straight from the
/// backend's node; needs native routing), `hybrid` (DSR for TCP, SNAT for UDP).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum LbMode {
    #[default]
    Snat,
    Dsr,
    Hybrid,
}

impl std::fmt::Display for LbMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Snat => "snat",
            Self::Dsr => "dsr",
            Self::Hybrid => "hybrid",
        })
    }
}

/// Which datapath traces are reported (`--monitor-aggregation`, Cilium's
/// levels): new connections and TCP SYN/FIN/RST always; `none` adds every
/// packet, `low` every packet but TCP's pure ACKs, `medium` an established
/// connection once per ~4 s interval, `maximum` nothing more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum MonitorAggregation {
    None,
    Low,
    #[default]
    Medium,
    Maximum,
}

/// Where identities, nodes and pod IPs are shared
/// (`--identity-allocation-mode`): CiliumIdentity, CiliumNode and
/// CiliumEndpoint objects in the Kubernetes API, or the kvstore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum IdentityAllocationMode {
    Crd,
    Kvstore,
}

/// Where a node's pod CIDR comes from when none is given (`--ipam`):
/// the operator's cluster pool (through the kvstore, or the CiliumNode in
/// CRD mode), or the Node's `spec.podCIDRs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Ipam {
    #[default]
    ClusterPool,
    Kubernetes,
}

/// How a new connection's backend is chosen (`--bpf-lb-algorithm`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum LbAlgorithm {
    /// a random slot
    #[default]
    Random,
    /// Maglev consistent hashing of the flow (north-south frontends:
    /// NodePort, ExternalIP, LoadBalancer): every node picks the same backend
    Maglev,
}

/// How pods reach other nodes' pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum RoutingMode {
    /// VXLAN (UDP 8472), the source identity in the VNI
    #[default]
    Tunnel,
    /// routes to each node's pod CIDR over the underlay
    Native,
}

/// Where the cluster state (identities, IPs, nodes, policies) lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum KvstoreKind {
    /// embedded, persisted in the state dir (one node)
    #[default]
    Memory,
    /// a real etcd shared by the nodes
    Etcd,
}

impl RoutingMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tunnel => "tunnel",
            Self::Native => "native",
        }
    }
}

impl KvstoreKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Etcd => "etcd",
        }
    }
}

impl std::fmt::Display for RoutingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for KvstoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RoutingMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tunnel" => Ok(Self::Tunnel),
            "native" => Ok(Self::Native),
            o => Err(format!("routing mode {o:?}: expected tunnel or native")),
        }
    }
}

impl std::str::FromStr for KvstoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "memory" => Ok(Self::Memory),
            "etcd" => Ok(Self::Etcd),
            o => Err(format!("kvstore {o:?}: expected memory or etcd")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn text_forms_round_trip() {
        for m in [RoutingMode::Tunnel, RoutingMode::Native] {
            assert_eq!(m.to_string().parse::<RoutingMode>().unwrap(), m);
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        for k in [KvstoreKind::Memory, KvstoreKind::Etcd] {
            assert_eq!(k.to_string().parse::<KvstoreKind>().unwrap(), k);
        }
        assert!("vxlan".parse::<RoutingMode>().unwrap_err().contains("tunnel or native"));
    }
}
