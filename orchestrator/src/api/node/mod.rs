//! `/api/v1/node*`: the state of the node the coordinator smeshes against (the embedded devnet
//! under `smeshfleet up`): clock, genesis, PoETs and their rounds, ATXs, eligibility, rewards,
//! accounts, transactions and malfeasance.
//!
//! Every route answers 503 `no_node` when the coordinator runs without a node. Bridge calls are
//! synchronous and may take a lock, so they run in `spawn_blocking`. Ids and keys are lowercase
//! hex; account addresses are bech32 (read with any of the `sm`, `stest` and `standalone`
//! prefixes, or as 48 hex digits) and written with [`ADDRESS_HRP`], the devnet's prefix.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use node_bridge::atx::malfeasance::atx_ids;
use node_bridge::bridge::{
    AccountInfo, AtxInfo, BridgeError, Eligibility, LayerRewardInfo, Malfeasance, NodeBridge, PoetId,
    PoetInfo, PoetRound, Reward,
};
use node_bridge::clock::LayerId;
use node_bridge::vm::{Address, AddressError, TxId, TxReceipt, HRP_STANDALONE};

use super::auth::{Principal, Role};
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::state::AppState;

/// The bech32 prefix addresses are written with: the embedded devnet's (`standalone`). The bridge
/// does not say which network it serves, so this is fixed.
pub const ADDRESS_HRP: &str = HRP_STANDALONE;

mod views;
pub use views::*;

// ---------------------------------------------------------------- helpers

fn hex32(field: &str, s: &str) -> Result<[u8; 32], ApiError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| ApiError::invalid_field(field, "must be 64 hex digits"))?;
    Ok(out)
}

/// An address as the API takes it: bech32 with a known prefix, or 48 hex digits.
pub(crate) fn parse_address(s: &str) -> Result<Address, String> {
    let friendly =
        || format!("must be a bech32 address (sm1…, stest1…, standalone1…) or 48 hex digits, not {s:?}");
    Address::parse(s).map_err(|e| match e {
        AddressError::UnknownHrp { .. } => friendly(),
        AddressError::Bech32(_) if !s.contains('1') => friendly(),
        e => e.to_string(),
    })
}

fn address_field(field: &str, s: &str) -> Result<Address, ApiError> {
    parse_address(s).map_err(|e| ApiError::invalid_field(field, e))
}

fn bech32(a: &Address) -> String {
    a.encode(ADDRESS_HRP).unwrap_or_else(|_| a.to_hex())
}

/// The snake_case name serde gives a unit enum variant.
fn enum_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// What a bridge error means to an API client. `field` names the request parameter that a
/// refusal of bad input is about.
fn bridge_error(e: BridgeError, field: &str) -> ApiError {
    let msg = e.to_string();
    match e {
        BridgeError::NotAvailable { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "node_unavailable", msg)
        }
        BridgeError::Transport { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_unavailable",
            format!("the node cannot be reached: {msg}"),
        ),
        BridgeError::Storage { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_storage",
            format!("the node could not store the input durably: {msg}"),
        ),
        BridgeError::UnknownPoet(_) => ApiError::not_found("poet_not_found", msg),
        BridgeError::EpochPruned { .. } | BridgeError::EventsPruned { .. } => {
            ApiError::new(StatusCode::GONE, "pruned", format!("{field}: {msg}"))
        }
        BridgeError::MalformedTx(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_tx",
            format!("{field}: {msg}"),
        ),
        BridgeError::Clock(_) | BridgeError::CursorAhead { .. } | BridgeError::PoetRegistration { .. } => {
            ApiError::invalid_field(field, msg)
        }
        BridgeError::Poet { .. }
        | BridgeError::PoetProofInvalid { .. }
        | BridgeError::Eligibility(_)
        | BridgeError::Reward(_)
        | BridgeError::Vm(_)
        | BridgeError::Store(_) => {
            tracing::warn!(error = %msg, "the node failed a request");
            ApiError::new(StatusCode::BAD_GATEWAY, "node_error", msg)
        }
    }
}

fn no_node() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_node",
        "this coordinator runs without a node: start it with `smeshfleet up`",
    )
}

