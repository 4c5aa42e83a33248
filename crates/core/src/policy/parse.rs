//! YAML/JSON → [`PolicyDoc`]s, with errors that name the document, the field
//! path and the reason. Parsing is all-or-nothing: any error rejects the file.
use super::*;
use crate::selector::{Op, Requirement, Selector};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {doc}{what}: {path}: {msg}")]
pub struct PolicyError {
    /// 1-based document number in the file
    pub doc: usize,
    /// " (Kind ns/name)" when known
    pub what: String,
    pub path: String,
    pub msg: String,
}

const NS_LABEL: &str = "io.kubernetes.pod.namespace";
const NS_LABELS_PREFIX: &str = "io.cilium.k8s.namespace.labels.";

// ------------------------------------------------------------------ wire types

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LabelSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<Expr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expr {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    Str(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CnpRule {
    endpoint_selector: Option<LabelSelector>,
    node_selector: Option<Value>,
    ingress: Option<Vec<CnpPeerRule>>,
    ingress_deny: Option<Vec<CnpPeerRule>>,
    egress: Option<Vec<CnpPeerRule>>,
    egress_deny: Option<Vec<CnpPeerRule>>,
    enable_default_deny: Option<DefaultDeny>,
    description: Option<String>,
    labels: Option<Value>,
    log: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DefaultDeny {
    ingress: Option<bool>,
    egress: Option<bool>,
}

/// The union of CNP ingress and egress rule fields; the direction decides
/// which are allowed (checked in `convert`).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CnpPeerRule {
    from_endpoints: Option<Vec<LabelSelector>>,
    to_endpoints: Option<Vec<LabelSelector>>,
    #[serde(rename = "fromCIDR")]
    from_cidr: Option<Vec<String>>,
    #[serde(rename = "toCIDR")]
    to_cidr: Option<Vec<String>>,
    #[serde(rename = "fromCIDRSet")]
    from_cidr_set: Option<Vec<CidrRule>>,
    #[serde(rename = "toCIDRSet")]
    to_cidr_set: Option<Vec<CidrRule>>,
    from_entities: Option<Vec<String>>,
    to_entities: Option<Vec<String>>,
    to_ports: Option<Vec<CnpPortRule>>,
    icmps: Option<Vec<IcmpRule>>,
    // recognised, not supported yet
    #[serde(rename = "toFQDNs")]
    to_fqdns: Option<Value>,
    to_services: Option<Value>,
    from_requires: Option<Value>,
    to_requires: Option<Value>,
    from_groups: Option<Value>,
    to_groups: Option<Value>,
    from_nodes: Option<Value>,
    to_nodes: Option<Value>,
    authentication: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CidrRule {
    cidr: Option<String>,
    #[serde(default)]
    except: Vec<String>,
    cidr_group_ref: Option<Value>,
    cidr_group_selector: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CnpPortRule {
    ports: Option<Vec<CnpPort>>,
    rules: Option<Value>,
    server_names: Option<Value>,
    listener: Option<Value>,
    #[serde(rename = "originatingTLS")]
    originating_tls: Option<Value>,
    #[serde(rename = "terminatingTLS")]
    terminating_tls: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CnpPort {
    port: Option<Value>,
    end_port: Option<Value>,
    protocol: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IcmpRule {
    fields: Vec<IcmpField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IcmpField {
    #[serde(rename = "type")]
    icmp_type: IntOrString,
    family: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KnpSpec {
    pod_selector: LabelSelector,
    policy_types: Option<Vec<String>>,
    ingress: Option<Vec<KnpIngress>>,
    egress: Option<Vec<KnpEgress>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KnpIngress {
    from: Option<Vec<KnpPeer>>,
    ports: Option<Vec<KnpPort>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KnpEgress {
    to: Option<Vec<KnpPeer>>,
    ports: Option<Vec<KnpPort>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KnpPeer {
    pod_selector: Option<LabelSelector>,
    namespace_selector: Option<LabelSelector>,
    ip_block: Option<IpBlock>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IpBlock {
    cidr: String,
    #[serde(default)]
    except: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KnpPort {
    protocol: Option<String>,
    port: Option<Value>,
    end_port: Option<Value>,
}

// ------------------------------------------------------------------ parsing

struct Ctx {
    doc: usize,
    what: String,
    /// a Cilium policy: selector keys may carry a source (`k8s:`, `any:`, `reserved:`)
    cilium: bool,
}

impl Ctx {
    fn err(&self, path: impl Into<String>, msg: impl Into<String>) -> PolicyError {
        PolicyError {
            doc: self.doc,
            what: self.what.clone(),
            path: clip(&path.into()),
            msg: clip(&msg.into()),
        }
    }
}

pub use crate::labels::quote;

/// An error text cut to a readable length: a 1 MB value never makes a 1 MB error.
pub fn clip(s: &str) -> String {
    const MAX: usize = 400;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

/// Top-level fields of a policy object; anything else is an error, as with
/// the API server's strict decoding.
const TOP_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "specs", "status"];
/// Fields of `metadata` (Kubernetes ObjectMeta).
const META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Parse every document of a YAML (or JSON) file. A file without any
/// document is an error: there is nothing to import.
pub fn parse_file(text: &str) -> Result<Vec<PolicyDoc>, PolicyError> {
    parse_file_cancellable(text, None)
}

/// [`parse_file`] that stops when `cancel` is set (the client went away).
pub fn parse_file_cancellable(text: &str, cancel: Option<&std::sync::atomic::AtomicBool>) -> Result<Vec<PolicyDoc>, PolicyError> {
    let values = super::strict::documents(text, cancel).map_err(|e| PolicyError {
        doc: e.doc,
        what: String::new(),
        path: clip(&e.path),
        msg: clip(&e.msg),
    })?;
    if values.is_empty() {
        return Err(PolicyError {
            doc: 1,
            what: String::new(),
            path: "(document)".into(),
            msg: "the input holds no policy document: nothing to import".into(),
        });
    }
    let mut out = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        let doc = i + 1;
        // a `kind: List` wraps several documents
        if v.get("kind").and_then(Value::as_str) == Some("List") {
            let items = match v.get("items") {
                Some(Value::Array(a)) => a.clone(),
                None | Some(Value::Null) => vec![],
                Some(_) => {
                    return Err(PolicyError {
                        doc,
                        what: String::new(),
                        path: "items".into(),
                        msg: "must be a list of policies".into(),
                    })
                }
            };
            for (j, item) in items.into_iter().enumerate() {
                out.push(parse_doc(doc, &item).map_err(|mut e| {
                    e.path = format!("items[{j}].{}", e.path);
                    e
                })?);
            }
            continue;
        }
        out.push(parse_doc(doc, &v)?);
    }
    // the same (kind, namespace, name) twice in one file is ambiguous
    for (i, a) in out.iter().enumerate() {
        if let Some(b) = out[..i].iter().find(|b| b.origin == a.origin) {
            return Err(PolicyError {
                doc: i + 1,
                what: format!(" ({})", a.origin),
                path: "metadata.name".into(),
                msg: format!("{} appears twice in the file", b.origin),
            });
        }
    }
    Ok(out)
}

fn parse_doc(doc: usize, v: &Value) -> Result<PolicyDoc, PolicyError> {
    let mut c = Ctx {
        doc,
        what: String::new(),
        cilium: false,
    };
    if !v.is_object() {
        return Err(c.err("(document)", "must be a mapping with apiVersion, kind, metadata and spec"));
    }
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let kind = match (s("apiVersion"), s("kind")) {
        (Some("networking.k8s.io/v1"), Some("NetworkPolicy")) => Kind::NetworkPolicy,
        (Some("cilium.io/v2"), Some("CiliumNetworkPolicy")) => Kind::CiliumNetworkPolicy,
        (Some("cilium.io/v2"), Some("CiliumClusterwideNetworkPolicy")) => Kind::CiliumClusterwideNetworkPolicy,
        (api, kind) => {
            return Err(c.err(
                "kind",
                format!(
                    "unsupported apiVersion/kind {}/{} (expected networking.k8s.io/v1 NetworkPolicy, cilium.io/v2 CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy)",
                    api.unwrap_or("<missing>"),
                    kind.unwrap_or("<missing>")
                ),
            ))
        }
    };
    c.cilium = kind != Kind::NetworkPolicy;
    for k in v.as_object().into_iter().flat_map(|o| o.keys()) {
        if !TOP_FIELDS.contains(&k.as_str()) || (kind == Kind::NetworkPolicy && k == "specs") {
            return Err(c.err(quote(k), "unknown field (check the spelling; seta does not ignore unknown fields)"));
        }
    }
    let meta = match v.get("metadata") {
        Some(Value::Object(m)) => m,
        Some(other) => return Err(c.err("metadata", format!("must be a mapping, not {}", type_name(other)))),
        None => return Err(c.err("metadata", "is required (metadata.name names the policy)")),
    };
    for k in meta.keys() {
        if !META_FIELDS.contains(&k.as_str()) {
            return Err(c.err(
                format!("metadata.{}", quote(k)),
                "unknown field (check the spelling; seta does not ignore unknown fields)",
            ));
        }
    }
    let name = match meta.get("name") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(c.err("metadata.name", "is required")),
        Some(other) => return Err(c.err("metadata.name", format!("must be a string, not {}", type_name(other)))),
    };
    if !crate::labels::is_dns_subdomain(&name) {
        return Err(c.err(
            "metadata.name",
            format!(
                "{} is not a valid name (lowercase letters, digits, '-' and '.', at most 253)",
                quote(&name)
            ),
        ));
    }
    for field in ["labels", "annotations"] {
        match meta.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, val) in m {
                    let p = format!("metadata.{field}.{}", quote(k));
                    crate::labels::validate_key(k).map_err(|e| c.err(&p, e))?;
                    match val {
                        Value::String(s) if field == "labels" => crate::labels::validate_value(s).map_err(|e| c.err(&p, e))?,
                        Value::String(_) => {}
                        other => return Err(c.err(p, format!("must be a string, not {}", type_name(other)))),
                    }
                }
            }
            Some(other) => return Err(c.err(format!("metadata.{field}"), format!("must be a mapping, not {}", type_name(other)))),
        }
    }
    let ns_field = match meta.get("namespace") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(c.err("metadata.namespace", format!("must be a string, not {}", type_name(other)))),
    };
    let namespace = match kind {
        Kind::CiliumClusterwideNetworkPolicy => {
            if ns_field.is_some() {
                return Err(c.err("metadata.namespace", "a CiliumClusterwideNetworkPolicy is not namespaced"));
            }
            None
        }
        _ => {
            let ns = ns_field.unwrap_or_else(|| "default".to_string());
            if !crate::labels::is_dns_label(&ns) {
                return Err(c.err("metadata.namespace", format!("{} is not a valid namespace name", quote(&ns))));
            }
            Some(ns)
        }
    };
    let origin = Origin {
        kind,
        namespace: namespace.clone(),
        name,
    };
    c.what = format!(" ({origin})");
    let rules = match kind {
        Kind::NetworkPolicy => {
            let spec = v.get("spec").ok_or_else(|| c.err("spec", "is required"))?;
            let k: KnpSpec = typed(&c, "spec", spec)?;
            vec![knp_rule(&c, &origin, k)?]
        }
        _ => {
            let mut specs = Vec::new();
            if let Some(spec) = v.get("spec") {
                specs.push(("spec".to_string(), typed::<CnpRule>(&c, "spec", spec)?));
            }
            if let Some(list) = v.get("specs") {
                let arr = list.as_array().ok_or_else(|| c.err("specs", "must be a list of rules"))?;
                for (i, s) in arr.iter().enumerate() {
                    let p = format!("specs[{i}]");
                    specs.push((p.clone(), typed::<CnpRule>(&c, &p, s)?));
                }
            }
            if specs.is_empty() {
                return Err(c.err("spec", "spec or specs is required"));
            }
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (p, r))| cnp_rule(&c, &origin, i, &p, r))
                .collect::<Result<_, _>>()?
        }
    };
    Ok(PolicyDoc {
        origin,
        rules,
        source: v.clone(),
    })
}

/// "a string", "a number", … for errors about a value of the wrong type.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn typed<T: for<'de> Deserialize<'de>>(c: &Ctx, base: &str, v: &Value) -> Result<T, PolicyError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." {
            base.to_string()
        } else {
            format!("{base}.{inner}")
        };
        let msg = e.inner().to_string();
        let msg = if msg.starts_with("unknown field") {
            format!("{msg} (check the spelling; seta does not ignore unknown fields)")
        } else {
            msg
        };
        c.err(path, msg)
    })
}

fn selector(c: &Ctx, path: &str, ls: &LabelSelector, key_prefix: &str) -> Result<Selector, PolicyError> {
    let mut sel = Selector::all();
    for (k, v) in &ls.match_labels {
        let p = format!("{path}.matchLabels.{}", quote(k));
        check_key(c, &p, k)?;
        crate::labels::validate_value(v).map_err(|e| c.err(&p, e))?;
        sel = sel.with(Selector::eq(&format!("{key_prefix}{k}"), v));
    }
    for (i, e) in ls.match_expressions.iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        check_key(c, &format!("{p}.key"), &e.key)?;
        let op = match e.operator.as_str() {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            o => {
                return Err(c.err(
                    format!("{p}.operator"),
                    format!("{} is not In, NotIn, Exists or DoesNotExist", quote(o)),
                ))
            }
        };
        match op {
            Op::In | Op::NotIn if e.values.is_empty() => {
                return Err(c.err(format!("{p}.values"), format!("{} needs at least one value", e.operator)))
            }
            Op::Exists | Op::DoesNotExist if !e.values.is_empty() => {
                return Err(c.err(format!("{p}.values"), format!("{} takes no values", e.operator)))
            }
            _ => {}
        }
        for (j, v) in e.values.iter().enumerate() {
            crate::labels::validate_value(v).map_err(|m| c.err(format!("{p}.values[{j}]"), m))?;
        }
        sel = sel.with(Requirement {
            key: format!("{key_prefix}{}", e.key),
            op,
            values: e.values.clone(),
        });
    }
    Ok(sel)
}

