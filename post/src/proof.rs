//! The proof and the configuration shared by the prover and the verifier (spec/post.md §4.1,
//! §4.8, §5.1).
//!
//! JSON forms (the certifier's serde forms, byte strings in standard base64 with padding):
//! - [`Proof`]: `{"nonce": <u32>, "indices": "<base64>", "pow": <u64>}`
//! - [`ProofMetadata`]: `{"node_id", "commitment_atx_id", "challenge"` (base64)`, "num_units",
//!   "labels_per_unit"}`; `labels_per_unit` may be absent (it is then 0, see [`ProofMetadata`]).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::compression::{compress_indices, decompress_indices};
use crate::difficulty::required_bits;

/// Mainnet k2pow difficulty for one space unit: `000dfb23b0979b4b` followed by 24 zero bytes.
pub const MAINNET_POW_DIFFICULTY: [u8; 32] = [
    0x00, 0x0d, 0xfb, 0x23, 0xb0, 0x97, 0x9b, 0x4b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0,
];

/// A proof of space-time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The winning nonce; its nonce group is `nonce / 16`.
    pub nonce: u32,
    /// K2 label indices, compressed to `bitlength(numLabels)` bits each (spec §4.8).
    #[serde(with = "base64_bytes")]
    pub indices: Vec<u8>,
    /// The k2pow of the nonce's group.
    pub pow: u64,
}

impl Proof {
    /// Build a proof from uncompressed indices.
    pub fn new(nonce: u32, indices: &[u64], num_labels: u64, pow: u64) -> Self {
        Self {
            nonce,
            indices: compress_indices(indices, required_bits(num_labels)),
            pow,
        }
    }

    /// The first `k2` indices, decompressed for `num_labels` labels.
    pub fn decoded_indices(&self, num_labels: u64, k2: u32) -> Vec<u64> {
        decompress_indices(&self.indices, required_bits(num_labels))
            .take(k2 as usize)
            .collect()
    }

    pub fn to_json(&self) -> String {
        // A struct of integers and a string always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Proof parameters of the network (spec §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofConfig {
    /// Expected number of qualifying labels per nonce (mainnet 26).
    pub k1: u32,
    /// Number of qualifying labels a proof lists (mainnet 37).
    pub k2: u32,
    /// k2pow threshold for one space unit, 32 bytes big-endian (before scaling by numUnits).
    pub pow_difficulty: [u8; 32],
}

impl ProofConfig {
    /// Mainnet: K1 = 26, K2 = 37, [`MAINNET_POW_DIFFICULTY`].
    pub const MAINNET: ProofConfig = ProofConfig {
        k1: 26,
        k2: 37,
        pow_difficulty: MAINNET_POW_DIFFICULTY,
    };
}

/// Initialization parameters the verifier applies (spec §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitConfig {
    pub min_num_units: u32,
    pub max_num_units: u32,
    pub labels_per_unit: u64,
    /// scrypt N (power of two >= 2); r = p = 1.
    pub scrypt_n: usize,
}

impl InitConfig {
    /// go-spacemesh mainnet: 4 .. 2^32-1 units of 2^32 labels, N = 8192.
    pub const MAINNET: InitConfig = InitConfig {
        min_num_units: 4,
        max_num_units: u32::MAX,
        labels_per_unit: 1 << 32,
        scrypt_n: 8192,
    };
}

/// What a proof is about.
///
/// `labels_per_unit` is the value the prover used. The reference verifier takes the number of
/// labels from [`InitConfig::labels_per_unit`] and ignores this field; a strict verifier
/// rejects a mismatch. 0 means "not given".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofMetadata {
    #[serde(with = "base64_array")]
    pub node_id: [u8; 32],
    #[serde(with = "base64_array")]
    pub commitment_atx_id: [u8; 32],
    #[serde(with = "base64_array")]
    pub challenge: [u8; 32],
    pub num_units: u32,
    #[serde(default)]
    pub labels_per_unit: u64,
}

impl ProofMetadata {
    pub fn from_post_metadata(m: &crate::metadata::PostMetadata, challenge: [u8; 32]) -> Self {
        Self {
            node_id: m.node_id,
            commitment_atx_id: m.commitment_atx_id,
            challenge,
            num_units: m.num_units,
            labels_per_unit: m.labels_per_unit,
        }
    }
}

mod base64_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

mod base64_array {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let v = super::base64_bytes::deserialize(d)?;
        let len = v.len();
        v.try_into()
            .map_err(|_| serde::de::Error::custom(format!("expected 32 bytes, got {len}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"indices": "3IAqMIcPQSOKBJpYE5gCZOCPCwJKckk1CTT5RvHgHn6UnrCUvfJZ+GuG1TOYxtYqW5W7c7oO3WG8nHf2AA==", "nonce": 8, "pow": 18712}"#;

    #[test]
    fn json_round_trip() {
        let p = Proof::from_json(JSON).expect("parse");
        assert_eq!(p.nonce, 8);
        assert_eq!(p.pow, 18712);
        assert_eq!(p.indices.len(), 61);
        assert_eq!(&p.decoded_indices(4096, 37)[..3], &[220, 340, 460]);
        let text = p.to_json();
        assert!(text.starts_with(r#"{"nonce":8,"indices":"3IAq"#), "{text}");
        assert_eq!(Proof::from_json(&text).expect("again"), p);
        assert_eq!(Proof::new(8, &p.decoded_indices(4096, 37), 4096, 18712), p);
    }

    #[test]
    fn bad_json_is_named() {
        let err = Proof::from_json(r#"{"nonce": 1, "indices": "!!", "pow": 0}"#).expect_err("bad");
        assert!(err.to_string().contains("base64"), "{err}");
        assert!(Proof::from_json(r#"{"nonce": -1, "indices": "", "pow": 0}"#).is_err());
    }

    #[test]
    fn metadata_json() {
        let m = ProofMetadata {
            node_id: [1; 32],
            commitment_atx_id: [2; 32],
            challenge: [3; 32],
            num_units: 4,
            labels_per_unit: 1024,
        };
        let text = serde_json::to_string(&m).expect("ser");
        let back: ProofMetadata = serde_json::from_str(&text).expect("de");
        assert_eq!(back, m);
        let short = text.replace(",\"labels_per_unit\":1024", "");
        let back: ProofMetadata = serde_json::from_str(&short).expect("de");
        assert_eq!(back.labels_per_unit, 0);
        let bad = text.replace(&B64.encode([1u8; 32]), &B64.encode([1u8; 31]));
        assert!(serde_json::from_str::<ProofMetadata>(&bad).is_err());
    }

    #[test]
    fn mainnet_constant() {
        assert_eq!(
            hex::encode(MAINNET_POW_DIFFICULTY),
            "000dfb23b0979b4b000000000000000000000000000000000000000000000000"
        );
    }
}
