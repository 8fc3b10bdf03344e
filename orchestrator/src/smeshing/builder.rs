//! The four steps of one ATX-building cycle (see the module documentation).

use std::time::{Duration, UNIX_EPOCH};

use node_bridge::atx::{
    atx_id, poet_challenge, verify_atx_signature, ActivationTxV1, AtxId, Coinbase, Hash32,
    InnerActivationTxV1, MerkleProof, NIPost, NIPostChallengeV1, Post, PostMetadata, Scale,
};
use node_bridge::bridge::{
    AtxInfo, AtxSubmission, BridgeError, NodeBridge, PoetId, PoetInfo, PoetRegistered,
};
use node_bridge::clock::{BuilderTimeline, Clock};
use node_bridge::poet::server::Registration;
use node_bridge::poet::verify_membership;

use super::error::{PoetFailure, SmeshingError};
use crate::keystore::{atx_v1_message, Domain, Keystore, NodeId};
use crate::store::{AtxSigning, PoetRegistrationOutcome, Store};

/// What the builder needs to know about an identity beyond what the node knows.
#[derive(Debug, Clone)]
pub struct IdentityParams {
    pub node_id: NodeId,
    /// The commitment ATX its PoST data was initialised with (used by the initial ATX only).
    pub commitment_atx: AtxId,
    /// The PoST over the all-zero challenge; required while the identity has no ATX.
    pub initial_post: Option<Post>,
    /// The round schedule of the PoETs it registers with; `None`: the node clock's.
    pub poet_schedule: Option<PoetSchedule>,
}

/// The round schedule of a PoET (spec/devnet.md §1.2): PoETs with the same one form a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoetSchedule {
    pub phase_shift_ms: u64,
    pub cycle_gap_ms: u64,
}

impl PoetSchedule {
    pub fn of(poet: &PoetInfo) -> Self {
        PoetSchedule {
            phase_shift_ms: poet.phase_shift_ms,
            cycle_gap_ms: poet.cycle_gap_ms,
        }
    }
}

/// The challenge of one cycle, ready to register with the PoETs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedChallenge {
    pub node_id: NodeId,
    /// The cycle's schedule; `timeline.publish_epoch == challenge.publish_epoch`.
    pub timeline: BuilderTimeline,
    /// The identity's previous ATX as the node had it (`None`: this is the initial ATX).
    pub previous: Option<AtxInfo>,
    pub challenge: NIPostChallengeV1,
    /// `blake3(0x00 ‖ SCALE(challenge))`: what the PoETs register.
    pub challenge_hash: Hash32,
}

impl PreparedChallenge {
    pub fn publish_epoch(&self) -> u32 {
        self.challenge.publish_epoch
    }

    pub fn is_initial(&self) -> bool {
        self.previous.is_none()
    }
}

/// One PoET's answer to a registration.
#[derive(Debug)]
pub struct PoetRegistrationResult {
    pub poet: PoetId,
    pub result: Result<PoetRegistered, BridgeError>,
}

/// The best PoET proof of a cycle and the identity's membership in it.
#[derive(Debug)]
pub struct BestPoetProof {
    pub poet: PoetId,
    pub round: u64,
    /// `PoetProofRef`: the challenge of the NIPoST's PoST.
    pub proof_ref: Hash32,
    pub statement: Hash32,
    pub leaf_count: u64,
    /// The identity's PoET challenge this proof is for.
    pub challenge_hash: Hash32,
    pub membership: MerkleProof,
    /// Registered PoETs whose proofs were not usable, and why.
    pub skipped: Vec<PoetFailure>,
}

/// What the caller adds to the challenge and the PoET proof to make the ATX.
#[derive(Debug, Clone)]
pub struct AtxInputs {
    pub coinbase: Coinbase,
    pub num_units: u32,
    /// The PoST over [`BestPoetProof::proof_ref`].
    pub post: Post,
    pub labels_per_unit: u64,
    /// Required for an initial ATX; otherwise only when it changed.
    pub vrf_nonce: Option<u64>,
}

/// A signed ATX and the node's answer to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub atx_id: AtxId,
    pub atx: ActivationTxV1,
    pub submission: AtxSubmission,
}

