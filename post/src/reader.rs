//! Proving from an explicit list of data files that may lie on several devices (a striped
//! identity: `postdata_k.bin` spread over the disks of a rig), with one reader thread per
//! physical device feeding a pool of scanning threads.
//!
//! [`crate::prove`] reads one directory, in file order, so a striped identity would be read one
//! disk at a time. Here every device has its own reader, so all disks stream at once, and the
//! batches are scanned in whatever order they arrive. The result is nevertheless the proof the
//! reference's sequential scan gives (post's [`crate::prove::scan_pass`] with one thread), for
//! any thread count and any placement of the files:
//!
//! - every qualifying `(nonce, index)` of a scanned batch is recorded (about K1 per nonce over
//!   the whole data, so this stays small);
//! - the sequential scan visits labels in the order (chunk, nonce group, label in chunk, nonce
//!   in group), chunks counted from each file's start; the winner is the nonce whose K2-th
//!   qualifying label comes first in that order, and its indices are its K2 smallest ones;
//! - a candidate winner is final as soon as every batch up to the one holding its K2-th label is
//!   scanned: any other nonce that could beat it has all of its first K2 labels in that prefix
//!   too. The pass then stops early, as the sequential scan would.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};

use crate::cipher::{CHUNK_LABELS, NONCES_PER_GROUP};
use crate::data::{Layout, LABEL_SIZE};
use crate::difficulty::proving_difficulty;
use crate::proof::{Proof, ProofConfig};
use crate::prove::{
    check_options, effective_threads, finish, read_at, ProveError, ProveProgress, Prover, BATCH_SIZE,
};

/// One data file of an identity: its number `k` (of `postdata_k.bin`), where it is, and the
/// physical device it is on (files naming the same device share one reader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    pub index: u64,
    pub path: PathBuf,
    pub device: String,
}

#[derive(Debug)]
struct OpenFile {
    path: PathBuf,
    file: File,
    first_label: u64,
    size: u64,
    device: String,
}

/// Every file `0..numFiles` of an identity, opened and checked against the layout.
#[derive(Debug)]
pub struct StripedData {
    layout: Layout,
    /// By file number.
    files: Vec<OpenFile>,
}

impl StripedData {
    /// Opens every source; each `k < numFiles` must be given exactly once with the size the
    /// layout gives it. Sources with larger `k` are ignored (as [`crate::prove::PostData`] does).
    pub fn open(layout: Layout, sources: &[FileSource]) -> Result<Self, ProveError> {
        let mut by_k: BTreeMap<u64, &FileSource> = BTreeMap::new();
        for s in sources.iter().filter(|s| s.index < layout.num_files()) {
            if let Some(prev) = by_k.insert(s.index, s) {
                return Err(ProveError::DuplicateFile {
                    k: s.index,
                    first: prev.path.clone(),
                    second: s.path.clone(),
                });
            }
        }
        let mut files = Vec::new();
        for k in 0..layout.num_files() {
            let src = by_k.get(&k).ok_or_else(|| ProveError::MissingFile {
                k,
                path: PathBuf::from(crate::data::file_name(k)),
            })?;
            let io = |source| ProveError::Io {
                path: src.path.clone(),
                offset: 0,
                source,
            };
            let file = match File::open(&src.path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(ProveError::MissingFile {
                        k,
                        path: src.path.clone(),
                    })
                }
                Err(e) => return Err(io(e)),
            };
            let got = file.metadata().map_err(io)?.len();
            let expected = layout.file_size(k);
            if got != expected {
                return Err(ProveError::WrongFileSize {
                    k,
                    path: src.path.clone(),
                    expected,
                    got,
                });
            }
            files.push(OpenFile {
                path: src.path.clone(),
                file,
                first_label: layout.file_labels(k).start,
                size: expected,
                device: src.device.clone(),
            });
        }
        Ok(Self { layout, files })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn total_bytes(&self) -> u64 {
        self.layout.total_bytes()
    }

    /// The distinct devices, in order of their first file: one reader thread each.
    pub fn devices(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for f in &self.files {
            if !out.contains(&f.device.as_str()) {
                out.push(&f.device);
            }
        }
        out
    }

