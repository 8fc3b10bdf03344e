//! The worker's main loop: enroll (once; the credential is kept in a 0600 file), heartbeat,
//! lease jobs, run them off the async runtime, report progress under the lease's fencing token,
//! and on shutdown hand back what it holds.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use post::backend::{CpuBackend, LabelBackend, VrfCandidate};
use protocol::{
    Capabilities, CompleteRequest, DiskInfo, FailRequest, HeartbeatRequest, JobKind, LeaseRequest, LeasedJob,
    ProgressRequest, RangeDone,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::client::{Client, ClientError};
use crate::exec::init::{run_init, InitTask};
use crate::exec::ExecError;

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

/// What a running job tells the lease loop.
enum JobEvent {
    Range(RangeDone),
    Finished(Result<serde_json::Value, ExecError>),
}

struct Running {
    stop: Arc<AtomicBool>,
}

/// The directory of an identity on one of this rig's disks.
pub fn identity_dir(disk: &DiskInfo, node_id: &str) -> PathBuf {
    Path::new(&disk.mount).join("smeshfleet").join(node_id)
}

/// Runs until `shutdown` completes; then stops its jobs at their next checkpoint, reports what
/// they finished and hands their leases back.
pub async fn run(opts: AgentOptions, shutdown: impl Future<Output = ()>) -> Result<()> {
    let mut client = Client::new(&opts.coordinator, None)?;
    let worker_id = enrollment(&opts, &mut client).await?;
    println!("smeshfleet worker {worker_id} running for {}", opts.coordinator);
    let backend: Arc<dyn LabelBackend> =
        Arc::new(CpuBackend::new(opts.cpu_threads.max(1)).context("starting the CPU label backend")?);
    let running: Arc<Mutex<HashMap<Uuid, Running>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut draining = false;
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
                        draining = r.drain;
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
                let busy = running.lock().map(|m| !m.is_empty()).unwrap_or(true);
                if busy || draining {
                    continue;
                }
                let req = LeaseRequest { kinds: vec!["init".into()], max_jobs: Some(1) };
                match client.lease(&req).await {
                    Ok(lease) => {
                        for job in lease.jobs {
                            let stop = Arc::new(AtomicBool::new(false));
                            if let Ok(mut m) = running.lock() {
                                m.insert(job.job_id, Running { stop: stop.clone() });
                            }
                            let ctx = JobCtx {
                                client: client.clone(),
                                backend: backend.clone(),
                                caps: opts.capabilities.clone(),
                                running: running.clone(),
                                progress_interval: opts.progress_interval,
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
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a job task ended abnormally");
                }
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
    backend: Arc<dyn LabelBackend>,
    caps: Capabilities,
    running: Arc<Mutex<HashMap<Uuid, Running>>>,
    progress_interval: Duration,
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

async fn drive(ctx: &JobCtx, job: &LeasedJob, stop: Arc<AtomicBool>) -> Result<(), ClientError> {
    let token = job.fencing_token;
    let (tx, mut rx) = mpsc::unbounded_channel();
    match prepare(ctx, job) {
        Ok(task) => {
            let backend = ctx.backend.clone();
            let stop2 = stop.clone();
            tokio::task::spawn_blocking(move || {
                let tx2 = tx.clone();
                let mut report = |r: RangeDone, _best: Option<VrfCandidate>| {
                    let _ = tx2.send(JobEvent::Range(r));
                };
                let out = run_init(&task, backend.as_ref(), &stop2, &mut report).map(|o| {
                    if let Some(best) = o.best {
                        if let Err(e) = post::initialize::merge_nonce(&task.dir, best, task.identity.scrypt_n as usize) {
                            tracing::warn!(error = %e, "could not record the VRF nonce in the local metadata");
                        }
                    }
                    serde_json::json!({
                        "labels_written": o.labels_written,
                        "vrf_nonce": o.best.map(|b| serde_json::json!({
                            "index": b.index, "label32": hex::encode(b.label32)})),
                    })
                });
                let _ = tx.send(JobEvent::Finished(out));
            });
        }
        Err(e) => {
            let _ = tx.send(JobEvent::Finished(Err(e)));
        }
    }
    let start_done = resume_point(job);
    let mut pending: Vec<RangeDone> = Vec::new();
    let mut done = start_done;
    let mut last_report = tokio::time::Instant::now();
    while let Some(ev) = rx.recv().await {
        match ev {
            JobEvent::Range(r) => {
                done += r.end_label - r.start_label;
                pending.push(r);
                if last_report.elapsed() >= ctx.progress_interval {
                    let req = ProgressRequest {
                        fencing_token: token,
                        done,
                        rate_per_s: 0.0,
                        ranges: std::mem::take(&mut pending),
                        checkpoint: None,
                    };
                    match ctx.client.progress(job.job_id, &req).await {
                        Ok(_) => last_report = tokio::time::Instant::now(),
                        Err(e) if e.is_stale_lease() => {
                            stop.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        Err(e) => {
                            // Keep the ranges; they go with the next report.
                            tracing::warn!(error = %e, "progress report failed; retrying later");
                            pending = req.ranges;
                        }
                    }
                }
            }
            JobEvent::Finished(Ok(result)) => {
                let req = CompleteRequest {
                    fencing_token: token,
                    ranges: std::mem::take(&mut pending),
                    result: Some(result),
                };
                ctx.client.complete(job.job_id, &req).await?;
                return Ok(());
            }
            JobEvent::Finished(Err(e)) => {
                // Hand back: report what is durable, then fail (retryable unless the job is bad).
                if !pending.is_empty() {
                    let req = ProgressRequest {
                        fencing_token: token,
                        done,
                        rate_per_s: 0.0,
                        ranges: std::mem::take(&mut pending),
                        checkpoint: None,
                    };
                    ctx.client.progress(job.job_id, &req).await?;
                }
                let stopped = matches!(e, ExecError::Stopped);
                let req = FailRequest {
                    fencing_token: token,
                    error: if stopped {
                        "worker stopping: handed back".into()
                    } else {
                        e.to_string()
                    },
                    retryable: e.is_retryable(),
                    retry_after_ms: if stopped { None } else { Some(30_000) },
                };
                ctx.client.fail(job.job_id, &req).await?;
                return Ok(());
            }
        }
    }
    Ok(())
}

fn prepare(ctx: &JobCtx, job: &LeasedJob) -> Result<InitTask, ExecError> {
    let JobKind::Init { file_index, range } = &job.spec.work else {
        return Err(ExecError::Invalid(format!(
            "this worker does not run {} jobs yet",
            job.kind
        )));
    };
    let disk_id = job
        .spec
        .target
        .as_ref()
        .map(|t| t.disk_id.as_str())
        .ok_or_else(|| ExecError::Invalid("init job without a target disk".into()))?;
    let disk = ctx
        .caps
        .disks
        .iter()
        .find(|d| d.id == disk_id)
        .ok_or_else(|| ExecError::Invalid(format!("disk {disk_id} is not on this rig")))?;
    Ok(InitTask {
        identity: job.identity.clone(),
        dir: identity_dir(disk, &job.identity.node_id),
        file_index: u64::from(*file_index),
        start: range.start,
        end: range.end,
        resume_from: resume_point(job),
    })
}
