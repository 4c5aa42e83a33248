//! Service and EndpointSlice YAML/JSON → [`Object`]s, decoded as strictly as
//! the API server does (the policy decoder: duplicate keys, depth and alias
//! bounds; unknown fields refused), with errors naming the document, the
//! object, the field path, the value and the reason. Objects as `kubectl get
//! -o yaml` prints them (status, managedFields, uid ...) are accepted.
use super::*;
use crate::policy::parse::clip;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {doc}{what}: {path}: {msg}")]
pub struct ServiceError {
    pub doc: usize,
    /// " (Kind ns/name)" when known
    pub what: String,
    pub path: String,
    pub msg: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields the API server returns and load-balancing does not use
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    // accepted as the API server returns them; not used
    #[serde(default)]
    uid: Value,
    #[serde(default)]
    resource_version: Value,
    #[serde(default)]
    generation: Value,
    #[serde(default)]
    creation_timestamp: Value,
    #[serde(default)]
    deletion_timestamp: Value,
    #[serde(default)]
    deletion_grace_period_seconds: Value,
    #[serde(default)]
    owner_references: Value,
    #[serde(default)]
    finalizers: Value,
    #[serde(default)]
    managed_fields: Value,
    #[serde(default)]
    generate_name: Value,
    #[serde(default)]
    self_link: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields the API server returns and load-balancing does not use
struct WirePort {
    #[serde(default)]
    name: String,
    protocol: Option<String>,
    #[serde(default)]
    app_protocol: Value,
    port: i64,
    target_port: Option<Value>,
    node_port: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Affinity {
    #[serde(rename = "clientIP")]
    client_ip: Option<ClientIp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClientIp {
    timeout_seconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields the API server returns and load-balancing does not use
struct Spec {
    #[serde(default)]
    ports: Vec<WirePort>,
    #[serde(default)]
    selector: BTreeMap<String, String>,
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs", default)]
    cluster_ips: Vec<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "externalIPs", default)]
    external_ips: Vec<String>,
    session_affinity: Option<String>,
    session_affinity_config: Option<Affinity>,
    #[serde(rename = "loadBalancerIP")]
    load_balancer_ip: Option<String>,
    #[serde(default)]
    load_balancer_source_ranges: Vec<String>,
    external_name: Option<String>,
    external_traffic_policy: Option<String>,
    internal_traffic_policy: Option<String>,
    health_check_node_port: Option<i64>,
    // accepted, not used by the load-balancer
    #[serde(default)]
    publish_not_ready_addresses: Value,
    #[serde(default)]
    ip_families: Value,
    #[serde(default)]
    ip_family_policy: Value,
    allocate_load_balancer_node_ports: Option<bool>,
    #[serde(default)]
    load_balancer_class: Value,
    traffic_distribution: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields the API server returns and load-balancing does not use
struct Ingress {
    ip: Option<String>,
    #[serde(default)]
    hostname: Value,
    ip_mode: Option<String>,
    #[serde(default)]
    ports: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LbStatus {
    #[serde(default)]
    ingress: Vec<Ingress>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields the API server returns and load-balancing does not use
struct Status {
    load_balancer: Option<LbStatus>,
    #[serde(default)]
    conditions: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireService {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: Meta,
    spec: Spec,
    status: Option<Status>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Conditions {
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields the API server returns and load-balancing does not use
struct WireEndpoint {
    addresses: Vec<String>,
    conditions: Option<Conditions>,
    node_name: Option<String>,
    #[serde(default)]
    hostname: Value,
    #[serde(default)]
    zone: Value,
    #[serde(default)]
    target_ref: Value,
    hints: Option<Hints>,
    #[serde(default)]
    deprecated_topology: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // forNodes: kube-proxy's, not Cilium's (PreferSameNode uses nodeName)
struct Hints {
    #[serde(default)]
    for_zones: Vec<ForZone>,
    #[serde(default)]
    for_nodes: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ForZone {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // fields the API server returns and load-balancing does not use
struct WireSlicePort {
    #[serde(default)]
    name: String,
    protocol: Option<String>,
    port: Option<i64>,
    #[serde(default)]
    app_protocol: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireSlice {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: Meta,
    address_type: String,
    #[serde(default)]
    endpoints: Vec<WireEndpoint>,
    #[serde(default)]
    ports: Vec<WireSlicePort>,
}

/// Parse every Service and EndpointSlice of `text` (several documents, or a
/// `kind: List`). All or nothing: the first error rejects the input.
/// nodePorts must be in the default range.
pub fn parse_file(text: &str) -> Result<Vec<Object>, ServiceError> {
    parse_file_with(text, NodePortRange::default())
}

/// As [`parse_file`], with nodePorts in `range` (`--node-port-range`).
pub fn parse_file_with(text: &str, range: NodePortRange) -> Result<Vec<Object>, ServiceError> {
    let values = crate::policy::strict::documents(text, None).map_err(|e| ServiceError {
        doc: e.doc,
        what: String::new(),
        path: clip(&e.path),
        msg: clip(&e.msg),
    })?;
    let mut out = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        let doc = i + 1;
        if v.get("kind").and_then(Value::as_str) == Some("List") {
            let Some(Value::Array(items)) = v.get("items") else {
                return Err(err(doc, "", "items", "must be a list of objects"));
            };
            for (j, item) in items.iter().enumerate() {
                out.push(parse_object(doc, item, range).map_err(|mut e| {
                    e.path = format!("items[{j}].{}", e.path);
                    e
                })?);
            }
            continue;
        }
        out.push(parse_object(doc, &v, range)?);
    }
    if out.is_empty() {
        return Err(err(
            1,
            "",
            "(document)",
            "the input holds no Service or EndpointSlice: nothing to import",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for o in &out {
        if !seen.insert(o.key()) {
            let (k, ns, n) = o.key();
            return Err(err(0, "", "(input)", &format!("{k} {ns}/{n} appears twice")));
        }
    }
    Ok(out)
}

/// An IPv4 address in plain dotted decimal (no leading zeros).
fn strict_ipv4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

/// An IPv4 CIDR (host bits are cleared, as kube-proxy does).
fn strict_cidr(s: &str) -> Option<Ipv4Net> {
    s.parse::<Ipv4Net>().ok().map(|n| n.trunc())
}

fn err(doc: usize, what: &str, path: &str, msg: &str) -> ServiceError {
    ServiceError {
        doc,
        what: what.into(),
        path: clip(path),
        msg: clip(msg),
    }
}

/// Parse one object as the API serves it (JSON), as strictly as a file.
pub fn parse_value(v: &Value) -> Result<Object, ServiceError> {
    parse_value_with(v, NodePortRange::default())
}

/// As [`parse_value`], with nodePorts in `range` (`--node-port-range`).
pub fn parse_value_with(v: &Value, range: NodePortRange) -> Result<Object, ServiceError> {
    parse_object(1, v, range)
}

fn parse_object(doc: usize, v: &Value, range: NodePortRange) -> Result<Object, ServiceError> {
    let api = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    match (api, kind) {
        ("v1", "Service") => parse_service(doc, v, range).map(Object::Service),
        ("discovery.k8s.io/v1", "EndpointSlice") => parse_slice(doc, v).map(Object::EndpointSlice),
        _ => Err(err(
            doc,
            "",
            "kind",
            &format!("{api:?}/{kind:?} is not a v1 Service or a discovery.k8s.io/v1 EndpointSlice"),
        )),
    }
}

/// Decode with serde; an error names the field path where it happened.
fn decode<T: serde::de::DeserializeOwned>(doc: usize, v: &Value) -> Result<T, ServiceError> {
    let what = match (
        v.pointer("/metadata/namespace").and_then(Value::as_str),
        v.pointer("/metadata/name").and_then(Value::as_str),
    ) {
        (ns, Some(n)) => format!(
            " ({} {}/{n})",
            v.get("kind").and_then(Value::as_str).unwrap_or("?"),
            ns.unwrap_or("default")
        ),
        _ => String::new(),
    };
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = match e.path().to_string() {
            p if p == "." => "(object)".to_string(),
            p => p,
        };
        let msg = e.inner().to_string();
        let msg = match msg.starts_with("unknown field") {
            true => format!("{msg} (check the spelling; seta does not ignore unknown fields)"),
            false => msg,
        };
        err(doc, &what, &path, &msg)
    })
}

fn names(doc: usize, kind: &str, m: &Meta) -> Result<(String, String, String), ServiceError> {
    let name = m.name.clone().unwrap_or_default();
    let ns = m.namespace.clone().unwrap_or_else(|| "default".into());
    let what = format!(" ({kind} {ns}/{name})");
    if !crate::labels::is_dns_label(&name) {
        return Err(err(
            doc,
            &what,
            "metadata.name",
            &format!("{name:?}: must be a DNS label (lowercase letters, digits, '-')"),
        ));
    }
    if !crate::labels::is_dns_label(&ns) {
        return Err(err(doc, &what, "metadata.namespace", &format!("{ns:?}: must be a DNS label")));
    }
    Ok((ns, name, what))
}

/// An IPv6 address (of the family this load-balancer does not serve).
fn is_ipv6(s: &str) -> bool {
    s.parse::<std::net::Ipv6Addr>().is_ok()
}

fn ip(doc: usize, what: &str, path: &str, s: &str) -> Result<Ipv4Addr, ServiceError> {
    strict_ipv4(s).ok_or_else(|| err(doc, what, path, &format!("{s:?}: not an IPv4 address")))
}

fn port(doc: usize, what: &str, path: &str, p: i64) -> Result<u16, ServiceError> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| err(doc, what, path, &format!("{p}: must be between 1 and 65535")))
}

fn proto(doc: usize, what: &str, path: &str, p: Option<&str>) -> Result<Proto, ServiceError> {
    match p.unwrap_or("TCP") {
        "TCP" => Ok(Proto::Tcp),
        "UDP" => Ok(Proto::Udp),
        "SCTP" => Ok(Proto::Sctp),
        other => Err(err(doc, what, path, &format!("{other:?}: must be TCP, UDP or SCTP"))),
    }
}

fn policy(doc: usize, what: &str, path: &str, p: Option<&str>) -> Result<TrafficPolicy, ServiceError> {
    match p {
        None | Some("Cluster") => Ok(TrafficPolicy::Cluster),
        Some("Local") => Ok(TrafficPolicy::Local),
        Some(other) => Err(err(doc, what, path, &format!("{other:?}: must be Cluster or Local"))),
    }
}

fn parse_service(doc: usize, v: &Value, range: NodePortRange) -> Result<Service, ServiceError> {
    let w: WireService = decode(doc, v)?;
    let (namespace, name, what) = names(doc, "Service", &w.metadata)?;
    let what = what.as_str();
    let s = &w.spec;
    let kind = match s.kind.as_deref().unwrap_or("ClusterIP") {
        "ClusterIP" => ServiceType::ClusterIP,
        "NodePort" => ServiceType::NodePort,
        "LoadBalancer" => ServiceType::LoadBalancer,
        "ExternalName" => ServiceType::ExternalName,
        other => {
            return Err(err(
                doc,
                what,
                "spec.type",
                &format!("{other:?}: must be ClusterIP, NodePort, LoadBalancer or ExternalName"),
            ))
        }
    };
    // clusterIP and clusterIPs: the same first address; "None" = headless.
    // One address per family: this load-balancer serves the IPv4 one,
    // wherever it is listed; an IPv6-only service is valid and not served.
    let mut cluster_ips = Vec::new();
    let listed: Vec<&String> = s.cluster_ips.iter().collect();
    let family = |path: &str, c: &str, cluster_ips: &mut Vec<Ipv4Addr>| -> Result<(), ServiceError> {
        if is_ipv6(c) {
            return Ok(());
        }
        let a = ip(doc, what, path, c)?;
        if !cluster_ips.is_empty() {
            return Err(err(
                doc,
                what,
                path,
                &format!("{c:?}: a second IPv4 cluster IP is not allowed (one per family)"),
            ));
        }
        cluster_ips.push(a);
        Ok(())
    };
    match s.cluster_ip.as_deref() {
        Some("None") => {
            if listed.iter().any(|c| c.as_str() != "None") {
                return Err(err(doc, what, "spec.clusterIPs", "must be [None] for a headless service"));
            }
        }
        Some(c) if !c.is_empty() => {
            family("spec.clusterIP", c, &mut cluster_ips)?;
            if let Some(first) = listed.first() {
                if first.as_str() != c {
                    return Err(err(
                        doc,
                        what,
                        "spec.clusterIPs[0]",
                        &format!("{first:?}: must equal spec.clusterIP {c:?}"),
                    ));
                }
            }
        }
        _ if kind == ServiceType::ExternalName => {}
        _ => match listed.first() {
            Some(c) if c.as_str() == "None" => {}
            Some(c) => family("spec.clusterIPs[0]", c, &mut cluster_ips)?,
            None => {
                return Err(err(
                    doc,
                    what,
                    "spec.clusterIP",
                    "required: seta does not allocate cluster IPs (give the address, or None for a headless service)",
                ))
            }
        },
    }
    if listed.len() > 2 {
        return Err(err(doc, what, "spec.clusterIPs", "at most two addresses (one per family)"));
    }
    for (i, c) in listed.iter().enumerate().skip(1) {
        let path = format!("spec.clusterIPs[{i}]");
        if is_ipv6(c) && is_ipv6(listed[0]) {
            return Err(err(
                doc,
                what,
                &path,
                &format!("{c:?}: a second IPv6 cluster IP is not allowed (one per family)"),
            ));
        }
        family(&path, c, &mut cluster_ips)?;
    }
    if kind == ServiceType::ExternalName && s.external_name.as_deref().unwrap_or("").is_empty() {
        return Err(err(doc, what, "spec.externalName", "required for type ExternalName"));
    }
    if let (Some(v), false) = (s.allocate_load_balancer_node_ports, kind == ServiceType::LoadBalancer) {
        return Err(err(
            doc,
            what,
            "spec.allocateLoadBalancerNodePorts",
            &format!("{v}: may only be used when type is LoadBalancer"),
        ));
    }
    let mut ports = Vec::new();
    if s.ports.is_empty() && !cluster_ips.is_empty() && kind != ServiceType::ExternalName {
        return Err(err(
            doc,
            what,
            "spec.ports",
            "required: a service with a cluster IP needs at least one port",
        ));
    }
    for (i, p) in s.ports.iter().enumerate() {
        let path = |f: &str| format!("spec.ports[{i}].{f}");
        if s.ports.len() > 1 && p.name.is_empty() {
            return Err(err(doc, what, &path("name"), "required when a service has several ports"));
        }
        if !p.name.is_empty() && !crate::labels::is_dns_label(&p.name) {
            return Err(err(doc, what, &path("name"), &format!("{:?}: must be a DNS label", p.name)));
        }
        let number = port(doc, what, &path("port"), p.port)?;
        let protocol = proto(doc, what, &path("protocol"), p.protocol.as_deref())?;
        let target = match &p.target_port {
            None => TargetPort::Number(number),
            Some(Value::Number(n)) => TargetPort::Number(port(doc, what, &path("targetPort"), n.as_i64().unwrap_or(0))?),
            Some(Value::String(t)) if t.chars().all(|c| c.is_ascii_digit()) && !t.is_empty() => {
                return Err(err(doc, what, &path("targetPort"), &format!("{t:?}: a number must not be quoted")));
            }
            Some(Value::String(t)) if crate::policy::parse::is_iana_svc_name(t) => TargetPort::Name(t.clone()),
            Some(other) => {
                return Err(err(
                    doc,
                    what,
                    &path("targetPort"),
                    &format!("{other}: must be a port number or an IANA service name"),
                ))
            }
        };
        let node_port = match (p.node_port, kind) {
            (None | Some(0), _) => None,
            (Some(np), ServiceType::NodePort | ServiceType::LoadBalancer) => {
                let np = port(doc, what, &path("nodePort"), np)?;
                if !range.contains(np) {
                    return Err(err(
                        doc,
                        what,
                        &path("nodePort"),
                        &format!("{np}: must be in the NodePort range {range}"),
                    ));
                }
                Some(np)
            }
            (Some(np), _) => {
                return Err(err(
                    doc,
                    what,
                    &path("nodePort"),
                    &format!("{np}: only NodePort and LoadBalancer services have one"),
                ))
            }
        };
        // a LoadBalancer may go without node ports (allocateLoadBalancerNodePorts:
        // false); its load-balancer IPs and cluster IP still serve
        let without_node_ports = kind == ServiceType::LoadBalancer && s.allocate_load_balancer_node_ports == Some(false);
        if matches!(kind, ServiceType::NodePort | ServiceType::LoadBalancer) && node_port.is_none() && !without_node_ports {
            return Err(err(doc, what, &path("nodePort"), "required: seta does not allocate node ports"));
        }
        if ports.iter().any(|q: &ServicePort| q.port == number && q.protocol == protocol) {
            return Err(err(doc, what, &path("port"), &format!("{number}/{protocol} appears twice")));
        }
        ports.push(ServicePort {
            name: p.name.clone(),
            protocol,
            port: number,
            target,
            node_port,
        });
    }
    let external_ips = s
        .external_ips
        .iter()
        .enumerate()
        // an IPv6 address is valid and not served by this IPv4 load-balancer
        .filter(|(_, e)| !is_ipv6(e))
        .map(|(i, e)| ip(doc, what, &format!("spec.externalIPs[{i}]"), e))
        .collect::<Result<Vec<_>, _>>()?;
    let mut lb_ips = Vec::new();
    if let Some(lb) = w.status.as_ref().and_then(|s| s.load_balancer.as_ref()) {
        for (i, ing) in lb.ingress.iter().enumerate() {
            let path = |f: &str| format!("status.loadBalancer.ingress[{i}].{f}");
            // ipMode (KEP-1860): VIP (or unset) is this node's to serve; Proxy
            // means the load-balancer itself proxies, so traffic to the
            // address goes out to it and is not translated here (Cilium's rule)
            let vip = match (ing.ip_mode.as_deref(), &ing.ip) {
                (None | Some("VIP"), _) => true,
                (Some("Proxy"), Some(_)) => false,
                (Some("Proxy"), None) => return Err(err(doc, what, &path("ipMode"), "\"Proxy\": requires ip")),
                (Some(m), _) => return Err(err(doc, what, &path("ipMode"), &format!("{m:?}: must be VIP or Proxy"))),
            };
            match &ing.ip {
                // an address of the other family is valid, not load-balanced here
                Some(a) if is_ipv6(a) => {}
                Some(a) => {
                    let a = ip(doc, what, &path("ip"), a)?;
                    if vip {
                        lb_ips.push(a);
                    }
                }
                None => {}
            }
        }
    }
    if let Some(a) = &s.load_balancer_ip {
        if !a.is_empty() && !is_ipv6(a) {
            ip(doc, what, "spec.loadBalancerIP", a)?;
        }
    }
    let affinity = match s.session_affinity.as_deref() {
        None | Some("None") => None,
        Some("ClientIP") => {
            let t = s
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(AFFINITY_TIMEOUT_DEFAULT as i64);
            if !(1..=86400).contains(&t) {
                return Err(err(
                    doc,
                    what,
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    &format!("{t}: must be 1..86400"),
                ));
            }
            Some(t as u32)
        }
        Some(other) => {
            return Err(err(
                doc,
                what,
                "spec.sessionAffinity",
                &format!("{other:?}: must be None or ClientIP"),
            ))
        }
    };
    let external_policy = policy(doc, what, "spec.externalTrafficPolicy", s.external_traffic_policy.as_deref())?;
    let internal_policy = policy(doc, what, "spec.internalTrafficPolicy", s.internal_traffic_policy.as_deref())?;
    let source_ranges = s
        .load_balancer_source_ranges
        .iter()
        .enumerate()
        .map(|(i, r)| {
            strict_cidr(r.trim()).ok_or_else(|| {
                err(
                    doc,
                    what,
                    &format!("spec.loadBalancerSourceRanges[{i}]"),
                    &format!("{r:?}: not an IPv4 CIDR"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let health_check_node_port = match s.health_check_node_port {
        None | Some(0) => None,
        Some(h) if kind == ServiceType::LoadBalancer && external_policy == TrafficPolicy::Local => {
            Some(port(doc, what, "spec.healthCheckNodePort", h)?)
        }
        Some(h) => {
            return Err(err(
                doc,
                what,
                "spec.healthCheckNodePort",
                &format!("{h}: only for LoadBalancer services with externalTrafficPolicy Local"),
            ))
        }
    };
    for (k, v) in &s.selector {
        crate::labels::validate_key(k)
            .and_then(|_| crate::labels::validate_value(v))
            .map_err(|e| err(doc, what, &format!("spec.selector.{}", crate::labels::quote(k)), &e))?;
    }
    let proxy_name = w.metadata.labels.get("service.kubernetes.io/service-proxy-name").cloned();
    let headless_label = w.metadata.labels.contains_key(LABEL_HEADLESS);
    let annotations = annotations(doc, what, &w.metadata.annotations)?;
    // spec.trafficDistribution; before it, topology-mode: Auto (PreferClose)
    let traffic_distribution = match s.traffic_distribution.as_deref() {
        Some("PreferClose") => Some(TrafficDistribution::PreferClose),
        Some("PreferSameZone") => Some(TrafficDistribution::PreferSameZone),
        Some("PreferSameNode") => Some(TrafficDistribution::PreferSameNode),
        Some(other) => {
            return Err(err(
                doc,
                what,
                "spec.trafficDistribution",
                &format!("{other:?}: must be PreferClose, PreferSameZone or PreferSameNode"),
            ))
        }
        None => ANNOTATIONS_TOPOLOGY_MODE
            .iter()
            .find_map(|k| w.metadata.annotations.get(*k))
            .filter(|v| v.eq_ignore_ascii_case("auto"))
            .map(|_| TrafficDistribution::PreferClose),
    };
    Ok(Service {
        namespace,
        name,
        kind,
        cluster_ips,
        external_ips,
        lb_ips,
        ports,
        affinity,
        external_policy,
        internal_policy,
        source_ranges,
        health_check_node_port,
        proxy_name,
        headless_label,
        selector: s.selector.clone(),
        annotations,
        traffic_distribution,
    })
}

/// Cilium's per-service annotations; a value Cilium does not know is
/// refused, naming the annotation (other annotations are not ours).
fn annotations(doc: usize, what: &str, a: &BTreeMap<String, String>) -> Result<SvcAnnotations, ServiceError> {
    use crate::mode::{LbAlgorithm, LbMode};
    /// The value of annotation `key`, one of `values` (name, value).
    fn get<T: Copy>(
        (doc, what, a): (usize, &str, &BTreeMap<String, String>),
        key: &str,
        values: &[(&str, T)],
    ) -> Result<Option<T>, ServiceError> {
        let Some(v) = a.get(key) else { return Ok(None) };
        match values.iter().find(|(name, _)| name == v) {
            Some((_, t)) => Ok(Some(*t)),
            None => {
                let names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
                let msg = format!("{v:?}: must be {}", names.join(" or "));
                Err(err(doc, what, &format!("metadata.annotations[{key}]"), &msg))
            }
        }
    }
    let at = (doc, what, a);
    Ok(SvcAnnotations {
        forwarding_mode: get(at, ANNOTATION_FORWARDING_MODE, &[("dsr", LbMode::Dsr), ("snat", LbMode::Snat)])?,
        lb_algorithm: get(
            at,
            ANNOTATION_LB_ALGORITHM,
            &[("maglev", LbAlgorithm::Maglev), ("random", LbAlgorithm::Random)],
        )?,
        source_ranges_deny: get(at, ANNOTATION_SRC_RANGES_POLICY, &[("allow", false), ("deny", true)])?.unwrap_or(false),
        exposure: get(
            at,
            ANNOTATION_TYPE,
            &[
                ("ClusterIP", FrontendKind::ClusterIP),
                ("NodePort", FrontendKind::NodePort),
                ("LoadBalancer", FrontendKind::LoadBalancer),
            ],
        )?,
        node: match a.get(ANNOTATION_NODE) {
            Some(v) => Some(crate::labels::validate_value(v).map(|_| v.clone()).map_err(|e| {
                err(
                    doc,
                    what,
                    &format!("metadata.annotations[{ANNOTATION_NODE}]"),
                    &format!("{v:?}: {e}"),
                )
            })?),
            None => None,
        },
        node_selector: match a.get(ANNOTATION_NODE_SELECTOR) {
            Some(v) => Some(crate::labelselector::LabelSelector::parse(v).map(|_| v.clone()).map_err(|e| {
                let path = format!("metadata.annotations[{ANNOTATION_NODE_SELECTOR}]");
                err(doc, what, &path, &format!("{v:?}: not a label selector: {e}"))
            })?),
            None => None,
        },
    })
}

fn parse_slice(doc: usize, v: &Value) -> Result<EndpointSlice, ServiceError> {
    let w: WireSlice = decode(doc, v)?;
    let (namespace, name, what) = names(doc, "EndpointSlice", &w.metadata)?;
    let what = what.as_str();
    let service = w.metadata.labels.get("kubernetes.io/service-name").cloned().ok_or_else(|| {
        err(
            doc,
            what,
            "metadata.labels",
            "kubernetes.io/service-name is required (which service the slice belongs to)",
        )
    })?;
    if w.address_type != "IPv4" {
        return Err(err(
            doc,
            what,
            "addressType",
            &format!("{:?}: only IPv4 slices are supported", w.address_type),
        ));
    }
    let mut ports = Vec::new();
    for (i, p) in w.ports.iter().enumerate() {
        let path = |f: &str| format!("ports[{i}].{f}");
        let number = port(
            doc,
            what,
            &path("port"),
            p.port.ok_or_else(|| err(doc, what, &path("port"), "required"))?,
        )?;
        ports.push(SlicePort {
            name: p.name.clone(),
            protocol: proto(doc, what, &path("protocol"), p.protocol.as_deref())?,
            port: number,
        });
    }
    let mut endpoints = Vec::new();
    for (i, e) in w.endpoints.iter().enumerate() {
        if e.addresses.is_empty() {
            return Err(err(
                doc,
                what,
                &format!("endpoints[{i}].addresses"),
                "at least one address is required",
            ));
        }
        let addresses = e
            .addresses
            .iter()
            .enumerate()
            .map(|(j, a)| ip(doc, what, &format!("endpoints[{i}].addresses[{j}]"), a))
            .collect::<Result<Vec<_>, _>>()?;
        let c = e.conditions.as_ref();
        let for_zones = e.hints.as_ref().map_or(&[][..], |h| &h.for_zones[..]);
        for (j, z) in for_zones.iter().enumerate() {
            if z.name.is_empty() {
                return Err(err(doc, what, &format!("endpoints[{i}].hints.forZones[{j}].name"), "required"));
            }
        }
        endpoints.push(SliceEndpoint {
            addresses,
            ready: c.and_then(|c| c.ready),
            serving: c.and_then(|c| c.serving),
            terminating: c.and_then(|c| c.terminating),
            node: e.node_name.clone(),
            for_zones: for_zones.iter().map(|z| z.name.clone()).collect(),
        });
    }
    Ok(EndpointSlice {
        namespace,
        name,
        service,
        ports,
        endpoints,
    })
}
