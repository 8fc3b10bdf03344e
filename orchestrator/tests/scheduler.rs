//! The scheduler's invariants on random fleets (proptest), and hand-made examples with exact plans.

use std::collections::{BTreeMap, BTreeSet};

use orchestrator::scheduler::{
    apply, plan, CancelReason, CpuState, Device, DiskState, FileLocation, FileState, GpuState, GroupRange,
    IdentityPhase, IdentityState, JobKind, JobState, JobStatus, LabelRange, Placement, Plan, ProvingNeed,
    RiskReason, SchedulerConfig, Snapshot, WorkerState, LABEL_BYTES,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const NOW: i64 = 1_700_000_000_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

// ---------------------------------------------------------------------------------------------
// Builders

fn gpu(index: u32, labels_per_s: f64) -> GpuState {
    GpuState {
        index,
        model: "test".into(),
        labels_per_s,
        enabled: true,
    }
}

fn disk(id: &str, phys: &str, free_bytes: u64, read_mb_s: f64) -> DiskState {
    DiskState {
        id: id.into(),
        mount: format!("/mnt/{id}"),
        physical_device: phys.into(),
        capacity_bytes: free_bytes,
        free_bytes,
        read_mb_s,
        write_mb_s: 0.0,
    }
}

fn worker(id: &str, gpus: Vec<GpuState>, disks: Vec<DiskState>) -> WorkerState {
    WorkerState {
        id: id.into(),
        online: true,
        draining: false,
        paused: false,
        gpus,
        cpu: CpuState {
            threads: 16,
            ..CpuState::default()
        },
        disks,
        stream_endpoint: true,
    }
}

/// An identity with `files` files of `labels_per_file` labels (one unit).
fn identity(id: &str, files: u64, labels_per_file: u64, state: IdentityPhase) -> IdentityState {
    IdentityState {
        id: id.into(),
        num_units: 1,
        labels_per_unit: files * labels_per_file,
        max_file_size: labels_per_file * LABEL_BYTES,
        state,
        files: Default::default(),
        proving: None,
    }
}

fn placed(index: u32, labels: u64, done: u64, worker_id: &str, disk_id: &str) -> FileState {
    FileState {
        index,
        labels_total: labels,
        labels_done: done,
        placement: Some(FileLocation {
            worker_id: worker_id.into(),
            disk_id: disk_id.into(),
        }),
    }
}

fn init_job(
    id: &str,
    ident: &str,
    worker_id: &str,
    gpu_index: u32,
    file: u32,
    range: (u64, u64),
) -> JobState {
    JobState {
        id: id.into(),
        identity_id: ident.into(),
        worker_id: worker_id.into(),
        device: Device::Gpu { index: gpu_index },
        kind: JobKind::Init {
            file_index: file,
            range: LabelRange {
                start: range.0,
                end: range.1,
            },
        },
        state: JobStatus::Running,
        lease_expires_ms: Some(NOW + 5 * MIN),
        started_ms: Some(NOW - 20 * MIN),
        not_before_ms: None,
        progress: 0,
    }
}

fn small_config() -> SchedulerConfig {
    SchedulerConfig {
        min_chunk_labels: 1000,
        ..SchedulerConfig::default()
    }
}

fn snapshot(workers: Vec<WorkerState>, identities: Vec<IdentityState>, jobs: Vec<JobState>) -> Snapshot {
    Snapshot {
        now_ms: NOW,
        workers,
        identities,
        jobs,
        config: small_config(),
    }
}

/// Planning the applied plan must add nothing.
fn assert_idempotent(s: &Snapshot, p: &Plan) {
    let again = plan(&apply(s, p, "applied"));
    assert!(again.has_no_actions(), "second plan has actions: {again:#?}");
}

// ---------------------------------------------------------------------------------------------
// Hand-made examples

#[test]
fn two_gpus_split_one_file_one_to_three() {
    let s = snapshot(
        vec![
            worker("rig", vec![gpu(0, 100.0), gpu(1, 300.0)], vec![]),
            worker("store", vec![], vec![disk("d0", "sda", 1 << 40, 200.0)]),
        ],
        vec![identity("id", 1, 4_000_000, IdentityPhase::Created)],
        vec![],
    );
    let p = plan(&s);
    assert_eq!(p.placements.len(), 1);
    assert_eq!(p.placements[0].worker_id, "store");
    let files: Vec<(u32, &str, u64)> = p.placements[0]
        .files
        .iter()
        .map(|f| (f.file_index, f.disk_id.as_str(), f.bytes))
        .collect();
    assert_eq!(files, vec![(0, "d0", 4_000_000 * LABEL_BYTES)]);
    let got: Vec<(Device, u64, u64, i64)> = p
        .init
        .iter()
        .map(|a| {
            (
                a.device.clone(),
                a.range.start,
                a.range.end,
                a.estimated_duration_ms,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Device::Gpu { index: 1 }, 0, 3_000_000, 10_000_000),
            (Device::Gpu { index: 0 }, 3_000_000, 4_000_000, 10_000_000),
        ]
    );
    for a in &p.init {
        assert_eq!(
            a.target,
            Placement {
                worker_id: "store".into(),
                disk_id: "d0".into()
            }
        );
        assert_eq!(a.worker_id, "rig");
    }
    assert_eq!(p.summary.labels_missing, 4_000_000);
    assert_eq!(p.summary.labels_assigned, 4_000_000);
    assert_idempotent(&s, &p);
}

/// A device computes for another worker's disk only when that worker serves a stream endpoint, and
/// a worker's own idle device comes before a faster remote one when there is work for only one.
#[test]
fn remote_init_needs_a_stream_endpoint_and_local_devices_come_first() {
    let storage = |stream: bool| {
        let mut w = worker(
            "store",
            vec![gpu(0, 100.0)],
            vec![disk("d0", "sda", 1 << 40, 200.0)],
        );
        w.stream_endpoint = stream;
        w
    };
    let compute = worker("rented", vec![gpu(0, 1000.0)], vec![]);
    // Little work (one minimum chunk): only one device gets it, the storage worker's own.
    let small = || vec![identity("id", 1, 1000, IdentityPhase::Created)];
    for stream in [false, true] {
        let s = snapshot(vec![storage(stream), compute.clone()], small(), vec![]);
        let p = plan(&s);
        let got: Vec<(&str, &str)> = p
            .init
            .iter()
            .map(|a| (a.worker_id.as_str(), a.target.worker_id.as_str()))
            .collect();
        assert_eq!(got, vec![("store", "store")], "stream endpoint: {stream}");
        assert_idempotent(&s, &p);
    }
    // Plenty of work: with a stream endpoint both devices work, the faster one remotely; without,
    // the remote device stays idle.
    let big = || vec![identity("id", 1, 4_400_000, IdentityPhase::Created)];
    let s = snapshot(vec![storage(true), compute.clone()], big(), vec![]);
    let p = plan(&s);
    let mut got: Vec<(&str, u64)> = p
        .init
        .iter()
        .map(|a| (a.worker_id.as_str(), a.range.len()))
        .collect();
    got.sort();
    assert_eq!(got, vec![("rented", 4_000_000), ("store", 400_000)]);
    assert!(p.init.iter().all(|a| a.target.worker_id == "store"));
    assert_idempotent(&s, &p);
    let s = snapshot(vec![storage(false), compute], big(), vec![]);
    let p = plan(&s);
    let got: Vec<(&str, u64)> = p
        .init
        .iter()
        .map(|a| (a.worker_id.as_str(), a.range.len()))
        .collect();
    // The idle remote device does not shrink the local one's share (the horizon, 4 h, does).
    assert_eq!(got, vec![("store", 1_440_000)]);
    assert_eq!(p.summary.idle_devices, 1);
    assert_idempotent(&s, &p);
}

#[test]
fn placement_is_spread_over_plans_when_a_fleet_is_large() {
    let mut s = snapshot(
        vec![worker(
            "store",
            vec![gpu(0, 100.0)],
            vec![disk("d0", "sda", 1 << 40, 200.0)],
        )],
        (0..5)
            .map(|k| identity(&format!("id{k}"), 4, 1_000, IdentityPhase::Created))
            .collect(),
        vec![],
    );
    s.config.max_files_placed_per_plan = 8;
    let mut placed = Vec::new();
    for round in 0..3 {
        let p = plan(&s);
        let files: usize = p.placements.iter().map(|d| d.files.len()).sum();
        assert!(files <= 8, "round {round}: {files} files placed");
        assert!(
            p.unplaced.is_empty(),
            "waiting identities are not unplaced: {:?}",
            p.unplaced
        );
        placed.extend(p.placements.iter().map(|d| d.identity_id.clone()));
        s = apply(&s, &p, "applied");
    }
    assert_eq!(
        placed,
        ["id0", "id1", "id2", "id3", "id4"].map(String::from).to_vec()
    );
    // One identity larger than the cap still gets placed, alone.
    s.config.max_files_placed_per_plan = 2;
    s.identities
        .push(identity("big", 4, 1_000, IdentityPhase::Created));
    let p = plan(&s);
    assert_eq!(p.placements.len(), 1);
    assert_eq!(p.placements[0].files.len(), 4);
}

#[test]
fn files_are_striped_over_physical_devices_and_never_overcommit() {
    let file_bytes = 1000 * LABEL_BYTES;
    let s = snapshot(
        vec![worker(
            "store",
            vec![],
            vec![
                disk("a", "sda", 10 * file_bytes, 100.0),
                disk("b", "sdb", 10 * file_bytes, 100.0),
                // Same physical device as `a`, and too small for a file.
                disk("c", "sda", file_bytes - 1, 100.0),
            ],
        )],
        vec![identity("id", 4, 1000, IdentityPhase::Created)],
        vec![],
    );
    let p = plan(&s);
    assert_eq!(p.placements.len(), 1);
    let got: Vec<(u32, &str)> = p.placements[0]
        .files
        .iter()
        .map(|f| (f.file_index, f.disk_id.as_str()))
        .collect();
    assert_eq!(got, vec![(0, "a"), (1, "b"), (2, "a"), (3, "b")]);
    assert!(p.unplaced.is_empty());
    // No GPU: nothing to compute with.
    assert!(p.init.is_empty());
    assert_eq!(p.summary.labels_unassigned, 4000);

    // Not enough room anywhere: reported, nothing placed.
    let mut tight = s.clone();
    for d in &mut tight.workers[0].disks {
        d.free_bytes = file_bytes;
    }
    let p = plan(&tight);
    assert_eq!(p.placements.len(), 0);
    assert_eq!(p.unplaced.len(), 1);
}

/// One identity of 64 MiB on one 1 MB/s disk; its worker proves at 1 MiB/s at 16 nonces; one k2pow
/// worker does 4 hashes/s and a group costs 4 hashes (1 s).
fn proving_snapshot(window_ms: i64) -> Snapshot {
    let mut store = worker("store", vec![], vec![disk("d0", "sda", 1 << 40, 1.0)]);
    store.cpu.proving_mib_s_per_16_nonces = 1.0;
    let mut pow = worker("pow", vec![], vec![]);
    pow.cpu.randomx_hashes_per_s = 4.0;
    let mut id = identity("id", 1, 4 << 20, IdentityPhase::Ready);
    id.num_units = 4;
    id.labels_per_unit = 1 << 20;
    id.files = std::sync::Arc::new(vec![placed(0, 4 << 20, 4 << 20, "store", "d0")]);
    id.proving = Some(ProvingNeed {
        challenge_known_at_ms: NOW,
        deadline_ms: NOW + window_ms,
        first_nonce: 0,
        pow_groups_done: 0,
    });
    let mut s = snapshot(vec![pow, store], vec![id], vec![]);
    s.config.proof_time_margin = 0.0;
    s.config.deadline_margin_ms = 0;
    s.config.k2pow_hashes_per_unit_group = 1.0;
    s
}

#[test]
fn proof_takes_the_most_nonces_that_fit_the_window() {
    // 64 MiB: 67.109 s from disk at 16 nonces; CPU-bound above: 64 * S/16 s. k2pow 1 s a group.
    // S = 144: 9 s of k2pow + 576 s = 585 s fits 600 s; S = 192 would need 12 + 768 s.
    let s = proving_snapshot(600_000);
    let p = plan(&s);
    assert_eq!(p.proofs.len(), 1, "{p:#?}");
    let pr = &p.proofs[0];
    assert_eq!(pr.nonces, 144);
    assert_eq!(pr.worker_id, "store");
    assert_eq!(pr.disks, vec!["d0".to_string()]);
    assert_eq!(pr.k2pow_ready_ms, NOW + 9_000);
    assert_eq!(pr.start_ms, NOW + 9_000);
    assert_eq!(pr.estimated_duration_ms, 576_000);
    assert_eq!(pr.slack_ms, 600_000 - 67_109);
    assert_eq!(pr.margin_ms, 15_000);
    assert!((pr.success_probability - (1.0 - (1.0f64 - 0.02438).powi(144))).abs() < 1e-12);
    assert_eq!(p.k2pow.len(), 1);
    assert_eq!(p.k2pow[0].worker_id, "pow");
    assert_eq!(p.k2pow[0].groups, GroupRange { start: 0, end: 9 });
    assert_eq!(p.k2pow[0].estimated_end_ms, NOW + 9_000);
    assert!(p.at_risk.is_empty());
    assert_idempotent(&s, &p);

    // A window that leaves room for 288 nonces takes 288.
    let p = plan(&proving_snapshot(2 * HOUR));
    assert_eq!(p.proofs[0].nonces, 288);
    assert_eq!(p.k2pow[0].groups, GroupRange { start: 0, end: 18 });
}

#[test]
fn proof_that_cannot_fit_is_at_risk_and_planned_at_the_fewest_nonces() {
    // Even 16 nonces need 1 s of k2pow and 67.109 s of reading.
    let s = proving_snapshot(60_000);
    let p = plan(&s);
    assert_eq!(p.proofs.len(), 1);
    assert_eq!(p.proofs[0].nonces, 16);
    assert_eq!(p.at_risk.len(), 1);
    assert_eq!(
        p.at_risk[0].reason,
        RiskReason::WindowTooShort {
            nonces: 16,
            estimated_end_ms: NOW + 68_109
        }
    );
    assert_idempotent(&s, &p);
}

#[test]
fn proofs_sharing_a_disk_run_one_after_another_earliest_slack_first() {
    let mut s = proving_snapshot(2 * HOUR);
    let mut other = s.identities[0].clone();
    other.id = "early".into();
    if let Some(n) = other.proving.as_mut() {
        n.deadline_ms = NOW + HOUR;
    }
    s.identities.push(other);
    s.workers[0].cpu.randomx_hashes_per_s = 4.0; // a second k2pow worker
    let p = plan(&s);
    assert_eq!(p.proofs.len(), 2);
    assert_eq!(p.proofs[0].identity_id, "early");
    let (a, b) = (&p.proofs[0], &p.proofs[1]);
    assert!(b.start_ms >= a.start_ms + a.estimated_duration_ms, "{p:#?}");
    assert!(a.slack_ms <= b.slack_ms);
    assert_idempotent(&s, &p);
}

#[test]
fn work_of_an_offline_worker_or_an_expired_lease_is_reassigned() {
    let mut lost = worker("lost", vec![gpu(0, 1000.0)], vec![]);
    lost.online = false;
    let mut id = identity("id", 2, 100_000, IdentityPhase::Initializing);
    id.files = std::sync::Arc::new(vec![
        placed(0, 100_000, 0, "store", "d0"),
        placed(1, 100_000, 0, "store", "d0"),
    ]);
    let mut j1 = init_job("j1", "id", "lost", 0, 0, (0, 100_000));
    j1.progress = 40_000;
    let mut j2 = init_job("j2", "id", "rig", 0, 1, (100_000, 200_000));
    j2.progress = 10_000;
    j2.lease_expires_ms = Some(NOW - 1);
    let s = snapshot(
        vec![
            lost,
            worker("rig", vec![gpu(0, 1000.0), gpu(1, 1000.0)], vec![]),
            worker("store", vec![], vec![disk("d0", "sda", 1 << 40, 200.0)]),
        ],
        vec![id],
        vec![j1, j2],
    );
    let p = plan(&s);
    let reasons: Vec<(&str, &CancelReason)> = p
        .cancellations
        .iter()
        .map(|c| (c.job_id.as_str(), &c.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("j1", &CancelReason::WorkerOffline),
            (
                "j2",
                &CancelReason::LeaseExpired {
                    expired_at_ms: NOW - 1
                }
            )
        ]
    );
    // 150,000 labels over two 1000 labels/s GPUs: 75 s of work each, never across a file boundary;
    // the rest waits for the next free GPU.
    let ranges: Vec<(u64, u64)> = p.init.iter().map(|a| (a.range.start, a.range.end)).collect();
    assert_eq!(ranges, vec![(40_000, 100_000), (110_000, 185_000)]);
    assert!(p.init.iter().all(|a| a.worker_id == "rig"));
    assert_eq!(
        (p.summary.labels_missing, p.summary.labels_unassigned),
        (150_000, 15_000)
    );
    assert_idempotent(&s, &p);
}

#[test]
fn a_slow_job_gives_its_tail_to_an_idle_faster_gpu() {
    let mut id = identity("id", 1, 1_000_000, IdentityPhase::Initializing);
    id.files = std::sync::Arc::new(vec![placed(0, 1_000_000, 0, "store", "d0")]);
    // Expected 1000 labels/s; after 1000 s it has done 100,000 (100/s).
    let mut slow = init_job("slow", "id", "rig", 0, 0, (0, 1_000_000));
    slow.started_ms = Some(NOW - 1_000_000);
    slow.progress = 100_000;
    let s = snapshot(
        vec![
            worker("rig", vec![gpu(0, 1000.0)], vec![]),
            worker("fast", vec![gpu(0, 800.0)], vec![]),
            worker("store", vec![], vec![disk("d0", "sda", 1 << 40, 200.0)]),
        ],
        vec![id],
        vec![slow],
    );
    let p = plan(&s);
    // 900,000 left split 100:800 so both finish together.
    assert_eq!(p.truncations.len(), 1);
    assert_eq!(
        (p.truncations[0].old_end, p.truncations[0].new_end),
        (1_000_000, 200_000)
    );
    assert_eq!(p.init.len(), 1);
    assert_eq!((p.init[0].range.start, p.init[0].range.end), (200_000, 1_000_000));
    assert_eq!(p.init[0].worker_id, "fast");
    assert_eq!(p.init[0].stolen_from.as_deref(), Some("slow"));
    assert_idempotent(&s, &p);
}

#[test]
fn drained_and_paused_workers_get_nothing_new() {
    let mut drained = worker(
        "drained",
        vec![gpu(0, 5000.0)],
        vec![disk("d9", "sdz", 1 << 40, 200.0)],
    );
    drained.draining = true;
    let mut paused = worker("paused", vec![gpu(0, 5000.0)], vec![]);
    paused.paused = true;
    let mut queued = init_job("q", "id", "drained", 0, 0, (0, 50_000));
    queued.state = JobStatus::Queued;
    queued.lease_expires_ms = None;
    queued.started_ms = None;
    let mut id = identity("id", 1, 100_000, IdentityPhase::Initializing);
    id.files = std::sync::Arc::new(vec![placed(0, 100_000, 0, "store", "d0")]);
    let s = snapshot(
        vec![
            drained,
            paused,
            worker("rig", vec![gpu(0, 10.0)], vec![]),
            worker("store", vec![], vec![disk("d0", "sda", 1 << 40, 200.0)]),
        ],
        vec![id, identity("new", 1, 1000, IdentityPhase::Created)],
        vec![queued],
    );
    let p = plan(&s);
    assert_eq!(p.cancellations.len(), 1);
    assert_eq!(p.cancellations[0].reason, CancelReason::WorkerDraining);
    assert!(p.init.iter().all(|a| a.worker_id == "rig"), "{:?}", p.init);
    assert!(p.placements.iter().all(|d| d.worker_id == "store"));
    assert_idempotent(&s, &p);
}

/// A GPU keeps one job and one init job queued behind it: a second leased job and a second queued
/// one are cancelled, and a full queue gets nothing new.
#[test]
fn a_double_booked_gpu_keeps_one_job_and_one_queued() {
    let mut id = identity("id", 4, 100_000, IdentityPhase::Initializing);
    id.files = std::sync::Arc::new((0..4).map(|f| placed(f, 100_000, 0, "store", "d0")).collect());
    let job = |name: &str, file: u32, state: JobStatus| {
        let start = u64::from(file) * 100_000;
        let mut j = init_job(name, "id", "rig", 0, file, (start, start + 100_000));
        j.state = state;
        // Not yet judged for speed.
        j.started_ms = Some(NOW - MIN);
        if state == JobStatus::Queued {
            (j.lease_expires_ms, j.started_ms) = (None, None);
        }
        j
    };
    let mut a = job("a", 0, JobStatus::Running);
    a.progress = 5;
    let b = job("b", 1, JobStatus::Leased);
    let c = job("c", 2, JobStatus::Queued);
    let d = job("d", 3, JobStatus::Queued);
    let s = snapshot(
        vec![
            worker("rig", vec![gpu(0, 1000.0)], vec![]),
            worker("store", vec![], vec![disk("d0", "sda", 1 << 40, 200.0)]),
        ],
        vec![id],
        vec![a, b, c, d],
    );
    let p = plan(&s);
    let reasons: Vec<(&str, &CancelReason)> = p
        .cancellations
        .iter()
        .map(|c| (c.job_id.as_str(), &c.reason))
        .collect();
    let kept_a = CancelReason::DoubleBooked {
        kept_job_id: "a".into(),
    };
    assert_eq!(reasons, vec![("b", &kept_a), ("d", &kept_a)]);
    // "a" runs and "c" waits behind it: the GPU's queue is full.
    assert!(p.init.is_empty(), "{:?}", p.init);
    assert_idempotent(&s, &p);
}

/// A device running a job gets its next range queued behind it (so it never waits for a plan
/// between two jobs), never more than one; a device whose only job is still queued gets nothing.
#[test]
fn a_busy_device_has_its_next_range_queued() {
    let mut id = identity("id", 4, 100_000, IdentityPhase::Initializing);
    id.files = std::sync::Arc::new((0..4).map(|f| placed(f, 100_000, 0, "rig", "d0")).collect());
    let mut running = init_job("run", "id", "rig", 0, 0, (0, 100_000));
    running.started_ms = Some(NOW - MIN);
    running.progress = 50_000;
    let s = snapshot(
        vec![worker(
            "rig",
            vec![gpu(0, 1000.0)],
            vec![disk("d0", "sda", 1 << 40, 200.0)],
        )],
        vec![id],
        vec![running],
    );
    let p = plan(&s);
    let got: Vec<(&str, Device, u64, u64)> = p
        .init
        .iter()
        .map(|a| (a.worker_id.as_str(), a.device.clone(), a.range.start, a.range.end))
        .collect();
    assert_eq!(got, vec![("rig", Device::Gpu { index: 0 }, 100_000, 200_000)]);
    assert!(p.cancellations.is_empty() && p.truncations.is_empty());
    assert_eq!(p.summary.labels_assigned, 100_000);
    assert_eq!(p.summary.idle_devices, 0);
    assert_idempotent(&s, &p);

    // Running and queued: the queue is full.
    let s2 = apply(&s, &p, "a");
    let live = |s: &Snapshot| s.jobs.iter().filter(|j| j.state.is_live()).count();
    assert_eq!(live(&s2), 2);
    assert!(plan(&s2).has_no_actions());

    // The first job ends and the worker leases the queued one: the one after is queued.
    let mut s3 = s2.clone();
    for j in &mut s3.jobs {
        if j.id == "run" {
            (j.state, j.progress) = (JobStatus::Done, 100_000);
        } else {
            (j.state, j.started_ms, j.lease_expires_ms) = (JobStatus::Running, Some(NOW), Some(NOW + MIN));
        }
    }
    let p3 = plan(&s3);
    let got: Vec<(u64, u64)> = p3.init.iter().map(|a| (a.range.start, a.range.end)).collect();
    assert_eq!(got, vec![(200_000, 300_000)]);
    assert_idempotent(&s3, &p3);

    // The first job ends but the queued one is not leased yet: nothing more is queued.
    let mut s4 = s2.clone();
    for j in s4.jobs.iter_mut().filter(|j| j.id == "run") {
        (j.state, j.progress) = (JobStatus::Done, 100_000);
    }
    let p4 = plan(&s4);
    assert!(p4.has_no_actions(), "{p4:#?}");
}

/// A slow device gets no next range, and the job queued behind its slow one is cancelled: its
/// range goes to an idle device at once instead of waiting behind the slow job.
#[test]
fn a_slow_device_queues_nothing_and_gives_up_its_queued_range() {
    let mut id = identity("id", 2, 1_000_000, IdentityPhase::Initializing);
    id.files = std::sync::Arc::new(vec![
        placed(0, 1_000_000, 0, "store", "d0"),
        placed(1, 1_000_000, 0, "store", "d0"),
    ]);
    // Expected 1000 labels/s; after 1000 s it has done 100,000 (100/s).
    let mut slow = init_job("slow", "id", "rig", 0, 0, (0, 1_000_000));
    slow.started_ms = Some(NOW - 1_000_000);
    slow.progress = 100_000;
    let mut next = init_job("next", "id", "rig", 0, 1, (1_000_000, 2_000_000));
    (next.state, next.started_ms, next.lease_expires_ms) = (JobStatus::Queued, None, None);
    let s = snapshot(
        vec![
            worker("rig", vec![gpu(0, 1000.0)], vec![]),
            worker("fast", vec![gpu(0, 800.0)], vec![]),
            worker("store", vec![], vec![disk("d0", "sda", 1 << 40, 200.0)]),
        ],
        vec![id],
        vec![slow, next],
    );
    let p = plan(&s);
    assert_eq!(p.cancellations.len(), 1, "{:?}", p.cancellations);
    assert_eq!(p.cancellations[0].job_id, "next");
    assert!(matches!(p.cancellations[0].reason, CancelReason::Slow { .. }));
    let got: Vec<(&str, u64, u64)> = p
        .init
        .iter()
        .map(|a| (a.worker_id.as_str(), a.range.start, a.range.end))
        .collect();
    assert_eq!(got, vec![("fast", 1_000_000, 2_000_000)]);
    assert!(p.truncations.is_empty());
    assert_idempotent(&s, &p);
}

#[test]
fn plan_serialises_for_the_api() {
    let s = proving_snapshot(600_000);
    let p = plan(&s);
    let json = serde_json::to_string(&p).expect("plan serialises");
    let back: Plan = serde_json::from_str(&json).expect("plan deserialises");
    assert_eq!(back, p);
    let snap: Snapshot = serde_json::from_str(&serde_json::to_string(&s).expect("ser")).expect("de");
    assert_eq!(snap, s);
}

// ---------------------------------------------------------------------------------------------
// Random fleets

/// 10^x for x uniform in `lo..hi`.
fn log_uniform(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    10f64.powf(rng.gen_range(lo..hi))
}

/// A random fleet. One in three is late in init (most labels done, live jobs hold the rest, GPUs
/// idle), which exercises stealing from slow jobs.
fn gen_snapshot(n_workers: usize, n_idents: usize, seed: u64) -> Snapshot {
    let mut rng = StdRng::seed_from_u64(seed);
    let late = rng.gen_bool(1.0 / 3.0);
    let config = SchedulerConfig {
        min_chunk_labels: 64,
        init_horizon_ms: HOUR,
        min_observation_ms: MIN,
        deadline_margin_ms: MIN,
        k2pow_hashes_per_unit_group: 50.0,
        disk_reserve_bytes: if rng.gen_bool(0.5) { 0 } else { 1 << 20 },
        ..SchedulerConfig::default()
    };
    let mut workers = Vec::new();
    for w in 0..n_workers {
        let n_gpus = rng.gen_range(0..=8u32);
        let gpus = (0..n_gpus)
            .map(|k| GpuState {
                index: k,
                model: "g".into(),
                labels_per_s: rng.gen_range(50.0..5000.0),
                enabled: rng.gen_bool(0.9),
            })
            .collect();
        let n_disks = if rng.gen_bool(0.15) {
            0
        } else {
            rng.gen_range(1..=12usize)
        };
        let disks = (0..n_disks)
            .map(|k| {
                let free = if rng.gen_bool(0.1) {
                    rng.gen_range(0..1u64 << 20)
                } else {
                    rng.gen_range(0..2u64 << 30)
                };
                DiskState {
                    id: format!("d{k}"),
                    mount: format!("/mnt/d{k}"),
                    physical_device: format!("p{}", rng.gen_range(0..n_disks)),
                    capacity_bytes: free,
                    free_bytes: free,
                    read_mb_s: if rng.gen_bool(0.05) {
                        0.0
                    } else {
                        log_uniform(&mut rng, -1.0, 2.7)
                    },
                    write_mb_s: if rng.gen_bool(0.5) {
                        0.0
                    } else {
                        rng.gen_range(0.01..50.0)
                    },
                }
            })
            .collect();
        let r: f64 = rng.gen();
        workers.push(WorkerState {
            id: format!("w{w}"),
            online: r < 0.85,
            draining: (0.85..0.93).contains(&r),
            paused: r >= 0.93,
            gpus,
            cpu: CpuState {
                threads: rng.gen_range(2..64),
                labels_per_s: if rng.gen_bool(0.7) {
                    rng.gen_range(1.0..20.0)
                } else {
                    0.0
                },
                randomx_hashes_per_s: if rng.gen_bool(0.4) {
                    0.0
                } else {
                    rng.gen_range(100.0..5000.0)
                },
                proving_mib_s_per_16_nonces: if rng.gen_bool(0.1) {
                    0.0
                } else {
                    log_uniform(&mut rng, -1.5, 3.5)
                },
                init_enabled: rng.gen_bool(0.3),
            },
            disks,
            // Not from `rng`: the fleets of fixed seeds stay what they were.
            stream_endpoint: w % 3 != 0,
        });
    }
    // Some workers are online again but with their flags crossed.
    for w in &mut workers {
        if !w.online && rng.gen_bool(0.3) {
            w.online = true;
        }
    }

    let mut identities = Vec::new();
    let mut jobs = Vec::new();
    let mut next_job = 0u32;
    let mut job_id = || {
        next_job += 1;
        format!("j{next_job}")
    };
    let storage: Vec<usize> = (0..workers.len())
        .filter(|&w| !workers[w].disks.is_empty())
        .collect();
    // Late fleets: two GPUs in three hold a job, the others are idle.
    let mut free_gpus: Vec<(String, u32, f64)> = workers
        .iter()
        .flat_map(|w| {
            w.gpus
                .iter()
                .map(move |g| (w.id.clone(), g.index, g.labels_per_s))
        })
        .collect();
    free_gpus.shuffle(&mut rng);
    free_gpus.truncate(free_gpus.len() * 2 / 3);
    for i in 0..n_idents {
        let units = rng.gen_range(1..=8u32);
        let lpu = *[1000u64, 4096, 65_536, 1 << 20].choose(&mut rng).unwrap_or(&1000);
        let total = u64::from(units) * lpu;
        let n_files = rng.gen_range(1..=16u64);
        let lpf = total.div_ceil(n_files);
        let roll = if late {
            rng.gen_range(35..100)
        } else {
            rng.gen_range(0..100)
        };
        let state = match roll {
            0..=34 => IdentityPhase::Created,
            35..=64 => IdentityPhase::Initializing,
            65..=89 => IdentityPhase::Ready,
            90..=93 => IdentityPhase::Paused,
            94..=96 => IdentityPhase::Failed,
            _ => IdentityPhase::Retired,
        };
        let mut ident = IdentityState {
            id: format!("i{i:03}"),
            num_units: units,
            labels_per_unit: lpu,
            max_file_size: lpf * LABEL_BYTES,
            state,
            files: Default::default(),
            proving: None,
        };
        let layout = ident.layout().expect("valid layout");
        let home = storage.choose(&mut rng).copied();
        let other = storage.choose(&mut rng).copied();
        for f in 0..layout.num_files {
            let f = f as u32;
            let range = layout.file_range(f).expect("in layout");
            let len = range.len();
            let (done, place) = match state {
                IdentityPhase::Created => (0, false),
                IdentityPhase::Initializing if late => (
                    if rng.gen_bool(0.7) {
                        len
                    } else {
                        rng.gen_range(0..len)
                    },
                    true,
                ),
                IdentityPhase::Initializing => {
                    let done = match rng.gen_range(0..4) {
                        0 => 0,
                        1 => len,
                        _ => rng.gen_range(0..=len),
                    };
                    (done, rng.gen_bool(0.85))
                }
                _ => (len, true),
            };
            if state == IdentityPhase::Created && rng.gen_bool(0.5) {
                continue;
            }
            let placement = match (place, home) {
                (true, Some(h)) => {
                    let w = if rng.gen_bool(0.02) { other.unwrap_or(h) } else { h };
                    let nd = workers[w].disks.len();
                    let d = if rng.gen_bool(0.02) {
                        "gone".to_string()
                    } else {
                        format!("d{}", rng.gen_range(0..nd))
                    };
                    Some(FileLocation {
                        worker_id: workers[w].id.as_str().into(),
                        disk_id: d.into(),
                    })
                }
                _ => None,
            };
            if place && placement.is_none() {
                // No storage at all: nothing can be on disk.
                std::sync::Arc::make_mut(&mut ident.files).push(FileState {
                    index: f,
                    labels_total: len,
                    labels_done: 0,
                    placement: None,
                });
            } else {
                std::sync::Arc::make_mut(&mut ident.files).push(FileState {
                    index: f,
                    labels_total: len,
                    labels_done: done,
                    placement,
                });
            }
        }
        if rng.gen_bool(if state == IdentityPhase::Ready { 0.6 } else { 0.1 }) {
            let first_nonce = if rng.gen_bool(0.1) { 288 } else { 0 };
            ident.proving = Some(ProvingNeed {
                challenge_known_at_ms: NOW - rng.gen_range(0..2 * HOUR),
                deadline_ms: if rng.gen_bool(0.5) {
                    NOW + rng.gen_range(-10 * MIN..3 * HOUR)
                } else {
                    NOW + log_uniform(&mut rng, 4.0, 7.0) as i64
                },
                first_nonce,
                pow_groups_done: rng.gen_range(0..4),
            });
        }

        // Jobs.
        let live_state = |rng: &mut StdRng| match rng.gen_range(0..10) {
            0..=2 => JobStatus::Queued,
            3..=4 => JobStatus::Leased,
            5..=7 => JobStatus::Running,
            8 => JobStatus::Done,
            _ => *[JobStatus::Failed, JobStatus::Cancelled]
                .choose(rng)
                .unwrap_or(&JobStatus::Failed),
        };
        let pick_worker = |rng: &mut StdRng| {
            if rng.gen_bool(0.03) {
                "ghost".to_string()
            } else {
                workers[rng.gen_range(0..workers.len())].id.clone()
            }
        };
        let timing = |rng: &mut StdRng, st: JobStatus| {
            let leased = matches!(st, JobStatus::Leased | JobStatus::Running);
            (
                leased.then(|| NOW + rng.gen_range(-MIN..10 * MIN)),
                (st != JobStatus::Queued).then(|| NOW - rng.gen_range(0..2 * HOUR)),
            )
        };
        if state == IdentityPhase::Initializing && late {
            // One running job over the rest of a file while GPUs last (the rest is done), some slow.
            for fs in std::sync::Arc::make_mut(&mut ident.files).iter_mut() {
                let range = layout.file_range(fs.index).expect("in layout");
                let lo = range.start + fs.labels_done;
                if lo >= range.end {
                    continue;
                }
                let Some((wid, index, rate)) = free_gpus.pop() else {
                    fs.labels_done = range.len();
                    continue;
                };
                let len = range.end - lo;
                let elapsed = rng.gen_range(MIN / 2..20 * MIN);
                let done = (rate * elapsed as f64 / 1000.0 * rng.gen_range(0.02..1.2)) as u64;
                jobs.push(JobState {
                    id: job_id(),
                    identity_id: ident.id.clone(),
                    worker_id: wid,
                    device: Device::Gpu { index },
                    kind: JobKind::Init {
                        file_index: fs.index,
                        range: LabelRange {
                            start: lo,
                            end: range.end,
                        },
                    },
                    state: JobStatus::Running,
                    lease_expires_ms: Some(NOW + rng.gen_range(-MIN..10 * MIN)),
                    started_ms: Some(NOW - elapsed),
                    not_before_ms: None,
                    progress: done.min(len),
                });
            }
        } else if state == IdentityPhase::Initializing {
            for fs in (*ident.files).clone() {
                if !rng.gen_bool(0.4) {
                    continue;
                }
                let range = layout.file_range(fs.index).expect("in layout");
                for _ in 0..rng.gen_range(1..=2) {
                    let lo = range.start + fs.labels_done.min(range.len());
                    if lo >= range.end {
                        break;
                    }
                    let a = rng.gen_range(lo..range.end);
                    let b = rng.gen_range(a + 1..=range.end);
                    let st = live_state(&mut rng);
                    let wid = pick_worker(&mut rng);
                    let n_gpus = workers
                        .iter()
                        .find(|w| w.id == wid)
                        .map_or(1, |w| w.gpus.len() as u32 + 1);
                    let device = if rng.gen_bool(0.1) {
                        Device::Cpu
                    } else {
                        Device::Gpu {
                            index: rng.gen_range(0..n_gpus.max(1)),
                        }
                    };
                    let (lease, started) = timing(&mut rng, st);
                    let progress = if rng.gen_bool(0.5) {
                        rng.gen_range(0..=(b - a) / 8)
                    } else {
                        rng.gen_range(0..=b - a)
                    };
                    jobs.push(JobState {
                        id: job_id(),
                        identity_id: ident.id.clone(),
                        worker_id: wid,
                        device,
                        kind: JobKind::Init {
                            file_index: fs.index,
                            range: LabelRange { start: a, end: b },
                        },
                        state: st,
                        lease_expires_ms: lease,
                        started_ms: started,
                        not_before_ms: None,
                        progress,
                    });
                }
            }
        }
        if let Some(need) = ident.proving.clone() {
            let base = need.first_nonce / 16;
            for _ in 0..rng.gen_range(0..=2) {
                let start = base + rng.gen_range(0..10);
                let end = start + rng.gen_range(1..8);
                let st = live_state(&mut rng);
                let (lease, started) = timing(&mut rng, st);
                jobs.push(JobState {
                    id: job_id(),
                    identity_id: ident.id.clone(),
                    worker_id: pick_worker(&mut rng),
                    device: Device::Cpu,
                    kind: JobKind::K2pow {
                        groups: GroupRange { start, end },
                    },
                    state: st,
                    lease_expires_ms: lease,
                    started_ms: started,
                    not_before_ms: None,
                    progress: rng.gen_range(0..=u64::from(end - start)),
                });
            }
            if rng.gen_bool(0.15) {
                let st = live_state(&mut rng);
                let (lease, started) = timing(&mut rng, st);
                let wid = match home {
                    Some(h) if rng.gen_bool(0.9) => workers[h].id.clone(),
                    _ => pick_worker(&mut rng),
                };
                jobs.push(JobState {
                    id: job_id(),
                    identity_id: ident.id.clone(),
                    worker_id: wid,
                    device: Device::Cpu,
                    kind: JobKind::Prove {
                        first_nonce: if rng.gen_bool(0.9) { need.first_nonce } else { 16 },
                        nonces: 16 * rng.gen_range(1..=18),
                        disks: vec![],
                    },
                    state: st,
                    lease_expires_ms: lease,
                    started_ms: started,
                    not_before_ms: (st == JobStatus::Queued).then(|| NOW + rng.gen_range(-MIN..HOUR)),
                    progress: rng.gen_range(0..=total / 2),
                });
            }
        }
        identities.push(ident);
    }
    Snapshot {
        now_ms: NOW,
        workers,
        identities,
        jobs,
        config,
    }
}

/// Rigs that each initialize an identity on their own disk, with far more work than their GPUs
/// take in one plan. Each GPU is idle, runs a job (not yet judged for speed), runs one with the
/// next queued, or holds one queued job.
fn gen_queue_fleet(n_workers: usize, seed: u64) -> Snapshot {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut workers, mut identities, mut jobs) = (Vec::new(), Vec::new(), Vec::new());
    for w in 0..n_workers {
        let wid = format!("w{w}");
        let iid = format!("i{w}");
        let n_gpus = rng.gen_range(1..=4u32);
        let gpus = (0..n_gpus)
            .map(|g| gpu(g, f64::from(rng.gen_range(1..=20u32)) * 5.0))
            .collect();
        let mut wk = worker(&wid, gpus, vec![disk("d0", &format!("sd{w}"), 1 << 50, 200.0)]);
        wk.stream_endpoint = rng.gen_bool(0.5);
        workers.push(wk);
        let mut ident = identity(&iid, 32, 100_000, IdentityPhase::Initializing);
        ident.files = std::sync::Arc::new((0..32).map(|f| placed(f, 100_000, 0, &wid, "d0")).collect());
        identities.push(ident);
        let mut file = 0u32;
        for g in 0..n_gpus {
            let states: &[JobStatus] = match rng.gen_range(0..4) {
                0 => &[],
                1 => &[JobStatus::Running],
                2 => &[JobStatus::Leased, JobStatus::Queued],
                _ => &[JobStatus::Queued],
            };
            for &st in states {
                let start = u64::from(file) * 100_000;
                let mut j = init_job(
                    &format!("{wid}-{g}-{file}"),
                    &iid,
                    &wid,
                    g,
                    file,
                    (start, start + 100_000),
                );
                j.state = st;
                if st == JobStatus::Queued {
                    (j.lease_expires_ms, j.started_ms) = (None, None);
                } else {
                    j.started_ms = Some(NOW - rng.gen_range(0..MIN));
                    j.progress = rng.gen_range(0..50_000);
                }
                jobs.push(j);
                file += 1;
            }
        }
    }
    Snapshot {
        now_ms: NOW,
        workers,
        identities,
        jobs,
        config: small_config(),
    }
}

