//! Signing in and out. Sign-in exchanges an API token, or the operator certificate of
//! the TLS connection, for a session (`super::session`); both are checked by the admin
//! API's own code, failures count against the address's limit as the API's do, and
//! every sign-in, refusal and sign-out is audited.

use std::time::Instant;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::html;

use super::session::{csrf_matches, COOKIE};
use super::{html, read_form, same_origin, see_other, views, Form, Sessions};
use crate::abuse::Gate;
use crate::admin::{allowed, Operation, Principal};
use crate::audit::AuditEvent;
use crate::est::Refusal;
use crate::issuance::Pki;

const SIGN_IN: &str = "console.sign-in";
const SIGN_OUT: &str = "console.sign-out";

/// Operations the console offers; a role allowed none of them has nothing to sign in to.
const CONSOLE_OPERATIONS: [Operation; 4] =
    [Operation::ReadCertificate, Operation::ReadUpdateRequests, Operation::ReadReports, Operation::ReadAudit];

fn session_cookie(value: &str) -> Cookie<'static> {
    Cookie::build(COOKIE, value.to_string()).path("/").secure(true).http_only(true).same_site(SameSite::Strict).finish()
}

fn sign_in_page(req: &HttpRequest, error: Option<&str>) -> maud::Markup {
    let certificate = req.conn_data::<crate::est::PeerCertificate>().is_some();
    views::page(
        None,
        "Sign in",
        html! {
            @if let Some(e) = error { p.problem #problem { (e) } }
            form.card method="post" action="/console/sign-in" #token-sign-in {
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required placeholder="pki_…";
                button type="submit" { "Sign in" }
                p.quiet { "Tokens come from " code { "ca-service tokens create" } ". The token is exchanged for a session that ends after a while unused." }
            }
            @if certificate {
                form.card method="post" action="/console/sign-in" #certificate-sign-in {
                    input type="hidden" name="method" value="certificate";
                    p { "Your browser presented a client certificate." }
                    button type="submit" { "Sign in with the operator certificate" }
                }
            }
        },
    )
}

/// `GET /console/sign-in`.
pub(super) async fn form(req: HttpRequest, sessions: Option<web::Data<Sessions>>) -> HttpResponse {
    let Some(sessions) = sessions else { return super::not_found().await };
    if req.cookie(COOKIE).is_some_and(|c| sessions.find(c.value(), Instant::now()).is_some()) {
        return see_other("/console/");
    }
    html(StatusCode::OK, sign_in_page(&req, None))
}

async fn authenticate(
    pki: &Pki,
    gate: &Gate,
    req: &HttpRequest,
    form: &Form,
    actor: &mut String,
) -> Result<Principal, Refusal> {
    same_origin(req)?;
    let principal = if form.get("method") == Some("certificate") {
        crate::admin::operator_certificate(pki, req, actor).await?
    } else {
        let token = form.get("token").map(str::trim).filter(|t| !t.is_empty());
        crate::admin::api_token(pki, gate, req, Ok(token), actor).await?
    };
    if !CONSOLE_OPERATIONS.iter().any(|op| allowed(*op).contains(&principal.role)) {
        return Err(Refusal::forbidden(format!("role {} has nothing to do in the console", principal.role)));
    }
    Ok(principal)
}

/// `POST /console/sign-in` (`token=…`, or `method=certificate`).
pub(super) async fn sign_in(
    pki: web::Data<Pki>,
    req: HttpRequest,
    payload: web::Payload,
    sessions: Option<web::Data<Sessions>>,
    gate: Option<web::Data<Gate>>,
) -> HttpResponse {
    let (Some(sessions), Some(gate)) = (sessions, gate) else { return super::not_found().await };
    let mut actor = String::from("anonymous");
    let signed_in = match read_form(&req, payload).await {
        Ok(form) => authenticate(&pki, &gate, &req, &form, &mut actor).await,
        Err(r) => Err(r),
    };
    let audited = match signed_in {
        Ok(principal) => {
            let event = AuditEvent::success(actor.as_str(), SIGN_IN, "console");
            pki.store.append_audit(&[event]).await.map_err(Refusal::from).map(|()| principal)
        }
        Err(r) => Err(r),
    };
    match audited {
        Ok(principal) => {
            let cookie = sessions.start(principal, actor, Instant::now());
            HttpResponse::SeeOther()
                .insert_header((actix_web::http::header::LOCATION, "/console/"))
                .cookie(session_cookie(&cookie))
                .finish()
        }
        Err(r) => {
            crate::est::audit_refusal_from(&gate.refusals, &req, SIGN_IN, &actor, "console", None, &r).await;
            let mut res = html(r.status, sign_in_page(&req, Some(&r.reason)));
            if let Some(secs) = r.retry_after {
                res.headers_mut().insert(actix_web::http::header::RETRY_AFTER, secs.into());
            }
            res
        }
    }
}

/// `POST /console/sign-out` (with the session's CSRF token): ends the session.
pub(super) async fn sign_out(
    pki: web::Data<Pki>,
    req: HttpRequest,
    payload: web::Payload,
    sessions: Option<web::Data<Sessions>>,
) -> HttpResponse {
    let Some(sessions) = sessions else { return super::not_found().await };
    let Some(cookie) = req.cookie(COOKIE) else { return see_other("/console/sign-in") };
    let Some(session) = sessions.find(cookie.value(), Instant::now()) else { return see_other("/console/sign-in") };
    let form = match read_form(&req, payload).await {
        Ok(f) => f,
        Err(r) => return html(r.status, views::problem(None, r.status.as_u16(), &r.reason)),
    };
    if same_origin(&req).is_err() || !form.get("csrf").is_some_and(|t| csrf_matches(&session, t)) {
        let reason = "the form's CSRF token is missing or wrong; reload the page";
        return html(StatusCode::FORBIDDEN, views::problem(None, 403, reason));
    }
    sessions.end(cookie.value());
    let event = AuditEvent::success(session.actor.as_str(), SIGN_OUT, "console");
    if let Err(e) = pki.store.append_audit(&[event]).await {
        tracing::warn!(error = %e, "auditing a console sign-out failed");
    }
    let mut gone = session_cookie("");
    gone.make_removal();
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, "/console/sign-in"))
        .cookie(gone)
        .finish()
}
