//! Agent configuration from flags, environment (SETA_*) or a JSON file.
use anyhow::{bail, Context, Result};
use clap::Args;
use ipnet::Ipv4Net;
pub use seta_core::mode::{
    IdentityAllocationMode, Ipam, KvstoreKind, LbAlgorithm, LbMode, MonitorAggregation, NoBackendResponse, RoutingMode,
};
use std::path::PathBuf;

#[derive(Debug, Clone, Args, Default)]
pub struct RunArgs {
    /// Node name; keys every global resource (pins, socket, state)
    #[arg(long, env = "SETA_NODE")]
    pub node: Option<String>,
    /// Pod CIDR of this node, e.g. 10.200.1.0/24 (the first address is the router IP)
    #[arg(long, env = "SETA_POD_CIDR")]
    pub pod_cidr: Option<Ipv4Net>,
    /// State directory [default: /var/lib/seta/<node>]
    #[arg(long, env = "SETA_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// API socket [default: /run/seta/<node>/agent.sock]
    #[arg(long, env = "SETA_SOCKET")]
    pub socket: Option<PathBuf>,
    /// bpffs mount point [default: /sys/fs/bpf]
    #[arg(long, env = "SETA_BPFFS")]
    pub bpffs: Option<PathBuf>,
    /// Directory the CNI network config is written to once the agent is ready [default: /etc/cni/net.d]
    #[arg(long, env = "SETA_CNI_CONF_DIR")]
    pub cni_conf_dir: Option<PathBuf>,
    /// Extra CNI plugins chained after seta-cni in the conflist (e.g. portmap)
    #[arg(long, env = "SETA_CNI_CHAIN", value_delimiter = ',')]
    pub cni_chain: Vec<String>,
    /// Always allow ingress from the node itself (Cilium's allow-localhost=always)
    #[arg(long, env = "SETA_ALLOW_HOST_INGRESS", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_host_ingress: bool,
    /// Identity-relevant label prefixes: `prefix` includes (and makes the filter an allowlist), `!prefix` excludes
    #[arg(long = "label-prefix", env = "SETA_LABEL_PREFIXES", value_delimiter = ',')]
    pub label_prefixes: Vec<String>,
    /// Where identities are allocated: `memory` (embedded, persisted in the state dir) or `etcd`
    #[arg(long, env = "SETA_KVSTORE", value_enum, default_value_t = KvstoreKind::Memory)]
    pub kvstore: KvstoreKind,
    /// etcd endpoints (with --kvstore etcd), e.g. http://10.0.0.1:2379
    #[arg(long, env = "SETA_KVSTORE_ENDPOINTS", value_delimiter = ',')]
    pub kvstore_endpoints: Vec<String>,
    /// Lease of this node's entries in the kvstore: they expire this long after the agent stops renewing them
    #[arg(long, env = "SETA_KVSTORE_LEASE_TTL", default_value_t = 15)]
    pub kvstore_lease_ttl: i64,
    /// Key prefix of the cluster state
    #[arg(long, env = "SETA_KVSTORE_PREFIX", default_value = "/seta")]
    pub kvstore_prefix: String,
    /// How pods reach other nodes' pods: `tunnel` (VXLAN, UDP 8472, identity in the VNI) or `native` (routes to each node's pod CIDR)
    #[arg(long, env = "SETA_ROUTING_MODE", value_enum, default_value_t = RoutingMode::Tunnel)]
    pub routing_mode: RoutingMode,
    /// The NodePort range, MIN,MAX (Cilium's node-port-range; it must match the API server's --service-node-port-range): services' nodePorts must be in it, hostPorts must not, and BPF SNAT takes its ports above it
    #[arg(long, env = "SETA_NODE_PORT_RANGE", default_value = "30000,32767")]
    pub node_port_range: seta_core::service::NodePortRange,
    /// When the NodePort range overlaps the node's ephemeral ports (net.ipv4.ip_local_port_range), add it to net.ipv4.ip_local_reserved_ports (Cilium's enable-auto-protect-node-port-range); off: such an overlap stops the agent
    #[arg(long, env = "SETA_ENABLE_AUTO_PROTECT_NODE_PORT_RANGE", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_auto_protect_node_port_range: bool,
    /// What a pod gets for a service without backends: `reject` (ICMP port unreachable) or `drop`; reason 158 is counted either way
    #[arg(long, env = "SETA_SERVICE_NO_BACKEND_RESPONSE", value_enum, default_value_t = NoBackendResponse::Reject)]
    pub service_no_backend_response: NoBackendResponse,
    /// Which datapath traces are reported: new connections and TCP SYN/FIN/RST always; `none` every packet, `low` all but TCP's pure ACKs, `medium` an established connection once per ~4 s, `maximum` nothing more
    #[arg(long, env = "SETA_MONITOR_AGGREGATION", value_enum, default_value_t = MonitorAggregation::Medium)]
    pub monitor_aggregation: MonitorAggregation,
    /// North-south traffic to a backend on another node: `snat`, `dsr` (client address kept, replies straight from the backend's node; native routing only) or `hybrid` (DSR for TCP, SNAT for UDP)
    #[arg(long, env = "SETA_BPF_LB_MODE", value_enum, default_value_t = LbMode::Snat)]
    pub bpf_lb_mode: LbMode,
    /// Serve ClusterIPs to clients outside the cluster too, as NodePorts are (Cilium's bpf-lb-external-clusterip); off: a ClusterIP is reached from pods and nodes only
    #[arg(long, env = "SETA_BPF_LB_EXTERNAL_CLUSTERIP", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub bpf_lb_external_clusterip: bool,
    /// Turn off the CVE-2020-8554 mitigation (Cilium's disable-external-ip-mitigation): by default the node's and its pods' own connections to an ExternalIP that is none of the node's addresses are not load-balanced (they reach that address itself, so a Service cannot take over an outside address); turned off, they go to the service's backends
    #[arg(long, env = "SETA_DISABLE_EXTERNAL_IP_MITIGATION", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub disable_external_ip_mitigation: bool,
    /// A LoadBalancer service's loadBalancerSourceRanges also hold for its NodePort and ClusterIP frontends (Cilium's bpf-lb-source-range-all-types); off: only for its LoadBalancer addresses. Either way they hold for clients from outside only
    #[arg(long, env = "SETA_BPF_LB_SOURCE_RANGE_ALL_TYPES", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub bpf_lb_source_range_all_types: bool,
    /// CIDRs whose addresses of the node's devices serve NodePorts and hostPorts (Cilium's nodeport-addresses), e.g. 172.30.0.0/24,10.0.0.0/8 [default: each device's primary address only]
    #[arg(long, env = "SETA_NODEPORT_ADDRESSES", value_delimiter = ',')]
    pub nodeport_addresses: Vec<Ipv4Net>,
    /// More native devices beside the node IP's, comma-separated (Cilium's devices): names, or prefixes with '+' (eth+ matches eth0, eth1, ...), e.g. eth1,bond+: from_netdev serves NodePorts, ExternalIPs, LoadBalancer IPs and hostPorts on each, delivers to pods from it, and BPF masquerade uses its address; followed while the agent runs (a matching device that appears is served within a second) [default: the node IP's device only]
    #[arg(long, env = "SETA_DEVICES", value_delimiter = ',')]
    pub devices: Vec<String>,
    /// kube-proxy replacement (Cilium's kube-proxy-replacement): NodePort, ExternalIPs, LoadBalancer IPs and hostPort in eBPF. Off, kube-proxy (and portmap) keep those: only ClusterIPs are load-balanced, in-cluster (Cilium's default without it)
    #[arg(long, env = "SETA_KUBE_PROXY_REPLACEMENT", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub kube_proxy_replacement: bool,
    /// With --kube-proxy-replacement=false: serve NodePorts, LoadBalancer IPs and health-check NodePorts (Cilium's partial replacement) [default: as --kube-proxy-replacement]
    #[arg(long, env = "SETA_ENABLE_NODE_PORT", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_node_port: Option<bool>,
    /// With --kube-proxy-replacement=false: serve ExternalIPs [default: as --kube-proxy-replacement]
    #[arg(long, env = "SETA_ENABLE_EXTERNAL_IPS", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_external_ips: Option<bool>,
    /// With --kube-proxy-replacement=false: serve hostPorts (portmap's job otherwise) [default: as --kube-proxy-replacement]
    #[arg(long, env = "SETA_ENABLE_HOST_PORT", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_host_port: Option<bool>,
    /// How DSR carries the service to the backend's node (Cilium's bpf-lb-dsr-dispatch): `opt`, the IPv4 option, is the one seta has (Geneve and IPIP encapsulation are not)
    #[arg(long, env = "SETA_BPF_LB_DSR_DISPATCH", default_value = "opt")]
    pub bpf_lb_dsr_dispatch: String,
    /// XDP acceleration of north-south load-balancing (Cilium's bpf-lb-acceleration): `disabled`; `best-effort` falls back to it, as Cilium does on a device without native XDP (seta has no XDP path); `native` is refused
    #[arg(long, env = "SETA_BPF_LB_ACCELERATION", default_value = "disabled")]
    pub bpf_lb_acceleration: String,
    /// Honour services' sessionAffinity: ClientIP (Cilium's enable-session-affinity, on by default as its config.sessionAffinity); off: every connection chooses anew
    #[arg(long, env = "SETA_ENABLE_SESSION_AFFINITY", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_session_affinity: bool,
    /// Serve services' healthCheckNodePort (Cilium's enable-health-check-nodeport): 200 with local backends, 503 without; off: no such server
    #[arg(long, env = "SETA_ENABLE_HEALTH_CHECK_NODEPORT", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_health_check_nodeport: bool,
    /// Bind protection (Cilium's node-port-bind-protection): with socket-LB, the node's own processes cannot bind(2) the address and port of a NodePort, ExternalIP or LoadBalancer frontend (EPERM), so none takes over a service's traffic; off: such binds succeed
    #[arg(long, env = "SETA_NODE_PORT_BIND_PROTECTION", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub node_port_bind_protection: bool,
    /// The `service.kubernetes.io/service-proxy-name` label value whose services this node load-balances (Cilium's k8s-service-proxy-name, kube-proxy's semantics): "" (the default) serves the services without that label, a name serves only the services labelled with it
    #[arg(long, env = "SETA_K8S_SERVICE_PROXY_NAME", default_value = "")]
    pub k8s_service_proxy_name: String,
    /// Topology-aware routing (Cilium's enable-service-topology): a service's `spec.trafficDistribution` (or `service.kubernetes.io/topology-mode: Auto`) makes this node prefer its own backends (PreferSameNode) or those whose EndpointSlice hints name its zone (PreferClose, PreferSameZone; the zone is the Node's `topology.kubernetes.io/zone` label under Kubernetes); all backends serve when none fits
    #[arg(long, env = "SETA_ENABLE_SERVICE_TOPOLOGY", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_service_topology: bool,
    /// Honour the per-service annotation `service.cilium.io/forwarding-mode: dsr|snat` (Cilium's bpf-lb-mode-annotation); services without it take --bpf-lb-mode (snat or dsr)
    #[arg(long, env = "SETA_BPF_LB_MODE_ANNOTATION", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub bpf_lb_mode_annotation: bool,
    /// Backend selection for new connections: `random`, or `maglev` (consistent hashing of the flow for NodePort, ExternalIP and LoadBalancer frontends: every node picks the same backend)
    #[arg(long, env = "SETA_BPF_LB_ALGORITHM", value_enum, default_value_t = LbAlgorithm::Random)]
    pub bpf_lb_algorithm: LbAlgorithm,
    /// Honour the per-service annotation `service.cilium.io/lb-algorithm: maglev|random` (Cilium's bpf-lb-algorithm-annotation); services without it take --bpf-lb-algorithm
    #[arg(long, env = "SETA_BPF_LB_ALGORITHM_ANNOTATION", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub bpf_lb_algorithm_annotation: bool,
    /// Entries of each service map: services, backends, rev-NAT, LB connections, affinity, source ranges (Cilium's default 65536)
    #[arg(long, env = "SETA_BPF_LB_MAP_MAX", default_value_t = seta_abi::LB_MAP_SIZE)]
    pub bpf_lb_map_max: u32,
    /// Entries of the BPF NAT table (Cilium's default 524288)
    #[arg(long, env = "SETA_BPF_NAT_GLOBAL_MAX", default_value_t = seta_abi::NAT_MAP_SIZE)]
    pub bpf_nat_global_max: u32,
    /// Maglev table size M per service (a prime of Cilium's list: 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
    #[arg(long, env = "SETA_BPF_LB_MAGLEV_TABLE_SIZE", default_value_t = seta_core::service::maglev::DEFAULT_M)]
    pub bpf_lb_maglev_table_size: u32,
    /// Maglev seed, base64 of 12 bytes; the same on every node
    #[arg(long, env = "SETA_BPF_LB_MAGLEV_HASH_SEED", default_value = DEFAULT_MAGLEV_SEED)]
    pub bpf_lb_maglev_hash_seed: String,
    /// Socket-LB: translate services at connect/sendmsg time in cgroup hooks (Cilium's bpf-lb-sock, which --kube-proxy-replacement turns on); per-packet LB stays for what sockets do not cover; =false keeps every service by packet [default: as --kube-proxy-replacement]
    #[arg(long, env = "SETA_BPF_LB_SOCK", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub bpf_lb_sock: Option<bool>,
    /// Socket-LB serves only the node's own namespace: pods' sockets go through per-packet LB (Cilium's bpf-lb-sock-hostns-only)
    #[arg(long, env = "SETA_BPF_LB_SOCK_HOSTNS_ONLY", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub bpf_lb_sock_hostns_only: bool,
    /// Socket-LB's termination of connected UDP sockets to a removed backend also covers the pods' namespaces (Cilium's bpf-lb-sock-terminate-pod-connections); off: only the node's own
    #[arg(long, env = "SETA_BPF_LB_SOCK_TERMINATE_POD_CONNECTIONS", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub bpf_lb_sock_terminate_pod_connections: bool,
    /// The cgroup v2 directory socket-LB attaches at: this node's processes and pods run below it [default: the cgroup2 mount; without one, cgroup2 mounted at /run/seta/cgroupv2]
    #[arg(long, env = "SETA_CGROUP_ROOT")]
    pub cgroup_root: Option<PathBuf>,
    /// This node's address for other nodes (tunnel endpoint, next hop) [default: the first non-pod IPv4 address]
    #[arg(long, env = "SETA_NODE_IP")]
    pub node_ip: Option<std::net::Ipv4Addr>,
    /// MTU of the underlay; pods get it minus 50 in tunnel mode [default: the node IP's device MTU, else 1500]
    #[arg(long, env = "SETA_MTU")]
    pub mtu: Option<u32>,
    /// Prometheus metrics at http://ADDR/metrics (Cilium's port 9962); "" turns them off
    #[arg(long, env = "SETA_PROMETHEUS_SERVE_ADDR", default_value = ":9962")]
    pub prometheus_serve_addr: Option<String>,
    /// kube-proxy's health server in kube-proxy's place: GET http://ADDR/healthz answers 200 while this node's services are healthy, 503 when not (e.g. 0.0.0.0:10256, kube-proxy's port); "" (the default) turns it off
    #[arg(long, env = "SETA_KUBE_PROXY_REPLACEMENT_HEALTHZ_BIND_ADDRESS", default_value = "")]
    pub kube_proxy_replacement_healthz_bind_address: Option<String>,
    /// Hubble's observer API over TCP (it is always on the unix socket hubble.sock beside --socket); "" turns TCP off
    #[arg(long, env = "SETA_HUBBLE_LISTEN_ADDRESS", default_value = ":4244")]
    pub hubble_listen_address: Option<String>,
    /// BPF masquerade: pods' TCP/UDP traffic to the world (outside the cluster's pods and nodes) leaves from the node's address
    #[arg(long, env = "SETA_ENABLE_BPF_MASQUERADE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_bpf_masquerade: bool,
    /// Masquerade pods' IPv4 traffic to the world (Cilium's flag, on by default there); seta masquerades in BPF only, so it takes effect with --enable-bpf-masquerade; false with it is refused, as in Cilium [default: true]
    #[arg(long, env = "SETA_ENABLE_IPV4_MASQUERADE", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_ipv4_masquerade: Option<bool>,
    /// Where pod addresses are routable: masquerade leaves destinations inside alone
    #[arg(long, env = "SETA_IPV4_NATIVE_ROUTING_CIDR")]
    pub ipv4_native_routing_cidr: Option<Ipv4Net>,
    /// BPF masquerade leaves the ip-masq-agent's nonMasqueradeCIDRs alone (its file, followed while the agent runs; needs --enable-bpf-masquerade)
    #[arg(long, env = "SETA_ENABLE_IP_MASQ_AGENT", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_ip_masq_agent: bool,
    /// The ip-masq-agent's file (YAML or JSON: nonMasqueradeCIDRs, masqLinkLocal); missing or empty: the default reserved ranges
    #[arg(long, env = "SETA_IP_MASQ_AGENT_CONFIG_PATH", default_value = "/etc/config/ip-masq-agent")]
    pub ip_masq_agent_config_path: PathBuf,
    /// The datapath reports drops as events (Cilium's drop notifications) [default: true]
    #[arg(long, env = "SETA_BPF_EVENTS_DROP_ENABLED", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub bpf_events_drop_enabled: Option<bool>,
    /// The datapath reports policy verdicts as events [default: true]
    #[arg(long, env = "SETA_BPF_EVENTS_POLICY_VERDICT_ENABLED", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub bpf_events_policy_verdict_enabled: Option<bool>,
    /// The datapath reports traces (deliveries, as --monitor-aggregation says) as events [default: true]
    #[arg(long, env = "SETA_BPF_EVENTS_TRACE_ENABLED", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub bpf_events_trace_enabled: Option<bool>,
    /// Socket-LB reports its translations (trace-sock events: pre-/post-xlate-fwd/rev) [default: true]
    #[arg(long, env = "SETA_ENABLE_SOCKET_LB_TRACING", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_socket_lb_tracing: Option<bool>,
    /// More debug output, by subsystem (Cilium's names, comma-separated): datapath makes the datapath send debug messages (`seta monitor -t debug`, GetDebugEvents); flow, kvstore, envoy and policy are accepted
    #[arg(long, env = "SETA_DEBUG_VERBOSE", value_enum, value_delimiter = ',')]
    pub debug_verbose: Vec<DebugVerbose>,
    /// Hubble's flow metrics (hubble_*) at http://ADDR/metrics; "" turns them off
    #[arg(long, env = "SETA_HUBBLE_METRICS_SERVER", default_value = ":9965")]
    pub hubble_metrics_server: Option<String>,
    /// Which Hubble metrics, with context labels, in Hubble's format: "drop:sourceContext=namespace;destinationContext=pod|ip flow tcp port-distribution icmp flows-to-world policy" [default: all, without context]
    #[arg(long, env = "SETA_HUBBLE_METRICS", default_value = "")]
    pub hubble_metrics: String,
    /// Write every flow as a JSON line (`hubble observe -o json`) to this file, rotated by size; "" turns it off
    #[arg(long, env = "SETA_HUBBLE_EXPORT_FILE_PATH", default_value = "")]
    pub hubble_export_file_path: String,
    /// Rotate the export file when it would grow past this many MB
    #[arg(long, env = "SETA_HUBBLE_EXPORT_FILE_MAX_SIZE_MB", default_value_t = 10)]
    pub hubble_export_file_max_size_mb: u64,
    /// Rotated export files kept (PATH.1 the newest)
    #[arg(long, env = "SETA_HUBBLE_EXPORT_FILE_MAX_BACKUPS", default_value_t = 5)]
    pub hubble_export_file_max_backups: usize,
    /// Export only flows that match one of these FlowFilters (JSON, Hubble's format: '{"source_pod":["kube-system/"]},{"verdict":["DROPPED"]}')
    #[arg(long, env = "SETA_HUBBLE_EXPORT_ALLOWLIST", default_value = "")]
    pub hubble_export_allowlist: String,
    /// Do not export flows that match one of these FlowFilters (JSON, as the allowlist)
    #[arg(long, env = "SETA_HUBBLE_EXPORT_DENYLIST", default_value = "")]
    pub hubble_export_denylist: String,
    /// Flows the observer keeps (2^n-1)
    #[arg(long, env = "SETA_HUBBLE_EVENT_BUFFER_CAPACITY", default_value_t = 4095)]
    pub hubble_event_buffer_capacity: usize,
    /// Take intent from the Kubernetes API through this kubeconfig: NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy and Namespace objects [default: the pod's service account when KUBERNETES_SERVICE_HOST is set, else no Kubernetes]
    #[arg(long, env = "SETA_K8S_KUBECONFIG")]
    pub k8s_kubeconfig: Option<PathBuf>,
    /// Where the pod CIDR comes from when --pod-cidr is not given: cluster-pool (seta-operator: through the kvstore, or the CiliumNode under Kubernetes) or kubernetes (the Node's spec.podCIDRs)
    #[arg(long, env = "SETA_IPAM", value_enum)]
    pub ipam: Option<Ipam>,
    /// Where identities, nodes and pod IPs are shared: crd (CiliumIdentity, CiliumNode and CiliumEndpoint objects; needs Kubernetes) or kvstore [default: crd under Kubernetes, else kvstore]
    #[arg(long, env = "SETA_IDENTITY_ALLOCATION_MODE", value_enum)]
    pub identity_allocation_mode: Option<IdentityAllocationMode>,
    /// JSON object whose keys are any of these flags' long names (e.g. "pod-cidr",
    /// "kvstore-endpoints": [..]); flags and SETA_* variables take precedence over it
    #[arg(long, env = "SETA_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Command-line arguments for the keys of a `--config` file: every flag of
/// `cmd` (its long name is the key) is accepted, nothing else; a key whose
/// SETA_* variable is set is left to the variable. The file form is thereby
/// derived from the same clap definitions as the flags and the environment.
pub fn file_args(path: &std::path::Path, text: &str, cmd: &clap::Command, env: impl Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(text).with_context(|| format!("config file {}", path.display()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("config file {}: expected a JSON object of flag names", path.display()))?;
    let flags: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.get_long().is_some_and(|l| l != "config"))
        .collect();
    let mut out = Vec::new();
    for (key, val) in obj {
        let Some(arg) = flags.iter().find(|a| a.get_long() == Some(key.as_str())) else {
            let mut names: Vec<&str> = flags.iter().filter_map(|a| a.get_long()).collect();
            names.sort();
            bail!(
                "config file {}: unknown key {key:?} (the keys are the flag names: {})",
                path.display(),
                names.join(", ")
            );
        };
        if arg.get_env().and_then(|e| e.to_str()).is_some_and(|e| env(e).is_some()) {
            continue;
        }
        let scalar = |x: &serde_json::Value| -> Result<String> {
            match x {
                serde_json::Value::String(s) => Ok(s.clone()),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                serde_json::Value::Bool(b) => Ok(b.to_string()),
                other => bail!(
                    "config file {}: key {key:?}: {other} is not a string, number or boolean",
                    path.display()
                ),
            }
        };
        let value = match val {
            serde_json::Value::Array(items) => items.iter().map(scalar).collect::<Result<Vec<_>>>()?.join(","),
            serde_json::Value::Null => continue,
            x => scalar(x)?,
        };
        out.push(format!("--{key}={value}"));
    }
    Ok(out)
}

/// argv with the `--config` file's keys inserted before the user's own
/// arguments (which override them, as SETA_* variables do).
pub fn argv_with_config(argv: Vec<String>, cmd: &clap::Command) -> Result<Vec<String>> {
    let mut path = std::env::var("SETA_CONFIG").ok();
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--config" {
            path = it.next().cloned();
        } else if let Some(p) = a.strip_prefix("--config=") {
            path = Some(p.to_string());
        }
    }
    let Some(path) = path else { return Ok(argv) };
    let path = PathBuf::from(path);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading config file {}", path.display()))?;
    let extra = file_args(&path, &text, cmd, |k| std::env::var(k).ok())?;
    // after the subcommand, if one is given
    let at = match argv.get(1).map(String::as_str) {
        Some(s) if cmd.get_subcommands().any(|c| c.get_name() == s) => 2,
        _ => 1,
    };
    let mut out = argv[..at].to_vec();
    out.extend(extra);
    out.extend_from_slice(&argv[at..]);
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct Config {
    pub node: String,
    pub pod_cidr: Ipv4Net,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub bpffs: PathBuf,
    pub pin_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_chain: Vec<String>,
    pub allow_host_ingress: bool,
    pub label_prefixes: Vec<String>,
    pub kvstore: KvstoreKind,
    pub kvstore_endpoints: Vec<String>,
    pub kvstore_prefix: String,
    pub kvstore_lease_ttl: i64,
    pub routing_mode: RoutingMode,
    pub service_no_backend_response: NoBackendResponse,
    /// services' nodePorts are in it, hostPorts not; SNAT ports above it
    pub node_port_range: seta_core::service::NodePortRange,
    /// the range joins ip_local_reserved_ports where it overlaps the ephemeral ports
    pub auto_protect_node_port_range: bool,
    /// Maglev's parameters, when any north-south frontend may use it (the
    /// default algorithm is maglev, or services may ask for it)
    pub maglev: Option<Maglev>,
    /// the default backend selection (`--bpf-lb-algorithm`)
    pub lb_algorithm: LbAlgorithm,
    /// services' `service.cilium.io/lb-algorithm` counts
    pub lb_algorithm_annotation: bool,
    /// services' `service.cilium.io/forwarding-mode` counts
    pub lb_mode_annotation: bool,
    /// ClusterIPs are served from outside too
    pub lb_external_cluster_ip: bool,
    /// the CVE-2020-8554 mitigation is on (the default)
    pub external_ip_mitigation: bool,
    /// source ranges hold for NodePorts and ClusterIPs too
    pub lb_source_range_all_types: bool,
    /// traffic distributions count (topology-aware routing)
    pub service_topology: bool,
    /// kube-proxy replacement: off, only ClusterIPs are served, and what
    /// the three below turn on
    pub kube_proxy_replacement: bool,
    /// NodePorts, LoadBalancer IPs and health checks are served
    pub serve_node_port: bool,
    pub serve_external_ips: bool,
    pub serve_host_port: bool,
    /// sessionAffinity is honoured
    pub session_affinity: bool,
    /// healthCheckNodePort servers run
    pub health_check_node_port: bool,
    /// NodePorts are served on the node devices' addresses inside these (empty: each one's primary)
    pub nodeport_addresses: Vec<Ipv4Net>,
    /// native devices beside the node IP's (--devices)
    pub devices: Vec<String>,
    /// socket-LB refuses the node's binds to frontends' addresses and ports
    pub bind_protection: bool,
    /// socket-LB's socket termination covers the pods' namespaces too
    pub sock_lb_terminate_pod_connections: bool,
    /// the service-proxy-name label of the services this node serves ("": unlabelled ones)
    pub service_proxy_name: String,
    /// sizes of the shared maps that come from flags
    pub map_sizes: seta_datapath::MapSizes,
    /// the flow export file (None: off)
    pub hubble_export: Option<crate::observer::export::ExportConfig>,
    pub node_ip: Option<std::net::Ipv4Addr>,
    pub mtu: Option<u32>,
    /// no pod CIDR configured: take it from the operator (cluster-pool IPAM)
    /// or the Node (`ipam`)
    pub pod_cidr_from_operator: bool,
    pub ipam: Ipam,
    /// where /metrics is served (None: not at all)
    pub prometheus_serve_addr: Option<std::net::SocketAddr>,
    /// kube-proxy's /healthz (None: not served)
    pub kpr_healthz_addr: Option<std::net::SocketAddr>,
    /// Hubble's observer over TCP (None: only the unix socket)
    pub hubble_listen_address: Option<std::net::SocketAddr>,
    pub hubble_event_buffer_capacity: usize,
    /// the Hubble metrics and their context labels
    pub hubble_metrics: crate::observer::metrics::MetricsConfig,
    pub enable_bpf_masquerade: bool,
    /// masquerade leaves destinations inside alone
    pub native_routing_cidr: Option<Ipv4Net>,
    /// the ip-masq-agent's file, when it is on
    pub ip_masq_agent: Option<PathBuf>,
    /// the datapath's events: drops, policy verdicts, traces
    pub bpf_events: BpfEvents,
    /// where hubble_* metrics are served (None: not at all)
    pub hubble_metrics_server: Option<std::net::SocketAddr>,
    /// the Kubernetes API, when intent comes from it
    pub k8s: Option<crate::k8s::Source>,
    /// identities, nodes and pod IPs in CRDs or in the kvstore
    pub identity_allocation_mode: IdentityAllocationMode,
    /// socket-LB: the cgroup its programs attach at (None: off)
    pub sock_lb: Option<PathBuf>,
    /// socket-LB serves the node's namespace only (not its pods')
    pub sock_lb_hostns_only: bool,
    /// north-south forwarding to remote backends: SNAT, DSR or hybrid
    pub lb_mode: LbMode,
    /// which datapath traces are reported
    pub monitor_aggregation: MonitorAggregation,
}

