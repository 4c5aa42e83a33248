//! The agent's side of the policy subsystem (`crate::policy`): what the
//! repository and resolver need from endpoints and identities, writing
//! resolutions and deltas to the kernel, policy import/delete/wait/verify.
use super::*;
use crate::policy::{Resolution, Subject};

impl Agent {
    /// Every identity policies can refer to: reserved, endpoints' (this
    /// node's and the cluster's), per-IP, CIDR.
    pub(super) fn universe(&self) -> Vec<IdentityInfo> {
        let selectable = self.identities.get().selectable();
        self.policy.get().universe(selectable)
    }

    /// Resolve endpoint `ep` from scratch under `rules`.
    pub(super) fn resolve_rules(&self, rules: &[Rule], eps: &Endpoints, ep: &Endpoint, universe: &[IdentityInfo]) -> Resolution {
        let peer_ports = eps.peer_ports();
        self.policy.get().resolve(rules, &subject(ep), peer_ports, universe)
    }

    /// Resolve endpoint `ep` from scratch.
    pub(super) fn resolve(&self, eps: &Endpoints, ep: &Endpoint, universe: &[IdentityInfo]) -> Resolution {
        let rules = self.policy.get().rules();
        self.resolve_rules(&rules, eps, ep, universe)
    }

    /// Resolve an endpoint whose identity may be new to the universe (a
    /// creation, a relabel); with the revision it was resolved at.
    pub(super) fn resolve_with(&self, eps: &Endpoints, ep: &Endpoint) -> (Resolution, u64) {
        let (rules, revision) = {
            let p = self.policy.get();
            (p.rules(), p.revision())
        };
        let mut universe = self.universe();
        universe.retain(|u| u.id != ep.identity);
        universe.push(IdentityInfo {
            id: ep.identity,
            labels: ep.labels.clone(),
            kind: IdKind::Endpoint,
        });
        (self.resolve_rules(&rules, eps, ep, &universe), revision)
    }

    pub(super) fn endpoint_policy(&self, rules: &[Rule], eps: &Endpoints, ep: &Endpoint) -> resolve::EndpointPolicy {
        let peer_ports = eps.peer_ports();
        self.policy.get().endpoint_policy(rules, &subject(ep), peer_ports)
    }

    /// Per-IP identities for every pod IP of the cluster under an ipBlock.
    fn sync_ipblock_ids(&self) -> bool {
        let pod_ips = self.ipcache.get().pod_ips(SCOPE_LOCAL);
        self.policy.get().sync_ipblock_ids(pod_ips)
    }
}

pub(super) fn subject(ep: &Endpoint) -> Subject<'_> {
    Subject {
        labels: &ep.labels,
        named_ports: &ep.named_ports,
    }
}

impl Agent {
    /// Identity churn, incrementally: only the entries of `added` / `removed`
    /// identities change in each endpoint's map. Endpoints without a cached
    /// state, or whose write fails, get a full regeneration.
    pub(super) fn identities_changed(&self, eps: &mut Endpoints, added: &[IdentityInfo], removed: &[u32], skip: Option<u16>) {
        off_runtime(|| {
            let ids: Vec<u16> = eps.ids().into_iter().filter(|i| Some(*i) != skip).collect();
            let mut full = false;
            for id in ids {
                let delta = self.policy.get().identity_delta(id, added, removed);
                let Some(delta) = delta else {
                    full = true;
                    continue;
                };
                if delta.is_empty() {
                    continue;
                }
                if let Err(err) = self.kernel.policy_apply(id, &delta.upsert, &delta.drop) {
                    tracing::warn!(id, %err, "incremental policy update failed; full regeneration");
                    self.policy.get().forget(id);
                    full = true;
                }
            }
            if full {
                self.regenerate_all(eps);
            }
        })
    }

    /// Recompute per-IP identities and write them (and the datapath flag).
    pub(super) fn sync_ipblock(&self) -> Result<bool> {
        off_runtime(|| {
            let changed = self.sync_ipblock_ids();
            if changed {
                self.sync_ipblock_map()?;
            }
            Ok(changed)
        })
    }

