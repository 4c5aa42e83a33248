//! Hubble's flow metrics (`hubble_*`, served on `--hubble-metrics-server`,
//! :9965 by default): counted as flows are observed, with Hubble's names
//! and labels. `--hubble-metrics` chooses them and their context labels as
//! Hubble's option does: `drop:sourceContext=namespace;destinationContext=pod|ip flow tcp`.
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use seta_hubble::flow::{layer4::Protocol, DropReason, Endpoint, Flow, Verdict};
use std::collections::BTreeMap;

type Labels = Vec<(String, String)>;

/// The metrics Hubble names, in `--hubble-metrics`.
pub const METRICS: [&str; 7] = ["flow", "drop", "tcp", "port-distribution", "icmp", "flows-to-world", "policy"];

/// What one side of a flow is called in a context label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Identity,
    Namespace,
    /// namespace/name
    Pod,
    PodName,
    Ip,
    ReservedIdentity,
    App,
    /// (seta knows no workloads: always empty, so a fallback after it applies)
    Workload,
    WorkloadName,
}

impl Context {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "identity" => Self::Identity,
            "namespace" => Self::Namespace,
            "pod" => Self::Pod,
            "pod-name" => Self::PodName,
            "ip" => Self::Ip,
            "reserved-identity" => Self::ReservedIdentity,
            "app" => Self::App,
            "workload" => Self::Workload,
            "workload-name" => Self::WorkloadName,
            _ => {
                return Err(format!(
                    "{s:?}: no such context (identity, namespace, pod, pod-name, ip, reserved-identity, app, workload, workload-name)"
                ))
            }
        })
    }

    /// The value for endpoint `e` with address `ip` ("" when it has none).
    fn value(self, e: Option<&Endpoint>, ip: &str) -> String {
        let label = |keys: &[&str]| {
            e.and_then(|e| {
                e.labels
                    .iter()
                    .find_map(|l| keys.iter().find_map(|k| l.strip_prefix(k)).map(String::from))
            })
            .unwrap_or_default()
        };
        match self {
            Self::Identity => e.map(|e| e.identity.to_string()).unwrap_or_default(),
            Self::Namespace => e.map(|e| e.namespace.clone()).unwrap_or_default(),
            Self::Pod => e
                .filter(|e| !e.pod_name.is_empty())
                .map(|e| format!("{}/{}", e.namespace, e.pod_name))
                .unwrap_or_default(),
            Self::PodName => e.map(|e| e.pod_name.clone()).unwrap_or_default(),
            Self::Ip => ip.to_string(),
            Self::ReservedIdentity => label(&["reserved:"])
                .split('=')
                .next()
                .map(|r| format!("reserved:{r}"))
                .filter(|r| r != "reserved:")
                .unwrap_or_default(),
            Self::App => label(&["k8s:app.kubernetes.io/name=", "k8s:app="]),
            Self::Workload | Self::WorkloadName => String::new(),
        }
    }
}

/// The label names `labelsContext` may add.
const LABELS_CONTEXT: [&str; 11] = [
    "source_ip",
    "source_namespace",
    "source_pod",
    "source_workload",
    "source_app",
    "destination_ip",
    "destination_namespace",
    "destination_pod",
    "destination_workload",
    "destination_app",
    "traffic_direction",
];

/// A metric's context options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `sourceContext`: alternatives, the first non-empty one is the value
    pub source: Vec<Context>,
    pub destination: Vec<Context>,
    /// `labelsContext`
    pub labels: Vec<String>,
}

impl Options {
    /// The context labels of `f` under these options.
    fn labels_of(&self, f: &Flow) -> Labels {
        let ip = f.ip.as_ref();
        let (sip, dip) = (ip.map_or("", |i| i.source.as_str()), ip.map_or("", |i| i.destination.as_str()));
        let pick = |alts: &[Context], e: Option<&Endpoint>, ip: &str| {
            alts.iter().map(|c| c.value(e, ip)).find(|v| !v.is_empty()).unwrap_or_default()
        };
        let mut out = Labels::new();
        if !self.source.is_empty() {
            out.push(("source".into(), pick(&self.source, f.source.as_ref(), sip)));
        }
        if !self.destination.is_empty() {
            out.push(("destination".into(), pick(&self.destination, f.destination.as_ref(), dip)));
        }
        for name in &self.labels {
            let (side, what) = name.split_once('_').unwrap_or(("", name));
            let (e, ip) = if side == "source" {
                (f.source.as_ref(), sip)
            } else {
                (f.destination.as_ref(), dip)
            };
            let v = match what {
                "ip" => ip.to_string(),
                "namespace" => Context::Namespace.value(e, ip),
                "pod" => Context::PodName.value(e, ip),
                "app" => Context::App.value(e, ip),
                "workload" => String::new(),
                _ => seta_hubble::flow::TrafficDirection::try_from(f.traffic_direction)
                    .map_or("unknown", |d| d.as_str_name())
                    .to_ascii_lowercase(),
            };
            out.push((name.clone(), v));
        }
        out
    }
}

