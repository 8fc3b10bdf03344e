//! What the ATX builder can fail with. Every variant names the identity (its public key) and,
//! once it is known, the publish epoch; none carries key material.

use node_bridge::atx::AtxId;
use node_bridge::bridge::{BridgeError, PoetId};
use node_bridge::clock::{ClockError, ClockParamsError};

use crate::keystore::{KeystoreError, NodeId};
use crate::store::{NotSafeReason, StoreError};

/// Why one PoET's proof was not used by [`best_poet_proof`](super::best_poet_proof).
#[derive(Debug, thiserror::Error)]
pub enum PoetFailure {
    /// The node could not fetch the round.
    #[error("PoET {poet} round {round}: {source}")]
    Fetch {
        poet: PoetId,
        round: u64,
        #[source]
        source: BridgeError,
    },
    /// The round should have ended, but the PoET has no proof.
    #[error("PoET {poet} has no proof for round {round}, which ended at {round_end_ms} ms")]
    NoProof {
        poet: PoetId,
        round: u64,
        round_end_ms: u64,
    },
    /// The round's members do not include the identity's challenge.
    #[error("the identity's challenge is not a member of PoET {poet} round {round}")]
    NotAMember { poet: PoetId, round: u64 },
    /// The membership proof does not fold to the round's statement.
    #[error("the membership proof of PoET {poet} round {round} does not fold to its statement")]
    MembershipInvalid { poet: PoetId, round: u64 },
}