/// Live jobs per (worker, GPU), and whether one of them is leased or running.
fn gpu_queues(s: &Snapshot) -> BTreeMap<(String, u32), (usize, bool)> {
    let mut m: BTreeMap<(String, u32), (usize, bool)> = BTreeMap::new();
    for w in &s.workers {
        for g in &w.gpus {
            m.insert((w.id.clone(), g.index), (0, false));
        }
    }
    for j in s.jobs.iter().filter(|j| j.state.is_live()) {
        if let Device::Gpu { index } = j.device {
            let e = m.entry((j.worker_id.clone(), index)).or_default();
            e.0 += 1;
            e.1 |= matches!(j.state, JobStatus::Leased | JobStatus::Running);
        }
    }
    m
}

fn shuffled(s: &Snapshot, seed: u64) -> Snapshot {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut s = s.clone();
    s.workers.shuffle(&mut rng);
    for w in &mut s.workers {
        w.gpus.shuffle(&mut rng);
        w.disks.shuffle(&mut rng);
    }
    s.identities.shuffle(&mut rng);
    for i in &mut s.identities {
        std::sync::Arc::make_mut(&mut i.files).shuffle(&mut rng);
    }
    s.jobs.shuffle(&mut rng);
    s
}

// ---------------------------------------------------------------------------------------------
// Invariant checks

