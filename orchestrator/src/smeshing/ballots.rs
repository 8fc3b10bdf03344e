//! Proposal eligibility and ballots (spec/devnet.md §3.2, node.md §4), for a node that leaves the
//! ballots to the key holder (the embedded devnet; a real go-spacemesh node signs its own).
//!
//! Every pass, for the current layer `L` of epoch `E`, each identity with an ATX in `E`'s active
//! set (the node's [`Eligibility`]):
//!
//! 1. its eligibility proofs for `E`, once per epoch: for each slot `j < slots` the keystore's
//!    ECVRF proof of `vrf_message(beacon, E, vrf_nonce, j)`, which selects the layer
//!    `first_layer(E) + u64le(proof[0..8]) mod LayersPerEpoch`;
//! 2. if it holds slots in `L` and has not voted in `L`: a ballot with those proofs (ascending
//!    `j`), the reference ballot of the epoch (carrying `EpochData`) when the node has none of
//!    the identity yet, else naming the node's reference ballot;
//! 3. the safety database records `blake3(signed bytes)` for `(identity, L)` before the keystore
//!    signs: a second, different ballot for the same layer (a restart with another view of the
//!    node, a second coordinator) is refused and nothing is signed, since two ballots in one layer
//!    are a MultipleBallots offence. The very same ballot again is harmless (re-sent as is).
//! 4. the node validates it (signature, VRF proofs, layers, reference data) and pays the layer's
//!    rewards to the ballots it accepted by the layer's end.
//!
//! No key material passes through here: the keystore returns VRF proofs and signatures only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use node_bridge::ballot::{vrf_message, Ballot, BallotSubmission, EpochData, VotingEligibility};
use node_bridge::bridge::{BridgeError, Eligibility, NodeBridge};
use node_bridge::clock::{EpochId, LayerId};
use node_bridge::rewards::{eligibility_layer, EligibilityError};

use crate::keystore::{Keystore, KeystoreError, NodeId};
use crate::store::{BallotSigning, Identity, NotSafeReason, Store, StoreError};

/// Why an identity did not vote in a layer.
#[derive(Debug, thiserror::Error)]
pub enum VoteError {
    #[error("identity {node_id}, layer {layer}: node: {step}: {source}")]
    Node {
        node_id: NodeId,
        layer: LayerId,
        step: &'static str,
        #[source]
        source: Box<BridgeError>,
    },
    #[error("identity {node_id}, layer {layer}: keystore ({what}): {source}")]
    Keystore {
        node_id: NodeId,
        layer: LayerId,
        what: &'static str,
        #[source]
        source: Box<KeystoreError>,
    },
    #[error("identity {node_id}, epoch {epoch}: eligibility: {source}")]
    Eligibility {
        node_id: NodeId,
        epoch: EpochId,
        #[source]
        source: EligibilityError,
    },
    #[error("identity {node_id}, layer {layer}: safety database: {source}")]
    SafetyDatabase {
        node_id: NodeId,
        layer: LayerId,
        #[source]
        source: Box<StoreError>,
    },
    #[error("identity {node_id}, layer {layer}: the safety database refused the ballot: {reason}")]
    NotSafe {
        node_id: NodeId,
        layer: LayerId,
        reason: NotSafeReason,
    },
    #[error(
        "identity {node_id}, layer {layer}: the node rejected ballot {}: {reason}",
        hex::encode(id)
    )]
    Rejected {
        node_id: NodeId,
        layer: LayerId,
        id: [u8; 20],
        reason: String,
    },
}

/// What one identity did in one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vote {
    /// A ballot with `proofs` eligibility proofs, accepted by the node (`duplicate`: it had it).
    Cast {
        layer: LayerId,
        proofs: usize,
        duplicate: bool,
    },
}

/// An identity's eligibility proofs in one epoch, by layer.
struct EpochProofs {
    epoch: EpochId,
    by_layer: BTreeMap<LayerId, Vec<VotingEligibility>>,
}

/// The ballot-voting state of the smeshing driver.
pub struct Voter {
    store: Store,
    keystore: Arc<Keystore>,
    node: Arc<dyn NodeBridge>,
    /// The node's layers per epoch, once known.
    layers_per_epoch: Option<u32>,
    /// Per identity, its proofs of the epoch they were computed for.
    proofs: HashMap<NodeId, EpochProofs>,
    /// `(identity, layer)` already settled (voted, or refused for good).
    settled: HashSet<(NodeId, LayerId)>,
}

impl Voter {
    pub fn new(store: Store, keystore: Arc<Keystore>, node: Arc<dyn NodeBridge>) -> Self {
        Voter {
            store,
            keystore,
            node,
            layers_per_epoch: None,
            proofs: HashMap::new(),
            settled: HashSet::new(),
        }
    }

    /// One pass: every identity with slots in the node's current layer votes in it (see the
    /// module docs). Failures are logged per identity; the layer is retried next pass unless the
    /// failure is final (refused by the safety database or rejected by the node).
    pub async fn pass(&mut self, identities: &[Identity]) -> Vec<(NodeId, Result<Vote, VoteError>)> {
        let mut out = Vec::new();
        let Ok(now) = self.node.now() else {
            return out;
        };
        let Ok(genesis) = self.node.genesis() else {
            return out;
        };
        if now.layer < genesis.effective_genesis {
            return out;
        }
        let lpe = match self.layers_per_epoch {
            Some(n) => n,
            None => match self.node.clock_params() {
                Ok(c) => *self.layers_per_epoch.insert(c.layers_per_epoch),
                Err(_) => return out,
            },
        };
        self.settled.retain(|(_, l)| *l >= now.layer);
        for ident in identities {
            let node_id = NodeId::from_bytes(ident.node_id);
            if !ident.state.is_initialized() || self.settled.contains(&(node_id, now.layer)) {
                continue;
            }
            match self
                .vote(node_id, now.epoch, now.layer, lpe, &genesis.genesis_id)
                .await
            {
                Ok(None) => {}
                Ok(Some(v)) => {
                    self.settled.insert((node_id, now.layer));
                    out.push((node_id, Ok(v)));
                }
                Err(e) => {
                    if matches!(e, VoteError::NotSafe { .. } | VoteError::Rejected { .. }) {
                        self.settled.insert((node_id, now.layer));
                    }
                    tracing::warn!(identity = %node_id, error = %e, "ballot not cast");
                    out.push((node_id, Err(e)));
                }
            }
        }
        out
    }

