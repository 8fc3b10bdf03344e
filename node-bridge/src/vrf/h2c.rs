//! The RFC 9380 suite `edwards25519_XMD:SHA-512_ELL2_NU_` (RFC 9380 §8.5): the nonuniform
//! `encode_to_curve` of §3 built from `expand_message_xmd` with SHA-512 (§5.3.1),
//! `hash_to_field` with one element and L = 48 (§5.2), the Elligator 2 map to curve25519
//! (§6.7.1), the rational map to edwards25519 (§6.8.2, Appendix D) and cofactor clearing
//! by h_eff = 8 (§7). All inputs are public.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use sha2::{Digest, Sha512};

use super::field::Fe;

/// L = ceil((ceil(log2(p)) + k) / 8) = ceil((255 + 128) / 8) = 48 (RFC 9380 §5.2, §8.5).
const L: usize = 48;
/// SHA-512 output size b_in_bytes and block size s_in_bytes (RFC 9380 §5.3.1).
const B_IN_BYTES: usize = 64;
const S_IN_BYTES: usize = 128;

/// expand_message_xmd with H = SHA-512 (RFC 9380 §5.3.1). `dst` must be at most 255 bytes
/// and `len_in_bytes` at most 255·64 (both hold for the constant parameters used here).
pub(super) fn expand_message_xmd(msg: &[u8], dst: &[u8], len_in_bytes: usize) -> Vec<u8> {
    // 1. ell = ceil(len_in_bytes / b_in_bytes); 2. ell ≤ 255, len_in_bytes ≤ 65535,
    //    len(DST) ≤ 255 (caller's contract).
    let ell = len_in_bytes.div_ceil(B_IN_BYTES);
    debug_assert!(ell <= 255 && dst.len() <= 255);
    // 3. DST_prime = DST || I2OSP(len(DST), 1)
    let dst_len = [dst.len() as u8];
    // 4. Z_pad = I2OSP(0, s_in_bytes); 5. l_i_b_str = I2OSP(len_in_bytes, 2)
    let l_i_b_str = (len_in_bytes as u16).to_be_bytes();
    // 6. msg_prime = Z_pad || msg || l_i_b_str || I2OSP(0, 1) || DST_prime
    // 7. b_0 = H(msg_prime)
    let b_0 = Sha512::new()
        .chain_update([0u8; S_IN_BYTES])
        .chain_update(msg)
        .chain_update(l_i_b_str)
        .chain_update([0u8])
        .chain_update(dst)
        .chain_update(dst_len)
        .finalize();
    // 8. b_1 = H(b_0 || I2OSP(1, 1) || DST_prime)
    let mut b_i = Sha512::new()
        .chain_update(b_0)
        .chain_update([1u8])
        .chain_update(dst)
        .chain_update(dst_len)
        .finalize();
    let mut uniform_bytes = Vec::with_capacity(ell * B_IN_BYTES);
    uniform_bytes.extend_from_slice(&b_i);
    // 9-10. b_i = H(strxor(b_0, b_(i - 1)) || I2OSP(i, 1) || DST_prime)
    for i in 2..=ell {
        let mut xored = [0u8; B_IN_BYTES];
        for (x, (a, b)) in xored.iter_mut().zip(b_0.iter().zip(b_i.iter())) {
            *x = a ^ b;
        }
        b_i = Sha512::new()
            .chain_update(xored)
            .chain_update([i as u8])
            .chain_update(dst)
            .chain_update(dst_len)
            .finalize();
        uniform_bytes.extend_from_slice(&b_i);
    }
    // 11-12. uniform_bytes = b_1 || ... || b_ell, truncated to len_in_bytes
    uniform_bytes.truncate(len_in_bytes);
    uniform_bytes
}

/// hash_to_field(msg, count = 1) for GF(2^255 - 19) with m = 1, L = 48 (RFC 9380 §5.2).
pub(super) fn hash_to_field(msg: &[u8], dst: &[u8]) -> Fe {
    let uniform_bytes = expand_message_xmd(msg, dst, L);
    // e_j = OS2IP(tv) mod p
    Fe::from_be_bytes_mod_p(&uniform_bytes)
}

