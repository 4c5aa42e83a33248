//! Hubble's flow API as seta serves it: the generated `flow`, `relay` and
//! `observer` packages (gRPC server and client), and the pure parts of an
//! observer — flow filters ([`filter`]), the flow ring buffer ([`ring`]) and
//! Hubble's compact line ([`compact`]).
pub mod flow {
    tonic::include_proto!("flow");
}
pub mod relay {
    tonic::include_proto!("relay");
}
pub mod observer {
    tonic::include_proto!("observer");
}

pub mod compact;
pub mod decode;
pub mod filter;
pub mod json;
pub mod monitor;
pub mod ring;

/// A client of an observer at `target`: `unix:///path/hubble.sock` or
/// `host:port` (plain gRPC).
pub async fn connect(target: &str) -> Result<observer::observer_client::ObserverClient<tonic::transport::Channel>, String> {
    let channel = if let Some(path) = target.strip_prefix("unix://") {
        let path = path.to_string();
        tonic::transport::Endpoint::from_static("http://observer.local")
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await
    } else {
        tonic::transport::Endpoint::from_shared(format!("http://{target}"))
            .map_err(|e| format!("{target}: {e}"))?
            .connect()
            .await
    };
    channel
        .map(observer::observer_client::ObserverClient::new)
        .map_err(|e| format!("connecting to the observer at {target}: {e}"))
}
