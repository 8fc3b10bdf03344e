//! The label-backend trait: every device that computes labels (CPU today, CUDA in
//! `gpu-kernels`) implements it, so callers never know which one runs.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rayon::prelude::*;

pub use crate::scrypt::batch::LabelPath;
use crate::scrypt::batch::{labels32, LabelScratch};

/// An index whose full 32-byte scrypt output lies below the VRF threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VrfCandidate {
    pub index: u64,
    pub label32: [u8; 32],
}

impl VrfCandidate {
    /// The better of two candidates: the smaller label32, the lower index on a tie (spec §3.3).
    pub fn better(self, other: Self) -> Self {
        match self.label32.cmp(&other.label32) {
            std::cmp::Ordering::Less => self,
            std::cmp::Ordering::Greater => other,
            std::cmp::Ordering::Equal => {
                if self.index <= other.index {
                    self
                } else {
                    other
                }
            }
        }
    }
}

/// The best candidate of a list, if any.
pub fn best_candidate(c: &[VrfCandidate]) -> Option<VrfCandidate> {
    c.iter().copied().reduce(VrfCandidate::better)
}

/// What to compute: labels `[start, start + out.len() / 16)` of one commitment.
#[derive(Debug, Clone, Copy)]
pub struct LabelRequest<'a> {
    pub commitment: &'a [u8; 32],
    pub scrypt_n: usize,
    pub start: u64,
    /// Report indices whose label32 is strictly below this threshold.
    pub vrf_threshold: Option<&'a [u8; 32]>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("output buffer of {0} bytes is not a multiple of 16")]
    BadBuffer(usize),
    #[error("label range starting at {start} with {count} labels overflows u64")]
    RangeOverflow { start: u64, count: u64 },
    #[error("scrypt N = {0} is not a power of two >= 2")]
    BadN(usize),
    #[error("device {device} failed: {message}")]
    Device { device: String, message: String },
}

/// A device that computes labels.
pub trait LabelBackend: Send + Sync {
    /// A short human-readable name ("cpu (2 threads, avx2)", "cuda:0 NVIDIA H100").
    fn name(&self) -> String;
    /// A good number of labels per call for this device (callers may use any size).
    fn preferred_batch(&self) -> usize;
    /// Compute the 16 stored bytes of each label of the range into `out` (16 bytes each) and
    /// return the VRF candidates of the range, in ascending index order.
    fn compute(&self, req: &LabelRequest<'_>, out: &mut [u8]) -> Result<Vec<VrfCandidate>, BackendError>;
}

/// Check a request against its buffer; shared by every backend.
pub fn check_request(req: &LabelRequest<'_>, out: &[u8]) -> Result<u64, BackendError> {
    if !out.len().is_multiple_of(16) {
        return Err(BackendError::BadBuffer(out.len()));
    }
    if req.scrypt_n < 2 || !req.scrypt_n.is_power_of_two() {
        return Err(BackendError::BadN(req.scrypt_n));
    }
    let count = (out.len() / 16) as u64;
    // The last index computed is start + count - 1; it must fit in u64.
    if count > 0 && req.start.checked_add(count - 1).is_none() {
        return Err(BackendError::RangeOverflow {
            start: req.start,
            count,
        });
    }
    Ok(count)
}

/// Labels on the CPU over a rayon thread pool, with the fastest (or a chosen) [`LabelPath`].
///
/// Work is split into batches of [`LabelPath::lanes`] labels (16 for AVX2), one rayon task per
/// batch; each pool thread reuses its own ROMix scratch (`lanes × N × 128` bytes: 16 MiB at
/// N = 8192 for AVX2), kept until the backend is dropped.
pub struct CpuBackend {
    pool: rayon::ThreadPool,
    threads: usize,
    path: LabelPath,
    scratch: Vec<Mutex<LabelScratch>>,
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBackend")
            .field("threads", &self.threads)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl CpuBackend {
    /// `threads = 0` uses every logical CPU. Uses the fastest path of this CPU.
    pub fn new(threads: usize) -> Result<Self, BackendError> {
        Self::with_path(threads, LabelPath::Auto)
    }

    /// Like [`CpuBackend::new`] with a chosen path; fails if the CPU cannot run it.
    pub fn with_path(threads: usize, path: LabelPath) -> Result<Self, BackendError> {
        let resolved = path.resolve().ok_or_else(|| BackendError::Device {
            device: "cpu".into(),
            message: format!("label path {path} is not available on this CPU"),
        })?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("post-labels-{i}"))
            .build()
            .map_err(|e| BackendError::Device {
                device: "cpu".into(),
                message: e.to_string(),
            })?;
        let threads = pool.current_num_threads();
        let scratch = (0..threads).map(|_| Mutex::new(LabelScratch::new())).collect();
        Ok(Self {
            pool,
            threads,
            path: resolved,
            scratch,
        })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The path in use (never `Auto`).
    pub fn path(&self) -> LabelPath {
        self.path
    }

    /// One batch of at most `lanes` labels starting at `start`, on the current pool thread.
    fn batch(&self, req: &LabelRequest<'_>, start: u64, dst: &mut [u8]) -> Vec<VrfCandidate> {
        let mut l32 = [[0u8; 32]; MAX_LANES];
        let l32 = &mut l32[..dst.len() / 16];
        let mut run = |s: &mut LabelScratch| labels32(self.path, req.commitment, start, req.scrypt_n, s, l32);
        match rayon::current_thread_index().and_then(|i| self.scratch.get(i)) {
            Some(m) => run(&mut m.lock().unwrap_or_else(|e| e.into_inner())),
            None => run(&mut LabelScratch::new()),
        }
        let mut cands = Vec::new();
        for (k, (l, d)) in l32.iter().zip(dst.chunks_exact_mut(16)).enumerate() {
            d.copy_from_slice(&l[..16]);
            if let Some(t) = req.vrf_threshold {
                if l < t {
                    cands.push(VrfCandidate {
                        index: start + k as u64,
                        label32: *l,
                    });
                }
            }
        }
        cands
    }
}

/// The most labels any path computes in one batch.
const MAX_LANES: usize = crate::scrypt::batch::AVX2_LANES;

impl LabelBackend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu ({} threads, {})", self.threads, self.path)
    }