/// curve25519 in the form K·t^2 = s^3 + J·s^2 + s: J = 486662, K = 1; Z = 2 (RFC 9380 §8.5).
const J: u64 = 486_662;
const Z: u64 = 2;

/// map_to_curve_elligator2 (RFC 9380 §6.7.1) onto curve25519, followed by the rational
/// map to edwards25519 (RFC 9380 §6.8.2 / Appendix D). Returns affine Edwards (x, y).
pub(super) fn map_to_curve(u: Fe) -> (Fe, Fe) {
    let j = Fe::from_u64(J);
    let z = Fe::from_u64(Z);
    // With K = 1: J / K = J and 1 / K^2 = 1.
    let g = |x: Fe| x.square().mul(x).add(j.mul(x.square())).add(x);
    // 1. x1 = -(J / K) * inv0(1 + Z * u^2)
    let mut x1 = j.neg().mul(Fe::ONE.add(z.mul(u.square())).inv0());
    // 2. If x1 == 0, set x1 = -(J / K)
    if x1.is_zero() {
        x1 = j.neg();
    }
    // 3. gx1 = x1^3 + (J / K) * x1^2 + x1 / K^2
    let gx1 = g(x1);
    // 4. x2 = -x1 - (J / K); 5. gx2 = x2^3 + (J / K) * x2^2 + x2 / K^2
    let x2 = x1.neg().sub(j);
    let gx2 = g(x2);
    // 6. If is_square(gx1), set x = x1, y = sqrt(gx1) with sgn0(y) == 1.
    // 7. Else set x = x2, y = sqrt(gx2) with sgn0(y) == 0.
    let (s, y_root, want_sgn) = if gx1.is_square() {
        (x1, gx1.sqrt(), 1)
    } else {
        (x2, gx2.sqrt(), 0)
    };
    // One of gx1, gx2 is always a square (Z is a non-square); `sqrt` cannot fail here.
    let mut t = y_root.unwrap_or(Fe::ZERO);
    if t.sgn0() != want_sgn {
        t = t.neg();
    }
    // 8-10. (s, t) = (x * K, y * K) with K = 1.
    montgomery_to_edwards(s, t)
}

/// The rational map from curve25519 (s, t) to edwards25519 (v, w) of RFC 9380 Appendix D
/// (the RFC 7748 §4.1 birational map): v = sqrt(-486664) · s / t, w = (s - 1) / (s + 1),
/// with the exceptional cases t = 0 or s = -1 sent to the identity (0, 1).
fn montgomery_to_edwards(s: Fe, t: Fe) -> (Fe, Fe) {
    let s_plus_1 = s.add(Fe::ONE);
    if t.is_zero() || s_plus_1.is_zero() {
        return (Fe::ZERO, Fe::ONE);
    }
    // c1 = sqrt(-486664), the root with sgn0(c1) == 0 (RFC 9380 Appendix G.2.1).
    let mut c1 = Fe::from_u64(486_664).neg().sqrt().unwrap_or(Fe::ZERO);
    if c1.sgn0() != 0 {
        c1 = c1.neg();
    }
    let v = c1.mul(s).mul(t.inv0());
    let w = s.sub(Fe::ONE).mul(s_plus_1.inv0());
    (v, w)
}

/// The edwards25519 point with affine coordinates (x, y), which must be on the curve.
fn edwards_from_affine(x: Fe, y: Fe) -> EdwardsPoint {
    // RFC 8032 §5.1.2 encoding: y little-endian, the top bit holding the low bit of x.
    let mut bytes = y.to_le_bytes();
    bytes[31] |= x.sgn0() << 7;
    CompressedEdwardsY(bytes)
        .decompress()
        // Invariant, not input: map_to_curve only produces points of edwards25519.
        .expect("the Elligator 2 output lies on edwards25519")
}