    /// 1 MiB batches in file order: (file, byte offset, length).
    fn batches(&self) -> Vec<(usize, u64, usize)> {
        crate::prove::batches_of(self.files.iter().map(|f| f.size))
    }
}

/// What one pass found and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassOutcome {
    /// `None`: no nonce of the pass reached K2.
    pub proof: Option<Proof>,
    /// Bytes read and scanned (less than the data when the pass ended early).
    pub bytes_scanned: u64,
}

/// The place of a qualifying label in the reference's sequential scan order.
type ScanKey = (u64, u32, u64, u32);

/// Qualifying labels by nonce, and which batches are scanned.
struct Tracker {
    first_nonce: u32,
    k2: usize,
    labels_per_file: u64,
    /// By nonce offset in the pass.
    hits: Vec<Vec<u64>>,
    /// End label (exclusive) of each batch, in batch order.
    batch_end: Vec<u64>,
    scanned: Vec<bool>,
    /// Batches `0..prefix` are all scanned.
    prefix: usize,
}

impl Tracker {
    fn key(&self, slot: usize, index: u64) -> ScanKey {
        let file_start = index - index % self.labels_per_file;
        let chunk = (index - file_start) / CHUNK_LABELS as u64 * CHUNK_LABELS as u64;
        let nonce = self.first_nonce + slot as u32;
        (
            file_start + chunk,
            nonce / NONCES_PER_GROUP,
            index - file_start - chunk,
            nonce % NONCES_PER_GROUP,
        )
    }

    /// The nonce (slot) whose K2-th label comes first in scan order, with that label.
    fn best(&mut self) -> Option<(usize, u64)> {
        let k2 = self.k2;
        let mut best: Option<(ScanKey, usize, u64)> = None;
        for slot in 0..self.hits.len() {
            if self.hits[slot].len() < k2 {
                continue;
            }
            self.hits[slot].sort_unstable();
            let kth = self.hits[slot][k2 - 1];
            let key = self.key(slot, kth);
            if best.is_none_or(|(b, _, _)| key < b) {
                best = Some((key, slot, kth));
            }
        }
        best.map(|(_, slot, kth)| (slot, kth))
    }

    /// Records a scanned batch; returns the winner once it is certain.
    fn record(&mut self, batch: usize, found: &[(u32, u64)]) -> Option<(u32, Vec<u64>)> {
        let mut any = false;
        for &(nonce, index) in found {
            if let Some(v) = self.hits.get_mut(nonce.wrapping_sub(self.first_nonce) as usize) {
                v.push(index);
                any = true;
            }
        }
        self.scanned[batch] = true;
        let before = self.prefix;
        while self.prefix < self.scanned.len() && self.scanned[self.prefix] {
            self.prefix += 1;
        }
        if !any && self.prefix == before {
            return None;
        }
        let covered = match self.prefix {
            0 => 0,
            p => self.batch_end[p - 1],
        };
        let all = self.prefix == self.scanned.len();
        let (slot, kth) = self.best()?;
        (all || kth < covered).then(|| self.winner(slot))
    }

    fn winner(&self, slot: usize) -> (u32, Vec<u64>) {
        let indices = self.hits[slot][..self.k2].to_vec();
        (self.first_nonce + slot as u32, indices)
    }
}

