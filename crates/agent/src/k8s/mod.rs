//! The Kubernetes subsystem: the API client, what the watched objects
//! contribute (policies; namespaces' labels go to the policy subsystem
//! directly), and the watches' health. The agent (`agent/k8s.rs`) runs the
//! watches and applies what this computes; translation is pure
//! (`translate`).
pub mod crd;
pub mod services;
#[cfg(test)]
mod tests;
pub mod translate;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use translate::{PodInfo, PolicySource};

/// (namespace, name)
pub type PodKey = (String, String);

/// Where the API is: a kubeconfig, or the pod's service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Kubeconfig(std::path::PathBuf),
    InCluster,
}

pub struct K8s {
    pub client: kube::Client,
    /// the watched policy objects and what they contribute
    pub policies: Mutex<PolicySource>,
    /// the watched Services and EndpointSlices
    pub services: Mutex<services::ServiceSource>,
    /// per watch: Ok once it has listed, or its last error
    health: Mutex<BTreeMap<&'static str, Result<(), String>>>,
    pub source: Source,
    /// this node's Pods (from the watch)
    pods: Mutex<BTreeMap<PodKey, PodInfo>>,
    pods_changed: tokio::sync::Notify,
    /// CiliumEndpoints to write (Some) or delete (None), latest per pod
    ceps: Mutex<BTreeMap<PodKey, Option<serde_json::Value>>>,
    ceps_due: tokio::sync::Notify,
    /// how long a CNI ADD waits for its Pod to arrive through the watch
    pub pod_wait: std::time::Duration,
}

/// A watch's items: events, or errors after which it starts over.
pub type WatchStream =
    futures::stream::BoxStream<'static, kube::runtime::watcher::Result<kube::runtime::watcher::Event<kube::api::DynamicObject>>>;

const RELIST_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(200);
const RELIST_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// A watch of `api` (list, then watch from the listed resourceVersion, with
/// bookmarks) that starts over with a fresh list after any error, once a
/// backoff (200 ms doubling to 5 s) has passed. Every recovery is thus a
/// relist the consumer sees (`Init` … `InitDone`): what changed while the
/// API was away arrives, and the watch's health can say when it is back.
pub fn relisting_watch(api: kube::Api<kube::api::DynamicObject>, cfg: kube::runtime::watcher::Config) -> WatchStream {
    use futures::StreamExt;
    struct St {
        api: kube::Api<kube::api::DynamicObject>,
        cfg: kube::runtime::watcher::Config,
        cur: Option<WatchStream>,
        backoff: std::time::Duration,
        wait: bool,
    }
    let st = St {
        api,
        cfg,
        cur: None,
        backoff: RELIST_BACKOFF_MIN,
        wait: false,
    };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if st.cur.is_none() {
                if st.wait {
                    tokio::time::sleep(st.backoff).await;
                    st.backoff = (st.backoff * 2).min(RELIST_BACKOFF_MAX);
                }
                st.cur = Some(kube::runtime::watcher(st.api.clone(), st.cfg.clone()).boxed());
            }
            match st.cur.as_mut().expect("set").next().await {
                Some(Ok(ev)) => {
                    if matches!(ev, kube::runtime::watcher::Event::InitDone) {
                        st.backoff = RELIST_BACKOFF_MIN;
                    }
                    return Some((Ok(ev), st));
                }
                Some(Err(e)) => {
                    st.cur = None;
                    st.wait = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.cur = None;
                    st.wait = true;
                }
            }
        }
    })
    .boxed()
}

/// The API resource of a kind.
pub fn resource(group: &str, version: &str, kind: &str, plural: &str) -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk(group, version, kind), plural)
}

/// The next event of a watch as JSON, telling `health` about it (an error,
/// or a list/change that came through); None: the stream ended.
pub async fn next_event(
    s: &mut WatchStream,
    name: &str,
    health: &(dyn Fn(Result<(), String>) + Sync),
) -> Option<kube::runtime::watcher::Event<serde_json::Value>> {
    use futures::StreamExt;
    use kube::runtime::watcher::Event;
    loop {
        match s.next().await? {
            Err(e) => {
                tracing::warn!(watch = name, %e, "Kubernetes watch failed; retrying with backoff");
                health(Err(e.to_string()));
            }
            Ok(ev) => {
                if matches!(ev, Event::InitDone | Event::Apply(_) | Event::Delete(_)) {
                    health(Ok(()));
                }
                let json = |o: kube::api::DynamicObject| serde_json::to_value(o).unwrap_or_default();
                return Some(match ev {
                    Event::Apply(o) => Event::Apply(json(o)),
                    Event::Delete(o) => Event::Delete(json(o)),
                    Event::InitApply(o) => Event::InitApply(json(o)),
                    Event::Init => Event::Init,
                    Event::InitDone => Event::InitDone,
                });
            }
        }
    }
}

/// What a watch says, with a (re)list gathered whole.
pub enum Change {
    /// every object of the kind (the first list, or a relist)
    Listed(Vec<serde_json::Value>),
    Apply(serde_json::Value),
    Delete(serde_json::Value),
}

/// The next change of a watch; None: the stream ended.
pub async fn next_change(s: &mut WatchStream, name: &str, health: &(dyn Fn(Result<(), String>) + Sync)) -> Option<Change> {
    use kube::runtime::watcher::Event;
    let mut listed = Vec::new();
    loop {
        match next_event(s, name, health).await? {
            Event::Init => listed.clear(),
            Event::InitApply(o) => listed.push(o),
            Event::InitDone => return Some(Change::Listed(listed)),
            Event::Apply(o) => return Some(Change::Apply(o)),
            Event::Delete(o) => return Some(Change::Delete(o)),
        }
    }
}

