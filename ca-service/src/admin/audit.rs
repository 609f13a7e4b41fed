//! The audit log, read through the API (a privileged read, itself audited).

use super::{bodies, handle, Operation};
use crate::audit::AuditEntry;
use crate::est::Refusal;
use crate::issuance::Pki;
use actix_web::{web, HttpRequest, HttpResponse};

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
        let (after, limit) = bodies::audit_page(req.query_string())?;
        let entries = pki.store.audit_entries(after, limit).await.map_err(Refusal::from)?;
        Ok(HttpResponse::Ok().json(serde_json::json!({
            "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
            "next_after": entries.last().map(|e| e.seq),
        })))
    })
    .await
}
