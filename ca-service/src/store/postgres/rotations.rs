//! Rotations on command (the statements are shared: `store::rotations`). The reads
//! over a rotation's devices filter on ranges that grow with the fleet, so they are
//! prepared per call (DESIGN §8).

use super::*;
use crate::store::rotations::*;

#[async_trait]
impl RotationStore for PostgresStore {
    async fn create_rotation(&self, r: &NewRotation, audit: AuditEvent) -> Result<RotationRecord, StoreError> {
        let (scope, value) = scope_of(&r.which);
        let (column, _) = r.which.column_and_value();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let exists = tx
            .query_opt(&format!("SELECT 1 FROM devices WHERE {column} = $1 LIMIT 1"), &[&value])
            .await
            .map_err(pg_err)?;
        if exists.is_none() {
            return Err(StoreError::NotFound(r.which.to_string()));
        }
        let head = lock_log(&tx).await?;
        let row = tx
            .query_one(
                "INSERT INTO rotations (scope, value, opened_at, deadline, after_deadline, new_key, reason, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                &[
                    &scope,
                    &value,
                    &r.opened_at,
                    &r.deadline,
                    &r.after_deadline.as_str(),
                    &r.new_key,
                    &r.reason,
                    &r.created_by,
                ],
            )
            .await
            .map_err(pg_err)?;
        let id: i64 = row.try_get(0).map_err(pg_err)?;
        let mut audit = audit;
        audit.target = format!("rotation:{id}");
        append_log(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(RotationRecord { id, rotation: r.clone(), closed_at: None, revoked: None })
    }

    async fn get_rotation(&self, id: i64) -> Result<Option<RotationRecord>, StoreError> {
        self.read_opt(&format!("SELECT {ROTATION_COLUMNS} FROM rotations WHERE id = $1"), &[&id], rotation_from_row)
            .await
    }

    async fn list_rotations(&self, limit: i64) -> Result<Vec<RotationRecord>, StoreError> {
        self.read_all(
            &format!("SELECT {ROTATION_COLUMNS} FROM rotations ORDER BY id DESC LIMIT $1"),
            &[&limit],
            rotation_from_row,
        )
        .await
    }

    async fn device_rotations(
        &self,
        device_id: &str,
        batch: &str,
        model: &str,
    ) -> Result<Vec<RotationRecord>, StoreError> {
        self.read_all(&device_rotations_sql(), &[&device_id, &batch, &model], rotation_from_row).await
    }

    async fn rotation_progress(&self, r: &RotationRecord) -> Result<RotationProgress, StoreError> {
        let (column, value) = r.rotation.which.column_and_value();
        let client = self.client().await?;
        let row = client.query_one(&progress_sql(column), &[&value, &replacements_from(r)]).await.map_err(pg_err)?;
        let devices: i64 = row.try_get(0).map_err(pg_err)?;
        let replaced: i64 = row.try_get(1).map_err(pg_err)?;
        let (devices, replaced) = (devices.max(0) as u64, replaced.max(0) as u64);
        Ok(RotationProgress { devices, replaced, pending: devices - replaced.min(devices) })
    }

    async fn rotation_pending(&self, r: &RotationRecord, after: &str, limit: i64) -> Result<Vec<String>, StoreError> {
        let (column, value) = r.rotation.which.column_and_value();
        let client = self.client().await?;
        let rows = client
            .query(&pending_sql(column), &[&value, &replacements_from(r), &after, &limit])
            .await
            .map_err(pg_err)?;
        rows.iter().map(|row| row.try_get(0).map_err(pg_err)).collect()
    }

    async fn due_rotations(&self, now: i64) -> Result<Vec<RotationRecord>, StoreError> {
        self.read_all(
            &format!(
                "SELECT {ROTATION_COLUMNS} FROM rotations WHERE closed_at IS NULL AND deadline <= $1 ORDER BY deadline"
            ),
            &[&now],
            rotation_from_row,
        )
        .await
    }

    async fn close_rotation(
        &self,
        id: i64,
        now: i64,
        audit: AuditEvent,
    ) -> Result<Option<(RotationRecord, Vec<RevokedCert>)>, StoreError> {
        // A batch or a model may hold a fleet.
        let (_bulk, mut client) = self.bulk_client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.batch_execute(BULK_TIMEOUT_SQL).await.map_err(pg_err)?;
        // The chain lock first, as every writer of certificates takes it: a revocation
        // that locked tally rows (migration V18) before it would deadlock with an
        // enrollment holding the lock and waiting for them.
        let head = lock_log(&tx).await?;
        // The row lock makes a second instance wait, then find it closed.
        let found = tx
            .query_opt(
                &format!("SELECT {ROTATION_COLUMNS} FROM rotations WHERE id = $1 AND closed_at IS NULL FOR UPDATE"),
                &[&id],
            )
            .await
            .map_err(pg_err)?;
        let Some(mut r) = found.as_ref().map(rotation_from_row).transpose()? else {
            return Ok(None);
        };
        let mut revoked = Vec::new();
        if r.rotation.after_deadline == AfterDeadline::Revoke {
            let (column, value) = r.rotation.which.column_and_value();
            let reason = revocation::Reason::Superseded;
            let sql = format!(
                "UPDATE certificates SET status = 'revoked', revoked_at = $3, revocation_reason = $4 \
                 WHERE {} RETURNING {REVOKED_RETURNING}",
                unreplaced_where(column)
            );
            let rows = tx
                .query(&sql, &[&value, &replacements_from(&r), &now, &i32::from(reason.code())])
                .await
                .map_err(pg_err)?;
            revoked = revoked_in_issue_order(rows.iter().map(revoked_with_id).collect::<Result<_, _>>()?);
        }
        let n = revoked.len() as i64;
        tx.execute("UPDATE rotations SET closed_at = $1, revoked = $2 WHERE id = $3", &[&now, &n, &id])
            .await
            .map_err(pg_err)?;
        append_log(&tx, head, vec![with_revoked(audit, n)]).await?;
        tx.commit().await.map_err(pg_err)?;
        r.closed_at = Some(now);
        r.revoked = Some(n as u64);
        Ok(Some((r, revoked)))
    }
}
