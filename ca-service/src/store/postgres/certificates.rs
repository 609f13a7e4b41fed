//! Certificates: the issuance writer, the readers, and revocation.

use super::*;
use crate::audit;

/// Keys revoked for keyCompromise, completed by `= <key>` or `= ANY(<keys>)`.
pub(super) const COMPROMISED_WHERE: &str = "SELECT public_key_sha256 FROM certificates \
                                 WHERE status = 'revoked' AND revocation_reason = 1 AND public_key_sha256";

/// Locks the approved enrollment requests that stored items of a batch fulfil (`FOR
/// UPDATE`, so no other transaction can decide them until this one ends); an item
/// whose request is not approved — or is claimed by an earlier item — is refused and
/// its certificate taken back. Rare (manual approval): nothing is sent without one.
async fn claim_enrollment_requests(
    tx: &impl GenericClient,
    batch: &[Issuance],
    serials: &[String],
    outcomes: &mut [IssuanceOutcome],
) -> Result<(), StoreError> {
    let ids: Vec<&str> = batch
        .iter()
        .zip(outcomes.iter())
        .filter(|(_, o)| **o == IssuanceOutcome::Stored)
        .filter_map(|(i, _)| i.fulfils_request.as_deref())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached("SELECT id FROM enrollment_requests WHERE id = ANY($1) AND status = 'approved' FOR UPDATE")
        .await
        .map_err(pg_err)?;
    let mut approved = HashSet::new();
    for row in tx.query(&stmt, &[&ids]).await.map_err(pg_err)? {
        approved.insert(row.try_get::<_, String>(0).map_err(pg_err)?);
    }
    let (mut undo_issuer, mut undo_serial) = (Vec::new(), Vec::new());
    for ((item, serial), outcome) in batch.iter().zip(serials).zip(outcomes.iter_mut()) {
        if let (Some(id), IssuanceOutcome::Stored) = (&item.fulfils_request, &*outcome) {
            if !approved.remove(id) {
                *outcome = IssuanceOutcome::Refused(fulfil_refusal(id));
                undo_issuer.push(item.cert.issuer.clone());
                undo_serial.push(serial.clone());
            }
        }
    }
    delete_certificates(tx, &undo_issuer, &undo_serial).await
}

/// approved → issued for the requests that stored items fulfil (claimed and locked by
/// [`claim_enrollment_requests`]).
async fn mark_enrollment_requests_issued(
    tx: &impl GenericClient,
    batch: &[Issuance],
    serials: &[String],
    outcomes: &[IssuanceOutcome],
) -> Result<(), StoreError> {
    let (mut ids, mut issuers, mut serial_hex) = (Vec::new(), Vec::new(), Vec::new());
    for ((item, serial), outcome) in batch.iter().zip(serials).zip(outcomes) {
        if let (Some(id), IssuanceOutcome::Stored) = (&item.fulfils_request, outcome) {
            ids.push(id.as_str());
            issuers.push(item.cert.issuer.as_str());
            serial_hex.push(serial.as_str());
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "UPDATE enrollment_requests SET status = 'issued', issuer = t.issuer, serial_hex = t.serial_hex, \
                 updated_at = $4 \
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(id, issuer, serial_hex) \
             WHERE enrollment_requests.id = t.id AND enrollment_requests.status = 'approved'",
        )
        .await
        .map_err(pg_err)?;
    tx.execute(&stmt, &[&ids, &issuers, &serial_hex, &now_us()]).await.map_err(pg_err)?;
    Ok(())
}

/// Takes back certificates of a batch that were inserted and then refused.
async fn delete_certificates(
    tx: &impl GenericClient,
    issuers: &[String],
    serials: &[String],
) -> Result<(), StoreError> {
    if issuers.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "DELETE FROM certificates USING UNNEST($1::text[], $2::text[]) AS t(issuer, serial_hex) \
             WHERE certificates.issuer = t.issuer AND certificates.serial_hex = t.serial_hex",
        )
        .await
        .map_err(pg_err)?;
    tx.execute(&stmt, &[&issuers, &serials]).await.map_err(pg_err)?;
    Ok(())
}

