//! [`NodeBridge`] for [`Devnet`], and the state changes behind its inputs (registrations,
//! ATXs, transactions; ballots are in [`super::ballots`]), which a devnet opened from a directory
//! journals (see [`super::persist`]).

use post::pow::PowVerifier;
use post::verify::VerifyOptions;

use super::persist::{Bytes, Input};
use super::{millis, system_time, Devnet, DevnetError, State};
use crate::atx::malfeasance::INVALID_POST_INDEX;
use crate::atx::{
    validate_atx_v1, ActivationTxV1, AtxError, AtxId, AtxLookup, Epoch, Ingested, InvalidPostIndexProof,
    MalfeasanceProof, NodeId, PostCheck, PostKind, ValidationContext,
};
use crate::ballot::{Ballot, BallotId};
use crate::bridge::{
    AccountInfo, AtxInfo, AtxSubmission, BallotSubmission, BridgeError, Eligibility, EventCursor,
    GenesisInfo, LayerRewardInfo, Malfeasance, NodeBridge, NodeEvent, NodeTime, PoetId, PoetInfo,
    PoetRegistered, PoetRound, Reward,
};
use crate::clock::{ClockParams, EpochId, LayerId};
use crate::poet::{PoetError, Registration};
use crate::vm::{Address, TxError, TxHeader, TxId, TxReceipt};

/// A journal write that failed, as the bridge reports it (the input took effect in memory).
fn storage(e: DevnetError) -> BridgeError {
    BridgeError::Storage {
        message: format!("devnet: {e}"),
    }
}

impl State {
    /// An ATX rejected because its NIPoST PoST fails the difficulty check at one index is an
    /// InvalidPostIndex malfeasance proof (spec/devnet.md §4): checked like any received proof
    /// (signature; that index recomputed against the identity's commitment), then the identity
    /// is flagged and excluded from active sets, positioning and rewards from now on.
    fn flag_invalid_post_index(&mut self, atx: &ActivationTxV1, error: &AtxError, pow: &dyn PowVerifier) {
        let AtxError::InvalidPost {
            kind: PostKind::NiPost,
            source,
        } = error
        else {
            return;
        };
        let Some(proof) = InvalidPostIndexProof::from_failure(atx, source) else {
            return;
        };
        let smesher = atx.smesher_id;
        let Some(commitment_atx_id) = atx
            .inner
            .challenge
            .commitment_atx_id
            .or_else(|| self.store.first_commitment(&smesher))
        else {
            return;
        };
        let check = PostCheck {
            params: &self.cfg.atx,
            commitment_atx_id,
            pow,
        };
        if proof.verify(&self.genesis_id, &check).is_err() {
            return;
        }
        if self
            .store
            .flag(MalfeasanceProof::InvalidPostIndex(Box::new(proof)))
        {
            self.push_event(NodeEvent::IdentityFlagged {
                smesher,
                kind: INVALID_POST_INDEX,
            });
        }
    }

    pub(super) fn poet_register(
        &mut self,
        poet: &PoetId,
        registration: &Registration,
    ) -> Result<PoetRegistered, BridgeError> {
        let s = self;
        let i = s.poet(poet)?;
        let now = system_time(s.now_ms);
        let r = s.poets[i].server.register(now, registration).map_err(|source| {
            BridgeError::PoetRegistration {
                poet: poet.clone(),
                source,
            }
        })?;
        Ok(PoetRegistered {
            round: r.round,
            round_end_ms: millis(r.round_end),
        })
    }

    /// Validates and ingests `atx`; the flag says whether the state changed (a rejection
    /// changes it too: it is an event).
    pub(super) fn submit_atx(
        &mut self,
        atx: &ActivationTxV1,
        pow: &dyn PowVerifier,
    ) -> Result<(AtxSubmission, bool), BridgeError> {
        let s = self;
        let id = atx.id();
        if let Some(v) = s.store.get(&id) {
            let sub = AtxSubmission::Accepted {
                atx: AtxInfo::from(v),
                duplicate: true,
                equivocation: false,
            };
            return Ok((sub, false));
        }
        let ctx = ValidationContext {
            genesis_id: s.genesis_id,
            golden_atx: s.cfg.golden_atx,
            params: s.cfg.atx,
            pow,
            k3_seed: s.cfg.k3_seed.clone(),
            verify_options: VerifyOptions::default(),
        };
        let validated = match validate_atx_v1(atx, &ctx, &s.store) {
            Ok(v) => v,
            Err(e) => {
                s.flag_invalid_post_index(atx, &e, pow);
                let reason = e.to_string();
                s.push_event(NodeEvent::AtxRejected {
                    id,
                    smesher: atx.smesher_id,
                    reason: reason.clone(),
                });
                let sub = AtxSubmission::Rejected {
                    id,
                    smesher: atx.smesher_id,
                    reason,
                };
                return Ok((sub, true));
            }
        };
        let smesher = atx.smesher_id;
        let was_malicious = s.store.is_malicious(&smesher);
        let ingested = s.store.ingest(atx.clone(), validated)?;
        if ingested == Ingested::Duplicate {
            let sub = AtxSubmission::Accepted {
                atx: AtxInfo::from(&validated),
                duplicate: true,
                equivocation: false,
            };
            return Ok((sub, false));
        }
        s.by_smesher.entry(smesher).or_default().push(id);
        s.by_publish.entry(validated.publish_epoch).or_default().push(id);
        if let Some(unsaved) = &mut s.unsaved_atxs {
            unsaved.push(id);
        }
        s.push_event(NodeEvent::AtxAccepted {
            id,
            smesher,
            publish_epoch: validated.publish_epoch,
            weight: validated.weight,
            ticks: validated.ticks,
        });
        let equivocation = matches!(ingested, Ingested::Equivocation(_));
        if let Ingested::Equivocation(p) = &ingested {
            if !was_malicious {
                s.push_event(NodeEvent::IdentityFlagged {
                    smesher,
                    kind: p.kind(),
                });
            }
        }
        let sub = AtxSubmission::Accepted {
            atx: AtxInfo::from(&validated),
            duplicate: false,
            equivocation,
        };
        Ok((sub, true))
    }

