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
//! - `store_certificates` inserts a whole batch with one `INSERT … SELECT FROM UNNEST`
//!   and `ON CONFLICT DO NOTHING RETURNING`, so a taken serial skips that item without
//!   aborting the transaction.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;
use tokio_postgres::{Config, NoTls, Row};

use super::{
    effect_refusal, split_list, ApiToken, CaRecord, CertRecord, CertStatus, CertificateKey, DeviceRecord, DeviceState,
    EnrollmentContext, EnrollmentLookup, EnrollmentRequest, Issuance, IssuanceEffect, IssuanceOutcome, RequestStatus,
    Role, StationRecord, Store, StoreError, UpdateRequest,
};
use super::{CrlHead, DeviceSelector, JobLock, PublishedCrl};
use crate::audit::{self, AuditEntry, AuditEvent, GENESIS_HASH};

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// Advisory lock key serializing audit-chain extension (every write transaction).
/// ASCII "pkiaudit".
pub const AUDIT_CHAIN_LOCK_KEY: i64 = 0x706b_6961_7564_6974;
/// Advisory lock key serializing schema migrations across instances. ASCII "pkimigr8".
pub const MIGRATION_LOCK_KEY: i64 = 0x706b_696d_6967_7238;

/// Default TCP connect timeout when the URL sets none (`connect_timeout=`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const POOL_SIZE: usize = 16;
/// How long a caller waits for a pooled connection before `Unavailable`.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The PostgreSQL implementation of [`Store`]. Cheap to clone (shared pool).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    target: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore").field("target", &self.target).finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` (e.g. `postgres://user@127.0.0.1:5432/pki?sslmode=disable`,
    /// or the `key=value` form) and applies the migrations. An unreachable server
    /// gives `Unavailable` within the connect timeout (default 5 s).
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
        let options = format!("{} -c plan_cache_mode=force_generic_plan", config.get_options().unwrap_or_default());
        config.options(options.trim_start());

        let connect = ConnectOnRuntime(tokio::runtime::Handle::current());
        let manager = Manager::from_connect(config, connect, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT * 2))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Database(format!("building PostgreSQL pool: {e}")))?;
        Ok(Self { pool, target })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| pool_err(&self.target, e))
    }
}

/// Opens every pooled connection on the runtime that opened the store, and drives it
/// there. A connection's socket and I/O task belong to the runtime that created it;
/// left to deadpool, that is whichever HTTP worker first needed a connection, and
/// every later user of it waits until that (busy, single-threaded) worker gets round
/// to its I/O. Measured: EST enrollments waited 2.2 ms on average for a one-row read,
/// and 4.7 ms per group commit.
struct ConnectOnRuntime(tokio::runtime::Handle);

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
            let opening = config.clone();
            match self.0.spawn(async move { opening.connect(NoTls).await }).await {
                Ok(Ok((client, connection))) => Ok((client, self.0.spawn(drive(connection)))),
                Ok(Err(e)) => Err(e),
                // That runtime is shutting down: connect on this one, as deadpool would.
                Err(_) => {
                    let (client, connection) = config.connect(NoTls).await?;
                    Ok((client, tokio::spawn(drive(connection))))
                }
            }
        })
    }
}

/// Runs a connection's I/O until it closes (deadpool aborts it when it drops the client).
async fn drive(connection: tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>) {
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
        // 08: connection exception, 57P: operator intervention (shutdown), 53: resources.
        if code.starts_with("08") || code.starts_with("57P") || code.starts_with("53") {
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

fn hash_from_hex(seq: i64, s: &str) -> Result<[u8; 32], StoreError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|e| StoreError::Corrupt(format!("audit entry {seq}: bad hash '{s}': {e}")))?;
    Ok(out)
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

const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1)";
const HEAD_SQL: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";

/// Takes the chain lock and reads the head, in the caller's transaction.
/// Both statements are sent together (pipelined); the server runs them in order.
async fn lock_chain(tx: &deadpool_postgres::Transaction<'_>) -> Result<(i64, [u8; 32]), StoreError> {
    let (lock, head) = tokio::try_join!(tx.prepare_cached(LOCK_SQL), tx.prepare_cached(HEAD_SQL)).map_err(pg_err)?;
    let (_, row) =
        tokio::try_join!(tx.execute(&lock, &[&AUDIT_CHAIN_LOCK_KEY]), tx.query_opt(&head, &[])).map_err(pg_err)?;
    read_head(row)
}

fn read_head(row: Option<Row>) -> Result<(i64, [u8; 32]), StoreError> {
    match row {
        Some(row) => {
            let seq: i64 = row.try_get(0).map_err(pg_err)?;
            let hash: String = row.try_get(1).map_err(pg_err)?;
            Ok((seq, hash_from_hex(seq, &hash)?))
        }
        None => Ok((0, GENESIS_HASH)),
    }
}

const INSERT_AUDIT_SQL: &str =
    "INSERT INTO audit_log (seq, time_us, actor, action, target, outcome, details, prev_hash, hash) \
     SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                          $8::text[], $9::text[])";

/// Inserts chained entries in one statement, prepared by the caller: the insert is
/// sent on the first poll, so a statement joined after it (a pipelined COMMIT)
/// reaches the server after it.
async fn insert_audit(
    tx: &impl GenericClient,
    stmt: &tokio_postgres::Statement,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let seq: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let time: Vec<i64> = entries.iter().map(|e| e.time_us).collect();
    let actor: Vec<&str> = entries.iter().map(|e| e.event.actor.as_str()).collect();
    let action: Vec<&str> = entries.iter().map(|e| e.event.action.as_str()).collect();
    let target: Vec<&str> = entries.iter().map(|e| e.event.target.as_str()).collect();
    let outcome: Vec<&str> = entries.iter().map(|e| e.event.outcome.as_str()).collect();
    let details: Vec<&str> = entries.iter().map(|e| e.event.details.as_str()).collect();
    let prev: Vec<String> = entries.iter().map(|e| hex::encode(e.prev_hash)).collect();
    let hash: Vec<String> = entries.iter().map(|e| hex::encode(e.hash)).collect();
    tx.execute(stmt, &[&seq, &time, &actor, &action, &target, &outcome, &details, &prev, &hash])
        .await
        .map_err(pg_err)?;
    Ok(())
}

/// Reads the head (the lock must be held) and appends `events`.
async fn append_chain(
    tx: &impl GenericClient,
    head: (i64, [u8; 32]),
    events: Vec<AuditEvent>,
) -> Result<(), StoreError> {
    let entries = audit::chain(head, now_us(), events);
    let stmt = tx.prepare_cached(INSERT_AUDIT_SQL).await.map_err(pg_err)?;
    insert_audit(tx, &stmt, &entries).await
}

/// Keys revoked for keyCompromise, completed by `= <key>` or `= ANY(<keys>)`.
const COMPROMISED_WHERE: &str = "SELECT public_key_sha256 FROM certificates \
                                 WHERE status = 'revoked' AND revocation_reason = 1 AND public_key_sha256";

const CA_COLUMNS: &str = "name, cert_der, key_store, key_label, parent";

