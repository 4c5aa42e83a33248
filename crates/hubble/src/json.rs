//! Flows as `hubble observe -o json` prints them: protojson of the
//! GetFlowsResponse with the proto's field names, enums by name, unset
//! fields left out. Serialized straight from the flow (no JSON tree in
//! between: the export file writes every flow of a busy node), with the keys
//! in the order a JSON object map would sort them.
use crate::flow::{layer4::Protocol, DropReason, Endpoint, Flow, TrafficDirection, Verdict};
use crate::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use serde::Serialize;
use std::collections::BTreeMap;

/// RFC 3339 with nanoseconds, as protojson prints a Timestamp.
pub fn rfc3339(t: &prost_types::Timestamp) -> String {
    seta_core::time::rfc3339_nanos(t.seconds, t.nanos)
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

#[derive(Serialize)]
struct JEndpoint<'a> {
    #[serde(rename = "ID", skip_serializing_if = "is_zero")]
    id: u32,
    identity: u32,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    labels: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    namespace: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pod_name: &'a str,
}

impl<'a> JEndpoint<'a> {
    fn of(e: &'a Endpoint) -> Self {
        Self {
            id: e.id,
            identity: e.identity,
            labels: &e.labels,
            namespace: &e.namespace,
            pod_name: &e.pod_name,
        }
    }
}

#[derive(Serialize)]
struct JIp<'a> {
    destination: &'a str,
    #[serde(rename = "ipVersion")]
    ip_version: &'static str,
    source: &'a str,
}

#[derive(Serialize)]
struct JEthernet<'a> {
    destination: &'a str,
    source: &'a str,
}

#[derive(Serialize)]
struct JPorts {
    destination_port: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<BTreeMap<&'static str, bool>>,
    source_port: u32,
}

#[derive(Serialize)]
struct JIcmp {
    code: u32,
    #[serde(rename = "type")]
    ty: u32,
}

#[derive(Serialize)]
enum JL4 {
    #[serde(rename = "ICMPv4")]
    Icmp4(JIcmp),
    #[serde(rename = "ICMPv6")]
    Icmp6(JIcmp),
    #[serde(rename = "SCTP")]
    Sctp(JPorts),
    #[serde(rename = "TCP")]
    Tcp(JPorts),
    #[serde(rename = "UDP")]
    Udp(JPorts),
}

#[derive(Serialize)]
struct JEventType {
    sub_type: i32,
    #[serde(rename = "type")]
    ty: i32,
}

#[derive(Serialize)]
struct JInterface {
    index: u32,
}

#[derive(Serialize)]
struct JFlow<'a> {
    #[serde(rename = "IP", skip_serializing_if = "Option::is_none")]
    ip: Option<JIp<'a>>,
    #[serde(rename = "Summary")]
    summary: String,
    #[serde(rename = "Type")]
    ty: &'static str,
    /// uint64 as protojson writes it: a string
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<JEndpoint<'a>>,
    #[serde(skip_serializing_if = "is_zero")]
    drop_reason: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    drop_reason_desc: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ethernet: Option<JEthernet<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_type: Option<JEventType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<JInterface>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_reply: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    l4: Option<JL4>,
    node_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sock_xlate_point: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_cookie: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<JEndpoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    traffic_direction: &'static str,
    verdict: &'static str,
}

