//! An in-process PoET server (spec/devnet.md §1.2–1.3, §6.2): the embedded node owns one per
//! simulated PoET. No network: registration and proof queries are method calls.
//!
//! Time is always passed in (`now`), so the server is deterministic: [`PoetServer::advance`]
//! (or [`PoetServer::step`], which bounds the work done per call) starts the rounds that are
//! due, computes the leaves the pace allows by `now`, and finishes rounds whose end has passed.
//! [`PoetThread`] drives a shared server from a clock on a plain thread.
//!
//! Pacing (a devnet addition, §6.2): by time `t` a running round has
//! `⌊leaves_per_second × (min(t, end) − start)⌋` leaves, and it finishes with at least `T`.
//! The leaf count therefore depends only on the schedule and the pace, not on the CPU, as long as
//! the CPU keeps up (≈ `leaves_per_second × depth` SHA-256 per second).
//!
//! Registration gate: the signature check is real; certificates and PoW are not implemented
//! (§6.2 makes them optional/off).

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::proof::{PoetProof, ProveError, MAX_PROVEN_LEAVES};
use super::tree::{membership_proof, membership_root};
use super::work::Work;

/// Domain byte of PoET registration signatures (go-spacemesh `signing.POET`).
pub const POET_DOMAIN: u8 = 4;

/// The signing prefix of a registration: `genesisID(20 B) ‖ 0x04`.
pub fn poet_prefix(genesis_id: &[u8; 20]) -> [u8; 21] {
    let mut p = [0u8; 21];
    p[..20].copy_from_slice(genesis_id);
    p[20] = POET_DOMAIN;
    p
}

/// Round timing (§1.2). Round `k` starts at `genesis + phase_shift + k·epoch_duration` and
/// runs for `epoch_duration − cycle_gap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundSchedule {
    pub genesis: SystemTime,
    pub epoch_duration: Duration,
    pub phase_shift: Duration,
    pub cycle_gap: Duration,
}

fn mul(d: Duration, k: u64) -> Option<Duration> {
    let nanos = d.as_nanos().checked_mul(u128::from(k))?;
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

impl RoundSchedule {
    /// `genesis + phase_shift + k·epoch_duration`; `None` if it does not fit a `SystemTime`.
    pub fn round_start(&self, k: u64) -> Option<SystemTime> {
        let offset = self.phase_shift.checked_add(mul(self.epoch_duration, k)?)?;
        self.genesis.checked_add(offset)
    }

    /// `round_start(k) + epoch_duration − cycle_gap`: the round's work stops here.
    pub fn round_end(&self, k: u64) -> Option<SystemTime> {
        self.round_start(k)?.checked_add(self.run_duration())
    }

    /// How long a round runs: `epoch_duration − cycle_gap`.
    pub fn run_duration(&self) -> Duration {
        self.epoch_duration.saturating_sub(self.cycle_gap)
    }

    /// The round that takes registrations at `t`: 0 before `genesis + phase_shift`, else
    /// `⌊(t − genesis − phase_shift) / epoch_duration⌋ + 1`. Every round below it has started.
    /// (0 for a zero epoch duration, which [`PoetServer::new`] rejects.)
    pub fn open_round(&self, t: SystemTime) -> u64 {
        let since = t.duration_since(self.genesis).unwrap_or(Duration::ZERO);
        match since.checked_sub(self.phase_shift) {
            None => 0,
            Some(after) => after
                .as_nanos()
                .checked_div(self.epoch_duration.as_nanos())
                .map_or(0, |q| u64::try_from(q).unwrap_or(u64::MAX - 1) + 1),
        }
    }
}

/// A PoET server's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoetConfig {
    pub schedule: RoundSchedule,
    /// The network's genesis ID: registrations are signed over `genesis_id ‖ 0x04 ‖ challenge`.
    pub genesis_id: [u8; 20],
    /// Pace cap: leaves per second of round time.
    pub leaves_per_second: u64,
    /// Security parameter (leaves opened per proof); the real value is [`super::T`].
    pub t: usize,
    /// SHA-256 applications per label; the real value is [`super::LABEL_DEPTH`].
    pub label_depth: u32,
}

