//! A small fleet, end to end with real processes on loopback (the helpers follow `faults_e2e.rs`
//! and `stream_e2e.rs`):
//!
//! * `a_fleet_of_three_initializes_two_identities_as_post_init_does`: a coordinator and three
//!   workers: "store-1" (two disk directories, a stream endpoint, a CPU that computes nothing),
//!   "store-2" (two disk directories, a stream endpoint, a CPU that computes labels) and "rented"
//!   (a CPU, no disk at all). Two identities: "striped" (4 files) is placed on store-1 before
//!   store-2 joins, so its files are striped over store-1's two disks and every label of it is
//!   computed on another rig and streamed there; "single" (1 file) lands wherever the planner
//!   puts it. For each identity: every file is a real file on exactly one disk, one home
//!   directory holds `postdata_metadata.json` (identity, layout and VRF nonce those of
//!   `smeshfleet post init`) and reaches every file (links for the other disk's), every
//!   `postdata_<k>.bin` equals the reference byte for byte, and `smeshfleet post check
//!   --fraction 1` passes on the home. The jobs API shows init jobs done by the compute-only
//!   worker.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "support/http.rs"]
mod http;
#[path = "support/process.rs"]
mod process;

use process::{free_port, read, spawn_until, stop, walk_files, Guard};

const BIN: &str = env!("CARGO_BIN_EXE_smeshfleet");
const ADMIN: &str = "fleet3-admin-token-0123456789abcdef";
const PASSPHRASE: &str = "fleet3 passphrase 123";
const LISTENING: &str = "smeshfleet coordinator listening on ";
const WORKER_READY: &str = "smeshfleet worker ";
/// Small labels: this test is about the pipeline, not scrypt.
const SCRYPT_N: u32 = 512;
const LABELS_PER_UNIT: u64 = 4096;

async fn post_admin(http: &reqwest::Client, url: &str, body: impl Into<Option<Value>>) -> Value {
    http::post_ok(http, url, ADMIN, body).await
}

async fn get_admin(http: &reqwest::Client, url: &str) -> Value {
    http::get_json(http, url, ADMIN).await
}

