//! The scheduler's input: what the coordinator knows about the fleet, the identities and the jobs at
//! one instant. Built by the reconcile loop from the store; never read from a clock or a disk here.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Bytes stored per label (post.md §1.1).
pub const LABEL_BYTES: u64 = 16;

/// Everything the planner may look at. `now_ms` is the only clock the planner knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Milliseconds since the Unix epoch; every time in the snapshot uses the same clock.
    pub now_ms: i64,
    pub workers: Vec<WorkerState>,
    pub identities: Vec<IdentityState>,
    pub jobs: Vec<JobState>,
    #[serde(default)]
    pub config: SchedulerConfig,
}

/// One rig.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerState {
    pub id: String,
    /// Heartbeat seen recently. An offline worker's live jobs are reassigned.
    pub online: bool,
    /// Finishing what it holds; gets nothing new; its queued (unleased) jobs move elsewhere.
    #[serde(default)]
    pub draining: bool,
    /// Stopped by the operator; gets nothing new; its queued (unleased) jobs move elsewhere.
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub gpus: Vec<GpuState>,
    #[serde(default)]
    pub cpu: CpuState,
    #[serde(default)]
    pub disks: Vec<DiskState>,
    /// The worker serves a label stream endpoint, so devices of other workers may initialize its
    /// disks. Without one only its own devices do.
    #[serde(default)]
    pub stream_endpoint: bool,
}

