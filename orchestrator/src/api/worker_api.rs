//! The worker-facing routes, `/api/v1/worker/...`: enroll (with a join token), then, with the
//! worker's own credential, heartbeat, lease, progress, complete and fail. Every report about a
//! job carries the fencing token of its lease; a stale one changes nothing (409 `stale_lease`).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use uuid::Uuid;

use protocol::{
    Capabilities, CompleteRequest, EnrollRequest, EnrollResponse, FailRequest, HeartbeatRequest,
    HeartbeatResponse, IdentityParams, JobSpec, LeaseRequest, LeaseResponse, LeasedJob, ProgressRequest,
    ProgressResponse, RangeDone, StreamAuthorization, StreamAuthorizeRequest,
};

use super::auth::Principal;
use super::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use super::state::{now_ms, AppState, WORKER_CREDENTIAL_PREFIX};
use crate::metrics::{DeviceLabels, WorkerLabel};
use crate::store::{
    Identity, Job, JobFailure, JobFilter, JobKind, JobState, NewWorker, RangeOutcome, RangeReport,
    WorkerState,
};

/// A prove job leased before its pass's k2pow is done goes back to the queue for this long.
pub const PROVE_WAIT_MS: i64 = 2_000;

/// Most ranges one report may carry.
pub const MAX_RANGES_PER_REPORT: usize = 4096;

fn worker_id(p: &Principal) -> ApiResult<Uuid> {
    let id = p.worker()?;
    Uuid::parse_str(id).map_err(ApiError::internal)
}

fn validated(caps: &Capabilities) -> ApiResult<serde_json::Value> {
    caps.validate()
        .map_err(|e| ApiError::invalid_field(&e.field, e.why))?;
    serde_json::to_value(caps).map_err(ApiError::internal)
}

fn observe_capabilities(state: &AppState, worker: Uuid, caps: &Capabilities) {
    let m = state.metrics();
    let w = worker.to_string();
    for g in &caps.gpus {
        m.device_labels_per_second
            .get_or_create(&DeviceLabels {
                worker: w.clone(),
                device: format!("gpu{}", g.index),
            })
            .set(g.labels_per_s);
    }
    if caps.cpu.labels_per_s > 0.0 {
        m.device_labels_per_second
            .get_or_create(&DeviceLabels {
                worker: w,
                device: "cpu".into(),
            })
            .set(caps.cpu.labels_per_s);
    }
}

#[utoipa::path(post, path = "/api/v1/worker/enroll", tag = "worker", request_body = EnrollRequest,
    responses((status = 201, body = EnrollResponse), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn enroll(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> ApiResult<(StatusCode, ApiJson<EnrollResponse>)> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::invalid_field("name", "must be 1 to 128 characters"));
    }
    let caps = validated(&req.capabilities)?;
    let credential = format!(
        "{WORKER_CREDENTIAL_PREFIX}{}",
        crate::secrets::generate_token().as_str()
    );
    let join_hash = *blake3::hash(req.join_token.as_bytes()).as_bytes();
    let new = NewWorker {
        name: name.to_owned(),
        credential_hash: *blake3::hash(credential.as_bytes()).as_bytes(),
        capabilities: caps,
    };
    let (_, worker) = state.store().enroll_worker(&join_hash, &new, now_ms()).await?;
    observe_capabilities(&state, worker.id, &req.capabilities);
    state
        .event(
            "worker.enrolled",
            &worker.id.to_string(),
            json!({"name": worker.name}),
        )
        .await;
    state.0.wake.notify_one();
    Ok((
        StatusCode::CREATED,
        ApiJson(EnrollResponse {
            worker_id: worker.id,
            credential,
        }),
    ))
}

