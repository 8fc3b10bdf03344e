//! Router tests without a socket (`oneshot`): authentication and roles, the error contract, the
//! identity, worker and job routes, the worker protocol with fencing, SSE, metrics and the
//! checked-in OpenAPI document. A real SQLite store and a real keystore sit behind the router.

#[path = "support/router.rs"]
mod router;
use router::Resp;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

use orchestrator::api::{self, ApiConfig, AppState};
use orchestrator::keystore::{KdfParams, Keystore};
use orchestrator::metrics::Metrics;
use orchestrator::reconcile::{reconcile_cached, FileCache, ReconcileConfig, ReconcileInputs};
use orchestrator::store::{JobKind, NewJob, Store, WorkerState};
use protocol::{Device, JobKind as Work, JobSpec, LabelRange, Placement};

const ADMIN: &str = "admin-token-for-tests-0123456789";
const PASSPHRASE: &str = "correct horse battery staple";

struct Env {
    app: Router,
    state: AppState,
    store: Store,
    _dir: tempfile::TempDir,
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
        _dir: dir,
    }
}

impl Env {
    async fn raw(&self, req: Request<Body>) -> Resp {
        router::send(&self.app, req).await
    }

    async fn call(&self, method: Method, uri: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        router::call(&self.app, method, uri, token, body).await
    }

    async fn send_text(&self, method: Method, uri: &str, token: &str, text: String) -> Resp {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(text))
            .expect("request");
        self.raw(req).await
    }

    async fn token(&self, role: &str) -> String {
        router::token(&self.app, ADMIN, role).await
    }

    async fn create_identity(&self, name: &str) -> Value {
        let r = self
            .call(
                Method::POST,
                "/api/v1/identities",
                Some(ADMIN),
                Some(json!({"name": name, "num_units": 2, "labels_per_unit": 4096,
                    "max_file_size": 16 * 4096, "scrypt_n": 8192})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body
    }

    /// Enrolls a worker; returns (worker id, credential).
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
                    "capabilities": {"hostname": name, "cpu": {"threads": 8},
                        "gpus": [{"index": 0, "model": "H100", "labels_per_s": 1000000.0}],
                        "disks": [{"id": "d0", "mount": "/data", "capacity_bytes": 1000000000u64,
                                   "free_bytes": 900000000u64}]}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        (
            r.body["worker_id"].as_str().expect("id").to_owned(),
            r.body["credential"].as_str().expect("credential").to_owned(),
        )
    }
}

fn assert_error(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["error"]["code"], code, "{}", r.text);
    assert!(r.body["error"]["message"].is_string(), "{}", r.text);
}

#[tokio::test]
async fn open_routes_answer_without_a_token_and_reveal_no_secret() {
    let e = env().await;
    let r = e.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ok");
    let r = e.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text, api::openapi::openapi_json());
    e.create_identity("m1").await;
    let r = e.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text.contains("smeshfleet_api_request_duration_seconds"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains(r#"smeshfleet_api_request_duration_seconds_count{method="POST",route="/api/v1/identities",status="201"} 1"#),
        "{}",
        r.text
    );
    assert!(!r.text.contains(ADMIN));
    for name in orchestrator::metrics::METRIC_NAMES {
        assert!(r.text.contains(name), "{name} missing from /metrics");
    }
}

#[test]
fn checked_in_openapi_document_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let generated = api::openapi::openapi_json();
    if std::env::var_os("SMESHFLEET_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write openapi.json");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "orchestrator/openapi.json is stale: run `cargo run -p orchestrator -- openapi > orchestrator/openapi.json` \
         (or SMESHFLEET_UPDATE_OPENAPI=1 cargo test -p orchestrator --test api)"
    );
    let doc: Value = serde_json::from_str(&generated).expect("json");
    for p in [
        "/api/v1/identities",
        "/api/v1/identities/{id}/export",
        "/api/v1/workers/join-tokens",
        "/api/v1/worker/lease",
        "/api/v1/events",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
}

