//! Arithmetic in GF(p), p = 2^255 - 19, for the hash-to-curve map only.
//!
//! curve25519-dalek 4 keeps its field elements private, so the Elligator 2 map
//! (RFC 9380 §6.7.1) and the rational map to edwards25519 (RFC 9380 Appendix D) run on
//! this small 4×64-bit-limb implementation instead. Every value it sees is derived from
//! public data (the public key and alpha), so it is written for clarity, not for
//! constant time: `pow` and the reductions branch on their inputs.

/// An element of GF(2^255 - 19), always kept fully reduced (`< p`), little-endian limbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fe([u64; 4]);

/// p = 2^255 - 19.
const P: [u64; 4] = [
    0xffff_ffff_ffff_ffed,
    0xffff_ffff_ffff_ffff,
    0xffff_ffff_ffff_ffff,
    0x7fff_ffff_ffff_ffff,
];

/// `a - b` over four limbs, with the final borrow (0 or 1).
fn sub_limbs(a: &[u64; 4], b: &[u64; 4]) -> ([u64; 4], u64) {
    let mut out = [0u64; 4];
    let mut borrow = 0u64;
    for i in 0..4 {
        let (d1, b1) = a[i].overflowing_sub(b[i]);
        let (d2, b2) = d1.overflowing_sub(borrow);
        out[i] = d2;
        borrow = u64::from(b1 | b2);
    }
    (out, borrow)
}

/// Adds a small value to four limbs; the caller guarantees no carry out of the top limb.
fn add_small(a: &mut [u64; 4], small: u64) {
    let mut carry = u128::from(small);
    for limb in a.iter_mut() {
        let v = u128::from(*limb) + carry;
        *limb = v as u64;
        carry = v >> 64;
    }
}

impl Fe {
    pub(super) const ZERO: Fe = Fe([0, 0, 0, 0]);
    pub(super) const ONE: Fe = Fe([1, 0, 0, 0]);

    pub(super) const fn from_u64(v: u64) -> Fe {
        // Every u64 is below p.
        Fe([v, 0, 0, 0])
    }

    /// Reduces any 256-bit value mod p.
    fn reduce_256(mut a: [u64; 4]) -> Fe {
        // 2^255 ≡ 19 (mod p): fold bit 255 back in. The result is < 2^255 + 19 < 2p.
        let top = a[3] >> 63;
        a[3] &= 0x7fff_ffff_ffff_ffff;
        add_small(&mut a, 19 * top);
        let (reduced, borrow) = sub_limbs(&a, &P);
        Fe(if borrow == 0 { reduced } else { a })
    }

    /// Reduces a 512-bit value (little-endian limbs) mod p.
    fn reduce_512(t: &[u64; 8]) -> Fe {
        // 2^256 ≡ 38 (mod p): r = t_lo + 38·t_hi < 2^262.
        let mut r = [0u64; 4];
        let mut carry = 0u128;
        for i in 0..4 {
            let v = u128::from(t[i]) + u128::from(t[i + 4]) * 38 + carry;
            r[i] = v as u64;
            carry = v >> 64;
        }
        // Fold the (< 2^7) overflow limb the same way; at most one more carry can follow,
        // and only when r is then tiny, so the second fold cannot overflow.
        let mut extra = carry * 38;
        while extra != 0 {
            let mut c = extra;
            for limb in r.iter_mut() {
                let v = u128::from(*limb) + c;
                *limb = v as u64;
                c = v >> 64;
            }
            extra = c * 38;
        }
        Fe::reduce_256(r)
    }

    /// OS2IP of big-endian bytes (at most 64 of them), reduced mod p (RFC 9380 §5.2 step 6).
    pub(super) fn from_be_bytes_mod_p(bytes: &[u8]) -> Fe {
        debug_assert!(bytes.len() <= 64);
        let mut t = [0u64; 8];
        for (i, byte) in bytes.iter().rev().enumerate() {
            t[i / 8] |= u64::from(*byte) << (8 * (i % 8));
        }
        Fe::reduce_512(&t)
    }

