//! The reconcile loop: builds a scheduler snapshot from the store, plans, and applies the plan.
//!
//! One pass ([`reconcile_once`]): expire leases and mark silent workers offline, read the fleet into
//! a [`Snapshot`] ([`build_snapshot`], a few bulk queries), plan it with the pure
//! [`scheduler::plan`] off the async runtime, write the plan back ([`apply_plan`]: placements,
//! cancellations, truncations, new jobs, identity state changes, one event per change) and refresh
//! the state gauges. [`run`] repeats it every [`ReconcileConfig::interval`], or sooner when woken,
//! until shutdown. Applying is idempotent: a plan only names what is missing, jobs carry
//! idempotency keys, and planning the applied state again yields no actions.

mod apply;
mod files;
mod snapshot;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protocol::Capabilities;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify, RwLock};
use uuid::Uuid;

use crate::liveness::Liveness;
use crate::metrics::{JobLabels, Metrics, StateLabel};
use crate::scheduler::{self, Plan, SchedulerConfig, Snapshot};
use crate::store::{self, Store, StoreError, StoreErrorKind};

pub use apply::{apply_plan, apply_plan_with, ApplyReport, InitProgress};
pub use files::{FileCache, FileCacheStats};
pub use snapshot::{build_snapshot, build_snapshot_cached};

/// The scheduler's view of a rig from what it reported.
pub fn worker_state(
    caps: &Capabilities,
    worker_id: &str,
    online: bool,
    draining: bool,
) -> scheduler::WorkerState {
    scheduler::WorkerState {
        id: worker_id.to_owned(),
        online,
        draining,
        paused: caps.paused,
        gpus: caps
            .gpus
            .iter()
            .map(|g| scheduler::GpuState {
                index: g.index,
                model: g.model.clone(),
                labels_per_s: g.labels_per_s,
                enabled: g.enabled,
            })
            .collect(),
        cpu: scheduler::CpuState {
            threads: caps.cpu.threads,
            labels_per_s: caps.cpu.labels_per_s,
            randomx_hashes_per_s: caps.cpu.randomx_hashes_per_s,
            proving_mib_s_per_16_nonces: caps.cpu.proving_mib_s_per_16_nonces,
            init_enabled: caps.cpu.init_enabled,
        },
        disks: caps
            .disks
            .iter()
            .map(|d| scheduler::DiskState {
                id: d.id.clone(),
                mount: d.mount.clone(),
                physical_device: if d.physical_device.is_empty() {
                    d.id.clone()
                } else {
                    d.physical_device.clone()
                },
                capacity_bytes: d.capacity_bytes,
                free_bytes: d.free_bytes,
                read_mb_s: d.read_mb_s,
                write_mb_s: d.write_mb_s,
            })
            .collect(),
        stream_endpoint: caps.stream_url.is_some(),
    }
}

/// What a job's `progress` column holds: the API stores the worker's last progress report
/// (`POST /api/v1/worker/jobs/{id}/progress`) in this shape, and the reconcile loop reads it back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    /// Units done from the start of the job's range (labels, nonce groups or bytes, per kind).
    #[serde(default)]
    pub done: u64,
    /// Current speed in the same unit per second.
    #[serde(default)]
    pub rate_per_s: f64,
    /// When the current holder started the job (unix ms; 0 = unknown).
    #[serde(default)]
    pub started_at: i64,
    /// The worker's free-form checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Value>,
}

/// One identity waiting for a proof: the PoET challenge and what the node needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvingInput {
    pub challenge: [u8; 32],
    pub need: scheduler::ProvingNeed,
}

/// What the reconcile loop knows from outside the store. The node bridge fills `proving`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReconcileInputs {
    /// Identities whose node waits for a proof, by identity id.
    pub proving: BTreeMap<Uuid, ProvingInput>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileConfig {
    /// Time between passes when nothing wakes the loop.
    pub interval: Duration,
    /// A worker whose last heartbeat is older than this is offline (its jobs move elsewhere).
    pub offline_after_ms: i64,
    /// Shortest pause after a pass before a pass that was woken early (and never shorter than
    /// the last pass took, so the loop is busy at most half the time).
    pub min_gap: Duration,
    pub scheduler: SchedulerConfig,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            interval: Duration::from_secs(2),
            offline_after_ms: 60_000,
            min_gap: Duration::from_millis(250),
            scheduler: SchedulerConfig::default(),
        }
    }
}

