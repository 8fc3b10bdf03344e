//! Which PoET phase each identity smeshes in, and the cycle it registers for next (pure, no I/O).
//!
//! PoETs with different phase shifts end their rounds at different times of the epoch, so the
//! identities registered with them prove in different cycle gaps. Spreading the fleet over the
//! phases spreads its proving load: every disk holds about as many bytes to read in one gap as in
//! another, and the k2pow work is split too. The assignment is sticky: moving an identity to an
//! earlier phase would cost it an epoch (its next challenge names the ATX it has not published
//! yet when the earlier round starts), so only identities without a phase are placed, each where
//! it adds least to the busiest disk it is on:
//!
//! ```text
//! for each unplaced identity, largest first (ties: id):
//!     phase = argmin over phases of ( max over its disks d of load[phase][d] + bytes_on(d),
//!                                     total[phase] + bytes, phase order )
//! ```
//!
//! For identities on one disk each this keeps, per disk, the loads of any two phases within the
//! largest identity's bytes (the greedy always adds to the lighter phase).

use std::collections::{BTreeMap, HashMap};

use node_bridge::bridge::{AtxInfo, PoetInfo};
use node_bridge::clock::{BuilderTimeline, Clock, ClockError, ClockParams};
use post::data::Layout;
use uuid::Uuid;

use super::builder::PoetSchedule;
use crate::store::{Identity, IdentityFile};

/// A disk: the worker it is on and its id there.
pub type DiskKey = (Option<Uuid>, Option<String>);

/// What one identity reads when it proves: its bytes on each disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvingLoad {
    pub identity: Uuid,
    pub bytes_by_disk: BTreeMap<DiskKey, u64>,
}

