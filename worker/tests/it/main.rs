//! The worker's integration tests, one binary (one link) for all: discovery on this machine, the
//! executors on real files, and the agent against a fake coordinator.

mod agent;
mod discovery;
mod executors;
