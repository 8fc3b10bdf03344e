//! Which live jobs stay and which are cancelled (lost worker, expired lease, drained queue, missing
//! device, double booking, overlapping ranges), and what every job has durably done.
//!
//! A label device (a GPU, or a CPU that computes labels) holds at most [`INIT_QUEUE_DEPTH`] live
//! init jobs: the one it runs (leased or running) and the next one queued behind it, so that it
//! starts its next range as soon as it ends one instead of waiting for the next plan. A job queued
//! behind a slow one is cancelled ([`CancelReason::Slow`]): its range goes back to the planner.

use std::collections::{BTreeMap, BTreeSet};

use super::index::{Index, Place};
use super::model::{Device, JobKind, JobState, JobStatus};
use super::output::{CancelReason, Cancellation};

/// Live init jobs a label device may hold: one leased or running, one queued behind it.
pub(crate) const INIT_QUEUE_DEPTH: usize = 2;

/// The jobs after classification.
pub(crate) struct JobBook {
    /// Per job (index into `Index::jobs`): live and kept.
    pub kept: Vec<bool>,
    pub worker: Vec<Option<usize>>,
    pub ident: Vec<Option<usize>>,
    /// Durable init progress of every job, by (identity, file): `[start, end)` label ranges.
    pub init_done: BTreeMap<(usize, u32), Vec<(u64, u64)>>,
    /// Kept live init jobs by (identity, file).
    pub init_live: BTreeMap<(usize, u32), Vec<usize>>,
    /// Kept live init jobs by label device (worker, GPU or CPU), the one to run first first; at
    /// most [`INIT_QUEUE_DEPTH`] each.
    pub init_queue: BTreeMap<(usize, Device), Vec<usize>>,
    /// GPUs holding a kept live job.
    pub busy_gpu: BTreeSet<(usize, u32)>,
    /// Workers whose CPU holds a kept live job of any kind.
    pub busy_cpu: BTreeSet<usize>,
    /// Durable k2pow progress by identity: absolute `[start, end)` groups.
    pub k2pow_done: BTreeMap<usize, Vec<(u32, u32)>>,
    /// Kept live k2pow jobs.
    pub k2pow_live: Vec<usize>,
    /// Kept live prove job by identity.
    pub prove_live: BTreeMap<usize, usize>,
}

impl JobBook {
    /// Forget a kept live prove job that the proof planner cancelled.
    pub fn release(&mut self, idx: &Index, j: usize) {
        self.kept[j] = false;
        if let Some(i) = self.ident[j] {
            if self.prove_live.get(&i) == Some(&j) {
                self.prove_live.remove(&i);
            }
        }
        if let Some(w) = self.worker[j] {
            let still = (0..self.kept.len())
                .any(|k| self.kept[k] && self.worker[k] == Some(w) && idx.jobs[k].device == Device::Cpu);
            if !still {
                self.busy_cpu.remove(&w);
            }
        }
    }
}

/// Priority to keep: running before leased before queued, then more progress, then lower id.
fn keep_key(j: &JobState) -> (u8, std::cmp::Reverse<u64>, &str) {
    let rank = match j.state {
        JobStatus::Running => 0,
        JobStatus::Leased => 1,
        _ => 2,
    };
    (rank, std::cmp::Reverse(j.progress), j.id.as_str())
}

/// Label range of an init job clamped to its file, with the file's index, or None when the job does
/// not fit the layout.
pub(crate) fn init_range(idx: &Index, ident: usize, job: &JobState) -> Option<(u32, u64, u64)> {
    let JobKind::Init { file_index, range } = &job.kind else {
        return None;
    };
    let f = idx.idents[ident].files.get(usize::try_from(*file_index).ok()?)?;
    // A live job cut at its progress while it had done nothing has an empty range: it is ending
    // and keeps its device until it reports. An empty queued job is obsolete.
    if range.start < f.start || range.end > f.end() || range.end < range.start {
        return None;
    }
    if range.is_empty() && !is_active(job) {
        return None;
    }
    Some((*file_index, range.start, range.end))
}

/// The not yet done part of an init job's range.
pub(crate) fn init_remaining(job: &JobState, start: u64, end: u64) -> (u64, u64) {
    (start.saturating_add(job.progress).min(end), end)
}

