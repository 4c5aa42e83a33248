//! The relay's `observer.Observer`: each call goes to every known node's
//! observer at once. Flows come back merged by time (all sorted for a
//! bounded request; through a bounded sort buffer while following), and a
//! node that cannot be reached is named: node-status events in GetFlows,
//! counts in ServerStatus, its state in GetNodes.
use crate::peers::PeerSet;
use futures::{Stream, StreamExt};
use seta_hubble::merge::{merge_all, SortBuffer};
use seta_hubble::observer::get_flows_response::ResponseTypes;
use seta_hubble::observer::observer_client::ObserverClient;
use seta_hubble::observer::observer_server::{Observer, ObserverServer};
use seta_hubble::observer::*;
use seta_hubble::relay::{NodeState, NodeStatusEvent};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// How long a bounded request may take to read a node's flows.
const READ_ALL: Duration = Duration::from_secs(10);
/// How often a follow looks for peers that joined or came back.
const PEER_RESCAN: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Relay {
    peers: PeerSet,
    dial: Duration,
    sort_max: usize,
    drain: Duration,
    started: Instant,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

pub type Server = ObserverServer<Relay>;

impl Relay {
    pub fn new(peers: PeerSet, dial: Duration, sort_max: usize, drain: Duration) -> Self {
        Self {
            peers,
            dial,
            sort_max,
            drain,
            started: Instant::now(),
            channels: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    async fn client(&self, addr: &str) -> Result<ObserverClient<Channel>, String> {
        let cached = self.channels.lock().unwrap_or_else(|e| e.into_inner()).get(addr).cloned();
        let ch = match cached {
            Some(ch) => ch,
            None => {
                let ch = seta_hubble::channel(addr, self.dial).await?;
                self.channels
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(addr.to_string(), ch.clone());
                ch
            }
        };
        Ok(ObserverClient::new(ch))
    }

    /// `call` on every known node at once, each bounded by the dial
    /// timeout: (name, address, what it answered or why not).
    async fn each<T, F, Fut>(&self, call: F) -> Vec<(String, String, Result<T, String>)>
    where
        F: Fn(ObserverClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let call = &call;
        futures::future::join_all(self.peers.snapshot().into_iter().map(|(name, addr)| async move {
            let r = self.call(&addr, call).await;
            (name, addr, r)
        }))
        .await
    }

    /// `call` on the node at `addr`, bounded by the dial timeout: what it
    /// answered or why not.
    async fn call<T, F, Fut>(&self, addr: &str, call: F) -> Result<T, String>
    where
        F: FnOnce(ObserverClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let c = self.client(addr).await?;
        tokio::time::timeout(self.dial, call(c))
            .await
            .map_err(|_| format!("no answer from {addr} within {:?}", self.dial))?
            .map_err(|e| format!("{addr}: {}", e.message()))
    }
}

use seta_hubble::now;

/// A node-status event, as Hubble Relay sends them.
pub fn node_status(state: NodeState, node_names: Vec<String>, message: String) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: String::new(),
        time: Some(now()),
        response_types: Some(ResponseTypes::NodeStatus(NodeStatusEvent {
            state_change: state as i32,
            node_names,
            message,
        })),
    }
}

fn is_flow(r: &GetFlowsResponse) -> bool {
    matches!(r.response_types, Some(ResponseTypes::Flow(_)))
}

type FlowStream = Pin<Box<dyn Stream<Item = Result<GetFlowsResponse, Status>> + Send>>;
type NodeStream = tonic::Streaming<GetFlowsResponse>;

/// A node's stream while following: its responses, and when it breaks a
/// NODE_UNAVAILABLE event naming it (then nothing more from it).
fn node_stream(name: String, s: NodeStream) -> Pin<Box<dyn Stream<Item = (String, GetFlowsResponse)> + Send>> {
    futures::stream::unfold(Some(s), move |st| {
        let name = name.clone();
        async move {
            let mut s = st?;
            match s.message().await {
                Ok(Some(m)) => Some(((name, m), Some(s))),
                Ok(None) => None,
                Err(e) => {
                    let notice = node_status(NodeState::NodeUnavailable, vec![name.clone()], e.message().to_string());
                    Some(((name, notice), None))
                }
            }
        }
    })
    .boxed()
}

/// The nodes a NODE_UNAVAILABLE notice names.
fn unavailable(r: &GetFlowsResponse) -> Vec<String> {
    match &r.response_types {
        Some(ResponseTypes::NodeStatus(n)) if n.state_change == NodeState::NodeUnavailable as i32 => n.node_names.clone(),
        _ => vec![],
    }
}

/// Follow `streams` (of nodes `active`; `down` were reported unavailable)
/// into `tx`: notices at once, flows through the sort buffer, until the
/// caller goes away. A held flow goes early once every node followed has
/// sent a flow at least as new (each node's stream is in time order, so
/// nothing older can come): with busy nodes, flows wait for the slowest
/// node's next flow instead of the drain timeout. Every second the peer set is looked at again: a node
/// that joined, or came back, is followed from then on (NODE_CONNECTED),
/// one that cannot be reached is reported once (NODE_UNAVAILABLE).
async fn follow(
    relay: Relay,
    req: GetFlowsRequest,
    streams: Vec<(String, NodeStream)>,
    mut down: BTreeSet<String>,
    mut buf: SortBuffer,
    tx: tokio::sync::mpsc::Sender<Result<GetFlowsResponse, Status>>,
) {
    let mut active: BTreeSet<String> = streams.iter().map(|(n, _)| n.clone()).collect();
    // each followed node's newest flow time
    let mut progress: std::collections::BTreeMap<String, i128> = Default::default();
    let mut merged = futures::stream::select_all(streams.into_iter().map(|(n, s)| node_stream(n, s)));
    let mut rescan = tokio::time::interval(PEER_RESCAN);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    rescan.tick().await;
    loop {
        let deadline = buf.next_deadline().map(tokio::time::Instant::from_std);
        let mut notices = vec![];
        tokio::select! {
            m = merged.next(), if !merged.is_empty() => match m {
                Some((node, m)) if is_flow(&m) => {
                    let t = seta_hubble::merge::time_ns(&m);
                    let p = progress.entry(node).or_insert(t);
                    *p = (*p).max(t);
                    buf.push(m, Instant::now())
                }
                Some((_, m)) => {
                    for n in unavailable(&m) {
                        active.remove(&n);
                        progress.remove(&n);
                        down.insert(n);
                    }
                    notices.push(m);
                }
                None => {} // every stream ended: peers may come (back)
            },
            _ = rescan.tick() => {
                let new: Vec<(String, String)> = relay.peers.snapshot().into_iter().filter(|(n, _)| !active.contains(n)).collect();
                for (name, addr) in new {
                    let r = req.clone();
                    let started = relay
                        .call(&addr, |mut c| async move { c.get_flows(r).await.map(|x| x.into_inner()) })
                        .await;
                    match started {
                        Ok(s) => {
                            active.insert(name.clone());
                            down.remove(&name);
                            merged.push(node_stream(name.clone(), s));
                            notices.push(node_status(NodeState::NodeConnected, vec![name], String::new()));
                        }
                        Err(e) => {
                            if down.insert(name.clone()) {
                                notices.push(node_status(NodeState::NodeUnavailable, vec![name], e));
                            }
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {}
            _ = tx.closed() => return,
        }
        for m in notices {
            if tx.send(Ok(m)).await.is_err() {
                return;
            }
        }
        // the watermark: the least of the nodes' newest (none while a
        // followed node has sent no flow yet)
        let watermark = active.iter().map(|n| progress.get(n).copied()).min().flatten();
        let mut out = buf.ready(Instant::now());
        if let Some(w) = watermark {
            out.extend(buf.ready_until(w));
        }
        for m in out {
            if tx.send(Ok(m)).await.is_err() {
                return;
            }
        }
    }
}

#[tonic::async_trait]
impl Observer for Relay {
    type GetFlowsStream = FlowStream;
    type GetAgentEventsStream = Pin<Box<dyn Stream<Item = Result<GetAgentEventsResponse, Status>> + Send>>;

    /// As Hubble Relay: agent events are a node's, read from the node.
    async fn get_agent_events(&self, _req: Request<GetAgentEventsRequest>) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(Status::unimplemented(
            "GetAgentEvents is served by each node's observer, not by the relay",
        ))
    }

    type GetDebugEventsStream = Pin<Box<dyn Stream<Item = Result<GetDebugEventsResponse, Status>> + Send>>;

    /// As Hubble Relay: debug events are a node's, read from the node.
    async fn get_debug_events(&self, _req: Request<GetDebugEventsRequest>) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(Status::unimplemented(
            "GetDebugEvents is served by each node's observer, not by the relay",
        ))
    }

    async fn get_flows(&self, req: Request<GetFlowsRequest>) -> Result<Response<FlowStream>, Status> {
        let r = req.into_inner();
        if r.first && r.follow {
            return Err(Status::invalid_argument("first cannot be combined with follow"));
        }
        // checked here once rather than by every node
        seta_hubble::filter::validate_request(&r.whitelist, &r.blacklist).map_err(Status::invalid_argument)?;
        let started = self
            .each(|mut c| {
                let r = r.clone();
                async move { c.get_flows(r).await.map(|x| x.into_inner()) }
            })
            .await;
        let (mut notices, mut streams, mut connected) = (vec![], vec![], vec![]);
        let (mut down, mut down_names) = (vec![], BTreeSet::new());
        for (name, _, res) in started {
            match res {
                Ok(s) => {
                    connected.push(name.clone());
                    streams.push((name, s));
                }
                Err(e) => {
                    down_names.insert(name.clone());
                    down.push(node_status(NodeState::NodeUnavailable, vec![name], e));
                }
            }
        }
        if !connected.is_empty() {
            notices.push(node_status(NodeState::NodeConnected, connected, String::new()));
        }
        notices.extend(down);
        if r.follow {
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            for n in notices {
                let _ = tx.try_send(Ok(n));
            }
            let buf = SortBuffer::new(self.sort_max, self.drain);
            tokio::spawn(follow(self.clone(), r.clone(), streams, down_names, buf, tx));
            let out = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
            return Ok(Response::new(Box::pin(out)));
        }
        let reads = futures::future::join_all(streams.into_iter().map(|(name, mut s)| async move {
            let mut got = vec![];
            let r = tokio::time::timeout(READ_ALL, async {
                while let Some(m) = s.message().await? {
                    got.push(m);
                }
                Ok::<_, Status>(())
            })
            .await;
            let err = match r {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.message().to_string()),
                Err(_) => Some(format!("not done within {READ_ALL:?}")),
            };
            (name, got, err)
        }))
        .await;
        let mut all = vec![];
        for (name, got, err) in reads {
            all.extend(got);
            if let Some(e) = err {
                notices.push(node_status(NodeState::NodeError, vec![name], e));
            }
        }
        let out: Vec<Result<GetFlowsResponse, Status>> = notices.into_iter().chain(merge_all(all, r.number, r.first)).map(Ok).collect();
        Ok(Response::new(Box::pin(futures::stream::iter(out))))
    }

    async fn get_nodes(&self, _req: Request<GetNodesRequest>) -> Result<Response<GetNodesResponse>, Status> {
        let res = self
            .each(|mut c| async move { c.get_nodes(GetNodesRequest {}).await.map(|r| r.into_inner()) })
            .await;
        let mut nodes = vec![];
        for (name, address, r) in res {
            match r {
                Ok(got) => nodes.extend(got.nodes.into_iter().map(|n| Node {
                    // where the relay reaches it
                    address: address.clone(),
                    ..n
                })),
                Err(_) => nodes.push(Node {
                    name,
                    address,
                    state: NodeState::NodeUnavailable as i32,
                    ..Default::default()
                }),
            }
        }
        Ok(Response::new(GetNodesResponse { nodes }))
    }

    async fn server_status(&self, _req: Request<ServerStatusRequest>) -> Result<Response<ServerStatusResponse>, Status> {
        let res = self
            .each(|mut c| async move { c.server_status(ServerStatusRequest {}).await.map(|r| r.into_inner()) })
            .await;
        let mut s = ServerStatusResponse {
            uptime_ns: self.started.elapsed().as_nanos() as u64,
            version: format!("seta-relay {}", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let (mut up, mut down) = (0u32, vec![]);
        for (name, _, r) in res {
            match r {
                Ok(n) => {
                    up += 1;
                    s.num_flows += n.num_flows;
                    s.max_flows += n.max_flows;
                    s.seen_flows += n.seen_flows;
                }
                Err(_) => down.push(name),
            }
        }
        s.num_connected_nodes = Some(up);
        s.num_unavailable_nodes = Some(down.len() as u32);
        s.unavailable_nodes = down;
        Ok(Response::new(s))
    }
}
