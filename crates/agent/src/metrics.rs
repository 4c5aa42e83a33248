//! The agent's Prometheus metrics (OpenMetrics text on
//! `--prometheus-serve-addr`, default `:9962`, Cilium's port), with Cilium's
//! names under the `seta_` prefix. A subsystem of its own: it keeps what is
//! measured as the agent works (histograms), and renders a scrape from those
//! and a [`Snapshot`] of the other subsystems' state taken at scrape time.
//! Rendering is pure (tested without I/O); serving is `serve`.
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub method: String,
    pub path: String,
    pub return_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirLabels {
    direction: String,
}

/// What is measured as the agent works, kept between scrapes.
pub struct Metrics {
    /// seta_agent_api_process_time_seconds{method,path,return_code}
    pub api: Family<ApiLabels, Histogram>,
    /// seta_endpoint_create_duration_seconds{outcome}: a CNI ADD's endpoint step
    pub endpoint_create: Family<OutcomeLabels, Histogram>,
    /// seta_kvstore_operations_duration_seconds{outcome}
    pub kvstore: Family<OutcomeLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let secs = || Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        Metrics {
            api: Family::new_with_constructor(secs),
            endpoint_create: Family::new_with_constructor(secs),
            kvstore: Family::new_with_constructor(secs),
        }
    }
}

/// The other subsystems' state at scrape time.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// datapath counters: (reason code, direction, packets, bytes)
    pub datapath: Vec<(u8, u8, u64, u64)>,
    /// endpoint state name -> count
    pub endpoint_states: BTreeMap<String, i64>,
    pub policies: i64,
    pub policy_revision: i64,
    /// identity type (endpoint, cidr, ipblock, remote, reserved) -> count
    pub identities: BTreeMap<String, i64>,
    /// map name -> fill ratio (policy maps above 0.1, as Cilium's)
    pub map_pressure: BTreeMap<String, f64>,
    pub controllers_failing: i64,
    pub services: i64,
    pub policy_map_full: u64,
}

fn gauge_family<V: Into<i64> + Copy>(reg: &mut Registry, name: &str, help: &str, label: &str, values: &BTreeMap<String, V>) {
    let f = Family::<Vec<(String, String)>, Gauge>::default();
    for (k, v) in values {
        f.get_or_create(&vec![(label.to_string(), k.clone())]).set((*v).into());
    }
    reg.register(name, help, f);
}

impl Metrics {
    /// One scrape: the kept histograms and the snapshot's values.
    pub fn render(&self, s: &Snapshot) -> String {
        let mut reg = Registry::with_prefix("seta");
        let drops = Family::<DropLabels, Counter>::default();
        let drop_bytes = Family::<DropLabels, Counter>::default();
        let fwd = Family::<DirLabels, Counter>::default();
        let fwd_bytes = Family::<DirLabels, Counter>::default();
        for (reason, dir, packets, bytes) in &s.datapath {
            let dir = match *dir {
                seta_abi::METRIC_INGRESS => "INGRESS",
                seta_abi::METRIC_EGRESS => "EGRESS",
                _ => "SERVICE",
            };
            if *reason == 0 {
                let l = DirLabels {
                    direction: dir.to_string(),
                };
                fwd.get_or_create(&l).inc_by(*packets);
                fwd_bytes.get_or_create(&l).inc_by(*bytes);
            } else {
                let l = DropLabels {
                    reason: seta_core::drop::reason_name(*reason),
                    direction: dir.to_string(),
                };
                drops.get_or_create(&l).inc_by(*packets);
                drop_bytes.get_or_create(&l).inc_by(*bytes);
            }
        }
        reg.register("drop_count", "Packets dropped by the datapath, by reason and direction", drops);
        reg.register("drop_bytes", "Bytes dropped by the datapath, by reason and direction", drop_bytes);
        reg.register("forward_count", "Packets forwarded by the datapath, by direction", fwd);
        reg.register("forward_bytes", "Bytes forwarded by the datapath, by direction", fwd_bytes);
        let n = s.endpoint_states.values().sum::<i64>();
        let g = Gauge::<i64, AtomicI64>::default();
        g.set(n);
        reg.register("endpoint", "Endpoints managed by this agent", g);
        gauge_family(
            &mut reg,
            "endpoint_state",
            "Endpoints by state",
            "endpoint_state",
            &s.endpoint_states,
        );
        let single = |reg: &mut Registry, name: &str, help: &str, v: i64| {
            let g = Gauge::<i64, AtomicI64>::default();
            g.set(v);
            reg.register(name, help, g);
        };
        single(&mut reg, "policy", "Policy rules loaded", s.policies);
        single(&mut reg, "policy_max_revision", "Highest policy revision", s.policy_revision);
        gauge_family(
            &mut reg,
            "identity",
            "Security identities known to this agent, by type",
            "type",
            &s.identities,
        );
        let pressure = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
        for (m, v) in &s.map_pressure {
            pressure.get_or_create(&vec![("map_name".to_string(), m.clone())]).set(*v);
        }
        reg.register("bpf_map_pressure", "Fill ratio of BPF maps (policy maps above 0.1)", pressure);
        single(
            &mut reg,
            "controllers_failing",
            "Background tasks whose last run failed",
            s.controllers_failing,
        );
        single(&mut reg, "services", "Service frontends this node load-balances", s.services);
        let full = Counter::<u64>::default();
        full.inc_by(s.policy_map_full);
        reg.register("policy_map_full", "Policy map writes refused because the map was full", full);
        reg.register("agent_api_process_time_seconds", "Agent API requests: duration", self.api.clone());
        reg.register(
            "endpoint_create_duration_seconds",
            "Endpoint creation (the CNI ADD's endpoint step): duration",
            self.endpoint_create.clone(),
        );
        reg.register(
            "kvstore_operations_duration_seconds",
            "kvstore operations: duration",
            self.kvstore.clone(),
        );
        let mut out = String::new();
        encode(&mut out, &reg).expect("encoding into a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_has_ciliums_names_and_labels_under_the_seta_prefix() {
        let m = Metrics::default();
        m.api
            .get_or_create(&ApiLabels {
                method: "PUT".into(),
                path: "/v1/endpoint/{id}".into(),
                return_code: "200".into(),
            })
            .observe(0.002);
        let s = Snapshot {
            datapath: vec![(0, seta_abi::METRIC_EGRESS, 10, 1000), (133, seta_abi::METRIC_INGRESS, 3, 180)],
            endpoint_states: [("ready".to_string(), 2)].into(),
            policies: 4,
            policy_revision: 7,
            identities: [("cluster_local".to_string(), 3), ("reserved".to_string(), 8)].into(),
            map_pressure: [("seta_pol_00001".to_string(), 0.5)].into(),
            ..Default::default()
        };
        let text = m.render(&s);
        for line in [
            "seta_drop_count_total{reason=\"Policy denied\",direction=\"INGRESS\"} 3",
            "seta_drop_bytes_total{reason=\"Policy denied\",direction=\"INGRESS\"} 180",
            "seta_forward_count_total{direction=\"EGRESS\"} 10",
            "seta_endpoint 2",
            "seta_endpoint_state{endpoint_state=\"ready\"} 2",
            "seta_policy 4",
            "seta_policy_max_revision 7",
            "seta_identity{type=\"reserved\"} 8",
            "seta_bpf_map_pressure{map_name=\"seta_pol_00001\"} 0.5",
            "seta_agent_api_process_time_seconds_count{method=\"PUT\",path=\"/v1/endpoint/{id}\",return_code=\"200\"} 1",
            "# TYPE seta_drop_count counter",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
