//! Flows as `cilium-dbg monitor` prints datapath events: the drop line, the
//! policy-verdict line and the trace line of each observation point
//! (`pkg/monitor` formats).
use crate::flow::{layer4::Protocol, Flow};

fn proto_and_flags(f: &Flow) -> (u8, String, Option<u32>, Option<u32>) {
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => {
            let names = crate::tcp_flag_names(&t.flags.unwrap_or_default());
            let tail = if names.is_empty() {
                "tcp".to_string()
            } else {
                format!("tcp {}", names.join(", "))
            };
            (6, tail, Some(t.source_port), Some(t.destination_port))
        }
        Some(Protocol::Udp(u)) => (17, "udp".into(), Some(u.source_port), Some(u.destination_port)),
        Some(Protocol::Sctp(s)) => (132, "sctp".into(), Some(s.source_port), Some(s.destination_port)),
        Some(Protocol::IcmPv4(_)) => (1, "icmp".into(), None, None),
        Some(Protocol::IcmPv6(_)) => (58, "icmpv6".into(), None, None),
        None => (0, String::new(), None, None),
    }
}

fn addr(ip: &str, port: Option<u32>) -> String {
    match port {
        Some(p) => format!("{ip}:{p}"),
        None => ip.to_string(),
    }
}

fn identity(id: u32, numeric: bool) -> String {
    match crate::compact::reserved_name(id) {
        Some(n) if !numeric => n.to_string(),
        _ => id.to_string(),
    }
}

/// The monitor line of a drop or policy-verdict flow (None for others).
pub fn line(f: &Flow, numeric: bool) -> Option<String> {
    let (num, tail, sp, dp) = proto_and_flags(f);
    let ip = f.ip.clone().unwrap_or_default();
    let tuple = format!("{} -> {} {tail}", addr(&ip.source, sp), addr(&ip.destination, dp));
    let (src, dst) = (f.source.clone().unwrap_or_default(), f.destination.clone().unwrap_or_default());
    let ingress = f.traffic_direction == crate::flow::TrafficDirection::Ingress as i32;
    let ifindex = f.interface.as_ref().map_or(0, |i| i.index);
    match f.event_type.as_ref().map_or(0, |e| e.r#type) {
        crate::decode::MSG_DROP => {
            let reason = seta_core::drop::reason_name(f.drop_reason.min(255) as u8);
            Some(format!(
                "xx drop ({reason}) flow 0x0 to endpoint {}, ifindex {ifindex}, file {}:0, , identity {}->{}: {tuple}",
                if ingress { dst.id } else { 0 },
                if ingress { "bpf_host.c" } else { "bpf_lxc.c" },
                identity(src.identity, numeric),
                identity(dst.identity, numeric)
            ))
        }
        crate::decode::MSG_POLICY_VERDICT => {
            let (local, remote) = if ingress { (dst.id, src.identity) } else { (src.id, dst.identity) };
            let action = if f.verdict == crate::flow::Verdict::Dropped as i32 {
                "deny"
            } else {
                "allow"
            };
            Some(format!(
                "Policy verdict log: flow 0x0 local EP ID {local}, remote ID {}, proto {num}, {}, action {action}, auth: disabled, match {}, {tuple}",
                identity(remote, numeric),
                if ingress { "ingress" } else { "egress" },
                crate::compact::match_type(f.policy_match_type)
            ))
        }
        crate::decode::MSG_TRACE_SOCK => {
            let point = crate::compact::xlate_point(f);
            let proto = if num == 17 { "udp" } else { "tcp" };
            // the event's address: the flow's source at the reverse points
            let (at, port) = match point.ends_with("-rev") {
                true => (&ip.source, sp),
                false => (&ip.destination, dp),
            };
            Some(format!(
                "[{point}] cgroup_id: {} sock_cookie: {}, dst [{at}]:{} {proto}",
                f.cgroup_id,
                f.socket_cookie,
                port.unwrap_or(0)
            ))
        }
        crate::decode::MSG_TRACE => {
            let state = match f.is_reply {
                Some(true) => "reply",
                _ => "new",
            };
            use crate::flow::TraceObservationPoint as P;
            let summary = match P::try_from(f.trace_observation_point).unwrap_or(P::UnknownPoint) {
                P::ToEndpoint => format!("-> endpoint {}", dst.id),
                P::FromEndpoint => format!("<- endpoint {}", src.id),
                P::ToProxy => "-> proxy".into(),
                P::FromProxy => "<- proxy".into(),
                P::ToHost => "-> host from".into(),
                P::FromHost => "<- host".into(),
                P::ToStack => "-> stack".into(),
                P::FromStack => "<- stack".into(),
                P::ToOverlay => "-> overlay".into(),
                P::FromOverlay => "<- overlay".into(),
                P::ToNetwork => "-> network".into(),
                P::FromNetwork => "<- network".into(),
                P::UnknownPoint => "trace".into(),
            };
            Some(format!(
                "{summary} flow 0x0 , identity {}->{} state {state} ifindex {ifindex} orig-ip {}: {tuple}",
                identity(src.identity, numeric),
                identity(dst.identity, numeric),
                ip.source
            ))
        }
        _ => None,
    }
}

