//! The rows the store hands out and takes in. Ids are UUIDs, times are unix milliseconds (`i64`),
//! 32-byte values are arrays (stored as lowercase hex), JSON is `serde_json::Value`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Declares a fieldless enum stored as TEXT, with `as_str`, `Display`, `FromStr` and serde in the
/// same snake_case spelling as the database's CHECK constraints.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { what: stringify!($name), value: s.to_owned() }),
                }
            }
        }
    };
}

/// A string that names no variant of an enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

text_enum! {
    /// Where an identity is in its life: init, then per epoch challenge -> k2pow -> proof.
    IdentityState {
        Created = "created",
        Initializing = "initializing",
        Ready = "ready",
        WaitingForChallenge = "waiting_for_challenge",
        K2pow = "k2pow",
        Proving = "proving",
        ProofVerified = "proof_verified",
        Submitted = "submitted",
        Failed = "failed",
    }
}

text_enum! {
    /// The state of one `postdata_<k>.bin` of an identity.
    FileState {
        Pending = "pending",
        Initializing = "initializing",
        Done = "done",
        Failed = "failed",
    }
}

text_enum! {
    WorkerState {
        Online = "online",
        Offline = "offline",
        /// Keeps its leases but gets no new jobs.
        Draining = "draining",
        /// Final: the credential no longer authenticates.
        Removed = "removed",
    }
}

text_enum! {
    JobKind {
        Init = "init",
        Verify = "verify",
        K2pow = "k2pow",
        Prove = "prove",
    }
}

text_enum! {
    JobState {
        Queued = "queued",
        Leased = "leased",
        Done = "done",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

text_enum! {
    /// What an API token may do; each role includes the ones before it.
    ApiRole {
        Viewer = "viewer",
        Operator = "operator",
        Admin = "admin",
    }
}

impl JobState {
    /// Whether the job can still run (it counts for the active-key uniqueness).
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Queued | JobState::Leased)
    }
}

impl IdentityState {
    /// Whether the identity's data is complete (init done), whatever epoch it is in: it may
    /// prove.
    pub fn is_initialized(self) -> bool {
        matches!(
            self,
            IdentityState::Ready
                | IdentityState::WaitingForChallenge
                | IdentityState::K2pow
                | IdentityState::Proving
                | IdentityState::ProofVerified
                | IdentityState::Submitted
        )
    }
}

/// A new identity. The store assigns the id and the `created` state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIdentity {
    pub name: String,
    pub node_id: [u8; 32],
    pub num_units: u32,
    pub labels_per_unit: u64,
    pub max_file_size: u64,
    pub scrypt_n: u32,
    pub commitment_atx_id: Option<[u8; 32]>,
    pub coinbase: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: Uuid,
    pub name: String,
    pub node_id: [u8; 32],
    pub num_units: u32,
    pub labels_per_unit: u64,
    pub max_file_size: u64,
    pub scrypt_n: u32,
    pub commitment_atx_id: Option<[u8; 32]>,
    pub coinbase: Option<String>,
    pub state: IdentityState,
    pub vrf_nonce: Option<u64>,
    /// The PoET phase (phase shift, ms) the identity smeshes in; `None` until placed.
    pub poet_phase_ms: Option<u64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Fields to change on an identity; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityUpdate {
    pub name: Option<String>,
    pub num_units: Option<u32>,
    pub commitment_atx_id: Option<[u8; 32]>,
    pub coinbase: Option<String>,
    pub vrf_nonce: Option<u64>,
}

/// Where one data file of an identity lives (input of `upsert_identity_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlacement {
    pub file_index: u64,
    pub worker_id: Option<Uuid>,
    pub disk_id: Option<String>,
    pub path: Option<String>,
    pub state: FileState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFile {
    pub identity_id: Uuid,
    pub file_index: u64,
    pub worker_id: Option<Uuid>,
    pub disk_id: Option<String>,
    pub path: Option<String>,
    pub state: FileState,
    /// Labels of this file recorded done (the sum of its recorded ranges).
    pub labels_done: u64,
    pub updated_at: i64,
}

