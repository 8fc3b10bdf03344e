//! Worker rigs and the single-use join tokens they enroll with.

use serde_json::Value;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::error::{ConflictKind, JoinTokenRejection, StoreError};
use super::sql::{self, col};
use super::types::{DeviceSettings, JoinToken, NewJoinToken, NewWorker, Worker, WorkerState};
use super::{decode_all, Store};

const COLS: &str =
    "id, name, state, capabilities, last_heartbeat_at, created_at, updated_at, paused, device_settings";
const TOKEN_COLS: &str = "id, name, role, expires_at, created_at, used_at, used_by";

fn from_row(row: &AnyRow) -> Result<Worker, StoreError> {
    Ok(Worker {
        id: sql::uuid(row, "id")?,
        name: col(row, "name")?,
        state: sql::text_enum(row, "state")?,
        capabilities: sql::json(row, "capabilities")?,
        last_heartbeat_at: col(row, "last_heartbeat_at")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
        paused: col::<i64>(row, "paused")? != 0,
        device_settings: match col::<Option<String>>(row, "device_settings")? {
            None => DeviceSettings::default(),
            Some(s) => {
                serde_json::from_str(&s).map_err(|e| StoreError::corrupt("device_settings", e.to_string()))?
            }
        },
    })
}

fn token_from_row(row: &AnyRow) -> Result<JoinToken, StoreError> {
    Ok(JoinToken {
        id: sql::uuid(row, "id")?,
        name: col(row, "name")?,
        role: col(row, "role")?,
        expires_at: col(row, "expires_at")?,
        created_at: col(row, "created_at")?,
        used_at: col(row, "used_at")?,
        used_by: sql::opt_uuid(row, "used_by")?,
    })
}

impl Store {
    /// Registers a worker, `online` with a heartbeat at `now`. A credential hash already
    /// registered is a `Duplicate` conflict.
    pub async fn create_worker(&self, new: &NewWorker, now: i64) -> Result<Worker, StoreError> {
        let mut tx = self.begin_write("create worker").await?;
        let worker = insert_worker(&mut tx, new, now).await?;
        tx.commit().await.map_err(StoreError::map("create worker"))?;
        Ok(worker)
    }

