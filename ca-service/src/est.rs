//! EST (RFC 7030) on the HTTPS listener: `cacerts`, `csrattrs`, `simpleenroll` and
//! `serverkeygen` (provisioning stations), `simplereenroll` (devices renewing
//! themselves), unlabeled (the configured device profile) and per label.
//!
//! The handlers are thin: decode the request (path → profile, TLS client certificate
//! or station credential, base64 PKCS#10 body), call the registration authority
//! (`enrollment::ra`, wired up in `crate::ra`), and map its typed answer to a response.
//! Every decision — who the caller is, whether the registry lets them, approval, rate
//! limits, re-delivery of a lost answer — is the pipeline's. Every refusal is answered
//! with a 4xx and a short reason, and audited with the actor the pipeline established
//! (an unauthenticated caller's once per kind and window, with a count:
//! `crate::abuse`). A station credential from an address with too many failed attempts
//! is refused with 429 before it is checked.

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::Extensions;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use const_oid::ObjectIdentifier;
use enrollment::est as proto;
use enrollment::ra::{self, Admission, KeySource, RenewalRequest, StationCaller, StationRequest};
use x509_parser::prelude::FromDer;

use crate::abuse::{Gate, RefusalAudit, Refused};
use crate::audit::AuditEvent;
use crate::config::ProfileKind;
use crate::issuance::{sha256_hex, IssueError, Issued, Pki};
use crate::ra::Authority;
use crate::store::CertRecord;

const CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";

/// The client's TLS certificate, captured at the handshake. What every request on
/// the connection asks of it is worked out here, once per connection.
#[derive(Clone, Debug)]
pub struct PeerCertificate {
    pub der: Vec<u8>,
    /// SHA-256, lower-case hex: the key to our record of the certificate.
    pub fingerprint: String,
    pub common_name: Option<String>,
}

/// actix `on_connect` hook: keeps the peer's certificate for the handlers.
pub fn capture_peer_certificate(conn: &dyn Any, ext: &mut Extensions) {
    use actix_tls::accept::rustls_0_23::TlsStream;
    if let Some(tls) = conn.downcast_ref::<TlsStream<actix_web::rt::net::TcpStream>>() {
        if let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|certs| certs.first()) {
            ext.insert(PeerCertificate {
                fingerprint: sha256_hex(leaf),
                common_name: common_name(leaf),
                der: leaf.to_vec(),
            });
        }
    }
}

/// A refusal: status, reason (sent to the client and audited), optional Retry-After,
/// and its kind (a fixed word, the metrics label). Shared with the admin API.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) reason: String,
    pub(crate) retry_after: Option<u64>,
    pub(crate) kind: &'static str,
}

impl Refusal {
    /// A refusal whose kind is its status class (`bad_request`, `forbidden`, …).
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        let kind = match status.as_u16() {
            400 => "bad_request",
            401 => "unauthenticated",
            403 => "forbidden",
            404 => "not_found",
            409 => "conflict",
            413 => "too_large",
            415 => "wrong_content_type",
            429 => "rate_limited",
            _ if status.is_client_error() => "refused",
            _ => "internal",
        };
        Self { status, reason: reason.into(), retry_after: None, kind }
    }
    pub(crate) fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }
    pub(crate) fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, reason)
    }
    /// The answer to an address that has used up its failed authentication attempts
    /// (`crate::abuse::FailureLimiter`). The wait is in Retry-After, so the reason
    /// stays one kind for the refusal audit.
    pub(crate) fn too_many_failures(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            kind: "too_many_failures",
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too many failed authentication attempts from this address")
        }
    }
}

impl From<proto::EstError> for Refusal {
    fn from(e: proto::EstError) -> Self {
        ra::Refusal::from(e).into()
    }
}

impl From<enrollment::CsrError> for Refusal {
    fn from(e: enrollment::CsrError) -> Self {
        ra::Refusal::from(e).into()
    }
}

/// The registration authority's refusals, answered with the status it chose.
impl From<ra::Refusal> for Refusal {
    fn from(r: ra::Refusal) -> Self {
        let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self { status, reason: r.to_string(), retry_after: r.retry_after(), kind: r.kind() }
    }
}

/// Store errors as refusals, in one place for EST and the admin API (see
/// [`crate::ra::store_refusal`]).
impl From<crate::store::StoreError> for Refusal {
    fn from(e: crate::store::StoreError) -> Self {
        crate::ra::store_refusal(e).into()
    }
}

