//! The k2pow, prove and verify executors on real files, against post's own prover, verifier and
//! k2pow, and the reference vectors in `shared/vectors`. Small sizes: scrypt N = 2 for data made
//! here, RandomX in light mode.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use post::backend::CpuBackend;
use post::initialize::{initialize, InitOptions};
use post::pow::{PowError, PowSolver, PowVerifier, RandomXMode, RandomXOptions, RandomXPow};
use post::proof::{InitConfig, Proof, ProofConfig, ProofMetadata};
use post::prove::{scan_pass, ProveProgress};
use post::verify::{verify, Mode, VerifyOptions};
use protocol::{
    DiskInfo, GroupPow, GroupRange, IdentityParams, K2powResult, LeasedJob, ProveResult, VerifyResult,
};
use worker::exec::k2pow::{run_k2pow, K2powTask};
use worker::exec::prove::{run_prove, ProveTask};
use worker::exec::verify::{run_verify, sample_run, VerifyTask, VERIFY_CHUNK};
use worker::exec::{identity_dir, ExecError};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

fn read_json(name: &str) -> serde_json::Value {
    let path = Path::new(VECTORS).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("json")
}

fn hex32(s: &str) -> [u8; 32] {
    hex::decode(s).expect("hex").try_into().expect("32 bytes")
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir")
}

/// One light-mode RandomX (2 threads) for the whole binary: its cache takes ~0.5 s to build.
fn randomx() -> &'static RandomXPow {
    static RX: OnceLock<RandomXPow> = OnceLock::new();
    RX.get_or_init(|| {
        RandomXPow::with_options(RandomXOptions {
            mode: RandomXMode::Light,
            threads: 2,
            large_pages: false,
        })
        .expect("light RandomX")
    })
}

/// Counts searches; delegates to RandomX.
struct Counting<'a>(&'a RandomXPow, AtomicUsize);

impl PowSolver for Counting<'_> {
    fn solve(&self, g: u8, c: &[u8; 8], m: &[u8; 32], d: &[u8; 32]) -> Result<u64, PowError> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.solve(g, c, m, d)
    }
}

/// A search that must not happen.
struct NoSearch;

impl PowSolver for NoSearch {
    fn solve(&self, g: u8, _: &[u8; 8], _: &[u8; 32], _: &[u8; 32]) -> Result<u64, PowError> {
        Err(PowError::Other(format!("group {g} was searched")))
    }
}

fn identity(
    node_id: [u8; 32],
    atx: [u8; 32],
    units: u32,
    lpu: u64,
    max_file_size: u64,
    n: u32,
) -> IdentityParams {
    IdentityParams {
        identity_id: uuid::Uuid::new_v4(),
        node_id: hex::encode(node_id),
        commitment_atx_id: Some(hex::encode(atx)),
        num_units: units,
        labels_per_unit: lpu,
        max_file_size,
        scrypt_n: n,
    }
}

fn disk(id: &str, mount: &Path, device: &str) -> DiskInfo {
    DiskInfo {
        id: id.into(),
        mount: mount.display().to_string(),
        physical_device: device.into(),
        filesystem: "ext4".into(),
        capacity_bytes: 1 << 40,
        free_bytes: 1 << 30,
        read_mb_s: 0.0,
        write_mb_s: 0.0,
    }
}

// ---------------------------------------------------------------------------------------------
// k2pow

/// vectors/k2pow.json, easy difficulty, num_units 1: the smallest valid pow per group.
fn easy_case() -> (IdentityParams, String, ProofConfig, Vec<GroupPow>) {
    let j = read_json("k2pow.json");
    let case = &j["cases"][0];
    assert_eq!(case["num_units"], 1);
    let miner = hex32(case["miner_id"].as_str().expect("miner"));
    let cfg = ProofConfig {
        k1: 26,
        k2: 37,
        pow_difficulty: hex32(case["difficulty"].as_str().expect("difficulty")),
    };
    let want = case["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| GroupPow {
            group: r["nonce_group"].as_u64().expect("group") as u32,
            pow: r["pow"].as_u64().expect("pow"),
        })
        .collect();
    (
        identity(miner, [0; 32], 1, 64, 1024, 2),
        case["challenge32"].as_str().expect("challenge").to_owned(),
        cfg,
        want,
    )
}

