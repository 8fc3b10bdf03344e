//! API tokens for the REST API and dashboard: only a hash of each token is stored.

use sqlx::any::AnyRow;
use uuid::Uuid;

use super::error::StoreError;
use super::sql::{self, col};
use super::types::{ApiToken, NewApiToken};
use super::{decode_all, Store};

const COLS: &str = "id, name, role, created_at, revoked_at";

fn from_row(row: &AnyRow) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: sql::uuid(row, "id")?,
        name: col(row, "name")?,
        role: sql::text_enum(row, "role")?,
        created_at: col(row, "created_at")?,
        revoked_at: col(row, "revoked_at")?,
    })
}

impl Store {
    /// Stores a new API token. A hash already stored is a `Duplicate` conflict.
    pub async fn create_api_token(&self, new: &NewApiToken, now: i64) -> Result<ApiToken, StoreError> {
        if new.name.trim().is_empty() {
            return Err(StoreError::invalid("API token name", "must not be empty"));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO api_tokens (id, name, role, token_hash, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING {COLS}"
        ))
        .bind(Uuid::new_v4().to_string())
        .bind(new.name.as_str())
        .bind(new.role.as_str())
        .bind(hex::encode(new.token_hash))
        .bind(now)
        .fetch_one(self.writer())
        .await
        .map_err(StoreError::map("create API token"))?;
        from_row(&row)
    }

    /// The unrevoked token with this hash.
    pub async fn find_api_token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(hex::encode(hash))
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::map("find API token"))?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every token (revoked ones too), oldest first, without hashes.
    pub async fn list_api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLS} FROM api_tokens ORDER BY created_at, id"))
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::map("list API tokens"))?;
        decode_all(rows, from_row)
    }

    /// Revokes a token (idempotent: revoking a revoked token keeps the first revocation time).
    pub async fn revoke_api_token(&self, id: Uuid, now: i64) -> Result<ApiToken, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING {COLS}"
        ))
        .bind(id.to_string())
        .bind(now)
        .fetch_optional(self.writer())
        .await
        .map_err(StoreError::map("revoke API token"))?;
        match row {
            Some(r) => from_row(&r),
            None => Err(StoreError::not_found("API token", id)),
        }
    }
}
