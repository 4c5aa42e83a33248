//! The endpoint manager: desired state (IPAM, identities, endpoints) kept in
//! memory and on disk, and converged into the kernel through seta-datapath.
use crate::config::Config;
use crate::state::Store;
use anyhow::{Context, Result};
use seta_abi::{EndpointInfo, RemoteEndpointInfo, ENDPOINT_F_HOST};
use seta_core::api::{AgentConfig, Attachment, IpamAddress, IpamResponse, IpamStatus, Status};
use seta_core::endpoint::{next_endpoint_id, parse_mac, Endpoint, EndpointChangeRequest, EndpointRef, EndpointState};
use seta_core::identity::{IdentityAllocator, ID_HOST};
use seta_core::ipam::Pool;
use seta_core::labels::{Label, LabelSet};
use seta_core::names::{HOST_DEV, NET_DEV};
use seta_datapath::maps::{EndpointMap, IpcacheMap};
use seta_datapath::netlink::Netlink;
use seta_datapath::{Datapath, EndpointProgConfig};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(format!("{e:#}"))
    }
}

struct Inner {
    pool: Pool,
    identities: IdentityAllocator,
    endpoints: BTreeMap<u16, Endpoint>,
    /// ids handed out to creations still loading their programs
    reserved_ids: std::collections::BTreeSet<u16>,
    eps: EndpointMap,
    ipc: IpcacheMap,
}

pub struct Agent {
    pub cfg: Config,
    dp: Datapath,
    nl: Netlink,
    store: Store,
    inner: Mutex<Inner>,
    started: Instant,
    restored: std::sync::atomic::AtomicUsize,
}

fn host_entry(ep: &Endpoint) -> Result<EndpointInfo, String> {
    Ok(EndpointInfo {
        ifindex: ep.interface_index,
        lxc_id: ep.id,
        mac: parse_mac(&ep.mac)?,
        node_mac: parse_mac(&ep.host_mac)?,
        sec_id: ep.identity,
        ..Default::default()
    })
}

fn prog_config(ep: &Endpoint) -> Result<EndpointProgConfig, String> {
    Ok(EndpointProgConfig {
        ep_id: ep.id,
        ifname: ep.interface_name.clone(),
        ifindex: ep.interface_index,
        ipv4: ep.ipv4,
        sec_id: ep.identity,
        node_mac: parse_mac(&ep.host_mac)?,
    })
}

impl Agent {
    /// Bring the node up: bpffs, host devices, maps and node programs, then
    /// restore what a previous run left (state dir + pins).
    pub async fn start(cfg: Config) -> Result<Arc<Self>> {
        seta_datapath::sysfs::ensure_bpffs(&cfg.bpffs).with_context(|| format!("mounting bpffs at {}", cfg.bpffs.display()))?;
        let store = Store::open(&cfg.state_dir)?;
        let dp = Datapath::new(&cfg.pin_dir)?;
        let nl = Netlink::current()?;

        let mut pool: Pool = store.load::<Option<Pool>>("ipam.json")?.unwrap_or(Pool::new(cfg.pod_cidr)?);
        if pool.cidr != cfg.pod_cidr {
            anyhow::bail!(
                "pod CIDR changed from {} (in {}/ipam.json) to {}; run `seta-agent cleanup --node {}` first",
                pool.cidr,
                cfg.state_dir.display(),
                cfg.pod_cidr,
                cfg.node
            );
        }
        let router = pool.router();
        setup_host_devices(&nl, &cfg, router).await?;
        {
            let dp = dp.clone();
            tokio::task::spawn_blocking(move || dp.attach_host(HOST_DEV)).await??;
        }
        let mut eps = EndpointMap::open(dp.pin_dir())?;
        let mut ipc = IpcacheMap::open(dp.pin_dir())?;
        eps.upsert(
            router,
            &EndpointInfo {
                flags: ENDPOINT_F_HOST,
                ..Default::default()
            },
        )?;
        ipc.upsert(
            router,
            32,
            &RemoteEndpointInfo {
                sec_identity: ID_HOST,
                ..Default::default()
            },
        )?;

        let identities: IdentityAllocator = store.load("identities.json")?;
        // Pool allocations without an endpoint are kept: a CNI ADD may be between
        // its IPAM call and its endpoint call. They are released by CNI DEL/GC.
        pool.cidr = cfg.pod_cidr;
        let agent = Arc::new(Self {
            cfg,
            dp,
            nl,
            store,
            inner: Mutex::new(Inner {
                pool,
                identities,
                endpoints: BTreeMap::new(),
                reserved_ids: Default::default(),
                eps,
                ipc,
            }),
            started: Instant::now(),
            restored: Default::default(),
        });
        agent.restore().await?;
        agent.process_delete_queue().await;
        Ok(agent)
    }

