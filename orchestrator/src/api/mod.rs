//! The REST API (axum): `/api/v1`, OpenAPI at `/api/openapi.json`, `/healthz`, `/metrics`.
//!
//! Every route but `/healthz`, `/metrics`, `/api/openapi.json` and worker enrollment (which
//! carries a one-time join token in its body) needs a bearer token: an API token with a role
//! (viewer < operator < admin) or a worker's own credential. Errors follow one contract
//! ([`error::ApiError`]); request bodies are limited to [`ApiConfig::max_body_bytes`].

pub mod auth;
pub mod error;
pub mod events;
pub mod identities;
pub mod jobs;
pub mod node;
pub mod openapi;
pub mod proving;
mod state;
pub mod system;
pub mod worker_api;
pub mod workers;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

pub use state::{now_ms, ApiConfig, AppState, API_TOKEN_PREFIX, WORKER_CREDENTIAL_PREFIX};

use crate::metrics::ApiLabels;
use error::ApiError;

/// The whole HTTP surface of the coordinator.
pub fn router(state: AppState) -> Router {
    let max_body = state.0.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(system::healthz))
        .route("/metrics", get(system::metrics))
        .route("/api/openapi.json", get(system::openapi))
        .route(
            "/api/v1/identities",
            get(identities::list).post(identities::create),
        )
        .route("/api/v1/identities/import", post(identities::import))
        .route(
            "/api/v1/identities/{id}",
            get(identities::get).delete(identities::delete),
        )
        .route("/api/v1/identities/{id}/export", post(identities::export))
        .route("/api/v1/identities/{id}/challenge", post(proving::challenge))
        .route("/api/v1/identities/{id}/proofs", get(proving::proofs))
        .route(
            "/api/v1/identities/{id}/proving-requests",
            get(proving::proving_requests),
        )
        .route("/api/v1/identities/{id}/verify", post(proving::verify))
        .route("/api/v1/node", get(node::info))
        .route("/api/v1/node/poets", get(node::poets))
        .route("/api/v1/node/poets/{poet}/rounds/{round}", get(node::poet_round))
        .route("/api/v1/node/atxs", get(node::atxs))
        .route("/api/v1/node/eligibility", get(node::eligibility))
        .route("/api/v1/node/rewards", get(node::rewards))
        .route("/api/v1/node/layers/{layer}/rewards", get(node::layer_rewards))
        .route("/api/v1/node/accounts/{address}", get(node::account))
        .route("/api/v1/node/transactions", post(node::submit_tx))
        .route("/api/v1/node/transactions/{id}", get(node::tx_status))
        .route("/api/v1/node/malfeasance/{smesher}", get(node::malfeasance))
        .route("/api/v1/workers", get(workers::list))
        .route(
            "/api/v1/workers/join-tokens",
            get(workers::list_join_tokens).post(workers::create_join_token),
        )
        .route(
            "/api/v1/workers/join-tokens/{id}",
            axum::routing::delete(workers::delete_join_token),
        )
        .route("/api/v1/workers/{id}", get(workers::get).delete(workers::remove))
        .route("/api/v1/workers/{id}/drain", post(workers::drain))
        .route("/api/v1/workers/{id}/resume", post(workers::resume))
        .route("/api/v1/workers/{id}/pause", post(workers::pause))
        .route(
            "/api/v1/workers/{id}/devices",
            axum::routing::put(workers::set_devices),
        )
        .route("/api/v1/jobs", get(jobs::list))
        .route("/api/v1/jobs/{id}", get(jobs::get))
        .route("/api/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/api/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/api/v1/plan", get(system::plan))
        .route("/api/v1/events", get(events::stream))
        .route("/api/v1/events/history", get(events::history))
        .route(
            "/api/v1/tokens",
            get(system::list_tokens).post(system::create_token),
        )
        .route("/api/v1/tokens/{id}", axum::routing::delete(system::revoke_token))
        .route("/api/v1/worker/enroll", post(worker_api::enroll))
        .route("/api/v1/worker/heartbeat", post(worker_api::heartbeat))
        .route("/api/v1/worker/lease", post(worker_api::lease))
        .route(
            "/api/v1/worker/stream/authorize",
            post(worker_api::stream_authorize),
        )
        .route("/api/v1/worker/jobs/{id}/progress", post(worker_api::progress))
        .route("/api/v1/worker/jobs/{id}/complete", post(worker_api::complete))
        .route("/api/v1/worker/jobs/{id}/fail", post(worker_api::fail))
        .fallback(|| async { ApiError::not_found("route_not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), track_latency))
        .with_state(state)
}

/// Records every request's latency by method, route template and status.
async fn track_latency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let resp = next.run(req).await;
    state
        .metrics()
        .api_latency
        .get_or_create(&ApiLabels {
            method,
            route,
            status: resp.status().as_u16().to_string(),
        })
        .observe(start.elapsed().as_secs_f64());
    resp
}