fn ca_from_row(row: &Row) -> Result<CaRecord, StoreError> {
    Ok(CaRecord {
        name: row.try_get(0).map_err(pg_err)?,
        cert_der: row.try_get(1).map_err(pg_err)?,
        key_store: row.try_get(2).map_err(pg_err)?,
        key_label: row.try_get(3).map_err(pg_err)?,
        parent: row.try_get(4).map_err(pg_err)?,
    })
}

const CERT_COLUMNS: &str = "issuer, serial_hex, subject, device_id, profile, not_before, not_after, status, \
                            revoked_at, revocation_reason, fingerprint, public_key_sha256, der, crl_shard";

fn cert_from_row(row: &Row) -> Result<CertRecord, StoreError> {
    cert_at(row, 0)
}

/// A certificate from `CERT_COLUMNS` starting at column `at`.
fn cert_at(row: &Row, at: usize) -> Result<CertRecord, StoreError> {
    let serial_hex: String = row.try_get(at + 1).map_err(pg_err)?;
    let serial = super::serial_from_hex(&serial_hex)?;
    let status: String = row.try_get(at + 7).map_err(pg_err)?;
    Ok(CertRecord {
        issuer: row.try_get(at).map_err(pg_err)?,
        serial,
        subject: row.try_get(at + 2).map_err(pg_err)?,
        device_id: row.try_get(at + 3).map_err(pg_err)?,
        profile: row.try_get(at + 4).map_err(pg_err)?,
        not_before: row.try_get(at + 5).map_err(pg_err)?,
        not_after: row.try_get(at + 6).map_err(pg_err)?,
        status: CertStatus::parse(&status)?,
        revoked_at: row.try_get(at + 8).map_err(pg_err)?,
        revocation_reason: row.try_get(at + 9).map_err(pg_err)?,
        fingerprint: row.try_get(at + 10).map_err(pg_err)?,
        public_key_sha256: row.try_get(at + 11).map_err(pg_err)?,
        der: row.try_get(at + 12).map_err(pg_err)?,
        crl_shard: u32::try_from(row.try_get::<_, i32>(at + 13).map_err(pg_err)?)
            .map_err(|_| StoreError::Corrupt("negative CRL shard".into()))?,
    })
}

/// Applies the effects of the stored items of a batch, set-wise: one UPDATE per kind.
/// Items whose precondition fails (or that repeat a device/certificate an earlier item
/// of the batch already claimed) become `Refused` and their certificate rows, inserted
/// moments ago in this transaction, are deleted again.
async fn apply_effects(
    tx: &impl GenericClient,
    batch: &[Issuance],
    serials: &[String],
    outcomes: &mut [IssuanceOutcome],
) -> Result<(), StoreError> {
    let now = now_us();
    let (mut act_ids, mut act_allow, mut sup_issuer, mut sup_serial) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (item, outcome) in batch.iter().zip(outcomes.iter()) {
        match (&item.effect, outcome) {
            (Some(IssuanceEffect::ActivateDevice { device_id, allow_reprovision }), IssuanceOutcome::Stored) => {
                act_ids.push(device_id.as_str());
                act_allow.push(*allow_reprovision);
            }
            (Some(IssuanceEffect::Supersede { issuer, serial }), IssuanceOutcome::Stored) => {
                sup_issuer.push(issuer.clone());
                sup_serial.push(hex::encode(serial));
            }
            _ => {}
        }
    }
    let mut activated = HashSet::new();
    if !act_ids.is_empty() {
        let stmt = tx
            .prepare_cached(
                "UPDATE devices SET state = 'active', updated_at = $1 \
                 FROM UNNEST($2::text[], $3::bool[]) AS t(id, allow) \
                 WHERE devices.device_id = t.id AND (devices.state = 'expected' OR (t.allow AND devices.state = 'active')) \
                 RETURNING devices.device_id",
            )
            .await
            .map_err(pg_err)?;
        for row in tx.query(&stmt, &[&now, &act_ids, &act_allow]).await.map_err(pg_err)? {
            activated.insert(row.try_get::<_, String>(0).map_err(pg_err)?);
        }
    }
    let mut superseded = HashSet::new();
    if !sup_issuer.is_empty() {
        let stmt = tx
            .prepare_cached(
                "UPDATE certificates SET status = 'superseded' \
                 FROM UNNEST($1::text[], $2::text[]) AS t(issuer, serial_hex) \
                 WHERE certificates.issuer = t.issuer AND certificates.serial_hex = t.serial_hex \
                   AND certificates.status = 'valid' \
                 RETURNING certificates.issuer, certificates.serial_hex",
            )
            .await
            .map_err(pg_err)?;
        for row in tx.query(&stmt, &[&sup_issuer, &sup_serial]).await.map_err(pg_err)? {
            superseded
                .insert((row.try_get::<_, String>(0).map_err(pg_err)?, row.try_get::<_, String>(1).map_err(pg_err)?));
        }
    }
    // Update requests are rare (two people approve each): one statement apiece.
    let mut fulfilled = HashSet::new();
    for (item, outcome) in batch.iter().zip(outcomes.iter()) {
        if let (Some(IssuanceEffect::FulfilUpdateRequest { id }), IssuanceOutcome::Stored) = (&item.effect, outcome) {
            let stmt = tx
                .prepare_cached(
                    "UPDATE update_requests SET status = 'issued', issuer = $1, serial_hex = $2 \
                     WHERE id = $3 AND status = 'approved' AND expires_at > $4",
                )
                .await
                .map_err(pg_err)?;
            let serial = hex::encode(&item.cert.serial);
            if tx.execute(&stmt, &[&item.cert.issuer, &serial, id, &(now / 1_000_000)]).await.map_err(pg_err)? == 1 {
                fulfilled.insert(id.clone());
            }
        }
    }
    // Each device / certificate goes to the first item of the batch that claims it.
    let (mut undo_issuer, mut undo_serial) = (Vec::new(), Vec::new());
    for ((item, serial), outcome) in batch.iter().zip(serials).zip(outcomes.iter_mut()) {
        if *outcome != IssuanceOutcome::Stored {
            continue;
        }
        let won = match &item.effect {
            None => true,
            Some(IssuanceEffect::ActivateDevice { device_id, .. }) => activated.remove(device_id),
            Some(IssuanceEffect::Supersede { issuer, serial }) => {
                superseded.remove(&(issuer.clone(), hex::encode(serial)))
            }
            Some(IssuanceEffect::FulfilUpdateRequest { id }) => fulfilled.remove(id),
        };
        if !won {
            if let Some(effect) = &item.effect {
                *outcome = IssuanceOutcome::Refused(effect_refusal(effect));
            }
            undo_issuer.push(item.cert.issuer.clone());
            undo_serial.push(serial.clone());
        }
    }
    if !undo_issuer.is_empty() {
        let stmt = tx
            .prepare_cached(
                "DELETE FROM certificates USING UNNEST($1::text[], $2::text[]) AS t(issuer, serial_hex) \
                 WHERE certificates.issuer = t.issuer AND certificates.serial_hex = t.serial_hex",
            )
            .await
            .map_err(pg_err)?;
        tx.execute(&stmt, &[&undo_issuer, &undo_serial]).await.map_err(pg_err)?;
    }
    // Re-provisioned devices: their earlier certificates are replaced by the new one.
    let (mut re_device, mut re_issuer, mut re_serial) = (Vec::new(), Vec::new(), Vec::new());
    for ((item, serial), outcome) in batch.iter().zip(serials).zip(outcomes.iter()) {
        if let (Some(IssuanceEffect::ActivateDevice { device_id, allow_reprovision: true }), IssuanceOutcome::Stored) =
            (&item.effect, outcome)
        {
            re_device.push(device_id.as_str());
            re_issuer.push(item.cert.issuer.as_str());
            re_serial.push(serial.as_str());
        }
    }
    if !re_device.is_empty() {
        let stmt = tx
            .prepare_cached(
                "UPDATE certificates SET status = 'superseded' \
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(device_id, issuer, serial_hex) \
                 WHERE certificates.device_id = t.device_id AND certificates.status = 'valid' \
                   AND NOT (certificates.issuer = t.issuer AND certificates.serial_hex = t.serial_hex)",
            )
            .await
            .map_err(pg_err)?;
        tx.execute(&stmt, &[&re_device, &re_issuer, &re_serial]).await.map_err(pg_err)?;
    }
    Ok(())
}

