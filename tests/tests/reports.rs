//! Lifecycle reports end to end: the admin API (curl with an auditor's token) and the
//! CLI give the same answers, in JSON and CSV; pages follow `next`; bad parameters
//! are a 400 naming the parameter; every read is audited. (Which certificates each
//! report selects is the store suite's, on both databases: `store::suite::reports`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::{ensure, Context, Result};
use e2e_tests::{curl_reply, make_csr, path_str, sqlite_i64, Cli, Service, P256};
use serde_json::Value;

#[test]
fn reports_over_the_api_and_the_cli() -> Result<()> {
    let tmp = e2e_tests::workdir("reports")?;
    let d = tmp.path();
    let cli = Cli::evaluation(d);
    cli.run_ok(&["init"])?;
    std::fs::write(d.join("a.csv"), "device_id,model\nSN-R1,generic\nSN-R2,generic\nSN-R3,generic\n")?;
    cli.run_ok(&["devices", "import", "--batch", "r-a", "a.csv"])?;
    std::fs::write(d.join("b.csv"), "device_id,model\nSN-R4,generic\n")?;
    cli.run_ok(&["devices", "import", "--batch", "r-b", "b.csv"])?;
    for dev in ["SN-R1", "SN-R2", "SN-R4"] {
        let csr = make_csr(d, dev, P256, &format!("/CN={dev}"), &[])?;
        cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", &format!("{dev}.pem")])?;
    }
    let out = cli.run_ok(&["tokens", "create", "--name", "report-reader", "--role", "auditor"])?;
    let token = format!("{}{}", out.stdout, out.stderr)
        .split_whitespace()
        .find(|w| w.starts_with("pki_"))
        .context("no token printed")?
        .to_string();
    let svc = Service::start(&cli)?;
    let root = e2e_tests::curl(d, &["-f", &format!("{}/ca/identity-root.pem", svc.base_url())])?.ok()?;
    std::fs::write(d.join("root.pem"), root.stdout)?;
    let auth = format!("Authorization: Bearer {token}");
    let get = |path: &str| {
        let url = format!("https://127.0.0.1:{}/api/v1/reports/{path}", svc.https.port());
        curl_reply(d, &["--cacert", "root.pem", "-H", &auth, &url])
    };
    let json = |path: &str| -> Result<Value> {
        let r = get(path)?;
        ensure!(r.status == 200, "{path}:\n{}", r.describe());
        Ok(serde_json::from_slice(&r.body)?)
    };

    // Counts: three device certificates valid; the devices still `expected` (an
    // operator's `issue` does not enroll a device in the registry, EST does).
    let counts = json("counts")?;
    let rows = counts["rows"].as_array().context("rows")?;
    let count = |kind: &str, profile: Option<&str>, state: &str| {
        rows.iter()
            .find(|r| r["kind"] == kind && r["state"] == state && profile.is_none_or(|p| r["profile"] == p))
            .and_then(|r| r["count"].as_u64())
    };
    ensure!(count("certificate", Some("device"), "valid") == Some(3), "{counts}");
    ensure!(count("device", None, "expected") == Some(4) && count("device", None, "active").is_none(), "{counts}");

    // Expiring within ten years: the three, soonest first, paged two at a time.
    let first = json("expiring?within=3650d&profile=device&limit=2")?;
    let page = first["rows"].as_array().context("rows")?;
    ensure!(page.len() == 2 && page[0]["days_left"].as_i64() > Some(300), "{first}");
    ensure!(page.iter().all(|r| r["batch"] == "r-a" || r["batch"] == "r-b"), "batches joined in: {first}");
    let next = first["next"].as_str().context("a full page has a next cursor")?;
    let second = json(&format!("expiring?within=3650d&profile=device&limit=2&after={next}"))?;
    let rest = second["rows"].as_array().context("rows")?;
    ensure!(rest.len() == 1 && second["next"].is_null(), "{second}");
    let mut devices: Vec<&str> = page.iter().chain(rest).filter_map(|r| r["device_id"].as_str()).collect();
    devices.sort();
    ensure!(devices == ["SN-R1", "SN-R2", "SN-R4"], "each once across the pages: {devices:?}");
    // Nothing within a day.
    ensure!(json("expiring?within=1d&profile=device")?["rows"].as_array().is_some_and(Vec::is_empty));

    // Grouped by batch, as CSV: the API and the CLI agree byte for byte.
    let csv = get("expiring?within=3650d&profile=device&group_by=batch&format=csv")?;
    ensure!(csv.status == 200 && csv.header("content-type") == Some("text/csv; charset=utf-8"), "{}", csv.describe());
    let text = String::from_utf8(csv.body.clone())?;
    let lines: Vec<&str> = text.lines().collect();
    ensure!(lines.len() == 3 && lines[0] == "batch,count,first_not_after", "{text}");
    ensure!(lines[1].starts_with("r-a,2,") && lines[2].starts_with("r-b,1,"), "{text}");
    let from_cli = cli.run_ok(&[
        "report",
        "expiring",
        "--within",
        "3650d",
        "--profile",
        "device",
        "--group-by",
        "batch",
        "--format",
        "csv",
    ])?;
    ensure!(from_cli.stdout == text, "CLI:\n{}\nAPI:\n{text}", from_cli.stdout);

    // Never enrolled: the devices of batch r-a, in id order. Stale: none.
    let never = json("never-enrolled?batch=r-a")?;
    let ids: Vec<&str> =
        never["rows"].as_array().context("rows")?.iter().filter_map(|r| r["device_id"].as_str()).collect();
    ensure!(ids == ["SN-R1", "SN-R2", "SN-R3"], "{never}");
    ensure!(json("stale")?["rows"].as_array().is_some_and(Vec::is_empty));
    let cli_never = cli.run_ok(&["report", "never-enrolled", "--batch", "r-a"])?;
    let cli_never: Value = serde_json::from_str(&cli_never.stdout)?;
    ensure!(cli_never["rows"] == never["rows"], "{cli_never} vs {never}");

    // Refusals: a 400 that names the parameter, a 404 for an unknown report.
    for (path, status, needle) in [
        ("expiring?within=forever", 400, "within"),
        ("expiring?group_by=colour", 400, "group_by"),
        ("stale?within=1d", 400, "does not apply"),
        ("stale?after=not-a-cursor", 400, "cursor"),
        ("stale?limit=0", 400, "limit"),
        ("counts?colour=red", 400, "colour"),
        ("sales", 404, "unknown report"),
    ] {
        let r = get(path)?;
        let body = String::from_utf8_lossy(&r.body).to_string();
        ensure!(r.status == status && body.contains(needle), "{path}: {}", r.describe());
    }
    let bad_cli = cli.run(&["report", "expiring", "--within", "forever"])?;
    ensure!(!bad_cli.success() && bad_cli.stderr.contains("within"), "{}", bad_cli.describe());

    // Every successful read is in the audit log, with the auditor as actor.
    let reads =
        sqlite_i64(d, "SELECT count(*) FROM audit_log WHERE action = 'api.report.read' AND outcome = 'success'")?;
    ensure!(reads == 7, "audited report reads (the seven that succeeded): {reads}");
    let actors = sqlite_i64(
        d,
        "SELECT count(*) FROM audit_log WHERE action = 'api.report.read' AND outcome = 'success' \
         AND actor LIKE 'token:%:report-reader'",
    )?;
    ensure!(actors == 7, "{actors}");
    svc.stop();
    Ok(())
}