impl<'a> JFlow<'a> {
    fn of(f: &'a Flow) -> Self {
        let ports = |s, d, flags| JPorts {
            destination_port: d,
            flags,
            source_port: s,
        };
        let l4 = f.l4.as_ref().and_then(|l| l.protocol.as_ref()).map(|p| match p {
            Protocol::Tcp(t) => {
                let flags = crate::tcp_flag_names(&t.flags.unwrap_or_default())
                    .into_iter()
                    .map(|n| (n, true))
                    .collect();
                JL4::Tcp(ports(t.source_port, t.destination_port, Some(flags)))
            }
            Protocol::Udp(u) => JL4::Udp(ports(u.source_port, u.destination_port, None)),
            Protocol::Sctp(s) => JL4::Sctp(ports(s.source_port, s.destination_port, None)),
            Protocol::IcmPv4(i) => JL4::Icmp4(JIcmp {
                code: i.code,
                ty: i.r#type,
            }),
            Protocol::IcmPv6(i) => JL4::Icmp6(JIcmp {
                code: i.code,
                ty: i.r#type,
            }),
        });
        Self {
            ip: f.ip.as_ref().map(|ip| JIp {
                destination: &ip.destination,
                ip_version: if ip.ip_version == crate::flow::IpVersion::IPv6 as i32 {
                    "IPv6"
                } else {
                    "IPv4"
                },
                source: &ip.source,
            }),
            summary: crate::compact::summary(f),
            ty: match crate::flow::FlowType::try_from(f.r#type) {
                Ok(t) if f.r#type != 0 => t.as_str_name(),
                _ => "L3_L4",
            },
            cgroup_id: (f.cgroup_id != 0).then(|| f.cgroup_id.to_string()),
            destination: f.destination.as_ref().map(JEndpoint::of),
            drop_reason: f.drop_reason,
            drop_reason_desc: (f.drop_reason != 0)
                .then(|| DropReason::try_from(f.drop_reason_desc).map_or("DROP_REASON_UNKNOWN", |d| d.as_str_name())),
            ethernet: f.ethernet.as_ref().map(|e| JEthernet {
                destination: &e.destination,
                source: &e.source,
            }),
            event_type: f.event_type.as_ref().map(|e| JEventType {
                sub_type: e.sub_type,
                ty: e.r#type,
            }),
            interface: f.interface.as_ref().map(|i| JInterface { index: i.index }),
            is_reply: f.is_reply,
            l4,
            node_name: &f.node_name,
            sock_xlate_point: (f.sock_xlate_point != 0).then(|| {
                crate::flow::SocketTranslationPoint::try_from(f.sock_xlate_point).map_or("SOCK_XLATE_POINT_UNKNOWN", |p| p.as_str_name())
            }),
            socket_cookie: (f.socket_cookie != 0).then(|| f.socket_cookie.to_string()),
            source: f.source.as_ref().map(JEndpoint::of),
            time: f.time.as_ref().map(rfc3339),
            traffic_direction: TrafficDirection::try_from(f.traffic_direction).map_or("TRAFFIC_DIRECTION_UNKNOWN", |d| d.as_str_name()),
            verdict: Verdict::try_from(f.verdict).map_or("VERDICT_UNKNOWN", |v| v.as_str_name()),
        }
    }
}

#[derive(Serialize)]
struct JLost {
    num_events_lost: u64,
    source: i32,
}

#[derive(Serialize)]
struct JNodeStatus<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    node_names: &'a [String],
    state_change: &'static str,
}

#[derive(Serialize)]
struct JResponse<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<JFlow<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lost_events: Option<JLost>,
    node_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_status: Option<JNodeStatus<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
}

impl<'a> JResponse<'a> {
    fn of(r: &'a GetFlowsResponse) -> Self {
        let mut j = Self {
            flow: None,
            lost_events: None,
            node_name: &r.node_name,
            node_status: None,
            time: r.time.as_ref().map(rfc3339),
        };
        match &r.response_types {
            Some(ResponseTypes::Flow(f)) => j.flow = Some(JFlow::of(f)),
            Some(ResponseTypes::LostEvents(l)) => {
                j.lost_events = Some(JLost {
                    num_events_lost: l.num_events_lost,
                    source: l.source,
                })
            }
            Some(ResponseTypes::NodeStatus(n)) => {
                j.node_status = Some(JNodeStatus {
                    message: &n.message,
                    node_names: &n.node_names,
                    state_change: crate::relay::NodeState::try_from(n.state_change).map_or("UNKNOWN_NODE_STATE", |s| s.as_str_name()),
                })
            }
            None => {}
        }
        j
    }
}

/// One flow's JSON object.
pub fn flow(f: &Flow) -> serde_json::Value {
    serde_json::to_value(JFlow::of(f)).expect("a flow serializes")
}

/// One response's JSON object.
pub fn response(r: &GetFlowsResponse) -> serde_json::Value {
    serde_json::to_value(JResponse::of(r)).expect("a response serializes")
}

/// A flow of `node` as a response's JSON text into `w` (no newline), as
/// `write_response` writes the response the flow would be sent in.
pub fn write_flow(w: &mut impl std::io::Write, node: &str, f: &Flow) -> std::io::Result<()> {
    let j = JResponse {
        flow: Some(JFlow::of(f)),
        lost_events: None,
        node_name: node,
        node_status: None,
        time: f.time.as_ref().map(rfc3339),
    };
    serde_json::to_writer(w, &j).map_err(std::io::Error::other)
}

/// One response as JSON text into `w` (no newline).
pub fn write_response(w: &mut impl std::io::Write, r: &GetFlowsResponse) -> std::io::Result<()> {
    serde_json::to_writer(w, &JResponse::of(r)).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        let t = prost_types::Timestamp {
            seconds: 1_764_669_845,
            nanos: 123_000_000,
        };
        assert_eq!(super::rfc3339(&t), "2025-12-02T10:04:05.123000000Z");
    }
}

