//! SQLite store: the embedded default.
//!
//! - WAL journal with `synchronous=FULL`: a commit is on disk before it is
//!   acknowledged (DESIGN invariant 1; WAL + `NORMAL` can lose the last commits on
//!   power loss).
//! - One writer connection behind a mutex; every write is a `BEGIN IMMEDIATE`
//!   transaction, which also serializes the audit chain against other processes
//!   opening the same file.
//! - Readers use their own read-only connections (a small pool), so reads never wait
//!   for the writer.
//! - Every rusqlite call runs under `tokio::task::spawn_blocking`; the async runtime is
//!   never blocked. [`SqliteStore::open`] itself is synchronous (startup).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, Row, Transaction, TransactionBehavior};

use crate::audit::{AuditEntry, AuditEvent};
use crate::store::rows::*;
use crate::store::*;

mod audit;
mod cas;
mod certificates;
mod crls;
mod files;
mod registry;
mod reports;
mod rotations;
mod tokens;
mod updates;

pub(crate) use self::files::create_private_dir;
pub use self::files::ServeLock;

// The audit-chain and certificate helpers other aggregates write with, in their transactions.
use self::{audit::*, certificates::*};

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// How long a connection waits for a lock held by another connection or process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle reader connections kept open.
const MAX_IDLE_READERS: usize = 4;

/// The SQLite implementation of [`Store`]. Cheap to clone (shared connections).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed, `0600`; its directory must exist) the database file at
    /// `path`, checks it (`PRAGMA quick_check`: a damaged file is refused with
    /// [`StoreError::Corrupt`]) and applies the embedded migrations. Blocking: call at
    /// startup or inside `spawn_blocking`. The path must be a file (not `:memory:`):
    /// readers use their own connections.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        files::prepare(&path)?;
        let mut writer = Connection::open(&path).map_err(|e| open_err(&path, e))?;
        writer.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| {
            if files::is_corruption(&e) {
                files::corrupt(&path, e)
            } else {
                db_err(e)
            }
        })?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!(
                "cannot enable WAL journal on {} (journal mode is '{mode}')",
                path.display()
            )));
        }
        writer.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(db_err)?;
        files::quick_check(&writer, &path)?;
        embedded::migrations::runner()
            .run(&mut writer)
            .map_err(|e| StoreError::Database(format!("applying SQLite migrations to {}: {e}", path.display())))?;

        let inner = Inner { path, writer: Mutex::new(writer), readers: Mutex::new(Vec::new()) };
        // Open one reader now so that a database readers cannot open fails at startup.
        let reader = inner.open_reader()?;
        lock(&inner.readers).push(reader);
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction on the writer connection and
    /// commits if it returns `Ok`; any error rolls everything back.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
            let out = f(&tx)?;
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
        .await
    }

    /// Runs `f` on a reader connection.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let idle = lock(&inner.readers).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => inner.open_reader()?,
            };
            let out = f(&conn);
            let mut readers = lock(&inner.readers);
            if readers.len() < MAX_IDLE_READERS {
                readers.push(conn);
            }
            out
        })
        .await
    }
}

/// Prepared statements each reader connection keeps.
const READER_STATEMENT_CACHE: usize = 64;

impl Inner {
    fn open_reader(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| open_err(&self.path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
        conn.execute_batch("PRAGMA query_only = ON;").map_err(db_err)?;
        // Room for every statement the readers prepare (the console's searches and
        // filters add a score to the hot paths' dozen): rusqlite's default is 16, and
        // an evicted OCSP or EST statement would be prepared again on its next use.
        conn.set_prepared_statement_cache_capacity(READER_STATEMENT_CACHE);
        Ok(conn)
    }
}

/// A mutex guard even if a previous holder panicked: the connection is still sound
/// because an unfinished transaction rolls back when it is dropped.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Database(format!("storage task failed: {e}")))?
}

fn open_err(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot open SQLite database {}: {e}", path.display()))
}

fn db_err(e: rusqlite::Error) -> StoreError {
    if files::is_corruption(&e) {
        // Not a request's fault, and no request can succeed: 503, as for an outage.
        return StoreError::Unavailable(format!("the SQLite database is damaged: {e}"));
    }
    match &e {
        rusqlite::Error::SqliteFailure(err, _)
            if matches!(err.code, ErrorCode::CannotOpen | ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Runs a query and maps every row with `f`.
impl Columns for Row<'_> {
    fn get<T: Column>(&self, i: usize) -> Result<T, StoreError> {
        Row::get(self, i).map_err(db_err)
    }

    fn int4(&self, i: usize) -> Result<i64, StoreError> {
        Row::get(self, i).map_err(db_err)
    }
}

fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = stmt.query(params).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(f(row)?);
    }
    Ok(out)
}

#[async_trait]
impl Readiness for SqliteStore {
    /// A fresh connection reads the schema and each table's first and last row
    /// (`files::probe`): a damaged database is not ready.
    async fn ping(&self) -> Result<(), StoreError> {
        let path = self.inner.path.clone();
        blocking(move || files::probe(&path)).await
    }
}
