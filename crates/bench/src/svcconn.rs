//! Section 10: new connections through a ClusterIP as the service count grows: a
//! client connects, sends 16 bytes, reads them back and closes, again and
//! again, for 1, 1k, 10k and 65,535 services. seta (1 node, pod → ClusterIP →
//! pod, per-packet LB) next to the same service set on a routed veth path as
//! kube-proxy-shaped iptables-nft rules (a linear KUBE-SERVICES chain, the
//! measured service in its middle) and as one nft map lookup; and seta at
//! the most next to seta at 1. The client runs on CPU 0 and the server on
//! CPU 1; at 10k services seta and iptables are also measured with both on
//! CPU 1, where a round trip wakes no other CPU (on this VM a cross-CPU
//! wakeup is an IPI and a VM exit, most of an unpinned connection's time).
//!
//! 65,535 and not 100k: a frontend's rev-NAT index is 16 bits in the map
//! layouts (Cilium's `lb4_service`, `lb4_reverse_nat`, CT), so a node holds
//! at most 65,535 frontends, as Cilium does; the agent refuses more.
//!
//! The client and the server are this binary (`__conn-client`,
//! `__conn-server`), run in the namespaces with `ip netns exec`.
use crate::*;
use seta_lab::wait::RunWithin;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

const SIZES: [usize; 4] = [1, 1_000, 10_000, 65_535];
/// The measured service's address (outside the generated ones, 10.96/15).
const VIP: &str = "10.95.0.50";
const PORT: u16 = 80;
const TARGET: u16 = 8080;

/// `seta-bench __conn-server ADDR` and `seta-bench __conn-client ADDR SECS`:
/// the loops this section runs in namespaces; `None` when not asked for.
pub(crate) fn hidden_mode() -> Option<Result<()>> {
    let a: Vec<String> = std::env::args().collect();
    match (a.get(1).map(String::as_str), a.get(2), a.get(3)) {
        (Some("__conn-server"), Some(bind), _) => Some(conn_server(bind)),
        (Some("__conn-client"), Some(dst), Some(secs)) => Some(conn_client(dst, secs)),
        _ => None,
    }
}

fn conn_server(bind: &str) -> Result<()> {
    let l = TcpListener::bind(bind)?;
    let mut buf = [0u8; 16];
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = s.set_nodelay(true);
        if s.read_exact(&mut buf).is_ok() {
            let _ = s.write_all(&buf);
            // until the client closes (it closes first: TIME_WAIT stays there)
            let _ = s.read(&mut buf);
        }
    }
    Ok(())
}

/// Prints "completed failed seconds".
fn conn_client(dst: &str, secs: &str) -> Result<()> {
    let dst: SocketAddr = dst.parse()?;
    let t = Instant::now();
    let end = t + Duration::from_secs_f64(secs.parse()?);
    let (mut done, mut failed) = (0u64, 0u64);
    let mut buf = [7u8; 16];
    while Instant::now() < end {
        let ok = TcpStream::connect_timeout(&dst, Duration::from_secs(1)).and_then(|mut s| {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            s.write_all(&buf)?;
            s.read_exact(&mut buf)
        });
        match ok {
            Ok(()) => done += 1,
            Err(_) => failed += 1,
        }
    }
    println!("{done} {failed} {}", t.elapsed().as_secs_f64());
    Ok(())
}

/// Connections per second from `client` to `dst` for `secs` seconds; a
/// sample with more than 0.1 % failed connections is an error.
pub(crate) fn conn_rate(client: &str, dst: &str, secs: u32) -> Result<f64> {
    conn_rate_on(client, dst, secs, 0)
}

/// [`conn_rate`] with the client on CPU `cpu` (the servers are on CPU 1).
fn conn_rate_on(client: &str, dst: &str, secs: u32, cpu: u32) -> Result<f64> {
    let exe = std::env::current_exe()?;
    let out = in_ns(client, cpu, &[&exe.to_string_lossy(), "__conn-client", dst, &secs.to_string()])
        .output_within(Duration::from_secs(secs as u64 + 30))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let [done, failed, elapsed] = v[..] else {
        bail!("connect client: {text} {}", String::from_utf8_lossy(&out.stderr));
    };
    anyhow::ensure!(
        failed <= done / 1000.0,
        "{failed} of {} connections to {dst} from {client} failed",
        done + failed
    );
    Ok(done / elapsed)
}

/// A client namespace ready for many short connections: the whole port range,
/// and TIME_WAIT ports reused (the client closes first).
pub(crate) fn tune_client(ns: &str) -> Result<()> {
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        "net.ipv4.tcp_tw_reuse=1",
        "net.ipv4.ip_local_port_range=1024 65535",
    ])?;
    Ok(())
}

/// The generated services `[first, first+n)`: ClusterIP 10.96/15 port 80, one
/// backend each (10.128/10, nothing answers: they are only looked past).
fn fake_addr(s: usize, base: usize) -> String {
    format!("10.{}.{}.{}", base + s / 65536, (s / 256) % 256, s % 256)
}