#[test]
fn k2pow_solves_the_reference_pow_and_post_accepts_it() {
    let (id, challenge, cfg, want) = easy_case();
    // Group 4 (pow 63): the cheap end of the vector (light-mode hashes are slow).
    let task =
        K2powTask::new(&id, Some(&challenge), GroupRange { start: 4, end: 5 }, Vec::new()).expect("task");
    let out = run_k2pow(
        &task,
        &cfg,
        randomx(),
        randomx(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .expect("k2pow");
    let expected: Vec<GroupPow> = want.iter().filter(|p| p.group == 4).copied().collect();
    assert_eq!(out.pows, expected);
    let c8: [u8; 8] = hex::decode(&challenge).expect("hex")[..8].try_into().expect("8");
    randomx()
        .verify(63, 4, &c8, &hex32(&id.node_id), &cfg.pow_difficulty)
        .expect("post verifies");
}

/// A difficulty that one hash in 8 meets (for 1 unit), so that several groups cost little.
fn medium() -> ProofConfig {
    let mut d = [0xff; 32];
    d[0] = 0x20;
    ProofConfig {
        pow_difficulty: d,
        ..ProofConfig::MAINNET
    }
}

/// post's own search for `groups` of `id` at `cfg`, scaled by the identity's units.
fn post_pows(
    id: &IdentityParams,
    challenge: &str,
    cfg: &ProofConfig,
    groups: std::ops::Range<u32>,
) -> Vec<GroupPow> {
    let c8: [u8; 8] = hex::decode(challenge).expect("hex")[..8].try_into().expect("8");
    let scaled = post::difficulty::scale_pow_difficulty(&cfg.pow_difficulty, id.num_units).expect("scaled");
    groups
        .map(|g| GroupPow {
            group: g,
            pow: randomx()
                .solve(g as u8, &c8, &hex32(&id.node_id), &scaled)
                .expect("post pow"),
        })
        .collect()
}

#[test]
fn k2pow_groups_match_post_and_are_reported_one_by_one() {
    let id = identity([0x5a; 32], [0; 32], 2, 64, 1024, 2);
    let challenge = hex::encode([0xc3; 32]);
    let cfg = medium();
    let task = K2powTask::new(
        &id,
        Some(&challenge),
        GroupRange { start: 10, end: 14 },
        Vec::new(),
    )
    .expect("task");
    let mut reports: Vec<K2powResult> = Vec::new();
    let out = run_k2pow(
        &task,
        &cfg,
        randomx(),
        randomx(),
        &AtomicBool::new(false),
        &mut |r| reports.push(r.clone()),
    )
    .expect("k2pow");
    let expected = post_pows(&id, &challenge, &cfg, 10..14);
    assert_eq!(out.pows, expected);
    // One report per group, each with the prefix solved so far.
    assert_eq!(reports.len(), 4);
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r.pows, expected[..=i]);
    }
    // Each pow meets the difficulty scaled by the identity's 2 units.
    let c8: [u8; 8] = [0xc3; 8];
    let scaled = post::difficulty::scale_pow_difficulty(&cfg.pow_difficulty, 2).expect("scaled");
    for p in &out.pows {
        randomx()
            .verify(p.pow, p.group as u8, &c8, &hex32(&id.node_id), &scaled)
            .expect("post verifies");
    }
}

#[test]
fn k2pow_resumes_from_a_checked_checkpoint() {
    let id = identity([0x5b; 32], [0; 32], 1, 64, 1024, 2);
    let challenge = hex::encode([0x3c; 32]);
    let cfg = medium();
    let expected = post_pows(&id, &challenge, &cfg, 20..23);
    // Group 20 right, group 21 damaged (a pow that does not verify): 20 is kept, 21 and 22
    // are searched again.
    let scaled = post::difficulty::scale_pow_difficulty(&cfg.pow_difficulty, 1).expect("scaled");
    let damaged = (0u64..)
        .find(|&x| {
            randomx()
                .verify(x, 21, &[0x3c; 8], &hex32(&id.node_id), &scaled)
                .is_err()
        })
        .expect("an invalid pow");
    let resumed = vec![
        expected[0],
        GroupPow {
            group: 21,
            pow: damaged,
        },
    ];
    let task =
        K2powTask::new(&id, Some(&challenge), GroupRange { start: 20, end: 23 }, resumed).expect("task");
    let solver = Counting(randomx(), AtomicUsize::new(0));
    let mut reports = Vec::new();
    let out = run_k2pow(
        &task,
        &cfg,
        &solver,
        randomx(),
        &AtomicBool::new(false),
        &mut |r| reports.push(r.pows.len()),
    )
    .expect("k2pow");
    assert_eq!(out.pows, expected);
    assert_eq!(
        solver.1.load(Ordering::Relaxed),
        2,
        "only groups 21 and 22 are searched"
    );
    assert_eq!(reports, vec![1, 2, 3]);
}

