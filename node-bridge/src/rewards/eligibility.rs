//! Proposal eligibility (§3.2): how many slots an ATX gets in its target epoch, and which layer
//! each slot's VRF output selects.
//!
//! ```text
//! slots(w) = max(1, ⌊w · LayerAvgSize · LayersPerEpoch / max(W_min, W)⌋)
//! layer_j  = first_layer(E) + (u64le(vrf_j[0..8]) mod LayersPerEpoch)
//! ```

use serde::{Deserialize, Serialize};

/// Length of an ECVRF output/proof as go-spacemesh carries it.
pub const VRF_OUTPUT_LEN: usize = 80;

/// Why no slot count or eligible layer can be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EligibilityError {
    #[error("the active set has zero total weight and the minimum active weight is zero")]
    ZeroTotalWeight,
    #[error("ATX weight {weight} exceeds the active set's total weight {total_weight}")]
    WeightExceedsTotal { weight: u64, total_weight: u64 },
    #[error("layers per epoch is zero")]
    ZeroLayersPerEpoch,
    #[error("{slots} slots do not fit a u32 eligibility count")]
    SlotsOverflow { slots: u128 },
    #[error("the layers of epoch {epoch} do not fit a u32 layer id")]
    LayerOverflow { epoch: u32 },
}

/// The network constants slots depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EligibilityParams {
    /// Expected proposals per layer (`LayerAvgSize`).
    pub layer_avg_size: u32,
    pub layers_per_epoch: u32,
    /// `W_min`: the total weight assumed when the active set is lighter.
    pub min_active_weight: u64,
}

impl EligibilityParams {
    /// §6.3: 4 proposals per layer, 12 layers (48 slots per epoch), `W_min` 1 (configurable).
    pub const fn devnet() -> Self {
        Self {
            layer_avg_size: 4,
            layers_per_epoch: 12,
            min_active_weight: 1,
        }
    }

    /// Mainnet: 50 per layer, 4032 layers, `W_min` = 1 000 000.
    pub const fn mainnet() -> Self {
        Self {
            layer_avg_size: 50,
            layers_per_epoch: 4032,
            min_active_weight: 1_000_000,
        }
    }

    /// [`slots`] with these constants.
    pub fn slots(&self, weight: u64, total_weight: u64) -> Result<u32, EligibilityError> {
        slots(
            weight,
            total_weight,
            self.layer_avg_size,
            self.layers_per_epoch,
            self.min_active_weight,
        )
    }

    /// [`eligibility_layer`] with these constants.
    pub fn eligibility_layer(
        &self,
        epoch: u32,
        vrf_output: &[u8; VRF_OUTPUT_LEN],
    ) -> Result<u32, EligibilityError> {
        eligibility_layer(epoch, self.layers_per_epoch, vrf_output)
    }
}

/// Slots (eligibility count) of an ATX of weight `weight` in an active set of total weight
/// `total_weight`: `max(1, ⌊w·LayerAvgSize·LayersPerEpoch / max(W_min, W)⌋)`, computed in
/// `u128` (the numerator is at most 128 bits).
pub fn slots(
    weight: u64,
    total_weight: u64,
    layer_avg_size: u32,
    layers_per_epoch: u32,
    min_active_weight: u64,
) -> Result<u32, EligibilityError> {
    if layers_per_epoch == 0 {
        return Err(EligibilityError::ZeroLayersPerEpoch);
    }
    if weight > total_weight {
        return Err(EligibilityError::WeightExceedsTotal { weight, total_weight });
    }
    let divisor = min_active_weight.max(total_weight);
    if divisor == 0 {
        return Err(EligibilityError::ZeroTotalWeight);
    }
    let numerator = u128::from(weight) * u128::from(layer_avg_size) * u128::from(layers_per_epoch);
    let slots = (numerator / u128::from(divisor)).max(1);
    u32::try_from(slots).map_err(|_| EligibilityError::SlotsOverflow { slots })
}

