//! The devnet end to end with a fake clock: a test identity (keys made here, standing in for
//! the coordinator's keystore) with tiny real PoST data registers with both PoETs, builds and
//! signs an initial ATX over the best proof, becomes eligible, signs ballots with real VRF
//! proofs and earns, equivocates and stops earning; the faucet funds its coinbase with a signed
//! wallet transaction.

use std::sync::Arc;

use ed25519_dalek::{Signer, SigningKey};
use post::pow::RandomXPow;

use super::*;
use crate::atx::validate::ZERO_CHALLENGE;
use crate::atx::ActivationTxV1;
use crate::atx::{
    poet_challenge, signing_bytes, Hash32, InnerActivationTxV1, NIPost, NIPostChallengeV1, Post, PostMetadata,
};
use crate::bridge::{AtxSubmission, BallotSubmission, EventCursor, NodeBridge, NodeTime};
use crate::poet::Registration;
use crate::testkit::{eligible_layers, epoch_ballots, tiny_devnet_config, TinyPost, TINY_PARAMS};
use crate::vm::tx::{wallet_self_spawn, wallet_spend};
use crate::vm::{wallet_address, Template, TxStatus};

const PARAMS: AtxParams = TINY_PARAMS;

pub(super) fn randomx() -> Arc<RandomXPow> {
    crate::testkit::randomx().clone()
}

pub(super) fn config(faucet: Address, retain_epochs: u32) -> DevnetConfig {
    let mut cfg = tiny_devnet_config(faucet);
    cfg.retain_epochs = retain_epochs;
    cfg
}

/// The coordinator's side of one identity: its key and its PoST data in memory.
pub(super) struct Smesher {
    /// The ed25519 seed (the VRF key too).
    pub(super) seed: [u8; 32],
    pub(super) key: SigningKey,
    pub(super) node_id: NodeId,
    pub(super) commitment_atx: AtxId,
    pub(super) data: TinyPost,
}

impl Smesher {
    pub(super) fn new(seed: u8, commitment_atx: AtxId) -> Self {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let node_id = key.verifying_key().to_bytes();
        Smesher {
            seed: [seed; 32],
            key,
            node_id,
            commitment_atx,
            data: TinyPost::new(node_id, &commitment_atx, PARAMS),
        }
    }

    pub(super) fn vrf_nonce(&self, units: u32) -> u64 {
        self.data.vrf_nonce(units)
    }

    pub(super) fn prove(&self, challenge: &Hash32, units: u32) -> Post {
        self.data.prove(challenge, units)
    }

    /// Submits a ballot for every eligible layer of `epoch` (the node's eligibility answer) and
    /// checks each is accepted; returns the eligible layers with their proof counts.
    pub(super) fn vote(&self, bridge: &dyn NodeBridge, epoch: EpochId) -> Vec<(LayerId, u32)> {
        let g = bridge.genesis().expect("genesis");
        let el = bridge
            .eligibility(&self.node_id, epoch)
            .expect("eligibility")
            .expect("eligible");
        let ballots = epoch_ballots(&g.genesis_id, &self.seed, &el);
        for b in &ballots {
            let sub = bridge.submit_ballot(b).expect("submit ballot");
            assert_eq!(
                sub,
                BallotSubmission::Accepted {
                    id: b.id(),
                    duplicate: false,
                    equivocation: false
                }
            );
        }
        ballots
            .iter()
            .map(|b| (b.layer, b.eligibility_proofs.len() as u32))
            .collect()
    }

    pub(super) fn sign(&self, inner: InnerActivationTxV1, genesis: &[u8; 20]) -> ActivationTxV1 {
        let signature = self.key.sign(&signing_bytes(genesis, &inner)).to_bytes();
        ActivationTxV1 {
            inner,
            smesher_id: self.node_id,
            signature,
        }
    }
}

fn flagged_index(events: &[NodeEvent], node: &NodeId) -> Option<usize> {
    events
        .iter()
        .position(|e| matches!(e, NodeEvent::IdentityFlagged { smesher, .. } if smesher == node))
}

