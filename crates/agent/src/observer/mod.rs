//! The Hubble observer: datapath events become flows (decoded by
//! `seta_hubble::decode` with what the agent knows of both sides) in a ring
//! buffer (2^n − 1 flows, 4095 by default), served over Hubble's gRPC API
//! (`grpc`). A subsystem of its own: it owns its ring and its followers; the
//! agent hands it events and a decoding context.
pub mod agent_events;
pub mod export;
pub mod grpc;
pub mod log;
pub mod metrics;
pub mod peer;
#[cfg(test)]
mod tests;

use seta_hubble::decode::{self, Context};
use seta_hubble::flow::Flow;
use seta_hubble::ring::Ring;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How many flows a slow follower may lag before it is told it lost some.
const FOLLOW_QUEUE: usize = 4096;
/// Debug messages kept for readers that come later.
const DEBUG_KEEP: usize = 4096;

/// What followers get: a flow with its sequence number, or a count of
/// events the datapath could not deliver.
#[derive(Debug, Clone)]
pub enum Live {
    Flow(u64, Arc<Flow>),
    Lost(u64),
}

pub struct Observer {
    node: String,
    ring: Mutex<Ring>,
    live: tokio::sync::broadcast::Sender<Live>,
    started: Instant,
    /// Hubble's flow metrics
    pub metrics: metrics::FlowMetrics,
    /// the agent's own events (GetAgentEvents)
    pub agent_events: agent_events::AgentEvents,
    /// the datapath's debug messages (GetDebugEvents)
    pub debug_events: log::EventLog<seta_hubble::observer::GetDebugEventsResponse>,
}

/// The ring's state for a reader.
pub struct Held {
    pub flows: Vec<(u64, Arc<Flow>)>,
    pub seen: u64,
    pub capacity: usize,
}

impl Observer {
    pub fn new(node: &str, capacity: usize) -> Result<Self, String> {
        Ok(Observer {
            node: node.to_string(),
            ring: Mutex::new(Ring::new(capacity)?),
            live: tokio::sync::broadcast::channel(FOLLOW_QUEUE).0,
            started: Instant::now(),
            metrics: Default::default(),
            agent_events: agent_events::AgentEvents::new(node),
            debug_events: log::EventLog::new(DEBUG_KEEP),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Decode `events` and keep their flows (and debug messages);
    /// followers get them at once.
    pub fn ingest<R: Copy + Into<seta_abi::Record>>(&self, events: &[R], ctx: &Context) {
        let mut ring = self.ring.lock().unwrap();
        for r in events {
            let r: seta_abi::Record = (*r).into();
            if r.ev.event_type == seta_abi::EVENT_DEBUG {
                self.debug_events
                    .push(seta_hubble::debug::event(&seta_abi::DebugEvent::of(&r.ev), ctx));
                continue;
            }
            // (records that are no flows are not kept)
            let Some(f) = decode::flow_of_record(&r, ctx) else { continue };
            self.metrics.observe(&f);
            let f = Arc::new(f);
            let seq = ring.push(f.clone());
            let _ = self.live.send(Live::Flow(seq, f));
        }
    }

    /// `n` events the datapath's ring buffer had no room for: counted and
    /// told to every follower.
    pub fn lost(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.metrics.lost("perf_event_ring_buffer", n);
        let _ = self.live.send(Live::Lost(n));
    }

    /// Live flows from now on (subscribe before reading the ring: a flow
    /// in both is told apart by its sequence number).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Live> {
        self.live.subscribe()
    }

    pub fn held(&self) -> Held {
        let ring = self.ring.lock().unwrap();
        Held {
            flows: ring.iter().cloned().collect(),
            seen: ring.seen(),
            capacity: ring.capacity(),
        }
    }

    pub fn uptime_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }
}
