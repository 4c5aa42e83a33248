//! The services subsystem: the repository of Services and EndpointSlices
//! (create-or-replace by kind, namespace and name; persisted) and the
//! frontends this node load-balances, computed by `seta_core::service`.
//! Pure and behind its own lock: nothing here touches the kernel, the
//! kvstore or another subsystem's state.
use seta_core::api::{ServiceBackend, ServiceEntry};
use seta_core::service::{translate, EndpointSlice, Frontend, FrontendKind, Object, Service};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

mod health;
mod hostports;
mod socklb;
#[cfg(test)]
mod tests;

pub use health::HealthCheck;
pub use socklb::SockNamespaces;

/// What is persisted (services.json).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Repository {
    revision: u64,
    /// "ns/name" -> service
    services: BTreeMap<String, Service>,
    /// "ns/name" -> slice
    slices: BTreeMap<String, EndpointSlice>,
    /// stable numbers in the datapath: backend ("ip:port/PROTO") -> id,
    /// frontend ("ip:port/PROTO") -> rev-NAT index
    #[serde(default)]
    backend_ids: BTreeMap<String, u32>,
    #[serde(default)]
    revnat_ids: BTreeMap<String, u16>,
    /// backend states set by hand on this node ("ip:port" -> quarantined |
    /// maintenance), over what the EndpointSlices say
    #[serde(default)]
    overrides: BTreeMap<String, seta_core::service::BackendState>,
    /// this node's hostPorts: container id -> (pod address, mappings)
    #[serde(default)]
    host_ports: BTreeMap<String, (Ipv4Addr, Vec<seta_core::service::HostPort>)>,
    /// this node's labels (its Node's, under Kubernetes): which services
    /// it exposes (`service.cilium.io/node`, `node-selector`) and its zone
    /// (topology-aware routing); kept, so a restarted agent serves what it
    /// served before until the watch has the Node again
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    node_labels: BTreeMap<String, String>,
    /// how this node serves them: the agent's flags, not state
    #[serde(skip)]
    serving: Serving,
}

/// How a node serves the repository's services, from the agent's flags
/// (the defaults: Cilium's with kube-proxy replacement).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Serving {
    /// `--k8s-service-proxy-name`: it serves the services whose
    /// `service.kubernetes.io/service-proxy-name` names it ("": those
    /// without the label)
    pub proxy_name: String,
    /// `--kube-proxy-replacement=false`: ClusterIP frontends, and of the
    /// others only what `--enable-node-port` (NodePort, LoadBalancer and
    /// health checks), `--enable-external-ips` and `--enable-host-port`
    /// turn on, as Cilium's partial replacement
    pub no_node_port: bool,
    pub no_external_ips: bool,
    pub no_host_port: bool,
    /// `--enable-session-affinity=false`: sessionAffinity is not honoured
    pub no_session_affinity: bool,
    /// `--enable-health-check-nodeport=false`: no healthCheckNodePort servers
    pub no_health_checks: bool,
}

impl Serving {
    /// Whether frontends of `kind` are this node's to serve.
    pub fn serves(&self, kind: FrontendKind) -> bool {
        match kind {
            FrontendKind::ClusterIP => true,
            FrontendKind::NodePort | FrontendKind::LoadBalancer => !self.no_node_port,
            FrontendKind::ExternalIP => !self.no_external_ips,
            FrontendKind::HostPort => !self.no_host_port,
        }
    }
}

/// Hands out the lowest numbers not in use, from 1 up to a most (one walk
/// over the used set per call of lb_state, not one per new number: 100k
/// backends).
struct Numbers<T> {
    used: std::collections::BTreeSet<T>,
    next: T,
    most: T,
}

impl<T: Copy + Ord + From<u8> + std::ops::Add<Output = T>> Numbers<T> {
    fn new(used: impl Iterator<Item = T>, most: T) -> Self {
        Self {
            used: used.collect(),
            next: T::from(1),
            most,
        }
    }

    /// The lowest free number, now taken (the used set only grows, so the
    /// lowest free never goes down); `None` once all up to `most` are used.
    fn take(&mut self) -> Option<T> {
        while self.used.contains(&self.next) {
            if self.next >= self.most {
                return None;
            }
            self.next = self.next + T::from(1);
        }
        self.used.insert(self.next);
        Some(self.next)
    }
}

/// Which objects a delete names.
pub enum Selection<'a> {
    /// a service (and the EndpointSlices that belong to it)
    Service {
        namespace: &'a str,
        name: &'a str,
    },
    All,
}

