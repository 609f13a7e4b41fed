//! The console's HTML: the layout every page shares and the pieces pages are built
//! from. maud escapes every value it interpolates, so nothing a caller or a stored
//! record holds becomes markup. No script, no external asset: one stylesheet served by
//! the console itself, which the Content-Security-Policy (`super::SECURITY_HEADERS`)
//! is the only source it allows.

use maud::{html, Markup, DOCTYPE};

use super::Visit;
use crate::admin::Operation;
use crate::audit::AuditEntry;
use crate::store::{CertRecord, RevokedCert};

/// Unix seconds as `2026-12-04 06:16:03 UTC`.
pub fn time(unix: i64) -> String {
    const FORMAT: &[time::format_description::FormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// `at` relative to `now`, in words: "in 3 days", "2 hours ago".
pub fn relative(at: i64, now: i64) -> String {
    let d = at - now;
    let abs = d.unsigned_abs();
    let (n, unit) = match abs {
        0..=119 => (abs, "seconds"),
        120..=7199 => (abs / 60, "minutes"),
        7200..=172_799 => (abs / 3600, "hours"),
        _ => (abs / 86_400, "days"),
    };
    if d >= 0 {
        format!("in {n} {unit}")
    } else {
        format!("{n} {unit} ago")
    }
}

/// Where the console's pages are, and which operation each needs: a link is shown
/// only to a role that may use it.
const NAV: [(&str, &str, Operation); 4] = [
    ("/console/", "Search", Operation::ReadCertificate),
    ("/console/updates", "Update signing", Operation::ReadUpdateRequests),
    ("/console/reports", "Reports", Operation::ReadReports),
    ("/console/audit", "Audit trail", Operation::ReadAudit),
];

/// A whole page: the header (with the navigation this role may use, who is signed in
/// and a sign-out button) around `body`.
pub fn page(visit: Option<&Visit>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Device PKI console" }
                link rel="stylesheet" href="/console/console.css";
            }
            body {
                header {
                    a.brand href="/console/" { "Device PKI" }
                    @if let Some(v) = visit {
                        nav {
                            @for (href, label, op) in NAV {
                                @if v.may(op) { a href=(href) { (label) } }
                            }
                        }
                        div.who {
                            span #signed-in-as { (v.caller.name) " · " (v.caller.role) }
                            form method="post" action="/console/sign-out" {
                                (csrf(v))
                                button.link type="submit" #sign-out { "Sign out" }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden field every form of a session carries.
pub fn csrf(visit: &Visit) -> Markup {
    html! { input type="hidden" name="csrf" value=(visit.csrf); }
}

/// A refusal or a failure, in words.
pub fn problem(visit: Option<&Visit>, status: u16, reason: &str) -> Markup {
    let title = match status {
        400 => "That request is not valid",
        401 => "Sign in first",
        403 => "Not allowed",
        404 => "Not found",
        409 => "Not possible now",
        429 => "Too many attempts",
        _ => "Something went wrong",
    };
    page(
        visit,
        title,
        html! {
            p.problem #problem { (reason) }
            p { a href="/console/" { "Back to the console" } }
        },
    )
}

/// A definition list of facts.
pub fn facts<'a>(rows: impl IntoIterator<Item = (&'a str, Markup)>) -> Markup {
    html! {
        dl.facts {
            @for (term, value) in rows {
                dt { (term) }
                dd { (value) }
            }
        }
    }
}

/// A certificate's status as a badge.
pub fn status_badge(status: &str) -> Markup {
    html! { span class={ "badge " (status) } { (status) } }
}

/// The link to a certificate's page.
pub fn certificate_href(issuer: &str, serial_hex: &str) -> String {
    format!("/console/certificates/{}/{serial_hex}", urlencode(issuer))
}

/// A value as one path segment or query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Certificates as a table, newest first as given.
pub fn certificate_table(certs: &[CertRecord], now: i64) -> Markup {
    html! {
        table #certificates {
            thead { tr { th { "Serial" } th { "Issuer" } th { "Profile" } th { "Valid from" } th { "Expires" } th { "Status" } } }
            tbody {
                @for c in certs {
                    @let serial = hex::encode(&c.serial);
                    tr {
                        td.mono { a href=(certificate_href(&c.issuer, &serial)) { (serial) } }
                        td { (c.issuer) }
                        td { (c.profile) }
                        td { (time(c.not_before)) }
                        td { (time(c.not_after)) " (" (relative(c.not_after, now)) ")" }
                        td { (status_badge(if c.status == crate::store::CertStatus::Valid && c.not_after <= now { "expired" } else { c.status.as_str() })) }
                    }
                }
            }
        }
    }
}

/// Rows a revocation's result lists; a batch or a model may revoke a fleet.
pub const REVOKED_ROWS: usize = 200;

/// What a revocation revoked, as a table of its first [`REVOKED_ROWS`].
pub fn revoked_table(certs: &[RevokedCert], now: i64) -> Markup {
    html! {
        table #certificates {
            thead { tr { th { "Serial" } th { "Issuer" } th { "Device" } th { "Profile" } th { "Expires" } th { "Status" } } }
            tbody {
                @for c in certs.iter().take(REVOKED_ROWS) {
                    @let serial = hex::encode(&c.serial);
                    tr {
                        td.mono { a href=(certificate_href(&c.issuer, &serial)) { (serial) } }
                        td { (c.issuer) }
                        td { @if let Some(d) = &c.device_id { a href={ "/console/devices/" (urlencode(d)) } { (d) } } }
                        td { (c.profile) }
                        td { (time(c.not_after)) " (" (relative(c.not_after, now)) ")" }
                        td { (status_badge("revoked")) }
                    }
                }
            }
        }
        @if certs.len() > REVOKED_ROWS {
            p.quiet { "And " (certs.len() - REVOKED_ROWS) " more; the devices' pages list each one's certificates." }
        }
    }
}

/// Audit entries as a table, with a note when there are none.
pub fn audit_table(entries: &[AuditEntry]) -> Markup {
    html! {
        @if entries.is_empty() {
            p.quiet { "No audit entries." }
        } @else {
            table #audit {
                thead { tr { th { "#" } th { "Time" } th { "Actor" } th { "Action" } th { "Target" } th { "Outcome" } th { "Details" } } }
                tbody {
                    @for e in entries {
                        tr {
                            td { (e.seq) }
                            td { (time(e.time_us / 1_000_000)) }
                            td.mono { a href={ "/console/audit?actor=" (urlencode(&e.event.actor)) } { (e.event.actor) } }
                            td { a href={ "/console/audit?action=" (urlencode(&e.event.action)) } { (e.event.action) } }
                            td.mono { a href={ "/console/audit?target=" (urlencode(&e.event.target)) } { (e.event.target) } }
                            td { (e.event.outcome) }
                            td.mono.details { (e.event.details) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_links_read_as_words() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(relative(100, 0), "in 100 seconds");
        assert_eq!(relative(0, 3 * 86_400), "3 days ago");
        assert_eq!(relative(7200, 0), "in 2 hours");
        assert_eq!(urlencode("a b/c&d\"<"), "a%20b%2Fc%26d%22%3C");
    }

    #[test]
    fn a_fleet_revoked_is_listed_in_part_and_counted() {
        let cert = |n: u32| RevokedCert {
            issuer: "device".into(),
            serial: n.to_be_bytes().to_vec(),
            device_id: Some(format!("SN-{n}")),
            profile: "device".into(),
            not_after: 2_000_000_000,
            revoked_at: 1_900_000_000,
            reason: None,
            crl_shard: 0,
        };
        let few: Vec<RevokedCert> = (1..=3).map(cert).collect();
        let markup = revoked_table(&few, 1_900_000_000).into_string();
        assert_eq!(markup.matches("<tr>").count(), 1 + 3, "a head and every row");
        assert!(markup.contains("SN-3") && !markup.contains("more"), "{markup}");

        let fleet: Vec<RevokedCert> = (1..=REVOKED_ROWS as u32 + 50).map(cert).collect();
        let markup = revoked_table(&fleet, 1_900_000_000).into_string();
        assert_eq!(markup.matches("<tr>").count(), 1 + REVOKED_ROWS, "a head and the first rows only");
        assert!(markup.contains("And 50 more"), "{markup}");
        assert!(!markup.contains(&format!("SN-{}<", REVOKED_ROWS + 1)), "the rows past the limit are left out");
    }

    #[test]
    fn values_are_escaped() {
        let markup = problem(None, 400, "<script>alert(1)</script>").into_string();
        assert!(!markup.contains("<script>"), "{markup}");
        assert!(markup.contains("&lt;script&gt;"));
    }
}
