//! The PoST initializer (spec/post.md §3.6, postcli's Go driver): writes `postdata_<k>.bin` and
//! `postdata_metadata.json`, resumes interrupted runs, initializes file ranges (`from_file` /
//! `to_file`) that can be merged later, and records the VRF nonce, searching past the end of the
//! data when no stored label qualifies.
//!
//! Beyond the Go driver, and never changing a valid result:
//! - the stored nonce is recomputed on the CPU before anything is written: a `NonceValue` that
//!   disagrees, or a nonce that does not qualify, is refused (a different scrypt N, another
//!   identity's metadata);
//! - the last label of every existing file of the range is recomputed before resuming. A tail that
//!   does not match (zeros left by a power loss after the size was extended) is cut back to the
//!   longest prefix whose last label matches (binary search), a file that starts with a zero
//!   label is emptied; a file whose *first* label is another non-zero value is refused (data of
//!   another identity or another scrypt N), and nothing is changed;
//! - the backend's VRF candidates are re-derived from the labels it returned: every label whose
//!   first 16 bytes could lie below the threshold is recomputed on the CPU, and the backend's list
//!   must equal the CPU's.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backend::{best_candidate, BackendError, LabelBackend, LabelRequest, VrfCandidate};
use crate::data::{file_name, list_files, Layout, LayoutError, LABEL_SIZE};
use crate::difficulty::{vrf_difficulty, DifficultyError};
use crate::metadata::{MetadataError, PostMetadata};
use crate::scrypt::{commitment, label32, validate_n, ScryptError};

/// postcli's `ComputeBatchSize`: the default upper bound of labels per backend call and per fsync.
pub const DEFAULT_BATCH_SIZE: usize = 1 << 20;
/// Default scrypt N (mainnet).
pub const DEFAULT_SCRYPT_N: usize = 8192;
/// Written labels are fsynced (and reported) at least this often.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Backend calls shorter than this double in size (up to the batch size)...
const GROW_BELOW: Duration = Duration::from_millis(500);
/// ...and calls longer than this halve (down to the backend's preferred batch).
const SHRINK_ABOVE: Duration = Duration::from_secs(2);

/// What to initialize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    pub node_id: [u8; 32],
    pub commitment_atx_id: [u8; 32],
    pub num_units: u32,
    pub labels_per_unit: u64,
    /// Bytes per `postdata_<k>.bin`; `labels_per_file = max_file_size / 16`.
    pub max_file_size: u64,
    pub scrypt_n: usize,
    /// First file to write (default 0).
    pub from_file: Option<u64>,
    /// Last file to write, inclusive (default the last file).
    pub to_file: Option<u64>,
    /// Most labels per backend call and between two fsyncs (postcli's ComputeBatchSize, 2^20).
    /// Backend calls start at the backend's preferred size and grow while they are short, so
    /// progress is reported often. The search past the end works in batches of exactly this size.
    pub batch_size: usize,
}

impl InitOptions {
    /// Options with mainnet defaults: N = 8192, all files, batches of 2^20.
    pub fn new(
        node_id: [u8; 32],
        commitment_atx_id: [u8; 32],
        num_units: u32,
        labels_per_unit: u64,
        max_file_size: u64,
    ) -> Self {
        Self {
            node_id,
            commitment_atx_id,
            num_units,
            labels_per_unit,
            max_file_size,
            scrypt_n: DEFAULT_SCRYPT_N,
            from_file: None,
            to_file: None,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }

    pub fn commitment(&self) -> [u8; 32] {
        commitment(&self.node_id, &self.commitment_atx_id)
    }

    pub fn layout(&self) -> Result<Layout, InitError> {
        if self.num_units == 0 {
            return Err(InitError::ZeroUnits);
        }
        Layout::new(self.num_units, self.labels_per_unit, self.max_file_size).map_err(InitError::Layout)
    }
}

/// What the initializer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitPhase {
    /// Checking the files already present (sizes, last labels).
    Verifying,
    /// Computing and appending labels.
    Computing,
    /// No stored label qualifies as VRF nonce: computing labels past the end (not stored).
    SearchingPastEnd,
}

/// Why an existing file was cut back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TruncateReason {
    /// Longer than its target (fewer units than before).
    TooLong,
    /// Its size is not a multiple of 16: the partial label is never counted.
    PartialLabel,
    /// Its last labels did not match the CPU's (e.g. zeros after a power loss).
    InvalidTail,
}

