//! The admin API on the HTTPS listener, under `/api/v1`, JSON in and out.
//!
//! Clients authenticate with an operator client certificate (`ca-service operators
//! add`: CN = the person, OU = the role; checked live against the store, so a revoked
//! one stops working at once) or `Authorization: Bearer pki_<id>.<secret>` (tokens made
//! by `ca-service tokens create`, stored as an Argon2id hash and verified on the
//! blocking pool). Unknown, wrong and revoked tokens get the same 401. What each role
//! may do is declared in one place, [`allowed`]. Every refusal and every successful
//! privileged action is audited with actor `token:<id>:<name>`.

use std::cell::RefCell;
use std::sync::OnceLock;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::audit::{AuditEntry, AuditEvent};
use crate::config::ProfileKind;
use crate::est::{audit_refusal, Refusal};
use crate::issuance::Pki;
use crate::store::{ApiToken, CertRecord, DeviceSelector, RequestStatus, Role, UpdateRequest};

/// Largest JSON body the admin API accepts.
pub const MAX_JSON_BYTES: usize = 16 * 1024;
/// Most audit entries one `GET /api/v1/audit` returns.
pub const MAX_AUDIT_PAGE: i64 = 1000;
/// Prefix of every API token.
pub const TOKEN_PREFIX: &str = "pki_";

const INVALID_TOKEN: &str = "invalid or revoked API token";

/// What a request wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    RevokeCertificate,
    RevokeDevice,
    ReadCertificate,
    ListDeviceCertificates,
    ReadAudit,
    SubmitUpdateRequest,
    ApproveUpdateRequest,
    RejectUpdateRequest,
    SignUpdateRequest,
    ReadUpdateRequests,
}

impl Operation {
    /// The audit action.
    pub fn action(self) -> &'static str {
        match self {
            Operation::RevokeCertificate => "certificate.revoke",
            Operation::RevokeDevice => "device.revoke",
            Operation::ReadCertificate => "api.certificate.read",
            Operation::ListDeviceCertificates => "api.device.certificates",
            Operation::ReadAudit => "api.audit.read",
            Operation::SubmitUpdateRequest => "update-request.submit",
            Operation::ApproveUpdateRequest => "update-request.approve",
            Operation::RejectUpdateRequest => "update-request.reject",
            Operation::SignUpdateRequest => "update-request.sign",
            Operation::ReadUpdateRequests => "api.update-request.read",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Operation::RevokeCertificate => "revoke certificates",
            Operation::RevokeDevice => "revoke devices",
            Operation::ReadCertificate => "read certificates",
            Operation::ListDeviceCertificates => "list a device's certificates",
            Operation::ReadAudit => "read the audit log",
            Operation::SubmitUpdateRequest => "request update-signing certificates",
            Operation::ApproveUpdateRequest => "approve update-signing requests",
            Operation::RejectUpdateRequest => "reject update-signing requests",
            Operation::SignUpdateRequest => "sign approved update-signing requests",
            Operation::ReadUpdateRequests => "read update-signing requests",
        }
    }
}

/// THE authorization table: which roles may perform each operation.
pub fn allowed(op: Operation) -> &'static [Role] {
    match op {
        Operation::RevokeCertificate | Operation::RevokeDevice => &[Role::Admin, Role::Operator],
        Operation::ReadCertificate | Operation::ListDeviceCertificates => &[Role::Admin, Role::Operator, Role::Auditor],
        Operation::ReadAudit => &[Role::Admin, Role::Auditor],
        // The two-person rule needs designated people: not even admin submits or approves.
        Operation::SubmitUpdateRequest => &[Role::ReleaseManager],
        Operation::ApproveUpdateRequest | Operation::RejectUpdateRequest => &[Role::UpdateApprover],
        Operation::SignUpdateRequest => &[Role::ReleaseManager, Role::UpdateApprover],
        Operation::ReadUpdateRequests => &[Role::Admin, Role::Auditor, Role::ReleaseManager, Role::UpdateApprover],
    }
}

/// A new token: the string to show once (`pki_<id>.<secret>`) and the record to store.
pub fn new_token(name: &str, role: Role, created_at_us: i64) -> Result<(zeroize::Zeroizing<String>, ApiToken), String> {
    let id = hex::encode(rand::random::<[u8; 8]>());
    let (secret, secret_hash) = crate::credentials::new_secret()?;
    let shown = zeroize::Zeroizing::new(format!("{TOKEN_PREFIX}{id}.{}", secret.as_str()));
    Ok((shown, ApiToken { id, name: name.to_string(), role, secret_hash, created_at: created_at_us, revoked_at: None }))
}

