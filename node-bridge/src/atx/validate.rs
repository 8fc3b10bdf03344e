//! ATX v1 validation (spec/devnet.md §2.4-§2.6) as a pure function of the ATX, the network's
//! parameters and what the node already knows ([`AtxLookup`]).
//!
//! Order of the checks (cheap before expensive; each rejection names its rule):
//!
//! 1. signature (ed25519 `verify_strict` of [`signing_bytes`] by `SmesherID`);
//! 2. syntax: NIPoST parts present, publish epoch ≤ current + 1, positioning ATX ≠ 0, units in
//!    `[min, max]`, labels per unit ≥ configured, then the initial / non-initial field rules
//!    (as go-spacemesh's `HandlerV1`, the initial ATX's `NodeID` must be present but is not
//!    compared with the signer);
//! 3. dependencies: commitment ATX (golden or published earlier), previous ATX (same smesher,
//!    earlier epoch, sequence + 1), positioning ATX (golden or published earlier);
//! 4. the PoET proof named by `PostMetadata.Challenge` and the membership of this ATX's PoET
//!    challenge in its statement;
//! 5. VRF nonce (initial ATX; later when given or when units grew);
//! 6. initial PoST (all K2 indices, zero challenge), then the NIPoST's PoST (K3 indices);
//! 7. derived values: effective units, base height, ticks, weight (overflow is an error).
//!
//! The contextual rules of §4 (double publish, two successors of one ATX) are not part of this
//! function: see [`super::malfeasance`] and [`super::store::AtxStore`].

use post::pow::PowVerifier;
use post::proof::{InitConfig, ProofConfig, ProofMetadata};
use post::verify::{verify, verify_vrf_nonce, Mode, VerifyError, VerifyOptions, VrfError};

use super::ids::{poet_challenge, signing_bytes, verify_signature, GenesisId};
use super::wire::{ActivationTxV1, AtxId, Coinbase, Epoch, Hash32, NodeId, EMPTY_ATX_ID};

/// The PoST challenge of an initial PoST.
pub const ZERO_CHALLENGE: Hash32 = [0; 32];

/// Protocol parameters ATX validation depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtxParams {
    pub labels_per_unit: u64,
    pub min_num_units: u32,
    pub max_num_units: u32,
    pub k1: u32,
    pub k2: u32,
    pub k3: u32,
    /// k2pow threshold for one unit (32 bytes big-endian).
    pub pow_difficulty: [u8; 32],
    pub scrypt_n: usize,
    /// PoET leaves per tick.
    pub tick_size: u64,
}

impl AtxParams {
    pub fn proof_config(&self) -> ProofConfig {
        ProofConfig {
            k1: self.k1,
            k2: self.k2,
            pow_difficulty: self.pow_difficulty,
        }
    }

    pub fn init_config(&self) -> InitConfig {
        InitConfig {
            min_num_units: self.min_num_units,
            max_num_units: self.max_num_units,
            labels_per_unit: self.labels_per_unit,
            scrypt_n: self.scrypt_n,
        }
    }
}

/// A PoET proof the node has verified and stored under its reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoetProofInfo {
    /// Root of the member tree (the PoET statement).
    pub statement: Hash32,
    pub leaf_count: u64,
}

/// A valid ATX with its derived values: what the node keeps and what later ATXs refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValidatedAtx {
    pub id: AtxId,
    pub smesher_id: NodeId,
    pub publish_epoch: Epoch,
    pub sequence: u64,
    /// [`EMPTY_ATX_ID`] for an initial ATX.
    pub prev_atx_id: AtxId,
    pub positioning_atx_id: AtxId,
    /// The identity's commitment ATX (from the initial ATX, resolved for later ones).
    pub commitment_atx_id: AtxId,
    pub coinbase: Coinbase,
    /// Units claimed by this ATX.
    pub num_units: u32,
    /// `min(previous units, units)`; the claimed units for an initial ATX.
    pub effective_units: u32,
    /// The identity's VRF nonce in force after this ATX.
    pub vrf_nonce: u64,
    /// Tick height of the positioning ATX (0 for golden).
    pub base_height: u64,
    pub ticks: u64,
    pub weight: u64,
}

