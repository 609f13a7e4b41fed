//! `ca-service report`: the lifecycle reports of the admin API, from the database.

use std::io::Write;

use anyhow::Context;

use super::Ctx;
use crate::reports::{self, Format, Report, ReportParams};

pub(super) async fn run(ctx: Ctx, report: &str, params: ReportParams) -> anyhow::Result<()> {
    let report = Report::parse(report).map_err(anyhow::Error::msg)?;
    let query = params.check(report).map_err(anyhow::Error::msg)?;
    let table = reports::run_now(ctx.store.as_ref(), &ctx.config, &query).await.context("reading the report")?;
    let mut out = std::io::stdout().lock();
    match query.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&table.to_json())?)?,
        Format::Csv => out.write_all(&table.to_csv()?)?,
    }
    if let Some(next) = &table.next {
        eprintln!("more rows: add --after {next}");
    }
    Ok(())
}
