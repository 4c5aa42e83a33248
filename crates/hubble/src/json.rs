//! Flows as `hubble observe -o json` prints them: protojson of the
//! GetFlowsResponse with the proto's field names, enums by name, unset
//! fields left out, keys in the order a JSON object map sorts them. Written
//! straight into bytes (the export file writes every flow of a busy node,
//! and a generic serializer spends most of its time checking the constant
//! keys for characters to escape); the JSON values (`flow`, `response`) are
//! that text parsed.
use crate::flow::{layer4::Protocol, DropReason, Endpoint, Flow, TrafficDirection, Verdict};
use crate::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use std::collections::HashMap;
use std::hash::BuildHasher;

/// RFC 3339 with nanoseconds, as protojson prints a Timestamp.
pub fn rfc3339(t: &prost_types::Timestamp) -> String {
    seta_core::time::rfc3339_nanos(t.seconds, t.nanos)
}

/// A JSON string: as it is when nothing in it needs escaping (the usual
/// case: names, addresses, labels), else by serde_json's rules.
fn string(b: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\') {
        b.push(b'"');
        b.extend_from_slice(s.as_bytes());
        b.push(b'"');
    } else {
        serde_json::to_writer(&mut *b, s).expect("a string serializes into memory");
    }
}

/// A JSON array of strings.
fn strings(b: &mut Vec<u8>, v: &[String]) {
    b.push(b'[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        string(b, s);
    }
    b.push(b']');
}

fn int(b: &mut Vec<u8>, v: impl itoa::Integer) {
    b.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A JSON object under construction; the caller gives the keys in order
/// (constants that need no escaping).
struct Obj<'b> {
    b: &'b mut Vec<u8>,
    first: bool,
}

impl<'b> Obj<'b> {
    fn new(b: &'b mut Vec<u8>) -> Self {
        b.push(b'{');
        Self { b, first: true }
    }
    /// `"key":`, after a comma unless it is the first; the value follows.
    fn key(&mut self, k: &str) -> &mut Vec<u8> {
        if !self.first {
            self.b.push(b',');
        }
        self.first = false;
        self.b.push(b'"');
        self.b.extend_from_slice(k.as_bytes());
        self.b.extend_from_slice(b"\":");
        self.b
    }
    fn str(&mut self, k: &str, v: &str) {
        string(self.key(k), v);
    }
    fn int(&mut self, k: &str, v: impl itoa::Integer) {
        int(self.key(k), v);
    }
    /// uint64 as protojson writes it: a string
    fn int_string(&mut self, k: &str, v: u64) {
        let b = self.key(k);
        b.push(b'"');
        int(b, v);
        b.push(b'"');
    }
    fn bool(&mut self, k: &str, v: bool) {
        self.key(k).extend_from_slice(if v { b"true" } else { b"false" });
    }
    fn end(self) {
        self.b.push(b'}');
    }
}

fn endpoint(b: &mut Vec<u8>, e: &Endpoint) {
    let mut o = Obj::new(b);
    if e.id != 0 {
        o.int("ID", e.id);
    }
    o.int("identity", e.identity);
    if !e.labels.is_empty() {
        strings(o.key("labels"), &e.labels);
    }
    if !e.namespace.is_empty() {
        o.str("namespace", &e.namespace);
    }
    if !e.pod_name.is_empty() {
        o.str("pod_name", &e.pod_name);
    }
    o.end();
}

