//! hostPorts (CNI `portMappings`): node-local frontends of one pod each,
//! claimed when its endpoint is created and given back when it goes. Two
//! pods cannot hold the same address, port and protocol.
use super::Repository;
use seta_core::service::{Backend, BackendState, Frontend, FrontendKind, HostPort};
use std::net::Ipv4Addr;

impl Repository {
    /// Claim `ports` for container `cid` (address `ip`): all or none; an
    /// address, port and protocol another container holds is refused.
    pub fn claim_host_ports(&mut self, cid: &str, ip: Ipv4Addr, ports: &[HostPort]) -> Result<(), String> {
        // without kube-proxy replacement (and --enable-host-port) hostPorts are portmap's, not ours
        if ports.is_empty() || self.serving.no_host_port {
            return Ok(());
        }
        // unspecified host IPs clash with every address
        let clash = |a: &HostPort, b: &HostPort| {
            a.host_port == b.host_port && a.protocol == b.protocol && (a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip)
        };
        for (other, (_, held)) in self.host_ports.iter().filter(|(c, _)| c.as_str() != cid) {
            if let Some(p) = ports.iter().find(|p| held.iter().any(|h| clash(p, h))) {
                let at = p.host_ip.map_or("every node address".to_string(), |a| a.to_string());
                return Err(format!(
                    "hostPort {}/{} on {at} is held by container {other}",
                    p.host_port, p.protocol
                ));
            }
        }
        self.host_ports.insert(cid.to_string(), (ip, ports.to_vec()));
        Ok(())
    }

    /// Give back container `cid`'s hostPorts; whether it had any.
    pub fn release_host_ports(&mut self, cid: &str) -> bool {
        self.host_ports.remove(cid).is_some()
    }

    /// Keep only the hostPorts of these containers (a restart's reconcile).
    pub fn retain_host_ports(&mut self, live: &std::collections::BTreeSet<String>) -> bool {
        let before = self.host_ports.len();
        self.host_ports.retain(|c, _| live.contains(c));
        before != self.host_ports.len()
    }

    /// The hostPort frontends: on the mapping's host IP, else on every
    /// NodePort address, to the pod's container port.
    pub(super) fn host_port_frontends(&self, node_addrs: &[Ipv4Addr]) -> Vec<Frontend> {
        let mut out = Vec::new();
        for (cid, (ip, ports)) in &self.host_ports {
            for p in ports {
                let addrs = p.host_ip.map_or(node_addrs.to_vec(), |a| vec![a]);
                for addr in addrs {
                    out.push(Frontend {
                        addr,
                        port: p.host_port,
                        proto: p.protocol,
                        kind: FrontendKind::HostPort,
                        service: format!("hostport/{}", &cid[..cid.len().min(12)]),
                        port_name: String::new(),
                        backends: vec![Backend {
                            ip: *ip,
                            port: p.container_port,
                            state: BackendState::Active,
                            node: None,
                            for_zones: vec![],
                        }],
                        local_only: false,
                        affinity: None,
                        source_ranges: vec![],
                        annotations: Default::default(),
                        traffic_distribution: None,
                        scope: Default::default(),
                    });
                }
            }
        }
        out
    }
}