/// One file cut back before resuming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub file: u64,
    pub path: PathBuf,
    pub from_bytes: u64,
    pub to_bytes: u64,
    pub reason: TruncateReason,
}

/// Progress events, in the order they happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitProgress {
    Phase(InitPhase),
    /// A file above the last one needed was deleted.
    Deleted {
        file: u64,
        path: PathBuf,
    },
    Truncated(Truncation),
    /// After the existing files are checked: labels present (durable and verified as far as
    /// described in the module docs) and the total, both for the selected file range.
    Started {
        labels_done: u64,
        labels_total: u64,
        first_file: u64,
        last_file: u64,
    },
    /// Work on a file begins (`labels_present < labels_target`).
    File {
        file: u64,
        path: PathBuf,
        labels_present: u64,
        labels_target: u64,
    },
    /// Labels written and fsynced. `labels_done` / `labels_total` cover the selected file range and
    /// count what existed before this run.
    Labels {
        file: u64,
        labels_done: u64,
        labels_total: u64,
    },
    /// The recorded VRF nonce improved (it is already saved in the metadata).
    NonceFound(VrfCandidate),
    /// Search past the end: `position` is the next index to compute; `batch_start` the start of
    /// the batch being searched (what `LastPosition` holds).
    Searching {
        position: u64,
        batch_start: u64,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitState {
    /// Every file is complete and a VRF nonce is recorded.
    Complete,
    /// The selected file range is complete; other files of the identity are missing or partial,
    /// so no search past the end was made. The nonce (if any) is that of the labels seen so far.
    RangeComplete,
    /// The stop flag was raised. Everything written so far is durable and a rerun resumes.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOutcome {
    pub state: InitState,
    /// Labels computed and stored by this run.
    pub labels_written: u64,
    /// Labels computed past the end by this run (not stored).
    pub labels_searched: u64,
    /// The recorded nonce and its full label32.
    pub nonce: Option<VrfCandidate>,
    pub truncations: Vec<Truncation>,
    pub deleted: Vec<PathBuf>,
    /// The metadata as saved.
    pub metadata: PostMetadata,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("invalid options: number of units must be at least 1")]
    ZeroUnits,
    #[error("invalid options: batch size must be at least 1")]
    ZeroBatch,
    #[error("invalid options: {0}")]
    ScryptN(#[from] ScryptError),
    #[error("invalid options: {0}")]
    Layout(LayoutError),
    #[error("invalid options: VRF threshold: {0}")]
    Vrf(#[from] DifficultyError),
    #[error("invalid options: file range {from}..={to} is outside the {num_files} files (0..={last})", last = num_files.saturating_sub(1))]
    FileRange { from: u64, to: u64, num_files: u64 },
    #[error("listing the data directory: {0}")]
    List(LayoutError),
    #[error("metadata: {0}")]
    Metadata(#[from] MetadataError),
    #[error("{dir}: {field} in the metadata is {stored} but {requested} was requested; nothing was changed")]
    MetadataMismatch {
        dir: PathBuf,
        field: &'static str,
        stored: String,
        requested: String,
    },
    #[error("{dir}: NumUnits in the metadata is {stored} but {requested} was requested: growing is not supported; nothing was changed")]
    GrowingUnits {
        dir: PathBuf,
        stored: u32,
        requested: u32,
    },
    #[error("{dir}: {labels} labels are present but postdata_metadata.json is missing; nothing was changed")]
    MissingMetadata { dir: PathBuf, labels: u64 },
    #[error("{dir}: checking the stored nonce {nonce}: NonceValue is {} but the label is {} (another scrypt N?); nothing was changed", hex::encode(stored), hex::encode(computed))]
    NonceValueMismatch {
        dir: PathBuf,
        nonce: u64,
        stored: [u8; 16],
        computed: [u8; 16],
    },
    #[error("{dir}: checking the stored nonce {nonce}: label32 {} is not below the VRF threshold {} (another scrypt N or identity?); nothing was changed", hex::encode(label32), hex::encode(threshold))]
    StoredNonceInvalid {
        dir: PathBuf,
        nonce: u64,
        label32: [u8; 32],
        threshold: [u8; 32],
    },
    #[error("{path}: checking existing data: label {index} (file {file}) is {} but should be {} (data of another identity or scrypt N?); nothing was changed", hex::encode(found), hex::encode(expected))]
    ExistingDataMismatch {
        path: PathBuf,
        file: u64,
        index: u64,
        expected: [u8; 16],
        found: [u8; 16],
    },
    #[error("creating data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("computing labels {start}..{end} on {backend}: {source}")]
    Backend {
        backend: String,
        start: u64,
        end: u64,
        source: BackendError,
    },
    #[error(
        "reference check after a batch: label {index} from {backend} is {} but the CPU computes {}",
        hex::encode(device),
        hex::encode(cpu)
    )]
    ReferenceLabelMismatch {
        backend: String,
        index: u64,
        device: [u8; 16],
        cpu: [u8; 16],
    },
    #[error("checking VRF candidates of labels {start}..{end}: {backend} reported {device:?} but the CPU finds {cpu:?}")]
    CandidateMismatch {
        backend: String,
        start: u64,
        end: u64,
        device: Vec<u64>,
        cpu: Vec<u64>,
    },
    #[error("search past the end: label index overflows u64 after {position}")]
    SearchOverflow { position: u64 },
    #[error("merging nonces: candidate {index} is invalid: {reason}")]
    InvalidCandidate { index: u64, reason: String },
    #[error("merging nonces: {dir} has no postdata_metadata.json")]
    NoMetadata { dir: PathBuf },
}

fn io_err<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> InitError + 'a {
    move |source| InitError::Io {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// The 16 stored bytes of a label32.
fn head16(l: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&l[..16]);
    out
}

/// Read the 16-byte label at `pos` (label position within the file).
fn read_label(f: &mut File, path: &Path, pos: u64) -> Result<[u8; 16], InitError> {
    let mut b = [0u8; 16];
    f.seek(SeekFrom::Start(pos * LABEL_SIZE))
        .map_err(io_err("reading existing label of", path))?;
    f.read_exact(&mut b)
        .map_err(io_err("reading existing label of", path))?;
    Ok(b)
}

fn file_len(path: &Path) -> Result<Option<u64>, InitError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InitError::Io {
            step: "reading the size of",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Status of one `postdata_<k>.bin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStatus {
    pub file: u64,
    pub path: PathBuf,
    pub exists: bool,
    /// Size in bytes (0 when missing).
    pub size: u64,
    /// Labels the file holds when complete.
    pub labels_target: u64,
}

impl FileStatus {
    /// Whole labels present and countable: `min(floor(size / 16), target)`.
    pub fn labels_present(&self) -> u64 {
        (self.size / LABEL_SIZE).min(self.labels_target)
    }

    /// Exactly the expected size.
    pub fn complete(&self) -> bool {
        self.exists && self.size == self.labels_target * LABEL_SIZE
    }
}

/// What a data directory holds, from its metadata and the file sizes (no label is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitStatus {
    pub metadata: PostMetadata,
    pub layout: Layout,
    /// One entry per file of the layout, k = 0..num_files.
    pub files: Vec<FileStatus>,
    /// `postdata_<k>.bin` files with k >= num_files (a rerun deletes them).
    pub extra_files: Vec<PathBuf>,
}

impl InitStatus {
    pub fn labels_present(&self) -> u64 {
        self.files.iter().map(FileStatus::labels_present).sum()
    }

    pub fn labels_total(&self) -> u64 {
        self.layout.num_labels
    }

    /// Every file has exactly its expected size.
    pub fn data_complete(&self) -> bool {
        self.files.iter().all(FileStatus::complete)
    }

    /// Data complete and a VRF nonce recorded.
    pub fn is_complete(&self) -> bool {
        self.data_complete() && self.metadata.nonce.is_some()
    }
}

fn file_statuses(
    dir: &Path,
    layout: &Layout,
    listed: &std::collections::BTreeMap<u64, PathBuf>,
) -> Result<(Vec<FileStatus>, Vec<PathBuf>), InitError> {
    let mut files = Vec::new();
    for k in 0..layout.num_files() {
        let path = listed.get(&k).cloned().unwrap_or_else(|| dir.join(file_name(k)));
        let len = file_len(&path)?;
        files.push(FileStatus {
            file: k,
            path,
            exists: len.is_some(),
            size: len.unwrap_or(0),
            labels_target: layout.file_labels(k).end - layout.file_labels(k).start,
        });
    }
    let extra = listed
        .range(layout.num_files()..)
        .map(|(_, p)| p.clone())
        .collect();
    Ok((files, extra))
}

/// The init status of `dir`; `Ok(None)` when it has no metadata (or does not exist).
pub fn init_status(dir: &Path) -> Result<Option<InitStatus>, InitError> {
    let Some(metadata) = PostMetadata::load(dir)? else {
        return Ok(None);
    };
    let layout = Layout::new(
        metadata.num_units,
        metadata.labels_per_unit,
        metadata.max_file_size,
    )
    .map_err(InitError::Layout)?;
    let listed = list_files(dir).map_err(InitError::List)?;
    let (files, extra_files) = file_statuses(dir, &layout, &listed)?;
    Ok(Some(InitStatus {
        metadata,
        layout,
        files,
        extra_files,
    }))
}

/// The stored nonce as a candidate: label32 recomputed on the CPU, `NonceValue` and the threshold
/// checked.
fn stored_candidate(
    dir: &Path,
    md: &PostMetadata,
    scrypt_n: usize,
    threshold: &[u8; 32],
) -> Result<Option<VrfCandidate>, InitError> {
    let Some(nonce) = md.nonce else {
        return Ok(None);
    };
    let l = label32(&md.commitment(), nonce, scrypt_n);
    if let Some(stored) = md.nonce_value {
        if stored != head16(&l) {
            return Err(InitError::NonceValueMismatch {
                dir: dir.to_path_buf(),
                nonce,
                stored,
                computed: head16(&l),
            });
        }
    }
    if l >= *threshold {
        return Err(InitError::StoredNonceInvalid {
            dir: dir.to_path_buf(),
            nonce,
            label32: l,
            threshold: *threshold,
        });
    }
    Ok(Some(VrfCandidate {
        index: nonce,
        label32: l,
    }))
}

fn check_identity(dir: &Path, md: &PostMetadata, opts: &InitOptions) -> Result<(), InitError> {
    let mismatch = |field: &'static str, stored: String, requested: String| InitError::MetadataMismatch {
        dir: dir.to_path_buf(),
        field,
        stored,
        requested,
    };
    if md.node_id != opts.node_id {
        return Err(mismatch(
            "NodeId",
            hex::encode(md.node_id),
            hex::encode(opts.node_id),
        ));
    }
    if md.commitment_atx_id != opts.commitment_atx_id {
        return Err(mismatch(
            "CommitmentAtxId",
            hex::encode(md.commitment_atx_id),
            hex::encode(opts.commitment_atx_id),
        ));
    }
    if md.labels_per_unit != opts.labels_per_unit {
        return Err(mismatch(
            "LabelsPerUnit",
            md.labels_per_unit.to_string(),
            opts.labels_per_unit.to_string(),
        ));
    }
    if md.max_file_size != opts.max_file_size {
        return Err(mismatch(
            "MaxFileSize",
            md.max_file_size.to_string(),
            opts.max_file_size.to_string(),
        ));
    }
    if opts.num_units > md.num_units {
        return Err(InitError::GrowingUnits {
            dir: dir.to_path_buf(),
            stored: md.num_units,
            requested: opts.num_units,
        });
    }
    Ok(())
}

/// What to do with one existing file of the range, decided before anything is written.
struct FilePlan {
    file: u64,
    path: PathBuf,
    exists: bool,
    size: u64,
    /// Labels kept (verified as described in the module docs).
    keep: u64,
    target: u64,
    reason: Option<TruncateReason>,
}

/// Decide how much of file `k` to keep; reads, never writes.
fn plan_file(
    commitment: &[u8; 32],
    scrypt_n: usize,
    layout: &Layout,
    st: &FileStatus,
) -> Result<FilePlan, InitError> {
    let first = layout.file_labels(st.file).start;
    let have = st.size / LABEL_SIZE;
    let target = st.labels_target;
    let mut keep = have.min(target);
    let mut reason = if have > target {
        Some(TruncateReason::TooLong)
    } else if have * LABEL_SIZE != st.size {
        Some(TruncateReason::PartialLabel)
    } else {
        None
    };
    if keep > 0 {
        let mut f = File::open(&st.path).map_err(io_err("opening existing file", &st.path))?;
        let ok = |f: &mut File, pos: u64| -> Result<(bool, [u8; 16], [u8; 16]), InitError> {
            let found = read_label(f, &st.path, pos)?;
            let expected = head16(&label32(commitment, first + pos, scrypt_n));
            Ok((found == expected, expected, found))
        };
        if !ok(&mut f, keep - 1)?.0 {
            let (first_ok, expected, found) = ok(&mut f, 0)?;
            if first_ok {
                // Label 0 matches, label keep-1 does not: find the first failing position,
                // assuming the damage is a suffix (what an interrupted append leaves).
                let (mut lo, mut hi) = (1u64, keep - 1);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if ok(&mut f, mid)?.0 {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                keep = lo;
            } else if found == [0u8; 16] {
                // A file whose size survived a power loss but whose data did not: zeros (a real
                // label is all zeros with probability 2^-128).
                keep = 0;
            } else {
                return Err(InitError::ExistingDataMismatch {
                    path: st.path.clone(),
                    file: st.file,
                    index: first,
                    expected,
                    found,
                });
            }
            reason = Some(TruncateReason::InvalidTail);
        }
    }
    Ok(FilePlan {
        file: st.file,
        path: st.path.clone(),
        exists: st.exists,
        size: st.size,
        keep,
        target,
        reason,
    })
}

/// Shared state of one run.
struct Run<'a> {
    dir: &'a Path,
    opts: &'a InitOptions,
    backend: &'a dyn LabelBackend,
    progress: &'a dyn Fn(InitProgress),
    stop: &'a AtomicBool,
    commitment: [u8; 32],
    threshold: [u8; 32],
    metadata: PostMetadata,
    best: Option<VrfCandidate>,
    /// Labels per backend call, adapted to keep calls short.
    call: usize,
    min_call: usize,
    labels_written: u64,
    labels_searched: u64,
}

impl Run<'_> {
    /// Compute labels `[start, start + buf.len() / 16)` and cross-check the result on the CPU:
    /// the last label, and the VRF candidates.
    fn compute(&mut self, start: u64, buf: &mut [u8]) -> Result<Vec<VrfCandidate>, InitError> {
        let n = (buf.len() as u64) / LABEL_SIZE;
        let end = start + n;
        let req = LabelRequest {
            commitment: &self.commitment,
            scrypt_n: self.opts.scrypt_n,
            start,
            vrf_threshold: Some(&self.threshold),
        };
        let t = Instant::now();
        let device = self
            .backend
            .compute(&req, buf)
            .map_err(|source| InitError::Backend {
                backend: self.backend.name(),
                start,
                end,
                source,
            })?;
        let took = t.elapsed();
        if n == 0 {
            return Ok(device);
        }
        // Reference check of the batch's last label.
        let last = end - 1;
        let cpu = head16(&label32(&self.commitment, last, self.opts.scrypt_n));
        let mut dev = [0u8; 16];
        dev.copy_from_slice(&buf[buf.len() - 16..]);
        if cpu != dev {
            return Err(InitError::ReferenceLabelMismatch {
                backend: self.backend.name(),
                index: last,
                device: dev,
                cpu,
            });
        }
        // Candidates: a label32 below the threshold has its first 16 bytes <= the threshold's.
        let t16 = head16(&self.threshold);
        let mut cands = Vec::new();
        for (i, l) in buf.chunks_exact(16).enumerate() {
            if l <= &t16[..] {
                let index = start + i as u64;
                let full = label32(&self.commitment, index, self.opts.scrypt_n);
                if head16(&full) != l {
                    let mut device = [0u8; 16];
                    device.copy_from_slice(l);
                    return Err(InitError::ReferenceLabelMismatch {
                        backend: self.backend.name(),
                        index,
                        device,
                        cpu: head16(&full),
                    });
                }
                if full < self.threshold {
                    cands.push(VrfCandidate { index, label32: full });
                }
            }
        }
        if device != cands {
            return Err(InitError::CandidateMismatch {
                backend: self.backend.name(),
                start,
                end,
                device: device.iter().map(|c| c.index).collect(),
                cpu: cands.iter().map(|c| c.index).collect(),
            });
        }
        // Adapt the call size: short calls grow, long ones shrink.
        if took < GROW_BELOW {
            self.call = self.call.saturating_mul(2).min(self.opts.batch_size);
        } else if took > SHRINK_ABOVE {
            self.call = (self.call / 2).max(self.min_call);
        }
        Ok(cands)
    }

    /// Take `c` if it beats the recorded best; true when it did.
    fn offer(&mut self, c: Option<VrfCandidate>) -> bool {
        let Some(c) = c else { return false };
        let new = match self.best {
            None => c,
            Some(b) => b.better(c),
        };
        if Some(new) == self.best {
            return false;
        }
        self.best = Some(new);
        self.metadata.nonce = Some(new.index);
        self.metadata.nonce_value = Some(head16(&new.label32));
        true
    }

    fn save(&self) -> Result<(), InitError> {
        self.metadata.save(self.dir)?;
        Ok(())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Append the missing labels of one file. Returns false when stopped.
    fn fill(
        &mut self,
        layout: &Layout,
        plan: &FilePlan,
        done: &mut u64,
        total: u64,
    ) -> Result<bool, InitError> {
        let range = layout.file_labels(plan.file);
        let path = &plan.path;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err("opening for append", path))?;
        f.seek(SeekFrom::Start(plan.keep * LABEL_SIZE))
            .map_err(io_err("seeking to the end of", path))?;
        (self.progress)(InitProgress::File {
            file: plan.file,
            path: path.clone(),
            labels_present: plan.keep,
            labels_target: plan.target,
        });
        let mut pos = plan.keep;
        let mut buf = Vec::new();
        let mut unsynced = 0u64;
        let mut last_sync = Instant::now();
        let mut improved = false;
        while pos < plan.target {
            if self.stopped() {
                break;
            }
            let n = (self.call as u64).min(plan.target - pos);
            buf.resize((n * LABEL_SIZE) as usize, 0);
            let cands = self.compute(range.start + pos, &mut buf)?;
            if self.offer(best_candidate(&cands)) {
                // A resume keeps the labels it finds on disk without scanning them for candidates,
                // so a candidate must be recorded before the labels that hold it are written: a
                // kill between the two then leaves a recorded nonce whose labels are recomputed
                // (the nonce belongs to the index, not to the bytes), never written labels whose
                // candidate is lost.
                self.save()?;
                improved = true;
            }
            f.write_all(&buf).map_err(io_err("appending labels to", path))?;
            pos += n;
            unsynced += n;
            self.labels_written += n;
            if improved
                || pos == plan.target
                || unsynced >= self.opts.batch_size as u64
                || last_sync.elapsed() >= SYNC_INTERVAL
            {
                f.sync_data().map_err(io_err("syncing", path))?;
                *done += unsynced;
                unsynced = 0;
                last_sync = Instant::now();
                (self.progress)(InitProgress::Labels {
                    file: plan.file,
                    labels_done: *done,
                    labels_total: total,
                });
                if improved {
                    if let Some(b) = self.best {
                        (self.progress)(InitProgress::NonceFound(b));
                    }
                    improved = false;
                }
            }
        }
        if unsynced > 0 {
            f.sync_data().map_err(io_err("syncing", path))?;
            *done += unsynced;
            (self.progress)(InitProgress::Labels {
                file: plan.file,
                labels_done: *done,
                labels_total: total,
            });
        }
        Ok(pos == plan.target)
    }

    /// Search past the end (spec §3.3): batches of `batch_size` from max(LastPosition, numLabels),
    /// stopping at the first batch with a candidate. Returns false when stopped.
    fn search(&mut self, num_labels: u64) -> Result<bool, InitError> {
        (self.progress)(InitProgress::Phase(InitPhase::SearchingPastEnd));
        let mut batch_start = self.metadata.last_position.unwrap_or(0).max(num_labels);
        let batch = self.opts.batch_size as u64;
        let mut buf = Vec::new();
        loop {
            if self.metadata.last_position != Some(batch_start) {
                self.metadata.last_position = Some(batch_start);
                self.save()?;
            }
            let batch_end = batch_start.checked_add(batch).ok_or(InitError::SearchOverflow {
                position: batch_start,
            })?;
            let mut pos = batch_start;
            let mut found: Option<VrfCandidate> = None;
            while pos < batch_end {
                if self.stopped() {
                    return Ok(false);
                }
                let n = (self.call as u64).min(batch_end - pos);
                buf.resize((n * LABEL_SIZE) as usize, 0);
                let cands = self.compute(pos, &mut buf)?;
                pos += n;
                self.labels_searched += n;
                found = match (found, best_candidate(&cands)) {
                    (Some(a), Some(b)) => Some(a.better(b)),
                    (a, b) => a.or(b),
                };
                (self.progress)(InitProgress::Searching {
                    position: pos,
                    batch_start,
                });
            }
            if found.is_some() {
                self.offer(found);
                self.save()?;
                if let Some(b) = self.best {
                    (self.progress)(InitProgress::NonceFound(b));
                }
                return Ok(true);
            }
            batch_start = batch_end;
        }
    }
}

/// Initialize (or resume) the PoST data of `opts` in `dir`, spec §3.6. See the module docs.
///
/// Nothing is written before the options, the stored metadata, the stored nonce and the existing
/// files of the range have been checked; any error up to there leaves `dir` unchanged.
pub fn initialize(
    dir: &Path,
    opts: &InitOptions,
    backend: &dyn LabelBackend,
    progress: &dyn Fn(InitProgress),
    stop: &AtomicBool,
) -> Result<InitOutcome, InitError> {
    // 1. Options.
    validate_n(opts.scrypt_n as u64)?;
    if opts.batch_size == 0 {
        return Err(InitError::ZeroBatch);
    }
    let layout = opts.layout()?;
    let threshold = vrf_difficulty(layout.num_labels)?;
    let num_files = layout.num_files();
    let from = opts.from_file.unwrap_or(0);
    let to = opts.to_file.unwrap_or(num_files - 1);
    if from > to || to >= num_files {
        return Err(InitError::FileRange { from, to, num_files });
    }
    let commitment = opts.commitment();

    // 2. What is there: files, labels, metadata.
    let listed = if dir.exists() {
        list_files(dir).map_err(InitError::List)?
    } else {
        Default::default()
    };
    let mut labels_on_disk = 0u64;
    for p in listed.values() {
        labels_on_disk += file_len(p)?.unwrap_or(0) / LABEL_SIZE;
    }
    let stored = PostMetadata::load(dir)?;
    let mut best = None;
    let mut last_position = None;
    match &stored {
        Some(md) => {
            check_identity(dir, md, opts)?;
            best = stored_candidate(dir, md, opts.scrypt_n, &threshold)?;
            last_position = md.last_position;
        }
        None if labels_on_disk > 0 => {
            return Err(InitError::MissingMetadata {
                dir: dir.to_path_buf(),
                labels: labels_on_disk,
            });
        }
        None => {}
    }

    // 3. The files of the range: how much of each to keep (read-only).
    progress(InitProgress::Phase(InitPhase::Verifying));
    let (statuses, _) = file_statuses(dir, &layout, &listed)?;
    let mut plans = Vec::new();
    for st in &statuses[from as usize..=to as usize] {
        plans.push(plan_file(&commitment, opts.scrypt_n, &layout, st)?);
    }

    // 4. Write: directory, metadata, deletions, truncations.
    std::fs::create_dir_all(dir).map_err(|source| InitError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let metadata = PostMetadata {
        node_id: opts.node_id,
        commitment_atx_id: opts.commitment_atx_id,
        labels_per_unit: opts.labels_per_unit,
        num_units: opts.num_units,
        max_file_size: opts.max_file_size,
        nonce: best.map(|b| b.index),
        nonce_value: best.map(|b| head16(&b.label32)),
        last_position,
    };
    metadata.save(dir)?;
    let mut deleted = Vec::new();
    for (k, p) in listed.range(num_files..) {
        std::fs::remove_file(p).map_err(io_err("deleting surplus file", p))?;
        progress(InitProgress::Deleted {
            file: *k,
            path: p.clone(),
        });
        deleted.push(p.clone());
    }
    let mut truncations = Vec::new();
    for plan in &plans {
        let keep_bytes = plan.keep * LABEL_SIZE;
        if plan.exists && plan.size != keep_bytes {
            let f = OpenOptions::new()
                .write(true)
                .open(&plan.path)
                .map_err(io_err("opening for truncation", &plan.path))?;
            f.set_len(keep_bytes).map_err(io_err("truncating", &plan.path))?;
            f.sync_all().map_err(io_err("syncing", &plan.path))?;
            let t = Truncation {
                file: plan.file,
                path: plan.path.clone(),
                from_bytes: plan.size,
                to_bytes: keep_bytes,
                reason: plan.reason.unwrap_or(TruncateReason::PartialLabel),
            };
            progress(InitProgress::Truncated(t.clone()));
            truncations.push(t);
        }
    }

    // 5. Compute the missing labels of the range.
    let mut run = Run {
        dir,
        opts,
        backend,
        progress,
        stop,
        commitment,
        threshold,
        metadata,
        best,
        call: backend.preferred_batch().clamp(1, opts.batch_size),
        min_call: backend.preferred_batch().clamp(1, opts.batch_size),
        labels_written: 0,
        labels_searched: 0,
    };
    let total: u64 = plans.iter().map(|p| p.target).sum();
    let mut done: u64 = plans.iter().map(|p| p.keep).sum();
    progress(InitProgress::Started {
        labels_done: done,
        labels_total: total,
        first_file: from,
        last_file: to,
    });
    progress(InitProgress::Phase(InitPhase::Computing));
    let mut stopped = false;
    for plan in &plans {
        if plan.keep == plan.target && plan.exists {
            continue;
        }
        if !run.fill(&layout, plan, &mut done, total)? {
            stopped = true;
            break;
        }
    }

    // 6. The search past the end, only when the whole data set exists.
    let mut state = InitState::RangeComplete;
    if !stopped {
        let listed = list_files(dir).map_err(InitError::List)?;
        let (after, _) = file_statuses(dir, &layout, &listed)?;
        if after.iter().all(FileStatus::complete) {
            if run.best.is_none() && !run.search(layout.num_labels)? {
                stopped = true;
            } else {
                state = InitState::Complete;
            }
        }
    }
    if stopped {
        state = InitState::Stopped;
    }
    Ok(InitOutcome {
        state,
        labels_written: run.labels_written,
        labels_searched: run.labels_searched,
        nonce: run.best,
        truncations,
        deleted,
        metadata: run.metadata,
    })
}

/// Result of a nonce merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceMerge {
    /// The nonce recorded after the merge.
    pub nonce: Option<VrfCandidate>,
    /// Whether the metadata changed.
    pub changed: bool,
}

/// Merge a VRF nonce found elsewhere (a subset initialized on another machine) into `dir`'s
/// metadata, keeping the global minimum (spec §3.3). The candidate and the stored nonce are both
/// recomputed on the CPU and must qualify under `dir`'s threshold.
pub fn merge_nonce(dir: &Path, candidate: VrfCandidate, scrypt_n: usize) -> Result<NonceMerge, InitError> {
    validate_n(scrypt_n as u64)?;
    let mut md = PostMetadata::load(dir)?.ok_or_else(|| InitError::NoMetadata {
        dir: dir.to_path_buf(),
    })?;
    let threshold = vrf_difficulty(md.num_labels())?;
    let l = label32(&md.commitment(), candidate.index, scrypt_n);
    if l != candidate.label32 {
        return Err(InitError::InvalidCandidate {
            index: candidate.index,
            reason: format!(
                "its label32 is {}, not {}",
                hex::encode(l),
                hex::encode(candidate.label32)
            ),
        });
    }
    if l >= threshold {
        return Err(InitError::InvalidCandidate {
            index: candidate.index,
            reason: format!(
                "label32 {} is not below the VRF threshold {}",
                hex::encode(l),
                hex::encode(threshold)
            ),
        });
    }
    let current = stored_candidate(dir, &md, scrypt_n, &threshold)?;
    let best = current.map_or(candidate, |c| c.better(candidate));
    if Some(best) == current && md.nonce_value.is_some() {
        return Ok(NonceMerge {
            nonce: current,
            changed: false,
        });
    }
    md.nonce = Some(best.index);
    md.nonce_value = Some(head16(&best.label32));
    md.save(dir)?;
    Ok(NonceMerge {
        nonce: Some(best),
        changed: true,
    })
}

/// Merge the nonce recorded in `other`'s metadata into `dir`'s (both must describe the same
/// identity: NodeId, CommitmentAtxId, LabelsPerUnit and MaxFileSize equal).
pub fn merge_nonce_from(dir: &Path, other: &Path, scrypt_n: usize) -> Result<NonceMerge, InitError> {
    validate_n(scrypt_n as u64)?;
    let md = PostMetadata::load(dir)?.ok_or_else(|| InitError::NoMetadata {
        dir: dir.to_path_buf(),
    })?;
    let theirs = PostMetadata::load(other)?.ok_or_else(|| InitError::NoMetadata {
        dir: other.to_path_buf(),
    })?;
    // Same identity and layout; NumUnits may differ (the threshold check of `merge_nonce` decides).
    let ours = InitOptions::new(
        md.node_id,
        md.commitment_atx_id,
        0,
        md.labels_per_unit,
        md.max_file_size,
    );
    check_identity(other, &theirs, &ours)?;
    let Some(index) = theirs.nonce else {
        let threshold = vrf_difficulty(md.num_labels())?;
        return Ok(NonceMerge {
            nonce: stored_candidate(dir, &md, scrypt_n, &threshold)?,
            changed: false,
        });
    };
    let l = label32(&md.commitment(), index, scrypt_n);
    if let Some(v) = theirs.nonce_value {
        if v != head16(&l) {
            return Err(InitError::NonceValueMismatch {
                dir: other.to_path_buf(),
                nonce: index,
                stored: v,
                computed: head16(&l),
            });
        }
    }
    merge_nonce(dir, VrfCandidate { index, label32: l }, scrypt_n)
}
