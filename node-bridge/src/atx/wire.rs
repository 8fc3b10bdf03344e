//! ATX v1 wire types and their SCALE encoding (spec/devnet.md §2.2, spec/node.md §2.3, §2.6).
//!
//! The Rust types mirror go-spacemesh's `activation/wire` structs field for field, including
//! which fields are options (`*T` in Go), so that every byte string go-spacemesh accepts decodes
//! here and re-encodes to the same bytes (ATX ids depend on it). The one exception is
//! [`PostMetadata::challenge`]: Go declares it `[]byte` with at most 32 bytes; here it is a
//! 32-byte array and any other length is a decode error (a challenge that is not 32 bytes can
//! never name a PoET proof, so such an ATX is invalid anyway).
//!
//! # Field encodings
//!
//! Every integer encoding is written once, in [`fields`], so a wrong reading can be corrected in
//! one place. Where each comes from:
//!
//! | Field | Encoding | Source |
//! |---|---|---|
//! | `PublishEpoch` (u32) | compact | spec: node.md §2.3 ("SCALE with compact integers"), §2.6 (`ATXMetadata.Publish` compact u32) |
//! | `Sequence` (u64) | compact | spec: node.md §2.3 |
//! | ids, `Coinbase` (24 B), `NodeID`, `SmesherID`, `Signature` | raw fixed arrays | spec (types and sizes) + go-scale rule for arrays |
//! | options (`CommitmentATXID`, `InitialPost`, `NIPost`, `Post`, `PostMetadata`, `NodeID`, `VRFNonce`) | 0 / 1 then value | spec: node.md §2.3, §2.6 |
//! | `Membership.Nodes` | compact count (≤ 32), 32 B each | spec: node.md §2.6 (`[≤32]Hash32`) |
//! | `Post.Indices` | compact length (≤ 800) then bytes | spec: node.md §2.6 (`≤800 B`) |
//! | `PostMetadata.Challenge` | compact length (≤ 32) then bytes | spec: node.md §2.6 (`≤32 B`) |
//! | `NumUnits` (u32) | compact | best reading, not in the spec: go-spacemesh `wire_v1_scale.go` (`EncodeCompact32`) |
//! | `Post.Nonce` (u32) | compact | best reading, not in the spec: go-spacemesh `wire_v1_scale.go` (`EncodeCompact32`) |
//! | `Post.Pow` (u64) | compact | best reading, not in the spec: go-spacemesh `wire_v1_scale.go` (`EncodeCompact64`) |
//! | `Membership.LeafIndex` (u64) | compact | best reading, not in the spec: go-spacemesh `wire_v1_scale.go` (`EncodeCompact64`) |
//! | `PostMetadata.LabelsPerUnit` (u64) | compact | best reading, not in the spec: go-spacemesh `wire_v1_scale.go` (`EncodeCompact64`) |
//! | `VRFNonce` (u64) | compact | best reading, not in the spec: go-spacemesh `VRFPostIndex.EncodeScale` (`EncodeCompact64`) |
//!
//! "Best reading" rows were read from the go-scale generated code of go-spacemesh as stored in
//! a public code corpus, not from a pinned commit; no golden ATX vector from a real node has
//! been compared yet (spec/devnet.md §6.6 lists that conformance check).

use crate::codec::{DecodeError, Decoder, Encoder};

/// 32-byte ATX id.
pub type AtxId = [u8; 32];
/// 32-byte node id (an ed25519 public key).
pub type NodeId = [u8; 32];
/// 32-byte hash.
pub type Hash32 = [u8; 32];
/// 24-byte account address (the reward destination).
pub type Coinbase = [u8; 24];
/// Epoch number (`types.EpochID`, a u32 in go-spacemesh).
pub type Epoch = u32;

/// The all-zero id: "no ATX" (the previous ATX of an initial ATX).
pub const EMPTY_ATX_ID: AtxId = [0; 32];
/// Most sibling nodes a v1 membership proof carries.
pub const MAX_MEMBERSHIP_NODES: usize = 32;
/// Most bytes of compressed PoST indices in a v1 ATX.
pub const MAX_POST_INDICES_LEN: usize = 800;
/// Most bytes of a PoST metadata challenge (it must be exactly this long here).
pub const CHALLENGE_LEN: usize = 32;