    /// Make the kernel's ipBlock map hold exactly the per-IP identities.
    pub(super) fn sync_ipblock_map(&self) -> Result<()> {
        let ids = self.policy.get().ipblock_ids().clone();
        self.kernel.ipblock_sync(&ids)?;
        Ok(())
    }

    /// CIDR identities in the ipcache (prefix -> identity); stale ones removed.
    /// They are the lowest-precedence source: a prefix that is also a pod's
    /// or node's address keeps that identity.
    pub(super) fn sync_cidr_ipcache(&self) {
        off_runtime(|| {
            let want: BTreeMap<ipnet::Ipv4Net, seta_core::ipcache::Entry> = self
                .policy
                .get()
                .cidr_ids()
                .iter()
                .map(|(n, id)| {
                    (
                        n.trunc(),
                        seta_core::ipcache::Entry {
                            identity: *id,
                            tunnel_endpoint: None,
                        },
                    )
                })
                .collect();
            self.ipcache.get().replace_source(seta_core::ipcache::Source::Cidr, &want);
        })
    }

    /// Compute every endpoint's policy and make its map hold exactly that
    /// (diff: only changed entries are written). Failures are recorded on the
    /// endpoint (not-ready + message) and counted, never silently allowed.
    pub(super) fn regenerate_all(&self, eps: &mut Endpoints) {
        let ids = eps.ids();
        self.regenerate(eps, &ids);
    }

