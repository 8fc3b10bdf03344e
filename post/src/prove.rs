//! The prover (spec/post.md §4).
//!
//! A pass tries `S` nonces (`S` a multiple of 16, 16..=4096), i.e. `S/16` nonce groups. For every
//! group of the pass the k2pow is solved **before** the data is read. The data is then read in
//! 1 MiB batches (a batch never spans two files; files are identified by the `k` of their
//! name) and every full 8-label chunk is encrypted with each group cipher; a byte `<= Dmsb`
//! makes the label a candidate for one nonce, settled by the lazy per-nonce cipher when it
//! equals `Dmsb`. The first nonce with K2 qualifying labels wins. A trailing partial chunk of
//! a file is never looked at (as in the reference).
//!
//! With one thread the scan is sequential (chunk order, then group order, then byte order), so
//! the proof equals the reference's. With more threads batches are handed out in file order to
//! a rayon pool and the winner is whichever nonce reaches K2 first. The emitted indices are
//! sorted ascending (a no-op for one thread, whose scan finds them in ascending order).

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Instant;

use aes::Block;

use crate::cipher::{GroupCipher, NonceCipher, CHUNK_LABELS, CHUNK_SIZE, NONCES_PER_GROUP};
use crate::data::{list_files, Layout, LayoutError, LABEL_SIZE};
use crate::difficulty::{proving_difficulty, scale_pow_difficulty, split_difficulty, DifficultyError};
use crate::metadata::{MetadataError, PostMetadata};
use crate::pow::{challenge8, PowError, PowSolver};
use crate::proof::{Proof, ProofConfig};

/// Bytes read per batch.
pub const BATCH_SIZE: usize = 1024 * 1024;
/// Most nonces in all passes together: nonce groups must fit in a u8.
pub const MAX_NONCES: u32 = 256 * NONCES_PER_GROUP;
/// Bytes of group-cipher output kept per sub-batch (keeps the scratch in L1/L2).
const SCRATCH_BUDGET: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    #[error("no PoST metadata (postdata_metadata.json) in {dir}")]
    MissingMetadata { dir: PathBuf },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("invalid data layout: {0}")]
    Layout(#[from] LayoutError),
    #[error("data file {k} ({path}) is missing")]
    MissingFile { k: u64, path: PathBuf },
    #[error("data file {k} is listed twice: {first} and {second}")]
    DuplicateFile { k: u64, first: PathBuf, second: PathBuf },
    #[error("data file {k} ({path}) has {got} bytes, expected {expected}")]
    WrongFileSize {
        k: u64,
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    #[error("cannot read data file {path} at offset {offset}: {source}")]
    Io {
        path: PathBuf,
        offset: u64,
        source: std::io::Error,
    },
    #[error("nonces per pass must be a multiple of 16 between 16 and {MAX_NONCES}, got {0}")]
    InvalidNonces(u32),
    #[error("first nonce of a pass must be a multiple of 16, got {0}")]
    UnalignedNonces(u32),
    #[error("K2 must be at least 1, got {0}")]
    InvalidK2(u32),
    #[error("one k2pow per nonce group is needed: {groups} groups, {pows} pows given")]
    PowCount { groups: usize, pows: usize },
    #[error(transparent)]
    Difficulty(#[from] DifficultyError),
    #[error("k2pow for nonce group {nonce_group} failed: {source}")]
    Pow { nonce_group: u32, source: PowError },
    #[error(
        "no proof within the {MAX_NONCES} nonces allowed (nonce groups must fit in a byte): \
         the next pass would start at nonce {next_nonce} with {per_pass} nonces"
    )]
    NoncesExhausted { next_nonce: u32, per_pass: u32 },
    #[error("proof generation was stopped (pass {pass})")]
    Stopped { pass: u32 },
    #[error("cannot build the proving thread pool: {0}")]
    ThreadPool(String),
}

/// Proving options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProveOptions {
    /// Nonces per pass `S`: a multiple of 16, 16..=4096.
    pub nonces: u32,
    /// Scan threads; 0 means all logical CPUs.
    pub threads: usize,
}

impl Default for ProveOptions {
    fn default() -> Self {
        Self {
            nonces: 16,
            threads: 1,
        }
    }
}

/// Progress reports of [`generate_proof`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProveProgress {
    /// The k2pow of `nonce_group` is being searched; `done` of `total` groups of the pass are
    /// solved.
    K2Pow {
        pass: u32,
        nonce_group: u32,
        done: u32,
        total: u32,
    },
    /// The data scan of a pass: `bytes_done` of `bytes_total` bytes scanned.
    Scan {
        pass: u32,
        nonces: (u32, u32),
        bytes_done: u64,
        bytes_total: u64,
    },
}