    async fn vote(
        &mut self,
        node_id: NodeId,
        epoch: EpochId,
        layer: LayerId,
        layers_per_epoch: u32,
        genesis_id: &[u8; 20],
    ) -> Result<Option<Vote>, VoteError> {
        let node_err = |step: &'static str| {
            move |source| VoteError::Node {
                node_id,
                layer,
                step,
                source: Box::new(source),
            }
        };
        let cached = self.proofs.get(&node_id).filter(|p| p.epoch == epoch);
        if cached.is_some_and(|p| !p.by_layer.contains_key(&layer)) {
            self.settled.insert((node_id, layer));
            return Ok(None);
        }
        // One node call: the eligibility (for the proofs, when not cached yet) and the ballots
        // the node already holds.
        let Some(e) = self
            .node
            .eligibility(node_id.as_bytes(), epoch)
            .map_err(node_err("eligibility"))?
        else {
            self.proofs.remove(&node_id);
            self.settled.insert((node_id, layer));
            return Ok(None);
        };
        if !e.fixed {
            return Ok(None);
        }
        if cached.is_none() {
            let by_layer = eligibility_proofs(&self.keystore, node_id, &e, layers_per_epoch, layer)?;
            self.proofs.insert(node_id, EpochProofs { epoch, by_layer });
        }
        let Some(proofs) = self
            .proofs
            .get(&node_id)
            .and_then(|p| p.by_layer.get(&layer))
            .cloned()
        else {
            self.settled.insert((node_id, layer));
            return Ok(None);
        };
        // Already cast (a restart in the middle of the layer, or an answer lost): the node holds a
        // ballot of the identity for this layer. Building one again could differ (the reference
        // ballot now exists), so nothing is built.
        if let Some(n) = e.layers.iter().find(|(l, _)| *l == layer) {
            return Ok(Some(Vote::Cast {
                layer,
                proofs: n.1 as usize,
                duplicate: true,
            }));
        }
        let reference = self
            .node
            .reference_ballot(node_id.as_bytes(), epoch)
            .map_err(node_err("reference ballot"))?;
        let count = proofs.len();
        let mut ballot = Ballot {
            layer,
            atx_id: e.atx,
            opinion_hash: [0; 32],
            epoch_data: match reference {
                Some(_) => None,
                None => Some(EpochData {
                    active_set_hash: e.active_set_hash,
                    beacon: e.beacon,
                    eligibility_count: e.slots,
                }),
            },
            ref_ballot: reference,
            eligibility_proofs: proofs,
            smesher_id: node_id.to_bytes(),
            signature: [0; 64],
        };
        let message = ballot.signed_bytes();
        let permit = match self
            .store
            .grant_ballot_signature(node_id, layer, &message, crate::reconcile::now_ms())
            .await
            .map_err(|source| VoteError::SafetyDatabase {
                node_id,
                layer,
                source: Box::new(source),
            })? {
            BallotSigning::Permitted(p) => p,
            BallotSigning::Refused { reason, .. } => {
                return Err(VoteError::NotSafe {
                    node_id,
                    layer,
                    reason,
                })
            }
        };
        ballot.signature = self
            .keystore
            .sign_ballot(permit, genesis_id, &message)
            .map_err(|source| VoteError::Keystore {
                node_id,
                layer,
                what: "ballot signature",
                source: Box::new(source),
            })?;
        match self
            .node
            .submit_ballot(&ballot)
            .map_err(node_err("submit ballot"))?
        {
            BallotSubmission::Accepted { duplicate, .. } => Ok(Some(Vote::Cast {
                layer,
                proofs: count,
                duplicate,
            })),
            BallotSubmission::Rejected { id, reason, .. } => Err(VoteError::Rejected {
                node_id,
                layer,
                id,
                reason,
            }),
        }
    }
}

/// The identity's eligibility proofs in `eligibility.epoch`, grouped by the layer each selects.
pub fn eligibility_proofs(
    keystore: &Keystore,
    node_id: NodeId,
    eligibility: &Eligibility,
    layers_per_epoch: u32,
    layer: LayerId,
) -> Result<BTreeMap<LayerId, Vec<VotingEligibility>>, VoteError> {
    let epoch = eligibility.epoch;
    let mut by_layer: BTreeMap<LayerId, Vec<VotingEligibility>> = BTreeMap::new();
    for j in 0..eligibility.slots {
        let alpha = vrf_message(&eligibility.beacon, epoch, eligibility.vrf_nonce, j);
        let sig = keystore
            .vrf_prove(&node_id, &alpha)
            .map_err(|source| VoteError::Keystore {
                node_id,
                layer,
                what: "eligibility VRF proof",
                source: Box::new(source),
            })?;
        let at =
            eligibility_layer(epoch, layers_per_epoch, &sig).map_err(|source| VoteError::Eligibility {
                node_id,
                epoch,
                source,
            })?;
        by_layer.entry(at).or_default().push(VotingEligibility { j, sig });
    }
    Ok(by_layer)
}