    /// `regenerate_all` for some endpoints.
    pub(super) fn regenerate(&self, eps: &mut Endpoints, ids: &[u16]) {
        off_runtime(|| {
            let (rules, revision) = {
                let p = self.policy.get();
                (p.rules(), p.revision())
            };
            let universe = self.universe();
            for &id in ids {
                let Some(ep) = eps.get(id) else { continue };
                let r = self.resolve_rules(&rules, eps, ep, &universe);
                let entries = r.entries();
                let (ingress, egress) = (r.policy.ingress_enforced, r.policy.egress_enforced);
                let res = self.kernel.policy_sync(id, &entries);
                match &res {
                    Ok(_) => self.policy.get().cache(id, r),
                    Err(_) => self.policy.get().forget(id),
                }
                let e = eps.get_mut(id).expect("present");
                e.ingress_enforced = ingress;
                e.egress_enforced = egress;
                match res {
                    Ok(stats) => {
                        e.policy_revision = revision;
                        e.policy_entries = entries.len();
                        e.state = EndpointState::Ready;
                        e.status_message.clear();
                        if stats != Default::default() {
                            tracing::debug!(id, ?stats, revision, "policy map synced");
                        }
                    }
                    Err(err) => {
                        if err.is_map_full() {
                            self.policy_map_full.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        tracing::error!(id, %err, "policy regeneration failed; endpoint is not ready");
                        e.state = EndpointState::NotReady;
                        e.status_message = format!("policy regeneration failed: {err}");
                    }
                }
                let _ = self.store.save_endpoint(e);
            }
        })
    }

    pub fn policy_map_full_count(&self) -> u64 {
        self.policy_map_full.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn revision(&self) -> u64 {
        self.policy.get().revision()
    }

    /// Parse and validate without changing anything. Parsing runs on a
    /// blocking thread (never on the runtime threads that serve status and
    /// endpoint calls, never under a lock) and stops when the request is
    /// dropped (its client went away).
    pub async fn policy_validate(&self, text: &str) -> Result<Vec<PolicyDoc>, ApiError> {
        struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let text = text.to_string();
        tokio::task::spawn_blocking(move || parse::parse_file_cancellable(&text, Some(&cancel)))
            .await
            .map_err(|e| ApiError::Internal(format!("policy parser: {e}")))?
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    /// Create or replace each document by (kind, namespace, name), all or
    /// nothing; bump the revision; push the new state into every endpoint.
    pub async fn policy_import(&self, text: &str) -> Result<(u64, Vec<String>), ApiError> {
        self.refuse_under_k8s("policies", "import")?;
        let docs = self.policy_validate(text).await?;
        if docs.is_empty() {
            return Err(ApiError::BadRequest("no policy documents in the input".into()));
        }
        let names: Vec<String> = docs.iter().map(|d| d.origin.to_string()).collect();
        // a cluster's policies live in the kvstore: written there first, all
        // or nothing, without the agent's lock (policy changes are ordered
        // by their own)
        let _order = self.policy_io.lock().await;
        let written = self.write_policies(&docs, &[]).await?;
        let mut eps = self.endpoints.lock().await;
        self.cluster.get().record_policy_writes(written);
        self.policy.get().upsert(docs);
        let revision = self.policy_changed(&mut eps, false)?;
        Ok((revision, names))
    }

    /// The policy set changed: bump the revision and bring the ipcache,
    /// per-IP identities, the state dir and every endpoint up to it.
    /// Returns the new revision.
    pub(super) fn policy_changed(&self, eps: &mut Endpoints, deleted: bool) -> Result<u64, ApiError> {
        let revision = self.policy.get().bump();
        self.sync_cidr_ipcache();
        self.sync_ipblock()?;
        self.save_pool_and_ids(eps)?;
        self.regenerate_all(eps);
        let (policies, rules) = {
            let p = self.policy.get();
            (p.docs().len(), p.rules().len())
        };
        self.observer.agent_events.policy(deleted, vec![], revision, rules);
        tracing::info!(revision, policies, "policy changed");
        Ok(revision)
    }

    /// Recompute every endpoint's policy from scratch and compare it with the
    /// kernel's map: the incremental updates must have produced the same.
    pub async fn policy_verify(&self) -> Result<Vec<String>, ApiError> {
        let eps = self.endpoints.lock().await;
        let rules = self.policy.get().rules();
        let universe = self.universe();
        let mut problems = Vec::new();
        for ep in eps.values() {
            let want = self.resolve_rules(&rules, &eps, ep, &universe).entries();
            let have = self.kernel.policy_list(ep.id)?;
            if want != have {
                let missing = want.keys().filter(|k| !have.contains_key(*k)).count();
                let extra = have.keys().filter(|k| !want.contains_key(*k)).count();
                let differ = want.iter().filter(|(k, v)| have.get(*k).is_some_and(|h| h != *v)).count();
                problems.push(format!(
                    "endpoint {}: {missing} missing, {extra} extra, {differ} different entries",
                    ep.id
                ));
            }
        }
        Ok(problems)
    }

    pub async fn policy_list(&self) -> PolicyListing {
        let p = self.policy.get();
        PolicyListing {
            revision: p.revision(),
            policies: p.docs().to_vec(),
        }
    }

    /// Delete by name (any kind; CNP/KNP need the namespace) or everything.
    pub async fn policy_delete(
        &self,
        name: Option<&str>,
        namespace: Option<&str>,
        kind: Option<&str>,
        all: bool,
    ) -> Result<(u64, Vec<String>), ApiError> {
        self.refuse_under_k8s("policies", "delete")?;
        let _order = self.policy_io.lock().await;
        let gone: Vec<PolicyDoc> = {
            let p = self.policy.get();
            if all {
                p.docs().to_vec()
            } else {
                let name = name.ok_or_else(|| ApiError::BadRequest("give a policy name or --all".into()))?;
                let hit = |d: &PolicyDoc| {
                    d.origin.name == name
                        && kind.is_none_or(|k| {
                            d.origin.kind.short() == k.to_ascii_lowercase() || format!("{:?}", d.origin.kind).eq_ignore_ascii_case(k)
                        })
                        && match (&d.origin.namespace, namespace) {
                            (None, _) => true,
                            (Some(ns), Some(want)) => ns == want,
                            (Some(ns), None) => ns == "default",
                        }
                };
                let gone: Vec<PolicyDoc> = p.docs().iter().filter(|d| hit(d)).cloned().collect();
                if gone.is_empty() {
                    return Err(ApiError::NotFound(format!(
                        "no policy named {name:?} in namespace {}",
                        namespace.unwrap_or("default")
                    )));
                }
                gone
            }
        };
        // the kvstore first, without the agent's lock; nothing changes if it fails
        let written = self.write_policies(&[], &gone).await?;
        let mut eps = self.endpoints.lock().await;
        self.cluster.get().record_policy_writes(written);
        let removed = self.policy.get().remove(&gone);
        if !removed.is_empty() {
            self.policy_changed(&mut eps, true)?;
        }
        Ok((self.policy.get().revision(), removed))
    }

    /// Wait until every endpoint enforces at least `rev` (None: the current revision).
    pub async fn policy_wait(&self, rev: Option<u64>, timeout: std::time::Duration) -> Result<u64, ApiError> {
        let deadline = Instant::now() + timeout;
        if rev.is_none() {
            // under Kubernetes "current" is the API's: the agent catches up first
            self.k8s_policies_seen(deadline).await?;
        }
        loop {
            {
                let eps = self.endpoints.lock().await;
                let current = self.policy.get().revision();
                let want = rev.unwrap_or(current);
                if want > current {
                    return Err(ApiError::BadRequest(format!(
                        "revision {want} does not exist yet (current {current})"
                    )));
                }
                let lagging: Vec<String> = eps
                    .values()
                    .filter(|e| e.policy_revision < want)
                    .map(|e| format!("{} ({}: {})", e.id, e.state, e.status_message))
                    .collect();
                if lagging.is_empty() {
                    return Ok(want);
                }
                if Instant::now() > deadline {
                    return Err(ApiError::Conflict(format!(
                        "endpoints not at revision {want} yet: {}",
                        lagging.join(", ")
                    )));
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    pub async fn namespaces(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.policy.get().namespaces().clone()
    }

    /// Create or replace a namespace's labels; its endpoints follow.
    pub async fn set_namespace(&self, ns: &str, mut labels: BTreeMap<String, String>) -> Result<(), ApiError> {
        if !seta_core::labels::is_dns_label(ns) {
            return Err(ApiError::BadRequest(format!("{ns:?} is not a valid namespace name")));
        }
        for (k, v) in &labels {
            seta_core::labels::validate_key(k)
                .and_then(|_| seta_core::labels::validate_value(v))
                .map_err(|e| ApiError::BadRequest(format!("labels.{}: {e}", seta_core::labels::quote(k))))?;
        }
        labels.insert("kubernetes.io/metadata.name".into(), ns.into());
        // the endpoints' new label sets are numbered first, without the lock
        let sets = {
            let eps = self.endpoints.lock().await;
            let old = self.policy.get().set_namespace(ns, Some(labels.clone()));
            let sets = self.namespace_label_sets(&eps, ns);
            self.policy.get().set_namespace(ns, old);
            sets?
        };
        let wanted: Vec<LabelSet> = sets.iter().map(|(_, l)| l.clone()).collect();
        let (reserved, _ids) = self.reserve_identities(&wanted).await?;
        let mut eps = self.endpoints.lock().await;
        self.policy.get().set_namespace(ns, Some(labels));
        // endpoints created meanwhile are relabelled too (their identities
        // are numbered under the lock)
        for (id, l) in self.namespace_label_sets(&eps, ns)? {
            let r = sets.iter().position(|(i, s)| *i == id && *s == l).and_then(|i| reserved[i]);
            self.relabel(&mut eps, id, l, r).await?;
        }
        self.regenerate_all(&mut eps);
        self.save_pool_and_ids(&eps)?;
        Ok(())
    }

    /// Every endpoint of namespace `ns` with the identity labels it has
    /// under the namespace's current labels.
    fn namespace_label_sets(&self, eps: &Endpoints, ns: &str) -> Result<Vec<(u16, LabelSet)>, ApiError> {
        eps.values()
            .filter(|e| e.namespace == ns)
            .map(|e| Ok((e.id, self.identity_labels(&e.pod_labels, ns)?)))
            .collect()
    }
}
