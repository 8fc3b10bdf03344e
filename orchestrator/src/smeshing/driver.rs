//! The smeshing driver: every initialized identity through the ATX cycle against the node, pass
//! after pass (spec/devnet.md §2.7). A pass looks at each identity once and does the next step that
//! is due; whatever it learns that must survive a restart is in the store (the prepared challenge,
//! each PoET's answer, the proving request and its verified proof, the safety database), so a
//! restarted coordinator picks a cycle up where it was:
//!
//! 1. the initial PoST (over the all-zero challenge), once, as a proving request for publish
//!    epoch 0 (no ATX is published in epoch 0);
//! 2. at the cycle's registration time: the challenge ([`prepare_challenge_durable`]) and the PoET
//!    registrations ([`register_durable`]); a window missed moves the identity to the next round;
//! 3. once the round has ended: the best PoET proof, and a proving request over its reference,
//!    which the reconcile loop turns into k2pow and proving jobs on the fleet;
//! 4. once the proof is verified and the publish epoch has begun: [`publish`] through the safety
//!    database;
//! 5. in every layer where an identity's ATX makes it eligible: a ballot ([`Voter`]), signed
//!    through the safety database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use node_bridge::atx::{poet_challenge, Coinbase, NIPostChallengeV1, Post, Scale};
use node_bridge::bridge::{AtxInfo, AtxSubmission, NodeBridge, PoetId, PoetRegistered};
use node_bridge::clock::Clock;
use node_bridge::vm::Address;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use super::ballots::Voter;
use super::builder::{
    best_poet_proof, prepare_challenge_durable, publish, register_durable, AtxInputs, BestPoetProof,
    IdentityParams, PoetRegistrationResult, PoetSchedule, PreparedChallenge,
};
use super::error::SmeshingError;
use super::phase::{assign_phases, next_cycle, poet_schedules, proving_loads};
use super::step::Step;
use crate::keystore::{Keystore, NodeId};
use crate::store::{
    Identity, IdentityState, NewProvingRequest, PoetRegistrationOutcome, ProvingRequestState, Store,
    StoreError,
};

/// The publish epoch the initial PoST's proving request is filed under: no ATX is published in
/// epoch 0, so it never meets a cycle's request.
pub const INITIAL_POST_EPOCH: u32 = 0;

/// How long the fleet has for the initial PoST.
const INITIAL_POST_DEADLINE_MS: i64 = 24 * 3600 * 1000;

/// What [`Driver::advance`] needs to know about the identity at this pass.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    ident: &'a Identity,
    node_id: NodeId,
    coinbase: Coinbase,
    now: u64,
}

/// One identity's cycle in progress.
struct Cycle {
    prepared: PreparedChallenge,
    registrations: Vec<PoetRegistrationResult>,
    best: Option<BestPoetProof>,
}

impl Cycle {
    fn accepted(&self) -> usize {
        self.registrations.iter().filter(|r| r.result.is_ok()).count()
    }
}

/// Drives the identities' ATX cycles; see the module documentation.
pub struct Driver {
    store: Store,
    keystore: Arc<Keystore>,
    node: Arc<dyn NodeBridge>,
    /// Woken when a proving request is filed (the reconcile loop plans its jobs at once).
    wake: Arc<Notify>,
    cycles: HashMap<Uuid, Cycle>,
    /// Identities waiting for a known instant (node time): not looked at again before it, so a
    /// pass over a large fleet costs only the identities with something to do.
    due: HashMap<Uuid, u64>,
    /// The latest step of each identity, for the terminal and the dashboard.
    status: Arc<Mutex<HashMap<Uuid, Step>>>,
    /// PoET phases (phase shift, ms) placed or changed since the identities were last read.
    phases: HashMap<Uuid, u64>,
    /// Eligibility proofs and ballots.
    voter: Voter,
}

impl Driver {
    pub fn new(store: Store, keystore: Arc<Keystore>, node: Arc<dyn NodeBridge>, wake: Arc<Notify>) -> Self {
        Driver {
            voter: Voter::new(store.clone(), keystore.clone(), node.clone()),
            store,
            keystore,
            node,
            wake,
            cycles: HashMap::new(),
            due: HashMap::new(),
            status: Arc::default(),
            phases: HashMap::new(),
        }
    }

