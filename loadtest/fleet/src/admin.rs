//! The admin API at fleet scale: lifecycle report queries, and the revocation of a
//! whole batch — through the API (the serving instance re-signs its OCSP answers and
//! CRLs) and through the CLI (the serving instance's revocation watch picks it up) —
//! with how soon OCSP answers `revoked` and the complete CRL lists it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio_postgres::Client;

use crate::http;
use crate::measure::Results;
use crate::ocsp::{Issuer, Status};
use crate::serve::Service;

/// Repetitions of each report query (the median and the maximum are kept).
const REPS: usize = 5;
/// Devices of a revoked batch whose OCSP answers are watched.
const WATCHED: i64 = 8;

/// Times the report endpoints `loadtest/reports/measure.sh` times, and the audit tail.
pub async fn reports(svc: &Service, db: &Client, anchors: &[Vec<u8>], r: &mut Results) -> Result<()> {
    println!("reports (admin API, auditor token, one TLS connection; median of {REPS})");
    let token = format!("Bearer {}", svc.token("auditor").await?);
    let mut conn = http::connect_tls(svc.https, anchors).await?;
    let batches: i64 = db.query_one("SELECT count(DISTINCT batch) FROM devices", &[]).await?.get(0);
    let mid = format!("batch-{:04}", (batches / 2).max(1));
    let head: i64 = db.query_one("SELECT coalesce(max(seq), 0) FROM audit_log", &[]).await?.get(0);
    let a = "/api/v1/reports";
    let queries = [
        ("report_counts", format!("{a}/counts")),
        ("report_expiring", format!("{a}/expiring?within=30d&limit=1000")),
        ("report_expiring_by_batch", format!("{a}/expiring?within=30d&group_by=batch")),
        ("report_expiring_batch", format!("{a}/expiring?within=30d&batch={mid}&limit=1000")),
        ("report_stale", format!("{a}/stale?limit=1000")),
        ("report_stale_batch", format!("{a}/stale?batch={mid}&limit=1000")),
        ("report_never_enrolled", format!("{a}/never-enrolled?limit=1000")),
        ("report_expiring_csv", format!("{a}/expiring?within=90d&limit=10000&format=csv")),
        ("audit_tail", format!("/api/v1/audit?after={}&limit=100", (head - 100).max(0))),
    ];
    for (key, path) in queries {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..REPS {
            let started = Instant::now();
            let resp = tokio::time::timeout(
                Duration::from_secs(60),
                conn.request("GET", &path, &[("Authorization", &token)], b""),
            )
            .await
            .with_context(|| format!("{path}: no answer within 60 s"))??;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            if resp.status != 200 {
                bail!("{path}: HTTP {}: {}", resp.status, String::from_utf8_lossy(&resp.body));
            }
            bytes = resp.body.len();
        }
        times.sort_by(f64::total_cmp);
        r.put(&format!("{key}_ms"), &format!("GET {path} ({bytes} B)"), times[REPS / 2], "ms");
        r.put(&format!("{key}_max_ms"), "  max", times[REPS - 1], "ms");
    }
    let mut plain = http::connect_plain(svc.http).await?;
    let started = Instant::now();
    let m = plain.request("GET", "/metrics", &[], b"").await?;
    r.put(
        "metrics_ms",
        &format!("GET /metrics (HTTP {}, {} B)", m.status, m.body.len()),
        started.elapsed().as_secs_f64() * 1000.0,
        "ms",
    );
    Ok(())
}