type Check = Result<(), TestCaseError>;

/// (worker id, physical device).
type PhysKey<'a> = (&'a str, &'a str);

fn worker_of<'a>(s: &'a Snapshot, id: &str) -> Option<&'a WorkerState> {
    s.workers.iter().find(|w| w.id == id)
}

fn usable(s: &Snapshot, id: &str) -> bool {
    worker_of(s, id).is_some_and(|w| w.accepts_new_work())
}

fn cancelled(p: &Plan) -> BTreeMap<&str, &CancelReason> {
    p.cancellations
        .iter()
        .map(|c| (c.job_id.as_str(), &c.reason))
        .collect()
}

/// A label device holds at most two live jobs: one (leased, running or queued) and one init job
/// queued behind an init job; never two leased or running.
fn check_queue(name: &str, v: &[&JobState]) -> Check {
    let ids: Vec<&str> = v.iter().map(|j| j.id.as_str()).collect();
    prop_assert!(v.len() <= 2, "{name} holds more than two jobs: {ids:?}");
    let active = v
        .iter()
        .filter(|j| matches!(j.state, JobStatus::Leased | JobStatus::Running))
        .count();
    prop_assert!(active <= 1, "{name} double-booked: {ids:?}");
    if v.len() == 2 {
        prop_assert!(
            v.iter().all(|j| matches!(j.kind, JobKind::Init { .. })),
            "{name} queues a job that is not init: {ids:?}"
        );
    }
    Ok(())
}

