//! BPF packet tests: the real programs run in the kernel through
//! BPF_PROG_TEST_RUN with crafted packets. They check the verdict, the
//! rewritten bytes and the metrics map. Root only; under CI=true they must run.
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use aya::Ebpf;
use seta_abi::{EndpointInfo, RemoteEndpointInfo, ENDPOINT_F_HOST};
use seta_core::policy::resolve;
use seta_datapath::maps::{policy_entries, CtMap, EndpointMap, EventReader, IpcacheMap, MetricsMap, PolicyEntries, PolicyMap, PolicyOuter};
use seta_datapath::testpkt::{
    arp_request, csum, icmp_echo, l4_packet, one_backend_services, sctp_crc_ok, sctp_packet, tcp_packet, udp_packet,
};
use seta_datapath::Datapath;
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

/// Removes a test's pins when dropped, also if the test panics half-way.
struct PinGuard(Datapath);

impl Drop for PinGuard {
    fn drop(&mut self) {
        let _ = self.0.remove_all();
    }
}

struct Fixture {
    _guard: PinGuard,
    dp: Datapath,
    lxc_a: Ebpf,
    lxc_b: Ebpf,
    host: Ebpf,
}

const ID_A: u32 = 256;
const ID_B: u32 = 300;

/// Default-allow entries (no policy selects the endpoint).
fn allow_all() -> PolicyEntries {
    policy_entries(&resolve::compute(&resolve::EndpointPolicy::default(), []))
}

/// Resolve `yaml` for an endpoint with `labels` over `universe`.
fn resolved(yaml: &str, labels: &str, universe: &[resolve::IdentityInfo]) -> resolve::MapState {
    let rules: Vec<_> = seta_core::policy::parse::parse_file(yaml)
        .unwrap()
        .into_iter()
        .flat_map(|d| d.rules)
        .collect();
    let p = resolve::endpoint_policy(
        &rules,
        &seta_core::labels::parse_list(labels, "k8s").unwrap(),
        Default::default(),
        Default::default(),
        true,
    );
    resolve::compute(&p, universe)
}

fn ident(id: u32, labels: &str) -> resolve::IdentityInfo {
    resolve::IdentityInfo {
        id,
        labels: seta_core::labels::parse_list(labels, "k8s").unwrap(),
        kind: resolve::IdKind::Endpoint,
    }
}

impl Fixture {
    /// As `new`, with from_netdev loaded too (north-south paths).
    fn with_netdev(tag: &str) -> Self {
        let mut f = Self::new(tag);
        let p: &mut SchedClassifier = f.host.program_mut("from_netdev").unwrap().try_into().unwrap();
        p.load().unwrap();
        f
    }

    fn new(tag: &str) -> Self {
        seta_datapath::sysfs::ensure_bpffs(Path::new("/sys/fs/bpf")).unwrap();
        let node = format!("t{}-{tag}", std::process::id());
        let dp = Datapath::new(seta_core::names::pin_dir(Path::new("/sys/fs/bpf"), &node, seta_abi::ABI_VERSION)).unwrap();
        let guard = PinGuard(dp.clone());
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
        ipc.upsert(
            POD_A,
            32,
            &RemoteEndpointInfo {
                sec_identity: ID_A,
                ..Default::default()
            },
        )
        .unwrap();
        let lxc_a = dp.load_lxc_object().unwrap();
        let lxc_b = dp.load_lxc_object().unwrap();
        dp.ensure_policy_map(7).unwrap();
        dp.ensure_policy_map(9).unwrap();
        eps.upsert(
            POD_A,
            &EndpointInfo {
                ifindex: 4141,
                lxc_id: 7,
                mac: A_POD_MAC,
                node_mac: A_HOST_MAC,
                sec_id: ID_A,
                ..Default::default()
            },
        )
        .unwrap();
        let f = Self {
            _guard: guard,
            dp,
            lxc_a,
            lxc_b,
            host,
        };
        f.set_policy(7, &allow_all());
        f.set_policy(9, &allow_all());
        f
    }

    /// A test run's packet comes in on loopback (ifindex 1): the sending
    /// endpoint's entry names that device, the other keeps its own.
    fn set_sender(&mut self, a: bool) {
        let mut eps = EndpointMap::open(self.dp.pin_dir()).unwrap();
        for (ip, id, mac, node_mac, sec, ifx, me) in [
            (POD_A, 7, A_POD_MAC, A_HOST_MAC, ID_A, 4141, a),
            (POD_B, 9, B_POD_MAC, B_HOST_MAC, ID_B, 4242, !a),
        ] {
            if let Some(old) = eps.get(ip) {
                eps.upsert(
                    ip,
                    &EndpointInfo {
                        ifindex: if me { 1 } else { ifx },
                        lxc_id: id,
                        mac,
                        node_mac,
                        sec_id: if old.sec_id != 0 { old.sec_id } else { sec },
                        ..Default::default()
                    },
                )
                .unwrap();
            }
        }
    }
    /// Run A's program without touching the endpoint entries.
    fn raw_run(&mut self, pkt: &[u8]) -> (u32, Vec<u8>) {
        run(&mut self.lxc_a, "from_container", pkt)
    }
    fn sending_a(&mut self) -> &mut Ebpf {
        self.set_sender(true);
        &mut self.lxc_a
    }
    fn sending_b(&mut self) -> &mut Ebpf {
        self.set_sender(false);
        &mut self.lxc_b
    }

    fn set_policy(&self, ep_id: u16, entries: &PolicyEntries) {
        let mut pm = PolicyMap::open_pinned(&self.dp.policy_pin(ep_id)).unwrap();
        pm.sync(entries).unwrap();
        PolicyOuter::open(self.dp.pin_dir()).unwrap().register(ep_id, &pm).unwrap();
    }

    fn events(&self) -> Vec<seta_abi::SetaEvent> {
        EventReader::open(self.dp.pin_dir()).unwrap().drain()
    }

    fn records(&self) -> Vec<seta_abi::Record> {
        EventReader::open(self.dp.pin_dir()).unwrap().drain_records()
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
    let (verdict, out) = run(f.sending_a(), "from_container", &pkt);
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
        let (verdict, out) = run(f.sending_a(), "from_container", &pkt);
        assert_eq!(verdict, TC_ACT_OK, "{dst} is handed to the stack");
        assert_eq!(out, pkt, "packet to {dst} unchanged");
    }
    assert_eq!(f.metric(0, seta_abi::METRIC_EGRESS), 2);
    // traced at to-stack, with the node's and the world's identity
    let traces = |f: &Fixture| -> Vec<(u8, u32, u32)> {
        f.events()
            .into_iter()
            .filter(|e| e.event_type == seta_abi::EVENT_TRACE)
            .map(|e| (e.subtype, e.src_label, e.dst_label))
            .collect()
    };
    let (to_stack, from_lxc) = (seta_abi::TRACE_TO_STACK, seta_abi::TRACE_FROM_LXC);
    // (the fixture's ipcache has no entry for the router: world)
    assert_eq!(traces(&f), [(to_stack, ID_A, 2), (to_stack, ID_A, 2)]);
    // established: aggregated away (medium); without aggregation every
    // packet, also where it left the pod (from-endpoint, parsed from the skb)
    let pkt = udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, ROUTER, 64);
    assert_eq!(run(f.sending_a(), "from_container", &pkt).0, TC_ACT_OK);
    assert_eq!(traces(&f), []);
    seta_datapath::maps::set_config(
        f.dp.pin_dir(),
        seta_abi::CONFIG_DATAPATH_OPTS,
        seta_abi::MONITOR_AGG_NONE << seta_abi::OPT_MONITOR_AGG_SHIFT,
    )
    .unwrap();
    assert_eq!(run(f.sending_a(), "from_container", &pkt).0, TC_ACT_OK);
    assert_eq!(traces(&f), [(from_lxc, ID_A, 2), (to_stack, ID_A, 2)]);
}

