//! Genesis, layers, epochs and the PoET round schedule (`shared/spec/devnet.md` §1.2, §3.1).
//!
//! All instants are unix milliseconds (`u64`); all arithmetic is integer and checked, so a
//! query far outside the representable range is a [`ClockError`], never a wrap or a panic.
//!
//! ```text
//! layer_start(L)   = genesis + L·LayerDuration          epoch(L) = ⌊L / LayersPerEpoch⌋
//! epoch_start(e)   = genesis + e·EpochDuration          EpochDuration = LayerDuration·LayersPerEpoch
//! round_start(k)   = genesis + PhaseShift + k·EpochDuration   (round k starts inside epoch k)
//! round_end(k)     = round_start(k) + EpochDuration − CycleGap
//! open_round(t)    = 0 if t < genesis + PhaseShift, else ⌊(t − genesis − PhaseShift)/EpochDuration⌋ + 1
//! effective genesis = 2·LayersPerEpoch − 1 (last layer of epoch 1)
//! ```
//!
//! [`ClockParams`] is plain configuration; [`Clock`] is the validated form every query runs on.
//! The ATX builder's schedule (§2.7) is [`Clock::builder_timeline`].

mod builder;

pub use builder::BuilderTimeline;

use serde::{Deserialize, Serialize};

/// A layer number (go-spacemesh `LayerID`, `uint32`).
pub type LayerId = u32;
/// An epoch number (go-spacemesh `EpochID`, `uint32`).
pub type EpochId = u32;
/// A PoET round number. Round `k` starts inside epoch `k`, so round ids are epoch numbers (the
/// PoET names its rounds by the decimal string of this number).
pub type RoundId = u32;

/// Unix milliseconds of the mainnet genesis, 2023-07-14T08:00:00Z (`shared/spec/node.md` §2.1).
pub const MAINNET_GENESIS_MS: u64 = 1_689_321_600_000;

const SECOND_MS: u64 = 1_000;
const MINUTE_MS: u64 = 60 * SECOND_MS;
const HOUR_MS: u64 = 60 * MINUTE_MS;

/// Network timing: the node's clock and the PoET round schedule it is configured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockParams {
    /// Genesis instant, unix milliseconds: layer 0 and epoch 0 start here.
    pub genesis_ms: u64,
    /// Length of one layer.
    pub layer_duration_ms: u64,
    /// Layers in one epoch; the PoET's `EpochDuration` is `layer_duration_ms × layers_per_epoch`.
    pub layers_per_epoch: u32,
    /// How far into each epoch a PoET round starts (`PhaseShift`).
    pub poet_phase_shift_ms: u64,
    /// Idle time between one round's end and the next round's start (`CycleGap`).
    pub poet_cycle_gap_ms: u64,
    /// How long before a round starts the node builds its challenge and registers (`GracePeriod`).
    pub grace_period_ms: u64,
    /// Budget for choosing the positioning ATX, spent inside the grace period.
    pub positioning_atx_timeout_ms: u64,
}

impl ClockParams {
    /// The embedded devnet of §6.3: 5 s layers, 12 per epoch (60 s epochs), phase shift 40 s,
    /// cycle gap 10 s (rounds run 50 s), grace period 4 s, positioning timeout 3 s. Genesis is
    /// 0; set the real instant with [`ClockParams::with_genesis_ms`].
    pub const fn devnet() -> Self {
        Self {
            genesis_ms: 0,
            layer_duration_ms: 5 * SECOND_MS,
            layers_per_epoch: 12,
            poet_phase_shift_ms: 40 * SECOND_MS,
            poet_cycle_gap_ms: 10 * SECOND_MS,
            grace_period_ms: 4 * SECOND_MS,
            positioning_atx_timeout_ms: 3 * SECOND_MS,
        }
    }

    /// Mainnet (`config/mainnet.go`): genesis 2023-07-14T08:00:00Z, 5 min layers, 4032 per
    /// epoch (14 days), phase shift 240 h, cycle gap 12 h (rounds run 324 h), grace period 1 h,
    /// positioning timeout 50 min.
    pub const fn mainnet() -> Self {
        Self {
            genesis_ms: MAINNET_GENESIS_MS,
            layer_duration_ms: 5 * MINUTE_MS,
            layers_per_epoch: 4032,
            poet_phase_shift_ms: 240 * HOUR_MS,
            poet_cycle_gap_ms: 12 * HOUR_MS,
            grace_period_ms: HOUR_MS,
            positioning_atx_timeout_ms: 50 * MINUTE_MS,
        }
    }

