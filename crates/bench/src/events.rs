//! Section 11: the event pipeline, end to end on a lab node: drop events made by the
//! datapath itself (a packet from an address no endpoint owns, run through
//! `from_container` with BPF_PROG_TEST_RUN against the agent's own pinned
//! maps, one drop event per run) until they are flows in the agent's
//! observer (`ServerStatus.seen_flows`). Offered as fast as one CPU makes
//! them: the rate into the flow buffer next to the rate offered, as the
//! issue names it (no export file, Cilium's default) and with every flow
//! also written to the export file (the lab's default). Offered at
//! 100k events/s for 10 s: delivered next to offered, with the ring
//! buffer's lost count, which must make up the difference exactly. And
//! what observability costs traffic: connect+request+close and TCP RR
//! between two pods with the datapath's events on (Cilium's defaults, the
//! agent turning them into flows and metrics) and off
//! (`--bpf-events-{drop,policy-verdict,trace}-enabled=false`, switched in the
//! datapath's option bits between interleaved rounds); once as the issue
//! names it (no export file, as Cilium's default) and once with every flow
//! also written to the export file, as the lab's agents do.
use crate::*;
use seta_hubble::observer::ServerStatusRequest;

const PER_RUN: u32 = 1;

/// Drop events made by a lab node's own datapath: `from_container`, loaded
/// against the agent's pinned maps (this program is ours), run with
/// BPF_PROG_TEST_RUN on a UDP packet from `src`, an address no endpoint owns.
pub(crate) struct DropMaker {
    lxc: aya::Ebpf,
    pkt: Vec<u8>,
}

impl DropMaker {
    pub(crate) fn on(node: &str, src: Ipv4Addr) -> Result<Self> {
        let pin = seta_core::names::pin_dir(Path::new("/sys/fs/bpf"), node, seta_abi::ABI_VERSION);
        Ok(Self {
            lxc: seta_datapath::Datapath::new(&pin)?.load_lxc_object()?,
            pkt: seta_datapath::testpkt::udp_packet([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 0, 1], src, Ipv4Addr::new(10, 250, 0, 2), 64),
        })
    }

    /// `repeat` drops (one event each).
    pub(crate) fn run(&mut self, repeat: u32) -> Result<()> {
        let p: &mut SchedClassifier = self.lxc.program_mut("from_container").context("from_container")?.try_into()?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(&self.pkt);
        opts.repeat = repeat;
        anyhow::ensure!(p.test_run(opts)?.return_value == 2, "the packet was not dropped");
        Ok(())
    }
}

type Observer = seta_hubble::observer::observer_client::ObserverClient<tonic::transport::Channel>;

async fn seen(c: &mut Observer) -> Result<u64> {
    Ok(c.server_status(ServerStatusRequest {}).await?.into_inner().seen_flows)
}

/// Events the datapath could not put in the ring buffer (all CPUs), from a
/// node's pins.
fn lost(pin: &Path) -> Result<u64> {
    Ok(seta_datapath::maps::EventReader::open(pin)?.lost_per_cpu().iter().sum())
}

/// Seen flows once they stop growing (the observer has caught up).
async fn settled(c: &mut Observer) -> Result<u64> {
    let mut last = seen(c).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = seen(c).await?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
}

