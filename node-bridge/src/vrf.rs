//! ECVRF-EDWARDS25519-SHA512-ELL2, the VRF go-spacemesh uses for proposal eligibility.
//!
//! go-spacemesh's `signing.VRFSigner` calls `ecvrf.Prove(privateKey, msg)` and
//! `signing.VRFVerifier` calls `ecvrf.Verify(pub, proof, msg)` from
//! `github.com/oasisprotocol/curve25519-voi/primitives/ed25519/extra/ecvrf`, keyed with the
//! node's ed25519 key. This module reproduces those two functions byte for byte.
//!
//! # Which variant
//!
//! Checked against curve25519-voi's `primitives/ed25519/extra/ecvrf/ecvrf.go` and
//! `ecvrf_test.go` (the versions with both `Prove` and `Prove_v10`). voi's `Prove`/`Verify`
//! implement the draft-irtf-cfrg-vrf **v11-and-later** semantics, which are those of
//! RFC 9381 (published from draft 15; the ELL2 vectors did not change after draft 13);
//! `Prove_v10`/`Verify_v10` keep the older challenge without Y, and go-spacemesh does not
//! use them. Concretely, for suite_string = 0x04:
//!
//! - key: x = the clamped first half of SHA-512(seed) (RFC 8032 §5.1.5), Y = x·B, and
//!   PK_string = the 32-byte ed25519 public key;
//! - H = encode_to_curve(encode_to_curve_salt ‖ alpha) with encode_to_curve_salt =
//!   PK_string, suite `edwards25519_XMD:SHA-512_ELL2_NU_` of RFC 9380 and
//!   DST = "ECVRF_" ‖ "edwards25519_XMD:SHA-512_ELL2_NU_" ‖ 0x04 (RFC 9381 §5.4.1.2);
//! - k = SHA-512(second half of SHA-512(seed) ‖ point_to_string(H)) mod q
//!   (RFC 8032 §5.1.6 nonce, RFC 9381 §5.4.2.2);
//! - c = the first 16 bytes of SHA-512(0x04 ‖ 0x02 ‖ Y ‖ H ‖ Gamma ‖ k·B ‖ k·H ‖ 0x00),
//!   little-endian (RFC 9381 §5.4.3), s = k + c·x mod q; pi = Gamma ‖ c ‖ s (80 bytes);
//! - beta = SHA-512(0x04 ‖ 0x03 ‖ point_to_string(8·Gamma) ‖ 0x00) (RFC 9381 §5.2).
//!
//! Where voi is stricter than the RFC's optional steps, this module follows voi:
//!
//! - `Verify` always runs ECVRF_validate_key (RFC 9381 §5.4.5, optional in the RFC):
//!   a public key of small order is rejected;
//! - points (Y and Gamma) must be canonical RFC 8032 §5.1.3 encodings: y < p, and no
//!   "negative zero" x sign bit. voi checks this with `IsCanonical` before decompressing;
//!   here the decoded point must re-encode to the same 32 bytes, which rejects exactly
//!   those encodings;
//! - s ≥ q is rejected (RFC 9381 §5.4.4 step 8), also by `proof_to_hash`;
//! - Gamma itself is not checked for small order (neither the RFC nor voi does).
//!
//! # Implementation
//!
//! Scalars and points are curve25519-dalek's; the secret-dependent multiplications (x·H,
//! k·B, k·H, c·x) use its constant-time arithmetic. dalek does not expose field elements
//! or RFC 9380 hash-to-curve, so [`h2c`] implements the suite on a small field type
//! ([`field`]) that only ever sees public data. Verification uses variable-time
//! arithmetic, as voi does.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::{clamp_integer, Scalar};
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

mod field;
mod h2c;
#[cfg(test)]
mod tests;

/// Length of a proof pi = Gamma (32) ‖ c (16) ‖ s (32).
pub const VRF_PROOF_LEN: usize = 80;
/// Length of the VRF output beta (a SHA-512 digest).
pub const VRF_OUTPUT_LEN: usize = 64;