/// The attached node, or 503 `no_node`.
fn node_of(state: &AppState) -> ApiResult<Arc<dyn NodeBridge>> {
    state.node().cloned().ok_or_else(no_node)
}

/// Runs `f` against the node off the async runtime; a bridge error is reported about `field`.
async fn with_node<T: Send + 'static>(
    node: Arc<dyn NodeBridge>,
    field: &'static str,
    f: impl FnOnce(&dyn NodeBridge) -> Result<T, BridgeError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(move || f(&*node))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| bridge_error(e, field))
}

impl From<&AtxInfo> for AtxView {
    fn from(a: &AtxInfo) -> Self {
        AtxView {
            id: hex::encode(a.id),
            smesher: hex::encode(a.smesher),
            publish_epoch: a.publish_epoch,
            target_epoch: a.target_epoch,
            sequence: a.sequence,
            coinbase: bech32(&Address(a.coinbase)),
            num_units: a.num_units,
            effective_units: a.effective_units,
            ticks: a.ticks,
            weight: a.weight,
            base_height: a.base_height,
            tick_height: a.tick_height,
            vrf_nonce: a.vrf_nonce,
        }
    }
}

impl From<&Reward> for RewardView {
    fn from(r: &Reward) -> Self {
        RewardView {
            layer: r.layer,
            coinbase: bech32(&r.coinbase),
            smesher: hex::encode(r.smesher),
            atx: hex::encode(r.atx),
            total: r.total,
            layer_reward: r.layer_reward,
        }
    }
}

impl From<&Eligibility> for EligibilityView {
    fn from(e: &Eligibility) -> Self {
        EligibilityView {
            epoch: e.epoch,
            atx: hex::encode(e.atx),
            weight: e.weight,
            active_weight: e.active_weight,
            slots: e.slots,
            layers: e
                .layers
                .iter()
                .map(|&(layer, count)| EligibleLayer { layer, count })
                .collect(),
            fixed: e.fixed,
        }
    }
}

impl From<&LayerRewardInfo> for LayerRewardsView {
    fn from(l: &LayerRewardInfo) -> Self {
        LayerRewardsView {
            layer: l.layer,
            subsidy: l.subsidy,
            fees: l.fees,
            burnt: l.burnt,
            credits: l.credits.iter().map(RewardView::from).collect(),
        }
    }
}

impl From<&AccountInfo> for AccountView {
    fn from(a: &AccountInfo) -> Self {
        AccountView {
            address: bech32(&a.address),
            address_hex: a.address.to_hex(),
            balance: a.balance,
            next_nonce: a.next_nonce,
            template: a.template.as_ref().map(enum_name),
            layer: a.layer,
        }
    }
}

impl From<&TxReceipt> for TxView {
    fn from(r: &TxReceipt) -> Self {
        TxView {
            id: hex::encode(r.id.0),
            status: enum_name(&r.status),
            layer: r.layer,
            principal: r.principal.as_ref().map(bech32),
            method: r.method.as_ref().map(enum_name),
            template: r.template.as_ref().map(enum_name),
            nonce: r.nonce,
            gas_price: r.gas_price,
            max_gas: r.max_gas,
            gas_used: r.gas_used,
            fee: r.fee,
            reason: r.reason.as_ref().map(|x| TxReasonView {
                code: x.code.clone(),
                message: x.message.clone(),
            }),
            touched: r.touched.iter().map(bech32).collect(),
        }
    }
}

impl From<&Malfeasance> for MalfeasanceView {
    fn from(m: &Malfeasance) -> Self {
        let kind_name = match &m.proof {
            node_bridge::atx::MalfeasanceProof::MultipleAtxs(_) => "multiple_atxs",
            node_bridge::atx::MalfeasanceProof::InvalidPostIndex(_) => "invalid_post_index",
            node_bridge::atx::MalfeasanceProof::InvalidPrevAtx(_) => "invalid_prev_atx",
            node_bridge::atx::MalfeasanceProof::MultipleBallots(_) => "multiple_ballots",
        };
        MalfeasanceView {
            smesher: hex::encode(m.smesher),
            kind: m.kind,
            kind_name: kind_name.to_owned(),
            atxs: atx_ids(&m.proof).iter().map(hex::encode).collect(),
            proof: hex::encode(m.proof.encode()),
        }
    }
}

