//! The reconcile loop against a real store: snapshot -> plan -> apply, pass after pass, as workers
//! lease, report and vanish. Every case runs on SQLite (a temporary file) and on PostgreSQL (the
//! throwaway cluster of `support/pg.rs`).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator::metrics::Metrics;
use orchestrator::reconcile::{
    build_snapshot, build_snapshot_cached, reconcile_cached, reconcile_once, ApplyReport, FileCache,
    JobProgress, ProvingInput, ReconcileConfig, ReconcileInputs,
};
use orchestrator::scheduler::{self, Device, JobStatus, Plan, ProvingNeed, SchedulerConfig};
use orchestrator::store::{
    IdentityState, Job, JobFilter, JobKind, JobState, Lease, NewIdentity, NewJob, NewWorker, RangeReport,
    Store, WorkerState,
};
use protocol::{Capabilities, CpuInfo, DiskInfo, GpuInfo, JobSpec};
use serde_json::json;
use uuid::Uuid;

use support::pg;

const T0: i64 = 1_700_000_000_000;
const SEC: i64 = 1000;
const LEASE_MS: i64 = 30_000;
/// One file of 8192 labels (2 units x 4096 labels, max file size 128 KiB).
const LABELS: u64 = 8192;

/// One database for one test: a SQLite file in a temporary directory, or a fresh database in the
/// shared throwaway PostgreSQL cluster.
pub struct TestDb {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        TestDb {
            url: Store::sqlite_url(&dir.path().join("state.db")),
            _dir: Some(dir),
        }
    }

    async fn postgres() -> TestDb {
        TestDb {
            url: pg::shared().create_database().await,
            _dir: None,
        }
    }

    async fn open(&self) -> Store {
        Store::connect(&self.url).await.expect("open store")
    }
}

/// Generates `mod sqlite { #[tokio::test] fn case() }` and `mod postgres { ... }` for every case.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(super::TestDb::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(super::TestDb::postgres().await).await
                }
            )*
        }
    };
}

suite!(
    places_files_and_queues_init_in_proportion_to_speed,
    recorded_progress_makes_the_identity_ready,
    silent_worker_goes_offline_and_its_work_moves,
    expired_lease_is_requeued_and_counted,
    proving_input_queues_k2pow_then_prove,
    bad_payloads_and_capabilities_are_skipped,
    run_loop_publishes_plans_and_stops_on_shutdown,
);

// ---------------------------------------------------------------------------------------------
// Fixture

fn caps(gpu_labels_per_s: f64, disk: bool, randomx: f64) -> serde_json::Value {
    let c = Capabilities {
        hostname: "rig".into(),
        version: "test".into(),
        gpus: vec![GpuInfo {
            index: 0,
            model: "test".into(),
            memory_bytes: 0,
            labels_per_s: gpu_labels_per_s,
            enabled: true,
            temperature_c: None,
            power_w: None,
            utilization_percent: None,
        }],
        cpu: CpuInfo {
            threads: 8,
            labels_per_s: 0.0,
            randomx_hashes_per_s: randomx,
            proving_mib_s_per_16_nonces: 0.0,
            init_enabled: false,
        },
        disks: if disk {
            vec![DiskInfo {
                id: "d0".into(),
                mount: "/data".into(),
                physical_device: "sda".into(),
                filesystem: "ext4".into(),
                capacity_bytes: 1 << 30,
                free_bytes: 1 << 30,
                read_mb_s: 200.0,
                write_mb_s: 0.0,
            }]
        } else {
            Vec::new()
        },
        paused: false,
        // Storage rigs take streamed labels, so GPU rigs without disks may initialize them.
        stream_url: disk.then(|| "http://127.0.0.1:7780".to_owned()),
    };
    serde_json::to_value(c).expect("capabilities")
}

struct Fleet {
    store: Store,
    metrics: Metrics,
    cfg: ReconcileConfig,
    inputs: ReconcileInputs,
    /// GPU 300 labels/s, the only disk, no k2pow.
    a: Uuid,
    /// GPU 100 labels/s, no disk, the k2pow CPU.
    b: Uuid,
    ident: Uuid,
    /// The loop's file cache, kept across this fleet's passes.
    files: tokio::sync::Mutex<FileCache>,
    _db: TestDb,
}

