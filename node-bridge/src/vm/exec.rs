//! Execution (spec/devnet.md §5.4), deterministic.
//!
//! ```text
//! apply_tx(tx, layer, block_gas_left):
//!   parse (principal's template from state; a non-spawned principal only self-spawns)
//!   INEFFECTIVE, no state change, if: parse error | gasPrice == 0
//!     | balance < BaseGas + TXDATA gas   (gas units, as go-spacemesh compares them)
//!     | maxGas > block_gas_left | signature invalid | nonce < NextNonce
//!   fee = maxGas × gasPrice, charged up front; above the balance: the whole balance is taken
//!     and the tx FAILS out of gas without running
//!   run spawn / spend (a spend above the balance left FAILS; nothing moves)
//!   NextNonce = nonce + 1, also on failure; the fee goes to the layer's reward pot
//! ```
//!
//! A layer applies its transactions ordered by principal then nonce (then tx id, so duplicates
//! order deterministically), then credits the rewards the caller computes from the fee total.

use super::address::Address;
use super::gas::{tx_data_gas, Gas, GasSchedule, MAINNET_BLOCK_GAS_LIMIT};
use super::state::{Account, Accounts, GenesisAccount};
use super::tx::{Call, GenesisId, Method, Tx, TxError, TxHeader, TxId};

/// What the VM needs to know about the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmConfig {
    /// Prefixed to every signed message.
    pub genesis_id: GenesisId,
    /// Gas one layer's block may consume.
    pub block_gas_limit: u64,
    pub gas: GasSchedule,
}

impl VmConfig {
    pub fn new(genesis_id: GenesisId) -> VmConfig {
        VmConfig {
            genesis_id,
            block_gas_limit: MAINNET_BLOCK_GAS_LIMIT,
            gas: GasSchedule::default(),
        }
    }
}

/// Why a transaction was dropped without any state change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ineffective {
    #[error("malformed: {0}")]
    Malformed(#[from] TxError),
    #[error("gas price is zero")]
    ZeroGasPrice,
    #[error("balance {balance} does not cover the intrinsic gas {intrinsic}")]
    IntrinsicGasNotCovered { balance: u64, intrinsic: u64 },
    #[error("max gas {max_gas} exceeds the {left} gas left in the block")]
    BlockGasExceeded { max_gas: u64, left: u64 },
    #[error("signature does not verify")]
    BadSignature,
    #[error("nonce {nonce} is below the next nonce {next_nonce}")]
    NonceTooLow { nonce: u64, next_nonce: u64 },
}

impl Ineffective {
    /// A stable snake_case code for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            Ineffective::Malformed(_) => "malformed",
            Ineffective::ZeroGasPrice => "zero_gas_price",
            Ineffective::IntrinsicGasNotCovered { .. } => "intrinsic_gas_not_covered",
            Ineffective::BlockGasExceeded { .. } => "block_gas_exceeded",
            Ineffective::BadSignature => "bad_signature",
            Ineffective::NonceTooLow { .. } => "nonce_too_low",
        }
    }
}

/// Why an executed transaction failed (it still paid its fee and used its nonce).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("fee {fee} exceeds the balance {balance}: the balance was taken, nothing ran")]
    OutOfGas { fee: u128, balance: u64 },
    #[error("spend of {amount} exceeds the balance {balance} left after the fee")]
    InsufficientBalance { amount: u64, balance: u64 },
    #[error("account {0} is already spawned")]
    AlreadySpawned(Address),
    #[error("crediting account {0} would overflow its balance")]
    BalanceOverflow(Address),
}

impl Failure {
    pub fn code(&self) -> &'static str {
        match self {
            Failure::OutOfGas { .. } => "out_of_gas",
            Failure::InsufficientBalance { .. } => "insufficient_balance",
            Failure::AlreadySpawned(_) => "already_spawned",
            Failure::BalanceOverflow(_) => "balance_overflow",
        }
    }
}

/// What happened to one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxResult {
    Applied,
    Failed(Failure),
    Ineffective(Ineffective),
}

/// One transaction's outcome in a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutcome {
    pub id: TxId,
    /// `None` when even the header did not parse.
    pub header: Option<TxHeader>,
    pub result: TxResult,
    /// Gas terms, once known (not for a malformed tx).
    pub gas: Option<Gas>,
    /// Gas counted against the block: `maxGas` once executed, 0 when ineffective.
    pub gas_used: u64,
    /// Smidge taken from the principal into the reward pot.
    pub fee: u64,
    /// Accounts changed: the principal first, then others.
    pub touched: Vec<Address>,
}

impl TxOutcome {
    fn ineffective(id: TxId, header: Option<TxHeader>, gas: Option<Gas>, why: Ineffective) -> TxOutcome {
        TxOutcome {
            id,
            header,
            result: TxResult::Ineffective(why),
            gas,
            gas_used: 0,
            fee: 0,
            touched: Vec::new(),
        }
    }
}