    /// The same parameters with another genesis instant.
    pub const fn with_genesis_ms(mut self, genesis_ms: u64) -> Self {
        self.genesis_ms = genesis_ms;
        self
    }

    /// The same parameters with the round schedule of one PoET (its phase shift and cycle gap):
    /// the clock an identity registered with that PoET builds its cycle by. The result still has
    /// to pass [`validate`](Self::validate) (a phase shorter than the grace period does not).
    pub const fn with_poet_schedule(mut self, phase_shift_ms: u64, cycle_gap_ms: u64) -> Self {
        self.poet_phase_shift_ms = phase_shift_ms;
        self.poet_cycle_gap_ms = cycle_gap_ms;
        self
    }

    /// `layer_duration_ms × layers_per_epoch`, if it fits.
    pub fn epoch_duration_ms(&self) -> Option<u64> {
        self.layer_duration_ms
            .checked_mul(u64::from(self.layers_per_epoch))
    }

    /// Checks the parameters against each other; the first violation found is returned.
    pub fn validate(&self) -> Result<(), ClockParamsError> {
        if self.layer_duration_ms == 0 {
            return Err(ClockParamsError::ZeroLayerDuration);
        }
        if self.layers_per_epoch == 0 {
            return Err(ClockParamsError::ZeroLayersPerEpoch);
        }
        // The effective genesis layer 2·LayersPerEpoch − 1 must be a layer id.
        if self.layers_per_epoch > u32::MAX / 2 {
            return Err(ClockParamsError::TooManyLayersPerEpoch {
                layers_per_epoch: self.layers_per_epoch,
            });
        }
        let epoch_ms = self
            .epoch_duration_ms()
            .ok_or(ClockParamsError::EpochDurationOverflow {
                layer_duration_ms: self.layer_duration_ms,
                layers_per_epoch: self.layers_per_epoch,
            })?;
        if self.poet_phase_shift_ms >= epoch_ms {
            return Err(ClockParamsError::PhaseShiftNotBelowEpoch {
                phase_shift_ms: self.poet_phase_shift_ms,
                epoch_ms,
            });
        }
        if self.poet_cycle_gap_ms >= epoch_ms {
            return Err(ClockParamsError::CycleGapNotBelowEpoch {
                cycle_gap_ms: self.poet_cycle_gap_ms,
                epoch_ms,
            });
        }
        if self.grace_period_ms > self.poet_phase_shift_ms {
            return Err(ClockParamsError::GraceExceedsPhaseShift {
                grace_period_ms: self.grace_period_ms,
                phase_shift_ms: self.poet_phase_shift_ms,
            });
        }
        if self.positioning_atx_timeout_ms > self.grace_period_ms {
            return Err(ClockParamsError::PositioningTimeoutExceedsGrace {
                positioning_atx_timeout_ms: self.positioning_atx_timeout_ms,
                grace_period_ms: self.grace_period_ms,
            });
        }
        // Round 0 must start at a representable instant, so that every query up to the first
        // round is answerable.
        if self.genesis_ms.checked_add(epoch_ms).is_none() {
            return Err(ClockParamsError::GenesisTooLate {
                genesis_ms: self.genesis_ms,
            });
        }
        Ok(())
    }
}

/// Why a set of [`ClockParams`] is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockParamsError {
    #[error("layer duration is zero")]
    ZeroLayerDuration,
    #[error("layers per epoch is zero")]
    ZeroLayersPerEpoch,
    #[error("{layers_per_epoch} layers per epoch: the effective genesis layer 2·n − 1 does not fit a u32")]
    TooManyLayersPerEpoch { layers_per_epoch: u32 },
    #[error("epoch duration {layer_duration_ms} ms × {layers_per_epoch} layers overflows u64")]
    EpochDurationOverflow {
        layer_duration_ms: u64,
        layers_per_epoch: u32,
    },
    #[error("PoET phase shift {phase_shift_ms} ms is not shorter than the epoch ({epoch_ms} ms)")]
    PhaseShiftNotBelowEpoch { phase_shift_ms: u64, epoch_ms: u64 },
    #[error("PoET cycle gap {cycle_gap_ms} ms is not shorter than the epoch ({epoch_ms} ms): the round would not run")]
    CycleGapNotBelowEpoch { cycle_gap_ms: u64, epoch_ms: u64 },
    #[error("grace period {grace_period_ms} ms exceeds the phase shift {phase_shift_ms} ms: registration for round 0 would precede genesis")]
    GraceExceedsPhaseShift {
        grace_period_ms: u64,
        phase_shift_ms: u64,
    },
    #[error("positioning-ATX timeout {positioning_atx_timeout_ms} ms exceeds the grace period {grace_period_ms} ms")]
    PositioningTimeoutExceedsGrace {
        positioning_atx_timeout_ms: u64,
        grace_period_ms: u64,
    },
    #[error("genesis {genesis_ms} ms is so late that the first epoch overflows u64")]
    GenesisTooLate { genesis_ms: u64 },
}

