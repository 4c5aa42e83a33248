//! One ABI truth: the BTF the compiler emitted for the embedded objects is
//! compared with `seta-abi`. Every shared struct's size and member offsets,
//! and every map's name and key/value sizes, must agree (no root needed).
use seta_abi::*;
use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};

/// A struct as BTF describes it: size and member byte offsets by name.
#[derive(Debug)]
struct BtfStruct {
    size: u32,
    members: BTreeMap<String, u32>,
}

/// The named structs of a raw .BTF section (the format is small: a header,
/// a type section of `btf_type` records with kind-specific trailers, and a
/// string section).
fn btf_structs(btf: &[u8]) -> BTreeMap<String, BtfStruct> {
    let u32_at = |o: usize| u32::from_le_bytes(btf[o..o + 4].try_into().unwrap());
    assert_eq!(u16::from_le_bytes([btf[0], btf[1]]), 0xeb9f, "BTF magic");
    let hdr_len = u32_at(4) as usize;
    let (type_off, type_len) = (u32_at(8) as usize, u32_at(12) as usize);
    let str_off = u32_at(16) as usize;
    let types = hdr_len + type_off;
    let strs = hdr_len + str_off;
    let name = |off: u32| -> String {
        let s = &btf[strs + off as usize..];
        String::from_utf8_lossy(&s[..s.iter().position(|b| *b == 0).unwrap()]).into_owned()
    };
    let mut out = BTreeMap::new();
    let mut o = types;
    while o < types + type_len {
        let (name_off, info, size) = (u32_at(o), u32_at(o + 4), u32_at(o + 8));
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kflag = info >> 31 == 1;
        o += 12;
        match kind {
            4 | 5 => {
                // struct / union: name_off, type, offset (bits; with kflag the low 24)
                let mut members = BTreeMap::new();
                for i in 0..vlen {
                    let m = o + i * 12;
                    let bits = u32_at(m + 8);
                    let bits = if kflag { bits & 0xff_ffff } else { bits };
                    members.insert(name(u32_at(m)), bits / 8);
                }
                if kind == 4 && name_off != 0 {
                    out.insert(name(name_off), BtfStruct { size, members });
                }
                o += vlen * 12;
            }
            1 | 14 | 17 => o += 4,     // int, var, decl_tag
            3 => o += 12,              // array
            6 | 13 => o += vlen * 8,   // enum, func_proto
            15 | 19 => o += vlen * 12, // datasec, enum64
            2 | 7..=12 | 16 | 18 => {} // ptr, fwd, typedef, qualifiers, func, float, type_tag
            k => panic!("unknown BTF kind {k}"),
        }
    }
    out
}

fn section<'a>(elf: &'a [u8], name: &str) -> &'a [u8] {
    use object::{Object, ObjectSection};
    let f = object::File::parse(elf).unwrap();
    f.section_by_name(name).unwrap_or_else(|| panic!("no {name}")).data().unwrap()
}

fn objects() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("bpf_lxc.o", seta_datapath::objects::BPF_LXC),
        ("bpf_host.o", seta_datapath::objects::BPF_HOST),
        ("bpf_sock.o", seta_datapath::objects::BPF_SOCK),
    ]
}

/// (C struct, its size in Rust, C member -> byte offset in Rust)
type Layout = (&'static str, usize, Vec<(&'static str, usize)>);

