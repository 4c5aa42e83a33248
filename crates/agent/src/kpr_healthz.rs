//! kube-proxy's health server, as Cilium serves it in kube-proxy's place
//! (`--kube-proxy-replacement-healthz-bind-address`, conventionally
//! `0.0.0.0:10256`): cloud load balancers and node checks probe
//! `GET /healthz` of every node and send traffic only to nodes answering 200.
//!
//! The answer is 200 while the node's service handling is healthy (its
//! sources of services are connected and the service maps follow them), and
//! 503 otherwise, with Cilium's body `{"lastUpdated": …, "currentTime": …}`:
//! when healthy both are now; when not, `lastUpdated` is the last time the
//! service maps were written successfully. What counts as healthy is the
//! agent's to say (`Verdict`); this module only answers.
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use std::sync::Arc;
use std::time::SystemTime;

/// The node's service health as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// why the node should not get service traffic (empty: healthy)
    pub problems: Vec<String>,
    /// the last time the service maps were written successfully
    pub last_updated: SystemTime,
}

/// RFC 3339 in UTC, as kube-proxy's own healthz writes its times.
fn rfc3339(t: SystemTime) -> String {
    k8s_openapi::jiff::Timestamp::try_from(t).map(|t| t.to_string()).unwrap_or_default()
}

/// The status and body for `v` at `now`.
pub fn response(v: &Verdict, now: SystemTime) -> (StatusCode, String) {
    let (status, last) = match v.problems.is_empty() {
        true => (StatusCode::OK, now),
        false => (StatusCode::SERVICE_UNAVAILABLE, v.last_updated),
    };
    let body = serde_json::json!({"lastUpdated": rfc3339(last), "currentTime": rfc3339(now)});
    (status, body.to_string())
}

pub type Source = Arc<dyn Fn() -> Verdict + Send + Sync>;

/// `GET /healthz` (only that path, as Cilium's mux registers it).
pub fn router(verdict: Source) -> axum::Router {
    axum::Router::new().route(
        "/healthz",
        axum::routing::get(move || {
            let v = verdict();
            async move {
                if !v.problems.is_empty() {
                    tracing::debug!(problems = ?v.problems, "kube-proxy healthz: 503");
                }
                let (status, body) = response(&v, SystemTime::now());
                (
                    status,
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    ],
                    body,
                )
                    .into_response()
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tower::ServiceExt;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn healthy_answers_200_now_unhealthy_503_with_the_last_update() {
        let now = at(1_800_000_000);
        let ok = Verdict {
            problems: vec![],
            last_updated: at(1_700_000_000),
        };
        let (s, body) = response(&ok, now);
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            body,
            r#"{"currentTime":"2027-01-15T08:00:00Z","lastUpdated":"2027-01-15T08:00:00Z"}"#
        );
        let bad = Verdict {
            problems: vec!["kvstore: connection refused".into()],
            ..ok
        };
        let (s, body) = response(&bad, now);
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            r#"{"currentTime":"2027-01-15T08:00:00Z","lastUpdated":"2023-11-14T22:13:20Z"}"#
        );
    }

    #[tokio::test]
    async fn serves_only_healthz_and_follows_the_verdict() {
        let problems = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let src: Source = {
            let p = problems.clone();
            Arc::new(move || Verdict {
                problems: p.lock().unwrap().clone(),
                last_updated: at(1),
            })
        };
        let app = router(src);
        let get = |path: &'static str| {
            let app = app.clone();
            async move {
                let r = app
                    .oneshot(axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap())
                    .await
                    .unwrap();
                let ct = r.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string());
                (r.status(), ct)
            }
        };
        assert_eq!(get("/healthz").await, (StatusCode::OK, Some("application/json".into())));
        assert_eq!(get("/").await.0, StatusCode::NOT_FOUND);
        problems.lock().unwrap().push("kubernetes: degraded".into());
        assert_eq!(get("/healthz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        problems.lock().unwrap().clear();
        assert_eq!(get("/healthz").await.0, StatusCode::OK);
    }
}
