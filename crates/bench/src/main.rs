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
mod kvstore;
mod net;
mod polcomp;
mod policy;
mod stats;
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

#[derive(Parser)]
struct Args {
    /// Interleaved rounds per comparison
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per throughput / latency sample
    #[arg(long, default_value_t = 3)]
    seconds: u32,
    /// Only these sections (bpf, net, cni, mem, polcomp, policy, kvstore, xnode)
    #[arg(long, value_delimiter = ',', default_value = "bpf,net,cni,mem,polcomp,policy,kvstore,xnode")]
    only: Vec<String>,
    /// Also write the table as markdown here
    #[arg(long, default_value = "target/bench-results.md")]
    markdown: PathBuf,
}

pub(crate) const PREFIX: &str = "sbench";
use bpf::*;
use cni::*;
use kvstore::*;
use net::*;
use polcomp::*;
use policy::*;
use stats::*;
use util::*;
use xnode::*;

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::Uid::effective().is_root() {
        bail!("make bench needs root (namespaces, BPF)");
    }
    let bin_dir = std::env::current_exe()?.parent().unwrap().to_path_buf();
    let rt = tokio::runtime::Runtime::new()?;
    let _guard = Cleanup;
    cleanup();
    let mut rows: Vec<Row> = Vec::new();
    if args.only.iter().any(|s| s == "bpf") {
        rows.extend(bench_bpf(&args)?);
    }
    if args.only.iter().any(|s| s == "net") {
        rows.extend(rt.block_on(bench_net(&args, &bin_dir))?);
    }
    if args.only.iter().any(|s| s == "cni") {
        rows.extend(rt.block_on(bench_cni(&args, &bin_dir))?);
    }
    if args.only.iter().any(|s| s == "mem") {
        rows.extend(rt.block_on(bench_agent_memory(&bin_dir))?);
    }
    if args.only.iter().any(|s| s == "polcomp") {
        rows.extend(bench_policy_compute(&args)?);
    }
    if args.only.iter().any(|s| s == "policy") {
        rows.extend(rt.block_on(bench_policy_path(&args, &bin_dir))?);
    }
    if args.only.iter().any(|s| s == "kvstore") {
        rows.extend(rt.block_on(bench_identity_alloc(&args))?);
    }
    if args.only.iter().any(|s| s == "xnode") {
        rows.extend(rt.block_on(bench_xnode(&args, &bin_dir))?);
    }
    let table = render(&rows);
    println!("\n{table}");
    let _ = std::fs::create_dir_all(args.markdown.parent().unwrap_or(Path::new(".")));
    std::fs::write(&args.markdown, &table)?;
    eprintln!("(also written to {})", args.markdown.display());
    Ok(())
}