impl PoetConfig {
    /// The devnet PoET of spec §6.3: 60 s epochs, 40 s phase shift, 10 s cycle gap (rounds run
    /// 50 s), real `T` and label depth.
    pub fn devnet(genesis: SystemTime, genesis_id: [u8; 20], leaves_per_second: u64) -> Self {
        PoetConfig {
            schedule: RoundSchedule {
                genesis,
                epoch_duration: Duration::from_secs(60),
                phase_shift: Duration::from_secs(40),
                cycle_gap: Duration::from_secs(10),
            },
            genesis_id,
            leaves_per_second,
            t: super::T,
            label_depth: super::LABEL_DEPTH,
        }
    }
}

/// A registration request (`POST /v1/submit` without certificate or PoW).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The smesher's ed25519 public key.
    pub node_id: [u8; 32],
    pub challenge: [u8; 32],
    /// ed25519 signature over `genesis_id ‖ 0x04 ‖ challenge`.
    pub signature: [u8; 64],
    /// Reject if the open round ends after this.
    pub deadline: Option<SystemTime>,
}

impl Registration {
    /// A registration signed the way a node signs it.
    pub fn signed(
        key: &SigningKey,
        genesis_id: &[u8; 20],
        challenge: [u8; 32],
        deadline: Option<SystemTime>,
    ) -> Self {
        let mut msg = poet_prefix(genesis_id).to_vec();
        msg.extend_from_slice(&challenge);
        Registration {
            node_id: key.verifying_key().to_bytes(),
            challenge,
            signature: key.sign(&msg).to_bytes(),
            deadline,
        }
    }
}

/// The reply to a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub round: u64,
    pub round_end: SystemTime,
}

/// Why a registration is refused (checked in this order).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("node id {} is not an ed25519 public key", hex::encode(.node_id))]
    BadNodeId { node_id: [u8; 32] },
    #[error("signature of node {} over genesis prefix ‖ challenge does not verify", hex::encode(.node_id))]
    BadSignature { node_id: [u8; 32] },
    #[error("round {round} cannot be timed: its end overflows")]
    TimeOverflow { round: u64 },
    #[error("round {round} has already started")]
    RoundStarted { round: u64 },
    #[error("too late to register: round {round} ends at {round_end:?}, after the deadline {deadline:?}")]
    TooLate {
        round: u64,
        round_end: SystemTime,
        deadline: SystemTime,
    },
    #[error("conflicting registration: node {} already registered another challenge for round {round}", hex::encode(.node_id))]
    Conflict { round: u64, node_id: [u8; 32] },
}

/// Server errors other than registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoetError {
    #[error("bad PoET config: {0}")]
    Config(&'static str),
    #[error("round {round} cannot be timed: its start or end overflows")]
    TimeOverflow { round: u64 },
    #[error("round {round} has not finished")]
    NotFinished { round: u64 },
    #[error("round {round} had no members, so it has no proof")]
    NoMembers { round: u64 },
    #[error("proving round {round}: {source}")]
    Prove {
        round: u64,
        #[source]
        source: ProveError,
    },
    #[error("round {round} was forgotten")]
    Forgotten { round: u64 },
    #[error("the PoET thread panicked")]
    ThreadPanicked,
    #[error("round {round} in the stored state: {reason}")]
    BadSnapshot { round: u64, reason: &'static str },
}

/// What a finished round publishes (`GET /v1/proofs/{round}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundProof {
    pub round: u64,
    /// The membership root the work was salted with.
    pub statement: [u8; 32],
    /// Every member's challenge, ordered by node ID.
    pub members: Vec<[u8; 32]>,
    pub proof: PoetProof,
}

impl RoundProof {
    pub fn leaf_count(&self) -> u64 {
        self.proof.leaf_count
    }