/// Step 1: the cycle's timeline, positioning ATX, previous ATX, challenge and challenge hash at
/// `now_ms` (spec/devnet.md §2.7). A registration window already closed at `now_ms` moves the
/// identity to the next round (the timeline says which).
pub fn prepare_challenge<B: NodeBridge + ?Sized>(
    bridge: &B,
    identity: &IdentityParams,
    now_ms: u64,
) -> Result<PreparedChallenge, SmeshingError> {
    let node_id = identity.node_id;
    let query = |step: &'static str| {
        move |source: BridgeError| SmeshingError::NodeQuery {
            node_id,
            step,
            source: Box::new(source),
        }
    };
    let mut params = bridge.clock_params().map_err(query("clock parameters"))?;
    if let Some(p) = identity.poet_schedule {
        params = params.with_poet_schedule(p.phase_shift_ms, p.cycle_gap_ms);
    }
    let clock = Clock::new(params).map_err(|source| SmeshingError::ClockParams { node_id, source })?;
    let previous = bridge
        .previous_atx(node_id.as_bytes())
        .map_err(query("previous ATX"))?;
    let timeline = clock
        .builder_timeline(now_ms, previous.as_ref().map(|p| p.publish_epoch))
        .map_err(|source| SmeshingError::Timeline { node_id, source })?;
    let publish_epoch = timeline.publish_epoch;
    let positioning_atx_id = bridge
        .positioning_atx(publish_epoch, previous.as_ref().map(|p| &p.id))
        .map_err(SmeshingError::node(node_id, publish_epoch, "positioning ATX"))?;
    let challenge = match &previous {
        None => {
            let initial_post = identity
                .initial_post
                .clone()
                .ok_or(SmeshingError::MissingInitialPost {
                    node_id,
                    publish_epoch,
                })?;
            NIPostChallengeV1 {
                publish_epoch,
                sequence: 0,
                prev_atx_id: [0; 32],
                positioning_atx_id,
                commitment_atx_id: Some(identity.commitment_atx),
                initial_post: Some(initial_post),
            }
        }
        Some(prev) => NIPostChallengeV1 {
            publish_epoch,
            sequence: prev
                .sequence
                .checked_add(1)
                .ok_or(SmeshingError::SequenceOverflow {
                    node_id,
                    publish_epoch,
                })?,
            prev_atx_id: prev.id,
            positioning_atx_id,
            commitment_atx_id: None,
            initial_post: None,
        },
    };
    let challenge_hash = poet_challenge(&challenge);
    Ok(PreparedChallenge {
        node_id,
        timeline,
        previous,
        challenge,
        challenge_hash,
    })
}

/// Step 1, durable (spec/node.md §2.7: a node restarting mid-cycle must not rebuild its NIPoST
/// challenge): [`prepare_challenge`], then the challenge is stored for the identity and publish
/// epoch unless one is stored already. The first challenge stored for an epoch is the one
/// returned, on every later call and after a restart, even when a fresh build would differ
/// (another positioning ATX, another initial PoST); only the timeline and the node's previous ATX
/// come from the fresh build.
///
/// A stored challenge that does not decode, does not hash to its stored hash, or names a previous
/// ATX other than the node's is [`SmeshingError::StoredChallengeInvalid`]; the store failing is
/// [`SmeshingError::Store`].
pub async fn prepare_challenge_durable<B: NodeBridge + ?Sized>(
    bridge: &B,
    store: &Store,
    identity: &IdentityParams,
    now_ms: u64,
) -> Result<PreparedChallenge, SmeshingError> {
    let fresh = prepare_challenge(bridge, identity, now_ms)?;
    let node_id = fresh.node_id;
    let publish_epoch = fresh.publish_epoch();
    let bytes = fresh.challenge.to_bytes();
    let (stored_bytes, stored_hash) = store
        .save_prepared_challenge(
            node_id.as_bytes(),
            publish_epoch,
            &bytes,
            &fresh.challenge_hash,
            i64::try_from(now_ms).unwrap_or(i64::MAX),
        )
        .await
        .map_err(SmeshingError::store(
            node_id,
            publish_epoch,
            "save prepared challenge",
        ))?;
    if stored_bytes == bytes && stored_hash == fresh.challenge_hash {
        return Ok(fresh);
    }
    let invalid = |reason: String| SmeshingError::StoredChallengeInvalid {
        node_id,
        publish_epoch,
        reason,
    };
    let challenge = NIPostChallengeV1::from_bytes(&stored_bytes)
        .map_err(|e| invalid(format!("it does not decode: {e}")))?;
    if poet_challenge(&challenge) != stored_hash {
        return Err(invalid(
            "it does not hash to its stored challenge hash".to_owned(),
        ));
    }
    if challenge.publish_epoch != publish_epoch {
        return Err(invalid(format!(
            "it is for publish epoch {}",
            challenge.publish_epoch
        )));
    }
    let previous = if challenge.prev_atx_id == [0; 32] {
        None
    } else {
        match fresh.previous {
            Some(p) if p.id == challenge.prev_atx_id => Some(p),
            other => {
                return Err(invalid(format!(
                    "it names previous ATX {}, the node has {}",
                    hex::encode(challenge.prev_atx_id),
                    other.map_or_else(|| "none".to_owned(), |p| hex::encode(p.id))
                )))
            }
        }
    };
    tracing::info!(%node_id, publish_epoch, challenge = %hex::encode(stored_hash), "using the challenge prepared earlier");
    Ok(PreparedChallenge {
        node_id,
        timeline: fresh.timeline,
        previous,
        challenge,
        challenge_hash: stored_hash,
    })
}