/// A worker's report that labels `[start_label, end_label)` (identity-wide label indices, inside
/// file `file_index`) are written and durable, made under the lease `(job_id, fencing_token)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeReport {
    pub identity_id: Uuid,
    pub file_index: u64,
    pub start_label: u64,
    pub end_label: u64,
    pub job_id: Uuid,
    pub worker_id: Uuid,
    pub fencing_token: i64,
}

/// What `record_range_done` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOutcome {
    /// The range was new and now counts.
    Recorded,
    /// The range lies inside what was already recorded: nothing changed, nothing counted twice.
    AlreadyRecorded,
}

/// A recorded run of done labels (adjacent reports of one file are merged into one run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitRange {
    pub file_index: u64,
    pub start_label: u64,
    pub end_label: u64,
    /// The job (and its lease) that reported the last part of this run.
    pub job_id: Uuid,
    pub fencing_token: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewWorker {
    pub name: String,
    /// A hash of the worker's credential (the credential itself is never stored).
    pub credential_hash: [u8; 32],
    pub capabilities: Value,
}

/// A worker rig. The credential hash is never handed out.
#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    pub id: Uuid,
    pub name: String,
    pub state: WorkerState,
    pub capabilities: Value,
    pub last_heartbeat_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Paused by an operator: keeps what it holds, gets nothing new (migration 0004).
    pub paused: bool,
    /// Devices an operator turned off from the coordinator (migration 0004).
    pub device_settings: DeviceSettings,
}

/// What an operator allows of a rig's devices from the coordinator (`PUT
/// /api/v1/workers/{id}/devices`), on top of what the rig itself allows (`--cpu-init`, `--gpus`):
/// a device is used only when both allow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSettings {
    /// Whether the rig's CPU may compute labels.
    #[serde(default = "DeviceSettings::yes")]
    pub cpu_init: bool,
    /// GPUs (by index on the rig) the planner must not use, ascending.
    #[serde(default)]
    pub disabled_gpus: Vec<u32>,
}

impl DeviceSettings {
    fn yes() -> bool {
        true
    }

    /// Whether the settings leave every device as the rig reports it.
    pub fn is_default(&self) -> bool {
        self.cpu_init && self.disabled_gpus.is_empty()
    }

    /// Whether GPU `index` may be used.
    pub fn gpu_enabled(&self, index: u32) -> bool {
        self.disabled_gpus.binary_search(&index).is_err()
    }
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            cpu_init: true,
            disabled_gpus: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJoinToken {
    /// A hash of the token; the token itself is shown once to the operator and never stored.
    pub token_hash: [u8; 32],
    pub name: Option<String>,
    /// What the enrolled party becomes (today: `"worker"`).
    pub role: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub id: Uuid,
    pub name: Option<String>,
    pub role: String,
    pub expires_at: i64,
    pub created_at: i64,
    pub used_at: Option<i64>,
    /// The worker enrolled with it (set by `enroll_worker`).
    pub used_by: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken {
    pub name: String,
    pub role: ApiRole,
    pub token_hash: [u8; 32],
}

/// An API token without its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub role: ApiRole,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: JobKind,
    pub identity_id: Uuid,
    /// Idempotency key: at most one queued or leased job per key (enqueueing a second is a
    /// `Duplicate` conflict). Finished jobs do not count.
    pub key: Option<String>,
    pub payload: Value,
    /// Higher runs first.
    pub priority: i64,
    /// Leases allowed before the job fails for good (at least 1).
    pub max_attempts: u32,
    /// Only this worker may lease the job (data placement); `None`: any worker.
    pub assigned_worker_id: Option<Uuid>,
    /// Not leased before this time (unix ms); 0 for "now".
    pub not_before: i64,
}

impl NewJob {
    /// A job with priority 0, 3 attempts, no key, no assignment, runnable now.
    pub fn new(kind: JobKind, identity_id: Uuid, payload: Value) -> Self {
        NewJob {
            kind,
            identity_id,
            key: None,
            payload,
            priority: 0,
            max_attempts: 3,
            assigned_worker_id: None,
            not_before: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: Uuid,
    pub kind: JobKind,
    pub identity_id: Uuid,
    pub key: Option<String>,
    pub payload: Value,
    pub state: JobState,
    /// The worker the scheduler pinned the job to, if any.
    pub assigned_worker_id: Option<Uuid>,
    /// The worker holding (or that last held) the lease.
    pub worker_id: Option<Uuid>,
    pub lease_expires_at: Option<i64>,
    /// Incremented on every lease; a worker's reports must carry the current value.
    pub fencing_token: i64,
    /// Leases handed out so far.
    pub attempts: u32,
    pub max_attempts: u32,
    pub progress: Option<Value>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub priority: i64,
    pub not_before: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A job handed to a worker with the fencing token of this lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub job: Job,
    pub fencing_token: i64,
}

/// Filters for `list_jobs`; `Default` lists everything (newest first, up to 100).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFilter {
    pub kind: Option<JobKind>,
    pub state: Option<JobState>,
    pub identity_id: Option<Uuid>,
    /// Jobs leased by (or last leased by) this worker.
    pub worker_id: Option<Uuid>,
    pub limit: u32,
    pub offset: u32,
}

impl Default for JobFilter {
    fn default() -> Self {
        JobFilter {
            kind: None,
            state: None,
            identity_id: None,
            worker_id: None,
            limit: 100,
            offset: 0,
        }
    }
}

/// How a worker's job failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    pub error: String,
    /// `true`: requeue if attempts remain. `false`: fail for good (quarantine).
    pub retryable: bool,
    /// With `retryable`: do not lease again before this time (unix ms).
    pub retry_at: Option<i64>,
}

/// A job whose lease expired in `expire_leases`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiredLease {
    pub job_id: Uuid,
    /// The worker that held the lease.
    pub worker_id: Option<Uuid>,
    /// `Queued` (attempts remain) or `Failed`.
    pub new_state: JobState,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Strictly increasing; readers resume with `list_events_since(last_seen_id)`.
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub data: Value,
    pub created_at: i64,
}

