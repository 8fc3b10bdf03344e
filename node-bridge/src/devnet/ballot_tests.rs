//! Ballots on the devnet: honest identities are paid exactly for the ballots they sign, every
//! validation rule rejects what it should, a double ballot flags its identity (spec/devnet.md
//! §6.4 Sim-C), and accepted ballots survive a restart.

use proptest::prelude::*;

use super::tests::{config, randomx, Smesher};
use super::*;
use crate::atx::malfeasance::MULTIPLE_BALLOTS;
use crate::atx::validate::ZERO_CHALLENGE;
use crate::atx::{
    poet_challenge, InnerActivationTxV1, MalfeasanceProof, NIPost, NIPostChallengeV1, PostMetadata,
};
use crate::ballot::{Ballot, EpochData, VotingEligibility};
use crate::bridge::{
    AtxInfo, AtxSubmission, BallotSubmission, Eligibility, EventCursor, GenesisInfo, NodeBridge,
};
use crate::poet::Registration;
use crate::testkit::{eligible_layers, epoch_ballots, sign_ballot, signed_ballot, TINY_PARAMS};
use crate::vm::wallet_address;

/// A persistent devnet in epoch 2 (120 s) whose identities each have an initial ATX (epoch 1)
/// and, when `next` was asked for, are registered for PoET round 1 (see [`Net::publish_next`]).
struct Net {
    cfg: DevnetConfig,
    dir: tempfile::TempDir,
    dn: Devnet,
    g: GenesisInfo,
    ids: Vec<Smesher>,
    atxs: Vec<AtxInfo>,
    next: Vec<NIPostChallengeV1>,
}

fn register(dn: &Devnet, s: &Smesher, c: &NIPostChallengeV1) {
    let g = dn.genesis().expect("genesis");
    for p in dn.poets().expect("poets") {
        let reg = Registration::signed(&s.key, &g.genesis_id, poet_challenge(c), None);
        dn.poet_register(&p.id, &reg).expect("registered");
    }
}

fn publish(dn: &Devnet, s: &Smesher, challenge: NIPostChallengeV1, round: u64) -> AtxInfo {
    let g = dn.genesis().expect("genesis");
    let member = poet_challenge(&challenge);
    let best = dn
        .poets()
        .expect("poets")
        .iter()
        .filter_map(|p| dn.poet_round(&p.id, round).expect("round"))
        .max_by_key(|r| r.leaf_count)
        .expect("a proof");
    let initial = challenge.initial_post.is_some();
    let inner = InnerActivationTxV1 {
        challenge,
        coinbase: wallet_address(&s.node_id).0,
        num_units: 1,
        nipost: Some(NIPost {
            membership: best.membership(&member).expect("member"),
            post: Some(s.prove(&best.proof_ref, 1)),
            post_metadata: Some(PostMetadata {
                challenge: best.proof_ref,
                labels_per_unit: TINY_PARAMS.labels_per_unit,
            }),
        }),
        node_id: initial.then_some(s.node_id),
        vrf_nonce: initial.then(|| s.vrf_nonce(1)),
    };
    match dn.submit_atx(&s.sign(inner, &g.genesis_id)).expect("submit") {
        AtxSubmission::Accepted { atx, .. } => atx,
        other => panic!("ATX not accepted: {other:?}"),
    }
}

