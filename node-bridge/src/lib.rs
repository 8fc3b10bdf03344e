//! The node the coordinator smeshes against. `NodeBridge` is the interface; the
//! embedded devnet implements it with the pieces below, each keeping the byte formats and
//! validation rules of the real network (`shared/spec/devnet.md`) and shrinking only durations,
//! sizes and counts:
//!
//! - [`bridge`]: the [`bridge::NodeBridge`] trait the coordinator uses, its types and errors;
//! - [`devnet`]: the embedded devnet node implementing it, driven by an explicit time;
//! - [`codec`]: the SCALE codec go-spacemesh uses;
//! - [`clock`]: genesis, layers, epochs and the PoET round schedule;
//! - [`poet`]: PoET servers: registration, membership tree, sequential work, proofs, verifier;
//! - [`atx`]: ATX v1: wire format, ids, PoET challenges, validation, weight and height,
//!   malfeasance proofs;
//! - [`rewards`]: the subsidy curve, eligibility slots and per-layer rewards;
//! - [`vm`]: the account model: addresses, stub and spawned accounts, the wallet template,
//!   transactions, gas and fees.

pub mod atx;
pub mod ballot;
pub mod bridge;
pub mod clock;
pub mod codec;
pub mod devnet;
pub mod poet;
pub mod rewards;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod vm;
pub mod vrf;
