//! The observer and its gRPC service without a network: events in, flows
//! out with Hubble's selectors and filters.
use super::grpc::Service;
use super::Observer;
use futures::StreamExt;
use seta_hubble::decode::Context;
use seta_hubble::flow::{FlowFilter, Verdict};
use seta_hubble::observer::get_flows_response::ResponseTypes;
use seta_hubble::observer::observer_server::Observer as _;
use seta_hubble::observer::*;
use std::sync::Arc;
use tonic::Request;

fn event(i: u8, verdict: i32) -> seta_abi::SetaEvent {
    seta_abi::SetaEvent {
        event_type: seta_abi::EVENT_POLICY_VERDICT,
        src_label: 300,
        dst_label: 301,
        verdict,
        saddr: [10, 0, 0, i],
        daddr: [10, 0, 1, 1],
        sport: 40000u16.to_be_bytes(),
        dport: 80u16.to_be_bytes(),
        proto: 6,
        dir: seta_abi::METRIC_INGRESS,
        ts: i as u64 * 1_000_000,
        ..Default::default()
    }
}

async fn flows(svc: &Service, req: GetFlowsRequest) -> Vec<(String, i32)> {
    let mut s = svc.get_flows(Request::new(req)).await.unwrap().into_inner();
    let mut out = vec![];
    while let Some(r) = s.next().await {
        if let Some(ResponseTypes::Flow(f)) = r.unwrap().response_types {
            out.push((f.ip.unwrap().source, f.verdict));
        }
    }
    out
}

