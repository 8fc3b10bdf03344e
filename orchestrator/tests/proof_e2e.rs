//! The proof pipeline end to end with real processes on loopback: a coordinator with small proof
//! parameters (`--proof-config`), one CPU worker (light RandomX), a tiny identity created over the
//! API. Once the identity is ready a challenge is posted; the coordinator plans k2pow and a
//! proving pass, the worker solves the pows and proves from its disk, the coordinator verifies
//! the proof and stores it with its identity and epoch. The test then checks the stored proof
//! on its own, with post's strict verifier against the metadata on the worker's disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "support/process.rs"]
mod process;

use process::{free_port, spawn_until, stop, Guard};

const BIN: &str = env!("CARGO_BIN_EXE_smeshfleet");
const ADMIN: &str = "proof-e2e-admin-token-0123456789ab";
const PASSPHRASE: &str = "proof e2e passphrase";
const LISTENING: &str = "smeshfleet coordinator listening on ";

/// K1 and K2 for 4096 labels: about 32 labels of a nonce pass the threshold, 8 are needed, so
/// nearly every nonce of the first pass proves.
const K1: u32 = 32;
const K2: u32 = 8;
/// Every RandomX hash but one is below it: each nonce group's pow is found with a hash or two.
const POW_DIFFICULTY: [u8; 32] = [0xff; 32];
const SCRYPT_N: u32 = 16;
const NUM_UNITS: u32 = 2;
const LABELS_PER_UNIT: u64 = 2048;

/// Starts a coordinator in `dir/coord` with the test's proof parameters; returns it and its URL.
fn start_coordinator(dir: &Path) -> (Guard, String) {
    let cfg = dir.join("proof-config.json");
    std::fs::write(
        &cfg,
        json!({"k1": K1, "k2": K2, "pow_difficulty": hex::encode(POW_DIFFICULTY)}).to_string(),
    )
    .expect("write the proof config");
    let (coord, line) = spawn_until(
        Command::new(BIN)
            .args(["coordinator", "--data-dir"])
            .arg(dir.join("coord"))
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--reconcile-seconds", "1", "--lease-seconds", "30"])
            .arg("--proof-config")
            .arg(&cfg)
            .env("SMESHFLEET_ADMIN_TOKEN", ADMIN)
            .env("SMESHFLEET_KEYSTORE_PASSPHRASE", PASSPHRASE),
        LISTENING,
    );
    (coord, line.trim_start_matches(LISTENING).to_owned())
}

/// A CPU worker with light RandomX, its data in `dir/worker` and one disk, `dir/disk0`.
fn worker_cmd(url: &str, dir: &Path, join_token: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args(["worker", "--coordinator", url])
        .arg("--data-dir")
        .arg(dir.join("worker"))
        .arg("--disk")
        .arg(dir.join("disk0"))
        .args(["--gpus", "none", "--cpu-init", "--randomx-light"])
        .args(["--measure-seconds", "0.3", "--disk-test-mib", "4"])
        .args(["--heartbeat-seconds", "1", "--name", "rig-proof"])
        .args(["--join-token", join_token]);
    c
}

