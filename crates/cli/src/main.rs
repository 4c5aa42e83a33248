//! `seta`: the debug CLI (agent API + pinned maps) and the lab.
mod output;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use output::{kv, print_json, table};
use seta_client::Client;
use seta_core::api::{Attachment, Status};
use seta_core::drop::{direction_name, reason_name};
use seta_core::endpoint::{format_mac, Endpoint};
use seta_datapath::maps::{EndpointMap, IpcacheMap, MetricsMap};
use seta_lab::Lab;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "seta",
    version,
    about = "seta: eBPF networking for Kubernetes-style clusters (debug CLI and lab)"
)]
struct Cli {
    /// Node whose agent to talk to (socket /run/seta/NAME/agent.sock); defaults to the only one present
    #[arg(long, global = true, env = "SETA_NODE")]
    node: Option<String>,
    /// Output format
    #[arg(short = 'o', long, global = true, value_enum, default_value = "table")]
    output: Output,
    /// bpffs mount point holding the pins
    #[arg(long, global = true, default_value = "/sys/fs/bpf")]
    bpffs: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Agent status
    Status,
    /// Endpoints known to the agent
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Read the pinned BPF maps and attached programs directly (works while the agent is down)
    #[command(subcommand)]
    Bpf(BpfCmd),
    /// Security identities
    #[command(subcommand)]
    Identity(IdentityCmd),
    /// Network policies (Kubernetes NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy)
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Nodes registered in the kvstore
    #[command(subcommand)]
    Node(ListOnly),
    /// The cluster state in the agent's kvstore (debugging)
    #[command(subcommand)]
    Kvstore(KvCmd),
    /// Policy-verdict and drop events from the datapath
    Events {
        /// only events after this sequence number
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// A virtual cluster in network namespaces
    #[command(subcommand)]
    Lab(LabCmd),
}

#[derive(Subcommand)]
enum KvCmd {
    /// Keys under PREFIX, e.g. /seta/identities/v1/
    List { prefix: String },
    /// One key
    Get { key: String },
}

#[derive(Subcommand)]
enum IdentityCmd {
    List,
    Get { id: u32 },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Create or replace every policy in FILE (YAML, several documents allowed), all or nothing
    Import { file: PathBuf },
    /// Check FILE without changing anything
    Validate { file: PathBuf },
    /// Show the imported policies and the revision
    Get {
        /// only this policy
        name: Option<String>,
    },
    /// Delete a policy by name, or all of them
    Delete {
        name: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// knp, cnp or ccnp, when a name exists in several kinds
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Wait until every endpoint enforces REVISION (default: the current one)
    Wait {
        revision: Option<u64>,
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Recompute every endpoint's policy from scratch and compare it with the kernel's maps
    Verify,
    /// Would a connection be allowed? Computed by the resolver that programs the maps.
    Trace {
        /// source endpoint: id, container-id:ID or pod-name:NS/POD
        #[arg(long)]
        src_endpoint: Option<String>,
        /// source labels k=v,... (a hypothetical pod)
        #[arg(long)]
        src_labels: Option<String>,
        #[arg(long, default_value = "default")]
        src_namespace: String,
        #[arg(long)]
        src_ip: Option<std::net::Ipv4Addr>,
        #[arg(long)]
        dst_endpoint: Option<String>,
        #[arg(long)]
        dst_labels: Option<String>,
        #[arg(long, default_value = "default")]
        dst_namespace: String,
        #[arg(long)]
        dst_ip: Option<std::net::Ipv4Addr>,
        /// PORT/PROTO, e.g. 80/TCP, 53/UDP, 8/ICMP (type), or ANY
        #[arg(long, default_value = "ANY")]
        dport: String,
    },
}

#[derive(Subcommand)]
enum EndpointCmd {
    /// List endpoints
    List,
    /// Show one endpoint (id, container-id:ID or pod-name:NS/POD)
    Get { id: String },
    /// Show an endpoint's labels, or replace them with --set k=v,...
    Labels {
        id: String,
        #[arg(long)]
        set: Option<String>,
    },
}

#[derive(Subcommand)]
enum BpfCmd {
    /// The local endpoint map (seta_lxc)
    #[command(subcommand)]
    Endpoint(ListOnly),
    /// The IP -> identity cache (seta_ipcache)
    #[command(subcommand)]
    Ipcache(ListOnly),
    /// Tunnel endpoints: ipcache entries that are encapsulated to another node (tunnel mode)
    #[command(subcommand)]
    Tunnel(ListOnly),
    /// Datapath forward/drop counters (seta_metrics)
    #[command(subcommand)]
    Metrics(ListOnly),
    /// Programs attached per device, including TCX links (which bpftool 7.1 cannot show)
    #[command(subcommand)]
    Prog(ListOnly),
    /// An endpoint's policy map (seta_pol_NNNNN)
    #[command(subcommand)]
    Policy(BpfPolicyCmd),
    /// Connection tracking (seta_ct4)
    #[command(subcommand)]
    Ct(CtCmd),
}

#[derive(Subcommand)]
enum BpfPolicyCmd {
    Get { endpoint: u16 },
}

#[derive(Subcommand)]
enum CtCmd {
    List,
    Flush,
}

#[derive(Subcommand)]
enum ListOnly {
    List,
}

#[derive(Subcommand)]
enum LabCmd {
    /// Build a lab: nodes with an agent each, pods wired by seta-cni
    Up {
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        #[arg(long, default_value_t = 0)]
        pods: usize,
        #[arg(long, default_value = "lab")]
        lab: String,
        #[arg(long, default_value = "10.200.0.0/16")]
        cluster_cidr: ipnet::Ipv4Net,
        /// the cluster's shared state: memory (each node its own) or etcd (a real etcd in the underlay, shared) [default: etcd with 2+ nodes]
        #[arg(long)]
        kvstore: Option<String>,
        /// how pods reach other nodes' pods: tunnel (VXLAN) or native (routes)
        #[arg(long, default_value = "tunnel")]
        routing: String,
        /// run two seta-operator replicas (leader election) in the underlay [default: with etcd]
        #[arg(long)]
        operator: Option<bool>,
    },
    /// Nodes and pods of a lab
    Status {
        #[arg(long)]
        lab: Option<String>,
    },
    /// Add or remove single pods
    #[command(subcommand)]
    Pod(PodCmd),
    /// Run a command inside a pod: seta lab exec POD -- CMD...
    Exec {
        pod: String,
        #[arg(long)]
        lab: Option<String>,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Commands on nodes
    #[command(subcommand)]
    Node(NodeCmd),
    /// Namespaces and their labels (namespaceSelector matches these)
    #[command(subcommand)]
    Namespace(NsCmd),
    /// Remove everything of a lab, also after a crash
    Down {
        #[arg(long)]
        lab: Option<String>,
        /// every lab on this machine
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum PodCmd {
    Add {
        name: String,
        #[arg(long)]
        node: String,
        #[arg(long, default_value = "")]
        labels: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        /// named container ports: name=port/PROTO,...
        #[arg(long, default_value = "")]
        ports: String,
        #[arg(long)]
        lab: Option<String>,
    },
    /// Replace a pod's labels
    Label {
        name: String,
        #[arg(long)]
        labels: String,
        #[arg(long)]
        lab: Option<String>,
    },
    Del {
        name: String,
        #[arg(long)]
        lab: Option<String>,
    },
}

#[derive(Subcommand)]
enum NsCmd {
    /// Create a namespace (it always carries kubernetes.io/metadata.name=NS)
    Add {
        ns: String,
        #[arg(long, default_value = "")]
        labels: String,
        #[arg(long)]
        lab: Option<String>,
    },
    /// Replace a namespace's labels; its pods follow
    Label {
        ns: String,
        #[arg(long)]
        labels: String,
        #[arg(long)]
        lab: Option<String>,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Run a command in a node's namespace (as the host): seta lab node exec NODE -- CMD...
    Exec {
        node: String,
        #[arg(long)]
        lab: Option<String>,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn client(node: Option<&str>) -> Result<Client> {
    Ok(Client::new(seta_client::resolve_socket(node).map_err(anyhow::Error::msg)?))
}

/// The pin directory of `node`, or of the only node with pins.
fn pin_dir(cli: &Cli) -> Result<PathBuf> {
    let node = match &cli.node {
        Some(n) => n.clone(),
        None => {
            let root = cli.bpffs.join("seta");
            let mut nodes: Vec<String> = std::fs::read_dir(&root)
                .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str().map(String::from)).collect())
                .unwrap_or_default();
            nodes.sort();
            match nodes.len() {
                0 => bail!("no seta pins under {}; is an agent running?", root.display()),
                1 => nodes.remove(0),
                _ => bail!("several nodes have pins ({}); choose one with --node NAME", nodes.join(", ")),
            }
        }
    };
    let dir = seta_core::names::pin_dir(&cli.bpffs, &node, seta_abi::ABI_VERSION);
    if !dir.exists() {
        bail!("no pins for node {node} at {} (ABI v{})", dir.display(), seta_abi::ABI_VERSION);
    }
    Ok(dir)
}

fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("binary directory")?.to_path_buf())
}

async fn run(cli: Cli) -> Result<i32> {
    let json = cli.output == Output::Json;
    match &cli.cmd {
        Cmd::Status => {
            let c = client(cli.node.as_deref())?;
            let s: Status = c.get("/v1/status").await?;
            if json {
                return print_json(&s);
            }
            let states: Vec<String> = s.endpoint_states.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            kv(&[
                ("Node", s.node.clone()),
                (
                    "seta",
                    format!(
                        "{} {} (uptime {}s)",
                        if s.healthy { "Ok" } else { "Degraded" },
                        s.version,
                        s.uptime_seconds
                    ),
                ),
                ("Datapath", s.datapath.clone()),
                ("Attach Mode", s.attach_mode.to_uppercase()),
                (
                    "IPAM",
                    format!("IPv4: {}/{} allocated from {}", s.ipam.allocated, s.ipam.capacity, s.ipam.cidr),
                ),
                (
                    "Endpoints",
                    format!(
                        "{} ({})",
                        s.endpoints,
                        if states.is_empty() { "none".into() } else { states.join(", ") }
                    ),
                ),
                ("Restored", format!("{} endpoints at start", s.restored_endpoints)),
                (
                    "Policy",
                    format!(
                        "{} policies, revision {}{}",
                        s.policies,
                        s.policy_revision,
                        if s.policy_map_full_errors > 0 {
                            format!(", {} regenerations failed: policy map full", s.policy_map_full_errors)
                        } else {
                            String::new()
                        }
                    ),
                ),
                (
                    "KVStore",
                    format!(
                        "{} ({})",
                        s.kvstore,
                        if s.kvstore_status.is_empty() {
                            "?"
                        } else {
                            s.kvstore_status.as_str()
                        }
                    ),
                ),
                (
                    "Cluster",
                    format!("{} node(s) announced: {}", s.nodes_registered.len(), s.nodes_registered.join(", ")),
                ),
                (
                    "Routing",
                    format!(
                        "{} (node IP {}, pod MTU {})",
                        match s.routing_mode.as_str() {
                            "tunnel" => "Tunnel [vxlan, UDP 8472]",
                            "native" => "Native",
                            other => other,
                        },
                        s.node_ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                        s.pod_mtu
                    ),
                ),
                ("Cluster health", cluster_health(&s.cluster_health)),
                ("CNI Config file", s.cni_config.clone()),
                ("API socket", c.path().display().to_string()),
            ]);
        }
        Cmd::Endpoint(EndpointCmd::List) => {
            let eps: Vec<Endpoint> = client(cli.node.as_deref())?.get("/v1/endpoint").await?;
            if json {
                return print_json(&eps);
            }
            let mut rows = vec![];
            for e in &eps {
                let labels: Vec<String> = e.labels.iter().map(|l| l.to_string()).collect();
                let first = labels.first().cloned().unwrap_or_else(|| "reserved:init".into());
                let enf = |b: bool| if b { "Enabled" } else { "Disabled" }.to_string();
                rows.push(vec![
                    e.id.to_string(),
                    enf(e.ingress_enforced),
                    enf(e.egress_enforced),
                    e.identity.to_string(),
                    first,
                    e.ipv4.to_string(),
                    e.state.to_string(),
                ]);
                for l in labels.iter().skip(1) {
                    rows.push(vec!["".into(), "".into(), "".into(), "".into(), l.clone(), "".into(), "".into()]);
                }
            }
            table(
                &[
                    "ENDPOINT",
                    "POLICY (ingress)",
                    "POLICY (egress)",
                    "IDENTITY",
                    "LABELS (source:key[=value])",
                    "IPv4",
                    "STATUS",
                ],
                rows,
            );
        }
        Cmd::Endpoint(EndpointCmd::Get { id }) => {
            let e: Endpoint = client(cli.node.as_deref())?.get(&format!("/v1/endpoint/{}", ep_path(id))).await?;
            if json {
                return print_json(&e);
            }
            kv(&[
                ("ID", e.id.to_string()),
                ("State", e.state.to_string()),
                ("Identity", e.identity.to_string()),
                ("Labels", e.labels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(" ")),
                ("Pod", format!("{}/{}", e.namespace, e.pod_name)),
                ("Container", format!("{} ({})", e.container_id, e.container_interface_name)),
                ("IPv4", e.ipv4.to_string()),
                ("MAC", e.mac.clone()),
                (
                    "Host interface",
                    format!("{} (ifindex {}, {})", e.interface_name, e.interface_index, e.host_mac),
                ),
                ("Netns", e.netns_path.clone()),
            ]);
        }
        Cmd::Bpf(BpfCmd::Endpoint(ListOnly::List)) => {
            let m = EndpointMap::open(&pin_dir(&cli)?)?;
            let list = m.list();
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(ip, i)| serde_json::json!({"ip": ip, "id": i.lxc_id, "sec_id": i.sec_id, "flags": i.flags, "ifindex": i.ifindex, "mac": format_mac(&i.mac), "nodemac": format_mac(&i.node_mac), "host": i.flags & seta_abi::ENDPOINT_F_HOST != 0}))
                    .collect();
                return print_json(&v);
            }
            let rows = list
                .iter()
                .map(|(ip, i)| {
                    let info = if i.flags & seta_abi::ENDPOINT_F_HOST != 0 {
                        "(localhost)".to_string()
                    } else {
                        format!(
                            "id={} sec_id={} flags={:#06x} ifindex={} mac={} nodemac={} parent_ifindex={}",
                            i.lxc_id,
                            i.sec_id,
                            i.flags,
                            i.ifindex,
                            format_mac(&i.mac),
                            format_mac(&i.node_mac),
                            i.parent_ifindex
                        )
                    };
                    vec![format!("{ip}:0"), info]
                })
                .collect();
            table(&["IP ADDRESS", "LOCAL ENDPOINT INFO"], rows);
        }
        Cmd::Bpf(BpfCmd::Ipcache(ListOnly::List)) => {
            let m = IpcacheMap::open(&pin_dir(&cli)?)?;
            let list = m.list();
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(ip, p, i)| serde_json::json!({"prefix": format!("{ip}/{p}"), "identity": i.sec_identity, "tunnelendpoint": std::net::Ipv4Addr::from(i.tunnel_endpoint), "node_id": i.node_id, "flags": i.flags}))
                    .collect();
                return print_json(&v);
            }
            let rows = list
                .iter()
                .map(|(ip, p, i)| {
                    vec![
                        format!("{ip}/{p}"),
                        format!(
                            "identity={} encryptkey=0 tunnelendpoint={} flags=<none>",
                            i.sec_identity,
                            std::net::Ipv4Addr::from(i.tunnel_endpoint)
                        ),
                    ]
                })
                .collect();
            table(&["IP PREFIX/ADDRESS", "IDENTITY"], rows);
        }
        Cmd::Bpf(BpfCmd::Tunnel(ListOnly::List)) => {
            let pin = pin_dir(&cli)?;
            let m = IpcacheMap::open(&pin)?;
            let dev = seta_datapath::maps::get_config(&pin, seta_abi::CONFIG_VXLAN_IFINDEX).unwrap_or(0);
            let list: Vec<_> = m.list().into_iter().filter(|(_, _, i)| i.tunnel_endpoint != [0; 4]).collect();
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(ip, p, i)| serde_json::json!({"prefix": format!("{ip}/{p}"), "tunnel-endpoint": std::net::Ipv4Addr::from(i.tunnel_endpoint), "identity": i.sec_identity}))
                    .collect();
                return print_json(&v);
            }
            if dev == 0 {
                eprintln!("(no tunnel device: this node routes natively)");
            }
            let rows = list
                .iter()
                .map(|(ip, p, i)| {
                    vec![
                        format!("{ip}/{p}"),
                        std::net::Ipv4Addr::from(i.tunnel_endpoint).to_string(),
                        i.sec_identity.to_string(),
                    ]
                })
                .collect();
            table(&["PREFIX", "TUNNEL ENDPOINT", "IDENTITY"], rows);
        }
        Cmd::Bpf(BpfCmd::Metrics(ListOnly::List)) => {
            let m = MetricsMap::open(&pin_dir(&cli)?)?;
            let list = m.totals();
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(r, d, v)| serde_json::json!({"reason_code": r, "reason": reason_name(*r), "direction": direction_name(*d), "packets": v.count, "bytes": v.bytes}))
                    .collect();
                return print_json(&v);
            }
            let rows = list
                .iter()
                .map(|(r, d, v)| vec![reason_name(*r), direction_name(*d).into(), v.count.to_string(), v.bytes.to_string()])
                .collect();
            table(&["REASON", "DIRECTION", "PACKETS", "BYTES"], rows);
        }
        Cmd::Bpf(BpfCmd::Prog(ListOnly::List)) => {
            let list: Vec<Attachment> = client(cli.node.as_deref())?.get("/v1/attachments").await?;
            if json {
                return print_json(&list);
            }
            let rows = list
                .iter()
                .map(|a| {
                    vec![
                        a.device.clone(),
                        a.ifindex.to_string(),
                        a.direction.clone(),
                        "tcx".into(),
                        a.program.clone(),
                        a.prog_id.to_string(),
                        a.pinned.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            table(&["DEVICE", "IFINDEX", "DIRECTION", "MODE", "PROGRAM", "PROG ID", "LINK PIN"], rows);
        }
        Cmd::Lab(cmd) => return lab(cmd, json).await,
        Cmd::Endpoint(EndpointCmd::Labels { id, set }) => {
            let c = client(cli.node.as_deref())?;
            let e: Endpoint = match set {
                Some(l) => {
                    let body = seta_core::api::LabelsBody { labels: split_labels(l)? };
                    c.request(
                        seta_client::Method::PATCH,
                        &format!("/v1/endpoint/{}/labels", ep_path(id)),
                        Some(&body),
                    )
                    .await?
                }
                None => c.get(&format!("/v1/endpoint/{}", ep_path(id))).await?,
            };
            if json {
                return print_json(
                    &serde_json::json!({"id": e.id, "pod-labels": e.pod_labels, "identity-labels": e.labels.iter().map(|l| l.to_string()).collect::<Vec<_>>(), "identity": e.identity}),
                );
            }
            kv(&[
                ("Endpoint", e.id.to_string()),
                ("Identity", e.identity.to_string()),
                ("Pod labels", e.pod_labels.join(" ")),
                (
                    "Identity labels",
                    e.labels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(" "),
                ),
            ]);
        }
        Cmd::Identity(IdentityCmd::List) => {
            let ids: Vec<seta_core::api::IdentityEntry> = client(cli.node.as_deref())?.get("/v1/identity").await?;
            if json {
                return print_json(&ids);
            }
            let mut rows = vec![];
            for i in &ids {
                let mut first = true;
                for l in i.labels.iter().chain(i.labels.is_empty().then_some(&String::new())) {
                    rows.push(vec![
                        if first { i.id.to_string() } else { String::new() },
                        l.clone(),
                        if first {
                            i.refcount.map(|r| r.to_string()).unwrap_or_default()
                        } else {
                            String::new()
                        },
                    ]);
                    first = false;
                }
            }
            table(&["ID", "LABELS", "REFCOUNT"], rows);
        }
        Cmd::Identity(IdentityCmd::Get { id }) => {
            let i: seta_core::api::IdentityEntry = client(cli.node.as_deref())?.get(&format!("/v1/identity/{id}")).await?;
            if json {
                return print_json(&i);
            }
            kv(&[
                ("ID", i.id.to_string()),
                ("Labels", i.labels.join(" ")),
                ("Refcount", i.refcount.map(|r| r.to_string()).unwrap_or_else(|| "-".into())),
            ]);
        }
        Cmd::Policy(cmd) => return policy(cmd, &cli, json).await,
        Cmd::Node(ListOnly::List) => {
            let nodes: Vec<serde_json::Value> = client(cli.node.as_deref())?.get("/v1/nodes").await?;
            if json {
                return print_json(&nodes);
            }
            let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
            let rows = nodes
                .iter()
                .map(|n| {
                    let ips: Vec<String> = n["ips"].as_array().into_iter().flatten().map(s).collect();
                    vec![s(&n["name"]), ips.join(","), s(&n["pod-cidr"]), s(&n["boot-id"]), "kvstore".into()]
                })
                .collect();
            table(&["Name", "IPv4 Address", "Endpoint CIDR", "Boot ID", "Source"], rows);
        }
        Cmd::Kvstore(k) => {
            let q = match k {
                KvCmd::List { prefix } => format!("/v1/kvstore?prefix={}", prefix.replace('%', "%25").replace('&', "%26")),
                KvCmd::Get { key } => format!("/v1/kvstore?key={}", key.replace('%', "%25").replace('&', "%26")),
            };
            let kvs: Vec<serde_json::Value> = client(cli.node.as_deref())?.get(&q).await?;
            if json {
                return print_json(&kvs);
            }
            if kvs.is_empty() {
                eprintln!("(no keys)");
            }
            for kv in kvs {
                println!("{} => {}", kv["key"].as_str().unwrap_or(""), kv["value"].as_str().unwrap_or(""));
            }
        }
        Cmd::Events { since } => {
            let evs: Vec<serde_json::Value> = client(cli.node.as_deref())?.get(&format!("/v1/events?since={since}")).await?;
            if json {
                return print_json(&evs);
            }
            for e in evs {
                println!(
                    "#{} {} {} {} endpoint {} identity {}->{}: {} -> {} {}{}",
                    e["seq"],
                    e["type"].as_str().unwrap_or(""),
                    e["direction"].as_str().unwrap_or(""),
                    e["verdict"].as_str().unwrap_or(""),
                    e["endpoint"],
                    e["src-identity"],
                    e["dst-identity"],
                    e["src"].as_str().unwrap_or(""),
                    e["dst"].as_str().unwrap_or(""),
                    e["protocol"].as_str().unwrap_or(""),
                    e["drop-reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default()
                );
            }
        }
        Cmd::Bpf(BpfCmd::Policy(BpfPolicyCmd::Get { endpoint })) => {
            let dir = pin_dir(&cli)?;
            let path = dir.join(format!("seta_pol_{endpoint:05}"));
            let m = seta_datapath::maps::PolicyMap::open_pinned(&path)?;
            let labels: std::collections::BTreeMap<u32, String> = match client(cli.node.as_deref()) {
                Ok(c) => c
                    .get::<Vec<seta_core::api::IdentityEntry>>("/v1/identity")
                    .await
                    .map(|v| v.into_iter().map(|i| (i.id, i.labels.join(","))).collect())
                    .unwrap_or_default(),
                Err(_) => Default::default(),
            };
            let rows: Vec<serde_json::Value> = m
                .list()
                .iter()
                .map(|((plen, k), v)| {
                    let key = seta_core::policy::resolve::Key {
                        identity: k.sec_label,
                        egress: k.egress != 0,
                        proto: k.protocol,
                        port: u16::from_be_bytes(k.dport),
                        port_bits: (*plen as u8).saturating_sub(48),
                    };
                    serde_json::json!({
                        "policy": if v.deny != 0 { "Deny" } else { "Allow" },
                        "direction": if key.egress { "Egress" } else { "Ingress" },
                        "identity": k.sec_label,
                        "labels": if k.sec_label == 0 { "ANY".to_string() } else { labels.get(&k.sec_label).cloned().unwrap_or_default() },
                        "port": key.port_text(),
                        "prefix": plen,
                        "cookie": v.cookie,
                    })
                })
                .collect();
            if json {
                return print_json(&rows);
            }
            let s = |v: &serde_json::Value| v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
            table(
                &["POLICY", "DIRECTION", "IDENTITY", "LABELS", "PORT/PROTO", "PREFIX", "RULE"],
                rows.iter()
                    .map(|r| {
                        vec![
                            s(&r["policy"]),
                            s(&r["direction"]),
                            s(&r["identity"]),
                            s(&r["labels"]),
                            s(&r["port"]),
                            s(&r["prefix"]),
                            s(&r["cookie"]),
                        ]
                    })
                    .collect(),
            );
        }
        Cmd::Bpf(BpfCmd::Ct(CtCmd::List)) => {
            let m = seta_datapath::maps::CtMap::open(&pin_dir(&cli)?)?;
            let now = seta_datapath::maps::monotonic_ns();
            let rows: Vec<serde_json::Value> = m
                .list()
                .iter()
                .map(|(k, e)| {
                    serde_json::json!({
                        "proto": seta_core::policy::proto_name(k.proto),
                        "src": format!("{}:{}", std::net::Ipv4Addr::from(k.saddr), u16::from_be_bytes(k.sport)),
                        "dst": format!("{}:{}", std::net::Ipv4Addr::from(k.daddr), u16::from_be_bytes(k.dport)),
                        "expires_in": (e.expires as i64 - now as i64) / 1_000_000_000,
                        "packets": e.packets, "bytes": e.bytes, "src_identity": e.src_sec_id,
                        "tx_closing": e.tx_closing != 0, "rx_closing": e.rx_closing != 0, "seen_reply": e.seen_reply != 0,
                    })
                })
                .collect();
            if json {
                return print_json(&rows);
            }
            for r in rows {
                println!(
                    "{} {} -> {} expires={}s Packets={} Bytes={} SourceSecurityID={}{}{}",
                    r["proto"].as_str().unwrap(),
                    r["src"].as_str().unwrap(),
                    r["dst"].as_str().unwrap(),
                    r["expires_in"],
                    r["packets"],
                    r["bytes"],
                    r["src_identity"],
                    if r["tx_closing"] == true { " TxClosing" } else { "" },
                    if r["rx_closing"] == true { " RxClosing" } else { "" }
                );
            }
        }
        Cmd::Bpf(BpfCmd::Ct(CtCmd::Flush)) => {
            let n = seta_datapath::maps::CtMap::open(&pin_dir(&cli)?)?.flush(false)?;
            if json {
                return print_json(&serde_json::json!({"flushed": n}));
            }
            println!("Flushed {n} entries from seta_ct4");
        }
    }
    Ok(0)
}

/// `2/2 reachable` plus the nodes that are not, and why.
fn cluster_health(h: &[seta_core::api::NodeHealth]) -> String {
    if h.is_empty() {
        return "no other nodes".into();
    }
    let ok = h.iter().filter(|n| n.node_reachable && n.datapath_reachable).count();
    let mut out = format!("{ok}/{} other node(s) reachable", h.len());
    for n in h.iter().filter(|n| !(n.node_reachable && n.datapath_reachable)) {
        let why = match (n.node_reachable, n.datapath_reachable) {
            (false, false) => "unreachable",
            (true, false) => "node answers, datapath (tunnel/routes) does not",
            _ => "datapath answers, node IP does not",
        };
        out.push_str(&format!("; {}: {why}", n.name));
    }
    out
}

async fn lab(cmd: &LabCmd, json: bool) -> Result<i32> {
    match cmd {
        LabCmd::Up {
            nodes,
            pods,
            lab,
            cluster_cidr,
            kvstore,
            routing,
            operator,
        } => {
            let kv = kvstore
                .clone()
                .unwrap_or_else(|| if *nodes > 1 { "etcd".into() } else { "memory".into() });
            let etcd = match kv.as_str() {
                "memory" => false,
                "etcd" => true,
                other => bail!("--kvstore {other:?}: expected memory or etcd"),
            };
            if operator == &Some(true) && !etcd {
                bail!("--operator needs --kvstore etcd");
            }
            let opts = seta_lab::LabOptions {
                etcd,
                routing: Some(routing.clone()),
                operator: operator.unwrap_or(etcd),
            };
            let t = std::time::Instant::now();
            let l = Lab::up_with(lab, *nodes, *pods, *cluster_cidr, &bin_dir()?, &opts, &|m| eprintln!("==> {m}")).await?;
            eprintln!(
                "==> lab {} is up: {} node(s), {} pod(s) in {:.1}s",
                l.name,
                l.nodes.len(),
                l.pods.len(),
                t.elapsed().as_secs_f64()
            );
            print_lab(&l, json)?;
        }
        LabCmd::Status { lab } => print_lab(&Lab::load_default(lab.as_deref())?, json)?,
        LabCmd::Pod(PodCmd::Add {
            name,
            node,
            labels,
            namespace,
            ports,
            lab,
        }) => {
            let mut l = Lab::load_default(lab.as_deref())?;
            let labels = split_labels(labels)?;
            let ports = split_list(ports);
            for (i, p) in ports.iter().enumerate() {
                seta_core::endpoint::parse_named_port(p).map_err(|e| anyhow::anyhow!("--ports[{i}]: {e}"))?;
            }
            let p = l.pod_add(name, node, namespace, &labels, &ports).await?;
            if json {
                return print_json(&p);
            }
            println!("pod {} on {}: {} (netns {})", p.name, p.node, p.ip, p.netns);
        }
        LabCmd::Pod(PodCmd::Label { name, labels, lab }) => {
            let mut l = Lab::load_default(lab.as_deref())?;
            l.pod_label(name, &split_labels(labels)?).await?;
            println!("pod {name} labels replaced");
        }
        LabCmd::Namespace(NsCmd::Add { ns, labels, lab } | NsCmd::Label { ns, labels, lab }) => {
            let l = Lab::load_default(lab.as_deref())?;
            l.namespace_set(ns, &split_list(labels)).await?;
            println!("namespace {ns} labels set");
        }
        LabCmd::Pod(PodCmd::Del { name, lab }) => {
            Lab::load_default(lab.as_deref())?.pod_del(name).await?;
            println!("pod {name} deleted");
        }
        LabCmd::Exec { pod, lab, cmd } => {
            let st = Lab::load_default(lab.as_deref())?.pod_exec(pod, cmd)?.status()?;
            return Ok(st.code().unwrap_or(1));
        }
        LabCmd::Node(NodeCmd::Exec { node, lab, cmd }) => {
            let st = Lab::load_default(lab.as_deref())?.node_exec(node, cmd)?.status()?;
            return Ok(st.code().unwrap_or(1));
        }
        LabCmd::Down { lab, all } => {
            let names = if *all {
                seta_lab::list_labs()
            } else {
                vec![match lab {
                    Some(l) => l.clone(),
                    None => Lab::load_default(None).map(|l| l.name).unwrap_or_else(|_| "lab".into()),
                }]
            };
            for n in names {
                let done = Lab::down(&n)?;
                for d in &done {
                    eprintln!("  {d}");
                }
                eprintln!("==> lab {n} is down ({} objects removed)", done.len());
            }
        }
    }
    Ok(0)
}

fn print_lab(l: &Lab, json: bool) -> Result<()> {
    if json {
        print_json(l)?;
        return Ok(());
    }
    let mut rows = vec![];
    for n in &l.nodes {
        let alive = n.agent_pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        rows.push(vec![
            n.name.clone(),
            "node".into(),
            "-".into(),
            seta_core::ipam::Pool::new(n.pod_cidr)
                .map(|p| p.router().to_string())
                .unwrap_or_default(),
            n.netns.clone(),
            format!(
                "agent {}",
                if alive {
                    format!("pid {}", n.agent_pid.unwrap())
                } else {
                    "down".into()
                }
            ),
        ]);
    }
    if let Some(u) = &l.underlay {
        let etcd = u.etcd_pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        rows.push(vec![
            format!("{}-ul", l.name),
            "underlay".into(),
            "-".into(),
            "172.30.0.254".into(),
            u.netns.clone(),
            match (&u.etcd, etcd) {
                (Some(url), true) => format!("etcd {url} pid {}", u.etcd_pid.unwrap()),
                (Some(url), false) => format!("etcd {url} down"),
                _ => "bridge br0".into(),
            },
        ]);
    }
    for o in &l.operators {
        let alive = o.pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        rows.push(vec![
            o.id.clone(),
            "operator".into(),
            "-".into(),
            "-".into(),
            l.underlay.as_ref().map(|u| u.netns.clone()).unwrap_or_default(),
            if alive { format!("pid {}", o.pid.unwrap()) } else { "down".into() },
        ]);
    }
    if let Some(e) = &l.external {
        rows.push(vec![
            format!("{}-ext", l.name),
            "external".into(),
            "-".into(),
            e.ip.to_string(),
            e.netns.clone(),
            format!("via {}", e.gateway),
        ]);
    }
    for p in &l.pods {
        rows.push(vec![
            p.name.clone(),
            "pod".into(),
            p.node.clone(),
            p.ip.to_string(),
            p.netns.clone(),
            format!(
                "ns {}{}",
                p.namespace,
                if p.labels.is_empty() {
                    String::new()
                } else {
                    format!(" labels {}", p.labels.join(","))
                }
            ),
        ]);
    }
    table(&["NAME", "KIND", "NODE", "IPv4", "NETNS", "DETAILS"], rows);
    Ok(())
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn split_labels(s: &str) -> Result<Vec<String>> {
    let labels = split_list(s);
    for (i, lb) in labels.iter().enumerate() {
        seta_core::labels::Label::parse(lb, "k8s").map_err(|e| anyhow::anyhow!("--labels[{i}]: {e}"))?;
    }
    Ok(labels)
}

fn trace_spec(
    ep: &Option<String>,
    labels: &Option<String>,
    ns: &str,
    ip: &Option<std::net::Ipv4Addr>,
) -> Result<seta_core::api::TraceSpec> {
    Ok(seta_core::api::TraceSpec {
        endpoint: ep.clone(),
        labels: labels.as_deref().map(split_labels).transpose()?,
        namespace: Some(ns.to_string()),
        ip: *ip,
    })
}

async fn policy(cmd: &PolicyCmd, cli: &Cli, json: bool) -> Result<i32> {
    use seta_core::api::{PolicyChange, PolicyListing, PolicyText};
    let c = client(cli.node.as_deref())?;
    let read = |f: &PathBuf| std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()));
    match cmd {
        PolicyCmd::Import { file } => {
            let r: PolicyChange = c.put("/v1/policy", &PolicyText { yaml: read(file)? }).await?;
            if json {
                return print_json(&r);
            }
            for p in &r.policies {
                println!("imported {p}");
            }
            println!("Revision: {}", r.revision);
        }
        PolicyCmd::Validate { file } => {
            let r: PolicyChange = c.post("/v1/policy/validate", &PolicyText { yaml: read(file)? }).await?;
            if json {
                return print_json(&r);
            }
            println!(
                "{} valid: {} document(s): {}",
                file.display(),
                r.policies.len(),
                r.policies.join(", ")
            );
        }
        PolicyCmd::Get { name } => {
            let mut r: PolicyListing = c.get("/v1/policy").await?;
            if let Some(n) = name {
                r.policies.retain(|p| &p.origin.name == n);
                if r.policies.is_empty() {
                    bail!("no policy named {n:?}");
                }
            }
            if json {
                return print_json(&r);
            }
            for p in &r.policies {
                println!("# {}", p.origin);
                println!("{}", serde_yaml::to_string(&p.source)?.trim_end());
                println!("---");
            }
            println!("Revision: {}", r.revision);
        }
        PolicyCmd::Delete {
            name,
            namespace,
            kind,
            all,
        } => {
            if name.is_none() && !all {
                bail!("give a policy NAME or --all");
            }
            let mut q = vec![];
            if *all {
                q.push("all=true".to_string());
            }
            if let Some(n) = name {
                q.push(format!("name={n}"));
            }
            if let Some(n) = namespace {
                q.push(format!("namespace={n}"));
            }
            if let Some(k) = kind {
                q.push(format!("kind={k}"));
            }
            let r: PolicyChange = c.delete(&format!("/v1/policy?{}", q.join("&"))).await?;
            if json {
                return print_json(&r);
            }
            for p in &r.policies {
                println!("deleted {p}");
            }
            println!("Revision: {}", r.revision);
        }
        PolicyCmd::Verify => {
            let r: serde_json::Value = c.get("/v1/policy/verify").await?;
            if json {
                print_json(&r)?;
            } else if r["consistent"] == true {
                println!("every endpoint's policy map equals a full recompute");
            } else {
                for p in r["problems"].as_array().into_iter().flatten() {
                    println!("{}", p.as_str().unwrap_or_default());
                }
            }
            return Ok(if r["consistent"] == true { 0 } else { 1 });
        }
        PolicyCmd::Wait { revision, timeout } => {
            eprintln!(
                "waiting for every endpoint to enforce revision {} ...",
                revision.map(|r| r.to_string()).unwrap_or_else(|| "current".into())
            );
            let q = match revision {
                Some(r) => format!("/v1/policy/wait?revision={r}&timeout={timeout}"),
                None => format!("/v1/policy/wait?timeout={timeout}"),
            };
            let r: serde_json::Value = c.with_timeout(std::time::Duration::from_secs(timeout + 5)).get(&q).await?;
            if json {
                return print_json(&r);
            }
            println!("Revision {} is enforced by every endpoint", r["revision"]);
        }
        PolicyCmd::Trace {
            src_endpoint,
            src_labels,
            src_namespace,
            src_ip,
            dst_endpoint,
            dst_labels,
            dst_namespace,
            dst_ip,
            dport,
        } => {
            let (port, proto) = match dport.to_ascii_uppercase().as_str() {
                "ANY" => (0, "ANY".to_string()),
                d => {
                    let (p, pr) = d.split_once('/').unwrap_or((d, "TCP"));
                    (
                        p.parse::<u16>().with_context(|| format!("--dport {dport}: {p:?} is not a port"))?,
                        pr.to_string(),
                    )
                }
            };
            let req = seta_core::api::TraceRequest {
                from: trace_spec(src_endpoint, src_labels, src_namespace, src_ip)?,
                to: trace_spec(dst_endpoint, dst_labels, dst_namespace, dst_ip)?,
                protocol: proto,
                port,
            };
            let r: seta_core::policy::trace::TraceResult = c.post("/v1/policy/trace", &req).await?;
            // the exit status is the verdict in every output format
            if json {
                print_json(&r)?;
                return Ok(if r.allowed { 0 } else { 2 });
            }
            println!("Tracing From: {} (identity {})", r.source, r.source_identity);
            println!("        To:   {} (identity {})", r.destination, r.destination_identity);
            println!("        Port: {}/{}", r.port, r.protocol);
            for v in &r.verdicts {
                println!(
                    "{}: {} ({}{})",
                    v.direction,
                    if v.allowed { "allowed" } else { "denied" },
                    v.decided_by,
                    v.drop_code
                        .map(|c| format!("; drop reason {c} {}", seta_core::drop::reason_name(c)))
                        .unwrap_or_default()
                );
            }
            println!("Final verdict: {}", if r.allowed { "ALLOWED" } else { "DENIED" });
            return Ok(if r.allowed { 0 } else { 2 });
        }
    }
    Ok(0)
}

/// An endpoint id as one URL path segment (`pod-name:ns/pod` has a slash).
fn ep_path(id: &str) -> String {
    id.replace('%', "%25").replace('/', "%2F")
}