#[test]
fn k2pow_checkpoint_with_the_mainnet_vector_is_taken_over_without_a_search() {
    // vectors/proof_small_pairA.json: group 0's pow at the mainnet difficulty for 4 units is
    // 18712 (about a minute of light-mode search; checking it is one hash).
    let j = read_json("proof_small_pairA.json");
    let node = hex32(j["node_id"].as_str().expect("node"));
    let id = identity(node, [0; 32], 4, 1024, 16384, 8192);
    let challenge = j["challenge"].as_str().expect("challenge");
    let pow = j["k2pows"][0]["pow"].as_u64().expect("pow");
    let groups = GroupRange { start: 0, end: 1 };
    let task = K2powTask::new(&id, Some(challenge), groups, vec![GroupPow { group: 0, pow }]).expect("task");
    let out = run_k2pow(
        &task,
        &ProofConfig::MAINNET,
        &NoSearch,
        randomx(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .expect("checkpoint verifies");
    assert_eq!(out.pows, vec![GroupPow { group: 0, pow: 18712 }]);
    // 18711 does not verify: a search is attempted.
    let task = K2powTask::new(
        &id,
        Some(challenge),
        groups,
        vec![GroupPow { group: 0, pow: 18711 }],
    )
    .expect("task");
    let e = run_k2pow(
        &task,
        &ProofConfig::MAINNET,
        &NoSearch,
        randomx(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .expect_err("searched");
    assert!(e.to_string().contains("group 0 was searched"), "{e}");
}

#[test]
fn k2pow_jobs_are_checked_and_stoppable() {
    let (id, challenge, cfg, _) = easy_case();
    let bad = |g: GroupRange, c: Option<&str>| K2powTask::new(&id, c, g, Vec::new()).expect_err("invalid");
    assert!(!bad(GroupRange { start: 3, end: 3 }, Some(&challenge)).is_retryable());
    assert!(bad(GroupRange { start: 250, end: 257 }, Some(&challenge))
        .to_string()
        .contains("below 256"));
    assert!(bad(GroupRange { start: 0, end: 1 }, None)
        .to_string()
        .contains("challenge"));
    assert!(bad(GroupRange { start: 0, end: 1 }, Some("abcd"))
        .to_string()
        .contains("64 hex"));
    let task =
        K2powTask::new(&id, Some(&challenge), GroupRange { start: 0, end: 3 }, Vec::new()).expect("task");
    let stop = AtomicBool::new(true);
    let e = run_k2pow(&task, &cfg, randomx(), randomx(), &stop, &mut |_| {}).expect_err("stopped");
    assert!(matches!(e, ExecError::Stopped));
}

// ---------------------------------------------------------------------------------------------
// prove

/// An easy network: any pow is valid, K1 = 8 qualifying labels expected per nonce.
const EASY: ProofConfig = ProofConfig {
    k1: 8,
    k2: 6,
    pow_difficulty: [0xff; 32],
};

fn cpu() -> CpuBackend {
    CpuBackend::new(2).expect("cpu backend")
}

/// Writes files `from..=to` of `id` into `dir` with post's initializer.
fn init_files(dir: &Path, id: &IdentityParams, from: u64, to: u64) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut opts = InitOptions::new(
        hex32(&id.node_id),
        hex32(id.commitment_atx_id.as_deref().expect("atx")),
        id.num_units,
        id.labels_per_unit,
        id.max_file_size,
    );
    opts.scrypt_n = id.scrypt_n as usize;
    opts.from_file = Some(from);
    opts.to_file = Some(to);
    initialize(dir, &opts, &cpu(), &|_| {}, &AtomicBool::new(false)).expect("initialize");
}

/// A striped rig: files 0 and 2 on disk A (device sda), 1 on disk B (device sdb); and the
/// same data in one directory, initialized by post in one go.
struct Striped {
    _tmp: tempfile::TempDir,
    id: IdentityParams,
    disks: Vec<DiskInfo>,
    single: PathBuf,
}

fn striped() -> Striped {
    let tmp = tempdir();
    // 3 files: 1.5 MiB, 1.5 MiB, 1 MiB (two batches each but the last).
    let id = identity([0x11; 32], [0x22; 32], 4, 65536, 1536 * 1024, 2);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let disks = vec![disk("da", &a, "/dev/sda"), disk("db", &b, "/dev/sdb")];
    let da = identity_dir(&disks[0], &id.node_id);
    let db = identity_dir(&disks[1], &id.node_id);
    init_files(&da, &id, 0, 0);
    init_files(&db, &id, 1, 1);
    init_files(&da, &id, 2, 2);
    let single = tmp.path().join("single");
    init_files(&single, &id, 0, 2);
    Striped {
        _tmp: tmp,
        id,
        disks,
        single,
    }
}

fn easy_pows(id: &IdentityParams, challenge: &[u8; 32], groups: std::ops::Range<u32>) -> Vec<GroupPow> {
    let node = hex32(&id.node_id);
    let c8: [u8; 8] = challenge[..8].try_into().expect("8");
    let scaled = post::difficulty::scale_pow_difficulty(&EASY.pow_difficulty, id.num_units).expect("scaled");
    groups
        .map(|g| GroupPow {
            group: g,
            pow: randomx().solve(g as u8, &c8, &node, &scaled).expect("pow"),
        })
        .collect()
}

fn post_proof(r: &ProveResult) -> Proof {
    serde_json::from_value(serde_json::to_value(r.proof.as_ref().expect("proof")).expect("json"))
        .expect("post Proof")
}

fn no_progress(_: ProveProgress) {}

#[test]
fn prove_over_two_disks_equals_post_over_one_directory_and_verifies() {
    let s = striped();
    let disks: Vec<&DiskInfo> = s.disks.iter().collect();
    for (seed, first_nonce, nonces, threads) in [(1u8, 0u32, 16u32, 1usize), (2, 16, 32, 2), (3, 32, 16, 2)] {
        let challenge = [seed; 32];
        let pows = easy_pows(&s.id, &challenge, first_nonce / 16..(first_nonce + nonces) / 16);
        let task = ProveTask::new(
            &s.id,
            Some(&hex::encode(challenge)),
            first_nonce,
            nonces,
            &pows,
            &disks,
            threads,
        )
        .expect("task");
        // The files were found on both disks, each with its device.
        let mut found: Vec<(u64, String)> = task.files.iter().map(|f| (f.index, f.device.clone())).collect();
        found.sort();
        assert_eq!(
            found,
            vec![
                (0, "/dev/sda".into()),
                (1, "/dev/sdb".into()),
                (2, "/dev/sda".into())
            ]
        );
        let read = Mutex::new(Vec::new());
        let r = run_prove(&task, &EASY, Some(randomx()), &AtomicBool::new(false), &|l| {
            read.lock().expect("lock").push(l)
        })
        .expect("prove");
        let want = scan_pass(
            &s.single,
            &challenge,
            &EASY,
            first_nonce,
            &pows.iter().map(|p| p.pow).collect::<Vec<_>>(),
            1,
            &no_progress,
            &AtomicBool::new(false),
        )
        .expect("post scan");
        assert!(r.found, "seed {seed}: K1 = 8 > K2 = 6 finds a proof");
        let proof = post_proof(&r);
        assert_eq!(
            Some(proof.clone()),
            want,
            "seed {seed}: same proof as post over one directory"
        );
        assert!(r.labels_read > 0 && r.labels_read <= 4 * 65536);
        assert!(read.lock().expect("lock").iter().all(|&l| l <= r.labels_read));
        assert_eq!(r.metadata.node_id, s.id.node_id);
        assert_eq!(r.metadata.challenge, hex::encode(challenge));
        assert_eq!((r.first_nonce, r.nonces), (first_nonce, nonces));
        let meta = ProofMetadata {
            node_id: hex32(&r.metadata.node_id),
            commitment_atx_id: hex32(&r.metadata.commitment_atx_id),
            challenge: hex32(&r.metadata.challenge),
            num_units: r.metadata.num_units,
            labels_per_unit: r.metadata.labels_per_unit,
        };
        let init = InitConfig {
            min_num_units: 1,
            max_num_units: 100,
            labels_per_unit: 65536,
            scrypt_n: 2,
        };
        let strict = VerifyOptions {
            strict: true,
            threads: 2,
        };
        verify(&proof, &meta, &EASY, &init, &Mode::All, &strict, randomx()).expect("post's verifier accepts");
    }
}

#[test]
fn prove_pass_without_a_proof_says_so() {
    let s = striped();
    let disks: Vec<&DiskInfo> = s.disks.iter().collect();
    // K2 = 60 with K1 = 8: no nonce gets there.
    let cfg = ProofConfig { k2: 60, ..EASY };
    let challenge = [9u8; 32];
    let pows = easy_pows(&s.id, &challenge, 0..1);
    let task = ProveTask::new(&s.id, Some(&hex::encode(challenge)), 0, 16, &pows, &disks, 2).expect("task");
    let r = run_prove(&task, &cfg, Some(randomx()), &AtomicBool::new(false), &|_| {}).expect("prove");
    assert!(!r.found);
    assert!(r.proof.is_none());
    assert_eq!(r.labels_read, 4 * 65536, "the whole data was read");
    let want = scan_pass(
        &s.single,
        &challenge,
        &cfg,
        0,
        &[pows[0].pow],
        1,
        &no_progress,
        &AtomicBool::new(false),
    )
    .expect("post");
    assert_eq!(want, None);
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["found"], false);
    assert!(json["proof"].is_null());
}

#[test]
fn prove_reproduces_the_reference_proof_from_files_linked_on_two_disks() {
    // vectors/init_small_pairA (4 files) and proof_small_pairA.json: files 0 and 3 on disk A,
    // 1 and 2 on disk B, as links to the reference files.
    let j = read_json("proof_small_pairA.json");
    let tmp = tempdir();
    let node = j["node_id"].as_str().expect("node");
    let atx = j["commitment_atx_id"].as_str().expect("atx");
    let id = identity(hex32(node), hex32(atx), 4, 1024, 16384, 8192);
    let disks = [
        disk("da", &tmp.path().join("a"), "/dev/sda"),
        disk("db", &tmp.path().join("b"), "/dev/sdb"),
    ];
    let src = Path::new(VECTORS).join("init_small_pairA");
    for (k, d) in [(0, 0), (1, 1), (2, 1), (3, 0)] {
        let dir = identity_dir(&disks[d], node);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let name = format!("postdata_{k}.bin");
        std::os::unix::fs::symlink(src.join(&name), dir.join(&name)).expect("link");
    }
    let pows = vec![GroupPow {
        group: 0,
        pow: j["proof"]["pow"].as_u64().expect("pow"),
    }];
    let refs: Vec<&DiskInfo> = disks.iter().collect();
    let challenge = j["challenge"].as_str().expect("challenge");
    let task = ProveTask::new(&id, Some(challenge), 0, 16, &pows, &refs, 2).expect("task");
    let r = run_prove(
        &task,
        &ProofConfig::MAINNET,
        Some(randomx()),
        &AtomicBool::new(false),
        &|_| {},
    )
    .expect("prove");
    assert!(r.found);
    let reference: Proof = serde_json::from_value(j["proof"].clone()).expect("reference proof");
    assert_eq!(post_proof(&r), reference);
    // The protocol form is post's JSON form, field for field.
    assert_eq!(
        serde_json::to_value(r.proof.as_ref().expect("proof")).expect("json"),
        serde_json::to_value(&reference).expect("json")
    );
}

#[test]
fn prove_refuses_bad_input_and_reports_missing_data() {
    let s = striped();
    let disks: Vec<&DiskInfo> = s.disks.iter().collect();
    let challenge = [4u8; 32];
    let hexc = hex::encode(challenge);
    // No pow for group 1 of a 32-nonce pass.
    let pows = easy_pows(&s.id, &challenge, 0..1);
    let e = ProveTask::new(&s.id, Some(&hexc), 0, 32, &pows, &disks, 1).expect_err("missing pow");
    assert!(e.to_string().contains("nonce group 1"), "{e}");
    assert!(!e.is_retryable());
    assert!(ProveTask::new(&s.id, Some(&hexc), 8, 16, &pows, &disks, 1).is_err());
    // A pow that does not verify is refused before any reading (the difficulty is real here).
    let hard = ProofConfig {
        pow_difficulty: [0; 32],
        ..EASY
    };
    let task = ProveTask::new(&s.id, Some(&hexc), 0, 16, &pows, &disks, 1).expect("task");
    let e = run_prove(&task, &hard, Some(randomx()), &AtomicBool::new(false), &|_| {}).expect_err("bad pow");
    assert!(e.to_string().contains("nonce group 0"), "{e}");
    assert!(!e.is_retryable());
    // Stopping: nothing is read.
    let e = run_prove(&task, &EASY, None, &AtomicBool::new(true), &|_| {}).expect_err("stopped");
    assert!(matches!(e, ExecError::Stopped), "{e}");
    // A missing file: not retryable (the identity must be initialized again), named.
    std::fs::remove_file(identity_dir(&s.disks[1], &s.id.node_id).join("postdata_1.bin")).expect("rm");
    let task = ProveTask::new(&s.id, Some(&hexc), 0, 16, &pows, &disks, 1).expect("task");
    let e = run_prove(&task, &EASY, None, &AtomicBool::new(false), &|_| {}).expect_err("missing");
    assert!(e.to_string().contains("data file 1"), "{e}");
    assert!(!e.is_retryable());
}

// ---------------------------------------------------------------------------------------------
// verify

/// One file of 4 chunks (16384 labels), N = 2.
fn verify_setup() -> (tempfile::TempDir, IdentityParams, PathBuf) {
    let tmp = tempdir();
    let id = identity([0x33; 32], [0x44; 32], 2, 8192, 16384 * 16, 2);
    let dir = tmp.path().join("d");
    init_files(&dir, &id, 0, 0);
    (tmp, id, dir)
}

fn vtask(id: &IdentityParams, dir: &Path, start: u64, end: u64, sample: u64) -> VerifyTask {
    VerifyTask {
        identity: id.clone(),
        dir: dir.to_path_buf(),
        file_index: 0,
        start,
        end,
        sample_per_chunk: sample,
        seed: [5; 16],
        resume_from: 0,
        resumed: VerifyResult::default(),
    }
}

fn run(task: &VerifyTask) -> VerifyResult {
    run_verify(task, &cpu(), &AtomicBool::new(false), &mut |_, _| {}).expect("verify")
}

fn flip(dir: &Path, label: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("postdata_0.bin"))
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, label * 16 + 3).expect("read");
    f.write_all_at(&[b[0] ^ 0x40], label * 16 + 3).expect("write");
}