impl Fleet {
    async fn new(db: TestDb, t: i64) -> Fleet {
        let store = db.open().await;
        let worker = |name: &str, cred: u8, caps: serde_json::Value| NewWorker {
            name: name.into(),
            credential_hash: [cred; 32],
            capabilities: caps,
        };
        let a = store
            .create_worker(&worker("rig-a", 1, caps(300.0, true, 0.0)), t)
            .await
            .expect("worker a")
            .id;
        let b = store
            .create_worker(&worker("rig-b", 2, caps(100.0, false, 5000.0)), t)
            .await
            .expect("worker b")
            .id;
        let ident = store
            .create_identity(
                &NewIdentity {
                    name: "alpha".into(),
                    node_id: [7; 32],
                    num_units: 2,
                    labels_per_unit: 4096,
                    max_file_size: 16 * LABELS,
                    scrypt_n: 8192,
                    commitment_atx_id: None,
                    coinbase: None,
                },
                t,
            )
            .await
            .expect("identity")
            .id;
        Fleet {
            store,
            metrics: Metrics::new(),
            cfg: ReconcileConfig {
                interval: Duration::from_millis(50),
                offline_after_ms: 60 * SEC,
                min_gap: Duration::from_millis(10),
                scheduler: SchedulerConfig {
                    min_chunk_labels: 256,
                    ..SchedulerConfig::default()
                },
            },
            inputs: ReconcileInputs::default(),
            files: tokio::sync::Mutex::new(FileCache::new()),
            a,
            b,
            ident,
            _db: db,
        }
    }

    /// One pass the loop's way (files from the fleet's cache), after checking that the cached
    /// snapshot equals one read from scratch: the cache must never miss a change.
    async fn reconcile(&self, now: i64) -> (Plan, ApplyReport) {
        let mut files = self.files.lock().await;
        let fresh = build_snapshot(&self.store, now, &self.inputs, &self.cfg)
            .await
            .expect("snapshot");
        let cached = build_snapshot_cached(&self.store, &mut files, now, &self.inputs, &self.cfg)
            .await
            .expect("cached snapshot");
        assert_eq!(cached, fresh, "the file cache differs from the store");
        reconcile_cached(
            &self.store,
            &mut files,
            None,
            &self.metrics,
            &self.cfg,
            &self.inputs,
            now,
        )
        .await
        .expect("reconcile")
    }

    async fn heartbeat(&self, workers: &[Uuid], now: i64) {
        for &w in workers {
            self.store.heartbeat(w, now, None).await.expect("heartbeat");
        }
    }

    async fn jobs(&self, kind: JobKind, state: JobState) -> Vec<Job> {
        self.store
            .list_jobs(&JobFilter {
                kind: Some(kind),
                state: Some(state),
                ..JobFilter::default()
            })
            .await
            .expect("list jobs")
    }

    async fn lease(&self, worker: Uuid, kind: JobKind, now: i64) -> Vec<Lease> {
        self.store
            .lease_jobs(worker, &[kind], now, LEASE_MS, 10)
            .await
            .expect("lease")
    }

    /// Records labels `[start, end)` of file 0 under the lease.
    async fn record(&self, lease: &Lease, start: u64, end: u64, now: i64) {
        let r = RangeReport {
            identity_id: self.ident,
            file_index: 0,
            start_label: start,
            end_label: end,
            job_id: lease.job.id,
            worker_id: lease.job.worker_id.expect("leased"),
            fencing_token: lease.fencing_token,
        };
        self.store.record_range_done(&r, now).await.expect("record range");
    }

    async fn complete(&self, lease: &Lease, now: i64) {
        self.store
            .complete_job(
                lease.job.id,
                lease.job.worker_id.expect("leased"),
                lease.fencing_token,
                &json!({}),
                now,
            )
            .await
            .expect("complete");
    }

    async fn state(&self) -> IdentityState {
        self.store.get_identity(self.ident).await.expect("identity").state
    }

