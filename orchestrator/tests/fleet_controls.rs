//! Operator controls of the fleet and the proof pipeline's refusals, through the router (no
//! socket) with a real SQLite store and keystore behind it: pausing and resuming a worker
//! (durable, answered in heartbeats, honoured by the lease and the planner), turning a rig's
//! devices off from the coordinator, a proof that does not verify (rejected, nothing stored),
//! and a proving request whose deadline passes (failed, with its reason and an event).

#[path = "support/router.rs"]
mod router;
use router::Resp;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

use orchestrator::api::{self, ApiConfig, AppState};
use orchestrator::keystore::{KdfParams, Keystore};
use orchestrator::metrics::Metrics;
use orchestrator::reconcile::{reconcile_cached, FileCache, ReconcileConfig, ReconcileInputs, Reconciler};
use orchestrator::store::{JobFilter, JobKind, JobState, NewJob, Store};
use protocol::{Device, JobKind as Work, JobSpec};

const BIN: &str = env!("CARGO_BIN_EXE_smeshfleet");
const ADMIN: &str = "admin-token-for-control-tests-0123";
const PASSPHRASE: &str = "correct horse battery staple";

/// Small proof parameters for a 4096-label identity (see `proof_e2e.rs`).
const PROOF: post::proof::ProofConfig = post::proof::ProofConfig {
    k1: 32,
    k2: 8,
    pow_difficulty: [0xff; 32],
};

struct Env {
    app: Router,
    state: AppState,
    store: Store,
    dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&Store::sqlite_url(&dir.path().join("state.db")))
        .await
        .expect("store");
    let ks = Keystore::create(
        dir.path().join("keystore"),
        PASSPHRASE,
        KdfParams::new(8, 1, 1).expect("kdf"),
    )
    .expect("keystore");
    let config = ApiConfig {
        max_body_bytes: 64 * 1024,
        event_poll_interval: Duration::from_millis(50),
        proof: PROOF,
        ..ApiConfig::default()
    };
    let state = AppState::new(
        store.clone(),
        Arc::new(ks),
        Arc::new(Metrics::new()),
        ADMIN,
        config,
    );
    Env {
        app: api::router(state.clone()),
        state,
        store,
        dir,
    }
}

impl Env {
    async fn call(&self, method: Method, uri: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        router::call(&self.app, method, uri, token, body).await
    }

    async fn token(&self, role: &str) -> String {
        router::token(&self.app, ADMIN, role).await
    }

