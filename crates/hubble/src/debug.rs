//! The datapath's debug messages (Hubble's GetDebugEvents, `cilium-dbg
//! monitor -t debug`): a `seta_debug_event` record as a DebugEvent with
//! Cilium's message text, and the lines Hubble and the monitor print. Pure.
use crate::decode::Context;
use crate::flow::{DebugEvent, DebugEventType, Endpoint};
use crate::observer::GetDebugEventsResponse;
use std::net::Ipv4Addr;

/// An address the datapath passed as a u32 (network order in memory).
fn ip4(v: u32) -> Ipv4Addr {
    Ipv4Addr::from(v.to_ne_bytes())
}

/// A port the datapath passed in network order.
fn port(v: u32) -> u16 {
    u16::from_be(v as u16)
}

fn ct_state(s: u32) -> String {
    match s {
        0 => "New".into(),
        1 => "Established".into(),
        2 => "Reply".into(),
        3 => "Related".into(),
        other => seta_core::drop::reason_name(other as u8).to_string(),
    }
}

/// Cilium's text of a debug message (`pkg/monitor/datapath_debug.go`), for
/// the types the datapath sends.
pub fn message(t: u8, a1: u32, a2: u32, a3: u32) -> String {
    use seta_abi::*;
    match t {
        DBG_GENERIC => format!("No message, arg1={a1} ({a1:#x}) arg2={a2} ({a2:#x})"),
        DBG_LOCAL_DELIVERY => format!("Attempting local delivery for container id {a1} from seclabel {a2}"),
        DBG_ENCAP => format!("Encapsulating to node {a1} ({a1:#x}) from seclabel {a2}"),
        DBG_POLICY_DENIED => format!("Policy evaluation would deny packet from {a1} to {a2}"),
        DBG_CT_VERDICT => format!("CT verdict: {}, revnat={}", ct_state(a1), port(a2)),
        DBG_DECAP => format!("Tunnel decap: id={a1} flowlabel={a2:x}"),
        DBG_LB4_LOOKUP_FRONTEND => format!("Frontend service lookup, addr={} key.dport={}", ip4(a1), port(a2)),
        DBG_LB4_LOOKUP_BACKEND_SLOT_SUCCESS => {
            format!("Service backend slot lookup result: target={} port={}", ip4(a1), port(a2))
        }
        DBG_CT_LOOKUP4_1 => format!("Conntrack lookup 1/2: src={}:{} dst={}:{}", ip4(a1), a3 & 0xffff, ip4(a2), a3 >> 16),
        DBG_CT_LOOKUP4_2 => format!("Conntrack lookup 2/2: nexthdr={} flags={}", a1 >> 8, a1 & 0xff),
        DBG_CT_CREATED4 => format!(
            "Conntrack create: proxy-port={} revnat={} src-identity={a2} lb={}",
            a1 >> 16,
            port(a1 & 0xffff),
            ip4(a3)
        ),
        DBG_IP_ID_MAP_FAILED4 => format!("Failed to map addr={} to identity", ip4(a1)),
        DBG_IP_ID_MAP_SUCCEED4 => format!("Successfully mapped addr={} to identity={a2}", ip4(a1)),
        _ => format!("Unknown message type={t} arg1={a1} arg2={a2}"),
    }
}

/// The endpoint a message is about, as a flow names it (by its id).
fn source(ctx: &Context, id: u16) -> Option<Endpoint> {
    let v = ctx.endpoints.values().find(|v| v.id == id as u32)?;
    Some(Endpoint {
        id: v.id,
        identity: v.identity,
        namespace: v.namespace.clone(),
        pod_name: v.pod_name.clone(),
        labels: if v.labels.is_empty() {
            ctx.identities.get(&v.identity).cloned().unwrap_or_default()
        } else {
            v.labels.clone()
        },
        ..Default::default()
    })
}

/// A debug record as GetDebugEvents returns it.
pub fn event(d: &seta_abi::DebugEvent, ctx: &Context) -> GetDebugEventsResponse {
    let source = source(ctx, d.source).or_else(|| {
        (d.source != 0).then(|| Endpoint {
            id: d.source as u32,
            ..Default::default()
        })
    });
    GetDebugEventsResponse {
        debug_event: Some(DebugEvent {
            r#type: d.subtype as i32,
            source,
            hash: Some(d.hash),
            arg1: Some(d.arg1),
            arg2: Some(d.arg2),
            arg3: Some(d.arg3),
            message: message(d.subtype, d.arg1, d.arg2, d.arg3),
            cpu: Some(d.cpu as i32),
        }),
        node_name: ctx.node.clone(),
        time: Some(ctx.time(d.ts)),
    }
}

