//! End to end with real processes on loopback: a coordinator, a worker enrolled with a join
//! token, an identity created over the API; the coordinator plans the init, the worker leases,
//! computes, writes and reports; the data on the worker's disk is byte for byte what
//! `smeshfleet post init` writes for the same identity, and the identity becomes ready.
//! SIGTERM stops both cleanly; SIGKILL of the worker loses nothing it reported.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

#[path = "support/http.rs"]
mod http;
#[path = "support/process.rs"]
mod process;

use process::{free_port, read, spawn_until, stop, walk_files, Guard};

const BIN: &str = env!("CARGO_BIN_EXE_smeshfleet");
const ADMIN: &str = "e2e-admin-token-0123456789abcdef";
const PASSPHRASE: &str = "e2e passphrase 123";
const LISTENING: &str = "smeshfleet coordinator listening on ";

async fn post_admin(http: &reqwest::Client, url: &str, body: impl Into<Option<Value>>) -> Value {
    http::post_ok(http, url, ADMIN, body).await
}

async fn get_admin(http: &reqwest::Client, url: &str) -> Value {
    http::get_json(http, url, ADMIN).await
}

/// Starts a coordinator in `dir/coord`; returns it and its URL.
fn start_coordinator(dir: &Path, lease_seconds: u64) -> (Guard, String) {
    let (coord, line) = spawn_until(
        Command::new(BIN)
            .args(["coordinator", "--data-dir"])
            .arg(dir.join("coord"))
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args([
                "--reconcile-seconds",
                "1",
                "--lease-seconds",
                &lease_seconds.to_string(),
            ])
            .env("SMESHFLEET_ADMIN_TOKEN", ADMIN)
            .env("SMESHFLEET_KEYSTORE_PASSPHRASE", PASSPHRASE),
        LISTENING,
    );
    (coord, line.trim_start_matches(LISTENING).to_owned())
}

/// The command of a CPU worker with its data in `dir/worker` and one disk, `dir/disk0`.
fn worker_cmd(url: &str, dir: &Path, join_token: Option<&str>) -> Command {
    let mut c = Command::new(BIN);
    c.args(["worker", "--coordinator", url])
        .arg("--data-dir")
        .arg(dir.join("worker"))
        .arg("--disk")
        .arg(dir.join("disk0"))
        .args(["--gpus", "none", "--cpu-init", "--measure-seconds", "0.3"])
        .args([
            "--disk-test-mib",
            "4",
            "--heartbeat-seconds",
            "1",
            "--name",
            "rig-e2e",
        ]);
    if let Some(t) = join_token {
        c.args(["--join-token", t]);
    }
    c
}