    /// A tiny identity (2 units of 2048 labels, scrypt N 16) with a commitment ATX.
    async fn create_identity(&self, name: &str) -> Value {
        let r = self
            .call(
                Method::POST,
                "/api/v1/identities",
                Some(ADMIN),
                Some(json!({"name": name, "num_units": 2, "labels_per_unit": 2048,
                    "max_file_size": 16 * 2048, "scrypt_n": 16,
                    "commitment_atx_id": "5a".repeat(32)})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body
    }

    /// Enrolls a rig with two GPUs, a CPU that may compute labels and one disk; returns (id,
    /// credential).
    async fn enroll(&self, name: &str) -> (String, String) {
        let t = self
            .call(
                Method::POST,
                "/api/v1/workers/join-tokens",
                Some(ADMIN),
                Some(json!({})),
            )
            .await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
        let r = self
            .call(
                Method::POST,
                "/api/v1/worker/enroll",
                None,
                Some(json!({"join_token": t.body["token"], "name": name,
                    "capabilities": {"hostname": name,
                        "cpu": {"threads": 8, "labels_per_s": 5000.0, "init_enabled": true,
                                "randomx_hashes_per_s": 1000.0},
                        "gpus": [{"index": 0, "model": "H100", "labels_per_s": 1000000.0},
                                 {"index": 1, "model": "H100", "labels_per_s": 1000000.0}],
                        "disks": [{"id": "d0", "mount": "/data", "capacity_bytes": 1000000000u64,
                                   "free_bytes": 900000000u64, "read_mb_s": 500.0,
                                   "write_mb_s": 500.0}]}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        (
            r.body["worker_id"].as_str().expect("id").to_owned(),
            r.body["credential"].as_str().expect("credential").to_owned(),
        )
    }

    async fn heartbeat(&self, cred: &str) -> Value {
        let r = self
            .call(
                Method::POST,
                "/api/v1/worker/heartbeat",
                Some(cred),
                Some(json!({})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body
    }

    async fn lease(&self, cred: &str, kinds: Value) -> Value {
        let r = self
            .call(
                Method::POST,
                "/api/v1/worker/lease",
                Some(cred),
                Some(json!({"kinds": kinds, "max_jobs": 8})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body
    }

    async fn reconcile(&self) {
        reconcile_cached(
            &self.store,
            &mut FileCache::new(),
            Some(&self.state.liveness()),
            &Metrics::new(),
            &ReconcileConfig::default(),
            &ReconcileInputs::default(),
            api::now_ms(),
        )
        .await
        .expect("reconcile");
    }

    /// Queued or leased jobs of `worker` (assigned to it or leased by it).
    async fn live_jobs_of(&self, worker: &str) -> Vec<orchestrator::store::Job> {
        let w = Uuid::parse_str(worker).expect("uuid");
        self.store
            .list_jobs(&JobFilter {
                limit: 10_000,
                ..JobFilter::default()
            })
            .await
            .expect("jobs")
            .into_iter()
            .filter(|j| matches!(j.state, JobState::Queued | JobState::Leased))
            .filter(|j| j.assigned_worker_id == Some(w) || j.worker_id == Some(w))
            .collect()
    }

    async fn history(&self) -> String {
        let r = self
            .call(
                Method::GET,
                "/api/v1/events/history?limit=1000",
                Some(ADMIN),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.text
    }
}

fn assert_error(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["error"]["code"], code, "{}", r.text);
}

/// Queues a job of `identity` pinned to `worker`.
async fn enqueue(
    e: &Env,
    identity: &str,
    worker: &str,
    kind: JobKind,
    work: Work,
    challenge: Option<&str>,
) -> Uuid {
    let spec = JobSpec {
        device: Device::Cpu,
        work,
        target: None,
        challenge: challenge.map(str::to_owned),
    };
    let mut job = NewJob::new(
        kind,
        Uuid::parse_str(identity).expect("uuid"),
        serde_json::to_value(spec).expect("spec"),
    );
    job.assigned_worker_id = Some(Uuid::parse_str(worker).expect("uuid"));
    e.store
        .enqueue_job(&job, api::now_ms())
        .await
        .expect("enqueue")
        .id
}

/// Marks the identity's data complete.
async fn make_ready(e: &Env, identity: &str) {
    e.store
        .update_identity_state(
            Uuid::parse_str(identity).expect("uuid"),
            orchestrator::store::IdentityState::Ready,
            None,
            api::now_ms(),
        )
        .await
        .expect("ready");
}

#[tokio::test]
async fn pause_and_resume_are_operator_routes_and_durable() {
    let e = env().await;
    let (w, cred) = e.enroll("rig").await;
    let viewer = e.token("viewer").await;
    let operator = e.token("operator").await;
    let pause = format!("/api/v1/workers/{w}/pause");
    let resume = format!("/api/v1/workers/{w}/resume");

    // Who may: nobody without a token, not a viewer, not a worker; an unknown worker is 404.
    for route in [&pause, &resume] {
        assert_error(
            &e.call(Method::POST, route, None, None).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        let r = e.call(Method::POST, route, Some(&viewer), None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let r = e.call(Method::POST, route, Some(&cred), None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
    let unknown = Uuid::new_v4();
    for verb in ["pause", "resume"] {
        let r = e
            .call(
                Method::POST,
                &format!("/api/v1/workers/{unknown}/{verb}"),
                Some(&operator),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    }
    assert_eq!(e.heartbeat(&cred).await["paused"], false);

    // A job it holds before the pause stays its own; a queued one is not handed out meanwhile.
    let identity = e.create_identity("held").await;
    let id = identity["id"].as_str().expect("id").to_owned();
    let verify = Work::Verify {
        file_index: 0,
        range: protocol::LabelRange { start: 0, end: 2048 },
    };
    let held = enqueue(&e, &id, &w, JobKind::Verify, verify.clone(), None).await;
    let lease = e.lease(&cred, json!(["verify"])).await;
    assert_eq!(lease["jobs"][0]["job_id"], held.to_string(), "{lease}");
    let token = lease["jobs"][0]["fencing_token"].clone();

    let r = e.call(Method::POST, &pause, Some(&operator), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["paused"], true, "{}", r.text);
    assert_eq!(r.body["state"], "online", "{}", r.text);
    let r = e
        .call(Method::GET, &format!("/api/v1/workers/{w}"), Some(&viewer), None)
        .await;
    assert_eq!(r.body["paused"], true, "{}", r.text);
    assert_eq!(r.body["leased_jobs"][0]["id"], held.to_string(), "{}", r.text);
    assert_eq!(e.heartbeat(&cred).await["paused"], true);
    let stored = e
        .store
        .get_worker(Uuid::parse_str(&w).expect("uuid"))
        .await
        .expect("worker");
    assert!(stored.paused, "the pause is in the store");
    // Pausing again changes nothing.
    let r = e.call(Method::POST, &pause, Some(&operator), None).await;
    assert_eq!(
        (r.status, r.body["paused"].clone()),
        (StatusCode::OK, json!(true))
    );

    let queued = enqueue(&e, &id, &w, JobKind::Verify, verify.clone(), None).await;
    assert_eq!(e.lease(&cred, json!([])).await["jobs"], json!([]));
    assert_eq!(
        e.store.get_job(queued).await.expect("job").state,
        JobState::Queued
    );
    // The held job still reports and completes under its lease.
    let r = e
        .call(
            Method::POST,
            &format!("/api/v1/worker/jobs/{held}/complete"),
            Some(&cred),
            Some(json!({"fencing_token": token, "result": {"checked": 16, "bad_ranges": []}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["state"], "done", "{}", r.text);

    // A fresh process (new state, same database) still answers paused.
    let state2 = AppState::new(
        e.store.clone(),
        Arc::new(Keystore::open(e.dir.path().join("keystore"), PASSPHRASE).expect("keystore")),
        Arc::new(Metrics::new()),
        ADMIN,
        ApiConfig::default(),
    );
    let r = api::router(state2)
        .oneshot(
            Request::builder()
                .method(Method::POST)
                .uri("/api/v1/worker/heartbeat")
                .header(header::AUTHORIZATION, format!("Bearer {cred}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .expect("request"),
        )
        .await
        .expect("infallible");
    let bytes = r.into_body().collect().await.expect("body").to_bytes();
    let hb: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(hb["paused"], true, "{hb}");

    let r = e.call(Method::POST, &resume, Some(&operator), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["paused"], false, "{}", r.text);
    assert_eq!(e.heartbeat(&cred).await["paused"], false);
    let lease = e.lease(&cred, json!([])).await;
    assert_eq!(lease["jobs"][0]["job_id"], queued.to_string(), "{lease}");
    let history = e.history().await;
    assert!(history.contains("worker.paused"), "{history}");

    // A removed worker cannot be paused.
    let r = e
        .call(
            Method::DELETE,
            &format!("/api/v1/workers/{w}"),
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = e.call(Method::POST, &pause, Some(&operator), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
}

#[tokio::test]
async fn the_planner_gives_a_paused_worker_no_new_work() {
    let e = env().await;
    let (w, cred) = e.enroll("rig").await;
    e.heartbeat(&cred).await;
    let operator = e.token("operator").await;
    let r = e
        .call(
            Method::POST,
            &format!("/api/v1/workers/{w}/pause"),
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    e.create_identity("waiting").await;
    e.reconcile().await;
    e.reconcile().await;
    assert!(
        e.live_jobs_of(&w).await.is_empty(),
        "a paused worker gets no new jobs"
    );

    // Resumed, the same plan gives it the identity's init.
    let r = e
        .call(
            Method::POST,
            &format!("/api/v1/workers/{w}/resume"),
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    e.reconcile().await;
    e.reconcile().await;
    let jobs = e.live_jobs_of(&w).await;
    assert!(
        jobs.iter().any(|j| j.kind == JobKind::Init),
        "init jobs once resumed: {jobs:?}"
    );

    // Paused again: its queued jobs go (to nobody else here), what it leased stays.
    let leased = e.lease(&cred, json!(["init"])).await;
    let mut leased_ids: Vec<String> = leased["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["job_id"].as_str().expect("id").to_owned())
        .collect();
    assert!(!leased_ids.is_empty(), "{leased}");
    leased_ids.sort();
    let r = e
        .call(
            Method::POST,
            &format!("/api/v1/workers/{w}/pause"),
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    e.reconcile().await;
    let jobs = e.live_jobs_of(&w).await;
    assert!(jobs.iter().all(|j| j.state == JobState::Leased), "{jobs:?}");
    let mut left: Vec<String> = jobs.iter().map(|j| j.id.to_string()).collect();
    left.sort();
    assert_eq!(left, leased_ids, "only the leased jobs are left");
}

fn device_of(j: &orchestrator::store::Job) -> Device {
    serde_json::from_value::<JobSpec>(j.payload.clone())
        .expect("spec")
        .device
}

#[tokio::test]
async fn devices_turned_off_from_the_coordinator_get_no_work() {
    let e = env().await;
    let (w, cred) = e.enroll("rig").await;
    e.heartbeat(&cred).await;
    let viewer = e.token("viewer").await;
    let operator = e.token("operator").await;
    let route = format!("/api/v1/workers/{w}/devices");

    // Who may, and what is refused (changing nothing).
    let body = json!({"cpu_init": false, "disabled_gpus": [0]});
    assert_error(
        &e.call(Method::PUT, &route, None, Some(body.clone())).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let r = e
        .call(Method::PUT, &route, Some(&viewer), Some(body.clone()))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = e
        .call(
            Method::PUT,
            &format!("/api/v1/workers/{}/devices", Uuid::new_v4()),
            Some(&operator),
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = e
        .call(
            Method::PUT,
            &route,
            Some(&operator),
            Some(json!({"disabled_gpus": [0, 4096]})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(r.text.contains("disabled_gpus[1]"), "{}", r.text);
    let r = e
        .call(Method::PUT, &route, Some(&operator), Some(json!({"gpu": 1})))
        .await;
    assert!(r.status.is_client_error(), "{}", r.text);
    let stored = e
        .store
        .get_worker(Uuid::parse_str(&w).expect("uuid"))
        .await
        .expect("worker");
    assert!(stored.device_settings.is_default());

    // GPU 0 and the CPU off: the init goes to GPU 1 only.
    let r = e
        .call(
            Method::PUT,
            &route,
            Some(&operator),
            Some(json!({"cpu_init": false, "disabled_gpus": [0, 0]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["devices"],
        json!({"cpu_init": false, "disabled_gpus": [0]})
    );
    let r = e
        .call(Method::GET, &format!("/api/v1/workers/{w}"), Some(&viewer), None)
        .await;
    assert_eq!(
        r.body["devices"],
        json!({"cpu_init": false, "disabled_gpus": [0]}),
        "{}",
        r.text
    );
    e.create_identity("striped").await;
    e.reconcile().await;
    e.reconcile().await;
    let jobs = e.live_jobs_of(&w).await;
    let inits: Vec<Device> = jobs
        .iter()
        .filter(|j| j.kind == JobKind::Init)
        .map(device_of)
        .collect();
    assert!(!inits.is_empty(), "{jobs:?}");
    assert!(
        inits.iter().all(|d| *d == Device::Gpu { index: 1 }),
        "only GPU 1 works: {inits:?}"
    );

    // Every label device off: the queued init jobs are cancelled and none is planned.
    let r = e
        .call(
            Method::PUT,
            &route,
            Some(&operator),
            Some(json!({"cpu_init": false, "disabled_gpus": [1, 0]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    e.reconcile().await;
    e.reconcile().await;
    let jobs = e.live_jobs_of(&w).await;
    assert!(
        !jobs.iter().any(|j| j.kind == JobKind::Init),
        "no init without a device: {jobs:?}"
    );

    // Back on (the default form is stored as no setting at all).
    let r = e
        .call(Method::PUT, &route, Some(&operator), Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["devices"], json!({"cpu_init": true, "disabled_gpus": []}));
    e.reconcile().await;
    e.reconcile().await;
    let jobs = e.live_jobs_of(&w).await;
    assert!(jobs.iter().any(|j| j.kind == JobKind::Init), "{jobs:?}");
    assert!(e.history().await.contains("worker.devices"));
}

#[tokio::test]
async fn a_proving_request_past_its_deadline_fails_with_its_reason() {
    let e = env().await;
    let identity = e.create_identity("late").await;
    let id = identity["id"].as_str().expect("id").to_owned();
    make_ready(&e, &id).await;
    let challenge = "9e".repeat(32);
    let deadline = api::now_ms() + 300;
    let r = e
        .call(
            Method::POST,
            &format!("/api/v1/identities/{id}/challenge"),
            Some(ADMIN),
            Some(json!({"challenge": challenge, "publish_epoch": 4, "deadline_ms": deadline})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let later = e
        .call(
            Method::POST,
            &format!("/api/v1/identities/{id}/challenge"),
            Some(ADMIN),
            Some(json!({"challenge": "9f".repeat(32), "publish_epoch": 5})),
        )
        .await;
    assert_eq!(later.status, StatusCode::CREATED, "{}", later.text);
    let reconciler = Reconciler {
        store: e.store.clone(),
        metrics: Arc::new(Metrics::new()),
        cfg: ReconcileConfig::default(),
        inputs: Arc::default(),
        latest: e.state.plan_handle(),
        wake: e.state.wake_handle(),
        files: Arc::default(),
        liveness: Some(e.state.liveness()),
    };
    let list = format!("/api/v1/identities/{id}/proving-requests");

    // Before the deadline a round leaves it pending.
    reconciler.tick(api::now_ms()).await.expect("round");
    let r = e.call(Method::GET, &list, Some(ADMIN), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body[1]["publish_epoch"], 4, "{}", r.text);
    assert_eq!(r.body[1]["state"], "pending", "{}", r.text);
    assert!(!e.history().await.contains("proving.failed"));

    tokio::time::sleep(Duration::from_millis(400)).await;
    reconciler.tick(api::now_ms()).await.expect("round");
    let r = e.call(Method::GET, &list, Some(ADMIN), None).await;
    assert_eq!(r.body[1]["state"], "failed", "{}", r.text);
    let reason = r.body[1]["failure"].as_str().expect("a reason");
    assert!(reason.contains("deadline"), "{reason}");
    // The request of a later epoch, not due yet, is still pending.
    assert_eq!(r.body[0]["publish_epoch"], 5, "{}", r.text);
    assert_eq!(r.body[0]["state"], "pending", "{}", r.text);
    assert_eq!(r.body[0]["failure"], Value::Null, "{}", r.text);
    let history = e.history().await;
    assert!(history.contains("proving.failed"), "{history}");
    assert!(history.contains(&challenge), "{history}");
    // Exactly once: a later round changes nothing.
    reconciler.tick(api::now_ms()).await.expect("round");
    assert_eq!(e.history().await.matches("proving.failed").count(), 1);

    // A proof of it arriving now is not stored.
    let stored = orchestrator::store::StoredProof {
        identity_id: Uuid::parse_str(&id).expect("uuid"),
        publish_epoch: 4,
        challenge: [0x9e; 32],
        proof: json!({"nonce": 0, "indices": "", "pow": 0}),
        nonce: 0,
        job_id: Uuid::new_v4(),
        verified_at: api::now_ms(),
    };
    let err = e.store.record_proof(&stored).await.expect_err("refused");
    assert!(err.is_conflict(), "{err}");
    let r = e
        .call(
            Method::GET,
            &format!("/api/v1/identities/{id}/proofs"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.body, json!([]));

    // Unknown identity: 404; no token: 401.
    let r = e
        .call(
            Method::GET,
            &format!("/api/v1/identities/{}/proving-requests", Uuid::new_v4()),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = e.call(Method::GET, &list, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

/// `smeshfleet post init` then `post prove` of the identity into `dir`; returns the proof JSON.
fn real_proof(dir: &Path, node_id: &str, challenge: &str) -> Value {
    let out = Command::new(BIN)
        .args(["post", "init", "--datadir"])
        .arg(dir)
        .args(["--node-id", node_id, "--commitment-atx-id", &"5a".repeat(32)])
        .args(["--num-units", "2", "--labels-per-unit", "2048"])
        .args(["--max-file-size", &(16 * 2048).to_string(), "--scrypt-n", "16"])
        .output()
        .expect("post init");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = dir.join("proof.json");
    let out = Command::new(BIN)
        .args(["post", "prove", "--datadir"])
        .arg(dir)
        .args(["--challenge", challenge])
        .args(["--k1", &PROOF.k1.to_string(), "--k2", &PROOF.k2.to_string()])
        .args(["--pow-difficulty", &hex::encode(PROOF.pow_difficulty)])
        .args(["--randomx", "light", "--threads", "1", "--out"])
        .arg(&file)
        .output()
        .expect("post prove");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(&file).expect("proof file")).expect("proof json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_that_does_not_verify_is_rejected_and_nothing_is_stored() {
    let e = env().await;
    let identity = e.create_identity("prover").await;
    let id = identity["id"].as_str().expect("id").to_owned();
    let node_id = identity["node_id"].as_str().expect("node id").to_owned();
    make_ready(&e, &id).await;
    let challenge = "c3".repeat(32);
    let r = e
        .call(
            Method::POST,
            &format!("/api/v1/identities/{id}/challenge"),
            Some(ADMIN),
            Some(json!({"challenge": challenge, "publish_epoch": 9})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let (w, cred) = e.enroll("rig").await;
    e.heartbeat(&cred).await;

    let data = e.dir.path().join("data");
    let good = real_proof(&data, &node_id, &challenge);
    let nonce = u32::try_from(good["nonce"].as_u64().expect("nonce")).expect("u32");
    let pow = good["pow"].as_u64().expect("pow");
    // The pass covers the proof's nonce; its group's pow is the proof's.
    let groups = nonce / 16 + 1;
    let pows: Vec<Value> = (0..groups)
        .map(|g| json!({"group": g, "pow": if g == nonce / 16 { pow } else { 1 }}))
        .collect();
    let k2 = enqueue(
        &e,
        &id,
        &w,
        JobKind::K2pow,
        Work::K2pow {
            groups: protocol::GroupRange {
                start: 0,
                end: groups,
            },
        },
        Some(&challenge),
    )
    .await;
    let lease = e.lease(&cred, json!(["k2pow"])).await;
    assert_eq!(lease["jobs"][0]["job_id"], k2.to_string(), "{lease}");
    let r = e
        .call(
            Method::POST,
            &format!("/api/v1/worker/jobs/{k2}/complete"),
            Some(&cred),
            Some(json!({"fencing_token": lease["jobs"][0]["fencing_token"], "result": {"pows": pows}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let meta = json!({"node_id": node_id, "commitment_atx_id": "5a".repeat(32), "challenge": challenge,
        "num_units": 2, "labels_per_unit": 2048});
    let prove_with = |proof: Value| {
        let (e, id, w, cred, challenge, meta) = (&e, &id, &w, &cred, &challenge, &meta);
        async move {
            let job = enqueue(
                e,
                id,
                w,
                JobKind::Prove,
                Work::Prove {
                    first_nonce: 0,
                    nonces: groups * 16,
                    disks: vec![],
                },
                Some(challenge),
            )
            .await;
            let lease = e.lease(cred, json!(["prove"])).await;
            assert_eq!(lease["jobs"][0]["job_id"], job.to_string(), "{lease}");
            let r = e
                .call(
                    Method::POST,
                    &format!("/api/v1/worker/jobs/{job}/complete"),
                    Some(cred),
                    Some(json!({"fencing_token": lease["jobs"][0]["fencing_token"],
                        "result": {"found": true, "proof": proof, "metadata": meta, "first_nonce": 0,
                                   "nonces": groups * 16, "labels_read": 4096}})),
                )
                .await;
            (job, r)
        }
    };

    // Indices changed (the low bit of every byte): well formed, but their labels are not below
    // the threshold.
    let mut indices = base64::engine::general_purpose::STANDARD
        .decode(good["indices"].as_str().expect("indices"))
        .expect("base64");
    for b in &mut indices {
        *b ^= 0x01;
    }
    let mut bad = good.clone();
    bad["indices"] = json!(base64::engine::general_purpose::STANDARD.encode(&indices));
    let (job, r) = prove_with(bad).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["state"], "failed", "{}", r.text);
    assert!(
        r.body["error"]
            .as_str()
            .expect("error")
            .contains("proof rejected"),
        "{}",
        r.text
    );
    assert_eq!(e.store.get_job(job).await.expect("job").state, JobState::Failed);
    let proofs = format!("/api/v1/identities/{id}/proofs");
    assert_eq!(
        e.call(Method::GET, &proofs, Some(ADMIN), None).await.body,
        json!([])
    );
    let requests = format!("/api/v1/identities/{id}/proving-requests");
    let r = e.call(Method::GET, &requests, Some(ADMIN), None).await;
    assert_eq!(r.body[0]["state"], "pending", "{}", r.text);
    let history = e.history().await;
    assert!(history.contains("proof.rejected"), "{history}");
    assert!(!history.contains("proof.verified"), "{history}");

    // Another pow for the same nonce group: the ciphers change, the proof no longer holds.
    let mut bad = good.clone();
    bad["pow"] = json!(pow + 1);
    let (_, r) = prove_with(bad).await;
    assert_eq!(r.body["state"], "failed", "{}", r.text);
    assert_eq!(
        e.call(Method::GET, &proofs, Some(ADMIN), None).await.body,
        json!([])
    );

    // The real proof is accepted and stored with its identity and epoch.
    let (job, r) = prove_with(good.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["state"], "done", "{}", r.text);
    let r = e.call(Method::GET, &proofs, Some(ADMIN), None).await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1), "{}", r.text);
    assert_eq!(r.body[0]["identity_id"], id.as_str());
    assert_eq!(r.body[0]["publish_epoch"], 9);
    assert_eq!(r.body[0]["job_id"], job.to_string());
    assert_eq!(r.body[0]["proof"], good);
    let r = e.call(Method::GET, &requests, Some(ADMIN), None).await;
    assert_eq!(r.body[0]["state"], "proved", "{}", r.text);
}

#[test]
fn the_planned_k2pow_cost_follows_the_pow_difficulty() {
    use orchestrator::api::proving::k2pow_hashes_per_unit_group;
    let mainnet = k2pow_hashes_per_unit_group(&post::proof::ProofConfig::MAINNET);
    // post.md §6.4: about 4687.5 hashes per unit and nonce group on mainnet.
    assert!((mainnet / 4687.5 - 1.0).abs() < 0.01, "{mainnet}");
    assert!((k2pow_hashes_per_unit_group(&PROOF) - 1.0).abs() < 1e-9);
    let mut half = PROOF;
    half.pow_difficulty[0] = 0x7f;
    let h = k2pow_hashes_per_unit_group(&half);
    assert!((h - 2.0).abs() < 0.01, "{h}");
}
