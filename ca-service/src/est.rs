//! EST (RFC 7030) on the HTTPS listener: `cacerts`, `simpleenroll` (provisioning
//! stations), `simplereenroll` (devices renewing themselves), `csrattrs` and
//! `serverkeygen`, unlabeled (the configured device profile) and per label.
//!
//! Authentication is by the TLS client certificate. The handshake only proves the
//! client holds its key (see `tls`); each endpoint then demands its own issuer
//! (Station CA or Device Issuing CA), validity now, the profile kind, and the
//! certificate's *current* status in our store, because revocation must bite at
//! request time, not at the next config reload.
//! Every refusal is answered with a 4xx and a short reason, and audited.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::dev::Extensions;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use const_oid::ObjectIdentifier;
use enrollment::est as proto;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use crate::audit::AuditEvent;
use crate::batch::Batcher;
use crate::config::{Approval, ProfileConfig, ProfileKind};
use crate::issuance::{check_policy, sha256_hex, IssueError, Issued, Pki};
use crate::profile::{self, Subject};
use crate::store::{
    CertRecord, CertStatus, DeviceRecord, DeviceState, EnrollmentContext, EnrollmentLookup, EnrollmentRequest,
    IssuanceEffect, RequestStatus, StationRecord, Store, StoreError,
};

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

/// Per-process EST state: the station rate-limit windows, and the batched reads of
/// what each request needs to know.
#[derive(Debug)]
pub struct EstState {
    windows: Mutex<HashMap<String, (u64, u32)>>,
    lookups: Batcher<EnrollmentLookup, Result<EnrollmentContext, StoreError>>,
}

/// Lookups read together at most; a batch of 64 is one short indexed statement.
const LOOKUP_BATCH: usize = 64;
/// Lookup statements in flight at once (reads take no lock, so a second batch need
/// not wait for the first).
const LOOKUPS_IN_FLIGHT: usize = 1;

impl EstState {
    /// Must run inside the tokio runtime that serves the store.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let lookups = Batcher::spawn(LOOKUP_BATCH, LOOKUPS_IN_FLIGHT, move |batch: Vec<EnrollmentLookup>| {
            let store = store.clone();
            async move { crate::store::answer_each(batch.len(), store.enrollment_contexts(&batch).await) }
        });
        Self { windows: Mutex::default(), lookups }
    }

    async fn context(&self, lookup: EnrollmentLookup) -> Result<EnrollmentContext, Refusal> {
        match self.lookups.call(lookup).await {
            Ok(found) => found.map_err(Refusal::from),
            Err(stopped) => Err(StoreError::Unavailable(stopped.to_string()).into()),
        }
    }
}

/// A refusal: status, reason (sent to the client and audited), optional Retry-After.
/// Shared with the admin API.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) reason: String,
    pub(crate) retry_after: Option<u64>,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self { status, reason: reason.into(), retry_after: None }
    }
    pub(crate) fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }
    pub(crate) fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, reason)
    }
}

