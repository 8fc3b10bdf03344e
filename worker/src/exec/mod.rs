//! Job executors. Each runs on a blocking thread, off the async runtime, checks its stop flag
//! between batches, and reports every durable step through a callback, so that the lease loop can
//! tell the coordinator exactly what is on disk.

pub mod init;
pub mod k2pow;
pub mod prove;
pub mod stripe;
pub mod verify;

use post::pow::{PowError, RandomXMode};
use post::proof::ProofConfig;
use post::prove::ProveError;

/// Why an executor stopped without finishing.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Asked to stop (drain, shutdown, or the lease is gone). What was reported stays done.
    #[error("stopped before the end of the job")]
    Stopped,
    /// The job cannot be done as specified (no commitment ATX yet, a range outside the layout).
    #[error("invalid job: {0}")]
    Invalid(String),
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The target disk has no room for the job's labels (checked before writing, or `ENOSPC`).
    /// Not retryable on that disk: the coordinator moves the files it cannot finish elsewhere.
    #[error(
        "disk {disk_id} ({}) is full: {free_bytes} bytes free, {needed_bytes} bytes needed for {detail}",
        disk.display()
    )]
    DiskFull {
        disk_id: String,
        disk: std::path::PathBuf,
        free_bytes: u64,
        needed_bytes: u64,
        detail: String,
    },
    #[error("computing labels: {0}")]
    Backend(#[from] post::backend::BackendError),
    #[error("PoST metadata: {0}")]
    Metadata(String),
    /// The k2pow search or check failed.
    #[error("k2pow: {0}")]
    Pow(PowError),
    /// The proving pass failed (missing or short data files, read errors).
    #[error("proving: {0}")]
    Prove(ProveError),
    /// The executor's thread ended without a result (a bug; another attempt may not hit it).
    #[error("the executor panicked")]
    Panicked,
}

impl From<PowError> for ExecError {
    fn from(e: PowError) -> Self {
        match e {
            PowError::Stopped { .. } => ExecError::Stopped,
            e => ExecError::Pow(e),
        }
    }
}

impl From<ProveError> for ExecError {
    fn from(e: ProveError) -> Self {
        match e {
            ProveError::Stopped { .. } => ExecError::Stopped,
            e => ExecError::Prove(e),
        }
    }
}

impl ExecError {
    /// Whether another attempt may succeed. I/O errors, device faults and RandomX failures may;
    /// bad input, a pow that does not verify, and identity data that is missing or of the wrong
    /// size (it must be initialized again first) do not.
    pub fn is_retryable(&self) -> bool {
        match self {
            ExecError::Invalid(_) | ExecError::DiskFull { .. } => false,
            ExecError::Pow(e) => matches!(e, PowError::RandomX(_) | PowError::Other(_)),
            ExecError::Prove(e) => matches!(
                e,
                ProveError::Io { .. } | ProveError::ThreadPool(_) | ProveError::Pow { .. }
            ),
            _ => true,
        }
    }
}

impl ExecError {
    /// The report a disk-full failure carries to the coordinator.
    pub fn disk_full(&self) -> Option<protocol::DiskFull> {
        match self {
            ExecError::DiskFull {
                disk_id,
                free_bytes,
                needed_bytes,
                ..
            } => Some(protocol::DiskFull {
                disk_id: disk_id.clone(),
                free_bytes: *free_bytes,
                needed_bytes: *needed_bytes,
            }),
            _ => None,
        }
    }
}

/// What the executors need beyond the job: the network's proof parameters and how to run
/// RandomX. The coordinator does not send these (yet), so they are the worker's configuration
/// and must match the coordinator's (mainnet by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecConfig {
    /// K1, K2 and the k2pow difficulty per space unit.
    pub proof: ProofConfig,
    /// RandomX for k2pow: `Fast` (2 GiB dataset, built once, fast hashes) in production;
    /// `Light` for tests and small machines. The same pows either way.
    pub randomx_mode: RandomXMode,
    /// Try large pages for RandomX first.
    pub large_pages: bool,
    /// Verify jobs re-derive this many labels per aligned chunk of
    /// [`verify::VERIFY_CHUNK`] labels (a contiguous run at a pseudo-random place); at least 1,
    /// at most the chunk (every label).
    pub verify_sample_per_chunk: u64,
}

impl Default for ExecConfig {
    fn default() -> Self {
        Self {
            proof: ProofConfig::MAINNET,
            randomx_mode: RandomXMode::Fast,
            large_pages: false,
            verify_sample_per_chunk: 16,
        }
    }
}

/// 64 hex digits to 32 bytes; `field` names the value in the error.
pub fn parse32(field: &str, s: &str) -> Result<[u8; 32], ExecError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| ExecError::Invalid(format!("{field} is not 64 hex digits")))?;
    Ok(out)
}

/// The directory of an identity on one of this rig's disks.
pub fn identity_dir(disk: &protocol::DiskInfo, node_id: &str) -> std::path::PathBuf {
    std::path::Path::new(&disk.mount).join("smeshfleet").join(node_id)
}

/// The `checkpoint` of a leased job's last progress report (`LeasedJob.progress.checkpoint`),
/// as `T`; `None` when absent or not of that shape (then the job starts over).
pub fn checkpoint<T: serde::de::DeserializeOwned>(progress: Option<&serde_json::Value>) -> Option<T> {
    let c = progress?.get("checkpoint")?;
    if c.is_null() {
        return None;
    }
    serde_json::from_value(c.clone()).ok()
}

/// Checks a job's label range against its identity's layout: the scrypt N as a `usize` and the
/// labels of file `file_index`, or `Invalid` naming what is wrong (a file outside
/// the layout, a range not inside its file or empty).
pub(crate) fn checked_range(
    id: &protocol::IdentityParams,
    file_index: u64,
    start: u64,
    end: u64,
) -> Result<(usize, std::ops::Range<u64>), ExecError> {
    let n = usize::try_from(id.scrypt_n).map_err(|_| ExecError::Invalid("scrypt_n".into()))?;
    let layout = post::data::Layout::new(id.num_units, id.labels_per_unit, id.max_file_size)
        .map_err(|e| ExecError::Invalid(e.to_string()))?;
    if file_index >= layout.num_files() {
        return Err(ExecError::Invalid(format!(
            "file {file_index} is outside the layout ({} files)",
            layout.num_files()
        )));
    }
    let file_labels = layout.file_labels(file_index);
    if start < file_labels.start || end > file_labels.end || start >= end {
        return Err(ExecError::Invalid(format!(
            "range [{start}, {end}) is not inside file {file_index} [{}, {})",
            file_labels.start, file_labels.end
        )));
    }
    Ok((n, file_labels))
}
