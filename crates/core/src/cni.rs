//! The CNI protocol (spec 0.3.1 .. 1.1.0) as pure data: environment and
//! network-config parsing, validation, error codes and version-specific results.
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.1", "0.4.0", "1.0.0", "1.1.0"];
pub const PLUGIN_TYPE: &str = "seta-cni";

/// Error codes from the CNI spec.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_NETCONF: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    pub const LIMITED_CONNECTIVITY: u32 = 51;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }
    pub fn with_details(mut self, d: impl Into<String>) -> Self {
        self.details = d.into();
        self
    }
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({"cniVersion": version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = json!(self.details);
        }
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Result<Self, CniError> {
        Ok(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "VERSION" => Self::Version,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            "" => return Err(CniError::new(code::INVALID_ENV, "CNI_COMMAND is not set")),
            other => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("CNI_COMMAND={other:?} is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"),
                ))
            }
        })
    }
}

/// The CNI_* environment a runtime sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: BTreeMap<String, String>,
    pub path: String,
}

/// Read and validate the environment for `cmd`. `get` abstracts `std::env::var`.
pub fn parse_env(cmd: Command, get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
    let need = |name: &str| -> Result<String, CniError> {
        match get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(CniError::new(
                code::INVALID_ENV,
                format!("{name} is required for this command but not set"),
            )),
        }
    };
    let mut env = Env {
        path: get("CNI_PATH").unwrap_or_default(),
        ..Default::default()
    };
    match cmd {
        Command::Add | Command::Check => {
            env.container_id = need("CNI_CONTAINERID")?;
            env.netns = need("CNI_NETNS")?;
            env.ifname = need("CNI_IFNAME")?;
        }
        Command::Del => {
            env.container_id = need("CNI_CONTAINERID")?;
            env.ifname = need("CNI_IFNAME")?;
            env.netns = get("CNI_NETNS").unwrap_or_default();
        }
        Command::Version | Command::Status | Command::Gc => {}
    }
    if !env.ifname.is_empty() && !valid_ifname(&env.ifname) {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!(
                "CNI_IFNAME={:?} is not a valid interface name (1..15 chars, no '/', ':' or whitespace)",
                env.ifname
            ),
        ));
    }
    if !env.container_id.is_empty() && !env.container_id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!(
                "CNI_CONTAINERID={:?} may only contain letters, digits, '_', '.' and '-'",
                env.container_id
            ),
        ));
    }
    env.args = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
    Ok(env)
}

pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty() && s.len() <= 15 && s != "." && s != ".." && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// Keys seta understands in CNI_ARGS.
pub const KNOWN_ARGS: &[&str] = &[
    "IgnoreUnknown",
    "K8S_POD_NAME",
    "K8S_POD_NAMESPACE",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
    "SETA_LABELS",
    "SETA_PORTS",
];

/// `CNI_ARGS` is `K=V;K2=V2`. Unknown keys are an error unless `IgnoreUnknown=1|true`.
pub fn parse_args(s: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for part in s.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| CniError::new(code::INVALID_ENV, format!("CNI_ARGS: {part:?} is not KEY=VALUE")))?;
        out.insert(k.to_string(), v.to_string());
    }
    let ignore = matches!(
        out.get("IgnoreUnknown").map(|s| s.to_ascii_lowercase()).as_deref(),
        Some("1" | "true")
    );
    if !ignore {
        if let Some(k) = out.keys().find(|k| !KNOWN_ARGS.contains(&k.as_str())) {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!(
                    "CNI_ARGS: unknown key {k:?} (known: {}; set IgnoreUnknown=1 to ignore)",
                    KNOWN_ARGS.join(", ")
                ),
            ));
        }
    }
    // labels and the namespace as Kubernetes would accept them, checked before anything changes
    if let Some(ns) = out.get("K8S_POD_NAMESPACE") {
        if !crate::labels::is_dns_label(ns) {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!(
                    "CNI_ARGS: K8S_POD_NAMESPACE {} is not a valid namespace name",
                    crate::labels::quote(ns)
                ),
            ));
        }
    }
    if let Some(l) = out.get("SETA_LABELS") {
        for (i, part) in l.split(',').filter(|p| !p.is_empty()).enumerate() {
            crate::labels::Label::parse(part, "k8s")
                .map_err(|e| CniError::new(code::INVALID_ENV, format!("CNI_ARGS: SETA_LABELS[{i}]: {e}")))?;
        }
    }
    Ok(out)
}