fn check_devices(s: &Snapshot, p: &Plan) -> Check {
    let after = apply(s, p, "new");
    let mut gpu_jobs: BTreeMap<(&str, u32), Vec<&JobState>> = BTreeMap::new();
    let mut cpu_init: BTreeMap<&str, Vec<&JobState>> = BTreeMap::new();
    for j in after.jobs.iter().filter(|j| j.state.is_live()) {
        match (&j.device, &j.kind) {
            (Device::Gpu { index }, _) => gpu_jobs.entry((&j.worker_id, *index)).or_default().push(j),
            (Device::Cpu, JobKind::Init { .. }) => cpu_init.entry(&j.worker_id).or_default().push(j),
            _ => {}
        }
    }
    for (k, v) in gpu_jobs.iter() {
        check_queue(&format!("GPU {k:?}"), v)?;
    }
    for (k, v) in cpu_init.iter() {
        check_queue(&format!("CPU of {k}"), v)?;
    }
    for a in &p.init {
        let w = worker_of(s, &a.worker_id).expect("assigned worker exists");
        if a.worker_id != a.target.worker_id {
            let t = worker_of(s, &a.target.worker_id).expect("target worker exists");
            prop_assert!(
                t.stream_endpoint,
                "{} computes for {}'s disk, which takes no streamed labels",
                a.worker_id,
                a.target.worker_id
            );
        }
        if let Device::Gpu { index } = a.device {
            let g = w
                .gpus
                .iter()
                .find(|g| g.index == index)
                .expect("assigned GPU exists");
            prop_assert!(g.enabled && g.labels_per_s > 0.0);
        } else {
            prop_assert!(w.cpu.init_enabled);
        }
    }
    Ok(())
}

