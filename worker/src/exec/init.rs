//! The init executor: compute labels `[start, end)` of one identity's file and write them where
//! postcli would (`postdata_<k>.bin` at offset `(label - file start) * 16`), fsync, then report the
//! range. A range is reported only after its bytes are durable, so a crash loses only unreported
//! work, which the next lease recomputes from the last reported point.
//!
//! A full disk is a fault of the disk, not of the job: before writing, the free space of the
//! target disk is compared with the bytes the range still needs, and a write or sync that fails
//! with `ENOSPC` ends the job the same way, with [`ExecError::DiskFull`] naming the disk, its free
//! bytes and the bytes needed. It is not retried on that disk; the coordinator moves the files
//! the disk cannot finish to other disks (see `remove_stale_copies` for what happens here then).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use post::backend::{LabelBackend, LabelRequest, VrfCandidate};
use post::data::file_name;
use post::metadata::PostMetadata;
use protocol::{IdentityParams, RangeDone};

use super::{checked_range, parse32, ExecError};

/// Where a running init job stops now: the coordinator may cut its range short while it runs (the
/// tail went to faster devices), and the agent lowers this from the answer to a progress report.
/// Shared between the agent and the executor; the default never cuts.
#[derive(Debug, Clone)]
pub struct RangeEnd(Arc<AtomicU64>);

impl Default for RangeEnd {
    fn default() -> Self {
        Self(Arc::new(AtomicU64::new(u64::MAX)))
    }
}

impl RangeEnd {
    /// The end of a range leased as `[_, leased_end)`, after any cut.
    pub fn get(&self, leased_end: u64) -> u64 {
        self.0.load(Ordering::Relaxed).min(leased_end)
    }

    /// Cut the range at `end` (never lengthens it).
    pub fn lower_to(&self, end: u64) {
        self.0.fetch_min(end, Ordering::Relaxed);
    }
}

/// One init job, resolved to a directory on this rig.
#[derive(Debug, Clone)]
pub struct InitTask {
    pub identity: IdentityParams,
    /// The identity's data directory on the target disk.
    pub dir: PathBuf,
    /// The target disk: its id and directory (what a disk-full failure names).
    pub disk_id: String,
    pub disk_dir: PathBuf,
    /// The identity's directory on every disk of the rig (the target's included), in the rig's
    /// disk order: where the home's links point, and where stale copies are looked for.
    pub rig_dirs: Vec<PathBuf>,
    pub file_index: u64,
    /// Identity-wide label indices.
    pub start: u64,
    pub end: u64,
    /// Labels before this one (from `start`) are already reported done.
    pub resume_from: u64,
    /// `end`, lowered when the coordinator cuts the job short.
    pub cut: RangeEnd,
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

/// Free bytes of the file system holding `dir`, as `statvfs` gives them to an unprivileged user
/// (through `sysinfo`, the longest mount point that is a prefix of the canonical path). `None`
/// when the file system is one `sysinfo` does not list (tmpfs, NFS): the write's own `ENOSPC`
/// is then the only check.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let canonical = std::fs::canonicalize(dir).ok()?;
    let mounts =
        sysinfo::Disks::new_with_refreshed_list_specifics(sysinfo::DiskRefreshKind::nothing().with_storage());
    mounts
        .list()
        .iter()
        .filter(|m| canonical.starts_with(m.mount_point()))
        .max_by_key(|m| m.mount_point().components().count())
        .map(|m| m.available_space())
}

/// Fails with [`ExecError::DiskFull`] when the target disk has less free space than the labels
/// `[next, end)` still need beyond what the file already holds.
fn check_free_space(task: &InitTask, file: &File, next: u64, file_start: u64) -> Result<(), ExecError> {
    if next >= task.end {
        return Ok(());
    }
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let end_off = (task.end - file_start) * 16;
    let from = len.max((next - file_start) * 16);
    let needed = end_off.saturating_sub(from);
    match free_bytes(&task.dir) {
        Some(free) if free < needed => Err(disk_full(task, free, needed, "before writing".into())),
        _ => Ok(()),
    }
}