    async fn event_kinds(&self) -> Vec<String> {
        self.store
            .list_events_since(0, 1000)
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    /// Runs the whole init: plan, both workers compute and record their ranges, ready.
    async fn initialize(&self, t: i64) {
        self.reconcile(t).await;
        for w in [self.a, self.b] {
            for l in self.lease(w, JobKind::Init, t + SEC).await {
                let (_, range) = init_of(&l.job);
                self.record(&l, range.0, range.1, t + 2 * SEC).await;
                self.complete(&l, t + 2 * SEC).await;
            }
        }
        self.heartbeat(&[self.a, self.b], t + 3 * SEC).await;
        self.reconcile(t + 3 * SEC).await;
        assert_eq!(self.state().await, IdentityState::Ready);
    }
}

fn spec(job: &Job) -> JobSpec {
    serde_json::from_value(job.payload.clone()).expect("job spec")
}

/// (device, [start, end)) of an init job.
fn init_of(job: &Job) -> (Device, (u64, u64)) {
    let s = spec(job);
    match s.work {
        scheduler::JobKind::Init { file_index, range } => {
            assert_eq!(file_index, 0);
            (s.device, (range.start, range.end))
        }
        other => panic!("not an init job: {other:?}"),
    }
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

// ---------------------------------------------------------------------------------------------
// Cases

mod cases {
    use super::*;

    pub async fn places_files_and_queues_init_in_proportion_to_speed(db: TestDb) {
        let f = Fleet::new(db, T0).await;
        let (plan, report) = f.reconcile(T0).await;
        assert_eq!(report.files_placed, 1, "{report:?}");
        assert_eq!(report.init_queued, 2, "{report:?}");
        assert_eq!((report.cancelled, report.skipped), (0, 0));
        assert_eq!(plan.init.len(), 2);

        // The file lives on A's only disk.
        let files = f.store.list_identity_files(f.ident).await.expect("files");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].worker_id, Some(f.a));
        assert_eq!(files[0].disk_id.as_deref(), Some("d0"));

        // Every label exactly once, 3:1 like the GPUs' speeds, written to A's disk.
        let mut jobs = f.jobs(JobKind::Init, JobState::Queued).await;
        jobs.sort_by_key(|j| init_of(j).1);
        let got: Vec<(Option<Uuid>, Device, (u64, u64))> = jobs
            .iter()
            .map(|j| {
                let (d, r) = init_of(j);
                (j.assigned_worker_id, d, r)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(f.a), Device::Gpu { index: 0 }, (0, 6144)),
                (Some(f.b), Device::Gpu { index: 0 }, (6144, LABELS)),
            ]
        );
        for j in &jobs {
            let target = spec(j).target.expect("target");
            assert_eq!(
                (target.worker_id, target.disk_id),
                (f.a.to_string(), "d0".to_owned())
            );
            let (_, (start, _)) = init_of(j);
            assert_eq!(
                j.key.as_deref(),
                Some(format!("init:{}:0:{start}", f.ident).as_str())
            );
        }
        // An init job exists: the identity is initializing.
        assert_eq!(f.state().await, IdentityState::Initializing);
        let kinds = f.event_kinds().await;
        assert_eq!(count(&kinds, "identity.placed"), 1, "{kinds:?}");
        assert_eq!(count(&kinds, "job.queued"), 2, "{kinds:?}");
        assert_eq!(count(&kinds, "identity.state"), 1, "{kinds:?}");

