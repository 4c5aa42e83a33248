//! The node registry: each agent announces itself under its lease, so a dead
//! node's entry expires by itself. Key: `<prefix>/nodes/v1/<name>`.
use crate::{KvError, KvStore, LeaseId, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NodeInfo {
    pub name: String,
    /// addresses of the node outside the pod network (underlay)
    pub ips: Vec<std::net::Ipv4Addr>,
    pub pod_cidr: String,
    /// changes when the node reboots (its datapath state is gone)
    pub boot_id: String,
    /// the address other nodes use: tunnel endpoint, next hop, health checks
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_ip: Option<std::net::Ipv4Addr>,
    /// `tunnel` or `native`
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub routing_mode: String,
    /// where other nodes probe this node's health (TCP), e.g. 172.30.0.1:4240
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_address: Option<String>,
}

impl NodeInfo {
    /// The address to reach this node at: its internal IP, else its first IP.
    pub fn primary_ip(&self) -> Option<std::net::Ipv4Addr> {
        self.internal_ip.or_else(|| self.ips.first().copied())
    }
}

fn key(prefix: &str, name: &str) -> String {
    format!("{}/nodes/v1/{name}", prefix.trim_end_matches('/'))
}

pub async fn register<S: KvStore>(store: &S, prefix: &str, node: &NodeInfo, lease: LeaseId) -> Result<()> {
    store
        .put(&key(prefix, &node.name), &serde_json::to_vec(node).expect("serialisable"), lease)
        .await
}

pub async fn list<S: KvStore>(store: &S, prefix: &str) -> Result<Vec<NodeInfo>> {
    store
        .list(&key(prefix, ""))
        .await?
        .into_iter()
        .map(|(k, v)| serde_json::from_slice(&v).map_err(|e| KvError::Other(format!("{k}: {e}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    #[tokio::test]
    async fn register_and_list() {
        let s = MemoryStore::new();
        let n = NodeInfo {
            name: "n1".into(),
            ips: vec!["172.30.0.1".parse().unwrap()],
            pod_cidr: "10.0.1.0/24".into(),
            boot_id: "b".into(),
            internal_ip: None,
            routing_mode: String::new(),
            health_address: None,
        };
        register(&s, "/seta", &n, 0).await.unwrap();
        register(
            &s,
            "/seta",
            &NodeInfo {
                name: "n2".into(),
                ..n.clone()
            },
            0,
        )
        .await
        .unwrap();
        let l = list(&s, "/seta").await.unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0], n);
    }
}
