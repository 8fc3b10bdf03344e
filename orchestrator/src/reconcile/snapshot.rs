//! Reading the fleet into a scheduler [`Snapshot`]: a few bulk queries whatever the fleet's size,
//! with the files taken from the reconcile loop's [`FileCache`] (only identities whose files
//! changed are read again).
//!
//! Consistency without a read transaction: live jobs, workers and identities are read first; file
//! revisions, changed files and recorded ranges, and finished k2pow/prove jobs after them.
//! Whatever happens between the reads can only make the snapshot claim *more* coverage than there
//! was at the first read (a job that finishes meanwhile shows as live and its labels as recorded),
//! never less, so a plan never queues work twice; the next pass sees the settled state. (Placements
//! are written by the reconcile loop alone.) A job seen live and then finished is taken as
//! finished.

use std::collections::{BTreeMap, HashMap, HashSet};

use protocol::{Capabilities, JobSpec};
use serde::Deserialize;
use uuid::Uuid;

use super::files::{recorded_from, FileCache};
use super::{store_err, worker_state, JobProgress, ReconcileConfig, ReconcileError, ReconcileInputs};
use crate::scheduler::{
    self, Device, GroupRange, IdentityPhase, JobKind, JobState, JobStatus, LabelRange, Snapshot,
};
use crate::store::{self, Store};

/// Finished k2pow and prove jobs are read back this far before the earliest known challenge
/// (their own challenge is checked too; this only bounds the scan).
const FINISHED_LOOKBACK_MS: i64 = 24 * 3_600_000;

/// The scheduler's phase for a stored identity state.
pub(crate) fn phase(state: store::IdentityState) -> IdentityPhase {
    use store::IdentityState as S;
    match state {
        S::Created => IdentityPhase::Created,
        S::Initializing => IdentityPhase::Initializing,
        S::Failed => IdentityPhase::Failed,
        S::Ready | S::WaitingForChallenge | S::K2pow | S::Proving | S::ProofVerified | S::Submitted => {
            IdentityPhase::Ready
        }
    }
}

/// Reads workers, identities (with files, recorded progress and proving needs) and jobs into a
/// snapshot at `now_ms`, with the default scheduler config (the caller sets its own).
///
/// * Workers: every worker not removed; online while `online` or `draining` with a heartbeat
///   within `cfg.offline_after_ms`. Capabilities that do not parse leave the worker without
///   devices (logged).
/// * Files: the placement of every file row, and `labels_done` = the recorded labels contiguous
///   from the file's start. Recorded runs further into a file appear as finished init jobs with
///   their run as durable progress (ids `range:{identity}:{start}`), so that the planner counts
///   every recorded label exactly as the store does.
/// * Jobs: every queued and leased job whose payload parses (others are skipped and logged): on
///   the leasing worker, or the assigned one while queued; `running` once progress was reported.
///   Init progress = labels recorded contiguously from the job's range start (durable, whoever
///   recorded them); k2pow and prove progress = the `done` of the last report ([`JobProgress`]).
///   For identities in `inputs.proving`, also the finished k2pow jobs of the current challenge (a
///   done one counts all its groups). A live k2pow or prove job of another challenge is shown
///   with empty work, so the planner cancels it as obsolete.
/// * Proving: `inputs.proving`, except for an identity with a prove job of that challenge done
///   (its proof exists; the node bridge takes it from there).
pub async fn build_snapshot(
    store: &Store,
    now_ms: i64,
    inputs: &ReconcileInputs,
    cfg: &ReconcileConfig,
) -> Result<Snapshot, ReconcileError> {
    build_snapshot_cached(store, &mut FileCache::new(), now_ms, inputs, cfg).await
}