/// `cilium-dbg monitor -v`'s separator, printed before each event.
pub const SEPARATOR: &str = "------------------------------------------------------------------------------";

/// The verbose (`-v`) header of a drop: `CPU 00: MARK 0x0 FROM <ep> DROP:
/// <n> bytes, reason <r>, identity <a>-><b>, to endpoint <id>` (None for
/// other events, whose verbose form is their line).
pub fn drop_header(f: &Flow, numeric: bool) -> Option<String> {
    if f.event_type.as_ref().map_or(0, |e| e.r#type) != crate::decode::MSG_DROP {
        return None;
    }
    let (src, dst) = (f.source.clone().unwrap_or_default(), f.destination.clone().unwrap_or_default());
    let ingress = f.traffic_direction == crate::flow::TrafficDirection::Ingress as i32;
    let from = if ingress { dst.id } else { src.id };
    let reason = seta_core::drop::reason_name(f.drop_reason.min(255) as u8);
    let mut h = format!(
        "CPU {:02}: MARK 0x0 FROM {from} DROP: {} bytes, reason {reason}",
        f.seta_cpu, f.seta_packet_len
    );
    if src.identity != 0 || dst.identity != 0 {
        h += &format!(
            ", identity {}->{}",
            identity(src.identity, numeric),
            identity(dst.identity, numeric)
        );
    }
    if ingress && dst.id != 0 {
        h += &format!(", to endpoint {}", dst.id);
    }
    Some(h)
}

/// Go's `hex.Dump`: 16 bytes a line, offset, two groups of 8, the
/// printable characters.
pub fn hex_dump(data: &[u8]) -> Vec<String> {
    data.chunks(16)
        .enumerate()
        .map(|(i, chunk)| {
            let mut l = format!("{:08x}  ", i * 16);
            for j in 0..16 {
                match chunk.get(j) {
                    Some(b) => l += &format!("{b:02x} "),
                    None => l += "   ",
                }
                if j == 7 {
                    l.push(' ');
                }
            }
            let ascii: String = chunk
                .iter()
                .map(|&b| if (32..=126).contains(&b) { b as char } else { '.' })
                .collect();
            format!("{l} |{ascii}|")
        })
        .collect()
}

fn ip_proto_name(p: u8) -> String {
    match p {
        1 => "ICMPv4".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        132 => "SCTP".into(),
        n => n.to_string(),
    }
}

