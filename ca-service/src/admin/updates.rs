//! Update-signing requests: submit, list and read, approve (the approval that
//! completes the quorum signs), reject, and sign one whose signing did not complete.
//! The two-person rule itself lives in [`crate::updates`]; these endpoints pass it the
//! caller's name and audit actor.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::params::PathId;
use super::{handle, not_found, query, read_json, Operation};
use crate::est::Refusal;
use crate::issuance::Pki;
use crate::store::{RequestStatus, UpdateRequest};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRequestBody {
    /// PKCS#10 in PEM.
    csr: String,
    classes: Vec<String>,
    validity_days: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    reason: String,
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    status: Option<String>,
}

fn pem_cert(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// An update request as JSON; with the certificate and its chain once issued.
async fn update_request_json(pki: &Pki, r: &UpdateRequest) -> Result<serde_json::Value, Refusal> {
    let mut v = serde_json::json!({
        "id": r.id,
        "status": r.status.as_str(),
        "expired": crate::updates::expired(r, std::time::SystemTime::now()),
        "requester": r.requester,
        "classes": r.classes,
        "class_policy_oids": r.classes.iter()
            .map(|c| pki.config.updates.class_oid(c).map(|o| o.to_string()))
            .collect::<Vec<_>>(),
        "validity_days": r.validity_days,
        "approvals": r.approvals,
        "approvals_required": pki.config.updates.approvals,
        "rejected_by": r.rejected_by,
        "reason": r.reason,
        "created_at": r.created_at,
        "expires_at": r.expires_at,
    });
    if let Some((issuer, serial)) = &r.issued {
        let cert = pki.store.get_certificate(issuer, serial).await.map_err(Refusal::from)?;
        v["issuer"] = issuer.clone().into();
        v["serial"] = hex::encode(serial).into();
        if let Some(c) = cert {
            v["certificate"] = pem_cert(&c.der).into();
            v["chain"] = pki.chain_of(issuer).iter().map(|d| pem_cert(d)).collect::<String>().into();
        }
    }
    Ok(v)
}

async fn stored_update_request(pki: &Pki, id: &str) -> Result<UpdateRequest, Refusal> {
    pki.store
        .get_update_request(id)
        .await
        .map_err(Refusal::from)?
        .ok_or_else(|| not_found(format!("update request '{id}' not found")))
}

/// The stored request as the answer.
async fn answer(pki: &Pki, id: &str) -> Result<HttpResponse, Refusal> {
    let request = stored_update_request(pki, id).await?;
    Ok(HttpResponse::Ok().json(update_request_json(pki, &request).await?))
}

/// The `{id}` of the path and the audit target it names (escaped).
fn request_path(req: &HttpRequest) -> (PathId, String) {
    let id = PathId::from_path(req, "id", "update request id");
    let target = format!("update-request:{}", id.shown());
    (id, target)
}

/// `POST /api/v1/update-requests` `{"csr": PEM, "classes": [...], "validity_days": n}`.
pub(super) async fn submit_update_request(
    pki: web::Data<Pki>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    handle(&pki, &req, Operation::SubmitUpdateRequest, "update-request", async |caller| {
        let body: UpdateRequestBody = read_json(payload).await?;
        let new = crate::updates::NewUpdateRequest {
            csr: body.csr.into_bytes(),
            classes: body.classes,
            validity_days: body.validity_days,
        };
        let request = crate::updates::submit(&pki, &caller.name, &caller.actor, new).await?;
        Ok(HttpResponse::Created().json(update_request_json(&pki, &request).await?))
    })
    .await
}

/// `GET /api/v1/update-requests?status=pending`.
pub(super) async fn list_update_requests(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    handle(&pki, &req, Operation::ReadUpdateRequests, "update-requests", async |_| {
        let q: StatusQuery = query(&req)?;
        let status = match q.status.as_deref() {
            None => None,
            Some(s) => Some(RequestStatus::parse(s).map_err(|_| {
                Refusal::bad_request(format!("unknown status '{s}' (pending, approved, rejected, issued)"))
            })?),
        };
        let requests = pki.store.list_update_requests(status).await.map_err(Refusal::from)?;
        let mut out = Vec::with_capacity(requests.len());
        for r in &requests {
            out.push(update_request_json(&pki, r).await?);
        }
        Ok(HttpResponse::Ok().json(serde_json::json!({ "requests": out })))
    })
    .await
}

/// `GET /api/v1/update-requests/{id}`.
pub(super) async fn get_update_request(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let (id, target) = request_path(&req);
    handle(&pki, &req, Operation::ReadUpdateRequests, &target, async |_| answer(&pki, id.get()?).await).await
}

/// `POST /api/v1/update-requests/{id}/approve`: the approval that completes the
/// quorum also signs, and the answer carries the certificate.
pub(super) async fn approve_update_request(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let (id, target) = request_path(&req);
    handle(&pki, &req, Operation::ApproveUpdateRequest, &target, async |caller| {
        let (request, signed) = crate::updates::approve(&pki, &caller.name, &caller.actor, id.get()?).await?;
        let mut body = update_request_json(&pki, &request).await?;
        if let Some(Err(r)) = signed {
            // The approval is recorded; signing was refused (and audited) — say why.
            body["signing_error"] = r.reason.into();
        }
        Ok(HttpResponse::Ok().json(body))
    })
    .await
}

/// `POST /api/v1/update-requests/{id}/reject` `{"reason": "..."}`.
pub(super) async fn reject_update_request(
    pki: web::Data<Pki>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (id, target) = request_path(&req);
    handle(&pki, &req, Operation::RejectUpdateRequest, &target, async |caller| {
        let id = id.get()?;
        let body: RejectBody = read_json(payload).await?;
        crate::updates::reject(&pki, &caller.name, &caller.actor, id, &body.reason).await?;
        answer(&pki, id).await
    })
    .await
}

/// `POST /api/v1/update-requests/{id}/sign`: signs an approved request whose
/// signing did not complete (the final approval normally signs).
pub(super) async fn sign_update_request(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let (id, target) = request_path(&req);
    handle(&pki, &req, Operation::SignUpdateRequest, &target, async |caller| {
        let id = id.get()?;
        let request = stored_update_request(&pki, id).await?;
        crate::updates::sign(&pki, &request, &caller.actor).await?;
        answer(&pki, id).await
    })
    .await
}
