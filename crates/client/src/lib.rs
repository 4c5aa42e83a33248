//! Client for the agent's REST API (HTTP/1.1 + JSON on a unix socket).
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
pub use hyper::Method;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;

pub mod api;
pub use api::PolicySelector;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the seta agent at {path}: {source} (is seta-agent running for this node?)")]
    Unreachable { path: PathBuf, source: std::io::Error },
    #[error("agent at {path} did not answer within {secs}s")]
    Timeout { path: PathBuf, secs: u64 },
    #[error("HTTP error talking to {path}: {msg}")]
    Http { path: PathBuf, msg: String },
    #[error("agent returned {status}: {message}")]
    Api { status: u16, message: String },
    #[error("agent sent a body that is not the expected JSON: {0}")]
    Decode(String),
}

impl ClientError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    path: PathBuf,
    timeout: Duration,
}

impl Client {
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            timeout: Duration::from_secs(60),
        }
    }
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn raw(&self, method: Method, uri: &str, body: Option<Vec<u8>>) -> Result<(StatusCode, Bytes), ClientError> {
        let fut = async {
            let stream = UnixStream::connect(&self.path).await.map_err(|source| ClientError::Unreachable {
                path: self.path.clone(),
                source,
            })?;
            let http = |e: hyper::Error| ClientError::Http {
                path: self.path.clone(),
                msg: e.to_string(),
            };
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let req = Request::builder()
                .method(method)
                .uri(uri)
                .header("host", "seta-agent")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .expect("valid request");
            let resp = sender.send_request(req).await.map_err(http)?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await.map_err(http)?.to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| ClientError::Timeout {
            path: self.path.clone(),
            secs: self.timeout.as_secs(),
        })?
    }

    pub async fn request<T: DeserializeOwned>(&self, method: Method, uri: &str, body: Option<&impl Serialize>) -> Result<T, ClientError> {
        let body = body.map(|b| serde_json::to_vec(b).expect("serialisable"));
        let (status, bytes) = self.raw(method, uri, body).await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<seta_core::api::ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(ClientError::Api {
                status: status.as_u16(),
                message,
            });
        }
        let bytes = if bytes.is_empty() { Bytes::from_static(b"null") } else { bytes };
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn get<T: DeserializeOwned>(&self, uri: &str) -> Result<T, ClientError> {
        self.request(Method::GET, uri, None::<&()>).await
    }
    pub async fn post<T: DeserializeOwned>(&self, uri: &str, body: &impl Serialize) -> Result<T, ClientError> {
        self.request(Method::POST, uri, Some(body)).await
    }
    pub async fn put<T: DeserializeOwned>(&self, uri: &str, body: &impl Serialize) -> Result<T, ClientError> {
        self.request(Method::PUT, uri, Some(body)).await
    }
    pub async fn delete<T: DeserializeOwned>(&self, uri: &str) -> Result<T, ClientError> {
        self.request(Method::DELETE, uri, None::<&()>).await
    }
}

/// Every agent socket on this machine, as (node name, socket path), sorted.
pub fn agent_sockets() -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir("/run/seta")
        .map(|rd| {
            rd.flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path().join("agent.sock")))
                .filter(|(_, p)| p.exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Socket of `node`, or of the only agent under /run/seta when `node` is None.
pub fn resolve_socket(node: Option<&str>) -> Result<PathBuf, String> {
    if let Some(n) = node {
        return Ok(seta_core::names::socket_path(n));
    }
    let mut found: Vec<PathBuf> = agent_sockets().into_iter().map(|(_, p)| p).collect();
    match found.len() {
        0 => Err("no seta agent socket found under /run/seta/*/agent.sock; start seta-agent or pass --node NAME".into()),
        1 => Ok(found.remove(0)),
        _ => Err(format!(
            "several agents are running ({}); choose one with --node NAME",
            found
                .iter()
                .filter_map(|p| p.parent()?.file_name()?.to_str().map(String::from))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
