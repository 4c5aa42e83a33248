//! Hubble's compact line (`hubble observe -o compact`):
//! `<time> [<node>]: <src> <srcID> <arrow> <dst> <dstID> <type> <verdict> (<summary>)`.
use crate::flow::{layer4::Protocol, Flow, Verdict};

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

pub(crate) use seta_core::time::civil;

/// Go's StampMilli (`Jan _2 15:04:05.000`) of a Unix time, in UTC.
pub fn stamp_milli(secs: i64, nanos: i32) -> String {
    let rem = secs.rem_euclid(86400);
    let (_, month, day) = civil(secs.div_euclid(86400));
    format!(
        "{} {:>2} {:02}:{:02}:{:02}.{:03}",
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        nanos / 1_000_000
    )
}

/// The name Hubble prints for a reserved identity.
pub fn reserved_name(id: u32) -> Option<&'static str> {
    Some(match id {
        1 => "host",
        2 => "world",
        3 => "unmanaged",
        4 => "health",
        5 => "init",
        6 => "remote-node",
        7 => "kube-apiserver",
        8 => "ingress",
        _ => return None,
    })
}

/// `ns/pod:port`, else `ns/service:port`, else `ip:port`, and `(ID:n)` or
/// the reserved name.
fn side(f: &Flow, source: bool) -> (String, String) {
    let ep = if source { f.source.as_ref() } else { f.destination.as_ref() };
    let ip =
        f.ip.as_ref()
            .map(|i| if source { i.source.clone() } else { i.destination.clone() })
            .unwrap_or_default();
    let (sp, dp) = crate::l4_ports(f);
    let port = if source { sp } else { dp };
    let svc = if source {
        f.source_service.as_ref()
    } else {
        f.destination_service.as_ref()
    };
    // a pod, else the service at whose frontend the side is, as Hubble
    let host = match (ep, svc) {
        (Some(e), _) if !e.pod_name.is_empty() => format!("{}/{}", e.namespace, e.pod_name),
        (_, Some(s)) if !s.name.is_empty() => format!("{}/{}", s.namespace, s.name),
        _ => ip,
    };
    let addr = match port {
        Some(p) if p != 0 => format!("{host}:{p}"),
        _ => host,
    };
    let id = ep.map_or(0, |e| e.identity);
    let ident = match reserved_name(id) {
        Some(n) => format!("({n})"),
        None => format!("(ID:{id})"),
    };
    (addr, ident)
}

/// What happened, as Hubble names it.
fn kind(f: &Flow) -> String {
    let t = f.event_type.as_ref().map_or(0, |e| e.r#type);
    match t {
        // monitor message types: 1 drop, 4 trace, 5 policy verdict
        1 => drop_text(f),
        5 => {
            let m = match_type(f.policy_match_type);
            let dir = match f.traffic_direction {
                1 => "INGRESS",
                2 => "EGRESS",
                _ => "UNKNOWN",
            };
            format!("policy-verdict:{m} {dir}")
        }
        // socket-LB's translations, as Hubble names them
        7 => xlate_point(f).into(),
        _ => crate::flow::TraceObservationPoint::try_from(f.trace_observation_point)
            .map(|p| p.as_str_name().to_ascii_lowercase().replace('_', "-"))
            .unwrap_or_else(|_| "trace".into()),
    }
}

/// Cilium's PolicyMatchType by number: its name, and Hubble's metric label
/// (the name in lower case).
const MATCH_TYPES: [(&str, &str); 7] = [
    ("none", "none"),
    ("L3-Only", "l3-only"),
    ("L3-L4", "l3-l4"),
    ("L4-Only", "l4-only"),
    ("all", "all"),
    ("L3-Proto", "l3-proto"),
    ("Proto-Only", "proto-only"),
];

/// A policy verdict's match type, as Hubble and cilium monitor name it.
pub fn match_type(m: u32) -> &'static str {
    MATCH_TYPES.get(m as usize).map_or("unknown", |t| t.0)
}

/// The match type as Hubble's policy metric labels it.
pub fn match_type_label(m: u32) -> &'static str {
    MATCH_TYPES.get(m as usize).map_or("unknown", |t| t.1)
}

/// A socket-LB translation point, as Hubble and cilium monitor name it.
pub fn xlate_point(f: &Flow) -> &'static str {
    use crate::flow::SocketTranslationPoint as P;
    match P::try_from(f.sock_xlate_point) {
        Ok(P::SockXlatePointPreDirectionFwd) => "pre-xlate-fwd",
        Ok(P::SockXlatePointPostDirectionFwd) => "post-xlate-fwd",
        Ok(P::SockXlatePointPreDirectionRev) => "pre-xlate-rev",
        Ok(P::SockXlatePointPostDirectionRev) => "post-xlate-rev",
        _ => "SOCK_XLATE_POINT_UNKNOWN",
    }
}

/// A drop's reason text, as Cilium prints it.
fn drop_text(f: &Flow) -> String {
    let code = if f.drop_reason_desc != 0 {
        f.drop_reason_desc
    } else {
        f.drop_reason as i32
    };
    seta_core::drop::reason_name(code.clamp(0, 255) as u8)
}

