//! The store's one error type and its classification.
//!
//! Callers decide by [`StoreError::kind`]: `Retryable` (the database is busy, unreachable or asked us
//! to retry a transaction: try again later), `Conflict` (a constraint or a compare-and-set failed:
//! the API answers 409), `NotFound`, `StaleLease` (a worker's fencing token is no longer current:
//! the worker must drop the job), `Locked` (another coordinator owns the database), `Invalid`
//! (the caller passed something the store refuses) and `Permanent` (anything else: do not retry).

use std::fmt;

use uuid::Uuid;

/// What kind of conflict a [`StoreError::Conflict`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// A unique constraint: the name, node id, hash or active job key already exists.
    Duplicate,
    /// A foreign key: the referenced row does not exist, or the row is still referenced.
    ForeignKey,
    /// A NOT NULL or CHECK constraint of the schema refused the values.
    Constraint,
    /// A compare-and-set lost: the row's state is no longer the one the caller expected.
    StateChanged,
    /// The requested transition is not allowed from the row's current state.
    InvalidTransition,
    /// An init range overlaps a range already recorded, without being contained in it.
    Overlap,
}

impl ConflictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::Duplicate => "duplicate",
            ConflictKind::ForeignKey => "foreign_key",
            ConflictKind::Constraint => "constraint",
            ConflictKind::StateChanged => "state_changed",
            ConflictKind::InvalidTransition => "invalid_transition",
            ConflictKind::Overlap => "overlap",
        }
    }
}

impl fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a join token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinTokenRejection {
    /// No join token has this hash.
    Unknown,
    /// The token was already used once.
    AlreadyUsed,
    /// The token's expiry has passed.
    Expired,
}

impl fmt::Display for JoinTokenRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinTokenRejection::Unknown => "unknown join token",
            JoinTokenRejection::AlreadyUsed => "join token already used",
            JoinTokenRejection::Expired => "join token expired",
        })
    }
}

/// The coarse class of a [`StoreError`]: what the caller should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Transient: busy database, lost connection, pool exhausted, serialization failure.
    Retryable,
    /// A constraint or compare-and-set refused the change (HTTP 409).
    Conflict,
    NotFound,
    /// The caller's lease on a job is gone (expired, re-leased, cancelled, finished).
    StaleLease,
    /// A join token was unknown, used or expired.
    Rejected,
    /// Another coordinator holds the database, or this one lost its lock.
    Locked,
    /// The caller passed a value the store refuses.
    Invalid,
    /// Do not retry: a bug, a corrupt row, a schema mismatch.
    Permanent,
}

