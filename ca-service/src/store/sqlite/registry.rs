//! The registry: devices, provisioning stations, enrollment requests, and the
//! batched read EST decides on (`enrollment_contexts`).

use super::*;

#[async_trait]
impl RegistryStore for SqliteStore {
    async fn enrollment_contexts(&self, lookups: &[EnrollmentLookup]) -> Result<Vec<EnrollmentContext>, StoreError> {
        enrollment_contexts_one_by_one(self, lookups).await
    }

    async fn add_devices(&self, devices: &[DeviceRecord], audit: AuditEvent) -> Result<(), StoreError> {
        if devices.is_empty() {
            return Ok(());
        }
        let devices = devices.to_vec();
        self.write(move |tx| {
            let now = now_us();
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO devices (device_id, model, class, batch, hardware_serial, state, reprovision, \
                         created_at, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) ON CONFLICT (device_id) DO NOTHING",
                    )
                    .map_err(db_err)?;
                for d in &devices {
                    let n = stmt
                        .execute(params![
                            d.device_id,
                            d.model,
                            d.class,
                            d.batch,
                            d.hardware_serial,
                            d.state.as_str(),
                            d.reprovision,
                            now
                        ])
                        .map_err(db_err)?;
                    if n == 0 {
                        return Err(StoreError::AlreadyExists(format!("device '{}'", d.device_id)));
                    }
                }
            }
            append_log(tx, vec![audit])
        })
        .await
    }

    async fn get_device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let device_id = device_id.to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ?1");
            Ok(query_all(conn, &sql, [device_id], |row| device_from_row(row))?.into_iter().next())
        })
        .await
    }

    async fn submit_enrollment_request(
        &self,
        request: &EnrollmentRequest,
        audit: AuditEvent,
    ) -> Result<EnrollmentRequest, StoreError> {
        let r = request.clone();
        self.write(move |tx| {
            let now = now_us();
            let n = tx
                .prepare_cached(
                    "INSERT INTO enrollment_requests (id, profile, device_id, requester, status, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5) ON CONFLICT (id) DO NOTHING",
                )
                .map_err(db_err)?
                .execute(params![r.id, r.profile, r.device_id, r.requester, now])
                .map_err(db_err)?;
            if n == 1 {
                append_log(tx, vec![audit])?;
            }
            let sql = format!("SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE id = ?1");
            query_all(tx, &sql, [r.id.clone()], |row| request_from_row(row))?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Database("enrollment request vanished".into()))
        })
        .await
    }

    async fn get_enrollment_request(&self, id: &str) -> Result<Option<EnrollmentRequest>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE id = ?1");
            Ok(query_all(conn, &sql, [id], |row| request_from_row(row))?.into_iter().next())
        })
        .await
    }

    async fn decide_enrollment_request(
        &self,
        id: &str,
        approve: bool,
        decided_by: &str,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let (id, decided_by) = (id.to_owned(), decided_by.to_owned());
        self.write(move |tx| {
            let status = if approve { "approved" } else { "rejected" };
            let n = tx
                .prepare_cached(
                    "UPDATE enrollment_requests SET status = ?1, decided_by = ?2, updated_at = ?3 \
                     WHERE id = ?4 AND status = 'pending'",
                )
                .map_err(db_err)?
                .execute(params![status, decided_by, now_us(), id])
                .map_err(db_err)?;
            if n == 0 {
                let sql = format!("SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE id = ?1");
                return Err(match query_all(tx, &sql, [id.clone()], |row| request_from_row(row))?.into_iter().next() {
                    None => StoreError::NotFound(format!("enrollment request '{id}'")),
                    Some(r) => StoreError::Conflict(format!(
                        "enrollment request '{id}' is already {}; decisions are final",
                        r.status.as_str()
                    )),
                });
            }
            append_log(tx, vec![audit])
        })
        .await
    }

    async fn list_enrollment_requests(
        &self,
        status: Option<RequestStatus>,
    ) -> Result<Vec<EnrollmentRequest>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {REQUEST_COLUMNS} FROM enrollment_requests WHERE ?1 IS NULL OR status = ?1 ORDER BY created_at, id"
            );
            query_all(conn, &sql, [status.map(RequestStatus::as_str)], |row| request_from_row(row))
        })
        .await
    }

    async fn add_station(&self, station: &StationRecord, audit: AuditEvent) -> Result<(), StoreError> {
        let st = station.clone();
        self.write(move |tx| {
            let now = now_us();
            let n = tx
                .prepare_cached(
                    "INSERT INTO stations (name, enabled, models, batches, secret_hash, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (name) DO NOTHING",
                )
                .map_err(db_err)?
                .execute(params![st.name, st.enabled, st.models.join(","), st.batches.join(","), st.secret_hash, now])
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!("station '{}'", st.name)));
            }
            append_log(tx, vec![audit])
        })
        .await
    }

    async fn get_station(&self, name: &str) -> Result<Option<StationRecord>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            let sql = format!("SELECT {STATION_COLUMNS} FROM stations WHERE name = ?1");
            Ok(query_all(conn, &sql, [name], |row| station_from_row(row))?.into_iter().next())
        })
        .await
    }

    async fn list_stations(&self) -> Result<Vec<StationRecord>, StoreError> {
        self.read(move |conn| {
            query_all(conn, &format!("SELECT {STATION_COLUMNS} FROM stations ORDER BY name"), [], |row| {
                station_from_row(row)
            })
        })
        .await
    }
}