/// A failed reconcile step. Nothing half-applied is lost: the next pass plans from the store again.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reconcile: {step}: {source}")]
    Store {
        step: &'static str,
        #[source]
        source: StoreError,
    },
    /// A job payload could not be encoded (`job_id`: the job's id, or the idempotency key of a
    /// job not yet queued).
    #[error("reconcile: payload of job {job_id}: {source}")]
    Payload {
        job_id: String,
        #[source]
        source: serde_json::Error,
    },
    /// The planner thread could not start or ended without a plan.
    #[error("reconcile: plan: {0}")]
    Planner(String),
}

impl ReconcileError {
    /// Whether trying again later may succeed (a busy or unreachable database).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ReconcileError::Store { source, .. } if source.kind() == StoreErrorKind::Retryable)
    }
}

/// `map_err` for a store call of step `step`.
pub(crate) fn store_err(step: &'static str) -> impl FnOnce(StoreError) -> ReconcileError {
    move |source| ReconcileError::Store { step, source }
}

/// One pass: expire leases, mark silent workers offline, snapshot, plan, apply, refresh gauges.
/// Returns the plan and what applying it did.
pub async fn reconcile_once(
    store: &Store,
    metrics: &Metrics,
    cfg: &ReconcileConfig,
    inputs: &ReconcileInputs,
    now_ms: i64,
) -> Result<(Plan, ApplyReport), ReconcileError> {
    reconcile_cached(store, &mut FileCache::new(), None, metrics, cfg, inputs, now_ms).await
}

/// [`reconcile_once`] with the fleet's files kept in `cache` between passes, and the heartbeats
/// held in `liveness` written first (the loop's way).
pub async fn reconcile_cached(
    store: &Store,
    cache: &mut FileCache,
    liveness: Option<&Liveness>,
    metrics: &Metrics,
    cfg: &ReconcileConfig,
    inputs: &ReconcileInputs,
    now_ms: i64,
) -> Result<(Plan, ApplyReport), ReconcileError> {
    let expired = store
        .expire_leases(now_ms)
        .await
        .map_err(store_err("expire leases"))?;
    metrics.lease_expiries.inc_by(expired.len() as u64);
    let stale_before = now_ms.saturating_sub(cfg.offline_after_ms);
    if let Some(l) = liveness {
        l.flush(store).await.map_err(store_err("record heartbeats"))?;
    }
    let mut offline = store
        .mark_stale_workers_offline(stale_before, now_ms)
        .await
        .map_err(store_err("mark stale workers offline"))?;
    if let Some(l) = liveness {
        // A heartbeat that arrived between the flush and the marking: the worker is alive.
        let mut revived = Vec::new();
        for w in &offline {
            match l.pending_since(*w) {
                Some(t) if t >= stale_before => {
                    let back = store
                        .heartbeat(*w, t, None)
                        .await
                        .map_err(store_err("revive worker"))?;
                    l.set_state(*w, back.state);
                    revived.push(*w);
                }
                _ => l.forget(*w),
            }
        }
        offline.retain(|w| !revived.contains(w));
    }
    let mut events: Vec<(String, String, Value)> = Vec::with_capacity(expired.len() + offline.len());
    for e in &expired {
        tracing::info!(job = %e.job_id, worker = ?e.worker_id, state = %e.new_state, "lease expired");
        events.push((
            "lease.expired".to_owned(),
            e.job_id.to_string(),
            json!({"worker_id": e.worker_id, "state": e.new_state.as_str()}),
        ));
    }
    for w in &offline {
        tracing::warn!(worker = %w, "worker silent, marked offline");
        events.push((
            "worker.offline".to_owned(),
            w.to_string(),
            json!({"last_heartbeat_before": stale_before}),
        ));
    }
    store
        .append_events(&events, now_ms)
        .await
        .map_err(store_err("append events"))?;

    let t = std::time::Instant::now();
    let mut snapshot = build_snapshot_cached(store, cache, now_ms, inputs, cfg).await?;
    snapshot.config = cfg.scheduler.clone();
    let snapshot_ms = t.elapsed().as_millis() as u64;
    let lifecycle = init_progress(&snapshot, cache);
    let t = std::time::Instant::now();
    let plan = plan_off_runtime(snapshot).await?;
    let plan_ms = t.elapsed().as_millis() as u64;
    let t = std::time::Instant::now();
    let mut report = apply_plan_with(store, &plan, inputs, Some(&lifecycle), now_ms).await?;
    report.leases_expired = expired.len() as u64;
    report.workers_offline = offline.len() as u64;
    let apply_ms = t.elapsed().as_millis() as u64;
    let t = std::time::Instant::now();
    refresh_gauges(store, metrics).await?;
    tracing::debug!(
        snapshot_ms,
        plan_ms,
        apply_ms,
        gauges_ms = t.elapsed().as_millis() as u64,
        "reconcile pass steps"
    );
    Ok((plan, report))
}

