//! The policy subsystem's half of the agent: the repository (documents,
//! namespaces, CIDR identities, revision), per-endpoint resolution and its
//! incremental updates, policy import/delete/wait/verify/trace.
use super::*;

/// Policies, namespaces and CIDR identities: persisted as policy.json.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct PolicyState {
    pub(super) revision: u64,
    pub(super) docs: Vec<PolicyDoc>,
    pub(super) namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub(super) cidr_ids: BTreeMap<ipnet::Ipv4Net, u32>,
}

impl PolicyState {
    /// All rules, in a stable order (cookies index into this list).
    pub(super) fn rules(&self) -> Vec<Rule> {
        self.docs.iter().flat_map(|d| d.rules.iter().cloned()).collect()
    }
}

impl Inner {
    /// Every identity policies can refer to: reserved, endpoints', CIDR.
    pub(super) fn universe(&self) -> Vec<IdentityInfo> {
        let mut u: Vec<IdentityInfo> = RESERVED
            .iter()
            .map(|id| IdentityInfo {
                id: *id,
                labels: [Label::new("reserved", reserved_name(*id).unwrap_or("?"), "")]
                    .into_iter()
                    .collect(),
                kind: IdKind::Reserved,
            })
            .collect();
        u.extend(self.identities.list().map(|a| IdentityInfo {
            id: a.id,
            labels: a.labels.clone(),
            kind: IdKind::Endpoint,
        }));
        // identities of the rest of the cluster (not held here)
        u.extend(
            self.cluster
                .remote_ids
                .iter()
                .filter(|(id, _)| self.identities.get(**id).is_none())
                .map(|(id, labels)| IdentityInfo {
                    id: *id,
                    labels: labels.clone(),
                    kind: IdKind::Endpoint,
                }),
        );
        u.extend(self.ipblock_ids.iter().map(|(ip, id)| IdentityInfo {
            id: *id,
            labels: [Label::new("ipblock", &ip.to_string(), "")].into_iter().collect(),
            kind: IdKind::PodIp(*ip),
        }));
        u.extend(self.policy.cidr_ids.iter().map(|(net, id)| {
            IdentityInfo {
                id: *id,
                labels: [Label::new("cidr", &net.to_string(), ""), Label::new("reserved", "world", "")]
                    .into_iter()
                    .collect(),
                kind: IdKind::Cidr(*net),
            }
        }));
        u
    }

    pub(super) fn peer_ports(&self) -> BTreeMap<String, std::collections::BTreeSet<(u8, u16)>> {
        let mut m: BTreeMap<String, std::collections::BTreeSet<(u8, u16)>> = BTreeMap::new();
        for e in self.endpoints.values() {
            for (n, p) in &e.named_ports {
                m.entry(n.clone()).or_default().insert(*p);
            }
        }
        m
    }

    pub(super) fn endpoint_policy(&self, rules: &[Rule], ep: &Endpoint, allow_host: bool) -> resolve::EndpointPolicy {
        resolve::endpoint_policy(rules, &ep.labels, ep.named_ports.clone(), self.peer_ports(), allow_host)
    }

    /// Prefixes of Kubernetes ipBlock peers (they also select pod IPs).
    pub(super) fn ipblock_prefixes(&self) -> Vec<ipnet::Ipv4Net> {
        let mut out = Vec::new();
        for r in self.policy.docs.iter().flat_map(|d| &d.rules) {
            for pr in r.ingress.iter().chain(&r.egress) {
                if let seta_core::policy::Peers::Some(peers) = &pr.peers {
                    for p in peers {
                        if let seta_core::policy::Peer::IpBlock { cidr, .. } = p {
                            out.push(*cidr);
                        }
                    }
                }
            }
        }
        out
    }