#[cfg(test)]
mod golden {
    use crate::flow::*;
    use crate::observer::*;
    fn flows() -> Vec<Flow> {
        let ep = |id: u32, labels: Vec<String>, ns: &str, pod: &str| Endpoint {
            id,
            identity: 270,
            namespace: ns.into(),
            labels,
            pod_name: pod.into(),
            ..Default::default()
        };
        let base = Flow {
            time: Some(prost_types::Timestamp {
                seconds: 1_764_669_845,
                nanos: 123,
            }),
            verdict: Verdict::Forwarded as i32,
            ip: Some(Ip {
                source: "10.0.0.1".into(),
                destination: "10.0.0.2".into(),
                ip_version: 1,
                encrypted: false,
            }),
            source: Some(ep(3, vec!["k8s:a=b".into(), "k8s:c=\"d\"".into()], "x", "a")),
            destination: Some(ep(0, vec![], "", "")),
            event_type: Some(CiliumEventType { r#type: 4, sub_type: 3 }),
            is_reply: Some(true),
            interface: Some(NetworkInterface {
                index: 7,
                ..Default::default()
            }),
            node_name: "n1".into(),
            traffic_direction: TrafficDirection::Egress as i32,
            ..Default::default()
        };
        let l4 = |p| Some(Layer4 { protocol: Some(p) });
        vec![
            Flow {
                l4: l4(layer4::Protocol::Tcp(Tcp {
                    source_port: 1,
                    destination_port: 2,
                    flags: Some(TcpFlags {
                        syn: true,
                        ack: true,
                        fin: true,
                        ..Default::default()
                    }),
                })),
                ..base.clone()
            },
            Flow {
                l4: l4(layer4::Protocol::Tcp(Tcp {
                    source_port: 1,
                    destination_port: 2,
                    flags: None,
                })),
                ..base.clone()
            },
            Flow {
                l4: l4(layer4::Protocol::Udp(Udp {
                    source_port: 1,
                    destination_port: 53,
                })),
                verdict: Verdict::Dropped as i32,
                drop_reason: 133,
                drop_reason_desc: DropReason::PolicyDenied as i32,
                ..base.clone()
            },
            Flow {
                l4: l4(layer4::Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 })),
                drop_reason: 158,
                drop_reason_desc: 9999,
                ..base.clone()
            },
            Flow {
                l4: l4(layer4::Protocol::Sctp(Sctp {
                    source_port: 5,
                    destination_port: 6,
                })),
                ..base.clone()
            },
            Flow::default(),
            Flow {
                ip: None,
                source: None,
                is_reply: None,
                time: None,
                event_type: None,
                interface: None,
                ..base.clone()
            },
        ]
    }
    /// The text is protojson as `hubble observe -o json` prints it, keys
    /// sorted, unset fields out; the JSON value is the same object.
    #[test]
    fn responses_print_as_hubble_prints_them() {
        let golden = [
            r#"{"flow":{"IP":{"destination":"10.0.0.2","ipVersion":"IPv4","source":"10.0.0.1"},"Summary":"TCP Flags: SYN, ACK, FIN","Type":"L3_L4","destination":{"identity":270},"event_type":{"sub_type":3,"type":4},"interface":{"index":7},"is_reply":true,"l4":{"TCP":{"destination_port":2,"flags":{"ACK":true,"FIN":true,"SYN":true},"source_port":1}},"node_name":"n1","source":{"ID":3,"identity":270,"labels":["k8s:a=b","k8s:c=\"d\""],"namespace":"x","pod_name":"a"},"time":"2025-12-02T10:04:05.000000123Z","traffic_direction":"EGRESS","verdict":"FORWARDED"},"node_name":"n1","time":"2025-12-02T10:04:05.000000123Z"}"#,
        ];
        for (i, f) in flows().into_iter().enumerate() {
            let r = GetFlowsResponse {
                node_name: "n1".into(),
                time: f.time,
                response_types: Some(get_flows_response::ResponseTypes::Flow(f.clone())),
            };
            let mut w = vec![];
            super::write_response(&mut w, &r).unwrap();
            let text = String::from_utf8(w).unwrap();
            if let Some(g) = golden.get(i) {
                assert_eq!(&text, g);
            }
            let mut w = vec![];
            super::write_flow(&mut w, "n1", &f).unwrap();
            assert_eq!(String::from_utf8(w).unwrap(), text);
            assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), super::response(&r));
            assert_eq!(super::response(&r)["flow"], super::flow(&f));
        }
        let drop = super::flow(&flows()[2]);
        assert_eq!(
            (drop["drop_reason"].as_u64(), drop["drop_reason_desc"].as_str()),
            (Some(133), Some("POLICY_DENIED"))
        );
        assert_eq!(super::flow(&flows()[3])["drop_reason_desc"], "DROP_REASON_UNKNOWN");
        let lost = GetFlowsResponse {
            node_name: "n1".into(),
            time: None,
            response_types: Some(get_flows_response::ResponseTypes::LostEvents(LostEvent {
                source: 2,
                num_events_lost: 9,
                ..Default::default()
            })),
        };
        let mut w = vec![];
        super::write_response(&mut w, &lost).unwrap();
        assert_eq!(
            String::from_utf8(w).unwrap(),
            r#"{"lost_events":{"num_events_lost":9,"source":2},"node_name":"n1"}"#
        );
    }
}
