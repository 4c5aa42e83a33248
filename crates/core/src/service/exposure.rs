//! Which nodes expose a service (Cilium's selective service node exposure):
//! `service.cilium.io/node: VALUE` (the node's label `service.cilium.io/node`
//! equals VALUE) or `service.cilium.io/node-selector: SELECTOR` (a
//! Kubernetes label selector string, matched against the node's labels; it
//! wins over the other). Without either, every node exposes the service.
use crate::labelselector::LabelSelector;
use std::collections::BTreeMap;

/// The node label `service.cilium.io/node` is compared with.
pub const LABEL_SERVICE_NODE: &str = "service.cilium.io/node";

/// Is a service with these exposure annotations exposed on a node with
/// `labels`? The selector wins over the node value.
pub fn exposed(node: Option<&str>, selector: Option<&str>, labels: &BTreeMap<String, String>) -> bool {
    match (selector, node) {
        // validated when the service was parsed
        (Some(s), _) => LabelSelector::parse(s).is_ok_and(|s| s.matches(labels)),
        (None, Some(v)) => labels.get(LABEL_SERVICE_NODE).map(String::as_str) == Some(v),
        (None, None) => true,
    }
}
