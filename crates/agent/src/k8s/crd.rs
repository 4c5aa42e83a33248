//! Cilium's CRD mode (`--identity-allocation-mode crd`, the default under
//! Kubernetes): what agents share lives in the API, not in a kvstore.
//! - Identities are `CiliumIdentity` objects named by their number, with
//!   `security-labels`.
//! - Pod IPs come from the `CiliumEndpoint`s every agent writes (address,
//!   identity, node IP).
//! - Nodes are `CiliumNode`s: each agent writes its own (addresses, pod
//!   CIDR, boot id, health address) and watches the others'.
//!
//! The watches are translated into the kvstore reflector's updates, with the
//! same keys and values, so the cluster subsystem consumes them unchanged.
//! The translation is pure (`identity_entry`, `ip_entry`, `node_entry`,
//! `cilium_identity`, `cilium_node`) and tested without an API.
use serde_json::{json, Value};
use seta_core::identity::{MAX_ALLOCATED, MIN_ALLOCATED};
use seta_core::labels::{labels_key, Label, LabelSet};
use seta_kvstore::ipcache::IpEntry;
use seta_kvstore::nodes::NodeInfo;
use seta_kvstore::reflector::{Health, Update};
use seta_kvstore::{KvError, WatchEvent};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Which of the shared prefixes a watch feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    Identities,
    Ips,
    Nodes,
}

impl Shared {
    /// Every object of the kind that feeds it (cluster-wide).
    fn api(self, client: &kube::Client) -> kube::Api<kube::api::DynamicObject> {
        let (kind, plural) = match self {
            Shared::Identities => ("CiliumIdentity", "ciliumidentities"),
            Shared::Ips => ("CiliumEndpoint", "ciliumendpoints"),
            Shared::Nodes => ("CiliumNode", "ciliumnodes"),
        };
        kube::Api::all_with(client.clone(), &super::resource("cilium.io", "v2", kind, plural))
    }
}

/// The cluster state of CRD mode, for one agent.
pub struct Crd {
    client: kube::Client,
    node: String,
    prefix: String,
    node_ip: Option<Ipv4Addr>,
}

fn api_error(op: &str, e: kube::Error) -> KvError {
    KvError::Other(format!("Kubernetes API, {op}: {e}"))
}

/// How many numbers an allocation tries before it gives up.
const ATTEMPTS: u32 = 64;

/// The numbers to try for `key`, in order: a start derived from the labels
/// (so agents racing for the same labels try the same numbers, and the API
/// server's name uniqueness lets exactly one create win), then the next
/// ones, wrapping within the cluster-local range.
pub fn candidates(key: &str) -> impl Iterator<Item = u32> {
    // FNV-1a: stable across builds and machines
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let span = MAX_ALLOCATED - MIN_ALLOCATED + 1;
    let start = (h % span as u64) as u32;
    (0..span).map(move |i| MIN_ALLOCATED + (start + i) % span)
}

/// The `security-labels` of a label set (source:key → value).
fn security_labels(labels: &LabelSet) -> serde_json::Map<String, Value> {
    labels
        .iter()
        .map(|l| (format!("{}:{}", l.source, l.key), Value::String(l.value.clone())))
        .collect()
}

/// A Kubernetes label key/value pair is kept in `metadata.labels` when it
/// is valid there (Cilium copies the k8s-source labels).
fn valid_k8s_label(k: &str, v: &str) -> bool {
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    let key_ok = match k.rsplit_once('/') {
        Some((prefix, name)) => !prefix.is_empty() && prefix.len() <= 253 && !prefix.contains('/') && name_ok(name),
        None => name_ok(k),
    };
    key_ok && (v.is_empty() || name_ok(v))
}

/// The CiliumIdentity object of `id` for `labels`.
pub fn cilium_identity(id: u32, labels: &LabelSet) -> Value {
    let meta_labels: serde_json::Map<String, Value> = labels
        .iter()
        .filter(|l| l.source == "k8s" && valid_k8s_label(&l.key, &l.value))
        .map(|l| (l.key.clone(), Value::String(l.value.clone())))
        .collect();
    json!({
        "apiVersion": "cilium.io/v2", "kind": "CiliumIdentity",
        "metadata": {"name": id.to_string(), "labels": meta_labels},
        "security-labels": security_labels(labels),
    })
}