/// A selector key: a Kubernetes label key; in Cilium policies it may carry a
/// source (`k8s:app`, `any:app`, `reserved:host`).
fn check_key(c: &Ctx, path: &str, k: &str) -> Result<(), PolicyError> {
    let key = match k.split_once(':') {
        Some((src, rest)) if c.cilium && !src.is_empty() && src.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) => {
            if src == "reserved" && !rest.is_empty() {
                return Ok(());
            }
            rest
        }
        _ => k,
    };
    crate::labels::validate_key(key).map_err(|e| c.err(path, e))
}

fn cidr(c: &Ctx, path: &str, s: &str) -> Result<Ipv4Net, PolicyError> {
    if s.contains(':') {
        return Err(c.err(path, format!("{}: IPv6 is not supported yet", quote(s))));
    }
    let (addr, plen) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None if c.cilium => (s, None),
        None => return Err(c.err(path, format!("{} is not a CIDR (a.b.c.d/n)", quote(s)))),
    };
    // each number in plain decimal: "010" is octal to some parsers and decimal to others
    let decimal = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && (t == "0" || !t.starts_with('0'));
    let octets: Vec<&str> = addr.split('.').collect();
    if octets.len() != 4 || !octets.iter().all(|o| decimal(o)) || plen.is_some_and(|p| !decimal(p)) {
        let why = if octets
            .iter()
            .chain(plen.as_ref())
            .any(|t| t.len() > 1 && t.starts_with('0') && t.bytes().all(|b| b.is_ascii_digit()))
        {
            " (leading zeros are not allowed)"
        } else {
            ""
        };
        return Err(c.err(path, format!("{} is not an IPv4 CIDR (a.b.c.d/n){why}", quote(s))));
    }
    let ip: std::net::Ipv4Addr = addr
        .parse()
        .map_err(|_| c.err(path, format!("{} is not an IPv4 address", quote(s))))?;
    let plen: u8 = match plen {
        Some(p) => p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| c.err(path, format!("{}: the prefix length must be 0..32", quote(s))))?,
        None => 32,
    };
    let net = Ipv4Net::new(ip, plen).expect("prefix length checked");
    if net.trunc() != net {
        return Err(c.err(path, format!("{} has host bits set; did you mean {}?", quote(s), net.trunc())));
    }
    Ok(net)
}

