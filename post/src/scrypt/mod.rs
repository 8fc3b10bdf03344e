//! The scrypt-jane variant that Spacemesh labels are made with (spec/post.md §2-3):
//! HMAC/PBKDF2 over legacy Keccak-512, ROMix with ChaCha20/8, r = p = 1, empty salt.
//!
//! [`label32`] is the scalar reference. The batched paths ([`batch::labels32`]: portable
//! multi-lane in [`lanes`], AVX2 in `avx2`) and the multi-threaded [`crate::backend::CpuBackend`]
//! are tested to equal it.

#[cfg(target_arch = "x86_64")]
pub mod avx2;
pub mod batch;
pub mod keccak;
pub mod lanes;
pub mod portable;

pub use batch::{labels32, LabelPath, LabelScratch};

use keccak::HmacKeccak512;
use portable::{bytes_to_chunk, chunk_to_bytes, romix, Chunk};

/// Bytes in the scrypt password of a label: commitment || LE64(index) || 0^32.
pub const PASSWORD_LEN: usize = 72;

/// Errors for scrypt parameters given from outside.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScryptError {
    #[error("scrypt N must be a power of two >= 2, got {0}")]
    InvalidN(u64),
}

/// Check a scrypt N from outside (CLI, metadata, network).
pub fn validate_n(n: u64) -> Result<usize, ScryptError> {
    if n >= 2 && n.is_power_of_two() && n <= (1 << 24) {
        Ok(n as usize)
    } else {
        Err(ScryptError::InvalidN(n))
    }
}

/// The 72-byte password of label `index`.
pub fn password(commitment: &[u8; 32], index: u64) -> [u8; PASSWORD_LEN] {
    let mut p = [0u8; PASSWORD_LEN];
    p[..32].copy_from_slice(commitment);
    p[32..40].copy_from_slice(&index.to_le_bytes());
    p
}

/// Raw scrypt-jane with r = p = 1: `out = PBKDF2(P, ROMix(PBKDF2(P, S, 128)), out.len())`.
/// `v` is scratch of at least `n` chunks, reused across calls to avoid re-allocating 1 MiB.
pub fn scrypt_with_scratch(password: &[u8], salt: &[u8], n: usize, v: &mut Vec<Chunk>, out: &mut [u8]) {
    if v.len() < n {
        v.resize(n, [0u32; 32]);
    }
    let mac = HmacKeccak512::new(password);
    let mut b = [0u8; 128];
    mac.pbkdf2_1(salt, &mut b);
    let mut x = bytes_to_chunk(&b);
    romix(&mut x, n, v);
    let b = chunk_to_bytes(&x);
    mac.pbkdf2_1(&b, out);
}

/// Raw scrypt-jane with r = p = 1, allocating its own scratch.
pub fn scrypt(password: &[u8], salt: &[u8], n: usize, out: &mut [u8]) {
    let mut v = Vec::new();
    scrypt_with_scratch(password, salt, n, &mut v, out);
}

/// The full 32-byte scrypt output of label `index` (spec §3.2). `n` must be a power of two.
pub fn label32(commitment: &[u8; 32], index: u64, n: usize) -> [u8; 32] {
    let mut v = Vec::new();
    label32_with_scratch(commitment, index, n, &mut v)
}

/// [`label32`] with caller-provided scratch.
pub fn label32_with_scratch(commitment: &[u8; 32], index: u64, n: usize, v: &mut Vec<Chunk>) -> [u8; 32] {
    let mut out = [0u8; 32];
    scrypt_with_scratch(&password(commitment, index), &[], n, v, &mut out);
    out
}

/// The 16 stored bytes of label `index`.
pub fn label(commitment: &[u8; 32], index: u64, n: usize) -> [u8; 16] {
    let l = label32(commitment, index, n);
    let mut out = [0u8; 16];
    out.copy_from_slice(&l[..16]);
    out
}

/// commitment = BLAKE3(node_id || commitment_atx_id) (spec §3.1).
pub fn commitment(node_id: &[u8; 32], commitment_atx_id: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(node_id);
    h.update(commitment_atx_id);
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    #[test]
    fn raw_scrypt_jane_vector() {
        // spec §7.1: empty password, empty salt, N = 16, 64-byte output.
        let mut out = [0u8; 64];
        scrypt(&[], &[], 16, &mut out);
        assert_eq!(
            hex::encode(out),
            "77cb70bfaed44c5bbcd3ec8a82438db37f1ffb7036324da6b7133777300c3cfb2c208f2af4474d698eae2dadba35e92fe6997af8cf7078bb0c7264958b36773d"
        );
    }

    #[test]
    fn spec_labels_zero_ids() {
        let c = commitment(&[0; 32], &[0; 32]);
        assert_eq!(
            hex::encode(c),
            "4d006976636a8696d909a630a4081aad4d7c50f81afdee04020bf05086ab6a55"
        );
        assert_eq!(
            label32(&c, 0, 8192).to_vec(),
            h("13f053790cc908fd17c1ed054ad849d63a3abb394d07bb54872fe91b24c56f46")
        );
        assert_eq!(
            label32(&c, 1 << 32, 8192).to_vec(),
            h("990120b9d16c3989aaba6bedf7e2beb334046812b03a2ecdabf872dfcaa13f8b")
        );
        assert_eq!(
            hex::encode(&label32(&c, 2, 2)[..16]),
            "c961af0d639425eb24d44bead4aa4c61"
        );
    }

    #[test]
    fn validate_n_rejects_bad_values() {
        assert_eq!(validate_n(8192), Ok(8192));
        assert_eq!(validate_n(3), Err(ScryptError::InvalidN(3)));
        assert_eq!(validate_n(1), Err(ScryptError::InvalidN(1)));
    }
}
