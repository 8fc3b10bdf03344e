//! The worker's main loop: enroll (once; the credential is kept in a 0600 file), heartbeat,
//! lease jobs, run them off the async runtime, report progress under the lease's fencing token,
//! and on shutdown hand back what it holds.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use post::backend::{CpuBackend, LabelBackend, VrfCandidate};
use protocol::{
    Capabilities, CompleteRequest, DiskInfo, FailRequest, HeartbeatRequest, JobKind, K2powResult,
    LeaseRequest, LeasedJob, ProgressRequest, RangeDone, VerifyResult,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::client::{Client, ClientError};
pub use crate::exec::identity_dir;
use crate::exec::init::{run_init, InitTask, RangeEnd};
use crate::exec::k2pow::{run_k2pow, K2powTask, PowEngine};
use crate::exec::prove::{run_prove, ProveTask};
use crate::exec::verify::{run_verify, VerifyTask};
use crate::exec::{checkpoint, ExecConfig, ExecError};

/// Everything the agent needs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub coordinator: String,
    pub join_token: Option<String>,
    pub data_dir: PathBuf,
    pub name: String,
    pub cpu_threads: usize,
    pub capabilities: Capabilities,
    pub heartbeat_interval: Duration,
    pub lease_poll: Duration,
    /// How often a running job reports progress (and renews its lease).
    pub progress_interval: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Enrollment {
    coordinator: String,
    worker_id: Uuid,
}

const ENROLLMENT_FILE: &str = "enrollment.json";
const CREDENTIAL_FILE: &str = "credential";

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Points the enrollment saved in `data_dir` at `coordinator`, the new address of the same
/// coordinator (`smeshfleet up` started on another `--listen`: its worker and coordinator share a
/// data directory, so they are the same pair). Returns whether it changed anything; no saved
/// enrollment is not an error.
pub fn readdress_enrollment(data_dir: &Path, coordinator: &str) -> Result<bool> {
    let e_path = data_dir.join(ENROLLMENT_FILE);
    let bytes = match std::fs::read(&e_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", e_path.display()))),
    };
    let mut e: Enrollment =
        serde_json::from_slice(&bytes).with_context(|| format!("reading {}", e_path.display()))?;
    if e.coordinator == coordinator {
        return Ok(false);
    }
    e.coordinator = coordinator.to_owned();
    write_private(&e_path, &serde_json::to_string(&e)?)?;
    Ok(true)
}

/// Loads the saved enrollment, or enrolls with the join token and saves it.
async fn enrollment(opts: &AgentOptions, client: &mut Client) -> Result<Uuid> {
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating {}", opts.data_dir.display()))?;
    let e_path = opts.data_dir.join(ENROLLMENT_FILE);
    let c_path = opts.data_dir.join(CREDENTIAL_FILE);
    if e_path.exists() && c_path.exists() {
        let e: Enrollment = serde_json::from_slice(&std::fs::read(&e_path)?)
            .with_context(|| format!("reading {}", e_path.display()))?;
        let cred = std::fs::read_to_string(&c_path)?.trim().to_owned();
        if e.coordinator == opts.coordinator {
            client.set_credential(cred);
            return Ok(e.worker_id);
        }
        anyhow::bail!(
            "{} belongs to the coordinator at {}; use another --data-dir for {}",
            opts.data_dir.display(),
            e.coordinator,
            opts.coordinator
        );
    }
    let token = opts
        .join_token
        .as_deref()
        .context("this worker is not enrolled yet: pass --join-token")?;
    let r = client
        .enroll(token, &opts.name, &opts.capabilities)
        .await
        .context("enrolling with the coordinator")?;
    write_private(&c_path, &r.credential)?;
    let e = Enrollment {
        coordinator: opts.coordinator.clone(),
        worker_id: r.worker_id,
    };
    write_private(&e_path, &serde_json::to_string_pretty(&e)?)?;
    client.set_credential(r.credential);
    tracing::info!(worker_id = %r.worker_id, "enrolled");
    Ok(r.worker_id)
}

/// One step of a running job, for the lease loop to report.
#[derive(Debug, Default)]
struct Update {
    /// Units done from the start of the job's range (labels, groups or labels read, per kind).
    done: u64,
    /// Init: a range now durable.
    range: Option<RangeDone>,
    /// What a later attempt resumes from.
    checkpoint: Option<serde_json::Value>,
}

/// What a running job tells the lease loop.
enum JobEvent {
    Progress(Update),
    Finished(Result<serde_json::Value, ExecError>),
}

/// The two things a rig does at once: write or check its disks (init, verify), and proof work
/// (k2pow, prove). One job per slot, so proving never waits for a long init and init is never
/// starved by a stream of k2pow jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    Storage,
    Proof,
}

