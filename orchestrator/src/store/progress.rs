//! Data placement (which worker and disk hold each `postdata_<k>.bin`) and init progress recorded
//! at range granularity, so that a crash anywhere resumes from the last durable range and no
//! label is ever counted twice.

use post::data::Layout;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::error::{ConflictKind, StoreError};
use super::sql::{self, col, to_i64};
use super::types::{FilePlacement, IdentityFile, InitRange, JobState, RangeOutcome, RangeReport};
use super::{decode_all, identities, Store};

const FILE_SELECT: &str = "SELECT f.identity_id, f.file_index, f.worker_id, f.disk_id, f.path, f.state, \
     f.updated_at, CAST(COALESCE((SELECT SUM(r.end_label - r.start_label) FROM init_ranges r \
       WHERE r.identity_id = f.identity_id AND r.file_index = f.file_index), 0) AS BIGINT) AS labels_done \
     FROM identity_files f";

fn file_from_row(row: &AnyRow) -> Result<IdentityFile, StoreError> {
    Ok(IdentityFile {
        identity_id: sql::uuid(row, "identity_id")?,
        file_index: sql::u64_col(row, "file_index")?,
        worker_id: sql::opt_uuid(row, "worker_id")?,
        disk_id: col(row, "disk_id")?,
        path: col(row, "path")?,
        state: sql::text_enum(row, "state")?,
        labels_done: sql::u64_col(row, "labels_done")?,
        updated_at: col(row, "updated_at")?,
    })
}

pub(crate) fn range_from_row(row: &AnyRow) -> Result<InitRange, StoreError> {
    Ok(InitRange {
        file_index: sql::u64_col(row, "file_index")?,
        start_label: sql::u64_col(row, "start_label")?,
        end_label: sql::u64_col(row, "end_label")?,
        job_id: sql::uuid(row, "job_id")?,
        fencing_token: col(row, "fencing_token")?,
        updated_at: col(row, "updated_at")?,
    })
}

fn layout_of(identity: &super::types::Identity) -> Result<Layout, StoreError> {
    Layout::new(
        identity.num_units,
        identity.labels_per_unit,
        identity.max_file_size,
    )
    .map_err(|e| StoreError::corrupt("identity size", e.to_string()))
}

impl Store {
    /// Creates or replaces the placement of one data file of an identity. The file's recorded
    /// progress is unaffected.
    pub async fn upsert_identity_file(
        &self,
        identity_id: Uuid,
        placement: &FilePlacement,
        now: i64,
    ) -> Result<IdentityFile, StoreError> {
        let op = "upsert identity file";
        let identity = self.get_identity(identity_id).await?;
        let files = layout_of(&identity)?.num_files();
        if placement.file_index >= files {
            return Err(StoreError::invalid(
                "file index",
                format!(
                    "identity {identity_id} has {files} files, no file {}",
                    placement.file_index
                ),
            ));
        }
        sqlx::query(
            "INSERT INTO identity_files (identity_id, file_index, worker_id, disk_id, path, state, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (identity_id, file_index) DO UPDATE SET worker_id = excluded.worker_id, \
               disk_id = excluded.disk_id, path = excluded.path, state = excluded.state, \
               updated_at = excluded.updated_at",
        )
        .bind(identity_id.to_string())
        .bind(to_i64("file index", placement.file_index)?)
        .bind(placement.worker_id.map(|w| w.to_string()))
        .bind(placement.disk_id.as_deref())
        .bind(placement.path.as_deref())
        .bind(placement.state.as_str())
        .bind(now)
        .execute(self.writer())
        .await
        .map_err(StoreError::map(op))?;
        let row = sqlx::query(&format!(
            "{FILE_SELECT} WHERE f.identity_id = $1 AND f.file_index = $2"
        ))
        .bind(identity_id.to_string())
        .bind(to_i64("file index", placement.file_index)?)
        .fetch_one(self.pool())
        .await
        .map_err(StoreError::map(op))?;
        file_from_row(&row)
    }

    /// The placed files of an identity, by index, with their recorded progress.
    pub async fn list_identity_files(&self, identity_id: Uuid) -> Result<Vec<IdentityFile>, StoreError> {
        let rows = sqlx::query(&format!(
            "{FILE_SELECT} WHERE f.identity_id = $1 ORDER BY f.file_index"
        ))
        .bind(identity_id.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::map("list identity files"))?;
        decode_all(rows, file_from_row)
    }