fn seta_yaml(first: usize, n: usize) -> String {
    let mut y = String::new();
    for s in first..first + n {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}, namespace: default}}\nspec:\n  clusterIP: {}\n  ports: [{{name: p, port: {PORT}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc-{s}, namespace: default, labels: {{kubernetes.io/service-name: svc-{s}}}}}\naddressType: IPv4\nports: [{{name: p, port: {TARGET}}}]\nendpoints:\n- {{addresses: [{}], conditions: {{ready: true}}}}\n",
            fake_addr(s, 96),
            fake_addr(s, 128)
        ));
    }
    y
}

fn measured_yaml(backend: Ipv4Addr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: measured, namespace: default}}\nspec:\n  clusterIP: {VIP}\n  ports: [{{name: p, port: {PORT}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: measured, namespace: default, labels: {{kubernetes.io/service-name: measured}}}}\naddressType: IPv4\nports: [{{name: p, port: {TARGET}}}]\nendpoints:\n- {{addresses: [{backend}], conditions: {{ready: true}}}}\n"
    )
}

/// kube-proxy's iptables shape for `n` services (`n - 1` generated and the
/// measured one in the middle of KUBE-SERVICES), as iptables-restore input.
fn iptables_rules(n: usize, backend: Ipv4Addr) -> String {
    let mut chains = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-POSTROUTING - [0:0]\n");
    let mut rules = String::from(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n\
         -A KUBE-POSTROUTING -j MASQUERADE --random-fully\n",
    );
    let mut one = |id: String, name: String, vip: String, be: String| {
        chains.push_str(&format!(":KUBE-SVC-{id} - [0:0]\n:KUBE-SEP-{id} - [0:0]\n"));
        rules.push_str(&format!(
            "-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment \"default/{name}:p cluster IP\" -m tcp --dport {PORT} -j KUBE-SVC-{id}\n\
             -A KUBE-SVC-{id} ! -s 10.0.0.0/8 -d {vip}/32 -p tcp -m tcp --dport {PORT} -j KUBE-MARK-MASQ\n\
             -A KUBE-SVC-{id} -m comment --comment \"-> {be}:{TARGET}\" -j KUBE-SEP-{id}\n\
             -A KUBE-SEP-{id} -s {be}/32 -j KUBE-MARK-MASQ\n\
             -A KUBE-SEP-{id} -p tcp -m tcp -j DNAT --to-destination {be}:{TARGET}\n"
        ));
    };
    for s in 0..n - 1 {
        if s == (n - 1) / 2 {
            one("MEASURED".into(), "measured".into(), VIP.into(), backend.to_string());
        }
        one(format!("{s:08X}"), format!("svc-{s}"), fake_addr(s, 96), fake_addr(s, 128));
    }
    if n == 1 {
        one("MEASURED".into(), "measured".into(), VIP.into(), backend.to_string());
    }
    chains + &rules + "COMMIT\n"
}

/// The same services as one nft map: {address . port} → {backend . port}.
fn nft_map_rules(n: usize, backend: Ipv4Addr) -> String {
    let mut elems = vec![format!("{VIP} . {PORT} : {backend} . {TARGET}")];
    elems.extend((0..n - 1).map(|s| format!("{} . {PORT} : {} . {TARGET}", fake_addr(s, 96), fake_addr(s, 128))));
    format!(
        "table ip sbench_svc {{\n  map svc {{\n    type ipv4_addr . inet_service : ipv4_addr . inet_service\n    elements = {{ {} }}\n  }}\n  chain pre {{\n    type nat hook prerouting priority dstnat; policy accept;\n    dnat ip to ip daddr . tcp dport map @svc\n  }}\n}}\n",
        elems.join(",\n")
    )
}

/// Load `text` with `tool` (iptables-nft-restore or nft -f) in `ns`.
fn load_rules(ns: &str, tool: &[&str], text: &str) -> Result<()> {
    let f = std::env::temp_dir().join(format!("{PREFIX}-rules"));
    std::fs::write(&f, text)?;
    let mut argv = vec!["ip", "netns", "exec", ns];
    argv.extend(tool);
    let path = f.to_string_lossy().into_owned();
    argv.push(&path);
    let out = Command::new(argv[0]).args(&argv[1..]).output_within(Duration::from_secs(600));
    let _ = std::fs::remove_file(&f);
    let out = out?;
    anyhow::ensure!(
        out.status.success(),
        "{}: {}",
        tool.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn flush_rules(ns: &str) -> Result<()> {
    sh(&["ip", "netns", "exec", ns, "nft", "flush", "ruleset"])?;
    Ok(())
}

/// `rounds` samples of seta and of the baseline, interleaved, the client on
/// CPU `cpu`.
fn interleaved(args: &Args, seta: &str, base: &str, dst: &str, cpu: u32) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut s, mut b) = (vec![], vec![]);
    for round in 1..=args.rounds {
        eprintln!("    round {round}/{}", args.rounds);
        s.push(conn_rate_on(seta, dst, args.seconds, cpu)?);
        b.push(conn_rate_on(base, dst, args.seconds, cpu)?);
    }
    Ok((s, b))
}

