//! A normalised, indexed view of a snapshot: everything sorted by id, duplicates dropped (and
//! reported), layouts computed, speeds sanitised. All later phases iterate these vectors in order,
//! so the plan does not depend on the order of the snapshot's lists.

use std::collections::BTreeMap;

use super::model::{
    DiskState, FileState, GpuState, IdentityState, JobState, SchedulerConfig, Snapshot, WorkerState,
    LABEL_BYTES,
};
use super::output::{Issue, IssueKind};

/// "Not in this cycle": far enough to never be reached, small enough to add to.
pub(crate) const NEVER: i64 = i64::MAX / 4;

const MB: f64 = 1e6;
pub(crate) const MIB: f64 = 1_048_576.0;

/// A speed or size from outside, or 0 when it is negative, NaN or infinite.
pub(crate) fn sane(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        0.0
    }
}

/// Milliseconds to do `amount` at `per_s`, rounded up; [`NEVER`] when the rate is zero.
pub(crate) fn dur_ms(amount: f64, per_s: f64) -> i64 {
    if per_s <= 0.0 || !per_s.is_finite() || !amount.is_finite() {
        return NEVER;
    }
    let ms = (amount.max(0.0) / per_s * 1000.0).ceil();
    if ms >= NEVER as f64 {
        NEVER
    } else {
        ms as i64
    }
}

pub(crate) struct Worker<'a> {
    pub st: &'a WorkerState,
    pub usable: bool,
    /// Sorted by index; duplicates dropped.
    pub gpus: Vec<&'a GpuState>,
    /// Global disk indices, sorted by disk id.
    pub disks: Vec<usize>,
    /// CPU proving capacity in MiB/s at 16 nonces (config default when unknown).
    pub proving_mib16: f64,
    pub rx: f64,
    pub cpu_labels_per_s: f64,
}

impl Worker<'_> {
    pub fn gpu(&self, index: u32) -> Option<&GpuState> {
        self.gpus
            .binary_search_by_key(&index, |g| g.index)
            .ok()
            .and_then(|i| self.gpus.get(i).copied())
    }
}

pub(crate) struct Disk<'a> {
    pub st: &'a DiskState,
    pub worker: usize,
    pub phys: usize,
}

pub(crate) struct Phys<'a> {
    pub name: &'a str,
    /// Bytes/s (the slowest of its disks; config default when unknown).
    pub read_bps: f64,
    /// Labels/s it can absorb; infinite when unknown.
    pub write_labels_per_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    None,
    Disk(usize),
    /// Names a worker or disk the fleet does not have.
    Unknown,
}

pub(crate) struct FileView {
    pub start: u64,
    pub len: u64,
    /// Contiguous labels done from `start` (clamped to `len`).
    pub done: u64,
    pub place: Place,
}

impl FileView {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }

    /// Bytes still to be written, counting only the done prefix as written (conservative).
    pub fn remaining_bytes(&self) -> u64 {
        (self.len - self.done).saturating_mul(LABEL_BYTES)
    }
}

pub(crate) struct Ident<'a> {
    pub st: &'a IdentityState,
    pub num_labels: u64,
    pub files: Vec<FileView>,
    /// Expected RandomX hashes per nonce group.
    pub hashes_per_group: f64,
    /// Placement to the first unknown placement's worker, for reports.
    pub unknown_place: Option<(&'a str, &'a str)>,
}

pub(crate) struct Index<'a> {
    pub now: i64,
    pub cfg: &'a SchedulerConfig,
    pub workers: Vec<Worker<'a>>,
    pub worker_by_id: BTreeMap<&'a str, usize>,
    pub disks: Vec<Disk<'a>>,
    pub disk_by_id: BTreeMap<(usize, &'a str), usize>,
    pub phys: Vec<Phys<'a>>,
    pub idents: Vec<Ident<'a>>,
    pub ident_by_id: BTreeMap<&'a str, usize>,
    /// Sorted by id, duplicates dropped.
    pub jobs: Vec<&'a JobState>,
}