/// One pass over `data` for nonces `first_nonce .. first_nonce + 16·pows.len()` (`pows[i]` is
/// the k2pow of group `first_nonce/16 + i`), reading with one thread per device and scanning
/// with `threads` threads (0 = all logical CPUs). The proof, when there is one, is the one
/// [`crate::prove::scan_pass`] gives with one thread over the same files in one directory.
///
/// `progress` is called from the scanning threads after every batch. `stop` is checked between
/// batches.
#[allow(clippy::too_many_arguments)]
pub fn scan_pass_files(
    data: &StripedData,
    challenge: &[u8; 32],
    cfg: &ProofConfig,
    first_nonce: u32,
    pows: &[u64],
    threads: usize,
    progress: &(dyn Fn(ProveProgress) + Sync),
    stop: &AtomicBool,
) -> Result<PassOutcome, ProveError> {
    let nonces = u32::try_from(pows.len())
        .unwrap_or(u32::MAX)
        .saturating_mul(NONCES_PER_GROUP);
    check_options(cfg, nonces)?;
    let num_labels = data.layout.num_labels;
    let difficulty = proving_difficulty(cfg.k1, num_labels)?;
    let prover = Prover::new(challenge, first_nonce, pows, difficulty)?;
    let pass = first_nonce / nonces;
    let range = prover.nonces();
    let threads = effective_threads(threads);

    let batches = data.batches();
    let tracker = Mutex::new(Tracker {
        first_nonce,
        k2: cfg.k2 as usize,
        labels_per_file: data.layout.labels_per_file,
        hits: vec![Vec::new(); range.len()],
        batch_end: batches
            .iter()
            .map(|&(f, off, len)| data.files[f].first_label + (off + len as u64) / LABEL_SIZE)
            .collect(),
        scanned: vec![false; batches.len()],
        prefix: 0,
    });
    let winner: Mutex<Option<(u32, Vec<u64>)>> = Mutex::new(None);
    let won = AtomicBool::new(false);
    let failed = AtomicBool::new(false);
    let read_error: Mutex<Option<ProveError>> = Mutex::new(None);
    let bytes_done = AtomicU64::new(0);
    let bytes_total = data.total_bytes();
    let halt =
        || stop.load(Ordering::Relaxed) || won.load(Ordering::Acquire) || failed.load(Ordering::Relaxed);

    // Each device's batches, in file order.
    let devices = data.devices();
    let per_device: Vec<Vec<usize>> = devices
        .iter()
        .map(|d| {
            (0..batches.len())
                .filter(|&b| data.files[batches[b].0].device == *d)
                .collect()
        })
        .collect();
    let depth = 2 * devices.len().max(1) + threads;
    let (full_tx, full_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(depth);
    let full_rx = Mutex::new(full_rx);
    let free: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    progress(ProveProgress::Scan {
        pass,
        nonces: (range.start, range.end),
        bytes_done: 0,
        bytes_total,
    });
    std::thread::scope(|s| {
        for list in &per_device {
            let tx = full_tx.clone();
            let (free, failed, read_error, halt) = (&free, &failed, &read_error, &halt);
            let batches = &batches;
            std::thread::Builder::new()
                .name("post-read".into())
                .spawn_scoped(s, move || {
                    for &b in list {
                        if halt() {
                            return;
                        }
                        let (f, offset, len) = batches[b];
                        let file = &data.files[f];
                        let mut buf = free
                            .lock()
                            .ok()
                            .and_then(|mut v| v.pop())
                            .unwrap_or_else(|| vec![0u8; BATCH_SIZE]);
                        if let Err(source) = read_at(&file.file, &mut buf[..len], offset) {
                            failed.store(true, Ordering::Relaxed);
                            if let Ok(mut e) = read_error.lock() {
                                e.get_or_insert(ProveError::Io {
                                    path: file.path.clone(),
                                    offset,
                                    source,
                                });
                            }
                            return;
                        }
                        if tx.send((b, buf)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| {
                    failed.store(true, Ordering::Relaxed);
                    if let Ok(mut r) = read_error.lock() {
                        r.get_or_insert(ProveError::ThreadPool(e.to_string()));
                    }
                })
                .ok();
        }
        // The scanners end when every reader has ended (all senders dropped).
        drop(full_tx);
        for _ in 0..threads {
            let (full_rx, free, tracker, winner, won, halt) =
                (&full_rx, &free, &tracker, &winner, &won, &halt);
            let (batches, prover, bytes_done) = (&batches, &prover, &bytes_done);
            let spawned = std::thread::Builder::new()
                .name("post-scan".into())
                .spawn_scoped(s, move || {
                    let mut found: Vec<(u32, u64)> = Vec::new();
                    loop {
                        let next = match full_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok((b, buf)) = next else { return };
                        // After a halt, keep draining so that no reader blocks on a full queue.
                        if !halt() {
                            let (f, offset, len) = batches[b];
                            let base = data.files[f].first_label + offset / LABEL_SIZE;
                            found.clear();
                            prover.scan_batch(&buf[..len], base, &mut |n, idx| {
                                found.push((n, idx));
                                false
                            });
                            let done = bytes_done.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
                            let decided = tracker.lock().ok().and_then(|mut t| t.record(b, &found));
                            if let Some(w) = decided {
                                if let Ok(mut slot) = winner.lock() {
                                    slot.get_or_insert(w);
                                }
                                won.store(true, Ordering::Release);
                            }
                            progress(ProveProgress::Scan {
                                pass,
                                nonces: (range.start, range.end),
                                bytes_done: done,
                                bytes_total,
                            });
                        }
                        if let Ok(mut v) = free.lock() {
                            v.push(buf);
                        }
                    }
                });
            if let Err(e) = spawned {
                failed.store(true, Ordering::Relaxed);
                if let Ok(mut r) = read_error.lock() {
                    r.get_or_insert(ProveError::ThreadPool(e.to_string()));
                }
            }
        }
    });
    let bytes_scanned = bytes_done.load(Ordering::Relaxed);
    if let Some((nonce, indices)) = winner.into_inner().ok().flatten() {
        return Ok(PassOutcome {
            proof: Some(finish(nonce, indices, num_labels, &prover)),
            bytes_scanned,
        });
    }
    if let Some(e) = read_error.into_inner().ok().flatten() {
        return Err(e);
    }
    let complete = tracker
        .lock()
        .map(|t| t.prefix == t.scanned.len())
        .unwrap_or(false);
    if !complete {
        // Not every batch was scanned and there was no read error: stopped (or no scanner).
        return Err(ProveError::Stopped { pass });
    }
    Ok(PassOutcome {
        proof: None,
        bytes_scanned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(k2: usize, labels_per_file: u64, batch_end: Vec<u64>) -> Tracker {
        let n = batch_end.len();
        Tracker {
            first_nonce: 16,
            k2,
            labels_per_file,
            hits: vec![Vec::new(); 32],
            batch_end,
            scanned: vec![false; n],
            prefix: 0,
        }
    }

    #[test]
    fn winner_waits_for_the_prefix() {
        // Two batches of 100 labels. Nonce 17 reaches K2 = 2 at label 150 (batch 1) before
        // batch 0 is scanned: not final yet.
        let mut t = tracker(2, 1000, vec![100, 200]);
        assert_eq!(t.record(1, &[(17, 120), (17, 150)]), None);
        // Batch 0 gives nonce 40 (group 2) two labels at 10 and 60: it wins, 60 < 150.
        assert_eq!(t.record(0, &[(40, 10), (40, 60)]), Some((40, vec![10, 60])));
    }

    #[test]
    fn ties_in_a_chunk_follow_the_reference_order() {
        // Same chunk (labels 8..16): the lower group wins even at a later label...
        let mut t = tracker(1, 1000, vec![100]);
        assert_eq!(t.record(0, &[(33, 9), (17, 15)]), Some((17, vec![15])));
        // ...and within a group the earlier label, then the lower nonce.
        let mut t = tracker(1, 1000, vec![100]);
        assert_eq!(t.record(0, &[(18, 9), (17, 9), (16, 12)]), Some((17, vec![9])));
        // Chunks count from each file's start: with 20 labels per file, labels 23 and 24 share
        // the chunk 20..28 of file 1 (not 16..24 and 24..32), so the lower group wins.
        let mut t = tracker(1, 20, vec![40]);
        assert_eq!(t.record(0, &[(47, 23), (16, 24)]), Some((16, vec![24])));
    }

    /// Random bytes stand in for labels (the scan does not care): 4 files of 70,000 labels
    /// (a trailing partial chunk each, two batches each) in one directory with metadata, and
    /// the same files assigned to devices in several ways.
    #[test]
    fn same_proof_as_the_sequential_scan_whatever_the_devices_and_threads() {
        use crate::metadata::PostMetadata;
        use crate::prove::scan_pass;
        let dir = tempfile::tempdir().expect("tempdir");
        let lpf = 70_000u64;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for k in 0..4u64 {
            let bytes: Vec<u8> = (0..lpf * LABEL_SIZE)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            std::fs::write(dir.path().join(crate::data::file_name(k)), bytes).expect("write");
        }
        let md = PostMetadata {
            node_id: [1; 32],
            commitment_atx_id: [2; 32],
            labels_per_unit: lpf,
            num_units: 4,
            max_file_size: lpf * LABEL_SIZE,
            nonce: None,
            nonce_value: None,
            last_position: None,
        };
        md.save(dir.path()).expect("metadata");
        let layout = Layout::new(4, lpf, lpf * LABEL_SIZE).expect("layout");
        let placements: [[&str; 4]; 3] = [["a", "a", "a", "a"], ["a", "b", "a", "b"], ["b", "c", "a", "b"]];
        let stop = AtomicBool::new(false);
        let mut found = 0;
        for (case, (k1, k2, first_nonce, groups)) in [
            (20u32, 14u32, 0u32, 1usize),
            (20, 22, 16, 2),
            (20, 26, 0, 4),
            (40, 45, 32, 3),
            (20, 60, 0, 1),
        ]
        .into_iter()
        .enumerate()
        {
            let cfg = ProofConfig {
                k1,
                k2,
                pow_difficulty: [0xff; 32],
            };
            let pows: Vec<u64> = (0..groups as u64).map(|g| g * 7 + case as u64).collect();
            let challenge = [case as u8 + 1; 32];
            let want = scan_pass(
                dir.path(),
                &challenge,
                &cfg,
                first_nonce,
                &pows,
                1,
                &|_| {},
                &stop,
            )
            .expect("sequential scan");
            found += usize::from(want.is_some());
            for (p, devices) in placements.iter().enumerate() {
                let sources: Vec<FileSource> = (0..4u64)
                    .map(|k| FileSource {
                        index: k,
                        path: dir.path().join(crate::data::file_name(k)),
                        device: devices[k as usize].to_owned(),
                    })
                    .collect();
                let data = StripedData::open(layout, &sources).expect("open");
                for threads in [1, 3] {
                    let got = scan_pass_files(
                        &data,
                        &challenge,
                        &cfg,
                        first_nonce,
                        &pows,
                        threads,
                        &|_| {},
                        &stop,
                    )
                    .expect("striped scan");
                    assert_eq!(got.proof, want, "case {case}, placement {p}, {threads} threads");
                    if want.is_none() {
                        assert_eq!(got.bytes_scanned, layout.total_bytes());
                    }
                }
            }
        }
        assert!(
            (2..5).contains(&found),
            "some cases find a proof, some do not: {found}"
        );
    }

    #[test]
    fn open_checks_every_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(1, 300, 2048).expect("layout"); // files of 128, 128, 44 labels
        let src = |k: u64| FileSource {
            index: k,
            path: dir.path().join(crate::data::file_name(k)),
            device: "d".into(),
        };
        for k in 0..3 {
            std::fs::write(src(k).path, vec![0u8; layout.file_size(k) as usize]).expect("write");
        }
        assert!(StripedData::open(layout, &[src(0), src(1), src(2), src(7)]).is_ok());
        let e = StripedData::open(layout, &[src(0), src(2)]).expect_err("missing");
        assert!(matches!(e, ProveError::MissingFile { k: 1, .. }), "{e}");
        let e = StripedData::open(layout, &[src(0), src(1), src(1), src(2)]).expect_err("twice");
        assert!(matches!(e, ProveError::DuplicateFile { k: 1, .. }), "{e}");
        std::fs::write(src(2).path, vec![0u8; 16]).expect("short");
        let e = StripedData::open(layout, &[src(0), src(1), src(2)]).expect_err("short");
        assert!(
            matches!(e, ProveError::WrongFileSize { k: 2, got: 16, .. }),
            "{e}"
        );
    }

    #[test]
    fn no_winner_below_k2() {
        let mut t = tracker(3, 1000, vec![100]);
        assert_eq!(t.record(0, &[(16, 1), (16, 2), (17, 3)]), None);
    }
}