fn net(seeds: &[u8], next: bool) -> Net {
    let cfg = config(wallet_address(&[0xfa; 32]), 4);
    let dir = tempfile::tempdir().expect("tempdir");
    let dn = Devnet::open_with_pow_verifier(cfg.clone(), randomx(), dir.path()).expect("devnet");
    let g = dn.genesis().expect("genesis");
    let ids: Vec<Smesher> = seeds.iter().map(|s| Smesher::new(*s, g.golden_atx)).collect();
    dn.advance(30_000).expect("advance");
    let challenges: Vec<NIPostChallengeV1> = ids
        .iter()
        .map(|s| NIPostChallengeV1 {
            publish_epoch: 1,
            sequence: 0,
            prev_atx_id: [0; 32],
            positioning_atx_id: g.golden_atx,
            commitment_atx_id: Some(s.commitment_atx),
            initial_post: Some(s.prove(&ZERO_CHALLENGE, 1)),
        })
        .collect();
    for (s, c) in ids.iter().zip(&challenges) {
        register(&dn, s, c);
    }
    dn.advance(90_100).expect("advance");
    let atxs: Vec<AtxInfo> = ids
        .iter()
        .zip(challenges)
        .map(|(s, c)| publish(&dn, s, c, 0))
        .collect();
    let mut nexts = Vec::new();
    if next {
        dn.advance(95_000).expect("advance");
        for (s, prev) in ids.iter().zip(&atxs) {
            let c = NIPostChallengeV1 {
                publish_epoch: 2,
                sequence: 1,
                prev_atx_id: prev.id,
                positioning_atx_id: dn.positioning_atx(2, Some(&prev.id)).expect("positioning"),
                commitment_atx_id: None,
                initial_post: None,
            };
            register(&dn, s, &c);
            nexts.push(c);
        }
    }
    dn.advance(120_000).expect("advance");
    Net {
        cfg,
        dir,
        dn,
        g,
        ids,
        atxs,
        next: nexts,
    }
}

impl Net {
    fn el(&self, i: usize, epoch: EpochId) -> Eligibility {
        self.dn
            .eligibility(&self.ids[i].node_id, epoch)
            .expect("eligibility")
            .expect("eligible")
    }

    fn submit(&self, b: &Ballot) -> BallotSubmission {
        self.dn.submit_ballot(b).expect("submit ballot")
    }

    /// The reason a ballot is rejected for (panics when it is accepted).
    fn rejected(&self, b: &Ballot) -> String {
        match self.submit(b) {
            BallotSubmission::Rejected { id, smesher, reason } => {
                assert_eq!((id, smesher), (b.id(), b.smesher_id));
                reason
            }
            other => panic!("accepted: {other:?}"),
        }
    }

    /// Publishes the identities' second ATXs (publish epoch 2) at 150.1 s.
    fn publish_next(&mut self) {
        self.dn.advance(150_100).expect("advance");
        for (s, c) in self.ids.iter().zip(self.next.clone()) {
            publish(&self.dn, s, c, 1);
        }
    }

    fn coinbase(&self, i: usize) -> Address {
        wallet_address(&self.ids[i].node_id)
    }

    fn rewarded_layers(&self, i: usize) -> Vec<LayerId> {
        self.dn
            .rewards_of(&self.coinbase(i), 0)
            .expect("rewards")
            .iter()
            .map(|r| r.layer)
            .collect()
    }
}

fn accepted(id: crate::ballot::BallotId) -> BallotSubmission {
    BallotSubmission::Accepted {
        id,
        duplicate: false,
        equivocation: false,
    }
}