/// Where the agent mounts cgroup2 for socket-LB when the machine has no
/// cgroup2 mount and no `--cgroup-root` is given (Cilium's
/// `/run/cilium/cgroupv2`); mounted when socket-LB attaches.
pub const CGROUP2_MOUNT: &str = "/run/seta/cgroupv2";

/// The cgroup socket-LB attaches at: `--cgroup-root` (a cgroup v2
/// directory, or [`CGROUP2_MOUNT`]), else the first cgroup2 mount in
/// `mounts` (the text of /proc/self/mounts), else [`CGROUP2_MOUNT`], to be
/// mounted.
fn sock_lb_cgroup(root: Option<PathBuf>, mounts: &str) -> Result<PathBuf> {
    let dir = match root {
        Some(d) => d,
        None => match mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        }) {
            Some(d) => d,
            None => return Ok(PathBuf::from(CGROUP2_MOUNT)),
        },
    };
    // (the agent's own mount point is mounted when socket-LB attaches)
    if !is_cgroup2_dir(&dir) && dir != std::path::Path::new(CGROUP2_MOUNT) {
        bail!("--cgroup-root {}: not a cgroup v2 directory", dir.display());
    }
    Ok(dir)
}

/// Does `dir` look like a cgroup v2 directory?
pub fn is_cgroup2_dir(dir: &std::path::Path) -> bool {
    dir.join("cgroup.procs").exists() && dir.join("cgroup.controllers").exists()
}

