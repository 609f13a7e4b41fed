//! The update-signing queue: requests for code-signing certificates, approved or
//! rejected by update approvers. The two-person rule is [`crate::updates`]'s, the
//! same code the API calls: the console passes it the caller's name and audit actor
//! and shows what it decided.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use der::Decode;
use maud::{html, Markup};

use super::views::{self, certificate_href};
use super::{param, submit, visit, Reply, Visit};
use crate::admin::{escaped, Operation};
use crate::est::Refusal;
use crate::issuance::Pki;
use crate::store::{RequestStatus, UpdateRequest};

fn target(req: &HttpRequest) -> String {
    format!("update-request:{}", escaped(req.match_info().get("id").unwrap_or_default()))
}

fn status_of(r: &UpdateRequest, now: std::time::SystemTime) -> &'static str {
    if crate::updates::expired(r, now) {
        "expired"
    } else {
        r.status.as_str()
    }
}

/// `GET /console/updates?status=…` (default: pending).
pub(super) async fn queue(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    visit(&pki, &req, Operation::ReadUpdateRequests, "update-requests", None, async |v| {
        let status = if req.query_string().is_empty() {
            Some(RequestStatus::Pending)
        } else {
            crate::admin::status_filter(req.query_string())?
        };
        let requests = pki.store.list_update_requests(status).await.map_err(Refusal::from)?;
        let now = std::time::SystemTime::now();
        let required = pki.config.updates.approvals;
        let shown = status.map_or("all", RequestStatus::as_str);
        let body = html! {
            nav.filters {
                @for s in ["pending", "approved", "issued", "rejected"] {
                    a href={ "/console/updates?status=" (s) } class=@if shown == s { "current" } { (s) }
                }
                a href="/console/updates?status=" class=@if shown == "all" { "current" } { "all" }
            }
            @if requests.is_empty() {
                p.quiet #no-requests { "No " (shown) " requests." }
            } @else {
                table #requests {
                    thead { tr { th { "Request" } th { "Requester" } th { "Device classes" } th { "Validity" } th { "Approvals" } th { "Status" } th { "Expires" } } }
                    tbody {
                        @for r in &requests {
                            tr {
                                td.mono { a href={ "/console/updates/" (r.id) } { (r.id[..12.min(r.id.len())]) "…" } }
                                td { (r.requester) }
                                td { (r.classes.join(", ")) }
                                td { (r.validity_days) " days" }
                                td { (r.approvals.len()) " of " (required) }
                                td { (views::status_badge(status_of(r, now))) }
                                td { (views::time(r.expires_at)) }
                            }
                        }
                    }
                }
            }
        };
        Ok(Reply::Page(views::page(Some(v), "Update-signing requests", body)))
    })
    .await
}

/// The subject a release manager's CSR names.
fn csr_subject(der: &[u8]) -> String {
    x509_cert::request::CertReq::from_der(der)
        .map_or_else(|_| "(unreadable request)".into(), |r| r.info.subject.to_string())
}

