//! Init planning: find the labels no one holds, give each idle device one contiguous range inside one
//! file sized to its measured speed, and let idle faster devices take the tail of slow jobs.
//!
//! * Missing labels of a file = the file minus its done prefix, minus the durable progress of every
//!   job, minus the remaining ranges of kept live jobs.
//! * Idle devices (enabled, measured, on a worker that takes new work, holding no live job) are
//!   served fastest first. Each gets `min(horizon, missing / total speed) * its speed` labels (so
//!   devices sharing a small amount of work finish together), never across a file boundary and never
//!   leaving a tail shorter than `min_chunk_labels`.
//! * Queued next: a device running (or holding under a lease) one init job that is not slow gets
//!   the next range queued behind it (depth 2, see [`super::jobs::INIT_QUEUE_DEPTH`]), so that it
//!   starts it as soon as it ends the current one. Only what the idle devices leave is queued so,
//!   sized the same way among the devices that get it. A device whose only job is still queued, or
//!   that holds two, gets nothing.
//! * Work is taken in identity priority order (identities already initialising first, then by id,
//!   file, label), skipping physical devices whose write budget the device's speed would exceed.
//! * Stealing: a running job observed below `slow_factor` of its device's speed keeps a head sized to
//!   its observed rate; idle faster devices get the tail split so all finish together. When the head
//!   would be shorter than `min_chunk_labels` the job is cut at its progress and the devices share all
//!   of the rest. Slow jobs are shortened, never cancelled: their device stays booked until it
//!   reports, so planning again finds the same devices busy. A job queued behind a slow one is
//!   cancelled (by [`super::jobs`]) and a slow device gets no next range, so its queue does not
//!   hold labels that idle devices could take.
//! * Remote init: a device may compute labels for another worker's disk only when that worker serves
//!   a stream endpoint (the labels travel there in checksummed chunks). Local work comes first: idle
//!   devices are first offered ranges of their own worker's disks (fastest first), and only the
//!   devices still idle then take ranges of other workers' disks, so a rig computing for its own
//!   disks is never displaced by a remote device when work is scarce.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::index::{dur_ms, sane, Index};
use super::jobs::{init_range, init_remaining, is_active, slow_rates, JobBook, INIT_QUEUE_DEPTH};
use super::model::{Device, LabelRange, Placement};
use super::output::{InitAssignment, Plan, Truncation};
use super::placement::{effective_disk, NewPlacements};

struct Seg {
    ident: usize,
    file: u32,
    start: u64,
    end: u64,
    disk: usize,
}

struct Dev {
    worker: usize,
    device: Device,
    rate: f64,
}

/// `[lo, hi)` minus the union of `cov`.
pub(crate) fn complement(lo: u64, hi: u64, mut cov: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    cov.sort_unstable();
    let mut out = Vec::new();
    let mut pos = lo;
    for (s, e) in cov {
        let (s, e) = (s.max(lo), e.min(hi));
        if e <= s {
            continue;
        }
        if s > pos {
            out.push((pos, s));
        }
        pos = pos.max(e);
    }
    if pos < hi {
        out.push((pos, hi));
    }
    out
}

fn budget_ok(used: f64, cap: f64, rate: f64) -> bool {
    used <= 0.0 || used + rate <= cap * (1.0 + 1e-9)
}

/// Whether a device of worker `dev_worker` may write to disk `disk`: its own, or one whose worker
/// takes streamed labels.
fn may_write(idx: &Index, dev_worker: usize, disk: usize) -> bool {
    let w = idx.disks[disk].worker;
    w == dev_worker || idx.workers[w].st.stream_endpoint
}

