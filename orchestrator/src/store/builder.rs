//! The ATX builder's durable cycle state (node spec §2.7): the NIPoST challenge prepared for an
//! identity and a publish epoch, and each PoET's answer to its registration. A coordinator that
//! restarts mid-cycle finds the challenge it already registered instead of building a new one.
//!
//! Keyed by node id (like the safety database), not by identity row. The challenge is kept as the
//! hex of its SCALE bytes; this module does not decode it.

use sqlx::any::AnyRow;

use super::error::StoreError;
use super::sql::{self, col};
use super::{decode_all, Store};

/// A prepared challenge as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChallenge {
    pub node_id: [u8; 32],
    pub publish_epoch: u32,
    /// SCALE bytes of the `NIPostChallengeV1`.
    pub challenge: Vec<u8>,
    /// Its PoET challenge hash.
    pub challenge_hash: [u8; 32],
    /// When it was first stored (unix ms).
    pub created_at: i64,
}

/// What one PoET answered to a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoetRegistrationOutcome {
    Accepted { round: u64, round_end_ms: u64 },
    Failed { error: String },
}

/// One PoET registration as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoetRegistrationRecord {
    pub node_id: [u8; 32],
    pub publish_epoch: u32,
    pub poet: String,
    pub outcome: PoetRegistrationOutcome,
    /// When this outcome was recorded (unix ms).
    pub registered_at: i64,
}

impl PoetRegistrationRecord {
    pub fn accepted(&self) -> bool {
        matches!(self.outcome, PoetRegistrationOutcome::Accepted { .. })
    }
}

const CHALLENGE_COLS: &str = "node_id, publish_epoch, challenge, challenge_hash, created_at";
const REG_COLS: &str = "node_id, publish_epoch, poet, round, round_end_ms, error, registered_at";

fn challenge_from_row(row: &AnyRow) -> Result<StoredChallenge, StoreError> {
    let text: String = col(row, "challenge")?;
    let challenge = hex::decode(&text).map_err(|e| StoreError::corrupt("challenge", e.to_string()))?;
    Ok(StoredChallenge {
        node_id: sql::hex32(row, "node_id")?,
        publish_epoch: sql::u32_col(row, "publish_epoch")?,
        challenge,
        challenge_hash: sql::hex32(row, "challenge_hash")?,
        created_at: col(row, "created_at")?,
    })
}

fn registration_from_row(row: &AnyRow) -> Result<PoetRegistrationRecord, StoreError> {
    let round = sql::opt_u64(row, "round")?;
    let round_end_ms = sql::opt_u64(row, "round_end_ms")?;
    let error: Option<String> = col(row, "error")?;
    let outcome = match (round, round_end_ms, error) {
        (Some(round), Some(round_end_ms), None) => PoetRegistrationOutcome::Accepted { round, round_end_ms },
        (None, None, Some(error)) => PoetRegistrationOutcome::Failed { error },
        _ => {
            return Err(StoreError::corrupt(
                "round",
                "a registration is either accepted (round, round end) or failed (error)",
            ))
        }
    };
    Ok(PoetRegistrationRecord {
        node_id: sql::hex32(row, "node_id")?,
        publish_epoch: sql::u32_col(row, "publish_epoch")?,
        poet: col(row, "poet")?,
        outcome,
        registered_at: col(row, "registered_at")?,
    })
}

