//! Section 8: services: a ClusterIP in front of a pod on another node vs that pod's
//! own address (the cost of the per-packet service translation), and a
//! NodePort from outside the cluster to a backend on another node (SNAT by
//! the NAT engine, or DSR) vs the outside host straight to the pod (routed
//! through the backend's node, no translation) and vs the same packets
//! routed through the NodePort's node (the same way, no translation).
use crate::*;

fn import(lab: &Lab, yaml: &str) -> Result<()> {
    let f = std::env::temp_dir().join(format!("{PREFIX}-svc.yaml"));
    std::fs::write(&f, yaml)?;
    let out = Command::new(seta_bin()?)
        .args(["--node", &lab.nodes[0].name, "service", "import"])
        .arg(&f)
        .output()?;
    let _ = std::fs::remove_file(&f);
    anyhow::ensure!(
        out.status.success(),
        "seta service import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn seta_bin() -> Result<PathBuf> {
    Ok(std::env::current_exe()?.parent().context("bin dir")?.join("seta"))
}

/// RR and stream through `via` / `via_stream` (seta) next to the same
/// client straight to the pod (base), interleaved.
#[allow(clippy::too_many_arguments)]
fn rr_rows(
    args: &Args,
    client: &str,
    cgroup: Option<&Path>,
    server: &str,
    pod: Ipv4Addr,
    via: (Ipv4Addr, u16),
    via_stream: (Ipv4Addr, u16),
    what: &str,
    base_name: &'static str,
    goals: [&str; 2],
) -> Result<Vec<Row>> {
    let base = Traffic {
        cgroup,
        ..Traffic::direct(client, server, pod)
    };
    let seta = Traffic {
        cgroup,
        rr: (base.rr.0, via),
        stream: (STREAM_PORT, via_stream),
        ..Traffic::direct(client, server, pod)
    };
    compare_rr_and_stream(args, &seta, &base, what, base_name, [goals[0], "", goals[1]])
}

/// The backend's stream port (iperf3), the service's port 5201 and NodePort
/// 31201 in front of it.
const STREAM_PORT: u16 = 5201;

/// Node 1's address on the underlay: where the outside host asks for the
/// NodePort.
const ENTRY: &str = "172.30.0.1";

/// The outside host to node 1's NodePorts `rr` and `stream` in front of `p2`.
fn node_port<'a>(ext: &'a str, p2: &'a seta_lab::PodState, (rr, stream): (u16, u16)) -> Result<Traffic<'a>> {
    let entry: Ipv4Addr = ENTRY.parse()?;
    Ok(Traffic {
        rr: ((p2.ip, 11111), (entry, rr)),
        stream: (STREAM_PORT, (entry, stream)),
        ..Traffic::direct(ext, &p2.netns, p2.ip)
    })
}

/// The NodePort rows' two baselines, with their names: the outside host
/// straight to the pod (routed through the pod's own node, one hop less),
/// and the same packets routed through node 1 (a host route on the outside
/// host): the NodePort's way without the service, so what is left is the
/// service's own cost.
fn routed_baselines<'a>(ext: &'a str, p2: &'a seta_lab::PodState) -> Result<[(Traffic<'a>, &'static str); 2]> {
    Ok([
        (Traffic::direct(ext, &p2.netns, p2.ip), "outside → the pod, routed"),
        (
            Traffic {
                via: Some((p2.ip, ENTRY.parse()?)),
                ..Traffic::direct(ext, &p2.netns, p2.ip)
            },
            "outside → the pod, routed through the NodePort's node",
        ),
    ])
}

