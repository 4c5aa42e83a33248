//! `seta policy trace`: would a connection be allowed, computed by the same
//! resolver and lookup that program the maps.
use super::*;

impl Agent {
    pub(super) fn trace_side(&self, eps: &Endpoints, rules: &[Rule], s: &TraceSpec, what: &str) -> Result<trace::Side, ApiError> {
        let n = [s.endpoint.is_some(), s.labels.is_some(), s.ip.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if n != 1 {
            return Err(ApiError::BadRequest(format!("{what}: give exactly one of endpoint, labels or ip")));
        }
        let ipblock_ids = self.policy.get().ipblock_ids().clone();
        let ep_side = |ep: &Endpoint| trace::Side {
            description: format!("endpoint {} ({}/{} {})", ep.id, ep.namespace, ep.pod_name, ep.ipv4),
            identity: IdentityInfo {
                id: ep.identity,
                labels: ep.labels.clone(),
                kind: IdKind::Endpoint,
            },
            ip_identity: ipblock_ids.get(&ep.ipv4).map(|id| IdentityInfo {
                id: *id,
                labels: LabelSet::new(),
                kind: IdKind::PodIp(ep.ipv4),
            }),
            policy: Some(self.endpoint_policy(rules, eps, ep)),
        };
        if let Some(e) = &s.endpoint {
            let r = EndpointRef::parse(e).map_err(|m| ApiError::BadRequest(format!("{what}.endpoint: {m}")))?;
            let id = eps
                .find(&r)
                .map_err(|e| ApiError::NotFound(format!("{what}: {}", ApiError::from(e))))?;
            return Ok(ep_side(eps.get(id).expect("found")));
        }
        // a pod on another node: its identity and labels from the cluster, its
        // policy computed from the same rules
        let remote_pod = s.ip.and_then(|ip| {
            let (src, e) = self.ipcache.get().winner(ip)?;
            let labels = self.identities.get().cluster_labels(e.identity)?.clone();
            (src == seta_core::ipcache::Source::Cluster).then_some((ip, e.identity, labels))
        });
        if s.labels.is_some() || remote_pod.is_some() {
            let (ns, l, id, ip, pod_labels) = match (&s.labels, remote_pod) {
                (Some(labels), _) => {
                    let ns = s.namespace.clone().unwrap_or_else(|| "default".into());
                    let l = self.identity_labels(labels, &ns)?;
                    let id = self
                        .identities
                        .get()
                        .held()
                        .find(|a| a.labels == l)
                        .map(|a| a.id)
                        .unwrap_or(u32::MAX >> 8);
                    (ns, l, id, Ipv4Addr::UNSPECIFIED, labels.clone())
                }
                (None, Some((ip, id, l))) => {
                    let ns = l
                        .iter()
                        .find(|x| x.key == "io.kubernetes.pod.namespace")
                        .map(|x| x.value.clone())
                        .unwrap_or_default();
                    (ns, l, id, ip, vec![])
                }
                _ => unreachable!(),
            };
            let labels = &pod_labels;
            let fake = stand_in_endpoint(&ns, ip, labels.clone(), l.clone(), id);
            let mut side = ep_side(&fake);
            side.description = if ip.is_unspecified() {
                format!("pod with labels [{}] in {ns} (identity {id})", labels.join(", "))
            } else {
                format!("pod {ip} on another node (identity {id})")
            };
            return Ok(side);
        }
        let ip = s.ip.unwrap();
        if let Some(ep) = eps.by_ip(ip) {
            return Ok(ep_side(ep));
        }
        if ip == eps.router() {
            return Ok(trace::Side {
                description: format!("host {ip}"),
                identity: self.universe().into_iter().find(|u| u.id == ID_HOST).unwrap(),
                ip_identity: None,
                policy: None,
            });
        }
        // longest CIDR identity, else world
        let cidr = self
            .policy
            .get()
            .cidr_ids()
            .iter()
            .filter(|(n, _)| n.contains(&ip))
            .max_by_key(|(n, _)| n.prefix_len())
            .map(|(n, id)| (*n, *id));
        let identity = match cidr {
            Some((n, id)) => IdentityInfo {
                id,
                labels: [Label::new("cidr", &n.to_string(), "")].into_iter().collect(),
                kind: IdKind::Cidr(n),
            },
            None => self.universe().into_iter().find(|u| u.id == seta_core::identity::ID_WORLD).unwrap(),
        };
        Ok(trace::Side {
            description: format!("{ip} (identity {})", identity.id),
            identity,
            ip_identity: None,
            policy: None,
        })
    }

    pub async fn trace(&self, req: &TraceRequest) -> Result<trace::TraceResult, ApiError> {
        let proto = match req.protocol.to_ascii_uppercase().as_str() {
            "TCP" => 6,
            "UDP" => 17,
            "SCTP" => 132,
            "ICMP" => 1,
            "ANY" | "" => 0,
            p => return Err(ApiError::BadRequest(format!("protocol: {p:?} is not TCP, UDP, SCTP, ICMP or ANY"))),
        };
        let eps = self.endpoints.lock().await;
        let rules = self.policy.get().rules();
        let src = self.trace_side(&eps, &rules, &req.from, "from")?;
        let dst = self.trace_side(&eps, &rules, &req.to, "to")?;
        Ok(trace::trace(&rules, &src, &dst, proto, req.port))
    }
}

/// An endpoint that stands for a pod known only by labels or from another
/// node, so the resolver can compute its policy.
pub(super) fn stand_in_endpoint(ns: &str, ip: Ipv4Addr, pod_labels: Vec<String>, labels: LabelSet, identity: u32) -> Endpoint {
    Endpoint {
        id: 0,
        container_id: String::new(),
        container_interface_name: String::new(),
        pod_name: String::new(),
        namespace: ns.to_string(),
        ipv4: ip,
        mac: String::new(),
        host_mac: String::new(),
        interface_name: String::new(),
        interface_index: 0,
        netns_path: String::new(),
        pod_labels,
        labels,
        identity,
        state: EndpointState::Ready,
        named_ports: BTreeMap::new(),
        ingress_enforced: false,
        egress_enforced: false,
        policy_revision: 0,
        policy_entries: 0,
        status_message: String::new(),
        host_ports: vec![],
    }
}
