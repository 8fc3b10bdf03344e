//! The smeshing driver against the embedded devnet with a fake clock: it asks the fleet for the
//! initial PoST, registers at the cycle's registration time, asks for the PoST over the best PoET
//! proof once the round ends, and publishes when the publish epoch begins; two cycles in a row.
//! The "fleet" here answers proving requests from tiny real PoST data (the workers' part is
//! covered by the fleet and `up` end-to-end tests). A driver dropped and built again (a restart)
//! picks every step up from the store: no second registration, no second challenge, no second
//! signature for an epoch.

use std::sync::Arc;

use node_bridge::bridge::NodeBridge;
use node_bridge::clock::Clock;
use node_bridge::devnet::{Devnet, DevnetConfig};
use node_bridge::testkit::{tiny_devnet_config, tiny_two_phase_devnet_config, TinyPost, TINY_PARAMS};
use node_bridge::vm::wallet_address;
use orchestrator::keystore::{KdfParams, Keystore};
use orchestrator::smeshing::{prepare_challenge_durable, Driver, IdentityParams, Step, INITIAL_POST_EPOCH};
use orchestrator::store::{
    Identity, IdentityState, IdentityUpdate, NewIdentity, ProvingRequestState, Store, StoredProof,
};
use tokio::sync::Notify;
use uuid::Uuid;

struct Env {
    _tmp: tempfile::TempDir,
    store: Store,
    keystore: Arc<Keystore>,
    devnet: Arc<Devnet>,
    clock: Clock,
    data: TinyPost,
    identity: Identity,
}

const UNITS: u32 = 1;

impl Env {
    async fn new() -> Env {
        Env::with_config(tiny_devnet_config(wallet_address(&[0xfa; 32]))).await
    }

    async fn with_config(config: DevnetConfig) -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        let keystore = Keystore::create(
            tmp.path().join("keystore"),
            "driver test passphrase",
            KdfParams::new(8, 1, 1).expect("kdf"),
        )
        .expect("keystore");
        let node_id = keystore.generate().expect("identity");
        let devnet =
            Devnet::with_pow_verifier(config, node_bridge::testkit::randomx().clone()).expect("devnet");
        let clock = Clock::new(devnet.clock_params().expect("params")).expect("clock");
        let golden = devnet.genesis().expect("genesis").golden_atx;
        let data = TinyPost::new(node_id.to_bytes(), &golden, TINY_PARAMS);
        let store = Store::connect(&Store::sqlite_url(&tmp.path().join("state.db")))
            .await
            .expect("store");
        let coinbase = wallet_address(&[0xc0; 32]).encode("standalone").expect("address");
        let new = NewIdentity {
            name: "driven".into(),
            node_id: node_id.to_bytes(),
            num_units: UNITS,
            labels_per_unit: TINY_PARAMS.labels_per_unit,
            max_file_size: TINY_PARAMS.labels_per_unit * 16,
            scrypt_n: u32::try_from(TINY_PARAMS.scrypt_n).expect("n"),
            commitment_atx_id: Some(golden),
            coinbase: Some(coinbase),
        };
        let identity = store.create_identity(&new, 0).await.expect("identity");
        Env {
            _tmp: tmp,
            store,
            keystore: Arc::new(keystore),
            devnet: Arc::new(devnet),
            clock,
            data,
            identity,
        }
    }

    fn driver(&self) -> Driver {
        Driver::new(
            self.store.clone(),
            self.keystore.clone(),
            self.devnet.clone(),
            Arc::new(Notify::new()),
        )
    }

    async fn step(&self, driver: &mut Driver) -> Step {
        let ident = self.store.get_identity(self.identity.id).await.expect("identity");
        driver.drive(&ident).await.expect("step")
    }

    /// The identity initialized, and its initial PoST asked of the fleet and proved.
    async fn ready_with_initial_post(&self, driver: &mut Driver) {
        self.store
            .update_identity_state(self.identity.id, IdentityState::Ready, None, 0)
            .await
            .expect("ready");
        assert_eq!(self.step(driver).await, Step::WaitingForInitialPost);
        self.prove(INITIAL_POST_EPOCH).await;
    }

    /// The VRF nonce init found, as the coordinator records it.
    async fn record_vrf_nonce(&self) {
        self.store
            .update_identity(
                self.identity.id,
                &IdentityUpdate {
                    vrf_nonce: Some(self.data.vrf_nonce(UNITS)),
                    ..IdentityUpdate::default()
                },
                0,
            )
            .await
            .expect("vrf nonce");
    }

    /// The fleet's part: the PoST of the pending request of `epoch`, recorded as verified.
    async fn prove(&self, epoch: u32) {
        let req = self
            .store
            .get_proving_request(self.identity.id, epoch)
            .await
            .expect("request");
        assert_eq!(req.state, ProvingRequestState::Pending);
        let post = self.data.prove(&req.challenge, UNITS).to_proof();
        self.store
            .record_proof(&StoredProof {
                identity_id: self.identity.id,
                publish_epoch: epoch,
                challenge: req.challenge,
                proof: serde_json::to_value(&post).expect("json"),
                nonce: post.nonce,
                job_id: Uuid::new_v4(),
                verified_at: 0,
            })
            .await
            .expect("record proof");
    }
}

