//! A small in-memory ATX store: validated ATXs, PoET proofs by reference, equivocation
//! detection on ingest (spec/devnet.md §4) and positioning-ATX selection (§2.7).
//!
//! An equivocating ATX is still stored (it was valid on its own, and later ATXs may refer to
//! it); its identity is flagged malicious for good, and flagged identities' ATXs are never
//! chosen as positioning ATXs.

use std::collections::HashMap;

use super::ids::GenesisId;
use super::malfeasance::{detect_invalid_prev_atx, detect_multiple_atxs, MalfeasanceError, MalfeasanceProof};
use super::validate::{AtxLookup, PoetProofInfo, ValidatedAtx};
use super::wire::{ActivationTxV1, AtxId, Epoch, Hash32, NodeId};

/// What ingesting an ATX did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// New and consistent with what the store knows.
    Stored,
    /// Already known; nothing changed.
    Duplicate,
    /// Stored, and it equivocates with an ATX already known: the identity is now malicious
    /// (or already was) and this is the proof.
    Equivocation(MalfeasanceProof),
}

/// Why the store refused an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the validated values are for ATX {}, not {}", hex::encode(.validated), hex::encode(.atx))]
    IdMismatch { atx: AtxId, validated: AtxId },
    #[error("malfeasance proof: {0}")]
    InvalidProof(#[from] MalfeasanceError),
    #[error("malfeasance proof against unknown identity {}", hex::encode(.0))]
    UnknownIdentity(NodeId),
}

/// In-memory ATXs, PoET proofs and malicious identities.
#[derive(Debug, Clone, Default)]
pub struct AtxStore {
    atxs: HashMap<AtxId, (ActivationTxV1, ValidatedAtx)>,
    by_epoch: HashMap<(NodeId, Epoch), AtxId>,
    by_prev: HashMap<(NodeId, AtxId), AtxId>,
    first_commitment: HashMap<NodeId, AtxId>,
    poet_proofs: HashMap<Hash32, PoetProofInfo>,
    malicious: HashMap<NodeId, MalfeasanceProof>,
    current_epoch: Epoch,
}