/// Applies the effects of the stored items of a batch, set-wise: one UPDATE per kind.
/// Items whose precondition fails (or that repeat a device/certificate an earlier item
/// of the batch already claimed) become `Refused` and their certificate rows, inserted
/// moments ago in this transaction, are deleted again.
pub(super) async fn apply_effects(
    tx: &impl GenericClient,
    batch: &[Issuance],
    serials: &[String],
    outcomes: &mut [IssuanceOutcome],
) -> Result<(), StoreError> {
    let now = now_us();
    let (mut act_ids, mut act_allow, mut sup_issuer, mut sup_serial) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut sup_revoke = Vec::new();
    for (item, outcome) in batch.iter().zip(outcomes.iter()) {
        match (&item.effect, outcome) {
            (Some(IssuanceEffect::ActivateDevice { device_id, allow_reprovision }), IssuanceOutcome::Stored) => {
                act_ids.push(device_id.as_str());
                act_allow.push(*allow_reprovision);
            }
            (Some(IssuanceEffect::Supersede { issuer, serial, revoke }), IssuanceOutcome::Stored) => {
                sup_issuer.push(issuer.clone());
                sup_serial.push(hex::encode(serial));
                sup_revoke.push(*revoke);
            }
            _ => {}
        }
    }
    let mut activated = HashSet::new();
    if !act_ids.is_empty() {
        let stmt = tx
            .prepare_cached(
                "UPDATE devices SET state = 'active', updated_at = $1 \
                 FROM UNNEST($2::text[], $3::bool[]) AS t(id, allow) \
                 WHERE devices.device_id = t.id AND (devices.state = 'expected' OR (t.allow AND devices.state = 'active')) \
                 RETURNING devices.device_id",
            )
            .await
            .map_err(pg_err)?;
        for row in tx.query(&stmt, &[&now, &act_ids, &act_allow]).await.map_err(pg_err)? {
            activated.insert(row.try_get::<_, String>(0).map_err(pg_err)?);
        }
    }
    let mut superseded = HashSet::new();
    if !sup_issuer.is_empty() {
        let stmt = tx
            .prepare_cached(
                "UPDATE certificates SET \
                   status = CASE WHEN t.revoke THEN 'revoked' ELSE 'superseded' END, \
                   revoked_at = CASE WHEN t.revoke THEN $4::bigint END, \
                   revocation_reason = CASE WHEN t.revoke THEN $5::integer END \
                 FROM UNNEST($1::text[], $2::text[], $3::bool[]) AS t(issuer, serial_hex, revoke) \
                 WHERE certificates.issuer = t.issuer AND certificates.serial_hex = t.serial_hex \
                   AND certificates.status = 'valid' \
                 RETURNING certificates.issuer, certificates.serial_hex",
            )
            .await
            .map_err(pg_err)?;
        let (at, reason) = (now / 1_000_000, reason_to_code(Some(revocation::Reason::Superseded)));
        for row in tx.query(&stmt, &[&sup_issuer, &sup_serial, &sup_revoke, &at, &reason]).await.map_err(pg_err)? {
            superseded
                .insert((row.try_get::<_, String>(0).map_err(pg_err)?, row.try_get::<_, String>(1).map_err(pg_err)?));
        }
    }
    // Update requests are rare (two people approve each): one statement apiece.
    let mut fulfilled = HashSet::new();
    for (item, outcome) in batch.iter().zip(outcomes.iter()) {
        if let (Some(IssuanceEffect::FulfilUpdateRequest { id }), IssuanceOutcome::Stored) = (&item.effect, outcome) {
            let stmt = tx
                .prepare_cached(
                    "UPDATE update_requests SET status = 'issued', issuer = $1, serial_hex = $2 \
                     WHERE id = $3 AND status = 'approved' AND expires_at > $4",
                )
                .await
                .map_err(pg_err)?;
            let serial = hex::encode(&item.cert.serial);
            if tx.execute(&stmt, &[&item.cert.issuer, &serial, id, &(now / 1_000_000)]).await.map_err(pg_err)? == 1 {
                fulfilled.insert(id.clone());
            }
        }
    }
    // Each device / certificate goes to the first item of the batch that claims it.
    let (mut undo_issuer, mut undo_serial) = (Vec::new(), Vec::new());
    for ((item, serial), outcome) in batch.iter().zip(serials).zip(outcomes.iter_mut()) {
        if *outcome != IssuanceOutcome::Stored {
            continue;
        }
        let won = match &item.effect {
            None => true,
            Some(IssuanceEffect::ActivateDevice { device_id, .. }) => activated.remove(device_id),
            Some(IssuanceEffect::Supersede { issuer, serial, .. }) => {
                superseded.remove(&(issuer.clone(), hex::encode(serial)))
            }
            Some(IssuanceEffect::FulfilUpdateRequest { id }) => fulfilled.remove(id),
        };
        if !won {
            if let Some(effect) = &item.effect {
                *outcome = IssuanceOutcome::Refused(effect_refusal(effect));
            }
            undo_issuer.push(item.cert.issuer.clone());
            undo_serial.push(serial.clone());
        }
    }
    delete_certificates(tx, &undo_issuer, &undo_serial).await?;
    // Re-provisioned devices: their earlier certificates are replaced by the new one.
    let (mut re_device, mut re_issuer, mut re_serial) = (Vec::new(), Vec::new(), Vec::new());
    for ((item, serial), outcome) in batch.iter().zip(serials).zip(outcomes.iter()) {
        if let (Some(IssuanceEffect::ActivateDevice { device_id, allow_reprovision: true }), IssuanceOutcome::Stored) =
            (&item.effect, outcome)
        {
            re_device.push(device_id.as_str());
            re_issuer.push(item.cert.issuer.as_str());
            re_serial.push(serial.as_str());
        }
    }
    if !re_device.is_empty() {
        let stmt = tx
            .prepare_cached(
                "UPDATE certificates SET status = 'superseded' \
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(device_id, issuer, serial_hex) \
                 WHERE certificates.device_id = t.device_id AND certificates.status = 'valid' \
                   AND NOT (certificates.issuer = t.issuer AND certificates.serial_hex = t.serial_hex)",
            )
            .await
            .map_err(pg_err)?;
        tx.execute(&stmt, &[&re_device, &re_issuer, &re_serial]).await.map_err(pg_err)?;
    }
    Ok(())
}

