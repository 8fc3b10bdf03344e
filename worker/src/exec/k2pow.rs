//! The k2pow executor: solve the RandomX proof of work of every nonce group of a job's range
//! (spec/post.md §4.4), exactly as post's prover does before a pass: the pow of group `g` is the
//! smallest `x < 2^56` with `RandomX(x || g || challenge[..8] || node id)` below the pow
//! difficulty divided by the identity's `num_units`.
//!
//! Groups are solved in order, one at a time with every allowed thread, and each solved group is
//! reported at once with all the pows so far as the checkpoint, so that the coordinator's "groups
//! done from the start" and the checkpoint always agree. A later attempt resumes after the
//! checkpoint's prefix, re-checking each pow it takes over (one hash each) so that a damaged
//! checkpoint costs a recomputation, never a bad proof.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use post::difficulty::scale_pow_difficulty;
use post::pow::{challenge8, PowSolver, PowVerifier, RandomXMode, RandomXOptions, RandomXPow};
use post::proof::ProofConfig;
use protocol::{GroupPow, GroupRange, IdentityParams, K2powResult};

use super::{parse32, ExecError};

/// One k2pow job, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K2powTask {
    pub node_id: [u8; 32],
    pub num_units: u32,
    pub challenge: [u8; 32],
    pub groups: GroupRange,
    /// Pows an earlier attempt reported (the lease's checkpoint); checked before use.
    pub resumed: Vec<GroupPow>,
}

impl K2powTask {
    /// Checks the job: a 64-hex challenge, groups non-empty and below 256 (a nonce group is one
    /// byte on the wire).
    pub fn new(
        identity: &IdentityParams,
        challenge: Option<&str>,
        groups: GroupRange,
        resumed: Vec<GroupPow>,
    ) -> Result<Self, ExecError> {
        let challenge =
            challenge.ok_or_else(|| ExecError::Invalid("k2pow job without a challenge".into()))?;
        if groups.is_empty() || groups.end > 256 {
            return Err(ExecError::Invalid(format!(
                "nonce groups [{}, {}) must be non-empty and below 256",
                groups.start, groups.end
            )));
        }
        if identity.num_units == 0 {
            return Err(ExecError::Invalid("the identity has 0 space units".into()));
        }
        Ok(Self {
            node_id: parse32("node_id", &identity.node_id)?,
            num_units: identity.num_units,
            challenge: parse32("challenge", challenge)?,
            groups,
            resumed,
        })
    }
}

/// Solves every group of `task` in order. `report` is called after each group with the pows so
/// far (a prefix of the range); resumed pows that verify are reported once, up front.
pub fn run_k2pow(
    task: &K2powTask,
    cfg: &ProofConfig,
    solver: &dyn PowSolver,
    verifier: &dyn PowVerifier,
    stop: &AtomicBool,
    report: &mut dyn FnMut(&K2powResult),
) -> Result<K2powResult, ExecError> {
    let scaled = scale_pow_difficulty(&cfg.pow_difficulty, task.num_units)
        .map_err(|e| ExecError::Invalid(format!("pow difficulty: {e}")))?;
    let c8 = challenge8(&task.challenge);
    let mut out = K2powResult::default();
    // Take over the checkpoint's prefix while its pows verify.
    for (p, g) in task.resumed.iter().zip(task.groups.start..task.groups.end) {
        // g < 256 (checked in `new`).
        if p.group != g
            || verifier
                .verify(p.pow, g as u8, &c8, &task.node_id, &scaled)
                .is_err()
        {
            tracing::warn!(
                group = g,
                "the k2pow checkpoint does not verify from here; solving again"
            );
            break;
        }
        out.pows.push(*p);
    }
    if !out.pows.is_empty() {
        report(&out);
    }
    let next = task.groups.start + out.pows.len() as u32;
    for g in next..task.groups.end {
        if stop.load(Ordering::Relaxed) {
            return Err(ExecError::Stopped);
        }
        let pow = solver.solve_with_stop(g as u8, &c8, &task.node_id, &scaled, stop)?;
        out.pows.push(GroupPow { group: g, pow });
        report(&out);
    }
    Ok(out)
}

/// The worker's RandomX, built on first use and kept: the fast mode's dataset takes about 2 GiB
/// and a minute (single-threaded) to build, so it is built once per process, and only on a rig
/// that gets k2pow work. Checking pows (prove jobs) needs only the light mode's cache: a light
/// instance is kept for that unless a fast one exists.
pub struct PowEngine {
    mode: RandomXMode,
    large_pages: bool,
    threads: usize,
    solver: Mutex<Option<Arc<RandomXPow>>>,
    light: Mutex<Option<Arc<RandomXPow>>>,
}

impl std::fmt::Debug for PowEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowEngine")
            .field("mode", &self.mode)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl PowEngine {
    /// `threads` search threads (the worker's `--cpu-threads`; at least 1).
    pub fn new(mode: RandomXMode, large_pages: bool, threads: usize) -> Self {
        Self {
            mode,
            large_pages,
            threads: threads.max(1),
            solver: Mutex::new(None),
            light: Mutex::new(None),
        }
    }

    fn build(&self, mode: RandomXMode) -> Result<RandomXPow, ExecError> {
        Ok(RandomXPow::with_options(RandomXOptions {
            mode,
            threads: self.threads,
            large_pages: self.large_pages,
        })?)
    }

    /// The search instance (blocking: builds it on first use). A fast mode that cannot be
    /// built (not enough memory) falls back to the light mode: slower, same pows.
    pub fn solver(&self) -> Result<Arc<RandomXPow>, ExecError> {
        let mut slot = self.solver.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = slot.as_ref() {
            return Ok(rx.clone());
        }
        let rx = match self.build(self.mode) {
            Ok(rx) => rx,
            Err(e) if self.mode == RandomXMode::Fast => {
                tracing::warn!(error = %e, "RandomX fast mode unavailable; using the light mode");
                self.build(RandomXMode::Light)?
            }
            Err(e) => return Err(e),
        };
        let rx = Arc::new(rx);
        *slot = Some(rx.clone());
        Ok(rx)
    }

    /// An instance to check pows with: the search instance if it exists, else a light one.
    pub fn verifier(&self) -> Result<Arc<RandomXPow>, ExecError> {
        if let Some(rx) = self.solver.lock().ok().and_then(|s| s.clone()) {
            return Ok(rx);
        }
        let mut slot = self.light.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = slot.as_ref() {
            return Ok(rx.clone());
        }
        let rx = Arc::new(self.build(RandomXMode::Light)?);
        *slot = Some(rx.clone());
        Ok(rx)
    }
}