#[test]
fn privileged_bpf_from_container_drops_with_cilium_reasons() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new("drop");
    let _ = f.records();
    let ttl1 = udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, POD_B, 1);
    let (v, _) = run(f.sending_a(), "from_container", &ttl1);
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(f.metric(196, seta_abi::METRIC_EGRESS), 1, "TTL exceeded (196)");
    // a drop event carries the packet's first bytes (all of a short one)
    let r = f.records();
    let drop = r.iter().find(|r| r.ev.event_type == seta_abi::EVENT_DROP).expect("a drop event");
    let p = drop.payload.expect("with the packet's bytes");
    assert_eq!((p.orig_len as usize, p.bytes()), (ttl1.len(), &ttl1[..]));
    let mut v6 = udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, POD_B, 64);
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    v6.resize(14 + 40 + 8, 0); // the kernel wants a full IPv6 header for the test run
    v6.resize(300, 0xab); // longer than a payload: its first 128 bytes
    let (v, _) = run(f.sending_a(), "from_container", &v6);
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(f.metric(139, seta_abi::METRIC_EGRESS), 1, "unsupported L3 protocol (139)");
    let r = f.records();
    let p = r.iter().find_map(|r| r.payload).expect("the IPv6 drop's bytes");
    assert_eq!((p.orig_len, p.cap_len), (300, seta_abi::DROP_PAYLOAD_LEN as u32));
    assert_eq!(p.bytes(), &v6[..seta_abi::DROP_PAYLOAD_LEN]);
    let mut bad = udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, POD_B, 64);
    bad[14] = 0x44; // IHL 4 is not a valid IPv4 header
    let (v, _) = run(f.sending_a(), "from_container", &bad);
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(f.metric(134, seta_abi::METRIC_EGRESS), 1, "invalid packet (134)");
    // a spoofed source address is dropped as INVALID_SOURCE_IP (132)
    let (v, _) = run(
        f.sending_a(),
        "from_container",
        &udp_packet(A_HOST_MAC, A_POD_MAC, Ipv4Addr::new(10, 77, 0, 99), POD_B, 64),
    );
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(f.metric(132, seta_abi::METRIC_EGRESS), 1, "invalid source ip (132)");
}

/// The per-device slot (`seta_lxc_self`) follows `seta_lxc` on every write:
/// it decides on the fast path, a foreign or stale slot falls back to the
/// hash, and a removed endpoint can send nothing.
#[test]
fn privileged_bpf_self_slot_follows_the_endpoint_map() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new("slot");
    let pkt = udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, POD_B, 64);
    assert_eq!(run(f.sending_a(), "from_container", &pkt).0, TC_ACT_REDIRECT);
    let mut eps = EndpointMap::open(f.dp.pin_dir()).unwrap();
    let slot = eps.slot(1).expect("A's device has a slot");
    assert_eq!((slot.ipv4, slot.lxc_id, slot.sec_id), (POD_A.octets(), 7, ID_A));
    // the slot's own address only: B's address from A's device is dropped
    let spoof = udp_packet(A_HOST_MAC, A_POD_MAC, POD_B, POD_A, 64);
    assert_eq!(
        run(f.sending_a(), "from_container", &spoof).0,
        TC_ACT_SHOT,
        "B's address from A's device"
    );
    // relabel: the slot carries the new identity at once
    let mut a = eps.get(POD_A).unwrap();
    a.sec_id = 4242;
    eps.upsert(POD_A, &a).unwrap();
    assert_eq!(eps.slot(1).unwrap().sec_id, 4242);
    // removed: no slot, no entry, nothing gets out
    eps.remove(POD_A).unwrap();
    assert!(eps.slot(1).is_none(), "the slot went with the entry");
    let before = f.metric(132, seta_abi::METRIC_EGRESS);
    assert_eq!(f.raw_run(&pkt).0, TC_ACT_SHOT);
    assert_eq!(
        f.metric(132, seta_abi::METRIC_EGRESS),
        before + 1,
        "a removed endpoint's packets are invalid source"
    );
}

#[test]
fn privileged_bpf_arp_responder_answers_with_lxc_mac() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new("arp");
    let (v, out) = run(f.sending_a(), "from_container", &arp_request(A_POD_MAC, POD_A, ROUTER));
    assert_eq!(v, TC_ACT_REDIRECT, "reply is sent back out of the lxc");
    assert_eq!(&out[0..6], &A_POD_MAC, "reply goes to the asking pod");
    assert_eq!(&out[6..12], &A_HOST_MAC);
    assert_eq!(&out[20..22], &[0, 2], "ARP opcode is reply");
    assert_eq!(&out[22..28], &A_HOST_MAC, "sender hw = lxc MAC");
    assert_eq!(&out[28..32], &ROUTER.octets(), "sender ip = router");
    assert_eq!(&out[32..38], &A_POD_MAC);
    assert_eq!(&out[38..42], &POD_A.octets());
    // gratuitous ARP / DAD for its own address is not answered
    let (v, _) = run(f.sending_a(), "from_container", &arp_request(A_POD_MAC, POD_A, POD_A));
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

const WEB_POLICY: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: b, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: b}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: a}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}, {port: "8000", endPort: 8099, protocol: TCP}]}]
  - fromEntities: [all]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: a}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
"#;

fn universe() -> Vec<resolve::IdentityInfo> {
    vec![
        ident(ID_A, "app=a,io.kubernetes.pod.namespace=default"),
        ident(ID_B, "app=b,io.kubernetes.pod.namespace=default"),
    ]
}

