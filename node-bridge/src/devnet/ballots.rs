//! Ballots in the devnet: validation of a submitted ballot (each rule in order, a rejection
//! naming the rule), storage per epoch, MultipleBallots detection, and the agreed set of a layer
//! (the ballots its block pays).
//!
//! The rules, in order:
//!
//! 1. syntax: exactly one of `EpochData` and reference ballot; at least one eligibility proof;
//! 2. the very same ballot (same id) again: accepted as a duplicate, nothing changes (checked
//!    before the deadline, so a resubmission after the layer ended still says "accepted");
//! 3. layer: its epoch has started (the active set is fixed), it is not before the effective
//!    genesis, and it has not ended (ballots for `L` arrive before `L`'s end);
//! 4. the ed25519 signature (strict) of `smesher_id` over
//!    `genesis_id ‖ DOMAIN_BALLOT ‖ signed_bytes`;
//! 5. `atx_id` is the smesher's ATX in the epoch's active set, and the identity is not flagged;
//! 6. reference: a ballot with `EpochData` is the smesher's first reference ballot of the epoch
//!    (a second one is refused, unless it is for the very layer of the first: then it is a
//!    double ballot, rule 8) and its `EpochData` matches the node's (eligibility count = slots,
//!    the epoch's beacon, the active set hash); a ballot naming a reference ballot names the
//!    smesher's stored one;
//! 7. each proof: `j` strictly ascending, `j < slots`, the ECVRF proof verifies under the
//!    smesher's key over `vrf_message(beacon, epoch, vrf_nonce, j)`, selects this layer, and
//!    `j` was not claimed in another layer (an ECVRF proof with a torsion point added to Gamma
//!    still verifies when the challenge is a multiple of its order, and selects another layer);
//! 8. a different valid ballot of the smesher for this layer is already stored: this one is
//!    stored too, and the two make a MultipleBallots proof that flags the identity.
//!
//! A layer's block pays, per identity not flagged by the layer's end, its first accepted ballot
//! for that layer.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};

use super::State;
use crate::atx::ids::verify_signature;
use crate::atx::malfeasance::{detect_multiple_ballots, MULTIPLE_BALLOTS};
use crate::atx::{AtxId, MalfeasanceProof, NodeId};
use crate::ballot::{ballot_signing_message, vrf_message, Ballot, BallotId};
use crate::bridge::{BallotSubmission, BridgeError, NodeEvent};
use crate::clock::{EpochId, LayerId};
use crate::rewards::ProposalReward;
use crate::vm::Address;

/// The accepted ballots of one epoch.
#[derive(Debug, Clone, Default)]
pub(super) struct EpochBallots {
    /// Every accepted ballot (equivocating ones too, so that a resubmission is a duplicate).
    by_id: HashMap<BallotId, Ballot>,
    /// Acceptance order (what a snapshot keeps; inserting in this order rebuilds the rest).
    order: Vec<BallotId>,
    /// Per layer, each smesher's first accepted ballot: the one its block pays.
    by_layer: BTreeMap<LayerId, BTreeMap<NodeId, BallotId>>,
    /// Each smesher's reference ballot (its first accepted ballot with `EpochData`).
    refs: HashMap<NodeId, BallotId>,
    /// The layer each `(smesher, slot)` was first claimed in: a slot counts in one layer only
    /// (an ECVRF proof can be malleated by a torsion point so that it selects another layer).
    slots: HashMap<(NodeId, u32), LayerId>,
}

impl EpochBallots {
    /// Stores an accepted ballot; returns the smesher's ballot for that layer stored before, if
    /// any (an equivocation).
    pub(super) fn insert(&mut self, id: BallotId, ballot: Ballot) -> Option<BallotId> {
        let smesher = ballot.smesher_id;
        if ballot.epoch_data.is_some() {
            self.refs.entry(smesher).or_insert(id);
        }
        let earlier = match self.by_layer.entry(ballot.layer).or_default().entry(smesher) {
            Entry::Occupied(e) => Some(*e.get()),
            Entry::Vacant(v) => {
                v.insert(id);
                None
            }
        };
        for p in &ballot.eligibility_proofs {
            self.slots.entry((smesher, p.j)).or_insert(ballot.layer);
        }
        self.order.push(id);
        self.by_id.insert(id, ballot);
        earlier
    }

    /// The layer in which `smesher` already claimed slot `j`, if any.
    fn slot_layer(&self, smesher: &NodeId, j: u32) -> Option<LayerId> {
        self.slots.get(&(*smesher, j)).copied()
    }

