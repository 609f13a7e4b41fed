//! The OCSP responder (RFC 6960, RFC 5019 profile) on the public listener:
//! `POST /ocsp` (`application/ocsp-request`) and `GET /ocsp/{url-encoded base64}`.
//!
//! Each issuing CA answers through its delegated OCSP signer (its own key, a
//! certificate with OCSPSigning + ocsp-nocheck, included in every response). The
//! signer's certificate is renewed when `serve` starts if it is within a third of its
//! lifetime of expiring.
//!
//! Responses to requests without a nonce are pre-signed: served from memory and
//! re-signed once half their validity has passed. The memory is bounded
//! (`[ocsp] cache_mib`): a fleet of ten million certificates does not fit, so the
//! cache keeps the answers asked for most (quick_cache's CLOCK-Pro, weighed in bytes)
//! and an evicted one is signed again when next asked. A revocation through this
//! instance's admin API drops the cached answers of every certificate it revoked, then
//! signs them again (with the status the revocation returned) before the API call
//! returns; revocations made elsewhere (the CLI, another instance on the same
//! PostgreSQL) are picked up by a watcher that polls the store every
//! [`WATCH_INTERVAL`]. Requests with a nonce are always signed fresh and echo it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use revocation::ocsp::{self, CertId, CertStatus, ErrorStatus, HashAlgorithm, IssuerKeys};

use crate::hierarchy::ocsp_key_label;
use crate::issuance::{IssueError, Pki};
use crate::profile::Subject;
use crate::store::CertStatus as StoredStatus;
use crate::store::{CertificateReader, RevocationReader, RevokedCert};

/// How long a response is valid (nextUpdate − thisUpdate). Clients may cache it that
/// long, so it also bounds how stale a cached "good" can be anywhere.
const RESPONSE_VALIDITY: Duration = Duration::from_secs(3600);

/// How often the store is asked for revocations made outside this process.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// Revocations are looked for this far behind the newest one seen, for instances
/// whose clocks disagree a little.
const WATCH_OVERLAP_SECS: i64 = 10;

/// One issuing CA's responder.
struct Responder {
    ca: String,
    keys: IssuerKeys,
    signer: Arc<dyn hsm::Signer>,
    cert_der: Vec<u8>,
}

/// (responder index, serial, SHA-1 CertID?).
type CacheKey = (usize, Vec<u8>, bool);

/// A pre-signed response to a one-certificate request without a nonce.
#[derive(Debug)]
struct Presigned {
    /// Re-signed on the next request after this.
    fresh_until: Instant,
    produced: SystemTime,
    next_update: SystemTime,
    bytes: web::Bytes,
    etag: String,
    /// The certificates' status, as the metrics name it (`good`, `revoked`, `unknown`, `mixed`).
    status: &'static str,
}

/// What a request gets: the DER response, and the pre-signed entry it came from.
struct Answer {
    bytes: web::Bytes,
    presigned: Option<Arc<Presigned>>,
    /// Where a cacheable answer lives in the cache.
    key: Option<CacheKey>,
    /// For the metrics: the certificates' status or the error status, and whether the
    /// answer came from the cache, was signed for this request, or is an error (`none`).
    status: &'static str,
    source: &'static str,
}

impl Answer {
    fn error(status: ErrorStatus) -> Self {
        let name = match status {
            ErrorStatus::MalformedRequest => "malformed_request",
            ErrorStatus::InternalError => "internal_error",
            ErrorStatus::TryLater => "try_later",
            ErrorStatus::SigRequired => "sig_required",
            ErrorStatus::Unauthorized => "unauthorized",
        };
        let bytes = web::Bytes::from(ocsp::error_response(status));
        Self { bytes, presigned: None, key: None, status: name, source: "none" }
    }

    fn presigned(p: Arc<Presigned>, key: Option<CacheKey>, source: &'static str) -> Self {
        Self { bytes: p.bytes.clone(), status: p.status, presigned: Some(p), key, source }
    }

    /// Counts the answer in the metrics; returns it.
    fn counted(self) -> Self {
        crate::telemetry::ocsp_response(self.status, self.source);
        self
    }
}

