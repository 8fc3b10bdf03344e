//! The interface the coordinator smeshes through (spec/devnet.md §6.5): [`NodeBridge`].
//!
//! Two backends are meant to implement it: the embedded devnet ([`crate::devnet::Devnet`]) and,
//! later, an adapter over go-spacemesh's API. The trait is object safe and `Send + Sync`, so the
//! coordinator holds an `Arc<dyn NodeBridge>`; its methods are synchronous (a network adapter
//! blocks inside `spawn_blocking`).
//!
//! Key custody: nothing here takes a private key. The coordinator signs PoET registrations,
//! ATXs, ballots (with their VRF eligibility proofs) and transactions with its keystore and
//! hands the bridge the signed artefacts only.
//!
//! What a backend cannot produce (p2p sync state on a one-process devnet, for instance) is an
//! explicit [`BridgeError::NotAvailable`], never a made-up value.

use crate::atx::malfeasance::MalfeasanceProof;
use crate::atx::{ActivationTxV1, AtxId, Coinbase, Epoch, Hash32, MerkleProof, NodeId};
use crate::ballot::{Ballot, BallotId};
use crate::clock::{ClockError, ClockParams, EpochId, LayerId};
use crate::poet::{PoetError, RegisterError, Registration};
use crate::rewards::{EligibilityError, RewardError};
use crate::vm::{Address, Template, TxError, TxId, TxReceipt, VmError};

/// A PoET server's name as the node knows it (a URL for a real node).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoetId(pub String);

impl std::fmt::Display for PoetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Position of the events feed: the sequence number of the next event to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventCursor(pub u64);

/// Everything a bridge call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{what} is not available from this backend")]
    NotAvailable { what: &'static str },
    #[error("unknown PoET {0}")]
    UnknownPoet(PoetId),
    #[error("PoET {poet} refused the registration: {source}")]
    PoetRegistration {
        poet: PoetId,
        #[source]
        source: RegisterError,
    },
    #[error("PoET {poet}: {source}")]
    Poet {
        poet: PoetId,
        #[source]
        source: PoetError,
    },
    #[error("PoET {poet} produced a proof for round {round} that does not verify")]
    PoetProofInvalid { poet: PoetId, round: u64 },
    #[error("{what} for epoch {epoch} was forgotten (the node keeps epochs ≥ {oldest})")]
    EpochPruned {
        what: &'static str,
        epoch: EpochId,
        oldest: EpochId,
    },
    #[error("events before {oldest:?} were forgotten; cursor {cursor:?} is too old")]
    EventsPruned {
        cursor: EventCursor,
        oldest: EventCursor,
    },
    #[error("event cursor {cursor:?} is ahead of the feed (next is {next:?})")]
    CursorAhead { cursor: EventCursor, next: EventCursor },
    #[error("transaction refused: {0}")]
    MalformedTx(#[from] TxError),
    #[error("clock: {0}")]
    Clock(#[from] ClockError),
    #[error("eligibility: {0}")]
    Eligibility(#[from] EligibilityError),
    #[error("rewards: {0}")]
    Reward(#[from] RewardError),
    #[error("VM: {0}")]
    Vm(#[from] VmError),
    #[error("ATX store: {0}")]
    Store(#[from] crate::atx::StoreError),
    /// A remote backend could not be reached or answered nonsense.
    #[error("node transport: {message}")]
    Transport { message: String },
    /// The node took the input but could not make it durable (the embedded devnet's journal): it
    /// holds in memory and is lost if the node stops before its next snapshot.
    #[error("node storage: {message}")]
    Storage { message: String },
}

/// The node's notion of now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeTime {
    pub now_ms: u64,
    pub layer: LayerId,
    pub epoch: EpochId,
    /// The last layer applied (its block executed), if any.
    pub applied_layer: Option<LayerId>,
}

/// Genesis of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenesisInfo {
    pub genesis_id: [u8; 20],
    pub golden_atx: AtxId,
    /// The first layer that pays rewards (`2·LayersPerEpoch − 1`).
    pub effective_genesis: LayerId,
}

/// A PoET and its round schedule: round `r` runs from
/// `genesis + phase_shift + r·cycle` for `cycle − cycle_gap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoetInfo {
    pub id: PoetId,
    pub genesis_ms: u64,
    pub phase_shift_ms: u64,
    pub cycle_ms: u64,
    pub cycle_gap_ms: u64,
    /// The devnet's pace; `None` where the backend does not know it.
    pub leaves_per_second: Option<u64>,
}

impl PoetInfo {
    pub fn round_start_ms(&self, round: u64) -> Option<u64> {
        round
            .checked_mul(self.cycle_ms)?
            .checked_add(self.phase_shift_ms)?
            .checked_add(self.genesis_ms)
    }

    pub fn round_end_ms(&self, round: u64) -> Option<u64> {
        self.round_start_ms(round)?
            .checked_add(self.cycle_ms.checked_sub(self.cycle_gap_ms)?)
    }

    /// The round open for registration at `now_ms` (the next one to start).
    pub fn open_round(&self, now_ms: u64) -> u64 {
        let first = self.genesis_ms.saturating_add(self.phase_shift_ms);
        match now_ms.checked_sub(first) {
            None => 0,
            Some(since) => since.checked_div(self.cycle_ms).map_or(0, |q| q + 1),
        }
    }
}

/// A registration accepted by a PoET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoetRegistered {
    pub round: u64,
    pub round_end_ms: u64,
}

/// A finished PoET round: what a member needs to build its NIPoST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoetRound {
    pub poet: PoetId,
    pub round: u64,
    /// `PoetProofRef`: what `PostMetadata.Challenge` names and the PoST proves over.
    pub proof_ref: Hash32,
    pub statement: Hash32,
    pub leaf_count: u64,
    /// The registered challenges, in tree order.
    pub members: Vec<Hash32>,
}

impl PoetRound {
    /// The membership proof of `challenge` (a member's PoET challenge), if it is a member.
    pub fn membership(&self, challenge: &Hash32) -> Option<MerkleProof> {
        let index = self.members.iter().position(|m| m == challenge)?;
        let nodes = crate::poet::membership_proof(&self.members, index)?;
        Some(MerkleProof {
            nodes,
            leaf_index: index as u64,
        })
    }
}

/// A valid ATX as the node holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtxInfo {
    pub id: AtxId,
    pub smesher: NodeId,
    pub publish_epoch: Epoch,
    /// `publish_epoch + 1`.
    pub target_epoch: Epoch,
    pub sequence: u64,
    pub coinbase: Coinbase,
    pub num_units: u32,
    pub effective_units: u32,
    pub ticks: u64,
    pub weight: u64,
    pub base_height: u64,
    pub tick_height: u64,
    pub vrf_nonce: u64,
}

