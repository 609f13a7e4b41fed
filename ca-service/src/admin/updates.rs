//! Update-signing requests: submit, list and read, approve (the approval that
//! completes the quorum signs), reject, and sign one whose signing did not complete.
//! The two-person rule itself lives in [`crate::updates`]; these endpoints pass it the
//! caller's name and audit actor.

use std::sync::Arc;

use super::params::PathId;
use super::{bodies, handle, not_found, read_body, Operation};
use crate::est::Refusal;
use crate::issuance::Pki;
use crate::store::UpdateRequest;
use crate::transparency::TransparencyLog;
use actix_web::{web, HttpRequest, HttpResponse};

fn pem_cert(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// Whether (and how) an answer carries the tlog-proof of the certificate's issuance.
#[derive(Clone, Copy)]
enum Proof<'a> {
    /// No proof (lists, submissions).
    No,
    /// The issuance entry is after this `seq` (the log size before signing).
    After(&'a TransparencyLog, i64),
    /// Search from the request's creation on (reading a stored request: nothing
    /// about the proof is stored, it is recomputed from the certificate).
    Search(&'a TransparencyLog),
}

/// The transparency log of the listener (the HTTPS listener has it).
fn log_of(req: &HttpRequest) -> Option<Arc<TransparencyLog>> {
    let log = req.app_data::<web::Data<Arc<TransparencyLog>>>().map(|d| d.get_ref().clone());
    if log.is_none() {
        tracing::error!("no transparency log on this listener: update answers carry no tlog-proof");
    }
    log
}

/// The log size before an issuance, for [`Proof::After`]; without a log (or if the
/// size cannot be read) the proof is searched for instead.
async fn proof_after<'a>(pki: &Pki, log: Option<&'a TransparencyLog>) -> Proof<'a> {
    let Some(log) = log else { return Proof::No };
    match pki.store.log_size().await {
        Ok(size) => Proof::After(log, i64::try_from(size).unwrap_or(i64::MAX)),
        Err(e) => {
            tracing::warn!(error = %e, "reading the log size failed; the tlog-proof will be searched for");
            Proof::Search(log)
        }
    }
}

/// Sets `tlog_proof` (C2SP tlog-proof text) of the certificate with `fingerprint`,
/// or `tlog_proof_error` if it cannot be had: the certificate stands either way.
async fn add_proof(v: &mut serde_json::Value, r: &UpdateRequest, fingerprint: &str, proof: Proof<'_>) {
    let since_us = r.created_at.saturating_mul(1_000_000);
    let found = match proof {
        Proof::No => return,
        Proof::After(log, seq) => match log.issuance_proof(seq, fingerprint).await {
            // Not after `seq`: issued earlier (e.g. by another call); search.
            Ok(None) => log.issuance_proof_since(since_us, fingerprint).await,
            other => other,
        },
        Proof::Search(log) => log.issuance_proof_since(since_us, fingerprint).await,
    };
    match found {
        Ok(Some(p)) => v["tlog_proof"] = p.to_text().into(),
        Ok(None) => {
            tracing::error!(request = %r.id, fingerprint, "the issued certificate has no certificate.issue log entry");
            v["tlog_proof_error"] = "the certificate's issuance is not in the log".into();
        }
        Err(e) => {
            tracing::warn!(request = %r.id, error = %e, "no tlog-proof for the issued certificate");
            v["tlog_proof_error"] = e.to_string().into();
        }
    }
}

/// An update request as JSON; with the certificate, its chain and (per `proof`) the
/// tlog-proof of its issuance once issued.
async fn update_request_json(pki: &Pki, r: &UpdateRequest, proof: Proof<'_>) -> Result<serde_json::Value, Refusal> {
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
            add_proof(&mut v, r, &c.fingerprint, proof).await;
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
async fn answer(pki: &Pki, id: &str, proof: Proof<'_>) -> Result<HttpResponse, Refusal> {
    let request = stored_update_request(pki, id).await?;
    Ok(HttpResponse::Ok().json(update_request_json(pki, &request, proof).await?))
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
        let new = bodies::update_request(&read_body(payload).await?)?;
        let request = crate::updates::submit(&pki, &caller.name, &caller.actor, new).await?;
        Ok(HttpResponse::Created().json(update_request_json(&pki, &request, Proof::No).await?))
    })
    .await
}

/// `GET /api/v1/update-requests?status=pending`.
pub(super) async fn list_update_requests(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    handle(&pki, &req, Operation::ReadUpdateRequests, "update-requests", async |_| {
        let status = bodies::status_filter(req.query_string())?;
        let requests = pki.store.list_update_requests(status).await.map_err(Refusal::from)?;
        let mut out = Vec::with_capacity(requests.len());
        for r in &requests {
            out.push(update_request_json(&pki, r, Proof::No).await?);
        }
        Ok(HttpResponse::Ok().json(serde_json::json!({ "requests": out })))
    })
    .await
}

/// `GET /api/v1/update-requests/{id}`: once issued, with the certificate's tlog-proof.
pub(super) async fn get_update_request(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let (id, target) = request_path(&req);
    let log = log_of(&req);
    let proof = log.as_deref().map_or(Proof::No, Proof::Search);
    handle(&pki, &req, Operation::ReadUpdateRequests, &target, async |_| answer(&pki, id.get()?, proof).await).await
}

/// `POST /api/v1/update-requests/{id}/approve`: the approval that completes the
/// quorum also signs, and the answer carries the certificate and the tlog-proof of
/// its issuance.
pub(super) async fn approve_update_request(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let (id, target) = request_path(&req);
    let log = log_of(&req);
    handle(&pki, &req, Operation::ApproveUpdateRequest, &target, async |caller| {
        let id = id.get()?;
        let proof = proof_after(&pki, log.as_deref()).await;
        let (request, signed) = crate::updates::approve(&pki, &caller.name, &caller.actor, id).await?;
        let proof = if matches!(signed, Some(Ok(_))) { proof } else { Proof::No };
        let mut body = update_request_json(&pki, &request, proof).await?;
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
        let reason = bodies::reject_reason(&read_body(payload).await?)?;
        crate::updates::reject(&pki, &caller.name, &caller.actor, id, &reason).await?;
        answer(&pki, id, Proof::No).await
    })
    .await
}

/// `POST /api/v1/update-requests/{id}/sign`: signs an approved request whose
/// signing did not complete (the final approval normally signs); the answer carries
/// the certificate and the tlog-proof of its issuance.
pub(super) async fn sign_update_request(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let (id, target) = request_path(&req);
    let log = log_of(&req);
    handle(&pki, &req, Operation::SignUpdateRequest, &target, async |caller| {
        let id = id.get()?;
        let request = stored_update_request(&pki, id).await?;
        let proof = proof_after(&pki, log.as_deref()).await;
        crate::updates::sign(&pki, &request, &caller.actor).await?;
        answer(&pki, id, proof).await
    })
    .await
}
