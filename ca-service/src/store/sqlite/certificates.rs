//! Certificates: the issuance writer, the readers, and revocation.

use super::*;

/// Where the newest certificate delivered for a station request is (see
/// `CertificateReader::delivered_certificate`): among the device's certificates (its
/// index), ?1 device, ?2 request SHA-256, ?3 station, ?4 since.
const DELIVERED_WHERE: &str =
    "WHERE device_id = ?1 AND request_sha256 = ?2 AND requested_by = ?3 AND not_before >= ?4 \
     ORDER BY not_before DESC, id DESC LIMIT 1";

/// Applies an issuance's effect; `Err(reason)` if its precondition no longer holds.
pub(super) fn apply_effect(
    tx: &Transaction<'_>,
    effect: &IssuanceEffect,
    new: &CertRecord,
    now: i64,
) -> Result<Result<(), String>, StoreError> {
    let n = match effect {
        IssuanceEffect::ActivateDevice { device_id, allow_reprovision } => tx
            .prepare_cached(
                "UPDATE devices SET state = 'active', updated_at = ?1 \
                 WHERE device_id = ?2 AND (state = 'expected' OR (?3 AND state = 'active'))",
            )
            .map_err(db_err)?
            .execute(params![now, device_id, allow_reprovision])
            .map_err(db_err)?,
        IssuanceEffect::Supersede { issuer, serial, revoke: false } => tx
            .prepare_cached(
                "UPDATE certificates SET status = 'superseded' WHERE issuer = ?1 AND serial_hex = ?2 AND status = 'valid'",
            )
            .map_err(db_err)?
            .execute(params![issuer, hex::encode(serial)])
            .map_err(db_err)?,
        IssuanceEffect::Supersede { issuer, serial, revoke: true } => tx
            .prepare_cached(
                "UPDATE certificates SET status = 'revoked', revoked_at = ?1, revocation_reason = ?2 \
                 WHERE issuer = ?3 AND serial_hex = ?4 AND status = 'valid'",
            )
            .map_err(db_err)?
            .execute(params![now / 1_000_000, reason_to_code(Some(revocation::Reason::Superseded)), issuer, hex::encode(serial)])
            .map_err(db_err)?,
        IssuanceEffect::FulfilUpdateRequest { id } => tx
            .prepare_cached(
                "UPDATE update_requests SET status = 'issued', issuer = ?1, serial_hex = ?2 \
                 WHERE id = ?3 AND status = 'approved' AND expires_at > ?4",
            )
            .map_err(db_err)?
            .execute(params![new.issuer, hex::encode(&new.serial), id, now / 1_000_000])
            .map_err(db_err)?,
    };
    if n != 1 {
        return Ok(Err(effect_refusal(effect)));
    }
    if let IssuanceEffect::ActivateDevice { device_id, allow_reprovision: true } = effect {
        // Re-provisioned: the device's earlier certificates are replaced by this one.
        tx.prepare_cached(
            "UPDATE certificates SET status = 'superseded' \
             WHERE device_id = ?1 AND status = 'valid' AND NOT (issuer = ?2 AND serial_hex = ?3)",
        )
        .map_err(db_err)?
        .execute(params![device_id, new.issuer, hex::encode(&new.serial)])
        .map_err(db_err)?;
    }
    Ok(Ok(()))
}

/// Whether a public key (SHA-256 of its SPKI, hex) was revoked for keyCompromise.
pub(super) fn key_compromised(conn: &Connection, public_key_sha256: &str) -> Result<bool, StoreError> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM certificates \
         WHERE public_key_sha256 = ?1 AND status = 'revoked' AND revocation_reason = 1)",
    )
    .map_err(db_err)?
    .query_row([public_key_sha256], |r| r.get(0))
    .map_err(db_err)
}

/// Inserts one certificate; `false` if its (issuer, serial) is taken.
pub(super) fn insert_certificate(
    tx: &Transaction<'_>,
    c: &CertRecord,
    delivery: Option<&DeliveryKey>,
    now: i64,
) -> Result<bool, StoreError> {
    let n = tx
        .prepare_cached(&format!(
            "INSERT INTO certificates ({CERT_COLUMNS}, created_at, request_sha256, requested_by) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
             ON CONFLICT (issuer, serial_hex) DO NOTHING"
        ))
        .map_err(db_err)?
        .execute(params![
            c.issuer,
            hex::encode(&c.serial),
            c.subject,
            c.device_id,
            c.profile,
            c.not_before,
            c.not_after,
            c.status.as_str(),
            c.revoked_at,
            reason_to_code(c.revocation_reason),
            c.fingerprint,
            c.public_key_sha256,
            c.der,
            c.crl_shard,
            now,
            delivery.map(|d| d.request_sha256.as_str()),
            delivery.map(|d| d.station.as_str()),
        ])
        .map_err(db_err)?;
    Ok(n == 1)
}