fn lr(start: u64, end: u64) -> protocol::LabelRange {
    protocol::LabelRange { start, end }
}

#[test]
fn verify_finds_exactly_the_chunk_of_a_flipped_label() {
    let (_tmp, id, dir) = verify_setup();
    // Clean: every label of the range checked, nothing bad.
    let clean = run(&vtask(&id, &dir, 0, 16384, VERIFY_CHUNK));
    assert_eq!(
        clean,
        VerifyResult {
            checked: 16384,
            bad_ranges: vec![]
        }
    );
    flip(&dir, 5000);
    let r = run(&vtask(&id, &dir, 0, 16384, VERIFY_CHUNK));
    assert_eq!(r.bad_ranges, vec![lr(4096, 8192)]);
    // Clamped to the job's range.
    let r = run(&vtask(&id, &dir, 4100, 12000, VERIFY_CHUNK));
    assert_eq!(r.bad_ranges, vec![lr(4100, 8192)]);
    assert_eq!(r.checked, 12000 - 4100);
    // A sparse sample finds it when the flipped label is sampled, and says how much it checked.
    let t = vtask(&id, &dir, 8192, 16384, 16);
    let run_at = sample_run(&t.seed, 12288, 16384, 16);
    flip(&dir, run_at.start + 7);
    let r = run(&t);
    assert_eq!(r.bad_ranges, vec![lr(12288, 16384)]);
    assert_eq!(r.checked, 32);
}