/// Issuance errors as refusals (see [`crate::ra::issue_refusal`]).
impl From<IssueError> for Refusal {
    fn from(e: IssueError) -> Self {
        crate::ra::issue_refusal(e).into()
    }
}

/// EST routes, unlabeled and labeled.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/.well-known/est")
            .route("/cacerts", web::get().to(cacerts))
            .route("/csrattrs", web::get().to(csrattrs))
            .route("/simpleenroll", web::post().to(simpleenroll))
            .route("/simplereenroll", web::post().to(simplereenroll))
            .route("/serverkeygen", web::post().to(serverkeygen))
            .route("/renewal-info/{cert_id}", web::get().to(renewal_info))
            .route("/{label}/renewal-info/{cert_id}", web::get().to(renewal_info))
            .route("/{label}/cacerts", web::get().to(cacerts))
            .route("/{label}/csrattrs", web::get().to(csrattrs))
            .route("/{label}/simpleenroll", web::post().to(simpleenroll))
            .route("/{label}/simplereenroll", web::post().to(simplereenroll))
            .route("/{label}/serverkeygen", web::post().to(serverkeygen)),
    );
}

/// The profile a request's path selects (a label names one; none is the default).
fn profile_for<'a>(pki: &'a Pki, req: &HttpRequest) -> Result<(&'a str, &'a crate::config::ProfileConfig), Refusal> {
    let est = &pki.config.est;
    let name = match req.match_info().get("label") {
        None => est.profile.as_str(),
        Some(label) => {
            // Checked first: the refusal (and its audit entry) never carries control bytes.
            crate::admin::check_identifier("EST label", label).map_err(Refusal::bad_request)?;
            est.labels.get(label).map(String::as_str).ok_or_else(|| ra::Refusal::UnknownLabel(label.to_string()))?
        }
    };
    let profile = pki.config.profiles.get(name).ok_or_else(|| ra::Refusal::UnknownEstProfile(name.to_string()))?;
    Ok((name, profile))
}

/// Answers an endpoint: a refusal becomes a 4xx response with the reason, audited
/// with `actor` (who the request turned out to be) and `claim` (a station credential's
/// station name, when it did not verify).
async fn respond(
    gate: &Gate,
    req: &HttpRequest,
    action: &'static str,
    actor: &str,
    claim: Option<&str>,
    result: Result<HttpResponse, Refusal>,
) -> HttpResponse {
    let endpoint = action.strip_prefix("est.").unwrap_or(action);
    match result {
        Ok(res) => {
            let outcome = if res.status() == StatusCode::ACCEPTED { "pending" } else { "ok" };
            crate::telemetry::est_request(endpoint, outcome);
            res
        }
        Err(r) => {
            crate::telemetry::est_request(endpoint, r.kind);
            audit_refusal_from(&gate.refusals, req, action, actor, "est", claim, &r).await;
            let mut res = HttpResponse::build(r.status);
            res.content_type("text/plain; charset=utf-8");
            if let Some(secs) = r.retry_after {
                res.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            res.body(format!("{}\n", r.reason))
        }
    }
}

/// Audits a refusal of an authenticated caller (`denied: <reason>`, with the HTTP
/// status) and logs it.
pub(crate) async fn audit_refusal(pki: &Pki, action: &str, actor: &str, target: &str, r: &Refusal) {
    let event = AuditEvent::success(actor, action, target)
        .with_outcome(format!("denied: {}", r.reason))
        .with_details(serde_json::json!({ "status": r.status.as_u16() }));
    if let Err(e) = pki.store.append_audit(&[event]).await {
        tracing::error!(error = %e, action, "could not audit a refusal");
    }
    tracing::info!(action, actor = %actor, status = r.status.as_u16(), reason = %r.reason, "request refused");
}

/// Audits a refusal of `req` (EST and the admin API) and logs it: an unauthenticated
/// caller's repeats of one kind within a window are counted and written as one entry
/// (see [`RefusalAudit`]); a caller that presented a TLS client certificate is not
/// counted so.
pub(crate) async fn audit_refusal_from(
    refusals: &RefusalAudit,
    req: &HttpRequest,
    action: &'static str,
    actor: &str,
    target: &str,
    claim: Option<&str>,
    r: &Refusal,
) {
    let status = r.status.as_u16();
    let client = req.peer_addr().map(|a| a.ip());
    let certified = peer_certificate(req).is_some();
    let refused = Refused { action, actor, target, client, certified, claim, status, reason: &r.reason };
    refusals.record(&refused).await;
    tracing::info!(action, actor = %actor, status, reason = %r.reason, "request refused");
}

/// A base64 body on one line (RFC 8951).
fn base64_response(content_type: &str, der: &[u8]) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Content-Transfer-Encoding", "base64"))
        .body(proto::base64_line(der))
}

