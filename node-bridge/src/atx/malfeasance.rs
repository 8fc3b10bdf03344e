//! Malfeasance v1 (spec/devnet.md §4, spec/node.md §2.7): MultipleATXs (type 1, two
//! different ATXs of one smesher in one publish epoch), MultipleBallots (type 2, two different
//! ballots of one smesher in one layer), InvalidPostIndex (type 4, an ATX whose
//! NIPoST PoST has an index that fails the difficulty check) and InvalidPrevATX (type 5, two
//! different ATXs of one smesher naming the same previous ATX; two initial ATXs count, their
//! previous being the empty id).
//!
//! Wire forms (best reading of go-spacemesh's `malfeasance/wire`, not in the spec):
//! `AtxProofMsg = {InnerMsg: ATXMetadata{PublishEpoch compact, MsgHash [32]}, SmesherID [32],
//! Signature [64]}`, `AtxProof = {Messages [2]AtxProofMsg}` (a fixed array: no length),
//! `BallotProofMsg = {InnerMsg: BallotMetadata{Layer compact, MsgHash [32]}, SmesherID [32],
//! Signature [64]}`, `BallotProof = {Messages [2]BallotProofMsg}`,
//! `InvalidPostIndexProof = {Atx ActivationTxV1, InvalidIdx compact u32}`,
//! `InvalidPrevATXProof = {Atx1, Atx2 ActivationTxV1}`. The outer gossip container
//! (`MalfeasanceProof{Layer, Proof{Type, Data}}`) is not implemented here; [`MalfeasanceProof`]
//! encodes as the type byte followed by the proof.

use post::pow::PowVerifier;
use post::proof::ProofMetadata;
use post::verify::{verify, Mode, VerifyError, VerifyOptions};

use crate::ballot::{ballot_signing_message, Ballot, BallotMetadata};
use crate::clock::LayerId;
use crate::codec::{DecodeError, Decoder, Encoder};

use super::ids::{metadata_signing_bytes, verify_atx_signature, verify_signature, GenesisId};
use super::validate::AtxParams;
use super::wire::{ActivationTxV1, AtxId, AtxMetadata, Epoch, NodeId, Scale};

/// v1 type byte of a MultipleATXs proof.
pub const MULTIPLE_ATXS: u8 = 1;
/// v1 type byte of a MultipleBallots proof.
pub const MULTIPLE_BALLOTS: u8 = 2;
/// v1 type byte of an InvalidPostIndex proof.
pub const INVALID_POST_INDEX: u8 = 4;
/// v1 type byte of an InvalidPrevATX proof.
pub const INVALID_PREV_ATX: u8 = 5;

/// One signed `{PublishEpoch, ATX ID}`: what an ATX signature covers, with its signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AtxProofMsg {
    pub inner: AtxMetadata,
    pub smesher_id: NodeId,
    pub signature: [u8; 64],
}

impl AtxProofMsg {
    /// The signed metadata of `atx`.
    pub fn of(atx: &ActivationTxV1) -> Self {
        Self {
            inner: AtxMetadata {
                publish_epoch: atx.publish_epoch(),
                msg_hash: atx.id(),
            },
            smesher_id: atx.smesher_id,
            signature: atx.signature,
        }
    }

    /// Whether the signature is the smesher's over `genesis_id ‖ 0x00 ‖ SCALE(inner)`.
    pub fn verify(&self, genesis_id: &GenesisId) -> bool {
        verify_signature(
            &self.smesher_id,
            &metadata_signing_bytes(genesis_id, &self.inner),
            &self.signature,
        )
    }
}

impl Scale for AtxProofMsg {
    fn encode_to(&self, e: &mut Encoder) {
        self.inner.encode_to(e);
        e.array(&self.smesher_id);
        e.array(&self.signature);
    }

    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            inner: AtxMetadata::decode_from(d)?,
            smesher_id: d.array("atx proof smesher id")?,
            signature: d.array("atx proof signature")?,
        })
    }
}

/// Two different ATXs of one smesher in one publish epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MultipleAtxsProof {
    pub messages: [AtxProofMsg; 2],
}

/// One signed `{Layer, hash of the inner ballot}`: what a ballot signature covers, with its
/// signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BallotProofMsg {
    pub inner: BallotMetadata,
    pub smesher_id: NodeId,
    pub signature: [u8; 64],
}