    /// Where `challenge` sits in the member list and its sibling path (ATX v1 membership).
    pub fn membership(&self, challenge: &[u8; 32]) -> Option<(u64, Vec<[u8; 32]>)> {
        let index = self.members.iter().position(|m| m == challenge)?;
        Some((index as u64, membership_proof(&self.members, index)?))
    }
}

/// A round's lifecycle, as a status query reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundStatus {
    /// Taking registrations (or not started yet).
    Open {
        members: usize,
    },
    Running {
        members: usize,
        leaves: u64,
    },
    Done {
        members: usize,
        leaf_count: u64,
    },
    /// Started with no members: no work, no proof.
    NoMembers,
}

/// What a [`PoetServer::step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoundEvent {
    Started {
        round: u64,
        members: usize,
        statement: [u8; 32],
    },
    Finished {
        round: u64,
        leaf_count: u64,
    },
}

/// The outcome of a bounded [`PoetServer::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub events: Vec<RoundEvent>,
    /// False if the leaf budget ran out before the server reached `now`.
    pub caught_up: bool,
}

#[derive(Debug)]
enum RoundState {
    Open {
        /// node ID -> challenge; iterated in node-ID order like poet's key-value registry.
        registrations: BTreeMap<[u8; 32], [u8; 32]>,
    },
    Running {
        members: Vec<[u8; 32]>,
        work: Box<Work>,
    },
    Done(Box<RoundProof>),
}

/// The in-process PoET server. Keeps every finished round's proof (≈170 KB each) until
/// [`Self::forget_rounds_before`]; a round's labels are dropped once its proof is made.
#[derive(Debug)]
pub struct PoetServer {
    config: PoetConfig,
    rounds: BTreeMap<u64, RoundState>,
    /// Rounds below this have started (or were skipped for want of members).
    next_round: u64,
    running: Option<u64>,
    /// Rounds below this were dropped by [`Self::forget_rounds_before`].
    forgotten_below: u64,
}

impl PoetServer {
    pub fn new(config: PoetConfig) -> Result<Self, PoetError> {
        let s = &config.schedule;
        if s.epoch_duration.is_zero() {
            return Err(PoetError::Config("epoch duration is zero"));
        }
        if s.cycle_gap >= s.epoch_duration {
            return Err(PoetError::Config("cycle gap must be shorter than the epoch"));
        }
        if config.t == 0 || config.t > MAX_PROVEN_LEAVES {
            return Err(PoetError::Config("T must be in 1..=150"));
        }
        if config.leaves_per_second == 0 {
            return Err(PoetError::Config("leaves per second must be positive"));
        }
        if config.label_depth == 0 {
            return Err(PoetError::Config("label depth must be positive"));
        }
        Ok(PoetServer {
            config,
            rounds: BTreeMap::new(),
            next_round: 0,
            running: None,
            forgotten_below: 0,
        })
    }

    pub fn config(&self) -> &PoetConfig {
        &self.config
    }

    /// Registers a challenge for the round open at `now` (§1.3 rules, in order: signature,
    /// deadline, one challenge per node ID and round).
    pub fn register(&mut self, now: SystemTime, reg: &Registration) -> Result<Registered, RegisterError> {
        let key = VerifyingKey::from_bytes(&reg.node_id)
            .map_err(|_| RegisterError::BadNodeId { node_id: reg.node_id })?;
        let mut msg = poet_prefix(&self.config.genesis_id).to_vec();
        msg.extend_from_slice(&reg.challenge);
        key.verify(&msg, &Signature::from_bytes(&reg.signature))
            .map_err(|_| RegisterError::BadSignature { node_id: reg.node_id })?;

        let round = self.config.schedule.open_round(now);
        let round_end = self
            .config
            .schedule
            .round_end(round)
            .ok_or(RegisterError::TimeOverflow { round })?;
        if round < self.next_round {
            return Err(RegisterError::RoundStarted { round });
        }
        if let Some(deadline) = reg.deadline {
            if round_end > deadline {
                return Err(RegisterError::TooLate {
                    round,
                    round_end,
                    deadline,
                });
            }
        }
        let state = self.rounds.entry(round).or_insert_with(|| RoundState::Open {
            registrations: BTreeMap::new(),
        });
        let RoundState::Open { registrations } = state else {
            return Err(RegisterError::RoundStarted { round });
        };
        match registrations.get(&reg.node_id) {
            Some(existing) if *existing == reg.challenge => {}
            Some(_) => {
                return Err(RegisterError::Conflict {
                    round,
                    node_id: reg.node_id,
                })
            }
            None => {
                registrations.insert(reg.node_id, reg.challenge);
            }
        }
        Ok(Registered { round, round_end })
    }

