//! The verify executor: re-derive a sample of the labels of `[start, end)` of one file through
//! the [`LabelBackend`] (the CPU today, a GPU later) and compare them with what is on disk.
//!
//! The range is walked in chunks of [`VERIFY_CHUNK`] labels aligned to identity-wide label
//! indices. In each chunk one contiguous run of `sample_per_chunk` labels is checked, at a place
//! derived from the job's seed (so a retried job checks the same labels, another job other
//! ones). A chunk is bad when a sampled label differs or when the file does not hold all of the
//! chunk's labels of the range (missing or short file): the coordinator then initializes exactly
//! that chunk again. A missing or short file is a finding, not an error.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use post::backend::{LabelBackend, LabelRequest};
use post::data::{file_name, LABEL_SIZE};
use protocol::{IdentityParams, LabelRange, VerifyResult};

use super::init::metadata_for;
use super::{checked_range, ExecError};

/// Labels per chunk: the unit of sampling and of the bad ranges reported.
pub const VERIFY_CHUNK: u64 = 4096;
/// Progress is reported (and the stop flag checked) at least this often.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// One verify job, resolved to a directory on this rig.
#[derive(Debug, Clone)]
pub struct VerifyTask {
    pub identity: IdentityParams,
    /// The identity's data directory on the job's disk.
    pub dir: PathBuf,
    pub file_index: u64,
    /// Identity-wide label indices, inside the file.
    pub start: u64,
    pub end: u64,
    /// Labels checked per chunk (clamped to 1..=[`VERIFY_CHUNK`]).
    pub sample_per_chunk: u64,
    /// Picks the sampled runs.
    pub seed: [u8; 16],
    /// Labels from `start` already covered by an earlier attempt, with what it found.
    pub resume_from: u64,
    pub resumed: VerifyResult,
}

/// The sampled run of `[seg_start, seg_end)` (a chunk of the range): `len` labels at a place
/// that depends on the seed and the chunk only.
pub fn sample_run(seed: &[u8; 16], seg_start: u64, seg_end: u64, len: u64) -> LabelRange {
    let span = seg_end - seg_start;
    let len = len.clamp(1, VERIFY_CHUNK).min(span);
    let mut h = blake3::Hasher::new();
    h.update(seed);
    h.update(&seg_start.to_le_bytes());
    let mut r = [0u8; 8];
    r.copy_from_slice(&h.finalize().as_bytes()[..8]);
    let start = seg_start + u64::from_le_bytes(r) % (span - len + 1);
    LabelRange {
        start,
        end: start + len,
    }
}

/// Adds `r` to sorted, merged `ranges` (r starts at or after the last one's start).
fn push_range(ranges: &mut Vec<LabelRange>, r: LabelRange) {
    match ranges.last_mut() {
        Some(last) if last.end >= r.start => last.end = last.end.max(r.end),
        _ => ranges.push(r),
    }
}

/// Runs the task; `report(done, so_far)` after every step, `done` counting labels of the range
/// covered from `start`.
pub fn run_verify(
    task: &VerifyTask,
    backend: &dyn LabelBackend,
    stop: &AtomicBool,
    report: &mut dyn FnMut(u64, &VerifyResult),
) -> Result<VerifyResult, ExecError> {
    let id = &task.identity;
    let (n, file_labels) = checked_range(id, task.file_index, task.start, task.end)?;
    let commitment = metadata_for(id)?.commitment();
    let path = task.dir.join(file_name(task.file_index));
    // Labels the file holds: [file start, stored_end).
    let (file, stored_end) = match File::open(&path) {
        Ok(f) => {
            let len = f.metadata().map_err(|source| ExecError::Io {
                step: "reading the size of",
                path: path.clone(),
                source,
            })?;
            (Some(f), file_labels.start + len.len() / LABEL_SIZE)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, file_labels.start),
        Err(source) => {
            return Err(ExecError::Io {
                step: "opening",
                path,
                source,
            })
        }
    };

    let mut out = task.resumed.clone();
    let mut next = task.start.saturating_add(task.resume_from).min(task.end);
    let mut stored = Vec::new();
    let mut computed = Vec::new();
    let mut last_report = Instant::now();
    while next < task.end {
        if stop.load(Ordering::Relaxed) {
            return Err(ExecError::Stopped);
        }
        let chunk_start = next / VERIFY_CHUNK * VERIFY_CHUNK;
        let seg = LabelRange {
            start: next,
            end: (chunk_start + VERIFY_CHUNK).min(task.end),
        };
        let bad = if seg.end > stored_end {
            true
        } else {
            let run = sample_run(&task.seed, seg.start, seg.end, task.sample_per_chunk);
            let bytes =
                usize::try_from(run.len() * LABEL_SIZE).map_err(|_| ExecError::Invalid("run".into()))?;
            stored.resize(bytes, 0);
            computed.resize(bytes, 0);
            if let Some(f) = &file {
                f.read_exact_at(&mut stored, (run.start - file_labels.start) * LABEL_SIZE)
                    .map_err(|source| ExecError::Io {
                        step: "reading",
                        path: path.clone(),
                        source,
                    })?;
            }
            let req = LabelRequest {
                commitment: &commitment,
                scrypt_n: n,
                start: run.start,
                vrf_threshold: None,
            };
            backend.compute(&req, &mut computed)?;
            out.checked += run.len();
            stored != computed
        };
        if bad {
            let chunk = LabelRange {
                start: chunk_start.max(task.start),
                end: (chunk_start + VERIFY_CHUNK).min(task.end),
            };
            tracing::warn!(
                file = task.file_index,
                start = chunk.start,
                end = chunk.end,
                "bad labels"
            );
            push_range(&mut out.bad_ranges, chunk);
        }
        next = seg.end;
        if next == task.end || last_report.elapsed() >= REPORT_EVERY {
            report(next - task.start, &out);
            last_report = Instant::now();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_runs_stay_inside_their_chunk() {
        let seed = [7u8; 16];
        for (s, e, len) in [
            (0u64, 4096u64, 16u64),
            (4100, 8192, 16),
            (5, 9, 16),
            (0, 4096, 4096),
        ] {
            let r = sample_run(&seed, s, e, len);
            assert!(r.start >= s && r.end <= e && !r.is_empty(), "{r:?} in [{s}, {e})");
            assert_eq!(r.len(), len.min(e - s));
            assert_eq!(sample_run(&seed, s, e, len), r, "deterministic");
        }
        let places: std::collections::BTreeSet<u64> = (0..16u8)
            .map(|b| sample_run(&[b; 16], 0, 4096, 16).start)
            .collect();
        assert!(places.len() > 8, "the seed moves the sample: {places:?}");
    }

    #[test]
    fn ranges_merge() {
        let mut v = Vec::new();
        push_range(&mut v, LabelRange { start: 0, end: 10 });
        push_range(&mut v, LabelRange { start: 10, end: 20 });
        push_range(&mut v, LabelRange { start: 30, end: 40 });
        assert_eq!(
            v,
            vec![
                LabelRange { start: 0, end: 20 },
                LabelRange { start: 30, end: 40 }
            ]
        );
    }
}
