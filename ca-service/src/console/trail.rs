//! The lifecycle reports and the audit trail. Reports take the API's parameters,
//! decoded by the API's own decoder and run by [`crate::reports`]; the trail is the
//! audit log newest first, narrowed by actor, action or target (each an index).

use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::views::{self, urlencode};
use super::{visit, Reply};
use crate::admin::{escaped, Operation};
use crate::est::Refusal;
use crate::issuance::Pki;
use crate::reports::{Format, Report};
use crate::store::AuditQuery;

/// Audit entries on one page.
const AUDIT_PAGE: i64 = 100;

/// The query string without empty fields (a browser sends every field of a form),
/// re-encoded for the API's decoder.
fn non_empty(query_string: &str) -> Result<String, Refusal> {
    let pairs = crate::admin::urlencoded::<Vec<(String, String)>>(query_string)?;
    Ok(pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&"))
}

fn field(label: &str, name: &str, value: Option<&str>, hint: &str) -> Markup {
    html! {
        label { (label) input type="text" name=(name) value=(value.unwrap_or("")) placeholder=(hint); }
    }
}

fn report_form(report: Report, params: &[(String, String)]) -> Markup {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    html! {
        form.search method="get" action={ "/console/reports/" (report.as_str()) } #report-form {
            @if report == Report::Expiring {
                (field("Within", "within", get("within"), "30d"))
                label { "Group by"
                    select name="group_by" {
                        option value="" { "— list certificates —" }
                        @for g in ["batch", "model", "profile", "issuer"] { option value=(g) selected[get("group_by") == Some(g)] { (g) } }
                    }
                }
            }
            @if report != Report::Counts {
                (field("Batch", "batch", get("batch"), "any"))
                (field("Model", "model", get("model"), "any"))
            }
            @if matches!(report, Report::Expiring | Report::Stale) {
                (field("Profile", "profile", get("profile"), "any"))
                (field("Issuer", "issuer", get("issuer"), "any"))
            }
            button type="submit" { "Run" }
        }
    }
}

fn cell(column: &str, v: &Value) -> Markup {
    match v {
        Value::Null => html! { "—" },
        Value::Number(n) if column.starts_with("not_") || column.ends_with("_not_after") => {
            html! { (n.as_i64().map_or_else(|| n.to_string(), views::time)) }
        }
        Value::String(s) if column == "serial" => html! { span.mono { (s) } },
        Value::String(s) => html! { (s) },
        other => html! { (other.to_string()) },
    }
}

fn reports_nav(current: Option<Report>) -> Markup {
    html! {
        nav.filters #reports {
            @for r in Report::ALL {
                a href={ "/console/reports/" (r.as_str()) } class=@if current == Some(r) { "current" } { (r.as_str()) }
            }
        }
    }
}

/// `GET /console/reports`: the reports there are.
pub(super) async fn index(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    visit(&pki, &req, Operation::ReadReports, "reports", None, async |v| {
        let body = html! {
            (reports_nav(None))
            ul {
                li { a href="/console/reports/counts" { "counts" } " — certificates by issuer, profile and state; devices by state" }
                li { a href="/console/reports/expiring" { "expiring" } " — valid certificates expiring within a window, listed or grouped by batch, model, profile or issuer" }
                li { a href="/console/reports/stale" { "stale" } " — active devices whose newest certificate is past its renewal point and was not renewed" }
                li { a href="/console/reports/never-enrolled" { "never-enrolled" } " — registered devices that never enrolled" }
            }
        };
        Ok(Reply::Page(views::page(Some(v), "Reports", body)))
    })
    .await
}

