//! The operator under Kubernetes (`--k8s-kubeconfig`, or in a pod): replicas
//! elect a leader through a `coordination.k8s.io/v1` Lease, as client-go's
//! leader election does (a holder renews every retry period; a record left
//! unchanged for the lease duration, by the local clock, is taken over; a
//! leader that cannot renew within the renew deadline stops working). The
//! leader:
//! - cluster-pool IPAM: a CiliumNode without `spec.ipam.podCIDRs` gets the
//!   first free /mask of the cluster pool;
//! - GC: CiliumIdentities no CiliumEndpoint uses (after the identity grace
//!   period), CiliumEndpoints whose Pod is gone, CiliumNodes whose Node is
//!   gone.
//!
//! The decisions (`decide`, `pool_plan`, `Gc::plan`) are pure and tested
//! without an API.
use anyhow::Result;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The Lease and its timings (Cilium's `leader-election-*` flags).
#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// What the operator does under Kubernetes.
#[derive(Debug, Clone)]
pub struct Work {
    pub cluster_pool: Option<(ipnet::Ipv4Net, u8)>,
    pub gc_interval: Duration,
    pub identity_gc_grace: Duration,
}

fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
    let version = if group == "cilium.io" { "v2" } else { "v1" };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Now as a MicroTime (RFC 3339, six fractional digits).
fn now_micro() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let s = seta_core::time::rfc3339(d.as_secs() as i64);
    format!("{}.{:06}Z", s.trim_end_matches('Z'), d.subsec_micros())
}

/// What a replica does about the Lease it read.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// there is none: create it holding it
    Create,
    /// ours: renew it (its resourceVersion)
    Renew(String),
    /// another's, unrenewed for the lease duration: take it over
    TakeOver(String, i64),
    /// another's, alive
    Wait,
}

/// The record last seen and when (by this replica's clock).
#[derive(Debug, Default)]
pub struct Observed {
    record: Option<(String, String)>,
    at: Option<Instant>,
}

/// Decide from the Lease (None: absent) as `me`, at `now`.
pub fn decide(lease: Option<&Value>, me: &str, obs: &mut Observed, now: Instant, duration: Duration) -> Action {
    let Some(l) = lease else { return Action::Create };
    let rv = l
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let spec = l.get("spec").cloned().unwrap_or(Value::Null);
    let holder = spec.get("holderIdentity").and_then(Value::as_str).unwrap_or("").to_string();
    let renew = spec.get("renewTime").and_then(Value::as_str).unwrap_or("").to_string();
    if holder == me {
        return Action::Renew(rv);
    }
    let record = Some((holder.clone(), renew));
    if obs.record != record {
        obs.record = record;
        obs.at = Some(now);
    }
    let transitions = spec.get("leaseTransitions").and_then(Value::as_i64).unwrap_or(0);
    match holder.is_empty() || obs.at.is_some_and(|t| now.duration_since(t) >= duration) {
        true => Action::TakeOver(rv, transitions + 1),
        false => Action::Wait,
    }
}

fn lease_body(e: &Election, me: &str, rv: Option<&str>, transitions: i64, acquired: &str) -> Value {
    let mut meta = json!({"name": e.name, "namespace": e.namespace});
    if let Some(rv) = rv {
        meta["resourceVersion"] = rv.into();
    }
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
        "spec": {
            "holderIdentity": me, "leaseDurationSeconds": e.lease_duration.as_secs().max(1),
            "acquireTime": acquired, "renewTime": now_micro(), "leaseTransitions": transitions,
        },
    })
}

