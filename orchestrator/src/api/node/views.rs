//! The JSON views and query parameters of `/api/v1/node*` (built from the bridge's types in the
//! parent module).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

// ---------------------------------------------------------------- views

/// `GET /api/v1/node`: the node's clock, genesis and parameters.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// The current epoch.
    pub epoch: u32,
    /// The current layer.
    pub layer: u32,
    /// The node's time, unix milliseconds.
    pub now_ms: u64,
    /// The last layer applied (its block executed); null before the first.
    pub applied_layer: Option<u32>,
    /// Whether the node is synced; null where the backend cannot tell (the one-process devnet).
    pub synced: Option<bool>,
    /// 40 hex digits.
    pub genesis_id: String,
    /// 64 hex digits.
    pub golden_atx: String,
    /// The first layer that pays rewards.
    pub effective_genesis: u32,
    /// Genesis instant, unix milliseconds.
    pub genesis_ms: u64,
    pub layer_duration_ms: u64,
    pub layers_per_epoch: u32,
    /// `layer_duration_ms × layers_per_epoch`.
    pub epoch_duration_ms: u64,
    pub poet_phase_shift_ms: u64,
    pub poet_cycle_gap_ms: u64,
    pub grace_period_ms: u64,
    pub positioning_atx_timeout_ms: u64,
}

/// A PoET and its round schedule: round `r` runs from `genesis_ms + phase_shift_ms + r·cycle_ms`
/// for `cycle_ms − cycle_gap_ms`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoetView {
    pub id: String,
    pub genesis_ms: u64,
    pub phase_shift_ms: u64,
    pub cycle_ms: u64,
    pub cycle_gap_ms: u64,
    /// The devnet's pace; null where the backend does not know it.
    pub leaves_per_second: Option<u64>,
    /// The round open for registration now (the next one to start).
    pub open_round: u64,
    pub open_round_start_ms: Option<u64>,
    pub open_round_end_ms: Option<u64>,
    /// The round that started last (it may have ended); null before the first starts.
    pub current_round: Option<u64>,
    pub current_round_end_ms: Option<u64>,
}

/// A finished PoET round.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoetRoundView {
    pub poet: String,
    pub round: u64,
    /// `PoetProofRef`, 64 hex digits: what an ATX's PoST proves over.
    pub proof_ref: String,
    /// The membership root, 64 hex digits.
    pub statement: String,
    pub leaf_count: u64,
    /// Registered challenges.
    pub member_count: u64,
}

/// An ATX the node holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AtxView {
    /// 64 hex digits.
    pub id: String,
    /// The identity's node id, 64 hex digits.
    pub smesher: String,
    pub publish_epoch: u32,
    pub target_epoch: u32,
    pub sequence: u64,
    /// bech32.
    pub coinbase: String,
    pub num_units: u32,
    pub effective_units: u32,
    pub ticks: u64,
    pub weight: u64,
    pub base_height: u64,
    pub tick_height: u64,
    pub vrf_nonce: u64,
}

/// A layer and the eligibility proofs an identity has in it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EligibleLayer {
    pub layer: u32,
    pub count: u32,
}

/// An identity's eligibility in an epoch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EligibilityView {
    pub epoch: u32,
    /// The ATX that makes it eligible, 64 hex digits.
    pub atx: String,
    pub weight: u64,
    /// Total weight of the epoch's active set.
    pub active_weight: u64,
    pub slots: u32,
    /// The layers in which the node accepted a ballot of the identity (with its eligibility proofs
    /// there), ascending by layer.
    pub layers: Vec<EligibleLayer>,
    /// Whether the active set is fixed (the epoch has started); before that, a projection.
    pub fixed: bool,
}

/// One reward credit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RewardView {
    pub layer: u32,
    /// bech32.
    pub coinbase: String,
    /// 64 hex digits.
    pub smesher: String,
    /// 64 hex digits.
    pub atx: String,
    /// Subsidy share plus fee share, smidge.
    pub total: u64,
    /// The subsidy part, smidge.
    pub layer_reward: u64,
}

/// `GET /api/v1/node/rewards`: a coinbase's rewards from a layer on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CoinbaseRewardsView {
    /// bech32.
    pub coinbase: String,
    pub from_layer: u32,
    /// Sum of `rewards[].total`, smidge.
    pub total: u64,
    /// Ascending by layer.
    pub rewards: Vec<RewardView>,
}

/// What a layer's block paid.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LayerRewardsView {
    pub layer: u32,
    pub subsidy: u64,
    pub fees: u64,
    pub burnt: u64,
    pub credits: Vec<RewardView>,
}

/// An account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    /// bech32.
    pub address: String,
    /// 48 hex digits.
    pub address_hex: String,
    /// Smidge.
    pub balance: u64,
    /// The nonce the account's next transaction must carry.
    pub next_nonce: u64,
    /// `wallet`, `multi_sig`, `vesting` or `vault`; null for a stub (not spawned).
    pub template: Option<String>,
    /// Layer of the last change.
    pub layer: u32,
}

/// `POST /api/v1/node/transactions`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitTx {
    /// The signed transaction, hex.
    pub raw: String,
}

/// A queued transaction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TxSubmitted {
    /// 64 hex digits.
    pub id: String,
}

/// Why a transaction failed or was ineffective.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TxReasonView {
    pub code: String,
    pub message: String,
}

/// A transaction's status and receipt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TxView {
    /// 64 hex digits.
    pub id: String,
    /// `pending`, `applied`, `failed` or `ineffective`.
    pub status: String,
    /// Layer it was applied (or dropped) in; null while pending.
    pub layer: Option<u32>,
    /// bech32.
    pub principal: Option<String>,
    /// `spawn` or `spend`.
    pub method: Option<String>,
    /// The spawned template, for a spawn.
    pub template: Option<String>,
    pub nonce: Option<u64>,
    pub gas_price: Option<u64>,
    pub max_gas: Option<u64>,
    pub gas_used: u64,
    /// Smidge.
    pub fee: u64,
    pub reason: Option<TxReasonView>,
    /// Accounts changed, principal first; bech32.
    pub touched: Vec<String>,
}

/// A flagged identity and the proof against it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MalfeasanceView {
    /// 64 hex digits.
    pub smesher: String,
    /// Proof type: 1 (multiple ATXs), 2 (multiple ballots), 4 (invalid PoST index) or 5 (invalid
    /// previous ATX).
    pub kind: u8,
    /// `multiple_atxs`, `multiple_ballots`, `invalid_post_index` or `invalid_prev_atx`.
    pub kind_name: String,
    /// The ATXs the proof is made of (two, or the one with the invalid index; none for multiple
    /// ballots), 64 hex digits each.
    pub atxs: Vec<String>,
    /// The proof, SCALE-encoded, hex.
    pub proof: String,
}

// ---------------------------------------------------------------- queries

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SmesherQuery {
    /// The identity's node id, 64 hex digits.
    pub smesher: String,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EligibilityQuery {
    /// The identity's node id, 64 hex digits.
    pub smesher: String,
    pub epoch: u32,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RewardsQuery {
    /// bech32 (`sm1…`, `stest1…`, `standalone1…`) or 48 hex digits.
    pub coinbase: String,
    /// Default 0.
    #[serde(default)]
    pub from_layer: Option<u32>,
}
