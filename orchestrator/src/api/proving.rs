//! The proof pipeline's coordinator side: challenges in (`POST /api/v1/identities/{id}/challenge`),
//! proofs out (`GET /api/v1/identities/{id}/proofs`), and what the worker routes need to lease
//! k2pow and prove jobs (the proof parameters, the pows of a pass) and to accept their results
//! (a k2pow result covers its groups; a proof is verified with post's verifier against the
//! identity's own data before it is stored).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use post::proof::{InitConfig, Proof, ProofConfig, ProofMetadata};
use post::verify::{Mode, VerifyOptions};
use protocol::{GroupPow, GroupRange, JobSpec, K2powResult, ProofData, ProofParams, ProveResult};

use super::auth::{Principal, Role};
use super::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use super::state::{now_ms, AppState};
use crate::store::{
    Identity, IdentityState, JobFilter, JobKind, JobState, NewProvingRequest, ProvingRequest, StoredProof,
};

/// Default time to prove a challenge given without a deadline: 12 hours.
pub const DEFAULT_DEADLINE_MS: i64 = 12 * 3_600_000;

/// The wire form of the coordinator's proof parameters.
pub fn proof_params(cfg: &ProofConfig) -> ProofParams {
    ProofParams {
        k1: cfg.k1,
        k2: cfg.k2,
        pow_difficulty: hex::encode(cfg.pow_difficulty),
    }
}

/// Expected RandomX hashes to find one nonce group's k2pow for one space unit under `cfg`:
/// `2^256 / pow_difficulty` (the difficulty is divided by the identity's units, so an identity
/// of `u` units needs `u` times as many). Mainnet: about 4690; the scheduler plans k2pow with it.
pub fn k2pow_hashes_per_unit_group(cfg: &ProofConfig) -> f64 {
    let d = cfg
        .pow_difficulty
        .iter()
        .fold(0.0f64, |acc, &b| acc * 256.0 + f64::from(b));
    if d <= 0.0 {
        return f64::MAX;
    }
    (2.0f64.powi(256) / d).max(1.0)
}

/// The proof parameters `p` describes; the error names the bad field.
pub fn proof_config(p: &ProofParams) -> Result<ProofConfig, protocol::FieldError> {
    let pow_difficulty = p.validate()?;
    Ok(ProofConfig {
        k1: p.k1,
        k2: p.k2,
        pow_difficulty,
    })
}

/// `POST /api/v1/identities/{id}/challenge`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// 64 hex digits: the PoET challenge to prove.
    pub challenge: String,
    /// The epoch the proof is published in; one challenge per identity and epoch.
    pub publish_epoch: u32,
    /// Unix ms the proof must be done by (default: now + 12 h).
    #[serde(default)]
    pub deadline_ms: Option<i64>,
}

/// A proving request as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProvingRequestView {
    pub identity_id: Uuid,
    pub publish_epoch: u32,
    /// 64 hex digits.
    pub challenge: String,
    pub known_at: i64,
    pub deadline: i64,
    /// First nonce of the next proving pass.
    pub first_nonce: u32,
    /// `pending`, `proved` or `failed`.
    pub state: String,
    /// Why it failed (for example its deadline passed without a verified proof).
    pub failure: Option<String>,
}

impl From<&ProvingRequest> for ProvingRequestView {
    fn from(r: &ProvingRequest) -> Self {
        ProvingRequestView {
            identity_id: r.identity_id,
            publish_epoch: r.publish_epoch,
            challenge: hex::encode(r.challenge),
            known_at: r.known_at,
            deadline: r.deadline,
            first_nonce: r.first_nonce,
            state: r.state.as_str().to_owned(),
            failure: r.failure.clone(),
        }
    }
}

/// A verified proof: post's `Proof` and what it answers. Nothing secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProofView {
    pub identity_id: Uuid,
    pub publish_epoch: u32,
    /// 64 hex digits.
    pub challenge: String,
    pub proof: ProofData,
    /// The prove job that found it.
    pub job_id: Uuid,
    pub verified_at: i64,
}

impl TryFrom<&StoredProof> for ProofView {
    type Error = ApiError;