/// Where the newest certificate delivered for a station request is (see
/// `CertificateReader::delivered_certificate`): among the device's certificates (its
/// index), $1 device, $2 request SHA-256, $3 station, $4 since.
pub(super) const DELIVERED_WHERE: &str =
    "WHERE device_id = $1 AND request_sha256 = $2 AND requested_by = $3 AND not_before >= $4 \
     ORDER BY not_before DESC, id DESC LIMIT 1";

#[async_trait]
impl CertificateStore for PostgresStore {
    async fn store_certificates(&self, batch: &[Issuance]) -> Result<Vec<IssuanceOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let serials: Vec<String> = batch.iter().map(|i| hex::encode(&i.cert.serial)).collect();

        // A repeated (issuer, serial) inside the batch: only its first occurrence is sent.
        let mut seen = HashSet::with_capacity(batch.len());
        let first: Vec<bool> =
            batch.iter().zip(&serials).map(|(i, s)| seen.insert((i.cert.issuer.as_str(), s.as_str()))).collect();
        let sent = || batch.iter().zip(&serials).zip(&first).filter(|(_, f)| **f).map(|(x, _)| x);

        let issuer: Vec<&str> = sent().map(|(i, _)| i.cert.issuer.as_str()).collect();
        let serial_hex: Vec<&str> = sent().map(|(_, s)| s.as_str()).collect();
        let subject: Vec<&str> = sent().map(|(i, _)| i.cert.subject.as_str()).collect();
        let device_id: Vec<Option<&str>> = sent().map(|(i, _)| i.cert.device_id.as_deref()).collect();
        let profile: Vec<&str> = sent().map(|(i, _)| i.cert.profile.as_str()).collect();
        let not_before: Vec<i64> = sent().map(|(i, _)| i.cert.not_before).collect();
        let not_after: Vec<i64> = sent().map(|(i, _)| i.cert.not_after).collect();
        let status: Vec<&str> = sent().map(|(i, _)| i.cert.status.as_str()).collect();
        let revoked_at: Vec<Option<i64>> = sent().map(|(i, _)| i.cert.revoked_at).collect();
        let reason: Vec<Option<i32>> = sent().map(|(i, _)| reason_to_code(i.cert.revocation_reason)).collect();
        let fingerprint: Vec<&str> = sent().map(|(i, _)| i.cert.fingerprint.as_str()).collect();
        let spki: Vec<&str> = sent().map(|(i, _)| i.cert.public_key_sha256.as_str()).collect();
        let der: Vec<&[u8]> = sent().map(|(i, _)| i.cert.der.as_slice()).collect();
        let shard: Vec<i32> = sent().map(|(i, _)| i32::try_from(i.cert.crl_shard).unwrap_or(i32::MAX)).collect();
        let now = now_us();

