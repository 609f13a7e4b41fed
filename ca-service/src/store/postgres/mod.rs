//! PostgreSQL store: production, several instances may share one database.
//!
//! - `tokio-postgres` + `deadpool-postgres`, no TLS (use `sslmode=disable` with a
//!   local server; Debian's default server has ssl on).
//! - Migrations are applied at connect, serialized across instances by a session
//!   advisory lock.
//! - Every write is one transaction that first takes `pg_advisory_xact_lock` on the
//!   audit-chain key, so instances extend one chain without gaps or forks
//!   (DESIGN invariant 6), then reads the head, makes the change and appends the
//!   audit entries.
//! - Every wait is bounded (DESIGN invariant 8): TCP connect, opening a pooled
//!   connection, waiting for one, a server-side `statement_timeout`, and a read
//!   deadline on the socket itself (`deadline`) for a server that stops answering
//!   altogether; all give `Unavailable` within a few seconds, and the pool replaces
//!   broken connections by itself once the server is back.
//! - `store_certificates` inserts a whole batch with one `INSERT … SELECT FROM UNNEST`
//!   and `ON CONFLICT DO NOTHING RETURNING`, so a taken serial skips that item without
//!   aborting the transaction.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Config, NoTls, Row};

use crate::audit::{AuditEntry, AuditEvent};
use crate::store::rows::*;
use crate::store::*;

mod audit;
mod cas;
mod certificates;
mod crls;
mod deadline;
mod registry;
mod reports;
mod rotations;
mod tokens;
mod updates;

// The audit-chain and certificate helpers other aggregates write with, in their transactions.
use self::audit::*;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// Advisory lock key serializing audit-chain extension (every write transaction).
/// ASCII "pkiaudit".
pub const AUDIT_CHAIN_LOCK_KEY: i64 = 0x706b_6961_7564_6974;

/// Advisory lock key serializing schema migrations across instances. ASCII "pkimigr8".
pub const MIGRATION_LOCK_KEY: i64 = 0x706b_696d_6967_7238;

/// Deadlines on every wait for the database (DESIGN invariant 8): a stopped or frozen
/// server turns into `Unavailable` (503) within a few seconds instead of callers
/// queueing up, and the pool heals by itself once the server answers again.
///
/// TCP connect, when the URL sets no `connect_timeout=`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Opening a pooled connection: TCP, startup and authentication.
const CREATE_TIMEOUT: Duration = Duration::from_secs(3);

/// Checking a pooled connection before handing it out.
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(2);

const POOL_SIZE: usize = 16;

/// How long a caller waits for a pooled connection before `Unavailable`.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(3);

/// Server-side `statement_timeout` of pooled connections: a statement that runs longer
/// is cancelled by the server (SQLSTATE 57014).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(4);

/// Statements of a bulk operation (see `PostgresStore::bulk_client`).
const BULK_STATEMENT_TIMEOUT: Duration = Duration::from_secs(600);
const BULK_TIMEOUT_SQL: &str = "SET LOCAL statement_timeout = 600000";
const _: () = assert!(BULK_STATEMENT_TIMEOUT.as_millis() == 600_000);

/// A pooled connection that has sent something and heard nothing back for this long is
/// closed (its callers get `Unavailable`): a frozen server (SIGSTOP, a hung host, a
/// silent network) enforces no `statement_timeout`. Longer than [`STATEMENT_TIMEOUT`],
/// so a live server's own cancellation arrives first.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(5);

