//! Transactions (spec/devnet.md §5.3):
//!
//! ```text
//! tx  = compact8(version = 0) ‖ principal (24 B) ‖ compact8(method)
//!     ‖ [template address (24 B), only for spawn]
//!     ‖ compact64(nonce) ‖ compact64(gasPrice) ‖ SCALE(args) ‖ signature(s)
//! signed message = genesisID (20 B) ‖ tx without its signature(s)
//! tx id          = blake3(raw tx)
//! ```
//!
//! The args, and how the signatures are laid out, depend on a template: the spawned template
//! for spawn args, the principal's template for spend args and signatures (for a self-spawn
//! the principal has none yet, so the spawned template is used for both). Decoding therefore
//! takes the principal's template from the account state.
//!
//! Argument layouts:
//! - wallet spawn: `PublicKey` (32 raw bytes: SCALE of a fixed array has no length);
//! - multisig spawn: `Required u8`, `PublicKeys` as a compact length (≤ 10) then 32-byte keys;
//! - spend (wallet and multisig): `Destination` (24 raw bytes), `Amount` (compact64).
//!   The spec (§5.2) confirms the two fields and their order; that the destination is the raw
//!   address and the amount a compact64 is my reading of go-spacemesh's generated codec, and
//!   its golden `SpendArguments` file (written when addresses were 20 bytes:
//!   `0…0 03 33 33 ‖ 7d 05` for amount 351) agrees.
//!
//! Signatures: a wallet appends one 64-byte ed25519 signature; a multisig appends exactly
//! `Required` parts `{Ref u8, Sig [64]}` with no length prefix, key refs strictly increasing.

use ed25519_dalek::{Signer, SigningKey, Verifier};

use super::address::{Address, AddressError, Template, ADDRESS_LEN};
use crate::codec::{DecodeError, Decoder, Encoder};

/// Largest raw transaction accepted.
pub const TX_SIZE_LIMIT: usize = 1024;
/// The only transaction version.
pub const TX_VERSION: u8 = 0;
/// Method selector of spawn.
pub const METHOD_SPAWN: u8 = 0;
/// Method selector of spend.
pub const METHOD_SPEND: u8 = 16;
/// Method selector of drain-vault (vesting; not executable here).
pub const METHOD_DRAIN_VAULT: u8 = 17;
/// Most public keys a multisig holds.
pub const MULTISIG_MAX_KEYS: usize = 10;

/// Genesis ID: prefixed to every signed message so signatures do not replay across networks.
pub type GenesisId = [u8; 20];
/// An ed25519 public key.
pub type PublicKey = [u8; 32];
/// An ed25519 signature.
pub type Signature = [u8; 64];

/// A method this VM executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Spawn,
    Spend,
}

impl Method {
    pub const fn selector(self) -> u8 {
        match self {
            Method::Spawn => METHOD_SPAWN,
            Method::Spend => METHOD_SPEND,
        }
    }
}

/// blake3 of the raw transaction.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxId(pub [u8; 32]);

impl TxId {
    pub fn of(raw: &[u8]) -> TxId {
        TxId(*blake3::hash(raw).as_bytes())
    }
}

impl std::fmt::Debug for TxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TxId({})", hex::encode(self.0))
    }
}

impl std::fmt::Display for TxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl serde::Serialize for TxId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for TxId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let v = hex::decode(s.as_ref()).map_err(serde::de::Error::custom)?;
        let arr: [u8; 32] = v
            .try_into()
            .map_err(|_| serde::de::Error::custom("tx id is not 32 bytes"))?;
        Ok(TxId(arr))
    }
}

/// Why bytes are not a transaction this VM can execute. Any of these makes it ineffective.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("transaction is {len} bytes, limit {TX_SIZE_LIMIT}")]
    TooLarge { len: usize },
    #[error("transaction: {0}")]
    Decode(#[from] DecodeError),
    #[error("transaction version {0} is not supported")]
    UnsupportedVersion(u64),
    #[error("transaction {what}: {source}")]
    BadAddress {
        what: &'static str,
        source: AddressError,
    },
    #[error("method selector {0} is not spawn (0) or spend (16)")]
    UnknownMethod(u64),
    #[error("template address {0} is not a known template")]
    UnknownTemplate(Address),
    #[error("template {0:?} is not executable by this VM")]
    UnsupportedTemplate(Template),
    #[error("principal {0} is not spawned and the transaction is not its self-spawn")]
    NotSpawned(Address),
    #[error("multisig needs 1..={keys} signatures of {keys} keys, asks {required}")]
    BadMultisig { required: u8, keys: usize },
}

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Spawn an account of `args.template()`; a self-spawn when it hashes to the principal.
    Spawn(SpawnArgs),
    /// Move `amount` to `destination`.
    Spend { destination: Address, amount: u64 },
}