    /// Brings the server up to `now`, however much work that takes.
    pub fn advance(&mut self, now: SystemTime) -> Result<Vec<RoundEvent>, PoetError> {
        self.step(now, u64::MAX).map(|s| s.events)
    }

    /// Brings the server towards `now`, computing at most `max_leaves` leaves: starts due
    /// rounds (statement = membership root of the challenges in node-ID order), computes the
    /// paced leaves, and finishes (proves) a round once `now` has reached its end.
    pub fn step(&mut self, now: SystemTime, max_leaves: u64) -> Result<Step, PoetError> {
        let mut budget = max_leaves;
        let mut events = Vec::new();
        loop {
            if let Some(round) = self.running {
                let schedule = self.config.schedule;
                let end = schedule
                    .round_end(round)
                    .ok_or(PoetError::TimeOverflow { round })?;
                let target = self.target_leaves(round, now)?;
                let Some(RoundState::Running { work, .. }) = self.rounds.get_mut(&round) else {
                    self.running = None;
                    continue;
                };
                let need = target.saturating_sub(work.leaf_count());
                let n = need.min(budget);
                work.run(n);
                budget -= n;
                if n < need {
                    return Ok(Step {
                        events,
                        caught_up: false,
                    });
                }
                if now < end {
                    return Ok(Step {
                        events,
                        caught_up: true,
                    });
                }
                events.push(self.finish(round)?);
                continue;
            }
            let due = self.config.schedule.open_round(now);
            let next = if due > self.next_round {
                self.rounds.range(self.next_round..due).next().map(|(k, _)| *k)
            } else {
                None
            };
            let Some(round) = next else {
                self.next_round = self.next_round.max(due);
                return Ok(Step {
                    events,
                    caught_up: true,
                });
            };
            self.next_round = round + 1;
            if let Some(event) = self.start(round) {
                events.push(event);
            }
        }
    }

    /// The leaves the pace allows round `round` by `now` (at least T once it has ended).
    fn target_leaves(&self, round: u64, now: SystemTime) -> Result<u64, PoetError> {
        let s = &self.config.schedule;
        let start = s.round_start(round).ok_or(PoetError::TimeOverflow { round })?;
        let end = s.round_end(round).ok_or(PoetError::TimeOverflow { round })?;
        let elapsed = now.min(end).duration_since(start).unwrap_or(Duration::ZERO);
        let paced = u128::from(self.config.leaves_per_second) * elapsed.as_nanos() / 1_000_000_000;
        let paced = u64::try_from(paced).unwrap_or(u64::MAX);
        Ok(if now >= end {
            paced.max(self.config.t as u64)
        } else {
            paced
        })
    }

    fn start(&mut self, round: u64) -> Option<RoundEvent> {
        let state = self.rounds.get_mut(&round)?;
        let RoundState::Open { registrations } = state else {
            return None;
        };
        let members: Vec<[u8; 32]> = registrations.values().copied().collect();
        let Some(statement) = membership_root(&members) else {
            self.rounds.remove(&round);
            return None;
        };
        let count = members.len();
        *state = RoundState::Running {
            members,
            work: Box::new(Work::with_depth(statement, self.config.label_depth)),
        };
        self.running = Some(round);
        Some(RoundEvent::Started {
            round,
            members: count,
            statement,
        })
    }