    /// Re-adopt endpoints from the state dir. Live ones keep their pinned
    /// programs (no reload, no gap); vanished ones are cleaned up; stray pins
    /// and map entries are removed.
    async fn restore(&self) -> Result<()> {
        let saved = self.store.load_endpoints();
        let mut inner = self.inner.lock().await;
        // identities are re-counted from the endpoints that survive
        inner.identities = IdentityAllocator::default();
        let mut restored = 0;
        for mut ep in saved {
            let link = self.nl.link(&ep.interface_name).await?;
            match link {
                Some(l) if l.index == ep.interface_index => {
                    ep.identity = inner.identities.acquire(&ep.labels).map_err(|e| anyhow::anyhow!("{e}"))?;
                    if !self.dp.endpoint_attached(&ep.interface_name) {
                        ep.state = EndpointState::Regenerating;
                        let cfg = prog_config(&ep).map_err(anyhow::Error::msg)?;
                        let dp = self.dp.clone();
                        tokio::task::spawn_blocking(move || dp.attach_endpoint(&cfg)).await??;
                    }
                    let info = host_entry(&ep).map_err(anyhow::Error::msg)?;
                    inner.eps.upsert(ep.ipv4, &info)?;
                    inner.ipc.upsert(
                        ep.ipv4,
                        32,
                        &RemoteEndpointInfo {
                            sec_identity: ep.identity,
                            ..Default::default()
                        },
                    )?;
                    let _ = inner.pool.allocate_ip(ep.ipv4, &ep.container_id);
                    ep.state = EndpointState::Ready;
                    self.store.save_endpoint(&ep)?;
                    tracing::info!(id = ep.id, ip = %ep.ipv4, "restored endpoint");
                    inner.endpoints.insert(ep.id, ep);
                    restored += 1;
                }
                _ => {
                    tracing::info!(id = ep.id, ifname = %ep.interface_name, "endpoint's interface is gone; removing it");
                    self.dp.detach_endpoint(&ep.interface_name)?;
                    inner.eps.remove(ep.ipv4)?;
                    inner.ipc.remove(ep.ipv4, 32)?;
                    let _ = inner.pool.release(ep.ipv4);
                    self.store.remove_endpoint(ep.id)?;
                }
            }
        }
        // stray kernel state that no endpoint owns
        let router = inner.pool.router();
        let known: std::collections::BTreeSet<Ipv4Addr> = inner.endpoints.values().map(|e| e.ipv4).chain([router]).collect();
        for (ip, _) in inner.eps.list() {
            if !known.contains(&ip) {
                inner.eps.remove(ip)?;
            }
        }
        for (ip, plen, _) in inner.ipc.list() {
            if plen == 32 && inner.pool.cidr.contains(&ip) && !known.contains(&ip) {
                inner.ipc.remove(ip, 32)?;
            }
        }
        let devs: std::collections::BTreeSet<String> = inner
            .endpoints
            .values()
            .map(|e| e.interface_name.clone())
            .chain([HOST_DEV.to_string()])
            .collect();
        for d in self.dp.pinned_link_devices() {
            if !devs.contains(&d) {
                self.dp.detach_endpoint(&d)?;
            }
        }
        self.save_pool_and_ids(&inner)?;
        self.restored.store(restored, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Finish DELs that seta-cni queued while the agent was down.
    async fn process_delete_queue(&self) {
        let dir = self.cfg.delete_queue_dir();
        let Ok(rd) = std::fs::read_dir(&dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let parsed = std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
            if let Some(cid) = parsed.as_ref().and_then(|v| v["container-id"].as_str()) {
                let _ = self.delete_endpoint(&EndpointRef::ContainerId(cid.into())).await;
                let _ = self.ipam_release_owner(cid).await;
                if let Some(ifname) = parsed.as_ref().and_then(|v| v["host-ifname"].as_str()) {
                    let _ = self.nl.del_link_by_name(ifname).await;
                }
                tracing::info!(container = cid, "processed queued CNI DEL");
            }
            let _ = std::fs::remove_file(&p);
        }
    }

    fn save_pool_and_ids(&self, inner: &Inner) -> Result<()> {
        self.store.save("ipam.json", &inner.pool)?;
        self.store.save("identities.json", &inner.identities)
    }

    pub fn config(&self) -> AgentConfig {
        AgentConfig {
            node: self.cfg.node.clone(),
            pod_cidr: self.cfg.pod_cidr,
            router_ip: Ipv4Addr::from(u32::from(self.cfg.pod_cidr.network()) + 1),
            state_dir: self.cfg.state_dir.display().to_string(),
            socket: self.cfg.socket.display().to_string(),
            bpffs: self.cfg.bpffs.display().to_string(),
            pin_dir: self.cfg.pin_dir.display().to_string(),
            cni_conf_dir: self.cfg.cni_conf_dir.display().to_string(),
            abi_version: seta_abi::ABI_VERSION,
        }
    }

    pub async fn status(&self) -> Status {
        let inner = self.inner.lock().await;
        let mut states = BTreeMap::new();
        for e in inner.endpoints.values() {
            *states.entry(e.state.to_string()).or_insert(0) += 1;
        }
        Status {
            node: self.cfg.node.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            healthy: true,
            uptime_seconds: self.started.elapsed().as_secs(),
            datapath: format!("eBPF, pins {}", self.cfg.pin_dir.display()),
            attach_mode: "tcx".into(),
            endpoints: inner.endpoints.len(),
            endpoint_states: states,
            ipam: IpamStatus {
                cidr: inner.pool.cidr,
                allocated: inner.pool.allocated.len(),
                capacity: inner.pool.capacity(),
                allocations: inner.pool.allocated.clone(),
            },
            restored_endpoints: self.restored.load(std::sync::atomic::Ordering::Relaxed),
            cni_config: self.cfg.cni_conf_path().display().to_string(),
        }
    }

    pub async fn ipam_allocate(&self, owner: &str) -> Result<IpamResponse, ApiError> {
        if owner.is_empty() {
            return Err(ApiError::BadRequest(
                "query parameter owner is required (container id or namespace/pod)".into(),
            ));
        }
        let mut inner = self.inner.lock().await;
        let ip = inner.pool.allocate(owner).map_err(|e| ApiError::Conflict(e.to_string()))?;
        self.save_pool_and_ids(&inner)?;
        Ok(IpamResponse {
            ipv4: IpamAddress {
                ip,
                gateway: inner.pool.router(),
                cidr: inner.pool.cidr,
            },
        })
    }

    pub async fn ipam_release(&self, ip: Ipv4Addr) -> Result<(), ApiError> {
        let mut inner = self.inner.lock().await;
        if inner.endpoints.values().any(|e| e.ipv4 == ip) {
            return Err(ApiError::Conflict(format!(
                "{ip} is used by an endpoint; delete the endpoint instead"
            )));
        }
        inner.pool.release(ip).map_err(|e| ApiError::NotFound(e.to_string()))?;
        self.save_pool_and_ids(&inner)?;
        Ok(())
    }

    /// Release every address of `owner` that no endpoint uses. Returns how many.
    pub async fn ipam_release_owner(&self, owner: &str) -> Result<usize, ApiError> {
        let mut inner = self.inner.lock().await;
        let ips: Vec<Ipv4Addr> = inner
            .pool
            .allocated
            .iter()
            .filter(|(ip, o)| o.as_str() == owner && !inner.endpoints.values().any(|e| e.ipv4 == **ip))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &ips {
            let _ = inner.pool.release(*ip);
        }
        self.save_pool_and_ids(&inner)?;
        Ok(ips.len())
    }

    pub async fn list(&self) -> Vec<Endpoint> {
        self.inner.lock().await.endpoints.values().cloned().collect()
    }

    pub async fn get(&self, r: &EndpointRef) -> Result<Endpoint, ApiError> {
        let inner = self.inner.lock().await;
        inner
            .endpoints
            .values()
            .find(|e| r.matches(e))
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("endpoint {r:?} not found")))
    }