impl AtxStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_current_epoch(&mut self, epoch: Epoch) {
        self.current_epoch = epoch;
    }

    /// Remember a verified PoET proof under its reference.
    pub fn insert_poet_proof(&mut self, proof_ref: Hash32, info: PoetProofInfo) {
        self.poet_proofs.insert(proof_ref, info);
    }

    /// Add an ATX that [`super::validate::validate_atx_v1`] accepted, with its derived values.
    /// Detects double publishing and two successors of one previous ATX against ATXs already
    /// stored.
    pub fn ingest(&mut self, atx: ActivationTxV1, validated: ValidatedAtx) -> Result<Ingested, StoreError> {
        let id = atx.id();
        if validated.id != id {
            return Err(StoreError::IdMismatch {
                atx: id,
                validated: validated.id,
            });
        }
        if self.atxs.contains_key(&id) {
            return Ok(Ingested::Duplicate);
        }
        let smesher = atx.smesher_id;
        let epoch_key = (smesher, atx.publish_epoch());
        let prev_key = (smesher, atx.inner.challenge.prev_atx_id);
        // As go-spacemesh orders them: MultipleATXs [known, new]; InvalidPrevATX {new, known}.
        let known = |key: Option<&AtxId>| key.and_then(|id| self.atxs.get(id)).map(|(a, _)| a);
        let proof = known(self.by_epoch.get(&epoch_key))
            .and_then(|other| detect_multiple_atxs(other, &atx))
            .map(|p| MalfeasanceProof::MultipleAtxs(Box::new(p)))
            .or_else(|| {
                known(self.by_prev.get(&prev_key))
                    .and_then(|other| detect_invalid_prev_atx(&atx, other))
                    .map(|p| MalfeasanceProof::InvalidPrevAtx(Box::new(p)))
            });
        self.by_epoch.entry(epoch_key).or_insert(id);
        self.by_prev.entry(prev_key).or_insert(id);
        if validated.is_initial() {
            self.first_commitment
                .entry(smesher)
                .or_insert(validated.commitment_atx_id);
        }
        self.atxs.insert(id, (atx, validated));
        Ok(match proof {
            Some(p) => {
                self.malicious.entry(smesher).or_insert_with(|| p.clone());
                Ingested::Equivocation(p)
            }
            None => Ingested::Stored,
        })
    }

    /// Accept a malfeasance proof from elsewhere: verify it and flag its (known) identity.
    pub fn ingest_proof(
        &mut self,
        proof: MalfeasanceProof,
        genesis_id: &GenesisId,
    ) -> Result<NodeId, StoreError> {
        let smesher = proof.verify(genesis_id)?;
        if !self.knows_identity(&smesher) {
            return Err(StoreError::UnknownIdentity(smesher));
        }
        self.malicious.entry(smesher).or_insert(proof);
        Ok(smesher)
    }

    pub fn knows_identity(&self, smesher: &NodeId) -> bool {
        self.first_commitment.contains_key(smesher)
            || self.atxs.values().any(|(a, _)| a.smesher_id == *smesher)
    }

    /// Flags the identity of a proof this node made and checked itself (an InvalidPostIndex
    /// proof of an ATX it rejected, a MultipleBallots proof of two ballots it accepted). Returns
    /// whether the identity is newly flagged; a flagged one keeps its first proof.
    pub fn flag(&mut self, proof: MalfeasanceProof) -> bool {
        let smesher = proof.smesher_id();
        if self.malicious.contains_key(&smesher) {
            return false;
        }
        self.malicious.insert(smesher, proof);
        true
    }

    /// The proofs that no stored ATX pair makes again (InvalidPostIndex: their ATX was rejected
    /// and is not stored; MultipleBallots: made of ballots, not ATXs), for a snapshot of the
    /// store, in a fixed order (by identity).
    pub fn proofs_without_stored_atxs(&self) -> impl Iterator<Item = &MalfeasanceProof> {
        let mut v: Vec<(&NodeId, &MalfeasanceProof)> = self
            .malicious
            .iter()
            .filter(|(_, p)| {
                matches!(
                    p,
                    MalfeasanceProof::InvalidPostIndex(_) | MalfeasanceProof::MultipleBallots(_)
                )
            })
            .collect();
        v.sort_by_key(|(id, _)| **id);
        v.into_iter().map(|(_, p)| p)
    }

    pub fn is_malicious(&self, smesher: &NodeId) -> bool {
        self.malicious.contains_key(smesher)
    }

    /// The proof that flagged `smesher`, if any.
    pub fn malfeasance_proof(&self, smesher: &NodeId) -> Option<&MalfeasanceProof> {
        self.malicious.get(smesher)
    }

    /// Every PoET proof known, by reference (for persisting).
    pub fn poet_proofs(&self) -> impl Iterator<Item = (&Hash32, &PoetProofInfo)> {
        self.poet_proofs.iter()
    }

    pub fn get(&self, id: &AtxId) -> Option<&ValidatedAtx> {
        self.atxs.get(id).map(|(_, v)| v)
    }

    pub fn get_signed(&self, id: &AtxId) -> Option<&ActivationTxV1> {
        self.atxs.get(id).map(|(a, _)| a)
    }

    pub fn len(&self) -> usize {
        self.atxs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.atxs.is_empty()
    }

    /// The positioning ATX for an ATX whose candidates are ATXs published in epochs `≤
    /// max_epoch`: the highest tick height among ATXs of identities not flagged malicious; on a
    /// tie `own_prev` wins (then the smallest id, for determinism). With no candidate: `own_prev`
    /// if stored, else `golden`.
    pub fn select_positioning(&self, max_epoch: Epoch, own_prev: Option<&AtxId>, golden: &AtxId) -> AtxId {
        let best = self
            .atxs
            .values()
            .map(|(_, v)| v)
            .filter(|v| v.publish_epoch <= max_epoch && !self.is_malicious(&v.smesher_id))
            .max_by(|a, b| {
                let own = |v: &ValidatedAtx| Some(&v.id) == own_prev;
                (a.tick_height(), own(a), std::cmp::Reverse(a.id)).cmp(&(
                    b.tick_height(),
                    own(b),
                    std::cmp::Reverse(b.id),
                ))
            });
        match (best, own_prev) {
            (Some(v), _) => v.id,
            (None, Some(prev)) if self.atxs.contains_key(prev) => *prev,
            _ => *golden,
        }
    }
}

impl AtxLookup for AtxStore {
    fn atx(&self, id: &AtxId) -> Option<ValidatedAtx> {
        self.get(id).copied()
    }

    fn first_commitment(&self, smesher: &NodeId) -> Option<AtxId> {
        self.first_commitment.get(smesher).copied()
    }

    fn poet_proof(&self, proof_ref: &Hash32) -> Option<PoetProofInfo> {
        self.poet_proofs.get(proof_ref).copied()
    }