/// The ciphers and thresholds of one pass: scans batches of labels.
#[derive(Debug, Clone)]
pub struct Prover {
    first_nonce: u32,
    ciphers: Vec<GroupCipher>,
    lazy: Vec<NonceCipher>,
    dmsb: u8,
    dlsb: u64,
}

impl Prover {
    /// A pass over the nonces `first_nonce .. first_nonce + 16·pows.len()`; `pows[i]` is the k2pow
    /// of group `first_nonce/16 + i`; `difficulty` is D (spec §4.2).
    pub fn new(
        challenge: &[u8; 32],
        first_nonce: u32,
        pows: &[u64],
        difficulty: u64,
    ) -> Result<Self, ProveError> {
        if !first_nonce.is_multiple_of(NONCES_PER_GROUP) {
            return Err(ProveError::UnalignedNonces(first_nonce));
        }
        let first_group = first_nonce / NONCES_PER_GROUP;
        let groups = u32::try_from(pows.len()).unwrap_or(u32::MAX);
        if pows.is_empty() || u64::from(first_group) + u64::from(groups) > 256 {
            return Err(ProveError::InvalidNonces(groups.saturating_mul(NONCES_PER_GROUP)));
        }
        let ciphers: Vec<GroupCipher> = pows
            .iter()
            .zip(first_group..)
            .map(|(&pow, g)| GroupCipher::new(challenge, g, pow))
            .collect();
        let lazy = ciphers
            .iter()
            .flat_map(|c| {
                let base = c.nonce_group() * NONCES_PER_GROUP;
                (base..base + NONCES_PER_GROUP).map(move |n| NonceCipher::new(challenge, n, c.pow()))
            })
            .collect();
        let (dmsb, dlsb) = split_difficulty(difficulty);
        Ok(Self {
            first_nonce,
            ciphers,
            lazy,
            dmsb,
            dlsb,
        })
    }

    /// The nonces of this pass.
    pub fn nonces(&self) -> Range<u32> {
        self.first_nonce..self.first_nonce + self.ciphers.len() as u32 * NONCES_PER_GROUP
    }

    /// The k2pow of `nonce`'s group, if the nonce belongs to this pass.
    pub fn pow_of(&self, nonce: u32) -> Option<u64> {
        let i = nonce.checked_sub(self.first_nonce)? / NONCES_PER_GROUP;
        self.ciphers.get(i as usize).map(GroupCipher::pow)
    }

    /// Scan `batch` (labels starting at index `base_index`; a trailing partial chunk is ignored)
    /// in the reference order: chunk, then group, then byte. `found(nonce, index)` is called for
    /// every qualifying label; when it returns `true` the scan stops and this returns `true`.
    pub fn scan_batch(&self, batch: &[u8], base_index: u64, found: &mut dyn FnMut(u32, u64) -> bool) -> bool {
        let mut scratch = Scratch::new(self.ciphers.len());
        let mut index = base_index;
        for part in batch.chunks(scratch.sub * CHUNK_SIZE) {
            let chunks = part.len() / CHUNK_SIZE;
            if chunks == 0 {
                break;
            }
            if self.scan_part(&part[..chunks * CHUNK_SIZE], index, &mut scratch, found) {
                return true;
            }
            index += (chunks * CHUNK_LABELS) as u64;
        }
        false
    }

