//! Published CRLs, CRL numbers and the scheduled job's lock.

use super::*;

#[async_trait]
impl CrlStore for PostgresStore {
    async fn publish_crls(&self, crls: &[PublishedCrl], audit: AuditEvent) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
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
        append_log(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn published_crl(&self, ca: &str, name: &str) -> Result<Option<PublishedCrl>, StoreError> {
        self.read_opt(
            &format!("SELECT {CRL_COLUMNS} FROM published_crls WHERE ca = $1 AND name = $2"),
            &[&ca, &name],
            |row| crl_at(row, 0),
        )
        .await
    }

    async fn published_crl_head(&self, ca: &str, name: &str) -> Result<Option<CrlHead>, StoreError> {
        self.read_opt(
            &format!("SELECT {CRL_HEAD_COLUMNS} FROM published_crls WHERE ca = $1 AND name = $2"),
            &[&ca, &name],
            |row| crl_head_at(row, 0),
        )
        .await
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
}

#[async_trait]
impl JobStore for PostgresStore {
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
        Ok(held.then(|| JobLock::holding(SessionLock(client))))
    }
}

/// The connection (out of the pool) whose session holds an advisory lock.
struct SessionLock(deadpool_postgres::ClientWrapper);

#[async_trait]
impl LockHolder for SessionLock {
    async fn still_held(&self) -> bool {
        // A session-level lock lasts as long as the session: the session answering
        // means the lock is still ours.
        let answered = tokio::time::timeout(std::time::Duration::from_secs(5), self.0.simple_query("SELECT 1")).await;
        !self.0.is_closed() && matches!(answered, Ok(Ok(_)))
    }
}
