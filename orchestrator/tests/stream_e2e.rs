//! Compute-only workers streaming labels to the storage worker that owns the target disk.
//!
//! * `chunk_endpoint_checks_grant_checksum_labels_and_lease`: a real coordinator process, two
//!   workers enrolled over its API (the test speaks for them), the storage worker's stream
//!   endpoint in process on a real socket: bad checksums, ranges outside the grant, wrong labels,
//!   unknown and stale tokens are refused; an acked batch sent again changes nothing.
//! * `compute_only_worker_streams_an_identity_to_a_storage_worker`: real processes only: a
//!   coordinator, a storage worker whose CPU computes nothing, and a compute worker with no disk;
//!   the data ends up byte for byte what `smeshfleet post init` writes, and `post check` passes.
//!
//! Throughput (local init, streamed init, transport only) is a bench:
//! `cargo bench -p orchestrator --bench streaming`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use post::backend::{CpuBackend, LabelBackend, LabelRequest};
use protocol::{Capabilities, CpuInfo, DiskInfo, StreamGrant};
use serde_json::{json, Value};
use worker::client::Client;
use worker::stream::client::ChunkSender;
use worker::stream::server::{Authorizer, StreamServer};
use worker::stream::{CHUNK_PATH, HEADER_BLAKE3, HEADER_START};

#[path = "support/http.rs"]
mod http;
#[path = "support/process.rs"]
mod process;

use http::post_as;
use process::{free_port, read, spawn_until, stop, walk_files, Guard};

const BIN: &str = env!("CARGO_BIN_EXE_smeshfleet");
const ADMIN: &str = "stream-admin-token-0123456789abcdef";
const PASSPHRASE: &str = "stream passphrase 123";
const LISTENING: &str = "smeshfleet coordinator listening on ";

async fn admin(http: &reqwest::Client, url: &str, body: Value) -> Value {
    http::post_ok(http, url, ADMIN, body).await
}

async fn get_admin(http: &reqwest::Client, url: &str) -> Value {
    http::get_json(http, url, ADMIN).await
}

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

/// Enrolls a worker with `caps`; returns its id and credential.
async fn enroll(http: &reqwest::Client, url: &str, name: &str, caps: &Capabilities) -> (String, String) {
    let join = admin(http, &format!("{url}/api/v1/workers/join-tokens"), json!({})).await;
    let r = http
        .post(format!("{url}/api/v1/worker/enroll"))
        .json(&json!({"join_token": join["token"], "name": name, "capabilities": caps}))
        .send()
        .await
        .expect("enroll");
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.expect("json");
    (
        v["worker_id"].as_str().expect("id").to_owned(),
        v["credential"].as_str().expect("credential").to_owned(),
    )
}

fn disk_info(id: &str, mount: &Path) -> DiskInfo {
    DiskInfo {
        id: id.into(),
        mount: mount.display().to_string(),
        physical_device: "sda".into(),
        filesystem: "ext4".into(),
        capacity_bytes: 1 << 30,
        free_bytes: 1 << 30,
        read_mb_s: 100.0,
        write_mb_s: 0.0,
    }
}

/// The labels `[start, end)` of a commitment, 16 bytes each, and the best VRF candidate among them.
fn labels(
    commitment: &[u8; 32],
    start: u64,
    end: u64,
    n: usize,
    threshold: &[u8; 32],
) -> (Vec<u8>, Option<post::backend::VrfCandidate>) {
    let be = CpuBackend::new(2).expect("backend");
    let mut out = vec![0u8; ((end - start) * 16) as usize];
    let cands = be
        .compute(
            &LabelRequest {
                commitment,
                scrypt_n: n,
                start,
                vrf_threshold: Some(threshold),
            },
            &mut out,
        )
        .expect("labels");
    (out, post::backend::best_candidate(&cands))
}

