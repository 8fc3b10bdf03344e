//! Jobs and their leases. A lease hands a queued job to one worker with a fresh fencing token;
//! every report of that worker must carry the token, and one that does not (the lease expired and
//! the job went to another worker, or it was cancelled) is refused with `StaleLease` and changes
//! nothing.

use serde_json::Value;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::error::{ConflictKind, StoreError};
use super::sql::{self, col, Arg, Built};
use super::types::{ExpiredLease, Job, JobFailure, JobFilter, JobKind, JobState, Lease, NewJob, WorkerState};
use super::{decode_all, Backend, Store};

pub(super) const COLS: &str =
    "id, kind, identity_id, job_key, payload, state, assigned_worker_id, worker_id, \
                    lease_expires_at, fencing_token, attempts, max_attempts, progress, result, error, \
                    priority, not_before, created_at, updated_at";

/// The lease condition every worker report must meet: `$1` job, `$2` worker, `$3` token.
const HOLDS_LEASE: &str = "id = $1 AND state = 'leased' AND worker_id = $2 AND fencing_token = $3";

pub(super) fn from_row(row: &AnyRow) -> Result<Job, StoreError> {
    Ok(Job {
        id: sql::uuid(row, "id")?,
        kind: sql::text_enum(row, "kind")?,
        identity_id: sql::uuid(row, "identity_id")?,
        key: col(row, "job_key")?,
        payload: sql::json(row, "payload")?,
        state: sql::text_enum(row, "state")?,
        assigned_worker_id: sql::opt_uuid(row, "assigned_worker_id")?,
        worker_id: sql::opt_uuid(row, "worker_id")?,
        lease_expires_at: col(row, "lease_expires_at")?,
        fencing_token: col(row, "fencing_token")?,
        attempts: sql::u32_col(row, "attempts")?,
        max_attempts: sql::u32_col(row, "max_attempts")?,
        progress: sql::opt_json(row, "progress")?,
        result: sql::opt_json(row, "result")?,
        error: col(row, "error")?,
        priority: col(row, "priority")?,
        not_before: col(row, "not_before")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

impl Store {
    /// Queues a job. A `key` already used by a queued or leased job is a `Duplicate` conflict; an
    /// unknown identity or worker a `ForeignKey` conflict.
    pub async fn enqueue_job(&self, new: &NewJob, now: i64) -> Result<Job, StoreError> {
        if new.max_attempts == 0 {
            return Err(StoreError::invalid("max_attempts", "must be at least 1"));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO jobs (id, kind, identity_id, job_key, payload, state, assigned_worker_id, \
             max_attempts, priority, not_before, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9, $10, $10) RETURNING {COLS}"
        ))
        .bind(Uuid::new_v4().to_string())
        .bind(new.kind.as_str())
        .bind(new.identity_id.to_string())
        .bind(new.key.as_deref())
        .bind(sql::json_text(&new.payload))
        .bind(new.assigned_worker_id.map(|w| w.to_string()))
        .bind(i64::from(new.max_attempts))
        .bind(new.priority)
        .bind(new.not_before)
        .bind(now)
        .fetch_one(self.writer())
        .await
        .map_err(StoreError::map("enqueue job"))?;
        from_row(&row)
    }

    /// Queues many jobs in one write transaction (the reconcile loop's way: one lock acquisition
    /// instead of one per job, which under load spent seconds waiting for SQLite's write lock).
    /// A job whose `key` is already used by a queued or leased job is skipped (`None` in its
    /// place). Any other failure (an unknown identity or worker, `max_attempts` 0) fails the
    /// whole batch and writes nothing; the caller may then queue the jobs one by one.
    pub async fn enqueue_jobs(&self, new: &[NewJob], now: i64) -> Result<Vec<Option<Job>>, StoreError> {
        const OP: &str = "enqueue jobs";
        if let Some(bad) = new.iter().find(|n| n.max_attempts == 0) {
            return Err(StoreError::invalid(
                "max_attempts",
                format!("must be at least 1 (job key {:?})", bad.key),
            ));
        }
        let mut out = Vec::with_capacity(new.len());
        if new.is_empty() {
            return Ok(out);
        }
        let mut tx = self.begin_write(OP).await?;
        let sql = format!(
            "INSERT INTO jobs (id, kind, identity_id, job_key, payload, state, assigned_worker_id, \
             max_attempts, priority, not_before, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9, $10, $10) \
             ON CONFLICT DO NOTHING RETURNING {COLS}"
        );
        for n in new {
            let row = sqlx::query(&sql)
                .bind(Uuid::new_v4().to_string())
                .bind(n.kind.as_str())
                .bind(n.identity_id.to_string())
                .bind(n.key.as_deref())
                .bind(sql::json_text(&n.payload))
                .bind(n.assigned_worker_id.map(|w| w.to_string()))
                .bind(i64::from(n.max_attempts))
                .bind(n.priority)
                .bind(n.not_before)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::map(OP))?;
            out.push(row.as_ref().map(from_row).transpose()?);
        }
        tx.commit().await.map_err(StoreError::map(OP))?;
        Ok(out)
    }

    pub async fn get_job(&self, id: Uuid) -> Result<Job, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM jobs WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::map("get job"))?;
        match row {
            Some(r) => from_row(&r),
            None => Err(StoreError::not_found("job", id)),
        }
    }

    /// Jobs matching every set filter, newest first.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let mut b = Built::new(&format!("SELECT {COLS} FROM jobs WHERE 1 = 1"));
        if let Some(kind) = filter.kind {
            let p = b.arg(Arg::Text(kind.as_str().to_owned()));
            b.sql.push_str(&format!(" AND kind = {p}"));
        }
        if let Some(state) = filter.state {
            let p = b.arg(Arg::Text(state.as_str().to_owned()));
            b.sql.push_str(&format!(" AND state = {p}"));
        }
        if let Some(identity) = filter.identity_id {
            let p = b.arg(Arg::Text(identity.to_string()));
            b.sql.push_str(&format!(" AND identity_id = {p}"));
        }
        if let Some(worker) = filter.worker_id {
            let p = b.arg(Arg::Text(worker.to_string()));
            b.sql.push_str(&format!(" AND worker_id = {p}"));
        }
        let limit = b.arg(Arg::Int(i64::from(filter.limit)));
        let offset = b.arg(Arg::Int(i64::from(filter.offset)));
        b.sql.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT {limit} OFFSET {offset}"
        ));
        let rows = b
            .query()
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::map("list jobs"))?;
        decode_all(rows, from_row)
    }

    /// Hands up to `limit` queued jobs of `kinds` (empty: any kind) to `worker_id`, highest
    /// priority first, jobs pinned to this worker before unpinned ones of the same priority, then
    /// oldest first. Each gets state `leased`, a lease until `now + lease_ms`, one more attempt and
    /// a new fencing token. Atomic: two workers leasing at once never get the same job.
    ///
    /// Only an `online` worker that is not paused gets jobs (a draining, paused, offline or
    /// removed one gets none); an unknown worker is `NotFound`.
    pub async fn lease_jobs(
        &self,
        worker_id: Uuid,
        kinds: &[JobKind],
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Lease>, StoreError> {
        let op = "lease jobs";
        if lease_ms <= 0 {
            return Err(StoreError::invalid("lease_ms", "must be positive"));
        }
        let row = sqlx::query("SELECT state, paused FROM workers WHERE id = $1")
            .bind(worker_id.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::map(op))?;
        let Some(row) = row else {
            return Err(StoreError::not_found("worker", worker_id));
        };
        let state: WorkerState = sql::text_enum(&row, "state")?;
        // A worker an operator paused keeps its leases and gets nothing new.
        let paused = col::<i64>(&row, "paused")? != 0;
        if state != WorkerState::Online || paused || limit == 0 {
            return Ok(Vec::new());
        }

        let mut b = Built::new("");
        let worker = b.arg(Arg::Text(worker_id.to_string()));
        let expires = b.arg(Arg::Int(now.saturating_add(lease_ms)));
        let now_p = b.arg(Arg::Int(now));
        let limit_p = b.arg(Arg::Int(i64::from(limit)));
        let mut kind_filter = String::new();
        if !kinds.is_empty() {
            let ps: Vec<String> = kinds
                .iter()
                .map(|k| b.arg(Arg::Text(k.as_str().to_owned())))
                .collect();
            kind_filter = format!(" AND kind IN ({})", ps.join(", "));
        }
        let skip_locked = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        b.sql = format!(
            "UPDATE jobs SET state = 'leased', worker_id = {worker}, lease_expires_at = {expires}, \
               fencing_token = fencing_token + 1, attempts = attempts + 1, updated_at = {now_p} \
             WHERE state = 'queued' AND id IN ( \
               SELECT id FROM jobs WHERE state = 'queued' AND not_before <= {now_p} \
                 AND (assigned_worker_id IS NULL OR assigned_worker_id = {worker}){kind_filter} \
               ORDER BY priority DESC, CASE WHEN assigned_worker_id IS NULL THEN 1 ELSE 0 END, \
                 created_at, id \
               LIMIT {limit_p}{skip_locked}) \
             RETURNING {COLS}"
        );
        let mut tx = self.begin_write(op).await?;
        let rows = b.query().fetch_all(&mut *tx).await.map_err(StoreError::map(op))?;
        let mut jobs = decode_all(rows, from_row)?;
        tx.commit().await.map_err(StoreError::map(op))?;
        jobs.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.created_at.cmp(&b.created_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(jobs
            .into_iter()
            .map(|job| Lease {
                fencing_token: job.fencing_token,
                job,
            })
            .collect())
    }

    /// Extends the lease to `now + lease_ms` and, with `progress`, stores it (a checkpoint).
    pub async fn renew_lease(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        fencing_token: i64,
        progress: Option<&Value>,
        now: i64,
        lease_ms: i64,
    ) -> Result<Job, StoreError> {
        if lease_ms <= 0 {
            return Err(StoreError::invalid("lease_ms", "must be positive"));
        }
        let row = sqlx::query(&format!(
            "UPDATE jobs SET lease_expires_at = $4, progress = COALESCE($5, progress), updated_at = $6 \
             WHERE {HOLDS_LEASE} RETURNING {COLS}"
        ))
        .bind(job_id.to_string())
        .bind(worker_id.to_string())
        .bind(fencing_token)
        .bind(now.saturating_add(lease_ms))
        .bind(progress.map(sql::json_text))
        .bind(now)
        .fetch_optional(self.writer())
        .await
        .map_err(StoreError::map("renew lease"))?;
        self.leased_row(row, job_id, worker_id, fencing_token).await
    }

    /// Marks the job done with its result.
    pub async fn complete_job(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        fencing_token: i64,
        result: &Value,
        now: i64,
    ) -> Result<Job, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'done', result = $4, lease_expires_at = NULL, error = NULL, \
             updated_at = $5 WHERE {HOLDS_LEASE} RETURNING {COLS}"
        ))
        .bind(job_id.to_string())
        .bind(worker_id.to_string())
        .bind(fencing_token)
        .bind(sql::json_text(result))
        .bind(now)
        .fetch_optional(self.writer())
        .await
        .map_err(StoreError::map("complete job"))?;
        self.leased_row(row, job_id, worker_id, fencing_token).await
    }

    /// Records a failure: a retryable one requeues the job (not before `retry_at`) while attempts
    /// remain; otherwise, or when attempts are used up, the job fails for good.
    pub async fn fail_job(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        fencing_token: i64,
        failure: &JobFailure,
        now: i64,
    ) -> Result<Job, StoreError> {
        let requeue = "$4 = 1 AND attempts < max_attempts";
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = CASE WHEN {requeue} THEN 'queued' ELSE 'failed' END, \
               not_before = CASE WHEN {requeue} THEN $5 ELSE not_before END, \
               lease_expires_at = NULL, error = $6, updated_at = $7 \
             WHERE {HOLDS_LEASE} RETURNING {COLS}"
        ))
        .bind(job_id.to_string())
        .bind(worker_id.to_string())
        .bind(fencing_token)
        .bind(i64::from(failure.retryable))
        .bind(failure.retry_at.unwrap_or(now))
        .bind(failure.error.as_str())
        .bind(now)
        .fetch_optional(self.writer())
        .await
        .map_err(StoreError::map("fail job"))?;
        self.leased_row(row, job_id, worker_id, fencing_token).await
    }

    /// Hands a leased job back to the queue as if it had not been leased (the attempt is not
    /// counted), not before `not_before`: the coordinator leased work that cannot start yet (a
    /// prove job whose k2pow is not all done). The fencing token stays advanced, so a report
    /// under the returned lease is stale.
    pub async fn return_lease(
        &self,
        job_id: Uuid,
        worker_id: Uuid,
        fencing_token: i64,
        not_before: i64,
        now: i64,
    ) -> Result<Job, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'queued', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
             lease_expires_at = NULL, not_before = $4, updated_at = $5 \
             WHERE {HOLDS_LEASE} RETURNING {COLS}"
        ))
        .bind(job_id.to_string())
        .bind(worker_id.to_string())
        .bind(fencing_token)
        .bind(not_before)
        .bind(now)
        .fetch_optional(self.writer())
        .await
        .map_err(StoreError::map("return lease"))?;
        self.leased_row(row, job_id, worker_id, fencing_token).await
    }

    /// The row an update under the lease condition returned, or why there was none.
    async fn leased_row(
        &self,
        row: Option<AnyRow>,
        job_id: Uuid,
        worker_id: Uuid,
        fencing_token: i64,
    ) -> Result<Job, StoreError> {
        if let Some(row) = row {
            return from_row(&row);
        }
        let job = self.get_job(job_id).await?;
        let reason = if job.state != JobState::Leased {
            format!("the job is {}", job.state)
        } else if job.worker_id != Some(worker_id) {
            "the job is leased to another worker".to_owned()
        } else {
            format!(
                "the current fencing token is {}, not {fencing_token}",
                job.fencing_token
            )
        };
        Err(StoreError::StaleLease { job_id, reason })
    }

    /// Ends every lease that expired before `now`: the job is requeued while attempts remain,
    /// otherwise it fails. Returns what it did.
    pub async fn expire_leases(&self, now: i64) -> Result<Vec<ExpiredLease>, StoreError> {
        let rows = sqlx::query(
            "UPDATE jobs SET \
               state = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
               error = CASE WHEN attempts < max_attempts THEN error \
                 ELSE 'lease expired on its last attempt' END, \
               lease_expires_at = NULL, updated_at = $1 \
             WHERE state = 'leased' AND lease_expires_at < $1 \
             RETURNING id, worker_id, state",
        )
        .bind(now)
        .fetch_all(self.writer())
        .await
        .map_err(StoreError::map("expire leases"))?;
        decode_all(rows, |r| {
            Ok(ExpiredLease {
                job_id: sql::uuid(r, "id")?,
                worker_id: sql::opt_uuid(r, "worker_id")?,
                new_state: sql::text_enum(r, "state")?,
            })
        })
    }

    /// Cancels a queued or leased job (its worker's next report gets `StaleLease`). A finished
    /// job is an `InvalidTransition` conflict.
    pub async fn cancel_job(&self, job_id: Uuid, now: i64) -> Result<Job, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'cancelled', lease_expires_at = NULL, updated_at = $2 \
             WHERE id = $1 AND state IN ('queued', 'leased') RETURNING {COLS}"
        ))
        .bind(job_id.to_string())
        .bind(now)
        .fetch_optional(self.writer())
        .await
        .map_err(StoreError::map("cancel job"))?;
        self.transitioned(row, job_id, "cancel job", "cancelled").await
    }

    /// Requeues a failed or cancelled job with its attempts reset.
    pub async fn retry_job(&self, job_id: Uuid, now: i64) -> Result<Job, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'queued', attempts = 0, error = NULL, lease_expires_at = NULL, \
             not_before = 0, updated_at = $2 WHERE id = $1 AND state IN ('failed', 'cancelled') \
             RETURNING {COLS}"
        ))
        .bind(job_id.to_string())
        .bind(now)
        .fetch_optional(self.writer())
        .await
        .map_err(StoreError::map("retry job"))?;
        self.transitioned(row, job_id, "retry job", "retried").await
    }

    /// Pins a queued job to a worker (`None`: any worker may lease it).
    pub async fn assign_job(
        &self,
        job_id: Uuid,
        worker_id: Option<Uuid>,
        now: i64,
    ) -> Result<Job, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE jobs SET assigned_worker_id = $2, updated_at = $3 WHERE id = $1 AND state = 'queued' \
             RETURNING {COLS}"
        ))
        .bind(job_id.to_string())
        .bind(worker_id.map(|w| w.to_string()))
        .bind(now)
        .fetch_optional(self.writer())
        .await
        .map_err(StoreError::map("assign job"))?;
        self.transitioned(row, job_id, "assign job", "assigned").await
    }

    async fn transitioned(
        &self,
        row: Option<AnyRow>,
        job_id: Uuid,
        op: &'static str,
        verb: &str,
    ) -> Result<Job, StoreError> {
        match row {
            Some(row) => from_row(&row),
            None => {
                let job = self.get_job(job_id).await?;
                Err(StoreError::conflict(
                    op,
                    ConflictKind::InvalidTransition,
                    format!("job {job_id} is {} and cannot be {verb}", job.state),
                ))
            }
        }
    }
}