/// The integer encodings of every field, in one place (see the module table for sources).
pub mod fields {
    use super::*;

    pub fn put_epoch(e: &mut Encoder, v: Epoch) {
        e.compact(u64::from(v));
    }
    pub fn get_epoch(d: &mut Decoder<'_>, what: &'static str) -> Result<Epoch, DecodeError> {
        d.compact_max(u64::from(u32::MAX), what).map(|v| v as u32)
    }
    pub fn put_sequence(e: &mut Encoder, v: u64) {
        e.compact(v);
    }
    pub fn get_sequence(d: &mut Decoder<'_>) -> Result<u64, DecodeError> {
        d.compact("sequence")
    }
    pub fn put_num_units(e: &mut Encoder, v: u32) {
        e.compact(u64::from(v));
    }
    pub fn get_num_units(d: &mut Decoder<'_>) -> Result<u32, DecodeError> {
        d.compact_max(u64::from(u32::MAX), "num units").map(|v| v as u32)
    }
    pub fn put_post_nonce(e: &mut Encoder, v: u32) {
        e.compact(u64::from(v));
    }
    pub fn get_post_nonce(d: &mut Decoder<'_>) -> Result<u32, DecodeError> {
        d.compact_max(u64::from(u32::MAX), "post nonce").map(|v| v as u32)
    }
    pub fn put_post_pow(e: &mut Encoder, v: u64) {
        e.compact(v);
    }
    pub fn get_post_pow(d: &mut Decoder<'_>) -> Result<u64, DecodeError> {
        d.compact("post pow")
    }
    pub fn put_leaf_index(e: &mut Encoder, v: u64) {
        e.compact(v);
    }
    pub fn get_leaf_index(d: &mut Decoder<'_>) -> Result<u64, DecodeError> {
        d.compact("membership leaf index")
    }
    pub fn put_labels_per_unit(e: &mut Encoder, v: u64) {
        e.compact(v);
    }
    pub fn get_labels_per_unit(d: &mut Decoder<'_>) -> Result<u64, DecodeError> {
        d.compact("labels per unit")
    }
    pub fn put_vrf_nonce(e: &mut Encoder, v: u64) {
        e.compact(v);
    }
    pub fn get_vrf_nonce(d: &mut Decoder<'_>) -> Result<u64, DecodeError> {
        d.compact("vrf nonce")
    }
}

/// Values that SCALE-encode and decode.
pub trait Scale: Sized {
    fn encode_to(&self, e: &mut Encoder);
    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError>;

    fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        self.encode_to(&mut e);
        e.finish()
    }

    /// Decode all of `bytes` (trailing bytes are an error).
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let v = Self::decode_from(&mut d)?;
        d.finish()?;
        Ok(v)
    }
}

/// A PoST proof (`PostV1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Post {
    pub nonce: u32,
    /// K2 bit-packed indices, at most [`MAX_POST_INDICES_LEN`] bytes.
    pub indices: Vec<u8>,
    pub pow: u64,
}

impl Post {
    /// The same proof as the `post` crate's type.
    pub fn to_proof(&self) -> post::proof::Proof {
        post::proof::Proof {
            nonce: self.nonce,
            indices: self.indices.clone(),
            pow: self.pow,
        }
    }

    pub fn from_proof(p: &post::proof::Proof) -> Self {
        Self {
            nonce: p.nonce,
            indices: p.indices.clone(),
            pow: p.pow,
        }
    }
}

impl Scale for Post {
    fn encode_to(&self, e: &mut Encoder) {
        fields::put_post_nonce(e, self.nonce);
        e.bytes(&self.indices);
        fields::put_post_pow(e, self.pow);
    }

    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            nonce: fields::get_post_nonce(d)?,
            indices: d.bytes(MAX_POST_INDICES_LEN, "post indices")?.to_vec(),
            pow: fields::get_post_pow(d)?,
        })
    }
}