/// Whether the job holds its device now (leased or running), as opposed to waiting in its queue.
pub(crate) fn is_active(job: &JobState) -> bool {
    matches!(job.state, JobStatus::Running | JobStatus::Leased)
}

/// `(observed, expected)` labels/s of a leased or running job on worker `w` that has run at least
/// `min_observation_ms` at less than `slow_factor` of its device's measured speed; None when the
/// job is not (yet) judged slow.
pub(crate) fn slow_rates(idx: &Index, w: usize, job: &JobState) -> Option<(f64, f64)> {
    let started = job.started_ms?;
    if !is_active(job) {
        return None;
    }
    let elapsed = idx.now.saturating_sub(started);
    if elapsed < idx.cfg.min_observation_ms.max(1) {
        return None;
    }
    let expected = idx.device_rate(w, &job.device);
    let observed = job.progress as f64 / (elapsed as f64 / 1000.0);
    (expected > 0.0 && observed < idx.cfg.slow_factor * expected).then_some((observed, expected))
}

pub(crate) fn classify(idx: &Index, out: &mut Vec<Cancellation>) -> JobBook {
    let n = idx.jobs.len();
    let mut book = JobBook {
        kept: vec![false; n],
        worker: vec![None; n],
        ident: vec![None; n],
        init_done: BTreeMap::new(),
        init_live: BTreeMap::new(),
        init_queue: BTreeMap::new(),
        busy_gpu: BTreeSet::new(),
        busy_cpu: BTreeSet::new(),
        k2pow_done: BTreeMap::new(),
        k2pow_live: Vec::new(),
        prove_live: BTreeMap::new(),
    };
    let cancel = |out: &mut Vec<Cancellation>, job: &JobState, reason: CancelReason| {
        out.push(Cancellation {
            job_id: job.id.clone(),
            identity_id: job.identity_id.clone(),
            worker_id: job.worker_id.clone(),
            kind: job.kind.name(),
            reason,
        });
    };

    // 1. Durable progress of every job, and the per-job verdict for live ones.
    let mut candidates = Vec::new();
    for (j, job) in idx.jobs.iter().enumerate() {
        let w = idx.worker_by_id.get(job.worker_id.as_str()).copied();
        let i = idx.ident_by_id.get(job.identity_id.as_str()).copied();
        book.worker[j] = w;
        book.ident[j] = i;
        if let Some(i) = i {
            match &job.kind {
                JobKind::Init { .. } => {
                    if let Some((f, s, e)) = init_range(idx, i, job) {
                        let (rs, _) = init_remaining(job, s, e);
                        if rs > s {
                            book.init_done.entry((i, f)).or_default().push((s, rs));
                        }
                    }
                }
                JobKind::K2pow { groups } => {
                    let done = u32::try_from(job.progress).unwrap_or(u32::MAX).min(groups.len());
                    if done > 0 {
                        book.k2pow_done
                            .entry(i)
                            .or_default()
                            .push((groups.start, groups.start + done));
                    }
                }
                _ => {}
            }
        }
        if !job.state.is_live() {
            continue;
        }
        if let Some(reason) = verdict(idx, job, w, i) {
            cancel(out, job, reason);
        } else {
            candidates.push(j);
        }
    }

    // 2. One live job per GPU, one live init job per CPU, one live proof per identity; a label
    //    device may also hold one init job queued behind its first one (depth 2).
    let mut by_device: BTreeMap<(usize, u8, u32), Vec<usize>> = BTreeMap::new();
    for &j in &candidates {
        let job = idx.jobs[j];
        let (Some(w), Some(i)) = (book.worker[j], book.ident[j]) else {
            continue;
        };
        match (&job.device, &job.kind) {
            (Device::Gpu { index }, _) => by_device.entry((w, 0, *index)).or_default().push(j),
            (Device::Cpu, JobKind::Init { .. }) => by_device.entry((w, 1, 0)).or_default().push(j),
            (_, JobKind::Prove { .. }) => by_device.entry((i, 2, 0)).or_default().push(j),
            _ => {}
        }
    }
    let mut dropped = vec![false; n];
    for group in by_device.values_mut() {
        if group.len() < 2 {
            continue;
        }
        group.sort_by(|&a, &b| keep_key(idx.jobs[a]).cmp(&keep_key(idx.jobs[b])));
        let kept_id = idx.jobs[group[0]].id.clone();
        // Behind a kept init job, the first queued init job waits its turn (the queue's depth is
        // INIT_QUEUE_DEPTH = 2); never two jobs leased or running on one device.
        let init = |j: usize| matches!(idx.jobs[j].kind, JobKind::Init { .. });
        let next = init(group[0])
            .then(|| {
                group[1..]
                    .iter()
                    .copied()
                    .find(|&j| init(j) && idx.jobs[j].state == JobStatus::Queued)
            })
            .flatten();
        for &j in group[1..].iter().filter(|&&j| Some(j) != next) {
            dropped[j] = true;
            cancel(
                out,
                idx.jobs[j],
                CancelReason::DoubleBooked {
                    kept_job_id: kept_id.clone(),
                },
            );
        }
    }
    candidates.retain(|&j| !dropped[j]);

    // 3. Remaining init ranges and k2pow groups must not overlap.
    // (remaining start, end, job) by (identity, file) and by identity.
    type Spans = Vec<(u64, u64, usize)>;
    let mut init_groups: BTreeMap<(usize, u32), Spans> = BTreeMap::new();
    let mut pow_groups: BTreeMap<usize, Spans> = BTreeMap::new();
    for &j in &candidates {
        let job = idx.jobs[j];
        let Some(i) = book.ident[j] else { continue };
        match &job.kind {
            JobKind::Init { .. } => {
                if let Some((f, s, e)) = init_range(idx, i, job) {
                    let (rs, re) = init_remaining(job, s, e);
                    init_groups.entry((i, f)).or_default().push((rs, re, j));
                }
            }
            JobKind::K2pow { groups } => {
                let rs = u64::from(groups.start)
                    .saturating_add(job.progress)
                    .min(u64::from(groups.end));
                pow_groups
                    .entry(i)
                    .or_default()
                    .push((rs, u64::from(groups.end), j));
            }
            _ => {}
        }
    }
    for list in init_groups.values_mut().chain(pow_groups.values_mut()) {
        list.sort_by(|a, b| (a.0, keep_key(idx.jobs[a.2])).cmp(&(b.0, keep_key(idx.jobs[b.2]))));
        let mut reach: Option<(u64, usize)> = None;
        for &(s, e, j) in list.iter() {
            if s >= e {
                continue;
            }
            match reach {
                Some((r, k)) if s < r => {
                    dropped[j] = true;
                    cancel(
                        out,
                        idx.jobs[j],
                        CancelReason::Overlaps {
                            kept_job_id: idx.jobs[k].id.clone(),
                        },
                    );
                }
                _ => reach = Some((e, j)),
            }
        }
    }
    candidates.retain(|&j| !dropped[j]);

    // 4. A slow device gets nothing queued behind its job: what is queued goes back to the planner,
    //    which gives it to idle faster devices (and queues nothing new for this one).
    let mut queues: BTreeMap<(usize, Device), Vec<usize>> = BTreeMap::new();
    for &j in &candidates {
        let job = idx.jobs[j];
        if let (Some(w), JobKind::Init { .. }, Device::Gpu { .. } | Device::Cpu) =
            (book.worker[j], &job.kind, &job.device)
        {
            queues.entry((w, job.device.clone())).or_default().push(j);
        }
    }
    for (&(w, _), q) in queues.iter_mut() {
        q.sort_by(|&a, &b| keep_key(idx.jobs[a]).cmp(&keep_key(idx.jobs[b])));
        if q.len() < 2 {
            continue;
        }
        let Some((observed, expected)) = slow_rates(idx, w, idx.jobs[q[0]]) else {
            continue;
        };
        for &j in &q[1..] {
            dropped[j] = true;
            cancel(
                out,
                idx.jobs[j],
                CancelReason::Slow {
                    expected_labels_per_s: expected,
                    observed_labels_per_s: observed,
                },
            );
        }
        q.truncate(1);
    }
    candidates.retain(|&j| !dropped[j]);
    book.init_queue = queues;

    for &j in &candidates {
        let job = idx.jobs[j];
        let (Some(w), Some(i)) = (book.worker[j], book.ident[j]) else {
            continue;
        };
        book.kept[j] = true;
        match &job.device {
            Device::Gpu { index } => {
                book.busy_gpu.insert((w, *index));
            }
            Device::Cpu => {
                book.busy_cpu.insert(w);
            }
            Device::Disk { .. } => {}
        }
        match &job.kind {
            JobKind::Init { .. } => {
                if let Some((f, _, _)) = init_range(idx, i, job) {
                    book.init_live.entry((i, f)).or_default().push(j);
                }
            }
            JobKind::K2pow { .. } => book.k2pow_live.push(j),
            JobKind::Prove { .. } => {
                book.prove_live.insert(i, j);
            }
            JobKind::Verify { .. } => {}
        }
    }
    book
}

