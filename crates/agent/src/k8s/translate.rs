//! Kubernetes objects into seta's desired state, without I/O: NetworkPolicy,
//! CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy objects (as the
//! API serves them) into policy documents through the same strict parser
//! as `seta policy import`. A rejected object keeps the version accepted
//! before it (nothing is half-applied) and carries its error until a good
//! version replaces it or it is deleted.
use serde_json::Value;
use seta_core::policy::{parse, PolicyDoc};
use std::collections::BTreeMap;

/// The policy kinds watched (named as their Kubernetes kinds).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyKind {
    NetworkPolicy,
    CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 3] = [Self::NetworkPolicy, Self::CiliumNetworkPolicy, Self::CiliumClusterwideNetworkPolicy];

    pub fn kind(self) -> &'static str {
        match self {
            Self::NetworkPolicy => "NetworkPolicy",
            Self::CiliumNetworkPolicy => "CiliumNetworkPolicy",
            Self::CiliumClusterwideNetworkPolicy => "CiliumClusterwideNetworkPolicy",
        }
    }

    /// (group, version, plural)
    pub fn gvr(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::NetworkPolicy => ("networking.k8s.io", "v1", "networkpolicies"),
            Self::CiliumNetworkPolicy => ("cilium.io", "v2", "ciliumnetworkpolicies"),
            Self::CiliumClusterwideNetworkPolicy => ("cilium.io", "v2", "ciliumclusterwidenetworkpolicies"),
        }
    }

    /// Cilium's kinds carry their per-node status.
    pub fn has_node_status(self) -> bool {
        self != Self::NetworkPolicy
    }
}

/// An object's identity: kind, namespace ("" for cluster-wide), name.
pub type ObjectKey = (PolicyKind, String, String);

/// What became of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// parsed; `changed`: the accepted policy differs from before;
    /// `cleared`: the version before had been refused
    Accepted { changed: bool, cleared: bool },
    /// refused with this message (naming the field path, the value and the
    /// reason); the version accepted before, if any, stays. `new`: not the
    /// error this object already had (so it is reported once)
    Rejected { msg: String, new: bool },
}

#[derive(Debug, Clone, Default)]
struct Entry {
    accepted: Option<PolicyDoc>,
    error: Option<String>,
}

/// Every watched policy object and what it contributes.
#[derive(Debug, Default)]
pub struct PolicySource {
    objects: BTreeMap<ObjectKey, Entry>,
}

/// The key of an object as the API serves it.
pub fn key(kind: PolicyKind, obj: &Value) -> ObjectKey {
    let m = &obj["metadata"];
    (
        kind,
        m["namespace"].as_str().unwrap_or("").to_string(),
        m["name"].as_str().unwrap_or("").to_string(),
    )
}

/// Parse one object of `kind` into its policy document.
pub fn translate(kind: PolicyKind, obj: &Value) -> Result<PolicyDoc, String> {
    let (_, ns, name) = key(kind, obj);
    let what = if ns.is_empty() {
        format!("{} {name}", kind.kind())
    } else {
        format!("{} {ns}/{name}", kind.kind())
    };
    if obj["kind"].as_str() != Some(kind.kind()) {
        return Err(format!("{what}: kind: {:?} is not {}", obj["kind"], kind.kind()));
    }
    // what the policy is (the server's bookkeeping, status and
    // annotations change no rule)
    let mut clean = serde_json::json!({
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": name},
    });
    if !ns.is_empty() {
        clean["metadata"]["namespace"] = ns.clone().into();
    }
    if let Some(l) = obj["metadata"].get("labels") {
        clean["metadata"]["labels"] = l.clone();
    }
    for f in ["spec", "specs"] {
        if let Some(v) = obj.get(f) {
            clean[f] = v.clone();
        }
    }
    let text = serde_json::to_string(&clean).map_err(|e| format!("{what}: {e}"))?;
    let mut docs = parse::parse_file(&text).map_err(|e| format!("{what}: {e}"))?;
    match docs.len() {
        1 => Ok(docs.remove(0)),
        n => Err(format!("{what}: one object gave {n} policies")),
    }
}

impl PolicySource {
    /// An object was added or changed.
    pub fn apply(&mut self, kind: PolicyKind, obj: &Value) -> Outcome {
        let k = key(kind, obj);
        let e = self.objects.entry(k).or_default();
        match translate(kind, obj) {
            Ok(doc) => {
                let changed = e.accepted.as_ref() != Some(&doc);
                e.accepted = Some(doc);
                let cleared = e.error.take().is_some();
                Outcome::Accepted { changed, cleared }
            }
            Err(msg) => {
                let new = e.error.as_ref() != Some(&msg);
                e.error = Some(msg.clone());
                Outcome::Rejected { msg, new }
            }
        }
    }

