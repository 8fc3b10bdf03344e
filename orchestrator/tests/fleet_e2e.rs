//! End to end with real processes on loopback: a coordinator, a worker enrolled with a join
//! token, an identity created over the API; the coordinator plans the init, the worker leases,
//! computes, writes and reports; the data on the worker's disk is byte for byte what
//! `smeshfleet post init` writes for the same identity, and the identity becomes ready.
//! SIGTERM stops both cleanly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_smeshfleet");
const ADMIN: &str = "e2e-admin-token-0123456789abcdef";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A child process that is killed if the test panics before stopping it.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Spawns a command and waits for a stdout line starting with `ready`; returns the child and it.
fn spawn_until(cmd: &mut Command, ready: &str) -> (Guard, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut found = None;
    for line in lines.by_ref() {
        let line = line.expect("line");
        if line.starts_with(ready) {
            found = Some(line);
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (
        Guard(child),
        found.unwrap_or_else(|| panic!("the process never printed {ready:?}")),
    )
}

fn stop(guard: &mut Guard) -> Option<i32> {
    let child = &mut guard.0;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().expect("wait") {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_and_worker_initialize_an_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (mut coord, line) = spawn_until(
        Command::new(BIN)
            .args(["coordinator", "--data-dir"])
            .arg(dir.path().join("coord"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--reconcile-seconds",
                "1",
            ])
            .env("SMESHFLEET_ADMIN_TOKEN", ADMIN)
            .env("SMESHFLEET_KEYSTORE_PASSPHRASE", "e2e passphrase 123"),
        "smeshfleet coordinator listening on ",
    );
    let url = line
        .trim_start_matches("smeshfleet coordinator listening on ")
        .to_owned();
    let http = reqwest::Client::new();

    let commitment = "11".repeat(32);
    let r = http
        .post(format!("{url}/api/v1/identities"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "e2e", "num_units": 2, "labels_per_unit": 4096,
            "max_file_size": 16 * 4096, "scrypt_n": 8192, "commitment_atx_id": commitment}))
        .send()
        .await
        .expect("create identity");
    assert_eq!(r.status(), 201);
    let identity: Value = r.json().await.expect("json");
    let id = identity["id"].as_str().expect("id").to_owned();
    let node_id = identity["node_id"].as_str().expect("node id").to_owned();

    let r = http
        .post(format!("{url}/api/v1/workers/join-tokens"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("join token");
    assert_eq!(r.status(), 201);
    let join: Value = r.json().await.expect("json");
    let disk = dir.path().join("disk0");
    let (mut worker, _) = spawn_until(
        Command::new(BIN)
            .args(["worker", "--coordinator", &url, "--join-token"])
            .arg(join["token"].as_str().expect("token"))
            .arg("--data-dir")
            .arg(dir.path().join("worker"))
            .arg("--disk")
            .arg(&disk)
            .args([
                "--gpus",
                "none",
                "--cpu-init",
                "--measure-seconds",
                "0.3",
                "--disk-test-mib",
                "4",
            ])
            .args(["--heartbeat-seconds", "1", "--name", "rig-e2e"]),
        "smeshfleet worker ",
    );

    // Wait for the identity to become ready (every label recorded done).
    let deadline = Instant::now() + Duration::from_secs(180);
    let last = loop {
        let r = http
            .get(format!("{url}/api/v1/identities/{id}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("get identity");
        let now: Value = r.json().await.expect("json");
        if now["state"] == "ready" {
            break now;
        }
        assert!(Instant::now() < deadline, "identity not ready in time: {now}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(last["labels_done"], 8192, "{last}");

    // The reference: `smeshfleet post init` for the same identity.
    let reference = dir.path().join("reference");
    let out = Command::new(BIN)
        .args(["post", "init", "--datadir"])
        .arg(&reference)
        .args([
            "--node-id",
            &node_id,
            "--commitment-atx-id",
            &commitment,
            "--num-units",
            "2",
        ])
        .args([
            "--labels-per-unit",
            "4096",
            "--max-file-size",
            "65536",
            "--scrypt-n",
            "8192",
        ])
        .output()
        .expect("post init");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Find the identity's directory on the worker's disk.
    let data = walk_find(&disk, &node_id).expect("the identity's directory on the disk");
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

    // No job is left live, and the worker never saw a key: its data dir holds none.
    let r = http
        .get(format!("{url}/api/v1/jobs?state=leased"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("jobs");
    let leased: Value = r.json().await.expect("json");
    assert_eq!(leased, json!([]));

    assert_eq!(stop(&mut worker), Some(0), "worker exits cleanly on SIGTERM");
    assert_eq!(stop(&mut coord), Some(0), "coordinator exits cleanly on SIGTERM");
}

fn walk_find(root: &Path, name: &str) -> Option<std::path::PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == name) {
                    return Some(p);
                }
                stack.push(p);
            }
        }
    }
    None
}

/// A worker killed with SIGKILL in the middle of an init job loses nothing it reported: after a
/// restart (same data directory, no join token) and the lease's expiry, the job resumes and the
/// data is still byte for byte `smeshfleet post init`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigkill_mid_init_resumes_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (mut coord, line) = spawn_until(
        Command::new(BIN)
            .args(["coordinator", "--data-dir"])
            .arg(dir.path().join("coord"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--reconcile-seconds",
                "1",
            ])
            .args(["--lease-seconds", "3"])
            .env("SMESHFLEET_ADMIN_TOKEN", ADMIN)
            .env("SMESHFLEET_KEYSTORE_PASSPHRASE", "e2e passphrase 123"),
        "smeshfleet coordinator listening on ",
    );
    let url = line
        .trim_start_matches("smeshfleet coordinator listening on ")
        .to_owned();
    let http = reqwest::Client::new();
    let commitment = "22".repeat(32);
    // One file of 16384 labels: long enough that the kill lands mid-job.
    let r = http
        .post(format!("{url}/api/v1/identities"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "killed", "num_units": 4, "labels_per_unit": 4096,
            "max_file_size": 16 * 16384, "scrypt_n": 8192, "commitment_atx_id": commitment}))
        .send()
        .await
        .expect("create identity");
    assert_eq!(r.status(), 201);
    let identity: Value = r.json().await.expect("json");
    let id = identity["id"].as_str().expect("id").to_owned();
    let node_id = identity["node_id"].as_str().expect("node id").to_owned();
    let join: Value = http
        .post(format!("{url}/api/v1/workers/join-tokens"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("join token")
        .json()
        .await
        .expect("json");
    let disk = dir.path().join("disk0");
    let worker_cmd = |join_token: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(["worker", "--coordinator", &url])
            .arg("--data-dir")
            .arg(dir.path().join("worker"))
            .arg("--disk")
            .arg(&disk)
            .args([
                "--gpus",
                "none",
                "--cpu-init",
                "--measure-seconds",
                "0.3",
                "--disk-test-mib",
                "4",
                "--heartbeat-seconds",
                "1",
            ]);
        if let Some(t) = join_token {
            c.args(["--join-token", t]);
        }
        c
    };
    let (mut worker, _) = spawn_until(&mut worker_cmd(join["token"].as_str()), "smeshfleet worker ");
    // Wait until some labels are recorded, then kill the worker without warning.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v: Value = http
            .get(format!("{url}/api/v1/identities/{id}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        let done = v["labels_done"].as_u64().unwrap_or(0);
        if done > 0 {
            assert!(done < 16384, "the kill must land mid-job (done {done})");
            break;
        }
        assert!(Instant::now() < deadline, "no progress in time: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.0.kill().expect("SIGKILL");
    let _ = worker.0.wait();

    // Restart without a join token: the saved credential is used.
    let (mut worker, _) = spawn_until(&mut worker_cmd(None), "smeshfleet worker ");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let v: Value = http
            .get(format!("{url}/api/v1/identities/{id}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if v["state"] == "ready" {
            assert_eq!(v["labels_done"], 16384, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "not ready after the restart: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let reference = dir.path().join("reference");
    let out = Command::new(BIN)
        .args(["post", "init", "--datadir"])
        .arg(&reference)
        .args([
            "--node-id",
            &node_id,
            "--commitment-atx-id",
            &commitment,
            "--num-units",
            "4",
        ])
        .args([
            "--labels-per-unit",
            "4096",
            "--max-file-size",
            "262144",
            "--scrypt-n",
            "8192",
        ])
        .output()
        .expect("post init");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data = walk_find(&disk, &node_id).expect("the identity's directory");
    assert_eq!(
        read(&data.join("postdata_0.bin")),
        read(&reference.join("postdata_0.bin"))
    );
    assert_eq!(stop(&mut worker), Some(0));
    assert_eq!(stop(&mut coord), Some(0));
}
