//! IP → identity entries shared between nodes (Cilium's `state/ip/v1`):
//! every agent publishes its endpoints' addresses under its lease, so the
//! entries of a node that dies expire with it. Key: `<prefix>/ip/v1/<ip>`.
use crate::{KvStore, LeaseId, Result};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IpEntry {
    pub ip: Ipv4Addr,
    pub identity: u32,
    /// node that hosts the address
    pub node: String,
    /// the node's underlay address: the tunnel endpoint to reach `ip`
    pub host_ip: Ipv4Addr,
}

pub fn base(prefix: &str) -> String {
    format!("{}/ip/v1/", prefix.trim_end_matches('/'))
}

pub fn key(prefix: &str, ip: Ipv4Addr) -> String {
    format!("{}{ip}", base(prefix))
}

pub async fn publish<S: KvStore>(store: &S, prefix: &str, e: &IpEntry, lease: LeaseId) -> Result<()> {
    store
        .put(&key(prefix, e.ip), &serde_json::to_vec(e).expect("serialisable"), lease)
        .await
}

pub async fn withdraw<S: KvStore>(store: &S, prefix: &str, ip: Ipv4Addr) -> Result<()> {
    store.delete(&key(prefix, ip)).await
}

pub fn parse(v: &[u8]) -> Option<IpEntry> {
    serde_json::from_slice(v).ok()
}
