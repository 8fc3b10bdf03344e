//! Worker liveness in memory, written to the store in batches.
//!
//! A fleet of 1,000 rigs heartbeating, plus reconnect storms after a network cut, must not cost one
//! database write per heartbeat: a heartbeat without capabilities only records "seen at T" here,
//! and [`Liveness::flush`] writes every pending time in one transaction (every second from the
//! coordinator's flush task, and at the start of every reconcile pass, before silent workers are
//! marked offline, so the store never calls a worker silent that was heard from).
//!
//! The worker states a heartbeat answers with are cached here too, loaded from the store on first
//! use and dropped whenever this process changes a worker's state (drain, resume, removal,
//! offline). Only one coordinator runs on a database (the store's exclusive lock), so no other
//! process changes them behind this cache. A heartbeat from a worker the cache knows as offline (or
//! with capabilities) is written through at once.
//!
//! What a crash loses: at most one flush interval of "seen at" times, which the next heartbeats
//! restore; never a job, a range or a state change.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use crate::store::{Store, StoreError, WorkerState};

/// The in-memory side of worker heartbeats. Cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct Liveness {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Heartbeat times not yet written, by worker.
    pending: HashMap<Uuid, i64>,
    /// Known states (as in the store, plus pending heartbeats), by worker.
    states: HashMap<Uuid, WorkerState>,
    /// Fingerprint of each worker's devices, to tell a change of devices from a change of free
    /// space.
    shapes: HashMap<Uuid, u64>,
}

impl Liveness {
    pub fn new() -> Self {
        Liveness::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached state of `worker`, if known.
    pub fn state(&self, worker: Uuid) -> Option<WorkerState> {
        self.lock().states.get(&worker).copied()
    }

    /// Records a state read from (or written to) the store.
    pub fn set_state(&self, worker: Uuid, state: WorkerState) {
        self.lock().states.insert(worker, state);
    }

    /// Forgets what is cached of `worker` (its state changed in the store); the next heartbeat
    /// reads it again.
    pub fn forget(&self, worker: Uuid) {
        let mut g = self.lock();
        g.states.remove(&worker);
        g.shapes.remove(&worker);
    }

    /// Records a heartbeat at `now` to be written by the next flush.
    pub fn beat(&self, worker: Uuid, now: i64) {
        let mut g = self.lock();
        let t = g.pending.entry(worker).or_insert(now);
        *t = (*t).max(now);
    }

    /// The latest heartbeat time not yet written, if any (for API views between flushes).
    pub fn pending_since(&self, worker: Uuid) -> Option<i64> {
        self.lock().pending.get(&worker).copied()
    }

    /// Replaces the device fingerprint of `worker`; returns whether it changed (or was unknown).
    pub fn shape_changed(&self, worker: Uuid, shape: u64) -> bool {
        self.lock().shapes.insert(worker, shape) != Some(shape)
    }

    /// Writes every pending heartbeat time in one transaction. On failure the times are put back
    /// (unless newer ones arrived) and the error returned. Returns how many were written.
    pub async fn flush(&self, store: &Store) -> Result<usize, StoreError> {
        let batch: Vec<(Uuid, i64)> = {
            let mut g = self.lock();
            if g.pending.is_empty() {
                return Ok(0);
            }
            g.pending.drain().collect()
        };
        match store.record_heartbeats(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                let mut g = self.lock();
                for (w, t) in batch {
                    let p = g.pending.entry(w).or_insert(t);
                    *p = (*p).max(t);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_keep_the_latest_time_and_shapes_report_changes() {
        let l = Liveness::new();
        let w = Uuid::new_v4();
        l.beat(w, 10);
        l.beat(w, 5);
        assert_eq!(l.pending_since(w), Some(10));
        assert!(l.shape_changed(w, 1));
        assert!(!l.shape_changed(w, 1));
        assert!(l.shape_changed(w, 2));
        l.set_state(w, WorkerState::Online);
        assert_eq!(l.state(w), Some(WorkerState::Online));
        l.forget(w);
        assert_eq!(l.state(w), None);
        assert!(l.shape_changed(w, 2));
    }
}