#[test]
fn privileged_bpf_policy_allow_deny_ranges_with_reasons_and_events() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new("pol");
    f.set_policy(
        9,
        &policy_entries(&resolved(WEB_POLICY, "app=b,io.kubernetes.pod.namespace=default", &universe())),
    );
    let _ = f.events();
    let syn = |dport, sport| tcp_packet(A_POD_MAC, A_HOST_MAC, POD_A, POD_B, sport, dport, 0x02);
    assert_eq!(
        run(f.sending_a(), "from_container", &syn(80, 40000)).0,
        TC_ACT_REDIRECT,
        "allowed port"
    );
    for (i, p) in [8000u16, 8042, 8099].iter().enumerate() {
        assert_eq!(
            run(f.sending_a(), "from_container", &syn(*p, 40001 + i as u16)).0,
            TC_ACT_REDIRECT,
            "range port {p}"
        );
    }
    assert_eq!(run(f.sending_a(), "from_container", &syn(8100, 40010)).0, TC_ACT_SHOT);
    assert_eq!(run(f.sending_a(), "from_container", &syn(81, 40011)).0, TC_ACT_SHOT);
    assert_eq!(
        f.metric(133, seta_abi::METRIC_INGRESS),
        2,
        "Policy denied (133) at the destination's ingress"
    );
    assert_eq!(
        run(f.sending_a(), "from_container", &syn(22, 40012)).0,
        TC_ACT_SHOT,
        "deny beats the allow-all on 22"
    );
    assert_eq!(f.metric(181, seta_abi::METRIC_INGRESS), 1, "Policy denied by denylist (181)");
    // events: one verdict per new connection and direction
    let ev = f.events();
    let ingress: Vec<_> = ev
        .iter()
        .filter(|e| e.event_type == seta_abi::EVENT_POLICY_VERDICT && e.dir == seta_abi::METRIC_INGRESS)
        .collect();
    assert_eq!(ingress.len(), 7, "{ev:?}");
    let denied: Vec<i32> = ingress.iter().map(|e| e.verdict).filter(|v| *v != 0).collect();
    assert_eq!(denied, vec![-133, -133, -181]);
    // which entry decided, Cilium's match types: A's port entries (L3-L4,
    // also the deny on 22), nothing for 8100 and 81 (none)
    let m = seta_abi::POLICY_MATCH_L3_L4;
    assert_eq!(ingress.iter().map(|e| e.subtype).collect::<Vec<_>>(), [m, m, m, m, 0, 0, m]);
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert!(ev.iter().all(|e| (e.cpu as usize) < cpus), "the CPU is recorded: {ev:?}");
    let last = ingress.last().unwrap();
    assert_eq!(
        (
            last.source,
            last.src_label,
            last.dst_label,
            u16::from_be_bytes(last.dport),
            last.proto
        ),
        (9, ID_A, ID_B, 22, 6)
    );
    assert!(last.cookie > 0, "the deciding rule is named");
    // and every drop is reported as a drop too, with its reason, the
    // packet's tuple and flags, and the identities the ipcache knows
    let drops: Vec<_> = ev.iter().filter(|e| e.event_type == seta_abi::EVENT_DROP).collect();
    assert_eq!(drops.iter().map(|e| e.subtype).collect::<Vec<_>>(), [133, 133, 181], "{ev:?}");
    let d = drops.last().unwrap();
    assert_eq!(
        (d.dir, u16::from_be_bytes(d.dport), d.proto, d.flags & 0x02, d.saddr, d.daddr),
        (seta_abi::METRIC_INGRESS, 22, 6, 0x02, POD_A.octets(), POD_B.octets())
    );
    // --bpf-events-*-enabled=false: the same denial, no verdict and no drop
    // event (counted all the same); the verdict alone when drops are off
    let pin = f.dp.pin_dir().to_path_buf();
    let opts = |v: u32| seta_datapath::maps::set_config(&pin, seta_abi::CONFIG_DATAPATH_OPTS, v).unwrap();
    opts(seta_abi::OPT_NO_DROP_EVENTS | seta_abi::OPT_NO_VERDICT_EVENTS);
    let denied_before = f.metric(181, seta_abi::METRIC_INGRESS);
    assert_eq!(run(f.sending_a(), "from_container", &syn(22, 40013)).0, TC_ACT_SHOT);
    assert!(f.events().is_empty(), "no events");
    assert_eq!(f.metric(181, seta_abi::METRIC_INGRESS), denied_before + 1, "still counted");
    opts(seta_abi::OPT_NO_DROP_EVENTS);
    assert_eq!(run(f.sending_a(), "from_container", &syn(22, 40014)).0, TC_ACT_SHOT);
    let kinds: Vec<(u8, u8)> = f.events().iter().map(|e| (e.event_type, e.dir)).collect();
    assert_eq!(
        kinds,
        [(seta_abi::EVENT_POLICY_VERDICT, seta_abi::METRIC_INGRESS)],
        "B's ingress verdict, no drop; none for A's egress, which no policy enforces (as Cilium)"
    );
    opts(0);
}

#[test]
fn privileged_bpf_conntrack_lets_replies_through_and_tracks_closing() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new("ct");
    // B may not open anything (egress default-deny), A may only reach B:80
    let b_egress = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: e, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: b}}\n  egress: [{}]\n";
    f.set_policy(
        9,
        &policy_entries(&resolved(b_egress, "app=b,io.kubernetes.pod.namespace=default", &universe())),
    );
    let a_egress = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: e, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: a}}\n  egress: [{toEndpoints: [{matchLabels: {app: b}}], toPorts: [{ports: [{port: '80', protocol: TCP}]}]}]\n";
    f.set_policy(
        7,
        &policy_entries(&resolved(a_egress, "app=a,io.kubernetes.pod.namespace=default", &universe())),
    );

    let a2b = |flags| tcp_packet(A_POD_MAC, A_HOST_MAC, POD_A, POD_B, 41000, 80, flags);
    let b2a = |flags| tcp_packet(B_POD_MAC, B_HOST_MAC, POD_B, POD_A, 80, 41000, flags);
    assert_eq!(
        run(f.sending_a(), "from_container", &a2b(0x02)).0,
        TC_ACT_REDIRECT,
        "SYN allowed by A's egress"
    );
    assert_eq!(
        run(f.sending_b(), "from_container", &b2a(0x12)).0,
        TC_ACT_REDIRECT,
        "SYN-ACK is a reply: B's egress deny does not apply"
    );
    assert_eq!(run(f.sending_a(), "from_container", &a2b(0x10)).0, TC_ACT_REDIRECT, "established");
    // B opening its own connection is denied
    let b_new = tcp_packet(B_POD_MAC, B_HOST_MAC, POD_B, POD_A, 42000, 80, 0x02);
    assert_eq!(run(f.sending_b(), "from_container", &b_new).0, TC_ACT_SHOT);
    assert_eq!(f.metric(133, seta_abi::METRIC_EGRESS), 1);
    // A to another port is denied by A's egress
    let a_other = tcp_packet(A_POD_MAC, A_HOST_MAC, POD_A, POD_B, 41001, 81, 0x02);
    assert_eq!(run(f.sending_a(), "from_container", &a_other).0, TC_ACT_SHOT);

    let entry = |f: &Fixture| {
        CtMap::open(f.dp.pin_dir())
            .unwrap()
            .list()
            .into_iter()
            .find(|(k, _)| k.saddr == POD_A.octets() && u16::from_be_bytes(k.dport) == 80)
            .unwrap()
            .1
    };
    let e = entry(&f);
    assert_eq!((e.src_sec_id, e.seen_reply, e.tx_closing, e.rx_closing), (ID_A, 1, 0, 0));
    let now = seta_datapath::maps::monotonic_ns() / 1_000_000_000;
    let expires = |e: &seta_abi::CtEntry| e.expires / 1_000_000_000;
    assert!(expires(&e) > now + 21000, "established TCP lives 6 h");
    assert_eq!(run(f.sending_a(), "from_container", &a2b(0x11)).0, TC_ACT_REDIRECT, "FIN from A");
    assert_eq!(run(f.sending_b(), "from_container", &b2a(0x11)).0, TC_ACT_REDIRECT, "FIN from B");
    let e = entry(&f);
    assert_eq!((e.tx_closing, e.rx_closing), (1, 1));
    assert!(expires(&e) <= now + 11, "closing connections expire after 10 s");
    // ICMP echo: request allowed out of A? A's egress only allows TCP/80 -> denied
    assert_eq!(
        run(
            f.sending_a(),
            "from_container",
            &icmp_echo(A_POD_MAC, A_HOST_MAC, POD_A, POD_B, 8, 7)
        )
        .0,
        TC_ACT_SHOT
    );
    assert_eq!(
        CtMap::open(f.dp.pin_dir()).unwrap().flush(false).unwrap(),
        1,
        "flush removes the entry"
    );
}