/// Step 2: signs one PoET registration of `challenge_hash` (PoET domain, the node's genesis id)
/// and sends it to the PoETs of the cycle's phase: with a `timeline`, those whose round
/// `timeline.poet_round` starts at `timeline.registration_deadline_ms`, with the timeline's
/// `proof_deadline_ms` as the registration's deadline; without one, every PoET the node lists.
/// The per-PoET results come back in the node's order; one PoET refusing does not stop the
/// others. Errors only when nothing could be sent at all.
pub fn register<B: NodeBridge + ?Sized>(
    bridge: &B,
    keystore: &Keystore,
    node_id: NodeId,
    publish_epoch: u32,
    challenge_hash: Hash32,
    timeline: Option<&BuilderTimeline>,
) -> Result<Vec<PoetRegistrationResult>, SmeshingError> {
    let node = |step: &'static str| SmeshingError::node(node_id, publish_epoch, step);
    let genesis = bridge.genesis().map_err(node("genesis"))?;
    let poets: Vec<PoetInfo> = bridge
        .poets()
        .map_err(node("PoET list"))?
        .into_iter()
        .filter(|p| {
            timeline
                .is_none_or(|t| p.round_start_ms(u64::from(t.poet_round)) == Some(t.registration_deadline_ms))
        })
        .collect();
    let deadline_ms = timeline.map(|t| t.proof_deadline_ms);
    if poets.is_empty() {
        return Err(SmeshingError::NoPoets {
            node_id,
            publish_epoch,
        });
    }
    let signature = keystore
        .sign(&node_id, Domain::Poet, &genesis.genesis_id, &challenge_hash)
        .map_err(|source| SmeshingError::Sign {
            node_id,
            publish_epoch,
            what: "PoET registration",
            source: Box::new(source),
        })?;
    let registration = Registration {
        node_id: node_id.to_bytes(),
        challenge: challenge_hash,
        signature,
        deadline: deadline_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
    };
    let results = poets
        .into_iter()
        .map(|p| {
            let result = bridge.poet_register(&p.id, &registration);
            match &result {
                Ok(r) => tracing::info!(%node_id, publish_epoch, poet = %p.id, round = r.round, "registered with PoET"),
                Err(e) => tracing::warn!(%node_id, publish_epoch, poet = %p.id, error = %e, "PoET registration failed"),
            }
            PoetRegistrationResult { poet: p.id, result }
        })
        .collect();
    Ok(results)
}

/// Step 2, recorded: [`register`], then every PoET's answer is stored
/// ([`Store::record_poet_registration`]; an accepted registration is never replaced by a later
/// failure), so that a restarted coordinator knows which rounds hold the identity's challenge.
/// The store failing is [`SmeshingError::Store`] (the registrations were sent; registering the
/// same challenge again is harmless).
pub async fn register_durable<B: NodeBridge + ?Sized>(
    bridge: &B,
    store: &Store,
    keystore: &Keystore,
    node_id: NodeId,
    publish_epoch: u32,
    challenge_hash: Hash32,
    timeline: Option<&BuilderTimeline>,
) -> Result<Vec<PoetRegistrationResult>, SmeshingError> {
    let results = register(bridge, keystore, node_id, publish_epoch, challenge_hash, timeline)?;
    let at = crate::reconcile::now_ms();
    for r in &results {
        let outcome = match &r.result {
            Ok(ok) => PoetRegistrationOutcome::Accepted {
                round: ok.round,
                round_end_ms: ok.round_end_ms,
            },
            Err(e) => PoetRegistrationOutcome::Failed { error: e.to_string() },
        };
        store
            .record_poet_registration(node_id.as_bytes(), publish_epoch, &r.poet.0, &outcome, at)
            .await
            .map_err(SmeshingError::store(
                node_id,
                publish_epoch,
                "record PoET registration",
            ))?;
    }
    Ok(results)
}

