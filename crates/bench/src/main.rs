//! `make bench`: every seta figure next to its baseline, measured in the same
//! run, interleaved (A B A B …), with client and server pinned to different
//! CPUs, reported as medians with spread and as a ratio.
//!
//! 1. pod<->pod TCP request/response (sockperf) and stream (iperf3):
//!    seta (same node, bpf_redirect_peer) vs a routed veth path without BPF.
//! 2. CNI ADD latency, 1 pod and 50 in parallel: seta-cni vs the reference
//!    bridge + host-local plugins.
//! 3. from-container cost per packet (BPF_PROG_TEST_RUN) vs an empty program.
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

const PREFIX: &str = "sbench";

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

// ---------------------------------------------------------------- statistics

#[derive(Clone, Copy, Debug)]
struct Summary {
    median: f64,
    iqr: f64,
    cv: f64,
}

fn summarize(v: &[f64]) -> Summary {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| {
        let idx = p * (s.len() - 1) as f64;
        let (lo, hi) = (idx.floor() as usize, idx.ceil() as usize);
        s[lo] + (s[hi] - s[lo]) * (idx - lo as f64)
    };
    let mean = s.iter().sum::<f64>() / s.len() as f64;
    let var = s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / s.len() as f64;
    Summary {
        median: q(0.5),
        iqr: q(0.75) - q(0.25),
        cv: if mean > 0.0 { var.sqrt() / mean } else { 0.0 },
    }
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let idx = ((p / 100.0) * (s.len() as f64 - 1.0)).round() as usize;
    s[idx.min(s.len() - 1)]
}

struct Row {
    name: String,
    unit: &'static str,
    seta: Summary,
    base_name: &'static str,
    base: Summary,
    higher_is_better: bool,
    goal: String,
}