/// The PostgreSQL implementation of [`Store`]. Cheap to clone (shared pool).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    target: String,
    /// Shared with every connection's socket (see `deadline`).
    watch: Arc<deadline::Watch>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore").field("target", &self.target).finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` (e.g. `postgres://user@127.0.0.1:5432/pki?sslmode=disable`,
    /// or the `key=value` form) and applies the migrations. An unreachable server
    /// gives `Unavailable` within the connect timeout (default 3 s).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        // The parse error never echoes the URL (which may hold a password).
        let config = Config::from_str(url)
            .map_err(|e| StoreError::Database(format!("invalid PostgreSQL connection string: {e}")))?;
        Self::connect_with_config(config).await
    }

    /// Like [`connect`](Self::connect) with an already built configuration.
    pub async fn connect_with_config(mut config: Config) -> Result<Self, StoreError> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let target = describe(&config);
        migrate(&config, &target).await?;
        // Every statement here looks rows up by key, and is prepared once per
        // connection: plan it once too. PostgreSQL's default re-plans a statement
        // whose parameters are arrays (the batched reads and writes) on every call,
        // which cost more CPU than executing it (measured with perf under est-load).
        let options = format!(
            "{} -c plan_cache_mode=force_generic_plan -c statement_timeout={}",
            config.get_options().unwrap_or_default(),
            STATEMENT_TIMEOUT.as_millis()
        );
        config.options(options.trim_start());

        let watch = Arc::new(deadline::Watch::default());
        let connect = ConnectOnRuntime { runtime: tokio::runtime::Handle::current(), watch: watch.clone() };
        let manager = Manager::from_connect(config, connect, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .create_timeout(Some(CREATE_TIMEOUT))
            .recycle_timeout(Some(RECYCLE_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Database(format!("building PostgreSQL pool: {e}")))?;
        Ok(Self { pool, target, watch })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        if self.watch.struck.swap(false, Ordering::AcqRel) {
            // A connection found the server silent: the idle ones most likely wait on
            // the same server. Closing them makes the next callers open new
            // connections (which fail within CREATE_TIMEOUT while it stays silent)
            // instead of each finding out on its own after SILENCE_TIMEOUT.
            let dropped = self.pool.retain(|_, _| false);
            tracing::warn!(database = %self.target, closed = dropped.removed.len(), "PostgreSQL went silent; closed the idle connections");
        }
        self.pool.get().await.map_err(|e| pool_err(&self.target, e))
    }

    /// A connection for a bulk operation (a whole import, a whole model revoked): its
    /// statements may run up to [`BULK_STATEMENT_TIMEOUT`] (the caller sets it in its
    /// transaction with [`BULK_TIMEOUT_SQL`]), and while it runs no connection of this
    /// store is closed for silence.
    async fn bulk_client(&self) -> Result<(deadline::Bulk, deadpool_postgres::Object), StoreError> {
        let bulk = deadline::Bulk::new(&self.watch);
        Ok((bulk, self.client().await?))
    }

    /// At most one record: `sql` as a cached statement on a pooled connection, its
    /// row mapped by `map` (one of `store::rows`' mappers).
    async fn read_opt<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        map: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg_err)?;
        client.query_opt(&stmt, params).await.map_err(pg_err)?.as_ref().map(map).transpose()
    }

    /// Every row of `sql` (a cached statement on a pooled connection), in order,
    /// mapped by `map`.
    async fn read_all<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        map: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg_err)?;
        client.query(&stmt, params).await.map_err(pg_err)?.iter().map(map).collect()
    }
}

/// Opens every pooled connection on the runtime that opened the store, and drives it
/// there. A connection's socket and I/O task belong to the runtime that created it;
/// left to deadpool, that is whichever HTTP worker first needed a connection, and
/// every later user of it waits until that (busy, single-threaded) worker gets round
/// to its I/O. Measured: EST enrollments waited 2.2 ms on average for a one-row read,
/// and 4.7 ms per group commit.
struct ConnectOnRuntime {
    runtime: tokio::runtime::Handle,
    watch: Arc<deadline::Watch>,
}

type Connecting<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
            > + Send
            + 'a,
    >,
>;

