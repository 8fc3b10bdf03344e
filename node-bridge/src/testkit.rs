//! Fixtures for the tests of this crate and of the coordinator (feature `testkit`): tiny PoST
//! data kept in memory (scrypt N = 2, 256 labels per unit), real proofs from `post`'s prover with
//! real k2pow (light RandomX, all-0xFF difficulty), a devnet whose PoETs are paced slowly
//! enough for a test to run whole rounds in milliseconds, and ballots with real VRF eligibility
//! proofs signed from a raw seed (what the coordinator's keystore does). Not for production: it
//! panics freely.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use ed25519_dalek::{Signer, SigningKey};

use post::difficulty::{proving_difficulty, scale_pow_difficulty, vrf_difficulty};
use post::pow::{challenge8, PowSolver, RandomXMode, RandomXOptions, RandomXPow};
use post::proof::Proof;
use post::prove::{scan_buffer, Prover};
use post::scrypt::{commitment, label32};

use crate::atx::{AtxId, AtxParams, Hash32, NodeId, Post};
use crate::ballot::{ballot_signing_message, vrf_message, Ballot, BallotId, EpochData, VotingEligibility};
use crate::bridge::Eligibility;
use crate::clock::LayerId;
use crate::devnet::DevnetConfig;
use crate::rewards::{eligibility_layer, EligibilityParams};
use crate::vm::Address;

/// Tiny PoST parameters: 256 labels per unit, 1-2 units, K1/K2/K3 = 16/8/4, any pow, scrypt N = 2,
/// 50 leaves per tick.
pub const TINY_PARAMS: AtxParams = AtxParams {
    labels_per_unit: 256,
    min_num_units: 1,
    max_num_units: 2,
    k1: 16,
    k2: 8,
    k3: 4,
    pow_difficulty: [0xff; 32],
    scrypt_n: 2,
    tick_size: 50,
};

/// One light-mode RandomX for the whole test binary (building it takes a while).
pub fn randomx() -> &'static Arc<RandomXPow> {
    static RX: OnceLock<Arc<RandomXPow>> = OnceLock::new();
    RX.get_or_init(|| {
        Arc::new(
            RandomXPow::with_options(RandomXOptions {
                mode: RandomXMode::Light,
                threads: 1,
                large_pages: false,
            })
            .expect("light RandomX"),
        )
    })
}

/// The devnet of [`DevnetConfig::devnet`] (genesis at 0) with [`TINY_PARAMS`] and two PoETs in
/// one phase (the clock's 40 s), "fast" and "slow", paced so that a 50 s round makes 1,000 and
/// 600 leaves (20 and 12 ticks): an identity registers with both and takes the better proof.
pub fn tiny_devnet_config(faucet: Address) -> DevnetConfig {
    let mut cfg = DevnetConfig::devnet(0, faucet);
    cfg.atx = TINY_PARAMS;
    cfg.poets[0].id = "fast".into();
    cfg.poets[0].leaves_per_second = 20;
    cfg.poets[1].id = "slow".into();
    cfg.poets[1].leaves_per_second = 12;
    cfg.poets[1].phase_shift_ms = None;
    cfg
}

/// [`tiny_devnet_config`] with the PoETs in two phases, as [`DevnetConfig::devnet`] has them:
/// "fast" at the clock's 40 s phase shift, "slow" at 20 s.
pub fn tiny_two_phase_devnet_config(faucet: Address) -> DevnetConfig {
    let mut cfg = tiny_devnet_config(faucet);
    cfg.poets[1].phase_shift_ms = Some(20_000);
    cfg
}

/// One identity's PoST data in memory: the full 32-byte scrypt outputs of labels
/// `0 .. max units × labels per unit` (the data files hold their first 16 bytes).
#[derive(Debug, Clone)]
pub struct TinyPost {
    node_id: NodeId,
    commitment: [u8; 32],
    params: AtxParams,
    labels: Vec<[u8; 32]>,
}

impl TinyPost {
    pub fn new(node_id: NodeId, commitment_atx: &AtxId, params: AtxParams) -> Self {
        let c = commitment(&node_id, commitment_atx);
        let total = u64::from(params.max_num_units) * params.labels_per_unit;
        let labels = (0..total).map(|i| label32(&c, i, params.scrypt_n)).collect();
        TinyPost {
            node_id,
            commitment: c,
            params,
            labels,
        }
    }

    /// Label `i`'s full scrypt output (computed when beyond the data).
    pub fn label32(&self, i: u64) -> [u8; 32] {
        match self.labels.get(i as usize) {
            Some(l) => *l,
            None => label32(&self.commitment, i, self.params.scrypt_n),
        }
    }

    /// Whether `nonce` is a VRF nonce for `units` units.
    pub fn vrf_ok(&self, nonce: u64, units: u32) -> bool {
        let threshold =
            vrf_difficulty(u64::from(units) * self.params.labels_per_unit).expect("vrf threshold");
        self.label32(nonce) < threshold
    }

