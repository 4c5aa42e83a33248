//! The health-check NodePort server (kube-proxy's and Cilium's): an HTTP
//! listener on every `healthCheckNodePort` this node serves, answering any
//! path with 200 while the service has active backends on this node and 503
//! when it has none, so an external load balancer sends traffic only to
//! nodes that keep it (`externalTrafficPolicy: Local`). A subsystem of its
//! own: it owns its listeners; the services subsystem says what they answer.
use crate::services::HealthCheck;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

type Answers = Arc<RwLock<BTreeMap<u16, HealthCheck>>>;

#[derive(Default)]
pub struct HealthServer {
    answers: Answers,
    /// port -> its listener's task
    listeners: Mutex<BTreeMap<u16, tokio::task::JoinHandle<()>>>,
}

impl HealthServer {
    /// Serve exactly `want`: new ports get a listener, gone ones lose theirs,
    /// the others answer with the new counts at once. A port that cannot be
    /// bound is reported (and tried again on the next change).
    pub async fn reconcile(&self, want: BTreeMap<u16, HealthCheck>) -> Vec<String> {
        let ports: Vec<u16> = want.keys().copied().collect();
        *self.answers.write().unwrap() = want;
        let mut errors = Vec::new();
        let missing: Vec<u16> = {
            let mut l = self.listeners.lock().unwrap();
            l.retain(|p, task| {
                let keep = ports.contains(p) && !task.is_finished();
                if !keep {
                    task.abort();
                }
                keep
            });
            ports.into_iter().filter(|p| !l.contains_key(p)).collect()
        };
        for port in missing {
            match tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await {
                Ok(listener) => {
                    let answers = self.answers.clone();
                    let app = axum::Router::new().fallback(move || answer(answers.clone(), port));
                    let task = tokio::spawn(async move {
                        if let Err(e) = axum::serve(listener, app).await {
                            tracing::warn!(port, %e, "health-check NodePort server ended");
                        }
                    });
                    tracing::info!(port, "health-check NodePort serving");
                    self.listeners.lock().unwrap().insert(port, task);
                }
                Err(e) => errors.push(format!("health-check NodePort {port}: {e}")),
            }
        }
        errors
    }

    /// The ports being served.
    #[cfg(test)]
    pub fn ports(&self) -> Vec<u16> {
        self.listeners.lock().unwrap().keys().copied().collect()
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        for t in self.listeners.get_mut().unwrap().values() {
            t.abort();
        }
    }
}

async fn answer(answers: Answers, port: u16) -> axum::response::Response {
    let Some(hc) = answers.read().unwrap().get(&port).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (status, weight, body) = hc.response();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::HeaderName::from_static("x-load-balancing-endpoint-weight"),
                weight.to_string(),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(port: u16) -> std::io::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        c.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n").await?;
        let mut s = String::new();
        c.read_to_string(&mut s).await?;
        Ok(s)
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn answers_200_with_local_endpoints_503_without_and_stops_when_gone() {
        let s = HealthServer::default();
        let port = free_port();
        let hc = |n| HealthCheck {
            namespace: "shop".into(),
            name: "web".into(),
            local_endpoints: n,
        };
        assert!(s.reconcile([(port, hc(2))].into()).await.is_empty());
        let r = get(port).await.unwrap();
        assert!(r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.to_ascii_lowercase().contains("x-load-balancing-endpoint-weight: 2"), "{r}");
        assert!(
            r.ends_with(r#"{"localEndpoints":2,"service":{"name":"web","namespace":"shop"}}"#),
            "{r}"
        );
        // the same listener answers the new count at once
        assert!(s.reconcile([(port, hc(0))].into()).await.is_empty());
        let r = get(port).await.unwrap();
        assert!(r.contains(" 503 "), "{r}");
        assert_eq!(s.ports(), [port]);
        // gone: nobody listens any more
        assert!(s.reconcile(BTreeMap::new()).await.is_empty());
        assert!(s.ports().is_empty());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(get(port).await.is_err());
    }
}