/// `pki_<id>.<secret>` → (id, secret); `None` if it is not of that shape.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.strip_prefix(TOKEN_PREFIX)?.split_once('.')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty()).then_some((id, secret))
}

/// The audit actor of a token.
pub fn actor_of(token: &ApiToken) -> String {
    format!("token:{}:{}", token.id, token.name)
}

/// Admin API routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .route("/openapi.json", web::get().to(openapi))
            .route("/certificates/{issuer}/{serial}/revoke", web::post().to(revoke_certificate))
            .route("/certificates/{issuer}/{serial}", web::get().to(get_certificate))
            .route("/devices/{device_id}/revoke", web::post().to(revoke_device))
            .route("/batches/{batch}/revoke", web::post().to(revoke_batch))
            .route("/models/{model}/revoke", web::post().to(revoke_model))
            .route("/devices/{device_id}/certificates", web::get().to(device_certificates))
            .route("/audit", web::get().to(audit_log))
            .route("/update-requests", web::post().to(submit_update_request))
            .route("/update-requests", web::get().to(list_update_requests))
            .route("/update-requests/{id}", web::get().to(get_update_request))
            .route("/update-requests/{id}/approve", web::post().to(approve_update_request))
            .route("/update-requests/{id}/reject", web::post().to(reject_update_request))
            .route("/update-requests/{id}/sign", web::post().to(sign_update_request)),
    );
}

/// Runs an endpoint: refusals become JSON 4xx (or 5xx) responses and are audited.
async fn respond(
    pki: &Pki,
    op: Operation,
    target: &str,
    actor: &RefCell<String>,
    result: impl std::future::Future<Output = Result<HttpResponse, Refusal>>,
) -> HttpResponse {
    match result.await {
        Ok(res) => res,
        Err(r) => {
            let actor = actor.borrow().clone();
            audit_refusal(pki, op.action(), &actor, target, &r).await;
            let mut res = HttpResponse::build(r.status);
            if r.status == StatusCode::UNAUTHORIZED {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            res.json(serde_json::json!({ "error": r.reason }))
        }
    }
}

/// A hash to verify against when the token id is unknown, so that an unknown id costs
/// as much as a wrong secret.
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY.get_or_init(|| crate::credentials::new_secret().ok().map(|(_, phc)| phc)).as_deref()
}

/// Who is calling: a person (operator certificate) or an API token, and its role.
#[derive(Debug, Clone)]
pub struct Principal {
    /// What the two-person rule compares: the token's or the certificate's name.
    pub name: String,
    pub role: Role,
}

/// Authenticates the caller — an operator client certificate presented in the TLS
/// handshake, or else a bearer token — and checks its role may perform `op`; sets
/// `actor`.
async fn authorize(pki: &Pki, req: &HttpRequest, op: Operation, actor: &RefCell<String>) -> Result<Principal, Refusal> {
    let has_certificate = req.conn_data::<crate::est::PeerCertificate>().is_some();
    let principal = if req.headers().get(header::AUTHORIZATION).is_none() && has_certificate {
        operator_certificate(pki, req, actor).await?
    } else {
        let token = bearer_token(pki, req, actor).await?;
        Principal { name: token.name, role: token.role }
    };
    if !allowed(op).contains(&principal.role) {
        return Err(Refusal::forbidden(format!("role {} may not {}", principal.role, op.describe())));
    }
    Ok(principal)
}

/// An operator certificate (profile kind `operator`): issued by us, valid, not
/// revoked; its CN names the person and its OU the role.
async fn operator_certificate(pki: &Pki, req: &HttpRequest, actor: &RefCell<String>) -> Result<Principal, Refusal> {
    let Some((_, profile)) = pki.config.profiles.iter().find(|(_, p)| p.kind == ProfileKind::Operator) else {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "operator certificates are not configured; use an API token",
        ));
    };
    let cert = crate::est::client_certificate(pki, req, &profile.issuer, ProfileKind::Operator).await?;
    let (name, role) = crate::profile::operator_identity(&cert.der)
        .ok_or_else(|| Refusal::forbidden("the operator certificate names no person or role"))?;
    *actor.borrow_mut() = format!("operator:{name}:{}", &cert.fingerprint[..16]);
    let role =
        Role::parse(&role).map_err(|_| Refusal::forbidden(format!("unknown role '{role}' in the certificate")))?;
    Ok(Principal { name, role })
}

