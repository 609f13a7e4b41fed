//! `est-load`: sets up a fresh `ca-service` (PostgreSQL or SQLite, software keys or
//! SoftHSM) in a temporary directory, registers devices and a provisioning station,
//! and measures EST `simpleenroll` with many concurrent station clients — over
//! keep-alive connections and with a new TLS handshake per enrollment — against
//! `cfssl serve` signing the same CSRs. Prints a table and one line of JSON.

mod http;
mod load;
mod setup;

use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_rustls::TlsConnector;

use crate::load::{Check, Phase, PhaseResult};
use crate::setup::{Deployment, KeySetup, PgDb};

/// Targets the load test is judged against.
const TARGET_KEEPALIVE_VS_PEER: f64 = 1.0;
const TARGET_NEW_CONNECTION_PER_S: f64 = 1500.0;
const TARGET_P99_MS: f64 = 50.0;

#[derive(Debug, Parser)]
#[command(name = "est-load", version, about = "EST enrollment load test of ca-service, with cfssl as the peer")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Set up a fresh service in a temporary directory, run the load phases, report,
    /// and tear everything down (database dropped, processes killed).
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    Postgres,
    Sqlite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KeysKind {
    Software,
    Softhsm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Each client keeps one TLS connection (provisioning stations).
    Keepalive,
    /// A new TCP + TLS handshake (no resumption) per enrollment.
    NewConnection,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Peer {
    /// `cfssl serve` signing the same CSRs over keep-alive HTTP.
    Cfssl,
    None,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Storage of the service: PostgreSQL (a fresh database on DATABASE_URL, default
    /// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable) or SQLite.
    #[arg(long, value_enum, default_value_t = StoreKind::Postgres)]
    store: StoreKind,
    /// Key custody: software key store, or every CA and the HTTPS key on SoftHSM.
    #[arg(long, value_enum, default_value_t = KeysKind::Software)]
    keys: KeysKind,
    /// Concurrent clients per phase.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Enrollments per phase (each uses a different registered device).
    #[arg(long, default_value_t = 50_000)]
    requests: usize,
    /// Requests of the cfssl phase (default: 3 × --requests, as cfssl signs faster).
    /// It is sent the CSRs of our phases, in turn, again from the start when this is
    /// more than their number.
    #[arg(long)]
    peer_requests: Option<usize>,
    /// Time limit per phase, seconds (a phase ends at whichever limit comes first).
    #[arg(long, default_value_t = 60)]
    max_secs: u64,
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// Peer to compare with.
    #[arg(long, value_enum, default_value_t = Peer::Cfssl)]
    peer: Peer,
    /// Tokio worker threads of the load clients (default: one per core).
    #[arg(long)]
    client_threads: Option<usize>,
    /// Keep the temporary directory (config, logs) and print its path.
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    let Cmd::Run(args) = Cli::parse().command;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.client_threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up, runs (interruptible with Ctrl-C), and always drops the database.
async fn run(args: RunArgs) -> Result<()> {
    if args.concurrency == 0 || args.requests == 0 || args.max_secs == 0 {
        bail!("--concurrency, --requests and --max-secs must be at least 1");
    }
    if args.peer == Peer::Cfssl && setup::find_tool("cfssl").is_none() {
        bail!(setup::cfssl_missing());
    }
    progress("locating/building the ca-service release binary …");
    let bin = setup::ca_service_bin().await?;
    let tmp = tempfile::Builder::new().prefix("est-load-").tempdir().context("creating a temporary directory")?;
    let db = match args.store {
        StoreKind::Postgres => Some(PgDb::create().await?),
        StoreKind::Sqlite => None,
    };
    let outcome = tokio::select! {
        r = run_in(&args, bin, tmp.path(), db.as_ref()) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    if let Some(db) = &db {
        if let Err(e) = db.drop_database().await {
            eprintln!("warning: could not drop database {}: {e:#}", db.name);
        }
    }
    if args.keep {
        let dir = tmp.keep();
        eprintln!("kept {}", dir.display());
    }
    outcome
}

/// A registered device's request, in both encodings.
struct Csr {
    /// base64 of the DER (the EST body).
    est_body: Vec<u8>,
    pem: String,
}

/// Distinct P-256 keys and CSRs (CN = device id), made on all cores.
fn make_csrs(ids: &[String]) -> Result<Vec<Csr>> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let chunk = ids.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|id| csr(id)).collect::<Result<Vec<_>>>()))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for h in handles {
            out.extend(h.join().map_err(|_| anyhow!("CSR generation panicked"))??);
        }
        Ok(out)
    })
}