const UPDATE_COLUMNS: &str = "id, profile, csr_der, classes, validity_days, requester, status, rejected_by, reason, \
                              issuer, serial_hex, created_at, expires_at";

/// An update request without its approvals (see [`load_update_request`]).
fn update_request_from_row(row: &Row) -> Result<UpdateRequest, StoreError> {
    let status: String = row.try_get(6).map_err(pg_err)?;
    let classes: String = row.try_get(3).map_err(pg_err)?;
    let validity_days: i32 = row.try_get(4).map_err(pg_err)?;
    Ok(UpdateRequest {
        id: row.try_get(0).map_err(pg_err)?,
        profile: row.try_get(1).map_err(pg_err)?,
        csr_der: row.try_get(2).map_err(pg_err)?,
        classes: split_list(&classes),
        validity_days: u32::try_from(validity_days)
            .map_err(|_| StoreError::Corrupt(format!("negative validity {validity_days}")))?,
        requester: row.try_get(5).map_err(pg_err)?,
        status: RequestStatus::parse(&status)?,
        approvals: Vec::new(),
        rejected_by: row.try_get(7).map_err(pg_err)?,
        reason: row.try_get(8).map_err(pg_err)?,
        issued: super::issued_pair(row.try_get(9).map_err(pg_err)?, row.try_get(10).map_err(pg_err)?)?,
        created_at: row.try_get(11).map_err(pg_err)?,
        expires_at: row.try_get(12).map_err(pg_err)?,
    })
}

/// An update request with its approvals, or `None`. `FOR UPDATE` inside a
/// transaction, so two approvals of one request serialize.
async fn load_update_request(
    client: &impl tokio_postgres::GenericClient,
    id: &str,
    for_update: bool,
) -> Result<Option<UpdateRequest>, StoreError> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let stmt = client
        .prepare(&format!("SELECT {UPDATE_COLUMNS} FROM update_requests WHERE id = $1{lock}"))
        .await
        .map_err(pg_err)?;
    let Some(row) = client.query_opt(&stmt, &[&id]).await.map_err(pg_err)? else { return Ok(None) };
    let mut request = update_request_from_row(&row)?;
    let stmt = client
        .prepare("SELECT approver FROM update_request_approvals WHERE request_id = $1 ORDER BY approved_at, approver")
        .await
        .map_err(pg_err)?;
    for row in client.query(&stmt, &[&id]).await.map_err(pg_err)? {
        request.approvals.push(row.try_get(0).map_err(pg_err)?);
    }
    Ok(Some(request))
}

const DEVICE_COLUMNS: &str = "device_id, model, class, batch, hardware_serial, state, reprovision";

fn device_from_row(row: &Row) -> Result<DeviceRecord, StoreError> {
    device_at(row, 0)
}

/// A device from `DEVICE_COLUMNS` starting at column `at`.
fn device_at(row: &Row, at: usize) -> Result<DeviceRecord, StoreError> {
    let state: String = row.try_get(at + 5).map_err(pg_err)?;
    Ok(DeviceRecord {
        device_id: row.try_get(at).map_err(pg_err)?,
        model: row.try_get(at + 1).map_err(pg_err)?,
        class: row.try_get(at + 2).map_err(pg_err)?,
        batch: row.try_get(at + 3).map_err(pg_err)?,
        hardware_serial: row.try_get(at + 4).map_err(pg_err)?,
        state: DeviceState::parse(&state)?,
        reprovision: row.try_get(at + 6).map_err(pg_err)?,
    })
}

const REQUEST_COLUMNS: &str = "id, profile, device_id, requester, status, decided_by, issuer, serial_hex";

fn request_from_row(row: &Row) -> Result<EnrollmentRequest, StoreError> {
    let status: String = row.try_get(4).map_err(pg_err)?;
    let issuer: Option<String> = row.try_get(6).map_err(pg_err)?;
    let serial_hex: Option<String> = row.try_get(7).map_err(pg_err)?;
    let issued = super::issued_pair(issuer, serial_hex)?;
    Ok(EnrollmentRequest {
        id: row.try_get(0).map_err(pg_err)?,
        profile: row.try_get(1).map_err(pg_err)?,
        device_id: row.try_get(2).map_err(pg_err)?,
        requester: row.try_get(3).map_err(pg_err)?,
        status: RequestStatus::parse(&status)?,
        decided_by: row.try_get(5).map_err(pg_err)?,
        issued,
    })
}

const STATION_COLUMNS: &str = "name, enabled, models, batches, secret_hash";

fn station_from_row(row: &Row) -> Result<StationRecord, StoreError> {
    station_at(row, 0)
}

/// A station from `STATION_COLUMNS` starting at column `at`.
fn station_at(row: &Row, at: usize) -> Result<StationRecord, StoreError> {
    let models: String = row.try_get(at + 2).map_err(pg_err)?;
    let batches: String = row.try_get(at + 3).map_err(pg_err)?;
    Ok(StationRecord {
        name: row.try_get(at).map_err(pg_err)?,
        enabled: row.try_get(at + 1).map_err(pg_err)?,
        models: split_list(&models),
        batches: split_list(&batches),
        secret_hash: row.try_get(at + 4).map_err(pg_err)?,
    })
}

const TOKEN_COLUMNS: &str = "id, name, role, secret_hash, created_at, revoked_at";

fn token_from_row(row: &Row) -> Result<ApiToken, StoreError> {
    let role: String = row.try_get(2).map_err(pg_err)?;
    Ok(ApiToken {
        id: row.try_get(0).map_err(pg_err)?,
        name: row.try_get(1).map_err(pg_err)?,
        role: Role::parse(&role)?,
        secret_hash: row.try_get(3).map_err(pg_err)?,
        created_at: row.try_get(4).map_err(pg_err)?,
        revoked_at: row.try_get(5).map_err(pg_err)?,
    })
}