        let request: Vec<Option<&str>> =
            sent().map(|(i, _)| i.delivery.as_ref().map(|d| d.request_sha256.as_str())).collect();
        let requested_by: Vec<Option<&str>> =
            sent().map(|(i, _)| i.delivery.as_ref().map(|d| d.station.as_str())).collect();

        let insert_sql = format!(
            "INSERT INTO certificates ({CERT_COLUMNS}, created_at, request_sha256, requested_by) \
             SELECT {CERT_COLUMNS}, $15, request_sha256, requested_by \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::int8[], $7::int8[], $8::text[], $9::int8[], $10::int4[], $11::text[], $12::text[], \
                 $13::bytea[], $14::int4[], $16::text[], $17::text[]) \
                 WITH ORDINALITY AS t({CERT_COLUMNS}, request_sha256, requested_by, ord) \
             WHERE NOT EXISTS ({COMPROMISED_WHERE} = t.public_key_sha256) \
             ORDER BY ord \
             ON CONFLICT (issuer, serial_hex) DO NOTHING \
             RETURNING issuer, serial_hex"
        );
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 17] = [
            &issuer,
            &serial_hex,
            &subject,
            &device_id,
            &profile,
            &not_before,
            &not_after,
            &status,
            &revoked_at,
            &reason,
            &fingerprint,
            &spki,
            &der,
            &shard,
            &now,
            &request,
            &requested_by,
        ];

        let client = self.client().await?;
        let compromised_sql = format!("SELECT DISTINCT public_key_sha256 FROM ({COMPROMISED_WHERE} = ANY($1)) k");
        let (lock, head, compromised, insert, audit) = tokio::try_join!(
            client.prepare_cached(LOCK_SQL),
            client.prepare_cached(HEAD_SQL),
            client.prepare_cached(&compromised_sql),
            client.prepare_cached(&insert_sql),
            client.prepare_cached(INSERT_AUDIT_SQL),
        )
        .map_err(pg_err)?;
        let tx = PipelinedTx::new(client);
        // One round trip; the server runs them in this order. The insert skips
        // compromised keys itself, so a revocation committing between the two
        // statements costs at most a retry, never a certificate for a compromised key.
        let compromised_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&spki];
        let (begun, locked, head, compromised, inserted) = tokio::join!(
            tx.begin(),
            tx.execute(&lock, &[&AUDIT_CHAIN_LOCK_KEY]),
            tx.query_opt(&head, &[]),
            tx.query(&compromised, &compromised_params),
            tx.query(&insert, &params),
        );
        begun.map_err(pg_err)?;
        locked.map_err(pg_err)?;
        let (head, compromised, inserted) =
            (head.map_err(pg_err)?, compromised.map_err(pg_err)?, inserted.map_err(pg_err)?);
        let head = read_head(head)?;
        let compromised: HashSet<String> =
            compromised.iter().map(|row| row.try_get(0)).collect::<Result<_, _>>().map_err(pg_err)?;

        let mut stored = HashSet::with_capacity(inserted.len());
        for row in &inserted {
            let i: String = row.try_get(0).map_err(pg_err)?;
            let s: String = row.try_get(1).map_err(pg_err)?;
            stored.insert((i, s));
        }
        let mut outcomes: Vec<IssuanceOutcome> = batch
            .iter()
            .zip(&serials)
            .zip(&first)
            .map(|((item, serial), first)| {
                if compromised.contains(&item.cert.public_key_sha256) {
                    IssuanceOutcome::KeyCompromised
                } else if *first && stored.contains(&(item.cert.issuer.clone(), serial.clone())) {
                    IssuanceOutcome::Stored
                } else {
                    IssuanceOutcome::SerialTaken
                }
            })
            .collect();
        claim_enrollment_requests(&*tx, batch, &serials, &mut outcomes).await?;
        apply_effects(&*tx, batch, &serials, &mut outcomes).await?;
        mark_enrollment_requests_issued(&*tx, batch, &serials, &outcomes).await?;
        let events: Vec<AuditEvent> = batch
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == IssuanceOutcome::Stored)
            .map(|(i, _)| i.audit.clone())
            .collect();
        let entries = audit::entries_after(head, now_us(), events);
        // If the insert fails, the transaction is aborted and COMMIT rolls it back.
        let (audited, committed) = tokio::join!(insert_audit(&*tx, &audit, &entries), tx.commit());
        audited?;
        committed.map_err(pg_err)?;
        tx.finished();
        Ok(outcomes)
    }

    async fn revoke_certificate(
        &self,
        issuer: &str,
        serial: &[u8],
        reason: Reason,
        revoked_at: i64,
        audit: AuditEvent,
    ) -> Result<CertRecord, StoreError> {
        let serial_hex = hex::encode(serial);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        let stmt = tx
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE issuer = $1 AND serial_hex = $2 FOR UPDATE"
            ))
            .await
            .map_err(pg_err)?;
        let current = tx
            .query_opt(&stmt, &[&issuer, &serial_hex])
            .await
            .map_err(pg_err)?
            .as_ref()
            .map(cert_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("certificate {issuer}/{serial_hex}")))?;
        if current.status == CertStatus::Revoked {
            return Err(StoreError::Conflict(format!("certificate {issuer}/{serial_hex} is already revoked")));
        }
        let stmt = tx
            .prepare_cached(
                "UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = $2 \
                 WHERE issuer = $3 AND serial_hex = $4",
            )
            .await
            .map_err(pg_err)?;
        tx.execute(&stmt, &[&revoked_at, &i32::from(reason.code()), &issuer, &serial_hex]).await.map_err(pg_err)?;
        append_log(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(CertRecord {
            status: CertStatus::Revoked,
            revoked_at: Some(revoked_at),
            revocation_reason: Some(reason),
            ..current
        })
    }

    async fn revoke_devices(
        &self,
        which: &DeviceSelector,
        reason: Reason,
        revoked_at: i64,
        audit: AuditEvent,
    ) -> Result<(u64, Vec<RevokedCert>), StoreError> {
        let (column, value) = which.column_and_value();
        // A batch or a model may hold a fleet.
        let (_bulk, mut client) = self.bulk_client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.batch_execute(BULK_TIMEOUT_SQL).await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        let stmt = tx
            .prepare_cached(&format!("UPDATE devices SET state = 'revoked', updated_at = $1 WHERE {column} = $2"))
            .await
            .map_err(pg_err)?;
        let n = tx.execute(&stmt, &[&now_us(), &value]).await.map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::NotFound(which.to_string()));
        }
        let stmt = tx
            .prepare_cached(&format!(
                "UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = $2 \
                 WHERE device_id IN (SELECT device_id FROM devices WHERE {column} = $3) AND status != 'revoked' \
                 RETURNING {REVOKED_RETURNING}"
            ))
            .await
            .map_err(pg_err)?;
        let rows = tx.query(&stmt, &[&revoked_at, &i32::from(reason.code()), &value]).await.map_err(pg_err)?;
        let revoked = revoked_in_issue_order(rows.iter().map(revoked_with_id).collect::<Result<_, _>>()?);
        append_log(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok((n, revoked))
    }
}

