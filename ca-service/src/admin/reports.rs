//! Lifecycle reports through the API (a privileged read, itself audited): decode the
//! report and its query, run it (`crate::reports`), render JSON or CSV.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::params::PathId;
use super::{bodies, handle, Operation};
use crate::est::Refusal;
use crate::issuance::Pki;
use crate::reports::{self, Format, Report};

/// `GET /api/v1/reports/{report}?…`.
pub(super) async fn report(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let name = PathId::from_path(&req, "report", "report");
    let target = format!("report:{}", name.shown());
    handle(&pki, &req, Operation::ReadReports, &target, async |_| {
        let report = Report::parse(name.get()?).map_err(|e| Refusal::new(StatusCode::NOT_FOUND, e))?;
        let query = bodies::report_query(report, req.query_string())?;
        let table = reports::run_now(pki.store.as_ref(), &pki.config, &query).await.map_err(Refusal::from)?;
        Ok(match query.format {
            Format::Json => HttpResponse::Ok().json(table.to_json()),
            Format::Csv => {
                let body = table.to_csv().map_err(|e| {
                    tracing::error!(error = %e, "rendering a report as CSV");
                    Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                })?;
                let mut res = HttpResponse::Ok();
                res.content_type("text/csv; charset=utf-8");
                if let Some(next) = &table.next {
                    res.insert_header(("X-Next-Cursor", next.as_str()));
                }
                res.body(body)
            }
        })
    })
    .await
}
