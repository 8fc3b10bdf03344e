//! The label-backend trait: every device that computes labels (CPU today, CUDA in
//! `gpu-kernels`) implements it, so callers never know which one runs.

use rayon::prelude::*;

use crate::scrypt::{label32_with_scratch, portable::Chunk};

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
    if out.len() % 16 != 0 {
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

/// Labels on the CPU over a rayon thread pool.
pub struct CpuBackend {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl CpuBackend {
    /// `threads = 0` uses every logical CPU.
    pub fn new(threads: usize) -> Result<Self, BackendError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("post-labels-{i}"))
            .build()
            .map_err(|e| BackendError::Device {
                device: "cpu".into(),
                message: e.to_string(),
            })?;
        let threads = pool.current_num_threads();
        Ok(Self { pool, threads })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl LabelBackend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu ({} threads)", self.threads)
    }

    fn preferred_batch(&self) -> usize {
        self.threads * 64
    }

    fn compute(&self, req: &LabelRequest<'_>, out: &mut [u8]) -> Result<Vec<VrfCandidate>, BackendError> {
        check_request(req, out)?;
        let mut cands: Vec<VrfCandidate> = self.pool.install(|| {
            out.par_chunks_mut(16)
                .enumerate()
                .map_init(Vec::<Chunk>::new, |scratch, (i, dst)| {
                    let index = req.start + i as u64;
                    let l = label32_with_scratch(req.commitment, index, req.scrypt_n, scratch);
                    dst.copy_from_slice(&l[..16]);
                    match req.vrf_threshold {
                        Some(t) if l < *t => Some(VrfCandidate { index, label32: l }),
                        _ => None,
                    }
                })
                .flatten()
                .collect()
        });
        cands.sort_by_key(|c| c.index);
        Ok(cands)
    }
}