/// What a PoST was made for (`PostMetadataV1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PostMetadata {
    /// The PoST challenge: in a NIPoST, the PoET proof reference.
    pub challenge: Hash32,
    pub labels_per_unit: u64,
}

impl Scale for PostMetadata {
    fn encode_to(&self, e: &mut Encoder) {
        e.bytes(&self.challenge);
        fields::put_labels_per_unit(e, self.labels_per_unit);
    }

    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        const WHAT: &str = "post metadata challenge (exactly 32 bytes)";
        let raw = d.bytes(CHALLENGE_LEN, WHAT)?;
        let challenge: Hash32 = raw.try_into().map_err(|_| DecodeError::Truncated {
            what: WHAT,
            needed: CHALLENGE_LEN - raw.len(),
            left: 0,
        })?;
        Ok(Self {
            challenge,
            labels_per_unit: fields::get_labels_per_unit(d)?,
        })
    }
}

/// A membership proof in a PoET's member tree (`MerkleProofV1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MerkleProof {
    /// Sibling nodes from the leaf up (not including the leaf), at most
    /// [`MAX_MEMBERSHIP_NODES`].
    pub nodes: Vec<Hash32>,
    pub leaf_index: u64,
}

impl Scale for MerkleProof {
    fn encode_to(&self, e: &mut Encoder) {
        e.list(&self.nodes, |e, n| {
            e.array(n);
        });
        fields::put_leaf_index(e, self.leaf_index);
    }

    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            nodes: d.list(MAX_MEMBERSHIP_NODES, "membership nodes", |d| {
                d.array("membership node")
            })?,
            leaf_index: fields::get_leaf_index(d)?,
        })
    }
}

/// A non-interactive proof of space-time (`NIPostV1`). `post` and `post_metadata` are options
/// on the wire as in Go; a valid ATX has both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NIPost {
    pub membership: MerkleProof,
    pub post: Option<Post>,
    pub post_metadata: Option<PostMetadata>,
}

impl Scale for NIPost {
    fn encode_to(&self, e: &mut Encoder) {
        self.membership.encode_to(e);
        e.option(self.post.as_ref(), |e, p| p.encode_to(e));
        e.option(self.post_metadata.as_ref(), |e, m| m.encode_to(e));
    }

    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            membership: MerkleProof::decode_from(d)?,
            post: d.option("nipost post", Post::decode_from)?,
            post_metadata: d.option("nipost post metadata", PostMetadata::decode_from)?,
        })
    }
}

/// The PoET challenge of an ATX v1 (`NIPostChallengeV1`): the first six fields of the ATX.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NIPostChallengeV1 {
    pub publish_epoch: Epoch,
    /// 0 for the initial ATX, previous + 1 after.
    pub sequence: u64,
    /// [`EMPTY_ATX_ID`] for the initial ATX.
    pub prev_atx_id: AtxId,
    pub positioning_atx_id: AtxId,
    /// Initial ATX only.
    pub commitment_atx_id: Option<AtxId>,
    /// Initial ATX only: the PoST against the all-zero challenge.
    pub initial_post: Option<Post>,
}

impl Scale for NIPostChallengeV1 {
    fn encode_to(&self, e: &mut Encoder) {
        fields::put_epoch(e, self.publish_epoch);
        fields::put_sequence(e, self.sequence);
        e.array(&self.prev_atx_id);
        e.array(&self.positioning_atx_id);
        e.option(self.commitment_atx_id.as_ref(), |e, id| {
            e.array(id);
        });
        e.option(self.initial_post.as_ref(), |e, p| p.encode_to(e));
    }

    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            publish_epoch: fields::get_epoch(d, "publish epoch")?,
            sequence: fields::get_sequence(d)?,
            prev_atx_id: d.array("previous atx id")?,
            positioning_atx_id: d.array("positioning atx id")?,
            commitment_atx_id: d.option("commitment atx id", |d| d.array("commitment atx id"))?,
            initial_post: d.option("initial post", Post::decode_from)?,
        })
    }
}

