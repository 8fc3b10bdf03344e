//! smeshfleet's coordinator: keystore, durable store, scheduler, services and the command line.

pub mod api;
pub mod cli;
pub mod keystore;
pub mod liveness;
pub mod metrics;
pub mod reconcile;
pub mod scheduler;
pub mod secrets;
pub mod service;
pub mod smeshing;
pub mod store;
