//! Revoking from the console: a certificate, a device, a batch or a model. A GET shows
//! what would be revoked — how many certificates of how many devices, counted by the
//! store with the very predicates the revocation uses — and asks for the reason; the
//! POST revokes through [`crate::revoke::revoke`] (the API's code: one transaction
//! with its audit entry, OCSP re-signed before the answer, the changed CRLs re-signed
//! at once) and says when OCSP and the CRLs carry it.

use std::collections::BTreeSet;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use super::views::{self, certificate_href, urlencode};
use super::{visit, Form, Reply, Visit};
use crate::admin::{escaped, Operation};
use crate::est::Refusal;
use crate::issuance::Pki;
use crate::revoke::{Order, Publish, Revoked, Target, Via};
use crate::store::{CertStatus, DeviceSelector, RevokedCert};

/// How long the result page waits for the re-signed CRLs before it says they are
/// still being signed.
const CRL_WAIT: Duration = Duration::from_secs(5);

/// What a revoke page is about: `what` (certificate, device, batch, model), `id`, and
/// for a certificate its `issuer`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Subject {
    what: String,
    id: String,
    issuer: Option<String>,
}

impl Subject {
    fn from_form(form: &Form) -> Result<Subject, Refusal> {
        Ok(Subject {
            what: form.required("what")?.to_string(),
            id: form.required("id")?.to_string(),
            issuer: form.get("issuer").map(str::to_string),
        })
    }

    fn op(&self) -> Operation {
        if self.what == "certificate" {
            Operation::RevokeCertificate
        } else {
            Operation::RevokeDevice
        }
    }

    fn target(&self) -> Result<Target, Refusal> {
        crate::admin::check_identifier(&self.what, &self.id).map_err(Refusal::bad_request)?;
        Ok(match self.what.as_str() {
            "certificate" => {
                let issuer =
                    self.issuer.clone().ok_or_else(|| Refusal::bad_request("a certificate needs its issuer"))?;
                crate::admin::check_identifier("issuer", &issuer).map_err(Refusal::bad_request)?;
                let serial = crate::crl::parse_serial(&self.id)
                    .map_err(|_| Refusal::bad_request("the serial is not hex of 1 to 20 octets"))?;
                Target::Certificate { issuer, serial }
            }
            "device" => Target::Devices(DeviceSelector::Device(self.id.clone())),
            "batch" => Target::Devices(DeviceSelector::Batch(self.id.clone())),
            "model" => Target::Devices(DeviceSelector::Model(self.id.clone())),
            other => {
                return Err(Refusal::bad_request(format!(
                    "cannot revoke a '{}' (certificate, device, batch, model)",
                    escaped(other)
                )))
            }
        })
    }

    /// The audit target, in the API's form (escaped: it is recorded even when refused).
    fn audit_target(&self) -> String {
        match self.what.as_str() {
            "certificate" => {
                format!("certificate:{}/{}", escaped(self.issuer.as_deref().unwrap_or("")), escaped(&self.id))
            }
            what => format!("{}:{}", escaped(what), escaped(&self.id)),
        }
    }

    fn described(&self) -> Markup {
        match self.what.as_str() {
            "certificate" => {
                html! { "certificate " span.mono { (self.id) } " of " (self.issuer.as_deref().unwrap_or("")) }
            }
            what => html! { (what) " " strong { (self.id) } },
        }
    }
}

/// (devices, certificates) revoking `target` would revoke now.
async fn preview(pki: &Pki, target: &Target) -> Result<(u64, u64), Refusal> {
    match target {
        Target::Certificate { issuer, serial } => {
            let c = pki.store.get_certificate(issuer, serial).await.map_err(Refusal::from)?;
            match c {
                None => Err(Refusal::new(StatusCode::NOT_FOUND, "no such certificate was issued here")),
                Some(c) if c.status == CertStatus::Revoked => {
                    Err(Refusal::new(StatusCode::CONFLICT, "the certificate is already revoked"))
                }
                Some(_) => Ok((0, 1)),
            }
        }
        Target::Devices(which) => {
            let p = pki.store.revocation_preview(which).await.map_err(Refusal::from)?;
            if p.devices == 0 {
                return Err(Refusal::new(StatusCode::NOT_FOUND, format!("no device matches {which}")));
            }
            Ok((p.devices, p.certificates))
        }
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `GET /console/revoke?what=…&id=…[&issuer=…]`: what it would revoke, and the form.
pub(super) async fn confirm(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let subject = crate::admin::urlencoded::<Subject>(req.query_string());
    let (op, audit_target) = match &subject {
        Ok(s) => (s.op(), s.audit_target()),
        Err(_) => (Operation::RevokeCertificate, "revoke".to_string()),
    };
    visit(&pki, &req, op, &audit_target, None, async |v: &Visit| {
        let subject = subject?;
        let target = subject.target()?;
        let (devices, certificates) = preview(&pki, &target).await?;
        let count = plural(certificates, "certificate", "certificates");
        let body = html! {
            div.card.warning {
                p #revoke-summary {
                    "This will revoke " strong #revoke-count { (count) }
                    @if devices > 0 { " of " (plural(devices, "device", "devices")) } " (" (subject.described()) ")."
                }
                @if devices > 0 { p { "The devices can no longer enroll or renew. This cannot be undone." } }
                @else { p { "This cannot be undone." } }
                form method="post" action="/console/revoke" #revoke-form {
                    (views::csrf(v))
                    input type="hidden" name="what" value=(subject.what);
                    input type="hidden" name="id" value=(subject.id);
                    @if let Some(i) = &subject.issuer { input type="hidden" name="issuer" value=(i); }
                    input type="hidden" name="expected" value=(certificates);
                    label for="reason" { "Reason (RFC 5280)" }
                    select #reason name="reason" required {
                        option value="" selected { "choose a reason" }
                        @for name in crate::revoke::reason_names() { option value=(name) { (name) } }
                    }
                    button.danger type="submit" #confirm-revoke { "Revoke " (count) }
                    a href="/console/" { "Cancel" }
                }
            }
        };
        Ok(Reply::Page(views::page(Some(v), "Revoke", body)))
    })
    .await
}