fn phys_of(s: &Snapshot, worker_id: &str, disk_id: &str) -> Option<String> {
    worker_of(s, worker_id)?
        .disks
        .iter()
        .find(|d| d.id == disk_id)
        .map(|d| d.physical_device.clone())
}

fn check_proof_readers(s: &Snapshot, p: &Plan) -> Check {
    // (worker, physical device) -> (start, end, identity)
    let mut by_phys: BTreeMap<PhysKey, Vec<(i64, i64, &str)>> = BTreeMap::new();
    for slot in &p.proof_timeline {
        prop_assert!(slot.end_ms >= slot.start_ms);
        for ph in &slot.physical_devices {
            by_phys.entry((&slot.worker_id, ph)).or_default().push((
                slot.start_ms,
                slot.end_ms,
                &slot.identity_id,
            ));
        }
    }
    for (k, v) in by_phys.iter_mut() {
        v.sort_unstable();
        for w in v.windows(2) {
            prop_assert!(
                w[0].1 <= w[1].0,
                "two readers on {k:?}: {:?} and {:?}",
                w[0],
                w[1]
            );
        }
    }
    // Every new proof has its slot, reads the disks of the identity's files, and its devices.
    for pr in &p.proofs {
        let slot = p
            .proof_timeline
            .iter()
            .find(|t| t.job_id.is_none() && t.identity_id == pr.identity_id)
            .expect("new proof has a slot");
        prop_assert_eq!(slot.start_ms, pr.start_ms);
        prop_assert_eq!(slot.end_ms, pr.start_ms + pr.estimated_duration_ms);
        let ident = s
            .identities
            .iter()
            .find(|i| i.id == pr.identity_id)
            .expect("identity");
        let disks: BTreeSet<&str> = ident
            .files
            .iter()
            .filter_map(|f| f.placement.as_ref())
            .map(|pl| {
                assert_eq!(&*pl.worker_id, pr.worker_id.as_str());
                &*pl.disk_id
            })
            .collect();
        let listed: BTreeSet<&str> = pr.disks.iter().map(String::as_str).collect();
        prop_assert_eq!(&disks, &listed);
        let phys: BTreeSet<String> = disks
            .iter()
            .filter_map(|d| phys_of(s, &pr.worker_id, d))
            .collect();
        let listed: BTreeSet<String> = pr.physical_devices.iter().cloned().collect();
        prop_assert_eq!(phys, listed);
        prop_assert!(pr.start_ms >= pr.k2pow_ready_ms && pr.start_ms >= s.now_ms);
        prop_assert!(pr.nonces % 16 == 0 && pr.nonces > 0);
    }
    // CPU: wherever a new pass runs, the passes of its worker fit its proving capacity.
    let default_cap = s.config.default_proving_mib_s_per_16_nonces;
    for slot in p.proof_timeline.iter().filter(|t| t.job_id.is_none()) {
        let w = worker_of(s, &slot.worker_id).expect("worker");
        let c = w.cpu.proving_mib_s_per_16_nonces;
        let cap = if c.is_finite() && c > 0.0 { c } else { default_cap };
        let same: Vec<_> = p
            .proof_timeline
            .iter()
            .filter(|t| t.worker_id == slot.worker_id)
            .collect();
        let mut points: Vec<i64> = same.iter().map(|t| t.start_ms).collect();
        points.push(slot.start_ms);
        for t in points
            .into_iter()
            .filter(|&t| t >= slot.start_ms && t < slot.end_ms)
        {
            let load: f64 = same
                .iter()
                .filter(|x| x.start_ms <= t && t < x.end_ms)
                .map(|x| x.cpu_demand_mib_s)
                .sum();
            prop_assert!(
                load <= cap * (1.0 + 1e-6) + 1e-6,
                "CPU of {} over capacity at {t}",
                slot.worker_id
            );
        }
    }
    Ok(())
}