/// What applying a layer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerOutcome {
    pub layer: u32,
    /// In execution order.
    pub txs: Vec<TxOutcome>,
    /// Fees of executed txs: the layer's reward pot (with the subsidy).
    pub fees: u64,
    pub gas_used: u64,
    /// Sum of the rewards credited.
    pub credited: u64,
}

/// Why a layer could not be applied (no state changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmError {
    #[error("reward credit to {0} would overflow its balance")]
    RewardOverflow(Address),
}

/// Block order: (unparsable, principal, nonce, tx id).
type OrderKey = (bool, Address, u64, TxId);

/// The account model of the embedded devnet.
#[derive(Debug, Clone)]
pub struct Vm {
    config: VmConfig,
    accounts: Accounts,
}

impl Vm {
    pub fn new(config: VmConfig, genesis: &[GenesisAccount]) -> Vm {
        Vm {
            config,
            accounts: Accounts::genesis(genesis),
        }
    }

    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// A VM holding `accounts` (a restored state).
    pub fn with_accounts(config: VmConfig, accounts: Accounts) -> Vm {
        Vm { config, accounts }
    }

    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    pub fn account(&self, address: &Address) -> Account {
        self.accounts.get(address)
    }

    /// The gas terms `raw` would be charged against the current state.
    pub fn estimate(&self, raw: &[u8]) -> Result<Gas, TxError> {
        let principal = TxHeader::peek(raw)?.principal;
        let account = self.accounts.get(&principal);
        let tx = Tx::decode(raw, account.spawned.as_ref())?;
        Ok(gas_of(&self.config.gas, &tx, &account, raw.len()))
    }

    /// Applies one transaction in `layer` with `block_gas_left` gas left in the block.
    pub fn apply_tx(&mut self, raw: &[u8], layer: u32, block_gas_left: u64) -> TxOutcome {
        let id = TxId::of(raw);
        let header = match TxHeader::peek(raw) {
            Ok(h) => h,
            Err(e) => return TxOutcome::ineffective(id, None, None, e.into()),
        };
        let mut principal = self.accounts.get(&header.principal);
        let tx = match Tx::decode(raw, principal.spawned.as_ref()) {
            Ok(tx) => tx,
            Err(e) => return TxOutcome::ineffective(id, Some(header), None, e.into()),
        };
        let gas = gas_of(&self.config.gas, &tx, &principal, raw.len());
        let no = |why| TxOutcome::ineffective(id, Some(header), Some(gas), why);
        if header.gas_price == 0 {
            return no(Ineffective::ZeroGasPrice);
        }
        if principal.balance < gas.intrinsic() {
            return no(Ineffective::IntrinsicGasNotCovered {
                balance: principal.balance,
                intrinsic: gas.intrinsic(),
            });
        }
        let max_gas = gas.max_gas();
        if max_gas > block_gas_left {
            return no(Ineffective::BlockGasExceeded {
                max_gas,
                left: block_gas_left,
            });
        }
        let signer = match (&principal.spawned, &tx.call) {
            (Some(s), _) => s,
            (None, Call::Spawn(args)) => args,
            // Tx::decode refuses a spend from a stub.
            (None, Call::Spend { .. }) => return no(TxError::NotSpawned(header.principal).into()),
        };
        if !tx.verify(&self.config.genesis_id, signer) {
            return no(Ineffective::BadSignature);
        }
        if header.nonce < principal.next_nonce {
            return no(Ineffective::NonceTooLow {
                nonce: header.nonce,
                next_nonce: principal.next_nonce,
            });
        }

        // Executed from here on: fee, nonce and layer change whatever happens.
        let full_fee = u128::from(max_gas) * u128::from(header.gas_price);
        let mut others: Vec<Account> = Vec::new();
        let (fee, result) = match u64::try_from(full_fee) {
            Ok(fee) if fee <= principal.balance => {
                principal.balance -= fee;
                let result = match run(&self.accounts, &mut principal, &tx.call, layer) {
                    Ok(changed) => {
                        others.extend(changed);
                        TxResult::Applied
                    }
                    Err(f) => TxResult::Failed(f),
                };
                (fee, result)
            }
            _ => {
                let fee = principal.balance;
                principal.balance = 0;
                (
                    fee,
                    TxResult::Failed(Failure::OutOfGas {
                        fee: full_fee,
                        balance: fee,
                    }),
                )
            }
        };
        principal.next_nonce = header.nonce.saturating_add(1);
        principal.layer = layer;
        let mut touched = vec![principal.address];
        self.accounts.put(principal);
        for a in others {
            touched.push(a.address);
            self.accounts.put(a);
        }
        TxOutcome {
            id,
            header: Some(header),
            result,
            gas: Some(gas),
            gas_used: max_gas,
            fee,
            touched,
        }
    }