/// [`build_snapshot`] with the files from `cache`, brought up to date first (only identities
/// whose files changed since the last call are read again: see [`FileCache`]).
pub async fn build_snapshot_cached(
    store: &Store,
    cache: &mut FileCache,
    now_ms: i64,
    inputs: &ReconcileInputs,
    cfg: &ReconcileConfig,
) -> Result<Snapshot, ReconcileError> {
    // Live jobs first, recorded ranges (and finished jobs) after them: see the module docs.
    let (live, workers, identities) = tokio::try_join!(
        async { store.list_live_jobs().await.map_err(store_err("list live jobs")) },
        async { store.list_workers().await.map_err(store_err("list workers")) },
        async {
            store
                .list_identities()
                .await
                .map_err(store_err("list identities"))
        },
    )?;
    let proving_ids: Vec<Uuid> = inputs.proving.keys().copied().collect();
    let since = inputs
        .proving
        .values()
        .map(|p| p.need.challenge_known_at_ms)
        .min()
        .unwrap_or(now_ms)
        .saturating_sub(FINISHED_LOOKBACK_MS);
    let stats = cache.refresh(store, &identities).await?;
    tracing::debug!(?stats, "file cache refreshed");
    let finished = store
        .list_finished_jobs_since(
            &proving_ids,
            &[store::JobKind::K2pow, store::JobKind::Prove],
            since,
        )
        .await
        .map_err(store_err("list finished jobs"))?;

    let mut snap = Snapshot {
        now_ms,
        workers: Vec::with_capacity(workers.len()),
        identities: Vec::with_capacity(identities.len()),
        jobs: Vec::with_capacity(live.len() + finished.len()),
        config: scheduler::SchedulerConfig::default(),
    };

    // Workers.
    for w in &workers {
        if w.state == store::WorkerState::Removed {
            continue;
        }
        let caps = match Capabilities::deserialize(&w.capabilities) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(worker = %w.id, error = %e, "worker capabilities do not parse; planning it without devices");
                Capabilities::default()
            }
        };
        let seen = w.last_heartbeat_at.unwrap_or(w.created_at);
        let online = matches!(w.state, store::WorkerState::Online | store::WorkerState::Draining)
            && now_ms.saturating_sub(seen) <= cfg.offline_after_ms;
        let draining = w.state == store::WorkerState::Draining;
        let mut ws = worker_state(&caps, &w.id.to_string(), online, draining);
        // What an operator decided from the coordinator comes on top of what the rig reports.
        ws.paused |= w.paused;
        ws.cpu.init_enabled &= w.device_settings.cpu_init;
        for g in &mut ws.gpus {
            g.enabled &= w.device_settings.gpu_enabled(g.index);
        }
        snap.workers.push(ws);
    }

    // Jobs: live first, a finished row of the same id replaces the live one.
    let challenge_hex: HashMap<Uuid, String> = inputs
        .proving
        .iter()
        .map(|(id, p)| (*id, hex::encode(p.challenge)))
        .collect();
    let mut jobs: BTreeMap<Uuid, &store::Job> = BTreeMap::new();
    for j in live.iter().chain(finished.iter()) {
        jobs.insert(j.id, j);
    }
    let mut proved: HashSet<Uuid> = HashSet::new();
    let mut bad_payload: Vec<Uuid> = Vec::new();
    for job in jobs.values() {
        let spec = match JobSpec::deserialize(&job.payload) {
            Ok(s) if kind_matches(job.kind, &s.work) => s,
            Ok(_) => {
                tracing::debug!(job = %job.id, kind = %job.kind, "job payload names another kind of work");
                bad_payload.push(job.id);
                continue;
            }
            Err(e) => {
                tracing::debug!(job = %job.id, error = %e, "job payload does not parse");
                bad_payload.push(job.id);
                continue;
            }
        };
        let live = job.state.is_active();
        let mut work = spec.work;
        if matches!(work, JobKind::K2pow { .. } | JobKind::Prove { .. }) {
            let current = challenge_hex.get(&job.identity_id);
            let same = current.is_some_and(|c| spec.challenge.as_deref() == Some(c.as_str()));
            if !same {
                if !live {
                    continue;
                }
                if current.is_some() {
                    // Another challenge's work: empty work is obsolete for the planner.
                    work = match work {
                        JobKind::K2pow { .. } => JobKind::K2pow {
                            groups: GroupRange { start: 0, end: 0 },
                        },
                        JobKind::Prove { disks, .. } => JobKind::Prove {
                            first_nonce: 0,
                            nonces: 0,
                            disks,
                        },
                        other => other,
                    };
                }
            } else if job.state == store::JobState::Done && matches!(work, JobKind::Prove { .. }) {
                proved.insert(job.identity_id);
            }
        }
        let progress = job
            .progress
            .as_ref()
            .and_then(|p| JobProgress::deserialize(p).ok());
        let state = match job.state {
            store::JobState::Queued => JobStatus::Queued,
            store::JobState::Leased if job.progress.is_some() => JobStatus::Running,
            store::JobState::Leased => JobStatus::Leased,
            store::JobState::Done => JobStatus::Done,
            store::JobState::Failed => JobStatus::Failed,
            store::JobState::Cancelled => JobStatus::Cancelled,
        };
        let worker = match job.state {
            store::JobState::Queued => job.assigned_worker_id.or(job.worker_id),
            _ => job.worker_id.or(job.assigned_worker_id),
        };
        let reported = progress.as_ref().map_or(0, |p| p.done);
        let done = match &work {
            JobKind::Init { range, .. } => {
                let runs = cache.get(&job.identity_id).map_or(&[][..], |c| &c.runs[..]);
                recorded_from(runs, range.start).min(range.len())
            }
            JobKind::K2pow { groups } if job.state == store::JobState::Done => u64::from(groups.len()),
            _ => reported,
        };
        snap.jobs.push(JobState {
            id: job.id.to_string(),
            identity_id: job.identity_id.to_string(),
            worker_id: worker.map(|w| w.to_string()).unwrap_or_default(),
            device: spec.device,
            kind: work,
            state,
            lease_expires_ms: if job.state == store::JobState::Leased {
                job.lease_expires_at
            } else {
                None
            },
            started_ms: progress.as_ref().map(|p| p.started_at).filter(|&t| t > 0),
            not_before_ms: (job.not_before > 0).then_some(job.not_before),
            progress: done,
        });
    }
    if !bad_payload.is_empty() {
        tracing::warn!(
            count = bad_payload.len(),
            first = ?&bad_payload[..bad_payload.len().min(5)],
            "jobs skipped by the planner: their payload is not a job spec of their kind"
        );
    }

    // Identities.
    for ident in &identities {
        let id = ident.id.to_string();
        let cached = cache.get(&ident.id);
        let mut st = scheduler::IdentityState {
            id: id.clone(),
            num_units: ident.num_units,
            labels_per_unit: ident.labels_per_unit,
            max_file_size: ident.max_file_size,
            state: phase(ident.state),
            files: cached.map(|c| c.files.clone()).unwrap_or_default(),
            proving: None,
        };
        if let Some(p) = inputs.proving.get(&ident.id) {
            if !proved.contains(&ident.id) {
                st.proving = Some(p.need.clone());
            }
        }
        // Runs not contiguous with their file's start: a finished init job holds each as progress.
        for r in cached.map_or(&[][..], |c| &c.detached[..]) {
            snap.jobs.push(JobState {
                id: format!("range:{id}:{}", r.start),
                identity_id: id.clone(),
                worker_id: String::new(),
                device: Device::Cpu,
                kind: JobKind::Init {
                    file_index: u32::try_from(r.file).unwrap_or(u32::MAX),
                    range: LabelRange {
                        start: r.start,
                        end: r.end,
                    },
                },
                state: JobStatus::Done,
                lease_expires_ms: None,
                started_ms: None,
                not_before_ms: None,
                progress: r.end - r.start,
            });
        }
        snap.identities.push(st);
    }
    Ok(snap)
}

fn kind_matches(kind: store::JobKind, work: &JobKind) -> bool {
    matches!(
        (kind, work),
        (store::JobKind::Init, JobKind::Init { .. })
            | (store::JobKind::Verify, JobKind::Verify { .. })
            | (store::JobKind::K2pow, JobKind::K2pow { .. })
            | (store::JobKind::Prove, JobKind::Prove { .. })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_epoch_states_are_ready() {
        assert_eq!(phase(store::IdentityState::Proving), IdentityPhase::Ready);
        assert_eq!(phase(store::IdentityState::Created), IdentityPhase::Created);
        assert_eq!(phase(store::IdentityState::Failed), IdentityPhase::Failed);
    }
}
