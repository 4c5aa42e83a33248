//! What the health-check NodePorts answer (Cilium's `healthserver`): one per
//! LoadBalancer service with `externalTrafficPolicy: Local` and a
//! `healthCheckNodePort`, counting the service's active backends on this
//! node. Pure: the server (`crate::healthcheck`) only serves it.
use super::Repository;
use seta_core::service::BackendState;
use std::collections::{BTreeMap, BTreeSet};

/// The answer of one health-check NodePort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub namespace: String,
    pub name: String,
    /// active backends of the service on this node (distinct addresses)
    pub local_endpoints: usize,
}

impl HealthCheck {
    /// HTTP status, headers' weight and JSON body, as Cilium's server
    /// answers: 200 with local endpoints, else 503.
    pub fn response(&self) -> (u16, usize, String) {
        let body = serde_json::json!({
            "service": {"namespace": self.namespace, "name": self.name},
            "localEndpoints": self.local_endpoints,
        });
        let status = if self.local_endpoints > 0 { 200 } else { 503 };
        (status, self.local_endpoints, body.to_string())
    }
}

impl Repository {
    /// Every health-check NodePort this node serves, by port.
    pub fn health_checks(&self, node: &str) -> BTreeMap<u16, HealthCheck> {
        let mut out = BTreeMap::new();
        for s in self
            .services
            .values()
            .filter(|s| !self.serving.no_node_port && !self.serving.no_health_checks && s.handled() && self.proxies(s))
        {
            let Some(port) = s.health_check_node_port else { continue };
            let mut local = BTreeSet::new();
            for slice in self.slices_of(s) {
                for e in slice.endpoints.iter().filter(|e| e.node.as_deref() == Some(node)) {
                    let active = BackendState::from_conditions(e.ready, e.serving, e.terminating) == Some(BackendState::Active);
                    for a in e.addresses.iter().filter(|_| active) {
                        let by_hand = self.overrides.iter().any(|(k, _)| k.starts_with(&format!("{a}:")));
                        if !by_hand {
                            local.insert(*a);
                        }
                    }
                }
            }
            out.insert(
                port,
                HealthCheck {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                    local_endpoints: local.len(),
                },
            );
        }
        out
    }
}
