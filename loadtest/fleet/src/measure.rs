//! `fleet-load measure`: the fleet-scale costs of the service on a filled database,
//! each phase bounded in time, printed as a table and returned as one JSON object.
//!
//! 1. the catch-up checkpoint of the filled audit log (`ca-service log checkpoint`);
//! 2. `serve` start to `/readyz` 200 — first with no CRLs of the issuing CA published
//!    (start signs them all before it listens), then again with fresh ones — and RSS;
//! 3. OCSP over random serials with a cold cache (each asked once): throughput,
//!    p50/p99, RSS and VmHWM after; a shorter second pass over the same serials (warm);
//! 4. the complete CRL and one shard's, built from the store and signed, with the
//!    peak RSS of the process doing it (`fleet-load crl`, a child);
//! 5. report queries and the revocation of a batch (see [`crate::admin`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ca_service::config::Config;
use rand::Rng;
use tokio_postgres::Client;

use crate::ocsp::{Issuer, Status, Target};
use crate::serve::{Memory, Service};

/// What to measure with.
#[derive(Clone, Debug)]
pub struct MeasureSpec {
    /// The service's configuration (its storage URL is the filled database).
    pub config: PathBuf,
    /// The `ca-service` binary (release build).
    pub bin: PathBuf,
    /// Where the servers' logs go.
    pub log_dir: PathBuf,
    pub issuer: String,
    /// Concurrent OCSP clients, and how long the cold pass runs.
    pub clients: usize,
    pub ocsp_secs: u64,
    /// Random serials drawn for the OCSP passes (each asked once in the cold pass
    /// unless the pass outruns them).
    pub ocsp_serials: usize,
    /// Bound of each phase that waits on the service (starts, checkpoint, CRLs, revocation).
    pub phase_timeout: Duration,
}

/// The figures, printed as they come and kept by key.
#[derive(Debug, Default)]
pub struct Results {
    pub map: serde_json::Map<String, serde_json::Value>,
}

impl Results {
    pub fn put(&mut self, key: &str, label: &str, value: f64, unit: &str) {
        println!("  {label:<60} {value:>12.1} {unit}");
        let rounded = (value * 10.0).round() / 10.0;
        let v = if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
            serde_json::json!(rounded as i64)
        } else {
            serde_json::json!(rounded)
        };
        self.map.insert(key.to_string(), v);
    }
    pub fn note(&mut self, key: &str, value: serde_json::Value) {
        self.map.insert(key.to_string(), value);
    }
    fn memory(&mut self, key: &str, what: &str, m: Memory) {
        self.put(&format!("{key}_rss_mb"), &format!("{what}: RSS"), m.rss_kb as f64 / 1024.0, "MiB");
        self.put(&format!("{key}_hwm_mb"), &format!("{what}: VmHWM"), m.hwm_kb as f64 / 1024.0, "MiB");
    }
}

