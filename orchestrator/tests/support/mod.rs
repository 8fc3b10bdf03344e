//! Helpers shared by the orchestrator's integration tests.

pub mod pg;