impl BallotProofMsg {
    /// The signed metadata of `ballot`.
    pub fn of(ballot: &Ballot) -> Self {
        Self {
            inner: ballot.metadata(),
            smesher_id: ballot.smesher_id,
            signature: ballot.signature,
        }
    }

    /// Whether the signature is the smesher's over `genesis_id ‖ 0x02 ‖ SCALE(inner)`.
    pub fn verify(&self, genesis_id: &GenesisId) -> bool {
        verify_signature(
            &self.smesher_id,
            &ballot_signing_message(genesis_id, &self.inner.to_bytes()),
            &self.signature,
        )
    }
}

impl Scale for BallotProofMsg {
    fn encode_to(&self, e: &mut Encoder) {
        self.inner.encode_to(e);
        e.array(&self.smesher_id);
        e.array(&self.signature);
    }

    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            inner: BallotMetadata::decode_from(d)?,
            smesher_id: d.array("ballot proof smesher id")?,
            signature: d.array("ballot proof signature")?,
        })
    }
}

/// Two different ballots of one smesher in one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MultipleBallotsProof {
    pub messages: [BallotProofMsg; 2],
}

/// Two different ATXs of one smesher that name the same previous ATX.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InvalidPrevAtxProof {
    pub atx1: ActivationTxV1,
    pub atx2: ActivationTxV1,
}

/// A signed ATX whose NIPoST PoST fails the difficulty check at position `invalid_idx` of its
/// indices.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InvalidPostIndexProof {
    pub atx: ActivationTxV1,
    pub invalid_idx: u32,
}

/// What checking an [`InvalidPostIndexProof`] needs besides the proof: the network's PoST
/// parameters, the identity's commitment ATX (its data's) and a k2pow verifier.
#[derive(Clone, Copy)]
pub struct PostCheck<'a> {
    pub params: &'a AtxParams,
    pub commitment_atx_id: AtxId,
    pub pow: &'a dyn PowVerifier,
}

/// A proof that an identity is malicious.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MalfeasanceProof {
    MultipleAtxs(Box<MultipleAtxsProof>),
    MultipleBallots(Box<MultipleBallotsProof>),
    InvalidPostIndex(Box<InvalidPostIndexProof>),
    InvalidPrevAtx(Box<InvalidPrevAtxProof>),
}

/// Why a malfeasance proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalfeasanceError {
    #[error("the two messages are signed by different smeshers")]
    DifferentSmeshers,
    #[error("signature of message {which} is invalid")]
    InvalidSignature { which: usize },
    #[error("publish epochs differ: {first} and {second}")]
    DifferentEpochs { first: Epoch, second: Epoch },
    #[error("layers differ: {first} and {second}")]
    DifferentLayers { first: LayerId, second: LayerId },
    #[error("both messages are about the same ballot")]
    SameBallot,
    #[error("previous ATXs differ")]
    DifferentPrevAtx,
    #[error("both messages are about the same ATX")]
    SameAtx,
    #[error("unknown malfeasance type {0}")]
    UnknownType(u8),
    #[error("the ATX has no NIPoST PoST with its metadata")]
    NoPost,
    #[error("index {index} of the PoST passes the difficulty check: the proof is void")]
    IndexValid { index: u32 },
    #[error("the PoST cannot be checked at index {index}: {reason}")]
    PostUncheckable { index: u32, reason: String },
    #[error("an InvalidPostIndex proof is checked with the PoST parameters and the commitment ATX")]
    NeedsPostCheck,
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A MultipleATXs proof when `a` and `b` are different ATXs of one smesher in one epoch.
pub fn detect_multiple_atxs(a: &ActivationTxV1, b: &ActivationTxV1) -> Option<MultipleAtxsProof> {
    (a.smesher_id == b.smesher_id && a.publish_epoch() == b.publish_epoch() && a.id() != b.id()).then(|| {
        MultipleAtxsProof {
            messages: [AtxProofMsg::of(a), AtxProofMsg::of(b)],
        }
    })
}

/// An InvalidPrevATX proof when `a` and `b` are different ATXs of one smesher with the same
/// previous ATX.
pub fn detect_invalid_prev_atx(a: &ActivationTxV1, b: &ActivationTxV1) -> Option<InvalidPrevAtxProof> {
    (a.smesher_id == b.smesher_id
        && a.inner.challenge.prev_atx_id == b.inner.challenge.prev_atx_id
        && a.id() != b.id())
    .then(|| InvalidPrevAtxProof {
        atx1: a.clone(),
        atx2: b.clone(),
    })
}

