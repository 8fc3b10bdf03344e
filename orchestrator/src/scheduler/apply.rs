//! Applying a plan to a snapshot, as the reconcile loop applies it to the store: placements recorded,
//! cancelled jobs marked, truncated ranges shortened, new jobs queued. Pure; used by simulations,
//! dry runs and the idempotence tests (planning the result again yields no actions).

use std::collections::BTreeMap;

use super::model::{Device, FileState, JobKind, JobState, JobStatus, Snapshot};
use super::output::Plan;

/// The snapshot as it is once `plan` is applied, with no time passing. New jobs get the ids
/// `{id_prefix}-{n}`, numbered in plan order.
pub fn apply(snapshot: &Snapshot, plan: &Plan, id_prefix: &str) -> Snapshot {
    let mut s = snapshot.clone();
    let ident_pos: BTreeMap<String, usize> = s
        .identities
        .iter()
        .enumerate()
        .rev()
        .map(|(k, i)| (i.id.clone(), k))
        .collect();
    for p in &plan.placements {
        let Some(ident) = ident_pos
            .get(&p.identity_id)
            .and_then(|&k| s.identities.get_mut(k))
        else {
            continue;
        };
        let layout = ident.layout();
        let pos: BTreeMap<u32, usize> = ident
            .files
            .iter()
            .enumerate()
            .map(|(k, f)| (f.index, k))
            .collect();
        let files = std::sync::Arc::make_mut(&mut ident.files);
        for fp in &p.files {
            let placement = Some(super::model::FileLocation {
                worker_id: p.worker_id.as_str().into(),
                disk_id: fp.disk_id.as_str().into(),
            });
            if let Some(f) = pos.get(&fp.file_index).and_then(|&k| files.get_mut(k)) {
                f.placement = placement;
            } else {
                let labels_total = layout
                    .and_then(|l| l.file_range(fp.file_index))
                    .map_or(0, |r| r.len());
                files.push(FileState {
                    index: fp.file_index,
                    labels_total,
                    labels_done: 0,
                    placement,
                });
            }
        }
    }
    let job_pos: BTreeMap<String, usize> = s
        .jobs
        .iter()
        .enumerate()
        .rev()
        .map(|(k, j)| (j.id.clone(), k))
        .collect();
    for c in &plan.cancellations {
        if let Some(job) = job_pos.get(&c.job_id).and_then(|&k| s.jobs.get_mut(k)) {
            job.state = JobStatus::Cancelled;
        }
    }
    for t in &plan.truncations {
        if let Some(job) = job_pos.get(&t.job_id).and_then(|&k| s.jobs.get_mut(k)) {
            if let JobKind::Init { range, .. } = &mut job.kind {
                range.end = t.new_end;
            }
        }
    }
    let mut n = 0u64;
    let mut next_id = || {
        n += 1;
        format!("{id_prefix}-{n}")
    };
    let queued = |id: String, identity_id: &str, worker_id: &str, device: Device, kind: JobKind| JobState {
        id,
        identity_id: identity_id.to_owned(),
        worker_id: worker_id.to_owned(),
        device,
        kind,
        state: JobStatus::Queued,
        lease_expires_ms: None,
        started_ms: None,
        not_before_ms: None,
        progress: 0,
    };
    for a in &plan.init {
        let kind = JobKind::Init {
            file_index: a.file_index,
            range: a.range,
        };
        s.jobs.push(queued(
            next_id(),
            &a.identity_id,
            &a.worker_id,
            a.device.clone(),
            kind,
        ));
    }
    for k in &plan.k2pow {
        let kind = JobKind::K2pow { groups: k.groups };
        s.jobs
            .push(queued(next_id(), &k.identity_id, &k.worker_id, Device::Cpu, kind));
    }
    for p in &plan.proofs {
        let kind = JobKind::Prove {
            first_nonce: p.first_nonce,
            nonces: p.nonces,
            disks: p.disks.clone(),
        };
        let mut job = queued(next_id(), &p.identity_id, &p.worker_id, Device::Cpu, kind);
        job.not_before_ms = Some(p.start_ms);
        s.jobs.push(job);
    }
    s
}
