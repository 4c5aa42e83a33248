//! Flows as `hubble observe -o json` prints them: protojson of the
//! GetFlowsResponse with the proto's field names, enums by name, unset
//! fields left out.
use crate::flow::{layer4::Protocol, DropReason, Endpoint, Flow, TrafficDirection, Verdict};
use crate::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use serde_json::{json, Map, Value};

/// RFC 3339 with nanoseconds, as protojson prints a Timestamp.
pub fn rfc3339(t: &prost_types::Timestamp) -> String {
    seta_core::time::rfc3339_nanos(t.seconds, t.nanos)
}

fn endpoint(e: &Endpoint) -> Value {
    let mut m = Map::new();
    if e.id != 0 {
        m.insert("ID".into(), json!(e.id));
    }
    m.insert("identity".into(), json!(e.identity));
    if !e.namespace.is_empty() {
        m.insert("namespace".into(), json!(e.namespace));
    }
    if !e.labels.is_empty() {
        m.insert("labels".into(), json!(e.labels));
    }
    if !e.pod_name.is_empty() {
        m.insert("pod_name".into(), json!(e.pod_name));
    }
    Value::Object(m)
}

/// One flow's JSON object.
pub fn flow(f: &Flow) -> Value {
    let mut m = Map::new();
    if let Some(t) = &f.time {
        m.insert("time".into(), json!(rfc3339(t)));
    }
    m.insert(
        "verdict".into(),
        json!(Verdict::try_from(f.verdict).map_or("VERDICT_UNKNOWN", |v| v.as_str_name())),
    );
    if f.drop_reason != 0 {
        m.insert("drop_reason".into(), json!(f.drop_reason));
        let desc = DropReason::try_from(f.drop_reason_desc).map_or("DROP_REASON_UNKNOWN", |d| d.as_str_name());
        m.insert("drop_reason_desc".into(), json!(desc));
    }
    if let Some(ip) = &f.ip {
        m.insert(
            "IP".into(),
            json!({"source": ip.source, "destination": ip.destination, "ipVersion": "IPv4"}),
        );
    }
    if let Some(p) = f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        let l4 = match p {
            Protocol::Tcp(t) => {
                let mut flags = Map::new();
                for n in crate::tcp_flag_names(&t.flags.unwrap_or_default()) {
                    flags.insert(n.into(), json!(true));
                }
                json!({"TCP": {"source_port": t.source_port, "destination_port": t.destination_port, "flags": flags}})
            }
            Protocol::Udp(u) => json!({"UDP": {"source_port": u.source_port, "destination_port": u.destination_port}}),
            Protocol::Sctp(s) => json!({"SCTP": {"source_port": s.source_port, "destination_port": s.destination_port}}),
            Protocol::IcmPv4(i) => json!({"ICMPv4": {"type": i.r#type, "code": i.code}}),
            Protocol::IcmPv6(i) => json!({"ICMPv6": {"type": i.r#type, "code": i.code}}),
        };
        m.insert("l4".into(), l4);
    }
    if let Some(e) = &f.source {
        m.insert("source".into(), endpoint(e));
    }
    if let Some(e) = &f.destination {
        m.insert("destination".into(), endpoint(e));
    }
    m.insert("Type".into(), json!("L3_L4"));
    m.insert("node_name".into(), json!(f.node_name));
    if let Some(e) = &f.event_type {
        m.insert("event_type".into(), json!({"type": e.r#type, "sub_type": e.sub_type}));
    }
    let dir = TrafficDirection::try_from(f.traffic_direction).map_or("TRAFFIC_DIRECTION_UNKNOWN", |d| d.as_str_name());
    m.insert("traffic_direction".into(), json!(dir));
    if let Some(r) = f.is_reply {
        m.insert("is_reply".into(), json!(r));
    }
    if let Some(i) = &f.interface {
        m.insert("interface".into(), json!({"index": i.index}));
    }
    m.insert("Summary".into(), json!(crate::compact::summary(f)));
    Value::Object(m)
}

/// One response as a JSON line.
pub fn response(r: &GetFlowsResponse) -> Value {
    let mut m = Map::new();
    match &r.response_types {
        Some(ResponseTypes::Flow(f)) => {
            m.insert("flow".into(), flow(f));
        }
        Some(ResponseTypes::LostEvents(l)) => {
            m.insert(
                "lost_events".into(),
                json!({"source": l.source, "num_events_lost": l.num_events_lost}),
            );
        }
        Some(ResponseTypes::NodeStatus(n)) => {
            m.insert("node_status".into(), json!({"node_names": n.node_names, "message": n.message}));
        }
        None => {}
    }
    m.insert("node_name".into(), json!(r.node_name));
    if let Some(t) = &r.time {
        m.insert("time".into(), json!(rfc3339(t)));
    }
    Value::Object(m)
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