/// Whichever proof two ATXs make (MultipleATXs first), if any.
pub fn detect(a: &ActivationTxV1, b: &ActivationTxV1) -> Option<MalfeasanceProof> {
    detect_multiple_atxs(a, b)
        .map(|p| MalfeasanceProof::MultipleAtxs(Box::new(p)))
        .or_else(|| detect_invalid_prev_atx(a, b).map(|p| MalfeasanceProof::InvalidPrevAtx(Box::new(p))))
}

impl MultipleAtxsProof {
    /// Check the proof; returns the malicious identity.
    pub fn verify(&self, genesis_id: &GenesisId) -> Result<NodeId, MalfeasanceError> {
        let [m1, m2] = &self.messages;
        if m1.smesher_id != m2.smesher_id {
            return Err(MalfeasanceError::DifferentSmeshers);
        }
        for (which, m) in self.messages.iter().enumerate() {
            if !m.verify(genesis_id) {
                return Err(MalfeasanceError::InvalidSignature { which });
            }
        }
        if m1.inner.publish_epoch != m2.inner.publish_epoch {
            return Err(MalfeasanceError::DifferentEpochs {
                first: m1.inner.publish_epoch,
                second: m2.inner.publish_epoch,
            });
        }
        if m1.inner.msg_hash == m2.inner.msg_hash {
            return Err(MalfeasanceError::SameAtx);
        }
        Ok(m1.smesher_id)
    }
}

/// A MultipleBallots proof when `a` and `b` are different ballots of one smesher in one layer
/// (`[a, b]`: the one known first, then the new one).
pub fn detect_multiple_ballots(a: &Ballot, b: &Ballot) -> Option<MultipleBallotsProof> {
    let (ma, mb) = (BallotProofMsg::of(a), BallotProofMsg::of(b));
    (a.smesher_id == b.smesher_id && a.layer == b.layer && ma.inner.msg_hash != mb.inner.msg_hash)
        .then_some(MultipleBallotsProof { messages: [ma, mb] })
}

impl MultipleBallotsProof {
    /// Check the proof on its own (spec/devnet.md §4): same smesher, both signatures valid in
    /// the ballot domain, same layer, different hashes. Returns the malicious identity; whether
    /// the identity is known is the caller's check.
    pub fn verify(&self, genesis_id: &GenesisId) -> Result<NodeId, MalfeasanceError> {
        let [m1, m2] = &self.messages;
        if m1.smesher_id != m2.smesher_id {
            return Err(MalfeasanceError::DifferentSmeshers);
        }
        for (which, m) in self.messages.iter().enumerate() {
            if !m.verify(genesis_id) {
                return Err(MalfeasanceError::InvalidSignature { which });
            }
        }
        if m1.inner.layer != m2.inner.layer {
            return Err(MalfeasanceError::DifferentLayers {
                first: m1.inner.layer,
                second: m2.inner.layer,
            });
        }
        if m1.inner.msg_hash == m2.inner.msg_hash {
            return Err(MalfeasanceError::SameBallot);
        }
        Ok(m1.smesher_id)
    }
}

impl InvalidPrevAtxProof {
    /// Check the proof; returns the malicious identity.
    pub fn verify(&self, genesis_id: &GenesisId) -> Result<NodeId, MalfeasanceError> {
        if self.atx1.smesher_id != self.atx2.smesher_id {
            return Err(MalfeasanceError::DifferentSmeshers);
        }
        for (which, atx) in [&self.atx1, &self.atx2].into_iter().enumerate() {
            if !verify_atx_signature(genesis_id, atx) {
                return Err(MalfeasanceError::InvalidSignature { which });
            }
        }
        if self.atx1.inner.challenge.prev_atx_id != self.atx2.inner.challenge.prev_atx_id {
            return Err(MalfeasanceError::DifferentPrevAtx);
        }
        if self.atx1.id() == self.atx2.id() {
            return Err(MalfeasanceError::SameAtx);
        }
        Ok(self.atx1.smesher_id)
    }
}