impl Repository {
    /// Create or replace every object (already validated as a whole);
    /// returns "Kind ns/name" of each and the new revision.
    pub fn import(&mut self, objects: Vec<Object>) -> (u64, Vec<String>) {
        let mut names = Vec::new();
        for o in objects {
            match o {
                Object::Service(s) => {
                    names.push(format!("Service {}/{}", s.namespace, s.name));
                    self.services.insert(format!("{}/{}", s.namespace, s.name), s);
                }
                Object::EndpointSlice(e) => {
                    names.push(format!("EndpointSlice {}/{}", e.namespace, e.name));
                    self.slices.insert(format!("{}/{}", e.namespace, e.name), e);
                }
            }
        }
        self.revision += 1;
        (self.revision, names)
    }

    /// Remove what `sel` names; "Kind ns/name" of each removed object (empty:
    /// nothing matched, nothing changed).
    pub fn delete(&mut self, sel: Selection<'_>) -> (u64, Vec<String>) {
        let mut gone = Vec::new();
        match sel {
            Selection::All => {
                gone.extend(self.services.keys().map(|k| format!("Service {k}")));
                gone.extend(self.slices.keys().map(|k| format!("EndpointSlice {k}")));
                self.services.clear();
                self.slices.clear();
            }
            Selection::Service { namespace, name } => {
                let key = format!("{namespace}/{name}");
                if self.services.remove(&key).is_some() {
                    gone.push(format!("Service {key}"));
                    // its slices go with it (Kubernetes garbage-collects them)
                    self.slices.retain(|k, e| {
                        let owned = e.namespace == namespace && e.service == name;
                        if owned {
                            gone.push(format!("EndpointSlice {k}"));
                        }
                        !owned
                    });
                }
            }
        }
        if !gone.is_empty() {
            self.revision += 1;
        }
        (self.revision, gone)
    }

    /// A digest of the objects (FNV-1a of their JSON): the same set of
    /// Services and EndpointSlices gives the same digest on every node.
    pub fn digest(&self) -> u64 {
        let bytes = serde_json::to_vec(&self.objects()).unwrap_or_default();
        bytes
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
    }

    /// (services, frontends numbered in the datapath)
    pub fn counts(&self) -> (usize, usize) {
        (self.services.len(), self.revnat_ids.len())
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services.get(&format!("{namespace}/{name}"))
    }

    /// The slices of a service.
    pub fn slices_of(&self, s: &Service) -> Vec<&EndpointSlice> {
        self.slices
            .values()
            .filter(|e| e.namespace == s.namespace && e.service == s.name)
            .collect()
    }

    /// This node's labels changed; whether they differ from before.
    pub fn set_node_labels(&mut self, labels: BTreeMap<String, String>) -> bool {
        std::mem::replace(&mut self.node_labels, labels) != self.node_labels
    }

    /// Serve the services as `serving` says from now on.
    pub fn set_serving(&mut self, serving: Serving) {
        self.serving = serving;
    }

    /// Is `s` this node's proxy's (its service-proxy-name label)?
    pub fn proxies(&self, s: &Service) -> bool {
        s.proxied_by(&self.serving.proxy_name)
    }

    /// Does this node expose `s`: its proxy's, and allowed by its
    /// node-exposure annotations?
    pub fn exposes(&self, s: &Service) -> bool {
        self.proxies(s) && s.exposed_on(&self.node_labels)
    }

    /// Every frontend this node load-balances (NodePort on `node_addrs`),
    /// with the backend states set by hand applied.
    pub fn frontends(&self, node_addrs: &[Ipv4Addr]) -> Vec<Frontend> {
        // slices by their service, once (not one walk of them per service)
        let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
        for e in self.slices.values() {
            by_service.entry((&e.namespace, &e.service)).or_default().push(e);
        }
        let none = Vec::new();
        let mut out: Vec<Frontend> = self
            .services
            .values()
            .filter(|s| self.exposes(s))
            .flat_map(|s| {
                translate(
                    s,
                    by_service.get(&(s.namespace.as_str(), s.name.as_str())).unwrap_or(&none),
                    node_addrs,
                )
            })
            .chain(self.host_port_frontends(node_addrs))
            .filter(|f| self.serving.serves(f.kind))
            .collect();
        for f in &mut out {
            if self.serving.no_session_affinity {
                f.affinity = None;
            }
            for b in &mut f.backends {
                if let Some(st) = self.overrides.get(&format!("{}:{}", b.ip, b.port)) {
                    b.state = *st;
                }
            }
        }
        out
    }