fn check_placement(s: &Snapshot, p: &Plan) -> Check {
    let reserve = s.config.disk_reserve_bytes;
    let mut committed: BTreeMap<(&str, &str), u128> = BTreeMap::new();
    for ident in &s.identities {
        let Some(layout) = ident.layout() else { continue };
        for f in ident.files.iter() {
            let (Some(pl), Some(r)) = (&f.placement, layout.file_range(f.index)) else {
                continue;
            };
            let left = r.len().saturating_sub(f.labels_done.min(r.len()));
            *committed.entry((&pl.worker_id, &pl.disk_id)).or_default() += u128::from(left * LABEL_BYTES);
        }
    }
    let mut added: BTreeMap<(&str, &str), u128> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for d in &p.placements {
        prop_assert!(
            usable(s, &d.worker_id),
            "placement on unusable worker {}",
            d.worker_id
        );
        let ident = s
            .identities
            .iter()
            .find(|i| i.id == d.identity_id)
            .expect("identity");
        let layout = ident.layout().expect("layout");
        for fp in &d.files {
            prop_assert!(seen.insert((&d.identity_id, fp.file_index)), "file placed twice");
            let r = layout.file_range(fp.file_index).expect("file in layout");
            let before = ident.files.iter().find(|f| f.index == fp.file_index);
            prop_assert!(before.is_none_or(|f| f.placement.is_none()), "placed file moved");
            let done = before.map_or(0, |f| f.labels_done.min(r.len()));
            prop_assert_eq!(fp.bytes, (r.len() - done) * LABEL_BYTES);
            *added.entry((&d.worker_id, &fp.disk_id)).or_default() += u128::from(fp.bytes);
        }
    }
    for ((w, d), bytes) in added {
        let disk = worker_of(s, w)
            .and_then(|x| x.disks.iter().find(|k| k.id == d))
            .expect("disk");
        let used = bytes + committed.get(&(w, d)).copied().unwrap_or(0) + u128::from(reserve);
        prop_assert!(
            used <= u128::from(disk.free_bytes),
            "disk {w}/{d} over-committed: {used} > {}",
            disk.free_bytes
        );
    }
    // All files of an identity end up on one worker.
    let after = apply(s, p, "new");
    for ident in after
        .identities
        .iter()
        .filter(|i| p.placements.iter().any(|d| d.identity_id == i.id))
    {
        let ws: BTreeSet<&str> = ident
            .files
            .iter()
            .filter_map(|f| f.placement.as_ref())
            .map(|pl| &*pl.worker_id)
            .collect();
        prop_assert!(ws.len() == 1, "{} spread over {ws:?}", ident.id);
    }
    Ok(())
}

