//! `fleet-load`: a test tool, not a product path. It fills a PostgreSQL database that
//! `ca-service init` prepared with a realistic device fleet — devices in batches of
//! 100k, one certificate per enrolled device issued under the real `device` CA's name
//! with the service's DER shape, a share revoked, and an audit log whose leaf hashes
//! are the service's — and measures the service on it (see `measure`).
//!
//! The certificates' signatures are NOT valid (see [`template`]): their sizes, names,
//! extensions, serials, validity and CRL shards are what the service issues.

pub mod admin;
pub mod copy;
pub mod crl;
pub mod http;
pub mod measure;
pub mod ocsp;
pub mod rows;
pub mod schema;
pub mod serve;
pub mod template;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use ca_service::config::Config;
use tokio::sync::mpsc;
use tokio_postgres::{Client, NoTls};

use crate::copy::Written;
use crate::rows::{Chunk, Layout};
use crate::template::Templates;

/// Devices generated per unit of work.
const CHUNK: u64 = 5000;
/// Chunks generated ahead of the COPY streams.
const AHEAD: usize = 4;

/// A chunk of rows, encoded for the three COPY streams.
struct Encoded {
    devices: bytes::Bytes,
    certs: bytes::Bytes,
    audit: bytes::Bytes,
    /// Audit entries in `audit` (the log may end inside the chunk).
    entries: u64,
    revoked: u64,
    /// The first chunk's serials: what filler audit entries name.
    targets: Vec<String>,
}

/// What to fill.
#[derive(Clone, Debug)]
pub struct FleetSpec {
    pub devices: u64,
    /// Revoked certificates (default: a tenth of the devices).
    pub revoked: Option<u64>,
    /// Audit entries (default: as many as devices).
    pub audit: Option<u64>,
    pub batch_size: u64,
    /// The service's configuration: device profile, models, public URLs, CRL shards.
    pub config: Arc<Config>,
    /// The issuing CA (a name in table `cas`).
    pub issuer: String,
    /// Keep keys and indexes during the COPY (slower; for comparison).
    pub keep_indexes: bool,
}

impl FleetSpec {
    pub fn new(devices: u64, config: Arc<Config>) -> Self {
        Self {
            devices,
            revoked: None,
            audit: None,
            batch_size: 100_000,
            config,
            issuer: "device".into(),
            keep_indexes: false,
        }
    }
}

/// What was filled and how fast.
#[derive(Clone, Debug, Default)]
pub struct FillReport {
    pub devices: Written,
    pub certificates: Written,
    pub revoked: u64,
    pub audit: Written,
    /// COPY of all three tables (they run at once).
    pub copy: Duration,
    /// Rebuilding keys and indexes.
    pub indexes: Duration,
    pub analyze: Duration,
    pub total: Duration,
    /// CPU seconds during the COPY: this process (generating rows) and the three
    /// PostgreSQL backends (storing them) — which of the two the 2 cores wait for.
    pub cpu_generate: f64,
    pub cpu_postgres: f64,
}

impl FillReport {
    pub fn json(&self) -> serde_json::Value {
        let r2 = |x: f64| (x * 100.0).round() / 100.0;
        let w = |w: &Written| serde_json::json!({ "rows": w.rows, "secs": r2(w.elapsed.as_secs_f64()), "rows_per_sec": w.per_sec().round() as u64 });
        serde_json::json!({
            "devices": w(&self.devices), "certificates": w(&self.certificates), "audit_log": w(&self.audit),
            "revoked": self.revoked, "copy_secs": r2(self.copy.as_secs_f64()), "index_secs": r2(self.indexes.as_secs_f64()),
            "analyze_secs": r2(self.analyze.as_secs_f64()), "total_secs": r2(self.total.as_secs_f64()),
            "cpu_generate_secs": r2(self.cpu_generate), "cpu_postgres_secs": r2(self.cpu_postgres),
        })
    }
}