    /// Give every pod IP under an ipBlock a per-IP identity (stable while the
    /// pod lives); returns whether the set changed.
    pub(super) fn sync_ipblock_ids(&mut self) -> bool {
        let prefixes = self.ipblock_prefixes();
        // every pod IP of the cluster (local endpoints and other nodes' pods),
        // never node addresses or reserved identities
        let want: std::collections::BTreeSet<Ipv4Addr> = if prefixes.is_empty() {
            Default::default()
        } else {
            self.ipc_state
                .merged
                .pod_ips()
                .filter(|(_, _, id)| *id >= seta_core::identity::MIN_ALLOCATED && *id < SCOPE_LOCAL)
                .map(|(ip, _, _)| ip)
                .filter(|ip| prefixes.iter().any(|p| p.contains(ip)))
                .collect()
        };
        let before = self.ipblock_ids.clone();
        self.ipblock_ids.retain(|ip, _| want.contains(ip));
        for ip in want {
            if !self.ipblock_ids.contains_key(&ip) {
                let used: std::collections::BTreeSet<u32> = self.ipblock_ids.values().copied().collect();
                let id = (seta_abi::IDENTITY_SCOPE_IPBLOCK + 1..).find(|i| !used.contains(i)).unwrap();
                self.ipblock_ids.insert(ip, id);
            }
        }
        before != self.ipblock_ids
    }

    /// Allocate or free local CIDR identities so every prefix in a policy has one.
    pub(super) fn sync_cidr_identities(&mut self) -> Vec<(ipnet::Ipv4Net, Option<u32>)> {
        let mut want = std::collections::BTreeSet::new();
        for r in self.policy.docs.iter().flat_map(|d| &d.rules) {
            for pr in r.ingress.iter().chain(&r.ingress_deny).chain(&r.egress).chain(&r.egress_deny) {
                if let seta_core::policy::Peers::Some(peers) = &pr.peers {
                    for p in peers {
                        if let seta_core::policy::Peer::Cidr { cidr, except } | seta_core::policy::Peer::IpBlock { cidr, except } = p {
                            if cidr.prefix_len() > 0 {
                                want.insert(*cidr);
                            }
                            want.extend(except.iter().copied());
                        }
                    }
                }
            }
        }
        let mut changes = Vec::new();
        let stale: Vec<_> = self.policy.cidr_ids.keys().filter(|k| !want.contains(*k)).copied().collect();
        for k in stale {
            self.policy.cidr_ids.remove(&k);
            changes.push((k, None));
        }
        for net in want {
            if !self.policy.cidr_ids.contains_key(&net) {
                let used: std::collections::BTreeSet<u32> = self.policy.cidr_ids.values().copied().collect();
                let id = (SCOPE_LOCAL + 1..).find(|i| !used.contains(i)).unwrap();
                self.policy.cidr_ids.insert(net, id);
                changes.push((net, Some(id)));
            }
        }
        changes
    }
}

impl Agent {
    /// Identity churn, incrementally: only the entries of `added` / `removed`
    /// identities change in each endpoint's map (the resolver guarantees this
    /// equals a full recompute). Endpoints without a cached state get a full one.
    pub(super) fn identities_changed(&self, inner: &mut Inner, added: &[IdentityInfo], removed: &[u32], skip: Option<u16>) {
        let ids: Vec<u16> = inner.endpoints.keys().copied().filter(|i| Some(*i) != skip).collect();
        let mut full = false;
        for id in ids {
            let Some((p, state)) = inner.resolved.get_mut(&id) else {
                full = true;
                continue;
            };
            let mut drop_keys = Vec::new();
            for rid in removed {
                drop_keys
                    .extend(policy_entries(&state.iter().filter(|(k, _)| k.identity == *rid).map(|(k, e)| (*k, *e)).collect()).into_keys());
                resolve::remove_identity(state, *rid);
            }
            let mut upsert = resolve::MapState::new();
            for a in added {
                let before: Vec<resolve::Key> = state.keys().filter(|k| k.identity == a.id).copied().collect();
                resolve::add_identity(state, p, a);
                upsert.extend(state.iter().filter(|(k, _)| k.identity == a.id).map(|(k, e)| (*k, *e)));
                let now: std::collections::BTreeSet<resolve::Key> = upsert.keys().copied().collect();
                let gone: resolve::MapState = before
                    .into_iter()
                    .filter(|k| !now.contains(k))
                    .map(|k| (k, resolve::Entry { deny: false, cookie: 0 }))
                    .collect();
                drop_keys.extend(policy_entries(&gone).into_keys());
            }
            let res = self.kernel.policy_apply(id, &policy_entries(&upsert), &drop_keys);
            if let Err(err) = res {
                tracing::warn!(id, %err, "incremental policy update failed; full regeneration");
                full = true;
            }
        }
        if full {
            self.regenerate_all(inner);
        }
    }