/// seta's network configuration (one entry of a conflist, with the runtime's additions).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// Agent API socket of this node.
    #[serde(rename = "agent-socket")]
    pub agent_socket: String,
    /// Where DEL requests wait while the agent is down.
    #[serde(rename = "delete-queue-dir", default)]
    pub delete_queue_dir: Option<String>,
    #[serde(rename = "log-file", default)]
    pub log_file: Option<String>,
    /// The agent's NodePort range (`MIN-MAX`, its `--node-port-range`): no
    /// hostPort may be inside it. Absent: the default 30000-32767.
    #[serde(rename = "node-port-range", default)]
    pub node_port_range: Option<String>,
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Keys a runtime may add that seta accepts and ignores.
const IGNORED_KEYS: &[&str] = &["args", "capabilities", "dns", "ipam", "ipMasq", "mtu", "disableCheck", "disableGC"];

pub fn parse_netconf(stdin: &[u8]) -> Result<NetConf, CniError> {
    let raw: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            code::DECODE_FAILURE,
            format!("network configuration on stdin is not valid JSON: {e}"),
        )
    })?;
    if !raw.is_object() {
        return Err(CniError::new(code::DECODE_FAILURE, "network configuration must be a JSON object"));
    }
    for (field, what) in [
        ("cniVersion", "the spec version"),
        ("name", "the network name"),
        ("type", "the plugin type"),
    ] {
        match raw.get(field) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(other) => {
                return Err(CniError::new(
                    code::INVALID_NETCONF,
                    format!("network config field {field:?} must be a non-empty string ({what}), got {other}"),
                ))
            }
            None => {
                return Err(CniError::new(
                    code::INVALID_NETCONF,
                    format!("network config field {field:?} ({what}) is missing"),
                ))
            }
        }
    }
    let version = raw["cniVersion"].as_str().unwrap_or_default();
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {version:?} is not supported; supported: {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    match raw.get("agent-socket") {
        Some(Value::String(s)) if s.starts_with('/') => {}
        Some(v) => {
            return Err(CniError::new(
                code::INVALID_NETCONF,
                format!("network config field \"agent-socket\" must be an absolute path, got {v}"),
            ))
        }
        None => {
            return Err(CniError::new(
                code::INVALID_NETCONF,
                "network config field \"agent-socket\" (the agent's API socket) is missing",
            ))
        }
    }
    let conf: NetConf =
        serde_json::from_value(raw).map_err(|e| CniError::new(code::INVALID_NETCONF, format!("network configuration: {e}")))?;
    if let Some(k) = conf.extra.keys().find(|k| !IGNORED_KEYS.contains(&k.as_str())) {
        return Err(CniError::new(
            code::UNSUPPORTED_FIELD,
            format!("network config field {k:?} is not supported by seta-cni"),
        ));
    }
    conf.node_port_range()?;
    Ok(conf)
}

impl NetConf {
    /// `node-port-range`, or the default.
    pub fn node_port_range(&self) -> Result<crate::service::NodePortRange, CniError> {
        match &self.node_port_range {
            None => Ok(Default::default()),
            Some(r) => r
                .parse()
                .map_err(|e| CniError::new(code::INVALID_NETCONF, format!("network config field \"node-port-range\": {e}"))),
        }
    }
}

/// Is `v` at least `min` (dotted numeric comparison)?
pub fn version_at_least(v: &str, min: &str) -> bool {
    let p = |s: &str| s.split('.').map(|x| x.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>();
    p(v) >= p(min)
}

pub fn version_result(conf_version: Option<&str>) -> Value {
    json!({"cniVersion": conf_version.unwrap_or("1.1.0"), "supportedVersions": SUPPORTED_VERSIONS})
}

/// Everything ADD produced, independent of the result format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOutcome {
    pub host_ifname: String,
    pub host_mac: String,
    pub ifname: String,
    pub mac: String,
    pub sandbox: String,
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
}

