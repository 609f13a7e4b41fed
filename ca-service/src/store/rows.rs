//! Row mapping, written once for both dialects: one column list and one function per
//! record type. Each dialect's row type implements [`Columns`]; every query that reads
//! a record selects its column list and maps the row here, so a column added to a
//! record is added in one place, and SQLite and PostgreSQL cannot read it differently
//! (DESIGN invariant 5).
//!
//! The mappers take the index of the record's first column, so a statement that
//! joins several records in one row (PostgreSQL's batched `enrollment_contexts`) maps
//! each from where its columns start.

use super::*;
use crate::audit::{AuditEntry, AuditEvent};

/// A value both dialects can read from a column.
pub(crate) trait Column: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a> {}

impl<T> Column for T where T: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a> {}

/// A result row, read by column index.
pub(crate) trait Columns {
    /// Column `i`.
    fn get<T: Column>(&self, i: usize) -> Result<T, StoreError>;
    /// A small integer column (`INTEGER` in SQLite, `int4` in PostgreSQL), widened.
    fn int4(&self, i: usize) -> Result<i64, StoreError>;
}

pub(crate) const CA_COLUMNS: &str =
    "name, cert_der, key_store, key_label, parent, issues_from, destroyed_at, old_with_new, new_with_old";

pub(crate) fn ca_at(row: &impl Columns, at: usize) -> Result<CaRecord, StoreError> {
    Ok(CaRecord {
        name: row.get(at)?,
        cert_der: row.get(at + 1)?,
        key_store: row.get(at + 2)?,
        key_label: row.get(at + 3)?,
        parent: row.get(at + 4)?,
        issues_from: row.get(at + 5)?,
        destroyed_at: row.get(at + 6)?,
        old_with_new: row.get(at + 7)?,
        new_with_old: row.get(at + 8)?,
    })
}

pub(crate) const CERT_COLUMNS: &str =
    "issuer, serial_hex, subject, device_id, profile, not_before, not_after, status, \
                            revoked_at, revocation_reason, fingerprint, public_key_sha256, der, crl_shard";

pub(crate) fn cert_at(row: &impl Columns, at: usize) -> Result<CertRecord, StoreError> {
    let serial_hex: String = row.get(at + 1)?;
    let status: String = row.get(at + 7)?;
    Ok(CertRecord {
        issuer: row.get(at)?,
        serial: serial_from_hex(&serial_hex)?,
        subject: row.get(at + 2)?,
        device_id: row.get(at + 3)?,
        profile: row.get(at + 4)?,
        not_before: row.get(at + 5)?,
        not_after: row.get(at + 6)?,
        status: CertStatus::parse(&status)?,
        revoked_at: row.get(at + 8)?,
        revocation_reason: reason_from_code(row.get(at + 9)?)?,
        fingerprint: row.get(at + 10)?,
        public_key_sha256: row.get(at + 11)?,
        der: row.get(at + 12)?,
        crl_shard: u32::try_from(row.int4(at + 13)?).map_err(|_| StoreError::Corrupt("negative CRL shard".into()))?,
    })
}

/// What an `UPDATE … RETURNING` of a revocation returns: a [`RevokedCert`]'s columns,
/// then the row id ([`revoked_in_issue_order`]).
pub(crate) const REVOKED_RETURNING: &str =
    "issuer, serial_hex, device_id, profile, not_after, revoked_at, revocation_reason, crl_shard, id";

/// A row of [`REVOKED_RETURNING`]: its id and the certificate.
pub(crate) fn revoked_with_id(row: &impl Columns) -> Result<(i64, RevokedCert), StoreError> {
    let serial_hex: String = row.get(1)?;
    let revoked = RevokedCert {
        issuer: row.get(0)?,
        serial: serial_from_hex(&serial_hex)?,
        device_id: row.get(2)?,
        profile: row.get(3)?,
        not_after: row.get(4)?,
        revoked_at: row.get(5)?,
        reason: reason_from_code(row.get(6)?)?,
        crl_shard: u32::try_from(row.int4(7)?).map_err(|_| StoreError::Corrupt("negative CRL shard".into()))?,
    };
    Ok((row.get(8)?, revoked))
}

