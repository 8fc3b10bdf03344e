//! Test fixtures: tiny identities with real PoST data (scrypt N = 2, 256 labels per unit) kept in
//! memory, real proofs from the `post` prover, real k2pow (light RandomX, all-0xFF difficulty),
//! a PoET statement built per spec/devnet.md §1.4, and signed ATXs.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use ed25519_dalek::{Signer, SigningKey};
use post::pow::RandomXPow;
use post::verify::VerifyOptions;

use crate::testkit::TinyPost;

use super::ids::{genesis_id, golden_atx, poet_challenge, signing_bytes, GenesisId};
use super::validate::{AtxLookup, AtxParams, PoetProofInfo, ValidatedAtx, ValidationContext, ZERO_CHALLENGE};
use super::wire::{
    ActivationTxV1, AtxId, Epoch, Hash32, InnerActivationTxV1, MerkleProof, NIPost, NIPostChallengeV1,
    NodeId, Post, PostMetadata, EMPTY_ATX_ID,
};

/// The kit's tiny PoST parameters, with 10 leaves per tick.
pub const PARAMS: AtxParams = AtxParams {
    tick_size: 10,
    ..crate::testkit::TINY_PARAMS
};

/// Leaves of every PoET proof the kit registers: 123 / 10 = 12 ticks.
pub const LEAF_COUNT: u64 = 123;

/// One light-mode RandomX for the whole test binary.
pub fn randomx() -> &'static RandomXPow {
    crate::testkit::randomx()
}

pub fn golden() -> AtxId {
    golden_atx(1_720_000_000, b"smeshfleet-test")
}

pub fn genesis() -> GenesisId {
    genesis_id(&golden())
}

pub fn context() -> ValidationContext<'static> {
    ValidationContext {
        genesis_id: genesis(),
        golden_atx: golden(),
        params: PARAMS,
        pow: randomx(),
        k3_seed: b"local seed".to_vec(),
        verify_options: VerifyOptions::default(),
    }
}

/// An identity with its PoST data in memory.
pub struct Identity {
    pub key: SigningKey,
    pub node_id: NodeId,
    pub commitment_atx: AtxId,
    data: TinyPost,
    proofs: Mutex<HashMap<(Hash32, u32), Post>>,
}