impl deadpool_postgres::Connect for ConnectOnRuntime {
    fn connect(&self, config: &Config) -> Connecting<'_> {
        let config = config.clone();
        Box::pin(async move {
            let (opening, watch) = (config.clone(), self.watch.clone());
            match self.runtime.spawn(async move { open(&opening, watch).await }).await {
                Ok(Ok((client, connection))) => Ok((client, self.runtime.spawn(drive(connection)))),
                Ok(Err(e)) => Err(e),
                // That runtime is shutting down: connect on this one, as deadpool would.
                Err(_) => {
                    let (client, connection) = open(&config, self.watch.clone()).await?;
                    Ok((client, tokio::spawn(drive(connection))))
                }
            }
        })
    }
}

type PgConnection = tokio_postgres::Connection<deadline::Socket, tokio_postgres::tls::NoTlsStream>;

/// Opens a connection over a [`deadline::Socket`]: `Config::connect`'s own socket has
/// no read deadline. Tries the hosts in order (`hostaddr=` before `host=`), each with
/// [`CONNECT_TIMEOUT`] (or the URL's `connect_timeout=`).
async fn open(
    config: &Config,
    watch: Arc<deadline::Watch>,
) -> Result<(tokio_postgres::Client, PgConnection), tokio_postgres::Error> {
    let timeout = config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT);
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no PostgreSQL host configured");
    let count = config.get_hosts().len().max(config.get_hostaddrs().len());
    for i in 0..count {
        let port = config.get_ports().get(i).or(config.get_ports().first()).copied().unwrap_or(5432);
        let attempt = async {
            if let Some(ip) = config.get_hostaddrs().get(i) {
                let stream = tokio::net::TcpStream::connect((*ip, port)).await?;
                return deadline::Socket::tcp(stream, SILENCE_TIMEOUT, watch.clone());
            }
            match config.get_hosts().get(i) {
                Some(Host::Tcp(name)) => {
                    let stream = tokio::net::TcpStream::connect((name.as_str(), port)).await?;
                    deadline::Socket::tcp(stream, SILENCE_TIMEOUT, watch.clone())
                }
                #[cfg(unix)]
                Some(Host::Unix(dir)) => {
                    let stream = tokio::net::UnixStream::connect(dir.join(format!(".s.PGSQL.{port}"))).await?;
                    Ok(deadline::Socket::unix(stream, SILENCE_TIMEOUT, watch.clone()))
                }
                None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no PostgreSQL host configured")),
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(socket)) => return config.connect_raw(socket, NoTls).await,
            Ok(Err(e)) => last = e,
            Err(_) => {
                last = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting timed out after {} s", timeout.as_secs()),
                )
            }
        }
    }
    // tokio-postgres makes its errors itself: let it report the I/O error.
    config.connect_raw(deadline::Socket::failed(last), NoTls).await
}

/// Runs a connection's I/O until it closes (deadpool aborts it when it drops the client).
async fn drive(connection: PgConnection) {
    if let Err(e) = connection.await {
        tracing::warn!(error = %e, "PostgreSQL connection closed");
    }
}

/// `host:port/dbname`, for messages (never the password).
fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// Applies the embedded migrations on a dedicated connection holding the migration lock.
async fn migrate(config: &Config, target: &str) -> Result<(), StoreError> {
    let timeout = config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT);
    let (mut client, connection) = tokio::time::timeout(timeout, config.connect(NoTls))
        .await
        .map_err(|_| StoreError::Unavailable(format!("cannot connect to PostgreSQL at {target}: timed out")))?
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL at {target}: {e}")))?;
    let conn_task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL migration connection ended with an error");
        }
    });

    let result = async {
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY]).await.map_err(pg_err)?;
        let report = embedded::migrations::runner()
            .run_async(&mut client)
            .await
            .map_err(|e| StoreError::Database(format!("applying PostgreSQL migrations to {target}: {e}")));
        // Closing the connection releases the lock anyway.
        let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]).await;
        for m in report?.applied_migrations() {
            tracing::info!(migration = %m, database = %target, "applied migration");
        }
        Ok(())
    }
    .await;
    drop(client);
    let _ = conn_task.await;
    result
}