pub(crate) async fn bench_service_connect(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
    eprintln!("==> services: connect + request + close through a ClusterIP at 1, 1k, 10k, 65,535 services vs iptables-nft (kube-proxy shape) and an nft map");
    let name = format!("{PREFIX}c");
    let _ = Lab::down(&name);
    let opts = seta_lab::LabOptions {
        agent_args: vec!["--bpf-lb-map-max".into(), "262144".into()],
        ..Default::default()
    };
    let lab = Lab::up_with(&name, 1, 2, "10.206.0.0/16".parse()?, bin_dir, &opts, &|_| {}).await?;
    let mut servers: Vec<Child> = vec![];
    let r = async {
        let (p1, p2) = (lab.pod("pod1")?.clone(), lab.pod("pod2")?.clone());
        let (rc, rs, rip, rr) = routed_veth()?;
        let exe = std::env::current_exe()?.to_string_lossy().into_owned();
        let bind = format!("0.0.0.0:{TARGET}");
        servers.push(spawn_server(&p2.netns, &[&exe, "__conn-server", &bind])?);
        servers.push(spawn_server(&rs, &[&exe, "__conn-server", &bind])?);
        tune_client(&p1.netns)?;
        tune_client(&rc)?;
        let c = seta_client::Client::new(&lab.nodes[0].socket).with_timeout(Duration::from_secs(600));
        c.service_import(measured_yaml(p2.ip)).await?;
        let dst = format!("{VIP}:{PORT}");
        // warm-up (and a check that both paths answer)
        conn_rate(&p1.netns, &dst, 1)?;
        load_rules(&rr, &["iptables-nft-restore"], &iptables_rules(1, rip))?;
        conn_rate(&rc, &dst, 1)?;

        let mut rows = vec![];
        let mut seta_at = vec![];
        let mut loaded = 1;
        for n in SIZES {
            eprintln!("    {n} services");
            let t = Instant::now();
            while loaded < n {
                let k = (n - loaded).min(5000);
                c.service_import(seta_yaml(loaded - 1, k)).await?;
                loaded += k;
            }
            flush_rules(&rr)?;
            load_rules(&rr, &["iptables-nft-restore"], &iptables_rules(n, rip))?;
            eprintln!("    loaded in {:.1} s", t.elapsed().as_secs_f64());
            let (s, ipt) = interleaved(args, &p1.netns, &rc, &dst, 0)?;
            // at 10k also with client and server on one CPU: no cross-CPU
            // wakeup (an IPI, a VM exit here) in each round trip, so the
            // figures are the connection's CPU cost with the service lookup
            let one_cpu = if n == 10_000 {
                eprintln!("    client and server on one CPU");
                Some(interleaved(args, &p1.netns, &rc, &dst, 1)?)
            } else {
                None
            };
            flush_rules(&rr)?;
            load_rules(&rr, &["nft", "-f"], &nft_map_rules(n, rip))?;
            let (s2, nft) = interleaved(args, &p1.netns, &rc, &dst, 0)?;
            let all: Vec<f64> = s.iter().chain(&s2).copied().collect();
            let row = |base_name, base: &[f64], goal: &str| Row {
                name: format!("connect + request + close via ClusterIP, {n} services"),
                unit: "conn/s",
                seta: summarize(&all),
                base_name,
                base: summarize(base),
                higher_is_better: true,
                goal: goal.into(),
            };
            rows.push(row("iptables-nft, kube-proxy rules", &ipt, if n == 10_000 { "≥ 10×" } else { "" }));
            rows.push(row("nft map", &nft, ""));
            if let Some((s1, ipt1)) = one_cpu {
                rows.push(Row {
                    name: format!("connect + request + close via ClusterIP, {n} services, client and server on one CPU"),
                    seta: summarize(&s1),
                    ..row("iptables-nft, kube-proxy rules (one CPU)", &ipt1, "≥ 10×")
                });
            }
            seta_at.push(all);
        }
        // seta at 1 service again, now: the baseline is both runs at 1, so a
        // drift of the machine over the section does not pass for a cost of
        // the service count
        eprintln!("    1 service again");
        c.service_delete(None, "default").await?;
        c.service_import(measured_yaml(p2.ip)).await?;
        conn_rate(&p1.netns, &dst, 1)?;
        let mut at_one = seta_at[0].clone();
        for _ in 0..args.rounds * 2 {
            at_one.push(conn_rate(&p1.netns, &dst, args.seconds)?);
        }
        rows.push(Row {
            name: "connect + request + close via ClusterIP, seta at 65,535 services (the most)".into(),
            unit: "conn/s",
            seta: summarize(&seta_at[3]),
            base_name: "seta at 1 service (before and after)",
            base: summarize(&at_one),
            higher_is_better: true,
            goal: "within 1.1× (≥ 0.91×)".into(),
        });
        flush_rules(&rr)?;
        Ok(rows)
    }
    .await;
    for mut s in servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    cleanup_routed();
    let _ = Lab::down(&name);
    r
}

/// The routed-veth namespaces (the bench's cleanup would remove them too).
fn cleanup_routed() {
    for ns in ["rc", "rr", "rs"] {
        let _ = sh(&["ip", "netns", "del", &format!("{PREFIX}-{ns}")]);
    }
}
