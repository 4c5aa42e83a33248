//! Section 5: policy on the packet path: seta vs iptables-nft, LPM lookups.
use crate::*;
use seta_lab::wait::RunWithin;

pub(crate) fn ip_of(i: u32, base: [u8; 2]) -> Ipv4Addr {
    Ipv4Addr::new(base[0], base[1], (i >> 8) as u8, i as u8)
}

/// web's ingress: N-1 rules each allowing one outside /32 on TCP 80, and the
/// last allowing app=client on the sockperf port. 10k CIDR identities exist
/// (a CCNP selecting nobody), so the ipcache holds 10k+ prefixes.
pub(crate) fn web_policy(n: u32) -> String {
    let mut y =
        String::from("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web-ingress, namespace: default}\nspecs:\n");
    for i in 1..n {
        y.push_str(&format!("- endpointSelector: {{matchLabels: {{app: web}}}}\n  ingress: [{{fromCIDR: [{}/32], toPorts: [{{ports: [{{port: \"80\", protocol: TCP}}]}}]}}]\n", ip_of(i, [198, 19])));
    }
    y.push_str("- endpointSelector: {matchLabels: {app: web}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: \"11111\", protocol: TCP}]}]}]\n");
    y
}

pub(crate) fn identities_policy() -> String {
    let cidrs: Vec<String> = (1..=10_000u32).map(|i| format!("{}/32", ip_of(i, [198, 18]))).collect();
    format!("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {{name: ten-k-identities}}\nspec:\n  endpointSelector: {{matchLabels: {{app: nobody}}}}\n  egress: [{{toCIDR: [{}]}}]\n", cidrs.join(", "))
}

pub(crate) fn iptables_rules(n: u32, client: Ipv4Addr, server: Ipv4Addr) -> String {
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

pub(crate) async fn bench_policy_path(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
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
            .output_with_input_within(&std::fs::read(&rules)?, Duration::from_secs(120))?
            .status;
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
pub(crate) fn bench_policy_lpm(args: &Args) -> Result<Vec<Row>> {
    use seta_abi::RemoteEndpointInfo;
    use seta_core::policy::resolve::Key;
    use seta_datapath::maps::{IpcacheMap, PolicyEntries, PolicyMap, PolicyOuter};
    use seta_datapath::testpkt::tcp_packet;
    use seta_datapath::Datapath;
    let node = format!("{PREFIX}-n9");
    let dp = Datapath::new(seta_core::names::pin_dir(Path::new("/sys/fs/bpf"), &node, seta_abi::ABI_VERSION))?;
    let r = (|| -> Result<Vec<Row>> {
        let _host = dp.load_host_object()?;
        let (a, b) = (Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 3));
        let mut lxc_a = sender_and_peer(&dp, a, b, 300)?;
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

/// Endpoints 1 (at `a`, the sender: a test run's packet comes in on
/// loopback, ifindex 1) and 2 (at `b`, identity `sec_b`) in a bench pin dir,
/// and the endpoint program to run their packets through.
pub(crate) fn sender_and_peer(dp: &seta_datapath::Datapath, a: Ipv4Addr, b: Ipv4Addr, sec_b: u32) -> Result<aya::Ebpf> {
    use seta_abi::EndpointInfo;
    let lxc = dp.load_lxc_object()?;
    let mut eps = seta_datapath::maps::EndpointMap::open(dp.pin_dir())?;
    for (ip, ifindex, id, sec) in [(a, 1, 1u16, 256), (b, 99, 2, sec_b)] {
        let n = id as u8;
        eps.upsert(
            ip,
            &EndpointInfo {
                ifindex,
                lxc_id: id,
                mac: [2, 0, 0, 0, 0, n],
                node_mac: [2, 0, 0, 0, 1, n],
                sec_id: sec,
                ..Default::default()
            },
        )?;
    }
    Ok(lxc)
}