pub(crate) async fn bench_events(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
    eprintln!("==> the event pipeline: datapath drop events → the agent's flow buffer and export file (1 node)");
    let name = format!("{PREFIX}e");
    let _ = Lab::down(&name);
    let lab = Lab::up_with(&name, 1, 2, "10.207.0.0/16".parse()?, bin_dir, &Default::default(), &|_| {}).await?;
    let r = async {
        let (mut maker, mut c, pin) = pipeline_ends(&lab).await?;
        let (x_into, x_offered) = full_offer(args, &mut maker, &pin, &mut c).await?;

        // 100k events/s for 10 s: 1000 runs every 10 ms
        let (s0, l0) = (settled(&mut c).await?, lost(&pin)?);
        let t = Instant::now();
        let mut n = 0u64;
        for tick in 1..=1000u32 {
            maker.run(1000)?;
            n += 1000 * PER_RUN as u64;
            let next = Duration::from_millis(10 * tick as u64);
            if let Some(wait) = next.checked_sub(t.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let delivered = settled(&mut c).await? - s0;
        let l = lost(&pin)? - l0;
        eprintln!(
            "    100k/s: offered {n} in {secs:.1} s, {delivered} flows, {l} counted lost ({} unaccounted)",
            n as i64 - delivered as i64 - l as i64
        );
        // observability on and off, interleaved, with the export file
        let [c_on, c_off, r_on, r_off] = on_off(args, &lab)?;
        let one = |v: f64| Summary {
            median: v,
            iqr: 0.0,
            cv: 0.0,
        };
        Ok::<_, anyhow::Error>(vec![
            overhead(
                "connect + request + close pod→pod, observability on (medium aggregation, metrics) and the export file",
                "conn/s",
                &c_on,
                &c_off,
                "",
            ),
            overhead(
                "TCP RR pod→pod (sockperf, 16 B), observability on and the export file",
                "trans/s",
                &r_on,
                &r_off,
                "",
            ),
            pipeline_row(
                "event pipeline: drop events into the flow buffer and the export file, offered at full speed",
                &x_into,
                &x_offered,
                "",
            ),
            Row {
                name: format!("event pipeline: delivered of {n} offered at 100k/s for 10 s ({l} counted lost)"),
                unit: "events",
                seta: one(delivered as f64),
                base_name: "offered",
                base: one(n as f64),
                higher_is_better: true,
                goal: "0 lost".into(),
            },
        ])
    }
    .await;
    let _ = Lab::down(&name);
    let mut rows = r?;
    // the configuration (Cilium's default): events, medium
    // aggregation and metrics, no export file
    eprintln!("==> the event pipeline and observability overhead without the export file (1 node)");
    let opts = seta_lab::LabOptions {
        agent_args: vec!["--hubble-export-file-path".into(), "".into()],
        ..Default::default()
    };
    let lab = Lab::up_with(&name, 1, 2, "10.207.0.0/16".parse()?, bin_dir, &opts, &|_| {}).await?;
    let r = async {
        let (mut maker, mut c, pin) = pipeline_ends(&lab).await?;
        let offer = full_offer(args, &mut maker, &pin, &mut c).await?;
        Ok::<_, anyhow::Error>((offer, on_off(args, &lab)?))
    }
    .await;
    let _ = Lab::down(&name);
    let ((into, offered), [c_on, c_off, r_on, r_off]) = r?;
    rows.insert(
        0,
        pipeline_row(
            "event pipeline: drop events into the flow buffer, offered at full speed",
            &into,
            &offered,
            "≥ 1M events/s",
        ),
    );
    rows.insert(
        1,
        overhead(
            "connect + request + close pod→pod, observability on (medium aggregation, metrics)",
            "conn/s",
            &c_on,
            &c_off,
            "≥ 0.95×",
        ),
    );
    rows.insert(
        2,
        overhead(
            "TCP RR pod→pod (sockperf, 16 B), observability on",
            "trans/s",
            &r_on,
            &r_off,
            "≥ 0.95×",
        ),
    );
    Ok(rows)
}

/// The two ends of a lab node's event pipeline: drop events made by its
/// datapath, and its observer's client; after a check that one run makes
/// one flow. And the node's pin directory.
async fn pipeline_ends(lab: &Lab) -> Result<(DropMaker, Observer, PathBuf)> {
    let node = lab.nodes[0].clone();
    let pin = seta_core::names::pin_dir(Path::new("/sys/fs/bpf"), &node.name, seta_abi::ABI_VERSION);
    let mut maker = DropMaker::on(&node.name, Ipv4Addr::new(10, 250, 0, 1))?;
    let mut c = seta_hubble::connect(&format!("unix://{}", node.socket.with_file_name("hubble.sock").display()))
        .await
        .map_err(anyhow::Error::msg)?;
    // one drop event per run (retried: the new pods' own first packets,
    // IPv6 router solicitations the datapath drops, come in bursts)
    let mut d = 0;
    for _ in 0..10 {
        let s0 = settled(&mut c).await?;
        maker.run(1)?;
        d = settled(&mut c).await? - s0;
        if d == PER_RUN as u64 {
            break;
        }
    }
    anyhow::ensure!(d == PER_RUN as u64, "one run, one flow: {d} flows");
    Ok((maker, c, pin))
}

/// Drop events offered as fast as one CPU makes them (batches of 10k runs
/// for the sample's seconds), per round: [rate into the flow buffer], [rate offered].
async fn full_offer(args: &Args, maker: &mut DropMaker, pin: &Path, c: &mut Observer) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut into, mut offered) = (vec![], vec![]);
    for round in 1..=args.rounds {
        eprintln!("    round {round}/{}", args.rounds);
        let (s0, l0) = (settled(c).await?, lost(pin)?);
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < Duration::from_secs(args.seconds as u64) {
            maker.run(10_000)?;
            n += 10_000 * PER_RUN as u64;
        }
        let secs = t.elapsed().as_secs_f64();
        let delivered = settled(c).await? - s0;
        let l = lost(pin)? - l0;
        eprintln!("    offered {n} in {secs:.2} s: {delivered} flows, {l} counted lost");
        into.push(delivered as f64 / secs);
        offered.push(n as f64 / secs);
    }
    Ok((into, offered))
}