impl From<proto::EstError> for Refusal {
    fn from(e: proto::EstError) -> Self {
        let status = match e {
            proto::EstError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            proto::EstError::WrongContentType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            proto::EstError::Encoding(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }
}

impl From<enrollment::CsrError> for Refusal {
    fn from(e: enrollment::CsrError) -> Self {
        let status =
            if e == enrollment::CsrError::TooLarge { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
        Self::new(status, e.to_string())
    }
}

/// Store errors as refusals, in one place for EST and the admin API: absent → 404,
/// state → 409, unreachable → 503, the rest → 500 without details.
impl From<crate::store::StoreError> for Refusal {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::NotFound(what) => Self::new(StatusCode::NOT_FOUND, format!("{what} not found")),
            StoreError::Conflict(why) => Self::new(StatusCode::CONFLICT, why),
            StoreError::AlreadyExists(what) => Self::new(StatusCode::CONFLICT, format!("{what} already exists")),
            StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "storage unavailable");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable; try again later")
            }
            other => {
                tracing::error!(error = %other, "storage error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

impl From<IssueError> for Refusal {
    fn from(e: IssueError) -> Self {
        let status = match &e {
            IssueError::Csr(_) | IssueError::Policy(_) | IssueError::Profile(_) | IssueError::UnknownProfile(_) => {
                StatusCode::BAD_REQUEST
            }
            IssueError::Refused(_) => StatusCode::CONFLICT,
            IssueError::Store(crate::store::StoreError::Unavailable(_)) | IssueError::CaUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "EST issuance failed");
            return Self::new(status, "the certificate could not be issued; try again later");
        }
        Self::new(status, e.to_string())
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
            .route("/{label}/cacerts", web::get().to(cacerts))
            .route("/{label}/csrattrs", web::get().to(csrattrs))
            .route("/{label}/simpleenroll", web::post().to(simpleenroll))
            .route("/{label}/simplereenroll", web::post().to(simplereenroll))
            .route("/{label}/serverkeygen", web::post().to(serverkeygen)),
    );
}

/// The profile a request's path selects.
fn profile_for<'a>(pki: &'a Pki, req: &HttpRequest) -> Result<(&'a str, &'a ProfileConfig), Refusal> {
    let est = &pki.config.est;
    let name = match req.match_info().get("label") {
        None => est.profile.as_str(),
        Some(label) => est
            .labels
            .get(label)
            .map(String::as_str)
            .ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, format!("unknown EST label '{label}'")))?,
    };
    let profile = pki
        .config
        .profiles
        .get(name)
        .ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, format!("EST profile '{name}' is not configured")))?;
    Ok((name, profile))
}

/// Runs an endpoint: refusals become 4xx responses with the reason, and are audited.
/// `actor` is who the request turned out to be (set once authenticated).
async fn respond(
    pki: &Pki,
    action: &str,
    actor: &RefCell<String>,
    result: impl std::future::Future<Output = Result<HttpResponse, Refusal>>,
) -> HttpResponse {
    match result.await {
        Ok(res) => res,
        Err(r) => {
            let actor = actor.borrow().clone();
            audit_refusal(pki, action, &actor, "est", &r).await;
            let mut res = HttpResponse::build(r.status);
            res.content_type("text/plain; charset=utf-8");
            if let Some(secs) = r.retry_after {
                res.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            res.body(format!("{}\n", r.reason))
        }
    }
}

/// Audits a refusal (`denied: <reason>`, with the HTTP status) and logs it. Used by
/// every authenticated endpoint (EST and the admin API).
pub(crate) async fn audit_refusal(pki: &Pki, action: &str, actor: &str, target: &str, r: &Refusal) {
    let event = AuditEvent::success(actor, action, target)
        .with_outcome(format!("denied: {}", r.reason))
        .with_details(serde_json::json!({ "status": r.status.as_u16() }));
    if let Err(e) = pki.store.append_audit(&[event]).await {
        tracing::error!(error = %e, action, "could not audit a refusal");
    }
    tracing::info!(action, actor = %actor, status = r.status.as_u16(), reason = %r.reason, "request refused");
}

fn base64_response(content_type: &str, der: &[u8]) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Content-Transfer-Encoding", "base64"))
        .body(proto::base64_lines(der))
}

/// `GET cacerts`: the issuing CA of the selected profile and everything above it,
/// root included (RFC 7030 §4.1.3).
async fn cacerts(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let actor = RefCell::new("anonymous".to_string());
    respond(&pki, "est.cacerts", &actor, async {
        let (_, profile) = profile_for(&pki, &req)?;
        let mut chain = Vec::new();
        let mut next = pki.ca(&profile.issuer);
        while let Some(ca) = next {
            chain.push(ca.record.cert_der.clone());
            next = ca.record.parent.as_ref().and_then(|p| pki.ca(p));
        }
        Ok(base64_response("application/pkcs7-mime", &proto::certs_only(&chain)?))
    })
    .await
}

/// `GET csrattrs`: what the profile accepts.
async fn csrattrs(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let actor = RefCell::new("anonymous".to_string());
    respond(&pki, "est.csrattrs", &actor, async {
        let (_, profile) = profile_for(&pki, &req)?;
        const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
        let der = proto::csr_attrs(&profile.key_types, &[ECDSA_WITH_SHA256])?;
        Ok(base64_response("application/csrattrs", &der))
    })
    .await
}

