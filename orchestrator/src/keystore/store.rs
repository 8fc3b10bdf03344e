//! The encrypted keystore: one header, one encrypted file per identity, keys in memory while open.
//!
//! Layout (directories 0700, files 0600, every write atomic):
//!
//! ```text
//! <dir>/keystore.json        {"version":1,"kdf":{..Argon2id..},"salt":hex,"check":{"nonce":hex,"ciphertext":hex}}
//! <dir>/keys/<node id>.json  {"version":1,"nonce":hex,"ciphertext":hex}   (XChaCha20-Poly1305 of the seed)
//! ```
//!
//! The key-file associated data is a fixed label followed by the node id taken from the *file name*,
//! so a file moved to another identity's name fails authentication.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use ed25519_dalek::{Signer, SigningKey};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::crypto::{random_salt, KdfParams, MasterKey, NONCE_LEN, SALT_LEN};
use super::error::{IoStep, KeystoreError};
use super::fsutil::{
    check_private, ensure_private_dir, io_err, remove_durable, write_private_atomic, TEMP_PREFIX,
};
use super::gokey::{format_key_hex, parse_key_hex, read_key_file};
use super::{domain_message, BallotPermit, Domain, NodeId, SigningPermit};

const HEADER_FILE: &str = "keystore.json";
const KEYS_DIR: &str = "keys";
const KEY_FILE_EXT: &str = ".json";
const FORMAT_VERSION: u32 = 1;
const KDF_ALGORITHM: &str = "argon2id";
/// Argon2 version 1.3 (0x13).
const ARGON2_VERSION: u32 = 0x13;
const CHECK_PLAINTEXT: &[u8] = b"smeshfleet keystore v1 passphrase check";
const CHECK_AAD_LABEL: &[u8] = b"smeshfleet keystore v1 check\0";
const KEY_AAD_LABEL: &[u8] = b"smeshfleet keystore v1 key\0";
/// Headers and encrypted key files are small; anything larger is refused unread.
const MAX_META_FILE_LEN: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderFile {
    version: u32,
    kdf: KdfSection,
    salt: String,
    check: SealedHex,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfSection {
    algorithm: String,
    version: u32,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedHex {
    nonce: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    nonce: String,
    ciphertext: String,
}

/// One loaded identity. The seed lives in the `SigningKey`, which zeroes itself on drop.
struct Identity(SigningKey);

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &NodeId::from(self.0.verifying_key()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The coordinator's identities, encrypted at rest under a passphrase-derived key.
///
/// Secret bytes never leave this type except through [`Keystore::export_key_hex`], which needs the
/// passphrase again. Everything else returns node ids and signatures. `Debug` prints the directory,
/// the KDF parameters and the number of identities, nothing secret.
pub struct Keystore {
    dir: PathBuf,
    kdf: KdfParams,
    salt: [u8; SALT_LEN],
    check_nonce: [u8; NONCE_LEN],
    check_ciphertext: Vec<u8>,
    master: MasterKey,
    identities: RwLock<BTreeMap<NodeId, Identity>>,
}

impl fmt::Debug for Keystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keystore")
            .field("dir", &self.dir)
            .field("kdf", &self.kdf)
            .field("identities", &self.read().len())
            .finish_non_exhaustive()
    }
}

fn check_aad(salt: &[u8; SALT_LEN]) -> Vec<u8> {
    [CHECK_AAD_LABEL, salt.as_slice()].concat()
}

fn key_aad(node_id: &NodeId) -> Vec<u8> {
    [KEY_AAD_LABEL, node_id.as_bytes().as_slice()].concat()
}

fn decode_fixed<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Reads a small metadata file, refusing anything over [`MAX_META_FILE_LEN`].
fn read_small(path: &Path, step: IoStep) -> Result<Vec<u8>, KeystoreError> {
    let len = fs::metadata(path).map_err(io_err(step, path))?.len();
    if len > MAX_META_FILE_LEN {
        return Err(KeystoreError::Io {
            step,
            path: path.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file is {len} bytes, too large"),
            ),
        });
    }
    fs::read(path).map_err(io_err(step, path))
}

/// The node id of an encrypted key file name (`<64 hex>.json`), if it is one.
fn node_id_of_file_name(name: &str) -> Option<NodeId> {
    name.strip_suffix(KEY_FILE_EXT)?.parse().ok()
}

