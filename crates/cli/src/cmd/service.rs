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
