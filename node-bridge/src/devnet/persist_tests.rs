//! The devnet on disk: reopened copies of its directory (as a crash would leave it) behave like
//! the original; torn, corrupt and foreign files are handled.

use std::path::Path;

use ed25519_dalek::SigningKey;

use super::tests::{config, randomx, Smesher};
use super::*;
use crate::atx::validate::ZERO_CHALLENGE;
use crate::atx::{
    poet_challenge, ActivationTxV1, InnerActivationTxV1, NIPost, NIPostChallengeV1, PostMetadata,
};
use crate::bridge::{AtxInfo, AtxSubmission, EventCursor, NodeBridge};
use crate::poet::Registration;
use crate::vm::tx::{wallet_self_spawn, wallet_spend};
use crate::vm::wallet_address;

fn open(cfg: &DevnetConfig, dir: &Path) -> Devnet {
    Devnet::open_with_pow_verifier(cfg.clone(), super::tests::randomx(), dir).expect("open")
}

/// A copy of `dir` as it is now (what a crash would leave), opened.
fn crash_copy(cfg: &DevnetConfig, dir: &Path) -> (tempfile::TempDir, Devnet) {
    let copy = tempfile::tempdir().expect("tempdir");
    for e in std::fs::read_dir(dir).expect("read dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), copy.path().join(e.file_name())).expect("copy");
    }
    let dn = open(cfg, copy.path());
    (copy, dn)
}

struct World {
    smeshers: Vec<Smesher>,
    addresses: Vec<Address>,
    txs: Vec<TxId>,
}

/// Everything observable through the bridge, as text (errors included).
fn observe(dn: &Devnet, w: &World) -> Vec<String> {
    let b: &dyn NodeBridge = dn;
    let mut out = vec![format!("{:?}", b.now())];
    let now = b.now().expect("now");
    for s in &w.smeshers {
        out.push(format!("{:?}", b.atxs_of(&s.node_id)));
        out.push(format!("{:?}", b.previous_atx(&s.node_id)));
        out.push(format!("{:?}", b.malfeasance(&s.node_id)));
        for e in 0..=now.epoch + 1 {
            out.push(format!("{:?}", b.eligibility(&s.node_id, e)));
        }
    }
    for l in 0..now.layer {
        out.push(format!("{:?}", b.layer_rewards(l)));
    }
    for a in &w.addresses {
        out.push(format!("{:?}", b.account(a)));
        out.push(format!("{:?}", b.rewards_of(a, 0)));
    }
    for t in &w.txs {
        out.push(format!("{:?}", b.tx_status(t)));
    }
    for p in b.poets().expect("poets") {
        for r in 0..=u64::from(now.epoch) + 1 {
            out.push(format!("{:?}", b.poet_round(&p.id, r)));
        }
    }
    for c in 0..4 {
        out.push(format!("{:?}", b.events_since(EventCursor(c * 40))));
    }
    out.push(format!("{:?}", b.positioning_atx(now.epoch + 1, None)));
    out
}

fn register_all(dn: &Devnet, w: &World, challenges: &[[u8; 32]], deadline_ms: u64) {
    let g = dn.genesis().expect("genesis");
    for (s, c) in w.smeshers.iter().zip(challenges) {
        for p in dn.poets().expect("poets") {
            let reg = Registration::signed(&s.key, &g.genesis_id, *c, Some(system_time(deadline_ms)));
            dn.poet_register(&p.id, &reg).expect("registered");
        }
    }
}

/// The ATX over the best proof of `round` for `challenge`.
fn build_atx(dn: &Devnet, s: &Smesher, challenge: NIPostChallengeV1, round: u64) -> ActivationTxV1 {
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
                labels_per_unit: TINY_LPU,
            }),
        }),
        node_id: initial.then_some(s.node_id),
        vrf_nonce: initial.then(|| s.vrf_nonce(1)),
    };
    s.sign(inner, &g.genesis_id)
}

const TINY_LPU: u64 = crate::testkit::TINY_PARAMS.labels_per_unit;

fn accepted(sub: AtxSubmission) -> AtxInfo {
    match sub {
        AtxSubmission::Accepted {
            atx,
            duplicate: false,
            ..
        } => atx,
        other => panic!("not accepted: {other:?}"),
    }
}