/// Most request encodings remembered (a client sending endless variants only costs
/// a reset of this memo, never memory).
const MAX_REQUEST_MEMO: usize = 100_000;

/// What a cached answer costs in memory, beyond its bytes: the key, the entry, the
/// ETag and the cache's own bookkeeping, rounded up.
const ENTRY_OVERHEAD: u64 = 192;

/// Weighs cached answers by the memory they hold.
#[derive(Clone, Copy, Debug)]
struct Bytes;

impl quick_cache::Weighter<CacheKey, Arc<Presigned>> for Bytes {
    fn weight(&self, key: &CacheKey, value: &Arc<Presigned>) -> u64 {
        (value.bytes.len() + value.etag.len() + key.1.len()) as u64 + ENTRY_OVERHEAD
    }
}

type Cache = quick_cache::sync::Cache<CacheKey, Arc<Presigned>, Bytes>;

/// A cache holding at most `mib` MiB of answers.
fn bounded_cache(mib: u64) -> Cache {
    let bytes = mib.saturating_mul(1 << 20);
    // The item estimate sizes the cache's tables; a typical answer weighs ~1 KiB.
    let items = usize::try_from(bytes / 1024).unwrap_or(usize::MAX).max(16);
    Cache::with_weighter(items, bytes.max(1), Bytes)
}

