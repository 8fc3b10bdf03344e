//! Just enough unsigned big-integer arithmetic for exact reward shares: products and sums of
//! `u128` rationals' parts, and a floor division whose quotient fits a `u64`.

use std::cmp::Ordering;

/// An unsigned integer as little-endian 64-bit limbs, without high zero limbs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct BigUint {
    limbs: Vec<u64>,
}

impl BigUint {
    pub(crate) fn from_u128(v: u128) -> Self {
        let mut out = Self {
            limbs: vec![v as u64, (v >> 64) as u64],
        };
        out.normalize();
        out
    }

    pub(crate) fn one() -> Self {
        Self::from_u128(1)
    }

    fn normalize(&mut self) {
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.limbs.is_empty()
    }

    pub(crate) fn mul(&self, other: &Self) -> Self {
        if self.is_zero() || other.is_zero() {
            return Self::default();
        }
        let mut limbs = vec![0u64; self.limbs.len() + other.limbs.len()];
        for (i, &a) in self.limbs.iter().enumerate() {
            let mut carry = 0u128;
            for (j, &b) in other.limbs.iter().enumerate() {
                let cur = u128::from(limbs[i + j]) + u128::from(a) * u128::from(b) + carry;
                limbs[i + j] = cur as u64;
                carry = cur >> 64;
            }
            let mut k = i + other.limbs.len();
            while carry != 0 {
                let cur = u128::from(limbs[k]) + carry;
                limbs[k] = cur as u64;
                carry = cur >> 64;
                k += 1;
            }
        }
        let mut out = Self { limbs };
        out.normalize();
        out
    }

    pub(crate) fn mul_u128(&self, v: u128) -> Self {
        self.mul(&Self::from_u128(v))
    }

    pub(crate) fn add(&self, other: &Self) -> Self {
        let (long, short) = if self.limbs.len() >= other.limbs.len() {
            (self, other)
        } else {
            (other, self)
        };
        let mut limbs = Vec::with_capacity(long.limbs.len() + 1);
        let mut carry = 0u128;
        for (i, &a) in long.limbs.iter().enumerate() {
            let b = short.limbs.get(i).copied().unwrap_or(0);
            let cur = u128::from(a) + u128::from(b) + carry;
            limbs.push(cur as u64);
            carry = cur >> 64;
        }
        if carry != 0 {
            limbs.push(carry as u64);
        }
        let mut out = Self { limbs };
        out.normalize();
        out
    }

    /// `self − other`; `other` must not exceed `self`.
    fn sub_assign(&mut self, other: &Self) {
        let mut borrow = false;
        for (i, limb) in self.limbs.iter_mut().enumerate() {
            let b = other.limbs.get(i).copied().unwrap_or(0);
            let (d1, o1) = limb.overflowing_sub(b);
            let (d2, o2) = d1.overflowing_sub(u64::from(borrow));
            *limb = d2;
            borrow = o1 || o2;
        }
        debug_assert!(!borrow, "BigUint subtraction underflow");
        self.normalize();
    }

    fn shl(&self, bits: u32) -> Self {
        if self.is_zero() {
            return Self::default();
        }
        let words = (bits / 64) as usize;
        let shift = bits % 64;
        let mut limbs = vec![0u64; words];
        let mut carry = 0u64;
        for &limb in &self.limbs {
            if shift == 0 {
                limbs.push(limb);
            } else {
                limbs.push((limb << shift) | carry);
                carry = limb >> (64 - shift);
            }
        }
        if carry != 0 {
            limbs.push(carry);
        }
        let mut out = Self { limbs };
        out.normalize();
        out
    }

    /// `⌊n / d⌋` if `d ≠ 0` and the quotient fits a `u64`.
    pub(crate) fn div_floor_u64(n: &Self, d: &Self) -> Option<u64> {
        if d.is_zero() || *n >= d.shl(64) {
            return None;
        }
        let mut rem = n.clone();
        let mut q = 0u64;
        for bit in (0..64u32).rev() {
            let shifted = d.shl(bit);
            if shifted <= rem {
                rem.sub_assign(&shifted);
                q |= 1 << bit;
            }
        }
        Some(q)
    }
}

impl Ord for BigUint {
    fn cmp(&self, other: &Self) -> Ordering {
        self.limbs
            .len()
            .cmp(&other.limbs.len())
            .then_with(|| self.limbs.iter().rev().cmp(other.limbs.iter().rev()))
    }
}

impl PartialOrd for BigUint {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn agrees_with_u128(a in any::<u64>(), b in any::<u64>(), c in any::<u64>(), d in 1u64..) {
            let (ba, bb, bc) = (BigUint::from_u128(a.into()), BigUint::from_u128(b.into()), BigUint::from_u128(c.into()));
            let prod = ba.mul(&bb);
            prop_assert_eq!(&prod, &BigUint::from_u128(u128::from(a) * u128::from(b)));
            let sum = prod.add(&bc);
            let want = u128::from(a) * u128::from(b) + u128::from(c);
            prop_assert_eq!(&sum, &BigUint::from_u128(want));
            let q = want / u128::from(d);
            let got = BigUint::div_floor_u64(&sum, &BigUint::from_u128(d.into()));
            prop_assert_eq!(got, u64::try_from(q).ok());
        }

        #[test]
        fn wide_division(a in any::<u128>(), b in 1u128.., q in any::<u64>(), r_frac in any::<u128>()) {
            // n = d·q + r with r < d, d = a·b (up to 256 bits).
            let d = BigUint::from_u128(a.max(1)).mul_u128(b);
            let r = BigUint::from_u128(r_frac).mul_u128(1);
            let r = if r < d { r } else { BigUint::default() };
            let n = d.mul_u128(u128::from(q)).add(&r);
            prop_assert_eq!(BigUint::div_floor_u64(&n, &d), Some(q));
            prop_assert_eq!(BigUint::div_floor_u64(&d.shl(64), &d), None);
        }
    }

    #[test]
    fn edge_cases() {
        let zero = BigUint::default();
        assert!(zero.is_zero());
        assert_eq!(BigUint::from_u128(0), zero);
        assert_eq!(BigUint::div_floor_u64(&BigUint::one(), &zero), None);
        assert_eq!(BigUint::div_floor_u64(&zero, &BigUint::one()), Some(0));
        let max = BigUint::from_u128(u128::MAX);
        assert_eq!(max.add(&BigUint::one()), BigUint::one().shl(128));
        assert!(max < BigUint::one().shl(128));
    }
}
