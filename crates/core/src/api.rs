//! JSON bodies of the agent's REST API (`/v1/...` on the unix socket).
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct AgentConfig {
    pub node: String,
    pub pod_cidr: Ipv4Net,
    pub router_ip: Ipv4Addr,
    pub state_dir: String,
    pub socket: String,
    pub bpffs: String,
    pub pin_dir: String,
    pub cni_conf_dir: String,
    pub abi_version: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IpamAddress {
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub cidr: Ipv4Net,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IpamResponse {
    pub ipv4: IpamAddress,
    /// MTU for the pod's interface (0 = leave the default)
    #[serde(default)]
    pub mtu: u32,
    /// MTU of the pod's default route (tunnel mode: the interface MTU minus
    /// the encapsulation); the node's own pod CIDR keeps the interface MTU.
    /// 0 = same as `mtu`.
    #[serde(default)]
    pub route_mtu: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IpamStatus {
    pub cidr: Ipv4Net,
    pub allocated: usize,
    pub capacity: usize,
    pub allocations: std::collections::BTreeMap<Ipv4Addr, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Status {
    pub node: String,
    pub version: String,
    pub healthy: bool,
    pub uptime_seconds: u64,
    pub datapath: String,
    pub attach_mode: String,
    pub endpoints: usize,
    pub endpoint_states: std::collections::BTreeMap<String, usize>,
    pub ipam: IpamStatus,
    pub restored_endpoints: usize,
    pub cni_config: String,
    #[serde(default)]
    pub policy_revision: u64,
    #[serde(default)]
    pub policies: usize,
    /// regenerations that failed because a policy map was full
    #[serde(default)]
    pub policy_map_full_errors: u64,
    #[serde(default)]
    pub kvstore: String,
    /// "ok" or the error talking to the kvstore
    #[serde(default)]
    pub kvstore_status: String,
    /// "disabled", "ok (N watches)" or "degraded: ..." (the Kubernetes API)
    #[serde(default)]
    pub kubernetes: String,
    /// nodes currently announced in the kvstore's registry
    #[serde(default)]
    pub nodes_registered: Vec<String>,
    #[serde(default)]
    pub routing_mode: crate::mode::RoutingMode,
    #[serde(default)]
    pub node_ip: Option<std::net::Ipv4Addr>,
    #[serde(default)]
    pub pod_mtu: u32,
    /// the other nodes as this node's health probes see them
    #[serde(default)]
    pub cluster_health: Vec<NodeHealth>,
    /// supervised background tasks
    #[serde(default)]
    pub tasks: Vec<TaskStatus>,
    /// desired state the kernel does not hold yet (retried with backoff)
    #[serde(default)]
    pub reconcile: ReconcileStatus,
    /// the kube-proxy replacement (services in eBPF)
    #[serde(default)]
    pub kube_proxy_replacement: KprStatus,
    /// BPF masquerade and the destinations it leaves alone
    #[serde(default)]
    pub masquerading: MasqStatus,
}

/// `cilium-dbg status`'s Masquerading line, and the ip-masq-agent's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct MasqStatus {
    /// BPF masquerade is on
    pub enabled: bool,
    /// the ip-masq-agent's file, when it is on
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_masq_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_routing_cidr: Option<String>,
    /// the ip-masq-agent's ranges in the map (with link-local unless masqLinkLocal)
    #[serde(default)]
    pub non_masquerade_cidrs: Vec<String>,
    /// why the file's last version was not taken (the map keeps the one before)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// the native devices and the address a pod's connection leaving by
    /// each is masqueraded to (others: the node IP)
    #[serde(default)]
    pub devices: Vec<MasqDevice>,
}

/// A native device BPF masquerade gives its own address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasqDevice {
    pub device: String,
    pub address: Ipv4Addr,
}

fn yes() -> bool {
    true
}

/// `cilium-dbg status --verbose`'s KubeProxyReplacement block.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct KprStatus {
    /// kube-proxy replacement is on (`--kube-proxy-replacement`); off, only
    /// ClusterIPs are served
    #[serde(default = "yes")]
    pub enabled: bool,
    /// "Enabled" (with the cgroup it attaches at) or "Disabled"
    pub socket_lb: String,
    /// NodePort forwarding mode: "SNAT"
    pub mode: String,
    /// "Random" or "Maglev (Table Size: M)"
    pub backend_selection: String,
    /// what a frontend without backends answers: "reject" or "drop"
    pub no_backend_response: String,
    /// the NodePort range, "MIN-MAX" (`--node-port-range`)
    #[serde(default)]
    pub node_port_range: String,
    /// the node's addresses NodePorts are served on (`--nodeport-addresses`)
    #[serde(default)]
    pub node_port_addresses: Vec<String>,
    /// the native devices from_netdev serves (the node IP's first; Cilium's
    /// `Devices:`)
    #[serde(default)]
    pub devices: Vec<String>,
    pub services: usize,
    pub frontends: usize,
    /// the per-service annotations honoured (Cilium's `Annotations:` list)
    #[serde(default)]
    pub annotations: Vec<String>,
    /// the kinds of frontends served: ClusterIP, NodePort, LoadBalancer,
    /// externalIPs, HostPort (without the replacement, those turned on)
    #[serde(default)]
    pub served: Vec<String>,
}

/// A supervised background task (watch, GC, events reader, health, retries).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct TaskStatus {
    pub name: String,
    /// running, backoff (restarting after a failure) or stopped
    pub state: String,
    pub restarts: u64,
    pub last_error: Option<String>,
}

