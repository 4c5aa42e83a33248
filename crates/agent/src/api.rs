//! REST API (JSON over the unix socket), basePath /v1.
use crate::agent::{Agent, ApiError};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
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
        .with_state(agent)
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
    Ok((StatusCode::CREATED, Json(a.create_endpoint(req).await?)))
}

async fn endpoint_delete(State(a): A, Path(id): Path<String>) -> R<seta_core::endpoint::Endpoint> {
    Ok(Json(a.delete_endpoint(&ep_ref(&id)?).await?))
}
