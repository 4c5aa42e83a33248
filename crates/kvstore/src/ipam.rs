//! Cluster-pool IPAM in the kvstore. An agent without a configured pod CIDR
//! puts a request under its lease; the operator's leader answers with a
//! persistent allocation (stable across agent restarts).
//! - `<prefix>/ipam/v1/requests/<node>` (agent, leased)
//! - `<prefix>/ipam/v1/nodes/<node>` = CIDR (operator, persistent)
pub fn requests(prefix: &str) -> String {
    format!("{}/ipam/v1/requests/", prefix.trim_end_matches('/'))
}

pub fn allocations(prefix: &str) -> String {
    format!("{}/ipam/v1/nodes/", prefix.trim_end_matches('/'))
}