    /// Set a backend's state by hand (Cilium's `service update --states`):
    /// quarantined or maintenance take it out of new connections' choices,
    /// active gives it back to the EndpointSlices. Returns how many
    /// frontends use the backend (0: unknown backend, nothing changed).
    pub fn set_backend_state(
        &mut self,
        backend: std::net::SocketAddrV4,
        state: seta_core::service::BackendState,
        node_addrs: &[Ipv4Addr],
    ) -> Result<usize, String> {
        use seta_core::service::BackendState::*;
        let uses = self
            .frontends(node_addrs)
            .iter()
            .filter(|f| f.backends.iter().any(|b| b.ip == *backend.ip() && b.port == backend.port()))
            .count();
        if uses == 0 {
            return Ok(0);
        }
        let key = backend.to_string();
        match state {
            Active => {
                self.overrides.remove(&key);
            }
            Quarantined | Maintenance => {
                self.overrides.insert(key, state);
            }
            other => {
                return Err(format!(
                    "{other}: set by EndpointSlice conditions, not by hand (use active, quarantined or maintenance)"
                ))
            }
        }
        self.revision += 1;
        Ok(uses)
    }
}

/// How this node's frontends forward and choose: the node-wide defaults and
/// whether services' annotations may override them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbChoices {
    /// Maglev's table (M, seed), when any frontend may use it
    pub maglev: Option<(u32, u32)>,
    /// the default algorithm is Maglev
    pub maglev_default: bool,
    /// `service.cilium.io/lb-algorithm` counts
    pub algorithm_annotation: bool,
    /// `service.cilium.io/forwarding-mode` counts (the datapath then reads
    /// each frontend's DSR flag); the default mode is DSR
    pub mode_annotation: bool,
    pub dsr_default: bool,
    /// ClusterIPs are served from outside too (Cilium's ROUTABLE flag)
    pub external_cluster_ip: bool,
    /// topology-aware routing: services' traffic distributions count
    pub service_topology: bool,
    /// CVE-2020-8554: ExternalIPs that are none of the node's addresses are
    /// marked, and the node's and pods' own connections to them are not
    /// translated
    pub external_ip_mitigation: bool,
    /// a LoadBalancer service's source ranges also hold for its NodePort and
    /// ClusterIP frontends (Cilium's bpf-lb-source-range-all-types)
    pub source_range_all_types: bool,
}

impl LbChoices {
    /// Node-wide Maglev (M, seed) for every north-south frontend, or none.
    #[cfg(test)]
    pub fn maglev(maglev: Option<(u32, u32)>) -> Self {
        Self {
            maglev,
            maglev_default: maglev.is_some(),
            ..Default::default()
        }
    }

    /// Does north-south frontend `f` use Maglev?
    fn uses_maglev(&self, f: &Frontend) -> bool {
        use seta_core::mode::LbAlgorithm;
        let annotated = f.annotations.lb_algorithm.filter(|_| self.algorithm_annotation);
        self.maglev.is_some() && annotated.map_or(self.maglev_default, |a| a == LbAlgorithm::Maglev)
    }

    /// Does north-south frontend `f` forward to remote backends by DSR
    /// (the master entry's flag; read by the datapath in annotation mode)?
    fn uses_dsr(&self, f: &Frontend) -> bool {
        use seta_core::mode::LbMode;
        self.mode_annotation && f.annotations.forwarding_mode.map_or(self.dsr_default, |m| m == LbMode::Dsr)
    }
}

