//! smeshfleet's PoST core: bit-exact with the Spacemesh network's reference implementation
//! (see `shared/spec/post.md`). Synchronous and pure: no async runtime, no database.

pub mod backend;
pub mod check;
pub mod cipher;
pub mod compression;
pub mod data;
pub mod difficulty;
pub mod initialize;
pub mod metadata;
pub mod pow;
pub mod proof;
pub mod prove;
pub mod reader;
pub mod scrypt;
pub mod verify;
