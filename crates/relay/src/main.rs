//! seta-relay: Hubble Relay for seta. It learns every node's observer from
//! Hubble's peer API of any agent, and serves Hubble's `observer.Observer`
//! for the whole cluster: GetFlows fanned out to every node and merged by
//! time, ServerStatus and GetNodes summed over the nodes, unavailable nodes
//! named. `hubble observe --server HOST:4245` and `seta observe --server`
//! read it as they read one node.
mod peers;
mod server;
mod ui;

use anyhow::{Context, Result};
use clap::Parser;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "seta-relay",
    version,
    about = "Hubble Relay for seta: every node's flows behind one Hubble API"
)]
struct Args {
    /// Hubble's peer API of an agent, to learn the nodes from: unix:///run/seta/NODE/hubble.sock or HOST:PORT; repeat for fallbacks
    #[arg(long = "peer-service", required = true)]
    peer_service: Vec<String>,
    /// Serve here: [HOST]:PORT (Hubble Relay's :4245) or unix:///PATH; repeatable
    #[arg(long = "listen-address", default_value = ":4245")]
    listen_address: Vec<String>,
    /// How long to wait for a node's observer to answer (e.g. 5s, 500ms)
    #[arg(long, default_value = "5s", value_parser = duration)]
    dial_timeout: Duration,
    /// Flows held to sort the nodes' streams by time while following
    #[arg(long, default_value_t = 100)]
    sort_buffer_len_max: usize,
    /// The longest a flow waits in the sort buffer (e.g. 1s)
    #[arg(long, default_value = "1s", value_parser = duration)]
    sort_buffer_drain_timeout: Duration,
    /// Serve the service map (a web page) here: [HOST]:PORT, e.g. :12000; off when unset
    #[arg(long)]
    ui_listen_address: Option<String>,
}

/// "1s", "500ms", "2m", or plain seconds.
fn duration(s: &str) -> Result<Duration, String> {
    seta_core::time::parse_duration(s)
}

/// `:PORT` is every address.
fn tcp_addr(addr: &str) -> String {
    if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let a = Args::parse();
    let set = peers::PeerSet::default();
    tokio::spawn(peers::follow(a.peer_service.clone(), set.clone(), a.dial_timeout));
    let mut servers = Vec::new();
    if let Some(addr) = &a.ui_listen_address {
        let svc = server::Relay::new(set.clone(), a.dial_timeout, a.sort_buffer_len_max, a.sort_buffer_drain_timeout);
        let l = tokio::net::TcpListener::bind(tcp_addr(addr))
            .await
            .with_context(|| format!("--ui-listen-address {addr}"))?;
        let app = ui::router(svc);
        servers.push(tokio::spawn(async move { axum::serve(l, app).await.context("the service map") }));
        tracing::info!(%addr, "serving the service map");
    }
    for addr in &a.listen_address {
        let svc = server::Relay::new(set.clone(), a.dial_timeout, a.sort_buffer_len_max, a.sort_buffer_drain_timeout);
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_serving::<server::Server>().await;
        let router = tonic::transport::Server::builder()
            .add_service(server::Server::new(svc))
            .add_service(health);
        if let Some(path) = addr.strip_prefix("unix://") {
            let _ = std::fs::remove_file(path);
            let l = tokio::net::UnixListener::bind(path).with_context(|| format!("--listen-address {addr}"))?;
            let incoming = futures::stream::unfold(l, |l| async move { Some((l.accept().await.map(|(s, _)| s), l)) });
            servers.push(tokio::spawn(async move {
                router.serve_with_incoming(incoming).await.context("the Hubble API")
            }));
        } else {
            let l = tokio::net::TcpListener::bind(tcp_addr(addr))
                .await
                .with_context(|| format!("--listen-address {addr}"))?;
            let incoming = futures::stream::unfold(l, |l| async move { Some((l.accept().await.map(|(s, _)| s), l)) });
            servers.push(tokio::spawn(async move {
                router.serve_with_incoming(incoming).await.context("the Hubble API")
            }));
        }
        tracing::info!(%addr, "serving the Hubble API");
    }
    for s in servers {
        s.await??;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
