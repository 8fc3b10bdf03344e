//! Writing a plan to the store: what [`scheduler::apply`] does in memory, done durably.
//!
//! Order: cancellations (they free devices and job keys), truncations, placements, new jobs (init,
//! k2pow, prove), then identity state changes. Every write is idempotent or a compare-and-set: a
//! job that finished meanwhile is not cancelled, a key already queued is not queued twice, a state
//! that changed meanwhile is left alone; these count as skipped. One event per change is appended
//! at the end in one transaction (also when a later step fails, for the changes made before it).

use protocol::JobSpec;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{store_err, ReconcileError, ReconcileInputs};
use crate::scheduler::{Device, JobKind, Plan};
use crate::store::{self, ConflictKind, NewJob, Store, StoreError, StoreErrorKind};

/// Leasing order between kinds (higher first): proofs have deadlines, init does not.
const PRIORITY_PROVE: i64 = 20;
const PRIORITY_K2POW: i64 = 10;
const PRIORITY_INIT: i64 = 0;
/// Leases a planned job gets before it fails for good.
const MAX_ATTEMPTS: u32 = 3;

/// What applying a plan did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// Files given a disk.
    pub files_placed: u64,
    pub init_queued: u64,
    pub k2pow_queued: u64,
    pub prove_queued: u64,
    pub cancelled: u64,
    /// Live init jobs whose range was shortened.
    pub truncated: u64,
    /// Actions that were already done or no longer apply (job finished or gone, key already
    /// queued, state changed meanwhile, identity deleted), or that name an id that is not a UUID.
    pub skipped: u64,
    pub identity_state_changes: u64,
    /// Set by [`super::reconcile_once`]: leases that expired before planning.
    pub leases_expired: u64,
    /// Set by [`super::reconcile_once`]: workers marked offline before planning.
    pub workers_offline: u64,
    pub events: u64,
}

impl ApplyReport {
    pub fn jobs_queued(&self) -> u64 {
        self.init_queued + self.k2pow_queued + self.prove_queued
    }

    /// Whether anything in the store changed.
    pub fn changed(&self) -> bool {
        self.files_placed
            + self.jobs_queued()
            + self.cancelled
            + self.truncated
            + self.identity_state_changes
            + self.leases_expired
            + self.workers_offline
            > 0
    }
}

/// Changes made so far and their events.
#[derive(Default)]
struct Applied {
    report: ApplyReport,
    events: Vec<(String, String, Value)>,
}

impl Applied {
    fn event(&mut self, kind: &str, subject: impl ToString, data: Value) {
        self.events.push((kind.to_owned(), subject.to_string(), data));
    }
}

/// Applies `plan` to the store at `now_ms`. `inputs` gives the challenges of planned k2pow and
/// proving jobs. See the module documentation for the order and what counts as skipped.
pub async fn apply_plan(
    store: &Store,
    plan: &Plan,
    inputs: &ReconcileInputs,
    now_ms: i64,
) -> Result<ApplyReport, ReconcileError> {
    apply_plan_with(store, plan, inputs, None, now_ms).await
}

/// An identity being initialized as the reconcile pass saw it: what its lifecycle step needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProgress {
    pub id: Uuid,
    pub state: store::IdentityState,
    /// Labels recorded done (every recorded run).
    pub labels_done: u64,
    pub labels_total: u64,
    /// A live init job exists (new ones of this plan are added).
    pub has_init_job: bool,
}

/// [`apply_plan`] with the identities in initialization given (`lifecycle`, from the pass's
/// snapshot and file cache) instead of read with an aggregate query over every identity, which
/// took seconds per pass on a 10,000-identity fleet.
pub async fn apply_plan_with(
    store: &Store,
    plan: &Plan,
    inputs: &ReconcileInputs,
    lifecycle: Option<&[InitProgress]>,
    now_ms: i64,
) -> Result<ApplyReport, ReconcileError> {
    let mut done = Applied::default();
    let result = apply_steps(store, plan, inputs, lifecycle, now_ms, &mut done).await;
    let flushed = store
        .append_events(&done.events, now_ms)
        .await
        .map_err(store_err("append events"));
    result?;
    done.report.events = flushed?.len() as u64;
    Ok(done.report)
}

