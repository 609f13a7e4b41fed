//! The audit chain: extending it inside every writing transaction, and reading it.

use super::*;
use crate::audit;

/// The last entry's (seq, hash), or (0, GENESIS_HASH) for an empty log.
pub(super) fn chain_head(tx: &Transaction<'_>) -> Result<(i64, [u8; 32]), StoreError> {
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
pub(super) fn append_chain(tx: &Transaction<'_>, events: Vec<AuditEvent>) -> Result<(), StoreError> {
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

#[async_trait]
impl AuditStore for SqliteStore {
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
                &format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
                params![after_seq, limit],
                |row| entry_from_row(row),
            )
        })
        .await
    }
}