fn cidr_with_except(c: &Ctx, path: &str, base: &str, except: &[String]) -> Result<(Ipv4Net, Vec<Ipv4Net>), PolicyError> {
    let net = cidr(c, &format!("{path}.cidr"), base)?;
    let mut ex = Vec::new();
    for (i, e) in except.iter().enumerate() {
        let p = format!("{path}.except[{i}]");
        let en = cidr(c, &p, e)?;
        if !net.contains(&en) || en.prefix_len() <= net.prefix_len() {
            return Err(c.err(p, format!("{en} is not strictly inside {net}")));
        }
        ex.push(en);
    }
    Ok((net, ex))
}

fn protocol(c: &Ctx, path: &str, p: Option<&str>, default: u8, knp: bool) -> Result<u8, PolicyError> {
    let Some(p) = p else { return Ok(default) };
    Ok(match p {
        "TCP" => PROTO_TCP,
        "UDP" => PROTO_UDP,
        "SCTP" => PROTO_SCTP,
        "ICMP" if !knp => PROTO_ICMP,
        "ANY" if !knp => PROTO_ANY,
        other => {
            let allowed = if knp { "TCP, UDP or SCTP" } else { "TCP, UDP, SCTP, ICMP or ANY" };
            return Err(c.err(path, format!("{other:?} is not {allowed}")));
        }
    })
}

/// A port number 1..65535 from a JSON number.
fn port_number(c: &Ctx, path: &str, v: &Value) -> Result<u16, PolicyError> {
    v.as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| c.err(path, format!("{v} is not a port number (1..65535)")))
}