fn uuid(what: &'static str, s: &str) -> Option<Uuid> {
    match Uuid::parse_str(s) {
        Ok(u) => Some(u),
        Err(_) => {
            tracing::warn!(what, id = s, "plan names an id that is not a UUID; skipped");
            None
        }
    }
}

/// Whether a store error means "this action no longer applies" rather than a failure.
fn no_longer_applies(e: &StoreError) -> bool {
    matches!(e.kind(), StoreErrorKind::NotFound)
        || matches!(
            e.conflict_kind(),
            Some(
                ConflictKind::InvalidTransition
                    | ConflictKind::StateChanged
                    | ConflictKind::Duplicate
                    | ConflictKind::ForeignKey
            )
        )
}

async fn apply_steps(
    store: &Store,
    plan: &Plan,
    inputs: &ReconcileInputs,
    lifecycle: Option<&[InitProgress]>,
    now: i64,
    done: &mut Applied,
) -> Result<(), ReconcileError> {
    // 1. Cancellations.
    for c in &plan.cancellations {
        let Some(id) = uuid("job", &c.job_id) else {
            done.report.skipped += 1;
            continue;
        };
        match store.cancel_job(id, now).await {
            Ok(_) => {
                done.report.cancelled += 1;
                let reason = serde_json::to_value(&c.reason).unwrap_or(Value::Null);
                done.event(
                    "job.cancelled",
                    id,
                    json!({"identity_id": c.identity_id, "worker_id": c.worker_id, "kind": c.kind, "reason": reason}),
                );
            }
            Err(e) if no_longer_applies(&e) => done.report.skipped += 1,
            Err(e) => return Err(store_err("cancel job")(e)),
        }
    }

    // 2. Truncations: the job's range in its payload, only while it is live.
    for t in &plan.truncations {
        let Some(id) = uuid("job", &t.job_id) else {
            done.report.skipped += 1;
            continue;
        };
        let new_end = t.new_end;
        let rewrite = |payload: &Value| -> Option<Value> {
            let mut spec: JobSpec = serde_json::from_value(payload.clone()).ok()?;
            match &mut spec.work {
                JobKind::Init { range, .. } if new_end < range.end && new_end >= range.start => {
                    range.end = new_end;
                }
                _ => return None,
            }
            serde_json::to_value(&spec).ok()
        };
        // The worker learns the shorter range from the answer to its next progress report.
        match store.rewrite_live_job_payload(id, now, rewrite).await {
            Ok(Some(_)) => {
                done.report.truncated += 1;
                done.event(
                    "job.truncated",
                    id,
                    json!({
                        "identity_id": t.identity_id, "file_index": t.file_index,
                        "old_end": t.old_end, "new_end": t.new_end,
                        "expected_labels_per_s": t.expected_labels_per_s,
                        "observed_labels_per_s": t.observed_labels_per_s,
                    }),
                );
            }
            Ok(None) => done.report.skipped += 1,
            Err(e) if no_longer_applies(&e) => done.report.skipped += 1,
            Err(e) => return Err(store_err("truncate job")(e)),
        }
    }

    // 3. Placements.
    for p in &plan.placements {
        let (Some(ident), Some(worker)) = (uuid("identity", &p.identity_id), uuid("worker", &p.worker_id))
        else {
            done.report.skipped += p.files.len() as u64;
            continue;
        };
        let files: Vec<(u64, String)> = p
            .files
            .iter()
            .map(|f| (u64::from(f.file_index), f.disk_id.clone()))
            .collect();
        match store.place_identity_files(ident, worker, &files, now).await {
            Ok(n) => {
                done.report.files_placed += n;
                let placed: Vec<Value> = p
                    .files
                    .iter()
                    .map(|f| json!({"file_index": f.file_index, "disk_id": f.disk_id, "bytes": f.bytes}))
                    .collect();
                done.event(
                    "identity.placed",
                    ident,
                    json!({"worker_id": worker, "files": placed}),
                );
            }
            Err(e) if no_longer_applies(&e) || e.kind() == StoreErrorKind::Invalid => {
                tracing::warn!(identity = %ident, error = %e, "placement not recorded");
                done.report.skipped += p.files.len() as u64;
            }
            Err(e) => return Err(store_err("place files")(e)),
        }
    }

    // 4. New jobs, queued in batches.
    let mut batch: Vec<(store::NewJob, JobSpec)> =
        Vec::with_capacity(plan.init.len() + plan.k2pow.len() + plan.proofs.len());
    for a in &plan.init {
        let (Some(ident), Some(worker)) = (uuid("identity", &a.identity_id), uuid("worker", &a.worker_id))
        else {
            done.report.skipped += 1;
            continue;
        };
        let spec = JobSpec {
            device: a.device.clone(),
            work: JobKind::Init {
                file_index: a.file_index,
                range: a.range,
            },
            target: Some(a.target.clone()),
            challenge: None,
        };
        let key = format!("init:{ident}:{}:{}", a.file_index, a.range.start);
        let new = pinned_job(store::JobKind::Init, ident, worker, &spec, key, PRIORITY_INIT, 0)?;
        batch.push((new, spec));
    }
    for k in &plan.k2pow {
        let (Some(ident), Some(worker)) = (uuid("identity", &k.identity_id), uuid("worker", &k.worker_id))
        else {
            done.report.skipped += 1;
            continue;
        };
        let Some(challenge) = inputs.proving.get(&ident).map(|p| hex::encode(p.challenge)) else {
            done.report.skipped += 1;
            continue;
        };
        let spec = JobSpec {
            device: Device::Cpu,
            work: JobKind::K2pow { groups: k.groups },
            target: None,
            challenge: Some(challenge.clone()),
        };
        let key = format!("k2pow:{ident}:{challenge}:{}", k.groups.start);
        let new = pinned_job(
            store::JobKind::K2pow,
            ident,
            worker,
            &spec,
            key,
            PRIORITY_K2POW,
            0,
        )?;
        batch.push((new, spec));
    }
    for p in &plan.proofs {
        let (Some(ident), Some(worker)) = (uuid("identity", &p.identity_id), uuid("worker", &p.worker_id))
        else {
            done.report.skipped += 1;
            continue;
        };
        let Some(challenge) = inputs.proving.get(&ident).map(|p| hex::encode(p.challenge)) else {
            done.report.skipped += 1;
            continue;
        };
        let spec = JobSpec {
            device: Device::Cpu,
            work: JobKind::Prove {
                first_nonce: p.first_nonce,
                nonces: p.nonces,
                disks: p.disks.clone(),
            },
            target: None,
            challenge: Some(challenge.clone()),
        };
        let key = format!("prove:{ident}:{challenge}:{}", p.first_nonce);
        let new = pinned_job(
            store::JobKind::Prove,
            ident,
            worker,
            &spec,
            key,
            PRIORITY_PROVE,
            p.start_ms,
        )?;
        batch.push((new, spec));
    }
    for chunk in batch.chunks(JOB_BATCH) {
        queue_all(store, chunk, now, done).await?;
    }

    // 5. Identity lifecycle: created -> initializing once labels are recorded or an init job
    // exists; -> ready once every label of the layout is recorded.
    let candidates: Vec<InitProgress> = match lifecycle {
        Some(l) => l.to_vec(),
        None => store
            .list_identities_in_init()
            .await
            .map_err(store_err("list identities in init"))?
            .into_iter()
            .map(|(i, labels_done, init_jobs)| InitProgress {
                id: i.id,
                state: i.state,
                labels_done,
                labels_total: u64::from(i.num_units).saturating_mul(i.labels_per_unit),
                has_init_job: init_jobs > 0,
            })
            .collect(),
    };
    let planned: std::collections::HashSet<&str> = plan.init.iter().map(|a| a.identity_id.as_str()).collect();
    for ident in candidates {
        let labels_done = ident.labels_done;
        let init_jobs = ident.has_init_job || planned.contains(ident.id.to_string().as_str());
        let to = if labels_done >= ident.labels_total {
            store::IdentityState::Ready
        } else if ident.state == store::IdentityState::Created && (labels_done > 0 || init_jobs) {
            store::IdentityState::Initializing
        } else {
            continue;
        };
        match store
            .update_identity_state(ident.id, to, Some(ident.state), now)
            .await
        {
            Ok(_) => {
                done.report.identity_state_changes += 1;
                tracing::info!(identity = %ident.id, from = %ident.state, to = %to, "identity state");
                done.event(
                    "identity.state",
                    ident.id,
                    json!({"from": ident.state.as_str(), "to": to.as_str(), "labels_done": labels_done}),
                );
            }
            Err(e) if no_longer_applies(&e) => done.report.skipped += 1,
            Err(e) => return Err(store_err("update identity state")(e)),
        }
    }
    Ok(())
}