pub async fn measure(spec: &MeasureSpec) -> Result<serde_json::Value> {
    let config = Config::load(Some(&spec.config)).context("loading the service's configuration")?;
    let db = crate::connect(&config.storage.url).await?;
    let svc = Service {
        bin: spec.bin.clone(),
        config: spec.config.clone(),
        http: config.server.http,
        https: config.server.https,
        log_dir: spec.log_dir.clone(),
    };
    let mut r = Results::default();
    fleet(&db, &spec.issuer, &mut r).await?;
    let ca_der: Vec<u8> = db.query_one("SELECT cert_der FROM cas WHERE name = $1", &[&spec.issuer]).await?.get(0);
    let issuer = Arc::new(Issuer::from_ca_der(&ca_der)?);

    println!("audit log");
    let (_, took) = svc.run(&["log", "checkpoint"], spec.phase_timeout).await?;
    r.put("checkpoint_s", "catch-up checkpoint of the filled log (`log checkpoint`)", took.as_secs_f64(), "s");

    println!("start");
    let first = svc.start(1, spec.phase_timeout).await?;
    r.put("start_signing_crls_ms", "serve → /readyz 200, CRLs to sign", ms(first.ready_after), "ms");
    r.memory("start_signing_crls", "  after that start", first.memory());
    first.stop().await?;
    let running = svc.start(2, spec.phase_timeout).await?;
    r.put("start_ms", "serve → /readyz 200, CRLs fresh", ms(running.ready_after), "ms");
    r.memory("start", "  after that start", running.memory());

    println!("OCSP ({} clients, keep-alive, loopback)", spec.clients);
    let targets = Arc::new(sample(&db, &spec.issuer, spec.ocsp_serials).await?);
    let before = running.memory();
    let (duration, clients) = (secs(spec.ocsp_secs), spec.clients);
    let cold = crate::ocsp::load(svc.http, issuer.clone(), targets.clone(), clients, duration, true).await?;
    ocsp_rows(&mut r, "ocsp_cold", "cold cache", &cold);
    let after = running.memory();
    r.memory("ocsp_cold", "  after the cold pass", after);
    let grown = after.rss_kb.saturating_sub(before.rss_kb) as f64 * 1024.0 / cold.distinct.max(1) as f64;
    r.put("ocsp_rss_bytes_per_serial", "  RSS growth per distinct serial asked", grown, "B");
    // An hour of a fleet whose devices each ask once an hour: every certificate asked.
    let certs = r.map.get("certificates").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    let projected = (before.rss_kb as f64 * 1024.0 + grown * certs) / 1048576.0;
    r.put(
        "ocsp_rss_fleet_projected_mb",
        "  projected RSS once every certificate was asked (if kept)",
        projected,
        "MiB",
    );
    let seen = Arc::new(targets[..(cold.distinct as usize).min(targets.len())].to_vec());
    let warm =
        crate::ocsp::load(svc.http, issuer.clone(), seen, clients, secs(spec.ocsp_secs.div_ceil(2)), false).await?;
    ocsp_rows(&mut r, "ocsp_warm", "warm (the same serials again)", &warm);
    r.memory("ocsp_warm", "  after the warm pass", running.memory());

    println!("CRLs of {} (built from the store and signed, in a process of its own)", spec.issuer);
    crl(&mut r, spec, "crl_full", "complete CRL", None).await?;
    if config.crl.shards > 1 {
        crl(&mut r, spec, "crl_shard", "one shard's CRL (shard 0)", Some(0)).await?;
    }

    let anchors: Vec<Vec<u8>> = db.query("SELECT cert_der FROM cas", &[]).await?.iter().map(|row| row.get(0)).collect();
    crate::admin::reports(&svc, &db, &anchors, &mut r).await?;
    crate::admin::revocations(&svc, &db, &anchors, &issuer, &spec.issuer, spec.phase_timeout, &mut r).await?;
    r.memory("end", "serve at the end", running.memory());
    running.stop().await?;
    Ok(serde_json::Value::Object(r.map))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s.max(1))
}

/// The fleet's size, for the record.
async fn fleet(db: &Client, issuer: &str, r: &mut Results) -> Result<()> {
    println!("fleet");
    let one = |sql: &'static str| async move { db.query_one(sql, &[]).await.map(|row| row.get::<_, i64>(0)) };
    r.put("devices", "devices", one("SELECT count(*) FROM devices").await? as f64, "");
    let certs: i64 = db.query_one("SELECT count(*) FROM certificates WHERE issuer = $1", &[&issuer]).await?.get(0);
    r.put("certificates", &format!("certificates of {issuer}"), certs as f64, "");
    let sql = "SELECT count(*) FROM certificates WHERE issuer = $1 AND status = 'revoked'";
    let revoked: i64 = db.query_one(sql, &[&issuer]).await?.get(0);
    r.put("revoked", "  revoked", revoked as f64, "");
    r.put("audit_entries", "audit log entries", one("SELECT coalesce(max(seq), 0) FROM audit_log").await? as f64, "");
    let size = "SELECT pg_database_size(current_database())::float8 / 1048576";
    r.put("database_mb", "database size", db.query_one(size, &[]).await?.get::<_, f64>(0), "MiB");
    Ok(())
}

