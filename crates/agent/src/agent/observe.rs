//! The agent's side of the metrics subsystem (`crate::metrics`): a snapshot
//! of the other subsystems' state for one scrape, and the API's timings.
use super::*;
use crate::metrics::{ApiLabels, OutcomeLabels, Snapshot};

impl Agent {
    /// What the subsystems hold now (the endpoint lock only to copy; the
    /// datapath counters on a blocking thread).
    pub async fn metrics_snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        {
            let inner = self.inner.lock().await;
            for ep in inner.endpoints.values() {
                *s.endpoint_states.entry(ep.state.to_string()).or_default() += 1;
                let fill = ep.policy_entries as f64 / seta_abi::POLICY_MAP_SIZE as f64;
                if fill > 0.1 {
                    s.map_pressure.insert(format!("seta_pol_{:05}", ep.id), fill);
                }
            }
            s.policies = inner.policy.rules().len() as i64;
            s.policy_revision = inner.policy.revision() as i64;
            for i in inner.universe() {
                let kind = match i.kind {
                    IdKind::Reserved => "reserved",
                    IdKind::Endpoint => "cluster_local",
                    IdKind::Cidr(_) | IdKind::PodIp(_) => "node_local",
                };
                *s.identities.entry(kind.to_string()).or_default() += 1;
            }
        }
        s.controllers_failing = self.supervisor.status().iter().filter(|t| t.state == "backoff").count() as i64;
        s.services = self.service_list().len() as i64;
        s.policy_map_full = self.policy_map_full_count();
        let k = self.kernel.clone();
        s.datapath = tokio::task::spawn_blocking(move || k.datapath_metrics()).await.unwrap_or_default();
        s
    }

    /// One scrape, as OpenMetrics text.
    pub async fn metrics_text(&self) -> String {
        let s = self.metrics_snapshot().await;
        self.metrics.render(&s)
    }

    /// An API request's duration (the path as routed, not as asked).
    pub fn observe_api(&self, method: &str, path: &str, code: u16, secs: f64) {
        let l = ApiLabels {
            method: method.to_string(),
            path: path.to_string(),
            return_code: code.to_string(),
        };
        self.metrics.api.get_or_create(&l).observe(secs);
    }

    /// An endpoint creation's duration and outcome.
    pub(super) fn observe_create(&self, ok: bool, secs: f64) {
        let outcome = if ok { "success" } else { "failure" }.to_string();
        self.metrics.endpoint_create.get_or_create(&OutcomeLabels { outcome }).observe(secs);
    }
}