/// The packet's layers, one line each, as the monitor's dissection prints
/// them (gopacket's layer strings: `Ethernet\t{… SrcMAC=… DstMAC=…
/// EthernetType=IPv4 …}`, `IPv4\t{…}`, `TCP\t{…}`, `UDP\t{…}`,
/// `ICMPv4\t{…}`); what the captured bytes do not hold is left out.
pub fn dissect(p: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    if p.len() < 14 {
        return out;
    }
    let et = u16::from_be_bytes([p[12], p[13]]);
    let et_name = match et {
        0x0800 => "IPv4".to_string(),
        0x86dd => "IPv6".to_string(),
        0x0806 => "ARP".to_string(),
        n => format!("{n:#06x}"),
    };
    out.push(format!(
        "Ethernet\t{{Contents=[..14..] Payload=[..{}..] SrcMAC={} DstMAC={} EthernetType={et_name} Length=0}}",
        p.len() - 14,
        crate::decode::mac(&p[6..12]),
        crate::decode::mac(&p[0..6])
    ));
    let ip = &p[14..];
    let (proto, l4) = match et {
        0x0800 if ip.len() >= 20 => {
            let ihl = ((ip[0] & 0x0f) as usize * 4).clamp(20, ip.len());
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            let flags = match frag >> 13 {
                0 => String::new(),
                2 => "DF".into(),
                1 => "MF".into(),
                f => format!("{f:#x}"),
            };
            out.push(format!(
                "IPv4\t{{Contents=[..{ihl}..] Payload=[..{}..] Version=4 IHL={} TOS={} Length={} Id={} Flags={flags} FragOffset={} TTL={} Protocol={} Checksum={} SrcIP={} DstIP={} Options=[] Padding=[]}}",
                ip.len() - ihl,
                ip[0] & 0x0f,
                ip[1],
                u16::from_be_bytes([ip[2], ip[3]]),
                u16::from_be_bytes([ip[4], ip[5]]),
                frag & 0x1fff,
                ip[8],
                ip_proto_name(ip[9]),
                u16::from_be_bytes([ip[10], ip[11]]),
                std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
                std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            ));
            (ip[9], &ip[ihl..])
        }
        0x86dd if ip.len() >= 40 => {
            let a = |b: &[u8]| std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or([0; 16])).to_string();
            out.push(format!(
                "IPv6\t{{Contents=[..40..] Payload=[..{}..] Version=6 TrafficClass={} FlowLabel={} Length={} NextHeader={} HopLimit={} SrcIP={} DstIP={}}}",
                ip.len() - 40,
                ((ip[0] & 0x0f) << 4) | (ip[1] >> 4),
                u32::from_be_bytes([0, ip[1] & 0x0f, ip[2], ip[3]]),
                u16::from_be_bytes([ip[4], ip[5]]),
                ip_proto_name(ip[6]),
                ip[7],
                a(&ip[8..24]),
                a(&ip[24..40]),
            ));
            (ip[6], &ip[40..])
        }
        _ => return out,
    };
    let be16 = |b: &[u8], o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
    match proto {
        6 if l4.len() >= 20 => {
            let off = ((l4[12] >> 4) as usize * 4).clamp(20, l4.len());
            let fl = l4[13];
            let b = |bit: u8| fl & bit != 0;
            out.push(format!(
                "TCP\t{{Contents=[..{off}..] Payload=[..{}..] SrcPort={} DstPort={} Seq={} Ack={} DataOffset={} FIN={} SYN={} RST={} PSH={} ACK={} URG={} ECE={} CWR={} NS={} Window={} Checksum={} Urgent={} Options=[..{}..] Padding=[]}}",
                l4.len() - off,
                be16(l4, 0),
                be16(l4, 2),
                u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
                u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]]),
                l4[12] >> 4,
                b(0x01), b(0x02), b(0x04), b(0x08), b(0x10), b(0x20), b(0x40), b(0x80),
                l4[12] & 1 != 0,
                be16(l4, 14),
                be16(l4, 16),
                be16(l4, 18),
                off - 20,
            ));
        }
        17 if l4.len() >= 8 => out.push(format!(
            "UDP\t{{Contents=[..8..] Payload=[..{}..] SrcPort={} DstPort={} Length={} Checksum={}}}",
            l4.len() - 8,
            be16(l4, 0),
            be16(l4, 2),
            be16(l4, 4),
            be16(l4, 6)
        )),
        1 if l4.len() >= 8 => out.push(format!(
            "ICMPv4\t{{Contents=[..8..] Payload=[..{}..] TypeCode={} Checksum={} Id={} Seq={}}}",
            l4.len() - 8,
            match (l4[0], l4[1]) {
                (8, 0) => "EchoRequest".to_string(),
                (0, 0) => "EchoReply".to_string(),
                (t, c) => format!("{t}({c})"),
            },
            be16(l4, 2),
            be16(l4, 4),
            be16(l4, 6)
        )),
        58 if l4.len() >= 4 => out.push(format!(
            "ICMPv6\t{{Contents=[..4..] Payload=[..{}..] TypeCode={}({}) Checksum={}}}",
            l4.len() - 4,
            l4[0],
            l4[1],
            be16(l4, 2)
        )),
        _ => {}
    }
    out
}

