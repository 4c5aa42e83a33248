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
            let eps = self.endpoints.lock().await;
            for ep in eps.values() {
                *s.endpoint_states.entry(ep.state.to_string()).or_default() += 1;
                let fill = ep.policy_entries as f64 / seta_abi::POLICY_MAP_SIZE as f64;
                if fill > 0.1 {
                    s.map_pressure.insert(format!("seta_pol_{:05}", ep.id), fill);
                }
            }
            {
                let p = self.policy.get();
                s.policies = p.rules().len() as i64;
                s.policy_revision = p.revision() as i64;
            }
            for i in self.universe() {
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

    /// Every node's Hubble observer address (Hubble's peer API): this node and
    /// the nodes the kvstore knows, at the port of this node's
    /// --hubble-listen-address (empty when TCP is off).
    pub fn hubble_peers(&self) -> std::collections::BTreeMap<String, String> {
        let Some(port) = self.cfg.hubble_listen_address.map(|a| a.port()) else {
            return Default::default();
        };
        let mut peers: std::collections::BTreeMap<String, String> = self
            .cluster
            .get()
            .nodes()
            .values()
            .filter_map(|n| Some((n.name.clone(), format!("{}:{port}", n.internal_ip.or(n.ips.first().copied())?))))
            .collect();
        if let Some(ip) = self.cfg.node_ip {
            peers.insert(self.cfg.node.clone(), format!("{ip}:{port}"));
        }
        peers
    }

    /// What the observer decodes `batch` with: this node's endpoints, the
    /// identities' labels and the services' frontends. Taken again once a
    /// second, at once when the service maps were written, and sooner (at
    /// most every 50 ms) when the batch names a pod or identity it does not
    /// know: a new pod's first flows carry its name.
    pub async fn flow_context(&self, batch: &[seta_abi::Record]) -> Arc<seta_hubble::decode::Context> {
        // (the same table until the service maps are written again)
        let services = self.frontends_by_addr();
        if let Some((at, ctx)) = self.flow_ctx.lock().unwrap().as_ref() {
            let age = at.elapsed();
            if Arc::ptr_eq(&ctx.services, &services)
                && (age < std::time::Duration::from_millis(50)
                    || (age < std::time::Duration::from_secs(1) && batch.iter().all(|r| ctx.knows(&r.ev))))
            {
                return ctx.clone();
            }
        }
        let mut ctx = seta_hubble::decode::Context {
            node: self.cfg.node.clone(),
            services,
            ..Default::default()
        };
        {
            let eps = self.endpoints.lock().await;
            ctx.local_pods = Some((eps.cidr(), eps.router()));
            for ep in eps.values() {
                ctx.endpoints.insert(
                    ep.ipv4,
                    seta_hubble::decode::EndpointView {
                        id: ep.id as u32,
                        identity: ep.identity,
                        namespace: ep.namespace.clone(),
                        pod_name: ep.pod_name.clone(),
                        labels: ep.labels.iter().map(|l| l.to_string()).collect(),
                    },
                );
            }
            // socket-LB's traces name the socket's namespace
            let ns = self.sock_ns.get();
            ctx.host_netns = ns.host;
            for (id, cookie) in &ns.pods {
                if let Some(ep) = eps.get(*id) {
                    ctx.netns.insert(*cookie, ep.ipv4);
                }
            }
            drop(ns);
            for i in self.universe() {
                ctx.identities.insert(i.id, i.labels.iter().map(|l| l.to_string()).collect());
            }
        }
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        ctx.wall_offset_ns = wall - seta_datapath::maps::monotonic_ns() as i128;
        let ctx = Arc::new(ctx);
        *self.flow_ctx.lock().unwrap() = Some((Instant::now(), ctx.clone()));
        ctx
    }
}
