//! Thresholds derived from the proof and init parameters (spec/post.md §1.2, §3.3, §4.2).

/// Errors for parameter combinations that have no threshold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DifficultyError {
    #[error("number of labels ({num_labels}) must be greater than K1 ({k1})")]
    TooFewLabelsForK1 { num_labels: u64, k1: u32 },
    #[error("number of labels ({0}) must be greater than 8 for a VRF nonce threshold")]
    TooFewLabelsForVrf(u64),
    #[error("number of units must be at least 1")]
    ZeroUnits,
}

/// Proving threshold `D = floor(2^64 * K1 / numLabels)` (u128 arithmetic).
pub fn proving_difficulty(k1: u32, num_labels: u64) -> Result<u64, DifficultyError> {
    if num_labels <= u64::from(k1) || num_labels == 0 {
        return Err(DifficultyError::TooFewLabelsForK1 { num_labels, k1 });
    }
    let d = ((1u128 << 64) * u128::from(k1)) / u128::from(num_labels);
    // num_labels > k1 guarantees d < 2^64.
    Ok(d as u64)
}

/// Split D into its top byte (compared with the group-cipher byte) and its low 56 bits.
pub fn split_difficulty(d: u64) -> (u8, u64) {
    ((d >> 56) as u8, d & ((1 << 56) - 1))
}

/// Divide a 256-bit big-endian number by a u64, returning quotient and remainder.
pub fn div_be256(x: &[u8; 32], divisor: u64) -> ([u8; 32], u64) {
    assert!(divisor != 0, "division by zero");
    let mut q = [0u8; 32];
    let mut rem: u128 = 0;
    for (i, byte) in x.iter().enumerate() {
        rem = (rem << 8) | u128::from(*byte);
        q[i] = (rem / u128::from(divisor)) as u8;
        rem %= u128::from(divisor);
    }
    (q, rem as u64)
}

/// k2pow threshold for one proof: `floor(BE256(PowDifficulty) / numUnits)`.
pub fn scale_pow_difficulty(difficulty: &[u8; 32], num_units: u32) -> Result<[u8; 32], DifficultyError> {
    if num_units == 0 {
        return Err(DifficultyError::ZeroUnits);
    }
    Ok(div_be256(difficulty, u64::from(num_units)).0)
}

/// VRF nonce threshold `floor(2^256 / numLabels) << 3` as 32 bytes BE (spec §3.3).
pub fn vrf_difficulty(num_labels: u64) -> Result<[u8; 32], DifficultyError> {
    if num_labels <= 8 {
        return Err(DifficultyError::TooFewLabelsForVrf(num_labels));
    }
    // floor(2^256 / n) = floor((2^256 - 1) / n) + [ (2^256 - 1) mod n == n - 1 ]
    let (mut q, rem) = div_be256(&[0xff; 32], num_labels);
    if rem == num_labels - 1 {
        for b in q.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
    }
    // Shift left by 3; n > 8 keeps the result below 2^256.
    let mut out = [0u8; 32];
    for i in 0..32 {
        let next = if i + 1 < 32 { q[i + 1] } else { 0 };
        out[i] = (q[i] << 3) | (next >> 5);
    }
    Ok(out)
}

/// Bit length of `n`: the width of one compressed index (spec §4.8).
pub fn required_bits(n: u64) -> u32 {
    64 - n.leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        let v = hex::decode(s).expect("hex");
        v.try_into().expect("32 bytes")
    }

    #[test]
    fn proving_thresholds_spec_7_2_and_7_4() {
        let lpu = 1u64 << 32;
        assert_eq!(proving_difficulty(26, 4 * lpu), Ok(0x0000_0006_8000_0000));
        assert_eq!(proving_difficulty(26, 16 * lpu), Ok(0x0000_0001_a000_0000));
        assert_eq!(proving_difficulty(26, 100 * lpu), Ok(0x0000_0000_428f_5c28));
        assert_eq!(proving_difficulty(1, 2), Ok(1 << 63));
        assert_eq!(proving_difficulty(1, 4), Ok(1 << 62));
        assert_eq!(proving_difficulty(1, 128), Ok(1 << 57));
        assert!(proving_difficulty(4, 4).is_err());
        assert!(proving_difficulty(26, 0).is_err());
    }

    #[test]
    fn pow_and_vrf_thresholds() {
        let mainnet = hex32("000dfb23b0979b4b000000000000000000000000000000000000000000000000");
        assert_eq!(
            hex::encode(scale_pow_difficulty(&mainnet, 4).expect("units")),
            "00037ec8ec25e6d2c00000000000000000000000000000000000000000000000"
        );
        let mut ff2 = [0xff; 32];
        ff2[0] = 0x7f;
        assert_eq!(scale_pow_difficulty(&[0xff; 32], 2), Ok(ff2));
        assert_eq!(
            hex::encode(vrf_difficulty(4096).expect("vrf")),
            "0080000000000000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(
            hex::encode(vrf_difficulty(400).expect("vrf"))[..16],
            *"051eb851eb851eb8"
        );
        assert_eq!(
            hex::encode(vrf_difficulty(4 << 32).expect("vrf"))[..10],
            *"0000000200"
        );
        assert!(vrf_difficulty(8).is_err());
    }

    #[test]
    fn bits() {
        assert_eq!(required_bits(9), 4);
        assert_eq!(required_bits(1 << 34), 35);
        assert_eq!(required_bits(u64::MAX), 64);
        assert_eq!(required_bits(0), 0);
    }
}
