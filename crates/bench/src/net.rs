//! Section 1: pod↔pod on one node: seta vs routed veth and the direct-veth floor.
use crate::*;

pub(crate) async fn bench_net(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
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
