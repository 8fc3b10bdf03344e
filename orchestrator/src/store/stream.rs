//! Stream grants (migration 0005): the hash of the token a compute worker got with an init lease
//! for another worker's disk, and the lease it is valid for. The token itself is never stored.

use uuid::Uuid;

use super::error::StoreError;
use super::sql::{self, col};
use super::Store;

/// A grant as stored: valid while job `job_id` is leased to `compute_worker_id` under
/// `fencing_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamGrantRecord {
    pub job_id: Uuid,
    pub fencing_token: i64,
    pub compute_worker_id: Uuid,
    pub target_worker_id: Uuid,
    pub created_at: i64,
}

impl Store {
    /// Records the grant of a new lease of `grant.job_id`. The grants of earlier leases stay (their
    /// tokens authorize nothing once the job's fencing token moved on, and are known as stale).
    pub async fn put_stream_grant(
        &self,
        grant: &StreamGrantRecord,
        token_hash: &[u8; 32],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO stream_grants (job_id, fencing_token, token_hash, compute_worker_id, \
             target_worker_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(grant.job_id.to_string())
        .bind(grant.fencing_token)
        .bind(hex::encode(token_hash))
        .bind(grant.compute_worker_id.to_string())
        .bind(grant.target_worker_id.to_string())
        .bind(grant.created_at)
        .execute(self.writer())
        .await
        .map_err(StoreError::map("record stream grant"))?;
        Ok(())
    }

    /// The grant whose token hashes to `token_hash`, if any (whether its lease still holds is the
    /// caller's check against the job).
    pub async fn find_stream_grant(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<StreamGrantRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT job_id, fencing_token, compute_worker_id, target_worker_id, created_at \
             FROM stream_grants WHERE token_hash = $1",
        )
        .bind(hex::encode(token_hash))
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::map("find stream grant"))?;
        row.map(|r| {
            Ok(StreamGrantRecord {
                job_id: sql::uuid(&r, "job_id")?,
                fencing_token: col(&r, "fencing_token")?,
                compute_worker_id: sql::uuid(&r, "compute_worker_id")?,
                target_worker_id: sql::uuid(&r, "target_worker_id")?,
                created_at: col(&r, "created_at")?,
            })
        })
        .transpose()
    }
}
