//! Ballots (spec/devnet.md §3.2): what an eligible identity signs in each layer where it holds
//! slots, the VRF message its eligibility proofs are made over, and the signed bytes.
//!
//! Byte formats follow go-spacemesh v1 (`types.Ballot`, `types.BallotMetadata`,
//! `proposals/util.VrfMessage`) where the spec confirms them; the devnet's own choices are:
//!
//! - **Eligibility proofs inside the inner ballot.** go-spacemesh carries
//!   `EligibilityProofs` next to the inner ballot; here they are its last field, so the ballot's
//!   signature (and its id) covers them: a ballot cannot be replayed with other proofs.
//! - **Opinion hash zero.** The devnet has no tortoise, so there is no opinion to hash; honest
//!   ballots carry the zero hash. The node does not check it (two ballots of one layer that
//!   differ only in it are still two different ballots: an equivocation).
//! - **No votes, no active-set list.** A reference ballot names the active set by its hash only
//!   ([`active_set_hash`]); the node compares it with its own.
//!
//! ```text
//! inner     = compact32(layer) ‖ atx_id(32) ‖ opinion_hash(32) ‖ ref_ballot(20, zero for a
//!             reference ballot) ‖ option(EpochData: active_set_hash(32) ‖ beacon(4) ‖
//!             compact32(eligibility_count)) ‖ list(compact32(j) ‖ sig(80))
//! signed    = SCALE(BallotMetadata{layer, blake3(inner)}) = compact32(layer) ‖ blake3(inner)
//! id        = blake3(signed)[0..20]
//! signature = ed25519(genesis_id(20) ‖ DOMAIN_BALLOT ‖ signed)
//! encoding  = inner ‖ smesher_id(32) ‖ signature(64)
//! ```
//!
//! Nothing here holds a private key; [`crate::testkit`] has helpers that sign from a seed.

use crate::atx::{AtxId, NodeId, Scale};
/// The node's answer to a submitted ballot (defined with the bridge; here for convenience).
pub use crate::bridge::BallotSubmission;
use crate::clock::{EpochId, LayerId};
use crate::codec::{DecodeError, Decoder, Encoder};
use crate::vrf::VRF_PROOF_LEN;

/// A ballot's id: the first 20 bytes of `blake3(signed_bytes)`.
pub type BallotId = [u8; 20];

/// Signing domain of ballots (go-spacemesh `signing.BALLOT`).
pub const DOMAIN_BALLOT: u8 = 2;

/// `types.EligibilityVoting` (Beacon 1, Hare 2, Voting 3): the type field of a ballot's VRF
/// message.
pub const ELIGIBILITY_VOTING: u16 = 3;

/// Most eligibility proofs one ballot may carry on decode (the devnet's bound: a ballot holds
/// the proofs of one layer, at most the identity's slots).
pub const MAX_ELIGIBILITY_PROOFS: usize = 4_096;

/// What a reference ballot fixes for its epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochData {
    pub active_set_hash: [u8; 32],
    pub beacon: [u8; 4],
    /// The identity's slots in the epoch.
    pub eligibility_count: u32,
}

/// One slot's eligibility: its counter `j` and the VRF proof over [`vrf_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VotingEligibility {
    pub j: u32,
    pub sig: [u8; VRF_PROOF_LEN],
}

/// A signed ballot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ballot {
    pub layer: LayerId,
    pub atx_id: AtxId,
    /// The zero hash in the devnet (no tortoise; see the module docs).
    pub opinion_hash: [u8; 32],
    /// Exactly one of the two: the reference (first) ballot of the epoch carries EpochData, later
    /// ones name it.
    pub epoch_data: Option<EpochData>,
    pub ref_ballot: Option<BallotId>,
    /// This layer's proofs, ascending by `j`.
    pub eligibility_proofs: Vec<VotingEligibility>,
    pub smesher_id: NodeId,
    pub signature: [u8; 64],
}

/// What a ballot signature covers after the domain prefix (`types.BallotMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BallotMetadata {
    pub layer: LayerId,
    /// `blake3(inner_bytes)`.
    pub msg_hash: [u8; 32],
}