/// The signed content of an ATX v1; its id is `blake3(SCALE(inner))`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InnerActivationTxV1 {
    pub challenge: NIPostChallengeV1,
    pub coinbase: Coinbase,
    pub num_units: u32,
    pub nipost: Option<NIPost>,
    /// Initial ATX only (makes the first ATX's id unique per identity).
    pub node_id: Option<NodeId>,
    /// Required in the initial ATX; later only when it changed.
    pub vrf_nonce: Option<u64>,
}

impl Scale for InnerActivationTxV1 {
    fn encode_to(&self, e: &mut Encoder) {
        self.challenge.encode_to(e);
        e.array(&self.coinbase);
        fields::put_num_units(e, self.num_units);
        e.option(self.nipost.as_ref(), |e, n| n.encode_to(e));
        e.option(self.node_id.as_ref(), |e, id| {
            e.array(id);
        });
        e.option(self.vrf_nonce.as_ref(), |e, v| fields::put_vrf_nonce(e, *v));
    }

    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            challenge: NIPostChallengeV1::decode_from(d)?,
            coinbase: d.array("coinbase")?,
            num_units: fields::get_num_units(d)?,
            nipost: d.option("nipost", NIPost::decode_from)?,
            node_id: d.option("node id", |d| d.array("node id"))?,
            vrf_nonce: d.option("vrf nonce", fields::get_vrf_nonce)?,
        })
    }
}

/// A signed ATX v1: the inner fields, the signer and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActivationTxV1 {
    pub inner: InnerActivationTxV1,
    pub smesher_id: NodeId,
    pub signature: [u8; 64],
}

impl Scale for ActivationTxV1 {
    fn encode_to(&self, e: &mut Encoder) {
        self.inner.encode_to(e);
        e.array(&self.smesher_id);
        e.array(&self.signature);
    }

    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            inner: InnerActivationTxV1::decode_from(d)?,
            smesher_id: d.array("smesher id")?,
            signature: d.array("signature")?,
        })
    }
}

/// What an ATX signature covers after the domain prefix (`ATXMetadataV1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AtxMetadata {
    pub publish_epoch: Epoch,
    /// The ATX id.
    pub msg_hash: Hash32,
}

impl Scale for AtxMetadata {
    fn encode_to(&self, e: &mut Encoder) {
        fields::put_epoch(e, self.publish_epoch);
        e.array(&self.msg_hash);
    }

    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            publish_epoch: fields::get_epoch(d, "atx metadata publish epoch")?,
            msg_hash: d.array("atx metadata hash")?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    pub fn arb_post() -> impl Strategy<Value = Post> {
        (
            any::<u32>(),
            vec(any::<u8>(), 0..=MAX_POST_INDICES_LEN),
            any::<u64>(),
        )
            .prop_map(|(nonce, indices, pow)| Post { nonce, indices, pow })
    }

    pub fn arb_nipost() -> impl Strategy<Value = NIPost> {
        (
            vec(any::<[u8; 32]>(), 0..=MAX_MEMBERSHIP_NODES),
            any::<u64>(),
            proptest::option::of(arb_post()),
            proptest::option::of((any::<[u8; 32]>(), any::<u64>())),
        )
            .prop_map(|(nodes, leaf_index, post, md)| NIPost {
                membership: MerkleProof { nodes, leaf_index },
                post,
                post_metadata: md.map(|(challenge, labels_per_unit)| PostMetadata {
                    challenge,
                    labels_per_unit,
                }),
            })
    }

    pub fn arb_challenge() -> impl Strategy<Value = NIPostChallengeV1> {
        (
            any::<u32>(),
            any::<u64>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(arb_post()),
        )
            .prop_map(|(publish_epoch, sequence, prev, pos, commitment, initial_post)| {
                NIPostChallengeV1 {
                    publish_epoch,
                    sequence,
                    prev_atx_id: prev,
                    positioning_atx_id: pos,
                    commitment_atx_id: commitment,
                    initial_post,
                }
            })
    }