/// The `l4` object's value: `{"TCP":{...}}` and so on.
fn l4(b: &mut Vec<u8>, p: &Protocol) {
    let ports = |b: &mut Vec<u8>, name: &str, s: u32, d: u32, flags: Option<&crate::flow::TcpFlags>| {
        let mut outer = Obj::new(b);
        let mut o = Obj::new(outer.key(name));
        o.int("destination_port", d);
        if let Some(f) = flags {
            // the set flags, keys sorted
            let mut m = Obj::new(o.key("flags"));
            for (k, on) in [
                ("ACK", f.ack),
                ("CWR", f.cwr),
                ("ECE", f.ece),
                ("FIN", f.fin),
                ("NS", f.ns),
                ("PSH", f.psh),
                ("RST", f.rst),
                ("SYN", f.syn),
                ("URG", f.urg),
            ] {
                if on {
                    m.bool(k, true);
                }
            }
            m.end();
        }
        o.int("source_port", s);
        o.end();
        outer.end();
    };
    let icmp = |b: &mut Vec<u8>, name: &str, code: u32, ty: u32| {
        let mut outer = Obj::new(b);
        let mut o = Obj::new(outer.key(name));
        o.int("code", code);
        o.int("type", ty);
        o.end();
        outer.end();
    };
    match p {
        Protocol::Tcp(t) => ports(b, "TCP", t.source_port, t.destination_port, Some(&t.flags.unwrap_or_default())),
        Protocol::Udp(u) => ports(b, "UDP", u.source_port, u.destination_port, None),
        Protocol::Sctp(s) => ports(b, "SCTP", s.source_port, s.destination_port, None),
        Protocol::IcmPv4(i) => icmp(b, "ICMPv4", i.code, i.r#type),
        Protocol::IcmPv6(i) => icmp(b, "ICMPv6", i.code, i.r#type),
    }
}

/// A flow side's service, as protojson: `{"name": …, "namespace": …}`.
fn service(b: &mut Vec<u8>, s: &crate::flow::Service) {
    let mut o = Obj::new(b);
    o.str("name", &s.name);
    o.str("namespace", &s.namespace);
    o.end();
}

/// One flow's object; `ep` writes an endpoint's object, `time` is the
/// flow's time as text.
fn flow_into(b: &mut Vec<u8>, f: &Flow, time: Option<&str>, ep: &mut dyn FnMut(&mut Vec<u8>, &Endpoint)) {
    let mut o = Obj::new(b);
    if let Some(ip) = &f.ip {
        let mut j = Obj::new(o.key("IP"));
        j.str("destination", &ip.destination);
        j.str(
            "ipVersion",
            if ip.ip_version == crate::flow::IpVersion::IPv6 as i32 {
                "IPv6"
            } else {
                "IPv4"
            },
        );
        j.str("source", &ip.source);
        j.end();
    }
    o.str("Summary", &crate::compact::summary(f));
    o.str(
        "Type",
        match crate::flow::FlowType::try_from(f.r#type) {
            Ok(t) if f.r#type != 0 => t.as_str_name(),
            _ => "L3_L4",
        },
    );
    if f.cgroup_id != 0 {
        o.int_string("cgroup_id", f.cgroup_id);
    }
    if let Some(e) = &f.destination {
        ep(o.key("destination"), e);
    }
    if let Some(svc) = &f.destination_service {
        service(o.key("destination_service"), svc);
    }
    if f.drop_reason != 0 {
        o.int("drop_reason", f.drop_reason);
        o.str(
            "drop_reason_desc",
            DropReason::try_from(f.drop_reason_desc).map_or("DROP_REASON_UNKNOWN", |d| d.as_str_name()),
        );
    }
    if let Some(e) = &f.ethernet {
        let mut j = Obj::new(o.key("ethernet"));
        j.str("destination", &e.destination);
        j.str("source", &e.source);
        j.end();
    }
    if let Some(e) = &f.event_type {
        let mut j = Obj::new(o.key("event_type"));
        j.int("sub_type", e.sub_type);
        j.int("type", e.r#type);
        j.end();
    }
    if let Some(i) = &f.interface {
        let mut j = Obj::new(o.key("interface"));
        j.int("index", i.index);
        j.end();
    }
    if let Some(r) = f.is_reply {
        o.bool("is_reply", r);
    }
    if let Some(p) = f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        l4(o.key("l4"), p);
    }
    o.str("node_name", &f.node_name);
    if f.sock_xlate_point != 0 {
        o.str(
            "sock_xlate_point",
            crate::flow::SocketTranslationPoint::try_from(f.sock_xlate_point).map_or("SOCK_XLATE_POINT_UNKNOWN", |p| p.as_str_name()),
        );
    }
    if f.socket_cookie != 0 {
        o.int_string("socket_cookie", f.socket_cookie);
    }
    if let Some(e) = &f.source {
        ep(o.key("source"), e);
    }
    if let Some(svc) = &f.source_service {
        service(o.key("source_service"), svc);
    }
    if let Some(t) = time {
        o.str("time", t);
    }
    o.str(
        "traffic_direction",
        TrafficDirection::try_from(f.traffic_direction).map_or("TRAFFIC_DIRECTION_UNKNOWN", |d| d.as_str_name()),
    );
    o.str(
        "verdict",
        Verdict::try_from(f.verdict).map_or("VERDICT_UNKNOWN", |v| v.as_str_name()),
    );
    o.end();
}

/// A response's object; a flow's endpoints by `ep`.
fn response_into(b: &mut Vec<u8>, r: &GetFlowsResponse, ep: &mut dyn FnMut(&mut Vec<u8>, &Endpoint)) {
    let mut o = Obj::new(b);
    match &r.response_types {
        Some(ResponseTypes::Flow(f)) => flow_into(o.key("flow"), f, f.time.as_ref().map(rfc3339).as_deref(), ep),
        Some(ResponseTypes::LostEvents(l)) => {
            let mut j = Obj::new(o.key("lost_events"));
            j.int("num_events_lost", l.num_events_lost);
            j.int("source", l.source);
            j.end();
        }
        _ => {}
    }
    o.str("node_name", &r.node_name);
    if let Some(ResponseTypes::NodeStatus(n)) = &r.response_types {
        let mut j = Obj::new(o.key("node_status"));
        if !n.message.is_empty() {
            j.str("message", &n.message);
        }
        strings(j.key("node_names"), &n.node_names);
        j.str(
            "state_change",
            crate::relay::NodeState::try_from(n.state_change).map_or("UNKNOWN_NODE_STATE", |s| s.as_str_name()),
        );
        j.end();
    }
    if let Some(t) = &r.time {
        o.str("time", &rfc3339(t));
    }
    o.end();
}

fn parse(text: &[u8]) -> serde_json::Value {
    serde_json::from_slice(text).expect("the writer writes JSON")
}

/// One flow's JSON object.
pub fn flow(f: &Flow) -> serde_json::Value {
    let mut b = Vec::with_capacity(1024);
    flow_into(&mut b, f, f.time.as_ref().map(rfc3339).as_deref(), &mut endpoint);
    parse(&b)
}

/// One response's JSON object.
pub fn response(r: &GetFlowsResponse) -> serde_json::Value {
    let mut b = Vec::with_capacity(1024);
    response_into(&mut b, r, &mut endpoint);
    parse(&b)
}

/// A flow of `node` as a response's JSON text into `w` (no newline), as
/// `write_response` writes the response the flow would be sent in.
pub fn write_flow(w: &mut impl std::io::Write, node: &str, f: &Flow) -> std::io::Result<()> {
    FlowWriter::default().write_flow(w, node, f)
}

/// One response as JSON text into `w` (no newline).
pub fn write_response(w: &mut impl std::io::Write, r: &GetFlowsResponse) -> std::io::Result<()> {
    let mut b = Vec::with_capacity(1024);
    response_into(&mut b, r, &mut endpoint);
    w.write_all(&b)
}

/// An endpoint and its text.
type Kept = (Endpoint, Box<[u8]>);

/// `write_flow` for a stream of flows (the export file). The two endpoints
/// of a flow are mostly ones seen before, so their text (with the labels,
/// the bulk of a line) is made once and kept, for at most
/// `FlowWriter::KEEP` endpoints.
#[derive(Default)]
pub struct FlowWriter {
    endpoints: HashMap<u64, Vec<Kept>, foldhash::fast::FixedState>,
    kept: usize,
    buf: Vec<u8>,
}

impl FlowWriter {
    pub const KEEP: usize = 4096;

    /// `e`'s text into `b`, kept for the next time.
    fn endpoint(&mut self, b: &mut Vec<u8>, e: &Endpoint) {
        let key = foldhash::fast::FixedState::with_seed(0).hash_one((e.id, e.identity, &e.namespace, &e.pod_name, &e.labels));
        if let Some((_, text)) = self.endpoints.get(&key).and_then(|v| v.iter().find(|(k, _)| k == e)) {
            b.extend_from_slice(text);
            return;
        }
        if self.kept >= Self::KEEP {
            self.endpoints.clear();
            self.kept = 0;
        }
        let start = b.len();
        endpoint(b, e);
        self.endpoints.entry(key).or_default().push((e.clone(), b[start..].into()));
        self.kept += 1;
    }

    /// As `write_flow`: the same text.
    pub fn write_flow(&mut self, w: &mut impl std::io::Write, node: &str, f: &Flow) -> std::io::Result<()> {
        let mut b = std::mem::take(&mut self.buf);
        b.clear();
        let time = f.time.as_ref().map(rfc3339);
        let mut o = Obj::new(&mut b);
        flow_into(o.key("flow"), f, time.as_deref(), &mut |b, e| self.endpoint(b, e));
        o.str("node_name", node);
        if let Some(t) = &time {
            o.str("time", t);
        }
        o.end();
        let r = w.write_all(&b);
        self.buf = b;
        r
    }
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
        let mut writer = super::FlowWriter::default();
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
            // the export file's writer: the same text, also the second time
            // (its endpoints' text kept from the first)
            for _ in 0..2 {
                let mut w = vec![];
                writer.write_flow(&mut w, "n1", &f).unwrap();
                assert_eq!(String::from_utf8(w).unwrap(), text);
            }
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

    /// The fields and escapes the flows above leave out, and node-status
    /// responses (the text the serde-derived writer made before).
    #[test]
    fn every_field_and_escape() {
        let mut x = flows()[0].clone();
        x.ethernet = Some(Ethernet {
            source: "aa:bb".into(),
            destination: "cc:dd".into(),
        });
        (x.cgroup_id, x.socket_cookie, x.sock_xlate_point, x.r#type) = (77, 1 << 60, 3, 3);
        x.ip.as_mut().unwrap().ip_version = 2;
        x.node_name = "a\\b\n".into();
        x.l4 = Some(Layer4 {
            protocol: Some(layer4::Protocol::IcmPv6(IcmPv6 { r#type: 128, code: 1 })),
        });
        x.event_type = Some(CiliumEventType { r#type: 5, sub_type: -1 });
        x.is_reply = Some(false);
        let r = GetFlowsResponse {
            node_name: "n1".into(),
            time: x.time,
            response_types: Some(get_flows_response::ResponseTypes::Flow(x.clone())),
        };
        let text = |r: &GetFlowsResponse| {
            let mut w = vec![];
            super::write_response(&mut w, r).unwrap();
            String::from_utf8(w).unwrap()
        };
        assert_eq!(
            text(&r),
            r#"{"flow":{"IP":{"destination":"10.0.0.2","ipVersion":"IPv6","source":"10.0.0.1"},"Summary":"","Type":"SOCK","cgroup_id":"77","destination":{"identity":270},"ethernet":{"destination":"cc:dd","source":"aa:bb"},"event_type":{"sub_type":-1,"type":5},"interface":{"index":7},"is_reply":false,"l4":{"ICMPv6":{"code":1,"type":128}},"node_name":"a\\b\n","sock_xlate_point":"SOCK_XLATE_POINT_PRE_DIRECTION_REV","socket_cookie":"1152921504606846976","source":{"ID":3,"identity":270,"labels":["k8s:a=b","k8s:c=\"d\""],"namespace":"x","pod_name":"a"},"time":"2025-12-02T10:04:05.000000123Z","traffic_direction":"EGRESS","verdict":"FORWARDED"},"node_name":"n1","time":"2025-12-02T10:04:05.000000123Z"}"#
        );
        assert_eq!(
            super::flow(&x).to_string(),
            r#"{"IP":{"destination":"10.0.0.2","ipVersion":"IPv6","source":"10.0.0.1"},"Summary":"","Type":"SOCK","cgroup_id":"77","destination":{"identity":270},"ethernet":{"destination":"cc:dd","source":"aa:bb"},"event_type":{"sub_type":-1,"type":5},"interface":{"index":7},"is_reply":false,"l4":{"ICMPv6":{"code":1,"type":128}},"node_name":"a\\b\n","sock_xlate_point":"SOCK_XLATE_POINT_PRE_DIRECTION_REV","socket_cookie":"1152921504606846976","source":{"ID":3,"identity":270,"labels":["k8s:a=b","k8s:c=\"d\""],"namespace":"x","pod_name":"a"},"time":"2025-12-02T10:04:05.000000123Z","traffic_direction":"EGRESS","verdict":"FORWARDED"}"#
        );
        let status = |name: &str, time, state, names: Vec<String>, message: &str| GetFlowsResponse {
            node_name: name.into(),
            time,
            response_types: Some(get_flows_response::ResponseTypes::NodeStatus(crate::relay::NodeStatusEvent {
                state_change: state,
                node_names: names,
                message: message.into(),
            })),
        };
        let t = Some(prost_types::Timestamp { seconds: 5, nanos: 7 });
        assert_eq!(
            text(&status("n\"1", t, 2, vec!["a".into(), "b".into()], "m")),
            r#"{"node_name":"n\"1","node_status":{"message":"m","node_names":["a","b"],"state_change":"NODE_UNAVAILABLE"},"time":"1970-01-01T00:00:05.000000007Z"}"#
        );
        assert_eq!(
            text(&status("n1", None, 1, vec![], "")),
            r#"{"node_name":"n1","node_status":{"node_names":[],"state_change":"NODE_CONNECTED"}}"#
        );
        let empty = GetFlowsResponse {
            node_name: "n1".into(),
            ..Default::default()
        };
        assert_eq!(text(&empty), r#"{"node_name":"n1"}"#);
        assert_eq!(super::response(&empty).to_string(), r#"{"node_name":"n1"}"#);
    }

    /// The export writer keeps a bounded number of endpoints' text, and a
    /// full cache starts again without changing any line.
    #[test]
    fn the_writer_keeps_endpoints_within_its_bound() {
        let mut writer = super::FlowWriter::default();
        let base = flows()[0].clone();
        for i in 0..(super::FlowWriter::KEEP as u32 + 10) {
            let mut f = base.clone();
            f.source.as_mut().unwrap().id = i % (super::FlowWriter::KEEP as u32 + 5);
            f.source.as_mut().unwrap().labels.push(format!("k8s:n={i}"));
            let (mut a, mut b) = (vec![], vec![]);
            super::write_flow(&mut a, "n1", &f).unwrap();
            writer.write_flow(&mut b, "n1", &f).unwrap();
            assert_eq!(a, b);
            assert!(writer.kept <= super::FlowWriter::KEEP);
        }
    }
}