impl Call {
    pub fn method(&self) -> Method {
        match self {
            Call::Spawn(_) => Method::Spawn,
            Call::Spend { .. } => Method::Spend,
        }
    }
}

/// Spawn arguments, which are also the immutable state of the spawned account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SpawnArgs {
    Wallet {
        public_key: PublicKey,
    },
    MultiSig {
        required: u8,
        public_keys: Vec<PublicKey>,
    },
}

impl SpawnArgs {
    pub fn template(&self) -> Template {
        match self {
            SpawnArgs::Wallet { .. } => Template::Wallet,
            SpawnArgs::MultiSig { .. } => Template::MultiSig,
        }
    }

    /// SCALE encoding (what the address hashes and the account stores as state).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        self.encode_into(&mut e);
        e.finish()
    }

    fn encode_into(&self, e: &mut Encoder) {
        match self {
            SpawnArgs::Wallet { public_key } => {
                e.array(public_key);
            }
            SpawnArgs::MultiSig {
                required,
                public_keys,
            } => {
                e.u8(*required).list(public_keys, |e, k| {
                    e.array(k);
                });
            }
        }
    }

    /// Reads args (or account state) of `template`.
    pub fn decode(template: Template, d: &mut Decoder<'_>) -> Result<SpawnArgs, TxError> {
        match template {
            Template::Wallet => Ok(SpawnArgs::Wallet {
                public_key: d.array("wallet public key")?,
            }),
            Template::MultiSig => {
                let required = d.u8("multisig required")?;
                let public_keys = d.list(MULTISIG_MAX_KEYS, "multisig public keys", |d| {
                    d.array("multisig public key")
                })?;
                if required == 0 || usize::from(required) > public_keys.len() {
                    return Err(TxError::BadMultisig {
                        required,
                        keys: public_keys.len(),
                    });
                }
                Ok(SpawnArgs::MultiSig {
                    required,
                    public_keys,
                })
            }
            other => Err(TxError::UnsupportedTemplate(other)),
        }
    }

    /// The address this spawn creates.
    pub fn address(&self) -> Address {
        Address::compute(&self.template().address(), &self.encode())
    }

    /// Public keys held.
    pub fn keys(&self) -> usize {
        match self {
            SpawnArgs::Wallet { .. } => 1,
            SpawnArgs::MultiSig { public_keys, .. } => public_keys.len(),
        }
    }

    /// Signatures a transaction of this account carries.
    pub fn signatures(&self) -> usize {
        match self {
            SpawnArgs::Wallet { .. } => 1,
            SpawnArgs::MultiSig { required, .. } => usize::from(*required),
        }
    }
}

/// The signature(s) at the end of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signatures {
    Single(Signature),
    /// `(key ref, signature)`, refs strictly increasing.
    Multi(Vec<(u8, Signature)>),
}

/// The template-independent prefix of a transaction (enough to order a block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxHeader {
    pub principal: Address,
    pub method: Method,
    /// Present for spawn only.
    pub template: Option<Template>,
    pub nonce: u64,
    pub gas_price: u64,
}

impl TxHeader {
    /// Reads the header off the front of `raw`, leaving `d` at the args.
    fn read(d: &mut Decoder<'_>) -> Result<TxHeader, TxError> {
        let version = d.compact_max(u64::from(u8::MAX), "version")?;
        if version != u64::from(TX_VERSION) {
            return Err(TxError::UnsupportedVersion(version));
        }
        let principal = read_address(d, "principal")?;
        let method = match d.compact_max(u64::from(u8::MAX), "method")? {
            m if m == u64::from(METHOD_SPAWN) => Method::Spawn,
            m if m == u64::from(METHOD_SPEND) => Method::Spend,
            m => return Err(TxError::UnknownMethod(m)),
        };
        let template = match method {
            Method::Spawn => {
                let a = read_address(d, "template address")?;
                Some(Template::from_address(&a).ok_or(TxError::UnknownTemplate(a))?)
            }
            Method::Spend => None,
        };
        let nonce = d.compact("nonce")?;
        let gas_price = d.compact("gas price")?;
        Ok(TxHeader {
            principal,
            method,
            template,
            nonce,
            gas_price,
        })
    }