#[tokio::test]
async fn the_driver_takes_an_identity_through_two_cycles_across_restarts() {
    let env = Env::new().await;
    let mut driver = env.driver();

    // Not before its data is complete, nor without a VRF nonce for its initial ATX.
    assert!(matches!(env.step(&mut driver).await, Step::NotReady(_)));
    env.store
        .update_identity_state(env.identity.id, IdentityState::Ready, None, 0)
        .await
        .expect("ready");

    // 1. The initial PoST is asked of the fleet, once.
    assert_eq!(env.step(&mut driver).await, Step::WaitingForInitialPost);
    assert_eq!(env.step(&mut driver).await, Step::WaitingForInitialPost);
    let reqs = env
        .store
        .list_proving_requests(env.identity.id)
        .await
        .expect("requests");
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        (reqs[0].publish_epoch, reqs[0].challenge),
        (INITIAL_POST_EPOCH, [0; 32])
    );
    env.prove(INITIAL_POST_EPOCH).await;

    // 2. Registration waits for its time, then goes to both PoETs.
    let first = env.clock.builder_timeline(0, None).expect("timeline");
    assert_eq!(
        env.step(&mut driver).await,
        Step::WaitingToRegister {
            publish_epoch: 1,
            register_at_ms: first.register_at_ms
        }
    );
    env.devnet.advance(first.register_at_ms).expect("advance");
    assert_eq!(
        env.step(&mut driver).await,
        Step::Registered {
            publish_epoch: 1,
            accepted: 2
        }
    );
    let challenge = env
        .store
        .prepared_challenge(&env.identity.node_id, 1)
        .await
        .expect("challenge")
        .expect("stored");

    // A restart: the new driver resumes the registered cycle instead of registering again.
    let mut driver = env.driver();
    assert_eq!(
        env.step(&mut driver).await,
        Step::WaitingForRound {
            publish_epoch: 1,
            round_end_ms: first.round_end_ms
        }
    );

    // 3. The round ends: the PoST over the best proof is asked of the fleet.
    env.devnet.advance(first.round_end_ms + 100).expect("advance");
    assert_eq!(
        env.step(&mut driver).await,
        Step::ProvingRequested { publish_epoch: 1 }
    );
    assert_eq!(
        env.step(&mut driver).await,
        Step::WaitingForProof { publish_epoch: 1 }
    );
    env.prove(1).await;

    // 4. Another restart, then the ATX is published in its epoch; without a VRF nonce the
    //    initial ATX waits.
    let mut driver = env.driver();
    env.devnet
        .advance(first.publish_not_before_ms.max(first.round_end_ms + 200))
        .expect("advance");
    assert!(matches!(env.step(&mut driver).await, Step::NotReady(why) if why.contains("VRF")));
    env.record_vrf_nonce().await;
    let Step::Published {
        publish_epoch: 1,
        atx_id,
        accepted: true,
        ..
    } = env.step(&mut driver).await
    else {
        panic!("not published");
    };
    let atxs = env.devnet.atxs_of(&env.identity.node_id).expect("atxs");
    assert_eq!(
        atxs.iter().map(|a| (a.id, a.publish_epoch)).collect::<Vec<_>>(),
        vec![(atx_id, 1)]
    );
    assert_eq!(
        env.store
            .get_identity(env.identity.id)
            .await
            .expect("identity")
            .state,
        IdentityState::Submitted
    );
    // The same challenge throughout: the one stored at registration.
    let records = env
        .store
        .list_atx_records(&env.identity.node_id)
        .await
        .expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(
        env.store
            .prepared_challenge(&env.identity.node_id, 1)
            .await
            .expect("challenge"),
        Some(challenge)
    );

    // 5. The next cycle builds on the ATX: publish epoch 2, previous ATX = the first.
    let second = env
        .clock
        .builder_timeline(first.round_end_ms + 200, Some(1))
        .expect("timeline");
    assert_eq!(second.publish_epoch, 2);
    let mut driver = env.driver();
    assert!(matches!(
        env.step(&mut driver).await,
        Step::WaitingToRegister { publish_epoch: 2, .. }
    ));
    env.devnet.advance(second.register_at_ms).expect("advance");
    assert!(matches!(
        env.step(&mut driver).await,
        Step::Registered {
            publish_epoch: 2,
            accepted: 2
        }
    ));
    env.devnet.advance(second.round_end_ms + 100).expect("advance");
    assert_eq!(
        env.step(&mut driver).await,
        Step::ProvingRequested { publish_epoch: 2 }
    );
    env.prove(2).await;
    env.devnet
        .advance(second.publish_not_before_ms.max(second.round_end_ms + 200))
        .expect("advance");
    let Step::Published {
        publish_epoch: 2,
        accepted: true,
        ..
    } = env.step(&mut driver).await
    else {
        panic!("second ATX not published");
    };
    let atxs = env.devnet.atxs_of(&env.identity.node_id).expect("atxs");
    assert_eq!(atxs.len(), 2);
    assert_eq!(atxs[1].sequence, 1);
    assert_eq!(
        env.store
            .list_atx_records(&env.identity.node_id)
            .await
            .expect("records")
            .len(),
        2
    );
}

