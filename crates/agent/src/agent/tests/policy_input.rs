//! Costly and random policy input at the agent: status stays prompt, an
//! import is all or nothing.
use super::*;

/// Policy input that costs the most the parser's limits allow: a legal but
/// huge selector (about `mib` MiB), or YAML aliases expanding it close to the limit.
fn costly_policy(mib: usize, aliases: bool) -> String {
    let head = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: big, namespace: default}\nspec:\n  endpointSelector:\n    matchExpressions:\n";
    if aliases {
        let n = mib << 14;
        let vals: String = (0..n).map(|i| format!("v{i},")).collect();
        format!("{head}    - {{key: a, operator: In, values: &v [{vals}]}}\n    - {{key: b, operator: In, values: *v}}\n    - {{key: c, operator: In, values: *v}}\n")
    } else {
        let n = mib << 17;
        let vals: String = (0..n).map(|i| format!("v{i},")).collect();
        format!("{head}    - {{key: a, operator: In, values: [{vals}]}}\n")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_policy_requests_never_delay_status() {
    let t = Tmp::new("costly");
    let k = Fake::new();
    let a = agent(&t.0, "n1", "10.230.1.0/24", &k, None, None).await;
    // both runtime threads would be busy with these if parsing ran on them
    let inputs = [costly_policy(4, false), costly_policy(2, true)];
    let started = std::time::Instant::now();
    let mut reqs = Vec::new();
    for text in inputs {
        let a = a.clone();
        reqs.push(tokio::spawn(async move { a.policy_validate(&text).await }));
    }
    let (mut worst, mut samples) = (Duration::ZERO, 0);
    while !reqs.iter().all(|r| r.is_finished()) {
        let t0 = std::time::Instant::now();
        let st = a.status().await;
        assert_eq!(st.node, "n1");
        worst = worst.max(t0.elapsed());
        samples += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let busy = started.elapsed();
    for r in reqs {
        let docs = r.await.unwrap().unwrap();
        assert_eq!(docs.len(), 1, "legal, if costly, input is accepted");
    }
    assert!(samples >= 3, "status was asked {samples} times while the requests ran ({busy:?})");
    assert!(
        worst < Duration::from_millis(100),
        "status took {worst:?} with two costly requests in flight"
    );
    // and a request whose client is gone stops: the parse is cancelled by the dropped future
    let text = costly_policy(4, false);
    let a2 = a.clone();
    let req = tokio::spawn(async move { a2.policy_validate(&text).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    req.abort();
    assert!(req.await.unwrap_err().is_cancelled());
}

/// Mutated policies against the import path: a failed import changes
/// nothing (same revision, same documents, same maps), a successful one
/// bumps the revision once and holds every document it named. Runs for a
/// quarter of `SETA_FUZZ_SECS` (default 20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_policy_import_is_all_or_nothing() {
    use seta_core::policy::fuzz::{corpus, mutate, Rng};
    let secs: u64 = std::env::var("SETA_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let t = Tmp::new("fuzzimp");
    let k = Fake::new();
    let a = agent(&t.0, "n1", "10.231.1.0/24", &k, None, None).await;
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let seeds = corpus();
    let mut rng = Rng::new(11);
    let deadline = std::time::Instant::now() + Duration::from_secs(secs.div_ceil(4));
    let (mut n, mut ok) = (0, 0);
    while std::time::Instant::now() < deadline {
        let (_, seed) = seeds[rng.below(seeds.len())];
        let input = mutate(seed, &seeds, &mut rng, 16 << 10);
        let before = serde_json::to_value(a.policy_list().await).unwrap();
        let map_before = k.state().policy.get(&web.id).cloned();
        n += 1;
        match a.policy_import(&input).await {
            Err(_) => {
                assert_eq!(
                    serde_json::to_value(a.policy_list().await).unwrap(),
                    before,
                    "a failed import changed the policies:\n{input}"
                );
                assert_eq!(
                    k.state().policy.get(&web.id).cloned(),
                    map_before,
                    "a failed import changed web's map:\n{input}"
                );
            }
            Ok((rev, names)) => {
                ok += 1;
                assert_eq!(rev, before["revision"].as_u64().unwrap() + 1);
                let now = a.policy_list().await;
                for name in &names {
                    assert!(
                        now.policies.iter().any(|d| &d.origin.to_string() == name),
                        "{name} imported:\n{input}"
                    );
                }
                if now.policies.len() > 40 {
                    a.policy_delete(None, None, None, true).await.unwrap();
                }
            }
        }
    }
    assert!(n > 20 && ok > 0, "{n} inputs, {ok} imported");
    assert!(
        a.policy_verify().await.unwrap().is_empty(),
        "the maps equal a full recompute after {n} imports"
    );
}