impl Scale for BallotMetadata {
    fn encode_to(&self, e: &mut Encoder) {
        e.compact(u64::from(self.layer));
        e.array(&self.msg_hash);
    }

    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            layer: compact32(d, "ballot metadata layer")?,
            msg_hash: d.array("ballot metadata hash")?,
        })
    }
}

/// Why a ballot is malformed regardless of the node's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BallotSyntaxError {
    #[error("the ballot carries both epoch data and a reference ballot")]
    BothEpochDataAndRef,
    #[error("the ballot carries neither epoch data nor a reference ballot")]
    NeitherEpochDataNorRef,
    #[error("the ballot carries no eligibility proof")]
    NoEligibilityProof,
}

fn compact32(d: &mut Decoder<'_>, what: &'static str) -> Result<u32, DecodeError> {
    d.compact_max(u64::from(u32::MAX), what).map(|v| v as u32)
}

impl Ballot {
    /// SCALE of the inner ballot (see the module docs).
    pub fn inner_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        self.encode_inner(&mut e);
        e.finish()
    }

    fn encode_inner(&self, e: &mut Encoder) {
        e.compact(u64::from(self.layer));
        e.array(&self.atx_id);
        e.array(&self.opinion_hash);
        e.array(&self.ref_ballot.unwrap_or([0; 20]));
        e.option(self.epoch_data.as_ref(), |e, d| {
            e.array(&d.active_set_hash);
            e.array(&d.beacon);
            e.compact(u64::from(d.eligibility_count));
        });
        e.list(&self.eligibility_proofs, |e, p| {
            e.compact(u64::from(p.j));
            e.array(&p.sig);
        });
    }

    /// The signed metadata: `{layer, blake3(inner_bytes)}`.
    pub fn metadata(&self) -> BallotMetadata {
        BallotMetadata {
            layer: self.layer,
            msg_hash: *blake3::hash(&self.inner_bytes()).as_bytes(),
        }
    }

    /// SCALE `BallotMetadata`: `compact32(layer) ‖ blake3(inner_bytes)`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        self.metadata().to_bytes()
    }

    /// `blake3(signed_bytes)[0..20]`.
    pub fn id(&self) -> BallotId {
        let mut id = [0u8; 20];
        id.copy_from_slice(&blake3::hash(&self.signed_bytes()).as_bytes()[..20]);
        id
    }

    /// `inner ‖ smesher_id ‖ signature`. A `ref_ballot` of `Some([0; 20])` encodes as none.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        self.encode_inner(&mut e);
        e.array(&self.smesher_id);
        e.array(&self.signature);
        e.finish()
    }

    /// The inverse of [`Ballot::encode`]; every byte must be read.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let layer = compact32(&mut d, "ballot layer")?;
        let atx_id = d.array("ballot atx id")?;
        let opinion_hash = d.array("ballot opinion hash")?;
        let r: BallotId = d.array("ballot ref ballot")?;
        let epoch_data = d.option("ballot epoch data", |d| {
            Ok(EpochData {
                active_set_hash: d.array("epoch data active set hash")?,
                beacon: d.array("epoch data beacon")?,
                eligibility_count: compact32(d, "epoch data eligibility count")?,
            })
        })?;
        let eligibility_proofs = d.list(MAX_ELIGIBILITY_PROOFS, "ballot eligibility proofs", |d| {
            Ok(VotingEligibility {
                j: compact32(d, "eligibility counter")?,
                sig: d.array("eligibility vrf proof")?,
            })
        })?;
        let smesher_id = d.array("ballot smesher id")?;
        let signature = d.array("ballot signature")?;
        d.finish()?;
        Ok(Ballot {
            layer,
            atx_id,
            opinion_hash,
            epoch_data,
            ref_ballot: (r != [0; 20]).then_some(r),
            eligibility_proofs,
            smesher_id,
            signature,
        })
    }

    /// The checks that need no state: exactly one of epoch data and reference ballot, at least
    /// one eligibility proof.
    pub fn check_syntax(&self) -> Result<(), BallotSyntaxError> {
        match (&self.epoch_data, &self.ref_ballot) {
            (Some(_), Some(_)) => return Err(BallotSyntaxError::BothEpochDataAndRef),
            (None, None) => return Err(BallotSyntaxError::NeitherEpochDataNorRef),
            _ => {}
        }
        if self.eligibility_proofs.is_empty() {
            return Err(BallotSyntaxError::NoEligibilityProof);
        }
        Ok(())
    }
}