/// Union length of ranges.
fn union_len(mut v: Vec<(u64, u64)>) -> u64 {
    v.sort_unstable();
    let (mut total, mut reach) = (0u64, 0u64);
    for (a, b) in v {
        let a = a.max(reach);
        if b > a {
            total += b - a;
            reach = b;
        }
    }
    total
}

fn overlaps(ranges: &[(u64, u64)], a: u64, b: u64) -> bool {
    ranges.iter().any(|&(x, y)| x < y && x < b && a < y)
}

fn check_init_cover(s: &Snapshot, p: &Plan) -> Check {
    let cancel = cancelled(p);
    let trunc: BTreeMap<&str, (u64, u64)> = p
        .truncations
        .iter()
        .map(|t| (t.job_id.as_str(), (t.new_end, t.old_end)))
        .collect();
    let mut missing_total = 0u64;
    let mut assigned_total = 0u64;
    let mut new_by_file: BTreeMap<(&str, u32), Vec<(u64, u64)>> = BTreeMap::new();
    for a in &p.init {
        prop_assert!(a.range.start < a.range.end, "empty range");
        prop_assert!(usable(s, &a.worker_id), "init on unusable worker");
        prop_assert!(usable(s, &a.target.worker_id), "init writes to unusable storage");
        let ranges = new_by_file.entry((&a.identity_id, a.file_index)).or_default();
        prop_assert!(
            !overlaps(ranges, a.range.start, a.range.end),
            "new ranges overlap"
        );
        ranges.push((a.range.start, a.range.end));
    }
    let ids: BTreeMap<&str, usize> = {
        let mut m = BTreeMap::new();
        for i in &s.identities {
            *m.entry(i.id.as_str()).or_insert(0) += 1;
        }
        m
    };
    for ident in &s.identities {
        if !ident.state.wants_init() || ids.get(ident.id.as_str()) != Some(&1) {
            continue;
        }
        let Some(layout) = ident.layout() else { continue };
        for f in 0..layout.num_files as u32 {
            let r = layout.file_range(f).expect("in layout");
            let fs = ident.files.iter().find(|x| x.index == f);
            let mut covered = vec![(r.start, r.start + fs.map_or(0, |x| x.labels_done.min(r.len())))];
            let mut live_rem = Vec::new();
            for j in s.jobs.iter().filter(|j| j.identity_id == ident.id) {
                let JobKind::Init { file_index, range } = &j.kind else {
                    continue;
                };
                if *file_index != f || range.start < r.start || range.end > r.end || range.is_empty() {
                    continue;
                }
                let mid = range.start.saturating_add(j.progress).min(range.end);
                covered.push((range.start, mid));
                let kept = j.state.is_live() && !cancel.contains_key(j.id.as_str());
                if kept {
                    covered.push((mid, range.end));
                    live_rem.push((mid, range.end, j.id.as_str()));
                }
            }
            let missing = r.len() - union_len(covered.clone());
            missing_total += missing;
            for &(a, b) in new_by_file.get(&(ident.id.as_str(), f)).into_iter().flatten() {
                let stolen = p
                    .init
                    .iter()
                    .find(|x| x.identity_id == ident.id && x.file_index == f && x.range.start == a);
                match stolen.and_then(|x| x.stolen_from.as_deref()) {
                    None => {
                        prop_assert!(
                            !overlaps(&covered, a, b),
                            "{}/{f}: new [{a},{b}) overlaps held labels",
                            ident.id
                        );
                        assigned_total += b - a;
                    }
                    Some(src) => {
                        let &(s0, s1, _) = live_rem
                            .iter()
                            .find(|x| x.2 == src)
                            .expect("stolen from a kept live job");
                        let lo = trunc.get(src).map_or(s0, |t| t.0);
                        prop_assert!(a >= lo && b <= s1, "stolen range outside the job's tail");
                        if let Some(t) = trunc.get(src) {
                            prop_assert_eq!(t.1, s1);
                        }
                    }
                }
            }
        }
    }
    let sm = &p.summary;
    prop_assert_eq!(missing_total, sm.labels_missing, "missing labels");
    prop_assert_eq!(assigned_total, sm.labels_assigned, "assigned labels");
    prop_assert_eq!(
        sm.labels_missing,
        sm.labels_assigned + sm.labels_unassigned + sm.labels_blocked
    );
    // After applying: live remaining ranges of a file are pairwise disjoint (nothing counted twice),
    // and stolen tails exactly replace what truncations cut.
    let after = apply(s, p, "new");
    let mut live: BTreeMap<(&str, u32), Vec<(u64, u64)>> = BTreeMap::new();
    let ok_idents: BTreeSet<&str> = s
        .identities
        .iter()
        .filter(|i| ids.get(i.id.as_str()) == Some(&1) && i.state.wants_init())
        .map(|i| i.id.as_str())
        .collect();
    let planned: BTreeSet<&str> = after
        .jobs
        .iter()
        .filter(|j| j.id.starts_with("new-"))
        .map(|j| j.id.as_str())
        .collect();
    for j in after.jobs.iter().filter(|j| j.state.is_live()) {
        let JobKind::Init { file_index, range } = &j.kind else {
            continue;
        };
        if !ok_idents.contains(j.identity_id.as_str()) {
            continue;
        }
        let mid = range.start.saturating_add(j.progress).min(range.end);
        let v = live.entry((&j.identity_id, *file_index)).or_default();
        if mid < range.end && planned.contains(j.id.as_str()) {
            prop_assert!(
                !overlaps(v, mid, range.end),
                "planned job {} overlaps a live range",
                j.id
            );
        }
        v.push((mid, range.end));
    }
    let stolen: u64 = p
        .init
        .iter()
        .filter(|a| a.stolen_from.is_some())
        .map(|a| a.range.len())
        .sum();
    prop_assert_eq!(stolen, sm.labels_stolen);
    Ok(())
}

fn check_slack_order(s: &Snapshot, p: &Plan) -> Check {
    for w in p.proofs.windows(2) {
        prop_assert!(
            (w[0].slack_ms, &w[0].identity_id) <= (w[1].slack_ms, &w[1].identity_id),
            "proofs out of slack order"
        );
    }
    // On one physical device, new passes run in slack order.
    // (worker, physical device) -> (slack, identity, start)
    let mut by_phys: BTreeMap<PhysKey, Vec<(i64, &str, i64)>> = BTreeMap::new();
    for pr in &p.proofs {
        for ph in &pr.physical_devices {
            by_phys
                .entry((&pr.worker_id, ph))
                .or_default()
                .push((pr.slack_ms, &pr.identity_id, pr.start_ms));
        }
    }
    for v in by_phys.values_mut() {
        v.sort_unstable();
        for w in v.windows(2) {
            prop_assert!(w[0].2 <= w[1].2, "later slack starts first");
        }
    }
    // Nonces: when a pass is not at risk it fits its deadline.
    for pr in &p.proofs {
        let risky = p.at_risk.iter().any(|r| r.identity_id == pr.identity_id);
        if !risky {
            prop_assert!(
                pr.start_ms + pr.estimated_duration_ms <= pr.deadline_ms - s.config.deadline_margin_ms
            );
        }
    }
    Ok(())
}