impl From<&crate::atx::ValidatedAtx> for AtxInfo {
    fn from(v: &crate::atx::ValidatedAtx) -> Self {
        AtxInfo {
            id: v.id,
            smesher: v.smesher_id,
            publish_epoch: v.publish_epoch,
            target_epoch: v.publish_epoch.saturating_add(1),
            sequence: v.sequence,
            coinbase: v.coinbase,
            num_units: v.num_units,
            effective_units: v.effective_units,
            ticks: v.ticks,
            weight: v.weight,
            base_height: v.base_height,
            tick_height: v.tick_height(),
            vrf_nonce: v.vrf_nonce,
        }
    }
}

/// The node's answer to a submitted ATX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtxSubmission {
    Accepted {
        atx: AtxInfo,
        /// Already known: nothing changed.
        duplicate: bool,
        /// Valid, but it equivocates with an ATX the node has: the identity is now flagged.
        equivocation: bool,
    },
    Rejected {
        id: AtxId,
        smesher: NodeId,
        /// The validation rule that failed, in words.
        reason: String,
    },
}

/// An identity's eligibility in an epoch: what its key holder needs to compute the VRF proofs
/// of its slots (`vrf_message(beacon, epoch, vrf_nonce, j)` for `j < slots`, see
/// [`crate::ballot`]) and to fill a reference ballot's `EpochData`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligibility {
    pub epoch: EpochId,
    pub atx: AtxId,
    pub weight: u64,
    /// Total weight of the epoch's active set.
    pub active_weight: u64,
    /// The eligibility count: slots `j ∈ [0, slots)`.
    pub slots: u32,
    /// The epoch's beacon (VRF input).
    pub beacon: [u8; 4],
    /// The ATX's VRF nonce (VRF input).
    pub vrf_nonce: u64,
    /// [`crate::ballot::active_set_hash`] of the epoch's active set (a reference ballot's
    /// `EpochData`; a projection until `fixed`).
    pub active_set_hash: [u8; 32],
    /// The layers of the ballots the node has accepted from this identity in this epoch, with
    /// their eligibility proof counts, ascending by layer (one ballot per layer is counted: the
    /// first accepted). Not the layers it is eligible in: those only its key holder can compute.
    pub layers: Vec<(LayerId, u32)>,
    /// Whether the active set is fixed (the epoch has started); before that, a projection.
    pub fixed: bool,
}

