//! Planning time on a large simulated fleet: `cargo bench -p orchestrator --bench plan`.
//! Options after `--`: `--runs N` (default 7), `--workers N` (default 1000), `--identities N`
//! (default 10000), `--seed S`.
//!
//! The fleet: one worker in twenty is a GPU rig (4 GPUs, no disks: 200 GPUs for 1000 workers), the
//! others are storage rigs (12 disks, two of them partitions of one device; CPUs that prove and do
//! k2pow); 1% offline, 1% draining. Identities are mainnet-sized (4 GiB files, 4-16 units): 40%
//! ready and waiting for a proof, 20% initialising with a running job on every GPU (some leases
//! expired, some slow), 40% just created (no placement yet).

use std::time::{Duration, Instant};

use orchestrator::scheduler::{
    apply, plan, CpuState, Device, DiskState, FileLocation, FileState, GpuState, GroupRange, IdentityPhase,
    IdentityState, JobKind, JobState, JobStatus, LabelRange, Plan, ProvingNeed, SchedulerConfig, Snapshot,
    WorkerState,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const NOW: i64 = 1_740_000_000_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const LABELS_PER_UNIT: u64 = 1 << 32;
const MAX_FILE_SIZE: u64 = 1 << 32;
const LABELS_PER_FILE: u64 = MAX_FILE_SIZE / 16;

fn fleet(n_workers: usize, n_identities: usize, seed: u64) -> Snapshot {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut workers = Vec::with_capacity(n_workers);
    for w in 0..n_workers {
        let gpu_rig = w % 20 == 0;
        let r: f64 = rng.gen();
        let gpus = if gpu_rig {
            (0..4)
                .map(|k| GpuState {
                    index: k,
                    model: if k % 2 == 0 { "H100" } else { "RTX 4090" }.into(),
                    labels_per_s: if k % 2 == 0 { 1.0e6 } else { 4.5e5 } * rng.gen_range(0.9..1.1),
                    enabled: true,
                })
                .collect()
        } else {
            Vec::new()
        };
        let disks = if gpu_rig {
            Vec::new()
        } else {
            (0..12)
                .map(|k| {
                    let capacity = 8_000_000_000_000u64;
                    DiskState {
                        id: format!("disk{k}"),
                        mount: format!("/mnt/disk{k}"),
                        physical_device: format!("sd{}", if k == 11 { 10 } else { k }),
                        capacity_bytes: capacity,
                        free_bytes: capacity,
                        read_mb_s: rng.gen_range(200.0..260.0),
                        write_mb_s: rng.gen_range(180.0..240.0),
                    }
                })
                .collect()
        };
        workers.push(WorkerState {
            id: format!("worker-{w:04}"),
            online: r >= 0.01,
            draining: (0.01..0.02).contains(&r),
            paused: false,
            gpus,
            cpu: CpuState {
                threads: 32,
                labels_per_s: 950.0,
                randomx_hashes_per_s: if gpu_rig {
                    0.0
                } else {
                    rng.gen_range(3000.0..6000.0)
                },
                proving_mib_s_per_16_nonces: rng.gen_range(2000.0..4000.0),
                init_enabled: false,
            },
            disks,
            stream_endpoint: true,
        });
    }
    let storage: Vec<usize> = (0..n_workers).filter(|w| w % 20 != 0).collect();
    let gpu_slots: Vec<(usize, u32)> = (0..n_workers)
        .filter(|w| w % 20 == 0)
        .flat_map(|w| (0..4).map(move |g| (w, g)))
        .collect();

    let mut identities = Vec::with_capacity(n_identities);
    let mut jobs = Vec::new();
    let mut used: Vec<[u64; 12]> = vec![[0; 12]; n_workers];
    let mut slot = 0usize;
    for i in 0..n_identities {
        let units = rng.gen_range(4..=16u32);
        let n_files = u64::from(units) * LABELS_PER_UNIT / LABELS_PER_FILE;
        let kind = i % 10;
        let state = match kind {
            0..=3 => IdentityPhase::Ready,
            4..=5 => IdentityPhase::Initializing,
            _ => IdentityPhase::Created,
        };
        let id = format!("identity-{i:05}");
        let home = storage[i % storage.len()];
        let mut files = Vec::new();
        if state != IdentityPhase::Created {
            for f in 0..n_files {
                let d = (f as usize + i) % 12;
                let done = match state {
                    IdentityPhase::Ready => LABELS_PER_FILE,
                    _ if f < n_files / 2 => LABELS_PER_FILE,
                    _ if f == n_files / 2 => LABELS_PER_FILE / 3,
                    _ => 0,
                };
                used[home][d] += done * 16;
                files.push(FileState {
                    index: f as u32,
                    labels_total: LABELS_PER_FILE,
                    labels_done: done,
                    placement: Some(FileLocation {
                        worker_id: workers[home].id.as_str().into(),
                        disk_id: format!("disk{d}").into(),
                    }),
                });
            }
        }
        let proving = (state == IdentityPhase::Ready).then(|| ProvingNeed {
            challenge_known_at_ms: NOW - rng.gen_range(0..20 * MIN),
            deadline_ms: NOW + 12 * HOUR - rng.gen_range(0..HOUR),
            first_nonce: 0,
            pow_groups_done: if rng.gen_bool(0.2) {
                rng.gen_range(0..18)
            } else {
                0
            },
        });
        // Running init jobs on the GPUs: one per GPU while they last.
        if state == IdentityPhase::Initializing && slot < gpu_slots.len() {
            let (w, g) = gpu_slots[slot];
            slot += 1;
            let f = n_files / 2;
            let start = f * LABELS_PER_FILE + LABELS_PER_FILE / 3;
            let r: f64 = rng.gen();
            jobs.push(JobState {
                id: format!("init-{i}"),
                identity_id: id.clone(),
                worker_id: workers[w].id.clone(),
                device: Device::Gpu { index: g },
                kind: JobKind::Init {
                    file_index: f as u32,
                    range: LabelRange {
                        start,
                        end: (f + 1) * LABELS_PER_FILE,
                    },
                },
                state: JobStatus::Running,
                lease_expires_ms: Some(if r < 0.03 { NOW - MIN } else { NOW + 5 * MIN }),
                started_ms: Some(NOW - 2 * MIN),
                not_before_ms: None,
                progress: if r > 0.95 {
                    1000
                } else {
                    rng.gen_range(10_000_000..100_000_000)
                },
            });
        }
        // Some k2pow already running, some proofs already reading.
        if let Some(need) = &proving {
            if rng.gen_bool(0.1) {
                let w = storage[rng.gen_range(0..storage.len())];
                jobs.push(JobState {
                    id: format!("k2pow-{i}"),
                    identity_id: id.clone(),
                    worker_id: workers[w].id.clone(),
                    device: Device::Cpu,
                    kind: JobKind::K2pow {
                        groups: GroupRange {
                            start: need.pow_groups_done,
                            end: 18,
                        },
                    },
                    state: JobStatus::Running,
                    lease_expires_ms: Some(NOW + 5 * MIN),
                    started_ms: Some(NOW - MIN),
                    not_before_ms: None,
                    progress: 1,
                });
            } else if rng.gen_bool(0.02) {
                jobs.push(JobState {
                    id: format!("prove-{i}"),
                    identity_id: id.clone(),
                    worker_id: workers[home].id.clone(),
                    device: Device::Cpu,
                    kind: JobKind::Prove {
                        first_nonce: 0,
                        nonces: 288,
                        disks: Vec::new(),
                    },
                    state: JobStatus::Running,
                    lease_expires_ms: Some(NOW + 5 * MIN),
                    started_ms: Some(NOW - MIN),
                    not_before_ms: None,
                    progress: 0,
                });
            }
        }
        identities.push(IdentityState {
            id,
            num_units: units,
            labels_per_unit: LABELS_PER_UNIT,
            max_file_size: MAX_FILE_SIZE,
            state,
            files: files.into(),
            proving,
        });
    }
    for (w, u) in used.iter().enumerate() {
        for (k, d) in workers[w].disks.iter_mut().enumerate() {
            d.free_bytes = d.capacity_bytes.saturating_sub(u[k]);
        }
    }
    Snapshot {
        now_ms: NOW,
        workers,
        identities,
        jobs,
        config: SchedulerConfig::default(),
    }
}

fn time_plans(s: &Snapshot, runs: usize) -> (Plan, Vec<Duration>) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let p = plan(s);
        times.push(t.elapsed());
        last = Some(p);
    }
    times.sort_unstable();
    (last.unwrap_or_default(), times)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn row(name: &str, times: &[Duration]) {
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let max = times.last().copied().unwrap_or_default();
    let min = times.first().copied().unwrap_or_default();
    println!(
        "| {name:<38} | {:>5} | {:>9.1} | {:>9.1} | {:>9.1} |",
        times.len(),
        ms(min),
        ms(median),
        ms(max)
    );
}