    /// Scan up to `scratch.sub` whole chunks in three steps: (1) encrypt them with every group
    /// cipher and list, without branches, the (chunk, group) pairs whose minimum byte is
    /// `<= Dmsb`; (2) list their candidate bytes in order and settle the ones equal to Dmsb
    /// with the lazy ciphers in one tight loop (independent AES calls overlap in the CPU);
    /// (3) report the qualifying ones in order.
    fn scan_part(
        &self,
        part: &[u8],
        index: u64,
        scratch: &mut Scratch,
        found: &mut dyn FnMut(u32, u64) -> bool,
    ) -> bool {
        let chunks = part.len() / CHUNK_SIZE;
        let nblocks = chunks * CHUNK_LABELS;
        let stride = scratch.sub * CHUNK_LABELS;
        let groups = self.ciphers.len();
        let Scratch {
            input,
            out,
            hot,
            cands,
            ..
        } = scratch;
        for (b, bytes) in input.iter_mut().zip(part.chunks_exact(16)) {
            b.copy_from_slice(bytes);
        }
        for (cipher, o) in self.ciphers.iter().zip(out.chunks_exact_mut(stride)) {
            cipher.encrypt_blocks_b2b(&input[..nblocks], &mut o[..nblocks]);
        }
        // (1) Hot (chunk, group) pairs, in chunk-then-group order, with their bytewise minimum.
        // `hot` holds `sub × groups` entries; only the first `nhot` are meaningful.
        let mut nhot = 0;
        let dmsb = self.dmsb;
        for c in 0..chunks {
            for g in 0..groups {
                let enc = &out[g * stride + c * CHUNK_LABELS..g * stride + (c + 1) * CHUNK_LABELS];
                let m = chunk_min(enc);
                hot[nhot] = (((c as u32) << 16) | g as u32, m);
                nhot += usize::from(any_le(&m, dmsb));
            }
        }
        if nhot == 0 {
            return false;
        }
        // (2) Candidate bytes in (chunk, group, block, byte) order: the byte columns whose
        // minimum is <= Dmsb (usually one) are checked in each of the 8 blocks.
        cands.clear();
        for &(cg, m) in &hot[..nhot] {
            let (c, g) = ((cg >> 16) as usize, (cg & 0xffff) as usize);
            let base = g * stride + c * CHUNK_LABELS;
            let enc = &out[base..base + CHUNK_LABELS];
            let mut cols = le_mask(&Block::from(m), dmsb);
            let mut bits: u128 = 0;
            while cols != 0 {
                let j = cols.trailing_zeros() as usize;
                cols &= cols - 1;
                for (b, blk) in enc.iter().enumerate() {
                    bits |= u128::from(blk[j] <= dmsb) << (16 * b + j);
                }
            }
            while bits != 0 {
                let t = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let (b, j) = (t / 16, t % 16);
                cands.push(Candidate {
                    block: (c * CHUNK_LABELS + b) as u32,
                    slot: (g * NONCES_PER_GROUP as usize + j) as u32,
                    ok: enc[b][j] < dmsb,
                });
            }
        }
        for cand in cands.iter_mut().filter(|c| !c.ok) {
            let label: [u8; 16] = input[cand.block as usize].into();
            cand.ok = self.lazy[cand.slot as usize].lsb(&label) < self.dlsb;
        }
        // (3) Report.
        for cand in cands.iter().filter(|c| c.ok) {
            if found(self.first_nonce + cand.slot, index + u64::from(cand.block)) {
                return true;
            }
        }
        false
    }
}

/// One candidate label for one nonce.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// Block (label) number within the part.
    block: u32,
    /// Nonce offset within the pass (group·16 + byte).
    slot: u32,
    /// Qualifies (msb < Dmsb, or settled by the lazy cipher).
    ok: bool,
}

/// Per-batch scratch buffers.
struct Scratch {
    /// Chunks per part.
    sub: usize,
    input: Vec<Block>,
    out: Vec<Block>,
    hot: Vec<(u32, [u8; 16])>,
    cands: Vec<Candidate>,
}

impl Scratch {
    fn new(groups: usize) -> Self {
        let sub = (SCRATCH_BUDGET / (groups * CHUNK_SIZE)).clamp(1, 32);
        Self {
            sub,
            input: vec![Block::default(); sub * CHUNK_LABELS],
            out: vec![Block::default(); groups * sub * CHUNK_LABELS],
            hot: vec![(0, [0; 16]); sub * groups],
            cands: Vec::new(),
        }
    }
}

/// Bytewise minimum of the blocks of one chunk.
#[inline(always)]
fn chunk_min(enc: &[Block]) -> [u8; 16] {
    let mut m = [0xffu8; 16];
    for blk in enc {
        for (a, &b) in m.iter_mut().zip(blk.iter()) {
            *a = (*a).min(b);
        }
    }
    m
}

/// Whether some byte of the 16 is `<= d` (compiles to pminub/pcmpeqb/pmovmskb).
#[inline(always)]
fn any_le(m: &[u8], d: u8) -> bool {
    let mut a = [0u8; 16];
    a.copy_from_slice(&m[..16]);
    a.iter().any(|&x| x <= d)
}

/// Bit `j` set when byte `j` of `blk` is `<= d`.
#[inline(always)]
fn le_mask(blk: &Block, d: u8) -> u32 {
    if d >= 0x80 {
        return blk
            .iter()
            .enumerate()
            .fold(0, |m, (j, &x)| m | (u32::from(x <= d) << j));
    }
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&blk[..8]);
    hi.copy_from_slice(&blk[8..]);
    le_mask64(u64::from_le_bytes(lo), d) | (le_mask64(u64::from_le_bytes(hi), d) << 8)
}