/// The certs-only answer to an enrollment: only the issued certificate (§4.2.3).
fn enrolled(der: &[u8]) -> Result<HttpResponse, Refusal> {
    Ok(base64_response(CERTS_ONLY, &proto::certs_only(std::slice::from_ref(&der.to_vec()))?))
}

/// `GET cacerts`: the issuing CA of the selected profile and everything above it,
/// root included (RFC 7030 §4.1.3); during a rollover every live key generation of
/// each, and a rolled-over root's OldWithNew and NewWithOld.
async fn cacerts(pki: web::Data<Pki>, gate: web::Data<Gate>, req: HttpRequest) -> HttpResponse {
    let result = profile_for(&pki, &req).and_then(|(_, profile)| {
        let chain = pki.published_chain(&profile.issuer);
        Ok(base64_response("application/pkcs7-mime", &proto::certs_only(&chain)?))
    });
    respond(&gate, &req, "est.cacerts", "anonymous", None, result).await
}

/// `GET csrattrs`: what the profile accepts.
async fn csrattrs(pki: web::Data<Pki>, gate: web::Data<Gate>, req: HttpRequest) -> HttpResponse {
    let result = profile_for(&pki, &req).and_then(|(_, profile)| {
        const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
        let der = proto::csr_attrs(&profile.key_types, &[ECDSA_WITH_SHA256])?;
        Ok(base64_response("application/csrattrs", &der))
    });
    respond(&gate, &req, "est.csrattrs", "anonymous", None, result).await
}

/// The TLS client's leaf certificate, as presented in the handshake.
fn peer_certificate(req: &HttpRequest) -> Option<&PeerCertificate> {
    req.conn_data::<PeerCertificate>()
}

/// The client's leaf certificate, checked to be issued by CA `ca`, valid now, issued
/// by us, of profile kind `kind`, and currently `valid` in the store (the operator
/// certificates of the admin API; EST callers are authenticated by the pipeline).
pub(crate) async fn client_certificate(
    pki: &Pki,
    req: &HttpRequest,
    ca: &str,
    kind: ProfileKind,
) -> Result<CertRecord, ra::Refusal> {
    let peer = peer_certificate(req).ok_or(ra::Refusal::CertificateRequired)?;
    let record = pki.store.certificate_by_fingerprint(&peer.fingerprint).await.map_err(crate::ra::store_refusal)?;
    let known = record.clone().map(|r| crate::ra::known(&pki.config, r));
    ra::check_certificate(known, ca, kind, ra::unix_now())?;
    record.ok_or_else(|| ra::Refusal::ForeignCertificate(ca.to_string()))
}

/// Who a station request says it is: its TLS client certificate, or else its
/// `Authorization` credential (the pipeline decides whether the profile accepts it).
fn station_caller(req: &HttpRequest) -> StationCaller {
    if let Some(peer) = peer_certificate(req) {
        return StationCaller::Certificate {
            fingerprint: peer.fingerprint.clone(),
            common_name: peer.common_name.clone(),
        };
    }
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match crate::credentials::parse_authorization(header) {
        Ok(Some(c)) => StationCaller::Credential { station: c.station, secret: c.secret },
        Ok(None) => StationCaller::Anonymous,
        Err(why) => StationCaller::MalformedCredential(why),
    }
}

/// Reads the request body (at most the EST limit: a larger body is refused after
/// reading just past it), decodes the base64 PKCS#10 and checks the CSR's signature
/// and crypto.
async fn read_csr(req: &HttpRequest, payload: web::Payload) -> Result<enrollment::CheckedCsr, ra::Refusal> {
    let body = match payload.to_bytes_limited(proto::MAX_BODY_BYTES).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return Err(ra::Refusal::UnreadableBody),
        Err(_) => return Err(proto::EstError::TooLarge.into()),
    };
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    proto::check_content_type(content_type, "application/pkcs10")?;
    let der = proto::decode_base64_body(&body)?;
    Ok(enrollment::check_csr(&der)?)
}

