//! k2pow: the RandomX proof of work of each nonce group (spec/post.md §4.4, §2.8).
//!
//! The hash input is 48 bytes: the low 56 bits of the pow `x` (7 bytes LE) || nonce group ||
//! challenge[0..8] || miner id (node id). `x` is valid when `RandomX(input) < Dpow`, comparing
//! 32-byte strings, with `Dpow` already scaled by numUnits
//! ([`crate::difficulty::scale_pow_difficulty`]).
//!
//! [`PowSolver`] (search) and [`PowVerifier`] (check one pow) are separate traits so a remote
//! k2pow service can stand in for the local search. [`randomx::RandomXPow`] implements both.

use std::sync::atomic::AtomicBool;

pub mod randomx;

pub use randomx::{RandomXMode, RandomXOptions, RandomXPow, RANDOMX_CACHE_KEY};

/// Bytes hashed per pow attempt.
pub const POW_INPUT_LEN: usize = 48;
/// A conforming pow is below 2^56 (only 56 bits enter RandomX).
pub const POW_LIMIT: u64 = 1 << 56;

#[derive(Debug, thiserror::Error)]
pub enum PowError {
    #[error(
        "invalid proof of work: pow {pow} for nonce group {nonce_group} hashes to {hash}, \
         not below the difficulty {difficulty}"
    )]
    InvalidPow {
        pow: u64,
        nonce_group: u8,
        hash: String,
        difficulty: String,
    },
    #[error("no valid proof of work in [0, 2^56) for nonce group {nonce_group}")]
    NotFound { nonce_group: u8 },
    #[error("proof of work search for nonce group {nonce_group} was stopped")]
    Stopped { nonce_group: u8 },
    #[error("RandomX failed: {0}")]
    RandomX(String),
    #[error("RandomX self-test failed: hash of 48 zero bytes is {got}, expected {expected}")]
    SelfTest { got: String, expected: String },
    #[error("proof of work provider failed: {0}")]
    Other(String),
}

/// Searches a pow for one nonce group.
pub trait PowSolver: Send + Sync {
    /// A pow `x < 2^56` with `RandomX(input(x)) < scaled_difficulty`.
    fn solve(
        &self,
        nonce_group: u8,
        challenge: &[u8; 8],
        miner_id: &[u8; 32],
        scaled_difficulty: &[u8; 32],
    ) -> Result<u64, PowError>;

    /// [`PowSolver::solve`] that gives up with [`PowError::Stopped`] once `stop` is set.
    /// Implementations that cannot be interrupted may ignore `stop`.
    fn solve_with_stop(
        &self,
        nonce_group: u8,
        challenge: &[u8; 8],
        miner_id: &[u8; 32],
        scaled_difficulty: &[u8; 32],
        stop: &AtomicBool,
    ) -> Result<u64, PowError> {
        let _ = stop;
        self.solve(nonce_group, challenge, miner_id, scaled_difficulty)
    }
}

/// Checks one pow.
pub trait PowVerifier: Send + Sync {
    /// `Ok` when `RandomX(input(pow)) < scaled_difficulty`; only the low 56 bits of `pow` count.
    fn verify(
        &self,
        pow: u64,
        nonce_group: u8,
        challenge: &[u8; 8],
        miner_id: &[u8; 32],
        scaled_difficulty: &[u8; 32],
    ) -> Result<(), PowError>;
}

impl<T: PowSolver + ?Sized> PowSolver for &T {
    fn solve(&self, g: u8, c: &[u8; 8], m: &[u8; 32], d: &[u8; 32]) -> Result<u64, PowError> {
        (**self).solve(g, c, m, d)
    }

    fn solve_with_stop(
        &self,
        g: u8,
        c: &[u8; 8],
        m: &[u8; 32],
        d: &[u8; 32],
        stop: &AtomicBool,
    ) -> Result<u64, PowError> {
        (**self).solve_with_stop(g, c, m, d, stop)
    }
}

impl<T: PowVerifier + ?Sized> PowVerifier for &T {
    fn verify(&self, pow: u64, g: u8, c: &[u8; 8], m: &[u8; 32], d: &[u8; 32]) -> Result<(), PowError> {
        (**self).verify(pow, g, c, m, d)
    }
}

impl<T: PowVerifier + ?Sized> PowVerifier for Box<T> {
    fn verify(&self, pow: u64, g: u8, c: &[u8; 8], m: &[u8; 32], d: &[u8; 32]) -> Result<(), PowError> {
        (**self).verify(pow, g, c, m, d)
    }
}

impl<T: PowVerifier + ?Sized> PowVerifier for std::sync::Arc<T> {
    fn verify(&self, pow: u64, g: u8, c: &[u8; 8], m: &[u8; 32], d: &[u8; 32]) -> Result<(), PowError> {
        (**self).verify(pow, g, c, m, d)
    }
}

/// The 48-byte RandomX input of `pow` (its low 56 bits) for `nonce_group`.
pub fn pow_input(pow: u64, nonce_group: u8, challenge: &[u8; 8], miner_id: &[u8; 32]) -> [u8; POW_INPUT_LEN] {
    let mut input = [0u8; POW_INPUT_LEN];
    input[..7].copy_from_slice(&pow.to_le_bytes()[..7]);
    input[7] = nonce_group;
    input[8..16].copy_from_slice(challenge);
    input[16..].copy_from_slice(miner_id);
    input
}

/// The first 8 bytes of a 32-byte challenge, as the k2pow takes them.
pub fn challenge8(challenge: &[u8; 32]) -> [u8; 8] {
    let mut c = [0u8; 8];
    c.copy_from_slice(&challenge[..8]);
    c
}

/// The result of comparing `hash` with `difficulty`, as an error when not strictly below.
pub fn check_hash(
    hash: &[u8; 32],
    pow: u64,
    nonce_group: u8,
    scaled_difficulty: &[u8; 32],
) -> Result<(), PowError> {
    if hash < scaled_difficulty {
        Ok(())
    } else {
        Err(PowError::InvalidPow {
            pow,
            nonce_group,
            hash: hex::encode(hash),
            difficulty: hex::encode(scaled_difficulty),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_layout() {
        let miner: [u8; 32] = hex::decode("8411931ece38b5abfb611f3bb1155a7eecd9c0e6c26672b567f7b1629c70a924")
            .expect("hex")
            .try_into()
            .expect("32");
        let i = pow_input(18712 | (0xab << 56), 0, b"hello wo", &miner);
        assert_eq!(
            hex::encode(i),
            "184900000000000068656c6c6f20776f8411931ece38b5abfb611f3bb1155a7eecd9c0e6c26672b567f7b1629c70a924"
        );
        assert_eq!(challenge8(b"hello world, challenge me!!!!!!!"), *b"hello wo");
    }

    #[test]
    fn strictly_below() {
        let d = [0x10; 32];
        assert!(check_hash(&[0x0f; 32], 1, 2, &d).is_ok());
        let err = check_hash(&d, 1, 2, &d).expect_err("equal is invalid");
        assert!(err.to_string().contains("pow 1 for nonce group 2"), "{err}");
    }
}
