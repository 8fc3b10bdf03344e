//! The coordinator's keystore: the identities' ed25519 keys, encrypted at rest.
//!
//! * Identities are ed25519 keys; a [`NodeId`] is the 32-byte public key (node.md §3.1).
//! * At rest: Argon2id (passphrase → key, parameters and salt in `keystore.json`, with an encrypted
//!   check value so a wrong passphrase is reported as [`KeystoreError::WrongPassphrase`]) and
//!   XChaCha20-Poly1305 per key file, associated data binding the node id.
//! * Secret bytes exist only inside this module, in zeroize-on-drop types, and are never logged or
//!   printed. The only way out is [`Keystore::export_key_hex`], which needs the passphrase.
//! * ATX signatures need a [`SigningPermit`] and ballot signatures a [`BallotPermit`] from the
//!   safety database; eligibility VRF proofs come from [`Keystore::vrf_prove`] (deterministic, so
//!   nothing to record); other domains use [`Keystore::sign`] (node.md §3.2: `genesis prefix ‖ domain byte ‖ message`).
//!
//! go-spacemesh key files (128 hex characters, seed ‖ public key) are imported with
//! [`Keystore::import_key_hex`] / [`Keystore::import_identities_dir`] and written for a node with
//! [`write_key_file`].

mod crypto;
mod error;
mod fsutil;
mod gokey;
mod permit;
mod store;

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crypto::KdfParams;
pub use error::{IoStep, KeyHexError, KeystoreError, NodeIdParseError};
pub use gokey::write_key_file;
pub use permit::{BallotPermit, SigningPermit};
pub use store::Keystore;

/// An identity: its 32-byte ed25519 public key. Displays and serialises as 64 lowercase hex
/// characters; parses from 64 hex characters of either case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 32]);

impl NodeId {
    /// Wraps public key bytes. (Any 32 bytes are accepted; whether they are a valid curve point is
    /// checked where a signature is verified.)
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The public key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The public key bytes, by value.
    pub const fn to_bytes(self) -> [u8; 32] {
        self.0
    }
}

impl From<[u8; 32]> for NodeId {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl From<NodeId> for [u8; 32] {
    fn from(id: NodeId) -> Self {
        id.0
    }
}

impl From<VerifyingKey> for NodeId {
    fn from(key: VerifyingKey) -> Self {
        Self(key.to_bytes())
    }
}

impl AsRef<[u8]> for NodeId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // Encoding 32 bytes into 64 always succeeds.
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = NodeIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(NodeIdParseError::WrongLength { found: s.len() });
        }
        if let Some(index) = s.bytes().position(|c| !c.is_ascii_hexdigit()) {
            return Err(NodeIdParseError::NotHex { index });
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| NodeIdParseError::NotHex { index: 0 })?;
        Ok(Self(bytes))
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Signature domains (node.md §3.2); the byte is inserted between the genesis prefix and the
/// message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// ATX (0). Only through [`Keystore::sign_atx`] with a [`SigningPermit`].
    Atx,
    /// Proposal (1).
    Proposal,
    /// Ballot (2).
    Ballot,
    /// Hare (3).
    Hare,
    /// PoET registration (4).
    Poet,
    /// Marriage certificate (5).
    Marriage,
    /// Beacon first message (10).
    BeaconFirstMsg,
    /// Beacon follow-up message (11).
    BeaconFollowupMsg,
}

impl Domain {
    /// The domain byte.
    pub const fn byte(self) -> u8 {
        match self {
            Domain::Atx => 0,
            Domain::Proposal => 1,
            Domain::Ballot => 2,
            Domain::Hare => 3,
            Domain::Poet => 4,
            Domain::Marriage => 5,
            Domain::BeaconFirstMsg => 10,
            Domain::BeaconFollowupMsg => 11,
        }
    }
}

/// The bytes actually signed for `domain`: `genesis_prefix ‖ domain byte ‖ msg` (node.md §3.2).
/// Use it with [`verify_signature`] to check a domain signature.
pub fn domain_message(genesis_prefix: &[u8; 20], domain: Domain, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(21 + msg.len());
    out.extend_from_slice(genesis_prefix);
    out.push(domain.byte());
    out.extend_from_slice(msg);
    out
}

