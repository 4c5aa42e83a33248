//! REST API (JSON over the unix socket), basePath /v1.
use crate::agent::{Agent, ApiError};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use seta_core::api::{IdentityEntry, LabelsBody, NamespaceBody, PolicyChange, PolicyText, TraceRequest};
use seta_core::endpoint::{EndpointChangeRequest, EndpointRef};
use std::collections::HashMap;
use std::sync::Arc;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        };
        (code, Json(seta_core::api::ApiError { error: self.to_string() })).into_response()
    }
}

type A = State<Arc<Agent>>;
type R<T> = Result<Json<T>, ApiError>;

fn ep_ref(s: &str) -> Result<EndpointRef, ApiError> {
    EndpointRef::parse(s).map_err(ApiError::BadRequest)
}

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/v1/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/v1/status", get(|State(a): A| async move { Json(a.status().await) }))
        .route("/v1/config", get(|State(a): A| async move { Json(a.config()) }))
        .route("/v1/ipam", axum::routing::post(ipam_allocate).delete(ipam_release_owner))
        .route("/v1/ipam/{ip}", delete(ipam_release))
        .route("/v1/endpoint", get(|State(a): A| async move { Json(a.list().await) }))
        .route("/v1/endpoint/{id}", get(endpoint_get).put(endpoint_put).delete(endpoint_delete))
        .route("/v1/attachments", get(|State(a): A| async move { a.attachments().await.map(Json) }))
        .route("/v1/endpoint/{id}/labels", axum::routing::patch(endpoint_labels))
        .route("/v1/identity", get(|State(a): A| async move { Json(a.identities().await) }))
        .route("/v1/identity/{id}", get(identity_get))
        .route(
            "/v1/policy",
            get(|State(a): A| async move { Json(a.policy_list().await) })
                .put(policy_import)
                .delete(policy_delete)
                .layer(axum::extract::DefaultBodyLimit::max(seta_core::api::MAX_POLICY_BODY)),
        )
        .route(
            "/v1/policy/validate",
            axum::routing::post(policy_validate).layer(axum::extract::DefaultBodyLimit::max(seta_core::api::MAX_POLICY_BODY)),
        )
        .route("/v1/policy/wait", get(policy_wait))
        .route("/v1/policy/trace", axum::routing::post(policy_trace))
        .route(
            "/v1/policy/verify",
            get(|State(a): A| async move {
                a.policy_verify()
                    .await
                    .map(|p| Json(serde_json::json!({"consistent": p.is_empty(), "problems": p})))
            }),
        )
        .route("/v1/namespace", get(|State(a): A| async move { Json(a.namespaces().await) }))
        .route("/v1/namespace/{ns}", axum::routing::put(namespace_put))
        .route(
            "/v1/service",
            get(|State(a): A| async move { Json(a.service_list()) })
                .put(service_import)
                .delete(service_delete)
                .layer(axum::extract::DefaultBodyLimit::max(seta_core::api::MAX_POLICY_BODY)),
        )
        .route("/v1/service/{ns}/{name}", get(service_get))
        .route("/v1/service-backend", axum::routing::patch(service_backend))
        .route("/v1/service-state", get(|State(a): A| async move { Json(a.service_state()) }))
        .route("/v1/events", get(events))
        .route("/v1/kvstore", get(kvstore))
        .route("/v1/nodes", get(|State(a): A| async move { a.nodes().await.map(Json) }))
        .route_layer(axum::middleware::from_fn_with_state(agent.clone(), timing))
        .with_state(agent)
}

/// Every request's duration by method, route and status (a metric).
async fn timing(State(a): A, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = req.method().to_string();
    let path = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let t = std::time::Instant::now();
    let resp = next.run(req).await;
    a.observe_api(&method, &path, resp.status().as_u16(), t.elapsed().as_secs_f64());
    resp
}

