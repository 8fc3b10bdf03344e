//! Gas (spec/devnet.md §5.4). Fees are static: a transaction always pays
//! `maxGas = BaseGas + TXDATA·⌈len/8⌉ + FixedGas`, known before execution.
//!
//! # How the spec's two figures decompose
//!
//! go-spacemesh's templates (read at several commits of `genvm/templates/{wallet,multisig}`)
//! compose gas from these terms, with `header` the size of an account's mutable header and
//! `keys` the number of public keys in the template state:
//!
//! ```text
//! BaseGas(spawn) = TX + EDVERIFY·sigs + SPAWN        BaseGas(spend) = TX + EDVERIFY·sigs
//! LoadGas        = ACCOUNT_ACCESS + LOAD·⌈(32·keys + header)/8⌉
//! ExecGas(spawn) = STORE·⌈(32·keys + header)/8⌉
//! ExecGas(spend) = ACCOUNT_ACCESS + LOAD·⌈8/8⌉ + UPDATE·⌈header/8⌉ + UPDATE·⌈8/8⌉
//! FixedGas       = ExecGas (self-spawn) | LoadGas + ExecGas (anything else)
//! ```
//!
//! With go-spacemesh's `header` = 16 bytes (nonce, balance) a wallet self-spawn of 148 bytes
//! costs 53,000 + 2,432 + 30,000 = 85,432 and a 120-byte spend 23,000 + 1,920 + 3,592 + 4,857 =
//! 33,369. The spec instead states **100,432** and **36,090**. Both follow from the same
//! formulas with `header` = **40 bytes** (nonce 8 + balance 8 + template address 24):
//!
//! ```text
//! self-spawn: 20,000 + 3,000 + 30,000            base     53,000
//!             128·⌈148/8⌉ = 128·19                txdata    2,432
//!             5,000·⌈(32+40)/8⌉ = 5,000·9         exec     45,000   → 100,432
//! spend:      20,000 + 3,000                      base     23,000
//!             128·⌈120/8⌉ = 128·15                txdata    1,920
//!             2,500 + 182·⌈72/8⌉ = 2,500 + 1,638  load      4,138
//!             2,500 + 182 + 725·5 + 725           exec      7,032   →  36,090
//! ```
//!
//! After the base and txdata terms the spend's fixed part is 11,170; with the two account
//! accesses the formulas have, `11,170 − 5,000 = 182·a + 725·b` has the single non-negative
//! solution a = 10 LOAD words, b = 6 UPDATE words, which is what `header` = 40 gives (9 + 1 and
//! 5 + 1). The spawn's 45,000 is then STORE·9, the same 72 bytes. So one parameter reconciles
//! both figures; [`GasSchedule::SPEC`] uses it (the brief asks for the spec's figures) and
//! [`GasSchedule::GO_SPACEMESH`] keeps the 16 bytes of the code as read. Which one a real
//! standalone node charges is **unconfirmed** until a cross-check (§6.6).

use super::tx::Method;

/// Storing transaction data, per 8 bytes.
pub const TXDATA: u64 = 128;
/// Intrinsic cost of every transaction.
pub const TX: u64 = 20_000;
/// Intrinsic cost of a spawn, on top of [`TX`].
pub const SPAWN: u64 = 30_000;
/// Storing new state, per 8 bytes.
pub const STORE: u64 = 5_000;
/// Updating mutable state, per 8 bytes.
pub const UPDATE: u64 = 725;
/// Loading state, per 8 bytes.
pub const LOAD: u64 = 182;
/// Accessing an account.
pub const ACCOUNT_ACCESS: u64 = 2_500;
/// One ed25519 signature verification.
pub const EDVERIFY: u64 = 3_000;

/// Size of a public key in template state.
pub const PUBLIC_KEY_SIZE: usize = 32;
/// Size of a balance.
pub const ACCOUNT_BALANCE_SIZE: usize = 8;

/// Mainnet block gas limit (§5.4).
pub const MAINNET_BLOCK_GAS_LIMIT: u64 = 100_107_000;

