//! The agent's side of the cluster subsystem (`crate::cluster`): the
//! kvstore watches feed it, and what it computes is applied outside its
//! lock: the ipcache's cluster source, policy maps, routes (netlink, with no
//! lock but the route reconciler's), the cluster's policies. This node's
//! own entries are published under its lease and re-published after the
//! kvstore comes back or the lease was lost.
use super::*;
use crate::cluster::{policy_key, PolicyWrites, Watch};
use crate::config::RoutingMode;
use seta_core::ipam::router_ip;
use seta_core::ipcache::Source;
use seta_kvstore::ipcache::IpEntry;
use seta_kvstore::reflector::Update;

pub const VXLAN_DEV: &str = "seta_vxlan";
pub const VXLAN_PORT: u16 = 8472;
/// outer Ethernet + IPv4 + UDP + VXLAN headers
pub const TUNNEL_OVERHEAD: u32 = 50;
/// Routes seta installs carry this protocol number, so stale ones are found again.
pub const ROUTE_PROTO: u8 = 0xc5;
/// Health listener on every node (Cilium's cilium-health port).
pub const HEALTH_PORT: u16 = 4240;

/// Node bring-up: the tunnel device (tunnel mode) or its removal (native),
/// the datapath's view of it, and the node device's program.
pub(super) async fn setup_routing_mode(dp: &Datapath, nl: &Netlink, cfg: &Config, node: &NodeFacts) -> Result<()> {
    let pin = dp.pin_dir().to_path_buf();
    match cfg.routing_mode {
        RoutingMode::Tunnel => {
            if nl.link(VXLAN_DEV).await?.is_none() {
                nl.create_vxlan(VXLAN_DEV, VXLAN_PORT).await?;
            }
            let dev = nl.link(VXLAN_DEV).await?.context("seta_vxlan missing after creation")?;
            nl.set_mtu(dev.index, node.mtu).await?;
            nl.set_up(dev.index).await?;
            seta_datapath::sysfs::set_ipv4_sysctl(&format!("conf/{VXLAN_DEV}/rp_filter"), "0")?;
            let dp = dp.clone();
            tokio::task::spawn_blocking(move || dp.attach_overlay(VXLAN_DEV)).await??;
            seta_datapath::maps::set_config(&pin, seta_abi::CONFIG_VXLAN_IFINDEX, dev.index)?;
        }
        RoutingMode::Native => {
            seta_datapath::maps::set_config(&pin, seta_abi::CONFIG_VXLAN_IFINDEX, 0)?;
            dp.detach_links(VXLAN_DEV)?;
            nl.del_link_by_name(VXLAN_DEV).await?;
        }
    }
    let drop = (cfg.service_no_backend_response == crate::config::NoBackendResponse::Drop) as u32;
    let masq = if cfg.enable_bpf_masquerade { seta_abi::OPT_MASQUERADE } else { 0 };
    let dsr = match cfg.lb_mode {
        // each frontend's own mode (its master entry's flag)
        _ if cfg.lb_mode_annotation => seta_abi::OPT_LB_DSR_BY_SERVICE,
        crate::config::LbMode::Snat => 0,
        crate::config::LbMode::Dsr => seta_abi::OPT_LB_DSR_TCP | seta_abi::OPT_LB_DSR_UDP,
        crate::config::LbMode::Hybrid => seta_abi::OPT_LB_DSR_TCP,
    };
    // pods' sockets skip ExternalIPs that are not the node's: so do their
    // packets (with pods outside socket-LB, per-packet LB serves them, as Cilium's)
    let eip = match cfg.external_ip_mitigation && cfg.sock_lb.is_some() && !cfg.sock_lb_hostns_only {
        true => seta_abi::OPT_EXTERNAL_IP_MITIGATION,
        false => 0,
    };
    let agg = match cfg.monitor_aggregation {
        crate::config::MonitorAggregation::None => seta_abi::MONITOR_AGG_NONE,
        crate::config::MonitorAggregation::Low => seta_abi::MONITOR_AGG_LOW,
        crate::config::MonitorAggregation::Medium => seta_abi::MONITOR_AGG_MEDIUM,
        crate::config::MonitorAggregation::Maximum => seta_abi::MONITOR_AGG_MAXIMUM,
    } << seta_abi::OPT_MONITOR_AGG_SHIFT;
    seta_datapath::maps::set_config(
        &pin,
        seta_abi::CONFIG_DATAPATH_OPTS,
        (drop * seta_abi::OPT_LB_NO_BACKEND_DROP)
            | masq
            | dsr
            | agg
            | eip
            | cfg.bpf_events.opts()
            | u32::from(cfg.node_port_range.nat_port_min()) << seta_abi::OPT_NAT_PORT_MIN_SHIFT,
    )?;
    // Maglev: the table size and the flow hash's seed (tables come with the services)
    let (m, seed) = cfg.maglev.map_or((0, 0), |m| (m.m, m.hash_seed));
    seta_datapath::maps::set_config(&pin, seta_abi::CONFIG_LB_MAGLEV_M, m)?;
    seta_datapath::maps::set_config(&pin, seta_abi::CONFIG_LB_HASH_SEED, seed)?;
    // north-south service traffic to another node's backend leaves from this address
    let nip = node.ip.map(|ip| u32::from_ne_bytes(ip.octets())).unwrap_or(0);
    seta_datapath::maps::set_config(&pin, seta_abi::CONFIG_NODE_IP, nip)?;
    // the node's own device, and the other native ones (--devices): NodePorts
    // are served there, and traffic for local pods skips the forwarding path
    for dev in node.dev.iter().chain(node.other_devs.iter().map(|(n, _, _)| n)) {
        let (dp, dev) = (dp.clone(), dev.clone());
        tokio::task::spawn_blocking(move || dp.attach_netdev(&dev)).await??;
    }
    Ok(())
}

