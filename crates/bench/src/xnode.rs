//! Section 7: cross-node traffic per routing mode, and propagation.
use crate::*;

/// Baseline for two nodes: client and server namespaces behind two routing
/// "node" namespaces joined by an underlay bridge, without BPF. With `vxlan`
/// the nodes are joined by plain (static, non-flow-based) VXLAN devices on
/// UDP 8472 and the pods get MTU 1450 (flannel-style); otherwise the nodes
/// route each other's pod subnet via the underlay (native routing).
pub(crate) fn two_node_baseline(vxlan: bool) -> Result<(String, String, Ipv4Addr)> {
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

pub(crate) fn p_summary(v: &[f64], p: f64) -> Summary {
    Summary {
        median: percentile(v, p),
        iqr: 0.0,
        cv: 0.0,
    }
}

pub(crate) async fn bench_xnode(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for mode in ["tunnel", "native"] {
        eprintln!("==> cross-node pod<->pod, {mode} mode: seta lab (2 nodes, etcd) vs the same topology without BPF");
        let _ = Lab::down(PREFIX);
        let opts = seta_lab::LabOptions {
            etcd: true,
            routing: Some(mode.parse().map_err(anyhow::Error::msg)?),
            ..Default::default()
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
pub(crate) async fn propagation(args: &Args, lab: &mut Lab) -> Result<Vec<Row>> {
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
