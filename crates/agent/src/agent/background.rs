//! The agent's supervised background work: spare policy maps, the retry
//! loop for unconverged objects, the events reader.
use super::*;

impl Agent {
    /// Pre-register policy maps for the next free endpoint ids (each
    /// registration waits for an RCU grace period; do it off the ADD path).
    pub async fn refill_spare_policy_maps(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        // single flight: a burst of creations asks once more, not once each
        if self.refilling.swap(true, SeqCst) {
            self.refill_again.store(true, SeqCst);
            return;
        }
        loop {
            self.refill_again.store(false, SeqCst);
            self.refill_once().await;
            if !self.refill_again.load(SeqCst) {
                break;
            }
        }
        self.refilling.store(false, SeqCst);
    }

    pub(super) async fn refill_once(&self) {
        let want: Vec<u16> = {
            let used = self.endpoints.lock().await.used_ids();
            (1..=u16::MAX).filter(|i| !used.contains(i)).take(SPARE_POLICY_MAPS).collect()
        };
        self.kernel.prepare_policy_maps(want).await;
    }

    /// Background work, each loop supervised: drain datapath events,
    /// garbage-collect conntrack, keep the node announced, follow the
    /// cluster, retry failed reconciliations.
    pub fn spawn_background(self: Arc<Self>) {
        let sup = self.supervisor.clone();
        let me = self.clone();
        sup.spawn("events-reader", move || {
            let me = me.clone();
            async move {
                low_priority()
                    .spawn(events_reader(me))
                    .await
                    .map_err(|e| anyhow::anyhow!("the events reader ended: {e}"))?
            }
        });
        let me = self.clone();
        sup.spawn("service-events", move || {
            let me = me.clone();
            async move {
                // the service maps (or the ipcache) were written: at most once
                // a second, the frontends (the prefixes) as they are now
                // become upserts and deletes
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                let mut ipcache_seen = None;
                loop {
                    tick.tick().await;
                    if me.observer.agent_events.take_services_changed() {
                        me.observer.agent_events.services(me.service_list());
                    }
                    // and the ipcache, when it was written
                    let generation = me.ipcache.get().generation();
                    if ipcache_seen != Some(generation) {
                        ipcache_seen = Some(generation);
                        let pods = {
                            let eps = me.endpoints.lock().await;
                            eps.values().map(|e| (e.ipv4, (e.namespace.clone(), e.pod_name.clone()))).collect()
                        };
                        let now = me.ipcache.get().installed().clone();
                        me.observer.agent_events.ipcache(&now, &pods);
                    }
                }
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            me.refill_spare_policy_maps().await;
        });
        let me = self.clone();
        sup.spawn("kvstore-announce", move || {
            let me = me.clone();
            async move {
                me.announce_loop().await;
                Ok(())
            }
        });
        let me = self.clone();
        sup.spawn("ip-publisher", move || me.clone().ip_publisher());
        let me = self.clone();
        sup.spawn("node-addresses", move || {
            let me = me.clone();
            async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    me.refresh_node_addresses().await?;
                }
            }
        });
        if self.cfg.ip_masq_agent.is_some() {
            let me = self.clone();
            sup.spawn("ip-masq-agent", move || {
                let me = me.clone();
                async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        let m = me.clone();
                        crate::agent::off_runtime(|| m.ipmasq.refresh())?;
                    }
                }
            });
        }
        // under Kubernetes every agent watches the API for services instead
        if self.kv.shared() && self.k8s.is_none() {
            let me = self.clone();
            sup.spawn("services-sync", move || me.clone().services_sync());
        }
        self.spawn_cluster_sync();
        self.spawn_k8s();
        let k = self.kernel.clone();
        sup.spawn("conntrack-gc", move || {
            let k = k.clone();
            async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
                loop {
                    tick.tick().await;
                    let k = k.clone();
                    let n = tokio::task::spawn_blocking(move || k.ct_gc()).await??;
                    if n > 0 {
                        tracing::debug!(removed = n, "conntrack GC");
                    }
                }
            }
        });
        let me = self.clone();
        sup.spawn("reconcile-retry", move || me.clone().retry_loop());
        let me = self.clone();
        sup.spawn("identity-release", move || {
            let me = me.clone();
            async move {
                loop {
                    me.releases_due.notified().await;
                    me.flush_identity_releases().await;
                }
            }
        });
    }

    /// Retry what did not converge: endpoints whose regeneration failed (a
    /// full policy map recovers once entries go away) and failed ipcache
    /// writes; backoff doubles while retries keep failing.
    pub(super) async fn retry_loop(self: Arc<Self>) -> anyhow::Result<()> {
        const MIN: std::time::Duration = std::time::Duration::from_millis(500);
        const MAX: std::time::Duration = std::time::Duration::from_secs(30);
        let mut wait = MIN;
        loop {
            tokio::time::sleep(wait).await;
            wait = match self.retry_once().await {
                Retry::Idle => MIN,
                Retry::Converged(n) => {
                    tracing::info!(endpoints = n, "failed reconciliations converged");
                    MIN
                }
                Retry::Pending => (wait * 2).min(MAX),
            };
        }
    }
}