/// Why a clock query has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("instant {t_ms} ms is before genesis ({genesis_ms} ms)")]
    BeforeGenesis { t_ms: u64, genesis_ms: u64 },
    #[error("{what} for {index} overflows the u64 millisecond clock")]
    TimeOverflow { what: &'static str, index: u64 },
    #[error("layer {layer} at or after {t_ms} ms does not fit a u32 layer id")]
    LayerOverflow { layer: u64, t_ms: u64 },
    #[error("epoch {epoch} does not fit a u32 epoch id")]
    EpochOverflow { epoch: u64 },
    #[error("the layers of epoch {epoch} do not fit a u32 layer id")]
    EpochLayersOverflow { epoch: EpochId },
    #[error("PoET round {round} does not fit a u32 round id")]
    RoundOverflow { round: u64 },
}

/// Validated [`ClockParams`] and the queries over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    params: ClockParams,
    epoch_ms: u64,
}

impl Clock {
    /// Validates `params` (see [`ClockParams::validate`]).
    pub fn new(params: ClockParams) -> Result<Self, ClockParamsError> {
        params.validate()?;
        let epoch_ms = params
            .epoch_duration_ms()
            .ok_or(ClockParamsError::EpochDurationOverflow {
                layer_duration_ms: params.layer_duration_ms,
                layers_per_epoch: params.layers_per_epoch,
            })?;
        Ok(Self { params, epoch_ms })
    }

    pub fn params(&self) -> &ClockParams {
        &self.params
    }

    pub fn genesis_ms(&self) -> u64 {
        self.params.genesis_ms
    }

    pub fn layers_per_epoch(&self) -> u32 {
        self.params.layers_per_epoch
    }

    /// `LayerDuration × LayersPerEpoch`, also the PoET's `EpochDuration`.
    pub fn epoch_duration_ms(&self) -> u64 {
        self.epoch_ms
    }

    /// How long a PoET round executes: `EpochDuration − CycleGap`.
    pub fn round_duration_ms(&self) -> u64 {
        // Validated: cycle gap < epoch.
        self.epoch_ms - self.params.poet_cycle_gap_ms
    }

    /// The effective genesis layer `2·LayersPerEpoch − 1`, the last layer of epoch 1: the first
    /// layer the VM applies; subsidies count layers from here.
    pub fn effective_genesis_layer(&self) -> LayerId {
        // Validated: layers_per_epoch ≤ u32::MAX / 2.
        2 * self.params.layers_per_epoch - 1
    }

    /// Milliseconds since genesis, or [`ClockError::BeforeGenesis`].
    fn since_genesis(&self, t_ms: u64) -> Result<u64, ClockError> {
        t_ms.checked_sub(self.params.genesis_ms)
            .ok_or(ClockError::BeforeGenesis {
                t_ms,
                genesis_ms: self.params.genesis_ms,
            })
    }

    /// `genesis + offset`.
    fn after_genesis(&self, offset: Option<u64>, what: &'static str, index: u64) -> Result<u64, ClockError> {
        offset
            .and_then(|o| self.params.genesis_ms.checked_add(o))
            .ok_or(ClockError::TimeOverflow { what, index })
    }

    /// The layer in progress at `t_ms` (a layer covers `[layer_start(L), layer_start(L+1))`).
    pub fn layer_at(&self, t_ms: u64) -> Result<LayerId, ClockError> {
        let layer = self.since_genesis(t_ms)? / self.params.layer_duration_ms;
        LayerId::try_from(layer).map_err(|_| ClockError::LayerOverflow { layer, t_ms })
    }

    /// `genesis + L·LayerDuration`.
    pub fn layer_start(&self, layer: LayerId) -> Result<u64, ClockError> {
        let offset = u64::from(layer).checked_mul(self.params.layer_duration_ms);
        self.after_genesis(offset, "layer start", u64::from(layer))
    }

    /// `layer_start(L + 1)`: the exclusive end of layer `L`.
    pub fn layer_end(&self, layer: LayerId) -> Result<u64, ClockError> {
        let offset = (u64::from(layer) + 1).checked_mul(self.params.layer_duration_ms);
        self.after_genesis(offset, "layer end", u64::from(layer))
    }

    /// `⌊L / LayersPerEpoch⌋`.
    pub fn epoch_of_layer(&self, layer: LayerId) -> EpochId {
        layer / self.params.layers_per_epoch
    }

