//! The endpoints subsystem: this node's IPAM pool and its endpoints as the
//! agent wants them, with the ids and container ids of creations in flight.
//! Pure state and its checks: the kernel side (programs, maps) and the other
//! subsystems are driven by the agent around it.
use seta_core::endpoint::{next_endpoint_id, Endpoint, EndpointChangeRequest, EndpointRef, EndpointState};
use seta_core::ipam::Pool;
use seta_core::labels::LabelSet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

#[cfg(test)]
mod tests;

/// Why a request was refused: the HTTP status follows from the kind.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
}

/// What a create request finds.
#[derive(Debug)]
pub enum Admission {
    /// the same attachment is already ready: the request is idempotent
    Existing(Box<Endpoint>),
    /// a new endpoint with this id; the id and container are held until
    /// [`Endpoints::finish`]
    New(u16),
}

pub struct Endpoints {
    pool: Pool,
    map: BTreeMap<u16, Endpoint>,
    /// ids handed out to creations still loading their programs
    reserved_ids: BTreeSet<u16>,
    /// container ids with a create in flight (a second one is a conflict)
    creating: BTreeSet<String>,
}

impl Endpoints {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            map: BTreeMap::new(),
            reserved_ids: BTreeSet::new(),
            creating: BTreeSet::new(),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn router(&self) -> Ipv4Addr {
        self.pool.router()
    }

    pub fn cidr(&self) -> ipnet::Ipv4Net {
        self.pool.cidr
    }

    /// The id of the endpoint `r` names.
    pub fn find(&self, r: &EndpointRef) -> Result<u16, Refusal> {
        self.map
            .values()
            .find(|e| r.matches(e))
            .map(|e| e.id)
            .ok_or_else(|| Refusal::NotFound(format!("endpoint {r:?} not found")))
    }

    pub fn get(&self, id: u16) -> Option<&Endpoint> {
        self.map.get(&id)
    }

    pub fn get_mut(&mut self, id: u16) -> Option<&mut Endpoint> {
        self.map.get_mut(&id)
    }

    pub fn ids(&self) -> Vec<u16> {
        self.map.keys().copied().collect()
    }

