//! Hubble's flow filters: every set field of a [`FlowFilter`] must match
//! (AND), one of a field's values is enough (OR); a request keeps the flows
//! that match one whitelist filter (or all, without a whitelist) and no
//! blacklist filter. Fields that need data seta's flows do not carry (L7,
//! DNS names, workloads, trace ids) match no flow, as in Hubble for flows
//! without them.
use crate::flow::{layer4::Protocol, Flow, FlowFilter, TcpFlags};
use std::net::IpAddr;

/// Whether `flow` passes a request's whitelist and blacklist.
pub fn selected(whitelist: &[FlowFilter], blacklist: &[FlowFilter], flow: &Flow) -> bool {
    (whitelist.is_empty() || whitelist.iter().any(|f| matches(f, flow))) && !blacklist.iter().any(|f| matches(f, flow))
}

/// `true` when `values` is empty or one of them satisfies `f`.
fn any<T>(values: &[T], f: impl Fn(&T) -> bool) -> bool {
    values.is_empty() || values.iter().any(f)
}

/// Whether one filter matches `flow`.
pub fn matches(f: &FlowFilter, flow: &Flow) -> bool {
    let ip = flow.ip.as_ref();
    let (src, dst) = (flow.source.as_ref(), flow.destination.as_ref());
    let (sport, dport) = crate::l4_ports(flow);
    let unsupported = !f.uuid.is_empty()
        || !f.source_fqdn.is_empty()
        || !f.destination_fqdn.is_empty()
        || !f.source_workload.is_empty()
        || !f.destination_workload.is_empty()
        || !f.http_status_code.is_empty()
        || !f.dns_query.is_empty()
        || !f.http_method.is_empty()
        || !f.http_path.is_empty()
        || !f.trace_id.is_empty();
    !unsupported
        && any(&f.source_ip, |p| ip.is_some_and(|i| ip_matches(p, &i.source)))
        && any(&f.destination_ip, |p| ip.is_some_and(|i| ip_matches(p, &i.destination)))
        && any(&f.source_pod, |p| src.is_some_and(|e| pod_matches(p, &e.namespace, &e.pod_name)))
        && any(&f.destination_pod, |p| {
            dst.is_some_and(|e| pod_matches(p, &e.namespace, &e.pod_name))
        })
        && any(&f.source_service, |p| {
            flow.source_service.as_ref().is_some_and(|s| pod_matches(p, &s.namespace, &s.name))
        })
        && any(&f.destination_service, |p| {
            flow.destination_service
                .as_ref()
                .is_some_and(|s| pod_matches(p, &s.namespace, &s.name))
        })
        && any(&f.source_label, |s| src.is_some_and(|e| selector_matches(s, &e.labels)))
        && any(&f.destination_label, |s| dst.is_some_and(|e| selector_matches(s, &e.labels)))
        && any(&f.source_identity, |i| src.is_some_and(|e| e.identity == *i))
        && any(&f.destination_identity, |i| dst.is_some_and(|e| e.identity == *i))
        && any(&f.verdict, |v| flow.verdict == *v)
        && any(&f.traffic_direction, |d| flow.traffic_direction == *d)
        && any(&f.event_type, |t| {
            flow.event_type
                .as_ref()
                .is_some_and(|e| e.r#type == t.r#type && (!t.match_sub_type || e.sub_type == t.sub_type))
        })
        && any(&f.protocol, |p| protocol_matches(p, flow))
        && any(&f.source_port, |p| sport.is_some_and(|s| p.trim() == s.to_string()))
        && any(&f.destination_port, |p| dport.is_some_and(|d| p.trim() == d.to_string()))
        && any(&f.reply, |r| flow.is_reply == Some(*r))
        && any(&f.tcp_flags, |want| tcp_flags(flow).is_some_and(|have| flags_subset(want, &have)))
        && any(&f.node_name, |p| glob(p, &flow.node_name))
        && any(&f.ip_version, |v| ip.is_some_and(|i| i.ip_version == *v))
}

/// An address or a CIDR against a textual address.
fn ip_matches(pattern: &str, addr: &str) -> bool {
    let Ok(a) = addr.parse::<IpAddr>() else { return false };
    match pattern.parse::<ipnet::IpNet>() {
        Ok(net) => net.contains(&a),
        Err(_) => pattern.parse::<IpAddr>().is_ok_and(|p| p == a),
    }
}

/// A pod or service filter as Hubble parses it: `ns/prefix`, `ns/` (all
/// of the namespace) or a bare `prefix`, which is in namespace `default`;
/// `("", "")` for an empty one (invalid).
fn namespace_name(pattern: &str) -> (&str, &str) {
    let mut parts = pattern.split('/');
    let ns = parts.next().unwrap_or("");
    match parts.next() {
        Some(name) => (ns, name),
        None if ns.is_empty() => ("", ""),
        None => ("default", ns),
    }
}

/// Hubble's name filter: the namespace is the pattern's (`default` for a
/// bare name) and the name starts with its prefix; an object with neither
/// namespace nor name never matches.
fn pod_matches(pattern: &str, ns: &str, pod: &str) -> bool {
    let (pns, prefix) = namespace_name(pattern);
    !(ns.is_empty() && pod.is_empty()) && pns == ns && pod.starts_with(prefix)
}

/// Check filters as the Hubble server does before it serves a request: the
/// first bad value, with Hubble's words (`invalid IP address in filter:
/// "10.0.0.300"`), else Ok.
pub fn validate(filters: &[FlowFilter]) -> Result<(), String> {
    for f in filters {
        let names = [
            ("", &f.source_pod),
            ("", &f.destination_pod),
            ("invalid source service filter: ", &f.source_service),
            ("invalid destination service filter: ", &f.destination_service),
        ];
        for (what, list) in names {
            if let Some(p) = list.iter().find(|p| namespace_name(p) == ("", "")) {
                return Err(format!("{what}invalid filter, must be [namespace/][<name>], got {p:?}"));
            }
        }
        for ip in f.source_ip.iter().chain(&f.destination_ip) {
            if ip.contains('/') {
                ip.parse::<ipnet::IpNet>().map_err(|_| format!("invalid CIDR in filter: {ip:?}"))?;
            } else {
                ip.parse::<IpAddr>().map_err(|_| format!("invalid IP address in filter: {ip:?}"))?;
            }
        }
        for (side, ports) in [("source", &f.source_port), ("destination", &f.destination_port)] {
            if let Some(p) = ports.iter().find(|p| p.parse::<u16>().is_err()) {
                return Err(format!("invalid {side} port filter: invalid port {p:?}: not a number in 0-65535"));
            }
        }
        if let Some(p) = f.protocol.iter().find(|p| !PROTOCOLS.contains(&p.to_ascii_lowercase().as_str())) {
            return Err(format!("invalid protocol filter: unknown protocol: {p:?}"));
        }
    }
    Ok(())
}

/// A GetFlows request's whitelist and blacklist, checked as [`validate`].
pub fn validate_request(whitelist: &[FlowFilter], blacklist: &[FlowFilter]) -> Result<(), String> {
    validate(whitelist).and_then(|()| validate(blacklist))
}

/// The protocols Hubble's protocol filter knows (L4, then L7).
const PROTOCOLS: [&str; 11] = [
    "icmp", "icmpv4", "icmpv6", "tcp", "udp", "sctp", "vrrp", "igmp", "dns", "http", "kafka",
];

/// A Kubernetes label selector in its string form (`k=v`, `k==v`, `k!=v`,
/// `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, comma = AND) against flow
/// labels (`source:key=value`; a selector key may carry a source).
pub fn selector_matches(selector: &str, labels: &[String]) -> bool {
    let parsed: Vec<(&str, &str)> = labels.iter().map(|l| l.split_once('=').unwrap_or((l.as_str(), ""))).collect();
    seta_core::labelselector::LabelSelector::lenient(selector).matches_by(|key| {
        parsed.iter().find_map(|(k, v)| {
            let plain = k.split_once(':').map_or(*k, |(_, rest)| rest);
            (*k == key || plain == key).then_some(*v)
        })
    })
}

/// `*` matches any run of characters.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            s.len() >= head.len() && s.starts_with(head) && (0..=s.len() - head.len()).any(|i| glob(tail, &s[head.len() + i..]))
        }
    }
}

