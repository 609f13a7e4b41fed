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

use super::{
    effect_refusal, split_list, ApiToken, CaRecord, CertRecord, CertStatus, CertificateKey, DeviceRecord, DeviceState,
    EnrollmentRequest, Issuance, IssuanceEffect, IssuanceOutcome, RequestStatus, Role, StationRecord, Store,
    StoreError, UpdateRequest,
};
use super::{CrlHead, DeviceSelector, JobLock, PublishedCrl};
use crate::audit::{self, AuditEntry, AuditEvent, GENESIS_HASH};

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
    /// Opens (creating if needed) the database file at `path` and applies the
    /// embedded migrations. Blocking: call at startup or inside `spawn_blocking`.
    /// The path must be a file (not `:memory:`): readers use their own connections.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut writer = Connection::open(&path).map_err(|e| open_err(&path, e))?;
        writer.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(db_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!(
                "cannot enable WAL journal on {} (journal mode is '{mode}')",
                path.display()
            )));
        }
        writer.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(db_err)?;
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

impl Inner {
    fn open_reader(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| open_err(&self.path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
        conn.execute_batch("PRAGMA query_only = ON;").map_err(db_err)?;
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

fn hash_from_hex(seq: i64, s: &str) -> Result<[u8; 32], StoreError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|e| StoreError::Corrupt(format!("audit entry {seq}: bad hash '{s}': {e}")))?;
    Ok(out)
}

/// The last entry's (seq, hash), or (0, GENESIS_HASH) for an empty log.
fn chain_head(tx: &Transaction<'_>) -> Result<(i64, [u8; 32]), StoreError> {
    let mut stmt = tx.prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    match rows.next().map_err(db_err)? {
        Some(row) => {
            let seq: i64 = row.get(0).map_err(db_err)?;
            let hash: String = row.get(1).map_err(db_err)?;
            Ok((seq, hash_from_hex(seq, &hash)?))
        }
        None => Ok((0, GENESIS_HASH)),
    }
}

/// Extends the audit chain with `events` inside the caller's transaction.
fn append_chain(tx: &Transaction<'_>, events: Vec<AuditEvent>) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let head = chain_head(tx)?;
    let entries = audit::chain(head, now_us(), events);
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO audit_log (seq, time_us, actor, action, target, outcome, details, prev_hash, hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(db_err)?;
    for e in &entries {
        stmt.execute(params![
            e.seq,
            e.time_us,
            e.event.actor,
            e.event.action,
            e.event.target,
            e.event.outcome,
            e.event.details,
            hex::encode(e.prev_hash),
            hex::encode(e.hash),
        ])
        .map_err(db_err)?;
    }
    Ok(())
}

const CA_COLUMNS: &str = "name, cert_der, key_store, key_label, parent";

fn ca_from_row(row: &Row<'_>) -> Result<CaRecord, StoreError> {
    Ok(CaRecord {
        name: row.get(0).map_err(db_err)?,
        cert_der: row.get(1).map_err(db_err)?,
        key_store: row.get(2).map_err(db_err)?,
        key_label: row.get(3).map_err(db_err)?,
        parent: row.get(4).map_err(db_err)?,
    })
}

const CERT_COLUMNS: &str = "issuer, serial_hex, subject, device_id, profile, not_before, not_after, status, \
                            revoked_at, revocation_reason, fingerprint, public_key_sha256, der, crl_shard";

fn cert_from_row(row: &Row<'_>) -> Result<CertRecord, StoreError> {
    let serial_hex: String = row.get(1).map_err(db_err)?;
    let serial = super::serial_from_hex(&serial_hex)?;
    let status: String = row.get(7).map_err(db_err)?;
    Ok(CertRecord {
        issuer: row.get(0).map_err(db_err)?,
        serial,
        subject: row.get(2).map_err(db_err)?,
        device_id: row.get(3).map_err(db_err)?,
        profile: row.get(4).map_err(db_err)?,
        not_before: row.get(5).map_err(db_err)?,
        not_after: row.get(6).map_err(db_err)?,
        status: CertStatus::parse(&status)?,
        revoked_at: row.get(8).map_err(db_err)?,
        revocation_reason: row.get(9).map_err(db_err)?,
        fingerprint: row.get(10).map_err(db_err)?,
        public_key_sha256: row.get(11).map_err(db_err)?,
        der: row.get(12).map_err(db_err)?,
        crl_shard: u32::try_from(row.get::<_, i64>(13).map_err(db_err)?)
            .map_err(|_| StoreError::Corrupt("negative CRL shard".into()))?,
    })
}

fn device_from_row(row: &Row<'_>) -> Result<DeviceRecord, StoreError> {
    let state: String = row.get(5).map_err(db_err)?;
    Ok(DeviceRecord {
        device_id: row.get(0).map_err(db_err)?,
        model: row.get(1).map_err(db_err)?,
        class: row.get(2).map_err(db_err)?,
        batch: row.get(3).map_err(db_err)?,
        hardware_serial: row.get(4).map_err(db_err)?,
        state: DeviceState::parse(&state)?,
        reprovision: row.get(6).map_err(db_err)?,
    })
}

const REQUEST_COLUMNS: &str = "id, profile, device_id, requester, status, decided_by, issuer, serial_hex";

fn request_from_row(row: &Row<'_>) -> Result<EnrollmentRequest, StoreError> {
    let status: String = row.get(4).map_err(db_err)?;
    let issuer: Option<String> = row.get(6).map_err(db_err)?;
    let serial_hex: Option<String> = row.get(7).map_err(db_err)?;
    let issued = super::issued_pair(issuer, serial_hex)?;
    Ok(EnrollmentRequest {
        id: row.get(0).map_err(db_err)?,
        profile: row.get(1).map_err(db_err)?,
        device_id: row.get(2).map_err(db_err)?,
        requester: row.get(3).map_err(db_err)?,
        status: RequestStatus::parse(&status)?,
        decided_by: row.get(5).map_err(db_err)?,
        issued,
    })
}

const UPDATE_COLUMNS: &str = "id, profile, csr_der, classes, validity_days, requester, status, rejected_by, reason, \
                              issuer, serial_hex, created_at, expires_at";

/// An update request without its approvals (see [`load_update_request`]).
fn update_request_from_row(row: &Row<'_>) -> Result<UpdateRequest, StoreError> {
    let status: String = row.get(6).map_err(db_err)?;
    let classes: String = row.get(3).map_err(db_err)?;
    let issuer: Option<String> = row.get(9).map_err(db_err)?;
    let serial_hex: Option<String> = row.get(10).map_err(db_err)?;
    Ok(UpdateRequest {
        id: row.get(0).map_err(db_err)?,
        profile: row.get(1).map_err(db_err)?,
        csr_der: row.get(2).map_err(db_err)?,
        classes: split_list(&classes),
        validity_days: row.get(4).map_err(db_err)?,
        requester: row.get(5).map_err(db_err)?,
        status: RequestStatus::parse(&status)?,
        approvals: Vec::new(),
        rejected_by: row.get(7).map_err(db_err)?,
        reason: row.get(8).map_err(db_err)?,
        issued: super::issued_pair(issuer, serial_hex)?,
        created_at: row.get(11).map_err(db_err)?,
        expires_at: row.get(12).map_err(db_err)?,
    })
}

/// An update request with its approvals, or `None`.
fn load_update_request(conn: &Connection, id: &str) -> Result<Option<UpdateRequest>, StoreError> {
    let sql = format!("SELECT {UPDATE_COLUMNS} FROM update_requests WHERE id = ?1");
    let Some(mut request) = query_all(conn, &sql, [id], update_request_from_row)?.into_iter().next() else {
        return Ok(None);
    };
    request.approvals = query_all(
        conn,
        "SELECT approver FROM update_request_approvals WHERE request_id = ?1 ORDER BY approved_at, approver",
        [id],
        |r| r.get(0).map_err(db_err),
    )?;
    Ok(Some(request))
}

fn station_from_row(row: &Row<'_>) -> Result<StationRecord, StoreError> {
    let list = |i: usize| -> Result<Vec<String>, StoreError> {
        let s: String = row.get(i).map_err(db_err)?;
        Ok(split_list(&s))
    };
    Ok(StationRecord {
        name: row.get(0).map_err(db_err)?,
        enabled: row.get(1).map_err(db_err)?,
        models: list(2)?,
        batches: list(3)?,
        secret_hash: row.get(4).map_err(db_err)?,
    })
}

const TOKEN_COLUMNS: &str = "id, name, role, secret_hash, created_at, revoked_at";

fn token_from_row(row: &Row<'_>) -> Result<ApiToken, StoreError> {
    let role: String = row.get(2).map_err(db_err)?;
    Ok(ApiToken {
        id: row.get(0).map_err(db_err)?,
        name: row.get(1).map_err(db_err)?,
        role: Role::parse(&role)?,
        secret_hash: row.get(3).map_err(db_err)?,
        created_at: row.get(4).map_err(db_err)?,
        revoked_at: row.get(5).map_err(db_err)?,
    })
}

/// Applies an issuance's effect; `Err(reason)` if its precondition no longer holds.
fn apply_effect(
    tx: &Transaction<'_>,
    effect: &IssuanceEffect,
    new: &CertRecord,
    now: i64,
) -> Result<Result<(), String>, StoreError> {
    let n = match effect {
        IssuanceEffect::ActivateDevice { device_id, allow_reprovision } => tx
            .prepare_cached(
                "UPDATE devices SET state = 'active', updated_at = ?1 \
                 WHERE device_id = ?2 AND (state = 'expected' OR (?3 AND state = 'active'))",
            )
            .map_err(db_err)?
            .execute(params![now, device_id, allow_reprovision])
            .map_err(db_err)?,
        IssuanceEffect::Supersede { issuer, serial } => tx
            .prepare_cached(
                "UPDATE certificates SET status = 'superseded' WHERE issuer = ?1 AND serial_hex = ?2 AND status = 'valid'",
            )
            .map_err(db_err)?
            .execute(params![issuer, hex::encode(serial)])
            .map_err(db_err)?,
        IssuanceEffect::FulfilUpdateRequest { id } => tx
            .prepare_cached(
                "UPDATE update_requests SET status = 'issued', issuer = ?1, serial_hex = ?2 \
                 WHERE id = ?3 AND status = 'approved' AND expires_at > ?4",
            )
            .map_err(db_err)?
            .execute(params![new.issuer, hex::encode(&new.serial), id, now / 1_000_000])
            .map_err(db_err)?,
    };
    if n != 1 {
        return Ok(Err(effect_refusal(effect)));
    }
    if let IssuanceEffect::ActivateDevice { device_id, allow_reprovision: true } = effect {
        // Re-provisioned: the device's earlier certificates are replaced by this one.
        tx.prepare_cached(
            "UPDATE certificates SET status = 'superseded' \
             WHERE device_id = ?1 AND status = 'valid' AND NOT (issuer = ?2 AND serial_hex = ?3)",
        )
        .map_err(db_err)?
        .execute(params![device_id, new.issuer, hex::encode(&new.serial)])
        .map_err(db_err)?;
    }
    Ok(Ok(()))
}

fn entry_from_row(row: &Row<'_>) -> Result<AuditEntry, StoreError> {
    let seq: i64 = row.get(0).map_err(db_err)?;
    let prev_hash: String = row.get(7).map_err(db_err)?;
    let hash: String = row.get(8).map_err(db_err)?;
    Ok(AuditEntry {
        seq,
        time_us: row.get(1).map_err(db_err)?,
        event: AuditEvent {
            actor: row.get(2).map_err(db_err)?,
            action: row.get(3).map_err(db_err)?,
            target: row.get(4).map_err(db_err)?,
            outcome: row.get(5).map_err(db_err)?,
            details: row.get(6).map_err(db_err)?,
        },
        prev_hash: hash_from_hex(seq, &prev_hash)?,
        hash: hash_from_hex(seq, &hash)?,
    })
}

/// Whether a public key (SHA-256 of its SPKI, hex) was revoked for keyCompromise.
fn key_compromised(conn: &Connection, public_key_sha256: &str) -> Result<bool, StoreError> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM certificates \
         WHERE public_key_sha256 = ?1 AND status = 'revoked' AND revocation_reason = 1)",
    )
    .map_err(db_err)?
    .query_row([public_key_sha256], |r| r.get(0))
    .map_err(db_err)
}

