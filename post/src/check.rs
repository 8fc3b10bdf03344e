//! Checking stored PoST data (spec/post.md §3.7): recompute a random fraction of the stored
//! labels of every file on the CPU and compare all 16 bytes. Unlike post-rs, which stops at the
//! first bad label, every mismatch is reported (as a progress event, and in the report up to
//! [`MAX_REPORTED_MISMATCHES`]), with its file, byte offset and label index. Missing, surplus and
//! wrongly sized files are reported, and the metadata's VRF nonce is verified.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::backend::{BackendError, CpuBackend, LabelBackend, LabelRequest};
use crate::data::{file_name, list_files, Layout, LayoutError, LABEL_SIZE};
use crate::difficulty::{vrf_difficulty, DifficultyError};
use crate::metadata::{MetadataError, PostMetadata};
use crate::scrypt::{label32, validate_n, ScryptError};

/// The report keeps at most this many mismatches (all of them go to the progress callback and
/// are counted in [`CheckReport::mismatches_total`]).
pub const MAX_REPORTED_MISMATCHES: usize = 1 << 20;
/// Labels recomputed per step (one progress event each).
const CHUNK: usize = 1024;
/// Sampled positions closer than this many bytes are read in one go.
const MAX_SPAN_BYTES: u64 = 4 << 20;

/// A stored label that differs from the recomputed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMismatch {
    pub path: PathBuf,
    /// k of `postdata_<k>.bin`.
    pub file: u64,
    /// Byte offset of the label in the file.
    pub offset: u64,
    /// Global label index.
    pub index: u64,
    pub expected: [u8; 16],
    pub found: [u8; 16],
}

impl std::fmt::Display for LabelMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (file {}) offset {}: label {} is {} but should be {}",
            self.path.display(),
            self.file,
            self.offset,
            self.index,
            hex::encode(self.found),
            hex::encode(self.expected)
        )
    }
}

/// A problem with a whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileIssue {
    Missing {
        file: u64,
        path: PathBuf,
    },
    /// The labels present (up to the expected size) are still checked.
    WrongSize {
        file: u64,
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    /// k >= the number of files of the layout.
    Surplus {
        file: u64,
        path: PathBuf,
    },
    /// Reading failed; the rest of the file was not checked.
    Unreadable {
        file: u64,
        path: PathBuf,
        error: String,
    },
}

impl std::fmt::Display for FileIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { file, path } => write!(f, "{} (file {file}) is missing", path.display()),
            Self::WrongSize {
                file,
                path,
                expected,
                actual,
            } => write!(
                f,
                "{} (file {file}) has {actual} bytes, expected {expected}",
                path.display()
            ),
            Self::Surplus { file, path } => {
                write!(
                    f,
                    "{} (file {file}) is beyond the last file of the layout",
                    path.display()
                )
            }
            Self::Unreadable { file, path, error } => {
                write!(f, "{} (file {file}) could not be read: {error}", path.display())
            }
        }
    }
}

/// The metadata's VRF nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonceCheck {
    /// No nonce recorded (initialization not finished).
    Absent,
    Valid {
        index: u64,
        label32: [u8; 32],
    },
    NotBelowThreshold {
        index: u64,
        label32: [u8; 32],
        threshold: [u8; 32],
    },
    /// `NonceValue` is not the label at `Nonce`.
    ValueMismatch {
        index: u64,
        stored: [u8; 16],
        computed: [u8; 16],
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub metadata: PostMetadata,
    pub fraction: f64,
    /// The seed of the position sampler (give it back to repeat the same check).
    pub seed: u64,
    pub files_checked: u64,
    pub labels_checked: u64,
    pub mismatches_total: u64,
    /// The first [`MAX_REPORTED_MISMATCHES`] mismatches, in file and offset order.
    pub mismatches: Vec<LabelMismatch>,
    pub file_issues: Vec<FileIssue>,
    pub nonce: NonceCheck,
}

impl CheckReport {
    /// No mismatch and no file issue.
    pub fn data_ok(&self) -> bool {
        self.mismatches_total == 0 && self.file_issues.is_empty()
    }

