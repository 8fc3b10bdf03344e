//! Proof planning: k2pow on CPU workers as soon as a challenge is known, then one proving pass per
//! identity, sequenced so no physical device has two readers at once, earliest slack first.
//!
//! Cost model (post.md §6.3-6.4): a pass reads all the identity's bytes; its files are striped over
//! physical devices read in parallel, so the read takes `max over devices (bytes on it / its read
//! speed)`. The worker's CPU handles `C` MiB/s at 16 nonces and `C * 16 / S` at S nonces; a pass
//! runs at the lower of the two rates and uses `rate * S / 16` of `C` (passes on one worker share
//! `C`). A pass needs the k2pow of its S/16 groups first; a group costs
//! `k2pow_hashes_per_unit_group * num_units` RandomX hashes.
//!
//! Order: identities by slack = deadline - now - (duration at the smallest S), then id. Each takes
//! the largest S whose pass ends before its deadline (minus the margin) without ending later than
//! the identities after it on the same physical devices need (back to back at their smallest S);
//! the smallest S, reported at risk, when nothing fits. Passes on one physical device never overlap:
//! each starts after the previous one planned there.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::index::{dur_ms, sane, Index, Place, MIB, NEVER};
use super::jobs::JobBook;
use super::model::{GroupRange, JobKind, JobStatus, LABEL_BYTES};
use super::output::{
    AtRisk, CancelReason, Cancellation, K2powAssignment, Plan, ProofAssignment, ProofBound, ProofSlot,
    RiskReason,
};

/// Nonces of all passes together stay below this (the group number is a u8; post.md §4.3).
const MAX_NONCES: u64 = 4096;

struct Shape {
    worker: usize,
    /// Sorted global physical-device indices.
    phys: Vec<usize>,
    /// Sorted global disk indices.
    disks: Vec<usize>,
    bytes: u64,
    read_s: f64,
}

#[derive(Clone, Copy)]
struct Timing {
    dur: i64,
    /// CPU capacity used, MiB/s at 16 nonces.
    demand: f64,
    bound: ProofBound,
}

fn shape_of(idx: &Index, i: usize, need_usable: bool) -> Result<Shape, RiskReason> {
    let ident = &idx.idents[i];
    let missing: u64 = ident.files.iter().map(|f| f.len - f.done).sum();
    let mut worker: Option<usize> = None;
    let mut several = false;
    // Few physical devices and disks per identity: small vectors beat maps.
    let mut phys_bytes: Vec<(usize, u64)> = Vec::new();
    let mut disks: Vec<usize> = Vec::new();
    for f in &ident.files {
        match f.place {
            Place::Disk(d) => {
                let disk = &idx.disks[d];
                several |= worker.is_some_and(|w| w != disk.worker);
                worker.get_or_insert(disk.worker);
                if disks.last() != Some(&d) {
                    disks.push(d);
                }
                let bytes = f.len.saturating_mul(LABEL_BYTES);
                match phys_bytes.iter_mut().find(|(p, _)| *p == disk.phys) {
                    Some((_, b)) => *b += bytes,
                    None => phys_bytes.push((disk.phys, bytes)),
                }
            }
            Place::Unknown => {
                let (w, d) = ident.unknown_place.unwrap_or(("", ""));
                return Err(RiskReason::DiskMissing {
                    worker_id: w.to_owned(),
                    disk_id: d.to_owned(),
                });
            }
            Place::None => {
                return Err(RiskReason::NotInitialized {
                    labels_missing: missing.max(1),
                })
            }
        }
    }
    if missing > 0 {
        return Err(RiskReason::NotInitialized {
            labels_missing: missing,
        });
    }
    let Some(worker) = worker.filter(|_| !several) else {
        return Err(RiskReason::DataOnSeveralWorkers);
    };
    if need_usable && !idx.workers[worker].usable {
        return Err(RiskReason::StorageUnavailable {
            worker_id: idx.workers[worker].st.id.clone(),
        });
    }
    disks.sort_unstable();
    disks.dedup();
    phys_bytes.sort_unstable();
    let mut read_s: f64 = 0.0;
    for &(p, b) in &phys_bytes {
        let bps = idx.phys[p].read_bps;
        read_s = read_s.max(if bps > 0.0 { b as f64 / bps } else { f64::INFINITY });
    }
    Ok(Shape {
        worker,
        phys: phys_bytes.iter().map(|&(p, _)| p).collect(),
        disks,
        bytes: phys_bytes.iter().map(|&(_, b)| b).sum(),
        read_s,
    })
}