/// Up to `n` distinct certificates of `issuer` drawn at random (by id: no scan),
/// in random order, with the status their records imply.
pub async fn sample(db: &Client, issuer: &str, n: usize) -> Result<Vec<Target>> {
    let row = db.query_one("SELECT min(id), max(id) FROM certificates WHERE issuer = $1", &[&issuer]).await?;
    let (Some(lo), Some(hi)): (Option<i64>, Option<i64>) = (row.get(0), row.get(1)) else {
        bail!("no certificates of {issuer}");
    };
    // Distinct ids, at most as many as there are (a small fleet is asked about whole).
    let n = n.min(usize::try_from(hi - lo + 1)?);
    let mut ids = std::collections::HashSet::with_capacity(n);
    let mut rng = rand::rng();
    while ids.len() < n {
        ids.insert(rng.random_range(lo..=hi));
    }
    let ids: Vec<i64> = ids.into_iter().collect();
    let mut out = Vec::with_capacity(n);
    for part in ids.chunks(20_000) {
        let sql = "SELECT serial_hex, status FROM certificates WHERE id = ANY($1) AND issuer = $2";
        for row in db.query(sql, &[&part, &issuer]).await? {
            let (serial, status): (String, String) = (row.get(0), row.get(1));
            let stored = if status == "revoked" { Status::Revoked } else { Status::Good };
            out.push(Target { serial: hex::decode(serial)?, stored });
        }
    }
    Ok(out)
}

fn ocsp_rows(r: &mut Results, key: &str, what: &str, o: &crate::ocsp::LoadReport) {
    r.put(&format!("{key}_per_sec"), &format!("{what}: throughput ({} requests)", o.requests), o.per_sec(), "req/s");
    r.put(&format!("{key}_p50_ms"), "  p50", o.p50_us as f64 / 1000.0, "ms");
    r.put(&format!("{key}_p99_ms"), "  p99", o.p99_us as f64 / 1000.0, "ms");
    r.put(&format!("{key}_max_ms"), "  max", o.max_us as f64 / 1000.0, "ms");
    r.put(&format!("{key}_distinct"), "  distinct serials asked", o.distinct as f64, "");
    r.put(&format!("{key}_errors"), "  errors (not 200, not a successful answer for the serial)", o.errors as f64, "");
    let checked = format!("  status not as stored, of {} answers checked", o.checked);
    r.put(&format!("{key}_mismatched"), &checked, o.mismatched as f64, "");
}

/// Runs `fleet-load crl` (this binary) as a child, bounded.
async fn crl(r: &mut Results, spec: &MeasureSpec, key: &str, what: &str, shard: Option<u32>) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("crl").arg("--config").arg(&spec.config).arg("--ca").arg(&spec.issuer).kill_on_drop(true);
    if let Some(s) = shard {
        cmd.arg("--shard").arg(s.to_string());
    }
    let out = tokio::time::timeout(spec.phase_timeout, cmd.output()).await.context("the CRL child timed out")??;
    if !out.status.success() {
        bail!("fleet-load crl failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(text.lines().last().unwrap_or("")).context("the CRL child's answer")?;
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    r.put(&format!("{key}_ms"), &format!("{what}: {} entries, {} bytes", v["entries"], v["der_bytes"]), f("ms"), "ms");
    r.put(&format!("{key}_peak_rss_mb"), "  peak RSS of the process building it", f("peak_rss_mb"), "MiB");
    r.put(
        &format!("{key}_rss_rise_mb"),
        "  … above its RSS before the build",
        f("peak_rss_mb") - f("rss_before_mb"),
        "MiB",
    );
    r.note(&format!("{key}_entries"), v["entries"].clone());
    Ok(())
}

/// A Markdown table of the figures of several runs (JSON lines in `files`), one
/// column per run, ordered by fleet size: how each cost grows.
pub fn table(files: &[PathBuf]) -> Result<String> {
    let mut runs: Vec<serde_json::Map<String, serde_json::Value>> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        runs.extend(text.lines().filter_map(|l| match serde_json::from_str(l) {
            Ok(serde_json::Value::Object(m)) => Some(m),
            _ => None,
        }));
    }
    runs.sort_by(|a, b| a["devices"].as_f64().unwrap_or(0.0).total_cmp(&b["devices"].as_f64().unwrap_or(0.0)));
    let mut keys: Vec<&String> = Vec::new();
    for k in runs.iter().flat_map(|m| m.keys()) {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut out = format!(
        "| figure |{}\n|---|{}\n",
        runs.iter().map(|m| format!(" {} |", m["devices"])).collect::<String>(),
        "---:|".repeat(runs.len())
    );
    for k in keys {
        let cells: String =
            runs.iter().map(|m| format!(" {} |", m.get(k).map_or("—".to_string(), |v| v.to_string()))).collect();
        out.push_str(&format!("| {k} |{cells}\n"));
    }
    Ok(out)
}