/// The certificates a revocation returned, in the order they were issued (RETURNING's
/// order is the engine's, in either dialect).
pub(crate) fn revoked_in_issue_order(mut rows: Vec<(i64, RevokedCert)>) -> Vec<RevokedCert> {
    rows.sort_unstable_by_key(|(id, _)| *id);
    rows.into_iter().map(|(_, c)| c).collect()
}

pub(crate) const DEVICE_COLUMNS: &str = "device_id, model, class, batch, hardware_serial, state, reprovision";

pub(crate) fn device_at(row: &impl Columns, at: usize) -> Result<DeviceRecord, StoreError> {
    let state: String = row.get(at + 5)?;
    Ok(DeviceRecord {
        device_id: row.get(at)?,
        model: row.get(at + 1)?,
        class: row.get(at + 2)?,
        batch: row.get(at + 3)?,
        hardware_serial: row.get(at + 4)?,
        state: DeviceState::parse(&state)?,
        reprovision: row.get(at + 6)?,
    })
}

pub(crate) const STATION_COLUMNS: &str = "name, enabled, models, batches, secret_hash";

pub(crate) fn station_at(row: &impl Columns, at: usize) -> Result<StationRecord, StoreError> {
    let models: String = row.get(at + 2)?;
    let batches: String = row.get(at + 3)?;
    Ok(StationRecord {
        name: row.get(at)?,
        enabled: row.get(at + 1)?,
        models: split_list(&models),
        batches: split_list(&batches),
        secret_hash: row.get(at + 4)?,
    })
}

pub(crate) const REQUEST_COLUMNS: &str = "id, profile, device_id, requester, status, decided_by, issuer, serial_hex";

pub(crate) fn request_at(row: &impl Columns, at: usize) -> Result<EnrollmentRequest, StoreError> {
    let status: String = row.get(at + 4)?;
    Ok(EnrollmentRequest {
        id: row.get(at)?,
        profile: row.get(at + 1)?,
        device_id: row.get(at + 2)?,
        requester: row.get(at + 3)?,
        status: RequestStatus::parse(&status)?,
        decided_by: row.get(at + 5)?,
        issued: issued_pair(row.get(at + 6)?, row.get(at + 7)?)?,
    })
}

pub(crate) const UPDATE_COLUMNS: &str =
    "id, profile, csr_der, classes, validity_days, requester, status, rejected_by, \
                              reason, issuer, serial_hex, created_at, expires_at";

/// An update request without its approvals (each dialect's `load_update_request`
/// adds them).
pub(crate) fn update_request_at(row: &impl Columns, at: usize) -> Result<UpdateRequest, StoreError> {
    let status: String = row.get(at + 6)?;
    let classes: String = row.get(at + 3)?;
    let validity_days = row.int4(at + 4)?;
    Ok(UpdateRequest {
        id: row.get(at)?,
        profile: row.get(at + 1)?,
        csr_der: row.get(at + 2)?,
        classes: split_list(&classes),
        validity_days: u32::try_from(validity_days)
            .map_err(|_| StoreError::Corrupt(format!("negative validity {validity_days}")))?,
        requester: row.get(at + 5)?,
        status: RequestStatus::parse(&status)?,
        approvals: Vec::new(),
        rejected_by: row.get(at + 7)?,
        reason: row.get(at + 8)?,
        issued: issued_pair(row.get(at + 9)?, row.get(at + 10)?)?,
        created_at: row.get(at + 11)?,
        expires_at: row.get(at + 12)?,
    })
}

pub(crate) const TOKEN_COLUMNS: &str = "id, name, role, secret_hash, created_at, revoked_at";