    fn current_epoch(&self) -> Epoch {
        self.current_epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atx::testkit::{alice, bob, context, genesis, golden, MapLookup, LEAF_COUNT};
    use crate::atx::validate::validate_atx_v1;

    /// Validate against `lookup` (whose PoET proofs `seal` filled) plus the store, then ingest.
    fn accept(store: &mut AtxStore, lookup: &MapLookup, atx: ActivationTxV1) -> Ingested {
        for (r, p) in &lookup.poets {
            store.insert_poet_proof(*r, *p);
        }
        let v = validate_atx_v1(&atx, &context(), store).expect("valid");
        store.ingest(atx, v).expect("ingest")
    }

    #[test]
    fn double_publish_flags_the_identity_and_excludes_it_from_positioning() {
        let a = alice();
        let b = bob();
        let mut store = AtxStore::new();
        store.set_current_epoch(1);
        let mut lookup = MapLookup::at(1);

        let b1 = b.seal(b.initial(1, 1), &mut lookup);
        assert_eq!(accept(&mut store, &lookup, b1.clone()), Ingested::Stored);
        let a1 = a.seal(a.initial(1, 2), &mut lookup);
        assert_eq!(accept(&mut store, &lookup, a1.clone()), Ingested::Stored);
        assert_eq!(accept(&mut store, &lookup, a1.clone()), Ingested::Duplicate);

        // Alice (2 units, 24 weight) and Bob both at height 12: ties go to the own previous.
        let ticks = LEAF_COUNT / 10;
        assert_eq!(store.get(&a1.id()).expect("a1").tick_height(), ticks);
        assert_eq!(store.select_positioning(1, Some(&b1.id()), &golden()), b1.id());
        assert_eq!(store.select_positioning(1, Some(&a1.id()), &golden()), a1.id());
        // Nothing published by epoch 0: golden, or the own previous if known.
        assert_eq!(store.select_positioning(0, None, &golden()), golden());

        // Bob's next ATX (epoch 2) positioned on Alice's: higher.
        store.set_current_epoch(2);
        let v_b1 = *store.get(&b1.id()).expect("b1");
        let b2 = b.seal(b.next(&v_b1, a1.id(), 2, 1, None), &mut lookup);
        assert_eq!(accept(&mut store, &lookup, b2.clone()), Ingested::Stored);
        assert_eq!(store.get(&b2.id()).expect("b2").tick_height(), 2 * ticks);
        assert_eq!(store.select_positioning(2, Some(&a1.id()), &golden()), b2.id());
        assert_eq!(store.select_positioning(1, None, &golden()), a1.id().min(b1.id()));

        // Bob publishes a second, different ATX in epoch 2: flagged with a MultipleATXs proof.
        let mut other = b.next(&v_b1, a1.id(), 2, 1, None);
        other.coinbase = [0x99; 24];
        let b2x = b.seal(other, &mut lookup);
        let Ingested::Equivocation(proof) = accept(&mut store, &lookup, b2x.clone()) else {
            panic!("equivocation expected");
        };
        assert_eq!(proof.kind(), crate::atx::malfeasance::MULTIPLE_ATXS);
        assert_eq!(crate::atx::malfeasance::atx_ids(&proof), [b2.id(), b2x.id()]);
        assert_eq!(proof.verify(&genesis()), Ok(b.node_id));
        assert!(store.is_malicious(&b.node_id));
        assert!(!store.is_malicious(&a.node_id));
        assert_eq!(store.malfeasance_proof(&b.node_id), Some(&proof));
        // Bob's ATXs no longer position anyone, even where they are the highest or his own.
        assert_eq!(store.select_positioning(2, Some(&b2.id()), &golden()), a1.id());
        assert_eq!(store.select_positioning(2, None, &golden()), a1.id());

        // A second successor of Bob's first ATX in a later epoch: InvalidPrevATX.
        store.set_current_epoch(3);
        let b3 = b.seal(b.next(&v_b1, a1.id(), 3, 1, None), &mut lookup);
        let Ingested::Equivocation(proof) = accept(&mut store, &lookup, b3.clone()) else {
            panic!("equivocation expected");
        };
        assert_eq!(proof.kind(), crate::atx::malfeasance::INVALID_PREV_ATX);
        assert_eq!(crate::atx::malfeasance::atx_ids(&proof), [b3.id(), b2.id()]);
        assert_eq!(proof.verify(&genesis()), Ok(b.node_id));
    }

    #[test]
    fn proofs_from_elsewhere_flag_known_identities_only() {
        let a = alice();
        let mut lookup = MapLookup::at(1);
        let x = a.seal(a.initial(1, 1), &mut lookup);
        let mut other = x.inner.clone();
        other.coinbase = [1; 24];
        let y = a.seal(other, &mut lookup);
        let proof = crate::atx::malfeasance::detect(&x, &y).expect("proof");

        let mut store = AtxStore::new();
        store.set_current_epoch(1);
        assert_eq!(
            store.ingest_proof(proof.clone(), &genesis()),
            Err(StoreError::UnknownIdentity(a.node_id))
        );
        assert_eq!(accept(&mut store, &lookup, x.clone()), Ingested::Stored);
        assert!(matches!(
            store.ingest_proof(proof.clone(), &[0; 20]),
            Err(StoreError::InvalidProof(_))
        ));
        assert_eq!(store.ingest_proof(proof, &genesis()), Ok(a.node_id));
        assert!(store.is_malicious(&a.node_id));
        // The flagged identity's only ATX is excluded: golden, then the own previous fallback.
        assert_eq!(store.select_positioning(1, None, &golden()), golden());
        assert_eq!(store.select_positioning(1, Some(&x.id()), &golden()), x.id());
    }

    #[test]
    fn mismatched_values_are_refused() {
        let a = alice();
        let mut lookup = MapLookup::at(1);
        let x = a.seal(a.initial(1, 1), &mut lookup);
        let v = validate_atx_v1(&x, &context(), &lookup).expect("valid");
        let mut y = x.clone();
        y.inner.coinbase = [3; 24];
        let mut store = AtxStore::new();
        assert!(matches!(store.ingest(y, v), Err(StoreError::IdMismatch { .. })));
        assert!(store.is_empty());
    }
}
