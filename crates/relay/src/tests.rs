//! The relay against in-process observers on loopback TCP, and an address
//! where nothing listens.
use crate::peers::PeerSet;
use crate::server::{Relay, Server};
use futures::StreamExt;
use seta_hubble::flow::Flow;
use seta_hubble::observer::get_flows_response::ResponseTypes;
use seta_hubble::observer::observer_client::ObserverClient;
use seta_hubble::observer::observer_server::{Observer, ObserverServer};
use seta_hubble::observer::*;
use seta_hubble::relay::NodeState;
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// An observer of node `name` holding flows at the given seconds; while
/// following it sends them and then stays open.
struct Fake {
    name: String,
    at: Vec<i64>,
}

fn flow(node: &str, t: i64) -> GetFlowsResponse {
    let time = Some(prost_types::Timestamp { seconds: t, nanos: 0 });
    GetFlowsResponse {
        node_name: node.into(),
        time,
        response_types: Some(ResponseTypes::Flow(Flow {
            time,
            node_name: node.into(),
            ..Default::default()
        })),
    }
}

#[tonic::async_trait]
impl Observer for Fake {
    type GetFlowsStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<GetFlowsResponse, Status>> + Send>>;
    async fn get_flows(&self, r: Request<GetFlowsRequest>) -> Result<Response<Self::GetFlowsStream>, Status> {
        let v: Vec<_> = self.at.iter().map(|t| Ok(flow(&self.name, *t))).collect();
        let s = futures::stream::iter(v);
        Ok(Response::new(if r.into_inner().follow {
            s.chain(futures::stream::pending()).boxed()
        } else {
            s.boxed()
        }))
    }
    async fn get_nodes(&self, _: Request<GetNodesRequest>) -> Result<Response<GetNodesResponse>, Status> {
        Ok(Response::new(GetNodesResponse {
            nodes: vec![Node {
                name: self.name.clone(),
                state: NodeState::NodeConnected as i32,
                num_flows: self.at.len() as u64,
                ..Default::default()
            }],
        }))
    }
    type GetAgentEventsStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<GetAgentEventsResponse, Status>> + Send>>;
    async fn get_agent_events(&self, _: Request<GetAgentEventsRequest>) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
    type GetDebugEventsStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<GetDebugEventsResponse, Status>> + Send>>;
    async fn get_debug_events(&self, _: Request<GetDebugEventsRequest>) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn server_status(&self, _: Request<ServerStatusRequest>) -> Result<Response<ServerStatusResponse>, Status> {
        Ok(Response::new(ServerStatusResponse {
            num_flows: self.at.len() as u64,
            max_flows: 4095,
            seen_flows: 10,
            ..Default::default()
        }))
    }
}

/// Serve `svc` on a loopback port: its address.
async fn serve<S>(svc: S) -> String
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>, Error = std::convert::Infallible>
        + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let incoming = futures::stream::unfold(l, |l| async move { Some((l.accept().await.map(|(s, _)| s), l)) });
    tokio::spawn(tonic::transport::Server::builder().add_service(svc).serve_with_incoming(incoming));
    addr
}

/// Two observers and a node nobody answers for, behind a relay: its address.
async fn relay() -> String {
    relay_and_peers().await.0
}

/// As `relay`, with the relay's peer set.
async fn relay_and_peers() -> (String, PeerSet) {
    relay_draining_after(Duration::from_millis(50)).await
}

/// The relay in front of n1, n2 and the unreachable n3, whose sort buffer
/// drains after `drain`.
async fn relay_draining_after(drain: Duration) -> (String, PeerSet) {
    let a = serve(ObserverServer::new(Fake {
        name: "n1".into(),
        at: vec![1, 4, 6],
    }))
    .await;
    let b = serve(ObserverServer::new(Fake {
        name: "n2".into(),
        at: vec![2, 3, 5],
    }))
    .await;
    // a port that was just free: nothing listens there
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let set = PeerSet::default();
    set.set(BTreeMap::from([("n1".into(), a), ("n2".into(), b), ("n3".into(), dead)]));
    let addr = serve(Server::new(Relay::new(set.clone(), Duration::from_millis(500), 100, drain))).await;
    (addr, set)
}

fn describe(r: &GetFlowsResponse) -> String {
    match &r.response_types {
        Some(ResponseTypes::Flow(f)) => format!("{}@{}", f.node_name, f.time.unwrap().seconds),
        Some(ResponseTypes::NodeStatus(n)) => {
            format!(
                "{}:{}",
                NodeState::try_from(n.state_change).unwrap().as_str_name(),
                n.node_names.join(",")
            )
        }
        _ => "?".into(),
    }
}

/// Everything the relay in front of n1, n2 and n3 has, in order.
const ALL: [&str; 8] = [
    "NODE_CONNECTED:n1,n2",
    "NODE_UNAVAILABLE:n3",
    "n1@1",
    "n2@2",
    "n2@3",
    "n1@4",
    "n2@5",
    "n1@6",
];

/// The next `n` responses of a followed stream, described (5 s each at most).
async fn next_described(s: &mut tonic::Streaming<GetFlowsResponse>, n: usize) -> Vec<String> {
    let mut got = vec![];
    while got.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(5), s.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push(describe(&m));
    }
    got
}

/// A bounded GetFlows, each response described.
async fn bounded(c: &mut ObserverClient<tonic::transport::Channel>, r: GetFlowsRequest) -> Vec<String> {
    c.get_flows(r)
        .await
        .unwrap()
        .into_inner()
        .map(|r| describe(&r.unwrap()))
        .collect()
        .await
}