fn expected() -> Vec<Layout> {
    // Rust keeps LPM keys' prefixlen outside the data (aya's Key wraps it)
    let lpm = |o: usize| o + 4;
    vec![
        (
            "endpoint_key",
            size_of::<EndpointKey>(),
            vec![
                ("ip4", offset_of!(EndpointKey, ip4)),
                ("family", offset_of!(EndpointKey, family)),
                ("pad", offset_of!(EndpointKey, pad)),
                ("cluster_id", offset_of!(EndpointKey, cluster_id)),
            ],
        ),
        (
            "endpoint_info",
            size_of::<EndpointInfo>(),
            vec![
                ("ifindex", offset_of!(EndpointInfo, ifindex)),
                ("unused", offset_of!(EndpointInfo, unused)),
                ("lxc_id", offset_of!(EndpointInfo, lxc_id)),
                ("flags", offset_of!(EndpointInfo, flags)),
                ("mac", offset_of!(EndpointInfo, mac)),
                ("node_mac", offset_of!(EndpointInfo, node_mac)),
                ("sec_id", offset_of!(EndpointInfo, sec_id)),
                ("parent_ifindex", offset_of!(EndpointInfo, parent_ifindex)),
                ("pad", offset_of!(EndpointInfo, pad)),
            ],
        ),
        (
            "lxc_self",
            size_of::<LxcSelf>(),
            vec![
                ("ifindex", offset_of!(LxcSelf, ifindex)),
                ("ipv4", offset_of!(LxcSelf, ipv4)),
                ("sec_id", offset_of!(LxcSelf, sec_id)),
                ("lxc_id", offset_of!(LxcSelf, lxc_id)),
                ("node_mac", offset_of!(LxcSelf, node_mac)),
            ],
        ),
        (
            "frag4_key",
            size_of::<Frag4Key>(),
            vec![
                ("daddr", offset_of!(Frag4Key, daddr)),
                ("saddr", offset_of!(Frag4Key, saddr)),
                ("id", offset_of!(Frag4Key, id)),
                ("proto", offset_of!(Frag4Key, proto)),
                ("pad", offset_of!(Frag4Key, pad)),
            ],
        ),
        (
            "frag4_ports",
            size_of::<Frag4Ports>(),
            vec![("sport", offset_of!(Frag4Ports, sport)), ("dport", offset_of!(Frag4Ports, dport))],
        ),
        (
            "sock_revnat_key",
            size_of::<SockRevnatKey>(),
            vec![
                ("cookie", offset_of!(SockRevnatKey, cookie)),
                ("address", offset_of!(SockRevnatKey, address)),
                ("port", offset_of!(SockRevnatKey, port)),
                ("pad", offset_of!(SockRevnatKey, pad)),
            ],
        ),
        (
            "sock_revnat_entry",
            size_of::<SockRevnatEntry>(),
            vec![
                ("address", offset_of!(SockRevnatEntry, address)),
                ("port", offset_of!(SockRevnatEntry, port)),
                ("rev_nat_index", offset_of!(SockRevnatEntry, rev_nat_index)),
            ],
        ),
        (
            "ipcache_key",
            size_of::<IpcacheKey>(),
            vec![
                ("prefixlen", offset_of!(IpcacheKey, prefixlen)),
                ("cluster_id", offset_of!(IpcacheKey, cluster_id)),
                ("pad", offset_of!(IpcacheKey, pad)),
                ("family", offset_of!(IpcacheKey, family)),
                ("ip4", offset_of!(IpcacheKey, ip4)),
            ],
        ),
        (
            "remote_endpoint_info",
            size_of::<RemoteEndpointInfo>(),
            vec![
                ("sec_identity", offset_of!(RemoteEndpointInfo, sec_identity)),
                ("tunnel_endpoint", offset_of!(RemoteEndpointInfo, tunnel_endpoint)),
                ("node_id", offset_of!(RemoteEndpointInfo, node_id)),
                ("flags", offset_of!(RemoteEndpointInfo, flags)),
                ("pad", offset_of!(RemoteEndpointInfo, pad)),
            ],
        ),
        (
            "metrics_value",
            size_of::<MetricsValue>(),
            vec![
                ("count", offset_of!(MetricsValue, count)),
                ("bytes", offset_of!(MetricsValue, bytes)),
            ],
        ),
        (
            "policy_key",
            lpm(size_of::<PolicyLpmData>()),
            vec![
                ("prefixlen", 0),
                ("sec_label", lpm(offset_of!(PolicyLpmData, sec_label))),
                ("egress", lpm(offset_of!(PolicyLpmData, egress))),
                ("protocol", lpm(offset_of!(PolicyLpmData, protocol))),
                ("dport", lpm(offset_of!(PolicyLpmData, dport))),
            ],
        ),
        (
            "policy_entry",
            size_of::<PolicyEntry>(),
            vec![
                ("deny", offset_of!(PolicyEntry, deny)),
                ("l4_prefix", offset_of!(PolicyEntry, l4_prefix)),
                ("pad", offset_of!(PolicyEntry, pad)),
                ("cookie", offset_of!(PolicyEntry, cookie)),
            ],
        ),
        (
            "ct_key",
            size_of::<CtKey>(),
            vec![
                ("saddr", offset_of!(CtKey, saddr)),
                ("daddr", offset_of!(CtKey, daddr)),
                ("sport", offset_of!(CtKey, sport)),
                ("dport", offset_of!(CtKey, dport)),
                ("proto", offset_of!(CtKey, proto)),
                ("pad", offset_of!(CtKey, pad)),
            ],
        ),
        (
            "ct_entry",
            size_of::<CtEntry>(),
            vec![
                ("expires", offset_of!(CtEntry, expires)),
                ("packets", offset_of!(CtEntry, packets)),
                ("bytes", offset_of!(CtEntry, bytes)),
                ("src_sec_id", offset_of!(CtEntry, src_sec_id)),
                ("tx_closing", offset_of!(CtEntry, tx_closing)),
                ("rx_closing", offset_of!(CtEntry, rx_closing)),
                ("seen_reply", offset_of!(CtEntry, seen_reply)),
                ("last_report", offset_of!(CtEntry, last_report)),
            ],
        ),
        (
            "lb4_key",
            size_of::<Lb4Key>(),
            vec![
                ("address", offset_of!(Lb4Key, address)),
                ("dport", offset_of!(Lb4Key, dport)),
                ("backend_slot", offset_of!(Lb4Key, backend_slot)),
                ("proto", offset_of!(Lb4Key, proto)),
                ("scope", offset_of!(Lb4Key, scope)),
                ("pad", offset_of!(Lb4Key, pad)),
            ],
        ),
        (
            "lb4_service",
            size_of::<Lb4Service>(),
            vec![
                ("backend_id", offset_of!(Lb4Service, backend_id)),
                ("count", offset_of!(Lb4Service, count)),
                ("rev_nat_index", offset_of!(Lb4Service, rev_nat_index)),
                ("flags", offset_of!(Lb4Service, flags)),
                ("flags2", offset_of!(Lb4Service, flags2)),
                ("qcount", offset_of!(Lb4Service, qcount)),
            ],
        ),
        (
            "lb4_backend",
            size_of::<Lb4Backend>(),
            vec![
                ("address", offset_of!(Lb4Backend, address)),
                ("port", offset_of!(Lb4Backend, port)),
                ("proto", offset_of!(Lb4Backend, proto)),
                ("flags", offset_of!(Lb4Backend, flags)),
                ("cluster_id", offset_of!(Lb4Backend, cluster_id)),
                ("zone", offset_of!(Lb4Backend, zone)),
                ("pad", offset_of!(Lb4Backend, pad)),
            ],
        ),
        (
            "lb4_reverse_nat",
            size_of::<Lb4ReverseNat>(),
            vec![
                ("address", offset_of!(Lb4ReverseNat, address)),
                ("port", offset_of!(Lb4ReverseNat, port)),
                ("pad", offset_of!(Lb4ReverseNat, pad)),
            ],
        ),
        (
            "lb4_conn",
            size_of::<Lb4Conn>(),
            vec![
                ("address", offset_of!(Lb4Conn, address)),
                ("port", offset_of!(Lb4Conn, port)),
                ("rev_nat_index", offset_of!(Lb4Conn, rev_nat_index)),
                ("backend_id", offset_of!(Lb4Conn, backend_id)),
            ],
        ),
        (
            "lb4_src_range_key",
            lpm(size_of::<Lb4SrcRangeData>()),
            vec![
                ("prefixlen", 0),
                ("rev_nat_id", lpm(offset_of!(Lb4SrcRangeData, rev_nat_id))),
                ("pad", lpm(offset_of!(Lb4SrcRangeData, pad))),
                ("addr", lpm(offset_of!(Lb4SrcRangeData, addr))),
            ],
        ),
        (
            "nat4_entry",
            size_of::<Nat4Entry>(),
            vec![
                ("created", offset_of!(Nat4Entry, created)),
                ("to_addr", offset_of!(Nat4Entry, to_addr)),
                ("to_port", offset_of!(Nat4Entry, to_port)),
                ("pad", offset_of!(Nat4Entry, pad)),
            ],
        ),
        (
            "lb4_affinity_key",
            size_of::<Lb4AffinityKey>(),
            vec![
                ("client_id", offset_of!(Lb4AffinityKey, client_id)),
                ("rev_nat_id", offset_of!(Lb4AffinityKey, rev_nat_id)),
                ("netns_cookie", offset_of!(Lb4AffinityKey, netns_cookie)),
                ("pad1", offset_of!(Lb4AffinityKey, pad1)),
                ("pad2", offset_of!(Lb4AffinityKey, pad2)),
            ],
        ),
        (
            "lb_affinity_val",
            size_of::<LbAffinityVal>(),
            vec![
                ("last_used", offset_of!(LbAffinityVal, last_used)),
                ("backend_id", offset_of!(LbAffinityVal, backend_id)),
                ("pad", offset_of!(LbAffinityVal, pad)),
            ],
        ),
        (
            "seta_event",
            size_of::<SetaEvent>(),
            vec![
                ("type", offset_of!(SetaEvent, event_type)),
                ("subtype", offset_of!(SetaEvent, subtype)),
                ("source", offset_of!(SetaEvent, source)),
                ("ifindex", offset_of!(SetaEvent, ifindex)),
                ("src_label", offset_of!(SetaEvent, src_label)),
                ("dst_label", offset_of!(SetaEvent, dst_label)),
                ("verdict", offset_of!(SetaEvent, verdict)),
                ("cookie", offset_of!(SetaEvent, cookie)),
                ("saddr", offset_of!(SetaEvent, saddr)),
                ("daddr", offset_of!(SetaEvent, daddr)),
                ("sport", offset_of!(SetaEvent, sport)),
                ("dport", offset_of!(SetaEvent, dport)),
                ("proto", offset_of!(SetaEvent, proto)),
                ("dir", offset_of!(SetaEvent, dir)),
                ("flags", offset_of!(SetaEvent, flags)),
                ("cpu", offset_of!(SetaEvent, cpu)),
                ("ts", offset_of!(SetaEvent, ts)),
            ],
        ),
        (
            "drop_payload",
            size_of::<DropPayload>(),
            vec![
                ("orig_len", offset_of!(DropPayload, orig_len)),
                ("cap_len", offset_of!(DropPayload, cap_len)),
                ("data", offset_of!(DropPayload, data)),
            ],
        ),
        (
            "seta_sock_event",
            size_of::<SockEvent>(),
            vec![
                ("type", offset_of!(SockEvent, event_type)),
                ("subtype", offset_of!(SockEvent, subtype)),
                ("proto", offset_of!(SockEvent, proto)),
                ("pad", offset_of!(SockEvent, pad)),
                ("daddr", offset_of!(SockEvent, daddr)),
                ("dport", offset_of!(SockEvent, dport)),
                ("pad2", offset_of!(SockEvent, pad2)),
                ("pad3", offset_of!(SockEvent, pad3)),
                ("sock_cookie", offset_of!(SockEvent, sock_cookie)),
                ("cgroup_id", offset_of!(SockEvent, cgroup_id)),
                ("netns_cookie", offset_of!(SockEvent, netns_cookie)),
                ("ts", offset_of!(SockEvent, ts)),
            ],
        ),
        (
            "seta_debug_event",
            size_of::<DebugEvent>(),
            vec![
                ("type", offset_of!(DebugEvent, event_type)),
                ("subtype", offset_of!(DebugEvent, subtype)),
                ("source", offset_of!(DebugEvent, source)),
                ("hash", offset_of!(DebugEvent, hash)),
                ("arg1", offset_of!(DebugEvent, arg1)),
                ("arg2", offset_of!(DebugEvent, arg2)),
                ("arg3", offset_of!(DebugEvent, arg3)),
                ("cpu", offset_of!(DebugEvent, cpu)),
                ("ifindex", offset_of!(DebugEvent, ifindex)),
                ("pad", offset_of!(DebugEvent, pad)),
                ("pad2", offset_of!(DebugEvent, pad2)),
                ("ts", offset_of!(DebugEvent, ts)),
            ],
        ),
    ]
}

