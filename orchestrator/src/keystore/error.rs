//! The keystore's typed errors. No variant carries secret bytes, or a fragment of them: a malformed
//! key file is described by its length or by the position of the first bad character, never by
//! its content.

use std::fmt;
use std::path::PathBuf;

use super::NodeId;

/// The file-system step that failed, for [`KeystoreError::Io`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoStep {
    /// Creating a directory (the keystore's, its `keys/`, or a node's `identities/`).
    CreateDir,
    /// Setting or checking the permissions of a file or directory.
    Permissions,
    /// Reading the keystore header (`keystore.json`).
    ReadHeader,
    /// Writing the keystore header.
    WriteHeader,
    /// Listing the encrypted key files.
    ListKeys,
    /// Reading one encrypted key file.
    ReadKeyFile,
    /// Writing one encrypted key file (temp file, fsync, rename, directory fsync).
    WriteKeyFile,
    /// Removing one encrypted key file.
    DeleteKeyFile,
    /// Listing a go-spacemesh `identities/` directory.
    ListImportDir,
    /// Reading a go-spacemesh `*.key` file for import.
    ReadImportFile,
    /// Writing a go-spacemesh `*.key` file for provisioning a node.
    WriteExportFile,
}

impl fmt::Display for IoStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoStep::CreateDir => "create directory",
            IoStep::Permissions => "set or check permissions of",
            IoStep::ReadHeader => "read keystore header",
            IoStep::WriteHeader => "write keystore header",
            IoStep::ListKeys => "list key files",
            IoStep::ReadKeyFile => "read key file",
            IoStep::WriteKeyFile => "write key file",
            IoStep::DeleteKeyFile => "delete key file",
            IoStep::ListImportDir => "list identities directory",
            IoStep::ReadImportFile => "read identity key file",
            IoStep::WriteExportFile => "write identity key file",
        })
    }
}

/// Why a go-spacemesh key text (128 hex characters: 32-byte seed ‖ 32-byte public key) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyHexError {
    /// Not exactly 128 characters (after removing at most one trailing newline).
    #[error("expected exactly 128 hex characters, found {found}")]
    WrongLength {
        /// The number of characters (bytes) found.
        found: usize,
    },
    /// A character that is not a hex digit. The character itself is not reported: it is part of a key.
    #[error("character {index} is not a hex digit")]
    NotHex {
        /// Zero-based position of the first bad character.
        index: usize,
    },
    /// The stored public half is not the public key of the stored seed.
    #[error("the public key half does not match the private seed")]
    PublicKeyMismatch,
}

/// Why a node id text was refused by [`NodeId::from_str`](std::str::FromStr).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdParseError {
    /// Not 64 characters.
    #[error("a node id is 64 hex characters, found {found}")]
    WrongLength {
        /// The number of characters found.
        found: usize,
    },
    /// A character that is not a hex digit.
    #[error("node id character {index} is not a hex digit")]
    NotHex {
        /// Zero-based position of the first bad character.
        index: usize,
    },
}