/// The ATX v1 signed payload (node.md §2.6): SCALE `{Publish: compact u32, MsgHash: ATX id}`, i.e.
/// compact(`publish_epoch`) ‖ `atx_id`. This is the `message` for [`Keystore::sign_atx`] and the
/// input of the permit's `blake3` hash.
pub fn atx_v1_message(publish_epoch: u32, atx_id: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + 32);
    scale_compact_u32(publish_epoch, &mut out);
    out.extend_from_slice(atx_id);
    out
}

/// SCALE compact encoding of a `u32`.
fn scale_compact_u32(value: u32, out: &mut Vec<u8>) {
    if value < 1 << 6 {
        out.push((value << 2) as u8);
    } else if value < 1 << 14 {
        out.extend_from_slice(&(((value << 2) | 0b01) as u16).to_le_bytes());
    } else if value < 1 << 30 {
        out.extend_from_slice(&((value << 2) | 0b10).to_le_bytes());
    } else {
        out.push(0b11);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Verifies an ed25519 signature (strict: non-canonical encodings and small-order keys are
/// refused). `msg` is the full signed message, e.g. from [`domain_message`].
pub fn verify_signature(public: &[u8; 32], msg: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public) else {
        return false;
    };
    key.verify_strict(msg, &Signature::from_bytes(signature)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_text_and_serde_round_trip() -> Result<(), Box<dyn std::error::Error>> {
        let id = NodeId::from_bytes([0xab; 32]);
        let text = id.to_string();
        assert_eq!(text, "ab".repeat(32));
        assert_eq!(text.parse::<NodeId>()?, id);
        assert_eq!(text.to_uppercase().parse::<NodeId>()?, id);
        assert_eq!(format!("{id:?}"), format!("NodeId({text})"));
        let json = serde_json::to_string(&id)?;
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<NodeId>(&json)?, id);
        assert_eq!(
            "ab".parse::<NodeId>(),
            Err(NodeIdParseError::WrongLength { found: 2 })
        );
        let bad = format!("{}g", &text[..63]);
        assert_eq!(bad.parse::<NodeId>(), Err(NodeIdParseError::NotHex { index: 63 }));
        assert!(serde_json::from_str::<NodeId>("\"00\"").is_err());
        Ok(())
    }

    #[test]
    fn domain_bytes_follow_the_spec() {
        let all = [
            (Domain::Atx, 0),
            (Domain::Proposal, 1),
            (Domain::Ballot, 2),
            (Domain::Hare, 3),
            (Domain::Poet, 4),
            (Domain::Marriage, 5),
            (Domain::BeaconFirstMsg, 10),
            (Domain::BeaconFollowupMsg, 11),
        ];
        for (d, b) in all {
            assert_eq!(d.byte(), b);
        }
        let m = domain_message(&[1; 20], Domain::Poet, b"xy");
        assert_eq!(&m[..20], &[1; 20]);
        assert_eq!(&m[20..], &[4, b'x', b'y']);
    }

    #[test]
    fn scale_compact_matches_known_encodings() {
        let enc = |v| {
            let mut out = Vec::new();
            scale_compact_u32(v, &mut out);
            out
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(1), [0x04]);
        assert_eq!(enc(63), [0xfc]);
        assert_eq!(enc(64), [0x01, 0x01]);
        assert_eq!(enc(16383), [0xfd, 0xff]);
        assert_eq!(enc(16384), [0x02, 0x00, 0x01, 0x00]);
        assert_eq!(enc((1 << 30) - 1), [0xfe, 0xff, 0xff, 0xff]);
        assert_eq!(enc(1 << 30), [0x03, 0x00, 0x00, 0x00, 0x40]);
        assert_eq!(enc(u32::MAX), [0x03, 0xff, 0xff, 0xff, 0xff]);
        let m = atx_v1_message(2, &[7; 32]);
        assert_eq!(m[0], 0x08);
        assert_eq!(&m[1..], &[7; 32]);
    }
}