/// A NodePort of node 1 (31111, 31201) in front of `p2` (on node 2) from
/// the outside host, next to the two routed baselines in the same rounds.
/// Then the download stream (the pod sends to the outside host), the
/// direction in which DSR's replies skip the NodePort's node.
fn node_port_rows(args: &Args, lab: &Lab, p2: &seta_lab::PodState, what: &str, goal: &str) -> Result<Vec<Row>> {
    let ext = lab.external.clone().context("no external host")?;
    let [(direct, d), (through, t)] = routed_baselines(&ext.netns, p2)?;
    let seta = node_port(&ext.netns, p2, (31111, 31201))?;
    let mut rows = compare_rr_and_stream_with(
        args,
        &seta,
        &[(&direct, d, [goal, "", goal]), (&through, t, [goal, "", goal])],
        what,
    )?;
    rows.extend(compare_download_with(
        args,
        &seta,
        &[(&direct, d, goal), (&through, t, goal)],
        what,
    )?);
    Ok(rows)
}

pub(crate) async fn bench_services(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
    eprintln!("==> services: ClusterIP and NodePort (2 nodes, tunnel) vs the backend's own address");
    let _ = Lab::down(PREFIX);
    let opts = seta_lab::LabOptions {
        etcd: true,
        routing: Some(seta_core::mode::RoutingMode::Tunnel),
        ..Default::default()
    };
    let mut rows = with_service_lab(bin_dir, opts, true, |lab, p1, p2| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !seta_lab::traffic::ping_ok(&p1.netns, p2.ip) {
            if Instant::now() > deadline {
                bail!("pod1 cannot reach pod2 across nodes");
            }
        }
        let mut rows = rr_rows(
            args,
            &p1.netns,
            None,
            &p2.netns,
            p2.ip,
            ("10.96.0.50".parse()?, 11111),
            ("10.96.0.50".parse()?, STREAM_PORT),
            "ClusterIP → pod on another node",
            "the pod's own address",
            ["≥ 0.97×", "≥ 0.97×"],
        )?;
        // pod2 is on node 2; the NodePort of node 1 forwards to it (SNAT)
        rows.extend(node_port_rows(
            args,
            lab,
            p2,
            "NodePort from outside → other node (SNAT, tunnel)",
            "≥ 0.95×",
        )?);
        Ok(rows)
    })
    .await?;
    rows.extend(bench_node_port_native(args, bin_dir).await?);
    rows.extend(bench_socket_lb(args, bin_dir).await?);
    Ok(rows)
}

/// The bench service (`type`: ClusterIP, or NodePort 31111 and 31201) in
/// front of `backend`:11111 (RR) and :5201 (stream).
fn bench_service(node_port: bool, backend: Ipv4Addr) -> String {
    let (kind, np) = if node_port {
        ("  type: NodePort\n", [", nodePort: 31111", ", nodePort: 31201"])
    } else {
        ("", ["", ""])
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: bench, namespace: default}}\nspec:\n{kind}  clusterIP: 10.96.0.50\n  ports: [{{name: rr, port: 11111{}}}, {{name: st, port: 5201{}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: bench-a, namespace: default, labels: {{kubernetes.io/service-name: bench}}}}\naddressType: IPv4\nports: [{{name: rr, port: 11111}}, {{name: st, port: 5201}}]\nendpoints:\n- {{addresses: [{backend}], conditions: {{ready: true}}}}\n",
        np[0], np[1]
    )
}

/// A 2-node lab with `opts` (pod1 on node 1, pod2 on node 2) and the bench
/// service in front of pod2; `measure` runs in it, then the lab goes.
async fn with_service_lab(
    bin_dir: &Path,
    opts: seta_lab::LabOptions,
    node_port: bool,
    measure: impl FnOnce(&Lab, &seta_lab::PodState, &seta_lab::PodState) -> Result<Vec<Row>>,
) -> Result<Vec<Row>> {
    let lab = Lab::up_with(PREFIX, 2, 1, "10.203.0.0/16".parse()?, bin_dir, &opts, &|_| {}).await?;
    let r = (|| {
        let (p1, p2) = (lab.pod("pod1")?.clone(), lab.pod("pod2")?.clone());
        import(&lab, &bench_service(node_port, p2.ip))?;
        // the service reached every node's maps
        std::thread::sleep(Duration::from_secs(1));
        measure(&lab, &p1, &p2)
    })();
    let _ = Lab::down(PREFIX);
    r
}