impl ProvingLoad {
    pub fn total(&self) -> u64 {
        self.bytes_by_disk
            .values()
            .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// Places `unplaced` on `phases` (phase shifts in ms, in the order that breaks ties) given the
/// identities already `placed` with their phase. Returns one phase per unplaced identity, in
/// the order placed. An empty `phases` places nothing.
pub fn assign_phases(
    phases: &[u64],
    placed: &[(ProvingLoad, u64)],
    unplaced: &[ProvingLoad],
) -> Vec<(Uuid, u64)> {
    if phases.is_empty() {
        return Vec::new();
    }
    let mut load: HashMap<(u64, &DiskKey), u64> = HashMap::new();
    let mut total: HashMap<u64, u64> = HashMap::new();
    for (l, phase) in placed {
        for (disk, bytes) in &l.bytes_by_disk {
            let e = load.entry((*phase, disk)).or_default();
            *e = e.saturating_add(*bytes);
        }
        let t = total.entry(*phase).or_default();
        *t = t.saturating_add(l.total());
    }
    let mut order: Vec<&ProvingLoad> = unplaced.iter().collect();
    order.sort_by(|a, b| b.total().cmp(&a.total()).then(a.identity.cmp(&b.identity)));
    let mut out = Vec::with_capacity(order.len());
    for l in order {
        let cost = |phase: u64| {
            let busiest = l
                .bytes_by_disk
                .iter()
                .map(|(disk, bytes)| {
                    load.get(&(phase, disk))
                        .copied()
                        .unwrap_or(0)
                        .saturating_add(*bytes)
                })
                .max()
                .unwrap_or(0);
            let t = total.get(&phase).copied().unwrap_or(0).saturating_add(l.total());
            (busiest, t)
        };
        let Some(best) = phases
            .iter()
            .enumerate()
            .min_by_key(|(i, p)| {
                let (busiest, t) = cost(**p);
                (busiest, t, *i)
            })
            .map(|(_, p)| *p)
        else {
            continue;
        };
        for (disk, bytes) in &l.bytes_by_disk {
            let e = load.entry((best, disk)).or_default();
            *e = e.saturating_add(*bytes);
        }
        let t = total.entry(best).or_default();
        *t = t.saturating_add(l.total());
        out.push((l.identity, best));
    }
    out
}

/// What each identity reads when it proves, from its file placements (one pass over the files).
/// An identity whose files are not placed (imported data) counts its whole size on a disk of its
/// own; one whose layout is invalid is left out.
pub(super) fn proving_loads(identities: &[Identity], files: &[IdentityFile]) -> HashMap<Uuid, ProvingLoad> {
    let layouts: HashMap<Uuid, Layout> = identities
        .iter()
        .filter_map(|i| {
            Layout::new(i.num_units, i.labels_per_unit, i.max_file_size)
                .ok()
                .map(|l| (i.id, l))
        })
        .collect();
    let mut loads: HashMap<Uuid, ProvingLoad> = layouts
        .keys()
        .map(|&id| {
            (
                id,
                ProvingLoad {
                    identity: id,
                    bytes_by_disk: BTreeMap::new(),
                },
            )
        })
        .collect();
    for f in files {
        let (Some(layout), Some(load)) = (layouts.get(&f.identity_id), loads.get_mut(&f.identity_id)) else {
            continue;
        };
        let bytes = load
            .bytes_by_disk
            .entry((f.worker_id, f.disk_id.clone()))
            .or_default();
        *bytes = bytes.saturating_add(layout.file_size(f.file_index));
    }
    for (id, load) in &mut loads {
        if load.bytes_by_disk.is_empty() {
            let total = layouts.get(id).map_or(0, Layout::total_bytes);
            load.bytes_by_disk.insert((None, Some(id.to_string())), total);
        }
    }
    loads
}

/// The distinct round schedules of the node's PoETs, in the node's order, that fit its clock
/// (same genesis, cycle = epoch, a phase that leaves the grace period before the first round).
pub(super) fn poet_schedules(params: &ClockParams, poets: &[PoetInfo]) -> Vec<PoetSchedule> {
    let mut out: Vec<PoetSchedule> = Vec::new();
    for p in poets {
        let s = PoetSchedule::of(p);
        let fits = p.genesis_ms == params.genesis_ms
            && params.epoch_duration_ms() == Some(p.cycle_ms)
            && params
                .with_poet_schedule(s.phase_shift_ms, s.cycle_gap_ms)
                .validate()
                .is_ok();
        if fits && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The next cycle at `now`: in the identity's phase, unless the identity has an ATX and another
/// phase's round takes the registration for an earlier publish epoch (its own round has started:
/// "a missed round retries in the next phase"). Without schedules, `clock`'s.
pub(super) fn next_cycle(
    clock: &Clock,
    params: &ClockParams,
    schedules: &[PoetSchedule],
    assigned: Option<PoetSchedule>,
    now: u64,
    previous: Option<&AtxInfo>,
) -> Result<(Option<PoetSchedule>, BuilderTimeline), ClockError> {
    let prev = previous.map(|p| p.publish_epoch);
    let mut best: Option<(Option<PoetSchedule>, BuilderTimeline)> = None;
    // A first cycle waits for its own phase: nothing is missed yet, and a move would be for
    // good (the spread the placement made would be lost to the time init happened to end).
    let first = previous.is_none() && assigned.is_some();
    for s in schedules.iter().filter(|s| !first || Some(**s) == assigned) {
        let Ok(clock) = Clock::new(params.with_poet_schedule(s.phase_shift_ms, s.cycle_gap_ms)) else {
            continue;
        };
        let t = clock.builder_timeline(now, prev)?;
        let better = best.as_ref().is_none_or(|(bs, bt)| {
            (t.publish_epoch, Some(*s) != assigned) < (bt.publish_epoch, *bs != assigned)
        });
        if better {
            best = Some((Some(*s), t));
        }
    }
    match best {
        Some(b) => Ok(b),
        None => Ok((None, clock.builder_timeline(now, prev)?)),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn load(id: u128, disks: &[(u8, u64)]) -> ProvingLoad {
        ProvingLoad {
            identity: Uuid::from_u128(id),
            bytes_by_disk: disks
                .iter()
                .map(|(d, b)| ((Some(Uuid::from_u128(1)), Some(format!("disk{d}"))), *b))
                .collect(),
        }
    }

    #[test]
    fn equal_identities_on_one_disk_alternate() {
        let ids: Vec<ProvingLoad> = (0..6).map(|i| load(i, &[(0, 100)])).collect();
        let out = assign_phases(&[40_000, 20_000], &[], &ids);
        let early = out.iter().filter(|(_, p)| *p == 20_000).count();
        assert_eq!((out.len(), early), (6, 3));
    }

    #[test]
    fn placed_identities_count_and_are_not_moved() {
        let placed = vec![(load(1, &[(0, 300)]), 40_000)];
        let new = vec![load(2, &[(0, 100)]), load(3, &[(0, 100)]), load(4, &[(0, 100)])];
        let out = assign_phases(&[40_000, 20_000], &placed, &new);
        assert!(out.iter().all(|(_, p)| *p == 20_000), "{out:?}");
        assert!(out.iter().all(|(id, _)| *id != Uuid::from_u128(1)));
    }

    #[test]
    fn the_busiest_disk_decides_for_a_striped_identity() {
        // disk 0 is loaded in the late phase, disk 1 in the early one; a striped identity with
        // most of its bytes on disk 0 goes early.
        let placed = vec![(load(1, &[(0, 500)]), 40_000), (load(2, &[(1, 400)]), 20_000)];
        let out = assign_phases(&[40_000, 20_000], &placed, &[load(3, &[(0, 300), (1, 100)])]);
        assert_eq!(out, vec![(Uuid::from_u128(3), 20_000)]);
    }

    #[test]
    fn no_phases_places_nothing() {
        assert!(assign_phases(&[], &[], &[load(1, &[(0, 1)])]).is_empty());
    }

    proptest! {
        #[test]
        fn per_disk_loads_stay_within_the_largest_identity(
            items in proptest::collection::vec((0u8..4, 1u64..1_000), 1..60),
            nphases in 1usize..4,
        ) {
            let phases: Vec<u64> = (0..nphases as u64).map(|i| 10_000 * (i + 1)).collect();
            let loads: Vec<ProvingLoad> = items
                .iter()
                .enumerate()
                .map(|(i, (d, b))| load(i as u128 + 10, &[(*d, *b)]))
                .collect();
            let out = assign_phases(&phases, &[], &loads);
            prop_assert_eq!(out.len(), loads.len());
            let again = assign_phases(&phases, &[], &loads);
            prop_assert_eq!(&out, &again, "deterministic");
            let phase_of: HashMap<Uuid, u64> = out.iter().copied().collect();
            for disk in 0u8..4 {
                let on: Vec<&ProvingLoad> = loads
                    .iter()
                    .filter(|l| l.bytes_by_disk.keys().any(|(_, d)| d.as_deref() == Some(&format!("disk{disk}")[..])))
                    .collect();
                let largest = on.iter().map(|l| l.total()).max().unwrap_or(0);
                let per_phase: Vec<u64> = phases
                    .iter()
                    .map(|p| on.iter().filter(|l| phase_of[&l.identity] == *p).map(|l| l.total()).sum())
                    .collect();
                let (lo, hi) = (per_phase.iter().min().copied().unwrap_or(0), per_phase.iter().max().copied().unwrap_or(0));
                prop_assert!(hi - lo <= largest, "disk {disk}: {per_phase:?}, largest {largest}");
            }
        }
    }
}
