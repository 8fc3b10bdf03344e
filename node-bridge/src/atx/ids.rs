//! ATX ids, signed bytes, PoET challenges and the golden ATX (spec/devnet.md §2.1, §2.2;
//! spec/node.md §2.6, §3.2).

use ed25519_dalek::{Signature, VerifyingKey};

use super::wire::{
    ActivationTxV1, AtxId, AtxMetadata, Hash32, InnerActivationTxV1, NIPostChallengeV1, Scale,
};

/// The 20-byte genesis id: the first 20 bytes of the golden ATX.
pub type GenesisId = [u8; 20];

/// Signing domain of ATXs (go-spacemesh `signing.ATX`).
pub const ATX_DOMAIN: u8 = 0x00;

/// `blake3(SCALE(inner))`.
pub fn atx_id(inner: &InnerActivationTxV1) -> AtxId {
    *blake3::hash(&inner.to_bytes()).as_bytes()
}

impl InnerActivationTxV1 {
    /// This ATX's id.
    pub fn id(&self) -> AtxId {
        atx_id(self)
    }
}

impl ActivationTxV1 {
    /// This ATX's id (of the inner fields; signer and signature do not count).
    pub fn id(&self) -> AtxId {
        atx_id(&self.inner)
    }

    pub fn publish_epoch(&self) -> u32 {
        self.inner.challenge.publish_epoch
    }

    /// Whether this is an identity's first ATX (no previous ATX).
    pub fn is_initial(&self) -> bool {
        self.inner.challenge.prev_atx_id == super::wire::EMPTY_ATX_ID
    }
}

/// The bytes an ATX signature covers after the domain prefix: `SCALE({PublishEpoch, ID})`.
pub fn signed_payload(inner: &InnerActivationTxV1) -> Vec<u8> {
    AtxMetadata {
        publish_epoch: inner.challenge.publish_epoch,
        msg_hash: atx_id(inner),
    }
    .to_bytes()
}

/// The whole message an ATX signature is made over: `genesis_id ‖ 0x00 ‖ SCALE({PublishEpoch,
/// ID})`. The keystore signs exactly these bytes with the identity's ed25519 key.
pub fn signing_bytes(genesis_id: &GenesisId, inner: &InnerActivationTxV1) -> Vec<u8> {
    metadata_signing_bytes(
        genesis_id,
        &AtxMetadata {
            publish_epoch: inner.challenge.publish_epoch,
            msg_hash: atx_id(inner),
        },
    )
}

/// [`signing_bytes`] from the signed metadata alone (what a MultipleATXs proof carries).
pub fn metadata_signing_bytes(genesis_id: &GenesisId, md: &AtxMetadata) -> Vec<u8> {
    let payload = md.to_bytes();
    let mut out = Vec::with_capacity(genesis_id.len() + 1 + payload.len());
    out.extend_from_slice(genesis_id);
    out.push(ATX_DOMAIN);
    out.extend_from_slice(&payload);
    out
}

/// Whether `signature` is `signer`'s strict ed25519 signature of `message`.
pub fn verify_signature(signer: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(signer) else {
        return false;
    };
    key.verify_strict(message, &Signature::from_bytes(signature))
        .is_ok()
}

/// Whether `atx` carries its smesher's valid signature for `genesis_id`.
pub fn verify_atx_signature(genesis_id: &GenesisId, atx: &ActivationTxV1) -> bool {
    verify_signature(
        &atx.smesher_id,
        &signing_bytes(genesis_id, &atx.inner),
        &atx.signature,
    )
}

/// The hash an identity registers with a PoET: `blake3(0x00 ‖ SCALE(challenge))`.
pub fn poet_challenge(challenge: &NIPostChallengeV1) -> Hash32 {
    let mut h = blake3::Hasher::new();
    h.update(&[0x00]);
    h.update(&challenge.to_bytes());
    *h.finalize().as_bytes()
}

