//! The init executor: compute labels `[start, end)` of one identity's file and write them where
//! postcli would (`postdata_<k>.bin` at offset `(label - file start) * 16`), fsync, then report the
//! range. A range is reported only after its bytes are durable, so a crash loses only unreported
//! work, which the next lease recomputes from the last reported point.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use post::backend::{LabelBackend, LabelRequest, VrfCandidate};
use post::data::file_name;
use post::metadata::PostMetadata;
use protocol::{IdentityParams, RangeDone};

use super::{checked_range, parse32, ExecError};

/// One init job, resolved to a directory on this rig.
#[derive(Debug, Clone)]
pub struct InitTask {
    pub identity: IdentityParams,
    /// The identity's data directory on the target disk.
    pub dir: PathBuf,
    pub file_index: u64,
    /// Identity-wide label indices.
    pub start: u64,
    pub end: u64,
    /// Labels before this one (from `start`) are already reported done.
    pub resume_from: u64,
}

/// What a finished job found.
#[derive(Debug, Clone, Copy, Default)]
pub struct InitOutcome {
    pub labels_written: u64,
    /// The best VRF-nonce candidate of the range, if any label qualified.
    pub best: Option<VrfCandidate>,
}

/// The metadata every directory of the identity carries (so the official tools can read it).
pub fn metadata_for(identity: &IdentityParams) -> Result<PostMetadata, ExecError> {
    let commitment = identity
        .commitment_atx_id
        .as_deref()
        .ok_or_else(|| ExecError::Invalid("the identity has no commitment ATX id yet".into()))?;
    Ok(PostMetadata {
        node_id: parse32("node_id", &identity.node_id)?,
        commitment_atx_id: parse32("commitment_atx_id", commitment)?,
        labels_per_unit: identity.labels_per_unit,
        num_units: identity.num_units,
        max_file_size: identity.max_file_size,
        nonce: None,
        nonce_value: None,
        last_position: None,
    })
}

/// Writes the metadata unless the directory already has it; refuses a directory that belongs to
/// another identity or another layout.
pub fn ensure_metadata(dir: &Path, md: &PostMetadata) -> Result<(), ExecError> {
    std::fs::create_dir_all(dir).map_err(|source| ExecError::Io {
        step: "creating the data directory",
        path: dir.to_path_buf(),
        source,
    })?;
    match PostMetadata::load(dir).map_err(|e| ExecError::Metadata(e.to_string()))? {
        Some(existing) => {
            let same = existing.node_id == md.node_id
                && existing.commitment_atx_id == md.commitment_atx_id
                && existing.labels_per_unit == md.labels_per_unit
                && existing.num_units == md.num_units
                && existing.max_file_size == md.max_file_size;
            if same {
                Ok(())
            } else {
                Err(ExecError::Invalid(format!(
                    "{} holds another identity's or layout's metadata",
                    dir.display()
                )))
            }
        }
        None => md.save(dir).map_err(|e| ExecError::Metadata(e.to_string())),
    }
}

fn open_file(path: &Path) -> Result<File, ExecError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| ExecError::Io {
            step: "opening",
            path: path.to_path_buf(),
            source,
        })
}

/// Runs the task. `report` is called after every durable batch with the range written and the
/// best VRF candidate of that batch.
pub fn run_init(
    task: &InitTask,
    backend: &dyn LabelBackend,
    stop: &AtomicBool,
    report: &mut dyn FnMut(RangeDone, Option<VrfCandidate>),
) -> Result<InitOutcome, ExecError> {
    let id = &task.identity;
    let (n, file_labels) = checked_range(id, task.file_index, task.start, task.end)?;
    let md = metadata_for(id)?;
    ensure_metadata(&task.dir, &md)?;
    let commitment = md.commitment();
    let threshold =
        post::difficulty::vrf_difficulty(md.num_labels()).map_err(|e| ExecError::Invalid(e.to_string()))?;
    let path = task.dir.join(file_name(task.file_index));
    let file = open_file(&path)?;

    let mut out = InitOutcome::default();
    let mut next = task.start.saturating_add(task.resume_from).min(task.end);
    // Start with the device's preferred batch and aim at ~2 s per batch, so that progress is
    // reported often and a stop request is honoured quickly.
    let mut batch = backend.preferred_batch().max(64) as u64;
    let mut buf = Vec::new();
    while next < task.end {
        if stop.load(Ordering::Relaxed) {
            return Err(ExecError::Stopped);
        }
        let count = batch.min(task.end - next);
        let len = usize::try_from(count * 16).map_err(|_| ExecError::Invalid("batch".into()))?;
        buf.resize(len, 0);
        let t = Instant::now();
        let req = LabelRequest {
            commitment: &commitment,
            scrypt_n: n,
            start: next,
            vrf_threshold: Some(&threshold),
        };
        let cands = backend.compute(&req, &mut buf)?;
        let offset = (next - file_labels.start) * 16;
        file.write_all_at(&buf, offset).map_err(|source| ExecError::Io {
            step: "writing",
            path: path.clone(),
            source,
        })?;
        file.sync_data().map_err(|source| ExecError::Io {
            step: "syncing",
            path: path.clone(),
            source,
        })?;
        let best = post::backend::best_candidate(&cands);
        if let Some(b) = best {
            out.best = Some(out.best.map_or(b, |o| o.better(b)));
        }
        report(
            RangeDone {
                file_index: task.file_index,
                start_label: next,
                end_label: next + count,
            },
            best,
        );
        out.labels_written += count;
        next += count;
        let took = t.elapsed();
        if took < Duration::from_millis(1000) {
            batch = (batch * 2).min(1 << 20);
        } else if took > Duration::from_millis(4000) && batch > 64 {
            batch /= 2;
        }
    }
    Ok(out)
}
