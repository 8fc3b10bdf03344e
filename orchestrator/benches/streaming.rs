//! Labels/s and MB/s of local init, streamed init and the streaming transport alone, on this
//! machine (CPU labels at N = 8192, loopback).
//!
//! `cargo bench -p orchestrator --bench streaming`; `STREAM_BENCH_LABELS` (65536) sets the size.
//!
//! A real coordinator process; two workers enrolled over its API, the bench speaking for them:
//! "store" (one disk, its stream endpoint served in this process on a real socket) and "rented"
//! (a CPU, no disk), whose leased init job is run three ways:
//!
//! 1. local init: `smeshfleet post init` of the whole identity (compute and write on one rig);
//! 2. streamed init: `worker::stream::client::run_streamed_init`, computing here and sending
//!    every batch to the store's endpoint, reporting after each ack;
//! 3. transport only: the labels of (1) sent again in batches of 256 Ki labels (checksum, spot
//!    check, write, fsync, ack), one at a time.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use post::backend::{CpuBackend, LabelBackend};
use protocol::{Capabilities, CpuInfo, DiskInfo, StreamGrant};
use serde_json::{json, Value};
use worker::client::Client;
use worker::stream::client::{run_streamed_init, ChunkSender, StreamedInit};
use worker::stream::server::{Authorizer, StreamServer};

#[path = "../tests/support/http.rs"]
mod http;
#[path = "../tests/support/process.rs"]
mod process;

use http::post_as;
use process::{free_port, read, spawn_until, stop, Guard};

const BIN: &str = env!("CARGO_BIN_EXE_smeshfleet");
const ADMIN: &str = "stream-bench-admin-token-0123456789abcdef";
const PASSPHRASE: &str = "stream bench passphrase 123";
const LISTENING: &str = "smeshfleet coordinator listening on ";

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

async fn admin(http: &reqwest::Client, url: &str, body: Value) -> Value {
    http::post_ok(http, url, ADMIN, body).await
}

/// Enrolls a worker with `caps`; returns its credential.
async fn enroll(http: &reqwest::Client, url: &str, name: &str, caps: &Capabilities) -> String {
    let join = admin(http, &format!("{url}/api/v1/workers/join-tokens"), json!({})).await;
    let r = http
        .post(format!("{url}/api/v1/worker/enroll"))
        .json(&json!({"join_token": join["token"], "name": name, "capabilities": caps}))
        .send()
        .await
        .expect("enroll");
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.expect("json");
    v["credential"].as_str().expect("credential").to_owned()
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

/// Two workers the bench speaks for: "store" (one disk, a stream endpoint, no label device) and
/// "rented" (a CPU that computes labels, no disk). Heartbeats run in the background.
struct TwoWorkers {
    store_cred: String,
    rented_cred: String,
    listener: tokio::net::TcpListener,
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
        stream_url: Some(stream_url),
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
    let store_cred = enroll(http, url, "store", &store_caps).await;
    let rented_cred = enroll(http, url, "rented", &rented_caps).await;
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
        store_cred,
        rented_cred,
        listener,
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

/// Serves the storage worker's stream endpoint on `listener`.
fn serve_store(
    url: &str,
    cred: &str,
    disk: &Path,
    listener: tokio::net::TcpListener,
) -> tokio::task::JoinHandle<()> {
    let client = Client::new(url, Some(cred.to_owned())).expect("client");
    let srv = Arc::new(StreamServer::new(
        Authorizer::Client(client),
        vec![disk_info("d0", disk)],
    ));
    tokio::spawn(async move {
        let _ = worker::stream::server::serve(listener, srv, std::future::pending()).await;
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Arguments (`cargo bench` passes `--bench`, maybe a filter) are ignored.
    let labels_n: u64 = match std::env::var("STREAM_BENCH_LABELS") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("STREAM_BENCH_LABELS={v:?} is not a number")),
        Err(_) => 65_536,
    };
    let n = 8192u32;
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk0");
    std::fs::create_dir_all(&disk).expect("disk");
    let (mut coord, url) = start_coordinator(dir.path(), 600);
    let http = reqwest::Client::new();
    let commitment_hex = "55".repeat(32);
    let units = u32::try_from(labels_n.div_ceil(4096)).expect("units fit u32");
    let identity = admin(
        &http,
        &format!("{url}/api/v1/identities"),
        json!({"name": "bench", "num_units": units, "labels_per_unit": 4096,
            "max_file_size": 16 * 4096 * u64::from(units), "scrypt_n": n,
            "commitment_atx_id": commitment_hex}),
    )
    .await;
    let w = two_workers(&http, &url, &disk).await;
    let job = lease_init(&http, &url, &w.rented_cred).await;
    let grant: StreamGrant = serde_json::from_value(job["stream"].clone()).expect("grant");
    let _srv = serve_store(&url, &w.store_cred, &disk, w.listener);
    let params: protocol::IdentityParams = serde_json::from_value(job["identity"].clone()).expect("identity");
    let end = job["spec"]["work"]["range"]["end"].as_u64().expect("end");
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let mb = |labels: u64, s: f64| labels as f64 * 16.0 / 1e6 / s;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "labels {end}, N {n}, {threads} threads, loopback; load average {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );

    // Local init: compute and write on one rig (`smeshfleet post init`, the same CPU backend).
    let t = Instant::now();
    reference_init(
        &dir.path().join("local"),
        identity["node_id"].as_str().expect("node id"),
        &commitment_hex,
        units,
        16 * 4096 * u64::from(units),
        n,
    );
    let s = t.elapsed().as_secs_f64();
    println!(
        "local init (post init)   {:>10.0} labels/s {:>8.2} MB/s",
        end as f64 / s,
        mb(end, s)
    );

    // Streamed init: compute here, send every batch, report after each ack.
    let backend: Arc<dyn LabelBackend> = Arc::new(CpuBackend::new(threads).expect("backend"));
    let sender = ChunkSender::new(&grant).expect("sender");
    let task = StreamedInit {
        identity: params,
        file_index: 0,
        start: 0,
        end,
        resume_from: 0,
        disk_id: job["spec"]["target"]["disk_id"]
            .as_str()
            .expect("target disk")
            .to_owned(),
        cut: Default::default(),
    };
    let rt = tokio::runtime::Handle::current();
    let t = Instant::now();
    let (s2, b2) = (sender.clone(), backend.clone());
    let written = tokio::task::spawn_blocking(move || {
        let stop = AtomicBool::new(false);
        run_streamed_init(&task, b2.as_ref(), &s2, &rt, &stop, &mut |_, _| {}).map(|o| o.labels_written)
    })
    .await
    .expect("join")
    .expect("streamed init");
    let s = t.elapsed().as_secs_f64();
    assert_eq!(written, end);
    println!(
        "streamed init            {:>10.0} labels/s {:>8.2} MB/s",
        end as f64 / s,
        mb(end, s)
    );

    // Transport alone: precomputed batches of 256 Ki labels (checksum, one spot check, write,
    // fsync, ack), one at a time.
    let data = read(&dir.path().join("local").join("postdata_0.bin"));
    let batch = (256 * 1024usize).min(data.len() / 16);
    let t = Instant::now();
    let mut sent = 0u64;
    for c in data.chunks(batch * 16) {
        sender.send(sent, c.to_vec().into(), None).await.expect("batch");
        sent += (c.len() / 16) as u64;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "transport only           {:>10.0} labels/s {:>8.2} MB/s",
        sent as f64 / s,
        mb(sent, s)
    );
    assert_eq!(stop(&mut coord), Some(0));
}