/// The ADD result in the format of `version`.
pub fn add_result(version: &str, o: &AddOutcome) -> Value {
    let mut ip = json!({"address": format!("{}/32", o.ip), "gateway": o.gateway.to_string(), "interface": 1});
    if !version_at_least(version, "1.0.0") {
        ip["version"] = json!("4");
    }
    json!({
        "cniVersion": version,
        "interfaces": [
            {"name": o.host_ifname, "mac": o.host_mac},
            {"name": o.ifname, "mac": o.mac, "sandbox": o.sandbox},
        ],
        "ips": [ip],
        "routes": [{"dst": "0.0.0.0/0", "gw": o.gateway.to_string()}],
        "dns": {},
    })
}

/// Named ports from CNI_ARGS `SETA_PORTS=http=8080/TCP,dns=53/UDP`.
pub fn ports_from_args(args: &BTreeMap<String, String>) -> Vec<String> {
    args.get("SETA_PORTS")
        .map(|p| p.split(',').filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default()
}

/// Labels for the endpoint from CNI_ARGS: namespace and `SETA_LABELS=k=v,k2=v2`.
pub fn labels_from_args(args: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(ns) = args.get("K8S_POD_NAMESPACE") {
        out.push(format!("k8s:io.kubernetes.pod.namespace={ns}"));
    }
    if let Some(l) = args.get("SETA_LABELS") {
        out.extend(l.split(',').filter(|s| !s.is_empty()).map(String::from));
    }
    out
}

/// The runtime's `runtimeConfig.portMappings` (the `portMappings`
/// capability): hostPorts seta serves in eBPF. IPv6 host addresses are
/// skipped (seta is IPv4); anything else that is not a valid mapping is an
/// error naming the field, before anything is created.
pub fn port_mappings(conf: &NetConf) -> Result<Vec<crate::service::HostPort>, CniError> {
    use crate::service::{HostPort, Proto};
    let range = conf.node_port_range()?;
    let Some(list) = conf.runtime_config.as_ref().and_then(|r| r.get("portMappings")) else {
        return Ok(vec![]);
    };
    let bad = |m: String| CniError::new(code::INVALID_NETCONF, m);
    let list = list
        .as_array()
        .ok_or_else(|| bad(format!("runtimeConfig.portMappings: {list}: must be a list")))?;
    let mut out: Vec<HostPort> = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let field = |f: &str| format!("runtimeConfig.portMappings[{i}].{f}");
        let port = |f: &str| -> Result<u16, CniError> {
            match m.get(f).and_then(Value::as_u64) {
                Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
                _ => Err(bad(format!(
                    "{}: {}: must be a port 1..65535",
                    field(f),
                    m.get(f).unwrap_or(&Value::Null)
                ))),
            }
        };
        let (host_port, container_port) = (port("hostPort")?, port("containerPort")?);
        let protocol = match m.get("protocol").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("tcp") => Proto::Tcp,
            Some("udp") => Proto::Udp,
            Some("sctp") => Proto::Sctp,
            Some(p) => return Err(bad(format!("{}: {p:?}: must be tcp, udp or sctp", field("protocol")))),
        };
        let host_ip = match m.get("hostIP").and_then(Value::as_str).unwrap_or("") {
            "" | "0.0.0.0" => None,
            a => match a.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(v4)) => Some(v4),
                Ok(std::net::IpAddr::V6(_)) => continue,
                Err(_) => return Err(bad(format!("{}: {a:?}: not an IP address", field("hostIP")))),
            },
        };
        if range.contains(host_port) {
            return Err(bad(format!(
                "{}: {host_port}: inside the NodePort range {range}",
                field("hostPort")
            )));
        }
        let hp = HostPort {
            host_port,
            container_port,
            protocol,
            host_ip,
        };
        if out
            .iter()
            .any(|o| o.host_port == host_port && o.protocol == protocol && o.host_ip == host_ip)
        {
            return Err(bad(format!("{}: {host_port}/{protocol} is mapped twice", field("hostPort"))));
        }
        out.push(hp);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn env_validation() {
        let e = parse_env(Command::Add, env_of(&[("CNI_CONTAINERID", "c1"), ("CNI_NETNS", "/run/netns/x")])).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(e.msg.contains("CNI_IFNAME"));
        let ok = parse_env(
            Command::Add,
            env_of(&[
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", "/n"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=x;FOO=bar"),
            ]),
        )
        .unwrap();
        assert_eq!(ok.args["K8S_POD_NAME"], "x");
        // DEL without netns is fine
        assert!(parse_env(Command::Del, env_of(&[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")])).is_ok());
        assert_eq!(
            parse_env(Command::Del, env_of(&[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "a/b")]))
                .unwrap_err()
                .code,
            code::INVALID_ENV
        );
        assert_eq!(parse_args("FOO=1").unwrap_err().code, code::INVALID_ENV);
        assert_eq!(parse_args("novalue").unwrap_err().code, code::INVALID_ENV);
        assert_eq!(Command::parse("FOO").unwrap_err().code, code::INVALID_ENV);
    }

    #[test]
    fn netconf_validation() {
        let good = br#"{"cniVersion":"1.0.0","name":"seta","type":"seta-cni","agent-socket":"/run/seta/n/agent.sock"}"#;
        assert_eq!(parse_netconf(good).unwrap().name, "seta");
        assert_eq!(parse_netconf(b"{nope").unwrap_err().code, code::DECODE_FAILURE);
        let bad_ver = br#"{"cniVersion":"0.2.0","name":"seta","type":"seta-cni","agent-socket":"/s"}"#;
        assert_eq!(parse_netconf(bad_ver).unwrap_err().code, code::INCOMPATIBLE_VERSION);
        let no_name = br#"{"cniVersion":"1.0.0","type":"seta-cni","agent-socket":"/s"}"#;
        let e = parse_netconf(no_name).unwrap_err();
        assert_eq!(e.code, code::INVALID_NETCONF);
        assert!(e.msg.contains("\"name\""));
        let rel = br#"{"cniVersion":"1.0.0","name":"s","type":"seta-cni","agent-socket":"rel"}"#;
        assert_eq!(parse_netconf(rel).unwrap_err().code, code::INVALID_NETCONF);
        let extra = br#"{"cniVersion":"1.0.0","name":"s","type":"seta-cni","agent-socket":"/s","bogus":1}"#;
        assert_eq!(parse_netconf(extra).unwrap_err().code, code::UNSUPPORTED_FIELD);
    }

    #[test]
    fn results_per_version() {
        let o = AddOutcome {
            host_ifname: "lxc1".into(),
            host_mac: "aa:aa:aa:aa:aa:aa".into(),
            ifname: "eth0".into(),
            mac: "bb:bb:bb:bb:bb:bb".into(),
            sandbox: "/run/netns/p".into(),
            ip: "10.0.0.5".parse().unwrap(),
            gateway: "10.0.0.1".parse().unwrap(),
        };
        let old = add_result("0.3.1", &o);
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["cniVersion"], "0.3.1");
        let new = add_result("1.1.0", &o);
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["ips"][0]["address"], "10.0.0.5/32");
        assert_eq!(new["interfaces"][1]["sandbox"], "/run/netns/p");
        assert!(version_at_least("1.1.0", "1.0.0") && !version_at_least("0.4.0", "1.0.0"));
    }

    #[test]
    fn labels() {
        let a = parse_args("K8S_POD_NAMESPACE=prod;SETA_LABELS=app=web,tier=fe").unwrap();
        assert_eq!(
            labels_from_args(&a),
            vec!["k8s:io.kubernetes.pod.namespace=prod", "app=web", "tier=fe"]
        );
    }
}

