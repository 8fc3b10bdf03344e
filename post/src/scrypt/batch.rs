//! Many labels at once: the PBKDF2 steps stay scalar (about 10 Keccak permutations per label),
//! ROMix (32768 ChaCha cores per label at N = 8192) runs several labels side by side.
//!
//! [`LabelPath`] names the implementation; [`labels32`] computes a range of labels with one of
//! them into caller-provided scratch. Every path gives exactly [`super::label32`].

use std::fmt;
use std::str::FromStr;

use super::keccak::HmacKeccak512;
use super::portable::{bytes_to_chunk, chunk_to_bytes, AlignedChunk, Chunk};
use super::{label32_with_scratch, lanes, password};

/// Labels per batch of the portable multi-lane path (one 128-bit vector of `u32` where the
/// compiler vectorises it).
pub const PORTABLE_LANES: usize = 4;

/// Which implementation computes labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LabelPath {
    /// The fastest path for this CPU: [`LabelPath::Avx2`] if available; otherwise
    /// [`LabelPath::Scalar`] on x86_64 (where LLVM does not vectorise the portable code and it
    /// measured ~13% slower than scalar) and [`LabelPath::Portable`] on other targets.
    #[default]
    Auto,
    /// The scalar reference ([`super::label32`]), one label at a time.
    Scalar,
    /// Portable multi-lane code ([`PORTABLE_LANES`] labels per batch, word-sliced, no `unsafe`),
    /// any CPU. Meant for the compiler to vectorise; on x86_64 LLVM keeps the 32-bit rotations
    /// scalar, so there it runs at about the speed of [`LabelPath::Scalar`].
    Portable,
    /// Hand-written AVX2 (and a little inline assembly), [`AVX2_LANES`] labels per batch;
    /// x86_64 with AVX2 only.
    Avx2,
}

impl LabelPath {
    /// Every path, in the order `Auto, Scalar, Portable, Avx2`.
    pub const ALL: [LabelPath; 4] = [
        LabelPath::Auto,
        LabelPath::Scalar,
        LabelPath::Portable,
        LabelPath::Avx2,
    ];

    /// Whether this CPU can run the path (`Auto` always can).
    pub fn is_available(self) -> bool {
        match self {
            LabelPath::Auto | LabelPath::Scalar | LabelPath::Portable => true,
            LabelPath::Avx2 => avx2_available(),
        }
    }

    /// The concrete path this one runs as: `Auto` becomes the fastest available path; `None`
    /// when the path is not available on this CPU.
    pub fn resolve(self) -> Option<LabelPath> {
        match self {
            LabelPath::Auto if avx2_available() => Some(LabelPath::Avx2),
            LabelPath::Auto if cfg!(target_arch = "x86_64") => Some(LabelPath::Scalar),
            LabelPath::Auto => Some(LabelPath::Portable),
            p if p.is_available() => Some(p),
            _ => None,
        }
    }

    /// Labels computed together in one batch (after resolving `Auto`).
    pub fn lanes(self) -> usize {
        match self.resolve().unwrap_or(LabelPath::Portable) {
            LabelPath::Avx2 => AVX2_LANES,
            LabelPath::Portable => PORTABLE_LANES,
            _ => 1,
        }
    }

    /// The lower-case name: `auto`, `scalar`, `portable` or `avx2`.
    pub fn as_str(self) -> &'static str {
        match self {
            LabelPath::Auto => "auto",
            LabelPath::Scalar => "scalar",
            LabelPath::Portable => "portable",
            LabelPath::Avx2 => "avx2",
        }
    }
}

impl fmt::Display for LabelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of `auto`, `scalar`, `portable`, `avx2`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown label path {0:?} (expected auto, scalar, portable or avx2)")]
pub struct UnknownLabelPath(pub String);

impl FromStr for LabelPath {
    type Err = UnknownLabelPath;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelPath::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownLabelPath(s.to_string()))
    }
}

/// Labels per batch of the AVX2 path: two word-sliced groups of 8 (see `avx2::romix16`).
pub const AVX2_LANES: usize = 16;

#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    super::avx2::available()
}
#[cfg(not(target_arch = "x86_64"))]
fn avx2_available() -> bool {
    false
}

/// Reusable scratch for [`labels32`]: ROMix's `V` for a whole batch (`lanes × N × 128` bytes,
/// 16 MiB for the 16 AVX2 lanes at N = 8192). Keep one per thread; it grows on demand and is
/// never shrunk.
#[derive(Debug, Default)]
pub struct LabelScratch {
    v: Vec<AlignedChunk>,
    scalar: Vec<Chunk>,
}