/// Whether enrollment request `id` is approved (and so may be fulfilled). Inside the
/// one writer's transaction, nothing can change it between this check and the update.
fn enrollment_request_approved(tx: &Transaction<'_>, id: &str) -> Result<bool, StoreError> {
    tx.prepare_cached("SELECT 1 FROM enrollment_requests WHERE id = ?1 AND status = 'approved'")
        .map_err(db_err)?
        .exists(params![id])
        .map_err(db_err)
}

/// approved → issued, recording the certificate that fulfils it.
fn mark_enrollment_request_issued(
    tx: &Transaction<'_>,
    id: &str,
    new: &CertRecord,
    now: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE enrollment_requests SET status = 'issued', issuer = ?1, serial_hex = ?2, updated_at = ?3 \
         WHERE id = ?4 AND status = 'approved'",
    )
    .map_err(db_err)?
    .execute(params![new.issuer, hex::encode(&new.serial), now, id])
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl CertificateStore for SqliteStore {
    async fn store_certificates(&self, batch: &[Issuance]) -> Result<Vec<IssuanceOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = batch.to_vec();
        self.write(move |tx| {
            let now = now_us();
            let mut outcomes = Vec::with_capacity(batch.len());
            let mut events = Vec::with_capacity(batch.len());
            for item in batch {
                if key_compromised(tx, &item.cert.public_key_sha256)? {
                    outcomes.push(IssuanceOutcome::KeyCompromised);
                    continue;
                }
                if !insert_certificate(tx, &item.cert, item.delivery.as_ref(), now)? {
                    outcomes.push(IssuanceOutcome::SerialTaken);
                    continue;
                }
                // Preconditions first (checking changes nothing), then the effect: a
                // refused item leaves no trace.
                let mut refusal = match &item.fulfils_request {
                    Some(id) if !enrollment_request_approved(tx, id)? => Some(fulfil_refusal(id)),
                    _ => None,
                };
                if let (None, Some(effect)) = (&refusal, &item.effect) {
                    refusal = apply_effect(tx, effect, &item.cert, now)?.err();
                }
                if let Some(reason) = refusal {
                    // Inside the transaction nobody has seen the row: take it back.
                    tx.prepare_cached("DELETE FROM certificates WHERE issuer = ?1 AND serial_hex = ?2")
                        .map_err(db_err)?
                        .execute(params![item.cert.issuer, hex::encode(&item.cert.serial)])
                        .map_err(db_err)?;
                    outcomes.push(IssuanceOutcome::Refused(reason));
                    continue;
                }
                if let Some(id) = &item.fulfils_request {
                    mark_enrollment_request_issued(tx, id, &item.cert, now)?;
                }
                outcomes.push(IssuanceOutcome::Stored);
                events.push(item.audit);
            }
            append_log(tx, events)?;
            Ok(outcomes)
        })
        .await
    }

    async fn revoke_certificate(
        &self,
        issuer: &str,
        serial: &[u8],
        reason: Reason,
        revoked_at: i64,
        audit: AuditEvent,
    ) -> Result<CertRecord, StoreError> {
        let (issuer, serial_hex) = (issuer.to_owned(), hex::encode(serial));
        self.write(move |tx| {
            let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE issuer = ?1 AND serial_hex = ?2");
            let current = query_all(tx, &sql, [issuer.clone(), serial_hex.clone()], |row| cert_from_row(row))?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::NotFound(format!("certificate {issuer}/{serial_hex}")))?;
            if current.status == CertStatus::Revoked {
                return Err(StoreError::Conflict(format!("certificate {issuer}/{serial_hex} is already revoked")));
            }
            tx.prepare_cached(
                "UPDATE certificates SET status = 'revoked', revoked_at = ?1, revocation_reason = ?2 \
                 WHERE issuer = ?3 AND serial_hex = ?4",
            )
            .map_err(db_err)?
            .execute(params![revoked_at, i32::from(reason.code()), issuer, serial_hex])
            .map_err(db_err)?;
            append_log(tx, vec![audit])?;
            Ok(CertRecord {
                status: CertStatus::Revoked,
                revoked_at: Some(revoked_at),
                revocation_reason: Some(reason),
                ..current
            })
        })
        .await
    }

    async fn revoke_devices(
        &self,
        which: &DeviceSelector,
        reason: Reason,
        revoked_at: i64,
        audit: AuditEvent,
    ) -> Result<(u64, Vec<RevokedCert>), StoreError> {
        let which = which.clone();
        self.write(move |tx| {
            let (column, value) = which.column_and_value();
            let n = tx
                .prepare_cached(&format!("UPDATE devices SET state = 'revoked', updated_at = ?1 WHERE {column} = ?2"))
                .map_err(db_err)?
                .execute(params![now_us(), value])
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound(which.to_string()));
            }
            let live =
                format!("device_id IN (SELECT device_id FROM devices WHERE {column} = ?1) AND status != 'revoked'");
            let revoked = query_all(
                tx,
                &format!(
                    "UPDATE certificates SET revoked_at = ?2, revocation_reason = ?3, status = 'revoked' \
                     WHERE {live} RETURNING {REVOKED_RETURNING}"
                ),
                params![value, revoked_at, i32::from(reason.code())],
                |row| revoked_with_id(row),
            )?;
            append_log(tx, vec![audit])?;
            Ok((n as u64, revoked_in_issue_order(revoked)))
        })
        .await
    }
}