/// The L4 protocol's name as `--protocol` takes it.
pub fn protocol_name(flow: &Flow) -> Option<&'static str> {
    Some(match flow.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(_) => "tcp",
        Protocol::Udp(_) => "udp",
        Protocol::IcmPv4(_) => "icmp",
        Protocol::IcmPv6(_) => "icmpv6",
        Protocol::Sctp(_) => "sctp",
    })
}

/// Hubble's protocol filter: `icmp` is either ICMP, `icmpv4` and `icmpv6`
/// one of them, any other the L4 protocol's name (any case).
fn protocol_matches(pattern: &str, flow: &Flow) -> bool {
    let p = pattern.trim().to_ascii_lowercase();
    match protocol_name(flow) {
        Some("icmp") => p == "icmp" || p == "icmpv4",
        Some("icmpv6") => p == "icmp" || p == "icmpv6",
        Some(n) => p == n,
        None => false,
    }
}

fn tcp_flags(flow: &Flow) -> Option<TcpFlags> {
    match flow.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(t) => t.flags,
        _ => None,
    }
}

/// Every flag set in `want` is set in `have`.
fn flags_subset(want: &TcpFlags, have: &TcpFlags) -> bool {
    let w = [
        want.fin, want.syn, want.rst, want.psh, want.ack, want.urg, want.ece, want.cwr, want.ns,
    ];
    let h = [
        have.fin, have.syn, have.rst, have.psh, have.ack, have.urg, have.ece, have.cwr, have.ns,
    ];
    w.iter().zip(h).all(|(w, h)| !w || h)
}