impl Repository {
    /// What the service maps must hold on node `node`: every frontend's
    /// master entry and slots (the backends new connections may use), every
    /// backend (also those kept only for established connections) and the
    /// rev-NAT entries. Numbers stay stable while their objects exist.
    /// North-south frontends (NodePort, ExternalIP, LoadBalancer) that use
    /// Maglev (`choices`) also get their Maglev table.
    /// The maps' contents for these services on `node`; an error when the
    /// frontends are more than a 16-bit rev-NAT index can number (65535, as
    /// Cilium's service IDs), and nothing changed then.
    pub fn lb_state(&mut self, node: &str, node_addrs: &[Ipv4Addr], choices: &LbChoices) -> Result<seta_datapath::maps::LbState, String> {
        use seta_abi::{Lb4Backend, Lb4Key, Lb4ReverseNat, Lb4Service};
        let frontends = self.frontends(node_addrs);
        let name = |ip: Ipv4Addr, port: u16, p: seta_core::service::Proto| format!("{ip}:{port}/{p}");
        let mut want = seta_datapath::maps::LbState::default();
        let (mut bids, mut rids) = (BTreeMap::new(), BTreeMap::new());
        let mut free_b: Numbers<u32> = Numbers::new(self.backend_ids.values().copied(), u32::MAX);
        let mut free_r: Numbers<u16> = Numbers::new(self.revnat_ids.values().copied(), u16::MAX);
        for f in &frontends {
            let rkey = name(f.addr, f.port, f.proto);
            let rid = match self.revnat_ids.get(&rkey).or(rids.get(&rkey)) {
                Some(id) => *id,
                None => free_r.take().ok_or_else(|| {
                    format!(
                        "{} frontends (service address, port, protocol) are more than the {} a 16-bit rev-NAT index numbers",
                        frontends.len(),
                        u16::MAX
                    )
                })?,
            };
            rids.insert(rkey, rid);
            let mut id_of = |ip: Ipv4Addr, port: u16| {
                let k = name(ip, port, f.proto);
                let id = match self.backend_ids.get(&k).or(bids.get(&k)) {
                    Some(id) => *id,
                    None => free_b.take().ok_or("backend ids exhausted")?,
                };
                bids.insert(k, id);
                Ok::<u32, String>(id)
            };
            for b in &f.backends {
                let id = id_of(b.ip, b.port)?;
                want.backends.insert(
                    id,
                    Lb4Backend {
                        address: b.ip.octets(),
                        port: b.port.to_be_bytes(),
                        proto: f.proto.number(),
                        flags: match b.state {
                            seta_core::service::BackendState::Active => 0,
                            seta_core::service::BackendState::Quarantined => 2,
                            seta_core::service::BackendState::Maintenance => 3,
                            _ => 1,
                        },
                        ..Default::default()
                    },
                );
            }
            let internal = f.scope == seta_core::service::Scope::Internal;
            let key = |slot: u16| Lb4Key {
                address: f.addr.octets(),
                dport: f.port.to_be_bytes(),
                backend_slot: slot,
                proto: f.proto.number(),
                scope: internal as u8,
                ..Default::default()
            };
            let slots = f.candidates_at(seta_core::service::Locality {
                node,
                zone: self
                    .node_labels
                    .get(seta_core::service::LABEL_TOPOLOGY_ZONE)
                    .map(String::as_str)
                    .filter(|z| !z.is_empty()),
                topology: choices.service_topology,
            });
            for (i, b) in slots.iter().enumerate() {
                let backend_id = id_of(b.ip, b.port)?;
                want.services.insert(
                    key(i as u16 + 1),
                    Lb4Service {
                        backend_id,
                        rev_nat_index: rid,
                        ..Default::default()
                    },
                );
            }
            // (an internal scope's entry serves the cluster's own clients only)
            let north_south = !internal
                && matches!(
                    f.kind,
                    FrontendKind::NodePort | FrontendKind::ExternalIP | FrontendKind::LoadBalancer
                );
            let mut algorithm = seta_abi::LB_ALG_RANDOM;
            // (not for the 0.0.0.0 surrogate: only socket-LB uses it, randomly)
            let maglev = choices
                .maglev
                .filter(|_| north_south && !f.addr.is_unspecified() && choices.uses_maglev(f));
            if let (Some((m, seed)), false) = (maglev, slots.is_empty()) {
                let names: Vec<(String, u32)> = slots
                    .iter()
                    .map(|b| Ok((format!("{}:{}", b.ip, b.port), id_of(b.ip, b.port)?)))
                    .collect::<Result<_, String>>()?;
                match maglev_chunks(rid, &names, m, seed) {
                    Ok(chunks) => {
                        want.maglev.extend(chunks);
                        algorithm = seta_abi::LB_ALG_MAGLEV;
                    }
                    Err(e) => tracing::error!(frontend = %name(f.addr, f.port, f.proto), %e, "no Maglev table; random selection"),
                }
            }
            // (an internal scope's clients are the cluster's own: no ranges)
            let ranges = match internal {
                true => &[][..],
                false => f.checked_source_ranges(choices.source_range_all_types),
            };
            want.source_ranges.extend(ranges.iter().map(|n| (rid, n.trunc())));
            let foreign = f.kind == FrontendKind::ExternalIP && !node_addrs.contains(&f.addr);
            let (flags, flags2) = master_flags(f, north_south, !ranges.is_empty(), foreign, choices);
            want.services.insert(
                key(0),
                Lb4Service {
                    // the master's id field: algorithm (upper 8 bits) and affinity timeout (s)
                    backend_id: match (f.affinity, algorithm) {
                        (None, seta_abi::LB_ALG_RANDOM) => 0,
                        (t, alg) => (alg << 24) | (t.unwrap_or(0) & 0xff_ffff),
                    },
                    count: slots.len() as u16,
                    rev_nat_index: rid,
                    flags,
                    flags2,
                    ..Default::default()
                },
            );
            want.revnat.insert(
                rid,
                Lb4ReverseNat {
                    address: f.addr.octets(),
                    port: f.port.to_be_bytes(),
                    pad: 0,
                },
            );
        }
        // numbers of what is gone are free again
        self.backend_ids = bids;
        self.revnat_ids = rids;
        Ok(want)
    }
}