    /// Create (or idempotently confirm) an endpoint; returns once its programs
    /// and map entries are live.
    pub async fn create_endpoint(&self, req: EndpointChangeRequest) -> Result<Endpoint, ApiError> {
        let bad = |m: String| ApiError::BadRequest(m);
        if req.container_id.is_empty() {
            return Err(bad("container-id: must not be empty".into()));
        }
        let mac = parse_mac(&req.mac).map_err(|e| bad(format!("mac: {e}")))?;
        let host_mac = parse_mac(&req.host_mac).map_err(|e| bad(format!("host-mac: {e}")))?;
        let labels: LabelSet = req
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| Label::parse(l, "k8s").map_err(|e| bad(format!("labels[{i}]: {e}"))))
            .collect::<Result<_, _>>()?;
        let link = self
            .nl
            .link(&req.interface_name)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .ok_or_else(|| bad(format!("interface-name: no interface {:?} on this node", req.interface_name)))?;
        if link.index != req.interface_index {
            return Err(bad(format!(
                "interface-index: {} does not match {} (ifindex {})",
                req.interface_index, req.interface_name, link.index
            )));
        }
        if link.mac != host_mac {
            return Err(bad(format!("host-mac: {} is not the MAC of {}", req.host_mac, req.interface_name)));
        }