/// The summary in parentheses.
pub fn summary(f: &Flow) -> String {
    // a socket's translation: no packet, only its protocol
    if f.r#type == crate::flow::FlowType::Sock as i32 {
        return match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
            Some(Protocol::Tcp(_)) => "TCP".into(),
            Some(Protocol::Udp(_)) => "UDP".into(),
            _ => String::new(),
        };
    }
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => {
            format!("TCP Flags: {}", crate::tcp_flag_names(&t.flags.unwrap_or_default()).join(", "))
        }
        Some(Protocol::Udp(_)) => "UDP".into(),
        Some(Protocol::IcmPv4(i)) => match i.r#type {
            8 => "ICMPv4 EchoRequest".into(),
            0 => "ICMPv4 EchoReply".into(),
            3 => "ICMPv4 DestinationUnreachable".into(),
            t => format!("ICMPv4 type {t}"),
        },
        Some(Protocol::Sctp(_)) => "SCTP".into(),
        Some(Protocol::IcmPv6(i)) => match i.r#type {
            1 => "ICMPv6 DestinationUnreachable".into(),
            128 => "ICMPv6 EchoRequest".into(),
            129 => "ICMPv6 EchoReply".into(),
            133 => "ICMPv6 RouterSolicitation".into(),
            134 => "ICMPv6 RouterAdvertisement".into(),
            135 => "ICMPv6 NeighborSolicitation".into(),
            136 => "ICMPv6 NeighborAdvertisement".into(),
            143 => "ICMPv6 MLDv2MulticastListenerReport".into(),
            t => format!("ICMPv6 type {t}"),
        },
        _ => String::new(),
    }
}

/// A flow's compact line in parts: the sides as they are printed (a reply
/// is turned around), the arrow, what happened and the verdict word.
pub struct Parts {
    pub time: String,
    pub source: (String, String),
    pub destination: (String, String),
    pub arrow: &'static str,
    pub kind: String,
    pub verdict: &'static str,
    pub summary: String,
}

impl Parts {
    pub fn of(f: &Flow) -> Self {
        let time = f.time.as_ref().map_or_else(String::new, |t| stamp_milli(t.seconds, t.nanos));
        let (mut src, mut dst) = (side(f, true), side(f, false));
        let arrow = match f.is_reply {
            Some(true) => {
                std::mem::swap(&mut src, &mut dst);
                "<-"
            }
            Some(false) => "->",
            None => "<>",
        };
        // a policy verdict says what the policy decided, as Hubble prints it
        let policy = f.event_type.as_ref().is_some_and(|e| e.r#type == 5);
        let verdict = match Verdict::try_from(f.verdict) {
            Ok(Verdict::Forwarded | Verdict::Redirected) if policy => "ALLOWED",
            Ok(Verdict::Dropped | Verdict::Error) if policy => "DENIED",
            Ok(Verdict::Audit) if policy => "AUDITED",
            v => v.map_or("UNKNOWN", |v| v.as_str_name()),
        };
        Self {
            time,
            source: src,
            destination: dst,
            arrow,
            kind: kind(f),
            verdict,
            summary: summary(f),
        }
    }
}

/// One flow as Hubble's compact line (node name shown when `node`).
pub fn line(f: &Flow, node: bool) -> String {
    let p = Parts::of(f);
    let node = if node && !f.node_name.is_empty() {
        format!(" [{}]", f.node_name)
    } else {
        String::new()
    };
    format!(
        "{}{node}: {} {} {} {} {} {} {} ({})",
        p.time, p.source.0, p.source.1, p.arrow, p.destination.0, p.destination.1, p.kind, p.verdict, p.summary
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::*;

    #[test]
    fn a_drop_prints_as_hubble_prints_it() {
        let f = Flow {
            time: Some(prost_types::Timestamp {
                seconds: 1_764_669_845, // 2025-12-02 10:04:05 UTC
                nanos: 123_000_000,
            }),
            verdict: Verdict::Dropped as i32,
            drop_reason: 133,
            drop_reason_desc: DropReason::PolicyDenied as i32,
            ip: Some(Ip {
                source: "10.0.0.1".into(),
                destination: "10.0.0.2".into(),
                ip_version: IpVersion::IPv4 as i32,
                encrypted: false,
            }),
            l4: Some(Layer4 {
                protocol: Some(layer4::Protocol::Tcp(Tcp {
                    source_port: 43210,
                    destination_port: 80,
                    flags: Some(TcpFlags {
                        syn: true,
                        ..Default::default()
                    }),
                })),
            }),
            source: Some(Endpoint {
                identity: 270,
                namespace: "x".into(),
                pod_name: "a".into(),
                ..Default::default()
            }),
            destination: Some(Endpoint {
                identity: 2,
                ..Default::default()
            }),
            event_type: Some(CiliumEventType { r#type: 1, sub_type: 133 }),
            is_reply: Some(false),
            node_name: "n1".into(),
            ..Default::default()
        };
        assert_eq!(
            line(&f, false),
            "Dec  2 10:04:05.123: x/a:43210 (ID:270) -> 10.0.0.2:80 (world) Policy denied DROPPED (TCP Flags: SYN)"
        );
        assert!(line(&f, true).starts_with("Dec  2 10:04:05.123 [n1]: "));
        assert_eq!(stamp_milli(0, 0), "Jan  1 00:00:00.000");
        assert_eq!(stamp_milli(951_827_696, 5_000_000), "Feb 29 12:34:56.005", "a leap day");
    }
}
