//! `/api/v1/workers`: the fleet's rigs as operators see them, and join tokens.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{Principal, Role};
use super::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use super::jobs::JobView;
use super::state::{now_ms, AppState};
use crate::store::{DeviceSettings, JobFilter, JobState, NewJoinToken, Worker, WorkerState};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    pub id: Uuid,
    pub name: String,
    /// `online`, `offline`, `draining` or `removed`.
    pub state: String,
    /// What the rig last reported (devices, measured speeds, disks).
    #[schema(value_type = Object)]
    pub capabilities: Value,
    pub last_heartbeat_at: Option<i64>,
    pub created_at: i64,
    /// Paused by an operator (`POST /api/v1/workers/{id}/pause`): it keeps what it holds and gets
    /// nothing new until `/resume`.
    pub paused: bool,
    /// What an operator allows of the rig's devices (`PUT /api/v1/workers/{id}/devices`).
    pub devices: WorkerDevices,
}

/// What an operator allows of a rig's devices, on top of what the rig itself allows
/// (`smeshfleet worker --cpu-init`, `--gpus`): the planner uses a device only when both do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerDevices {
    /// Whether the rig's CPU may compute labels (default true).
    #[serde(default = "yes")]
    pub cpu_init: bool,
    /// GPUs, by their index on the rig, the planner must not use (at most 256, each below 1024).
    #[serde(default)]
    pub disabled_gpus: Vec<u32>,
}

fn yes() -> bool {
    true
}

impl From<&DeviceSettings> for WorkerDevices {
    fn from(d: &DeviceSettings) -> Self {
        WorkerDevices {
            cpu_init: d.cpu_init,
            disabled_gpus: d.disabled_gpus.clone(),
        }
    }
}

impl WorkerView {
    /// The view with the latest heartbeat, including one held in memory not yet written.
    fn live(w: &Worker, state: &AppState) -> Self {
        let mut v = WorkerView::from(w);
        if let Some(t) = state.0.liveness.pending_since(w.id) {
            v.last_heartbeat_at = Some(v.last_heartbeat_at.map_or(t, |db| db.max(t)));
        }
        v
    }
}