fn poet_view(p: &PoetInfo, now_ms: u64) -> PoetView {
    let open = p.open_round(now_ms);
    let current = open.checked_sub(1);
    PoetView {
        id: p.id.0.clone(),
        genesis_ms: p.genesis_ms,
        phase_shift_ms: p.phase_shift_ms,
        cycle_ms: p.cycle_ms,
        cycle_gap_ms: p.cycle_gap_ms,
        leaves_per_second: p.leaves_per_second,
        open_round: open,
        open_round_start_ms: p.round_start_ms(open),
        open_round_end_ms: p.round_end_ms(open),
        current_round: current,
        current_round_end_ms: current.and_then(|r| p.round_end_ms(r)),
    }
}

fn round_view(r: &PoetRound) -> PoetRoundView {
    PoetRoundView {
        poet: r.poet.0.clone(),
        round: r.round,
        proof_ref: hex::encode(r.proof_ref),
        statement: hex::encode(r.statement),
        leaf_count: r.leaf_count,
        member_count: r.members.len() as u64,
    }
}

/// What the identity view shows of an identity on the node: `(ATXs published, rewards total in
/// smidge)`. Both are 0 without a node; the total is 0 without a (readable) coinbase and covers
/// the layers the node still keeps. A node error is logged and counts as 0: the identity view
/// does not fail for it.
pub(crate) fn identity_node_stats(
    node: &dyn NodeBridge,
    node_id: &[u8; 32],
    coinbase: Option<&str>,
) -> (u64, u64) {
    let atxs = match node.atxs_of(node_id) {
        Ok(v) => v.len() as u64,
        Err(e) => {
            tracing::warn!(node_id = %hex::encode(node_id), error = %e, "could not read the identity's ATXs");
            0
        }
    };
    let Some(coinbase) = coinbase.and_then(|c| parse_address(c).ok()) else {
        return (atxs, 0);
    };
    let rewards = match node.rewards_of(&coinbase, 0) {
        // Older layers were forgotten: count what the node keeps.
        Err(BridgeError::EpochPruned { oldest, .. }) => node
            .clock_params()
            .map(|c| oldest.saturating_mul(c.layers_per_epoch))
            .and_then(|from| node.rewards_of(&coinbase, from)),
        other => other,
    };
    let total = match rewards {
        // A coinbase may be shared by many identities: count this identity's rewards only.
        Ok(v) => v
            .iter()
            .filter(|r| &r.smesher == node_id)
            .fold(0u64, |acc, r| acc.saturating_add(r.total)),
        Err(e) => {
            tracing::warn!(coinbase = %coinbase, error = %e, "could not read the coinbase's rewards");
            0
        }
    };
    (atxs, total)
}

/// `(node id, coinbase)` pairs to [`identity_node_stats`], off the async runtime; all zeros
/// without a node.
pub(crate) async fn identities_node_stats(
    state: &AppState,
    identities: Vec<([u8; 32], Option<String>)>,
) -> Vec<(u64, u64)> {
    let Some(node) = state.node().cloned() else {
        return vec![(0, 0); identities.len()];
    };
    let n = identities.len();
    tokio::task::spawn_blocking(move || {
        identities
            .iter()
            .map(|(id, cb)| identity_node_stats(&*node, id, cb.as_deref()))
            .collect()
    })
    .await
    .unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not read identities' node state");
        vec![(0, 0); n]
    })
}

// ---------------------------------------------------------------- handlers

#[utoipa::path(get, path = "/api/v1/node", tag = "node",
    responses((status = 200, body = NodeView), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "no node attached (`no_node`)")),
    security(("bearer" = [])))]
