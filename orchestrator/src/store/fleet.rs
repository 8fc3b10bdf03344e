//! Bulk queries for the reconcile loop: the whole fleet in a few statements (never one query per
//! worker, identity or job), batched writes of what a plan decides, and the counts behind the
//! state gauges.

use post::data::Layout;
use serde_json::Value;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::error::StoreError;
use super::sql::{self, col, to_i64, Arg, Built};
use super::types::{
    FileState, Identity, IdentityFile, IdentityState, InitRange, Job, JobKind, JobState, WorkerState,
};
use super::{decode_all, identities, Backend, Store};

use super::identities::COLS as IDENTITY_COLS;
use super::jobs::{from_row as job_from_row, COLS as JOB_COLS};

/// Rows per multi-row statement (a few parameters each: far below every backend's limit).
const CHUNK: usize = 500;

/// Decodes a `(text enum, count)` row of a GROUP BY query.
fn count_row<E>(row: &AnyRow, name: &'static str) -> Result<(E, u64), StoreError>
where
    E: std::str::FromStr,
    E::Err: std::fmt::Display,
{
    Ok((sql::text_enum(row, name)?, sql::u64_col(row, "n")?))
}

/// Decodes an `init_ranges` row with its identity.
fn range_row(row: &AnyRow) -> Result<(Uuid, InitRange), StoreError> {
    Ok((
        sql::uuid(row, "identity_id")?,
        super::progress::range_from_row(row)?,
    ))
}

impl Store {
    /// Every queued or leased job (the live work of the fleet), in no particular order.
    pub async fn list_live_jobs(&self) -> Result<Vec<Job>, StoreError> {
        // No ORDER BY: the state index answers the filter without visiting finished jobs.
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE state IN ('queued', 'leased')"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::map("list live jobs"))?;
        decode_all(rows, job_from_row)
    }

    /// Finished (done, failed or cancelled) jobs of `kinds` of the given identities, created at or
    /// after `since`, in no particular order. A done prove job whose pass found no proof
    /// (`result.found == false`) is left out: its challenge is not proved, and the next pass
    /// (from the request's advanced `first_nonce`) replaces it. Served by the (identity, created_at) index, a few
    /// hundred identities per statement, so old jobs are never scanned.
    pub async fn list_finished_jobs_since(
        &self,
        identities: &[Uuid],
        kinds: &[JobKind],
        since: i64,
    ) -> Result<Vec<Job>, StoreError> {
        let mut out = Vec::new();
        if kinds.is_empty() {
            return Ok(out);
        }
        for chunk in identities.chunks(CHUNK) {
            let mut b = Built::new("");
            let since_p = b.arg(Arg::Int(since));
            let ks: Vec<String> = kinds
                .iter()
                .map(|k| b.arg(Arg::Text(k.as_str().to_owned())))
                .collect();
            let ids: Vec<String> = chunk.iter().map(|i| b.arg(Arg::Text(i.to_string()))).collect();
            b.sql = format!(
                "SELECT {JOB_COLS} FROM jobs WHERE identity_id IN ({}) AND created_at >= {since_p} \
                 AND state IN ('done', 'failed', 'cancelled') AND kind IN ({})",
                ids.join(", "),
                ks.join(", ")
            );
            let rows = b
                .query()
                .fetch_all(self.pool())
                .await
                .map_err(StoreError::map("list finished jobs"))?;
            out.extend(
                decode_all(rows, job_from_row)?
                    .into_iter()
                    .filter(|j| !is_empty_pass(j)),
            );
        }
        Ok(out)
    }

    /// Every identity's id and files revision (bumped by triggers in the same transaction as any
    /// change of its file rows or recorded init ranges; migration 0002).
    pub async fn list_identity_file_revs(&self) -> Result<Vec<(Uuid, i64)>, StoreError> {
        let rows = sqlx::query("SELECT id, files_rev FROM identities")
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::map("list identity file revisions"))?;
        decode_all(rows, |row| Ok((sql::uuid(row, "id")?, col(row, "files_rev")?)))
    }

    /// The file rows (`labels_done` left 0: see [`Store::list_init_ranges_of`]) and the recorded
    /// init ranges of the given identities, a few hundred identities per statement. Returns
    /// (files by (identity, index), ranges by (identity, start)).
    pub async fn list_files_and_ranges_of(
        &self,
        identities: &[Uuid],
    ) -> Result<(Vec<IdentityFile>, Vec<(Uuid, InitRange)>), StoreError> {
        let mut files = Vec::new();
        let mut ranges = Vec::new();
        for chunk in identities.chunks(CHUNK) {
            let mut b = Built::new("");
            let ids: Vec<String> = chunk.iter().map(|i| b.arg(Arg::Text(i.to_string()))).collect();
            let ids = ids.join(", ");
            b.sql = format!(
                "SELECT identity_id, file_index, worker_id, disk_id, path, state, updated_at \
                 FROM identity_files WHERE identity_id IN ({ids}) ORDER BY identity_id, file_index"
            );
            let rows = b
                .query()
                .fetch_all(self.pool())
                .await
                .map_err(StoreError::map("list identity files"))?;
            files.extend(decode_all(rows, |row| {
                Ok(IdentityFile {
                    identity_id: sql::uuid(row, "identity_id")?,
                    file_index: sql::u64_col(row, "file_index")?,
                    worker_id: sql::opt_uuid(row, "worker_id")?,
                    disk_id: col(row, "disk_id")?,
                    path: None,
                    state: sql::text_enum(row, "state")?,
                    labels_done: 0,
                    updated_at: col(row, "updated_at")?,
                })
            })?);
            b.sql = format!(
                "SELECT identity_id, file_index, start_label, end_label, job_id, fencing_token, updated_at \
                 FROM init_ranges WHERE identity_id IN ({ids}) ORDER BY identity_id, start_label"
            );
            let rows = b
                .query()
                .fetch_all(self.pool())
                .await
                .map_err(StoreError::map("list init ranges"))?;
            ranges.extend(decode_all(rows, range_row)?);
        }
        Ok((files, ranges))
    }

    /// Places files `(file index, disk id)` of one identity on disks of `worker_id`, in one
    /// transaction: each file row is created or replaced with state `pending` and no path, as
    /// [`Store::upsert_identity_file`] does, but in a few statements for all files. A file index
    /// outside the identity's layout is `Invalid` and nothing is written. Returns the files placed.
    pub async fn place_identity_files(
        &self,
        identity_id: Uuid,
        worker_id: Uuid,
        files: &[(u64, String)],
        now: i64,
    ) -> Result<u64, StoreError> {
        let op = "place identity files";
        if files.is_empty() {
            return Ok(0);
        }
        let identity = self.get_identity(identity_id).await?;
        let layout = Layout::new(
            identity.num_units,
            identity.labels_per_unit,
            identity.max_file_size,
        )
        .map_err(|e| StoreError::corrupt("identity size", e.to_string()))?;
        let num_files = layout.num_files();
        if let Some((bad, _)) = files.iter().find(|(k, _)| *k >= num_files) {
            return Err(StoreError::invalid(
                "file index",
                format!("identity {identity_id} has {num_files} files, no file {bad}"),
            ));
        }
        let mut tx = self.begin_write(op).await?;
        for chunk in files.chunks(CHUNK) {
            let mut b = Built::new("");
            let ident = b.arg(Arg::Text(identity_id.to_string()));
            let worker = b.arg(Arg::Text(worker_id.to_string()));
            let state = b.arg(Arg::Text(FileState::Pending.as_str().to_owned()));
            let now_p = b.arg(Arg::Int(now));
            let mut values = Vec::with_capacity(chunk.len());
            for (index, disk) in chunk {
                let index = b.arg(Arg::Int(to_i64("file index", *index)?));
                let disk = b.arg(Arg::Text(disk.clone()));
                values.push(format!(
                    "({ident}, {index}, {worker}, {disk}, NULL, {state}, {now_p})"
                ));
            }
            b.sql = format!(
                "INSERT INTO identity_files (identity_id, file_index, worker_id, disk_id, path, state, \
                 updated_at) VALUES {} \
                 ON CONFLICT (identity_id, file_index) DO UPDATE SET worker_id = excluded.worker_id, \
                 disk_id = excluded.disk_id, path = excluded.path, state = excluded.state, \
                 updated_at = excluded.updated_at",
                values.join(", ")
            );
            b.query().execute(&mut *tx).await.map_err(StoreError::map(op))?;
        }
        tx.commit().await.map_err(StoreError::map(op))?;
        Ok(files.len() as u64)
    }

    /// Rewrites the payload of a job that is still queued or leased: `f` gets the stored payload
    /// and returns the new one, or `None` to leave it. Atomic with the liveness check (the row is
    /// locked while `f` decides). Returns the updated job, or `None` when the job is no longer
    /// live or `f` declined; an unknown job is `NotFound`.
    ///
    /// A leased job's worker is not told: it learns the new payload from the answer to its next
    /// report (or when it leases the job again).
    pub async fn rewrite_live_job_payload<F>(
        &self,
        job_id: Uuid,
        now: i64,
        f: F,
    ) -> Result<Option<Job>, StoreError>
    where
        F: FnOnce(&Value) -> Option<Value>,
    {
        let op = "rewrite job payload";
        let mut tx = self.begin_write(op).await?;
        let row = sqlx::query(&format!(
            "SELECT state, payload FROM jobs WHERE id = $1{}",
            self.for_update()
        ))
        .bind(job_id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        let Some(row) = row else {
            return Err(StoreError::not_found("job", job_id));
        };
        let state: JobState = sql::text_enum(&row, "state")?;
        if !state.is_active() {
            return Ok(None);
        }
        let payload = sql::json(&row, "payload")?;
        let Some(new) = f(&payload) else {
            return Ok(None);
        };
        let row = sqlx::query(&format!(
            "UPDATE jobs SET payload = $2, updated_at = $3 \
             WHERE id = $1 AND state IN ('queued', 'leased') RETURNING {JOB_COLS}"
        ))
        .bind(job_id.to_string())
        .bind(sql::json_text(&new))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        let job = row.as_ref().map(job_from_row).transpose()?;
        tx.commit().await.map_err(StoreError::map(op))?;
        Ok(job)
    }

    /// Identities in state `created` or `initializing`, each with its labels recorded done (all
    /// files) and the number of init jobs it has had (any state), by id.
    pub async fn list_identities_in_init(&self) -> Result<Vec<(Identity, u64, u64)>, StoreError> {
        let cols = IDENTITY_COLS
            .split(", ")
            .map(|c| format!("i.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {cols}, \
             CAST(COALESCE((SELECT SUM(r.end_label - r.start_label) FROM init_ranges r \
               WHERE r.identity_id = i.id), 0) AS BIGINT) AS labels_done, \
             CAST((SELECT COUNT(*) FROM jobs j WHERE j.identity_id = i.id AND j.kind = 'init') AS BIGINT) \
               AS init_jobs \
             FROM identities i WHERE i.state IN ('created', 'initializing') ORDER BY i.id"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::map("list identities in init"))?;
        decode_all(rows, |row| {
            Ok((
                identities::from_row(row)?,
                sql::u64_col(row, "labels_done")?,
                sql::u64_col(row, "init_jobs")?,
            ))
        })
    }

    /// Appends events `(kind, subject, data)` in one transaction, in order; returns their ids.
    pub async fn append_events(
        &self,
        events: &[(String, String, Value)],
        now: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let op = "append events";
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write(op).await?;
        if self.backend() == Backend::Postgres {
            // As in `append_event`: ids must become visible in commit order.
            sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .map_err(StoreError::map(op))?;
        }
        let mut ids = Vec::with_capacity(events.len());
        for (kind, subject, data) in events {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO events (kind, subject, data, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(kind.as_str())
            .bind(subject.as_str())
            .bind(sql::json_text(data))
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::map(op))?;
            ids.push(id);
        }
        tx.commit().await.map_err(StoreError::map(op))?;
        Ok(ids)
    }

    /// Number of jobs per (kind, state); combinations without jobs are absent.
    pub async fn count_jobs_by_kind_state(&self) -> Result<Vec<(JobKind, JobState, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, state, CAST(COUNT(*) AS BIGINT) AS n FROM jobs GROUP BY kind, state ORDER BY kind, state",
        )
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::map("count jobs"))?;
        decode_all(rows, |row| {
            Ok((
                sql::text_enum(row, "kind")?,
                sql::text_enum(row, "state")?,
                sql::u64_col(row, "n")?,
            ))
        })
    }

    /// Number of identities per state; states without identities are absent.
    pub async fn count_identities_by_state(&self) -> Result<Vec<(IdentityState, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, CAST(COUNT(*) AS BIGINT) AS n FROM identities GROUP BY state ORDER BY state",
        )
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::map("count identities"))?;
        decode_all(rows, |row| count_row(row, "state"))
    }

    /// Number of workers per state; states without workers are absent.
    pub async fn count_workers_by_state(&self) -> Result<Vec<(WorkerState, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, CAST(COUNT(*) AS BIGINT) AS n FROM workers GROUP BY state ORDER BY state",
        )
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::map("count workers"))?;
        decode_all(rows, |row| count_row(row, "state"))
    }
}

/// A done prove job whose pass found no proof.
fn is_empty_pass(j: &Job) -> bool {
    j.kind == JobKind::Prove
        && j.state == super::types::JobState::Done
        && j.result
            .as_ref()
            .and_then(|r| r.get("found"))
            .and_then(serde_json::Value::as_bool)
            == Some(false)
}
