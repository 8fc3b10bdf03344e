//! ATX weight and height (§2.6) and the seam for alternative weight formulas (§3.4).
//!
//! ```text
//! ticks       = LeafCount(best PoET proof) / TickSize
//! weight      = effective_units × ticks                  (v1; the default WeightFormula)
//! base_height = tick_height(positioning ATX)              (0 for the golden ATX)
//! tick_height = base_height + ticks
//! ```
//!
//! `effective_units` is the ATX's counted units (for v1: `min(previous, new)`), decided by
//! the ATX module.

use serde::{Deserialize, Serialize};

/// Mainnet PoET leaves per tick.
pub const MAINNET_TICK_SIZE: u64 = 9_331_200;
/// Devnet PoET leaves per tick (§6.3: ≈ 100 ticks per 50 s round at 1,000 leaves/s).
pub const DEVNET_TICK_SIZE: u64 = 500;

/// Why a weight or height cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightError {
    #[error("tick size is zero")]
    ZeroTickSize,
    #[error("weight of {effective_units} units × {ticks} ticks overflows u64")]
    WeightOverflow { effective_units: u32, ticks: u64 },
    #[error("tick height {base_height} + {ticks} ticks overflows u64")]
    HeightOverflow { base_height: u64, ticks: u64 },
    #[error("weight formula {formula}: {reason}")]
    Formula { formula: &'static str, reason: String },
}

/// What a weight formula may depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightInput {
    pub effective_units: u32,
    pub ticks: u64,
}

/// How an ATX's weight follows from its units and ticks. Eligibility (slots) and rewards read
/// weights only through this, so a devnet can switch in another formula (e.g. one that hands
/// back ticks lost to long PoST passes, §3.4).
pub trait WeightFormula: std::fmt::Debug + Send + Sync {
    /// A short name for logs and errors.
    fn name(&self) -> &'static str;

    fn weight(&self, input: WeightInput) -> Result<u64, WeightError>;
}

/// The network's formula: `effective_units × ticks`, overflow rejected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitsTimesTicks;

impl WeightFormula for UnitsTimesTicks {
    fn name(&self) -> &'static str {
        "units×ticks"
    }

    fn weight(&self, input: WeightInput) -> Result<u64, WeightError> {
        atx_weight(input.effective_units, input.ticks)
    }
}

/// `leaf_count / tick_size`.
pub fn ticks(leaf_count: u64, tick_size: u64) -> Result<u64, WeightError> {
    leaf_count.checked_div(tick_size).ok_or(WeightError::ZeroTickSize)
}

/// `effective_units × ticks`, or [`WeightError::WeightOverflow`].
pub fn atx_weight(effective_units: u32, ticks: u64) -> Result<u64, WeightError> {
    u64::from(effective_units)
        .checked_mul(ticks)
        .ok_or(WeightError::WeightOverflow {
            effective_units,
            ticks,
        })
}

/// The positioning ATX's tick height, or 0 when positioning on the golden ATX (`None`).
pub fn base_height(positioning_tick_height: Option<u64>) -> u64 {
    positioning_tick_height.unwrap_or(0)
}

/// `base_height + ticks`, or [`WeightError::HeightOverflow`].
pub fn tick_height(base_height: u64, ticks: u64) -> Result<u64, WeightError> {
    base_height
        .checked_add(ticks)
        .ok_or(WeightError::HeightOverflow { base_height, ticks })
}

/// Ticks, weight and heights of one ATX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtxMetrics {
    pub ticks: u64,
    pub weight: u64,
    pub base_height: u64,
    pub tick_height: u64,
}