#[test]
fn honest_identities_are_paid_exactly_for_their_ballots() {
    let n = net(&[0x61, 0x62], false);
    let clock = Clock::new(n.cfg.clock).expect("clock");
    let (a, b) = (n.el(0, 2), n.el(1, 2));
    assert_eq!((a.slots, b.slots), (24, 24));
    assert_eq!(
        a.active_set_hash,
        crate::ballot::active_set_hash(&[n.atxs[1].id, n.atxs[0].id])
    );
    let a_layers = n.ids[0].vote(&n.dn, 2);
    assert_eq!(a_layers.iter().map(|(_, k)| k).sum::<u32>(), a.slots);
    // B skips its last eligible layer: it is not paid there.
    let b_ballots = epoch_ballots(&n.g.genesis_id, &n.ids[1].seed, &b);
    let (b_last, b_sent) = b_ballots.split_last().expect("ballots");
    for x in b_sent {
        assert_eq!(n.submit(x), accepted(x.id()));
    }
    // Duplicates change nothing.
    assert_eq!(
        n.submit(&b_sent[0]),
        BallotSubmission::Accepted {
            id: b_sent[0].id(),
            duplicate: true,
            equivocation: false
        }
    );
    assert_eq!(
        n.dn.reference_ballot(&n.ids[1].node_id, 2).expect("reference"),
        Some(b_sent[0].id())
    );
    n.dn.advance(clock.epoch_end(2).expect("end")).expect("advance");
    assert_eq!(
        n.rewarded_layers(0),
        a_layers.iter().map(|(l, _)| *l).collect::<Vec<_>>()
    );
    assert_eq!(
        n.rewarded_layers(1),
        b_sent.iter().map(|x| x.layer).collect::<Vec<_>>()
    );
    // Each layer's block splits by proofs: A's share in a layer both were paid in is its
    // proofs over its slots, against B's.
    for r in n.dn.rewards_of(&n.coinbase(0), 0).expect("rewards") {
        let info = n.dn.layer_rewards(r.layer).expect("layer").expect("applied");
        assert!(info.credits.iter().map(|c| c.total).sum::<u64>() + info.burnt == info.subsidy + info.fees);
    }
    // The accepted ballots are events.
    let (events, _) = n.dn.events_since(EventCursor(0)).expect("events");
    let accepted_events = events
        .iter()
        .filter(|e| matches!(e, NodeEvent::BallotAccepted { .. }))
        .count();
    assert_eq!(accepted_events, a_layers.len() + b_sent.len());
    // A late ballot for a layer that has ended is rejected; the same ballot as one accepted
    // before is still a duplicate.
    let late = signed_ballot(
        &n.g.genesis_id,
        &n.ids[1].seed,
        &b,
        b_last.layer,
        b_last.eligibility_proofs.clone(),
        Some(b_sent[0].id()),
    );
    let reason = n.rejected(&late);
    assert!(reason.contains("has ended"), "{reason}");
    assert!(matches!(
        n.submit(&b_sent[1]),
        BallotSubmission::Accepted { duplicate: true, .. }
    ));
}