impl WorkerState {
    /// Whether the worker may be given new work (jobs, placements, proofs).
    pub fn accepts_new_work(&self) -> bool {
        self.online && !self.draining && !self.paused
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuState {
    pub index: u32,
    #[serde(default)]
    pub model: String,
    /// Measured initialization speed.
    pub labels_per_s: f64,
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuState {
    pub threads: u32,
    /// Measured CPU initialization speed (all threads).
    #[serde(default)]
    pub labels_per_s: f64,
    /// Measured k2pow (RandomX, fast mode) speed; 0 = this worker does no k2pow.
    #[serde(default)]
    pub randomx_hashes_per_s: f64,
    /// Measured proving throughput with data in memory at 16 nonces per pass (all threads).
    /// At S nonces the CPU bound is this times 16/S (post.md §6.3). 0 = unknown (config default).
    #[serde(default)]
    pub proving_mib_s_per_16_nonces: f64,
    /// Whether the operator lets this CPU compute labels (it is ~1000x slower than a GPU).
    #[serde(default)]
    pub init_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskState {
    /// Unique within its worker.
    pub id: String,
    #[serde(default)]
    pub mount: String,
    /// Disks of one worker naming the same physical device share its bandwidth: one proof reader
    /// at a time, and one write budget.
    pub physical_device: String,
    pub capacity_bytes: u64,
    /// Free bytes as the worker measured them (bytes already written are not free).
    pub free_bytes: u64,
    /// Measured sequential read speed, MB/s (10^6 bytes); 0 = unknown (config default).
    pub read_mb_s: f64,
    /// Measured sequential write speed, MB/s; 0 = unknown (no write budget enforced).
    pub write_mb_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityPhase {
    /// Known, no data yet.
    Created,
    /// Some data written.
    Initializing,
    /// All data written and checked.
    Ready,
    /// The operator stopped all work for it.
    Paused,
    /// Quarantined after an error that needs a person.
    Failed,
    /// No longer smeshing.
    Retired,
}

impl IdentityPhase {
    /// Phases in which missing labels are computed.
    pub fn wants_init(self) -> bool {
        matches!(self, IdentityPhase::Created | IdentityPhase::Initializing)
    }

    /// Phases in which the scheduler does any work for the identity.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            IdentityPhase::Created | IdentityPhase::Initializing | IdentityPhase::Ready
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityState {
    pub id: String,
    pub num_units: u32,
    pub labels_per_unit: u64,
    /// Bytes per `postdata_N.bin`; labels per file = max_file_size / 16 (post.md §1.2).
    pub max_file_size: u64,
    pub state: IdentityPhase,
    /// Files that have state. A file of the layout missing here has no labels and no placement.
    /// Shared with the coordinator's file cache (a snapshot does not copy every file each pass);
    /// `Arc::make_mut` copies on write.
    #[serde(default)]
    pub files: Arc<Vec<FileState>>,
    /// Set while the node waits for a proof: the PoET proof (the challenge) is known.
    #[serde(default)]
    pub proving: Option<ProvingNeed>,
}

/// The file layout of an identity's data (post.md §1.2, §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub num_labels: u64,
    pub labels_per_file: u64,
    pub num_files: u64,
}

impl Layout {
    /// Labels of file `index`: `[start, start + len)`; None outside the layout.
    pub fn file_range(&self, index: u32) -> Option<LabelRange> {
        let index = u64::from(index);
        if index >= self.num_files {
            return None;
        }
        let start = index.checked_mul(self.labels_per_file)?;
        let end = start.checked_add(self.labels_per_file)?.min(self.num_labels);
        Some(LabelRange { start, end })
    }
}

impl IdentityState {
    /// The layout, or None when the sizes are zero or overflow.
    pub fn layout(&self) -> Option<Layout> {
        let num_labels = u64::from(self.num_units).checked_mul(self.labels_per_unit)?;
        let labels_per_file = self.max_file_size / LABEL_BYTES;
        if num_labels == 0 || labels_per_file == 0 {
            return None;
        }
        Some(Layout {
            num_labels,
            labels_per_file,
            num_files: num_labels.div_ceil(labels_per_file),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileState {
    pub index: u32,
    /// Labels the file holds when complete (the layout decides; a mismatch is reported).
    pub labels_total: u64,
    /// Contiguous labels on disk from the file's start (postcli's resumption point).
    pub labels_done: u64,
    pub placement: Option<FileLocation>,
}

/// The disk a file lives on. The strings are shared (`Arc<str>`): a fleet's hundreds of thousands
/// of files name only a few thousand disks, and a snapshot is cloned from the reconcile loop's
/// cache every pass.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileLocation {
    pub worker_id: Arc<str>,
    pub disk_id: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvingNeed {
    pub challenge_known_at_ms: i64,
    /// End of the cycle gap: the proof (and the ATX) must be done before it (node.md §2.5).
    pub deadline_ms: i64,
    /// First nonce of the next pass: 0, or the nonces already tried by failed passes (post.md §4.3).
    #[serde(default)]
    pub first_nonce: u32,
    /// k2pow groups of this pass already solved, counted from group `first_nonce / 16`.
    #[serde(default)]
    pub pow_groups_done: u32,
}

// The wire types the scheduler shares with workers live in the `protocol` crate.
pub use protocol::{Device, GroupRange, JobKind, JobKindName, LabelRange, Placement};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Planned, not yet taken by the worker.
    Queued,
    /// Taken by the worker under a lease.
    Leased,
    /// Taken and reporting progress.
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// Queued, leased or running: the job holds its device and its range.
    pub fn is_live(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Leased | JobStatus::Running)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    pub id: String,
    pub identity_id: String,
    pub worker_id: String,
    pub device: Device,
    pub kind: JobKind,
    pub state: JobStatus,
    /// A leased or running job whose lease ends at or before `now_ms` is lost.
    #[serde(default)]
    pub lease_expires_ms: Option<i64>,
    /// When the worker started it (rates are measured from here).
    #[serde(default)]
    pub started_ms: Option<i64>,
    /// A queued job does not start before this (proof slots).
    #[serde(default)]
    pub not_before_ms: Option<i64>,
    /// Durable progress (checkpointed), in the unit of [`JobKind`]; it counts even for a job that
    /// failed or was cancelled.
    #[serde(default)]
    pub progress: u64,
}

/// Tunables. Defaults are mainnet-sized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    /// An idle device gets at most this much init work at its measured speed (one job, one file).
    pub init_horizon_ms: i64,
    /// Smallest label range worth a job of its own (splits and steals never leave less).
    pub min_chunk_labels: u64,
    /// A running init job whose observed rate is below this fraction of its device's measured
    /// rate is slow, and an idle faster device takes the tail of its range.
    pub slow_factor: f64,
    /// A job's rate is judged only after it has run this long.
    pub min_observation_ms: i64,
    /// Bytes left free on every disk.
    pub disk_reserve_bytes: u64,
    /// Nonces per pass the planner may choose, each a multiple of 16; the largest that fits the
    /// window is chosen, the smallest when none fits.
    pub nonce_options: Vec<u32>,
    /// A proof must end this long before its deadline to count as fitting.
    pub deadline_margin_ms: i64,
    /// Estimated proof durations are multiplied by 1 + this.
    pub proof_time_margin: f64,
    /// RandomX hashes per space unit per nonce group (mainnet 4687.5; post.md §6.4).
    pub k2pow_hashes_per_unit_group: f64,
    /// Probability that one nonce reaches K2 qualifying labels (mainnet ~0.02438; post.md §4.9).
    pub nonce_success_probability: f64,
    /// Read speed assumed for a disk that reports none.
    pub default_read_mb_s: f64,
    /// Proving speed assumed for a CPU that reports none.
    pub default_proving_mib_s_per_16_nonces: f64,
    /// RandomX speed assumed for a running k2pow job on a worker that reports none.
    pub default_randomx_hashes_per_s: f64,
    /// Identities whose layout has more files than this are reported, not planned.
    pub max_files_per_identity: u64,
    /// Files one plan places at most (whole identities; at least one identity per plan). The
    /// rest wait for the next plans: a new fleet of 10,000 identities is placed in a few passes of
    /// bounded memory and duration rather than one pass of 640,000 placements.
    #[serde(default = "default_max_files_placed_per_plan")]
    pub max_files_placed_per_plan: u64,
}

fn default_max_files_placed_per_plan() -> u64 {
    65_536
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            init_horizon_ms: 4 * 3_600_000,
            min_chunk_labels: 1 << 20,
            slow_factor: 0.5,
            min_observation_ms: 10 * 60_000,
            disk_reserve_bytes: 0,
            nonce_options: vec![288, 256, 192, 144, 128, 96, 64, 48, 32, 16],
            deadline_margin_ms: 30 * 60_000,
            proof_time_margin: 0.1,
            k2pow_hashes_per_unit_group: 4687.5,
            nonce_success_probability: 0.02438,
            default_read_mb_s: 150.0,
            default_proving_mib_s_per_16_nonces: 1500.0,
            default_randomx_hashes_per_s: 500.0,
            max_files_per_identity: 1 << 20,
            max_files_placed_per_plan: default_max_files_placed_per_plan(),
        }
    }
}
