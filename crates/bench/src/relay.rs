//! Section 14: Hubble Relay: how long a drop takes to reach a client following the
//! relay (`seta observe --follow --server <relay>`), next to the same drop
//! reaching a client following the node's own observer, in the same run. A
//! 2-node lab with the relay in the underlay; node 1's datapath makes one
//! drop event at a time (`from_container` run with BPF_PROG_TEST_RUN against
//! the agent's own pinned maps, a packet from an address no endpoint owns),
//! every 10 ms, and each flow's arrival is timed against the moment its drop
//! was made. Twice: node 2 quiet (the relay can only wait out its sort
//! buffer's drain timeout), and node 2 busy too, dropping as often (the
//! relay lets a flow go once every node has sent one as new).
use crate::*;
use seta_hubble::observer::{get_flows_response::ResponseTypes, GetFlowsRequest};
use std::sync::{Arc, Mutex};

/// The fake drops' source addresses (no endpoint owns them): node 1's
/// (timed) and node 2's.
const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
const SOURCE2: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 3);
/// Drops per round.
const PER_ROUND: usize = 200;

/// Follow all of `target`'s flows (as `seta observe --follow`): the arrival
/// of each from SOURCE is pushed.
async fn follow(target: String, arrivals: Arc<Mutex<Vec<Instant>>>) -> Result<tokio::task::JoinHandle<()>> {
    let mut c = seta_hubble::connect(&target).await.map_err(anyhow::Error::msg)?;
    let req = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    let mut s = c.get_flows(req).await?.into_inner();
    let source = SOURCE.to_string();
    Ok(tokio::spawn(async move {
        while let Ok(Some(r)) = s.message().await {
            if let Some(ResponseTypes::Flow(f)) = r.response_types {
                if f.ip.is_some_and(|ip| ip.source == source) {
                    arrivals.lock().unwrap().push(Instant::now());
                }
            }
        }
    }))
}

/// Milliseconds from each drop to its flow's arrival (in order: one flow per
/// drop), or an error when some did not arrive.
fn latencies(made: &[Instant], arrived: &[Instant], what: &str) -> Result<Vec<f64>> {
    anyhow::ensure!(
        arrived.len() == made.len(),
        "{what}: {} flows for {} drops",
        arrived.len(),
        made.len()
    );
    Ok(made
        .iter()
        .zip(arrived)
        .map(|(m, a)| a.saturating_duration_since(*m).as_secs_f64() * 1000.0)
        .collect())
}

pub(crate) async fn bench_relay(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
    eprintln!("==> Hubble Relay: a drop until a following client has it, via the relay vs the node (2 nodes)");
    let name = format!("{PREFIX}r");
    let _ = Lab::down(&name);
    let opts = seta_lab::LabOptions {
        etcd: true,
        relay: true,
        ..Default::default()
    };
    let lab = Lab::up_with(&name, 2, 0, "10.208.0.0/16".parse()?, bin_dir, &opts, &|_| {}).await?;
    let r = async {
        let node = lab.nodes[0].clone();
        // a drop maker on each node, against that agent's own maps
        let mut one = DropMaker::on(&node.name, SOURCE)?;
        let mut two = DropMaker::on(&lab.nodes[1].name, SOURCE2)?;
        let node_target = format!("unix://{}", node.socket.with_file_name("hubble.sock").display());
        let relay_target = format!("unix://{}", seta_lab::relay::relay_socket(&name).display());
        let (via_node, via_relay) = (Arc::new(Mutex::new(vec![])), Arc::new(Mutex::new(vec![])));
        let tasks = [
            follow(node_target, via_node.clone()).await?,
            follow(relay_target, via_relay.clone()).await?,
        ];
        // the relay has found both nodes once a drop comes through it
        let deadline = Instant::now() + Duration::from_secs(20);
        while via_relay.lock().unwrap().is_empty() {
            anyhow::ensure!(Instant::now() < deadline, "no flow through the relay in 20 s");
            one.run(1)?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut rows = vec![];
        for busy in [false, true] {
            let (mut node_p50, mut node_p99, mut relay_p50, mut relay_p99) = (vec![], vec![], vec![], vec![]);
            for round in 1..=args.rounds {
                eprintln!("    node 2 {}, round {round}/{}", if busy { "busy" } else { "quiet" }, args.rounds);
                tokio::time::sleep(Duration::from_secs(1)).await;
                via_node.lock().unwrap().clear();
                via_relay.lock().unwrap().clear();
                let mut made = Vec::with_capacity(PER_ROUND);
                for _ in 0..PER_ROUND {
                    made.push(Instant::now());
                    one.run(1)?;
                    if busy {
                        two.run(1)?;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // every flow has arrived (or never will)
                let deadline = Instant::now() + Duration::from_secs(10);
                while (via_node.lock().unwrap().len() < PER_ROUND || via_relay.lock().unwrap().len() < PER_ROUND)
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let n = latencies(&made, &via_node.lock().unwrap(), "the node")?;
                let r = latencies(&made, &via_relay.lock().unwrap(), "the relay")?;
                eprintln!(
                    "    node p50 {:.2} ms p99 {:.2} ms; relay p50 {:.2} ms p99 {:.2} ms",
                    percentile(&n, 50.0),
                    percentile(&n, 99.0),
                    percentile(&r, 50.0),
                    percentile(&r, 99.0)
                );
                node_p50.push(percentile(&n, 50.0));
                node_p99.push(percentile(&n, 99.0));
                relay_p50.push(percentile(&r, 50.0));
                relay_p99.push(percentile(&r, 99.0));
            }
            let other = if busy { "the other node as busy" } else { "the other node quiet" };
            let row = |what: &str, seta: &[f64], base: &[f64]| Row {
                name: format!("drop → a client following the relay (seta observe --follow), {other}, {what}"),
                unit: "ms",
                seta: summarize(seta),
                base_name: "the same client following the node",
                base: summarize(base),
                higher_is_better: false,
                goal: String::new(),
            };
            rows.push(row("p50", &relay_p50, &node_p50));
            rows.push(row("p99", &relay_p99, &node_p99));
        }
        for t in tasks {
            t.abort();
        }
        Ok(rows)
    }
    .await;
    let _ = Lab::down(&name);
    r
}
