//! The agent's side of the Kubernetes subsystem (`crate::k8s`): watches of
//! NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy and
//! Namespace objects (list, then watch from the listed resourceVersion;
//! bookmarks, a relist after 410 Gone and backoff on errors come from
//! kube-runtime's watcher), applied as the policy set and namespaces'
//! labels (a failed watch starts over with a list: `k8s::relisting_watch`).
//! A refused object is reported in the agent log, as an Event,
//! and for Cilium's kinds in the object's `status.nodes.<node>`.
use super::*;
use crate::k8s::translate::{self, Outcome, PolicyKind};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;

const NAMESPACES: &str = "namespaces";
const PODS: &str = "pods";
const NODES: &str = "nodes";

/// The names of the watches, for the subsystem's health.
pub(crate) fn watches() -> Vec<&'static str> {
    PolicyKind::ALL
        .iter()
        .map(|k| k.gvr().2)
        .chain([NAMESPACES, PODS, NODES])
        .chain(crate::k8s::services::SvcKind::ALL.iter().map(|k| k.gvkp().3))
        .collect()
}

pub(super) use crate::k8s::{resource, Change};

fn rfc3339_now() -> String {
    seta_core::time::rfc3339(seta_core::time::unix_now())
}

pub(super) type Events = crate::k8s::WatchStream;

/// A watch of every object of `ar` (list, then watch; a relist after any
/// error: `k8s::relisting_watch`).
pub(super) fn watch_all(k: &crate::k8s::K8s, ar: &ApiResource) -> Events {
    watch_where(k, ar, watcher::Config::default())
}

fn watch_where(k: &crate::k8s::K8s, ar: &ApiResource, cfg: watcher::Config) -> Events {
    let api: Api<DynamicObject> = Api::all_with(k.client.clone(), ar);
    crate::k8s::relisting_watch(api, cfg)
}

/// The next event as JSON, noting the watch's health; None: the stream ended.
async fn next_event(k: &crate::k8s::K8s, s: &mut Events, name: &'static str) -> Option<watcher::Event<serde_json::Value>> {
    crate::k8s::next_event(s, name, &|r| k.watch_state(name, r)).await
}

/// The next change of a watch, a (re)list gathered whole; None: the stream ended.
pub(super) async fn next_change(k: &crate::k8s::K8s, s: &mut Events, name: &'static str) -> Option<Change> {
    crate::k8s::next_change(s, name, &|r| k.watch_state(name, r)).await
}

impl Agent {
    /// Watch one policy kind; every change that alters the accepted set
    /// replaces the policy repository.
    pub(super) async fn k8s_policy_watch(self: Arc<Self>, kind: PolicyKind) -> anyhow::Result<()> {
        let k = self.k8s.clone().expect("Kubernetes is configured");
        let (g, v, plural) = kind.gvr();
        let ar = resource(g, v, kind.kind(), plural);
        let mut s = watch_all(&k, &ar);
        while let Some(ch) = next_change(&k, &mut s, plural).await {
            let (outcomes, changed) = match ch {
                Change::Listed(listed) => k.policies().replace(kind, &listed),
                Change::Apply(o) => {
                    let out = k.policies().apply(kind, &o);
                    let changed = matches!(out, Outcome::Accepted { changed: true, .. });
                    (vec![(translate::key(kind, &o), out)], changed)
                }
                Change::Delete(o) => (vec![], k.policies().delete(kind, &o)),
            };
            for (key, out) in outcomes {
                self.k8s_report(&ar, key, out).await;
            }
            if changed {
                self.k8s_policies_changed().await;
            }
        }
        anyhow::bail!("the {plural} watch ended")
    }

    /// The accepted Kubernetes policies become the repository.
    async fn k8s_policies_changed(&self) {
        let Some(k) = &self.k8s else { return };
        let docs = k.policies().docs();
        let n = docs.len();
        let mut eps = self.endpoints.lock().await;
        if !self.policy.get().replace(docs) {
            return;
        }
        match self.policy_changed(&mut eps, false) {
            Ok(revision) => tracing::info!(policies = n, revision, "Kubernetes policies applied"),
            Err(e) => tracing::error!(%e, "applying the Kubernetes policies"),
        }
    }