/// suite_string for ECVRF-EDWARDS25519-SHA512-ELL2 (RFC 9381 §5.5).
const SUITE_STRING: u8 = 0x04;
/// The hash-to-curve DST: "ECVRF_" ‖ h2c_suite_ID_string ‖ suite_string (RFC 9381 §5.4.1.2).
const H2C_DST: &[u8] = b"ECVRF_edwards25519_XMD:SHA-512_ELL2_NU_\x04";
/// cLen: the challenge is truncated to 16 bytes (RFC 9381 §5.5).
const C_LEN: usize = 16;

/// Why a public key or proof was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VrfError {
    /// The public key is not the canonical encoding of a point of edwards25519.
    #[error("VRF public key is not a canonical encoding of a curve point")]
    InvalidPublicKey,
    /// The public key is a point of small order (ECVRF_validate_key, RFC 9381 §5.4.5).
    #[error("VRF public key is of small order")]
    SmallOrderPublicKey,
    /// Gamma (the first 32 bytes of the proof) is not a canonical encoding of a point.
    #[error("VRF proof Gamma is not a canonical encoding of a curve point")]
    InvalidGamma,
    /// s (the last 32 bytes of the proof) is not below the group order q.
    #[error("VRF proof scalar s is not canonical (s >= q)")]
    NonCanonicalS,
    /// The proof is well formed but does not verify for this key and alpha.
    #[error("VRF proof does not verify")]
    ProofDoesNotVerify,
}

/// string_to_point of RFC 9381 §5.5 (RFC 8032 §5.1.3 decoding), canonical encodings only.
fn decode_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    let point = CompressedEdwardsY(*bytes).decompress()?;
    // dalek reduces y mod p and accepts a sign bit on x = 0; re-encoding rejects both.
    (point.compress().0 == *bytes).then_some(point)
}

/// The key material RFC 8032 §5.1.5 expands from a 32-byte seed.
struct ExpandedKey {
    /// The secret scalar x (clamped, reduced mod q; only ever multiplies points of order q).
    x: Scalar,
    /// The second half of SHA-512(seed), the nonce prefix.
    prefix: [u8; 32],
    /// PK_string = point_to_string(x·B).
    public: [u8; 32],
}

impl ExpandedKey {
    fn from_seed(seed: &[u8; 32]) -> Self {
        let mut digest: [u8; 64] = Sha512::digest(seed).into();
        let mut scalar_bytes = [0u8; 32];
        scalar_bytes.copy_from_slice(&digest[..32]);
        let mut prefix = [0u8; 32];
        prefix.copy_from_slice(&digest[32..]);
        let x = Scalar::from_bytes_mod_order(clamp_integer(scalar_bytes));
        digest.zeroize();
        scalar_bytes.zeroize();
        let public = EdwardsPoint::mul_base(&x).compress().to_bytes();
        Self { x, prefix, public }
    }
}

impl Drop for ExpandedKey {
    fn drop(&mut self) {
        self.x.zeroize();
        self.prefix.zeroize();
    }
}

/// ECVRF_encode_to_curve_h2c_suite (RFC 9381 §5.4.1.2) with encode_to_curve_salt = PK_string.
fn encode_to_curve(public_key: &[u8; 32], alpha: &[u8]) -> EdwardsPoint {
    let mut string_to_be_hashed = Vec::with_capacity(32 + alpha.len());
    string_to_be_hashed.extend_from_slice(public_key);
    string_to_be_hashed.extend_from_slice(alpha);
    h2c::encode_to_curve(&string_to_be_hashed, H2C_DST)
}

/// ECVRF_nonce_generation_RFC8032 (RFC 9381 §5.4.2.2): SHA-512(prefix ‖ h_string) mod q.
fn nonce(prefix: &[u8; 32], h_string: &[u8; 32]) -> Scalar {
    let mut digest: [u8; 64] = Sha512::new()
        .chain_update(prefix)
        .chain_update(h_string)
        .finalize()
        .into();
    let k = Scalar::from_bytes_mod_order_wide(&digest);
    digest.zeroize();
    k
}

/// ECVRF_challenge_generation (RFC 9381 §5.4.3): the first cLen = 16 bytes of
/// SHA-512(suite_string ‖ 0x02 ‖ P1 ‖ … ‖ P5 ‖ 0x00).
fn challenge(points: [&[u8; 32]; 5]) -> [u8; C_LEN] {
    let mut hasher = Sha512::new();
    hasher.update([SUITE_STRING, 0x02]);
    for point in points {
        hasher.update(point);
    }
    hasher.update([0x00]);
    let digest = hasher.finalize();
    let mut c = [0u8; C_LEN];
    c.copy_from_slice(&digest[..C_LEN]);
    c
}

