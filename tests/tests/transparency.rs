//! The audit log as a transparency log, attacked as an outsider with write access to
//! the database would, on both stores: a monitor holding an earlier checkpoint (over
//! HTTP, no database) and `audit verify` (with the stored checkpoints and
//! `--checkpoint FILE`) catch a rewritten entry and a deleted tail and name the entry;
//! the untouched log passes both.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ca_service::audit::{AuditEntry, AuditEvent};
use e2e_tests::{make_csr, path_str, Cli, Service, TestDb, P256};

/// The size in the served checkpoint.
fn served_size(svc: &Service) -> Result<u64> {
    let (status, body) = e2e_tests::http_get(svc.http, "/log/checkpoint")?;
    if status != 200 {
        bail!("GET /log/checkpoint: {status}");
    }
    let text = String::from_utf8(body)?;
    Ok(text.lines().nth(1).unwrap_or("0").parse()?)
}

/// Waits (bounded) for a checkpoint that covers the whole log.
fn wait_covered(svc: &Service, entries: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while served_size(svc)? < entries {
        if Instant::now() > deadline {
            bail!("no checkpoint of size {entries} within 15 s:\n{}", svc.log_text());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

struct Db<'a> {
    exec: &'a dyn Fn(&str) -> Result<u64>,
    /// A BLOB/BYTEA literal of the dialect.
    blob: fn(&[u8]) -> String,
    /// (time_us, actor, action, target, outcome, details) of entry `seq`.
    entry: &'a dyn Fn(i64) -> Result<(i64, [String; 5])>,
}

fn monitor(cli: &Cli, svc: &Service, vkey: &str) -> Result<e2e_tests::Output> {
    let url = format!("{}/log", svc.base_url());
    cli.run(&["log", "monitor", "--url", &url, "--key", vkey, "--state", "monitor.json"])
}

fn scenario(cli: &Cli, db: &Db<'_>) -> Result<()> {
    cli.run_ok(&["init"])?;
    for i in 0..3 {
        let csr = make_csr(&cli.workdir, &format!("d{i}"), P256, &format!("/CN=SN-TLOG-{i}"), &[])?;
        cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", "d.pem"])?;
    }
    let vkey = cli.run_ok(&["log", "key"])?.stdout.trim().to_string();
    assert!(vkey.contains("/audit-log+"), "{vkey}");
    let cli = cli.clone().env("CA_LOG__PUBLIC_ENTRIES", "true").env("CA_LOG__CHECKPOINT_INTERVAL_MS", "200");
    let svc = Service::start(&cli)?;
    wait_covered(&svc, cli.audit_entries()?)?;

    // The untouched log passes, first from scratch, then incrementally.
    let out = monitor(&cli, &svc, &vkey)?;
    assert!(out.success() && out.stdout.contains("consistent"), "{}", out.describe());
    let csr = make_csr(&cli.workdir, "d9", P256, "/CN=SN-TLOG-9", &[])?;
    cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", "d.pem"])?;
    let n = cli.audit_entries()?;
    wait_covered(&svc, n)?;
    let out = monitor(&cli, &svc, &vkey)?;
    assert!(out.success() && out.stdout.contains(" new)"), "{}", out.describe());
    let out = cli.run(&["audit", "verify", "--checkpoint", "monitor.json"])?;
    assert!(out.success(), "{}", out.describe());

    // A monitor with the wrong key refuses the checkpoint.
    let (_, other) = vkey.rsplit_once('+').unwrap();
    let wrong = vkey.replace(other, "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefgh");
    let out = cli.run(&[
        "log",
        "monitor",
        "--url",
        &format!("{}/log", svc.base_url()),
        "--key",
        &wrong,
        "--state",
        "other.json",
    ])?;
    assert!(!out.success(), "{}", out.describe());

    // Attack 1: entry 3 edited, its leaf hash recomputed (no key: nothing re-signed).
    let (time_us, [actor, action, target, outcome, details]) = (db.entry)(3)?;
    let forged = AuditEntry {
        seq: 3,
        time_us,
        event: AuditEvent { actor, action, target, outcome: format!("{outcome} (forged)"), details },
        leaf_hash: None,
    };
    let original_leaf =
        AuditEntry { event: AuditEvent { outcome: outcome.clone(), ..forged.event.clone() }, ..forged.clone() }
            .computed_leaf_hash();
    let set = |e: &AuditEntry, h: [u8; 32]| {
        format!(
            "UPDATE audit_log SET outcome = '{}', leaf_hash = {} WHERE seq = 3",
            e.event.outcome.replace('\'', "''"),
            (db.blob)(&h)
        )
    };
    assert_eq!((db.exec)(&set(&forged, forged.computed_leaf_hash()))?, 1);
    let out = monitor(&cli, &svc, &vkey)?;
    assert!(!out.success() && out.stderr.contains("first bad entry 3"), "monitor: {}", out.describe());
    let out = cli.run(&["audit", "verify"])?;
    assert!(!out.success() && out.stderr.contains("edited or rewritten"), "audit verify: {}", out.describe());
    let out = cli.run(&["audit", "verify", "--checkpoint", "monitor.json"])?;
    assert!(!out.success() && out.stderr.contains("entries 1..="), "audit verify --checkpoint: {}", out.describe());
    // Undone, the log passes again: each detection was about the edit.
    let restored = AuditEntry { event: AuditEvent { outcome, ..forged.event.clone() }, ..forged.clone() };
    assert_eq!((db.exec)(&set(&restored, original_leaf))?, 1);
    let out = monitor(&cli, &svc, &vkey)?;
    assert!(out.success(), "{}", out.describe());
    cli.run_ok(&["audit", "verify", "--checkpoint", "monitor.json"])?;

    // Attack 2: the newest entries deleted.
    let n = served_size(&svc)?;
    assert_eq!((db.exec)(&format!("DELETE FROM audit_log WHERE seq > {}", n - 3))?, 3);
    let out = monitor(&cli, &svc, &vkey)?;
    assert!(!out.success() && out.stderr.contains("first bad entry"), "monitor: {}", out.describe());
    let out = cli.run(&["audit", "verify"])?;
    assert!(
        !out.success() && out.stderr.contains(&format!("entries {}..={n} were removed", n - 2)),
        "{}",
        out.describe()
    );
    // The signer refuses to sign over the gap: the served checkpoint stays.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(served_size(&svc)?, n);
    assert!(
        svc.log_text().contains("does not extend checkpoint") || svc.log_text().contains("were removed"),
        "{}",
        svc.log_text()
    );
    svc.stop();
    Ok(())
}

#[test]
fn sqlite_log_attacks_are_caught() -> Result<()> {
    let dir = e2e_tests::workdir("tlog-sqlite")?;
    let cli = Cli::evaluation(dir.path());
    let d = dir.path().to_path_buf();
    let exec = |sql: &str| Ok(e2e_tests::sqlite_execute(&d, sql)? as u64);
    let entry = |seq: i64| {
        let t = e2e_tests::sqlite_i64(&d, &format!("SELECT time_us FROM audit_log WHERE seq = {seq}"))?;
        let f = e2e_tests::sqlite_strings(
            &d,
            &format!("SELECT actor || char(10) || action || char(10) || target || char(10) || outcome || char(10) || details FROM audit_log WHERE seq = {seq}"),
        )?;
        let parts: Vec<String> = f[0].splitn(5, '\n').map(str::to_string).collect();
        Ok((t, <[String; 5]>::try_from(parts).unwrap()))
    };
    scenario(&cli, &Db { exec: &exec, blob: |h| format!("X'{}'", hex::encode(h)), entry: &entry })
}

#[test]
fn postgres_log_attacks_are_caught() -> Result<()> {
    let db = TestDb::create()?;
    let dir = e2e_tests::workdir("tlog-pg")?;
    let cli = Cli::evaluation(dir.path()).env("CA_STORAGE__URL", &db.url);
    let exec = |sql: &str| db.execute(sql);
    let entry = |seq: i64| {
        let t = db.query_i64(&format!("SELECT time_us FROM audit_log WHERE seq = {seq}"))?;
        let f = db.query_strings(&format!(
            "SELECT actor || chr(10) || action || chr(10) || target || chr(10) || outcome || chr(10) || details FROM audit_log WHERE seq = {seq}"
        ))?;
        let parts: Vec<String> = f[0].splitn(5, '\n').map(str::to_string).collect();
        Ok((t, <[String; 5]>::try_from(parts).unwrap()))
    };
    scenario(&cli, &Db { exec: &exec, blob: |h| format!("'\\x{}'::bytea", hex::encode(h)), entry: &entry })
}
