//! The ATX builder's schedule (`shared/spec/devnet.md` §2.7, §1.9) as a pure function.
//!
//! ```text
//! current = epoch(now)  (0 before genesis); with a previous ATX: max(current, prev.PublishEpoch)
//! if now ≥ round_start(current): current += 1        # this round's registration window is missed
//! publish = current + 1, target = publish + 1
//! register at round_start(current) − GracePeriod (positioning ATX chosen within its timeout)
//! registration closes at round_start(current); the round ends at round_end(current)
//! PoET proof deadline (also the `deadline` sent with the registration) = end of publish epoch − CycleGap
//! the ATX may be signed from the start of the publish epoch until its end (hard deadline)
//! ```

use serde::{Deserialize, Serialize};

use super::{Clock, ClockError, EpochId, RoundId};

/// What one ATX-building cycle of an identity looks like, all instants in unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuilderTimeline {
    /// The PoET round the identity registers for.
    pub poet_round: RoundId,
    /// The epoch the resulting ATX is published in (`round + 1`).
    pub publish_epoch: EpochId,
    /// The epoch the ATX makes the identity eligible in (`publish + 1`).
    pub target_epoch: EpochId,
    /// When to build the challenge and register: `round_start − GracePeriod`. May lie in the
    /// past when `now` is already inside the grace window; then register at once.
    pub register_at_ms: u64,
    /// The positioning-ATX search ends here: `register_at + positioning timeout`.
    pub positioning_deadline_ms: u64,
    /// Registrations must arrive before this instant: `round_start(poet_round)`.
    pub registration_deadline_ms: u64,
    /// The round stops executing and its proof becomes available: `round_end(poet_round)`.
    pub round_end_ms: u64,
    /// Give up on the PoET proof after this: end of the publish epoch − CycleGap. It is also
    /// the `deadline` sent with the registration.
    pub proof_deadline_ms: u64,
    /// The ATX is broadcast no earlier than the start of the publish epoch.
    pub publish_not_before_ms: u64,
    /// Hard deadline for PoST and publication: the end of the publish epoch. Past it the
    /// challenge has expired.
    pub publish_deadline_ms: u64,
}

impl BuilderTimeline {
    /// Whether `now_ms` is past the registration deadline (the round has started).
    pub fn registration_missed(&self, now_ms: u64) -> bool {
        now_ms >= self.registration_deadline_ms
    }

    /// Whether the PoET proof can no longer be used (past `proof_deadline_ms`).
    pub fn proof_expired(&self, now_ms: u64) -> bool {
        now_ms > self.proof_deadline_ms
    }

    /// Whether the challenge has expired: the publish epoch is over.
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.publish_deadline_ms
    }
}

impl Clock {
    /// The cycle whose ATX is published in `publish_epoch` (≥ 1): what
    /// [`builder_timeline`](Self::builder_timeline) answers at that cycle's registration time. A
    /// restarted builder rebuilds the timeline of a challenge it stored with this.
    pub fn timeline_for_publish_epoch(&self, publish_epoch: EpochId) -> Result<BuilderTimeline, ClockError> {
        let round_epoch = publish_epoch
            .checked_sub(1)
            .ok_or(ClockError::EpochOverflow { epoch: 0 })?;
        // Validated: grace ≤ phase shift, so the registration time lies in `round_epoch`.
        let at = self.round_start(self.round_in_epoch(round_epoch))? - self.params.grace_period_ms;
        self.builder_timeline(at, None)
    }

    /// The builder's next cycle at `now_ms` for an identity whose previous ATX (if any) was
    /// published in `prev_publish_epoch`. A registration window that is already closed at
    /// `now_ms` moves the identity to the next round.
    pub fn builder_timeline(
        &self,
        now_ms: u64,
        prev_publish_epoch: Option<EpochId>,
    ) -> Result<BuilderTimeline, ClockError> {
        let mut current = match self.epoch_at(now_ms) {
            Ok(epoch) => epoch,
            Err(ClockError::BeforeGenesis { .. }) => 0,
            Err(e) => return Err(e),
        };
        if let Some(prev) = prev_publish_epoch {
            current = current.max(prev);
        }
        if now_ms >= self.round_start(self.round_in_epoch(current))? {
            current = current.checked_add(1).ok_or(ClockError::EpochOverflow {
                epoch: u64::from(current) + 1,
            })?;
        }
        let round = self.round_in_epoch(current);
        let publish_epoch = current.checked_add(1).ok_or(ClockError::EpochOverflow {
            epoch: u64::from(current) + 1,
        })?;
        let target_epoch = publish_epoch.checked_add(1).ok_or(ClockError::EpochOverflow {
            epoch: u64::from(publish_epoch) + 1,
        })?;

        let round_start = self.round_start(round)?;
        // Validated: grace ≤ phase shift, so this is never before genesis.
        let register_at_ms = round_start - self.params.grace_period_ms;
        let publish_not_before_ms = self.epoch_start(publish_epoch)?;
        let publish_deadline_ms = self.epoch_end(publish_epoch)?;
        Ok(BuilderTimeline {
            poet_round: round,
            publish_epoch,
            target_epoch,
            register_at_ms,
            // Validated: positioning timeout ≤ grace, so this is ≤ round_start.
            positioning_deadline_ms: register_at_ms + self.params.positioning_atx_timeout_ms,
            registration_deadline_ms: round_start,
            round_end_ms: self.round_end(round)?,
            // Validated: cycle gap < epoch, so this is inside the publish epoch.
            proof_deadline_ms: publish_deadline_ms - self.params.poet_cycle_gap_ms,
            publish_not_before_ms,
            publish_deadline_ms,
        })
    }
}
