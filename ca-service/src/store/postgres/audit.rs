//! The audit chain: extending it inside every writing transaction, and reading it.

use super::*;
use crate::audit;

pub(super) const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1)";

pub(super) const HEAD_SQL: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";

/// Takes the chain lock and reads the head, in the caller's transaction.
/// Both statements are sent together (pipelined); the server runs them in order.
pub(super) async fn lock_chain(tx: &deadpool_postgres::Transaction<'_>) -> Result<(i64, [u8; 32]), StoreError> {
    let (lock, head) = tokio::try_join!(tx.prepare_cached(LOCK_SQL), tx.prepare_cached(HEAD_SQL)).map_err(pg_err)?;
    let (_, row) =
        tokio::try_join!(tx.execute(&lock, &[&AUDIT_CHAIN_LOCK_KEY]), tx.query_opt(&head, &[])).map_err(pg_err)?;
    read_head(row)
}

pub(super) fn read_head(row: Option<Row>) -> Result<(i64, [u8; 32]), StoreError> {
    match row {
        Some(row) => {
            let seq: i64 = row.try_get(0).map_err(pg_err)?;
            let hash: String = row.try_get(1).map_err(pg_err)?;
            Ok((seq, hash_from_hex(seq, &hash)?))
        }
        None => Ok((0, GENESIS_HASH)),
    }
}

pub(super) const INSERT_AUDIT_SQL: &str =
    "INSERT INTO audit_log (seq, time_us, actor, action, target, outcome, details, prev_hash, hash) \
     SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                          $8::text[], $9::text[])";

/// Inserts chained entries in one statement, prepared by the caller: the insert is
/// sent on the first poll, so a statement joined after it (a pipelined COMMIT)
/// reaches the server after it.
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
    let prev: Vec<String> = entries.iter().map(|e| hex::encode(e.prev_hash)).collect();
    let hash: Vec<String> = entries.iter().map(|e| hex::encode(e.hash)).collect();
    tx.execute(stmt, &[&seq, &time, &actor, &action, &target, &outcome, &details, &prev, &hash])
        .await
        .map_err(pg_err)?;
    Ok(())
}

/// Reads the head (the lock must be held) and appends `events`.
pub(super) async fn append_chain(
    tx: &impl GenericClient,
    head: (i64, [u8; 32]),
    events: Vec<AuditEvent>,
) -> Result<(), StoreError> {
    let entries = audit::chain(head, now_us(), events);
    let stmt = tx.prepare_cached(INSERT_AUDIT_SQL).await.map_err(pg_err)?;
    insert_audit(tx, &stmt, &entries).await
}

#[async_trait]
impl AuditStore for PostgresStore {
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
        self.read_all(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[&after_seq, &limit.max(0)],
            entry_from_row,
        )
        .await
    }
}