    /// Data ok and a valid nonce.
    pub fn is_ok(&self) -> bool {
        self.data_ok() && matches!(self.nonce, NonceCheck::Valid { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckProgress {
    Started {
        files: u64,
        /// Expected number of labels to check (exact for fraction 1).
        labels_planned: u64,
        seed: u64,
    },
    File {
        file: u64,
        path: PathBuf,
        labels_in_file: u64,
    },
    Labels {
        checked: u64,
        planned: u64,
    },
    Mismatch(LabelMismatch),
    Issue(FileIssue),
    Nonce(NonceCheck),
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("invalid fraction {0}: must be in (0, 1]")]
    InvalidFraction(f64),
    #[error("invalid scrypt N: {0}")]
    ScryptN(#[from] ScryptError),
    #[error("{dir} has no postdata_metadata.json")]
    NoMetadata { dir: PathBuf },
    #[error("metadata: {0}")]
    Metadata(#[from] MetadataError),
    #[error("layout from the metadata: {0}")]
    Layout(LayoutError),
    #[error("listing the data directory: {0}")]
    List(LayoutError),
    #[error("VRF threshold from the metadata: {0}")]
    Vrf(#[from] DifficultyError),
    #[error("starting {threads} CPU threads: {source}")]
    Threads { threads: usize, source: BackendError },
    #[error("recomputing labels {start}..{end}: {source}")]
    Compute {
        start: u64,
        end: u64,
        source: BackendError,
    },
}

/// splitmix64: small, seedable, good enough to pick positions.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish()
}

/// Positions `0..n` each picked with probability `fraction` (all of them for 1), in ascending
/// order; geometric gaps, so the cost is that of the positions picked. At least one is picked.
struct Sampler<'a> {
    n: u64,
    fraction: f64,
    next: u64,
    picked_any: bool,
    rng: &'a mut Rng,
}

impl<'a> Sampler<'a> {
    fn new(n: u64, fraction: f64, rng: &'a mut Rng) -> Self {
        let mut s = Self {
            n,
            fraction,
            next: 0,
            picked_any: false,
            rng,
        };
        s.next = s.gap();
        s
    }

    fn gap(&mut self) -> u64 {
        if self.fraction >= 1.0 {
            return 0;
        }
        let g = (self.rng.unit().ln() / (-self.fraction).ln_1p()).floor();
        // `as` saturates: a huge gap just ends the file.
        g as u64
    }
}

impl Iterator for Sampler<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.next < self.n {
            let p = self.next;
            self.next = p.saturating_add(1).saturating_add(self.gap());
            self.picked_any = true;
            return Some(p);
        }
        if !self.picked_any && self.n > 0 {
            self.picked_any = true;
            return Some(self.rng.next_u64() % self.n);
        }
        None
    }
}

fn read_labels(f: &mut File, positions: &[u64]) -> std::io::Result<Vec<[u8; 16]>> {
    let (Some(&first), Some(&last)) = (positions.first(), positions.last()) else {
        return Ok(Vec::new());
    };
    let span = (last - first + 1) * LABEL_SIZE;
    let mut out = Vec::with_capacity(positions.len());
    if span <= MAX_SPAN_BYTES {
        let mut buf = vec![0u8; span as usize];
        f.seek(SeekFrom::Start(first * LABEL_SIZE))?;
        f.read_exact(&mut buf)?;
        for p in positions {
            let o = ((p - first) * LABEL_SIZE) as usize;
            let mut l = [0u8; 16];
            l.copy_from_slice(&buf[o..o + 16]);
            out.push(l);
        }
    } else {
        for p in positions {
            let mut l = [0u8; 16];
            f.seek(SeekFrom::Start(p * LABEL_SIZE))?;
            f.read_exact(&mut l)?;
            out.push(l);
        }
    }
    Ok(out)
}

fn head16(l: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&l[..16]);
    out
}

/// Verify the metadata's nonce: `label32(Nonce) < Dvrf(numLabels)` and `NonceValue` (if any).
pub fn check_nonce(md: &PostMetadata, scrypt_n: usize) -> Result<NonceCheck, CheckError> {
    validate_n(scrypt_n as u64)?;
    let Some(index) = md.nonce else {
        return Ok(NonceCheck::Absent);
    };
    let threshold = vrf_difficulty(md.num_labels())?;
    let l = label32(&md.commitment(), index, scrypt_n);
    if let Some(stored) = md.nonce_value {
        if stored != head16(&l) {
            return Ok(NonceCheck::ValueMismatch {
                index,
                stored,
                computed: head16(&l),
            });
        }
    }
    if l < threshold {
        Ok(NonceCheck::Valid { index, label32: l })
    } else {
        Ok(NonceCheck::NotBelowThreshold {
            index,
            label32: l,
            threshold,
        })
    }
}

/// Check the data in `dir` against its metadata. `fraction` in (0, 1] of the label positions of
/// each file is recomputed on `threads` CPU threads (0: all CPUs); `seed` fixes the positions
/// (random when `None`; the report gives the one used).
pub fn check_data(
    dir: &Path,
    fraction: f64,
    scrypt_n: usize,
    threads: usize,
    progress: &dyn Fn(CheckProgress),
    seed: Option<u64>,
) -> Result<CheckReport, CheckError> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(CheckError::InvalidFraction(fraction));
    }
    validate_n(scrypt_n as u64)?;
    let md = PostMetadata::load(dir)?.ok_or_else(|| CheckError::NoMetadata {
        dir: dir.to_path_buf(),
    })?;
    let layout =
        Layout::new(md.num_units, md.labels_per_unit, md.max_file_size).map_err(CheckError::Layout)?;
    let commitment = md.commitment();
    let listed = list_files(dir).map_err(CheckError::List)?;
    let backend = CpuBackend::new(threads).map_err(|source| CheckError::Threads { threads, source })?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(backend.threads())
        .build()
        .map_err(|e| CheckError::Threads {
            threads,
            source: BackendError::Device {
                device: "cpu".into(),
                message: e.to_string(),
            },
        })?;
    let seed = seed.unwrap_or_else(random_seed);
    let mut rng = Rng(seed);

    let mut report = CheckReport {
        metadata: md.clone(),
        fraction,
        seed,
        files_checked: 0,
        labels_checked: 0,
        mismatches_total: 0,
        mismatches: Vec::new(),
        file_issues: Vec::new(),
        nonce: NonceCheck::Absent,
    };
    let planned: u64 = (0..layout.num_files())
        .map(|k| {
            let n = layout.file_size(k) / LABEL_SIZE;
            ((n as f64 * fraction).ceil() as u64).clamp(1, n.max(1))
        })
        .sum();
    progress(CheckProgress::Started {
        files: layout.num_files(),
        labels_planned: planned,
        seed,
    });

    let issue = |report: &mut CheckReport, i: FileIssue| {
        progress(CheckProgress::Issue(i.clone()));
        report.file_issues.push(i);
    };
    for (k, p) in listed.range(layout.num_files()..) {
        issue(
            &mut report,
            FileIssue::Surplus {
                file: *k,
                path: p.clone(),
            },
        );
    }

    for k in 0..layout.num_files() {
        let path = listed.get(&k).cloned().unwrap_or_else(|| dir.join(file_name(k)));
        let expected = layout.file_size(k);
        let actual = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                issue(&mut report, FileIssue::Missing { file: k, path });
                continue;
            }
            Err(e) => {
                issue(
                    &mut report,
                    FileIssue::Unreadable {
                        file: k,
                        path,
                        error: e.to_string(),
                    },
                );
                continue;
            }
        };
        if actual != expected {
            issue(
                &mut report,
                FileIssue::WrongSize {
                    file: k,
                    path: path.clone(),
                    expected,
                    actual,
                },
            );
        }
        let n = actual.min(expected) / LABEL_SIZE;
        let first_index = layout.file_labels(k).start;
        progress(CheckProgress::File {
            file: k,
            path: path.clone(),
            labels_in_file: n,
        });
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                issue(
                    &mut report,
                    FileIssue::Unreadable {
                        file: k,
                        path,
                        error: e.to_string(),
                    },
                );
                continue;
            }
        };
        report.files_checked += 1;
        let mut sampler = Sampler::new(n, fraction, &mut rng).peekable();
        let mut chunk = Vec::with_capacity(CHUNK);
        while sampler.peek().is_some() {
            chunk.clear();
            chunk.extend(sampler.by_ref().take(CHUNK));
            chunk.sort_unstable();
            chunk.dedup();
            let found = match read_labels(&mut f, &chunk) {
                Ok(v) => v,
                Err(e) => {
                    issue(
                        &mut report,
                        FileIssue::Unreadable {
                            file: k,
                            path: path.clone(),
                            error: e.to_string(),
                        },
                    );
                    break;
                }
            };
            let contiguous = chunk.len() as u64 == chunk[chunk.len() - 1] - chunk[0] + 1;
            let expected: Vec<[u8; 16]> = if contiguous {
                let start = first_index + chunk[0];
                let mut buf = vec![0u8; chunk.len() * 16];
                let req = LabelRequest {
                    commitment: &commitment,
                    scrypt_n,
                    start,
                    vrf_threshold: None,
                };
                backend
                    .compute(&req, &mut buf)
                    .map_err(|source| CheckError::Compute {
                        start,
                        end: start + chunk.len() as u64,
                        source,
                    })?;
                buf.chunks_exact(16)
                    .map(|c| {
                        let mut l = [0u8; 16];
                        l.copy_from_slice(c);
                        l
                    })
                    .collect()
            } else {
                pool.install(|| {
                    chunk
                        .par_iter()
                        .map(|p| head16(&label32(&commitment, first_index + p, scrypt_n)))
                        .collect()
                })
            };
            for ((p, e), fd) in chunk.iter().zip(&expected).zip(&found) {
                if e != fd {
                    let m = LabelMismatch {
                        path: path.clone(),
                        file: k,
                        offset: p * LABEL_SIZE,
                        index: first_index + p,
                        expected: *e,
                        found: *fd,
                    };
                    progress(CheckProgress::Mismatch(m.clone()));
                    report.mismatches_total += 1;
                    if report.mismatches.len() < MAX_REPORTED_MISMATCHES {
                        report.mismatches.push(m);
                    }
                }
            }
            report.labels_checked += chunk.len() as u64;
            progress(CheckProgress::Labels {
                checked: report.labels_checked,
                planned,
            });
        }
    }

    report.nonce = check_nonce(&md, scrypt_n)?;
    progress(CheckProgress::Nonce(report.nonce.clone()));
    Ok(report)
}
