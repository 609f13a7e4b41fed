//! The filled tables' keys and indexes, dropped before the COPY and rebuilt after —
//! from their own definitions as PostgreSQL reports them (`pg_get_constraintdef`,
//! `pg_get_indexdef`), so what is rebuilt is what the migrations made. A fill that
//! dies in between leaves them dropped: fill only throw-away databases.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use tokio_postgres::Client;

/// The tables the fill writes.
pub const TABLES: [&str; 3] = ["devices", "certificates", "audit_log"];

/// What is dropped, in the order it is rebuilt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    /// (table, name, definition) of primary keys, unique and foreign-key constraints.
    pub constraints: Vec<(String, String, String)>,
    /// (name, CREATE INDEX statement) of the indexes no constraint owns.
    pub indexes: Vec<(String, String)>,
}

/// Reads the definitions.
pub async fn save(client: &Client) -> Result<Saved> {
    let tables: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    let constraints = client
        .query(
            "SELECT c.conrelid::regclass::text, c.conname::text, pg_get_constraintdef(c.oid) FROM pg_constraint c \
             WHERE c.conrelid::regclass::text = ANY($1) AND c.contype IN ('p', 'u', 'f') \
             ORDER BY c.contype = 'f', c.conrelid::regclass::text, c.conname",
            &[&tables],
        )
        .await
        .context("reading constraints")?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let indexes = list_indexes(client, true).await?;
    Ok(Saved { constraints, indexes })
}

/// Every index of the tables with its definition, sorted by name; with
/// `only_free`, those no constraint owns.
pub async fn list_indexes(client: &Client, only_free: bool) -> Result<Vec<(String, String)>> {
    let tables: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    Ok(client
        .query(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
             WHERE i.indrelid::regclass::text = ANY($1) \
               AND NOT ($2 AND EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid \
                                        AND c.conrelid = i.indrelid)) \
             ORDER BY 1",
            &[&tables, &only_free],
        )
        .await
        .context("reading indexes")?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Every constraint of the tables (all kinds) with its definition, sorted.
pub async fn list_constraints(client: &Client) -> Result<Vec<(String, String, String)>> {
    let tables: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    Ok(client
        .query(
            "SELECT c.conrelid::regclass::text, c.conname::text, pg_get_constraintdef(c.oid) FROM pg_constraint c \
             WHERE c.conrelid::regclass::text = ANY($1) ORDER BY 1, 2",
            &[&tables],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Drops them (foreign keys first), in one transaction.
pub async fn drop(client: &mut Client, saved: &Saved) -> Result<()> {
    let tx = client.transaction().await?;
    for (table, name, _) in saved.constraints.iter().rev() {
        tx.batch_execute(&format!("ALTER TABLE {table} DROP CONSTRAINT \"{name}\"")).await?;
    }
    for (name, _) in &saved.indexes {
        tx.batch_execute(&format!("DROP INDEX \"{name}\"")).await?;
    }
    tx.commit().await.context("dropping keys and indexes")
}

/// Rebuilds them: keys first, then foreign keys and indexes, the statements shared
/// out over two connections (each takes the next when it is free).
pub async fn restore(a: &Client, b: &Client, saved: &Saved) -> Result<()> {
    let mut keys: Vec<String> = Vec::new();
    let mut rest: Vec<String> = Vec::new();
    for (table, name, def) in &saved.constraints {
        let sql = format!("ALTER TABLE {table} ADD CONSTRAINT \"{name}\" {def}");
        if def.starts_with("FOREIGN KEY") {
            rest.push(sql);
        } else {
            keys.push(sql);
        }
    }
    rest.extend(saved.indexes.iter().map(|(_, def)| def.clone()));
    for group in [keys, rest] {
        let next = AtomicUsize::new(0);
        tokio::try_join!(run_group(a, &group, &next), run_group(b, &group, &next))?;
    }
    Ok(())
}

/// Runs the statements of `group` not yet taken, one at a time.
async fn run_group(client: &Client, group: &[String], next: &AtomicUsize) -> Result<()> {
    while let Some(sql) = group.get(next.fetch_add(1, Ordering::Relaxed)) {
        client.batch_execute(sql).await.with_context(|| format!("rebuilding: {sql}"))?;
    }
    Ok(())
}