impl Slot {
    pub const ALL: [Slot; 2] = [Slot::Storage, Slot::Proof];
}

/// The slot a job runs in.
pub fn slot_of(kind: &JobKind) -> Slot {
    match kind {
        JobKind::Init { .. } | JobKind::Verify { .. } => Slot::Storage,
        JobKind::K2pow { .. } | JobKind::Prove { .. } => Slot::Proof,
    }
}

/// The kinds this rig asks for in `slot`: init where a label device is enabled and there is a
/// disk to write; verify and prove where there is a disk; k2pow always (every rig has a CPU;
/// the coordinator plans k2pow by the measured RandomX speed it was told).
pub fn lease_kinds(caps: &Capabilities, slot: Slot) -> Vec<String> {
    let disks = !caps.disks.is_empty();
    let label_device = caps.cpu.init_enabled || caps.gpus.iter().any(|g| g.enabled);
    let mut kinds = Vec::new();
    match slot {
        Slot::Storage => {
            // Without a disk: init for other rigs' disks, streamed (the coordinator plans it
            // only for storage workers that take streamed labels).
            if label_device {
                kinds.push("init".to_owned());
            }
            if disks {
                kinds.push("verify".to_owned());
            }
        }
        Slot::Proof => {
            kinds.push("k2pow".to_owned());
            if disks {
                kinds.push("prove".to_owned());
            }
        }
    }
    kinds
}

struct Running {
    stop: Arc<AtomicBool>,
    slot: Slot,
}

/// What every executor of this worker shares.
struct Env {
    cfg: ExecConfig,
    pow: PowEngine,
    /// `--cpu-threads`: the most threads any executor computes with.
    threads: usize,
    backend: Arc<dyn LabelBackend>,
}

/// Runs until `shutdown` completes with the mainnet proof parameters and fast-mode RandomX; see
/// [`run_with`].
pub async fn run(opts: AgentOptions, shutdown: impl Future<Output = ()>) -> Result<()> {
    run_with(opts, ExecConfig::default(), shutdown).await
}

