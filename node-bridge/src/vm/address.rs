//! Account addresses (spec/devnet.md §5.1): 24 bytes, the first four reserved zeros, the last 20
//! the tail of `blake3(SCALE(template) ‖ SCALE(spawn args))`; written as bech32 with a network HRP.

use std::fmt;
use std::str::FromStr;

use super::bech32::{self, Bech32Error};

/// Length of an address in bytes.
pub const ADDRESS_LEN: usize = 24;
/// Leading bytes of an address that must be zero.
pub const RESERVED_LEN: usize = 4;

/// The HRP of mainnet addresses (the default).
pub const HRP_MAINNET: &str = "sm";
/// The HRP of the testnet and fastnet presets.
pub const HRP_TESTNET: &str = "stest";
/// The HRP of the standalone preset, which the embedded devnet uses (§6.3).
pub const HRP_STANDALONE: &str = "standalone";

/// A 24-byte account (or template) address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address(pub [u8; ADDRESS_LEN]);

/// Why a string or byte slice is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address: {0}")]
    Bech32(#[from] Bech32Error),
    #[error("address has human-readable part {found:?}, expected {expected:?}")]
    WrongHrp { expected: String, found: String },
    #[error("address is {len} bytes, expected {ADDRESS_LEN}")]
    WrongLength { len: usize },
    #[error("address reserved bytes are {reserved:02x?}, expected zeros")]
    ReservedNotZero { reserved: [u8; RESERVED_LEN] },
    #[error("address hex: {0}")]
    Hex(String),
    #[error("address has human-readable part {found:?}, not one of {HRP_MAINNET:?}, {HRP_TESTNET:?}, {HRP_STANDALONE:?}")]
    UnknownHrp { found: String },
}

impl Address {
    /// An address as people write it: bech32 with any network's prefix (mainnet, testnet,
    /// standalone), or 48 hex digits.
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        if s.len() == 2 * ADDRESS_LEN && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Address::from_hex(s);
        }
        let (hrp, _) = bech32::decode(s)?;
        match [HRP_MAINNET, HRP_TESTNET, HRP_STANDALONE]
            .into_iter()
            .find(|h| *h == hrp)
        {
            Some(h) => Address::decode(h, s),
            None => Err(AddressError::UnknownHrp { found: hrp }),
        }
    }

    /// The address of an account spawned from `template` with SCALE-encoded `spawn_args`.
    pub fn compute(template: &Address, spawn_args: &[u8]) -> Address {
        let mut h = blake3::Hasher::new();
        // SCALE of a fixed-size array is its raw bytes.
        h.update(&template.0);
        h.update(spawn_args);
        let digest = h.finalize();
        let mut out = [0u8; ADDRESS_LEN];
        out[RESERVED_LEN..].copy_from_slice(&digest.as_bytes()[32 - (ADDRESS_LEN - RESERVED_LEN)..]);
        Address(out)
    }

    /// A template address: 23 zero bytes then `id`.
    pub const fn template(id: u8) -> Address {
        let mut out = [0u8; ADDRESS_LEN];
        out[ADDRESS_LEN - 1] = id;
        Address(out)
    }

    pub fn as_bytes(&self) -> &[u8; ADDRESS_LEN] {
        &self.0
    }

    /// From exactly 24 bytes whose first four are zero.
    pub fn from_slice(bytes: &[u8]) -> Result<Address, AddressError> {
        let arr: [u8; ADDRESS_LEN] = bytes
            .try_into()
            .map_err(|_| AddressError::WrongLength { len: bytes.len() })?;
        let mut reserved = [0u8; RESERVED_LEN];
        reserved.copy_from_slice(&arr[..RESERVED_LEN]);
        if reserved != [0u8; RESERVED_LEN] {
            return Err(AddressError::ReservedNotZero { reserved });
        }
        Ok(Address(arr))
    }

    /// The bech32 text form under `hrp` (e.g. `sm1qqqqqq…`, 48 characters for `sm`).
    pub fn encode(&self, hrp: &str) -> Result<String, AddressError> {
        Ok(bech32::encode(hrp, &bech32::bytes_to_five_bit(&self.0))?)
    }

    /// Reads the bech32 text form, requiring `hrp` (compared case-insensitively, as an
    /// all-uppercase bech32 string is valid).
    pub fn decode(hrp: &str, s: &str) -> Result<Address, AddressError> {
        let (found, data) = bech32::decode(s)?;
        if found != hrp.to_ascii_lowercase() {
            return Err(AddressError::WrongHrp {
                expected: hrp.to_string(),
                found,
            });
        }
        let bytes = bech32::five_bit_to_bytes(&data)?;
        Address::from_slice(&bytes)
    }

    /// Lowercase hex of the 24 bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Address, AddressError> {
        let bytes = hex::decode(s).map_err(|e| AddressError::Hex(e.to_string()))?;
        Address::from_slice(&bytes)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.to_hex())
    }
}

/// Hex, because the HRP is a property of the network, not of the address; use
/// [`Address::encode`] for the user-facing form.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::from_hex(s)
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Address::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// The precompiled templates (§5.2): their addresses are 23 zero bytes and an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// Single-key ed25519 wallet.
    Wallet,
    /// k-of-n ed25519 multisig.
    MultiSig,
    /// Vesting (multisig with drain-vault); not executable here yet.
    Vesting,
    /// Vault (cannot be a principal); not executable here yet.
    Vault,
}

impl Template {
    pub const ALL: [Template; 4] = [
        Template::Wallet,
        Template::MultiSig,
        Template::Vesting,
        Template::Vault,
    ];

