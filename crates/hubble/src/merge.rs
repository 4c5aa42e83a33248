//! Several nodes' GetFlows responses as one stream ordered by time, as
//! Hubble Relay merges them: everything at once sorted (a bounded request),
//! or, while following, a bounded sort buffer that lets the oldest response
//! go once the buffer is full or once it has waited the drain timeout, and
//! everything up to a watermark the caller knows no node is behind.
use crate::observer::GetFlowsResponse;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A response's time in ns since the epoch (0 when it has none: node status
/// and lost-events notices go first).
pub fn time_ns(r: &GetFlowsResponse) -> i128 {
    r.time.as_ref().map_or(0, |t| t.seconds as i128 * 1_000_000_000 + t.nanos as i128)
}

/// All responses of a bounded request, oldest first; with `number` > 0
/// only the last `number` flows (the first `number` with `first`). Notices
/// (node status, lost events) are kept, ahead of the flows.
pub fn merge_all(mut all: Vec<GetFlowsResponse>, number: u64, first: bool) -> Vec<GetFlowsResponse> {
    all.sort_by_key(time_ns);
    let (mut notices, mut flows): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| !is_flow(r));
    let n = number as usize;
    if n > 0 && flows.len() > n {
        flows = if first {
            flows.into_iter().take(n).collect()
        } else {
            flows.split_off(flows.len() - n)
        };
    }
    notices.extend(flows);
    notices
}

fn is_flow(r: &GetFlowsResponse) -> bool {
    matches!(r.response_types, Some(crate::observer::get_flows_response::ResponseTypes::Flow(_)))
}

/// The follow-mode buffer.
pub struct SortBuffer {
    /// (time, arrival number) → (arrived at, response)
    held: BTreeMap<(i128, u64), (Instant, GetFlowsResponse)>,
    arrivals: u64,
    max: usize,
    drain_after: Duration,
}

impl SortBuffer {
    /// At most `max` responses held (≥ 1); none held longer than `drain_after`.
    pub fn new(max: usize, drain_after: Duration) -> Self {
        Self {
            held: BTreeMap::new(),
            arrivals: 0,
            max: max.max(1),
            drain_after,
        }
    }

    pub fn push(&mut self, r: GetFlowsResponse, now: Instant) {
        self.arrivals += 1;
        self.held.insert((time_ns(&r), self.arrivals), (now, r));
    }

    /// What may go now, oldest first: the oldest while the buffer is over
    /// its size, and then the oldest for as long as any held response has
    /// waited `drain_after` (so nothing older stays behind it).
    pub fn ready(&mut self, now: Instant) -> Vec<GetFlowsResponse> {
        let mut out = Vec::new();
        while self.held.len() > self.max {
            out.push(self.held.pop_first().expect("not empty").1 .1);
        }
        while let Some(waited) = self.held.values().map(|(at, _)| now.saturating_duration_since(*at)).max() {
            if waited < self.drain_after {
                break;
            }
            out.push(self.held.pop_first().expect("not empty").1 .1);
        }
        out
    }

    /// What may go because nothing older can come any more: every node
    /// being followed has sent a flow at or after `watermark` (each node's
    /// stream is in time order), oldest first.
    pub fn ready_until(&mut self, watermark: i128) -> Vec<GetFlowsResponse> {
        let mut out = Vec::new();
        while self.held.first_key_value().is_some_and(|((t, _), _)| *t <= watermark) {
            out.push(self.held.pop_first().expect("not empty").1 .1);
        }
        out
    }

    /// When the next response will have waited `drain_after` (None: empty).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.values().map(|(at, _)| *at + self.drain_after).min()
    }

    /// Everything held, oldest first (the stream ends).
    pub fn drain(&mut self) -> Vec<GetFlowsResponse> {
        std::mem::take(&mut self.held).into_values().map(|(_, r)| r).collect()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Flow;
    use crate::observer::get_flows_response::ResponseTypes;

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
    fn notice(node: &str) -> GetFlowsResponse {
        GetFlowsResponse {
            node_name: node.into(),
            time: None,
            response_types: Some(ResponseTypes::NodeStatus(crate::relay::NodeStatusEvent {
                state_change: crate::relay::NodeState::NodeUnavailable as i32,
                node_names: vec![node.into()],
                message: String::new(),
            })),
        }
    }
    fn times(v: &[GetFlowsResponse]) -> Vec<(String, i128)> {
        v.iter().map(|r| (r.node_name.clone(), time_ns(r) / 1_000_000_000)).collect()
    }

    #[test]
    fn a_bounded_request_is_sorted_and_cut_to_its_number() {
        let all = vec![flow("a", 3), flow("b", 1), notice("c"), flow("a", 2), flow("b", 5)];
        let t = |v: Vec<(&str, i128)>| v.into_iter().map(|(n, t)| (n.to_string(), t)).collect::<Vec<_>>();
        assert_eq!(
            times(&merge_all(all.clone(), 0, false)),
            t(vec![("c", 0), ("b", 1), ("a", 2), ("a", 3), ("b", 5)])
        );
        assert_eq!(times(&merge_all(all.clone(), 2, false)), t(vec![("c", 0), ("a", 3), ("b", 5)]));
        assert_eq!(times(&merge_all(all, 2, true)), t(vec![("c", 0), ("b", 1), ("a", 2)]));
    }

    #[test]
    fn the_sort_buffer_orders_within_its_size_and_its_wait() {
        let t0 = Instant::now();
        let mut b = SortBuffer::new(3, Duration::from_millis(100));
        for (n, t) in [("a", 5), ("b", 2), ("a", 7)] {
            b.push(flow(n, t), t0);
        }
        assert!(b.ready(t0).is_empty(), "within size and wait: held");
        b.push(flow("b", 6), t0);
        assert_eq!(times(&b.ready(t0)), [("b".to_string(), 2)], "over its size: the oldest goes");
        assert_eq!(b.next_deadline(), Some(t0 + Duration::from_millis(100)));
        // a late arrival older than what is held still comes out in order
        b.push(flow("b", 4), t0 + Duration::from_millis(50));
        assert_eq!(
            times(&b.ready(t0 + Duration::from_millis(100))),
            [
                ("b".to_string(), 4),
                ("a".to_string(), 5),
                ("b".to_string(), 6),
                ("a".to_string(), 7)
            ]
        );
        assert!(b.is_empty());
        b.push(flow("a", 9), t0);
        assert_eq!(b.drain().len(), 1);
    }

    /// Up to a watermark (every node has sent something at least that
    /// new), what is held goes at once, in order; newer stays.
    #[test]
    fn the_sort_buffer_lets_go_up_to_the_watermark() {
        let t0 = Instant::now();
        let mut b = SortBuffer::new(100, Duration::from_secs(1));
        for (n, t) in [("a", 5), ("b", 2), ("a", 7), ("b", 6)] {
            b.push(flow(n, t), t0);
        }
        assert!(b.ready(t0).is_empty());
        let w = 6 * 1_000_000_000;
        assert_eq!(
            times(&b.ready_until(w)),
            [("b".to_string(), 2), ("a".to_string(), 5), ("b".to_string(), 6)]
        );
        assert_eq!(times(&b.ready_until(w)), []);
        assert_eq!(b.len(), 1, "a@7 is newer than b's last");
    }
}