impl InvalidPostIndexProof {
    /// The proof for an ATX whose NIPoST PoST failed at position `index_id` of its indices, as
    /// the verifier reported it.
    pub fn from_failure(atx: &ActivationTxV1, failure: &VerifyError) -> Option<Self> {
        let index_id = match failure {
            VerifyError::InvalidMsb { index_id, .. } | VerifyError::InvalidLsb { index_id, .. } => *index_id,
            _ => return None,
        };
        Some(InvalidPostIndexProof {
            atx: atx.clone(),
            invalid_idx: u32::try_from(index_id).ok()?,
        })
    }

    /// Check the proof (spec/devnet.md §4): the ATX's signature, then that one index of its
    /// NIPoST PoST recomputed against the identity's commitment must fail the difficulty check;
    /// the proof is void if it passes (or cannot be checked). Returns the malicious identity.
    pub fn verify(&self, genesis_id: &GenesisId, check: &PostCheck<'_>) -> Result<NodeId, MalfeasanceError> {
        if !verify_atx_signature(genesis_id, &self.atx) {
            return Err(MalfeasanceError::InvalidSignature { which: 0 });
        }
        let inner = &self.atx.inner;
        let nipost = inner.nipost.as_ref().ok_or(MalfeasanceError::NoPost)?;
        let (Some(post), Some(metadata)) = (nipost.post.as_ref(), nipost.post_metadata.as_ref()) else {
            return Err(MalfeasanceError::NoPost);
        };
        let meta = ProofMetadata {
            node_id: self.atx.smesher_id,
            commitment_atx_id: check.commitment_atx_id,
            challenge: metadata.challenge,
            num_units: inner.num_units,
            labels_per_unit: metadata.labels_per_unit,
        };
        let index = self.invalid_idx;
        let result = verify(
            &post.to_proof(),
            &meta,
            &check.params.proof_config(),
            &check.params.init_config(),
            &Mode::One {
                index: index as usize,
            },
            &VerifyOptions::default(),
            check.pow,
        );
        match result {
            Err(VerifyError::InvalidMsb { index_id, .. } | VerifyError::InvalidLsb { index_id, .. })
                if index_id == index as usize =>
            {
                Ok(self.atx.smesher_id)
            }
            Ok(()) => Err(MalfeasanceError::IndexValid { index }),
            Err(e) => Err(MalfeasanceError::PostUncheckable {
                index,
                reason: e.to_string(),
            }),
        }
    }
}

impl MalfeasanceProof {
    /// The v1 type byte.
    pub fn kind(&self) -> u8 {
        match self {
            MalfeasanceProof::MultipleAtxs(_) => MULTIPLE_ATXS,
            MalfeasanceProof::MultipleBallots(_) => MULTIPLE_BALLOTS,
            MalfeasanceProof::InvalidPostIndex(_) => INVALID_POST_INDEX,
            MalfeasanceProof::InvalidPrevAtx(_) => INVALID_PREV_ATX,
        }
    }

    /// The identity the proof is against (as claimed; [`MalfeasanceProof::verify`] checks it).
    pub fn smesher_id(&self) -> NodeId {
        match self {
            MalfeasanceProof::MultipleAtxs(p) => p.messages[0].smesher_id,
            MalfeasanceProof::MultipleBallots(p) => p.messages[0].smesher_id,
            MalfeasanceProof::InvalidPostIndex(p) => p.atx.smesher_id,
            MalfeasanceProof::InvalidPrevAtx(p) => p.atx1.smesher_id,
        }
    }

    /// Check the proof (signatures, same smesher, same epoch or previous, different ATXs);
    /// returns the malicious identity. Whether the identity is known is the caller's check. An
    /// InvalidPostIndex proof needs [`MalfeasanceProof::verify_with`].
    pub fn verify(&self, genesis_id: &GenesisId) -> Result<NodeId, MalfeasanceError> {
        self.verify_with(genesis_id, None)
    }

    /// [`MalfeasanceProof::verify`], with what an InvalidPostIndex proof is checked with.
    pub fn verify_with(
        &self,
        genesis_id: &GenesisId,
        post: Option<&PostCheck<'_>>,
    ) -> Result<NodeId, MalfeasanceError> {
        match self {
            MalfeasanceProof::MultipleAtxs(p) => p.verify(genesis_id),
            MalfeasanceProof::MultipleBallots(p) => p.verify(genesis_id),
            MalfeasanceProof::InvalidPostIndex(p) => match post {
                Some(check) => p.verify(genesis_id, check),
                None => Err(MalfeasanceError::NeedsPostCheck),
            },
            MalfeasanceProof::InvalidPrevAtx(p) => p.verify(genesis_id),
        }
    }