#[test]
fn every_rule_rejects_what_it_should() {
    let n = net(&[0x63, 0x64], false);
    let gid = n.g.genesis_id;
    let el = n.el(0, 2);
    let seed = n.ids[0].seed;
    let eligible = eligible_layers(&seed, &el);
    assert!(eligible.len() >= 3, "24 slots over 12 layers");
    let (l0, p0) = eligible[0].clone();
    let (l1, p1) = eligible[1].clone();
    let reference = signed_ballot(&gid, &seed, &el, l0, p0.clone(), None);
    let resign = |mut b: Ballot| {
        sign_ballot(&gid, &seed, &mut b);
        b
    };
    let why = |b: &Ballot| n.rejected(b);
    let expect = |b: Ballot, what: &str| {
        let reason = why(&b);
        assert!(reason.contains(what), "expected {what:?}, got {reason:?}");
    };

    // 1. Syntax.
    let mut both = reference.clone();
    both.ref_ballot = Some([1; 20]);
    expect(resign(both), "both epoch data and a reference ballot");
    let mut neither = reference.clone();
    neither.epoch_data = None;
    expect(resign(neither), "neither epoch data nor a reference ballot");
    let mut none = reference.clone();
    none.eligibility_proofs.clear();
    expect(resign(none), "no eligibility proof");
    // 3. Layer: an epoch not started, and (below) the effective genesis and ended layers.
    let mut future = reference.clone();
    future.layer = 40;
    expect(resign(future), "epoch 3 of layer 40 has not started");
    // 4. Signature.
    let mut forged = reference.clone();
    forged.signature[3] ^= 1;
    expect(forged, "signature");
    let mut other_signer = reference.clone();
    sign_ballot(&gid, &n.ids[1].seed, &mut other_signer);
    other_signer.smesher_id = n.ids[0].node_id;
    expect(other_signer, "signature");
    // 5. ATX: an unknown ATX; an identity outside the active set.
    let mut unknown = reference.clone();
    unknown.atx_id = [0xab; 32];
    expect(resign(unknown), "is not the smesher's ATX in the active set");
    let mut stranger = reference.clone();
    sign_ballot(&gid, &[0x99; 32], &mut stranger);
    expect(stranger, "has no ATX in the active set");
    // 6. Reference: wrong EpochData; a ballot naming an unknown reference.
    let with_data = |f: &dyn Fn(&mut EpochData)| {
        let mut b = reference.clone();
        if let Some(d) = &mut b.epoch_data {
            f(d);
        }
        resign(b)
    };
    expect(with_data(&|d| d.eligibility_count += 1), "eligibility count 25");
    expect(with_data(&|d| d.beacon[0] ^= 1), "beacon");
    expect(with_data(&|d| d.active_set_hash[0] ^= 1), "active set hash");
    let orphan = signed_ballot(&gid, &seed, &el, l1, p1.clone(), Some([7; 20]));
    expect(orphan, "is unknown");
    // 7. Proofs: a tampered VRF proof, a proof of another layer, j out of range, j repeated.
    let mut tampered = p0.clone();
    tampered[0].sig[40] ^= 1;
    expect(
        signed_ballot(&gid, &seed, &el, l0, tampered, None),
        "VRF proof of slot",
    );
    let mut tampered = p0.clone();
    tampered[0].sig[79] ^= 1;
    expect(
        signed_ballot(&gid, &seed, &el, l0, tampered, None),
        "VRF proof of slot",
    );
    expect(
        signed_ballot(&gid, &seed, &el, l0, p1.clone(), None),
        &format!("is eligible in layer {l1}, not in layer {l0}"),
    );
    let out_of_range = vec![VotingEligibility {
        j: el.slots,
        sig: p0[0].sig,
    }];
    expect(
        signed_ballot(&gid, &seed, &el, l0, out_of_range, None),
        "is not below the smesher's 24 slots",
    );
    let repeated = vec![p0[0].clone(), p0[0].clone()];
    expect(
        signed_ballot(&gid, &seed, &el, l0, repeated, None),
        "not strictly ascending",
    );
    if let Some((l, p)) = eligible.iter().find(|(_, p)| p.len() >= 2) {
        let mut descending = p.clone();
        descending.reverse();
        expect(
            signed_ballot(&gid, &seed, &el, *l, descending, None),
            "not strictly ascending",
        );
    }
    // Nothing was stored by any of that.
    assert_eq!(n.dn.reference_ballot(&n.ids[0].node_id, 2).expect("ref"), None);

    // The honest reference ballot; then a second reference ballot for another layer, and a
    // ballot naming a reference that is not the smesher's.
    assert_eq!(n.submit(&reference), accepted(reference.id()));
    expect(
        signed_ballot(&gid, &seed, &el, l1, p1.clone(), None),
        "reference ballot already exists",
    );
    expect(
        signed_ballot(&gid, &seed, &el, l1, p1.clone(), Some([7; 20])),
        "is not the smesher's reference ballot",
    );
    let second = signed_ballot(&gid, &seed, &el, l1, p1.clone(), Some(reference.id()));
    assert_eq!(n.submit(&second), accepted(second.id()));
    assert_eq!(
        n.dn.eligibility(&n.ids[0].node_id, 2)
            .expect("el")
            .expect("el")
            .layers,
        vec![(l0, p0.len() as u32), (l1, p1.len() as u32)]
    );

    // A second reference ballot for the layer of the first is a double ballot.
    let mut twin = reference.clone();
    twin.opinion_hash = [1; 32];
    let twin = resign(twin);
    assert_eq!(
        n.submit(&twin),
        BallotSubmission::Accepted {
            id: twin.id(),
            duplicate: false,
            equivocation: true
        }
    );
    let m =
        n.dn.malfeasance(&n.ids[0].node_id)
            .expect("feed")
            .expect("flagged");
    assert_eq!(m.kind, MULTIPLE_BALLOTS);
    assert_eq!(m.proof.verify(&gid), Ok(n.ids[0].node_id));

    // 3. Ended layers: once B's first eligible layer has ended, B's ballot for it is late.
    let b_el = n.el(1, 2);
    let (b_l, b_p) = eligible_layers(&n.ids[1].seed, &b_el)
        .into_iter()
        .next()
        .expect("eligible");
    let b_ref = signed_ballot(&gid, &n.ids[1].seed, &b_el, b_l, b_p, None);
    let clock = Clock::new(n.cfg.clock).expect("clock");
    n.dn.advance(clock.layer_end(b_l).expect("end")).expect("advance");
    let reason = n.rejected(&b_ref);
    assert!(reason.contains(&format!("layer {b_l} has ended")), "{reason}");
}

