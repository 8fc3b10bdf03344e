//! The agent against a fake coordinator (a minimal HTTP/1.1 server on a local port): it leases
//! only once unpaused, one job per slot with the kinds the rig can run, reports k2pow progress
//! with its checkpoint, and completes k2pow, verify and prove jobs with their typed results. The
//! fake coordinator fills the prove job's pows from the finished k2pow job, as the real one will.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use post::backend::CpuBackend;
use post::initialize::{initialize, InitOptions};
use post::pow::{RandomXMode, RandomXPow};
use post::proof::{Proof, ProofConfig};
use protocol::{
    Capabilities, CompleteRequest, CpuInfo, Device, DiskInfo, FailRequest, GroupRange, HeartbeatResponse,
    IdentityParams, JobKind, JobSpec, K2powResult, LabelRange, LeaseRequest, LeaseResponse, LeasedJob,
    Placement, ProgressRequest, ProgressResponse, ProveResult, VerifyResult,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;
use worker::agent::{run_with, AgentOptions};
use worker::exec::{identity_dir, ExecConfig};

#[derive(Default)]
struct Fake {
    paused: bool,
    queue: VecDeque<LeasedJob>,
    leases: Vec<LeaseRequest>,
    progress: Vec<(Uuid, ProgressRequest)>,
    complete: Vec<(Uuid, CompleteRequest)>,
    fail: Vec<(Uuid, FailRequest)>,
    /// Every leased job, by id.
    leased: Vec<LeasedJob>,
    /// Built from the k2pow result once it completes.
    prove_template: Option<LeasedJob>,
    /// Cut an init job short at its first progress report, where it is then (as the coordinator
    /// cuts a slow job whose tail went to faster devices).
    cut_at_first_report: bool,
    /// The end the progress answers name, once cut.
    cut: Option<u64>,
}

type Shared = Arc<Mutex<Fake>>;

fn handle(fake: &Shared, path: &str, body: &[u8]) -> serde_json::Value {
    let mut f = fake.lock().expect("lock");
    let job_id = |suffix: &str| -> Uuid {
        path.trim_start_matches("/api/v1/worker/jobs/")
            .trim_end_matches(suffix)
            .parse()
            .expect("job id")
    };
    match path {
        "/api/v1/worker/enroll" => serde_json::json!({"worker_id": Uuid::new_v4(), "credential": "c"}),
        "/api/v1/worker/heartbeat" => serde_json::to_value(HeartbeatResponse {
            state: "online".into(),
            drain: false,
            stop: vec![],
            heartbeat_interval_ms: 100,
            paused: f.paused,
        })
        .expect("json"),
        "/api/v1/worker/lease" => {
            let req: LeaseRequest = serde_json::from_slice(body).expect("lease request");
            let pos = f.queue.iter().position(|j| req.kinds.contains(&j.kind));
            let jobs: Vec<LeasedJob> = pos.and_then(|p| f.queue.remove(p)).into_iter().collect();
            f.leased.extend(jobs.iter().cloned());
            f.leases.push(req);
            serde_json::to_value(LeaseResponse { jobs, lease_ms: 3000 }).expect("json")
        }
        p if p.ends_with("/progress") => {
            let req: ProgressRequest = serde_json::from_slice(body).expect("progress");
            if f.cut_at_first_report && f.cut.is_none() {
                f.cut = Some(req.done);
            }
            f.progress.push((job_id("/progress"), req));
            serde_json::to_value(ProgressResponse {
                lease_expires_at: 0,
                ranges_recorded: 0,
                end_label: f.cut,
            })
            .expect("json")
        }
        p if p.ends_with("/complete") => {
            let id = job_id("/complete");
            let req: CompleteRequest = serde_json::from_slice(body).expect("complete");
            let kind = f.leased.iter().find(|j| j.job_id == id).map(|j| j.kind.clone());
            if kind.as_deref() == Some("k2pow") {
                let r: K2powResult =
                    serde_json::from_value(req.result.clone().expect("result")).expect("k2pow result");
                if let Some(mut prove) = f.prove_template.take() {
                    prove.pows = r.pows;
                    f.queue.push_back(prove);
                }
            }
            f.complete.push((id, req));
            serde_json::json!({})
        }
        p if p.ends_with("/fail") => {
            let req: FailRequest = serde_json::from_slice(body).expect("fail");
            f.fail.push((job_id("/fail"), req));
            serde_json::json!({})
        }
        other => panic!("unexpected route {other}"),
    }
}

/// Serves HTTP/1.1 requests with JSON bodies, keep-alive, until the test ends.
async fn serve(listener: tokio::net::TcpListener, fake: Shared) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let fake = fake.clone();
        tokio::spawn(async move {
            let (r, mut w) = sock.into_split();
            let mut r = BufReader::new(r);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).await.is_err() {
                    return;
                }
                let out = serde_json::to_vec(&handle(&fake, &path, &body)).expect("json");
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    out.len()
                );
                if w.write_all(head.as_bytes()).await.is_err() || w.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn leased(kind: &str, identity: &IdentityParams, spec: JobSpec) -> LeasedJob {
    LeasedJob {
        job_id: Uuid::new_v4(),
        kind: kind.into(),
        fencing_token: 7,
        lease_expires_at: 0,
        attempt: 1,
        identity: identity.clone(),
        spec,
        progress: None,
        pows: Vec::new(),
        proof: None,
        stream: None,
    }
}

/// The test rig's disk `d0`, mounted at `<tmp>/disk0`.
fn disk0(tmp: &Path) -> DiskInfo {
    DiskInfo {
        id: "d0".into(),
        mount: tmp.join("disk0").display().to_string(),
        physical_device: "/dev/sda".into(),
        filesystem: "ext4".into(),
        capacity_bytes: 1 << 40,
        free_bytes: 1 << 30,
        read_mb_s: 0.0,
        write_mb_s: 0.0,
    }
}

/// An agent named `rig` for the fake coordinator at `addr`, keeping its state in `<tmp>/state`,
/// reporting every 100 ms.
fn agent_options(
    addr: std::net::SocketAddr,
    tmp: &Path,
    cpu_threads: usize,
    capabilities: Capabilities,
) -> AgentOptions {
    AgentOptions {
        coordinator: format!("http://{addr}"),
        join_token: Some("join".into()),
        data_dir: tmp.join("state"),
        name: "rig".into(),
        cpu_threads,
        capabilities,
        heartbeat_interval: Duration::from_millis(100),
        lease_poll: Duration::from_millis(100),
        progress_interval: Duration::from_millis(100),
    }
}

async fn wait_for(fake: &Shared, what: &str, cond: impl Fn(&Fake) -> bool) {
    for _ in 0..600 {
        if cond(&fake.lock().expect("lock")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let f = fake.lock().expect("lock");
    panic!(
        "timed out waiting for {what}; fails: {:?}",
        f.fail.iter().map(|(_, r)| &r.error).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_when_unpaused_and_completes_k2pow_verify_and_prove() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let disk = disk0(tmp.path());
    let identity = IdentityParams {
        identity_id: Uuid::new_v4(),
        node_id: hex::encode([0x61; 32]),
        commitment_atx_id: Some(hex::encode([0x62; 32])),
        num_units: 2,
        labels_per_unit: 8192,
        max_file_size: 16384 * 16,
        scrypt_n: 2,
    };
    let dir = identity_dir(&disk, &identity.node_id);
    let mut opts = InitOptions::new([0x61; 32], [0x62; 32], 2, 8192, 16384 * 16);
    opts.scrypt_n = 2;
    std::fs::create_dir_all(&dir).expect("mkdir");
    initialize(
        &dir,
        &opts,
        &CpuBackend::new(1).expect("cpu"),
        &|_| {},
        &AtomicBool::new(false),
    )
    .expect("init");

    let mut difficulty = [0xff; 32];
    difficulty[0] = 0x20;
    let proof_cfg = ProofConfig {
        k1: 8,
        k2: 6,
        pow_difficulty: difficulty,
    };
    let challenge = hex::encode([0x77; 32]);
    let fake: Shared = Arc::new(Mutex::new(Fake {
        paused: true,
        ..Fake::default()
    }));
    {
        let mut f = fake.lock().expect("lock");
        let target = Some(Placement {
            worker_id: "w".into(),
            disk_id: "d0".into(),
        });
        f.queue.push_back(leased(
            "verify",
            &identity,
            JobSpec {
                device: Device::Disk { disk_id: "d0".into() },
                work: JobKind::Verify {
                    file_index: 0,
                    range: LabelRange { start: 0, end: 16384 },
                },
                target,
                challenge: None,
            },
        ));
        f.queue.push_back(leased(
            "k2pow",
            &identity,
            JobSpec {
                device: Device::Cpu,
                work: JobKind::K2pow {
                    groups: GroupRange { start: 2, end: 4 },
                },
                target: None,
                challenge: Some(challenge.clone()),
            },
        ));
        f.prove_template = Some(leased(
            "prove",
            &identity,
            JobSpec {
                device: Device::Cpu,
                work: JobKind::Prove {
                    first_nonce: 32,
                    nonces: 32,
                    disks: vec!["d0".into()],
                },
                target: None,
                challenge: Some(challenge.clone()),
            },
        ));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, fake.clone()));

    let caps = Capabilities {
        hostname: "rig".into(),
        cpu: CpuInfo {
            threads: 2,
            init_enabled: false,
            ..CpuInfo::default()
        },
        disks: vec![disk.clone()],
        ..Capabilities::default()
    };
    let agent_opts = agent_options(addr, tmp.path(), 2, caps);
    let exec = ExecConfig {
        proof: proof_cfg,
        randomx_mode: RandomXMode::Light,
        large_pages: false,
        verify_sample_per_chunk: 64,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(run_with(agent_opts, exec, async {
        let _ = stop_rx.await;
    }));

    // Paused: heartbeats, but no lease.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        fake.lock().expect("lock").leases.is_empty(),
        "a paused worker leases nothing"
    );
    fake.lock().expect("lock").paused = false;

    wait_for(&fake, "three completed jobs", |f| f.complete.len() == 3).await;
    let _ = stop_tx.send(());
    agent.await.expect("join").expect("agent");

    let f = fake.lock().expect("lock");
    assert!(
        f.fail.is_empty(),
        "{:?}",
        f.fail.iter().map(|(_, r)| &r.error).collect::<Vec<_>>()
    );
    // The kinds by slot: no init (no label device here), one job per slot at a time.
    for req in &f.leases {
        assert!(
            req.kinds == ["verify"] || req.kinds == ["k2pow", "prove"],
            "{:?}",
            req.kinds
        );
        assert_eq!(req.max_jobs, Some(1));
    }
    let result = |kind: &str| -> serde_json::Value {
        let id = f.leased.iter().find(|j| j.kind == kind).expect("leased").job_id;
        f.complete
            .iter()
            .find(|(j, _)| *j == id)
            .and_then(|(_, r)| r.result.clone())
            .expect("result")
    };
    // k2pow: post's own pows, reported with the checkpoint as they came.
    let k2: K2powResult = serde_json::from_value(result("k2pow")).expect("k2pow");
    let rx = RandomXPow::new(RandomXMode::Light).expect("light");
    let scaled = post::difficulty::scale_pow_difficulty(&difficulty, 2).expect("scaled");
    let want: Vec<u64> = (2u8..4)
        .map(|g| post::pow::PowSolver::solve(&rx, g, &[0x77; 8], &[0x61; 32], &scaled).expect("pow"))
        .collect();
    assert_eq!(k2.pows.iter().map(|p| p.pow).collect::<Vec<_>>(), want);
    let k2_id = f.leased.iter().find(|j| j.kind == "k2pow").expect("k2pow").job_id;
    let checkpoints: Vec<&ProgressRequest> = f
        .progress
        .iter()
        .filter(|(j, _)| *j == k2_id)
        .map(|(_, r)| r)
        .collect();
    for p in &checkpoints {
        assert_eq!(p.fencing_token, 7);
        if let Some(c) = &p.checkpoint {
            let c: K2powResult = serde_json::from_value(c.clone()).expect("checkpoint");
            assert_eq!(c.pows.len() as u64, p.done);
            assert_eq!(c.pows[..], k2.pows[..c.pows.len()]);
        }
    }
    // verify: clean.
    let v: VerifyResult = serde_json::from_value(result("verify")).expect("verify");
    assert!(v.bad_ranges.is_empty());
    assert_eq!(v.checked, 4 * 64);
    // prove: with the pows the coordinator passed on; the proof post's prover finds.
    let p: ProveResult = serde_json::from_value(result("prove")).expect("prove");
    assert!(p.found);
    let proof: Proof =
        serde_json::from_value(serde_json::to_value(p.proof.expect("proof")).expect("json")).expect("proof");
    let single = post::prove::scan_pass(
        Path::new(&dir),
        &[0x77; 32],
        &proof_cfg,
        32,
        &want,
        1,
        &|_| {},
        &AtomicBool::new(false),
    )
    .expect("post");
    assert_eq!(Some(proof), single);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_keeps_its_lease_and_is_handed_back_on_shutdown() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let identity = IdentityParams {
        identity_id: Uuid::new_v4(),
        node_id: hex::encode([0x71; 32]),
        commitment_atx_id: Some(hex::encode([0x72; 32])),
        num_units: 1,
        labels_per_unit: 64,
        max_file_size: 1024,
        scrypt_n: 2,
    };
    let fake: Shared = Arc::default();
    fake.lock().expect("lock").queue.push_back(leased(
        "k2pow",
        &identity,
        JobSpec {
            device: Device::Cpu,
            work: JobKind::K2pow {
                groups: GroupRange { start: 0, end: 1 },
            },
            target: None,
            challenge: Some(hex::encode([1u8; 32])),
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, fake.clone()));
    // No disk: k2pow only.
    let agent_opts = agent_options(addr, tmp.path(), 1, Capabilities::default());
    // No pow meets a zero difficulty: the search runs until it is stopped.
    let exec = ExecConfig {
        proof: ProofConfig {
            pow_difficulty: [0; 32],
            ..ProofConfig::MAINNET
        },
        randomx_mode: RandomXMode::Light,
        large_pages: false,
        verify_sample_per_chunk: 16,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(run_with(agent_opts, exec, async {
        let _ = stop_rx.await;
    }));
    wait_for(&fake, "the lease", |f| !f.leased.is_empty()).await;
    // Nothing changes while the group is searched, yet the lease (3 s) is renewed.
    wait_for(&fake, "a keep-alive", |f| !f.progress.is_empty()).await;
    let _ = stop_tx.send(());
    agent.await.expect("join").expect("agent");
    let f = fake.lock().expect("lock");
    assert!(
        f.leases.iter().all(|r| r.kinds == ["k2pow"]),
        "no disk: k2pow only"
    );
    assert!(f.complete.is_empty());
    assert_eq!(f.fail.len(), 1);
    let (id, fail) = &f.fail[0];
    assert_eq!(*id, f.leased[0].job_id);
    assert_eq!(fail.error, "worker stopping: handed back");
    assert!(fail.retryable);
    assert_eq!(fail.retry_after_ms, None);
}

/// The coordinator cut a running init job short (its tail went to faster devices): the worker
/// learns the new end from the answer to a progress report, stops there and completes the job,
/// having written only about what it had done when it was cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_job_cut_short_stops_at_the_new_end() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let disk = disk0(tmp.path());
    // Slow labels (N = 1024) over a long range: minutes of work uncut.
    let total = 1u64 << 20;
    let identity = IdentityParams {
        identity_id: Uuid::new_v4(),
        node_id: hex::encode([0x81; 32]),
        commitment_atx_id: Some(hex::encode([0x82; 32])),
        num_units: 1,
        labels_per_unit: total,
        max_file_size: total * 16,
        scrypt_n: 1024,
    };
    let fake: Shared = Arc::new(Mutex::new(Fake {
        cut_at_first_report: true,
        ..Fake::default()
    }));
    fake.lock().expect("lock").queue.push_back(leased(
        "init",
        &identity,
        JobSpec {
            device: Device::Cpu,
            work: JobKind::Init {
                file_index: 0,
                range: LabelRange { start: 0, end: total },
            },
            target: Some(Placement {
                worker_id: "w".into(),
                disk_id: "d0".into(),
            }),
            challenge: None,
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, fake.clone()));
    let agent_opts = agent_options(
        addr,
        tmp.path(),
        1,
        Capabilities {
            hostname: "rig".into(),
            cpu: CpuInfo {
                threads: 1,
                init_enabled: true,
                ..CpuInfo::default()
            },
            disks: vec![disk.clone()],
            ..Capabilities::default()
        },
    );
    let exec = ExecConfig {
        proof: ProofConfig::MAINNET,
        randomx_mode: RandomXMode::Light,
        large_pages: false,
        verify_sample_per_chunk: 16,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(run_with(agent_opts, exec, async {
        let _ = stop_rx.await;
    }));
    wait_for(&fake, "the cut job to complete", |f| !f.complete.is_empty()).await;
    let _ = stop_tx.send(());
    agent.await.expect("join").expect("agent");

    let f = fake.lock().expect("lock");
    assert!(
        f.fail.is_empty(),
        "{:?}",
        f.fail.iter().map(|(_, r)| &r.error).collect::<Vec<_>>()
    );
    let cut = f.cut.expect("cut at the first report");
    assert!(cut < total, "the first report came after the whole range: {cut}");
    let mut ranges: Vec<(u64, u64)> = f
        .progress
        .iter()
        .flat_map(|(_, r)| r.ranges.iter())
        .chain(f.complete.iter().flat_map(|(_, r)| r.ranges.iter()))
        .map(|r| (r.start_label, r.end_label))
        .collect();
    ranges.sort_unstable();
    let mut end = 0;
    for &(s, e) in &ranges {
        assert_eq!(s, end, "ranges are contiguous from 0: {ranges:?}");
        end = e;
    }
    // The batch under way when the answer came may pass the cut, never more.
    let last = ranges.last().map_or(0, |r| r.1 - r.0);
    assert!(
        end >= cut && end <= cut + 2 * last.max(1),
        "wrote [0, {end}) for a cut at {cut}"
    );
    assert!(
        end < total / 2,
        "the job ran on past its cut: [0, {end}) of {total}"
    );
    let file = identity_dir(&disk, &identity.node_id).join("postdata_0.bin");
    let len = std::fs::metadata(&file).expect("data file").len();
    assert_eq!(len, end * 16, "the file holds exactly the labels reported");
}