async fn post_admin(http: &reqwest::Client, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http.post(url).bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

async fn get_admin(http: &reqwest::Client, url: &str) -> Value {
    let r = http.get(url).bearer_auth(ADMIN).send().await.expect("request");
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.expect("json")
}

/// Polls `url` until `done` says so; fails after `secs`.
async fn wait_for(
    http: &reqwest::Client,
    url: &str,
    secs: u64,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = get_admin(http, url).await;
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} not there in time: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn find_dir(root: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
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

/// post's strict verifier, every index, against the metadata in `data` and `challenge`.
fn verify_independently(
    data: &Path,
    proof: &post::proof::Proof,
    challenge: [u8; 32],
    rx: &post::pow::RandomXPow,
) -> Result<(), post::verify::VerifyError> {
    let md = post::metadata::PostMetadata::load(data)
        .expect("the metadata reads")
        .expect("the identity's directory has metadata");
    let metadata = post::proof::ProofMetadata {
        node_id: md.node_id,
        commitment_atx_id: md.commitment_atx_id,
        challenge,
        num_units: md.num_units,
        labels_per_unit: md.labels_per_unit,
    };
    let cfg = post::proof::ProofConfig {
        k1: K1,
        k2: K2,
        pow_difficulty: POW_DIFFICULTY,
    };
    let init = post::proof::InitConfig {
        min_num_units: 1,
        max_num_units: u32::MAX,
        labels_per_unit: LABELS_PER_UNIT,
        scrypt_n: SCRYPT_N as usize,
    };
    let options = post::verify::VerifyOptions {
        strict: true,
        threads: 1,
    };
    post::verify::verify(
        proof,
        &metadata,
        &cfg,
        &init,
        &post::verify::Mode::All,
        &options,
        rx,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_becomes_a_verified_stored_proof() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut coord, url) = start_coordinator(dir.path());
    let http = reqwest::Client::new();

    let commitment = "5a".repeat(32);
    let (status, identity) = post_admin(
        &http,
        &format!("{url}/api/v1/identities"),
        Some(
            json!({"name": "prover", "num_units": NUM_UNITS, "labels_per_unit": LABELS_PER_UNIT,
            "max_file_size": 16 * LABELS_PER_UNIT, "scrypt_n": SCRYPT_N,
            "commitment_atx_id": commitment}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{identity}");
    let id = identity["id"].as_str().expect("id").to_owned();
    let node_id = identity["node_id"].as_str().expect("node id").to_owned();

    // A challenge before the data is there is refused and records nothing.
    let challenge = "c3".repeat(32);
    let (status, body) = post_admin(
        &http,
        &format!("{url}/api/v1/identities/{id}/challenge"),
        Some(json!({"challenge": challenge, "publish_epoch": 7})),
    )
    .await;
    assert_eq!(status, 422, "{body}");

    let (_, join) = post_admin(&http, &format!("{url}/api/v1/workers/join-tokens"), None).await;
    let (mut worker, _) = spawn_until(
        &mut worker_cmd(&url, dir.path(), join["token"].as_str().expect("token")),
        "smeshfleet worker ",
    );
    let ready = wait_for(
        &http,
        &format!("{url}/api/v1/identities/{id}"),
        120,
        "the identity's data",
        |v| v["state"] == "ready",
    )
    .await;
    assert_eq!(
        ready["labels_done"],
        u64::from(NUM_UNITS) * LABELS_PER_UNIT,
        "{ready}"
    );

    // Paused from the coordinator, the worker takes no proof work: nothing is leased until it
    // is resumed.
    let workers = get_admin(&http, &format!("{url}/api/v1/workers")).await;
    let worker_id = workers[0]["id"].as_str().expect("worker id").to_owned();
    let (status, paused) = post_admin(&http, &format!("{url}/api/v1/workers/{worker_id}/pause"), None).await;
    assert_eq!((status, paused["paused"].clone()), (200, json!(true)), "{paused}");

    let (status, request) = post_admin(
        &http,
        &format!("{url}/api/v1/identities/{id}/challenge"),
        Some(json!({"challenge": challenge, "publish_epoch": 7})),
    )
    .await;
    assert_eq!(status, 201, "{request}");
    assert_eq!(request["state"], "pending");
    assert_eq!(request["publish_epoch"], 7);
    // The same challenge again is the same request; another one for the epoch is a conflict.
    let (status, again) = post_admin(
        &http,
        &format!("{url}/api/v1/identities/{id}/challenge"),
        Some(json!({"challenge": challenge, "publish_epoch": 7})),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    let (status, other) = post_admin(
        &http,
        &format!("{url}/api/v1/identities/{id}/challenge"),
        Some(json!({"challenge": "d4".repeat(32), "publish_epoch": 7})),
    )
    .await;
    assert_eq!(status, 409, "{other}");

    tokio::time::sleep(Duration::from_secs(3)).await;
    let jobs = get_admin(&http, &format!("{url}/api/v1/jobs")).await;
    let proof_work: Vec<&Value> = jobs
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["kind"] == "k2pow" || j["kind"] == "prove")
        .filter(|j| j["state"] != "queued" && j["state"] != "cancelled")
        .collect();
    assert!(
        proof_work.is_empty(),
        "a paused worker took proof work: {proof_work:?}"
    );
    let (status, resumed) =
        post_admin(&http, &format!("{url}/api/v1/workers/{worker_id}/resume"), None).await;
    assert_eq!(
        (status, resumed["paused"].clone()),
        (200, json!(false)),
        "{resumed}"
    );

    let proofs = wait_for(
        &http,
        &format!("{url}/api/v1/identities/{id}/proofs"),
        90,
        "a verified proof",
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    let stored = proofs.as_array().expect("a list");
    assert_eq!(stored.len(), 1, "{proofs}");
    let stored = &stored[0];
    assert_eq!(stored["identity_id"], id.as_str());
    assert_eq!(stored["publish_epoch"], 7);
    assert_eq!(stored["challenge"], challenge.as_str());

    // The identity says so, and the prove job that found it is done.
    let after = get_admin(&http, &format!("{url}/api/v1/identities/{id}")).await;
    assert_eq!(after["state"], "proof_verified", "{after}");
    let job_id = stored["job_id"].as_str().expect("job id");
    let job = get_admin(&http, &format!("{url}/api/v1/jobs/{job_id}")).await;
    assert_eq!(job["kind"], "prove", "{job}");
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["identity_id"], id.as_str(), "{job}");

    // The stored proof verifies on its own against the worker's data, and not for another
    // challenge (so the check can fail).
    let proof: post::proof::Proof = serde_json::from_value(stored["proof"].clone()).expect("a post proof");
    let data = find_dir(&dir.path().join("disk0"), &node_id).expect("the identity's directory on the disk");
    let rx = post::pow::RandomXPow::with_options(post::pow::RandomXOptions {
        mode: post::pow::RandomXMode::Light,
        threads: 1,
        large_pages: false,
    })
    .expect("light RandomX");
    let mut c = [0u8; 32];
    hex::decode_to_slice(&challenge, &mut c).expect("hex");
    verify_independently(&data, &proof, c, &rx).expect("the stored proof verifies");
    let mut wrong = c;
    wrong[0] ^= 1;
    assert!(
        verify_independently(&data, &proof, wrong, &rx).is_err(),
        "the proof must not verify for another challenge"
    );

    // Stored durably: the same after a restart of the coordinator.
    assert_eq!(stop(&mut worker), Some(0), "worker exits cleanly on SIGTERM");
    assert_eq!(stop(&mut coord), Some(0), "coordinator exits cleanly on SIGTERM");
    let (mut coord, url) = start_coordinator(dir.path());
    let again = get_admin(&http, &format!("{url}/api/v1/identities/{id}/proofs")).await;
    assert_eq!(again, proofs);
    assert_eq!(stop(&mut coord), Some(0));
    eprintln!("proof end to end took {:?}", started.elapsed());
}