/// One attempt to hold the Lease: Ok(true) when this replica holds it now.
async fn try_hold(api: &Api<DynamicObject>, e: &Election, me: &str, obs: &mut Observed) -> Result<bool> {
    let have = api.get_opt(&e.name).await?.map(|o| serde_json::to_value(o).unwrap_or_default());
    let action = decide(have.as_ref(), me, obs, Instant::now(), e.lease_duration);
    let acquired = have
        .as_ref()
        .and_then(|l| l.pointer("/spec/acquireTime")?.as_str().map(String::from))
        .unwrap_or_else(now_micro);
    let body = match &action {
        Action::Wait => return Ok(false),
        Action::Create => lease_body(e, me, None, 0, &now_micro()),
        Action::Renew(rv) => {
            let t = have
                .as_ref()
                .and_then(|l| l.pointer("/spec/leaseTransitions")?.as_i64())
                .unwrap_or(0);
            lease_body(e, me, Some(rv), t, &acquired)
        }
        Action::TakeOver(rv, t) => lease_body(e, me, Some(rv), *t, &now_micro()),
    };
    let obj: DynamicObject = serde_json::from_value(body)?;
    let r = match action {
        Action::Create => api.create(&PostParams::default(), &obj).await.map(|_| ()),
        _ => api.replace(&e.name, &PostParams::default(), &obj).await.map(|_| ()),
    };
    match r {
        Ok(()) => {
            if matches!(action, Action::TakeOver(..) | Action::Create) {
                tracing::info!(id = me, lease = %format!("{}/{}", e.namespace, e.name), "acquired the leadership Lease");
            }
            Ok(true)
        }
        // another replica wrote first
        Err(kube::Error::Api(er)) if er.code == 409 => Ok(false),
        Err(er) => Err(er.into()),
    }
}

/// Campaign, lead while the Lease is held, step down when it is lost; forever.
pub async fn run(client: kube::Client, e: Election, work: Work, me: String) -> Result<()> {
    let leases: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &e.namespace, &resource("coordination.k8s.io", "Lease", "leases"));
    let mut obs = Observed::default();
    loop {
        tracing::info!(id = %me, "campaigning for the leadership Lease");
        loop {
            match try_hold(&leases, &e, &me, &mut obs).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(er) => tracing::warn!(%er, "reading the Lease failed; retrying"),
            }
            tokio::time::sleep(e.retry_period).await;
        }
        tracing::info!(id = %me, "elected leader");
        let keep = async {
            let mut last_ok = Instant::now();
            loop {
                tokio::time::sleep(e.retry_period).await;
                match try_hold(&leases, &e, &me, &mut obs).await {
                    Ok(true) => last_ok = Instant::now(),
                    Ok(false) => return "another replica holds the Lease".to_string(),
                    Err(er) => {
                        tracing::warn!(%er, "renewing the Lease failed");
                        if last_ok.elapsed() >= e.renew_deadline {
                            return format!("no renewal within {:?}", e.renew_deadline);
                        }
                    }
                }
            }
        };
        let why = tokio::select! {
            why = keep => why,
            r = lead(client.clone(), &work) => format!("the leader's work failed: {r:?}"),
        };
        tracing::warn!(id = %me, %why, "stepped down; campaigning again");
    }
}