/// The label set of a CiliumIdentity's `security-labels`.
fn labels_of(o: &Value) -> Option<LabelSet> {
    let m = o.get("security-labels")?.as_object()?;
    let mut set = LabelSet::new();
    for (k, v) in m {
        let (source, key) = k.split_once(':').unwrap_or(("unspec", k));
        set.insert(Label::new(source, key, v.as_str().unwrap_or("")));
    }
    Some(set)
}

fn name_of(o: &Value) -> Option<&str> {
    o.pointer("/metadata/name")?.as_str()
}

/// A CiliumIdentity as the kvstore's `identities/v1/id/<n>` entry.
pub fn identity_entry(prefix: &str, o: &Value) -> Option<(String, Vec<u8>)> {
    let id: u32 = name_of(o)?.parse().ok()?;
    let labels = labels_of(o)?;
    Some((
        format!("{}/identities/v1/id/{id}", prefix.trim_end_matches('/')),
        labels_key(&labels).into_bytes(),
    ))
}

/// A CiliumEndpoint as the kvstore's `ip/v1/<ip>` entry; `me`/`my_ip`:
/// this node (its own endpoints are named after it).
pub fn ip_entry(prefix: &str, o: &Value, me: &str, my_ip: Option<Ipv4Addr>) -> Option<(String, Vec<u8>)> {
    let st = o.get("status")?;
    let ip: Ipv4Addr = st.pointer("/networking/addressing/0/ipv4")?.as_str()?.parse().ok()?;
    let identity = st.pointer("/identity/id")?.as_u64()? as u32;
    let host_ip: Ipv4Addr = st.pointer("/networking/node")?.as_str()?.parse().ok()?;
    let node = match Some(host_ip) == my_ip {
        true => me.to_string(),
        false => host_ip.to_string(),
    };
    let e = IpEntry {
        ip,
        identity,
        node,
        host_ip,
    };
    Some((seta_kvstore::ipcache::key(prefix, ip), serde_json::to_vec(&e).ok()?))
}

/// Annotations carrying what a CiliumNode has no field for.
const ANN_ROUTING: &str = "network.seta.io/routing-mode";
const ANN_HEALTH: &str = "network.seta.io/health-address";

/// This node's CiliumNode.
pub fn cilium_node(info: &NodeInfo) -> Value {
    let mut addresses: Vec<Value> = vec![];
    if let Some(ip) = info.internal_ip {
        addresses.push(json!({"type": "InternalIP", "ip": ip.to_string()}));
    }
    for ip in &info.ips {
        if Some(*ip) != info.internal_ip {
            addresses.push(json!({"type": "InternalIP", "ip": ip.to_string()}));
        }
    }
    // the node's own address in its pod CIDR (seta_host's, as cilium_host's)
    if let Ok(cidr) = info.pod_cidr.parse::<ipnet::Ipv4Net>() {
        addresses.push(json!({"type": "CiliumInternalIP", "ip": seta_core::ipam::router_ip(cidr).to_string()}));
    }
    let mut ann = serde_json::Map::new();
    if !info.routing_mode.is_empty() {
        ann.insert(ANN_ROUTING.into(), info.routing_mode.clone().into());
    }
    if let Some(h) = &info.health_address {
        ann.insert(ANN_HEALTH.into(), h.clone().into());
    }
    json!({
        "apiVersion": "cilium.io/v2", "kind": "CiliumNode",
        "metadata": {"name": info.name, "annotations": ann},
        "spec": {
            "addresses": addresses,
            "ipam": {"podCIDRs": if info.pod_cidr.is_empty() { vec![] } else { vec![info.pod_cidr.clone()] }},
            "bootid": info.boot_id,
        },
    })
}