#[tokio::test]
async fn get_flows_last_first_filters_and_follow() {
    let obs = Arc::new(Observer::new("n1", 7).unwrap());
    let ctx = Context {
        node: "n1".into(),
        ..Default::default()
    };
    let evs: Vec<_> = (1..=9).map(|i| event(i, if i % 3 == 0 { -133 } else { 0 })).collect();
    obs.ingest(&evs, &ctx);
    let svc = Service::new(obs.clone(), "test".into());
    // the ring holds the last 7 of 9
    let all = flows(&svc, GetFlowsRequest::default()).await;
    assert_eq!(all.len(), 7);
    assert_eq!(all[0].0, "10.0.0.3");
    let last2 = flows(
        &svc,
        GetFlowsRequest {
            number: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(last2.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["10.0.0.8", "10.0.0.9"]);
    let first2 = flows(
        &svc,
        GetFlowsRequest {
            number: 2,
            first: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(first2.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["10.0.0.3", "10.0.0.4"]);
    let dropped = flows(
        &svc,
        GetFlowsRequest {
            whitelist: vec![FlowFilter {
                verdict: vec![Verdict::Dropped as i32],
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        dropped.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        ["10.0.0.3", "10.0.0.6", "10.0.0.9"]
    );
    // follow: what comes next, filtered
    let mut live = svc
        .get_flows(Request::new(GetFlowsRequest {
            follow: true,
            blacklist: vec![FlowFilter {
                verdict: vec![Verdict::Forwarded as i32],
                ..Default::default()
            }],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    obs.ingest(&[event(20, 0), event(21, -133)], &ctx);
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), live.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match next.response_types {
        Some(ResponseTypes::Flow(f)) => assert_eq!(f.ip.unwrap().source, "10.0.0.21"),
        other => panic!("{other:?}"),
    }
    assert_eq!(next.node_name, "n1");
    let st = svc.server_status(Request::new(ServerStatusRequest {})).await.unwrap().into_inner();
    assert_eq!((st.num_flows, st.max_flows, st.seen_flows), (7, 7, 11));
    let nodes = svc.get_nodes(Request::new(GetNodesRequest {})).await.unwrap().into_inner().nodes;
    assert_eq!(nodes[0].name, "n1");
    // first with follow is refused
    assert!(svc
        .get_flows(Request::new(GetFlowsRequest {
            first: true,
            follow: true,
            ..Default::default()
        }))
        .await
        .is_err());
    // a bad filter value: InvalidArgument with Hubble's words, nothing served
    let Err(e) = svc
        .get_flows(Request::new(GetFlowsRequest {
            blacklist: vec![FlowFilter {
                source_ip: vec!["10.0.0.300".into()],
                ..Default::default()
            }],
            ..Default::default()
        }))
        .await
    else {
        panic!("a bad IP is served")
    };
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(e.message(), r#"invalid IP address in filter: "10.0.0.300""#);
}

#[test]
fn hubble_metrics_count_flows_drops_flags_and_ports() {
    let obs = Observer::new("n1", 7).unwrap();
    let evs: Vec<_> = (1..=9).map(|i| event(i, if i % 3 == 0 { -133 } else { 0 })).collect();
    let mut evs = evs;
    for e in &mut evs {
        e.flags = 0x02; // SYN
                        // the allowed ones by an L3-L4 entry, two by an any-peer port one
        if e.verdict == 0 {
            e.subtype = if e.saddr[3] < 3 {
                seta_abi::POLICY_MATCH_L4_ONLY
            } else {
                seta_abi::POLICY_MATCH_L3_L4
            };
        }
    }
    // a SYN-ACK, and an ICMP echo, counted apart
    let mut synack = event(10, 0);
    synack.flags = 0x12;
    let mut icmp = event(11, 0);
    icmp.proto = 1;
    evs.extend([synack, icmp]);
    obs.ingest(&evs, &Context::default());
    let text = obs.metrics.render();
    for line in [
        "hubble_flows_processed_total{protocol=\"TCP\",subtype=\"\",type=\"PolicyVerdict\",verdict=\"DROPPED\"} 3",
        "hubble_flows_processed_total{protocol=\"TCP\",subtype=\"\",type=\"PolicyVerdict\",verdict=\"FORWARDED\"} 7",
        "hubble_flows_processed_total{protocol=\"ICMPv4\",subtype=\"\",type=\"PolicyVerdict\",verdict=\"FORWARDED\"} 1",
        "hubble_drop_total{protocol=\"TCP\",reason=\"POLICY_DENIED\"} 3",
        "hubble_tcp_flags_total{family=\"IPv4\",flag=\"SYN\"} 9",
        "hubble_tcp_flags_total{family=\"IPv4\",flag=\"SYN-ACK\"} 1",
        "hubble_icmp_total{family=\"IPv4\",type=\"8\"} 1",
        "hubble_port_distribution_total{port=\"80\",protocol=\"TCP\"} 10",
        "hubble_policy_verdicts_total{action=\"dropped\",direction=\"ingress\",match=\"none\"} 3",
        "hubble_policy_verdicts_total{action=\"forwarded\",direction=\"ingress\",match=\"l4-only\"} 2",
        "hubble_policy_verdicts_total{action=\"forwarded\",direction=\"ingress\",match=\"l3-l4\"} 4",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}

/// `--hubble-metrics` chooses the metrics and adds Hubble's context labels:
/// a context with alternatives takes the first the flow has.
#[test]
fn hubble_metrics_take_hubbles_options_and_context_labels() {
    use super::metrics::{FlowMetrics, MetricsConfig};
    let cfg =
        MetricsConfig::parse("drop:sourceContext=pod|ip;destinationContext=identity;labelsContext=source_namespace,traffic_direction flow")
            .unwrap();
    assert_eq!(cfg.0.keys().collect::<Vec<_>>(), ["drop", "flow"]);
    let mut obs = Observer::new("n1", 7).unwrap();
    obs.metrics = FlowMetrics::new(cfg);
    let evs: Vec<_> = (1..=6).map(|i| event(i, if i % 3 == 0 { -133 } else { 0 })).collect();
    obs.ingest(&evs, &Context::default());
    let text = obs.metrics.render();
    for ip in ["10.0.0.3", "10.0.0.6"] {
        let line = format!("hubble_drop_total{{protocol=\"TCP\",reason=\"POLICY_DENIED\",source=\"{ip}\",destination=\"301\",source_namespace=\"\",traffic_direction=\"ingress\"}} 1");
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("hubble_flows_processed_total{"), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("hubble_port_distribution_total{")),
        "not chosen: {text}"
    );
    for (spec, err) in [
        ("drops", "\"drops\": no such metric"),
        ("drop:sourceContext=cluster", "drop: sourceContext: \"cluster\": no such context"),
        ("drop:labelsContext=source_ip,pod", "drop: labelsContext: \"pod\": no such label"),
        ("flow:exemplars", "flow: \"exemplars\": an option is key=value"),
    ] {
        let e = MetricsConfig::parse(spec).unwrap_err();
        assert!(e.starts_with(err), "{spec}: {e}");
    }
}

#[tokio::test]
async fn lost_events_reach_followers_and_metrics() {
    let obs = Arc::new(Observer::new("n1", 7).unwrap());
    let svc = Service::new(obs.clone(), "test".into());
    let mut live = svc
        .get_flows(Request::new(GetFlowsRequest {
            follow: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    obs.lost(5);
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), live.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match r.response_types {
        Some(ResponseTypes::LostEvents(l)) => {
            assert_eq!(l.num_events_lost, 5);
            assert_eq!(l.source, seta_hubble::flow::LostEventSource::PerfEventRingBuffer as i32);
        }
        other => panic!("{other:?}"),
    }
    assert!(obs
        .metrics
        .render()
        .lines()
        .any(|l| l == "hubble_lost_events_total{source=\"perf_event_ring_buffer\"} 5"));
}

/// The export file gets every flow and lost-events notice as a JSON line
/// in `hubble observe -o json`'s format, rotated by size with a bounded
/// number of backups.
#[test]
fn flows_are_exported_as_json_lines_and_rotated() {
    let dir = std::env::temp_dir().join(format!("seta-unit-{}-export", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("hubble").join("events.log");
    let obs = Arc::new(Observer::new("n1", 63).unwrap());
    let cfg = super::export::ExportConfig {
        path: path.clone(),
        max_bytes: 2000,
        max_backups: 2,
        allow: vec![],
        deny: vec![],
    };
    let t = super::export::spawn(obs.clone(), super::export::Exporter::open(cfg).unwrap());
    let ctx = Context {
        node: "n1".into(),
        ..Default::default()
    };
    let evs: Vec<_> = (1..=30).map(|i| event(i, if i % 2 == 0 { -133 } else { 0 })).collect();
    obs.ingest(&evs, &ctx);
    obs.lost(3);
    // the exporter follows on its own thread: wait until everything is written
    let lines = |p: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let backup = |i: usize| dir.join("hubble").join(format!("events.log.{i}"));
    let t0 = std::time::Instant::now();
    while !lines(&path).iter().any(|l| l.get("lost_events").is_some()) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "the lost-events notice is exported"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let now = lines(&path);
    let lost = now.last().unwrap();
    assert_eq!(lost["lost_events"]["num_events_lost"], 3);
    assert_eq!(lost["node_name"], "n1");
    assert!(backup(1).exists() && backup(2).exists(), "rotated into two backups");
    assert!(!backup(3).exists(), "no more than --hubble-export-file-max-backups");
    for p in [path.clone(), backup(1), backup(2)] {
        assert!(std::fs::metadata(&p).unwrap().len() <= 2000, "{}", p.display());
    }
    let f = &now.iter().find(|l| l.get("flow").is_some()).unwrap()["flow"];
    assert_eq!(f["node_name"], "n1");
    assert!(f["IP"]["source"].as_str().unwrap().starts_with("10.0.0."), "{f}");
    assert!(f["verdict"] == "FORWARDED" || f["verdict"] == "DROPPED", "{f}");
    drop(obs);
    let _ = t; // the thread ends with the process (the observer lives as long)
    let _ = std::fs::remove_dir_all(&dir);
}

/// With an allowlist and a denylist (Hubble's JSON filters) only the flows
/// they let through are exported; lost-events notices always are.
#[test]
fn the_export_lists_choose_the_flows() {
    let dir = std::env::temp_dir().join(format!("seta-unit-{}-export-lists", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("events.log");
    let obs = Arc::new(Observer::new("n1", 63).unwrap());
    let cfg = super::export::ExportConfig {
        path: path.clone(),
        max_bytes: 1 << 20,
        max_backups: 1,
        allow: seta_hubble::filter::from_json(r#"{"verdict":["DROPPED"]}"#).unwrap(),
        deny: seta_hubble::filter::from_json(r#"{"source_ip":["10.0.0.2"]}"#).unwrap(),
    };
    let _t = super::export::spawn(obs.clone(), super::export::Exporter::open(cfg).unwrap());
    let ctx = Context {
        node: "n1".into(),
        ..Default::default()
    };
    let evs: Vec<_> = (1..=10).map(|i| event(i, if i % 2 == 0 { -133 } else { 0 })).collect();
    obs.ingest(&evs, &ctx);
    obs.lost(1);
    let t0 = std::time::Instant::now();
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    while !lines().iter().any(|l| l.get("lost_events").is_some()) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "the lost-events notice is exported"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let flows: Vec<(String, String)> = lines()
        .iter()
        .filter_map(|l| l.get("flow"))
        .map(|f| {
            (
                f["verdict"].as_str().unwrap().to_string(),
                f["IP"]["source"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let dropped_sources: Vec<String> = (1..=10)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("10.0.0.{i}"))
        .filter(|s| s != "10.0.0.2")
        .collect();
    assert_eq!(
        flows,
        dropped_sources
            .iter()
            .map(|s| ("DROPPED".to_string(), s.clone()))
            .collect::<Vec<_>>(),
        "drops only, none from the denied source"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The peer API's changes between two lists: added, updated, deleted.
#[test]
fn peer_changes_name_what_was_added_updated_and_deleted() {
    use seta_hubble::peer::ChangeNotificationType as T;
    let m = |v: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    };
    let old = m(&[("n1", "172.30.0.1:4244"), ("n2", "172.30.0.2:4244")]);
    let new = m(&[("n1", "172.30.0.9:4244"), ("n3", "172.30.0.3:4244")]);
    let got: Vec<(String, String, i32)> = super::peer::changes(&old, &new)
        .into_iter()
        .map(|n| (n.name, n.address, n.r#type))
        .collect();
    assert_eq!(
        got,
        [
            ("n1".to_string(), "172.30.0.9:4244".to_string(), T::PeerUpdated as i32),
            ("n3".to_string(), "172.30.0.3:4244".to_string(), T::PeerAdded as i32),
            ("n2".to_string(), "172.30.0.2:4244".to_string(), T::PeerDeleted as i32),
        ]
    );
    assert!(super::peer::changes(&new, &new).is_empty());
}
