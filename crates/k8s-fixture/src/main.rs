//! seta-k8s-api: the in-memory Kubernetes API server fixture, on its own.
use clap::Parser;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "An in-memory Kubernetes API server for tests and the lab (not a product binary)")]
struct Args {
    /// Address to listen on (port 0: any free port; the address is printed)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Write a kubeconfig for this server here
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// Seconds between bookmarks on watches that allow them
    #[arg(long, default_value_t = 1)]
    bookmark_seconds: u64,
    /// Changes kept for watches to resume from (older: 410 Gone)
    #[arg(long, default_value_t = 10000)]
    history: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let a = Args::parse();
    let listener = tokio::net::TcpListener::bind(a.listen).await?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    if let Some(p) = &a.kubeconfig {
        std::fs::write(p, seta_k8s_fixture::kubeconfig(&url))?;
    }
    println!("{url}");
    let s = seta_k8s_fixture::ApiServer::new(Duration::from_secs(a.bookmark_seconds), a.history);
    seta_k8s_fixture::server::serve(s, listener).await?;
    Ok(())
}
