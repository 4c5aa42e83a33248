//! Network policy: the Kubernetes NetworkPolicy and Cilium (Clusterwide)
//! NetworkPolicy languages, normalised into [`Rule`]s, and their resolution
//! into per-endpoint policy map entries.
pub mod fuzz;
pub mod parse;
pub mod resolve;
pub mod strict;
pub mod trace;
#[cfg(test)]
mod validation_tests;

use crate::selector::Selector;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    NetworkPolicy,
    CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy,
}

impl Kind {
    pub fn short(&self) -> &'static str {
        match self {
            Kind::NetworkPolicy => "knp",
            Kind::CiliumNetworkPolicy => "cnp",
            Kind::CiliumClusterwideNetworkPolicy => "ccnp",
        }
    }
}

/// Where a rule came from: (kind, namespace, name) plus the index of the rule
/// inside the document (CNP `specs`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Origin {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{:?} {ns}/{}", self.kind, self.name),
            None => write!(f, "{:?} {}", self.kind, self.name),
        }
    }
}

pub const PROTO_ANY: u8 = 0;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_SCTP: u8 = 132;

pub fn proto_name(p: u8) -> &'static str {
    match p {
        PROTO_ANY => "ANY",
        PROTO_ICMP => "ICMP",
        PROTO_TCP => "TCP",
        PROTO_UDP => "UDP",
        PROTO_SCTP => "SCTP",
        _ => "?",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Port {
    Any,
    Range(u16, u16),
    /// a named container port, resolved per endpoint
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct L4 {
    pub proto: u8,
    pub port: Port,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Entity {
    All,
    World,
    Cluster,
    Host,
    RemoteNode,
    Health,
    Init,
    Unmanaged,
    KubeApiserver,
    Ingress,
}

impl Entity {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "all" => Self::All,
            "world" => Self::World,
            "cluster" => Self::Cluster,
            "host" => Self::Host,
            "remote-node" => Self::RemoteNode,
            "health" => Self::Health,
            "init" => Self::Init,
            "unmanaged" => Self::Unmanaged,
            "kube-apiserver" => Self::KubeApiserver,
            "ingress" => Self::Ingress,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Peer {
    /// endpoints (pods) whose identity labels match
    Endpoints(Selector),
    Entity(Entity),
    /// CNP/CCNP CIDR: peers outside the cluster only
    Cidr {
        cidr: Ipv4Net,
        except: Vec<Ipv4Net>,
    },
    /// KNP ipBlock: outside peers by prefix, and also pod IPs
    IpBlock {
        cidr: Ipv4Net,
        except: Vec<Ipv4Net>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Peers {
    /// any peer (an L4-only rule, KNP rule without `from`)
    Any,
    Some(Vec<Peer>),
}

/// One ingress/egress (deny) rule: peers × ports (empty ports = all).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerRule {
    pub peers: Peers,
    pub ports: Vec<L4>,
}

/// A normalised rule, namespace scoping already applied to its selectors.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub origin: Origin,
    /// index of this rule in its document (CNP `specs`)
    pub index: usize,
    pub subject: Selector,
    pub ingress: Vec<PeerRule>,
    pub ingress_deny: Vec<PeerRule>,
    pub egress: Vec<PeerRule>,
    pub egress_deny: Vec<PeerRule>,
    /// does this rule put the selected endpoints into default-deny for the direction?
    pub enforce_ingress: bool,
    pub enforce_egress: bool,
}

impl Rule {
    pub fn describe(&self) -> String {
        format!("{} (rule {})", self.origin, self.index)
    }
}

/// A parsed document: its identity and the rules it yields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDoc {
    pub origin: Origin,
    pub rules: Vec<Rule>,
    /// the document as given (JSON form), for `seta policy get`
    pub source: serde_json::Value,
}