    /// Decode the type byte and the proof.
    pub fn decode(bytes: &[u8]) -> Result<Self, MalfeasanceError> {
        let mut d = Decoder::new(bytes);
        let proof = match d.u8("malfeasance type")? {
            MULTIPLE_ATXS => MalfeasanceProof::MultipleAtxs(Box::new(MultipleAtxsProof {
                messages: [
                    AtxProofMsg::decode_from(&mut d)?,
                    AtxProofMsg::decode_from(&mut d)?,
                ],
            })),
            MULTIPLE_BALLOTS => MalfeasanceProof::MultipleBallots(Box::new(MultipleBallotsProof {
                messages: [
                    BallotProofMsg::decode_from(&mut d)?,
                    BallotProofMsg::decode_from(&mut d)?,
                ],
            })),
            INVALID_POST_INDEX => MalfeasanceProof::InvalidPostIndex(Box::new(InvalidPostIndexProof {
                atx: ActivationTxV1::decode_from(&mut d)?,
                invalid_idx: d
                    .compact_max(u64::from(u32::MAX), "invalid post index")
                    .map(|v| v as u32)?,
            })),
            INVALID_PREV_ATX => MalfeasanceProof::InvalidPrevAtx(Box::new(InvalidPrevAtxProof {
                atx1: ActivationTxV1::decode_from(&mut d)?,
                atx2: ActivationTxV1::decode_from(&mut d)?,
            })),
            other => return Err(MalfeasanceError::UnknownType(other)),
        };
        d.finish()?;
        Ok(proof)
    }

    /// The type byte, then the proof.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u8(self.kind());
        match self {
            MalfeasanceProof::MultipleAtxs(p) => {
                p.messages[0].encode_to(&mut e);
                p.messages[1].encode_to(&mut e);
            }
            MalfeasanceProof::MultipleBallots(p) => {
                p.messages[0].encode_to(&mut e);
                p.messages[1].encode_to(&mut e);
            }
            MalfeasanceProof::InvalidPostIndex(p) => {
                p.atx.encode_to(&mut e);
                e.compact(u64::from(p.invalid_idx));
            }
            MalfeasanceProof::InvalidPrevAtx(p) => {
                p.atx1.encode_to(&mut e);
                p.atx2.encode_to(&mut e);
            }
        }
        e.finish()
    }
}

/// The ATX ids a proof is about (two, one for an InvalidPostIndex proof, none for a
/// MultipleBallots proof: see [`ballot_hashes`]).
pub fn atx_ids(proof: &MalfeasanceProof) -> Vec<AtxId> {
    match proof {
        MalfeasanceProof::MultipleAtxs(p) => vec![p.messages[0].inner.msg_hash, p.messages[1].inner.msg_hash],
        MalfeasanceProof::MultipleBallots(_) => Vec::new(),
        MalfeasanceProof::InvalidPostIndex(p) => vec![p.atx.id()],
        MalfeasanceProof::InvalidPrevAtx(p) => vec![p.atx1.id(), p.atx2.id()],
    }
}