/// For many (remote identity, protocol, port) the kernel decides what the
/// resolver's lookup (the one `policy trace` uses) predicts.
#[test]
fn privileged_bpf_datapath_agrees_with_resolver_lookup() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new("agree");
    let mut uni = universe();
    let mut ipc = IpcacheMap::open(f.dp.pin_dir()).unwrap();
    let apps = ["a", "c", "d", "web"];
    for (i, app) in apps.iter().enumerate() {
        let id = 400 + i as u32;
        uni.push(ident(id, &format!("app={app},io.kubernetes.pod.namespace=default")));
        ipc.upsert(
            Ipv4Addr::new(10, 88, 0, i as u8 + 1),
            32,
            &RemoteEndpointInfo {
                sec_identity: id,
                ..Default::default()
            },
        )
        .unwrap();
    }
    let y = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: g, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: b}}
  ingress:
  - fromEndpoints: [{matchExpressions: [{key: app, operator: In, values: [a, c]}]}]
    toPorts: [{ports: [{port: "1000", endPort: 1999, protocol: TCP}, {port: "53", protocol: UDP}]}]
  - fromEndpoints: [{matchLabels: {app: d}}]
  - toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: c}}]
    toPorts: [{ports: [{port: "1500", endPort: 1600, protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {app: d}}]
    toPorts: [{ports: [{port: "53", protocol: UDP}]}]
"#;
    let state = resolved(y, "app=b,io.kubernetes.pod.namespace=default", &uni);
    f.set_policy(9, &policy_entries(&state));
    let mut sport = 20000u16;
    let mut checked = 0;
    for (i, _) in apps.iter().enumerate() {
        let src = Ipv4Addr::new(10, 88, 0, i as u8 + 1);
        let id = 400 + i as u32;
        for (proto, port) in [
            (6u8, 80u16),
            (6, 443),
            (6, 999),
            (6, 1000),
            (6, 1499),
            (6, 1500),
            (6, 1600),
            (6, 1601),
            (6, 1999),
            (6, 2000),
            (17, 53),
            (17, 54),
        ] {
            sport += 1;
            let pkt = if proto == 6 {
                tcp_packet([2; 6], [3; 6], src, POD_B, sport, port, 0x02)
            } else {
                let mut p = udp_packet([3; 6], [2; 6], src, POD_B, 64);
                p[34..36].copy_from_slice(&sport.to_be_bytes());
                p[36..38].copy_from_slice(&port.to_be_bytes());
                p
            };
            let (verdict, _) = run(&mut f.host, "from_host", &pkt);
            let want = resolve::lookup(&state, id, false, proto, port);
            assert_eq!(
                verdict == TC_ACT_REDIRECT,
                want.allowed(),
                "identity {id} proto {proto} port {port}: kernel {verdict}, resolver {want:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 48);
    assert!(f.metric(181, seta_abi::METRIC_INGRESS) >= 3 && f.metric(133, seta_abi::METRIC_INGRESS) >= 10);
}

/// An event storm larger than the ring buffer: every event the datapath
/// emitted was either delivered or counted as lost (per CPU), none vanish.
#[test]
fn privileged_bpf_events_are_delivered_or_counted_lost() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new("lost");
    f.set_policy(
        9,
        &policy_entries(&resolved(WEB_POLICY, "app=b,io.kubernetes.pod.namespace=default", &universe())),
    );
    let _ = f.events();
    let lost = |f: &Fixture| -> u64 { EventReader::open(f.dp.pin_dir()).unwrap().lost_per_cpu().iter().sum() };
    let lost0 = lost(&f);
    // a denied SYN: every run is a new connection with its events
    let syn = tcp_packet(A_POD_MAC, A_HOST_MAC, POD_A, POD_B, 40099, 81, 0x02);
    assert_eq!(run(f.sending_a(), "from_container", &syn).0, TC_ACT_SHOT);
    let per_packet = f.events().len() as u64;
    assert!(per_packet >= 1);
    let n: u32 = 20_000;
    {
        let p: &mut SchedClassifier = f.sending_a().program_mut("from_container").unwrap().try_into().unwrap();
        let mut out = vec![0u8; syn.len() + 256];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(&syn);
        opts.data_out = Some(&mut out);
        opts.repeat = n;
        assert_eq!(p.test_run(opts).unwrap().return_value, TC_ACT_SHOT);
    }
    let delivered = f.events().len() as u64;
    let counted = lost(&f) - lost0;
    assert!(counted > 0, "the storm overflowed the ring buffer ({delivered} delivered)");
    assert_eq!(delivered + counted, n as u64 * per_packet, "delivered {delivered} + lost {counted}");
}

/// Delivery to a local endpoint is traced (to-endpoint) for a connection's
/// first packet and for SYN/FIN/RST, not for the established rest.
#[test]
fn privileged_bpf_to_endpoint_traces_are_aggregated() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new("trace");
    f.set_policy(
        9,
        &policy_entries(&resolved(WEB_POLICY, "app=b,io.kubernetes.pod.namespace=default", &universe())),
    );
    let _ = f.events();
    let traces = |f: &Fixture| -> Vec<seta_abi::SetaEvent> {
        f.events()
            .into_iter()
            .filter(|e| e.event_type == seta_abi::EVENT_TRACE && e.subtype == seta_abi::TRACE_TO_LXC)
            .collect()
    };
    let pkt = |flags| tcp_packet(A_POD_MAC, A_HOST_MAC, POD_A, POD_B, 40500, 80, flags);
    assert_eq!(run(f.sending_a(), "from_container", &pkt(0x02)).0, TC_ACT_REDIRECT);
    let t = traces(&f);
    assert_eq!(t.len(), 1, "the SYN is traced: {t:?}");
    assert_eq!(
        (t[0].subtype, t[0].source, t[0].dst_label, t[0].cookie),
        (seta_abi::TRACE_TO_LXC, 9, ID_B, 0)
    );
    // the established connection's data: not traced; its FIN: traced
    for _ in 0..5 {
        assert_eq!(run(f.sending_a(), "from_container", &pkt(0x10)).0, TC_ACT_REDIRECT);
    }
    assert!(traces(&f).is_empty(), "established data is aggregated away");
    // medium (the default): once per ~4.3 s interval the established
    // connection is reported again, once
    std::thread::sleep(std::time::Duration::from_millis(4400));
    for _ in 0..3 {
        assert_eq!(run(f.sending_a(), "from_container", &pkt(0x10)).0, TC_ACT_REDIRECT);
    }
    assert_eq!(traces(&f).len(), 1, "one report in the new interval");
    // --monitor-aggregation: none traces every packet, low all but pure
    // ACKs, maximum only SYN/FIN/RST
    let level = |f: &Fixture, l: u32| {
        seta_datapath::maps::set_config(f.dp.pin_dir(), seta_abi::CONFIG_DATAPATH_OPTS, l << seta_abi::OPT_MONITOR_AGG_SHIFT).unwrap()
    };
    let count = |f: &mut Fixture, flags: u8, n: usize| {
        for _ in 0..n {
            assert_eq!(run(f.sending_a(), "from_container", &pkt(flags)).0, TC_ACT_REDIRECT);
        }
        traces(f).len()
    };
    level(&f, seta_abi::MONITOR_AGG_NONE);
    assert_eq!(count(&mut f, 0x10, 4), 4, "none: every packet");
    level(&f, seta_abi::MONITOR_AGG_LOW);
    assert_eq!(count(&mut f, 0x10, 4), 0, "low: no pure ACK");
    assert_eq!(count(&mut f, 0x18, 3), 3, "low: data with PSH");
    level(&f, seta_abi::MONITOR_AGG_MAXIMUM);
    assert_eq!(count(&mut f, 0x18, 3), 0, "maximum: no data");
    assert_eq!(run(f.sending_a(), "from_container", &pkt(0x11)).0, TC_ACT_REDIRECT);
    assert_eq!(traces(&f).len(), 1, "the FIN is traced");
}

/// Map sizes from flags: the shared maps are created with them; a pinned
/// map of another size is an error naming the map and the flag (never a
/// silent mismatch).
#[test]
fn privileged_bpf_map_sizes_from_flags_and_a_pinned_mismatch_is_loud() {
    if !privileged() {
        return;
    }
    seta_datapath::sysfs::ensure_bpffs(Path::new("/sys/fs/bpf")).unwrap();
    let pin = seta_core::names::pin_dir(
        Path::new("/sys/fs/bpf"),
        &format!("t{}-sizes", std::process::id()),
        seta_abi::ABI_VERSION,
    );
    let sizes = seta_datapath::MapSizes { lb: 1024, nat: 4096 };
    let dp = Datapath::with_sizes(&pin, sizes).unwrap();
    let _guard = PinGuard(dp.clone());
    dp.check_pinned_sizes().expect("nothing pinned yet");
    let _host = dp.load_host_object().unwrap();
    let max = |m: &str| aya::maps::MapInfo::from_pin(pin.join(m)).unwrap().max_entries();
    assert_eq!(max("seta_lb4_svc"), 1024);
    assert_eq!(max("seta_lb4_be"), 1024);
    assert_eq!(max("seta_snat_v4_external"), 4096);
    assert_eq!(
        max("seta_lb4_maglev"),
        seta_abi::LB_MAGLEV_MAP_SIZE,
        "a map without a flag keeps the object's size"
    );
    dp.check_pinned_sizes().expect("the same flags again");
    let other = Datapath::with_sizes(&pin, seta_datapath::MapSizes { lb: 2048, nat: 4096 }).unwrap();
    let e = other.check_pinned_sizes().unwrap_err().to_string();
    assert!(
        e.contains("seta_lb4_svc") && e.contains("pinned with 1024 entries but --bpf-lb-map-max asks for 2048"),
        "{e}"
    );
}

/// DSR on the backend's node: a SYN for a local pod carrying the DSR option
/// (service 172.30.0.2:30090) is delivered, and the connection is recorded;
/// the pod's SYN-ACK leaves from the service's address and port with valid
/// checksums (a reply: no policy, no masquerade), and an ICMP error the pod
/// sends about the connection is from the service and about it.
#[test]
fn privileged_bpf_dsr_option_is_learned_and_the_reply_leaves_from_the_service() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::with_netdev("dsr");
    let client = Ipv4Addr::new(192, 0, 2, 10);
    let svc = Ipv4Addr::new(172, 30, 0, 2);
    // the SYN as the entry node sent it: IPv4 option 0x9a, 8 bytes (port, address)
    let mut syn = tcp_packet([2, 0, 0, 0, 0, 9], B_HOST_MAC, client, POD_B, 40000, 8080, 0x02);
    let mut opt = vec![0x9a, 8];
    opt.extend_from_slice(&30090u16.to_be_bytes());
    opt.extend_from_slice(&svc.octets());
    syn.splice(34..34, opt);
    syn[14] = 0x47;
    let total = u16::from_be_bytes([syn[16], syn[17]]) + 8;
    syn[16..18].copy_from_slice(&total.to_be_bytes());
    syn[24..26].copy_from_slice(&[0, 0]);
    let c = csum(&syn[14..42]);
    syn[24..26].copy_from_slice(&c.to_be_bytes());
    let (rc, _) = run(&mut f.host, "from_netdev", &syn);
    assert_eq!(rc, TC_ACT_REDIRECT, "delivered to the pod");
    let dsr = seta_datapath::maps::dsr_list(f.dp.pin_dir()).unwrap();
    assert_eq!(dsr.len(), 1, "{dsr:?}");
    let (k, v) = dsr[0];
    assert_eq!((k.saddr, k.daddr), (POD_B.octets(), client.octets()), "keyed by the reply");
    assert_eq!(
        (u16::from_be_bytes(k.sport), u16::from_be_bytes(k.dport), k.proto),
        (8080, 40000, 6)
    );
    assert_eq!((v.address, u16::from_be_bytes(v.port)), (svc.octets(), 30090));
    // the pod's reply: from the service, checksums still valid
    let mut synack = tcp_packet(B_POD_MAC, B_HOST_MAC, POD_B, client, 8080, 40000, 0x12);
    let tcp_csum = |p: &[u8]| {
        let mut pseudo = p[26..34].to_vec();
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        pseudo.extend_from_slice(&p[34..54]);
        csum(&pseudo)
    };
    let c = tcp_csum(&synack);
    synack[50..52].copy_from_slice(&c.to_be_bytes());
    assert_eq!(tcp_csum(&synack), 0);
    let (rc, out) = run(f.sending_b(), "from_container", &synack);
    assert_ne!(rc, TC_ACT_SHOT, "a reply is not dropped");
    assert_eq!(&out[26..30], &svc.octets(), "source address");
    assert_eq!(&out[34..36], &30090u16.to_be_bytes(), "source port");
    assert_eq!(csum(&out[14..34]), 0, "IP checksum");
    assert_eq!(tcp_csum(&out), 0, "TCP checksum");
    // the pod's ICMP errors about the connection: from the service, about
    // it; about a later packet, and about the SYN (quoted with its option)
    let later = tcp_packet([2, 0, 0, 0, 0, 9], B_HOST_MAC, client, POD_B, 40000, 8080, 0x10);
    for quoted in [&later[14..42], &syn[14..50]] {
        let err = port_unreachable(POD_B, client, quoted);
        let (rc, out) = run(f.sending_b(), "from_container", &err);
        assert_ne!(rc, TC_ACT_SHOT, "an error about a connection is not dropped");
        assert_eq!(icmp_error_view(&out), (svc, client, client, 40000, svc, 30090));
    }
}

/// Every program of the node's objects passes the verifier, also those the
/// other tests here do not run (from_overlay's stack is near the verifier's
/// 512-byte limit: a few more bytes in a shared helper stop the agent).
#[test]
fn privileged_bpf_every_program_passes_the_verifier() {
    if !privileged() {
        return;
    }
    let f = Fixture::new("vrf");
    let mut host = f.dp.load_host_object().unwrap();
    let mut lxc = f.dp.load_lxc_object().unwrap();
    let mut loaded = Vec::new();
    for obj in [&mut host, &mut lxc] {
        for (name, prog) in obj.programs_mut() {
            let p: &mut SchedClassifier = prog.try_into().unwrap();
            if p.fd().is_err() {
                p.load().unwrap_or_else(|e| panic!("{name}: {e:?}"));
            }
            let insns = p.info().ok().and_then(|i| i.verified_instruction_count());
            eprintln!("{name}: {insns:?} instructions verified");
            loaded.push(name.to_string());
        }
    }
    loaded.sort();
    assert_eq!(loaded, ["from_container", "from_host", "from_netdev", "from_overlay"]);
}

/// Datapath debug messages (Cilium's `cilium_dbg`): none by default; with
/// OPT_DEBUG (`--debug-verbose=datapath`) the CT lookup of each packet, its
/// verdict, the ipcache's answer and the local delivery, with Cilium's
/// arguments.
#[test]
fn privileged_bpf_debug_messages_only_with_debug_verbose_datapath() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::new("dbg");
    let debug = |f: &Fixture| -> Vec<seta_abi::DebugEvent> {
        f.records()
            .into_iter()
            .filter(|r| r.ev.event_type == seta_abi::EVENT_DEBUG)
            .map(|r| seta_abi::DebugEvent::of(&r.ev))
            .collect()
    };
    let pkt = udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, POD_B, 64);
    assert_eq!(run(f.sending_a(), "from_container", &pkt).0, TC_ACT_REDIRECT);
    assert!(debug(&f).is_empty(), "no debug messages unless asked for");
    seta_datapath::maps::set_config(f.dp.pin_dir(), seta_abi::CONFIG_DATAPATH_OPTS, seta_abi::OPT_DEBUG).unwrap();
    assert_eq!(run(f.sending_a(), "from_container", &pkt).0, TC_ACT_REDIRECT);
    let d = debug(&f);
    let kinds: Vec<u8> = d.iter().map(|e| e.subtype).collect();
    assert_eq!(
        kinds,
        [
            seta_abi::DBG_CT_LOOKUP4_1,
            seta_abi::DBG_CT_LOOKUP4_2,
            seta_abi::DBG_CT_VERDICT,
            seta_abi::DBG_LOCAL_DELIVERY
        ],
        "{d:?}"
    );
    assert!(d.iter().all(|e| e.source == 7), "about A's endpoint: {d:?}");
    let ip = |v: u32| Ipv4Addr::from(v.to_ne_bytes());
    assert_eq!((ip(d[0].arg1), ip(d[0].arg2)), (POD_A, POD_B));
    assert_eq!(d[0].arg3, (53 << 16) | 12345, "dport << 16 | sport");
    assert_eq!(d[1].arg1 >> 8, 17, "UDP");
    assert_eq!(d[2].arg1, 1, "established (the first packet made the entry)");
    assert_eq!((d[3].arg1, d[3].arg2), (9, ID_A), "delivered to B's endpoint from A's identity");
    assert!(d.iter().all(|e| e.ts > 0));
    // a new connection to an address the ipcache does not know
    let world = Ipv4Addr::new(192, 0, 2, 1);
    let pkt = udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, world, 64);
    assert_eq!(run(f.sending_a(), "from_container", &pkt).0, TC_ACT_OK);
    let d = debug(&f);
    assert_eq!(d[0].subtype, seta_abi::DBG_IP_ID_MAP_FAILED4, "{d:?}");
    assert_eq!(ip(d[0].arg1), world);
    let verdict = d.iter().find(|e| e.subtype == seta_abi::DBG_CT_VERDICT).unwrap();
    assert_eq!(verdict.arg1, 0, "new");
    assert!(d.iter().any(|e| e.subtype == seta_abi::DBG_CT_CREATED4 && e.arg2 == ID_A), "{d:?}");
}