    /// The epoch in progress at `t_ms`.
    pub fn epoch_at(&self, t_ms: u64) -> Result<EpochId, ClockError> {
        let epoch = self.since_genesis(t_ms)? / self.epoch_ms;
        EpochId::try_from(epoch).map_err(|_| ClockError::EpochOverflow { epoch })
    }

    /// `genesis + e·EpochDuration`.
    pub fn epoch_start(&self, epoch: EpochId) -> Result<u64, ClockError> {
        let offset = u64::from(epoch).checked_mul(self.epoch_ms);
        self.after_genesis(offset, "epoch start", u64::from(epoch))
    }

    /// `epoch_start(e + 1)`: the exclusive end of epoch `e`.
    pub fn epoch_end(&self, epoch: EpochId) -> Result<u64, ClockError> {
        let offset = (u64::from(epoch) + 1).checked_mul(self.epoch_ms);
        self.after_genesis(offset, "epoch end", u64::from(epoch))
    }

    /// `e·LayersPerEpoch`.
    pub fn first_layer(&self, epoch: EpochId) -> Result<LayerId, ClockError> {
        epoch
            .checked_mul(self.params.layers_per_epoch)
            .ok_or(ClockError::EpochLayersOverflow { epoch })
    }

    /// `(e + 1)·LayersPerEpoch − 1`.
    pub fn last_layer(&self, epoch: EpochId) -> Result<LayerId, ClockError> {
        let next = u64::from(epoch) + 1;
        let last = next * u64::from(self.params.layers_per_epoch) - 1;
        LayerId::try_from(last).map_err(|_| ClockError::EpochLayersOverflow { epoch })
    }

    /// `genesis + PhaseShift + k·EpochDuration`: round `k` stops accepting registrations and
    /// starts executing.
    pub fn round_start(&self, round: RoundId) -> Result<u64, ClockError> {
        let offset = u64::from(round)
            .checked_mul(self.epoch_ms)
            .and_then(|o| o.checked_add(self.params.poet_phase_shift_ms));
        self.after_genesis(offset, "PoET round start", u64::from(round))
    }

    /// `round_start(k) + EpochDuration − CycleGap`: execution of round `k` stops and its proof
    /// becomes available.
    pub fn round_end(&self, round: RoundId) -> Result<u64, ClockError> {
        self.round_start(round)?
            .checked_add(self.round_duration_ms())
            .ok_or(ClockError::TimeOverflow {
                what: "PoET round end",
                index: u64::from(round),
            })
    }

    /// When round `k` opens for registration: the start of round `k − 1`, and genesis for
    /// round 0 (a PoET started before genesis accepts round-0 registrations from its start).
    pub fn round_registration_opens(&self, round: RoundId) -> Result<u64, ClockError> {
        match round.checked_sub(1) {
            None => Ok(self.params.genesis_ms),
            Some(prev) => self.round_start(prev),
        }
    }

    /// The round accepting registrations at `t_ms`: 0 until `genesis + PhaseShift` (also before
    /// genesis), then `⌊(t − genesis − PhaseShift)/EpochDuration⌋ + 1`. At exactly
    /// `round_start(k)` the open round is already `k + 1`.
    pub fn open_round(&self, t_ms: u64) -> Result<RoundId, ClockError> {
        let first_start = self.params.genesis_ms + self.params.poet_phase_shift_ms; // validated
        match t_ms.checked_sub(first_start) {
            None => Ok(0),
            Some(since) => {
                let round = since / self.epoch_ms + 1;
                RoundId::try_from(round).map_err(|_| ClockError::RoundOverflow { round })
            }
        }
    }

    /// The round that starts inside epoch `e` (at `epoch_start(e) + PhaseShift`). With a phase
    /// shift below one epoch this is round `e`.
    pub fn round_in_epoch(&self, epoch: EpochId) -> RoundId {
        epoch
    }

    /// The epoch round `k` starts in (the inverse of [`Clock::round_in_epoch`]).
    pub fn epoch_of_round(&self, round: RoundId) -> EpochId {
        round
    }

    /// The jitter window after a round's end in which the node fetches proofs: 0.02 %–0.04 % of
    /// `CycleGap` (≈ 8.6–17.3 s on mainnet; 2–4 ms on the devnet), as `(min, max)` offsets.
    pub fn proof_fetch_jitter_ms(&self) -> (u64, u64) {
        let gap = self.params.poet_cycle_gap_ms;
        (gap * 2 / 10_000, gap * 4 / 10_000)
    }
}

#[cfg(test)]
mod tests;
