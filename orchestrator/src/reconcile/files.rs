//! The fleet's files, kept in memory between reconcile passes.
//!
//! A fleet of 10,000 mainnet identities has 640,000 file rows; reading them (and their recorded
//! init ranges) every pass took seconds and kept the database busy. Every change to an identity's
//! file rows or recorded ranges bumps its `files_rev` in the same transaction (triggers, migration
//! 0002), so a pass reads the revisions (one row per identity) and re-reads only the identities
//! whose revision moved, a few hundred per statement.
//!
//! Consistency: the revisions are read before the rows. A change committed between the two reads
//! is then in the rows while the cached revision is older, so the next pass reads the identity
//! again; a cached entry is never newer than its revision claims.
//!
//! The file states are built once per revision, with the strings of their placements shared
//! (`Arc<str>`): a snapshot clones them cheaply and the cache of a 640,000-file fleet stays near
//! 60 MB.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use uuid::Uuid;

use super::{store_err, ReconcileError};
use crate::scheduler::{self, FileLocation, FileState, LabelRange};
use crate::store::{self, Store};

/// Identities whose rows are read per round trip group (each round is chunked further by the
/// store); bounds the rows held at once on a first load.
const LOAD_BATCH: usize = 1000;

/// A recorded run of done labels `[start, end)` of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub file: u64,
    pub start: u64,
    pub end: u64,
}

/// One identity's files at one revision.
#[derive(Debug, Default)]
pub(crate) struct CachedFiles {
    rev: i64,
    /// Per file index (sorted): labels total and contiguous done, and its placement.
    pub files: std::sync::Arc<Vec<FileState>>,
    /// Every recorded run, sorted by start.
    pub runs: Vec<Run>,
    /// The runs that do not continue their file's contiguous prefix (shown to the planner as
    /// finished init jobs, so that it counts every recorded label as the store does).
    pub detached: Vec<Run>,
}

impl CachedFiles {
    /// Every recorded label of the identity (the store's `labels_done`).
    pub fn labels_recorded(&self) -> u64 {
        self.runs.iter().map(|r| r.end - r.start).sum()
    }
}

/// What one refresh did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCacheStats {
    pub identities: usize,
    pub reloaded: usize,
    pub evicted: usize,
    pub files: usize,
}

/// The cache itself; owned by the reconcile loop.
#[derive(Debug, Default)]
pub struct FileCache {
    idents: HashMap<Uuid, CachedFiles>,
    strings: HashSet<Arc<str>>,
}

impl FileCache {
    pub fn new() -> Self {
        FileCache::default()
    }

    pub(crate) fn get(&self, id: &Uuid) -> Option<&CachedFiles> {
        self.idents.get(id)
    }

    /// Brings the cache up to date for `identities` (read before this call; their layouts decide
    /// the files' sizes). Identities no longer listed are dropped.
    pub async fn refresh(
        &mut self,
        store: &Store,
        identities: &[store::Identity],
    ) -> Result<FileCacheStats, ReconcileError> {
        let revs: HashMap<Uuid, i64> = store
            .list_identity_file_revs()
            .await
            .map_err(store_err("list identity file revisions"))?
            .into_iter()
            .collect();
        let before = self.idents.len();
        self.idents.retain(|id, _| revs.contains_key(id));
        let evicted = before - self.idents.len();
        let stale: Vec<&store::Identity> = identities
            .iter()
            .filter(|i| {
                let rev = revs.get(&i.id).copied().unwrap_or(-1);
                self.idents.get(&i.id).is_none_or(|c| c.rev != rev)
            })
            .collect();
        for batch in stale.chunks(LOAD_BATCH) {
            let ids: Vec<Uuid> = batch.iter().map(|i| i.id).collect();
            let (files, ranges) = store
                .list_files_and_ranges_of(&ids)
                .await
                .map_err(store_err("list identity files"))?;
            let mut rows: HashMap<Uuid, Vec<store::IdentityFile>> = HashMap::new();
            for f in files {
                rows.entry(f.identity_id).or_default().push(f);
            }
            let mut runs: HashMap<Uuid, Vec<Run>> = HashMap::new();
            for (id, r) in ranges {
                runs.entry(id).or_default().push(Run {
                    file: r.file_index,
                    start: r.start_label,
                    end: r.end_label,
                });
            }
            for ident in batch {
                let entry = self.build(
                    ident,
                    revs.get(&ident.id).copied().unwrap_or(-1),
                    rows.remove(&ident.id).unwrap_or_default(),
                    runs.remove(&ident.id).unwrap_or_default(),
                );
                self.idents.insert(ident.id, entry);
            }
        }
        if !stale.is_empty() {
            // Forget disks no file names any more.
            self.strings.retain(|s| Arc::strong_count(s) > 1);
        }
        Ok(FileCacheStats {
            identities: self.idents.len(),
            reloaded: stale.len(),
            evicted,
            files: self.idents.values().map(|c| c.files.len()).sum(),
        })
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return Arc::clone(a);
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(Arc::clone(&a));
        a
    }