    /// An object was deleted: true when it contributed a policy.
    pub fn delete(&mut self, kind: PolicyKind, obj: &Value) -> bool {
        self.objects.remove(&key(kind, obj)).is_some_and(|e| e.accepted.is_some())
    }

    /// A full listing of `kind` (a watch's start or restart): objects gone
    /// meanwhile go; each listed one is applied. Returns each listed
    /// object's outcome and whether any accepted policy changed.
    pub fn replace(&mut self, kind: PolicyKind, objs: &[Value]) -> (Vec<(ObjectKey, Outcome)>, bool) {
        let listed: std::collections::BTreeSet<ObjectKey> = objs.iter().map(|o| key(kind, o)).collect();
        let before = self.docs();
        self.objects.retain(|k, _| k.0 != kind || listed.contains(k));
        let outcomes = objs.iter().map(|o| (key(kind, o), self.apply(kind, o))).collect();
        let changed = self.docs() != before;
        (outcomes, changed)
    }

    /// Every accepted policy, by origin.
    pub fn docs(&self) -> Vec<PolicyDoc> {
        let mut d: Vec<PolicyDoc> = self.objects.values().filter_map(|e| e.accepted.clone()).collect();
        d.sort_by(|a, b| a.origin.cmp(&b.origin));
        d
    }

    /// Objects whose last version was refused, with the reason.
    pub fn rejected(&self) -> Vec<(ObjectKey, String)> {
        self.objects
            .iter()
            .filter_map(|(k, e)| e.error.clone().map(|m| (k.clone(), m)))
            .collect()
    }
}

/// A Namespace object's labels.
pub fn namespace_labels(obj: &Value) -> Option<(String, BTreeMap<String, String>)> {
    let name = obj["metadata"]["name"].as_str()?.to_string();
    let labels = obj["metadata"]["labels"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    Some((name, labels))
}

/// What the agent takes from a Pod of its node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodInfo {
    pub uid: String,
    /// `key=value`, sorted
    pub labels: Vec<String>,
    /// named container ports, `name=port/PROTO`
    pub named_ports: Vec<String>,
}

/// A Pod object's (namespace, name) and what the agent takes from it.
pub fn pod_info(obj: &Value) -> Option<((String, String), PodInfo)> {
    let m = &obj["metadata"];
    let key = (m["namespace"].as_str()?.to_string(), m["name"].as_str()?.to_string());
    let labels = m["labels"]
        .as_object()
        .map(|l| l.iter().filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?))).collect())
        .unwrap_or_default();
    let mut named_ports = Vec::new();
    for c in obj["spec"]["containers"].as_array().into_iter().flatten() {
        for p in c["ports"].as_array().into_iter().flatten() {
            if let (Some(name), Some(port)) = (p["name"].as_str(), p["containerPort"].as_u64()) {
                named_ports.push(format!("{name}={port}/{}", p["protocol"].as_str().unwrap_or("TCP")));
            }
        }
    }
    Some((
        key,
        PodInfo {
            uid: m["uid"].as_str().unwrap_or("").to_string(),
            labels,
            named_ports,
        },
    ))
}

/// A CiliumEndpoint status field Cilium leaves unfilled unless told to
/// (`--endpoint-status`), as `kubectl get cep -o wide` shows it.
const STATUS_DISABLED: &str = "<status disabled>";

/// The CiliumEndpoint of an endpoint (Cilium's layout: everything under
/// `status`), owned by its Pod.
pub fn cilium_endpoint(ep: &seta_core::endpoint::Endpoint, pod_uid: &str, node_ip: Option<std::net::Ipv4Addr>) -> Value {
    let named: Vec<Value> = ep
        .named_ports
        .iter()
        .map(|(n, (proto, port))| {
            let p = match proto {
                17 => "UDP",
                132 => "SCTP",
                _ => "TCP",
            };
            serde_json::json!({"name": n, "port": port, "protocol": p})
        })
        .collect();
    serde_json::json!({
        "apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint",
        "metadata": {
            "name": ep.pod_name, "namespace": ep.namespace,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": ep.pod_name, "uid": pod_uid, "blockOwnerDeletion": true}],
        },
        "status": {
            "id": ep.id,
            "identity": {"id": ep.identity, "labels": ep.labels.iter().map(|l| l.to_string()).collect::<Vec<_>>()},
            "networking": {"addressing": [{"ipv4": ep.ipv4.to_string()}], "node": node_ip.map(|i| i.to_string()).unwrap_or_default()},
            "state": if ep.state == seta_core::endpoint::EndpointState::Ready { "ready" } else { "not-ready" },
            "named-ports": named,
            "encryption": {},
            // what Cilium writes without --endpoint-status=policy
            "policy": {
                "ingress": {"enforcing": false, "state": STATUS_DISABLED},
                "egress": {"enforcing": false, "state": STATUS_DISABLED},
            },
            "visibility-policy-status": STATUS_DISABLED,
        },
    })
}
