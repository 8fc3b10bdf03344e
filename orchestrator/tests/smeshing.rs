//! The coordinator's ATX builder end to end against the embedded devnet with a fake clock: one
//! keystore identity with tiny real PoST data registers with both PoETs, takes the best proof,
//! publishes an initial ATX through the safety database (accepted, weight > 0); a second,
//! different ATX for the same publish epoch is refused before signing (also after reopening the
//! store) and never reaches the node; in the target epoch the coinbase earns rewards.

use std::sync::Arc;

use node_bridge::atx::validate::ZERO_CHALLENGE;
use node_bridge::atx::{AtxParams, NodeId as BridgeNodeId, Post};
use node_bridge::bridge::{AtxSubmission, EventCursor, NodeBridge, NodeEvent};
use node_bridge::clock::Clock;
use node_bridge::devnet::{Devnet, DevnetConfig};
use node_bridge::poet::server::Registration;
use node_bridge::testkit::{tiny_devnet_config, TinyPost, TINY_PARAMS};
use node_bridge::vm::wallet_address;
use orchestrator::keystore::{Domain, KdfParams, Keystore, NodeId};
use orchestrator::smeshing::{
    best_poet_proof, prepare_challenge, prepare_challenge_durable, publish, register, register_durable,
    AtxInputs, IdentityParams, Published, SmeshingError,
};
use orchestrator::store::{NotSafeReason, Store};
use post::pow::RandomXPow;

const PASS: &str = "smeshing test passphrase";

const PARAMS: AtxParams = TINY_PARAMS;

fn randomx() -> Arc<RandomXPow> {
    node_bridge::testkit::randomx().clone()
}

fn config() -> DevnetConfig {
    tiny_devnet_config(wallet_address(&[0xfa; 32]))
}

fn submissions_of(bridge: &dyn NodeBridge, node: &BridgeNodeId) -> usize {
    let (events, _) = bridge.events_since(EventCursor(0)).expect("events");
    events
        .iter()
        .filter(|e| match e {
            NodeEvent::AtxAccepted { smesher, .. } | NodeEvent::AtxRejected { smesher, .. } => {
                smesher == node
            }
            _ => false,
        })
        .count()
}

/// A keystore with one identity, and the devnet, in a fresh temporary directory.
struct Env {
    tmp: tempfile::TempDir,
    keystore: Keystore,
    node_id: NodeId,
    devnet: Devnet,
    clock: Clock,
}

impl Env {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let keystore = Keystore::create(
            tmp.path().join("keystore"),
            PASS,
            KdfParams::new(8, 1, 1).expect("kdf"),
        )
        .expect("keystore");
        let node_id = keystore.generate().expect("identity");
        let devnet = Devnet::with_pow_verifier(config(), randomx()).expect("devnet");
        let clock = Clock::new(devnet.clock_params().expect("params")).expect("clock");
        Env {
            tmp,
            keystore,
            node_id,
            devnet,
            clock,
        }
    }

    fn store_url(&self) -> String {
        Store::sqlite_url(&self.tmp.path().join("state.db"))
    }
}