#[test]
fn an_identity_smeshes_earns_equivocates_and_stops_earning() {
    let faucet_key = SigningKey::from_bytes(&[0xfa; 32]);
    let faucet = wallet_address(&faucet_key.verifying_key().to_bytes());
    let devnet = Devnet::with_pow_verifier(config(faucet, 4), randomx()).expect("devnet");
    let bridge: &dyn NodeBridge = &devnet;
    let g = bridge.genesis().expect("genesis");
    assert_eq!(g.effective_genesis, 23);
    assert!(matches!(bridge.synced(), Err(BridgeError::NotAvailable { .. })));

    let me = Smesher::new(0x51, g.golden_atx);
    let coinbase = wallet_address(&[0xc0; 32]); // a stub nobody has spawned
    let units = 1;

    // The builder timeline for the first ATX: round 0, publish epoch 1, target epoch 2.
    let clock = Clock::new(bridge.clock_params().expect("params")).expect("clock");
    let tl = clock.builder_timeline(0, None).expect("timeline");
    assert_eq!((tl.poet_round, tl.publish_epoch, tl.target_epoch), (0, 1, 2));
    devnet.advance(tl.register_at_ms).expect("advance");
    assert_eq!(bridge.now().expect("now").epoch, 0);

    // Register the initial challenge with both PoETs before round 0 starts.
    let positioning = bridge
        .positioning_atx(tl.publish_epoch, None)
        .expect("positioning");
    assert_eq!(positioning, g.golden_atx);
    let challenge = NIPostChallengeV1 {
        publish_epoch: tl.publish_epoch,
        sequence: 0,
        prev_atx_id: [0; 32],
        positioning_atx_id: positioning,
        commitment_atx_id: Some(me.commitment_atx),
        initial_post: Some(me.prove(&ZERO_CHALLENGE, units)),
    };
    let member = poet_challenge(&challenge);
    let poets = bridge.poets().expect("poets");
    assert_eq!(poets.len(), 2);
    for p in &poets {
        let reg = Registration::signed(
            &me.key,
            &g.genesis_id,
            member,
            Some(system_time(tl.proof_deadline_ms)),
        );
        let r = bridge.poet_register(&p.id, &reg).expect("registered");
        assert_eq!((r.round, r.round_end_ms), (0, tl.round_end_ms));
        assert_eq!(bridge.poet_round(&p.id, 0).expect("round"), None);
    }
    // A registration signed by the wrong key is refused.
    let other = SigningKey::from_bytes(&[0x77; 32]);
    let mut forged = Registration::signed(&other, &g.genesis_id, member, None);
    forged.node_id = me.node_id;
    assert!(matches!(
        bridge.poet_register(&poets[0].id, &forged),
        Err(BridgeError::PoetRegistration { .. })
    ));

    // The round runs; its proofs appear once it has ended.
    devnet.advance(tl.round_end_ms - 1).expect("advance");
    assert_eq!(bridge.poet_round(&poets[0].id, 0).expect("round"), None);
    devnet.advance(tl.round_end_ms + 100).expect("advance");
    let rounds: Vec<PoetRound> = poets
        .iter()
        .map(|p| bridge.poet_round(&p.id, 0).expect("round").expect("proof"))
        .collect();
    assert_eq!(rounds[0].leaf_count, 1_000);
    assert_eq!(rounds[1].leaf_count, 600);
    let best = rounds.iter().max_by_key(|r| r.leaf_count).expect("best");
    let membership = best.membership(&member).expect("member");

    // PoST over the proof reference, sign, submit: accepted with weight 1 unit × 20 ticks.
    let inner = InnerActivationTxV1 {
        challenge,
        coinbase: coinbase.0,
        num_units: units,
        nipost: Some(NIPost {
            membership,
            post: Some(me.prove(&best.proof_ref, units)),
            post_metadata: Some(PostMetadata {
                challenge: best.proof_ref,
                labels_per_unit: PARAMS.labels_per_unit,
            }),
        }),
        node_id: Some(me.node_id),
        vrf_nonce: Some(me.vrf_nonce(units)),
    };
    let atx = me.sign(inner.clone(), &g.genesis_id);
    let AtxSubmission::Accepted {
        atx: info,
        duplicate: false,
        equivocation: false,
    } = bridge.submit_atx(&atx).expect("submit")
    else {
        panic!("the ATX was not accepted");
    };
    assert_eq!(
        (info.id, info.ticks, info.weight, info.target_epoch),
        (atx.id(), 20, 20, 2)
    );
    assert!(matches!(
        bridge.submit_atx(&atx).expect("again"),
        AtxSubmission::Accepted { duplicate: true, .. }
    ));
    assert_eq!(
        bridge.previous_atx(&me.node_id).expect("prev").map(|a| a.id),
        Some(atx.id())
    );
    assert_eq!(bridge.atxs_of(&me.node_id).expect("atxs").len(), 1);
    assert_eq!(bridge.positioning_atx(2, None).expect("positioning"), atx.id());

    // A tampered ATX is rejected and says why.
    let mut bad = atx.clone();
    bad.inner.num_units = 2;
    let AtxSubmission::Rejected { reason, .. } = bridge.submit_atx(&bad).expect("submit") else {
        panic!("a tampered ATX was accepted");
    };
    assert!(reason.contains("signature"), "{reason}");

    // The faucet self-spawns and funds the coinbase; applied from the effective genesis on.
    let gas_price = 1;
    let spawn = wallet_self_spawn(&faucet_key, 0, gas_price, &g.genesis_id);
    let amount = 5 * SMIDGE_PER_SMH;
    let spend = wallet_spend(&faucet_key, coinbase, amount, 1, gas_price, &g.genesis_id);
    let spawn_id = bridge.submit_tx(&spawn).expect("spawn");
    let spend_id = bridge.submit_tx(&spend).expect("spend");
    assert!(matches!(
        bridge.submit_tx(&[0xff; 3]),
        Err(BridgeError::MalformedTx(_))
    ));
    assert_eq!(
        bridge.tx_status(&spend_id).expect("status").map(|r| r.status),
        Some(TxStatus::Pending)
    );

    // Eligibility in the target epoch: projected now, fixed once the epoch starts.
    let projected = bridge
        .eligibility(&me.node_id, 2)
        .expect("eligibility")
        .expect("eligible");
    assert!(!projected.fixed);
    assert_eq!(
        (projected.slots, projected.weight, projected.active_weight),
        (48, 20, 20)
    );
    let epoch2 = clock.epoch_start(2).expect("epoch 2");
    devnet.advance(epoch2).expect("advance");
    let el = bridge
        .eligibility(&me.node_id, 2)
        .expect("eligibility")
        .expect("eligible");
    assert!(el.fixed);
    assert_eq!(
        (el.beacon, el.vrf_nonce, el.active_set_hash),
        (
            bridge.beacon(2).expect("beacon"),
            me.vrf_nonce(units),
            crate::ballot::active_set_hash(&[atx.id()])
        )
    );
    assert_eq!(
        (el.slots, el.active_set_hash, el.beacon),
        (projected.slots, projected.active_set_hash, projected.beacon)
    );
    // No ballot yet: no layer counted. The key holder computes its eligible layers.
    assert!(el.layers.is_empty() && projected.layers.is_empty());
    let eligible = eligible_layers(&me.seed, &el);
    assert_eq!(eligible.iter().map(|(_, p)| p.len()).sum::<usize>(), 48);
    assert!(eligible.iter().all(|(l, _)| (24..36).contains(l)));
    assert_eq!(bridge.reference_ballot(&me.node_id, 2).expect("reference"), None);
    let voted = me.vote(bridge, 2);
    assert_eq!(
        voted,
        eligible
            .iter()
            .map(|(l, p)| (*l, p.len() as u32))
            .collect::<Vec<_>>()
    );
    let el = bridge
        .eligibility(&me.node_id, 2)
        .expect("eligibility")
        .expect("eligible");
    assert_eq!(el.layers, voted);
    assert!(bridge
        .reference_ballot(&me.node_id, 2)
        .expect("reference")
        .is_some());

    let spend_receipt = bridge.tx_status(&spend_id).expect("status").expect("receipt");
    assert_eq!(spend_receipt.status, TxStatus::Applied);
    assert_eq!(spend_receipt.layer, Some(23));
    assert_eq!(
        bridge.tx_status(&spawn_id).expect("status").map(|r| r.status),
        Some(TxStatus::Applied)
    );
    let faucet_acc = bridge.account(&faucet).expect("faucet");
    assert_eq!(
        (faucet_acc.template, faucet_acc.next_nonce),
        (Some(Template::Wallet), 2)
    );
    let acc = bridge.account(&coinbase).expect("coinbase");
    assert_eq!((acc.balance, acc.template, acc.next_nonce), (amount, None, 0));

    // Half of epoch 2: the identity, alone in the active set, takes every eligible layer's pot.
    let mid = clock.layer_end(29).expect("layer 29");
    devnet.advance(mid).expect("advance");
    let earned = bridge.rewards_of(&coinbase, 0).expect("rewards");
    let eligible_early: Vec<LayerId> = voted.iter().map(|(l, _)| *l).filter(|l| *l <= 29).collect();
    assert_eq!(earned.iter().map(|r| r.layer).collect::<Vec<_>>(), eligible_early);
    assert!(!earned.is_empty());
    for r in &earned {
        let lr = bridge.layer_rewards(r.layer).expect("layer").expect("applied");
        assert_eq!(lr.credits, vec![*r]);
        assert_eq!((r.total, lr.burnt), (lr.subsidy + lr.fees, 0));
        assert_eq!((r.smesher, r.atx), (me.node_id, atx.id()));
    }
    let total: u64 = earned.iter().map(|r| r.total).sum();
    assert_eq!(
        bridge.account(&coinbase).expect("coinbase").balance,
        amount + total
    );

    // A second, different ATX for the same publish epoch: accepted as valid, the identity flagged.
    let mut other_inner = inner;
    other_inner.coinbase = wallet_address(&[0xc1; 32]).0;
    let double = me.sign(other_inner, &g.genesis_id);
    assert!(matches!(
        bridge.submit_atx(&double).expect("submit"),
        AtxSubmission::Accepted {
            equivocation: true,
            ..
        }
    ));
    let m = bridge.malfeasance(&me.node_id).expect("feed").expect("flagged");
    assert_eq!(m.kind, crate::atx::malfeasance::MULTIPLE_ATXS);
    assert_eq!(m.proof.verify(&g.genesis_id), Ok(me.node_id));

    // The rest of epoch 2 and epoch 3: nothing more for this identity.
    devnet.advance(clock.epoch_end(3).expect("end")).expect("advance");
    let after = bridge.rewards_of(&coinbase, 0).expect("rewards");
    assert_eq!(after, earned);
    assert!(bridge
        .rewards_of(&wallet_address(&[0xc1; 32]), 0)
        .expect("rewards")
        .is_empty());
    assert!(bridge.eligibility(&me.node_id, 3).expect("eligibility").is_none());
    let layer30 = bridge.layer_rewards(30).expect("layer").expect("applied");
    assert!(layer30.credits.is_empty());
    assert_eq!(layer30.burnt, layer30.subsidy);

    // The events, in order.
    let (events, next) = bridge.events_since(EventCursor(0)).expect("events");
    assert_eq!(bridge.events_since(next).expect("tail").0, vec![]);
    let pos = |f: &dyn Fn(&NodeEvent) -> bool| events.iter().position(f).expect("event present");
    let round_started = pos(&|e| {
        matches!(
            e,
            NodeEvent::PoetRoundStarted {
                round: 0,
                members: 1,
                ..
            }
        )
    });
    let round_ended = pos(&|e| {
        matches!(
            e,
            NodeEvent::PoetRoundEnded {
                round: 0,
                leaf_count: 1_000,
                ..
            }
        )
    });
    let accepted = pos(&|e| matches!(e, NodeEvent::AtxAccepted { id, .. } if *id == atx.id()));
    let rejected = pos(&|e| matches!(e, NodeEvent::AtxRejected { id, .. } if *id == bad.id()));
    let epoch2_started = pos(&|e| matches!(e, NodeEvent::EpochStarted { epoch: 2 }));
    let first_reward = pos(&|e| matches!(e, NodeEvent::RewardCredited(_)));
    let double_accepted = pos(&|e| matches!(e, NodeEvent::AtxAccepted { id, .. } if *id == double.id()));
    let flagged = flagged_index(&events, &me.node_id).expect("flagged");
    assert!(round_started < round_ended);
    assert!(round_ended < accepted && accepted < rejected && rejected < epoch2_started);
    assert!(epoch2_started < first_reward && first_reward < double_accepted);
    assert_eq!(flagged, double_accepted + 1);
    let rewards_before: Vec<Reward> = events[..flagged]
        .iter()
        .filter_map(|e| match e {
            NodeEvent::RewardCredited(r) => Some(*r),
            _ => None,
        })
        .collect();
    assert_eq!(rewards_before, earned);
    assert!(!events[flagged..]
        .iter()
        .any(|e| matches!(e, NodeEvent::RewardCredited(_))));
    let applied: Vec<LayerId> = events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::LayerApplied { layer, .. } => Some(*layer),
            _ => None,
        })
        .collect();
    assert_eq!(applied, (0..48).collect::<Vec<_>>());
    assert_eq!(
        bridge.now().expect("now"),
        NodeTime {
            now_ms: 240_000,
            layer: 48,
            epoch: 4,
            applied_layer: Some(47)
        }
    );
    // Reading from the middle continues where it left off.
    let (tail, end) = bridge.events_since(EventCursor(flagged as u64)).expect("tail");
    assert_eq!(tail.first(), events.get(flagged));
    assert_eq!(end, next);
    assert!(matches!(
        bridge.events_since(EventCursor(next.0 + 1)),
        Err(BridgeError::CursorAhead { .. })
    ));
}