/// A ClusterIP through socket-LB (the client in its node's cgroup: the
/// connect is translated once) vs the backend's own address from the same
/// client.
async fn bench_socket_lb(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
    eprintln!("==> services: ClusterIP through socket-LB (2 nodes, tunnel)");
    let opts = seta_lab::LabOptions {
        etcd: true,
        routing: Some(seta_core::mode::RoutingMode::Tunnel),
        socket_lb: true,
        ..Default::default()
    };
    with_service_lab(bin_dir, opts, false, |_, p1, p2| {
        let cg = seta_lab::cgroups::node_cgroup(&p1.node)?;
        rr_rows(
            args,
            &p1.netns,
            Some(&cg),
            &p2.netns,
            p2.ip,
            ("10.96.0.50".parse()?, 11111),
            ("10.96.0.50".parse()?, STREAM_PORT),
            "ClusterIP → pod on another node, socket-LB",
            "the pod's own address",
            ["≥ 0.97×", "≥ 0.97×"],
        )
    })
    .await
}

/// NodePort from outside to a backend on the other node with native
/// routing, SNAT (the reply comes back through the entry node) and DSR (the
/// reply leaves the backend's node straight to the client) side by side in
/// one lab: `--bpf-lb-mode-annotation`, the bench service by SNAT and a
/// second one annotated `service.cilium.io/forwarding-mode: dsr` in front of
/// the same pod, so DSR is also measured against SNAT in the same rounds.
async fn bench_node_port_native(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
    eprintln!("==> services: NodePort from outside → other node, SNAT and DSR (2 nodes, native routing)");
    let opts = seta_lab::LabOptions {
        etcd: true,
        routing: Some(seta_core::mode::RoutingMode::Native),
        agent_args: vec!["--bpf-lb-mode-annotation".into()],
        ..Default::default()
    };
    with_service_lab(bin_dir, opts, true, |lab, _, p2| {
        import(lab, &dsr_service(p2.ip))?;
        std::thread::sleep(Duration::from_secs(1));
        let mut rows = node_port_rows(args, lab, p2, "NodePort from outside → other node (SNAT, native)", "≥ 0.95×")?;
        let ext = lab.external.clone().context("no external host")?;
        let [(direct, d), (through, t)] = routed_baselines(&ext.netns, p2)?;
        let goal = "≥ 0.95×";
        let (dsr, snat) = (
            node_port(&ext.netns, p2, (31112, 31202))?,
            node_port(&ext.netns, p2, (31111, 31201))?,
        );
        let what = "NodePort from outside → other node (DSR, native)";
        let by_snat = "the same NodePort by SNAT (same lab)";
        rows.extend(compare_rr_and_stream_with(
            args,
            &dsr,
            &[
                (&snat, by_snat, ["> 1×", "", "> 1×"]),
                (&direct, d, [goal, "", goal]),
                (&through, t, [goal, "", goal]),
            ],
            what,
        )?);
        rows.extend(compare_download_with(
            args,
            &dsr,
            &[(&snat, by_snat, "> 1×"), (&direct, d, goal), (&through, t, goal)],
            what,
        )?);
        Ok(rows)
    })
    .await
}

/// The bench service's twin annotated for DSR (NodePorts 31112, 31202).
fn dsr_service(backend: Ipv4Addr) -> String {
    bench_service(true, backend)
        .replace(
            "name: bench, namespace: default}",
            "name: bench-dsr, namespace: default, annotations: {service.cilium.io/forwarding-mode: dsr}}",
        )
        .replace("name: bench-a,", "name: bench-dsr-a,")
        .replace("kubernetes.io/service-name: bench}", "kubernetes.io/service-name: bench-dsr}")
        .replace("clusterIP: 10.96.0.50", "clusterIP: 10.96.0.51")
        .replace("nodePort: 31111", "nodePort: 31112")
        .replace("nodePort: 31201", "nodePort: 31202")
}