/// Pod CIDRs for the CiliumNodes that have none, from what the others hold.
pub fn pool_plan(nodes: &[Value], pool: ipnet::Ipv4Net, mask: u8) -> Vec<(String, Result<ipnet::Ipv4Net, String>)> {
    let cidrs = |n: &Value| -> Vec<ipnet::Ipv4Net> {
        n.pointer("/spec/ipam/podCIDRs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str()?.parse().ok())
            .collect()
    };
    let mut used: Vec<ipnet::Ipv4Net> = nodes.iter().flat_map(cidrs).collect();
    let mut out = vec![];
    for n in nodes {
        if !cidrs(n).is_empty() {
            continue;
        }
        let name = n.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let r = seta_core::ipam::next_free_subnet(pool, mask, &used);
        if let Ok(c) = r {
            used.push(c);
        }
        out.push((name, r));
    }
    out
}

fn names(items: &[Value]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .filter_map(|o| {
            Some((
                o.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string(),
                o.pointer("/metadata/name")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The garbage collector's memory: identities first seen unused, when.
#[derive(Debug, Default)]
pub struct Gc {
    unused: BTreeMap<String, Instant>,
}

/// What one GC pass deletes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcPlan {
    pub identities: Vec<String>,
    pub endpoints: Vec<(String, String)>,
    pub nodes: Vec<String>,
}

/// What the GC reads: every object of each kind.
#[derive(Debug, Default)]
pub struct Listed {
    pub ids: Vec<Value>,
    pub ceps: Vec<Value>,
    pub pods: Vec<Value>,
    pub cnodes: Vec<Value>,
    pub nodes: Vec<Value>,
}

impl Gc {
    /// Decide from the listed objects at `now`: identities no CEP uses for
    /// `grace`, CEPs whose Pod is gone, CiliumNodes whose Node is gone.
    pub fn plan(&mut self, l: &Listed, now: Instant, grace: Duration) -> GcPlan {
        let Listed {
            ids,
            ceps,
            pods,
            cnodes,
            nodes,
        } = l;
        let used: BTreeSet<String> = ceps
            .iter()
            .filter_map(|c| c.pointer("/status/identity/id").and_then(Value::as_u64))
            .map(|i| i.to_string())
            .collect();
        let live: BTreeSet<String> = names(ids).into_iter().map(|(_, n)| n).collect();
        self.unused.retain(|id, _| live.contains(id) && !used.contains(id));
        let mut plan = GcPlan::default();
        for id in &live {
            if used.contains(id) {
                continue;
            }
            let since = *self.unused.entry(id.clone()).or_insert(now);
            if now.duration_since(since) >= grace {
                plan.identities.push(id.clone());
                self.unused.remove(id);
            }
        }
        let pods = names(pods);
        plan.endpoints = names(ceps).into_iter().filter(|k| !pods.contains(k)).collect();
        let nodes: BTreeSet<String> = names(nodes).into_iter().map(|(_, n)| n).collect();
        plan.nodes = names(cnodes).into_iter().map(|(_, n)| n).filter(|n| !nodes.contains(n)).collect();
        plan
    }
}

async fn list_all(client: &kube::Client, group: &str, kind: &str, plural: &str) -> Result<Vec<Value>> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource(group, kind, plural));
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

/// The leader's work, until an API call fails (then the caller steps down
/// and campaigns again).
async fn lead(client: kube::Client, work: &Work) -> Result<()> {
    let cnodes_api: Api<DynamicObject> = Api::all_with(client.clone(), &resource("cilium.io", "CiliumNode", "ciliumnodes"));
    let mut gc = Gc::default();
    let mut last_gc = Instant::now() - work.gc_interval;
    loop {
        let cnodes = list_all(&client, "cilium.io", "CiliumNode", "ciliumnodes").await?;
        if let Some((pool, mask)) = work.cluster_pool {
            for (node, r) in pool_plan(&cnodes, pool, mask) {
                match r {
                    Ok(cidr) => {
                        let p = json!({"spec": {"ipam": {"podCIDRs": [cidr.to_string()]}}});
                        cnodes_api.patch(&node, &PatchParams::default(), &Patch::Merge(&p)).await?;
                        tracing::info!(%node, %cidr, "allocated pod CIDR into the CiliumNode");
                    }
                    Err(er) => tracing::error!(%node, %er, "cannot allocate a pod CIDR"),
                }
            }
        }
        if last_gc.elapsed() >= work.gc_interval {
            last_gc = Instant::now();
            let listed = Listed {
                ids: list_all(&client, "cilium.io", "CiliumIdentity", "ciliumidentities").await?,
                ceps: list_all(&client, "cilium.io", "CiliumEndpoint", "ciliumendpoints").await?,
                pods: list_all(&client, "", "Pod", "pods").await?,
                cnodes,
                nodes: list_all(&client, "", "Node", "nodes").await?,
            };
            let plan = gc.plan(&listed, Instant::now(), work.identity_gc_grace);
            let del = |api: Api<DynamicObject>, name: String| async move {
                match api.delete(&name, &DeleteParams::default()).await {
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    r => r.map(|_| ()),
                }
            };
            for id in plan.identities {
                let api = Api::all_with(client.clone(), &resource("cilium.io", "CiliumIdentity", "ciliumidentities"));
                del(api, id.clone()).await?;
                tracing::info!(%id, "CiliumIdentity garbage-collected (no CiliumEndpoint uses it)");
            }
            for (ns, name) in plan.endpoints {
                let api = Api::namespaced_with(client.clone(), &ns, &resource("cilium.io", "CiliumEndpoint", "ciliumendpoints"));
                del(api, name.clone()).await?;
                tracing::info!(%ns, %name, "CiliumEndpoint garbage-collected (its Pod is gone)");
            }
            for node in plan.nodes {
                del(cnodes_api.clone(), node.clone()).await?;
                tracing::info!(%node, "CiliumNode garbage-collected (its Node is gone)");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renew: &str, rv: &str) -> Value {
        json!({"metadata": {"resourceVersion": rv}, "spec": {"holderIdentity": holder, "renewTime": renew, "leaseTransitions": 2}})
    }

    #[test]
    fn lease_is_created_renewed_waited_for_and_taken_over() {
        let d = Duration::from_secs(15);
        let t0 = Instant::now();
        let mut o = Observed::default();
        assert_eq!(decide(None, "a", &mut o, t0, d), Action::Create);
        assert_eq!(decide(Some(&lease("a", "t1", "5")), "a", &mut o, t0, d), Action::Renew("5".into()));
        // b holds it and renews: a waits however long it runs
        assert_eq!(decide(Some(&lease("b", "t1", "6")), "a", &mut o, t0, d), Action::Wait);
        assert_eq!(decide(Some(&lease("b", "t2", "7")), "a", &mut o, t0 + d, d), Action::Wait);
        // b stopped renewing: after the lease duration a takes over
        assert_eq!(decide(Some(&lease("b", "t2", "7")), "a", &mut o, t0 + d + d / 2, d), Action::Wait);
        assert_eq!(
            decide(Some(&lease("b", "t2", "7")), "a", &mut o, t0 + d * 2, d),
            Action::TakeOver("7".into(), 3)
        );
        // a released Lease (no holder) is taken at once
        let mut o = Observed::default();
        assert_eq!(
            decide(Some(&lease("", "", "8")), "a", &mut o, t0, d),
            Action::TakeOver("8".into(), 3)
        );
    }

    #[test]
    fn pool_gives_free_cidrs_to_nodes_without_one() {
        let n = |name: &str, cidr: Option<&str>| match cidr {
            Some(c) => json!({"metadata": {"name": name}, "spec": {"ipam": {"podCIDRs": [c]}}}),
            None => json!({"metadata": {"name": name}, "spec": {}}),
        };
        let plan = pool_plan(
            &[n("a", Some("10.0.0.0/24")), n("b", None), n("c", None)],
            "10.0.0.0/16".parse().unwrap(),
            24,
        );
        assert_eq!(
            plan,
            vec![
                ("b".to_string(), Ok("10.0.1.0/24".parse().unwrap())),
                ("c".to_string(), Ok("10.0.2.0/24".parse().unwrap()))
            ]
        );
        let full = pool_plan(&[n("a", Some("10.0.0.0/24")), n("b", None)], "10.0.0.0/24".parse().unwrap(), 24);
        assert!(full[0].1.is_err());
    }

    #[test]
    fn gc_collects_unused_identities_after_grace_orphan_endpoints_and_nodes() {
        let id = |n: &str| json!({"metadata": {"name": n}});
        let cep = |ns: &str, n: &str, idn: u64| json!({"metadata": {"namespace": ns, "name": n}, "status": {"identity": {"id": idn}}});
        let obj = |ns: &str, n: &str| json!({"metadata": {"namespace": ns, "name": n}});
        let g = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut gc = Gc::default();
        let mut l = Listed {
            ids: vec![id("300"), id("301")],
            ceps: vec![cep("default", "web", 300), cep("default", "gone", 300)],
            pods: vec![obj("default", "web")],
            cnodes: vec![id("n1"), id("n2")],
            nodes: vec![id("n1")],
        };
        let p = gc.plan(&l, t0, g);
        assert!(p.identities.is_empty(), "301 is unused only since now");
        assert_eq!(p.endpoints, vec![("default".to_string(), "gone".to_string())]);
        assert_eq!(p.nodes, vec!["n2".to_string()]);
        let p = gc.plan(&l, t0 + g, g);
        assert_eq!(p.identities, vec!["301".to_string()]);
        // an identity used again meanwhile starts over
        let mut gc = Gc::default();
        l.ceps.truncate(1);
        gc.plan(&l, t0, g);
        let web = l.ceps.clone();
        l.ceps = vec![cep("default", "web", 301)];
        gc.plan(&l, t0 + g / 2, g);
        l.ceps = web;
        let p = gc.plan(&l, t0 + g, g);
        assert!(p.identities.is_empty(), "{p:?}");
    }
}
