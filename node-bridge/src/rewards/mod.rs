//! The subsidy curve, eligibility slots, ATX weight and height, and per-layer rewards
//! (`shared/spec/devnet.md` §2.6, §3.2–§3.4).
//!
//! - [`mod@subsidy`]: `S_pool·(1 − e^(−λ(n+1)))` in exact 127-bit fixed point (no floats);
//! - [`eligibility`]: slots per ATX and the layer a VRF output selects;
//! - [`weight`]: ticks, weight (behind the [`WeightFormula`] seam of §3.4) and tick height;
//! - [`layer`]: per-proposal reward weights (exact rationals) and the split of
//!   `subsidy + fees` among coinbases, remainder burnt.
//!
//! Amounts are smidge (`10⁻⁹` SMH) in `u64`.

mod bigint;
pub mod eligibility;
pub mod layer;
pub mod subsidy;
pub mod weight;

pub use eligibility::{eligibility_layer, slots, EligibilityError, EligibilityParams, VRF_OUTPUT_LEN};
pub use layer::{
    block_reward_entries, distribute_rewards, layer_rewards, reward_weight, Credit, LayerRewards,
    ProposalReward, RewardEntry, RewardError, RewardWeight,
};
pub use subsidy::{
    accumulated_subsidy, subsidy, subsidy_for_layer, SubsidyError, SMIDGE_PER_SMH, TOTAL_SUBSIDY_SMIDGE,
};
pub use weight::{
    atx_metrics, atx_weight, base_height, tick_height, ticks, AtxMetrics, UnitsTimesTicks, WeightError,
    WeightFormula, WeightInput,
};
