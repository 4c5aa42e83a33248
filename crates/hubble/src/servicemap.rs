//! The service map, as Hubble UI draws it: workloads (namespace/app, or a
//! reserved identity such as `world`) as nodes, and who talked to whom on
//! which port as edges, counted by verdict. Replies count on the edge of
//! their request (client → server). Pure: the relay feeds it flows.
use crate::flow::{Endpoint, Flow, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;

/// A workload on the map.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    /// `ns/app`, `ns/pod`, a reserved name (`world`, `host`, …), `ID:n` or an address
    pub id: String,
    pub namespace: String,
    pub identity: u32,
    /// workload, reserved, identity or ip
    pub kind: &'static str,
}

/// Traffic from one workload to another on one port.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Edge {
    pub source: String,
    pub target: String,
    pub protocol: String,
    pub port: u32,
    pub forwarded: u64,
    pub dropped: u64,
    /// `dropped` when any flow on the edge was dropped, else `forwarded`
    pub verdict: &'static str,
    /// drop reasons seen, by name
    pub drop_reasons: Vec<String>,
}

#[derive(Default, Debug)]
pub struct ServiceMap {
    nodes: BTreeMap<String, Node>,
    edges: BTreeMap<(String, String, String, u32), Edge>,
}

/// The app a workload is named by: Kubernetes' `app` labels, in Cilium's
/// label format (`k8s:app=web`) or plain.
fn app(e: &Endpoint) -> Option<&str> {
    for key in ["app.kubernetes.io/name", "app", "k8s-app"] {
        for l in &e.labels {
            let l = l
                .split_once(':')
                .map_or(l.as_str(), |(src, rest)| if src.contains('=') { l.as_str() } else { rest });
            if let Some((k, v)) = l.split_once('=') {
                if k == key && !v.is_empty() {
                    return Some(v);
                }
            }
        }
    }
    None
}

/// The map node of one side of a flow.
pub fn workload(e: Option<&Endpoint>, ip: &str) -> Node {
    let identity = e.map_or(0, |e| e.identity);
    let namespace = e.map_or(String::new(), |e| e.namespace.clone());
    if let Some(e) = e.filter(|e| !e.namespace.is_empty()) {
        let name = app(e)
            .map(str::to_string)
            .or_else(|| e.workloads.first().map(|w| w.name.clone()))
            .unwrap_or_else(|| e.pod_name.clone());
        if !name.is_empty() {
            return Node {
                id: format!("{}/{name}", e.namespace),
                namespace,
                identity,
                kind: "workload",
            };
        }
    }
    if let Some(n) = crate::compact::reserved_name(identity) {
        return Node {
            id: n.into(),
            namespace,
            identity,
            kind: "reserved",
        };
    }
    if identity != 0 {
        return Node {
            id: format!("ID:{identity}"),
            namespace,
            identity,
            kind: "identity",
        };
    }
    Node {
        id: ip.to_string(),
        namespace,
        identity,
        kind: "ip",
    }
}

