//! Hubble's `observer.Observer` gRPC service over the observer's ring:
//! GetFlows (the last or first `number`, a `since`/`until` window,
//! whitelist/blacklist filters, `follow`), GetAgentEvents and
//! GetDebugEvents (from their logs), ServerStatus and GetNodes.
use super::{Live, Observer};
use futures::{Stream, StreamExt};
use seta_hubble::filter::selected;
use seta_hubble::flow::{Flow, LostEvent, LostEventSource};
use seta_hubble::observer::get_flows_response::ResponseTypes;
use seta_hubble::observer::observer_server::{Observer as ObserverApi, ObserverServer};
use seta_hubble::observer::*;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct Service {
    obs: Arc<Observer>,
    /// the address peers reach this observer at (GetNodes)
    address: String,
}

impl Service {
    pub fn new(obs: Arc<Observer>, address: String) -> Self {
        Service { obs, address }
    }
}

pub type Server = ObserverServer<Service>;

pub fn server(obs: Arc<Observer>, address: String) -> Server {
    ObserverServer::new(Service::new(obs, address))
}

type FlowStream = Pin<Box<dyn Stream<Item = Result<GetFlowsResponse, Status>> + Send>>;

fn ns_of(t: &prost_types::Timestamp) -> i128 {
    t.seconds as i128 * 1_000_000_000 + t.nanos as i128
}

fn in_window(f: &Flow, since: Option<i128>, until: Option<i128>) -> bool {
    let t = f.time.as_ref().map_or(0, ns_of);
    since.is_none_or(|s| t >= s) && until.is_none_or(|u| t <= u)
}

/// Of what is held (oldest first): the last `number`, or the first with
/// `first`; all with 0, but none when only following (`only_new`: only
/// what happens from now on).
fn pick<T>(mut held: Vec<T>, number: u64, first: bool, only_new: bool) -> Vec<T> {
    let n = number as usize;
    if n > 0 && held.len() > n {
        if first {
            held.truncate(n);
        } else {
            held = held.split_off(held.len() - n);
        }
    } else if n == 0 && only_new {
        held.clear();
    }
    held
}

pub(crate) fn response(node: &str, f: Flow) -> GetFlowsResponse {
    GetFlowsResponse {
        time: f.time,
        node_name: node.to_string(),
        response_types: Some(ResponseTypes::Flow(f)),
    }
}

/// `n` events lost at `source`, as a response.
pub(crate) fn lost(node: &str, source: LostEventSource, n: u64) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: node.to_string(),
        time: None,
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: source as i32,
            num_events_lost: n,
            cpu: None,
        })),
    }
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// What an event log request asks for (GetAgentEvents, GetDebugEvents).
struct LogRequest {
    number: u64,
    first: bool,
    follow: bool,
    since: Option<prost_types::Timestamp>,
    until: Option<prost_types::Timestamp>,
}

/// The LogRequest of a GetAgentEvents or GetDebugEvents request (the
/// same fields in both).
macro_rules! log_request {
    ($r:expr) => {{
        let r = $r;
        LogRequest {
            number: r.number,
            first: r.first,
            follow: r.follow,
            since: r.since,
            until: r.until,
        }
    }};
}

/// An event log as a stream: the last or first `number` kept (all with 0),
/// a `since`/`until` window on `time`, then live ones while `follow`.
fn log_stream<T: Clone + Send + 'static>(
    log: &super::log::EventLog<T>,
    r: LogRequest,
    time: fn(&T) -> Option<&prost_types::Timestamp>,
) -> Result<EventStream<T>, Status> {
    if r.first && r.follow {
        return Err(Status::invalid_argument("first cannot be combined with follow"));
    }
    let (since, until) = (r.since.as_ref().map(ns_of), r.until.as_ref().map(ns_of));
    let window = move |e: &T| {
        let t = time(e).map_or(0, ns_of);
        since.is_none_or(|s| t >= s) && until.is_none_or(|u| t <= u)
    };
    let live = r.follow.then(|| log.subscribe());
    let held = log.held();
    let last_seq = held.last().map_or(0, |(s, _)| *s);
    let picked = pick(
        held.into_iter().map(|(_, e)| e).filter(|e| window(e)).collect(),
        r.number,
        r.first,
        r.follow && since.is_none(),
    );
    let past = futures::stream::iter(picked.into_iter().map(Ok));
    let Some(rx) = live else {
        return Ok(Box::pin(past));
    };
    let follow = futures::stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok((seq, e)) if seq > last_seq && window(&e) => return Some((Ok(e), rx)),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Box::pin(past.chain(follow)))
}