/// All of an ATX's metrics from its best PoET proof's leaf count, its effective units and its
/// positioning ATX's tick height (`None` for the golden ATX), weighing with `formula`.
pub fn atx_metrics(
    formula: &dyn WeightFormula,
    leaf_count: u64,
    tick_size: u64,
    effective_units: u32,
    positioning_tick_height: Option<u64>,
) -> Result<AtxMetrics, WeightError> {
    let ticks = ticks(leaf_count, tick_size)?;
    let weight = formula.weight(WeightInput {
        effective_units,
        ticks,
    })?;
    let base_height = base_height(positioning_tick_height);
    Ok(AtxMetrics {
        ticks,
        weight,
        base_height,
        tick_height: tick_height(base_height, ticks)?,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// §3.4's illustration: hand back `lost_per_unit × units` ticks per ATX.
    #[derive(Debug)]
    struct Compensated {
        lost_ticks_per_unit: u64,
    }

    impl WeightFormula for Compensated {
        fn name(&self) -> &'static str {
            "compensated"
        }

        fn weight(&self, input: WeightInput) -> Result<u64, WeightError> {
            let lost = self
                .lost_ticks_per_unit
                .checked_mul(u64::from(input.effective_units))
                .ok_or(WeightError::Formula {
                    formula: self.name(),
                    reason: "lost ticks overflow".into(),
                })?;
            let ticks = input.ticks.saturating_add(lost);
            atx_weight(input.effective_units, ticks)
        }
    }

    #[test]
    fn devnet_and_mainnet_examples() {
        // 1,000 leaves/s for 50 s on the devnet ≈ 100 ticks.
        assert_eq!(ticks(50_000, DEVNET_TICK_SIZE), Ok(100));
        assert_eq!(ticks(50_499, DEVNET_TICK_SIZE), Ok(100));
        // ~78k leaves/s over 1,166,400 s on mainnet ≈ 9,750 ticks.
        assert_eq!(ticks(78_000 * 1_166_400, MAINNET_TICK_SIZE), Ok(9_750));
        let m = atx_metrics(&UnitsTimesTicks, 50_000, DEVNET_TICK_SIZE, 4, None).expect("metrics");
        assert_eq!(
            m,
            AtxMetrics {
                ticks: 100,
                weight: 400,
                base_height: 0,
                tick_height: 100
            }
        );
        let m = atx_metrics(&UnitsTimesTicks, 60_000, DEVNET_TICK_SIZE, 8, Some(100)).expect("metrics");
        assert_eq!(
            m,
            AtxMetrics {
                ticks: 120,
                weight: 960,
                base_height: 100,
                tick_height: 220
            }
        );
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(ticks(1, 0), Err(WeightError::ZeroTickSize));
        assert_eq!(
            atx_weight(u32::MAX, u64::MAX / 2),
            Err(WeightError::WeightOverflow {
                effective_units: u32::MAX,
                ticks: u64::MAX / 2
            })
        );
        assert_eq!(
            tick_height(u64::MAX, 1),
            Err(WeightError::HeightOverflow {
                base_height: u64::MAX,
                ticks: 1
            })
        );
        assert!(matches!(
            atx_metrics(&UnitsTimesTicks, u64::MAX, 1, u32::MAX, None),
            Err(WeightError::WeightOverflow { .. })
        ));
        assert!(matches!(
            atx_metrics(&UnitsTimesTicks, 10, 1, 1, Some(u64::MAX - 5)),
            Err(WeightError::HeightOverflow { .. })
        ));
    }

    #[test]
    fn formula_can_be_switched() {
        let formulas: [&dyn WeightFormula; 2] = [
            &UnitsTimesTicks,
            &Compensated {
                lost_ticks_per_unit: 2,
            },
        ];
        let weights: Vec<u64> = formulas
            .iter()
            .map(|f| atx_metrics(*f, 50_000, DEVNET_TICK_SIZE, 4, None).map(|m| m.weight))
            .collect::<Result<_, _>>()
            .expect("weights");
        assert_eq!(weights, vec![400, 4 * (100 + 8)]);
        let err = Compensated {
            lost_ticks_per_unit: u64::MAX,
        }
        .weight(WeightInput {
            effective_units: 2,
            ticks: 1,
        });
        assert!(matches!(
            err,
            Err(WeightError::Formula {
                formula: "compensated",
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn weight_is_exact_or_overflow(units in any::<u32>(), ticks in any::<u64>()) {
            let exact = u128::from(units) * u128::from(ticks);
            match atx_weight(units, ticks) {
                Ok(w) => prop_assert_eq!(u128::from(w), exact),
                Err(e) => {
                    prop_assert!(exact > u128::from(u64::MAX));
                    prop_assert_eq!(e, WeightError::WeightOverflow { effective_units: units, ticks });
                }
            }
        }
    }
}
