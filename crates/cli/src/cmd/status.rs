//! `seta status` and `seta node list`.
use crate::*;

pub async fn run(cli: &Cli, json: bool) -> Result<i32> {
    let c = client(cli.node.as_deref())?;
    let s: Status = c.status().await?;
    if json {
        return print_json(&s);
    }
    let states: Vec<String> = s.endpoint_states.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    kv(&[
        ("Node", s.node.clone()),
        (
            "seta",
            format!(
                "{} {} (uptime {}s)",
                if s.healthy { "Ok" } else { "Degraded" },
                s.version,
                s.uptime_seconds
            ),
        ),
        ("Datapath", s.datapath.clone()),
        ("Attach Mode", s.attach_mode.to_uppercase()),
        (
            "IPAM",
            format!("IPv4: {}/{} allocated from {}", s.ipam.allocated, s.ipam.capacity, s.ipam.cidr),
        ),
        (
            "Endpoints",
            format!(
                "{} ({})",
                s.endpoints,
                if states.is_empty() { "none".into() } else { states.join(", ") }
            ),
        ),
        ("Restored", format!("{} endpoints at start", s.restored_endpoints)),
        (
            "Policy",
            format!(
                "{} policies, revision {}{}",
                s.policies,
                s.policy_revision,
                if s.policy_map_full_errors > 0 {
                    format!(", {} regenerations failed: policy map full", s.policy_map_full_errors)
                } else {
                    String::new()
                }
            ),
        ),
        (
            "KVStore",
            format!(
                "{} ({})",
                s.kvstore,
                if s.kvstore_status.is_empty() {
                    "?"
                } else {
                    s.kvstore_status.as_str()
                }
            ),
        ),
        (
            "Cluster",
            format!("{} node(s) announced: {}", s.nodes_registered.len(), s.nodes_registered.join(", ")),
        ),
        (
            "Routing",
            format!(
                "{} (node IP {}, pod MTU {})",
                match s.routing_mode {
                    seta_core::mode::RoutingMode::Tunnel => "Tunnel [vxlan, UDP 8472]",
                    seta_core::mode::RoutingMode::Native => "Native",
                },
                s.node_ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                s.pod_mtu
            ),
        ),
        ("KubeProxyReplacement", kpr(&s.kube_proxy_replacement)),
        ("Masquerading", masquerading(&s.masquerading, s.node_ip)),
        ("Cluster health", cluster_health(&s.cluster_health)),
        ("Controllers", controllers(&s.tasks)),
        ("Reconcile", reconcile(&s.reconcile)),
        ("CNI Config file", s.cni_config.clone()),
        ("API socket", c.path().display().to_string()),
    ]);
    Ok(0)
}