#[test]
fn ballots_before_the_effective_genesis_are_rejected() {
    let cfg = config(wallet_address(&[0xfa; 32]), 4);
    let dn = Devnet::with_pow_verifier(cfg, randomx()).expect("devnet");
    let g = dn.genesis().expect("genesis");
    let el = Eligibility {
        epoch: 0,
        atx: [1; 32],
        weight: 1,
        active_weight: 1,
        slots: 1,
        beacon: dn.beacon(0).expect("beacon"),
        vrf_nonce: 0,
        active_set_hash: [0; 32],
        layers: Vec::new(),
        fixed: true,
    };
    let b = signed_ballot(
        &g.genesis_id,
        &[5; 32],
        &el,
        5,
        vec![VotingEligibility { j: 0, sig: [0; 80] }],
        None,
    );
    let BallotSubmission::Rejected { reason, .. } = dn.submit_ballot(&b).expect("submit") else {
        panic!("accepted");
    };
    assert!(
        reason.contains("before the effective genesis layer 23"),
        "{reason}"
    );
}

/// Sim-C (spec/devnet.md §6.4): an identity signs two different ballots for one layer. The
/// second is accepted as an equivocation, the identity is flagged with a MultipleBallots proof
/// that checks on its own, earns nothing from then on and is left out of the next active set;
/// the honest identity alongside keeps earning.
#[test]
fn a_double_ballot_flags_the_identity() {
    let mut n = net(&[0x65, 0x66], true);
    let clock = Clock::new(n.cfg.clock).expect("clock");
    let (honest, adversary) = (0, 1);
    let honest_layers = n.ids[honest].vote(&n.dn, 2);
    let el = n.el(adversary, 2);
    let ballots = epoch_ballots(&n.g.genesis_id, &n.ids[adversary].seed, &el);
    assert!(ballots.len() >= 3, "24 slots over 12 layers");
    for b in &ballots {
        assert_eq!(n.submit(b), accepted(b.id()));
    }
    // Let the adversary's first eligible layer pass and be paid, then double-sign its second.
    let first = ballots[0].layer;
    n.dn.advance(clock.layer_end(first).expect("end"))
        .expect("advance");
    assert_eq!(n.rewarded_layers(adversary), vec![first]);
    let target = &ballots[1];
    let mut double = target.clone();
    double.opinion_hash = [0x0c; 32];
    sign_ballot(&n.g.genesis_id, &n.ids[adversary].seed, &mut double);
    assert_eq!(
        n.submit(&double),
        BallotSubmission::Accepted {
            id: double.id(),
            duplicate: false,
            equivocation: true
        }
    );
    let flagged_at = n.dn.now().expect("now").layer;
    let m =
        n.dn.malfeasance(&n.ids[adversary].node_id)
            .expect("feed")
            .expect("flagged");
    assert_eq!(m.kind, MULTIPLE_BALLOTS);
    assert_eq!(m.proof.verify(&n.g.genesis_id), Ok(n.ids[adversary].node_id));
    let MalfeasanceProof::MultipleBallots(p) = &m.proof else {
        panic!("not a MultipleBallots proof");
    };
    assert_eq!(
        [p.messages[0].inner, p.messages[1].inner],
        [target.metadata(), double.metadata()]
    );
    let decoded = MalfeasanceProof::decode(&m.proof.encode()).expect("decode");
    assert_eq!(decoded.verify(&n.g.genesis_id), Ok(n.ids[adversary].node_id));
    assert!(n.dn.malfeasance(&n.ids[honest].node_id).expect("feed").is_none());
    let (events, _) = n.dn.events_since(EventCursor(0)).expect("events");
    assert!(events.iter().any(|e| matches!(
        e,
        NodeEvent::IdentityFlagged { smesher, kind: MULTIPLE_BALLOTS } if *smesher == n.ids[adversary].node_id
    )));
    // The same double again is a duplicate; any new ballot of the identity is refused.
    assert!(matches!(
        n.submit(&double),
        BallotSubmission::Accepted { duplicate: true, .. }
    ));
    let mut third = target.clone();
    third.opinion_hash = [0x0d; 32];
    sign_ballot(&n.g.genesis_id, &n.ids[adversary].seed, &mut third);
    assert_eq!(n.rejected(&third), "identity is malicious");

    // Both publish their next ATX; the adversary's is valid but it is left out of epoch 3.
    n.publish_next();
    n.dn.advance(clock.epoch_start(3).expect("start"))
        .expect("advance");
    assert_eq!(
        n.rewarded_layers(adversary),
        vec![first],
        "nothing after the flag (layer {flagged_at} on)"
    );
    assert_eq!(
        n.rewarded_layers(honest),
        honest_layers.iter().map(|(l, _)| *l).collect::<Vec<_>>()
    );
    assert!(n
        .dn
        .eligibility(&n.ids[adversary].node_id, 3)
        .expect("eligibility")
        .is_none());
    let honest3 = n.ids[honest].vote(&n.dn, 3);
    let e3 = n.el(honest, 3);
    assert_eq!(e3.slots, 48, "alone in the active set");
    n.dn.advance(clock.epoch_end(3).expect("end")).expect("advance");
    let paid: Vec<LayerId> = n
        .rewarded_layers(honest)
        .into_iter()
        .filter(|l| *l >= 36)
        .collect();
    assert_eq!(paid, honest3.iter().map(|(l, _)| *l).collect::<Vec<_>>());
    // The flag survives a restart (the proof is in the snapshot).
    n.dn.save().expect("save");
    let Net {
        cfg, dir, dn, ids, ..
    } = n;
    drop(dn);
    let again = Devnet::open_with_pow_verifier(cfg, randomx(), dir.path()).expect("reopen");
    assert_eq!(
        again
            .malfeasance(&ids[adversary].node_id)
            .expect("feed")
            .map(|m| m.proof),
        Some(m.proof)
    );
}