#[async_trait]
impl CertificateReader for SqliteStore {
    async fn get_certificate(&self, issuer: &str, serial: &[u8]) -> Result<Option<CertRecord>, StoreError> {
        let issuer = issuer.to_owned();
        let serial_hex = hex::encode(serial);
        self.read(move |conn| {
            let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE issuer = ?1 AND serial_hex = ?2");
            Ok(query_all(conn, &sql, [issuer, serial_hex], |row| cert_from_row(row))?.into_iter().next())
        })
        .await
    }

    async fn public_key_compromised(&self, public_key_sha256: &str) -> Result<bool, StoreError> {
        let key = public_key_sha256.to_owned();
        self.read(move |conn| key_compromised(conn, &key)).await
    }

    async fn latest_valid_certificate(&self, issuer: &str, profile: &str) -> Result<Option<CertRecord>, StoreError> {
        let (issuer, profile) = (issuer.to_owned(), profile.to_owned());
        self.read(move |conn| {
            let sql = format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE issuer = ?1 AND profile = ?2 AND status = 'valid' \
                 ORDER BY not_after DESC, id DESC LIMIT 1"
            );
            Ok(query_all(conn, &sql, [issuer, profile], |row| cert_from_row(row))?.into_iter().next())
        })
        .await
    }

    async fn certificate_by_fingerprint(&self, fingerprint: &str) -> Result<Option<CertRecord>, StoreError> {
        let fingerprint = fingerprint.to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE fingerprint = ?1");
            Ok(query_all(conn, &sql, [fingerprint], |row| cert_from_row(row))?.into_iter().next())
        })
        .await
    }

    async fn delivered_certificate(&self, earlier: &EarlierDelivery) -> Result<Option<CertRecord>, StoreError> {
        let earlier = earlier.clone();
        self.read(move |conn| {
            let sql = format!("SELECT {CERT_COLUMNS} FROM certificates {DELIVERED_WHERE}");
            let params = params![earlier.device_id, earlier.request_sha256, earlier.station, earlier.since];
            Ok(query_all(conn, &sql, params, |row| cert_from_row(row))?.into_iter().next())
        })
        .await
    }

    async fn certificate_keys(&self, after_id: i64, limit: i64) -> Result<Vec<CertificateKey>, StoreError> {
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT id, issuer, serial_hex FROM certificates WHERE id > ?1 ORDER BY id LIMIT ?2",
                params![after_id, limit],
                |row| {
                    let serial_hex: String = row.get(2).map_err(db_err)?;
                    Ok((row.get::<_, i64>(0).map_err(db_err)?, row.get::<_, String>(1).map_err(db_err)?, serial_hex))
                },
            )?
            .into_iter()
            .map(|(id, issuer, serial_hex)| {
                let serial = hex::decode(&serial_hex)
                    .map_err(|_| StoreError::Corrupt(format!("certificate {id}: serial '{serial_hex}' is not hex")))?;
                Ok(CertificateKey { id, issuer, serial })
            })
            .collect()
        })
        .await
    }

    async fn certificates_for_device(&self, device_id: &str) -> Result<Vec<CertRecord>, StoreError> {
        let device_id = device_id.to_owned();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE device_id = ?1 ORDER BY created_at DESC, id DESC"
            );
            query_all(conn, &sql, [device_id], |row| cert_from_row(row))
        })
        .await
    }
}

#[async_trait]
impl RevocationReader for SqliteStore {
    async fn revoked_for_crl(
        &self,
        issuer: &str,
        now: i64,
        shard: Option<u32>,
        since: Option<i64>,
    ) -> Result<Vec<(Vec<u8>, i64, Option<Reason>)>, StoreError> {
        let issuer = issuer.to_owned();
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT serial_hex, revoked_at, revocation_reason FROM certificates \
                 WHERE issuer = ?1 AND status = 'revoked' AND not_after >= ?2 \
                   AND (?3 IS NULL OR crl_shard = ?3) AND (?4 IS NULL OR revoked_at >= ?4) ORDER BY serial_hex",
                params![issuer, now, shard, since],
                |row| {
                    let serial_hex: String = row.get(0).map_err(db_err)?;
                    let serial = super::serial_from_hex(&serial_hex)?;
                    let at: Option<i64> = row.get(1).map_err(db_err)?;
                    Ok((serial, at.unwrap_or(0), reason_from_code(row.get(2).map_err(db_err)?)?))
                },
            )
        })
        .await
    }

    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, Vec<u8>, i64)>, StoreError> {
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT issuer, serial_hex, revoked_at FROM certificates \
                 WHERE revoked_at IS NOT NULL AND revoked_at >= ?1 ORDER BY revoked_at",
                params![since],
                |row| {
                    let serial_hex: String = row.get(1).map_err(db_err)?;
                    let serial = super::serial_from_hex(&serial_hex)?;
                    Ok((row.get(0).map_err(db_err)?, serial, row.get(2).map_err(db_err)?))
                },
            )
        })
        .await
    }
}