#[tokio::test]
async fn tokens_and_roles() {
    let e = env().await;
    let viewer = e.token("viewer").await;
    let operator = e.token("operator").await;
    let protected = [
        (Method::GET, "/api/v1/identities"),
        (Method::GET, "/api/v1/workers"),
        (Method::GET, "/api/v1/jobs"),
        (Method::GET, "/api/v1/plan"),
        (Method::GET, "/api/v1/events/history"),
        (Method::POST, "/api/v1/workers/join-tokens"),
        (Method::POST, "/api/v1/worker/heartbeat"),
    ];
    for (m, uri) in &protected {
        let r = e.call(m.clone(), uri, None, Some(json!({}))).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
        let r = e
            .call(m.clone(), uri, Some("not-a-real-token"), Some(json!({})))
            .await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // Too low a role: 403, and nothing is created.
    let r = e
        .call(
            Method::POST,
            "/api/v1/identities",
            Some(&viewer),
            Some(json!({"name": "x", "num_units": 1})),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = e
        .call(
            Method::POST,
            "/api/v1/identities",
            Some(&operator),
            Some(json!({"name": "x", "num_units": 1})),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = e
        .call(
            Method::POST,
            "/api/v1/workers/join-tokens",
            Some(&operator),
            Some(json!({})),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = e
        .call(Method::GET, "/api/v1/identities", Some(&viewer), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!([]));
    // A user token on a worker route, a worker credential on a user route.
    let r = e
        .call(
            Method::POST,
            "/api/v1/worker/heartbeat",
            Some(&viewer),
            Some(json!({})),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let (_, cred) = e.enroll("rig-a").await;
    let r = e.call(Method::GET, "/api/v1/identities", Some(&cred), None).await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    // Revocation takes effect at once.
    let list = e.call(Method::GET, "/api/v1/tokens", Some(ADMIN), None).await;
    let id = list
        .body
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["role"] == "viewer")
        .expect("viewer")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = e
        .call(Method::DELETE, &format!("/api/v1/tokens/{id}"), Some(ADMIN), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = e
        .call(Method::GET, "/api/v1/identities", Some(&viewer), None)
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(
        !list.text.contains(&operator),
        "token listing must not show tokens"
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let e = env().await;
    let uri = "/api/v1/identities";
    let r = e
        .send_text(Method::POST, uri, ADMIN, "{\"name\": \"a\", ".into())
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json");
    let r = e
        .call(
            Method::POST,
            uri,
            Some(ADMIN),
            Some(json!({"name": "a", "num_units": 1, "colour": "red"})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("colour"),
        "{}",
        r.text
    );
    let r = e
        .call(Method::POST, uri, Some(ADMIN), Some(json!({"name": "a"})))
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    assert!(r.text.contains("num_units"), "{}", r.text);
    let r = e
        .call(
            Method::POST,
            uri,
            Some(ADMIN),
            Some(json!({"name": "a", "num_units": 0})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(r.text.contains("num_units"), "{}", r.text);
    let r = e
        .call(
            Method::POST,
            uri,
            Some(ADMIN),
            Some(json!({"name": "a", "num_units": 1, "max_file_size": 17})),
        )
        .await;
    assert!(r.text.contains("max_file_size"), "{}", r.text);
    let r = e
        .call(
            Method::POST,
            uri,
            Some(ADMIN),
            Some(json!({"name": "a b/c", "num_units": 1})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    let huge = format!("{{\"name\": \"{}\", \"num_units\": 1}}", "a".repeat(200_000));
    let r = e.send_text(Method::POST, uri, ADMIN, huge).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    let r = e
        .call(Method::GET, "/api/v1/identities/not-a-uuid", Some(ADMIN), None)
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_path");
    let r = e
        .call(Method::GET, "/api/v1/jobs?kind=bogus", Some(ADMIN), None)
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(r.text.contains("kind"), "{}", r.text);
    let r = e
        .call(Method::GET, "/api/v1/jobs?limit=abc", Some(ADMIN), None)
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_query");
    let r = e
        .call(Method::GET, "/api/v1/nothing-here", Some(ADMIN), None)
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "route_not_found");
    // Nothing was created by any of it, and no key was left behind.
    assert!(e.store.list_identities().await.expect("list").is_empty());
    let r = e
        .call(Method::GET, "/api/v1/events/history", Some(ADMIN), None)
        .await;
    assert_eq!(r.body, json!([]), "no event for refused requests");
}

#[tokio::test]
async fn identity_create_get_export_delete() {
    let e = env().await;
    let created = e.create_identity("alpha").await;
    let id = created["id"].as_str().expect("id").to_owned();
    let node_id = created["node_id"].as_str().expect("node id").to_owned();
    assert_eq!(node_id.len(), 64);
    assert!(node_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(created["state"], "created");
    assert_eq!(created["labels_total"], 8192);

    // Defaults are mainnet's.
    let r = e
        .call(
            Method::POST,
            "/api/v1/identities",
            Some(ADMIN),
            Some(json!({"name": "beta", "num_units": 4})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["labels_per_unit"], 1u64 << 32);
    assert_eq!(r.body["scrypt_n"], 8192);

    let dup = e
        .call(
            Method::POST,
            "/api/v1/identities",
            Some(ADMIN),
            Some(json!({"name": "alpha", "num_units": 1})),
        )
        .await;
    assert_error(&dup, StatusCode::CONFLICT, "identity_exists");

    let list = e.call(Method::GET, "/api/v1/identities", Some(ADMIN), None).await;
    assert_eq!(list.body.as_array().expect("array").len(), 2);
    let got = e
        .call(
            Method::GET,
            &format!("/api/v1/identities/{id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["state"], "created");
    assert_eq!(got.body["node_id"], node_id.as_str());
    assert_eq!(got.body["labels_done"], 0);

    // Export: admin only, passphrase checked.
    let operator = e.token("operator").await;
    let uri = format!("/api/v1/identities/{id}/export");
    let r = e
        .call(
            Method::POST,
            &uri,
            Some(&operator),
            Some(json!({"passphrase": PASSPHRASE})),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = e
        .call(
            Method::POST,
            &uri,
            Some(ADMIN),
            Some(json!({"passphrase": "wrong one"})),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "wrong_passphrase");
    let r = e
        .call(
            Method::POST,
            &uri,
            Some(ADMIN),
            Some(json!({"passphrase": PASSPHRASE})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let key = r.body["key"].as_str().expect("key").to_owned();
    assert_eq!(key.len(), 128);
    assert_eq!(
        &key[64..],
        node_id,
        "a go-spacemesh key file is seed || public key"
    );
    let seed = &key[..64];

    // The secret half appears in no other response, event or the database.
    for uri in [
        "/api/v1/identities",
        &format!("/api/v1/identities/{id}"),
        "/api/v1/events/history",
    ] {
        let r = e.call(Method::GET, uri, Some(ADMIN), None).await;
        assert!(!r.text.contains(seed), "{uri} leaks the key");
    }
    let db = std::fs::read(e._dir.path().join("state.db")).expect("db");
    assert!(
        !String::from_utf8_lossy(&db).contains(seed),
        "the database holds the key"
    );

    // Import the exported key elsewhere: it is already here, so 409; into a fresh coordinator: same node id.
    let r = e
        .call(
            Method::POST,
            "/api/v1/identities/import",
            Some(ADMIN),
            Some(json!({"name": "again", "key": key, "num_units": 2})),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "identity_exists");
    let other = env().await;
    let r = other
        .call(
            Method::POST,
            "/api/v1/identities/import",
            Some(ADMIN),
            Some(json!({"name": "moved", "key": key, "num_units": 2})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body[0]["node_id"], node_id.as_str());
    let r = other
        .call(
            Method::POST,
            "/api/v1/identities/import",
            Some(ADMIN),
            Some(json!({"name": "bad", "key": "zz", "num_units": 2})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(r.text.contains("key"), "{}", r.text);

    // Delete needs the name as confirmation.
    let uri = format!("/api/v1/identities/{id}");
    let r = e.call(Method::DELETE, &uri, Some(ADMIN), None).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(r.text.contains("confirm"), "{}", r.text);
    let r = e
        .call(Method::DELETE, &format!("{uri}?confirm=beta"), Some(ADMIN), None)
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    let r = e
        .call(Method::DELETE, &format!("{uri}?confirm=alpha"), Some(ADMIN), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = e.call(Method::GET, &uri, Some(ADMIN), None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "identity_not_found");

    let h = e
        .call(Method::GET, "/api/v1/events/history", Some(ADMIN), None)
        .await;
    let kinds: Vec<&str> = h
        .body
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|v| v["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"identity.created"), "{kinds:?}");
    assert!(kinds.contains(&"identity.exported"), "{kinds:?}");
    assert!(kinds.contains(&"identity.deleted"), "{kinds:?}");
}

async fn enqueue_init(e: &Env, identity: &str, worker: &str) -> Uuid {
    let spec = JobSpec {
        device: Device::Gpu { index: 0 },
        work: Work::Init {
            file_index: 0,
            range: LabelRange { start: 0, end: 4096 },
        },
        target: Some(Placement {
            worker_id: worker.into(),
            disk_id: "d0".into(),
        }),
        challenge: None,
    };
    let mut job = NewJob::new(
        JobKind::Init,
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

#[tokio::test]
async fn worker_protocol_with_fencing() {
    let e = env().await;
    let identity = e.create_identity("gamma").await;
    let identity_id = identity["id"].as_str().expect("id").to_owned();
    let export = e
        .call(
            Method::POST,
            &format!("/api/v1/identities/{identity_id}/export"),
            Some(ADMIN),
            Some(json!({"passphrase": PASSPHRASE})),
        )
        .await;
    let seed = export.body["key"].as_str().expect("key")[..64].to_owned();

    // Join tokens are single-use.
    let t = e
        .call(Method::POST, "/api/v1/workers/join-tokens", Some(ADMIN), None)
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
    let join = json!({"join_token": t.body["token"], "name": "rig-1"});
    let r = e
        .call(Method::POST, "/api/v1/worker/enroll", None, Some(join.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let w1 = r.body["worker_id"].as_str().expect("id").to_owned();
    let c1 = r.body["credential"].as_str().expect("cred").to_owned();
    let r = e
        .call(Method::POST, "/api/v1/worker/enroll", None, Some(join))
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "join_token_rejected");
    let r = e
        .call(
            Method::POST,
            "/api/v1/worker/enroll",
            None,
            Some(json!({"join_token": "made-up", "name": "x"})),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "join_token_rejected");
    let (w2, c2) = e.enroll("rig-2").await;

    // Heartbeat with bad capabilities names the field and changes nothing.
    let r = e
        .call(
            Method::POST,
            "/api/v1/worker/heartbeat",
            Some(&c1),
            Some(json!({"capabilities":
            {"disks": [{"id": "d0", "mount": "/d", "capacity_bytes": 1, "free_bytes": 2}]}})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(r.text.contains("capabilities.disks[0].free_bytes"), "{}", r.text);

    let job_id = enqueue_init(&e, &identity_id, &w1).await;
    // The job is pinned to rig-1: rig-2 gets nothing.
    let r = e
        .call(
            Method::POST,
            "/api/v1/worker/lease",
            Some(&c2),
            Some(json!({"max_jobs": 4})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["jobs"], json!([]));
    let r = e
        .call(
            Method::POST,
            "/api/v1/worker/lease",
            Some(&c1),
            Some(json!({"kinds": ["init"], "max_jobs": 4})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let leased = &r.body["jobs"][0];
    assert_eq!(leased["job_id"], job_id.to_string());
    assert_eq!(leased["identity"]["node_id"], identity["node_id"]);
    assert_eq!(leased["spec"]["work"]["range"]["end"], 4096);
    assert!(!r.text.contains(&seed), "a lease must never carry the key");
    let token = leased["fencing_token"].as_i64().expect("token");

    let progress_uri = format!("/api/v1/worker/jobs/{job_id}/progress");
    let r = e
        .call(
            Method::POST,
            &progress_uri,
            Some(&c1),
            Some(json!({"fencing_token": token, "done": 1024,
            "rate_per_s": 100.0, "ranges": [{"file_index": 0, "start_label": 0, "end_label": 1024}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["ranges_recorded"], 1);
    assert_eq!(r.body["end_label"], 4096, "the answer names where the job ends");
    // The reconcile loop cuts the job short (a truncation): the next answer names the new end.
    e.store
        .rewrite_live_job_payload(job_id, 0, |payload| {
            let mut p = payload.clone();
            p["work"]["range"]["end"] = json!(3072);
            Some(p)
        })
        .await
        .expect("rewrite")
        .expect("live");
    // The same report again counts nothing twice.
    let r = e
        .call(
            Method::POST,
            &progress_uri,
            Some(&c1),
            Some(json!({"fencing_token": token, "done": 1024,
            "ranges": [{"file_index": 0, "start_label": 0, "end_label": 1024}]})),
        )
        .await;
    assert_eq!(r.body["ranges_recorded"], 0, "{}", r.text);
    assert_eq!(r.body["end_label"], 3072, "{}", r.text);

    // Stale token, other worker, range outside the file: refused, nothing changes.
    let complete_uri = format!("/api/v1/worker/jobs/{job_id}/complete");
    let r = e
        .call(
            Method::POST,
            &complete_uri,
            Some(&c1),
            Some(json!({"fencing_token": token - 1})),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "stale_lease");
    let r = e
        .call(
            Method::POST,
            &complete_uri,
            Some(&c2),
            Some(json!({"fencing_token": token,
            "ranges": [{"file_index": 0, "start_label": 1024, "end_label": 2048}]})),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "stale_lease");
    let r = e
        .call(
            Method::POST,
            &progress_uri,
            Some(&c1),
            Some(json!({"fencing_token": token,
            "ranges": [{"file_index": 0, "start_label": 4096, "end_label": 9000}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let job = e.store.get_job(job_id).await.expect("job");
    assert_eq!(job.state.as_str(), "leased");
    assert_eq!(job.worker_id.map(|w| w.to_string()), Some(w1.clone()));
    let done = e
        .store
        .labels_done(Uuid::parse_str(&identity_id).expect("uuid"))
        .await
        .expect("done");
    assert_eq!(done, 1024, "refused reports recorded nothing");

    // The heartbeat names jobs the worker must stop.
    let stranger = Uuid::new_v4();
    let r = e
        .call(
            Method::POST,
            "/api/v1/worker/heartbeat",
            Some(&c1),
            Some(json!({"jobs": [job_id, stranger]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["stop"], json!([stranger]));

    let r = e
        .call(
            Method::POST,
            &complete_uri,
            Some(&c1),
            Some(json!({"fencing_token": token,
            "ranges": [{"file_index": 0, "start_label": 1024, "end_label": 4096}], "result": {"ok": true}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["state"], "done");
    let done = e
        .store
        .labels_done(Uuid::parse_str(&identity_id).expect("uuid"))
        .await
        .expect("done");
    assert_eq!(done, 4096);
    // Completing twice is stale; cancelling a finished job is a conflict.
    let r = e
        .call(
            Method::POST,
            &complete_uri,
            Some(&c1),
            Some(json!({"fencing_token": token})),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "stale_lease");
    let r = e
        .call(
            Method::POST,
            &format!("/api/v1/jobs/{job_id}/cancel"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "invalid_transition");

    let r = e
        .call(
            Method::GET,
            "/api/v1/jobs?state=done&kind=init",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.body.as_array().expect("jobs").len(), 1, "{}", r.text);
    let m = e.call(Method::GET, "/metrics", None, None).await;
    assert!(
        m.text.contains("smeshfleet_init_labels_written_total 4096"),
        "{}",
        m.text
    );

    // Drain: the worker is told, and gets no new job.
    let r = e
        .call(
            Method::POST,
            &format!("/api/v1/workers/{w2}/drain"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.body["state"], "draining", "{}", r.text);
    let r = e
        .call(
            Method::POST,
            "/api/v1/worker/heartbeat",
            Some(&c2),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.body["drain"], true, "{}", r.text);
    // Removal: the credential stops working at once.
    let r = e
        .call(
            Method::DELETE,
            &format!("/api/v1/workers/{w2}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.body["state"], "removed", "{}", r.text);
    let r = e
        .call(
            Method::POST,
            "/api/v1/worker/heartbeat",
            Some(&c2),
            Some(json!({})),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    let r = e.call(Method::GET, "/api/v1/workers", Some(ADMIN), None).await;
    assert!(
        !r.text.contains(&c1) && !r.text.contains(&c2),
        "credentials never leave"
    );
}

/// A heartbeat without capabilities writes nothing at once: its time is held in memory (the API
/// shows it), written by the next flush, and written before the reconcile pass that looks for
/// silent workers. A worker the reconcile loop marked offline comes back with its next heartbeat.
#[tokio::test]
async fn heartbeats_are_batched_and_an_offline_worker_comes_back() {
    let e = env().await;
    let (w, c) = e.enroll("rig-live").await;
    let wid = Uuid::parse_str(&w).expect("uuid");
    let enrolled_at = e.store.get_worker(wid).await.expect("worker").last_heartbeat_at;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = e
        .call(
            Method::POST,
            "/api/v1/worker/heartbeat",
            Some(&c),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["state"], "online");
    let liveness = e.state.liveness();
    let beat = liveness.pending_since(wid).expect("held in memory");
    assert!(Some(beat) > enrolled_at);
    assert_eq!(
        e.store.get_worker(wid).await.expect("worker").last_heartbeat_at,
        enrolled_at,
        "not written yet"
    );
    let r = e
        .call(Method::GET, &format!("/api/v1/workers/{w}"), Some(ADMIN), None)
        .await;
    assert_eq!(r.body["last_heartbeat_at"], json!(beat), "{}", r.text);
    // New capabilities wait for the same batch.
    let r = e
        .call(
            Method::POST,
            "/api/v1/worker/heartbeat",
            Some(&c),
            Some(json!({"capabilities": {"hostname": "renamed-host"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let beat = liveness.pending_since(wid).expect("held in memory");
    assert_ne!(
        e.store.get_worker(wid).await.expect("worker").capabilities["hostname"],
        "renamed-host"
    );
    assert_eq!(liveness.flush(&e.store).await.expect("flush"), 1);
    assert_eq!(liveness.pending_since(wid), None);
    assert_eq!(
        e.store.get_worker(wid).await.expect("worker").capabilities["hostname"],
        "renamed-host"
    );
    assert_eq!(
        e.store.get_worker(wid).await.expect("worker").last_heartbeat_at,
        Some(beat)
    );

    // Silent for longer than the reconcile loop allows: marked offline.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cfg = ReconcileConfig {
        offline_after_ms: 10,
        ..ReconcileConfig::default()
    };
    let now = beat + 20;
    let (_, report) = reconcile_cached(
        &e.store,
        &mut FileCache::new(),
        Some(&liveness),
        &Metrics::new(),
        &cfg,
        &ReconcileInputs::default(),
        now,
    )
    .await
    .expect("reconcile");
    assert_eq!(report.workers_offline, 1);
    assert_eq!(
        e.store.get_worker(wid).await.expect("worker").state,
        WorkerState::Offline
    );
    // Its next heartbeat is written at once and brings it back.
    let r = e
        .call(
            Method::POST,
            "/api/v1/worker/heartbeat",
            Some(&c),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.body["state"], "online", "{}", r.text);
    assert_eq!(
        e.store.get_worker(wid).await.expect("worker").state,
        WorkerState::Online
    );
    assert_eq!(liveness.pending_since(wid), None, "written through, not held");

    // A heartbeat held in memory while the pass runs keeps the worker online.
    liveness.beat(wid, now + 1000);
    let (_, report) = reconcile_cached(
        &e.store,
        &mut FileCache::new(),
        Some(&liveness),
        &Metrics::new(),
        &cfg,
        &ReconcileInputs::default(),
        now + 1005,
    )
    .await
    .expect("reconcile");
    assert_eq!(report.workers_offline, 0);
    assert_eq!(
        e.store.get_worker(wid).await.expect("worker").state,
        WorkerState::Online
    );
}

#[tokio::test]
async fn event_stream_replays_and_follows() {
    let e = env().await;
    e.create_identity("one").await;
    let req = Request::builder()
        .uri("/api/v1/events?after=0")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .expect("request");
    let resp = e.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()[header::CONTENT_TYPE]
        .to_str()
        .expect("ct")
        .starts_with("text/event-stream"));
    let mut body = resp.into_body();
    let mut seen = String::new();
    // Replayed event, then one that happens while the stream is open.
    let second = e.state.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        second
            .store()
            .append_event("test.live", "s", &json!({"n": 2}), api::now_ms())
            .await
            .expect("append");
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(seen.contains("identity.created") && seen.contains("test.live")) {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("events arrive in time")
            .expect("stream open")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    writer.await.expect("writer");
    assert!(seen.contains("event: identity.created"), "{seen}");
    assert!(seen.contains("id: 1"), "{seen}");
}

#[tokio::test]
async fn plan_route_serves_the_latest_plan() {
    let e = env().await;
    let r = e.call(Method::GET, "/api/v1/plan", Some(ADMIN), None).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "no_plan_yet");
    let plan = orchestrator::scheduler::plan(&orchestrator::scheduler::Snapshot {
        now_ms: 1,
        workers: vec![],
        identities: vec![],
        jobs: vec![],
        config: Default::default(),
    });
    *e.state.plan_handle().write().await = Some(Arc::new(plan));
    let r = e.call(Method::GET, "/api/v1/plan", Some(ADMIN), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["now_ms"], 1);
}

/// Queues a k2pow or prove job of `identity` pinned to `worker`.
async fn enqueue_proof_job(
    e: &Env,
    identity: &str,
    worker: &str,
    kind: JobKind,
    work: Work,
    challenge: &str,
) -> Uuid {
    let spec = JobSpec {
        device: Device::Cpu,
        work,
        target: None,
        challenge: Some(challenge.to_owned()),
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

/// Makes the identity initialized, with a commitment ATX.
async fn make_ready(e: &Env, identity: &str) {
    let id = Uuid::parse_str(identity).expect("uuid");
    e.store
        .update_identity(
            id,
            &orchestrator::store::IdentityUpdate {
                commitment_atx_id: Some([7; 32]),
                ..Default::default()
            },
            api::now_ms(),
        )
        .await
        .expect("commitment");
    e.store
        .update_identity_state(id, orchestrator::store::IdentityState::Ready, None, api::now_ms())
        .await
        .expect("ready");
}

#[tokio::test]
async fn challenge_intake_refuses_bad_input() {
    let e = env().await;
    let identity = e.create_identity("prover").await;
    let id = identity["id"].as_str().expect("id").to_owned();
    let uri = format!("/api/v1/identities/{id}/challenge");
    let operator = e.token("operator").await;
    let viewer = e.token("viewer").await;
    let good = json!({"challenge": "ab".repeat(32), "publish_epoch": 3});

    let r = e
        .call(Method::POST, &uri, Some(&viewer), Some(good.clone()))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    // Not initialized yet.
    let r = e
        .call(Method::POST, &uri, Some(&operator), Some(good.clone()))
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "identity_not_ready");
    make_ready(&e, &id).await;
    for (body, field) in [
        (
            json!({"challenge": "zz".repeat(32), "publish_epoch": 3}),
            "challenge",
        ),
        (
            json!({"challenge": "ab".repeat(31), "publish_epoch": 3}),
            "challenge",
        ),
        (
            json!({"challenge": "ab".repeat(32), "publish_epoch": 3, "deadline_ms": 5}),
            "deadline_ms",
        ),
    ] {
        let r = e.call(Method::POST, &uri, Some(&operator), Some(body)).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
        assert!(r.text.contains(field), "{}", r.text);
    }
    let r = e
        .call(
            Method::POST,
            &uri,
            Some(&operator),
            Some(json!({"challenge": "ab".repeat(32)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = e
        .call(
            Method::POST,
            &uri,
            Some(&operator),
            Some(json!({"challenge": "ab".repeat(32), "publish_epoch": 3, "private_key": "00"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = e
        .call(
            Method::POST,
            &format!("/api/v1/identities/{}/challenge", Uuid::new_v4()),
            Some(&operator),
            Some(good.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(e
        .store
        .list_pending_proving_requests()
        .await
        .expect("pending")
        .is_empty());

    // Recorded once; the same again is 200; another challenge for the epoch is 409.
    let r = e
        .call(Method::POST, &uri, Some(&operator), Some(good.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["state"], "pending");
    assert_eq!(r.body["first_nonce"], 0);
    assert!(r.body["deadline"].as_i64().expect("deadline") > api::now_ms() + 11 * 3_600_000);
    let r = e.call(Method::POST, &uri, Some(&operator), Some(good)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = e
        .call(
            Method::POST,
            &uri,
            Some(&operator),
            Some(json!({"challenge": "cd".repeat(32), "publish_epoch": 3})),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "duplicate");
    let pending = e.store.list_pending_proving_requests().await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].challenge, [0xab; 32]);

    let r = e
        .call(
            Method::GET,
            &format!("/api/v1/identities/{id}/proofs"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::OK, json!([])),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn proof_results_are_checked_before_they_count() {
    let e = env().await;
    let identity = e.create_identity("prover").await;
    let id = identity["id"].as_str().expect("id").to_owned();
    let node_id = identity["node_id"].as_str().expect("node id").to_owned();
    make_ready(&e, &id).await;
    let operator = e.token("operator").await;
    let challenge = "ab".repeat(32);
    let r = e
        .call(
            Method::POST,
            &format!("/api/v1/identities/{id}/challenge"),
            Some(&operator),
            Some(json!({"challenge": challenge, "publish_epoch": 3})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let (w, cred) = e.enroll("rig").await;
    let hb = e
        .call(
            Method::POST,
            "/api/v1/worker/heartbeat",
            Some(&cred),
            Some(json!({})),
        )
        .await;
    assert_eq!(hb.status, StatusCode::OK, "{}", hb.text);

    // A prove job whose pass has no k2pow yet is not handed out.
    let prove = enqueue_proof_job(
        &e,
        &id,
        &w,
        JobKind::Prove,
        Work::Prove {
            first_nonce: 0,
            nonces: 32,
            disks: vec![],
        },
        &challenge,
    )
    .await;
    let lease = |kinds: Value| {
        e.call(
            Method::POST,
            "/api/v1/worker/lease",
            Some(&cred),
            Some(json!({"kinds": kinds})),
        )
    };
    let r = lease(json!(["prove"])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["jobs"], json!([]), "{}", r.text);
    let j = e.store.get_job(prove).await.expect("job");
    assert_eq!((j.state.as_str(), j.attempts), ("queued", 0));

    // k2pow: the lease carries the proof parameters; a result must cover the job's groups.
    let k2 = enqueue_proof_job(
        &e,
        &id,
        &w,
        JobKind::K2pow,
        Work::K2pow {
            groups: protocol::GroupRange { start: 0, end: 2 },
        },
        &challenge,
    )
    .await;
    let r = lease(json!(["k2pow"])).await;
    let job = &r.body["jobs"][0];
    assert_eq!(job["job_id"], k2.to_string(), "{}", r.text);
    assert_eq!(job["proof"]["k1"], 26);
    assert_eq!(job["proof"]["k2"], 37);
    assert_eq!(
        job["proof"]["pow_difficulty"],
        hex::encode(post::proof::MAINNET_POW_DIFFICULTY)
    );
    let token = job["fencing_token"].clone();
    let complete = format!("/api/v1/worker/jobs/{k2}/complete");
    for (result, field) in [
        (json!(null), "result"),
        (json!({"pows": [{"group": 0, "pow": 1}]}), "result.pows"),
        (
            json!({"pows": [{"group": 0, "pow": 1}, {"group": 5, "pow": 2}]}),
            "result.pows[1].group",
        ),
        (json!({"pows": "x"}), "result"),
    ] {
        let r = e
            .call(
                Method::POST,
                &complete,
                Some(&cred),
                Some(json!({"fencing_token": token, "result": result})),
            )
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
        assert!(r.text.contains(field), "{field}: {}", r.text);
        assert_eq!(e.store.get_job(k2).await.expect("job").state.as_str(), "leased");
    }
    let r = e
        .call(
            Method::POST,
            &complete,
            Some(&cred),
            Some(json!({"fencing_token": token,
                "result": {"pows": [{"group": 0, "pow": 11}, {"group": 1, "pow": 12}]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Now the prove job is leased (after its wait) with the pows of its pass.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = lease(json!(["prove"])).await;
    let job = &r.body["jobs"][0];
    assert_eq!(job["job_id"], prove.to_string(), "{}", r.text);
    assert_eq!(
        job["pows"],
        json!([{"group": 0, "pow": 11}, {"group": 1, "pow": 12}])
    );
    let token = job["fencing_token"].clone();
    let complete = format!("/api/v1/worker/jobs/{prove}/complete");
    let meta = json!({"node_id": node_id, "commitment_atx_id": "07".repeat(32), "challenge": challenge,
        "num_units": 2, "labels_per_unit": 4096});
    let result = |found: bool, proof: Value, meta: Value, first_nonce: u32| {
        json!({"found": found, "proof": proof, "metadata": meta, "first_nonce": first_nonce,
            "nonces": 32, "labels_read": 8192})
    };
    let mut wrong_node = meta.clone();
    wrong_node["node_id"] = json!("00".repeat(32));
    let mut wrong_challenge = meta.clone();
    wrong_challenge["challenge"] = json!("cd".repeat(32));
    for (body, field) in [
        (
            result(false, Value::Null, wrong_node, 0),
            "result.metadata.node_id",
        ),
        (
            result(false, Value::Null, wrong_challenge, 0),
            "result.metadata.challenge",
        ),
        (result(false, Value::Null, meta.clone(), 16), "result.first_nonce"),
        (result(true, Value::Null, meta.clone(), 0), "result.proof"),
        (
            result(
                true,
                json!({"nonce": 40, "indices": "AAAA", "pow": 11}),
                meta.clone(),
                0,
            ),
            "result.proof.nonce",
        ),
    ] {
        let r = e
            .call(
                Method::POST,
                &complete,
                Some(&cred),
                Some(json!({"fencing_token": token, "result": body})),
            )
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
        assert!(r.text.contains(field), "{field}: {}", r.text);
        assert_eq!(
            e.store.get_job(prove).await.expect("job").state.as_str(),
            "leased"
        );
    }
    // A proof the verifier rejects fails the job for good; the request stays pending.
    let r = e
        .call(
            Method::POST,
            &complete,
            Some(&cred),
            Some(json!({"fencing_token": token,
                "result": result(true, json!({"nonce": 3, "indices": "AAAA", "pow": 11}), meta.clone(), 0)})),
        )
        .await;
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
    let req = e
        .store
        .get_proving_request(Uuid::parse_str(&id).expect("uuid"), 3)
        .await
        .expect("request");
    assert_eq!(req.state.as_str(), "pending");
    let history = e
        .call(
            Method::GET,
            "/api/v1/events/history?limit=1000",
            Some(ADMIN),
            None,
        )
        .await;
    assert!(history.text.contains("proof.rejected"), "{}", history.text);
    assert!(!history.text.contains("proof.verified"), "{}", history.text);

    // A pass that found nothing moves the request to the next nonces.
    let prove2 = enqueue_proof_job(
        &e,
        &id,
        &w,
        JobKind::Prove,
        Work::Prove {
            first_nonce: 0,
            nonces: 32,
            disks: vec![],
        },
        &challenge,
    )
    .await;
    let r = lease(json!(["prove"])).await;
    assert_eq!(r.body["jobs"][0]["job_id"], prove2.to_string(), "{}", r.text);
    let token = r.body["jobs"][0]["fencing_token"].clone();
    let r = e
        .call(
            Method::POST,
            &format!("/api/v1/worker/jobs/{prove2}/complete"),
            Some(&cred),
            Some(json!({"fencing_token": token, "result": result(false, Value::Null, meta, 0)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let req = e
        .store
        .get_proving_request(Uuid::parse_str(&id).expect("uuid"), 3)
        .await
        .expect("request");
    assert_eq!((req.state.as_str(), req.first_nonce), ("pending", 32));
}

#[tokio::test]
async fn verify_route_queues_jobs_and_bad_ranges_are_checked() {
    let e = env().await;
    let identity = e.create_identity("checked").await;
    let id = identity["id"].as_str().expect("id").to_owned();
    let uuid = Uuid::parse_str(&id).expect("uuid");
    let uri = format!("/api/v1/identities/{id}/verify");
    let operator = e.token("operator").await;
    let viewer = e.token("viewer").await;
    let r = e.call(Method::POST, &uri, Some(&viewer), None).await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = e.call(Method::POST, &uri, Some(&operator), None).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "no_files");
    let (w, cred) = e.enroll("rig").await;
    let hb = e
        .call(
            Method::POST,
            "/api/v1/worker/heartbeat",
            Some(&cred),
            Some(json!({})),
        )
        .await;
    assert_eq!(hb.status, StatusCode::OK, "{}", hb.text);
    // Two labels per unit of 4096 labels, files of 4096 labels: two files; place the second.
    e.store
        .upsert_identity_file(
            uuid,
            &orchestrator::store::FilePlacement {
                file_index: 1,
                worker_id: Some(Uuid::parse_str(&w).expect("uuid")),
                disk_id: Some("d0".into()),
                path: None,
                state: orchestrator::store::FileState::Done,
            },
            api::now_ms(),
        )
        .await
        .expect("place");
    let r = e.call(Method::POST, &uri, Some(&operator), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["jobs"].as_array().expect("jobs").len(), 1, "{}", r.text);
    assert_eq!(r.body["skipped"], 0);
    let r = e.call(Method::POST, &uri, Some(&operator), None).await;
    assert_eq!(
        (r.body["jobs"].clone(), r.body["skipped"].clone()),
        (json!([]), json!(1)),
        "{}",
        r.text
    );

    let r = e
        .call(
            Method::POST,
            "/api/v1/worker/lease",
            Some(&cred),
            Some(json!({"kinds": ["verify"]})),
        )
        .await;
    let job = &r.body["jobs"][0];
    assert_eq!(
        job["spec"]["work"]["range"],
        json!({"start": 4096, "end": 8192}),
        "{}",
        r.text
    );
    assert_eq!(job["spec"]["target"]["disk_id"], "d0");
    assert_eq!(job["proof"]["k2"], 37);
    let job_id = job["job_id"].as_str().expect("id").to_owned();
    let token = job["fencing_token"].clone();
    let complete = format!("/api/v1/worker/jobs/{job_id}/complete");
    for (bad, field) in [
        (json!([{"start": 0, "end": 4096}]), "result.bad_ranges[0]"),
        (json!([{"start": 4096, "end": 8200}]), "result.bad_ranges[0]"),
        (
            json!([{"start": 5000, "end": 6000}, {"start": 5500, "end": 7000}]),
            "result.bad_ranges[1]",
        ),
        (json!([{"start": 5000, "end": 5000}]), "result.bad_ranges[0]"),
    ] {
        let r = e
            .call(
                Method::POST,
                &complete,
                Some(&cred),
                Some(json!({"fencing_token": token, "result": {"checked": 10, "bad_ranges": bad}})),
            )
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
        assert!(r.text.contains(field), "{field}: {}", r.text);
    }
    let r = e
        .call(
            Method::POST,
            &complete,
            Some(&cred),
            Some(json!({"fencing_token": token,
                "result": {"checked": 10, "bad_ranges": [{"start": 4096, "end": 8192}]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let history = e
        .call(
            Method::GET,
            "/api/v1/events/history?limit=1000",
            Some(ADMIN),
            None,
        )
        .await;
    assert!(history.text.contains("verify.bad_range"), "{}", history.text);
}
