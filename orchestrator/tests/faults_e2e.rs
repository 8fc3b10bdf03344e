//! Faults, end to end with real processes on loopback (the helpers follow `fleet_e2e.rs`):
//!
//! - a striped identity (files on two disks of one worker) has one directory the official tools
//!   read: `smeshfleet post check`, `prove` and `verify` work on it, and its proof is the one the
//!   reference layout gives;
//! - a worker SIGKILLed mid-range, then the coordinator SIGKILLed mid-lease, then both restarted:
//!   the work completes, byte for byte `smeshfleet post init`'s, every label recorded once, and
//!   the interrupted job resumed where its recorded progress ended;
//! - a corrupted range is found by a verify job and only that range is initialized again;
//! - a disk that is full when its init job starts fails the job naming the disk, and the
//!   coordinator moves the identity's files to the worker's other disk.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "support/http.rs"]
mod http;
#[path = "support/process.rs"]
mod process;

use process::{free_port, read, spawn_until, stop, Guard};

const BIN: &str = env!("CARGO_BIN_EXE_smeshfleet");
const ADMIN: &str = "e2e-admin-token-0123456789abcdef";
const PASSPHRASE: &str = "e2e passphrase 123";
const LISTENING: &str = "smeshfleet coordinator listening on ";
/// Small labels: these tests are about the pipeline, not scrypt.
const SCRYPT_N: u32 = 512;
const LABELS_PER_UNIT: u64 = 4096;

/// A coordinator with its state in `dir/coord`, listening on `port` (the same port after a
/// restart: workers keep the URL they enrolled with).
/// [`spawn_until`] for the callers that need only the child.
fn spawned(cmd: &mut Command, ready: &str) -> Guard {
    spawn_until(cmd, ready).0
}

async fn post_admin(http: &reqwest::Client, url: &str, body: impl Into<Option<Value>>) -> Value {
    http::post_ok(http, url, ADMIN, body).await
}

async fn get_admin(http: &reqwest::Client, url: &str) -> Value {
    http::get_json(http, url, ADMIN).await
}

fn start_coordinator(dir: &Path, port: u16, lease_seconds: u64) -> Guard {
    spawned(
        Command::new(BIN)
            .args(["coordinator", "--data-dir"])
            .arg(dir.join("coord"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--reconcile-seconds",
                "1",
                "--lease-seconds",
                &lease_seconds.to_string(),
            ])
            .env("SMESHFLEET_ADMIN_TOKEN", ADMIN)
            .env("SMESHFLEET_KEYSTORE_PASSPHRASE", PASSPHRASE),
        LISTENING,
    )
}

/// A CPU worker with its data in `dir/worker` and the given disks.
fn worker_cmd(url: &str, dir: &Path, disks: &[PathBuf], join_token: Option<&str>) -> Command {
    let mut c = Command::new(BIN);
    c.args(["worker", "--coordinator", url])
        .arg("--data-dir")
        .arg(dir.join("worker"));
    for d in disks {
        c.arg("--disk").arg(d);
    }
    c.args(["--gpus", "none", "--cpu-init", "--cpu-threads", "2"])
        .args(["--measure-seconds", "0.3", "--disk-test-mib", "1"])
        .args(["--heartbeat-seconds", "1", "--name", "rig-faults"]);
    if let Some(t) = join_token {
        c.args(["--join-token", t]);
    }
    c
}

/// Lets the worker's CPU compute labels, or not (`PUT /api/v1/workers/{id}/devices`).
async fn set_cpu_init(http: &reqwest::Client, url: &str, worker_id: &str, on: bool) {
    let r = http
        .put(format!("{url}/api/v1/workers/{worker_id}/devices"))
        .bearer_auth(ADMIN)
        .json(&json!({"cpu_init": on, "disabled_gpus": []}))
        .send()
        .await
        .expect("request");
    assert!(r.status().is_success(), "set devices: {}", r.status());
}