/// Step 3: the proof with the largest leaf count (the first PoET wins a tie) among the PoETs that
/// accepted the registration, with the identity's membership proof, checked against the round's
/// statement (spec/devnet.md §1.8–1.9).
///
/// While a registered round has not ended (by the node's clock) this is
/// [`SmeshingError::RoundNotEnded`], so the best proof is never chosen early. A PoET that failed,
/// has no proof after its round ended, or whose round does not hold the challenge is skipped
/// and listed in [`BestPoetProof::skipped`].
pub fn best_poet_proof<B: NodeBridge + ?Sized>(
    bridge: &B,
    node_id: NodeId,
    publish_epoch: u32,
    challenge_hash: &Hash32,
    registrations: &[PoetRegistrationResult],
) -> Result<BestPoetProof, SmeshingError> {
    let registered: Vec<(&PoetId, &PoetRegistered)> = registrations
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|ok| (&r.poet, ok)))
        .collect();
    if registered.is_empty() {
        return Err(SmeshingError::NotRegistered {
            node_id,
            publish_epoch,
        });
    }
    let now_ms = bridge
        .now()
        .map_err(SmeshingError::node(node_id, publish_epoch, "node time"))?
        .now_ms;
    let mut skipped = Vec::new();
    let mut best: Option<(node_bridge::bridge::PoetRound, MerkleProof)> = None;
    for (poet, reg) in registered {
        let round = match bridge.poet_round(poet, reg.round) {
            Ok(Some(round)) => round,
            Ok(None) if now_ms < reg.round_end_ms => {
                return Err(SmeshingError::RoundNotEnded {
                    node_id,
                    publish_epoch,
                    poet: poet.clone(),
                    round: reg.round,
                    round_end_ms: reg.round_end_ms,
                });
            }
            Ok(None) => {
                skipped.push(PoetFailure::NoProof {
                    poet: poet.clone(),
                    round: reg.round,
                    round_end_ms: reg.round_end_ms,
                });
                continue;
            }
            Err(source) => {
                skipped.push(PoetFailure::Fetch {
                    poet: poet.clone(),
                    round: reg.round,
                    source,
                });
                continue;
            }
        };
        let Some(membership) = round.membership(challenge_hash) else {
            skipped.push(PoetFailure::NotAMember {
                poet: poet.clone(),
                round: reg.round,
            });
            continue;
        };
        if !verify_membership(
            challenge_hash,
            membership.leaf_index,
            &membership.nodes,
            &round.statement,
        ) {
            skipped.push(PoetFailure::MembershipInvalid {
                poet: poet.clone(),
                round: reg.round,
            });
            continue;
        }
        if best.as_ref().is_none_or(|(b, _)| round.leaf_count > b.leaf_count) {
            best = Some((round, membership));
        }
    }
    let Some((round, membership)) = best else {
        return Err(SmeshingError::NoPoetProof {
            node_id,
            publish_epoch,
            failures: skipped,
        });
    };
    tracing::info!(%node_id, publish_epoch, poet = %round.poet, leaf_count = round.leaf_count, "best PoET proof");
    Ok(BestPoetProof {
        poet: round.poet,
        round: round.round,
        proof_ref: round.proof_ref,
        statement: round.statement,
        leaf_count: round.leaf_count,
        challenge_hash: *challenge_hash,
        membership,
        skipped,
    })
}

