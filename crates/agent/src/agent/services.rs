//! The agent's side of the services subsystem (`crate::services`): import,
//! list, get and delete over the API, persisted in the state dir. The
//! repository has its own lock (never the endpoint lock); parsing runs on
//! a blocking thread; the file is written after the lock is released.
use super::*;
use crate::services::{entry, kv_key, kv_key_of_name, Repository, Selection};
use seta_core::api::{ServiceChange, ServiceEntry};

impl Agent {
    /// The addresses NodePort frontends (and hostPorts without a hostIP)
    /// listen on: the node's addresses of `--nodeport-addresses` (by
    /// default its primary one; its router address when it has none, as in
    /// a one-node lab), and 0.0.0.0, Cilium's surrogate, which socket-LB
    /// uses for 127.0.0.1 and bind protection for 0.0.0.0.
    fn node_port_addrs(&self) -> Vec<Ipv4Addr> {
        let ips = self.node_port_ips.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut v = match (ips.is_empty(), self.cfg.nodeport_addresses.is_empty()) {
            (true, true) => vec![seta_core::ipam::router_ip(self.cfg.pod_cidr)],
            _ => ips,
        };
        v.push(Ipv4Addr::UNSPECIFIED);
        v
    }

    /// With `--nodeport-addresses` or `--devices`, follow the node devices'
    /// addresses (as Cilium's node address table does): an address added or
    /// removed inside the CIDRs (or another device's primary) starts or
    /// stops serving NodePorts and hostPorts.
    /// Whether they changed. `links`, `addrs`: the node's devices and
    /// addresses (ifindex, address).
    pub(super) async fn set_node_port_addrs(&self, links: &[LinkInfo], addrs: &[(u32, Ipv4Addr)]) -> anyhow::Result<bool> {
        let Some(dev) = self.node_dev.as_deref() else {
            return Ok(false);
        };
        if self.cfg.nodeport_addresses.is_empty() && self.cfg.devices.is_empty() {
            return Ok(false); // the primary address, fixed
        }
        let of = |name: &str| Some(super::node::addrs_on(addrs, links.iter().find(|l| l.name == name)?.index));
        let Some(dev_addrs) = of(dev) else {
            return Ok(false);
        };
        // the other devices' too (their primary may change)
        let others: Vec<Vec<Ipv4Addr>> = self.other_devs().iter().filter_map(|d| of(d)).collect();
        let want = seta_core::service::node_port_addresses_of_devices(self.node_ip, &dev_addrs, &others, &self.cfg.nodeport_addresses);
        let before = std::mem::replace(&mut *self.node_port_ips.lock().unwrap_or_else(|e| e.into_inner()), want.clone());
        if before == want {
            return Ok(false);
        }
        tracing::info!(?before, now = ?want, "NodePort addresses changed");
        self.services_resync().await;
        Ok(true)
    }

    /// Claim an endpoint's hostPorts in the services subsystem (refused
    /// when another pod holds one); the maps follow in `services_resync`.
    pub(super) fn claim_host_ports(&self, ep: &Endpoint) -> Result<(), ApiError> {
        self.services
            .lock()
            .unwrap()
            .claim_host_ports(&ep.container_id, ep.ipv4, &ep.host_ports)
            .map_err(|e| ApiError::Conflict(format!("host-ports: {e}")))
    }

    /// Give back a container's hostPorts; whether it had any.
    pub(super) fn release_host_ports(&self, cid: &str) -> bool {
        self.services.lock().unwrap().release_host_ports(cid)
    }

    /// After a restore: exactly the live endpoints' hostPorts.
    pub(super) fn reconcile_host_ports(&self, live: &[Endpoint]) {
        let mut repo = self.services.lock().unwrap();
        let cids = live.iter().map(|e| e.container_id.clone()).collect();
        repo.retain_host_ports(&cids);
        for ep in live.iter().filter(|e| !e.host_ports.is_empty()) {
            if let Err(e) = repo.claim_host_ports(&ep.container_id, ep.ipv4, &ep.host_ports) {
                tracing::error!(endpoint = ep.id, "restoring hostPorts: {e}");
            }
        }
    }

    /// The maps follow a change of hostPorts (in the services order).
    pub(super) async fn services_resync(&self) {
        let _order = self.services_io.lock().await;
        if let Err(e) = self.sync_services().await {
            tracing::error!(%e, "service maps after a hostPort or zone change");
        }
    }