pub(crate) fn token_at(row: &impl Columns, at: usize) -> Result<ApiToken, StoreError> {
    let role: String = row.get(at + 2)?;
    Ok(ApiToken {
        id: row.get(at)?,
        name: row.get(at + 1)?,
        role: Role::parse(&role)?,
        secret_hash: row.get(at + 3)?,
        created_at: row.get(at + 4)?,
        revoked_at: row.get(at + 5)?,
    })
}

pub(crate) const AUDIT_COLUMNS: &str = "seq, time_us, actor, action, target, outcome, details, leaf_hash";

pub(crate) fn entry_at(row: &impl Columns, at: usize) -> Result<AuditEntry, StoreError> {
    let seq: i64 = row.get(at)?;
    let leaf: Option<Vec<u8>> = row.get(at + 7)?;
    Ok(AuditEntry {
        seq,
        time_us: row.get(at + 1)?,
        event: AuditEvent {
            actor: row.get(at + 2)?,
            action: row.get(at + 3)?,
            target: row.get(at + 4)?,
            outcome: row.get(at + 5)?,
            details: row.get(at + 6)?,
        },
        leaf_hash: leaf.map(|h| hash_from_bytes(&format!("audit entry {seq}"), &h)).transpose()?,
    })
}

pub(crate) const CRL_COLUMNS: &str = "ca, name, crl_number, base_number, this_update, next_update, der";

pub(crate) fn crl_at(row: &impl Columns, at: usize) -> Result<PublishedCrl, StoreError> {
    let number: i64 = row.get(at + 2)?;
    let base: Option<i64> = row.get(at + 3)?;
    Ok(PublishedCrl {
        ca: row.get(at)?,
        name: row.get(at + 1)?,
        number: u64::try_from(number).unwrap_or(0),
        base_number: base.and_then(|b| u64::try_from(b).ok()),
        this_update: row.get(at + 4)?,
        next_update: row.get(at + 5)?,
        der: row.get(at + 6)?,
    })
}

pub(crate) const CRL_HEAD_COLUMNS: &str = "crl_number, this_update, next_update";

pub(crate) fn crl_head_at(row: &impl Columns, at: usize) -> Result<CrlHead, StoreError> {
    let number: i64 = row.get(at)?;
    Ok(CrlHead {
        number: u64::try_from(number).unwrap_or(0),
        this_update: row.get(at + 1)?,
        next_update: row.get(at + 2)?,
    })
}

/// A stored audit hash (hex) → its 32 octets.
pub(crate) const CHECKPOINT_COLUMNS: &str = "size, root, note, signed_at";

pub(crate) fn checkpoint_from_row(row: &impl Columns) -> Result<StoredCheckpoint, StoreError> {
    let size: i64 = row.get(0)?;
    let root: Vec<u8> = row.get(1)?;
    Ok(StoredCheckpoint {
        size: u64::try_from(size).map_err(|_| StoreError::Corrupt(format!("checkpoint size {size}")))?,
        root: hash_from_bytes(&format!("checkpoint {size}"), &root)?,
        note: row.get(2)?,
        signed_at: row.get(3)?,
    })
}

/// Hashes read for tile level `level` as (index, hash) rows from index `start` on:
/// stops at the first gap (a deleted entry) or row without a hash (a leaf from
/// before the tree, not yet filled in), so a shorter answer is never a shifted one.
pub(crate) fn stored_hashes(
    level: u8,
    start: i64,
    rows: Vec<(i64, Option<Vec<u8>>)>,
) -> Result<Vec<tlog::Hash>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for (expected, (i, row)) in (start..).zip(rows) {
        let (true, Some(bytes)) = (i == expected, row) else { break };
        out.push(hash_from_bytes(&format!("tree hash {level}/{i}"), &bytes)?);
    }
    Ok(out)
}

/// A stored 32-byte hash; `what` names the row in the error.
pub(crate) fn hash_from_bytes(what: &str, bytes: &[u8]) -> Result<tlog::Hash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt(format!("{what}: stored hash is {} bytes, not 32", bytes.len())))
}