#[tonic::async_trait]
impl ObserverApi for Service {
    type GetFlowsStream = FlowStream;
    type GetAgentEventsStream = EventStream<GetAgentEventsResponse>;
    type GetDebugEventsStream = EventStream<GetDebugEventsResponse>;

    /// The agent's own events.
    async fn get_agent_events(&self, req: Request<GetAgentEventsRequest>) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        let r = log_request!(req.into_inner());
        Ok(Response::new(log_stream(&self.obs.agent_events.log, r, |e| e.time.as_ref())?))
    }

    /// The datapath's debug messages (`--debug-verbose=datapath`).
    async fn get_debug_events(&self, req: Request<GetDebugEventsRequest>) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        let r = log_request!(req.into_inner());
        Ok(Response::new(log_stream(&self.obs.debug_events, r, |e| e.time.as_ref())?))
    }

    async fn get_flows(&self, req: Request<GetFlowsRequest>) -> Result<Response<FlowStream>, Status> {
        let r = req.into_inner();
        if r.first && r.follow {
            return Err(Status::invalid_argument("first cannot be combined with follow"));
        }
        // bad filter values are refused before anything is served, as Hubble's
        seta_hubble::filter::validate_request(&r.whitelist, &r.blacklist).map_err(Status::invalid_argument)?;
        let (since, until) = (r.since.as_ref().map(ns_of), r.until.as_ref().map(ns_of));
        let live = r.follow.then(|| self.obs.subscribe());
        let held = self.obs.held();
        let last_seq = held.flows.last().map_or(0, |(s, _)| *s);
        let picked: Vec<Arc<Flow>> = pick(
            held.flows
                .into_iter()
                .map(|(_, f)| f)
                .filter(|f| in_window(f, since, until) && selected(&r.whitelist, &r.blacklist, f))
                .collect(),
            r.number,
            r.first,
            r.follow && since.is_none(),
        );
        let node = self.obs.node().to_string();
        let past = futures::stream::iter(picked.into_iter().map({
            let node = node.clone();
            move |f| Ok(response(&node, Arc::unwrap_or_clone(f)))
        }));
        let Some(rx) = live else {
            return Ok(Response::new(Box::pin(past)));
        };
        let (wl, bl) = (r.whitelist, r.blacklist);
        let obs = self.obs.clone();
        let follow = futures::stream::unfold(rx, move |mut rx| {
            let (wl, bl, node, obs) = (wl.clone(), bl.clone(), node.clone(), obs.clone());
            async move {
                loop {
                    match rx.recv().await {
                        Ok(Live::Flow(seq, f)) if seq > last_seq && until.is_none_or(|_| in_window(&f, since, until)) => {
                            if selected(&wl, &bl, &f) {
                                return Some((Ok(response(&node, Arc::unwrap_or_clone(f))), rx));
                            }
                        }
                        Ok(Live::Lost(n)) => {
                            return Some((Ok(lost(&node, LostEventSource::PerfEventRingBuffer, n)), rx));
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            obs.metrics.lost("observer_events_queue", n);
                            return Some((Ok(lost(&node, LostEventSource::ObserverEventsQueue, n)), rx));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(past.chain(follow))))
    }

    async fn get_nodes(&self, _req: Request<GetNodesRequest>) -> Result<Response<GetNodesResponse>, Status> {
        let held = self.obs.held();
        Ok(Response::new(GetNodesResponse {
            nodes: vec![Node {
                name: self.obs.node().to_string(),
                version: format!("seta {}", env!("CARGO_PKG_VERSION")),
                address: self.address.clone(),
                state: seta_hubble::relay::NodeState::NodeConnected as i32,
                tls: Some(Tls::default()),
                uptime_ns: self.obs.uptime_ns(),
                num_flows: held.flows.len() as u64,
                max_flows: held.capacity as u64,
                seen_flows: held.seen,
            }],
        }))
    }

    async fn server_status(&self, _req: Request<ServerStatusRequest>) -> Result<Response<ServerStatusResponse>, Status> {
        let held = self.obs.held();
        Ok(Response::new(ServerStatusResponse {
            num_flows: held.flows.len() as u64,
            max_flows: held.capacity as u64,
            seen_flows: held.seen,
            uptime_ns: self.obs.uptime_ns(),
            num_connected_nodes: Some(1),
            num_unavailable_nodes: Some(0),
            unavailable_nodes: vec![],
            version: format!("seta {}", env!("CARGO_PKG_VERSION")),
        }))
    }
}