/// Authenticates the bearer token; sets `actor`.
async fn bearer_token(pki: &Pki, req: &HttpRequest, actor: &RefCell<String>) -> Result<ApiToken, Refusal> {
    let unauthorized = || Refusal::new(StatusCode::UNAUTHORIZED, INVALID_TOKEN);
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "missing credential (Authorization: Bearer pki_…, or an operator client certificate)",
        ));
    };
    let value = value.to_str().map_err(|_| unauthorized())?.trim();
    let (scheme, token) = value.split_once(' ').ok_or_else(unauthorized)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized());
    }
    let (id, secret) = parse_token(token.trim()).ok_or_else(unauthorized)?;
    *actor.borrow_mut() = format!("token:{id}:?");
    let stored = pki.store.get_api_token(id).await.map_err(Refusal::from)?;
    let phc = match &stored {
        Some(t) => Some(t.secret_hash.clone()),
        None => dummy_hash().map(str::to_string),
    };
    let secret = zeroize::Zeroizing::new(secret.as_bytes().to_vec());
    let ok = tokio::task::spawn_blocking(move || phc.is_some_and(|p| crate::credentials::verify(&p, &secret)))
        .await
        .unwrap_or(false);
    let token = match stored {
        Some(t) if ok && t.revoked_at.is_none() => t,
        _ => return Err(unauthorized()),
    };
    *actor.borrow_mut() = actor_of(&token);
    Ok(token)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    reason: String,
}

/// Reads a JSON body of at most [`MAX_JSON_BYTES`].
async fn read_json<T: serde::de::DeserializeOwned>(payload: web::Payload) -> Result<T, Refusal> {
    let bytes = match payload.to_bytes_limited(MAX_JSON_BYTES).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return Err(Refusal::bad_request("the request body could not be read")),
        Err(_) => {
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {MAX_JSON_BYTES} bytes"),
            ))
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| Refusal::bad_request(format!("malformed JSON body: {e}")))
}

fn parse_serial(serial: &str) -> Result<Vec<u8>, Refusal> {
    crate::crl::parse_serial(serial).map_err(Refusal::bad_request)
}

fn path_param(req: &HttpRequest, name: &str) -> String {
    req.match_info().get(name).unwrap_or_default().to_string()
}

fn now_secs() -> i64 {
    crate::issuance::unix(std::time::SystemTime::now())
}

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
        "revocation_reason": c.revocation_reason.map(|r| crate::crl::reason_name(r).unwrap_or("unknown")),
        "fingerprint_sha256": c.fingerprint,
    })
}

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
        "prev_hash": hex::encode(e.prev_hash),
        "hash": hex::encode(e.hash),
    })
}

/// Audits a successful read (reads of certificates and the log are privileged too).
async fn audit_read(pki: &Pki, actor: &RefCell<String>, op: Operation, target: &str) -> Result<(), Refusal> {
    let event = AuditEvent::success(actor.borrow().as_str(), op.action(), target);
    pki.store.append_audit(&[event]).await.map_err(Refusal::from)
}

/// Re-signs the OCSP answers of what was just revoked before the API answers, so
/// the revocation is visible to OCSP clients the moment the caller learns of it, and
/// wakes the CRL publisher.
async fn publish_revocations(pki: &Pki, req: &HttpRequest, revoked: &[CertRecord]) {
    if let Some(ocsp) = req.app_data::<web::Data<crate::ocsp::OcspService>>() {
        for c in revoked {
            ocsp.revoked(pki, &c.issuer, &c.serial).await;
        }
    }
    if let Some(crls) = req.app_data::<web::Data<crate::crl::CrlPublisher>>() {
        crls.revoked();
    }
}

