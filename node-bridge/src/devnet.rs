//! The embedded devnet (spec/devnet.md §6): a deterministic one-process Spacemesh node that
//! implements [`NodeBridge`](crate::bridge::NodeBridge) with the real pieces of this crate, driven by an explicit time.
//!
//! [`Devnet::advance`] walks every instant that matters between the last time and `now_ms`, in
//! order: PoET round starts and ends (each PoET keeps its own pace and may have its own phase
//! shift), layer ends, epoch starts. At each:
//!
//! - **PoET**: rounds with members start, run at their pace (real labels, tree and Fiat–Shamir
//!   proof), and end; a finished round's proof is verified with the real verifier and stored
//!   under its `PoetProofRef`, so ATXs naming it validate;
//! - **epoch start** `E`: the active set of `E` is fixed: ATXs published in `E − 1` accepted
//!   before `E` started, without flagged identities or zero weight; each gets `slots(w, W)`,
//!   and the set gets its hash ([`crate::ballot::active_set_hash`]);
//! - **layer end** `L` (from the effective genesis on; earlier layers apply nothing and keep
//!   transactions pending, as the VM refuses them): the ballots accepted for `L` from
//!   identities not flagged by now make the block's reward entries (`ATX weight × proofs /
//!   slots`); the pending transactions are applied by the VM (ordered by principal, nonce),
//!   then `subsidy + fees` is split and credited to the coinbases.
//!
//! **Eligibility** is real (spec/devnet.md §3.2): the node never holds a private key, so the
//! identity's key holder (the coordinator's keystore) computes the ECVRF proof of each slot `j`
//! over `vrf_message(beacon, E, vrf_nonce, j)`, and signs one ballot per layer it holds slots
//! in, carrying that layer's proofs; the first ballot of the epoch is the reference ballot with
//! `EpochData`, later ones name it. [`crate::bridge::NodeBridge::submit_ballot`] validates a
//! ballot exactly (see `devnet/ballots.rs`: syntax, layer not ended and epoch started, ed25519
//! signature in the ballot domain, the smesher's ATX in the active set and not flagged,
//! reference ballot and its `EpochData` against the node's, each proof: `j` ascending and
//! `< slots`, the VRF, the layer it selects); a second, different valid ballot of one identity
//! for one layer is a MultipleBallots malfeasance proof that flags the identity. A layer's block
//! pays only ballots the node accepted.
//!
//! ATXs are validated fully by [`validate_atx_v1`](crate::atx::validate_atx_v1) (signature, syntax, dependencies, PoET
//! membership, VRF nonce, initial PoST and NIPoST with real k2pow checks by a light-mode
//! RandomX from `post`), then ingested by [`AtxStore`], which flags equivocating identities; an
//! ATX rejected because its NIPoST PoST fails the difficulty check at one index flags its
//! identity too (an InvalidPostIndex proof, checked at that index).
//!
//! **Simplifications.**
//! - No hare, no proposals: the agreed set of layer `L` is every valid ballot received by the
//!   end of `L` from identities not flagged by then (one per identity: the first accepted), and
//!   the block is final on creation. Ballots carry no transactions (the mempool feeds blocks).
//! - No tortoise: ballots carry no votes and their opinion hash is the zero hash (not checked).
//! - The eligibility proofs are inside the signed inner ballot ([`crate::ballot`]).
//! - Beacon: epochs ≤ 2 use the first 4 bytes of the genesis id; later epochs
//!   `blake3("beacon" ‖ genesis_id ‖ u32le(epoch))[0..4]` (§6.2).
//! - Every pending transaction goes into the next applied layer (no mempool selection).
//! - p2p sync state is [`BridgeError::NotAvailable`].
//!
//! **Memory** is bounded by `retain_epochs`: PoET rounds, events, rewards, receipts, active
//! sets and ballots older than that many epochs are forgotten. Validated ATXs stay (later ATXs refer to
//! them): one per identity per epoch.
//!
//! **Durability**: [`Devnet::new`] lives in memory; [`Devnet::open`] keeps the chain in a
//! directory (a snapshot written by [`Devnet::save`], an append-only ATX log and a journal of
//! every input since the snapshot; see [`persist`]), so a devnet opened again is the same node.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use post::pow::{PowVerifier, RandomXMode, RandomXOptions, RandomXPow};

