//! The OCSP responder (RFC 6960, RFC 5019 profile) on the public listener:
//! `POST /ocsp` (`application/ocsp-request`) and `GET /ocsp/{url-encoded base64}`.
//!
//! Each issuing CA answers through its delegated OCSP signer (its own key, a
//! certificate with OCSPSigning + ocsp-nocheck, included in every response). The
//! signer's certificate is renewed when `serve` starts if it is within a third of its
//! lifetime of expiring. Responses to requests without a nonce are kept and served
//! again for at most `crl.regenerate_secs` — the same bound within which a revocation
//! made anywhere is published in the CRL. Requests with a nonce are always signed
//! fresh and echo it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use revocation::ocsp::{self, CertId, CertStatus, ErrorStatus, HashAlgorithm, IssuerKeys, ParsedRequest};
use revocation::Reason;

use crate::hierarchy::ocsp_key_label;
use crate::issuance::{IssueError, Pki};
use crate::profile::Subject;
use crate::store::CertStatus as StoredStatus;

/// How long a response is valid (nextUpdate − thisUpdate). Clients may cache it that
/// long, so it also bounds how stale a cached "good" can be anywhere.
const RESPONSE_VALIDITY: Duration = Duration::from_secs(3600);

/// One issuing CA's responder.
struct Responder {
    ca: String,
    keys: IssuerKeys,
    signer: Arc<dyn hsm::Signer>,
    cert_der: Vec<u8>,
}

/// (CA, serial, SHA-1 CertID?) → when built, producedAt, the signed response.
type ResponseCache = HashMap<(String, Vec<u8>, bool), (Instant, SystemTime, web::Bytes)>;

/// All responders, and the cache of signed responses to nonce-less requests.
pub struct OcspService {
    responders: Vec<Responder>,
    cache: Mutex<ResponseCache>,
    max_age: Duration,
}

impl std::fmt::Debug for OcspService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspService").field("cas", &self.responders.iter().map(|r| &r.ca).collect::<Vec<_>>()).finish()
    }
}

impl OcspService {
    /// Loads each issuing CA's OCSP signer (key and current certificate), renewing the
    /// certificate if it is missing or close to expiry.
    pub async fn load(pki: &Pki) -> Result<Self, IssueError> {
        let mut responders = Vec::new();
        for ca in pki.cas().filter(|c| c.issuer().is_some()) {
            let name = ca.record.name.clone();
            let Some((profile_name, profile)) = pki.config.ocsp_profile_for(&name) else { continue };
            let (keys, store, label) = (pki.keys.clone(), ca.record.key_store.clone(), ocsp_key_label(&name));
            let signer = tokio::task::spawn_blocking(move || keys.find(&store, &label))
                .await
                .map_err(|e| IssueError::Signing(e.to_string()))??;
            let current = pki.store.latest_valid_certificate(&name, profile_name).await?;
            let now = crate::issuance::unix(SystemTime::now());
            let lifetime = i64::from(profile.validity_days) * 86_400;
            let cert_der = match current {
                Some(c)
                    if c.public_key_sha256 == crate::issuance::sha256_hex(signer.public_key_der())
                        && c.not_after - now > lifetime / 3 =>
                {
                    c.der
                }
                _ => {
                    let subject = Subject::Named(format!("OCSP Signer for {name}"));
                    let issued = pki
                        .issue_checked(profile_name, profile, subject, signer.public_key_der(), "system:ocsp", None)
                        .await?;
                    tracing::info!(ca = %name, serial = %hex::encode(&issued.record.serial), "renewed the OCSP signer certificate");
                    issued.record.der
                }
            };
            let keys = IssuerKeys::from_ca_cert_der(&ca.record.cert_der)
                .map_err(|e| IssueError::Signing(format!("CA '{name}': {e}")))?;
            responders.push(Responder { ca: name, keys, signer, cert_der });
        }
        Ok(Self {
            responders,
            cache: Mutex::new(HashMap::new()),
            max_age: Duration::from_secs(pki.config.crl.regenerate_secs),
        })
    }