/// Revokes batch 2 (or 1) through the API and batch 3 (if any) through the CLI.
pub async fn revocations(
    svc: &Service,
    db: &Client,
    anchors: &[Vec<u8>],
    issuer: &Issuer,
    ca: &str,
    timeout: Duration,
    r: &mut Results,
) -> Result<()> {
    let batches: i64 = db.query_one("SELECT count(DISTINCT batch) FROM devices", &[]).await?.get(0);
    let api_batch = format!("batch-{:04}", batches.min(2));
    println!("revocation of {api_batch} through the API (operator token)");
    let watched = watch_list(db, ca, &api_batch).await?;
    let mut ocsp = http::connect_plain(svc.http).await?;
    for serial in &watched {
        // Asked before: the answers are cached, as a relying party's question would leave them.
        if crate::ocsp::ask(&mut ocsp, issuer, serial).await? != Status::Good {
            bail!("a valid certificate of {api_batch} is not good before the revocation");
        }
    }
    let token = format!("Bearer {}", svc.token("operator").await?);
    drop(ocsp);
    let mut api = http::connect_tls(svc.https, anchors).await?;
    let path = format!("/api/v1/batches/{api_batch}/revoke");
    let headers = [("Authorization", token.as_str()), ("Content-Type", "application/json")];
    let started = Instant::now();
    let resp = tokio::time::timeout(timeout, api.request("POST", &path, &headers, br#"{"reason":"keyCompromise"}"#))
        .await
        .context("the batch revocation did not answer in time")??;
    let took = started.elapsed();
    if resp.status != 200 {
        bail!("{path}: HTTP {}: {}", resp.status, String::from_utf8_lossy(&resp.body));
    }
    let answer: serde_json::Value = serde_json::from_slice(&resp.body)?;
    let certs = answer["revoked_certificates"].as_array().map_or(0, Vec::len);
    let what = format!("POST {path}: {} devices, {certs} certificates", answer["revoked_devices"]);
    r.put("revoke_api_s", &what, took.as_secs_f64(), "s");
    r.put("revoke_api_response_mb", "  answer size", resp.body.len() as f64 / 1048576.0, "MiB");
    let seen = until_revoked(svc, issuer, &watched, Duration::from_secs(60)).await?;
    r.put("revoke_api_ocsp_ms", "  OCSP answers revoked, after the answer", seen.as_secs_f64() * 1000.0, "ms");
    let listed = until_listed(svc, ca, &watched[0], timeout).await?;
    r.put(
        "revoke_api_crl_s",
        "  the complete CRL lists it, after the answer",
        listed.as_secs_f64() + seen.as_secs_f64(),
        "s",
    );

    if batches < 3 {
        return Ok(());
    }
    let cli_batch = "batch-0003";
    println!("revocation of {cli_batch} through the CLI (the server's revocation watch)");
    let watched = watch_list(db, ca, cli_batch).await?;
    let mut ocsp = http::connect_plain(svc.http).await?;
    for serial in &watched {
        crate::ocsp::ask(&mut ocsp, issuer, serial).await?;
    }
    drop(ocsp);
    let (_, took) = svc.run(&["revoke", "--batch", cli_batch, "--reason", "keyCompromise"], timeout).await?;
    r.put(
        "revoke_cli_s",
        &format!("ca-service revoke --batch {cli_batch} (CRLs re-signed by the CLI)"),
        took.as_secs_f64(),
        "s",
    );
    let seen = until_revoked(svc, issuer, &watched, Duration::from_secs(60)).await?;
    r.put(
        "revoke_cli_ocsp_ms",
        "  OCSP of the server answers revoked, after the CLI returned",
        seen.as_secs_f64() * 1000.0,
        "ms",
    );
    Ok(())
}

/// Up to [`WATCHED`] valid certificates of devices in `batch`.
async fn watch_list(db: &Client, ca: &str, batch: &str) -> Result<Vec<Vec<u8>>> {
    let rows = db
        .query(
            "SELECT c.serial_hex FROM certificates c JOIN devices d ON d.device_id = c.device_id \
             WHERE d.batch = $1 AND c.issuer = $2 AND c.status = 'valid' ORDER BY c.id LIMIT $3",
            &[&batch, &ca, &WATCHED],
        )
        .await?;
    let serials = rows.iter().map(|row| hex::decode(row.get::<_, String>(0))).collect::<Result<Vec<_>, _>>()?;
    if serials.is_empty() {
        bail!("no valid certificate in {batch}");
    }
    Ok(serials)
}

/// Asks about `serials` until every answer is `revoked` (at most `limit`), on a new
/// connection (one idle through a long revocation is closed by the server).
async fn until_revoked(svc: &Service, issuer: &Issuer, serials: &[Vec<u8>], limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    let conn = &mut http::connect_plain(svc.http).await?;
    let mut pending: Vec<&Vec<u8>> = serials.iter().collect();
    while !pending.is_empty() {
        if started.elapsed() > limit {
            bail!("{} certificates still not revoked over OCSP after {limit:?}", pending.len());
        }
        let mut still = Vec::new();
        for s in pending {
            if crate::ocsp::ask(conn, issuer, s).await? != Status::Revoked {
                still.push(s);
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(started.elapsed())
}

/// Fetches `/crl/{ca}.crl` until it lists `serial` (at most `limit`).
async fn until_listed(svc: &Service, ca: &str, serial: &[u8], limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    let entry = [&[0x02, u8::try_from(serial.len())?][..], serial].concat();
    let mut conn = http::connect_plain(svc.http).await?;
    loop {
        let resp = conn.request("GET", &format!("/crl/{ca}.crl"), &[], b"").await?;
        if resp.status == 200 && resp.body.windows(entry.len()).any(|w| w == entry) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("the complete CRL does not list the revoked batch after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