#[test]
fn accepted_ballots_survive_a_restart_and_are_paid() {
    let n = net(&[0x67], false);
    let clock = Clock::new(n.cfg.clock).expect("clock");
    let el = n.el(0, 2);
    let ballots = epoch_ballots(&n.g.genesis_id, &n.ids[0].seed, &el);
    assert!(ballots.len() >= 4);
    // The reference ballot and the next one before the restart (journal only).
    for b in &ballots[..2] {
        assert_eq!(n.submit(b), accepted(b.id()));
    }
    let Net {
        cfg, dir, dn, ids, g, ..
    } = n;
    drop(dn);
    let open = || Devnet::open_with_pow_verifier(cfg.clone(), randomx(), dir.path()).expect("reopen");
    let dn = open();
    assert_eq!(
        dn.reference_ballot(&ids[0].node_id, 2).expect("ref"),
        Some(ballots[0].id())
    );
    assert!(matches!(
        dn.submit_ballot(&ballots[1]).expect("submit"),
        BallotSubmission::Accepted { duplicate: true, .. }
    ));
    // A third from the reopened node (it names the reference), then a snapshot, and the rest
    // after another restart.
    assert_eq!(
        dn.submit_ballot(&ballots[2]).expect("submit"),
        accepted(ballots[2].id())
    );
    dn.save().expect("save");
    drop(dn);
    let dn = open();
    assert_eq!(
        dn.reference_ballot(&ids[0].node_id, 2).expect("ref"),
        Some(ballots[0].id())
    );
    for b in &ballots[3..] {
        assert_eq!(dn.submit_ballot(b).expect("submit"), accepted(b.id()));
    }
    let expect_layers: Vec<(LayerId, u32)> = ballots
        .iter()
        .map(|b| (b.layer, b.eligibility_proofs.len() as u32))
        .collect();
    assert_eq!(
        dn.eligibility(&ids[0].node_id, 2)
            .expect("el")
            .expect("el")
            .layers,
        expect_layers
    );
    dn.advance(clock.epoch_end(2).expect("end")).expect("advance");
    let paid: Vec<LayerId> = dn
        .rewards_of(&wallet_address(&ids[0].node_id), 0)
        .expect("rewards")
        .iter()
        .map(|r| r.layer)
        .collect();
    assert_eq!(paid, ballots.iter().map(|b| b.layer).collect::<Vec<_>>());
    let _ = g;

    // Ballots are forgotten with their epoch.
    dn.advance(clock.epoch_end(7).expect("end")).expect("advance");
    assert!(matches!(
        dn.reference_ballot(&ids[0].node_id, 2),
        Err(BridgeError::EpochPruned { .. })
    ));
    assert!(dn.lock().ballots.keys().all(|e| *e >= 4));
}

