//! The admin API on the HTTPS listener, under `/api/v1`, JSON in and out.
//!
//! Clients authenticate with an operator client certificate (`ca-service operators
//! add`: CN = the person, OU = the role; checked live against the store, so a revoked
//! one stops working at once) or `Authorization: Bearer pki_<id>.<secret>` (tokens made
//! by `ca-service tokens create`, stored as an HMAC under the server's credential key,
//! `crate::credentials`). Unknown, wrong and revoked tokens get the same 401; an
//! address with too many failed attempts gets 429 (`crate::abuse`). What each role
//! may do is declared in one place, [`allowed`]. Every successful privileged action
//! and every refusal of an authenticated caller is audited with actor
//! `token:<id>:<name>`; unauthenticated callers' refusals are audited once per kind
//! and window, with a count (`crate::abuse::RefusalAudit`).
//!
//! One module per resource; this one holds the routes and the plumbing every endpoint
//! shares. Each endpoint names its [`Operation`] and its audit target and hands an
//! action to `handle`, the one place that authenticates, authorizes (by the role
//! table), audits and turns refusals into JSON errors — so handlers only decode, call
//! and map the result. Path parameters are read with one parser (`params`), which
//! refuses control characters and oversized values with a 400 before any store sees
//! them, and gives the escaped form for audit targets.

mod audit;
mod auth;
mod bodies;
mod certificates;
mod devices;
mod openapi;
mod params;
mod reports;
mod rotations;
mod updates;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::abuse::Gate;
use crate::audit::AuditEvent;
use crate::est::Refusal;
use crate::issuance::Pki;
use crate::revoke;

pub use auth::{actor_of, allowed, new_token, parse_token, Credential, Operation, Principal, TOKEN_PREFIX};
pub(crate) use auth::{api_token, operator_certificate};
pub(crate) use bodies::{query as urlencoded, report_query, status_filter};
pub use certificates::certificate_json;
pub use openapi::openapi_document;
pub(crate) use params::check_identifier;
pub(crate) use params::escaped;
pub use params::MAX_IDENTIFIER_BYTES;

/// Largest JSON body the admin API accepts.
pub const MAX_JSON_BYTES: usize = 16 * 1024;
/// Most audit entries one `GET /api/v1/audit` returns.
pub const MAX_AUDIT_PAGE: i64 = 1000;

/// What the fuzz targets (`ca-service/fuzz`) drive: the pure decoders of the admin
/// API's bodies, query strings and path parameters, with refusals as (status, reason).
/// Not an API; nothing else may use it.
#[doc(hidden)]
pub mod fuzzing {
    use super::{bodies, params};
    use crate::est::Refusal;
    use crate::store::RequestStatus;
    use crate::updates::NewUpdateRequest;
    use revocation::Reason;

    /// A refusal as its HTTP status and reason.
    pub type Refused = (u16, String);

    fn refused(r: Refusal) -> Refused {
        (r.status.as_u16(), r.reason)
    }

    pub fn revoke_reason(body: &[u8]) -> Result<Reason, Refused> {
        bodies::revoke_reason(body).map_err(refused)
    }
    pub fn update_request(body: &[u8]) -> Result<NewUpdateRequest, Refused> {
        bodies::update_request(body).map_err(refused)
    }
    pub fn reject_reason(body: &[u8]) -> Result<String, Refused> {
        bodies::reject_reason(body).map_err(refused)
    }
    pub fn audit_page(query: &str) -> Result<(i64, i64), Refused> {
        bodies::audit_page(query).map_err(refused)
    }
    pub fn status_filter(query: &str) -> Result<Option<RequestStatus>, Refused> {
        bodies::status_filter(query).map_err(refused)
    }
    pub fn report_query(report: &str, query: &str) -> Result<crate::reports::ReportQuery, Refused> {
        let report = crate::reports::Report::parse(report).map_err(|e| (404, e))?;
        bodies::report_query(report, query).map_err(refused)
    }
    pub fn check_identifier(value: &str) -> Result<(), String> {
        params::check_identifier("identifier", value)
    }
    pub fn escaped(value: &str) -> String {
        params::escaped(value)
    }
}

/// Admin API routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .route("/openapi.json", web::get().to(openapi::openapi))
            .route("/certificates/{issuer}/{serial}/revoke", web::post().to(certificates::revoke_certificate))
            .route("/certificates/{issuer}/{serial}", web::get().to(certificates::get_certificate))
            .route("/devices/{device_id}/revoke", web::post().to(devices::revoke_device))
            .route("/batches/{batch}/revoke", web::post().to(devices::revoke_batch))
            .route("/models/{model}/revoke", web::post().to(devices::revoke_model))
            .route("/devices/{device_id}/certificates", web::get().to(devices::device_certificates))
            .route("/audit", web::get().to(audit::audit_log))
            .route("/reports/{report}", web::get().to(reports::report))
            .route("/rotations", web::post().to(rotations::create))
            .route("/rotations", web::get().to(rotations::list))
            .route("/rotations/{id}", web::get().to(rotations::show))
            .route("/update-requests", web::post().to(updates::submit_update_request))
            .route("/update-requests", web::get().to(updates::list_update_requests))
            .route("/update-requests/{id}", web::get().to(updates::get_update_request))
            .route("/update-requests/{id}/approve", web::post().to(updates::approve_update_request))
            .route("/update-requests/{id}/reject", web::post().to(updates::reject_update_request))
            .route("/update-requests/{id}/sign", web::post().to(updates::sign_update_request)),
    );
}

