//! Section 13: Kubernetes (a 2-node `--k8s` lab, CRD mode): a Pod applied → its
//! endpoint ready with its identity and known to the other node's ipcache
//! (one Pod, and 50 at once); a NetworkPolicy applied → enforced in every
//! node's policy map; agent memory with 10k Pods, 1k NetworkPolicies and 5k
//! CiliumEndpoints in the API. The baseline of the latencies is a bare watch
//! on the same API server seeing the same object; the memory's is the idle
//! agent.
use crate::*;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams, WatchEvent, WatchParams};
use seta_lab::LabOptions;

const LAB: &str = "sbenchk";

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn obj(v: serde_json::Value) -> Result<DynamicObject> {
    Ok(serde_json::from_value(v)?)
}

/// Each object a bare watch of `api` (from `rv`) sees added, and when.
fn bare_watch(api: Api<DynamicObject>, rv: String) -> tokio::sync::mpsc::UnboundedReceiver<(String, Instant)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::task::spawn_local(async move {
        let Ok(s) = api.watch(&WatchParams::default().timeout(290), &rv).await else {
            return;
        };
        let mut s = s.boxed_local();
        while let Some(Ok(ev)) = s.next().await {
            if let WatchEvent::Added(o) = ev {
                let _ = tx.send((o.metadata.name.unwrap_or_default(), Instant::now()));
            }
        }
    });
    rx
}