/// `GET /console/reports/{report}?…` (the API's parameters; `format=csv` downloads).
pub(super) async fn report(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let name = req.match_info().get("report").unwrap_or_default().to_string();
    let target = format!("report:{}", escaped(&name));
    visit(&pki, &req, Operation::ReadReports, &target, None, async |v| {
        let report = Report::parse(&name).map_err(|e| Refusal::new(actix_web::http::StatusCode::NOT_FOUND, e))?;
        let cleaned = non_empty(req.query_string())?;
        let params = crate::admin::urlencoded::<Vec<(String, String)>>(&cleaned)?;
        let query = crate::admin::report_query(report, &cleaned)?;
        let table = crate::reports::run_now(pki.store.as_ref(), &pki.config, &query).await.map_err(Refusal::from)?;
        if query.format == Format::Csv {
            let body = table.to_csv().map_err(|e| {
                tracing::error!(error = %e, "rendering a report as CSV");
                Refusal::new(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            })?;
            return Ok(Reply::File { content_type: "text/csv; charset=utf-8", name: format!("{}.csv", report.as_str()), body });
        }
        let without = |drop: &[&str]| {
            params.iter().filter(|(k, _)| !drop.contains(&k.as_str())).map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v))).collect::<Vec<_>>()
        };
        let mut csv = without(&["format", "after"]);
        csv.push("format=csv".into());
        let next_href = table.next.as_ref().map(|next| {
            let mut more = without(&["after"]);
            more.push(format!("after={}", urlencode(next)));
            more.join("&")
        });
        let body = html! {
            (reports_nav(Some(report)))
            (report_form(report, &params))
            @if table.rows.is_empty() {
                p.quiet #no-rows { "Nothing to report." }
            } @else {
                table #report {
                    thead { tr { @for c in &table.columns { th { (c.replace('_', " ")) } } } }
                    tbody { @for row in &table.rows { tr { @for (c, v) in table.columns.iter().zip(row) { td { (cell(c, v)) } } } } }
                }
            }
            p {
                a #download-csv href={ "/console/reports/" (report.as_str()) "?" (csv.join("&")) } { "Download CSV" }
                @if let Some(next) = &next_href {
                    " · " a #next-page href={ "/console/reports/" (report.as_str()) "?" (next) } { "Next page →" }
                }
            }
        };
        Ok(Reply::Page(views::page(Some(v), &format!("Report: {}", report.as_str()), body)))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrailQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    before: Option<i64>,
}

fn set(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// `GET /console/audit?actor=…&action=…&target=…&before=…`: newest first.
pub(super) async fn audit(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    visit(&pki, &req, Operation::ReadAudit, "audit", None, async |v| {
        let q = crate::admin::urlencoded::<TrailQuery>(req.query_string())?;
        let query = AuditQuery { actor: set(&q.actor), action: set(&q.action), target: set(&q.target) };
        for value in [&query.actor, &query.action, &query.target].into_iter().flatten() {
            crate::admin::check_identifier("filter", value).map_err(Refusal::bad_request)?;
        }
        if q.before.is_some_and(|b| b < 1) {
            return Err(Refusal::bad_request("before must be a sequence number of at least 1"));
        }
        let entries = pki.store.find_audit(&query, q.before, AUDIT_PAGE).await.map_err(Refusal::from)?;
        let checkpoint = pki.store.latest_checkpoint().await.map_err(Refusal::from)?;
        let filters = |before: i64| {
            let mut parts = Vec::new();
            for (k, v) in [("actor", &query.actor), ("action", &query.action), ("target", &query.target)] {
                if let Some(v) = v {
                    parts.push(format!("{k}={}", urlencode(v)));
                }
            }
            parts.push(format!("before={before}"));
            parts.join("&")
        };
        let body = html! {
            form.search method="get" action="/console/audit" #audit-filters {
                (field("Actor", "actor", query.actor.as_deref(), "token:…, operator:…, station:…"))
                (field("Action", "action", query.action.as_deref(), "certificate.revoke"))
                (field("Target", "target", query.target.as_deref(), "device:…, certificate:…"))
                button type="submit" { "Filter" }
                a href="/console/audit" { "Clear" }
            }
            p.quiet #log-head {
                @match &checkpoint {
                    Some(c) => { "The first " (c.size) " entries are covered by a signed checkpoint of the transparency log (" code { "ca-service audit verify --checkpoint" } " checks them from outside)." }
                    None => { "No signed checkpoint yet." }
                }
            }
            (views::audit_table(&entries))
            @if entries.len() as i64 == AUDIT_PAGE {
                @if let Some(last) = entries.last() {
                    p { a #older href={ "/console/audit?" (filters(last.seq)) } { "Older entries →" } }
                }
            }
        };
        Ok(Reply::Page(views::page(Some(v), "Audit trail", body)))
    })
    .await
}