/// A Kubernetes port name (IANA_SVC_NAME): 1..15 lowercase letters, digits
/// and '-', at least one letter, no '-' at either end and no "--".
pub(crate) fn is_iana_svc_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// A Cilium port name (the CRD's pattern): letters, digits and single '-'
/// between them, at least one letter.
fn is_cilium_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_alphabetic())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// A port and its optional end.
/// - NetworkPolicy (as the API server's validation): `port` is a number
///   1..65535 or a port name (IANA_SVC_NAME); absent or null = every port;
///   `endPort` 1..65535 needs a numeric `port` and is not below it.
/// - Cilium policies (as the CRD's schema): `port` is a string, decimal
///   0..65535 ("0" = every port, as Cilium) or a port name; `endPort` a
///   number 0..65535 (0 = none).
fn port(c: &Ctx, path: &str, p: Option<&Value>, end: Option<&Value>) -> Result<Port, PolicyError> {
    let ppath = format!("{path}.port");
    let epath = format!("{path}.endPort");
    let start: Option<u16> = match p {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !c.cilium => {
            if !is_iana_svc_name(s) {
                let why = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'+' || b == b'-') {
                    "; a port number is written without quotes"
                } else {
                    ""
                };
                return Err(c.err(
                    ppath,
                    format!("{} is not a port name (1..15 lowercase letters, digits and '-', with a letter, no '-' at either end or twice in a row){why}", quote(s)),
                ));
            }
            if end.is_some_and(|e| !e.is_null()) {
                return Err(c.err(epath, "endPort cannot be used with a named port"));
            }
            return Ok(Port::Named(s.clone()));
        }
        Some(v @ Value::Number(_)) if !c.cilium => Some(port_number(c, &ppath, v)?),
        Some(Value::String(s)) => {
            if !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()) {
                match s.parse::<u32>() {
                    Ok(0) => None,
                    Ok(n) if n <= 65535 => Some(n as u16),
                    _ => return Err(c.err(ppath, format!("{} is not a port (0..65535; \"0\" means every port)", quote(s)))),
                }
            } else if is_cilium_port_name(s) {
                if end.is_some_and(|e| e.as_u64() != Some(0) && !e.is_null()) {
                    return Err(c.err(epath, "endPort cannot be used with a named port"));
                }
                return Ok(Port::Named(s.to_ascii_lowercase()));
            } else {
                return Err(c.err(
                    ppath,
                    format!(
                        "{} is neither a port number (0..65535) nor a port name (letters, digits and single '-', with a letter)",
                        quote(s)
                    ),
                ));
            }
        }
        Some(Value::Number(n)) => {
            return Err(c.err(ppath, format!("must be a string in a Cilium policy (port: \"{n}\")")));
        }
        Some(other) => return Err(c.err(ppath, format!("must be a port number or name, not {}", type_name(other)))),
    };
    let end: Option<u16> = match end {
        None | Some(Value::Null) => None,
        Some(v) if c.cilium && v.as_u64() == Some(0) => None,
        Some(v @ Value::Number(_)) => Some(port_number(c, &epath, v)?),
        Some(other) => return Err(c.err(epath, format!("must be a port number, not {}", type_name(other)))),
    };
    match (start, end) {
        (None, None) => Ok(Port::Any),
        (None, Some(_)) => Err(c.err(epath, "endPort needs a port")),
        (Some(s), None) => Ok(Port::Range(s, s)),
        (Some(s), Some(e)) => {
            if e < s {
                return Err(c.err(epath, format!("{e} is below port {s}")));
            }
            Ok(Port::Range(s, e))
        }
    }
}

fn icmp_type(c: &Ctx, path: &str, t: &IntOrString) -> Result<u16, PolicyError> {
    const NAMES: &[(&str, u16)] = &[
        ("EchoReply", 0),
        ("DestinationUnreachable", 3),
        ("Redirect", 5),
        ("Echo", 8),
        ("EchoRequest", 8),
        ("RouterAdvertisement", 9),
        ("RouterSelection", 10),
        ("TimeExceeded", 11),
        ("ParameterProblem", 12),
        ("Timestamp", 13),
        ("TimestampReply", 14),
    ];
    match t {
        IntOrString::Int(n) if (0..=255).contains(n) => Ok(*n as u16),
        IntOrString::Str(s) => NAMES
            .iter()
            .find(|(n, _)| n == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| c.err(path, format!("{s:?} is not an ICMPv4 type name"))),
        IntOrString::Int(n) => Err(c.err(path, format!("{n} is not an ICMP type (0..255)"))),
    }
}

fn unsupported(c: &Ctx, path: &str, field: &str, present: bool, what: &str) -> Result<(), PolicyError> {
    if present {
        return Err(c.err(format!("{path}.{field}"), format!("{what} is not supported yet")));
    }
    Ok(())
}

fn ns_scoped(sel: Selector, ns: &Option<String>) -> Selector {
    match ns {
        Some(ns) if !sel.mentions(NS_LABEL) => sel.with(Selector::eq(&format!("k8s:{NS_LABEL}"), ns)),
        _ => sel,
    }
}

/// A requirement key without its source, if the source is `k8s:` or any.
fn k8s_key(key: &str) -> Option<&str> {
    match key.split_once(':') {
        Some(("k8s" | "any", k)) => Some(k),
        Some((src, _)) if !src.is_empty() && !src.contains(['.', '/']) => None,
        _ => Some(key),
    }
}

/// The subject of a namespaced policy always lives in the policy's
/// namespace: a namespace the selector names itself is replaced (as Cilium
/// does, which warns about it).
fn subject_scoped(sel: Selector, ns: &Option<String>) -> Selector {
    match ns {
        Some(ns) => {
            let mut sel = sel;
            sel.reqs.retain(|r| k8s_key(&r.key) != Some(NS_LABEL));
            sel.with(Selector::eq(&format!("k8s:{NS_LABEL}"), ns))
        }
        None => sel,
    }
}