#[test]
fn old_events_rounds_and_rewards_are_forgotten() {
    let faucet = wallet_address(&[0xfa; 32]);
    let dn = Arc::new(Devnet::with_pow_verifier(config(faucet, 2), randomx()).expect("devnet"));
    let bridge: Arc<dyn NodeBridge> = dn.clone();
    let g = bridge.genesis().expect("genesis");
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let poet = bridge.poets().expect("poets")[0].id.clone();
    let reg = Registration::signed(&key, &g.genesis_id, [7; 32], None);
    assert_eq!(bridge.poet_register(&poet, &reg).expect("registered").round, 0);
    assert!(matches!(
        bridge.poet_register(&PoetId("nope".into()), &reg),
        Err(BridgeError::UnknownPoet(_))
    ));
    // A conflicting challenge for the same round is refused.
    let conflict = Registration::signed(&key, &g.genesis_id, [8; 32], None);
    assert!(matches!(
        bridge.poet_register(&poet, &conflict),
        Err(BridgeError::PoetRegistration { .. })
    ));

    dn.advance(100_000).expect("advance");
    assert!(dn.poet_round(&poet, 0).expect("round").is_some());
    assert!(matches!(
        dn.advance(99_000),
        Err(DevnetError::TimeWentBackwards { .. })
    ));

    // Six epochs later, with two kept: the first events, round 0 and epoch 2's layers are gone.
    dn.advance(8 * 60_000).expect("advance");
    assert!(matches!(
        dn.events_since(EventCursor(0)),
        Err(BridgeError::EventsPruned { .. })
    ));
    assert!(matches!(
        dn.poet_round(&poet, 0),
        Err(BridgeError::Poet {
            source: PoetError::Forgotten { .. },
            ..
        })
    ));
    assert!(matches!(
        dn.layer_rewards(24),
        Err(BridgeError::EpochPruned { .. })
    ));
    let l = dn.layer_rewards(90).expect("layer").expect("applied");
    assert!(l.credits.is_empty() && l.subsidy > 0);
    let st = dn.lock();
    assert_eq!(st.oldest_epoch, 6);
    assert!(st.events.iter().all(|(e, _)| *e >= 6));
    assert!(st.layers.keys().all(|l| *l >= 72));
    assert!(st.poets.iter().all(|p| p.rounds.is_empty()));
    assert_eq!(st.active_sets.keys().copied().collect::<Vec<_>>(), vec![6, 7, 8]);
    assert!(st.ballots.keys().all(|e| *e >= 6));
}