    /// Queues `raw`; the flag says whether it was new.
    pub(super) fn submit_tx(&mut self, raw: &[u8]) -> Result<(TxId, bool), BridgeError> {
        if raw.len() > crate::vm::tx::TX_SIZE_LIMIT {
            return Err(BridgeError::MalformedTx(TxError::TooLarge { len: raw.len() }));
        }
        TxHeader::peek(raw)?;
        let id = TxId::of(raw);
        if self.receipts.contains_key(&id) {
            return Ok((id, false));
        }
        let epoch = self.current_epoch();
        self.receipts.insert(id, (epoch, TxReceipt::pending(id)));
        self.mempool.push(raw.to_vec());
        Ok((id, true))
    }
}

impl NodeBridge for Devnet {
    fn clock_params(&self) -> Result<ClockParams, BridgeError> {
        Ok(self.lock().cfg.clock)
    }

    fn now(&self) -> Result<NodeTime, BridgeError> {
        let s = self.lock();
        Ok(NodeTime {
            now_ms: s.now_ms,
            layer: s.clock.layer_at(s.now_ms)?,
            epoch: s.clock.epoch_at(s.now_ms)?,
            applied_layer: s.next_layer.checked_sub(1),
        })
    }

    fn beacon(&self, epoch: EpochId) -> Result<[u8; 4], BridgeError> {
        Ok(self.lock().beacon(epoch))
    }

    fn synced(&self) -> Result<bool, BridgeError> {
        Err(BridgeError::NotAvailable {
            what: "p2p sync state (the devnet is one process)",
        })
    }

    fn genesis(&self) -> Result<GenesisInfo, BridgeError> {
        let s = self.lock();
        Ok(GenesisInfo {
            genesis_id: s.genesis_id,
            golden_atx: s.cfg.golden_atx,
            effective_genesis: s.clock.effective_genesis_layer(),
        })
    }

    fn poets(&self) -> Result<Vec<PoetInfo>, BridgeError> {
        Ok(self.lock().poets.iter().map(|p| p.info.clone()).collect())
    }

    fn poet_register(
        &self,
        poet: &PoetId,
        registration: &Registration,
    ) -> Result<PoetRegistered, BridgeError> {
        let mut s = self.lock();
        let r = s.poet_register(poet, registration)?;
        let t = s.now_ms;
        s.journal(t, Input::poet_register(poet, registration))
            .map_err(storage)?;
        Ok(r)
    }

    fn poet_round(&self, poet: &PoetId, round: u64) -> Result<Option<PoetRound>, BridgeError> {
        let s = self.lock();
        let slot = &s.poets[s.poet(poet)?];
        if let Some(r) = slot.rounds.get(&round) {
            return Ok(Some(r.clone()));
        }
        match slot.server.proof(round) {
            Err(PoetError::NotFinished { .. }) | Ok(_) => Ok(None),
            Err(source) => Err(BridgeError::Poet {
                poet: poet.clone(),
                source,
            }),
        }
    }

    fn positioning_atx(&self, publish_epoch: Epoch, own_prev: Option<&AtxId>) -> Result<AtxId, BridgeError> {
        let s = self.lock();
        let golden = s.cfg.golden_atx;
        Ok(s.store
            .select_positioning(publish_epoch.saturating_sub(1), own_prev, &golden))
    }

    fn previous_atx(&self, smesher: &NodeId) -> Result<Option<AtxInfo>, BridgeError> {
        let s = self.lock();
        Ok(s.by_smesher
            .get(smesher)
            .into_iter()
            .flatten()
            .filter_map(|id| s.store.get(id))
            .max_by_key(|v| (v.publish_epoch, v.sequence))
            .map(AtxInfo::from))
    }