/// The caller an action runs for, authenticated and authorized.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// What the two-person rule compares: the token's or the certificate's name.
    pub(crate) name: String,
    /// The audit actor: `token:<id>:<name>` or `operator:<name>:<fingerprint>`.
    pub(crate) actor: String,
    pub(crate) role: crate::store::Role,
}

/// Runs an endpoint of the API: [`run`] with the API's credentials (an operator
/// certificate or a bearer token), refusals answered as JSON `{"error": …}` with their
/// status (401s with `WWW-Authenticate: Bearer`, 429s with `Retry-After`).
pub(crate) async fn handle(
    pki: &Pki,
    req: &HttpRequest,
    op: Operation,
    target: &str,
    act: impl AsyncFnOnce(Caller) -> Result<HttpResponse, Refusal>,
) -> HttpResponse {
    let authenticate = async |gate: &Gate, actor: &mut String| auth::authenticate(pki, gate, req, actor).await;
    match run(pki, req, op, target, authenticate, act).await {
        Ok(res) => res,
        Err(r) => {
            let mut res = HttpResponse::build(r.status);
            if r.status == StatusCode::UNAUTHORIZED {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            if let Some(secs) = r.retry_after {
                res.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            res.json(serde_json::json!({ "error": r.reason }))
        }
    }
}

/// Authorize → act → audit, once for every privileged action, the API's and the
/// console's alike (each brings its own way to `authenticate`).
///
/// Authenticates the caller and checks the role table allows `op`; only then runs
/// `act`. A read's success is audited here (`op`'s action on `target`); a change is
/// audited by `act` itself, in the transaction that makes it. Every refusal — of the
/// credential, the role or the action — is audited against `target` with whoever the
/// caller turned out to be, and returned for the caller to render.
pub(crate) async fn run<T>(
    pki: &Pki,
    req: &HttpRequest,
    op: Operation,
    target: &str,
    authenticate: impl AsyncFnOnce(&Gate, &mut String) -> Result<Principal, Refusal>,
    act: impl AsyncFnOnce(Caller) -> Result<T, Refusal>,
) -> Result<T, Refusal> {
    let Some(gate) = req.app_data::<web::Data<Gate>>() else {
        tracing::error!("a privileged endpoint is served without its gate (credential key, failure limits)");
        return Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "not ready"));
    };
    let mut actor = String::from("anonymous");
    let result = match authenticate(gate, &mut actor).await {
        Ok(principal) => match auth::permit(principal.role, op) {
            Ok(()) => act(Caller { name: principal.name, actor: actor.clone(), role: principal.role }).await,
            Err(r) => Err(r),
        },
        Err(r) => Err(r),
    };
    let result = match result {
        Ok(res) if op.is_read() => {
            let event = AuditEvent::success(actor.as_str(), op.action(), target);
            pki.store.append_audit(&[event]).await.map_err(Refusal::from).map(|()| res)
        }
        other => other,
    };
    if let Err(r) = &result {
        crate::est::audit_refusal_from(&gate.refusals, req, op.action(), &actor, target, None, r).await;
    }
    result
}

/// Reads a request body of at most [`MAX_JSON_BYTES`], for one of the decoders in
/// [`bodies`].
async fn read_body(payload: web::Payload) -> Result<web::Bytes, Refusal> {
    match payload.to_bytes_limited(MAX_JSON_BYTES).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(Refusal::bad_request("the request body could not be read")),
        Err(_) => {
            Err(Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {MAX_JSON_BYTES} bytes")))
        }
    }
}

fn not_found(what: String) -> Refusal {
    Refusal::new(StatusCode::NOT_FOUND, what)
}

/// The revoke endpoints (a certificate; a device, a batch or a model): the reason from
/// the body, `what` to revoke, then [`revoke::revoke`] publishing with this instance's
/// OCSP cache and CRL publisher, so the revocation is visible to OCSP clients the
/// moment the caller learns of it.
async fn revoke_endpoint(
    pki: &Pki,
    req: &HttpRequest,
    payload: web::Payload,
    op: Operation,
    target: &str,
    what: impl FnOnce() -> Result<revoke::Target, Refusal>,
) -> HttpResponse {
    handle(pki, req, op, target, async |caller| {
        let reason = bodies::revoke_reason(&read_body(payload).await?)?;
        let order = revoke::Order { target: what()?, reason, actor: &caller.actor, via: revoke::Via::Api };
        let publish = revoke::Publish::Here {
            pki,
            ocsp: req.app_data::<web::Data<crate::ocsp::OcspService>>().map(|d| d.get_ref()),
            crls: req.app_data::<web::Data<crate::crl::CrlPublisher>>().map(|d| d.get_ref()),
        };
        let revoked = revoke::revoke(pki.store.as_ref(), order, publish).await.map_err(Refusal::from)?;
        Ok(HttpResponse::Ok().json(devices::revoked_json(&revoked)))
    })
    .await
}