fn start_coordinator(dir: &Path) -> (Guard, String) {
    let port = free_port();
    let (coord, _) = spawn_until(
        Command::new(BIN)
            .args(["coordinator", "--data-dir"])
            .arg(dir.join("coord"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--reconcile-seconds", "1", "--lease-seconds", "30"])
            .env("SMESHFLEET_ADMIN_TOKEN", ADMIN)
            .env("SMESHFLEET_KEYSTORE_PASSPHRASE", PASSPHRASE),
        LISTENING,
    );
    (coord, format!("http://127.0.0.1:{port}"))
}

/// A worker named `name` with its data in `dir/<name>`, the given disks and extra arguments;
/// returns the child and its id (from its `smeshfleet worker <id> running` line).
fn start_worker(
    url: &str,
    dir: &Path,
    name: &str,
    token: &str,
    disks: &[PathBuf],
    extra: &[&str],
) -> (Guard, String) {
    let mut c = Command::new(BIN);
    c.args(["worker", "--coordinator", url])
        .arg("--data-dir")
        .arg(dir.join(name));
    for d in disks {
        c.arg("--disk").arg(d);
    }
    c.args(["--gpus", "none"])
        .args(extra)
        .args(["--measure-seconds", "0.3", "--disk-test-mib", "1"])
        .args(["--heartbeat-seconds", "1", "--name", name, "--join-token", token]);
    let (child, line) = spawn_until(&mut c, WORKER_READY);
    let id = line
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no worker id in {line:?}"))
        .to_owned();
    (child, id)
}

async fn join_token(http: &reqwest::Client, url: &str) -> String {
    let join = post_admin(http, &format!("{url}/api/v1/workers/join-tokens"), json!({})).await;
    join["token"].as_str().expect("token").to_owned()
}

/// One identity of the test: its name, size and what the coordinator made of it.
struct Ident {
    name: &'static str,
    units: u32,
    labels_per_file: u64,
    commitment: String,
    id: String,
    node_id: String,
}

impl Ident {
    fn files(&self) -> u64 {
        u64::from(self.units) * LABELS_PER_UNIT / self.labels_per_file
    }

    fn labels(&self) -> u64 {
        u64::from(self.units) * LABELS_PER_UNIT
    }
}

async fn create_identity(
    http: &reqwest::Client,
    url: &str,
    name: &'static str,
    units: u32,
    labels_per_file: u64,
    commitment: &str,
) -> Ident {
    let v = post_admin(
        http,
        &format!("{url}/api/v1/identities"),
        json!({"name": name, "num_units": units, "labels_per_unit": LABELS_PER_UNIT,
            "max_file_size": 16 * labels_per_file, "scrypt_n": SCRYPT_N,
            "commitment_atx_id": commitment}),
    )
    .await;
    Ident {
        name,
        units,
        labels_per_file,
        commitment: commitment.to_owned(),
        id: v["id"].as_str().expect("id").to_owned(),
        node_id: v["node_id"].as_str().expect("node id").to_owned(),
    }
}

/// Init jobs, all states, filtered by `query` (`identity_id=...`, `worker_id=...`).
async fn init_jobs(http: &reqwest::Client, url: &str, query: &str) -> Vec<Value> {
    let v = get_admin(http, &format!("{url}/api/v1/jobs?kind=init&limit=1000&{query}")).await;
    v.as_array().unwrap_or_else(|| panic!("jobs: {v}")).clone()
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

/// `smeshfleet post init` of the identity into `dir`, in one process: the reference.
fn reference_init(dir: &Path, ident: &Ident) {
    let o = run(&[
        "post",
        "init",
        "--datadir",
        dir.to_str().expect("utf8"),
        "--node-id",
        &ident.node_id,
        "--commitment-atx-id",
        &ident.commitment,
        "--num-units",
        &ident.units.to_string(),
        "--labels-per-unit",
        &LABELS_PER_UNIT.to_string(),
        "--max-file-size",
        &(16 * ident.labels_per_file).to_string(),
        "--scrypt-n",
        &SCRYPT_N.to_string(),
    ]);
    check_ok(&o, "post init");
}

/// Checks the identity's files on `disks` against the reference layout; returns the indices of
/// the disks holding its files.
fn check_layout(ident: &Ident, disks: &[PathBuf], reference: &Path) -> Vec<usize> {
    let dirs: Vec<PathBuf> = disks
        .iter()
        .map(|d| d.join("smeshfleet").join(&ident.node_id))
        .collect();
    let name = |k: u64| format!("postdata_{k}.bin");
    // Every file is a real file on exactly one disk.
    let holders: Vec<Vec<usize>> = (0..ident.files())
        .map(|k| {
            (0..dirs.len())
                .filter(|&i| {
                    std::fs::symlink_metadata(dirs[i].join(name(k))).is_ok_and(|m| m.file_type().is_file())
                })
                .collect()
        })
        .collect();
    for (k, h) in holders.iter().enumerate() {
        assert_eq!(
            h.len(),
            1,
            "{}: file {k} is a real file on exactly one disk: {holders:?}",
            ident.name
        );
    }
    // The home holds file 0 and reaches every other file through a link to its real place.
    let home = &dirs[holders[0][0]];
    for (k, h) in (0u64..).zip(&holders) {
        let p = home.join(name(k));
        let m = std::fs::symlink_metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {} is reachable from home: {e}", ident.name, p.display()));
        if h[0] == holders[0][0] {
            assert!(m.file_type().is_file(), "{}: {}", ident.name, p.display());
        } else {
            assert!(
                m.file_type().is_symlink(),
                "{}: {} is a link",
                ident.name,
                p.display()
            );
            assert_eq!(
                std::fs::read_link(&p).expect("link"),
                dirs[h[0]].join(name(k)),
                "{}: where {} points",
                ident.name,
                p.display()
            );
        }
        assert_eq!(
            read(&p),
            read(&reference.join(name(k))),
            "{}: {} is `post init`'s",
            ident.name,
            name(k)
        );
    }
    // Nothing else named like a data file anywhere (no stray copies or links beyond the layout).
    for (i, d) in dirs.iter().enumerate() {
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        for e in entries.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if let Some(k) = f
                .strip_prefix("postdata_")
                .and_then(|r| r.strip_suffix(".bin"))
                .and_then(|k| k.parse::<u64>().ok())
            {
                assert!(
                    k < ident.files(),
                    "{}: {f} beyond the layout on disk {i}",
                    ident.name
                );
                let is_link = e.file_type().is_ok_and(|t| t.is_symlink());
                assert!(
                    !is_link || d == home,
                    "{}: a link {f} outside the home (disk {i})",
                    ident.name
                );
            }
        }
    }
    // The home's metadata is the reference's: identity, layout and VRF nonce.
    let ours: Value = serde_json::from_slice(&read(&home.join("postdata_metadata.json"))).expect("metadata");
    let theirs: Value =
        serde_json::from_slice(&read(&reference.join("postdata_metadata.json"))).expect("metadata");
    for f in [
        "NodeId",
        "CommitmentAtxId",
        "NumUnits",
        "LabelsPerUnit",
        "MaxFileSize",
        "Nonce",
    ] {
        assert_eq!(ours[f], theirs[f], "{}: home metadata field {f}", ident.name);
    }
    // The official checker reads the home as one directory, every label.
    let o = run(&[
        "post",
        "check",
        "--datadir",
        home.to_str().expect("utf8"),
        "--fraction",
        "1",
        "--scrypt-n",
        &SCRYPT_N.to_string(),
    ]);
    check_ok(&o, &format!("{}: post check on the home directory", ident.name));
    let mut used: Vec<usize> = holders.into_iter().flatten().collect();
    used.sort_unstable();
    used.dedup();
    used
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_three_initializes_two_identities_as_post_init_does() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut coord, url) = start_coordinator(dir.path());
    let http = reqwest::Client::new();
    let disks: Vec<PathBuf> = ["s1a", "s1b", "s2a", "s2b"]
        .iter()
        .map(|d| dir.path().join(d))
        .collect();

    // store-1 (storage only) and the compute-only worker first.
    let token = join_token(&http, &url).await;
    let (mut store1, store1_id) = start_worker(
        &url,
        dir.path(),
        "store-1",
        &token,
        &disks[..2],
        &["--no-cpu-init", "--stream-listen", "127.0.0.1:0"],
    );
    let token = join_token(&http, &url).await;
    let (mut rented, rented_id) = start_worker(
        &url,
        dir.path(),
        "rented",
        &token,
        &[],
        &["--cpu-init", "--cpu-threads", "2"],
    );

    // "striped": 4 files of 4096 labels, all placed on store-1 (the only rig with disks yet),
    // whose two disks sit on one device: the planner alternates them.
    let striped = create_identity(&http, &url, "striped", 4, 4096, &"33".repeat(32)).await;
    let v = http::wait_identity(&http, &url, ADMIN, &striped.id, 60, |v| {
        v["files"]
            .as_array()
            .is_some_and(|f| f.len() == 4 && f.iter().all(|f| !f["disk_id"].is_null()))
    })
    .await;
    for f in v["files"].as_array().expect("files") {
        assert_eq!(f["worker_id"], store1_id.as_str(), "placed on store-1: {v}");
    }
    // The compute-only worker holds (or held) a job of it before store-2 joins.
    let deadline = Instant::now() + Duration::from_secs(60);
    while init_jobs(
        &http,
        &url,
        &format!("identity_id={}&worker_id={rented_id}", striped.id),
    )
    .await
    .is_empty()
    {
        assert!(Instant::now() < deadline, "the compute-only worker got no job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // store-2: storage with a CPU that computes labels; then the second identity, one file.
    let token = join_token(&http, &url).await;
    let (mut store2, store2_id) = start_worker(
        &url,
        dir.path(),
        "store-2",
        &token,
        &disks[2..],
        &[
            "--cpu-init",
            "--cpu-threads",
            "1",
            "--stream-listen",
            "127.0.0.1:0",
        ],
    );
    let single = create_identity(&http, &url, "single", 2, 8192, &"77".repeat(32)).await;

    for ident in [&striped, &single] {
        let v = http::wait_identity(&http, &url, ADMIN, &ident.id, 120, |v| v["state"] == "ready").await;
        assert_eq!(v["labels_done"], ident.labels(), "{}: {v}", ident.name);
    }
    let ready_at = t0.elapsed();

    // Who computed what, from the jobs API. Every label of "striped" was computed on another rig
    // than store-1 and streamed there; the compute-only worker computed some labels.
    let striped_done: Vec<Value> =
        init_jobs(&http, &url, &format!("identity_id={}&state=done", striped.id)).await;
    assert!(!striped_done.is_empty());
    let mut streamed = 0;
    for j in &striped_done {
        assert_ne!(
            j["worker_id"],
            store1_id.as_str(),
            "store-1 computes nothing: {j}"
        );
        assert!(j["result"]["streamed_to"].is_string(), "streamed to store-1: {j}");
        streamed += j["result"]["labels_written"].as_u64().unwrap_or(0);
    }
    assert!(streamed > 0, "{striped_done:?}");
    let by_rented = init_jobs(&http, &url, &format!("worker_id={rented_id}&state=done")).await;
    let rented_labels: u64 = by_rented
        .iter()
        .map(|j| j["result"]["labels_written"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        rented_labels > 0,
        "the compute-only worker computed labels: {by_rented:?}"
    );
    let all_done = init_jobs(&http, &url, "state=done").await;
    let share = |w: &str| -> u64 {
        all_done
            .iter()
            .filter(|j| j["worker_id"] == w)
            .map(|j| j["result"]["labels_written"].as_u64().unwrap_or(0))
            .sum()
    };
    eprintln!(
        "labels computed: rented {}, store-2 {}, store-1 {}; ready after {ready_at:?}",
        share(&rented_id),
        share(&store2_id),
        share(&store1_id)
    );

    // The workers stop cleanly (the last syncs of the homes are done before the acks).
    assert_eq!(stop(&mut rented), Some(0));
    assert_eq!(stop(&mut store2), Some(0));
    assert_eq!(stop(&mut store1), Some(0));

    // The data: the reference's, one home per identity, `post check` passes.
    for ident in [&striped, &single] {
        let reference = dir.path().join(format!("reference-{}", ident.name));
        reference_init(&reference, ident);
        let used = check_layout(ident, &disks, &reference);
        if ident.name == "striped" {
            assert_eq!(used, vec![0, 1], "striped over store-1's two disks");
        } else {
            assert_eq!(used.len(), 1, "{}: one file, one disk: {used:?}", ident.name);
        }
    }
    // The compute-only worker wrote no data of either identity anywhere.
    let mut files = Vec::new();
    walk_files(&dir.path().join("rented"), &mut files);
    assert!(
        files.iter().all(|f| !f.to_string_lossy().contains("postdata")),
        "the compute-only worker stores nothing: {files:?}"
    );
    assert_eq!(stop(&mut coord), Some(0));
    eprintln!("whole test: {:?}", t0.elapsed());
}