/// The golden ATX: `blake3(decimal(genesis_unix_seconds) ‖ extra_data)`.
pub fn golden_atx(genesis_unix_seconds: i64, extra_data: &[u8]) -> AtxId {
    let mut h = blake3::Hasher::new();
    h.update(genesis_unix_seconds.to_string().as_bytes());
    h.update(extra_data);
    *h.finalize().as_bytes()
}

/// The genesis id: the first 20 bytes of the golden ATX.
pub fn genesis_id(golden_atx: &AtxId) -> GenesisId {
    let mut out = [0u8; 20];
    out.copy_from_slice(&golden_atx[..20]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atx::wire::tests::arb_atx;
    use crate::atx::wire::{MerkleProof, NIPost, Post, PostMetadata};
    use ed25519_dalek::{Signer, SigningKey};
    use proptest::prelude::*;

    fn sample() -> ActivationTxV1 {
        ActivationTxV1 {
            inner: InnerActivationTxV1 {
                challenge: NIPostChallengeV1 {
                    publish_epoch: 3,
                    sequence: 0,
                    prev_atx_id: [0; 32],
                    positioning_atx_id: [9; 32],
                    commitment_atx_id: Some([8; 32]),
                    initial_post: Some(Post {
                        nonce: 1,
                        indices: vec![1, 2, 3],
                        pow: 7,
                    }),
                },
                coinbase: [4; 24],
                num_units: 2,
                nipost: Some(NIPost {
                    membership: MerkleProof {
                        nodes: vec![[5; 32]],
                        leaf_index: 1,
                    },
                    post: Some(Post {
                        nonce: 2,
                        indices: vec![4, 5],
                        pow: 8,
                    }),
                    post_metadata: Some(PostMetadata {
                        challenge: [6; 32],
                        labels_per_unit: 64,
                    }),
                }),
                node_id: Some([1; 32]),
                vrf_nonce: Some(11),
            },
            smesher_id: [1; 32],
            signature: [0; 64],
        }
    }

    /// Every single-field change of the inner part changes the id and the PoET challenge
    /// where that field is part of the challenge; signer and signature do not change the id.
    #[test]
    fn ids_change_when_any_field_changes() {
        let base = sample();
        let id = base.id();
        let ch = poet_challenge(&base.inner.challenge);
        type Edit = fn(&mut ActivationTxV1);
        let challenge_edits: &[Edit] = &[
            |a| a.inner.challenge.publish_epoch += 1,
            |a| a.inner.challenge.sequence += 1,
            |a| a.inner.challenge.prev_atx_id[0] ^= 1,
            |a| a.inner.challenge.positioning_atx_id[31] ^= 1,
            |a| a.inner.challenge.commitment_atx_id = None,
            |a| a.inner.challenge.commitment_atx_id = Some([0; 32]),
            |a| a.inner.challenge.initial_post = None,
            |a| a.inner.challenge.initial_post.as_mut().expect("post").nonce += 1,
            |a| {
                a.inner
                    .challenge
                    .initial_post
                    .as_mut()
                    .expect("post")
                    .indices
                    .push(0)
            },
            |a| a.inner.challenge.initial_post.as_mut().expect("post").pow += 1,
        ];
        let other_edits: &[Edit] = &[
            |a| a.inner.coinbase[23] ^= 1,
            |a| a.inner.num_units += 1,
            |a| a.inner.nipost = None,
            |a| a.inner.nipost.as_mut().expect("n").membership.nodes.clear(),
            |a| a.inner.nipost.as_mut().expect("n").membership.nodes[0][3] ^= 1,
            |a| a.inner.nipost.as_mut().expect("n").membership.leaf_index += 1,
            |a| a.inner.nipost.as_mut().expect("n").post = None,
            |a| {
                a.inner
                    .nipost
                    .as_mut()
                    .expect("n")
                    .post
                    .as_mut()
                    .expect("p")
                    .nonce += 1
            },
            |a| {
                a.inner
                    .nipost
                    .as_mut()
                    .expect("n")
                    .post
                    .as_mut()
                    .expect("p")
                    .indices[0] ^= 1
            },
            |a| a.inner.nipost.as_mut().expect("n").post.as_mut().expect("p").pow += 1,
            |a| a.inner.nipost.as_mut().expect("n").post_metadata = None,
            |a| {
                a.inner
                    .nipost
                    .as_mut()
                    .expect("n")
                    .post_metadata
                    .as_mut()
                    .expect("m")
                    .challenge[0] ^= 1
            },
            |a| {
                a.inner
                    .nipost
                    .as_mut()
                    .expect("n")
                    .post_metadata
                    .as_mut()
                    .expect("m")
                    .labels_per_unit += 1
            },
            |a| a.inner.node_id = None,
            |a| a.inner.node_id = Some([2; 32]),
            |a| a.inner.vrf_nonce = None,
            |a| a.inner.vrf_nonce = Some(12),
        ];
        for (i, edit) in challenge_edits.iter().enumerate() {
            let mut a = base.clone();
            edit(&mut a);
            assert_ne!(a.id(), id, "challenge edit {i}");
            assert_ne!(poet_challenge(&a.inner.challenge), ch, "challenge edit {i}");
        }
        for (i, edit) in other_edits.iter().enumerate() {
            let mut a = base.clone();
            edit(&mut a);
            assert_ne!(a.id(), id, "edit {i}");
            assert_eq!(poet_challenge(&a.inner.challenge), ch, "edit {i}");
        }
        let mut a = base.clone();
        a.smesher_id[0] ^= 1;
        a.signature[0] ^= 1;
        assert_eq!(a.id(), id);
    }

    #[test]
    fn signing_bytes_layout() {
        let atx = sample();
        let gid = [0xab; 20];
        let bytes = signing_bytes(&gid, &atx.inner);
        assert_eq!(&bytes[..20], &gid);
        assert_eq!(bytes[20], ATX_DOMAIN);
        assert_eq!(bytes[21], 3 << 2, "compact publish epoch");
        assert_eq!(&bytes[22..], &atx.id());
        assert_eq!(bytes.len(), 20 + 1 + 1 + 32);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn signature_over_signing_bytes_verifies(mut atx in arb_atx(), seed: [u8; 32], flip in 0usize..1000) {
            let gid = [7u8; 20];
            let key = SigningKey::from_bytes(&seed);
            atx.smesher_id = key.verifying_key().to_bytes();
            atx.signature = key.sign(&signing_bytes(&gid, &atx.inner)).to_bytes();
            prop_assert!(verify_atx_signature(&gid, &atx));
            // Another genesis does not verify.
            prop_assert!(!verify_atx_signature(&[8u8; 20], &atx));
            // A flipped byte anywhere in the encoding is rejected (or no longer decodes).
            let mut bytes = atx.to_bytes();
            let i = flip % bytes.len();
            bytes[i] ^= 0x01;
            if let Ok(changed) = ActivationTxV1::from_bytes(&bytes) {
                prop_assert!(!verify_atx_signature(&gid, &changed));
            }
        }
    }

    #[test]
    fn golden_and_genesis() {
        let g = golden_atx(1_720_000_000, b"devnet");
        let mut h = blake3::Hasher::new();
        h.update(b"1720000000devnet");
        assert_eq!(g, *h.finalize().as_bytes());
        assert_eq!(genesis_id(&g), g[..20]);
        assert_ne!(golden_atx(1_720_000_001, b"devnet"), g);
    }

    #[test]
    fn poet_challenge_is_prefixed() {
        let c = sample().inner.challenge;
        let mut bytes = vec![0u8];
        bytes.extend(c.to_bytes());
        assert_eq!(poet_challenge(&c), *blake3::hash(&bytes).as_bytes());
    }
}