impl Keystore {
    /// Creates a new, empty keystore in `dir` (created 0700 if missing). Fails with
    /// [`KeystoreError::AlreadyInitialised`] if a keystore (or a leftover key file) is there.
    pub fn create(dir: impl AsRef<Path>, passphrase: &str, params: KdfParams) -> Result<Self, KeystoreError> {
        let dir = dir.as_ref().to_path_buf();
        if passphrase.is_empty() {
            return Err(KeystoreError::EmptyPassphrase);
        }
        params.argon2_params()?;
        let header_path = dir.join(HEADER_FILE);
        let keys_dir = dir.join(KEYS_DIR);
        if fs::symlink_metadata(&header_path).is_ok() {
            return Err(KeystoreError::AlreadyInitialised { path: dir });
        }
        if let Ok(entries) = fs::read_dir(&keys_dir) {
            let orphan = entries
                .flatten()
                .any(|e| e.file_name().to_str().and_then(node_id_of_file_name).is_some());
            if orphan {
                return Err(KeystoreError::AlreadyInitialised { path: dir });
            }
        }
        ensure_private_dir(&dir)?;
        ensure_private_dir(&keys_dir)?;

        let salt = random_salt();
        let master = MasterKey::derive(passphrase, &salt, &params)?;
        let (check_nonce, check_ciphertext) =
            master
                .seal(CHECK_PLAINTEXT, &check_aad(&salt))
                .ok_or(KeystoreError::Encryption {
                    what: "the passphrase check value",
                })?;
        let header = HeaderFile {
            version: FORMAT_VERSION,
            kdf: KdfSection {
                algorithm: KDF_ALGORITHM.to_owned(),
                version: ARGON2_VERSION,
                m_cost_kib: params.m_cost_kib(),
                t_cost: params.t_cost(),
                p_cost: params.p_cost(),
            },
            salt: hex::encode(salt),
            check: SealedHex {
                nonce: hex::encode(check_nonce),
                ciphertext: hex::encode(&check_ciphertext),
            },
        };
        let json = serde_json::to_vec_pretty(&header).map_err(|e| KeystoreError::MalformedHeader {
            path: header_path.clone(),
            reason: e.to_string(),
        })?;
        write_private_atomic(&header_path, &json).map_err(io_err(IoStep::WriteHeader, &header_path))?;
        tracing::info!(dir = %dir.display(), "created keystore");
        Ok(Self {
            dir,
            kdf: params,
            salt,
            check_nonce,
            check_ciphertext,
            master,
            identities: RwLock::new(BTreeMap::new()),
        })
    }

    /// Opens the keystore in `dir` and decrypts every identity. Fails with
    /// [`KeystoreError::NotFound`] when there is none, [`KeystoreError::WrongPassphrase`] when the
    /// passphrase does not match, and refuses tampered, swapped or group/world-accessible files.
    pub fn open(dir: impl AsRef<Path>, passphrase: &str) -> Result<Self, KeystoreError> {
        let dir = dir.as_ref().to_path_buf();
        let header_path = dir.join(HEADER_FILE);
        match fs::symlink_metadata(&header_path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(KeystoreError::NotFound { path: dir })
            }
            Err(e) => return Err(io_err(IoStep::ReadHeader, &header_path)(e)),
        }
        check_private(&dir)?;
        check_private(&header_path)?;
        let raw = read_small(&header_path, IoStep::ReadHeader)?;
        let malformed = |reason: &str| KeystoreError::MalformedHeader {
            path: header_path.clone(),
            reason: reason.to_owned(),
        };
        let header: HeaderFile = serde_json::from_slice(&raw).map_err(|e| malformed(&e.to_string()))?;
        if header.version != FORMAT_VERSION {
            return Err(malformed(&format!("unsupported version {}", header.version)));
        }
        if header.kdf.algorithm != KDF_ALGORITHM || header.kdf.version != ARGON2_VERSION {
            return Err(malformed("unsupported key derivation (expected argon2id v19)"));
        }
        let kdf = KdfParams::new(header.kdf.m_cost_kib, header.kdf.t_cost, header.kdf.p_cost)?;
        let salt: [u8; SALT_LEN] =
            decode_fixed(&header.salt).ok_or_else(|| malformed("salt is not 32 hex bytes"))?;
        let check_nonce: [u8; NONCE_LEN] =
            decode_fixed(&header.check.nonce).ok_or_else(|| malformed("check nonce is not 24 hex bytes"))?;
        let check_ciphertext =
            hex::decode(&header.check.ciphertext).map_err(|_| malformed("check ciphertext is not hex"))?;