/// The node's answer to a submitted ballot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BallotSubmission {
    Accepted {
        id: BallotId,
        /// The very same ballot again: nothing changed.
        duplicate: bool,
        /// Valid, but a different ballot of this identity for that layer exists: the identity is
        /// now flagged with a MultipleBallots proof.
        equivocation: bool,
    },
    Rejected {
        id: BallotId,
        smesher: NodeId,
        /// The validation rule that failed, in words.
        reason: String,
    },
}

/// One reward credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reward {
    pub layer: LayerId,
    pub coinbase: Address,
    pub smesher: NodeId,
    pub atx: AtxId,
    /// Subsidy share plus fee share.
    pub total: u64,
    /// The subsidy part.
    pub layer_reward: u64,
}

/// What a layer's block paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRewardInfo {
    pub layer: LayerId,
    pub subsidy: u64,
    pub fees: u64,
    pub burnt: u64,
    pub credits: Vec<Reward>,
}

/// An account as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    pub address: Address,
    pub balance: u64,
    pub next_nonce: u64,
    /// `None` for a stub.
    pub template: Option<Template>,
    /// Layer of the last change.
    pub layer: LayerId,
}

/// A flagged identity and the proof against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malfeasance {
    pub smesher: NodeId,
    /// Proof type (1 MultipleATXs, 2 MultipleBallots, 4 InvalidPostIndex, 5 InvalidPrevATX).
    pub kind: u8,
    pub proof: MalfeasanceProof,
}

/// The node's event feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    EpochStarted {
        epoch: EpochId,
    },
    LayerApplied {
        layer: LayerId,
        txs: usize,
        fees: u64,
        rewarded: u64,
    },
    PoetRoundStarted {
        poet: PoetId,
        round: u64,
        members: usize,
    },
    PoetRoundEnded {
        poet: PoetId,
        round: u64,
        leaf_count: u64,
        proof_ref: Hash32,
    },
    AtxAccepted {
        id: AtxId,
        smesher: NodeId,
        publish_epoch: Epoch,
        weight: u64,
        ticks: u64,
    },
    AtxRejected {
        id: AtxId,
        smesher: NodeId,
        reason: String,
    },
    /// A ballot was accepted (an equivocating one too; a duplicate is not an event).
    BallotAccepted {
        id: BallotId,
        smesher: NodeId,
        layer: LayerId,
        /// Its eligibility proofs.
        eligibilities: u32,
    },
    IdentityFlagged {
        smesher: NodeId,
        kind: u8,
    },
    RewardCredited(Reward),
}

/// The node the coordinator smeshes against.
pub trait NodeBridge: Send + Sync {
    // --- clock
    fn clock_params(&self) -> Result<ClockParams, BridgeError>;
    fn now(&self) -> Result<NodeTime, BridgeError>;
    /// The epoch's beacon (VRF input of eligibility).
    fn beacon(&self, epoch: EpochId) -> Result<[u8; 4], BridgeError>;
    /// Whether the node is synced with the network.
    fn synced(&self) -> Result<bool, BridgeError>;

    // --- genesis
    fn genesis(&self) -> Result<GenesisInfo, BridgeError>;

    // --- PoETs
    fn poets(&self) -> Result<Vec<PoetInfo>, BridgeError>;
    /// Forward a registration the coordinator signed.
    fn poet_register(
        &self,
        poet: &PoetId,
        registration: &Registration,
    ) -> Result<PoetRegistered, BridgeError>;
    /// A round's proof; `None` until the round has ended.
    fn poet_round(&self, poet: &PoetId, round: u64) -> Result<Option<PoetRound>, BridgeError>;

