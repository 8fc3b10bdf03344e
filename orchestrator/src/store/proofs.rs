//! Proving requests (a challenge to prove for an identity and a publish epoch) and the proofs the
//! coordinator verified. A request stays `pending` until a proof of it is verified; passes that
//! find no proof advance its `first_nonce`, so that the next pass tries new nonces.

use sqlx::any::AnyRow;
use uuid::Uuid;

use super::error::{ConflictKind, StoreError};
use super::sql::{self, col};
use super::types::ProvingRequestState;
use super::{decode_all, Store};

/// A challenge to prove for one identity and publish epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvingRequest {
    pub identity_id: Uuid,
    pub publish_epoch: u32,
    pub challenge: [u8; 32],
    /// When the challenge became known (unix ms).
    pub known_at: i64,
    /// The proof must be done before this (unix ms).
    pub deadline: i64,
    /// First nonce of the next proving pass.
    pub first_nonce: u32,
    pub state: ProvingRequestState,
    pub updated_at: i64,
    /// Why the request failed (`state` failed), for example a deadline passed.
    pub failure: Option<String>,
}

/// What [`Store::create_proving_request`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProvingRequest {
    pub identity_id: Uuid,
    pub publish_epoch: u32,
    pub challenge: [u8; 32],
    pub known_at: i64,
    pub deadline: i64,
}

/// A verified proof as stored: post's `Proof` JSON (`{"nonce", "indices", "pow"}`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredProof {
    pub identity_id: Uuid,
    pub publish_epoch: u32,
    pub challenge: [u8; 32],
    pub proof: serde_json::Value,
    pub nonce: u32,
    pub job_id: Uuid,
    pub verified_at: i64,
}

const REQ_COLS: &str =
    "identity_id, publish_epoch, challenge, known_at, deadline, first_nonce, state, updated_at, failure";
const PROOF_COLS: &str = "identity_id, publish_epoch, challenge, proof, nonce, job_id, verified_at";

fn request_from_row(row: &AnyRow) -> Result<ProvingRequest, StoreError> {
    Ok(ProvingRequest {
        identity_id: sql::uuid(row, "identity_id")?,
        publish_epoch: sql::u32_col(row, "publish_epoch")?,
        challenge: sql::hex32(row, "challenge")?,
        known_at: col(row, "known_at")?,
        deadline: col(row, "deadline")?,
        first_nonce: sql::u32_col(row, "first_nonce")?,
        state: sql::text_enum(row, "state")?,
        updated_at: col(row, "updated_at")?,
        failure: col(row, "failure")?,
    })
}

fn proof_from_row(row: &AnyRow) -> Result<StoredProof, StoreError> {
    Ok(StoredProof {
        identity_id: sql::uuid(row, "identity_id")?,
        publish_epoch: sql::u32_col(row, "publish_epoch")?,
        challenge: sql::hex32(row, "challenge")?,
        proof: sql::json(row, "proof")?,
        nonce: sql::u32_col(row, "nonce")?,
        job_id: sql::uuid(row, "job_id")?,
        verified_at: col(row, "verified_at")?,
    })
}