        // Phase 1 (locked): validate against current state, reserve id + identity.
        let mut ep = {
            let mut inner = self.inner.lock().await;
            if let Some(existing) = inner.endpoints.values().find(|e| e.container_id == req.container_id) {
                if existing.ipv4 == req.ipv4 && existing.interface_index == req.interface_index && existing.state == EndpointState::Ready {
                    return Ok(existing.clone());
                }
                return Err(ApiError::Conflict(format!(
                    "container {} already has endpoint {} ({}); delete it first",
                    req.container_id, existing.id, existing.ipv4
                )));
            }
            if !inner.pool.cidr.contains(&req.ipv4) {
                return Err(bad(format!(
                    "ipv4: {} is not in this node's pod CIDR {}",
                    req.ipv4, inner.pool.cidr
                )));
            }
            match inner.pool.owner_of(req.ipv4) {
                None => return Err(bad(format!("ipv4: {} was not allocated through IPAM", req.ipv4))),
                Some(_) if inner.endpoints.values().any(|e| e.ipv4 == req.ipv4) => {
                    return Err(ApiError::Conflict(format!(
                        "ipv4: {} is already used by another endpoint",
                        req.ipv4
                    )))
                }
                _ => {}
            }
            let used: Vec<u16> = inner.endpoints.keys().copied().chain(inner.reserved_ids.iter().copied()).collect();
            let id = next_endpoint_id(used.iter()).ok_or_else(|| ApiError::Conflict("no free endpoint id".into()))?;
            let identity = inner.identities.acquire(&labels).map_err(|e| ApiError::Conflict(e.to_string()))?;
            inner.reserved_ids.insert(id);
            Endpoint {
                id,
                container_id: req.container_id.clone(),
                container_interface_name: req.container_interface_name.clone(),
                pod_name: req.pod_name.clone(),
                namespace: req.namespace.clone(),
                ipv4: req.ipv4,
                mac: seta_core::endpoint::format_mac(&mac),
                host_mac: seta_core::endpoint::format_mac(&host_mac),
                interface_name: req.interface_name.clone(),
                interface_index: req.interface_index,
                netns_path: req.netns_path.clone(),
                labels: labels.clone(),
                identity,
                state: EndpointState::Regenerating,
            }
        };

        // Phase 2 (unlocked): load and attach the endpoint's programs.
        let cfg = prog_config(&ep).map_err(bad)?;
        let dp = self.dp.clone();
        let t_attach = Instant::now();
        let attached = tokio::task::spawn_blocking(move || dp.attach_endpoint(&cfg)).await;
        let attach_ms = t_attach.elapsed().as_secs_f64() * 1e3;

