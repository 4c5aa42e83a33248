//! The service map (`--ui-listen-address`), as Hubble UI shows it: a page
//! that draws the cluster's workloads and the flows between them, colored
//! by verdict, above a flow table; both take `seta observe`'s filters. The
//! page asks `/api/map` every two seconds; the relay answers from the
//! latest flows of every node (its own GetFlows: fanned out and merged).
use crate::server::Relay;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use serde::Serialize;
use seta_hubble::compact::Parts;
use seta_hubble::observer::get_flows_response::ResponseTypes;
use seta_hubble::observer::observer_server::Observer;
use seta_hubble::observer::GetFlowsRequest;
use seta_hubble::relay::NodeState;
use seta_hubble::select::Selectors;
use seta_hubble::servicemap::ServiceMap;

const PAGE: &str = include_str!("ui/index.html");
/// Flows the map is drawn from, unless `last=` says otherwise.
const DEFAULT_LAST: u64 = 2000;
/// Rows in the flow table.
const TABLE_ROWS: usize = 200;

pub fn router(relay: Relay) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/map", get(map))
        .with_state(relay)
}

#[derive(Serialize)]
struct Row {
    time: String,
    node: String,
    source: String,
    source_identity: String,
    destination: String,
    destination_identity: String,
    kind: String,
    verdict: &'static str,
    summary: String,
    dropped: bool,
}

#[derive(Serialize)]
struct MapResponse {
    nodes: Vec<seta_hubble::servicemap::Node>,
    edges: Vec<seta_hubble::servicemap::Edge>,
    flows: Vec<Row>,
    connected_nodes: Vec<String>,
    unavailable_nodes: Vec<String>,
}

fn bad(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": msg }))).into_response()
}

/// What a query asks for: `filter=<flags as typed>`, any selector flag by
/// name (`namespace=default`), `last=N`, `since=5m`.
fn request(query: &[(String, String)]) -> Result<GetFlowsRequest, String> {
    let mut sel = Selectors::default();
    let mut last = DEFAULT_LAST;
    let mut since = None;
    for (k, v) in query {
        match k.as_str() {
            "filter" => {
                sel.extend(Selectors::parse_flags(v)?);
            }
            "last" => last = v.parse().map_err(|_| format!("last={v:?}: not a number"))?,
            "since" => {
                let ago = seta_core::time::parse_duration(v).map_err(|e| format!("since={v:?}: {e}"))?;
                let t = std::time::SystemTime::now()
                    .checked_sub(ago)
                    .unwrap_or(std::time::UNIX_EPOCH)
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                since = Some(prost_types::Timestamp {
                    seconds: t.as_secs() as i64,
                    nanos: t.subsec_nanos() as i32,
                });
            }
            _ => sel.set(k, v)?,
        }
    }
    Ok(GetFlowsRequest {
        number: last,
        whitelist: sel.whitelist()?,
        since,
        ..Default::default()
    })
}

async fn map(State(relay): State<Relay>, Query(query): Query<Vec<(String, String)>>) -> Response {
    let req = match request(&query) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let stream = match relay.get_flows(tonic::Request::new(req)).await {
        Ok(s) => s.into_inner(),
        Err(e) => return (StatusCode::BAD_GATEWAY, Json(serde_json::json!({ "error": e.message() }))).into_response(),
    };
    let responses: Vec<_> = stream.collect().await;
    let mut m = ServiceMap::default();
    let mut rows = Vec::new();
    let (mut connected, mut unavailable) = (Vec::new(), Vec::new());
    for r in responses.into_iter().flatten() {
        match r.response_types {
            Some(ResponseTypes::Flow(f)) => {
                m.add(&f);
                let p = Parts::of(&f);
                rows.push(Row {
                    time: p.time,
                    node: f.node_name.clone(),
                    source: p.source.0,
                    source_identity: p.source.1,
                    destination: p.destination.0,
                    destination_identity: p.destination.1,
                    kind: p.kind,
                    verdict: p.verdict,
                    summary: p.summary,
                    dropped: p.verdict == "DROPPED" || p.verdict == "DENIED",
                });
            }
            Some(ResponseTypes::NodeStatus(s)) => match NodeState::try_from(s.state_change) {
                Ok(NodeState::NodeConnected) => connected.extend(s.node_names),
                Ok(_) => unavailable.extend(s.node_names),
                Err(_) => {}
            },
            _ => {}
        }
    }
    // newest first in the table
    rows.reverse();
    rows.truncate(TABLE_ROWS);
    let body = MapResponse {
        nodes: m.nodes().into_iter().cloned().collect(),
        edges: m.edges().into_iter().cloned().collect(),
        flows: rows,
        connected_nodes: connected,
        unavailable_nodes: unavailable,
    };
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_query_takes_observe_flags_typed_or_by_name() {
        let r = request(&q(&[
            ("filter", "--namespace default --verdict DROPPED"),
            ("to-port", "80"),
            ("last", "50"),
        ]))
        .unwrap();
        assert_eq!(r.number, 50);
        assert_eq!(r.whitelist.len(), 2);
        assert!(r.whitelist.iter().all(|f| f.destination_port == ["80"] && f.verdict == [2]));
        assert_eq!(r.whitelist[0].source_pod, ["default/"]);
        assert!(request(&q(&[("since", "5m")])).unwrap().since.is_some());
        for (pairs, want) in [
            (q(&[("filter", "--bogus 1")]), "--bogus"),
            (q(&[("colour", "red")]), "--colour"),
            (q(&[("last", "many")]), "last=\"many\""),
            (q(&[("verdict", "MAYBE")]), "--verdict MAYBE"),
        ] {
            let e = request(&pairs).unwrap_err();
            assert!(e.contains(want), "{pairs:?}: {e}");
        }
    }
}