pub(crate) fn plan(
    idx: &Index,
    book: &JobBook,
    newp: &NewPlacements,
    cpu_reserved: &BTreeSet<usize>,
    out: &mut Plan,
) {
    let cfg = idx.cfg;
    let min_chunk = cfg.min_chunk_labels.max(1);

    // 1. Missing labels, in priority order.
    let mut segs: Vec<Seg> = Vec::new();
    for i in idx.init_order() {
        let ident = &idx.idents[i];
        // This identity's jobs, by file (one range query each instead of one lookup per file).
        let mut done_it = book.init_done.range((i, 0)..=(i, u32::MAX)).peekable();
        let mut live_it = book.init_live.range((i, 0)..=(i, u32::MAX)).peekable();
        for (k, fv) in ident.files.iter().enumerate() {
            let Ok(file) = u32::try_from(k) else { break };
            let done = done_it.next_if(|((_, f), _)| *f == file).map(|(_, v)| v);
            let live = live_it.next_if(|((_, f), _)| *f == file).map(|(_, v)| v);
            if done.is_none() && live.is_none() && fv.done >= fv.len {
                continue;
            }
            let usable_disk =
                effective_disk(idx, newp, i, file).filter(|&d| idx.workers[idx.disks[d].worker].usable);
            let mut add = |start: u64, end: u64| {
                out.summary.labels_missing += end - start;
                match usable_disk {
                    Some(disk) => segs.push(Seg {
                        ident: i,
                        file,
                        start,
                        end,
                        disk,
                    }),
                    None => out.summary.labels_blocked += end - start,
                }
            };
            if done.is_none() && live.is_none() {
                add(fv.start + fv.done, fv.end());
                continue;
            }
            let mut cov = vec![(fv.start, fv.start + fv.done)];
            cov.extend(done.into_iter().flatten().copied());
            for &j in live.into_iter().flatten() {
                let job = idx.jobs[j];
                if let Some((_, s, e)) = init_range(idx, i, job) {
                    cov.push(init_remaining(job, s, e));
                }
            }
            for (start, end) in complement(fv.start, fv.end(), cov) {
                add(start, end);
            }
        }
    }

    // 2. Write budget already used per physical device by kept live init jobs: each device counts
    //    once per physical device it writes to (its queued job follows its running one).
    let mut used = vec![0.0f64; idx.phys.len()];
    let mut writing: BTreeSet<(usize, Device, usize)> = BTreeSet::new();
    for (&(i, file), jobs) in &book.init_live {
        // A file placed by this very plan counts as placed: planning the applied plan must see
        // the same disk (and budget) this one does.
        if let Some(d) = effective_disk(idx, newp, i, file) {
            let p = idx.disks[d].phys;
            for &j in jobs {
                if let Some(w) = book.worker[j] {
                    let device = &idx.jobs[j].device;
                    if writing.insert((w, device.clone(), p)) {
                        used[p] += idx.device_rate(w, device);
                    }
                }
            }
        }
    }

    // 3. Idle devices, and devices with room for a queued next job (one leased or running init
    //    job that is not slow, nothing else), each fastest first.
    let room = |w: usize, device: Device| -> bool {
        let q = book.init_queue.get(&(w, device));
        q.is_some_and(|q| {
            q.len() < INIT_QUEUE_DEPTH
                && is_active(idx.jobs[q[0]])
                && slow_rates(idx, w, idx.jobs[q[0]]).is_none()
        })
    };
    // Kept live jobs per worker's CPU, of any kind (an init job queues behind init only).
    let mut cpu_jobs: BTreeMap<usize, usize> = BTreeMap::new();
    for (j, job) in idx.jobs.iter().enumerate() {
        if let (true, Some(w), Device::Cpu) = (book.kept[j], book.worker[j], &job.device) {
            *cpu_jobs.entry(w).or_default() += 1;
        }
    }
    let mut devs: Vec<Dev> = Vec::new();
    let mut next_devs: Vec<Dev> = Vec::new();
    for (w, wk) in idx.workers.iter().enumerate() {
        if !wk.usable {
            continue;
        }
        for g in &wk.gpus {
            let rate = sane(g.labels_per_s);
            if !g.enabled || rate <= 0.0 {
                continue;
            }
            let device = Device::Gpu { index: g.index };
            if !book.busy_gpu.contains(&(w, g.index)) {
                devs.push(Dev {
                    worker: w,
                    device,
                    rate,
                });
            } else if room(w, device.clone()) {
                next_devs.push(Dev {
                    worker: w,
                    device,
                    rate,
                });
            }
        }
        if wk.st.cpu.init_enabled && wk.cpu_labels_per_s > 0.0 && !cpu_reserved.contains(&w) {
            let dev = Dev {
                worker: w,
                device: Device::Cpu,
                rate: wk.cpu_labels_per_s,
            };
            if !book.busy_cpu.contains(&w) {
                devs.push(dev);
            } else if cpu_jobs.get(&w) == Some(&1) && room(w, Device::Cpu) {
                next_devs.push(dev);
            }
        }
    }
    for list in [&mut devs, &mut next_devs] {
        list.sort_by(|a, b| {
            b.rate
                .total_cmp(&a.rate)
                .then(a.worker.cmp(&b.worker))
                .then(a.device.cmp(&b.device))
        });
    }

    let target = |d: usize| Placement {
        worker_id: idx.workers[idx.disks[d].worker].st.id.clone(),
        disk_id: idx.disks[d].st.id.clone(),
    };
    let assignment =
        |seg_ident: usize, file: u32, start: u64, end: u64, disk: usize, dev: &Dev| InitAssignment {
            identity_id: idx.idents[seg_ident].st.id.clone(),
            file_index: file,
            range: LabelRange { start, end },
            worker_id: idx.workers[dev.worker].st.id.clone(),
            device: dev.device.clone(),
            target: target(disk),
            labels_per_s: dev.rate,
            estimated_duration_ms: dur_ms((end - start) as f64, dev.rate),
            stolen_from: None,
        };

    // 4. One range per idle device: first each device's own disks, then (for the devices still
    //    idle) other workers' disks that take streamed labels. Then, the same way, one range queued
    //    next for each device with room, from what the idle devices left.
    let assignable: u64 = segs.iter().map(|s| s.end - s.start).sum();
    // Shares are split among the devices that can take some of the work: every device when some
    // missing labels are on a disk that takes streamed labels, else those of workers with missing
    // labels on their own disks.
    let remote_ok = segs
        .iter()
        .any(|s| idx.workers[idx.disks[s.disk].worker].st.stream_endpoint);
    let local_work: BTreeSet<usize> = segs.iter().map(|s| idx.disks[s.disk].worker).collect();
    let speed_of = |list: &[Dev]| -> f64 {
        list.iter()
            .filter(|d| remote_ok || local_work.contains(&d.worker))
            .map(|d| d.rate)
            .sum()
    };
    let speed = speed_of(&devs);
    let next_speed = speed_of(&next_devs);
    let horizon_s = (cfg.init_horizon_ms.max(0) as f64) / 1000.0;
    let mut busy = vec![false; devs.len()];
    let mut next_busy = vec![false; next_devs.len()];
    // The labels the idle devices left, fixed when the first device with room is served.
    let mut next_assignable: Option<u64> = None;
    let mut assigned = 0u64;
    let mut queues: BTreeMap<usize, VecDeque<usize>> = BTreeMap::new();
    for (k, s) in segs.iter().enumerate() {
        queues.entry(idx.disks[s.disk].phys).or_default().push_back(k);
    }
    let mut heads: BTreeSet<(usize, usize)> = queues
        .iter()
        .filter_map(|(&p, q)| q.front().map(|&k| (k, p)))
        .collect();
    let (n_idle, n_next) = (devs.len(), next_devs.len());
    let order = [(false, false), (false, true), (true, false), (true, true)]
        .into_iter()
        .flat_map(move |(behind, remote)| {
            (0..if behind { n_next } else { n_idle }).map(move |k| (behind, remote, k))
        });
    for (behind, remote, k) in order {
        if heads.is_empty() {
            break;
        }
        let (dev, taken) = if behind {
            (&next_devs[k], next_busy[k])
        } else {
            (&devs[k], busy[k])
        };
        if taken {
            continue;
        }
        let (pool, pool_speed) = if behind {
            let left = *next_assignable.get_or_insert(assignable.saturating_sub(assigned));
            (left, next_speed)
        } else {
            (assignable, speed)
        };
        let share = (pool as f64 * dev.rate / pool_speed)
            .min(horizon_s * dev.rate)
            .round();
        let quota = (share as u64).max(min_chunk);
        let Some(&(s, p)) = heads.iter().find(|&&(s, p)| {
            let disk = segs[s].disk;
            let fits = if remote {
                may_write(idx, dev.worker, disk)
            } else {
                idx.disks[disk].worker == dev.worker
            };
            // A device already writing to this physical device adds no load to it.
            let writes = writing.contains(&(dev.worker, dev.device.clone(), p));
            fits && (writes || budget_ok(used[p], idx.phys[p].write_labels_per_s, dev.rate))
        }) else {
            continue;
        };
        let seg = &mut segs[s];
        let rem = seg.end - seg.start;
        let mut len = quota.min(rem);
        if rem - len < min_chunk {
            len = rem;
        }
        out.init.push(assignment(
            seg.ident,
            seg.file,
            seg.start,
            seg.start + len,
            seg.disk,
            dev,
        ));
        seg.start += len;
        if writing.insert((dev.worker, dev.device.clone(), p)) {
            used[p] += dev.rate;
        }
        assigned += len;
        if behind {
            next_busy[k] = true;
        } else {
            busy[k] = true;
        }
        if seg.start == seg.end {
            heads.remove(&(s, p));
            if let Some(q) = queues.get_mut(&p) {
                q.pop_front();
                if let Some(&next) = q.front() {
                    heads.insert((next, p));
                }
            }
        }
    }
    out.summary.labels_assigned += assigned;
    out.summary.labels_unassigned += assignable - assigned;

    // 5. Steal from slow jobs for the devices still idle.
    let mut slow: Vec<(f64, usize, f64, f64)> = Vec::new(); // (time left, job, observed, expected)
    if busy.iter().any(|b| !b) {
        for (&(i, file), jobs) in &book.init_live {
            let Some(d) = effective_disk(idx, newp, i, file) else {
                continue;
            };
            if !idx.workers[idx.disks[d].worker].usable {
                continue;
            }
            for &j in jobs {
                let job = idx.jobs[j];
                let Some(w) = book.worker[j] else {
                    continue;
                };
                let Some((observed, expected)) = slow_rates(idx, w, job) else {
                    continue;
                };
                let Some((_, s, e)) = init_range(idx, i, job) else {
                    continue;
                };
                let (rs, re) = init_remaining(job, s, e);
                if re - rs < min_chunk.max(2) {
                    continue;
                }
                let left = if observed > 0.0 {
                    (re - rs) as f64 / observed
                } else {
                    f64::INFINITY
                };
                slow.push((left, j, observed, expected));
            }
        }
    }
    slow.sort_by(|a, b| b.0.total_cmp(&a.0).then(idx.jobs[a.1].id.cmp(&idx.jobs[b.1].id)));
    let mut stolen = 0u64;
    // Pieces of at least 2 labels stay non-empty after rounding.
    let min_piece = min_chunk.max(2);
    for (_, j, a, expected) in slow {
        let job = idx.jobs[j];
        let Some(i) = book.ident[j] else { continue };
        let Some((file, s, e)) = init_range(idx, i, job) else {
            continue;
        };
        let Some(d) = effective_disk(idx, newp, i, file) else {
            continue;
        };
        let p = idx.disks[d].phys;
        let (rs, re) = init_remaining(job, s, e);
        let r = (re - rs) as f64;
        let mut chosen: Vec<usize> = Vec::new();
        let mut sum_b = 0.0;
        for k in 0..devs.len() {
            if busy[k] {
                continue;
            }
            let b = devs[k].rate;
            if b <= a {
                break;
            }
            if !may_write(idx, devs[k].worker, d) {
                continue;
            }
            if !budget_ok(used[p], idx.phys[p].write_labels_per_s, b) {
                continue;
            }
            if r * b / (a + sum_b + b) < min_piece as f64 {
                break;
            }
            chosen.push(k);
            sum_b += b;
            used[p] += b;
        }
        if chosen.is_empty() {
            continue;
        }
        // A head too short to be worth keeping is cut at the job's progress: the job ends where it
        // is (its device stays booked until it reports) and the chosen devices share all the rest.
        let keep_head = r * a / (a + sum_b) >= min_piece as f64;
        let denom = if keep_head { a + sum_b } else { sum_b };
        let mut cum = if keep_head { a } else { 0.0 };
        let cut = |cum: f64| rs + ((r * cum / denom).round() as u64).min(re - rs);
        let mut pos = cut(cum);
        out.truncations.push(Truncation {
            job_id: job.id.clone(),
            identity_id: job.identity_id.clone(),
            file_index: file,
            old_end: e,
            new_end: pos,
            expected_labels_per_s: expected,
            observed_labels_per_s: a,
        });
        stolen += re - pos;
        for (n, &k) in chosen.iter().enumerate() {
            cum += devs[k].rate;
            let next = if n + 1 == chosen.len() { re } else { cut(cum) };
            busy[k] = true;
            if next > pos {
                let mut a = assignment(i, file, pos, next, d, &devs[k]);
                a.stolen_from = Some(job.id.clone());
                out.init.push(a);
            }
            pos = next;
        }
    }
    out.summary.labels_stolen += stolen;
    out.summary.idle_devices += busy.iter().filter(|b| !**b).count() as u64;
}
