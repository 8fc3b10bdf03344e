//! `/healthz`, `/metrics`, `/api/openapi.json` (no token), `/api/v1/plan` and API tokens.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{Principal, Role};
use super::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use super::state::{now_ms, AppState, API_TOKEN_PREFIX};
use crate::store::{ApiRole, NewApiToken};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub database: String,
}

/// 200 when the coordinator can serve (its database answers and it holds its lock), else 503.
/// Reveals nothing secret.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn healthz(State(state): State<AppState>) -> ApiResult<ApiJson<Health>> {
    let store = state.store();
    if let Err(e) = store.ensure_lock_held().await {
        tracing::error!(error = %e, "health check: coordinator lock");
        return Err(ApiError::unavailable("the coordinator lost its database lock"));
    }
    if let Err(e) = store.last_event_id().await {
        tracing::warn!(error = %e, "health check: database");
        return Err(ApiError::unavailable("the database does not answer"));
    }
    Ok(ApiJson(Health {
        status: "ok".into(),
        database: match store.backend() {
            crate::store::Backend::Sqlite => "sqlite".into(),
            crate::store::Backend::Postgres => "postgres".into(),
        },
    }))
}

/// Prometheus text exposition (OpenMetrics).
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "metrics", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

/// This API's OpenAPI description.
#[utoipa::path(get, path = "/api/openapi.json", tag = "system",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::openapi_json(),
    )
        .into_response()
}

/// The scheduler's latest plan (what the reconcile loop last decided, with the reasons).
#[utoipa::path(get, path = "/api/v1/plan", tag = "plan",
    responses((status = 200, description = "the latest plan", body = Object),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn plan(State(state): State<AppState>, p: Principal) -> ApiResult<Response> {
    p.require(Role::Viewer)?;
    let latest = state.0.latest_plan.read().await.clone();
    match latest {
        Some(plan) => Ok(axum::Json(plan.as_ref()).into_response()),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_plan_yet",
            "the reconcile loop has not planned yet; retry in a few seconds",
        )),
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiToken {
    /// Who or what uses it (for the records).
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
}

/// Shown once. (No `Debug`: it holds the token.)
#[derive(Clone, Serialize, ToSchema)]
pub struct ApiTokenCreated {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub token: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiTokenView {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateApiToken,
    responses((status = 201, body = ApiTokenCreated), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_token(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<CreateApiToken>,
) -> ApiResult<(StatusCode, ApiJson<ApiTokenCreated>)> {
    p.require(Role::Admin)?;
    let role: ApiRole = req
        .role
        .parse()
        .map_err(|_| ApiError::invalid_field("role", "must be viewer, operator or admin"))?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::invalid_field("name", "must be 1 to 128 characters"));
    }
    let token = format!("{API_TOKEN_PREFIX}{}", crate::secrets::generate_token().as_str());
    let row = state
        .store()
        .create_api_token(
            &NewApiToken {
                name: name.to_owned(),
                role,
                token_hash: *blake3::hash(token.as_bytes()).as_bytes(),
            },
            now_ms(),
        )
        .await?;
    state
        .event(
            "token.created",
            &row.id.to_string(),
            json!({"name": row.name, "role": row.role.as_str(), "by": p.name()}),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        ApiJson(ApiTokenCreated {
            id: row.id,
            name: row.name,
            role: row.role.as_str().to_owned(),
            token,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = [ApiTokenView])),
    security(("bearer" = [])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    p: Principal,
) -> ApiResult<ApiJson<Vec<ApiTokenView>>> {
    p.require(Role::Admin)?;
    let all = state.store().list_api_tokens().await?;
    Ok(ApiJson(
        all.into_iter()
            .map(|t| ApiTokenView {
                id: t.id,
                name: t.name,
                role: t.role.as_str().to_owned(),
                created_at: t.created_at,
                revoked_at: t.revoked_at,
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = Uuid, Path, description = "token id")),
    responses((status = 200, body = ApiTokenView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<ApiJson<ApiTokenView>> {
    p.require(Role::Admin)?;
    let t = state.store().revoke_api_token(id, now_ms()).await?;
    state.clear_auth_cache();
    state
        .event("token.revoked", &id.to_string(), json!({"by": p.name()}))
        .await;
    Ok(ApiJson(ApiTokenView {
        id: t.id,
        name: t.name,
        role: t.role.as_str().to_owned(),
        created_at: t.created_at,
        revoked_at: t.revoked_at,
    }))
}
