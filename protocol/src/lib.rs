//! What the coordinator and its workers say to each other: JSON bodies of the worker-facing routes
//! (`/api/v1/worker/...`), the payload stored with every job, and the work items the scheduler
//! plans (devices, label ranges, nonce groups). The worker links this crate, never the coordinator.
//!
//! Identities appear here by their public data only (node id, commitment ATX id, sizes): no type in
//! this module has a field that could carry a private key, and every request type refuses unknown
//! fields, so a key cannot ride along unnoticed either.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a file lives: one disk of one worker, wholly.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
pub struct Placement {
    pub worker_id: String,
    pub disk_id: String,
}

/// Labels `[start, end)` by their index in the identity's data (global, not per file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
pub struct LabelRange {
    pub start: u64,
    pub end: u64,
}

impl LabelRange {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Nonce groups `[start, end)` (absolute group numbers: group g holds nonces 16g..16g+15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
pub struct GroupRange {
    pub start: u32,
    pub end: u32,
}

impl GroupRange {
    pub fn len(&self) -> u32 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// What a job runs on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Device {
    Gpu { index: u32 },
    Cpu,
    Disk { disk_id: String },
}

/// What a job does. `progress` of the job is measured in the unit named here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobKind {
    /// Compute and write labels; progress = labels durably written from `range.start`.
    Init { file_index: u32, range: LabelRange },
    /// Re-derive and compare labels; progress = labels checked from `range.start`.
    Verify { file_index: u32, range: LabelRange },
    /// Solve k2pow for nonce groups; progress = groups solved from `groups.start`.
    K2pow { groups: GroupRange },
    /// One proving pass over all the identity's data; progress = labels read.
    Prove {
        first_nonce: u32,
        nonces: u32,
        disks: Vec<String>,
    },
}

impl JobKind {
    pub fn name(&self) -> JobKindName {
        match self {
            JobKind::Init { .. } => JobKindName::Init,
            JobKind::Verify { .. } => JobKindName::Verify,
            JobKind::K2pow { .. } => JobKindName::K2pow,
            JobKind::Prove { .. } => JobKindName::Prove,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKindName {
    Init,
    Verify,
    K2pow,
    Prove,
}

/// What a worker reports about its rig at enrollment and, when it changes, with a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default)]
    pub hostname: String,
    /// The worker's smeshfleet version.
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub gpus: Vec<GpuInfo>,
    #[serde(default)]
    pub cpu: CpuInfo,
    #[serde(default)]
    pub disks: Vec<DiskInfo>,
    /// The operator paused this rig (it keeps its leases, takes nothing new).
    #[serde(default)]
    pub paused: bool,
    /// Where this rig takes labels computed by other rigs for its disks (`smeshfleet worker
    /// --stream-listen`, or `--stream-advertise` behind NAT): an `http://` or `https://` base URL.
    /// Absent: only this rig's own devices initialize its disks (and workers that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuInfo {
    /// The device's index on its rig (CUDA ordinal).
    pub index: u32,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub memory_bytes: u64,
    /// Measured initialization speed (N = the identity's scrypt N, mainnet 8192).
    #[serde(default)]
    pub labels_per_s: f64,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub temperature_c: Option<f64>,
    #[serde(default)]
    pub power_w: Option<f64>,
    /// 0..=100.
    #[serde(default)]
    pub utilization_percent: Option<f64>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CpuInfo {
    #[serde(default)]
    pub threads: u32,
    /// Measured label speed of all threads; 0 = not measured.
    #[serde(default)]
    pub labels_per_s: f64,
    /// Measured RandomX (fast mode) hashes per second of all threads; 0 = no k2pow here.
    #[serde(default)]
    pub randomx_hashes_per_s: f64,
    /// Measured proving throughput at 16 nonces per pass, data in memory; 0 = not measured.
    #[serde(default)]
    pub proving_mib_s_per_16_nonces: f64,
    /// Whether this CPU may compute labels.
    #[serde(default)]
    pub init_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskInfo {
    /// Unique on its rig (the worker derives it from the `--disk` path).
    pub id: String,
    /// The directory the worker stores data under.
    pub mount: String,
    /// Disks naming the same physical device share its bandwidth.
    #[serde(default)]
    pub physical_device: String,
    #[serde(default)]
    pub filesystem: String,
    pub capacity_bytes: u64,
    pub free_bytes: u64,
    /// Measured sequential read speed, MB/s; 0 = not measured.
    #[serde(default)]
    pub read_mb_s: f64,
    /// Measured sequential write speed, MB/s; 0 = not measured.
    #[serde(default)]
    pub write_mb_s: f64,
}

/// A field that fails validation: its path in the body and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct FieldError {
    pub field: String,
    pub why: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, why: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            why: why.into(),
        }
    }
}

fn rate(field: String, v: f64) -> Result<(), FieldError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(FieldError::new(field, "must be a finite number >= 0"))
    }
}