impl std::fmt::Display for FillReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, w) in [("devices", &self.devices), ("certificates", &self.certificates), ("audit_log", &self.audit)]
        {
            writeln!(
                f,
                "  {name:<13} {:>10} rows  {:>7.1} s  {:>9.0} rows/s",
                w.rows,
                w.elapsed.as_secs_f64(),
                w.per_sec()
            )?;
        }
        writeln!(f, "  revoked       {:>10}", self.revoked)?;
        write!(
            f,
            "  COPY {:.1} s, keys+indexes {:.1} s, VACUUM ANALYZE {:.1} s, total {:.1} s",
            self.copy.as_secs_f64(),
            self.indexes.as_secs_f64(),
            self.analyze.as_secs_f64(),
            self.total.as_secs_f64()
        )?;
        write!(
            f,
            "\n  CPU during the COPY: generating {:.1} s, PostgreSQL backends {:.1} s",
            self.cpu_generate, self.cpu_postgres
        )
    }
}

/// CPU seconds (user + system) a process has used so far; 0 if unreadable.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn backend_pid(client: &Client) -> Result<u32> {
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    Ok(u32::try_from(pid)?)
}

/// Connects (no TLS: loopback; DESIGN §8's `sslmode=disable`).
pub async fn connect(database_url: &str) -> Result<Client> {
    let (client, connection) =
        tokio_postgres::connect(database_url, NoTls).await.context("connecting to PostgreSQL")?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("fleet-load: PostgreSQL connection: {e}");
        }
    });
    // Session settings only (never the cluster's): a bulk load's.
    client.batch_execute("SET synchronous_commit = off; SET maintenance_work_mem = '256MB'").await?;
    Ok(client)
}