#[tokio::test]
async fn a_keystore_identity_smeshes_is_protected_from_double_publishing_and_earns() {
    let env = Env::new();
    let Env {
        keystore,
        node_id,
        devnet,
        clock,
        ..
    } = &env;
    let (keystore, node_id, devnet) = (keystore, *node_id, devnet);
    let store_url = env.store_url();
    let store = Store::connect(&store_url).await.expect("store");

    let bridge: &dyn NodeBridge = devnet;
    let g = bridge.genesis().expect("genesis");
    let units = 1;
    let data = TinyPost::new(node_id.to_bytes(), &g.golden_atx, PARAMS);
    let identity = IdentityParams {
        node_id,
        commitment_atx: g.golden_atx,
        poet_schedule: None,
        initial_post: None,
    };

    // 1. The challenge, at the registration time of the first cycle.
    let first = clock.builder_timeline(0, None).expect("timeline");
    devnet.advance(first.register_at_ms).expect("advance");
    let now = bridge.now().expect("now").now_ms;
    // Without the initial PoST there is no initial challenge.
    assert!(matches!(
        prepare_challenge(bridge, &identity, now),
        Err(SmeshingError::MissingInitialPost {
            node_id: n,
            publish_epoch: 1
        }) if n == node_id
    ));
    let identity = IdentityParams {
        initial_post: Some(data.prove(&ZERO_CHALLENGE, units)),
        ..identity
    };
    let prepared = prepare_challenge(bridge, &identity, now).expect("challenge");
    assert_eq!(prepared.timeline, first);
    assert_eq!((prepared.timeline.poet_round, prepared.publish_epoch()), (0, 1));
    assert!(prepared.is_initial());
    let c = &prepared.challenge;
    assert_eq!((c.sequence, c.prev_atx_id), (0, [0; 32]));
    assert_eq!(c.positioning_atx_id, g.golden_atx);
    assert_eq!(c.commitment_atx_id, Some(g.golden_atx));
    assert_eq!(prepared.challenge_hash, node_bridge::atx::poet_challenge(c));

    // 2. Registered with both PoETs, signed by the keystore.
    let registrations = register(
        bridge,
        keystore,
        node_id,
        prepared.publish_epoch(),
        prepared.challenge_hash,
        Some(&prepared.timeline),
    )
    .expect("register");
    assert_eq!(registrations.len(), 2);
    for r in &registrations {
        let ok = r.result.as_ref().expect("registered");
        assert_eq!((ok.round, ok.round_end_ms), (0, first.round_end_ms));
    }
    // An identity the keystore does not hold cannot register.
    let stranger = NodeId::from_bytes([0x5a; 32]);
    assert!(matches!(
        register(bridge, keystore, stranger, 1, [1; 32], None),
        Err(SmeshingError::Sign { node_id: n, publish_epoch: 1, .. }) if n == stranger
    ));

    // 3. Before the round ends there is no best proof; after it, the 1,000-leaf one.
    devnet.advance(first.round_end_ms - 1).expect("advance");
    assert!(matches!(
        best_poet_proof(bridge, node_id, 1, &prepared.challenge_hash, &registrations),
        Err(SmeshingError::RoundNotEnded { round: 0, .. })
    ));
    devnet.advance(first.round_end_ms + 100).expect("advance");
    let best =
        best_poet_proof(bridge, node_id, 1, &prepared.challenge_hash, &registrations).expect("best proof");
    assert_eq!((best.poet.0.as_str(), best.leaf_count), ("fast", 1_000));
    assert!(best.skipped.is_empty());
    assert_eq!(best.membership.leaf_index, 0);

    // 4. PoST over the proof reference; 5. published through the safety database and accepted.
    let inputs = AtxInputs {
        coinbase: wallet_address(&[0xc0; 32]).0,
        num_units: units,
        post: data.prove(&best.proof_ref, units),
        labels_per_unit: PARAMS.labels_per_unit,
        vrf_nonce: Some(data.vrf_nonce(units)),
    };
    let published = publish(bridge, &store, keystore, &prepared, &best, inputs.clone())
        .await
        .expect("publish");
    let AtxSubmission::Accepted {
        atx: info,
        duplicate: false,
        equivocation: false,
    } = &published.submission
    else {
        panic!("not accepted: {:?}", published.submission);
    };
    assert!(info.weight > 0);
    assert_eq!(
        (info.id, info.smesher, info.publish_epoch, info.ticks, info.weight),
        (published.atx_id, node_id.to_bytes(), 1, 20, 20)
    );
    let records = store.list_atx_records(node_id.as_bytes()).await.expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(
        (
            records[0].publish_epoch,
            records[0].message_hash,
            records[0].prev_atx
        ),
        (1, published.atx_id, None)
    );
    // Retrying the very same ATX is safe: the node calls it a duplicate.
    let again = publish(bridge, &store, keystore, &prepared, &best, inputs.clone())
        .await
        .expect("republish");
    assert_eq!(again.atx_id, published.atx_id);
    assert!(matches!(
        again.submission,
        AtxSubmission::Accepted { duplicate: true, .. }
    ));
    assert_eq!(submissions_of(bridge, &node_id.to_bytes()), 1);

    // A second, different ATX for the same identity and publish epoch: refused before signing,
    // and again after a restart (the store reopened); the node never sees it.
    let other = AtxInputs {
        coinbase: wallet_address(&[0xc1; 32]).0,
        ..inputs.clone()
    };
    let refused = |r: Result<Published, SmeshingError>| {
        let e = match r {
            Err(e) => e,
            Ok(p) => panic!("expected NotSafe, got {:?}", p.submission),
        };
        let text = e.to_string();
        assert!(
            text.contains(&node_id.to_string()) && text.contains("publish epoch 1"),
            "{text}"
        );
        match e {
            SmeshingError::NotSafe {
                node_id: n,
                publish_epoch: 1,
                atx_id,
                reason: NotSafeReason::DoublePublish { publish_epoch: 1 },
            } => {
                assert_eq!(n, node_id);
                assert_ne!(atx_id, published.atx_id);
            }
            other => panic!("expected NotSafe, got {other}"),
        }
    };
    refused(publish(bridge, &store, keystore, &prepared, &best, other.clone()).await);
    store.close().await;
    let store = Store::connect(&store_url).await.expect("reopened store");
    refused(publish(bridge, &store, keystore, &prepared, &best, other).await);
    assert_eq!(
        store
            .list_atx_records(node_id.as_bytes())
            .await
            .expect("records")
            .len(),
        1
    );
    assert_eq!(submissions_of(bridge, &node_id.to_bytes()), 1);
    assert_eq!(bridge.atxs_of(&node_id.to_bytes()).expect("atxs").len(), 1);
    assert!(bridge
        .malfeasance(&node_id.to_bytes())
        .expect("malfeasance")
        .is_none());

    // The next cycle builds on this ATX: sequence 1, previous = this ATX.
    let next = prepare_challenge(bridge, &identity, bridge.now().expect("now").now_ms).expect("next");
    assert_eq!(
        (
            next.challenge.sequence,
            next.challenge.prev_atx_id,
            next.publish_epoch()
        ),
        (1, published.atx_id, 2)
    );
    assert_eq!(next.challenge.commitment_atx_id, None);

    // The target epoch: the identity casts its ballots (all of the epoch's, at its start, from
    // the key's seed: the coordinator's Voter is tested in smeshing_driver.rs) and the coinbase
    // earns.
    devnet
        .advance(clock.epoch_start(2).expect("epoch 2 start") + 100)
        .expect("advance");
    let key = keystore.export_key_hex(&node_id, PASS).expect("export");
    let mut seed = [0u8; 32];
    hex::decode_to_slice(&key[..64], &mut seed).expect("seed");
    let eligibility = bridge
        .eligibility(&node_id.to_bytes(), 2)
        .expect("eligibility")
        .expect("in the active set");
    for ballot in node_bridge::testkit::epoch_ballots(&g.genesis_id, &seed, &eligibility) {
        assert!(matches!(
            bridge.submit_ballot(&ballot).expect("ballot"),
            node_bridge::ballot::BallotSubmission::Accepted { .. }
        ));
    }
    devnet
        .advance(clock.epoch_end(2).expect("epoch 2 end"))
        .expect("advance");
    let coinbase = wallet_address(&[0xc0; 32]);
    let rewards = bridge.rewards_of(&coinbase, 0).expect("rewards");
    assert!(!rewards.is_empty());
    for r in &rewards {
        assert_eq!((r.smesher, r.atx), (node_id.to_bytes(), published.atx_id));
        assert_eq!(clock.epoch_of_layer(r.layer), 2);
    }
    let total: u64 = rewards.iter().map(|r| r.total).sum();
    assert!(total > 0);
    assert_eq!(bridge.account(&coinbase).expect("account").balance, total);
    assert!(bridge
        .rewards_of(&wallet_address(&[0xc1; 32]), 0)
        .expect("rewards")
        .is_empty());
}