/// For `d < 128`: bit `j` set when byte `j` of `x` is `<= d`. Exact per byte: the 7-bit sums
/// never carry into the next byte.
#[inline(always)]
fn le_mask64(x: u64, d: u8) -> u32 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let bias = u64::from(0x7f - d) * 0x0101_0101_0101_0101;
    // High bit of each byte: set when the byte is > d.
    let gt = (((x & LOW7) + bias) | x) & HIGH;
    let le = !gt & HIGH;
    // Gather the 8 high bits into one byte.
    ((le >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
}

/// Indices found so far per nonce of the pass, and the winner once there is one.
type Found = (Vec<Vec<u64>>, Option<(u32, Vec<u64>)>);

/// Collects qualifying indices per nonce until one nonce has K2.
struct Collector {
    first_nonce: u32,
    k2: usize,
    state: Mutex<Found>,
    done: AtomicBool,
}

impl Collector {
    fn new(nonces: Range<u32>, k2: u32) -> Self {
        Self {
            first_nonce: nonces.start,
            k2: k2 as usize,
            state: Mutex::new((vec![Vec::new(); nonces.len()], None)),
            done: AtomicBool::new(false),
        }
    }

    /// Record `index` for `nonce`; `true` once some nonce has K2 indices.
    fn push(&self, nonce: u32, index: u64) -> bool {
        let Ok(mut st) = self.state.lock() else {
            return true;
        };
        if st.1.is_some() {
            return true;
        }
        let Some(list) = st.0.get_mut(nonce.wrapping_sub(self.first_nonce) as usize) else {
            return false;
        };
        list.push(index);
        if list.len() >= self.k2 {
            let winner = std::mem::take(list);
            st.1 = Some((nonce, winner));
            self.done.store(true, Ordering::Release);
            return true;
        }
        false
    }

    fn winner(self) -> Option<(u32, Vec<u64>)> {
        self.state.into_inner().ok().and_then(|s| s.1)
    }
}

/// One validated data file.
#[derive(Debug)]
struct DataFile {
    path: PathBuf,
    file: File,
    first_label: u64,
    size: u64,
}

/// A validated PoST data directory: metadata, layout and every file `0..numFiles` with its
/// expected size.
#[derive(Debug)]
pub struct PostData {
    pub metadata: PostMetadata,
    pub layout: Layout,
    files: Vec<DataFile>,
}

impl PostData {
    /// Load the metadata and check that every file `postdata_k.bin`, `k < numFiles`, exists with
    /// the size the layout gives it. Files with larger `k` are ignored.
    pub fn open(dir: &Path) -> Result<Self, ProveError> {
        let metadata = PostMetadata::load(dir)?.ok_or_else(|| ProveError::MissingMetadata {
            dir: dir.to_path_buf(),
        })?;
        let layout = Layout::new(
            metadata.num_units,
            metadata.labels_per_unit,
            metadata.max_file_size,
        )?;
        let listed = list_files(dir)?;
        let mut files = Vec::new();
        for k in 0..layout.num_files() {
            let path = listed.get(&k).cloned().ok_or_else(|| ProveError::MissingFile {
                k,
                path: dir.join(crate::data::file_name(k)),
            })?;
            let io = |source| ProveError::Io {
                path: path.clone(),
                offset: 0,
                source,
            };
            let file = File::open(&path).map_err(io)?;
            let got = file.metadata().map_err(io)?.len();
            let expected = layout.file_size(k);
            if got != expected {
                return Err(ProveError::WrongFileSize {
                    k,
                    path,
                    expected,
                    got,
                });
            }
            files.push(DataFile {
                path,
                file,
                first_label: layout.file_labels(k).start,
                size: expected,
            });
        }
        Ok(Self {
            metadata,
            layout,
            files,
        })
    }

    pub fn total_bytes(&self) -> u64 {
        self.layout.total_bytes()
    }

    /// 1 MiB batches in file order: (file, byte offset, length).
    fn batches(&self) -> Vec<(usize, u64, usize)> {
        batches_of(self.files.iter().map(|f| f.size))
    }
}

/// [`BATCH_SIZE`] batches of files of the given sizes, in file order: (file position, byte
/// offset, length). Shared by this prover and `crate::reader`, so both scan the same batches.
pub(crate) fn batches_of(sizes: impl IntoIterator<Item = u64>) -> Vec<(usize, u64, usize)> {
    let mut out = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let mut off = 0;
        while off < size {
            let len = (size - off).min(BATCH_SIZE as u64) as usize;
            out.push((i, off, len));
            off += len as u64;
        }
    }
    out
}

#[cfg(unix)]
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
pub(crate) fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(crate) fn effective_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
}

fn build_pool(threads: usize) -> Result<rayon::ThreadPool, ProveError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("post-prove-{i}"))
        .build()
        .map_err(|e| ProveError::ThreadPool(e.to_string()))
}