/// The verbose (`-v`) form of a flow: the separator, a drop's header and
/// its packet (dissected, or as a hex dump with `hex`); for other events
/// the separator and their line.
pub fn verbose(f: &Flow, numeric: bool, hex: bool) -> Option<Vec<String>> {
    let mut out = vec![SEPARATOR.to_string()];
    match drop_header(f, numeric) {
        Some(h) => {
            out.push(h);
            if hex {
                out.extend(hex_dump(&f.seta_packet));
            } else {
                out.extend(dissect(&f.seta_packet));
            }
        }
        None => out.push(line(f, numeric)?),
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use crate::flow::*;

    #[test]
    fn drops_and_verdicts_print_as_cilium_monitor_prints_them() {
        let mut f = Flow {
            verdict: Verdict::Dropped as i32,
            drop_reason: 133,
            ip: Some(Ip {
                source: "10.0.0.1".into(),
                destination: "10.0.0.2".into(),
                ..Default::default()
            }),
            l4: Some(Layer4 {
                protocol: Some(layer4::Protocol::Tcp(Tcp {
                    source_port: 40000,
                    destination_port: 80,
                    flags: Some(TcpFlags {
                        syn: true,
                        ..Default::default()
                    }),
                })),
            }),
            source: Some(Endpoint {
                identity: 5678,
                ..Default::default()
            }),
            destination: Some(Endpoint {
                id: 12,
                identity: 2,
                ..Default::default()
            }),
            traffic_direction: TrafficDirection::Ingress as i32,
            event_type: Some(CiliumEventType { r#type: 1, sub_type: 133 }),
            interface: Some(NetworkInterface {
                index: 5,
                name: String::new(),
            }),
            ..Default::default()
        };
        assert_eq!(
            super::line(&f, false).unwrap(),
            "xx drop (Policy denied) flow 0x0 to endpoint 12, ifindex 5, file bpf_host.c:0, , identity 5678->world: 10.0.0.1:40000 -> 10.0.0.2:80 tcp SYN"
        );
        f.event_type = Some(CiliumEventType { r#type: 5, sub_type: 0 });
        assert_eq!(
            super::line(&f, false).unwrap(),
            "Policy verdict log: flow 0x0 local EP ID 12, remote ID 5678, proto 6, ingress, action deny, auth: disabled, match none, 10.0.0.1:40000 -> 10.0.0.2:80 tcp SYN"
        );
        assert!(super::line(&f, true).unwrap().contains("remote ID 5678"));
        f.event_type = Some(CiliumEventType { r#type: 4, sub_type: 0 });
        f.verdict = Verdict::Forwarded as i32;
        f.is_reply = Some(false);
        f.trace_observation_point = TraceObservationPoint::ToEndpoint as i32;
        assert_eq!(
            super::line(&f, true).unwrap(),
            "-> endpoint 12 flow 0x0 , identity 5678->2 state new ifindex 5 orig-ip 10.0.0.1: 10.0.0.1:40000 -> 10.0.0.2:80 tcp SYN"
        );
    }

    /// Go's `hex.Dump` of its documentation's example.
    #[test]
    fn hex_dump_is_gos() {
        assert_eq!(
            super::hex_dump(b"Go is an open source programming language."),
            [
                "00000000  47 6f 20 69 73 20 61 6e  20 6f 70 65 6e 20 73 6f  |Go is an open so|",
                "00000010  75 72 63 65 20 70 72 6f  67 72 61 6d 6d 69 6e 67  |urce programming|",
                "00000020  20 6c 61 6e 67 75 61 67  65 2e                    | language.|",
            ]
        );
    }

    /// A dropped SYN in verbose form: the separator, the DROP header, and
    /// the frame's layers.
    #[test]
    fn a_drop_in_verbose_form_has_its_header_and_its_layers() {
        let pkt = seta_datapath_free_syn();
        let f = Flow {
            verdict: Verdict::Dropped as i32,
            drop_reason: 133,
            source: Some(Endpoint {
                identity: 5678,
                ..Default::default()
            }),
            destination: Some(Endpoint {
                id: 12,
                identity: 270,
                ..Default::default()
            }),
            traffic_direction: TrafficDirection::Ingress as i32,
            event_type: Some(CiliumEventType { r#type: 1, sub_type: 133 }),
            seta_packet_len: pkt.len() as u32,
            seta_packet: pkt.clone(),
            seta_cpu: 1,
            ..Default::default()
        };
        let v = super::verbose(&f, false, false).unwrap();
        assert_eq!(v[0], super::SEPARATOR);
        assert_eq!(
            v[1],
            "CPU 01: MARK 0x0 FROM 12 DROP: 54 bytes, reason Policy denied, identity 5678->270, to endpoint 12"
        );
        assert_eq!(
            v[2],
            "Ethernet\t{Contents=[..14..] Payload=[..40..] SrcMAC=02:00:00:00:00:01 DstMAC=02:00:00:00:00:02 EthernetType=IPv4 Length=0}"
        );
        assert!(
            v[3].starts_with(
                "IPv4\t{Contents=[..20..] Payload=[..20..] Version=4 IHL=5 TOS=0 Length=40 Id=7 Flags=DF FragOffset=0 TTL=64 Protocol=TCP "
            ),
            "{}",
            v[3]
        );
        assert!(v[3].ends_with(" SrcIP=10.0.0.1 DstIP=10.0.0.2 Options=[] Padding=[]}"), "{}", v[3]);
        assert!(
            v[4].starts_with(
                "TCP\t{Contents=[..20..] Payload=[..0..] SrcPort=40000 DstPort=8080 Seq=1 Ack=0 DataOffset=5 FIN=false SYN=true RST=false "
            ),
            "{}",
            v[4]
        );
        assert_eq!(v.len(), 5);
        let h = super::verbose(&f, false, true).unwrap();
        assert_eq!(h[1], v[1]);
        assert!(
            h[2].starts_with("00000000  02 00 00 00 00 02 02 00  00 00 00 01 08 00 45 00  |"),
            "{}",
            h[2]
        );
        assert_eq!(h.len(), 2 + 4, "54 bytes: 4 lines");
        // other events: the separator and their line
        let t = Flow {
            event_type: Some(CiliumEventType { r#type: 5, sub_type: 0 }),
            ..f
        };
        assert_eq!(super::verbose(&t, false, false).unwrap()[1], super::line(&t, false).unwrap());
    }

    /// Ethernet, IPv4 (DF, TTL 64, id 7) and a TCP SYN 40000 -> 8080, seq 1.
    fn seta_datapath_free_syn() -> Vec<u8> {
        let mut p = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        p.extend_from_slice(&[0x45, 0, 0, 40, 0, 7, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&8080u16.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]);
        p
    }
}