fn pipeline_row(name: &str, into: &[f64], offered: &[f64], goal: &str) -> Row {
    Row {
        name: name.into(),
        unit: "events/s",
        seta: summarize(into),
        base_name: "events offered by the datapath",
        base: summarize(offered),
        higher_is_better: true,
        goal: goal.into(),
    }
}

/// A row of what observability costs: events on next to events off.
fn overhead(name: &str, unit: &'static str, on: &[f64], off: &[f64], goal: &str) -> Row {
    Row {
        name: name.into(),
        unit,
        seta: summarize(on),
        base_name: "datapath events off",
        base: summarize(off),
        higher_is_better: true,
        goal: goal.into(),
    }
}

/// Connections per second and TCP RR between the lab's two pods (one node)
/// with the datapath's events on (Cilium's defaults) and off, interleaved:
/// the option bits switched between rounds. [conn on, conn off, RR on, RR off].
fn on_off(args: &Args, lab: &Lab) -> Result<[Vec<f64>; 4]> {
    let pin = seta_core::names::pin_dir(Path::new("/sys/fs/bpf"), &lab.nodes[0].name, seta_abi::ABI_VERSION);
    let (p1, p2) = (lab.pod("pod1")?.clone(), lab.pod("pod2")?.clone());
    let exe = std::env::current_exe()?.to_string_lossy().into_owned();
    let mut srv = spawn_server(&p2.netns, &[&exe, "__conn-server", "0.0.0.0:8080"])?;
    tune_client(&p1.netns)?;
    let dst = format!("{}:8080", p2.ip);
    let off = seta_abi::OPT_NO_DROP_EVENTS | seta_abi::OPT_NO_VERDICT_EVENTS | seta_abi::OPT_NO_TRACE_EVENTS;
    let set = |v: u32| seta_datapath::maps::set_config(&pin, seta_abi::CONFIG_DATAPATH_OPTS, v);
    let measured = (|| -> Result<_> {
        conn_rate(&p1.netns, &dst, 1)?;
        let (mut c_on, mut c_off, mut r_on, mut r_off) = (vec![], vec![], vec![], vec![]);
        for round in 1..=args.rounds {
            eprintln!("    observability on/off, round {round}/{}", args.rounds);
            set(0)?;
            c_on.push(conn_rate(&p1.netns, &dst, args.seconds)?);
            r_on.push(sockperf_rr(&p1.netns, &p2.netns, p2.ip, 11111, args.seconds)?.1);
            set(off)?;
            c_off.push(conn_rate(&p1.netns, &dst, args.seconds)?);
            r_off.push(sockperf_rr(&p1.netns, &p2.netns, p2.ip, 11111, args.seconds)?.1);
        }
        Ok([c_on, c_off, r_on, r_off])
    })();
    let _ = set(0);
    let _ = srv.kill();
    let _ = srv.wait();
    measured
}