fn csr(cn: &str) -> Result<Csr> {
    let (_, req) = key_and_csr(cn)?;
    Ok(Csr {
        est_body: base64::engine::general_purpose::STANDARD.encode(req.der()).into_bytes(),
        pem: req.pem().context("CSR to PEM")?,
    })
}

fn key_and_csr(cn: &str) -> Result<(rcgen::KeyPair, rcgen::CertificateSigningRequest)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("P-256 key generation")?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let req = params.serialize_request(&key).context("making a CSR")?;
    Ok((key, req))
}

async fn run_in(args: &RunArgs, bin: std::path::PathBuf, dir: &std::path::Path, db: Option<&PgDb>) -> Result<()> {
    let our_modes: Vec<Mode> = match args.mode {
        Mode::Both => vec![Mode::Keepalive, Mode::NewConnection],
        m => vec![m],
    };
    let storage_url = match db {
        Some(db) => db.url.clone(),
        None => format!("sqlite:{}", dir.join("pki.db").display()),
    };
    let keys = match args.keys {
        KeysKind::Software => KeySetup::Software,
        KeysKind::Softhsm => {
            let (conf, module) = setup::softhsm(&dir.join("softhsm")).await?;
            KeySetup::SoftHsm { conf, module }
        }
    };
    let dep = Deployment::new(bin, dir, &storage_url, &keys)?;

    // Devices: one per enrollment of every phase of ours.
    let total = args.requests * our_modes.len();
    let ids: Vec<String> = (1..=total).map(|i| format!("LOAD-{i:06}")).collect();
    progress(format!("generating {total} P-256 CSRs …"));
    let ids_for_gen = ids.clone();
    let csrs = tokio::task::spawn_blocking(move || make_csrs(&ids_for_gen)).await.context("CSR generation")??;
    let (station_key, station_csr) = key_and_csr("est-load-station")?;
    std::fs::write(dir.join("station.csr"), station_csr.pem().context("station CSR to PEM")?)?;
    let mut csv = String::with_capacity(total * 12);
    for id in &ids {
        csv.push_str(id);
        csv.push('\n');
    }
    std::fs::write(dir.join("devices.csv"), csv)?;

    progress(format_args!(
        "setting up ca-service ({} storage, {} keys) in {} …",
        if db.is_some() { "PostgreSQL" } else { "SQLite" },
        if matches!(keys, KeySetup::Software) { "software" } else { "SoftHSM" },
        dir.display()
    ));
    dep.cli(&["init"]).await?;
    progress(format!("CA hierarchy created; registering {total} devices …"));
    dep.cli(&["devices", "import", "--batch", "load", "--model", "generic", "devices.csv"]).await?;
    dep.cli(&["stations", "add", "--csr", "station.csr", "--out", "station.pem"]).await?;
    progress("devices and station registered; starting the server …");
    let station_pem = std::fs::read_to_string(dir.join("station.pem"))?;
    let chain: Vec<Vec<u8>> = pem::parse_many(&station_pem)
        .context("parsing station.pem")?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    // The leaf only: the server trusts the Station CA directly.
    let leaf = chain.into_iter().next().ok_or_else(|| anyhow!("station.pem holds no certificate"))?;

    let server = dep.serve().await?;
    progress(format_args!(
        "ca-service serve pid {} on http://{} and https://{}",
        server.child.id().unwrap_or(0),
        server.http,
        server.https
    ));
    let root = http::get(server.http, "/ca/identity-root.pem", Duration::from_secs(10)).await?;
    if root.status != 200 {
        bail!("GET /ca/identity-root.pem answered {}", root.status);
    }
    let root_der = pem::parse(&root.body).context("the identity root PEM")?.into_contents();
    let tls = load::station_tls(root_der, vec![leaf], station_key.serialize_der())?;
    let connector = TlsConnector::from(tls);
    {
        // One handshake to show what is negotiated.
        let s = load::connect_tls(connector.clone(), server.https).await?;
        let (_, c) = s.get_ref();
        progress(format_args!(
            "TLS: {:?}, {:?}, key exchange {:?}",
            c.protocol_version(),
            c.negotiated_cipher_suite().map(|s| s.suite()),
            c.negotiated_key_exchange_group().map(|g| g.name())
        ));
    }

    let host = server.https.to_string();
    let mut results: Vec<(Mode, PhaseResult)> = Vec::new();
    let mut csrs_by_mode = csrs.chunks(args.requests);
    for mode in &our_modes {
        let part = csrs_by_mode.next().ok_or_else(|| anyhow!("not enough CSRs"))?;
        let keep_alive = *mode == Mode::Keepalive;
        let name = if keep_alive { "est keep-alive" } else { "est new-connection" };
        let requests = part
            .iter()
            .map(|c| {
                http::request(
                    "POST",
                    "/.well-known/est/simpleenroll",
                    &host,
                    Some("application/pkcs10"),
                    &c.est_body,
                    !keep_alive,
                )
            })
            .collect();
        let phase = Phase {
            name: name.to_string(),
            requests,
            limit: args.requests,
            concurrency: args.concurrency,
            time_limit: Duration::from_secs(args.max_secs),
            check: Check::Status200,
        };
        progress(format_args!(
            "running {name}: {} clients, up to {} enrollments or {} s …",
            args.concurrency, args.requests, args.max_secs
        ));
        let (connector, addr) = (connector.clone(), server.https);
        let r = load::run(phase, keep_alive, move || load::connect_tls(connector.clone(), addr)).await?;
        eprintln!("  {}", line(&r));
        results.push((*mode, r));
    }
    let warnings = server.log_tail(10);
    server.stop().await;
    if !warnings.trim().is_empty() {
        eprintln!("last lines of the server log:\n{warnings}");
    }

    let peer = match args.peer {
        Peer::None => None,
        Peer::Cfssl => {
            let cfssl = setup::cfssl(dir).await?;
            progress(format_args!("cfssl serve pid {} on http://{}", cfssl.child.id().unwrap_or(0), cfssl.addr));
            let host = cfssl.addr.to_string();
            let requests = csrs
                .iter()
                .map(|c| {
                    let body = serde_json::json!({ "certificate_request": c.pem }).to_string();
                    http::request("POST", "/api/v1/cfssl/sign", &host, Some("application/json"), body.as_bytes(), false)
                })
                .collect();
            let phase = Phase {
                name: "cfssl keep-alive".to_string(),
                requests,
                limit: args.peer_requests.unwrap_or(3 * args.requests),
                concurrency: args.concurrency,
                time_limit: Duration::from_secs(args.max_secs),
                check: Check::CfsslSuccess,
            };
            progress(format_args!(
                "running cfssl keep-alive: {} clients, up to {} signatures or {} s …",
                args.concurrency,
                args.peer_requests.unwrap_or(3 * args.requests),
                args.max_secs
            ));
            let addr = cfssl.addr;
            let r = load::run(phase, true, move || http::connect(addr)).await;
            let log = cfssl.log_tail(10);
            cfssl.stop().await;
            let r = r?;
            if r.errors > 0 {
                eprintln!("last lines of the cfssl log:\n{log}");
            }
            eprintln!("  {}", line(&r));
            Some(r)
        }
    };
    report(args, &results, peer.as_ref());
    Ok(())
}

