//! The OpenAPI document, generated from the handlers' annotations. The checked-in copy
//! (`orchestrator/openapi.json`) is compared with it by a test, so it never goes stale.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{events, identities, jobs, node, proving, system, worker_api, workers};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "smeshfleet coordinator",
        description = "Identities, workers, jobs and the plan of a smeshfleet coordinator. \
            Every route but /healthz, /metrics, /api/openapi.json and /api/v1/worker/enroll needs \
            `Authorization: Bearer <token>`. Errors: `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        system::healthz, system::metrics, system::openapi, system::plan,
        system::create_token, system::list_tokens, system::revoke_token,
        identities::list, identities::create, identities::import, identities::get,
        identities::export, identities::delete, proving::challenge, proving::proofs,
        proving::proving_requests, proving::verify,
        workers::list, workers::get, workers::drain, workers::resume, workers::pause,
        workers::set_devices, workers::remove,
        workers::create_join_token, workers::list_join_tokens, workers::delete_join_token,
        jobs::list, jobs::get, jobs::cancel, jobs::retry,
        events::stream, events::history,
        worker_api::enroll, worker_api::heartbeat, worker_api::lease, worker_api::progress,
        worker_api::complete, worker_api::fail, worker_api::stream_authorize,
        node::info, node::poets, node::poet_round, node::atxs, node::eligibility, node::rewards,
        node::layer_rewards, node::account, node::submit_tx, node::tx_status, node::malfeasance,
    ),
    components(schemas(super::error::ErrorBody, super::error::ErrorDetail, super::auth::Role,
        proving::ChallengeRequest, proving::ProvingRequestView, proving::ProofView,
        proving::VerifyQueued,
        protocol::ProofParams, protocol::ProofData, protocol::GroupPow, protocol::K2powResult,
        protocol::ProveResult, protocol::ProofMeta, protocol::VerifyResult,
        node::NodeView, node::PoetView, node::PoetRoundView, node::AtxView, node::EligibleLayer,
        node::EligibilityView, node::RewardView, node::CoinbaseRewardsView, node::LayerRewardsView,
        node::AccountView, node::SubmitTx, node::TxSubmitted, node::TxReasonView, node::TxView,
        node::MalfeasanceView)),
    modifiers(&BearerAuth),
    tags(
        (name = "identities", description = "Identities and their keys"),
        (name = "workers", description = "Rigs and join tokens"),
        (name = "jobs", description = "Init, verify, k2pow and prove jobs"),
        (name = "worker", description = "Routes the worker agent calls"),
        (name = "events", description = "State changes"),
        (name = "plan", description = "The scheduler's plan"),
        (name = "tokens", description = "API tokens"),
        (name = "node", description = "The node the coordinator smeshes against (503 `no_node` without one)"),
        (name = "system", description = "Health, metrics, this document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON, ending in a newline (the form checked in).
pub fn openapi_json() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