fn initial_challenge(dn: &Devnet, s: &Smesher) -> NIPostChallengeV1 {
    NIPostChallengeV1 {
        publish_epoch: 1,
        sequence: 0,
        prev_atx_id: [0; 32],
        positioning_atx_id: dn.positioning_atx(1, None).expect("positioning"),
        commitment_atx_id: Some(s.commitment_atx),
        initial_post: Some(s.prove(&ZERO_CHALLENGE, 1)),
    }
}

fn next_challenge(dn: &Devnet, prev: &AtxInfo) -> NIPostChallengeV1 {
    NIPostChallengeV1 {
        publish_epoch: prev.publish_epoch + 1,
        sequence: prev.sequence + 1,
        prev_atx_id: prev.id,
        positioning_atx_id: dn
            .positioning_atx(prev.publish_epoch + 1, Some(&prev.id))
            .expect("positioning"),
        commitment_atx_id: None,
        initial_post: None,
    }
}

/// What a driver of one devnet remembers between steps.
#[derive(Clone, Default)]
struct Ctx {
    challenges: Vec<NIPostChallengeV1>,
    prev: Vec<AtxInfo>,
}

const STEPS: usize = 12;

/// Step `k` of the script, on any devnet (the original or a reopened copy). Step 8 (after a
/// save and journal records: ballots of epoch 2; round 1 running) and earlier are checkpoints.
fn step(dn: &Devnet, w: &World, faucet_key: &SigningKey, ctx: &mut Ctx, k: usize) {
    let g = dn.genesis().expect("genesis");
    match k {
        0 => dn.advance(30_000).expect("advance"),
        // Epoch 0: both register for round 0 (journal only: no save yet).
        1 => {
            ctx.challenges = w.smeshers.iter().map(|s| initial_challenge(dn, s)).collect();
            let m: Vec<[u8; 32]> = ctx.challenges.iter().map(poet_challenge).collect();
            register_all(dn, w, &m, 90_000);
        }
        // Mid round 0.
        2 => dn.advance(61_234).expect("advance"),
        // Round 0 over: both publish their initial ATX; the faucet spawns and spends.
        3 => {
            dn.advance(90_100).expect("advance");
            ctx.prev.clear();
            for (s, c) in w.smeshers.iter().zip(ctx.challenges.clone()) {
                let atx = build_atx(dn, s, c, 0);
                ctx.prev.push(accepted(dn.submit_atx(&atx).expect("submit")));
            }
        }
        4 => {
            dn.submit_tx(&wallet_self_spawn(faucet_key, 0, 1, &g.genesis_id))
                .expect("spawn");
            let spend = wallet_spend(
                faucet_key,
                w.addresses[1],
                7 * SMIDGE_PER_SMH,
                1,
                1,
                &g.genesis_id,
            );
            dn.submit_tx(&spend).expect("spend");
        }
        // A snapshot, then registrations for round 1 in the journal after it.
        5 => dn.save().expect("save"),
        6 => {
            dn.advance(95_000).expect("advance");
            ctx.challenges = ctx.prev.iter().map(|p| next_challenge(dn, p)).collect();
            let m: Vec<[u8; 32]> = ctx.challenges.iter().map(poet_challenge).collect();
            register_all(dn, w, &m, 150_000);
        }
        // Round 1 running, after a second save.
        7 => {
            dn.advance(120_500).expect("advance");
            dn.save().expect("save");
        }
        // Epoch 2 started: both sign ballots for their eligible layers (journal only).
        8 => {
            dn.advance(121_000).expect("advance");
            for s in &w.smeshers {
                s.vote(dn, 2);
            }
        }
        // The next ATXs, naming the previous ones.
        9 => {
            dn.advance(150_100).expect("advance");
            for (s, c) in w.smeshers.iter().zip(ctx.challenges.clone()) {
                let atx = build_atx(dn, s, c, 1);
                let info = accepted(dn.submit_atx(&atx).expect("submit"));
                assert_eq!(info.sequence, 1);
            }
        }
        10 => {
            dn.advance(180_000).expect("advance");
            for s in &w.smeshers {
                s.vote(dn, 3);
            }
        }
        _ => dn.advance(241_000).expect("advance"),
    }
}

/// A devnet opened in a fresh directory, its faucet's key, and the world the script acts in:
/// two smeshers, the faucet and the smeshers' wallet addresses, no transactions yet.
struct Setup {
    faucet_key: SigningKey,
    cfg: DevnetConfig,
    dir: tempfile::TempDir,
    dn: Devnet,
    w: World,
}