/// SCALE `VrfMessage`: `compact16(ELIGIBILITY_VOTING) ‖ beacon(4) ‖ compact32(epoch) ‖
/// compact64(vrf_nonce) ‖ compact32(counter)`: what slot `counter`'s VRF proof is made over.
pub fn vrf_message(beacon: &[u8; 4], epoch: EpochId, vrf_nonce: u64, counter: u32) -> Vec<u8> {
    let mut e = Encoder::new();
    e.compact(u64::from(ELIGIBILITY_VOTING));
    e.array(beacon);
    e.compact(u64::from(epoch));
    e.compact(vrf_nonce);
    e.compact(u64::from(counter));
    e.finish()
}

/// `genesis_id(20) ‖ DOMAIN_BALLOT ‖ signed_bytes`: what a ballot's ed25519 signature covers.
pub fn ballot_signing_message(genesis_id: &[u8; 20], signed_bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(genesis_id.len() + 1 + signed_bytes.len());
    out.extend_from_slice(genesis_id);
    out.push(DOMAIN_BALLOT);
    out.extend_from_slice(signed_bytes);
    out
}

/// `blake3` of the active set's ATX ids, sorted ascending, concatenated.
pub fn active_set_hash(ids: &[AtxId]) -> [u8; 32] {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let mut h = blake3::Hasher::new();
    for id in &sorted {
        h.update(id);
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(reference: bool) -> Ballot {
        Ballot {
            layer: 30,
            atx_id: [1; 32],
            opinion_hash: [0; 32],
            epoch_data: reference.then_some(EpochData {
                active_set_hash: [2; 32],
                beacon: [3, 4, 5, 6],
                eligibility_count: 48,
            }),
            ref_ballot: (!reference).then_some([7; 20]),
            eligibility_proofs: vec![
                VotingEligibility { j: 3, sig: [8; 80] },
                VotingEligibility { j: 70, sig: [9; 80] },
            ],
            smesher_id: [10; 32],
            signature: [11; 64],
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        for reference in [true, false] {
            let b = sample(reference);
            let bytes = b.encode();
            assert_eq!(Ballot::decode(&bytes), Ok(b.clone()));
            assert_eq!(bytes.len(), b.inner_bytes().len() + 32 + 64);
            assert!(bytes.starts_with(&b.inner_bytes()));
            assert_eq!(b.check_syntax(), Ok(()));
        }
    }

    #[test]
    fn the_inner_layout_is_as_documented() {
        let b = sample(true);
        let inner = b.inner_bytes();
        // compact32(30) = 30 << 2.
        assert_eq!(inner[0], 120);
        assert_eq!(&inner[1..33], &[1; 32]);
        assert_eq!(&inner[33..65], &[0; 32]);
        assert_eq!(&inner[65..85], &[0; 20], "a reference ballot names no ref ballot");
        assert_eq!(inner[85], 1, "option tag of the epoch data");
        assert_eq!(&inner[86..118], &[2; 32]);
        assert_eq!(&inner[118..122], &[3, 4, 5, 6]);
        assert_eq!(inner[122], 48 << 2);
        assert_eq!(inner[123], 2 << 2, "two proofs");
        assert_eq!(inner[124], 3 << 2);
        assert_eq!(&inner[125..205], &[8; 80]);
        // j = 70 takes the two-byte compact form.
        assert_eq!(&inner[205..207], &[0x19, 0x01]);
        assert_eq!(inner.len(), 207 + 80);
        let signed = b.signed_bytes();
        assert_eq!(signed[0], 120);
        assert_eq!(&signed[1..], blake3::hash(&inner).as_bytes());
        assert_eq!(b.id()[..], blake3::hash(&signed).as_bytes()[..20]);
        assert_eq!(BallotMetadata::from_bytes(&signed), Ok(b.metadata()));
        let msg = ballot_signing_message(&[0xaa; 20], &signed);
        assert_eq!(
            (&msg[..20], msg[20], &msg[21..]),
            (&[0xaa; 20][..], DOMAIN_BALLOT, &signed[..])
        );
    }

    #[test]
    fn decode_rejects_trailing_bytes_and_truncation() {
        let bytes = sample(false).encode();
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Ballot::decode(&longer),
            Err(DecodeError::TrailingBytes { left: 1 })
        );
        for cut in [0, 1, 40, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                matches!(Ballot::decode(&bytes[..cut]), Err(DecodeError::Truncated { .. })),
                "cut at {cut}"
            );
        }
        // A bad option tag.
        let mut bad = sample(true).encode();
        bad[85] = 2;
        assert!(matches!(Ballot::decode(&bad), Err(DecodeError::BadOption { .. })));
    }

    #[test]
    fn syntax_errors_are_named() {
        let mut b = sample(true);
        b.ref_ballot = Some([1; 20]);
        assert_eq!(b.check_syntax(), Err(BallotSyntaxError::BothEpochDataAndRef));
        b.epoch_data = None;
        b.ref_ballot = None;
        assert_eq!(b.check_syntax(), Err(BallotSyntaxError::NeitherEpochDataNorRef));
        let mut b = sample(false);
        b.eligibility_proofs.clear();
        assert_eq!(b.check_syntax(), Err(BallotSyntaxError::NoEligibilityProof));
    }

    #[test]
    fn vrf_messages_use_compact_forms() {
        // Small numbers: one byte each.
        assert_eq!(
            vrf_message(&[1, 2, 3, 4], 2, 5, 0),
            [0x0c, 1, 2, 3, 4, 0x08, 0x14, 0x00]
        );
        // epoch 100: two bytes (100 << 2 | 1 = 0x191); nonce 2³²: big-integer mode, five bytes
        // ((5 − 4) << 2 | 3 = 0x07); counter 70 000: four bytes (70 000 << 2 | 2 = 0x000445c2).
        assert_eq!(
            vrf_message(&[0xde, 0xad, 0xbe, 0xef], 100, 1 << 32, 70_000),
            [
                0x0c, 0xde, 0xad, 0xbe, 0xef, 0x91, 0x01, 0x07, 0x00, 0x00, 0x00, 0x00, 0x01, 0xc2, 0x45,
                0x04, 0x00
            ]
        );
    }

    #[test]
    fn the_id_changes_with_every_field() {
        let base = sample(true);
        let id = base.id();
        let mut variants: Vec<Ballot> = Vec::new();
        let mut push = |f: &dyn Fn(&mut Ballot)| {
            let mut b = base.clone();
            f(&mut b);
            variants.push(b);
        };
        push(&|b| b.layer += 1);
        push(&|b| b.atx_id[0] ^= 1);
        push(&|b| b.opinion_hash[31] ^= 1);
        push(&|b| {
            b.epoch_data = None;
            b.ref_ballot = Some([7; 20]);
        });
        push(&|b| {
            if let Some(d) = &mut b.epoch_data {
                d.active_set_hash[0] ^= 1;
            }
        });
        push(&|b| {
            if let Some(d) = &mut b.epoch_data {
                d.beacon[0] ^= 1;
            }
        });
        push(&|b| {
            if let Some(d) = &mut b.epoch_data {
                d.eligibility_count += 1;
            }
        });
        push(&|b| b.eligibility_proofs[0].j += 1);
        push(&|b| b.eligibility_proofs[1].sig[79] ^= 1);
        push(&|b| {
            b.eligibility_proofs.pop();
        });
        for v in &variants {
            assert_ne!(v.id(), id, "{v:?}");
        }
        // Signer and signature are outside the id.
        let mut b = base.clone();
        b.smesher_id = [0; 32];
        b.signature = [0; 64];
        assert_eq!(b.id(), id);
        let mut r = sample(false);
        let rid = r.id();
        r.ref_ballot = Some([6; 20]);
        assert_ne!(r.id(), rid);
    }

    #[test]
    fn the_active_set_hash_ignores_order() {
        let a = [[3u8; 32], [1; 32], [2; 32]];
        let mut h = blake3::Hasher::new();
        for id in [[1u8; 32], [2; 32], [3; 32]] {
            h.update(&id);
        }
        assert_eq!(active_set_hash(&a), *h.finalize().as_bytes());
        assert_eq!(active_set_hash(&[a[2], a[0], a[1]]), active_set_hash(&a));
        assert_ne!(active_set_hash(&a[..2]), active_set_hash(&a));
    }
}