/// BPF masquerade, packet by packet: a pod's UDP and ping to the world leave
/// from the node's address (a NAT port, an echo identifier); the echo reply
/// and an ICMP port unreachable about the UDP flow, sent to the node, become
/// the pod's again with every checksum valid (outer IP, quoted IP, ICMP); a
/// destination in seta_ipmasq_v4 keeps the pod's address.
#[test]
fn privileged_bpf_masquerade_round_trips_and_icmp_errors() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::with_netdev("masq");
    let node = Ipv4Addr::new(172, 30, 0, 1);
    let world = Ipv4Addr::new(192, 0, 2, 10);
    let pin = f.dp.pin_dir().to_path_buf();
    seta_datapath::maps::set_config(&pin, seta_abi::CONFIG_NODE_IP, u32::from_ne_bytes(node.octets())).unwrap();
    seta_datapath::maps::set_config(&pin, seta_abi::CONFIG_DATAPATH_OPTS, seta_abi::OPT_MASQUERADE).unwrap();
    let ip_ok = |p: &[u8], at: usize| assert_eq!(csum(&p[at..at + 20]), 0, "IP checksum at {at}");

    // UDP 12345 -> 53: from the node, a port of the NAT engine
    let udp = udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, world, 64);
    let (_, out) = run(f.sending_a(), "from_container", &udp);
    assert_eq!(&out[26..30], &node.octets(), "UDP source address");
    ip_ok(&out, 14);
    let nat_port = [out[34], out[35]];
    assert_ne!(nat_port, 12345u16.to_be_bytes(), "a NAT port above the NodePort range");

    // the world's port unreachable about it, to the node: the pod's again
    let err = port_unreachable(world, node, &out[14..42]);
    let (rc, back) = run(&mut f.host, "from_netdev", &err);
    assert_ne!(rc, TC_ACT_SHOT, "delivered");
    assert_eq!(icmp_error_view(&back), (world, POD_A, POD_A, 12345, world, 53));

    // a ping: an echo identifier of the NAT engine, and the reply back
    let ping = icmp_echo(A_POD_MAC, A_HOST_MAC, POD_A, world, 8, 77);
    let (_, out) = run(f.sending_a(), "from_container", &ping);
    assert_eq!(&out[26..30], &node.octets(), "echo source address");
    assert_eq!(csum(&out[34..]), 0, "echo ICMP checksum");
    let id = u16::from_be_bytes([out[38], out[39]]);
    let reply = icmp_echo([2, 0, 0, 0, 0, 9], B_HOST_MAC, world, node, 0, id);
    let (rc, back) = run(&mut f.host, "from_netdev", &reply);
    assert_ne!(rc, TC_ACT_SHOT, "delivered");
    assert_eq!(&back[30..34], &POD_A.octets(), "reply destination");
    assert_eq!(u16::from_be_bytes([back[38], back[39]]), 77, "the pod's identifier");
    ip_ok(&back, 14);
    assert_eq!(csum(&back[34..]), 0, "reply ICMP checksum");

    // the world's range as a non-masquerade CIDR: the pod's address stays
    let mut m = seta_datapath::maps::IpmasqMap::open(&pin).unwrap();
    m.sync(&[("192.0.2.0/24".parse().unwrap(), seta_abi::IPMASQ_F_AGENT)].into())
        .unwrap();
    let mut udp2 = udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, world, 64);
    udp2[34..36].copy_from_slice(&23456u16.to_be_bytes());
    let (_, out) = run(f.sending_a(), "from_container", &udp2);
    assert_eq!(&out[26..30], &POD_A.octets(), "not masqueraded");
    assert_eq!(&out[34..36], &23456u16.to_be_bytes());
}