pub async fn info(State(state): State<AppState>, p: Principal) -> ApiResult<ApiJson<NodeView>> {
    p.require(Role::Viewer)?;
    let node = node_of(&state)?;
    let view = with_node(node, "node", |n| {
        let c = n.clock_params()?;
        let t = n.now()?;
        let g = n.genesis()?;
        let synced = match n.synced() {
            Ok(s) => Some(s),
            Err(BridgeError::NotAvailable { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(NodeView {
            epoch: t.epoch,
            layer: t.layer,
            now_ms: t.now_ms,
            applied_layer: t.applied_layer,
            synced,
            genesis_id: hex::encode(g.genesis_id),
            golden_atx: hex::encode(g.golden_atx),
            effective_genesis: g.effective_genesis,
            genesis_ms: c.genesis_ms,
            layer_duration_ms: c.layer_duration_ms,
            layers_per_epoch: c.layers_per_epoch,
            epoch_duration_ms: c.layer_duration_ms.saturating_mul(u64::from(c.layers_per_epoch)),
            poet_phase_shift_ms: c.poet_phase_shift_ms,
            poet_cycle_gap_ms: c.poet_cycle_gap_ms,
            grace_period_ms: c.grace_period_ms,
            positioning_atx_timeout_ms: c.positioning_atx_timeout_ms,
        })
    })
    .await?;
    Ok(ApiJson(view))
}

#[utoipa::path(get, path = "/api/v1/node/poets", tag = "node",
    responses((status = 200, body = [PoetView]), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn poets(State(state): State<AppState>, p: Principal) -> ApiResult<ApiJson<Vec<PoetView>>> {
    p.require(Role::Viewer)?;
    let node = node_of(&state)?;
    let views = with_node(node, "poet", |n| {
        let now = n.now()?.now_ms;
        Ok(n.poets()?.iter().map(|p| poet_view(p, now)).collect())
    })
    .await?;
    Ok(ApiJson(views))
}

#[utoipa::path(get, path = "/api/v1/node/poets/{poet}/rounds/{round}", tag = "node",
    params(("poet" = String, Path, description = "PoET id"), ("round" = u64, Path, description = "round")),
    responses((status = 200, body = PoetRoundView),
        (status = 404, body = ErrorBody, description = "unknown PoET, or the round has not ended"),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn poet_round(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((poet, round)): ApiPath<(String, u64)>,
) -> ApiResult<ApiJson<PoetRoundView>> {
    p.require(Role::Viewer)?;
    let node = node_of(&state)?;
    let id = PoetId(poet.clone());
    let found = with_node(node, "round", move |n| n.poet_round(&id, round)).await?;
    let r = found.ok_or_else(|| {
        ApiError::not_found(
            "round_not_ended",
            format!("round {round} of PoET {poet} has not ended (or was forgotten)"),
        )
    })?;
    Ok(ApiJson(round_view(&r)))
}

#[utoipa::path(get, path = "/api/v1/node/atxs", tag = "node", params(SmesherQuery),
    responses((status = 200, body = [AtxView]), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn atxs(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<SmesherQuery>,
) -> ApiResult<ApiJson<Vec<AtxView>>> {
    p.require(Role::Viewer)?;
    let node = node_of(&state)?;
    let smesher = hex32("smesher", &q.smesher)?;
    let atxs = with_node(node, "smesher", move |n| n.atxs_of(&smesher)).await?;
    Ok(ApiJson(atxs.iter().map(AtxView::from).collect()))
}

#[utoipa::path(get, path = "/api/v1/node/eligibility", tag = "node", params(EligibilityQuery),
    responses((status = 200, body = EligibilityView),
        (status = 404, body = ErrorBody, description = "no ATX in the epoch's active set"),
        (status = 410, body = ErrorBody, description = "the epoch was forgotten"),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn eligibility(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<EligibilityQuery>,
) -> ApiResult<ApiJson<EligibilityView>> {
    p.require(Role::Viewer)?;
    let node = node_of(&state)?;
    let smesher = hex32("smesher", &q.smesher)?;
    let epoch = q.epoch;
    let found = with_node(node, "epoch", move |n| n.eligibility(&smesher, epoch)).await?;
    let e = found.ok_or_else(|| {
        ApiError::not_found(
            "not_eligible",
            format!("{} has no ATX in the active set of epoch {epoch}", q.smesher),
        )
    })?;
    Ok(ApiJson(EligibilityView::from(&e)))
}

#[utoipa::path(get, path = "/api/v1/node/rewards", tag = "node", params(RewardsQuery),
    responses((status = 200, body = CoinbaseRewardsView),
        (status = 410, body = ErrorBody, description = "from_layer was forgotten"),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rewards(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<RewardsQuery>,
) -> ApiResult<ApiJson<CoinbaseRewardsView>> {
    p.require(Role::Viewer)?;
    let node = node_of(&state)?;
    let coinbase = address_field("coinbase", &q.coinbase)?;
    let from_layer: LayerId = q.from_layer.unwrap_or(0);
    let list = with_node(node, "from_layer", move |n| n.rewards_of(&coinbase, from_layer)).await?;
    Ok(ApiJson(CoinbaseRewardsView {
        coinbase: bech32(&coinbase),
        from_layer,
        total: list.iter().fold(0u64, |acc, r| acc.saturating_add(r.total)),
        rewards: list.iter().map(RewardView::from).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/node/layers/{layer}/rewards", tag = "node",
    params(("layer" = u32, Path, description = "layer")),
    responses((status = 200, body = LayerRewardsView),
        (status = 404, body = ErrorBody, description = "the layer is not applied yet"),
        (status = 410, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn layer_rewards(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(layer): ApiPath<u32>,
) -> ApiResult<ApiJson<LayerRewardsView>> {
    p.require(Role::Viewer)?;
    let node = node_of(&state)?;
    let found = with_node(node, "layer", move |n| n.layer_rewards(layer)).await?;
    let l = found.ok_or_else(|| {
        ApiError::not_found("layer_not_applied", format!("layer {layer} is not applied yet"))
    })?;
    Ok(ApiJson(LayerRewardsView::from(&l)))
}

#[utoipa::path(get, path = "/api/v1/node/accounts/{address}", tag = "node",
    params(("address" = String, Path, description = "bech32 address or 48 hex digits")),
    responses((status = 200, body = AccountView), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn account(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(address): ApiPath<String>,
) -> ApiResult<ApiJson<AccountView>> {
    p.require(Role::Viewer)?;
    let node = node_of(&state)?;
    let address = address_field("address", &address)?;
    let a = with_node(node, "address", move |n| n.account(&address)).await?;
    Ok(ApiJson(AccountView::from(&a)))
}

#[utoipa::path(post, path = "/api/v1/node/transactions", tag = "node", request_body = SubmitTx,
    responses((status = 202, body = TxSubmitted, description = "queued for the next layer"),
        (status = 422, body = ErrorBody, description = "not hex, or not a transaction (`invalid_tx`)"),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn submit_tx(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<SubmitTx>,
) -> ApiResult<(StatusCode, ApiJson<TxSubmitted>)> {
    p.require(Role::Operator)?;
    let node = node_of(&state)?;
    let raw = hex::decode(req.raw.trim()).map_err(|_| ApiError::invalid_field("raw", "must be hex"))?;
    if raw.is_empty() {
        return Err(ApiError::invalid_field("raw", "is empty"));
    }
    let id = with_node(node, "raw", move |n| n.submit_tx(&raw)).await?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(TxSubmitted {
            id: hex::encode(id.0),
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/node/transactions/{id}", tag = "node",
    params(("id" = String, Path, description = "transaction id, 64 hex digits")),
    responses((status = 200, body = TxView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn tx_status(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<ApiJson<TxView>> {
    p.require(Role::Viewer)?;
    let node = node_of(&state)?;
    let tx = TxId(hex32("id", &id)?);
    let found = with_node(node, "id", move |n| n.tx_status(&tx)).await?;
    let r = found.ok_or_else(|| {
        ApiError::not_found(
            "tx_not_found",
            format!("the node knows no transaction {id} (or forgot it)"),
        )
    })?;
    Ok(ApiJson(TxView::from(&r)))
}

#[utoipa::path(get, path = "/api/v1/node/malfeasance/{smesher}", tag = "node",
    params(("smesher" = String, Path, description = "node id, 64 hex digits")),
    responses((status = 200, body = MalfeasanceView),
        (status = 404, body = ErrorBody, description = "the identity is not flagged"),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn malfeasance(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(smesher): ApiPath<String>,
) -> ApiResult<ApiJson<MalfeasanceView>> {
    p.require(Role::Viewer)?;
    let node = node_of(&state)?;
    let id = hex32("smesher", &smesher)?;
    let found = with_node(node, "smesher", move |n| n.malfeasance(&id)).await?;
    let m = found.ok_or_else(|| {
        ApiError::not_found("not_malicious", format!("{smesher} is not flagged as malicious"))
    })?;
    Ok(ApiJson(MalfeasanceView::from(&m)))
}