#[utoipa::path(post, path = "/api/v1/worker/heartbeat", tag = "worker", request_body = HeartbeatRequest,
    responses((status = 200, body = HeartbeatResponse), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn heartbeat(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> ApiResult<ApiJson<HeartbeatResponse>> {
    let id = worker_id(&p)?;
    if req.jobs.len() > 10_000 {
        return Err(ApiError::invalid_field("jobs", "at most 10000 entries"));
    }
    let caps = req.capabilities.as_ref().map(validated).transpose()?;
    let now = now_ms();
    let live = &state.0.liveness;
    let (known, mut paused) = match (live.state(id), live.paused(id)) {
        (Some(s), Some(p)) => (s, p),
        _ => {
            let w = state.store().get_worker(id).await?;
            live.set_state(id, w.state);
            live.set_paused(id, w.paused);
            (w.state, w.paused)
        }
    };
    // The common case costs no database write: the time (and new capabilities) are written with
    // the next batch, before the next reconcile pass reads them (see `crate::liveness`). A worker
    // coming back from offline is written now.
    let current = if matches!(known, WorkerState::Online | WorkerState::Draining) {
        match caps {
            Some(c) => live.beat_with_capabilities(id, now, c),
            None => live.beat(id, now),
        }
        known
    } else {
        let w = state.store().heartbeat(id, now, caps.as_ref()).await?;
        live.set_state(id, w.state);
        live.set_paused(id, w.paused);
        paused = w.paused;
        w.state
    };
    state
        .metrics()
        .worker_heartbeat
        .get_or_create(&WorkerLabel {
            worker: id.to_string(),
        })
        .set(now as f64 / 1000.0);
    let mut wake = false;
    if known == WorkerState::Offline && current != WorkerState::Offline {
        state
            .event(
                "worker.state",
                &id.to_string(),
                json!({"state": current.as_str()}),
            )
            .await;
        wake = true;
    }
    if let Some(c) = &req.capabilities {
        observe_capabilities(&state, id, c);
        // Free space and telemetry change on every report; only a change of the devices
        // themselves is worth planning again now (the loop's own interval covers the rest).
        wake |= live.shape_changed(id, device_shape(c));
    }
    if wake {
        state.0.wake.notify_one();
    }
    let mut stop = Vec::new();
    if !req.jobs.is_empty() {
        let held: BTreeSet<Uuid> = state
            .store()
            .list_jobs(&JobFilter {
                worker_id: Some(id),
                state: Some(JobState::Leased),
                limit: 100_000,
                ..JobFilter::default()
            })
            .await?
            .into_iter()
            .map(|j| j.id)
            .collect();
        stop = req.jobs.iter().filter(|j| !held.contains(j)).copied().collect();
    }
    Ok(ApiJson(HeartbeatResponse {
        state: current.as_str().to_owned(),
        drain: current == WorkerState::Draining,
        stop,
        heartbeat_interval_ms: state.0.config.heartbeat_interval_ms,
        paused,
    }))
}

/// A fingerprint of what of a rig the plan depends on beyond free space: which devices exist and
/// may work.
fn device_shape(c: &Capabilities) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for g in &c.gpus {
        (g.index, g.enabled).hash(&mut h);
    }
    0xff_u8.hash(&mut h);
    for d in &c.disks {
        d.id.hash(&mut h);
    }
    (c.cpu.init_enabled, c.paused).hash(&mut h);
    h.finish()
}

fn identity_params(i: &Identity) -> IdentityParams {
    IdentityParams {
        identity_id: i.id,
        node_id: hex::encode(i.node_id),
        commitment_atx_id: i.commitment_atx_id.map(hex::encode),
        num_units: i.num_units,
        labels_per_unit: i.labels_per_unit,
        max_file_size: i.max_file_size,
        scrypt_n: i.scrypt_n,
    }
}

#[utoipa::path(post, path = "/api/v1/worker/lease", tag = "worker", request_body = LeaseRequest,
    responses((status = 200, body = LeaseResponse), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn lease(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<LeaseRequest>,
) -> ApiResult<ApiJson<LeaseResponse>> {
    let id = worker_id(&p)?;
    let kinds = req
        .kinds
        .iter()
        .enumerate()
        .map(|(k, s)| {
            s.parse::<JobKind>()
                .map_err(|e| ApiError::invalid_field(&format!("kinds[{k}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let max = req.max_jobs.unwrap_or(1);
    if !(1..=64).contains(&max) {
        return Err(ApiError::invalid_field("max_jobs", "must be 1 to 64"));
    }
    let lease_ms = state.0.config.lease_ms;
    let now = now_ms();
    let leases = state
        .store()
        .lease_jobs(id, &kinds, now, i64::try_from(lease_ms).unwrap_or(i64::MAX), max)
        .await?;
    let mut identities: BTreeMap<Uuid, IdentityParams> = BTreeMap::new();
    let mut jobs = Vec::with_capacity(leases.len());
    for l in leases {
        let job = l.job;
        let spec: JobSpec = match serde_json::from_value(job.payload.clone()) {
            Ok(s) => s,
            Err(e) => {
                // A payload this coordinator cannot read is a bug, not the worker's fault: fail the
                // job for good so that a person looks at it, and hand out the others.
                tracing::error!(job_id = %job.id, error = %e, "job payload does not parse");
                let f = JobFailure {
                    error: format!("coordinator: unreadable job payload: {e}"),
                    retryable: false,
                    retry_at: None,
                };
                let _ = state.store().fail_job(job.id, id, l.fencing_token, &f, now).await;
                continue;
            }
        };
        let mut pows = Vec::new();
        if let protocol::JobKind::Prove {
            first_nonce, nonces, ..
        } = &spec.work
        {
            let groups = super::proving::pass_groups(*first_nonce, *nonces);
            let found = match spec.challenge.as_deref() {
                Some(c) => super::proving::pass_pows(&state, job.identity_id, c, groups).await?,
                None => None,
            };
            match found {
                Some(p) => pows = p,
                None => {
                    // The pass's k2pow is not all done: hand the job back until it is.
                    let not_before = now.saturating_add(PROVE_WAIT_MS);
                    if let Err(e) = state
                        .store()
                        .return_lease(job.id, id, l.fencing_token, not_before, now)
                        .await
                    {
                        tracing::warn!(job_id = %job.id, error = %e, "could not hand back a prove job without its pows");
                    }
                    continue;
                }
            }
        }
        let proof = matches!(
            spec.work,
            protocol::JobKind::K2pow { .. }
                | protocol::JobKind::Prove { .. }
                | protocol::JobKind::Verify { .. }
        )
        .then(|| super::proving::proof_params(&state.0.config.proof));
        let stream = match stream_grant(&state, id, &spec, &job, l.fencing_token, now).await? {
            Ok(g) => g,
            Err(why) => {
                // The target disk's worker takes no streamed labels (any more: it restarted
                // without a stream endpoint, or is gone). Handing the job back would have it
                // leased again and again; it is cancelled, and the planner gives its range to a
                // device that can write there (it plans remote init only onto stream endpoints).
                tracing::warn!(job_id = %job.id, why, "init job for another worker's disk cannot be streamed; cancelled");
                match state.store().cancel_job(job.id, now).await {
                    Ok(_) => {
                        state
                            .event(
                                "job.cancelled",
                                &job.id.to_string(),
                                json!({"identity_id": job.identity_id, "worker_id": id, "kind": job.kind.as_str(),
                                       "reason": {"reason": "storage_unavailable", "detail": why}}),
                            )
                            .await;
                        state.0.wake.notify_one();
                    }
                    Err(e) => {
                        tracing::warn!(job_id = %job.id, error = %e, "could not cancel an init job without a stream")
                    }
                }
                continue;
            }
        };
        let ident = match identities.get(&job.identity_id) {
            Some(i) => i.clone(),
            None => {
                let i = identity_params(&state.store().get_identity(job.identity_id).await?);
                identities.insert(job.identity_id, i.clone());
                i
            }
        };
        jobs.push(LeasedJob {
            job_id: job.id,
            kind: job.kind.as_str().to_owned(),
            fencing_token: l.fencing_token,
            lease_expires_at: job.lease_expires_at.unwrap_or(now),
            attempt: job.attempts,
            identity: ident,
            spec,
            progress: job.progress.clone(),
            pows,
            proof,
            stream,
        });
    }
    Ok(ApiJson(LeaseResponse { jobs, lease_ms }))
}

/// An init job whose target disk is on another worker gets a stream grant: that worker's stream
/// URL and a fresh token valid for this lease only (the store keeps its hash). `Ok(None)` for
/// every other job; `Ok(Err(why))` when the target worker takes no streamed labels.
async fn stream_grant(
    state: &AppState,
    worker: Uuid,
    spec: &JobSpec,
    job: &Job,
    fencing_token: i64,
    now: i64,
) -> ApiResult<Result<Option<protocol::StreamGrant>, &'static str>> {
    let (protocol::JobKind::Init { .. }, Some(target)) = (&spec.work, &spec.target) else {
        return Ok(Ok(None));
    };
    if target.worker_id == worker.to_string() {
        return Ok(Ok(None));
    }
    let Ok(target_id) = Uuid::parse_str(&target.worker_id) else {
        return Ok(Err("the target worker id is not a UUID"));
    };
    let target_worker = match state.store().get_worker(target_id).await {
        Ok(w) => w,
        Err(e) if e.kind() == crate::store::StoreErrorKind::NotFound => {
            return Ok(Err("the target worker is gone"))
        }
        Err(e) => return Err(e.into()),
    };
    let url = serde_json::from_value::<Capabilities>(target_worker.capabilities)
        .ok()
        .and_then(|c| c.stream_url);
    let Some(url) = url else {
        return Ok(Err("the target worker has no stream endpoint"));
    };
    let token = crate::secrets::generate_token();
    let record = crate::store::StreamGrantRecord {
        job_id: job.id,
        fencing_token,
        compute_worker_id: worker,
        target_worker_id: target_id,
        created_at: now,
    };
    state
        .store()
        .put_stream_grant(&record, blake3::hash(token.as_bytes()).as_bytes())
        .await?;
    Ok(Ok(Some(protocol::StreamGrant {
        url,
        token: token.as_str().to_owned(),
    })))
}

/// How long a storage worker may rely on an authorization before it asks again.
pub const STREAM_AUTHORIZATION_MS: u64 = 10_000;

#[utoipa::path(post, path = "/api/v1/worker/stream/authorize", tag = "worker",
    request_body = StreamAuthorizeRequest,
    responses((status = 200, body = StreamAuthorization), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
/// A storage worker asks what a stream token a compute worker showed it allows: the labels of one
/// init lease whose target disk is the asking worker's, while that lease holds. An unknown token,
/// or one for another worker's disk, is 403 `stream_token_invalid`; the token of a lease that no
/// longer holds (expired, reassigned, completed) is 409 `stale_lease`.
pub async fn stream_authorize(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<StreamAuthorizeRequest>,
) -> ApiResult<ApiJson<StreamAuthorization>> {
    let asking = worker_id(&p)?;
    let invalid = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "stream_token_invalid",
            "this stream token authorizes nothing on this worker",
        )
    };
    if req.token.is_empty() || req.token.len() > 256 {
        return Err(invalid());
    }
    let hash = blake3::hash(req.token.as_bytes());
    let Some(grant) = state.store().find_stream_grant(hash.as_bytes()).await? else {
        return Err(invalid());
    };
    if grant.target_worker_id != asking {
        return Err(invalid());
    }
    let job = state.store().get_job(grant.job_id).await?;
    let holds = job.state == JobState::Leased
        && job.worker_id == Some(grant.compute_worker_id)
        && job.fencing_token == grant.fencing_token;
    if !holds {
        return Err(ApiError::conflict(
            "stale_lease",
            "the lease this stream token was granted with no longer holds",
        ));
    }
    let spec: JobSpec = serde_json::from_value(job.payload.clone()).map_err(ApiError::internal)?;
    let (protocol::JobKind::Init { file_index, range }, Some(target)) = (spec.work, spec.target) else {
        return Err(invalid());
    };
    if target.worker_id != asking.to_string() {
        return Err(invalid());
    }
    let identity = identity_params(&state.store().get_identity(job.identity_id).await?);
    Ok(ApiJson(StreamAuthorization {
        job_id: job.id,
        fencing_token: grant.fencing_token,
        compute_worker_id: grant.compute_worker_id,
        identity,
        file_index,
        range,
        disk_id: target.disk_id,
        valid_for_ms: STREAM_AUTHORIZATION_MS,
    }))
}

/// Records init ranges under the lease; returns how many were new.
async fn record_ranges(
    state: &AppState,
    job: &Job,
    worker: Uuid,
    fencing_token: i64,
    ranges: &[RangeDone],
) -> ApiResult<u32> {
    if ranges.is_empty() {
        return Ok(0);
    }
    if ranges.len() > MAX_RANGES_PER_REPORT {
        return Err(ApiError::invalid_field(
            "ranges",
            format!("at most {MAX_RANGES_PER_REPORT} per report"),
        ));
    }
    if job.kind != JobKind::Init && job.kind != JobKind::Verify {
        return Err(ApiError::invalid_field(
            "ranges",
            format!("a {} job reports no label ranges", job.kind),
        ));
    }
    let now = now_ms();
    let mut new = 0u32;
    for (k, r) in ranges.iter().enumerate() {
        if r.end_label <= r.start_label {
            return Err(ApiError::invalid_field(
                &format!("ranges[{k}]"),
                "end_label must be above start_label",
            ));
        }
        let report = RangeReport {
            identity_id: job.identity_id,
            file_index: r.file_index,
            start_label: r.start_label,
            end_label: r.end_label,
            job_id: job.id,
            worker_id: worker,
            fencing_token,
        };
        match state.store().record_range_done(&report, now).await {
            Ok(RangeOutcome::Recorded) => {
                new += 1;
                state.metrics().labels_written.inc_by(r.end_label - r.start_label);
            }
            Ok(RangeOutcome::AlreadyRecorded) => {}
            Err(crate::store::StoreError::Invalid { reason, .. }) => {
                return Err(ApiError::invalid_field(&format!("ranges[{k}]"), reason))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(new)
}

#[utoipa::path(post, path = "/api/v1/worker/jobs/{id}/progress", tag = "worker", request_body = ProgressRequest,
    params(("id" = Uuid, Path, description = "job id")),
    responses((status = 200, body = ProgressResponse), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn progress(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(job_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<ProgressRequest>,
) -> ApiResult<ApiJson<ProgressResponse>> {
    let worker = worker_id(&p)?;
    if !req.rate_per_s.is_finite() || req.rate_per_s < 0.0 {
        return Err(ApiError::invalid_field(
            "rate_per_s",
            "must be a finite number >= 0",
        ));
    }
    let job = state.store().get_job(job_id).await?;
    let recorded = record_ranges(&state, &job, worker, req.fencing_token, &req.ranges).await?;
    let now = now_ms();
    // The start of this lease's run: kept across its reports, reset when a new lease (a new
    // fencing token) takes the job over, so that the planner measures the current holder's speed.
    let same_lease = job
        .progress
        .as_ref()
        .and_then(|p| p.get("fencing_token"))
        .and_then(serde_json::Value::as_i64)
        == Some(req.fencing_token);
    let started_at = job
        .progress
        .as_ref()
        .filter(|_| same_lease)
        .and_then(|p| p.get("started_at"))
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(now);
    let progress = json!({
        "done": req.done,
        "rate_per_s": req.rate_per_s,
        "started_at": started_at,
        "fencing_token": req.fencing_token,
        "checkpoint": req.checkpoint,
    });
    let lease_ms = i64::try_from(state.0.config.lease_ms).unwrap_or(i64::MAX);
    let job = state
        .store()
        .renew_lease(job_id, worker, req.fencing_token, Some(&progress), now, lease_ms)
        .await?;
    // The range as it is now: a truncation rewrote the payload's end.
    let end_label = serde_json::from_value::<JobSpec>(job.payload.clone())
        .ok()
        .and_then(|spec| match spec.work {
            protocol::JobKind::Init { range, .. } => Some(range.end),
            _ => None,
        });
    Ok(ApiJson(ProgressResponse {
        lease_expires_at: job.lease_expires_at.unwrap_or(now),
        ranges_recorded: recorded,
        end_label,
    }))
}

#[utoipa::path(post, path = "/api/v1/worker/jobs/{id}/complete", tag = "worker", request_body = CompleteRequest,
    params(("id" = Uuid, Path, description = "job id")),
    responses((status = 200, body = crate::api::jobs::JobView), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn complete(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(job_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> ApiResult<ApiJson<crate::api::jobs::JobView>> {
    let worker = worker_id(&p)?;
    let job = state.store().get_job(job_id).await?;
    let holds = job.state == JobState::Leased
        && job.worker_id == Some(worker)
        && job.fencing_token == req.fencing_token;
    // Results are checked under the lease only: a stale report gets its 409 from the store.
    let mut after = After::Nothing;
    if holds && matches!(job.kind, JobKind::K2pow | JobKind::Prove | JobKind::Verify) {
        let spec: JobSpec = serde_json::from_value(job.payload.clone()).map_err(ApiError::internal)?;
        match spec.work {
            protocol::JobKind::K2pow { groups } => {
                super::proving::check_k2pow_result(req.result.as_ref(), groups)?;
            }
            protocol::JobKind::Verify { range, .. } => {
                let r = super::proving::check_verify_result(req.result.as_ref(), range)?;
                if !r.bad_ranges.is_empty() {
                    after = After::Repair { ranges: r.bad_ranges };
                }
            }
            protocol::JobKind::Prove {
                first_nonce, nonces, ..
            } => {
                let challenge = spec
                    .challenge
                    .as_deref()
                    .and_then(crate::store::parse_challenge)
                    .ok_or_else(|| ApiError::internal("prove job without a valid challenge"))?;
                let identity = state.store().get_identity(job.identity_id).await?;
                match super::proving::check_prove_result(
                    req.result.as_ref(),
                    &identity,
                    &challenge,
                    first_nonce,
                    nonces,
                )? {
                    super::proving::ProveOutcome::Found { proof, data } => {
                        match super::proving::verify_found(&state, &identity, challenge, &proof).await? {
                            Ok(()) => {
                                after = After::Proof {
                                    identity: Box::new(identity),
                                    challenge,
                                    data,
                                }
                            }
                            Err(reason) => {
                                return reject_proof(&state, &job, worker, req.fencing_token, &reason).await
                            }
                        }
                    }
                    super::proving::ProveOutcome::Empty { next_nonce } => {
                        after = After::NextPass {
                            challenge,
                            next_nonce,
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if holds && job.kind == JobKind::Init {
        if let Some((index, label32)) = check_vrf_candidate(&state, &job, req.result.as_ref()).await? {
            let kept = state
                .store()
                .offer_vrf_candidate(job.identity_id, index, &label32, now_ms())
                .await?;
            if kept {
                tracing::debug!(identity = %job.identity_id, index, "new best VRF nonce");
            }
        }
    }
    record_ranges(&state, &job, worker, req.fencing_token, &req.ranges).await?;
    let now = now_ms();
    let result = req.result.unwrap_or(serde_json::Value::Null);
    let done = state
        .store()
        .complete_job(job_id, worker, req.fencing_token, &result, now)
        .await?;
    if done.kind == JobKind::Prove {
        if let Some(started) = job
            .progress
            .as_ref()
            .and_then(|p| p.get("started_at"))
            .and_then(serde_json::Value::as_i64)
        {
            state
                .metrics()
                .proof_duration
                .observe((now - started).max(0) as f64 / 1000.0);
        }
    }
    state
        .event(
            "job.done",
            &job_id.to_string(),
            json!({"kind": done.kind.as_str(), "identity_id": done.identity_id, "worker_id": worker}),
        )
        .await;
    match after {
        After::Nothing => {}
        After::Proof {
            identity,
            challenge,
            data,
        } => super::proving::accept_proof(&state, &identity, challenge, &data, job_id).await?,
        After::NextPass {
            challenge,
            next_nonce,
        } => super::proving::advance_pass(&state, done.identity_id, challenge, next_nonce).await?,
        After::Repair { ranges } => {
            let cut: Vec<(u64, u64)> = ranges.iter().map(|r| (r.start, r.end)).collect();
            let forgotten = state
                .store()
                .remove_label_ranges(done.identity_id, &cut, now_ms())
                .await?;
            for r in &ranges {
                state
                    .event(
                        "verify.bad_range",
                        &done.identity_id.to_string(),
                        json!({"job_id": job_id, "start": r.start, "end": r.end}),
                    )
                    .await;
            }
            tracing::warn!(identity = %done.identity_id, %job_id, forgotten, "verify found bad labels; they will be initialized again");
            // A ready identity is initialized again (the planner computes missing labels only
            // while an identity initializes); the lifecycle makes it ready when they are back.
            if forgotten > 0 {
                match state
                    .store()
                    .update_identity_state(
                        done.identity_id,
                        crate::store::IdentityState::Initializing,
                        Some(crate::store::IdentityState::Ready),
                        now_ms(),
                    )
                    .await
                {
                    Ok(_) => {
                        state
                            .event(
                                "identity.state",
                                &done.identity_id.to_string(),
                                json!({"from": "ready", "to": "initializing", "reason": "verify found bad labels"}),
                            )
                            .await;
                    }
                    Err(crate::store::StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    state.0.wake.notify_one();
    Ok(ApiJson(crate::api::jobs::JobView::from(&done)))
}

/// What a completed job leads to once it is recorded done.
enum After {
    Nothing,
    /// A verified proof to store.
    Proof {
        identity: Box<Identity>,
        challenge: [u8; 32],
        data: protocol::ProofData,
    },
    /// A pass that found nothing: the next one starts at `next_nonce`.
    NextPass {
        challenge: [u8; 32],
        next_nonce: u32,
    },
    /// Labels a verify job found bad: forget them so that they are initialized again.
    Repair {
        ranges: Vec<protocol::LabelRange>,
    },
}

/// Fails a prove job whose proof the verifier rejected, for good (the same pass over the same
/// data gives the same proof); the request stays pending, so the planner runs another pass.
async fn reject_proof(
    state: &AppState,
    job: &Job,
    worker: Uuid,
    fencing_token: i64,
    reason: &str,
) -> ApiResult<ApiJson<crate::api::jobs::JobView>> {
    let now = now_ms();
    let failure = JobFailure {
        error: format!("proof rejected by the coordinator: {reason}"),
        retryable: false,
        retry_at: None,
    };
    let failed = state
        .store()
        .fail_job(job.id, worker, fencing_token, &failure, now)
        .await?;
    state.metrics().proofs_failed.inc();
    tracing::warn!(job_id = %job.id, identity = %job.identity_id, reason, "proof rejected");
    state
        .event(
            "proof.rejected",
            &job.identity_id.to_string(),
            json!({"job_id": job.id, "worker_id": worker, "reason": reason}),
        )
        .await;
    state.0.wake.notify_one();
    Ok(ApiJson(crate::api::jobs::JobView::from(&failed)))
}

#[utoipa::path(post, path = "/api/v1/worker/jobs/{id}/fail", tag = "worker", request_body = FailRequest,
    params(("id" = Uuid, Path, description = "job id")),
    responses((status = 200, body = crate::api::jobs::JobView), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn fail(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(job_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<FailRequest>,
) -> ApiResult<ApiJson<crate::api::jobs::JobView>> {
    let worker = worker_id(&p)?;
    if req.error.len() > 4096 {
        return Err(ApiError::invalid_field("error", "at most 4096 bytes"));
    }
    let now = now_ms();
    let retry_at = req
        .retry_after_ms
        .map(|ms| now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)));
    let failure = JobFailure {
        error: req.error,
        retryable: req.retryable,
        retry_at,
    };
    let disk_full = req.disk_full.clone();
    if let Some(d) = &disk_full {
        if d.disk_id.is_empty() || d.disk_id.len() > 256 {
            return Err(ApiError::invalid_field("disk_full.disk_id", "1 to 256 bytes"));
        }
    }
    let job = state
        .store()
        .fail_job(job_id, worker, req.fencing_token, &failure, now)
        .await?;
    if job.kind == JobKind::Prove && job.state == JobState::Failed {
        state.metrics().proofs_failed.inc();
    }
    // A full disk: only an init job's own target disk, as the job's lease proved it ours. The disk
    // is the target's worker's: the reporting one, or the storage worker a compute-only worker
    // streamed to.
    let target_worker = job.payload["target"]["worker_id"]
        .as_str()
        .and_then(|w| Uuid::parse_str(w).ok())
        .unwrap_or(worker);
    if let Some(d) = disk_full.filter(|d| {
        job.kind == JobKind::Init && job.payload["target"]["disk_id"].as_str() == Some(d.disk_id.as_str())
    }) {
        let worker = target_worker;
        let moved = state
            .store()
            .record_disk_full(worker, &d.disk_id, d.free_bytes, now)
            .await?;
        tracing::warn!(
            worker_id = %worker, disk_id = %d.disk_id, free_bytes = d.free_bytes,
            needed_bytes = d.needed_bytes, files_moved = moved.files_moved.len(),
            labels_forgotten = moved.labels_forgotten, "a worker's disk is full; its unfinished files move"
        );
        state
            .event(
                "disk.full",
                &worker.to_string(),
                json!({"worker_id": worker, "disk_id": d.disk_id, "free_bytes": d.free_bytes,
                       "needed_bytes": d.needed_bytes, "job_id": job_id,
                       "files_moved": moved.files_moved.iter()
                           .map(|(i, k)| json!({"identity_id": i, "file_index": k}))
                           .collect::<Vec<_>>(),
                       "labels_forgotten": moved.labels_forgotten}),
            )
            .await;
    }
    state
        .event(
            "job.failed",
            &job_id.to_string(),
            json!({"kind": job.kind.as_str(), "state": job.state.as_str(), "worker_id": worker,
                   "error": job.error}),
        )
        .await;
    state.0.wake.notify_one();
    Ok(ApiJson(crate::api::jobs::JobView::from(&job)))
}

/// The VRF candidate an init job's result names (`"vrf_nonce": {"index", "label32"}`), checked:
/// the index lies in the job's range, the label is the identity's label at that index (computed
/// here), and it is below the VRF threshold. `None` when the result names none. A worker that
/// reports a wrong one gets a 422 naming `result.vrf_nonce`, and the job stays leased.
async fn check_vrf_candidate(
    state: &AppState,
    job: &Job,
    result: Option<&serde_json::Value>,
) -> ApiResult<Option<(u64, [u8; 32])>> {
    let Some(c) = result.and_then(|r| r.get("vrf_nonce")).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let field = "result.vrf_nonce";
    let index = c
        .get("index")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| ApiError::invalid_field(field, "index must be a label index"))?;
    let label32: [u8; 32] = c
        .get("label32")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| hex::decode(s).ok())
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| ApiError::invalid_field(field, "label32 must be 64 hex digits"))?;
    let spec: JobSpec = serde_json::from_value(job.payload.clone()).map_err(ApiError::internal)?;
    let protocol::JobKind::Init { range, .. } = spec.work else {
        return Ok(None);
    };
    if index < range.start || index >= range.end {
        return Err(ApiError::invalid_field(
            field,
            format!(
                "index {index} is outside the job's range [{}, {})",
                range.start, range.end
            ),
        ));
    }
    let identity = state.store().get_identity(job.identity_id).await?;
    let Some(commitment_atx) = identity.commitment_atx_id else {
        return Err(ApiError::internal(
            "an init job of an identity without a commitment ATX",
        ));
    };
    let num_labels = u64::from(identity.num_units).saturating_mul(identity.labels_per_unit);
    let n = identity.scrypt_n as usize;
    let node_id = identity.node_id;
    let (actual, threshold) = tokio::task::spawn_blocking(move || {
        let commitment = post::scrypt::commitment(&node_id, &commitment_atx);
        (
            post::scrypt::label32(&commitment, index, n),
            post::difficulty::vrf_difficulty(num_labels),
        )
    })
    .await
    .map_err(ApiError::internal)?;
    let threshold = threshold.map_err(ApiError::internal)?;
    if actual != label32 {
        return Err(ApiError::invalid_field(
            field,
            format!("label32 is not the identity's label {index}"),
        ));
    }
    if label32 >= threshold {
        return Err(ApiError::invalid_field(
            field,
            format!("label {index} is not below the VRF threshold"),
        ));
    }
    Ok(Some((index, label32)))
}