fn entry_from_row(row: &Row) -> Result<AuditEntry, StoreError> {
    let seq: i64 = row.try_get(0).map_err(pg_err)?;
    let prev_hash: String = row.try_get(7).map_err(pg_err)?;
    let hash: String = row.try_get(8).map_err(pg_err)?;
    Ok(AuditEntry {
        seq,
        time_us: row.try_get(1).map_err(pg_err)?,
        event: AuditEvent {
            actor: row.try_get(2).map_err(pg_err)?,
            action: row.try_get(3).map_err(pg_err)?,
            target: row.try_get(4).map_err(pg_err)?,
            outcome: row.try_get(5).map_err(pg_err)?,
            details: row.try_get(6).map_err(pg_err)?,
        },
        prev_hash: hash_from_hex(seq, &prev_hash)?,
        hash: hash_from_hex(seq, &hash)?,
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(pg_err)?;
        Ok(())
    }

    async fn create_hierarchy(
        &self,
        cas: &[(CaRecord, AuditEvent)],
        certificates: &[Issuance],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        let now = now_us();
        let mut events = Vec::with_capacity(cas.len() + certificates.len());
        // created_at orders list_cas: strictly increasing (the chain lock serializes writers).
        let ca_stmt = tx
            .prepare_cached(
                "INSERT INTO cas (name, cert_der, key_store, key_label, parent, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, GREATEST($6, (SELECT MAX(created_at) + 1 FROM cas)), $6) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        for (ca, audit) in cas {
            let n = tx
                .execute(&ca_stmt, &[&ca.name, &ca.cert_der, &ca.key_store, &ca.key_label, &ca.parent, &now])
                .await
                .map_err(pg_err)?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!("CA '{}'", ca.name)));
            }
            events.push(audit.clone());
        }
        let cert_stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO certificates ({CERT_COLUMNS}, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                 ON CONFLICT (issuer, serial_hex) DO NOTHING"
            ))
            .await
            .map_err(pg_err)?;
        for item in certificates {
            let c = &item.cert;
            let serial_hex = hex::encode(&c.serial);
            let shard = i32::try_from(c.crl_shard).unwrap_or(i32::MAX);
            let n = tx
                .execute(
                    &cert_stmt,
                    &[
                        &c.issuer,
                        &serial_hex,
                        &c.subject,
                        &c.device_id,
                        &c.profile,
                        &c.not_before,
                        &c.not_after,
                        &c.status.as_str(),
                        &c.revoked_at,
                        &c.revocation_reason,
                        &c.fingerprint,
                        &c.public_key_sha256,
                        &c.der,
                        &shard,
                        &now,
                    ],
                )
                .await
                .map_err(pg_err)?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!("certificate {}/{serial_hex}", c.issuer)));
            }
            events.push(item.audit.clone());
        }
        append_chain(&tx, head, events).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn update_ca_certificate(
        &self,
        name: &str,
        cert_der: &[u8],
        parent: Option<&str>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        let stmt = tx
            .prepare_cached("UPDATE cas SET cert_der = $1, parent = $2, updated_at = $3 WHERE name = $4")
            .await
            .map_err(pg_err)?;
        let n = tx.execute(&stmt, &[&cert_der, &parent, &now_us(), &name]).await.map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("CA '{name}'")));
        }
        append_chain(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn get_ca(&self, name: &str) -> Result<Option<CaRecord>, StoreError> {
        let client = self.client().await?;
        let stmt =
            client.prepare_cached(&format!("SELECT {CA_COLUMNS} FROM cas WHERE name = $1")).await.map_err(pg_err)?;
        client.query_opt(&stmt, &[&name]).await.map_err(pg_err)?.as_ref().map(ca_from_row).transpose()
    }

    async fn list_cas(&self) -> Result<Vec<CaRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {CA_COLUMNS} FROM cas ORDER BY created_at, name"))
            .await
            .map_err(pg_err)?;
        client.query(&stmt, &[]).await.map_err(pg_err)?.iter().map(ca_from_row).collect()
    }

    async fn store_certificates(&self, batch: &[Issuance]) -> Result<Vec<IssuanceOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let serials: Vec<String> = batch.iter().map(|i| hex::encode(&i.cert.serial)).collect();

        // A repeated (issuer, serial) inside the batch: only its first occurrence is sent.
        let mut seen = HashSet::with_capacity(batch.len());
        let first: Vec<bool> =
            batch.iter().zip(&serials).map(|(i, s)| seen.insert((i.cert.issuer.as_str(), s.as_str()))).collect();
        let sent = || batch.iter().zip(&serials).zip(&first).filter(|(_, f)| **f).map(|(x, _)| x);

        let issuer: Vec<&str> = sent().map(|(i, _)| i.cert.issuer.as_str()).collect();
        let serial_hex: Vec<&str> = sent().map(|(_, s)| s.as_str()).collect();
        let subject: Vec<&str> = sent().map(|(i, _)| i.cert.subject.as_str()).collect();
        let device_id: Vec<Option<&str>> = sent().map(|(i, _)| i.cert.device_id.as_deref()).collect();
        let profile: Vec<&str> = sent().map(|(i, _)| i.cert.profile.as_str()).collect();
        let not_before: Vec<i64> = sent().map(|(i, _)| i.cert.not_before).collect();
        let not_after: Vec<i64> = sent().map(|(i, _)| i.cert.not_after).collect();
        let status: Vec<&str> = sent().map(|(i, _)| i.cert.status.as_str()).collect();
        let revoked_at: Vec<Option<i64>> = sent().map(|(i, _)| i.cert.revoked_at).collect();
        let reason: Vec<Option<i32>> = sent().map(|(i, _)| i.cert.revocation_reason).collect();
        let fingerprint: Vec<&str> = sent().map(|(i, _)| i.cert.fingerprint.as_str()).collect();
        let spki: Vec<&str> = sent().map(|(i, _)| i.cert.public_key_sha256.as_str()).collect();
        let der: Vec<&[u8]> = sent().map(|(i, _)| i.cert.der.as_slice()).collect();
        let shard: Vec<i32> = sent().map(|(i, _)| i32::try_from(i.cert.crl_shard).unwrap_or(i32::MAX)).collect();
        let now = now_us();

        let insert_sql = format!(
            "INSERT INTO certificates ({CERT_COLUMNS}, created_at) \
             SELECT {CERT_COLUMNS}, $15 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::int8[], $7::int8[], $8::text[], $9::int8[], $10::int4[], $11::text[], $12::text[], \
                 $13::bytea[], $14::int4[]) WITH ORDINALITY AS t({CERT_COLUMNS}, ord) \
             WHERE NOT EXISTS ({COMPROMISED_WHERE} = t.public_key_sha256) \
             ORDER BY ord \
             ON CONFLICT (issuer, serial_hex) DO NOTHING \
             RETURNING issuer, serial_hex"
        );
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 15] = [
            &issuer,
            &serial_hex,
            &subject,
            &device_id,
            &profile,
            &not_before,
            &not_after,
            &status,
            &revoked_at,
            &reason,
            &fingerprint,
            &spki,
            &der,
            &shard,
            &now,
        ];

        let client = self.client().await?;
        let compromised_sql = format!("SELECT DISTINCT public_key_sha256 FROM ({COMPROMISED_WHERE} = ANY($1)) k");
        let (lock, head, compromised, insert, audit) = tokio::try_join!(
            client.prepare_cached(LOCK_SQL),
            client.prepare_cached(HEAD_SQL),
            client.prepare_cached(&compromised_sql),
            client.prepare_cached(&insert_sql),
            client.prepare_cached(INSERT_AUDIT_SQL),
        )
        .map_err(pg_err)?;
        let tx = PipelinedTx::new(client);
        // One round trip; the server runs them in this order. The insert skips
        // compromised keys itself, so a revocation committing between the two
        // statements costs at most a retry, never a certificate for a compromised key.
        let compromised_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&spki];
        let (begun, locked, head, compromised, inserted) = tokio::join!(
            tx.begin(),
            tx.execute(&lock, &[&AUDIT_CHAIN_LOCK_KEY]),
            tx.query_opt(&head, &[]),
            tx.query(&compromised, &compromised_params),
            tx.query(&insert, &params),
        );
        begun.map_err(pg_err)?;
        locked.map_err(pg_err)?;
        let (head, compromised, inserted) =
            (head.map_err(pg_err)?, compromised.map_err(pg_err)?, inserted.map_err(pg_err)?);
        let head = read_head(head)?;
        let compromised: HashSet<String> =
            compromised.iter().map(|row| row.try_get(0)).collect::<Result<_, _>>().map_err(pg_err)?;

        let mut stored = HashSet::with_capacity(inserted.len());
        for row in &inserted {
            let i: String = row.try_get(0).map_err(pg_err)?;
            let s: String = row.try_get(1).map_err(pg_err)?;
            stored.insert((i, s));
        }
        let mut outcomes: Vec<IssuanceOutcome> = batch
            .iter()
            .zip(&serials)
            .zip(&first)
            .map(|((item, serial), first)| {
                if compromised.contains(&item.cert.public_key_sha256) {
                    IssuanceOutcome::KeyCompromised
                } else if *first && stored.contains(&(item.cert.issuer.clone(), serial.clone())) {
                    IssuanceOutcome::Stored
                } else {
                    IssuanceOutcome::SerialTaken
                }
            })
            .collect();
        apply_effects(&*tx, batch, &serials, &mut outcomes).await?;
        let events: Vec<AuditEvent> = batch
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == IssuanceOutcome::Stored)
            .map(|(i, _)| i.audit.clone())
            .collect();
        let entries = audit::chain(head, now_us(), events);
        // If the insert fails, the transaction is aborted and COMMIT rolls it back.
        let (audited, committed) = tokio::join!(insert_audit(&*tx, &audit, &entries), tx.commit());
        audited?;
        committed.map_err(pg_err)?;
        tx.finished();
        Ok(outcomes)
    }

    async fn get_certificate(&self, issuer: &str, serial: &[u8]) -> Result<Option<CertRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {CERT_COLUMNS} FROM certificates WHERE issuer = $1 AND serial_hex = $2"))
            .await
            .map_err(pg_err)?;
        client
            .query_opt(&stmt, &[&issuer, &hex::encode(serial)])
            .await
            .map_err(pg_err)?
            .as_ref()
            .map(cert_from_row)
            .transpose()
    }

    async fn certificate_keys(&self, after_id: i64, limit: i64) -> Result<Vec<CertificateKey>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT id, issuer, serial_hex FROM certificates WHERE id > $1 ORDER BY id LIMIT $2")
            .await
            .map_err(pg_err)?;
        client
            .query(&stmt, &[&after_id, &limit])
            .await
            .map_err(pg_err)?
            .iter()
            .map(|row| {
                let id: i64 = row.try_get(0).map_err(pg_err)?;
                let serial_hex: String = row.try_get(2).map_err(pg_err)?;
                let serial = hex::decode(&serial_hex)
                    .map_err(|_| StoreError::Corrupt(format!("certificate {id}: serial '{serial_hex}' is not hex")))?;
                Ok(CertificateKey { id, issuer: row.try_get(1).map_err(pg_err)?, serial })
            })
            .collect()
    }

    async fn certificates_for_device(&self, device_id: &str) -> Result<Vec<CertRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE device_id = $1 ORDER BY created_at DESC, id DESC"
            ))
            .await
            .map_err(pg_err)?;
        client.query(&stmt, &[&device_id]).await.map_err(pg_err)?.iter().map(cert_from_row).collect()
    }

    async fn add_devices(&self, devices: &[DeviceRecord], audit: AuditEvent) -> Result<(), StoreError> {
        if devices.is_empty() {
            return Ok(());
        }
        let id: Vec<&str> = devices.iter().map(|d| d.device_id.as_str()).collect();
        let model: Vec<&str> = devices.iter().map(|d| d.model.as_str()).collect();
        let class: Vec<&str> = devices.iter().map(|d| d.class.as_str()).collect();
        let batch: Vec<&str> = devices.iter().map(|d| d.batch.as_str()).collect();
        let hw: Vec<Option<&str>> = devices.iter().map(|d| d.hardware_serial.as_deref()).collect();
        let state: Vec<&str> = devices.iter().map(|d| d.state.as_str()).collect();
        let reprovision: Vec<bool> = devices.iter().map(|d| d.reprovision).collect();

        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO devices (device_id, model, class, batch, hardware_serial, state, reprovision, \
                     created_at, updated_at) \
                 SELECT device_id, model, class, batch, hardware_serial, state, reprovision, $8, $8 \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[]) \
                     WITH ORDINALITY AS t(device_id, model, class, batch, hardware_serial, state, reprovision, ord) \
                 ORDER BY ord \
                 ON CONFLICT (device_id) DO NOTHING \
                 RETURNING device_id",
            )
            .await
            .map_err(pg_err)?;
        let rows = tx
            .query(&stmt, &[&id, &model, &class, &batch, &hw, &state, &reprovision, &now_us()])
            .await
            .map_err(pg_err)?;
        let mut inserted = HashSet::with_capacity(rows.len());
        for row in &rows {
            inserted.insert(row.try_get::<_, String>(0).map_err(pg_err)?);
        }
        // The first id (in input order) that repeats an earlier one or already existed.
        let mut seen = HashSet::with_capacity(id.len());
        if let Some(dup) = id.iter().find(|d| !seen.insert(**d) || !inserted.contains(**d)) {
            return Err(StoreError::AlreadyExists(format!("device '{dup}'")));
        }
        append_chain(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn get_device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1"))
            .await
            .map_err(pg_err)?;
        client.query_opt(&stmt, &[&device_id]).await.map_err(pg_err)?.as_ref().map(device_from_row).transpose()
    }

    async fn submit_enrollment_request(
        &self,
        request: &EnrollmentRequest,
        audit: AuditEvent,
    ) -> Result<EnrollmentRequest, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO enrollment_requests (id, profile, device_id, requester, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'pending', $5, $5) ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        let r = request;
        let n = tx.execute(&stmt, &[&r.id, &r.profile, &r.device_id, &r.requester, &now_us()]).await.map_err(pg_err)?;
        if n == 1 {
            append_chain(&tx, head, vec![audit]).await?;
        }
        let stmt = tx
            .prepare_cached(&format!("SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE id = $1"))
            .await
            .map_err(pg_err)?;
        let row = tx.query_one(&stmt, &[&r.id]).await.map_err(pg_err)?;
        let stored = request_from_row(&row)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(stored)
    }

    async fn get_enrollment_request(&self, id: &str) -> Result<Option<EnrollmentRequest>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE id = $1"))
            .await
            .map_err(pg_err)?;
        client.query_opt(&stmt, &[&id]).await.map_err(pg_err)?.as_ref().map(request_from_row).transpose()
    }

    async fn decide_enrollment_request(
        &self,
        id: &str,
        approve: bool,
        decided_by: &str,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        let status = if approve { "approved" } else { "rejected" };
        let stmt = tx
            .prepare_cached(
                "UPDATE enrollment_requests SET status = $1, decided_by = $2, updated_at = $3 \
                 WHERE id = $4 AND status = 'pending'",
            )
            .await
            .map_err(pg_err)?;
        let n = tx.execute(&stmt, &[&status, &decided_by, &now_us(), &id]).await.map_err(pg_err)?;
        if n == 0 {
            let stmt = tx
                .prepare_cached(&format!("SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE id = $1"))
                .await
                .map_err(pg_err)?;
            return Err(match tx.query_opt(&stmt, &[&id]).await.map_err(pg_err)? {
                None => StoreError::NotFound(format!("enrollment request '{id}'")),
                Some(row) => StoreError::Conflict(format!(
                    "enrollment request '{id}' is already {}; decisions are final",
                    request_from_row(&row)?.status.as_str()
                )),
            });
        }
        append_chain(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn mark_enrollment_request_issued(&self, id: &str, issuer: &str, serial: &[u8]) -> Result<(), StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE enrollment_requests SET status = 'issued', issuer = $1, serial_hex = $2, updated_at = $3 \
                 WHERE id = $4 AND status = 'approved'",
            )
            .await
            .map_err(pg_err)?;
        let n = client.execute(&stmt, &[&issuer, &hex::encode(serial), &now_us(), &id]).await.map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("approved enrollment request '{id}'")));
        }
        Ok(())
    }

    async fn list_enrollment_requests(
        &self,
        status: Option<RequestStatus>,
    ) -> Result<Vec<EnrollmentRequest>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE $1::text IS NULL OR status = $1 \
                 ORDER BY created_at, id"
            ))
            .await
            .map_err(pg_err)?;
        let status = status.map(RequestStatus::as_str);
        client.query(&stmt, &[&status]).await.map_err(pg_err)?.iter().map(request_from_row).collect()
    }

    async fn add_station(&self, station: &StationRecord, audit: AuditEvent) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO stations (name, enabled, models, batches, secret_hash, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (name) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        let n = tx
            .execute(
                &stmt,
                &[
                    &station.name,
                    &station.enabled,
                    &station.models.join(","),
                    &station.batches.join(","),
                    &station.secret_hash,
                    &now_us(),
                ],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::AlreadyExists(format!("station '{}'", station.name)));
        }
        append_chain(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn get_station(&self, name: &str) -> Result<Option<StationRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {STATION_COLUMNS} FROM stations WHERE name = $1"))
            .await
            .map_err(pg_err)?;
        client.query_opt(&stmt, &[&name]).await.map_err(pg_err)?.as_ref().map(station_from_row).transpose()
    }

    async fn enrollment_contexts(&self, lookups: &[EnrollmentLookup]) -> Result<Vec<EnrollmentContext>, StoreError> {
        // One row per lookup, in order: each record is a LEFT JOIN on its own key, so
        // an absent one reads as NULL columns (its first column is its NOT NULL key).
        let sql = format!(
            "SELECT c.*, s.*, d.* \
             FROM UNNEST($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(fingerprint, station, device_id, ord) \
             LEFT JOIN LATERAL (SELECT {CERT_COLUMNS} FROM certificates \
                                WHERE fingerprint = t.fingerprint LIMIT 1) AS c ON true \
             LEFT JOIN LATERAL (SELECT {STATION_COLUMNS} FROM stations WHERE name = t.station) AS s ON true \
             LEFT JOIN LATERAL (SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = t.device_id) AS d ON true \
             ORDER BY t.ord"
        );
        let column = |f: fn(&EnrollmentLookup) -> &Option<String>| -> Vec<Option<&str>> {
            lookups.iter().map(|l| f(l).as_deref()).collect()
        };
        let fingerprints = column(|l| &l.client_fingerprint);
        let stations = column(|l| &l.station);
        let devices = column(|l| &l.device_id);
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await.map_err(pg_err)?;
        let rows = client.query(&stmt, &[&fingerprints, &stations, &devices]).await.map_err(pg_err)?;
        let columns = |list: &str| list.split(',').count();
        let station_at = columns(CERT_COLUMNS);
        let device_at = station_at + columns(STATION_COLUMNS);
        rows.iter()
            .map(|row| {
                let present = |at: usize| row.try_get::<_, Option<&str>>(at).map(|key| key.is_some()).map_err(pg_err);
                Ok(EnrollmentContext {
                    client: if present(0)? { Some(cert_at(row, 0)?) } else { None },
                    station: if present(station_at)? { Some(self::station_at(row, station_at)?) } else { None },
                    device: if present(device_at)? { Some(self::device_at(row, device_at)?) } else { None },
                    earlier: None,
                })
            })
            .collect()
    }

    async fn list_stations(&self) -> Result<Vec<StationRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {STATION_COLUMNS} FROM stations ORDER BY name"))
            .await
            .map_err(pg_err)?;
        client.query(&stmt, &[]).await.map_err(pg_err)?.iter().map(station_from_row).collect()
    }

    async fn revoke_certificate(
        &self,
        issuer: &str,
        serial: &[u8],
        reason: i32,
        revoked_at: i64,
        audit: AuditEvent,
    ) -> Result<CertRecord, StoreError> {
        let serial_hex = hex::encode(serial);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        let stmt = tx
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE issuer = $1 AND serial_hex = $2 FOR UPDATE"
            ))
            .await
            .map_err(pg_err)?;
        let current = tx
            .query_opt(&stmt, &[&issuer, &serial_hex])
            .await
            .map_err(pg_err)?
            .as_ref()
            .map(cert_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("certificate {issuer}/{serial_hex}")))?;
        if current.status == CertStatus::Revoked {
            return Err(StoreError::Conflict(format!("certificate {issuer}/{serial_hex} is already revoked")));
        }
        let stmt = tx
            .prepare_cached(
                "UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = $2 \
                 WHERE issuer = $3 AND serial_hex = $4",
            )
            .await
            .map_err(pg_err)?;
        tx.execute(&stmt, &[&revoked_at, &reason, &issuer, &serial_hex]).await.map_err(pg_err)?;
        append_chain(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(CertRecord {
            status: CertStatus::Revoked,
            revoked_at: Some(revoked_at),
            revocation_reason: Some(reason),
            ..current
        })
    }

    async fn revoke_devices(
        &self,
        which: &DeviceSelector,
        reason: i32,
        revoked_at: i64,
        audit: AuditEvent,
    ) -> Result<(u64, Vec<CertRecord>), StoreError> {
        let (column, value) = which.column_and_value();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        let stmt = tx
            .prepare_cached(&format!("UPDATE devices SET state = 'revoked', updated_at = $1 WHERE {column} = $2"))
            .await
            .map_err(pg_err)?;
        let n = tx.execute(&stmt, &[&now_us(), &value]).await.map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::NotFound(which.to_string()));
        }
        let stmt = tx
            .prepare_cached(&format!(
                "UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = $2 \
                 WHERE device_id IN (SELECT device_id FROM devices WHERE {column} = $3) AND status != 'revoked' \
                 RETURNING {CERT_COLUMNS}"
            ))
            .await
            .map_err(pg_err)?;
        let revoked: Vec<CertRecord> = tx
            .query(&stmt, &[&revoked_at, &reason, &value])
            .await
            .map_err(pg_err)?
            .iter()
            .map(cert_from_row)
            .collect::<Result<_, _>>()?;
        append_chain(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok((n, revoked))
    }

    async fn public_key_compromised(&self, public_key_sha256: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&format!("SELECT EXISTS ({COMPROMISED_WHERE} = $1)")).await.map_err(pg_err)?;
        client.query_one(&stmt, &[&public_key_sha256]).await.map_err(pg_err)?.try_get(0).map_err(pg_err)
    }

    async fn revoked_for_crl(
        &self,
        issuer: &str,
        now: i64,
        shard: Option<u32>,
        since: Option<i64>,
    ) -> Result<Vec<(Vec<u8>, i64, Option<i32>)>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT serial_hex, revoked_at, revocation_reason FROM certificates \
                 WHERE issuer = $1 AND status = 'revoked' AND not_after >= $2 \
                   AND ($3::int4 IS NULL OR crl_shard = $3) AND ($4::int8 IS NULL OR revoked_at >= $4) \
                 ORDER BY serial_hex",
            )
            .await
            .map_err(pg_err)?;
        let shard = shard.map(|s| i32::try_from(s).unwrap_or(i32::MAX));
        client
            .query(&stmt, &[&issuer, &now, &shard, &since])
            .await
            .map_err(pg_err)?
            .iter()
            .map(|row| {
                let serial_hex: String = row.try_get(0).map_err(pg_err)?;
                let serial = super::serial_from_hex(&serial_hex)?;
                let at: Option<i64> = row.try_get(1).map_err(pg_err)?;
                Ok((serial, at.unwrap_or(0), row.try_get(2).map_err(pg_err)?))
            })
            .collect()
    }

    async fn publish_crls(&self, crls: &[PublishedCrl], audit: AuditEvent) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO published_crls (ca, name, crl_number, base_number, this_update, next_update, der) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (ca, name) DO UPDATE SET crl_number = excluded.crl_number, \
                   base_number = excluded.base_number, this_update = excluded.this_update, \
                   next_update = excluded.next_update, der = excluded.der \
                 WHERE excluded.crl_number > published_crls.crl_number",
            )
            .await
            .map_err(pg_err)?;
        for c in crls {
            let number = i64::try_from(c.number).map_err(|_| StoreError::Database("CRL number too large".into()))?;
            let base = c
                .base_number
                .map(i64::try_from)
                .transpose()
                .map_err(|_| StoreError::Database("CRL number too large".into()))?;
            tx.execute(&stmt, &[&c.ca, &c.name, &number, &base, &c.this_update, &c.next_update, &c.der])
                .await
                .map_err(pg_err)?;
        }
        append_chain(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn published_crl(&self, ca: &str, name: &str) -> Result<Option<PublishedCrl>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT ca, name, crl_number, base_number, this_update, next_update, der FROM published_crls \
                 WHERE ca = $1 AND name = $2",
            )
            .await
            .map_err(pg_err)?;
        let Some(row) = client.query_opt(&stmt, &[&ca, &name]).await.map_err(pg_err)? else { return Ok(None) };
        let number: i64 = row.try_get(2).map_err(pg_err)?;
        let base: Option<i64> = row.try_get(3).map_err(pg_err)?;
        Ok(Some(PublishedCrl {
            ca: row.try_get(0).map_err(pg_err)?,
            name: row.try_get(1).map_err(pg_err)?,
            number: u64::try_from(number).unwrap_or(0),
            base_number: base.and_then(|b| u64::try_from(b).ok()),
            this_update: row.try_get(4).map_err(pg_err)?,
            next_update: row.try_get(5).map_err(pg_err)?,
            der: row.try_get(6).map_err(pg_err)?,
        }))
    }

    async fn published_crl_head(&self, ca: &str, name: &str) -> Result<Option<CrlHead>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT crl_number, this_update, next_update FROM published_crls WHERE ca = $1 AND name = $2",
            )
            .await
            .map_err(pg_err)?;
        let Some(row) = client.query_opt(&stmt, &[&ca, &name]).await.map_err(pg_err)? else { return Ok(None) };
        let number: i64 = row.try_get(0).map_err(pg_err)?;
        Ok(Some(CrlHead {
            number: u64::try_from(number).unwrap_or(0),
            this_update: row.try_get(1).map_err(pg_err)?,
            next_update: row.try_get(2).map_err(pg_err)?,
        }))
    }

    async fn try_job_lock(&self, job: &str) -> Result<Option<JobLock>, StoreError> {
        // A session-level advisory lock on a connection taken out of the pool: when
        // the lock is dropped the connection closes, and the server releases the lock
        // even if this process dies mid-job. A pooled connection would keep it.
        let client = deadpool_postgres::Object::take(self.client().await?);
        let held: bool = client
            .query_one("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", &[&format!("job:{job}")])
            .await
            .map_err(pg_err)?
            .try_get(0)
            .map_err(pg_err)?;
        Ok(held.then(|| JobLock::holding(client)))
    }

    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, Vec<u8>, i64)>, StoreError> {
        let client = self.client().await?;
        // Prepared afresh on every call, not cached: the OCSP watcher runs this from
        // startup, when `certificates` holds only the hierarchy, and a plan cached
        // then (generic plans) is a sequential scan kept for the life of the
        // connection. Seen under est-load: every 0.5 s a scan of the whole table,
        // 8 ms at 20k certificates and growing with it. Planned now it uses the
        // partial revoked_at index. One PARSE per tick costs nothing.
        let stmt = client
            .prepare(
                "SELECT issuer, serial_hex, revoked_at FROM certificates \
                 WHERE revoked_at IS NOT NULL AND revoked_at >= $1 ORDER BY revoked_at",
            )
            .await
            .map_err(pg_err)?;
        client
            .query(&stmt, &[&since])
            .await
            .map_err(pg_err)?
            .iter()
            .map(|row| {
                let serial_hex: String = row.try_get(1).map_err(pg_err)?;
                let serial = super::serial_from_hex(&serial_hex)?;
                Ok((row.try_get(0).map_err(pg_err)?, serial, row.try_get(2).map_err(pg_err)?))
            })
            .collect()
    }

    async fn next_crl_number(&self, issuer: &str) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO crl_numbers (issuer, number) VALUES ($1, 1) \
                 ON CONFLICT (issuer) DO UPDATE SET number = crl_numbers.number + 1 RETURNING number",
            )
            .await
            .map_err(pg_err)?;
        let n: i64 = client.query_one(&stmt, &[&issuer]).await.map_err(pg_err)?.try_get(0).map_err(pg_err)?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt("negative CRL number".into()))
    }

    async fn latest_valid_certificate(&self, issuer: &str, profile: &str) -> Result<Option<CertRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE issuer = $1 AND profile = $2 AND status = 'valid' \
                 ORDER BY not_after DESC, id DESC LIMIT 1"
            ))
            .await
            .map_err(pg_err)?;
        client.query_opt(&stmt, &[&issuer, &profile]).await.map_err(pg_err)?.as_ref().map(cert_from_row).transpose()
    }

    async fn certificate_by_fingerprint(&self, fingerprint: &str) -> Result<Option<CertRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {CERT_COLUMNS} FROM certificates WHERE fingerprint = $1"))
            .await
            .map_err(pg_err)?;
        client.query_opt(&stmt, &[&fingerprint]).await.map_err(pg_err)?.as_ref().map(cert_from_row).transpose()
    }

    async fn submit_update_request(&self, request: &UpdateRequest, audit: AuditEvent) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO update_requests (id, profile, csr_der, classes, validity_days, requester, status, \
                 created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        let validity = i32::try_from(request.validity_days)
            .map_err(|_| StoreError::Database(format!("validity {} out of range", request.validity_days)))?;
        let n = tx
            .execute(
                &stmt,
                &[
                    &request.id,
                    &request.profile,
                    &request.csr_der,
                    &request.classes.join(","),
                    &validity,
                    &request.requester,
                    &request.created_at,
                    &request.expires_at,
                ],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::AlreadyExists(format!("update request '{}'", request.id)));
        }
        append_chain(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn get_update_request(&self, id: &str) -> Result<Option<UpdateRequest>, StoreError> {
        let client = self.client().await?;
        load_update_request(&**client, id, false).await
    }

    async fn list_update_requests(&self, status: Option<RequestStatus>) -> Result<Vec<UpdateRequest>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id FROM update_requests WHERE $1::text IS NULL OR status = $1 ORDER BY created_at, id",
            )
            .await
            .map_err(pg_err)?;
        let status = status.map(RequestStatus::as_str);
        let mut out = Vec::new();
        for row in client.query(&stmt, &[&status]).await.map_err(pg_err)? {
            let id: String = row.try_get(0).map_err(pg_err)?;
            out.extend(load_update_request(&**client, &id, false).await?);
        }
        Ok(out)
    }

    async fn approve_update_request(
        &self,
        id: &str,
        approver: &str,
        required: usize,
        audit: AuditEvent,
    ) -> Result<UpdateRequest, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        let now = now_us() / 1_000_000;
        let request = load_update_request(&*tx, id, true)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("update request '{id}'")))?;
        if let Some(conflict) = super::approval_conflict(&request, approver, now) {
            return Err(conflict);
        }
        let stmt = tx
            .prepare_cached(
                "INSERT INTO update_request_approvals (request_id, approver, approved_at) VALUES ($1, $2, $3)",
            )
            .await
            .map_err(pg_err)?;
        tx.execute(&stmt, &[&id, &approver, &now]).await.map_err(pg_err)?;
        if request.approvals.len() + 1 >= required {
            let stmt = tx
                .prepare_cached("UPDATE update_requests SET status = 'approved' WHERE id = $1 AND status = 'pending'")
                .await
                .map_err(pg_err)?;
            tx.execute(&stmt, &[&id]).await.map_err(pg_err)?;
        }
        append_chain(&tx, head, vec![audit]).await?;
        let stored = load_update_request(&*tx, id, false)
            .await?
            .ok_or_else(|| StoreError::Database("update request vanished".into()))?;
        tx.commit().await.map_err(pg_err)?;
        Ok(stored)
    }

    async fn reject_update_request(
        &self,
        id: &str,
        rejected_by: &str,
        reason: &str,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        let stmt = tx
            .prepare_cached(
                "UPDATE update_requests SET status = 'rejected', rejected_by = $1, reason = $2 \
                 WHERE id = $3 AND status = 'pending'",
            )
            .await
            .map_err(pg_err)?;
        if tx.execute(&stmt, &[&rejected_by, &reason, &id]).await.map_err(pg_err)? == 0 {
            return Err(match load_update_request(&*tx, id, false).await? {
                None => StoreError::NotFound(format!("update request '{id}'")),
                Some(r) => StoreError::Conflict(format!(
                    "update request '{id}' is already {}; decisions are final",
                    r.status.as_str()
                )),
            });
        }
        append_chain(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn add_api_token(&self, token: &ApiToken, audit: AuditEvent) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO api_tokens (id, name, role, secret_hash, created_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        let n = tx
            .execute(
                &stmt,
                &[
                    &token.id,
                    &token.name,
                    &token.role.as_str(),
                    &token.secret_hash,
                    &token.created_at,
                    &token.revoked_at,
                ],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::AlreadyExists(format!("API token '{}'", token.id)));
        }
        append_chain(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn get_api_token(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"))
            .await
            .map_err(pg_err)?;
        client.query_opt(&stmt, &[&id]).await.map_err(pg_err)?.as_ref().map(token_from_row).transpose()
    }

    async fn revoke_api_token(&self, id: &str, at: i64, audit: AuditEvent) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        let stmt = tx
            .prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1 FOR UPDATE"))
            .await
            .map_err(pg_err)?;
        let current = tx
            .query_opt(&stmt, &[&id])
            .await
            .map_err(pg_err)?
            .as_ref()
            .map(token_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("API token '{id}'")))?;
        if current.revoked_at.is_some() {
            return Err(StoreError::Conflict(format!("API token '{id}' is already revoked")));
        }
        let stmt = tx.prepare_cached("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2").await.map_err(pg_err)?;
        tx.execute(&stmt, &[&at, &id]).await.map_err(pg_err)?;
        append_chain(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn list_api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"))
            .await
            .map_err(pg_err)?;
        client.query(&stmt, &[]).await.map_err(pg_err)?.iter().map(token_from_row).collect()
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_chain(&tx).await?;
        append_chain(&tx, head, events.to_vec()).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn audit_entries(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT seq, time_us, actor, action, target, outcome, details, prev_hash, hash \
                 FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .await
            .map_err(pg_err)?;
        client.query(&stmt, &[&after_seq, &limit.max(0)]).await.map_err(pg_err)?.iter().map(entry_from_row).collect()
    }
}
