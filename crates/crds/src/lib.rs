//! Cilium's `cilium.io/v2` CustomResourceDefinitions as seta installs them
//! (`deploy/crds.yaml`): the Rust types of what seta reads and writes in
//! them, and the CRDs generated from those types (structural OpenAPI v3
//! schemas through schemars and kube's rewriter). A policy's `spec` is kept
//! open (`x-kubernetes-preserve-unknown-fields`): the agent's strict parser
//! checks it and reports errors in the object's status, as Cilium's agent
//! does.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `status.nodes.<node>` of a CNP or CCNP: what each agent made of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyNodeStatus {
    /// the policy was accepted
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// the agent enforces it
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcing: Option<bool>,
    /// why it was refused: field path, value and reason
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_policy_revision: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct PolicyStatus {
    /// per node name
    #[serde(default)]
    pub nodes: BTreeMap<String, PolicyNodeStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct EndpointIdentity {
    pub id: i64,
    #[serde(default)]
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct AddressPair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct EndpointNetworking {
    pub addressing: Vec<AddressPair>,
    /// the node's address
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct NamedPort {
    pub name: String,
    pub port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Encryption {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<i64>,
}

/// One direction of a CiliumEndpoint's policy status. Without Cilium's
/// `--endpoint-status=policy` (seta has none) the state is
/// `<status disabled>`, which `kubectl get cep -o wide` prints.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct EndpointPolicyDirection {
    #[serde(default)]
    pub enforcing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct EndpointPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<EndpointPolicyDirection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<EndpointPolicyDirection>,
}

/// A CiliumEndpoint's `status` (Cilium keeps everything there).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct EndpointStatus {
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<EndpointIdentity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<EndpointNetworking>,
    /// ready, not-ready, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(rename = "named-ports", default)]
    pub named_ports: Vec<NamedPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<EndpointPolicy>,
    #[serde(rename = "visibility-policy-status", default, skip_serializing_if = "Option::is_none")]
    pub visibility_policy_status: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct NodeAddress {
    /// InternalIP, ExternalIP, CiliumInternalIP
    #[serde(rename = "type")]
    pub kind: String,
    pub ip: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeIpamSpec {
    /// the pod CIDRs the operator gave the node (cluster-pool IPAM)
    #[serde(default)]
    pub pod_cidrs: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct NodeSpec {
    #[serde(default)]
    pub addresses: Vec<NodeAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<NodeIpamSpec>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct NodeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<BTreeMap<String, String>>,
}

/// The structural OpenAPI v3 schema of `T`.
fn schema_of<T: JsonSchema>() -> Value {
    let mut gen = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .into_generator();
    let mut v = gen.root_schema_for::<T>().to_value();
    if let Some(m) = v.as_object_mut() {
        m.remove("title");
        m.remove("$schema");
    }
    v
}

/// A property left to the agent's validation.
fn open_object(description: &str) -> Value {
    json!({"type": "object", "description": description, "x-kubernetes-preserve-unknown-fields": true})
}

struct Kind {
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    status_subresource: bool,
    properties: Value,
    columns: Value,
}

fn crd(k: &Kind) -> Value {
    let mut props = json!({
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
    });
    for (name, schema) in k.properties.as_object().expect("properties") {
        props[name] = schema.clone();
    }
    let mut version = json!({
        "name": "v2", "served": true, "storage": true,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": props, "required": ["metadata"]}},
        "additionalPrinterColumns": k.columns,
    });
    if k.status_subresource {
        version["subresources"] = json!({"status": {}});
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.cilium.io", k.plural), "labels": {"io.cilium/app": "seta"}},
        "spec": {
            "group": "cilium.io",
            "names": {"kind": k.kind, "listKind": format!("{}List", k.kind), "plural": k.plural, "singular": k.singular,
                      "shortNames": k.short, "categories": ["cilium"]},
            "scope": if k.namespaced { "Namespaced" } else { "Cluster" },
            "versions": [version],
        },
    })
}

/// Every CRD, in a stable order.
pub fn crds() -> Vec<Value> {
    let policy = |kind, plural, singular, short: &'static [&'static str], namespaced| Kind {
        kind,
        plural,
        singular,
        short,
        namespaced,
        status_subresource: true,
        properties: json!({
            "spec": open_object("the policy rule (Cilium's policy language), checked by every agent"),
            "specs": {"type": "array", "items": open_object("a policy rule"), "description": "several rules"},
            "status": schema_of::<PolicyStatus>(),
        }),
        columns: json!([{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]),
    };
    let kinds = [
        policy(
            "CiliumNetworkPolicy",
            "ciliumnetworkpolicies",
            "ciliumnetworkpolicy",
            &["cnp", "ciliumnp"],
            true,
        ),
        policy(
            "CiliumClusterwideNetworkPolicy",
            "ciliumclusterwidenetworkpolicies",
            "ciliumclusterwidenetworkpolicy",
            &["ccnp"],
            false,
        ),
        Kind {
            kind: "CiliumEndpoint",
            plural: "ciliumendpoints",
            singular: "ciliumendpoint",
            short: &["cep", "ciliumep"],
            namespaced: true,
            status_subresource: false,
            properties: json!({"status": schema_of::<EndpointStatus>()}),
            columns: json!([
                {"name": "Security Identity", "type": "integer", "jsonPath": ".status.identity.id"},
                {"name": "Ingress Enforcement", "type": "string", "jsonPath": ".status.policy.ingress.state", "priority": 1},
                {"name": "Egress Enforcement", "type": "string", "jsonPath": ".status.policy.egress.state", "priority": 1},
                {"name": "Visibility Policy", "type": "string", "jsonPath": ".status.visibility-policy-status", "priority": 1},
                {"name": "Endpoint State", "type": "string", "jsonPath": ".status.state"},
                {"name": "IPv4", "type": "string", "jsonPath": ".status.networking.addressing[0].ipv4"},
                {"name": "IPv6", "type": "string", "jsonPath": ".status.networking.addressing[0].ipv6"},
            ]),
        },
        Kind {
            kind: "CiliumIdentity",
            plural: "ciliumidentities",
            singular: "ciliumidentity",
            short: &["ciliumid"],
            namespaced: false,
            status_subresource: false,
            properties: json!({"security-labels": {"type": "object", "additionalProperties": {"type": "string"},
                                                   "description": "the identity's labels (source:key -> value)"}}),
            columns: json!([
                {"name": "Namespace", "type": "string", "jsonPath": ".metadata.labels.io\\.kubernetes\\.pod\\.namespace"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ]),
        },
        Kind {
            kind: "CiliumNode",
            plural: "ciliumnodes",
            singular: "ciliumnode",
            short: &["cn", "ciliumn"],
            namespaced: false,
            status_subresource: true,
            properties: json!({"spec": schema_of::<NodeSpec>(), "status": schema_of::<NodeStatus>()}),
            columns: json!([
                {"name": "CiliumInternalIP", "type": "string", "jsonPath": ".spec.addresses[?(@.type==\"CiliumInternalIP\")].ip"},
                {"name": "InternalIP", "type": "string", "jsonPath": ".spec.addresses[?(@.type==\"InternalIP\")].ip"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ]),
        },
    ];
    kinds.iter().map(crd).collect()
}

/// `deploy/crds.yaml`: every CRD as a YAML document.
pub fn yaml() -> String {
    let mut out = String::from("# Generated by `cargo run -p seta-crds > deploy/crds.yaml`; do not edit.\n");
    for c in crds() {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&c).expect("a CRD serializes"));
    }
    out
}