/// The identities of `snapshot` still being initialized, with their recorded labels from `cache`
/// and whether a live init job holds some of their work.
fn init_progress(snapshot: &Snapshot, cache: &FileCache) -> Vec<InitProgress> {
    let with_jobs: std::collections::HashSet<&str> = snapshot
        .jobs
        .iter()
        .filter(|j| {
            matches!(j.kind, scheduler::JobKind::Init { .. })
                && matches!(
                    j.state,
                    scheduler::JobStatus::Queued
                        | scheduler::JobStatus::Leased
                        | scheduler::JobStatus::Running
                )
        })
        .map(|j| j.identity_id.as_str())
        .collect();
    snapshot
        .identities
        .iter()
        .filter_map(|i| {
            let state = match i.state {
                scheduler::IdentityPhase::Created => store::IdentityState::Created,
                scheduler::IdentityPhase::Initializing => store::IdentityState::Initializing,
                _ => return None,
            };
            let id = Uuid::parse_str(&i.id).ok()?;
            Some(InitProgress {
                id,
                state,
                labels_done: cache.get(&id).map_or(0, |c| c.labels_recorded()),
                labels_total: u64::from(i.num_units).saturating_mul(i.labels_per_unit),
                has_init_job: with_jobs.contains(i.id.as_str()),
            })
        })
        .collect()
}

/// Plans on a thread of its own at a lower CPU priority (nice +10): planning a large fleet takes a
/// CPU for a few hundred milliseconds, and on a small machine the API's requests and the database
/// must not wait behind it. The snapshot is dropped there too.
async fn plan_off_runtime(snapshot: Snapshot) -> Result<Plan, ReconcileError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("planner".into())
        .spawn(move || {
            lower_thread_priority();
            let plan = scheduler::plan(&snapshot);
            let _ = tx.send(plan);
            drop(snapshot);
        })
        .map_err(|e| ReconcileError::Planner(format!("starting the planner thread: {e}")))?;
    rx.await
        .map_err(|_| ReconcileError::Planner("the planner thread ended without a plan (it panicked)".into()))
}

/// Lowers the calling thread's CPU priority to nice +10 (Linux: a thread id names one thread).
/// Best effort: where it fails the plan still runs, at the normal priority.
#[allow(unsafe_code)] // A foreign call; see the SAFETY note.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority only reads its integer arguments, and a
    // positive nice value needs no privilege.
    unsafe {
        let tid = libc::gettid();
        if let Ok(tid) = libc::id_t::try_from(tid) {
            libc::setpriority(libc::PRIO_PROCESS, tid, 10);
        }
    }
}