/// Creates an identity of `units` units of 4096 labels and files of `labels_per_file` labels;
/// returns its id and node id.
async fn create_identity(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    units: u32,
    labels_per_file: u64,
    commitment: &str,
) -> (String, String) {
    let identity = post_admin(
        http,
        &format!("{url}/api/v1/identities"),
        Some(
            json!({"name": name, "num_units": units, "labels_per_unit": LABELS_PER_UNIT,
            "max_file_size": 16 * labels_per_file, "scrypt_n": SCRYPT_N,
            "commitment_atx_id": commitment}),
        ),
    )
    .await;
    (
        identity["id"].as_str().expect("id").to_owned(),
        identity["node_id"].as_str().expect("node id").to_owned(),
    )
}

async fn join_token(http: &reqwest::Client, url: &str) -> String {
    let join = post_admin(http, &format!("{url}/api/v1/workers/join-tokens"), None).await;
    join["token"].as_str().expect("token").to_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run smeshfleet")
}

fn check_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {:?}\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `smeshfleet post init` of the same identity into `dir`: the reference.
fn reference_init(dir: &Path, node_id: &str, commitment: &str, units: u32, labels_per_file: u64) {
    let d = dir.to_str().expect("utf8");
    let o = run(&[
        "post",
        "init",
        "--datadir",
        d,
        "--node-id",
        node_id,
        "--commitment-atx-id",
        commitment,
        "--num-units",
        &units.to_string(),
        "--labels-per-unit",
        &LABELS_PER_UNIT.to_string(),
        "--max-file-size",
        &(16 * labels_per_file).to_string(),
        "--scrypt-n",
        &SCRYPT_N.to_string(),
    ]);
    check_ok(&o, "post init");
}

/// The identity's directory on a disk.
fn ident_dir(disk: &Path, node_id: &str) -> PathBuf {
    disk.join("smeshfleet").join(node_id)
}

/// Init jobs of the identity, all states.
async fn init_jobs(http: &reqwest::Client, url: &str, id: &str) -> Vec<Value> {
    let v = get_admin(
        http,
        &format!("{url}/api/v1/jobs?kind=init&identity_id={id}&limit=1000"),
    )
    .await;
    v.as_array().expect("jobs").clone()
}

fn range_of(job: &Value) -> (u64, u64) {
    let r = &job["spec"]["work"]["range"];
    (
        r["start"].as_u64().expect("start"),
        r["end"].as_u64().expect("end"),
    )
}

