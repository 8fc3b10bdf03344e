//! The coordinator's durable store: identities and where their data lives, init progress, workers
//! and join tokens, jobs with leases and fencing tokens, API tokens, the event log, and the safety
//! database that answers Safe or NotSafe before an ATX is signed.
//!
//! One [`Store`] over two backends: SQLite (the default, one file in the data directory) and
//! PostgreSQL (at scale). Queries are plain runtime SQL through `sqlx::Any`, written once with `$n`
//! placeholders; the few dialect differences (row locks, write transactions) are chosen by
//! [`Backend`]. The schema lives in `migrations/sqlite` and `migrations/postgres` (forward-only)
//! and is applied on connect.
//!
//! Write transactions: SQLite takes the write lock up front (`BEGIN IMMEDIATE`), so concurrent
//! writers queue on `busy_timeout` instead of failing on a lock upgrade; PostgreSQL runs at READ
//! COMMITTED with explicit row locks (`FOR NO KEY UPDATE`, `SKIP LOCKED` for leasing) and unique
//! constraints as the last word.
//!
//! A coordinator opens the store with [`Store::connect_exclusive`] (or
//! [`Store::open_in_data_dir`]): the store then holds the single-coordinator lock for as long as
//! any clone of it lives. Tools and tests may use [`Store::connect`], which takes no lock.
//!
//! Every operation takes `now` (unix milliseconds) from the caller, so that time is testable.

mod builder;
mod error;
mod events;
mod fleet;
mod identities;
mod jobs;
mod lock;
mod progress;
mod proofs;
mod safety;
mod sql;
mod stream;
mod tokens;
mod types;
mod workers;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Transaction};

pub use builder::{PoetRegistrationOutcome, PoetRegistrationRecord, StoredChallenge};
pub use error::{ConflictKind, JoinTokenRejection, StoreError, StoreErrorKind};
pub use lock::PG_LOCK_KEY;
pub use progress::DiskFullOutcome;
pub use proofs::{NewProvingRequest, ProvingRequest, StoredProof};

/// 64 hex digits (a challenge, an id) to 32 bytes.
pub fn parse_challenge(s: &str) -> Option<[u8; 32]> {
    sql::parse_hex32(s)
}
pub use safety::{AtxSigning, BallotSigning};
pub use stream::StreamGrantRecord;
pub use types::*;

use lock::CoordinatorLock;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// The file name of the SQLite database inside a data directory.
pub const SQLITE_FILE_NAME: &str = "state.db";

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Connection settings beyond the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size; default 8 (SQLite) or 16 (PostgreSQL). An in-memory SQLite database always uses 1.
    pub max_connections: Option<u32>,
    /// How long an operation waits for a free connection before failing as retryable.
    pub acquire_timeout: Duration,
    /// SQLite: how long a writer waits for the database's write lock.
    pub busy_timeout: Duration,
    /// Take the single-coordinator lock.
    pub exclusive: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: None,
            acquire_timeout: Duration::from_secs(30),
            busy_timeout: Duration::from_secs(15),
            exclusive: false,
        }
    }
}

/// The durable store. Cheap to clone; all clones share one pool (and the coordinator lock, which
/// is released when the last clone is dropped or on [`Store::close`]).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: AnyPool,
    /// SQLite: the one connection that writes (see [`Store::writer`]).
    writer: Option<AnyPool>,
    backend: Backend,
    target: String,
    lock: Option<CoordinatorLock>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .field("target", &self.inner.target)
            .field("exclusive", &self.inner.lock.is_some())
            .finish()
    }
}