/// The TLS client's leaf certificate, as presented in the handshake.
fn peer_certificate(req: &HttpRequest) -> Option<&PeerCertificate> {
    req.conn_data::<PeerCertificate>()
}

fn certificate_required() -> Refusal {
    Refusal::new(StatusCode::UNAUTHORIZED, "a TLS client certificate is required for this endpoint")
}

/// The client's leaf certificate, checked to be issued by CA `ca`, valid now, issued
/// by us, and currently `valid` in the store.
pub(crate) async fn client_certificate(
    pki: &Pki,
    req: &HttpRequest,
    ca: &str,
    kind: ProfileKind,
) -> Result<CertRecord, Refusal> {
    let peer = peer_certificate(req).ok_or_else(certificate_required)?;
    let record = pki.store.certificate_by_fingerprint(&peer.fingerprint).await.map_err(Refusal::from)?;
    check_client_certificate(pki, record, ca, kind)
}

/// Checks the stored record found under the client certificate's SHA-256. The
/// handshake proved the client holds that certificate's key, and a certificate whose
/// SHA-256 matches one we issued *is* that certificate, byte for byte, so it is
/// signed by us: no need to verify its signature again on every request.
fn check_client_certificate(
    pki: &Pki,
    record: Option<CertRecord>,
    ca: &str,
    kind: ProfileKind,
) -> Result<CertRecord, Refusal> {
    let record = record
        .filter(|r| r.issuer == ca)
        .ok_or_else(|| Refusal::forbidden(format!("the client certificate was not issued by the {ca} CA")))?;
    let now = crate::issuance::unix(SystemTime::now());
    if now < record.not_before || now > record.not_after {
        return Err(Refusal::forbidden("the client certificate has expired or is not yet valid"));
    }
    // Defence in depth: the same CA also issues e.g. OCSP-signer and server
    // certificates, which are never client identities.
    if pki.config.profiles.get(&record.profile).map(|p| p.kind) != Some(kind) {
        return Err(Refusal::forbidden(format!("the client certificate is not a {ca} identity")));
    }
    match record.status {
        CertStatus::Valid => Ok(record),
        CertStatus::Revoked => Err(Refusal::forbidden("the client certificate is revoked")),
        CertStatus::Superseded => {
            Err(Refusal::forbidden("the client certificate has been replaced by a renewal; use the current one"))
        }
    }
}

/// A provisioning station: a certificate from the Station CA — or, where the profile
/// allows it and no certificate was presented, the station's HTTP credential — and
/// the station registered and enabled. `ctx` holds what the store knows of the
/// certificate and of the station `claim` names.
fn authenticate_station(
    pki: &Pki,
    claim: &StationClaim,
    ctx: &mut EnrollmentContext,
    actor: &RefCell<String>,
) -> Result<StationRecord, Refusal> {
    let name = match claim {
        StationClaim::Certificate { fingerprint, name } => {
            check_client_certificate(pki, ctx.client.take(), "station", ProfileKind::Station)?;
            let name = name.clone().ok_or_else(|| Refusal::forbidden("the station certificate has no CN"))?;
            *actor.borrow_mut() = format!("station:{name}:{}", short(fingerprint));
            name
        }
        // The credential was verified before the lookup (`station_by_credential`).
        StationClaim::Credential(name) => name.clone(),
    };
    let station =
        ctx.station.take().ok_or_else(|| Refusal::forbidden(format!("station '{name}' is not registered")))?;
    if !station.enabled {
        return Err(Refusal::forbidden(format!("station '{name}' is disabled")));
    }
    Ok(station)
}

/// Who a station request says it is, before the store confirms it.
enum StationClaim {
    /// A TLS client certificate: its SHA-256 and its CN (the station name), if any.
    Certificate { fingerprint: String, name: Option<String> },
    /// A station whose HTTP credential was verified.
    Credential(String),
}

