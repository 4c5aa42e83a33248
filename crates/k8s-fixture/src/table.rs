//! Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io`),
//! as kubectl's default and `-o wide` output asks for it: a
//! `meta.k8s.io/v1` Table with the columns the real API server (or the
//! CRD's additionalPrinterColumns) gives Pods, Nodes and Cilium's kinds.
//! Other kinds keep the plain list, which kubectl prints as NAME and AGE.
use crate::resources::Resource;
use serde_json::{json, Value};

/// Whether the client asked for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

/// A column: name, type, priority (1: only with `-o wide`), and how a cell
/// is computed from the object.
type Cell = fn(&Value) -> Value;
struct Column(&'static str, &'static str, u8, Cell);

fn name(o: &Value) -> Value {
    o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)
}

fn at(o: &Value, p: &str) -> Value {
    match o.pointer(p) {
        Some(v) if !v.is_null() => v.clone(),
        _ => json!("<none>"),
    }
}

/// kubectl's short ages: 42s, 5m3s, 17m, 3h, 2d.
pub fn age(created: &str, now: i64) -> String {
    let Some(t) = parse_rfc3339(created) else {
        return "<unknown>".into();
    };
    let s = (now - t).max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Seconds of `YYYY-MM-DDTHH:MM:SSZ` (fraction ignored).
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    // days from the civil date (Howard Hinnant's algorithm)
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + se)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn age_cell(o: &Value) -> Value {
    json!(age(
        o.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or(""),
        now()
    ))
}

fn pod_ready(o: &Value) -> Value {
    let n = o.pointer("/spec/containers").and_then(Value::as_array).map_or(0, |c| c.len());
    let ready = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "ContainersReady" && c["status"] == "True");
    json!(format!("{}/{n}", if ready { n } else { 0 }))
}

fn pod_status(o: &Value) -> Value {
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        return json!("Terminating");
    }
    json!(o.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending"))
}

fn node_status(o: &Value) -> Value {
    let ready = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    json!(if ready { "Ready" } else { "NotReady" })
}

/// In the list at `list`, the `field` of the first entry of `type` `kind`
/// (a jsonPath `[?(@.type=="…")]` column, of which the API server prints the
/// first match): a Node's InternalIP, a CiliumNode's addresses.
fn typed_address(o: &Value, list: &str, kind: &str, field: &str) -> Value {
    o.pointer(list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|a| a["type"] == kind)
        .map(|a| a[field].clone())
        .unwrap_or(json!("<none>"))
}

fn columns(r: &Resource) -> Option<Vec<Column>> {
    let c = |n, t, p, f| Column(n, t, p, f);
    Some(match (r.group, r.plural) {
        ("", "pods") => vec![
            c("Name", "string", 0, name),
            c("Ready", "string", 0, pod_ready),
            c("Status", "string", 0, pod_status),
            c("Restarts", "string", 0, |_| json!("0")),
            c("Age", "string", 0, age_cell),
            c("IP", "string", 1, |o| at(o, "/status/podIP")),
            c("Node", "string", 1, |o| at(o, "/spec/nodeName")),
        ],
        ("", "nodes") => vec![
            c("Name", "string", 0, name),
            c("Status", "string", 0, node_status),
            c("Roles", "string", 0, |_| json!("<none>")),
            c("Age", "string", 0, age_cell),
            c("Version", "string", 0, |o| {
                json!(o.pointer("/status/nodeInfo/kubeletVersion").and_then(Value::as_str).unwrap_or(""))
            }),
            c("Internal-IP", "string", 1, |o| {
                typed_address(o, "/status/addresses", "InternalIP", "address")
            }),
        ],
        ("cilium.io", "ciliumendpoints") => vec![
            c("Name", "string", 0, name),
            c("Security Identity", "integer", 0, |o| at(o, "/status/identity/id")),
            c("Ingress Enforcement", "string", 1, |o| at(o, "/status/policy/ingress/state")),
            c("Egress Enforcement", "string", 1, |o| at(o, "/status/policy/egress/state")),
            c("Visibility Policy", "string", 1, |o| at(o, "/status/visibility-policy-status")),
            c("Endpoint State", "string", 0, |o| at(o, "/status/state")),
            c("IPv4", "string", 0, |o| at(o, "/status/networking/addressing/0/ipv4")),
            c("IPv6", "string", 0, |o| at(o, "/status/networking/addressing/0/ipv6")),
        ],
        ("cilium.io", "ciliumidentities") => vec![
            c("Name", "string", 0, name),
            c("Namespace", "string", 0, |o| at(o, "/metadata/labels/io.kubernetes.pod.namespace")),
            c("Age", "date", 0, age_cell),
        ],
        ("cilium.io", "ciliumnodes") => vec![
            c("Name", "string", 0, name),
            c("CiliumInternalIP", "string", 0, |o| {
                typed_address(o, "/spec/addresses", "CiliumInternalIP", "ip")
            }),
            c("InternalIP", "string", 0, |o| {
                typed_address(o, "/spec/addresses", "InternalIP", "ip")
            }),
            c("Age", "date", 0, age_cell),
        ],
        _ => return None,
    })
}

/// The Table of `items` of `r` (None: the kind has no columns here).
pub fn table(r: &Resource, items: &[Value], meta: Value) -> Option<Value> {
    let cols = columns(r)?;
    let defs: Vec<Value> = cols
        .iter()
        .map(|Column(n, t, p, _)| {
            let mut d = json!({"name": n, "type": t, "format": "", "description": "", "priority": p});
            if *n == "Name" {
                d["format"] = json!("name");
            }
            d
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({
                "cells": cols.iter().map(|Column(_, _, _, f)| f(o)).collect::<Vec<_>>(),
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"].clone()},
            })
        })
        .collect();
    Some(json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let t = parse_rfc3339("2026-12-05T10:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("2026-12-05T10:00:07.123456Z"), Some(t + 7));
        assert_eq!(age("2026-12-05T10:00:00Z", t + 42), "42s");
        assert_eq!(age("2026-12-05T10:00:00Z", t + 303), "5m3s");
        assert_eq!(age("2026-12-05T10:00:00Z", t + 17 * 60), "17m");
        assert_eq!(age("2026-12-05T10:00:00Z", t + 5 * 3600), "5h");
        assert_eq!(age("2026-12-05T10:00:00Z", t + 3 * 86400), "3d");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert!(wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"));
        assert!(!wants_table("application/json"));
    }
}