#[tokio::test]
async fn flows_of_every_node_merged_by_time_and_the_unreachable_one_named() {
    let mut c = seta_hubble::connect(&relay().await).await.unwrap();
    let get = |number, first, follow| GetFlowsRequest {
        number,
        first,
        follow,
        ..Default::default()
    };
    let all = bounded(&mut c, get(0, false, false)).await;
    assert_eq!(all, ALL);
    let last = bounded(&mut c, get(2, false, false)).await;
    assert_eq!(&last[2..], ["n2@5", "n1@6"], "the last 2 over all nodes");
    let first = bounded(&mut c, get(2, true, false)).await;
    assert_eq!(&first[2..], ["n1@1", "n2@2"], "the first 2 over all nodes");
    // following: the same order through the sort buffer, the stream stays open
    let mut s = c.get_flows(get(0, false, true)).await.unwrap().into_inner();
    assert_eq!(next_described(&mut s, 8).await, ALL);
}

/// Following, a flow goes as soon as every node has sent one at least as
/// new (each node's stream is in time order), not after the drain timeout:
/// n2's last flow is @5, so everything up to @5 comes at once, in order,
/// and n1@6 waits (here for a minute).
#[tokio::test]
async fn following_lets_flows_go_once_every_node_is_past_them() {
    let (addr, _) = relay_draining_after(Duration::from_secs(60)).await;
    let mut c = seta_hubble::connect(&addr).await.unwrap();
    let req = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    let mut s = c.get_flows(req).await.unwrap().into_inner();
    assert_eq!(next_described(&mut s, 7).await, ALL[..7]);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), s.message()).await.is_err(),
        "n1@6 is held: n2 has sent nothing as new"
    );
}

#[tokio::test]
async fn status_and_nodes_sum_the_nodes_and_name_the_unavailable() {
    let mut c = seta_hubble::connect(&relay().await).await.unwrap();
    let s = c.server_status(ServerStatusRequest {}).await.unwrap().into_inner();
    assert_eq!((s.num_flows, s.max_flows, s.seen_flows), (6, 8190, 20));
    assert_eq!((s.num_connected_nodes, s.num_unavailable_nodes), (Some(2), Some(1)));
    assert_eq!(s.unavailable_nodes, ["n3"]);
    let nodes = c.get_nodes(GetNodesRequest {}).await.unwrap().into_inner().nodes;
    let states: Vec<(String, &str)> = nodes
        .iter()
        .map(|n| (n.name.clone(), NodeState::try_from(n.state).unwrap().as_str_name()))
        .collect();
    assert_eq!(
        states,
        [
            ("n1".to_string(), "NODE_CONNECTED"),
            ("n2".to_string(), "NODE_CONNECTED"),
            ("n3".to_string(), "NODE_UNAVAILABLE")
        ]
    );
    assert!(
        nodes.iter().all(|n| n.address.starts_with("127.0.0.1:")),
        "addresses the relay uses"
    );
}

/// While a client follows, a node joins the peer set: it is followed from
/// then on (NODE_CONNECTED, then its flows); the node that cannot be
/// reached is not reported again and again.
#[tokio::test]
async fn following_picks_up_a_node_that_joins() {
    let (addr, set) = relay_and_peers().await;
    let mut c = seta_hubble::connect(&addr).await.unwrap();
    let req = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    let mut s = c.get_flows(req).await.unwrap().into_inner();
    async fn next(s: &mut tonic::Streaming<GetFlowsResponse>) -> String {
        let m = tokio::time::timeout(Duration::from_secs(5), s.message()).await;
        describe(&m.expect("a message within 5 s").unwrap().unwrap())
    }
    for _ in 0..8 {
        next(&mut s).await;
    }
    let d = serve(ObserverServer::new(Fake {
        name: "n4".into(),
        at: vec![7],
    }))
    .await;
    let mut peers = set.snapshot();
    peers.insert("n4".into(), d);
    set.set(peers);
    assert_eq!(next(&mut s).await, "NODE_CONNECTED:n4");
    assert_eq!(next(&mut s).await, "n4@7");
}

/// The service map's HTTP side: the page, and the map of every node's
/// flows with the unavailable node named; a bad filter is a 400 naming it.
#[tokio::test]
async fn the_service_map_serves_the_page_and_every_nodes_flows() {
    use tower::ServiceExt;
    let (_, set) = relay_and_peers().await;
    let app = crate::ui::router(Relay::new(set, Duration::from_millis(500), 100, Duration::from_millis(50)));
    let get = |uri: &str| {
        let app = app.clone();
        let req = http::Request::get(uri).body(axum::body::Body::empty()).unwrap();
        async move {
            let r = app.oneshot(req).await.unwrap();
            let status = r.status();
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let (status, page) = get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<svg id=\"map\"") && page.contains("/api/map"), "{page}");
    let (status, body) = get("/api/map").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["flows"].as_array().unwrap().len(), 6, "{v}");
    assert_eq!(v["connected_nodes"], serde_json::json!(["n1", "n2"]));
    assert_eq!(v["unavailable_nodes"], serde_json::json!(["n3"]));
    let nodes: Vec<&str> = v["flows"].as_array().unwrap().iter().map(|f| f["node"].as_str().unwrap()).collect();
    assert_eq!(nodes, ["n1", "n2", "n1", "n2", "n2", "n1"], "newest first");
    let (status, body) = get("/api/map?filter=--colour%20red").await;
    assert_eq!(status, 400);
    assert!(body.contains("--colour: not a filter"), "{body}");
}