#[tokio::test]
async fn a_missed_registration_window_moves_to_the_next_round() {
    let env = Env::new().await;
    let mut driver = env.driver();
    env.ready_with_initial_post(&mut driver).await;
    // Late: round 0 has started; the cycle is the next one (publish epoch 2).
    let first = env.clock.builder_timeline(0, None).expect("timeline");
    env.devnet
        .advance(first.registration_deadline_ms + 1)
        .expect("advance");
    let next = env
        .clock
        .builder_timeline(first.registration_deadline_ms + 1, None)
        .expect("timeline");
    assert_eq!(next.publish_epoch, 2);
    assert!(matches!(
        env.step(&mut driver).await,
        Step::WaitingToRegister { publish_epoch: 2, .. }
    ));
    env.devnet.advance(next.register_at_ms).expect("advance");
    assert!(matches!(
        env.step(&mut driver).await,
        Step::Registered {
            publish_epoch: 2,
            accepted: 2
        }
    ));
}

#[tokio::test]
async fn a_stored_challenge_the_node_cannot_use_skips_its_epoch_only() {
    use node_bridge::atx::{poet_challenge, NIPostChallengeV1, Scale};
    let env = Env::new().await;
    let mut driver = env.driver();
    env.ready_with_initial_post(&mut driver).await;
    // A challenge stored earlier for epoch 1 over a previous ATX this node never saw.
    let golden = env.devnet.genesis().expect("genesis").golden_atx;
    let stale = NIPostChallengeV1 {
        publish_epoch: 1,
        sequence: 4,
        prev_atx_id: [9; 32],
        positioning_atx_id: golden,
        commitment_atx_id: None,
        initial_post: None,
    };
    env.store
        .save_prepared_challenge(
            &env.identity.node_id,
            1,
            &stale.to_bytes(),
            &poet_challenge(&stale),
            0,
        )
        .await
        .expect("store");
    let first = env.clock.builder_timeline(0, None).expect("timeline");
    env.devnet.advance(first.register_at_ms).expect("advance");
    // Epoch 1 is skipped (no other challenge is built for it), every pass, without an error.
    for _ in 0..2 {
        assert!(matches!(
            env.step(&mut driver).await,
            Step::Abandoned { publish_epoch: 1, reason } if reason.contains("previous ATX")
        ));
    }
    assert_eq!(
        env.store
            .poet_registrations(&env.identity.node_id, 1)
            .await
            .expect("registrations")
            .len(),
        0
    );
    // The next cycle starts fresh.
    let next = env
        .clock
        .builder_timeline(first.registration_deadline_ms, None)
        .expect("timeline");
    assert_eq!(next.publish_epoch, 2);
    env.devnet.advance(next.register_at_ms).expect("advance");
    assert!(matches!(
        env.step(&mut driver).await,
        Step::Registered {
            publish_epoch: 2,
            accepted: 2
        }
    ));
}