/// All responders, and the pre-signed responses.
pub struct OcspService {
    responders: Vec<Responder>,
    cache: Cache,
    /// Cacheable requests by their exact bytes (GET path, POST body) → their cache key:
    /// a repeated request skips decoding and parsing.
    requests: RwLock<HashMap<Box<[u8]>, CacheKey>>,
    /// Bumped by every invalidation: a response signed while a revocation landed is
    /// not cached (it may predate the revocation).
    epoch: AtomicU64,
    http_max_age: Duration,
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
            let Some((profile_name, profile)) = pki.config.ocsp_profile_for(&ca.ca) else { continue };
            let (keys, store, label) = (pki.keys.clone(), ca.record.key_store.clone(), ocsp_key_label(&name));
            let signer = tokio::task::spawn_blocking(move || keys.find(&store, &label))
                .await
                .map_err(|e| IssueError::Signing(e.to_string()))??;
            let certificates: &dyn CertificateReader = pki.store.as_ref();
            let current = certificates.latest_valid_certificate(&name, profile_name).await?;
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
                    // By this key generation: a retired one answers for its own certificates.
                    let issued = pki
                        .issue_checked_by(&name, profile_name, profile, subject, signer.public_key_der(), "system:ocsp")
                        .await?;
                    tracing::info!(ca = %name, serial = %hex::encode(&issued.record.serial), "renewed the OCSP signer certificate");
                    issued.record.der
                }
            };
            let keys = IssuerKeys::from_ca_cert_der(&ca.record.cert_der)
                .map_err(|e| IssueError::Signing(format!("CA '{name}': {e}")))?;
            if let Ok((_, cert)) = x509_parser::parse_x509_certificate(&cert_der) {
                crate::telemetry::not_after(
                    crate::telemetry::Expiry::OcspSigner(&name),
                    cert.validity().not_after.timestamp(),
                );
            }
            responders.push(Responder { ca: name, keys, signer, cert_der });
        }
        Ok(Self {
            responders,
            cache: bounded_cache(pki.config.ocsp.cache_mib),
            requests: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            http_max_age: Duration::from_secs(pki.config.crl.regenerate_secs),
        })
    }

    /// The fresh pre-signed answer to a request seen before, by its exact bytes.
    fn remembered(&self, raw: &[u8]) -> Option<Arc<Presigned>> {
        let requests = self.requests.read().unwrap_or_else(|p| p.into_inner());
        let key = requests.get(raw)?;
        self.cache.get(key).filter(|p| Instant::now() < p.fresh_until)
    }

    fn remember(&self, raw: &[u8], key: CacheKey) {
        let mut requests = self.requests.write().unwrap_or_else(|p| p.into_inner());
        if requests.len() >= MAX_REQUEST_MEMO {
            requests.clear();
        }
        requests.insert(raw.into(), key);
    }

    /// Answers a request whose exact bytes are `raw` and whose DER `decode` yields.
    async fn answer_raw(&self, pki: &Pki, raw: &[u8], decode: impl FnOnce() -> Option<Vec<u8>>) -> Answer {
        if let Some(p) = self.remembered(raw) {
            return Answer::presigned(p, None, "cache");
        }
        let Some(der) = decode() else { return Answer::error(ErrorStatus::MalformedRequest) };
        let answer = self.answer(pki, &der).await;
        if let Some(key) = &answer.key {
            self.remember(raw, key.clone());
        }
        answer
    }

    /// Answers a DER request.
    async fn answer(&self, pki: &Pki, der: &[u8]) -> Answer {
        let request = match ocsp::parse_request(der) {
            Ok(r) => r,
            Err(e) => return Answer::error(e.status()),
        };
        // One response is signed by one responder: every CertID must name its CA.
        let Some(index) = self.responders.iter().position(|r| r.keys.matches(&request.cert_ids[0])) else {
            return Answer::error(ErrorStatus::Unauthorized);
        };
        if request.cert_ids.iter().any(|id| !self.responders[index].keys.matches(id)) {
            return Answer::error(ErrorStatus::Unauthorized);
        }
        if request.nonce.is_some() || request.cert_ids.len() != 1 {
            return match self.sign(pki, index, &request.cert_ids, request.nonce.as_deref()).await {
                Ok(p) => Answer { bytes: p.bytes, presigned: None, key: None, status: p.status, source: "signed" },
                Err(status) => Answer::error(status),
            };
        }
        let id = &request.cert_ids[0];
        let key = (index, id.serial().to_vec(), *id.hash_algorithm() == HashAlgorithm::Sha1);
        if let Some(p) = self.cache.get(&key) {
            if Instant::now() < p.fresh_until {
                return Answer::presigned(p, Some(key), "cache");
            }
        }
        match self.presign(pki, key.clone(), id).await {
            Ok(p) => Answer::presigned(p, Some(key), "signed"),
            Err(status) => Answer::error(status),
        }
    }

    /// Signs the nonce-less answer for one CertID and caches it, unless a revocation
    /// was processed meanwhile.
    async fn presign(&self, pki: &Pki, key: CacheKey, id: &CertId) -> Result<Arc<Presigned>, ErrorStatus> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let presigned = Arc::new(self.sign(pki, key.0, std::slice::from_ref(id), None).await?);
        self.cache_if_current(key, presigned.clone(), epoch);
        Ok(presigned)
    }

    /// Caches an answer signed at `epoch` unless a revocation has landed since.
    fn cache_if_current(&self, key: CacheKey, presigned: Arc<Presigned>, epoch: u64) {
        if self.epoch.load(Ordering::Acquire) == epoch {
            self.cache.insert(key.clone(), presigned);
            // A revocation that bumped the epoch between the check and the insert
            // must not find the answer it predates still cached.
            if self.epoch.load(Ordering::Acquire) != epoch {
                self.cache.remove(&key);
            }
        }
    }

    async fn sign(
        &self,
        pki: &Pki,
        index: usize,
        ids: &[CertId],
        nonce: Option<&[u8]>,
    ) -> Result<Presigned, ErrorStatus> {
        let responder = &self.responders[index];
        let mut answers = Vec::with_capacity(ids.len());
        for id in ids {
            answers.push((id.clone(), status_of(pki.store.as_ref(), &responder.ca, id).await?));
        }
        let (signer, cert, nonce) = (responder.signer.clone(), responder.cert_der.clone(), nonce.map(<[u8]>::to_vec));
        tokio::task::spawn_blocking(move || build(&answers, nonce.as_deref(), &cert, signer.as_ref()))
            .await
            .map_err(|_| ErrorStatus::InternalError)?
    }

    /// Revocations committed, each an (issuer, serial) with its status when the caller
    /// knows it (a revocation's own result) or `None` (read from the store): from now
    /// on no answer signed before them is served, and those that were cached are
    /// signed again now, so the next request finds them ready.
    ///
    /// Every cached answer is dropped before any is signed again: a batch may hold a
    /// fleet, and one at a time its last certificate was answered "good" from the cache
    /// until all the others had been re-signed (20 s for 100k). Those with a known
    /// status are signed [`RESIGN_CHUNK`] to a blocking task, with no store read each.
    async fn withdraw(&self, pki: &Pki, revoked: &[(&str, &[u8], Option<CertStatus>)]) {
        let started = Instant::now();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        for (issuer, serial, status) in revoked {
            let Some(index) = self.responders.iter().position(|r| r.ca == *issuer) else { continue };
            for sha1 in [true, false] {
                let key = (index, serial.to_vec(), sha1);
                if self.cache.remove(&key).is_none() {
                    continue;
                }
                match status {
                    Some(status) => known.push((key, *status)),
                    None => unknown.push(key),
                }
            }
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let dropped = known.len() + unknown.len();
        for key in unknown {
            let Some(id) = self.cert_id(&key) else { continue };
            if let Err(status) = self.presign(pki, key, &id).await {
                tracing::warn!(?status, "re-signing a revoked certificate's OCSP answer failed");
            }
        }
        known.sort_by_key(|(key, _)| key.0);
        for group in known.chunk_by(|a, b| a.0 .0 == b.0 .0) {
            let responder = &self.responders[group[0].0 .0];
            for chunk in group.chunks(RESIGN_CHUNK) {
                let answers: Vec<_> =
                    chunk.iter().filter_map(|(key, status)| Some((key.clone(), self.cert_id(key)?, *status))).collect();
                let (signer, cert) = (responder.signer.clone(), responder.cert_der.clone());
                let signed = tokio::task::spawn_blocking(move || {
                    let sign = |(key, id, status)| (key, build(&[(id, status)], None, &cert, signer.as_ref()));
                    answers.into_iter().map(sign).collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                for (key, presigned) in signed {
                    match presigned {
                        Ok(p) => self.cache_if_current(key, Arc::new(p), epoch),
                        Err(status) => tracing::warn!(?status, "re-signing a revoked certificate's OCSP answer failed"),
                    }
                }
            }
        }
        if dropped > 0 {
            let ms = started.elapsed().as_millis();
            tracing::info!(
                revoked = revoked.len(),
                answers = dropped,
                ms,
                "re-signed the cached OCSP answers of revoked certificates"
            );
        }
    }

    /// The CertID a cache key stands for.
    fn cert_id(&self, key: &CacheKey) -> Option<CertId> {
        let algorithm = if key.2 { HashAlgorithm::Sha1 } else { HashAlgorithm::Sha256 };
        self.responders[key.0].keys.cert_id(algorithm, &key.1).ok()
    }

    /// Certificates this instance revoked (their status is the revocation's result).
    pub async fn revoked(&self, pki: &Pki, certificates: &[RevokedCert]) {
        let revoked: Vec<_> = certificates
            .iter()
            .map(|c| {
                let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(c.revoked_at).unwrap_or(0));
                (c.issuer.as_str(), c.serial.as_slice(), Some(CertStatus::Revoked { at, reason: c.reason }))
            })
            .collect();
        self.withdraw(pki, &revoked).await;
    }

    /// Polls the store for revocations made outside this process (CLI, other
    /// instances) and applies them to the pre-signed answers. Runs until the process
    /// ends.
    pub fn spawn_revocation_watch(self: Arc<Self>, pki: Arc<Pki>) {
        // It only reads revocations; re-signing goes through `pki`.
        let revocations: Arc<dyn RevocationReader> = pki.store.clone();
        tokio::spawn(async move {
            let mut newest = crate::issuance::unix(SystemTime::now());
            let mut seen: HashSet<(String, Vec<u8>)> = HashSet::new();
            let mut tick = tokio::time::interval(WATCH_INTERVAL);
            loop {
                tick.tick().await;
                let revoked = match revocations.revoked_since(newest - WATCH_OVERLAP_SECS).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "OCSP revocation watch: store unavailable");
                        continue;
                    }
                };
                let mut current = HashSet::with_capacity(revoked.len());
                let mut fresh = Vec::new();
                for (issuer, serial, at) in revoked {
                    newest = newest.max(at);
                    let key = (issuer, serial);
                    if !seen.contains(&key) {
                        fresh.push(key.clone());
                    }
                    current.insert(key);
                }
                let fresh: Vec<_> = fresh.iter().map(|(i, s)| (i.as_str(), s.as_slice(), None)).collect();
                if !fresh.is_empty() {
                    self.withdraw(&pki, &fresh).await;
                }
                // Whatever fell out of the overlap window cannot come back.
                seen = current;
            }
        });
    }
}