#[test]
fn one_poet_refusing_does_not_stop_the_others() {
    let env = Env::new();
    let Env {
        keystore,
        node_id,
        devnet,
        clock,
        ..
    } = &env;
    let (keystore, node_id, devnet) = (keystore, *node_id, devnet);
    let bridge: &dyn NodeBridge = devnet;
    let g = bridge.genesis().expect("genesis");
    let tl = clock.builder_timeline(0, None).expect("timeline");
    devnet.advance(tl.register_at_ms).expect("advance");

    // The PoETs do not check the initial PoST: a placeholder is enough to register.
    let identity = IdentityParams {
        node_id,
        commitment_atx: g.golden_atx,
        poet_schedule: None,
        initial_post: Some(Post {
            nonce: 0,
            indices: vec![0; 8],
            pow: 0,
        }),
    };
    let prepared = prepare_challenge(bridge, &identity, tl.register_at_ms).expect("challenge");
    assert!(matches!(
        best_poet_proof(bridge, node_id, 1, &prepared.challenge_hash, &[]),
        Err(SmeshingError::NotRegistered { publish_epoch: 1, .. })
    ));

    // "fast" already holds another challenge of this identity for round 0, so it refuses.
    let fast = bridge.poets().expect("poets")[0].id.clone();
    let other_challenge = [0x77; 32];
    let blocker = Registration {
        node_id: node_id.to_bytes(),
        challenge: other_challenge,
        signature: keystore
            .sign(&node_id, Domain::Poet, &g.genesis_id, &other_challenge)
            .expect("sign"),
        deadline: None,
    };
    bridge.poet_register(&fast, &blocker).expect("blocker registered");
    let results =
        register(bridge, keystore, node_id, 1, prepared.challenge_hash, Some(&tl)).expect("register");
    let outcome: Vec<(&str, bool)> = results
        .iter()
        .map(|r| (r.poet.0.as_str(), r.result.is_ok()))
        .collect();
    assert_eq!(outcome, vec![("fast", false), ("slow", true)]);

    // After the round: the proof of the PoET that accepted, with a membership that folds.
    devnet.advance(tl.round_end_ms + 100).expect("advance");
    let best = best_poet_proof(bridge, node_id, 1, &prepared.challenge_hash, &results).expect("best proof");
    assert_eq!((best.poet.0.as_str(), best.leaf_count), ("slow", 600));
    let round = bridge.poet_round(&best.poet, 0).expect("round").expect("proof");
    assert_eq!(round.membership(&prepared.challenge_hash), Some(best.membership));
}