fn disk_full(task: &InitTask, free: u64, needed: u64, when: String) -> ExecError {
    ExecError::DiskFull {
        disk_id: task.disk_id.clone(),
        disk: task.disk_dir.clone(),
        free_bytes: free,
        needed_bytes: needed,
        detail: format!(
            "labels [{}, {}) of file {} ({when})",
            task.start, task.end, task.file_index
        ),
    }
}

/// A write's error: `ENOSPC` (and `EDQUOT`) is the disk being full, anything else an I/O error.
fn io_or_full(
    task: &InitTask,
    step: &'static str,
    path: &Path,
    needed: u64,
    source: std::io::Error,
) -> ExecError {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    let full = source.kind() == std::io::ErrorKind::StorageFull
        || matches!(source.raw_os_error(), Some(ENOSPC | EDQUOT));
    if full {
        let free = free_bytes(&task.dir).unwrap_or(0);
        disk_full(task, free, needed, format!("{step} {}: {source}", path.display()))
    } else {
        ExecError::Io {
            step,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Removes copies of the task's file left on the rig's other disks.
///
/// The coordinator places each file on one disk and moves it only when that disk cannot finish it
/// (a full disk): it then forgets every label it had recorded for the file, cancels the file's
/// other jobs and places it anew, all in one transaction, before this job can be leased. A real
/// `postdata_<k>.bin` of this identity on another disk of the rig is therefore a copy nobody
/// counts any more: it is removed (which frees the full disk, and keeps every file number on one
/// disk only, as the prover and the home's links need). Links are left to [`sync_home`].
///
/// [`sync_home`]: super::stripe::sync_home
pub fn remove_stale_copies(task: &InitTask) -> Result<Vec<PathBuf>, ExecError> {
    let target = std::fs::canonicalize(&task.dir).unwrap_or_else(|_| task.dir.clone());
    let mut removed = Vec::new();
    for dir in &task.rig_dirs {
        let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        if canonical == target {
            continue;
        }
        let stale = dir.join(file_name(task.file_index));
        match std::fs::symlink_metadata(&stale) {
            Ok(md) if md.file_type().is_file() => {
                tracing::warn!(
                    file = %stale.display(),
                    now_on = %task.dir.display(),
                    "removing a copy of a file the coordinator moved to another disk"
                );
                std::fs::remove_file(&stale).map_err(|source| ExecError::Io {
                    step: "removing the stale copy",
                    path: stale.clone(),
                    source,
                })?;
                removed.push(stale);
            }
            _ => {}
        }
    }
    Ok(removed)
}

/// [`super::stripe::sync_home`] for the task's identity; a failure is logged, not fatal (the
/// labels are fine, only the official directory's links lag, and the next job retries).
pub fn sync_home_logged(task: &InitTask) {
    let n = task.identity.scrypt_n as usize;
    if let Err(e) = super::stripe::sync_home(&task.rig_dirs, n) {
        tracing::warn!(error = %e, "could not update the identity's home directory");
    }
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
    remove_stale_copies(task)?;
    let file = open_file(&path)?;

    let mut out = InitOutcome::default();
    let mut next = task.start.saturating_add(task.resume_from).min(task.end);
    check_free_space(task, &file, next, file_labels.start)?;
    // The new file is reachable from the identity's home directory from its first label on.
    sync_home_logged(task);
    // Start with the device's preferred batch and aim at ~2 s per batch, so that progress is
    // reported often and a stop request is honoured quickly.
    let mut batch = backend.preferred_batch().max(64) as u64;
    let mut buf = Vec::new();
    loop {
        let end = task.cut.get(task.end);
        if next >= end {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            return Err(ExecError::Stopped);
        }
        let count = batch.min(end - next);
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
        let needed = (end - next) * 16;
        file.write_all_at(&buf, offset)
            .map_err(|source| io_or_full(task, "writing", &path, needed, source))?;
        file.sync_data()
            .map_err(|source| io_or_full(task, "syncing", &path, needed, source))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use post::backend::CpuBackend;

    fn task(dir: &Path, labels_per_unit: u64, end: u64) -> InitTask {
        InitTask {
            identity: IdentityParams {
                identity_id: uuid::Uuid::nil(),
                node_id: "31".repeat(32),
                commitment_atx_id: Some("42".repeat(32)),
                num_units: 1,
                labels_per_unit,
                max_file_size: labels_per_unit * 16,
                scrypt_n: 16,
            },
            dir: dir.join("smeshfleet").join("31".repeat(32)),
            disk_id: "d0".into(),
            disk_dir: dir.to_path_buf(),
            rig_dirs: vec![dir.join("smeshfleet").join("31".repeat(32))],
            file_index: 0,
            start: 0,
            end,
            resume_from: 0,
            cut: RangeEnd::default(),
        }
    }

    fn run(t: &InitTask) -> (Result<InitOutcome, ExecError>, Vec<RangeDone>) {
        let cpu = CpuBackend::new(1).expect("cpu");
        let mut reported = Vec::new();
        let r = run_init(t, &cpu, &AtomicBool::new(false), &mut |r, _| reported.push(r));
        (r, reported)
    }

    /// More labels than the disk has room for: refused before a label is computed, naming the
    /// disk, its free bytes and the bytes needed; not retryable there.
    #[test]
    fn too_little_free_space_fails_before_writing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let Some(free) = free_bytes(tmp.path()) else {
            eprintln!("the temporary directory's file system is not one sysinfo lists; nothing to check");
            return;
        };
        // One file of 2^46 labels (1 PiB), far beyond any test machine's disk.
        let t = task(tmp.path(), 1 << 46, 1 << 46);
        let (r, reported) = run(&t);
        let e = r.expect_err("a full disk");
        assert!(reported.is_empty());
        let ExecError::DiskFull {
            disk_id,
            free_bytes: f,
            needed_bytes,
            ..
        } = &e
        else {
            panic!("not a full disk: {e}");
        };
        assert_eq!(disk_id, "d0");
        assert_eq!(*needed_bytes, 1 << 50);
        assert!(f.abs_diff(free) < 1 << 30, "free {f} vs {free}");
        assert!(!e.is_retryable());
        let msg = e.to_string();
        assert!(
            msg.contains("d0") && msg.contains("bytes free") && msg.contains(&(1u64 << 50).to_string()),
            "{msg}"
        );
        let report = e.disk_full().expect("reported to the coordinator");
        assert_eq!((report.disk_id.as_str(), report.needed_bytes), ("d0", 1 << 50));
        assert_eq!(
            std::fs::metadata(t.dir.join(file_name(0))).expect("file").len(),
            0,
            "nothing written"
        );
    }

    /// `ENOSPC` from a write (here /dev/full behind the file's name) is a full disk, not an I/O
    /// error to retry.
    #[test]
    fn enospc_while_writing_is_a_full_disk() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = task(tmp.path(), 4096, 4096);
        std::fs::create_dir_all(&t.dir).expect("mkdir");
        std::os::unix::fs::symlink("/dev/full", t.dir.join(file_name(0))).expect("link");
        let (r, reported) = run(&t);
        let e = r.expect_err("ENOSPC");
        assert!(reported.is_empty(), "nothing reported: {reported:?}");
        assert!(
            matches!(
                e,
                ExecError::DiskFull {
                    needed_bytes: 65536,
                    ..
                }
            ),
            "{e}"
        );
        assert!(!e.is_retryable());
    }

    /// A copy of the job's file on another disk of the rig (the coordinator moved the file) is
    /// removed; links and other files are not.
    #[test]
    fn stale_copies_on_other_disks_are_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut t = task(&tmp.path().join("new"), 1024, 1024);
        let old = tmp.path().join("old").join("smeshfleet").join("31".repeat(32));
        std::fs::create_dir_all(&old).expect("mkdir");
        std::fs::write(old.join(file_name(0)), b"partial").expect("stale");
        std::fs::write(old.join(file_name(1)), b"other file").expect("other");
        t.rig_dirs.push(old.clone());
        let removed = remove_stale_copies(&t).expect("remove");
        assert_eq!(removed, vec![old.join(file_name(0))]);
        assert!(old.join(file_name(1)).exists());
        // Then the job runs on the new disk as usual.
        let (r, reported) = run(&t);
        assert_eq!(r.expect("init").labels_written, 1024);
        assert_eq!(
            reported.iter().map(|r| r.end_label - r.start_label).sum::<u64>(),
            1024
        );
    }
}