/// Answers signed by one blocking task when a revocation re-signs cached answers.
const RESIGN_CHUNK: usize = 256;

/// Builds and signs one response (a blocking call: it signs).
fn build(
    answers: &[(CertId, CertStatus)],
    nonce: Option<&[u8]>,
    cert: &[u8],
    signer: &dyn hsm::Signer,
) -> Result<Presigned, ErrorStatus> {
    let name = |s: &CertStatus| match s {
        CertStatus::Good => "good",
        CertStatus::Revoked { .. } => "revoked",
        CertStatus::Unknown => "unknown",
    };
    let mut names = answers.iter().map(|(_, s)| name(s));
    let first = names.next().unwrap_or("unknown");
    let status = if names.all(|n| n == first) { first } else { "mixed" };
    // Whole seconds: producedAt/thisUpdate are GeneralizedTime without fractions.
    let now = UNIX_EPOCH + Duration::from_secs(crate::issuance::unix(SystemTime::now()).max(0) as u64);
    let next_update = now + RESPONSE_VALIDITY;
    let der = ocsp::build_response(answers, now, Some(next_update), nonce, cert, signer).map_err(|e| {
        tracing::error!(error = %e, "signing an OCSP response failed");
        ErrorStatus::InternalError
    })?;
    Ok(Presigned {
        fresh_until: Instant::now() + RESPONSE_VALIDITY / 2,
        produced: now,
        next_update,
        etag: format!("\"{}\"", crate::issuance::sha256_hex(&der)),
        bytes: web::Bytes::from(der),
        status,
    })
}