impl LabelScratch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held.
    pub fn capacity_bytes(&self) -> usize {
        (self.v.capacity() + self.scalar.capacity()) * std::mem::size_of::<Chunk>()
    }

    fn v(&mut self, chunks: usize) -> &mut [AlignedChunk] {
        if self.v.len() < chunks {
            self.v.resize(chunks, AlignedChunk::default());
        }
        &mut self.v[..chunks]
    }
}

/// An AVX2 batch shorter than this many labels is computed one by one with the scalar code: an
/// 8-lane group costs about as much as 1.7 scalar labels (N = 8192, AMD Zen 3), so only a lone
/// label is cheaper alone. Partial portable batches always go scalar (a portable batch costs a
/// little more than its labels done one by one on x86_64).
const AVX2_MIN_BATCH: usize = 2;

/// Compute `label32` of indices `start, start + 1, ..` into `out` (one entry per label) with
/// `path` (`Auto` is resolved here). `n` must be a power of two >= 2.
///
/// # Panics
/// If the path is not available on this CPU, `n` is not a power of two >= 2, or
/// `start + out.len() - 1` overflows u64.
pub fn labels32(
    path: LabelPath,
    commitment: &[u8; 32],
    start: u64,
    n: usize,
    scratch: &mut LabelScratch,
    out: &mut [[u8; 32]],
) {
    assert!(
        n >= 2 && n.is_power_of_two(),
        "scrypt N = {n} is not a power of two >= 2"
    );
    if let Some(last) = out.len().checked_sub(1) {
        assert!(
            start.checked_add(last as u64).is_some(),
            "label range overflows u64"
        );
    }
    let path = match path.resolve() {
        Some(p) => p,
        None => panic!("label path {path} is not available on this CPU"),
    };
    let lanes = path.lanes();
    let min_batch = if path == LabelPath::Avx2 {
        AVX2_MIN_BATCH
    } else {
        lanes
    };
    let mut index = start;
    for chunk in out.chunks_mut(lanes) {
        if path == LabelPath::Scalar || chunk.len() < min_batch {
            for (k, o) in chunk.iter_mut().enumerate() {
                *o = label32_with_scratch(commitment, index + k as u64, n, &mut scratch.scalar);
            }
        } else {
            match path {
                // Up to 8 labels take one group, more take both (the spare lanes are wasted).
                #[cfg(target_arch = "x86_64")]
                LabelPath::Avx2 if chunk.len() <= super::avx2::LANES => {
                    let v = scratch.v(n * super::avx2::LANES);
                    batch(commitment, index, n, chunk, |x| super::avx2::romix8(x, n, v));
                }
                #[cfg(target_arch = "x86_64")]
                LabelPath::Avx2 => {
                    let v = scratch.v(n * 2 * super::avx2::LANES);
                    batch(commitment, index, n, chunk, |x| super::avx2::romix16(x, n, v));
                }
                _ => {
                    let v = scratch.v(n * PORTABLE_LANES);
                    batch::<PORTABLE_LANES>(commitment, index, n, chunk, |x| lanes::romix_lanes(x, n, v));
                }
            }
        }
        index = index.wrapping_add(chunk.len() as u64);
    }
}

/// One batch of up to `L` labels; lanes past `out.len()` compute throw-away labels.
fn batch<const L: usize>(
    commitment: &[u8; 32],
    start: u64,
    n: usize,
    out: &mut [[u8; 32]],
    romix: impl FnOnce(&mut [Chunk; L]),
) {
    debug_assert!(out.len() <= L && n >= 2);
    let macs: [HmacKeccak512; L] =
        std::array::from_fn(|l| HmacKeccak512::new(&password(commitment, start.wrapping_add(l as u64))));
    let mut x: [Chunk; L] = std::array::from_fn(|l| {
        let mut b = [0u8; 128];
        macs[l].pbkdf2_1(&[], &mut b);
        bytes_to_chunk(&b)
    });
    romix(&mut x);
    for ((mac, x), o) in macs.iter().zip(x.iter()).zip(out.iter_mut()) {
        mac.pbkdf2_1(&chunk_to_bytes(x), o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrypt::label32;

    #[test]
    fn every_path_equals_reference() {
        let c = [7u8; 32];
        for path in LabelPath::ALL.into_iter().filter(|p| p.is_available()) {
            for (start, count) in [(0u64, 1usize), (3, 13), (u64::MAX - 9, 10)] {
                let mut out = vec![[0u8; 32]; count];
                let mut s = LabelScratch::new();
                labels32(path, &c, start, 16, &mut s, &mut out);
                for (k, o) in out.iter().enumerate() {
                    assert_eq!(*o, label32(&c, start + k as u64, 16), "{path} {start}+{k}");
                }
            }
        }
    }

    #[test]
    fn path_names_round_trip() {
        for p in LabelPath::ALL {
            assert_eq!(p.as_str().parse::<LabelPath>(), Ok(p));
        }
        assert!("sse".parse::<LabelPath>().is_err());
    }
}