/// string_to_int of the 16-byte challenge (little-endian; < 2^128 < q, so canonical).
fn challenge_scalar(c: &[u8; C_LEN]) -> Scalar {
    let mut bytes = [0u8; 32];
    bytes[..C_LEN].copy_from_slice(c);
    Scalar::from_bytes_mod_order(bytes)
}

/// Steps 4-7 of ECVRF_proof_to_hash (RFC 9381 §5.2):
/// SHA-512(suite_string ‖ 0x03 ‖ point_to_string(cofactor·Gamma) ‖ 0x00).
fn gamma_to_hash(gamma: &EdwardsPoint) -> [u8; VRF_OUTPUT_LEN] {
    Sha512::new()
        .chain_update([SUITE_STRING, 0x03])
        .chain_update(gamma.mul_by_cofactor().compress().as_bytes())
        .chain_update([0x00])
        .finalize()
        .into()
}

/// ECVRF_decode_proof (RFC 9381 §5.4.4): (Gamma, c, s).
fn decode_proof(proof: &[u8; VRF_PROOF_LEN]) -> Result<(EdwardsPoint, [u8; C_LEN], Scalar), VrfError> {
    let mut gamma_string = [0u8; 32];
    gamma_string.copy_from_slice(&proof[..32]);
    let gamma = decode_point(&gamma_string).ok_or(VrfError::InvalidGamma)?;
    let mut c = [0u8; C_LEN];
    c.copy_from_slice(&proof[32..32 + C_LEN]);
    let mut s_string = [0u8; 32];
    s_string.copy_from_slice(&proof[32 + C_LEN..]);
    // 8. if s >= q output "INVALID"
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_string)).ok_or(VrfError::NonCanonicalS)?;
    Ok((gamma, c, s))
}

/// ECVRF_prove (RFC 9381 §5.1) for ECVRF-EDWARDS25519-SHA512-ELL2, keyed by a 32-byte
/// ed25519 seed; equal byte for byte to curve25519-voi's `ecvrf.Prove`. Deterministic.
pub fn prove(seed: &[u8; 32], alpha: &[u8]) -> [u8; VRF_PROOF_LEN] {
    // 1. x and Y = x·B from SK (RFC 9381 §5.5, RFC 8032 §5.1.5).
    let key = ExpandedKey::from_seed(seed);
    // 2. H = ECVRF_encode_to_curve(encode_to_curve_salt = PK_string, alpha_string)
    let h = encode_to_curve(&key.public, alpha);
    // 3. h_string = point_to_string(H)
    let h_string = h.compress().to_bytes();
    // 4. Gamma = x·H (constant time)
    let gamma = (h * key.x).compress().to_bytes();
    // 5. k = ECVRF_nonce_generation(SK, h_string)
    let mut k = nonce(&key.prefix, &h_string);
    // 6. c = ECVRF_challenge_generation(Y, H, Gamma, k·B, k·H)
    let k_b = EdwardsPoint::mul_base(&k).compress().to_bytes();
    let k_h = (h * k).compress().to_bytes();
    let c = challenge([&key.public, &h_string, &gamma, &k_b, &k_h]);
    // 7. s = (k + c·x) mod q
    let s = k + challenge_scalar(&c) * key.x;
    k.zeroize();
    // 8. pi_string = point_to_string(Gamma) ‖ int_to_string(c, cLen) ‖ int_to_string(s, qLen)
    let mut pi = [0u8; VRF_PROOF_LEN];
    pi[..32].copy_from_slice(&gamma);
    pi[32..32 + C_LEN].copy_from_slice(&c);
    pi[32 + C_LEN..].copy_from_slice(s.as_bytes());
    pi
}

/// ECVRF_proof_to_hash (RFC 9381 §5.2): beta from a proof, without verifying it. Use only
/// on proofs known to be valid (from [`prove`], or after [`verify`], which returns beta).
pub fn proof_to_hash(proof: &[u8; VRF_PROOF_LEN]) -> Result<[u8; VRF_OUTPUT_LEN], VrfError> {
    let (gamma, _, _) = decode_proof(proof)?;
    Ok(gamma_to_hash(&gamma))
}

