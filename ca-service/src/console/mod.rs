//! The operator console: web pages on the HTTPS listener under `/console/`, for the
//! security officer who revokes, the approvers of update-signing certificates and the
//! fleet engineer who reads the reports — without curl.
//!
//! The pages are rendered on the server from templates compiled into the binary
//! (`views`, maud); there is no script and no asset from elsewhere. Every action goes
//! through the admin API's [`crate::admin::run`]: the same role table decides, the same
//! audit records, and the same workflow code acts (revocation, the two-person rule of
//! update signing, the reports' decoder). A page or button the caller's role may not
//! use is not shown ([`Visit::may`]), and the server refuses it anyway.
//!
//! Sign-in takes an API token (typed into a form) or the operator certificate the
//! browser presented in the TLS handshake, and starts a session (`session`): a cookie
//! that is `HttpOnly`, `Secure`, `SameSite=Strict`, ended by an idle timeout. Every
//! request checks the credential again (a revoked token or certificate ends its
//! sessions at once), and every form carries the session's CSRF token; a POST whose
//! `Origin` or `Sec-Fetch-Site` names another site is refused before it is read
//! further. Responses carry a strict Content-Security-Policy, `X-Frame-Options: DENY`
//! and `Cache-Control: no-store`.

mod fleet;
mod revoke;
pub mod session;
mod signin;
mod trail;
mod updates;
mod views;

use std::cell::{Cell, OnceCell};
use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use maud::Markup;

use crate::abuse::Gate;
use crate::admin::{Caller, Credential, Operation, Principal};
use crate::est::Refusal;
use crate::issuance::Pki;
pub use session::Sessions;
use session::{Session, COOKIE};

/// Largest form the console reads.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// Headers on every console response. The policy allows the console's own stylesheet
/// and nothing else: no script at all, no frames, forms only to the console.
pub const SECURITY_HEADERS: [(&str, &str); 7] = [
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    // Not `no-referrer`: with it a browser sends `Origin: null` on the console's own
    // forms, which `same_origin` must refuse. Other sites are never told a console URL.
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Strict-Transport-Security", "max-age=31536000"),
];

const STYLESHEET: &str = include_str!("console.css");

/// The console's routes (served only when `console.enabled`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    let mut headers = actix_web::middleware::DefaultHeaders::new();
    for h in SECURITY_HEADERS {
        headers = headers.add(h);
    }
    cfg.service(
        web::scope("/console")
            .wrap(headers)
            .route("", web::get().to(fleet::home))
            .route("/", web::get().to(fleet::home))
            .route("/console.css", web::get().to(stylesheet))
            .route("/sign-in", web::get().to(signin::form))
            .route("/sign-in", web::post().to(signin::sign_in))
            .route("/sign-out", web::post().to(signin::sign_out))
            .route("/search", web::get().to(fleet::search))
            .route("/devices/{device_id}", web::get().to(fleet::device))
            .route("/certificates/{issuer}/{serial}", web::get().to(fleet::certificate))
            .route("/revoke", web::get().to(revoke::confirm))
            .route("/revoke", web::post().to(revoke::revoke))
            .route("/updates", web::get().to(updates::queue))
            .route("/updates/{id}", web::get().to(updates::request))
            .route("/updates/{id}/approve", web::post().to(updates::approve))
            .route("/updates/{id}/reject", web::post().to(updates::reject))
            .route("/reports", web::get().to(trail::index))
            .route("/reports/{report}", web::get().to(trail::report))
            .route("/audit", web::get().to(trail::audit))
            .default_service(web::to(not_found)),
    );
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok().content_type("text/css; charset=utf-8").body(STYLESHEET)
}

async fn not_found() -> HttpResponse {
    html(StatusCode::NOT_FOUND, views::problem(None, 404, "There is no such console page."))
}

/// Who is looking at a page: the caller, authorized for the page's operation, and the
/// session's CSRF token for the forms it shows.
pub(crate) struct Visit {
    pub(crate) caller: Caller,
    pub(crate) csrf: String,
}

impl Visit {
    /// Whether the role table lets this caller perform `op` (for what a page shows;
    /// the server checks again when it is asked).
    pub(crate) fn may(&self, op: Operation) -> bool {
        crate::admin::allowed(op).contains(&self.caller.role)
    }
}

/// What a page handler answers.
pub(crate) enum Reply {
    Page(Markup),
    /// 303 See Other (after a POST, or to a canonical page).
    Redirect(String),
    /// A download.
    File {
        content_type: &'static str,
        name: String,
        body: Vec<u8>,
    },
}

fn html(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status).content_type("text/html; charset=utf-8").body(markup.into_string())
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

/// A POST's form: its fields as sent, and the CSRF token among them.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    /// The value of `name`, if sent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value of `name`, or a 400 naming it.
    pub(crate) fn required(&self, name: &str) -> Result<&str, Refusal> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| Refusal::bad_request(format!("the form has no {name}")))
    }
}

/// Reads a form body (urlencoded, at most [`MAX_FORM_BYTES`]).
async fn read_form(req: &HttpRequest, payload: web::Payload) -> Result<Form, Refusal> {
    let urlencoded = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !urlencoded {
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a console form is application/x-www-form-urlencoded",
        ));
    }
    let body = match payload.to_bytes_limited(MAX_FORM_BYTES).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return Err(Refusal::bad_request("the form could not be read")),
        Err(_) => {
            return Err(Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, format!("form larger than {MAX_FORM_BYTES} bytes")))
        }
    };
    let text = std::str::from_utf8(&body).map_err(|_| Refusal::bad_request("the form is not UTF-8"))?;
    crate::admin::urlencoded::<Vec<(String, String)>>(text).map(Form)
}