/// Which metrics, with which options (`--hubble-metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig(pub BTreeMap<String, Options>);

impl Default for MetricsConfig {
    /// Every metric, without context labels.
    fn default() -> Self {
        Self(METRICS.iter().map(|m| (m.to_string(), Options::default())).collect())
    }
}

impl MetricsConfig {
    /// Hubble's format: metrics separated by spaces (or commas between
    /// metrics), each `name[:option=value;option=value]`; context
    /// alternatives with `|`, `labelsContext` values with commas.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut out = BTreeMap::new();
        // a comma starts a new metric unless it continues a labelsContext
        // list (what follows is no metric name)
        let mut entries: Vec<String> = Vec::new();
        for word in spec.split_whitespace() {
            for part in word.split(',') {
                let continues = entries
                    .last()
                    .is_some_and(|e: &String| e.rsplit([';', ':']).next().is_some_and(|o| o.starts_with("labelsContext=")))
                    && !part.contains(':')
                    && !METRICS.contains(&part);
                match entries.last_mut() {
                    Some(e) if continues => {
                        e.push(',');
                        e.push_str(part);
                    }
                    _ if part.is_empty() => {}
                    _ => entries.push(part.to_string()),
                }
            }
        }
        for e in entries {
            let (name, opts) = e.split_once(':').unwrap_or((&e, ""));
            if !METRICS.contains(&name) {
                return Err(format!("{name:?}: no such metric ({})", METRICS.join(", ")));
            }
            let mut o = Options::default();
            for opt in opts.split(';').filter(|o| !o.is_empty()) {
                let (k, v) = opt
                    .split_once('=')
                    .ok_or_else(|| format!("{name}: {opt:?}: an option is key=value"))?;
                let alts = || {
                    v.split('|')
                        .map(Context::parse)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| format!("{name}: {k}: {e}"))
                };
                match k {
                    "sourceContext" => o.source = alts()?,
                    "destinationContext" => o.destination = alts()?,
                    "labelsContext" => {
                        for l in v.split(',') {
                            if !LABELS_CONTEXT.contains(&l) {
                                return Err(format!(
                                    "{name}: labelsContext: {l:?}: no such label ({})",
                                    LABELS_CONTEXT.join(", ")
                                ));
                            }
                            o.labels.push(l.to_string());
                        }
                    }
                    _ => {
                        return Err(format!(
                            "{name}: {k:?}: no such option (sourceContext, destinationContext, labelsContext)"
                        ))
                    }
                }
            }
            out.insert(name.to_string(), o);
        }
        Ok(Self(out))
    }
}

/// The counters of label sets without context, by metric and signature:
/// what the labels were made of, as a number (the same signature always
/// makes the same labels), so a flow's counters are found without their text.
type Known = std::collections::HashMap<(usize, u64), Counter, foldhash::fast::FixedState>;

pub struct FlowMetrics {
    /// each of [`METRICS`]' options, by its index there (None: off)
    on: [Option<Options>; METRICS.len()],
    icmp: Family<Labels, Counter>,
    processed: Family<Labels, Counter>,
    drops: Family<Labels, Counter>,
    tcp_flags: Family<Labels, Counter>,
    ports: Family<Labels, Counter>,
    to_world: Family<Labels, Counter>,
    verdicts: Family<Labels, Counter>,
    lost: Family<Labels, Counter>,
    known: std::sync::Mutex<Known>,
}

// indices into METRICS
const FLOW: usize = 0;
const DROP: usize = 1;
const TCP: usize = 2;
const PORTS: usize = 3;
const ICMP: usize = 4;
const TO_WORLD: usize = 5;
const POLICY: usize = 6;

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The protocol's label, a number for it, and the destination port.
fn protocol(f: &Flow) -> (&'static str, u64, Option<u32>) {
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => ("TCP", 1, Some(t.destination_port)),
        Some(Protocol::Udp(u)) => ("UDP", 2, Some(u.destination_port)),
        Some(Protocol::Sctp(s)) => ("SCTP", 3, Some(s.destination_port)),
        Some(Protocol::IcmPv4(_)) => ("ICMPv4", 4, None),
        Some(Protocol::IcmPv6(_)) => ("ICMPv6", 5, None),
        None => ("", 0, None),
    }
}

impl Default for FlowMetrics {
    /// Every metric, without context labels.
    fn default() -> Self {
        Self::new(MetricsConfig::default())
    }
}