/// `smeshfleet_init_labels_written_total` of a coordinator: labels newly recorded in its life.
async fn labels_recorded_metric(http: &reqwest::Client, url: &str) -> u64 {
    let text = http::get_text(http, &format!("{url}/metrics"), ADMIN).await;
    text.lines()
        .find(|l| l.starts_with("smeshfleet_init_labels_written_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

const CHALLENGE: &str = "68656c6c6f20776f726c642c206368616c6c656e6765206d6521212121212121";
const EASY: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

fn prove(dir: &Path, out: &Path) -> Value {
    let o = run(&[
        "post",
        "prove",
        "--datadir",
        dir.to_str().expect("utf8"),
        "--challenge",
        CHALLENGE,
        "--k1",
        "8",
        "--k2",
        "12",
        "--pow-difficulty",
        EASY,
        "--nonces",
        "16",
        "--randomx",
        "light",
        // One thread: the scan is sequential, so the winning nonce and indices are the
        // reference's. With more threads any nonce of the pass that reaches K2 first wins.
        "--threads",
        "1",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    check_ok(&o, "post prove");
    serde_json::from_slice(&read(out)).expect("proof json")
}

/// A striped identity's home directory is one the official layout's tools read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_striped_identity_has_one_official_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut coord = start_coordinator(dir.path(), port, 30);
    let http = reqwest::Client::new();
    let commitment = "33".repeat(32);
    // 4 files of 4096 labels.
    let (id, node_id) = create_identity(&http, &url, "striped", 4, 4096, &commitment).await;
    let disks = [dir.path().join("disk0"), dir.path().join("disk1")];
    let token = join_token(&http, &url).await;
    let mut worker = spawned(
        &mut worker_cmd(&url, dir.path(), &disks, Some(&token)),
        "smeshfleet worker ",
    );
    let v = http::wait_identity(&http, &url, ADMIN, &id, 120, |v| v["state"] == "ready").await;
    assert_eq!(v["labels_done"], 16384, "{v}");
    // The init jobs' results are in; the last one synced the home.
    assert_eq!(stop(&mut worker), Some(0));

    let dirs: Vec<PathBuf> = disks.iter().map(|d| ident_dir(d, &node_id)).collect();
    let real_on = |k: u64| -> Vec<usize> {
        (0..2)
            .filter(|&i| {
                std::fs::symlink_metadata(dirs[i].join(format!("postdata_{k}.bin")))
                    .is_ok_and(|m| m.file_type().is_file())
            })
            .collect()
    };
    let holders: Vec<Vec<usize>> = (0..4).map(real_on).collect();
    for (k, h) in holders.iter().enumerate() {
        assert_eq!(
            h.len(),
            1,
            "file {k} is a real file on exactly one disk: {holders:?}"
        );
    }
    assert!(
        holders.iter().any(|h| h[0] == 0) && holders.iter().any(|h| h[0] == 1),
        "the files are striped over both disks: {holders:?}"
    );
    let home = &dirs[holders[0][0]];
    let other = &dirs[1 - holders[0][0]];
    for (k, h) in holders.iter().enumerate() {
        let p = home.join(format!("postdata_{k}.bin"));
        let m = std::fs::symlink_metadata(&p).expect("every file is reachable from home");
        if h[0] == holders[0][0] {
            assert!(m.file_type().is_file());
        } else {
            assert!(m.file_type().is_symlink(), "{} is a link", p.display());
            assert_eq!(
                std::fs::read_link(&p).expect("link"),
                other.join(format!("postdata_{k}.bin"))
            );
        }
    }

    let reference = dir.path().join("reference");
    reference_init(&reference, &node_id, &commitment, 4, 4096);
    for k in 0..4 {
        let name = format!("postdata_{k}.bin");
        assert_eq!(read(&home.join(&name)), read(&reference.join(&name)), "{name}");
    }
    let ours: Value = serde_json::from_slice(&read(&home.join("postdata_metadata.json"))).expect("md");
    let theirs: Value = serde_json::from_slice(&read(&reference.join("postdata_metadata.json"))).expect("md");
    for f in [
        "NodeId",
        "CommitmentAtxId",
        "NumUnits",
        "LabelsPerUnit",
        "MaxFileSize",
        "Nonce",
    ] {
        assert_eq!(ours[f], theirs[f], "home metadata field {f}");
    }

    // The official tools' view: check every label, prove, verify.
    let h = home.to_str().expect("utf8");
    let o = run(&[
        "post",
        "check",
        "--datadir",
        h,
        "--fraction",
        "1",
        "--scrypt-n",
        "512",
    ]);
    check_ok(&o, "post check on the home directory");
    let ours = prove(home, &dir.path().join("proof-home.json"));
    let theirs = prove(&reference, &dir.path().join("proof-ref.json"));
    assert_eq!(
        ours, theirs,
        "the home directory proves as the reference layout does"
    );
    let o = run(&[
        "post",
        "verify",
        "--datadir",
        h,
        "--proof",
        dir.path().join("proof-home.json").to_str().expect("utf8"),
        "--challenge",
        CHALLENGE,
        "--k1",
        "8",
        "--k2",
        "12",
        "--pow-difficulty",
        EASY,
        "--scrypt-n",
        "512",
    ]);
    check_ok(&o, "post verify on the home directory");
    assert_eq!(stop(&mut coord), Some(0));
}

/// SIGKILL the worker mid-range, then the coordinator mid-lease; restart both. Nothing is lost,
/// nothing recorded twice, the interrupted job resumes, and the data is the reference's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_then_coordinator_sigkill_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut coord = start_coordinator(dir.path(), port, 5);
    let http = reqwest::Client::new();
    let commitment = "44".repeat(32);
    // One file of 655360 labels (160 units, ~10 s on 2 idle threads at N = 512): long enough for
    // two kills mid-job, and for several progress reports (every 2 s) before the first kill.
    let total = 655_360u64;
    let units = u32::try_from(total / LABELS_PER_UNIT).expect("units");
    let (id, node_id) = create_identity(&http, &url, "killed", units, total, &commitment).await;
    let disks = [dir.path().join("disk0")];
    let token = join_token(&http, &url).await;
    let mut worker = spawned(
        &mut worker_cmd(&url, dir.path(), &disks, Some(&token)),
        "smeshfleet worker ",
    );

    // 1. The worker dies mid-range.
    let v = http::wait_identity(&http, &url, ADMIN, &id, 120, |v| {
        v["labels_done"].as_u64().unwrap_or(0) > 0
    })
    .await;
    worker.sigkill();
    let at_worker_kill = v["labels_done"].as_u64().expect("labels_done");
    assert!(
        at_worker_kill < total,
        "the kill lands mid-job ({at_worker_kill})"
    );
    let mut worker = spawned(
        &mut worker_cmd(&url, dir.path(), &disks, None),
        "smeshfleet worker ",
    );

    // 2. The coordinator dies while the restarted worker holds the lease. The worker is frozen
    //    first so that the coordinator's count of recorded labels is exact when it dies.
    let before = http::wait_identity(&http, &url, ADMIN, &id, 120, |v| {
        v["labels_done"].as_u64().unwrap_or(0) > at_worker_kill
    })
    .await;
    let leased = get_admin(&http, &format!("{url}/api/v1/jobs?state=leased")).await;
    assert_eq!(
        leased.as_array().map(Vec::len),
        Some(1),
        "the restarted worker holds a lease: {leased} (before: {before})"
    );
    worker.signal("-STOP");
    // A report the worker sent just before it froze may still be in the coordinator's hands:
    // let it land before the count is read.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first_life = labels_recorded_metric(&http, &url).await;
    let v = get_admin(&http, &format!("{url}/api/v1/identities/{id}")).await;
    let at_coord_kill = v["labels_done"].as_u64().expect("labels_done");
    assert!(
        at_coord_kill < total,
        "the coordinator dies mid-job ({at_coord_kill})"
    );
    coord.sigkill();
    worker.signal("-CONT");
    // The worker keeps computing and keeps what it cannot report while the coordinator is away.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut coord = start_coordinator(dir.path(), port, 5);

    let v = http::wait_identity(&http, &url, ADMIN, &id, 180, |v| v["state"] == "ready").await;
    assert_eq!(v["labels_done"], total, "{v}");
    let second_life = labels_recorded_metric(&http, &url).await;
    assert_eq!(
        first_life + second_life,
        total,
        "every label recorded exactly once over the coordinator's two lives ({first_life} + {second_life})"
    );

    // The plan never computed a range twice: the done init jobs' ranges tile the data, and the
    // labels their last attempts wrote leave out what was recorded before the kills.
    let jobs = init_jobs(&http, &url, &id).await;
    let mut done: Vec<(u64, u64)> = jobs
        .iter()
        .filter(|j| j["state"] == "done")
        .map(range_of)
        .collect();
    done.sort_unstable();
    let mut at = 0;
    for (s, e) in &done {
        assert_eq!(*s, at, "done init ranges tile the data: {done:?}");
        at = *e;
    }
    assert_eq!(at, total, "done init ranges cover the data: {done:?}");
    let written: u64 = jobs
        .iter()
        .filter(|j| j["state"] == "done")
        .map(|j| j["result"]["labels_written"].as_u64().expect("labels_written"))
        .sum();
    assert!(
        written <= total - at_worker_kill,
        "the resumed attempts wrote {written} labels: recorded labels ({at_worker_kill} at the worker's kill) were not computed again"
    );

    let reference = dir.path().join("reference");
    reference_init(&reference, &node_id, &commitment, units, total);
    let data = ident_dir(&disks[0], &node_id);
    assert_eq!(
        read(&data.join("postdata_0.bin")),
        read(&reference.join("postdata_0.bin")),
        "the data is `post init`'s"
    );
    let leased = get_admin(&http, &format!("{url}/api/v1/jobs?state=leased")).await;
    assert_eq!(leased, json!([]));
    assert_eq!(stop(&mut worker), Some(0));
    assert_eq!(stop(&mut coord), Some(0));
}

/// A corrupted chunk is found by a verify job and only it is initialized again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_range_is_found_and_only_it_is_repaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut coord = start_coordinator(dir.path(), port, 30);
    let http = reqwest::Client::new();
    let commitment = "55".repeat(32);
    // 2 files of 8192 labels (two 4096-label verify chunks each).
    let (id, node_id) = create_identity(&http, &url, "corrupted", 4, 8192, &commitment).await;
    let disks = [dir.path().join("disk0")];
    let token = join_token(&http, &url).await;
    let mut worker = spawned(
        &mut worker_cmd(&url, dir.path(), &disks, Some(&token)),
        "smeshfleet worker ",
    );
    http::wait_identity(&http, &url, ADMIN, &id, 120, |v| v["state"] == "ready").await;
    let reference = dir.path().join("reference");
    reference_init(&reference, &node_id, &commitment, 4, 8192);
    let data = ident_dir(&disks[0], &node_id);
    let (f0, f1) = (data.join("postdata_0.bin"), data.join("postdata_1.bin"));
    assert_eq!(read(&f0), read(&reference.join("postdata_0.bin")));
    let jobs_before = init_jobs(&http, &url, &id).await.len();

    // Overwrite labels [4096, 8192) of file 0: its second chunk, whatever the sample.
    let mut bytes = read(&f0);
    for b in &mut bytes[4096 * 16..8192 * 16] {
        *b = 0xa5;
    }
    std::fs::write(&f0, &bytes).expect("corrupt");
    let f1_mtime = std::fs::metadata(&f1).expect("f1").mtime_nsec();
    let f1_mtime_s = std::fs::metadata(&f1).expect("f1").mtime();

    let q = post_admin(&http, &format!("{url}/api/v1/identities/{id}/verify"), None).await;
    assert_eq!(q["jobs"].as_array().map(Vec::len), Some(2), "{q}");
    // The verify jobs finish; the bad chunk is cut and initialized again.
    let deadline = Instant::now() + Duration::from_secs(120);
    let repair = loop {
        let jobs = init_jobs(&http, &url, &id).await;
        let new: Vec<Value> = jobs.iter().filter(|j| j["state"] == "done").cloned().collect();
        if new.len() > jobs_before
            && get_admin(&http, &format!("{url}/api/v1/identities/{id}")).await["labels_done"] == 16384
        {
            break jobs;
        }
        assert!(Instant::now() < deadline, "no repair in time: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let verify = get_admin(&http, &format!("{url}/api/v1/jobs?kind=verify&identity_id={id}")).await;
    let bad: Vec<Value> = verify
        .as_array()
        .expect("verify jobs")
        .iter()
        .flat_map(|j| j["result"]["bad_ranges"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        bad,
        vec![json!({"start": 4096, "end": 8192})],
        "exactly the corrupted chunk is found: {verify}"
    );
    // One more init job, for exactly that chunk, which wrote exactly its labels.
    assert_eq!(repair.len(), jobs_before + 1, "{repair:?}");
    let newest = repair
        .iter()
        .max_by_key(|j| j["created_at"].as_i64().unwrap_or(0))
        .expect("repair job");
    assert_eq!(range_of(newest), (4096, 8192), "{newest}");
    assert_eq!(newest["result"]["labels_written"], 4096, "{newest}");
    // File 1 was not touched; file 0 is whole again.
    let m = std::fs::metadata(&f1).expect("f1");
    assert_eq!(
        (m.mtime(), m.mtime_nsec()),
        (f1_mtime_s, f1_mtime),
        "file 1 untouched"
    );
    for k in 0..2 {
        let name = format!("postdata_{k}.bin");
        assert_eq!(read(&data.join(&name)), read(&reference.join(&name)), "{name}");
    }
    assert_eq!(stop(&mut worker), Some(0));
    assert_eq!(stop(&mut coord), Some(0));
}

/// Whether this machine can mount a small ext4 file system in a private mount namespace (root,
/// `unshare`, `mkfs.ext4`, a loop device).
fn loop_mount_works(tmp: &Path) -> bool {
    let img = tmp.join("probe.img");
    let mnt = tmp.join("probe-mnt");
    let ok = std::fs::create_dir_all(&mnt).is_ok()
        && Command::new("truncate")
            .args(["-s", "4M"])
            .arg(&img)
            .status()
            .is_ok_and(|s| s.success())
        && Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        && Command::new("unshare")
            .args(["-m", "sh", "-c", "mount -o loop \"$0\" \"$1\""])
            .arg(&img)
            .arg(&mnt)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let _ = std::fs::remove_file(&img);
    ok
}

/// A disk that fills up after the coordinator placed files on it: the init job fails before it
/// writes, naming the disk, its free and the needed bytes; the coordinator records the disk as
/// full and moves the identity's files to the worker's other disk; the data is the reference's.
/// The small disk is a 4 MiB ext4 image mounted (loop) in the worker's own mount namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_moves_the_files_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    if !loop_mount_works(dir.path()) {
        eprintln!("SKIPPED: cannot mount a loop file system here (needs root, unshare, mkfs.ext4)");
        return;
    }
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut coord = start_coordinator(dir.path(), port, 30);
    let http = reqwest::Client::new();
    let img = dir.path().join("small.img");
    let small = dir.path().join("small");
    let big = dir.path().join("big");
    std::fs::create_dir_all(&small).expect("mkdir");
    let s = Command::new("truncate")
        .args(["-s", "4M"])
        .arg(&img)
        .status()
        .expect("truncate");
    assert!(s.success());
    let s = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img)
        .status()
        .expect("mkfs");
    assert!(s.success());
    let token = join_token(&http, &url).await;
    let worker_line = worker_cmd(&url, dir.path(), &[big.clone(), small.clone()], Some(&token));
    let args: Vec<String> = std::iter::once(worker_line.get_program())
        .chain(worker_line.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // Mount, then become the worker (same pid: its /proc/<pid>/root shows the mount).
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount -o loop \"$0\" \"$1\" && shift && exec \"$@\"",
    ])
    .arg(&img)
    .arg(&small)
    .args(&args);
    let mut worker = spawned(&mut cmd, "smeshfleet worker ");
    // The worker's disks as the coordinator knows them; the small one's id.
    let small_dir = small.canonicalize().expect("canonical path");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (worker_id, small_id) = loop {
        let workers = get_admin(&http, &format!("{url}/api/v1/workers")).await;
        let w = workers.as_array().and_then(|w| w.first()).cloned();
        let small_disk = w.as_ref().and_then(|w| {
            w["capabilities"]["disks"]
                .as_array()
                .filter(|d| d.len() == 2)?
                .iter()
                .find(|d| d["mount"].as_str().is_some_and(|m| Path::new(m) == small_dir))
                .cloned()
        });
        if let (Some(w), Some(d)) = (w, small_disk) {
            break (
                w["id"].as_str().expect("worker id").to_owned(),
                d["id"].as_str().expect("disk id").to_owned(),
            );
        }
        assert!(
            Instant::now() < deadline,
            "the worker's two disks not reported: {workers}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // No label device until the files are placed and the disk is full: the disk fills up after
    // the coordinator placed files on it, not before (the heartbeats would tell it first).
    set_cpu_init(&http, &url, &worker_id, false).await;
    let commitment = "66".repeat(32);
    // 16 files of 1024 labels (16 KiB each): the placement stripes by each disk's measured read
    // speed, so with 16 files the small disk gets some unless the big one reads 16 times faster
    // (with 4 files, 4 times faster was enough to keep them all off it, which the loop device's
    // speed against the host's disk sometimes was).
    let (id, node_id) = create_identity(&http, &url, "full-disk", 4, 1024, &commitment).await;
    let placed = http::wait_identity(&http, &url, ADMIN, &id, 60, |v| {
        v["files"]
            .as_array()
            .is_some_and(|f| f.len() == 16 && f.iter().all(|f| f["disk_id"].is_string()))
    })
    .await;
    let on_small = placed["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["disk_id"] == small_id.as_str())
        .count();
    assert!(on_small > 0, "files were placed on the small disk: {placed}");
    // Fill the small disk behind the coordinator's back (it was measured with ~2.5 MB free).
    let inside = PathBuf::from(format!("/proc/{}/root", worker.0.id()))
        .join(small.strip_prefix("/").expect("absolute temporary directory"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(inside.join("filler")).expect("filler");
        let block = vec![0u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    set_cpu_init(&http, &url, &worker_id, true).await;
    let v = http::wait_identity(&http, &url, ADMIN, &id, 120, |v| v["state"] == "ready").await;
    assert_eq!(v["labels_done"], 16384, "{v}");

    // The failure named the disk, its free bytes and the bytes needed, and was not retried there.
    let failed = get_admin(
        &http,
        &format!("{url}/api/v1/jobs?kind=init&state=failed&identity_id={id}"),
    )
    .await;
    let failed = failed.as_array().expect("jobs").clone();
    assert!(!failed.is_empty(), "an init job on the full disk failed");
    for j in &failed {
        let e = j["error"].as_str().unwrap_or("");
        assert!(
            e.contains("is full") && e.contains("bytes free") && e.contains("bytes needed"),
            "{e}"
        );
        assert_eq!(j["attempts"], 1, "not retried on the full disk: {j}");
    }
    assert!(failed
        .iter()
        .all(|j| j["spec"]["target"]["disk_id"] == small_id.as_str()));
    let workers = get_admin(&http, &format!("{url}/api/v1/workers")).await;
    let disk = workers
        .as_array()
        .and_then(|w| w.first())
        .and_then(|w| w["capabilities"]["disks"].as_array())
        .and_then(|d| d.iter().find(|d| d["id"] == small_id.as_str()).cloned())
        .expect("the small disk in the worker's capabilities");
    assert!(
        disk["free_bytes"].as_u64().expect("free") < 65536,
        "the coordinator knows the disk is full: {disk}"
    );
    // Every done init job wrote to the other disk; all data is there and is the reference's.
    let done: Vec<Value> = init_jobs(&http, &url, &id)
        .await
        .into_iter()
        .filter(|j| j["state"] == "done")
        .collect();
    assert!(done
        .iter()
        .all(|j| j["spec"]["target"]["disk_id"] != small_id.as_str()));
    let reference = dir.path().join("reference");
    reference_init(&reference, &node_id, &commitment, 4, 1024);
    let data = ident_dir(&big, &node_id);
    for k in 0..16 {
        let name = format!("postdata_{k}.bin");
        assert_eq!(read(&data.join(&name)), read(&reference.join(&name)), "{name}");
    }
    assert_eq!(stop(&mut worker), Some(0));
    assert_eq!(stop(&mut coord), Some(0));
}