impl Store {
    /// Records a proving request. The same challenge for an existing (identity, epoch) returns
    /// the existing request (`false`: nothing new); another challenge is a `Duplicate` conflict
    /// and changes nothing. An unknown identity is a `ForeignKey` conflict.
    pub async fn create_proving_request(
        &self,
        new: &NewProvingRequest,
        now: i64,
    ) -> Result<(ProvingRequest, bool), StoreError> {
        const OP: &str = "create proving request";
        let mut tx = self.begin_write(OP).await?;
        let existing = sqlx::query(&format!(
            "SELECT {REQ_COLS} FROM proving_requests WHERE identity_id = $1 AND publish_epoch = $2{}",
            self.for_update()
        ))
        .bind(new.identity_id.to_string())
        .bind(i64::from(new.publish_epoch))
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::map(OP))?;
        if let Some(row) = existing {
            let req = request_from_row(&row)?;
            tx.rollback().await.map_err(StoreError::map(OP))?;
            if req.challenge != new.challenge {
                return Err(StoreError::conflict(
                    OP,
                    ConflictKind::Duplicate,
                    format!(
                        "identity {} already has another challenge for epoch {}",
                        new.identity_id, new.publish_epoch
                    ),
                ));
            }
            return Ok((req, false));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO proving_requests ({REQ_COLS}) VALUES ($1, $2, $3, $4, $5, 0, 'pending', $6, NULL) \
             RETURNING {REQ_COLS}"
        ))
        .bind(new.identity_id.to_string())
        .bind(i64::from(new.publish_epoch))
        .bind(hex::encode(new.challenge))
        .bind(new.known_at)
        .bind(new.deadline)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::map(OP))?;
        let req = request_from_row(&row)?;
        tx.commit().await.map_err(StoreError::map(OP))?;
        Ok((req, true))
    }

    pub async fn get_proving_request(
        &self,
        identity_id: Uuid,
        publish_epoch: u32,
    ) -> Result<ProvingRequest, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {REQ_COLS} FROM proving_requests WHERE identity_id = $1 AND publish_epoch = $2"
        ))
        .bind(identity_id.to_string())
        .bind(i64::from(publish_epoch))
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::map("get proving request"))?;
        match row {
            Some(r) => request_from_row(&r),
            None => Err(StoreError::not_found(
                "proving request",
                format!("{identity_id}/{publish_epoch}"),
            )),
        }
    }

    /// Every pending request, by identity then epoch.
    pub async fn list_pending_proving_requests(&self) -> Result<Vec<ProvingRequest>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REQ_COLS} FROM proving_requests WHERE state = 'pending' \
             ORDER BY identity_id, publish_epoch"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::map("list pending proving requests"))?;
        decode_all(rows, request_from_row)
    }

    /// Every request of an identity (pending, proved or failed), newest epoch first.
    pub async fn list_proving_requests(&self, identity_id: Uuid) -> Result<Vec<ProvingRequest>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REQ_COLS} FROM proving_requests WHERE identity_id = $1 ORDER BY publish_epoch DESC"
        ))
        .bind(identity_id.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::map("list proving requests"))?;
        decode_all(rows, request_from_row)
    }

    /// Marks failed every pending request whose deadline is at or before `now` (no proof of it
    /// was verified in time), with the reason; returns them as they are now. A proof verified
    /// later for one of them is not stored.
    pub async fn fail_overdue_proving_requests(&self, now: i64) -> Result<Vec<ProvingRequest>, StoreError> {
        let rows = sqlx::query(&format!(
            "UPDATE proving_requests SET state = 'failed', updated_at = $1, \
             failure = 'the deadline passed without a verified proof' \
             WHERE state = 'pending' AND deadline <= $1 RETURNING {REQ_COLS}"
        ))
        .bind(now)
        .fetch_all(self.writer())
        .await
        .map_err(StoreError::map("fail overdue proving requests"))?;
        let mut out = decode_all(rows, request_from_row)?;
        out.sort_by_key(|r| (r.identity_id, r.publish_epoch));
        Ok(out)
    }

    /// The pending request of `identity_id` for `challenge` (the newest epoch if several).
    pub async fn find_pending_proving_request(
        &self,
        identity_id: Uuid,
        challenge: &[u8; 32],
    ) -> Result<Option<ProvingRequest>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {REQ_COLS} FROM proving_requests WHERE identity_id = $1 AND challenge = $2 \
             AND state = 'pending' ORDER BY publish_epoch DESC LIMIT 1"
        ))
        .bind(identity_id.to_string())
        .bind(hex::encode(challenge))
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::map("find proving request"))?;
        row.as_ref().map(request_from_row).transpose()
    }

    /// Moves a pending request's next pass to `first_nonce` when that is further than where it
    /// is (a pass that found nothing; a late report of an older pass changes nothing). Returns
    /// the request as it is now.
    pub async fn advance_first_nonce(
        &self,
        identity_id: Uuid,
        publish_epoch: u32,
        first_nonce: u32,
        now: i64,
    ) -> Result<ProvingRequest, StoreError> {
        sqlx::query(
            "UPDATE proving_requests SET first_nonce = $3, updated_at = $4 \
             WHERE identity_id = $1 AND publish_epoch = $2 AND state = 'pending' AND first_nonce < $3",
        )
        .bind(identity_id.to_string())
        .bind(i64::from(publish_epoch))
        .bind(i64::from(first_nonce))
        .bind(now)
        .execute(self.writer())
        .await
        .map_err(StoreError::map("advance first nonce"))?;
        self.get_proving_request(identity_id, publish_epoch).await
    }

    /// Stores a verified proof and marks its request proved, in one transaction. A proof already
    /// stored for the (identity, epoch) is a `Duplicate` conflict; a request that is not pending
    /// (or none) an `InvalidTransition` conflict; either way nothing changes.
    pub async fn record_proof(&self, proof: &StoredProof) -> Result<StoredProof, StoreError> {
        const OP: &str = "record proof";
        let mut tx = self.begin_write(OP).await?;
        let updated = sqlx::query(
            "UPDATE proving_requests SET state = 'proved', updated_at = $4 \
             WHERE identity_id = $1 AND publish_epoch = $2 AND challenge = $3 AND state = 'pending'",
        )
        .bind(proof.identity_id.to_string())
        .bind(i64::from(proof.publish_epoch))
        .bind(hex::encode(proof.challenge))
        .bind(proof.verified_at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::map(OP))?
        .rows_affected();
        if updated != 1 {
            tx.rollback().await.map_err(StoreError::map(OP))?;
            return Err(StoreError::conflict(
                OP,
                ConflictKind::InvalidTransition,
                format!(
                    "no pending request of identity {} for epoch {} with this challenge",
                    proof.identity_id, proof.publish_epoch
                ),
            ));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO proofs ({PROOF_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {PROOF_COLS}"
        ))
        .bind(proof.identity_id.to_string())
        .bind(i64::from(proof.publish_epoch))
        .bind(hex::encode(proof.challenge))
        .bind(sql::json_text(&proof.proof))
        .bind(i64::from(proof.nonce))
        .bind(proof.job_id.to_string())
        .bind(proof.verified_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::map(OP))?;
        let stored = proof_from_row(&row)?;
        tx.commit().await.map_err(StoreError::map(OP))?;
        Ok(stored)
    }

    /// The stored proofs of an identity, newest epoch first.
    pub async fn list_proofs(&self, identity_id: Uuid) -> Result<Vec<StoredProof>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PROOF_COLS} FROM proofs WHERE identity_id = $1 ORDER BY publish_epoch DESC"
        ))
        .bind(identity_id.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::map("list proofs"))?;
        decode_all(rows, proof_from_row)
    }
}