    pub const fn id(self) -> u8 {
        match self {
            Template::Wallet => 1,
            Template::MultiSig => 2,
            Template::Vesting => 3,
            Template::Vault => 4,
        }
    }

    pub const fn address(self) -> Address {
        Address::template(self.id())
    }

    /// The template at `address`, if it is one of the four.
    pub fn from_address(address: &Address) -> Option<Template> {
        Template::ALL.into_iter().find(|t| t.address() == *address)
    }
}

/// The address of the single-key wallet for `public_key` (its spawn args are the raw key).
pub fn wallet_address(public_key: &[u8; 32]) -> Address {
    Address::compute(&Template::Wallet.address(), public_key)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parse_takes_any_networks_bech32_or_hex() {
        let a = Address::from_slice(&[
            0, 0, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
        ])
        .expect("address");
        for hrp in [HRP_MAINNET, HRP_TESTNET, HRP_STANDALONE] {
            assert_eq!(Address::parse(&a.encode(hrp).expect("encode")).expect(hrp), a);
        }
        assert_eq!(Address::parse(&a.to_hex()).expect("hex"), a);
        assert!(matches!(
            Address::parse(&a.encode("other").expect("encode")),
            Err(AddressError::UnknownHrp { found }) if found == "other"
        ));
        assert!(Address::parse("sm1notanaddress").is_err());
        assert!(Address::parse("abcd").is_err());
        assert!(Address::parse("").is_err());
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn template_addresses_end_in_their_id() {
        assert_eq!(Template::Wallet.address().0[23], 1);
        assert_eq!(Template::Vault.address().0[..23], [0u8; 23]);
        for t in Template::ALL {
            assert_eq!(Template::from_address(&t.address()), Some(t));
        }
        assert_eq!(Template::from_address(&Address::template(5)), None);
    }

    #[test]
    fn a_wallet_address_is_the_tail_of_blake3_of_template_and_key() {
        let key = [7u8; 32];
        let mut pre = Template::Wallet.address().0.to_vec();
        pre.extend_from_slice(&key);
        let digest = blake3::hash(&pre);
        let a = wallet_address(&key);
        assert_eq!(a.0[..4], [0u8; 4]);
        assert_eq!(a.0[4..], digest.as_bytes()[12..]);
    }

    #[test]
    fn text_form_has_the_expected_shape() {
        let a = wallet_address(&[1u8; 32]);
        let s = a.encode(HRP_MAINNET).expect("encodes");
        assert_eq!(s.len(), 48);
        assert!(s.starts_with("sm1qqqqqq"), "{s}");
        assert_eq!(Address::decode(HRP_MAINNET, &s), Ok(a));
        assert_eq!(Address::decode(HRP_MAINNET, &s.to_ascii_uppercase()), Ok(a));
        let st = a.encode(HRP_STANDALONE).expect("encodes");
        assert!(st.starts_with("standalone1qqqqqq"), "{st}");
        assert_eq!(Address::decode(HRP_STANDALONE, &st), Ok(a));
    }

    #[test]
    fn decoding_names_what_is_wrong() {
        let a = wallet_address(&[2u8; 32]);
        let s = a.encode(HRP_TESTNET).expect("encodes");
        assert_eq!(
            Address::decode(HRP_MAINNET, &s),
            Err(AddressError::WrongHrp {
                expected: "sm".into(),
                found: "stest".into()
            })
        );
        // Mixed case.
        let mut mixed = s.clone();
        mixed.replace_range(..1, "S");
        assert_eq!(
            Address::decode(HRP_TESTNET, &mixed),
            Err(AddressError::Bech32(Bech32Error::MixedCase))
        );
        // A changed data character breaks the checksum.
        let mut bad = s.clone().into_bytes();
        let i = bad.len() - 10;
        bad[i] = if bad[i] == b'q' { b'p' } else { b'q' };
        let bad = String::from_utf8(bad).expect("ascii");
        assert_eq!(
            Address::decode(HRP_TESTNET, &bad),
            Err(AddressError::Bech32(Bech32Error::BadChecksum))
        );
        // 20 bytes (a pre-2022 address) is the wrong length.
        let short = bech32::encode("sm", &bech32::bytes_to_five_bit(&[0u8; 20])).expect("encodes");
        assert_eq!(
            Address::decode(HRP_MAINNET, &short),
            Err(AddressError::WrongLength { len: 20 })
        );
        // Non-zero reserved bytes.
        let mut raw = [0u8; 24];
        raw[0] = 1;
        let reserved = bech32::encode("sm", &bech32::bytes_to_five_bit(&raw)).expect("encodes");
        assert_eq!(
            Address::decode(HRP_MAINNET, &reserved),
            Err(AddressError::ReservedNotZero {
                reserved: [1, 0, 0, 0]
            })
        );
    }

    #[test]
    fn serde_uses_hex() {
        let a = Template::MultiSig.address();
        let j = serde_json::to_string(&a).expect("serializes");
        assert_eq!(j, format!("\"{}\"", "00".repeat(23) + "02"));
        let back: Address = serde_json::from_str(&j).expect("deserializes");
        assert_eq!(back, a);
    }

    proptest! {
        #[test]
        fn addresses_round_trip_through_text(tail: [u8; 20], hrp in prop::sample::select(vec![HRP_MAINNET, HRP_TESTNET, HRP_STANDALONE])) {
            let mut raw = [0u8; 24];
            raw[4..].copy_from_slice(&tail);
            let a = Address(raw);
            let s = a.encode(hrp).expect("encodes");
            prop_assert_eq!(Address::decode(hrp, &s), Ok(a));
        }
    }
}
