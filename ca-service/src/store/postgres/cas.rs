//! The hierarchy: CA records and the ceremony that stores them.

use super::*;

#[async_trait]
impl CaStore for PostgresStore {
    async fn create_hierarchy(
        &self,
        cas: &[(CaRecord, AuditEvent)],
        certificates: &[Issuance],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        let now = now_us();
        let mut events = Vec::with_capacity(cas.len() + certificates.len());
        // created_at orders list_cas: strictly increasing (the chain lock serializes writers).
        let ca_stmt = tx
            .prepare_cached(
                "INSERT INTO cas (name, cert_der, key_store, key_label, parent, created_at, updated_at, \
                 issues_from, destroyed_at, old_with_new, new_with_old) \
                 VALUES ($1, $2, $3, $4, $5, GREATEST($6, (SELECT MAX(created_at) + 1 FROM cas)), $6, \
                 $7, $8, $9, $10) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        for (ca, audit) in cas {
            let n = tx
                .execute(
                    &ca_stmt,
                    &[
                        &ca.name,
                        &ca.cert_der,
                        &ca.key_store,
                        &ca.key_label,
                        &ca.parent,
                        &now,
                        &ca.issues_from,
                        &ca.destroyed_at,
                        &ca.old_with_new,
                        &ca.new_with_old,
                    ],
                )
                .await
                .map_err(pg_err)?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!("CA '{}'", ca.name)));
            }
            events.push(audit.clone());
        }
        let cert_stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO certificates ({CERT_COLUMNS}, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                 ON CONFLICT (issuer, serial_hex) DO NOTHING"
            ))
            .await
            .map_err(pg_err)?;
        for item in certificates {
            let c = &item.cert;
            let serial_hex = hex::encode(&c.serial);
            let shard = i32::try_from(c.crl_shard).unwrap_or(i32::MAX);
            let n = tx
                .execute(
                    &cert_stmt,
                    &[
                        &c.issuer,
                        &serial_hex,
                        &c.subject,
                        &c.device_id,
                        &c.profile,
                        &c.not_before,
                        &c.not_after,
                        &c.status.as_str(),
                        &c.revoked_at,
                        &reason_to_code(c.revocation_reason),
                        &c.fingerprint,
                        &c.public_key_sha256,
                        &c.der,
                        &shard,
                        &now,
                    ],
                )
                .await
                .map_err(pg_err)?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!("certificate {}/{serial_hex}", c.issuer)));
            }
            events.push(item.audit.clone());
        }
        append_log(&tx, head, events).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn update_ca_certificate(
        &self,
        name: &str,
        cert_der: &[u8],
        parent: Option<&str>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        let stmt = tx
            .prepare_cached("UPDATE cas SET cert_der = $1, parent = $2, updated_at = $3 WHERE name = $4")
            .await
            .map_err(pg_err)?;
        let n = tx.execute(&stmt, &[&cert_der, &parent, &now_us(), &name]).await.map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("CA '{name}'")));
        }
        append_log(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn destroy_ca(&self, name: &str, at: i64, audit: AuditEvent) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        let stmt = tx
            .prepare_cached(
                "UPDATE cas SET destroyed_at = $1, updated_at = $2 WHERE name = $3 AND destroyed_at IS NULL",
            )
            .await
            .map_err(pg_err)?;
        let n = tx.execute(&stmt, &[&at, &now_us(), &name]).await.map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("CA '{name}' (or it is already destroyed)")));
        }
        append_log(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn last_expiry(&self, issuer: &str, except_profile: &str) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT MAX(not_after) FROM certificates WHERE issuer = $1 AND profile <> $2",
                &[&issuer, &except_profile],
            )
            .await
            .map_err(pg_err)?;
        row.try_get(0).map_err(pg_err)
    }

    async fn get_ca(&self, name: &str) -> Result<Option<CaRecord>, StoreError> {
        self.read_opt(&format!("SELECT {CA_COLUMNS} FROM cas WHERE name = $1"), &[&name], ca_from_row).await
    }

    async fn list_cas(&self) -> Result<Vec<CaRecord>, StoreError> {
        self.read_all(&format!("SELECT {CA_COLUMNS} FROM cas ORDER BY created_at, name"), &[], ca_from_row).await
    }
}