/// An ICMP error of type/code 3/3 (port unreachable) from `src` to `dst`,
/// quoting `quoted` (the offending packet's IP header and 8 bytes).
fn port_unreachable(src: Ipv4Addr, dst: Ipv4Addr, quoted: &[u8]) -> Vec<u8> {
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quoted);
    let c = csum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    l4_packet([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 1], src, dst, 1, &icmp)
}

/// The outer addresses, the quoted packet's addresses and ports of an ICMP
/// error frame, after checking its three checksums (outer IP, quoted IP,
/// ICMP).
fn icmp_error_view(p: &[u8]) -> (Ipv4Addr, Ipv4Addr, Ipv4Addr, u16, Ipv4Addr, u16) {
    let ip = |at: usize| Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3]);
    let l4 = 42 + usize::from(p[42] & 0xf) * 4; // the quoted header may have options
    assert_eq!(csum(&p[14..34]), 0, "outer IP checksum");
    assert_eq!(csum(&p[42..l4]), 0, "quoted IP checksum");
    assert_eq!(csum(&p[34..]), 0, "ICMP checksum");
    (
        ip(26),
        ip(30),
        ip(42 + 12),
        u16::from_be_bytes([p[l4], p[l4 + 1]]),
        ip(42 + 16),
        u16::from_be_bytes([p[l4 + 2], p[l4 + 3]]),
    )
}