/// The two inner-ballot hashes of a MultipleBallots proof (none for the other kinds).
pub fn ballot_hashes(proof: &MalfeasanceProof) -> Vec<[u8; 32]> {
    match proof {
        MalfeasanceProof::MultipleBallots(p) => {
            vec![p.messages[0].inner.msg_hash, p.messages[1].inner.msg_hash]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atx::testkit::{alice, bob, genesis, MapLookup};
    use crate::atx::wire::InnerActivationTxV1;

    /// Two ATXs of `alice` in epoch 1 that differ only in coinbase (cheap: no proving).
    fn pair() -> (ActivationTxV1, ActivationTxV1) {
        let a = alice();
        let mut lookup = MapLookup::at(1);
        let inner: InnerActivationTxV1 = a.initial(1, 1);
        let mut other = inner.clone();
        other.coinbase = [0xee; 24];
        (a.seal(inner, &mut lookup), a.seal(other, &mut lookup))
    }

    #[test]
    fn double_publish_is_detected_and_proved() {
        let (x, y) = pair();
        let p = detect_multiple_atxs(&x, &y).expect("double publish");
        assert_eq!(p.verify(&genesis()), Ok(alice().node_id));
        let whole = detect(&x, &y).expect("a proof");
        assert_eq!(whole.kind(), MULTIPLE_ATXS);
        assert_eq!(whole.verify(&genesis()), Ok(alice().node_id));
        assert_eq!(atx_ids(&whole), [x.id(), y.id()]);
        // Round trip of the encoded proof.
        let back = MalfeasanceProof::decode(&whole.encode()).expect("decode");
        assert_eq!(back, whole);
        // Same ATX twice, or different epochs/smeshers: nothing.
        assert!(detect_multiple_atxs(&x, &x).is_none());
        assert!(detect(&x, &x).is_none());
        let mut later = x.inner.clone();
        later.challenge.publish_epoch = 2;
        let later = alice().sign(later);
        assert!(detect_multiple_atxs(&x, &later).is_none());
        let theirs = bob().sign(y.inner.clone());
        assert!(detect_multiple_atxs(&x, &theirs).is_none());
    }

    #[test]
    fn forged_double_publish_proofs_fail() {
        let (x, y) = pair();
        let good = detect_multiple_atxs(&x, &y).expect("proof");
        let gid = genesis();

        let mut p = good;
        p.messages[1].signature[5] ^= 1;
        assert_eq!(
            p.verify(&gid),
            Err(MalfeasanceError::InvalidSignature { which: 1 })
        );

        let mut p = good;
        p.messages[0].inner.msg_hash[0] ^= 1;
        assert_eq!(
            p.verify(&gid),
            Err(MalfeasanceError::InvalidSignature { which: 0 })
        );

        let mut p = good;
        p.messages[1].smesher_id = bob().node_id;
        assert_eq!(p.verify(&gid), Err(MalfeasanceError::DifferentSmeshers));

        let p = MultipleAtxsProof {
            messages: [good.messages[0], good.messages[0]],
        };
        assert_eq!(p.verify(&gid), Err(MalfeasanceError::SameAtx));

        // Different epochs, both validly signed.
        let mut later = x.inner.clone();
        later.challenge.publish_epoch = 2;
        let later = alice().sign(later);
        let p = MultipleAtxsProof {
            messages: [AtxProofMsg::of(&x), AtxProofMsg::of(&later)],
        };
        assert_eq!(
            p.verify(&gid),
            Err(MalfeasanceError::DifferentEpochs { first: 1, second: 2 })
        );

        // Another network's genesis.
        assert_eq!(
            good.verify(&[0; 20]),
            Err(MalfeasanceError::InvalidSignature { which: 0 })
        );
    }

    #[test]
    fn two_successors_of_one_atx_are_proved() {
        let a = alice();
        let (x, _) = pair();
        // Two different ATXs in epochs 2 and 3 both naming x as previous.
        let mut s1 = x.inner.clone();
        s1.challenge.prev_atx_id = x.id();
        s1.challenge.sequence = 1;
        s1.challenge.publish_epoch = 2;
        let mut s2 = s1.clone();
        s2.challenge.publish_epoch = 3;
        let (s1, s2) = (a.sign(s1), a.sign(s2));
        assert!(detect_multiple_atxs(&s1, &s2).is_none());
        let p = detect_invalid_prev_atx(&s1, &s2).expect("invalid prev");
        assert_eq!(p.verify(&genesis()), Ok(a.node_id));
        let whole = detect(&s1, &s2).expect("proof");
        assert_eq!(whole.kind(), INVALID_PREV_ATX);
        assert_eq!(MalfeasanceProof::decode(&whole.encode()).expect("decode"), whole);

        let mut bad = p.clone();
        bad.atx2.signature[0] ^= 1;
        assert_eq!(
            bad.verify(&genesis()),
            Err(MalfeasanceError::InvalidSignature { which: 1 })
        );
        let mut bad = p.clone();
        bad.atx2 = bob().sign(s2.inner.clone());
        assert_eq!(bad.verify(&genesis()), Err(MalfeasanceError::DifferentSmeshers));
        let mut other_prev = s2.inner.clone();
        other_prev.challenge.prev_atx_id = [9; 32];
        let bad = InvalidPrevAtxProof {
            atx1: s1.clone(),
            atx2: a.sign(other_prev),
        };
        assert_eq!(bad.verify(&genesis()), Err(MalfeasanceError::DifferentPrevAtx));
        let bad = InvalidPrevAtxProof {
            atx1: s1.clone(),
            atx2: s1.clone(),
        };
        assert_eq!(bad.verify(&genesis()), Err(MalfeasanceError::SameAtx));
    }

    /// A ballot of `who` in `layer`, signed for the test genesis (its proofs are not checked
    /// here: only the signed metadata matters to a MultipleBallots proof).
    fn ballot(who: &crate::atx::testkit::Identity, layer: u32, opinion: u8) -> Ballot {
        use ed25519_dalek::Signer;
        let mut b = Ballot {
            layer,
            atx_id: [1; 32],
            opinion_hash: [opinion; 32],
            epoch_data: None,
            ref_ballot: Some([2; 20]),
            eligibility_proofs: vec![crate::ballot::VotingEligibility { j: 0, sig: [3; 80] }],
            smesher_id: who.node_id,
            signature: [0; 64],
        };
        b.signature = who
            .key
            .sign(&ballot_signing_message(&genesis(), &b.signed_bytes()))
            .to_bytes();
        b
    }

    #[test]
    fn double_ballots_are_detected_and_proved() {
        let (x, y) = (ballot(alice(), 30, 0), ballot(alice(), 30, 1));
        let p = detect_multiple_ballots(&x, &y).expect("double ballot");
        assert_eq!(p.verify(&genesis()), Ok(alice().node_id));
        let whole = MalfeasanceProof::MultipleBallots(Box::new(p));
        assert_eq!(whole.kind(), MULTIPLE_BALLOTS);
        assert_eq!(whole.smesher_id(), alice().node_id);
        assert_eq!(whole.verify(&genesis()), Ok(alice().node_id));
        assert_eq!(MalfeasanceProof::decode(&whole.encode()), Ok(whole.clone()));
        assert_eq!(
            ballot_hashes(&whole),
            [x.metadata().msg_hash, y.metadata().msg_hash]
        );
        assert!(atx_ids(&whole).is_empty());
        // The same ballot, another layer, another smesher: nothing.
        assert!(detect_multiple_ballots(&x, &x).is_none());
        assert!(detect_multiple_ballots(&x, &ballot(alice(), 31, 1)).is_none());
        assert!(detect_multiple_ballots(&x, &ballot(bob(), 30, 1)).is_none());

        // Forgeries.
        let gid = genesis();
        let mut bad = p;
        bad.messages[1].signature[0] ^= 1;
        assert_eq!(
            bad.verify(&gid),
            Err(MalfeasanceError::InvalidSignature { which: 1 })
        );
        let mut bad = p;
        bad.messages[0].inner.msg_hash[0] ^= 1;
        assert_eq!(
            bad.verify(&gid),
            Err(MalfeasanceError::InvalidSignature { which: 0 })
        );
        let mut bad = p;
        bad.messages[1].smesher_id = bob().node_id;
        assert_eq!(bad.verify(&gid), Err(MalfeasanceError::DifferentSmeshers));
        let bad = MultipleBallotsProof {
            messages: [p.messages[0], p.messages[0]],
        };
        assert_eq!(bad.verify(&gid), Err(MalfeasanceError::SameBallot));
        let bad = MultipleBallotsProof {
            messages: [p.messages[0], BallotProofMsg::of(&ballot(alice(), 31, 1))],
        };
        assert_eq!(
            bad.verify(&gid),
            Err(MalfeasanceError::DifferentLayers {
                first: 30,
                second: 31
            })
        );
        // Another network, or the ATX domain: invalid.
        assert_eq!(
            p.verify(&[0; 20]),
            Err(MalfeasanceError::InvalidSignature { which: 0 })
        );
        let mut atx_domain = p;
        for m in &mut atx_domain.messages {
            let md = crate::atx::wire::AtxMetadata {
                publish_epoch: m.inner.layer,
                msg_hash: m.inner.msg_hash,
            };
            use ed25519_dalek::Signer;
            m.signature = alice().key.sign(&metadata_signing_bytes(&gid, &md)).to_bytes();
        }
        assert_eq!(
            atx_domain.verify(&gid),
            Err(MalfeasanceError::InvalidSignature { which: 0 })
        );
    }

    #[test]
    fn bad_encodings_are_named() {
        assert_eq!(
            MalfeasanceProof::decode(&[7]),
            Err(MalfeasanceError::UnknownType(7))
        );
        assert!(matches!(
            MalfeasanceProof::decode(&[MULTIPLE_ATXS, 0]),
            Err(MalfeasanceError::Decode(_))
        ));
    }
}