    /// Tell about a refused object (once per error) or a fixed one: the
    /// log, an Event, and Cilium's per-node status.
    async fn k8s_report(&self, ar: &ApiResource, (kind, ns, name): translate::ObjectKey, out: Outcome) {
        let Some(k) = &self.k8s else { return };
        let node = &self.cfg.node;
        let status = match &out {
            Outcome::Rejected { msg, new: true } => {
                tracing::error!(kind = kind.kind(), namespace = %ns, name = %name, error = %msg, "policy object refused; the version accepted before (if any) stays");
                self.k8s_event(kind, &ns, &name, msg).await;
                serde_json::json!({"ok": false, "enforcing": false, "error": msg, "lastUpdated": rfc3339_now()})
            }
            Outcome::Accepted { cleared: true, .. } => {
                serde_json::json!({"ok": true, "enforcing": true, "error": null, "lastUpdated": rfc3339_now()})
            }
            _ => return,
        };
        if !kind.has_node_status() {
            return;
        }
        let api: Api<DynamicObject> = match ns.as_str() {
            "" => Api::all_with(k.client.clone(), ar),
            ns => Api::namespaced_with(k.client.clone(), ns, ar),
        };
        let patch = serde_json::json!({"status": {"nodes": {node.as_str(): status}}});
        if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::warn!(kind = kind.kind(), %name, %e, "could not write the policy's status");
        }
    }

    /// A Warning Event about a refused object, as `kubectl get events` shows it.
    async fn k8s_event(&self, kind: PolicyKind, ns: &str, name: &str, msg: &str) {
        let (g, v, _) = kind.gvr();
        self.k8s_warning(&format!("{g}/{v}"), kind.kind(), ns, name, "PolicyRejected", msg)
            .await
    }

    /// A Warning Event about an object (`apiVersion`, `kind`).
    pub(super) async fn k8s_warning(&self, api_version: &str, kind: &str, ns: &str, name: &str, reason: &str, msg: &str) {
        let Some(k) = &self.k8s else { return };
        let event_ns = if ns.is_empty() { "default" } else { ns };
        let now = rfc3339_now();
        let ev = serde_json::json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": format!("{name}."), "namespace": event_ns},
            "involvedObject": {"apiVersion": api_version, "kind": kind, "name": name, "namespace": ns},
            "reason": reason, "message": msg, "type": "Warning",
            "source": {"component": "seta-agent", "host": self.cfg.node},
            "reportingComponent": "seta-agent", "reportingInstance": self.cfg.node,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let api: Api<DynamicObject> = Api::namespaced_with(k.client.clone(), event_ns, &resource("", "v1", "Event", "events"));
        let r = match serde_json::from_value::<DynamicObject>(ev) {
            Ok(o) => api.create(&PostParams::default(), &o).await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = r {
            tracing::warn!(%name, %e, "could not record the Event");
        }
    }

    /// Namespaces' labels: an endpoint's identity includes its namespace's.
    pub(super) async fn k8s_namespace_watch(self: Arc<Self>) -> anyhow::Result<()> {
        let k = self.k8s.clone().expect("Kubernetes is configured");
        let ar = resource("", "v1", "Namespace", NAMESPACES);
        let mut s = watch_all(&k, &ar);
        while let Some(ev) = next_event(&k, &mut s, NAMESPACES).await {
            let o = match ev {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => o,
                _ => continue, // a deleted namespace's endpoints are gone with it
            };
            let Some((ns, mut labels)) = translate::namespace_labels(&o) else {
                continue;
            };
            labels.insert("kubernetes.io/metadata.name".into(), ns.clone());
            if self.policy.get().namespaces().get(&ns) == Some(&labels) {
                continue;
            }
            if let Err(e) = self.set_namespace(&ns, labels).await {
                tracing::error!(namespace = %ns, %e, "namespace labels from Kubernetes");
            }
        }
        anyhow::bail!("the namespaces watch ended")
    }

    /// This node's Pods (`spec.nodeName`): their labels are their endpoints'
    /// labels; a label change re-identifies the endpoint.
    pub(super) async fn k8s_pod_watch(self: Arc<Self>) -> anyhow::Result<()> {
        let k = self.k8s.clone().expect("Kubernetes is configured");
        let ar = resource("", "v1", "Pod", PODS);
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", self.cfg.node));
        let mut s = watch_where(&k, &ar, cfg);
        let mut listed = BTreeMap::new();
        while let Some(ev) = next_event(&k, &mut s, PODS).await {
            let changed = match ev {
                watcher::Event::Init => {
                    listed.clear();
                    continue;
                }
                watcher::Event::InitApply(o) => {
                    listed.extend(translate::pod_info(&o));
                    continue;
                }
                watcher::Event::InitDone => {
                    let pods = std::mem::take(&mut listed);
                    k.pods_listed(pods.clone());
                    pods.into_iter().collect::<Vec<_>>()
                }
                watcher::Event::Apply(o) => match translate::pod_info(&o) {
                    Some((key, info)) => match k.pod_seen(key.clone(), Some(info.clone())) {
                        Some(before) if before.labels == info.labels => vec![],
                        _ => vec![(key, info)],
                    },
                    None => vec![],
                },
                watcher::Event::Delete(o) => {
                    if let Some((key, _)) = translate::pod_info(&o) {
                        k.pod_seen(key, None);
                    }
                    vec![]
                }
            };
            for ((ns, pod), info) in changed {
                self.k8s_pod_labels(&ns, &pod, info.labels).await;
            }
        }
        anyhow::bail!("the pods watch ended")
    }

    /// This node's Node object: its labels decide which services it
    /// exposes (`service.cilium.io/node`, `node-selector`), and its
    /// `topology.kubernetes.io/zone` label is the zone topology-aware
    /// routing prefers (Cilium's zone watcher); a change re-selects every
    /// service's frontends and backends.
    pub(super) async fn k8s_node_watch(self: Arc<Self>) -> anyhow::Result<()> {
        let k = self.k8s.clone().expect("Kubernetes is configured");
        let ar = resource("", "v1", "Node", NODES);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={}", self.cfg.node));
        let mut s = watch_where(&k, &ar, cfg);
        while let Some(ev) = next_event(&k, &mut s, NODES).await {
            let labels: BTreeMap<String, String> = match ev {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => o
                    .pointer("/metadata/labels")
                    .and_then(|l| serde_json::from_value(l.clone()).ok())
                    .unwrap_or_default(),
                watcher::Event::Delete(_) => BTreeMap::new(),
                watcher::Event::Init | watcher::Event::InitDone => continue,
            };
            let zone = labels.get(seta_core::service::LABEL_TOPOLOGY_ZONE).cloned();
            let _order = self.services_io.lock().await;
            let changed = {
                let mut repo = self.services.lock().unwrap();
                repo.set_node_labels(labels).then(|| repo.clone())
            };
            if let Some(snapshot) = changed {
                tracing::info!(zone = zone.as_deref().unwrap_or("<none>"), "this node's labels changed");
                // kept for a restart, which serves the same until the watch is back
                if let Err(e) = self.save_services(snapshot) {
                    tracing::error!(%e, "saving the services with the node's labels");
                }
                if let Err(e) = self.sync_services().await {
                    tracing::error!(%e, "service maps after the node's labels changed");
                }
            }
        }
        anyhow::bail!("the nodes watch ended")
    }

    /// A Pod's labels changed: its endpoint (if any) follows.
    async fn k8s_pod_labels(&self, ns: &str, pod: &str, labels: Vec<String>) {
        let r = EndpointRef::PodName {
            namespace: ns.to_string(),
            pod: pod.to_string(),
        };
        match self.get(&r).await {
            Ok(ep) if ep.pod_labels != labels => {
                if let Err(e) = self.set_labels(&r, labels).await {
                    tracing::error!(namespace = %ns, %pod, %e, "relabelling the endpoint after its Pod's labels changed");
                }
            }
            _ => {}
        }
    }

    /// Under Kubernetes a CNI ADD for a Pod takes the Pod's labels and
    /// named ports, waiting a bounded time for the Pod to arrive.
    pub(super) async fn with_pod(&self, mut req: EndpointChangeRequest) -> Result<EndpointChangeRequest, ApiError> {
        let Some(k) = &self.k8s else { return Ok(req) };
        if req.pod_name.is_empty() || req.namespace.is_empty() {
            return Ok(req);
        }
        let key = (req.namespace.clone(), req.pod_name.clone());
        let pod = k.wait_pod(&key, k.pod_wait).await.ok_or_else(|| {
            ApiError::Unavailable(format!(
                "pod {}/{}: not in the Kubernetes API on this node (spec.nodeName={}) after {} s; nothing was changed",
                key.0,
                key.1,
                self.cfg.node,
                k.pod_wait.as_secs_f64()
            ))
        })?;
        req.labels = pod.labels;
        if req.named_ports.is_empty() {
            req.named_ports = pod.named_ports;
        }
        Ok(req)
    }

    /// An endpoint of a Pod changed (Some) or went (None): its
    /// CiliumEndpoint follows, written by the CEP writer off every lock.
    pub(super) fn k8s_cep(&self, ep: &Endpoint, gone: bool) {
        let Some(k) = &self.k8s else { return };
        if ep.pod_name.is_empty() || ep.namespace.is_empty() {
            return;
        }
        let key = (ep.namespace.clone(), ep.pod_name.clone());
        let cep = match gone {
            true => None,
            false => {
                let uid = k.pod(&key).map(|p| p.uid).unwrap_or_default();
                Some(translate::cilium_endpoint(ep, &uid, self.node_ip))
            }
        };
        k.cep_push(key, cep);
    }

    /// Write queued CiliumEndpoints (create or replace; delete); what fails
    /// is retried a second later unless something newer came meanwhile.
    pub(super) async fn k8s_cep_writer(self: Arc<Self>) -> anyhow::Result<()> {
        let k = self.k8s.clone().expect("Kubernetes is configured");
        let ar = resource("cilium.io", "v2", "CiliumEndpoint", "ciliumendpoints");
        loop {
            for ((ns, name), cep) in k.ceps_take().await {
                let api: Api<DynamicObject> = Api::namespaced_with(k.client.clone(), &ns, &ar);
                let r = match &cep {
                    None => match api.delete(&name, &Default::default()).await {
                        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                        r => r.map(|_| ()),
                    },
                    Some(obj) => write_cep(&api, &name, obj).await,
                };
                if let Err(e) = r {
                    tracing::warn!(namespace = %ns, %name, %e, "CiliumEndpoint not written; retrying");
                    k.ceps_retry((ns, name), cep);
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Start the watches (supervised: a failed run starts over with a list).
    pub(super) fn spawn_k8s(self: &Arc<Self>) {
        if self.k8s.is_none() {
            return;
        }
        for kind in PolicyKind::ALL {
            let me = self.clone();
            self.supervisor.spawn(kind.gvr().2, move || me.clone().k8s_policy_watch(kind));
        }
        let me = self.clone();
        self.supervisor.spawn("k8s-namespaces", move || me.clone().k8s_namespace_watch());
        for kind in crate::k8s::services::SvcKind::ALL {
            let me = self.clone();
            self.supervisor.spawn(kind.gvkp().3, move || me.clone().k8s_service_watch(kind));
        }
        let me = self.clone();
        self.supervisor.spawn("k8s-pods", move || me.clone().k8s_pod_watch());
        let me = self.clone();
        self.supervisor.spawn("k8s-node", move || me.clone().k8s_node_watch());
        let me = self.clone();
        self.supervisor.spawn("k8s-ciliumendpoints", move || me.clone().k8s_cep_writer());
    }

    /// Under Kubernetes, before `seta policy wait` waits for the endpoints:
    /// wait until this agent enforces the policies the API holds now (a
    /// fresh list of the three kinds, put through the same translation),
    /// so a policy applied with kubectl just before is in. When the API
    /// moves on meanwhile the list is taken again (every second).
    pub(super) async fn k8s_policies_seen(&self, deadline: Instant) -> Result<(), ApiError> {
        let Some(k) = &self.k8s else { return Ok(()) };
        let as_json = |d: &[PolicyDoc]| d.iter().map(|x| serde_json::to_value(x).ok()).collect::<Vec<_>>();
        loop {
            let mut want = translate::PolicySource::default();
            for kind in PolicyKind::ALL {
                let (g, v, plural) = kind.gvr();
                let api: Api<DynamicObject> = Api::all_with(k.client.clone(), &resource(g, v, kind.kind(), plural));
                let listed = api
                    .list(&Default::default())
                    .await
                    .map_err(|e| ApiError::Unavailable(format!("listing {plural} from the Kubernetes API: {e}")))?;
                let objs: Vec<serde_json::Value> = listed.items.into_iter().filter_map(|o| serde_json::to_value(o).ok()).collect();
                want.replace(kind, &objs);
            }
            let want = as_json(&want.docs());
            let relist = Instant::now() + std::time::Duration::from_secs(1);
            while Instant::now() < relist {
                {
                    let _eps = self.endpoints.lock().await;
                    if as_json(self.policy.get().docs()) == want {
                        return Ok(());
                    }
                }
                if Instant::now() > deadline {
                    return Err(ApiError::Conflict(
                        "this agent does not enforce the Kubernetes API's policies yet (its watches lag or fail: see seta status)".into(),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        }
    }

    /// Policies and services come from the API under Kubernetes: local
    /// imports and deletes of `objects` are refused.
    pub(super) fn refuse_under_k8s(&self, objects: &str, what: &str) -> Result<(), ApiError> {
        match &self.k8s {
            Some(_) => Err(ApiError::BadRequest(format!(
                "{objects} come from the Kubernetes API here (--k8s-kubeconfig): {what} them with kubectl"
            ))),
            None => Ok(()),
        }
    }
}

/// Create the CiliumEndpoint, or replace the one there (its resourceVersion
/// taken first).
async fn write_cep(api: &Api<DynamicObject>, name: &str, obj: &serde_json::Value) -> kube::Result<()> {
    let mut o: DynamicObject = serde_json::from_value(obj.clone()).map_err(kube::Error::SerdeError)?;
    match api.get_opt(name).await? {
        Some(have) => {
            o.metadata.resource_version = have.metadata.resource_version;
            api.replace(name, &PostParams::default(), &o).await.map(|_| ())
        }
        None => api.create(&PostParams::default(), &o).await.map(|_| ()),
    }
}