    fn try_from(p: &StoredProof) -> Result<Self, ApiError> {
        Ok(ProofView {
            identity_id: p.identity_id,
            publish_epoch: p.publish_epoch,
            challenge: hex::encode(p.challenge),
            proof: serde_json::from_value(p.proof.clone()).map_err(ApiError::internal)?,
            job_id: p.job_id,
            verified_at: p.verified_at,
        })
    }
}

fn parse_hex32(field: &str, s: &str) -> ApiResult<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| ApiError::invalid_field(field, "must be 64 hex digits"))?;
    Ok(out)
}

#[utoipa::path(post, path = "/api/v1/identities/{id}/challenge", tag = "identities",
    request_body = ChallengeRequest,
    params(("id" = Uuid, Path, description = "identity id")),
    responses((status = 201, body = ProvingRequestView, description = "recorded"),
        (status = 200, body = ProvingRequestView, description = "already recorded"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn challenge(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> ApiResult<(StatusCode, ApiJson<ProvingRequestView>)> {
    p.require(Role::Operator)?;
    let challenge = parse_hex32("challenge", &req.challenge)?;
    let now = now_ms();
    let deadline = match req.deadline_ms {
        Some(d) if d <= now => return Err(ApiError::invalid_field("deadline_ms", "must be in the future")),
        Some(d) => d,
        None => now.saturating_add(DEFAULT_DEADLINE_MS),
    };
    let identity = state.store().get_identity(id).await?;
    if !identity.state.is_initialized() || identity.commitment_atx_id.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "identity_not_ready",
            format!(
                "identity {id} is {}{}: its data must be initialized before it can prove",
                identity.state,
                if identity.commitment_atx_id.is_none() {
                    " without a commitment ATX"
                } else {
                    ""
                }
            ),
        ));
    }
    let new = NewProvingRequest {
        identity_id: id,
        publish_epoch: req.publish_epoch,
        challenge,
        known_at: now,
        deadline,
    };
    let (r, created) = state.store().create_proving_request(&new, now).await?;
    if created {
        state
            .event(
                "proving.requested",
                &id.to_string(),
                json!({"publish_epoch": r.publish_epoch, "challenge": hex::encode(r.challenge),
                       "deadline": r.deadline}),
            )
            .await;
        state.0.wake.notify_one();
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(ProvingRequestView::from(&r))))
}