/// FlowFilters from JSON as Hubble's flags take them
/// (`--hubble-export-allowlist '{"source_pod":["kube-system/"]},{"verdict":["DROPPED"]}'`):
/// one object, several separated by commas, or an array. Field names as in
/// the proto (`source_pod`) or in protojson (`sourcePod`); enums by name or
/// number. An unknown field or a value of the wrong kind is an error that
/// names the filter, the field and the value.
pub fn from_json(text: &str) -> Result<Vec<FlowFilter>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(vec![]);
    }
    let v: serde_json::Value = serde_json::from_str(t)
        .or_else(|_| serde_json::from_str(&format!("[{t}]")))
        .map_err(|e| format!("{t:?}: not JSON FlowFilters: {e}"))?;
    let list = match v {
        serde_json::Value::Array(a) => a,
        o => vec![o],
    };
    list.iter()
        .enumerate()
        .map(|(i, f)| {
            one_from_json(f)
                .and_then(|f| validate(std::slice::from_ref(&f)).map(|()| f))
                .map_err(|e| format!("filter [{i}]: {e}"))
        })
        .collect()
}

fn one_from_json(v: &serde_json::Value) -> Result<FlowFilter, String> {
    use crate::flow::{EventTypeFilter, IpVersion, TcpFlags, TrafficDirection, Verdict, Workload};
    let obj = v.as_object().ok_or_else(|| format!("{v}: must be an object"))?;
    let mut f = FlowFilter::default();
    for (key, val) in obj {
        let name = snake(key);
        let items: Vec<serde_json::Value> = match val {
            serde_json::Value::Array(a) => a.clone(),
            one => vec![one.clone()],
        };
        let bad = |what: &str| format!("{key}: {val}: {what}");
        let strings = || -> Result<Vec<String>, String> {
            items
                .iter()
                .map(|x| x.as_str().map(String::from).ok_or_else(|| bad("a list of strings")))
                .collect()
        };
        let numbers = || -> Result<Vec<u32>, String> {
            items
                .iter()
                .map(|x| {
                    x.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| bad("a list of numbers"))
                })
                .collect()
        };
        // an enum value: its name, or its number
        let enums = |by_name: &dyn Fn(&str) -> Option<i32>| -> Result<Vec<i32>, String> {
            items
                .iter()
                .map(|x| match x {
                    serde_json::Value::String(s) => by_name(s).ok_or_else(|| bad("an unknown name")),
                    n => n.as_i64().map(|n| n as i32).ok_or_else(|| bad("names or numbers")),
                })
                .collect()
        };
        match name.as_str() {
            "uuid" => f.uuid = strings()?,
            "source_ip" => f.source_ip = strings()?,
            "source_pod" => f.source_pod = strings()?,
            "source_fqdn" => f.source_fqdn = strings()?,
            "source_label" => f.source_label = strings()?,
            "source_service" => f.source_service = strings()?,
            "destination_ip" => f.destination_ip = strings()?,
            "destination_pod" => f.destination_pod = strings()?,
            "destination_fqdn" => f.destination_fqdn = strings()?,
            "destination_label" => f.destination_label = strings()?,
            "destination_service" => f.destination_service = strings()?,
            "http_status_code" => f.http_status_code = strings()?,
            "protocol" => f.protocol = strings()?,
            "source_port" => f.source_port = strings()?,
            "destination_port" => f.destination_port = strings()?,
            "dns_query" => f.dns_query = strings()?,
            "http_method" => f.http_method = strings()?,
            "http_path" => f.http_path = strings()?,
            "node_name" => f.node_name = strings()?,
            "trace_id" => f.trace_id = strings()?,
            "source_identity" => f.source_identity = numbers()?,
            "destination_identity" => f.destination_identity = numbers()?,
            "reply" => {
                f.reply = items
                    .iter()
                    .map(|x| x.as_bool().ok_or_else(|| bad("a list of booleans")))
                    .collect::<Result<_, _>>()?
            }
            "verdict" => f.verdict = enums(&|s| Verdict::from_str_name(s).map(|v| v as i32))?,
            "traffic_direction" => f.traffic_direction = enums(&|s| TrafficDirection::from_str_name(s).map(|v| v as i32))?,
            "ip_version" => f.ip_version = enums(&|s| IpVersion::from_str_name(s).map(|v| v as i32))?,
            "event_type" => {
                f.event_type = items
                    .iter()
                    .map(|x| {
                        let t = x
                            .get("type")
                            .and_then(|t| t.as_i64())
                            .ok_or_else(|| bad("objects with a numeric type"))?;
                        let sub = x.get("sub_type").or_else(|| x.get("subType")).and_then(|s| s.as_i64());
                        Ok(EventTypeFilter {
                            r#type: t as i32,
                            match_sub_type: sub.is_some(),
                            sub_type: sub.unwrap_or(0) as i32,
                        })
                    })
                    .collect::<Result<_, String>>()?
            }
            "tcp_flags" => {
                f.tcp_flags = items
                    .iter()
                    .map(|x| {
                        let o = x.as_object().ok_or_else(|| bad("objects of flags"))?;
                        let mut fl = TcpFlags::default();
                        for (k, on) in o {
                            let on = on.as_bool().ok_or_else(|| bad("flags set to true or false"))?;
                            match k.to_ascii_uppercase().as_str() {
                                "FIN" => fl.fin = on,
                                "SYN" => fl.syn = on,
                                "RST" => fl.rst = on,
                                "PSH" => fl.psh = on,
                                "ACK" => fl.ack = on,
                                "URG" => fl.urg = on,
                                "ECE" => fl.ece = on,
                                "CWR" => fl.cwr = on,
                                "NS" => fl.ns = on,
                                _ => return Err(bad(&format!("{k} is no TCP flag"))),
                            }
                        }
                        Ok(fl)
                    })
                    .collect::<Result<_, String>>()?
            }
            "source_workload" | "destination_workload" => {
                let w: Vec<Workload> = items
                    .iter()
                    .map(|x| {
                        let s = |k: &str| x.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                        if !x.is_object() {
                            return Err(bad("objects with name and kind"));
                        }
                        Ok(Workload {
                            name: s("name"),
                            kind: s("kind"),
                        })
                    })
                    .collect::<Result<_, String>>()?;
                if name == "source_workload" {
                    f.source_workload = w;
                } else {
                    f.destination_workload = w;
                }
            }
            _ => return Err(format!("{key}: no such FlowFilter field")),
        }
    }
    Ok(f)
}

