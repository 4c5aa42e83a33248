//! Hubble's flow metrics (`hubble_*`, served on `--hubble-metrics-server`,
//! :9965 by default): counted as flows are observed, with Hubble's names
//! and labels.
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use seta_hubble::flow::{layer4::Protocol, DropReason, Flow, Verdict};

type Labels = Vec<(String, String)>;

#[derive(Default)]
pub struct FlowMetrics {
    processed: Family<Labels, Counter>,
    drops: Family<Labels, Counter>,
    tcp_flags: Family<Labels, Counter>,
    ports: Family<Labels, Counter>,
    to_world: Family<Labels, Counter>,
    verdicts: Family<Labels, Counter>,
    lost: Family<Labels, Counter>,
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn protocol(f: &Flow) -> (&'static str, Option<u32>) {
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => ("TCP", Some(t.destination_port)),
        Some(Protocol::Udp(u)) => ("UDP", Some(u.destination_port)),
        Some(Protocol::Sctp(s)) => ("SCTP", Some(s.destination_port)),
        Some(Protocol::IcmPv4(_)) => ("ICMPv4", None),
        Some(Protocol::IcmPv6(_)) => ("ICMPv6", None),
        None => ("", None),
    }
}

impl FlowMetrics {
    /// Count one observed flow.
    pub fn observe(&self, f: &Flow) {
        let (proto, port) = protocol(f);
        let verdict = Verdict::try_from(f.verdict).map_or("VERDICT_UNKNOWN", |v| v.as_str_name());
        let kind = match f.event_type.as_ref().map_or(0, |e| e.r#type) {
            seta_hubble::decode::MSG_DROP => "Drop",
            seta_hubble::decode::MSG_POLICY_VERDICT => "PolicyVerdict",
            seta_hubble::decode::MSG_TRACE => "Trace",
            _ => "Unknown",
        };
        self.processed
            .get_or_create(&l(&[("protocol", proto), ("subtype", ""), ("type", kind), ("verdict", verdict)]))
            .inc();
        if f.verdict == Verdict::Dropped as i32 {
            let reason = DropReason::try_from(f.drop_reason_desc).map_or("DROP_REASON_UNKNOWN", |r| r.as_str_name());
            self.drops.get_or_create(&l(&[("protocol", proto), ("reason", reason)])).inc();
        }
        if let Some(Protocol::Tcp(t)) = f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
            let fl = t.flags.unwrap_or_default();
            for (on, name) in [(fl.syn, "SYN"), (fl.fin, "FIN"), (fl.rst, "RST")] {
                if on {
                    let name = if name == "SYN" && fl.ack { "SYN-ACK" } else { name };
                    self.tcp_flags.get_or_create(&l(&[("family", "IPv4"), ("flag", name)])).inc();
                }
            }
        }
        if let Some(p) = port {
            self.ports.get_or_create(&l(&[("port", &p.to_string()), ("protocol", proto)])).inc();
        }
        if f.destination.as_ref().is_some_and(|d| d.identity == 2) {
            self.to_world.get_or_create(&l(&[("protocol", proto), ("verdict", verdict)])).inc();
        }
        if kind == "PolicyVerdict" {
            let dir = if f.traffic_direction == 1 { "ingress" } else { "egress" };
            let action = if f.verdict == Verdict::Dropped as i32 {
                "dropped"
            } else {
                "forwarded"
            };
            self.verdicts
                .get_or_create(&l(&[("action", action), ("direction", dir), ("match", "none")]))
                .inc();
        }
    }

    /// Count events lost at `source` (Hubble's LostEventSource names, lower case).
    pub fn lost(&self, source: &str, n: u64) {
        self.lost.get_or_create(&l(&[("source", source)])).inc_by(n);
    }

    /// One scrape, as OpenMetrics text.
    pub fn render(&self) -> String {
        let mut reg = Registry::with_prefix("hubble");
        reg.register(
            "flows_processed",
            "Flows processed, by protocol, type and verdict",
            self.processed.clone(),
        );
        reg.register("drop", "Dropped flows, by protocol and reason", self.drops.clone());
        reg.register("tcp_flags", "TCP flags seen", self.tcp_flags.clone());
        reg.register("port_distribution", "Destination ports of flows", self.ports.clone());
        reg.register("flows_to_world", "Flows to the world (outside the cluster)", self.to_world.clone());
        reg.register("policy_verdicts", "Policy verdicts, by direction and action", self.verdicts.clone());
        reg.register("lost_events", "Events lost before they became flows", self.lost.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).expect("encoding into a String");
        out
    }
}