/// `smeshfleet post init` of the same identity into `dir`: the reference the worker must match.
fn reference_init(dir: &Path, node_id: &str, commitment: &str, units: u32, max_file_size: u64) {
    let out = Command::new(BIN)
        .args(["post", "init", "--datadir"])
        .arg(dir)
        .args(["--node-id", node_id, "--commitment-atx-id", commitment])
        .args(["--num-units", &units.to_string(), "--labels-per-unit", "4096"])
        .args([
            "--max-file-size",
            &max_file_size.to_string(),
            "--scrypt-n",
            "8192",
        ])
        .output()
        .expect("post init");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn find_dir(root: &Path, name: &str) -> Option<PathBuf> {
    let mut files = Vec::new();
    walk_files(root, &mut files);
    files
        .into_iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .find(|d| d.file_name().is_some_and(|n| n == name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_and_worker_initialize_an_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut coord, url) = start_coordinator(dir.path(), 120);
    let http = reqwest::Client::new();

    let commitment = "11".repeat(32);
    let identity = post_admin(
        &http,
        &format!("{url}/api/v1/identities"),
        Some(json!({"name": "e2e", "num_units": 2, "labels_per_unit": 4096,
            "max_file_size": 16 * 4096, "scrypt_n": 8192, "commitment_atx_id": commitment})),
    )
    .await;
    let id = identity["id"].as_str().expect("id").to_owned();
    let node_id = identity["node_id"].as_str().expect("node id").to_owned();
    let join = post_admin(&http, &format!("{url}/api/v1/workers/join-tokens"), None).await;
    let (mut worker, _) = spawn_until(
        &mut worker_cmd(&url, dir.path(), join["token"].as_str()),
        "smeshfleet worker ",
    );

    // Every label recorded done.
    let last = http::wait_identity(&http, &url, ADMIN, &id, 180, |v| v["state"] == "ready").await;
    assert_eq!(last["labels_done"], 8192, "{last}");

    let reference = dir.path().join("reference");
    reference_init(&reference, &node_id, &commitment, 2, 65536);
    let data = find_dir(&dir.path().join("disk0"), &node_id).expect("the identity's directory on the disk");
    for k in 0..2 {
        let name = format!("postdata_{k}.bin");
        assert_eq!(
            read(&data.join(&name)),
            read(&reference.join(&name)),
            "{name} differs"
        );
    }
    let ours: Value = serde_json::from_slice(&read(&data.join("postdata_metadata.json"))).expect("metadata");
    let theirs: Value =
        serde_json::from_slice(&read(&reference.join("postdata_metadata.json"))).expect("metadata");
    for field in [
        "NodeId",
        "CommitmentAtxId",
        "NumUnits",
        "LabelsPerUnit",
        "MaxFileSize",
        "Nonce",
    ] {
        assert_eq!(ours[field], theirs[field], "metadata field {field}");
    }

    // No job is left leased.
    let leased = get_admin(&http, &format!("{url}/api/v1/jobs?state=leased")).await;
    assert_eq!(leased, json!([]));

    // The worker never held the key: no file of its data directory or disk contains it.
    let key = post_admin(
        &http,
        &format!("{url}/api/v1/identities/{id}/export"),
        Some(json!({"passphrase": PASSPHRASE})),
    )
    .await;
    let seed_hex = key["key"].as_str().expect("key")[..64].to_owned();
    let seed = hex::decode(&seed_hex).expect("hex");
    let mut files = Vec::new();
    walk_files(&dir.path().join("worker"), &mut files);
    walk_files(&dir.path().join("disk0"), &mut files);
    assert!(!files.is_empty());
    for f in files {
        let bytes = read(&f);
        let holds = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(
            !holds(seed_hex.as_bytes()) && !holds(&seed),
            "{} holds the key",
            f.display()
        );
    }

    assert_eq!(stop(&mut worker), Some(0), "worker exits cleanly on SIGTERM");
    assert_eq!(stop(&mut coord), Some(0), "coordinator exits cleanly on SIGTERM");
}

/// A worker killed with SIGKILL in the middle of an init job loses nothing it reported: after a
/// restart (same data directory, no join token) and the lease's expiry, the job resumes and the
/// data is still byte for byte `smeshfleet post init`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigkill_mid_init_resumes_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut coord, url) = start_coordinator(dir.path(), 3);
    let http = reqwest::Client::new();
    let commitment = "22".repeat(32);
    // One file of 16384 labels: long enough that the kill lands mid-job.
    let identity = post_admin(
        &http,
        &format!("{url}/api/v1/identities"),
        Some(json!({"name": "killed", "num_units": 4, "labels_per_unit": 4096,
            "max_file_size": 16 * 16384, "scrypt_n": 8192, "commitment_atx_id": commitment})),
    )
    .await;
    let id = identity["id"].as_str().expect("id").to_owned();
    let node_id = identity["node_id"].as_str().expect("node id").to_owned();
    let join = post_admin(&http, &format!("{url}/api/v1/workers/join-tokens"), None).await;
    let (mut worker, _) = spawn_until(
        &mut worker_cmd(&url, dir.path(), join["token"].as_str()),
        "smeshfleet worker ",
    );

    // Some labels recorded, not all: kill the worker without warning.
    let v = http::wait_identity(&http, &url, ADMIN, &id, 120, |v| {
        v["labels_done"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let done = v["labels_done"].as_u64().unwrap_or(0);
    assert!(done < 16384, "the kill must land mid-job (done {done})");
    worker.0.kill().expect("SIGKILL");
    let _ = worker.0.wait();

    // Restart without a join token: the saved credential is used.
    let (mut worker, _) = spawn_until(&mut worker_cmd(&url, dir.path(), None), "smeshfleet worker ");
    let v = http::wait_identity(&http, &url, ADMIN, &id, 180, |v| v["state"] == "ready").await;
    assert_eq!(v["labels_done"], 16384, "{v}");

    let reference = dir.path().join("reference");
    reference_init(&reference, &node_id, &commitment, 4, 262144);
    let data = find_dir(&dir.path().join("disk0"), &node_id).expect("the identity's directory");
    assert_eq!(
        read(&data.join("postdata_0.bin")),
        read(&reference.join("postdata_0.bin"))
    );
    assert_eq!(stop(&mut worker), Some(0));
    assert_eq!(stop(&mut coord), Some(0));
}
