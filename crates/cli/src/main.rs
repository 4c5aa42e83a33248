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
    /// A virtual cluster in network namespaces
    #[command(subcommand)]
    Lab(LabCmd),
}

#[derive(Subcommand)]
enum EndpointCmd {
    /// List endpoints
    List,
    /// Show one endpoint (id, container-id:ID or pod-name:NS/POD)
    Get { id: String },
}

#[derive(Subcommand)]
enum BpfCmd {
    /// The local endpoint map (seta_lxc)
    #[command(subcommand)]
    Endpoint(ListOnly),
    /// The IP -> identity cache (seta_ipcache)
    #[command(subcommand)]
    Ipcache(ListOnly),
    /// Datapath forward/drop counters (seta_metrics)
    #[command(subcommand)]
    Metrics(ListOnly),
    /// Programs attached per device, including TCX links (which bpftool 7.1 cannot show)
    #[command(subcommand)]
    Prog(ListOnly),
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
                rows.push(vec![
                    e.id.to_string(),
                    "Disabled".into(),
                    "Disabled".into(),
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
            let e: Endpoint = client(cli.node.as_deref())?.get(&format!("/v1/endpoint/{id}")).await?;
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
    }
    Ok(0)
}

async fn lab(cmd: &LabCmd, json: bool) -> Result<i32> {
    match cmd {
        LabCmd::Up {
            nodes,
            pods,
            lab,
            cluster_cidr,
        } => {
            let t = std::time::Instant::now();
            let l = Lab::up(lab, *nodes, *pods, *cluster_cidr, &bin_dir()?, &|m| eprintln!("==> {m}")).await?;
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
            lab,
        }) => {
            let mut l = Lab::load_default(lab.as_deref())?;
            let labels: Vec<String> = labels
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            for (i, lb) in labels.iter().enumerate() {
                seta_core::labels::Label::parse(lb, "k8s").map_err(|e| anyhow::anyhow!("--labels[{i}]: {e}"))?;
            }
            let p = l.pod_add(name, node, namespace, &labels).await?;
            if json {
                return print_json(&p);
            }
            println!("pod {} on {}: {} (netns {})", p.name, p.node, p.ip, p.netns);
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
