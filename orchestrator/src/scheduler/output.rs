//! The scheduler's output: what to add, cancel or shorten so the fleet converges. A plan only names
//! what is missing; applying it and planning again yields a plan with no actions.

use serde::{Deserialize, Serialize};

use super::model::{Device, GroupRange, JobKindName, LabelRange, Placement};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The snapshot's `now_ms` the plan was made for.
    pub now_ms: i64,
    /// New file placements, by identity.
    pub placements: Vec<PlacementDecision>,
    /// New init jobs, by (identity, file, range start).
    pub init: Vec<InitAssignment>,
    /// Live jobs to cancel, by job id. Their durable progress stays counted; the rest of their work
    /// is planned again (in `init`, `k2pow` or `proofs`) when a device is free.
    pub cancellations: Vec<Cancellation>,
    /// Live init jobs whose range is cut short (the tail went to faster idle devices), by job id. A
    /// job whose observed rate is near zero is cut at its progress (`new_end` = where it is).
    pub truncations: Vec<Truncation>,
    /// New k2pow jobs, by (identity, first group).
    pub k2pow: Vec<K2powAssignment>,
    /// New proving passes in earliest-slack-first order.
    pub proofs: Vec<ProofAssignment>,
    /// Every proof reader the plan expects, live jobs and new ones, by (worker, start, identity):
    /// one reader per physical device at a time.
    pub proof_timeline: Vec<ProofSlot>,
    /// Identities (or their remaining files) that found no room.
    pub unplaced: Vec<Unplaced>,
    /// Identities whose proof will not be done before the deadline, or cannot be planned.
    pub at_risk: Vec<AtRisk>,
    /// Inconsistencies in the snapshot that the planner worked around.
    pub issues: Vec<Issue>,
    pub summary: PlanSummary,
}

impl Plan {
    /// No placement, job, cancellation or truncation: applying the plan changes nothing.
    pub fn has_no_actions(&self) -> bool {
        self.placements.is_empty()
            && self.init.is_empty()
            && self.cancellations.is_empty()
            && self.truncations.is_empty()
            && self.k2pow.is_empty()
            && self.proofs.is_empty()
    }

    /// Number of actions (files placed, jobs, cancellations, truncations).
    pub fn action_count(&self) -> usize {
        self.placements.iter().map(|p| p.files.len()).sum::<usize>()
            + self.init.len()
            + self.cancellations.len()
            + self.truncations.len()
            + self.k2pow.len()
            + self.proofs.len()
    }
}

/// New files of one identity: all on one worker (the one that reads them for a proof).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementDecision {
    pub identity_id: String,
    pub worker_id: String,
    /// By file index.
    pub files: Vec<FilePlacement>,
}

