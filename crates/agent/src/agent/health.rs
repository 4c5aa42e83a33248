//! Cluster health: the TCP listener other nodes probe, and the probe loop
//! (each other node on its address and, through the datapath, its router IP).
use super::cluster::HEALTH_PORT;
use super::*;
use seta_core::ipam::router_ip;
use seta_kvstore::nodes::NodeInfo;

impl Agent {
    /// Answer other nodes' health probes.
    pub(super) async fn health_listener(self: Arc<Self>) -> anyhow::Result<()> {
        let l = tokio::net::TcpListener::bind(("0.0.0.0", HEALTH_PORT)).await?;
        loop {
            let (mut s, _) = l.accept().await?;
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"ok\n").await;
        }
    }

    /// Probe every other node: its underlay address (TCP to the health port)
    /// and, through the datapath, its router IP (tunnel or routes).
    pub(super) async fn health_loop(&self) {
        loop {
            let nodes: Vec<NodeInfo> = self.cluster.get().nodes().values().cloned().collect();
            let mut results = BTreeMap::new();
            for n in nodes {
                let probe = |ip: Option<Ipv4Addr>| async move {
                    let Some(ip) = ip else { return false };
                    matches!(
                        tokio::time::timeout(
                            std::time::Duration::from_millis(800),
                            tokio::net::TcpStream::connect((ip, HEALTH_PORT))
                        )
                        .await,
                        Ok(Ok(_))
                    )
                };
                let router = n.pod_cidr.parse::<ipnet::Ipv4Net>().ok().map(router_ip);
                let t = Instant::now();
                let node_ok = probe(n.primary_ip()).await;
                let dp_ok = probe(router).await;
                results.insert(
                    n.name.clone(),
                    seta_core::api::NodeHealth {
                        name: n.name.clone(),
                        ip: n.primary_ip(),
                        node_reachable: node_ok,
                        datapath_reachable: dp_ok,
                        probe_ms: t.elapsed().as_secs_f64() * 1e3,
                    },
                );
            }
            self.cluster.get().set_health(results);
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    }
}