impl Store {
    /// Stores the challenge prepared for `node_id` and `publish_epoch` unless one is stored
    /// already, in one transaction, and returns the stored one (bytes, hash): the first writer
    /// wins, and a later call with other bytes gets the first challenge back unchanged.
    pub async fn save_prepared_challenge(
        &self,
        node_id: &[u8; 32],
        publish_epoch: u32,
        challenge: &[u8],
        challenge_hash: &[u8; 32],
        at: i64,
    ) -> Result<(Vec<u8>, [u8; 32]), StoreError> {
        const OP: &str = "save prepared challenge";
        if challenge.is_empty() {
            return Err(StoreError::invalid("prepared challenge", "no bytes"));
        }
        let node = hex::encode(node_id);
        let mut tx = self.begin_write(OP).await?;
        // The primary key decides; on PostgreSQL a concurrent insert of the same key makes this
        // one wait for that transaction, and the SELECT below then sees its row.
        sqlx::query(&format!(
            "INSERT INTO prepared_challenges ({CHALLENGE_COLS}) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING"
        ))
        .bind(node.as_str())
        .bind(i64::from(publish_epoch))
        .bind(hex::encode(challenge))
        .bind(hex::encode(challenge_hash))
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::map(OP))?;
        let row = sqlx::query(&format!(
            "SELECT {CHALLENGE_COLS} FROM prepared_challenges WHERE node_id = $1 AND publish_epoch = $2"
        ))
        .bind(node.as_str())
        .bind(i64::from(publish_epoch))
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::map(OP))?;
        let stored = challenge_from_row(&row)?;
        tx.commit().await.map_err(StoreError::map(OP))?;
        if stored.challenge != challenge {
            tracing::info!(node_id = %node, publish_epoch, "store: kept the challenge prepared earlier");
        }
        Ok((stored.challenge, stored.challenge_hash))
    }

    /// The challenge stored for `node_id` and `publish_epoch`, if any.
    pub async fn prepared_challenge(
        &self,
        node_id: &[u8; 32],
        publish_epoch: u32,
    ) -> Result<Option<StoredChallenge>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CHALLENGE_COLS} FROM prepared_challenges WHERE node_id = $1 AND publish_epoch = $2"
        ))
        .bind(hex::encode(node_id))
        .bind(i64::from(publish_epoch))
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::map("get prepared challenge"))?;
        row.as_ref().map(challenge_from_row).transpose()
    }

    /// Records what `poet` answered to the registration of `node_id`'s challenge for
    /// `publish_epoch`. A later answer of the same PoET replaces an earlier failure; an accepted
    /// registration is never replaced by a failure (a retry the PoET refuses as a duplicate must
    /// not hide the round it accepted). Returns the record as it is now.
    pub async fn record_poet_registration(
        &self,
        node_id: &[u8; 32],
        publish_epoch: u32,
        poet: &str,
        outcome: &PoetRegistrationOutcome,
        at: i64,
    ) -> Result<PoetRegistrationRecord, StoreError> {
        const OP: &str = "record PoET registration";
        let (round, round_end_ms, error) = match outcome {
            PoetRegistrationOutcome::Accepted { round, round_end_ms } => (
                Some(sql::to_i64("PoET round", *round)?),
                Some(sql::to_i64("PoET round end", *round_end_ms)?),
                None,
            ),
            PoetRegistrationOutcome::Failed { error } => (None, None, Some(error.as_str())),
        };
        let node = hex::encode(node_id);
        let mut tx = self.begin_write(OP).await?;
        sqlx::query(&format!(
            "INSERT INTO poet_registrations ({REG_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (node_id, publish_epoch, poet) DO UPDATE SET round = excluded.round, \
             round_end_ms = excluded.round_end_ms, error = excluded.error, \
             registered_at = excluded.registered_at \
             WHERE poet_registrations.error IS NOT NULL OR excluded.error IS NULL"
        ))
        .bind(node.as_str())
        .bind(i64::from(publish_epoch))
        .bind(poet)
        .bind(round)
        .bind(round_end_ms)
        .bind(error)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::map(OP))?;
        let row = sqlx::query(&format!(
            "SELECT {REG_COLS} FROM poet_registrations \
             WHERE node_id = $1 AND publish_epoch = $2 AND poet = $3"
        ))
        .bind(node.as_str())
        .bind(i64::from(publish_epoch))
        .bind(poet)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::map(OP))?;
        let rec = registration_from_row(&row)?;
        tx.commit().await.map_err(StoreError::map(OP))?;
        Ok(rec)
    }

    /// The PoET registrations of `node_id` for `publish_epoch`, by PoET id.
    pub async fn poet_registrations(
        &self,
        node_id: &[u8; 32],
        publish_epoch: u32,
    ) -> Result<Vec<PoetRegistrationRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REG_COLS} FROM poet_registrations WHERE node_id = $1 AND publish_epoch = $2 \
             ORDER BY poet"
        ))
        .bind(hex::encode(node_id))
        .bind(i64::from(publish_epoch))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::map("list PoET registrations"))?;
        decode_all(rows, registration_from_row)
    }
}