/// Most GPUs, CPUs threads and disks one rig may report (a bound on what one request can cost).
pub const MAX_DEVICES: usize = 4096;

impl Capabilities {
    /// Checks what serde cannot: unique ids, sane numbers.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.gpus.len() > MAX_DEVICES {
            return Err(FieldError::new("capabilities.gpus", "too many entries"));
        }
        if self.disks.len() > MAX_DEVICES {
            return Err(FieldError::new("capabilities.disks", "too many entries"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (k, g) in self.gpus.iter().enumerate() {
            if !seen.insert(g.index) {
                return Err(FieldError::new(
                    format!("capabilities.gpus[{k}].index"),
                    format!("GPU index {} is listed twice", g.index),
                ));
            }
            rate(format!("capabilities.gpus[{k}].labels_per_s"), g.labels_per_s)?;
        }
        rate("capabilities.cpu.labels_per_s".into(), self.cpu.labels_per_s)?;
        rate(
            "capabilities.cpu.randomx_hashes_per_s".into(),
            self.cpu.randomx_hashes_per_s,
        )?;
        rate(
            "capabilities.cpu.proving_mib_s_per_16_nonces".into(),
            self.cpu.proving_mib_s_per_16_nonces,
        )?;
        let mut ids = std::collections::BTreeSet::new();
        for (k, d) in self.disks.iter().enumerate() {
            if d.id.trim().is_empty() || d.id.len() > 256 {
                return Err(FieldError::new(
                    format!("capabilities.disks[{k}].id"),
                    "must be 1 to 256 characters",
                ));
            }
            if !ids.insert(d.id.as_str()) {
                return Err(FieldError::new(
                    format!("capabilities.disks[{k}].id"),
                    format!("disk id {:?} is listed twice", d.id),
                ));
            }
            if d.free_bytes > d.capacity_bytes {
                return Err(FieldError::new(
                    format!("capabilities.disks[{k}].free_bytes"),
                    "exceeds capacity_bytes",
                ));
            }
            rate(format!("capabilities.disks[{k}].read_mb_s"), d.read_mb_s)?;
            rate(format!("capabilities.disks[{k}].write_mb_s"), d.write_mb_s)?;
        }
        if let Some(u) = &self.stream_url {
            let scheme = u.starts_with("http://") || u.starts_with("https://");
            if !scheme || u.len() > 2048 || u.chars().any(char::is_whitespace) {
                return Err(FieldError::new(
                    "capabilities.stream_url",
                    "must be an http:// or https:// URL of at most 2048 characters",
                ));
            }
        }
        Ok(())
    }
}

/// The payload stored with every job: what to do, on which device, and where the data goes.
/// The job's identity is the job row's `identity_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub device: Device,
    pub work: JobKind,
    /// Init and verify: the disk the file lives on.
    #[serde(default)]
    pub target: Option<Placement>,
    /// k2pow and prove: the challenge, 64 hex digits.
    #[serde(default)]
    pub challenge: Option<String>,
}

/// The public data of a job's identity that a worker needs to do the job. Never a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityParams {
    pub identity_id: Uuid,
    /// 64 hex digits: the identity's public key.
    pub node_id: String,
    /// 64 hex digits, once known.
    pub commitment_atx_id: Option<String>,
    pub num_units: u32,
    pub labels_per_unit: u64,
    pub max_file_size: u64,
    pub scrypt_n: u32,
}

