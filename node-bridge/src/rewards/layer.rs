//! Per-layer rewards (§3.3).
//!
//! ```text
//! reward_weight(p) = ATX.weight × (#eligibility proofs in p) / EligibilityCount(ATX, E)   (exact rational)
//! total            = subsidy(L − effective_genesis) + Σ fees
//! credit(r)        = ⌊total · r.weight / Σ weights⌋ to coinbase(r.ATX)    — the remainder is burnt
//! ```
//!
//! One proposal per ATX per layer: a second one is an error. Shares are computed exactly with
//! big integers (`Σ weights` of rationals with unrelated denominators does not fit 128 bits in
//! general), as go-spacemesh does with `big.Rat`. Each credit also carries its subsidy part,
//! `⌊subsidy · share⌋` (go-spacemesh's `LayerReward`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bigint::BigUint;
use super::subsidy::{subsidy_for_layer, SubsidyError};

/// Why a layer's rewards cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewardError {
    #[error("reward weight has a zero denominator")]
    ZeroDenominator,
    #[error("ATX's eligibility count is zero")]
    ZeroEligibilityCount,
    #[error("proposal carries no eligibility proofs")]
    NoEligibilityProofs,
    #[error("proposal carries {proofs} eligibility proofs but the ATX has only {eligibility_count} slots")]
    TooManyProofs { proofs: u32, eligibility_count: u32 },
    #[error("entries {first} and {second} are for the same ATX: one proposal per ATX per layer")]
    DuplicateAtx { first: usize, second: usize },
    #[error("the layer's reward weights sum to zero")]
    ZeroTotalWeight,
    #[error("subsidy {subsidy} + fees {fees} overflows u64")]
    TotalOverflow { subsidy: u64, fees: u64 },
    #[error(transparent)]
    Subsidy(#[from] SubsidyError),
}

/// A non-negative rational `numerator / denominator` in lowest terms. Serialized as the pair
/// `[numerator, denominator]`; deserializing checks and reduces it like [`RewardWeight::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "(u128, u128)", into = "(u128, u128)")]
pub struct RewardWeight {
    numerator: u128,
    denominator: u128,
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl RewardWeight {
    /// `numerator / denominator`, reduced; a zero denominator is an error.
    pub fn new(numerator: u128, denominator: u128) -> Result<Self, RewardError> {
        if denominator == 0 {
            return Err(RewardError::ZeroDenominator);
        }
        let g = gcd(numerator, denominator);
        Ok(Self {
            numerator: numerator / g,
            denominator: denominator / g,
        })
    }

    pub fn numerator(&self) -> u128 {
        self.numerator
    }

    pub fn denominator(&self) -> u128 {
        self.denominator
    }

    pub fn is_zero(&self) -> bool {
        self.numerator == 0
    }
}

impl TryFrom<(u128, u128)> for RewardWeight {
    type Error = RewardError;

    fn try_from((numerator, denominator): (u128, u128)) -> Result<Self, RewardError> {
        Self::new(numerator, denominator)
    }
}

impl From<RewardWeight> for (u128, u128) {
    fn from(w: RewardWeight) -> Self {
        (w.numerator, w.denominator)
    }
}

/// `atx_weight × proofs / eligibility_count`, exact. `proofs` must be in `1..=eligibility_count`
/// (a ballot lists distinct slot indices below the count).
pub fn reward_weight(
    atx_weight: u64,
    proofs: u32,
    eligibility_count: u32,
) -> Result<RewardWeight, RewardError> {
    if eligibility_count == 0 {
        return Err(RewardError::ZeroEligibilityCount);
    }
    if proofs == 0 {
        return Err(RewardError::NoEligibilityProofs);
    }
    if proofs > eligibility_count {
        return Err(RewardError::TooManyProofs {
            proofs,
            eligibility_count,
        });
    }
    RewardWeight::new(
        u128::from(atx_weight) * u128::from(proofs),
        u128::from(eligibility_count),
    )
}

/// One proposal hare agreed on, as the block builder sees it. `A` identifies the ATX, `C` is
/// the coinbase address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalReward<A, C> {
    pub atx: A,
    pub coinbase: C,
    /// The ATX's weight (units × ticks).
    pub atx_weight: u64,
    /// Eligibility proofs in this proposal.
    pub eligibility_proofs: u32,
    /// The ATX's slot count in this epoch (its reference ballot's `EligibilityCount`).
    pub eligibility_count: u32,
}

