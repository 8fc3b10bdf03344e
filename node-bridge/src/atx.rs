//! ATX v1 (spec/devnet.md §2, §4): wire format, ids and signed bytes, PoET challenges,
//! validation with real PoST verification, weight and height, malfeasance proofs, and a small
//! in-memory store.
//!
//! - [`wire`]: the v1 types and their SCALE encoding; every field encoding in one table
//!   ([`wire::fields`]), with which ones the spec confirms;
//! - [`ids`]: ATX id, [`signing_bytes`] (what the keystore signs), PoET challenge, golden ATX
//!   and genesis id;
//! - [`validate`]: [`validate_atx_v1`] against an [`AtxLookup`], one [`AtxError`] variant per
//!   rule;
//! - [`malfeasance`]: MultipleATXs and InvalidPrevATX detection, proofs and their verification;
//! - [`store`]: [`AtxStore`], which ingests validated ATXs, flags equivocating identities and
//!   picks positioning ATXs without them.
//!
//! This module never holds a private key: it produces the bytes to sign and checks signatures.

pub mod ids;
pub mod malfeasance;
pub mod store;
pub mod validate;
pub mod wire;

#[cfg(test)]
mod testkit;

pub use ids::{
    atx_id, genesis_id, golden_atx, poet_challenge, signing_bytes, verify_atx_signature, GenesisId,
    ATX_DOMAIN,
};
pub use malfeasance::{
    InvalidPostIndexProof, InvalidPrevAtxProof, MalfeasanceError, MalfeasanceProof, MultipleAtxsProof,
    PostCheck,
};
pub use store::{AtxStore, Ingested, StoreError};
pub use validate::{
    validate_atx_v1, AtxError, AtxLookup, AtxParams, PoetProofInfo, PostKind, ValidatedAtx, ValidationContext,
};
pub use wire::{
    ActivationTxV1, AtxId, Coinbase, Epoch, Hash32, InnerActivationTxV1, MerkleProof, NIPost,
    NIPostChallengeV1, NodeId, Post, PostMetadata, Scale,
};
