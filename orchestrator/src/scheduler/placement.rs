//! File placement: every file of an identity wholly on one disk, all of an identity's files on one
//! worker (one worker reads a whole pass), striped over that worker's physical devices so a pass
//! reads them in parallel. Disks are never over-committed: bytes still to be written by files already
//! placed, and by files placed now, never exceed a disk's free bytes minus the reserve.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use super::index::{Index, Place};
use super::model::LABEL_BYTES;
use super::output::{FilePlacement, PlacementDecision, Plan, Unplaced, UnplacedReason};

/// Workers tried for one identity before giving up (each a full simulation).
const MAX_TRIES: usize = 64;

/// New placements: per identity, per file, the global disk index (`usize::MAX`: none); an identity
/// without new placements has an empty vector.
pub(crate) struct NewPlacements {
    files: Vec<Vec<usize>>,
}

impl NewPlacements {
    fn get(&self, ident: usize, file: u32) -> Option<usize> {
        self.files
            .get(ident)?
            .get(file as usize)
            .copied()
            .filter(|&d| d != usize::MAX)
    }
}

/// The disk a file is (or is now) placed on.
pub(crate) fn effective_disk(idx: &Index, newp: &NewPlacements, ident: usize, file: u32) -> Option<usize> {
    match idx.idents[ident].files.get(file as usize)?.place {
        Place::Disk(d) => Some(d),
        Place::None => newp.get(ident, file),
        Place::Unknown => None,
    }
}

/// Bytes each disk can still take: free minus reserve minus what placed files will still write.
pub(crate) fn disk_available(idx: &Index) -> Vec<i128> {
    let reserve = i128::from(idx.cfg.disk_reserve_bytes);
    let mut avail: Vec<i128> = idx
        .disks
        .iter()
        .map(|d| i128::from(d.st.free_bytes) - reserve)
        .collect();
    for ident in &idx.idents {
        for f in &ident.files {
            if let Place::Disk(d) = f.place {
                avail[d] -= i128::from(f.remaining_bytes());
            }
        }
    }
    avail
}

fn worker_total(idx: &Index, avail: &[i128], w: usize) -> i128 {
    idx.workers[w].disks.iter().map(|&d| avail[d].max(0)).sum()
}

pub(crate) fn place(idx: &Index, out: &mut Plan) -> NewPlacements {
    let mut newp = NewPlacements {
        files: vec![Vec::new(); idx.idents.len()],
    };
    let mut avail = disk_available(idx);
    let mut totals: Vec<i128> = (0..idx.workers.len())
        .map(|w| worker_total(idx, &avail, w))
        .collect();
    let mut order: BTreeSet<(Reverse<i128>, usize)> = (0..idx.workers.len())
        .filter(|&w| idx.workers[w].usable && !idx.workers[w].disks.is_empty())
        .map(|w| (Reverse(totals[w]), w))
        .collect();

    let mut decisions: Vec<(usize, PlacementDecision)> = Vec::new();
    let mut placed_files: u64 = 0;
    for i in idx.init_order() {
        let ident = &idx.idents[i];
        let needed: Vec<(u32, u64)> = ident
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.place == Place::None && f.remaining_bytes() > 0)
            .filter_map(|(k, f)| Some((u32::try_from(k).ok()?, f.remaining_bytes())))
            .collect();
        if needed.is_empty() {
            continue;
        }
        if !decisions.is_empty() && placed_files + needed.len() as u64 > idx.cfg.max_files_placed_per_plan {
            // Enough for one plan; the rest are placed by the next ones (not "unplaced").
            break;
        }
        let files = u32::try_from(needed.len()).unwrap_or(u32::MAX);
        let unplaced = |reason| Unplaced {
            identity_id: ident.st.id.clone(),
            files,
            reason,
        };
        if let Some((worker_id, _)) = ident.unknown_place {
            out.unplaced
                .push(unplaced(UnplacedReason::StorageWorkerUnavailable {
                    worker_id: worker_id.to_owned(),
                }));
            continue;
        }
        let homes: BTreeSet<usize> = ident
            .files
            .iter()
            .filter_map(|f| match f.place {
                Place::Disk(d) => Some(idx.disks[d].worker),
                _ => None,
            })
            .collect();
        if homes.len() > 1 {
            out.unplaced.push(unplaced(UnplacedReason::DataOnSeveralWorkers));
            continue;
        }
        // Read time already committed per physical device for this identity (whole files).
        let mut phys_time: BTreeMap<usize, f64> = BTreeMap::new();
        for f in &ident.files {
            if let Place::Disk(d) = f.place {
                let p = idx.disks[d].phys;
                *phys_time.entry(p).or_default() += read_secs(idx, p, f.len.saturating_mul(LABEL_BYTES));
            }
        }
        let needed_total: i128 = needed.iter().map(|&(_, b)| i128::from(b)).sum();
        let candidates: Vec<usize> = match homes.first() {
            Some(&home) if !idx.workers[home].usable => {
                out.unplaced
                    .push(unplaced(UnplacedReason::StorageWorkerUnavailable {
                        worker_id: idx.workers[home].st.id.clone(),
                    }));
                continue;
            }
            Some(&home) => vec![home],
            None => order
                .iter()
                .take_while(|(Reverse(t), _)| *t >= needed_total)
                .take(MAX_TRIES)
                .map(|&(_, w)| w)
                .collect(),
        };
        let found = candidates
            .iter()
            .find_map(|&w| try_place(idx, w, &needed, &avail, &phys_time).map(|a| (w, a)));
        let Some((w, assignment)) = found else {
            let largest = match homes.first() {
                Some(&home) => totals[home],
                None => order.first().map_or(0, |(Reverse(t), _)| *t),
            };
            out.unplaced.push(unplaced(UnplacedReason::NoSpace {
                needed_bytes: u64::try_from(needed_total).unwrap_or(u64::MAX),
                largest_worker_free_bytes: u64::try_from(largest.max(0)).unwrap_or(u64::MAX),
            }));
            continue;
        };
        let worker = &idx.workers[w];
        let mut mine = vec![usize::MAX; ident.files.len()];
        let mut files = Vec::with_capacity(needed.len());
        for ((file, bytes), d) in needed.iter().zip(assignment) {
            avail[d] -= i128::from(*bytes);
            mine[*file as usize] = d;
            files.push(FilePlacement {
                file_index: *file,
                disk_id: idx.disks[d].st.id.clone(),
                bytes: *bytes,
            });
        }
        newp.files[i] = mine;
        placed_files += needed.len() as u64;
        decisions.push((
            i,
            PlacementDecision {
                identity_id: ident.st.id.clone(),
                worker_id: worker.st.id.clone(),
                files,
            },
        ));
        order.remove(&(Reverse(totals[w]), w));
        totals[w] = worker_total(idx, &avail, w);
        if worker.usable {
            order.insert((Reverse(totals[w]), w));
        }
    }
    // By identity (ids sort like indices).
    decisions.sort_by_key(|(i, _)| *i);
    out.placements.reserve(decisions.len());
    out.placements.extend(decisions.into_iter().map(|(_, d)| d));
    newp
}

