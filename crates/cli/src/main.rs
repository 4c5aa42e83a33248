//! `seta`: the debug CLI (agent API + pinned maps) and the lab.
mod cmd;
mod output;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use cmd::bpf::BpfCmd;
use cmd::endpoint::EndpointCmd;
use cmd::identity::IdentityCmd;
use cmd::kvstore::KvCmd;
use cmd::lab::LabCmd;
use cmd::policy::PolicyCmd;
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
    /// Services (Kubernetes Service and EndpointSlice): import, list, get, delete
    #[command(subcommand)]
    Service(cmd::service::ServiceCmd),
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
    /// Flows from the node's Hubble observer (as `hubble observe`)
    Observe(Box<cmd::observe::ObserveArgs>),
    /// Datapath events live, as `cilium-dbg monitor` prints them
    Monitor(cmd::monitor::MonitorArgs),
    /// A virtual cluster in network namespaces
    #[command(subcommand)]
    Lab(LabCmd),
}

#[derive(Subcommand)]
pub enum ListOnly {
    List,
}

fn main() {
    // `seta observe --not --from-pod X`: the negated filters are taken out
    // before clap sees the rest (clap has no notion of "the next flag")
    let (args, not) = match cmd::observe::split_not(std::env::args().collect()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let mut cli = Cli::parse_from(args);
    if let Cmd::Observe(a) = &mut cli.cmd {
        a.not = not;
    }
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
        Cmd::Status => cmd::status::run(&cli, json).await,
        Cmd::Endpoint(c) => cmd::endpoint::run(c, &cli, json).await,
        Cmd::Bpf(c) => cmd::bpf::run(c, &cli, json).await,
        Cmd::Identity(c) => cmd::identity::run(c, &cli, json).await,
        Cmd::Policy(c) => cmd::policy::run(c, &cli, json).await,
        Cmd::Service(c) => cmd::service::run(c, &cli, json).await,
        Cmd::Node(ListOnly::List) => cmd::status::nodes(&cli, json).await,
        Cmd::Kvstore(c) => cmd::kvstore::run(c, &cli, json).await,
        Cmd::Events { since } => cmd::events::run(*since, &cli, json).await,
        Cmd::Observe(a) => cmd::observe::run(a, &cli, json).await,
        Cmd::Monitor(a) => cmd::monitor::run(a, &cli).await,
        Cmd::Lab(c) => cmd::lab::run(c, json).await,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `seta observe --identity` takes numbers and reserved names, as hubble's.
    #[test]
    fn observe_identities_by_number_or_reserved_name() {
        let cli = Cli::try_parse_from(["seta", "observe", "--from-identity", "world", "--to-identity", "300"]).unwrap();
        let Cmd::Observe(a) = cli.cmd else { panic!("not observe") };
        assert_eq!((a.from_identity.as_slice(), a.to_identity.as_slice()), (&[2][..], &[300][..]));
        let e = Cli::try_parse_from(["seta", "observe", "--identity", "planet"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a number or a reserved identity"), "{e}");
    }
}
