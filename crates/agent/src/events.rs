//! The agent drains the datapath's `seta_events` ring buffer into a bounded
//! in-memory log (policy verdicts and drops). The flow observer builds on it.
use serde::Serialize;
use seta_abi::SetaEvent;
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct EventRecord {
    pub seq: u64,
    /// nanoseconds of CLOCK_MONOTONIC
    pub ts: u64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub verdict: &'static str,
    pub drop_reason: Option<String>,
    pub drop_code: Option<u8>,
    pub direction: &'static str,
    pub endpoint: u16,
    pub src_identity: u32,
    pub dst_identity: u32,
    pub src: String,
    pub dst: String,
    pub protocol: &'static str,
    pub rule_cookie: u32,
    /// a drop's packet: its length and first bytes (hex)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet_len: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet: Option<String>,
}

/// One event as the datapath sent it; it becomes an [`EventRecord`] only
/// when read (the reader's path pays for the text, not the datapath's).
#[derive(Clone)]
struct Raw {
    seq: u64,
    ev: SetaEvent,
    payload: Option<seta_abi::DropPayload>,
}

#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Mutex<(u64, VecDeque<Raw>)>>,
    cap: usize,
}

impl Raw {
    fn record(&self) -> EventRecord {
        let (ev, payload) = (&self.ev, self.payload.as_ref());
        let code = (ev.verdict < 0)
            .then(|| (-ev.verdict) as u8)
            .or((ev.event_type == seta_abi::EVENT_DROP).then_some(ev.subtype));
        let ep = |a: [u8; 4], p: [u8; 2]| format!("{}:{}", Ipv4Addr::from(a), u16::from_be_bytes(p));
        EventRecord {
            seq: self.seq,
            ts: ev.ts,
            kind: if ev.event_type == seta_abi::EVENT_POLICY_VERDICT {
                "policy-verdict"
            } else {
                "drop"
            },
            verdict: if code.is_some() { "denied" } else { "allowed" },
            drop_reason: code.map(seta_core::drop::reason_name),
            drop_code: code,
            direction: seta_core::drop::direction_name(ev.dir),
            endpoint: ev.source,
            src_identity: ev.src_label,
            dst_identity: ev.dst_label,
            src: ep(ev.saddr, ev.sport),
            dst: ep(ev.daddr, ev.dport),
            protocol: seta_core::policy::proto_name(ev.proto),
            rule_cookie: ev.cookie,
            packet_len: payload.map(|p| p.orig_len),
            packet: payload.map(|p| seta_hubble::hex(p.bytes(), None)),
        }
    }
}

impl EventLog {
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new((0, VecDeque::with_capacity(cap)))),
            cap,
        }
    }

    /// Keep a drop or policy verdict (as it came: it is turned into text
    /// only when read).
    pub fn push(&self, ev: &SetaEvent, payload: Option<&seta_abi::DropPayload>) {
        if ev.event_type != seta_abi::EVENT_DROP && ev.event_type != seta_abi::EVENT_POLICY_VERDICT {
            return; // traces and debug messages are the observer's, not verdicts
        }
        let mut g = self.inner.lock().unwrap();
        g.0 += 1;
        let raw = Raw {
            seq: g.0,
            ev: *ev,
            payload: payload.copied(),
        };
        if g.1.len() == self.cap {
            g.1.pop_front();
        }
        g.1.push_back(raw);
    }

    /// Events with seq > `since`.
    pub fn since(&self, since: u64) -> Vec<EventRecord> {
        self.inner
            .lock()
            .unwrap()
            .1
            .iter()
            .filter(|e| e.seq > since)
            .map(Raw::record)
            .collect()
    }
}
