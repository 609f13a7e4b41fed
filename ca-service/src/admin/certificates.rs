//! Certificates: read one record, revoke one certificate.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{handle, not_found, path_param, revoke_endpoint, Operation};
use crate::est::Refusal;
use crate::issuance::Pki;
use crate::store::CertRecord;

/// A certificate record as JSON (times in unix seconds).
pub fn certificate_json(c: &CertRecord) -> serde_json::Value {
    serde_json::json!({
        "issuer": c.issuer,
        "serial": hex::encode(&c.serial),
        "subject": c.subject,
        "device_id": c.device_id,
        "profile": c.profile,
        "not_before": c.not_before,
        "not_after": c.not_after,
        "status": c.status.as_str(),
        "revoked_at": c.revoked_at,
        "revocation_reason": c.revocation_reason.map(crate::revoke::reason_name),
        "fingerprint_sha256": c.fingerprint,
    })
}

fn parse_serial(serial: &str) -> Result<Vec<u8>, Refusal> {
    crate::crl::parse_serial(serial).map_err(Refusal::bad_request)
}

/// The `{issuer}` and `{serial}` of the path, and the audit target they name.
fn certificate_path(req: &HttpRequest) -> (String, String, String) {
    let (issuer, serial) = (path_param(req, "issuer"), path_param(req, "serial"));
    let target = format!("certificate:{issuer}/{serial}");
    (issuer, serial, target)
}

/// `POST /api/v1/certificates/{issuer}/{serial}/revoke` `{"reason": "keyCompromise"}`.
pub(super) async fn revoke_certificate(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let (issuer, serial, target) = certificate_path(&req);
    revoke_endpoint(&pki, &req, payload, Operation::RevokeCertificate, &target, || {
        Ok(crate::revoke::Target::Certificate { issuer, serial: parse_serial(&serial)? })
    })
    .await
}

/// `GET /api/v1/certificates/{issuer}/{serial}`.
pub(super) async fn get_certificate(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let (issuer, serial, target) = certificate_path(&req);
    handle(&pki, &req, Operation::ReadCertificate, &target, async |_| {
        let serial = parse_serial(&serial)?;
        let record = pki
            .store
            .get_certificate(&issuer, &serial)
            .await
            .map_err(Refusal::from)?
            .ok_or_else(|| not_found(format!("certificate {target} not found")))?;
        Ok(HttpResponse::Ok().json(certificate_json(&record)))
    })
    .await
}