#[test]
fn a_format_1_snapshot_is_refused_clearly() {
    let cfg = config(wallet_address(&[0xfa; 32]), 4);
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Devnet::open_with_pow_verifier(cfg.clone(), randomx(), dir.path()).expect("devnet"));
    let path = dir.path().join("snapshot.bin");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[..8].copy_from_slice(b"SFDNSNP1");
    std::fs::write(&path, bytes).expect("write");
    let err = Devnet::open_with_pow_verifier(cfg, randomx(), dir.path()).expect_err("format 1");
    assert!(err.to_string().contains("snapshot format 1"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// For random seeds and VRF inputs, every layer `eligible_layers` names is inside the
    /// epoch, the proofs cover each slot once, ascending, and each verifies for its layer.
    #[test]
    fn eligible_layers_lie_inside_the_epoch(
        seed: [u8; 32],
        epoch in 0u32..10_000,
        slots in 1u32..6,
        beacon: [u8; 4],
        vrf_nonce: u64,
    ) {
        let el = Eligibility {
            epoch,
            atx: [0; 32],
            weight: 1,
            active_weight: 1,
            slots,
            beacon,
            vrf_nonce,
            active_set_hash: [0; 32],
            layers: Vec::new(),
            fixed: true,
        };
        let layers = eligible_layers(&seed, &el);
        let lpe = EligibilityParams::devnet().layers_per_epoch;
        let public = crate::vrf::public_key(&seed);
        let mut js = Vec::new();
        let mut previous = None;
        for (layer, proofs) in &layers {
            prop_assert!(*layer >= epoch * lpe && *layer < (epoch + 1) * lpe);
            prop_assert!(previous.is_none_or(|p| p < *layer));
            previous = Some(*layer);
            prop_assert!(!proofs.is_empty());
            for p in proofs {
                js.push(p.j);
                let msg = crate::ballot::vrf_message(&beacon, epoch, vrf_nonce, p.j);
                prop_assert!(crate::vrf::verify(&public, &p.sig, &msg).is_ok());
                prop_assert_eq!(crate::rewards::eligibility_layer(epoch, lpe, &p.sig), Ok(*layer));
            }
        }
        js.sort_unstable();
        prop_assert_eq!(js, (0..slots).collect::<Vec<_>>());
    }
}

/// A slot counts in one layer only: the key holder can malleate a slot's ECVRF proof (a torsion
/// point added to Gamma, the nonce retried until the challenge is a multiple of its order) so
/// that it still verifies and selects another layer; a ballot claiming that slot again there is
/// rejected.
#[test]
fn a_slot_counts_in_one_layer_only() {
    let n = net(&[0x65, 0x66], false);
    let el = n.el(0, 2);
    let seed = n.ids[0].seed;
    let ballots = epoch_ballots(&n.g.genesis_id, &seed, &el);
    let first = &ballots[0];
    assert_eq!(n.submit(first), accepted(first.id()));
    let j = first.eligibility_proofs[0].j;
    let alpha = crate::ballot::vrf_message(&el.beacon, 2, el.vrf_nonce, j);
    let (sig, layer) = (1..8)
        .map(|t| crate::vrf::prove_malleated(&seed, &alpha, t))
        .map(|sig| {
            let layer = n.cfg.eligibility.eligibility_layer(2, &sig).expect("layer");
            (sig, layer)
        })
        .find(|(_, l)| *l != first.layer)
        .expect("a malleated proof that selects another layer");
    assert!(
        crate::vrf::verify(&n.ids[0].node_id, &sig, &alpha).is_ok(),
        "the malleated proof verifies"
    );
    let again = signed_ballot(
        &n.g.genesis_id,
        &seed,
        &el,
        layer,
        vec![VotingEligibility { j, sig }],
        Some(first.id()),
    );
    let reason = n.rejected(&again);
    assert!(reason.contains("already claimed"), "{reason}");
}