fn check_lost_work(s: &Snapshot, p: &Plan) -> Check {
    let cancel = cancelled(p);
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for j in &s.jobs {
        *ids.entry(j.id.as_str()).or_insert(0) += 1;
    }
    for j in s
        .jobs
        .iter()
        .filter(|j| j.state.is_live() && ids.get(j.id.as_str()) == Some(&1))
    {
        let w = worker_of(s, &j.worker_id);
        let offline = w.is_none_or(|w| !w.online);
        let expired = matches!(j.state, JobStatus::Leased | JobStatus::Running)
            && j.lease_expires_ms.is_some_and(|t| t <= s.now_ms);
        let queued_on_drained = j.state == JobStatus::Queued && w.is_some_and(|w| w.draining || w.paused);
        if offline || expired || queued_on_drained {
            prop_assert!(
                cancel.contains_key(j.id.as_str()),
                "lost job {} not cancelled",
                j.id
            );
        }
    }
    Ok(())
}

fn check_unavailable_get_nothing(s: &Snapshot, p: &Plan) -> Check {
    for a in &p.init {
        prop_assert!(usable(s, &a.worker_id) && usable(s, &a.target.worker_id));
    }
    for d in &p.placements {
        prop_assert!(usable(s, &d.worker_id));
    }
    for k in &p.k2pow {
        prop_assert!(usable(s, &k.worker_id));
        let w = worker_of(s, &k.worker_id).expect("worker");
        prop_assert!(w.cpu.randomx_hashes_per_s > 0.0);
    }
    for pr in &p.proofs {
        prop_assert!(usable(s, &pr.worker_id));
    }
    Ok(())
}

/// Every new pass has k2pow for all its groups: done, held by a kept job, or planned now; planned
/// groups are new and end before the pass starts.
fn check_k2pow(s: &Snapshot, p: &Plan) -> Check {
    let cancel = cancelled(p);
    for pr in &p.proofs {
        let ident = s
            .identities
            .iter()
            .find(|i| i.id == pr.identity_id)
            .expect("identity");
        let need = ident.proving.as_ref().expect("proof needed");
        let base = need.first_nonce / 16;
        let mut held: BTreeSet<u32> = (base..base + need.pow_groups_done).collect();
        for j in s.jobs.iter().filter(|j| j.identity_id == ident.id) {
            let JobKind::K2pow { groups } = &j.kind else {
                continue;
            };
            let done = groups.start + (j.progress.min(u64::from(groups.len())) as u32);
            held.extend(groups.start..done);
            if j.state.is_live() && !cancel.contains_key(j.id.as_str()) {
                held.extend(done..groups.end);
            }
        }
        let mut planned = BTreeSet::new();
        for k in p.k2pow.iter().filter(|k| k.identity_id == ident.id) {
            for g in k.groups.start..k.groups.end {
                prop_assert!(!held.contains(&g), "group {g} planned twice");
                prop_assert!(planned.insert(g));
            }
            prop_assert!(k.estimated_end_ms <= pr.start_ms);
            prop_assert!(k.estimated_start_ms >= s.now_ms);
        }
        for g in base..base + pr.nonces / 16 {
            prop_assert!(
                held.contains(&g) || planned.contains(&g),
                "group {g} of {} missing",
                ident.id
            );
        }
    }
    Ok(())
}

fn check_all(s: &Snapshot, p: &Plan) -> Check {
    check_devices(s, p)?;
    check_proof_readers(s, p)?;
    check_placement(s, p)?;
    check_init_cover(s, p)?;
    check_slack_order(s, p)?;
    check_lost_work(s, p)?;
    check_unavailable_get_nothing(s, p)?;
    check_k2pow(s, p)
}

fn fleet() -> impl Strategy<Value = (usize, usize, u64)> {
    (1usize..=50, 1usize..=200, any::<u64>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn no_gpu_double_booked((w, n, seed) in fleet()) {
        let s = gen_snapshot(w, n, seed);
        check_devices(&s, &plan(&s))?;
    }

    #[test]
    fn at_most_one_proof_reader_per_physical_device((w, n, seed) in fleet()) {
        let s = gen_snapshot(w, n, seed);
        check_proof_readers(&s, &plan(&s))?;
    }

    #[test]
    fn placement_never_exceeds_free_space((w, n, seed) in fleet()) {
        let s = gen_snapshot(w, n, seed);
        check_placement(&s, &plan(&s))?;
    }

    #[test]
    fn init_ranges_cover_exactly_the_missing_labels((w, n, seed) in fleet()) {
        let s = gen_snapshot(w, n, seed);
        check_init_cover(&s, &plan(&s))?;
    }

    #[test]
    fn proofs_are_ordered_by_slack((w, n, seed) in fleet()) {
        let s = gen_snapshot(w, n, seed);
        check_slack_order(&s, &plan(&s))?;
        check_k2pow(&s, &plan(&s))?;
    }

    #[test]
    fn lost_work_is_reassigned_and_unavailable_workers_get_nothing((w, n, seed) in fleet()) {
        let s = gen_snapshot(w, n, seed);
        let p = plan(&s);
        check_lost_work(&s, &p)?;
        check_unavailable_get_nothing(&s, &p)?;
    }

    #[test]
    fn plan_is_deterministic_and_ignores_list_order((w, n, seed) in fleet()) {
        let s = gen_snapshot(w, n, seed);
        let p = plan(&s);
        prop_assert_eq!(&p, &plan(&s));
        prop_assert_eq!(&p, &plan(&shuffled(&s, seed)));
    }

    #[test]
    fn planning_the_applied_plan_adds_nothing((w, n, seed) in fleet()) {
        let s = gen_snapshot(w, n, seed);
        let p = plan(&s);
        check_all(&s, &p)?;
        let s2 = apply(&s, &p, "applied");
        let p2 = plan(&s2);
        let actions = (&p2.placements, &p2.init, &p2.cancellations, &p2.truncations, &p2.k2pow, &p2.proofs);
        prop_assert!(p2.has_no_actions(), "second plan: {:?}", actions);
        check_all(&s2, &p2)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// With work to spare, every GPU ends the plan with its queue full: an idle one holds one new
    /// job, a busy one (one leased or running job) gets the next one queued behind it, and none
    /// holds more than two.
    #[test]
    fn busy_devices_get_their_next_range_queued(w in 1usize..=6, seed in any::<u64>()) {
        let s = gen_queue_fleet(w, seed);
        let p = plan(&s);
        check_all(&s, &p)?;
        prop_assert!(p.cancellations.is_empty(), "{:?}", p.cancellations);
        let after = apply(&s, &p, "new");
        let (before, now) = (gpu_queues(&s), gpu_queues(&after));
        for (k, &(n, active)) in &before {
            let want = match (n, active) {
                (0, _) => 1,
                (1, true) => 2,
                (n, _) => n,
            };
            prop_assert_eq!(now.get(k).map(|x| x.0), Some(want), "GPU {:?} had {} jobs", k, n);
        }
        prop_assert!(plan(&after).has_no_actions());
    }
}

/// Found by the idempotence property: a slow job that was cancelled freed its device and its write
/// budget, so planning again stole from another slow job. Slow jobs are now cut, never cancelled.
#[test]
fn regression_stealing_is_idempotent() {
    let s = gen_snapshot(32, 30, 6_066_823_115_758_568_886);
    let p = plan(&s);
    assert!(!p.truncations.is_empty());
    if let Err(e) = check_all(&s, &p) {
        panic!("{e}");
    }
    assert_idempotent(&s, &p);
}

/// Found by the idempotence property (26 workers, 3 identities): after the plan is applied,
/// planning again stole from a slow job.
#[test]
fn regression_stealing_after_apply_is_idempotent() {
    let s = gen_snapshot(26, 3, 6_665_838_235_077_247_389);
    let p = plan(&s);
    if let Err(e) = check_all(&s, &p) {
        panic!("{e}");
    }
    assert_idempotent(&s, &p);
}

/// Found by the idempotence property on CI (37 workers, 16 identities): planning the applied plan
/// cancelled one of its own init jobs as obsolete.
#[test]
fn regression_applied_init_job_is_not_obsolete() {
    let s = gen_snapshot(37, 16, 5_093_940_949_399_421_430);
    let p = plan(&s);
    if let Err(e) = check_all(&s, &p) {
        panic!("{e}");
    }
    assert_idempotent(&s, &p);
}

/// Found by the idempotence property on CI (37 workers, 16 identities): a stalled running job that
/// had done nothing was cut at its start, leaving it an empty range, and planning again cancelled
/// it as obsolete. A live job cut to nothing now ends on its own, holding its device until it
/// reports.
#[test]
fn regression_a_stalled_job_cut_to_nothing_is_not_cancelled() {
    let s = gen_snapshot(37, 16, 5_093_940_949_399_421_430);
    let p = plan(&s);
    assert!(
        p.truncations
            .iter()
            .any(|t| t.job_id == "j21" && t.new_end == 870),
        "the fleet of this seed no longer cuts j21 at its start: {:?}",
        p.truncations
    );
    if let Err(e) = check_all(&s, &p) {
        panic!("{e}");
    }
    assert_idempotent(&s, &p);
}