fn type_name(e: &DebugEvent) -> &'static str {
    DebugEventType::try_from(e.r#type).map_or("DBG_EVENT_UNKNOWN", |t| t.as_str_name())
}

fn hex(v: Option<u32>) -> String {
    v.map_or_else(|| "N/A".into(), |v| format!("{v:#x}"))
}

fn cpu(v: Option<i32>) -> String {
    v.map_or_else(|| "N/A".into(), |c| format!("{c:02}"))
}

/// The endpoint in short, as Hubble prints it: `ns/pod (ID: N)`, a
/// reserved label, or `ID: N`.
fn endpoint_short(e: Option<&Endpoint>) -> String {
    let Some(e) = e else { return "N/A".into() };
    let id = format!("ID: {}", e.id);
    if !e.namespace.is_empty() && !e.pod_name.is_empty() {
        format!("{}/{} ({id})", e.namespace, e.pod_name)
    } else if e.labels.len() == 1 && e.labels[0].starts_with("reserved:") {
        format!("{} ({id})", e.labels[0])
    } else {
        id
    }
}

/// Hubble's compact line: `<time> [<node>]: <endpoint> <TYPE> MARK: 0x.. CPU: nn (<message>)`.
pub fn compact(r: &GetDebugEventsResponse, node: bool) -> String {
    let time = r
        .time
        .as_ref()
        .map_or_else(String::new, |t| crate::compact::stamp_milli(t.seconds, t.nanos));
    let node = if node { format!(" [{}]", r.node_name) } else { String::new() };
    let e = r.debug_event.clone().unwrap_or_default();
    format!(
        "{time}{node}: {} {} MARK: {} CPU: {} ({})",
        endpoint_short(e.source.as_ref()),
        type_name(&e),
        hex(e.hash),
        cpu(e.cpu),
        e.message
    )
}

/// `cilium-dbg monitor`'s line: `CPU nn: MARK 0x.. FROM <endpoint id> DEBUG: <message>`.
pub fn monitor(r: &GetDebugEventsResponse) -> String {
    let e = r.debug_event.clone().unwrap_or_default();
    format!(
        "CPU {}: MARK {} FROM {} DEBUG: {}",
        cpu(e.cpu),
        hex(e.hash),
        e.source.as_ref().map_or(0, |s| s.id),
        e.message
    )
}

/// `cilium-dbg monitor -j`'s object of a debug message.
pub fn monitor_json(r: &GetDebugEventsResponse) -> serde_json::Value {
    let e = r.debug_event.clone().unwrap_or_default();
    serde_json::json!({"cpu": format!("CPU {}:", cpu(e.cpu)), "type": "debug", "message": e.message})
}