/// A serial's status under `ca`, from the store. Superseded certificates are still
/// good: they were replaced, not withdrawn.
async fn status_of(certificates: &dyn CertificateReader, ca: &str, id: &CertId) -> Result<CertStatus, ErrorStatus> {
    if matches!(id.hash_algorithm(), HashAlgorithm::Unsupported(_)) {
        return Ok(CertStatus::Unknown);
    }
    let record = certificates.get_certificate(ca, id.serial()).await.map_err(|e| {
        tracing::warn!(error = %e, "OCSP status lookup failed");
        ErrorStatus::TryLater
    })?;
    Ok(match record {
        None => CertStatus::Unknown,
        Some(r) => match r.status {
            StoredStatus::Valid | StoredStatus::Superseded => CertStatus::Good,
            StoredStatus::Revoked => CertStatus::Revoked {
                at: UNIX_EPOCH + Duration::from_secs(u64::try_from(r.revoked_at.unwrap_or(0)).unwrap_or(0)),
                reason: r.revocation_reason,
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
        Ok(Err(_)) | Err(_) => return ocsp_response(Answer::error(ErrorStatus::MalformedRequest).counted().bytes),
    };
    ocsp_response(ocsp.answer_raw(&pki, &body, || Some(body.to_vec())).await.counted().bytes)
}

/// `GET /ocsp/{url-encoded base64 DER}` (RFC 6960 Appendix A), with RFC 5019 caching
/// headers on successful answers. It is the `/ocsp` scope's default service, so every
/// method but `POST /ocsp` arrives here: `GET`/`HEAD` are answered, anything else is
/// 405 with `Allow: GET, POST` (RFC 9110 §15.5.6).
pub async fn get(pki: web::Data<Pki>, ocsp: web::Data<OcspService>, req: HttpRequest) -> HttpResponse {
    use base64::Engine as _;
    if !matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD) {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "GET, POST"))
            .content_type("text/plain")
            .body(format!("{} is not an OCSP method: use GET /ocsp/{{base64}} or POST /ocsp\n", req.method()));
    }
    // The raw (still percent-encoded) tail of the path: base64 may contain '/'.
    let raw = req.uri().path().strip_prefix("/ocsp/").unwrap_or("");
    let decode = || {
        let text = percent_decode(raw)?;
        base64::engine::general_purpose::STANDARD.decode(text.trim()).ok().filter(|d| d.len() <= ocsp::MAX_REQUEST_LEN)
    };
    let answer = ocsp.answer_raw(&pki, raw.as_bytes(), decode).await.counted();
    let Some(p) = answer.presigned else { return ocsp_response(answer.bytes) };
    // RFC 5019 §6: caches may keep it until nextUpdate; we ask them to come back
    // sooner so that a revocation reaches them within the CRL bound.
    let now = SystemTime::now();
    let until_next = p.next_update.duration_since(now).unwrap_or_default();
    let max_age = ocsp.http_max_age.min(until_next).as_secs();
    let http_date = |t: SystemTime| {
        let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        header::HttpDate::from(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
    };
    HttpResponse::Ok()
        .content_type("application/ocsp-response")
        .insert_header((header::CACHE_CONTROL, format!("max-age={max_age}, public, no-transform, must-revalidate")))
        .insert_header((header::LAST_MODIFIED, http_date(p.produced)))
        .insert_header((header::EXPIRES, http_date(now + Duration::from_secs(max_age))))
        .insert_header((header::ETAG, p.etag.clone()))
        .body(answer.bytes)
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
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(super::percent_decode("MEow%2FTTBL%3D%3D").as_deref(), Some("MEow/TTBL=="));
        assert_eq!(super::percent_decode("plain+/=").as_deref(), Some("plain+/="));
        assert!(super::percent_decode("bad%2").is_none());
        assert!(super::percent_decode("bad%zz").is_none());
    }

    /// An answer of `len` bytes, as `sign` makes them.
    fn answer(len: usize) -> Arc<Presigned> {
        Arc::new(Presigned {
            fresh_until: Instant::now() + Duration::from_secs(60),
            produced: SystemTime::now(),
            next_update: SystemTime::now(),
            bytes: web::Bytes::from(vec![0u8; len]),
            etag: format!("\"{}\"", "0".repeat(64)),
            status: "good",
        })
    }

    #[test]
    fn the_cache_stays_within_its_memory_and_keeps_what_is_asked_for() {
        let cache = bounded_cache(1);
        // A hot answer, asked for between every insertion.
        let hot: CacheKey = (0, vec![0xff; 16], true);
        cache.insert(hot.clone(), answer(900));
        for i in 0u32..20_000 {
            cache.insert((0, i.to_be_bytes().to_vec(), true), answer(900));
            assert!(cache.get(&hot).is_some(), "the hot answer was evicted after {i} insertions");
        }
        // 20k answers of ~1.1 KiB each would be 22 MiB: most are gone.
        assert!(cache.weight() <= 1 << 20, "{} bytes cached", cache.weight());
        assert!(cache.len() > 500 && cache.len() < 1000, "{} answers cached", cache.len());
        // What was evicted is simply absent, and can be cached again.
        let early = (0u32..10_000).filter(|i| cache.get(&(0, i.to_be_bytes().to_vec(), true)).is_some()).count();
        assert!(early < 1000, "{early} of the first 10k answers still cached");
        let gone = (0u32..10_000).map(|i| (0, i.to_be_bytes().to_vec(), true)).find(|k| cache.get(k).is_none());
        let gone = gone.expect("an evicted answer");
        cache.insert(gone.clone(), answer(900));
        assert!(cache.get(&gone).is_some());
    }
}