#[test]
fn inconsistent_configs_are_refused() {
    let faucet = wallet_address(&[0xfa; 32]);
    let ok = config(faucet, 2);
    let mut c = ok.clone();
    c.eligibility.layers_per_epoch = 10;
    assert!(matches!(
        Devnet::with_pow_verifier(c, randomx()),
        Err(DevnetError::Config(_))
    ));
    let mut c = ok.clone();
    c.poets[1].id = c.poets[0].id.clone();
    assert!(matches!(
        Devnet::with_pow_verifier(c, randomx()),
        Err(DevnetError::Config(_))
    ));
    let mut c = ok.clone();
    c.poets[1].phase_shift_ms = Some(60_000);
    assert!(matches!(
        Devnet::with_pow_verifier(c, randomx()),
        Err(DevnetError::Config(_))
    ));
    let mut c = ok.clone();
    c.clock.layer_duration_ms = 0;
    assert!(matches!(
        Devnet::with_pow_verifier(c, randomx()),
        Err(DevnetError::ClockParams(_))
    ));
    // A PoET with its own phase shift keeps its own schedule.
    let mut c = ok;
    c.poets[1].phase_shift_ms = Some(20_000);
    let dn = Devnet::with_pow_verifier(c, randomx()).expect("devnet");
    let poets = dn.poets().expect("poets");
    assert_eq!(poets[1].round_start_ms(0), Some(20_000));
    assert_eq!(poets[0].round_start_ms(0), Some(40_000));
    assert_eq!(next_boundary(&poets[1], 20_000), Some(70_000));
    assert_eq!(next_boundary(&poets[1], 70_000), Some(80_000));
    assert_eq!(
        dn.beacon(2).expect("beacon"),
        dn.genesis().expect("g").genesis_id[..4]
    );
    assert_ne!(dn.beacon(3).expect("beacon"), dn.beacon(4).expect("beacon"));
}