impl StationClaim {
    async fn of(
        pki: &Pki,
        req: &HttpRequest,
        profile: &ProfileConfig,
        actor: &RefCell<String>,
    ) -> Result<Self, Refusal> {
        match peer_certificate(req) {
            Some(peer) => {
                Ok(Self::Certificate { fingerprint: peer.fingerprint.clone(), name: peer.common_name.clone() })
            }
            None if profile.station_credentials => {
                let name = station_by_credential(pki, req).await?;
                *actor.borrow_mut() = format!("station:{name}:credential");
                Ok(Self::Credential(name))
            }
            None => Err(certificate_required()),
        }
    }

    fn lookup(&self, device_id: Option<String>) -> EnrollmentLookup {
        let (client_fingerprint, station) = match self {
            Self::Certificate { fingerprint, name } => (Some(fingerprint.clone()), name.clone()),
            Self::Credential(name) => (None, Some(name.clone())),
        };
        EnrollmentLookup { client_fingerprint, station, device_id }
    }
}

/// The station named by a valid `Authorization` credential.
async fn station_by_credential(pki: &Pki, req: &HttpRequest) -> Result<String, Refusal> {
    let unauthorized = |m: &str| Refusal::new(StatusCode::UNAUTHORIZED, m.to_string());
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let credential = crate::credentials::parse_authorization(header)
        .map_err(unauthorized)?
        .ok_or_else(|| unauthorized("a TLS client certificate or station credentials are required"))?;
    let station = pki.store.get_station(&credential.station).await.map_err(Refusal::from)?;
    // Unknown station and wrong secret answer alike (no account probing); the
    // hash check runs either way only when there is a hash to check.
    let hash = station.and_then(|s| s.secret_hash);
    let ok = match hash {
        Some(phc) => {
            let secret = credential.secret.clone();
            tokio::task::spawn_blocking(move || crate::credentials::verify(&phc, &secret)).await.unwrap_or(false)
        }
        None => false,
    };
    if !ok {
        return Err(unauthorized("station credentials are not valid"));
    }
    Ok(credential.station)
}

/// The first 16 hex digits of a fingerprint, for actor names.
fn short(fingerprint: &str) -> &str {
    fingerprint.get(..16).unwrap_or(fingerprint)
}

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// Station rate limit: fixed one-minute windows per station (per instance).
fn rate_limit_station(pki: &Pki, state: &EstState, station: &str) -> Result<(), Refusal> {
    let limit = pki.config.est.station_enrollments_per_minute;
    if limit == 0 {
        return Ok(());
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let minute = now / 60;
    let mut windows = state.windows.lock().unwrap_or_else(|p| p.into_inner());
    let entry = windows.entry(station.to_string()).or_insert((minute, 0));
    if entry.0 != minute {
        *entry = (minute, 0);
    }
    if entry.1 >= limit {
        let mut r =
            Refusal::new(StatusCode::TOO_MANY_REQUESTS, format!("station rate limit of {limit}/minute reached"));
        r.retry_after = Some(60 - now % 60);
        return Err(r);
    }
    entry.1 += 1;
    Ok(())
}

/// Reads the request body, at most the EST limit: a larger body is refused with our
/// own reason (and so audited) after reading just past the limit.
async fn read_body(payload: web::Payload) -> Result<web::Bytes, Refusal> {
    match payload.to_bytes_limited(proto::MAX_BODY_BYTES).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(Refusal::bad_request("the request body could not be read")),
        Err(_) => Err(proto::EstError::TooLarge.into()),
    }
}

/// Decodes the base64 PKCS#10 body and checks the CSR's signature and crypto.
fn read_csr(req: &HttpRequest, body: &[u8]) -> Result<enrollment::CheckedCsr, Refusal> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    proto::check_content_type(content_type, "application/pkcs10")?;
    let der = proto::decode_base64_body(body)?;
    Ok(enrollment::check_csr(&der)?)
}

