//! The coordinator's scheduler: a pure function from what is known ([`Snapshot`]) to what to do
//! ([`Plan`]). No I/O, no clock (`now_ms` is in the snapshot), no randomness; the same snapshot, in
//! any list order, gives the same plan. The reconcile loop applies the plan and plans again when the
//! world changes; a plan only adds what is missing, so planning an applied plan yields no actions.
//!
//! Phases, in order:
//! 1. [`jobs`]: live jobs on lost workers, with expired leases, queued on drained or paused workers,
//!    on missing or disabled devices, double-booked or overlapping are cancelled; what every job
//!    durably did stays counted.
//! 2. [`placement`]: files without a disk get one (each file wholly on one disk, all of an
//!    identity's files on one worker, striped over its physical devices, free space never
//!    over-committed).
//! 3. [`proving`]: k2pow on CPU workers for every known challenge, and proving passes sequenced per
//!    physical device, earliest slack first, with the nonces per pass that fit the cycle gap.
//! 4. [`init`]: the missing labels split over idle GPUs (and CPUs where enabled) in contiguous
//!    ranges within one file, in proportion to measured speed; slow jobs give their tail to idle
//!    faster devices.

mod apply;
mod index;
mod init;
mod jobs;
mod model;
mod output;
mod placement;
mod proving;

pub use apply::apply;
pub use model::{
    CpuState, Device, DiskState, FileLocation, FileState, GpuState, GroupRange, IdentityPhase, IdentityState,
    JobKind, JobKindName, JobState, JobStatus, LabelRange, Layout, Placement, ProvingNeed, SchedulerConfig,
    Snapshot, WorkerState, LABEL_BYTES,
};
pub use output::{
    AtRisk, CancelReason, Cancellation, FilePlacement, InitAssignment, Issue, IssueKind, K2powAssignment,
    PlacementDecision, Plan, PlanSummary, ProofAssignment, ProofBound, ProofSlot, RiskReason, Truncation,
    Unplaced, UnplacedReason,
};

/// Plans the next actions for `snapshot`. Total: inconsistent input is reported in
/// [`Plan::issues`] and worked around, never a panic.
pub fn plan(snapshot: &Snapshot) -> Plan {
    let mut out = Plan {
        now_ms: snapshot.now_ms,
        ..Plan::default()
    };
    let idx = index::Index::build(snapshot, &mut out.issues);
    let mut book = jobs::classify(&idx, &mut out.cancellations);
    let newp = placement::place(&idx, &mut out);
    let cpu_reserved = proving::plan(&idx, &mut book, &mut out);
    init::plan(&idx, &book, &newp, &cpu_reserved, &mut out);

    // Placements, k2pow, proofs and the timeline come out of their phases in order.
    out.init.sort_by(|a, b| {
        (&a.identity_id, a.file_index, a.range.start).cmp(&(&b.identity_id, b.file_index, b.range.start))
    });
    out.cancellations.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    out.truncations.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    out.unplaced.sort_by(|a, b| a.identity_id.cmp(&b.identity_id));
    out.at_risk.sort_by(|a, b| a.identity_id.cmp(&b.identity_id));
    out
}
