//! The subsidy curve of the `spacemeshos/economics` repository (§3.3).
//!
//! ```text
//! accumulated(n) = ⌊S_pool · (1 − e^(−λ(n+1)))⌋      n = layers after effective genesis
//! subsidy(n)     = accumulated(n) − accumulated(n−1)   (subsidy(0) = accumulated(0))
//! S_pool = 2.4 B − 150 M vaulted = 2.25 B SMH
//! λ      = −ln(1 − 450 M / 2.25 B) / (10·105 120 + 1) = ln(5/4) / 1 051 201
//! ```
//!
//! The reference (`rewards.go`, `decimal.Context128`: 34 significant digits) defines the half
//! life from "450 M SMH issued after ten years", counting ten years as `10·105 120 + 1` layers
//! (one extra for the effective genesis layer), so `accumulated(1 051 200)` is exactly
//! 450 M SMH; it truncates toward zero.
//!
//! Here: `q = e^(−λ)` is computed at compile time in 127-bit binary fixed point (series for
//! `ln(5/4) = 2·atanh(1/9)` and for `exp`), and `e^(−λm) = q^m` by square-and-multiply with
//! round-to-nearest 256-bit products. The relative error of `q^m` is about `(m + 2·64)·2⁻¹²⁶`,
//! i.e. below `5·10⁻¹⁴` smidge on the result for every `m < 2³²` (`S_pool·m·q^m` peaks near
//! `m = 1/λ`). Before truncation a bias of `2⁻⁴⁰` smidge (about 20× that bound) is added so
//! that exact integers (such as 450 M SMH at ten years) are not truncated to one less; the
//! result can differ from the reference only where the exact value lies within `10⁻¹²` smidge
//! below an integer, a band the reference's own 34-digit rounding (about `10⁻¹⁶`) cannot
//! resolve either.

/// Smidge in one SMH.
pub const SMIDGE_PER_SMH: u64 = 1_000_000_000;
/// Everything ever issued: 2.4 B SMH.
pub const TOTAL_ISSUANCE_SMIDGE: u64 = 2_400_000_000 * SMIDGE_PER_SMH;
/// Issued at genesis into vaults: 150 M SMH.
pub const TOTAL_VAULTED_SMIDGE: u64 = 150_000_000 * SMIDGE_PER_SMH;
/// The pool the subsidy curve pays out asymptotically: 2.25 B SMH.
pub const TOTAL_SUBSIDY_SMIDGE: u64 = TOTAL_ISSUANCE_SMIDGE - TOTAL_VAULTED_SMIDGE;
/// Total issuance (vaults included) ten years after effective genesis: 600 M SMH.
pub const TEN_YEAR_TARGET_SMIDGE: u64 = 600_000_000 * SMIDGE_PER_SMH;
/// Mainnet layers in one (365-day) year of 5-minute layers.
pub const LAYERS_PER_YEAR: u64 = 105_120;
/// Layers counted as "ten years" when fixing λ: `10·105 120 + 1`.
pub const TEN_YEARS_LAYERS: u64 = 10 * LAYERS_PER_YEAR + 1;

/// Why no subsidy is defined for a layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubsidyError {
    #[error("layer {layer} precedes the effective genesis layer {effective_genesis}: the VM applies no such layer")]
    BeforeEffectiveGenesis { layer: u32, effective_genesis: u32 },
}

const FRAC_BITS: u32 = 127;
/// 1.0 in fixed point.
const ONE: u128 = 1 << FRAC_BITS;
const HALF_ULP: u128 = 1 << (FRAC_BITS - 1);
const LOW64: u128 = u64::MAX as u128;
/// Added (in units of 2⁻¹²⁷ smidge) before truncating: 2⁻⁴⁰ smidge.
const TRUNCATION_BIAS: u128 = 1 << (FRAC_BITS - 40);

/// The full 256-bit product as `(high, low)` halves.
const fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    let (a1, a0) = (a >> 64, a & LOW64);
    let (b1, b0) = (b >> 64, b & LOW64);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 64) + (p01 & LOW64) + (p10 & LOW64);
    let low = (p00 & LOW64) | (mid << 64);
    let high = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (high, low)
}

/// `(high, low) + add` as 256 bits.
const fn add_wide((high, low): (u128, u128), add: u128) -> (u128, u128) {
    let (low, carry) = low.overflowing_add(add);
    (high + carry as u128, low)
}

/// `⌊(high, low) / 2¹²⁷⌋`, for products of two values ≤ 1.0 (the result fits).
const fn shift_down((high, low): (u128, u128)) -> u128 {
    (high << 1) | (low >> FRAC_BITS)
}

/// Fixed-point product of two values in `[0, 1]`, rounded to nearest.
const fn mul(a: u128, b: u128) -> u128 {
    shift_down(add_wide(mul_wide(a, b), HALF_ULP))
}

/// `⌊p/q · 2¹²⁷⌋` for `p < q < 2¹²⁷`, by binary long division.
const fn fraction(p: u128, q: u128) -> u128 {
    let mut rem = p;
    let mut out = 0u128;
    let mut bit = 0;
    while bit < FRAC_BITS {
        rem <<= 1;
        out <<= 1;
        if rem >= q {
            rem -= q;
            out |= 1;
        }
        bit += 1;
    }
    out
}

const fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// `ln(a/b)` for `a > b > 0` with `(a−b)/(a+b)` reduced small, as `2·atanh((a−b)/(a+b))`.
const fn ln_ratio(a: u128, b: u128) -> u128 {
    let g = gcd(a - b, a + b);
    let x = fraction((a - b) / g, (a + b) / g);
    let x2 = mul(x, x);
    let mut term = x; // x^(2k+1)
    let mut sum = 0u128;
    let mut k = 0u128;
    while term != 0 {
        sum += term / (2 * k + 1);
        term = mul(term, x2);
        k += 1;
    }
    2 * sum
}

/// `e^(−x)` for `0 ≤ x < 1` by its Taylor series, positive and negative terms summed apart.
const fn exp_neg(x: u128) -> u128 {
    let mut term = ONE;
    let mut positive = ONE;
    let mut negative = 0u128;
    let mut k = 1u128;
    loop {
        term = mul(term, x) / k;
        if term == 0 {
            break;
        }
        if k % 2 == 1 {
            negative += term;
        } else {
            positive += term;
        }
        k += 1;
    }
    positive - negative
}

/// `λ = ln(S_pool / (S_pool − (target − vaulted))) / TEN_YEARS_LAYERS`, rounded to nearest.
const LAMBDA: u128 = {
    let pool = TOTAL_SUBSIDY_SMIDGE as u128;
    let remaining = pool - (TEN_YEAR_TARGET_SMIDGE - TOTAL_VAULTED_SMIDGE) as u128;
    let ln = ln_ratio(pool, remaining);
    let n = TEN_YEARS_LAYERS as u128;
    (ln + n / 2) / n
};

/// `q = e^(−λ)`, the per-layer decay factor of the unissued pool.
const DECAY: u128 = exp_neg(LAMBDA);

/// `q^m` in fixed point.
fn decay_pow(mut m: u64) -> u128 {
    let mut result = ONE;
    let mut base = DECAY;
    while m > 0 {
        if m & 1 == 1 {
            result = mul(result, base);
            if result == 0 {
                break;
            }
        }
        base = mul(base, base);
        m >>= 1;
    }
    result
}

/// Subsidy paid in total by the end of layer `effective_genesis + n`, in smidge:
/// `⌊S_pool·(1 − e^(−λ(n+1)))⌋`. Never exceeds [`TOTAL_SUBSIDY_SMIDGE`].
pub fn accumulated_subsidy(layers_after_effective_genesis: u32) -> u64 {
    let m = u64::from(layers_after_effective_genesis) + 1;
    let issued_fraction = ONE - decay_pow(m);
    let product = add_wide(
        mul_wide(u128::from(TOTAL_SUBSIDY_SMIDGE), issued_fraction),
        TRUNCATION_BIAS,
    );
    // S_pool < 2⁶² and the fraction ≤ 2¹²⁷, so the integer part is below 2⁶².
    let smidge = u64::try_from(shift_down(product)).unwrap_or(u64::MAX);
    smidge.min(TOTAL_SUBSIDY_SMIDGE)
}

/// Subsidy of layer `effective_genesis + n`: the difference of consecutive accumulated values,
/// so that subsidies over any range sum to the accumulated difference exactly.
pub fn subsidy(layers_after_effective_genesis: u32) -> u64 {
    let now = accumulated_subsidy(layers_after_effective_genesis);
    match layers_after_effective_genesis.checked_sub(1) {
        None => now,
        // accumulated is non-decreasing (q^m is non-increasing in m, truncation is monotone).
        Some(prev) => now.saturating_sub(accumulated_subsidy(prev)),
    }
}