/// `sourcePod` → `source_pod` (protojson's names to the proto's).
fn snake(key: &str) -> String {
    let mut out = String::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::*;

    /// Hubble's flag format: comma-separated objects, either field naming,
    /// enums by name; a mistake names the filter and field.
    #[test]
    fn filters_from_json_as_hubble_flags_take_them() {
        let f = from_json(r#"{"source_pod":["kube-system/"],"verdict":["DROPPED"]},{"destinationPort":["53"],"tcp_flags":[{"SYN":true}],"event_type":[{"type":1}]}"#).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].source_pod, ["kube-system/"]);
        assert_eq!(f[0].verdict, [Verdict::Dropped as i32]);
        assert_eq!(f[1].destination_port, ["53"]);
        assert!(f[1].tcp_flags[0].syn);
        assert_eq!((f[1].event_type[0].r#type, f[1].event_type[0].match_sub_type), (1, false));
        assert_eq!(from_json(r#"[{"reply":[true]}]"#).unwrap()[0].reply, [true]);
        assert!(from_json("").unwrap().is_empty());
        let e = from_json(r#"{"verdict":["DROPPED"]},{"source_pods":["x"]}"#).unwrap_err();
        assert_eq!(e, "filter [1]: source_pods: no such FlowFilter field");
        let e = from_json(r#"{"verdict":["MAYBE"]}"#).unwrap_err();
        assert!(e.contains("verdict") && e.contains("MAYBE") && e.contains("unknown name"), "{e}");
        assert!(from_json("{not json").unwrap_err().contains("not JSON"));
    }

    /// As the Hubble server: bad values are refused with its words before
    /// anything is served, and the JSON form (export lists) checks them too.
    #[test]
    fn bad_values_are_refused_as_hubble_refuses_them() {
        let one = |f: FlowFilter| validate(&[FlowFilter::default(), f]);
        assert_eq!(
            one(FlowFilter {
                source_ip: vec!["10.0.0.1".into(), "10.0.0.300".into()],
                ..Default::default()
            }),
            Err(r#"invalid IP address in filter: "10.0.0.300""#.into())
        );
        assert_eq!(
            one(FlowFilter {
                destination_ip: vec!["10.0.0.0/33".into()],
                ..Default::default()
            }),
            Err(r#"invalid CIDR in filter: "10.0.0.0/33""#.into())
        );
        assert_eq!(
            one(FlowFilter {
                destination_pod: vec!["".into()],
                ..Default::default()
            }),
            Err(r#"invalid filter, must be [namespace/][<name>], got """#.into())
        );
        assert_eq!(
            one(FlowFilter {
                source_service: vec!["".into()],
                ..Default::default()
            }),
            Err(r#"invalid source service filter: invalid filter, must be [namespace/][<name>], got """#.into())
        );
        let e = one(FlowFilter {
            destination_port: vec!["http".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.starts_with(r#"invalid destination port filter: invalid port "http""#), "{e}");
        assert_eq!(
            one(FlowFilter {
                protocol: vec!["TCP".into(), "quic".into()],
                ..Default::default()
            }),
            Err(r#"invalid protocol filter: unknown protocol: "quic""#.into())
        );
        assert!(one(FlowFilter {
            source_ip: vec!["10.0.0.0/8".into(), "fd00::1".into()],
            source_pod: vec!["web".into(), "shop/".into()],
            destination_port: vec!["65535".into()],
            protocol: vec!["ICMPv6".into(), "dns".into()],
            ..Default::default()
        })
        .is_ok());
        let e = from_json(r#"{"verdict":["DROPPED"]},{"source_ip":["nope"]}"#).unwrap_err();
        assert_eq!(e, r#"filter [1]: invalid IP address in filter: "nope""#);
    }

    /// Hubble's name filters: a bare name is a prefix in namespace
    /// `default`; `ns/` is the whole namespace; an endpoint without
    /// namespace and name (the world) never matches.
    #[test]
    fn pod_and_service_names_are_namespaced_as_hubble_parses_them() {
        assert!(pod_matches("web", "default", "web-7d9f"));
        assert!(!pod_matches("web", "shop", "web-7d9f"), "a bare name is default's");
        assert!(pod_matches("shop/web", "shop", "web-7d9f") && !pod_matches("shop/db", "shop", "web-7d9f"));
        assert!(pod_matches("shop/", "shop", "anything") && !pod_matches("shop/", "default", "x"));
        assert!(!pod_matches("default/", "", ""), "the world");
        assert!(pod_matches("a/b/c", "a", "bx"), "as Hubble: the part after a second '/' is ignored");
        // ICMP by family, as Hubble's protocol filter
        let mut f = flow("client", Verdict::Forwarded, 80, false);
        f.l4 = Some(Layer4 {
            protocol: Some(layer4::Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 })),
        });
        for (p, want) in [("icmp", true), ("ICMPv4", true), ("icmpv6", false), ("tcp", false)] {
            let ff = FlowFilter {
                protocol: vec![p.into()],
                ..Default::default()
            };
            assert_eq!(matches(&ff, &f), want, "{p}");
        }
    }

    fn flow(src_pod: &str, verdict: Verdict, dport: u32, syn: bool) -> Flow {
        Flow {
            verdict: verdict as i32,
            ip: Some(Ip {
                source: "10.200.1.5".into(),
                destination: "10.200.2.7".into(),
                ip_version: IpVersion::IPv4 as i32,
                encrypted: false,
            }),
            l4: Some(Layer4 {
                protocol: Some(layer4::Protocol::Tcp(Tcp {
                    source_port: 40000,
                    destination_port: dport,
                    flags: Some(TcpFlags {
                        syn,
                        ack: !syn,
                        ..Default::default()
                    }),
                })),
            }),
            source: Some(Endpoint {
                identity: 300,
                namespace: "shop".into(),
                pod_name: src_pod.into(),
                labels: vec!["k8s:app=client".into(), "k8s:io.kubernetes.pod.namespace=shop".into()],
                ..Default::default()
            }),
            destination: Some(Endpoint {
                identity: 301,
                namespace: "shop".into(),
                pod_name: "web-1".into(),
                labels: vec!["k8s:app=web".into()],
                ..Default::default()
            }),
            traffic_direction: TrafficDirection::Ingress as i32,
            event_type: Some(CiliumEventType { r#type: 1, sub_type: 133 }),
            node_name: "lab-n1".into(),
            is_reply: Some(false),
            ..Default::default()
        }
    }

    #[test]
    fn fields_and_within_a_filter_or_within_a_field() {
        let f = flow("client-7", Verdict::Dropped, 80, true);
        let ok = |ff: FlowFilter| matches(&ff, &f);
        assert!(ok(FlowFilter::default()), "an empty filter matches everything");
        assert!(ok(FlowFilter {
            source_ip: vec!["10.200.1.0/24".into()],
            ..Default::default()
        }));
        assert!(!ok(FlowFilter {
            source_ip: vec!["10.200.2.0/24".into()],
            ..Default::default()
        }));
        assert!(ok(FlowFilter {
            destination_ip: vec!["1.1.1.1".into(), "10.200.2.7".into()],
            ..Default::default()
        }));
        assert!(ok(FlowFilter {
            source_pod: vec!["shop/client".into()],
            ..Default::default()
        }));
        assert!(
            !ok(FlowFilter {
                source_pod: vec!["client".into()],
                ..Default::default()
            }),
            "a bare name is in namespace default, as Hubble's"
        );
        assert!(ok(FlowFilter {
            destination_pod: vec!["shop/".into()],
            ..Default::default()
        }));
        assert!(!ok(FlowFilter {
            source_pod: vec!["other/client".into()],
            ..Default::default()
        }));
        assert!(ok(FlowFilter {
            source_label: vec!["app=client".into()],
            ..Default::default()
        }));
        assert!(ok(FlowFilter {
            source_label: vec!["k8s:app in (client, x),!missing".into()],
            ..Default::default()
        }));
        assert!(!ok(FlowFilter {
            destination_label: vec!["app!=web".into()],
            ..Default::default()
        }));
        assert!(ok(FlowFilter {
            verdict: vec![Verdict::Dropped as i32],
            ..Default::default()
        }));
        assert!(!ok(FlowFilter {
            verdict: vec![Verdict::Forwarded as i32],
            ..Default::default()
        }));
        assert!(ok(FlowFilter {
            protocol: vec!["TCP".into()],
            destination_port: vec!["80".into()],
            ..Default::default()
        }));
        assert!(!ok(FlowFilter {
            protocol: vec!["udp".into()],
            ..Default::default()
        }));
        assert!(ok(FlowFilter {
            tcp_flags: vec![TcpFlags {
                syn: true,
                ..Default::default()
            }],
            ..Default::default()
        }));
        assert!(!ok(FlowFilter {
            tcp_flags: vec![TcpFlags {
                fin: true,
                ..Default::default()
            }],
            ..Default::default()
        }));
        assert!(ok(FlowFilter {
            source_identity: vec![300],
            destination_identity: vec![301],
            ..Default::default()
        }));
        assert!(ok(FlowFilter {
            node_name: vec!["lab-*".into()],
            ..Default::default()
        }));
        assert!(!ok(FlowFilter {
            node_name: vec!["*-n2".into()],
            ..Default::default()
        }));
        assert!(ok(FlowFilter {
            reply: vec![false],
            ..Default::default()
        }));
        assert!(ok(FlowFilter {
            traffic_direction: vec![TrafficDirection::Ingress as i32],
            ..Default::default()
        }));
        assert!(ok(FlowFilter {
            event_type: vec![EventTypeFilter {
                r#type: 1,
                match_sub_type: true,
                sub_type: 133
            }],
            ..Default::default()
        }));
        assert!(!ok(FlowFilter {
            event_type: vec![EventTypeFilter {
                r#type: 5,
                ..Default::default()
            }],
            ..Default::default()
        }));
        assert!(
            !ok(FlowFilter {
                http_method: vec!["GET".into()],
                ..Default::default()
            }),
            "no L7 in L3/L4 flows"
        );
        // AND across fields
        assert!(!ok(FlowFilter {
            verdict: vec![Verdict::Dropped as i32],
            source_pod: vec!["shop/web".into()],
            ..Default::default()
        }));
    }

    /// Random filters agree with a reference: whitelist OR, blacklist
    /// excludes, the result is the set difference.
    #[test]
    fn whitelist_minus_blacklist_against_a_reference() {
        let flows: Vec<Flow> = (0..32)
            .map(|i| {
                flow(
                    ["client-1", "client-2", "web-9", "db-0"][i % 4],
                    [Verdict::Dropped, Verdict::Forwarded][i / 4 % 2],
                    [80, 443, 53, 8080][i / 8 % 4],
                    i % 3 == 0,
                )
            })
            .collect();
        let filters = |seed: usize| -> FlowFilter {
            match seed % 4 {
                0 => FlowFilter {
                    verdict: vec![Verdict::Dropped as i32],
                    ..Default::default()
                },
                1 => FlowFilter {
                    source_pod: vec!["shop/client".into()],
                    ..Default::default()
                },
                2 => FlowFilter {
                    destination_port: vec!["80".into(), "443".into()],
                    ..Default::default()
                },
                _ => FlowFilter {
                    tcp_flags: vec![TcpFlags {
                        syn: true,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            }
        };
        let reference = |seed: usize, f: &Flow| -> bool {
            let tcp = match f.l4.as_ref().unwrap().protocol.as_ref().unwrap() {
                layer4::Protocol::Tcp(t) => *t,
                _ => unreachable!(),
            };
            match seed % 4 {
                0 => f.verdict == Verdict::Dropped as i32,
                1 => f.source.as_ref().unwrap().pod_name.starts_with("client"),
                2 => tcp.destination_port == 80 || tcp.destination_port == 443,
                _ => tcp.flags.unwrap().syn,
            }
        };
        for w in 0..4 {
            for b in 0..4 {
                for (i, f) in flows.iter().enumerate() {
                    let want = reference(w, f) && !reference(b, f);
                    assert_eq!(
                        selected(&[filters(w)], &[filters(b)], f),
                        want,
                        "whitelist {w} blacklist {b} flow {i}"
                    );
                }
            }
        }
        assert_eq!(flows.iter().filter(|f| selected(&[], &[], f)).count(), 32);
    }
}