    /// The file states of one identity from its rows and recorded runs (what the snapshot used to
    /// compute every pass).
    fn build(
        &mut self,
        ident: &store::Identity,
        rev: i64,
        rows: Vec<store::IdentityFile>,
        mut runs: Vec<Run>,
    ) -> CachedFiles {
        runs.sort_by_key(|r| r.start);
        let layout = scheduler::IdentityState {
            id: String::new(),
            num_units: ident.num_units,
            labels_per_unit: ident.labels_per_unit,
            max_file_size: ident.max_file_size,
            state: scheduler::IdentityPhase::Created,
            files: Default::default(),
            proving: None,
        }
        .layout();
        let file_range = |index: u64| -> Option<LabelRange> {
            let l = layout?;
            l.file_range(u32::try_from(index).ok()?)
        };
        let new_file = |index: u64| FileState {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            labels_total: file_range(index).map_or(0, |r| r.len()),
            labels_done: 0,
            placement: None,
        };
        let mut fs: BTreeMap<u64, FileState> = BTreeMap::new();
        for f in &rows {
            if u32::try_from(f.file_index).is_err() {
                continue;
            }
            let location = match (f.worker_id, &f.disk_id) {
                (Some(worker), Some(disk)) => Some(FileLocation {
                    worker_id: self.intern(&worker.to_string()),
                    disk_id: self.intern(disk),
                }),
                _ => None,
            };
            let e = fs.entry(f.file_index).or_insert_with(|| new_file(f.file_index));
            if location.is_some() {
                e.placement = location;
            }
        }
        let mut detached = Vec::new();
        for r in &runs {
            let Some(range) = file_range(r.file) else {
                continue;
            };
            let e = fs.entry(r.file).or_insert_with(|| new_file(r.file));
            let reach = range.start + e.labels_done;
            if r.start <= reach {
                e.labels_done = e
                    .labels_done
                    .max(r.end.min(range.end).saturating_sub(range.start));
            } else {
                detached.push(*r);
            }
        }
        CachedFiles {
            rev,
            files: std::sync::Arc::new(fs.into_values().collect()),
            runs,
            detached,
        }
    }
}

/// Labels recorded contiguously from `start` (0 when `start` is not inside a recorded run).
pub(crate) fn recorded_from(runs: &[Run], start: u64) -> u64 {
    // Runs are disjoint and sorted by start: the last one starting at or before `start`.
    let k = runs.partition_point(|r| r.start <= start);
    match k.checked_sub(1).map(|k| runs[k]) {
        Some(r) if r.end > start => r.end - start,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_prefix_from_a_label() {
        let runs = [
            Run {
                file: 0,
                start: 0,
                end: 10,
            },
            Run {
                file: 0,
                start: 20,
                end: 30,
            },
        ];
        assert_eq!(recorded_from(&runs, 0), 10);
        assert_eq!(recorded_from(&runs, 5), 5);
        assert_eq!(recorded_from(&runs, 10), 0);
        assert_eq!(recorded_from(&runs, 25), 5);
        assert_eq!(recorded_from(&runs, 30), 0);
        assert_eq!(recorded_from(&[], 3), 0);
    }
}