/// One UDP frontend `addr:port` (LB_F_* `flags`) with one backend.
fn one_udp_service(pin: &Path, addr: Ipv4Addr, port: u16, flags: u8, backend: Ipv4Addr, bport: u16) {
    one_service(pin, 17, addr, port, flags, backend, bport)
}

/// One frontend `addr:port` of protocol `proto` (LB_F_* `flags`) with one backend.
fn one_service(pin: &Path, proto: u8, addr: Ipv4Addr, port: u16, flags: u8, backend: Ipv4Addr, bport: u16) {
    let st = one_backend_services(&[(proto, addr, port, flags, backend, bport)]);
    seta_datapath::maps::LbMaps::open(pin).unwrap().sync(&st).unwrap();
}

/// A NodePort's world: this node's address (set as the node IP), a client
/// outside and a backend address on another node.
fn node_port_world(pin: &Path) -> (Ipv4Addr, Ipv4Addr, Ipv4Addr) {
    let node = Ipv4Addr::new(172, 30, 0, 1);
    seta_datapath::maps::set_config(pin, seta_abi::CONFIG_NODE_IP, u32::from_ne_bytes(node.octets())).unwrap();
    (node, Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(10, 78, 0, 5))
}

/// ICMP errors about connections through a service are about the frontend
/// again, as kube-proxy's conntrack NAT makes them: a backend's port
/// unreachable about a pod's UDP to a ClusterIP, from a backend on the node
/// (from_container) and from one on another node (from_netdev), and about a
/// NodePort connection SNATed to a backend on another node; and the other
/// way, a pod's port unreachable about a ClusterIP's reply, and the
/// client's about a NodePort's reply, go to the backend, on another node
/// (about the NAT port) or on this one; every checksum valid.
#[test]
fn privileged_bpf_service_icmp_errors_are_about_the_frontend() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::with_netdev("svcicmp");
    let pin = f.dp.pin_dir().to_path_buf();
    let vip = Ipv4Addr::new(10, 96, 0, 10);
    one_udp_service(&pin, vip, 53, 0, POD_B, 5353);

    // pod A's UDP 12345 -> 10.96.0.10:53 goes to pod B:5353
    let udp = udp_packet(A_HOST_MAC, A_POD_MAC, POD_A, vip, 64);
    let (rc, out) = run(f.sending_a(), "from_container", &udp);
    assert_eq!(rc, TC_ACT_REDIRECT, "delivered to B");
    assert_eq!((&out[30..34], &out[36..38]), (&POD_B.octets()[..], &5353u16.to_be_bytes()[..]));

    // B's port unreachable about it: from the frontend, about the frontend
    let err = port_unreachable(POD_B, POD_A, &out[14..42]);
    let (rc, back) = run(f.sending_b(), "from_container", &err);
    assert_eq!(rc, TC_ACT_REDIRECT, "delivered to A");
    assert_eq!(icmp_error_view(&back), (vip, POD_A, POD_A, 12345, vip, 53), "from a local backend");

    // the same error from a backend on another node, through the node's
    // device (native routing): delivered to A the same
    let (rc, back) = run(&mut f.host, "from_netdev", &err);
    assert_eq!(rc, TC_ACT_REDIRECT, "delivered to A");
    assert_eq!(icmp_error_view(&back), (vip, POD_A, POD_A, 12345, vip, 53), "from a remote backend");

    // an error from a router on the way: its address stays the source
    let router = Ipv4Addr::new(10, 77, 9, 9);
    let (_, back) = run(&mut f.host, "from_netdev", &port_unreachable(router, POD_A, &out[14..42]));
    assert_eq!(icmp_error_view(&back), (router, POD_A, POD_A, 12345, vip, 53), "from a router");

    // the other way: A's port unreachable about the reply it got from the
    // frontend (its socket closed meanwhile), sent to the frontend, goes to
    // the backend, about the reply as B sent it
    let mut seen = udp_packet(A_POD_MAC, A_HOST_MAC, vip, POD_A, 64);
    seen[34..36].copy_from_slice(&53u16.to_be_bytes());
    seen[36..38].copy_from_slice(&12345u16.to_be_bytes());
    let (rc, fwd) = run(f.sending_a(), "from_container", &port_unreachable(POD_A, vip, &seen[14..42]));
    assert_eq!(rc, TC_ACT_REDIRECT, "delivered to B");
    assert_eq!(icmp_error_view(&fwd), (POD_A, POD_B, POD_B, 5353, POD_A, 12345), "to the backend");
    // about a reply from another port of the frontend (no such connection): untouched
    seen[34..36].copy_from_slice(&54u16.to_be_bytes());
    let (_, fwd) = run(f.sending_a(), "from_container", &port_unreachable(POD_A, vip, &seen[14..42]));
    assert_eq!(
        icmp_error_view(&fwd),
        (POD_A, vip, vip, 54, POD_A, 12345),
        "not a connection of the service"
    );

    // a NodePort SNATed to a backend on another node
    let (node, client, remote) = node_port_world(&pin);
    one_udp_service(&pin, node, 30053, seta_abi::LB_F_NODEPORT, remote, 5353);
    let mut req = udp_packet(B_HOST_MAC, [2, 0, 0, 0, 0, 9], client, node, 64);
    req[36..38].copy_from_slice(&30053u16.to_be_bytes());
    let (rc, out) = run(&mut f.host, "from_netdev", &req);
    assert_ne!(rc, TC_ACT_SHOT, "forwarded");
    assert_eq!(
        (&out[26..30], &out[30..34]),
        (&node.octets()[..], &remote.octets()[..]),
        "SNAT and DNAT"
    );
    let nat_port = u16::from_be_bytes([out[34], out[35]]);
    let err = port_unreachable(remote, node, &out[14..42]);
    let (rc, back) = run(&mut f.host, "from_netdev", &err);
    assert_ne!(rc, TC_ACT_SHOT, "on to the client");
    assert_eq!(
        icmp_error_view(&back),
        (node, client, client, 12345, node, 30053),
        "about the NodePort (NAT port {nat_port})"
    );

    // the client's port unreachable about the NodePort's reply: on to the
    // backend, about the reply as the backend sent it (to the NAT port)
    let reply_as_sent = |sport: u16| {
        let mut r = udp_packet(B_HOST_MAC, [2, 0, 0, 0, 0, 9], node, client, 64);
        r[34..36].copy_from_slice(&sport.to_be_bytes());
        r[36..38].copy_from_slice(&12345u16.to_be_bytes());
        r
    };
    let err = port_unreachable(client, node, &reply_as_sent(30053)[14..42]);
    let (rc, back) = run(&mut f.host, "from_netdev", &err);
    assert_ne!(rc, TC_ACT_SHOT, "on to the backend");
    assert_eq!(
        icmp_error_view(&back),
        (client, remote, remote, 5353, node, nat_port),
        "for the backend on another node"
    );

    // the same for a NodePort's backend on this node (the client's address
    // kept): into the pod
    one_udp_service(&pin, node, 30054, seta_abi::LB_F_NODEPORT, POD_B, 5353);
    req[36..38].copy_from_slice(&30054u16.to_be_bytes());
    let (rc, _) = run(&mut f.host, "from_netdev", &req);
    assert_eq!(rc, TC_ACT_REDIRECT, "to the local backend");
    let err = port_unreachable(client, node, &reply_as_sent(30054)[14..42]);
    let (rc, back) = run(&mut f.host, "from_netdev", &err);
    assert_eq!(rc, TC_ACT_REDIRECT, "into the backend");
    assert_eq!(
        icmp_error_view(&back),
        (client, POD_B, POD_B, 5353, client, 12345),
        "for the backend on this node"
    );
}