    /// Reads only the header of a raw transaction (no state needed).
    pub fn peek(raw: &[u8]) -> Result<TxHeader, TxError> {
        if raw.len() > TX_SIZE_LIMIT {
            return Err(TxError::TooLarge { len: raw.len() });
        }
        TxHeader::read(&mut Decoder::new(raw))
    }

    fn write(&self, e: &mut Encoder) {
        e.compact(u64::from(TX_VERSION))
            .array(&self.principal.0)
            .compact(u64::from(self.method.selector()));
        if let Some(t) = self.template {
            e.array(&t.address().0);
        }
        e.compact(self.nonce).compact(self.gas_price);
    }
}

fn read_address(d: &mut Decoder<'_>, what: &'static str) -> Result<Address, TxError> {
    let raw: [u8; ADDRESS_LEN] = d.array(what)?;
    Address::from_slice(&raw).map_err(|source| TxError::BadAddress { what, source })
}

/// A decoded transaction with its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tx {
    pub header: TxHeader,
    pub call: Call,
    pub signatures: Signatures,
    raw: Vec<u8>,
    /// Length of the part the signatures cover.
    unsigned_len: usize,
}

impl Tx {
    /// Decodes `raw` given the principal's template (`None` when it is not spawned).
    pub fn decode(raw: &[u8], principal_template: Option<&SpawnArgs>) -> Result<Tx, TxError> {
        if raw.len() > TX_SIZE_LIMIT {
            return Err(TxError::TooLarge { len: raw.len() });
        }
        let mut d = Decoder::new(raw);
        let header = TxHeader::read(&mut d)?;
        let call = match header.template {
            Some(t) => Call::Spawn(SpawnArgs::decode(t, &mut d)?),
            None => {
                if principal_template.is_none() {
                    return Err(TxError::NotSpawned(header.principal));
                }
                let destination = read_address(&mut d, "destination")?;
                let amount = d.compact("amount")?;
                Call::Spend { destination, amount }
            }
        };
        // The signer's layout: the principal's template, or for a self-spawn the spawned one.
        let signer = match (principal_template, &call) {
            (Some(p), _) => p,
            (None, Call::Spawn(args)) if args.address() == header.principal => args,
            (None, Call::Spawn(_)) => return Err(TxError::NotSpawned(header.principal)),
            (None, Call::Spend { .. }) => return Err(TxError::NotSpawned(header.principal)),
        };
        let unsigned_len = raw.len() - d.remaining();
        let signatures = match signer {
            SpawnArgs::Wallet { .. } => Signatures::Single(d.array("signature")?),
            SpawnArgs::MultiSig { required, .. } => {
                let mut parts = Vec::with_capacity(usize::from(*required));
                for _ in 0..*required {
                    let r = d.u8("signature key ref")?;
                    parts.push((r, d.array("signature")?));
                }
                Signatures::Multi(parts)
            }
        };
        d.finish()?;
        Ok(Tx {
            header,
            call,
            signatures,
            raw: raw.to_vec(),
            unsigned_len,
        })
    }

    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    pub fn id(&self) -> TxId {
        TxId::of(&self.raw)
    }

    /// The bytes each signature signs: genesis ID then the transaction without signatures.
    pub fn signed_message(&self, genesis: &GenesisId) -> Vec<u8> {
        signing_body(genesis, &self.raw[..self.unsigned_len])
    }

    /// Checks the signatures against the signer's keys (`signer` as passed to decode, or the
    /// spawn args for a self-spawn).
    pub fn verify(&self, genesis: &GenesisId, signer: &SpawnArgs) -> bool {
        let msg = self.signed_message(genesis);
        match (signer, &self.signatures) {
            (SpawnArgs::Wallet { public_key }, Signatures::Single(sig)) => verify_one(public_key, &msg, sig),
            (
                SpawnArgs::MultiSig {
                    required,
                    public_keys,
                },
                Signatures::Multi(parts),
            ) => {
                if parts.len() != usize::from(*required) {
                    return false;
                }
                let mut last: Option<u8> = None;
                for (r, sig) in parts {
                    if last.is_some_and(|l| *r <= l) {
                        return false;
                    }
                    last = Some(*r);
                    match public_keys.get(usize::from(*r)) {
                        Some(k) if verify_one(k, &msg, sig) => {}
                        _ => return false,
                    }
                }
                true
            }
            _ => false,
        }
    }
}