#[test]
fn every_shared_struct_matches_its_btf() {
    let mut found: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut all = objects();
    all.push(("tests/abi.o", seta_datapath::objects::TEST_ABI));
    for (obj, bytes) in all {
        let structs = btf_structs(section(bytes, ".BTF"));
        for (name, size, members) in expected() {
            let Some(s) = structs.get(name) else { continue };
            found.entry(name.into()).or_default().push(obj);
            assert_eq!(
                s.size as usize, size,
                "{obj}: sizeof(struct {name}) is {} in C, {size} in seta-abi",
                s.size
            );
            let want: BTreeMap<String, u32> = members.iter().map(|(m, o)| (m.to_string(), *o as u32)).collect();
            assert_eq!(s.members, want, "{obj}: struct {name} members (name -> byte offset), C vs seta-abi");
        }
    }
    for (name, _, _) in expected() {
        assert!(found.contains_key(name), "struct {name} is in no object's BTF");
    }
    // the programs' own BTF checks the structs their maps use, too
    for name in [
        "endpoint_key",
        "endpoint_info",
        "ipcache_key",
        "remote_endpoint_info",
        "ct_key",
        "ct_entry",
        "policy_key",
        "lb4_key",
        "lb4_conn",
    ] {
        assert!(found[name].len() >= 2, "struct {name} only in {:?}", found[name]);
    }
}

