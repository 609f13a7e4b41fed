//! The registry: devices, provisioning stations, enrollment requests, and the
//! batched read EST decides on (`enrollment_contexts`).

use super::*;

#[async_trait]
impl RegistryStore for PostgresStore {
    async fn add_devices(&self, devices: &[DeviceRecord], audit: AuditEvent) -> Result<(), StoreError> {
        if devices.is_empty() {
            return Ok(());
        }
        let id: Vec<&str> = devices.iter().map(|d| d.device_id.as_str()).collect();
        let model: Vec<&str> = devices.iter().map(|d| d.model.as_str()).collect();
        let class: Vec<&str> = devices.iter().map(|d| d.class.as_str()).collect();
        let batch: Vec<&str> = devices.iter().map(|d| d.batch.as_str()).collect();
        let hw: Vec<Option<&str>> = devices.iter().map(|d| d.hardware_serial.as_deref()).collect();
        let state: Vec<&str> = devices.iter().map(|d| d.state.as_str()).collect();
        let reprovision: Vec<bool> = devices.iter().map(|d| d.reprovision).collect();

        let (_bulk, mut client) = self.bulk_client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.batch_execute(BULK_TIMEOUT_SQL).await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO devices (device_id, model, class, batch, hardware_serial, state, reprovision, \
                     created_at, updated_at) \
                 SELECT device_id, model, class, batch, hardware_serial, state, reprovision, $8, $8 \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[]) \
                     WITH ORDINALITY AS t(device_id, model, class, batch, hardware_serial, state, reprovision, ord) \
                 ORDER BY ord \
                 ON CONFLICT (device_id) DO NOTHING \
                 RETURNING device_id",
            )
            .await
            .map_err(pg_err)?;
        let rows = tx
            .query(&stmt, &[&id, &model, &class, &batch, &hw, &state, &reprovision, &now_us()])
            .await
            .map_err(pg_err)?;
        let mut inserted = HashSet::with_capacity(rows.len());
        for row in &rows {
            inserted.insert(row.try_get::<_, String>(0).map_err(pg_err)?);
        }
        // The first id (in input order) that repeats an earlier one or already existed.
        let mut seen = HashSet::with_capacity(id.len());
        if let Some(dup) = id.iter().find(|d| !seen.insert(**d) || !inserted.contains(**d)) {
            return Err(StoreError::AlreadyExists(format!("device '{dup}'")));
        }
        append_log(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn get_device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        self.read_opt(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1"),
            &[&device_id],
            device_from_row,
        )
        .await
    }

    async fn submit_enrollment_request(
        &self,
        request: &EnrollmentRequest,
        audit: AuditEvent,
    ) -> Result<EnrollmentRequest, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO enrollment_requests (id, profile, device_id, requester, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'pending', $5, $5) ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        let r = request;
        let n = tx.execute(&stmt, &[&r.id, &r.profile, &r.device_id, &r.requester, &now_us()]).await.map_err(pg_err)?;
        if n == 1 {
            append_log(&tx, head, vec![audit]).await?;
        }
        let stmt = tx
            .prepare_cached(&format!("SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE id = $1"))
            .await
            .map_err(pg_err)?;
        let row = tx.query_one(&stmt, &[&r.id]).await.map_err(pg_err)?;
        let stored = request_from_row(&row)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(stored)
    }

    async fn get_enrollment_request(&self, id: &str) -> Result<Option<EnrollmentRequest>, StoreError> {
        self.read_opt(
            &format!("SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE id = $1"),
            &[&id],
            request_from_row,
        )
        .await
    }

    async fn decide_enrollment_request(
        &self,
        id: &str,
        approve: bool,
        decided_by: &str,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        let status = if approve { "approved" } else { "rejected" };
        let stmt = tx
            .prepare_cached(
                "UPDATE enrollment_requests SET status = $1, decided_by = $2, updated_at = $3 \
                 WHERE id = $4 AND status = 'pending'",
            )
            .await
            .map_err(pg_err)?;
        let n = tx.execute(&stmt, &[&status, &decided_by, &now_us(), &id]).await.map_err(pg_err)?;
        if n == 0 {
            let stmt = tx
                .prepare_cached(&format!("SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE id = $1"))
                .await
                .map_err(pg_err)?;
            return Err(match tx.query_opt(&stmt, &[&id]).await.map_err(pg_err)? {
                None => StoreError::NotFound(format!("enrollment request '{id}'")),
                Some(row) => StoreError::Conflict(format!(
                    "enrollment request '{id}' is already {}; decisions are final",
                    request_from_row(&row)?.status.as_str()
                )),
            });
        }
        append_log(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn list_enrollment_requests(
        &self,
        status: Option<RequestStatus>,
    ) -> Result<Vec<EnrollmentRequest>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE $1::text IS NULL OR status = $1 \
                 ORDER BY created_at, id"
            ))
            .await
            .map_err(pg_err)?;
        let status = status.map(RequestStatus::as_str);
        client.query(&stmt, &[&status]).await.map_err(pg_err)?.iter().map(request_from_row).collect()
    }

    async fn add_station(&self, station: &StationRecord, audit: AuditEvent) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO stations (name, enabled, models, batches, secret_hash, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (name) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        let n = tx
            .execute(
                &stmt,
                &[
                    &station.name,
                    &station.enabled,
                    &station.models.join(","),
                    &station.batches.join(","),
                    &station.secret_hash,
                    &now_us(),
                ],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::AlreadyExists(format!("station '{}'", station.name)));
        }
        append_log(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn get_station(&self, name: &str) -> Result<Option<StationRecord>, StoreError> {
        self.read_opt(&format!("SELECT {STATION_COLUMNS} FROM stations WHERE name = $1"), &[&name], station_from_row)
            .await
    }

    async fn enrollment_contexts(&self, lookups: &[EnrollmentLookup]) -> Result<Vec<EnrollmentContext>, StoreError> {
        // One row per lookup, in order: each record is a LEFT JOIN on its own key, so
        // an absent one reads as NULL columns (its first column is its NOT NULL key).
        // An earlier delivery can only be of an active device: for the others (a first
        // enrollment, the common case) that probe is skipped by a one-time filter.
        let sql = format!(
            "SELECT c.*, s.*, d.*, e.* \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[]) \
                 WITH ORDINALITY AS t(fingerprint, station, device_id, request, requested_by, since, earlier_device, ord) \
             LEFT JOIN LATERAL (SELECT {CERT_COLUMNS} FROM certificates \
                                WHERE fingerprint = t.fingerprint LIMIT 1) AS c ON true \
             LEFT JOIN LATERAL (SELECT {STATION_COLUMNS} FROM stations WHERE name = t.station) AS s ON true \
             LEFT JOIN LATERAL (SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = t.device_id) AS d ON true \
             LEFT JOIN LATERAL (SELECT {CERT_COLUMNS} FROM certificates \
                                WHERE d.state = 'active' AND d.device_id = t.earlier_device \
                                  AND device_id = t.earlier_device AND request_sha256 = t.request \
                                  AND requested_by = t.requested_by \
                                  AND not_before >= t.since \
                                ORDER BY not_before DESC, id DESC LIMIT 1) AS e ON true \
             ORDER BY t.ord"
        );
        let column = |f: fn(&EnrollmentLookup) -> &Option<String>| -> Vec<Option<&str>> {
            lookups.iter().map(|l| f(l).as_deref()).collect()
        };
        let fingerprints = column(|l| &l.client_fingerprint);
        let stations = column(|l| &l.station);
        let devices = column(|l| &l.device_id);
        let earlier = |f: fn(&EarlierDelivery) -> &str| -> Vec<Option<&str>> {
            lookups.iter().map(|l| l.earlier.as_ref().map(f)).collect()
        };
        let requests = earlier(|e| &e.request_sha256);
        let requested_by = earlier(|e| &e.station);
        let earlier_device = earlier(|e| &e.device_id);
        let since: Vec<Option<i64>> = lookups.iter().map(|l| l.earlier.as_ref().map(|e| e.since)).collect();
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await.map_err(pg_err)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&fingerprints, &stations, &devices, &requests, &requested_by, &since, &earlier_device];
        let rows = client.query(&stmt, &params).await.map_err(pg_err)?;
        let columns = |list: &str| list.split(',').count();
        let station_at = columns(CERT_COLUMNS);
        let device_at = station_at + columns(STATION_COLUMNS);
        let earlier_at = device_at + columns(DEVICE_COLUMNS);
        rows.iter()
            .map(|row| {
                let present = |at: usize| row.try_get::<_, Option<&str>>(at).map(|key| key.is_some()).map_err(pg_err);
                Ok(EnrollmentContext {
                    client: if present(0)? { Some(cert_at(row, 0)?) } else { None },
                    station: if present(station_at)? { Some(rows::station_at(row, station_at)?) } else { None },
                    device: if present(device_at)? { Some(rows::device_at(row, device_at)?) } else { None },
                    earlier: if present(earlier_at)? { Some(cert_at(row, earlier_at)?) } else { None },
                })
            })
            .collect()
    }

    async fn list_stations(&self) -> Result<Vec<StationRecord>, StoreError> {
        self.read_all(&format!("SELECT {STATION_COLUMNS} FROM stations ORDER BY name"), &[], station_from_row).await
    }
}