/// One debug event as protojson (`-o json`).
pub fn json(r: &GetDebugEventsResponse) -> serde_json::Value {
    use serde_json::json;
    let e = r.debug_event.clone().unwrap_or_default();
    let source = e
        .source
        .as_ref()
        .map(|s| json!({"ID": s.id, "identity": s.identity, "namespace": s.namespace, "labels": s.labels, "pod_name": s.pod_name}));
    json!({
        "debug_event": {
            "type": type_name(&e),
            "source": source,
            "hash": e.hash,
            "arg1": e.arg1,
            "arg2": e.arg2,
            "arg3": e.arg3,
            "message": e.message,
            "cpu": e.cpu,
        },
        "node_name": r.node_name,
        "time": r.time.as_ref().map(crate::json::rfc3339),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::EndpointView;

    fn be(ip: [u8; 4]) -> u32 {
        u32::from_ne_bytes(ip)
    }

    /// Cilium's texts, argument for argument as the datapath passes them.
    #[test]
    fn messages_read_as_cilium_prints_them() {
        use seta_abi::*;
        let (a, b) = (be([10, 0, 1, 5]), be([10, 0, 2, 7]));
        let cases = [
            (
                DBG_CT_LOOKUP4_1,
                a,
                b,
                (8080 << 16) | 43210,
                "Conntrack lookup 1/2: src=10.0.1.5:43210 dst=10.0.2.7:8080",
            ),
            (DBG_CT_LOOKUP4_2, 6 << 8, 0, 0, "Conntrack lookup 2/2: nexthdr=6 flags=0"),
            (DBG_CT_VERDICT, 0, 0, 0, "CT verdict: New, revnat=0"),
            (DBG_CT_VERDICT, 2, 0x0300, 0, "CT verdict: Reply, revnat=3"),
            (
                DBG_CT_CREATED4,
                0,
                270,
                0,
                "Conntrack create: proxy-port=0 revnat=0 src-identity=270 lb=0.0.0.0",
            ),
            (
                DBG_IP_ID_MAP_SUCCEED4,
                b,
                271,
                0,
                "Successfully mapped addr=10.0.2.7 to identity=271",
            ),
            (DBG_IP_ID_MAP_FAILED4, b, 0, 0, "Failed to map addr=10.0.2.7 to identity"),
            (
                DBG_LOCAL_DELIVERY,
                12,
                270,
                0,
                "Attempting local delivery for container id 12 from seclabel 270",
            ),
            (
                DBG_ENCAP,
                be([172, 30, 0, 2]),
                270,
                0,
                "Encapsulating to node 33562284 (0x2001eac) from seclabel 270",
            ),
            (
                DBG_POLICY_DENIED,
                270,
                271,
                0,
                "Policy evaluation would deny packet from 270 to 271",
            ),
            (DBG_DECAP, 270, 0, 0, "Tunnel decap: id=270 flowlabel=0"),
            (
                DBG_LB4_LOOKUP_FRONTEND,
                be([10, 96, 0, 10]),
                80u16.to_be() as u32,
                0,
                "Frontend service lookup, addr=10.96.0.10 key.dport=80",
            ),
            (
                DBG_LB4_LOOKUP_BACKEND_SLOT_SUCCESS,
                b,
                8080u16.to_be() as u32,
                0,
                "Service backend slot lookup result: target=10.0.2.7 port=8080",
            ),
            (99, 1, 2, 3, "Unknown message type=99 arg1=1 arg2=2"),
        ];
        for (t, a1, a2, a3, want) in cases {
            assert_eq!(message(t, a1, a2, a3), want, "type {t}");
        }
    }

    #[test]
    fn an_event_names_its_endpoint_and_prints_as_hubble_and_the_monitor() {
        let mut ctx = Context {
            node: "n1".into(),
            ..Default::default()
        };
        ctx.endpoints.insert(
            Ipv4Addr::new(10, 0, 1, 5),
            EndpointView {
                id: 12,
                identity: 270,
                namespace: "default".into(),
                pod_name: "client".into(),
                labels: vec!["k8s:app=client".into()],
            },
        );
        let d = seta_abi::DebugEvent {
            event_type: seta_abi::EVENT_DEBUG,
            subtype: seta_abi::DBG_CT_LOOKUP4_2,
            source: 12,
            hash: 0x1a2b,
            arg1: 17 << 8,
            cpu: 1,
            ts: 1_000_000_000,
            ..Default::default()
        };
        let r = event(&d, &ctx);
        let e = r.debug_event.as_ref().unwrap();
        assert_eq!(e.r#type, DebugEventType::DbgCtLookup42 as i32);
        assert_eq!(e.source.as_ref().unwrap().pod_name, "client");
        assert_eq!(r.node_name, "n1");
        let line = compact(&r, true);
        assert!(
            line.ends_with(
                " [n1]: default/client (ID: 12) DBG_CT_LOOKUP4_2 MARK: 0x1a2b CPU: 01 (Conntrack lookup 2/2: nexthdr=17 flags=0)"
            ),
            "{line}"
        );
        assert_eq!(
            monitor(&r),
            "CPU 01: MARK 0x1a2b FROM 12 DEBUG: Conntrack lookup 2/2: nexthdr=17 flags=0"
        );
        assert_eq!(monitor_json(&r)["type"], "debug");
        let j = json(&r);
        assert_eq!(j["debug_event"]["type"], "DBG_CT_LOOKUP4_2");
        assert_eq!(j["debug_event"]["source"]["pod_name"], "client");
        assert_eq!(j["debug_event"]["cpu"], 1);
        // an endpoint the context does not know yet: its id; none: N/A
        let r = event(&seta_abi::DebugEvent { source: 40, ..d }, &ctx);
        assert!(compact(&r, false).contains(": ID: 40 DBG_CT_LOOKUP4_2 "), "{}", compact(&r, false));
        let r = event(&seta_abi::DebugEvent { source: 0, ..d }, &ctx);
        assert!(compact(&r, false).contains(": N/A DBG_CT_LOOKUP4_2 "), "{}", compact(&r, false));
    }
}
