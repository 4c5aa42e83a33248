//! seta-agent: the per-node daemon.
mod agent;
mod api;
mod cluster;
mod config;
mod endpoints;
mod events;
mod healthcheck;
mod identities;
mod ipcache;
mod ipmasq;
mod k8s;
mod kernel;
mod kpr_healthz;
mod kv;
mod metrics;
mod observer;
mod policy;
mod services;
mod state;
mod supervisor;
#[cfg(test)]
mod testutil;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use config::{Config, RunArgs};

#[derive(Parser)]
#[command(name = "seta-agent", version, about = "seta per-node agent: endpoints, IPAM and the eBPF datapath")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent (the default)
    Run(RunArgs),
    /// Remove everything this node's agent created: pins (programs detach), devices, state, socket, CNI config
    Cleanup(RunArgs),
}

/// mimalloc: the event pipeline allocates and frees a flow's strings on one
/// thread and drops the last reference on another (glibc's free was a third
/// of the agent's time at a million events a second).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SETA_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    // the --config file's keys are this command's own flags (see config::file_args)
    let cmd = <Cli as clap::CommandFactory>::command().args_override_self(true);
    let argv = config::argv_with_config(std::env::args().collect(), &cmd)?;
    let cli = match cmd
        .try_get_matches_from(&argv)
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let rt = tokio::runtime::Runtime::new()?;
    match cli.cmd {
        Some(Cmd::Cleanup(a)) => rt.block_on(async {
            // cleanup does not need a pod CIDR
            let mut a = a;
            a.pod_cidr.get_or_insert("10.0.0.0/24".parse().unwrap());
            let cfg = Config::resolve(a)?;
            for line in agent::cleanup(&cfg).await? {
                println!("{line}");
            }
            Ok(())
        }),
        Some(Cmd::Run(a)) => rt.block_on(run(Config::resolve(a)?)),
        None => rt.block_on(run(Config::resolve(cli.run)?)),
    }
}

/// Serve `app` (HTTP) on `addr`, given by `flag`, in the background.
async fn serve_http(addr: std::net::SocketAddr, flag: &str, app: axum::Router) -> Result<()> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("{flag} {addr}"))?;
    tracing::info!(%addr, "{flag}: serving");
    let flag = flag.to_string();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(l, app).await {
            tracing::error!(%e, "{flag} server ended");
        }
    });
    Ok(())
}

/// Serve Hubble's observer API over `incoming` connections in the background.
/// gRPC health (grpc.health.v1) for Hubble's observer, as Hubble serves it.
type Health = tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

async fn observer_health() -> Health {
    let reporter = tonic_health::server::HealthReporter::new();
    reporter
        .set_service_status("hubble.server.Observer", tonic_health::ServingStatus::Serving)
        .await;
    // the service shares the reporter's table of statuses
    Health::new(tonic_health::server::HealthService::from_health_reporter(reporter))
}

fn spawn_observer<I, IO>(svc: observer::grpc::Server, peer: observer::peer::Server, health: Health, incoming: I, what: &'static str)
where
    I: futures::Stream<Item = std::io::Result<IO>> + Send + 'static,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + tonic::transport::server::Connected + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(svc)
            .add_service(peer)
            .add_service(health)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(%e, "hubble observer ({what}) ended");
        }
    });
}