fn pg_err(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // 08: connection exception, 57P: operator intervention (shutdown), 53: resources;
        // 57014: cancelled (our statement_timeout), 55P03: a lock not granted in time.
        // Each says "not now", and the request may well succeed again: 503, not 500.
        if code.starts_with("08")
            || code.starts_with("57P")
            || code.starts_with("53")
            || code == "57014"
            || code == "55P03"
        {
            return StoreError::Unavailable(db.to_string());
        }
        return StoreError::Database(format!("{db} (SQLSTATE {code})"));
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Database(e.to_string())
    }
}

impl Columns for Row {
    fn get<T: Column>(&self, i: usize) -> Result<T, StoreError> {
        self.try_get(i).map_err(pg_err)
    }

    fn int4(&self, i: usize) -> Result<i64, StoreError> {
        self.try_get::<_, i32>(i).map(i64::from).map_err(pg_err)
    }
}

fn pool_err(target: &str, e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => match pg_err(e) {
            StoreError::Unavailable(m) => StoreError::Unavailable(format!("PostgreSQL at {target}: {m}")),
            other => other,
        },
        PoolError::Timeout(_) => {
            StoreError::Unavailable(format!("PostgreSQL at {target}: timed out waiting for a connection"))
        }
        other => StoreError::Unavailable(format!("PostgreSQL at {target}: {other}")),
    }
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)).unwrap_or(0)
}

impl PostgresStore {
    /// A read whose plan must see its values: range filters, and filters a caller may
    /// leave out (`$n IS NULL OR …`). The pool's connections plan every statement once
    /// for any value (`force_generic_plan`, which unnamed statements obey too): that
    /// plan of the stale report filtered by batch walked 3M certificates, 7.4 s at 10M
    /// (fleet-load), where planned with the values it reads the batch's devices, 0.19 s.
    /// Here the statement is planned with its values, in a transaction of its own
    /// (`SET LOCAL`), so the connection goes back to the pool as it was. Two round
    /// trips: the prepare, then BEGIN, SET, the query and COMMIT together.
    pub(super) async fn query_planned(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        // Prepared before BEGIN, so nothing of it is sent after the COMMIT.
        let stmt = client.prepare(sql).await.map_err(pg_err)?;
        let tx = PipelinedTx::new(client);
        let (begun, set, rows, committed) = tokio::join!(
            tx.begin(),
            tx.batch_execute("SET LOCAL plan_cache_mode = force_custom_plan"),
            tx.query(&stmt, params),
            tx.commit(),
        );
        begun.map_err(pg_err)?;
        set.map_err(pg_err)?;
        let rows = rows.map_err(pg_err)?;
        committed.map_err(pg_err)?;
        tx.finished();
        Ok(rows)
    }
}

/// A transaction on a pooled connection whose BEGIN travels with its first
/// statements and whose COMMIT with its last: `tokio_postgres::Transaction` waits a
/// round trip for BEGIN on its own, and the issuance writer holds the chain lock for
/// every round trip. The caller must have prepared its statements before `begin`, so
/// nothing is sent between BEGIN and them. Dropped before [`finished`](Self::finished)
/// it rolls back, or, with no runtime to do that on, closes the connection.
struct PipelinedTx {
    client: Option<deadpool_postgres::Client>,
}

impl PipelinedTx {
    fn new(client: deadpool_postgres::Client) -> Self {
        Self { client: Some(client) }
    }

    fn begin(&self) -> impl std::future::Future<Output = Result<(), tokio_postgres::Error>> + '_ {
        self.batch_execute("BEGIN")
    }

    /// COMMIT; on an aborted transaction the server answers it with a rollback, so
    /// the statements joined before it must be checked too.
    fn commit(&self) -> impl std::future::Future<Output = Result<(), tokio_postgres::Error>> + '_ {
        self.batch_execute("COMMIT")
    }

    /// The transaction is over: the connection goes back to the pool as it is.
    fn finished(mut self) {
        self.client.take();
    }
}

