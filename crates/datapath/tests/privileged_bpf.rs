//! BPF packet tests: the real programs run in the kernel through
//! BPF_PROG_TEST_RUN with crafted packets. They check the verdict, the
//! rewritten bytes and the metrics map. Root only; under CI=true they must run.
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use aya::Ebpf;
use seta_abi::{EndpointInfo, RemoteEndpointInfo, ENDPOINT_F_HOST};
use seta_datapath::maps::{EndpointMap, IpcacheMap, MetricsMap};
use seta_datapath::testpkt::{arp_request, csum, udp_packet};
use seta_datapath::{Datapath, EndpointProgConfig};
use std::net::Ipv4Addr;
use std::path::Path;

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

const POD_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const POD_B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const A_HOST_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x01];
const A_POD_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x02];
const B_HOST_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x01];
const B_POD_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x02];

fn privileged() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "privileged test cannot run without root under CI=true"
    );
    eprintln!("SKIP: needs root");
    false
}

struct Fixture {
    dp: Datapath,
    lxc_a: Ebpf,
    host: Ebpf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.dp.remove_all();
    }
}

impl Fixture {
    fn new(tag: &str) -> Self {
        seta_datapath::sysfs::ensure_bpffs(Path::new("/sys/fs/bpf")).unwrap();
        let node = format!("t{}-{tag}", std::process::id());
        let dp = Datapath::new(seta_core::names::pin_dir(Path::new("/sys/fs/bpf"), &node, seta_abi::ABI_VERSION)).unwrap();
        let host = dp.load_host_object().unwrap();
        let mut eps = EndpointMap::open(dp.pin_dir()).unwrap();
        eps.upsert(
            POD_B,
            &EndpointInfo {
                ifindex: 4242,
                lxc_id: 9,
                mac: B_POD_MAC,
                node_mac: B_HOST_MAC,
                sec_id: 300,
                ..Default::default()
            },
        )
        .unwrap();
        eps.upsert(
            ROUTER,
            &EndpointInfo {
                flags: ENDPOINT_F_HOST,
                ..Default::default()
            },
        )
        .unwrap();
        let mut ipc = IpcacheMap::open(dp.pin_dir()).unwrap();
        ipc.upsert(
            POD_B,
            32,
            &RemoteEndpointInfo {
                sec_identity: 300,
                ..Default::default()
            },
        )
        .unwrap();
        let lxc_a = dp
            .load_lxc_object(&EndpointProgConfig {
                ep_id: 7,
                ifname: "lxcA".into(),
                ifindex: 4141,
                ipv4: POD_A,
                sec_id: 256,
                node_mac: A_HOST_MAC,
            })
            .unwrap();
        Self { dp, lxc_a, host }
    }

    fn metric(&self, reason: u8, dir: u8) -> u64 {
        MetricsMap::open(self.dp.pin_dir())
            .unwrap()
            .totals()
            .into_iter()
            .find(|(r, d, _)| *r == reason && *d == dir)
            .map(|(_, _, v)| v.count)
            .unwrap_or(0)
    }
}

fn run(ebpf: &mut Ebpf, prog: &str, pkt: &[u8]) -> (u32, Vec<u8>) {
    let p: &mut SchedClassifier = ebpf.program_mut(prog).unwrap().try_into().unwrap();
    let mut out = vec![0u8; pkt.len() + 256];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(pkt);
    opts.data_out = Some(&mut out);
    let r = p.test_run(opts).unwrap();
    let n = r.data_size_out as usize;
    out.truncate(n);
    (r.return_value, out)
}

#[test]
fn privileged_bpf_from_container_local_delivery_rewrites_and_redirects() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new("fc");
    let pkt = udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, POD_B, 64);
    let (verdict, out) = run(&mut f.lxc_a, "from_container", &pkt);
    assert_eq!(verdict, TC_ACT_REDIRECT, "pod->pod on the same node is redirected to the peer");
    assert_eq!(&out[0..6], &B_POD_MAC, "destination MAC is the destination pod's");
    assert_eq!(&out[6..12], &B_HOST_MAC, "source MAC is the destination lxc's");
    assert_eq!(out[14 + 8], 63, "TTL decremented");
    assert_eq!(csum(&out[14..34]), 0, "IPv4 header checksum still valid");
    assert_eq!(&out[34..], &pkt[34..], "L4 untouched");
    assert_eq!(f.metric(0, seta_abi::METRIC_EGRESS), 1);
}