/// Hubble's observer API and peer API: always on the unix socket beside the
/// agent's, and on TCP at --hubble-listen-address; its metrics at
/// --hubble-metrics-server.
async fn serve_hubble(cfg: &Config, obs: std::sync::Arc<observer::Observer>, peers: observer::peer::Peers) -> Result<()> {
    let path = cfg.hubble_socket();
    let _ = std::fs::remove_file(&path);
    let unix = tokio::net::UnixListener::bind(&path).with_context(|| format!("bind {}", path.display()))?;
    let svc = observer::grpc::server(obs.clone(), format!("unix://{}", path.display()));
    let health = observer_health().await;
    spawn_observer(
        svc,
        observer::peer::server(peers.clone()),
        health.clone(),
        futures::stream::unfold(unix, |l| async move { Some((l.accept().await.map(|(s, _)| s), l)) }),
        "unix socket",
    );
    if let Some(addr) = cfg.hubble_listen_address {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--hubble-listen-address {addr}"))?;
        let svc = observer::grpc::server(obs.clone(), addr.to_string());
        spawn_observer(
            svc,
            observer::peer::server(peers),
            health,
            futures::stream::unfold(tcp, |l| async move { Some((l.accept().await.map(|(s, _)| s), l)) }),
            "tcp",
        );
    }
    if let Some(exp) = cfg.hubble_export.clone() {
        let path = exp.path.clone();
        let exporter = observer::export::Exporter::open(exp).with_context(|| format!("--hubble-export-file-path {}", path.display()))?;
        observer::export::spawn(obs.clone(), exporter);
        tracing::info!(path = %path.display(), "hubble flows exported");
    }
    if let Some(addr) = cfg.hubble_metrics_server {
        serve_http(addr, "--hubble-metrics-server", api::hubble_metrics_router(obs)).await?;
    }
    tracing::info!(socket = %path.display(), tcp = ?cfg.hubble_listen_address, "hubble observer serving");
    Ok(())
}

async fn run(mut cfg: Config) -> Result<()> {
    if cfg.pod_cidr_from_operator {
        cfg.pod_cidr = match &cfg.k8s {
            // the Node's podCIDRs, or the operator's through the CiliumNode (CRD mode)
            Some(src) if cfg.ipam == config::Ipam::Kubernetes || cfg.identity_allocation_mode == config::IdentityAllocationMode::Crd => {
                let client = k8s::connect(src).await?;
                k8s::crd::pod_cidr(client, &cfg.node, cfg.ipam, &cfg.state_dir).await?
            }
            _ => kv::pod_cidr_from_operator(&cfg).await?,
        };
    }
    tracing::info!(node = %cfg.node, pod_cidr = %cfg.pod_cidr, pins = %cfg.pin_dir.display(), "starting seta-agent");
    let filter = seta_core::labelfilter::LabelFilter::from_prefixes(&cfg.label_prefixes).map_err(anyhow::Error::msg)?;
    let agent = agent::Agent::start(cfg.clone(), filter).await?;
    agent.clone().spawn_background();

    if let Some(dir) = cfg.socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&cfg.socket);
    let listener = tokio::net::UnixListener::bind(&cfg.socket).with_context(|| format!("bind {}", cfg.socket.display()))?;

    // Ready: only now may runtimes use seta (the CNI config appears).
    std::fs::create_dir_all(&cfg.cni_conf_dir).with_context(|| format!("create {}", cfg.cni_conf_dir.display()))?;
    state::write_atomic(&cfg.cni_conf_path(), &serde_json::to_vec_pretty(&cfg.conflist())?)?;
    tracing::info!(socket = %cfg.socket.display(), cni = %cfg.cni_conf_path().display(), "agent ready");

    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    };
    if let Some(addr) = cfg.prometheus_serve_addr {
        serve_http(addr, "--prometheus-serve-addr", api::metrics_router(agent.clone())).await?;
    }
    if let Some(addr) = cfg.kpr_healthz_addr {
        let a = agent.clone();
        let verdict: kpr_healthz::Source = std::sync::Arc::new(move || a.kpr_health());
        serve_http(addr, "--kube-proxy-replacement-healthz-bind-address", kpr_healthz::router(verdict)).await?;
    }
    let peers: observer::peer::Peers = {
        let agent = agent.clone();
        std::sync::Arc::new(move || agent.hubble_peers())
    };
    serve_hubble(&cfg, agent.observer.clone(), peers).await?;
    let sup = agent.supervisor.clone();
    axum::serve(listener, api::router(agent)).with_graceful_shutdown(shutdown).await?;
    sup.shutdown();
    // Graceful stop: the datapath (pinned maps and links) stays in place.
    let _ = std::fs::remove_file(&cfg.socket);
    tracing::info!("agent stopped; datapath left in place");
    Ok(())
}