/// One file wholly on one disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePlacement {
    pub file_index: u32,
    pub disk_id: String,
    /// Bytes reserved on the disk for the file.
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitAssignment {
    pub identity_id: String,
    pub file_index: u32,
    /// Within one file, disjoint from every other live or done range.
    pub range: LabelRange,
    /// The worker whose device computes the labels.
    pub worker_id: String,
    pub device: Device,
    /// Where the labels are written (may be another worker's disk).
    pub target: Placement,
    pub labels_per_s: f64,
    pub estimated_duration_ms: i64,
    /// The slow job whose tail this is.
    pub stolen_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancellation {
    pub job_id: String,
    pub identity_id: String,
    pub worker_id: String,
    pub kind: JobKindName,
    pub reason: CancelReason,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum CancelReason {
    WorkerOffline,
    WorkerUnknown,
    LeaseExpired {
        expired_at_ms: i64,
    },
    /// Queued (not leased) on a draining worker.
    WorkerDraining,
    /// Queued (not leased) on a paused worker.
    WorkerPaused,
    DeviceDisabled,
    DeviceMissing,
    /// Another live job holds the same device.
    DoubleBooked {
        kept_job_id: String,
    },
    /// Its range (or groups, or proof) overlaps a live job that is kept.
    Overlaps {
        kept_job_id: String,
    },
    IdentityUnknown,
    /// The identity is paused, failed or retired.
    IdentityInactive,
    /// The job no longer matches the identity (range outside the layout, proof no longer needed,
    /// an older pass).
    Obsolete,
    /// The files it writes or reads are on a worker that takes no new work.
    StorageUnavailable,
    /// Queued behind a job that runs too slowly on its device: its range goes back to the planner,
    /// which gives it to faster idle devices.
    Slow {
        expected_labels_per_s: f64,
        observed_labels_per_s: f64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truncation {
    pub job_id: String,
    pub identity_id: String,
    pub file_index: u32,
    pub old_end: u64,
    pub new_end: u64,
    pub expected_labels_per_s: f64,
    pub observed_labels_per_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct K2powAssignment {
    pub identity_id: String,
    pub worker_id: String,
    pub groups: GroupRange,
    /// Expected RandomX hashes for all its groups.
    pub hashes: f64,
    pub estimated_start_ms: i64,
    pub estimated_end_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProofBound {
    /// Disk reads limit the pass.
    Disk,
    /// The CPU's AES work at the chosen nonces limits the pass.
    Cpu,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProofAssignment {
    pub identity_id: String,
    /// The worker holding all the identity's files; it reads them and proves.
    pub worker_id: String,
    /// Disks read (sorted).
    pub disks: Vec<String>,
    /// Their physical devices (sorted); no other proof reads them during the slot.
    pub physical_devices: Vec<String>,
    pub first_nonce: u32,
    pub nonces: u32,
    /// Probability that this one pass finds a proof.
    pub success_probability: f64,
    /// When the k2pow for the pass's groups is expected to be done.
    pub k2pow_ready_ms: i64,
    pub start_ms: i64,
    pub estimated_duration_ms: i64,
    pub deadline_ms: i64,
    /// Earliest-slack-first key: deadline - now - duration of the shortest pass (16 nonces).
    pub slack_ms: i64,
    /// deadline - (start + duration): what is left when the planned pass ends.
    pub margin_ms: i64,
    pub bound: ProofBound,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProofSlot {
    pub identity_id: String,
    /// The live prove job this slot stands for; None for a proof of this plan.
    pub job_id: Option<String>,
    pub worker_id: String,
    pub physical_devices: Vec<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    /// CPU proving capacity the pass uses, in MiB/s at 16 nonces (the worker's capacity unit).
    pub cpu_demand_mib_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unplaced {
    pub identity_id: String,
    pub files: u32,
    pub reason: UnplacedReason,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum UnplacedReason {
    /// No worker that takes new work has room for the files (each file wholly on one disk).
    NoSpace {
        needed_bytes: u64,
        largest_worker_free_bytes: u64,
    },
    /// The identity's other files are on a worker that takes no new work.
    StorageWorkerUnavailable { worker_id: String },
    /// The identity's files are already on several workers; new files are not placed.
    DataOnSeveralWorkers,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AtRisk {
    pub identity_id: String,
    pub deadline_ms: i64,
    pub reason: RiskReason,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RiskReason {
    NotInitialized {
        labels_missing: u64,
    },
    /// Files are on several workers (a pass is read by one worker).
    DataOnSeveralWorkers,
    StorageUnavailable {
        worker_id: String,
    },
    /// A placement names a disk (or worker) the fleet does not have.
    DiskMissing {
        worker_id: String,
        disk_id: String,
    },
    /// k2pow is missing and no worker can compute it.
    NoK2powCapacity,
    /// Even the smallest pass (`nonces`) ends after the deadline (minus the margin).
    WindowTooShort {
        nonces: u32,
        estimated_end_ms: i64,
    },
    /// Every nonce a proof may use has been tried (post.md §4.3).
    NoncesExhausted {
        first_nonce: u32,
    },
    /// A live proving pass is expected to end after the deadline (minus the margin).
    LiveProofLate {
        job_id: String,
        estimated_end_ms: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    /// The worker, identity or job id concerned.
    pub subject: String,
    pub kind: IssueKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "issue", rename_all = "snake_case")]
pub enum IssueKind {
    /// Several entries share the id; all of them are ignored.
    DuplicateWorker,
    DuplicateIdentity,
    DuplicateJob,
    /// Several disks of one worker share the id; they are ignored.
    DuplicateDisk {
        disk_id: String,
    },
    /// Several GPUs of one worker share the index; they are ignored.
    DuplicateGpu {
        index: u32,
    },
    /// The identity's layout cannot be computed (zero sizes, overflow, too many files).
    InvalidLayout,
    /// Two file states share an index; the identity is ignored.
    DuplicateFile {
        file_index: u32,
    },
    /// A file state disagrees with the layout; the layout wins.
    FileSizeMismatch {
        file_index: u32,
        expected: u64,
        found: u64,
    },
    /// A file state names a file index outside the layout; it is ignored.
    FileOutsideLayout {
        file_index: u32,
    },
    /// A placement names a worker or disk the fleet does not have.
    PlacementUnknown {
        file_index: u32,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Labels not written and not held by a kept live job, over identities being initialised.
    pub labels_missing: u64,
    /// Of these, assigned by this plan.
    pub labels_assigned: u64,
    /// Of these, on placed files whose storage takes work, waiting for a free device.
    pub labels_unassigned: u64,
    /// Of these, on files without a placement or on storage that takes no new work.
    pub labels_blocked: u64,
    /// Labels moved from slow jobs to idle faster devices (not part of `labels_missing`).
    pub labels_stolen: u64,
    /// Devices that could compute labels and got nothing (no work they may take).
    pub idle_devices: u64,
    /// Identities waiting for a proof (challenge known).
    pub proofs_pending: u64,
}
