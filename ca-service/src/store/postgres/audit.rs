//! The audit log and its tree: appending entries (with their leaf hashes) inside
//! every writing transaction under the log lock, reading them, and the tree's stored
//! hashes and checkpoints.

use super::*;
use crate::audit;

pub(super) const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1)";

pub(super) const HEAD_SQL: &str = "SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1";

/// Takes the log lock and reads the last seq, in the caller's transaction. Both
/// statements are sent together (pipelined); the server runs them in order. The
/// lock is held to commit, so entries become visible in seq order, without gaps.
pub(super) async fn lock_log(tx: &deadpool_postgres::Transaction<'_>) -> Result<i64, StoreError> {
    let (lock, head) = tokio::try_join!(tx.prepare_cached(LOCK_SQL), tx.prepare_cached(HEAD_SQL)).map_err(pg_err)?;
    let (_, row) =
        tokio::try_join!(tx.execute(&lock, &[&AUDIT_CHAIN_LOCK_KEY]), tx.query_opt(&head, &[])).map_err(pg_err)?;
    read_head(row)
}

pub(super) fn read_head(row: Option<Row>) -> Result<i64, StoreError> {
    match row {
        Some(row) => row.try_get(0).map_err(pg_err),
        None => Ok(0),
    }
}

pub(super) const INSERT_AUDIT_SQL: &str =
    "INSERT INTO audit_log (seq, time_us, actor, action, target, outcome, details, leaf_hash) \
     SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                          $8::bytea[])";

/// Inserts entries in one statement, prepared by the caller: the insert is sent on
/// the first poll, so a statement joined after it (a pipelined COMMIT) reaches the
/// server after it.
pub(super) async fn insert_audit(
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
    let leaf: Vec<Option<&[u8]>> = entries.iter().map(|e| e.leaf_hash.as_ref().map(|h| h.as_slice())).collect();
    tx.execute(stmt, &[&seq, &time, &actor, &action, &target, &outcome, &details, &leaf]).await.map_err(pg_err)?;
    Ok(())
}

/// Appends `events` after `last_seq` (the lock must be held).
pub(super) async fn append_log(
    tx: &impl GenericClient,
    last_seq: i64,
    events: Vec<AuditEvent>,
) -> Result<(), StoreError> {
    let entries = audit::entries_after(last_seq, now_us(), events);
    let stmt = tx.prepare_cached(INSERT_AUDIT_SQL).await.map_err(pg_err)?;
    insert_audit(tx, &stmt, &entries).await
}

fn index(i: u64) -> Result<i64, StoreError> {
    i64::try_from(i).map_err(|_| StoreError::Database(format!("tree index {i} out of range")))
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        append_log(&tx, head, events.to_vec()).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn audit_entries(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        self.read_all(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[&after_seq, &limit.max(0)],
            entry_from_row,
        )
        .await
    }

    /// Prepared per call (as the reports are): the planner then sees the values, and
    /// picks the (field, seq) index of the rarest field asked for.
    async fn find_audit(
        &self,
        query: &AuditQuery,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let (sql, values) = find_audit_sql(query);
        let (before, limit) = (before.unwrap_or(i64::MAX), limit.max(0));
        let mut params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        params.extend([&before as &(dyn ToSql + Sync), &limit]);
        let client = self.client().await?;
        let rows = client.query(&sql, &params).await.map_err(pg_err)?;
        rows.iter().map(entry_from_row).collect()
    }
}

#[async_trait]
impl LogStore for PostgresStore {
    async fn log_size(&self) -> Result<u64, StoreError> {
        let rows = self.read_all(HEAD_SQL, &[], |row| row.try_get::<_, i64>(0).map_err(pg_err)).await?;
        Ok(rows.first().copied().unwrap_or(0).max(0) as u64)
    }

    async fn log_hashes(&self, level: u8, start: u64, end: u64) -> Result<Vec<tlog::Hash>, StoreError> {
        let (start, end) = (index(start)?, index(end)?);
        let pair = |row: &Row| -> Result<(i64, Option<Vec<u8>>), StoreError> {
            Ok((row.try_get(0).map_err(pg_err)?, row.try_get(1).map_err(pg_err)?))
        };
        let rows = if level == 0 {
            // Leaf i is entry seq i + 1.
            self.read_all(
                "SELECT seq - 1, leaf_hash FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                &[&start, &end],
                pair,
            )
            .await?
        } else {
            self.read_all(
                "SELECT idx, hash FROM log_nodes WHERE level = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
                &[&i16::from(level), &start, &end],
                pair,
            )
            .await?
        };
        stored_hashes(level, start, rows)
    }

    async fn put_log_nodes(&self, level: u8, start: u64, hashes: &[tlog::Hash]) -> Result<(), StoreError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let start = index(start)?;
        let idx: Vec<i64> = (start..).take(hashes.len()).collect();
        let hash: Vec<&[u8]> = hashes.iter().map(|h| h.as_slice()).collect();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO log_nodes (level, idx, hash) SELECT $1, * FROM UNNEST($2::int8[], $3::bytea[]) \
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        client.execute(&stmt, &[&i16::from(level), &idx, &hash]).await.map_err(pg_err)?;
        Ok(())
    }

    async fn fill_leaf_hashes(&self, leaves: &[(i64, tlog::Hash)]) -> Result<(), StoreError> {
        if leaves.is_empty() {
            return Ok(());
        }
        let seq: Vec<i64> = leaves.iter().map(|(s, _)| *s).collect();
        let hash: Vec<&[u8]> = leaves.iter().map(|(_, h)| h.as_slice()).collect();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE audit_log a SET leaf_hash = u.h FROM UNNEST($1::int8[], $2::bytea[]) AS u(s, h) \
                 WHERE a.seq = u.s AND a.leaf_hash IS NULL",
            )
            .await
            .map_err(pg_err)?;
        client.execute(&stmt, &[&seq, &hash]).await.map_err(pg_err)?;
        Ok(())
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let sql = format!("SELECT {CHECKPOINT_COLUMNS} FROM log_checkpoints ORDER BY size DESC LIMIT 1");
        Ok(self.read_all(&sql, &[], checkpoint_from_row).await?.pop())
    }

    async fn checkpoints(&self, after_size: u64, limit: i64) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let sql = format!("SELECT {CHECKPOINT_COLUMNS} FROM log_checkpoints WHERE size > $1 ORDER BY size LIMIT $2");
        self.read_all(&sql, &[&index(after_size)?, &limit.max(0)], checkpoint_from_row).await
    }

    async fn put_checkpoint(&self, cp: &StoredCheckpoint) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO log_checkpoints (size, root, note, signed_at) SELECT $1, $2, $3, $4 \
                 WHERE NOT EXISTS (SELECT 1 FROM log_checkpoints WHERE size >= $1)",
            )
            .await
            .map_err(pg_err)?;
        let n = client
            .execute(&stmt, &[&index(cp.size)?, &cp.root.as_slice(), &cp.note, &cp.signed_at])
            .await
            .map_err(pg_err)?;
        Ok(n == 1)
    }
}