    fn submit_atx(&self, atx: &ActivationTxV1) -> Result<AtxSubmission, BridgeError> {
        let mut s = self.lock();
        let (sub, changed) = s.submit_atx(atx, &*self.pow)?;
        if changed {
            let t = s.now_ms;
            s.journal(t, Input::submit_atx(atx)).map_err(storage)?;
        }
        Ok(sub)
    }

    fn atxs_of(&self, smesher: &NodeId) -> Result<Vec<AtxInfo>, BridgeError> {
        let s = self.lock();
        let mut v: Vec<AtxInfo> = s
            .by_smesher
            .get(smesher)
            .into_iter()
            .flatten()
            .filter_map(|id| s.store.get(id))
            .map(AtxInfo::from)
            .collect();
        v.sort_by_key(|a| (a.publish_epoch, a.sequence));
        Ok(v)
    }

    fn eligibility(&self, smesher: &NodeId, epoch: EpochId) -> Result<Option<Eligibility>, BridgeError> {
        let s = self.lock();
        s.check_epoch("eligibility", epoch)?;
        let (set, fixed) = match s.active_sets.get(&epoch) {
            Some(set) => (set.clone(), true),
            None => (s.compute_active_set(epoch)?, false),
        };
        Ok(set.members.get(smesher).map(|m| Eligibility {
            epoch,
            atx: m.atx.id,
            weight: m.atx.weight,
            active_weight: set.total_weight,
            slots: m.slots,
            beacon: s.beacon(epoch),
            vrf_nonce: m.atx.vrf_nonce,
            active_set_hash: set.hash,
            layers: s
                .ballots
                .get(&epoch)
                .map(|b| b.layers_of(smesher))
                .unwrap_or_default(),
            fixed,
        }))
    }

    fn submit_ballot(&self, ballot: &Ballot) -> Result<BallotSubmission, BridgeError> {
        let mut s = self.lock();
        let (sub, changed) = s.submit_ballot(ballot)?;
        if changed {
            let t = s.now_ms;
            s.journal(
                t,
                Input::SubmitBallot {
                    ballot: Bytes(ballot.encode()),
                },
            )
            .map_err(storage)?;
        }
        Ok(sub)
    }

    fn reference_ballot(&self, smesher: &NodeId, epoch: EpochId) -> Result<Option<BallotId>, BridgeError> {
        let s = self.lock();
        s.check_epoch("reference ballots", epoch)?;
        Ok(s.ballots.get(&epoch).and_then(|b| b.reference(smesher)))
    }

    fn layer_rewards(&self, layer: LayerId) -> Result<Option<LayerRewardInfo>, BridgeError> {
        let s = self.lock();
        s.check_epoch("layer rewards", s.clock.epoch_of_layer(layer))?;
        Ok(s.layers.get(&layer).cloned())
    }

    fn rewards_of(&self, coinbase: &Address, from_layer: LayerId) -> Result<Vec<Reward>, BridgeError> {
        let s = self.lock();
        s.check_epoch("rewards", s.clock.epoch_of_layer(from_layer))?;
        Ok(s.layers
            .range(from_layer..)
            .flat_map(|(_, l)| l.credits.iter())
            .filter(|r| r.coinbase == *coinbase)
            .copied()
            .collect())
    }

    fn account(&self, address: &Address) -> Result<AccountInfo, BridgeError> {
        let a = self.lock().vm.account(address);
        Ok(AccountInfo {
            address: a.address,
            balance: a.balance,
            next_nonce: a.next_nonce,
            template: a.template(),
            layer: a.layer,
        })
    }

    fn submit_tx(&self, raw: &[u8]) -> Result<TxId, BridgeError> {
        let mut s = self.lock();
        let (id, new) = s.submit_tx(raw)?;
        if new {
            let t = s.now_ms;
            s.journal(
                t,
                Input::SubmitTx {
                    raw: Bytes(raw.to_vec()),
                },
            )
            .map_err(storage)?;
        }
        Ok(id)
    }

    fn tx_status(&self, id: &TxId) -> Result<Option<TxReceipt>, BridgeError> {
        Ok(self.lock().receipts.get(id).map(|(_, r)| r.clone()))
    }

    fn malfeasance(&self, smesher: &NodeId) -> Result<Option<Malfeasance>, BridgeError> {
        Ok(self.lock().store.malfeasance_proof(smesher).map(|p| Malfeasance {
            smesher: *smesher,
            kind: p.kind(),
            proof: p.clone(),
        }))
    }

    fn events_since(&self, cursor: EventCursor) -> Result<(Vec<NodeEvent>, EventCursor), BridgeError> {
        let s = self.lock();
        let oldest = EventCursor(s.first_event);
        let next = EventCursor(s.first_event + s.events.len() as u64);
        if cursor < oldest {
            return Err(BridgeError::EventsPruned { cursor, oldest });
        }
        if cursor > next {
            return Err(BridgeError::CursorAhead { cursor, next });
        }
        let skip = usize::try_from(cursor.0 - s.first_event).unwrap_or(usize::MAX);
        Ok((s.events.iter().skip(skip).map(|(_, e)| e.clone()).collect(), next))
    }
}