    /// Answers a DER request: a DER OCSPResponse, and when it was produced.
    async fn answer(&self, pki: &Pki, der: &[u8]) -> (web::Bytes, Option<SystemTime>) {
        let request = match ocsp::parse_request(der) {
            Ok(r) => r,
            Err(e) => return (web::Bytes::from(ocsp::error_response(e.status())), None),
        };
        // One response is signed by one responder: every CertID must name its CA.
        let Some(responder) = self.responders.iter().find(|r| r.keys.matches(&request.cert_ids[0])) else {
            return (web::Bytes::from(ocsp::error_response(ErrorStatus::Unauthorized)), None);
        };
        if request.cert_ids.iter().any(|id| !responder.keys.matches(id)) {
            return (web::Bytes::from(ocsp::error_response(ErrorStatus::Unauthorized)), None);
        }
        let cacheable = request.nonce.is_none() && request.cert_ids.len() == 1;
        let key = cacheable.then(|| {
            let id = &request.cert_ids[0];
            (responder.ca.clone(), id.serial().to_vec(), *id.hash_algorithm() == HashAlgorithm::Sha1)
        });
        if let Some(k) = &key {
            if let Some((built, produced, bytes)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(k) {
                if built.elapsed() < self.max_age {
                    return (bytes.clone(), Some(*produced));
                }
            }
        }
        match self.sign(pki, responder, &request).await {
            Ok((bytes, produced)) => {
                if let Some(k) = key {
                    self.cache
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(k, (Instant::now(), produced, bytes.clone()));
                }
                (bytes, Some(produced))
            }
            Err(status) => (web::Bytes::from(ocsp::error_response(status)), None),
        }
    }

    async fn sign(
        &self,
        pki: &Pki,
        responder: &Responder,
        request: &ParsedRequest,
    ) -> Result<(web::Bytes, SystemTime), ErrorStatus> {
        let mut answers = Vec::with_capacity(request.cert_ids.len());
        for id in &request.cert_ids {
            answers.push((id.clone(), status_of(pki, &responder.ca, id).await?));
        }
        // Whole seconds: producedAt/thisUpdate are GeneralizedTime without fractions.
        let now = UNIX_EPOCH + Duration::from_secs(crate::issuance::unix(SystemTime::now()).max(0) as u64);
        let (signer, cert, nonce) = (responder.signer.clone(), responder.cert_der.clone(), request.nonce.clone());
        let der = tokio::task::spawn_blocking(move || {
            ocsp::build_response(&answers, now, Some(now + RESPONSE_VALIDITY), nonce.as_deref(), &cert, signer.as_ref())
        })
        .await
        .map_err(|_| ErrorStatus::InternalError)?
        .map_err(|e| {
            tracing::error!(error = %e, "signing an OCSP response failed");
            ErrorStatus::InternalError
        })?;
        Ok((web::Bytes::from(der), now))
    }
}

/// A serial's status under `ca`, from the store. Superseded certificates are still
/// good: they were replaced, not withdrawn.
async fn status_of(pki: &Pki, ca: &str, id: &CertId) -> Result<CertStatus, ErrorStatus> {
    if matches!(id.hash_algorithm(), HashAlgorithm::Unsupported(_)) {
        return Ok(CertStatus::Unknown);
    }
    let record = pki.store.get_certificate(ca, id.serial()).await.map_err(|e| {
        tracing::warn!(error = %e, "OCSP status lookup failed");
        ErrorStatus::TryLater
    })?;
    Ok(match record {
        None => CertStatus::Unknown,
        Some(r) => match r.status {
            StoredStatus::Valid | StoredStatus::Superseded => CertStatus::Good,
            StoredStatus::Revoked => CertStatus::Revoked {
                at: UNIX_EPOCH + Duration::from_secs(u64::try_from(r.revoked_at.unwrap_or(0)).unwrap_or(0)),
                reason: r.revocation_reason.and_then(|c| u8::try_from(c).ok()).and_then(Reason::from_code),
            },
        },
    })
}

fn ocsp_response(bytes: web::Bytes) -> HttpResponse {
    HttpResponse::Ok().content_type("application/ocsp-response").body(bytes)
}

/// `POST /ocsp`.
pub async fn post(
    pki: web::Data<Pki>,
    ocsp: web::Data<OcspService>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/ocsp-request") {
        return HttpResponse::UnsupportedMediaType()
            .content_type("text/plain")
            .body("Content-Type must be application/ocsp-request\n");
    }
    let body = match payload.to_bytes_limited(ocsp::MAX_REQUEST_LEN).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) | Err(_) => {
            return ocsp_response(web::Bytes::from(ocsp::error_response(ErrorStatus::MalformedRequest)))
        }
    };
    ocsp_response(ocsp.answer(&pki, &body).await.0)
}

/// `GET /ocsp/{url-encoded base64 DER}` (RFC 6960 Appendix A), with RFC 5019 caching
/// headers on successful answers.
pub async fn get(pki: web::Data<Pki>, ocsp: web::Data<OcspService>, req: HttpRequest) -> HttpResponse {
    use base64::Engine as _;
    // The raw (still percent-encoded) tail of the path: base64 may contain '/'.
    let raw = req.uri().path().strip_prefix("/ocsp/").unwrap_or("");
    let decoded = percent_decode(raw);
    let der = match decoded.and_then(|s| base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()) {
        Some(d) if d.len() <= ocsp::MAX_REQUEST_LEN => d,
        _ => return ocsp_response(web::Bytes::from(ocsp::error_response(ErrorStatus::MalformedRequest))),
    };
    let (bytes, produced) = ocsp.answer(&pki, &der).await;
    let Some(produced) = produced else { return ocsp_response(bytes) };
    let max_age = ocsp.max_age.as_secs().min(RESPONSE_VALIDITY.as_secs());
    let etag = format!("\"{}\"", crate::issuance::sha256_hex(&bytes));
    let http_date = |t: SystemTime| {
        let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        header::HttpDate::from(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
    };
    HttpResponse::Ok()
        .content_type("application/ocsp-response")
        .insert_header((header::CACHE_CONTROL, format!("max-age={max_age}, public, no-transform, must-revalidate")))
        .insert_header((header::LAST_MODIFIED, http_date(produced)))
        .insert_header((header::EXPIRES, http_date(SystemTime::now() + Duration::from_secs(max_age))))
        .insert_header((header::ETAG, etag))
        .body(bytes)
}

/// Decodes %XX escapes (RFC 3986); `None` on a malformed escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding() {
        assert_eq!(super::percent_decode("MEow%2FTTBL%3D%3D").as_deref(), Some("MEow/TTBL=="));
        assert_eq!(super::percent_decode("plain+/=").as_deref(), Some("plain+/="));
        assert!(super::percent_decode("bad%2").is_none());
        assert!(super::percent_decode("bad%zz").is_none());
    }
}