/// Sorts by key and drops every element whose key occurs more than once, calling `dup` once per
/// duplicated key.
fn unique_by<'a, T, K: Ord + Copy>(
    items: impl Iterator<Item = &'a T>,
    key: impl Fn(&'a T) -> K,
    mut dup: impl FnMut(K),
) -> Vec<&'a T> {
    let mut v: Vec<&'a T> = items.collect();
    v.sort_by_key(|x| key(x));
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let k = key(v[i]);
        let mut j = i + 1;
        while j < v.len() && key(v[j]) == k {
            j += 1;
        }
        if j - i == 1 {
            out.push(v[i]);
        } else {
            dup(k);
        }
        i = j;
    }
    out
}

impl<'a> Index<'a> {
    pub fn build(s: &'a Snapshot, issues: &mut Vec<Issue>) -> Index<'a> {
        let cfg = &s.config;
        let mut idx = Index {
            now: s.now_ms,
            cfg,
            workers: Vec::new(),
            worker_by_id: BTreeMap::new(),
            disks: Vec::new(),
            disk_by_id: BTreeMap::new(),
            phys: Vec::new(),
            idents: Vec::new(),
            ident_by_id: BTreeMap::new(),
            jobs: Vec::new(),
        };

        let workers = unique_by(
            s.workers.iter(),
            |w| w.id.as_str(),
            |k| {
                issues.push(Issue {
                    subject: k.to_owned(),
                    kind: IssueKind::DuplicateWorker,
                })
            },
        );
        for w in workers {
            let wi = idx.workers.len();
            let gpus = unique_by(
                w.gpus.iter(),
                |g| g.index,
                |k| {
                    issues.push(Issue {
                        subject: w.id.clone(),
                        kind: IssueKind::DuplicateGpu { index: k },
                    })
                },
            );
            let disks = unique_by(
                w.disks.iter(),
                |d| d.id.as_str(),
                |k| {
                    issues.push(Issue {
                        subject: w.id.clone(),
                        kind: IssueKind::DuplicateDisk {
                            disk_id: k.to_owned(),
                        },
                    })
                },
            );
            let mut phys_of: BTreeMap<&str, usize> = BTreeMap::new();
            let mut names: Vec<&str> = disks.iter().map(|d| d.physical_device.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            for name in names {
                let (mut read, mut write) = (f64::INFINITY, f64::INFINITY);
                for d in disks.iter().filter(|d| d.physical_device == name) {
                    let r = sane(d.read_mb_s);
                    read = read.min(if r > 0.0 { r } else { sane(cfg.default_read_mb_s) });
                    let wr = sane(d.write_mb_s);
                    if wr > 0.0 {
                        write = write.min(wr * MB / LABEL_BYTES as f64);
                    }
                }
                phys_of.insert(name, idx.phys.len());
                idx.phys.push(Phys {
                    name,
                    read_bps: if read.is_finite() { read * MB } else { 0.0 },
                    write_labels_per_s: write,
                });
            }
            let mut disk_ix = Vec::with_capacity(disks.len());
            for d in disks {
                let phys = phys_of.get(d.physical_device.as_str()).copied().unwrap_or(0);
                idx.disk_by_id.insert((wi, d.id.as_str()), idx.disks.len());
                disk_ix.push(idx.disks.len());
                idx.disks.push(Disk {
                    st: d,
                    worker: wi,
                    phys,
                });
            }
            let p16 = sane(w.cpu.proving_mib_s_per_16_nonces);
            idx.worker_by_id.insert(w.id.as_str(), wi);
            idx.workers.push(Worker {
                st: w,
                usable: w.accepts_new_work(),
                gpus,
                disks: disk_ix,
                proving_mib16: if p16 > 0.0 {
                    p16
                } else {
                    sane(cfg.default_proving_mib_s_per_16_nonces)
                },
                rx: sane(w.cpu.randomx_hashes_per_s),
                cpu_labels_per_s: sane(w.cpu.labels_per_s),
            });
        }

        let idents = unique_by(
            s.identities.iter(),
            |i| i.id.as_str(),
            |k| {
                issues.push(Issue {
                    subject: k.to_owned(),
                    kind: IssueKind::DuplicateIdentity,
                })
            },
        );
        for st in idents {
            if let Some(view) = idx.ident_view(st, issues) {
                idx.ident_by_id.insert(st.id.as_str(), idx.idents.len());
                idx.idents.push(view);
            }
        }

        idx.jobs = unique_by(
            s.jobs.iter(),
            |j| j.id.as_str(),
            |k| {
                issues.push(Issue {
                    subject: k.to_owned(),
                    kind: IssueKind::DuplicateJob,
                })
            },
        );
        idx
    }

    fn ident_view(&self, st: &'a IdentityState, issues: &mut Vec<Issue>) -> Option<Ident<'a>> {
        let subject = || st.id.clone();
        let layout = match st.layout() {
            Some(l) if l.num_files <= self.cfg.max_files_per_identity => l,
            _ => {
                issues.push(Issue {
                    subject: subject(),
                    kind: IssueKind::InvalidLayout,
                });
                return None;
            }
        };
        let mut dup_file = None;
        // Usually already in order: skip the sort then.
        let states: Vec<&FileState> = if st.files.windows(2).all(|w| w[0].index < w[1].index) {
            st.files.iter().collect()
        } else {
            unique_by(st.files.iter(), |f| f.index, |k| dup_file = Some(k))
        };
        if let Some(file_index) = dup_file {
            issues.push(Issue {
                subject: subject(),
                kind: IssueKind::DuplicateFile { file_index },
            });
            return None;
        }
        let mut files = Vec::with_capacity(usize::try_from(layout.num_files).ok()?);
        let mut states = states.into_iter().peekable();
        let mut unknown_place = None;
        let mut last_worker: Option<(&str, Option<usize>)> = None;
        for f in 0..layout.num_files {
            let index = u32::try_from(f).ok()?;
            let range = layout.file_range(index)?;
            let mut view = FileView {
                start: range.start,
                len: range.len(),
                done: 0,
                place: Place::None,
            };
            while let Some(fs) = states.next_if(|fs| fs.index <= index) {
                if fs.index < index {
                    continue;
                }
                if fs.labels_total != view.len {
                    issues.push(Issue {
                        subject: subject(),
                        kind: IssueKind::FileSizeMismatch {
                            file_index: index,
                            expected: view.len,
                            found: fs.labels_total,
                        },
                    });
                }
                view.done = fs.labels_done.min(view.len);
                if let Some(p) = &fs.placement {
                    // Files of one identity are mostly on one worker: look it up once.
                    let w = match last_worker {
                        Some((id, w)) if id == &*p.worker_id => w,
                        _ => {
                            let w = self.worker_by_id.get(&*p.worker_id).copied();
                            last_worker = Some((&*p.worker_id, w));
                            w
                        }
                    };
                    let disk = w.and_then(|w| {
                        let disks = &self.workers[w].disks;
                        disks
                            .binary_search_by(|&d| self.disks[d].st.id.as_str().cmp(&*p.disk_id))
                            .ok()
                            .map(|k| disks[k])
                    });
                    view.place = match disk {
                        Some(d) => Place::Disk(d),
                        None => {
                            issues.push(Issue {
                                subject: subject(),
                                kind: IssueKind::PlacementUnknown { file_index: index },
                            });
                            unknown_place.get_or_insert((&*p.worker_id, &*p.disk_id));
                            Place::Unknown
                        }
                    };
                }
            }
            files.push(view);
        }
        for fs in states {
            issues.push(Issue {
                subject: subject(),
                kind: IssueKind::FileOutsideLayout { file_index: fs.index },
            });
        }
        Some(Ident {
            st,
            num_labels: layout.num_labels,
            files,
            hashes_per_group: sane(self.cfg.k2pow_hashes_per_unit_group) * f64::from(st.num_units),
            unknown_place,
        })
    }

    /// Identities in init priority order: those already initialising first, then by id.
    pub fn init_order(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.idents.len())
            .filter(|&i| self.idents[i].st.state.wants_init())
            .collect();
        v.sort_by_key(|&i| {
            (
                self.idents[i].st.state != super::model::IdentityPhase::Initializing,
                i,
            )
        });
        v
    }

    /// Measured init speed of a device of a worker (0 when unknown or absent).
    pub fn device_rate(&self, worker: usize, device: &super::model::Device) -> f64 {
        let w = &self.workers[worker];
        match device {
            super::model::Device::Gpu { index } => w.gpu(*index).map_or(0.0, |g| sane(g.labels_per_s)),
            super::model::Device::Cpu => w.cpu_labels_per_s,
            super::model::Device::Disk { .. } => 0.0,
        }
    }
}
