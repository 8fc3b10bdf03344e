//! Account state (spec/devnet.md §5.2): per address `{Layer, NextNonce, Balance, Template?,
//! State}`. A *stub* has only a balance; a *spawned* account also has a template and immutable
//! state (its spawn args). Addresses never seen read as empty stubs.

use std::collections::BTreeMap;

use super::address::{Address, Template};
use super::tx::SpawnArgs;

/// Largest template state (bytes).
pub const MAX_STATE_LEN: usize = 10_000;

/// One account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    pub address: Address,
    /// Layer of the last change.
    pub layer: u32,
    pub next_nonce: u64,
    /// In smidge.
    pub balance: u64,
    /// The spawn args (= immutable state) once spawned.
    pub spawned: Option<SpawnArgs>,
}

impl Account {
    /// An empty stub at `address`.
    pub fn empty(address: Address) -> Account {
        Account {
            address,
            layer: 0,
            next_nonce: 0,
            balance: 0,
            spawned: None,
        }
    }

    pub fn is_spawned(&self) -> bool {
        self.spawned.is_some()
    }

    pub fn template(&self) -> Option<Template> {
        self.spawned.as_ref().map(SpawnArgs::template)
    }

    /// The SCALE-encoded template state (empty for a stub).
    pub fn state(&self) -> Vec<u8> {
        self.spawned.as_ref().map(SpawnArgs::encode).unwrap_or_default()
    }
}

/// A genesis balance: a stub account holding `balance` from layer 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenesisAccount {
    pub address: Address,
    pub balance: u64,
}

/// All accounts, ordered by address (so iteration, and the layer order, is deterministic).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    map: BTreeMap<Address, Account>,
}

impl Accounts {
    /// Stubs for the genesis list; a repeated address adds up (saturating).
    pub fn genesis(accounts: &[GenesisAccount]) -> Accounts {
        let mut out = Accounts::default();
        for g in accounts {
            let a = out
                .map
                .entry(g.address)
                .or_insert_with(|| Account::empty(g.address));
            a.balance = a.balance.saturating_add(g.balance);
        }
        out
    }

    /// The account at `address` (an empty stub if never touched).
    pub fn get(&self, address: &Address) -> Account {
        self.map
            .get(address)
            .cloned()
            .unwrap_or_else(|| Account::empty(*address))
    }

    /// Whether `address` has ever held anything or been spawned.
    pub fn exists(&self, address: &Address) -> bool {
        self.map.contains_key(address)
    }

    pub fn put(&mut self, account: Account) {
        self.map.insert(account.address, account);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Account> {
        self.map.values()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sum of all balances (u128: cannot overflow).
    pub fn total_balance(&self) -> u128 {
        self.map.values().map(|a| u128::from(a.balance)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::address::wallet_address;

    #[test]
    fn genesis_accounts_are_stubs() {
        let faucet = wallet_address(&[1u8; 32]);
        let acc = Accounts::genesis(&[GenesisAccount {
            address: faucet,
            balance: 1_000_000 * 1_000_000_000,
        }]);
        let a = acc.get(&faucet);
        assert_eq!(a.balance, 1_000_000_000_000_000);
        assert!(!a.is_spawned());
        assert_eq!(a.template(), None);
        assert!(a.state().is_empty());
        assert_eq!(acc.get(&Address::default()), Account::empty(Address::default()));
        assert!(!acc.exists(&Address::default()));
        assert_eq!(acc.total_balance(), 1_000_000_000_000_000);
    }

    #[test]
    fn a_spawned_wallet_stores_its_key_as_state() {
        let mut a = Account::empty(wallet_address(&[3u8; 32]));
        a.spawned = Some(SpawnArgs::Wallet {
            public_key: [3u8; 32],
        });
        assert_eq!(a.template(), Some(Template::Wallet));
        assert_eq!(a.state(), vec![3u8; 32]);
        assert!(a.state().len() <= MAX_STATE_LEN);
    }
}