impl Store {
    /// Opens `url` (`sqlite:///path/state.db?mode=rwc`, `sqlite::memory:`,
    /// `postgres://user@host/db`) and applies pending migrations, without the coordinator lock.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, &StoreOptions::default()).await
    }

    /// Like [`Store::connect`], but first takes the single-coordinator lock; a second coordinator
    /// on the same database gets [`StoreError::Locked`] saying who holds it.
    pub async fn connect_exclusive(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(
            url,
            &StoreOptions {
                exclusive: true,
                ..StoreOptions::default()
            },
        )
        .await
    }

    /// The default store: SQLite `state.db` in `dir` (created if missing), exclusive.
    pub async fn open_in_data_dir(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::DataDir {
            path: dir.display().to_string(),
            source: e,
        })?;
        Store::connect_exclusive(&Store::sqlite_url(&dir.join(SQLITE_FILE_NAME))).await
    }

    /// The URL of a SQLite database file, created if missing.
    pub fn sqlite_url(path: &Path) -> String {
        let mut enc = String::new();
        for b in path.as_os_str().as_encoded_bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'-' | b'~' => {
                    enc.push(char::from(*b))
                }
                _ => enc.push_str(&format!("%{b:02X}")),
            }
        }
        format!("sqlite://{enc}?mode=rwc")
    }

    pub async fn connect_with(url: &str, opts: &StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, target, sqlite_file, in_memory) = parse_url(url)?;

        // Lock first: a refused coordinator must not touch the schema.
        let lock = if opts.exclusive {
            match (backend, &sqlite_file) {
                (Backend::Sqlite, Some(file)) => Some(lock::acquire_file(file)?),
                (Backend::Sqlite, None) => None, // in-memory: private to this process anyway
                (Backend::Postgres, _) => Some(lock::acquire_postgres(url, &target).await?),
            }
        } else {
            None
        };

        let max = if in_memory {
            1
        } else {
            opts.max_connections.unwrap_or(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
        };
        let busy_ms = opts.busy_timeout.as_millis();
        let acquire_timeout = opts.acquire_timeout;
        let pool_options = |max: u32| {
            let mut pool_opts = AnyPoolOptions::new()
                .max_connections(max.max(1))
                .acquire_timeout(acquire_timeout);
            if in_memory {
                // Every new connection would be a new empty database: keep the one forever.
                pool_opts = pool_opts.min_connections(1).idle_timeout(None).max_lifetime(None);
            }
            if backend == Backend::Sqlite {
                pool_opts = pool_opts.after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        conn.execute(format!("PRAGMA busy_timeout = {busy_ms}").as_str())
                            .await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        Ok(())
                    })
                });
            }
            pool_opts
        };
        let pool = pool_options(max)
            .connect(url)
            .await
            .map_err(|e| StoreError::Connect {
                target: target.clone(),
                source: e,
            })?;
        // SQLite has one writer at a time: give writes their own one-connection pool (see
        // `Store::writer`). An in-memory database has a single connection already.
        let writer = if backend == Backend::Sqlite && !in_memory {
            Some(
                pool_options(1)
                    .connect(url)
                    .await
                    .map_err(|e| StoreError::Connect {
                        target: target.clone(),
                        source: e,
                    })?,
            )
        } else {
            None
        };

        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        // Two processes migrating a fresh SQLite file at once: the loser fails on "table exists";
        // its second attempt sees the migration applied. PostgreSQL serialises with a lock.
        let mut attempt = 0;
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                Err(e) if attempt < 2 && backend == Backend::Sqlite => {
                    tracing::debug!(error = %e, "store: migration attempt failed, retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    pool.close().await;
                    if let Some(w) = &writer {
                        w.close().await;
                    }
                    return Err(StoreError::Migrate { target, source: e });
                }
            }
        }
        tracing::info!(target = %target, exclusive = lock.is_some(), "store: opened");
        Ok(Store {
            inner: Arc::new(Inner {
                pool,
                writer,
                backend,
                target,
                lock,
            }),
        })
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The database in words, without credentials ("SQLite database /x/state.db").
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// Whether this store holds the single-coordinator lock.
    pub fn is_exclusive(&self) -> bool {
        self.inner.lock.is_some()
    }

    /// Fails with [`StoreErrorKind::Locked`] when this store was opened exclusive and its lock
    /// may be lost (lock file replaced, PostgreSQL lock session gone): the coordinator must stop.
    /// Call it periodically. A store opened without the lock always passes.
    pub async fn ensure_lock_held(&self) -> Result<(), StoreError> {
        match &self.inner.lock {
            Some(l) => l.ensure_held().await,
            None => Ok(()),
        }
    }

    /// Closes the pool and releases the coordinator lock now, when this is the last clone
    /// (otherwise only drops this handle).
    pub async fn close(self) {
        if let Ok(inner) = Arc::try_unwrap(self.inner) {
            inner.pool.close().await;
            if let Some(w) = &inner.writer {
                w.close().await;
            }
            if let Some(lock) = inner.lock {
                lock.release().await;
            }
        }
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    /// Where statements that write go. On SQLite a pool of one connection: writers queue here
    /// (fair, asynchronous) instead of in SQLite's busy handler, which sleeps in steps of up to
    /// 100 ms and turned a busy coordinator's write latency into hundreds of milliseconds. On
    /// PostgreSQL the one pool.
    pub(crate) fn writer(&self) -> &AnyPool {
        self.inner.writer.as_ref().unwrap_or(&self.inner.pool)
    }

    /// A transaction that will write: on SQLite it holds the write lock from its first statement.
    pub(crate) async fn begin_write(
        &self,
        op: &'static str,
    ) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.inner.backend {
            Backend::Sqlite => self.writer().begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.inner.pool.begin().await,
        };
        tx.map_err(StoreError::map(op))
    }

    /// ` FOR NO KEY UPDATE` on PostgreSQL (rows read in a write transaction are locked against
    /// other writers, but not against foreign-key checks of inserts that reference them); nothing
    /// on SQLite, whose write transaction already excludes other writers.
    pub(crate) fn for_update(&self) -> &'static str {
        match self.inner.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR NO KEY UPDATE",
        }
    }
}

/// Every row decoded by `f`.
pub(crate) fn decode_all<T>(
    rows: Vec<AnyRow>,
    f: impl Fn(&AnyRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}

/// (backend, target description, SQLite file, in-memory)
fn parse_url(url: &str) -> Result<(Backend, String, Option<PathBuf>, bool), StoreError> {
    if url.starts_with("sqlite:") {
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if in_memory {
            return Ok((
                Backend::Sqlite,
                "in-memory SQLite database".to_owned(),
                None,
                true,
            ));
        }
        let file = opts.get_filename().to_path_buf();
        if file.as_os_str().is_empty() {
            return Err(StoreError::BadUrl {
                url: url.to_owned(),
                reason: "no database file".to_owned(),
            });
        }
        Ok((
            Backend::Sqlite,
            format!("SQLite database {}", file.display()),
            Some(file),
            false,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let opts = sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl {
            url: redact_url(url),
            reason: e.to_string(),
        })?;
        let db = opts.get_database().unwrap_or("(default)");
        let target = match opts.get_socket() {
            Some(dir) => format!("PostgreSQL database {db} via {}", dir.display()),
            None => format!(
                "PostgreSQL database {db} on {}:{}",
                opts.get_host(),
                opts.get_port()
            ),
        };
        Ok((Backend::Postgres, target, None, false))
    } else {
        Err(StoreError::BadUrl {
            url: redact_url(url),
            reason: "expected sqlite:... or postgres://...".to_owned(),
        })
    }
}

/// The URL without a password.
pub(crate) fn redact_url(url: &str) -> String {
    // scheme://user:password@host... -> scheme://user:***@host...
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        let authority = &rest[..end];
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}{}", &rest[end..]);
            }
        }
    }
    url.to_owned()
}