    fn preferred_batch(&self) -> usize {
        self.threads * self.path.lanes() * 4
    }

    fn compute(&self, req: &LabelRequest<'_>, out: &mut [u8]) -> Result<Vec<VrfCandidate>, BackendError> {
        check_request(req, out)?;
        let lanes = self.path.lanes().min(MAX_LANES);
        let per_batch: Vec<Vec<VrfCandidate>> = self.pool.install(|| {
            out.par_chunks_mut(16 * lanes)
                .with_max_len(1)
                .enumerate()
                .map(|(b, dst)| self.batch(req, req.start + (b * lanes) as u64, dst))
                .collect()
        });
        let mut cands: Vec<VrfCandidate> = per_batch.into_iter().flatten().collect();
        cands.sort_by_key(|c| c.index);
        Ok(cands)
    }
}

/// Labels per second of a [`CpuBackend`] with `threads` threads and `path` at N = 8192 (the
/// mainnet value), measured for about `duration` after a warm-up call. For `post bench`.
pub fn bench_labels(threads: usize, path: LabelPath, duration: Duration) -> Result<f64, BackendError> {
    bench_labels_n(threads, path, 8192, duration)
}

/// [`bench_labels`] at any scrypt N.
pub fn bench_labels_n(
    threads: usize,
    path: LabelPath,
    scrypt_n: usize,
    duration: Duration,
) -> Result<f64, BackendError> {
    let backend = CpuBackend::with_path(threads, path)?;
    // Four batches per thread per call keeps calls short (about 25 ms with AVX2 at N = 8192)
    // while evening out the threads; the warm-up call allocates the scratch.
    let mut out = vec![0u8; 16 * 4 * backend.threads() * backend.path().lanes()];
    let commitment = [0x5a; 32];
    let mut req = LabelRequest {
        commitment: &commitment,
        scrypt_n,
        start: 0,
        vrf_threshold: None,
    };
    backend.compute(&req, &mut out)?;
    let labels_per_call = (out.len() / 16) as u64;
    let t = Instant::now();
    let mut done = 0u64;
    loop {
        req.start = done;
        backend.compute(&req, &mut out)?;
        done += labels_per_call;
        if t.elapsed() >= duration {
            break;
        }
    }
    Ok(done as f64 / t.elapsed().as_secs_f64())
}