    /// Applies a layer: `txs` ordered by principal, nonce (then id), each against the gas left
    /// in the block; then the credits `rewards` returns for the fee total are added.
    pub fn apply_layer(
        &mut self,
        layer: u32,
        txs: &[Vec<u8>],
        rewards: impl FnOnce(u64) -> Vec<(Address, u64)>,
    ) -> Result<LayerOutcome, VmError> {
        // Sort key: (unparsable, principal, nonce, id). Unparsable transactions go last; they
        // are ineffective anyway.
        let mut order: Vec<(OrderKey, &[u8])> = txs
            .iter()
            .map(|raw| {
                let id = TxId::of(raw);
                let key = match TxHeader::peek(raw) {
                    Ok(h) => (false, h.principal, h.nonce, id),
                    Err(_) => (true, Address::default(), 0, id),
                };
                (key, raw.as_slice())
            })
            .collect();
        order.sort_by_key(|(key, _)| *key);

        let before = self.accounts.clone();
        let mut left = self.config.block_gas_limit;
        let mut fees: u64 = 0;
        let mut outcomes = Vec::with_capacity(order.len());
        for (_, raw) in order {
            let o = self.apply_tx(raw, layer, left);
            left -= o.gas_used;
            // Fees come out of balances, whose sum fits in u64.
            fees = fees.saturating_add(o.fee);
            outcomes.push(o);
        }

        let credits = rewards(fees);
        let mut credited: u64 = 0;
        for (address, amount) in &credits {
            let mut a = self.accounts.get(address);
            match a.balance.checked_add(*amount) {
                Some(b) => a.balance = b,
                None => {
                    self.accounts = before;
                    return Err(VmError::RewardOverflow(*address));
                }
            }
            a.layer = layer;
            self.accounts.put(a);
            credited = credited.saturating_add(*amount);
        }
        Ok(LayerOutcome {
            layer,
            txs: outcomes,
            fees,
            gas_used: self.config.block_gas_limit - left,
            credited,
        })
    }
}

/// The gas terms of `tx` from `principal` (§5.4): a self-spawn pays the new template's
/// ExecGas only; anything else the principal's LoadGas plus the ExecGas of the method (of the
/// spawned template for a spawn).
fn gas_of(s: &GasSchedule, tx: &Tx, principal: &Account, len: usize) -> Gas {
    let method = tx.call.method();
    let self_spawn = matches!(&tx.call, Call::Spawn(a) if a.address() == principal.address);
    // (keys, signatures) of the account whose template verifies and pays.
    let (keys, sigs) = match (&principal.spawned, &tx.call) {
        (Some(p), _) if !self_spawn => (p.keys(), p.signatures()),
        (_, Call::Spawn(a)) => (a.keys(), a.signatures()),
        // Unreachable after Tx::decode (a stub only self-spawns); charged as a wallet.
        (_, Call::Spend { .. }) => (1, 1),
    };
    let fixed = match &tx.call {
        Call::Spawn(a) if self_spawn => s.exec_gas(Method::Spawn, a.keys()),
        Call::Spawn(a) => s.load_gas(keys) + s.exec_gas(Method::Spawn, a.keys()),
        Call::Spend { .. } => s.load_gas(keys) + s.exec_gas(Method::Spend, keys),
    };
    Gas {
        base: s.base_gas(method, sigs),
        tx_data: tx_data_gas(len),
        fixed,
    }
}

/// Runs the call after the fee is taken. On error nothing but the principal's fee changes.
fn run(
    accounts: &Accounts,
    principal: &mut Account,
    call: &Call,
    layer: u32,
) -> Result<Vec<Account>, Failure> {
    match call {
        Call::Spawn(args) => {
            let target = args.address();
            if target == principal.address {
                if principal.is_spawned() {
                    return Err(Failure::AlreadySpawned(target));
                }
                principal.spawned = Some(args.clone());
                return Ok(Vec::new());
            }
            let mut t = accounts.get(&target);
            if t.is_spawned() {
                return Err(Failure::AlreadySpawned(target));
            }
            t.spawned = Some(args.clone());
            t.layer = layer;
            Ok(vec![t])
        }
        Call::Spend { destination, amount } => {
            if *amount > principal.balance {
                return Err(Failure::InsufficientBalance {
                    amount: *amount,
                    balance: principal.balance,
                });
            }
            if *destination == principal.address {
                return Ok(Vec::new());
            }
            let mut d = accounts.get(destination);
            d.balance = d
                .balance
                .checked_add(*amount)
                .ok_or(Failure::BalanceOverflow(*destination))?;
            d.layer = layer;
            principal.balance -= amount;
            Ok(vec![d])
        }
    }
}

#[cfg(test)]
mod tests;
