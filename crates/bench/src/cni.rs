//! Section 2: CNI ADD latency (1 and 50 in parallel) vs bridge+host-local, and the agent's memory.
use crate::*;
use seta_lab::wait::RunWithin;

pub(crate) fn timed_add(lab: &Lab, node: &str, cid: &str, ns: &str) -> Result<f64> {
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

pub(crate) fn seta_del(lab: &Lab, node: &str, cid: &str, ns: &str) -> Result<()> {
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

pub(crate) fn bridge_conf() -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.0.0", "name": "benchbr", "type": "bridge", "bridge": "sbbr0", "isGateway": true,
        "ipam": {"type": "host-local", "subnet": "10.254.0.0/16", "dataDir": format!("/run/{PREFIX}-ipam")}
    })
}

pub(crate) fn bridge_cmd(node_ns: &str, cmd: &str, cid: &str, ns: &str) -> Result<f64> {
    let mut c = Command::new("/usr/lib/cni/bridge");
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", format!("/run/netns/{ns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni");
    in_netns(&mut c, &Path::new("/run/netns").join(node_ns))?;
    let input = bridge_conf().to_string();
    let t = Instant::now();
    let out = c.output_with_input_within(input.as_bytes(), Duration::from_secs(60))?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        bail!("bridge {cmd} {cid}: {}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(ms)
}

pub(crate) async fn bench_cni(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
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
pub(crate) fn agent_mem_mb(pid: u32, field: &str) -> Result<f64> {
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
pub(crate) async fn bench_agent_memory(bin_dir: &Path) -> Result<Vec<Row>> {
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