/// One reward entry of a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardEntry<A, C> {
    pub atx: A,
    pub coinbase: C,
    pub weight: RewardWeight,
}

/// The block's reward entries for the agreed proposals of one layer, in the given order.
pub fn block_reward_entries<A: Ord + Clone, C: Clone>(
    proposals: &[ProposalReward<A, C>],
) -> Result<Vec<RewardEntry<A, C>>, RewardError> {
    check_unique(proposals.iter().map(|p| &p.atx))?;
    proposals
        .iter()
        .map(|p| {
            Ok(RewardEntry {
                atx: p.atx.clone(),
                coinbase: p.coinbase.clone(),
                weight: reward_weight(p.atx_weight, p.eligibility_proofs, p.eligibility_count)?,
            })
        })
        .collect()
}

fn check_unique<'a, A: Ord + 'a>(atxs: impl Iterator<Item = &'a A>) -> Result<(), RewardError> {
    let mut seen = BTreeMap::new();
    for (i, atx) in atxs.enumerate() {
        if let Some(first) = seen.insert(atx, i) {
            return Err(RewardError::DuplicateAtx { first, second: i });
        }
    }
    Ok(())
}

/// What one entry is paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit<A, C> {
    pub atx: A,
    pub coinbase: C,
    /// `⌊total · share⌋`, credited to the coinbase.
    pub total_reward: u64,
    /// `⌊subsidy · share⌋`: the part of `total_reward` that is new issuance (for reporting).
    pub layer_reward: u64,
}

/// The outcome of applying one layer's rewards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRewards<A, C> {
    pub subsidy: u64,
    pub fees: u64,
    /// `subsidy + fees`.
    pub total: u64,
    /// One per entry, in entry order.
    pub credits: Vec<Credit<A, C>>,
    /// `total − Σ credits`: never credited to anyone (all of `total` for an empty layer).
    pub burnt: u64,
}

/// Splits `subsidy + fees` among `entries` by weight, flooring each credit.
pub fn distribute_rewards<A: Ord + Clone, C: Clone>(
    entries: &[RewardEntry<A, C>],
    subsidy: u64,
    fees: u64,
) -> Result<LayerRewards<A, C>, RewardError> {
    check_unique(entries.iter().map(|e| &e.atx))?;
    let total = subsidy
        .checked_add(fees)
        .ok_or(RewardError::TotalOverflow { subsidy, fees })?;
    if entries.is_empty() {
        return Ok(LayerRewards {
            subsidy,
            fees,
            total,
            credits: Vec::new(),
            burnt: total,
        });
    }

    // share_i = (a_i / b_i) / Σ_j (a_j / b_j) = a_i·P_i / Σ_j a_j·P_j with P_i = Π_{j≠i} b_j.
    let n = entries.len();
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(BigUint::one());
    for e in entries {
        let next = prefix[prefix.len() - 1].mul_u128(e.weight.denominator);
        prefix.push(next);
    }
    let mut suffix = vec![BigUint::one(); n + 1];
    for i in (0..n).rev() {
        suffix[i] = suffix[i + 1].mul_u128(entries[i].weight.denominator);
    }
    let scaled: Vec<BigUint> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| prefix[i].mul(&suffix[i + 1]).mul_u128(e.weight.numerator))
        .collect();
    let sum = scaled.iter().fold(BigUint::default(), |acc, s| acc.add(s));
    if sum.is_zero() {
        return Err(RewardError::ZeroTotalWeight);
    }

    let total_big = BigUint::from_u128(u128::from(total));
    let subsidy_big = BigUint::from_u128(u128::from(subsidy));
    let mut credits = Vec::with_capacity(n);
    let mut credited = 0u64;
    for (e, s) in entries.iter().zip(&scaled) {
        // share ≤ 1, so both quotients are at most `total` and fit a u64.
        let total_reward = BigUint::div_floor_u64(&total_big.mul(s), &sum).unwrap_or(0);
        let layer_reward = BigUint::div_floor_u64(&subsidy_big.mul(s), &sum).unwrap_or(0);
        credited += total_reward; // Σ ⌊total·share_i⌋ ≤ total
        credits.push(Credit {
            atx: e.atx.clone(),
            coinbase: e.coinbase.clone(),
            total_reward,
            layer_reward,
        });
    }
    Ok(LayerRewards {
        subsidy,
        fees,
        total,
        credits,
        burnt: total - credited,
    })
}