/// ECVRF_verify (RFC 9381 §5.3) with validate_key, as curve25519-voi's `ecvrf.Verify`:
/// returns beta when `proof` is a valid proof for `alpha` under `public_key`.
pub fn verify(
    public_key: &[u8; 32],
    proof: &[u8; VRF_PROOF_LEN],
    alpha: &[u8],
) -> Result<[u8; VRF_OUTPUT_LEN], VrfError> {
    // 1-2. Y = string_to_point(PK_string)
    let y = decode_point(public_key).ok_or(VrfError::InvalidPublicKey)?;
    // 3. ECVRF_validate_key (RFC 9381 §5.4.5): reject Y of small order.
    if y.is_small_order() {
        return Err(VrfError::SmallOrderPublicKey);
    }
    // 4-6. (Gamma, c, s) = ECVRF_decode_proof(pi_string)
    let (gamma, c, s) = decode_proof(proof)?;
    let c_scalar = challenge_scalar(&c);
    // 7. H = ECVRF_encode_to_curve(encode_to_curve_salt = PK_string, alpha_string)
    let h = encode_to_curve(public_key, alpha);
    // 8. U = s·B - c·Y
    let u = EdwardsPoint::vartime_double_scalar_mul_basepoint(&c_scalar, &-y, &s);
    // 9. V = s·H - c·Gamma
    let v = h * s - gamma * c_scalar;
    // 10. c' = ECVRF_challenge_generation(Y, H, Gamma, U, V)
    let mut gamma_string = [0u8; 32];
    gamma_string.copy_from_slice(&proof[..32]);
    let c_prime = challenge([
        public_key,
        &h.compress().to_bytes(),
        &gamma_string,
        &u.compress().to_bytes(),
        &v.compress().to_bytes(),
    ]);
    // 11. If c and c' are equal, output ("VALID", ECVRF_proof_to_hash(pi_string))
    if c != c_prime {
        return Err(VrfError::ProofDoesNotVerify);
    }
    Ok(gamma_to_hash(&gamma))
}

/// The ed25519 public key (PK_string) of a seed, as the VRF uses it.
pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    ExpandedKey::from_seed(seed).public
}

/// A proof of `alpha` whose Gamma carries the torsion point `EIGHT_TORSION[torsion]` (tests
/// only): it still verifies when the challenge is a multiple of the point's order, which the
/// key holder gets by retrying the nonce, and its Gamma (so its layer) differs from the honest
/// proof's. Shows why a node must not count one slot in two layers.
#[cfg(test)]
pub(crate) fn prove_malleated(seed: &[u8; 32], alpha: &[u8], torsion: usize) -> [u8; VRF_PROOF_LEN] {
    use curve25519_dalek::constants::EIGHT_TORSION;
    let t = EIGHT_TORSION[torsion % 8];
    let order: u8 = match torsion % 8 {
        0 => 1,
        4 => 2,
        2 | 6 => 4,
        _ => 8,
    };
    let key = ExpandedKey::from_seed(seed);
    let h = encode_to_curve(&key.public, alpha);
    let h_string = h.compress().to_bytes();
    let gamma = (h * key.x + t).compress().to_bytes();
    for counter in 0u64.. {
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(key.prefix)
                .chain_update(counter.to_le_bytes())
                .finalize()
                .into(),
        );
        let k_b = EdwardsPoint::mul_base(&k).compress().to_bytes();
        let k_h = (h * k).compress().to_bytes();
        let c = challenge([&key.public, &h_string, &gamma, &k_b, &k_h]);
        if !c[0].is_multiple_of(order) {
            continue;
        }
        let s = k + challenge_scalar(&c) * key.x;
        let mut pi = [0u8; VRF_PROOF_LEN];
        pi[..32].copy_from_slice(&gamma);
        pi[32..32 + C_LEN].copy_from_slice(&c);
        pi[32 + C_LEN..].copy_from_slice(s.as_bytes());
        return pi;
    }
    unreachable!("a challenge that is a multiple of 8 comes within a few tries")
}