impl From<&Worker> for WorkerView {
    fn from(w: &Worker) -> Self {
        WorkerView {
            id: w.id,
            name: w.name.clone(),
            state: w.state.as_str().to_owned(),
            capabilities: w.capabilities.clone(),
            last_heartbeat_at: w.last_heartbeat_at,
            created_at: w.created_at,
            paused: w.paused,
            devices: WorkerDevices::from(&w.device_settings),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerDetail {
    #[serde(flatten)]
    pub worker: WorkerView,
    /// Jobs it holds now.
    pub leased_jobs: Vec<JobView>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinToken {
    /// A label for the operator's records (for example the rig's name).
    #[serde(default)]
    pub name: Option<String>,
    /// Lifetime in seconds (1 .. 30 days); default one day.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// Shown once: the coordinator keeps only its hash. (No `Debug`: it holds the token.)
#[derive(Clone, Serialize, ToSchema)]
pub struct JoinTokenCreated {
    pub id: Uuid,
    /// Pass it to `smeshfleet worker --join-token`.
    pub token: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JoinTokenView {
    pub id: Uuid,
    pub name: Option<String>,
    pub expires_at: i64,
    pub created_at: i64,
    pub used_at: Option<i64>,
    pub used_by: Option<Uuid>,
}

#[utoipa::path(get, path = "/api/v1/workers", tag = "workers",
    responses((status = 200, body = [WorkerView]), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, p: Principal) -> ApiResult<ApiJson<Vec<WorkerView>>> {
    p.require(Role::Viewer)?;
    let all = state.store().list_workers().await?;
    Ok(ApiJson(all.iter().map(|w| WorkerView::live(w, &state)).collect()))
}

#[utoipa::path(get, path = "/api/v1/workers/{id}", tag = "workers",
    params(("id" = Uuid, Path, description = "worker id")),
    responses((status = 200, body = WorkerDetail), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<ApiJson<WorkerDetail>> {
    p.require(Role::Viewer)?;
    let w = state.store().get_worker(id).await?;
    let jobs = state
        .store()
        .list_jobs(&JobFilter {
            worker_id: Some(id),
            state: Some(JobState::Leased),
            limit: 1000,
            ..JobFilter::default()
        })
        .await?;
    Ok(ApiJson(WorkerDetail {
        worker: WorkerView::live(&w, &state),
        leased_jobs: jobs.iter().map(JobView::from).collect(),
    }))
}

async fn set_state(state: &AppState, p: &Principal, id: Uuid, to: WorkerState) -> ApiResult<WorkerView> {
    let w = state.store().set_worker_state(id, to, now_ms()).await?;
    state.0.liveness.set_state(id, w.state);
    if to == WorkerState::Removed {
        state.clear_auth_cache();
    }
    state
        .event(
            "worker.state",
            &id.to_string(),
            json!({"state": to.as_str(), "by": p.name()}),
        )
        .await;
    state.0.wake.notify_one();
    Ok(WorkerView::from(&w))
}

#[utoipa::path(post, path = "/api/v1/workers/{id}/drain", tag = "workers",
    params(("id" = Uuid, Path, description = "worker id")),
    responses((status = 200, body = WorkerView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn drain(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<ApiJson<WorkerView>> {
    p.require(Role::Operator)?;
    Ok(ApiJson(set_state(&state, &p, id, WorkerState::Draining).await?))
}

/// Resumes a paused or draining worker: it takes new work again.
#[utoipa::path(post, path = "/api/v1/workers/{id}/resume", tag = "workers",
    params(("id" = Uuid, Path, description = "worker id")),
    responses((status = 200, body = WorkerView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<ApiJson<WorkerView>> {
    p.require(Role::Operator)?;
    let w = state.store().get_worker(id).await?;
    let mut view = WorkerView::from(&w);
    if w.paused {
        view = set_paused(&state, &p, id, false).await?;
    }
    if w.state != WorkerState::Online {
        view = set_state(&state, &p, id, WorkerState::Online).await?;
    }
    Ok(ApiJson(view))
}

/// Records the paused flag, tells the heartbeat cache, the event stream and the planner.
async fn set_paused(state: &AppState, p: &Principal, id: Uuid, paused: bool) -> ApiResult<WorkerView> {
    let w = state.store().set_worker_paused(id, paused, now_ms()).await?;
    state.0.liveness.set_paused(id, w.paused);
    state
        .event(
            "worker.paused",
            &id.to_string(),
            json!({"paused": paused, "by": p.name()}),
        )
        .await;
    state.0.wake.notify_one();
    Ok(WorkerView::from(&w))
}

/// Pauses a worker: it keeps running the jobs it holds and gets nothing new (its queued jobs go
/// to other workers) until `/resume`. Kept across restarts of the coordinator and the worker.
#[utoipa::path(post, path = "/api/v1/workers/{id}/pause", tag = "workers",
    params(("id" = Uuid, Path, description = "worker id")),
    responses((status = 200, body = WorkerView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn pause(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<ApiJson<WorkerView>> {
    p.require(Role::Operator)?;
    let w = state.store().get_worker(id).await?;
    if w.paused {
        return Ok(ApiJson(WorkerView::from(&w)));
    }
    Ok(ApiJson(set_paused(&state, &p, id, true).await?))
}

/// Sets which of a rig's devices the planner may use. Jobs on a device turned off are cancelled
/// (the worker is told to stop them) and planned elsewhere.
#[utoipa::path(put, path = "/api/v1/workers/{id}/devices", tag = "workers", request_body = WorkerDevices,
    params(("id" = Uuid, Path, description = "worker id")),
    responses((status = 200, body = WorkerView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_devices(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<WorkerDevices>,
) -> ApiResult<ApiJson<WorkerView>> {
    p.require(Role::Operator)?;
    if req.disabled_gpus.len() > 256 {
        return Err(ApiError::invalid_field("disabled_gpus", "at most 256 entries"));
    }
    let mut gpus = req.disabled_gpus.clone();
    if let Some(k) = gpus.iter().position(|&g| g >= 1024) {
        return Err(ApiError::invalid_field(
            &format!("disabled_gpus[{k}]"),
            "must be below 1024",
        ));
    }
    gpus.sort_unstable();
    gpus.dedup();
    let settings = DeviceSettings {
        cpu_init: req.cpu_init,
        disabled_gpus: gpus,
    };
    let w = state.store().set_worker_devices(id, &settings, now_ms()).await?;
    state
        .event(
            "worker.devices",
            &id.to_string(),
            json!({"cpu_init": settings.cpu_init, "disabled_gpus": settings.disabled_gpus, "by": p.name()}),
        )
        .await;
    state.0.wake.notify_one();
    Ok(ApiJson(WorkerView::live(&w, &state)))
}

/// Removes a worker for good: its credential stops working at once and its jobs are re-planned.
#[utoipa::path(delete, path = "/api/v1/workers/{id}", tag = "workers",
    params(("id" = Uuid, Path, description = "worker id")),
    responses((status = 200, body = WorkerView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<ApiJson<WorkerView>> {
    p.require(Role::Operator)?;
    let w = state.store().get_worker(id).await?;
    if w.state == WorkerState::Removed {
        return Ok(ApiJson(WorkerView::from(&w)));
    }
    let view = set_state(&state, &p, id, WorkerState::Removed).await?;
    // Its jobs go back to the queue now rather than when their leases run out.
    let now = now_ms();
    let held = state
        .store()
        .list_jobs(&JobFilter {
            worker_id: Some(id),
            state: Some(JobState::Leased),
            limit: 100_000,
            ..JobFilter::default()
        })
        .await?;
    for job in held {
        if let Err(e) = state.store().cancel_job(job.id, now).await {
            if !e.is_conflict() {
                return Err(e.into());
            }
        }
    }
    Ok(ApiJson(view))
}

#[utoipa::path(post, path = "/api/v1/workers/join-tokens", tag = "workers", request_body = CreateJoinToken,
    responses((status = 201, body = JoinTokenCreated), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_join_token(
    State(state): State<AppState>,
    p: Principal,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, ApiJson<JoinTokenCreated>)> {
    p.require(Role::Admin)?;
    let req: CreateJoinToken = super::error::optional_json(body)?;
    let ttl_ms = match req.ttl_seconds {
        None => state.0.config.join_token_ttl_ms,
        Some(s) if (1..=30 * 86_400).contains(&s) => s * 1000,
        Some(_) => return Err(ApiError::invalid_field("ttl_seconds", "must be 1 to 2592000")),
    };
    if let Some(n) = &req.name {
        if n.len() > 128 {
            return Err(ApiError::invalid_field("name", "at most 128 characters"));
        }
    }
    let token = format!("sfj_{}", crate::secrets::generate_token().as_str());
    let now = now_ms();
    let row = state
        .store()
        .create_join_token(
            &NewJoinToken {
                token_hash: *blake3::hash(token.as_bytes()).as_bytes(),
                name: req.name,
                role: "worker".into(),
                expires_at: now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX)),
            },
            now,
        )
        .await?;
    state
        .event("join_token.created", &row.id.to_string(), json!({"by": p.name()}))
        .await;
    Ok((
        StatusCode::CREATED,
        ApiJson(JoinTokenCreated {
            id: row.id,
            token,
            expires_at: row.expires_at,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/workers/join-tokens", tag = "workers",
    responses((status = 200, body = [JoinTokenView])),
    security(("bearer" = [])))]
pub async fn list_join_tokens(
    State(state): State<AppState>,
    p: Principal,
) -> ApiResult<ApiJson<Vec<JoinTokenView>>> {
    p.require(Role::Admin)?;
    let all = state.store().list_join_tokens().await?;
    Ok(ApiJson(
        all.into_iter()
            .map(|t| JoinTokenView {
                id: t.id,
                name: t.name,
                expires_at: t.expires_at,
                created_at: t.created_at,
                used_at: t.used_at,
                used_by: t.used_by,
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/workers/join-tokens/{id}", tag = "workers",
    params(("id" = Uuid, Path, description = "join token id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_join_token(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    p.require(Role::Admin)?;
    state.store().delete_join_token(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