fn timing(idx: &Index, shape: &Shape, nonces: u32) -> Timing {
    let cap = idx.workers[shape.worker].proving_mib16;
    let per16 = f64::from(nonces) / 16.0;
    let read_rate = if shape.read_s > 0.0 {
        shape.bytes as f64 / shape.read_s
    } else {
        f64::INFINITY
    };
    let need = read_rate / MIB * per16;
    let demand = need.min(cap);
    let bound = if need > cap {
        ProofBound::Cpu
    } else {
        ProofBound::Disk
    };
    let rate = demand / per16 * MIB;
    let margin = 1.0 + sane(idx.cfg.proof_time_margin);
    let dur = if shape.bytes == 0 {
        0
    } else {
        dur_ms(shape.bytes as f64 * margin, rate)
    };
    Timing { dur, demand, bound }
}

/// Whether a pass using `a` of the CPU fits beside `ivs` during `[t, t + d)`.
fn cpu_fits(ivs: &[(i64, i64, f64)], t: i64, d: i64, a: f64, cap: f64) -> bool {
    let e = t.saturating_add(d);
    let mut ev: Vec<(i64, u8, f64)> = Vec::new();
    for &(s, en, dm) in ivs {
        if s < e && en > t {
            ev.push((s.max(t), 1, dm));
            ev.push((en.min(e), 0, dm));
        }
    }
    if ev.is_empty() {
        return true;
    }
    ev.sort_by_key(|x| (x.0, x.1));
    let (mut load, mut peak) = (0.0f64, 0.0f64);
    for (_, kind, dm) in ev {
        if kind == 1 {
            load += dm;
            peak = peak.max(load);
        } else {
            load -= dm;
        }
    }
    peak + a <= cap * (1.0 + 1e-9) + 1e-9
}

/// Earliest start at or after `ready` when all of `phys` are free and the CPU has room.
fn earliest_slot(
    ready: i64,
    phys: &[usize],
    disk_free: &[i64],
    ivs: &[(i64, i64, f64)],
    tm: Timing,
    cap: f64,
) -> i64 {
    let t0 = phys.iter().fold(ready, |t, &p| t.max(disk_free[p]));
    if cpu_fits(ivs, t0, tm.dur, tm.demand, cap) {
        return t0;
    }
    let mut ends: Vec<i64> = ivs.iter().map(|iv| iv.1).filter(|&e| e > t0).collect();
    ends.sort_unstable();
    ends.dedup();
    for &e in &ends {
        if cpu_fits(ivs, e, tm.dur, tm.demand, cap) {
            return e;
        }
    }
    ends.last().copied().unwrap_or(t0)
}

/// The k2pow pool: usable workers with a RandomX speed, by the time their queue is free.
struct Pool {
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    rx: Vec<f64>,
    worker: Vec<usize>,
}

impl Pool {
    /// Greedy list scheduling of `groups` (in order), each on the pool worker free first. Returns
    /// (group, pool index, start, end) per group; `commit` keeps the reservations. Greedy is
    /// prefix-consistent: scheduling the first k groups gives the same times as the first k of all.
    fn run(&mut self, hashes: f64, groups: &[u32], commit: bool) -> Vec<(u32, usize, i64, i64)> {
        let m = groups.len().min(self.heap.len());
        let mut popped: Vec<(i64, usize)> = (0..m)
            .filter_map(|_| self.heap.pop().map(|Reverse(e)| e))
            .collect();
        let original = popped.clone();
        let mut out = Vec::with_capacity(groups.len());
        for &g in groups {
            let Some(k) = (0..popped.len()).min_by_key(|&k| popped[k]) else {
                break;
            };
            let (free, p) = popped[k];
            let end = free.saturating_add(dur_ms(hashes, self.rx[p]));
            out.push((g, p, free, end));
            popped[k].0 = end;
        }
        let back = if commit { popped } else { original };
        for e in back {
            self.heap.push(Reverse(e));
        }
        out
    }
}

