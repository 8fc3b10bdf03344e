//! Passphrase key derivation (Argon2id) and sealing (XChaCha20-Poly1305).

use argon2::{Algorithm, Argon2, Block, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::KeystoreError;

/// Salt length stored in the header.
pub(crate) const SALT_LEN: usize = 32;
/// XChaCha20-Poly1305 nonce length.
pub(crate) const NONCE_LEN: usize = 24;
/// Largest memory cost accepted from a header (4 GiB), so that a damaged header cannot make `open`
/// allocate without bound.
const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
/// Largest iteration count accepted.
const MAX_T_COST: u32 = 64;
/// Largest parallelism accepted.
const MAX_P_COST: u32 = 64;

/// Argon2id parameters for deriving the keystore key from the passphrase.
///
/// [`KdfParams::default`] (= [`KdfParams::production`]) is 64 MiB, 3 passes, 1 lane. Tests may use
/// cheap parameters through [`KdfParams::new`], e.g. `KdfParams::new(8, 1, 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
}

impl KdfParams {
    /// Production parameters: m = 64 MiB, t = 3, p = 1.
    pub const fn production() -> Self {
        Self {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }

    /// Custom parameters, checked against Argon2's limits (m ≥ 8·p KiB, t ≥ 1, p ≥ 1) and ours
    /// (m ≤ 4 GiB, t ≤ 64, p ≤ 64).
    pub fn new(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Result<Self, KeystoreError> {
        let params = Self {
            m_cost_kib,
            t_cost,
            p_cost,
        };
        params.argon2_params()?;
        Ok(params)
    }

    /// Memory cost in KiB.
    pub fn m_cost_kib(&self) -> u32 {
        self.m_cost_kib
    }

    /// Number of passes.
    pub fn t_cost(&self) -> u32 {
        self.t_cost
    }

    /// Degree of parallelism.
    pub fn p_cost(&self) -> u32 {
        self.p_cost
    }

    fn invalid(&self, reason: impl Into<String>) -> KeystoreError {
        KeystoreError::InvalidKdfParams {
            m_cost_kib: self.m_cost_kib,
            t_cost: self.t_cost,
            p_cost: self.p_cost,
            reason: reason.into(),
        }
    }

    pub(crate) fn argon2_params(&self) -> Result<Params, KeystoreError> {
        if self.m_cost_kib > MAX_M_COST_KIB {
            return Err(self.invalid("memory above 4 GiB"));
        }
        if self.t_cost > MAX_T_COST {
            return Err(self.invalid("more than 64 passes"));
        }
        if self.p_cost > MAX_P_COST {
            return Err(self.invalid("more than 64 lanes"));
        }
        Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| self.invalid(e.to_string()))
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::production()
    }
}

/// The 32-byte symmetric key derived from the passphrase. Zeroed on drop; never printed.
pub(crate) struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    /// Argon2id(passphrase, salt) with `params`. The working memory is zeroed afterwards.
    pub(crate) fn derive(
        passphrase: &str,
        salt: &[u8; SALT_LEN],
        params: &KdfParams,
    ) -> Result<Self, KeystoreError> {
        let argon_params = params.argon2_params()?;
        let blocks = argon_params.block_count();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
        let mut memory: Zeroizing<Vec<Block>> = Zeroizing::new(vec![Block::default(); blocks]);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into_with_memory(passphrase.as_bytes(), salt, out.as_mut_slice(), &mut memory[..])
            .map_err(KeystoreError::KeyDerivation)?;
        Ok(Self(out))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        // The cipher holds a copy of the key and zeroes it on drop (chacha20poly1305's Drop).
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }

    /// Encrypts `plaintext` with a fresh random nonce, binding `aad`.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Option<([u8; NONCE_LEN], Vec<u8>)> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .ok()?;
        Some((nonce, ciphertext))
    }

    /// Decrypts and authenticates; `None` when the key, nonce, ciphertext or `aad` do not match.
    pub(crate) fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad })
            .ok()
            .map(Zeroizing::new)
    }
}

/// A fresh random salt.
pub(crate) fn random_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    salt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> KdfParams {
        KdfParams {
            m_cost_kib: 8,
            t_cost: 1,
            p_cost: 1,
        }
    }

    #[test]
    fn production_parameters_are_memory_hard() {
        let p = KdfParams::default();
        assert_eq!((p.m_cost_kib(), p.t_cost(), p.p_cost()), (65536, 3, 1));
        assert!(p.argon2_params().is_ok());
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        for (m, t, p) in [
            (0, 1, 1),
            (8, 0, 1),
            (8, 1, 0),
            (MAX_M_COST_KIB + 1, 1, 1),
            (64, 65, 1),
        ] {
            assert!(
                matches!(
                    KdfParams::new(m, t, p),
                    Err(KeystoreError::InvalidKdfParams { .. })
                ),
                "({m}, {t}, {p}) accepted"
            );
        }
    }

    #[test]
    fn derivation_is_deterministic_and_salted() -> Result<(), KeystoreError> {
        let salt = [7u8; SALT_LEN];
        let a = MasterKey::derive("pass", &salt, &cheap())?;
        let b = MasterKey::derive("pass", &salt, &cheap())?;
        let c = MasterKey::derive("pass", &[8u8; SALT_LEN], &cheap())?;
        assert_eq!(*a.0, *b.0);
        assert_ne!(*a.0, *c.0);
        Ok(())
    }

    #[test]
    fn seal_binds_aad_and_uses_fresh_nonces() -> Result<(), KeystoreError> {
        let key = MasterKey::derive("pass", &[1u8; SALT_LEN], &cheap())?;
        let (n1, c1) = key.seal(b"secret", b"ad").ok_or(KeystoreError::WrongPassphrase)?;
        let (n2, c2) = key.seal(b"secret", b"ad").ok_or(KeystoreError::WrongPassphrase)?;
        assert_ne!(n1, n2);
        assert_ne!(c1, c2);
        assert_eq!(
            key.open(&n1, &c1, b"ad").as_deref().map(Vec::as_slice),
            Some(&b"secret"[..])
        );
        assert!(key.open(&n1, &c1, b"other").is_none());
        assert!(key.open(&n2, &c1, b"ad").is_none());
        Ok(())
    }
}