async fn latest_rv(api: &Api<DynamicObject>) -> Result<String> {
    let l = api.list(&kube::api::ListParams::default().limit(1)).await?;
    Ok(l.metadata.resource_version.unwrap_or_default())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn row(name: String, seta: &[f64], base: &[f64], p: f64, goal: &str) -> Row {
    Row {
        name: format!("{name}, p{p}"),
        unit: "ms",
        seta: p_summary(seta, p),
        base_name: "bare watch of the same object",
        base: p_summary(base, p),
        higher_is_better: false,
        goal: goal.into(),
    }
}

pub(crate) async fn bench_k8s(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
    eprintln!("==> Kubernetes: Pod → endpoint and remote ipcache, NetworkPolicy → maps, agent memory with many objects");
    let _ = Lab::down(LAB);
    let opts = LabOptions {
        k8s: true,
        routing: Some(seta_core::mode::RoutingMode::Tunnel),
        ..Default::default()
    };
    let mut lab = Lab::up_with(LAB, 2, 0, "10.208.0.0/16".parse()?, bin_dir, &opts, &|_| {}).await?;
    let r = measure(args, &mut lab).await;
    let _ = Lab::down(LAB);
    r
}

async fn measure(args: &Args, lab: &mut Lab) -> Result<Vec<Row>> {
    let (n1, n2) = (lab.nodes[0].name.clone(), lab.nodes[1].name.clone());
    lab.pod_add("w1", &n1, "default", &["app=web".into()], &[]).await?;
    lab.pod_add("w2", &n2, "default", &["app=web".into()], &[]).await?;
    // the identity the policies allow from
    lab.pod_add("c1", &n1, "default", &["app=client".into()], &[]).await?;
    let pin = |n: &str| seta_core::names::pin_dir(Path::new("/sys/fs/bpf"), n, seta_abi::ABI_VERSION);
    let mut pols = vec![];
    for (node, i) in [(&n1, 0), (&n2, 1)] {
        let c = seta_client::Client::new(&lab.nodes[i].socket).with_timeout(Duration::from_secs(30));
        let w = lab.pod(if i == 0 { "w1" } else { "w2" })?.clone();
        let ep: serde_json::Value = c.get(&format!("/v1/endpoint/container-id:{}", w.container_id)).await?;
        let id = ep["id"].as_u64().context("endpoint id")? as u16;
        pols.push(seta_datapath::maps::PolicyMap::open_pinned(
            &pin(node).join(format!("seta_pol_{id:05}")),
        )?);
    }
    let ipc2 = seta_datapath::maps::IpcacheMap::open(&pin(&n2))?;
    let n1_cidr = lab.nodes[0].pod_cidr;
    let agent1 = lab.nodes[0].agent_pid.context("agent pid")?;
    let kc = lab.kubeconfig.clone().context("kubeconfig")?;
    let ul = lab.underlay.clone().context("underlay")?.netns;
    let samples = (args.rounds * 10).max(20);
    // the API is in the underlay: a client runtime on a thread inside it
    let h = seta_lab::spawn_in_netns(&ul, move || -> Result<Vec<Row>> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let cfg = kube::config::Kubeconfig::read_from(&kc)?;
            let client = kube::Client::try_from(kube::Config::from_custom_kubeconfig(cfg, &Default::default()).await?)?;
            let nps: Api<DynamicObject> = Api::namespaced_with(
                client.clone(),
                "default",
                &ar("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
            );
            let pods: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar("", "v1", "Pod", "pods"));
            let pp = PostParams::default();
            // 1. NetworkPolicy applied → enforced in both nodes' policy maps
            let mut seen = bare_watch(nps.clone(), latest_rv(&nps).await?);
            let (mut enforced, mut watched) = (vec![], vec![]);
            for i in 0..samples {
                let name = format!("bench-np{i}");
                let before: Vec<usize> = pols.iter().map(|p| p.list().len()).collect();
                let np = obj(serde_json::json!({
                    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                             "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                          "ports": [{"port": 2000 + i, "protocol": "TCP"}]}]},
                }))?;
                let t = Instant::now();
                nps.create(&pp, &np).await?;
                while pols.iter().zip(&before).any(|(p, b)| p.list().len() == *b) {
                    anyhow::ensure!(
                        t.elapsed() < Duration::from_secs(10),
                        "NetworkPolicy {i} not in both maps within 10 s"
                    );
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                enforced.push(ms(t.elapsed()));
                loop {
                    let (n, at) = tokio::time::timeout(Duration::from_secs(10), seen.recv()).await?.context("watch")?;
                    if n == name {
                        watched.push(ms(at.duration_since(t)));
                        break;
                    }
                }
            }
            for i in 0..samples {
                let _ = nps.delete(&format!("bench-np{i}"), &Default::default()).await;
            }
            // 2. Pod applied → ready, identity, in node 2's ipcache
            let in_n1 = |ipc: &seta_datapath::maps::IpcacheMap| -> std::collections::BTreeSet<Ipv4Addr> {
                ipc.list()
                    .into_iter()
                    .filter(|(ip, p, v)| *p == 32 && n1_cidr.contains(ip) && v.sec_identity > 255)
                    .map(|(ip, _, _)| ip)
                    .collect()
            };
            let pod = |name: &str| {
                obj(serde_json::json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench"}},
                    "spec": {"nodeName": n1, "containers": [{"name": "c", "image": "none"}]},
                }))
            };
            let ipc2 = &ipc2;
            let settle = |want: usize| {
                let t = Instant::now();
                async move {
                    while in_n1(ipc2).len() != want {
                        anyhow::ensure!(t.elapsed() < Duration::from_secs(60), "node 2's ipcache did not settle at {want}");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Ok::<_, anyhow::Error>(())
                }
            };
            let base_count = in_n1(ipc2).len();
            let mut seen = bare_watch(pods.clone(), latest_rv(&pods).await?);
            let (mut ready1, mut watched1) = (vec![], vec![]);
            for i in 0..samples {
                let name = format!("bp{i}");
                let before = in_n1(ipc2);
                let t = Instant::now();
                pods.create(&pp, &pod(&name)?).await?;
                while in_n1(ipc2).len() <= before.len() {
                    anyhow::ensure!(t.elapsed() < Duration::from_secs(20), "pod {name} never reached node 2's ipcache");
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                ready1.push(ms(t.elapsed()));
                loop {
                    let (n, at) = tokio::time::timeout(Duration::from_secs(10), seen.recv()).await?.context("watch")?;
                    if n == name {
                        watched1.push(ms(at.duration_since(t)));
                        break;
                    }
                }
                pods.delete(&name, &Default::default()).await?;
                settle(base_count).await?;
            }
            // 50 at once
            let t = Instant::now();
            for i in 0..50 {
                pods.create(&pp, &pod(&format!("bq{i}"))?).await?;
            }
            let (mut ready50, mut watched50) = (vec![], vec![]);
            let mut have = base_count;
            while ready50.len() < 50 || watched50.len() < 50 {
                anyhow::ensure!(
                    t.elapsed() < Duration::from_secs(120),
                    "50 pods: {} of 50 in node 2's ipcache",
                    ready50.len()
                );
                let now = in_n1(ipc2).len();
                for _ in have..now {
                    ready50.push(ms(t.elapsed()));
                }
                have = have.max(now);
                while let Ok((n, at)) = seen.try_recv() {
                    if n.starts_with("bq") {
                        watched50.push(ms(at.duration_since(t)));
                    }
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            for i in 0..50 {
                let _ = pods.delete(&format!("bq{i}"), &Default::default()).await;
            }
            settle(base_count).await?;
            let mut rows = vec![
                row(
                    "NetworkPolicy applied → both nodes' policy maps".into(),
                    &enforced,
                    &watched,
                    50.0,
                    "",
                ),
                row(
                    "NetworkPolicy applied → both nodes' policy maps".into(),
                    &enforced,
                    &watched,
                    99.0,
                    "p99 ≤ 100 ms",
                ),
                row(
                    "Pod applied → ready, in the other node's ipcache".into(),
                    &ready1,
                    &watched1,
                    50.0,
                    "",
                ),
                row(
                    "Pod applied → ready, in the other node's ipcache".into(),
                    &ready1,
                    &watched1,
                    99.0,
                    "",
                ),
                row(
                    "50 Pods applied at once → each in the other node's ipcache".into(),
                    &ready50,
                    &watched50,
                    50.0,
                    "",
                ),
                row(
                    "50 Pods applied at once → each in the other node's ipcache".into(),
                    &ready50,
                    &watched50,
                    99.0,
                    "",
                ),
            ];
            // 3. memory: 10k Pods (on nodes outside the lab), 1k NetworkPolicies, 5k CEPs
            let idle = agent_mem_mb(agent1, "VmRSS:")?;
            let t = Instant::now();
            for i in 0..10_000u32 {
                let ns = format!("bench-ns{}", i % 20);
                if i < 20 {
                    let nsapi: Api<DynamicObject> = Api::all_with(client.clone(), &ar("", "v1", "Namespace", "namespaces"));
                    nsapi
                        .create(
                            &pp,
                            &obj(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))?,
                        )
                        .await?;
                }
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar("", "v1", "Pod", "pods"));
                let o = obj(serde_json::json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("vp{i}"), "namespace": ns, "labels": {"app": format!("a{}", i % 100)}},
                    "spec": {"nodeName": format!("virtual-{}", i % 100), "containers": [{"name": "c", "image": "none"}]},
                }))?;
                api.create(&pp, &o).await?;
                if i < 1000 {
                    let api: Api<DynamicObject> = Api::namespaced_with(
                        client.clone(),
                        &ns,
                        &ar("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
                    );
                    let o = obj(serde_json::json!({
                        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": {"name": format!("np{i}"), "namespace": ns},
                        "spec": {"podSelector": {"matchLabels": {"app": format!("a{}", i % 100)}},
                                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": format!("r{i}")}}}],
                                              "ports": [{"port": 1000 + i, "protocol": "TCP"}]}]},
                    }))?;
                    api.create(&pp, &o).await?;
                }
                if i < 5000 {
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(client.clone(), &ns, &ar("cilium.io", "v2", "CiliumEndpoint", "ciliumendpoints"));
                    let ip = Ipv4Addr::new(10, 209, (i / 250) as u8, (i % 250 + 2) as u8);
                    let host = Ipv4Addr::new(172, 31, 0, (i % 100 + 1) as u8);
                    let o = obj(serde_json::json!({
                        "apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint",
                        "metadata": {"name": format!("vp{i}"), "namespace": ns},
                        "status": {"id": i + 1, "identity": {"id": 1000 + i % 100},
                                   "networking": {"addressing": [{"ipv4": ip.to_string()}], "node": host.to_string()}},
                    }))?;
                    api.create(&pp, &o).await?;
                }
            }
            eprintln!("    16k objects created in {:.1} s", t.elapsed().as_secs_f64());
            // settled: the CEPs are in node 1's ipcache
            let pin1 = seta_core::names::pin_dir(Path::new("/sys/fs/bpf"), &n1, seta_abi::ABI_VERSION);
            let ipc1 = seta_datapath::maps::IpcacheMap::open(&pin1)?;
            let t = Instant::now();
            while ipc1.list().iter().filter(|(ip, _, _)| ip.octets()[..2] == [10, 209]).count() < 5000 {
                anyhow::ensure!(
                    t.elapsed() < Duration::from_secs(120),
                    "the 5k CiliumEndpoints never all reached node 1's ipcache"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let rss = agent_mem_mb(agent1, "VmRSS:")?;
            let one = |v: f64| Summary {
                median: v,
                iqr: 0.0,
                cv: 0.0,
            };
            rows.push(Row {
                name: "agent RSS, 10k Pods + 1k NetworkPolicies + 5k CEPs in the API".into(),
                unit: "MB",
                seta: one(rss),
                base_name: "the same agent idle",
                base: one(idle),
                higher_is_better: false,
                goal: "≤ 200 MB".into(),
            });
            Ok::<_, anyhow::Error>(rows)
        })
    });
    h.join().map_err(|_| anyhow::anyhow!("the Kubernetes bench thread panicked"))?
}