        // Phase 3 (locked): maps, state, or roll back.
        let mut inner = self.inner.lock().await;
        inner.reserved_ids.remove(&ep.id);
        let result = match attached {
            Ok(Ok(())) => (|| -> Result<(), ApiError> {
                let info = host_entry(&ep).map_err(bad)?;
                inner.eps.upsert(ep.ipv4, &info)?;
                inner.ipc.upsert(
                    ep.ipv4,
                    32,
                    &RemoteEndpointInfo {
                        sec_identity: ep.identity,
                        ..Default::default()
                    },
                )?;
                ep.state = EndpointState::Ready;
                self.store.save_endpoint(&ep)?;
                Ok(())
            })(),
            Ok(Err(e)) => Err(ApiError::Internal(format!("attaching programs to {}: {e}", ep.interface_name))),
            Err(e) => Err(ApiError::Internal(format!("attach task: {e}"))),
        };
        if let Err(e) = result {
            let _ = self.dp.detach_endpoint(&ep.interface_name);
            let _ = inner.eps.remove(ep.ipv4);
            let _ = inner.ipc.remove(ep.ipv4, 32);
            inner.identities.release(&ep.labels);
            let _ = self.store.remove_endpoint(ep.id);
            return Err(e);
        }
        inner.endpoints.insert(ep.id, ep.clone());
        self.save_pool_and_ids(&inner)?;
        tracing::info!(id = ep.id, ip = %ep.ipv4, identity = ep.identity, dev = %ep.interface_name, attach_ms, "endpoint ready");
        Ok(ep)
    }

    /// Remove an endpoint: programs, map entries, identity reference, IP.
    pub async fn delete_endpoint(&self, r: &EndpointRef) -> Result<Endpoint, ApiError> {
        let mut inner = self.inner.lock().await;
        let id = inner
            .endpoints
            .values()
            .find(|e| r.matches(e))
            .map(|e| e.id)
            .ok_or_else(|| ApiError::NotFound(format!("endpoint {r:?} not found")))?;
        let mut ep = inner.endpoints.remove(&id).expect("present");
        ep.state = EndpointState::Disconnecting;
        self.dp
            .detach_endpoint(&ep.interface_name)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        inner.eps.remove(ep.ipv4)?;
        inner.ipc.remove(ep.ipv4, 32)?;
        inner.identities.release(&ep.labels);
        let _ = inner.pool.release(ep.ipv4);
        self.store.remove_endpoint(ep.id)?;
        self.save_pool_and_ids(&inner)?;
        ep.state = EndpointState::Disconnected;
        tracing::info!(id = ep.id, ip = %ep.ipv4, "endpoint deleted");
        Ok(ep)
    }

    /// TCX programs per device in this node's namespace.
    pub async fn attachments(&self) -> Result<Vec<Attachment>, ApiError> {
        let links = self.nl.links().await.map_err(|e| ApiError::Internal(e.to_string()))?;
        let dp = self.dp.clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for l in links {
                let Ok(progs) = seta_datapath::loader::query_tcx(&l.name) else {
                    continue;
                };
                for (dir, name, id) in progs {
                    let pin = dp.link_pin(&l.name, &dir);
                    out.push(Attachment {
                        device: l.name.clone(),
                        ifindex: l.index,
                        direction: dir,
                        program: name,
                        prog_id: id,
                        pinned: pin.exists().then(|| pin.display().to_string()),
                    });
                }
            }
            out
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(out)
    }
}

impl From<seta_datapath::DatapathError> for ApiError {
    fn from(e: seta_datapath::DatapathError) -> Self {
        Self::Internal(e.to_string())
    }
}

async fn setup_host_devices(nl: &Netlink, cfg: &Config, router: Ipv4Addr) -> Result<()> {
    if nl.link(HOST_DEV).await?.is_none() {
        nl.create_veth(HOST_DEV, NET_DEV).await?;
    }
    let host = nl.link(HOST_DEV).await?.context("seta_host missing after creation")?;
    let net = nl.link(NET_DEV).await?.context("seta_net missing after creation")?;
    nl.set_arp(host.index, false).await?;
    nl.set_up(host.index).await?;
    nl.set_up(net.index).await?;
    nl.add_addr(host.index, router, 32).await?;
    nl.replace_route(cfg.pod_cidr.network(), cfg.pod_cidr.prefix_len(), None, host.index, Some(router))
        .await?;
    use seta_datapath::sysfs::set_ipv4_sysctl;
    set_ipv4_sysctl("ip_forward", "1")?;
    for dev in ["all", "default", HOST_DEV, NET_DEV] {
        set_ipv4_sysctl(&format!("conf/{dev}/rp_filter"), "0")?;
    }
    Ok(())
}

/// `seta-agent cleanup`: remove everything of this node (pins, devices, state, socket, CNI conf).
pub async fn cleanup(cfg: &Config) -> Result<Vec<String>> {
    let mut done = Vec::new();
    Datapath::new(&cfg.pin_dir)?.remove_all()?;
    done.push(format!("removed pins {}", cfg.pin_dir.display()));
    if let Ok(nl) = Netlink::current() {
        for l in nl.links().await.unwrap_or_default() {
            if (l.name == HOST_DEV || l.name.starts_with("lxc")) && nl.del_link(l.index).await.is_ok() {
                done.push(format!("deleted device {}", l.name));
            }
        }
    }
    for (what, p) in [
        ("state dir", cfg.state_dir.clone()),
        ("socket", cfg.socket.clone()),
        ("CNI config", cfg.cni_conf_path()),
    ] {
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if r.is_ok() {
            done.push(format!("removed {what} {}", p.display()));
        }
    }
    let _ = std::fs::remove_dir_all(cfg.delete_queue_dir());
    Ok(done)
}