/// The registered device a station may enroll now: the one the CSR names.
fn enrollable_device(pki: &Pki, r: &mut StationRequest<'_>) -> Result<(DeviceRecord, ObjectIdentifier), Refusal> {
    let id = r.csr.common_name.clone().ok_or_else(|| Refusal::bad_request("the CSR subject has no CN (device id)"))?;
    profile::validate_device_id(&id).map_err(|e| Refusal::bad_request(e.to_string()))?;
    let device = r
        .device
        .take()
        .filter(|d| d.device_id == id)
        .ok_or_else(|| Refusal::forbidden(format!("unknown device id '{id}': it is not in the device registry")))?;
    let station = &r.station;
    if !station.may_enroll(&device) {
        return Err(Refusal::forbidden(format!(
            "station '{}' may not enroll model '{}' of batch '{}'",
            station.name, device.model, device.batch
        )));
    }
    match device.state {
        DeviceState::Expected => {}
        DeviceState::Active if device.reprovision => {}
        DeviceState::Active => {
            return Err(Refusal::forbidden(format!(
                "device '{id}' is already enrolled and its batch does not allow re-provisioning"
            )))
        }
        DeviceState::Revoked | DeviceState::Decommissioned => {
            return Err(Refusal::forbidden(format!("device '{id}' is {}", device.state.as_str())))
        }
    }
    let oid = model_oid(pki, &device)?;
    Ok((device, oid))
}

fn model_oid(pki: &Pki, device: &DeviceRecord) -> Result<ObjectIdentifier, Refusal> {
    pki.config
        .models
        .get(&device.model)
        .and_then(|m| ObjectIdentifier::new(&m.oid).ok())
        .ok_or_else(|| Refusal::forbidden(format!("device model '{}' is not configured", device.model)))
}

/// How long a station is told to wait before asking again about a request that
/// awaits approval.
const APPROVAL_RETRY_AFTER_SECS: u64 = 60;

async fn stored_request(pki: &Pki, id: &str) -> Result<Option<EnrollmentRequest>, Refusal> {
    pki.store.get_enrollment_request(id).await.map_err(Refusal::from)
}

/// What a station's enrollment request (simpleenroll, serverkeygen) has established
/// before anything is issued: the profile, the authenticated station, a checked CSR,
/// and the registry's record of the device the CSR names.
struct StationRequest<'a> {
    profile_name: &'a str,
    profile: &'a ProfileConfig,
    station: StationRecord,
    /// The actor, for audit entries.
    who: String,
    csr: enrollment::CheckedCsr,
    device: Option<DeviceRecord>,
}

/// Authenticates the station and checks its request. Everything the decision reads
/// from the store comes from one lookup (`Store::enrollment_context`), so the body is
/// read and the CSR checked first; their errors are still reported only after the
/// station was authenticated, in the order the checks are documented.
async fn station_request<'a>(
    pki: &'a Pki,
    state: &EstState,
    req: &HttpRequest,
    payload: web::Payload,
    actor: &RefCell<String>,
) -> Result<StationRequest<'a>, Refusal> {
    let (profile_name, profile) = profile_for(pki, req)?;
    let claim = StationClaim::of(pki, req, profile, actor).await?;
    let csr = match read_body(payload).await {
        Ok(body) => read_csr(req, &body),
        Err(refusal) => Err(refusal),
    };
    let device_id = csr.as_ref().ok().and_then(|c| c.common_name.clone());
    let mut ctx = state.context(claim.lookup(device_id)).await?;
    let station = authenticate_station(pki, &claim, &mut ctx, actor)?;
    let who = actor.borrow().clone();
    rate_limit_station(pki, state, &station.name)?;
    let csr = csr?;
    check_policy(profile_name, profile, &csr)?;
    Ok(StationRequest { profile_name, profile, station, who, csr, device: ctx.device })
}

/// Issues the device's certificate for `public_key_der`, activating the device in
/// the same transaction.
async fn issue_for_device(
    pki: &Pki,
    r: &StationRequest<'_>,
    device: &DeviceRecord,
    model_oid: ObjectIdentifier,
    public_key_der: &[u8],
) -> Result<Issued, Refusal> {
    let effect =
        IssuanceEffect::ActivateDevice { device_id: device.device_id.clone(), allow_reprovision: device.reprovision };
    let subject = Subject::Device { id: device.device_id.clone(), model_oid };
    Ok(pki.issue_checked(r.profile_name, r.profile, subject, public_key_der, &r.who, Some(effect)).await?)
}

