//! The transparency log at a million entries, on PostgreSQL: what the first checkpoint
//! over a log from before the tree costs, how long the monitor takes from scratch and
//! incrementally, and what the tree costs in storage. A measurement, not a check of
//! timing: run with
//! `cargo test --release -p e2e-tests --test transparency_scale -- --ignored --nocapture`
//! (`TLOG_SCALE_ENTRIES` changes the size).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ca_service::audit::AuditEvent;
use e2e_tests::{Cli, Service, TestDb};

fn served_size(svc: &Service) -> Result<u64> {
    let (status, body) = e2e_tests::http_get(svc.http, "/log/checkpoint")?;
    if status != 200 {
        return Ok(0);
    }
    Ok(String::from_utf8(body)?.lines().nth(1).unwrap_or("0").parse()?)
}

fn wait_covered(svc: &Service, entries: u64, within: Duration) -> Result<Duration> {
    let t = Instant::now();
    while served_size(svc)? < entries {
        if t.elapsed() > within {
            bail!("no checkpoint of size {entries} within {within:?}:\n{}", svc.log_text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(t.elapsed())
}

/// An issuance entry as the service writes them (≈ the same size).
fn issuance(i: u64) -> AuditEvent {
    AuditEvent::success("station:3f1a9c0b5e7d2468", "certificate.issue", format!("certificate:device/{i:032x}"))
        .with_details(serde_json::json!({
            "profile": "device",
            "subject": format!("CN=SN-{i:010},O=Device PKI"),
            "device_id": format!("SN-{i:010}"),
            "fingerprint": format!("{:064x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            "not_after": 1_900_000_000u64,
        }))
}

async fn append(url: &str, from: u64, n: u64) -> Result<()> {
    let store = ca_service::store::open(url).await?;
    let mut i = from;
    while i < from + n {
        let batch: Vec<AuditEvent> = (i..(i + 2000).min(from + n)).map(issuance).collect();
        store.append_audit(&batch).await?;
        i += batch.len() as u64;
    }
    Ok(())
}

#[test]
#[ignore = "a measurement at a million entries; run with --ignored --nocapture"]
fn a_million_entries() -> Result<()> {
    let n: u64 = std::env::var("TLOG_SCALE_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let db = TestDb::create()?;
    let dir = e2e_tests::workdir("tlog-scale")?;
    let cli = Cli::evaluation(dir.path()).env("CA_STORAGE__URL", &db.url).env("CA_LOG__PUBLIC_ENTRIES", "true");
    cli.run_ok(&["init"])?;
    let vkey = cli.run_ok(&["log", "key"])?.stdout.trim().to_string();
    let rt = tokio::runtime::Runtime::new()?;
    let before = db.query_i64("SELECT pg_total_relation_size('audit_log')")?;
    let t = Instant::now();
    rt.block_on(append(&db.url, 0, n))?;
    println!(
        "appended {n} entries in {:.1} s ({:.0}/s, 2,000 per transaction)",
        t.elapsed().as_secs_f64(),
        n as f64 / t.elapsed().as_secs_f64()
    );
    let total = cli.audit_entries()?;

    // The first checkpoint over them: every new leaf checked against its content, the
    // nodes above stored, the root computed.
    let svc = Service::start(&cli)?;
    let first = wait_covered(&svc, total, Duration::from_secs(600))?;
    println!("first checkpoint over {total} entries: {:.1} s after start", first.as_secs_f64());
    let rows = |sql: &str| db.query_i64(sql);
    let audit = rows("SELECT pg_total_relation_size('audit_log')")? - before;
    let leaf_bytes = rows("SELECT sum(pg_column_size(leaf_hash)) FROM audit_log")?;
    let nodes = rows("SELECT pg_total_relation_size('log_nodes')")?;
    let checkpoints = rows("SELECT pg_total_relation_size('log_checkpoints')")?;
    let per_m = |b: i64| b as f64 / (n as f64 / 1e6) / 1048576.0;
    println!(
        "storage per million entries: audit_log {:.1} MiB (of it leaf hashes {:.1} MiB), log_nodes {:.2} MiB, log_checkpoints {:.3} MiB",
        per_m(audit),
        per_m(leaf_bytes),
        per_m(nodes),
        per_m(checkpoints)
    );

    let url = format!("{}/log", svc.base_url());
    let monitor = || cli.run(&["log", "monitor", "--url", &url, "--key", &vkey, "--state", "m.json"]);
    let t = Instant::now();
    let out = monitor()?;
    assert!(out.success(), "{}", out.describe());
    println!("monitor from scratch: {:.1} s — {}", t.elapsed().as_secs_f64(), out.stdout.trim());

    rt.block_on(append(&db.url, n, 1000))?;
    wait_covered(&svc, total + 1000, Duration::from_secs(60))?;
    let t = Instant::now();
    let out = monitor()?;
    assert!(out.success(), "{}", out.describe());
    println!("monitor incrementally (+1000): {:.2} s — {}", t.elapsed().as_secs_f64(), out.stdout.trim());
    let t = Instant::now();
    let out = cli.run(&["audit", "verify", "--checkpoint", "m.json"])?;
    println!(
        "audit verify --checkpoint over {} entries: {:.1} s (success: {})",
        total + 1000,
        t.elapsed().as_secs_f64(),
        out.success()
    );
    svc.stop();
    Ok(())
}