/// The master entry's flags and flags2 of a frontend (Cilium's LB_F_* and
/// LB_F2_* bits); `north_south`: a NodePort, ExternalIP or LoadBalancer one.
/// The master entry's flags and flags2; `ranges`: source ranges are checked
/// here, `foreign`: an ExternalIP that is none of the node's addresses.
fn master_flags(f: &Frontend, north_south: bool, ranges: bool, foreign: bool, choices: &LbChoices) -> (u8, u8) {
    let kind = match f.kind {
        FrontendKind::ClusterIP => 0,
        FrontendKind::NodePort => seta_abi::LB_F_NODEPORT,
        FrontendKind::ExternalIP => seta_abi::LB_F_EXTERNAL_IP,
        FrontendKind::LoadBalancer => seta_abi::LB_F_LOADBALANCER,
        FrontendKind::HostPort => seta_abi::LB_F_HOSTPORT,
    };
    let bit = |on: bool, b: u8| if on { b } else { 0 };
    let flags = kind
        | bit(f.local_only, seta_abi::LB_F_EXT_LOCAL_SCOPE)
        | bit(f.affinity.is_some(), seta_abi::LB_F_AFFINITY)
        | bit(ranges, seta_abi::LB_F_SOURCE_RANGE)
        | bit(
            f.kind == FrontendKind::ClusterIP && choices.external_cluster_ip,
            seta_abi::LB_F_ROUTABLE,
        );
    let flags2 = bit(north_south && choices.uses_dsr(f), seta_abi::LB_F2_FWD_MODE_DSR)
        | bit(ranges && f.annotations.source_ranges_deny, seta_abi::LB_F2_SOURCE_RANGE_DENY)
        | bit(foreign && choices.external_ip_mitigation, seta_abi::LB_F2_EXTERNAL_IP_FOREIGN)
        | bit(f.scope == seta_core::service::Scope::External, seta_abi::LB_F2_TWO_SCOPES);
    (flags, flags2)
}

/// A frontend's Maglev table over its backends (stable name, backend id), in
/// `seta_lb4_maglev` chunks under its rev-NAT index.
fn maglev_chunks(
    rid: u16,
    backends: &[(String, u32)],
    m: u32,
    seed: u32,
) -> Result<Vec<(seta_abi::Lb4MaglevKey, seta_abi::Lb4MaglevChunk)>, seta_core::service::maglev::MaglevError> {
    let names: Vec<String> = backends.iter().map(|(n, _)| n.clone()).collect();
    let (sorted, table) = seta_core::service::maglev::table(&names, m, seed)?;
    let id_of: BTreeMap<&str, u32> = backends.iter().map(|(n, id)| (n.as_str(), *id)).collect();
    let ids: Vec<u32> = sorted.iter().map(|n| id_of[n.as_str()]).collect();
    Ok(table
        .chunks(seta_abi::LB_MAGLEV_CHUNK)
        .enumerate()
        .map(|(i, slots)| {
            let mut chunk = seta_abi::Lb4MaglevChunk::default();
            for (j, s) in slots.iter().enumerate() {
                chunk.backend_ids[j] = ids[*s as usize];
            }
            let key = seta_abi::Lb4MaglevKey {
                rev_nat_id: rid,
                chunk: i as u16,
            };
            (key, chunk)
        })
        .collect())
}