/// The certs-only answer to an enrollment: only the issued certificate (§4.2.3).
fn enrolled(issued: &Issued) -> Result<HttpResponse, Refusal> {
    Ok(base64_response(CERTS_ONLY, &proto::certs_only(std::slice::from_ref(&issued.record.der))?))
}

/// `POST simpleenroll`: a provisioning station enrolls a registered device.
async fn simpleenroll(
    pki: web::Data<Pki>,
    state: web::Data<EstState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let actor = RefCell::new("unauthenticated".to_string());
    respond(&pki, "est.simpleenroll", &actor, async {
        let mut r = station_request(&pki, &state, &req, payload, &actor).await?;
        let (profile_name, profile, who) = (r.profile_name, r.profile, r.who.clone());
        let manual = profile.approval == Approval::Manual;
        let request_id = sha256_hex(&r.csr.der);
        if manual {
            // A request already issued is answered with its certificate again (the
            // station may have lost the first response); the device is active by now.
            if let Some((issuer, serial)) = stored_request(&pki, &request_id).await?.and_then(|r| r.issued) {
                let record = pki
                    .store
                    .get_certificate(&issuer, &serial)
                    .await
                    .map_err(Refusal::from)?
                    .ok_or_else(|| Refusal::new(StatusCode::CONFLICT, "the approved certificate is gone"))?;
                return Ok(base64_response(CERTS_ONLY, &proto::certs_only(std::slice::from_ref(&record.der))?));
            }
        }
        let (device, model_oid) = enrollable_device(&pki, &mut r)?;
        if manual {
            let request = EnrollmentRequest {
                id: request_id.clone(),
                profile: profile_name.to_string(),
                device_id: device.device_id.clone(),
                requester: who.clone(),
                status: RequestStatus::Pending,
                decided_by: None,
                issued: None,
            };
            let audit = AuditEvent::success(who.as_str(), "est.request", format!("request:{request_id}"))
                .with_details(serde_json::json!({ "device_id": device.device_id, "profile": profile_name }));
            let stored = pki.store.submit_enrollment_request(&request, audit).await.map_err(Refusal::from)?;
            match stored.status {
                RequestStatus::Pending => {
                    return Ok(HttpResponse::Accepted()
                        .insert_header((header::RETRY_AFTER, APPROVAL_RETRY_AFTER_SECS.to_string()))
                        .content_type("text/plain; charset=utf-8")
                        .body(format!("request {request_id} awaits an operator's approval\n")));
                }
                RequestStatus::Rejected => {
                    return Err(Refusal::forbidden(format!("request {request_id} was rejected by an operator")));
                }
                RequestStatus::Approved | RequestStatus::Issued => {}
            }
        }
        let issued = issue_for_device(&pki, &r, &device, model_oid, &r.csr.public_key_der).await?;
        if manual {
            pki.store
                .mark_enrollment_request_issued(&request_id, &issued.record.issuer, &issued.record.serial)
                .await
                .map_err(Refusal::from)?;
        }
        enrolled(&issued)
    })
    .await
}