/// `POST /api/v1/worker/enroll`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The one-time join token from `POST /api/v1/workers/join-tokens`.
    pub join_token: String,
    /// The rig's name as operators see it.
    pub name: String,
    #[serde(default)]
    pub capabilities: Capabilities,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrollResponse {
    pub worker_id: Uuid,
    /// The worker's own bearer token from now on. Shown once; the coordinator keeps a hash.
    pub credential: String,
}

/// `POST /api/v1/worker/heartbeat`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// New capabilities, when they changed (free space, measured speeds, devices).
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    /// The jobs the worker holds, so that the answer can name those it must stop.
    #[serde(default)]
    pub jobs: Vec<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    /// `online` or `draining` (a removed worker gets 401 instead).
    pub state: String,
    /// Finish or hand back what you hold, take nothing new.
    pub drain: bool,
    /// Jobs among those reported that the worker no longer holds (cancelled, expired, reassigned):
    /// stop them; what they reported done stays counted.
    pub stop: Vec<Uuid>,
    /// Send the next heartbeat within this many milliseconds.
    pub heartbeat_interval_ms: u64,
    /// The operator paused this rig: keep running what you hold, lease nothing new. Absent in
    /// answers of coordinators that predate it (then false).
    #[serde(default)]
    pub paused: bool,
}

/// `POST /api/v1/worker/lease`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// Kinds the worker takes now (`init`, `verify`, `k2pow`, `prove`); empty: any.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// At most this many jobs (1..=64; default 1).
    #[serde(default)]
    pub max_jobs: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseResponse {
    pub jobs: Vec<LeasedJob>,
    /// Each lease lasts this long unless renewed by a progress report.
    pub lease_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeasedJob {
    pub job_id: Uuid,
    pub kind: String,
    /// Every report about this job must carry it; a newer lease makes it stale.
    pub fencing_token: i64,
    pub lease_expires_at: i64,
    pub attempt: u32,
    pub identity: IdentityParams,
    pub spec: JobSpec,
    /// The last checkpoint any holder of this job reported (resume from it).
    #[schema(value_type = Option<Object>)]
    pub progress: Option<Value>,
    /// Prove: the k2pow of every nonce group of the pass (from finished k2pow jobs). Empty for
    /// the other kinds, and absent in leases of coordinators that predate it.
    #[serde(default)]
    pub pows: Vec<GroupPow>,
    /// k2pow, prove and verify: the network's proof parameters, which the worker uses instead of
    /// its own default. Absent in leases of coordinators that predate it (then the worker's).
    #[serde(default)]
    pub proof: Option<ProofParams>,
    /// Init on another rig's disk (`spec.target.worker_id` is not the leasing worker): send the
    /// labels there. Absent for every other job, and in leases of coordinators that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamGrant>,
}

/// Leave to send the labels of one init lease to the storage worker that owns the target disk.
/// The token is valid for this lease (its fencing token) only; the coordinator keeps a hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamGrant {
    /// The storage worker's stream endpoint (its `capabilities.stream_url`).
    pub url: String,
    /// Bearer token for the storage worker's chunk route.
    pub token: String,
}

impl std::fmt::Debug for StreamGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamGrant")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// `POST /api/v1/worker/stream/authorize`: a storage worker asks what a stream token it was
/// shown allows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamAuthorizeRequest {
    pub token: String,
}

/// What a stream token allows: labels `range` of file `file_index` of this identity, written to
/// disk `disk_id` of the asking worker, while lease `fencing_token` of the job holds. Public data
/// only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamAuthorization {
    pub job_id: Uuid,
    pub fencing_token: i64,
    /// The worker holding the lease (the one computing the labels).
    pub compute_worker_id: Uuid,
    pub identity: IdentityParams,
    pub file_index: u32,
    pub range: LabelRange,
    pub disk_id: String,
    /// Ask again after this long (the lease may be renewed, or lost).
    pub valid_for_ms: u64,
}

