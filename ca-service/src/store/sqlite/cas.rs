//! The hierarchy: CA records and the ceremony that stores them.

use super::*;

#[async_trait]
impl CaStore for SqliteStore {
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
                        "INSERT INTO cas (name, cert_der, key_store, key_label, parent, created_at, updated_at, \
                         issues_from, destroyed_at, old_with_new, new_with_old) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (name) DO NOTHING",
                    )
                    .map_err(db_err)?
                    .execute(params![
                        ca.name,
                        ca.cert_der,
                        ca.key_store,
                        ca.key_label,
                        ca.parent,
                        created_at,
                        now,
                        ca.issues_from,
                        ca.destroyed_at,
                        ca.old_with_new,
                        ca.new_with_old
                    ])
                    .map_err(db_err)?;
                if n == 0 {
                    return Err(StoreError::AlreadyExists(format!("CA '{}'", ca.name)));
                }
                events.push(audit);
            }
            for item in certificates {
                if !insert_certificate(tx, &item.cert, None, now)? {
                    return Err(StoreError::AlreadyExists(format!(
                        "certificate {}/{}",
                        item.cert.issuer,
                        hex::encode(&item.cert.serial)
                    )));
                }
                events.push(item.audit);
            }
            append_log(tx, events)
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
            append_log(tx, vec![audit])
        })
        .await
    }

    async fn destroy_ca(&self, name: &str, at: i64, audit: AuditEvent) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE cas SET destroyed_at = ?1, updated_at = ?2 WHERE name = ?3 AND destroyed_at IS NULL",
                )
                .map_err(db_err)?
                .execute(params![at, now_us(), name])
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("CA '{name}' (or it is already destroyed)")));
            }
            append_log(tx, vec![audit])
        })
        .await
    }

    async fn last_expiry(&self, issuer: &str, except_profile: &str) -> Result<Option<i64>, StoreError> {
        let (issuer, except) = (issuer.to_owned(), except_profile.to_owned());
        self.read(move |conn| {
            conn.prepare_cached("SELECT MAX(not_after) FROM certificates WHERE issuer = ?1 AND profile <> ?2")
                .map_err(db_err)?
                .query_row(params![issuer, except], |r| r.get(0))
                .map_err(db_err)
        })
        .await
    }

    async fn get_ca(&self, name: &str) -> Result<Option<CaRecord>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {CA_COLUMNS} FROM cas WHERE name = ?1");
            Ok(query_all(conn, &sql, [name], |row| ca_from_row(row))?.into_iter().next())
        })
        .await
    }

    async fn list_cas(&self) -> Result<Vec<CaRecord>, StoreError> {
        self.read(|conn| {
            let sql = format!("SELECT {CA_COLUMNS} FROM cas ORDER BY created_at, name");
            query_all(conn, &sql, [], |row| ca_from_row(row))
        })
        .await
    }
}