fn setup() -> Setup {
    let faucet_key = SigningKey::from_bytes(&[0xfa; 32]);
    let faucet = wallet_address(&faucet_key.verifying_key().to_bytes());
    let cfg = config(faucet, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let dn = open(&cfg, dir.path());
    let g = dn.genesis().expect("genesis");
    let smeshers = vec![Smesher::new(0x51, g.golden_atx), Smesher::new(0x52, g.golden_atx)];
    let w = World {
        addresses: vec![
            faucet,
            wallet_address(&smeshers[0].node_id),
            wallet_address(&smeshers[1].node_id),
        ],
        smeshers,
        txs: Vec::new(),
    };
    Setup {
        faucet_key,
        cfg,
        dir,
        dn,
        w,
    }
}

#[test]
fn a_reopened_devnet_is_the_same_node() {
    let Setup {
        faucet_key,
        cfg,
        dir,
        dn,
        mut w,
    } = setup();
    let faucet = w.addresses[0];
    let g = dn.genesis().expect("genesis");
    w.txs
        .push(TxId::of(&wallet_self_spawn(&faucet_key, 0, 1, &g.genesis_id)));
    let spend = wallet_spend(
        &faucet_key,
        w.addresses[1],
        7 * SMIDGE_PER_SMH,
        1,
        1,
        &g.genesis_id,
    );
    w.txs.push(TxId::of(&spend));

    // The original runs the script, leaving a crash copy of its directory after every step up
    // to 8; each copy then runs the rest of the script and must match the original after every
    // step.
    let mut ctx = Ctx::default();
    let mut copies = Vec::new();
    let mut trace = Vec::new();
    for k in 0..STEPS {
        step(&dn, &w, &faucet_key, &mut ctx, k);
        trace.push(observe(&dn, &w));
        if k <= 8 {
            copies.push((k, crash_copy(&cfg, dir.path()), ctx.clone()));
        }
    }
    assert!(!dn.rewards_of(&w.addresses[1], 36).expect("rewards").is_empty());
    assert_eq!(dn.atxs_of(&w.smeshers[0].node_id).expect("atxs").len(), 2);
    assert_eq!(dn.account(&faucet).expect("faucet").next_nonce, 2);
    for (at, (_dir, copy), mut cctx) in copies {
        assert_eq!(observe(&copy, &w), trace[at], "reopened after step {at}");
        for (k, expect) in trace.iter().enumerate().skip(at + 1) {
            step(&copy, &w, &faucet_key, &mut cctx, k);
            assert_eq!(&observe(&copy, &w), expect, "reopened after step {at}, step {k}");
        }
    }

    // Reopening the original's own directory after a save and more journal.
    dn.save().expect("save");
    dn.advance(250_000).expect("advance");
    let expect = observe(&dn, &w);
    drop(dn);
    let again = open(&cfg, dir.path());
    assert_eq!(observe(&again, &w), expect);
}

fn journal_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("journal.bin")).expect("journal").len()
}

