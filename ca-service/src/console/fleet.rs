//! Finding devices and certificates, and reading them in words: a device with its
//! certificates, a certificate's subject, names, validity, status and whether OCSP and
//! the CRLs carry its revocation — with the audit entries about each, for a role that
//! may read the audit trail.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use der::{Decode, Encode};
use maud::{html, Markup};
use serde::Deserialize;
use x509_cert::ext::pkix::name::GeneralName;

use super::views::{self, certificate_href, facts, urlencode};
use super::{param, see_other, visit, Reply, Sessions, Visit};
use crate::admin::{escaped, Operation};
use crate::est::Refusal;
use crate::issuance::{unix, Pki};
use crate::store::{AuditQuery, CertRecord, CertStatus, DeviceQuery, DeviceRecord, DeviceState};

/// Devices on one page of search results.
const PAGE: i64 = 50;
/// Audit entries shown on a device's or certificate's page (newest first).
const AUDIT_ROWS: i64 = 50;

fn now() -> i64 {
    unix(std::time::SystemTime::now())
}

/// `GET /console/`: the first page this role may use (or the sign-in page).
pub(super) async fn home(req: HttpRequest, sessions: Option<web::Data<Sessions>>) -> HttpResponse {
    let Some(sessions) = sessions else { return super::not_found().await };
    let session = req.cookie(super::COOKIE).and_then(|c| sessions.find(c.value(), Instant::now()));
    let Some(session) = session else { return see_other("/console/sign-in") };
    let may = |op| crate::admin::allowed(op).contains(&session.principal.role);
    let first = [
        ("/console/search", Operation::ReadCertificate),
        ("/console/updates", Operation::ReadUpdateRequests),
        ("/console/reports", Operation::ReadReports),
        ("/console/audit", Operation::ReadAudit),
    ]
    .into_iter()
    .find(|(_, op)| may(*op));
    see_other(first.map_or("/console/sign-in", |(href, _)| href))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    kind: Option<String>,
    q: Option<String>,
    state: Option<String>,
    after: Option<String>,
}

const KINDS: [(&str, &str); 4] =
    [("device", "Device id"), ("serial", "Certificate serial"), ("batch", "Batch"), ("model", "Model")];
const STATES: [&str; 4] = ["expected", "active", "revoked", "decommissioned"];

fn search_form(q: &SearchQuery) -> Markup {
    let kind = q.kind.as_deref().unwrap_or("device");
    html! {
        form.search method="get" action="/console/search" #search {
            select name="kind" #kind {
                @for (value, label) in KINDS {
                    option value=(value) selected[kind == value] { (label) }
                }
            }
            input #q type="search" name="q" value=(q.q.as_deref().unwrap_or("")) placeholder="device id, serial (hex), batch or model" autofocus;
            select name="state" #state {
                option value="" { "any state" }
                @for s in STATES { option value=(s) selected[q.state.as_deref() == Some(s)] { (s) } }
            }
            button type="submit" { "Search" }
        }
    }
}

fn device_table(devices: &[DeviceRecord]) -> Markup {
    html! {
        table #devices {
            thead { tr { th { "Device" } th { "Model" } th { "Batch" } th { "State" } } }
            tbody {
                @for d in devices {
                    tr {
                        td.mono { a href={ "/console/devices/" (urlencode(&d.device_id)) } { (d.device_id) } }
                        td { (d.model) } td { (d.batch) } td { (views::status_badge(d.state.as_str())) }
                    }
                }
            }
        }
    }
}