enum G {
    Done,
    Live(i64),
    Missing,
}

struct Cand {
    ident: usize,
    shape: Shape,
    base: u32,
    /// (nonces, timing), largest nonces first.
    opts: Vec<(u32, Timing)>,
    slack: i64,
    deadline: i64,
    d_min: i64,
}

pub(crate) fn plan(idx: &Index, book: &mut JobBook, out: &mut Plan) -> BTreeSet<usize> {
    let now = idx.now;
    let cfg = idx.cfg;
    let margin = cfg.deadline_margin_ms.max(0);
    let mut reserved: BTreeSet<usize> = BTreeSet::new();

    // Live k2pow: each worker runs its jobs one after another.
    let mut queue_end = vec![now; idx.workers.len()];
    let mut live_ready: BTreeMap<usize, Vec<(u32, u32, i64)>> = BTreeMap::new();
    let mut live: Vec<usize> = book.k2pow_live.clone();
    live.sort_by_key(|&j| {
        let job = idx.jobs[j];
        let rank = u8::from(job.state == JobStatus::Queued);
        (
            book.worker[j],
            rank,
            job.not_before_ms.unwrap_or(now),
            job.id.as_str(),
        )
    });
    for j in live {
        let job = idx.jobs[j];
        let (Some(w), Some(i), JobKind::K2pow { groups }) = (book.worker[j], book.ident[j], &job.kind) else {
            continue;
        };
        let rs = u64::from(groups.start)
            .saturating_add(job.progress)
            .min(u64::from(groups.end)) as u32;
        let rx = if idx.workers[w].rx > 0.0 {
            idx.workers[w].rx
        } else {
            sane(cfg.default_randomx_hashes_per_s)
        };
        let left = f64::from(groups.end - rs) * idx.idents[i].hashes_per_group;
        let end = queue_end[w].saturating_add(dur_ms(left, rx));
        queue_end[w] = end;
        live_ready.entry(i).or_default().push((rs, groups.end, end));
        reserved.insert(w);
    }
    let mut pool = Pool {
        heap: BinaryHeap::new(),
        rx: Vec::new(),
        worker: Vec::new(),
    };
    for (w, wk) in idx.workers.iter().enumerate() {
        if wk.usable && wk.rx > 0.0 {
            pool.heap.push(Reverse((queue_end[w], pool.rx.len())));
            pool.rx.push(wk.rx);
            pool.worker.push(w);
        }
    }

    let mut disk_free = vec![now; idx.phys.len()];
    let mut disk_owner: Vec<Option<usize>> = vec![None; idx.phys.len()];
    let mut cpu: Vec<Vec<(i64, i64, f64)>> = vec![Vec::new(); idx.workers.len()];

    // Outputs with integer sort keys (ids sort like indices): k2pow by (identity, first group),
    // timeline by (worker, start, identity).
    let mut k2: Vec<(usize, K2powAssignment)> = Vec::new();
    let mut slots: Vec<((usize, i64, usize), ProofSlot)> = Vec::new();
    let emit_k2pow = |k2: &mut Vec<(usize, K2powAssignment)>,
                      reserved: &mut BTreeSet<usize>,
                      pool: &Pool,
                      i: usize,
                      recs: &[(u32, usize, i64, i64)]| {
        let h = idx.idents[i].hashes_per_group;
        let mut cur: Option<K2powAssignment> = None;
        let mut cur_pool = usize::MAX;
        for &(g, p, s, e) in recs {
            if let Some(c) = cur.as_mut() {
                if cur_pool == p && c.groups.end == g && c.estimated_end_ms == s {
                    c.groups.end = g + 1;
                    c.hashes += h;
                    c.estimated_end_ms = e;
                    continue;
                }
            }
            if let Some(c) = cur.take() {
                k2.push((i, c));
            }
            let w = pool.worker[p];
            reserved.insert(w);
            cur_pool = p;
            cur = Some(K2powAssignment {
                identity_id: idx.idents[i].st.id.clone(),
                worker_id: idx.workers[w].st.id.clone(),
                groups: GroupRange { start: g, end: g + 1 },
                hashes: h,
                estimated_start_ms: s,
                estimated_end_ms: e,
            });
        }
        if let Some(c) = cur {
            k2.push((i, c));
        }
    };

    // Live proofs: running ones hold their disks from now; queued ones are sequenced after them.
    let mut live_proofs: Vec<(usize, usize)> = book.prove_live.iter().map(|(&i, &j)| (i, j)).collect();
    live_proofs.sort_by_key(|&(_, j)| {
        let job = idx.jobs[j];
        let rank = u8::from(job.state == JobStatus::Queued);
        (rank, job.not_before_ms.unwrap_or(now), job.id.as_str())
    });
    let mut has_live = vec![false; idx.idents.len()];
    let mut gap_fill: Vec<(i64, usize, u32, u32)> = Vec::new();
    for (i, j) in live_proofs {
        let job = idx.jobs[j];
        let ident = &idx.idents[i];
        let (
            JobKind::Prove {
                first_nonce, nonces, ..
            },
            Some(need),
        ) = (&job.kind, &ident.st.proving)
        else {
            continue;
        };
        let base = first_nonce / 16;
        let Ok(shape) = shape_of(idx, i, false) else {
            has_live[i] = true;
            gap_fill.push((need.deadline_ms, i, base, nonces / 16));
            continue;
        };
        let tm = timing(idx, &shape, *nonces);
        let running = matches!(job.state, JobStatus::Running | JobStatus::Leased);
        let w = shape.worker;
        let cap = idx.workers[w].proving_mib16;
        let start = if running {
            if let Some(&p) = shape.phys.iter().find(|&&p| disk_free[p] > now) {
                let kept = disk_owner[p].map(|k| idx.jobs[k].id.clone()).unwrap_or_default();
                out.cancellations.push(Cancellation {
                    job_id: job.id.clone(),
                    identity_id: job.identity_id.clone(),
                    worker_id: job.worker_id.clone(),
                    kind: job.kind.name(),
                    reason: CancelReason::Overlaps { kept_job_id: kept },
                });
                book.release(idx, j);
                continue;
            }
            now
        } else {
            earliest_slot(
                now.max(job.not_before_ms.unwrap_or(now)),
                &shape.phys,
                &disk_free,
                &cpu[w],
                tm,
                cap,
            )
        };
        let total = ident.num_labels.max(1) as f64;
        let left = 1.0 - (job.progress.min(ident.num_labels) as f64 / total);
        let end = start.saturating_add((tm.dur as f64 * left).ceil() as i64);
        for &p in &shape.phys {
            disk_free[p] = end;
            disk_owner[p] = Some(j);
        }
        cpu[w].push((start, end, tm.demand));
        reserved.insert(w);
        slots.push((
            (w, start, i),
            ProofSlot {
                identity_id: ident.st.id.clone(),
                job_id: Some(job.id.clone()),
                worker_id: idx.workers[w].st.id.clone(),
                physical_devices: shape.phys.iter().map(|&p| idx.phys[p].name.to_owned()).collect(),
                start_ms: start,
                end_ms: end,
                cpu_demand_mib_s: tm.demand,
            },
        ));
        if end > need.deadline_ms.saturating_sub(margin) {
            out.at_risk.push(AtRisk {
                identity_id: ident.st.id.clone(),
                deadline_ms: need.deadline_ms,
                reason: RiskReason::LiveProofLate {
                    job_id: job.id.clone(),
                    estimated_end_ms: end,
                },
            });
        }
        has_live[i] = true;
        gap_fill.push((need.deadline_ms, i, base, nonces / 16));
    }

    let status = |i: usize, base: u32, count: u32| -> Vec<G> {
        let need_done = idx.idents[i].st.proving.as_ref().map_or(0, |n| n.pow_groups_done);
        let done = book.k2pow_done.get(&i);
        let lr = live_ready.get(&i);
        (0..count)
            .map(|g| {
                let abs = base + g;
                if g < need_done || done.is_some_and(|v| v.iter().any(|&(s, e)| s <= abs && abs < e)) {
                    G::Done
                } else if let Some(&(_, _, t)) =
                    lr.and_then(|v| v.iter().find(|&&(s, e, _)| s <= abs && abs < e))
                {
                    G::Live(t)
                } else {
                    G::Missing
                }
            })
            .collect()
    };
    // k2pow a live proof still lacks (its k2pow job was lost).
    gap_fill.sort_unstable();
    for (deadline, i, base, count) in gap_fill {
        let st = status(i, base, count);
        let missing: Vec<u32> = (0..count)
            .filter(|&g| matches!(st[g as usize], G::Missing))
            .map(|g| base + g)
            .collect();
        if missing.is_empty() {
            continue;
        }
        if pool.rx.is_empty() {
            out.at_risk.push(AtRisk {
                identity_id: idx.idents[i].st.id.clone(),
                deadline_ms: deadline,
                reason: RiskReason::NoK2powCapacity,
            });
            continue;
        }
        let recs = pool.run(idx.idents[i].hashes_per_group, &missing, true);
        emit_k2pow(&mut k2, &mut reserved, &pool, i, &recs);
    }

    // Candidates for a new pass.
    let mut cands: Vec<Cand> = Vec::new();
    for (i, ident) in idx.idents.iter().enumerate() {
        let Some(need) = &ident.st.proving else { continue };
        if !ident.st.state.is_active() {
            continue;
        }
        out.summary.proofs_pending += 1;
        if has_live[i] {
            continue;
        }
        let risk = |reason| AtRisk {
            identity_id: ident.st.id.clone(),
            deadline_ms: need.deadline_ms,
            reason,
        };
        let mut nonces: Vec<u32> = cfg
            .nonce_options
            .iter()
            .copied()
            .filter(|&s| s > 0 && s % 16 == 0 && u64::from(need.first_nonce) + u64::from(s) <= MAX_NONCES)
            .collect();
        nonces.sort_unstable_by(|a, b| b.cmp(a));
        nonces.dedup();
        if nonces.is_empty() {
            out.at_risk.push(risk(RiskReason::NoncesExhausted {
                first_nonce: need.first_nonce,
            }));
            continue;
        }
        let shape = match shape_of(idx, i, true) {
            Ok(s) => s,
            Err(reason) => {
                out.at_risk.push(risk(reason));
                continue;
            }
        };
        let opts: Vec<(u32, Timing)> = nonces.iter().map(|&s| (s, timing(idx, &shape, s))).collect();
        let d_min = opts.last().map_or(NEVER, |o| o.1.dur);
        cands.push(Cand {
            ident: i,
            shape,
            base: need.first_nonce / 16,
            opts,
            slack: need.deadline_ms.saturating_sub(now).saturating_sub(d_min),
            deadline: need.deadline_ms,
            d_min,
        });
    }
    cands.sort_by_key(|c| (c.slack, c.ident));

    // Latest end each candidate may take so the later ones on its devices still fit (at their
    // smallest S, back to back).
    let mut per_phys: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (pos, c) in cands.iter().enumerate() {
        for &p in &c.shape.phys {
            per_phys.entry(p).or_default().push(pos);
        }
    }
    let mut limit = vec![i128::MAX; cands.len()];
    for list in per_phys.values() {
        let mut prefix = Vec::with_capacity(list.len());
        let mut acc: i128 = 0;
        for &pos in list {
            acc += i128::from(cands[pos].d_min);
            prefix.push(acc);
        }
        let mut m = i128::MAX;
        for k in (0..list.len()).rev() {
            let pos = list[k];
            if m != i128::MAX {
                limit[pos] = limit[pos].min(prefix[k] + m);
            }
            m = m.min(i128::from(cands[pos].deadline) - i128::from(margin) - prefix[k]);
        }
    }

    let p_nonce = idx.cfg.nonce_success_probability.clamp(0.0, 1.0);
    for (pos, c) in cands.iter().enumerate() {
        let ident = &idx.idents[c.ident];
        let Some(need) = &ident.st.proving else { continue };
        let g_max = c.opts.first().map_or(0, |o| o.0 / 16);
        let st = status(c.ident, c.base, g_max);
        let missing: Vec<u32> = (0..g_max)
            .filter(|&g| matches!(st[g as usize], G::Missing))
            .map(|g| c.base + g)
            .collect();
        if !missing.is_empty() && pool.rx.is_empty() {
            out.at_risk.push(AtRisk {
                identity_id: ident.st.id.clone(),
                deadline_ms: c.deadline,
                reason: RiskReason::NoK2powCapacity,
            });
            continue;
        }
        let h = ident.hashes_per_group;
        let sim = pool.run(h, &missing, false);
        let w = c.shape.worker;
        let cap = idx.workers[w].proving_mib16;
        let open = now.max(need.challenge_known_at_ms);
        // (nonces, timing, k2pow ready, start, end)
        let results: Vec<(u32, Timing, i64, i64, i64)> = c
            .opts
            .iter()
            .map(|&(s, tm)| {
                let gend = c.base + s / 16;
                let live = st
                    .iter()
                    .take((s / 16) as usize)
                    .filter_map(|g| if let G::Live(t) = g { Some(*t) } else { None })
                    .max()
                    .unwrap_or(now);
                let new = sim
                    .iter()
                    .filter(|r| r.0 < gend)
                    .map(|r| r.3)
                    .max()
                    .unwrap_or(now);
                let ready = live.max(new);
                let start = earliest_slot(open.max(ready), &c.shape.phys, &disk_free, &cpu[w], tm, cap);
                (s, tm, ready, start, start.saturating_add(tm.dur))
            })
            .collect();
        let Some(&last) = results.last() else { continue };
        let fits_by = c.deadline.saturating_sub(margin);
        let chosen = results
            .iter()
            .copied()
            .find(|r| r.4 <= fits_by && (i128::from(r.4) <= limit[pos] || r.4 <= last.4))
            .unwrap_or(last);
        let (s, tm, ready, start, end) = chosen;
        if end > fits_by {
            out.at_risk.push(AtRisk {
                identity_id: ident.st.id.clone(),
                deadline_ms: c.deadline,
                reason: RiskReason::WindowTooShort {
                    nonces: s,
                    estimated_end_ms: end,
                },
            });
        }
        let gend = c.base + s / 16;
        let take: Vec<u32> = missing.iter().copied().filter(|&g| g < gend).collect();
        if !take.is_empty() {
            let recs = pool.run(h, &take, true);
            emit_k2pow(&mut k2, &mut reserved, &pool, c.ident, &recs);
        }
        for &p in &c.shape.phys {
            disk_free[p] = end;
        }
        cpu[w].push((start, end, tm.demand));
        reserved.insert(w);
        let phys_names: Vec<String> = c
            .shape
            .phys
            .iter()
            .map(|&p| idx.phys[p].name.to_owned())
            .collect();
        slots.push((
            (w, start, c.ident),
            ProofSlot {
                identity_id: ident.st.id.clone(),
                job_id: None,
                worker_id: idx.workers[w].st.id.clone(),
                physical_devices: phys_names.clone(),
                start_ms: start,
                end_ms: end,
                cpu_demand_mib_s: tm.demand,
            },
        ));
        out.proofs.push(ProofAssignment {
            identity_id: ident.st.id.clone(),
            worker_id: idx.workers[w].st.id.clone(),
            disks: c
                .shape
                .disks
                .iter()
                .map(|&d| idx.disks[d].st.id.clone())
                .collect(),
            physical_devices: phys_names,
            first_nonce: need.first_nonce,
            nonces: s,
            success_probability: 1.0 - (1.0 - p_nonce).powi(s as i32),
            k2pow_ready_ms: ready,
            start_ms: start,
            estimated_duration_ms: tm.dur,
            deadline_ms: c.deadline,
            slack_ms: c.slack,
            margin_ms: c.deadline.saturating_sub(end),
            bound: tm.bound,
            bytes: c.shape.bytes,
        });
    }
    k2.sort_by_key(|(i, k)| (*i, k.groups.start));
    out.k2pow.extend(k2.into_iter().map(|(_, k)| k));
    slots.sort_by_key(|(key, _)| *key);
    out.proof_timeline.extend(slots.into_iter().map(|(_, t)| t));
    reserved
}
