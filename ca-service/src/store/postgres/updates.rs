//! Update-signing requests (the two-person rule).

use super::*;

/// An update request with its approvals, or `None`. `FOR UPDATE` inside a
/// transaction, so two approvals of one request serialize.
pub(super) async fn load_update_request(
    client: &impl tokio_postgres::GenericClient,
    id: &str,
    for_update: bool,
) -> Result<Option<UpdateRequest>, StoreError> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let stmt = client
        .prepare(&format!("SELECT {UPDATE_COLUMNS} FROM update_requests WHERE id = $1{lock}"))
        .await
        .map_err(pg_err)?;
    let Some(row) = client.query_opt(&stmt, &[&id]).await.map_err(pg_err)? else { return Ok(None) };
    let mut request = update_request_from_row(&row)?;
    let stmt = client
        .prepare("SELECT approver FROM update_request_approvals WHERE request_id = $1 ORDER BY approved_at, approver")
        .await
        .map_err(pg_err)?;
    for row in client.query(&stmt, &[&id]).await.map_err(pg_err)? {
        request.approvals.push(row.try_get(0).map_err(pg_err)?);
    }
    Ok(Some(request))
}

#[async_trait]
impl UpdateRequestStore for PostgresStore {
    async fn submit_update_request(&self, request: &UpdateRequest, audit: AuditEvent) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO update_requests (id, profile, csr_der, classes, validity_days, requester, status, \
                 created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        let validity = i32::try_from(request.validity_days)
            .map_err(|_| StoreError::Database(format!("validity {} out of range", request.validity_days)))?;
        let n = tx
            .execute(
                &stmt,
                &[
                    &request.id,
                    &request.profile,
                    &request.csr_der,
                    &request.classes.join(","),
                    &validity,
                    &request.requester,
                    &request.created_at,
                    &request.expires_at,
                ],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(StoreError::AlreadyExists(format!("update request '{}'", request.id)));
        }
        append_log(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn get_update_request(&self, id: &str) -> Result<Option<UpdateRequest>, StoreError> {
        let client = self.client().await?;
        load_update_request(&**client, id, false).await
    }

    async fn list_update_requests(&self, status: Option<RequestStatus>) -> Result<Vec<UpdateRequest>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id FROM update_requests WHERE $1::text IS NULL OR status = $1 ORDER BY created_at, id",
            )
            .await
            .map_err(pg_err)?;
        let status = status.map(RequestStatus::as_str);
        let mut out = Vec::new();
        for row in client.query(&stmt, &[&status]).await.map_err(pg_err)? {
            let id: String = row.try_get(0).map_err(pg_err)?;
            out.extend(load_update_request(&**client, &id, false).await?);
        }
        Ok(out)
    }

    async fn approve_update_request(
        &self,
        id: &str,
        approver: &str,
        required: usize,
        audit: AuditEvent,
    ) -> Result<UpdateRequest, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        let now = now_us() / 1_000_000;
        let request = load_update_request(&*tx, id, true)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("update request '{id}'")))?;
        if let Some(conflict) = super::approval_conflict(&request, approver, now) {
            return Err(conflict);
        }
        let stmt = tx
            .prepare_cached(
                "INSERT INTO update_request_approvals (request_id, approver, approved_at) VALUES ($1, $2, $3)",
            )
            .await
            .map_err(pg_err)?;
        tx.execute(&stmt, &[&id, &approver, &now]).await.map_err(pg_err)?;
        if request.approvals.len() + 1 >= required {
            let stmt = tx
                .prepare_cached("UPDATE update_requests SET status = 'approved' WHERE id = $1 AND status = 'pending'")
                .await
                .map_err(pg_err)?;
            tx.execute(&stmt, &[&id]).await.map_err(pg_err)?;
        }
        append_log(&tx, head, vec![audit]).await?;
        let stored = load_update_request(&*tx, id, false)
            .await?
            .ok_or_else(|| StoreError::Database("update request vanished".into()))?;
        tx.commit().await.map_err(pg_err)?;
        Ok(stored)
    }

    async fn reject_update_request(
        &self,
        id: &str,
        rejected_by: &str,
        reason: &str,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let head = lock_log(&tx).await?;
        let stmt = tx
            .prepare_cached(
                "UPDATE update_requests SET status = 'rejected', rejected_by = $1, reason = $2 \
                 WHERE id = $3 AND status = 'pending'",
            )
            .await
            .map_err(pg_err)?;
        if tx.execute(&stmt, &[&rejected_by, &reason, &id]).await.map_err(pg_err)? == 0 {
            return Err(match load_update_request(&*tx, id, false).await? {
                None => StoreError::NotFound(format!("update request '{id}'")),
                Some(r) => StoreError::Conflict(format!(
                    "update request '{id}' is already {}; decisions are final",
                    r.status.as_str()
                )),
            });
        }
        append_log(&tx, head, vec![audit]).await?;
        tx.commit().await.map_err(pg_err)
    }
}
