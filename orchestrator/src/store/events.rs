//! The event log the SSE stream replays from: ids strictly increase in commit order, so a reader
//! that resumes after the last id it saw misses nothing.

use serde_json::Value;
use sqlx::any::AnyRow;

use super::error::StoreError;
use super::sql::{self, col};
use super::types::Event;
use super::{decode_all, Backend, Store};

fn from_row(row: &AnyRow) -> Result<Event, StoreError> {
    Ok(Event {
        id: col(row, "id")?,
        kind: col(row, "kind")?,
        subject: col(row, "subject")?,
        data: sql::json(row, "data")?,
        created_at: col(row, "created_at")?,
    })
}

impl Store {
    /// Appends an event; returns its id.
    pub async fn append_event(
        &self,
        kind: &str,
        subject: &str,
        data: &Value,
        now: i64,
    ) -> Result<i64, StoreError> {
        let op = "append event";
        let mut tx = self.begin_write(op).await?;
        if self.backend() == Backend::Postgres {
            // Sequence values are taken at insert but become visible at commit: without this lock
            // a reader could see id 11 before id 10 commits, resume after 11 and miss 10 forever.
            sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .map_err(StoreError::map(op))?;
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO events (kind, subject, data, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(kind)
        .bind(subject)
        .bind(sql::json_text(data))
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        tx.commit().await.map_err(StoreError::map(op))?;
        Ok(id)
    }

    /// Up to `limit` events with an id above `after_id`, oldest first (`after_id` 0: from the start).
    pub async fn list_events_since(&self, after_id: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, subject, data, created_at FROM events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::map("list events"))?;
        decode_all(rows, from_row)
    }

    /// The newest event id (0 when there is none).
    pub async fn last_event_id(&self) -> Result<i64, StoreError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
            .fetch_one(self.pool())
            .await
            .map_err(StoreError::map("last event id"))?;
        Ok(id.unwrap_or(0))
    }

    /// Deletes events older than `before` (unix ms); returns how many.
    pub async fn prune_events(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM events WHERE created_at < $1")
            .bind(before)
            .execute(self.writer())
            .await
            .map_err(StoreError::map("prune events"))?;
        Ok(done.rows_affected())
    }
}