    pub async fn get_worker(&self, id: Uuid) -> Result<Worker, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM workers WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::map("get worker"))?;
        match row {
            Some(r) => from_row(&r),
            None => Err(StoreError::not_found("worker", id)),
        }
    }

    /// The worker whose credential hashes to `hash`, unless it was removed.
    pub async fn find_worker_by_credential_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<Worker>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM workers WHERE credential_hash = $1 AND state <> 'removed'"
        ))
        .bind(hex::encode(hash))
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::map("find worker by credential"))?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every worker (removed ones too), by name.
    pub async fn list_workers(&self) -> Result<Vec<Worker>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLS} FROM workers ORDER BY name, id"))
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::map("list workers"))?;
        decode_all(rows, from_row)
    }

    /// Records a heartbeat (and new capabilities, when given). An `offline` worker comes back
    /// `online`; a `draining` one stays draining; a `removed` one is an `InvalidTransition`.
    pub async fn heartbeat(
        &self,
        id: Uuid,
        now: i64,
        capabilities: Option<&Value>,
    ) -> Result<Worker, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE workers SET last_heartbeat_at = $2, capabilities = COALESCE($3, capabilities), \
             state = CASE WHEN state = 'offline' THEN 'online' ELSE state END, updated_at = $2 \
             WHERE id = $1 AND state <> 'removed' RETURNING {COLS}"
        ))
        .bind(id.to_string())
        .bind(now)
        .bind(capabilities.map(sql::json_text))
        .fetch_optional(self.writer())
        .await
        .map_err(StoreError::map("heartbeat"))?;
        match row {
            Some(r) => from_row(&r),
            None => {
                self.get_worker(id).await?;
                Err(StoreError::conflict(
                    "heartbeat",
                    ConflictKind::InvalidTransition,
                    format!("worker {id} was removed"),
                ))
            }
        }
    }

    /// Writes heartbeats `(worker, unix ms, new capabilities)` collected in memory (see
    /// `crate::liveness`), in one transaction of a few statements. Only the time and the
    /// capabilities move: states are changed by [`Store::heartbeat`] (an offline worker coming
    /// back) and the routes that own them. A removed or unknown worker is skipped.
    pub async fn record_heartbeats(&self, beats: &[(Uuid, i64, Option<&Value>)]) -> Result<(), StoreError> {
        const OP: &str = "record heartbeats";
        if beats.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write(OP).await?;
        for chunk in beats.chunks(250) {
            let mut b = sql::Built::new("");
            let mut cases = String::with_capacity(chunk.len() * 24);
            let mut ids = Vec::with_capacity(chunk.len());
            for (id, at, _) in chunk {
                let i = b.arg(sql::Arg::Text(id.to_string()));
                let t = b.arg(sql::Arg::Int(*at));
                cases.push_str(&format!(" WHEN {i} THEN {t}"));
                ids.push(i);
            }
            b.sql = format!(
                "UPDATE workers SET last_heartbeat_at = CASE id{cases} END \
                 WHERE id IN ({}) AND state <> 'removed'",
                ids.join(", ")
            );
            b.query().execute(&mut *tx).await.map_err(StoreError::map(OP))?;
        }
        for (id, _, caps) in beats {
            if let Some(caps) = caps {
                sqlx::query("UPDATE workers SET capabilities = $2 WHERE id = $1 AND state <> 'removed'")
                    .bind(id.to_string())
                    .bind(sql::json_text(caps))
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::map(OP))?;
            }
        }
        tx.commit().await.map_err(StoreError::map(OP))
    }

    /// Sets a worker's state. `removed` is final: leaving it is an `InvalidTransition`.
    pub async fn set_worker_state(
        &self,
        id: Uuid,
        state: WorkerState,
        now: i64,
    ) -> Result<Worker, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE workers SET state = $2, updated_at = $3 WHERE id = $1 AND (state <> 'removed' OR $2 = 'removed') \
             RETURNING {COLS}"
        ))
        .bind(id.to_string())
        .bind(state.as_str())
        .bind(now)
        .fetch_optional(self.writer())
        .await
        .map_err(StoreError::map("set worker state"))?;
        match row {
            Some(r) => from_row(&r),
            None => {
                self.get_worker(id).await?;
                Err(StoreError::conflict(
                    "set worker state",
                    ConflictKind::InvalidTransition,
                    format!("worker {id} was removed"),
                ))
            }
        }
    }

    /// Pauses (`true`) or resumes a worker: a paused worker keeps what it holds and gets nothing
    /// new. A removed worker is an `InvalidTransition`.
    pub async fn set_worker_paused(&self, id: Uuid, paused: bool, now: i64) -> Result<Worker, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE workers SET paused = $2, updated_at = $3 WHERE id = $1 AND state <> 'removed' \
             RETURNING {COLS}"
        ))
        .bind(id.to_string())
        .bind(i64::from(paused))
        .bind(now)
        .fetch_optional(self.writer())
        .await
        .map_err(StoreError::map("set worker paused"))?;
        self.updated_or_removed(row, id, "set worker paused").await
    }

    /// Replaces what an operator allows of a worker's devices. A removed worker is an
    /// `InvalidTransition`.
    pub async fn set_worker_devices(
        &self,
        id: Uuid,
        settings: &DeviceSettings,
        now: i64,
    ) -> Result<Worker, StoreError> {
        const OP: &str = "set worker devices";
        let text = if settings.is_default() {
            None
        } else {
            Some(
                serde_json::to_string(settings)
                    .map_err(|e| StoreError::invalid("device_settings", e.to_string()))?,
            )
        };
        let row = sqlx::query(&format!(
            "UPDATE workers SET device_settings = $2, updated_at = $3 WHERE id = $1 AND state <> 'removed' \
             RETURNING {COLS}"
        ))
        .bind(id.to_string())
        .bind(text)
        .bind(now)
        .fetch_optional(self.writer())
        .await
        .map_err(StoreError::map(OP))?;
        self.updated_or_removed(row, id, OP).await
    }

    /// The worker an UPDATE returned, else NotFound or (it exists, so it was removed) an
    /// `InvalidTransition`.
    async fn updated_or_removed(
        &self,
        row: Option<AnyRow>,
        id: Uuid,
        op: &'static str,
    ) -> Result<Worker, StoreError> {
        match row {
            Some(r) => from_row(&r),
            None => {
                self.get_worker(id).await?;
                Err(StoreError::conflict(
                    op,
                    ConflictKind::InvalidTransition,
                    format!("worker {id} was removed"),
                ))
            }
        }
    }

    /// Marks `offline` every online worker whose last heartbeat is older than `stale_before`;
    /// returns their ids. (A draining worker stays draining: it gets no jobs either way, and it
    /// must not come back `online` on its next heartbeat.)
    pub async fn mark_stale_workers_offline(
        &self,
        stale_before: i64,
        now: i64,
    ) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(
            "UPDATE workers SET state = 'offline', updated_at = $2 \
             WHERE state = 'online' AND COALESCE(last_heartbeat_at, created_at) < $1 \
             RETURNING id",
        )
        .bind(stale_before)
        .bind(now)
        .fetch_all(self.writer())
        .await
        .map_err(StoreError::map("mark stale workers offline"))?;
        decode_all(rows, |r| sql::uuid(r, "id"))
    }

    /// Stores a join token (only its hash).
    pub async fn create_join_token(&self, new: &NewJoinToken, now: i64) -> Result<JoinToken, StoreError> {
        let row = sqlx::query(&format!(
            "INSERT INTO join_tokens (id, token_hash, name, role, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {TOKEN_COLS}"
        ))
        .bind(Uuid::new_v4().to_string())
        .bind(hex::encode(new.token_hash))
        .bind(new.name.as_deref())
        .bind(new.role.as_str())
        .bind(new.expires_at)
        .bind(now)
        .fetch_one(self.writer())
        .await
        .map_err(StoreError::map("create join token"))?;
        token_from_row(&row)
    }

    /// Join tokens, newest first (hashes are never returned).
    pub async fn list_join_tokens(&self) -> Result<Vec<JoinToken>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM join_tokens ORDER BY created_at DESC, id"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::map("list join tokens"))?;
        decode_all(rows, token_from_row)
    }

    /// Deletes an unused join token (revocation); `NotFound` if there is none.
    pub async fn delete_join_token(&self, id: Uuid) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM join_tokens WHERE id = $1 AND used_at IS NULL")
            .bind(id.to_string())
            .execute(self.writer())
            .await
            .map_err(StoreError::map("delete join token"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("unused join token", id));
        }
        Ok(())
    }

    /// Uses up the join token with this hash: exactly one of any number of concurrent callers
    /// succeeds; the others get [`StoreError::JoinTokenRejected`] (`AlreadyUsed`), as do callers
    /// with an `Unknown` or `Expired` token.
    pub async fn consume_join_token(&self, hash: &[u8; 32], now: i64) -> Result<JoinToken, StoreError> {
        let mut tx = self.begin_write("consume join token").await?;
        let token = consume(&mut tx, hash, now, None).await?;
        tx.commit().await.map_err(StoreError::map("consume join token"))?;
        Ok(token)
    }

    /// Consumes the join token and registers the worker in one transaction: a failure of either
    /// leaves the token unused.
    pub async fn enroll_worker(
        &self,
        hash: &[u8; 32],
        new: &NewWorker,
        now: i64,
    ) -> Result<(JoinToken, Worker), StoreError> {
        let op = "enroll worker";
        let mut tx = self.begin_write(op).await?;
        let worker = insert_worker(&mut tx, new, now).await?;
        let token = consume(&mut tx, hash, now, Some(worker.id)).await?;
        tx.commit().await.map_err(StoreError::map(op))?;
        Ok((token, worker))
    }
}