fn size(p: &Plan) -> String {
    format!(
        "placements {} identities / {} files, init {}, cancellations {}, truncations {}, k2pow {}, \
         proofs {}, timeline {}, at_risk {}, unplaced {}, issues {}",
        p.placements.len(),
        p.placements.iter().map(|d| d.files.len()).sum::<usize>(),
        p.init.len(),
        p.cancellations.len(),
        p.truncations.len(),
        p.k2pow.len(),
        p.proofs.len(),
        p.proof_timeline.len(),
        p.at_risk.len(),
        p.unplaced.len(),
        p.issues.len()
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let runs: usize = get("--runs").and_then(|s| s.parse().ok()).unwrap_or(7);
    let n_workers: usize = get("--workers").and_then(|s| s.parse().ok()).unwrap_or(1000);
    let n_identities: usize = get("--identities").and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let seed: u64 = get("--seed").and_then(|s| s.parse().ok()).unwrap_or(1);

    let t = Instant::now();
    let s = fleet(n_workers, n_identities, seed);
    let built = t.elapsed();
    let files: usize = s.identities.iter().map(|i| i.files.len()).sum();
    let gpus: usize = s.workers.iter().map(|w| w.gpus.len()).sum();
    let disks: usize = s.workers.iter().map(|w| w.disks.len()).sum();
    let pending = s.identities.iter().filter(|i| i.proving.is_some()).count();
    println!(
        "fleet: {} workers ({gpus} GPUs, {disks} disks), {} identities ({files} file states, {pending} \
         proofs pending), {} jobs; built in {:.0} ms",
        s.workers.len(),
        s.identities.len(),
        s.jobs.len(),
        ms(built)
    );

    let (first, t1) = time_plans(&s, runs);
    let applied = apply(&s, &first, "bench");
    let (second, t2) = time_plans(&applied, runs);

    println!();
    println!("| plan                                   |  runs |   min ms | median ms |   max ms |");
    println!("|----------------------------------------|-------|----------|-----------|----------|");
    row("first (place new identities, all work)", &t1);
    row("after applying it (steady state)", &t2);
    println!();
    let json = serde_json::to_vec(&first).map(|v| v.len()).unwrap_or(0);
    println!(
        "first plan: {} actions, {} bytes of JSON",
        first.action_count(),
        json
    );
    println!("  {}", size(&first));
    println!(
        "  labels missing {} (assigned {}, waiting for a device {}, blocked {}), stolen {}",
        first.summary.labels_missing,
        first.summary.labels_assigned,
        first.summary.labels_unassigned,
        first.summary.labels_blocked,
        first.summary.labels_stolen
    );
    let by_nonces = |n: u32| first.proofs.iter().filter(|p| p.nonces == n).count();
    println!(
        "  proofs at 288/144/64/16 nonces: {}/{}/{}/{}",
        by_nonces(288),
        by_nonces(144),
        by_nonces(64),
        by_nonces(16)
    );
    let mut risks: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for r in &first.at_risk {
        let name = serde_json::to_value(&r.reason)
            .ok()
            .and_then(|v| v.get("reason").and_then(|n| n.as_str()).map(str::to_owned))
            .unwrap_or_default();
        *risks.entry(name).or_default() += 1;
    }
    println!("  at risk: {risks:?}");
    println!(
        "second plan: {} actions ({})",
        second.action_count(),
        size(&second)
    );
}