#[test]
fn privileged_bpf_from_container_to_node_and_world_goes_to_stack() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new("stack");
    for dst in [ROUTER, Ipv4Addr::new(192, 0, 2, 1)] {
        let pkt = udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, dst, 64);
        let (verdict, out) = run(&mut f.lxc_a, "from_container", &pkt);
        assert_eq!(verdict, TC_ACT_OK, "{dst} is handed to the stack");
        assert_eq!(out, pkt, "packet to {dst} unchanged");
    }
    assert_eq!(f.metric(0, seta_abi::METRIC_EGRESS), 2);
}

#[test]
fn privileged_bpf_from_container_drops_with_cilium_reasons() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new("drop");
    let (v, _) = run(&mut f.lxc_a, "from_container", &udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, POD_B, 1));
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(f.metric(196, seta_abi::METRIC_EGRESS), 1, "TTL exceeded (196)");
    let mut v6 = udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, POD_B, 64);
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    v6.resize(14 + 40 + 8, 0); // the kernel wants a full IPv6 header for the test run
    let (v, _) = run(&mut f.lxc_a, "from_container", &v6);
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(f.metric(139, seta_abi::METRIC_EGRESS), 1, "unsupported L3 protocol (139)");
    let mut bad = udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, POD_B, 64);
    bad[14] = 0x44; // IHL 4 is not a valid IPv4 header
    let (v, _) = run(&mut f.lxc_a, "from_container", &bad);
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(f.metric(134, seta_abi::METRIC_EGRESS), 1, "invalid packet (134)");
    // a spoofed source address is dropped as INVALID_SOURCE_IP (132)
    let (v, _) = run(
        &mut f.lxc_a,
        "from_container",
        &udp_packet(A_HOST_MAC, A_POD_MAC, Ipv4Addr::new(10, 77, 0, 99), POD_B, 64),
    );
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(f.metric(132, seta_abi::METRIC_EGRESS), 1, "invalid source ip (132)");
}

#[test]
fn privileged_bpf_arp_responder_answers_with_lxc_mac() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new("arp");
    let (v, out) = run(&mut f.lxc_a, "from_container", &arp_request(A_POD_MAC, POD_A, ROUTER));
    assert_eq!(v, TC_ACT_REDIRECT, "reply is sent back out of the lxc");
    assert_eq!(&out[0..6], &A_POD_MAC, "reply goes to the asking pod");
    assert_eq!(&out[6..12], &A_HOST_MAC);
    assert_eq!(&out[20..22], &[0, 2], "ARP opcode is reply");
    assert_eq!(&out[22..28], &A_HOST_MAC, "sender hw = lxc MAC");
    assert_eq!(&out[28..32], &ROUTER.octets(), "sender ip = router");
    assert_eq!(&out[32..38], &A_POD_MAC);
    assert_eq!(&out[38..42], &POD_A.octets());
    // gratuitous ARP / DAD for its own address is not answered
    let (v, _) = run(&mut f.lxc_a, "from_container", &arp_request(A_POD_MAC, POD_A, POD_A));
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(f.metric(150, seta_abi::METRIC_EGRESS), 1);
}

#[test]
fn privileged_bpf_delivery_from_host() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new("host");
    let pkt = udp_packet([0x02, 0xcc, 0, 0, 0, 1], [0x02, 0xcc, 0, 0, 0, 2], ROUTER, POD_B, 63);
    let (v, out) = run(&mut f.host, "from_host", &pkt);
    assert_eq!(v, TC_ACT_REDIRECT, "node->pod is redirected to the endpoint's lxc");
    assert_eq!(&out[0..6], &B_POD_MAC);
    assert_eq!(&out[6..12], &B_HOST_MAC);
    assert_eq!(&out[12..], &pkt[12..], "L3 untouched (the stack already routed it)");
    let other = udp_packet([0; 6], [0; 6], ROUTER, Ipv4Addr::new(10, 99, 0, 1), 64);
    let (v, out) = run(&mut f.host, "from_host", &other);
    assert_eq!((v, out), (TC_ACT_OK, other), "not an endpoint: left to the stack");
    assert_eq!(f.metric(0, seta_abi::METRIC_INGRESS), 1);
}