#[test]
fn verify_reports_short_and_missing_files_as_bad_ranges() {
    let (_tmp, id, dir) = verify_setup();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("postdata_0.bin"))
        .expect("open");
    f.set_len(10000 * 16 + 5).expect("truncate");
    let r = run(&vtask(&id, &dir, 0, 16384, VERIFY_CHUNK));
    assert_eq!(r.bad_ranges, vec![lr(8192, 16384)]);
    assert_eq!(r.checked, 8192);
    std::fs::remove_file(dir.join("postdata_0.bin")).expect("rm");
    let r = run(&vtask(&id, &dir, 100, 9000, 16));
    assert_eq!(
        r,
        VerifyResult {
            checked: 0,
            bad_ranges: vec![lr(100, 9000)]
        }
    );
}

#[test]
fn verify_resumes_with_what_it_found_and_stops() {
    let (_tmp, id, dir) = verify_setup();
    flip(&dir, 100);
    flip(&dir, 13000);
    // First attempt: stop after the first report.
    let mut t = vtask(&id, &dir, 0, 16384, VERIFY_CHUNK);
    let stop = AtomicBool::new(false);
    let mut last = None;
    let mut reports = 0;
    let full = run_verify(&t, &cpu(), &stop, &mut |done, so_far| {
        reports += 1;
        last = Some((done, so_far.clone()));
    })
    .expect("verify");
    assert_eq!(full.bad_ranges, vec![lr(0, 4096), lr(12288, 16384)]);
    assert!(reports >= 1);
    assert_eq!(last.expect("report"), (16384, full.clone()));
    // Resume after the first chunk with its finding: the same result, fewer labels derived.
    t.resume_from = 4096;
    t.resumed = VerifyResult {
        checked: 4096,
        bad_ranges: vec![lr(0, 4096)],
    };
    assert_eq!(run(&t), full);
    let e = run_verify(&t, &cpu(), &AtomicBool::new(true), &mut |_, _| {}).expect_err("stopped");
    assert!(matches!(e, ExecError::Stopped));
    // Outside the file: a bad job, not retried.
    let e = run_verify(&vtask(&id, &dir, 0, 20000, 16), &cpu(), &stop, &mut |_, _| {}).expect_err("range");
    assert!(!e.is_retryable());
}