#[utoipa::path(get, path = "/api/v1/identities/{id}/proofs", tag = "identities",
    params(("id" = Uuid, Path, description = "identity id")),
    responses((status = 200, body = [ProofView]), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn proofs(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<ApiJson<Vec<ProofView>>> {
    p.require(Role::Viewer)?;
    state.store().get_identity(id).await?;
    let stored = state.store().list_proofs(id).await?;
    Ok(ApiJson(
        stored
            .iter()
            .map(ProofView::try_from)
            .collect::<ApiResult<Vec<_>>>()?,
    ))
}

#[utoipa::path(get, path = "/api/v1/identities/{id}/proving-requests", tag = "identities",
    params(("id" = Uuid, Path, description = "identity id")),
    responses((status = 200, body = [ProvingRequestView], description = "newest epoch first"),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn proving_requests(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<ApiJson<Vec<ProvingRequestView>>> {
    p.require(Role::Viewer)?;
    state.store().get_identity(id).await?;
    let all = state.store().list_proving_requests(id).await?;
    Ok(ApiJson(all.iter().map(ProvingRequestView::from).collect()))
}

/// The nonce groups of a pass over nonces `[first_nonce, first_nonce + nonces)`.
pub fn pass_groups(first_nonce: u32, nonces: u32) -> GroupRange {
    GroupRange {
        start: first_nonce / 16,
        end: ((u64::from(first_nonce) + u64::from(nonces)) / 16).min(u64::from(u32::MAX)) as u32,
    }
}

/// The pow of every group of `groups` from the finished k2pow jobs of `identity_id` for
/// `challenge` (hex); `None` while any group has none.
pub async fn pass_pows(
    state: &AppState,
    identity_id: Uuid,
    challenge: &str,
    groups: GroupRange,
) -> ApiResult<Option<Vec<GroupPow>>> {
    let done = state
        .store()
        .list_jobs(&JobFilter {
            identity_id: Some(identity_id),
            kind: Some(JobKind::K2pow),
            state: Some(JobState::Done),
            limit: 10_000,
            ..JobFilter::default()
        })
        .await?;
    let mut found: BTreeMap<u32, u64> = BTreeMap::new();
    for j in &done {
        let Ok(spec) = serde_json::from_value::<JobSpec>(j.payload.clone()) else {
            continue;
        };
        if spec.challenge.as_deref() != Some(challenge) {
            continue;
        }
        let Some(Ok(r)) = j.result.clone().map(serde_json::from_value::<K2powResult>) else {
            continue;
        };
        for p in r.pows {
            if (groups.start..groups.end).contains(&p.group) {
                found.entry(p.group).or_insert(p.pow);
            }
        }
    }
    Ok((groups.start..groups.end)
        .map(|g| found.get(&g).map(|&pow| GroupPow { group: g, pow }))
        .collect())
}

/// Checks a k2pow job's result: one pow per group of `groups`, in order. The error names the
/// field.
pub fn check_k2pow_result(result: Option<&serde_json::Value>, groups: GroupRange) -> ApiResult<K2powResult> {
    let v = result.ok_or_else(|| ApiError::invalid_field("result", "a k2pow job's result is required"))?;
    let r: K2powResult = serde_json::from_value(v.clone())
        .map_err(|e| ApiError::invalid_field("result", format!("not a k2pow result: {e}")))?;
    if r.pows.len() != groups.len() as usize {
        return Err(ApiError::invalid_field(
            "result.pows",
            format!(
                "must hold one pow per group of [{}, {}), not {}",
                groups.start,
                groups.end,
                r.pows.len()
            ),
        ));
    }
    for (k, (p, g)) in r.pows.iter().zip(groups.start..groups.end).enumerate() {
        if p.group != g {
            return Err(ApiError::invalid_field(
                &format!("result.pows[{k}].group"),
                format!("must be {g}"),
            ));
        }
    }
    Ok(r)
}

/// Checks a verify job's result: bad ranges non-empty, sorted, disjoint and inside the job's
/// range. The error names the field.
pub fn check_verify_result(
    result: Option<&serde_json::Value>,
    range: protocol::LabelRange,
) -> ApiResult<protocol::VerifyResult> {
    let v = result.ok_or_else(|| ApiError::invalid_field("result", "a verify job's result is required"))?;
    let r: protocol::VerifyResult = serde_json::from_value(v.clone())
        .map_err(|e| ApiError::invalid_field("result", format!("not a verify result: {e}")))?;
    let mut last_end = range.start;
    for (k, b) in r.bad_ranges.iter().enumerate() {
        if b.is_empty() || b.start < last_end || b.end > range.end {
            return Err(ApiError::invalid_field(
                &format!("result.bad_ranges[{k}]"),
                format!(
                    "must be non-empty, sorted, disjoint and inside the job's range [{}, {})",
                    range.start, range.end
                ),
            ));
        }
        last_end = b.end;
    }
    Ok(r)
}

/// What a prove job's result is, once checked against the job.
#[derive(Debug)]
pub enum ProveOutcome {
    /// A proof to verify.
    Found { proof: Proof, data: ProofData },
    /// The pass found nothing: the next pass starts at `next_nonce`.
    Empty { next_nonce: u32 },
}

/// Checks a prove job's result against the job and the identity (never trusting the metadata
/// the worker sends): 422 naming the field when it does not match.
pub fn check_prove_result(
    result: Option<&serde_json::Value>,
    identity: &Identity,
    challenge: &[u8; 32],
    first_nonce: u32,
    nonces: u32,
) -> ApiResult<ProveOutcome> {
    let v = result.ok_or_else(|| ApiError::invalid_field("result", "a prove job's result is required"))?;
    let r: ProveResult = serde_json::from_value(v.clone())
        .map_err(|e| ApiError::invalid_field("result", format!("not a prove result: {e}")))?;
    if r.first_nonce != first_nonce || r.nonces != nonces {
        return Err(ApiError::invalid_field(
            "result.first_nonce",
            format!("the job's pass is [{first_nonce}, +{nonces})"),
        ));
    }
    let m = &r.metadata;
    let mismatch = |field: &str| {
        ApiError::invalid_field(
            &format!("result.metadata.{field}"),
            "does not match the identity or the job",
        )
    };
    if m.node_id != hex::encode(identity.node_id) {
        return Err(mismatch("node_id"));
    }
    if Some(m.commitment_atx_id.as_str()) != identity.commitment_atx_id.map(hex::encode).as_deref() {
        return Err(mismatch("commitment_atx_id"));
    }
    if m.challenge != hex::encode(challenge) {
        return Err(mismatch("challenge"));
    }
    if m.num_units != identity.num_units {
        return Err(mismatch("num_units"));
    }
    if m.labels_per_unit != identity.labels_per_unit {
        return Err(mismatch("labels_per_unit"));
    }
    match (r.found, r.proof) {
        (true, Some(data)) => {
            if data.nonce < first_nonce || u64::from(data.nonce) >= u64::from(first_nonce) + u64::from(nonces)
            {
                return Err(ApiError::invalid_field(
                    "result.proof.nonce",
                    format!("must be in the job's pass [{first_nonce}, +{nonces})"),
                ));
            }
            let proof: Proof = serde_json::to_value(&data)
                .and_then(serde_json::from_value)
                .map_err(|e| ApiError::invalid_field("result.proof", e))?;
            Ok(ProveOutcome::Found { proof, data })
        }
        (false, None) => Ok(ProveOutcome::Empty {
            next_nonce: first_nonce.saturating_add(nonces),
        }),
        (true, None) => Err(ApiError::invalid_field("result.proof", "required when found")),
        (false, Some(_)) => Err(ApiError::invalid_field(
            "result.proof",
            "must be absent when not found",
        )),
    }
}

/// Verifies `proof` with post's verifier (strict, every index) against the identity's own data
/// and `challenge`. Blocking (scrypt, RandomX). Returns the verifier's reason on failure.
pub fn verify_proof(
    pow: &dyn post::pow::PowVerifier,
    identity: &Identity,
    challenge: [u8; 32],
    proof: &Proof,
    cfg: &ProofConfig,
) -> Result<(), String> {
    let commitment_atx_id = identity
        .commitment_atx_id
        .ok_or_else(|| "the identity has no commitment ATX".to_owned())?;
    let metadata = ProofMetadata {
        node_id: identity.node_id,
        commitment_atx_id,
        challenge,
        num_units: identity.num_units,
        labels_per_unit: identity.labels_per_unit,
    };
    let init = InitConfig {
        min_num_units: 1,
        max_num_units: u32::MAX,
        labels_per_unit: identity.labels_per_unit,
        scrypt_n: identity.scrypt_n as usize,
    };
    let options = VerifyOptions {
        strict: true,
        threads: 1,
    };
    post::verify::verify(proof, &metadata, cfg, &init, &Mode::All, &options, pow).map_err(|e| e.to_string())
}

/// Verifies a found proof on a blocking thread with the coordinator's light RandomX.
pub async fn verify_found(
    state: &AppState,
    identity: &Identity,
    challenge: [u8; 32],
    proof: &Proof,
) -> ApiResult<Result<(), String>> {
    let (st, ident, proof, cfg) = (
        state.clone(),
        identity.clone(),
        proof.clone(),
        state.0.config.proof,
    );
    tokio::task::spawn_blocking(move || {
        let rx = st.pow_verifier().map_err(ApiError::internal)?;
        Ok(verify_proof(rx.as_ref(), &ident, challenge, &proof, &cfg))
    })
    .await
    .map_err(ApiError::internal)?
}

/// Records a verified proof: stores it with its request (marked proved), moves the identity to
/// `proof_verified`, counts it and tells the event stream. Without a pending request of this
/// challenge (another pass already proved it) only the event is written.
pub async fn accept_proof(
    state: &AppState,
    identity: &Identity,
    challenge: [u8; 32],
    data: &ProofData,
    job_id: Uuid,
) -> ApiResult<()> {
    let now = now_ms();
    let store = state.store();
    let request = store
        .find_pending_proving_request(identity.id, &challenge)
        .await?;
    let mut epoch = None;
    if let Some(r) = request {
        let stored = StoredProof {
            identity_id: identity.id,
            publish_epoch: r.publish_epoch,
            challenge,
            proof: serde_json::to_value(data).map_err(ApiError::internal)?,
            nonce: data.nonce,
            job_id,
            verified_at: now,
        };
        match store.record_proof(&stored).await {
            Ok(_) => epoch = Some(r.publish_epoch),
            Err(e) if e.is_conflict() => {
                tracing::info!(identity = %identity.id, error = %e, "proof already recorded");
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        tracing::info!(identity = %identity.id, "verified proof without a pending request; not stored");
    }
    if let Err(e) = store
        .update_identity_state(identity.id, IdentityState::ProofVerified, None, now)
        .await
    {
        tracing::warn!(identity = %identity.id, error = %e, "could not mark the identity proof_verified");
    }
    state.metrics().proofs_verified.inc();
    state
        .event(
            "proof.verified",
            &identity.id.to_string(),
            json!({"job_id": job_id, "challenge": hex::encode(challenge), "publish_epoch": epoch,
                   "nonce": data.nonce}),
        )
        .await;
    Ok(())
}

/// Moves the pending request of `challenge` to its next pass after a pass that found nothing.
pub async fn advance_pass(
    state: &AppState,
    identity_id: Uuid,
    challenge: [u8; 32],
    next_nonce: u32,
) -> ApiResult<()> {
    if let Some(r) = state
        .store()
        .find_pending_proving_request(identity_id, &challenge)
        .await?
    {
        state
            .store()
            .advance_first_nonce(identity_id, r.publish_epoch, next_nonce, now_ms())
            .await?;
    }
    Ok(())
}

/// `POST /api/v1/identities/{id}/verify`: what was queued.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyQueued {
    /// The verify jobs queued, one per placed file (a file already being verified is skipped).
    pub jobs: Vec<Uuid>,
    /// Placed files skipped because a verify job of theirs is already queued or running.
    pub skipped: u32,
}

#[utoipa::path(post, path = "/api/v1/identities/{id}/verify", tag = "identities",
    params(("id" = Uuid, Path, description = "identity id")),
    responses((status = 202, body = VerifyQueued), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<(StatusCode, ApiJson<VerifyQueued>)> {
    p.require(Role::Operator)?;
    let identity = state.store().get_identity(id).await?;
    let files = state.store().list_identity_files(id).await?;
    let per_file = identity.max_file_size / post::data::LABEL_SIZE;
    let total = u64::from(identity.num_units).saturating_mul(identity.labels_per_unit);
    if per_file == 0 {
        return Err(ApiError::internal("the identity's files hold no labels"));
    }
    let mut new = Vec::new();
    for f in &files {
        let (Some(worker), Some(disk)) = (f.worker_id, f.disk_id.clone()) else {
            continue;
        };
        let start = f.file_index.saturating_mul(per_file);
        let end = start.saturating_add(per_file).min(total);
        if start >= end {
            continue;
        }
        let file_index = u32::try_from(f.file_index).map_err(ApiError::internal)?;
        let spec = JobSpec {
            device: protocol::Device::Cpu,
            work: protocol::JobKind::Verify {
                file_index,
                range: protocol::LabelRange { start, end },
            },
            target: Some(protocol::Placement {
                worker_id: worker.to_string(),
                disk_id: disk,
            }),
            challenge: None,
        };
        let mut job = crate::store::NewJob::new(
            JobKind::Verify,
            id,
            serde_json::to_value(&spec).map_err(ApiError::internal)?,
        );
        job.assigned_worker_id = Some(worker);
        job.key = Some(format!("verify:{id}:{file_index}"));
        new.push(job);
    }
    if new.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_files",
            format!("identity {id} has no file placed on a worker yet"),
        ));
    }
    let queued = state.store().enqueue_jobs(&new, now_ms()).await?;
    let jobs: Vec<Uuid> = queued.iter().flatten().map(|j| j.id).collect();
    let skipped = u32::try_from(queued.len() - jobs.len()).unwrap_or(u32::MAX);
    state
        .event(
            "verify.requested",
            &id.to_string(),
            json!({"jobs": jobs, "skipped": skipped}),
        )
        .await;
    Ok((StatusCode::ACCEPTED, ApiJson(VerifyQueued { jobs, skipped })))
}