use crate::atx::{
    genesis_id, golden_atx, AtxId, AtxParams, AtxStore, Epoch, NodeId, PoetProofInfo, ValidatedAtx,
};
use crate::bridge::{BridgeError, LayerRewardInfo, NodeEvent, PoetId, PoetInfo, PoetRound, Reward};
use crate::clock::{Clock, ClockError, ClockParams, ClockParamsError, EpochId, LayerId};
use crate::poet::{PoetConfig, PoetError, PoetServer, RoundEvent, RoundSchedule};
use crate::rewards::{block_reward_entries, layer_rewards, EligibilityParams, RewardError, SMIDGE_PER_SMH};
use crate::vm::{Address, GenesisAccount, TxId, TxReceipt, Vm, VmConfig};

/// One simulated PoET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoetSpec {
    pub id: String,
    pub leaves_per_second: u64,
    /// `None`: the clock's phase shift.
    pub phase_shift_ms: Option<u64>,
}

/// Everything the devnet is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevnetConfig {
    pub clock: ClockParams,
    pub golden_atx: AtxId,
    pub eligibility: EligibilityParams,
    pub atx: AtxParams,
    pub poets: Vec<PoetSpec>,
    /// Genesis stubs (the faucet).
    pub genesis_accounts: Vec<GenesisAccount>,
    /// Local seed of the K3 subset this node checks.
    pub k3_seed: Vec<u8>,
    /// Epochs of PoET rounds, events, rewards and receipts kept.
    pub retain_epochs: u32,
}

impl DevnetConfig {
    /// The §6.3 devnet: 5 s layers, 12 per epoch, two PoETs with different phases (1,000
    /// leaves/s at the clock's 40 s phase shift, 800 leaves/s at 20 s, so an identity that
    /// misses one round can still catch the other in the same epoch, and the fleet's proving
    /// is spread over two cycle gaps), 1,024 labels per unit, 1–16 units, K1/K2/K3 = 8/10/10, all-`0xFF`
    /// k2pow difficulty, scrypt N = 32, tick size 500, and `faucet` holding 10⁶ SMH.
    pub fn devnet(genesis_ms: u64, faucet: Address) -> Self {
        let genesis_s = i64::try_from(genesis_ms / 1_000).unwrap_or(i64::MAX);
        DevnetConfig {
            clock: ClockParams::devnet().with_genesis_ms(genesis_ms),
            golden_atx: golden_atx(genesis_s, b"smeshfleet-devnet"),
            eligibility: EligibilityParams::devnet(),
            atx: AtxParams {
                labels_per_unit: 1_024,
                min_num_units: 1,
                max_num_units: 16,
                k1: 8,
                k2: 10,
                k3: 10,
                pow_difficulty: [0xff; 32],
                scrypt_n: 32,
                tick_size: crate::rewards::weight::DEVNET_TICK_SIZE,
            },
            poets: vec![
                PoetSpec {
                    id: "poet-1000".into(),
                    leaves_per_second: 1_000,
                    phase_shift_ms: None,
                },
                PoetSpec {
                    id: "poet-800".into(),
                    leaves_per_second: 800,
                    phase_shift_ms: Some(20_000),
                },
            ],
            genesis_accounts: vec![GenesisAccount {
                address: faucet,
                balance: 1_000_000 * SMIDGE_PER_SMH,
            }],
            k3_seed: b"smeshfleet devnet".to_vec(),
            retain_epochs: 4,
        }
    }
}

