//! `seta service`: import, list, get, delete (Cilium's `service list` columns).
use crate::*;

#[derive(Subcommand)]
pub enum ServiceCmd {
    /// Create or replace every Service and EndpointSlice in FILE (YAML as
    /// kubectl prints it, several documents allowed), all or nothing
    Import { file: PathBuf },
    /// Every frontend with its backends (Frontend, Service Type, Backend)
    List,
    /// One service and its frontends
    Get {
        name: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Set a backend's state by hand on this node: quarantined or
    /// maintenance (no new connections), active (back to what the
    /// EndpointSlices say)
    Update {
        #[arg(long)]
        backend: String,
        #[arg(long)]
        state: String,
    },
    /// Wait until every agent's maps hold the services as they are on the
    /// first agent when the command starts (like `policy wait`)
    Wait {
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Delete a service (and its EndpointSlices), or all of them
    Delete {
        name: Option<String>,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[arg(long)]
        all: bool,
    },
}

pub async fn run(cmd: &ServiceCmd, cli: &Cli, json: bool) -> Result<i32> {
    // import and delete are cluster-wide (agents sharing etcd): any agent
    // will do without --node; reads and `update` are this node's
    let cluster = || crate::cmd::policy::cluster_agents(cli.node.as_deref());
    match cmd {
        ServiceCmd::Import { file } => {
            let (_, c) = cluster().await?.swap_remove(0);
            let limit = seta_core::api::MAX_POLICY_BODY;
            if std::fs::metadata(file).is_ok_and(|m| m.len() as usize > limit) {
                bail!("{} is over {} MiB; split it into several files", file.display(), limit >> 20);
            }
            let yaml = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let r = c.service_import(yaml).await?;
            if json {
                return print_json(&r);
            }
            for o in &r.objects {
                println!("imported {o}");
            }
            println!("Revision: {}", r.revision);
        }
        ServiceCmd::Wait { timeout } => {
            let agents = cluster().await?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(*timeout);
            let want = agents[0].1.service_state().await?["digest"].clone();
            eprintln!(
                "waiting for {} agent(s) to hold the services {} in their maps ...",
                agents.len(),
                want.as_str().unwrap_or("?")
            );
            let mut out = serde_json::Map::new();
            for (n, c) in &agents {
                loop {
                    let st = c.service_state().await.with_context(|| format!("node {n}"))?;
                    if st["digest"] == want && st["synced"] == true {
                        out.insert(n.clone(), st);
                        break;
                    }
                    if std::time::Instant::now() >= deadline {
                        bail!(
                            "node {n}: its maps do not hold the services (as on {}) after {timeout}s: {st}",
                            agents[0].0
                        );
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
            if json {
                return print_json(&out);
            }
            for (n, st) in &out {
                println!(
                    "{}: {} services, {} frontends in the maps ({})",
                    if n.is_empty() { "this node" } else { n },
                    st["services"],
                    st["frontends"],
                    st["digest"].as_str().unwrap_or("")
                );
            }
        }
        ServiceCmd::List => {
            let c = client(cli.node.as_deref())?;
            let l = c.service_list().await?;
            if json {
                return print_json(&l);
            }
            let mut rows = Vec::new();
            for e in &l {
                let kind = if e.local { format!("{} (Local)", e.kind) } else { e.kind.clone() };
                if e.backends.is_empty() {
                    rows.push(vec![e.frontend.clone(), kind.clone(), String::new()]);
                }
                for (i, b) in e.backends.iter().enumerate() {
                    let (f, k) = if i == 0 {
                        (e.frontend.clone(), kind.clone())
                    } else {
                        (String::new(), String::new())
                    };
                    rows.push(vec![f, k, format!("{} => {} ({})", i + 1, b.address, b.state)]);
                }
            }
            table(&["Frontend", "Service Type", "Backend"], rows);
        }
        ServiceCmd::Get { name, namespace } => {
            let c = client(cli.node.as_deref())?;
            let v = c.service_get(namespace, name).await?;
            if json {
                return print_json(&v);
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ServiceCmd::Update { backend, state } => {
            let c = client(cli.node.as_deref())?;
            let r = c.service_backend_state(backend, state).await?;
            if json {
                return print_json(&r);
            }
            println!(
                "backend {} is {} in {} frontend(s)",
                r["backend"].as_str().unwrap_or(backend),
                state,
                r["frontends"]
            );
        }
        ServiceCmd::Delete { name, namespace, all } => {
            if name.is_none() && !all {
                bail!("give a service name or --all");
            }
            let (_, c) = cluster().await?.swap_remove(0);
            let r = c.service_delete(if *all { None } else { name.as_deref() }, namespace).await?;
            if json {
                return print_json(&r);
            }
            for o in &r.objects {
                println!("deleted {o}");
            }
            println!("Revision: {}", r.revision);
        }
    }
    Ok(0)
}