async fn request_page(pki: &Pki, v: &Visit, r: &UpdateRequest, notice: Option<Markup>) -> Result<Markup, Refusal> {
    let now = std::time::SystemTime::now();
    let required = pki.config.updates.approvals;
    let status = status_of(r, now);
    let issued = match &r.issued {
        Some((issuer, serial)) => pki.store.get_certificate(issuer, serial).await.map_err(Refusal::from)?,
        None => None,
    };
    let open = r.status == RequestStatus::Pending && status != "expired";
    let approved_by_me = r.approvals.contains(&v.caller.name);
    let rows = vec![
        ("Status", html! { span #request-status { (views::status_badge(status)) } }),
        ("Requester", html! { (r.requester) }),
        ("Subject", html! { span.mono { (csr_subject(&r.csr_der)) } }),
        ("Device classes", html! { (r.classes.join(", ")) }),
        ("Validity", html! { (r.validity_days) " days" }),
        (
            "Approvals",
            html! { span #approvals { (r.approvals.len()) " of " (required) } @if !r.approvals.is_empty() { " — " (r.approvals.join(", ")) } },
        ),
        ("Submitted", html! { (views::time(r.created_at)) }),
        ("Open until", html! { (views::time(r.expires_at)) }),
    ];
    let mut rows = rows;
    if let Some(by) = &r.rejected_by {
        rows.push(("Rejected by", html! { (by) ": " (r.reason.as_deref().unwrap_or("")) }));
    }
    Ok(html! {
        @if let Some(n) = notice { (n) }
        (views::facts(rows))
        @if open && v.may(Operation::ApproveUpdateRequest) {
            @if approved_by_me {
                p.quiet #already-approved { "You approved this request; it needs another approver." }
            } @else {
                form.inline method="post" action={ "/console/updates/" (r.id) "/approve" } #approve-form {
                    (views::csrf(v))
                    button type="submit" #approve { "Approve" }
                }
            }
        }
        @if open && v.may(Operation::RejectUpdateRequest) {
            form.card method="post" action={ "/console/updates/" (r.id) "/reject" } #reject-form {
                (views::csrf(v))
                label for="reject-reason" { "Reason for rejecting" }
                input #reject-reason type="text" name="reason" required maxlength="1000";
                button.danger type="submit" #reject { "Reject" }
            }
        }
        @if let Some(c) = issued {
            h2 { "Issued certificate" }
            @let serial = hex::encode(&c.serial);
            (views::facts([
                ("Serial", html! { @if v.may(Operation::ReadCertificate) { a.mono href=(certificate_href(&c.issuer, &serial)) { (serial) } } @else { span.mono { (serial) } } }),
                ("Issued by", html! { (c.issuer) }),
                ("Valid", html! { (views::time(c.not_before)) " to " (views::time(c.not_after)) }),
            ]))
            pre.pem #issued-certificate { (pem::encode(&pem::Pem::new("CERTIFICATE", c.der.clone()))) }
        }
    })
}

async fn stored(pki: &Pki, id: &str) -> Result<UpdateRequest, Refusal> {
    pki.store
        .get_update_request(id)
        .await
        .map_err(Refusal::from)?
        .ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, format!("no update request '{id}'")))
}

/// `GET /console/updates/{id}`.
pub(super) async fn request(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let id = param(&req, "id");
    visit(&pki, &req, Operation::ReadUpdateRequests, &target(&req), None, async |v| {
        let r = stored(&pki, &id?).await?;
        Ok(Reply::Page(views::page(Some(v), "Update-signing request", request_page(&pki, v, &r, None).await?)))
    })
    .await
}

/// `POST /console/updates/{id}/approve`: the approval that completes the quorum signs.
pub(super) async fn approve(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let id = param(&req, "id");
    submit(&pki, &req, payload, Operation::ApproveUpdateRequest, &target(&req), async |v, _| {
        let id = id?;
        let (_, signed) = crate::updates::approve(&pki, &v.caller.name, &v.caller.actor, &id).await?;
        let notice = match signed {
            None => html! { p.card.done #notice { "Your approval is recorded. The request needs another approver." } },
            Some(Ok(_)) => {
                html! { p.card.done #notice { "Approved by the quorum: the update-signing certificate is issued." } }
            }
            Some(Err(r)) => {
                html! { p.problem #notice { "Your approval is recorded, but signing failed: " (r.reason) } }
            }
        };
        let r = stored(&pki, &id).await?;
        Ok(Reply::Page(views::page(Some(v), "Update-signing request", request_page(&pki, v, &r, Some(notice)).await?)))
    })
    .await
}

/// `POST /console/updates/{id}/reject` (`reason`).
pub(super) async fn reject(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let id = param(&req, "id");
    submit(&pki, &req, payload, Operation::RejectUpdateRequest, &target(&req), async |v, form| {
        let id = id?;
        crate::updates::reject(&pki, &v.caller.name, &v.caller.actor, &id, form.required("reason")?).await?;
        let r = stored(&pki, &id).await?;
        let notice = html! { p.card.done #notice { "Rejected." } };
        Ok(Reply::Page(views::page(Some(v), "Update-signing request", request_page(&pki, v, &r, Some(notice)).await?)))
    })
    .await
}