#[test]
fn every_map_has_the_name_and_sizes_the_agent_uses() {
    use seta_datapath::maps::*;
    let want: BTreeMap<&str, (u32, u32)> = [
        (MAP_LXC, (size_of::<EndpointKey>(), size_of::<EndpointInfo>())),
        (MAP_LXC_SELF, (4, size_of::<LxcSelf>())),
        (MAP_IPCACHE, (size_of::<IpcacheKey>(), size_of::<RemoteEndpointInfo>())),
        (MAP_METRICS, (4, size_of::<MetricsValue>())),
        (MAP_POLICY, (4, 4)),
        (MAP_CT, (size_of::<CtKey>(), size_of::<CtEntry>())),
        (MAP_EVENTS, (0, 0)),
        (MAP_CONFIG, (4, 4)),
        (MAP_IPBLOCK, (4, 4)),
        ("seta_pol_ep", (4 + size_of::<PolicyLpmData>(), size_of::<PolicyEntry>())),
        (MAP_LB4_SVC, (size_of::<Lb4Key>(), size_of::<Lb4Service>())),
        (MAP_LB4_BE, (4, size_of::<Lb4Backend>())),
        (MAP_LB4_RNAT, (2, size_of::<Lb4ReverseNat>())),
        (MAP_LB4_CONN, (size_of::<CtKey>(), size_of::<Lb4Conn>())),
        (MAP_LB4_AFFINITY, (size_of::<Lb4AffinityKey>(), size_of::<LbAffinityVal>())),
        (MAP_SNAT4, (size_of::<CtKey>(), size_of::<Nat4Entry>())),
        (MAP_EVENTS_LOST, (4, 8)),
        (MAP_LB4_SRC_RANGE, (4 + size_of::<Lb4SrcRangeData>(), 1)),
        (MAP_LB4_MAGLEV, (size_of::<Lb4MaglevKey>(), size_of::<Lb4MaglevChunk>())),
        (MAP_LB4_DSR, (size_of::<CtKey>(), size_of::<Lb4ReverseNat>())),
        (MAP_LB4_REVERSE_SK, (size_of::<SockRevnatKey>(), size_of::<SockRevnatEntry>())),
        (MAP_SOCK_NETNS, (8, 1)),
        (MAP_IPMASQ, (8, 1)),
        (MAP_MASQ_DEV, (4, 4)),
        (MAP_FRAG4, (size_of::<Frag4Key>(), size_of::<Frag4Ports>())),
    ]
    .into_iter()
    .map(|(n, (k, v))| (n, (k as u32, v as u32)))
    .collect();
    let mut seen = std::collections::BTreeSet::new();
    for (obj, bytes) in objects() {
        let o = aya_obj::Object::parse(bytes).unwrap();
        for (name, m) in &o.maps {
            if name.starts_with('.') {
                continue; // .rodata / .bss
            }
            let Some((k, v)) = want.get(name.as_str()) else {
                panic!("{obj}: map {name} is unknown to seta-datapath (add it to the ABI)")
            };
            assert_eq!((m.key_size(), m.value_size()), (*k, *v), "{obj}: map {name} key/value sizes");
            seen.insert(name.clone());
        }
    }
    for n in want.keys() {
        assert!(seen.contains(*n), "map {n} is in no object");
    }
}