const OPENMETRICS: [(axum::http::header::HeaderName, &str); 1] = [(
    axum::http::header::CONTENT_TYPE,
    "application/openmetrics-text; version=1.0.0; charset=utf-8",
)];

/// The Prometheus endpoint: `GET /metrics` (OpenMetrics text).
pub fn metrics_router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/metrics", get(|State(a): A| async move { (OPENMETRICS, a.metrics_text().await) }))
        .with_state(agent)
}

/// Hubble's flow metrics: `GET /metrics` (OpenMetrics text).
pub fn hubble_metrics_router(obs: Arc<crate::observer::Observer>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let text = obs.metrics.render();
            async move { (OPENMETRICS, text) }
        }),
    )
}

async fn ipam_allocate(
    State(a): A,
    Query(q): Query<HashMap<String, String>>,
) -> Result<(StatusCode, Json<seta_core::api::IpamResponse>), ApiError> {
    let owner = q.get("owner").cloned().unwrap_or_default();
    Ok((StatusCode::CREATED, Json(a.ipam_allocate(&owner).await?)))
}

async fn ipam_release_owner(State(a): A, Query(q): Query<HashMap<String, String>>) -> R<serde_json::Value> {
    let owner = q
        .get("owner")
        .cloned()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| ApiError::BadRequest("query parameter owner is required".into()))?;
    let n = a.ipam_release_owner(&owner).await?;
    Ok(Json(serde_json::json!({"released": n})))
}

async fn ipam_release(State(a): A, Path(ip): Path<String>) -> R<serde_json::Value> {
    let ip = ip
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{ip:?} is not an IPv4 address")))?;
    a.ipam_release(ip).await?;
    Ok(Json(serde_json::json!({"released": ip})))
}

async fn endpoint_get(State(a): A, Path(id): Path<String>) -> R<seta_core::endpoint::Endpoint> {
    Ok(Json(a.get(&ep_ref(&id)?).await?))
}

async fn endpoint_put(
    State(a): A,
    Path(id): Path<String>,
    body: Result<Json<EndpointChangeRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<seta_core::endpoint::Endpoint>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::BadRequest(format!("endpoint change request: {}", e.body_text())))?;
    match ep_ref(&id)? {
        EndpointRef::ContainerId(c) if c == req.container_id => {}
        _ => {
            return Err(ApiError::BadRequest(format!(
                "PUT /v1/endpoint/{id}: the path must be container-id:{} (the body's container-id)",
                req.container_id
            )))
        }
    }
    let ep = a.create_endpoint(req).await?;
    // prepare the next spare policy map off this request's path
    tokio::spawn(async move { a.refill_spare_policy_maps().await });
    Ok((StatusCode::CREATED, Json(ep)))
}

async fn endpoint_delete(State(a): A, Path(id): Path<String>) -> R<seta_core::endpoint::Endpoint> {
    Ok(Json(a.delete_endpoint(&ep_ref(&id)?).await?))
}

fn json_body<T>(b: Result<Json<T>, axum::extract::rejection::JsonRejection>, what: &str) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "{what}: the request is larger than the agent's limit of {} MiB for it; split the input into several files",
                if what == "policy body" {
                    seta_core::api::MAX_POLICY_BODY >> 20
                } else {
                    2
                }
            ))
        } else {
            ApiError::BadRequest(format!("{what}: {}", seta_core::policy::parse::clip(&e.body_text())))
        }
    })
}

type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

async fn endpoint_labels(State(a): A, Path(id): Path<String>, body: Body<LabelsBody>) -> R<seta_core::endpoint::Endpoint> {
    let b = json_body(body, "labels body")?;
    Ok(Json(a.set_labels(&ep_ref(&id)?, b.labels).await?))
}

async fn identity_get(State(a): A, Path(id): Path<String>) -> R<IdentityEntry> {
    let n: u32 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not a numeric identity")))?;
    a.identities()
        .await
        .into_iter()
        .find(|i| i.id == n)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("identity {n} not found")))
}