/// Scan the whole data once with `prover`. `Ok(None)`: no nonce reached K2.
///
/// Batches are read in file order. With one scanning thread a separate reader thread reads
/// ahead into a small pool of buffers (reading overlaps scanning; batches are still scanned
/// strictly in order). With several threads each worker claims the next batch and reads it
/// itself (positional reads, so nearby batches are read concurrently).
#[allow(clippy::too_many_arguments)]
fn scan_data(
    data: &PostData,
    prover: &Prover,
    k2: u32,
    pool: &rayon::ThreadPool,
    threads: usize,
    pass: u32,
    progress: &(dyn Fn(ProveProgress) + Sync),
    stop: &AtomicBool,
) -> Result<Option<(u32, Vec<u64>)>, ProveError> {
    let batches = data.batches();
    let collector = Collector::new(prover.nonces(), k2);
    let bytes_done = AtomicU64::new(0);
    let bytes_total = data.total_bytes();
    let nonces = (prover.nonces().start, prover.nonces().end);
    let failed = AtomicBool::new(false);
    let read_error: Mutex<Option<ProveError>> = Mutex::new(None);
    let halt = || {
        stop.load(Ordering::Relaxed)
            || collector.done.load(Ordering::Acquire)
            || failed.load(Ordering::Relaxed)
    };
    // Read batch `i` into `buf`; false (and the error recorded) on failure.
    let read = |i: usize, buf: &mut [u8]| -> bool {
        let (f, offset, len) = batches[i];
        let file = &data.files[f];
        match read_at(&file.file, &mut buf[..len], offset) {
            Ok(()) => true,
            Err(source) => {
                failed.store(true, Ordering::Relaxed);
                if let Ok(mut e) = read_error.lock() {
                    e.get_or_insert(ProveError::Io {
                        path: file.path.clone(),
                        offset,
                        source,
                    });
                }
                false
            }
        }
    };
    // Scan batch `i` from `buf`; true when the pass is won.
    let scan = |i: usize, buf: &[u8]| -> bool {
        let (f, offset, len) = batches[i];
        let base = data.files[f].first_label + offset / LABEL_SIZE;
        let hit = prover.scan_batch(&buf[..len], base, &mut |n, idx| collector.push(n, idx));
        let done = bytes_done.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
        progress(ProveProgress::Scan {
            pass,
            nonces,
            bytes_done: done,
            bytes_total,
        });
        hit
    };
    progress(ProveProgress::Scan {
        pass,
        nonces,
        bytes_done: 0,
        bytes_total,
    });
    if threads <= 1 {
        scan_prefetched(batches.len(), &halt, &read, &scan);
    } else {
        let next = AtomicUsize::new(0);
        let worker = || {
            let mut buf = vec![0u8; BATCH_SIZE];
            while !halt() {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= batches.len() || !read(i, &mut buf) || scan(i, &buf) {
                    return;
                }
            }
        };
        pool.scope(|ps| {
            for _ in 0..threads {
                ps.spawn(|_| worker());
            }
        });
    }
    if let Some(e) = read_error.into_inner().ok().flatten() {
        return Err(e);
    }
    let winner = collector.winner();
    if winner.is_none() && stop.load(Ordering::Relaxed) {
        return Err(ProveError::Stopped { pass });
    }
    Ok(winner)
}

/// One reader thread reads batches `0..count` in order into a pool of buffers; the calling
/// thread scans them in the same order.
fn scan_prefetched(
    count: usize,
    halt: &(dyn Fn() -> bool + Sync),
    read: &(dyn Fn(usize, &mut [u8]) -> bool + Sync),
    scan: &(dyn Fn(usize, &[u8]) -> bool + Sync),
) {
    const DEPTH: usize = 3;
    let (full_tx, full_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(DEPTH);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        // The reader owns `full_tx` and `free_rx`: when it stops, `full_rx.recv` fails once the
        // queue is drained; when the scanner stops (dropping `full_rx` and `free_tx`), the
        // reader's `send`/`recv` fail.
        s.spawn(move || {
            let mut allocated = 0;
            for i in 0..count {
                if halt() {
                    return;
                }
                let mut buf = match free_rx.try_recv() {
                    Ok(b) => b,
                    Err(_) if allocated < DEPTH + 2 => {
                        allocated += 1;
                        vec![0u8; BATCH_SIZE]
                    }
                    Err(_) => match free_rx.recv() {
                        Ok(b) => b,
                        Err(_) => return,
                    },
                };
                if !read(i, &mut buf) || full_tx.send((i, buf)).is_err() {
                    return;
                }
            }
        });
        let (full_rx, free_tx) = (full_rx, free_tx);
        while let Ok((i, buf)) = full_rx.recv() {
            if halt() || scan(i, &buf) {
                break;
            }
            let _ = free_tx.send(buf);
        }
    });
}