#[async_trait]
impl CertificateReader for PostgresStore {
    async fn get_certificate(&self, issuer: &str, serial: &[u8]) -> Result<Option<CertRecord>, StoreError> {
        self.read_opt(
            &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE issuer = $1 AND serial_hex = $2"),
            &[&issuer, &hex::encode(serial)],
            cert_from_row,
        )
        .await
    }

    async fn certificate_keys(&self, after_id: i64, limit: i64) -> Result<Vec<CertificateKey>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT id, issuer, serial_hex FROM certificates WHERE id > $1 ORDER BY id LIMIT $2")
            .await
            .map_err(pg_err)?;
        client
            .query(&stmt, &[&after_id, &limit])
            .await
            .map_err(pg_err)?
            .iter()
            .map(|row| {
                let id: i64 = row.try_get(0).map_err(pg_err)?;
                let serial_hex: String = row.try_get(2).map_err(pg_err)?;
                let serial = hex::decode(&serial_hex)
                    .map_err(|_| StoreError::Corrupt(format!("certificate {id}: serial '{serial_hex}' is not hex")))?;
                Ok(CertificateKey { id, issuer: row.try_get(1).map_err(pg_err)?, serial })
            })
            .collect()
    }

    async fn certificates_for_device(&self, device_id: &str) -> Result<Vec<CertRecord>, StoreError> {
        self.read_all(
            &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE device_id = $1 ORDER BY created_at DESC, id DESC"),
            &[&device_id],
            cert_from_row,
        )
        .await
    }

    async fn public_key_compromised(&self, public_key_sha256: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&format!("SELECT EXISTS ({COMPROMISED_WHERE} = $1)")).await.map_err(pg_err)?;
        client.query_one(&stmt, &[&public_key_sha256]).await.map_err(pg_err)?.try_get(0).map_err(pg_err)
    }

    async fn latest_valid_certificate(&self, issuer: &str, profile: &str) -> Result<Option<CertRecord>, StoreError> {
        self.read_opt(
            &format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE issuer = $1 AND profile = $2 AND status = 'valid' \
                 ORDER BY not_after DESC, id DESC LIMIT 1"
            ),
            &[&issuer, &profile],
            cert_from_row,
        )
        .await
    }

    async fn certificate_by_fingerprint(&self, fingerprint: &str) -> Result<Option<CertRecord>, StoreError> {
        self.read_opt(
            &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE fingerprint = $1"),
            &[&fingerprint],
            cert_from_row,
        )
        .await
    }

    async fn delivered_certificate(&self, earlier: &EarlierDelivery) -> Result<Option<CertRecord>, StoreError> {
        self.read_opt(
            &format!("SELECT {CERT_COLUMNS} FROM certificates {DELIVERED_WHERE}"),
            &[&earlier.device_id, &earlier.request_sha256, &earlier.station, &earlier.since],
            cert_from_row,
        )
        .await
    }
}