/// A client for `source` (no request is made yet).
pub async fn connect(source: &Source) -> anyhow::Result<kube::Client> {
    let cfg = match source {
        Source::Kubeconfig(p) => kubeconfig(p).await?,
        Source::InCluster => kube::Config::incluster()?,
    };
    Ok(kube::Client::try_from(cfg)?)
}

async fn kubeconfig(p: &Path) -> anyhow::Result<kube::Config> {
    let kc = kube::config::Kubeconfig::read_from(p).map_err(|e| anyhow::anyhow!("--k8s-kubeconfig {}: {e}", p.display()))?;
    Ok(kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?)
}

impl K8s {
    pub fn new(client: kube::Client, source: Source, watches: &[&'static str]) -> Self {
        Self {
            client,
            policies: Mutex::new(PolicySource::default()),
            services: Mutex::new(Default::default()),
            health: Mutex::new(watches.iter().map(|w| (*w, Err("not listed yet".to_string()))).collect()),
            source,
            pods: Mutex::new(BTreeMap::new()),
            pods_changed: tokio::sync::Notify::new(),
            ceps: Mutex::new(BTreeMap::new()),
            ceps_due: tokio::sync::Notify::new(),
            pod_wait: std::time::Duration::from_secs(10),
        }
    }

    /// Services' nodePorts must be in `range` (`--node-port-range`).
    pub fn with_node_port_range(self, range: seta_core::service::NodePortRange) -> Self {
        self.services.lock().unwrap_or_else(|e| e.into_inner()).node_port_range = range;
        self
    }

    /// A Pod of this node was listed or changed (None: deleted). Returns
    /// what it was before.
    pub fn pod_seen(&self, key: PodKey, info: Option<PodInfo>) -> Option<PodInfo> {
        let before = {
            let mut p = self.pods.lock().unwrap_or_else(|e| e.into_inner());
            match info {
                Some(i) => p.insert(key, i),
                None => p.remove(&key),
            }
        };
        self.pods_changed.notify_waiters();
        before
    }

    /// Replace the cache with a full listing.
    pub fn pods_listed(&self, pods: BTreeMap<PodKey, PodInfo>) {
        *self.pods.lock().unwrap_or_else(|e| e.into_inner()) = pods;
        self.pods_changed.notify_waiters();
    }

    pub fn pod(&self, key: &PodKey) -> Option<PodInfo> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    /// The Pod, waiting at most `limit` for the watch to bring it.
    pub async fn wait_pod(&self, key: &PodKey, limit: std::time::Duration) -> Option<PodInfo> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.pods_changed.notified();
            if let Some(p) = self.pod(key) {
                return Some(p);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.pod(key);
            }
        }
    }

    /// Queue a CiliumEndpoint write (Some) or delete (None) for the writer.
    pub fn cep_push(&self, key: PodKey, cep: Option<serde_json::Value>) {
        self.ceps.lock().unwrap_or_else(|e| e.into_inner()).insert(key, cep);
        self.ceps_due.notify_one();
    }

    /// Everything queued, once there is something.
    pub async fn ceps_take(&self) -> BTreeMap<PodKey, Option<serde_json::Value>> {
        loop {
            let batch = std::mem::take(&mut *self.ceps.lock().unwrap_or_else(|e| e.into_inner()));
            if !batch.is_empty() {
                return batch;
            }
            self.ceps_due.notified().await;
        }
    }

    /// Put back what could not be written (unless something newer came).
    pub fn ceps_retry(&self, key: PodKey, cep: Option<serde_json::Value>) {
        self.ceps.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_insert(cep);
    }

    pub fn policies(&self) -> std::sync::MutexGuard<'_, PolicySource> {
        self.policies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A watch listed (or resumed) fine, or failed with `err`.
    pub fn watch_state(&self, watch: &'static str, r: Result<(), String>) {
        self.health.lock().unwrap_or_else(|e| e.into_inner()).insert(watch, r);
    }

    /// Whether `watch` has listed (and is not failing).
    pub fn listed(&self, watch: &str) -> bool {
        matches!(self.health.lock().unwrap_or_else(|e| e.into_inner()).get(watch), Some(Ok(())))
    }

    /// "ok (...)", or "degraded: ..." naming the failing watches; with
    /// the objects refused.
    pub fn status(&self) -> String {
        let via = match &self.source {
            Source::Kubeconfig(p) => format!("kubeconfig {}", p.display()),
            Source::InCluster => "in-cluster".to_string(),
        };
        let refused: Vec<String> = self
            .policies()
            .rejected()
            .into_iter()
            .map(|((k, ns, name), _)| {
                format!(
                    "{} {}{name}",
                    k.kind(),
                    if ns.is_empty() { String::new() } else { format!("{ns}/") }
                )
            })
            .collect();
        let refused = match refused.len() {
            0 => String::new(),
            _ => format!("; refused: {}", refused.join(", ")),
        };
        let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let bad: Vec<String> = h
            .iter()
            .filter_map(|(w, r)| r.as_ref().err().map(|e| format!("{w}: {e}")))
            .collect();
        if bad.is_empty() {
            format!("ok ({} watches, {via}{refused})", h.len())
        } else {
            format!(
                "degraded: {} (the datapath keeps the last known state; retrying){refused}",
                bad.join("; ")
            )
        }
    }
}