    /// The smallest VRF nonce valid for `units` (an index inside their labels).
    pub fn vrf_nonce(&self, units: u32) -> u64 {
        (0..u64::from(units) * self.params.labels_per_unit)
            .find(|&i| self.vrf_ok(i, units))
            .expect("a VRF nonce")
    }

    /// A real PoST proof over `challenge` with `units` units (k2pow solved per nonce group).
    pub fn prove(&self, challenge: &Hash32, units: u32) -> Post {
        let num_labels = u64::from(units) * self.params.labels_per_unit;
        let data: Vec<u8> = self.labels[..num_labels as usize]
            .iter()
            .flat_map(|l| l[..16].iter().copied())
            .collect();
        let d = proving_difficulty(self.params.k1, num_labels).expect("difficulty");
        let scaled = scale_pow_difficulty(&self.params.pow_difficulty, units).expect("pow difficulty");
        for g in 0..=255u8 {
            let pow = randomx()
                .solve(g, &challenge8(challenge), &self.node_id, &scaled)
                .expect("k2pow");
            let prover = Prover::new(challenge, u32::from(g) * 16, &[pow], d).expect("prover");
            if let Some((nonce, mut indices)) = scan_buffer(&data, &prover, self.params.k2, 1) {
                indices.sort_unstable();
                return Post::from_proof(&Proof::new(nonce, &indices, num_labels, pow));
            }
        }
        panic!("no proof in 4096 nonces");
    }
}

/// Every eligible layer of `smesher` (seed → ed25519 key) in `epoch` from `eligibility` (the
/// node's answer), with the VRF proofs of each: `(layer, Vec<VotingEligibility>)` ascending by
/// layer, proofs ascending by `j`. Uses the layers per epoch of every testkit devnet
/// ([`EligibilityParams::devnet`], 12); [`eligible_layers_in`] takes another.
pub fn eligible_layers(seed: &[u8; 32], eligibility: &Eligibility) -> Vec<(LayerId, Vec<VotingEligibility>)> {
    eligible_layers_in(seed, eligibility, EligibilityParams::devnet().layers_per_epoch)
}

/// [`eligible_layers`] for a network of `layers_per_epoch` layers per epoch.
pub fn eligible_layers_in(
    seed: &[u8; 32],
    eligibility: &Eligibility,
    layers_per_epoch: u32,
) -> Vec<(LayerId, Vec<VotingEligibility>)> {
    let mut by_layer: BTreeMap<LayerId, Vec<VotingEligibility>> = BTreeMap::new();
    for j in 0..eligibility.slots {
        let msg = vrf_message(&eligibility.beacon, eligibility.epoch, eligibility.vrf_nonce, j);
        let sig = crate::vrf::prove(seed, &msg);
        let layer = eligibility_layer(eligibility.epoch, layers_per_epoch, &sig).expect("eligible layer");
        by_layer
            .entry(layer)
            .or_default()
            .push(VotingEligibility { j, sig });
    }
    by_layer.into_iter().collect()
}

/// (Re-)signs `ballot` with `seed` for `genesis_id`, setting its smesher id to the seed's key.
pub fn sign_ballot(genesis_id: &[u8; 20], seed: &[u8; 32], ballot: &mut Ballot) {
    let key = SigningKey::from_bytes(seed);
    ballot.smesher_id = key.verifying_key().to_bytes();
    ballot.signature = key
        .sign(&ballot_signing_message(genesis_id, &ballot.signed_bytes()))
        .to_bytes();
}

/// A ballot for `layer` signed with `seed` (reference ballot, with `EpochData` from
/// `eligibility`, when `ref_ballot` is None); opinion hash zero.
pub fn signed_ballot(
    genesis_id: &[u8; 20],
    seed: &[u8; 32],
    eligibility: &Eligibility,
    layer: LayerId,
    proofs: Vec<VotingEligibility>,
    ref_ballot: Option<BallotId>,
) -> Ballot {
    let mut b = Ballot {
        layer,
        atx_id: eligibility.atx,
        opinion_hash: [0; 32],
        epoch_data: ref_ballot.is_none().then_some(EpochData {
            active_set_hash: eligibility.active_set_hash,
            beacon: eligibility.beacon,
            eligibility_count: eligibility.slots,
        }),
        ref_ballot,
        eligibility_proofs: proofs,
        smesher_id: [0; 32],
        signature: [0; 64],
    };
    sign_ballot(genesis_id, seed, &mut b);
    b
}

/// The ballots of every eligible layer of the epoch, ascending by layer: the first is the
/// reference ballot, the others name it.
pub fn epoch_ballots(genesis_id: &[u8; 20], seed: &[u8; 32], eligibility: &Eligibility) -> Vec<Ballot> {
    let mut out: Vec<Ballot> = Vec::new();
    for (layer, proofs) in eligible_layers(seed, eligibility) {
        let reference = out.first().map(Ballot::id);
        out.push(signed_ballot(
            genesis_id,
            seed,
            eligibility,
            layer,
            proofs,
            reference,
        ));
    }
    out
}
