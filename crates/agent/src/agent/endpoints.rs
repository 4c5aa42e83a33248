//! Endpoint lifecycle: IPAM, create (with rollback), delete, restore as a
//! reconcile against what is pinned, relabel.
use super::*;

impl Agent {
    /// Re-adopt endpoints from the state dir. Live ones keep their pinned
    /// programs (no reload, no gap); vanished ones are cleaned up; stray pins
    /// and map entries are removed.
    pub(super) async fn restore(&self) -> Result<()> {
        let saved = self.store.load_endpoints();
        let mut eps = self.endpoints.lock().await;
        // identities keep their numbers; references are re-counted from the
        // endpoints that survive
        self.identities.get().start_recount();
        let mut restored = 0;
        // a live endpoint keeps its filter if it runs this build's program
        let want = self.kernel.endpoint_program().await?;
        for mut ep in saved {
            let link = self.kernel.link(&ep.interface_name).await?;
            match link {
                Some(l) if l.index == ep.interface_index => {
                    ep.identity = self.acquire_identity(&ep.labels).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    // attached with this build's program (an older one is replaced in place)
                    let attached = self.kernel.endpoint_filter(l.index).await? == Some(want);
                    if !attached || !self.kernel.policy_map_exists(ep.id) {
                        ep.state = EndpointState::Regenerating;
                        let cfg = prog_config(&ep).map_err(anyhow::Error::msg)?;
                        // an existing policy map is kept as is; the regeneration below brings it up to date
                        self.kernel.attach_endpoint(cfg, None).await?;
                    }
                    self.publish(&ep).map_err(|e| anyhow::anyhow!("{e}"))?;
                    eps.adopt_ip(ep.ipv4, &ep.container_id);
                    ep.state = EndpointState::Ready;
                    self.store.save_endpoint(&ep)?;
                    tracing::info!(id = ep.id, ip = %ep.ipv4, "restored endpoint");
                    eps.insert(ep);
                    restored += 1;
                }
                _ => {
                    tracing::info!(id = ep.id, ifname = %ep.interface_name, "endpoint's interface is gone; removing it");
                    self.kernel.detach_endpoint(&ep.interface_name)?;
                    self.kernel.remove_endpoint_policy(ep.id)?;
                    self.kernel.endpoint_remove(ep.ipv4)?;
                    let _ = self.ipcache.get().set_local(ep.ipv4, None);
                    eps.free_ip(ep.ipv4);
                    self.store.remove_endpoint(ep.id)?;
                }
            }
        }
        // stray kernel state that no endpoint owns
        let known: std::collections::BTreeSet<Ipv4Addr> = eps.values().map(|e| e.ipv4).chain([eps.router()]).collect();
        for (ip, _) in self.kernel.endpoint_list() {
            if !known.contains(&ip) {
                self.kernel.endpoint_remove(ip)?;
            }
        }
        // (stray ipcache entries go in the full reconcile at the end of start)
        let devs: std::collections::BTreeSet<String> = eps
            .values()
            .map(|e| e.interface_name.clone())
            .chain([HOST_DEV.to_string(), VXLAN_DEV.to_string()])
            .chain(self.node_dev.clone())
            .chain(self.other_devs())
            .collect();
        for d in self.kernel.pinned_link_devices() {
            if !devs.contains(&d) {
                self.kernel.detach_links(&d)?;
            }
        }
        let ids: std::collections::BTreeSet<u16> = eps.ids().into_iter().collect();
        for id in self.kernel.policy_map_ids() {
            if id <= u16::MAX as u32 && !ids.contains(&(id as u16)) {
                self.kernel.recycle_policy_map(id as u16)?; // a spare, emptied
            }
        }
        self.identities.get().finish_recount();
        self.reconcile_host_ports(&eps.values().cloned().collect::<Vec<_>>());
        self.sock_lb_reconcile(&eps.values().cloned().collect::<Vec<_>>())?;
        self.save_pool_and_ids(&eps)?;
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
        let mut eps = self.endpoints.lock().await;
        let ip = eps.allocate(owner)?;
        self.save_pool_and_ids(&eps)?;
        Ok(IpamResponse {
            ipv4: IpamAddress {
                ip,
                gateway: eps.router(),
                cidr: eps.cidr(),
            },
            mtu: self.underlay_mtu,
            route_mtu: self.pod_mtu(),
        })
    }

    pub async fn ipam_release(&self, ip: Ipv4Addr) -> Result<(), ApiError> {
        let mut eps = self.endpoints.lock().await;
        eps.release(ip)?;
        self.save_pool_and_ids(&eps)?;
        Ok(())
    }

    /// Release every address of `owner` that no endpoint uses. Returns how many.
    pub async fn ipam_release_owner(&self, owner: &str) -> Result<usize, ApiError> {
        let mut eps = self.endpoints.lock().await;
        let n = eps.release_owner(owner);
        self.save_pool_and_ids(&eps)?;
        Ok(n)
    }