/// `POST /api/v1/certificates/{issuer}/{serial}/revoke` `{"reason": "keyCompromise"}`.
async fn revoke_certificate(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let op = Operation::RevokeCertificate;
    let (issuer, serial) = (path_param(&req, "issuer"), path_param(&req, "serial"));
    let target = format!("certificate:{issuer}/{serial}");
    let actor = RefCell::new("anonymous".to_string());
    respond(&pki, op, &target, &actor, async {
        authorize(&pki, &req, op, &actor).await?;
        let body: RevokeBody = read_json(payload).await?;
        let code = crate::crl::reason_code(&body.reason).map_err(Refusal::bad_request)?;
        let serial = parse_serial(&serial)?;
        let target = format!("certificate:{issuer}/{}", hex::encode(&serial));
        let audit = AuditEvent::success(actor.borrow().as_str(), op.action(), target)
            .with_details(serde_json::json!({ "reason": body.reason, "reason_code": code.code(), "via": "api" }));
        let record =
            pki.store.revoke_certificate(&issuer, &serial, code, now_secs(), audit).await.map_err(Refusal::from)?;
        publish_revocations(&pki, &req, std::slice::from_ref(&record)).await;
        Ok(HttpResponse::Ok().json(certificate_json(&record)))
    })
    .await
}

/// `POST /api/v1/devices/{device_id}/revoke` `{"reason": …}`: all its certificates.
async fn revoke_device(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let which = DeviceSelector::Device(path_param(&req, "device_id"));
    revoke_devices(pki, req, payload, which).await
}

/// `POST /api/v1/batches/{batch}/revoke`: every device of a batch.
async fn revoke_batch(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let which = DeviceSelector::Batch(path_param(&req, "batch"));
    revoke_devices(pki, req, payload, which).await
}

/// `POST /api/v1/models/{model}/revoke`: every device of a model.
async fn revoke_model(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let which = DeviceSelector::Model(path_param(&req, "model"));
    revoke_devices(pki, req, payload, which).await
}

async fn revoke_devices(
    pki: web::Data<Pki>,
    req: HttpRequest,
    payload: web::Payload,
    which: DeviceSelector,
) -> HttpResponse {
    let op = Operation::RevokeDevice;
    let target = which.to_string();
    let actor = RefCell::new("anonymous".to_string());
    respond(&pki, op, &target, &actor, async {
        authorize(&pki, &req, op, &actor).await?;
        let body: RevokeBody = read_json(payload).await?;
        let code = crate::crl::reason_code(&body.reason).map_err(Refusal::bad_request)?;
        let audit = AuditEvent::success(actor.borrow().as_str(), op.action(), target.as_str())
            .with_details(serde_json::json!({ "reason": body.reason, "reason_code": code.code(), "via": "api" }));
        let (devices, revoked) =
            pki.store.revoke_devices(&which, code, now_secs(), audit).await.map_err(Refusal::from)?;
        publish_revocations(&pki, &req, &revoked).await;
        let mut answer = serde_json::json!({
            "revoked_devices": devices,
            "state": "revoked",
            "revoked_certificates": revoked.iter().map(certificate_json).collect::<Vec<_>>(),
        });
        match &which {
            DeviceSelector::Device(id) => answer["device_id"] = id.as_str().into(),
            DeviceSelector::Batch(b) => answer["batch"] = b.as_str().into(),
            DeviceSelector::Model(m) => answer["model"] = m.as_str().into(),
        }
        Ok(HttpResponse::Ok().json(answer))
    })
    .await
}

/// `GET /api/v1/certificates/{issuer}/{serial}`.
async fn get_certificate(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let op = Operation::ReadCertificate;
    let (issuer, serial) = (path_param(&req, "issuer"), path_param(&req, "serial"));
    let target = format!("certificate:{issuer}/{serial}");
    let actor = RefCell::new("anonymous".to_string());
    respond(&pki, op, &target, &actor, async {
        authorize(&pki, &req, op, &actor).await?;
        let serial = parse_serial(&serial)?;
        let record = pki
            .store
            .get_certificate(&issuer, &serial)
            .await
            .map_err(Refusal::from)?
            .ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, format!("certificate {target} not found")))?;
        audit_read(&pki, &actor, op, &target).await?;
        Ok(HttpResponse::Ok().json(certificate_json(&record)))
    })
    .await
}