/// The answer of the safety database before an ATX is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Safety {
    /// Recorded now, or this very message was already recorded for this epoch: sign it.
    Safe,
    /// Signing would be a slashable offence (node spec §2.7). Nothing was recorded.
    NotSafe {
        existing_hash: [u8; 32],
        reason: NotSafeReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotSafeReason {
    /// A different ATX is already recorded for this identity and publish epoch.
    DoublePublish { publish_epoch: u32 },
    /// A different ATX (of `existing_epoch`) already names this previous ATX (`None`: both are
    /// initial ATXs).
    PrevAtxReused {
        prev_atx: Option<[u8; 32]>,
        existing_epoch: u32,
    },
    /// This very message is recorded for this epoch, but with another previous ATX: the caller's
    /// inputs are inconsistent.
    PrevAtxMismatch { recorded_prev_atx: Option<[u8; 32]> },
    /// A different ballot is already recorded for this identity and layer.
    DoubleBallot { layer: u32 },
}

impl fmt::Display for NotSafeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotSafeReason::DoublePublish { publish_epoch } => {
                write!(
                    f,
                    "another ATX is already recorded for publish epoch {publish_epoch}"
                )
            }
            NotSafeReason::PrevAtxReused { existing_epoch, .. } => write!(
                f,
                "the ATX of publish epoch {existing_epoch} already names the same previous ATX"
            ),
            NotSafeReason::PrevAtxMismatch { .. } => {
                write!(f, "this ATX is recorded with a different previous ATX")
            }
            NotSafeReason::DoubleBallot { layer } => {
                write!(f, "another ballot is already recorded for layer {layer}")
            }
        }
    }
}

/// One row of the safety database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtxRecord {
    pub node_id: [u8; 32],
    pub publish_epoch: u32,
    pub message_hash: [u8; 32],
    /// `None` for an initial ATX.
    pub prev_atx: Option<[u8; 32]>,
    pub recorded_at: i64,
}

text_enum! {
    /// Where a proving request is.
    ProvingRequestState {
        /// Waiting for a verified proof.
        Pending = "pending",
        /// A verified proof is stored.
        Proved = "proved",
        /// Given up (deadline passed or cancelled).
        Failed = "failed",
    }
}
