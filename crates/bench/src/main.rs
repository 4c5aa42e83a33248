//! `make bench`: every seta figure next to its baseline, measured in the same
//! run, interleaved (A B A B …), with client and server pinned to different
//! CPUs, reported as medians with spread and as a ratio.
//!
//! 1. pod<->pod TCP request/response (sockperf) and stream (iperf3):
//!    seta (same node, bpf_redirect_peer) vs a routed veth path without BPF.
//! 2. CNI ADD latency, 1 pod and 50 in parallel: seta-cni vs the reference
//!    bridge + host-local plugins.
//! 3. from-container cost per packet (BPF_PROG_TEST_RUN) vs an empty program.
mod bpf;
mod cni;
mod events;
mod k8s;
mod kvstore;
mod net;
mod polcomp;
mod policy;
mod relay;
mod stats;
mod svc;
mod svcconn;
mod svcscale;
mod util;
mod xnode;

use anyhow::{bail, Context, Result};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use clap::Parser;
use seta_lab::{in_netns, Lab};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser, Clone)]
struct Args {
    /// Interleaved rounds per comparison
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per throughput / latency sample
    #[arg(long, default_value_t = 3)]
    seconds: u32,
    /// Only these sections (bpf, net, cni, mem, polcomp, policy, kvstore, xnode, svc, svcscale, svcconn, events, k8s)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "bpf,net,cni,mem,polcomp,policy,kvstore,xnode,svc,svcscale,svcconn,events,k8s"
    )]
    only: Vec<String>,
    /// Also write the table as markdown here
    #[arg(long, default_value = "target/bench-results.md")]
    markdown: PathBuf,
}

pub(crate) const PREFIX: &str = "sbench";
use bpf::*;
use cni::*;
use events::*;
use k8s::*;
use kvstore::*;
use net::*;
use polcomp::*;
use policy::*;
use relay::*;
use stats::*;
use svc::*;
use svcconn::*;
use svcscale::*;
use util::*;
use xnode::*;

type SectionFn = fn(&Args, &Path, &tokio::runtime::Runtime) -> Result<Vec<Row>>;

/// The sections in order: name (for --only), seconds of budget per
/// round-second, and how to run it.
const SECTIONS: [(&str, u64, SectionFn); 14] = [
    ("bpf", 4, |a, _, _| bench_bpf(a)),
    ("net", 30, |a, b, rt| rt.block_on(bench_net(a, b))),
    ("cni", 10, |a, b, rt| rt.block_on(bench_cni(a, b))),
    ("mem", 10, |_, b, rt| rt.block_on(bench_agent_memory(b))),
    ("polcomp", 10, |a, _, _| bench_policy_compute(a)),
    ("policy", 30, |a, b, rt| rt.block_on(bench_policy_path(a, b))),
    ("kvstore", 10, |a, _, rt| rt.block_on(bench_identity_alloc(a))),
    ("xnode", 40, |a, b, rt| rt.block_on(bench_xnode(a, b))),
    ("svc", 90, |a, b, rt| rt.block_on(bench_services(a, b))),
    ("svcscale", 10, |a, b, rt| rt.block_on(bench_service_scale(a, b))),
    ("svcconn", 60, |a, b, rt| rt.block_on(bench_service_connect(a, b))),
    ("events", 10, |a, b, rt| rt.block_on(bench_events(a, b))),
    ("relay", 10, |a, b, rt| rt.block_on(bench_relay(a, b))),
    ("k8s", 40, |a, b, rt| rt.block_on(bench_k8s(a, b))),
];

/// Run one section on its own thread with a time limit: its rows, or why it
/// failed or timed out (a timed-out section's thread is abandoned).
fn run_section(name: &str, limit: Duration, args: &Args, bin_dir: &Path, run: SectionFn) -> Result<Vec<Row>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (args, bin_dir) = (args.clone(), bin_dir.to_path_buf());
    std::thread::Builder::new()
        .name(format!("bench-{name}"))
        .spawn(move || {
            let r = tokio::runtime::Runtime::new().map_err(anyhow::Error::from).and_then(|rt| {
                let r = run(&args, &bin_dir, &rt);
                rt.shutdown_timeout(Duration::from_secs(1));
                r
            });
            let _ = tx.send(r.map_err(|e| format!("failed: {e:#}")));
        })
        .map_err(|e| format!("failed: cannot start a thread: {e}"))?;
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(format!("timed out after {} s", limit.as_secs())),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err("failed: the section panicked".into()),
    }
}

fn main() -> Result<()> {
    if let Some(r) = hidden_mode() {
        return r;
    }
    let args = Args::parse();
    if !nix::unistd::Uid::effective().is_root() {
        bail!("make bench needs root (namespaces, BPF)");
    }
    let bin_dir = std::env::current_exe()?.parent().unwrap().to_path_buf();
    let _guard = Cleanup;
    cleanup();
    let mut rows: Vec<Row> = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    for (name, per_sample, run) in SECTIONS {
        if !args.only.iter().any(|s| s == name) {
            continue;
        }
        // a bound on the whole section: setup plus its samples, generously
        let limit = Duration::from_secs(180 + per_sample * (args.rounds as u64) * (args.seconds as u64));
        match run_section(name, limit, &args, &bin_dir, run) {
            Ok(r) => rows.extend(r),
            Err(why) => {
                eprintln!("==> section {name}: {why}; going on with the next section");
                failed.push((name.to_string(), why));
                // take down what it left, so a stuck section's thread fails fast
                cleanup();
            }
        }
    }
    let table = render(&rows, &failed);
    println!("\n{table}");
    let _ = std::fs::create_dir_all(args.markdown.parent().unwrap_or(Path::new(".")));
    std::fs::write(&args.markdown, &table)?;
    eprintln!("(also written to {})", args.markdown.display());
    Ok(())
}