/// Reconciliations that failed and are pending a retry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct ReconcileStatus {
    /// ipcache prefixes whose write failed, with the error
    pub ipcache_failed: Vec<(String, String)>,
    /// endpoints whose policy regeneration failed (id, message)
    pub endpoints_failed: Vec<(u16, String)>,
    /// regeneration retries done since the agent started
    pub retries: u64,
}

/// One probe round against another node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct NodeHealth {
    pub name: String,
    pub ip: Option<std::net::Ipv4Addr>,
    /// its health port answers on the underlay
    pub node_reachable: bool,
    /// its router IP answers through seta's datapath (tunnel or routes)
    pub datapath_reachable: bool,
    pub probe_ms: f64,
}

/// A program attached to a device (TCX links are invisible to bpftool 7.1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Attachment {
    pub device: String,
    pub ifindex: u32,
    pub direction: String,
    /// `tcx` (a BPF link) or `tc` (a cls_bpf filter on clsact)
    #[serde(default)]
    pub mode: String,
    pub program: String,
    pub prog_id: u32,
    pub pinned: Option<String>,
}

/// What `seta policy get` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyListing {
    pub revision: u64,
    pub policies: Vec<crate::policy::PolicyDoc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentityEntry {
    pub id: u32,
    pub labels: Vec<String>,
    pub refcount: Option<u32>,
}

/// One side of `seta policy trace`: exactly one of the fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TraceSpec {
    pub endpoint: Option<String>,
    pub labels: Option<Vec<String>>,
    pub namespace: Option<String>,
    pub ip: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TraceRequest {
    pub from: TraceSpec,
    pub to: TraceSpec,
    pub protocol: String,
    pub port: u16,
}

/// The largest policy request the agent takes (the JSON body with the YAML
/// inside): room for well over 10,000 policies. Larger input gets a clear
/// error naming this limit; split the file.
pub const MAX_POLICY_BODY: usize = 16 << 20;

/// Body of `PUT /v1/policy` and `POST /v1/policy/validate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyText {
    pub yaml: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyChange {
    pub revision: u64,
    pub policies: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelsBody {
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceBody {
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A services file (Service and EndpointSlice YAML) for `seta service import`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceText {
    pub yaml: String,
}

/// What a service import or delete changed: the objects ("Kind ns/name").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceChange {
    pub revision: u64,
    pub objects: Vec<String>,
}

/// One frontend of `seta service list` (Cilium's columns: Frontend, Service
/// Type, Backend).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServiceEntry {
    /// "namespace/name"
    pub service: String,
    /// "ip:port/PROTO"
    pub frontend: String,
    /// ClusterIP, NodePort, ExternalIPs, LoadBalancer
    #[serde(rename = "type")]
    pub kind: String,
    /// traffic policy Local applies to this frontend
    pub local: bool,
    pub backends: Vec<ServiceBackend>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceBackend {
    /// "ip:port/PROTO"
    pub address: String,
    pub state: crate::service::BackendState,
    pub node: Option<String>,
}

/// `seta service update --backend IP:PORT --state STATE`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendStateBody {
    pub backend: String,
    pub state: String,
}