    /// Records that labels `[start_label, end_label)` are durable, in one transaction:
    ///
    /// * a range inside what is already recorded is a no-op (`AlreadyRecorded`), whoever reports
    ///   it: a re-report never counts twice;
    /// * otherwise the job must be leased by `worker_id` under `fencing_token`, else
    ///   [`StoreError::StaleLease`] and nothing changes;
    /// * a range that partly overlaps a recorded one is an `Overlap` conflict;
    /// * the range must lie inside file `file_index` of the identity's layout (`Invalid`).
    ///
    /// Adjacent ranges of one file are merged into one run.
    pub async fn record_range_done(&self, r: &RangeReport, now: i64) -> Result<RangeOutcome, StoreError> {
        let op = "record init range";
        let mut tx = self.begin_write(op).await?;
        let id = r.identity_id.to_string();
        let row = sqlx::query(&format!(
            "SELECT {} FROM identities WHERE id = $1{}",
            identities::COLS,
            self.for_update()
        ))
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        let identity = match row {
            Some(row) => identities::from_row(&row)?,
            None => return Err(StoreError::not_found("identity", r.identity_id)),
        };
        let layout = layout_of(&identity)?;
        let file = layout.file_labels(r.file_index);
        if r.file_index >= layout.num_files()
            || r.start_label >= r.end_label
            || r.start_label < file.start
            || r.end_label > file.end
        {
            return Err(StoreError::invalid(
                "init range",
                format!(
                    "[{}, {}) is empty or outside file {} (labels [{}, {}))",
                    r.start_label, r.end_label, r.file_index, file.start, file.end
                ),
            ));
        }
        let (start, end) = (
            to_i64("start_label", r.start_label)?,
            to_i64("end_label", r.end_label)?,
        );

        let inside = sqlx::query(
            "SELECT start_label FROM init_ranges WHERE identity_id = $1 AND start_label <= $2 AND end_label >= $3",
        )
        .bind(&id)
        .bind(start)
        .bind(end)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        if inside.is_some() {
            return Ok(RangeOutcome::AlreadyRecorded);
        }

        let job = sqlx::query(&format!(
            "SELECT identity_id, state, worker_id, fencing_token FROM jobs WHERE id = $1{}",
            self.for_update()
        ))
        .bind(r.job_id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        let Some(job) = job else {
            return Err(StoreError::not_found("job", r.job_id));
        };
        if sql::uuid(&job, "identity_id")? != r.identity_id {
            return Err(StoreError::invalid(
                "init range",
                format!("job {} is for another identity", r.job_id),
            ));
        }
        let state: JobState = sql::text_enum(&job, "state")?;
        let holder = sql::opt_uuid(&job, "worker_id")?;
        let token: i64 = col(&job, "fencing_token")?;
        if state != JobState::Leased || holder != Some(r.worker_id) || token != r.fencing_token {
            return Err(StoreError::StaleLease {
                job_id: r.job_id,
                reason: format!(
                    "job is {state} with token {token}; the report carries token {} from worker {}",
                    r.fencing_token, r.worker_id
                ),
            });
        }

        let overlap = sqlx::query(
            "SELECT start_label, end_label FROM init_ranges \
             WHERE identity_id = $1 AND start_label < $3 AND end_label > $2",
        )
        .bind(&id)
        .bind(start)
        .bind(end)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        if let Some(o) = overlap {
            let (os, oe): (i64, i64) = (col(&o, "start_label")?, col(&o, "end_label")?);
            return Err(StoreError::conflict(
                op,
                ConflictKind::Overlap,
                format!("[{start}, {end}) overlaps the recorded range [{os}, {oe})"),
            ));
        }

        let fidx = to_i64("file index", r.file_index)?;
        let left: Option<i64> = sqlx::query_scalar(
            "SELECT start_label FROM init_ranges WHERE identity_id = $1 AND end_label = $2 AND file_index = $3",
        )
        .bind(&id)
        .bind(start)
        .bind(fidx)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        let right: Option<i64> = sqlx::query_scalar(
            "SELECT end_label FROM init_ranges WHERE identity_id = $1 AND start_label = $2 AND file_index = $3",
        )
        .bind(&id)
        .bind(end)
        .bind(fidx)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        let new_end = right.unwrap_or(end);
        if right.is_some() {
            sqlx::query("DELETE FROM init_ranges WHERE identity_id = $1 AND start_label = $2")
                .bind(&id)
                .bind(end)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::map(op))?;
        }
        let write = match left {
            Some(left_start) => sqlx::query(
                "UPDATE init_ranges SET end_label = $3, job_id = $4, fencing_token = $5, updated_at = $6 \
                 WHERE identity_id = $1 AND start_label = $2",
            )
            .bind(&id)
            .bind(left_start),
            None => sqlx::query(
                "INSERT INTO init_ranges (identity_id, start_label, end_label, job_id, fencing_token, \
                 updated_at, file_index) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&id)
            .bind(start),
        };
        let write = write
            .bind(new_end)
            .bind(r.job_id.to_string())
            .bind(r.fencing_token)
            .bind(now);
        let write = if left.is_none() { write.bind(fidx) } else { write };
        write.execute(&mut *tx).await.map_err(StoreError::map(op))?;
        tx.commit().await.map_err(StoreError::map(op))?;
        Ok(RangeOutcome::Recorded)
    }

    /// Labels of the identity recorded done, over all files.
    pub async fn labels_done(&self, identity_id: Uuid) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(end_label - start_label), 0) AS BIGINT) FROM init_ranges \
             WHERE identity_id = $1",
        )
        .bind(identity_id.to_string())
        .fetch_one(self.pool())
        .await
        .map_err(StoreError::map("count labels done"))?;
        u64::try_from(n).map_err(|_| StoreError::corrupt("init_ranges", format!("negative sum {n}")))
    }

    /// The recorded runs of done labels of an identity, by start.
    pub async fn list_init_ranges(&self, identity_id: Uuid) -> Result<Vec<InitRange>, StoreError> {
        let rows = sqlx::query(
            "SELECT file_index, start_label, end_label, job_id, fencing_token, updated_at FROM init_ranges \
             WHERE identity_id = $1 ORDER BY start_label",
        )
        .bind(identity_id.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::map("list init ranges"))?;
        decode_all(rows, range_from_row)
    }

    /// Forgets the recorded progress of one file (its data was lost); returns the labels forgotten.
    pub async fn reset_file_progress(&self, identity_id: Uuid, file_index: u64) -> Result<u64, StoreError> {
        let op = "reset file progress";
        let mut tx = self.begin_write(op).await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(end_label - start_label), 0) AS BIGINT) FROM init_ranges \
             WHERE identity_id = $1 AND file_index = $2",
        )
        .bind(identity_id.to_string())
        .bind(to_i64("file index", file_index)?)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        sqlx::query("DELETE FROM init_ranges WHERE identity_id = $1 AND file_index = $2")
            .bind(identity_id.to_string())
            .bind(to_i64("file index", file_index)?)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::map(op))?;
        tx.commit().await.map_err(StoreError::map(op))?;
        u64::try_from(n).map_err(|_| StoreError::corrupt("init_ranges", format!("negative sum {n}")))
    }

    /// Forgets exactly the labels of `ranges` (identity-wide `[start, end)`, e.g. a verify job's
    /// bad ranges) from the recorded progress: runs inside a range are deleted, runs across its
    /// edges trimmed or split. One transaction. Returns the labels forgotten.
    pub async fn remove_label_ranges(
        &self,
        identity_id: Uuid,
        ranges: &[(u64, u64)],
        now: i64,
    ) -> Result<u64, StoreError> {
        let op = "remove label ranges";
        if let Some(&(a, b)) = ranges.iter().find(|(a, b)| b <= a) {
            return Err(StoreError::invalid("ranges", format!("[{a}, {b}) is empty")));
        }
        let mut tx = self.begin_write(op).await?;
        let mut forgotten = 0u64;
        for &(start, end) in ranges {
            let (s, e) = (to_i64("start", start)?, to_i64("end", end)?);
            let rows = sqlx::query(&format!(
                "SELECT file_index, start_label, end_label, job_id, fencing_token, updated_at FROM init_ranges \
                 WHERE identity_id = $1 AND start_label < $3 AND end_label > $2 ORDER BY start_label{}",
                self.for_update()
            ))
            .bind(identity_id.to_string())
            .bind(s)
            .bind(e)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::map(op))?;
            let runs = decode_all(rows, range_from_row)?;
            for r in runs {
                sqlx::query("DELETE FROM init_ranges WHERE identity_id = $1 AND start_label = $2")
                    .bind(identity_id.to_string())
                    .bind(to_i64("start", r.start_label)?)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::map(op))?;
                let cut_start = r.start_label.max(start);
                let cut_end = r.end_label.min(end);
                forgotten += cut_end - cut_start;
                for (a, b) in [(r.start_label, start), (end, r.end_label)] {
                    if a >= b {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO init_ranges (identity_id, start_label, end_label, file_index, job_id, \
                         fencing_token, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(identity_id.to_string())
                    .bind(to_i64("start", a)?)
                    .bind(to_i64("end", b)?)
                    .bind(to_i64("file index", r.file_index)?)
                    .bind(r.job_id.to_string())
                    .bind(r.fencing_token)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::map(op))?;
                }
            }
        }
        tx.commit().await.map_err(StoreError::map(op))?;
        Ok(forgotten)
    }

    /// A worker found disk `disk_id` full (an init job's write or its free-space check failed), in
    /// one transaction:
    ///
    /// * the disk's `free_bytes` in the worker's stored capabilities becomes `free_bytes` (the
    ///   worker's next capability refresh replaces it with what it measures then), so placement
    ///   puts nothing more there;
    /// * every file placed on that disk that is not complete is moved off it: its placement row
    ///   and its recorded labels are deleted (the labels of a partly written file are given up: the
    ///   disk has no room to finish it, and moving labels would need a copy that no job does), and
    ///   its live init jobs are cancelled. The next round places the files anew, on the worker's
    ///   other disks (an identity's files stay on one worker) or, for an identity with nothing left
    ///   on the worker, on any worker. Complete files stay where they are.
    ///
    /// Idempotent: a second report of the same disk moves nothing more. An unknown worker is
    /// `NotFound`.
    pub async fn record_disk_full(
        &self,
        worker_id: Uuid,
        disk_id: &str,
        free_bytes: u64,
        now: i64,
    ) -> Result<DiskFullOutcome, StoreError> {
        let op = "record disk full";
        let mut tx = self.begin_write(op).await?;
        let caps: Option<String> = sqlx::query_scalar(&format!(
            "SELECT capabilities FROM workers WHERE id = $1{}",
            self.for_update()
        ))
        .bind(worker_id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        let caps = caps.ok_or_else(|| StoreError::not_found("worker", worker_id))?;
        let mut caps: serde_json::Value =
            serde_json::from_str(&caps).map_err(|e| StoreError::corrupt("capabilities", e.to_string()))?;
        if let Some(disks) = caps.get_mut("disks").and_then(serde_json::Value::as_array_mut) {
            for d in disks.iter_mut() {
                if d.get("id").and_then(serde_json::Value::as_str) == Some(disk_id) {
                    d["free_bytes"] = serde_json::Value::from(free_bytes);
                }
            }
        }
        sqlx::query("UPDATE workers SET capabilities = $2, updated_at = $3 WHERE id = $1")
            .bind(worker_id.to_string())
            .bind(sql::json_text(&caps))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::map(op))?;

        let rows = sqlx::query(
            "SELECT f.identity_id, f.file_index, i.num_units, i.labels_per_unit, i.max_file_size, \
               CAST(COALESCE((SELECT SUM(r.end_label - r.start_label) FROM init_ranges r \
                 WHERE r.identity_id = f.identity_id AND r.file_index = f.file_index), 0) AS BIGINT) \
                 AS labels_done \
             FROM identity_files f JOIN identities i ON i.id = f.identity_id \
             WHERE f.worker_id = $1 AND f.disk_id = $2 ORDER BY f.identity_id, f.file_index",
        )
        .bind(worker_id.to_string())
        .bind(disk_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::map(op))?;
        let mut out = DiskFullOutcome::default();
        for row in rows {
            let identity_id = sql::uuid(&row, "identity_id")?;
            let file_index = sql::u64_col(&row, "file_index")?;
            let num_units: i64 = col(&row, "num_units")?;
            let labels_per_unit = sql::u64_col(&row, "labels_per_unit")?;
            let max_file_size = sql::u64_col(&row, "max_file_size")?;
            let done = sql::u64_col(&row, "labels_done")?;
            let layout = Layout::new(
                u32::try_from(num_units)
                    .map_err(|_| StoreError::corrupt("num_units", num_units.to_string()))?,
                labels_per_unit,
                max_file_size,
            )
            .map_err(|e| StoreError::corrupt("identity size", e.to_string()))?;
            let labels = layout.file_labels(file_index);
            if done >= labels.end - labels.start {
                continue;
            }
            let k = to_i64("file index", file_index)?;
            sqlx::query("DELETE FROM init_ranges WHERE identity_id = $1 AND file_index = $2")
                .bind(identity_id.to_string())
                .bind(k)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::map(op))?;
            sqlx::query("DELETE FROM identity_files WHERE identity_id = $1 AND file_index = $2")
                .bind(identity_id.to_string())
                .bind(k)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::map(op))?;
            let jobs = sqlx::query(
                "SELECT id, payload FROM jobs WHERE identity_id = $1 AND kind = 'init' \
                 AND state IN ('queued', 'leased')",
            )
            .bind(identity_id.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::map(op))?;
            for j in jobs {
                let payload = sql::json(&j, "payload")?;
                if payload["work"]["file_index"].as_u64() != Some(file_index) {
                    continue;
                }
                let id: String = col(&j, "id")?;
                sqlx::query(
                    "UPDATE jobs SET state = 'cancelled', lease_expires_at = NULL, updated_at = $2 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::map(op))?;
                out.jobs_cancelled += 1;
            }
            out.labels_forgotten += done;
            out.files_moved.push((identity_id, file_index));
        }
        tx.commit().await.map_err(StoreError::map(op))?;
        Ok(out)
    }
}

/// What [`Store::record_disk_full`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskFullOutcome {
    /// `(identity, file index)` of every file moved off the disk.
    pub files_moved: Vec<(Uuid, u64)>,
    /// Recorded labels of those files given up (partly written files).
    pub labels_forgotten: u64,
    /// Live init jobs of those files cancelled.
    pub jobs_cancelled: u64,
}