/// Applies layer `layer`'s rewards: the subsidy is `subsidy(layer − effective_genesis)`.
pub fn layer_rewards<A: Ord + Clone, C: Clone>(
    layer: u32,
    effective_genesis: u32,
    entries: &[RewardEntry<A, C>],
    fees: u64,
) -> Result<LayerRewards<A, C>, RewardError> {
    let subsidy = subsidy_for_layer(layer, effective_genesis)?;
    distribute_rewards(entries, subsidy, fees)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::rewards::subsidy::subsidy;

    type Entry = RewardEntry<u32, &'static str>;

    fn entry(atx: u32, coinbase: &'static str, num: u128, den: u128) -> Entry {
        RewardEntry {
            atx,
            coinbase,
            weight: RewardWeight::new(num, den).expect("weight"),
        }
    }

    #[test]
    fn reward_weight_is_reduced_and_checked() {
        let w = reward_weight(400, 2, 8).expect("weight");
        assert_eq!((w.numerator(), w.denominator()), (100, 1));
        let w = reward_weight(7, 2, 6).expect("weight");
        assert_eq!((w.numerator(), w.denominator()), (7, 3));
        assert_eq!(reward_weight(1, 1, 0), Err(RewardError::ZeroEligibilityCount));
        assert_eq!(reward_weight(1, 0, 3), Err(RewardError::NoEligibilityProofs));
        assert_eq!(
            reward_weight(1, 4, 3),
            Err(RewardError::TooManyProofs {
                proofs: 4,
                eligibility_count: 3
            })
        );
        assert_eq!(RewardWeight::new(1, 0), Err(RewardError::ZeroDenominator));
        let max = reward_weight(u64::MAX, u32::MAX, u32::MAX).expect("weight");
        assert_eq!((max.numerator(), max.denominator()), (u128::from(u64::MAX), 1));
    }

    #[test]
    fn reward_weight_serde_checks() {
        let w: RewardWeight = serde_json::from_str("[6, 4]").expect("decode");
        assert_eq!((w.numerator(), w.denominator()), (3, 2));
        assert_eq!(serde_json::to_string(&w).expect("encode"), "[3,2]");
        assert!(serde_json::from_str::<RewardWeight>("[1, 0]").is_err());
    }

    #[test]
    fn duplicates_are_rejected() {
        let p = |atx| ProposalReward {
            atx,
            coinbase: "c",
            atx_weight: 10,
            eligibility_proofs: 1,
            eligibility_count: 2,
        };
        assert_eq!(
            block_reward_entries(&[p(1), p(2), p(1)]),
            Err(RewardError::DuplicateAtx { first: 0, second: 2 })
        );
        let e = [entry(5, "a", 1, 1), entry(5, "b", 1, 1)];
        assert_eq!(
            distribute_rewards(&e, 10, 0),
            Err(RewardError::DuplicateAtx { first: 0, second: 1 })
        );
    }

    #[test]
    fn splits_with_floor_and_burns_the_rest() {
        // Weights 1/3, 1/3, 1/3 of 100: 33 each, 1 burnt.
        let e = [entry(1, "a", 1, 3), entry(2, "b", 2, 6), entry(3, "c", 5, 15)];
        let r = distribute_rewards(&e, 90, 10).expect("rewards");
        assert_eq!(r.total, 100);
        assert_eq!(
            r.credits.iter().map(|c| c.total_reward).collect::<Vec<_>>(),
            vec![33, 33, 33]
        );
        assert_eq!(
            r.credits.iter().map(|c| c.layer_reward).collect::<Vec<_>>(),
            vec![30, 30, 30]
        );
        assert_eq!(r.burnt, 1);
        // Two proposals, weights 960·1/2 and 400·3/4: shares 480/780 and 300/780.
        let entries = block_reward_entries(&[
            ProposalReward {
                atx: 1u32,
                coinbase: "x",
                atx_weight: 960,
                eligibility_proofs: 1,
                eligibility_count: 2,
            },
            ProposalReward {
                atx: 2u32,
                coinbase: "y",
                atx_weight: 400,
                eligibility_proofs: 3,
                eligibility_count: 4,
            },
        ])
        .expect("entries");
        let r = distribute_rewards(&entries, 1_000, 0).expect("rewards");
        assert_eq!(r.credits[0].total_reward, 615); // 615.38
        assert_eq!(r.credits[1].total_reward, 384); // 384.61
        assert_eq!(r.burnt, 1);
    }

    #[test]
    fn empty_and_zero_weight_layers() {
        let r = distribute_rewards::<u32, &str>(&[], 500, 0).expect("rewards");
        assert!(r.credits.is_empty());
        assert_eq!(r.burnt, 500);
        let e = [entry(1, "a", 0, 1)];
        assert_eq!(distribute_rewards(&e, 500, 0), Err(RewardError::ZeroTotalWeight));
        let e = [entry(1, "a", 0, 1), entry(2, "b", 3, 7)];
        let r = distribute_rewards(&e, 500, 1).expect("rewards");
        assert_eq!(
            (r.credits[0].total_reward, r.credits[1].total_reward, r.burnt),
            (0, 501, 0)
        );
        assert_eq!(
            distribute_rewards(&e, u64::MAX, 1),
            Err(RewardError::TotalOverflow {
                subsidy: u64::MAX,
                fees: 1
            })
        );
    }

    #[test]
    fn layer_rewards_use_the_curve() {
        let e = [entry(1, "a", 1, 1)];
        let r = layer_rewards(24, 23, &e, 7).expect("rewards");
        assert_eq!(r.subsidy, subsidy(1));
        assert_eq!(r.credits[0].total_reward, subsidy(1) + 7);
        assert_eq!(r.credits[0].layer_reward, subsidy(1));
        assert_eq!(r.burnt, 0);
        assert!(matches!(
            layer_rewards(22, 23, &e, 0),
            Err(RewardError::Subsidy(_))
        ));
    }

    #[test]
    fn many_unrelated_denominators() {
        // 60 entries with distinct prime-ish denominators: the common denominator is far
        // beyond 128 bits, the split must still be exact.
        let entries: Vec<RewardEntry<u32, u32>> = (0..60u32)
            .map(|i| RewardEntry {
                atx: i,
                coinbase: i % 7,
                weight: RewardWeight::new(
                    u128::from(u64::MAX - u64::from(i)) * 3 + 1,
                    u128::from(u32::MAX - 2 * i),
                )
                .expect("weight"),
            })
            .collect();
        let r = distribute_rewards(&entries, 477_618_397_593, 12_345).expect("rewards");
        let credited: u64 = r.credits.iter().map(|c| c.total_reward).sum();
        assert_eq!(credited + r.burnt, r.total);
        assert!(r.burnt < 60);
    }

    fn weights() -> impl Strategy<Value = Vec<(u64, u32, u32)>> {
        // (atx weight, proofs, eligibility count)
        proptest::collection::vec(
            (0u64..1_000_000, 1u32..=50).prop_flat_map(|(w, c)| (Just(w), 1..=c, Just(c))),
            1..7,
        )
    }

    proptest! {
        #[test]
        fn credits_are_floored_exact_shares(ws in weights(), subsidy in 0u64..1_000_000_000_000, fees in 0u64..1_000_000_000) {
            let proposals: Vec<ProposalReward<usize, usize>> = ws
                .iter()
                .enumerate()
                .map(|(i, &(w, p, c))| ProposalReward { atx: i, coinbase: i, atx_weight: w, eligibility_proofs: p, eligibility_count: c })
                .collect();
            let entries = block_reward_entries(&proposals).expect("entries");
            // Independent u128 evaluation with the common denominator Π counts (≤ 50⁶).
            let common: u128 = ws.iter().map(|&(_, _, c)| u128::from(c)).product();
            let scaled: Vec<u128> = ws.iter().map(|&(w, p, c)| u128::from(w) * u128::from(p) * (common / u128::from(c))).collect();
            let sum: u128 = scaled.iter().sum();
            let result = distribute_rewards(&entries, subsidy, fees);
            if sum == 0 {
                prop_assert_eq!(result, Err(RewardError::ZeroTotalWeight));
                return Ok(());
            }
            let r = result.expect("rewards");
            let total = u128::from(subsidy + fees);
            let credited: u64 = r.credits.iter().map(|c| c.total_reward).sum();
            prop_assert_eq!(credited + r.burnt, subsidy + fees);
            prop_assert!(r.burnt < ws.len() as u64);
            for (c, s) in r.credits.iter().zip(&scaled) {
                prop_assert_eq!(u128::from(c.total_reward), total * s / sum);
                prop_assert!(u128::from(c.total_reward) * sum <= total * s);
                prop_assert_eq!(u128::from(c.layer_reward), u128::from(subsidy) * s / sum);
                prop_assert!(c.layer_reward <= c.total_reward);
            }
        }
    }
}
