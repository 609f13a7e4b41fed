//! Published CRLs, CRL numbers and the scheduled job's lock.

use super::*;

#[async_trait]
impl CrlStore for SqliteStore {
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
            append_log(tx, vec![audit])
        })
        .await
    }

    async fn published_crl(&self, ca: &str, name: &str) -> Result<Option<PublishedCrl>, StoreError> {
        let (ca, name) = (ca.to_owned(), name.to_owned());
        self.read(move |conn| {
            let rows = query_all(
                conn,
                &format!("SELECT {CRL_COLUMNS} FROM published_crls WHERE ca = ?1 AND name = ?2"),
                params![ca, name],
                |row| crl_at(row, 0),
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
                &format!("SELECT {CRL_HEAD_COLUMNS} FROM published_crls WHERE ca = ?1 AND name = ?2"),
                params![ca, name],
                |row| crl_head_at(row, 0),
            )?;
            Ok(rows.into_iter().next())
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
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn try_job_lock(&self, _job: &str) -> Result<Option<JobLock>, StoreError> {
        // One service process owns an SQLite file (CLI commands run no jobs).
        Ok(Some(JobLock::exclusive()))
    }
}