/// The layer a slot's VRF output selects in epoch `epoch`:
/// `epoch·LayersPerEpoch + (u64le(vrf[0..8]) mod LayersPerEpoch)`.
pub fn eligibility_layer(
    epoch: u32,
    layers_per_epoch: u32,
    vrf_output: &[u8; VRF_OUTPUT_LEN],
) -> Result<u32, EligibilityError> {
    if layers_per_epoch == 0 {
        return Err(EligibilityError::ZeroLayersPerEpoch);
    }
    let mut head = [0u8; 8];
    head.copy_from_slice(&vrf_output[..8]);
    let offset = u64::from_le_bytes(head) % u64::from(layers_per_epoch);
    let layer = u64::from(epoch) * u64::from(layers_per_epoch) + offset;
    u32::try_from(layer).map_err(|_| EligibilityError::LayerOverflow { epoch })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn devnet_and_mainnet_examples() {
        let dev = EligibilityParams::devnet();
        // One identity holding all the weight gets all 48 slots.
        assert_eq!(dev.slots(700, 700), Ok(48));
        assert_eq!(dev.slots(350, 700), Ok(24));
        // A tiny identity is floored to one slot (Sim-B in §6.4).
        assert_eq!(dev.slots(5, 10_000), Ok(1));
        assert_eq!(dev.slots(0, 10_000), Ok(1));
        let main = EligibilityParams::mainnet();
        // §3.2's example: 1,337 SU in a network of ~26 M SU gets ≈ 10 slots (weights are
        // units × ticks; the tick factor cancels).
        assert_eq!(main.slots(1_337 * 9_750, 26_000_000 * 9_750), Ok(10));
        // W_min dominates a small network.
        assert_eq!(main.slots(10_000, 100_000), Ok(2016));
    }

    #[test]
    fn errors() {
        assert_eq!(
            slots(1, 0, 4, 12, 0),
            Err(EligibilityError::WeightExceedsTotal {
                weight: 1,
                total_weight: 0
            })
        );
        assert_eq!(slots(0, 0, 4, 12, 0), Err(EligibilityError::ZeroTotalWeight));
        assert_eq!(slots(0, 0, 4, 12, 5), Ok(1));
        assert_eq!(slots(1, 1, 4, 0, 1), Err(EligibilityError::ZeroLayersPerEpoch));
        let big = slots(u64::MAX, u64::MAX, u32::MAX, u32::MAX, 1);
        assert_eq!(
            big,
            Err(EligibilityError::SlotsOverflow {
                slots: u128::from(u32::MAX) * u128::from(u32::MAX)
            })
        );
        assert_eq!(
            eligibility_layer(u32::MAX, 12, &[0; VRF_OUTPUT_LEN]),
            Err(EligibilityError::LayerOverflow { epoch: u32::MAX })
        );
        assert_eq!(
            eligibility_layer(1, 0, &[0; VRF_OUTPUT_LEN]),
            Err(EligibilityError::ZeroLayersPerEpoch)
        );
    }

    #[test]
    fn eligibility_layer_reads_the_first_eight_bytes_le() {
        let mut vrf = [0xFFu8; VRF_OUTPUT_LEN];
        vrf[..8].copy_from_slice(&29u64.to_le_bytes());
        assert_eq!(eligibility_layer(2, 12, &vrf), Ok(24 + 5));
        vrf[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            eligibility_layer(3, 4032, &vrf),
            Ok(3 * 4032 + (u64::MAX % 4032) as u32)
        );
    }

    proptest! {
        #[test]
        fn slots_sum_near_committee_total(
            weights in proptest::collection::vec(0u64..1_000_000_000, 1..40),
            las in 1u32..100,
            lpe in 1u32..5000,
            w_min_frac in 0u64..=100,
        ) {
            let total: u64 = weights.iter().sum();
            prop_assume!(total > 0);
            // W ≥ W_min.
            let w_min = total / 100 * w_min_frac;
            let target = u64::from(las) * u64::from(lpe);
            let n = weights.len() as u64;
            let sum: u64 = weights
                .iter()
                .map(|&w| slots(w, total, las, lpe, w_min).map(u64::from))
                .sum::<Result<u64, _>>()
                .expect("slots");
            // Flooring loses < 1 per ATX; the one-slot floor adds ≤ 1 per ATX.
            prop_assert!(sum + n > target, "sum {} target {}", sum, target);
            prop_assert!(sum <= target + n, "sum {} target {}", sum, target);
        }

        #[test]
        fn eligible_layer_is_inside_the_epoch(epoch in 0u32..100_000, lpe in 1u32..5000, vrf in proptest::collection::vec(any::<u8>(), VRF_OUTPUT_LEN)) {
            let mut out = [0u8; VRF_OUTPUT_LEN];
            out.copy_from_slice(&vrf);
            let layer = eligibility_layer(epoch, lpe, &out).expect("layer");
            prop_assert!(u64::from(layer) >= u64::from(epoch) * u64::from(lpe));
            prop_assert!(u64::from(layer) < (u64::from(epoch) + 1) * u64::from(lpe));
        }
    }
}
