//! The coordinator's ATX builder (spec/devnet.md §2.2, §2.7, §1.8–1.9) against any
//! [`NodeBridge`](node_bridge::bridge::NodeBridge), with the identities' keys kept in the
//! [`Keystore`](crate::keystore::Keystore) and every ATX signature gated by the safety database
//! (spec/node.md §2.7).
//!
//! One cycle of one identity, in order:
//!
//! 1. [`prepare_challenge`]: the builder timeline, the positioning ATX and the identity's previous
//!    ATX give the [`NIPostChallengeV1`](node_bridge::atx::NIPostChallengeV1) (initial: sequence 0,
//!    commitment ATX and initial PoST; otherwise previous + 1) and its PoET challenge hash;
//! 2. [`register`]: one PoET-domain signature over the challenge hash, sent to every PoET of the
//!    cycle's phase; one PoET failing does not stop the others;
//! 3. [`best_poet_proof`]: once the round has ended, the proof with the most leaves among the PoETs
//!    that accepted the registration, with the identity's membership proof;
//! 4. the caller proves PoST over [`BestPoetProof::proof_ref`] (workers, in the real pipeline);
//! 5. [`publish`]: builds the ATX, asks the safety database (Safe gives the keystore's signing
//!    permit; NotSafe is [`SmeshingError::NotSafe`] and nothing is signed), signs, submits and
//!    returns the node's answer.
//!
//! [`prepare_challenge_durable`] and [`register_durable`] are steps 1 and 2 with the store: the
//! first challenge stored for an identity and publish epoch is the one every later call (also
//! after a restart) gets back (spec/node.md §2.7), and each PoET's answer is recorded.
//!
//! Retrying [`publish`] with the very same inputs is safe: the safety database answers Safe for the
//! message it already recorded, and the node reports the ATX as a duplicate.
//!
//! No key material passes through here: the keystore signs and only signatures come back, and the
//! errors name identities (public keys), epochs, PoETs and ATX ids only.

pub mod ballots;
mod builder;
mod driver;
mod error;
pub mod phase;
mod step;

pub use ballots::{Vote, VoteError, Voter};
pub use builder::{
    best_poet_proof, prepare_challenge, prepare_challenge_durable, publish, register, register_durable,
    AtxInputs, BestPoetProof, IdentityParams, PoetRegistrationResult, PoetSchedule, PreparedChallenge,
    Published,
};
pub use driver::{Driver, INITIAL_POST_EPOCH};
pub use error::{PoetFailure, SmeshingError};
pub use step::Step;