#[async_trait]
impl RevocationReader for PostgresStore {
    async fn revoked_for_crl(
        &self,
        issuer: &str,
        now: i64,
        shard: Option<u32>,
        since: Option<i64>,
    ) -> Result<Vec<(Vec<u8>, i64, Option<Reason>)>, StoreError> {
        // The numbers are written into the statement, not bound: with generic plans
        // (see `connect_with_config`) one statement with `$3 IS NULL OR crl_shard = $3`
        // had a single plan for the complete CRL, a shard and a delta alike, which read
        // every revoked certificate of the CA on each call: 57 ms at 20k revoked, run
        // 34 times per publishing round (fleet-load). With the values in the text the
        // planner sees them and takes the shard index or the revoked_at index. They
        // are integers of ours, never caller input; the issuer stays a parameter.
        let mut sql = format!(
            "SELECT serial_hex, revoked_at, revocation_reason FROM certificates \
             WHERE issuer = $1 AND status = 'revoked' AND not_after >= {now}"
        );
        if let Some(shard) = shard {
            sql.push_str(&format!(" AND crl_shard = {shard}"));
        }
        if let Some(since) = since {
            sql.push_str(&format!(" AND revoked_at IS NOT NULL AND revoked_at >= {since}"));
        }
        // No ORDER BY: the rows come from `certificates_crl` alone (an index-only
        // scan), shard by shard, and are sorted here — a million byte strings in
        // ~0.1 s, where PostgreSQL sorted a million collated texts in seconds.
        // A complete CRL of a 10M fleet reads a million rows: more than the pooled
        // connections' 4 s statement timeout allows (seen with fleet-load), so it is a
        // bulk read with the bulk timeout.
        let (_bulk, mut client) = self.bulk_client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.batch_execute(BULK_TIMEOUT_SQL).await.map_err(pg_err)?;
        // Rows are converted as they arrive: a complete CRL of a million entries
        // never holds the raw rows and the entries at once.
        let rows = tx.query_raw(sql.as_str(), [issuer]).await.map_err(pg_err)?;
        let mut rows = std::pin::pin!(rows);
        let mut out = Vec::new();
        while let Some(row) = std::future::poll_fn(|cx| futures_core::Stream::poll_next(rows.as_mut(), cx)).await {
            let row = row.map_err(pg_err)?;
            let serial_hex: &str = row.try_get(0).map_err(pg_err)?;
            let serial = super::serial_from_hex(serial_hex)?;
            let at: Option<i64> = row.try_get(1).map_err(pg_err)?;
            out.push((serial, at.unwrap_or(0), reason_from_code(row.try_get(2).map_err(pg_err)?)?));
        }
        tx.commit().await.map_err(pg_err)?;
        // Even-length lower-case hex orders as the bytes it encodes.
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, Vec<u8>, i64)>, StoreError> {
        let client = self.client().await?;
        // The watermark is written into the statement (an integer of ours), not bound.
        // The OCSP watcher runs this every 0.5 s from startup; bound, it was planned
        // once for any value (`force_generic_plan`, on unnamed statements too) and
        // that plan is a parallel scan of the whole table: 2.2 s at 10M certificates
        // (fleet-load), past the statement timeout under load. With the value in the
        // text the planner takes the partial revoked_at index.
        let sql = format!(
            "SELECT issuer, serial_hex, revoked_at FROM certificates \
             WHERE revoked_at IS NOT NULL AND revoked_at >= {since} ORDER BY revoked_at"
        );
        client
            .query(sql.as_str(), &[])
            .await
            .map_err(pg_err)?
            .iter()
            .map(|row| {
                let serial_hex: String = row.try_get(1).map_err(pg_err)?;
                let serial = super::serial_from_hex(&serial_hex)?;
                Ok((row.try_get(0).map_err(pg_err)?, serial, row.try_get(2).map_err(pg_err)?))
            })
            .collect()
    }
}