/// A CNP/CCNP peer selector (fromEndpoints/toEndpoints), scoped as Cilium's
/// getEndpointSelector does: selectors on reserved labels and selectors that
/// name a namespace are left alone; a CNP peer that selects on namespace
/// labels (`io.cilium.k8s.namespace.labels.*`) spans namespaces, any other
/// stays in the policy's namespace; a CCNP peer matches only pods (it must
/// carry a namespace label) unless the subject selects initializing pods.
fn peer_scoped(sel: Selector, ns: &Option<String>, subject_init: bool) -> Selector {
    if sel.reqs.iter().any(|r| r.key.starts_with("reserved:")) {
        return sel;
    }
    if sel.reqs.iter().any(|r| k8s_key(&r.key) == Some(NS_LABEL)) {
        return sel;
    }
    match ns {
        None if subject_init => sel,
        None => sel.with(Requirement {
            key: format!("k8s:{NS_LABEL}"),
            op: Op::Exists,
            values: vec![],
        }),
        Some(_)
            if sel
                .reqs
                .iter()
                .any(|r| k8s_key(&r.key).is_some_and(|k| k.starts_with(NS_LABELS_PREFIX))) =>
        {
            sel
        }
        Some(ns) => sel.with(Selector::eq(&format!("k8s:{NS_LABEL}"), ns)),
    }
}

fn cnp_rule(c: &Ctx, origin: &Origin, index: usize, path: &str, r: CnpRule) -> Result<Rule, PolicyError> {
    unsupported(c, path, "nodeSelector", r.node_selector.is_some(), "host policy (nodeSelector)")?;
    let _ = (&r.description, &r.labels, &r.log);
    let es = r
        .endpoint_selector
        .ok_or_else(|| c.err(format!("{path}.endpointSelector"), "is required"))?;
    let raw = selector(c, &format!("{path}.endpointSelector"), &es, "")?;
    let subject_init = raw.reqs.iter().any(|r| r.key == "reserved:init");
    let subject = subject_scoped(raw, &origin.namespace);
    let dd = r.enable_default_deny.unwrap_or(DefaultDeny {
        ingress: None,
        egress: None,
    });
    let mut rule = Rule {
        origin: origin.clone(),
        index,
        subject,
        ingress: vec![],
        ingress_deny: vec![],
        egress: vec![],
        egress_deny: vec![],
        enforce_ingress: false,
        enforce_egress: false,
    };
    let sections = [
        ("ingress", r.ingress, false, false),
        ("ingressDeny", r.ingress_deny, false, true),
        ("egress", r.egress, true, false),
        ("egressDeny", r.egress_deny, true, true),
    ];
    for (name, sec, egress, deny) in sections {
        let Some(list) = sec else { continue };
        let mut out = Vec::new();
        for (i, pr) in list.into_iter().enumerate() {
            out.push(cnp_peer_rule(
                c,
                origin,
                &format!("{path}.{name}[{i}]"),
                pr,
                egress,
                deny,
                subject_init,
            )?);
        }
        match (egress, deny) {
            (false, false) => rule.ingress = out,
            (false, true) => rule.ingress_deny = out,
            (true, false) => rule.egress = out,
            (true, true) => rule.egress_deny = out,
        }
        if egress {
            rule.enforce_egress = dd.egress.unwrap_or(true);
        } else {
            rule.enforce_ingress = dd.ingress.unwrap_or(true);
        }
    }
    Ok(rule)
}

