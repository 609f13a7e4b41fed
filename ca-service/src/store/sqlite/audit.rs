//! The audit log and its tree: appending entries (with their leaf hashes) inside
//! every writing transaction, reading them, and the tree's stored hashes and
//! checkpoints.

use super::*;
use crate::audit;

/// The last entry's seq, or 0 for an empty log.
pub(super) fn last_seq(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    let mut stmt = tx.prepare_cached("SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1").map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    match rows.next().map_err(db_err)? {
        Some(row) => row.get(0).map_err(db_err),
        None => Ok(0),
    }
}

/// Appends `events` to the log inside the caller's transaction (the writer
/// connection serialises appends, so seqs have no gaps).
pub(super) fn append_log(tx: &Transaction<'_>, events: Vec<AuditEvent>) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let entries = audit::entries_after(last_seq(tx)?, now_us(), events);
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO audit_log (seq, time_us, actor, action, target, outcome, details, leaf_hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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
            e.leaf_hash.as_ref().map(|h| h.as_slice()),
        ])
        .map_err(db_err)?;
    }
    Ok(())
}

fn index(i: u64) -> Result<i64, StoreError> {
    i64::try_from(i).map_err(|_| StoreError::Database(format!("tree index {i} out of range")))
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let events = events.to_vec();
        self.write(move |tx| append_log(tx, events)).await
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

    async fn find_audit(
        &self,
        query: &AuditQuery,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        use rusqlite::types::Value;
        let (sql, values) = find_audit_sql(query);
        let sql = numbered_for_sqlite(&sql);
        let mut params: Vec<Value> = values.into_iter().map(Value::Text).collect();
        params.push(Value::Integer(before.unwrap_or(i64::MAX)));
        params.push(Value::Integer(limit.max(0)));
        self.read(move |conn| query_all(conn, &sql, rusqlite::params_from_iter(params), |row| entry_from_row(row)))
            .await
    }
}

#[async_trait]
impl LogStore for SqliteStore {
    async fn log_size(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let seq: Option<i64> =
                conn.query_row("SELECT max(seq) FROM audit_log", [], |r| r.get(0)).map_err(db_err)?;
            Ok(seq.unwrap_or(0).max(0) as u64)
        })
        .await
    }

    async fn log_hashes(&self, level: u8, start: u64, end: u64) -> Result<Vec<tlog::Hash>, StoreError> {
        let (start, end) = (index(start)?, index(end)?);
        self.read(move |conn| {
            let pair = |row: &Row<'_>| Ok((row.get(0).map_err(db_err)?, row.get(1).map_err(db_err)?));
            let rows = if level == 0 {
                // Leaf i is entry seq i + 1.
                query_all(
                    conn,
                    "SELECT seq - 1, leaf_hash FROM audit_log WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
                    params![start, end],
                    pair,
                )?
            } else {
                query_all(
                    conn,
                    "SELECT idx, hash FROM log_nodes WHERE level = ?1 AND idx >= ?2 AND idx < ?3 ORDER BY idx",
                    params![level, start, end],
                    pair,
                )?
            };
            stored_hashes(level, start, rows)
        })
        .await
    }

    async fn put_log_nodes(&self, level: u8, start: u64, hashes: &[tlog::Hash]) -> Result<(), StoreError> {
        let start = index(start)?;
        let hashes = hashes.to_vec();
        self.write(move |tx| {
            let mut stmt = tx
                .prepare_cached("INSERT INTO log_nodes (level, idx, hash) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING")
                .map_err(db_err)?;
            for (i, h) in (start..).zip(&hashes) {
                stmt.execute(params![level, i, h.as_slice()]).map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn fill_leaf_hashes(&self, leaves: &[(i64, tlog::Hash)]) -> Result<(), StoreError> {
        let leaves = leaves.to_vec();
        self.write(move |tx| {
            let mut stmt = tx
                .prepare_cached("UPDATE audit_log SET leaf_hash = ?2 WHERE seq = ?1 AND leaf_hash IS NULL")
                .map_err(db_err)?;
            for (seq, h) in &leaves {
                stmt.execute(params![seq, h.as_slice()]).map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(|conn| {
            Ok(query_all(
                conn,
                &format!("SELECT {CHECKPOINT_COLUMNS} FROM log_checkpoints ORDER BY size DESC LIMIT 1"),
                [],
                |row| checkpoint_from_row(row),
            )?
            .pop())
        })
        .await
    }

    async fn checkpoints(&self, after_size: u64, limit: i64) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let after = index(after_size)?;
        let limit = limit.max(0);
        self.read(move |conn| {
            query_all(
                conn,
                &format!("SELECT {CHECKPOINT_COLUMNS} FROM log_checkpoints WHERE size > ?1 ORDER BY size LIMIT ?2"),
                params![after, limit],
                |row| checkpoint_from_row(row),
            )
        })
        .await
    }

    async fn put_checkpoint(&self, cp: &StoredCheckpoint) -> Result<bool, StoreError> {
        let cp = cp.clone();
        let size = index(cp.size)?;
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "INSERT INTO log_checkpoints (size, root, note, signed_at) SELECT ?1, ?2, ?3, ?4 \
                     WHERE NOT EXISTS (SELECT 1 FROM log_checkpoints WHERE size >= ?1)",
                )
                .map_err(db_err)?
                .execute(params![size, cp.root.as_slice(), cp.note, cp.signed_at])
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }
}