/// How long a station is told to wait before asking again about a request that
/// awaits approval.
const APPROVAL_RETRY_AFTER_SECS: u64 = 60;

/// Who answered a station request, and the station a credential claimed (for the
/// audit of a refusal).
struct Outcome {
    actor: String,
    claim: Option<String>,
    result: Result<HttpResponse, Refusal>,
}

/// simpleenroll and serverkeygen: decode, ask the pipeline, issue what it planned.
async fn station_enrollment(
    pki: &Pki,
    ra: &Authority,
    gate: &Gate,
    req: &HttpRequest,
    payload: web::Payload,
    key: KeySource,
) -> Outcome {
    let profile = match profile_for(pki, req) {
        Ok((name, _)) => name.to_string(),
        Err(r) => return Outcome { actor: "unauthenticated".into(), claim: None, result: Err(r) },
    };
    // The cheap part of authentication first: an unauthenticated caller costs no body
    // read and no CSR check. Without a certificate, an address out of failed attempts
    // costs not even the credential check.
    let caller = station_caller(req);
    let claim = match &caller {
        StationCaller::Credential { station, .. } => Some(station.clone()),
        _ => None,
    };
    let limited = !matches!(caller, StationCaller::Certificate { .. });
    let client = req.peer_addr().map(|a| a.ip());
    if limited {
        if let Err(secs) = gate.failures.check(client, Instant::now()) {
            let result = Err(Refusal::too_many_failures(secs));
            return Outcome { actor: "unauthenticated".into(), claim, result };
        }
    }
    let claimed = ra.claim(profile, caller).await;
    let claimed_station = match claimed.result {
        Ok(claim) => claim,
        Err(r) => {
            let r = Refusal::from(r);
            if limited && r.status == StatusCode::UNAUTHORIZED {
                gate.failures.failed(client, Instant::now());
            }
            return Outcome { actor: claimed.actor, claim, result: Err(r) };
        }
    };
    let claim = claimed_station;
    let csr = read_csr(req, payload).await;
    let answer = ra.enroll(StationRequest { claim, csr, key }, claimed.actor).await;
    let result = match answer.result {
        Ok(Admission::Issue(plan)) => match ra.issue(plan).await {
            Ok(issued) => {
                // Stored and audited, not yet answered: a crash here loses the answer.
                crate::fault::point("est-after-store");
                certificate_response(&issued)
            }
            Err(r) => Err(r.into()),
        },
        Ok(Admission::Redeliver(earlier)) => enrolled(&earlier.der),
        Ok(Admission::Pending { request_id }) => Ok(HttpResponse::Accepted()
            .insert_header((header::RETRY_AFTER, APPROVAL_RETRY_AFTER_SECS.to_string()))
            .content_type("text/plain; charset=utf-8")
            .body(format!("request {request_id} awaits an operator's approval\n"))),
        Err(r) => Err(r.into()),
    };
    Outcome { actor: answer.actor, claim: None, result }
}

/// The answer to an issued enrollment: the certificate (certs-only), with the key
/// generated for it first when there is one (serverkeygen, RFC 7030 §4.4.2).
fn certificate_response(issued: &Issued) -> Result<HttpResponse, Refusal> {
    let certs = proto::certs_only(std::slice::from_ref(&issued.record.der))?;
    match &issued.private_key {
        None => Ok(base64_response(CERTS_ONLY, &certs)),
        Some(key) => {
            let (content_type, body) = proto::serverkeygen_response(&key.0, &certs)?;
            Ok(HttpResponse::Ok().content_type(content_type).body(body))
        }
    }
}

/// `POST simpleenroll`: a provisioning station enrolls a registered device.
async fn simpleenroll(
    pki: web::Data<Pki>,
    ra: web::Data<Authority>,
    gate: web::Data<Gate>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let out = station_enrollment(&pki, &ra, &gate, &req, payload, KeySource::Request).await;
    respond(&gate, &req, "est.simpleenroll", &out.actor, out.claim.as_deref(), out.result).await
}

