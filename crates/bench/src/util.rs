//! Namespaces, servers and the baselines shared by the suites.
use crate::*;
use seta_lab::wait::RunWithin;

pub(crate) fn sh(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).output_within(Duration::from_secs(60))?;
    if !out.status.success() {
        bail!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn in_ns(ns: &str, cpu: u32, argv: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "taskset", "-c", &cpu.to_string()]).args(argv);
    c
}

pub(crate) fn spawn_server(ns: &str, argv: &[&str]) -> Result<Child> {
    let c = in_ns(ns, 1, argv).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(c)
}

pub(crate) struct Cleanup;
impl Drop for Cleanup {
    fn drop(&mut self) {
        cleanup();
    }
}

pub(crate) fn cleanup() {
    // (servers are ended by pid where they were started; namespaces of a
    // killed run, and whatever still runs in them, are removed here)
    let mut done = Vec::new();
    for ns in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let ns = ns.file_name().to_string_lossy().into_owned();
        if ns.starts_with(&format!("{PREFIX}-")) {
            seta_lab::leftovers::remove_netns(&ns, &mut done);
        }
    }
    // (the sections' labs: PREFIX and the ones named after it)
    for lab in ["", "m", "s", "c", "e", "k"] {
        let _ = Lab::down(&format!("{PREFIX}{lab}"));
    }
    let _ = std::fs::remove_dir_all(format!("/run/{PREFIX}-ipam"));
}