impl Repository {
    /// Every object, services then slices.
    pub fn objects(&self) -> Vec<Object> {
        let s = self.services.values().cloned().map(Object::Service);
        s.chain(self.slices.values().cloned().map(Object::EndpointSlice)).collect()
    }

    /// Make the objects exactly `objs` (the cluster's set); false when they
    /// already were.
    pub fn replace_all(&mut self, objs: Vec<Object>) -> bool {
        let (mut services, mut slices) = (BTreeMap::new(), BTreeMap::new());
        for o in objs {
            match o {
                Object::Service(s) => {
                    services.insert(format!("{}/{}", s.namespace, s.name), s);
                }
                Object::EndpointSlice(e) => {
                    slices.insert(format!("{}/{}", e.namespace, e.name), e);
                }
            }
        }
        if services == self.services && slices == self.slices {
            return false;
        }
        self.services = services;
        self.slices = slices;
        self.revision += 1;
        true
    }
}

/// `<prefix>/services/v1/<Kind>/<namespace>/<name>`
pub fn kv_key(prefix: &str, o: &Object) -> String {
    let (kind, ns, name) = o.key();
    format!("{}/services/v1/{kind}/{ns}/{name}", prefix.trim_end_matches('/'))
}

/// The key of an object named "Kind ns/name" (as imports and deletes report).
pub fn kv_key_of_name(prefix: &str, name: &str) -> Option<String> {
    let (kind, rest) = name.split_once(' ')?;
    Some(format!("{}/services/v1/{kind}/{rest}", prefix.trim_end_matches('/')))
}

/// The cluster's services as the kvstore watch shows them, with this node's
/// own writes counted before the watch delivers them (it may still deliver
/// older states first).
#[derive(Default)]
pub struct ClusterView {
    mirror: seta_kvstore::reflector::Mirror,
    pending: BTreeMap<String, (Option<Vec<u8>>, std::time::Instant)>,
    /// the first snapshot was seen
    pub synced: bool,
}

impl ClusterView {
    /// This node wrote `puts` and deleted `deletes`.
    pub fn record(&mut self, puts: &[(String, Vec<u8>)], deletes: &[String]) {
        let now = std::time::Instant::now();
        for (k, v) in puts {
            self.pending.insert(k.clone(), (Some(v.clone()), now));
        }
        for k in deletes {
            self.pending.insert(k.clone(), (None, now));
        }
    }

    pub fn apply(&mut self, u: seta_kvstore::reflector::Update) {
        self.mirror.apply(u);
        let m = &self.mirror.data;
        self.pending
            .retain(|k, (v, at)| m.get(k) != v.as_ref() && at.elapsed() < std::time::Duration::from_secs(10));
    }

    pub fn is_empty(&self) -> bool {
        self.mirror.data.is_empty() && self.pending.is_empty()
    }

    /// The objects the cluster holds (unreadable ones are skipped, named).
    pub fn objects(&self) -> (Vec<Object>, Vec<String>) {
        let mut data = self.mirror.data.clone();
        for (k, (v, _)) in &self.pending {
            match v {
                Some(v) => data.insert(k.clone(), v.clone()),
                None => data.remove(k),
            };
        }
        let mut objs = Vec::new();
        let mut bad = Vec::new();
        for (k, v) in data {
            match serde_json::from_slice::<Object>(&v) {
                Ok(o) => objs.push(o),
                Err(_) => bad.push(k),
            }
        }
        (objs, bad)
    }
}

/// A frontend as `seta service list` shows it.
pub fn entry(f: &Frontend) -> ServiceEntry {
    ServiceEntry {
        service: f.service.clone(),
        // the internal scope of a frontend with two: Cilium's "/i"
        frontend: format!(
            "{}:{}/{}{}",
            f.addr,
            f.port,
            f.proto,
            if f.scope == seta_core::service::Scope::Internal { "/i" } else { "" }
        ),
        kind: match f.kind {
            FrontendKind::ClusterIP => "ClusterIP",
            FrontendKind::NodePort => "NodePort",
            FrontendKind::ExternalIP => "ExternalIPs",
            FrontendKind::LoadBalancer => "LoadBalancer",
            FrontendKind::HostPort => "HostPort",
        }
        .into(),
        local: f.local_only,
        backends: f
            .backends
            .iter()
            .map(|b| ServiceBackend {
                address: format!("{}:{}/{}", b.ip, b.port, f.proto),
                state: b.state,
                node: b.node.clone(),
            })
            .collect(),
    }
}