/// Everything the keystore can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// A file-system operation failed.
    #[error("keystore: {step} {}: {source}", path.display())]
    Io {
        /// Which step failed.
        step: IoStep,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `open` found no `keystore.json` in the directory.
    #[error("no keystore at {} (keystore.json missing)", path.display())]
    NotFound {
        /// The keystore directory.
        path: PathBuf,
    },
    /// `create` found a keystore (or orphaned key files) already there.
    #[error("a keystore already exists at {}", path.display())]
    AlreadyInitialised {
        /// The keystore directory.
        path: PathBuf,
    },
    /// The passphrase does not open this keystore.
    #[error("wrong passphrase for the keystore")]
    WrongPassphrase,
    /// An empty passphrase was given to `create`.
    #[error("the keystore passphrase must not be empty")]
    EmptyPassphrase,
    /// The Argon2id parameters are out of range.
    #[error("invalid Argon2id parameters (m={m_cost_kib} KiB, t={t_cost}, p={p_cost}): {reason}")]
    InvalidKdfParams {
        /// Memory in KiB.
        m_cost_kib: u32,
        /// Iterations.
        t_cost: u32,
        /// Parallelism.
        p_cost: u32,
        /// What is wrong with them.
        reason: String,
    },
    /// Argon2id itself failed while deriving the key.
    #[error("deriving the keystore key with Argon2id failed: {0}")]
    KeyDerivation(argon2::Error),
    /// `keystore.json` is not valid.
    #[error("keystore header {} is malformed: {reason}", path.display())]
    MalformedHeader {
        /// The header file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A keystore file or directory can be read or written by group or others.
    #[error("{} has mode {mode:04o}; the keystore requires 0700 directories and 0600 files", path.display())]
    InsecurePermissions {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// An encrypted key file is not valid JSON of the expected form, or names another identity.
    #[error("key file {} is malformed: {reason}", path.display())]
    MalformedKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An encrypted key file failed authentication: tampered with, corrupted, or moved to another
    /// identity's name.
    #[error("key file {} failed authentication (tampered, corrupted or swapped)", path.display())]
    KeyFileAuthentication {
        /// The key file.
        path: PathBuf,
    },
    /// A key file decrypted, but its key is not the identity its name says.
    #[error("key file {} holds the key of another identity", path.display())]
    KeyFileIdentityMismatch {
        /// The key file.
        path: PathBuf,
    },
    /// Encrypting failed (the AEAD refused; should not happen).
    #[error("encrypting {what} failed")]
    Encryption {
        /// What was being encrypted: "the passphrase check value" or "an identity key".
        what: &'static str,
    },
    /// A go-spacemesh key text given to `import_key_hex` was refused.
    #[error("invalid go-spacemesh key: {0}")]
    InvalidKeyHex(#[source] KeyHexError),
    /// A go-spacemesh `*.key` file was refused.
    #[error("invalid go-spacemesh key file {}: {source}", path.display())]
    InvalidKeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyHexError,
    },
    /// Two `*.key` files of one `identities/` directory hold the same identity.
    #[error("identity {node_id} appears twice: {} and {}", first.display(), second.display())]
    DuplicateIdentity {
        /// The identity.
        node_id: NodeId,
        /// The first file holding it.
        first: PathBuf,
        /// The second file holding it.
        second: PathBuf,
    },
    /// The identity is already in the keystore.
    #[error("identity {node_id} is already in the keystore")]
    AlreadyExists {
        /// The identity.
        node_id: NodeId,
    },
    /// The identity is not in the keystore.
    #[error("identity {node_id} is not in the keystore")]
    UnknownIdentity {
        /// The identity.
        node_id: NodeId,
    },
    /// The signing permit was granted for another message.
    #[error("signing permit for {node_id} (publish epoch {publish_epoch}) was granted for another message")]
    PermitMessageMismatch {
        /// The identity.
        node_id: NodeId,
        /// The permit's publish epoch.
        publish_epoch: u32,
    },
    /// ATX signatures are made only with a [`SigningPermit`](super::SigningPermit).
    #[error("ATX-domain signatures require a signing permit from the safety database")]
    AtxRequiresPermit,
    /// Ballot signatures are made only with a [`BallotPermit`](super::BallotPermit).
    #[error("ballot-domain signatures require a ballot permit from the safety database")]
    BallotRequiresPermit,
    /// The ballot permit was granted for another message.
    #[error("ballot permit for {node_id} (layer {layer}) was granted for another message")]
    BallotPermitMismatch {
        /// The identity.
        node_id: NodeId,
        /// The permit's layer.
        layer: u32,
    },
    /// A file name given for a go-spacemesh key file is not a plain `NAME.key`.
    #[error("{name:?} is not a valid identity file name (expected a plain NAME.key)")]
    InvalidKeyFileName {
        /// The name given.
        name: String,
    },
    /// Writing a go-spacemesh key file would replace an existing file.
    #[error("{} already exists; refusing to overwrite an identity file", path.display())]
    KeyFileExists {
        /// The existing file.
        path: PathBuf,
    },
}