impl Agent {
    pub(super) fn prefix(&self) -> &str {
        self.cfg.kvstore_prefix.trim_end_matches('/')
    }

    /// Put and delete keys of the shared kvstore in one transaction, all or
    /// nothing, within 3 s; false (nothing written) when the store is not
    /// shared or there is nothing to write.
    pub(super) async fn write_shared(&self, puts: &[(String, Vec<u8>)], deletes: &[String]) -> Result<bool, ApiError> {
        if !self.kv.shared() || (puts.is_empty() && deletes.is_empty()) {
            return Ok(false);
        }
        match tokio::time::timeout(std::time::Duration::from_secs(3), self.kv.apply(puts, deletes)).await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(e)) => Err(ApiError::Unavailable(format!("kvstore: {e}; nothing was changed"))),
            Err(_) => Err(ApiError::Unavailable("kvstore: no answer within 3 s; nothing was changed".into())),
        }
    }

    /// The MTU pods get: the underlay's, minus the encapsulation in tunnel mode.
    pub fn pod_mtu(&self) -> u32 {
        match self.cfg.routing_mode {
            RoutingMode::Tunnel => self.underlay_mtu - TUNNEL_OVERHEAD,
            RoutingMode::Native => self.underlay_mtu,
        }
    }

    /// This node's IP entry for an endpoint.
    fn ip_entry(&self, ep: &Endpoint) -> IpEntry {
        IpEntry {
            ip: ep.ipv4,
            identity: ep.identity,
            node: self.cfg.node.clone(),
            host_ip: self.node_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
        }
    }

    /// Publish an endpoint's IP for the other nodes (Some) or withdraw it
    /// (None): queued for the IP publisher, never written under a lock. If
    /// the kvstore is away or slow, the announce loop writes everything
    /// again later: the local datapath never waits for it.
    pub(super) fn share_endpoint_ip(&self, ip: Ipv4Addr, ep: Option<&Endpoint>) {
        if !self.kv.shared() {
            return; // a single node: nobody to tell
        }
        self.ip_outbox.push(ip, ep.map(|ep| self.ip_entry(ep)));
    }

    /// The IP publisher: drains the outbox, latest change per IP first come
    /// first written; what cannot be written now is left to the announce
    /// loop's full republish.
    pub(super) async fn ip_publisher(self: Arc<Self>) -> anyhow::Result<()> {
        loop {
            let batch = self.ip_outbox.wait_take().await;
            for (ip, entry) in batch {
                if !self.kv_health.connected() {
                    self.ip_outbox.republish_due();
                    continue;
                }
                let write = async {
                    match &entry {
                        Some(e) => self.kv.publish_ip(self.prefix(), e).await,
                        None => self.kv.withdraw_ip(self.prefix(), ip).await,
                    }
                };
                if !matches!(tokio::time::timeout(std::time::Duration::from_secs(2), write).await, Ok(Ok(()))) {
                    tracing::warn!(%ip, "could not update the endpoint's IP entry in the kvstore; will retry");
                    self.ip_outbox.republish_due();
                }
            }
        }
    }

    /// Write everything this node owns in the kvstore again: its registry
    /// entry, its endpoints' IPs (and delete IPs it no longer has), its
    /// identity references. Ok(()) only when all of it was written.
    pub(super) async fn republish_all(&self) -> seta_kvstore::Result<()> {
        let info = self.node_info().await;
        self.kv.register_node(self.prefix(), &info).await?;
        let entries: Vec<IpEntry> = self.endpoints.lock().await.values().map(|e| self.ip_entry(e)).collect();
        let held: Vec<(u32, LabelSet)> = self.identities.get().held().map(|a| (a.id, a.labels.clone())).collect();
        let mine: std::collections::BTreeSet<Ipv4Addr> = entries.iter().map(|e| e.ip).collect();
        let entries = if self.kv.shared() { entries } else { vec![] };
        for e in &entries {
            self.kv.publish_ip(self.prefix(), e).await?;
        }
        for (k, v) in self.kv.list(&seta_kvstore::ipcache::base(self.prefix()), false).await? {
            if let Some(e) = seta_kvstore::ipcache::parse(v.as_bytes()) {
                if e.node == self.cfg.node && !mine.contains(&e.ip) {
                    tracing::info!(key = %k, "withdrawing a stale IP entry of this node");
                    self.kv.withdraw_ip(self.prefix(), e.ip).await?;
                }
            }
        }
        for (id, labels) in held {
            let got = self.kv.allocate(&labels).await?;
            if got != id {
                tracing::error!(local = id, kvstore = got, "identity number differs from the kvstore's");
            }
        }
        Ok(())
    }

    /// Announce this node and keep its lease alive; re-announce everything
    /// when the kvstore comes back after an outage or the lease was lost.
    pub(super) async fn announce_loop(self: Arc<Self>) {
        let period = std::time::Duration::from_secs((self.cfg.kvstore_lease_ttl / 3).max(1) as u64);
        let mut pending = true;
        let mut next_try = Instant::now();
        loop {
            // the lease first, always: a failing re-announce must never starve it
            if self.last_keepalive.lock().unwrap().elapsed() >= period {
                let r = tokio::time::timeout(period, self.kv.keep_alive())
                    .await
                    .unwrap_or_else(|_| Err(seta_kvstore::KvError::Other("keep-alive: no answer".into())));
                match r {
                    Ok(renewed) => {
                        *self.last_keepalive.lock().unwrap() = Instant::now();
                        pending |= renewed;
                    }
                    Err(e) => {
                        tracing::warn!(%e, "kvstore lease keep-alive failed; reconnecting");
                        self.kv.reconnect().await;
                        pending = true;
                    }
                }
            }
            pending |= self.kv.take_renewed();
            pending |= self.ip_outbox.take_republish();
            if pending && Instant::now() >= next_try {
                match tokio::time::timeout(period * 2, self.republish_all()).await {
                    Ok(Ok(())) => {
                        pending = false;
                        tracing::info!("node announced in the kvstore");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%e, "announcing the node failed; retrying");
                        next_try = Instant::now() + std::time::Duration::from_millis(500);
                    }
                    Err(_) => {
                        tracing::warn!("announcing the node timed out; retrying");
                        next_try = Instant::now() + std::time::Duration::from_millis(500);
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// Watch identities, IP entries and nodes; converge maps and routes
    /// (supervised: a failed run lists everything again).
    pub(super) fn spawn_cluster_sync(self: &Arc<Self>) {
        let me = self.clone();
        self.supervisor.spawn("cluster-sync", move || me.clone().cluster_sync());
        let me = self.clone();
        self.supervisor.spawn("health-listener", move || me.clone().health_listener());
        let me = self.clone();
        self.supervisor.spawn("health-probe", move || {
            let me = me.clone();
            async move {
                me.health_loop().await;
                Ok(())
            }
        });
    }

    pub(super) async fn cluster_sync(self: Arc<Self>) -> anyhow::Result<()> {
        let p = self.prefix().to_string();
        use crate::k8s::crd::Shared;
        let mut ids = self
            .kv
            .reflect_shared(Shared::Identities, format!("{p}/identities/v1/id/"), self.kv_health.ids.clone());
        let mut ips = self
            .kv
            .reflect_shared(Shared::Ips, seta_kvstore::ipcache::base(&p), self.kv_health.ips.clone());
        let mut nodes = self
            .kv
            .reflect_shared(Shared::Nodes, format!("{p}/nodes/v1/"), self.kv_health.nodes.clone());
        // policies are cluster-wide only when the store is shared (the embedded one holds none)
        let mut policies = self.kv.reflect(format!("{p}/policies/v1/"), self.kv_health.policies.clone());
        loop {
            let (which, u) = tokio::select! {
                Some(u) = ids.recv() => (Watch::Identities, u),
                Some(u) = ips.recv() => (Watch::Ips, u),
                Some(u) = nodes.recv() => (Watch::Nodes, u),
                Some(u) = policies.recv() => (Watch::Policies, u),
                else => anyhow::bail!("every kvstore reflector ended"),
            };
            let mut batch = vec![(which, u)];
            // take whatever else is queued: one convergence per burst
            while let Ok(u) = ids.try_recv() {
                batch.push((Watch::Identities, u));
            }
            while let Ok(u) = ips.try_recv() {
                batch.push((Watch::Ips, u));
            }
            while let Ok(u) = nodes.try_recv() {
                batch.push((Watch::Nodes, u));
            }
            while let Ok(u) = policies.try_recv() {
                batch.push((Watch::Policies, u));
            }
            self.apply_cluster_updates(batch).await;
        }
    }

    async fn apply_cluster_updates(&self, batch: Vec<(Watch, Update)>) {
        let t = Instant::now();
        let applied = self.cluster.get().apply(batch, &self.cfg.node);
        let mut eps = self.endpoints.lock().await;
        let ids_changed = !applied.identities.is_empty();
        if ids_changed {
            self.remote_identities_changed(&mut eps, applied.identities);
        }
        if applied.topology {
            self.converge_remote(&mut eps);
        }
        // (under Kubernetes every agent watches the policies in the API)
        let publish = match applied.policies && self.kv.shared() && self.k8s.is_none() {
            true => self.cluster_policies_changed(&mut eps),
            false => None,
        };
        drop(eps);
        if let Some(docs) = publish {
            self.publish_node_policies(docs).await;
        }
        if applied.topology {
            self.reconcile_routes().await;
        }
        if ids_changed {
            self.save_cluster_identities();
        }
        tracing::debug!(ms = t.elapsed().as_secs_f64() * 1e3, "cluster state applied");
    }

    /// Write policy documents to (and delete them from) the cluster's kvstore
    /// in one transaction; a single node (embedded store) keeps them locally.
    /// Write policy documents to (and delete them from) the shared kvstore,
    /// all or nothing, without the agent's lock; what was written, for
    /// `record_policy_writes`.
    pub(super) async fn write_policies(&self, put: &[PolicyDoc], delete: &[PolicyDoc]) -> Result<PolicyWrites, ApiError> {
        let puts: Vec<(String, Vec<u8>)> = put
            .iter()
            .map(|d| (policy_key(self.prefix(), d), serde_json::to_vec(d).expect("serialisable")))
            .collect();
        let deletes: Vec<String> = delete.iter().map(|d| policy_key(self.prefix(), d)).collect();
        match self.write_shared(&puts, &deletes).await? {
            true => Ok(PolicyWrites { puts, deletes }),
            false => Ok(Default::default()),
        }
    }

    /// The kvstore's policies changed (another node imported or deleted one,
    /// or a resync): make the local repository equal to them. On first
    /// contact with a cluster that has none, this node's policies are to be
    /// published instead: returned, for writing after the lock is released.
    fn cluster_policies_changed(&self, eps: &mut Endpoints) -> Option<Vec<PolicyDoc>> {
        // our own recent writes count even before the watch shows them
        let (want, first) = {
            let mut c = self.cluster.get();
            (c.policies(), c.first_policy_sync())
        };
        if first && want.is_empty() {
            // first contact with a cluster that has no policies yet: this
            // node's (from before it joined) become the cluster's
            let mine = self.policy.get().docs().to_vec();
            if !mine.is_empty() {
                return Some(mine);
            }
        }
        let n = want.len();
        if !self.policy.get().replace(want) {
            return None;
        }
        tracing::info!(policies = n, "cluster policies changed");
        if let Err(e) = self.policy_changed(eps, false) {
            tracing::error!(%e, "applying the cluster's policies");
        }
        None
    }

    /// This node's policies (from before it joined) become the cluster's:
    /// written without the agent's lock, ordered with imports and deletes.
    async fn publish_node_policies(&self, docs: Vec<PolicyDoc>) {
        let _order = self.policy_io.lock().await;
        let written = self.write_policies(&docs, &[]).await;
        let mut c = self.cluster.get();
        match written {
            Ok(w) => {
                c.record_policy_writes(w);
                tracing::info!(policies = docs.len(), "published this node's policies to the cluster");
            }
            Err(e) => {
                c.policies_unsynced();
                tracing::warn!(%e, "could not publish this node's policies");
            }
        }
    }

    /// Make the ipcache (and the desired routes) match the other nodes and
    /// their pods; per-IP identities and policy maps follow.
    pub(super) fn converge_remote(&self, eps: &mut Endpoints) {
        off_runtime(|| {
            let tunnel = self.cfg.routing_mode == RoutingMode::Tunnel;
            let (want, nodes) = {
                let mut c = self.cluster.get();
                (c.remote(&self.cfg.node, eps.cidr(), tunnel), c.nodes().len())
            };
            // the cluster's part of the merged ipcache; entries other sources
            // own with a higher precedence (local endpoints) stay theirs
            let (up, down) = self.ipcache.get().replace_source(Source::Cluster, &want);
            // pod IPs under a Kubernetes ipBlock get per-IP identities, remote ones too
            match self.sync_ipblock() {
                Ok(true) => self.regenerate_all(eps),
                Ok(false) => {}
                Err(e) => tracing::error!(%e, "per-IP identities of ipBlock peers"),
            }
            // routes to other nodes' pod CIDRs: written by reconcile_routes, off the lock
            if up + down > 0 {
                tracing::info!(up, down, nodes, "remote ipcache converged");
            }
        })
    }

    /// Make the kernel's routes to other nodes' pod CIDRs (ours by protocol)
    /// equal the desired ones; netlink runs without any subsystem lock.
    pub(super) async fn reconcile_routes(&self) {
        let mut installed = self.routes_io.lock().await;
        let routes = self.cluster.get().routes().clone();
        let own_cidr = self.cfg.pod_cidr;
        let tunnel = self.cfg.routing_mode == RoutingMode::Tunnel;
        let host = self.kernel.link(HOST_DEV).await.ok().flatten();
        for ((net, plen), via) in &routes {
            if installed.get(&(*net, *plen)) == Some(via) {
                continue;
            }
            let r = match (tunnel, &host) {
                // tunnel: through seta_host, where from_host encapsulates
                (true, Some(h)) => seta_datapath::netlink::Route {
                    dst: *net,
                    prefix: *plen,
                    gw: None,
                    oif: Some(h.index),
                    src: Some(router_ip(own_cidr)),
                    mtu: Some(self.pod_mtu()),
                    protocol: Some(ROUTE_PROTO),
                },
                // native: via the node's address on the underlay
                _ => seta_datapath::netlink::Route {
                    dst: *net,
                    prefix: *plen,
                    gw: Some(*via),
                    oif: None,
                    src: None,
                    mtu: None,
                    protocol: Some(ROUTE_PROTO),
                },
            };
            match self.kernel.replace_route(&r).await {
                Ok(()) => {
                    installed.insert((*net, *plen), *via);
                }
                Err(e) => tracing::error!(%e, "route to a node's pod CIDR"),
            }
        }
        // stale: ours (by protocol) but no longer wanted
        if let Ok(have) = self.kernel.routes_with_protocol(ROUTE_PROTO).await {
            for (net, plen) in have {
                if !routes.contains_key(&(net, plen)) && self.kernel.delete_route(net, plen).await.is_ok() {
                    installed.remove(&(net, plen));
                }
            }
        }
        installed.retain(|k, _| routes.contains_key(k));
    }
}

/// Cilium's check of the NodePort range against the node's ephemeral ports
/// (`ip_local_port_range`): where they overlap, the range joins
/// `ip_local_reserved_ports` (auto-protection, the default), so no local
/// socket is given a NodePort as its own port; without auto-protection the
/// agent does not start. The node's network namespace: the agent's.
pub(crate) fn protect_node_port_range(cfg: &Config) -> anyhow::Result<()> {
    use seta_datapath::sysfs::{ipv4_sysctl, set_ipv4_sysctl};
    let (local, reserved) = (ipv4_sysctl("ip_local_port_range")?, ipv4_sysctl("ip_local_reserved_ports")?);
    match cfg
        .node_port_range
        .protect(&local, &reserved, cfg.auto_protect_node_port_range)
        .map_err(anyhow::Error::msg)?
    {
        None => Ok(()),
        Some(v) => {
            set_ipv4_sysctl("ip_local_reserved_ports", &v)?;
            tracing::info!(range = %cfg.node_port_range, ephemeral = %local.trim(), reserved = %v, "NodePort range reserved from the ephemeral ports");
            Ok(())
        }
    }
}