    pub fn values(&self) -> impl Iterator<Item = &Endpoint> {
        self.map.values()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn by_ip(&self, ip: Ipv4Addr) -> Option<&Endpoint> {
        self.map.values().find(|e| e.ipv4 == ip)
    }

    /// Ids in use or held by a creation (a spare policy map is not for them).
    pub fn used_ids(&self) -> BTreeSet<u16> {
        self.map.keys().chain(self.reserved_ids.iter()).copied().collect()
    }

    /// Endpoints per state name.
    pub fn state_counts(&self) -> BTreeMap<String, usize> {
        let mut states = BTreeMap::new();
        for e in self.map.values() {
            *states.entry(e.state.to_string()).or_insert(0) += 1;
        }
        states
    }

    /// Not-ready endpoints.
    pub fn not_ready(&self) -> Vec<u16> {
        self.map
            .values()
            .filter(|e| e.state == EndpointState::NotReady)
            .map(|e| e.id)
            .collect()
    }

    /// Whether an endpoint holds identity `id`.
    pub fn uses_identity(&self, id: u32) -> bool {
        self.map.values().any(|e| e.identity == id)
    }

    /// Named container ports of every local endpoint (name -> protocol, port).
    pub fn peer_ports(&self) -> BTreeMap<String, BTreeSet<(u8, u16)>> {
        let mut m: BTreeMap<String, BTreeSet<(u8, u16)>> = BTreeMap::new();
        for e in self.map.values() {
            for (n, p) in &e.named_ports {
                m.entry(n.clone()).or_default().insert(*p);
            }
        }
        m
    }

    /// Check a create request against the current state and hold a new id
    /// and the container for it, or find the same attachment ready.
    pub fn admit(&mut self, req: &EndpointChangeRequest) -> Result<Admission, Refusal> {
        if let Some(existing) = self.map.values().find(|e| e.container_id == req.container_id) {
            if existing.ipv4 == req.ipv4 && existing.interface_index == req.interface_index && existing.state == EndpointState::Ready {
                return Ok(Admission::Existing(Box::new(existing.clone())));
            }
            return Err(Refusal::Conflict(format!(
                "container {} already has endpoint {} ({}); delete it first",
                req.container_id, existing.id, existing.ipv4
            )));
        }
        if self.creating.contains(&req.container_id) {
            return Err(Refusal::Conflict(format!(
                "container {} is being attached by another request",
                req.container_id
            )));
        }
        if !self.pool.cidr.contains(&req.ipv4) {
            return Err(Refusal::BadRequest(format!(
                "ipv4: {} is not in this node's pod CIDR {}",
                req.ipv4, self.pool.cidr
            )));
        }
        match self.pool.owner_of(req.ipv4) {
            None => return Err(Refusal::BadRequest(format!("ipv4: {} was not allocated through IPAM", req.ipv4))),
            Some(_) if self.by_ip(req.ipv4).is_some() => {
                return Err(Refusal::Conflict(format!("ipv4: {} is already used by another endpoint", req.ipv4)))
            }
            _ => {}
        }
        let used = self.used_ids();
        let id = next_endpoint_id(used.iter()).ok_or_else(|| Refusal::Conflict("no free endpoint id".into()))?;
        self.reserved_ids.insert(id);
        self.creating.insert(req.container_id.clone());
        Ok(Admission::New(id))
    }

    /// A creation admitted by [`admit`](Self::admit) is over (committed or
    /// rolled back): its id and container are no longer held.
    pub fn finish(&mut self, id: u16, container_id: &str) {
        self.reserved_ids.remove(&id);
        self.creating.remove(container_id);
    }

    pub fn insert(&mut self, ep: Endpoint) {
        self.map.insert(ep.id, ep);
    }

    pub fn remove(&mut self, id: u16) -> Option<Endpoint> {
        self.map.remove(&id)
    }

    /// An address for `owner`.
    pub fn allocate(&mut self, owner: &str) -> Result<Ipv4Addr, Refusal> {
        if owner.is_empty() {
            return Err(Refusal::BadRequest(
                "query parameter owner is required (container id or namespace/pod)".into(),
            ));
        }
        self.pool.allocate(owner).map_err(|e| Refusal::Conflict(e.to_string()))
    }

    /// Take a known address again (a restored endpoint's); a clash is ignored.
    pub fn adopt_ip(&mut self, ip: Ipv4Addr, owner: &str) {
        let _ = self.pool.allocate_ip(ip, owner);
    }

    /// Give an address back; one an endpoint uses is refused.
    pub fn release(&mut self, ip: Ipv4Addr) -> Result<(), Refusal> {
        if self.by_ip(ip).is_some() {
            return Err(Refusal::Conflict(format!(
                "{ip} is used by an endpoint; delete the endpoint instead"
            )));
        }
        self.pool.release(ip).map(|_| ()).map_err(|e| Refusal::NotFound(e.to_string()))
    }

    /// Give an address back whoever holds it (a deleted endpoint's).
    pub fn free_ip(&mut self, ip: Ipv4Addr) {
        let _ = self.pool.release(ip);
    }

    /// Release every address of `owner` that no endpoint uses. Returns how many.
    pub fn release_owner(&mut self, owner: &str) -> usize {
        let ips: Vec<Ipv4Addr> = self
            .pool
            .allocated
            .iter()
            .filter(|(ip, o)| o.as_str() == owner && self.by_ip(**ip).is_none())
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &ips {
            let _ = self.pool.release(*ip);
        }
        ips.len()
    }
}

/// The endpoint a create request describes, before its program is attached.
pub fn new_endpoint(
    req: &EndpointChangeRequest,
    id: u16,
    mac: &[u8; 6],
    host_mac: &[u8; 6],
    named_ports: BTreeMap<String, (u8, u16)>,
    labels: LabelSet,
    identity: u32,
) -> Endpoint {
    Endpoint {
        id,
        container_id: req.container_id.clone(),
        container_interface_name: req.container_interface_name.clone(),
        pod_name: req.pod_name.clone(),
        namespace: req.namespace.clone(),
        ipv4: req.ipv4,
        mac: seta_core::endpoint::format_mac(mac),
        host_mac: seta_core::endpoint::format_mac(host_mac),
        interface_name: req.interface_name.clone(),
        interface_index: req.interface_index,
        netns_path: req.netns_path.clone(),
        pod_labels: req.labels.clone(),
        labels,
        identity,
        state: EndpointState::Regenerating,
        named_ports,
        ingress_enforced: false,
        egress_enforced: false,
        policy_revision: 0,
        policy_entries: 0,
        status_message: String::new(),
        host_ports: req.host_ports.clone(),
    }
}