fn verify_one(key: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(key) else {
        return false;
    };
    vk.verify(msg, &ed25519_dalek::Signature::from_bytes(sig)).is_ok()
}

/// `genesis ‖ unsigned tx`, what ed25519 signs (go-spacemesh's `core.SigningBody`).
pub fn signing_body(genesis: &GenesisId, unsigned: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(genesis.len() + unsigned.len());
    m.extend_from_slice(genesis);
    m.extend_from_slice(unsigned);
    m
}

/// The unsigned part of a transaction; append signatures with [`sign_single`] or
/// [`sign_multi`].
pub fn encode_unsigned(principal: Address, nonce: u64, gas_price: u64, call: &Call) -> Vec<u8> {
    let mut e = Encoder::new();
    let header = TxHeader {
        principal,
        method: call.method(),
        template: match call {
            Call::Spawn(args) => Some(args.template()),
            Call::Spend { .. } => None,
        },
        nonce,
        gas_price,
    };
    header.write(&mut e);
    match call {
        Call::Spawn(args) => args.encode_into(&mut e),
        Call::Spend { destination, amount } => {
            e.array(&destination.0).compact(*amount);
        }
    }
    e.finish()
}

/// Appends one ed25519 signature over `genesis ‖ unsigned`.
pub fn sign_single(mut unsigned: Vec<u8>, genesis: &GenesisId, key: &SigningKey) -> Vec<u8> {
    let sig = key.sign(&signing_body(genesis, &unsigned));
    unsigned.extend_from_slice(&sig.to_bytes());
    unsigned
}

/// Appends multisig parts: each `(key ref, key)` signs, in the order given (refs must increase).
pub fn sign_multi(mut unsigned: Vec<u8>, genesis: &GenesisId, keys: &[(u8, &SigningKey)]) -> Vec<u8> {
    let body = signing_body(genesis, &unsigned);
    for (r, key) in keys {
        unsigned.push(*r);
        unsigned.extend_from_slice(&key.sign(&body).to_bytes());
    }
    unsigned
}

/// A signed wallet self-spawn for `key`.
pub fn wallet_self_spawn(key: &SigningKey, nonce: u64, gas_price: u64, genesis: &GenesisId) -> Vec<u8> {
    let args = SpawnArgs::Wallet {
        public_key: key.verifying_key().to_bytes(),
    };
    let principal = args.address();
    sign_single(
        encode_unsigned(principal, nonce, gas_price, &Call::Spawn(args)),
        genesis,
        key,
    )
}

