//! The single-coordinator lock: one coordinator process per database, so that no identity is ever
//! served by two processes (conventions item 10).
//!
//! SQLite: an exclusive `flock` on `<database file>.lock`, which holds the holder's pid and host.
//! The file is never deleted (deleting it would let a second process lock a fresh inode while the
//! first still holds the old one). PostgreSQL: `pg_try_advisory_lock(LOCK_KEY)` on a dedicated
//! connection held for the life of the store; the server releases it when that session ends.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

use super::error::StoreError;

/// The advisory-lock key of the coordinator lock: the bytes of "smeshflt".
pub const PG_LOCK_KEY: i64 = 0x736d_6573_6866_6c74;

/// Holds the coordinator lock until dropped (or released).
pub(crate) enum CoordinatorLock {
    File {
        file: File,
        path: PathBuf,
    },
    Postgres {
        conn: tokio::sync::Mutex<PgConnection>,
        target: String,
    },
}

impl std::fmt::Debug for CoordinatorLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoordinatorLock::File { path, .. } => write!(f, "CoordinatorLock::File({})", path.display()),
            CoordinatorLock::Postgres { target, .. } => write!(f, "CoordinatorLock::Postgres({target})"),
        }
    }
}

/// `<db>.lock` next to the database file.
pub(crate) fn lock_path_for(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

fn holder_line() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("pid={} host={host} since_unix_ms={since}", std::process::id())
}

pub(crate) fn acquire_file(db: &Path) -> Result<CoordinatorLock, StoreError> {
    let path = lock_path_for(db);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::LockFailed {
            step: "open lock file",
            detail: format!("{}: {e}", path.display()),
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "holder unknown"
            } else {
                holder
            };
            return Err(StoreError::Locked {
                by: format!(
                    "the lock file {} is held by another process ({holder}); stop that coordinator \
                     first, or give this one another data directory",
                    path.display()
                ),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(StoreError::LockFailed {
                step: "lock the lock file",
                detail: format!("{}: {e}", path.display()),
            })
        }
    }
    // Who holds it, for the message a second coordinator prints. Best effort: the lock is the flock.
    let line = holder_line();
    let _ = file
        .set_len(0)
        .and_then(|()| file.write_all_at(format!("{line}\n").as_bytes(), 0));
    Ok(CoordinatorLock::File { file, path })
}

pub(crate) async fn acquire_postgres(url: &str, target: &str) -> Result<CoordinatorLock, StoreError> {
    let opts = PgConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl {
        url: super::redact_url(url),
        reason: e.to_string(),
    })?;
    let app = format!("smeshfleet-coordinator {}", holder_line());
    let opts = opts.application_name(&app[..app.len().min(63)]);
    let mut conn = PgConnection::connect_with(&opts)
        .await
        .map_err(|e| StoreError::Connect {
            target: target.to_owned(),
            source: e,
        })?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(PG_LOCK_KEY)
        .fetch_one(&mut conn)
        .await
        .map_err(StoreError::map("take the coordinator advisory lock"))?;
    if got {
        return Ok(CoordinatorLock::Postgres {
            conn: tokio::sync::Mutex::new(conn),
            target: target.to_owned(),
        });
    }
    let holder = describe_pg_holder(&mut conn).await;
    let _ = conn.close().await;
    Err(StoreError::Locked {
        by: format!(
            "the coordinator lock (advisory lock {PG_LOCK_KEY}) on {target} is held by {holder}; \
             stop that coordinator first"
        ),
    })
}

async fn describe_pg_holder(conn: &mut PgConnection) -> String {
    let row: Result<Option<(i64, String, String)>, sqlx::Error> = sqlx::query_as(
        "SELECT a.pid::bigint, COALESCE(a.application_name, ''), \
                COALESCE(host(a.client_addr), 'a local socket') \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND l.classid::bigint = $1 AND l.objid::bigint = $2 \
         LIMIT 1",
    )
    .bind(PG_LOCK_KEY >> 32)
    .bind(PG_LOCK_KEY & 0xffff_ffff)
    .fetch_optional(conn)
    .await;
    match row {
        Ok(Some((pid, app, addr))) if !app.is_empty() => {
            format!("server backend {pid} ('{app}', connected from {addr})")
        }
        Ok(Some((pid, _, addr))) => format!("server backend {pid} (connected from {addr})"),
        _ => "another session".to_owned(),
    }
}

impl CoordinatorLock {
    /// Fails when the lock may have been lost: the lock file was removed or replaced, or the
    /// PostgreSQL session that holds the advisory lock is gone.
    pub(crate) async fn ensure_held(&self) -> Result<(), StoreError> {
        match self {
            CoordinatorLock::File { file, path } => {
                let ours = file.metadata().map_err(|e| StoreError::LockFailed {
                    step: "check lock file",
                    detail: format!("{}: {e}", path.display()),
                })?;
                match std::fs::metadata(path) {
                    Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => Ok(()),
                    _ => Err(StoreError::LockFailed {
                        step: "check lock file",
                        detail: format!(
                            "{} was removed or replaced: another coordinator could start",
                            path.display()
                        ),
                    }),
                }
            }
            CoordinatorLock::Postgres { conn, target } => {
                let mut conn = conn.lock().await;
                let held: Result<bool, sqlx::Error> = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
                       AND pid = pg_backend_pid() AND objsubid = 1 \
                       AND classid::bigint = $1 AND objid::bigint = $2)",
                )
                .bind(PG_LOCK_KEY >> 32)
                .bind(PG_LOCK_KEY & 0xffff_ffff)
                .fetch_one(&mut *conn)
                .await;
                match held {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(StoreError::LockFailed {
                        step: "check advisory lock",
                        detail: format!("the coordinator lock on {target} is no longer held"),
                    }),
                    Err(e) => Err(StoreError::LockFailed {
                        step: "check advisory lock",
                        detail: format!("the lock session to {target} is lost: {e}"),
                    }),
                }
            }
        }
    }

    /// Releases the lock now (dropping it releases it too).
    pub(crate) async fn release(self) {
        match self {
            CoordinatorLock::File { file, .. } => {
                let _ = file.unlock();
            }
            CoordinatorLock::Postgres { conn, .. } => {
                let mut conn = conn.into_inner();
                let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(PG_LOCK_KEY)
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            }
        }
    }
}