impl Identity {
    pub fn new(seed: u8, commitment_atx: AtxId) -> Self {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let node_id = key.verifying_key().to_bytes();
        Self {
            key,
            node_id,
            commitment_atx,
            data: TinyPost::new(node_id, &commitment_atx, PARAMS),
            proofs: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `nonce` is a VRF nonce for `units` units.
    pub fn vrf_ok(&self, nonce: u64, units: u32) -> bool {
        self.data.vrf_ok(nonce, units)
    }

    /// The smallest VRF nonce valid for `units`.
    pub fn vrf_nonce(&self, units: u32) -> u64 {
        self.data.vrf_nonce(units)
    }

    /// A real PoST proof over `challenge` with `units` units (made once per challenge and units).
    pub fn prove(&self, challenge: &Hash32, units: u32) -> Post {
        if let Some(p) = self.proofs.lock().expect("lock").get(&(*challenge, units)) {
            return p.clone();
        }
        let p = self.data.prove(challenge, units);
        self.proofs
            .lock()
            .expect("lock")
            .insert((*challenge, units), p.clone());
        p
    }

    /// The PoET proof reference this identity's NIPoST uses in `epoch` (any 32 bytes do).
    pub fn poet_ref(&self, epoch: Epoch) -> Hash32 {
        let mut h = blake3::Hasher::new();
        h.update(b"poet proof ref");
        h.update(&self.node_id);
        h.update(&epoch.to_le_bytes());
        *h.finalize().as_bytes()
    }

    fn nipost(&self, epoch: Epoch, units: u32) -> NIPost {
        let poet_ref = self.poet_ref(epoch);
        NIPost {
            membership: MerkleProof::default(),
            post: Some(self.prove(&poet_ref, units)),
            post_metadata: Some(PostMetadata {
                challenge: poet_ref,
                labels_per_unit: PARAMS.labels_per_unit,
            }),
        }
    }

    /// An unsigned initial ATX (membership still empty: see [`seal`]).
    pub fn initial(&self, epoch: Epoch, units: u32) -> InnerActivationTxV1 {
        InnerActivationTxV1 {
            challenge: NIPostChallengeV1 {
                publish_epoch: epoch,
                sequence: 0,
                prev_atx_id: EMPTY_ATX_ID,
                positioning_atx_id: golden(),
                commitment_atx_id: Some(self.commitment_atx),
                initial_post: Some(self.prove(&ZERO_CHALLENGE, units)),
            },
            coinbase: [0xc0; 24],
            num_units: units,
            nipost: Some(self.nipost(epoch, units)),
            node_id: Some(self.node_id),
            vrf_nonce: Some(self.vrf_nonce(units)),
        }
    }

    /// An unsigned ATX following `prev`.
    pub fn next(
        &self,
        prev: &ValidatedAtx,
        positioning: AtxId,
        epoch: Epoch,
        units: u32,
        vrf_nonce: Option<u64>,
    ) -> InnerActivationTxV1 {
        InnerActivationTxV1 {
            challenge: NIPostChallengeV1 {
                publish_epoch: epoch,
                sequence: prev.sequence + 1,
                prev_atx_id: prev.id,
                positioning_atx_id: positioning,
                commitment_atx_id: None,
                initial_post: None,
            },
            coinbase: [0xc1; 24],
            num_units: units,
            nipost: Some(self.nipost(epoch, units)),
            node_id: None,
            vrf_nonce,
        }
    }

    /// Sign `inner` as this identity.
    pub fn sign(&self, inner: InnerActivationTxV1) -> ActivationTxV1 {
        let signature = self.key.sign(&signing_bytes(&genesis(), &inner)).to_bytes();
        ActivationTxV1 {
            inner,
            smesher_id: self.node_id,
            signature,
        }
    }

    /// Register `inner`'s PoET challenge with a PoET (a 3-member tree, the ATX at leaf 1) under
    /// its NIPoST's proof reference, fill in the membership proof, and sign.
    pub fn seal(&self, mut inner: InnerActivationTxV1, lookup: &mut MapLookup) -> ActivationTxV1 {
        let member = poet_challenge(&inner.challenge);
        let (nodes, root) = tree_of_three(&member);
        if let Some(n) = inner.nipost.as_mut() {
            n.membership = MerkleProof { nodes, leaf_index: 1 };
            if let Some(md) = n.post_metadata.as_ref() {
                lookup.poets.insert(
                    md.challenge,
                    PoetProofInfo {
                        statement: root,
                        leaf_count: LEAF_COUNT,
                    },
                );
            }
        }
        self.sign(inner)
    }
}

/// `blake3(0x01 ‖ l ‖ r)`, the member-tree node hash.
pub fn node_hash(l: &Hash32, r: &Hash32) -> Hash32 {
    let mut h = blake3::Hasher::new();
    h.update(&[0x01]);
    h.update(l);
    h.update(r);
    *h.finalize().as_bytes()
}

/// Members `[f0, member, f2]`, zero-padded to four leaves: the path of leaf 1 and the root.
pub fn tree_of_three(member: &Hash32) -> (Vec<Hash32>, Hash32) {
    let f0 = [0xf0; 32];
    let f2 = [0xf2; 32];
    let right = node_hash(&f2, &[0; 32]);
    let root = node_hash(&node_hash(&f0, member), &right);
    (vec![f0, right], root)
}

/// An in-memory [`AtxLookup`].
#[derive(Debug, Clone, Default)]
pub struct MapLookup {
    pub atxs: HashMap<AtxId, ValidatedAtx>,
    pub commitments: HashMap<NodeId, AtxId>,
    pub poets: HashMap<Hash32, PoetProofInfo>,
    pub epoch: Epoch,
}

impl MapLookup {
    pub fn at(epoch: Epoch) -> Self {
        Self {
            epoch,
            ..Self::default()
        }
    }

    pub fn add(&mut self, v: ValidatedAtx) {
        if v.is_initial() {
            self.commitments.insert(v.smesher_id, v.commitment_atx_id);
        }
        self.atxs.insert(v.id, v);
    }
}

impl AtxLookup for MapLookup {
    fn atx(&self, id: &AtxId) -> Option<ValidatedAtx> {
        self.atxs.get(id).copied()
    }

    fn first_commitment(&self, smesher: &NodeId) -> Option<AtxId> {
        self.commitments.get(smesher).copied()
    }

    fn poet_proof(&self, proof_ref: &Hash32) -> Option<PoetProofInfo> {
        self.poets.get(proof_ref).copied()
    }

    fn current_epoch(&self) -> Epoch {
        self.epoch
    }
}

/// Identity A (commitment = golden) and its shared cached data.
pub fn alice() -> &'static Identity {
    static A: OnceLock<Identity> = OnceLock::new();
    A.get_or_init(|| Identity::new(0xa1, golden()))
}

/// Identity B (commitment = golden).
pub fn bob() -> &'static Identity {
    static B: OnceLock<Identity> = OnceLock::new();
    B.get_or_init(|| Identity::new(0xb0, golden()))
}

#[test]
fn the_kit_tree_is_the_poet_member_tree() {
    use crate::poet::tree::{membership_proof, membership_root};
    let member = [0x33; 32];
    let (nodes, root) = tree_of_three(&member);
    let leaves = [[0xf0; 32], member, [0xf2; 32]];
    assert_eq!(membership_root(&leaves), Some(root));
    assert_eq!(membership_proof(&leaves, 1), Some(nodes));
}