/// The `*_from_row` forms: a record from a row that holds only its columns.
pub(crate) fn ca_from_row(row: &impl Columns) -> Result<CaRecord, StoreError> {
    ca_at(row, 0)
}

pub(crate) fn cert_from_row(row: &impl Columns) -> Result<CertRecord, StoreError> {
    cert_at(row, 0)
}

pub(crate) fn device_from_row(row: &impl Columns) -> Result<DeviceRecord, StoreError> {
    device_at(row, 0)
}

pub(crate) fn station_from_row(row: &impl Columns) -> Result<StationRecord, StoreError> {
    station_at(row, 0)
}

pub(crate) fn request_from_row(row: &impl Columns) -> Result<EnrollmentRequest, StoreError> {
    request_at(row, 0)
}

pub(crate) fn update_request_from_row(row: &impl Columns) -> Result<UpdateRequest, StoreError> {
    update_request_at(row, 0)
}

pub(crate) fn token_from_row(row: &impl Columns) -> Result<ApiToken, StoreError> {
    token_at(row, 0)
}

pub(crate) fn entry_from_row(row: &impl Columns) -> Result<AuditEntry, StoreError> {
    entry_at(row, 0)
}

/// Stored certificates counted by issuer, profile and [`CertState`] at `$1` (unix
/// seconds; valid through notAfter inclusive), ordered by issuer, profile, state name;
/// parameters from [`count_day`]. Read from the triggers' tallies (migration V18):
/// days before the one `$1` falls in (`$4`) are expired, later ones valid; only the
/// valid certificates of that day (`$2` ≤ notAfter < `$3`) are read, through
/// `certificates_lifecycle`. One statement for both dialects: SQLite numbers `$n`
/// by first appearance, so they appear in order.
pub(crate) const CERTIFICATE_COUNTS_SQL: &str = "SELECT issuer, profile, state, CAST(SUM(n) AS BIGINT) FROM ( \
         SELECT issuer, profile, CASE WHEN not_after < $1 THEN 'expired' ELSE 'valid' END AS state, 1 AS n \
         FROM certificates WHERE status = 'valid' AND not_after >= $2 AND not_after < $3 \
       UNION ALL \
         SELECT issuer, profile, CASE WHEN status = 'valid' AND day < $4 THEN 'expired' ELSE status END, n \
         FROM certificate_tally WHERE NOT (status = 'valid' AND day = $4) \
     ) counted GROUP BY issuer, profile, state HAVING SUM(n) > 0 ORDER BY issuer, profile, state";

/// The parameters of [`CERTIFICATE_COUNTS_SQL`] for `now`: now, the first second of
/// its day and of the next, the day.
pub(crate) fn count_day(now: i64) -> [i64; 4] {
    // The tallies' day is not_after / 86400 in SQL: integer division, toward zero.
    let day = now / 86_400;
    [now, day * 86_400, (day + 1) * 86_400, day]
}

pub(crate) fn certificate_count(row: &impl Columns) -> Result<CertificateCount, StoreError> {
    let state: String = row.get(2)?;
    let count: i64 = row.get(3)?;
    Ok(CertificateCount {
        issuer: row.get(0)?,
        profile: row.get(1)?,
        state: CertState::parse(&state)?,
        count: u64::try_from(count).unwrap_or(0),
    })
}

/// The registry's devices counted by state (the triggers' tally, migration V18).
pub(crate) const DEVICE_COUNTS_SQL: &str = "SELECT state, n FROM device_tally WHERE n > 0 ORDER BY state";

pub(crate) fn device_count(row: &impl Columns) -> Result<(DeviceState, u64), StoreError> {
    let (state, count): (String, i64) = (row.get(0)?, row.get(1)?);
    Ok((DeviceState::parse(&state)?, u64::try_from(count).unwrap_or(0)))
}