    fn finish(&mut self, round: u64) -> Result<RoundEvent, PoetError> {
        self.running = None;
        let Some(RoundState::Running { members, work }) = self.rounds.remove(&round) else {
            return Err(PoetError::NotFinished { round });
        };
        let proof =
            PoetProof::generate(&work, self.config.t).map_err(|source| PoetError::Prove { round, source })?;
        let leaf_count = proof.leaf_count;
        self.rounds.insert(
            round,
            RoundState::Done(Box::new(RoundProof {
                round,
                statement: *work.statement(),
                members,
                proof,
            })),
        );
        Ok(RoundEvent::Finished { round, leaf_count })
    }

    /// The proof of a finished round, with its ordered member list and leaf count.
    pub fn proof(&self, round: u64) -> Result<&RoundProof, PoetError> {
        match self.rounds.get(&round) {
            None if round < self.forgotten_below => Err(PoetError::Forgotten { round }),
            Some(RoundState::Done(p)) => Ok(p),
            Some(_) => Err(PoetError::NotFinished { round }),
            None if round < self.next_round => Err(PoetError::NoMembers { round }),
            None => Err(PoetError::NotFinished { round }),
        }
    }

    pub fn status(&self, round: u64) -> RoundStatus {
        match self.rounds.get(&round) {
            Some(RoundState::Open { registrations }) => RoundStatus::Open {
                members: registrations.len(),
            },
            Some(RoundState::Running { members, work }) => RoundStatus::Running {
                members: members.len(),
                leaves: work.leaf_count(),
            },
            Some(RoundState::Done(p)) => RoundStatus::Done {
                members: p.members.len(),
                leaf_count: p.proof.leaf_count,
            },
            None if round < self.next_round => RoundStatus::NoMembers,
            None => RoundStatus::Open { members: 0 },
        }
    }

    /// Drops every round below `round` (proofs included).
    pub fn forget_rounds_before(&mut self, round: u64) {
        self.rounds = self.rounds.split_off(&round);
        self.forgotten_below = self.forgotten_below.max(round);
        if self.running.is_some_and(|r| r < round) {
            self.running = None;
        }
    }
}

/// A round as [`PoetServer::export`] gives it and [`PoetServer::restore`] takes it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoundSnapshot {
    /// Registrations so far, `(node ID, challenge)` in node-ID order.
    Open {
        round: u64,
        registrations: Vec<([u8; 32], [u8; 32])>,
    },
    /// Started: the members are kept, the labels are not (the work is recomputed from the
    /// statement up to the paced leaf count by the next [`PoetServer::advance`]).
    Running {
        round: u64,
        members: Vec<[u8; 32]>,
    },
    Done(Box<RoundProof>),
}

/// Everything a [`PoetServer`] holds besides its config, labels of a running round excepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSnapshot {
    pub next_round: u64,
    pub running: Option<u64>,
    pub forgotten_below: u64,
    pub rounds: Vec<RoundSnapshot>,
}

impl PoetServer {
    /// The server's rounds, for persisting (no labels: see [`RoundSnapshot::Running`]).
    pub fn export(&self) -> ServerSnapshot {
        let rounds = self
            .rounds
            .iter()
            .map(|(round, state)| match state {
                RoundState::Open { registrations } => RoundSnapshot::Open {
                    round: *round,
                    registrations: registrations.iter().map(|(k, v)| (*k, *v)).collect(),
                },
                RoundState::Running { members, .. } => RoundSnapshot::Running {
                    round: *round,
                    members: members.clone(),
                },
                RoundState::Done(p) => RoundSnapshot::Done(p.clone()),
            })
            .collect();
        ServerSnapshot {
            next_round: self.next_round,
            running: self.running,
            forgotten_below: self.forgotten_below,
            rounds,
        }
    }