/// A progress message on stderr, with the time since the start.
fn progress(msg: impl std::fmt::Display) {
    static START: OnceLock<Instant> = OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[{t:6.1}s] {msg}");
}

fn line(r: &PhaseResult) -> String {
    format!(
        "{:<20} {:>8} {:>6} {:>7.1} {:>9.1} {:>8.2} {:>8.2} {:>8.2}",
        r.name,
        r.successes,
        r.errors,
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.p50_ms,
        r.p99_ms,
        r.max_ms
    )
}

fn report(args: &RunArgs, ours: &[(Mode, PhaseResult)], peer: Option<&PhaseResult>) {
    let find = |m: Mode| ours.iter().find(|(mode, _)| *mode == m).map(|(_, r)| r);
    let ratio = |r: Option<&PhaseResult>| match (r, peer) {
        (Some(r), Some(p)) if p.rate() > 0.0 => Some(r.rate() / p.rate()),
        _ => None,
    };
    let (ka, nc) = (find(Mode::Keepalive), find(Mode::NewConnection));
    let (ka_ratio, nc_ratio) = (ratio(ka), ratio(nc));
    let store = format!("{:?}", args.store).to_lowercase();
    let keys = format!("{:?}", args.keys).to_lowercase();

    println!();
    println!("est-load: store={store} keys={keys} concurrency={}", args.concurrency);
    println!(
        "{:<20} {:>8} {:>6} {:>7} {:>9} {:>8} {:>8} {:>8}",
        "phase", "ok", "errors", "secs", "per sec", "p50 ms", "p99 ms", "max ms"
    );
    for r in ours.iter().map(|(_, r)| r).chain(peer) {
        println!("{}", line(r));
    }
    let fmt_ratio = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{r:.2}"));
    if peer.is_some() {
        println!("ratio ours/cfssl: keep-alive {}, new-connection {}", fmt_ratio(ka_ratio), fmt_ratio(nc_ratio));
    }
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    };
    let t_ratio = ka_ratio.map(|r| r >= TARGET_KEEPALIVE_VS_PEER);
    let t_new = nc.map(|r| r.rate() >= TARGET_NEW_CONNECTION_PER_S);
    let t_p99 = (!ours.is_empty()).then(|| ours.iter().all(|(_, r)| r.p99_ms < TARGET_P99_MS));
    let t_errors = ours.iter().map(|(_, r)| r).chain(peer).all(|r| r.errors == 0);
    println!(
        "targets: keep-alive >= {TARGET_KEEPALIVE_VS_PEER:.1}x cfssl: {}; new-connection >= {TARGET_NEW_CONNECTION_PER_S}/s: {}; p99 < {TARGET_P99_MS} ms: {}; no errors: {}",
        verdict(t_ratio),
        verdict(t_new),
        verdict(t_p99),
        verdict(Some(t_errors))
    );
    let json = serde_json::json!({
        "tool": "est-load",
        "store": store,
        "keys": keys,
        "concurrency": args.concurrency,
        "requests_per_phase": args.requests,
        "peer_requests": args.peer_requests.unwrap_or(3 * args.requests),
        "max_secs": args.max_secs,
        "keepalive": ka.map(PhaseResult::json),
        "new_connection": nc.map(PhaseResult::json),
        "cfssl": peer.map(PhaseResult::json),
        "ratio_keepalive_vs_cfssl": ka_ratio.map(|r| (r * 1000.0).round() / 1000.0),
        "ratio_new_connection_vs_cfssl": nc_ratio.map(|r| (r * 1000.0).round() / 1000.0),
        "targets_met": {
            "keepalive_vs_cfssl": t_ratio,
            "new_connection_rate": t_new,
            "p99": t_p99,
            "no_errors": t_errors,
        },
    });
    println!("{json}");
}
