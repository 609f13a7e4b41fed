//! Update-signing requests (the two-person rule).

use super::*;

/// An update request with its approvals, or `None`.
pub(super) fn load_update_request(conn: &Connection, id: &str) -> Result<Option<UpdateRequest>, StoreError> {
    let sql = format!("SELECT {UPDATE_COLUMNS} FROM update_requests WHERE id = ?1");
    let Some(mut request) = query_all(conn, &sql, [id], |row| update_request_from_row(row))?.into_iter().next() else {
        return Ok(None);
    };
    request.approvals = query_all(
        conn,
        "SELECT approver FROM update_request_approvals WHERE request_id = ?1 ORDER BY approved_at, approver",
        [id],
        |r| r.get(0).map_err(db_err),
    )?;
    Ok(Some(request))
}

#[async_trait]
impl UpdateRequestStore for SqliteStore {
    async fn submit_update_request(&self, request: &UpdateRequest, audit: AuditEvent) -> Result<(), StoreError> {
        let r = request.clone();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "INSERT INTO update_requests (id, profile, csr_der, classes, validity_days, requester, status, \
                     created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .map_err(db_err)?
                .execute(params![
                    r.id,
                    r.profile,
                    r.csr_der,
                    r.classes.join(","),
                    r.validity_days,
                    r.requester,
                    r.created_at,
                    r.expires_at
                ])
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!("update request '{}'", r.id)));
            }
            append_log(tx, vec![audit])
        })
        .await
    }

    async fn get_update_request(&self, id: &str) -> Result<Option<UpdateRequest>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| load_update_request(conn, &id)).await
    }

    async fn list_update_requests(&self, status: Option<RequestStatus>) -> Result<Vec<UpdateRequest>, StoreError> {
        self.read(move |conn| {
            let sql = "SELECT id FROM update_requests WHERE ?1 IS NULL OR status = ?1 ORDER BY created_at, id";
            let ids: Vec<String> =
                query_all(conn, sql, [status.map(RequestStatus::as_str)], |r| r.get(0).map_err(db_err))?;
            ids.iter().filter_map(|id| load_update_request(conn, id).transpose()).collect()
        })
        .await
    }

    async fn approve_update_request(
        &self,
        id: &str,
        approver: &str,
        required: usize,
        audit: AuditEvent,
    ) -> Result<UpdateRequest, StoreError> {
        let (id, approver) = (id.to_owned(), approver.to_owned());
        self.write(move |tx| {
            let now = now_us() / 1_000_000;
            let request =
                load_update_request(tx, &id)?.ok_or_else(|| StoreError::NotFound(format!("update request '{id}'")))?;
            if let Some(conflict) = super::approval_conflict(&request, &approver, now) {
                return Err(conflict);
            }
            tx.prepare_cached(
                "INSERT INTO update_request_approvals (request_id, approver, approved_at) VALUES (?1, ?2, ?3)",
            )
            .map_err(db_err)?
            .execute(params![id, approver, now])
            .map_err(db_err)?;
            if request.approvals.len() + 1 >= required {
                tx.prepare_cached(
                    "UPDATE update_requests SET status = 'approved' WHERE id = ?1 AND status = 'pending'",
                )
                .map_err(db_err)?
                .execute(params![id])
                .map_err(db_err)?;
            }
            append_log(tx, vec![audit])?;
            load_update_request(tx, &id)?.ok_or_else(|| StoreError::Database("update request vanished".into()))
        })
        .await
    }

    async fn reject_update_request(
        &self,
        id: &str,
        rejected_by: &str,
        reason: &str,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let (id, rejected_by, reason) = (id.to_owned(), rejected_by.to_owned(), reason.to_owned());
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE update_requests SET status = 'rejected', rejected_by = ?1, reason = ?2 \
                     WHERE id = ?3 AND status = 'pending'",
                )
                .map_err(db_err)?
                .execute(params![rejected_by, reason, id])
                .map_err(db_err)?;
            if n == 0 {
                return Err(match load_update_request(tx, &id)? {
                    None => StoreError::NotFound(format!("update request '{id}'")),
                    Some(r) => StoreError::Conflict(format!(
                        "update request '{id}' is already {}; decisions are final",
                        r.status.as_str()
                    )),
                });
            }
            append_log(tx, vec![audit])
        })
        .await
    }
}
