//! `/api/v1/jobs`: list with filters, get, cancel, retry.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{Principal, Role};
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::state::{now_ms, AppState};
use crate::store::{Job, JobFilter, JobKind, JobState};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: Uuid,
    /// `init`, `verify`, `k2pow` or `prove`.
    pub kind: String,
    pub identity_id: Uuid,
    /// `queued`, `leased`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// What to do (device, range or groups, target disk, challenge).
    #[schema(value_type = Object)]
    pub spec: Value,
    pub assigned_worker_id: Option<Uuid>,
    pub worker_id: Option<Uuid>,
    pub lease_expires_at: Option<i64>,
    pub fencing_token: i64,
    pub attempts: u32,
    pub max_attempts: u32,
    #[schema(value_type = Option<Object>)]
    pub progress: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: Option<String>,
    pub priority: i64,
    pub not_before: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<&Job> for JobView {
    fn from(j: &Job) -> Self {
        JobView {
            id: j.id,
            kind: j.kind.as_str().to_owned(),
            identity_id: j.identity_id,
            state: j.state.as_str().to_owned(),
            spec: j.payload.clone(),
            assigned_worker_id: j.assigned_worker_id,
            worker_id: j.worker_id,
            lease_expires_at: j.lease_expires_at,
            fencing_token: j.fencing_token,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            progress: j.progress.clone(),
            result: j.result.clone(),
            error: j.error.clone(),
            priority: j.priority,
            not_before: j.not_before,
            created_at: j.created_at,
            updated_at: j.updated_at,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// `init`, `verify`, `k2pow` or `prove`.
    pub kind: Option<String>,
    /// `queued`, `leased`, `done`, `failed` or `cancelled`.
    pub state: Option<String>,
    pub identity_id: Option<Uuid>,
    pub worker_id: Option<Uuid>,
    /// 1..=1000, default 100.
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(JobQuery),
    responses((status = 200, body = [JobView]), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> ApiResult<ApiJson<Vec<JobView>>> {
    p.require(Role::Viewer)?;
    let kind = q
        .kind
        .as_deref()
        .map(|k| {
            k.parse::<JobKind>()
                .map_err(|e| ApiError::invalid_field("kind", e))
        })
        .transpose()?;
    let job_state = q
        .state
        .as_deref()
        .map(|k| {
            k.parse::<JobState>()
                .map_err(|e| ApiError::invalid_field("state", e))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be 1 to 1000"));
    }
    let filter = JobFilter {
        kind,
        state: job_state,
        identity_id: q.identity_id,
        worker_id: q.worker_id,
        limit,
        offset: q.offset.unwrap_or(0),
    };
    let jobs = state.store().list_jobs(&filter).await?;
    Ok(ApiJson(jobs.iter().map(JobView::from).collect()))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<ApiJson<JobView>> {
    p.require(Role::Viewer)?;
    Ok(ApiJson(JobView::from(&state.store().get_job(id).await?)))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<ApiJson<JobView>> {
    p.require(Role::Operator)?;
    let job = state.store().cancel_job(id, now_ms()).await?;
    state
        .event("job.cancelled", &id.to_string(), json!({"by": p.name()}))
        .await;
    state.0.wake.notify_one();
    Ok(ApiJson(JobView::from(&job)))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = Uuid, Path, description = "job id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<ApiJson<JobView>> {
    p.require(Role::Operator)?;
    let job = state.store().retry_job(id, now_ms()).await?;
    state
        .event("job.retried", &id.to_string(), json!({"by": p.name()}))
        .await;
    state.0.wake.notify_one();
    Ok(ApiJson(JobView::from(&job)))
}