    pub(super) fn get(&self, id: &BallotId) -> Option<&Ballot> {
        self.by_id.get(id)
    }

    pub(super) fn reference(&self, smesher: &NodeId) -> Option<BallotId> {
        self.refs.get(smesher).copied()
    }

    /// Every accepted ballot, in acceptance order.
    pub(super) fn in_order(&self) -> impl Iterator<Item = &Ballot> {
        self.order.iter().filter_map(|id| self.by_id.get(id))
    }

    /// The ballots `layer`'s block may pay: each smesher's first, by smesher.
    fn paid_in(&self, layer: LayerId) -> impl Iterator<Item = &Ballot> {
        self.by_layer
            .get(&layer)
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|id| self.by_id.get(id))
    }

    /// `(layer, proofs)` of the smesher's paid ballots, ascending by layer.
    pub(super) fn layers_of(&self, smesher: &NodeId) -> Vec<(LayerId, u32)> {
        self.by_layer
            .iter()
            .filter_map(|(layer, m)| {
                let b = self.by_id.get(m.get(smesher)?)?;
                Some((*layer, proof_count(b)))
            })
            .collect()
    }
}

fn proof_count(b: &Ballot) -> u32 {
    u32::try_from(b.eligibility_proofs.len()).unwrap_or(u32::MAX)
}

fn short(id: &[u8]) -> String {
    hex::encode(&id[..id.len().min(8)])
}

impl State {
    /// Validates and stores `ballot`; the flag says whether the state changed.
    pub(super) fn submit_ballot(&mut self, ballot: &Ballot) -> Result<(BallotSubmission, bool), BridgeError> {
        let id = ballot.id();
        let smesher = ballot.smesher_id;
        let epoch = self.clock.epoch_of_layer(ballot.layer);
        let rejected = |reason: String| Ok((BallotSubmission::Rejected { id, smesher, reason }, false));
        if let Err(e) = ballot.check_syntax() {
            return rejected(e.to_string());
        }
        // The very same ballot (signature and smesher included: the id covers neither).
        if self
            .ballots
            .get(&epoch)
            .is_some_and(|b| b.get(&id) == Some(ballot))
        {
            let sub = BallotSubmission::Accepted {
                id,
                duplicate: true,
                equivocation: false,
            };
            return Ok((sub, false));
        }
        if let Err(reason) = self.check_ballot(ballot, epoch) {
            return rejected(reason);
        }
        let stored = self.ballots.entry(epoch).or_default();
        let earlier = stored
            .insert(id, ballot.clone())
            .and_then(|e| stored.get(&e).cloned());
        self.push_event(NodeEvent::BallotAccepted {
            id,
            smesher,
            layer: ballot.layer,
            eligibilities: proof_count(ballot),
        });
        let equivocation = earlier.is_some();
        if let Some(proof) = earlier.and_then(|first| detect_multiple_ballots(&first, ballot)) {
            if self
                .store
                .flag(MalfeasanceProof::MultipleBallots(Box::new(proof)))
            {
                self.push_event(NodeEvent::IdentityFlagged {
                    smesher,
                    kind: MULTIPLE_BALLOTS,
                });
            }
        }
        let sub = BallotSubmission::Accepted {
            id,
            duplicate: false,
            equivocation,
        };
        Ok((sub, true))
    }