impl ValidatedAtx {
    /// `base_height + ticks` (checked when validated, so it cannot overflow).
    pub fn tick_height(&self) -> u64 {
        self.base_height.saturating_add(self.ticks)
    }

    pub fn is_initial(&self) -> bool {
        self.prev_atx_id == EMPTY_ATX_ID
    }
}

/// What the node knows that validation needs.
pub trait AtxLookup {
    /// A previously validated ATX.
    fn atx(&self, id: &AtxId) -> Option<ValidatedAtx>;
    /// The commitment ATX of `smesher`'s first (initial) ATX.
    fn first_commitment(&self, smesher: &NodeId) -> Option<AtxId>;
    /// A verified PoET proof by its reference.
    fn poet_proof(&self, proof_ref: &Hash32) -> Option<PoetProofInfo>;
    /// The node's current epoch.
    fn current_epoch(&self) -> Epoch;
}

/// The network and local settings of a validator.
pub struct ValidationContext<'a> {
    pub genesis_id: GenesisId,
    pub golden_atx: AtxId,
    pub params: AtxParams,
    /// Checks k2pows (RandomX on a real node).
    pub pow: &'a dyn PowVerifier,
    /// Local seed of the K3 index selection (different verifiers check different indices).
    pub k3_seed: Vec<u8>,
    /// PoST verifier options; keep `strict` off where agreement with consensus is needed.
    pub verify_options: VerifyOptions,
}

impl std::fmt::Debug for ValidationContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidationContext")
            .field("genesis_id", &hex::encode(self.genesis_id))
            .field("golden_atx", &hex::encode(self.golden_atx))
            .field("params", &self.params)
            .field("k3_seed", &hex::encode(&self.k3_seed))
            .field("verify_options", &self.verify_options)
            .finish()
    }
}

/// Which PoST of an ATX failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostKind {
    Initial,
    NiPost,
}

impl std::fmt::Display for PostKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PostKind::Initial => "initial PoST",
            PostKind::NiPost => "NIPoST PoST",
        })
    }
}