/// A CiliumNode as the kvstore's `nodes/v1/<name>` entry.
pub fn node_entry(prefix: &str, o: &Value) -> Option<(String, Vec<u8>)> {
    let name = name_of(o)?.to_string();
    let spec = o.get("spec")?;
    let ips: Vec<Ipv4Addr> = spec
        .get("addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "InternalIP")
        .filter_map(|a| a["ip"].as_str()?.parse().ok())
        .collect();
    let ann = |k: &str| o.pointer("/metadata/annotations").and_then(|a| a.get(k)).and_then(Value::as_str);
    let info = NodeInfo {
        name: name.clone(),
        internal_ip: ips.first().copied(),
        ips,
        pod_cidr: spec.pointer("/ipam/podCIDRs/0").and_then(Value::as_str).unwrap_or("").to_string(),
        boot_id: spec.get("bootid").and_then(Value::as_str).unwrap_or("").to_string(),
        routing_mode: ann(ANN_ROUTING).unwrap_or("").to_string(),
        health_address: ann(ANN_HEALTH).map(String::from),
    };
    Some((
        format!("{}/nodes/v1/{name}", prefix.trim_end_matches('/')),
        serde_json::to_vec(&info).ok()?,
    ))
}

impl Crd {
    pub fn new(client: kube::Client, node: &str, prefix: &str, node_ip: Option<Ipv4Addr>) -> Self {
        Self {
            client,
            node: node.to_string(),
            prefix: prefix.to_string(),
            node_ip,
        }
    }

    fn identities(&self) -> kube::Api<kube::api::DynamicObject> {
        Shared::Identities.api(&self.client)
    }

    /// The number of `labels`: an existing CiliumIdentity with exactly these
    /// security labels, or a new one. Racing agents try the same numbers in
    /// the same order; a create that conflicts reads what won, and takes it
    /// when its labels are these.
    pub async fn allocate(&self, labels: &LabelSet) -> seta_kvstore::Result<u32> {
        if labels.is_empty() {
            return Ok(seta_core::identity::ID_INIT);
        }
        let api = self.identities();
        let key = labels_key(labels);
        for id in candidates(&key).take(ATTEMPTS as usize) {
            let obj: kube::api::DynamicObject =
                serde_json::from_value(cilium_identity(id, labels)).map_err(|e| KvError::Other(e.to_string()))?;
            match api.create(&Default::default(), &obj).await {
                Ok(_) => return Ok(id),
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    let have = api.get_opt(&id.to_string()).await.map_err(|e| api_error("get", e))?;
                    let same = have
                        .and_then(|h| serde_json::to_value(h).ok())
                        .and_then(|v| labels_of(&v))
                        .is_some_and(|l| labels_key(&l) == key);
                    if same {
                        return Ok(id);
                    }
                }
                Err(e) => return Err(api_error("create CiliumIdentity", e)),
            }
        }
        Err(KvError::Other(format!(
            "could not allocate a CiliumIdentity for {key}: {ATTEMPTS} candidate numbers are taken"
        )))
    }

    /// Write this node's CiliumNode (create, or replace keeping what the
    /// operator wrote into its status).
    pub async fn register_node(&self, info: &NodeInfo) -> seta_kvstore::Result<()> {
        let api = Shared::Nodes.api(&self.client);
        let mut obj: kube::api::DynamicObject = serde_json::from_value(cilium_node(info)).map_err(|e| KvError::Other(e.to_string()))?;
        match api.get_opt(&info.name).await.map_err(|e| api_error("get CiliumNode", e))? {
            Some(have) => {
                let same = serde_json::to_value(&have).ok().and_then(|v| node_entry(&self.prefix, &v))
                    == node_entry(&self.prefix, &cilium_node(info));
                if same {
                    return Ok(());
                }
                obj.metadata.resource_version = have.metadata.resource_version;
                if let Some(st) = have.data.get("status") {
                    obj.data["status"] = st.clone();
                }
                api.replace(&info.name, &Default::default(), &obj)
                    .await
                    .map_err(|e| api_error("replace CiliumNode", e))?;
            }
            None => {
                api.create(&Default::default(), &obj)
                    .await
                    .map_err(|e| api_error("create CiliumNode", e))?;
            }
        }
        Ok(())
    }

    /// Every node's registration (the CiliumNodes).
    pub async fn nodes(&self) -> seta_kvstore::Result<Vec<NodeInfo>> {
        let api = Shared::Nodes.api(&self.client);
        let list = api.list(&Default::default()).await.map_err(|e| api_error("list CiliumNodes", e))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|o| node_entry(&self.prefix, &serde_json::to_value(o).ok()?))
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }

    /// The entry of an object of `which`, as the kvstore would hold it.
    fn entry(&self, which: Shared, o: &Value) -> Option<(String, Vec<u8>)> {
        match which {
            Shared::Identities => identity_entry(&self.prefix, o),
            Shared::Ips => ip_entry(&self.prefix, o, &self.node, self.node_ip),
            Shared::Nodes => node_entry(&self.prefix, o),
        }
    }

    /// Reflect the objects of `which` as kvstore updates: a snapshot after
    /// every (re)list, then changes; health as the kvstore reflector keeps it.
    pub fn reflect(self: &Arc<Self>, which: Shared, health: Arc<Health>) -> tokio::sync::mpsc::Receiver<Update> {
        use kube::runtime::watcher;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let me = self.clone();
        tokio::spawn(async move {
            let mut s = crate::k8s::relisting_watch(which.api(&me.client), watcher::Config::default());
            let failed = |r: Result<(), String>| {
                if let Err(e) = r {
                    health.set_failed(e)
                }
            };
            let mut first = true;
            while let Some(ch) = crate::k8s::next_change(&mut s, "cilium CRD", &failed).await {
                let u = match ch {
                    crate::k8s::Change::Listed(objs) => {
                        health.set_connected(!first);
                        first = false;
                        let mut snap: Vec<(String, Vec<u8>)> = objs.iter().filter_map(|o| me.entry(which, o)).collect();
                        snap.sort();
                        snap.dedup_by(|a, b| a.0 == b.0);
                        Update::Reset(snap)
                    }
                    crate::k8s::Change::Apply(o) => match me.entry(which, &o) {
                        Some((key, value)) => Update::Changes(vec![WatchEvent { key, value: Some(value) }]),
                        None => continue,
                    },
                    // a delete carries the object's last state
                    crate::k8s::Change::Delete(o) => match me.entry(which, &o) {
                        Some((key, _)) => Update::Changes(vec![WatchEvent { key, value: None }]),
                        None => continue,
                    },
                };
                if tx.send(u).await.is_err() {
                    return;
                }
            }
        });
        rx
    }
}

