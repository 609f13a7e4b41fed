//! The audit log, read through the API (a privileged read, itself audited).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{handle, query, Operation, MAX_AUDIT_PAGE};
use crate::audit::AuditEntry;
use crate::est::Refusal;
use crate::issuance::Pki;

#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

fn entry_json(e: &AuditEntry) -> serde_json::Value {
    let details = serde_json::from_str::<serde_json::Value>(&e.event.details)
        .unwrap_or_else(|_| serde_json::Value::String(e.event.details.clone()));
    serde_json::json!({
        "seq": e.seq,
        "time_us": e.time_us,
        "actor": e.event.actor,
        "action": e.event.action,
        "target": e.event.target,
        "outcome": e.event.outcome,
        "details": details,
        "leaf_hash": e.leaf_hash.map(hex::encode),
    })
}

/// `GET /api/v1/audit?after=N&limit=M` (limit 1..=1000, default 100).
pub(super) async fn audit_log(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    handle(&pki, &req, Operation::ReadAudit, "audit", async |_| {
        let q: AuditQuery = query(&req)?;
        let limit = q.limit.unwrap_or(100);
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) || q.after < 0 {
            return Err(Refusal::bad_request(format!("limit must be 1..={MAX_AUDIT_PAGE} and after ≥ 0")));
        }
        let entries = pki.store.audit_entries(q.after, limit).await.map_err(Refusal::from)?;
        Ok(HttpResponse::Ok().json(serde_json::json!({
            "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
            "next_after": entries.last().map(|e| e.seq),
        })))
    })
    .await
}