async fn policy_import(State(a): A, body: Body<PolicyText>) -> R<PolicyChange> {
    let b = json_body(body, "policy body")?;
    let (revision, policies) = a.policy_import(&b.yaml).await?;
    Ok(Json(PolicyChange { revision, policies }))
}

async fn policy_validate(State(a): A, body: Body<PolicyText>) -> R<PolicyChange> {
    let b = json_body(body, "policy body")?;
    let docs = a.policy_validate(&b.yaml).await?;
    Ok(Json(PolicyChange {
        revision: a.revision().await,
        policies: docs.iter().map(|d| d.origin.to_string()).collect(),
    }))
}

async fn policy_delete(State(a): A, Query(q): Query<HashMap<String, String>>) -> R<PolicyChange> {
    let all = q.get("all").is_some_and(|v| v == "true");
    let (revision, policies) = a
        .policy_delete(
            q.get("name").map(String::as_str),
            q.get("namespace").map(String::as_str),
            q.get("kind").map(String::as_str),
            all,
        )
        .await?;
    Ok(Json(PolicyChange { revision, policies }))
}

async fn policy_wait(State(a): A, Query(q): Query<HashMap<String, String>>) -> R<serde_json::Value> {
    let rev = match q.get("revision") {
        Some(r) => Some(
            r.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("revision {r:?} is not a number")))?,
        ),
        None => None,
    };
    let secs: u64 = q.get("timeout").and_then(|t| t.parse().ok()).unwrap_or(30);
    let r = a.policy_wait(rev, std::time::Duration::from_secs(secs)).await?;
    Ok(Json(serde_json::json!({"revision": r})))
}

async fn policy_trace(State(a): A, body: Body<TraceRequest>) -> R<seta_core::policy::trace::TraceResult> {
    let b = json_body(body, "trace request")?;
    Ok(Json(a.trace(&b).await?))
}

async fn service_import(State(a): A, body: Body<seta_core::api::ServiceText>) -> R<seta_core::api::ServiceChange> {
    let b = json_body(body, "service body")?;
    a.service_import(&b.yaml).await.map(Json)
}

async fn service_delete(State(a): A, Query(q): Query<HashMap<String, String>>) -> R<seta_core::api::ServiceChange> {
    let all = q.get("all").is_some_and(|v| v == "true");
    a.service_delete(q.get("name").map(String::as_str), q.get("namespace").map(String::as_str), all)
        .await
        .map(Json)
}

async fn service_backend(State(a): A, body: Body<seta_core::api::BackendStateBody>) -> R<serde_json::Value> {
    let b = json_body(body, "backend state body")?;
    a.service_backend_state(&b.backend, &b.state).await.map(Json)
}

async fn service_get(State(a): A, Path((ns, name)): Path<(String, String)>) -> R<serde_json::Value> {
    a.service_get(&name, &ns).map(Json)
}

async fn namespace_put(State(a): A, Path(ns): Path<String>, body: Body<NamespaceBody>) -> R<serde_json::Value> {
    let b = json_body(body, "namespace body")?;
    a.set_namespace(&ns, b.labels).await?;
    Ok(Json(serde_json::json!({"namespace": ns})))
}

async fn events(State(a): A, Query(q): Query<HashMap<String, String>>) -> R<Vec<crate::events::EventRecord>> {
    let since = q.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok(Json(a.events.since(since)))
}

async fn kvstore(State(a): A, Query(q): Query<HashMap<String, String>>) -> R<Vec<serde_json::Value>> {
    let (what, exact) = match (q.get("key"), q.get("prefix")) {
        (Some(k), _) => (k.clone(), true),
        (None, Some(p)) => (p.clone(), false),
        (None, None) => return Err(ApiError::BadRequest("give ?prefix=P or ?key=K".into())),
    };
    let kvs = a.kvstore_list(&what, exact).await?;
    Ok(Json(
        kvs.into_iter().map(|(k, v)| serde_json::json!({"key": k, "value": v})).collect(),
    ))
}