/// Sets the identity, job and worker gauges from the store, every known label included (zeros
/// too, so that series do not vanish).
pub async fn refresh_gauges(store: &Store, metrics: &Metrics) -> Result<(), ReconcileError> {
    let idents: BTreeMap<&str, u64> = store
        .count_identities_by_state()
        .await
        .map_err(store_err("count identities"))?
        .into_iter()
        .map(|(s, n)| (s.as_str(), n))
        .collect();
    for s in store::IdentityState::ALL {
        let n = idents.get(s.as_str()).copied().unwrap_or(0);
        metrics
            .identities
            .get_or_create(&StateLabel {
                state: s.as_str().to_owned(),
            })
            .set(gauge(n));
    }
    let jobs: BTreeMap<(&str, &str), u64> = store
        .count_jobs_by_kind_state()
        .await
        .map_err(store_err("count jobs"))?
        .into_iter()
        .map(|(k, s, n)| ((k.as_str(), s.as_str()), n))
        .collect();
    for k in store::JobKind::ALL {
        for s in store::JobState::ALL {
            let n = jobs.get(&(k.as_str(), s.as_str())).copied().unwrap_or(0);
            metrics
                .jobs
                .get_or_create(&JobLabels {
                    kind: k.as_str().to_owned(),
                    state: s.as_str().to_owned(),
                })
                .set(gauge(n));
        }
    }
    let workers: BTreeMap<&str, u64> = store
        .count_workers_by_state()
        .await
        .map_err(store_err("count workers"))?
        .into_iter()
        .map(|(s, n)| (s.as_str(), n))
        .collect();
    for s in store::WorkerState::ALL {
        let n = workers.get(s.as_str()).copied().unwrap_or(0);
        metrics
            .workers
            .get_or_create(&StateLabel {
                state: s.as_str().to_owned(),
            })
            .set(gauge(n));
    }
    Ok(())
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Returns the heap memory freed by a pass to the system. A pass over a large fleet allocates and
/// frees hundreds of megabytes on the runtime's threads; glibc keeps freed memory in per-thread
/// arenas, so without this the coordinator's resident size stays at its largest pass's.
#[allow(unsafe_code)] // A foreign call; see the SAFETY note.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Caps glibc's malloc arenas at two. By default glibc gives each of the runtime's threads an arena
/// of its own (up to 8 per core); a pass's large, short-lived allocations then leave free memory
/// spread over all of them, and the resident size grows with the thread count. Call once, before
/// the runtime starts its threads.
#[allow(unsafe_code)] // A foreign call; see the SAFETY note.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it has no preconditions.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// The longest wait after failed passes.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The reconcile loop and what it shares with the rest of the coordinator.
#[derive(Debug, Clone)]
pub struct Reconciler {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub cfg: ReconcileConfig,
    /// Read at the start of every pass (cloned, so the writer never waits for a pass).
    pub inputs: Arc<RwLock<ReconcileInputs>>,
    /// The plan of the last successful pass (for the API and the dashboard).
    pub latest: Arc<RwLock<Option<Arc<Plan>>>>,
    /// `notify_one` starts a pass now (identity created, worker enrolled, job finished).
    pub wake: Arc<Notify>,
    /// The fleet's files between passes (only this loop's passes use it).
    pub files: Arc<tokio::sync::Mutex<FileCache>>,
    /// The API's heartbeats held in memory: written at the start of every pass.
    pub liveness: Option<Arc<Liveness>>,
}

impl Reconciler {
    /// One pass at `now_ms`; on success the plan becomes `latest`.
    pub async fn tick(&self, now_ms: i64) -> Result<(Arc<Plan>, ApplyReport), ReconcileError> {
        let mut inputs = self.inputs.read().await.clone();
        // A request whose deadline passed without a verified proof fails (with its reason, and an
        // event); its k2pow and prove jobs become obsolete.
        let overdue = self
            .store
            .fail_overdue_proving_requests(now_ms)
            .await
            .map_err(store_err("fail overdue proving requests"))?;
        if !overdue.is_empty() {
            let events: Vec<(String, String, Value)> = overdue
                .iter()
                .map(|r| {
                    tracing::warn!(identity = %r.identity_id, epoch = r.publish_epoch, "proving request failed: deadline passed");
                    (
                        "proving.failed".to_owned(),
                        r.identity_id.to_string(),
                        json!({"publish_epoch": r.publish_epoch, "challenge": hex::encode(r.challenge),
                               "deadline": r.deadline, "first_nonce": r.first_nonce,
                               "reason": r.failure}),
                    )
                })
                .collect();
            self.store
                .append_events(&events, now_ms)
                .await
                .map_err(store_err("append events"))?;
        }
        // Proving requests recorded through the API (durable across restarts); what the node
        // bridge gives for an identity takes precedence. One request per identity: the newest
        // pending epoch.
        let pending = self
            .store
            .list_pending_proving_requests()
            .await
            .map_err(store_err("list proving requests"))?;
        for r in pending.into_iter().rev() {
            inputs.proving.entry(r.identity_id).or_insert(ProvingInput {
                challenge: r.challenge,
                need: scheduler::ProvingNeed {
                    challenge_known_at_ms: r.known_at,
                    deadline_ms: r.deadline,
                    first_nonce: r.first_nonce,
                    pow_groups_done: 0,
                },
            });
        }
        let mut files = self.files.lock().await;
        let (plan, report) = reconcile_cached(
            &self.store,
            &mut files,
            self.liveness.as_deref(),
            &self.metrics,
            &self.cfg,
            &inputs,
            now_ms,
        )
        .await?;
        drop(files);
        let plan = Arc::new(plan);
        *self.latest.write().await = Some(Arc::clone(&plan));
        Ok((plan, report))
    }

    /// Runs passes until `shutdown` is true (or its sender is gone): every `cfg.interval`, or
    /// as soon as `wake` is notified (but no sooner than `cfg.min_gap`, or the last pass's
    /// duration, after the last pass ended). A failed pass is logged and retried with exponential
    /// backoff (up to a minute, wakes ignored meanwhile); it never ends the loop. A pass in
    /// progress finishes before the loop returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        tracing::info!(
            interval_ms = self.cfg.interval.as_millis() as u64,
            "reconcile loop started"
        );
        loop {
            if *shutdown.borrow() {
                break;
            }
            let started = std::time::Instant::now();
            match self.tick(now_ms()).await {
                Ok((plan, report)) => {
                    release_free_memory();
                    failures = 0;
                    let elapsed_ms = started.elapsed().as_millis() as u64;
                    if report.changed() {
                        tracing::info!(elapsed_ms, ?report, "reconcile pass applied changes");
                    } else {
                        tracing::debug!(
                            elapsed_ms,
                            issues = plan.issues.len(),
                            "reconcile pass: no change"
                        );
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(error = %e, failures, retryable = e.is_retryable(), "reconcile pass failed");
                }
            }
            let wait = if failures == 0 {
                self.cfg.interval
            } else {
                backoff(self.cfg.interval, failures)
            };
            // Woken passes keep the loop busy at most half the time: under a stream of job
            // completions it must not crowd out the request handlers on a small machine.
            let earliest = std::time::Instant::now() + started.elapsed().max(self.cfg.min_gap);
            let woken = async {
                if failures == 0 {
                    self.wake.notified().await;
                    tokio::time::sleep_until(earliest.into()).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = woken => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        tracing::info!("reconcile loop stopped");
    }
}

/// The wait after `failures` failed passes in a row: the interval (at least a second) doubled
/// per failure, at most [`MAX_BACKOFF`].
fn backoff(interval: Duration, failures: u32) -> Duration {
    let base = interval.max(Duration::from_secs(1));
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Runs the reconcile loop until `shutdown` turns true. See [`Reconciler::run`].
pub async fn run(
    store: Store,
    metrics: Arc<Metrics>,
    cfg: ReconcileConfig,
    inputs: Arc<RwLock<ReconcileInputs>>,
    latest: Arc<RwLock<Option<Arc<Plan>>>>,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) {
    Reconciler {
        store,
        metrics,
        cfg,
        inputs,
        latest,
        wake,
        files: Arc::default(),
        liveness: None,
    }
    .run(shutdown)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let i = Duration::from_secs(2);
        assert_eq!(backoff(i, 1), Duration::from_secs(2));
        assert_eq!(backoff(i, 2), Duration::from_secs(4));
        assert_eq!(backoff(i, 3), Duration::from_secs(8));
        assert_eq!(backoff(i, 40), MAX_BACKOFF);
        assert_eq!(backoff(Duration::from_millis(10), 1), Duration::from_secs(1));
    }

    #[test]
    fn job_progress_reads_what_the_api_writes() {
        let p: JobProgress = serde_json::from_value(
            json!({"done": 5, "rate_per_s": 1.5, "started_at": 7, "checkpoint": {"a": 1}}),
        )
        .expect("parse");
        assert_eq!(p.done, 5);
        assert_eq!(p.started_at, 7);
        assert_eq!(p.checkpoint, Some(json!({"a": 1})));
        let p: JobProgress = serde_json::from_value(json!({})).expect("defaults");
        assert_eq!(p, JobProgress::default());
    }
}