/// Subsidy of `layer`: `subsidy(layer − effective_genesis)`.
pub fn subsidy_for_layer(layer: u32, effective_genesis: u32) -> Result<u64, SubsidyError> {
    layer
        .checked_sub(effective_genesis)
        .map(subsidy)
        .ok_or(SubsidyError::BeforeEffectiveGenesis {
            layer,
            effective_genesis,
        })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Exact values: Python `decimal` at 80 digits, `S·(1 − exp(−ln(1.25)·(n+1)/1051201))`
    /// truncated. (A one-off run against 4,039 such values, random layers below 2·10⁸ and the
    /// exact points `k·1 051 201 − 1`, matched all of them.)
    const EXACT: [(u32, u64); 16] = [
        (0, 477_618_397_593),
        (1, 955_236_693_799),
        (2, 1_432_854_888_620),
        (3, 1_910_472_982_054),
        (100, 48_238_946_159_315),
        (4031, 1_924_933_698_054_853),
        (4032, 1_925_410_907_837_447),
        (8064, 3_848_697_366_630_480),
        (105_119, 49_651_224_070_537_212),
        (105_120, 49_651_691_149_228_992),
        (1_051_199, 449_999_617_905_200_816),
        (1_051_200, 450_000_000_000_000_000),
        (1_051_201, 450_000_382_094_718_074),
        (2_102_401, 810_000_000_000_000_000),
        (10_000_000, 1_980_670_207_293_862_126),
        (100_000_000, 2_249_999_998_641_054_202),
    ];

    #[test]
    fn constants() {
        assert_eq!(TOTAL_SUBSIDY_SMIDGE, 2_250_000_000 * SMIDGE_PER_SMH);
        assert_eq!(TEN_YEARS_LAYERS, 1_051_201);
        // λ ≈ 2.12274865905007468e-7 (Python decimal).
        let lambda_e27 = shift_down(mul_wide(LAMBDA, 10u128.pow(27)));
        assert_eq!(lambda_e27, 212_274_865_905_007_468_377);
        // q ≈ 0.9999997877251566253002849105...
        let q_e30 = mul_wide(DECAY, 10u128.pow(30));
        assert_eq!(shift_down(q_e30), 999_999_787_725_156_625_300_284_910_524);
    }

    #[test]
    fn matches_high_precision_reference() {
        for (n, want) in EXACT {
            assert_eq!(accumulated_subsidy(n), want, "accumulated_subsidy({n})");
        }
    }

    #[test]
    fn economics_table_figures() {
        // `tenyears.txt` in spacemeshos/economics, SMH rounded down.
        let smh = |x: u64| x / SMIDGE_PER_SMH;
        assert_eq!(smh(subsidy(0)), 477);
        assert_eq!(smh(accumulated_subsidy(4032)), 1_925_410);
        assert_eq!(smh(accumulated_subsidy(8064)), 3_848_697);
        assert_eq!(smh(accumulated_subsidy(1_048_320)), 448_899_230);
        assert_eq!(smh(accumulated_subsidy(1_051_200)), 450_000_000);
        assert_eq!(smh(subsidy(4032)), 477);
        assert_eq!(smh(subsidy(8064)), 476);
        assert_eq!(smh(subsidy(1_051_200)), 382);
        // First layer ≈ 477.6 SMH; one mainnet epoch ≈ 1.93 M SMH.
        assert_eq!(subsidy(0) / (SMIDGE_PER_SMH / 10), 4776);
        assert_eq!(smh(accumulated_subsidy(4031)), 1_924_933);
    }

    #[test]
    fn ten_years_issue_450m() {
        let total: u64 = (0..=1_051_200u32).map(subsidy).sum();
        assert_eq!(total, 450_000_000 * SMIDGE_PER_SMH);
    }

    #[test]
    fn far_future_saturates_at_the_pool() {
        assert_eq!(accumulated_subsidy(u32::MAX), TOTAL_SUBSIDY_SMIDGE);
        assert_eq!(subsidy(u32::MAX), 0);
        assert!(accumulated_subsidy(400_000_000) <= TOTAL_SUBSIDY_SMIDGE);
    }

    #[test]
    fn before_effective_genesis_is_an_error() {
        assert_eq!(subsidy_for_layer(23, 23), Ok(subsidy(0)));
        assert_eq!(subsidy_for_layer(24, 23), Ok(subsidy(1)));
        assert_eq!(
            subsidy_for_layer(22, 23),
            Err(SubsidyError::BeforeEffectiveGenesis {
                layer: 22,
                effective_genesis: 23
            })
        );
    }

    #[test]
    fn decreasing_over_the_first_ten_years() {
        let mut prev = subsidy(0);
        for n in (1..=1_051_200u32).step_by(97) {
            let s = subsidy(n);
            assert!(s < prev, "subsidy({n}) = {s} not below {prev}");
            prev = s;
        }
    }

    proptest! {
        #[test]
        fn close_to_f64(n in 0u32..50_000_000) {
            let lambda = (1.25f64).ln() / TEN_YEARS_LAYERS as f64;
            let approx = TOTAL_SUBSIDY_SMIDGE as f64 * -(-lambda * (f64::from(n) + 1.0)).exp_m1();
            let got = accumulated_subsidy(n) as f64;
            prop_assert!((got - approx).abs() <= approx * 1e-12 + 2.0, "n={} got={} f64={}", n, got, approx);
        }

        #[test]
        fn monotone_and_bounded(a in 0u32..40_000_000, d in 1u32..1_000_000) {
            let b = a.saturating_add(d);
            prop_assert!(accumulated_subsidy(a) <= accumulated_subsidy(b));
            prop_assert!(accumulated_subsidy(b) <= TOTAL_SUBSIDY_SMIDGE);
            // Per-layer subsidy decreases by ≈ λ·subsidy (≥ 10⁵ smidge early on) per layer,
            // far more than the ±1 smidge truncation jitter.
            prop_assert!(subsidy(a) >= subsidy(b));
        }

        #[test]
        fn subsidies_telescope(a in 0u32..10_000_000, len in 0u32..2_000) {
            let sum: u64 = (a..=a + len).map(subsidy).sum();
            let before = if a == 0 { 0 } else { accumulated_subsidy(a - 1) };
            prop_assert_eq!(sum, accumulated_subsidy(a + len) - before);
        }
    }
}