    pub(super) fn save_services(&self, snapshot: Repository) -> Result<(), ApiError> {
        self.store.save("services.json", &snapshot)?;
        Ok(())
    }

    /// Make the datapath's service maps follow the repository: computed
    /// under the services lock, written on a blocking thread without it.
    pub(super) async fn sync_services(&self) -> Result<(), ApiError> {
        let addrs = self.node_port_addrs();
        let computed = {
            let mut repo = self.services.lock().unwrap();
            repo.lb_state(&self.cfg.node, &addrs, &self.lb_choices())
                .map(|want| (want, repo.digest()))
                .map_err(|e| ApiError::TooLarge(format!("service maps: {e}; the maps were not changed")))
        };
        match computed {
            Ok((want, digest)) => self.write_lb(want, digest).await,
            Err(e) => {
                self.note_service_sync(Err(&e));
                Err(e)
            }
        }
    }

    /// Remember how a write of the service maps went.
    fn note_service_sync(&self, r: Result<(), &ApiError>) {
        let mut s = self.svc_sync.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Ok(()) => {
                s.last_ok = std::time::SystemTime::now();
                s.error = None;
            }
            Err(e) => s.error = Some(e.to_string()),
        }
    }

    /// kube-proxy's healthz verdict: unhealthy while a source of services
    /// (the kvstore, the Kubernetes API) is cut off or the service maps
    /// could not be written as the services are.
    pub fn kpr_health(&self) -> crate::kpr_healthz::Verdict {
        let mut problems = Vec::new();
        if !self.kv_health.connected() {
            problems.push(format!(
                "kvstore: {}",
                self.kv_health.last_error().unwrap_or_else(|| "connecting".into())
            ));
        }
        // the cluster's services in the kvstore (shared stores without Kubernetes)
        if self.kv.shared() && self.k8s.is_none() && !self.svc_health.connected() {
            problems.push(format!(
                "kvstore services: {}",
                self.svc_health.last_error().unwrap_or_else(|| "connecting".into())
            ));
        }
        if let Some(k) = &self.k8s {
            let st = k.status();
            if !st.starts_with("ok") {
                problems.push(format!("kubernetes: {st}"));
            }
            for w in ["services", "endpointslices"] {
                if !k.listed(w) {
                    problems.push(format!("kubernetes: {w} not listed yet"));
                }
            }
        }
        let s = self.svc_sync.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = &s.error {
            problems.push(e.clone());
        }
        crate::kpr_healthz::Verdict {
            problems,
            last_updated: s.last_ok,
        }
    }

    /// Does every map hold the services as they are now? (the digest of
    /// the services, and whether the maps were written for it)
    pub fn service_state(&self) -> serde_json::Value {
        let (digest, (services, frontends)) = {
            let repo = self.services.lock().unwrap();
            (repo.digest(), repo.counts())
        };
        let synced = self.svc_synced.load(std::sync::atomic::Ordering::Relaxed) == digest;
        serde_json::json!({"digest": format!("{digest:016x}"), "synced": synced, "services": services, "frontends": frontends})
    }

    /// Persist the repository, follow its health checks, and write `want`
    /// (computed from the services of `digest`) to the service maps.
    async fn write_lb(&self, want: seta_datapath::maps::LbState, digest: u64) -> Result<(), ApiError> {
        // flows name services as the maps serve them: made again next time
        *self.flow_services.lock().unwrap() = None;
        let r = self.write_lb_maps(want, digest).await;
        self.note_service_sync(r.as_ref().map(|_| ()));
        r
    }

    async fn write_lb_maps(&self, want: seta_datapath::maps::LbState, digest: u64) -> Result<(), ApiError> {
        let (checks, snapshot) = {
            let repo = self.services.lock().unwrap();
            (repo.health_checks(&self.cfg.node), repo.clone())
        };
        self.save_services(snapshot)?;
        for e in self.health_server.reconcile(checks).await {
            tracing::error!("{e}");
        }
        // what does not fit is refused whole: the maps keep what they hold
        want.fits(self.cfg.map_sizes.lb)
            .map_err(|e| ApiError::TooLarge(format!("service maps: {e}; the maps were not changed")))?;
        let k = self.kernel.clone();
        let removed = tokio::task::spawn_blocking(move || k.lb_sync(&want))
            .await
            .map_err(|e| ApiError::Internal(format!("service maps: {e}")))?
            .map_err(|e| ApiError::Internal(format!("service maps: {e}")))?;
        self.svc_synced.store(digest, std::sync::atomic::Ordering::Relaxed);
        // what changed becomes the agent's events (SERVICE_UPSERTED /
        // _DELETED) in the background, off this path
        self.observer.agent_events.services_changed();
        self.terminate_backend_sockets(removed).await;
        Ok(())
    }

    /// Socket-LB: connected UDP sockets that socket-LB sent to a backend
    /// that went (their cookie and peer were in its reverse entries) are
    /// closed in the node's namespace and, unless
    /// `--bpf-lb-sock-terminate-pod-connections=false`, in its pods' (Cilium's
    /// socket termination), so their owners connect again, to a backend
    /// that exists, instead of sending into nothing. A socket that named the
    /// backend's address itself is not socket-LB's and stays. Failures are
    /// logged.
    async fn terminate_backend_sockets(&self, removed: crate::kernel::LbRemoved) {
        let udp = |a: &std::net::SocketAddrV4| {
            removed
                .backends
                .iter()
                .any(|b| b.proto == 17 /* UDP */ && b.address == a.ip().octets() && b.port == a.port().to_be_bytes())
        };
        let targets: Vec<(u64, std::net::SocketAddrV4)> = removed.sockets.into_iter().filter(|(_, a)| udp(a)).collect();
        if self.cfg.sock_lb.is_none() || targets.is_empty() {
            return;
        }
        // the node's namespace (None) and each pod's, once each
        let pods: Vec<Option<String>> = match self.cfg.sock_lb_hostns_only || !self.cfg.sock_lb_terminate_pod_connections {
            true => vec![], // pods' sockets were never translated at the socket, or are left alone
            false => self
                .endpoints
                .lock()
                .await
                .values()
                .filter(|e| !e.netns_path.is_empty())
                .map(|e| Some(e.netns_path.clone()))
                .collect(),
        };
        let namespaces: std::collections::BTreeSet<Option<String>> = std::iter::once(None).chain(pods).collect();
        let k = self.kernel.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut closed = 0;
            // one listing of each namespace's sockets for every removed backend
            for ns in &namespaces {
                match k.sock_destroy(ns.as_deref(), 17 /* UDP */, &targets) {
                    Ok(n) => closed += n,
                    Err(e) => tracing::warn!(%e, "socket termination"),
                }
            }
            closed
        })
        .await;
        if let Ok(n) = r {
            if n > 0 {
                tracing::info!(closed = n, "sockets of removed backends closed");
            }
        }
    }

    /// Create or replace every Service and EndpointSlice of `text`, all or
    /// nothing.
    pub async fn service_import(&self, text: &str) -> Result<ServiceChange, ApiError> {
        self.refuse_under_k8s("services", "apply")?;
        let text = text.to_string();
        let range = self.cfg.node_port_range;
        let objects = tokio::task::spawn_blocking(move || seta_core::service::parse_file_with(&text, range))
            .await
            .map_err(|e| ApiError::Internal(format!("service parser: {e}")))?
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let _order = self.services_io.lock().await;
        // the result, computed on a copy, must fit the maps before anything
        // is written; the copy (with its numbers) then becomes the repository
        let base = self.services.lock().unwrap().clone();
        let mut trial = base.clone();
        let (revision, names) = trial.import(objects.clone());
        let want = trial
            .lb_state(&self.cfg.node, &self.node_port_addrs(), &self.lb_choices())
            .map_err(|e| ApiError::TooLarge(format!("{e}; nothing was changed")))?;
        let digest = trial.digest();
        want.fits(self.cfg.map_sizes.lb)
            .map_err(|e| ApiError::TooLarge(format!("{e}; nothing was changed")))?;
        // shared by the cluster: the kvstore first, all or nothing
        self.write_services(&self.kv_puts(&objects), &[]).await?;
        let change = ServiceChange { revision, objects: names };
        let unchanged_meanwhile = {
            let mut repo = self.services.lock().unwrap();
            if *repo == base {
                *repo = trial;
                true
            } else {
                // (hostPorts changed meanwhile) apply to what is there now
                repo.import(objects);
                false
            }
        };
        if unchanged_meanwhile {
            self.write_lb(want, digest).await?;
        } else {
            self.sync_services().await?;
        }
        tracing::info!(revision = change.revision, objects = change.objects.len(), "services changed");
        if change.objects.len() >= 100 {
            // a large import leaves its parse and copies freed in the heap:
            // give that back to the system rather than keep it resident
            // SAFETY: malloc_trim only releases free memory of glibc's heap
            unsafe {
                libc::malloc_trim(0);
            }
        }
        Ok(change)
    }

    /// Delete a service (with its EndpointSlices) or everything.
    pub async fn service_delete(&self, name: Option<&str>, namespace: Option<&str>, all: bool) -> Result<ServiceChange, ApiError> {
        self.refuse_under_k8s("services", "delete")?;
        let sel = match (name, all) {
            (_, true) => Selection::All,
            (Some(name), false) => Selection::Service {
                namespace: namespace.unwrap_or("default"),
                name,
            },
            (None, false) => return Err(ApiError::BadRequest("give a service name or --all".into())),
        };
        let _order = self.services_io.lock().await;
        // what goes, from a copy, so the kvstore can be written first
        let gone = self.services.lock().unwrap().clone().delete(match &sel {
            Selection::All => Selection::All,
            Selection::Service { namespace, name } => Selection::Service { namespace, name },
        });
        let deletes: Vec<String> = gone.1.iter().filter_map(|n| kv_key_of_name(self.prefix(), n)).collect();
        self.write_services(&[], &deletes).await?;
        let (change, snapshot) = {
            let mut repo = self.services.lock().unwrap();
            let (revision, objects) = repo.delete(sel);
            (ServiceChange { revision, objects }, repo.clone())
        };
        if change.objects.is_empty() && !all {
            return Err(ApiError::NotFound(format!(
                "no service {:?} in namespace {}",
                name.unwrap_or_default(),
                namespace.unwrap_or("default")
            )));
        }
        self.save_services(snapshot)?;
        self.sync_services().await?;
        Ok(change)
    }

    /// The kvstore entries of `objs`.
    fn kv_puts(&self, objs: &[seta_core::service::Object]) -> Vec<(String, Vec<u8>)> {
        objs.iter()
            .map(|o| (kv_key(self.prefix(), o), serde_json::to_vec(o).expect("serialisable")))
            .collect()
    }

    /// Write service objects to (and delete them from) the shared kvstore,
    /// all or nothing; recorded as this node's until the watch shows them.
    async fn write_services(&self, puts: &[(String, Vec<u8>)], deletes: &[String]) -> Result<(), ApiError> {
        if self.write_shared(puts, deletes).await? {
            self.svc_view.lock().unwrap().record(puts, deletes);
        }
        Ok(())
    }

    /// Follow the cluster's services in the kvstore (shared stores only):
    /// the repository becomes the cluster's set and the maps follow. On
    /// first contact with a cluster without services, this node's own
    /// become the cluster's.
    pub(super) async fn services_sync(self: Arc<Self>) -> anyhow::Result<()> {
        let prefix = format!("{}/services/v1/", self.prefix());
        let mut rx = self.kv.reflect(prefix, self.svc_health.clone());
        while let Some(u) = rx.recv().await {
            let mut batch = vec![u];
            while let Ok(u) = rx.try_recv() {
                batch.push(u);
            }
            let _order = self.services_io.lock().await;
            let (first, objs, bad) = {
                let mut v = self.svc_view.lock().unwrap();
                for u in batch {
                    v.apply(u);
                }
                let first = !v.synced && v.is_empty();
                v.synced = true;
                let (objs, bad) = v.objects();
                (first, objs, bad)
            };
            for k in bad {
                tracing::error!(key = %k, "unreadable service object in the kvstore; ignored");
            }
            let mine = self.services.lock().unwrap().objects();
            if first && !mine.is_empty() {
                let puts = self.kv_puts(&mine);
                match self.write_services(&puts, &[]).await {
                    Ok(()) => tracing::info!(objects = puts.len(), "published this node's services to the cluster"),
                    Err(e) => {
                        self.svc_view.lock().unwrap().synced = false;
                        tracing::warn!(%e, "could not publish this node's services");
                    }
                }
                continue;
            }
            let changed = self.services.lock().unwrap().replace_all(objs);
            if changed {
                tracing::info!("cluster services changed");
                if let Err(e) = self.sync_services().await {
                    tracing::error!(%e, "service maps");
                }
            }
        }
        anyhow::bail!("the services reflector ended")
    }

    /// Set a backend's state by hand on this node (quarantined,
    /// maintenance, active); the maps follow.
    pub async fn service_backend_state(&self, backend: &str, state: &str) -> Result<serde_json::Value, ApiError> {
        let addr: std::net::SocketAddrV4 = backend
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("backend: {backend:?} is not IP:PORT")))?;
        let st: seta_core::service::BackendState = serde_json::from_value(serde_json::json!(state))
            .map_err(|_| ApiError::BadRequest(format!("state: {state:?} is not active, quarantined or maintenance")))?;
        let addrs = self.node_port_addrs();
        let _order = self.services_io.lock().await;
        let uses = self
            .services
            .lock()
            .unwrap()
            .set_backend_state(addr, st, &addrs)
            .map_err(|e| ApiError::BadRequest(format!("state: {e}")))?;
        if uses == 0 {
            return Err(ApiError::NotFound(format!("no service has the backend {addr}")));
        }
        self.sync_services().await?;
        Ok(serde_json::json!({"backend": addr.to_string(), "state": st, "frontends": uses}))
    }

    /// The services' frontends by address and port, as flows name a side
    /// at one (ClusterIP, ExternalIP, LoadBalancer IP, NodePort at this
    /// node's addresses; not hostPorts, which are no service). Made again
    /// only after the service maps were written.
    pub(super) fn frontends_by_addr(&self) -> Arc<seta_hubble::decode::ServicesByAddr> {
        if let Some(m) = self.flow_services.lock().unwrap().as_ref() {
            return m.clone();
        }
        let addrs = self.node_port_addrs();
        let by_addr: Arc<seta_hubble::decode::ServicesByAddr> = Arc::new(
            self.services
                .lock()
                .unwrap()
                .frontends(&addrs)
                .into_iter()
                .filter(|f| f.kind != seta_core::service::FrontendKind::HostPort && !f.addr.is_unspecified())
                .filter_map(|f| {
                    let (namespace, name) = f.service.split_once('/')?;
                    let svc = seta_hubble::flow::Service {
                        name: name.to_string(),
                        namespace: namespace.to_string(),
                    };
                    Some(((f.addr, f.port), svc))
                })
                .collect(),
        );
        *self.flow_services.lock().unwrap() = Some(by_addr.clone());
        by_addr
    }

    /// Every frontend this node load-balances, with its backends.
    pub fn service_list(&self) -> Vec<ServiceEntry> {
        let addrs = self.node_port_addrs();
        self.services.lock().unwrap().frontends(&addrs).iter().map(entry).collect()
    }

    /// One service: the object and its frontends.
    pub fn service_get(&self, name: &str, namespace: &str) -> Result<serde_json::Value, ApiError> {
        let addrs = self.node_port_addrs();
        let repo = self.services.lock().unwrap();
        let s = repo
            .service(namespace, name)
            .ok_or_else(|| ApiError::NotFound(format!("no service {name:?} in namespace {namespace}")))?;
        let frontends: Vec<ServiceEntry> = match repo.exposes(s) {
            true => seta_core::service::translate(s, &repo.slices_of(s), &addrs)
                .iter()
                .map(entry)
                .collect(),
            false => vec![],
        };
        Ok(serde_json::json!({"service": s, "frontends": frontends}))
    }

    /// Socket-LB serves a new endpoint's sockets: its namespace joins the
    /// node's in `seta_sock_netns` (nothing when socket-LB is off).
    pub(super) fn sock_lb_admit(&self, ep: &Endpoint) -> Result<(), ApiError> {
        if self.cfg.sock_lb.is_none() || self.cfg.sock_lb_hostns_only {
            return Ok(());
        }
        let cookie = self
            .kernel
            .netns_cookie(Some(&ep.netns_path))
            .map_err(|e| ApiError::BadRequest(format!("netns-path: {e}")))?;
        off_runtime(|| self.kernel.sock_netns_set(cookie, Some(seta_abi::SOCK_NETNS_POD)))?;
        self.sock_ns.get().pods.insert(ep.id, cookie);
        Ok(())
    }

    /// A removed endpoint's namespace leaves socket-LB.
    pub(super) fn sock_lb_forget(&self, id: u16) {
        let gone = self.sock_ns.get().forget(id);
        if let Some(c) = gone {
            if let Err(e) = self.kernel.sock_netns_set(c, None) {
                tracing::warn!(%e, cookie = c, "socket-LB namespace");
            }
        }
    }

    /// At start: socket-LB's namespaces are the node's and its live
    /// endpoints' (stale ones go; all go when socket-LB is off).
    pub(super) fn sock_lb_reconcile(&self, eps: &[Endpoint]) -> Result<()> {
        let want = if self.cfg.sock_lb.is_some() {
            let host = self.kernel.netns_cookie(None)?;
            let mut pods = BTreeMap::new();
            // (with --bpf-lb-sock-hostns-only the pods' namespaces stay out)
            for ep in eps.iter().filter(|_| !self.cfg.sock_lb_hostns_only) {
                match self.kernel.netns_cookie(Some(&ep.netns_path)) {
                    Ok(c) => {
                        pods.insert(ep.id, c);
                    }
                    Err(e) => tracing::warn!(id = ep.id, %e, "socket-LB: the endpoint's namespace"),
                }
            }
            let mut s = self.sock_ns.get();
            *s = crate::services::SockNamespaces { host: Some(host), pods };
            s.want()
        } else {
            BTreeMap::new()
        };
        let have = self.kernel.sock_netns_list();
        for (c, k) in crate::services::SockNamespaces::diff(&have, &want) {
            off_runtime(|| self.kernel.sock_netns_set(c, k))?;
        }
        Ok(())
    }

    /// The kube-proxy replacement block of `seta status`.
    /// How this node's frontends forward and choose (flags and annotations).
    fn lb_choices(&self) -> crate::services::LbChoices {
        let c = &self.cfg;
        crate::services::LbChoices {
            maglev: c.maglev.map(|m| (m.m, m.table_seed)),
            maglev_default: c.lb_algorithm == seta_core::mode::LbAlgorithm::Maglev,
            algorithm_annotation: c.lb_algorithm_annotation,
            mode_annotation: c.lb_mode_annotation,
            dsr_default: c.lb_mode == crate::config::LbMode::Dsr,
            external_cluster_ip: c.lb_external_cluster_ip,
            service_topology: c.service_topology,
            external_ip_mitigation: c.external_ip_mitigation,
            source_range_all_types: c.lb_source_range_all_types,
        }
    }

    pub(super) fn kpr_status(&self) -> seta_core::api::KprStatus {
        let (services, frontends) = self.services.lock().unwrap_or_else(|e| e.into_inner()).counts();
        let per_service = |on: bool| if on { " (per-service annotation)" } else { "" };
        seta_core::api::KprStatus {
            enabled: self.cfg.kube_proxy_replacement,
            served: [
                ("ClusterIP", true),
                ("NodePort", self.cfg.serve_node_port),
                ("LoadBalancer", self.cfg.serve_node_port),
                ("externalIPs", self.cfg.serve_external_ips),
                ("HostPort", self.cfg.serve_host_port),
            ]
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(k, _)| k.to_string())
            .collect(),
            socket_lb: match &self.cfg.sock_lb {
                Some(dir) if self.cfg.sock_lb_hostns_only => format!("Enabled (cgroup {}, host namespace only)", dir.display()),
                Some(dir) => format!("Enabled (cgroup {})", dir.display()),
                None => "Disabled".into(),
            },
            mode: format!(
                "{}{}",
                match self.cfg.lb_mode {
                    crate::config::LbMode::Snat => "SNAT",
                    crate::config::LbMode::Dsr => "DSR",
                    crate::config::LbMode::Hybrid => "Hybrid",
                },
                per_service(self.cfg.lb_mode_annotation)
            ),
            backend_selection: format!(
                "{}{}",
                match (&self.cfg.maglev, self.cfg.lb_algorithm) {
                    (Some(m), seta_core::mode::LbAlgorithm::Maglev) => format!("Maglev (Table Size: {})", m.m),
                    _ => "Random".into(),
                },
                per_service(self.cfg.lb_algorithm_annotation)
            ),
            no_backend_response: format!("{:?}", self.cfg.service_no_backend_response).to_lowercase(),
            node_port_range: self.cfg.node_port_range.to_string(),
            node_port_addresses: self
                .node_port_addrs()
                .iter()
                .filter(|a| !a.is_unspecified())
                .map(|a| a.to_string())
                .collect(),
            devices: self.node_dev.iter().cloned().chain(self.other_devs()).collect(),
            services,
            frontends,
            annotations: {
                use seta_core::service::*;
                let mut a = vec![
                    ANNOTATION_NODE,
                    ANNOTATION_NODE_SELECTOR,
                    ANNOTATION_SRC_RANGES_POLICY,
                    ANNOTATION_TYPE,
                ];
                if self.cfg.lb_mode_annotation {
                    a.push(ANNOTATION_FORWARDING_MODE);
                }
                if self.cfg.lb_algorithm_annotation {
                    a.push(ANNOTATION_LB_ALGORITHM);
                }
                a.sort_unstable();
                a.into_iter().map(String::from).collect()
            },
        }
    }
}