fn cnp_peer_rule(
    c: &Ctx,
    origin: &Origin,
    path: &str,
    r: CnpPeerRule,
    egress: bool,
    deny: bool,
    subject_init: bool,
) -> Result<PeerRule, PolicyError> {
    let d = if egress {
        for (f, present) in [
            ("fromEndpoints", r.from_endpoints.is_some()),
            ("fromCIDR", r.from_cidr.is_some()),
            ("fromCIDRSet", r.from_cidr_set.is_some()),
            ("fromEntities", r.from_entities.is_some()),
        ] {
            if present {
                return Err(c.err(format!("{path}.{f}"), "is an ingress field; egress rules use to* fields"));
            }
        }
        Dir {
            ep_name: "toEndpoints",
            eps: r.to_endpoints,
            cidr_name: "toCIDR",
            cidrs: r.to_cidr,
            set_name: "toCIDRSet",
            sets: r.to_cidr_set,
            ent_name: "toEntities",
            ents: r.to_entities,
        }
    } else {
        for (f, present) in [
            ("toEndpoints", r.to_endpoints.is_some()),
            ("toCIDR", r.to_cidr.is_some()),
            ("toCIDRSet", r.to_cidr_set.is_some()),
            ("toEntities", r.to_entities.is_some()),
        ] {
            if present {
                return Err(c.err(format!("{path}.{f}"), "is an egress field; ingress rules use from* fields"));
            }
        }
        Dir {
            ep_name: "fromEndpoints",
            eps: r.from_endpoints,
            cidr_name: "fromCIDR",
            cidrs: r.from_cidr,
            set_name: "fromCIDRSet",
            sets: r.from_cidr_set,
            ent_name: "fromEntities",
            ents: r.from_entities,
        }
    };
    let Dir {
        ep_name,
        eps: ep_list,
        cidr_name,
        cidrs,
        set_name,
        sets: set_list,
        ent_name,
        ents: ent_list,
    } = d;
    unsupported(c, path, "toFQDNs", r.to_fqdns.is_some(), "toFQDNs (DNS-based policy, L7)")?;
    unsupported(c, path, "toServices", r.to_services.is_some(), "toServices")?;
    unsupported(c, path, "fromRequires", r.from_requires.is_some(), "fromRequires")?;
    unsupported(c, path, "toRequires", r.to_requires.is_some(), "toRequires")?;
    unsupported(c, path, "fromGroups", r.from_groups.is_some(), "fromGroups")?;
    unsupported(c, path, "toGroups", r.to_groups.is_some(), "toGroups")?;
    unsupported(c, path, "fromNodes", r.from_nodes.is_some(), "fromNodes")?;
    unsupported(c, path, "toNodes", r.to_nodes.is_some(), "toNodes")?;
    unsupported(c, path, "authentication", r.authentication.is_some(), "mutual authentication")?;

    let mut peers = Vec::new();
    let mut any_l3 = false;
    if let Some(list) = ep_list {
        any_l3 = true;
        for (i, ls) in list.iter().enumerate() {
            let sel = selector(c, &format!("{path}.{ep_name}[{i}]"), ls, "")?;
            let sel = peer_scoped(sel, &origin.namespace, subject_init);
            peers.push(Peer::Endpoints(sel));
        }
    }
    if let Some(list) = cidrs {
        any_l3 = true;
        for (i, s) in list.iter().enumerate() {
            peers.push(Peer::Cidr {
                cidr: cidr(c, &format!("{path}.{cidr_name}[{i}]"), s)?,
                except: vec![],
            });
        }
    }
    if let Some(list) = set_list {
        any_l3 = true;
        for (i, s) in list.iter().enumerate() {
            let p = format!("{path}.{set_name}[{i}]");
            unsupported(c, &p, "cidrGroupRef", s.cidr_group_ref.is_some(), "CIDR groups")?;
            unsupported(c, &p, "cidrGroupSelector", s.cidr_group_selector.is_some(), "CIDR groups")?;
            let base = s.cidr.as_deref().ok_or_else(|| c.err(format!("{p}.cidr"), "is required"))?;
            let (net, except) = cidr_with_except(c, &p, base, &s.except)?;
            peers.push(Peer::Cidr { cidr: net, except });
        }
    }
    if let Some(list) = ent_list {
        any_l3 = true;
        for (i, e) in list.iter().enumerate() {
            let ent = Entity::parse(e).ok_or_else(|| {
                c.err(
                    format!("{path}.{ent_name}[{i}]"),
                    format!(
                        "{e:?} is not an entity (all, world, cluster, host, remote-node, health, init, unmanaged, kube-apiserver, ingress)"
                    ),
                )
            })?;
            peers.push(Peer::Entity(ent));
        }
    }
    let mut ports = Vec::new();
    if let Some(list) = &r.to_ports {
        for (i, pr) in list.iter().enumerate() {
            let p = format!("{path}.toPorts[{i}]");
            let l7 = pr.rules.is_some()
                || pr.server_names.is_some()
                || pr.listener.is_some()
                || pr.originating_tls.is_some()
                || pr.terminating_tls.is_some();
            if l7 {
                let f = if pr.rules.is_some() {
                    "rules"
                } else if pr.server_names.is_some() {
                    "serverNames"
                } else if pr.listener.is_some() {
                    "listener"
                } else {
                    "originatingTLS/terminatingTLS"
                };
                return Err(c.err(format!("{p}.{f}"), "L7 rules (http, dns, kafka, TLS) are not supported yet"));
            }
            let Some(pl) = &pr.ports else { continue };
            for (j, pp) in pl.iter().enumerate() {
                let q = format!("{p}.ports[{j}]");
                let proto = protocol(c, &format!("{q}.protocol"), pp.protocol.as_deref(), PROTO_ANY, false)?;
                let port = port(c, &q, pp.port.as_ref(), pp.end_port.as_ref())?;
                if proto == PROTO_ICMP && port != Port::Any {
                    return Err(c.err(format!("{q}.port"), "use icmps to select ICMP types"));
                }
                ports.push(L4 { proto, port });
            }
        }
    }
    if let Some(list) = &r.icmps {
        if r.to_ports.is_some() {
            return Err(c.err(format!("{path}.icmps"), "cannot be combined with toPorts in one rule"));
        }
        for (i, ir) in list.iter().enumerate() {
            for (j, f) in ir.fields.iter().enumerate() {
                let q = format!("{path}.icmps[{i}].fields[{j}]");
                if let Some(fam) = &f.family {
                    if fam != "IPv4" {
                        return Err(c.err(format!("{q}.family"), format!("{fam:?}: only IPv4 is supported")));
                    }
                }
                let t = icmp_type(c, &format!("{q}.type"), &f.icmp_type)?;
                ports.push(L4 {
                    proto: PROTO_ICMP,
                    port: Port::Range(t, t),
                });
            }
        }
    }
    if deny && ports.iter().any(|p| matches!(p.port, Port::Named(_))) {
        return Err(c.err(format!("{path}.toPorts"), "named ports are not allowed in deny rules"));
    }
    let any_ports = r.to_ports.is_some() || r.icmps.is_some();
    let peers = if any_l3 {
        Peers::Some(peers)
    } else if any_ports {
        Peers::Any // L4-only rule: from/to anywhere on these ports
    } else {
        Peers::Some(vec![]) // `{}`: selects nothing (but still enforces the direction)
    };
    Ok(PeerRule { peers, ports })
}

/// The L3 fields of one direction of a CNP rule, with their YAML names.
struct Dir {
    ep_name: &'static str,
    eps: Option<Vec<LabelSelector>>,
    cidr_name: &'static str,
    cidrs: Option<Vec<String>>,
    set_name: &'static str,
    sets: Option<Vec<CidrRule>>,
    ent_name: &'static str,
    ents: Option<Vec<String>>,
}

