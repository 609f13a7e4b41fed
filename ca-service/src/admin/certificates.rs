//! Certificates: read one record, revoke one certificate.

use actix_web::{web, HttpRequest, HttpResponse};

use super::params::PathId;
use super::{handle, not_found, revoke_endpoint, Operation};
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

/// The `{issuer}` and `{serial}` of the path, checked, and the audit target they
/// name (escaped, so it is safe to store even when they are refused).
struct CertificatePath {
    issuer: PathId,
    serial: PathId,
    target: String,
}

impl CertificatePath {
    fn of(req: &HttpRequest) -> Self {
        let (issuer, serial) = (PathId::from_path(req, "issuer", "issuer"), PathId::from_path(req, "serial", "serial"));
        let target = format!("certificate:{}/{}", issuer.shown(), serial.shown());
        Self { issuer, serial, target }
    }

    /// (issuer, serial octets), or a 400 saying which is malformed.
    fn get(&self) -> Result<(String, Vec<u8>), Refusal> {
        let issuer = self.issuer.get()?.to_string();
        let serial = crate::crl::parse_serial(self.serial.get()?).map_err(Refusal::bad_request)?;
        Ok((issuer, serial))
    }
}

/// `POST /api/v1/certificates/{issuer}/{serial}/revoke` `{"reason": "keyCompromise"}`.
pub(super) async fn revoke_certificate(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let path = CertificatePath::of(&req);
    revoke_endpoint(&pki, &req, payload, Operation::RevokeCertificate, &path.target, || {
        let (issuer, serial) = path.get()?;
        Ok(crate::revoke::Target::Certificate { issuer, serial })
    })
    .await
}

/// `GET /api/v1/certificates/{issuer}/{serial}`.
pub(super) async fn get_certificate(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let path = CertificatePath::of(&req);
    handle(&pki, &req, Operation::ReadCertificate, &path.target, async |_| {
        let (issuer, serial) = path.get()?;
        let record = pki
            .store
            .get_certificate(&issuer, &serial)
            .await
            .map_err(Refusal::from)?
            .ok_or_else(|| not_found(format!("certificate {} not found", path.target)))?;
        Ok(HttpResponse::Ok().json(certificate_json(&record)))
    })
    .await
}