/// Waits (at most [`CRL_WAIT`]) until a published CRL lists each revoked certificate
/// of every changed CRL; returns, per changed CRL, the listing or `None`.
async fn crl_listings(pki: &Pki, revoked: &[RevokedCert]) -> Vec<(String, Option<(String, crate::store::CrlHead)>)> {
    // One certificate stands for each CRL it changed (issuer, shard).
    let mut seen = BTreeSet::new();
    let firsts: Vec<&RevokedCert> = revoked.iter().filter(|c| seen.insert((c.issuer.clone(), c.crl_shard))).collect();
    let deadline = tokio::time::Instant::now() + CRL_WAIT;
    loop {
        let mut out = Vec::new();
        for c in &firsts {
            let listing = crate::crl::listing(pki, c).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading the published CRL");
                None
            });
            out.push((c.issuer.clone(), listing));
        }
        if out.iter().all(|(_, l)| l.is_some()) || tokio::time::Instant::now() >= deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn result_page(
    pki: &Pki,
    subject: &Subject,
    revoked: &Revoked,
    expected: Option<u64>,
    crls: &[(String, Option<(String, crate::store::CrlHead)>)],
) -> Markup {
    let certs = revoked.certificates();
    let n = certs.len() as u64;
    let now = crate::issuance::unix(std::time::SystemTime::now());
    html! {
        div.card.done {
            p #revoke-result { "Revoked " strong { (plural(n, "certificate", "certificates")) } " (" (subject.described()) ")"
                @if let Revoked::Devices { devices, .. } = revoked { " and " (plural(*devices, "device", "devices")) }
                "." }
            @if let Some(e) = expected.filter(|e| *e != n) {
                p.problem { "The confirmation counted " (e) "; the count changed in the meantime (enrollments or revocations since)." }
            }
            @if n > 0 {
                p #ocsp-result { "OCSP: answers " strong { "revoked" } " now — this instance re-signed the responses before this page was sent; other instances within "
                    (crate::ocsp::WATCH_INTERVAL.as_millis()) " ms." }
                ul #crl-result {
                    @for (issuer, listing) in crls {
                        li { @match listing {
                            Some((url, head)) => { "CRL of " (issuer) ": listed in CRL number " (head.number) ", published " (views::time(head.this_update)) " — " span.mono { (url) } }
                            None => { "CRL of " (issuer) ": still being signed; listed within crl.regenerate_secs (" (pki.config.crl.regenerate_secs) " s) at the latest" }
                        } }
                    }
                }
            }
        }
        @if !certs.is_empty() { (views::revoked_table(&certs, now)) }
        @if let [only] = &certs[..] { p { a href=(certificate_href(&only.issuer, &hex::encode(&only.serial))) { "The certificate's page" } } }
        @if subject.what == "device" { p { a href={ "/console/devices/" (urlencode(&subject.id)) } { "The device's page" } } }
    }
}

/// `POST /console/revoke` (`what`, `id`, `issuer`, `reason`, `expected`, `csrf`).
pub(super) async fn revoke(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    // The operation and target come from the form, so it is read before the session is
    // checked; `submit` bounds it.
    let form = match super::read_form(&req, payload).await {
        Ok(f) => f,
        Err(r) => return super::html(r.status, views::problem(None, r.status.as_u16(), &r.reason)),
    };
    let subject = Subject::from_form(&form);
    let (op, audit_target) = match &subject {
        Ok(s) => (s.op(), s.audit_target()),
        Err(_) => (Operation::RevokeCertificate, "revoke".to_string()),
    };
    visit(&pki, &req, op, &audit_target, Some(&form), async |v| {
        let subject = subject?;
        let target = subject.target()?;
        let reason =
            crate::revoke::parse_reason(form.required("reason")?).map_err(|e| Refusal::bad_request(escaped(&e)))?;
        let expected = form.get("expected").and_then(|e| e.parse::<u64>().ok());
        let order = Order { target, reason, actor: &v.caller.actor, via: Via::Console };
        let publish = Publish::Here {
            pki: &pki,
            ocsp: req.app_data::<web::Data<crate::ocsp::OcspService>>().map(|d| d.get_ref()),
            crls: req.app_data::<web::Data<crate::crl::CrlPublisher>>().map(|d| d.get_ref()),
        };
        let revoked = crate::revoke::revoke(pki.store.as_ref(), order, publish).await.map_err(Refusal::from)?;
        let crls = crl_listings(&pki, &revoked.certificates()).await;
        Ok(Reply::Page(views::page(Some(v), "Revoked", result_page(&pki, &subject, &revoked, expected, &crls))))
    })
    .await
}