/// Runs until `shutdown` completes; then stops its jobs at their next checkpoint, reports what
/// they finished and hands their leases back.
pub async fn run_with(
    opts: AgentOptions,
    exec: ExecConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut client = Client::new(&opts.coordinator, None)?;
    let worker_id = enrollment(&opts, &mut client).await?;
    println!("smeshfleet worker {worker_id} running for {}", opts.coordinator);
    let threads = opts.cpu_threads.max(1);
    let backend: Arc<dyn LabelBackend> =
        Arc::new(CpuBackend::new(threads).context("starting the CPU label backend")?);
    let env = Arc::new(Env {
        cfg: exec,
        pow: PowEngine::new(exec.randomx_mode, exec.large_pages, threads),
        threads,
        backend,
    });
    let running: Arc<Mutex<HashMap<Uuid, Running>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut draining = false;
    let mut paused = false;
    // No lease before the first heartbeat answer: it may say the rig is paused or draining.
    let mut heard = false;
    let mut heartbeat = tokio::time::interval(opts.heartbeat_interval);
    // Free space and GPU telemetry go with every 12th heartbeat.
    let mut caps = opts.capabilities.clone();
    let probe = Arc::new(crate::discovery::GpuProbe::new());
    let mut beats: u64 = 0;
    let mut poll = tokio::time::interval(opts.lease_poll);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = heartbeat.tick() => {
                let jobs: Vec<Uuid> = running.lock().map(|m| m.keys().copied().collect()).unwrap_or_default();
                beats += 1;
                let capabilities = if beats.is_multiple_of(12) {
                    let (mut c, p) = (caps.clone(), probe.clone());
                    match tokio::task::spawn_blocking(move || {
                        crate::discovery::refresh(&mut c, &p);
                        c
                    })
                    .await
                    {
                        Ok(c) => {
                            caps = c;
                            Some(caps.clone())
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "refreshing free space and telemetry failed");
                            None
                        }
                    }
                } else {
                    None
                };
                match client.heartbeat(&HeartbeatRequest { capabilities, jobs }).await {
                    Ok(r) => {
                        heard = true;
                        draining = r.drain;
                        if r.paused != paused {
                            tracing::info!(paused = r.paused, "the operator {} this rig", if r.paused { "paused" } else { "resumed" });
                        }
                        paused = r.paused;
                        if let Ok(m) = running.lock() {
                            for id in &r.stop {
                                if let Some(j) = m.get(id) {
                                    j.stop.store(true, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    Err(e) if e.is_unauthorized() => {
                        anyhow::bail!("the coordinator no longer accepts this worker's credential (removed?)")
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed; retrying"),
                }
            }
            _ = poll.tick() => {
                if !heard || draining || paused {
                    continue;
                }
                for slot in Slot::ALL {
                    let busy = running.lock().map(|m| m.values().any(|r| r.slot == slot)).unwrap_or(true);
                    let kinds = lease_kinds(&caps, slot);
                    if busy || kinds.is_empty() {
                        continue;
                    }
                    let req = LeaseRequest { kinds, max_jobs: Some(1) };
                    match client.lease(&req).await {
                        Ok(lease) => {
                            for job in lease.jobs {
                                let stop = Arc::new(AtomicBool::new(false));
                                if let Ok(mut m) = running.lock() {
                                    m.insert(job.job_id, Running { stop: stop.clone(), slot: slot_of(&job.spec.work) });
                                }
                                let ctx = JobCtx {
                                    client: client.clone(),
                                    env: env.clone(),
                                    caps: opts.capabilities.clone(),
                                    running: running.clone(),
                                    progress_interval: opts.progress_interval,
                                    lease: Duration::from_millis(lease.lease_ms),
                                };
                                tasks.spawn(run_job(ctx, job, stop));
                            }
                        }
                        Err(e) if e.is_unauthorized() => {
                            anyhow::bail!("the coordinator no longer accepts this worker's credential (removed?)")
                        }
                        Err(e) => tracing::warn!(error = %e, "lease failed; retrying"),
                    }
                }
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a job task ended abnormally");
                }
                // Its slot is free (the task left `running` and reported before it ended): lease
                // the next job now, not at the next poll tick. The coordinator queues a device's
                // next range before the current one ends, so there is one to take. The poll arm
                // still leases nothing while draining, paused or not yet heard.
                poll.reset_immediately();
            }
        }
    }
    // Drain: stop every job at its next checkpoint; each reports what it wrote and hands back.
    if let Ok(m) = running.lock() {
        for j in m.values() {
            j.stop.store(true, Ordering::Relaxed);
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "a job task ended abnormally");
        }
    }
    println!("smeshfleet worker stopped");
    Ok(())
}

struct JobCtx {
    client: Client,
    env: Arc<Env>,
    caps: Capabilities,
    running: Arc<Mutex<HashMap<Uuid, Running>>>,
    progress_interval: Duration,
    /// How long a lease lasts unless renewed.
    lease: Duration,
}

fn resume_point(job: &LeasedJob) -> u64 {
    job.progress
        .as_ref()
        .and_then(|p| p.get("done"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

async fn run_job(ctx: JobCtx, job: LeasedJob, stop: Arc<AtomicBool>) {
    let id = job.job_id;
    let result = drive(&ctx, &job, stop).await;
    if let Err(e) = result {
        tracing::warn!(job_id = %id, error = %e, "job ended without completing");
    }
    if let Ok(mut m) = ctx.running.lock() {
        m.remove(&id);
    }
}

/// What has happened since the last progress report.
struct Unreported {
    done: u64,
    ranges: Vec<RangeDone>,
    checkpoint: Option<serde_json::Value>,
    dirty: bool,
}

impl Unreported {
    fn apply(&mut self, u: Update) {
        self.done = u.done;
        if let Some(r) = u.range {
            self.ranges.push(r);
        }
        if u.checkpoint.is_some() {
            self.checkpoint = u.checkpoint;
        }
        self.dirty = true;
    }
}

/// Sends a progress report (which renews the lease). A stale lease stops the job; any other
/// failure keeps the ranges for the next report.
async fn report(
    ctx: &JobCtx,
    job: &LeasedJob,
    st: &mut Unreported,
    rate_per_s: f64,
    cut: &RangeEnd,
    stop: &AtomicBool,
) -> Result<bool, ClientError> {
    let req = ProgressRequest {
        fencing_token: job.fencing_token,
        done: st.done,
        rate_per_s,
        ranges: std::mem::take(&mut st.ranges),
        checkpoint: st.checkpoint.clone(),
    };
    match ctx.client.progress(job.job_id, &req).await {
        Ok(answer) => {
            if let Some(end) = answer.end_label {
                cut.lower_to(end);
            }
            st.dirty = false;
            Ok(true)
        }
        Err(e) if e.is_stale_lease() => {
            stop.store(true, Ordering::Relaxed);
            Err(e)
        }
        Err(e) => {
            tracing::warn!(job_id = %job.job_id, error = %e, "progress report failed; retrying later");
            st.ranges = req.ranges;
            Ok(false)
        }
    }
}

async fn drive(ctx: &JobCtx, job: &LeasedJob, stop: Arc<AtomicBool>) -> Result<(), ClientError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Where an init job ends now: lowered when a progress answer says the job was cut short.
    let cut = RangeEnd::default();
    {
        let (env, caps, job, stop, cut) = (
            ctx.env.clone(),
            ctx.caps.clone(),
            job.clone(),
            stop.clone(),
            cut.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let emit = |u: Update| {
                let _ = tx.send(JobEvent::Progress(u));
            };
            let out = match &job.stream {
                // Init for another rig's disk: compute here, send the labels there.
                Some(grant) => execute_streamed(&env, &job, grant, &cut, &stop, &emit),
                None => prepare(&env, &caps, &job).and_then(|mut task| {
                    if let Task::Init(t) = &mut task {
                        t.cut = cut;
                    }
                    let proof = proof_config(&env.cfg.proof, &job)?;
                    execute(&env, &proof, task, &stop, &emit)
                }),
            };
            let _ = tx.send(JobEvent::Finished(out));
        });
    }
    // A proving pass starts over (it is not resumable); the other kinds resume.
    let resumes = !matches!(job.spec.work, JobKind::Prove { .. });
    let mut st = Unreported {
        done: if resumes { resume_point(job) } else { 0 },
        ranges: Vec::new(),
        // Re-sent until the executor has a newer one, so that a keep-alive never erases it.
        checkpoint: if resumes {
            checkpoint(job.progress.as_ref())
        } else {
            None
        },
        dirty: false,
    };
    let start_done = st.done;
    let started = tokio::time::Instant::now();
    let rate = |st: &Unreported| {
        st.done.saturating_sub(start_done) as f64 / started.elapsed().as_secs_f64().max(1e-3)
    };
    // Report what changed every `progress_interval`, and renew the lease well before it ends
    // even when nothing did (a k2pow group or a proving pass can outlast a lease).
    let keepalive = (ctx.lease / 3).max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(
        ctx.progress_interval
            .min(keepalive)
            .max(Duration::from_millis(100)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_report = tokio::time::Instant::now();
    let outcome = loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(JobEvent::Progress(u)) => st.apply(u),
                Some(JobEvent::Finished(r)) => break r,
                // The executor ended without a word: it panicked.
                None => break Err(ExecError::Panicked),
            },
            _ = tick.tick() => {
                let since = last_report.elapsed();
                if (st.dirty && since >= ctx.progress_interval) || since >= keepalive {
                    let r = rate(&st);
                    if report(ctx, job, &mut st, r, &cut, &stop).await? {
                        last_report = tokio::time::Instant::now();
                    }
                }
            }
        }
    };
    match outcome {
        Ok(result) => {
            let req = CompleteRequest {
                fencing_token: job.fencing_token,
                ranges: std::mem::take(&mut st.ranges),
                result: Some(result),
            };
            ctx.client.complete(job.job_id, &req).await?;
            tracing::info!(job_id = %job.job_id, kind = %job.kind, "job complete");
        }
        Err(e) => {
            // Hand back: report what is durable, then fail (retryable unless the job is bad).
            if st.dirty {
                let r = rate(&st);
                report(ctx, job, &mut st, r, &cut, &stop).await?;
            }
            let stopped = matches!(e, ExecError::Stopped);
            if !stopped {
                tracing::warn!(job_id = %job.job_id, kind = %job.kind, error = %e, "job failed");
            }
            let req = FailRequest {
                fencing_token: job.fencing_token,
                error: if stopped {
                    "worker stopping: handed back".into()
                } else {
                    e.to_string()
                },
                retryable: e.is_retryable(),
                retry_after_ms: if stopped { None } else { Some(30_000) },
                disk_full: e.disk_full(),
            };
            ctx.client.fail(job.job_id, &req).await?;
        }
    }
    Ok(())
}

/// A leased job resolved against this rig.
enum Task {
    Init(InitTask),
    Verify(VerifyTask),
    K2pow(K2powTask),
    Prove(ProveTask),
}

fn target_disk<'a>(caps: &'a Capabilities, job: &LeasedJob) -> Result<&'a DiskInfo, ExecError> {
    let disk_id = job
        .spec
        .target
        .as_ref()
        .map(|t| t.disk_id.as_str())
        .ok_or_else(|| ExecError::Invalid(format!("{} job without a target disk", job.kind)))?;
    caps.disks
        .iter()
        .find(|d| d.id == disk_id)
        .ok_or_else(|| ExecError::Invalid(format!("disk {disk_id} is not on this rig")))
}