fn read_secs(idx: &Index, phys: usize, bytes: u64) -> f64 {
    let bps = idx.phys[phys].read_bps;
    if bps > 0.0 {
        bytes as f64 / bps
    } else {
        f64::INFINITY
    }
}

/// Disks for `needed` files on worker `w` (in the same order), or None when one does not fit. Each
/// file goes to the disk whose physical device would then take the least read time for this identity
/// (ties: more room, then lower index).
fn try_place(
    idx: &Index,
    w: usize,
    needed: &[(u32, u64)],
    avail: &[i128],
    phys_time: &BTreeMap<usize, f64>,
) -> Option<Vec<usize>> {
    let disks = &idx.workers[w].disks;
    // A worker's physical devices have consecutive indices: index them locally.
    let base = disks.iter().map(|&d| idx.disks[d].phys).min()?;
    let slot: Vec<usize> = disks.iter().map(|&d| idx.disks[d].phys - base).collect();
    let mut times = vec![0.0f64; slot.iter().max().map_or(0, |m| m + 1)];
    for (&p, &t) in phys_time.range(base..base + times.len()) {
        times[p - base] = t;
    }
    let mut local: Vec<i128> = disks.iter().map(|&d| avail[d]).collect();
    let bps: Vec<f64> = disks
        .iter()
        .map(|&d| idx.phys[idx.disks[d].phys].read_bps)
        .collect();
    let mut result = Vec::with_capacity(needed.len());
    for &(_, bytes) in needed {
        let b = i128::from(bytes);
        let mut best: Option<(f64, i128, usize)> = None;
        for k in 0..disks.len() {
            if local[k] < b {
                continue;
            }
            let t = times[slot[k]]
                + if bps[k] > 0.0 {
                    bytes as f64 / bps[k]
                } else {
                    f64::INFINITY
                };
            let better = match best {
                None => true,
                Some((bt, bl, bk)) => t.total_cmp(&bt).then(bl.cmp(&local[k])).then(k.cmp(&bk)).is_lt(),
            };
            if better {
                best = Some((t, local[k], k));
            }
        }
        let (t, _, k) = best?;
        local[k] -= b;
        times[slot[k]] = t;
        result.push(disks[k]);
    }
    Some(result)
}