/// Cilium's default `bpf-lb-maglev-hash-seed`.
pub const DEFAULT_MAGLEV_SEED: &str = "JLfvgnHc2kaSUFaI";

/// Table sizes Cilium allows (primes).
pub const MAGLEV_SIZES: [u32; 10] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071];

/// Maglev as configured: the table size and the two seeds taken from the
/// configured 12 bytes (the tables' murmur3 seed, the datapath's flow hash seed).
/// Which events the datapath makes (Cilium's --bpf-events-*-enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfEvents {
    pub drop: bool,
    pub policy_verdict: bool,
    pub trace: bool,
    pub sock_trace: bool,
    /// the datapath's debug messages (--debug-verbose=datapath)
    pub debug: bool,
}

/// `--debug-verbose` subsystems (Cilium's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DebugVerbose {
    Flow,
    Kvstore,
    Envoy,
    Datapath,
    Policy,
}

impl BpfEvents {
    /// The datapath option bits that turn the off ones off.
    pub fn opts(&self) -> u32 {
        let off = |on: bool, bit: u32| if on { 0 } else { bit };
        off(self.drop, seta_abi::OPT_NO_DROP_EVENTS)
            | off(self.policy_verdict, seta_abi::OPT_NO_VERDICT_EVENTS)
            | off(self.trace, seta_abi::OPT_NO_TRACE_EVENTS)
            | off(self.sock_trace, seta_abi::OPT_NO_SOCK_TRACE)
            | if self.debug { seta_abi::OPT_DEBUG } else { 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maglev {
    pub m: u32,
    pub table_seed: u32,
    pub hash_seed: u32,
}

impl Maglev {
    pub fn resolve(m: u32, seed: &str) -> Result<Self> {
        use base64::Engine;
        if !MAGLEV_SIZES.contains(&m) {
            bail!("--bpf-lb-maglev-table-size {m}: expected one of {MAGLEV_SIZES:?}");
        }
        let b = base64::engine::general_purpose::STANDARD
            .decode(seed)
            .ok()
            .filter(|b| b.len() == 12)
            .ok_or_else(|| anyhow::anyhow!("--bpf-lb-maglev-hash-seed {seed:?}: expected base64 of 12 bytes"))?;
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Ok(Self {
            m,
            table_seed: word(0),
            hash_seed: word(4) ^ word(8),
        })
    }
}

/// One service kind of kube-proxy replacement: with it, always on (turning
/// it off contradicts it); without it, off unless the flag turns it on.
fn kpr_feature(flag: &str, v: Option<bool>, kpr: bool) -> Result<bool> {
    match (v, kpr) {
        (Some(false), true) => bail!(
            "{flag}=false contradicts --kube-proxy-replacement=true, which serves every service kind; use --kube-proxy-replacement=false and turn on what this node serves"
        ),
        (v, kpr) => Ok(v.unwrap_or(kpr)),
    }
}

/// `--devices`: interface names or name prefixes with `+` (Cilium's
/// `eth+`), each once.
fn devices(names: Vec<String>) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        seta_core::devices::check_pattern(n).map_err(|e| anyhow::anyhow!("--devices {e}"))?;
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    Ok(out)
}

/// A map size flag: 0 (not given, a RunArgs default) is the default; a
/// size must be 16..=16777216.
fn map_size(flag: &str, v: u32, default: u32) -> Result<u32> {
    match v {
        0 => Ok(default),
        16..=16_777_216 => Ok(v),
        _ => bail!("{flag} {v}: expected 16..=16777216 entries"),
    }
}

/// `:PORT` (every address), `IP:PORT`, or "" (off).
fn listen_addr(flag: &str, v: &str) -> Result<Option<std::net::SocketAddr>> {
    if v.is_empty() {
        return Ok(None);
    }
    let full = if v.starts_with(':') { format!("0.0.0.0{v}") } else { v.to_string() };
    full.parse()
        .map(Some)
        .map_err(|_| anyhow::anyhow!("{flag} {v:?}: expected :PORT, IP:PORT or \"\" (off)"))
}

impl Config {
    pub fn resolve(a: RunArgs) -> Result<Self> {
        let Some(node) = a.node else {
            bail!("node name is required: --node NAME, SETA_NODE or \"node\" in the config file")
        };
        seta_core::names::validate_node_name(&node).map_err(anyhow::Error::msg)?;
        let k8s = match a.k8s_kubeconfig {
            Some(ref p) => Some(crate::k8s::Source::Kubeconfig(p.clone())),
            None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => Some(crate::k8s::Source::InCluster),
            None => None,
        };
        let configured = a.pod_cidr;
        if configured.is_none() && a.kvstore != KvstoreKind::Etcd && k8s.is_none() {
            bail!("pod CIDR is required: --pod-cidr A.B.C.D/N, SETA_POD_CIDR or \"pod-cidr\" in the config file (or --kvstore etcd with seta-operator's cluster-pool IPAM, or the Kubernetes API: --ipam cluster-pool|kubernetes)")
        }
        if a.ipam == Some(Ipam::Kubernetes) && k8s.is_none() {
            bail!("--ipam kubernetes reads the Node's spec.podCIDRs: it needs the Kubernetes API (--k8s-kubeconfig or a pod's service account)");
        }
        // placeholder until the operator's allocation is known (see pod_cidr_from_operator)
        let pod_cidr = configured.unwrap_or_else(|| "0.0.0.0/30".parse().unwrap());
        if pod_cidr.prefix_len() > 30 {
            bail!("pod CIDR {pod_cidr} is too small: use /30 or larger");
        }
        let routing_mode = a.routing_mode;
        if a.bpf_lb_mode != LbMode::Snat && routing_mode != RoutingMode::Native {
            bail!(
                "--bpf-lb-mode {}: DSR needs --routing-mode native (the service travels to the backend's node in an IPv4 option, Cilium's dispatch \"opt\")",
                a.bpf_lb_mode
            );
        }
        if a.bpf_lb_mode_annotation && a.bpf_lb_mode == LbMode::Hybrid {
            bail!("--bpf-lb-mode-annotation: the default mode for services without the annotation must be snat or dsr, not hybrid (as Cilium)");
        }
        if a.bpf_lb_mode_annotation && routing_mode != RoutingMode::Native {
            bail!("--bpf-lb-mode-annotation: services may ask for DSR, which needs --routing-mode native");
        }
        if let Some(m) = a.mtu {
            if !(1280..=65535).contains(&m) {
                bail!("--mtu {m}: expected 1280..=65535");
            }
        }
        let bpffs = a.bpffs.unwrap_or_else(|| "/sys/fs/bpf".into());
        let cni_chain = a.cni_chain;
        // Cilium's kube-proxy-replacement turns socket-LB on with the rest
        let sock_lb = a.bpf_lb_sock.unwrap_or(a.kube_proxy_replacement);
        Ok(Self {
            pin_dir: seta_core::names::pin_dir(&bpffs, &node, seta_abi::ABI_VERSION),
            state_dir: a.state_dir.unwrap_or_else(|| seta_core::names::state_dir(&node)),
            socket: a.socket.unwrap_or_else(|| seta_core::names::socket_path(&node)),
            cni_conf_dir: a.cni_conf_dir.unwrap_or_else(|| "/etc/cni/net.d".into()),
            pod_cidr: pod_cidr.trunc(),
            bpffs,
            node,
            cni_chain,
            allow_host_ingress: a.allow_host_ingress,
            label_prefixes: a.label_prefixes,
            kvstore: a.kvstore,
            kvstore_endpoints: a.kvstore_endpoints,
            kvstore_prefix: a.kvstore_prefix,
            kvstore_lease_ttl: a.kvstore_lease_ttl,
            routing_mode,
            service_no_backend_response: a.service_no_backend_response,
            node_port_range: a.node_port_range,
            auto_protect_node_port_range: a.enable_auto_protect_node_port_range,
            lb_algorithm: a.bpf_lb_algorithm,
            lb_algorithm_annotation: a.bpf_lb_algorithm_annotation,
            lb_mode_annotation: a.bpf_lb_mode_annotation,
            lb_external_cluster_ip: a.bpf_lb_external_clusterip,
            external_ip_mitigation: !a.disable_external_ip_mitigation,
            lb_source_range_all_types: a.bpf_lb_source_range_all_types,
            service_topology: a.enable_service_topology,
            kube_proxy_replacement: a.kube_proxy_replacement,
            serve_node_port: kpr_feature("--enable-node-port", a.enable_node_port, a.kube_proxy_replacement)?,
            serve_external_ips: kpr_feature("--enable-external-ips", a.enable_external_ips, a.kube_proxy_replacement)?,
            serve_host_port: kpr_feature("--enable-host-port", a.enable_host_port, a.kube_proxy_replacement)?,
            session_affinity: a.enable_session_affinity,
            health_check_node_port: a.enable_health_check_nodeport,
            nodeport_addresses: a.nodeport_addresses,
            devices: devices(a.devices)?,
            bind_protection: a.node_port_bind_protection,
            sock_lb_terminate_pod_connections: a.bpf_lb_sock_terminate_pod_connections,
            service_proxy_name: a.k8s_service_proxy_name.trim().to_string(),
            maglev: match (a.bpf_lb_algorithm, a.bpf_lb_algorithm_annotation) {
                (LbAlgorithm::Random, false) => None,
                _ => Some(Maglev::resolve(
                    match a.bpf_lb_maglev_table_size {
                        0 => seta_core::service::maglev::DEFAULT_M, // not given (a RunArgs default)
                        m => m,
                    },
                    match a.bpf_lb_maglev_hash_seed.as_str() {
                        "" => DEFAULT_MAGLEV_SEED,
                        s => s,
                    },
                )?),
            },
            pod_cidr_from_operator: configured.is_none(),
            ipam: a.ipam.unwrap_or_default(),
            hubble_export: match a.hubble_export_file_path.as_str() {
                "" => None,
                p => Some(crate::observer::export::ExportConfig {
                    path: p.into(),
                    max_bytes: match a.hubble_export_file_max_size_mb {
                        0 => 10, // not given (a RunArgs default)
                        n => n,
                    } << 20,
                    max_backups: a.hubble_export_file_max_backups,
                    allow: seta_hubble::filter::from_json(&a.hubble_export_allowlist)
                        .map_err(|e| anyhow::anyhow!("--hubble-export-allowlist: {e}"))?,
                    deny: seta_hubble::filter::from_json(&a.hubble_export_denylist)
                        .map_err(|e| anyhow::anyhow!("--hubble-export-denylist: {e}"))?,
                }),
            },
            map_sizes: seta_datapath::MapSizes {
                lb: map_size("--bpf-lb-map-max", a.bpf_lb_map_max, seta_abi::LB_MAP_SIZE)?,
                nat: map_size("--bpf-nat-global-max", a.bpf_nat_global_max, seta_abi::NAT_MAP_SIZE)?,
            },
            node_ip: a.node_ip,
            mtu: a.mtu,
            prometheus_serve_addr: listen_addr("--prometheus-serve-addr", a.prometheus_serve_addr.as_deref().unwrap_or(""))?,
            kpr_healthz_addr: listen_addr(
                "--kube-proxy-replacement-healthz-bind-address",
                a.kube_proxy_replacement_healthz_bind_address.as_deref().unwrap_or(""),
            )?,
            hubble_listen_address: listen_addr("--hubble-listen-address", a.hubble_listen_address.as_deref().unwrap_or(""))?,
            enable_bpf_masquerade: match (a.enable_ipv4_masquerade, a.enable_bpf_masquerade) {
                (Some(false), true) => bail!(
                    "--enable-bpf-masquerade needs --enable-ipv4-masquerade=true (as Cilium's): drop one of the two"
                ),
                (Some(true), false) => {
                    tracing::warn!("--enable-ipv4-masquerade: seta has no iptables masquerading; pods' traffic keeps their addresses unless --enable-bpf-masquerade is on");
                    false
                }
                (_, bpf) => bpf,
            },
            native_routing_cidr: a.ipv4_native_routing_cidr.map(|n| n.trunc()),
            ip_masq_agent: match (a.enable_ip_masq_agent, a.enable_bpf_masquerade) {
                (false, _) => None,
                (true, false) => bail!("--enable-ip-masq-agent: the ip-masq-agent's ranges are BPF masquerade's exceptions: it needs --enable-bpf-masquerade (as Cilium's)"),
                (true, true) => {
                    // a file that does not parse stops the agent before anything changes
                    crate::ipmasq::read(&a.ip_masq_agent_config_path)?;
                    Some(a.ip_masq_agent_config_path)
                }
            },
            bpf_events: BpfEvents {
                drop: a.bpf_events_drop_enabled.unwrap_or(true),
                policy_verdict: a.bpf_events_policy_verdict_enabled.unwrap_or(true),
                trace: a.bpf_events_trace_enabled.unwrap_or(true),
                sock_trace: a.enable_socket_lb_tracing.unwrap_or(true),
                debug: a.debug_verbose.contains(&DebugVerbose::Datapath),
            },
            hubble_metrics_server: listen_addr("--hubble-metrics-server", a.hubble_metrics_server.as_deref().unwrap_or(""))?,
            identity_allocation_mode: match (a.identity_allocation_mode, k8s.is_some()) {
                (Some(IdentityAllocationMode::Crd), false) => {
                    bail!("--identity-allocation-mode crd needs the Kubernetes API (--k8s-kubeconfig or a pod's service account)")
                }
                (Some(m), _) => m,
                (None, true) => IdentityAllocationMode::Crd,
                (None, false) => IdentityAllocationMode::Kvstore,
            },
            k8s,
            lb_mode: {
                match a.bpf_lb_dsr_dispatch.as_str() {
                    "opt" => {}
                    v @ ("geneve" | "ipip") => bail!(
                        "--bpf-lb-dsr-dispatch {v}: seta dispatches DSR by the IPv4 option only (opt); {v} encapsulation is not available"
                    ),
                    v => bail!("--bpf-lb-dsr-dispatch {v:?}: must be opt, geneve or ipip"),
                }
                match a.bpf_lb_acceleration.as_str() {
                    "disabled" => {}
                    "best-effort" => {
                        tracing::info!("--bpf-lb-acceleration best-effort: no XDP path in seta, so disabled (Cilium's fallback)")
                    }
                    "native" => {
                        bail!("--bpf-lb-acceleration native: XDP acceleration is not implemented by seta; use disabled or best-effort")
                    }
                    v => bail!("--bpf-lb-acceleration {v:?}: must be disabled, native or best-effort"),
                }
                a.bpf_lb_mode
            },
            monitor_aggregation: a.monitor_aggregation,
            sock_lb_hostns_only: match (a.bpf_lb_sock_hostns_only, sock_lb) {
                (true, false) => bail!("--bpf-lb-sock-hostns-only narrows socket-LB: it needs --bpf-lb-sock (on with --kube-proxy-replacement)"),
                (h, _) => h,
            },
            sock_lb: match sock_lb {
                true => Some(sock_lb_cgroup(
                    a.cgroup_root,
                    &std::fs::read_to_string("/proc/self/mounts").unwrap_or_default(),
                )?),
                false => None,
            },
            hubble_event_buffer_capacity: match a.hubble_event_buffer_capacity {
                0 => 4095, // not given (a RunArgs default)
                n => n,
            },
            hubble_metrics: match a.hubble_metrics.trim() {
                "" => Default::default(),
                spec => crate::observer::metrics::MetricsConfig::parse(spec).map_err(|e| anyhow::anyhow!("--hubble-metrics: {e}"))?,
            },
        })
    }

    /// Hubble's observer socket, beside the agent's.
    pub fn hubble_socket(&self) -> PathBuf {
        self.socket.with_file_name("hubble.sock")
    }

    pub fn delete_queue_dir(&self) -> PathBuf {
        self.socket
            .parent()
            .unwrap_or(std::path::Path::new("/run/seta"))
            .join("deleteQueue")
    }

    pub fn cni_conf_path(&self) -> PathBuf {
        self.cni_conf_dir.join("05-seta.conflist")
    }

    /// The conflist a runtime reads; seta-cni first, then any chained plugins.
    pub fn conflist(&self) -> serde_json::Value {
        let mut plugins = vec![serde_json::json!({
            "type": seta_core::cni::PLUGIN_TYPE,
            "agent-socket": self.socket,
            "delete-queue-dir": self.delete_queue_dir(),
        })];
        // hostPorts are checked against this agent's range
        if self.node_port_range != seta_core::service::NodePortRange::default() {
            plugins[0]["node-port-range"] = self.node_port_range.to_string().into();
        }
        // hostPorts in eBPF, unless the portmap plugin is chained for them
        if !self.cni_chain.iter().any(|p| p == "portmap") {
            plugins[0]["capabilities"] = serde_json::json!({"portMappings": true});
        }
        for p in &self.cni_chain {
            let mut v = serde_json::json!({"type": p});
            if p == "portmap" {
                v["capabilities"] = serde_json::json!({"portMappings": true});
            }
            plugins.push(v);
        }
        serde_json::json!({"cniVersion": "1.0.0", "name": "seta", "plugins": plugins})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(file: &str, env: &[(&str, &str)], flags: &[&str]) -> Result<Config> {
        let cmd = T::command().args_override_self(true);
        let mut argv = vec!["seta-agent".to_string()];
        argv.extend(file_args(std::path::Path::new("/x.json"), file, &cmd, |k| {
            env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        })?);
        argv.extend(flags.iter().map(|s| s.to_string()));
        let m = cmd.try_get_matches_from(argv)?;
        Config::resolve(T::from_arg_matches(&m)?.run)
    }

    #[test]
    fn masquerade_exceptions_come_from_the_native_routing_cidr_and_the_ip_masq_agent() {
        let file = r#"{"node": "n1", "pod-cidr": "10.9.0.0/24", "ipv4-native-routing-cidr": "10.1.2.3/8"}"#;
        let c = parse(file, &[], &[]).unwrap();
        assert_eq!(c.native_routing_cidr, Some("10.0.0.0/8".parse().unwrap()));
        assert_eq!(c.ip_masq_agent, None);
        // Cilium's enable-ipv4-masquerade: BPF masquerade needs it on
        assert!(
            parse(file, &[], &["--enable-bpf-masquerade", "--enable-ipv4-masquerade"])
                .unwrap()
                .enable_bpf_masquerade
        );
        assert!(
            !parse(file, &[], &["--enable-ipv4-masquerade"]).unwrap().enable_bpf_masquerade,
            "no iptables path"
        );
        let e = parse(file, &[], &["--enable-bpf-masquerade", "--enable-ipv4-masquerade=false"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--enable-bpf-masquerade needs --enable-ipv4-masquerade=true"), "{e}");
        let e = parse(file, &[], &["--enable-ip-masq-agent"]).unwrap_err().to_string();
        assert!(e.contains("--enable-ip-masq-agent") && e.contains("--enable-bpf-masquerade"), "{e}");
        let dir = crate::testutil::Tmp::new("ipmasq-flag");
        let path = dir.0.join("config");
        let p = path.display().to_string();
        let on = [
            "--enable-bpf-masquerade",
            "--enable-ip-masq-agent",
            "--ip-masq-agent-config-path",
            &p,
        ];
        // missing: the defaults
        assert_eq!(parse(file, &[], &on).unwrap().ip_masq_agent, Some(path.clone()));
        // a file that does not parse stops the agent, naming the file and the field
        std::fs::write(&path, "nonMasqueradeCIDRs: [300.0.0.0/8]\n").unwrap();
        let e = parse(file, &[], &on).unwrap_err().to_string();
        assert!(e.contains(&p) && e.contains("nonMasqueradeCIDRs[0]: \"300.0.0.0/8\""), "{e}");
    }

    #[test]
    fn every_flag_can_come_from_the_file_and_flags_win() {
        let file = r#"{"node": "n1", "pod-cidr": "10.9.0.0/24", "kvstore": "etcd",
            "kvstore-endpoints": ["http://a:2379", "http://b:2379"], "kvstore-lease-ttl": 9,
            "routing-mode": "native", "mtu": 9000, "allow-host-ingress": false,
            "label-prefix": ["app", "!pod-template-hash"], "cni-chain": ["portmap"],
            "node-ip": "172.30.0.1", "kvstore-prefix": "/x", "bpffs": "/sys/fs/bpf"}"#;
        let c = parse(file, &[], &[]).unwrap();
        assert_eq!(c.node, "n1");
        assert_eq!(c.kvstore_endpoints, ["http://a:2379", "http://b:2379"]);
        assert_eq!((c.kvstore_lease_ttl, c.mtu, c.allow_host_ingress), (9, Some(9000), false));
        assert_eq!(c.routing_mode, RoutingMode::Native);
        assert_eq!(c.label_prefixes, ["app", "!pod-template-hash"]);
        assert_eq!(c.kvstore_prefix, "/x");
        // a flag overrides the file; a set variable keeps the file out
        let c = parse(file, &[], &["--mtu", "1500", "--routing-mode", "tunnel"]).unwrap();
        assert_eq!((c.mtu, c.routing_mode), (Some(1500), RoutingMode::Tunnel));
        assert_eq!(c.service_no_backend_response, NoBackendResponse::Reject, "Cilium's default");
        let c = parse(file, &[], &["--service-no-backend-response", "drop"]).unwrap();
        assert_eq!(c.service_no_backend_response, NoBackendResponse::Drop);
        // the NodePort range: Cilium's default and form; the CNI plugin is told
        assert_eq!(c.node_port_range.to_string(), "30000-32767");
        assert!(c.auto_protect_node_port_range, "Cilium's default");
        assert!(c.conflist()["plugins"][0].get("node-port-range").is_none());
        let c = parse(
            file,
            &[],
            &["--node-port-range", "30000,40000", "--enable-auto-protect-node-port-range=false"],
        )
        .unwrap();
        assert_eq!((c.node_port_range.min, c.node_port_range.max), (30000, 40000));
        assert!(!c.auto_protect_node_port_range);
        assert_eq!(c.conflist()["plugins"][0]["node-port-range"], "30000-40000");
        let e = parse(file, &[], &["--node-port-range", "40000,30000"]).unwrap_err().to_string();
        assert!(e.contains("--node-port-range") && e.contains("40000,30000"), "{e}");
        // bind protection on and the default proxy, as Cilium's defaults;
        // seta replaces kube-proxy unless told not to
        assert!(c.bind_protection && c.service_proxy_name.is_empty() && c.kube_proxy_replacement);
        assert!(c.session_affinity && c.health_check_node_port, "Cilium's defaults");
        let c = parse(
            file,
            &[],
            &[
                "--node-port-bind-protection=false",
                "--k8s-service-proxy-name",
                "seta-a",
                "--kube-proxy-replacement=false",
            ],
        )
        .unwrap();
        assert!(!c.bind_protection && !c.kube_proxy_replacement);
        // without the replacement nothing but ClusterIPs, unless turned on one by one (Cilium's partial mode)
        assert!(!c.serve_node_port && !c.serve_external_ips && !c.serve_host_port);
        let p = parse(
            file,
            &[],
            &["--kube-proxy-replacement=false", "--enable-node-port", "--enable-host-port=true"],
        )
        .unwrap();
        assert!(p.serve_node_port && !p.serve_external_ips && p.serve_host_port);
        let p = parse(file, &[], &[]).unwrap();
        assert!(
            p.serve_node_port && p.serve_external_ips && p.serve_host_port,
            "all with the replacement"
        );
        let e = parse(file, &[], &["--enable-external-ips=false"]).unwrap_err().to_string();
        assert!(
            e.contains("--enable-external-ips=false contradicts --kube-proxy-replacement=true"),
            "{e}"
        );
        // Cilium's DSR dispatch and acceleration values: what seta has, or a clear refusal
        for (flag, ok, refused) in [
            ("--bpf-lb-dsr-dispatch", "opt", "geneve"),
            ("--bpf-lb-acceleration", "best-effort", "native"),
        ] {
            parse(file, &[], &[flag, ok]).unwrap();
            let e = parse(file, &[], &[flag, refused]).unwrap_err().to_string();
            assert!(e.contains(&format!("{flag} {refused}: ")) && e.contains("seta"), "{e}");
            let e = parse(file, &[], &[flag, "bogus"]).unwrap_err().to_string();
            assert!(e.contains(flag) && e.contains("must be"), "{e}");
        }
        let c2 = parse(
            file,
            &[],
            &["--enable-session-affinity=false", "--enable-health-check-nodeport=false"],
        )
        .unwrap();
        assert!(!c2.session_affinity && !c2.health_check_node_port);
        assert_eq!(c.service_proxy_name, "seta-a");
        assert!(c.nodeport_addresses.is_empty(), "the primary address only, Cilium's default");
        let c = parse(file, &[], &["--nodeport-addresses", "172.30.0.0/24,10.0.0.0/8"]).unwrap();
        assert_eq!(c.nodeport_addresses.len(), 2);
        let e = parse(file, &[], &["--nodeport-addresses", "172.30.0.0/33"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--nodeport-addresses") && e.contains("172.30.0.0/33"), "{e}");
        // Cilium's devices: names and prefixes, each once; bad ones refused by name
        assert!(c.devices.is_empty(), "the node IP's device only");
        let c = parse(file, &[], &["--devices", "eth1,bond+,eth1"]).unwrap();
        assert_eq!(c.devices, ["eth1", "bond+"]);
        for bad in ["a/b", "waytoolongdevicename0", "e th1", "+", "e+th"] {
            let e = parse(file, &[], &["--devices", bad]).unwrap_err().to_string();
            assert!(e.contains("--devices") && e.contains(bad), "{e}");
        }
        let c = parse(file, &[("SETA_MTU", "1400")], &[]).unwrap();
        assert_eq!(
            c.mtu, None,
            "the file's mtu is skipped: clap reads SETA_MTU itself (not set in this process)"
        );
    }

    /// deploy/config.yaml's options are valid agent flags, and under
    /// Kubernetes they need no etcd and no --pod-cidr: CRD mode and the
    /// operator's cluster pool (through the CiliumNode).
    #[test]
    fn deploy_config_is_crd_mode_without_etcd() {
        let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/config.yaml")).unwrap();
        let start = yaml.find("config.json: |").unwrap();
        let json: String = yaml[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    "))
            .map(|l| format!("{}\n", l.trim_start()))
            .collect();
        let base = ["--node", "n1", "--k8s-kubeconfig", "/nonexistent/kubeconfig"];
        let c = parse(&json, &[], &base).unwrap();
        assert_eq!(c.identity_allocation_mode, IdentityAllocationMode::Crd);
        // socket-LB at the host's cgroup2, which the DaemonSet mounts there
        assert_eq!(c.sock_lb, Some(PathBuf::from(CGROUP2_MOUNT)));
        assert_eq!(
            (c.ipam, c.pod_cidr_from_operator, c.kvstore),
            (Ipam::ClusterPool, true, KvstoreKind::Memory)
        );
        // the same without Kubernetes is refused: no pod CIDR and no etcd
        let e = parse(&json, &[], &base[..2]).unwrap_err();
        assert!(
            e.to_string().contains("identity-allocation-mode crd needs the Kubernetes API")
                || e.to_string().contains("pod CIDR is required"),
            "{e}"
        );
        let e = parse("{}", &[], &["--node", "n1", "--ipam", "kubernetes"]).unwrap_err();
        assert!(e.to_string().contains("pod CIDR is required"), "{e}");
        let e = parse("{}", &[], &["--node", "n1", "--pod-cidr", "10.9.0.0/24", "--ipam", "kubernetes"]).unwrap_err();
        assert!(e.to_string().contains("--ipam kubernetes reads the Node's spec.podCIDRs"), "{e}");
    }

    #[test]
    fn socket_lb_hostns_only_needs_socket_lb() {
        let base = ["--node", "n1", "--pod-cidr", "10.9.0.0/24", "--bpf-lb-sock-hostns-only"];
        for off in [&["--bpf-lb-sock=false"][..], &["--kube-proxy-replacement=false"]] {
            let e = parse("{}", &[], &[&base[..], off].concat()).unwrap_err();
            assert!(
                e.to_string()
                    .contains("--bpf-lb-sock-hostns-only narrows socket-LB: it needs --bpf-lb-sock"),
                "{off:?}: {e}"
            );
        }
        let root = std::env::temp_dir();
        for on in [&["--bpf-lb-sock"][..], &[]] {
            let c = parse("{}", &[], &[&base[..], on, &["--cgroup-root", root.to_str().unwrap()]].concat());
            // (a temp dir is no cgroup v2: refused for that, not for the flag)
            assert!(c.is_err_and(|e| !e.to_string().contains("narrows")), "{on:?}");
        }
    }

    /// As Cilium's kube-proxy-replacement, which auto-enables bpf-lb-sock:
    /// socket-LB is on unless the replacement is off or it is turned off.
    #[test]
    fn socket_lb_follows_kube_proxy_replacement() {
        let base = ["--node", "n1", "--pod-cidr", "10.9.0.0/24"];
        let with = |extra: &[&str]| parse("{}", &[], &[&base[..], extra].concat());
        let tmp = std::env::temp_dir();
        let tmp = tmp.to_str().unwrap();
        // on by default: the given cgroup is checked
        let e = with(&["--cgroup-root", tmp]).unwrap_err();
        assert!(e.to_string().contains("not a cgroup v2 directory"), "{e}");
        for off in [
            &["--kube-proxy-replacement=false"][..],
            &["--bpf-lb-sock=false"],
            &["--bpf-lb-sock", "false"],
        ] {
            let c = with(&[off, &["--cgroup-root", tmp]].concat()).unwrap();
            assert_eq!(c.sock_lb, None, "{off:?}");
        }
        // partial replacement may still ask for it
        let e = with(&["--kube-proxy-replacement=false", "--bpf-lb-sock", "--cgroup-root", tmp]).unwrap_err();
        assert!(e.to_string().contains("not a cgroup v2 directory"), "{e}");
    }

    #[test]
    fn socket_lb_cgroup_is_given_or_the_cgroup2_mount_or_mounted_by_the_agent() {
        let mounts = "sysfs /sys sysfs rw 0 0\ncgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n";
        assert_eq!(sock_lb_cgroup(None, mounts).unwrap(), PathBuf::from(CGROUP2_MOUNT));
        assert_eq!(sock_lb_cgroup(None, "").unwrap(), PathBuf::from(CGROUP2_MOUNT));
        let tmp = std::env::temp_dir();
        let with_v2 = format!("{mounts}cgroup2 {} cgroup2 rw 0 0\n", tmp.display());
        let e = sock_lb_cgroup(None, &with_v2).unwrap_err();
        assert!(e.to_string().contains("not a cgroup v2 directory"), "{e}");
        // a cgroup2-looking directory passes, wherever it is mounted
        let d = tmp.join(format!("seta-cg-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cgroup.procs"), "").unwrap();
        std::fs::write(d.join("cgroup.controllers"), "").unwrap();
        let with_v2 = format!("{mounts}cgroup2 {} cgroup2 rw 0 0\n", d.display());
        assert_eq!(sock_lb_cgroup(None, &with_v2).unwrap(), d);
        assert_eq!(sock_lb_cgroup(Some(d.clone()), "").unwrap(), d);
        std::fs::remove_dir_all(&d).unwrap();
        // the agent's mount point, given (the DaemonSet's), is mounted later if need be
        assert_eq!(
            sock_lb_cgroup(Some(CGROUP2_MOUNT.into()), &with_v2).unwrap(),
            PathBuf::from(CGROUP2_MOUNT)
        );
    }

    #[test]
    fn map_sizes_come_from_flags_within_bounds() {
        let base = ["--node", "n1", "--pod-cidr", "10.9.0.0/24"];
        let c = parse("{}", &[], &base).unwrap();
        assert_eq!((c.map_sizes.lb, c.map_sizes.nat), (65536, 524288), "Cilium's defaults");
        let c = parse(
            "{}",
            &[],
            &[&base[..], &["--bpf-lb-map-max", "1024", "--bpf-nat-global-max", "4096"]].concat(),
        )
        .unwrap();
        assert_eq!((c.map_sizes.lb, c.map_sizes.nat), (1024, 4096));
        let e = parse("{}", &[], &[&base[..], &["--bpf-lb-map-max", "8"]].concat()).unwrap_err();
        assert!(e.to_string().contains("--bpf-lb-map-max 8: expected 16..=16777216"), "{e}");
    }

    #[test]
    fn export_lists_are_hubble_json_filters_checked_at_start() {
        let base = [
            "--node",
            "n1",
            "--pod-cidr",
            "10.9.0.0/24",
            "--hubble-export-file-path",
            "/tmp/x.log",
        ];
        let c = parse(
            "{}",
            &[],
            &[
                &base[..],
                &["--hubble-export-allowlist", r#"{"verdict":["DROPPED"]},{"protocol":["udp"]}"#],
                &["--hubble-export-denylist", r#"{"source_pod":["kube-system/"]}"#],
            ]
            .concat(),
        )
        .unwrap();
        let e = c.hubble_export.unwrap();
        assert_eq!((e.allow.len(), e.deny.len()), (2, 1));
        assert_eq!(e.deny[0].source_pod, ["kube-system/"]);
        let err = parse(
            "{}",
            &[],
            &[&base[..], &["--hubble-export-allowlist", r#"{"verdicts":["DROPPED"]}"#]].concat(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--hubble-export-allowlist: filter [0]: verdicts: no such FlowFilter field"
        );
    }

    #[test]
    fn datapath_events_are_on_unless_turned_off() {
        let base = ["--node", "n1", "--pod-cidr", "10.9.0.0/24"];
        assert_eq!(parse("{}", &[], &base).unwrap().bpf_events.opts(), 0, "Cilium's default: all on");
        let c = parse(
            r#"{"bpf-events-drop-enabled": false}"#,
            &[],
            &[
                &base[..],
                &["--bpf-events-trace-enabled=false", "--bpf-events-policy-verdict-enabled"],
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(c.bpf_events.opts(), seta_abi::OPT_NO_DROP_EVENTS | seta_abi::OPT_NO_TRACE_EVENTS);
        let c = parse("{}", &[], &[&base[..], &["--enable-socket-lb-tracing=false"]].concat()).unwrap();
        assert_eq!(c.bpf_events.opts(), seta_abi::OPT_NO_SOCK_TRACE);
        // debug messages only when asked for, as Cilium's --debug-verbose=datapath
        let c = parse("{}", &[], &[&base[..], &["--debug-verbose", "flow,datapath"]].concat()).unwrap();
        assert_eq!(c.bpf_events.opts(), seta_abi::OPT_DEBUG);
        let c = parse(r#"{"debug-verbose": "datapath"}"#, &[], &base).unwrap();
        assert_eq!(c.bpf_events.opts(), seta_abi::OPT_DEBUG);
        let e = parse("{}", &[], &[&base[..], &["--debug-verbose", "packets"]].concat()).unwrap_err();
        assert!(e.to_string().contains("packets"), "{e}");
    }

    #[test]
    fn maglev_takes_cilium_sizes_and_a_12_byte_seed() {
        let base = ["--node", "n1", "--pod-cidr", "10.9.0.0/24"];
        let c = parse("{}", &[], &base).unwrap();
        assert_eq!(c.maglev, None, "random by default");
        let with = |extra: &[&str]| parse("{}", &[], &[&base[..], extra].concat());
        let c = with(&["--bpf-lb-algorithm", "maglev"]).unwrap();
        let m = c.maglev.unwrap();
        assert_eq!(m.m, 16381, "Cilium's default M");
        assert_eq!(m, Maglev::resolve(16381, DEFAULT_MAGLEV_SEED).unwrap());
        let c = with(&["--bpf-lb-algorithm", "maglev", "--bpf-lb-maglev-table-size", "251"]).unwrap();
        assert_eq!(c.maglev.unwrap().m, 251);
        // services may ask for Maglev: its parameters are there, the default stays random
        let c = with(&["--bpf-lb-algorithm-annotation"]).unwrap();
        assert_eq!((c.maglev.map(|m| m.m), c.lb_algorithm), (Some(16381), LbAlgorithm::Random));
        let e = with(&["--bpf-lb-algorithm", "maglev", "--bpf-lb-maglev-table-size", "1000"]).unwrap_err();
        assert!(e.to_string().contains("--bpf-lb-maglev-table-size 1000: expected one of"), "{e}");
        let e = with(&["--bpf-lb-algorithm", "maglev", "--bpf-lb-maglev-hash-seed", "c2hvcnQ="]).unwrap_err();
        assert!(e.to_string().contains("expected base64 of 12 bytes"), "{e}");
    }

    #[test]
    fn dsr_needs_native_routing_and_socket_lb_a_cgroup_v2_directory() {
        let base = ["--node", "n1", "--pod-cidr", "10.9.0.0/24"];
        let with = |extra: &[&str]| parse("{}", &[], &[&base[..], extra].concat());
        assert_eq!(with(&[]).unwrap().lb_mode, LbMode::Snat);
        let e = with(&["--bpf-lb-mode", "dsr"]).unwrap_err();
        assert!(e.to_string().contains("--bpf-lb-mode dsr: DSR needs --routing-mode native"), "{e}");
        let c = with(&["--bpf-lb-mode", "hybrid", "--routing-mode", "native"]).unwrap();
        assert_eq!(c.lb_mode, LbMode::Hybrid);
        // per-service modes: native routing, and a default of snat or dsr
        let native = ["--routing-mode", "native"];
        let e = with(&["--bpf-lb-mode-annotation"]).unwrap_err();
        assert!(e.to_string().contains("needs --routing-mode native"), "{e}");
        let e = with(&[&native[..], &["--bpf-lb-mode-annotation", "--bpf-lb-mode", "hybrid"]].concat()).unwrap_err();
        assert!(e.to_string().contains("not hybrid"), "{e}");
        let c = with(&[&native[..], &["--bpf-lb-mode-annotation"]].concat()).unwrap();
        assert!(c.lb_mode_annotation && c.lb_mode == LbMode::Snat);
        assert!(!with(&[]).unwrap().lb_mode_annotation);
        let dir = std::env::temp_dir();
        let e = with(&["--bpf-lb-sock", "--cgroup-root", dir.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("not a cgroup v2 directory"), "{e}");
    }

    #[test]
    fn bad_files_name_the_key() {
        let e = parse(r#"{"node": "n1", "pod-cdr": "10.0.0.0/24"}"#, &[], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key \"pod-cdr\"") && e.contains("pod-cidr"), "{e}");
        let e = parse(r#"{"node": {"a": 1}}"#, &[], &[]).unwrap_err().to_string();
        assert!(e.contains("\"node\""), "{e}");
        let e = parse(r#"{"node": "n1", "pod-cidr": "10.0.0.0/99"}"#, &[], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("pod-cidr") || e.contains("10.0.0.0/99"), "{e}");
        assert!(parse("[1]", &[], &[]).unwrap_err().to_string().contains("JSON object"));
    }
}
