//! Agent configuration from flags, environment (SETA_*) or a JSON file.
use anyhow::{bail, Context, Result};
use clap::Args;
use ipnet::Ipv4Net;
use serde::Deserialize;
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
    #[arg(long, env = "SETA_KVSTORE", default_value = "memory")]
    pub kvstore: String,
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
    #[arg(long, env = "SETA_ROUTING_MODE", default_value = "tunnel")]
    pub routing_mode: String,
    /// This node's address for other nodes (tunnel endpoint, next hop) [default: the first non-pod IPv4 address]
    #[arg(long, env = "SETA_NODE_IP")]
    pub node_ip: Option<std::net::Ipv4Addr>,
    /// MTU of the underlay; pods get it minus 50 in tunnel mode [default: the node IP's device MTU, else 1500]
    #[arg(long, env = "SETA_MTU")]
    pub mtu: Option<u32>,
    /// JSON file with any of the keys: node, pod-cidr, state-dir, socket, bpffs, cni-conf-dir, cni-chain
    #[arg(long, env = "SETA_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    node: Option<String>,
    pod_cidr: Option<Ipv4Net>,
    state_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    bpffs: Option<PathBuf>,
    cni_conf_dir: Option<PathBuf>,
    #[serde(default)]
    cni_chain: Vec<String>,
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
    pub kvstore: String,
    pub kvstore_endpoints: Vec<String>,
    pub kvstore_prefix: String,
    pub kvstore_lease_ttl: i64,
    pub routing_mode: RoutingMode,
    pub node_ip: Option<std::net::Ipv4Addr>,
    pub mtu: Option<u32>,
    /// no pod CIDR configured: take it from the operator (cluster-pool IPAM)
    pub pod_cidr_from_operator: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingMode {
    Tunnel,
    Native,
}

impl std::fmt::Display for RoutingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RoutingMode::Tunnel => "tunnel",
            RoutingMode::Native => "native",
        })
    }
}

impl Config {
    pub fn resolve(a: RunArgs) -> Result<Self> {
        let file = match &a.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading config file {}", p.display()))?;
                serde_json::from_str::<FileConfig>(&text).with_context(|| format!("config file {}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let Some(node) = a.node.or(file.node) else {
            bail!("node name is required: --node NAME, SETA_NODE or \"node\" in the config file")
        };
        seta_core::names::validate_node_name(&node).map_err(anyhow::Error::msg)?;
        let configured = a.pod_cidr.or(file.pod_cidr);
        if configured.is_none() && a.kvstore != "etcd" {
            bail!("pod CIDR is required: --pod-cidr A.B.C.D/N, SETA_POD_CIDR or \"pod-cidr\" in the config file (or --kvstore etcd with seta-operator's cluster-pool IPAM)")
        }
        // placeholder until the operator's allocation is known (see pod_cidr_from_operator)
        let pod_cidr = configured.unwrap_or_else(|| "0.0.0.0/30".parse().unwrap());
        if pod_cidr.prefix_len() > 30 {
            bail!("pod CIDR {pod_cidr} is too small: use /30 or larger");
        }
        let routing_mode = match a.routing_mode.as_str() {
            "tunnel" => RoutingMode::Tunnel,
            "native" => RoutingMode::Native,
            other => bail!("--routing-mode {other:?}: expected tunnel or native"),
        };
        if let Some(m) = a.mtu {
            if !(1280..=65535).contains(&m) {
                bail!("--mtu {m}: expected 1280..=65535");
            }
        }
        let bpffs = a.bpffs.or(file.bpffs).unwrap_or_else(|| "/sys/fs/bpf".into());
        let mut cni_chain = a.cni_chain;
        if cni_chain.is_empty() {
            cni_chain = file.cni_chain;
        }
        Ok(Self {
            pin_dir: seta_core::names::pin_dir(&bpffs, &node, seta_abi::ABI_VERSION),
            state_dir: a.state_dir.or(file.state_dir).unwrap_or_else(|| seta_core::names::state_dir(&node)),
            socket: a.socket.or(file.socket).unwrap_or_else(|| seta_core::names::socket_path(&node)),
            cni_conf_dir: a.cni_conf_dir.or(file.cni_conf_dir).unwrap_or_else(|| "/etc/cni/net.d".into()),
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
            pod_cidr_from_operator: configured.is_none(),
            node_ip: a.node_ip,
            mtu: a.mtu,
        })
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