/// The runtime of the events reader: one thread at the lowest priority
/// (nice 19), so turning datapath events into flows and metrics takes the
/// CPU the node's workloads leave idle instead of delaying them (what it
/// cannot keep up with waits in the ring buffer, and what overflows it is
/// counted as lost), as the export file's thread does.
fn low_priority() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .thread_name("events")
            .on_thread_start(|| {
                // SAFETY: setpriority on this thread's own id changes nothing else.
                unsafe { libc::setpriority(libc::PRIO_PROCESS as _, libc::gettid() as _, 19) };
            })
            .enable_all()
            .build()
            .expect("build the events runtime")
    })
}

/// Drain the `seta_events` ring buffer into the event log, woken by the
/// kernel (epoll on the ring buffer) when records arrive.
pub(super) async fn events_reader(me: Arc<Agent>) -> anyhow::Result<()> {
    let reader = seta_datapath::maps::EventReader::open(&me.pin_dir)?;
    let mut lost_seen: u64 = reader.lost_per_cpu().iter().sum();
    // SAFETY: the reader owns the ring buffer's fd; it stays open and the same
    // for as long as the AsyncFd (which owns the reader) exists.
    let mut fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(reader, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("register the events ring buffer with epoll: {e}"))?;
    loop {
        // readiness cleared before the ring is drained: a record committed
        // after the last drain found it empty wakes this again
        fd.readable_mut().await?.clear_ready();
        loop {
            let batch: Vec<seta_abi::Record> = fd.get_mut().drain_records();
            for r in &batch {
                me.events.push(&r.ev, r.payload.as_ref());
            }
            // the Hubble observer: the same events as flows, and what was lost
            if !batch.is_empty() {
                let ctx = me.flow_context(&batch).await;
                me.observer.ingest(&batch, &ctx);
            }
            let lost: u64 = fd.get_ref().lost_per_cpu().iter().sum();
            if lost > lost_seen {
                tracing::warn!(lost = lost - lost_seen, "datapath events lost (ring buffer full)");
                me.observer.lost(lost - lost_seen);
                lost_seen = lost;
            }
            if batch.is_empty() {
                break;
            }
            // under load, let records gather: one wakeup and one pass per
            // pause instead of one per record (the kernel does not wake a
            // reader that is behind, so the ring is drained again first);
            // a big batch means the ring is filling: drain on at once
            if batch.len() < EVENTS_BUSY {
                tokio::time::sleep(EVENTS_PAUSE).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
    }
}

/// How long the events reader lets records gather after a batch: at 100k
/// events/s about 200 records, far below the ring's room.
const EVENTS_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);
/// A batch this big (about a fifth of what the ring holds of the largest
/// records, drops with their bytes) is not followed by a pause.
const EVENTS_BUSY: usize = 1024;