#[cfg(test)]
mod port_mapping_tests {
    use super::*;
    use crate::service::{HostPort, Proto};

    fn conf(pm: Value) -> NetConf {
        parse_netconf(
            json!({"cniVersion": "1.0.0", "name": "seta", "type": "seta-cni", "agent-socket": "/x", "runtimeConfig": {"portMappings": pm}})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    }

    /// The agent writes its `--node-port-range` into the conflist: a
    /// hostPort inside that range is refused before anything is created,
    /// one outside it (but inside the default range) is taken; a bad range
    /// is an error naming the field.
    #[test]
    fn host_ports_stay_out_of_the_agents_node_port_range() {
        let with = |range: &str, host_port: u16| {
            parse_netconf(
                json!({"cniVersion": "1.0.0", "name": "seta", "type": "seta-cni", "agent-socket": "/x", "node-port-range": range,
                       "runtimeConfig": {"portMappings": [{"hostPort": host_port, "containerPort": 80}]}})
                .to_string()
                .as_bytes(),
            )
            .and_then(|c| port_mappings(&c))
        };
        let e = port_mappings(&conf(json!([{"hostPort": 31000, "containerPort": 80}]))).unwrap_err();
        assert!(
            e.msg
                .contains("portMappings[0].hostPort: 31000: inside the NodePort range 30000-32767"),
            "{}",
            e.msg
        );
        assert_eq!(with("20000-29999", 31000).unwrap()[0].host_port, 31000);
        let e = with("20000-29999", 25000).unwrap_err();
        assert!(e.msg.contains("25000: inside the NodePort range 20000-29999"), "{}", e.msg);
        let e = with("29999-20000", 25000).unwrap_err();
        assert_eq!(e.code, code::INVALID_NETCONF);
        assert!(e.msg.contains("\"node-port-range\""), "{}", e.msg);
    }

    #[test]
    fn port_mappings_as_runtimes_send_them() {
        let got = port_mappings(&conf(json!([
            {"hostPort": 18080, "containerPort": 8080, "protocol": "tcp", "hostIP": ""},
            {"hostPort": 5353, "containerPort": 53, "protocol": "UDP"},
            {"hostPort": 9000, "containerPort": 9000, "protocol": "tcp", "hostIP": "::"},
            {"hostPort": 9001, "containerPort": 9001, "hostIP": "192.0.2.7"}
        ])))
        .unwrap();
        assert_eq!(
            got,
            [
                HostPort {
                    host_port: 18080,
                    container_port: 8080,
                    protocol: Proto::Tcp,
                    host_ip: None
                },
                HostPort {
                    host_port: 5353,
                    container_port: 53,
                    protocol: Proto::Udp,
                    host_ip: None
                },
                HostPort {
                    host_port: 9001,
                    container_port: 9001,
                    protocol: Proto::Tcp,
                    host_ip: Some("192.0.2.7".parse().unwrap())
                },
            ]
        );
        assert!(
            port_mappings(&parse_netconf(br#"{"cniVersion":"1.0.0","name":"n","type":"seta-cni","agent-socket":"/x"}"#).unwrap())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_port_mappings_name_the_field() {
        for (pm, want) in [
            (
                json!([{"hostPort": 0, "containerPort": 80}]),
                "runtimeConfig.portMappings[0].hostPort: 0: must be a port",
            ),
            (
                json!([{"hostPort": 80, "containerPort": 70000}]),
                "portMappings[0].containerPort: 70000",
            ),
            (
                json!([{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]),
                "portMappings[0].protocol: \"icmp\"",
            ),
            (
                json!([{"hostPort": 30080, "containerPort": 80}]),
                "30080: inside the NodePort range",
            ),
            (
                json!([{"hostPort": 80, "containerPort": 80, "hostIP": "nope"}]),
                "portMappings[0].hostIP",
            ),
            (
                json!([{"hostPort": 80, "containerPort": 80}, {"hostPort": 80, "containerPort": 81}]),
                "portMappings[1].hostPort: 80/TCP is mapped twice",
            ),
            (json!({"hostPort": 80}), "runtimeConfig.portMappings: "),
        ] {
            let e = port_mappings(&conf(pm)).unwrap_err();
            assert_eq!(e.code, code::INVALID_NETCONF);
            assert!(e.msg.contains(want), "{} does not contain {want}", e.msg);
        }
    }
}