/// Resolves `job` (blocking: a prove job looks for its files on the disks).
fn prepare(env: &Env, caps: &Capabilities, job: &LeasedJob) -> Result<Task, ExecError> {
    Ok(match &job.spec.work {
        JobKind::Init { file_index, range } => Task::Init(InitTask {
            identity: job.identity.clone(),
            dir: identity_dir(target_disk(caps, job)?, &job.identity.node_id),
            disk_id: target_disk(caps, job)?.id.clone(),
            disk_dir: PathBuf::from(&target_disk(caps, job)?.mount),
            rig_dirs: caps
                .disks
                .iter()
                .map(|d| identity_dir(d, &job.identity.node_id))
                .collect(),
            file_index: u64::from(*file_index),
            start: range.start,
            end: range.end,
            resume_from: resume_point(job),
            cut: RangeEnd::default(),
        }),
        JobKind::Verify { file_index, range } => {
            // Resume only with the findings of the labels already covered.
            let resumed: Option<VerifyResult> = checkpoint(job.progress.as_ref());
            let mut seed = [0u8; 16];
            seed.copy_from_slice(job.job_id.as_bytes());
            Task::Verify(VerifyTask {
                identity: job.identity.clone(),
                dir: identity_dir(target_disk(caps, job)?, &job.identity.node_id),
                file_index: u64::from(*file_index),
                start: range.start,
                end: range.end,
                sample_per_chunk: env.cfg.verify_sample_per_chunk,
                seed,
                resume_from: if resumed.is_some() { resume_point(job) } else { 0 },
                resumed: resumed.unwrap_or_default(),
            })
        }
        JobKind::K2pow { groups } => {
            let resumed: Option<K2powResult> = checkpoint(job.progress.as_ref());
            Task::K2pow(K2powTask::new(
                &job.identity,
                job.spec.challenge.as_deref(),
                *groups,
                resumed.map(|r| r.pows).unwrap_or_default(),
            )?)
        }
        JobKind::Prove {
            first_nonce,
            nonces,
            disks,
        } => {
            // The disks the coordinator names, or every disk of the rig.
            let chosen: Vec<&DiskInfo> = if disks.is_empty() {
                caps.disks.iter().collect()
            } else {
                disks
                    .iter()
                    .map(|id| {
                        caps.disks
                            .iter()
                            .find(|d| &d.id == id)
                            .ok_or_else(|| ExecError::Invalid(format!("disk {id} is not on this rig")))
                    })
                    .collect::<Result<_, _>>()?
            };
            Task::Prove(ProveTask::new(
                &job.identity,
                job.spec.challenge.as_deref(),
                *first_nonce,
                *nonces,
                &job.pows,
                &chosen,
                env.threads,
            )?)
        }
    })
}

