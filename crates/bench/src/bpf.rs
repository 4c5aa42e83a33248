//! Section 3: from-container cost per packet (BPF_PROG_TEST_RUN) vs an empty program.
use crate::*;

/// 10k ClusterIP services (10.96.x.y:80/TCP) with 10 backends each.
fn ten_thousand_services() -> seta_datapath::maps::LbState {
    use seta_abi::{Lb4Backend, Lb4Key, Lb4ReverseNat, Lb4Service};
    let mut st = seta_datapath::maps::LbState::default();
    for s in 0..10_000u32 {
        let vip = [10, 96, (s >> 8) as u8, s as u8];
        let key = |slot: u16| Lb4Key {
            address: vip,
            dport: 80u16.to_be_bytes(),
            backend_slot: slot,
            proto: 6,
            ..Default::default()
        };
        let rid = (s + 1) as u16;
        st.services.insert(
            key(0),
            Lb4Service {
                count: 10,
                rev_nat_index: rid,
                ..Default::default()
            },
        );
        st.revnat.insert(
            rid,
            Lb4ReverseNat {
                address: vip,
                port: 80u16.to_be_bytes(),
                pad: 0,
            },
        );
        for b in 0..10u32 {
            let id = s * 10 + b + 1;
            st.services.insert(
                key(b as u16 + 1),
                Lb4Service {
                    backend_id: id,
                    ..Default::default()
                },
            );
            st.backends.insert(
                id,
                Lb4Backend {
                    address: [10, 128 + (id >> 16) as u8, (id >> 8) as u8, id as u8],
                    port: 8080u16.to_be_bytes(),
                    proto: 6,
                    ..Default::default()
                },
            );
        }
    }
    st
}

pub(crate) fn bench_bpf(args: &Args) -> Result<Vec<Row>> {
    use seta_abi::{EndpointInfo, ENDPOINT_F_HOST};
    use seta_datapath::maps::EndpointMap;
    use seta_datapath::testpkt::{one_backend_services, sctp_packet, udp_packet};
    use seta_datapath::Datapath;
    eprintln!("==> from-container per-packet cost (BPF_PROG_TEST_RUN) vs an empty tc program");
    seta_datapath::sysfs::ensure_bpffs(Path::new("/sys/fs/bpf"))?;
    let node = format!("{PREFIX}-n0");
    // service maps large enough for 10k services × 10 backends (110k slots)
    let sizes = seta_datapath::MapSizes {
        lb: 262_144,
        ..Default::default()
    };
    let dp = Datapath::with_sizes(
        seta_core::names::pin_dir(Path::new("/sys/fs/bpf"), &node, seta_abi::ABI_VERSION),
        sizes,
    )?;
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
        // the same established flow with 10k services (10 backends each) in
        // the maps: every packet still makes its service lookup
        seta_datapath::maps::LbMaps::open(dp.pin_dir())?.sync(&ten_thousand_services())?;
        let mut l10k = vec![];
        run(&mut lxc, "from_container", &local)?;
        for _ in 0..args.rounds.max(5) {
            l10k.push(run(&mut lxc, "from_container", &local)?);
            l.push(run(&mut lxc, "from_container", &local)?);
        }
        l.truncate(args.rounds.max(5));
        seta_datapath::maps::LbMaps::open(dp.pin_dir())?.sync(&Default::default())?;
        let mut l0 = vec![];
        for _ in 0..args.rounds.max(5) {
            l0.push(run(&mut lxc, "from_container", &local)?);
        }
        // an SCTP ClusterIP whose targetPort differs (the CRC32c follows the
        // port) vs a UDP one doing the same, established flows
        let (udp_vip, sctp_vip) = (Ipv4Addr::new(10, 96, 0, 1), Ipv4Addr::new(10, 96, 0, 2));
        seta_datapath::maps::LbMaps::open(dp.pin_dir())?.sync(&one_backend_services(&[
            (17, udp_vip, 53, 0, b, 5353),
            (132, sctp_vip, 7777, 0, b, 7778),
        ]))?;
        let udp_svc = udp_packet([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 0, 1], a, udp_vip, 64);
        let sctp_svc = sctp_packet([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 0, 1], a, sctp_vip, 40000, 7777, 12);
        let (mut su, mut ss) = (vec![], vec![]);
        run(&mut lxc, "from_container", &udp_svc)?;
        // what is measured: the SCTP packet goes to the backend's port,
        // its CRC32c right
        {
            let p: &mut SchedClassifier = lxc.program_mut("from_container").unwrap().try_into()?;
            let mut out = vec![0u8; sctp_svc.len() + 64];
            let mut opts = TestRunOptions::new();
            opts.data_in = Some(&sctp_svc);
            opts.data_out = Some(&mut out);
            let n = p.test_run(opts)?.data_size_out as usize;
            let ok = n == sctp_svc.len() && out[30..34] == b.octets() && out[36..38] == 7778u16.to_be_bytes();
            if !ok || !seta_datapath::testpkt::sctp_crc_ok(&out[34..n]) {
                bail!("the SCTP ClusterIP packet was not translated as expected: {:?}", &out[..n]);
            }
        }
        for _ in 0..args.rounds.max(5) {
            su.push(run(&mut lxc, "from_container", &udp_svc)?);
            ss.push(run(&mut lxc, "from_container", &sctp_svc)?);
        }
        Ok(vec![
            Row {
                name: "from-container, established flow with 10k services × 10 backends loaded".into(),
                unit: "ns/pkt",
                seta: summarize(&l10k),
                base_name: "no services loaded",
                base: summarize(&l0),
                higher_is_better: false,
                goal: "".into(),
            },
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
                name: format!(
                    "from-container, SCTP ClusterIP, port translated with its CRC32c ({} B)",
                    sctp_svc.len()
                ),
                unit: "ns/pkt",
                seta: summarize(&ss),
                base_name: "the same through a UDP ClusterIP",
                base: summarize(&su),
                higher_is_better: false,
                goal: "".into(),
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