/// Every failure of the store. Variants name the step that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("bad database URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },

    #[error("preparing the database directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("connecting to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },

    #[error("migrating {target}: {source}")]
    Migrate {
        target: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// Another coordinator holds the single-coordinator lock of this database.
    #[error("another smeshfleet coordinator is using this database: {by}")]
    Locked { by: String },

    /// Taking or checking the coordinator lock failed (I/O on the lock file, or the lock
    /// connection to PostgreSQL is gone).
    #[error("coordinator lock ({step}): {detail}")]
    LockFailed { step: &'static str, detail: String },

    #[error("{what} {key} not found")]
    NotFound { what: &'static str, key: String },

    /// A constraint or a compare-and-set refused the change.
    #[error("{op}: conflict ({kind}): {detail}")]
    Conflict {
        op: &'static str,
        kind: ConflictKind,
        detail: String,
    },

    /// The worker does not hold the lease on the job under this fencing token (any more).
    /// Nothing was changed.
    #[error("stale lease on job {job_id}: {reason}")]
    StaleLease { job_id: Uuid, reason: String },

    #[error("{reason}")]
    JoinTokenRejected { reason: JoinTokenRejection },

    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    /// Transient database failure; the operation had no effect and may be retried.
    #[error("{op}: database unavailable, retry later: {source}")]
    Unavailable {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },

    #[error("{op}: database error: {source}")]
    Database {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },

    #[error("stored {what} is corrupt: {reason}")]
    Corrupt { what: &'static str, reason: String },
}

impl StoreError {
    /// What the caller should do about this error.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::BadUrl { .. } | StoreError::Invalid { .. } => StoreErrorKind::Invalid,
            StoreError::DataDir { .. } | StoreError::Migrate { .. } | StoreError::Corrupt { .. } => {
                StoreErrorKind::Permanent
            }
            StoreError::Connect { source, .. } => {
                if is_transient(source) {
                    StoreErrorKind::Retryable
                } else {
                    StoreErrorKind::Permanent
                }
            }
            StoreError::Locked { .. } | StoreError::LockFailed { .. } => StoreErrorKind::Locked,
            StoreError::NotFound { .. } => StoreErrorKind::NotFound,
            StoreError::Conflict { .. } => StoreErrorKind::Conflict,
            StoreError::StaleLease { .. } => StoreErrorKind::StaleLease,
            StoreError::JoinTokenRejected { .. } => StoreErrorKind::Rejected,
            StoreError::Unavailable { .. } => StoreErrorKind::Retryable,
            StoreError::Database { .. } => StoreErrorKind::Permanent,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind() == StoreErrorKind::Retryable
    }

    pub fn is_conflict(&self) -> bool {
        self.kind() == StoreErrorKind::Conflict
    }

    pub fn is_not_found(&self) -> bool {
        self.kind() == StoreErrorKind::NotFound
    }

    /// The conflict kind, when this is a [`StoreError::Conflict`].
    pub fn conflict_kind(&self) -> Option<ConflictKind> {
        match self {
            StoreError::Conflict { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub(crate) fn not_found(what: &'static str, key: impl fmt::Display) -> Self {
        StoreError::NotFound {
            what,
            key: key.to_string(),
        }
    }

    pub(crate) fn conflict(op: &'static str, kind: ConflictKind, detail: impl Into<String>) -> Self {
        StoreError::Conflict {
            op,
            kind,
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(what: &'static str, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            what,
            reason: reason.into(),
        }
    }

    /// Classifies a driver error of operation `op`.
    pub(crate) fn db(op: &'static str, err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &err {
            use sqlx::error::ErrorKind;
            let kind = match d.kind() {
                ErrorKind::UniqueViolation => Some(ConflictKind::Duplicate),
                ErrorKind::ForeignKeyViolation => Some(ConflictKind::ForeignKey),
                ErrorKind::NotNullViolation | ErrorKind::CheckViolation => Some(ConflictKind::Constraint),
                _ => None,
            };
            if let Some(kind) = kind {
                let detail = describe_constraint(d.constraint(), d.message(), kind);
                return StoreError::Conflict { op, kind, detail };
            }
        }
        if is_transient(&err) {
            StoreError::Unavailable { op, source: err }
        } else {
            StoreError::Database { op, source: err }
        }
    }

    /// A closure for `map_err`.
    pub(crate) fn map(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |e| StoreError::db(op, e)
    }
}

/// Whether a driver error is transient: retrying the whole operation later may succeed.
pub(crate) fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let Some(code) = d.code() else { return false };
            // SQLite: extended result code; the primary code is the low byte. BUSY = 5, LOCKED = 6.
            if let Ok(n) = code.parse::<i64>() {
                return matches!(n & 0xff, 5 | 6);
            }
            // PostgreSQL SQLSTATE: serialization failure, deadlock, lock not available, connection
            // exceptions (08), insufficient resources (53), operator intervention (57P01..57P03).
            matches!(&*code, "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03")
                || code.starts_with("08")
                || code.starts_with("53")
        }
        _ => false,
    }
}

/// A human description of a constraint violation that names the field, not the database's words.
fn describe_constraint(constraint: Option<&str>, message: &str, kind: ConflictKind) -> String {
    // PostgreSQL reports the constraint's name, SQLite names `table.column` in the message.
    const KNOWN: &[(&str, &str, &str)] = &[
        (
            "identities_name_key",
            "identities.name",
            "an identity with this name already exists",
        ),
        (
            "identities_node_id_key",
            "identities.node_id",
            "an identity with this node id already exists",
        ),
        (
            "workers_credential_hash_key",
            "workers.credential_hash",
            "this worker credential is already registered",
        ),
        (
            "api_tokens_token_hash_key",
            "api_tokens.token_hash",
            "an API token with this hash already exists",
        ),
        (
            "join_tokens_token_hash_key",
            "join_tokens.token_hash",
            "a join token with this hash already exists",
        ),
        (
            "jobs_active_key",
            "jobs.job_key",
            "an active job with this key already exists",
        ),
        (
            "identity_files_pkey",
            "identity_files.identity_id",
            "this file placement already exists",
        ),
    ];
    for (pg, sqlite, text) in KNOWN {
        if constraint == Some(*pg) || message.contains(sqlite) {
            return (*text).to_owned();
        }
    }
    match kind {
        ConflictKind::ForeignKey => {
            "a referenced row does not exist, or the row is still referenced".to_owned()
        }
        ConflictKind::Duplicate => match constraint {
            Some(c) => format!("a unique constraint ({c}) refused the value"),
            None => "a unique constraint refused the value".to_owned(),
        },
        _ => match constraint {
            Some(c) => format!("the schema's constraint {c} refused the value"),
            None => "the schema refused the value".to_owned(),
        },
    }
}