/// An init job whose target disk is on another rig (the lease carries a stream grant): computes
/// the labels on this rig's backend and sends every batch to the storage worker; a batch is
/// reported only after the storage worker acked it (fsynced there).
fn execute_streamed(
    env: &Env,
    job: &LeasedJob,
    grant: &protocol::StreamGrant,
    cut: &RangeEnd,
    stop: &AtomicBool,
    emit: &(dyn Fn(Update) + Sync),
) -> Result<serde_json::Value, ExecError> {
    use crate::stream::client::{run_streamed_init, ChunkSender, StreamedInit};
    let JobKind::Init { file_index, range } = &job.spec.work else {
        return Err(ExecError::Invalid(format!(
            "a {} job with a stream grant",
            job.kind
        )));
    };
    let task = StreamedInit {
        identity: job.identity.clone(),
        file_index: u64::from(*file_index),
        start: range.start,
        end: range.end,
        resume_from: resume_point(job),
        cut: cut.clone(),
        disk_id: job
            .spec
            .target
            .as_ref()
            .map(|t| t.disk_id.clone())
            .ok_or_else(|| ExecError::Invalid("a streamed init job without a target disk".into()))?,
    };
    let sender = ChunkSender::new(grant)?;
    let rt = tokio::runtime::Handle::current();
    let mut done = task.resume_from;
    let mut report = |r: RangeDone, _best: Option<VrfCandidate>| {
        done += r.end_label - r.start_label;
        emit(Update {
            done,
            range: Some(r),
            checkpoint: None,
        });
    };
    let o = run_streamed_init(&task, env.backend.as_ref(), &sender, &rt, stop, &mut report)?;
    Ok(serde_json::json!({
        "labels_written": o.labels_written,
        "streamed_to": grant.url,
        "vrf_nonce": o.best.map(|b| serde_json::json!({
            "index": b.index, "label32": hex::encode(b.label32)})),
    }))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, ExecError> {
    serde_json::to_value(v).map_err(|e| ExecError::Invalid(format!("encoding the result: {e}")))
}

/// The proof parameters of `job`: the coordinator's when the lease carries them, else this
/// worker's own.
fn proof_config(
    default: &post::proof::ProofConfig,
    job: &LeasedJob,
) -> Result<post::proof::ProofConfig, ExecError> {
    match &job.proof {
        None => Ok(*default),
        Some(p) => {
            let pow_difficulty = p
                .validate()
                .map_err(|e| ExecError::Invalid(format!("the lease's proof parameters: {e}")))?;
            Ok(post::proof::ProofConfig {
                k1: p.k1,
                k2: p.k2,
                pow_difficulty,
            })
        }
    }
}

/// Runs a resolved job on the calling (blocking) thread.
fn execute(
    env: &Env,
    proof: &post::proof::ProofConfig,
    task: Task,
    stop: &AtomicBool,
    emit: &(dyn Fn(Update) + Sync),
) -> Result<serde_json::Value, ExecError> {
    match task {
        Task::Init(task) => {
            let mut done = task.resume_from;
            let mut report = |r: RangeDone, _best: Option<VrfCandidate>| {
                done += r.end_label - r.start_label;
                emit(Update {
                    done,
                    range: Some(r),
                    checkpoint: None,
                });
            };
            let o = run_init(&task, env.backend.as_ref(), stop, &mut report)?;
            if let Some(best) = o.best {
                let merged = {
                    let _g = crate::exec::stripe::metadata_lock();
                    post::initialize::merge_nonce(&task.dir, best, task.identity.scrypt_n as usize)
                };
                if let Err(e) = merged {
                    tracing::warn!(error = %e, "could not record the VRF nonce in the local metadata");
                }
            }
            // The home directory gets the merged nonce (and any link still missing).
            crate::exec::init::sync_home_logged(&task);
            Ok(serde_json::json!({
                "labels_written": o.labels_written,
                "vrf_nonce": o.best.map(|b| serde_json::json!({
                    "index": b.index, "label32": hex::encode(b.label32)})),
            }))
        }
        Task::Verify(task) => {
            let mut report = |done: u64, so_far: &VerifyResult| {
                emit(Update {
                    done,
                    range: None,
                    checkpoint: serde_json::to_value(so_far).ok(),
                });
            };
            to_json(&run_verify(&task, env.backend.as_ref(), stop, &mut report)?)
        }
        Task::K2pow(task) => {
            let rx = env.pow.solver()?;
            let mut report = |so_far: &K2powResult| {
                emit(Update {
                    done: so_far.pows.len() as u64,
                    range: None,
                    checkpoint: serde_json::to_value(so_far).ok(),
                });
            };
            to_json(&run_k2pow(
                &task,
                proof,
                rx.as_ref(),
                rx.as_ref(),
                stop,
                &mut report,
            )?)
        }
        Task::Prove(task) => {
            // Checking the given pows needs RandomX; without it the coordinator's own check of
            // the proof still catches a bad pow.
            let verifier = match env.pow.verifier() {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the given k2pows before proving");
                    None
                }
            };
            // One report per 16 MiB read at most (the scanners call this after every 1 MiB).
            let sent = AtomicU64::new(0);
            let progress = |labels: u64| {
                let last = sent.load(Ordering::Relaxed);
                if labels >= last + (1 << 20)
                    && sent
                        .compare_exchange(last, labels, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    emit(Update {
                        done: labels,
                        range: None,
                        checkpoint: None,
                    });
                }
            };
            let v: Option<&dyn post::pow::PowVerifier> = verifier.as_deref().map(|v| v as _);
            to_json(&run_prove(&task, proof, v, stop, &progress)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{CpuInfo, GpuInfo};

    fn disk(id: &str) -> DiskInfo {
        DiskInfo {
            id: id.into(),
            mount: format!("/mnt/{id}"),
            physical_device: String::new(),
            filesystem: "ext4".into(),
            capacity_bytes: 10,
            free_bytes: 5,
            read_mb_s: 0.0,
            write_mb_s: 0.0,
        }
    }

    #[test]
    fn the_lease_proof_parameters_win() {
        let mut job: LeasedJob = serde_json::from_value(serde_json::json!({
            "job_id": uuid::Uuid::nil(), "kind": "k2pow", "fencing_token": 1, "lease_expires_at": 0,
            "attempt": 1,
            "identity": {"identity_id": uuid::Uuid::nil(), "node_id": "00".repeat(32),
                "commitment_atx_id": null, "num_units": 1, "labels_per_unit": 64,
                "max_file_size": 1024, "scrypt_n": 2},
            "spec": {"device": {"type": "cpu"}, "work": {"type": "k2pow", "groups": {"start": 0, "end": 1}}},
            "progress": null
        }))
        .expect("a lease without proof parameters");
        let mainnet = post::proof::ProofConfig::MAINNET;
        assert_eq!(proof_config(&mainnet, &job).expect("default"), mainnet);
        job.proof = Some(protocol::ProofParams {
            k1: 4,
            k2: 3,
            pow_difficulty: "ff".repeat(32),
        });
        let got = proof_config(&mainnet, &job).expect("the lease's");
        assert_eq!((got.k1, got.k2, got.pow_difficulty), (4, 3, [0xff; 32]));
        job.proof = Some(protocol::ProofParams {
            k1: 4,
            k2: 3,
            pow_difficulty: "zz".into(),
        });
        assert!(matches!(proof_config(&mainnet, &job), Err(ExecError::Invalid(_))));
    }

    #[test]
    fn kinds_follow_the_rig() {
        let mut caps = Capabilities::default();
        // No disk, no label device: k2pow only.
        assert!(lease_kinds(&caps, Slot::Storage).is_empty());
        assert_eq!(lease_kinds(&caps, Slot::Proof), vec!["k2pow"]);
        // A disk but no label device: verify and prove, no init.
        caps.disks.push(disk("d0"));
        assert_eq!(lease_kinds(&caps, Slot::Storage), vec!["verify"]);
        assert_eq!(lease_kinds(&caps, Slot::Proof), vec!["k2pow", "prove"]);
        // An enabled GPU, or a CPU allowed to compute labels: init too.
        caps.gpus.push(GpuInfo {
            index: 0,
            model: "x".into(),
            memory_bytes: 0,
            labels_per_s: 0.0,
            enabled: false,
            temperature_c: None,
            power_w: None,
            utilization_percent: None,
        });
        assert_eq!(lease_kinds(&caps, Slot::Storage), vec!["verify"]);
        caps.gpus[0].enabled = true;
        assert_eq!(lease_kinds(&caps, Slot::Storage), vec!["init", "verify"]);
        caps.gpus.clear();
        caps.cpu = CpuInfo {
            init_enabled: true,
            ..CpuInfo::default()
        };
        assert_eq!(lease_kinds(&caps, Slot::Storage), vec!["init", "verify"]);
    }

    #[test]
    fn every_kind_has_its_slot() {
        use protocol::{GroupRange, LabelRange};
        let r = LabelRange { start: 0, end: 1 };
        assert_eq!(
            slot_of(&JobKind::Init {
                file_index: 0,
                range: r
            }),
            Slot::Storage
        );
        assert_eq!(
            slot_of(&JobKind::Verify {
                file_index: 0,
                range: r
            }),
            Slot::Storage
        );
        assert_eq!(
            slot_of(&JobKind::K2pow {
                groups: GroupRange { start: 0, end: 1 }
            }),
            Slot::Proof
        );
        assert_eq!(
            slot_of(&JobKind::Prove {
                first_nonce: 0,
                nonces: 16,
                disks: vec![]
            }),
            Slot::Proof
        );
    }
}