/// An ATX whose NIPoST PoST fails the difficulty check at one index is rejected and is an
/// InvalidPostIndex malfeasance proof (spec/devnet.md §4): the identity is flagged, the proof
/// checks (and a proof naming a valid index is void), and the flag survives a restart, from the
/// journal and from a snapshot.
#[test]
fn an_atx_with_an_invalid_post_index_flags_its_identity() {
    use crate::atx::malfeasance::{InvalidPostIndexProof, PostCheck, INVALID_POST_INDEX};
    use crate::atx::{MalfeasanceError, MalfeasanceProof};
    use post::proof::ProofMetadata;
    use post::verify::{verify, Mode, VerifyError, VerifyOptions};

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(wallet_address(&[0xfa; 32]), 4);
    let devnet = Devnet::open_with_pow_verifier(cfg.clone(), randomx(), dir.path()).expect("devnet");
    let bridge: &dyn NodeBridge = &devnet;
    let g = bridge.genesis().expect("genesis");
    let me = Smesher::new(0x52, g.golden_atx);
    let units = 1;
    let clock = Clock::new(bridge.clock_params().expect("params")).expect("clock");
    let tl = clock.builder_timeline(0, None).expect("timeline");
    devnet.advance(tl.register_at_ms).expect("advance");
    let challenge = NIPostChallengeV1 {
        publish_epoch: tl.publish_epoch,
        sequence: 0,
        prev_atx_id: [0; 32],
        positioning_atx_id: g.golden_atx,
        commitment_atx_id: Some(me.commitment_atx),
        initial_post: Some(me.prove(&ZERO_CHALLENGE, units)),
    };
    let member = poet_challenge(&challenge);
    let poet = bridge.poets().expect("poets")[0].id.clone();
    bridge
        .poet_register(&poet, &Registration::signed(&me.key, &g.genesis_id, member, None))
        .expect("registered");
    devnet.advance(tl.round_end_ms + 100).expect("advance");
    let round = bridge.poet_round(&poet, 0).expect("round").expect("proof");
    let membership = round.membership(&member).expect("member");
    let atx_with = |post: Post| {
        me.sign(
            InnerActivationTxV1 {
                challenge: challenge.clone(),
                coinbase: [0xc0; 24],
                num_units: units,
                nipost: Some(NIPost {
                    membership: membership.clone(),
                    post: Some(post),
                    post_metadata: Some(PostMetadata {
                        challenge: round.proof_ref,
                        labels_per_unit: PARAMS.labels_per_unit,
                    }),
                }),
                node_id: Some(me.node_id),
                vrf_nonce: Some(me.vrf_nonce(units)),
            },
            &g.genesis_id,
        )
    };
    let good = me.prove(&round.proof_ref, units);
    // The first one-bit change of the indices that makes an index the node checks (its K3
    // subset) fail the difficulty check.
    let meta = ProofMetadata {
        node_id: me.node_id,
        commitment_atx_id: me.commitment_atx,
        challenge: round.proof_ref,
        num_units: units,
        labels_per_unit: PARAMS.labels_per_unit,
    };
    let rx = randomx();
    let fails_at = |post: &Post| match verify(
        &post.to_proof(),
        &meta,
        &PARAMS.proof_config(),
        &PARAMS.init_config(),
        &Mode::Subset {
            k3: PARAMS.k3 as usize,
            seed: cfg.k3_seed.clone(),
        },
        &VerifyOptions::default(),
        rx.as_ref(),
    ) {
        Err(VerifyError::InvalidMsb { index_id, .. } | VerifyError::InvalidLsb { index_id, .. }) => {
            Some(index_id)
        }
        _ => None,
    };
    assert_eq!(fails_at(&good), None);
    let (bad, index_id) = (0..good.indices.len() * 8)
        .find_map(|bit| {
            let mut p = good.clone();
            p.indices[bit / 8] ^= 1 << (bit % 8);
            fails_at(&p).map(|i| (p, i))
        })
        .expect("a bit flip that breaks an index");
    let atx = atx_with(bad);
    let AtxSubmission::Rejected { reason, .. } = bridge.submit_atx(&atx).expect("submit") else {
        panic!("an ATX with an invalid PoST index was accepted");
    };
    assert!(reason.contains("NIPoST PoST"), "{reason}");
    let m = bridge
        .malfeasance(&me.node_id)
        .expect("malfeasance")
        .expect("flagged");
    assert_eq!(m.kind, INVALID_POST_INDEX);
    let MalfeasanceProof::InvalidPostIndex(p) = &m.proof else {
        panic!("not an InvalidPostIndex proof: {:?}", m.proof.kind());
    };
    assert_eq!((p.atx.id(), p.invalid_idx as usize), (atx.id(), index_id));
    let check = PostCheck {
        params: &PARAMS,
        commitment_atx_id: me.commitment_atx,
        pow: rx.as_ref(),
    };
    assert_eq!(m.proof.verify_with(&g.genesis_id, Some(&check)), Ok(me.node_id));
    assert_eq!(
        m.proof.verify(&g.genesis_id),
        Err(MalfeasanceError::NeedsPostCheck)
    );
    assert_eq!(MalfeasanceProof::decode(&m.proof.encode()).as_ref(), Ok(&m.proof));
    let (events, _) = bridge.events_since(EventCursor(0)).expect("events");
    assert!(events.iter().any(|e| matches!(
        e,
        NodeEvent::IdentityFlagged { smesher, kind } if *smesher == me.node_id && *kind == INVALID_POST_INDEX
    )));
    // A proof that names an index the honest PoST passes is void.
    let honest = InvalidPostIndexProof {
        atx: atx_with(good),
        invalid_idx: 0,
    };
    assert_eq!(
        honest.verify(&g.genesis_id, &check),
        Err(MalfeasanceError::IndexValid { index: 0 })
    );

    // The flag survives a restart: from the journal, then from a snapshot.
    drop(devnet);
    let again = Devnet::open_with_pow_verifier(cfg.clone(), randomx(), dir.path()).expect("reopen");
    assert_eq!(
        again
            .malfeasance(&me.node_id)
            .expect("malfeasance")
            .map(|m| m.proof),
        Some(m.proof.clone())
    );
    again.save().expect("save");
    drop(again);
    let third = Devnet::open_with_pow_verifier(cfg, randomx(), dir.path()).expect("reopen");
    assert_eq!(
        third
            .malfeasance(&me.node_id)
            .expect("malfeasance")
            .map(|m| m.proof),
        Some(m.proof)
    );
}