impl ServiceMap {
    /// One flow more; one without addresses (e.g. a frame dropped before
    /// its L3 header was read) is not traffic between workloads.
    pub fn add(&mut self, f: &Flow) {
        let (sip, dip) =
            f.ip.as_ref()
                .map_or((String::new(), String::new()), |i| (i.source.clone(), i.destination.clone()));
        let none = |a: &str| a.is_empty() || a == "0.0.0.0";
        if none(&sip) && none(&dip) {
            return;
        }
        let mut src = workload(f.source.as_ref(), &sip);
        let mut dst = workload(f.destination.as_ref(), &dip);
        // neither side known to the cluster (link-local chatter and the like)
        if src.kind == "ip" && dst.kind == "ip" {
            return;
        }
        let (sport, dport) = crate::l4_ports(f);
        let mut port = dport;
        if f.is_reply == Some(true) {
            std::mem::swap(&mut src, &mut dst);
            port = sport;
        }
        let protocol = crate::filter::protocol_name(f).unwrap_or("").to_string();
        let port = port.unwrap_or(0);
        let key = (src.id.clone(), dst.id.clone(), protocol.clone(), port);
        let e = self.edges.entry(key).or_insert_with(|| Edge {
            source: src.id.clone(),
            target: dst.id.clone(),
            protocol,
            port,
            forwarded: 0,
            dropped: 0,
            verdict: "forwarded",
            drop_reasons: vec![],
        });
        match Verdict::try_from(f.verdict) {
            Ok(Verdict::Dropped | Verdict::Error) => {
                e.dropped += 1;
                e.verdict = "dropped";
                // a policy verdict's denial and its drop event say the same
                let t = f.event_type.as_ref().map_or(0, |t| t.r#type);
                let reason = if t == 5 {
                    "Policy denied".to_string()
                } else {
                    crate::compact::Parts::of(f).kind
                };
                if !e.drop_reasons.contains(&reason) {
                    e.drop_reasons.push(reason);
                }
            }
            _ => e.forwarded += 1,
        }
        for n in [src, dst] {
            self.nodes.entry(n.id.clone()).or_insert(n);
        }
    }

    pub fn nodes(&self) -> Vec<&Node> {
        self.nodes.values().collect()
    }

    pub fn edges(&self) -> Vec<&Edge> {
        self.edges.values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::*;

    fn ep(ns: &str, pod: &str, id: u32, labels: &[&str]) -> Option<Endpoint> {
        Some(Endpoint {
            identity: id,
            namespace: ns.into(),
            pod_name: pod.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            ..Default::default()
        })
    }

    fn flow(src: Option<Endpoint>, dst: Option<Endpoint>, ports: (u32, u32), verdict: Verdict, reply: bool, t: i32) -> Flow {
        Flow {
            source: src,
            destination: dst,
            ip: Some(Ip {
                source: "10.0.0.1".into(),
                destination: "192.0.2.9".into(),
                ..Default::default()
            }),
            l4: Some(Layer4 {
                protocol: Some(layer4::Protocol::Tcp(Tcp {
                    source_port: ports.0,
                    destination_port: ports.1,
                    flags: None,
                })),
            }),
            verdict: verdict as i32,
            is_reply: Some(reply),
            event_type: Some(CiliumEventType { r#type: t, sub_type: 0 }),
            drop_reason_desc: if verdict == Verdict::Dropped { 133 } else { 0 },
            ..Default::default()
        }
    }

    #[test]
    fn workloads_are_apps_and_replies_count_on_their_request() {
        let client = ep(
            "default",
            "client-7d9f",
            300,
            &["k8s:app=client", "k8s:io.kubernetes.pod.namespace=default"],
        );
        let web = ep("default", "web-1", 301, &["k8s:app.kubernetes.io/name=web"]);
        let lone = ep("prod", "lone", 302, &[]);
        let mut m = ServiceMap::default();
        m.add(&flow(client.clone(), web.clone(), (40000, 80), Verdict::Forwarded, false, 4));
        m.add(&flow(web.clone(), client.clone(), (80, 40000), Verdict::Forwarded, true, 4));
        m.add(&flow(lone.clone(), web.clone(), (40001, 80), Verdict::Dropped, false, 1));
        m.add(&flow(lone.clone(), web.clone(), (40001, 80), Verdict::Dropped, false, 5));
        m.add(&flow(client.clone(), None, (40002, 443), Verdict::Forwarded, false, 4));
        let world = Endpoint {
            identity: 2,
            ..Default::default()
        };
        m.add(&flow(Some(world), client.clone(), (1, 8080), Verdict::Forwarded, false, 4));
        let mut no_l3 = flow(None, None, (0, 0), Verdict::Dropped, false, 1);
        no_l3.ip = Some(Ip {
            source: "0.0.0.0".into(),
            destination: "0.0.0.0".into(),
            ..Default::default()
        });
        m.add(&no_l3);
        let ids: Vec<(&str, &str)> = m.nodes().iter().map(|n| (n.id.as_str(), n.kind)).collect();
        assert_eq!(
            ids,
            [
                ("192.0.2.9", "ip"),
                ("default/client", "workload"),
                ("default/web", "workload"),
                ("prod/lone", "workload"),
                ("world", "reserved")
            ]
        );
        let edges: Vec<(&str, &str, u32, u64, u64, &str)> = m
            .edges()
            .iter()
            .map(|e| (e.source.as_str(), e.target.as_str(), e.port, e.forwarded, e.dropped, e.verdict))
            .collect();
        assert_eq!(
            edges,
            [
                ("default/client", "192.0.2.9", 443, 1, 0, "forwarded"),
                ("default/client", "default/web", 80, 2, 0, "forwarded"),
                ("prod/lone", "default/web", 80, 0, 2, "dropped"),
                ("world", "default/client", 8080, 1, 0, "forwarded"),
            ]
        );
        let dropped = m.edges().into_iter().find(|e| e.verdict == "dropped").unwrap();
        assert_eq!(dropped.drop_reasons, ["Policy denied"]);
    }
}
