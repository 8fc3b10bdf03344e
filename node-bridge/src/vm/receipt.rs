//! What the REST API shows for a transaction: a flat, serde-friendly receipt.

use super::address::{Address, Template};
use super::exec::{TxOutcome, TxResult};
use super::tx::{Method, TxId};

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    /// Accepted, not yet in a layer.
    Pending,
    /// Executed and succeeded.
    Applied,
    /// Executed and failed: fee paid, nonce used, nothing else changed.
    Failed,
    /// Dropped: no state change.
    Ineffective,
}

/// Why a transaction failed or was ineffective: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxReason {
    pub code: String,
    pub message: String,
}

/// A transaction's receipt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxReceipt {
    pub id: TxId,
    pub status: TxStatus,
    /// Layer it was applied (or dropped) in; `None` while pending.
    pub layer: Option<u32>,
    pub principal: Option<Address>,
    pub method: Option<Method>,
    /// The spawned template, for a spawn.
    pub template: Option<Template>,
    pub nonce: Option<u64>,
    pub gas_price: Option<u64>,
    /// `maxGas`, once known.
    pub max_gas: Option<u64>,
    pub gas_used: u64,
    /// Smidge.
    pub fee: u64,
    pub reason: Option<TxReason>,
    /// Accounts changed, principal first.
    pub touched: Vec<Address>,
}

impl TxReceipt {
    /// A receipt for a transaction not yet in a layer.
    pub fn pending(id: TxId) -> TxReceipt {
        TxReceipt {
            id,
            status: TxStatus::Pending,
            layer: None,
            principal: None,
            method: None,
            template: None,
            nonce: None,
            gas_price: None,
            max_gas: None,
            gas_used: 0,
            fee: 0,
            reason: None,
            touched: Vec::new(),
        }
    }

    /// The receipt of `outcome` in `layer`.
    pub fn from_outcome(outcome: &TxOutcome, layer: u32) -> TxReceipt {
        let (status, reason) = match &outcome.result {
            TxResult::Applied => (TxStatus::Applied, None),
            TxResult::Failed(f) => (
                TxStatus::Failed,
                Some(TxReason {
                    code: f.code().into(),
                    message: f.to_string(),
                }),
            ),
            TxResult::Ineffective(i) => (
                TxStatus::Ineffective,
                Some(TxReason {
                    code: i.code().into(),
                    message: i.to_string(),
                }),
            ),
        };
        let h = outcome.header.as_ref();
        TxReceipt {
            id: outcome.id,
            status,
            layer: Some(layer),
            principal: h.map(|h| h.principal),
            method: h.map(|h| h.method),
            template: h.and_then(|h| h.template),
            nonce: h.map(|h| h.nonce),
            gas_price: h.map(|h| h.gas_price),
            max_gas: outcome.gas.map(|g| g.max_gas()),
            gas_used: outcome.gas_used,
            fee: outcome.fee,
            reason,
            touched: outcome.touched.clone(),
        }
    }
}