#[test]
fn torn_corrupt_and_foreign_files() {
    let faucet_key = SigningKey::from_bytes(&[0xfa; 32]);
    let faucet = wallet_address(&faucet_key.verifying_key().to_bytes());
    let cfg = config(faucet, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let dn = open(&cfg, dir.path());
    let g = dn.genesis().expect("genesis");
    dn.advance(10_000).expect("advance");
    let spawn = wallet_self_spawn(&faucet_key, 0, 1, &g.genesis_id);
    let spawn_id = dn.submit_tx(&spawn).expect("spawn");
    let before_last = journal_len(dir.path());
    let spend = wallet_spend(&faucet_key, faucet, 1, 1, 1, &g.genesis_id);
    let spend_id = dn.submit_tx(&spend).expect("spend");
    let full = journal_len(dir.path());
    drop(dn);

    // A torn last record: the state before it.
    let torn = tempfile::tempdir().expect("tempdir");
    for f in ["snapshot.bin", "journal.bin", "atxs.bin"] {
        std::fs::copy(dir.path().join(f), torn.path().join(f)).expect("copy");
    }
    let j = std::fs::OpenOptions::new()
        .write(true)
        .open(torn.path().join("journal.bin"))
        .expect("open");
    j.set_len(full - 5).expect("truncate");
    drop(j);
    let dn = open(&cfg, torn.path());
    assert_eq!(dn.now_ms(), 10_000);
    assert!(dn.tx_status(&spawn_id).expect("status").is_some());
    assert_eq!(dn.tx_status(&spend_id).expect("status"), None);
    assert_eq!(journal_len(torn.path()), before_last, "the torn tail is cut off");
    drop(dn);

    // A flipped byte in the middle of the journal: an error naming the file.
    let mut bytes = std::fs::read(dir.path().join("journal.bin")).expect("read");
    let mid = usize::try_from(before_last).expect("len") - 10;
    bytes[mid] ^= 0x01;
    let bad = tempfile::tempdir().expect("tempdir");
    for f in ["snapshot.bin", "atxs.bin"] {
        std::fs::copy(dir.path().join(f), bad.path().join(f)).expect("copy");
    }
    std::fs::write(bad.path().join("journal.bin"), &bytes).expect("write");
    let err = Devnet::open_with_pow_verifier(cfg.clone(), randomx(), bad.path()).expect_err("corrupt");
    assert!(matches!(err, DevnetError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("journal.bin"), "{err}");

    // A flipped byte in the snapshot.
    let mut snap = std::fs::read(dir.path().join("snapshot.bin")).expect("read");
    let n = snap.len();
    snap[n / 2] ^= 0x01;
    std::fs::write(bad.path().join("snapshot.bin"), &snap).expect("write");
    let err = Devnet::open_with_pow_verifier(cfg.clone(), randomx(), bad.path()).expect_err("corrupt");
    assert!(err.to_string().contains("snapshot.bin"), "{err}");

    // Another config's directory.
    let mut other = cfg.clone();
    other.clock.genesis_ms = 1_000;
    let err = Devnet::open_with_pow_verifier(other, randomx(), dir.path()).expect_err("foreign");
    assert!(matches!(err, DevnetError::ConfigMismatch { .. }), "{err}");
    assert!(err.to_string().contains("snapshot.bin"), "{err}");
}

/// A save dies midway, in either of its two windows: after the new ATXs were appended to the log
/// but before the snapshot was renamed into place (the log is longer than the snapshot counts),
/// and after the snapshot was renamed but before the new journal was (the journal is of the
/// older generation). Both directories open as the node the save was made of.
#[test]
fn a_save_that_dies_midway_loses_nothing() {
    let Setup {
        faucet_key,
        cfg,
        dir,
        dn,
        mut w,
    } = setup();
    let g = dn.genesis().expect("genesis");
    w.txs
        .push(TxId::of(&wallet_self_spawn(&faucet_key, 0, 1, &g.genesis_id)));
    let mut ctx = Ctx::default();
    // Steps 0-4: registrations, two accepted ATXs and two transactions, all in the journal only.
    for k in 0..5 {
        step(&dn, &w, &faucet_key, &mut ctx, k);
    }
    let raw_copy = |from: &Path| {
        let copy = tempfile::tempdir().expect("tempdir");
        for e in std::fs::read_dir(from).expect("read dir") {
            let e = e.expect("entry");
            std::fs::copy(e.path(), copy.path().join(e.file_name())).expect("copy");
        }
        copy
    };
    let before = raw_copy(dir.path());
    dn.save().expect("save");
    let expect = observe(&dn, &w);
    let overwrite = |to: &Path, names: &[&str]| {
        for n in names {
            std::fs::copy(dir.path().join(n), to.join(n)).expect("overwrite");
        }
    };
    // The ATX log holds the two new ATXs; the snapshot and journal are the old ones.
    let log_longer = raw_copy(before.path());
    overwrite(log_longer.path(), &["atxs.bin"]);
    assert_eq!(observe(&open(&cfg, log_longer.path()), &w), expect);
    // The new snapshot (and its ATXs); the journal of the generation before.
    let journal_stale = raw_copy(before.path());
    overwrite(journal_stale.path(), &["atxs.bin", "snapshot.bin"]);
    let reopened = open(&cfg, journal_stale.path());
    assert_eq!(observe(&reopened, &w), expect);
    // ... and the stale journal was replaced: the reopened node goes on, and opens again, like
    // the original.
    for d in [&dn, &reopened] {
        step(d, &w, &faucet_key, &mut ctx.clone(), 6);
    }
    let expect = observe(&dn, &w);
    assert_eq!(observe(&reopened, &w), expect);
    drop(reopened);
    assert_eq!(observe(&open(&cfg, journal_stale.path()), &w), expect);
}