/// `GET /api/v1/devices/{device_id}/certificates`, newest first.
async fn device_certificates(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let op = Operation::ListDeviceCertificates;
    let device = path_param(&req, "device_id");
    let target = format!("device:{device}");
    let actor = RefCell::new("anonymous".to_string());
    respond(&pki, op, &target, &actor, async {
        authorize(&pki, &req, op, &actor).await?;
        if pki.store.get_device(&device).await.map_err(Refusal::from)?.is_none() {
            return Err(Refusal::new(StatusCode::NOT_FOUND, format!("device '{device}' not found")));
        }
        let certs = pki.store.certificates_for_device(&device).await.map_err(Refusal::from)?;
        audit_read(&pki, &actor, op, &target).await?;
        Ok(HttpResponse::Ok().json(serde_json::json!({
            "device_id": device,
            "certificates": certs.iter().map(certificate_json).collect::<Vec<_>>(),
        })))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

/// `GET /api/v1/audit?after=N&limit=M` (limit 1..=1000, default 100).
async fn audit_log(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let op = Operation::ReadAudit;
    let actor = RefCell::new("anonymous".to_string());
    respond(&pki, op, "audit", &actor, async {
        authorize(&pki, &req, op, &actor).await?;
        let q = web::Query::<AuditQuery>::from_query(req.query_string())
            .map_err(|e| Refusal::bad_request(format!("bad query: {e}")))?
            .into_inner();
        let limit = q.limit.unwrap_or(100);
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) || q.after < 0 {
            return Err(Refusal::bad_request(format!("limit must be 1..={MAX_AUDIT_PAGE} and after ≥ 0")));
        }
        let entries = pki.store.audit_entries(q.after, limit).await.map_err(Refusal::from)?;
        audit_read(&pki, &actor, op, "audit").await?;
        Ok(HttpResponse::Ok().json(serde_json::json!({
            "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
            "next_after": entries.last().map(|e| e.seq),
        })))
    })
    .await
}

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

/// `POST /api/v1/update-requests` `{"csr": PEM, "classes": [...], "validity_days": n}`.
async fn submit_update_request(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let op = Operation::SubmitUpdateRequest;
    let actor = RefCell::new("anonymous".to_string());
    respond(&pki, op, "update-request", &actor, async {
        let caller = authorize(&pki, &req, op, &actor).await?;
        let body: UpdateRequestBody = read_json(payload).await?;
        let new = crate::updates::NewUpdateRequest {
            csr: body.csr.into_bytes(),
            classes: body.classes,
            validity_days: body.validity_days,
        };
        let who = actor.borrow().clone();
        let request = crate::updates::submit(&pki, &caller.name, &who, new).await?;
        Ok(HttpResponse::Created().json(update_request_json(&pki, &request).await?))
    })
    .await
}

/// `GET /api/v1/update-requests?status=pending`.
async fn list_update_requests(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let op = Operation::ReadUpdateRequests;
    let actor = RefCell::new("anonymous".to_string());
    respond(&pki, op, "update-requests", &actor, async {
        authorize(&pki, &req, op, &actor).await?;
        let q = web::Query::<StatusQuery>::from_query(req.query_string())
            .map_err(|e| Refusal::bad_request(format!("bad query: {e}")))?;
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
        audit_read(&pki, &actor, op, "update-requests").await?;
        Ok(HttpResponse::Ok().json(serde_json::json!({ "requests": out })))
    })
    .await
}

async fn stored_update_request(pki: &Pki, id: &str) -> Result<UpdateRequest, Refusal> {
    pki.store
        .get_update_request(id)
        .await
        .map_err(Refusal::from)?
        .ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, format!("update request '{id}' not found")))
}

/// `GET /api/v1/update-requests/{id}`.
async fn get_update_request(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let op = Operation::ReadUpdateRequests;
    let id = path_param(&req, "id");
    let target = format!("update-request:{id}");
    let actor = RefCell::new("anonymous".to_string());
    respond(&pki, op, &target, &actor, async {
        authorize(&pki, &req, op, &actor).await?;
        let request = stored_update_request(&pki, &id).await?;
        audit_read(&pki, &actor, op, &target).await?;
        Ok(HttpResponse::Ok().json(update_request_json(&pki, &request).await?))
    })
    .await
}