/// A pass looks again at an identity waiting for a known instant only once it has come.
#[tokio::test]
async fn a_pass_skips_identities_until_their_next_instant() {
    let env = Env::new().await;
    let mut driver = env.driver();
    env.store
        .update_identity_state(env.identity.id, IdentityState::Ready, None, 0)
        .await
        .expect("ready");
    let id = env.identity.id;
    let step_of = |v: Vec<(Uuid, Step)>| v.into_iter().find(|(i, _)| *i == id).map(|(_, s)| s);
    assert_eq!(
        step_of(driver.pass().await.expect("pass")),
        Some(Step::WaitingForInitialPost)
    );
    env.prove(INITIAL_POST_EPOCH).await;
    let first = env.clock.builder_timeline(0, None).expect("timeline");
    let waiting = Step::WaitingToRegister {
        publish_epoch: 1,
        register_at_ms: first.register_at_ms,
    };
    assert_eq!(step_of(driver.pass().await.expect("pass")), Some(waiting.clone()));
    // Something the driver would act on changes: not looked at before the registration time...
    env.store
        .update_identity_state(id, IdentityState::Initializing, None, 0)
        .await
        .expect("state");
    env.devnet.advance(first.register_at_ms - 1).expect("advance");
    assert_eq!(step_of(driver.pass().await.expect("pass")), Some(waiting));
    // ... and at it.
    env.devnet.advance(first.register_at_ms).expect("advance");
    assert!(matches!(
        step_of(driver.pass().await.expect("pass")),
        Some(Step::NotReady(_))
    ));
}