    /// A server with `config` and the rounds of `snap`. A running round restarts its work at
    /// leaf 0; the next [`Self::advance`] recomputes the leaves its pace allows by then
    /// (`leaves_per_second × elapsed`, at most one round's worth).
    pub fn restore(config: PoetConfig, snap: ServerSnapshot) -> Result<Self, PoetError> {
        let mut server = PoetServer::new(config)?;
        for r in snap.rounds {
            let (round, state) = match r {
                RoundSnapshot::Open { round, registrations } => (
                    round,
                    RoundState::Open {
                        registrations: registrations.into_iter().collect(),
                    },
                ),
                RoundSnapshot::Running { round, members } => {
                    let statement = membership_root(&members).ok_or(PoetError::BadSnapshot {
                        round,
                        reason: "a running round without members",
                    })?;
                    let work = Box::new(Work::with_depth(statement, server.config.label_depth));
                    (round, RoundState::Running { members, work })
                }
                RoundSnapshot::Done(p) => {
                    if membership_root(&p.members) != Some(p.statement) {
                        return Err(PoetError::BadSnapshot {
                            round: p.round,
                            reason: "the statement is not the members' root",
                        });
                    }
                    (p.round, RoundState::Done(p))
                }
            };
            if server.rounds.insert(round, state).is_some() {
                return Err(PoetError::BadSnapshot {
                    round,
                    reason: "the round appears twice",
                });
            }
        }
        if let Some(round) = snap.running {
            if !matches!(server.rounds.get(&round), Some(RoundState::Running { .. })) {
                return Err(PoetError::BadSnapshot {
                    round,
                    reason: "named as running but not running",
                });
            }
        }
        server.next_round = snap.next_round;
        server.running = snap.running;
        server.forgotten_below = snap.forgotten_below;
        Ok(server)
    }
}

/// Drives a shared [`PoetServer`] from a clock on its own thread: every `tick` it steps the
/// server to the clock's time, in slices of [`PoetThread::SLICE_LEAVES`] leaves so that
/// registrations and queries (which lock the same mutex) are not held up for long.
#[derive(Debug)]
pub struct PoetThread {
    server: Arc<Mutex<PoetServer>>,
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<Result<(), PoetError>>>,
}

fn lock(server: &Mutex<PoetServer>) -> std::sync::MutexGuard<'_, PoetServer> {
    server.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PoetThread {
    /// Leaves computed per lock hold.
    pub const SLICE_LEAVES: u64 = 256;

    /// Runs the server on wall-clock time.
    pub fn spawn(server: Arc<Mutex<PoetServer>>, tick: Duration) -> std::io::Result<Self> {
        Self::spawn_with_clock(server, tick, SystemTime::now)
    }

    /// Runs the server on the given clock.
    pub fn spawn_with_clock(
        server: Arc<Mutex<PoetServer>>,
        tick: Duration,
        clock: impl Fn() -> SystemTime + Send + 'static,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = Arc::clone(&server);
        let handle = std::thread::Builder::new()
            .name("poet".into())
            .spawn(move || loop {
                loop {
                    let step = lock(&shared).step(clock(), Self::SLICE_LEAVES)?;
                    if step.caught_up {
                        break;
                    }
                    if !matches!(stopped.try_recv(), Err(mpsc::TryRecvError::Empty)) {
                        return Ok(());
                    }
                }
                match stopped.recv_timeout(tick) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return Ok(()),
                }
            })?;
        Ok(PoetThread {
            server,
            stop: Some(stop),
            handle: Some(handle),
        })
    }

    pub fn server(&self) -> &Arc<Mutex<PoetServer>> {
        &self.server
    }

    /// Stops the thread and waits for it; returns the error that ended it early, if any.
    pub fn shutdown(mut self) -> Result<(), PoetError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), PoetError> {
        drop(self.stop.take());
        match self.handle.take() {
            Some(h) => h.join().map_err(|_| PoetError::ThreadPanicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for PoetThread {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

#[cfg(test)]
mod tests;