/// The columns of a [`LifecycleRow`], from `certificates c LEFT JOIN devices d`.
const LIFECYCLE_COLUMNS: &str =
    "c.issuer, c.serial_hex, c.subject, c.profile, c.device_id, d.batch, d.model, c.not_before, c.not_after";

pub(crate) fn lifecycle_row(row: &impl Columns) -> Result<LifecycleRow, StoreError> {
    Ok(LifecycleRow {
        issuer: row.get(0)?,
        serial_hex: row.get(1)?,
        subject: row.get(2)?,
        profile: row.get(3)?,
        device_id: row.get(4)?,
        batch: row.get(5)?,
        model: row.get(6)?,
        not_before: row.get(7)?,
        not_after: row.get(8)?,
    })
}

/// The filter's parameters $3..$6 (profile, issuer, batch, model; NULL = any).
const REPORT_FILTER: &str =
    "(CAST($3 AS TEXT) IS NULL OR c.profile = $3) AND (CAST($4 AS TEXT) IS NULL OR c.issuer = $4) \
     AND (CAST($5 AS TEXT) IS NULL OR d.batch = $5) AND (CAST($6 AS TEXT) IS NULL OR d.model = $6)";

/// The page: after ($7, $8, $9) in (notAfter, issuer, serial) order, at most $10.
const REPORT_PAGE: &str = "AND (c.not_after, c.issuer, c.serial_hex) > ($7, $8, $9) \
     ORDER BY c.not_after, c.issuer, c.serial_hex LIMIT $10";

/// `valid`, $1 ≤ notAfter < $2 (the lifecycle index's range), the filter.
fn expiring_where() -> String {
    format!("c.status = 'valid' AND c.not_after >= $1 AND c.not_after < $2 AND {REPORT_FILTER}")
}

/// Parameters $1..$10 of [`expiring_sql`] and [`stale_sql`], $1..$6 and $7 = limit of
/// [`expiring_groups_sql`] (whose groups without a key come last, in both dialects).
pub(crate) fn expiring_sql() -> String {
    format!(
        "SELECT {LIFECYCLE_COLUMNS} FROM certificates c LEFT JOIN devices d ON d.device_id = c.device_id \
         WHERE {} {REPORT_PAGE}",
        expiring_where()
    )
}

pub(crate) fn expiring_groups_sql(group_by: GroupBy) -> String {
    let key = group_by.column();
    format!(
        "SELECT {key}, count(*), min(c.not_after) FROM certificates c LEFT JOIN devices d ON d.device_id = c.device_id \
         WHERE {} GROUP BY {key} ORDER BY {key} IS NULL, {key} LIMIT $7",
        expiring_where()
    )
}

pub(crate) fn expiry_group(row: &impl Columns) -> Result<ExpiryGroup, StoreError> {
    let count: i64 = row.get(1)?;
    Ok(ExpiryGroup { key: row.get(0)?, count: u64::try_from(count).unwrap_or(0), first_not_after: row.get(2)? })
}

/// $1 = now, $2 = the notAfter bound: the renewal point is the centre of the profile's
/// renewal window, `points` (profile → parts per million of the lifetime; others
/// [`DEFAULT_RENEWAL_PPM`]), in integer seconds in both dialects. Profile names come
/// from the configuration, quoted as SQL literals.
/// Where the default renewal window is centred, ppm of the lifetime (ACME ARI's two
/// thirds, as `enrollment::ra::RenewalPolicy::default`).
pub const DEFAULT_RENEWAL_PPM: i64 = 666_667;

pub(crate) fn stale_sql(points: &[(String, i64)]) -> String {
    let ppm = match points {
        [] => DEFAULT_RENEWAL_PPM.to_string(),
        points => {
            let mut case = String::from("CASE c.profile");
            for (profile, at) in points {
                case.push_str(&format!(" WHEN '{}' THEN {at}", profile.replace('\'', "''")));
            }
            case + &format!(" ELSE {DEFAULT_RENEWAL_PPM} END")
        }
    };
    format!(
        "SELECT {LIFECYCLE_COLUMNS} FROM certificates c JOIN devices d ON d.device_id = c.device_id \
         WHERE c.status = 'valid' AND c.not_after <= $2 AND d.state = 'active' \
         AND c.not_before + (c.not_after - c.not_before) * ({ppm}) / 1000000 <= $1 AND {REPORT_FILTER} \
         AND NOT EXISTS (SELECT 1 FROM certificates n WHERE n.device_id = c.device_id \
             AND n.not_before > c.not_before AND n.status <> 'revoked') {REPORT_PAGE}"
    )
}