/// A signed wallet spend from `key`'s wallet.
pub fn wallet_spend(
    key: &SigningKey,
    destination: Address,
    amount: u64,
    nonce: u64,
    gas_price: u64,
    genesis: &GenesisId,
) -> Vec<u8> {
    let principal = super::address::wallet_address(&key.verifying_key().to_bytes());
    let call = Call::Spend { destination, amount };
    sign_single(encode_unsigned(principal, nonce, gas_price, &call), genesis, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENESIS: GenesisId = [9u8; 20];

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn the_go_spacemesh_payload_vector_sits_after_the_header() {
        // spec §5.3: {Nonce: 1543, GasPrice: 111222333} -> 1d 18 f6 78 84 1a.
        let call = Call::Spend {
            destination: Address::default(),
            amount: 1,
        };
        let raw = encode_unsigned(Address::default(), 1543, 111_222_333, &call);
        assert_eq!(raw[0], 0, "version");
        assert_eq!(raw[25], 16 << 2, "spend selector");
        assert_eq!(raw[26..32], [0x1d, 0x18, 0xf6, 0x78, 0x84, 0x1a]);
    }

    #[test]
    fn spend_args_match_the_golden_layout() {
        // go-spacemesh golden SpendArguments: destination raw, then amount 351 = 7d 05.
        let mut dest = [0u8; 24];
        dest[21..].copy_from_slice(&[3, 0x33, 0x33]);
        let call = Call::Spend {
            destination: Address(dest),
            amount: 351,
        };
        let raw = encode_unsigned(Address::default(), 0, 1, &call);
        assert_eq!(raw[28..], [&dest[..], &[0x7d, 0x05]].concat());
    }

    #[test]
    fn wallet_spawn_and_spend_have_the_spec_sizes_and_round_trip() {
        let k = key(1);
        let spawn = wallet_self_spawn(&k, 0, 1, &GENESIS);
        assert_eq!(spawn.len(), 148);
        let tx = Tx::decode(&spawn, None).expect("decodes");
        let args = match &tx.call {
            Call::Spawn(a) => a.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(args.address(), tx.header.principal);
        assert!(tx.verify(&GENESIS, &args));
        assert!(!tx.verify(&[0u8; 20], &args), "another genesis");

        let spend = wallet_spend(&k, Address::default(), 1_000_000_000, 1, 1, &GENESIS);
        assert_eq!(spend.len(), 120);
        let tx = Tx::decode(&spend, Some(&args)).expect("decodes");
        assert_eq!(
            tx.call,
            Call::Spend {
                destination: Address::default(),
                amount: 1_000_000_000
            }
        );
        assert_eq!(tx.header.nonce, 1);
        assert!(tx.verify(&GENESIS, &args));
        assert_eq!(tx.id(), TxId::of(&spend));
    }

    #[test]
    fn malformed_transactions_are_named() {
        let k = key(2);
        let spend = wallet_spend(&k, Address::default(), 5, 0, 1, &GENESIS);
        let args = SpawnArgs::Wallet {
            public_key: k.verifying_key().to_bytes(),
        };
        assert_eq!(Tx::decode(&spend, None), Err(TxError::NotSpawned(args.address())));
        let mut long = spend.clone();
        long.push(0);
        assert_eq!(
            Tx::decode(&long, Some(&args)),
            Err(TxError::Decode(DecodeError::TrailingBytes { left: 1 }))
        );
        assert!(matches!(
            Tx::decode(&spend[..100], Some(&args)),
            Err(TxError::Decode(DecodeError::Truncated {
                what: "signature",
                ..
            }))
        ));
        let mut v1 = spend.clone();
        v1[0] = 1 << 2;
        assert_eq!(Tx::decode(&v1, Some(&args)), Err(TxError::UnsupportedVersion(1)));
        let mut m = spend.clone();
        m[25] = 17 << 2;
        assert_eq!(Tx::decode(&m, Some(&args)), Err(TxError::UnknownMethod(17)));
        let mut r = spend.clone();
        r[1] = 1;
        assert!(matches!(
            Tx::decode(&r, Some(&args)),
            Err(TxError::BadAddress {
                what: "principal",
                ..
            })
        ));
        assert_eq!(
            Tx::decode(&vec![0u8; TX_SIZE_LIMIT + 1], Some(&args)),
            Err(TxError::TooLarge { len: 1025 })
        );
        let mut spawn = wallet_self_spawn(&k, 0, 1, &GENESIS);
        spawn[26 + 23] = 9; // template address id
        assert_eq!(
            Tx::decode(&spawn, None),
            Err(TxError::UnknownTemplate(Address::template(9)))
        );
    }

    #[test]
    fn multisig_signatures_need_increasing_refs() {
        let keys = [key(3), key(4), key(5)];
        let args = SpawnArgs::MultiSig {
            required: 2,
            public_keys: keys.iter().map(|k| k.verifying_key().to_bytes()).collect(),
        };
        let unsigned = encode_unsigned(args.address(), 0, 1, &Call::Spawn(args.clone()));
        let good = sign_multi(unsigned.clone(), &GENESIS, &[(0, &keys[0]), (2, &keys[2])]);
        let tx = Tx::decode(&good, None).expect("decodes");
        assert!(tx.verify(&GENESIS, &args));
        let swapped = sign_multi(unsigned.clone(), &GENESIS, &[(2, &keys[2]), (0, &keys[0])]);
        assert!(!Tx::decode(&swapped, None)
            .expect("decodes")
            .verify(&GENESIS, &args));
        let wrong_key = sign_multi(unsigned, &GENESIS, &[(0, &keys[1]), (2, &keys[2])]);
        assert!(!Tx::decode(&wrong_key, None)
            .expect("decodes")
            .verify(&GENESIS, &args));
    }
}