    pub fn arb_atx() -> impl Strategy<Value = ActivationTxV1> {
        (
            arb_challenge(),
            any::<[u8; 24]>(),
            any::<u32>(),
            proptest::option::of(arb_nipost()),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(any::<u64>()),
            any::<[u8; 32]>(),
            vec(any::<u8>(), 64),
        )
            .prop_map(
                |(challenge, coinbase, num_units, nipost, node_id, vrf_nonce, smesher_id, sig)| {
                    let mut signature = [0u8; 64];
                    signature.copy_from_slice(&sig);
                    ActivationTxV1 {
                        inner: InnerActivationTxV1 {
                            challenge,
                            coinbase,
                            num_units,
                            nipost,
                            node_id,
                            vrf_nonce,
                        },
                        smesher_id,
                        signature,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn atx_round_trips(atx in arb_atx()) {
            let bytes = atx.to_bytes();
            prop_assert_eq!(ActivationTxV1::from_bytes(&bytes), Ok(atx.clone()));
            // The inner part is a prefix of the whole.
            prop_assert!(bytes.starts_with(&atx.inner.to_bytes()));
            prop_assert_eq!(bytes.len(), atx.inner.to_bytes().len() + 96);
        }

        #[test]
        fn challenge_round_trips(c in arb_challenge()) {
            prop_assert_eq!(NIPostChallengeV1::from_bytes(&c.to_bytes()), Ok(c));
        }

        #[test]
        fn nipost_round_trips(n in arb_nipost()) {
            prop_assert_eq!(NIPost::from_bytes(&n.to_bytes()), Ok(n));
        }

        #[test]
        fn truncated_atx_never_decodes(atx in arb_atx(), cut in 1usize..64) {
            let bytes = atx.to_bytes();
            let cut = cut.min(bytes.len());
            prop_assert!(ActivationTxV1::from_bytes(&bytes[..bytes.len() - cut]).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in vec(any::<u8>(), 0..400)) {
            let _ = ActivationTxV1::from_bytes(&bytes);
            let _ = NIPostChallengeV1::from_bytes(&bytes);
        }
    }

    #[test]
    fn layout_of_a_small_challenge() {
        let c = NIPostChallengeV1 {
            publish_epoch: 2,
            sequence: 64,
            prev_atx_id: [1; 32],
            positioning_atx_id: [2; 32],
            commitment_atx_id: None,
            initial_post: Some(Post {
                nonce: 3,
                indices: vec![0xaa, 0xbb],
                pow: 5,
            }),
        };
        let mut want = vec![2 << 2, 0x01, 0x01];
        want.extend_from_slice(&[1; 32]);
        want.extend_from_slice(&[2; 32]);
        want.extend_from_slice(&[0, 1, 3 << 2, 2 << 2, 0xaa, 0xbb, 5 << 2]);
        assert_eq!(c.to_bytes(), want);
    }

    #[test]
    fn limits_are_enforced() {
        let post = Post {
            nonce: 0,
            indices: vec![0; MAX_POST_INDICES_LEN + 1],
            pow: 0,
        };
        assert!(matches!(
            Post::from_bytes(&post.to_bytes()),
            Err(DecodeError::TooLong {
                len: 801,
                max: 800,
                ..
            })
        ));
        let m = MerkleProof {
            nodes: vec![[0; 32]; MAX_MEMBERSHIP_NODES + 1],
            leaf_index: 0,
        };
        assert!(matches!(
            MerkleProof::from_bytes(&m.to_bytes()),
            Err(DecodeError::TooLong { len: 33, max: 32, .. })
        ));
        // A 31-byte challenge is rejected.
        let mut e = Encoder::new();
        e.bytes(&[7; 31]).compact(16);
        assert!(PostMetadata::from_bytes(&e.finish()).is_err());
        // An epoch beyond u32 is rejected.
        let mut e = Encoder::new();
        e.compact(1 << 32);
        assert!(matches!(
            fields::get_epoch(&mut Decoder::new(e.as_bytes()), "e"),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