async fn insert_worker(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    new: &NewWorker,
    now: i64,
) -> Result<Worker, StoreError> {
    if new.name.trim().is_empty() {
        return Err(StoreError::invalid("worker name", "must not be empty"));
    }
    let row = sqlx::query(&format!(
        "INSERT INTO workers (id, name, credential_hash, state, capabilities, last_heartbeat_at, \
         created_at, updated_at) VALUES ($1, $2, $3, 'online', $4, $5, $5, $5) RETURNING {COLS}"
    ))
    .bind(Uuid::new_v4().to_string())
    .bind(new.name.as_str())
    .bind(hex::encode(new.credential_hash))
    .bind(sql::json_text(&new.capabilities))
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(StoreError::map("create worker"))?;
    from_row(&row)
}

async fn consume(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    hash: &[u8; 32],
    now: i64,
    worker: Option<Uuid>,
) -> Result<JoinToken, StoreError> {
    let op = "consume join token";
    let hash = hex::encode(hash);
    // One statement decides: of concurrent consumers only one sees `used_at IS NULL` (SQLite:
    // writers are serialised; PostgreSQL: the second re-checks the row after the first commits).
    let row = sqlx::query(&format!(
        "UPDATE join_tokens SET used_at = $2, used_by = $3 \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING {TOKEN_COLS}"
    ))
    .bind(hash.as_str())
    .bind(now)
    .bind(worker.map(|w| w.to_string()))
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::map(op))?;
    if let Some(row) = row {
        return token_from_row(&row);
    }
    let row = sqlx::query("SELECT used_at, expires_at FROM join_tokens WHERE token_hash = $1")
        .bind(hash.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::map(op))?;
    let reason = match row {
        None => JoinTokenRejection::Unknown,
        Some(r) => {
            let used: Option<i64> = col(&r, "used_at")?;
            if used.is_some() {
                JoinTokenRejection::AlreadyUsed
            } else {
                JoinTokenRejection::Expired
            }
        }
    };
    Err(StoreError::JoinTokenRejected { reason })
}