/// The network's proof parameters (post's `ProofConfig`): K1, K2 and the k2pow difficulty of
/// one space unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofParams {
    /// Expected number of qualifying labels per nonce (mainnet 26).
    pub k1: u32,
    /// Number of qualifying labels a proof lists (mainnet 37).
    pub k2: u32,
    /// 64 hex digits: the k2pow threshold of one space unit, big-endian.
    pub pow_difficulty: String,
}

impl ProofParams {
    /// Checks the values: K1 and K2 at least 1, K2 at most 1000, a 64-hex difficulty that is not
    /// zero. Returns the difficulty's bytes.
    pub fn validate(&self) -> Result<[u8; 32], FieldError> {
        if self.k1 == 0 {
            return Err(FieldError::new("k1", "must be at least 1"));
        }
        if self.k2 == 0 || self.k2 > 1000 {
            return Err(FieldError::new("k2", "must be 1 to 1000"));
        }
        let mut d = [0u8; 32];
        hex::decode_to_slice(&self.pow_difficulty, &mut d)
            .map_err(|_| FieldError::new("pow_difficulty", "must be 64 hex digits"))?;
        if d == [0u8; 32] {
            return Err(FieldError::new("pow_difficulty", "must not be zero"));
        }
        Ok(d)
    }
}

/// Labels `[start_label, end_label)` (identity-wide indices, within file `file_index`) written and
/// durable on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeDone {
    pub file_index: u64,
    pub start_label: u64,
    pub end_label: u64,
}

/// `POST /api/v1/worker/jobs/{id}/progress`: renews the lease and checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressRequest {
    pub fencing_token: i64,
    /// Units done from the start of the job's range (labels, groups or bytes, per kind).
    #[serde(default)]
    pub done: u64,
    /// Current speed in the same unit per second.
    #[serde(default)]
    pub rate_per_s: f64,
    /// Init: ranges now durable; each is recorded once, whatever the retries.
    #[serde(default)]
    pub ranges: Vec<RangeDone>,
    /// Free-form checkpoint the worker resumes from (for example k2pow nonces found so far).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub checkpoint: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProgressResponse {
    pub lease_expires_at: i64,
    /// Ranges of this report that were new (the rest were already recorded).
    pub ranges_recorded: u32,
    /// Init: where the job's range ends now. Lower than the leased range when the coordinator cut
    /// the job short (its tail went to faster devices): the worker stops there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_label: Option<u64>,
}

/// `POST /api/v1/worker/jobs/{id}/complete`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub fencing_token: i64,
    /// Init: the last ranges, recorded in the same request before the job is marked done.
    #[serde(default)]
    pub ranges: Vec<RangeDone>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
}

/// `POST /api/v1/worker/jobs/{id}/fail`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub fencing_token: i64,
    pub error: String,
    /// Requeue while attempts remain (a crash, a lost disk) or fail for good (bad input).
    #[serde(default = "yes")]
    pub retryable: bool,
    /// With `retryable`: wait this long before the job may be leased again.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// An init job whose target disk is full: the coordinator records the disk's free space and
    /// moves the files that disk cannot finish to other disks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_full: Option<DiskFull>,
}

/// A disk that has no room for the labels of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskFull {
    /// The disk's id on the worker (the job's target disk).
    pub disk_id: String,
    /// Free bytes the worker measured on it.
    pub free_bytes: u64,
    /// Bytes the job still needed.
    pub needed_bytes: u64,
}

/// The k2pow of one nonce group: `RandomX(pow || group || challenge[..8] || node id)` is below
/// the pow difficulty scaled by the identity's `num_units` (spec/post.md §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPow {
    /// Absolute nonce group (nonces `16·group .. 16·group + 15`); below 256.
    pub group: u32,
    pub pow: u64,
}

/// The `result` of a completed k2pow job, and its checkpoint while it runs: one pow per group of
/// the job's range, in group order (while running: the groups solved so far, a prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct K2powResult {
    pub pows: Vec<GroupPow>,
}

