//! Worker liveness in memory, written to the store in batches.
//!
//! A fleet of 1,000 rigs heartbeating, plus reconnect storms after a network cut, must not cost one
//! database write per heartbeat: a heartbeat records "seen at T" (and its new capabilities, if
//! any) here, and [`Liveness::flush`] writes them all in one transaction (every second from the
//! coordinator's flush task, and at the start of every reconcile pass, before silent workers are
//! marked offline, so the store never calls a worker silent that was heard from).
//!
//! The worker states (and paused flags) a heartbeat answers with are cached here too, loaded from the store on first
//! use and dropped whenever this process changes a worker's state (drain, resume, removal,
//! offline). Only one coordinator runs on a database (the store's exclusive lock), so no other
//! process changes them behind this cache. A heartbeat from a worker the cache knows as offline is
//! written through at once.
//!
//! What a crash loses: at most one flush interval of "seen at" times and capabilities, which the
//! next heartbeats restore; never a job, a range or a state change.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;
use uuid::Uuid;

use crate::store::{Store, StoreError, WorkerState};

/// The in-memory side of worker heartbeats. Cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct Liveness {
    inner: Mutex<Inner>,
}

/// One worker's heartbeat not yet written.
#[derive(Debug, Clone, PartialEq)]
struct Pending {
    at: i64,
    capabilities: Option<Value>,
}

impl Pending {
    /// Keeps the latest time and the newest capabilities of both.
    fn merge(&mut self, other: Pending) {
        if other.at >= self.at {
            self.at = other.at;
            if other.capabilities.is_some() {
                self.capabilities = other.capabilities;
            }
        } else if self.capabilities.is_none() {
            self.capabilities = other.capabilities;
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Heartbeat times (and capabilities) not yet written, by worker.
    pending: HashMap<Uuid, Pending>,
    /// Known states (as in the store, plus pending heartbeats), by worker.
    states: HashMap<Uuid, WorkerState>,
    /// Whether an operator paused the worker (as in the store), by worker.
    paused: HashMap<Uuid, bool>,
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
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached state of `worker`, if known.
    pub fn state(&self, worker: Uuid) -> Option<WorkerState> {
        self.lock().states.get(&worker).copied()
    }

    /// Records a state read from (or written to) the store.
    pub fn set_state(&self, worker: Uuid, state: WorkerState) {
        self.lock().states.insert(worker, state);
    }

    /// Whether `worker` is paused, if known.
    pub fn paused(&self, worker: Uuid) -> Option<bool> {
        self.lock().paused.get(&worker).copied()
    }

    /// Records the paused flag read from (or written to) the store.
    pub fn set_paused(&self, worker: Uuid, paused: bool) {
        self.lock().paused.insert(worker, paused);
    }

    /// Forgets what is cached of `worker` (its state changed in the store); the next heartbeat
    /// reads it again.
    pub fn forget(&self, worker: Uuid) {
        let mut g = self.lock();
        g.states.remove(&worker);
        g.paused.remove(&worker);
        g.shapes.remove(&worker);
    }

    /// Records a heartbeat at `now` to be written by the next flush.
    pub fn beat(&self, worker: Uuid, now: i64) {
        self.add(
            worker,
            Pending {
                at: now,
                capabilities: None,
            },
        );
    }

    /// Records a heartbeat with new capabilities (already validated) for the next flush.
    pub fn beat_with_capabilities(&self, worker: Uuid, now: i64, capabilities: Value) {
        self.add(
            worker,
            Pending {
                at: now,
                capabilities: Some(capabilities),
            },
        );
    }

    fn add(&self, worker: Uuid, p: Pending) {
        let mut g = self.lock();
        match g.pending.get_mut(&worker) {
            Some(old) => old.merge(p),
            None => {
                g.pending.insert(worker, p);
            }
        }
    }

    /// The latest heartbeat time not yet written, if any (for API views between flushes).
    pub fn pending_since(&self, worker: Uuid) -> Option<i64> {
        self.lock().pending.get(&worker).map(|p| p.at)
    }

    /// Replaces the device fingerprint of `worker`; returns whether it changed (or was unknown).
    pub fn shape_changed(&self, worker: Uuid, shape: u64) -> bool {
        self.lock().shapes.insert(worker, shape) != Some(shape)
    }

    /// Writes every pending heartbeat (time, and capabilities where new) in one transaction. On
    /// failure they are put back (merged with newer ones) and the error returned. Returns how many
    /// workers were written.
    pub async fn flush(&self, store: &Store) -> Result<usize, StoreError> {
        let batch: Vec<(Uuid, Pending)> = {
            let mut g = self.lock();
            if g.pending.is_empty() {
                return Ok(0);
            }
            g.pending.drain().collect()
        };
        let beats: Vec<(Uuid, i64, Option<&Value>)> = batch
            .iter()
            .map(|(w, p)| (*w, p.at, p.capabilities.as_ref()))
            .collect();
        match store.record_heartbeats(&beats).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                for (w, p) in batch {
                    self.add(w, p);
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
        l.beat_with_capabilities(w, 10, serde_json::json!({"a": 1}));
        l.beat(w, 5);
        assert_eq!(l.pending_since(w), Some(10));
        l.beat(w, 12);
        assert_eq!(
            l.lock().pending.get(&w).and_then(|p| p.capabilities.clone()),
            Some(serde_json::json!({"a": 1})),
            "a later beat without capabilities keeps the newest ones"
        );
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