pub async fn nodes(cli: &Cli, json: bool) -> Result<i32> {
    let nodes: Vec<serde_json::Value> = client(cli.node.as_deref())?.nodes().await?;
    if json {
        return print_json(&nodes);
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let rows = nodes
        .iter()
        .map(|n| {
            let ips: Vec<String> = n["ips"].as_array().into_iter().flatten().map(s).collect();
            vec![s(&n["name"]), ips.join(","), s(&n["pod-cidr"]), s(&n["boot-id"]), "kvstore".into()]
        })
        .collect();
    table(&["Name", "IPv4 Address", "Endpoint CIDR", "Boot ID", "Source"], rows);
    Ok(0)
}

/// Cilium's Masquerading line: `BPF (ip-masq-agent) [device address, ...] native-CIDR`,
/// then the ip-masq-agent's ranges and why its file was not taken, if so.
fn masquerading(m: &seta_core::api::MasqStatus, node_ip: Option<std::net::Ipv4Addr>) -> String {
    if !m.enabled {
        return "Disabled".into();
    }
    // each native device with the address it masquerades to, else the node IP
    let to = match (m.devices.is_empty(), node_ip) {
        (false, _) => m
            .devices
            .iter()
            .map(|d| format!("{} {}", d.device, d.address))
            .collect::<Vec<_>>()
            .join(", "),
        (true, Some(i)) => format!("to {i}"),
        (true, None) => "no node address: nothing is masqueraded".into(),
    };
    let mut out = format!("BPF{} [{to}]", if m.ip_masq_agent.is_some() { " (ip-masq-agent)" } else { "" },);
    if let Some(n) = &m.native_routing_cidr {
        out.push_str(&format!(" {n}"));
    }
    out.push_str(" [IPv4: Enabled, IPv6: Disabled]");
    if let Some(p) = &m.ip_masq_agent {
        out.push_str(&format!(
            "; ip-masq-agent {p}: nonMasqueradeCIDRs {}",
            m.non_masquerade_cidrs.join(", ")
        ));
    }
    if let Some(e) = &m.config_error {
        out.push_str(&format!("; CONFIG NOT TAKEN: {e}"));
    }
    out
}

/// `a, b`, or `none`.
fn list_or_none(items: &[String]) -> String {
    match items.is_empty() {
        true => "none".to_string(),
        false => items.join(", "),
    }
}

/// Cilium's KubeProxyReplacement block on one line.
fn kpr(k: &seta_core::api::KprStatus) -> String {
    if !k.enabled {
        let others: Vec<&str> = ["NodePort", "LoadBalancer", "externalIPs", "HostPort"]
            .into_iter()
            .filter(|s| !k.served.iter().any(|x| x == s))
            .collect();
        let served = match k.served.is_empty() {
            true => "ClusterIP".to_string(), // an agent from before the list
            false => k.served.join(", "),
        };
        let theirs = match others.len() {
            0 => String::new(),
            1 => format!("; {} is kube-proxy's", others[0]),
            _ => format!("; {} are kube-proxy's", others.join(", ")),
        };
        return format!(
            "False [Socket LB: {}, Backend Selection: {}, Session Affinity: Enabled, No Backend Response: {}, Services: {served}{theirs}; {} services, {} frontends]",
            k.socket_lb, k.backend_selection, k.no_backend_response, k.services, k.frontends
        );
    }
    format!(
        "True [Socket LB: {}, Devices: {}, Mode: {}, Backend Selection: {}, Session Affinity: Enabled, Graceful Termination: Enabled, No Backend Response: {}, Services: ClusterIP, NodePort (Range: {}), LoadBalancer, externalIPs, HostPort: Enabled, NodePort Addresses: {}, Annotations: {}; {} services, {} frontends]",
        k.socket_lb,
        list_or_none(&k.devices),
        k.mode,
        k.backend_selection,
        k.no_backend_response,
        k.node_port_range,
        list_or_none(&k.node_port_addresses),
        k.annotations.join(", "),
        k.services,
        k.frontends
    )
}

/// `2/2 reachable` plus the nodes that are not, and why.
fn cluster_health(h: &[seta_core::api::NodeHealth]) -> String {
    if h.is_empty() {
        return "no other nodes".into();
    }
    let ok = h.iter().filter(|n| n.node_reachable && n.datapath_reachable).count();
    let mut out = format!("{ok}/{} other node(s) reachable", h.len());
    for n in h.iter().filter(|n| !(n.node_reachable && n.datapath_reachable)) {
        let why = match (n.node_reachable, n.datapath_reachable) {
            (false, false) => "unreachable",
            (true, false) => "node answers, datapath (tunnel/routes) does not",
            _ => "datapath answers, node IP does not",
        };
        out.push_str(&format!("; {}: {why}", n.name));
    }
    out
}

/// `7/7 healthy` plus the tasks that are restarting, and why.
fn controllers(t: &[seta_core::api::TaskStatus]) -> String {
    let ok = t.iter().filter(|x| x.state == "running").count();
    let mut out = format!("{ok}/{} healthy", t.len());
    for x in t.iter().filter(|x| x.state != "running") {
        out.push_str(&format!(
            "; {} {} after {} restart(s): {}",
            x.name,
            x.state,
            x.restarts,
            x.last_error.as_deref().unwrap_or("?")
        ));
    }
    out
}

/// `converged`, or what is pending a retry.
fn reconcile(r: &seta_core::api::ReconcileStatus) -> String {
    if r.endpoints_failed.is_empty() && r.ipcache_failed.is_empty() {
        return "converged".into();
    }
    let mut parts = Vec::new();
    for (id, msg) in &r.endpoints_failed {
        parts.push(format!("endpoint {id}: {msg}"));
    }
    for (prefix, msg) in &r.ipcache_failed {
        parts.push(format!("ipcache {prefix}: {msg}"));
    }
    format!("{} pending, retried {} time(s): {}", parts.len(), r.retries, parts.join("; "))
}