// ---------------------------------------------------------------------------------------------
// No private key on the wire.

#[test]
fn a_lease_carrying_a_private_key_is_refused() {
    let id = identity([1; 32], [2; 32], 4, 64, 1024, 2);
    let mut lease = serde_json::json!({
        "job_id": uuid::Uuid::new_v4(),
        "kind": "k2pow",
        "fencing_token": 1,
        "lease_expires_at": 0,
        "attempt": 1,
        "identity": id,
        "spec": {"device": {"type": "cpu"}, "work": {"type": "k2pow", "groups": {"start": 0, "end": 1}}},
        "progress": null,
    });
    let ok: LeasedJob = serde_json::from_value(lease.clone()).expect("a lease without pows still parses");
    assert!(ok.pows.is_empty());
    lease["identity"]["private_key"] = serde_json::json!("00".repeat(64));
    let e = serde_json::from_value::<LeasedJob>(lease).expect_err("refused");
    assert!(e.to_string().contains("private_key"), "{e}");
    // What the worker sends back names public data only.
    let fields = |v: serde_json::Value| -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![v];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        out.push(k);
                        stack.push(v);
                    }
                }
                serde_json::Value::Array(a) => stack.extend(a),
                _ => {}
            }
        }
        out
    };
    let r = ProveResult {
        found: false,
        proof: None,
        metadata: protocol::ProofMeta {
            node_id: id.node_id.clone(),
            commitment_atx_id: "00".repeat(32),
            challenge: "00".repeat(32),
            num_units: 4,
            labels_per_unit: 64,
        },
        first_nonce: 0,
        nonces: 16,
        labels_read: 0,
    };
    for f in fields(serde_json::to_value(&r).expect("json")) {
        assert!(
            !f.contains("key") && !f.contains("secret") && !f.contains("private"),
            "{f}"
        );
    }
}
