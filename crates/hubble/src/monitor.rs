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
                "Policy verdict log: flow 0x0 local EP ID {local}, remote ID {}, proto {num}, {}, action {action}, auth: disabled, match none, {tuple}",
                identity(remote, numeric),
                if ingress { "ingress" } else { "egress" }
            ))
        }
        crate::decode::MSG_TRACE_SOCK => {
            let point = crate::compact::xlate_point(f);
            let proto = if num == 17 { "udp" } else { "tcp" };
            Some(format!(
                "[{point}] cgroup_id: {} sock_cookie: {}, dst [{}]:{} {proto}",
                f.cgroup_id,
                f.socket_cookie,
                ip.destination,
                dp.unwrap_or(0)
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
}