/// Fills the database at `database_url` (initialised by `ca-service init`, with no
/// devices yet) with `spec`'s fleet. Secondary indexes and keys of the three tables
/// are dropped for the COPY and rebuilt from their own definitions afterwards.
pub async fn fill(database_url: &str, spec: &FleetSpec) -> Result<FillReport> {
    let started = Instant::now();
    let mut main = connect(database_url).await?;
    let ca_der: Vec<u8> = main
        .query_opt("SELECT cert_der FROM cas WHERE name = $1", &[&spec.issuer])
        .await?
        .with_context(|| format!("no CA '{}' in table cas: run `ca-service init` first", spec.issuer))?
        .get(0);
    let present: i64 = main.query_one("SELECT count(*) FROM devices", &[]).await?.get(0);
    if present > 0 {
        bail!("the database has {present} devices already; fill an initialised, empty one");
    }
    let last_seq: i64 = main.query_one("SELECT coalesce(max(seq), 0) FROM audit_log", &[]).await?.get(0);
    let models: Vec<String> = spec.config.models.keys().cloned().collect();
    let oids = models
        .iter()
        .map(|m| const_oid::ObjectIdentifier::new(&spec.config.models[m].oid).with_context(|| format!("model {m}")))
        .collect::<Result<Vec<_>>>()?;
    let id_len = Layout::id_len_for(spec.devices);
    let templates = Arc::new(Templates::build(&spec.config, &spec.issuer, &ca_der, &oids, id_len)?);
    let (profile, validity_days) = template::device_profile(&spec.config, &spec.issuer)
        .map(|(name, p)| (name.to_string(), i64::from(p.validity_days)))?;
    let layout = Arc::new(Layout {
        devices: spec.devices,
        revoked: spec.revoked.unwrap_or(spec.devices / 10),
        batch_size: spec.batch_size.max(1),
        now: ca_service::issuance::unix(SystemTime::now()),
        models,
        id_len,
        span: (validity_days - 5).max(1) * 86_400,
        issuer: spec.issuer.clone(),
        profile: profile.clone(),
    });
    let saved = schema::save(&main).await?;
    if !spec.keep_indexes {
        schema::drop(&mut main, &saved).await?;
    }
    let (certs_db, audit_db) = (connect(database_url).await?, connect(database_url).await?);
    let backends = [backend_pid(&main).await?, backend_pid(&certs_db).await?, backend_pid(&audit_db).await?];
    let pg_cpu = || backends.iter().map(|&p| cpu_secs(p)).sum::<f64>();
    let (own_before, pg_before) = (cpu_secs(std::process::id()), pg_cpu());
    let copy_started = Instant::now();
    let (dtx, drx) = mpsc::channel(AHEAD);
    let (ctx, crx) = mpsc::channel(AHEAD);
    let (atx, arx) = mpsc::channel(AHEAD);
    let last_allowed = last_seq + i64::try_from(spec.audit.unwrap_or(spec.devices))?;
    let mut revoked = 0u64;
    let produce = async {
        let mut pending = VecDeque::new();
        let (mut from, mut targets, mut seq) = (0, Vec::new(), last_seq);
        loop {
            while pending.len() < AHEAD && from < layout.devices {
                let to = (from + CHUNK).min(layout.devices);
                let (layout, templates, profile) = (layout.clone(), templates.clone(), profile.clone());
                let first_seq = last_seq + 1 + i64::try_from(layout.events_before(from))?;
                pending.push_back(tokio::task::spawn_blocking(move || -> Result<Encoded> {
                    let Chunk { devices, certs, events } = layout.chunk(&templates, from, to)?;
                    let targets = if from == 0 { certs.iter().map(|c| c.serial_hex.clone()).collect() } else { vec![] };
                    let (audit, entries) = copy::audit(events, first_seq, last_allowed);
                    Ok(Encoded {
                        revoked: certs.iter().filter(|c| c.status == "revoked").count() as u64,
                        devices: copy::devices(&devices).into_bytes(),
                        certs: copy::certificates(&certs, &layout.issuer, &profile)?.into_bytes(),
                        audit: audit.into_bytes(),
                        entries,
                        targets,
                    })
                }));
                from = to;
            }
            let Some(next) = pending.pop_front() else { break };
            let e = next.await.context("generating rows")??;
            (revoked, seq) = (revoked + e.revoked, seq + i64::try_from(e.entries)?);
            targets.extend(e.targets.into_iter().map(|s| format!("certificate:{}/{s}", spec.issuer)));
            // A closed channel means its stream failed: its error is reported below.
            if dtx.send(e.devices).await.is_err()
                || ctx.send(e.certs).await.is_err()
                || atx.send(e.audit).await.is_err()
            {
                return Ok(());
            }
        }
        // Closing the channels ends the streams.
        drop((dtx, ctx));
        if seq < last_allowed && !targets.is_empty() {
            let count = u64::try_from(last_allowed - seq)?;
            let time_us = ca_service::issuance::unix(SystemTime::now()) * 1_000_000;
            let (reads, _) =
                tokio::task::spawn_blocking(move || copy::reads(&targets, seq + 1, count, time_us)).await?;
            let _ = atx.send(reads.into_bytes()).await;
        }
        drop(atx);
        Ok::<_, anyhow::Error>(())
    };
    let ((), d, c, a) = tokio::try_join!(
        produce,
        copy::stream(&main, copy::DEVICES_SQL, drx),
        copy::stream(&certs_db, copy::CERTS_SQL, crx),
        copy::stream(&audit_db, copy::AUDIT_SQL, arx),
    )?;
    let copy = copy_started.elapsed();
    let (cpu_generate, cpu_postgres) = (cpu_secs(std::process::id()) - own_before, pg_cpu() - pg_before);
    let t = Instant::now();
    if !spec.keep_indexes {
        schema::restore(&main, &certs_db, &saved).await?;
    }
    let indexes = t.elapsed();
    let t = Instant::now();
    // VACUUM too, as autovacuum would have by now on a fleet that has been running: a
    // COPY leaves the visibility map unset, and the index-only scans (the CRLs'
    // `certificates_crl`, the counts' day) would read the heap for every row.
    main.batch_execute("VACUUM (ANALYZE) devices, certificates, audit_log").await.context("VACUUM ANALYZE")?;
    let analyze = t.elapsed();
    let total = started.elapsed();
    Ok(FillReport {
        devices: d,
        certificates: c,
        revoked,
        audit: a,
        copy,
        indexes,
        analyze,
        total,
        cpu_generate,
        cpu_postgres,
    })
}