/// Why an ATX is invalid: one variant per rule.
#[derive(Debug, thiserror::Error)]
pub enum AtxError {
    // --- signature
    #[error("signature: not a valid ed25519 signature of the ATX by smesher {}", hex::encode(.smesher))]
    InvalidSignature { smesher: NodeId },
    // --- syntax
    #[error("syntax: the ATX has no NIPoST")]
    MissingNiPost,
    #[error("syntax: the NIPoST has no PoST")]
    MissingNiPostPost,
    #[error("syntax: the NIPoST has no PoST metadata")]
    MissingPostMetadata,
    #[error("syntax: publish epoch {publish} is after the next epoch (current {current})")]
    PublishEpochTooFar { publish: Epoch, current: Epoch },
    #[error("syntax: the positioning ATX id is empty")]
    EmptyPositioningAtx,
    #[error("syntax: {got} units outside [{min}, {max}]")]
    NumUnitsOutOfRange { got: u32, min: u32, max: u32 },
    #[error("syntax: {got} labels per unit, fewer than the configured {configured}")]
    LabelsPerUnitTooSmall { got: u64, configured: u64 },
    #[error("initial ATX: no initial PoST")]
    InitialMissingPost,
    #[error("initial ATX: no node id")]
    InitialMissingNodeId,
    #[error("initial ATX: no VRF nonce")]
    InitialMissingVrfNonce,
    #[error("initial ATX: no commitment ATX")]
    InitialMissingCommitment,
    #[error("initial ATX: the commitment ATX id is empty")]
    EmptyCommitmentAtx,
    #[error("initial ATX: sequence {got}, must be 0")]
    InitialSequenceNotZero { got: u64 },
    #[error("non-initial ATX: carries an initial PoST")]
    UnexpectedInitialPost,
    #[error("non-initial ATX: carries a node id")]
    UnexpectedNodeId,
    #[error("non-initial ATX: carries a commitment ATX")]
    UnexpectedCommitmentAtx,
    // --- dependencies
    #[error("commitment ATX {} is unknown", hex::encode(.id))]
    UnknownCommitmentAtx { id: AtxId },
    #[error("commitment ATX published in epoch {commitment_epoch}, not before this ATX's epoch {publish}")]
    CommitmentAtxNotOlder { commitment_epoch: Epoch, publish: Epoch },
    #[error("the commitment ATX of smesher {} (from its first ATX) is unknown", hex::encode(.smesher))]
    UnknownIdentityCommitment { smesher: NodeId },
    #[error("previous ATX {} is unknown", hex::encode(.id))]
    UnknownPrevAtx { id: AtxId },
    #[error("previous ATX belongs to smesher {}, not {}", hex::encode(.prev_smesher), hex::encode(.smesher))]
    PrevAtxWrongSmesher { prev_smesher: NodeId, smesher: NodeId },
    #[error("previous ATX published in epoch {prev_epoch}, not before this ATX's epoch {publish}")]
    PrevAtxNotOlder { prev_epoch: Epoch, publish: Epoch },
    #[error("sequence {got}, expected previous + 1 = {expected:?}")]
    WrongSequence { expected: Option<u64>, got: u64 },
    #[error("positioning ATX {} is unknown", hex::encode(.id))]
    UnknownPositioningAtx { id: AtxId },
    #[error("positioning ATX published in epoch {positioning_epoch}, not before this ATX's epoch {publish}")]
    PositioningAtxNotOlder {
        positioning_epoch: Epoch,
        publish: Epoch,
    },
    // --- PoET
    #[error("no PoET proof known under reference {}", hex::encode(.proof_ref))]
    UnknownPoetProof { proof_ref: Hash32 },
    #[error("membership: the ATX's PoET challenge at leaf {leaf_index} does not fold to the PoET statement")]
    InvalidMembership { leaf_index: u64 },
    // --- VRF nonce, PoST
    #[error("VRF nonce: {units} units × {labels_per_unit} labels overflows")]
    NumLabelsOverflow { units: u32, labels_per_unit: u64 },
    #[error("VRF nonce: {0}")]
    InvalidVrfNonce(#[source] VrfError),
    #[error("{kind}: {source}")]
    InvalidPost {
        kind: PostKind,
        #[source]
        source: VerifyError,
    },
    // --- derived values
    #[error("params: tick size is 0")]
    ZeroTickSize,
    #[error("height: positioning height {base} + {ticks} ticks overflows")]
    HeightOverflow { base: u64, ticks: u64 },
    #[error("weight: {units} units × {ticks} ticks overflows")]
    WeightOverflow { units: u32, ticks: u64 },
}

/// `ticks = leaf_count / tick_size` and `weight = units × ticks`.
pub fn ticks_and_weight(units: u32, leaf_count: u64, tick_size: u64) -> Result<(u64, u64), AtxError> {
    if tick_size == 0 {
        return Err(AtxError::ZeroTickSize);
    }
    let ticks = leaf_count / tick_size;
    let weight = u64::from(units)
        .checked_mul(ticks)
        .ok_or(AtxError::WeightOverflow { units, ticks })?;
    Ok((ticks, weight))
}

/// Fold a membership path with the PoET tree's rules (`crate::poet::tree`). Index bits above the
/// path length are not looked at, as the helper folds them; whether go-spacemesh's
/// `merkle.ValidatePartialTree` rejects such indices is unconfirmed.
fn membership_ok(leaf: &Hash32, index: u64, nodes: &[Hash32], root: &Hash32) -> bool {
    crate::poet::tree::verify_membership(leaf, index, nodes, root)
}

/// Validate `atx` (spec/devnet.md §2.4): every rule except the contextual ones of §4.
pub fn validate_atx_v1(
    atx: &ActivationTxV1,
    ctx: &ValidationContext<'_>,
    lookup: &dyn AtxLookup,
) -> Result<ValidatedAtx, AtxError> {
    let inner = &atx.inner;
    let ch = &inner.challenge;
    let params = &ctx.params;
    let publish = ch.publish_epoch;
    let smesher = atx.smesher_id;

    // 1. Signature.
    if !verify_signature(&smesher, &signing_bytes(&ctx.genesis_id, inner), &atx.signature) {
        return Err(AtxError::InvalidSignature { smesher });
    }

    // 2. Syntax.
    let nipost = inner.nipost.as_ref().ok_or(AtxError::MissingNiPost)?;
    let nipost_post = nipost.post.as_ref().ok_or(AtxError::MissingNiPostPost)?;
    let metadata = nipost
        .post_metadata
        .as_ref()
        .ok_or(AtxError::MissingPostMetadata)?;
    let current = lookup.current_epoch();
    if u64::from(publish) > u64::from(current) + 1 {
        return Err(AtxError::PublishEpochTooFar { publish, current });
    }
    if ch.positioning_atx_id == EMPTY_ATX_ID {
        return Err(AtxError::EmptyPositioningAtx);
    }
    if inner.num_units < params.min_num_units || inner.num_units > params.max_num_units {
        return Err(AtxError::NumUnitsOutOfRange {
            got: inner.num_units,
            min: params.min_num_units,
            max: params.max_num_units,
        });
    }
    if metadata.labels_per_unit < params.labels_per_unit {
        return Err(AtxError::LabelsPerUnitTooSmall {
            got: metadata.labels_per_unit,
            configured: params.labels_per_unit,
        });
    }
    let initial = ch.prev_atx_id == EMPTY_ATX_ID;
    if initial {
        if ch.initial_post.is_none() {
            return Err(AtxError::InitialMissingPost);
        }
        if inner.node_id.is_none() {
            return Err(AtxError::InitialMissingNodeId);
        }
        if inner.vrf_nonce.is_none() {
            return Err(AtxError::InitialMissingVrfNonce);
        }
        let commitment = ch.commitment_atx_id.ok_or(AtxError::InitialMissingCommitment)?;
        if commitment == EMPTY_ATX_ID {
            return Err(AtxError::EmptyCommitmentAtx);
        }
        if ch.sequence != 0 {
            return Err(AtxError::InitialSequenceNotZero { got: ch.sequence });
        }
    } else {
        if ch.initial_post.is_some() {
            return Err(AtxError::UnexpectedInitialPost);
        }
        if inner.node_id.is_some() {
            return Err(AtxError::UnexpectedNodeId);
        }
        if ch.commitment_atx_id.is_some() {
            return Err(AtxError::UnexpectedCommitmentAtx);
        }
    }

    // 3. Dependencies.
    let (commitment, effective_units, vrf_to_check, vrf_nonce) = match (initial, ch.commitment_atx_id) {
        (true, Some(commitment)) => {
            if commitment != ctx.golden_atx {
                let c = lookup
                    .atx(&commitment)
                    .ok_or(AtxError::UnknownCommitmentAtx { id: commitment })?;
                if c.publish_epoch >= publish {
                    return Err(AtxError::CommitmentAtxNotOlder {
                        commitment_epoch: c.publish_epoch,
                        publish,
                    });
                }
            }
            // Presence was checked above.
            let nonce = inner.vrf_nonce.unwrap_or_default();
            (commitment, inner.num_units, Some(nonce), nonce)
        }
        _ => {
            let prev = lookup
                .atx(&ch.prev_atx_id)
                .ok_or(AtxError::UnknownPrevAtx { id: ch.prev_atx_id })?;
            if prev.smesher_id != smesher {
                return Err(AtxError::PrevAtxWrongSmesher {
                    prev_smesher: prev.smesher_id,
                    smesher,
                });
            }
            if prev.publish_epoch >= publish {
                return Err(AtxError::PrevAtxNotOlder {
                    prev_epoch: prev.publish_epoch,
                    publish,
                });
            }
            let expected = prev.sequence.checked_add(1);
            if expected != Some(ch.sequence) {
                return Err(AtxError::WrongSequence {
                    expected,
                    got: ch.sequence,
                });
            }
            let commitment = lookup
                .first_commitment(&smesher)
                .ok_or(AtxError::UnknownIdentityCommitment { smesher })?;
            let nonce = inner.vrf_nonce.unwrap_or(prev.vrf_nonce);
            let check = (inner.vrf_nonce.is_some() || inner.num_units > prev.num_units).then_some(nonce);
            (commitment, prev.num_units.min(inner.num_units), check, nonce)
        }
    };
    let base_height = if ch.positioning_atx_id == ctx.golden_atx {
        0
    } else {
        let pos = lookup
            .atx(&ch.positioning_atx_id)
            .ok_or(AtxError::UnknownPositioningAtx {
                id: ch.positioning_atx_id,
            })?;
        if pos.publish_epoch >= publish {
            return Err(AtxError::PositioningAtxNotOlder {
                positioning_epoch: pos.publish_epoch,
                publish,
            });
        }
        pos.base_height
            .checked_add(pos.ticks)
            .ok_or(AtxError::HeightOverflow {
                base: pos.base_height,
                ticks: pos.ticks,
            })?
    };

    // 4. PoET proof and membership.
    let poet = lookup
        .poet_proof(&metadata.challenge)
        .ok_or(AtxError::UnknownPoetProof {
            proof_ref: metadata.challenge,
        })?;
    let member = poet_challenge(ch);
    let leaf_index = nipost.membership.leaf_index;
    if !membership_ok(&member, leaf_index, &nipost.membership.nodes, &poet.statement) {
        return Err(AtxError::InvalidMembership { leaf_index });
    }

    // 5. VRF nonce.
    if let Some(nonce) = vrf_to_check {
        let num_labels = u64::from(inner.num_units)
            .checked_mul(metadata.labels_per_unit)
            .ok_or(AtxError::NumLabelsOverflow {
                units: inner.num_units,
                labels_per_unit: metadata.labels_per_unit,
            })?;
        verify_vrf_nonce(&smesher, &commitment, nonce, num_labels, params.scrypt_n)
            .map_err(AtxError::InvalidVrfNonce)?;
    }

    // 6. PoSTs.
    let cfg = params.proof_config();
    let init_cfg = params.init_config();
    let post_metadata = |challenge: Hash32| ProofMetadata {
        node_id: smesher,
        commitment_atx_id: commitment,
        challenge,
        num_units: inner.num_units,
        labels_per_unit: metadata.labels_per_unit,
    };
    if let Some(initial_post) = &ch.initial_post {
        verify(
            &initial_post.to_proof(),
            &post_metadata(ZERO_CHALLENGE),
            &cfg,
            &init_cfg,
            &Mode::All,
            &ctx.verify_options,
            ctx.pow,
        )
        .map_err(|source| AtxError::InvalidPost {
            kind: PostKind::Initial,
            source,
        })?;
    }
    verify(
        &nipost_post.to_proof(),
        &post_metadata(metadata.challenge),
        &cfg,
        &init_cfg,
        &Mode::Subset {
            k3: params.k3 as usize,
            seed: ctx.k3_seed.clone(),
        },
        &ctx.verify_options,
        ctx.pow,
    )
    .map_err(|source| AtxError::InvalidPost {
        kind: PostKind::NiPost,
        source,
    })?;

    // 7. Derived values.
    let (ticks, weight) = ticks_and_weight(effective_units, poet.leaf_count, params.tick_size)?;
    if base_height.checked_add(ticks).is_none() {
        return Err(AtxError::HeightOverflow {
            base: base_height,
            ticks,
        });
    }
    Ok(ValidatedAtx {
        id: atx.id(),
        smesher_id: smesher,
        publish_epoch: publish,
        sequence: ch.sequence,
        prev_atx_id: ch.prev_atx_id,
        positioning_atx_id: ch.positioning_atx_id,
        commitment_atx_id: commitment,
        coinbase: inner.coinbase,
        num_units: inner.num_units,
        effective_units,
        vrf_nonce,
        base_height,
        ticks,
        weight,
    })
}

#[cfg(test)]
mod tests;