/// `smeshfleet post init` of the identity into `dir`: the reference.
fn reference_init(dir: &Path, node_id: &str, commitment: &str, units: u32, max_file_size: u64, n: u32) {
    let out = Command::new(BIN)
        .args(["post", "init", "--datadir"])
        .arg(dir)
        .args(["--node-id", node_id, "--commitment-atx-id", commitment])
        .args(["--num-units", &units.to_string(), "--labels-per-unit", "4096"])
        .args([
            "--max-file-size",
            &max_file_size.to_string(),
            "--scrypt-n",
            &n.to_string(),
        ])
        .output()
        .expect("post init");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Two workers the test speaks for: "store" (one disk, a stream endpoint, no label device) and
/// "rented" (a CPU that computes labels, no disk). Heartbeats run in the background.
struct TwoWorkers {
    store_id: String,
    store_cred: String,
    rented_id: String,
    rented_cred: String,
    stream_url: String,
    listener: Option<tokio::net::TcpListener>,
    _beats: tokio::task::JoinHandle<()>,
}

async fn two_workers(http: &reqwest::Client, url: &str, disk: &Path) -> TwoWorkers {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stream_url = format!("http://{}", listener.local_addr().expect("addr"));
    let store_caps = Capabilities {
        hostname: "store".into(),
        cpu: CpuInfo {
            threads: 2,
            ..CpuInfo::default()
        },
        disks: vec![disk_info("d0", disk)],
        stream_url: Some(stream_url.clone()),
        ..Capabilities::default()
    };
    let rented_caps = Capabilities {
        hostname: "rented".into(),
        cpu: CpuInfo {
            threads: 2,
            labels_per_s: 1000.0,
            init_enabled: true,
            ..CpuInfo::default()
        },
        ..Capabilities::default()
    };
    let (store_id, store_cred) = enroll(http, url, "store", &store_caps).await;
    let (rented_id, rented_cred) = enroll(http, url, "rented", &rented_caps).await;
    let beats = {
        let (http, url) = (http.clone(), url.to_owned());
        let creds = [store_cred.clone(), rented_cred.clone()];
        tokio::spawn(async move {
            loop {
                for c in &creds {
                    let _ = post_as(&http, &format!("{url}/api/v1/worker/heartbeat"), c, json!({})).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    TwoWorkers {
        store_id,
        store_cred,
        rented_id,
        rented_cred,
        stream_url,
        listener: Some(listener),
        _beats: beats,
    }
}

/// Leases as `cred` until a job comes (the planner runs every second).
async fn lease_init(http: &reqwest::Client, url: &str, cred: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = post_as(
            http,
            &format!("{url}/api/v1/worker/lease"),
            cred,
            json!({"kinds": ["init"], "max_jobs": 1}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        if let Some(j) = v["jobs"].as_array().and_then(|a| a.first()) {
            return j.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no init job planned for the compute worker"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One raw chunk request: the status and the error code, if any.
async fn send_raw(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    start: u64,
    body: &[u8],
    checksum: Option<String>,
) -> (u16, String) {
    let mut req = http
        .post(format!("{base}{CHUNK_PATH}"))
        .header(HEADER_START, start.to_string())
        .header(
            HEADER_BLAKE3,
            checksum.unwrap_or_else(|| blake3::hash(body).to_hex().to_string()),
        )
        .body(body.to_vec());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("chunk request");
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
}

/// Serves a fresh stream endpoint (its own token cache) for the storage worker; returns its URL.
async fn serve_store(
    url: &str,
    cred: &str,
    disk: &Path,
    listener: tokio::net::TcpListener,
) -> (String, tokio::task::JoinHandle<()>) {
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let client = Client::new(url, Some(cred.to_owned())).expect("client");
    let srv = Arc::new(StreamServer::new(
        Authorizer::Client(client),
        vec![disk_info("d0", disk)],
    ));
    let task = tokio::spawn(async move {
        let _ = worker::stream::server::serve(listener, srv, std::future::pending()).await;
    });
    (base, task)
}

/// A queued remote init job whose storage worker no longer serves a stream endpoint (it came back
/// without `--stream-listen`) is cancelled when the compute worker leases it, naming why, instead
/// of being handed back and leased again every few seconds; the compute worker gets no job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_job_whose_target_lost_its_stream_endpoint_is_cancelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk0");
    std::fs::create_dir_all(&disk).expect("disk");
    let (mut coord, url) = start_coordinator(dir.path(), 60);
    let http = reqwest::Client::new();
    admin(
        &http,
        &format!("{url}/api/v1/identities"),
        json!({"name": "remote", "num_units": 1, "labels_per_unit": 4096,
            "max_file_size": 16 * 4096, "scrypt_n": 16, "commitment_atx_id": "33".repeat(32)}),
    )
    .await;
    let w = two_workers(&http, &url, &disk).await;
    let job = lease_init(&http, &url, &w.rented_cred).await;
    let job_id = job["job_id"].as_str().expect("job id").to_owned();
    assert_eq!(job["spec"]["target"]["worker_id"], w.store_id.as_str(), "{job}");
    // The storage worker comes back without its stream endpoint.
    let caps = Capabilities {
        hostname: "store".into(),
        cpu: CpuInfo {
            threads: 2,
            ..CpuInfo::default()
        },
        disks: vec![disk_info("d0", &disk)],
        stream_url: None,
        ..Capabilities::default()
    };
    let (status, v) = post_as(
        &http,
        &format!("{url}/api/v1/worker/heartbeat"),
        &w.store_cred,
        json!({"capabilities": caps}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // Heartbeats are written once a second: wait until the coordinator has the new capabilities.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = get_admin(&http, &format!("{url}/api/v1/workers/{}", w.store_id)).await;
        if v["capabilities"].get("stream_url").is_none_or(Value::is_null) {
            break;
        }
        assert!(Instant::now() < deadline, "capabilities not updated: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The compute worker hands its lease back (as after a crash); the job is queued again.
    let (status, v) = post_as(
        &http,
        &format!("{url}/api/v1/worker/jobs/{job_id}/fail"),
        &w.rented_cred,
        json!({"fencing_token": job["fencing_token"], "error": "test hands it back", "retryable": true,
            "retry_after_ms": 0}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "queued", "{v}");
    // Leasing it now cancels it; nothing is leased.
    let (status, v) = post_as(
        &http,
        &format!("{url}/api/v1/worker/lease"),
        &w.rented_cred,
        json!({"kinds": ["init"], "max_jobs": 1}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["jobs"], json!([]), "{v}");
    let j = get_admin(&http, &format!("{url}/api/v1/jobs/{job_id}")).await;
    assert_eq!(j["state"], "cancelled", "{j}");
    let events = get_admin(&http, &format!("{url}/api/v1/events/history?limit=1000")).await;
    let found = events.as_array().into_iter().flatten().any(|e| {
        e["kind"] == "job.cancelled"
            && e["subject"] == job_id.as_str()
            && e["data"]["reason"]["reason"] == "storage_unavailable"
    });
    assert!(found, "a job.cancelled event names why: {events}");
    assert_eq!(stop(&mut coord), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_endpoint_checks_grant_checksum_labels_and_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk0");
    std::fs::create_dir_all(&disk).expect("disk");
    let (mut coord, url) = start_coordinator(dir.path(), 60);
    let http = reqwest::Client::new();
    let commitment_hex = "33".repeat(32);
    let n = 16u32;
    let identity = admin(
        &http,
        &format!("{url}/api/v1/identities"),
        json!({"name": "streamed", "num_units": 1, "labels_per_unit": 4096,
            "max_file_size": 16 * 4096, "scrypt_n": n, "commitment_atx_id": commitment_hex}),
    )
    .await;
    let node_id = identity["node_id"].as_str().expect("node id").to_owned();
    let mut w = two_workers(&http, &url, &disk).await;

    // The planner gives the storage worker's file to the compute worker, with a grant.
    let job = lease_init(&http, &url, &w.rented_cred).await;
    assert_eq!(job["spec"]["target"]["worker_id"], w.store_id.as_str(), "{job}");
    let grant: StreamGrant = serde_json::from_value(job["stream"].clone()).expect("a stream grant");
    assert_eq!(grant.url, w.stream_url);
    let (start, end) = (
        job["spec"]["work"]["range"]["start"].as_u64().expect("start"),
        job["spec"]["work"]["range"]["end"].as_u64().expect("end"),
    );
    assert_eq!((start, end), (0, 4096));

    // The coordinator answers the target worker only, and only what the lease allows.
    let authorize = format!("{url}/api/v1/worker/stream/authorize");
    let (status, v) = post_as(&http, &authorize, &w.store_cred, json!({"token": grant.token})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["range"], json!({"start": 0, "end": 4096}));
    assert_eq!(v["disk_id"], "d0");
    assert_eq!(v["compute_worker_id"], w.rented_id.as_str());
    assert!(v["identity"].get("node_id").is_some());
    let (status, v) = post_as(&http, &authorize, &w.rented_cred, json!({"token": grant.token})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("stream_token_invalid"))
    );
    let (status, _) = post_as(
        &http,
        &authorize,
        &w.store_cred,
        json!({"token": "00".repeat(32)}),
    )
    .await;
    assert_eq!(status, 403);

    let (base, _srv) = serve_store(&url, &w.store_cred, &disk, w.listener.take().expect("listener")).await;
    let md = post::metadata::PostMetadata {
        node_id: hex::decode(&node_id).expect("hex").try_into().expect("32 bytes"),
        commitment_atx_id: [0x33; 32],
        labels_per_unit: 4096,
        num_units: 1,
        max_file_size: 16 * 4096,
        nonce: None,
        nonce_value: None,
        last_position: None,
    };
    let commitment = md.commitment();
    let threshold = post::difficulty::vrf_difficulty(md.num_labels()).expect("threshold");
    let (half, best1) = labels(&commitment, 0, 2048, n as usize, &threshold);
    let (rest, best2) = labels(&commitment, 2048, 4096, n as usize, &threshold);
    let all: Vec<u8> = [half.as_slice(), rest.as_slice()].concat();
    let half = half.as_slice();

    // No token, a token the coordinator does not know.
    assert_eq!(send_raw(&http, &base, None, 0, half, None).await.0, 401);
    assert_eq!(
        send_raw(&http, &base, Some(&"ab".repeat(32)), 0, half, None).await,
        (403, "stream_token_invalid".into())
    );
    // A body that does not match its checksum.
    assert_eq!(
        send_raw(&http, &base, Some(&grant.token), 0, half, Some("00".repeat(32))).await,
        (400, "checksum_mismatch".into())
    );
    // Labels outside the granted range (the grant is the whole file here: past its end).
    assert_eq!(
        send_raw(&http, &base, Some(&grant.token), 4000, &all[..200 * 16], None).await,
        (422, "outside_grant".into())
    );
    // Wrong labels with a right checksum: the spot check recomputes one on the CPU.
    let garbage = vec![0x5a; 2048 * 16];
    assert_eq!(
        send_raw(&http, &base, Some(&grant.token), 0, &garbage, None).await,
        (422, "bad_labels".into())
    );
    // Nothing of that was written.
    let data = disk.join("smeshfleet").join(&node_id);
    assert!(!data.join("postdata_0.bin").exists());

    // A good batch, then the same batch again: acked twice, written once.
    let sender = ChunkSender::new(&grant).expect("sender");
    let ack = sender
        .send(0, half.to_vec().into(), None)
        .await
        .expect("first half");
    assert_eq!((ack.start_label, ack.end_label), (0, 2048));
    assert_eq!(read(&data.join("postdata_0.bin")), half);
    let again = sender.send(0, half.to_vec().into(), None).await.expect("replay");
    assert_eq!(again, ack);
    assert_eq!(read(&data.join("postdata_0.bin")), half);

    // The rest with the best VRF candidate, as the compute worker would: the storage worker
    // recomputes it before recording it, and refuses a forged one.
    let best = best2.or(best1).expect("a label below the VRF threshold");
    let mut forged = best;
    forged.label32[31] ^= 1;
    let forged_start = if best.index < 2048 { 0 } else { 2048 };
    let e = sender
        .send(
            forged_start,
            all[forged_start as usize * 16..(forged_start as usize + 2048) * 16]
                .to_vec()
                .into(),
            Some(forged),
        )
        .await
        .expect_err("a forged candidate");
    assert!(e.to_string().contains("bad_candidate"), "{e}");
    if best1.is_some() {
        sender
            .send(0, half.to_vec().into(), best1)
            .await
            .expect("first half with its candidate");
    }
    sender
        .send(2048, rest.clone().into(), best2)
        .await
        .expect("second half");

    // The lease goes (handed back): its token is stale, and the next lease's token works.
    let (status, v) = post_as(
        &http,
        &format!(
            "{url}/api/v1/worker/jobs/{}/fail",
            job["job_id"].as_str().expect("job id")
        ),
        &w.rented_cred,
        json!({"fencing_token": job["fencing_token"], "error": "test hands it back", "retryable": true,
            "retry_after_ms": 0}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = post_as(&http, &authorize, &w.store_cred, json!({"token": grant.token})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (409, Some("stale_lease")));
    let job2 = lease_init(&http, &url, &w.rented_cred).await;
    let grant2: StreamGrant = serde_json::from_value(job2["stream"].clone()).expect("a new grant");
    assert_ne!(grant2.token, grant.token);
    // A fresh endpoint (nothing cached) refuses the old token and takes the new one.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (base2, _srv2) = serve_store(&url, &w.store_cred, &disk, listener).await;
    assert_eq!(
        send_raw(&http, &base2, Some(&grant.token), 0, half, None).await,
        (409, "stale_lease".into())
    );
    assert_eq!(
        send_raw(&http, &base2, Some(&grant2.token), 0, half, None)
            .await
            .0,
        200
    );

    // The data and its nonce are what `post init` writes.
    let reference = dir.path().join("reference");
    reference_init(&reference, &node_id, &commitment_hex, 1, 16 * 4096, n);
    assert_eq!(
        read(&data.join("postdata_0.bin")),
        read(&reference.join("postdata_0.bin"))
    );
    let ours = post::metadata::PostMetadata::load(&data)
        .expect("load")
        .expect("ours");
    let theirs = post::metadata::PostMetadata::load(&reference)
        .expect("load")
        .expect("theirs");
    assert_eq!((ours.nonce, ours.nonce_value), (theirs.nonce, theirs.nonce_value));
    assert_eq!(stop(&mut coord), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_only_worker_streams_an_identity_to_a_storage_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut coord, url) = start_coordinator(dir.path(), 30);
    let http = reqwest::Client::new();
    let commitment = "44".repeat(32);
    let n = 512u32;
    // Two files of 4096 labels.
    let identity = admin(
        &http,
        &format!("{url}/api/v1/identities"),
        json!({"name": "streamed-e2e", "num_units": 2, "labels_per_unit": 4096,
            "max_file_size": 16 * 4096, "scrypt_n": n, "commitment_atx_id": commitment}),
    )
    .await;
    let id = identity["id"].as_str().expect("id").to_owned();
    let node_id = identity["node_id"].as_str().expect("node id").to_owned();

    let worker = |name: &str, token: &str| {
        let mut c = Command::new(BIN);
        c.args(["worker", "--coordinator", &url])
            .arg("--data-dir")
            .arg(dir.path().join(name))
            .args(["--measure-seconds", "0.3", "--disk-test-mib", "4"])
            .args(["--heartbeat-seconds", "1", "--name", name, "--join-token", token]);
        c
    };
    // The storage worker: a disk, a stream endpoint, and no device that computes labels.
    let join = admin(&http, &format!("{url}/api/v1/workers/join-tokens"), json!({})).await;
    let mut store_cmd = worker("store", join["token"].as_str().expect("token"));
    store_cmd.arg("--disk").arg(dir.path().join("disk0")).args([
        "--gpus",
        "none",
        "--no-cpu-init",
        "--stream-listen",
        "127.0.0.1:0",
    ]);
    let (mut store, _) = spawn_until(&mut store_cmd, "smeshfleet worker ");
    // The compute worker: no disk at all.
    let join = admin(&http, &format!("{url}/api/v1/workers/join-tokens"), json!({})).await;
    let mut rented_cmd = worker("rented", join["token"].as_str().expect("token"));
    rented_cmd.args(["--gpus", "none", "--cpu-init", "--cpu-threads", "2"]);
    let (mut rented, _) = spawn_until(&mut rented_cmd, "smeshfleet worker ");

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = get_admin(&http, &format!("{url}/api/v1/identities/{id}")).await;
        if v["state"] == "ready" {
            assert_eq!(v["labels_done"], 8192, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "identity not ready in time: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every init job ran on the compute worker, for the storage worker's disk.
    let workers = get_admin(&http, &format!("{url}/api/v1/workers")).await;
    let id_of = |name: &str| {
        workers
            .as_array()
            .and_then(|a| a.iter().find(|w| w["name"] == name))
            .and_then(|w| w["id"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("worker {name} listed: {workers}"))
    };
    let (store_id, rented_id) = (id_of("store"), id_of("rented"));
    let done = get_admin(&http, &format!("{url}/api/v1/jobs?state=done")).await;
    let inits: Vec<&Value> = done
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["kind"] == "init")
        .collect();
    assert!(!inits.is_empty(), "{done}");
    for j in &inits {
        assert_eq!(j["worker_id"], rented_id.as_str(), "{j}");
    }

    // The data on the storage worker's disk is `post init`'s, and checks.
    let data = dir.path().join("disk0").join("smeshfleet").join(&node_id);
    let reference = dir.path().join("reference");
    reference_init(&reference, &node_id, &commitment, 2, 16 * 4096, n);
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
    let check = Command::new(BIN)
        .args(["post", "check", "--datadir"])
        .arg(&data)
        .args(["--fraction", "1", "--scrypt-n", &n.to_string()])
        .output()
        .expect("post check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // The compute worker wrote nothing of the identity anywhere.
    let mut files = Vec::new();
    walk_files(&dir.path().join("rented"), &mut files);
    assert!(
        files.iter().all(|f| !f.to_string_lossy().contains("postdata")),
        "{files:?}"
    );
    assert_ne!(store_id, rented_id);

    assert_eq!(stop(&mut rented), Some(0));
    assert_eq!(stop(&mut store), Some(0));
    assert_eq!(stop(&mut coord), Some(0));
}
