//! `seta policy`: import, validate, get, delete, wait, verify, trace.
use crate::*;

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Create or replace every policy in FILE (YAML, several documents allowed), all or nothing
    Import { file: PathBuf },
    /// Check FILE without changing anything
    Validate { file: PathBuf },
    /// Show the imported policies and the revision
    Get {
        /// only this policy
        name: Option<String>,
    },
    /// Delete a policy by name, or all of them
    Delete {
        name: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// knp, cnp or ccnp, when a name exists in several kinds
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Wait until every endpoint enforces REVISION (default: the current one)
    Wait {
        revision: Option<u64>,
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Recompute every endpoint's policy from scratch and compare it with the kernel's maps
    Verify,
    /// Would a connection be allowed? Computed by the resolver that programs the maps.
    Trace {
        /// source endpoint: id, container-id:ID or pod-name:NS/POD
        #[arg(long)]
        src_endpoint: Option<String>,
        /// source labels k=v,... (a hypothetical pod)
        #[arg(long)]
        src_labels: Option<String>,
        #[arg(long, default_value = "default")]
        src_namespace: String,
        #[arg(long)]
        src_ip: Option<std::net::Ipv4Addr>,
        #[arg(long)]
        dst_endpoint: Option<String>,
        #[arg(long)]
        dst_labels: Option<String>,
        #[arg(long, default_value = "default")]
        dst_namespace: String,
        #[arg(long)]
        dst_ip: Option<std::net::Ipv4Addr>,
        /// PORT/PROTO, e.g. 80/TCP, 53/UDP, 8/ICMP (type), or ANY
        #[arg(long, default_value = "ANY")]
        dport: String,
    },
}

fn trace_spec(
    ep: &Option<String>,
    labels: &Option<String>,
    ns: &str,
    ip: &Option<std::net::Ipv4Addr>,
) -> Result<seta_core::api::TraceSpec> {
    Ok(seta_core::api::TraceSpec {
        endpoint: ep.clone(),
        labels: labels.as_deref().map(split_labels).transpose()?,
        namespace: Some(ns.to_string()),
        ip: *ip,
    })
}

/// The agents a cluster-wide command (import, validate, get, delete, wait)
/// talks to: the one `--node` names; else every agent on this machine when
/// they share a kvstore (policies are cluster-wide then), else the only one.
/// Agents that do not answer are skipped with a warning.
pub(crate) async fn cluster_agents(node: Option<&str>) -> Result<Vec<(String, Client)>> {
    if let Some(n) = node {
        return Ok(vec![(n.to_string(), client(Some(n))?)]);
    }
    let socks = seta_client::agent_sockets();
    match socks.len() {
        0 => return Ok(vec![("".into(), client(None)?)]),
        1 => return Ok(socks.into_iter().map(|(n, p)| (n, Client::new(p))).collect()),
        _ => {}
    }
    let mut set = tokio::task::JoinSet::new();
    for (name, path) in socks {
        set.spawn(async move {
            let c = Client::new(&path).with_timeout(std::time::Duration::from_secs(2));
            let st = c.status().await;
            (name, Client::new(&path), st)
        });
    }
    let mut up = Vec::new();
    while let Some(r) = set.join_next().await {
        let (name, c, st) = r?;
        match st {
            Ok(s) => up.push((name, c, s.kvstore)),
            Err(e) => eprintln!("warning: skipping node {name}: {e}"),
        }
    }
    up.sort_by(|a, b| a.0.cmp(&b.0));
    let shared = |kv: &str| kv.starts_with("etcd");
    let first = up.first().map(|u| u.2.clone());
    match first {
        None => bail!("no seta agent on this machine answers; start seta-agent or pass --node NAME"),
        Some(kv) if up.len() == 1 || (shared(&kv) && up.iter().all(|u| u.2 == kv)) => Ok(up.into_iter().map(|(n, c, _)| (n, c)).collect()),
        Some(_) => bail!(
            "several agents without one shared kvstore ({}); choose one with --node NAME",
            up.iter().map(|u| format!("{}: {}", u.0, u.2)).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A node's policies as comparable (origin, document) pairs.
async fn policy_set(c: &Client) -> Result<Vec<(String, serde_json::Value)>> {
    let l = c.policy_get().await?;
    Ok(l.policies.iter().map(|d| (d.origin.to_string(), d.source.clone())).collect())
}

/// Wait until every agent holds the first agent's policies (at `revision`
/// there) and enforces them on every endpoint; each node's revision.
async fn wait_cluster(agents: &[(String, Client)], revision: Option<u64>, timeout: u64) -> Result<std::collections::BTreeMap<String, u64>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let left = || deadline.saturating_duration_since(std::time::Instant::now()).as_secs().max(1);
    let mut out = std::collections::BTreeMap::new();
    let (n0, c0) = &agents[0];
    out.insert(
        n0.clone(),
        c0.policy_wait(revision, left()).await.with_context(|| format!("node {n0}"))?,
    );
    let want = policy_set(c0).await?;
    for (n, c) in &agents[1..] {
        loop {
            if policy_set(c).await? == want {
                break;
            }
            if std::time::Instant::now() >= deadline {
                bail!("node {n} has not received the cluster's policies (as on {n0}) within {timeout}s");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        out.insert(n.clone(), c.policy_wait(None, left()).await.with_context(|| format!("node {n}"))?);
    }
    Ok(out)
}

pub async fn run(cmd: &PolicyCmd, cli: &Cli, json: bool) -> Result<i32> {
    let read = |f: &PathBuf| -> Result<String> {
        let limit = seta_core::api::MAX_POLICY_BODY;
        if let Ok(m) = std::fs::metadata(f) {
            if m.len() as usize > limit {
                bail!(
                    "{} is {:.1} MiB; the agent takes policy input up to {} MiB per request: split it into several files",
                    f.display(),
                    m.len() as f64 / (1u64 << 20) as f64,
                    limit >> 20
                );
            }
        }
        std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))
    };
    match cmd {
        PolicyCmd::Import { file } => {
            let yaml = read(file)?;
            let (_, c) = cluster_agents(cli.node.as_deref()).await?.swap_remove(0);
            let r = c.policy_import(yaml).await?;
            if json {
                return print_json(&r);
            }
            for p in &r.policies {
                println!("imported {p}");
            }
            println!("Revision: {}", r.revision);
        }
        PolicyCmd::Validate { file } => {
            let yaml = read(file)?;
            let (_, c) = cluster_agents(cli.node.as_deref()).await?.swap_remove(0);
            let r = c.policy_validate(yaml).await?;
            if json {
                return print_json(&r);
            }
            println!(
                "{} valid: {} document(s): {}",
                file.display(),
                r.policies.len(),
                r.policies.join(", ")
            );
        }
        PolicyCmd::Get { name } => {
            let (_, c) = cluster_agents(cli.node.as_deref()).await?.swap_remove(0);
            let mut r = c.policy_get().await?;
            if let Some(n) = name {
                r.policies.retain(|p| &p.origin.name == n);
                if r.policies.is_empty() {
                    bail!("no policy named {n:?}");
                }
            }
            if json {
                return print_json(&r);
            }
            for p in &r.policies {
                println!("# {}", p.origin);
                println!("{}", serde_norway::to_string(&p.source)?.trim_end());
                println!("---");
            }
            println!("Revision: {}", r.revision);
        }
        PolicyCmd::Delete {
            name,
            namespace,
            kind,
            all,
        } => {
            if name.is_none() && !all {
                bail!("give a policy NAME or --all");
            }
            let (_, c) = cluster_agents(cli.node.as_deref()).await?.swap_remove(0);
            let r = c
                .policy_delete(&seta_client::PolicySelector {
                    all: *all,
                    name: name.clone(),
                    namespace: namespace.clone(),
                    kind: kind.clone(),
                })
                .await?;
            if json {
                return print_json(&r);
            }
            for p in &r.policies {
                println!("deleted {p}");
            }
            println!("Revision: {}", r.revision);
        }
        PolicyCmd::Verify => {
            let r = client(cli.node.as_deref())?.policy_verify().await?;
            if json {
                print_json(&r)?;
            } else if r["consistent"] == true {
                println!("every endpoint's policy map equals a full recompute");
            } else {
                for p in r["problems"].as_array().into_iter().flatten() {
                    println!("{}", p.as_str().unwrap_or_default());
                }
            }
            return Ok(if r["consistent"] == true { 0 } else { 1 });
        }
        PolicyCmd::Wait { revision, timeout } => {
            let agents = cluster_agents(cli.node.as_deref()).await?;
            eprintln!(
                "waiting for every endpoint{} to enforce revision {} ...",
                if agents.len() > 1 {
                    format!(" on nodes {}", agents.iter().map(|a| a.0.as_str()).collect::<Vec<_>>().join(", "))
                } else {
                    String::new()
                },
                revision.map(|r| r.to_string()).unwrap_or_else(|| "current".into())
            );
            let revs = wait_cluster(&agents, *revision, *timeout).await?;
            let first = revs[&agents[0].0];
            if json {
                return print_json(&serde_json::json!({"revision": first, "nodes": revs}));
            }
            if agents.len() == 1 {
                println!("Revision {first} is enforced by every endpoint");
            } else {
                let per: Vec<String> = revs.iter().map(|(n, r)| format!("{n} at revision {r}")).collect();
                println!("The cluster's policies are enforced by every endpoint: {}", per.join(", "));
            }
        }
        PolicyCmd::Trace {
            src_endpoint,
            src_labels,
            src_namespace,
            src_ip,
            dst_endpoint,
            dst_labels,
            dst_namespace,
            dst_ip,
            dport,
        } => {
            let (port, proto) = match dport.to_ascii_uppercase().as_str() {
                "ANY" => (0, "ANY".to_string()),
                d => {
                    let (p, pr) = d.split_once('/').unwrap_or((d, "TCP"));
                    (
                        p.parse::<u16>().with_context(|| format!("--dport {dport}: {p:?} is not a port"))?,
                        pr.to_string(),
                    )
                }
            };
            let req = seta_core::api::TraceRequest {
                from: trace_spec(src_endpoint, src_labels, src_namespace, src_ip)?,
                to: trace_spec(dst_endpoint, dst_labels, dst_namespace, dst_ip)?,
                protocol: proto,
                port,
            };
            let r = client(cli.node.as_deref())?.policy_trace(&req).await?;
            // the exit status is the verdict in every output format
            if json {
                print_json(&r)?;
                return Ok(if r.allowed { 0 } else { 2 });
            }
            println!("Tracing From: {} (identity {})", r.source, r.source_identity);
            println!("        To:   {} (identity {})", r.destination, r.destination_identity);
            println!("        Port: {}/{}", r.port, r.protocol);
            for v in &r.verdicts {
                println!(
                    "{}: {} ({}{})",
                    v.direction,
                    if v.allowed { "allowed" } else { "denied" },
                    v.decided_by,
                    v.drop_code
                        .map(|c| format!("; drop reason {c} {}", seta_core::drop::reason_name(c)))
                        .unwrap_or_default()
                );
            }
            println!("Final verdict: {}", if r.allowed { "ALLOWED" } else { "DENIED" });
            return Ok(if r.allowed { 0 } else { 2 });
        }
    }
    Ok(0)
}