impl Row {
    /// seta relative to the baseline, oriented so that > 1 means seta is better.
    fn ratio(&self) -> f64 {
        if self.higher_is_better {
            self.seta.median / self.base.median
        } else {
            self.base.median / self.seta.median
        }
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn render(rows: &[Row]) -> String {
    let mut out = String::from("| benchmark | seta (median ± IQR) | baseline | baseline (median ± IQR) | ratio (>1 = seta better) | goal |\n|---|---|---|---|---|---|\n");
    for r in rows {
        let flag = |s: &Summary| if s.cv > 0.10 { " ⚠ CV>10%" } else { "" };
        out.push_str(&format!(
            "| {} | {} ± {} {}{} | {} | {} ± {} {}{} | {:.2}× | {} |\n",
            r.name,
            fmt(r.seta.median),
            fmt(r.seta.iqr),
            r.unit,
            flag(&r.seta),
            r.base_name,
            fmt(r.base.median),
            fmt(r.base.iqr),
            r.unit,
            flag(&r.base),
            r.ratio(),
            r.goal
        ));
    }
    out
}

// ---------------------------------------------------------------- helpers

fn sh(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("run {}", args[0]))?;
    if !out.status.success() {
        bail!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn in_ns(ns: &str, cpu: u32, argv: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "taskset", "-c", &cpu.to_string()]).args(argv);
    c
}

fn spawn_server(ns: &str, argv: &[&str]) -> Result<Child> {
    let c = in_ns(ns, 1, argv).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(c)
}

struct Cleanup;
impl Drop for Cleanup {
    fn drop(&mut self) {
        cleanup();
    }
}

fn cleanup() {
    // (servers are ended by pid where they were started; namespaces of a
    // killed run are removed here)
    for ns in ["xc", "xa", "xu", "xb", "xs", "rc", "rr", "rs", "dc", "ds"] {
        let _ = Command::new("ip")
            .args(["netns", "del", &format!("{PREFIX}-{ns}")])
            .stderr(Stdio::null())
            .status();
    }
    let _ = Lab::down(PREFIX);
    let _ = std::fs::remove_dir_all(format!("/run/{PREFIX}-ipam"));
}

/// The floor: client and server namespaces joined by one veth pair (no
/// routing hop at all).
fn direct_veth() -> Result<(String, String, Ipv4Addr)> {
    let (c, s) = (format!("{PREFIX}-dc"), format!("{PREFIX}-ds"));
    for ns in [&c, &s] {
        sh(&["ip", "netns", "add", ns])?;
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    }
    sh(&[
        "ip", "-n", &c, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &s,
    ])?;
    for (ns, addr) in [(&c, "10.252.3.1/24"), (&s, "10.252.3.2/24")] {
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", "eth0"])?;
        sh(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
    }
    Ok((c, s, "10.252.3.2".parse()?))
}

/// Baseline: client and server namespaces joined through a forwarding middle
/// namespace by two veth pairs (Cilium's legacy host routing, no BPF).
fn routed_veth() -> Result<(String, String, Ipv4Addr, String)> {
    let (c, r, s) = (format!("{PREFIX}-rc"), format!("{PREFIX}-rr"), format!("{PREFIX}-rs"));
    for ns in [&c, &r, &s] {
        sh(&["ip", "netns", "add", ns])?;
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    }
    sh(&[
        "ip", "-n", &c, "link", "add", "eth0", "type", "veth", "peer", "name", "rc0", "netns", &r,
    ])?;
    sh(&[
        "ip", "-n", &s, "link", "add", "eth0", "type", "veth", "peer", "name", "rs0", "netns", &r,
    ])?;
    for (ns, dev, addr) in [
        (&c, "eth0", "10.252.1.2/24"),
        (&r, "rc0", "10.252.1.1/24"),
        (&r, "rs0", "10.252.2.1/24"),
        (&s, "eth0", "10.252.2.2/24"),
    ] {
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev])?;
        sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
    }
    sh(&["ip", "-n", &c, "route", "add", "default", "via", "10.252.1.1"])?;
    sh(&["ip", "-n", &s, "route", "add", "default", "via", "10.252.2.1"])?;
    sh(&["ip", "netns", "exec", &r, "sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    Ok((c, s, "10.252.2.2".parse()?, r))
}

fn sockperf_rr(client: &str, server: &str, ip: Ipv4Addr, port: u16, secs: u32) -> Result<(f64, f64)> {
    let mut srv = spawn_server(server, &["sockperf", "sr", "--tcp", "-i", &ip.to_string(), "-p", &port.to_string()])?;
    let out = in_ns(
        client,
        0,
        &[
            "sockperf",
            "pp",
            "--tcp",
            "-i",
            &ip.to_string(),
            "-p",
            &port.to_string(),
            "-t",
            &secs.to_string(),
            "-m",
            "16",
            "--full-rtt",
        ],
    )
    .output()?;
    let _ = srv.kill();
    let _ = srv.wait();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let p50 = text
        .lines()
        .find(|l| l.contains("percentile 50.000"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("sockperf output without p50: {text}"))?;
    // transactions/s over the valid (post warm-up) duration
    let valid = text.lines().find(|l| l.contains("[Valid Duration]")).context("no valid duration")?;
    let num = |key: &str| -> Option<f64> {
        valid
            .split(key)
            .nth(1)?
            .split([';', ' '])
            .next()?
            .trim_end_matches("sec")
            .parse()
            .ok()
    };
    let runtime = num("RunTime=").context("runtime")?;
    let recv = num("ReceivedMessages=").context("received")?;
    Ok((p50, recv / runtime))
}

fn iperf_stream(client: &str, server: &str, ip: Ipv4Addr, port: u16, secs: u32) -> Result<f64> {
    let mut srv = spawn_server(server, &["iperf3", "-s", "-1", "-p", &port.to_string()])?;
    let out = in_ns(
        client,
        0,
        &[
            "iperf3",
            "-c",
            &ip.to_string(),
            "-p",
            &port.to_string(),
            "-t",
            &secs.to_string(),
            "-J",
        ],
    )
    .output()?;
    let _ = srv.kill();
    let _ = srv.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 JSON")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .with_context(|| format!("iperf3: {v}"))
}

fn ip_forwarded(ns: &str) -> Result<u64> {
    let out = sh(&["ip", "netns", "exec", ns, "nstat", "-az", "IpForwDatagrams"])?;
    Ok(out
        .lines()
        .find(|l| l.starts_with("IpForwDatagrams"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Interleaved request/response (sockperf) and stream (iperf3) rounds between
/// a seta pod pair and a baseline pair: rate, p50 RTT and throughput rows.
fn rr_and_stream_rows(
    args: &Args,
    seta: (&str, &str, Ipv4Addr),
    base: (&str, &str, Ipv4Addr),
    what: &str,
    base_name: &'static str,
    goals: [&str; 3],
) -> Result<Vec<Row>> {
    // warm-up
    sockperf_rr(seta.0, seta.1, seta.2, 11111, 1)?;
    sockperf_rr(base.0, base.1, base.2, 11111, 1)?;
    let (mut s_rtt, mut s_rate, mut b_rtt, mut b_rate, mut s_bw, mut b_bw) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for round in 1..=args.rounds {
        eprintln!("    round {round}/{}", args.rounds);
        let (a, b) = sockperf_rr(seta.0, seta.1, seta.2, 11111, args.seconds)?;
        s_rtt.push(a);
        s_rate.push(b);
        let (a, b) = sockperf_rr(base.0, base.1, base.2, 11111, args.seconds)?;
        b_rtt.push(a);
        b_rate.push(b);
        s_bw.push(iperf_stream(seta.0, seta.1, seta.2, 5201, args.seconds)?);
        b_bw.push(iperf_stream(base.0, base.1, base.2, 5201, args.seconds)?);
    }
    let row = |name: String, unit, s: &[f64], b: &[f64], higher_is_better, goal: &str| Row {
        name,
        unit,
        seta: summarize(s),
        base_name,
        base: summarize(b),
        higher_is_better,
        goal: goal.into(),
    };
    Ok(vec![
        row(
            format!("TCP RR rate, {what} (sockperf, 16 B)"),
            "trans/s",
            &s_rate,
            &b_rate,
            true,
            goals[0],
        ),
        row(format!("TCP RR p50 RTT, {what}"), "µs", &s_rtt, &b_rtt, false, goals[1]),
        row(format!("TCP stream, {what} (iperf3)"), "Gbit/s", &s_bw, &b_bw, true, goals[2]),
    ])
}

// ---------------------------------------------------------------- 1. network

async fn bench_net(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
    eprintln!("==> pod<->pod: seta lab (1 node, 2 pods) vs routed veth");
    let lab = Lab::up(PREFIX, 1, 2, "10.203.0.0/16".parse()?, bin_dir, &|_| {}).await?;
    let (p1, p2) = (lab.pod("pod1")?.clone(), lab.pod("pod2")?.clone());
    let (rc, rs, rip, rr) = routed_veth()?;
    let node_ns = lab.nodes[0].netns.clone();
    let fwd0 = ip_forwarded(&node_ns)?;

    let rows = rr_and_stream_rows(
        args,
        (&p1.netns, &p2.netns, p2.ip),
        (&rc, &rs, rip),
        "pod↔pod same node",
        "routed veth",
        ["≥ 1.05×", "", "≥ 1.15×"],
    )?;
    let fwd = ip_forwarded(&node_ns)? - fwd0;
    let base_fwd = ip_forwarded(&rr)?;
    eprintln!("    path check: seta node IpForwDatagrams +{fwd} (bypassed the stack), baseline router +{base_fwd}");
    // the floor: one veth pair, no hop; where the rest of the difference goes
    let (dc, ds, dip) = direct_veth()?;
    let (mut s_bw, mut d_bw) = (vec![], vec![]);
    for round in 1..=args.rounds {
        eprintln!("    floor round {round}/{}", args.rounds);
        s_bw.push(iperf_stream(&p1.netns, &p2.netns, p2.ip, 5202, args.seconds)?);
        d_bw.push(iperf_stream(&dc, &ds, dip, 5202, args.seconds)?);
    }
    let mut rows = rows;
    rows.push(Row {
        name: "TCP stream, pod↔pod same node vs the floor (iperf3)".into(),
        unit: "Gbit/s",
        seta: summarize(&s_bw),
        base_name: "direct veth pair",
        base: summarize(&d_bw),
        higher_is_better: true,
        goal: "".into(),
    });
    for ns in [&dc, &ds] {
        let _ = sh(&["ip", "netns", "del", ns]);
    }
    Ok(rows)
}

// ---------------------------------------------------------------- 2. CNI ADD

fn timed_add(lab: &Lab, node: &str, cid: &str, ns: &str) -> Result<f64> {
    let env = [
        ("CNI_COMMAND", "ADD".to_string()),
        ("CNI_CONTAINERID", cid.to_string()),
        ("CNI_NETNS", format!("/run/netns/{ns}")),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAME={cid};K8S_POD_NAMESPACE=default")),
    ];
    let conf = lab.cni_conf(node, 0)?;
    let t = Instant::now();
    let (ok, out) = lab.invoke_cni(node, &env, &conf)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !ok {
        bail!("seta ADD {cid}: {out}");
    }
    Ok(ms)
}

fn seta_del(lab: &Lab, node: &str, cid: &str, ns: &str) -> Result<()> {
    let env = [
        ("CNI_COMMAND", "DEL".to_string()),
        ("CNI_CONTAINERID", cid.to_string()),
        ("CNI_NETNS", format!("/run/netns/{ns}")),
        ("CNI_IFNAME", "eth0".to_string()),
    ];
    let (ok, out) = lab.invoke_cni(node, &env, &lab.cni_conf(node, 0)?)?;
    if !ok {
        bail!("seta DEL {cid}: {out}");
    }
    Ok(())
}

fn bridge_conf() -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.0.0", "name": "benchbr", "type": "bridge", "bridge": "sbbr0", "isGateway": true,
        "ipam": {"type": "host-local", "subnet": "10.254.0.0/16", "dataDir": format!("/run/{PREFIX}-ipam")}
    })
}

fn bridge_cmd(node_ns: &str, cmd: &str, cid: &str, ns: &str) -> Result<f64> {
    let mut c = Command::new("/usr/lib/cni/bridge");
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", format!("/run/netns/{ns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    in_netns(&mut c, &Path::new("/run/netns").join(node_ns))?;
    let t = Instant::now();
    let mut child = c.spawn()?;
    use std::io::Write;
    child.stdin.take().unwrap().write_all(bridge_conf().to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        bail!("bridge {cmd} {cid}: {}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(ms)
}

async fn bench_cni(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
    eprintln!("==> CNI ADD latency: seta-cni vs bridge + host-local");
    if !Path::new("/usr/lib/cni/bridge").exists() {
        bail!("/usr/lib/cni/bridge missing (apt install containernetworking-plugins)");
    }
    let _ = Lab::down(PREFIX);
    let lab = Lab::up(PREFIX, 1, 0, "10.203.0.0/16".parse()?, bin_dir, &|_| {}).await?;
    let node = lab.nodes[0].name.clone();
    let br_node = format!("{PREFIX}-brnode");
    sh(&["ip", "netns", "add", &br_node])?;
    const PAR: usize = 50;
    for i in 0..PAR {
        sh(&["ip", "netns", "add", &format!("{PREFIX}-c{i}")])?;
    }
    let ns = |i: usize| format!("{PREFIX}-c{i}");
    let (mut s1, mut b1, mut sp, mut bp) = (vec![], vec![], vec![], vec![]);
    let rounds = args.rounds.max(3);
    for round in 1..=rounds {
        eprintln!("    round {round}/{rounds}");
        // one pod at a time
        for i in 0..10 {
            s1.push(timed_add(&lab, &node, &format!("one{i}"), &ns(i))?);
            seta_del(&lab, &node, &format!("one{i}"), &ns(i))?;
            b1.push(bridge_cmd(&br_node, "ADD", &format!("one{i}"), &ns(i))?);
            bridge_cmd(&br_node, "DEL", &format!("one{i}"), &ns(i))?;
        }
        // 50 at once
        let handles: Vec<_> = (0..PAR)
            .map(|i| {
                let (lab, node, n) = (lab.clone(), node.clone(), ns(i));
                std::thread::spawn(move || timed_add(&lab, &node, &format!("par{i}"), &n))
            })
            .collect();
        for h in handles {
            sp.push(h.join().unwrap()?);
        }
        for i in 0..PAR {
            seta_del(&lab, &node, &format!("par{i}"), &ns(i))?;
        }
        let handles: Vec<_> = (0..PAR)
            .map(|i| {
                let (bn, n) = (br_node.clone(), ns(i));
                std::thread::spawn(move || bridge_cmd(&bn, "ADD", &format!("par{i}"), &n))
            })
            .collect();
        for h in handles {
            bp.push(h.join().unwrap()?);
        }
        for i in 0..PAR {
            bridge_cmd(&br_node, "DEL", &format!("par{i}"), &ns(i))?;
        }
    }
    let pct = |v: &[f64], p: f64| Summary {
        median: percentile(v, p),
        iqr: 0.0,
        cv: 0.0,
    };
    let row = |name: String, s: Summary, b: Summary, goal: &str| Row {
        name,
        unit: "ms",
        seta: s,
        base_name: "bridge+host-local",
        base: b,
        higher_is_better: false,
        goal: goal.into(),
    };
    Ok(vec![
        row(
            format!("CNI ADD, 1 pod, p50 (n={})", s1.len()),
            pct(&s1, 50.0),
            pct(&b1, 50.0),
            "≥ 1.00×",
        ),
        row(format!("CNI ADD, 1 pod, p99 (n={})", s1.len()), pct(&s1, 99.0), pct(&b1, 99.0), ""),
        row(
            format!("CNI ADD, {PAR} in parallel, p50 (n={})", sp.len()),
            pct(&sp, 50.0),
            pct(&bp, 50.0),
            "",
        ),
        row(
            format!("CNI ADD, {PAR} in parallel, p99 (n={})", sp.len()),
            pct(&sp, 99.0),
            pct(&bp, 99.0),
            "≤ 200 ms and ≥ 2.00×",
        ),
    ])
}

/// The agent's resident memory (MB) from /proc: ("VmRSS:" now, "VmHWM:" peak).
fn agent_mem_mb(pid: u32, field: &str) -> Result<f64> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = st
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{field} in /proc/{pid}/status"))?;
    Ok(kb / 1024.0)
}

/// Agent memory while 100 endpoints are created 10 at a time (peak RSS) and
/// once they exist (steady), next to the idle agent of the same run.
async fn bench_agent_memory(bin_dir: &Path) -> Result<Vec<Row>> {
    eprintln!("==> agent memory: 100 endpoints created 10 at a time");
    let name = format!("{PREFIX}m");
    let _ = Lab::down(&name);
    let lab = Lab::up(&name, 1, 0, "10.204.0.0/16".parse()?, bin_dir, &|_| {}).await?;
    let node = lab.nodes[0].name.clone();
    let pid = lab.nodes[0].agent_pid.context("agent pid")?;
    let r = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = agent_mem_mb(pid, "VmRSS:")?;
        // reset the peak: from here on VmHWM is the creations' peak
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
        const N: usize = 100;
        for i in 0..N {
            sh(&["ip", "netns", "add", &format!("{PREFIX}-m{i}")])?;
        }
        let mut peak: f64 = 0.0;
        for batch in 0..N / 10 {
            let handles: Vec<_> = (batch * 10..batch * 10 + 10)
                .map(|i| {
                    let (lab, node) = (lab.clone(), node.clone());
                    std::thread::spawn(move || timed_add(&lab, &node, &format!("mem{i}"), &format!("{PREFIX}-m{i}")))
                })
                .collect();
            for h in handles {
                h.join().unwrap()?;
            }
            peak = peak.max(agent_mem_mb(pid, "VmHWM:")?);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let steady = agent_mem_mb(pid, "VmRSS:")?;
        peak = peak.max(agent_mem_mb(pid, "VmHWM:")?);
        for i in 0..N {
            let _ = seta_del(&lab, &node, &format!("mem{i}"), &format!("{PREFIX}-m{i}"));
            let _ = sh(&["ip", "netns", "del", &format!("{PREFIX}-m{i}")]);
        }
        let one = |v: f64| Summary {
            median: v,
            iqr: 0.0,
            cv: 0.0,
        };
        anyhow::Ok(vec![
            Row {
                name: "agent RSS, peak while 100 endpoints are created 10 at a time".into(),
                unit: "MB",
                seta: one(peak),
                base_name: "idle agent",
                base: one(idle),
                higher_is_better: false,
                goal: "≤ 100 MB".into(),
            },
            Row {
                name: "agent RSS, steady with 100 endpoints".into(),
                unit: "MB",
                seta: one(steady),
                base_name: "idle agent",
                base: one(idle),
                higher_is_better: false,
                goal: "".into(),
            },
        ])
    }
    .await;
    let _ = Lab::down(&name);
    r
}

// ---------------------------------------------------------------- 3. BPF per packet

fn bench_bpf(args: &Args) -> Result<Vec<Row>> {
    use seta_abi::{EndpointInfo, ENDPOINT_F_HOST};
    use seta_datapath::maps::EndpointMap;
    use seta_datapath::testpkt::udp_packet;
    use seta_datapath::Datapath;
    eprintln!("==> from-container per-packet cost (BPF_PROG_TEST_RUN) vs an empty tc program");
    seta_datapath::sysfs::ensure_bpffs(Path::new("/sys/fs/bpf"))?;
    let node = format!("{PREFIX}-n0");
    let dp = Datapath::new(seta_core::names::pin_dir(Path::new("/sys/fs/bpf"), &node, seta_abi::ABI_VERSION))?;
    let r = (|| -> Result<Vec<Row>> {
        let _host = dp.load_host_object()?;
        let (a, b, router) = (Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 3), Ipv4Addr::new(10, 9, 0, 1));
        let mut eps = EndpointMap::open(dp.pin_dir())?;
        // the sending endpoint: a test run's packet comes in on loopback (ifindex 1)
        eps.upsert(
            a,
            &EndpointInfo {
                ifindex: 1,
                lxc_id: 1,
                mac: [2, 0, 0, 0, 0, 1],
                node_mac: [2, 0, 0, 0, 1, 1],
                sec_id: 256,
                ..Default::default()
            },
        )?;
        eps.upsert(
            b,
            &EndpointInfo {
                ifindex: 99,
                lxc_id: 2,
                mac: [2, 0, 0, 0, 0, 2],
                node_mac: [2, 0, 0, 0, 1, 2],
                sec_id: 256,
                ..Default::default()
            },
        )?;
        eps.upsert(
            router,
            &EndpointInfo {
                flags: ENDPOINT_F_HOST,
                ..Default::default()
            },
        )?;
        let (mut lxc, _lxc_b) = load_pair(&dp, a, b, 256)?;
        // default-allow policy maps for both endpoints: the first repeat creates
        // the conntrack entry, the rest measure the established fast path
        let allow_all = seta_datapath::maps::policy_entries(&seta_core::policy::resolve::compute(&Default::default(), []));
        let mut outer = seta_datapath::maps::PolicyOuter::open(dp.pin_dir())?;
        for ep in [1u16, 2] {
            dp.ensure_policy_map(ep)?;
            let mut pm = seta_datapath::maps::PolicyMap::open_pinned(&dp.policy_pin(ep))?;
            pm.sync(&allow_all)?;
            outer.register(ep, &pm)?;
        }
        let mut empty = aya::Ebpf::load(seta_datapath::objects::TEST_EMPTY)?;
        {
            let p: &mut SchedClassifier = empty.program_mut("empty").unwrap().try_into()?;
            p.load()?;
        }
        let local = udp_packet([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 0, 1], a, b, 64);
        let stack = udp_packet([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 0, 1], a, router, 64);
        const REPEAT: u32 = 2_000_000;
        let run = |ebpf: &mut aya::Ebpf, prog: &str, pkt: &[u8]| -> Result<f64> {
            let p: &mut SchedClassifier = ebpf.program_mut(prog).unwrap().try_into()?;
            let mut opts = TestRunOptions::new();
            opts.data_in = Some(pkt);
            opts.repeat = REPEAT;
            Ok(p.test_run(opts)?.duration.as_nanos() as f64)
        };
        let (mut l, mut s, mut e) = (vec![], vec![], vec![]);
        run(&mut lxc, "from_container", &local)?; // warm-up
        for _ in 0..args.rounds.max(5) {
            l.push(run(&mut lxc, "from_container", &local)?);
            s.push(run(&mut lxc, "from_container", &stack)?);
            e.push(run(&mut empty, "empty", &local)?);
        }
        let es = summarize(&e);
        Ok(vec![
            Row {
                name: "from-container, pod→pod local delivery (64 B UDP)".into(),
                unit: "ns/pkt",
                seta: summarize(&l),
                base_name: "empty tc program",
                base: es,
                higher_is_better: false,
                goal: "≤ 120 ns absolute".into(),
            },
            Row {
                name: "from-container, pod→node/stack".into(),
                unit: "ns/pkt",
                seta: summarize(&s),
                base_name: "empty tc program",
                base: es,
                higher_is_better: false,
                goal: "".into(),
            },
        ])
    })();
    let _ = dp.remove_all();
    r
}

// ---------------------------------------------------------------- 4. policy computation

/// 10k endpoint identities and 1k rules (each allowing one app label on one
/// port), resolved for one endpoint: full recompute vs adding one identity.
fn bench_policy_compute(args: &Args) -> Result<Vec<Row>> {
    use seta_core::policy::resolve::{self, IdKind, IdentityInfo};
    eprintln!("==> policy computation: 10k identities x 1k rules (full) vs one new identity (incremental)");
    let mut yaml = String::from("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: big, namespace: default}\nspecs:\n");
    for r in 0..1000 {
        yaml.push_str(&format!(
            "- endpointSelector: {{matchLabels: {{app: web}}}}\n  ingress:\n  - fromEndpoints: [{{matchLabels: {{app: app{r}}}}}]\n    toPorts: [{{ports: [{{port: \"{}\", protocol: TCP}}]}}]\n",
            1000 + r
        ));
    }
    let rules: Vec<_> = seta_core::policy::parse::parse_file(&yaml)?
        .into_iter()
        .flat_map(|d| d.rules)
        .collect();
    let universe: Vec<IdentityInfo> = (0..10_000u32)
        .map(|i| IdentityInfo {
            id: 256 + i,
            labels: seta_core::labels::parse_list(
                &format!("app=app{},tier=t{},io.kubernetes.pod.namespace=default", i % 2000, i % 7),
                "k8s",
            )
            .unwrap(),
            kind: IdKind::Endpoint,
        })
        .collect();
    let me = seta_core::labels::parse_list("app=web,io.kubernetes.pod.namespace=default", "k8s").map_err(anyhow::Error::msg)?;
    let newcomer = IdentityInfo {
        id: 20_000,
        labels: seta_core::labels::parse_list("app=app7,io.kubernetes.pod.namespace=default", "k8s").map_err(anyhow::Error::msg)?,
        kind: IdKind::Endpoint,
    };
    let (mut full, mut inc, mut base) = (vec![], vec![], vec![]);
    let mut entries = 0;
    for _ in 0..args.rounds.max(5) {
        let t = Instant::now();
        let p = resolve::endpoint_policy(&rules, &me, Default::default(), Default::default(), true);
        let state = resolve::compute(&p, &universe);
        full.push(t.elapsed().as_secs_f64() * 1e3);
        entries = state.len();
        let mut st = state.clone();
        let t = Instant::now();
        resolve::add_identity(&mut st, &p, &newcomer);
        inc.push(t.elapsed().as_secs_f64() * 1e3);
        // baseline for the incremental figure: the same full recompute with the newcomer
        let mut u2 = universe.clone();
        u2.push(newcomer.clone());
        let t = Instant::now();
        let _ = resolve::compute(&p, &u2);
        base.push(t.elapsed().as_secs_f64() * 1e3);
    }
    eprintln!("    {entries} map entries for the endpoint");
    Ok(vec![
        Row {
            name: "policy: full recompute, 10k identities × 1k rules".into(),
            unit: "ms",
            seta: summarize(&full),
            base_name: "goal 1000 ms",
            base: Summary {
                median: 1000.0,
                iqr: 0.0,
                cv: 0.0,
            },
            higher_is_better: false,
            goal: "≤ 1 s".into(),
        },
        Row {
            name: "policy: one new identity, incremental".into(),
            unit: "ms",
            seta: summarize(&inc),
            base_name: "full recompute",
            base: summarize(&base),
            higher_is_better: false,
            goal: "≤ 10 ms".into(),
        },
    ])
}

// ---------------------------------------------------------------- 5. policy on the packet path

fn ip_of(i: u32, base: [u8; 2]) -> Ipv4Addr {
    Ipv4Addr::new(base[0], base[1], (i >> 8) as u8, i as u8)
}

/// web's ingress: N-1 rules each allowing one outside /32 on TCP 80, and the
/// last allowing app=client on the sockperf port. 10k CIDR identities exist
/// (a CCNP selecting nobody), so the ipcache holds 10k+ prefixes.
fn web_policy(n: u32) -> String {
    let mut y =
        String::from("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web-ingress, namespace: default}\nspecs:\n");
    for i in 1..n {
        y.push_str(&format!("- endpointSelector: {{matchLabels: {{app: web}}}}\n  ingress: [{{fromCIDR: [{}/32], toPorts: [{{ports: [{{port: \"80\", protocol: TCP}}]}}]}}]\n", ip_of(i, [198, 19])));
    }
    y.push_str("- endpointSelector: {matchLabels: {app: web}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: \"11111\", protocol: TCP}]}]}]\n");
    y
}

fn identities_policy() -> String {
    let cidrs: Vec<String> = (1..=10_000u32).map(|i| format!("{}/32", ip_of(i, [198, 18]))).collect();
    format!("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {{name: ten-k-identities}}\nspec:\n  endpointSelector: {{matchLabels: {{app: nobody}}}}\n  egress: [{{toCIDR: [{}]}}]\n", cidrs.join(", "))
}

fn iptables_rules(n: u32, client: Ipv4Addr, server: Ipv4Addr) -> String {
    let mut r = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for i in 1..n {
        r.push_str(&format!(
            "-A FORWARD -s {}/32 -p tcp -m tcp --dport 80 -j ACCEPT\n",
            ip_of(i, [198, 19])
        ));
    }
    r.push_str(&format!(
        "-A FORWARD -s {client}/32 -d {server}/32 -p tcp -m tcp --dport 11111 -j ACCEPT\n"
    ));
    r.push_str(&format!(
        "-A FORWARD -s {server}/32 -d {client}/32 -p tcp -m tcp --sport 11111 -j ACCEPT\nCOMMIT\n"
    ));
    r
}

async fn bench_policy_path(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
    use seta_client::Client;
    eprintln!("==> policy on the packet path: 1, 1k, 10k rules with 10k identities; seta vs iptables-nft on routed veth");
    let _ = Lab::down(PREFIX);
    let mut lab = Lab::up(PREFIX, 1, 0, "10.203.0.0/16".parse()?, bin_dir, &|_| {}).await?;
    let node = lab.nodes[0].name.clone();
    lab.pod_add("web", &node, "default", &["app=web".into()], &[]).await?;
    lab.pod_add("client", &node, "default", &["app=client".into()], &[]).await?;
    let (web, client) = (lab.pod("web")?.clone(), lab.pod("client")?.clone());
    let c = Client::new(&lab.nodes[0].socket).with_timeout(Duration::from_secs(300));
    let import = |y: String| {
        let c = c.clone();
        async move {
            let r: seta_core::api::PolicyChange = c.put("/v1/policy", &seta_core::api::PolicyText { yaml: y }).await?;
            let _: serde_json::Value = c.get(&format!("/v1/policy/wait?revision={}&timeout=120", r.revision)).await?;
            anyhow::Ok(())
        }
    };
    import(identities_policy()).await?;
    let (rc, rs, rip, rr) = routed_veth()?;
    let client_ip: Ipv4Addr = "10.252.1.2".parse()?;
    let mut rows = Vec::new();
    for n in [1u32, 1000, 10_000] {
        eprintln!("    {n} rule(s)");
        let t = Instant::now();
        import(web_policy(n)).await?;
        let import_ms = t.elapsed().as_secs_f64() * 1e3;
        let rules = std::env::temp_dir().join(format!("{PREFIX}-ipt-{n}"));
        std::fs::write(&rules, iptables_rules(n, client_ip, rip))?;
        let st = Command::new("ip")
            .args(["netns", "exec", &rr, "iptables-restore"])
            .stdin(std::fs::File::open(&rules)?)
            .status()?;
        let _ = std::fs::remove_file(&rules);
        if !st.success() {
            bail!("iptables-restore of {n} rules failed");
        }
        // sanity: the policy really is in force (another pod would be denied)
        sockperf_rr(&client.netns, &web.netns, web.ip, 11111, 1)?;
        sockperf_rr(&rc, &rs, rip, 11111, 1)?;
        let (mut s, mut b) = (vec![], vec![]);
        for _ in 0..args.rounds {
            s.push(sockperf_rr(&client.netns, &web.netns, web.ip, 11111, args.seconds)?.1);
            b.push(sockperf_rr(&rc, &rs, rip, 11111, args.seconds)?.1);
        }
        eprintln!("    import + enforcement of {n} rules took {import_ms:.0} ms");
        rows.push(Row {
            name: format!("TCP RR with {n} policy rule(s), 10k identities"),
            unit: "trans/s",
            seta: summarize(&s),
            base_name: "routed veth + iptables-nft, same rules",
            base: summarize(&b),
            higher_is_better: true,
            goal: "".into(),
        });
    }
    let agent_rss_mb = std::fs::read_to_string(format!("/proc/{}/status", lab.nodes[0].agent_pid.unwrap_or(0)))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0);
    eprintln!("    agent RSS with 10k identities and 10k rules: {agent_rss_mb:.0} MB");
    rows.push(Row {
        name: "agent memory: 10k identities, 10k rules, 2 endpoints".into(),
        unit: "MB RSS",
        seta: Summary {
            median: agent_rss_mb,
            iqr: 0.0,
            cv: 0.0,
        },
        base_name: "(reported)",
        base: Summary {
            median: agent_rss_mb,
            iqr: 0.0,
            cv: 0.0,
        },
        higher_is_better: false,
        goal: "".into(),
    });
    rows.extend(bench_policy_lpm(args)?);
    let _ = Lab::down(PREFIX);
    Ok(rows)
}

/// BPF_PROG_TEST_RUN of a new connection's ingress decision at a destination
/// whose policy map holds N entries (denied, so every repeat decides again).
fn bench_policy_lpm(args: &Args) -> Result<Vec<Row>> {
    use seta_abi::{EndpointInfo, RemoteEndpointInfo};
    use seta_core::policy::resolve::Key;
    use seta_datapath::maps::{EndpointMap, IpcacheMap, PolicyEntries, PolicyMap, PolicyOuter};
    use seta_datapath::testpkt::tcp_packet;
    use seta_datapath::Datapath;
    let node = format!("{PREFIX}-n9");
    let dp = Datapath::new(seta_core::names::pin_dir(Path::new("/sys/fs/bpf"), &node, seta_abi::ABI_VERSION))?;
    let r = (|| -> Result<Vec<Row>> {
        let _host = dp.load_host_object()?;
        let (a, b) = (Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 3));
        let mut eps = EndpointMap::open(dp.pin_dir())?;
        // the sending endpoint: a test run's packet comes in on loopback (ifindex 1)
        eps.upsert(
            a,
            &EndpointInfo {
                ifindex: 1,
                lxc_id: 1,
                mac: [2, 0, 0, 0, 0, 1],
                node_mac: [2, 0, 0, 0, 1, 1],
                sec_id: 256,
                ..Default::default()
            },
        )?;
        eps.upsert(
            b,
            &EndpointInfo {
                ifindex: 99,
                lxc_id: 2,
                mac: [2, 0, 0, 0, 0, 2],
                node_mac: [2, 0, 0, 0, 1, 2],
                sec_id: 300,
                ..Default::default()
            },
        )?;
        let mut ipc = IpcacheMap::open(dp.pin_dir())?;
        for i in 1..=10_000u32 {
            ipc.upsert(
                ip_of(i, [198, 18]),
                32,
                &RemoteEndpointInfo {
                    sec_identity: (1 << 24) + i,
                    ..Default::default()
                },
            )?;
        }
        let (mut lxc_a, _lxc_b) = load_pair(&dp, a, b, 300)?;
        let allow_all = seta_datapath::maps::policy_entries(&seta_core::policy::resolve::compute(&Default::default(), []));
        dp.ensure_policy_map(1)?;
        dp.ensure_policy_map(2)?;
        let mut pa = PolicyMap::open_pinned(&dp.policy_pin(1))?;
        pa.sync(&allow_all)?;
        let mut outer = PolicyOuter::open(dp.pin_dir())?;
        outer.register(1, &pa)?;
        let mut pb = PolicyMap::open_pinned(&dp.policy_pin(2))?;
        outer.register(2, &pb)?;
        let pkt = tcp_packet([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 1, 1], a, b, 40000, 11111, 0x02);
        let mut rows = Vec::new();
        let mut first = None;
        for n in [1u32, 1000, 10_000] {
            let mut st = seta_core::policy::resolve::MapState::new();
            for i in 0..n {
                let k = Key {
                    identity: (1 << 24) + i + 1,
                    egress: false,
                    proto: 6,
                    port: 80,
                    port_bits: 16,
                };
                st.insert(
                    k,
                    seta_core::policy::resolve::Entry {
                        deny: false,
                        cookie: i + 1,
                    },
                );
            }
            let entries: PolicyEntries = seta_datapath::maps::policy_entries(&st);
            pb.sync(&entries)?;
            let mut v = vec![];
            for _ in 0..args.rounds.max(5) {
                let p: &mut SchedClassifier = lxc_a.program_mut("from_container").unwrap().try_into()?;
                let mut opts = TestRunOptions::new();
                opts.data_in = Some(&pkt);
                opts.repeat = 200_000;
                v.push(p.test_run(opts)?.duration.as_nanos() as f64);
            }
            let s = summarize(&v);
            let base = *first.get_or_insert(s);
            rows.push(Row {
                name: format!("new-connection decision, {n} entries in the destination's policy map"),
                unit: "ns/pkt",
                seta: s,
                base_name: "same with 1 entry",
                base,
                higher_is_better: false,
                goal: "".into(),
            });
        }
        Ok(rows)
    })();
    let _ = dp.remove_all();
    r
}

/// The endpoint program twice (as endpoints 1 and 2, at `a` and `b`, whose
/// seta_lxc entries the caller writes) in a bench pin dir.
fn load_pair(dp: &seta_datapath::Datapath, _a: Ipv4Addr, _b: Ipv4Addr, _sec_b: u32) -> Result<(aya::Ebpf, aya::Ebpf)> {
    Ok((dp.load_lxc_object()?, dp.load_lxc_object()?))
}

// ---------------------------------------------------------------- 6. identity allocation

/// New identities allocated per second through a real etcd (loopback), by 1
/// and by 10 concurrent agents, next to the embedded store.
async fn bench_identity_alloc(args: &Args) -> Result<Vec<Row>> {
    use seta_kvstore::{etcd::EtcdStore, identity::ClusterIdentities, memory::MemoryStore};
    use std::sync::Arc;
    eprintln!("==> identity allocation throughput: etcd (1 and 10 agents) vs embedded store");
    let etcd = seta_kvstore::testing::EtcdServer::start("bench").context("etcd-server is needed (apt install etcd-server)")?;
    let ep = vec![etcd.endpoint.clone()];
    const PER_ROUND: usize = 200;
    let mut round = 0usize;
    let (mut one, mut ten, mut mem) = (vec![], vec![], vec![]);
    for _ in 0..args.rounds {
        for agents in [1usize, 10] {
            round += 1;
            let t = Instant::now();
            let mut tasks = Vec::new();
            for a in 0..agents {
                let ep = ep.clone();
                let r = round;
                tasks.push(tokio::spawn(async move {
                    let store = Arc::new(EtcdStore::connect(&ep).await?);
                    let ids = ClusterIdentities::new(store, "/bench", &format!("n{a}"), 0);
                    for i in (a..PER_ROUND).step_by(agents) {
                        ids.allocate(&seta_core::labels::parse_list(&format!("app=r{r}x{i}"), "k8s").map_err(anyhow::Error::msg)?)
                            .await?;
                    }
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            let ops = PER_ROUND as f64 / t.elapsed().as_secs_f64();
            if agents == 1 {
                one.push(ops)
            } else {
                ten.push(ops)
            }
        }
        let store = Arc::new(MemoryStore::new());
        let ids = ClusterIdentities::new(store, "/bench", "n0", 0);
        let t = Instant::now();
        for i in 0..PER_ROUND {
            ids.allocate(&seta_core::labels::parse_list(&format!("app=m{i}"), "k8s").map_err(anyhow::Error::msg)?)
                .await?;
        }
        mem.push(PER_ROUND as f64 / t.elapsed().as_secs_f64());
    }
    let m = summarize(&mem);
    Ok(vec![
        Row {
            name: "identity allocation, etcd, 1 agent".into(),
            unit: "ops/s",
            seta: summarize(&one),
            base_name: "embedded store",
            base: m,
            higher_is_better: true,
            goal: "".into(),
        },
        Row {
            name: "identity allocation, etcd, 10 concurrent agents".into(),
            unit: "ops/s",
            seta: summarize(&ten),
            base_name: "embedded store",
            base: m,
            higher_is_better: true,
            goal: "".into(),
        },
    ])
}

// ---------------------------------------------------------------- 7. cross-node

/// Baseline for two nodes: client and server namespaces behind two routing
/// "node" namespaces joined by an underlay bridge, without BPF. With `vxlan`
/// the nodes are joined by plain (static, non-flow-based) VXLAN devices on
/// UDP 8472 and the pods get MTU 1450 (flannel-style); otherwise the nodes
/// route each other's pod subnet via the underlay (native routing).
fn two_node_baseline(vxlan: bool) -> Result<(String, String, Ipv4Addr)> {
    let n = |x: &str| format!("{PREFIX}-{x}");
    let (c, a, u, b, sv) = (n("xc"), n("xa"), n("xu"), n("xb"), n("xs"));
    for ns in [&c, &a, &u, &b, &sv] {
        sh(&["ip", "netns", "add", ns])?;
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    }
    sh(&["ip", "-n", &u, "link", "add", "br0", "type", "bridge"])?;
    sh(&["ip", "-n", &u, "link", "set", "br0", "up"])?;
    for (node, port, ul) in [(&a, "pa", "172.31.0.1/24"), (&b, "pb", "172.31.0.2/24")] {
        sh(&[
            "ip", "-n", node, "link", "add", "ul0", "type", "veth", "peer", "name", port, "netns", &u,
        ])?;
        sh(&["ip", "-n", &u, "link", "set", port, "master", "br0", "up"])?;
        sh(&["ip", "-n", node, "addr", "add", ul, "dev", "ul0"])?;
        sh(&["ip", "-n", node, "link", "set", "ul0", "up"])?;
        sh(&["ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    }
    for (pod, node, peer, pod_ip, gw) in [
        (&c, &a, "c0", "10.254.1.2/24", "10.254.1.1/24"),
        (&sv, &b, "s0", "10.254.2.2/24", "10.254.2.1/24"),
    ] {
        sh(&[
            "ip", "-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", node,
        ])?;
        sh(&["ip", "-n", pod, "addr", "add", pod_ip, "dev", "eth0"])?;
        sh(&["ip", "-n", node, "addr", "add", gw, "dev", peer])?;
        if vxlan {
            sh(&["ip", "-n", pod, "link", "set", "eth0", "mtu", "1450"])?;
            sh(&["ip", "-n", node, "link", "set", peer, "mtu", "1450"])?;
        }
        sh(&["ip", "-n", pod, "link", "set", "eth0", "up"])?;
        sh(&["ip", "-n", node, "link", "set", peer, "up"])?;
        let gw = gw.split('/').next().unwrap();
        sh(&["ip", "-n", pod, "route", "add", "default", "via", gw])?;
    }
    if vxlan {
        for (node, local, remote, vip, peer_vip, dst) in [
            (&a, "172.31.0.1", "172.31.0.2", "10.254.255.1/30", "10.254.255.2", "10.254.2.0/24"),
            (&b, "172.31.0.2", "172.31.0.1", "10.254.255.2/30", "10.254.255.1", "10.254.1.0/24"),
        ] {
            sh(&[
                "ip", "-n", node, "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "8472", "local", local, "remote", remote,
                "dev", "ul0",
            ])?;
            sh(&["ip", "-n", node, "addr", "add", vip, "dev", "vx0"])?;
            sh(&["ip", "-n", node, "link", "set", "vx0", "up"])?;
            sh(&["ip", "-n", node, "route", "add", dst, "via", peer_vip])?;
        }
    } else {
        sh(&["ip", "-n", &a, "route", "add", "10.254.2.0/24", "via", "172.31.0.2"])?;
        sh(&["ip", "-n", &b, "route", "add", "10.254.1.0/24", "via", "172.31.0.1"])?;
    }
    Ok((c, sv, "10.254.2.2".parse()?))
}

fn p_summary(v: &[f64], p: f64) -> Summary {
    Summary {
        median: percentile(v, p),
        iqr: 0.0,
        cv: 0.0,
    }
}

async fn bench_xnode(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for mode in ["tunnel", "native"] {
        eprintln!("==> cross-node pod<->pod, {mode} mode: seta lab (2 nodes, etcd) vs the same topology without BPF");
        let _ = Lab::down(PREFIX);
        let opts = seta_lab::LabOptions {
            etcd: true,
            routing: Some(mode.parse().map_err(anyhow::Error::msg)?),
            operator: false,
        };
        let mut lab = Lab::up_with(PREFIX, 2, 1, "10.203.0.0/16".parse()?, bin_dir, &opts, &|_| {}).await?;
        let (p1, p2) = (lab.pod("pod1")?.clone(), lab.pod("pod2")?.clone());
        let deadline = Instant::now() + Duration::from_secs(15);
        while !seta_lab::traffic::ping_ok(&p1.netns, p2.ip) {
            if Instant::now() > deadline {
                bail!("pod1 cannot reach pod2 across nodes in {mode} mode");
            }
        }
        let (bc, bs, bip) = two_node_baseline(mode == "tunnel")?;
        let base = if mode == "tunnel" {
            "plain VXLAN, no BPF"
        } else {
            "routed veth, no BPF"
        };
        rows.extend(rr_and_stream_rows(
            args,
            (&p1.netns, &p2.netns, p2.ip),
            (&bc, &bs, bip),
            &format!("pod↔pod cross-node, {mode}"),
            base,
            ["", "", ""],
        )?);
        for ns in ["xc", "xa", "xu", "xb", "xs"] {
            let _ = sh(&["ip", "netns", "del", &format!("{PREFIX}-{ns}")]);
        }
        if mode == "tunnel" {
            rows.extend(propagation(args, &mut lab).await?);
        }
        let _ = Lab::down(PREFIX);
    }
    Ok(rows)
}

/// Identity propagation: a pod on node 1 changes labels (a new identity);
/// timed from the API request on node 1 until node 2 has (a) the pod's new
/// identity in its ipcache and (b) a policy-map entry for it in the
/// endpoint whose policy selects it. Baseline: a bare etcd put -> watch event.
async fn propagation(args: &Args, lab: &mut Lab) -> Result<Vec<Row>> {
    use seta_kvstore::KvStore;
    eprintln!("==> propagation: identity and policy changes on node 1 -> maps on node 2 (vs a bare etcd put -> watch)");
    let (n1, n2) = (lab.nodes[0].name.clone(), lab.nodes[1].name.clone());
    lab.pod_add("pw", &n2, "default", &["app=web".into()], &[]).await?;
    lab.pod_add("pc", &n1, "default", &["app=client".into()], &[]).await?;
    let c2 = seta_client::Client::new(&lab.nodes[1].socket).with_timeout(Duration::from_secs(30));
    let y = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n";
    let r: seta_core::api::PolicyChange = c2.put("/v1/policy", &seta_core::api::PolicyText { yaml: y.into() }).await?;
    let _: serde_json::Value = c2.get(&format!("/v1/policy/wait?revision={}&timeout=30", r.revision)).await?;
    let pw = lab.pod("pw")?.clone();
    let ep: serde_json::Value = c2.get(&format!("/v1/endpoint/container-id:{}", pw.container_id)).await?;
    let ep_id = ep["id"].as_u64().context("endpoint id")? as u16;
    let pin = seta_core::names::pin_dir(Path::new("/sys/fs/bpf"), &n2, seta_abi::ABI_VERSION);
    let pol = seta_datapath::maps::PolicyMap::open_pinned(&pin.join(format!("seta_pol_{ep_id:05}")))?;
    let ipc = seta_datapath::maps::IpcacheMap::open(&pin)?;
    let pc_ip = lab.pod("pc")?.ip;
    let ident_of = |ipc: &seta_datapath::maps::IpcacheMap| {
        ipc.list()
            .into_iter()
            .find(|(ip, p, _)| *ip == pc_ip && *p == 32)
            .map(|(_, _, v)| v.sec_identity)
    };
    let samples = (args.rounds * 10).max(20);
    let (mut to_ipcache, mut to_policy) = (vec![], vec![]);
    for i in 0..samples {
        let before_id = ident_of(&ipc);
        let before: std::collections::BTreeSet<u32> = pol.list().keys().map(|(_, d)| d.sec_label).collect();
        let t = Instant::now();
        lab.pod_label("pc", &["app=client".into(), format!("seq=s{i}")]).await?;
        let (mut a, mut b) = (None, None);
        while a.is_none() || b.is_none() {
            if a.is_none() && ident_of(&ipc) != before_id {
                a = Some(t.elapsed().as_secs_f64() * 1e3);
            }
            if b.is_none() && pol.list().keys().any(|(_, d)| !before.contains(&d.sec_label)) {
                b = Some(t.elapsed().as_secs_f64() * 1e3);
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("no propagation to node 2 within 10 s (sample {i})");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        to_ipcache.push(a.unwrap());
        to_policy.push(b.unwrap());
    }
    // policy: imported on node 1, enforced by node 2 (cluster-wide policies)
    let c1 = seta_client::Client::new(&lab.nodes[0].socket).with_timeout(Duration::from_secs(30));
    let mut to_policy_import = vec![];
    for i in 0..samples {
        let y = format!(
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: prop{i}, namespace: default}}\nspec:\n  endpointSelector: {{matchLabels: {{app: web}}}}\n  ingress:\n  - fromEndpoints: [{{matchLabels: {{seq: s{i}}}}}]\n    toPorts: [{{ports: [{{port: \"{}\", protocol: TCP}}]}}]\n",
            1000 + i
        );
        let before = pol.list();
        let t = Instant::now();
        let _: seta_core::api::PolicyChange = c1.put("/v1/policy", &seta_core::api::PolicyText { yaml: y }).await?;
        loop {
            if pol.list().len() != before.len() {
                to_policy_import.push(t.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("policy {i} imported on node 1 never reached node 2's map");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    // baseline: the kvstore alone, on a loopback etcd
    let etcd = seta_kvstore::testing::EtcdServer::start("bench-prop").context("etcd-server")?;
    let w = std::sync::Arc::new(seta_kvstore::etcd::EtcdStore::connect(std::slice::from_ref(&etcd.endpoint)).await?);
    let p = seta_kvstore::etcd::EtcdStore::connect(std::slice::from_ref(&etcd.endpoint)).await?;
    let (_, mut rx) = w.list_and_watch("/bench/").await?;
    let mut raw = vec![];
    for i in 0..samples {
        let t = Instant::now();
        p.put(&format!("/bench/k{i}"), b"v", 0).await?;
        rx.recv().await.context("watch")??;
        raw.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let row = |name: &str, v: &[f64], p: f64, goal: &str| Row {
        name: format!("{name}, p{p}"),
        unit: "ms",
        seta: p_summary(v, p),
        base_name: "etcd put → watch",
        base: p_summary(&raw, p),
        higher_is_better: false,
        goal: goal.into(),
    };
    Ok(vec![
        row("identity change → node 2 ipcache", &to_ipcache, 50.0, ""),
        row("identity change → node 2 policy map", &to_policy, 50.0, ""),
        row("identity change → node 2 policy map", &to_policy, 99.0, "p99 ≤ 50 ms"),
        row("policy import on node 1 → node 2 policy map", &to_policy_import, 50.0, ""),
        row(
            "policy import on node 1 → node 2 policy map",
            &to_policy_import,
            99.0,
            "p99 ≤ 50 ms",
        ),
    ])
}