/// `column = $1 AND column = $2 AND …` (each followed by ` AND `) for the fields that
/// are set, numbered from $1, and their values in that order. The columns are fixed
/// names, never the caller's. A field not set is left out of the statement rather than
/// written `($1 IS NULL OR column = $1)`: SQLite plans a statement before it sees the
/// values, so that form would keep it from the index that leads with the column.
fn equalities(fields: &[(&'static str, Option<&str>)]) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut values = Vec::new();
    for (column, value) in fields {
        if let Some(value) = value {
            values.push((*value).to_string());
            sql.push_str(&format!("{column} = ${} AND ", values.len()));
        }
    }
    (sql, values)
}

/// Devices matching `query`, in id order: the query's set fields are $1…$n (their
/// values returned with the statement), the device id to start after is $n+1 and the
/// limit $n+2. Indexes `devices (batch, device_id)`, `(model, device_id)` and
/// `(state, device_id)` serve a page of one batch, model or state.
pub(crate) fn find_devices_sql(query: &DeviceQuery) -> (String, Vec<String>) {
    let (filter, values) = equalities(&[
        ("batch", query.batch.as_deref()),
        ("model", query.model.as_deref()),
        ("state", query.state.map(DeviceState::as_str)),
    ]);
    let n = values.len();
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE {filter}device_id > ${} ORDER BY device_id LIMIT ${}",
        n + 1,
        n + 2
    );
    (sql, values)
}

/// What `revoke_devices` would revoke on `column = $1`: (devices, certificates). The
/// predicates are those of both dialects' `revoke_devices` (`certificates.rs`): every
/// device whose column equals the value, whatever its state, and every certificate of
/// those devices whose status is not `revoked` (valid and superseded ones).
pub(crate) fn revocation_preview_sql(column: &'static str) -> String {
    format!(
        "SELECT (SELECT count(*) FROM devices WHERE {column} = $1), \
         (SELECT count(*) FROM certificates \
          WHERE device_id IN (SELECT device_id FROM devices WHERE {column} = $1) AND status != 'revoked')"
    )
}

pub(crate) fn revocation_preview(row: &impl Columns) -> Result<RevocationPreview, StoreError> {
    let (devices, certificates): (i64, i64) = (row.get(0)?, row.get(1)?);
    Ok(RevocationPreview {
        devices: u64::try_from(devices).unwrap_or(0),
        certificates: u64::try_from(certificates).unwrap_or(0),
    })
}

/// Audit entries matching `query`, newest first: the query's set fields are $1…$n
/// (their values returned with the statement), the seq to stay below is $n+1 and the
/// limit $n+2. Indexes `audit_log (actor, seq)`, `(action, seq)` and `(target, seq)`
/// serve a page of one actor, action or target read backwards.
pub(crate) fn find_audit_sql(query: &AuditQuery) -> (String, Vec<String>) {
    let (filter, values) = equalities(&[
        ("actor", query.actor.as_deref()),
        ("action", query.action.as_deref()),
        ("target", query.target.as_deref()),
    ]);
    let n = values.len();
    let sql = format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {filter}seq < ${} ORDER BY seq DESC LIMIT ${}",
        n + 1,
        n + 2
    );
    (sql, values)
}

/// A statement written with PostgreSQL's `$N` parameters for SQLite, where `$N` would
/// be a *named* parameter numbered by first appearance: `?N` keeps the numbers.
pub(crate) fn numbered_for_sqlite(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}