/// SCTP services, with their ports translated as kube-proxy does (Cilium
/// drops those): the CRC32c follows every port rewrite. A pod's DATA to a
/// ClusterIP (7777 -> backend 7778, a short and a long chunk) reaches the
/// backend; its replies, from a backend on the node and from one on another
/// node, come from the frontend; a port unreachable about it is about the
/// frontend; a NodePort from outside is SNATed and DNATed to a backend on
/// another node, and the reply goes back from the NodePort. Every IP
/// checksum and CRC is checked.
#[test]
fn privileged_bpf_service_sctp_ports_are_translated_with_their_crc() {
    if !privileged() {
        return;
    }
    let mut f = Fixture::with_netdev("svcsctp");
    let pin = f.dp.pin_dir().to_path_buf();
    let vip = Ipv4Addr::new(10, 96, 0, 20);
    one_service(&pin, 132, vip, 7777, 0, POD_B, 7778);
    let ports = |p: &[u8]| (u16::from_be_bytes([p[34], p[35]]), u16::from_be_bytes([p[36], p[37]]));
    let valid = |p: &[u8], what: &str| {
        assert_eq!(csum(&p[14..34]), 0, "{what}: IP checksum");
        assert!(sctp_crc_ok(&p[34..]), "{what}: SCTP CRC32c");
    };
    for len in [4, 1200] {
        let req = sctp_packet(A_POD_MAC, A_HOST_MAC, POD_A, vip, 40000, 7777, len);
        let (rc, out) = run(f.sending_a(), "from_container", &req);
        assert_eq!(rc, TC_ACT_REDIRECT, "delivered to B ({len} bytes)");
        assert_eq!((&out[30..34], ports(&out)), (&POD_B.octets()[..], (40000, 7778)), "DNAT");
        valid(&out, &format!("request of {len} bytes"));

        let reply = sctp_packet(B_POD_MAC, B_HOST_MAC, POD_B, POD_A, 7778, 40000, len);
        let (rc, back) = run(f.sending_b(), "from_container", &reply);
        assert_eq!(rc, TC_ACT_REDIRECT, "delivered to A");
        assert_eq!(
            (&back[26..30], ports(&back)),
            (&vip.octets()[..], (7777, 40000)),
            "from the frontend"
        );
        valid(&back, &format!("reply of {len} bytes from a local backend"));

        let (rc, back) = run(&mut f.host, "from_netdev", &reply);
        assert_eq!(rc, TC_ACT_REDIRECT, "delivered to A");
        assert_eq!(
            (&back[26..30], ports(&back)),
            (&vip.octets()[..], (7777, 40000)),
            "from the frontend"
        );
        valid(&back, &format!("reply of {len} bytes from a remote backend"));
    }
    // a CRC left to offload (0 until the kernel computes it over the
    // packet, that field included) stays 0
    let mut partial = sctp_packet(A_POD_MAC, A_HOST_MAC, POD_A, vip, 40000, 7777, 4);
    partial[42..46].fill(0);
    let (rc, out) = run(f.sending_a(), "from_container", &partial);
    assert_eq!(rc, TC_ACT_REDIRECT, "delivered to B");
    assert_eq!(
        (ports(&out), &out[42..46]),
        ((40000, 7778), &[0u8; 4][..]),
        "translated, CRC left to offload"
    );

    let req = sctp_packet(A_POD_MAC, A_HOST_MAC, POD_A, vip, 40000, 7777, 4);
    let (_, out) = run(f.sending_a(), "from_container", &req);
    let (rc, back) = run(f.sending_b(), "from_container", &port_unreachable(POD_B, POD_A, &out[14..42]));
    assert_eq!(rc, TC_ACT_REDIRECT, "delivered to A");
    assert_eq!(
        icmp_error_view(&back),
        (vip, POD_A, POD_A, 40000, vip, 7777),
        "an error about the frontend"
    );

    // a NodePort from outside to a backend on another node: SNAT and DNAT
    let (node, client, remote) = node_port_world(&pin);
    one_service(&pin, 132, node, 30077, seta_abi::LB_F_NODEPORT, remote, 7778);
    let req = sctp_packet([2, 0, 0, 0, 0, 9], B_HOST_MAC, client, node, 1024, 30077, 300);
    let (rc, out) = run(&mut f.host, "from_netdev", &req);
    assert_ne!(rc, TC_ACT_SHOT, "forwarded");
    assert_eq!(
        (&out[26..30], &out[30..34]),
        (&node.octets()[..], &remote.octets()[..]),
        "SNAT and DNAT"
    );
    let (nat_port, bport) = ports(&out);
    assert_eq!(bport, 7778);
    assert_ne!(nat_port, 1024, "a port of the NAT engine's range");
    valid(&out, "the NodePort request");
    let reply = sctp_packet([2, 0, 0, 0, 0, 9], B_HOST_MAC, remote, node, 7778, nat_port, 300);
    let (rc, back) = run(&mut f.host, "from_netdev", &reply);
    assert_ne!(rc, TC_ACT_SHOT, "on to the client");
    assert_eq!(
        (&back[26..30], &back[30..34], ports(&back)),
        (&node.octets()[..], &client.octets()[..], (30077, 1024)),
        "from the NodePort, to the client"
    );
    valid(&back, "the NodePort reply");
}
