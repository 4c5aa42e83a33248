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
        || !f.source_service.is_empty()
        || !f.destination_service.is_empty()
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
        && any(&f.protocol, |p| {
            protocol_name(flow).is_some_and(|n| n.eq_ignore_ascii_case(p.trim()))
        })
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

/// `ns/prefix`, `ns/` (every pod of the namespace) or `prefix` (a pod
/// name prefix in any namespace).
fn pod_matches(pattern: &str, ns: &str, pod: &str) -> bool {
    match pattern.split_once('/') {
        Some((pns, prefix)) => ns == pns && (prefix.is_empty() || pod.starts_with(prefix)),
        None => !pod.is_empty() && pod.starts_with(pattern),
    }
}

/// A Kubernetes label selector in its string form (`k=v`, `k==v`, `k!=v`,
/// `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, comma = AND) against flow
/// labels (`source:key=value`; a selector key may carry a source).
pub fn selector_matches(selector: &str, labels: &[String]) -> bool {
    let parsed: Vec<(&str, &str)> = labels.iter().map(|l| l.split_once('=').unwrap_or((l.as_str(), ""))).collect();
    let value_of = |key: &str| -> Option<&str> {
        parsed.iter().find_map(|(k, v)| {
            let plain = k.split_once(':').map_or(*k, |(_, rest)| rest);
            (*k == key || plain == key).then_some(*v)
        })
    };
    split_requirements(selector).iter().all(|req| {
        let r = req.trim();
        if let Some((k, set)) = r.split_once(" notin ") {
            let vals = set_values(set);
            return value_of(k.trim()).is_none_or(|v| !vals.contains(&v));
        }
        if let Some((k, set)) = r.split_once(" in ") {
            let vals = set_values(set);
            return value_of(k.trim()).is_some_and(|v| vals.contains(&v));
        }
        if let Some((k, v)) = r.split_once("!=") {
            return value_of(k.trim()) != Some(v.trim());
        }
        if let Some((k, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
            return value_of(k.trim()) == Some(v.trim());
        }
        if let Some(k) = r.strip_prefix('!') {
            return value_of(k.trim()).is_none();
        }
        value_of(r).is_some()
    })
}

/// Requirements split on commas outside parentheses.
fn split_requirements(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|r| !r.trim().is_empty()).collect()
}

fn set_values(set: &str) -> Vec<&str> {
    set.trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::*;

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
        assert!(ok(FlowFilter {
            source_pod: vec!["client".into()],
            ..Default::default()
        }));
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