/// spec/node.md §2.7: a coordinator restarting mid-cycle gets the challenge it prepared (and
/// registered) before, not a new one, even when a fresh build would differ; the registrations
/// are recorded.
#[tokio::test]
async fn a_restart_mid_cycle_keeps_the_prepared_challenge() {
    let env = Env::new();
    let Env {
        keystore,
        node_id,
        devnet,
        clock,
        ..
    } = &env;
    let (keystore, node_id, devnet) = (keystore, *node_id, devnet);
    let store_url = env.store_url();
    let store = Store::connect(&store_url).await.expect("store");
    let bridge: &dyn NodeBridge = devnet;
    let g = bridge.genesis().expect("genesis");
    let tl = clock.builder_timeline(0, None).expect("timeline");
    devnet.advance(tl.register_at_ms).expect("advance");
    // The PoETs do not check the initial PoST: placeholders are enough to register.
    let identity = |nonce: u32| IdentityParams {
        node_id,
        commitment_atx: g.golden_atx,
        poet_schedule: None,
        initial_post: Some(Post {
            nonce,
            indices: vec![0; 8],
            pow: 0,
        }),
    };

    let first = prepare_challenge_durable(bridge, &store, &identity(1), tl.register_at_ms)
        .await
        .expect("first");
    assert_eq!(
        first,
        prepare_challenge(bridge, &identity(1), tl.register_at_ms).expect("fresh")
    );
    let regs = register_durable(
        bridge,
        &store,
        keystore,
        node_id,
        first.publish_epoch(),
        first.challenge_hash,
        Some(&first.timeline),
    )
    .await
    .expect("register");
    assert_eq!(regs.len(), 2);
    let recorded = store
        .poet_registrations(node_id.as_bytes(), first.publish_epoch())
        .await
        .expect("recorded");
    assert_eq!(
        recorded
            .iter()
            .map(|r| (r.poet.as_str(), r.accepted()))
            .collect::<Vec<_>>(),
        vec![("fast", true), ("slow", true)]
    );

    // Restart later in the registration window, with another initial PoST: a fresh build differs,
    // the durable one is the challenge stored first.
    store.close().await;
    let store = Store::connect(&store_url).await.expect("reopened store");
    let later = tl.register_at_ms + (tl.registration_deadline_ms - tl.register_at_ms) / 2;
    devnet.advance(later).expect("advance");
    let fresh = prepare_challenge(bridge, &identity(2), later).expect("fresh");
    assert_eq!(fresh.publish_epoch(), first.publish_epoch());
    assert_ne!(fresh.challenge_hash, first.challenge_hash);
    let again = prepare_challenge_durable(bridge, &store, &identity(2), later)
        .await
        .expect("again");
    assert_eq!(again, first);
    assert_eq!(
        store
            .poet_registrations(node_id.as_bytes(), first.publish_epoch())
            .await
            .expect("recorded")
            .len(),
        2
    );
}