/// `POST serverkeygen` (RFC 7030 §4.4): for devices that cannot make keys. The station
/// sends the device's CSR (for its identity); the key pair is generated here, returned
/// once with the certificate, and never stored or logged.
async fn serverkeygen(
    pki: web::Data<Pki>,
    ra: web::Data<Authority>,
    gate: web::Data<Gate>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let out = station_enrollment(&pki, &ra, &gate, &req, payload, KeySource::Server).await;
    respond(&gate, &req, "est.serverkeygen", &out.actor, out.claim.as_deref(), out.result).await
}

/// What a device's request names before the pipeline sees it: the profile of its path,
/// and the SHA-256 of the client certificate it must have presented.
fn device_request(pki: &Pki, req: &HttpRequest) -> Result<(String, String), Refusal> {
    let (profile, _) = profile_for(pki, req)?;
    let fingerprint = ra::require_certificate(peer_certificate(req).map(|p| p.fingerprint.clone()))?;
    Ok((profile.to_string(), fingerprint))
}

/// `POST simplereenroll`: a device renews its own identity with its current certificate.
async fn simplereenroll(
    pki: web::Data<Pki>,
    ra: web::Data<Authority>,
    gate: web::Data<Gate>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    const ACTION: &str = "est.simplereenroll";
    let (profile, client_fingerprint) = match device_request(&pki, &req) {
        Ok(found) => found,
        Err(r) => return respond(&gate, &req, ACTION, "unauthenticated", None, Err(r)).await,
    };
    let csr = read_csr(&req, payload).await;
    let answer = ra.renew(RenewalRequest { profile, client_fingerprint, csr }).await;
    let result = match answer.result {
        Ok(plan) => match ra.issue(plan).await {
            Ok(issued) => certificate_response(&issued),
            Err(r) => Err(r.into()),
        },
        Err(r) => Err(r.into()),
    };
    respond(&gate, &req, ACTION, &answer.actor, None, result).await
}

/// `GET renewal-info/{certID}` (draft-ietf-lamps-est-renewal-info): when the device
/// should renew the certificate it presents. The certificate ID is ACME ARI's
/// (RFC 9773 §4.1): base64url of the AKI keyIdentifier, `.`, base64url of the serial's
/// DER content octets, unpadded. The draft leaves authentication open; here the device
/// authenticates with that certificate over mutual TLS, and may ask about it only.
/// Answered with the window as JSON and `Retry-After` (when to ask again); not audited
/// when it succeeds (every device asks about once a day), refusals are.
async fn renewal_info(
    pki: web::Data<Pki>,
    ra: web::Data<Authority>,
    gate: web::Data<Gate>,
    req: HttpRequest,
) -> HttpResponse {
    const ACTION: &str = "est.renewal-info";
    let (profile, client_fingerprint) = match device_request(&pki, &req) {
        Ok(found) => found,
        Err(r) => return respond(&gate, &req, ACTION, "unauthenticated", None, Err(r)).await,
    };
    let asked = enrollment::certid::parse_cert_id(req.match_info().get("cert_id").unwrap_or_default());
    let answer = ra.renewal_info(profile, client_fingerprint).await;
    let result = match (answer.result, asked) {
        (Err(r), _) => Err(r.into()),
        (Ok(_), Err(e)) => Err(Refusal::bad_request(e.to_string())),
        (Ok(info), Ok(asked)) => {
            if enrollment::certid::cert_id_of(&info.certificate.der).as_ref() != Some(&asked) {
                Err(Refusal::forbidden("the certificate ID does not name the client certificate presented"))
            } else {
                let at = crate::issuance::rfc3339;
                let body = serde_json::json!({
                    "suggestedWindow": { "start": at(info.window.start), "end": at(info.window.end) }
                });
                Ok(HttpResponse::Ok()
                    .insert_header((header::RETRY_AFTER, info.recheck_secs.to_string()))
                    .insert_header((header::CACHE_CONTROL, "private, no-store"))
                    .json(body))
            }
        }
    };
    respond(&gate, &req, ACTION, &answer.actor, None, result).await
}

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// The registration authority shared by all workers, checking station credentials
/// with `key`. Must run inside the tokio runtime that serves the store.
pub fn state(pki: Arc<Pki>, key: Arc<crate::credentials::CredentialKey>) -> web::Data<Authority> {
    web::Data::new(crate::ra::authority(pki, key))
}