/// This node's pod CIDR from the API: `Node.spec.podCIDRs` (IPAM
/// `kubernetes`), or `CiliumNode.spec.ipam.podCIDRs` written by the operator
/// (IPAM `cluster-pool`; the CiliumNode is created to ask for it). The one a
/// previous run used (state dir) comes first. Waits up to a minute.
pub async fn pod_cidr(
    client: kube::Client,
    node: &str,
    ipam: seta_core::mode::Ipam,
    state_dir: &std::path::Path,
) -> anyhow::Result<ipnet::Ipv4Net> {
    if let Ok(b) = std::fs::read(state_dir.join("ipam.json")) {
        if let Ok(pool) = serde_json::from_slice::<seta_core::ipam::Pool>(&b) {
            tracing::info!(cidr = %pool.cidr, "pod CIDR from the previous run");
            return Ok(pool.cidr);
        }
    }
    let (api, path, what): (kube::Api<kube::api::DynamicObject>, &str, &str) = match ipam {
        seta_core::mode::Ipam::Kubernetes => (
            kube::Api::all_with(client, &super::resource("", "v1", "Node", "nodes")),
            "/spec/podCIDRs/0",
            "Node",
        ),
        seta_core::mode::Ipam::ClusterPool => {
            let api = Shared::Nodes.api(&client);
            if api.get_opt(node).await?.is_none() {
                let o: kube::api::DynamicObject = serde_json::from_value(
                    json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNode", "metadata": {"name": node}, "spec": {}}),
                )?;
                match api.create(&Default::default(), &o).await {
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    r => {
                        r?;
                    }
                }
            }
            (api, "/spec/ipam/podCIDRs/0", "CiliumNode")
        }
    };
    tracing::info!(%node, "waiting for the pod CIDR in the {what} ({path})");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(o) = api.get_opt(node).await? {
            let v = serde_json::to_value(o)?;
            if let Some(c) = v.pointer(path).and_then(Value::as_str) {
                let cidr: ipnet::Ipv4Net = c
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{what} {node}: {path} = {c:?} is not an IPv4 CIDR: {e}"))?;
                tracing::info!(%cidr, "pod CIDR from the {what}");
                return Ok(cidr);
            }
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "no pod CIDR after 60 s: the {what} {node} has no {path} (no --pod-cidr was given; IPAM {})",
                match ipam {
                    seta_core::mode::Ipam::Kubernetes => "kubernetes reads Node.spec.podCIDRs",
                    seta_core::mode::Ipam::ClusterPool => "cluster-pool needs seta-operator with --cluster-pool-cidr",
                }
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seta_core::labels::parse_list;

    #[test]
    fn candidates_are_stable_and_cover_the_range() {
        let a: Vec<u32> = candidates("k8s:app=web").take(3).collect();
        assert_eq!(a, candidates("k8s:app=web").take(3).collect::<Vec<_>>());
        assert!(a.iter().all(|i| (MIN_ALLOCATED..=MAX_ALLOCATED).contains(i)));
        assert_ne!(a[0], candidates("k8s:app=db").next().unwrap());
        let all: std::collections::BTreeSet<u32> = candidates("x").collect();
        assert_eq!(all.len() as u32, MAX_ALLOCATED - MIN_ALLOCATED + 1);
    }

    #[test]
    fn identities_translate_both_ways() {
        let labels = parse_list("app=web,io.kubernetes.pod.namespace=default", "k8s").unwrap();
        let o = cilium_identity(4242, &labels);
        assert_eq!(o["metadata"]["name"], "4242");
        assert_eq!(o["security-labels"]["k8s:app"], "web");
        assert_eq!(o["metadata"]["labels"]["io.kubernetes.pod.namespace"], "default");
        let (k, v) = identity_entry("/seta", &o).unwrap();
        assert_eq!(k, "/seta/identities/v1/id/4242");
        assert_eq!(String::from_utf8(v).unwrap(), labels_key(&labels));
        // a label Kubernetes would refuse stays out of metadata.labels only
        let mut odd = LabelSet::new();
        odd.insert(Label::new("k8s", "io.cilium.k8s.namespace.labels.team", &"x".repeat(70)));
        let o = cilium_identity(300, &odd);
        assert!(o["metadata"]["labels"].as_object().unwrap().is_empty());
        assert_eq!(labels_of(&o).unwrap(), odd);
    }

    #[test]
    fn endpoints_and_nodes_translate() {
        let cep = json!({"metadata": {"name": "web", "namespace": "default"}, "status": {
            "identity": {"id": 4242}, "networking": {"addressing": [{"ipv4": "10.0.2.5"}], "node": "172.30.0.2"}}});
        let (k, v) = ip_entry("/seta", &cep, "n1", Some("172.30.0.1".parse().unwrap())).unwrap();
        assert_eq!(k, "/seta/ip/v1/10.0.2.5");
        let e = seta_kvstore::ipcache::parse(&v).unwrap();
        assert_eq!(
            (e.identity, e.host_ip.to_string(), e.node.as_str()),
            (4242, "172.30.0.2".into(), "172.30.0.2")
        );
        let (_, v) = ip_entry("/seta", &cep, "n2", Some("172.30.0.2".parse().unwrap())).unwrap();
        assert_eq!(seta_kvstore::ipcache::parse(&v).unwrap().node, "n2");
        assert!(
            ip_entry("/seta", &json!({"status": {}}), "n1", None).is_none(),
            "a CEP without an address"
        );
        let info = NodeInfo {
            name: "n2".into(),
            ips: vec!["172.30.0.2".parse().unwrap()],
            pod_cidr: "10.0.2.0/24".into(),
            boot_id: "b".into(),
            internal_ip: Some("172.30.0.2".parse().unwrap()),
            routing_mode: "tunnel".into(),
            health_address: Some("172.30.0.2:4240".into()),
        };
        let o = cilium_node(&info);
        assert_eq!(o["spec"]["ipam"]["podCIDRs"][0], "10.0.2.0/24");
        // Cilium's: the node's address, and its own in the pod CIDR
        assert_eq!(
            o["spec"]["addresses"],
            json!([{"type": "InternalIP", "ip": "172.30.0.2"}, {"type": "CiliumInternalIP", "ip": "10.0.2.1"}])
        );
        let (k, v) = node_entry("/seta", &o).unwrap();
        assert_eq!(k, "/seta/nodes/v1/n2");
        assert_eq!(serde_json::from_slice::<NodeInfo>(&v).unwrap(), info);
    }
}