        // Planning the applied state again: nothing to do, nothing written.
        f.heartbeat(&[f.a, f.b], T0 + SEC).await;
        let (plan, report) = f.reconcile(T0 + SEC).await;
        assert!(plan.has_no_actions(), "{plan:#?}");
        assert!(!report.changed(), "{report:?}");
        assert_eq!(report.events, 0);
        assert_eq!(f.event_kinds().await.len(), kinds.len());
        assert_eq!(f.jobs(JobKind::Init, JobState::Queued).await.len(), 2);
    }

    pub async fn recorded_progress_makes_the_identity_ready(db: TestDb) {
        let f = Fleet::new(db, T0).await;
        f.reconcile(T0).await;

        // B finishes the tail first: a recorded run not at the file's start counts as done.
        let lb = f.lease(f.b, JobKind::Init, T0 + SEC).await;
        assert_eq!(lb.len(), 1);
        f.record(&lb[0], 6144, 7000, T0 + 2 * SEC).await;
        f.record(&lb[0], 7000, LABELS, T0 + 3 * SEC).await;
        f.complete(&lb[0], T0 + 3 * SEC).await;
        f.heartbeat(&[f.a, f.b], T0 + 4 * SEC).await;
        let (plan, report) = f.reconcile(T0 + 4 * SEC).await;
        assert!(plan.has_no_actions(), "{plan:#?}");
        assert_eq!(report.jobs_queued(), 0);
        assert_eq!(f.state().await, IdentityState::Initializing);

        // A reports progress: running, with its recorded labels as progress.
        let la = f.lease(f.a, JobKind::Init, T0 + 5 * SEC).await;
        assert_eq!(la.len(), 1);
        f.record(&la[0], 0, 3000, T0 + 6 * SEC).await;
        let progress = JobProgress {
            done: 3000,
            rate_per_s: 300.0,
            started_at: T0 + 5 * SEC,
            checkpoint: None,
        };
        f.store
            .renew_lease(
                la[0].job.id,
                f.a,
                la[0].fencing_token,
                Some(&serde_json::to_value(&progress).expect("progress")),
                T0 + 6 * SEC,
                LEASE_MS,
            )
            .await
            .expect("renew");
        f.heartbeat(&[f.a, f.b], T0 + 7 * SEC).await;
        let snap = build_snapshot(&f.store, T0 + 7 * SEC, &f.inputs, &f.cfg)
            .await
            .expect("snapshot");
        let job = snap
            .jobs
            .iter()
            .find(|j| j.id == la[0].job.id.to_string())
            .expect("A's job in the snapshot");
        assert_eq!(job.state, JobStatus::Running);
        assert_eq!(job.progress, 3000);
        assert_eq!(job.started_ms, Some(T0 + 5 * SEC));
        assert_eq!(job.lease_expires_ms, Some(T0 + 6 * SEC + LEASE_MS));
        assert_eq!(job.worker_id, f.a.to_string());
        let file = &snap.identities[0].files[0];
        assert_eq!(file.labels_done, 3000);
        assert_eq!(file.labels_total, LABELS);
        assert!(
            snap.jobs
                .iter()
                .any(|j| j.id == format!("range:{}:6144", f.ident) && j.progress == LABELS - 6144),
            "the tail run is a finished job: {:#?}",
            snap.jobs
        );
        let (plan, _) = f.reconcile(T0 + 7 * SEC).await;
        assert!(plan.has_no_actions(), "{plan:#?}");

        // The rest, then ready: no more init work.
        f.record(&la[0], 3000, 6144, T0 + 8 * SEC).await;
        f.complete(&la[0], T0 + 8 * SEC).await;
        f.heartbeat(&[f.a, f.b], T0 + 9 * SEC).await;
        let (plan, report) = f.reconcile(T0 + 9 * SEC).await;
        assert_eq!(f.state().await, IdentityState::Ready);
        assert_eq!(report.identity_state_changes, 1);
        assert!(plan.has_no_actions(), "{plan:#?}");
        let events = f.store.list_events_since(0, 1000).await.expect("events");
        let last_state = events
            .iter()
            .rev()
            .find(|e| e.kind == "identity.state")
            .expect("state event");
        assert_eq!(last_state.subject, f.ident.to_string());
        assert_eq!(last_state.data["to"], "ready");
        let (plan, report) = f.reconcile(T0 + 10 * SEC).await;
        assert!(plan.has_no_actions() && !report.changed(), "{plan:#?} {report:?}");
        assert!(f.jobs(JobKind::Init, JobState::Queued).await.is_empty());
    }

    pub async fn silent_worker_goes_offline_and_its_work_moves(db: TestDb) {
        let f = Fleet::new(db, T0).await;
        f.reconcile(T0).await;
        let la = f.lease(f.a, JobKind::Init, T0 + SEC).await;
        f.record(&la[0], 0, 6144, T0 + 10 * SEC).await;
        f.complete(&la[0], T0 + 10 * SEC).await;
        let jb = f.jobs(JobKind::Init, JobState::Queued).await;
        assert_eq!(jb.len(), 1);
        assert_eq!(jb[0].assigned_worker_id, Some(f.b));

        // Two minutes later only A still sends heartbeats.
        let now = T0 + 120 * SEC;
        f.heartbeat(&[f.a], now).await;
        let (plan, report) = f.reconcile(now).await;
        assert_eq!(report.workers_offline, 1, "{report:?}");
        assert_eq!(
            f.store.get_worker(f.b).await.expect("b").state,
            WorkerState::Offline
        );
        assert_eq!(report.cancelled, 1, "{report:?}");
        assert_eq!(plan.cancellations[0].job_id, jb[0].id.to_string());
        assert_eq!(
            f.store.get_job(jb[0].id).await.expect("job").state,
            JobState::Cancelled
        );
        // B's range now runs on A.
        let queued = f.jobs(JobKind::Init, JobState::Queued).await;
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].assigned_worker_id, Some(f.a));
        assert_eq!(init_of(&queued[0]).1, (6144, LABELS));
        let kinds = f.event_kinds().await;
        assert_eq!(count(&kinds, "worker.offline"), 1, "{kinds:?}");
        assert_eq!(count(&kinds, "job.cancelled"), 1, "{kinds:?}");
        // Stable afterwards.
        f.heartbeat(&[f.a], now + SEC).await;
        let (plan, _) = f.reconcile(now + SEC).await;
        assert!(plan.has_no_actions(), "{plan:#?}");
    }

    pub async fn expired_lease_is_requeued_and_counted(db: TestDb) {
        let f = Fleet::new(db, T0).await;
        f.reconcile(T0).await;
        let la = f.lease(f.a, JobKind::Init, T0 + SEC).await;
        assert_eq!(la.len(), 1);

        let now = T0 + SEC + LEASE_MS + SEC;
        f.heartbeat(&[f.a, f.b], now).await;
        let (plan, report) = f.reconcile(now).await;
        assert_eq!(report.leases_expired, 1, "{report:?}");
        assert_eq!(
            f.store.get_job(la[0].job.id).await.expect("job").state,
            JobState::Queued
        );
        // Requeued for the same worker: nothing new to plan.
        assert!(plan.has_no_actions(), "{plan:#?}");
        let text = f.metrics.render();
        assert!(text.contains("smeshfleet_lease_expiries_total 1"), "{text}");
        assert!(
            text.contains(r#"smeshfleet_jobs{kind="init",state="queued"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"smeshfleet_jobs{kind="prove",state="done"} 0"#),
            "{text}"
        );
        assert!(text.contains(r#"smeshfleet_workers{state="online"} 2"#), "{text}");
        assert!(
            text.contains(r#"smeshfleet_workers{state="removed"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"smeshfleet_identities{state="initializing"} 1"#),
            "{text}"
        );
        let kinds = f.event_kinds().await;
        assert_eq!(count(&kinds, "lease.expired"), 1, "{kinds:?}");
    }

    pub async fn proving_input_queues_k2pow_then_prove(db: TestDb) {
        let mut f = Fleet::new(db, T0).await;
        f.initialize(T0).await;
        let now = T0 + 10 * SEC;
        let challenge = [9u8; 32];
        let hex = hex::encode(challenge);
        f.inputs.proving.insert(
            f.ident,
            ProvingInput {
                challenge,
                need: ProvingNeed {
                    challenge_known_at_ms: now,
                    deadline_ms: now + 12 * 3_600_000,
                    first_nonce: 0,
                    pow_groups_done: 0,
                },
            },
        );
        f.heartbeat(&[f.a, f.b], now).await;
        let (plan, report) = f.reconcile(now).await;
        assert!(report.k2pow_queued >= 1, "{report:?}");
        assert_eq!(report.prove_queued, 1, "{report:?}");

        // k2pow on B (the only RandomX CPU), covering the pass's groups.
        let k2 = f.jobs(JobKind::K2pow, JobState::Queued).await;
        assert_eq!(k2.len() as u64, report.k2pow_queued);
        let nonces = plan.proofs[0].nonces;
        let mut groups: Vec<(u32, u32)> = Vec::new();
        for j in &k2 {
            assert_eq!(j.assigned_worker_id, Some(f.b));
            let s = spec(j);
            assert_eq!(s.challenge.as_deref(), Some(hex.as_str()));
            assert_eq!(s.device, Device::Cpu);
            let scheduler::JobKind::K2pow { groups: g } = s.work else {
                panic!("not k2pow: {s:?}")
            };
            assert_eq!(
                j.key.as_deref(),
                Some(format!("k2pow:{}:{hex}:{}", f.ident, g.start).as_str())
            );
            groups.push((g.start, g.end));
        }
        groups.sort_unstable();
        assert_eq!(groups.first().map(|g| g.0), Some(0));
        assert_eq!(groups.last().map(|g| g.1), Some(nonces / 16));

        // The pass on A (it holds the data), not before the k2pow is expected done.
        let prove = f.jobs(JobKind::Prove, JobState::Queued).await;
        assert_eq!(prove.len(), 1);
        assert_eq!(prove[0].assigned_worker_id, Some(f.a));
        assert!(prove[0].not_before >= now, "{prove:?}");
        assert_eq!(prove[0].not_before, plan.proofs[0].start_ms);
        assert_eq!(
            prove[0].key.as_deref(),
            Some(format!("prove:{}:{hex}:0", f.ident).as_str())
        );
        let ps = spec(&prove[0]);
        assert_eq!(ps.challenge.as_deref(), Some(hex.as_str()));
        assert_eq!(
            ps.work,
            scheduler::JobKind::Prove {
                first_nonce: 0,
                nonces,
                disks: vec!["d0".into()],
            }
        );

        // Idempotent.
        let (plan, _) = f.reconcile(now + SEC).await;
        assert!(plan.has_no_actions(), "{plan:#?}");

        // B solves the k2pow: finished groups are not planned again.
        for l in f.lease(f.b, JobKind::K2pow, now + 2 * SEC).await {
            f.complete(&l, now + 3 * SEC).await;
        }
        f.heartbeat(&[f.a, f.b], now + 4 * SEC).await;
        let (plan, report) = f.reconcile(now + 4 * SEC).await;
        assert!(plan.has_no_actions(), "{plan:#?} {report:?}");

        // A proves: the proof exists, no new pass.
        let t = prove[0].not_before.max(now + 5 * SEC);
        f.heartbeat(&[f.a, f.b], t).await;
        let lp = f.lease(f.a, JobKind::Prove, t).await;
        assert_eq!(lp.len(), 1);
        f.complete(&lp[0], t + SEC).await;
        f.heartbeat(&[f.a, f.b], t + 2 * SEC).await;
        let (plan, report) = f.reconcile(t + 2 * SEC).await;
        assert!(plan.has_no_actions(), "{plan:#?} {report:?}");
        assert_eq!(plan.summary.proofs_pending, 0);

        // A new challenge: the k2pow of the old one is not counted, new work is queued.
        let challenge2 = [10u8; 32];
        if let Some(p) = f.inputs.proving.get_mut(&f.ident) {
            p.challenge = challenge2;
            p.need.challenge_known_at_ms = t + 3 * SEC;
        }
        let (_, report) = f.reconcile(t + 3 * SEC).await;
        assert!(report.k2pow_queued >= 1 && report.prove_queued == 1, "{report:?}");
    }

    pub async fn bad_payloads_and_capabilities_are_skipped(db: TestDb) {
        let f = Fleet::new(db, T0).await;
        let mut junk = NewJob::new(JobKind::Init, f.ident, json!({"what": "no spec"}));
        junk.assigned_worker_id = Some(f.a);
        let junk = f.store.enqueue_job(&junk, T0).await.expect("junk job");
        // Init kind, k2pow payload: skipped too.
        let mut wrong = NewJob::new(
            JobKind::Init,
            f.ident,
            serde_json::to_value(JobSpec {
                device: Device::Cpu,
                work: scheduler::JobKind::K2pow {
                    groups: scheduler::GroupRange { start: 0, end: 1 },
                },
                target: None,
                challenge: None,
            })
            .expect("spec"),
        );
        wrong.assigned_worker_id = Some(f.a);
        let wrong = f.store.enqueue_job(&wrong, T0).await.expect("wrong job");
        let odd = f
            .store
            .create_worker(
                &NewWorker {
                    name: "odd".into(),
                    credential_hash: [3; 32],
                    capabilities: json!({"gpus": 1, "unknown": true}),
                },
                T0,
            )
            .await
            .expect("odd worker");

        let snap = build_snapshot(&f.store, T0, &f.inputs, &f.cfg)
            .await
            .expect("snapshot");
        assert!(!snap
            .jobs
            .iter()
            .any(|j| j.id == junk.id.to_string() || j.id == wrong.id.to_string()));
        let w = snap
            .workers
            .iter()
            .find(|w| w.id == odd.id.to_string())
            .expect("odd worker is in the snapshot");
        assert!(w.online && w.gpus.is_empty() && w.disks.is_empty(), "{w:?}");

        // Planning goes on around them.
        let (_, report) = f.reconcile(T0).await;
        assert_eq!(report.init_queued, 2, "{report:?}");
        assert_eq!(
            f.store.get_job(junk.id).await.expect("junk").state,
            JobState::Queued
        );
    }

    pub async fn run_loop_publishes_plans_and_stops_on_shutdown(db: TestDb) {
        let now = orchestrator::reconcile::now_ms();
        let f = Fleet::new(db, now).await;
        let latest = Arc::new(tokio::sync::RwLock::new(None));
        let wake = Arc::new(tokio::sync::Notify::new());
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let mut cfg = f.cfg.clone();
        cfg.interval = Duration::from_secs(3600);
        let task = tokio::spawn(orchestrator::reconcile::run(
            f.store.clone(),
            Arc::new(Metrics::new()),
            cfg,
            Arc::new(tokio::sync::RwLock::new(ReconcileInputs::default())),
            Arc::clone(&latest),
            Arc::clone(&wake),
            shutdown,
        ));
        // The first pass runs at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        while latest.read().await.is_none() {
            assert!(Instant::now() < deadline, "no plan published");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let first = latest.read().await.clone().expect("plan");
        assert_eq!(first.init.len(), 2);
        // A wake starts another pass long before the interval.
        wake.notify_one();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let cur = latest.read().await.clone().expect("plan");
            if !Arc::ptr_eq(&cur, &first) {
                assert!(cur.has_no_actions(), "{cur:#?}");
                break;
            }
            assert!(Instant::now() < deadline, "wake did not start a pass");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(true).expect("send shutdown");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("loop stops on shutdown")
            .expect("loop task");
    }
}

// ---------------------------------------------------------------------------------------------
// Scale

/// A fleet of the size the coordinator is built for, in the cycle gap: 1,000 workers (50 GPU
/// rigs, 950 storage rigs that also do k2pow), 10,000 ready identities (two files each, all
/// recorded) waiting for a proof, each with a queued k2pow and a queued proving pass: 20,000 live
/// jobs. Slow to set up, so run on demand:
/// `cargo test -p orchestrator --test reconcile -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fleet-scale timing; run on demand"]
async fn snapshot_of_a_large_fleet() {
    let db = TestDb::sqlite().await;
    let store = db.open().await;
    sqlx::any::install_default_drivers();
    let raw = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .expect("raw pool");
    let setup = Instant::now();
    let mut tx = raw.begin().await.expect("begin");
    let workers: Vec<Uuid> = (0..1000).map(|_| Uuid::new_v4()).collect();
    for (k, w) in workers.iter().enumerate() {
        let gpu_rig = k % 20 == 0;
        let c = caps(
            if gpu_rig { 1.0e6 } else { 0.0 },
            !gpu_rig,
            if gpu_rig { 0.0 } else { 4000.0 },
        );
        sqlx::query(
            "INSERT INTO workers (id, name, credential_hash, state, capabilities, last_heartbeat_at, \
             created_at, updated_at) VALUES ($1, $2, $3, 'online', $4, $5, $5, $5)",
        )
        .bind(w.to_string())
        .bind(format!("w{k:04}"))
        .bind(hex::encode(w.as_bytes()).repeat(2))
        .bind(c.to_string())
        .bind(T0)
        .execute(&mut *tx)
        .await
        .expect("worker");
    }
    let storage: Vec<Uuid> = workers
        .iter()
        .enumerate()
        .filter(|(k, _)| k % 20 != 0)
        .map(|(_, w)| *w)
        .collect();
    let challenge = [5u8; 32];
    let hex_challenge = hex::encode(challenge);
    let mut inputs = ReconcileInputs::default();
    let insert_job =
        |id: Uuid, kind: &'static str, key: String, spec: JobSpec, worker: Uuid, not_before: i64| {
            sqlx::query(
                "INSERT INTO jobs (id, kind, identity_id, job_key, payload, state, assigned_worker_id, \
             max_attempts, not_before, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6, 3, $7, $8, $8)",
            )
            .bind(Uuid::new_v4().to_string())
            .bind(kind)
            .bind(id.to_string())
            .bind(key)
            .bind(serde_json::to_string(&spec).expect("spec"))
            .bind(worker.to_string())
            .bind(not_before)
            .bind(T0)
        };
    for i in 0..10_000usize {
        let id = Uuid::new_v4();
        let w = storage[i % storage.len()];
        sqlx::query(
            "INSERT INTO identities (id, name, node_id, num_units, labels_per_unit, max_file_size, scrypt_n, \
             state, created_at, updated_at) VALUES ($1, $2, $3, 2, 4096, 65536, 8192, 'waiting_for_challenge', $4, $4)",
        )
        .bind(id.to_string())
        .bind(format!("id{i:05}"))
        .bind(hex::encode(id.as_bytes()).repeat(2))
        .bind(T0)
        .execute(&mut *tx)
        .await
        .expect("identity");
        for file in 0..2i64 {
            sqlx::query(
                "INSERT INTO identity_files (identity_id, file_index, worker_id, disk_id, state, updated_at) \
                 VALUES ($1, $2, $3, 'd0', 'done', $4)",
            )
            .bind(id.to_string())
            .bind(file)
            .bind(w.to_string())
            .bind(T0)
            .execute(&mut *tx)
            .await
            .expect("file");
            sqlx::query(
                "INSERT INTO init_ranges (identity_id, start_label, end_label, file_index, job_id, \
                 fencing_token, updated_at) VALUES ($1, $2, $3, $4, $5, 1, $6)",
            )
            .bind(id.to_string())
            .bind(file * 4096)
            .bind((file + 1) * 4096)
            .bind(file)
            .bind(Uuid::new_v4().to_string())
            .bind(T0)
            .execute(&mut *tx)
            .await
            .expect("range");
        }
        let k2pow = JobSpec {
            device: Device::Cpu,
            work: scheduler::JobKind::K2pow {
                groups: scheduler::GroupRange { start: 0, end: 18 },
            },
            target: None,
            challenge: Some(hex_challenge.clone()),
        };
        insert_job(id, "k2pow", format!("k2pow:{id}:{hex_challenge}:0"), k2pow, w, 0)
            .execute(&mut *tx)
            .await
            .expect("k2pow job");
        let prove = JobSpec {
            device: Device::Cpu,
            work: scheduler::JobKind::Prove {
                first_nonce: 0,
                nonces: 288,
                disks: vec!["d0".into()],
            },
            target: None,
            challenge: Some(hex_challenge.clone()),
        };
        insert_job(
            id,
            "prove",
            format!("prove:{id}:{hex_challenge}:0"),
            prove,
            w,
            T0 + 60 * SEC,
        )
        .execute(&mut *tx)
        .await
        .expect("prove job");
        inputs.proving.insert(
            id,
            ProvingInput {
                challenge,
                need: ProvingNeed {
                    challenge_known_at_ms: T0,
                    deadline_ms: T0 + 12 * 3_600_000,
                    first_nonce: 0,
                    pow_groups_done: 0,
                },
            },
        );
    }
    tx.commit().await.expect("commit");
    println!("setup: {:?}", setup.elapsed());

    // Where the time goes, one query at a time.
    let ids: Vec<Uuid> = inputs.proving.keys().copied().collect();
    let t = Instant::now();
    let n = store.list_live_jobs().await.expect("live").len();
    println!("  list_live_jobs: {n} rows {:?}", t.elapsed());
    let t = Instant::now();
    let n = store.list_workers().await.expect("workers").len();
    println!("  list_workers: {n} rows {:?}", t.elapsed());
    let t = Instant::now();
    let all: Vec<Uuid> = store
        .list_identities()
        .await
        .expect("identities")
        .iter()
        .map(|i| i.id)
        .collect();
    println!("  list_identities: {} rows {:?}", all.len(), t.elapsed());
    let t = Instant::now();
    let n = store.list_identity_file_revs().await.expect("revs").len();
    println!("  list_identity_file_revs: {n} rows {:?}", t.elapsed());
    let t = Instant::now();
    let (files, ranges) = store.list_files_and_ranges_of(&all).await.expect("files");
    println!(
        "  list_files_and_ranges_of (the file cache's cold load): {} files, {} ranges {:?}",
        files.len(),
        ranges.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let n = store
        .list_finished_jobs_since(&ids, &[JobKind::K2pow, JobKind::Prove], T0 - 3_600_000)
        .await
        .expect("finished")
        .len();
    println!("  list_finished_jobs_since: {n} rows {:?}", t.elapsed());

    let cfg = ReconcileConfig::default();
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let snap = build_snapshot(&store, T0 + SEC, &inputs, &cfg)
            .await
            .expect("snapshot");
        best = best.min(t.elapsed());
        assert_eq!(snap.workers.len(), 1000);
        assert_eq!(snap.identities.len(), 10_000);
        assert_eq!(snap.jobs.len(), 20_000);
    }
    println!("build_snapshot (1,000 workers, 10,000 identities, 20,000 files, 20,000 live jobs): best of 3 {best:?}");
    for _ in 0..2 {
        let t = Instant::now();
        let (plan, report) = reconcile_once(&store, &Metrics::new(), &cfg, &inputs, T0 + SEC)
            .await
            .expect("reconcile");
        println!(
            "reconcile_once: {:?} ({} actions, {} at risk; {report:?})",
            t.elapsed(),
            plan.action_count(),
            plan.at_risk.len()
        );
    }
    assert!(best < Duration::from_secs(3), "snapshot took {best:?}");
}