pub(crate) fn check_options(cfg: &ProofConfig, nonces: u32) -> Result<(), ProveError> {
    if nonces == 0 || !nonces.is_multiple_of(NONCES_PER_GROUP) || nonces > MAX_NONCES {
        return Err(ProveError::InvalidNonces(nonces));
    }
    if cfg.k2 == 0 {
        return Err(ProveError::InvalidK2(cfg.k2));
    }
    Ok(())
}

pub(crate) fn finish(nonce: u32, mut indices: Vec<u64>, num_labels: u64, prover: &Prover) -> Proof {
    indices.sort_unstable();
    // The winning nonce comes from this prover's own nonce range.
    let pow = prover.pow_of(nonce).unwrap_or_default();
    Proof::new(nonce, &indices, num_labels, pow)
}

/// Generate a proof for `challenge` over the data in `datadir` (spec §4).
///
/// `pow` solves the k2pow of every nonce group of a pass before that pass's scan. `progress` is
/// called from the scanning threads. `stop` is checked between k2pow groups and between batches
/// (and passed to the solver).
pub fn generate_proof(
    datadir: &Path,
    challenge: &[u8; 32],
    cfg: &ProofConfig,
    opts: &ProveOptions,
    pow: &dyn PowSolver,
    progress: &(dyn Fn(ProveProgress) + Sync),
    stop: &AtomicBool,
) -> Result<Proof, ProveError> {
    check_options(cfg, opts.nonces)?;
    let data = PostData::open(datadir)?;
    let meta = &data.metadata;
    let num_labels = data.layout.num_labels;
    let difficulty = proving_difficulty(cfg.k1, num_labels)?;
    let scaled = scale_pow_difficulty(&cfg.pow_difficulty, meta.num_units)?;
    let threads = effective_threads(opts.threads);
    let pool = build_pool(threads)?;
    let groups_per_pass = opts.nonces / NONCES_PER_GROUP;
    let c8 = challenge8(challenge);
    for pass in 0u32.. {
        let first_nonce = pass * opts.nonces;
        let first_group = first_nonce / NONCES_PER_GROUP;
        if first_group + groups_per_pass > 256 {
            return Err(ProveError::NoncesExhausted {
                next_nonce: first_nonce,
                per_pass: opts.nonces,
            });
        }
        let mut pows = Vec::with_capacity(groups_per_pass as usize);
        for (done, g) in (first_group..first_group + groups_per_pass).enumerate() {
            if stop.load(Ordering::Relaxed) {
                return Err(ProveError::Stopped { pass });
            }
            progress(ProveProgress::K2Pow {
                pass,
                nonce_group: g,
                done: done as u32,
                total: groups_per_pass,
            });
            // g < 256 was checked above.
            let pow = pow
                .solve_with_stop(g as u8, &c8, &meta.node_id, &scaled, stop)
                .map_err(|source| match source {
                    PowError::Stopped { .. } => ProveError::Stopped { pass },
                    source => ProveError::Pow {
                        nonce_group: g,
                        source,
                    },
                })?;
            pows.push(pow);
        }
        let prover = Prover::new(challenge, first_nonce, &pows, difficulty)?;
        if let Some((nonce, indices)) =
            scan_data(&data, &prover, cfg.k2, &pool, threads, pass, progress, stop)?
        {
            return Ok(finish(nonce, indices, num_labels, &prover));
        }
    }
    Err(ProveError::NoncesExhausted {
        next_nonce: MAX_NONCES,
        per_pass: opts.nonces,
    })
}

/// One pass over the data of `datadir` with the k2pows given (`pows[i]` for group
/// `first_nonce/16 + i`), without any RandomX work: the data-scan step on its own (benchmarks,
/// tests, remote k2pow). `Ok(None)` when no nonce of the pass reaches K2.
#[allow(clippy::too_many_arguments)]
pub fn scan_pass(
    datadir: &Path,
    challenge: &[u8; 32],
    cfg: &ProofConfig,
    first_nonce: u32,
    pows: &[u64],
    threads: usize,
    progress: &(dyn Fn(ProveProgress) + Sync),
    stop: &AtomicBool,
) -> Result<Option<Proof>, ProveError> {
    check_options(cfg, pows.len() as u32 * NONCES_PER_GROUP)?;
    let data = PostData::open(datadir)?;
    let num_labels = data.layout.num_labels;
    let difficulty = proving_difficulty(cfg.k1, num_labels)?;
    let prover = Prover::new(challenge, first_nonce, pows, difficulty)?;
    let threads = effective_threads(threads);
    let pool = build_pool(threads)?;
    let pass = first_nonce / (pows.len() as u32 * NONCES_PER_GROUP).max(1);
    Ok(
        scan_data(&data, &prover, cfg.k2, &pool, threads, pass, progress, stop)?
            .map(|(nonce, indices)| finish(nonce, indices, num_labels, &prover)),
    )
}