/// Why a live job must go, or None to keep it (subject to double booking and overlaps).
fn verdict(idx: &Index, job: &JobState, w: Option<usize>, i: Option<usize>) -> Option<CancelReason> {
    let Some(w) = w else {
        return Some(CancelReason::WorkerUnknown);
    };
    let worker = &idx.workers[w];
    if !worker.st.online {
        return Some(CancelReason::WorkerOffline);
    }
    if matches!(job.state, JobStatus::Leased | JobStatus::Running) {
        if let Some(t) = job.lease_expires_ms {
            if t <= idx.now {
                return Some(CancelReason::LeaseExpired { expired_at_ms: t });
            }
        }
    }
    if job.state == JobStatus::Queued {
        if worker.st.draining {
            return Some(CancelReason::WorkerDraining);
        }
        if worker.st.paused {
            return Some(CancelReason::WorkerPaused);
        }
    }
    match &job.device {
        Device::Gpu { index } => match worker.gpu(*index) {
            None => return Some(CancelReason::DeviceMissing),
            Some(g) if !g.enabled => return Some(CancelReason::DeviceDisabled),
            Some(_) => {}
        },
        Device::Disk { disk_id } => {
            if !idx.disk_by_id.contains_key(&(w, disk_id.as_str())) {
                return Some(CancelReason::DeviceMissing);
            }
        }
        Device::Cpu => {
            if matches!(job.kind, JobKind::Init { .. }) && !worker.st.cpu.init_enabled {
                return Some(CancelReason::DeviceDisabled);
            }
        }
    }
    let Some(i) = i else {
        return Some(CancelReason::IdentityUnknown);
    };
    let ident = &idx.idents[i];
    if !ident.st.state.is_active() {
        return Some(CancelReason::IdentityInactive);
    }
    match &job.kind {
        JobKind::Init { .. } => {
            if !ident.st.state.wants_init() {
                return Some(CancelReason::Obsolete);
            }
            let Some((f, _, _)) = init_range(idx, i, job) else {
                return Some(CancelReason::Obsolete);
            };
            let Some(file) = ident.files.get(f as usize) else {
                return Some(CancelReason::Obsolete);
            };
            // Labels are written to the file's disk: its worker must be reachable.
            if let Place::Disk(d) = file.place {
                if !idx.workers[idx.disks[d].worker].st.online {
                    return Some(CancelReason::StorageUnavailable);
                }
            }
            None
        }
        JobKind::Verify { file_index, range } => {
            let ok = ident
                .files
                .get(*file_index as usize)
                .is_some_and(|f| range.start >= f.start && range.end <= f.end() && !range.is_empty());
            (!ok).then_some(CancelReason::Obsolete)
        }
        JobKind::K2pow { groups } => {
            let Some(need) = &ident.st.proving else {
                return Some(CancelReason::Obsolete);
            };
            let base = need.first_nonce / 16;
            (groups.is_empty() || groups.start < base || groups.end > 256).then_some(CancelReason::Obsolete)
        }
        JobKind::Prove {
            first_nonce, nonces, ..
        } => {
            let Some(need) = &ident.st.proving else {
                return Some(CancelReason::Obsolete);
            };
            let bad = *first_nonce != need.first_nonce || *nonces == 0 || nonces % 16 != 0;
            bad.then_some(CancelReason::Obsolete)
        }
    }
}