/// encode_to_curve (RFC 9380 §3) for edwards25519_XMD:SHA-512_ELL2_NU_:
/// u = hash_to_field(msg, 1); Q = map_to_curve(u); P = clear_cofactor(Q) = 8·Q.
pub(super) fn encode_to_curve(msg: &[u8], dst: &[u8]) -> EdwardsPoint {
    let (x, y) = map_to_curve(hash_to_field(msg, dst));
    edwards_from_affine(x, y).mul_by_cofactor()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fe_hex(be_hex: &str) -> Fe {
        let bytes = hex::decode(be_hex).expect("hex");
        Fe::from_be_bytes_mod_p(&bytes)
    }

    /// RFC 9380 Appendix J.5.2, suite edwards25519_XMD:SHA-512_ELL2_NU_,
    /// DST "QUUX-V01-CS02-with-edwards25519_XMD:SHA-512_ELL2_NU_": (msg, u[0], Q.x, Q.y,
    /// P.x, P.y), field elements as big-endian hex as printed in the RFC.
    const RFC9380_J52: [(&str, &str, &str, &str, &str, &str); 3] = [
        (
            "",
            "7f3e7fb9428103ad7f52db32f9df32505d7b427d894c5093f7a0f0374a30641d",
            "42836f691d05211ebc65ef8fcf01e0fb6328ec9c4737c26050471e50803022eb",
            "22cb4aaa555e23bd460262d2130d6a3c9207aa8bbb85060928beb263d6d42a95",
            "1ff2b70ecf862799e11b7ae744e3489aa058ce805dd323a936375a84695e76da",
            "222e314d04a4d5725e9f2aff9fb2a6b69ef375a1214eb19021ceab2d687f0f9b",
        ),
        (
            "abc",
            "09cfa30ad79bd59456594a0f5d3a76f6b71c6787b04de98be5cd201a556e253b",
            "333e41b61c6dd43af220c1ac34a3663e1cf537f996bab50ab66e33c4bd8e4e19",
            "51b6f178eb08c4a782c820e306b82c6e273ab22e258d972cd0c511787b2a3443",
            "5f13cc69c891d86927eb37bd4afc6672360007c63f68a33ab423a3aa040fd2a8",
            "67732d50f9a26f73111dd1ed5dba225614e538599db58ba30aaea1f5c827fa42",
        ),
        (
            "abcdef0123456789",
            "475ccff99225ef90d78cc9338e9f6a6bb7b17607c0c4428937de75d33edba941",
            "55186c242c78e7d0ec5b6c9553f04c6aeef64e69ec2e824472394da32647cfc6",
            "5b9ea3c265ee42256a8f724f616307ef38496ef7eba391c08f99f3bea6fa88f0",
            "1dd2fefce934ecfd7aae6ec998de088d7dd03316aa1847198aecf699ba6613f1",
            "2f8a6c24dd1adde73909cada6a4a137577b0f179d336685c4a955a0a8e1a86fb",
        ),
    ];

    #[test]
    fn rfc9380_edwards25519_nu_vectors() {
        let dst = b"QUUX-V01-CS02-with-edwards25519_XMD:SHA-512_ELL2_NU_";
        for (msg, u0, qx, qy, px, py) in RFC9380_J52 {
            let u = hash_to_field(msg.as_bytes(), dst);
            assert_eq!(u, fe_hex(u0), "u[0] for {msg:?}");
            let (x, y) = map_to_curve(u);
            assert_eq!((x, y), (fe_hex(qx), fe_hex(qy)), "Q for {msg:?}");
            let p = encode_to_curve(msg.as_bytes(), dst);
            let expected = edwards_from_affine(fe_hex(px), fe_hex(py));
            assert_eq!(p.compress(), expected.compress(), "P for {msg:?}");
        }
    }

    #[test]
    fn expand_message_xmd_longer_outputs_extend_the_same_blocks() {
        // Lengths over one SHA-512 block exercise the b_2.. chain; the output for a
        // different length is a different string (l_i_b_str is hashed into b_0).
        let a = expand_message_xmd(b"msg", b"DST", 130);
        let b = expand_message_xmd(b"msg", b"DST", 48);
        assert_eq!(a.len(), 130);
        assert_ne!(a[..48], b[..]);
    }
}