    pub async fn list(&self) -> Vec<Endpoint> {
        self.endpoints.lock().await.values().cloned().collect()
    }

    pub async fn get(&self, r: &EndpointRef) -> Result<Endpoint, ApiError> {
        let eps = self.endpoints.lock().await;
        Ok(eps.get(eps.find(r)?).expect("found").clone())
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
        // under Kubernetes: the Pod's labels and named ports
        let req = self.with_pod(req).await?;
        let (mac, host_mac, named_ports) = self.check_request(&req).await?;
        // Phase 0: the identity's number (kvstore I/O only for a new label set)
        let labels = self.identity_labels(&req.labels, &req.namespace)?;
        let (reserved, ids_guard) = self.reserve_identity(&labels).await?;
        // Phase 1 (locked): validate against current state, reserve id + identity.
        let t_lock1 = Instant::now();
        let phase1 = async {
            let mut eps = self.endpoints.lock().await;
            let lock1_ms = t_lock1.elapsed().as_secs_f64() * 1e3;
            tracing::debug!(lock1_ms, "create: phase 1 lock");
            let id = match eps.admit(&req)? {
                crate::endpoints::Admission::Existing(ep) => return Ok(Err(*ep)),
                crate::endpoints::Admission::New(id) => id,
            };
            let identity = match self.take_reserved(&labels, reserved).await {
                Ok(identity) => identity,
                Err(e) => {
                    eps.finish(id, &req.container_id);
                    return Err(e);
                }
            };
            let ep = crate::endpoints::new_endpoint(&req, id, &mac, &host_mac, named_ports, labels.clone(), identity);
            // its policy, computed before the program exists: enforced from the first packet
            let (r, revision) = self.resolve_with(&eps, &ep);
            let (ingress, egress) = (r.policy.ingress_enforced, r.policy.egress_enforced);
            Ok(Ok((ep, r.entries(), ingress, egress, revision)))
        };
        let phase1: Result<_, ApiError> = phase1.await;
        if let (Err(_), Some(id)) = (&phase1, reserved) {
            // refused after the kvstore gave this node a reference: give it back
            if self.identities.get().release_unused(id) {
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
                self.endpoints.lock().await.finish(ep.id, &ep.container_id);
                self.release_identity(&ep.labels);
                return Err(bad(e));
            }
        };
        let attach_ms = t_attach.elapsed().as_secs_f64() * 1e3;
        let ep = self.commit_endpoint(ep, attached, t0, attach_ms).await?;
        if !ep.host_ports.is_empty() {
            self.services_resync().await;
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
        let mut eps = self.endpoints.lock().await;
        let lock3_ms = t_lock3.elapsed().as_secs_f64() * 1e3;
        eps.finish(ep.id, &ep.container_id);
        let result = match attached {
            Ok(()) => (|| -> Result<(), ApiError> {
                self.claim_host_ports(&ep)?;
                self.sock_lb_admit(&ep)?;
                self.publish(&ep)?;
                ep.state = EndpointState::Ready;
                self.store.save_endpoint(&ep)?;
                Ok(())
            })(),
            Err(e) => Err(ApiError::Internal(format!("attaching programs to {}: {e}", ep.interface_name))),
        };
        if let Err(e) = result {
            self.release_host_ports(&ep.container_id);
            self.sock_lb_forget(ep.id);
            let _ = self.kernel.detach_endpoint(&ep.interface_name);
            let _ = self.kernel.remove_endpoint_policy(ep.id);
            let _ = self.kernel.endpoint_remove(ep.ipv4);
            let _ = self.ipcache.get().set_local(ep.ipv4, None);
            self.release_identity(&ep.labels);
            let _ = self.store.remove_endpoint(ep.id);
            return Err(e);
        }
        self.share_endpoint_ip(ep.ipv4, Some(&ep));
        // (also when the kvstore watch already reported it: adding is idempotent)
        let new_identity = !eps.uses_identity(ep.identity);
        let new_ports = !ep.named_ports.is_empty();
        eps.insert(ep.clone());
        let ipblock_changed = self.sync_ipblock()?;
        if new_ports || ipblock_changed {
            // named ports and per-IP identities change other rules' keys: full
            self.regenerate_all(&mut eps);
        } else {
            let universe = self.universe();
            let me = universe.iter().find(|u| u.id == ep.identity).cloned();
            let added: Vec<IdentityInfo> = if new_identity { me.into_iter().collect() } else { vec![] };
            // the new endpoint's own state is cached; peers learn its identity
            let r = self.resolve(&eps, &ep, &universe);
            self.policy.get().cache(ep.id, r);
            if !added.is_empty() {
                self.identities_changed(&mut eps, &added, &[], Some(ep.id));
            }
        }
        self.save_pool_and_ids(&eps)?;
        let total_ms = t0.elapsed().as_secs_f64() * 1e3;
        tracing::info!(id = ep.id, ip = %ep.ipv4, identity = ep.identity, dev = %ep.interface_name, attach_ms, lock3_ms, total_ms, "endpoint ready");
        let ep = eps.get(ep.id).expect("inserted").clone();
        self.k8s_cep(&ep, false);
        let labels = ep.labels.iter().map(|l| l.to_string()).collect();
        self.observer
            .agent_events
            .endpoint(true, ep.id, labels, &ep.namespace, &ep.pod_name);
        Ok(ep)
    }

    /// Remove an endpoint: programs, map entries, identity reference, IP.
    pub async fn delete_endpoint(&self, r: &EndpointRef) -> Result<Endpoint, ApiError> {
        let mut eps = self.endpoints.lock().await;
        let id = eps.find(r)?;
        let mut ep = eps.remove(id).expect("present");
        ep.state = EndpointState::Disconnecting;
        self.unplug(&ep)?;
        self.release_identity(&ep.labels);
        eps.free_ip(ep.ipv4);
        // others' policies lose entries for a freed identity / ports / pod IP
        self.policy.get().forget(ep.id);
        let ipblock_changed = self.sync_ipblock()?;
        let in_use = self.identities.get().in_use(ep.identity);
        if !ep.named_ports.is_empty() || ipblock_changed {
            self.regenerate_all(&mut eps);
        } else if !in_use {
            self.identities_changed(&mut eps, &[], &[ep.identity], None);
        }
        self.store.remove_endpoint(ep.id)?;
        self.save_pool_and_ids(&eps)?;
        ep.state = EndpointState::Disconnected;
        self.k8s_cep(&ep, true);
        tracing::info!(id = ep.id, ip = %ep.ipv4, "endpoint deleted");
        let labels = ep.labels.iter().map(|l| l.to_string()).collect();
        self.observer
            .agent_events
            .endpoint(false, ep.id, labels, &ep.namespace, &ep.pod_name);
        drop(eps);
        if self.release_host_ports(&ep.container_id) {
            self.services_resync().await;
        }
        Ok(ep)
    }

    /// A deleted endpoint leaves the datapath: its filter, its map entries
    /// (the emptied policy map stays registered for the next endpoint with
    /// this id), its conntrack entries; the cluster is told. Off the runtime.
    fn unplug(&self, ep: &Endpoint) -> Result<(), ApiError> {
        off_runtime(|| {
            self.kernel
                .detach_endpoint(&ep.interface_name)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            self.kernel.endpoint_remove(ep.ipv4)?;
            let _ = self.ipcache.get().set_local(ep.ipv4, None);
            self.share_endpoint_ip(ep.ipv4, None);
            // keep the emptied map registered: the next endpoint with this id finds it ready
            self.kernel.recycle_policy_map(ep.id)?;
            self.sock_lb_forget(ep.id);
            match self.kernel.ct_flush_ip(ep.ipv4) {
                Ok(n) if n > 0 => tracing::debug!(ip = %ep.ipv4, flushed = n, "conntrack entries of the deleted endpoint"),
                Ok(_) => {}
                Err(e) => tracing::warn!(ip = %ep.ipv4, %e, "could not flush conntrack entries of the deleted endpoint"),
            }
            Ok(())
        })
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
        let ns = {
            let eps = self.endpoints.lock().await;
            eps.get(eps.find(r)?).expect("found").namespace.clone()
        };
        let new_labels = self.identity_labels(&labels, &ns)?;
        let (reserved, _ids) = self.reserve_identity(&new_labels).await?;
        let mut eps = self.endpoints.lock().await;
        let id = eps.find(r)?;
        eps.get_mut(id).expect("found").pod_labels = labels;
        self.relabel(&mut eps, id, new_labels, reserved).await?;
        self.regenerate_all(&mut eps);
        self.save_pool_and_ids(&eps)?;
        Ok(eps.get(id).expect("found").clone())
    }

    /// Give endpoint `id` the identity of `new_labels`, numbered beforehand
    /// by `reserve_identity` (`reserved`).
    pub(super) async fn relabel(&self, eps: &mut Endpoints, id: u16, new_labels: LabelSet, reserved: Option<u32>) -> Result<(), ApiError> {
        let old = eps.get(id).expect("an endpoint").clone();
        if old.labels == new_labels {
            return Ok(());
        }
        let identity = self.take_reserved(&new_labels, reserved).await?;
        let mut ep = old.clone();
        ep.labels = new_labels;
        ep.identity = identity;
        if identity != old.identity {
            // the new identity's policy first, then the endpoint entry the program reads
            let entries = self.resolve_with(eps, &ep).0.entries();
            let cfg = prog_config(&ep).map_err(ApiError::BadRequest)?;
            self.kernel.attach_endpoint(cfg, Some(entries)).await?;
            self.publish(&ep)?;
            self.share_endpoint_ip(ep.ipv4, Some(&ep));
        }
        self.release_identity(&old.labels);
        tracing::info!(id, old = old.identity, new = identity, "endpoint relabelled");
        self.k8s_cep(&ep, false);
        eps.insert(ep);
        Ok(())
    }
}
