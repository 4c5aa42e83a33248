//! Endpoint lifecycle: IPAM, create (with rollback), delete, restore as a
//! reconcile against what is pinned, relabel.
use super::*;

impl Agent {
    /// Re-adopt endpoints from the state dir. Live ones keep their pinned
    /// programs (no reload, no gap); vanished ones are cleaned up; stray pins
    /// and map entries are removed.
    pub(super) async fn restore(&self) -> Result<()> {
        let saved = self.store.load_endpoints();
        let mut inner = self.inner.lock().await;
        // identities keep their numbers; references are re-counted from the
        // endpoints that survive
        inner.identities.start_recount();
        let mut restored = 0;
        // a live endpoint keeps its filter if it runs this build's program
        let want = self.kernel.endpoint_program().await?;
        for mut ep in saved {
            let link = self.kernel.link(&ep.interface_name).await?;
            match link {
                Some(l) if l.index == ep.interface_index => {
                    ep.identity = self
                        .acquire_identity(&mut inner, &ep.labels)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    // attached with this build's program (an older one is replaced in place)
                    let attached = self.kernel.endpoint_filter(l.index).await? == Some(want);
                    if !attached || !self.kernel.policy_map_exists(ep.id) {
                        ep.state = EndpointState::Regenerating;
                        let cfg = prog_config(&ep).map_err(anyhow::Error::msg)?;
                        // an existing policy map is kept as is; the regeneration below brings it up to date
                        self.kernel.attach_endpoint(cfg, None).await?;
                    }
                    publish(&mut inner, &ep).map_err(|e| anyhow::anyhow!("{e}"))?;
                    let _ = inner.pool.allocate_ip(ep.ipv4, &ep.container_id);
                    ep.state = EndpointState::Ready;
                    self.store.save_endpoint(&ep)?;
                    tracing::info!(id = ep.id, ip = %ep.ipv4, "restored endpoint");
                    inner.endpoints.insert(ep.id, ep);
                    restored += 1;
                }
                _ => {
                    tracing::info!(id = ep.id, ifname = %ep.interface_name, "endpoint's interface is gone; removing it");
                    self.kernel.detach_endpoint(&ep.interface_name)?;
                    self.kernel.remove_endpoint_policy(ep.id)?;
                    self.kernel.endpoint_remove(ep.ipv4)?;
                    inner.ipcache_local(ep.ipv4, None);
                    let _ = inner.pool.release(ep.ipv4);
                    self.store.remove_endpoint(ep.id)?;
                }
            }
        }
        // stray kernel state that no endpoint owns
        let router = inner.pool.router();
        let known: std::collections::BTreeSet<Ipv4Addr> = inner.endpoints.values().map(|e| e.ipv4).chain([router]).collect();
        for (ip, _) in self.kernel.endpoint_list() {
            if !known.contains(&ip) {
                self.kernel.endpoint_remove(ip)?;
            }
        }
        // (stray ipcache entries go in the full reconcile at the end of start)
        let devs: std::collections::BTreeSet<String> = inner
            .endpoints
            .values()
            .map(|e| e.interface_name.clone())
            .chain([HOST_DEV.to_string(), VXLAN_DEV.to_string()])
            .chain(self.node_dev.clone())
            .collect();
        for d in self.kernel.pinned_link_devices() {
            if !devs.contains(&d) {
                self.kernel.detach_links(&d)?;
            }
        }
        let ids: std::collections::BTreeSet<u16> = inner.endpoints.keys().copied().collect();
        for id in self.kernel.policy_map_ids() {
            if id <= u16::MAX as u32 && !ids.contains(&(id as u16)) {
                self.kernel.recycle_policy_map(id as u16)?; // a spare, emptied
            }
        }
        inner.identities.finish_recount();
        self.reconcile_host_ports(&inner.endpoints.values().cloned().collect::<Vec<_>>());
        self.save_pool_and_ids(&inner)?;
        self.restored.store(restored, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Finish DELs that seta-cni queued while the agent was down.
    pub(super) async fn process_delete_queue(&self) {
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
                    let _ = self.kernel.delete_link(ifname).await;
                }
                tracing::info!(container = cid, "processed queued CNI DEL");
            }
            let _ = std::fs::remove_file(&p);
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
            mtu: self.underlay_mtu,
            route_mtu: self.pod_mtu(),
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
        Ok(inner.endpoints[&inner.find(r)?].clone())
    }

