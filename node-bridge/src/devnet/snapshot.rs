//! The snapshot of a devnet's [`State`] (see [`super::persist`] for the files): plain serde
//! mirrors of the in-memory state, bytes as hex. ATXs are not in it (they live in the ATX log);
//! what refers to them names them by id.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::persist::{Bytes, H};
use super::{ActiveMember, ActiveSet, State};
use crate::atx::validate::AtxLookup;
use crate::atx::{ActivationTxV1, PoetProofInfo, Scale, ValidatedAtx};
use crate::ballot::Ballot;
use crate::bridge::{LayerRewardInfo, NodeEvent, PoetId, PoetRound, Reward};
use crate::poet::{PoetProof, PoetServer, RoundProof, RoundSnapshot, ServerSnapshot};
use crate::vm::{Account, Accounts, Address, TxReceipt, Vm};

/// Why a snapshot (with its ATXs) does not make a state.
pub(super) type Invalid = String;

#[derive(Serialize, Deserialize)]
pub(super) struct Snapshot {
    pub now_ms: u64,
    pub next_layer: u32,
    pub first_event: u64,
    pub oldest_epoch: u32,
    pub store_epoch: u32,
    pub poets: Vec<PoetSnap>,
    pub poet_proofs: Vec<(H<32>, H<32>, u64)>,
    pub active_sets: Vec<ActiveSetSnap>,
    /// `(epoch, encoded ballots in acceptance order)` of the kept epochs.
    pub ballots: Vec<(u32, Vec<Bytes>)>,
    pub accounts: Vec<Account>,
    pub mempool: Vec<Bytes>,
    pub receipts: Vec<(u32, TxReceipt)>,
    pub layers: Vec<LayerSnap>,
    pub events: Vec<(u32, EventSnap)>,
    /// Malfeasance proofs the ATX log does not make again (InvalidPostIndex: their ATX was
    /// rejected; MultipleBallots), encoded.
    #[serde(default)]
    pub flagged: Vec<Bytes>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct PoetSnap {
    pub id: String,
    pub next_round: u64,
    pub running: Option<u64>,
    pub forgotten_below: u64,
    pub open: Vec<(u64, Vec<(H<32>, H<32>)>)>,
    pub running_members: Vec<(u64, Vec<H<32>>)>,
    /// `(round, statement, members, SCALE proof)`.
    pub done: Vec<(u64, H<32>, Vec<H<32>>, Bytes)>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct ActiveSetSnap {
    pub epoch: u32,
    pub total_weight: u64,
    /// `(ATX id, slots)`; the set's hash is recomputed from the ids.
    pub members: Vec<(H<32>, u32)>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct RewardSnap {
    pub layer: u32,
    pub coinbase: Address,
    pub smesher: H<32>,
    pub atx: H<32>,
    pub total: u64,
    pub layer_reward: u64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct LayerSnap {
    pub layer: u32,
    pub subsidy: u64,
    pub fees: u64,
    pub burnt: u64,
    pub credits: Vec<RewardSnap>,
}

#[derive(Serialize, Deserialize)]
pub(super) enum EventSnap {
    EpochStarted(u32),
    LayerApplied {
        layer: u32,
        txs: u64,
        fees: u64,
        rewarded: u64,
    },
    PoetRoundStarted {
        poet: String,
        round: u64,
        members: u64,
    },
    PoetRoundEnded {
        poet: String,
        round: u64,
        leaf_count: u64,
        proof_ref: H<32>,
    },
    AtxAccepted {
        id: H<32>,
        smesher: H<32>,
        publish_epoch: u32,
        weight: u64,
        ticks: u64,
    },
    AtxRejected {
        id: H<32>,
        smesher: H<32>,
        reason: String,
    },
    IdentityFlagged {
        smesher: H<32>,
        kind: u8,
    },
    RewardCredited(RewardSnap),
    BallotAccepted {
        id: H<20>,
        smesher: H<32>,
        layer: u32,
        eligibilities: u32,
    },
}

/// One record of the ATX log: the ATX's network bytes and what validation derived.
#[derive(Serialize, Deserialize)]
pub(super) struct AtxRecord {
    pub atx: Bytes,
    pub id: H<32>,
    pub smesher_id: H<32>,
    pub publish_epoch: u32,
    pub sequence: u64,
    pub prev_atx_id: H<32>,
    pub positioning_atx_id: H<32>,
    pub commitment_atx_id: H<32>,
    pub coinbase: H<24>,
    pub num_units: u32,
    pub effective_units: u32,
    pub vrf_nonce: u64,
    pub base_height: u64,
    pub ticks: u64,
    pub weight: u64,
}

impl AtxRecord {
    pub fn new(atx: &ActivationTxV1, v: &ValidatedAtx) -> Self {
        AtxRecord {
            atx: Bytes(atx.to_bytes()),
            id: H(v.id),
            smesher_id: H(v.smesher_id),
            publish_epoch: v.publish_epoch,
            sequence: v.sequence,
            prev_atx_id: H(v.prev_atx_id),
            positioning_atx_id: H(v.positioning_atx_id),
            commitment_atx_id: H(v.commitment_atx_id),
            coinbase: H(v.coinbase),
            num_units: v.num_units,
            effective_units: v.effective_units,
            vrf_nonce: v.vrf_nonce,
            base_height: v.base_height,
            ticks: v.ticks,
            weight: v.weight,
        }
    }

    pub fn decode(self) -> Result<(ActivationTxV1, ValidatedAtx), Invalid> {
        let atx = ActivationTxV1::from_bytes(&self.atx.0).map_err(|e| format!("ATX bytes: {e}"))?;
        if atx.id() != self.id.0 {
            return Err(format!("ATX {} does not hash to its id", hex::encode(self.id.0)));
        }
        let v = ValidatedAtx {
            id: self.id.0,
            smesher_id: self.smesher_id.0,
            publish_epoch: self.publish_epoch,
            sequence: self.sequence,
            prev_atx_id: self.prev_atx_id.0,
            positioning_atx_id: self.positioning_atx_id.0,
            commitment_atx_id: self.commitment_atx_id.0,
            coinbase: self.coinbase.0,
            num_units: self.num_units,
            effective_units: self.effective_units,
            vrf_nonce: self.vrf_nonce,
            base_height: self.base_height,
            ticks: self.ticks,
            weight: self.weight,
        };
        Ok((atx, v))
    }
}

fn reward_snap(r: &Reward) -> RewardSnap {
    RewardSnap {
        layer: r.layer,
        coinbase: r.coinbase,
        smesher: H(r.smesher),
        atx: H(r.atx),
        total: r.total,
        layer_reward: r.layer_reward,
    }
}

fn reward(r: RewardSnap) -> Reward {
    Reward {
        layer: r.layer,
        coinbase: r.coinbase,
        smesher: r.smesher.0,
        atx: r.atx.0,
        total: r.total,
        layer_reward: r.layer_reward,
    }
}

fn event_snap(e: &NodeEvent) -> EventSnap {
    match e {
        NodeEvent::EpochStarted { epoch } => EventSnap::EpochStarted(*epoch),
        NodeEvent::LayerApplied {
            layer,
            txs,
            fees,
            rewarded,
        } => EventSnap::LayerApplied {
            layer: *layer,
            txs: *txs as u64,
            fees: *fees,
            rewarded: *rewarded,
        },
        NodeEvent::PoetRoundStarted { poet, round, members } => EventSnap::PoetRoundStarted {
            poet: poet.0.clone(),
            round: *round,
            members: *members as u64,
        },
        NodeEvent::PoetRoundEnded {
            poet,
            round,
            leaf_count,
            proof_ref,
        } => EventSnap::PoetRoundEnded {
            poet: poet.0.clone(),
            round: *round,
            leaf_count: *leaf_count,
            proof_ref: H(*proof_ref),
        },
        NodeEvent::AtxAccepted {
            id,
            smesher,
            publish_epoch,
            weight,
            ticks,
        } => EventSnap::AtxAccepted {
            id: H(*id),
            smesher: H(*smesher),
            publish_epoch: *publish_epoch,
            weight: *weight,
            ticks: *ticks,
        },
        NodeEvent::AtxRejected { id, smesher, reason } => EventSnap::AtxRejected {
            id: H(*id),
            smesher: H(*smesher),
            reason: reason.clone(),
        },
        NodeEvent::IdentityFlagged { smesher, kind } => EventSnap::IdentityFlagged {
            smesher: H(*smesher),
            kind: *kind,
        },
        NodeEvent::RewardCredited(r) => EventSnap::RewardCredited(reward_snap(r)),
        NodeEvent::BallotAccepted {
            id,
            smesher,
            layer,
            eligibilities,
        } => EventSnap::BallotAccepted {
            id: H(*id),
            smesher: H(*smesher),
            layer: *layer,
            eligibilities: *eligibilities,
        },
    }
}

fn usize_of(v: u64) -> Result<usize, Invalid> {
    usize::try_from(v).map_err(|_| format!("{v} does not fit this machine's usize"))
}

fn event(e: EventSnap) -> Result<NodeEvent, Invalid> {
    Ok(match e {
        EventSnap::EpochStarted(epoch) => NodeEvent::EpochStarted { epoch },
        EventSnap::LayerApplied {
            layer,
            txs,
            fees,
            rewarded,
        } => NodeEvent::LayerApplied {
            layer,
            txs: usize_of(txs)?,
            fees,
            rewarded,
        },
        EventSnap::PoetRoundStarted { poet, round, members } => NodeEvent::PoetRoundStarted {
            poet: PoetId(poet),
            round,
            members: usize_of(members)?,
        },
        EventSnap::PoetRoundEnded {
            poet,
            round,
            leaf_count,
            proof_ref,
        } => NodeEvent::PoetRoundEnded {
            poet: PoetId(poet),
            round,
            leaf_count,
            proof_ref: proof_ref.0,
        },
        EventSnap::AtxAccepted {
            id,
            smesher,
            publish_epoch,
            weight,
            ticks,
        } => NodeEvent::AtxAccepted {
            id: id.0,
            smesher: smesher.0,
            publish_epoch,
            weight,
            ticks,
        },
        EventSnap::AtxRejected { id, smesher, reason } => NodeEvent::AtxRejected {
            id: id.0,
            smesher: smesher.0,
            reason,
        },
        EventSnap::IdentityFlagged { smesher, kind } => NodeEvent::IdentityFlagged {
            smesher: smesher.0,
            kind,
        },
        EventSnap::RewardCredited(r) => NodeEvent::RewardCredited(reward(r)),
        EventSnap::BallotAccepted {
            id,
            smesher,
            layer,
            eligibilities,
        } => NodeEvent::BallotAccepted {
            id: id.0,
            smesher: smesher.0,
            layer,
            eligibilities,
        },
    })
}

fn hs(v: &[[u8; 32]]) -> Vec<H<32>> {
    v.iter().copied().map(H).collect()
}

fn unh(v: Vec<H<32>>) -> Vec<[u8; 32]> {
    v.into_iter().map(|h| h.0).collect()
}

impl State {
    /// Everything but the ATXs (in the ATX log) and the config (checked by fingerprint).
    pub(super) fn snapshot(&self) -> Snapshot {
        let poets = self
            .poets
            .iter()
            .map(|p| {
                let ex = p.server.export();
                let mut snap = PoetSnap {
                    id: p.info.id.0.clone(),
                    next_round: ex.next_round,
                    running: ex.running,
                    forgotten_below: ex.forgotten_below,
                    open: Vec::new(),
                    running_members: Vec::new(),
                    done: Vec::new(),
                };
                for r in ex.rounds {
                    match r {
                        RoundSnapshot::Open { round, registrations } => snap.open.push((
                            round,
                            registrations.into_iter().map(|(k, c)| (H(k), H(c))).collect(),
                        )),
                        RoundSnapshot::Running { round, members } => {
                            snap.running_members.push((round, hs(&members)))
                        }
                        RoundSnapshot::Done(p) => {
                            snap.done
                                .push((p.round, H(p.statement), hs(&p.members), Bytes(p.proof.encode())))
                        }
                    }
                }
                snap
            })
            .collect();
        let mut poet_proofs: Vec<(H<32>, H<32>, u64)> = self
            .store
            .poet_proofs()
            .map(|(r, i)| (H(*r), H(i.statement), i.leaf_count))
            .collect();
        poet_proofs.sort_by_key(|(r, _, _)| r.0);
        let mut receipts: Vec<(u32, TxReceipt)> = self.receipts.values().cloned().collect();
        receipts.sort_by_key(|(_, r)| r.id.0);
        Snapshot {
            now_ms: self.now_ms,
            next_layer: self.next_layer,
            first_event: self.first_event,
            oldest_epoch: self.oldest_epoch,
            store_epoch: self.store.current_epoch(),
            poets,
            poet_proofs,
            active_sets: self
                .active_sets
                .iter()
                .map(|(epoch, set)| ActiveSetSnap {
                    epoch: *epoch,
                    total_weight: set.total_weight,
                    members: set.members.values().map(|m| (H(m.atx.id), m.slots)).collect(),
                })
                .collect(),
            ballots: self
                .ballots
                .iter()
                .map(|(epoch, b)| (*epoch, b.in_order().map(|b| Bytes(b.encode())).collect()))
                .collect(),
            accounts: self.vm.accounts().iter().cloned().collect(),
            mempool: self.mempool.iter().cloned().map(Bytes).collect(),
            receipts,
            layers: self
                .layers
                .values()
                .map(|l| LayerSnap {
                    layer: l.layer,
                    subsidy: l.subsidy,
                    fees: l.fees,
                    burnt: l.burnt,
                    credits: l.credits.iter().map(reward_snap).collect(),
                })
                .collect(),
            events: self.events.iter().map(|(e, ev)| (*e, event_snap(ev))).collect(),
            flagged: self
                .store
                .proofs_without_stored_atxs()
                .map(|p| Bytes(p.encode()))
                .collect(),
        }
    }

    /// Overwrites this (fresh, same-config) state with `snap` and the ATXs, in acceptance order.
    pub(super) fn restore(
        &mut self,
        snap: Snapshot,
        atxs: Vec<(ActivationTxV1, ValidatedAtx)>,
    ) -> Result<(), Invalid> {
        self.store = crate::atx::AtxStore::new();
        self.by_smesher = BTreeMap::new();
        self.by_publish = BTreeMap::new();
        // Flags the ATX log does not make again, first: a flagged identity keeps its first
        // proof, as it did live.
        for p in &snap.flagged {
            let proof = crate::atx::MalfeasanceProof::decode(&p.0)
                .map_err(|e| format!("a stored malfeasance proof does not decode: {e}"))?;
            self.store.flag(proof);
        }
        let keep_publish = snap.oldest_epoch.saturating_sub(1);
        for (atx, v) in atxs {
            let id = v.id;
            let publish = v.publish_epoch;
            let smesher = v.smesher_id;
            self.store
                .ingest(atx, v)
                .map_err(|e| format!("ATX {}: {e}", hex::encode(id)))?;
            self.by_smesher.entry(smesher).or_default().push(id);
            if publish >= keep_publish {
                self.by_publish.entry(publish).or_default().push(id);
            }
        }
        self.store.set_current_epoch(snap.store_epoch);
        for (r, statement, leaf_count) in snap.poet_proofs {
            self.store.insert_poet_proof(
                r.0,
                PoetProofInfo {
                    statement: statement.0,
                    leaf_count,
                },
            );
        }
        if snap.poets.len() != self.poets.len() {
            return Err("the PoETs differ from the config's".into());
        }
        for (slot, ps) in self.poets.iter_mut().zip(snap.poets) {
            if slot.info.id.0 != ps.id {
                return Err(format!("PoET {} is not the config's {}", ps.id, slot.info.id));
            }
            let mut rounds = Vec::new();
            let mut infos = BTreeMap::new();
            for (round, regs) in ps.open {
                rounds.push(RoundSnapshot::Open {
                    round,
                    registrations: regs.into_iter().map(|(k, c)| (k.0, c.0)).collect(),
                });
            }
            for (round, members) in ps.running_members {
                rounds.push(RoundSnapshot::Running {
                    round,
                    members: unh(members),
                });
            }
            for (round, statement, members, proof) in ps.done {
                let proof = PoetProof::decode(&proof.0)
                    .map_err(|e| format!("PoET {} round {round} proof: {e}", ps.id))?;
                let members = unh(members);
                infos.insert(
                    round,
                    PoetRound {
                        poet: slot.info.id.clone(),
                        round,
                        proof_ref: proof.reference(),
                        statement: statement.0,
                        leaf_count: proof.leaf_count,
                        members: members.clone(),
                    },
                );
                rounds.push(RoundSnapshot::Done(Box::new(RoundProof {
                    round,
                    statement: statement.0,
                    members,
                    proof,
                })));
            }
            let ex = ServerSnapshot {
                next_round: ps.next_round,
                running: ps.running,
                forgotten_below: ps.forgotten_below,
                rounds,
            };
            slot.server = PoetServer::restore(slot.server.config().clone(), ex)
                .map_err(|e| format!("PoET {}: {e}", ps.id))?;
            slot.rounds = infos;
        }
        let mut active_sets = BTreeMap::new();
        for set in snap.active_sets {
            let mut members = BTreeMap::new();
            for (id, slots) in set.members {
                let atx = self.store.get(&id.0).copied().ok_or_else(|| {
                    format!("active set {} names unknown ATX {}", set.epoch, hex::encode(id.0))
                })?;
                members.insert(atx.smesher_id, ActiveMember { atx, slots });
            }
            active_sets.insert(set.epoch, ActiveSet::new(set.total_weight, members));
        }
        self.active_sets = active_sets;
        let mut ballots = BTreeMap::new();
        for (epoch, list) in snap.ballots {
            let mut stored = super::ballots::EpochBallots::default();
            for (i, b) in list.into_iter().enumerate() {
                let ballot = Ballot::decode(&b.0)
                    .map_err(|e| format!("ballot {i} of epoch {epoch} does not decode: {e}"))?;
                stored.insert(ballot.id(), ballot);
            }
            ballots.insert(epoch, stored);
        }
        self.ballots = ballots;
        let mut accounts = Accounts::default();
        for a in snap.accounts {
            accounts.put(a);
        }
        self.vm = Vm::with_accounts(*self.vm.config(), accounts);
        self.mempool = snap.mempool.into_iter().map(|b| b.0).collect();
        self.receipts = snap
            .receipts
            .into_iter()
            .map(|(e, r)| (r.id, (e, r)))
            .collect::<HashMap<_, _>>();
        self.layers = snap
            .layers
            .into_iter()
            .map(|l| {
                (
                    l.layer,
                    LayerRewardInfo {
                        layer: l.layer,
                        subsidy: l.subsidy,
                        fees: l.fees,
                        burnt: l.burnt,
                        credits: l.credits.into_iter().map(reward).collect(),
                    },
                )
            })
            .collect();
        self.events = snap
            .events
            .into_iter()
            .map(|(e, ev)| Ok((e, event(ev)?)))
            .collect::<Result<VecDeque<_>, Invalid>>()?;
        self.now_ms = snap.now_ms;
        self.next_layer = snap.next_layer;
        self.first_event = snap.first_event;
        self.oldest_epoch = snap.oldest_epoch;
        Ok(())
    }
}