    // --- ATXs
    /// The positioning ATX for an ATX published in `publish_epoch` (candidates published in
    /// `≤ publish_epoch − 1`; `own_prev` wins ties).
    fn positioning_atx(&self, publish_epoch: Epoch, own_prev: Option<&AtxId>) -> Result<AtxId, BridgeError>;
    /// The identity's latest ATX.
    fn previous_atx(&self, smesher: &NodeId) -> Result<Option<AtxInfo>, BridgeError>;
    /// Validate and (if valid) store a signed ATX.
    fn submit_atx(&self, atx: &ActivationTxV1) -> Result<AtxSubmission, BridgeError>;
    /// The identity's ATXs, by publish epoch.
    fn atxs_of(&self, smesher: &NodeId) -> Result<Vec<AtxInfo>, BridgeError>;

    // --- eligibility, rewards
    /// `None` when the identity has no ATX in the epoch's active set.
    fn eligibility(&self, smesher: &NodeId, epoch: EpochId) -> Result<Option<Eligibility>, BridgeError>;
    /// Validate and (if valid) store a signed ballot. Only ballots the node accepted are paid:
    /// a layer's block rewards the accepted ballots for it of identities not flagged by its end.
    fn submit_ballot(&self, ballot: &Ballot) -> Result<BallotSubmission, BridgeError>;
    /// The identity's reference ballot of `epoch` (the first one the node accepted), if any.
    fn reference_ballot(&self, smesher: &NodeId, epoch: EpochId) -> Result<Option<BallotId>, BridgeError>;
    /// `None` before the layer is applied.
    fn layer_rewards(&self, layer: LayerId) -> Result<Option<LayerRewardInfo>, BridgeError>;
    /// Rewards paid to `coinbase` in layers `≥ from_layer`, ascending.
    fn rewards_of(&self, coinbase: &Address, from_layer: LayerId) -> Result<Vec<Reward>, BridgeError>;

    // --- accounts, transactions
    fn account(&self, address: &Address) -> Result<AccountInfo, BridgeError>;
    /// Queue a signed raw transaction for the next layer.
    fn submit_tx(&self, raw: &[u8]) -> Result<TxId, BridgeError>;
    /// `None` for an unknown (or forgotten) transaction.
    fn tx_status(&self, id: &TxId) -> Result<Option<TxReceipt>, BridgeError>;

    // --- malfeasance
    fn malfeasance(&self, smesher: &NodeId) -> Result<Option<Malfeasance>, BridgeError>;

    // --- events
    /// Events from `cursor` on, and the cursor to continue from.
    fn events_since(&self, cursor: EventCursor) -> Result<(Vec<NodeEvent>, EventCursor), BridgeError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trait_is_object_safe_and_shareable() {
        fn assert_send_sync<T: Send + Sync + ?Sized>() {}
        assert_send_sync::<dyn NodeBridge>();
        let _: Option<std::sync::Arc<dyn NodeBridge>> = None;
        let _: Option<Box<dyn NodeBridge>> = None;
    }

    #[test]
    fn poet_schedule_arithmetic() {
        let p = PoetInfo {
            id: PoetId("p".into()),
            genesis_ms: 1_000,
            phase_shift_ms: 40_000,
            cycle_ms: 60_000,
            cycle_gap_ms: 10_000,
            leaves_per_second: None,
        };
        assert_eq!(p.round_start_ms(0), Some(41_000));
        assert_eq!(p.round_end_ms(0), Some(91_000));
        assert_eq!(p.round_start_ms(2), Some(161_000));
        assert_eq!(p.open_round(0), 0);
        assert_eq!(p.open_round(40_999), 0);
        assert_eq!(p.open_round(41_000), 1);
        assert_eq!(p.open_round(101_000), 2);
    }

    #[test]
    fn membership_of_a_round_member_folds_to_the_statement() {
        let members = vec![[1u8; 32], [2u8; 32], [3u8; 32]];
        let statement = crate::poet::membership_root(&members).expect("root");
        let round = PoetRound {
            poet: PoetId("p".into()),
            round: 0,
            proof_ref: [0; 32],
            statement,
            leaf_count: 10,
            members,
        };
        let m = round.membership(&[2u8; 32]).expect("member");
        assert_eq!(m.leaf_index, 1);
        assert!(crate::poet::verify_membership(
            &[2u8; 32], 1, &m.nodes, &statement
        ));
        assert!(round.membership(&[9u8; 32]).is_none());
    }
}