    /// Create (or idempotently confirm) an endpoint; returns once its programs
    /// and map entries are live.
    pub async fn create_endpoint(&self, req: EndpointChangeRequest) -> Result<Endpoint, ApiError> {
        let t0 = Instant::now();
        let r = self.create_endpoint_timed(req, t0).await;
        self.observe_create(r.is_ok(), t0.elapsed().as_secs_f64());
        r
    }

    async fn create_endpoint_timed(&self, req: EndpointChangeRequest, t0: Instant) -> Result<Endpoint, ApiError> {
        let bad = |m: String| ApiError::BadRequest(m);
        let (mac, host_mac, named_ports) = self.check_request(&req).await?;
        // Phase 0: the identity's number (kvstore I/O only for a new label set)
        let labels = {
            let mut inner = self.inner.lock().await;
            self.identity_labels(&mut inner, &req.labels, &req.namespace)?
        };
        let (reserved, ids_guard) = self.reserve_identity(&labels).await?;
        // Phase 1 (locked): validate against current state, reserve id + identity.
        let t_lock1 = Instant::now();
        let phase1 = async {
            let mut inner = self.inner.lock().await;
            let lock1_ms = t_lock1.elapsed().as_secs_f64() * 1e3;
            tracing::debug!(lock1_ms, "create: phase 1 lock");
            if let Some(existing) = inner.endpoints.values().find(|e| e.container_id == req.container_id) {
                if existing.ipv4 == req.ipv4 && existing.interface_index == req.interface_index && existing.state == EndpointState::Ready {
                    return Ok(Err(existing.clone()));
                }
                return Err(ApiError::Conflict(format!(
                    "container {} already has endpoint {} ({}); delete it first",
                    req.container_id, existing.id, existing.ipv4
                )));
            }
            if inner.creating.contains(&req.container_id) {
                return Err(ApiError::Conflict(format!(
                    "container {} is being attached by another request",
                    req.container_id
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
            let identity = self.take_reserved(&mut inner, &labels, reserved).await?;
            inner.reserved_ids.insert(id);
            inner.creating.insert(req.container_id.clone());
            let ep = new_endpoint(&req, id, &mac, &host_mac, named_ports, labels.clone(), identity);
            // its policy, computed before the program exists: enforced from the first packet
            let rules = inner.policy.rules();
            let mut universe = inner.universe();
            universe.retain(|u| u.id != identity);
            universe.push(IdentityInfo {
                id: identity,
                labels: labels.clone(),
                kind: IdKind::Endpoint,
            });
            let r = inner.resolve(&rules, &ep, &universe);
            let (ingress, egress) = (r.policy.ingress_enforced, r.policy.egress_enforced);
            Ok(Ok((ep, r.entries(), ingress, egress, inner.policy.revision())))
        };
        let phase1: Result<_, ApiError> = phase1.await;
        if let (Err(_), Some(id)) = (&phase1, reserved) {
            // refused after the kvstore gave this node a reference: give it back
            let mut inner = self.inner.lock().await;
            if inner.identities.release_unused(id) {
                self.releases_due.notify_one();
            }
        }
        drop(ids_guard);
        // (Err: the same attachment again, already ready: idempotent)
        let (mut ep, entries, ing, egr, revision) = match phase1? {
            Ok(p) => p,
            Err(existing) => return Ok(existing),
        };
        ep.ingress_enforced = ing;
        ep.egress_enforced = egr;
        ep.policy_revision = revision;
        ep.policy_entries = entries.len();

        // Phase 2 (unlocked): load the program, fill its policy map, attach.
        let t_attach = Instant::now();
        let attached = match prog_config(&ep) {
            Ok(cfg) => self.kernel.attach_endpoint(cfg, Some(entries)).await,
            Err(e) => {
                // nothing was created in the kernel: give back what phase 1 took
                let mut inner = self.inner.lock().await;
                inner.reserved_ids.remove(&ep.id);
                inner.creating.remove(&ep.container_id);
                self.release_identity(&mut inner, &ep.labels).await;
                return Err(bad(e));
            }
        };
        let attach_ms = t_attach.elapsed().as_secs_f64() * 1e3;
        let ep = self.commit_endpoint(ep, attached, t0, attach_ms).await?;
        if !ep.host_ports.is_empty() {
            self.host_ports_changed().await;
        }
        Ok(ep)
    }

    /// The request's own fields and its interface, checked before anything
    /// is taken: the MACs and named ports.
    async fn check_request(&self, req: &EndpointChangeRequest) -> Result<([u8; 6], [u8; 6], BTreeMap<String, (u8, u16)>), ApiError> {
        let bad = |m: String| ApiError::BadRequest(m);
        if req.container_id.is_empty() {
            return Err(bad("container-id: must not be empty".into()));
        }
        let mac = parse_mac(&req.mac).map_err(|e| bad(format!("mac: {e}")))?;
        let host_mac = parse_mac(&req.host_mac).map_err(|e| bad(format!("host-mac: {e}")))?;
        let named_ports: BTreeMap<String, (u8, u16)> = req
            .named_ports
            .iter()
            .enumerate()
            .map(|(i, p)| seta_core::endpoint::parse_named_port(p).map_err(|e| bad(format!("named-ports[{i}]: {e}"))))
            .collect::<Result<_, _>>()?;
        for (i, l) in req.labels.iter().enumerate() {
            Label::parse(l, "k8s").map_err(|e| bad(format!("labels[{i}]: {e}")))?;
        }
        let link = self
            .kernel
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
        Ok((mac, host_mac, named_ports))
    }

    /// Phase 3 of a create (locked): the endpoint's map entries and state
    /// once its program is attached, or a rollback of what this request did.
    async fn commit_endpoint(
        &self,
        mut ep: Endpoint,
        attached: Result<(), seta_datapath::DatapathError>,
        t0: Instant,
        attach_ms: f64,
    ) -> Result<Endpoint, ApiError> {
        // Phase 3 (locked): maps, state, or roll back what this request did.
        let t_lock3 = Instant::now();
        let mut inner = self.inner.lock().await;
        let lock3_ms = t_lock3.elapsed().as_secs_f64() * 1e3;
        inner.reserved_ids.remove(&ep.id);
        inner.creating.remove(&ep.container_id);
        let result = match attached {
            Ok(()) => (|| -> Result<(), ApiError> {
                self.claim_host_ports(&ep)?;
                publish(&mut inner, &ep)?;
                ep.state = EndpointState::Ready;
                self.store.save_endpoint(&ep)?;
                Ok(())
            })(),
            Err(e) => Err(ApiError::Internal(format!("attaching programs to {}: {e}", ep.interface_name))),
        };
        if let Err(e) = result {
            self.release_host_ports(&ep.container_id);
            let _ = self.kernel.detach_endpoint(&ep.interface_name);
            let _ = self.kernel.remove_endpoint_policy(ep.id);
            let _ = self.kernel.endpoint_remove(ep.ipv4);
            inner.ipcache_local(ep.ipv4, None);
            self.release_identity(&mut inner, &ep.labels).await;
            let _ = self.store.remove_endpoint(ep.id);
            return Err(e);
        }
        self.share_endpoint_ip(ep.ipv4, Some(&ep));
        // (also when the kvstore watch already reported it: adding is idempotent)
        let new_identity = !inner.endpoints.values().any(|e| e.identity == ep.identity);
        let new_ports = !ep.named_ports.is_empty();
        inner.endpoints.insert(ep.id, ep.clone());
        let ipblock_changed = self.sync_ipblock(&mut inner)?;
        if new_ports || ipblock_changed {
            // named ports and per-IP identities change other rules' keys: full
            self.regenerate_all(&mut inner);
        } else {
            let me = inner.universe().into_iter().find(|u| u.id == ep.identity);
            let added: Vec<IdentityInfo> = if new_identity { me.into_iter().collect() } else { vec![] };
            // the new endpoint's own state is cached; peers learn its identity
            let r = inner.resolve(&inner.policy.rules(), &ep, &inner.universe());
            inner.policy.cache(ep.id, r);
            if !added.is_empty() {
                self.identities_changed(&mut inner, &added, &[], Some(ep.id));
            }
        }
        self.save_pool_and_ids(&inner)?;
        let total_ms = t0.elapsed().as_secs_f64() * 1e3;
        tracing::info!(id = ep.id, ip = %ep.ipv4, identity = ep.identity, dev = %ep.interface_name, attach_ms, lock3_ms, total_ms, "endpoint ready");
        Ok(inner.endpoints[&ep.id].clone())
    }

    /// Remove an endpoint: programs, map entries, identity reference, IP.
    pub async fn delete_endpoint(&self, r: &EndpointRef) -> Result<Endpoint, ApiError> {
        let mut inner = self.inner.lock().await;
        let id = inner.find(r)?;
        let mut ep = inner.endpoints.remove(&id).expect("present");
        ep.state = EndpointState::Disconnecting;
        self.kernel
            .detach_endpoint(&ep.interface_name)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        self.kernel.endpoint_remove(ep.ipv4)?;
        inner.ipcache_local(ep.ipv4, None);
        self.share_endpoint_ip(ep.ipv4, None);
        // keep the emptied map registered: the next endpoint with this id finds it ready
        self.kernel.recycle_policy_map(ep.id)?;
        match self.kernel.ct_flush_ip(ep.ipv4) {
            Ok(n) if n > 0 => tracing::debug!(ip = %ep.ipv4, flushed = n, "conntrack entries of the deleted endpoint"),
            Ok(_) => {}
            Err(e) => tracing::warn!(ip = %ep.ipv4, %e, "could not flush conntrack entries of the deleted endpoint"),
        }
        self.release_identity(&mut inner, &ep.labels).await;
        let _ = inner.pool.release(ep.ipv4);
        // others' policies lose entries for a freed identity / ports / pod IP
        inner.policy.forget(ep.id);
        let ipblock_changed = self.sync_ipblock(&mut inner)?;
        if !ep.named_ports.is_empty() || ipblock_changed {
            self.regenerate_all(&mut inner);
        } else if !inner.identities.in_use(ep.identity) {
            self.identities_changed(&mut inner, &[], &[ep.identity], None);
        }
        self.store.remove_endpoint(ep.id)?;
        self.save_pool_and_ids(&inner)?;
        ep.state = EndpointState::Disconnected;
        tracing::info!(id = ep.id, ip = %ep.ipv4, "endpoint deleted");
        drop(inner);
        if self.release_host_ports(&ep.container_id) {
            self.host_ports_changed().await;
        }
        Ok(ep)
    }

    /// Programs per device in this node's namespace: TCX links and cls_bpf
    /// filters.
    pub async fn attachments(&self) -> Result<Vec<Attachment>, ApiError> {
        self.kernel.attachments().await.map_err(|e| ApiError::Internal(format!("{e:#}")))
    }

    /// Replace an endpoint's pod labels; a new identity follows, and every
    /// policy map that depends on it.
    pub async fn set_labels(&self, r: &EndpointRef, labels: Vec<String>) -> Result<Endpoint, ApiError> {
        // the new label set's number first, without the lock
        let new_labels = {
            let mut inner = self.inner.lock().await;
            let id = inner.find(r)?;
            let ns = inner.endpoints[&id].namespace.clone();
            self.identity_labels(&mut inner, &labels, &ns)?
        };
        let (reserved, _ids) = self.reserve_identity(&new_labels).await?;
        let mut inner = self.inner.lock().await;
        let id = inner.find(r)?;
        inner.endpoints.get_mut(&id).unwrap().pod_labels = labels;
        self.relabel(&mut inner, id, new_labels, reserved).await?;
        self.regenerate_all(&mut inner);
        self.save_pool_and_ids(&inner)?;
        Ok(inner.endpoints[&id].clone())
    }

    /// Give endpoint `id` the identity of `new_labels`, numbered beforehand
    /// by `reserve_identity` (`reserved`).
    pub(super) async fn relabel(&self, inner: &mut Inner, id: u16, new_labels: LabelSet, reserved: Option<u32>) -> Result<(), ApiError> {
        let old = inner.endpoints[&id].clone();
        if old.labels == new_labels {
            return Ok(());
        }
        let identity = self.take_reserved(inner, &new_labels, reserved).await?;
        let mut ep = old.clone();
        ep.labels = new_labels;
        ep.identity = identity;
        if identity != old.identity {
            // the new identity's policy first, then the endpoint entry the program reads
            let rules = inner.policy.rules();
            let mut universe = inner.universe();
            universe.retain(|u| u.id != identity);
            universe.push(IdentityInfo {
                id: identity,
                labels: ep.labels.clone(),
                kind: IdKind::Endpoint,
            });
            let entries = inner.resolve(&rules, &ep, &universe).entries();
            let cfg = prog_config(&ep).map_err(ApiError::BadRequest)?;
            self.kernel.attach_endpoint(cfg, Some(entries)).await?;
            publish(inner, &ep)?;
            self.share_endpoint_ip(ep.ipv4, Some(&ep));
        }
        self.release_identity(inner, &old.labels).await;
        tracing::info!(id, old = old.identity, new = identity, "endpoint relabelled");
        inner.endpoints.insert(id, ep);
        Ok(())
    }
}

/// The endpoint a create request describes, before its program is attached.
fn new_endpoint(
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