/// Everything [`prepare_challenge`](super::prepare_challenge), [`register`](super::register),
/// [`best_poet_proof`](super::best_poet_proof) and [`publish`](super::publish) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SmeshingError {
    /// The node's clock parameters are not usable.
    #[error("identity {node_id}: the node's clock parameters are invalid: {source}")]
    ClockParams {
        node_id: NodeId,
        #[source]
        source: ClockParamsError,
    },
    /// The builder timeline could not be computed.
    #[error("identity {node_id}: builder timeline: {source}")]
    Timeline {
        node_id: NodeId,
        #[source]
        source: ClockError,
    },
    /// A node query failed before the publish epoch was known.
    #[error("identity {node_id}: {step}: {source}")]
    NodeQuery {
        node_id: NodeId,
        step: &'static str,
        #[source]
        source: Box<BridgeError>,
    },
    /// A node call failed.
    #[error("identity {node_id}, publish epoch {publish_epoch}: {step}: {source}")]
    Node {
        node_id: NodeId,
        publish_epoch: u32,
        step: &'static str,
        #[source]
        source: Box<BridgeError>,
    },
    /// The identity has no ATX yet and the caller supplied no initial PoST.
    #[error("identity {node_id}, publish epoch {publish_epoch}: an initial ATX needs the initial PoST")]
    MissingInitialPost { node_id: NodeId, publish_epoch: u32 },
    /// The identity's previous ATX is at the end of the sequence numbers.
    #[error(
        "identity {node_id}, publish epoch {publish_epoch}: the previous ATX's sequence number overflows"
    )]
    SequenceOverflow { node_id: NodeId, publish_epoch: u32 },
    /// The caller's inputs contradict each other.
    #[error("identity {node_id}, publish epoch {publish_epoch}: {reason}")]
    InvalidInput {
        node_id: NodeId,
        publish_epoch: u32,
        reason: &'static str,
    },
    /// The keystore refused to sign (unknown identity, permit mismatch).
    #[error("identity {node_id}, publish epoch {publish_epoch}: signing the {what}: {source}")]
    Sign {
        node_id: NodeId,
        publish_epoch: u32,
        what: &'static str,
        #[source]
        source: Box<KeystoreError>,
    },
    /// The node lists no PoET (of the cycle's phase).
    #[error(
        "identity {node_id}, publish epoch {publish_epoch}: the node lists no PoET for this cycle's round"
    )]
    NoPoets { node_id: NodeId, publish_epoch: u32 },
    /// No PoET accepted the identity's registration.
    #[error("identity {node_id}, publish epoch {publish_epoch}: no PoET accepted the registration")]
    NotRegistered { node_id: NodeId, publish_epoch: u32 },
    /// A registered round has not ended yet: ask again after `round_end_ms`.
    #[error("identity {node_id}, publish epoch {publish_epoch}: PoET {poet} round {round} ends at {round_end_ms} ms")]
    RoundNotEnded {
        node_id: NodeId,
        publish_epoch: u32,
        poet: PoetId,
        round: u64,
        round_end_ms: u64,
    },
    /// Every registered PoET failed to give a usable proof.
    #[error("identity {node_id}, publish epoch {publish_epoch}: no usable PoET proof ({} PoET(s) failed)", failures.len())]
    NoPoetProof {
        node_id: NodeId,
        publish_epoch: u32,
        failures: Vec<PoetFailure>,
    },
    /// The publish epoch has not started.
    #[error("identity {node_id}, publish epoch {publish_epoch}: too early to publish ({now_ms} ms < {not_before_ms} ms)")]
    TooEarly {
        node_id: NodeId,
        publish_epoch: u32,
        now_ms: u64,
        not_before_ms: u64,
    },
    /// The publish epoch is over: the challenge has expired.
    #[error("identity {node_id}, publish epoch {publish_epoch}: the challenge expired at {deadline_ms} ms (now {now_ms} ms)")]
    Expired {
        node_id: NodeId,
        publish_epoch: u32,
        now_ms: u64,
        deadline_ms: u64,
    },
    /// The safety database refused: signing this ATX would be slashable. Nothing was signed.
    #[error(
        "identity {node_id}, publish epoch {publish_epoch}: the safety database refused ATX {}: {reason}",
        hex::encode(atx_id)
    )]
    NotSafe {
        node_id: NodeId,
        publish_epoch: u32,
        atx_id: AtxId,
        reason: NotSafeReason,
    },
    /// The safety database could not answer. Nothing was signed.
    #[error("identity {node_id}, publish epoch {publish_epoch}: safety database: {source}")]
    SafetyDatabase {
        node_id: NodeId,
        publish_epoch: u32,
        #[source]
        source: Box<StoreError>,
    },
    /// The builder's cycle state could not be read or written (prepared challenge, PoET
    /// registrations).
    #[error("identity {node_id}, publish epoch {publish_epoch}: store ({what}): {source}")]
    Store {
        node_id: NodeId,
        publish_epoch: u32,
        what: &'static str,
        #[source]
        source: Box<StoreError>,
    },
    /// The challenge stored for the cycle is unusable (does not decode, or does not fit what the
    /// node says about the identity now). Nothing was registered with it.
    #[error("identity {node_id}, publish epoch {publish_epoch}: the stored challenge is unusable: {reason}")]
    StoredChallengeInvalid {
        node_id: NodeId,
        publish_epoch: u32,
        reason: String,
    },
    /// The keystore's ATX signature does not verify as the node checks it (nothing submitted).
    #[error(
        "identity {node_id}, publish epoch {publish_epoch}: the signature of ATX {} does not verify",
        hex::encode(atx_id)
    )]
    SignatureInvalid {
        node_id: NodeId,
        publish_epoch: u32,
        atx_id: AtxId,
    },
}

impl SmeshingError {
    /// Maps a node failure at `step` of `node_id`'s cycle for `publish_epoch`.
    pub(crate) fn node(
        node_id: NodeId,
        publish_epoch: u32,
        step: &'static str,
    ) -> impl FnOnce(BridgeError) -> SmeshingError {
        move |source| SmeshingError::Node {
            node_id,
            publish_epoch,
            step,
            source: Box::new(source),
        }
    }

    /// Maps a store failure while doing `what` for `node_id`'s cycle for `publish_epoch`.
    pub(crate) fn store(
        node_id: NodeId,
        publish_epoch: u32,
        what: &'static str,
    ) -> impl FnOnce(StoreError) -> SmeshingError {
        move |source| SmeshingError::Store {
            node_id,
            publish_epoch,
            what,
            source: Box::new(source),
        }
    }
}