impl std::ops::Deref for PipelinedTx {
    type Target = deadpool_postgres::Client;

    fn deref(&self) -> &Self::Target {
        // Only `finished` and `drop` take the client, and both consume the guard.
        self.client.as_ref().unwrap_or_else(|| unreachable!("PipelinedTx used after it finished"))
    }
}

impl Drop for PipelinedTx {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        // Never back into the pool in an unknown state.
                        drop(deadpool_postgres::Object::take(client));
                    }
                });
            }
            Err(_) => drop(deadpool_postgres::Object::take(client)),
        }
    }
}

#[async_trait]
impl Readiness for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(pg_err)?;
        Ok(())
    }

    fn pool(&self) -> Option<PoolUse> {
        let s = self.pool.status();
        Some(PoolUse {
            idle: s.available,
            in_use: s.size.saturating_sub(s.available),
            max: s.max_size,
            waiting: s.waiting,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_cache_mode(rows: Vec<Row>) -> String {
        rows[0].get(0)
    }

    /// The pool plans every statement once for any value, unnamed ones too — the
    /// path the reports and the revocation watch took, which fleet-load caught at 10M
    /// (docs/0016); `query_planned` runs its statement planned with its values and
    /// leaves the connection as it found it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn query_planned_plans_with_the_values_and_leaves_the_pool_generic() {
        let db = crate::store::suite::TestDatabase::create().await;
        let store = PostgresStore::connect_with_config(db.config.clone()).await.unwrap();
        let sql = "SELECT current_setting('plan_cache_mode')";
        let client = store.client().await.unwrap();
        assert_eq!(plan_cache_mode(client.query(sql, &[]).await.unwrap()), "force_generic_plan", "unnamed");
        drop(client);
        assert_eq!(plan_cache_mode(store.query_planned(sql, &[]).await.unwrap()), "force_custom_plan");
        // The pool's connections, the one query_planned used among them, are as before.
        let clients = [store.client().await.unwrap(), store.client().await.unwrap()];
        for client in &clients {
            assert_eq!(plan_cache_mode(client.query(sql, &[]).await.unwrap()), "force_generic_plan", "after");
        }
    }

    /// A statement the server cancels at its `statement_timeout`, or a lock not granted
    /// in time, is the store unavailable for now (503, as the README's table of
    /// deadlines says), not a database error (500).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_statement_that_times_out_is_unavailable() {
        let db = crate::store::suite::TestDatabase::create().await;
        let store = PostgresStore::connect_with_config(db.config.clone()).await.unwrap();
        // Another session holds the devices table, so the read waits until the server
        // cancels it.
        let holder = store.client().await.unwrap();
        holder.batch_execute("BEGIN; LOCK TABLE devices IN ACCESS EXCLUSIVE MODE").await.unwrap();
        let started = std::time::Instant::now();
        let err = store.get_device("dev-1").await.unwrap_err();
        let waited = started.elapsed();
        holder.batch_execute("ROLLBACK").await.unwrap();
        assert!(matches!(err, StoreError::Unavailable(ref m) if m.contains("statement timeout")), "{err:?}");
        assert!(waited >= STATEMENT_TIMEOUT && waited < STATEMENT_TIMEOUT * 2, "{waited:?}");
        let lock = "DO $$ BEGIN RAISE EXCEPTION 'lock not granted' USING ERRCODE = '55P03'; END $$";
        let err = pg_err(holder.batch_execute(lock).await.unwrap_err());
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        // A mistake in a statement stays a database error.
        let err = pg_err(holder.batch_execute("SELECT no_such_column FROM devices").await.unwrap_err());
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    }
}