        let master = MasterKey::derive(passphrase, &salt, &kdf)?;
        let store = Self {
            dir,
            kdf,
            salt,
            check_nonce,
            check_ciphertext,
            master,
            identities: RwLock::new(BTreeMap::new()),
        };
        if !store.master_matches(&store.master) {
            return Err(KeystoreError::WrongPassphrase);
        }
        let loaded = store.load_all()?;
        tracing::info!(dir = %store.dir.display(), identities = loaded.len(), "opened keystore");
        *store.write() = loaded;
        Ok(store)
    }

    /// Opens the keystore in `dir`, or creates it with `params` when there is none.
    pub fn open_or_create(
        dir: impl AsRef<Path>,
        passphrase: &str,
        params: KdfParams,
    ) -> Result<Self, KeystoreError> {
        match Self::open(dir.as_ref(), passphrase) {
            Err(KeystoreError::NotFound { .. }) => Self::create(dir, passphrase, params),
            other => other,
        }
    }

    /// The keystore directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Argon2id parameters this keystore was created with.
    pub fn kdf_params(&self) -> KdfParams {
        self.kdf
    }

    /// Creates a new identity from the OS random generator and stores it. Returns its node id.
    pub fn generate(&self) -> Result<NodeId, KeystoreError> {
        let key = SigningKey::generate(&mut OsRng);
        let node_id = NodeId::from(key.verifying_key());
        let mut map = self.write();
        self.insert_new(&mut map, key)?;
        tracing::info!(%node_id, "generated identity");
        Ok(node_id)
    }

    /// Imports a go-spacemesh key (128 hex characters = seed ‖ public key; one trailing newline is
    /// tolerated). Fails with [`KeystoreError::InvalidKeyHex`] when malformed and
    /// [`KeystoreError::AlreadyExists`] when the identity is already here.
    pub fn import_key_hex(&self, text: &str) -> Result<NodeId, KeystoreError> {
        let key = parse_key_hex(text.as_bytes()).map_err(KeystoreError::InvalidKeyHex)?;
        let node_id = NodeId::from(key.verifying_key());
        let mut map = self.write();
        self.insert_new(&mut map, key)?;
        tracing::info!(%node_id, "imported identity");
        Ok(node_id)
    }

    /// Imports every top-level `*.key` file of a go-spacemesh `identities/` directory
    /// (sub-directories and other files are ignored). All files are checked first; the import is
    /// refused as a whole when one is malformed, when two hold the same identity
    /// ([`KeystoreError::DuplicateIdentity`]), or when one is already in the keystore. Returns the
    /// imported node ids in file-name order.
    pub fn import_identities_dir(&self, dir: impl AsRef<Path>) -> Result<Vec<NodeId>, KeystoreError> {
        let dir = dir.as_ref();
        let mut paths = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(IoStep::ListImportDir, dir))? {
            let path = entry.map_err(io_err(IoStep::ListImportDir, dir))?.path();
            if path.extension().is_some_and(|e| e == "key") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();

        let mut keys: Vec<SigningKey> = Vec::with_capacity(paths.len());
        let mut seen: HashMap<NodeId, PathBuf> = HashMap::new();
        for path in paths {
            let key = read_key_file(&path)?;
            let node_id = NodeId::from(key.verifying_key());
            if let Some(first) = seen.get(&node_id) {
                return Err(KeystoreError::DuplicateIdentity {
                    node_id,
                    first: first.clone(),
                    second: path,
                });
            }
            seen.insert(node_id, path);
            keys.push(key);
        }

        let mut map = self.write();
        if let Some(node_id) = keys
            .iter()
            .map(|k| NodeId::from(k.verifying_key()))
            .find(|id| map.contains_key(id))
        {
            return Err(KeystoreError::AlreadyExists { node_id });
        }
        let mut imported = Vec::with_capacity(keys.len());
        for key in keys {
            let node_id = NodeId::from(key.verifying_key());
            if let Err(e) = self.insert_new(&mut map, key) {
                // Roll back so that the import is all or nothing.
                for done in &imported {
                    map.remove(done);
                    let _ = remove_durable(&self.key_path(done));
                }
                return Err(e);
            }
            imported.push(node_id);
        }
        tracing::info!(dir = %dir.display(), count = imported.len(), "imported identities directory");
        Ok(imported)
    }

    /// Exports an identity in the go-spacemesh key-file form (128 lowercase hex characters, no
    /// newline). This is the only way secret bytes leave the keystore: it is for an explicit admin
    /// request, checks `passphrase` first ([`KeystoreError::WrongPassphrase`]), and returns the text in
    /// a buffer that is zeroed on drop. See [`write_key_file`](super::write_key_file).
    pub fn export_key_hex(
        &self,
        node_id: &NodeId,
        passphrase: &str,
    ) -> Result<Zeroizing<String>, KeystoreError> {
        self.verify_passphrase(passphrase)?;
        let map = self.read();
        let identity = map
            .get(node_id)
            .ok_or(KeystoreError::UnknownIdentity { node_id: *node_id })?;
        tracing::warn!(%node_id, "exported private key on admin request");
        Ok(format_key_hex(&identity.0))
    }

    /// Checks `passphrase` against this keystore (runs Argon2id).
    pub fn verify_passphrase(&self, passphrase: &str) -> Result<(), KeystoreError> {
        let candidate = MasterKey::derive(passphrase, &self.salt, &self.kdf)?;
        if self.master_matches(&candidate) {
            Ok(())
        } else {
            Err(KeystoreError::WrongPassphrase)
        }
    }

    /// Whether the identity is in the keystore.
    pub fn contains(&self, node_id: &NodeId) -> bool {
        self.read().contains_key(node_id)
    }

    /// All identities, sorted.
    pub fn list(&self) -> Vec<NodeId> {
        self.read().keys().copied().collect()
    }

    /// The ed25519 public key of an identity (equal to its node id bytes).
    pub fn public_key(&self, node_id: &NodeId) -> Result<[u8; 32], KeystoreError> {
        let map = self.read();
        let identity = map
            .get(node_id)
            .ok_or(KeystoreError::UnknownIdentity { node_id: *node_id })?;
        Ok(identity.0.verifying_key().to_bytes())
    }

    /// Removes an identity and its file, irreversibly (the PoST data bound to it becomes useless).
    /// Callers must guard this behind an explicit admin request.
    pub fn delete(&self, node_id: &NodeId) -> Result<(), KeystoreError> {
        let mut map = self.write();
        if !map.contains_key(node_id) {
            return Err(KeystoreError::UnknownIdentity { node_id: *node_id });
        }
        let path = self.key_path(node_id);
        match remove_durable(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(IoStep::DeleteKeyFile, &path)(e)),
        }
        map.remove(node_id);
        tracing::warn!(%node_id, "deleted identity");
        Ok(())
    }

    /// Signs `genesis_prefix ‖ domain byte ‖ msg` (node.md §3.2) for any domain except
    /// [`Domain::Atx`] and [`Domain::Ballot`], refused with [`KeystoreError::AtxRequiresPermit`] and
    /// [`KeystoreError::BallotRequiresPermit`]: those go through [`Keystore::sign_atx`] and
    /// [`Keystore::sign_ballot`] only.
    pub fn sign(
        &self,
        node_id: &NodeId,
        domain: Domain,
        genesis_prefix: &[u8; 20],
        msg: &[u8],
    ) -> Result<[u8; 64], KeystoreError> {
        match domain {
            Domain::Atx => return Err(KeystoreError::AtxRequiresPermit),
            Domain::Ballot => return Err(KeystoreError::BallotRequiresPermit),
            _ => {}
        }
        let map = self.read();
        let identity = map
            .get(node_id)
            .ok_or(KeystoreError::UnknownIdentity { node_id: *node_id })?;
        Ok(identity
            .0
            .sign(&domain_message(genesis_prefix, domain, msg))
            .to_bytes())
    }

    /// Signs an ATX: `genesis_prefix ‖ 0x00 ‖ message` (node.md §2.6, §3.2), where `message` is the
    /// ATX-domain payload (for ATX v1, [`atx_v1_message`](super::atx_v1_message); for v2, the 32-byte
    /// ATX id). Consumes `permit`, which must name an identity of this keystore and satisfy
    /// `permit.message_hash() == blake3(message)`; otherwise nothing is signed
    /// ([`KeystoreError::UnknownIdentity`], [`KeystoreError::PermitMessageMismatch`]).
    pub fn sign_atx(
        &self,
        permit: SigningPermit,
        genesis_prefix: &[u8; 20],
        message: &[u8],
    ) -> Result<[u8; 64], KeystoreError> {
        let node_id = permit.node_id();
        let publish_epoch = permit.publish_epoch();
        let map = self.read();
        let identity = map
            .get(&node_id)
            .ok_or(KeystoreError::UnknownIdentity { node_id })?;
        if blake3::hash(message).as_bytes() != permit.message_hash() {
            return Err(KeystoreError::PermitMessageMismatch {
                node_id,
                publish_epoch,
            });
        }
        let signature = identity
            .0
            .sign(&domain_message(genesis_prefix, Domain::Atx, message))
            .to_bytes();
        tracing::info!(%node_id, publish_epoch, "signed ATX");
        Ok(signature)
    }

    /// Signs a ballot: `genesis_prefix ‖ 0x02 ‖ message`, where `message` is the ballot's signed
    /// bytes (SCALE `{Layer, MsgHash}`, `node_bridge::ballot::Ballot::signed_bytes`). Consumes
    /// `permit`, which must name an identity of this keystore and satisfy
    /// `permit.message_hash() == blake3(message)`; otherwise nothing is signed.
    pub fn sign_ballot(
        &self,
        permit: BallotPermit,
        genesis_prefix: &[u8; 20],
        message: &[u8],
    ) -> Result<[u8; 64], KeystoreError> {
        let node_id = permit.node_id();
        let layer = permit.layer();
        let map = self.read();
        let identity = map
            .get(&node_id)
            .ok_or(KeystoreError::UnknownIdentity { node_id })?;
        if blake3::hash(message).as_bytes() != permit.message_hash() {
            return Err(KeystoreError::BallotPermitMismatch { node_id, layer });
        }
        let signature = identity
            .0
            .sign(&domain_message(genesis_prefix, Domain::Ballot, message))
            .to_bytes();
        tracing::debug!(%node_id, layer, "signed ballot");
        Ok(signature)
    }

    /// The identity's ECVRF proof (ECVRF-EDWARDS25519-SHA512-ELL2 over its ed25519 key, as
    /// go-spacemesh's `VRFSigner`) of `alpha`, e.g. an eligibility slot's VRF message. VRF proofs
    /// are deterministic, so they need no safety record.
    pub fn vrf_prove(&self, node_id: &NodeId, alpha: &[u8]) -> Result<[u8; 80], KeystoreError> {
        let map = self.read();
        let identity = map
            .get(node_id)
            .ok_or(KeystoreError::UnknownIdentity { node_id: *node_id })?;
        let seed = Zeroizing::new(identity.0.to_bytes());
        Ok(node_bridge::vrf::prove(&seed, alpha))
    }

    // ---- internals ----

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<NodeId, Identity>> {
        // A panic while holding the lock cannot leave the map half-updated (each update is one
        // insert or remove), so a poisoned lock is still usable.
        self.identities
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<NodeId, Identity>> {
        self.identities
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn master_matches(&self, candidate: &MasterKey) -> bool {
        candidate
            .open(&self.check_nonce, &self.check_ciphertext, &check_aad(&self.salt))
            .is_some_and(|plain| plain.as_slice() == CHECK_PLAINTEXT)
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.join(KEYS_DIR)
    }

    fn key_path(&self, node_id: &NodeId) -> PathBuf {
        self.keys_dir().join(format!("{node_id}{KEY_FILE_EXT}"))
    }

    /// Encrypts and writes the key file, then adds the key to `map`. Refuses an identity already in
    /// `map` or already on disk.
    fn insert_new(&self, map: &mut BTreeMap<NodeId, Identity>, key: SigningKey) -> Result<(), KeystoreError> {
        let node_id = NodeId::from(key.verifying_key());
        let Entry::Vacant(slot) = map.entry(node_id) else {
            return Err(KeystoreError::AlreadyExists { node_id });
        };
        let path = self.key_path(&node_id);
        if fs::symlink_metadata(&path).is_ok() {
            return Err(KeystoreError::AlreadyExists { node_id });
        }
        let seed = Zeroizing::new(key.to_bytes());
        let (nonce, ciphertext) =
            self.master
                .seal(seed.as_slice(), &key_aad(&node_id))
                .ok_or(KeystoreError::Encryption {
                    what: "an identity key",
                })?;
        let file = KeyFile {
            version: FORMAT_VERSION,
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| KeystoreError::MalformedKeyFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_private_atomic(&path, &json).map_err(io_err(IoStep::WriteKeyFile, &path))?;
        slot.insert(Identity(key));
        Ok(())
    }

    fn load_all(&self) -> Result<BTreeMap<NodeId, Identity>, KeystoreError> {
        let keys_dir = self.keys_dir();
        if keys_dir.exists() {
            check_private(&keys_dir)?;
        } else {
            ensure_private_dir(&keys_dir)?;
        }
        let mut loaded = BTreeMap::new();
        for entry in fs::read_dir(&keys_dir).map_err(io_err(IoStep::ListKeys, &keys_dir))? {
            let entry = entry.map_err(io_err(IoStep::ListKeys, &keys_dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                tracing::warn!(path = %path.display(), "ignoring unexpected file in keystore");
                continue;
            };
            if name.starts_with(TEMP_PREFIX) {
                // Left by an interrupted write; holds at most ciphertext.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(node_id) = node_id_of_file_name(name) else {
                tracing::warn!(path = %path.display(), "ignoring unexpected file in keystore");
                continue;
            };
            let identity = self.load_key_file(&path, &node_id)?;
            loaded.insert(node_id, identity);
        }
        Ok(loaded)
    }

    fn load_key_file(&self, path: &Path, node_id: &NodeId) -> Result<Identity, KeystoreError> {
        check_private(path)?;
        let raw = read_small(path, IoStep::ReadKeyFile)?;
        let malformed = |reason: &str| KeystoreError::MalformedKeyFile {
            path: path.to_path_buf(),
            reason: reason.to_owned(),
        };
        let file: KeyFile = serde_json::from_slice(&raw).map_err(|e| malformed(&e.to_string()))?;
        if file.version != FORMAT_VERSION {
            return Err(malformed(&format!("unsupported version {}", file.version)));
        }
        let nonce: [u8; NONCE_LEN] =
            decode_fixed(&file.nonce).ok_or_else(|| malformed("nonce is not 24 hex bytes"))?;
        let ciphertext = hex::decode(&file.ciphertext).map_err(|_| malformed("ciphertext is not hex"))?;
        let plain = self
            .master
            .open(&nonce, &ciphertext, &key_aad(node_id))
            .ok_or_else(|| KeystoreError::KeyFileAuthentication {
                path: path.to_path_buf(),
            })?;
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            plain
                .as_slice()
                .try_into()
                .map_err(|_| malformed("decrypted key is not 32 bytes"))?,
        );
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes() != node_id.as_bytes() {
            return Err(KeystoreError::KeyFileIdentityMismatch {
                path: path.to_path_buf(),
            });
        }
        Ok(Identity(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Result<KdfParams, KeystoreError> {
        KdfParams::new(8, 1, 1)
    }

    #[test]
    fn keystore_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Keystore>();
    }

    #[test]
    fn identity_debug_is_redacted() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let text = format!("{:?}", Identity(key));
        assert!(!text.contains(&hex::encode([9u8; 32])));
        assert!(text.contains("redacted"));
    }

    /// A key file correctly encrypted for name B but holding key A (only possible with the master
    /// key) is refused by the public-key check after decryption.
    #[test]
    fn decrypted_key_must_match_its_file_name() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let ks = Keystore::create(tmp.path().join("ks"), "pw", cheap()?)?;
        let a = SigningKey::from_bytes(&[1u8; 32]);
        let b = NodeId::from(SigningKey::from_bytes(&[2u8; 32]).verifying_key());
        let seed = a.to_bytes();
        let (nonce, ciphertext) = ks.master.seal(&seed, &key_aad(&b)).ok_or("seal")?;
        let file = KeyFile {
            version: 1,
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        };
        write_private_atomic(&ks.key_path(&b), &serde_json::to_vec(&file)?)?;
        drop(ks);
        let err = Keystore::open(tmp.path().join("ks"), "pw").err();
        assert!(
            matches!(err, Some(KeystoreError::KeyFileIdentityMismatch { .. })),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn interrupted_writes_are_cleaned_and_unknown_files_ignored() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("ks");
        let ks = Keystore::create(&dir, "pw", cheap()?)?;
        let id = ks.generate()?;
        write_private_atomic(&dir.join("keys/.tmp-leftover"), b"junk")?;
        write_private_atomic(&dir.join("keys/README"), b"notes")?;
        drop(ks);
        let ks = Keystore::open(&dir, "pw")?;
        assert_eq!(ks.list(), vec![id]);
        assert!(!dir.join("keys/.tmp-leftover").exists());
        Ok(())
    }
}