impl FlowMetrics {
    pub fn new(config: MetricsConfig) -> Self {
        Self {
            on: std::array::from_fn(|i| config.0.get(METRICS[i]).cloned()),
            icmp: Default::default(),
            processed: Default::default(),
            drops: Default::default(),
            tcp_flags: Default::default(),
            ports: Default::default(),
            to_world: Default::default(),
            verdicts: Default::default(),
            lost: Default::default(),
            known: Default::default(),
        }
    }

    /// Count `f` into `metric` with its own labels `own`, whose signature
    /// is `sig` (see [`Known`]).
    fn count(&self, fam: &Family<Labels, Counter>, metric: usize, sig: u64, f: &Flow, own: &[(&str, &str)]) {
        let Some(o) = &self.on[metric] else { return };
        if !o.source.is_empty() || !o.destination.is_empty() || !o.labels.is_empty() {
            let mut labels = l(own);
            labels.extend(o.labels_of(f));
            fam.get_or_create(&labels).inc();
            return;
        }
        // no context: the labels are the metric's own; a label set seen
        // before is counted without being built again
        let mut known = self.known.lock().unwrap();
        known
            .entry((metric, sig))
            .or_insert_with(|| fam.get_or_create(&l(own)).clone())
            .inc();
    }

    /// Count one observed flow.
    pub fn observe(&self, f: &Flow) {
        let (proto, p, port) = protocol(f);
        // (the verdict's and drop reason's numbers are their enums')
        let v = f.verdict as u32 as u64;
        let verdict = Verdict::try_from(f.verdict).map_or("VERDICT_UNKNOWN", |v| v.as_str_name());
        let (kind, k) = match f.event_type.as_ref().map_or(0, |e| e.r#type) {
            seta_hubble::decode::MSG_DROP => ("Drop", 1),
            seta_hubble::decode::MSG_POLICY_VERDICT => ("PolicyVerdict", 2),
            seta_hubble::decode::MSG_TRACE => ("Trace", 3),
            _ => ("Unknown", 0),
        };
        self.count(
            &self.processed,
            FLOW,
            p | k << 8 | v << 16,
            f,
            &[("protocol", proto), ("subtype", ""), ("type", kind), ("verdict", verdict)],
        );
        if f.verdict == Verdict::Dropped as i32 {
            let r = f.drop_reason_desc as u32 as u64;
            let reason = DropReason::try_from(f.drop_reason_desc).map_or("DROP_REASON_UNKNOWN", |r| r.as_str_name());
            self.count(&self.drops, DROP, p | r << 8, f, &[("protocol", proto), ("reason", reason)]);
        }
        // numbers as label text without allocating per flow
        let mut buf = itoa::Buffer::new();
        match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
            Some(Protocol::Tcp(t)) => {
                let fl = t.flags.unwrap_or_default();
                let syn = if fl.ack { "SYN-ACK" } else { "SYN" };
                for (i, (on, name)) in [(fl.syn, syn), (fl.fin, "FIN"), (fl.rst, "RST")].into_iter().enumerate() {
                    if on {
                        let sig = i as u64 | ((fl.syn && fl.ack) as u64) << 3;
                        self.count(&self.tcp_flags, TCP, sig, f, &[("family", "IPv4"), ("flag", name)]);
                    }
                }
            }
            Some(Protocol::IcmPv4(i)) => {
                let t = buf.format(i.r#type);
                self.count(&self.icmp, ICMP, i.r#type as u64, f, &[("family", "IPv4"), ("type", t)]);
            }
            _ => {}
        }
        if let Some(port) = port {
            let sig = p | (port as u64) << 8;
            let port = buf.format(port);
            self.count(&self.ports, PORTS, sig, f, &[("port", port), ("protocol", proto)]);
        }
        if f.destination.as_ref().is_some_and(|d| d.identity == 2) {
            self.count(
                &self.to_world,
                TO_WORLD,
                p | v << 8,
                f,
                &[("protocol", proto), ("verdict", verdict)],
            );
        }
        if k == 2 {
            let ingress = f.traffic_direction == 1;
            let dropped = f.verdict == Verdict::Dropped as i32;
            let dir = if ingress { "ingress" } else { "egress" };
            let action = if dropped { "dropped" } else { "forwarded" };
            let m = seta_hubble::compact::match_type_label(f.policy_match_type);
            let sig = ingress as u64 | (dropped as u64) << 1 | (f.policy_match_type.min(7) as u64) << 2;
            self.count(
                &self.verdicts,
                POLICY,
                sig,
                f,
                &[("action", action), ("direction", dir), ("match", m)],
            );
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
        reg.register("icmp", "ICMP flows, by family and type", self.icmp.clone());
        reg.register("lost_events", "Events lost before they became flows", self.lost.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).expect("encoding into a String");
        out
    }
}
