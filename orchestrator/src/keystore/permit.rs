//! The proof that the safety database answered Safe for one ATX signature (conventions item 10).

use super::NodeId;

/// Permission to sign exactly one ATX message for one identity and publish epoch.
///
/// [`Keystore::sign_atx`](super::Keystore::sign_atx) is the only way to make an ATX-domain signature,
/// and it consumes a permit. A permit is neither `Clone` nor `Copy`, so one permit signs at most
/// once, and it is bound to `blake3(message)` so it cannot sign another message.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a signing permit records that the safety database said Safe; use it with Keystore::sign_atx"]
pub struct SigningPermit {
    node_id: NodeId,
    publish_epoch: u32,
    message_hash: [u8; 32],
}

impl SigningPermit {
    /// Issues a permit.
    ///
    /// **Only the safety database (`store`) calls this**, and only after its exclusive transaction
    /// has recorded "identity `node_id` signs an ATX for `publish_epoch`" and answered Safe.
    /// `message_hash` is `blake3(message)`, where `message` is exactly the slice later passed to
    /// [`Keystore::sign_atx`](super::Keystore::sign_atx) (the ATX-domain payload, e.g.
    /// [`atx_v1_message`](super::atx_v1_message)). Calling it anywhere else defeats the slashing
    /// protection (node.md §2.7). It is `pub` only so that integration tests can build permits.
    pub fn granted(node_id: NodeId, publish_epoch: u32, message_hash: [u8; 32]) -> Self {
        Self {
            node_id,
            publish_epoch,
            message_hash,
        }
    }

    /// The identity allowed to sign.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The publish epoch the safety database recorded.
    pub fn publish_epoch(&self) -> u32 {
        self.publish_epoch
    }

    /// `blake3` of the message this permit allows to be signed.
    pub fn message_hash(&self) -> &[u8; 32] {
        &self.message_hash
    }
}

/// Permission to sign exactly one ballot message for one identity and layer (node.md §4: two
/// different ballots of one identity in one layer are a MultipleBallots offence).
///
/// [`Keystore::sign_ballot`](super::Keystore::sign_ballot) is the only way to make a ballot-domain
/// signature, and it consumes a permit, bound to `blake3(message)` like [`SigningPermit`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a ballot permit records that the safety database said Safe; use it with Keystore::sign_ballot"]
pub struct BallotPermit {
    node_id: NodeId,
    layer: u32,
    message_hash: [u8; 32],
}

impl BallotPermit {
    /// Issues a permit. **Only the safety database calls this**, after its exclusive transaction
    /// recorded "identity `node_id` signs the ballot `blake3(message)` for `layer`" and answered
    /// Safe. `pub` only so that integration tests can build permits.
    pub fn granted(node_id: NodeId, layer: u32, message_hash: [u8; 32]) -> Self {
        Self {
            node_id,
            layer,
            message_hash,
        }
    }

    /// The identity allowed to sign.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The layer the safety database recorded.
    pub fn layer(&self) -> u32 {
        self.layer
    }

    /// `blake3` of the message this permit allows to be signed.
    pub fn message_hash(&self) -> &[u8; 32] {
        &self.message_hash
    }
}
