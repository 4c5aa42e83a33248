//! Section 9: services at scale: how long one backend added to a service of 1000
//! backends (Maglev on) takes to be in the maps, next to the same change to
//! a service of 10 backends; the agent's memory with 10k services × 10
//! backends, next to the idle agent of the same run.
use crate::*;

/// `n` NodePort services `svc-<first>..`, each with `backends` backends (fake
/// addresses: nothing needs to answer), in slices of at most 100 endpoints.
fn services_yaml(first: usize, n: usize, backends: usize, node_port: bool) -> String {
    let mut y = String::new();
    for s in first..first + n {
        let cip = format!("10.{}.{}.{}", 96 + s / 65536, (s / 256) % 256, s % 256);
        if node_port {
            y.push_str(&format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: {cip}\n  ports: [{{name: p, port: 80, nodePort: {}}}]\n", 30000 + s));
        } else {
            y.push_str(&format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}, namespace: default}}\nspec:\n  clusterIP: {cip}\n  ports: [{{name: p, port: 80}}]\n"));
        }
        for (c, chunk) in (0..backends).collect::<Vec<_>>().chunks(100).enumerate() {
            let addrs: Vec<String> = chunk
                .iter()
                .map(|b| {
                    format!(
                        "10.{}.{}.{}",
                        128 + (s * backends + b) / 65536 % 64,
                        ((s * backends + b) / 256) % 256,
                        (s * backends + b) % 256
                    )
                })
                .collect();
            y.push_str(&format!(
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc-{s}-{c}, namespace: default, labels: {{kubernetes.io/service-name: svc-{s}}}}}\naddressType: IPv4\nports: [{{name: p, port: 8080}}]\nendpoints:\n- {{addresses: [{}], conditions: {{ready: true}}}}\n",
                addrs.join(", ")
            ));
        }
    }
    y
}

/// One more backend for service `svc-<s>` (slice `svc-<s>-extra`): the time
/// until the agent has it in the maps (its import answers once they are
/// written), in ms.
async fn add_backend(c: &seta_client::Client, s: usize, i: usize) -> Result<f64> {
    let y = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc-{s}-extra, namespace: default, labels: {{kubernetes.io/service-name: svc-{s}}}}}\naddressType: IPv4\nports: [{{name: p, port: 8080}}]\nendpoints:\n- {{addresses: [10.250.{}.{}], conditions: {{ready: true}}}}\n",
        i / 256 % 256,
        i % 256 + 1
    );
    let t = Instant::now();
    c.service_import(y).await?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

pub(crate) async fn bench_service_scale(args: &Args, bin_dir: &Path) -> Result<Vec<Row>> {
    eprintln!("==> services at scale: a backend added with Maglev (1000 vs 10 backends); agent memory with 10k services × 10 backends");
    let name = format!("{PREFIX}s");
    let _ = Lab::down(&name);
    let opts = seta_lab::LabOptions {
        maglev: true,
        agent_args: vec!["--bpf-lb-map-max".into(), "262144".into()],
        ..Default::default()
    };
    let lab = Lab::up_with(&name, 1, 0, "10.205.0.0/16".parse()?, bin_dir, &opts, &|_| {}).await?;
    let pid = lab.nodes[0].agent_pid.context("agent pid")?;
    let c = seta_client::Client::new(&lab.nodes[0].socket).with_timeout(Duration::from_secs(300));
    let r = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = agent_mem_mb(pid, "VmRSS:")?;
        // service 0: 1000 backends; service 1: 10 (both NodePort: Maglev tables)
        c.service_import(services_yaml(0, 1, 1000, true)).await?;
        c.service_import(services_yaml(1, 1, 10, true)).await?;
        let samples = (args.rounds * 10).max(30);
        let (mut big, mut small) = (vec![], vec![]);
        for i in 0..samples {
            big.push(add_backend(&c, 0, i).await?);
            small.push(add_backend(&c, 1, i).await?);
        }
        // 10k ClusterIP services × 10 backends, imported 1000 at a time
        c.service_delete(None, "default").await?;
        for chunk in 0..10 {
            eprintln!("    services {}..{}", chunk * 1000, chunk * 1000 + 1000);
            c.service_import(services_yaml(2 + chunk * 1000, 1000, 10, false)).await?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let loaded = agent_mem_mb(pid, "VmRSS:")?;
        let peak = agent_mem_mb(pid, "VmHWM:")?;
        let one = |v: f64| Summary {
            median: v,
            iqr: 0.0,
            cv: 0.0,
        };
        let row = |p: f64, goal: &str| Row {
            name: format!("service update: 1 backend added to 1000 (Maglev, M=16381), p{p}"),
            unit: "ms",
            seta: p_summary(&big, p),
            base_name: "the same to a service of 10 backends",
            base: p_summary(&small, p),
            higher_is_better: false,
            goal: goal.into(),
        };
        Ok(vec![
            row(50.0, ""),
            row(99.0, "p99 ≤ 10 ms"),
            Row {
                name: "agent RSS with 10k services × 10 backends".into(),
                unit: "MB",
                seta: one(loaded),
                base_name: "idle agent",
                base: one(idle),
                higher_is_better: false,
                goal: "≤ 200 MB".into(),
            },
            Row {
                name: "agent RSS, peak while 10k services × 10 backends were imported".into(),
                unit: "MB",
                seta: one(peak),
                base_name: "idle agent",
                base: one(idle),
                higher_is_better: false,
                goal: "".into(),
            },
        ])
    }
    .await;
    let _ = Lab::down(&name);
    r
}
