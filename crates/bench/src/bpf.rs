//! 3. from-container cost per packet (BPF_PROG_TEST_RUN) vs an empty program.
use crate::*;

pub(crate) fn bench_bpf(args: &Args) -> Result<Vec<Row>> {
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
        let mut lxc = sender_and_peer(&dp, a, b, 256)?;
        let mut eps = EndpointMap::open(dp.pin_dir())?;
        eps.upsert(
            router,
            &EndpointInfo {
                flags: ENDPOINT_F_HOST,
                ..Default::default()
            },
        )?;
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
