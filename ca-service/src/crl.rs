//! CRL publishing: `GET /crl/{ca}.crl` on the public listener, built by the
//! `revocation` encoder from the store's revoked, unexpired certificates and signed
//! with the CA's key. A served CRL is kept for at most `crl.regenerate_secs`, so a
//! revocation made anywhere (CLI, admin API, another instance) is published within
//! that bound; the cRLNumber comes from the database, monotonic across restarts and
//! instances.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use revocation::crl::{build_crl, CrlKind, CrlParams, RevokedEntry};
use revocation::Reason;
use x509_parser::prelude::FromDer;

use crate::issuance::Pki;

/// Served CRLs by CA name, with when they were built.
#[derive(Debug, Default)]
pub struct CrlCache {
    served: Mutex<HashMap<String, (Instant, web::Bytes)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CrlServeError {
    #[error("no such CA")]
    UnknownCa,
    #[error("this CA's key is offline; its CRL is signed and published out of band")]
    Offline,
    #[error("{0}")]
    Internal(String),
}

/// The CRL of `ca`, from the cache if fresh enough, else newly built and signed.
pub async fn current_crl(pki: &Pki, cache: &CrlCache, ca: &str) -> Result<web::Bytes, CrlServeError> {
    let max_age = Duration::from_secs(pki.config.crl.regenerate_secs);
    if let Some((built, der)) = cache.served.lock().unwrap_or_else(|p| p.into_inner()).get(ca) {
        if built.elapsed() < max_age {
            return Ok(der.clone());
        }
    }
    let der = web::Bytes::from(build(pki, ca).await?);
    cache.served.lock().unwrap_or_else(|p| p.into_inner()).insert(ca.to_string(), (Instant::now(), der.clone()));
    Ok(der)
}

async fn build(pki: &Pki, ca_name: &str) -> Result<Vec<u8>, CrlServeError> {
    let ca = pki.ca(ca_name).ok_or(CrlServeError::UnknownCa)?;
    let signer = ca.issuer().map(|i| i.key().signer().clone()).ok_or(CrlServeError::Offline)?;
    sign_crl(pki, ca_name, signer, Duration::from_secs(pki.config.crl.validity_secs)).await
}

/// Builds and signs the full CRL of `ca_name` with `signer` (its key), valid for
/// `validity`, taking the next CRL number. The service uses it for online CAs;
/// `ca-service crl` for roots, whose keys are loaded only for the ceremony.
pub async fn sign_crl(
    pki: &Pki,
    ca_name: &str,
    signer: std::sync::Arc<dyn hsm::Signer>,
    validity: Duration,
) -> Result<Vec<u8>, CrlServeError> {
    let internal = |e: String| CrlServeError::Internal(e);
    let ca = pki.ca(ca_name).ok_or(CrlServeError::UnknownCa)?.clone();
    let now = SystemTime::now();
    let now_secs = crate::issuance::unix(now);
    let revoked = pki.store.revoked_for_crl(ca_name, now_secs).await.map_err(|e| internal(e.to_string()))?;
    let number = pki.store.next_crl_number(ca_name).await.map_err(|e| internal(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&ca.record.cert_der)
            .map_err(|e| internal(format!("CA certificate: {e}")))?;
        let ski = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .ok_or_else(|| internal("the CA certificate has no subjectKeyIdentifier".into()))?;
        let entries: Vec<RevokedEntry> = revoked
            .into_iter()
            .map(|(serial, at, reason)| RevokedEntry {
                serial,
                revoked_at: UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0)),
                reason: reason.and_then(|r| u8::try_from(r).ok()).and_then(Reason::from_code),
            })
            .collect();
        let params = CrlParams {
            issuer_name_der: cert.subject().as_raw(),
            issuer_key_id: &ski,
            crl_number: number,
            this_update: now,
            next_update: now + validity,
            kind: CrlKind::Full,
            entries: &entries,
            freshest_crl_url: None,
            distribution_point: None,
        };
        build_crl(&params, signer.as_ref()).map_err(|e| internal(e.to_string()))
    })
    .await
    .map_err(|e| internal(e.to_string()))?
}

/// `GET /crl/{ca}.crl`: DER, `application/pkix-crl`.
pub async fn serve_crl(pki: web::Data<Pki>, cache: web::Data<CrlCache>, file: web::Path<String>) -> HttpResponse {
    let Some(name) = file.strip_suffix(".crl") else {
        return HttpResponse::NotFound().content_type("text/plain").body("use /crl/{ca}.crl\n");
    };
    match current_crl(&pki, &cache, name).await {
        Ok(der) => HttpResponse::Ok()
            .content_type("application/pkix-crl")
            .insert_header((header::CACHE_CONTROL, format!("public, max-age={}", pki.config.crl.regenerate_secs)))
            .body(der),
        Err(e @ (CrlServeError::UnknownCa | CrlServeError::Offline)) => {
            HttpResponse::NotFound().content_type("text/plain").body(format!("{e}\n"))
        }
        Err(CrlServeError::Internal(e)) => {
            tracing::error!(ca = name, error = %e, "building the CRL failed");
            HttpResponse::ServiceUnavailable().content_type("text/plain").body("the CRL is unavailable; retry later\n")
        }
    }
}

/// RFC 5280 CRLReason names and codes. removeFromCRL (8) is a delta-CRL instruction,
/// not a reason to revoke.
const REASONS: [(&str, i32); 9] = [
    ("unspecified", 0),
    ("keyCompromise", 1),
    ("cACompromise", 2),
    ("affiliationChanged", 3),
    ("superseded", 4),
    ("cessationOfOperation", 5),
    ("certificateHold", 6),
    ("privilegeWithdrawn", 9),
    ("aACompromise", 10),
];

/// A certificate serial as operators type it (hex, colons allowed) → content octets.
pub fn parse_serial(serial: &str) -> Result<Vec<u8>, String> {
    hex::decode(serial.replace(':', "").to_ascii_lowercase())
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 20)
        .ok_or_else(|| format!("serial '{serial}' is not hex of 1 to 20 octets"))
}

/// An RFC 5280 CRLReason name → its code (case-insensitive); `Err` names the choices.
pub fn reason_code(name: &str) -> Result<i32, String> {
    REASONS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, c)| *c).ok_or_else(|| {
        format!(
            "unknown revocation reason '{name}' (one of: {})",
            REASONS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        )
    })
}

/// A CRLReason code → its RFC 5280 name.
pub fn reason_name(code: i32) -> Option<&'static str> {
    REASONS.iter().find(|(_, c)| *c == code).map(|(n, _)| *n)
}