    /// Rules 3 to 7 (see the module docs); the reason of the first that fails.
    fn check_ballot(&self, ballot: &Ballot, epoch: EpochId) -> Result<(), String> {
        let layer = ballot.layer;
        let smesher = &ballot.smesher_id;
        // 3. The layer.
        let Some(set) = self.active_sets.get(&epoch) else {
            return Err(if epoch < self.oldest_epoch {
                format!("layer {layer} has ended (epoch {epoch} was forgotten)")
            } else {
                format!("epoch {epoch} of layer {layer} has not started: its active set is not fixed")
            });
        };
        let effective_genesis = self.clock.effective_genesis_layer();
        if layer < effective_genesis {
            return Err(format!(
                "layer {layer} is before the effective genesis layer {effective_genesis}"
            ));
        }
        if layer < self.next_layer {
            return Err(format!(
                "layer {layer} has ended (the next layer to apply is {})",
                self.next_layer
            ));
        }
        // 4. The signature.
        let message = ballot_signing_message(&self.genesis_id, &ballot.signed_bytes());
        if !verify_signature(smesher, &message, &ballot.signature) {
            return Err("the signature is not the smesher's over the ballot".into());
        }
        // 5. The ATX.
        let Some(member) = set.members.get(smesher) else {
            return Err(format!(
                "the smesher has no ATX in the active set of epoch {epoch} (ATX {} named)",
                short(&ballot.atx_id)
            ));
        };
        if member.atx.id != ballot.atx_id {
            return Err(format!(
                "ATX {} is not the smesher's ATX in the active set of epoch {epoch} ({})",
                short(&ballot.atx_id),
                short(&member.atx.id)
            ));
        }
        if self.store.is_malicious(smesher) {
            return Err("identity is malicious".into());
        }
        // 6. The reference ballot.
        let stored = self.ballots.get(&epoch);
        let reference = stored.and_then(|b| b.reference(smesher));
        let beacon = self.beacon(epoch);
        match (&ballot.epoch_data, &ballot.ref_ballot) {
            (Some(data), _) => {
                if let Some(r) = reference {
                    let same_layer = stored.and_then(|b| b.get(&r)).is_some_and(|b| b.layer == layer);
                    if !same_layer {
                        return Err(format!(
                            "reference ballot already exists ({}) for epoch {epoch}",
                            short(&r)
                        ));
                    }
                }
                if data.eligibility_count != member.slots {
                    return Err(format!(
                        "eligibility count {} is not the smesher's {} slots in epoch {epoch}",
                        data.eligibility_count, member.slots
                    ));
                }
                if data.beacon != beacon {
                    return Err(format!(
                        "beacon {} is not epoch {epoch}'s beacon {}",
                        hex::encode(data.beacon),
                        hex::encode(beacon)
                    ));
                }
                if data.active_set_hash != set.hash {
                    return Err(format!(
                        "active set hash {} is not the node's {} for epoch {epoch}",
                        short(&data.active_set_hash),
                        short(&set.hash)
                    ));
                }
            }
            (None, Some(r)) => match reference {
                None => {
                    let r = short(r);
                    return Err(format!(
                        "reference ballot {r} is unknown: the smesher has no reference ballot in epoch {epoch}"
                    ));
                }
                Some(own) if own != *r => {
                    let (r, own) = (short(r), short(&own));
                    return Err(format!(
                        "reference ballot {r} is not the smesher's reference ballot {own} of epoch {epoch}"
                    ));
                }
                Some(_) => {}
            },
            (None, None) => return Err("the ballot carries neither epoch data nor a reference ballot".into()),
        }
        // 7. The eligibility proofs.
        let mut previous: Option<u32> = None;
        for p in &ballot.eligibility_proofs {
            if let Some(q) = previous.filter(|q| p.j <= *q) {
                return Err(format!(
                    "eligibility counters are not strictly ascending ({} after {q})",
                    p.j
                ));
            }
            previous = Some(p.j);
            if p.j >= member.slots {
                return Err(format!(
                    "eligibility counter {} is not below the smesher's {} slots",
                    p.j, member.slots
                ));
            }
            let msg = vrf_message(&beacon, epoch, member.atx.vrf_nonce, p.j);
            if let Err(e) = crate::vrf::verify(smesher, &p.sig, &msg) {
                return Err(format!("the VRF proof of slot {} does not verify: {e}", p.j));
            }
            let eligible = self
                .cfg
                .eligibility
                .eligibility_layer(epoch, &p.sig)
                .map_err(|e| format!("slot {}: {e}", p.j))?;
            if eligible != layer {
                return Err(format!(
                    "slot {} is eligible in layer {eligible}, not in layer {layer}",
                    p.j
                ));
            }
            if let Some(used) = stored
                .and_then(|b| b.slot_layer(smesher, p.j))
                .filter(|l| *l != layer)
            {
                return Err(format!(
                    "slot {} was already claimed in layer {used}: a slot counts in one layer",
                    p.j
                ));
            }
        }
        Ok(())
    }

    /// The reward entries of `layer`'s block: the paid ballots of identities not flagged now.
    pub(super) fn proposals(&self, epoch: EpochId, layer: LayerId) -> Vec<ProposalReward<AtxId, Address>> {
        let (Some(set), Some(ballots)) = (self.active_sets.get(&epoch), self.ballots.get(&epoch)) else {
            return Vec::new();
        };
        ballots
            .paid_in(layer)
            .filter(|b| !self.store.is_malicious(&b.smesher_id))
            .filter_map(|b| {
                let m = set.members.get(&b.smesher_id)?;
                Some(ProposalReward {
                    atx: m.atx.id,
                    coinbase: Address(m.atx.coinbase),
                    atx_weight: m.atx.weight,
                    eligibility_proofs: proof_count(b),
                    eligibility_count: m.slots,
                })
            })
            .collect()
    }
}