    /// The latest step of every identity the driver looked at.
    pub fn status_handle(&self) -> Arc<Mutex<HashMap<Uuid, Step>>> {
        self.status.clone()
    }

    /// Passes every `every` until `shutdown` turns true.
    pub async fn run(mut self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
            match self.pass().await {
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "smeshing pass failed; retrying"),
            }
        }
    }

    /// One pass over every identity: the step each one is at (an identity whose step failed is
    /// logged and retried next pass).
    pub async fn pass(&mut self) -> Result<Vec<(Uuid, Step)>, StoreError> {
        let identities = self.store.list_identities().await?;
        let now = self.node.now().map_or(0, |t| t.now_ms);
        let mut out = Vec::with_capacity(identities.len());
        for ident in &identities {
            if self.due.get(&ident.id).is_some_and(|&t| now < t) {
                let cached = self
                    .status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&ident.id)
                    .cloned();
                if let Some(step) = cached {
                    out.push((ident.id, step));
                    continue;
                }
            }
            match self.drive(ident).await {
                Ok(step) => {
                    match step {
                        Step::WaitingToRegister {
                            register_at_ms: t, ..
                        }
                        | Step::WaitingForRound { round_end_ms: t, .. }
                        | Step::WaitingToPublish { not_before_ms: t, .. } => self.due.insert(ident.id, t),
                        _ => self.due.remove(&ident.id),
                    };
                    let changed = {
                        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
                        status.insert(ident.id, step.clone()).as_ref() != Some(&step)
                    };
                    if changed {
                        tracing::info!(identity = %ident.name, step = %step, "smeshing");
                    }
                    out.push((ident.id, step));
                }
                Err(e) => {
                    tracing::warn!(identity = %ident.name, error = %e, "smeshing step failed; retrying")
                }
            }
        }
        self.voter.pass(&identities).await;
        let present: std::collections::HashSet<Uuid> = identities.iter().map(|i| i.id).collect();
        self.cycles.retain(|id, _| present.contains(id));
        self.due.retain(|id, _| present.contains(id));
        self.phases.retain(|id, _| present.contains(id));
        Ok(out)
    }

    /// The next due step of one identity.
    pub async fn drive(&mut self, ident: &Identity) -> Result<Step, SmeshingError> {
        let node_id = NodeId::from_bytes(ident.node_id);
        if !ident.state.is_initialized() {
            return Ok(Step::NotReady(format!("{}", ident.state)));
        }
        let Some(commitment_atx) = ident.commitment_atx_id else {
            return Ok(Step::NotReady("no commitment ATX".into()));
        };
        let Some(coinbase) = ident
            .coinbase
            .as_deref()
            .and_then(|c| Address::parse(c.trim()).ok().map(|a| a.0))
        else {
            return Ok(Step::NotReady(match &ident.coinbase {
                None => "no coinbase".into(),
                Some(c) => format!("coinbase {c:?} is not an address"),
            }));
        };
        let node = self.node.clone();
        let query = |step: &'static str| {
            move |source| SmeshingError::NodeQuery {
                node_id,
                step,
                source: Box::new(source),
            }
        };
        let now = node.now().map_err(query("node time"))?.now_ms;
        let params = node.clock_params().map_err(query("clock parameters"))?;
        let schedules = poet_schedules(&params, &node.poets().map_err(query("PoET list"))?);
        let assigned = self.phase_of(ident, &schedules).await?;
        let clock = Clock::new(assigned.map_or(params, |s| {
            params.with_poet_schedule(s.phase_shift_ms, s.cycle_gap_ms)
        }))
        .map_err(|source| SmeshingError::ClockParams { node_id, source })?;
        let previous = node.previous_atx(&ident.node_id).map_err(query("previous ATX"))?;

        // A cycle is over once its ATX is the node's latest, or its publish epoch has ended.
        if let Some(c) = self.cycles.get(&ident.id) {
            let epoch = c.prepared.publish_epoch();
            if previous.is_some_and(|p| p.publish_epoch >= epoch) || c.prepared.timeline.expired(now) {
                self.cycles.remove(&ident.id);
            }
        }
        if !self.cycles.contains_key(&ident.id) {
            if let Some(c) = self.recover(node_id, &clock, previous.as_ref(), now).await? {
                self.cycles.insert(ident.id, c);
            }
        }
        if !self.cycles.contains_key(&ident.id) {
            let initial_post = match previous {
                Some(_) => None,
                None => match self.initial_post(ident).await? {
                    Some(post) => Some(post),
                    None => return Ok(Step::WaitingForInitialPost),
                },
            };
            let (schedule, timeline) =
                next_cycle(&clock, &params, &schedules, assigned, now, previous.as_ref())
                    .map_err(|source| SmeshingError::Timeline { node_id, source })?;
            if now < timeline.register_at_ms {
                return Ok(Step::WaitingToRegister {
                    publish_epoch: timeline.publish_epoch,
                    register_at_ms: timeline.register_at_ms,
                });
            }
            if let Some(s) = schedule.filter(|s| Some(*s) != assigned) {
                // Its own phase's round has started: the next phase's round is this cycle's, and
                // from now on the identity's phase (going back would cost an epoch).
                self.record_phase(ident.id, s.phase_shift_ms)
                    .await
                    .map_err(SmeshingError::store(
                        node_id,
                        timeline.publish_epoch,
                        "set PoET phase",
                    ))?;
                tracing::info!(
                    identity = %ident.name,
                    from_ms = assigned.map(|a| a.phase_shift_ms),
                    to_ms = s.phase_shift_ms,
                    publish_epoch = timeline.publish_epoch,
                    "registering in another PoET phase: its own phase's round has started"
                );
            }
            let params = IdentityParams {
                node_id,
                commitment_atx,
                initial_post,
                poet_schedule: schedule,
            };
            let prepared = match prepare_challenge_durable(node.as_ref(), &self.store, &params, now).await {
                Ok(p) => p,
                // The epoch's stored challenge no longer fits the node (it names a previous ATX
                // the node does not have: a devnet chain that started again, say). A challenge is
                // never built twice for an epoch: this one is skipped, the next cycle starts fresh.
                Err(e @ SmeshingError::StoredChallengeInvalid { publish_epoch, .. }) => {
                    return Ok(Step::Abandoned {
                        publish_epoch,
                        reason: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            };
            self.cycles.insert(
                ident.id,
                Cycle {
                    prepared,
                    registrations: Vec::new(),
                    best: None,
                },
            );
        }
        let Some(mut cycle) = self.cycles.remove(&ident.id) else {
            return Ok(Step::NotReady("no cycle".into()));
        };
        let ctx = Ctx {
            ident,
            node_id,
            coinbase,
            now,
        };
        match self.advance(&ctx, &mut cycle).await {
            Ok((step, done)) => {
                if !done {
                    self.cycles.insert(ident.id, cycle);
                }
                Ok(step)
            }
            Err(e) => {
                self.cycles.insert(ident.id, cycle);
                Err(e)
            }
        }
    }

    /// The next step of a cycle in progress, and whether the cycle is over.
    async fn advance(&self, ctx: &Ctx<'_>, cycle: &mut Cycle) -> Result<(Step, bool), SmeshingError> {
        let Ctx {
            ident,
            node_id,
            coinbase,
            now,
        } = *ctx;
        let node = self.node.clone();
        let epoch = cycle.prepared.publish_epoch();
        let timeline = cycle.prepared.timeline;

        // Register (again, while no PoET accepted and the window is open).
        if cycle.accepted() == 0 {
            if timeline.registration_missed(now) {
                return Ok((Step::RegistrationMissed { publish_epoch: epoch }, true));
            }
            cycle.registrations = register_durable(
                node.as_ref(),
                &self.store,
                &self.keystore,
                node_id,
                epoch,
                cycle.prepared.challenge_hash,
                Some(&timeline),
            )
            .await?;
            let accepted = cycle.accepted();
            if accepted > 0 {
                self.set_state(ident, IdentityState::WaitingForChallenge).await;
            }
            return Ok((
                Step::Registered {
                    publish_epoch: epoch,
                    accepted,
                },
                false,
            ));
        }

        // The best PoET proof, once the round has ended; then the fleet proves over it.
        let mut requested = false;
        if cycle.best.is_none() {
            let best = match best_poet_proof(
                node.as_ref(),
                node_id,
                epoch,
                &cycle.prepared.challenge_hash,
                &cycle.registrations,
            ) {
                Ok(best) => best,
                Err(SmeshingError::RoundNotEnded { round_end_ms, .. }) => {
                    let step = Step::WaitingForRound {
                        publish_epoch: epoch,
                        round_end_ms,
                    };
                    return Ok((step, false));
                }
                Err(e @ SmeshingError::NoPoetProof { .. }) if timeline.proof_expired(now) => {
                    let step = Step::Abandoned {
                        publish_epoch: epoch,
                        reason: e.to_string(),
                    };
                    return Ok((step, true));
                }
                Err(e) => return Err(e),
            };
            let wall = crate::reconcile::now_ms();
            let left = i64::try_from(timeline.publish_deadline_ms.saturating_sub(now)).unwrap_or(i64::MAX);
            let request = NewProvingRequest {
                identity_id: ident.id,
                publish_epoch: epoch,
                challenge: best.proof_ref,
                known_at: wall,
                deadline: wall.saturating_add(left.max(1)),
            };
            requested = self.file_request(node_id, &request).await?;
            cycle.best = Some(best);
        }
        let Some(best) = cycle.best.as_ref() else {
            return Ok((Step::WaitingForProof { publish_epoch: epoch }, false));
        };

        // The verified proof, then the ATX.
        let store_err = |step| SmeshingError::store(node_id, epoch, step);
        let proofs = self
            .store
            .list_proofs(ident.id)
            .await
            .map_err(store_err("list proofs"))?;
        let Some(proof) = proofs
            .iter()
            .find(|p| p.publish_epoch == epoch && p.challenge == best.proof_ref)
        else {
            let request = self
                .store
                .get_proving_request(ident.id, epoch)
                .await
                .map_err(store_err("get proving request"))?;
            if request.state == ProvingRequestState::Failed {
                let reason = request
                    .failure
                    .unwrap_or_else(|| "the proving request failed".into());
                let step = Step::Abandoned {
                    publish_epoch: epoch,
                    reason,
                };
                return Ok((step, true));
            }
            let step = if requested {
                Step::ProvingRequested { publish_epoch: epoch }
            } else {
                Step::WaitingForProof { publish_epoch: epoch }
            };
            return Ok((step, false));
        };
        if now < timeline.publish_not_before_ms {
            let step = Step::WaitingToPublish {
                publish_epoch: epoch,
                not_before_ms: timeline.publish_not_before_ms,
            };
            return Ok((step, false));
        }
        let post: post::proof::Proof =
            serde_json::from_value(proof.proof.clone()).map_err(|e| SmeshingError::InvalidInput {
                node_id,
                publish_epoch: epoch,
                reason: if e.is_data() {
                    "the stored proof does not decode"
                } else {
                    "the stored proof is not a proof"
                },
            })?;
        let inputs = AtxInputs {
            coinbase,
            num_units: ident.num_units,
            post: Post::from_proof(&post),
            labels_per_unit: ident.labels_per_unit,
            vrf_nonce: if cycle.prepared.is_initial() {
                match ident.vrf_nonce {
                    Some(n) => Some(n),
                    None => {
                        let step = Step::NotReady("no VRF nonce: the data has no qualifying label".into());
                        return Ok((step, false));
                    }
                }
            } else {
                None
            },
        };
        let result = publish(
            node.as_ref(),
            &self.store,
            &self.keystore,
            &cycle.prepared,
            best,
            inputs,
        )
        .await;
        let step = match result {
            Ok(published) => {
                let (accepted, reason) = match &published.submission {
                    AtxSubmission::Accepted { .. } => (true, None),
                    AtxSubmission::Rejected { reason, .. } => (false, Some(reason.to_string())),
                };
                if accepted {
                    self.set_state(ident, IdentityState::Submitted).await;
                }
                Step::Published {
                    publish_epoch: epoch,
                    atx_id: published.atx_id,
                    accepted,
                    reason,
                }
            }
            Err(e @ (SmeshingError::NotSafe { .. } | SmeshingError::Expired { .. })) => Step::Abandoned {
                publish_epoch: epoch,
                reason: e.to_string(),
            },
            Err(e) => return Err(e),
        };
        Ok((step, true))
    }

    /// The identity's initial PoST when the fleet has proved it; otherwise asks for it (once).
    async fn initial_post(&self, ident: &Identity) -> Result<Option<Post>, SmeshingError> {
        let node_id = NodeId::from_bytes(ident.node_id);
        let store_err = |step| SmeshingError::store(node_id, INITIAL_POST_EPOCH, step);
        let proofs = self
            .store
            .list_proofs(ident.id)
            .await
            .map_err(store_err("list proofs"))?;
        if let Some(p) = proofs
            .iter()
            .find(|p| p.publish_epoch == INITIAL_POST_EPOCH && p.challenge == [0; 32])
        {
            let proof: post::proof::Proof =
                serde_json::from_value(p.proof.clone()).map_err(|_| SmeshingError::InvalidInput {
                    node_id,
                    publish_epoch: INITIAL_POST_EPOCH,
                    reason: "the stored initial PoST does not decode",
                })?;
            return Ok(Some(Post::from_proof(&proof)));
        }
        let wall = crate::reconcile::now_ms();
        let request = NewProvingRequest {
            identity_id: ident.id,
            publish_epoch: INITIAL_POST_EPOCH,
            challenge: [0; 32],
            known_at: wall,
            deadline: wall.saturating_add(INITIAL_POST_DEADLINE_MS),
        };
        self.file_request(node_id, &request).await?;
        Ok(None)
    }

    /// Files a proving request (an existing one for the same challenge is kept; one for another
    /// challenge is a store conflict) and wakes the reconcile loop when it is new. Returns whether
    /// it is new.
    async fn file_request(
        &self,
        node_id: NodeId,
        request: &NewProvingRequest,
    ) -> Result<bool, SmeshingError> {
        let epoch = request.publish_epoch;
        let (_, created) = self
            .store
            .create_proving_request(request, request.known_at)
            .await
            .map_err(SmeshingError::store(node_id, epoch, "file proving request"))?;
        if created {
            tracing::info!(%node_id, publish_epoch = epoch, challenge = %hex::encode(request.challenge), "proving requested");
            self.wake.notify_one();
        }
        Ok(created)
    }

    /// The cycle a previous run of the coordinator left: the earliest stored challenge whose
    /// publish epoch is neither over nor published, with its recorded PoET registrations.
    async fn recover(
        &self,
        node_id: NodeId,
        clock: &Clock,
        previous: Option<&AtxInfo>,
        now: u64,
    ) -> Result<Option<Cycle>, SmeshingError> {
        let current = clock.epoch_at(now).unwrap_or(0);
        for epoch in current.max(1)..=current.saturating_add(2) {
            if previous.is_some_and(|p| p.publish_epoch >= epoch) {
                continue;
            }
            let store_err = |step| SmeshingError::store(node_id, epoch, step);
            let Some(stored) = self
                .store
                .prepared_challenge(node_id.as_bytes(), epoch)
                .await
                .map_err(store_err("get prepared challenge"))?
            else {
                continue;
            };
            let Ok(timeline) = clock.timeline_for_publish_epoch(epoch) else {
                continue;
            };
            if timeline.expired(now) {
                continue;
            }
            let invalid = |reason: String| SmeshingError::StoredChallengeInvalid {
                node_id,
                publish_epoch: epoch,
                reason,
            };
            let challenge = NIPostChallengeV1::from_bytes(&stored.challenge)
                .map_err(|e| invalid(format!("it does not decode: {e}")))?;
            if poet_challenge(&challenge) != stored.challenge_hash {
                return Err(invalid("it does not hash to its stored challenge hash".into()));
            }
            // A challenge over another previous ATX than the node's latest is stale.
            let prev = match previous {
                Some(p) if p.id == challenge.prev_atx_id => Some(*p),
                None if challenge.prev_atx_id == [0; 32] => None,
                _ => continue,
            };
            let registrations = self
                .store
                .poet_registrations(node_id.as_bytes(), epoch)
                .await
                .map_err(store_err("list PoET registrations"))?
                .into_iter()
                .filter_map(|r| match r.outcome {
                    PoetRegistrationOutcome::Accepted { round, round_end_ms } => {
                        Some(PoetRegistrationResult {
                            poet: PoetId(r.poet),
                            result: Ok(PoetRegistered { round, round_end_ms }),
                        })
                    }
                    PoetRegistrationOutcome::Failed { .. } => None,
                })
                .collect::<Vec<_>>();
            // Prepared but never registered, and its round has started: nothing to resume. The
            // next cycle (another phase's round of the same epoch, which reuses this challenge,
            // or the next round) is built afresh.
            if registrations.is_empty() && timeline.registration_missed(now) {
                continue;
            }
            tracing::info!(%node_id, publish_epoch = epoch, "resuming the cycle prepared before the restart");
            return Ok(Some(Cycle {
                prepared: PreparedChallenge {
                    node_id,
                    timeline,
                    previous: prev,
                    challenge,
                    challenge_hash: stored.challenge_hash,
                },
                registrations,
                best: None,
            }));
        }
        Ok(None)
    }

    /// The identity's PoET phase: its recorded one while a PoET of that phase is listed;
    /// otherwise every initialized identity without one is placed now ([`assign_phases`]) and the
    /// result recorded. `None` when the node lists no usable PoET schedule.
    async fn phase_of(
        &mut self,
        ident: &Identity,
        schedules: &[PoetSchedule],
    ) -> Result<Option<PoetSchedule>, SmeshingError> {
        let find = |phase: Option<u64>| {
            phase.and_then(|p| schedules.iter().copied().find(|s| s.phase_shift_ms == p))
        };
        let known = self.phases.get(&ident.id).copied().or(ident.poet_phase_ms);
        if let Some(s) = find(known) {
            return Ok(Some(s));
        }
        if schedules.is_empty() {
            return Ok(None);
        }
        self.place_identities(ident, schedules).await?;
        Ok(find(self.phases.get(&ident.id).copied()))
    }

    /// Places every initialized identity that has no usable phase (`ident` among them) so that
    /// the bytes each disk reads per cycle gap are spread over the phases.
    async fn place_identities(
        &mut self,
        ident: &Identity,
        schedules: &[PoetSchedule],
    ) -> Result<(), SmeshingError> {
        let node_id = NodeId::from_bytes(ident.node_id);
        let store_err = |step| SmeshingError::store(node_id, 0, step);
        let phases: Vec<u64> = schedules.iter().map(|s| s.phase_shift_ms).collect();
        let identities: Vec<Identity> = self
            .store
            .list_identities()
            .await
            .map_err(store_err("list identities"))?
            .into_iter()
            .filter(|i| i.state.is_initialized() || i.id == ident.id)
            .collect();
        let ids: Vec<Uuid> = identities.iter().map(|i| i.id).collect();
        let (files, _) = self
            .store
            .list_files_and_ranges_of(&ids)
            .await
            .map_err(store_err("list identity files"))?;
        let mut loads = proving_loads(&identities, &files);
        let mut placed = Vec::new();
        let mut unplaced = Vec::new();
        for i in &identities {
            let Some(load) = loads.remove(&i.id) else { continue };
            match self.phases.get(&i.id).copied().or(i.poet_phase_ms) {
                Some(p) if phases.contains(&p) => placed.push((load, p)),
                _ => unplaced.push(load),
            }
        }
        for (id, phase) in assign_phases(&phases, &placed, &unplaced) {
            self.record_phase(id, phase)
                .await
                .map_err(store_err("set PoET phase"))?;
            tracing::info!(identity = %id, phase_ms = phase, "placed in a PoET phase");
        }
        Ok(())
    }

    /// Records the identity's PoET phase, in the store and in the pass's view of it.
    async fn record_phase(&mut self, id: Uuid, phase_ms: u64) -> Result<(), StoreError> {
        self.store
            .set_poet_phase(id, phase_ms, crate::reconcile::now_ms())
            .await?;
        self.phases.insert(id, phase_ms);
        Ok(())
    }

    /// Records the identity's state (best effort: the state is for people, the cycle is not
    /// driven by it).
    async fn set_state(&self, ident: &Identity, state: IdentityState) {
        let now = crate::reconcile::now_ms();
        if let Err(e) = self.store.update_identity_state(ident.id, state, None, now).await {
            tracing::warn!(identity = %ident.name, error = %e, "could not record the identity's state");
        }
    }
}