/// `POST /api/v1/update-requests/{id}/approve`: the approval that completes the
/// quorum also signs, and the answer carries the certificate.
async fn approve_update_request(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let op = Operation::ApproveUpdateRequest;
    let id = path_param(&req, "id");
    let target = format!("update-request:{id}");
    let actor = RefCell::new("anonymous".to_string());
    respond(&pki, op, &target, &actor, async {
        let caller = authorize(&pki, &req, op, &actor).await?;
        let who = actor.borrow().clone();
        let (request, signed) = crate::updates::approve(&pki, &caller.name, &who, &id).await?;
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
async fn reject_update_request(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let op = Operation::RejectUpdateRequest;
    let id = path_param(&req, "id");
    let target = format!("update-request:{id}");
    let actor = RefCell::new("anonymous".to_string());
    respond(&pki, op, &target, &actor, async {
        let caller = authorize(&pki, &req, op, &actor).await?;
        let body: RejectBody = read_json(payload).await?;
        let who = actor.borrow().clone();
        crate::updates::reject(&pki, &caller.name, &who, &id, &body.reason).await?;
        let request = stored_update_request(&pki, &id).await?;
        Ok(HttpResponse::Ok().json(update_request_json(&pki, &request).await?))
    })
    .await
}

/// `POST /api/v1/update-requests/{id}/sign`: signs an approved request whose
/// signing did not complete (the final approval normally signs).
async fn sign_update_request(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let op = Operation::SignUpdateRequest;
    let id = path_param(&req, "id");
    let target = format!("update-request:{id}");
    let actor = RefCell::new("anonymous".to_string());
    respond(&pki, op, &target, &actor, async {
        authorize(&pki, &req, op, &actor).await?;
        let request = stored_update_request(&pki, &id).await?;
        let who = actor.borrow().clone();
        crate::updates::sign(&pki, &request, &who).await?;
        let request = stored_update_request(&pki, &id).await?;
        Ok(HttpResponse::Ok().json(update_request_json(&pki, &request).await?))
    })
    .await
}

/// `GET /api/v1/openapi.json`: served to anyone, unauthenticated.
async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(openapi_document())
}

/// The OpenAPI 3 document of this API (hand-written with `serde_json`).
pub fn openapi_document() -> serde_json::Value {
    use serde_json::json;
    let err = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let std_errors = |mut responses: serde_json::Map<String, serde_json::Value>| {
        responses.insert("401".into(), err("missing, invalid or revoked API token"));
        responses.insert("403".into(), err("the token's role may not do this"));
        responses.insert("404".into(), err("not found"));
        serde_json::Value::Object(responses)
    };
    let ok = |schema: &str| {
        let mut m = serde_json::Map::new();
        m.insert(
            "200".into(),
            json!({ "description": "OK", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } }),
        );
        m
    };
    let roles = |op: Operation| allowed(op).iter().map(|r| r.as_str()).collect::<Vec<_>>();
    let revoke_body = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/RevokeRequest" } } } });
    let p = |name: &str| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } });
    let mut revoke_responses = ok("Certificate");
    revoke_responses.insert("400".into(), err("bad reason, serial or JSON"));
    revoke_responses.insert("409".into(), err("already revoked"));
    let mut device_revoke_responses = ok("DeviceRevocation");
    device_revoke_responses.insert("400".into(), err("bad reason or JSON"));
    let mut update_responses = ok("UpdateRequest");
    update_responses.insert("400".into(), err("bad CSR, class, validity or JSON"));
    update_responses.insert("409".into(), err("not pending, expired, the requester approving, or approved twice"));
    let json_body = |schema: &str| json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
    let mut audit_responses = ok("AuditPage");
    audit_responses.insert("400".into(), err("bad query"));
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Device PKI admin API", "version": env!("CARGO_PKG_VERSION") },
        "servers": [{ "url": "/api/v1" }],
        "security": [{ "bearer": [] }],
        "paths": {
            "/certificates/{issuer}/{serial}/revoke": { "post": {
                "summary": "Revoke a certificate", "x-roles": roles(Operation::RevokeCertificate),
                "parameters": [p("issuer"), p("serial")], "requestBody": revoke_body,
                "responses": std_errors(revoke_responses) } },
            "/certificates/{issuer}/{serial}": { "get": {
                "summary": "Read a certificate record", "x-roles": roles(Operation::ReadCertificate),
                "parameters": [p("issuer"), p("serial")], "responses": std_errors(ok("Certificate")) } },
            "/devices/{device_id}/revoke": { "post": {
                "summary": "Revoke a device and all its certificates", "x-roles": roles(Operation::RevokeDevice),
                "parameters": [p("device_id")], "requestBody": revoke_body,
                "responses": std_errors(device_revoke_responses.clone()) } },
            "/batches/{batch}/revoke": { "post": {
                "summary": "Revoke every device of a batch and all their certificates",
                "x-roles": roles(Operation::RevokeDevice),
                "parameters": [p("batch")], "requestBody": revoke_body,
                "responses": std_errors(device_revoke_responses.clone()) } },
            "/models/{model}/revoke": { "post": {
                "summary": "Revoke every device of a model and all their certificates",
                "x-roles": roles(Operation::RevokeDevice),
                "parameters": [p("model")], "requestBody": revoke_body,
                "responses": std_errors(device_revoke_responses.clone()) } },
            "/update-requests": {
                "post": { "summary": "Request an update-signing certificate (two approvers needed)",
                    "x-roles": roles(Operation::SubmitUpdateRequest), "requestBody": json_body("NewUpdateRequest"),
                    "responses": std_errors(update_responses.clone()) },
                "get": { "summary": "List update-signing requests", "x-roles": roles(Operation::ReadUpdateRequests),
                    "parameters": [{ "name": "status", "in": "query", "schema": { "type": "string",
                        "enum": ["pending", "approved", "rejected", "issued"] } }],
                    "responses": std_errors(ok("UpdateRequestList")) } },
            "/update-requests/{id}": { "get": {
                "summary": "Read an update-signing request (with its certificate once issued)",
                "x-roles": roles(Operation::ReadUpdateRequests),
                "parameters": [p("id")], "responses": std_errors(ok("UpdateRequest")) } },
            "/update-requests/{id}/approve": { "post": {
                "summary": "Approve; the last required approval signs the certificate",
                "x-roles": roles(Operation::ApproveUpdateRequest),
                "parameters": [p("id")], "responses": std_errors(update_responses.clone()) } },
            "/update-requests/{id}/reject": { "post": {
                "summary": "Reject for good", "x-roles": roles(Operation::RejectUpdateRequest),
                "parameters": [p("id")], "requestBody": json_body("RejectRequest"),
                "responses": std_errors(update_responses.clone()) } },
            "/update-requests/{id}/sign": { "post": {
                "summary": "Sign an approved request whose signing did not complete",
                "x-roles": roles(Operation::SignUpdateRequest),
                "parameters": [p("id")], "responses": std_errors(update_responses) } },
            "/devices/{device_id}/certificates": { "get": {
                "summary": "A device's certificates, newest first", "x-roles": roles(Operation::ListDeviceCertificates),
                "parameters": [p("device_id")], "responses": std_errors(ok("DeviceCertificates")) } },
            "/audit": { "get": {
                "summary": "Audit log entries after a sequence number", "x-roles": roles(Operation::ReadAudit),
                "parameters": [
                    { "name": "after", "in": "query", "schema": { "type": "integer", "minimum": 0, "default": 0 } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": MAX_AUDIT_PAGE, "default": 100 } }
                ],
                "responses": std_errors(audit_responses) } },
            "/openapi.json": { "get": { "summary": "This document", "security": [],
                "responses": { "200": { "description": "OpenAPI 3 document" } } } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "pki_<id>.<secret>" } },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": { "type": "string" } } },
                "RevokeRequest": { "type": "object", "required": ["reason"], "properties": {
                    "reason": { "type": "string", "enum": ["unspecified", "keyCompromise", "cACompromise",
                        "affiliationChanged", "superseded", "cessationOfOperation", "certificateHold",
                        "privilegeWithdrawn", "aACompromise"] } } },
                "Certificate": { "type": "object", "properties": {
                    "issuer": { "type": "string" }, "serial": { "type": "string" }, "subject": { "type": "string" },
                    "device_id": { "type": "string", "nullable": true }, "profile": { "type": "string" },
                    "not_before": { "type": "integer" }, "not_after": { "type": "integer" },
                    "status": { "type": "string", "enum": ["valid", "revoked", "superseded"] },
                    "revoked_at": { "type": "integer", "nullable": true },
                    "revocation_reason": { "type": "string", "nullable": true },
                    "fingerprint_sha256": { "type": "string" } } },
                "DeviceCertificates": { "type": "object", "properties": { "device_id": { "type": "string" },
                    "certificates": { "type": "array", "items": { "$ref": "#/components/schemas/Certificate" } } } },
                "DeviceRevocation": { "type": "object", "properties": { "device_id": { "type": "string" },
                    "batch": { "type": "string" }, "model": { "type": "string" },
                    "revoked_devices": { "type": "integer" }, "state": { "type": "string" },
                    "revoked_certificates": { "type": "array", "items": { "$ref": "#/components/schemas/Certificate" } } } },
                "NewUpdateRequest": { "type": "object", "required": ["csr", "classes"], "properties": {
                    "csr": { "type": "string", "description": "PKCS#10, PEM" },
                    "classes": { "type": "array", "items": { "type": "string" } },
                    "validity_days": { "type": "integer", "minimum": 1 } } },
                "RejectRequest": { "type": "object", "required": ["reason"], "properties": {
                    "reason": { "type": "string", "maxLength": 500 } } },
                "UpdateRequest": { "type": "object", "properties": {
                    "id": { "type": "string" },
                    "status": { "type": "string", "enum": ["pending", "approved", "rejected", "issued"] },
                    "expired": { "type": "boolean" }, "requester": { "type": "string" },
                    "classes": { "type": "array", "items": { "type": "string" } },
                    "class_policy_oids": { "type": "array", "items": { "type": "string" } },
                    "validity_days": { "type": "integer" },
                    "approvals": { "type": "array", "items": { "type": "string" } },
                    "approvals_required": { "type": "integer" },
                    "rejected_by": { "type": "string", "nullable": true },
                    "reason": { "type": "string", "nullable": true },
                    "created_at": { "type": "integer" }, "expires_at": { "type": "integer" },
                    "issuer": { "type": "string" }, "serial": { "type": "string" },
                    "certificate": { "type": "string", "description": "PEM, once issued" },
                    "chain": { "type": "string", "description": "PEM of the issuing CA, once issued" } } },
                "UpdateRequestList": { "type": "object", "properties": {
                    "requests": { "type": "array", "items": { "$ref": "#/components/schemas/UpdateRequest" } } } },
                "AuditPage": { "type": "object", "properties": {
                    "next_after": { "type": "integer", "nullable": true },
                    "entries": { "type": "array", "items": { "type": "object", "properties": {
                        "seq": { "type": "integer" }, "time_us": { "type": "integer" }, "actor": { "type": "string" },
                        "action": { "type": "string" }, "target": { "type": "string" }, "outcome": { "type": "string" },
                        "details": {}, "prev_hash": { "type": "string" }, "hash": { "type": "string" } } } } } }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_only_in_their_shape() {
        assert_eq!(parse_token("pki_0123456789abcdef.s3cret"), Some(("0123456789abcdef", "s3cret")));
        assert_eq!(parse_token("pki_0123456789abcdef."), None);
        assert_eq!(parse_token("pki_0123.s3cret"), None);
        assert_eq!(parse_token("0123456789abcdef.s3cret"), None);
        assert_eq!(parse_token("pki_0123456789abcdeg.s3cret"), None);
    }

    #[test]
    fn new_tokens_verify_and_parse() {
        let (shown, token) = new_token("ops", Role::Operator, 1).unwrap();
        let (id, secret) = parse_token(&shown).unwrap();
        assert_eq!(id, token.id);
        assert!(crate::credentials::verify(&token.secret_hash, secret.as_bytes()));
        assert_eq!(actor_of(&token), format!("token:{id}:ops"));
    }

    #[test]
    fn the_role_table() {
        use Operation::*;
        assert!(allowed(RevokeCertificate).contains(&Role::Operator));
        assert!(!allowed(RevokeCertificate).contains(&Role::Auditor));
        assert!(allowed(ReadAudit).contains(&Role::Auditor));
        assert!(!allowed(ReadAudit).contains(&Role::Operator));
        for op in [RevokeCertificate, RevokeDevice, ReadCertificate, ListDeviceCertificates, ReadAudit] {
            assert!(allowed(op).contains(&Role::Admin));
            assert!(!allowed(op).contains(&Role::ProvisioningStation));
        }
    }

    #[test]
    fn openapi_lists_every_path() {
        let doc = openapi_document();
        let paths = doc["paths"].as_object().unwrap();
        // Every route `routes` registers.
        let routed = [
            "/openapi.json",
            "/certificates/{issuer}/{serial}/revoke",
            "/certificates/{issuer}/{serial}",
            "/devices/{device_id}/revoke",
            "/batches/{batch}/revoke",
            "/models/{model}/revoke",
            "/devices/{device_id}/certificates",
            "/audit",
            "/update-requests",
            "/update-requests/{id}",
            "/update-requests/{id}/approve",
            "/update-requests/{id}/reject",
            "/update-requests/{id}/sign",
        ];
        for p in routed {
            assert!(paths.contains_key(p), "{p}");
        }
        assert_eq!(paths.len(), routed.len(), "documented paths that are not routed");
    }
}