/// A proof exactly as post's `Proof` serializes (and as the certifier and the node's API take
/// it): `indices` are the K2 label indices bit-packed to the minimum width for the identity's
/// label count, in standard base64 with padding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofData {
    /// The winning nonce; its nonce group is `nonce / 16`.
    pub nonce: u32,
    /// Base64 of the compressed indices.
    pub indices: String,
    /// The k2pow of the nonce's group.
    pub pow: u64,
}

/// What a verifier needs besides the proof (post's `ProofMetadata`, with ids in hex as
/// everywhere in this protocol).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofMeta {
    /// 64 hex digits.
    pub node_id: String,
    /// 64 hex digits.
    pub commitment_atx_id: String,
    /// 64 hex digits: the challenge the proof answers.
    pub challenge: String,
    pub num_units: u32,
    pub labels_per_unit: u64,
}

/// The `result` of a completed prove job: one pass over nonces
/// `[first_nonce, first_nonce + nonces)`. `found: false` (and no proof) when no nonce of the
/// pass reached K2 qualifying labels: the coordinator schedules the next pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProveResult {
    pub found: bool,
    /// Present exactly when `found`.
    #[serde(default)]
    pub proof: Option<ProofData>,
    pub metadata: ProofMeta,
    pub first_nonce: u32,
    pub nonces: u32,
    /// Labels read and scanned by this attempt (a pass that finds its proof early reads less).
    pub labels_read: u64,
}

/// The `result` of a completed verify job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyResult {
    /// Labels re-derived and compared with the stored ones (the sample, not the range length).
    pub checked: u64,
    /// Ranges to initialize again: every sampled label that differs, and every label the file
    /// lacks (missing or short file), widened to its enclosing aligned chunk (identity-wide
    /// label indices, aligned to the worker's chunk size, 4096 labels), clamped to the job's
    /// range; sorted, merged, never overlapping.
    pub bad_ranges: Vec<LabelRange>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_validation_names_the_field() {
        let mut c = Capabilities {
            disks: vec![DiskInfo {
                id: "d0".into(),
                mount: "/data".into(),
                physical_device: String::new(),
                filesystem: "ext4".into(),
                capacity_bytes: 10,
                free_bytes: 20,
                read_mb_s: 0.0,
                write_mb_s: 0.0,
            }],
            ..Capabilities::default()
        };
        let e = c.validate().expect_err("free > capacity");
        assert_eq!(e.field, "capabilities.disks[0].free_bytes");
        c.disks[0].free_bytes = 5;
        c.validate().expect("valid");
        c.cpu.labels_per_s = f64::NAN;
        assert_eq!(
            c.validate().expect_err("nan").field,
            "capabilities.cpu.labels_per_s"
        );
    }

    #[test]
    fn result_types_round_trip_and_refuse_unknown_fields() {
        let k = K2powResult {
            pows: vec![GroupPow { group: 3, pow: 18712 }],
        };
        let v = serde_json::to_value(&k).expect("json");
        assert_eq!(v, serde_json::json!({"pows": [{"group": 3, "pow": 18712}]}));
        assert_eq!(serde_json::from_value::<K2powResult>(v).expect("back"), k);
        assert!(serde_json::from_str::<GroupPow>(r#"{"group":1,"pow":2,"x":0}"#).is_err());
        let r = VerifyResult {
            checked: 5,
            bad_ranges: vec![LabelRange { start: 0, end: 4096 }],
        };
        let text = serde_json::to_string(&r).expect("json");
        assert_eq!(serde_json::from_str::<VerifyResult>(&text).expect("back"), r);
        // A lease from a coordinator without `pows`, and a heartbeat answer without `paused`.
        let hb: HeartbeatResponse = serde_json::from_str(
            r#"{"state":"online","drain":false,"stop":[],"heartbeat_interval_ms":5000}"#,
        )
        .expect("old heartbeat answer");
        assert!(!hb.paused);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_str::<EnrollRequest>(r#"{"join_token":"t","name":"n","private_key":"00"}"#)
            .expect_err("unknown field");
        assert!(e.to_string().contains("private_key"));
    }
}