/// Why a devnet cannot be built or advanced.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error("clock parameters: {0}")]
    ClockParams(#[from] ClockParamsError),
    #[error("config: {0}")]
    Config(&'static str),
    #[error("PoET {poet}: {source}")]
    Poet {
        poet: String,
        #[source]
        source: PoetError,
    },
    #[error("light RandomX: {0}")]
    RandomX(#[from] post::pow::PowError),
    #[error("time went backwards: {now_ms} ms is before the devnet's {last_ms} ms")]
    TimeWentBackwards { now_ms: u64, last_ms: u64 },
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: corrupt: {reason}", path.display())]
    Corrupt {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{} holds a devnet of another config (stored: {stored}; given: {given})", path.display())]
    ConfigMismatch {
        path: std::path::PathBuf,
        stored: String,
        given: String,
    },
    #[error("encoding the devnet state: {0}")]
    Encode(String),
}

impl From<ClockError> for DevnetError {
    fn from(e: ClockError) -> Self {
        DevnetError::Bridge(BridgeError::Clock(e))
    }
}

fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The devnet beacon of `epoch` (see the module docs).
pub fn devnet_beacon(genesis_id: &[u8; 20], epoch: EpochId) -> [u8; 4] {
    let mut b = [0u8; 4];
    if epoch <= 2 {
        b.copy_from_slice(&genesis_id[..4]);
    } else {
        let mut h = blake3::Hasher::new();
        h.update(b"beacon");
        h.update(genesis_id);
        h.update(&epoch.to_le_bytes());
        b.copy_from_slice(&h.finalize().as_bytes()[..4]);
    }
    b
}

struct PoetSlot {
    info: PoetInfo,
    server: PoetServer,
    rounds: BTreeMap<u64, PoetRound>,
}

#[derive(Debug, Clone)]
struct ActiveMember {
    atx: ValidatedAtx,
    slots: u32,
}

#[derive(Debug, Clone, Default)]
struct ActiveSet {
    total_weight: u64,
    /// [`crate::ballot::active_set_hash`] of the members' ATX ids.
    hash: [u8; 32],
    members: BTreeMap<NodeId, ActiveMember>,
}

impl ActiveSet {
    fn new(total_weight: u64, members: BTreeMap<NodeId, ActiveMember>) -> Self {
        let ids: Vec<AtxId> = members.values().map(|m| m.atx.id).collect();
        ActiveSet {
            total_weight,
            hash: crate::ballot::active_set_hash(&ids),
            members,
        }
    }
}

struct State {
    cfg: DevnetConfig,
    clock: Clock,
    genesis_id: [u8; 20],
    now_ms: u64,
    /// The next layer to apply.
    next_layer: LayerId,
    poets: Vec<PoetSlot>,
    store: AtxStore,
    by_smesher: BTreeMap<NodeId, Vec<AtxId>>,
    by_publish: BTreeMap<Epoch, Vec<AtxId>>,
    active_sets: BTreeMap<EpochId, ActiveSet>,
    /// Accepted ballots of the kept epochs.
    ballots: BTreeMap<EpochId, ballots::EpochBallots>,
    vm: Vm,
    mempool: Vec<Vec<u8>>,
    receipts: HashMap<TxId, (EpochId, TxReceipt)>,
    layers: BTreeMap<LayerId, LayerRewardInfo>,
    events: VecDeque<(EpochId, NodeEvent)>,
    /// Sequence number of `events.front()`.
    first_event: u64,
    /// Oldest epoch still kept.
    oldest_epoch: EpochId,
    /// The files of a devnet opened with [`Devnet::open`]; `None` in memory only.
    persist: Option<persist::Persist>,
    /// ATXs accepted since the last save, in order (`None` in memory only).
    unsaved_atxs: Option<Vec<AtxId>>,
}

/// The embedded devnet node.
pub struct Devnet {
    state: Mutex<State>,
    pow: Arc<dyn PowVerifier>,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Devnet")
            .field("now_ms", &s.now_ms)
            .field("next_layer", &s.next_layer)
            .field("atxs", &s.store.len())
            .finish()
    }
}

impl Devnet {
    /// A devnet at its genesis, verifying k2pows with a fresh light-mode RandomX.
    pub fn new(config: DevnetConfig) -> Result<Self, DevnetError> {
        let rx = RandomXPow::with_options(RandomXOptions {
            mode: RandomXMode::Light,
            threads: 1,
            large_pages: false,
        })?;
        Self::with_pow_verifier(config, Arc::new(rx))
    }

    /// A devnet at its genesis, verifying k2pows with `pow`.
    pub fn with_pow_verifier(config: DevnetConfig, pow: Arc<dyn PowVerifier>) -> Result<Self, DevnetError> {
        Ok(Devnet {
            state: Mutex::new(State::new(config)?),
            pow,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// The state at genesis, epoch 0 started.
    fn new(config: DevnetConfig) -> Result<State, DevnetError> {
        let clock = Clock::new(config.clock)?;
        if config.eligibility.layers_per_epoch != clock.layers_per_epoch() {
            return Err(DevnetError::Config(
                "eligibility and clock disagree on layers per epoch",
            ));
        }
        if config.atx.tick_size == 0 {
            return Err(DevnetError::Config("tick size is 0"));
        }
        let gid = genesis_id(&config.golden_atx);
        let epoch_ms = clock.epoch_duration_ms();
        let mut poets = Vec::with_capacity(config.poets.len());
        for spec in &config.poets {
            if poets.iter().any(|p: &PoetSlot| p.info.id.0 == spec.id) {
                return Err(DevnetError::Config("two PoETs share an id"));
            }
            let phase = spec.phase_shift_ms.unwrap_or(config.clock.poet_phase_shift_ms);
            if phase >= epoch_ms {
                return Err(DevnetError::Config(
                    "a PoET's phase shift is not shorter than the epoch",
                ));
            }
            let pc = PoetConfig {
                schedule: RoundSchedule {
                    genesis: system_time(config.clock.genesis_ms),
                    epoch_duration: Duration::from_millis(epoch_ms),
                    phase_shift: Duration::from_millis(phase),
                    cycle_gap: Duration::from_millis(config.clock.poet_cycle_gap_ms),
                },
                genesis_id: gid,
                leaves_per_second: spec.leaves_per_second,
                t: crate::poet::T,
                label_depth: crate::poet::LABEL_DEPTH,
            };
            let server = PoetServer::new(pc).map_err(|source| DevnetError::Poet {
                poet: spec.id.clone(),
                source,
            })?;
            poets.push(PoetSlot {
                info: PoetInfo {
                    id: PoetId(spec.id.clone()),
                    genesis_ms: config.clock.genesis_ms,
                    phase_shift_ms: phase,
                    cycle_ms: epoch_ms,
                    cycle_gap_ms: config.clock.poet_cycle_gap_ms,
                    leaves_per_second: Some(spec.leaves_per_second),
                },
                server,
                rounds: BTreeMap::new(),
            });
        }
        let vm = Vm::new(VmConfig::new(gid), &config.genesis_accounts);
        let mut state = State {
            now_ms: config.clock.genesis_ms,
            cfg: config,
            clock,
            genesis_id: gid,
            next_layer: 0,
            poets,
            store: AtxStore::new(),
            by_smesher: BTreeMap::new(),
            by_publish: BTreeMap::new(),
            active_sets: BTreeMap::new(),
            ballots: BTreeMap::new(),
            vm,
            mempool: Vec::new(),
            receipts: HashMap::new(),
            layers: BTreeMap::new(),
            events: VecDeque::new(),
            first_event: 0,
            oldest_epoch: 0,
            persist: None,
            unsaved_atxs: None,
        };
        state.epoch_started(0)?;
        Ok(state)
    }
}

impl Devnet {
    /// The devnet's time.
    pub fn now_ms(&self) -> u64 {
        self.lock().now_ms
    }

    /// Move time to `now_ms`: run the PoETs, start epochs, apply every layer that has ended.
    /// An error leaves the devnet where it stopped (everything before that instant applied);
    /// it is a bug or an overflow, not something a caller can fix by retrying. A devnet opened
    /// with [`Devnet::open`] journals the new time (without an fsync of its own: see
    /// [`persist`]). That record is expendable (a replay advances to the next input's time
    /// anyway), so failing to write it does not fail the advance: the time has moved, and the
    /// next input that must be durable reports the storage problem.
    pub fn advance(&self, now_ms: u64) -> Result<(), DevnetError> {
        let mut s = self.lock();
        let before = s.now_ms;
        s.advance_to(now_ms)?;
        if s.now_ms > before {
            let t = s.now_ms;
            // Expendable (see above): the next durable input reports a storage problem.
            let _ = s.journal(t, persist::Input::Advance);
        }
        Ok(())
    }
}

impl State {
    fn advance_to(&mut self, now_ms: u64) -> Result<(), DevnetError> {
        if now_ms < self.now_ms {
            return Err(DevnetError::TimeWentBackwards {
                now_ms,
                last_ms: self.now_ms,
            });
        }
        loop {
            let layer_end = self.clock.layer_end(self.next_layer)?;
            let poet_next = self
                .poets
                .iter()
                .filter_map(|p| next_boundary(&p.info, self.now_ms))
                .min();
            let t = poet_next.map_or(layer_end, |p| p.min(layer_end));
            if t > now_ms {
                break;
            }
            self.now_ms = t;
            if t == layer_end {
                let layer = self.next_layer;
                self.apply_layer(layer)?;
                self.next_layer = layer + 1;
                if self.next_layer.is_multiple_of(self.clock.layers_per_epoch()) {
                    let epoch = self.clock.epoch_of_layer(self.next_layer);
                    self.epoch_started(epoch)?;
                }
            }
            self.step_poets(t)?;
        }
        self.now_ms = now_ms;
        self.step_poets(now_ms)?;
        Ok(())
    }
}

/// The first round start or end of `poet` strictly after `t_ms`.
fn next_boundary(poet: &PoetInfo, t_ms: u64) -> Option<u64> {
    let r = poet.open_round(t_ms);
    let prev_end = r.checked_sub(1).and_then(|p| poet.round_end_ms(p));
    match prev_end {
        Some(end) if end > t_ms => Some(end),
        _ => poet.round_start_ms(r),
    }
}

impl State {
    fn current_epoch(&self) -> EpochId {
        self.clock.epoch_at(self.now_ms).unwrap_or(0)
    }

    fn push_event(&mut self, event: NodeEvent) {
        let epoch = self.current_epoch();
        self.events.push_back((epoch, event));
    }

    fn step_poets(&mut self, t_ms: u64) -> Result<(), BridgeError> {
        let now = system_time(t_ms);
        for i in 0..self.poets.len() {
            let poet = self.poets[i].info.id.clone();
            let events = self.poets[i]
                .server
                .advance(now)
                .map_err(|source| BridgeError::Poet {
                    poet: poet.clone(),
                    source,
                })?;
            for e in events {
                match e {
                    RoundEvent::Started { round, members, .. } => {
                        self.push_event(NodeEvent::PoetRoundStarted {
                            poet: poet.clone(),
                            round,
                            members,
                        })
                    }
                    RoundEvent::Finished { round, leaf_count } => {
                        let slot = &mut self.poets[i];
                        let rp = slot.server.proof(round).map_err(|source| BridgeError::Poet {
                            poet: poet.clone(),
                            source,
                        })?;
                        let cfg = slot.server.config();
                        if rp
                            .proof
                            .verify_with_depth(&rp.statement, cfg.t, cfg.label_depth)
                            .is_err()
                        {
                            return Err(BridgeError::PoetProofInvalid { poet, round });
                        }
                        let proof_ref = rp.proof.reference();
                        let info = PoetRound {
                            poet: poet.clone(),
                            round,
                            proof_ref,
                            statement: rp.statement,
                            leaf_count,
                            members: rp.members.clone(),
                        };
                        self.store.insert_poet_proof(
                            proof_ref,
                            PoetProofInfo {
                                statement: info.statement,
                                leaf_count,
                            },
                        );
                        slot.rounds.insert(round, info);
                        self.push_event(NodeEvent::PoetRoundEnded {
                            poet: poet.clone(),
                            round,
                            leaf_count,
                            proof_ref,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn beacon(&self, epoch: EpochId) -> [u8; 4] {
        devnet_beacon(&self.genesis_id, epoch)
    }

    /// The active set of `epoch` from what the store holds now.
    fn compute_active_set(&self, epoch: EpochId) -> Result<ActiveSet, BridgeError> {
        let Some(publish) = epoch.checked_sub(1) else {
            return Ok(ActiveSet::default());
        };
        let atxs: Vec<ValidatedAtx> = self
            .by_publish
            .get(&publish)
            .into_iter()
            .flatten()
            .filter_map(|id| self.store.get(id).copied())
            .filter(|v| v.weight > 0 && !self.store.is_malicious(&v.smesher_id))
            .collect();
        let total_weight = atxs.iter().fold(0u64, |acc, v| acc.saturating_add(v.weight));
        let mut members = BTreeMap::new();
        for atx in atxs {
            let slots = self.cfg.eligibility.slots(atx.weight, total_weight)?;
            members.insert(atx.smesher_id, ActiveMember { atx, slots });
        }
        Ok(ActiveSet::new(total_weight, members))
    }

    fn epoch_started(&mut self, epoch: EpochId) -> Result<(), BridgeError> {
        self.store.set_current_epoch(epoch);
        let set = self.compute_active_set(epoch)?;
        self.active_sets.insert(epoch, set);
        self.push_event(NodeEvent::EpochStarted { epoch });
        self.prune(epoch.saturating_sub(self.cfg.retain_epochs));
        Ok(())
    }

    fn prune(&mut self, oldest: EpochId) {
        if oldest <= self.oldest_epoch {
            return;
        }
        self.oldest_epoch = oldest;
        let lpe = self.clock.layers_per_epoch();
        self.active_sets = self.active_sets.split_off(&oldest);
        self.ballots = self.ballots.split_off(&oldest);
        self.by_publish = self.by_publish.split_off(&oldest.saturating_sub(1));
        let first_layer = oldest.saturating_mul(lpe);
        self.layers = self.layers.split_off(&first_layer);
        self.receipts
            .retain(|_, (epoch, r)| *epoch >= oldest || r.status == crate::vm::TxStatus::Pending);
        while self.events.front().is_some_and(|(e, _)| *e < oldest) {
            self.events.pop_front();
            self.first_event += 1;
        }
        for p in &mut self.poets {
            let round = u64::from(oldest);
            p.rounds = p.rounds.split_off(&round);
            p.server.forget_rounds_before(round);
        }
    }

    fn apply_layer(&mut self, layer: LayerId) -> Result<(), BridgeError> {
        let effective_genesis = self.clock.effective_genesis_layer();
        if layer < effective_genesis {
            self.push_event(NodeEvent::LayerApplied {
                layer,
                txs: 0,
                fees: 0,
                rewarded: 0,
            });
            return Ok(());
        }
        let epoch = self.clock.epoch_of_layer(layer);
        let proposals = self.proposals(epoch, layer);
        let entries = block_reward_entries(&proposals)?;
        let txs = std::mem::take(&mut self.mempool);
        let mut split: Option<Result<crate::rewards::LayerRewards<AtxId, Address>, RewardError>> = None;
        let outcome = self.vm.apply_layer(layer, &txs, |fees| {
            let r = layer_rewards(layer, effective_genesis, &entries, fees);
            let credits = match &r {
                Ok(lr) => lr.credits.iter().map(|c| (c.coinbase, c.total_reward)).collect(),
                Err(_) => Vec::new(),
            };
            split = Some(r);
            credits
        })?;
        // `Vm::apply_layer` always calls the closure once; `None` cannot happen.
        let split = match split {
            Some(r) => r?,
            None => return Err(BridgeError::Reward(RewardError::ZeroTotalWeight)),
        };
        for o in &outcome.txs {
            self.receipts
                .insert(o.id, (epoch, TxReceipt::from_outcome(o, layer)));
        }
        let credits: Vec<Reward> = split
            .credits
            .iter()
            .map(|c| Reward {
                layer,
                coinbase: c.coinbase,
                smesher: self.store.get(&c.atx).map_or([0; 32], |v| v.smesher_id),
                atx: c.atx,
                total: c.total_reward,
                layer_reward: c.layer_reward,
            })
            .collect();
        self.push_event(NodeEvent::LayerApplied {
            layer,
            txs: outcome.txs.len(),
            fees: outcome.fees,
            rewarded: outcome.credited,
        });
        for c in &credits {
            self.push_event(NodeEvent::RewardCredited(*c));
        }
        self.layers.insert(
            layer,
            LayerRewardInfo {
                layer,
                subsidy: split.subsidy,
                fees: split.fees,
                burnt: split.burnt,
                credits,
            },
        );
        Ok(())
    }

    fn poet(&self, id: &PoetId) -> Result<usize, BridgeError> {
        self.poets
            .iter()
            .position(|p| p.info.id == *id)
            .ok_or_else(|| BridgeError::UnknownPoet(id.clone()))
    }

    fn check_epoch(&self, what: &'static str, epoch: EpochId) -> Result<(), BridgeError> {
        if epoch < self.oldest_epoch {
            return Err(BridgeError::EpochPruned {
                what,
                epoch,
                oldest: self.oldest_epoch,
            });
        }
        Ok(())
    }
}

mod ballots;
mod node;
pub mod persist;
mod snapshot;

#[cfg(test)]
mod ballot_tests;
#[cfg(test)]
mod persist_tests;
#[cfg(test)]
mod tests;
