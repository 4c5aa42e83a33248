//! Section 4: policy computation: full recompute and incremental.
use crate::*;

/// 10k endpoint identities and 1k rules (each allowing one app label on one
/// port), resolved for one endpoint: full recompute vs adding one identity.
pub(crate) fn bench_policy_compute(args: &Args) -> Result<Vec<Row>> {
    use seta_core::policy::resolve::{self, IdKind, IdentityInfo};
    eprintln!("==> policy computation: 10k identities x 1k rules (full) vs one new identity (incremental)");
    let mut yaml = String::from("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: big, namespace: default}\nspecs:\n");
    for r in 0..1000 {
        yaml.push_str(&format!(
            "- endpointSelector: {{matchLabels: {{app: web}}}}\n  ingress:\n  - fromEndpoints: [{{matchLabels: {{app: app{r}}}}}]\n    toPorts: [{{ports: [{{port: \"{}\", protocol: TCP}}]}}]\n",
            1000 + r
        ));
    }
    let rules: Vec<_> = seta_core::policy::parse::parse_file(&yaml)?
        .into_iter()
        .flat_map(|d| d.rules)
        .collect();
    let universe: Vec<IdentityInfo> = (0..10_000u32)
        .map(|i| IdentityInfo {
            id: 256 + i,
            labels: seta_core::labels::parse_list(
                &format!("app=app{},tier=t{},io.kubernetes.pod.namespace=default", i % 2000, i % 7),
                "k8s",
            )
            .unwrap(),
            kind: IdKind::Endpoint,
        })
        .collect();
    let me = seta_core::labels::parse_list("app=web,io.kubernetes.pod.namespace=default", "k8s").map_err(anyhow::Error::msg)?;
    let newcomer = IdentityInfo {
        id: 20_000,
        labels: seta_core::labels::parse_list("app=app7,io.kubernetes.pod.namespace=default", "k8s").map_err(anyhow::Error::msg)?,
        kind: IdKind::Endpoint,
    };
    let (mut full, mut inc, mut base) = (vec![], vec![], vec![]);
    let mut entries = 0;
    for _ in 0..args.rounds.max(5) {
        let t = Instant::now();
        let p = resolve::endpoint_policy(&rules, &me, Default::default(), Default::default(), true);
        let state = resolve::compute(&p, &universe);
        full.push(t.elapsed().as_secs_f64() * 1e3);
        entries = state.len();
        let mut st = state.clone();
        let t = Instant::now();
        resolve::add_identity(&mut st, &p, &newcomer);
        inc.push(t.elapsed().as_secs_f64() * 1e3);
        // baseline for the incremental figure: the same full recompute with the newcomer
        let mut u2 = universe.clone();
        u2.push(newcomer.clone());
        let t = Instant::now();
        let _ = resolve::compute(&p, &u2);
        base.push(t.elapsed().as_secs_f64() * 1e3);
    }
    eprintln!("    {entries} map entries for the endpoint");
    Ok(vec![
        Row {
            name: "policy: full recompute, 10k identities × 1k rules".into(),
            unit: "ms",
            seta: summarize(&full),
            base_name: "goal 1000 ms",
            base: Summary {
                median: 1000.0,
                iqr: 0.0,
                cv: 0.0,
            },
            higher_is_better: false,
            goal: "≤ 1 s".into(),
        },
        Row {
            name: "policy: one new identity, incremental".into(),
            unit: "ms",
            seta: summarize(&inc),
            base_name: "full recompute",
            base: summarize(&base),
            higher_is_better: false,
            goal: "≤ 10 ms".into(),
        },
    ])
}