    /// The canonical little-endian encoding (RFC 7748 / RFC 8032 byte order).
    pub(super) fn to_le_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, limb) in self.0.iter().enumerate() {
            out[8 * i..8 * i + 8].copy_from_slice(&limb.to_le_bytes());
        }
        out
    }

    pub(super) fn add(self, other: Fe) -> Fe {
        // Both are < p < 2^255, so the sum fits in 256 bits.
        let mut sum = [0u64; 4];
        let mut carry = 0u128;
        for (i, limb) in sum.iter_mut().enumerate() {
            let v = u128::from(self.0[i]) + u128::from(other.0[i]) + carry;
            *limb = v as u64;
            carry = v >> 64;
        }
        Fe::reduce_256(sum)
    }

    pub(super) fn neg(self) -> Fe {
        // p - a for a < p; p - 0 = p reduces to 0.
        let (d, _) = sub_limbs(&P, &self.0);
        Fe::reduce_256(d)
    }

    pub(super) fn sub(self, other: Fe) -> Fe {
        self.add(other.neg())
    }

    pub(super) fn mul(self, other: Fe) -> Fe {
        let mut t = [0u64; 8];
        for i in 0..4 {
            let mut carry = 0u128;
            for j in 0..4 {
                let v = u128::from(self.0[i]) * u128::from(other.0[j]) + u128::from(t[i + j]) + carry;
                t[i + j] = v as u64;
                carry = v >> 64;
            }
            t[i + 4] = carry as u64;
        }
        Fe::reduce_512(&t)
    }

    pub(super) fn square(self) -> Fe {
        self.mul(self)
    }

    /// `self^e` for a little-endian 256-bit exponent (left-to-right square and multiply).
    fn pow(self, e: &[u64; 4]) -> Fe {
        let mut acc = Fe::ONE;
        for limb in e.iter().rev() {
            for bit in (0..64).rev() {
                acc = acc.square();
                if (limb >> bit) & 1 == 1 {
                    acc = acc.mul(self);
                }
            }
        }
        acc
    }

    /// inv0 of RFC 9380 §4: the inverse, with inv0(0) = 0 (Fermat: a^(p-2)).
    pub(super) fn inv0(self) -> Fe {
        const P_MINUS_2: [u64; 4] = [P[0] - 2, P[1], P[2], P[3]];
        self.pow(&P_MINUS_2)
    }

    pub(super) fn is_zero(self) -> bool {
        self == Fe::ZERO
    }

    /// sgn0 of RFC 9380 §4.1 for m = 1: the parity of the canonical value.
    pub(super) fn sgn0(self) -> u8 {
        (self.0[0] & 1) as u8
    }

    /// is_square of RFC 9380 §4: Euler's criterion, a^((p-1)/2) ∈ {0, 1}.
    pub(super) fn is_square(self) -> bool {
        // (p - 1) / 2 = 2^254 - 10.
        const E: [u64; 4] = [
            0xffff_ffff_ffff_fff6,
            0xffff_ffff_ffff_ffff,
            0xffff_ffff_ffff_ffff,
            0x3fff_ffff_ffff_ffff,
        ];
        let r = self.pow(&E);
        r.is_zero() || r == Fe::ONE
    }

    /// sqrt(-1) = 2^((p-1)/4) mod p.
    fn sqrt_m1() -> Fe {
        // (p - 1) / 4 = 2^253 - 5.
        const E: [u64; 4] = [
            0xffff_ffff_ffff_fffb,
            0xffff_ffff_ffff_ffff,
            0xffff_ffff_ffff_ffff,
            0x1fff_ffff_ffff_ffff,
        ];
        Fe::from_u64(2).pow(&E)
    }

    /// A square root of a square (p ≡ 5 mod 8, Atkin-style as in RFC 9380 Appendix I.2),
    /// or `None` when `self` is not a square. Which of the two roots comes back is
    /// unspecified; callers fix the sign with [`Fe::sgn0`].
    pub(super) fn sqrt(self) -> Option<Fe> {
        // (p + 3) / 8 = 2^252 - 2.
        const E: [u64; 4] = [
            0xffff_ffff_ffff_fffe,
            0xffff_ffff_ffff_ffff,
            0xffff_ffff_ffff_ffff,
            0x0fff_ffff_ffff_ffff,
        ];
        let candidate = self.pow(&E);
        if candidate.square() == self {
            return Some(candidate);
        }
        let candidate = candidate.mul(Fe::sqrt_m1());
        (candidate.square() == self).then_some(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fe(v: u64) -> Fe {
        Fe::from_u64(v)
    }

    #[test]
    fn p_reduces_to_zero_and_wraps() {
        // The big-endian encoding of p itself, and of p + 5.
        let mut p_be = [0u8; 32];
        for (i, limb) in P.iter().enumerate() {
            p_be[32 - 8 * (i + 1)..32 - 8 * i].copy_from_slice(&limb.to_be_bytes());
        }
        assert_eq!(Fe::from_be_bytes_mod_p(&p_be), Fe::ZERO);
        p_be[31] += 5;
        assert_eq!(Fe::from_be_bytes_mod_p(&p_be), fe(5));
        // 2^256 ≡ 38 (mod p).
        let mut two_256 = [0u8; 33];
        two_256[0] = 1;
        assert_eq!(Fe::from_be_bytes_mod_p(&two_256), fe(38));
        assert_eq!(Fe::from_be_bytes_mod_p(&[0xff; 64]), {
            // 2^512 - 1 = (2^256)^2 - 1 ≡ 38^2 - 1.
            fe(38 * 38 - 1)
        });
    }

    #[test]
    fn field_identities() {
        let a = Fe::from_be_bytes_mod_p(&[0xa5; 48]);
        let b = Fe::from_be_bytes_mod_p(&[0x3c; 40]);
        assert_eq!(a.sub(a), Fe::ZERO);
        assert_eq!(a.add(b).sub(b), a);
        assert_eq!(a.mul(a.inv0()), Fe::ONE);
        assert_eq!(Fe::ZERO.inv0(), Fe::ZERO);
        assert_eq!(fe(0).sub(fe(1)).add(fe(1)), Fe::ZERO);
        assert_eq!(Fe::sqrt_m1().square(), fe(1).neg());
        let sq = a.square();
        assert!(sq.is_square());
        let r = sq.sqrt().expect("a square has a root");
        assert!(r == a || r == a.neg());
        // 2 is not a square mod p (p ≡ 5 mod 8), which Elligator 2 relies on (Z = 2).
        assert!(!fe(2).is_square());
        assert_eq!(fe(2).sqrt(), None);
    }
}