/// `POST simplereenroll`: a device renews its own identity with its current certificate.
async fn simplereenroll(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let actor = RefCell::new("unauthenticated".to_string());
    respond(&pki, "est.simplereenroll", &actor, async {
        profile_for(&pki, &req)?;
        let current = client_certificate(&pki, &req, "device", ProfileKind::Device).await?;
        let id = current
            .device_id
            .clone()
            .ok_or_else(|| Refusal::forbidden("the client certificate is not a device identity"))?;
        let who = format!("device:{id}:{}", short(&current.fingerprint));
        *actor.borrow_mut() = who.clone();
        let device = pki
            .store
            .get_device(&id)
            .await
            .map_err(Refusal::from)?
            .ok_or_else(|| Refusal::forbidden(format!("device '{id}' is not in the registry")))?;
        if device.state != DeviceState::Active {
            return Err(Refusal::forbidden(format!("device '{id}' is {}", device.state.as_str())));
        }
        let csr = read_csr(&req, &read_body(payload).await?)?;
        proto::check_renewal_identity(&csr.der, &current.der).map_err(|e| Refusal::bad_request(e.to_string()))?;
        if !pki.config.est.allow_same_key_renewal && sha256_hex(&csr.public_key_der) == current.public_key_sha256 {
            return Err(Refusal::bad_request("renewal must use a new key pair (same-key renewal is not allowed)"));
        }
        // Renewals use the profile the current certificate was issued under.
        let profile = pki
            .config
            .profiles
            .get(&current.profile)
            .ok_or_else(|| Refusal::forbidden(format!("profile '{}' is no longer configured", current.profile)))?;
        check_policy(&current.profile, profile, &csr)?;
        renewal_rate_limit(&pki, &id).await?;
        let subject = Subject::Device { id, model_oid: model_oid(&pki, &device)? };
        let effect = IssuanceEffect::Supersede { issuer: current.issuer.clone(), serial: current.serial.clone() };
        let issued =
            pki.issue_checked(&current.profile, profile, subject, &csr.public_key_der, &who, Some(effect)).await?;
        enrolled(&issued)
    })
    .await
}

/// One certificate per device per configured interval, counted from the newest
/// certificate in the store (so it holds across instances and restarts).
async fn renewal_rate_limit(pki: &Pki, device_id: &str) -> Result<(), Refusal> {
    let interval = pki.config.est.renewal_min_interval_secs as i64;
    if interval == 0 {
        return Ok(());
    }
    let newest = pki.store.certificates_for_device(device_id).await.map_err(Refusal::from)?.into_iter().next();
    if let Some(c) = newest {
        let issued_at = c.not_before + profile::BACKDATE.as_secs() as i64;
        let now = crate::issuance::unix(SystemTime::now());
        let wait = issued_at + interval - now;
        if wait > 0 {
            let mut r = Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("device '{device_id}' was issued a certificate less than {interval} s ago"),
            );
            r.retry_after = Some(wait as u64);
            return Err(r);
        }
    }
    Ok(())
}

/// `POST serverkeygen` (RFC 7030 §4.4): for devices that cannot make keys. The
/// station sends the device's CSR (for its identity); the key pair is generated here,
/// returned once with the certificate, and never stored or logged.
async fn serverkeygen(
    pki: web::Data<Pki>,
    state: web::Data<EstState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let actor = RefCell::new("unauthenticated".to_string());
    respond(&pki, "est.serverkeygen", &actor, async {
        let mut r = station_request(&pki, &state, &req, payload, &actor).await?;
        let who = r.who.clone();
        let (device, model_oid) = enrollable_device(&pki, &mut r)?;
        let (pkcs8, spki) = generate_device_key()?;
        let issued = issue_for_device(&pki, &r, &device, model_oid, &spki).await?;

        pki.store
            .append_audit(&[AuditEvent::success(
                who.as_str(),
                "est.serverkeygen",
                format!("certificate:{}/{}", issued.record.issuer, hex::encode(&issued.record.serial)),
            )
            .with_details(serde_json::json!({ "device_id": device.device_id, "key": "ecdsa-p256, generated server-side, not stored" }))])
            .await
            .map_err(Refusal::from)?;
        let certs = proto::certs_only(std::slice::from_ref(&issued.record.der))?;
        let (content_type, body) = proto::serverkeygen_response(&pkcs8, &certs)?;
        Ok(HttpResponse::Ok().content_type(content_type).body(body))
    })
    .await
}

/// A fresh P-256 key: its PKCS#8 (wiped on drop) and SPKI.
fn generate_device_key() -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), Refusal> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let internal = |_| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "key generation failed");
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).map_err(internal)?;
    let pkcs8 = Zeroizing::new(key.to_pkcs8v1().map_err(internal)?.as_ref().to_vec());
    let spki = key.public_key().as_der().map_err(internal)?.as_ref().to_vec();
    Ok((pkcs8, spki))
}

/// The EST state shared by all workers. Must run inside the tokio runtime that
/// serves the store.
pub fn state(store: Arc<dyn Store>) -> web::Data<EstState> {
    web::Data::new(EstState::new(store))
}