/// The stored payload of a new job (named by its idempotency key in an error).
/// A job pinned to the planned worker, keyed by what it does (a second enqueue of the same work
/// is a `Duplicate` and is skipped).
fn pinned_job(
    kind: store::JobKind,
    identity_id: Uuid,
    worker: Uuid,
    spec: &JobSpec,
    key: String,
    priority: i64,
    not_before: i64,
) -> Result<NewJob, ReconcileError> {
    Ok(NewJob {
        kind,
        identity_id,
        payload: payload(spec, &key)?,
        key: Some(key),
        priority,
        max_attempts: MAX_ATTEMPTS,
        assigned_worker_id: Some(worker),
        not_before,
    })
}

fn payload(spec: &JobSpec, key: &str) -> Result<Value, ReconcileError> {
    serde_json::to_value(spec).map_err(|source| ReconcileError::Payload {
        job_id: key.to_owned(),
        source,
    })
}

/// Jobs queued per write transaction.
const JOB_BATCH: usize = 500;

/// Queues `jobs` in one transaction and records what happened; when the batch fails as a whole
/// (an identity deleted meanwhile), queues them one by one so the others still go in.
async fn queue_all(
    store: &Store,
    jobs: &[(store::NewJob, JobSpec)],
    now: i64,
    done: &mut Applied,
) -> Result<(), ReconcileError> {
    let news: Vec<store::NewJob> = jobs.iter().map(|(n, _)| n.clone()).collect();
    match store.enqueue_jobs(&news, now).await {
        Ok(results) => {
            for (job, (_, spec)) in results.into_iter().zip(jobs) {
                match job {
                    Some(job) => queued(&job, spec, done),
                    None => done.report.skipped += 1,
                }
            }
            Ok(())
        }
        Err(e) if no_longer_applies(&e) => {
            for (new, spec) in jobs {
                match store.enqueue_job(new, now).await {
                    Ok(job) => queued(&job, spec, done),
                    Err(e) if no_longer_applies(&e) => done.report.skipped += 1,
                    Err(e) => return Err(store_err("enqueue job")(e)),
                }
            }
            Ok(())
        }
        Err(e) => Err(store_err("enqueue jobs")(e)),
    }
}

/// Counts a queued job and its event.
fn queued(job: &store::Job, spec: &JobSpec, done: &mut Applied) {
    match job.kind {
        store::JobKind::Init => done.report.init_queued += 1,
        store::JobKind::K2pow => done.report.k2pow_queued += 1,
        store::JobKind::Prove => done.report.prove_queued += 1,
        store::JobKind::Verify => {}
    }
    done.event(
        "job.queued",
        job.id,
        json!({
            "kind": job.kind.as_str(), "identity_id": job.identity_id,
            "worker_id": job.assigned_worker_id, "key": job.key, "work": spec.work,
            "device": spec.device, "not_before": job.not_before,
        }),
    );
}