    /// Recompute per-IP identities and write them (and the datapath flag).
    pub(super) fn sync_ipblock(&self, inner: &mut Inner) -> Result<bool> {
        let changed = inner.sync_ipblock_ids();
        if changed {
            self.sync_ipblock_map(inner)?;
        }
        Ok(changed)
    }

    /// Make the kernel's ipBlock map hold exactly the per-IP identities.
    pub(super) fn sync_ipblock_map(&self, inner: &Inner) -> Result<()> {
        self.kernel.ipblock_sync(&inner.ipblock_ids)?;
        Ok(())
    }

    /// CIDR identities in the ipcache (prefix -> identity); stale ones removed.
    /// They are the lowest-precedence source: a prefix that is also a pod's
    /// or node's address keeps that identity.
    pub(super) fn sync_cidr_ipcache(&self, inner: &mut Inner) -> Result<()> {
        let want: BTreeMap<ipnet::Ipv4Net, seta_core::ipcache::Entry> = inner
            .policy
            .cidr_ids
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
        inner.ipc_state.merged.replace_source(seta_core::ipcache::Source::Cidr, &want);
        inner.reconcile_ipcache(false);
        Ok(())
    }

    /// Compute every endpoint's policy and make its map hold exactly that
    /// (diff: only changed entries are written). Failures are recorded on the
    /// endpoint (not-ready + message) and counted, never silently allowed.
    pub(super) fn regenerate_all(&self, inner: &mut Inner) {
        let ids: Vec<u16> = inner.endpoints.keys().copied().collect();
        self.regenerate(inner, &ids);
    }