/// Scan an in-memory buffer of labels (label 0 at byte 0) in 1 MiB batches, as if it were one
/// file. Returns the winning nonce and its K2 indices in the order found (not sorted). With
/// `threads <= 1` the scan is sequential and deterministic.
pub fn scan_buffer(data: &[u8], prover: &Prover, k2: u32, threads: usize) -> Option<(u32, Vec<u64>)> {
    let collector = Collector::new(prover.nonces(), k2);
    let threads = effective_threads(threads);
    let batches: Vec<(usize, &[u8])> = data.chunks(BATCH_SIZE).enumerate().collect();
    let next = AtomicUsize::new(0);
    let worker = || loop {
        if collector.done.load(Ordering::Acquire) {
            return;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(&(b, bytes)) = batches.get(i) else {
            return;
        };
        let base = (b * BATCH_SIZE) as u64 / LABEL_SIZE;
        if prover.scan_batch(bytes, base, &mut |n, idx| collector.push(n, idx)) {
            return;
        }
    };
    if threads <= 1 {
        worker();
    } else {
        match build_pool(threads) {
            Ok(pool) => pool.scope(|s| {
                for _ in 0..threads {
                    s.spawn(|_| worker());
                }
            }),
            Err(_) => worker(),
        }
    }
    collector.winner()
}

/// Measure the scan speed in MiB/s over an in-memory buffer with `nonces` nonces per pass (the
/// pows are fixed, no RandomX), K1 = 26 (mainnet) for the buffer's label count, and a K2 no
/// nonce reaches, so the whole buffer is scanned. Runs in the calling thread when `threads`
/// is 1.
pub fn bench_scan(data: &[u8], nonces: u32, threads: usize) -> Result<f64, ProveError> {
    let cfg = ProofConfig {
        k1: 26,
        k2: u32::MAX,
        ..ProofConfig::MAINNET
    };
    check_options(&cfg, nonces)?;
    let num_labels = (data.len() as u64 / LABEL_SIZE).max(u64::from(cfg.k1) + 1);
    let difficulty = proving_difficulty(cfg.k1, num_labels)?;
    let pows: Vec<u64> = (0..u64::from(nonces / NONCES_PER_GROUP)).collect();
    let prover = Prover::new(b"smeshfleet bench challenge 12345", 0, &pows, difficulty)?;
    let start = Instant::now();
    let _ = scan_buffer(data, &prover, cfg.k2, threads);
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    Ok(data.len() as f64 / (1024.0 * 1024.0) / secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cipher::qualifies;

    fn model_scan(
        data: &[u8],
        challenge: &[u8; 32],
        nonces: Range<u32>,
        pows: &[u64],
        d: u64,
        k2: usize,
    ) -> Option<(u32, Vec<u64>)> {
        // Straight from spec §4.7, one label at a time.
        let mut found = vec![Vec::new(); nonces.len()];
        for chunk_start in (0..data.len() / CHUNK_SIZE).map(|c| c * CHUNK_SIZE) {
            for (gi, &pow) in pows.iter().enumerate() {
                for t in 0..128usize {
                    let n = nonces.start + gi as u32 * 16 + (t % 16) as u32;
                    let li = chunk_start / 16 + t / 16;
                    let label: [u8; 16] = data[li * 16..li * 16 + 16].try_into().expect("16");
                    if qualifies(challenge, n, pow, &label, d) {
                        let v = &mut found[(n - nonces.start) as usize];
                        v.push(li as u64);
                        if v.len() == k2 {
                            return Some((n, v.clone()));
                        }
                    }
                }
            }
        }
        None
    }

    #[test]
    fn le_mask_is_exact() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for d in [0u8, 1, 6, 0x7f, 0x80, 0xfe, 0xff] {
            for _ in 0..2000 {
                let mut b = [0u8; 16];
                for v in b.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Bias towards values near d.
                    *v = if x.is_multiple_of(3) {
                        d.wrapping_add((x >> 8) as u8 % 3).wrapping_sub(1)
                    } else {
                        (x >> 16) as u8
                    };
                }
                let want = b
                    .iter()
                    .enumerate()
                    .fold(0u32, |m, (j, &v)| m | (u32::from(v <= d) << j));
                assert_eq!(le_mask(&Block::from(b), d), want, "d {d} block {b:?}");
            }
        }
    }

    #[test]
    fn proving_vector_spec_7_4() {
        // post-rs `proving_vector`: 2048 bytes, byte k = k mod 12, numLabels 128, K1 4, K2 32.
        let data: Vec<u8> = (0..2048).map(|k| (k % 12) as u8).collect();
        let challenge = b"hello world, CHALLENGE me!!!!!!!";
        let d = proving_difficulty(4, 128).expect("D");
        assert_eq!(d, 1 << 59);
        let prover = Prover::new(challenge, 0, &[0], d).expect("prover");
        let (nonce, indices) = scan_buffer(&data, &prover, 32, 1).expect("proof");
        assert_eq!(nonce, 3);
        assert_eq!(indices, (0..32).map(|i| i * 3).collect::<Vec<u64>>());
        assert_eq!(
            model_scan(&data, challenge, 0..16, &[0], d, 32),
            Some((nonce, indices))
        );
    }

    #[test]
    fn matches_model_on_random_data() {
        let mut data = vec![0u8; 64 * 1024 + 16 * 5];
        let mut x = 0x1234_5678_9abc_def0u64;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let labels = (data.len() / 16) as u64;
        for (k1, k2, pows) in [
            (40u32, 40usize, vec![3u64, 9]),
            (300, 250, vec![1]),
            (4, 6, vec![5, 6, 7]),
        ] {
            let d = proving_difficulty(k1, labels).expect("D");
            let prover = Prover::new(&[9; 32], 32, &pows, d).expect("prover");
            let want = model_scan(&data, &[9; 32], 32..32 + 16 * pows.len() as u32, &pows, d, k2);
            assert_eq!(scan_buffer(&data, &prover, k2 as u32, 1), want, "k1 {k1}");
        }
    }

    #[test]
    fn high_dmsb_exercises_lazy_path() {
        // D with Dmsb = 0x80 and Dlsb half way: many equal-msb candidates.
        let data: Vec<u8> = (0..8192u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let d = (0x80u64 << 56) | (1 << 55);
        let prover = Prover::new(&[1; 32], 0, &[0, 1], d).expect("prover");
        let want = model_scan(&data, &[1; 32], 0..32, &[0, 1], d, 200);
        assert!(want.is_some());
        assert_eq!(scan_buffer(&data, &prover, 200, 1), want);
    }

    #[test]
    fn parallel_scan_finds_a_valid_nonce() {
        let data: Vec<u8> = (0..3 * BATCH_SIZE as u32 + 4096)
            .map(|i| (i.wrapping_mul(2246822519) >> 7) as u8)
            .collect();
        let labels = (data.len() / 16) as u64;
        let d = proving_difficulty(26, labels).expect("D");
        let prover = Prover::new(&[2; 32], 0, &[0, 0, 0, 0], d).expect("prover");
        let (nonce, indices) = scan_buffer(&data, &prover, 20, 2).expect("proof");
        assert_eq!(indices.len(), 20);
        let pow = prover.pow_of(nonce).expect("pow");
        for i in indices {
            let l: [u8; 16] = data[i as usize * 16..i as usize * 16 + 16]
                .try_into()
                .expect("16");
            assert!(qualifies(&[2; 32], nonce, pow, &l, d));
        }
    }

    #[test]
    fn prover_arguments() {
        assert!(matches!(
            Prover::new(&[0; 32], 8, &[0], 1),
            Err(ProveError::UnalignedNonces(8))
        ));
        assert!(Prover::new(&[0; 32], 0, &[], 1).is_err());
        assert!(Prover::new(&[0; 32], 255 * 16, &[0], 1).is_ok());
        assert!(Prover::new(&[0; 32], 255 * 16, &[0, 0], 1).is_err());
        let p = Prover::new(&[0; 32], 32, &[7, 8], 1).expect("prover");
        assert_eq!(p.nonces(), 32..64);
        assert_eq!(p.pow_of(47), Some(7));
        assert_eq!(p.pow_of(48), Some(8));
        assert_eq!(p.pow_of(64), None);
        assert_eq!(p.pow_of(31), None);
        assert!(check_options(&ProofConfig::MAINNET, 0).is_err());
        assert!(check_options(&ProofConfig::MAINNET, 24).is_err());
        assert!(check_options(&ProofConfig::MAINNET, 4096).is_ok());
        assert!(check_options(&ProofConfig::MAINNET, 4112).is_err());
    }

    #[test]
    fn bench_helper_runs() {
        let data = vec![0x33u8; 2 * BATCH_SIZE];
        assert!(bench_scan(&data, 32, 1).expect("bench") > 0.0);
        assert!(bench_scan(&data, 20, 1).is_err());
    }
}
