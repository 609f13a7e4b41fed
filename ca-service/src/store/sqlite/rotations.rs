//! Rotations on command (the statements are shared: `store::rotations`).

use super::*;
use crate::store::rotations::*;

#[async_trait]
impl RotationStore for SqliteStore {
    async fn create_rotation(&self, r: &NewRotation, audit: AuditEvent) -> Result<RotationRecord, StoreError> {
        let r = r.clone();
        self.write(move |tx| {
            let (scope, value) = scope_of(&r.which);
            let (column, _) = r.which.column_and_value();
            let exists: i64 = tx
                .prepare_cached(&format!("SELECT count(*) FROM (SELECT 1 FROM devices WHERE {column} = ?1 LIMIT 1)"))
                .map_err(db_err)?
                .query_row([value], |row| row.get(0))
                .map_err(db_err)?;
            if exists == 0 {
                return Err(StoreError::NotFound(r.which.to_string()));
            }
            tx.prepare_cached(
                "INSERT INTO rotations (scope, value, opened_at, deadline, after_deadline, new_key, reason, created_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(db_err)?
            .execute(params![
                scope,
                value,
                r.opened_at,
                r.deadline,
                r.after_deadline.as_str(),
                r.new_key,
                r.reason,
                r.created_by
            ])
            .map_err(db_err)?;
            let id = tx.last_insert_rowid();
            let mut audit = audit;
            audit.target = format!("rotation:{id}");
            append_log(tx, vec![audit])?;
            Ok(RotationRecord { id, rotation: r, closed_at: None, revoked: None })
        })
        .await
    }

    async fn get_rotation(&self, id: i64) -> Result<Option<RotationRecord>, StoreError> {
        self.read(move |conn| {
            let sql = format!("SELECT {ROTATION_COLUMNS} FROM rotations WHERE id = ?1");
            Ok(query_all(conn, &sql, [id], |row| rotation_from_row(row))?.into_iter().next())
        })
        .await
    }

    async fn list_rotations(&self, limit: i64) -> Result<Vec<RotationRecord>, StoreError> {
        self.read(move |conn| {
            let sql = format!("SELECT {ROTATION_COLUMNS} FROM rotations ORDER BY id DESC LIMIT ?1");
            query_all(conn, &sql, [limit], |row| rotation_from_row(row))
        })
        .await
    }

    async fn device_rotations(
        &self,
        device_id: &str,
        batch: &str,
        model: &str,
    ) -> Result<Vec<RotationRecord>, StoreError> {
        let keys = [device_id.to_string(), batch.to_string(), model.to_string()];
        self.read(move |conn| {
            query_all(conn, &numbered_for_sqlite(&device_rotations_sql()), keys, |row| rotation_from_row(row))
        })
        .await
    }

    async fn rotation_progress(&self, r: &RotationRecord) -> Result<RotationProgress, StoreError> {
        let (column, value) = r.rotation.which.column_and_value();
        let (sql, value, opened) =
            (numbered_for_sqlite(&progress_sql(column)), value.to_string(), replacements_from(r));
        self.read(move |conn| {
            let (devices, replaced): (i64, i64) = conn
                .prepare_cached(&sql)
                .map_err(db_err)?
                .query_row(params![value, opened], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(db_err)?;
            let (devices, replaced) = (devices.max(0) as u64, replaced.max(0) as u64);
            Ok(RotationProgress { devices, replaced, pending: devices - replaced.min(devices) })
        })
        .await
    }

    async fn rotation_pending(&self, r: &RotationRecord, after: &str, limit: i64) -> Result<Vec<String>, StoreError> {
        let (column, value) = r.rotation.which.column_and_value();
        let sql = numbered_for_sqlite(&pending_sql(column));
        let (value, opened, after) = (value.to_string(), replacements_from(r), after.to_string());
        self.read(move |conn| query_all(conn, &sql, params![value, opened, after, limit], |row| Columns::get(row, 0)))
            .await
    }

    async fn due_rotations(&self, now: i64) -> Result<Vec<RotationRecord>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {ROTATION_COLUMNS} FROM rotations WHERE closed_at IS NULL AND deadline <= ?1 ORDER BY deadline"
            );
            query_all(conn, &sql, [now], |row| rotation_from_row(row))
        })
        .await
    }

    async fn close_rotation(
        &self,
        id: i64,
        now: i64,
        audit: AuditEvent,
    ) -> Result<Option<(RotationRecord, Vec<RevokedCert>)>, StoreError> {
        self.write(move |tx| {
            let sql = format!("SELECT {ROTATION_COLUMNS} FROM rotations WHERE id = ?1 AND closed_at IS NULL");
            let Some(mut r) = query_all(tx, &sql, [id], |row| rotation_from_row(row))?.into_iter().next() else {
                return Ok(None);
            };
            let mut revoked = Vec::new();
            if r.rotation.after_deadline == AfterDeadline::Revoke {
                let (column, value) = r.rotation.which.column_and_value();
                let opened = replacements_from(&r);
                let filter = numbered_for_sqlite(&unreplaced_where(column));
                let reason = revocation::Reason::Superseded;
                // The values go after the filter's two: ?3 and ?4.
                let update = format!(
                    "UPDATE certificates SET status = 'revoked', revoked_at = ?3, revocation_reason = ?4 \
                     WHERE {filter} RETURNING {REVOKED_RETURNING}"
                );
                let params = params![value, opened, now, i32::from(reason.code())];
                revoked = revoked_in_issue_order(query_all(tx, &update, params, |row| revoked_with_id(row))?);
            }
            let n = revoked.len() as i64;
            tx.prepare_cached("UPDATE rotations SET closed_at = ?1, revoked = ?2 WHERE id = ?3")
                .map_err(db_err)?
                .execute(params![now, n, id])
                .map_err(db_err)?;
            append_log(tx, vec![with_revoked(audit, n)])?;
            r.closed_at = Some(now);
            r.revoked = Some(n as u64);
            Ok(Some((r, revoked)))
        })
        .await
    }
}