/// `GET /console/search?kind=device|serial|batch|model&q=…&state=…&after=…`.
pub(super) async fn search(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let decoded = crate::admin::urlencoded::<SearchQuery>(req.query_string());
    let target = match &decoded {
        Ok(q) => format!("search:{}={}", q.kind.as_deref().unwrap_or("device"), escaped(q.q.as_deref().unwrap_or(""))),
        Err(_) => "search".to_string(),
    };
    visit(&pki, &req, Operation::ReadCertificate, &target, None, async |v| {
        let q = decoded?;
        let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(DeviceState::parse(s).map_err(|_| Refusal::bad_request(format!("unknown state '{}'", escaped(s))))?),
        };
        let text = q.q.as_deref().map(str::trim).unwrap_or("");
        let kind = q.kind.as_deref().unwrap_or("device");
        if !text.is_empty() {
            crate::admin::check_identifier("search", text).map_err(Refusal::bad_request)?;
        }
        let results = match kind {
            _ if text.is_empty() && state.is_none() => html! { p.quiet { "Search by device id, certificate serial, batch or model; or list the devices in a state." } },
            "device" if !text.is_empty() => {
                if pki.store.get_device(text).await.map_err(Refusal::from)?.is_some() {
                    return Ok(Reply::Redirect(format!("/console/devices/{}", urlencode(text))));
                }
                html! { p #no-results { "No device '" (text) "' is registered." } }
            }
            "serial" => {
                let serial = crate::crl::parse_serial(text).map_err(|_| Refusal::bad_request(format!("'{}' is not a serial (hex, 1 to 20 octets)", escaped(text))))?;
                let mut found = Vec::new();
                for ca in pki.cas() {
                    if let Some(c) = pki.store.get_certificate(&ca.record.name, &serial).await.map_err(Refusal::from)? {
                        found.push(c);
                    }
                }
                if let [only] = found.as_slice() {
                    return Ok(Reply::Redirect(certificate_href(&only.issuer, &hex::encode(&only.serial))));
                }
                if found.is_empty() {
                    html! { p #no-results { "No certificate with serial " (hex::encode(&serial)) " was issued here." } }
                } else {
                    views::certificate_table(&found, now())
                }
            }
            "device" | "batch" | "model" => {
                let mut query = DeviceQuery { state, ..DeviceQuery::default() };
                match kind {
                    "batch" if !text.is_empty() => query.batch = Some(text.to_string()),
                    "model" if !text.is_empty() => query.model = Some(text.to_string()),
                    _ => {}
                }
                let after = q.after.as_deref().unwrap_or("");
                let devices = pki.store.find_devices(&query, after, PAGE).await.map_err(Refusal::from)?;
                let revoke_what = match kind { "batch" | "model" if !text.is_empty() => Some(kind), _ => None };
                html! {
                    @if devices.is_empty() { p #no-results { "No devices match." } }
                    @else { (device_table(&devices)) }
                    @if let Some(what) = revoke_what {
                        @if v.may(Operation::RevokeDevice) {
                            p { a.button.danger #revoke-selection href={ "/console/revoke?what=" (what) "&id=" (urlencode(text)) } { "Revoke every device of " (what) " " (text) "…" } }
                        }
                    }
                    @if devices.len() as i64 == PAGE {
                        @if let Some(last) = devices.last() {
                            p { a #next-page href={ "/console/search?kind=" (kind) "&q=" (urlencode(text)) "&state=" (q.state.as_deref().unwrap_or("")) "&after=" (urlencode(&last.device_id)) } { "Next page →" } }
                        }
                    }
                }
            }
            other => return Err(Refusal::bad_request(format!("unknown search kind '{}' (device, serial, batch, model)", escaped(other)))),
        };
        Ok(Reply::Page(views::page(Some(v), "Search", html! { (search_form(&q)) (results) })))
    })
    .await
}

/// The newest audit entries about `target`, if this role may read the audit trail.
async fn audit_about(pki: &Pki, v: &Visit, target: String) -> Result<Option<Vec<crate::audit::AuditEntry>>, Refusal> {
    if !v.may(Operation::ReadAudit) {
        return Ok(None);
    }
    let query = AuditQuery { target: Some(target), ..AuditQuery::default() };
    pki.store.find_audit(&query, None, AUDIT_ROWS).await.map(Some).map_err(Refusal::from)
}

fn audit_section(entries: Option<Vec<crate::audit::AuditEntry>>) -> Markup {
    html! {
        @if let Some(entries) = entries {
            h2 { "Audit entries" }
            (views::audit_table(&entries))
        }
    }
}

/// `GET /console/devices/{device_id}`.
pub(super) async fn device(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let id = param(&req, "device_id");
    let target = format!("device:{}", escaped(req.match_info().get("device_id").unwrap_or_default()));
    visit(&pki, &req, Operation::ListDeviceCertificates, &target, None, async |v| {
        let id = id?;
        let device = pki
            .store
            .get_device(&id)
            .await
            .map_err(Refusal::from)?
            .ok_or_else(|| Refusal::new(actix_web::http::StatusCode::NOT_FOUND, format!("device '{id}' is not registered")))?;
        let certs = pki.store.certificates_for_device(&id).await.map_err(Refusal::from)?;
        let audit = audit_about(&pki, v, format!("device:{id}")).await?;
        let may_revoke = v.may(Operation::RevokeDevice);
        let body = html! {
            (facts([
                ("Device id", html! { span.mono #device-id { (device.device_id) } }),
                ("State", views::status_badge(device.state.as_str())),
                ("Model", html! { a href={ "/console/search?kind=model&q=" (urlencode(&device.model)) } { (device.model) } }),
                ("Class", html! { (device.class) }),
                ("Batch", html! { a href={ "/console/search?kind=batch&q=" (urlencode(&device.batch)) } { (device.batch) } }),
                ("Hardware serial", html! { (device.hardware_serial.as_deref().unwrap_or("—")) }),
            ]))
            @if may_revoke && device.state != DeviceState::Revoked {
                p { a.button.danger #revoke-device href={ "/console/revoke?what=device&id=" (urlencode(&device.device_id)) } { "Revoke this device…" } }
            }
            h2 { "Certificates" }
            @if certs.is_empty() { p.quiet { "Never enrolled." } } @else { (views::certificate_table(&certs, now())) }
            (audit_section(audit))
        };
        Ok(Reply::Page(views::page(Some(v), &format!("Device {}", device.device_id), body)))
    })
    .await
}

/// A certificate's facts, decoded from its DER (x509-cert): what a PEM blob hides.
struct Decoded {
    subject: String,
    issuer: String,
    names: Vec<String>,
    key: String,
    key_usage: Option<String>,
    extended_key_usage: Vec<String>,
}

/// id-on-hardwareModuleName (RFC 4108): the device's model and serial number.
const HARDWARE_MODULE_NAME: const_oid::ObjectIdentifier = const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.8.4");

#[derive(der::Sequence)]
struct HardwareModuleName {
    hw_type: const_oid::ObjectIdentifier,
    hw_serial_num: der::asn1::OctetString,
}

fn oid_name(oid: &const_oid::ObjectIdentifier) -> String {
    const_oid::db::DB.by_oid(oid).map_or_else(|| oid.to_string(), str::to_string)
}

fn decode(pki: &Pki, der_bytes: &[u8]) -> Option<Decoded> {
    let cert = x509_cert::Certificate::from_der(der_bytes).ok()?;
    let tbs = &cert.tbs_certificate;
    let model_of = |oid: &const_oid::ObjectIdentifier| {
        pki.config
            .models
            .iter()
            .find(|(_, m)| m.oid == oid.to_string())
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| oid.to_string())
    };
    let mut names = Vec::new();
    let mut key_usage = None;
    let mut extended_key_usage = Vec::new();
    for ext in tbs.extensions.iter().flatten() {
        let value = ext.extn_value.as_bytes();
        if ext.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME {
            let Ok(sans) = x509_cert::ext::pkix::SubjectAltName::from_der(value) else { continue };
            for name in sans.0 {
                names.push(match name {
                    GeneralName::DnsName(n) => format!("DNS: {}", n.as_str()),
                    GeneralName::UniformResourceIdentifier(u) => format!("URI: {}", u.as_str()),
                    GeneralName::Rfc822Name(e) => format!("email: {}", e.as_str()),
                    GeneralName::IpAddress(ip) => format!("IP: {}", hex::encode(ip.as_bytes())),
                    GeneralName::OtherName(o) if o.type_id == HARDWARE_MODULE_NAME => {
                        match o.value.to_der().ok().and_then(|d| HardwareModuleName::from_der(&d).ok()) {
                            Some(h) => format!(
                                "hardware module: model {}, serial {}",
                                model_of(&h.hw_type),
                                String::from_utf8_lossy(h.hw_serial_num.as_bytes())
                            ),
                            None => "hardware module (malformed)".to_string(),
                        }
                    }
                    other => format!("{other:?}"),
                });
            }
        } else if ext.extn_id == const_oid::db::rfc5280::ID_CE_KEY_USAGE {
            if let Ok(ku) = x509_cert::ext::pkix::KeyUsage::from_der(value) {
                key_usage = Some(ku.0.into_iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", "));
            }
        } else if ext.extn_id == const_oid::db::rfc5280::ID_CE_EXT_KEY_USAGE {
            if let Ok(eku) = x509_cert::ext::pkix::ExtendedKeyUsage::from_der(value) {
                extended_key_usage = eku.0.iter().map(oid_name).collect();
            }
        }
    }
    let spki = &tbs.subject_public_key_info;
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<const_oid::ObjectIdentifier>().ok());
    let key = match curve {
        Some(c) => format!("{} ({})", oid_name(&spki.algorithm.oid), oid_name(&c)),
        None => oid_name(&spki.algorithm.oid),
    };
    Some(Decoded {
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        names,
        key,
        key_usage,
        extended_key_usage,
    })
}

/// Whether OCSP and the CRLs carry a revocation, in words.
async fn revocation_facts(pki: &Pki, c: &CertRecord) -> Result<Vec<(&'static str, Markup)>, Refusal> {
    let Some(revoked_at) = c.revoked_at else { return Ok(Vec::new()) };
    let reason = c.revocation_reason.map_or("unspecified", crate::revoke::reason_name);
    let listing = crate::crl::listing(pki, &crate::store::RevokedCert::from(c)).await.map_err(Refusal::from)?;
    Ok(vec![
        ("Revoked", html! { (views::time(revoked_at)) ", reason " strong { (reason) } }),
        ("OCSP", html! { span #ocsp-status { "answers revoked (re-signed when it was revoked)" } }),
        (
            "CRL",
            html! {
                span #crl-status {
                    @match &listing {
                        Some((url, head)) => { "listed in CRL number " (head.number) " published " (views::time(head.this_update)) ", next update " (views::time(head.next_update)) " — " span.mono { (url) } }
                        None => { "not yet in a published CRL: the CRL job signs one within crl.regenerate_secs (" (pki.config.crl.regenerate_secs) " s)" }
                    }
                }
            },
        ),
    ])
}

/// `GET /console/certificates/{issuer}/{serial}`.
pub(super) async fn certificate(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let (issuer, serial) = (param(&req, "issuer"), param(&req, "serial"));
    let target = format!(
        "certificate:{}/{}",
        escaped(req.match_info().get("issuer").unwrap_or_default()),
        escaped(req.match_info().get("serial").unwrap_or_default())
    );
    visit(&pki, &req, Operation::ReadCertificate, &target, None, async |v| {
        let issuer = issuer?;
        let serial = crate::crl::parse_serial(&serial?).map_err(|_| Refusal::bad_request("the serial is not hex of 1 to 20 octets"))?;
        let c = pki
            .store
            .get_certificate(&issuer, &serial)
            .await
            .map_err(Refusal::from)?
            .ok_or_else(|| Refusal::new(actix_web::http::StatusCode::NOT_FOUND, "no such certificate was issued here"))?;
        let serial_hex = hex::encode(&c.serial);
        let decoded = decode(&pki, &c.der);
        let now = now();
        let status = if c.status == CertStatus::Valid && c.not_after <= now { "expired" } else { c.status.as_str() };
        let mut rows = vec![
            ("Status", html! { span #status { (views::status_badge(status)) } }),
            ("Subject", html! { span.mono #subject { (decoded.as_ref().map_or(c.subject.as_str(), |d| d.subject.as_str())) } }),
        ];
        if let Some(d) = &decoded {
            rows.push(("Names", html! { @if d.names.is_empty() { "—" } @else { ul.plain #names { @for n in &d.names { li { (n) } } } } }));
            rows.push(("Issued by", html! { (c.issuer) " — " span.mono { (d.issuer) } }));
        }
        rows.push(("Serial", html! { span.mono #serial { (serial_hex) } }));
        rows.push(("Valid", html! { (views::time(c.not_before)) " to " (views::time(c.not_after)) " (" (if c.not_after > now { "expires " } else { "expired " }) (views::relative(c.not_after, now)) ")" }));
        if let Some(d) = &decoded {
            rows.push(("Key", html! { (d.key) }));
            if let Some(ku) = &d.key_usage { rows.push(("Key usage", html! { (ku) })); }
            if !d.extended_key_usage.is_empty() { rows.push(("Extended key usage", html! { (d.extended_key_usage.join(", ")) })); }
        }
        rows.push(("Profile", html! { (c.profile) }));
        if let Some(device) = &c.device_id {
            rows.push(("Device", html! { a href={ "/console/devices/" (urlencode(device)) } { (device) } }));
        }
        rows.extend(revocation_facts(&pki, &c).await?);
        rows.push(("SHA-256", html! { span.mono.small { (c.fingerprint) } }));
        let audit = audit_about(&pki, v, format!("certificate:{}/{serial_hex}", c.issuer)).await?;
        let body = html! {
            (facts(rows))
            @if v.may(Operation::RevokeCertificate) && c.status != CertStatus::Revoked {
                p { a.button.danger #revoke-certificate href={ "/console/revoke?what=certificate&issuer=" (urlencode(&c.issuer)) "&id=" (serial_hex) } { "Revoke this certificate…" } }
            }
            (audit_section(audit))
        };
        Ok(Reply::Page(views::page(Some(v), "Certificate", body)))
    })
    .await
}