/// Inserts one certificate; `false` if its (issuer, serial) is taken.
fn insert_certificate(tx: &Transaction<'_>, c: &CertRecord, now: i64) -> Result<bool, StoreError> {
    let n = tx
        .prepare_cached(&format!(
            "INSERT INTO certificates ({CERT_COLUMNS}, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
             ON CONFLICT (issuer, serial_hex) DO NOTHING"
        ))
        .map_err(db_err)?
        .execute(params![
            c.issuer,
            hex::encode(&c.serial),
            c.subject,
            c.device_id,
            c.profile,
            c.not_before,
            c.not_after,
            c.status.as_str(),
            c.revoked_at,
            c.revocation_reason,
            c.fingerprint,
            c.public_key_sha256,
            c.der,
            c.crl_shard,
            now,
        ])
        .map_err(db_err)?;
    Ok(n == 1)
}

/// Runs a query and maps every row with `f`.
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
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err)).await
    }

    async fn create_hierarchy(
        &self,
        cas: &[(CaRecord, AuditEvent)],
        certificates: &[Issuance],
    ) -> Result<(), StoreError> {
        let cas = cas.to_vec();
        let certificates = certificates.to_vec();
        self.write(move |tx| {
            let now = now_us();
            // created_at orders list_cas: keep it strictly increasing even if the clock steps back.
            let last: Option<i64> =
                tx.query_row("SELECT MAX(created_at) FROM cas", [], |r| r.get(0)).map_err(db_err)?;
            let first = last.map_or(now, |l| now.max(l.saturating_add(1)));
            let mut events = Vec::with_capacity(cas.len() + certificates.len());
            for (created_at, (ca, audit)) in (first..).zip(cas) {
                let n = tx
                    .prepare_cached(
                        "INSERT INTO cas (name, cert_der, key_store, key_label, parent, created_at, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (name) DO NOTHING",
                    )
                    .map_err(db_err)?
                    .execute(params![ca.name, ca.cert_der, ca.key_store, ca.key_label, ca.parent, created_at, now])
                    .map_err(db_err)?;
                if n == 0 {
                    return Err(StoreError::AlreadyExists(format!("CA '{}'", ca.name)));
                }
                events.push(audit);
            }
            for item in certificates {
                if !insert_certificate(tx, &item.cert, now)? {
                    return Err(StoreError::AlreadyExists(format!(
                        "certificate {}/{}",
                        item.cert.issuer,
                        hex::encode(&item.cert.serial)
                    )));
                }
                events.push(item.audit);
            }
            append_chain(tx, events)
        })
        .await
    }

    async fn update_ca_certificate(
        &self,
        name: &str,
        cert_der: &[u8],
        parent: Option<&str>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        let cert_der = cert_der.to_vec();
        let parent = parent.map(str::to_owned);
        self.write(move |tx| {
            let n = tx
                .prepare_cached("UPDATE cas SET cert_der = ?1, parent = ?2, updated_at = ?3 WHERE name = ?4")
                .map_err(db_err)?
                .execute(params![cert_der, parent, now_us(), name])
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("CA '{name}'")));
            }
            append_chain(tx, vec![audit])
        })
        .await
    }

    async fn get_ca(&self, name: &str) -> Result<Option<CaRecord>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {CA_COLUMNS} FROM cas WHERE name = ?1");
            Ok(query_all(conn, &sql, [name], ca_from_row)?.into_iter().next())
        })
        .await
    }

    async fn list_cas(&self) -> Result<Vec<CaRecord>, StoreError> {
        self.read(|conn| {
            let sql = format!("SELECT {CA_COLUMNS} FROM cas ORDER BY created_at, name");
            query_all(conn, &sql, [], ca_from_row)
        })
        .await
    }

    async fn store_certificates(&self, batch: &[Issuance]) -> Result<Vec<IssuanceOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = batch.to_vec();
        self.write(move |tx| {
            let now = now_us();
            let mut outcomes = Vec::with_capacity(batch.len());
            let mut events = Vec::with_capacity(batch.len());
            for item in batch {
                if key_compromised(tx, &item.cert.public_key_sha256)? {
                    outcomes.push(IssuanceOutcome::KeyCompromised);
                    continue;
                }
                if !insert_certificate(tx, &item.cert, now)? {
                    outcomes.push(IssuanceOutcome::SerialTaken);
                    continue;
                }
                if let Some(effect) = &item.effect {
                    if let Err(reason) = apply_effect(tx, effect, &item.cert, now)? {
                        // Inside the transaction nobody has seen the row: take it back.
                        tx.prepare_cached("DELETE FROM certificates WHERE issuer = ?1 AND serial_hex = ?2")
                            .map_err(db_err)?
                            .execute(params![item.cert.issuer, hex::encode(&item.cert.serial)])
                            .map_err(db_err)?;
                        outcomes.push(IssuanceOutcome::Refused(reason));
                        continue;
                    }
                }
                outcomes.push(IssuanceOutcome::Stored);
                events.push(item.audit);
            }
            append_chain(tx, events)?;
            Ok(outcomes)
        })
        .await
    }

    async fn get_certificate(&self, issuer: &str, serial: &[u8]) -> Result<Option<CertRecord>, StoreError> {
        let issuer = issuer.to_owned();
        let serial_hex = hex::encode(serial);
        self.read(move |conn| {
            let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE issuer = ?1 AND serial_hex = ?2");
            Ok(query_all(conn, &sql, [issuer, serial_hex], cert_from_row)?.into_iter().next())
        })
        .await
    }

    async fn revoke_certificate(
        &self,
        issuer: &str,
        serial: &[u8],
        reason: i32,
        revoked_at: i64,
        audit: AuditEvent,
    ) -> Result<CertRecord, StoreError> {
        let (issuer, serial_hex) = (issuer.to_owned(), hex::encode(serial));
        self.write(move |tx| {
            let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE issuer = ?1 AND serial_hex = ?2");
            let current = query_all(tx, &sql, [issuer.clone(), serial_hex.clone()], cert_from_row)?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::NotFound(format!("certificate {issuer}/{serial_hex}")))?;
            if current.status == CertStatus::Revoked {
                return Err(StoreError::Conflict(format!("certificate {issuer}/{serial_hex} is already revoked")));
            }
            tx.prepare_cached(
                "UPDATE certificates SET status = 'revoked', revoked_at = ?1, revocation_reason = ?2 \
                 WHERE issuer = ?3 AND serial_hex = ?4",
            )
            .map_err(db_err)?
            .execute(params![revoked_at, reason, issuer, serial_hex])
            .map_err(db_err)?;
            append_chain(tx, vec![audit])?;
            Ok(CertRecord {
                status: CertStatus::Revoked,
                revoked_at: Some(revoked_at),
                revocation_reason: Some(reason),
                ..current
            })
        })
        .await
    }

    async fn revoke_devices(
        &self,
        which: &DeviceSelector,
        reason: i32,
        revoked_at: i64,
        audit: AuditEvent,
    ) -> Result<(u64, Vec<CertRecord>), StoreError> {
        let which = which.clone();
        self.write(move |tx| {
            let (column, value) = which.column_and_value();
            let n = tx
                .prepare_cached(&format!("UPDATE devices SET state = 'revoked', updated_at = ?1 WHERE {column} = ?2"))
                .map_err(db_err)?
                .execute(params![now_us(), value])
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound(which.to_string()));
            }
            let live =
                format!("device_id IN (SELECT device_id FROM devices WHERE {column} = ?1) AND status != 'revoked'");
            let certs = query_all(
                tx,
                &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE {live} ORDER BY id"),
                [value],
                cert_from_row,
            )?;
            tx.prepare_cached(&format!(
                "UPDATE certificates SET revoked_at = ?2, revocation_reason = ?3, status = 'revoked' WHERE {live}"
            ))
            .map_err(db_err)?
            .execute(params![value, revoked_at, reason])
            .map_err(db_err)?;
            append_chain(tx, vec![audit])?;
            let revoked = certs
                .into_iter()
                .map(|c| CertRecord {
                    status: CertStatus::Revoked,
                    revoked_at: Some(revoked_at),
                    revocation_reason: Some(reason),
                    ..c
                })
                .collect();
            Ok((n as u64, revoked))
        })
        .await
    }

    async fn public_key_compromised(&self, public_key_sha256: &str) -> Result<bool, StoreError> {
        let key = public_key_sha256.to_owned();
        self.read(move |conn| key_compromised(conn, &key)).await
    }

    async fn revoked_for_crl(
        &self,
        issuer: &str,
        now: i64,
        shard: Option<u32>,
        since: Option<i64>,
    ) -> Result<Vec<(Vec<u8>, i64, Option<i32>)>, StoreError> {
        let issuer = issuer.to_owned();
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT serial_hex, revoked_at, revocation_reason FROM certificates \
                 WHERE issuer = ?1 AND status = 'revoked' AND not_after >= ?2 \
                   AND (?3 IS NULL OR crl_shard = ?3) AND (?4 IS NULL OR revoked_at >= ?4) ORDER BY serial_hex",
                params![issuer, now, shard, since],
                |row| {
                    let serial_hex: String = row.get(0).map_err(db_err)?;
                    let serial = super::serial_from_hex(&serial_hex)?;
                    let at: Option<i64> = row.get(1).map_err(db_err)?;
                    Ok((serial, at.unwrap_or(0), row.get(2).map_err(db_err)?))
                },
            )
        })
        .await
    }

    async fn publish_crls(&self, crls: &[PublishedCrl], audit: AuditEvent) -> Result<(), StoreError> {
        let crls = crls.to_vec();
        self.write(move |tx| {
            for c in &crls {
                let number =
                    i64::try_from(c.number).map_err(|_| StoreError::Database("CRL number too large".into()))?;
                let base = c
                    .base_number
                    .map(i64::try_from)
                    .transpose()
                    .map_err(|_| StoreError::Database("CRL number too large".into()))?;
                tx.prepare_cached(
                    "INSERT INTO published_crls (ca, name, crl_number, base_number, this_update, next_update, der) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                     ON CONFLICT (ca, name) DO UPDATE SET crl_number = excluded.crl_number, \
                       base_number = excluded.base_number, this_update = excluded.this_update, \
                       next_update = excluded.next_update, der = excluded.der \
                     WHERE excluded.crl_number > published_crls.crl_number",
                )
                .map_err(db_err)?
                .execute(params![c.ca, c.name, number, base, c.this_update, c.next_update, c.der])
                .map_err(db_err)?;
            }
            append_chain(tx, vec![audit])
        })
        .await
    }

    async fn published_crl(&self, ca: &str, name: &str) -> Result<Option<PublishedCrl>, StoreError> {
        let (ca, name) = (ca.to_owned(), name.to_owned());
        self.read(move |conn| {
            let rows = query_all(
                conn,
                "SELECT ca, name, crl_number, base_number, this_update, next_update, der FROM published_crls \
                 WHERE ca = ?1 AND name = ?2",
                params![ca, name],
                |row| {
                    let number: i64 = row.get(2).map_err(db_err)?;
                    let base: Option<i64> = row.get(3).map_err(db_err)?;
                    Ok(PublishedCrl {
                        ca: row.get(0).map_err(db_err)?,
                        name: row.get(1).map_err(db_err)?,
                        number: u64::try_from(number).unwrap_or(0),
                        base_number: base.and_then(|b| u64::try_from(b).ok()),
                        this_update: row.get(4).map_err(db_err)?,
                        next_update: row.get(5).map_err(db_err)?,
                        der: row.get(6).map_err(db_err)?,
                    })
                },
            )?;
            Ok(rows.into_iter().next())
        })
        .await
    }

    async fn published_crl_head(&self, ca: &str, name: &str) -> Result<Option<CrlHead>, StoreError> {
        let (ca, name) = (ca.to_owned(), name.to_owned());
        self.read(move |conn| {
            let rows = query_all(
                conn,
                "SELECT crl_number, this_update, next_update FROM published_crls WHERE ca = ?1 AND name = ?2",
                params![ca, name],
                |row| {
                    let number: i64 = row.get(0).map_err(db_err)?;
                    Ok(CrlHead {
                        number: u64::try_from(number).unwrap_or(0),
                        this_update: row.get(1).map_err(db_err)?,
                        next_update: row.get(2).map_err(db_err)?,
                    })
                },
            )?;
            Ok(rows.into_iter().next())
        })
        .await
    }

    async fn try_job_lock(&self, _job: &str) -> Result<Option<JobLock>, StoreError> {
        // One service process owns an SQLite file (CLI commands run no jobs).
        Ok(Some(JobLock::exclusive()))
    }

    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, Vec<u8>, i64)>, StoreError> {
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT issuer, serial_hex, revoked_at FROM certificates \
                 WHERE revoked_at IS NOT NULL AND revoked_at >= ?1 ORDER BY revoked_at",
                params![since],
                |row| {
                    let serial_hex: String = row.get(1).map_err(db_err)?;
                    let serial = super::serial_from_hex(&serial_hex)?;
                    Ok((row.get(0).map_err(db_err)?, serial, row.get(2).map_err(db_err)?))
                },
            )
        })
        .await
    }

    async fn next_crl_number(&self, issuer: &str) -> Result<u64, StoreError> {
        let issuer = issuer.to_owned();
        self.write(move |tx| {
            let n: i64 = tx
                .query_row(
                    "INSERT INTO crl_numbers (issuer, number) VALUES (?1, 1) \
                     ON CONFLICT (issuer) DO UPDATE SET number = number + 1 RETURNING number",
                    [issuer],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            u64::try_from(n).map_err(|_| StoreError::Corrupt("negative CRL number".into()))
        })
        .await
    }

    async fn latest_valid_certificate(&self, issuer: &str, profile: &str) -> Result<Option<CertRecord>, StoreError> {
        let (issuer, profile) = (issuer.to_owned(), profile.to_owned());
        self.read(move |conn| {
            let sql = format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE issuer = ?1 AND profile = ?2 AND status = 'valid' \
                 ORDER BY not_after DESC, id DESC LIMIT 1"
            );
            Ok(query_all(conn, &sql, [issuer, profile], cert_from_row)?.into_iter().next())
        })
        .await
    }

    async fn certificate_by_fingerprint(&self, fingerprint: &str) -> Result<Option<CertRecord>, StoreError> {
        let fingerprint = fingerprint.to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE fingerprint = ?1");
            Ok(query_all(conn, &sql, [fingerprint], cert_from_row)?.into_iter().next())
        })
        .await
    }

    async fn certificate_keys(&self, after_id: i64, limit: i64) -> Result<Vec<CertificateKey>, StoreError> {
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT id, issuer, serial_hex FROM certificates WHERE id > ?1 ORDER BY id LIMIT ?2",
                params![after_id, limit],
                |row| {
                    let serial_hex: String = row.get(2).map_err(db_err)?;
                    Ok((row.get::<_, i64>(0).map_err(db_err)?, row.get::<_, String>(1).map_err(db_err)?, serial_hex))
                },
            )?
            .into_iter()
            .map(|(id, issuer, serial_hex)| {
                let serial = hex::decode(&serial_hex)
                    .map_err(|_| StoreError::Corrupt(format!("certificate {id}: serial '{serial_hex}' is not hex")))?;
                Ok(CertificateKey { id, issuer, serial })
            })
            .collect()
        })
        .await
    }

    async fn certificates_for_device(&self, device_id: &str) -> Result<Vec<CertRecord>, StoreError> {
        let device_id = device_id.to_owned();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE device_id = ?1 ORDER BY created_at DESC, id DESC"
            );
            query_all(conn, &sql, [device_id], cert_from_row)
        })
        .await
    }

    async fn add_devices(&self, devices: &[DeviceRecord], audit: AuditEvent) -> Result<(), StoreError> {
        if devices.is_empty() {
            return Ok(());
        }
        let devices = devices.to_vec();
        self.write(move |tx| {
            let now = now_us();
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO devices (device_id, model, class, batch, hardware_serial, state, reprovision, \
                         created_at, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) ON CONFLICT (device_id) DO NOTHING",
                    )
                    .map_err(db_err)?;
                for d in &devices {
                    let n = stmt
                        .execute(params![
                            d.device_id,
                            d.model,
                            d.class,
                            d.batch,
                            d.hardware_serial,
                            d.state.as_str(),
                            d.reprovision,
                            now
                        ])
                        .map_err(db_err)?;
                    if n == 0 {
                        return Err(StoreError::AlreadyExists(format!("device '{}'", d.device_id)));
                    }
                }
            }
            append_chain(tx, vec![audit])
        })
        .await
    }

    async fn get_device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let device_id = device_id.to_owned();
        self.read(move |conn| {
            let sql = "SELECT device_id, model, class, batch, hardware_serial, state, reprovision \
                       FROM devices WHERE device_id = ?1";
            Ok(query_all(conn, sql, [device_id], device_from_row)?.into_iter().next())
        })
        .await
    }

    async fn submit_enrollment_request(
        &self,
        request: &EnrollmentRequest,
        audit: AuditEvent,
    ) -> Result<EnrollmentRequest, StoreError> {
        let r = request.clone();
        self.write(move |tx| {
            let now = now_us();
            let n = tx
                .prepare_cached(
                    "INSERT INTO enrollment_requests (id, profile, device_id, requester, status, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5) ON CONFLICT (id) DO NOTHING",
                )
                .map_err(db_err)?
                .execute(params![r.id, r.profile, r.device_id, r.requester, now])
                .map_err(db_err)?;
            if n == 1 {
                append_chain(tx, vec![audit])?;
            }
            let sql = format!("SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE id = ?1");
            query_all(tx, &sql, [r.id.clone()], request_from_row)?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Database("enrollment request vanished".into()))
        })
        .await
    }

    async fn get_enrollment_request(&self, id: &str) -> Result<Option<EnrollmentRequest>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE id = ?1");
            Ok(query_all(conn, &sql, [id], request_from_row)?.into_iter().next())
        })
        .await
    }

    async fn decide_enrollment_request(
        &self,
        id: &str,
        approve: bool,
        decided_by: &str,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let (id, decided_by) = (id.to_owned(), decided_by.to_owned());
        self.write(move |tx| {
            let status = if approve { "approved" } else { "rejected" };
            let n = tx
                .prepare_cached(
                    "UPDATE enrollment_requests SET status = ?1, decided_by = ?2, updated_at = ?3 \
                     WHERE id = ?4 AND status = 'pending'",
                )
                .map_err(db_err)?
                .execute(params![status, decided_by, now_us(), id])
                .map_err(db_err)?;
            if n == 0 {
                let sql = format!("SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE id = ?1");
                return Err(match query_all(tx, &sql, [id.clone()], request_from_row)?.into_iter().next() {
                    None => StoreError::NotFound(format!("enrollment request '{id}'")),
                    Some(r) => StoreError::Conflict(format!(
                        "enrollment request '{id}' is already {}; decisions are final",
                        r.status.as_str()
                    )),
                });
            }
            append_chain(tx, vec![audit])
        })
        .await
    }

    async fn mark_enrollment_request_issued(&self, id: &str, issuer: &str, serial: &[u8]) -> Result<(), StoreError> {
        let (id, issuer, serial_hex) = (id.to_owned(), issuer.to_owned(), hex::encode(serial));
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE enrollment_requests SET status = 'issued', issuer = ?1, serial_hex = ?2, updated_at = ?3 \
                     WHERE id = ?4 AND status = 'approved'",
                )
                .map_err(db_err)?
                .execute(params![issuer, serial_hex, now_us(), id])
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("approved enrollment request '{id}'")));
            }
            Ok(())
        })
        .await
    }

    async fn list_enrollment_requests(
        &self,
        status: Option<RequestStatus>,
    ) -> Result<Vec<EnrollmentRequest>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE ?1 IS NULL OR status = ?1 ORDER BY created_at, id"
            );
            query_all(conn, &sql, [status.map(RequestStatus::as_str)], request_from_row)
        })
        .await
    }

    async fn add_station(&self, station: &StationRecord, audit: AuditEvent) -> Result<(), StoreError> {
        let st = station.clone();
        self.write(move |tx| {
            let now = now_us();
            let n = tx
                .prepare_cached(
                    "INSERT INTO stations (name, enabled, models, batches, secret_hash, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (name) DO NOTHING",
                )
                .map_err(db_err)?
                .execute(params![st.name, st.enabled, st.models.join(","), st.batches.join(","), st.secret_hash, now])
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!("station '{}'", st.name)));
            }
            append_chain(tx, vec![audit])
        })
        .await
    }

    async fn get_station(&self, name: &str) -> Result<Option<StationRecord>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            let sql = "SELECT name, enabled, models, batches, secret_hash FROM stations WHERE name = ?1";
            Ok(query_all(conn, sql, [name], station_from_row)?.into_iter().next())
        })
        .await
    }

    async fn list_stations(&self) -> Result<Vec<StationRecord>, StoreError> {
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT name, enabled, models, batches, secret_hash FROM stations ORDER BY name",
                [],
                station_from_row,
            )
        })
        .await
    }

    async fn add_api_token(&self, token: &ApiToken, audit: AuditEvent) -> Result<(), StoreError> {
        let t = token.clone();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "INSERT INTO api_tokens (id, name, role, secret_hash, created_at, revoked_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
                )
                .map_err(db_err)?
                .execute(params![t.id, t.name, t.role.as_str(), t.secret_hash, t.created_at, t.revoked_at])
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!("API token '{}'", t.id)));
            }
            append_chain(tx, vec![audit])
        })
        .await
    }

    async fn get_api_token(&self, id: &str) -> Result<Option<ApiToken>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1");
            Ok(query_all(conn, &sql, [id], token_from_row)?.into_iter().next())
        })
        .await
    }

    async fn revoke_api_token(&self, id: &str, at: i64, audit: AuditEvent) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |tx| {
            let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1");
            let current = query_all(tx, &sql, [id.clone()], token_from_row)?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::NotFound(format!("API token '{id}'")))?;
            if current.revoked_at.is_some() {
                return Err(StoreError::Conflict(format!("API token '{id}' is already revoked")));
            }
            tx.prepare_cached("UPDATE api_tokens SET revoked_at = ?1 WHERE id = ?2")
                .map_err(db_err)?
                .execute(params![at, id])
                .map_err(db_err)?;
            append_chain(tx, vec![audit])
        })
        .await
    }

    async fn list_api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        self.read(move |conn| {
            let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id");
            query_all(conn, &sql, [], token_from_row)
        })
        .await
    }

    async fn submit_update_request(&self, request: &UpdateRequest, audit: AuditEvent) -> Result<(), StoreError> {
        let r = request.clone();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "INSERT INTO update_requests (id, profile, csr_der, classes, validity_days, requester, status, \
                     created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .map_err(db_err)?
                .execute(params![
                    r.id,
                    r.profile,
                    r.csr_der,
                    r.classes.join(","),
                    r.validity_days,
                    r.requester,
                    r.created_at,
                    r.expires_at
                ])
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!("update request '{}'", r.id)));
            }
            append_chain(tx, vec![audit])
        })
        .await
    }

    async fn get_update_request(&self, id: &str) -> Result<Option<UpdateRequest>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| load_update_request(conn, &id)).await
    }

    async fn list_update_requests(&self, status: Option<RequestStatus>) -> Result<Vec<UpdateRequest>, StoreError> {
        self.read(move |conn| {
            let sql = "SELECT id FROM update_requests WHERE ?1 IS NULL OR status = ?1 ORDER BY created_at, id";
            let ids: Vec<String> =
                query_all(conn, sql, [status.map(RequestStatus::as_str)], |r| r.get(0).map_err(db_err))?;
            ids.iter().filter_map(|id| load_update_request(conn, id).transpose()).collect()
        })
        .await
    }

    async fn approve_update_request(
        &self,
        id: &str,
        approver: &str,
        required: usize,
        audit: AuditEvent,
    ) -> Result<UpdateRequest, StoreError> {
        let (id, approver) = (id.to_owned(), approver.to_owned());
        self.write(move |tx| {
            let now = now_us() / 1_000_000;
            let request =
                load_update_request(tx, &id)?.ok_or_else(|| StoreError::NotFound(format!("update request '{id}'")))?;
            if let Some(conflict) = super::approval_conflict(&request, &approver, now) {
                return Err(conflict);
            }
            tx.prepare_cached(
                "INSERT INTO update_request_approvals (request_id, approver, approved_at) VALUES (?1, ?2, ?3)",
            )
            .map_err(db_err)?
            .execute(params![id, approver, now])
            .map_err(db_err)?;
            if request.approvals.len() + 1 >= required {
                tx.prepare_cached(
                    "UPDATE update_requests SET status = 'approved' WHERE id = ?1 AND status = 'pending'",
                )
                .map_err(db_err)?
                .execute(params![id])
                .map_err(db_err)?;
            }
            append_chain(tx, vec![audit])?;
            load_update_request(tx, &id)?.ok_or_else(|| StoreError::Database("update request vanished".into()))
        })
        .await
    }

    async fn reject_update_request(
        &self,
        id: &str,
        rejected_by: &str,
        reason: &str,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let (id, rejected_by, reason) = (id.to_owned(), rejected_by.to_owned(), reason.to_owned());
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE update_requests SET status = 'rejected', rejected_by = ?1, reason = ?2 \
                     WHERE id = ?3 AND status = 'pending'",
                )
                .map_err(db_err)?
                .execute(params![rejected_by, reason, id])
                .map_err(db_err)?;
            if n == 0 {
                return Err(match load_update_request(tx, &id)? {
                    None => StoreError::NotFound(format!("update request '{id}'")),
                    Some(r) => StoreError::Conflict(format!(
                        "update request '{id}' is already {}; decisions are final",
                        r.status.as_str()
                    )),
                });
            }
            append_chain(tx, vec![audit])
        })
        .await
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let events = events.to_vec();
        self.write(move |tx| append_chain(tx, events)).await
    }

    async fn audit_entries(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = limit.max(0);
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT seq, time_us, actor, action, target, outcome, details, prev_hash, hash \
                 FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                params![after_seq, limit],
                entry_from_row,
            )
        })
        .await
    }
}