fn knp_rule(c: &Ctx, origin: &Origin, k: KnpSpec) -> Result<Rule, PolicyError> {
    let subject = ns_scoped(selector(c, "spec.podSelector", &k.pod_selector, "")?, &origin.namespace);
    let types: Vec<String> = match &k.policy_types {
        Some(t) => {
            for (i, x) in t.iter().enumerate() {
                if x != "Ingress" && x != "Egress" {
                    return Err(c.err(format!("spec.policyTypes[{i}]"), format!("{} is not Ingress or Egress", quote(x))));
                }
                if t[..i].contains(x) {
                    return Err(c.err(format!("spec.policyTypes[{i}]"), format!("{x} is listed twice")));
                }
            }
            t.clone()
        }
        None => {
            let mut t = vec!["Ingress".to_string()];
            if k.egress.is_some() {
                t.push("Egress".into());
            }
            t
        }
    };
    let mut rule = Rule {
        origin: origin.clone(),
        index: 0,
        subject,
        ingress: vec![],
        ingress_deny: vec![],
        egress: vec![],
        egress_deny: vec![],
        enforce_ingress: types.iter().any(|t| t == "Ingress"),
        enforce_egress: types.iter().any(|t| t == "Egress"),
    };
    let peers_of = |path: &str, list: &Option<Vec<KnpPeer>>| -> Result<Peers, PolicyError> {
        let Some(list) = list else { return Ok(Peers::Any) };
        if list.is_empty() {
            return Ok(Peers::Any);
        }
        let mut out = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let q = format!("{path}[{i}]");
            match (&p.pod_selector, &p.namespace_selector, &p.ip_block) {
                (None, None, Some(ib)) => {
                    let (net, except) = cidr_with_except(c, &format!("{q}.ipBlock"), &ib.cidr, &ib.except)?;
                    out.push(Peer::IpBlock { cidr: net, except });
                }
                (_, _, Some(_)) => {
                    return Err(c.err(
                        format!("{q}.ipBlock"),
                        "ipBlock cannot be combined with podSelector or namespaceSelector",
                    ))
                }
                (None, None, None) => return Err(c.err(q, "a peer needs podSelector, namespaceSelector or ipBlock")),
                (ps, nss, None) => {
                    let mut sel = match ps {
                        Some(ps) => selector(c, &format!("{q}.podSelector"), ps, "")?,
                        None => Selector::all(),
                    };
                    match nss {
                        None => sel = ns_scoped(sel, &origin.namespace),
                        Some(ns) => {
                            let nsel = selector(c, &format!("{q}.namespaceSelector"), ns, NS_LABELS_PREFIX)?;
                            for r in nsel.reqs {
                                sel = sel.with(r);
                            }
                            // only pods (they carry a namespace label)
                            sel = sel.with(Requirement {
                                key: format!("k8s:{NS_LABEL}"),
                                op: Op::Exists,
                                values: vec![],
                            });
                        }
                    }
                    out.push(Peer::Endpoints(sel));
                }
            }
        }
        Ok(Peers::Some(out))
    };
    let ports_of = |path: &str, list: &Option<Vec<KnpPort>>| -> Result<Vec<L4>, PolicyError> {
        let mut out = Vec::new();
        for (i, p) in list.iter().flatten().enumerate() {
            let q = format!("{path}[{i}]");
            let proto = protocol(c, &format!("{q}.protocol"), p.protocol.as_deref(), PROTO_TCP, true)?;
            out.push(L4 {
                proto,
                port: port(c, &q, p.port.as_ref(), p.end_port.as_ref())?,
            });
        }
        Ok(out)
    };
    for (i, r) in k.ingress.iter().flatten().enumerate() {
        let p = format!("spec.ingress[{i}]");
        rule.ingress.push(PeerRule {
            peers: peers_of(&format!("{p}.from"), &r.from)?,
            ports: ports_of(&format!("{p}.ports"), &r.ports)?,
        });
    }
    for (i, r) in k.egress.iter().flatten().enumerate() {
        let p = format!("spec.egress[{i}]");
        rule.egress.push(PeerRule {
            peers: peers_of(&format!("{p}.to"), &r.to)?,
            ports: ports_of(&format!("{p}.ports"), &r.ports)?,
        });
    }
    if !rule.enforce_ingress && !rule.ingress.is_empty() {
        return Err(c.err("spec.ingress", "ingress rules are given but policyTypes does not list Ingress"));
    }
    if !rule.enforce_egress && !rule.egress.is_empty() {
        return Err(c.err("spec.egress", "egress rules are given but policyTypes does not list Egress"));
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(y: &str) -> PolicyError {
        parse_file(y).expect_err("should be rejected")
    }
    const CNP: &str = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: default}\n";
    const KNP: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, namespace: default}\n";

    #[test]
    fn multi_document_files_and_namespacing() {
        let y = format!("{CNP}spec:\n  endpointSelector: {{}}\n---\n{KNP}spec:\n  podSelector: {{}}\n---\n");
        let docs = parse_file(&y).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].origin.namespace.as_deref(), Some("default"));
        assert!(docs[1].rules[0].enforce_ingress && !docs[1].rules[0].enforce_egress);
        let dup = format!("{CNP}spec: {{endpointSelector: {{}}}}\n---\n{CNP}spec: {{endpointSelector: {{}}}}\n");
        assert!(err(&dup).msg.contains("twice"));
        let ccnp = "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: c, namespace: x}\nspec: {endpointSelector: {}}\n";
        assert_eq!(err(ccnp).path, "metadata.namespace");
    }

    /// Which of the given pods (label lists) the first ingress peer selector
    /// of the document's first rule selects.
    fn peer_selects(doc: &str, pods: &[&str]) -> Vec<bool> {
        let docs = parse_file(doc).unwrap();
        let Peers::Some(peers) = &docs[0].rules[0].ingress[0].peers else {
            panic!("peers")
        };
        let Peer::Endpoints(sel) = &peers[0] else { panic!("endpoints") };
        pods.iter()
            .map(|p| sel.matches(&crate::labels::parse_list(p, "k8s").unwrap()))
            .collect()
    }

    #[test]
    fn cnp_peer_namespace_scoping_follows_cilium() {
        let pods = [
            "app=c,io.kubernetes.pod.namespace=default",
            "app=c,io.kubernetes.pod.namespace=prod,io.cilium.k8s.namespace.labels.team=a",
            "app=c,io.kubernetes.pod.namespace=dev,io.cilium.k8s.namespace.labels.team=b",
            "reserved:host",
        ];
        let cnp = |sel: &str| format!("{CNP}spec:\n  endpointSelector: {{}}\n  ingress: [{{fromEndpoints: [{sel}]}}]\n");
        // plain: the policy's namespace
        assert_eq!(peer_selects(&cnp("{matchLabels: {app: c}}"), &pods), [true, false, false, false]);
        // namespace labels, with and without the k8s: source: any namespace
        // whose labels match (bug: used to stay in `default`)
        for key in ["io.cilium.k8s.namespace.labels.team", "\"k8s:io.cilium.k8s.namespace.labels.team\""] {
            assert_eq!(
                peer_selects(&cnp(&format!("{{matchLabels: {{app: c, {key}: a}}}}")), &pods),
                [false, true, false, false],
                "{key}"
            );
        }
        let expr = "{matchExpressions: [{key: io.cilium.k8s.namespace.labels.team, operator: Exists}]}";
        assert_eq!(peer_selects(&cnp(expr), &pods), [false, true, true, false]);
        // an explicit namespace, with and without the source
        for key in ["io.kubernetes.pod.namespace", "\"k8s:io.kubernetes.pod.namespace\""] {
            assert_eq!(
                peer_selects(&cnp(&format!("{{matchLabels: {{{key}: dev}}}}")), &pods),
                [false, false, true, false],
                "{key}"
            );
        }
        // reserved labels are never scoped
        assert_eq!(
            peer_selects(&cnp("{matchLabels: {\"reserved:host\": \"\"}}"), &pods),
            [false, false, false, true]
        );
        // CCNP: any namespace, but only pods
        let ccnp = "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: c}\nspec:\n  endpointSelector: {}\n  ingress: [{fromEndpoints: [{}]}]\n";
        assert_eq!(peer_selects(ccnp, &pods), [true, true, true, false]);
        // the subject always stays in the policy's namespace, even if it names another
        let y = format!("{CNP}spec:\n  endpointSelector: {{matchLabels: {{io.kubernetes.pod.namespace: prod}}}}\n");
        let docs = parse_file(&y).unwrap();
        let subj = &docs[0].rules[0].subject;
        assert!(subj.matches(&crate::labels::parse_list(pods[0], "k8s").unwrap()));
        assert!(!subj.matches(&crate::labels::parse_list(pods[1], "k8s").unwrap()));
    }

    #[test]
    fn errors_name_document_field_and_reason() {
        let e = err(&format!(
            "{CNP}spec:\n  endpointSelector: {{}}\n  ingress:\n  - toPorts: [{{ports: [{{port: \"99999\"}}]}}]\n"
        ));
        assert_eq!(e.doc, 1);
        assert_eq!(e.path, "spec.ingress[0].toPorts[0].ports[0].port");
        assert!(e.msg.contains("99999"), "{e}");
        assert!(
            e.to_string()
                .starts_with("document 1 (CiliumNetworkPolicy default/p): spec.ingress[0]"),
            "{e}"
        );

        let e = err(&format!("{CNP}spec:\n  endpointSelector: {{}}\n  ingres: []\n"));
        assert!(e.msg.contains("unknown field `ingres`"), "{e}");

        let e = err(&format!(
            "{CNP}spec:\n  endpointSelector: {{}}\n  egress:\n  - toFQDNs: [{{matchName: x.com}}]\n"
        ));
        assert_eq!(e.path, "spec.egress[0].toFQDNs");
        assert!(e.msg.contains("not supported yet"));

        let e = err(&format!("{CNP}spec:\n  endpointSelector: {{}}\n  ingress:\n  - toPorts: [{{ports: [{{port: \"80\"}}], rules: {{http: [{{method: GET}}]}}}}]\n"));
        assert_eq!(e.path, "spec.ingress[0].toPorts[0].rules");
        assert!(e.msg.contains("L7"));

        let e = err(&format!(
            "{CNP}spec:\n  endpointSelector: {{}}\n  egress:\n  - fromEndpoints: [{{}}]\n"
        ));
        assert!(e.msg.contains("ingress field"));

        let e = err(&format!(
            "{CNP}spec:\n  endpointSelector: {{}}\n  egress:\n  - toCIDRSet: [{{cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]\n"
        ));
        assert_eq!(e.path, "spec.egress[0].toCIDRSet[0].except[0]");

        let e = err(&format!(
            "{CNP}spec:\n  endpointSelector: {{}}\n  egress:\n  - toCIDR: [10.0.0.1/8]\n"
        ));
        assert!(e.msg.contains("host bits"), "{e}");

        let e = err(&format!(
            "{CNP}spec:\n  endpointSelector: {{}}\n  ingress:\n  - fromEntities: [everyone]\n"
        ));
        assert_eq!(e.path, "spec.ingress[0].fromEntities[0]");

        let e = err(&format!(
            "{CNP}spec:\n  endpointSelector: {{matchExpressions: [{{key: a, operator: Equals, values: [b]}}]}}\n"
        ));
        assert_eq!(e.path, "spec.endpointSelector.matchExpressions[0].operator");

        let e = err(&format!(
            "{KNP}spec:\n  podSelector: {{}}\n  ingress:\n  - ports: [{{protocol: ICMP}}]\n"
        ));
        assert_eq!(e.path, "spec.ingress[0].ports[0].protocol");

        let e = err(&format!(
            "{KNP}spec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  ingress: [{{}}]\n"
        ));
        assert_eq!(e.path, "spec.ingress");

        let e = err(&format!(
            "{KNP}spec:\n  podSelector: {{}}\n  ingress:\n  - ports: [{{port: 90, endPort: 80}}]\n"
        ));
        assert_eq!(e.path, "spec.ingress[0].ports[0].endPort");

        let e = err("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n");
        assert_eq!(e.path, "kind");
        let e = err(&format!(
            "{KNP}spec:\n  podSelector: {{}}\n---\n{CNP}spec:\n  endpointSelector: 3\n"
        ));
        assert_eq!(e.doc, 2, "the second document is named");
        assert!(err("a: [unclosed").msg.contains("YAML"));
    }

    #[test]
    fn protocols_ports_and_icmp() {
        let y = format!(
            "{CNP}spec:\n  endpointSelector: {{}}\n  ingress:\n  - toPorts: [{{ports: [{{port: \"80\", protocol: TCP}}, {{port: \"53\", protocol: UDP}}, {{port: \"9\", protocol: SCTP}}, {{port: http}}, {{port: \"8000\", endPort: 8100, protocol: ANY}}]}}]\n  - icmps: [{{fields: [{{type: 8, family: IPv4}}, {{type: EchoReply}}]}}]\n"
        );
        let d = parse_file(&y).unwrap();
        let r = &d[0].rules[0].ingress;
        assert_eq!(r[0].peers, Peers::Any);
        assert_eq!(r[0].ports.len(), 5);
        assert_eq!(r[0].ports[3].port, Port::Named("http".into()));
        assert_eq!(
            r[1].ports,
            vec![
                L4 {
                    proto: PROTO_ICMP,
                    port: Port::Range(8, 8)
                },
                L4 {
                    proto: PROTO_ICMP,
                    port: Port::Range(0, 0)
                }
            ]
        );
    }
}