/// A form must come from a console page: a browser says where a POST comes from
/// (`Sec-Fetch-Site`, `Origin`), and one from another site is refused — the sign-in
/// form has no session to hold a CSRF token yet, and this is its protection.
fn same_origin(req: &HttpRequest) -> Result<(), Refusal> {
    let cross = || Refusal::forbidden("a console form must be sent from a console page (cross-site request refused)");
    if let Some(site) = req.headers().get("sec-fetch-site") {
        if !matches!(site.to_str(), Ok("same-origin" | "none")) {
            return Err(cross());
        }
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let ours = format!("https://{}", req.connection_info().host());
        if origin.to_str().ok() != Some(ours.as_str()) {
            return Err(cross());
        }
    }
    Ok(())
}

/// A path parameter, checked by the admin API's identifier rule.
fn param(req: &HttpRequest, name: &str) -> Result<String, Refusal> {
    let value = req.match_info().get(name).unwrap_or_default();
    crate::admin::check_identifier(name, value).map_err(Refusal::bad_request)?;
    Ok(value.to_string())
}

/// The session's credential must still stand: an API token not revoked and of the same
/// role; an operator certificate presented again on this connection, still valid and
/// not revoked (checked in the store, as the API does).
async fn still_valid(pki: &Pki, req: &HttpRequest, session: &Session) -> Result<bool, Refusal> {
    Ok(match &session.principal.credential {
        Credential::Token { id } => pki
            .store
            .get_api_token(id)
            .await
            .map_err(Refusal::from)?
            .is_some_and(|t| t.revoked_at.is_none() && t.role == session.principal.role),
        Credential::Certificate { .. } => {
            let mut actor = String::new();
            crate::admin::operator_certificate(pki, req, &mut actor)
                .await
                .is_ok_and(|p| p.credential == session.principal.credential && p.role == session.principal.role)
        }
    })
}

/// Runs a console page: the session (or a redirect to sign in), its credential checked
/// again, for a form the CSRF token and the origin, then [`crate::admin::run`] —
/// authorization by the role table, the action, the audit — and the reply as HTML.
pub(crate) async fn visit(
    pki: &Pki,
    req: &HttpRequest,
    op: Operation,
    target: &str,
    form: Option<&Form>,
    act: impl AsyncFnOnce(&Visit) -> Result<Reply, Refusal>,
) -> HttpResponse {
    let Some(sessions) = req.app_data::<web::Data<Sessions>>() else {
        return html(StatusCode::NOT_FOUND, views::problem(None, 404, "The console is not enabled."));
    };
    let cookie = req.cookie(COOKIE).map(|c| c.value().to_string());
    let signed_out = Cell::new(false);
    let found: OnceCell<Session> = OnceCell::new();
    let authenticate = async |_: &Gate, actor: &mut String| -> Result<Principal, Refusal> {
        let sign_in = || Refusal::new(StatusCode::UNAUTHORIZED, "no console session: sign in");
        let session = cookie.as_deref().and_then(|c| sessions.find(c, Instant::now()));
        let Some(session) = session else {
            signed_out.set(true);
            return Err(sign_in());
        };
        actor.clone_from(&session.actor);
        if !still_valid(pki, req, &session).await? {
            if let Some(c) = &cookie {
                sessions.end(c);
            }
            signed_out.set(true);
            return Err(Refusal::new(StatusCode::UNAUTHORIZED, "the session's credential is no longer valid"));
        }
        if let Some(form) = form {
            same_origin(req)?;
            if !form.get("csrf").is_some_and(|t| session::csrf_matches(&session, t)) {
                return Err(Refusal::forbidden("the form's CSRF token is missing or wrong; reload the page"));
            }
        }
        let principal = session.principal.clone();
        let _ = found.set(session);
        Ok(principal)
    };
    let result = crate::admin::run(pki, req, op, target, authenticate, async |caller| {
        let csrf = found.get().map(|s| s.csrf.clone()).unwrap_or_default();
        act(&Visit { caller, csrf }).await
    })
    .await;
    match result {
        Ok(Reply::Page(markup)) => html(StatusCode::OK, markup),
        Ok(Reply::Redirect(to)) => see_other(&to),
        Ok(Reply::File { content_type, name, body }) => HttpResponse::Ok()
            .content_type(content_type)
            .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
            .body(body),
        Err(_) if signed_out.get() => see_other("/console/sign-in"),
        Err(r) => {
            let visit = found.get().map(|s| Visit {
                caller: Caller { name: s.principal.name.clone(), actor: s.actor.clone(), role: s.principal.role },
                csrf: s.csrf.clone(),
            });
            let mut res = html(r.status, views::problem(visit.as_ref(), r.status.as_u16(), &r.reason));
            if let Some(secs) = r.retry_after {
                res.headers_mut().insert(header::RETRY_AFTER, secs.into());
            }
            res
        }
    }
}

/// [`visit`] for a POST: reads the form first (bounded), then runs the page.
pub(crate) async fn submit(
    pki: &Pki,
    req: &HttpRequest,
    payload: web::Payload,
    op: Operation,
    target: &str,
    act: impl AsyncFnOnce(&Visit, &Form) -> Result<Reply, Refusal>,
) -> HttpResponse {
    let form = match read_form(req, payload).await {
        Ok(f) => f,
        Err(r) => return html(r.status, views::problem(None, r.status.as_u16(), &r.reason)),
    };
    visit(pki, req, op, target, Some(&form), async |v| act(v, &form).await).await
}