    /// `regenerate_all` for some endpoints.
    pub(super) fn regenerate(&self, inner: &mut Inner, ids: &[u16]) {
        let rules = inner.policy.rules();
        let universe = inner.universe();
        let revision = inner.policy.revision;
        for &id in ids {
            if !inner.endpoints.contains_key(&id) {
                continue;
            }
            let ep = inner.endpoints[&id].clone();
            let p = inner.endpoint_policy(&rules, &ep, self.cfg.allow_host_ingress);
            let state = resolve::compute(&p, &universe);
            let entries = policy_entries(&state);
            let res = self.kernel.policy_sync(id, &entries);
            let ok = res.is_ok();
            if ok {
                inner.resolved.insert(id, (p.clone(), state));
            } else {
                inner.resolved.remove(&id);
            }
            let e = inner.endpoints.get_mut(&id).unwrap();
            e.ingress_enforced = p.ingress_enforced;
            e.egress_enforced = p.egress_enforced;
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
    }

    pub fn policy_map_full_count(&self) -> u64 {
        self.policy_map_full.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn revision(&self) -> u64 {
        self.inner.lock().await.policy.revision
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
        let mut inner = self.inner.lock().await;
        cluster::record_policy_writes(&mut inner, written);
        for d in docs {
            match inner.policy.docs.iter_mut().find(|x| x.origin == d.origin) {
                Some(x) => *x = d,
                None => inner.policy.docs.push(d),
            }
        }
        inner.policy.docs.sort_by(|a, b| a.origin.cmp(&b.origin));
        self.policy_changed(&mut inner)?;
        Ok((inner.policy.revision, names))
    }

    pub(super) fn policy_changed(&self, inner: &mut Inner) -> Result<(), ApiError> {
        inner.policy.revision += 1;
        inner.sync_cidr_identities();
        self.sync_cidr_ipcache(inner)?;
        self.sync_ipblock(inner)?;
        self.save_pool_and_ids(inner)?;
        self.regenerate_all(inner);
        tracing::info!(
            revision = inner.policy.revision,
            policies = inner.policy.docs.len(),
            "policy changed"
        );
        Ok(())
    }

    /// Recompute every endpoint's policy from scratch and compare it with the
    /// kernel's map: the incremental updates must have produced the same.
    pub async fn policy_verify(&self) -> Result<Vec<String>, ApiError> {
        let inner = self.inner.lock().await;
        let rules = inner.policy.rules();
        let universe = inner.universe();
        let mut problems = Vec::new();
        for ep in inner.endpoints.values() {
            let p = inner.endpoint_policy(&rules, ep, self.cfg.allow_host_ingress);
            let want = policy_entries(&resolve::compute(&p, &universe));
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
        let inner = self.inner.lock().await;
        PolicyListing {
            revision: inner.policy.revision,
            policies: inner.policy.docs.clone(),
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
        let _order = self.policy_io.lock().await;
        let gone: Vec<PolicyDoc> = {
            let inner = self.inner.lock().await;
            if all {
                inner.policy.docs.clone()
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
                let gone: Vec<PolicyDoc> = inner.policy.docs.iter().filter(|d| hit(d)).cloned().collect();
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
        let mut inner = self.inner.lock().await;
        cluster::record_policy_writes(&mut inner, written);
        let before: Vec<String> = inner.policy.docs.iter().map(|d| d.origin.to_string()).collect();
        inner.policy.docs.retain(|d| !gone.iter().any(|g| g.origin == d.origin));
        let after: std::collections::BTreeSet<String> = inner.policy.docs.iter().map(|d| d.origin.to_string()).collect();
        let removed: Vec<String> = before.into_iter().filter(|d| !after.contains(d)).collect();
        if !removed.is_empty() {
            self.policy_changed(&mut inner)?;
        }
        Ok((inner.policy.revision, removed))
    }

    /// Wait until every endpoint enforces at least `rev` (None: the current revision).
    pub async fn policy_wait(&self, rev: Option<u64>, timeout: std::time::Duration) -> Result<u64, ApiError> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let inner = self.inner.lock().await;
                let want = rev.unwrap_or(inner.policy.revision);
                if want > inner.policy.revision {
                    return Err(ApiError::BadRequest(format!(
                        "revision {want} does not exist yet (current {})",
                        inner.policy.revision
                    )));
                }
                let lagging: Vec<String> = inner
                    .endpoints
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
        self.inner.lock().await.policy.namespaces.clone()
    }

    /// Create or replace a namespace's labels; its endpoints follow.
    pub async fn set_namespace(&self, ns: &str, mut labels: BTreeMap<String, String>) -> Result<(), ApiError> {
        if !ns.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') || ns.is_empty() || ns.len() > 63 {
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
            let mut inner = self.inner.lock().await;
            let old = inner.policy.namespaces.insert(ns.to_string(), labels.clone());
            let sets = self.namespace_label_sets(&mut inner, ns);
            match old {
                Some(old) => inner.policy.namespaces.insert(ns.to_string(), old),
                None => inner.policy.namespaces.remove(ns),
            };
            sets?
        };
        let wanted: Vec<LabelSet> = sets.iter().map(|(_, l)| l.clone()).collect();
        let (reserved, _ids) = self.reserve_identities(&wanted).await?;
        let mut inner = self.inner.lock().await;
        inner.policy.namespaces.insert(ns.to_string(), labels);
        // endpoints created meanwhile are relabelled too (their identities
        // are numbered under the lock)
        for (id, l) in self.namespace_label_sets(&mut inner, ns)? {
            let r = sets.iter().position(|(i, s)| *i == id && *s == l).and_then(|i| reserved[i]);
            self.relabel(&mut inner, id, l, r).await?;
        }
        self.regenerate_all(&mut inner);
        self.save_pool_and_ids(&inner)?;
        Ok(())
    }

    /// Every endpoint of namespace `ns` with the identity labels it has
    /// under the namespace's current labels.
    fn namespace_label_sets(&self, inner: &mut Inner, ns: &str) -> Result<Vec<(u16, LabelSet)>, ApiError> {
        let ids: Vec<u16> = inner.endpoints.values().filter(|e| e.namespace == ns).map(|e| e.id).collect();
        ids.into_iter()
            .map(|id| {
                let pod_labels = inner.endpoints[&id].pod_labels.clone();
                Ok((id, self.identity_labels(inner, &pod_labels, ns)?))
            })
            .collect()
    }
}