/// With the PoETs in two phases (40 s "fast", 20 s "slow"), identities are spread over them and
/// register with their own phase's PoET only; one that misses its phase's round takes the other
/// phase's round of the same epoch, publishes on it, and stays in that phase.
#[tokio::test]
async fn identities_are_spread_over_poet_phases_and_a_late_one_takes_the_next_phase() {
    let env = Env::with_config(tiny_two_phase_devnet_config(wallet_address(&[0xfa; 32]))).await;
    let mut driver = env.driver();
    // The identity was placed in the 20 s phase earlier; another one, ready, is not placed yet.
    env.store
        .set_poet_phase(env.identity.id, 20_000, 0)
        .await
        .expect("phase");
    let other_key = env.keystore.generate().expect("second identity");
    let other = env
        .store
        .create_identity(
            &NewIdentity {
                name: "other".into(),
                node_id: other_key.to_bytes(),
                num_units: UNITS,
                labels_per_unit: TINY_PARAMS.labels_per_unit,
                max_file_size: TINY_PARAMS.labels_per_unit * 16,
                scrypt_n: u32::try_from(TINY_PARAMS.scrypt_n).expect("n"),
                commitment_atx_id: env.identity.commitment_atx_id,
                coinbase: env.identity.coinbase.clone(),
            },
            0,
        )
        .await
        .expect("other identity");
    env.store
        .update_identity_state(other.id, IdentityState::Ready, None, 0)
        .await
        .expect("ready");
    env.ready_with_initial_post(&mut driver).await;
    driver.pass().await.expect("pass");
    let phase = |id| {
        let store = env.store.clone();
        async move { store.get_identity(id).await.expect("identity").poet_phase_ms }
    };
    // The other identity goes where the load is not: the 40 s phase.
    assert_eq!(phase(other.id).await, Some(40_000));
    assert_eq!(phase(env.identity.id).await, Some(20_000));

    // Its first cycle in its own phase: registration at 20 s − 4 s grace, with "slow" only.
    assert_eq!(
        env.step(&mut driver).await,
        Step::WaitingToRegister {
            publish_epoch: 1,
            register_at_ms: 16_000
        }
    );
    env.devnet.advance(16_000).expect("advance");
    assert_eq!(
        env.step(&mut driver).await,
        Step::Registered {
            publish_epoch: 1,
            accepted: 1
        }
    );
    let poets = |epoch| {
        let store = env.store.clone();
        let node_id = env.identity.node_id;
        async move {
            store
                .poet_registrations(&node_id, epoch)
                .await
                .expect("registrations")
                .into_iter()
                .map(|r| r.poet)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(poets(1).await, vec!["slow".to_owned()]);
    // Its round ends at 20 s + 50 s, inside publish epoch 1: prove and publish.
    env.devnet.advance(70_100).expect("advance");
    assert_eq!(
        env.step(&mut driver).await,
        Step::ProvingRequested { publish_epoch: 1 }
    );
    env.prove(1).await;
    env.record_vrf_nonce().await;
    assert!(matches!(
        env.step(&mut driver).await,
        Step::Published {
            publish_epoch: 1,
            accepted: true,
            ..
        }
    ));

    // The next registration (76 s) is missed: its phase's round 1 starts at 80 s. The 40 s
    // phase's round 1 (100 s) still makes publish epoch 2; the identity moves there for good.
    env.devnet.advance(81_000).expect("advance");
    assert_eq!(
        env.step(&mut driver).await,
        Step::WaitingToRegister {
            publish_epoch: 2,
            register_at_ms: 96_000
        }
    );
    env.devnet.advance(96_000).expect("advance");
    assert_eq!(
        env.step(&mut driver).await,
        Step::Registered {
            publish_epoch: 2,
            accepted: 1
        }
    );
    assert_eq!(poets(2).await, vec!["fast".to_owned()]);
    assert_eq!(phase(env.identity.id).await, Some(40_000));
    env.devnet.advance(150_100).expect("advance");
    assert_eq!(
        env.step(&mut driver).await,
        Step::ProvingRequested { publish_epoch: 2 }
    );
    env.prove(2).await;
    let Step::Published {
        publish_epoch: 2,
        accepted: true,
        ..
    } = env.step(&mut driver).await
    else {
        panic!("the ATX on the other phase's proof was not published");
    };
    let atxs = env.devnet.atxs_of(&env.identity.node_id).expect("atxs");
    assert_eq!(
        atxs.iter()
            .map(|a| (a.publish_epoch, a.sequence))
            .collect::<Vec<_>>(),
        vec![(1, 0), (2, 1)]
    );
}

/// A challenge a previous run prepared and never registered (it stopped in between), whose round
/// has started since, is not taken up again pass after pass: the identity goes on to the next
/// round it can still make.
#[tokio::test]
async fn a_prepared_but_unregistered_cycle_whose_round_started_is_left_behind() {
    let env = Env::new().await;
    let mut driver = env.driver();
    env.ready_with_initial_post(&mut driver).await;
    let first = env.clock.builder_timeline(0, None).expect("timeline");
    env.devnet.advance(first.register_at_ms).expect("advance");
    let golden = env.devnet.genesis().expect("genesis").golden_atx;
    let params = IdentityParams {
        node_id: orchestrator::keystore::NodeId::from_bytes(env.identity.node_id),
        commitment_atx: golden,
        initial_post: Some(env.data.prove(&[0; 32], UNITS)),
        poet_schedule: None,
    };
    prepare_challenge_durable(env.devnet.as_ref(), &env.store, &params, first.register_at_ms)
        .await
        .expect("prepared");
    env.devnet
        .advance(first.registration_deadline_ms + 1)
        .expect("advance");
    let mut driver = env.driver();
    for _ in 0..2 {
        assert!(matches!(
            env.step(&mut driver).await,
            Step::WaitingToRegister { publish_epoch: 2, .. }
        ));
    }
}

/// Ballots (devnet.md §3.2): once its first ATX is in the active set, the identity votes in
/// every layer its VRF proofs select, each ballot with that layer's proofs, the first one the
/// epoch's reference ballot; the node accepts them and pays exactly those layers. A second
/// coordinator on the same safety database (or a restart) in a layer already voted in finds the
/// node holding the ballot and signs nothing; another ballot for that layer (built from another
/// view of the node) gets no permit from the safety database; the identity is never flagged.
#[tokio::test]
async fn the_identity_votes_in_its_eligible_layers_and_a_second_ballot_for_a_layer_is_refused() {
    use node_bridge::vm::Address;
    use orchestrator::smeshing::{Vote, Voter};
    use orchestrator::store::{BallotSigning, NotSafeReason};

    let env = Env::new().await;
    let mut driver = env.driver();
    env.ready_with_initial_post(&mut driver).await;
    env.record_vrf_nonce().await;
    let first = env.clock.builder_timeline(0, None).expect("timeline");
    env.devnet.advance(first.register_at_ms).expect("advance");
    assert!(matches!(env.step(&mut driver).await, Step::Registered { .. }));
    env.devnet.advance(first.round_end_ms + 100).expect("advance");
    assert!(matches!(
        env.step(&mut driver).await,
        Step::ProvingRequested { .. }
    ));
    env.prove(1).await;
    env.devnet
        .advance(first.publish_not_before_ms.max(first.round_end_ms + 200))
        .expect("advance");
    assert!(matches!(
        env.step(&mut driver).await,
        Step::Published { accepted: true, .. }
    ));

    // Epoch 2: the ATX's target epoch.
    let params = env.devnet.clock_params().expect("params");
    let lpe = params.layers_per_epoch;
    let layer_ms = params.layer_duration_ms;
    let first_layer = 2 * lpe;
    let ident = env.store.get_identity(env.identity.id).await.expect("identity");
    let node_id = orchestrator::keystore::NodeId::from_bytes(ident.node_id);
    let mut voter = Voter::new(env.store.clone(), env.keystore.clone(), env.devnet.clone());
    let mut cast = Vec::new();
    let mut second_checked = false;
    for layer in first_layer..first_layer + lpe {
        env.devnet
            .advance(params.genesis_ms + u64::from(layer) * layer_ms + 100)
            .expect("advance");
        for (who, vote) in voter.pass(std::slice::from_ref(&ident)).await {
            assert_eq!(who, node_id);
            match vote.expect("vote") {
                Vote::Cast {
                    layer: l,
                    proofs,
                    duplicate,
                } => {
                    assert_eq!(l, layer);
                    assert!(!duplicate);
                    cast.push((l, proofs));
                }
            }
        }
        // The same pass again: nothing more in this layer.
        assert!(voter.pass(std::slice::from_ref(&ident)).await.is_empty());
        if cast.len() == 1 && !second_checked && cast[0].0 == layer {
            // A second coordinator (or this one restarted) in the same layer: the node holds the
            // identity's ballot for it, so nothing is built or signed again.
            let mut other = Voter::new(env.store.clone(), env.keystore.clone(), env.devnet.clone());
            let out = other.pass(std::slice::from_ref(&ident)).await;
            assert!(
                matches!(
                    out.as_slice(),
                    [(_, Ok(Vote::Cast { layer: l, duplicate: true, .. }))] if *l == layer
                ),
                "{out:?}"
            );
            // A different ballot for that layer (another view of the node: here, one naming the
            // reference ballot that now exists) gets no permit: nothing can be signed.
            let reference = env.devnet.reference_ballot(&ident.node_id, 2).expect("reference");
            let eligibility = env.devnet.eligibility(&ident.node_id, 2).expect("e").expect("e");
            let other_view = node_bridge::ballot::Ballot {
                layer,
                atx_id: eligibility.atx,
                opinion_hash: [0; 32],
                epoch_data: None,
                ref_ballot: reference,
                eligibility_proofs: Vec::new(),
                smesher_id: ident.node_id,
                signature: [0; 64],
            };
            assert!(matches!(
                env.store
                    .grant_ballot_signature(node_id, layer, &other_view.signed_bytes(), 0)
                    .await
                    .expect("safety"),
                BallotSigning::Refused {
                    reason: NotSafeReason::DoubleBallot { layer: l },
                    ..
                } if l == layer
            ));
            second_checked = true;
        }
    }
    assert!(second_checked, "the identity had no eligible layer in epoch 2");
    let eligibility = env
        .devnet
        .eligibility(&ident.node_id, 2)
        .expect("eligibility")
        .expect("in the active set");
    assert_eq!(
        cast.iter().map(|(_, p)| *p as u32).sum::<u32>(),
        eligibility.slots,
        "every slot's proof went into a ballot"
    );
    assert_eq!(
        eligibility.layers,
        cast.iter().map(|(l, p)| (*l, *p as u32)).collect::<Vec<_>>(),
        "the node accepted every ballot"
    );
    assert!(env
        .devnet
        .malfeasance(&ident.node_id)
        .expect("malfeasance")
        .is_none());
    // Paid in exactly those layers once the epoch is over.
    env.devnet
        .advance(params.genesis_ms + u64::from(first_layer + lpe) * layer_ms + 100)
        .expect("advance");
    let coinbase = Address::parse(ident.coinbase.as_deref().expect("coinbase")).expect("address");
    let paid: Vec<u32> = env
        .devnet
        .rewards_of(&coinbase, 0)
        .expect("rewards")
        .iter()
        .map(|r| r.layer)
        .collect();
    assert_eq!(paid, cast.iter().map(|(l, _)| *l).collect::<Vec<_>>());
}