/// The floor: client and server namespaces joined by one veth pair (no
/// routing hop at all).
pub(crate) fn direct_veth() -> Result<(String, String, Ipv4Addr)> {
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
pub(crate) fn routed_veth() -> Result<(String, String, Ipv4Addr, String)> {
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

pub(crate) fn sockperf_rr(client: &str, server: &str, ip: Ipv4Addr, port: u16, secs: u32) -> Result<(f64, f64)> {
    sockperf_rr_to(client, server, (ip, port), (ip, port), secs)
}

/// As `sockperf_rr`, the server on `bind`, the client to `dst` (a service
/// address in front of it).
pub(crate) fn sockperf_rr_to(client: &str, server: &str, bind: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), secs: u32) -> Result<(f64, f64)> {
    sockperf_rr_in(client, None, server, bind, dst, secs)
}

/// `sockperf_rr_to` with the client in the cgroup `cgroup` (socket-LB: a
/// lab node's cgroup).
pub(crate) fn sockperf_rr_in(
    client: &str,
    cgroup: Option<&Path>,
    server: &str,
    bind: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    secs: u32,
) -> Result<(f64, f64)> {
    let (ip, port) = dst;
    let mut srv = spawn_server(
        server,
        &["sockperf", "sr", "--tcp", "-i", &bind.0.to_string(), "-p", &bind.1.to_string()],
    )?;
    let mut cmd = in_ns(
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
    );
    if let Some(dir) = cgroup {
        seta_lab::cgroups::spawn_in(&mut cmd, dir)?;
    }
    let out = cmd.output_within(Duration::from_secs(secs as u64 + 30))?;
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

pub(crate) fn iperf_stream(client: &str, server: &str, ip: Ipv4Addr, port: u16, secs: u32) -> Result<f64> {
    iperf_stream_in(client, None, server, port, (ip, port), secs, false)
}

/// `iperf_stream` with the server on `port`, the client to `dst` (a service
/// in front of it) and in the cgroup `cgroup` when given: Gbit/s. With
/// `download`, the server sends and the client receives (`iperf3 -R`).
pub(crate) fn iperf_stream_in(
    client: &str,
    cgroup: Option<&Path>,
    server: &str,
    port: u16,
    dst: (Ipv4Addr, u16),
    secs: u32,
    download: bool,
) -> Result<f64> {
    let mut srv = spawn_server(server, &["iperf3", "-s", "-1", "--rcv-timeout", "5000", "-p", &port.to_string()])?;
    let (dst_ip, dst_port, secs_s) = (dst.0.to_string(), dst.1.to_string(), secs.to_string());
    let mut argv = vec!["iperf3", "-c", &dst_ip, "-p", &dst_port, "-t", &secs_s, "-J"];
    // a stalled stream (an MTU or GSO mistake) must not hang the bench
    argv.extend(["--connect-timeout", "5000"]);
    if download {
        argv.push("-R");
    }
    let mut cmd = in_ns(client, 0, &argv);
    if let Some(dir) = cgroup {
        seta_lab::cgroups::spawn_in(&mut cmd, dir)?;
    }
    let out = cmd.output_within(Duration::from_secs(secs as u64 + 30))?;
    let _ = srv.kill();
    let _ = srv.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 JSON")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .with_context(|| format!("iperf3: {v}"))
}

pub(crate) fn ip_forwarded(ns: &str) -> Result<u64> {
    let out = sh(&["ip", "netns", "exec", ns, "nstat", "-az", "IpForwDatagrams"])?;
    Ok(out
        .lines()
        .find(|l| l.starts_with("IpForwDatagrams"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// One side of a comparison: a client (in a cgroup, or not) reaching a
/// server's request/response port (bound at `rr.0`, reached at `rr.1`) and
/// its stream port (`stream.0`, reached at `stream.1`).
pub(crate) struct Traffic<'a> {
    pub(crate) client: &'a str,
    pub(crate) cgroup: Option<&'a Path>,
    pub(crate) server: &'a str,
    pub(crate) rr: ((Ipv4Addr, u16), (Ipv4Addr, u16)),
    pub(crate) stream: (u16, (Ipv4Addr, u16)),
    /// A host route `(destination, gateway)` in the client's namespace,
    /// there only while this side is measured: the same server reached
    /// along another path.
    pub(crate) via: Option<(Ipv4Addr, Ipv4Addr)>,
}

impl<'a> Traffic<'a> {
    /// Straight to the server's address: RR on 11111, the stream on 5201.
    pub(crate) fn direct(client: &'a str, server: &'a str, ip: Ipv4Addr) -> Self {
        Self {
            client,
            cgroup: None,
            server,
            rr: ((ip, 11111), (ip, 11111)),
            stream: (5201, (ip, 5201)),
            via: None,
        }
    }

    fn rr(&self, secs: u32) -> Result<(f64, f64)> {
        self.routed(|| sockperf_rr_in(self.client, self.cgroup, self.server, self.rr.0, self.rr.1, secs))
    }

    fn stream(&self, secs: u32) -> Result<f64> {
        self.routed(|| iperf_stream_in(self.client, self.cgroup, self.server, self.stream.0, self.stream.1, secs, false))
    }

    /// The stream the other way: the server sends (`iperf3 -R`).
    fn download(&self, secs: u32) -> Result<f64> {
        self.routed(|| iperf_stream_in(self.client, self.cgroup, self.server, self.stream.0, self.stream.1, secs, true))
    }

    /// `f` with this side's host route in place (removed again whatever `f`
    /// returns).
    fn routed<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let Some((dst, gw)) = self.via else { return f() };
        let (dst, gw) = (format!("{dst}/32"), gw.to_string());
        sh(&["ip", "-n", self.client, "route", "replace", &dst, "via", &gw])?;
        let r = f();
        let _ = sh(&["ip", "-n", self.client, "route", "del", &dst, "via", &gw]);
        r
    }
}

/// Interleaved request/response (sockperf) and stream (iperf3) rounds of
/// `seta` and `base`: rate, p50 RTT and throughput rows.
pub(crate) fn compare_rr_and_stream(
    args: &Args,
    seta: &Traffic,
    base: &Traffic,
    what: &str,
    base_name: &'static str,
    goals: [&str; 3],
) -> Result<Vec<Row>> {
    compare_rr_and_stream_with(args, seta, &[(base, base_name, goals)], what)
}

/// Interleaved rounds of the download stream (the server sends, `iperf3
/// -R`) of `seta` and of each baseline (with its name and goal): one row
/// per baseline.
pub(crate) fn compare_download_with(args: &Args, seta: &Traffic, bases: &[(&Traffic, &'static str, &str)], what: &str) -> Result<Vec<Row>> {
    let mut s_bw = vec![];
    let mut b_bw = vec![vec![]; bases.len()];
    for round in 1..=args.rounds {
        eprintln!("    download round {round}/{}", args.rounds);
        s_bw.push(seta.download(args.seconds)?);
        for (i, (base, ..)) in bases.iter().enumerate() {
            b_bw[i].push(base.download(args.seconds)?);
        }
    }
    Ok(bases
        .iter()
        .zip(&b_bw)
        .map(|((_, base_name, goal), b)| Row {
            name: format!("TCP stream, {what}, server → client (iperf3 -R)"),
            unit: "Gbit/s",
            seta: summarize(&s_bw),
            base_name,
            base: summarize(b),
            higher_is_better: true,
            goal: (*goal).into(),
        })
        .collect())
}

/// As [`compare_rr_and_stream`], with `seta` next to each of several
/// baselines (each with its name and goals), all interleaved in the same
/// rounds: one set of seta samples, rows per baseline.
pub(crate) fn compare_rr_and_stream_with(
    args: &Args,
    seta: &Traffic,
    bases: &[(&Traffic, &'static str, [&str; 3])],
    what: &str,
) -> Result<Vec<Row>> {
    // warm-up
    seta.rr(1)?;
    for (b, ..) in bases {
        b.rr(1)?;
    }
    let (mut s_rtt, mut s_rate, mut s_bw) = (vec![], vec![], vec![]);
    let mut b_rtt = vec![vec![]; bases.len()];
    let mut b_rate = b_rtt.clone();
    let mut b_bw = b_rtt.clone();
    for round in 1..=args.rounds {
        eprintln!("    round {round}/{}", args.rounds);
        let (a, b) = seta.rr(args.seconds)?;
        s_rtt.push(a);
        s_rate.push(b);
        for (i, (base, ..)) in bases.iter().enumerate() {
            let (a, b) = base.rr(args.seconds)?;
            b_rtt[i].push(a);
            b_rate[i].push(b);
        }
        s_bw.push(seta.stream(args.seconds)?);
        for (i, (base, ..)) in bases.iter().enumerate() {
            b_bw[i].push(base.stream(args.seconds)?);
        }
    }
    let mut rows = vec![];
    for (i, (_, base_name, goals)) in bases.iter().enumerate() {
        let row = |name: String, unit, s: &[f64], b: &[f64], higher_is_better, goal: &str| Row {
            name,
            unit,
            seta: summarize(s),
            base_name,
            base: summarize(b),
            higher_is_better,
            goal: goal.into(),
        };
        rows.extend([
            row(
                format!("TCP RR rate, {what} (sockperf, 16 B)"),
                "trans/s",
                &s_rate,
                &b_rate[i],
                true,
                goals[0],
            ),
            row(format!("TCP RR p50 RTT, {what}"), "µs", &s_rtt, &b_rtt[i], false, goals[1]),
            row(format!("TCP stream, {what} (iperf3)"), "Gbit/s", &s_bw, &b_bw[i], true, goals[2]),
        ]);
    }
    Ok(rows)
}

/// [`compare_rr_and_stream`] of a seta pod pair and a baseline pair, each
/// straight to its server's address.
pub(crate) fn rr_and_stream_rows(
    args: &Args,
    seta: (&str, &str, Ipv4Addr),
    base: (&str, &str, Ipv4Addr),
    what: &str,
    base_name: &'static str,
    goals: [&str; 3],
) -> Result<Vec<Row>> {
    compare_rr_and_stream(
        args,
        &Traffic::direct(seta.0, seta.1, seta.2),
        &Traffic::direct(base.0, base.1, base.2),
        what,
        base_name,
        goals,
    )
}
