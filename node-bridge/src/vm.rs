//! The account model of the embedded devnet (spec/devnet.md §5): addresses, stub and spawned
//! accounts, the wallet and multisig templates, transactions, gas, fees and nonces.
//!
//! - [`bech32`]: BIP-173 bech32 (not bech32m), written here;
//! - [`address`]: 24-byte addresses, templates, bech32 text with an HRP;
//! - [`tx`]: the transaction layout, signing and ids;
//! - [`gas`]: the gas schedule and how the spec's figures decompose;
//! - [`state`]: accounts and genesis stubs;
//! - [`exec`]: `apply_tx` and `apply_layer` (fees into the reward pot);
//! - [`receipt`]: the per-transaction receipt an API shows.
//!
//! Executed templates: wallet and multisig. Vesting and vault addresses are known but their
//! transactions decode as [`TxError::UnsupportedTemplate`] (ineffective).

pub mod address;
pub mod bech32;
pub mod exec;
pub mod gas;
pub mod receipt;
pub mod state;
pub mod tx;

pub use address::{
    wallet_address, Address, AddressError, Template, HRP_MAINNET, HRP_STANDALONE, HRP_TESTNET,
};
pub use exec::{Failure, Ineffective, LayerOutcome, TxOutcome, TxResult, Vm, VmConfig, VmError};
pub use gas::{Gas, GasSchedule};
pub use receipt::{TxReason, TxReceipt, TxStatus};
pub use state::{Account, Accounts, GenesisAccount};
pub use tx::{Call, GenesisId, Method, SpawnArgs, Tx, TxError, TxHeader, TxId};
