//! The agent's own events (Hubble's GetAgentEvents): what `hubble observe
//! --type agent` prints of each (its details, as Hubble's printer writes
//! them). Pure.
use crate::flow::agent_event::Notification;
use crate::flow::{AgentEvent, AgentEventType, ServiceUpsertNotificationAddr};
use crate::observer::GetAgentEventsResponse;

fn addr(a: &ServiceUpsertNotificationAddr) -> String {
    if a.ip.contains(':') {
        format!("[{}]:{}", a.ip, a.port)
    } else {
        format!("{}:{}", a.ip, a.port)
    }
}

/// An agent event's details, as Hubble prints them
/// (`id: 1027, namespace: kube-system, pod name: cilium-xyz`).
pub fn details(e: &AgentEvent) -> String {
    use AgentEventType as T;
    let t = T::try_from(e.r#type).unwrap_or(T::AgentEventUnknown);
    match (t, e.notification.as_ref()) {
        (T::AgentStarted, Some(Notification::AgentStart(n))) => match &n.time {
            Some(ts) => format!("start time: {}", crate::compact::stamp_milli(ts.seconds, ts.nanos)),
            None => "UNKNOWN".into(),
        },
        (T::PolicyUpdated | T::PolicyDeleted, Some(Notification::PolicyUpdate(n))) => {
            format!(
                "labels: [{}], revision: {}, count: {}",
                n.labels.join(","),
                n.revision,
                n.rule_count
            )
        }
        (T::EndpointRegenerateSuccess | T::EndpointRegenerateFailure, Some(Notification::EndpointRegenerate(n))) => {
            let mut s = format!("id: {}, labels: [{}]", n.id, n.labels.join(","));
            if !n.error.is_empty() {
                s += &format!(", error: {}", n.error);
            }
            s
        }
        (T::EndpointCreated | T::EndpointDeleted, Some(Notification::EndpointUpdate(n))) => {
            let mut s = format!("id: {}", n.id);
            if !n.labels.is_empty() {
                s += &format!(", labels: [{}]", n.labels.join(","));
            }
            if !n.error.is_empty() {
                s += &format!(", error: {}", n.error);
            }
            if !n.namespace.is_empty() {
                s += &format!(", namespace: {}", n.namespace);
            }
            if !n.pod_name.is_empty() {
                s += &format!(", pod name: {}", n.pod_name);
            }
            s
        }
        (T::ServiceUpserted, Some(Notification::ServiceUpsert(n))) => {
            let mut s = format!("id: {}", n.id);
            if let Some(fe) = &n.frontend_address {
                s += &format!(", frontend: {}", addr(fe));
            }
            if !n.backend_addresses.is_empty() {
                let b: Vec<String> = n.backend_addresses.iter().map(addr).collect();
                s += &format!(", backends: [{}]", b.join(","));
            }
            for (k, v) in [
                ("type", &n.r#type),
                ("traffic policy", &n.traffic_policy),
                ("namespace", &n.namespace),
                ("name", &n.name),
            ] {
                if !v.is_empty() {
                    s += &format!(", {k}: {v}");
                }
            }
            s
        }
        (T::ServiceDeleted, Some(Notification::ServiceDelete(n))) => format!("id: {}", n.id),
        (T::IpcacheUpserted | T::IpcacheDeleted, Some(Notification::IpcacheUpdate(n))) => {
            let mut s = format!("cidr: {}, identity: {}", n.cidr, n.identity);
            if let Some(old) = n.old_identity {
                s += &format!(", old identity: {old}");
            }
            if !n.host_ip.is_empty() {
                s += &format!(", host ip: {}", n.host_ip);
            }
            if !n.old_host_ip.is_empty() {
                s += &format!(", old host ip: {}", n.old_host_ip);
            }
            s + &format!(", encrypt key: {}", n.encrypt_key)
        }
        _ => "UNKNOWN".into(),
    }
}

/// One agent event as protojson (`-o json`): the type by name, the
/// notification under its field name, uint64s as strings.
pub fn json(r: &GetAgentEventsResponse) -> serde_json::Value {
    use serde_json::json;
    let e = r.agent_event.clone().unwrap_or_default();
    let t = AgentEventType::try_from(e.r#type).unwrap_or(AgentEventType::AgentEventUnknown);
    let addr = |a: &ServiceUpsertNotificationAddr| json!({"ip": a.ip, "port": a.port});
    let (key, body) = match &e.notification {
        Some(Notification::AgentStart(n)) => ("agent_start", json!({"time": n.time.as_ref().map(crate::json::rfc3339)})),
        Some(Notification::PolicyUpdate(n)) => (
            "policy_update",
            json!({"labels": n.labels, "revision": n.revision.to_string(), "rule_count": n.rule_count.to_string()}),
        ),
        Some(Notification::EndpointRegenerate(n)) => (
            "endpoint_regenerate",
            json!({"id": n.id.to_string(), "labels": n.labels, "error": n.error}),
        ),
        Some(Notification::EndpointUpdate(n)) => (
            "endpoint_update",
            json!({"id": n.id.to_string(), "labels": n.labels, "error": n.error, "pod_name": n.pod_name, "namespace": n.namespace}),
        ),
        Some(Notification::ServiceUpsert(n)) => (
            "service_upsert",
            json!({
                "id": n.id, "frontend_address": n.frontend_address.as_ref().map(addr),
                "backend_addresses": n.backend_addresses.iter().map(addr).collect::<Vec<_>>(),
                "type": n.r#type, "name": n.name, "namespace": n.namespace,
                "ext_traffic_policy": n.ext_traffic_policy, "int_traffic_policy": n.int_traffic_policy,
            }),
        ),
        Some(Notification::ServiceDelete(n)) => ("service_delete", json!({"id": n.id})),
        Some(Notification::IpcacheUpdate(n)) => (
            "ipcache_update",
            json!({
                "cidr": n.cidr, "identity": n.identity, "old_identity": n.old_identity,
                "host_ip": n.host_ip, "old_host_ip": n.old_host_ip, "encrypt_key": n.encrypt_key,
                "namespace": n.namespace, "pod_name": n.pod_name,
            }),
        ),
        Some(Notification::Unknown(n)) => ("unknown", json!({"type": n.r#type, "notification": n.notification})),
        None => ("unknown", json!({})),
    };
    let mut ev = serde_json::Map::new();
    ev.insert("type".into(), json!(t.as_str_name()));
    ev.insert(key.into(), body);
    json!({
        "agent_event": ev,
        "node_name": r.node_name,
        "time": r.time.as_ref().map(crate::json::rfc3339),
    })
}

/// One agent event as a compact line: `<time> [<node>]: <TYPE> (<details>)`.
pub fn compact(r: &GetAgentEventsResponse, node: bool) -> String {
    let time = r
        .time
        .as_ref()
        .map_or_else(String::new, |t| crate::compact::stamp_milli(t.seconds, t.nanos));
    let node = if node && !r.node_name.is_empty() {
        format!(" [{}]", r.node_name)
    } else {
        String::new()
    };
    let e = r.agent_event.clone().unwrap_or_default();
    let t = AgentEventType::try_from(e.r#type).unwrap_or(AgentEventType::AgentEventUnknown);
    format!("{time}{node}: {} ({})", t.as_str_name(), details(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::*;

    fn ev(t: AgentEventType, n: Notification) -> AgentEvent {
        AgentEvent {
            r#type: t as i32,
            notification: Some(n),
        }
    }

    /// Hubble's own printer test vectors.
    #[test]
    fn details_print_as_hubble_prints_them() {
        use AgentEventType as T;
        let cases = [
            (
                ev(
                    T::PolicyUpdated,
                    Notification::PolicyUpdate(PolicyUpdateNotification {
                        labels: vec!["foo=bar".into(), "baz=foo".into()],
                        revision: 1,
                        rule_count: 2,
                    }),
                ),
                "labels: [foo=bar,baz=foo], revision: 1, count: 2",
            ),
            (
                ev(
                    T::EndpointRegenerateFailure,
                    Notification::EndpointRegenerate(EndpointRegenNotification {
                        id: 42,
                        labels: vec!["baz=bar".into(), "some=label".into()],
                        error: "some error".into(),
                    }),
                ),
                "id: 42, labels: [baz=bar,some=label], error: some error",
            ),
            (
                ev(
                    T::EndpointCreated,
                    Notification::EndpointUpdate(EndpointUpdateNotification {
                        id: 1027,
                        namespace: "kube-system".into(),
                        pod_name: "cilium-xyz".into(),
                        ..Default::default()
                    }),
                ),
                "id: 1027, namespace: kube-system, pod name: cilium-xyz",
            ),
            (
                ev(
                    T::ServiceUpserted,
                    Notification::ServiceUpsert(ServiceUpsertNotification {
                        id: 42,
                        frontend_address: Some(ServiceUpsertNotificationAddr {
                            ip: "10.0.0.42".into(),
                            port: 8008,
                        }),
                        backend_addresses: vec![
                            ServiceUpsertNotificationAddr {
                                ip: "192.168.1.23".into(),
                                port: 80,
                            },
                            ServiceUpsertNotificationAddr {
                                ip: "2001:db8:85a3:::8a2e:370:1337".into(),
                                port: 8080,
                            },
                        ],
                        r#type: "foobar".into(),
                        traffic_policy: "pol1".into(),
                        namespace: "bar".into(),
                        name: "foo".into(),
                        ..Default::default()
                    }),
                ),
                "id: 42, frontend: 10.0.0.42:8008, backends: [192.168.1.23:80,[2001:db8:85a3:::8a2e:370:1337]:8080], type: foobar, traffic policy: pol1, namespace: bar, name: foo",
            ),
            (ev(T::ServiceDeleted, Notification::ServiceDelete(ServiceDeleteNotification { id: 42 })), "id: 42"),
        ];
        for (e, want) in cases {
            assert_eq!(details(&e), want);
        }
        assert_eq!(details(&AgentEvent::default()), "UNKNOWN");
        let r = GetAgentEventsResponse {
            agent_event: Some(ev(
                T::ServiceDeleted,
                Notification::ServiceDelete(ServiceDeleteNotification { id: 7 }),
            )),
            node_name: "n1".into(),
            time: Some(prost_types::Timestamp {
                seconds: 1234,
                nanos: 567_800_000,
            }),
        };
        assert_eq!(compact(&r, true), "Jan  1 00:20:34.567 [n1]: SERVICE_DELETED (id: 7)");
    }
}