/// Step 5: builds the ATX of `prepared` over `poet` and the caller's PoST, asks the safety
/// database, signs with its permit, submits, and returns the node's answer (an ATX the node
/// rejects is an `Ok` with [`AtxSubmission::Rejected`]: it was signed and recorded).
///
/// Refused before anything is recorded or signed: inputs that do not match (`InvalidInput`),
/// before the publish epoch (`TooEarly`) or after it (`Expired`). Refused by the safety database,
/// nothing signed and nothing sent: [`SmeshingError::NotSafe`].
pub async fn publish<B: NodeBridge + ?Sized>(
    bridge: &B,
    store: &Store,
    keystore: &Keystore,
    prepared: &PreparedChallenge,
    poet: &BestPoetProof,
    inputs: AtxInputs,
) -> Result<Published, SmeshingError> {
    let node_id = prepared.node_id;
    let publish_epoch = prepared.publish_epoch();
    let invalid = |reason: &'static str| SmeshingError::InvalidInput {
        node_id,
        publish_epoch,
        reason,
    };
    if poet.challenge_hash != prepared.challenge_hash
        || poet_challenge(&prepared.challenge) != prepared.challenge_hash
    {
        return Err(invalid("the PoET proof is for another challenge"));
    }
    if prepared.is_initial() && inputs.vrf_nonce.is_none() {
        return Err(invalid("an initial ATX needs a VRF nonce"));
    }
    if inputs.num_units == 0 {
        return Err(invalid("an ATX needs at least one space unit"));
    }
    let node = |step: &'static str| SmeshingError::node(node_id, publish_epoch, step);
    let now_ms = bridge.now().map_err(node("node time"))?.now_ms;
    if now_ms < prepared.timeline.publish_not_before_ms {
        return Err(SmeshingError::TooEarly {
            node_id,
            publish_epoch,
            now_ms,
            not_before_ms: prepared.timeline.publish_not_before_ms,
        });
    }
    if prepared.timeline.expired(now_ms) {
        return Err(SmeshingError::Expired {
            node_id,
            publish_epoch,
            now_ms,
            deadline_ms: prepared.timeline.publish_deadline_ms,
        });
    }
    let genesis = bridge.genesis().map_err(node("genesis"))?;

    let inner = InnerActivationTxV1 {
        challenge: prepared.challenge.clone(),
        coinbase: inputs.coinbase,
        num_units: inputs.num_units,
        nipost: Some(NIPost {
            membership: poet.membership.clone(),
            post: Some(inputs.post),
            post_metadata: Some(PostMetadata {
                challenge: poet.proof_ref,
                labels_per_unit: inputs.labels_per_unit,
            }),
        }),
        node_id: prepared.is_initial().then_some(node_id.to_bytes()),
        vrf_nonce: inputs.vrf_nonce,
    };
    let id = atx_id(&inner);
    let message = atx_v1_message(publish_epoch, &id);
    let prev = (!prepared.is_initial()).then_some(prepared.challenge.prev_atx_id);
    let recorded_at = crate::reconcile::now_ms();
    let permit = match store
        .grant_atx_signature(node_id, publish_epoch, &id, prev.as_ref(), &message, recorded_at)
        .await
        .map_err(|source| SmeshingError::SafetyDatabase {
            node_id,
            publish_epoch,
            source: Box::new(source),
        })? {
        AtxSigning::Permitted(permit) => permit,
        AtxSigning::Refused { reason, .. } => {
            tracing::warn!(%node_id, publish_epoch, atx = %hex::encode(id), %reason, "safety database refused the ATX; not signed");
            return Err(SmeshingError::NotSafe {
                node_id,
                publish_epoch,
                atx_id: id,
                reason,
            });
        }
    };
    let signature = keystore
        .sign_atx(permit, &genesis.genesis_id, &message)
        .map_err(|source| SmeshingError::Sign {
            node_id,
            publish_epoch,
            what: "ATX",
            source: Box::new(source),
        })?;
    let atx = ActivationTxV1 {
        inner,
        smesher_id: node_id.to_bytes(),
        signature,
    };
    if !verify_atx_signature(&genesis.genesis_id, &atx) {
        return Err(SmeshingError::SignatureInvalid {
            node_id,
            publish_epoch,
            atx_id: id,
        });
    }
    let submission = bridge.submit_atx(&atx).map_err(node("submit ATX"))?;
    match &submission {
        AtxSubmission::Accepted { atx: info, .. } => {
            tracing::info!(%node_id, publish_epoch, atx = %hex::encode(id), weight = info.weight, "ATX accepted")
        }
        AtxSubmission::Rejected { reason, .. } => {
            tracing::warn!(%node_id, publish_epoch, atx = %hex::encode(id), %reason, "ATX rejected by the node")
        }
    }
    Ok(Published {
        atx_id: id,
        atx,
        submission,
    })
}