/// `per_word` for every started 8 bytes of `size`.
pub const fn size_gas(per_word: u64, size: usize) -> u64 {
    per_word * size.div_ceil(8) as u64
}

/// Gas for carrying `len` bytes of transaction data.
pub const fn tx_data_gas(len: usize) -> u64 {
    size_gas(TXDATA, len)
}

/// The one parameter in which the spec's gas figures and the go-spacemesh code differ (see the
/// module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GasSchedule {
    /// Bytes of account header charged on load, store and update.
    pub account_header_size: usize,
}

impl GasSchedule {
    /// Reproduces spec/devnet.md §5.4: wallet self-spawn 100,432, spend 36,090.
    pub const SPEC: GasSchedule = GasSchedule {
        account_header_size: 40,
    };
    /// go-spacemesh's `ACCOUNT_HEADER_SIZE` as read: wallet self-spawn 85,432, spend 33,369.
    pub const GO_SPACEMESH: GasSchedule = GasSchedule {
        account_header_size: 16,
    };

    /// Intrinsic gas of a template whose transactions carry `sigs` signatures.
    pub fn base_gas(&self, method: Method, sigs: usize) -> u64 {
        let gas = TX + EDVERIFY * sigs as u64;
        match method {
            Method::Spawn => gas + SPAWN,
            Method::Spend => gas,
        }
    }

    /// Loading a principal whose state holds `keys` public keys.
    pub fn load_gas(&self, keys: usize) -> u64 {
        ACCOUNT_ACCESS + size_gas(LOAD, PUBLIC_KEY_SIZE * keys + self.account_header_size)
    }

    /// Executing `method` on (or spawning) an account whose state holds `keys` public keys.
    pub fn exec_gas(&self, method: Method, keys: usize) -> u64 {
        match method {
            Method::Spawn => size_gas(STORE, PUBLIC_KEY_SIZE * keys + self.account_header_size),
            Method::Spend => {
                ACCOUNT_ACCESS
                    + size_gas(LOAD, ACCOUNT_BALANCE_SIZE)
                    + size_gas(UPDATE, self.account_header_size)
                    + size_gas(UPDATE, ACCOUNT_BALANCE_SIZE)
            }
        }
    }
}

impl Default for GasSchedule {
    fn default() -> Self {
        GasSchedule::SPEC
    }
}

/// The gas terms of one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gas {
    pub base: u64,
    pub tx_data: u64,
    pub fixed: u64,
}

impl Gas {
    /// What the principal must hold for the transaction not to be ineffective.
    pub fn intrinsic(&self) -> u64 {
        self.base + self.tx_data
    }

    /// What the transaction is charged (times the gas price).
    pub fn max_gas(&self) -> u64 {
        self.base + self.tx_data + self.fixed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet_self_spawn(s: GasSchedule, len: usize) -> u64 {
        Gas {
            base: s.base_gas(Method::Spawn, 1),
            tx_data: tx_data_gas(len),
            fixed: s.exec_gas(Method::Spawn, 1),
        }
        .max_gas()
    }

    fn wallet_spend(s: GasSchedule, len: usize) -> u64 {
        Gas {
            base: s.base_gas(Method::Spend, 1),
            tx_data: tx_data_gas(len),
            fixed: s.load_gas(1) + s.exec_gas(Method::Spend, 1),
        }
        .max_gas()
    }

    #[test]
    fn the_spec_figures_come_out() {
        assert_eq!(wallet_self_spawn(GasSchedule::SPEC, 148), 100_432);
        assert_eq!(wallet_spend(GasSchedule::SPEC, 120), 36_090);
    }

    #[test]
    fn the_go_spacemesh_figures_come_out() {
        assert_eq!(wallet_self_spawn(GasSchedule::GO_SPACEMESH, 148), 85_432);
        assert_eq!(wallet_spend(GasSchedule::GO_SPACEMESH, 120), 33_369);
    }

    #[test]
    fn size_gas_rounds_up_per_8_bytes() {
        assert_eq!(size_gas(10, 0), 0);
        assert_eq!(size_gas(10, 1), 10);
        assert_eq!(size_gas(10, 8), 10);
        assert_eq!(size_gas(10, 9), 20);
    }
}
