//! `est-load`: sets up a fresh `ca-service` (PostgreSQL or SQLite, software keys or
//! SoftHSM) in a temporary directory, registers devices and a provisioning station,
//! and measures EST `simpleenroll` with many concurrent station clients — over
//! keep-alive connections and with a new TLS handshake per enrollment — against
//! `cfssl serve` signing the same CSRs. Prints a table and one line of JSON.

mod cpu;
mod http;
mod load;
mod peer;
mod report;
mod setup;

use std::path::Path;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_rustls::TlsConnector;

use crate::load::{Check, Phase, PhaseResult};
use crate::setup::{Deployment, KeySetup, PgDb};

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
pub enum StoreKind {
    Postgres,
    Sqlite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeysKind {
    Software,
    Softhsm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Each client keeps one TLS connection (provisioning stations).
    Keepalive,
    /// A new TCP + TLS handshake (no resumption) per enrollment.
    NewConnection,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// `cfssl serve` doing what we do (TLS, client authentication, every certificate
    /// stored in PostgreSQL before it answers), then plain cfssl as a second line.
    CfsslFull,
    /// Only `cfssl serve` over plain HTTP, storing nothing.
    Cfssl,
    None,
}

/// Which peer phase a result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPhase {
    FullKeepalive,
    FullNewConnection,
    PlainKeepalive,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Storage of the service: PostgreSQL (a fresh database on DATABASE_URL, default
    /// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable) or SQLite.
    #[arg(long, value_enum, default_value_t = StoreKind::Postgres)]
    pub store: StoreKind,
    /// Key custody: software key store, or every CA and the HTTPS key on SoftHSM.
    #[arg(long, value_enum, default_value_t = KeysKind::Software)]
    pub keys: KeysKind,
    /// Concurrent clients per phase.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Enrollments per phase (each uses a different registered device).
    #[arg(long, default_value_t = 50_000)]
    pub requests: usize,
    /// Requests of the cfssl phase (default: 3 × --requests, as cfssl signs faster).
    /// It is sent the CSRs of our phases, in turn, again from the start when this is
    /// more than their number.
    #[arg(long)]
    pub peer_requests: Option<usize>,
    /// Time limit per phase, seconds (a phase ends at whichever limit comes first).
    #[arg(long, default_value_t = 60)]
    pub max_secs: u64,
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    pub mode: Mode,
    /// Peer to compare with.
    #[arg(long, value_enum, default_value_t = Peer::CfsslFull)]
    pub peer: Peer,
    /// Tokio worker threads of the load clients (default: one per core).
    #[arg(long)]
    pub client_threads: Option<usize>,
    /// Before our phases, fill the database with a fleet of this many devices (one
    /// certificate each, a tenth revoked, an audit entry each; `fleet-load`), to
    /// measure enrollment at fleet scale against an empty database. PostgreSQL only.
    #[arg(long, default_value_t = 0)]
    pub fleet: u64,
    /// New connections resume their TLS session (stations that reconnect) instead of
    /// a full handshake each (new devices). Both servers are measured the same way.
    #[arg(long)]
    pub resumption: bool,
    /// Keep the temporary directory (config, logs) and print its path.
    #[arg(long)]
    pub keep: bool,
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
    if args.fleet > 0 && args.store != StoreKind::Postgres {
        bail!("--fleet needs --store postgres");
    }
    if args.concurrency == 0 || args.requests == 0 || args.max_secs == 0 {
        bail!("--concurrency, --requests and --max-secs must be at least 1");
    }
    if args.peer != Peer::None && setup::find_tool("cfssl").is_none() {
        bail!(peer::cfssl_missing());
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
    if args.fleet > 0 {
        let db = db.ok_or_else(|| anyhow!("--fleet needs --store postgres"))?;
        progress(format!("filling the database with a fleet of {} devices …", args.fleet));
        let config = ca_service::config::Config::load(Some(&dep.config)).context("reading the service config")?;
        let spec = fleet_load::FleetSpec::new(args.fleet, std::sync::Arc::new(config));
        let filled = fleet_load::fill(&db.url, &spec).await?;
        progress(format!("fleet filled: {}", filled.json()));
        // One-time work of a store filled behind the service's back, kept out of the
        // phases as a running fleet would have done it long ago: the transparency log's
        // catch-up over the filled audit log (the server would build it while
        // enrolling), and the first CRLs (`serve` below waits for /readyz).
        progress("catch-up checkpoint of the filled audit log (`ca-service log checkpoint`) …");
        let started = Instant::now();
        dep.cli(&["log", "checkpoint"]).await?;
        progress(format_args!("checkpoint written in {:.1} s", started.elapsed().as_secs_f64()));
    }
    progress(format!("CA hierarchy created; registering {total} devices …"));
    dep.cli(&["devices", "import", "--batch", "load", "--model", "generic", "devices.csv"]).await?;
    dep.cli(&["stations", "add", "--csr", "station.csr", "--out", "station.pem"]).await?;
    progress("devices and station registered; starting the server …");
    let station_pem = std::fs::read_to_string(dir.join("station.pem"))?;
    let station_chain: Vec<Vec<u8>> = pem::parse_many(&station_pem)
        .context("parsing station.pem")?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if station_chain.len() < 2 {
        bail!("station.pem holds no chain (leaf and CA)");
    }

    let started = Instant::now();
    let server = dep.serve(args.fleet > 0).await?;
    if args.fleet > 0 {
        progress(format_args!("serve → /readyz 200 (CRLs signed) in {:.1} s", started.elapsed().as_secs_f64()));
    }
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
    // The leaf only: the server knows the Station CA.
    let tls = load::station_tls(root_der, station_chain[..1].to_vec(), station_key.serialize_der(), args.resumption)?;
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
        // Read a response so the session tickets arrive, then see whether a second
        // connection resumes.
        let mut conn = http::Conn::new(s);
        conn.send(&http::request("GET", "/.well-known/est/cacerts", &server.https.to_string(), None, b"", true))
            .await?;
        let again = load::connect_tls(connector.clone(), server.https).await?;
        progress(format_args!("TLS: a second connection's handshake: {:?}", again.get_ref().1.handshake_kind()));
    }

    let host = server.https.to_string();
    let subjects =
        cpu::Subjects { server: Some(("ca-service", server.child.id().unwrap_or(0))), postgres: db.is_some() };
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
        let before = subjects.sample();
        let r = load::run(phase, keep_alive, move || load::connect_tls(connector.clone(), addr)).await?;
        let r = with_cpu(r, &subjects, &before);
        eprintln!("  {}", report::line(&r));
        results.push((*mode, r));
    }
    let warnings = server.log_tail(10);
    server.stop().await;
    if !warnings.trim().is_empty() {
        eprintln!("last lines of the server log:\n{warnings}");
    }

    let station = Station { chain: station_chain, key_pkcs8: station_key.serialize_der() };
    let peers = peer_phases(args, dir, &csrs, &station).await?;
    report::print(args, &results, &peers);
    Ok(())
}

/// The station's identity, as the service issued it.
struct Station {
    /// Leaf first, then its CA(s).
    chain: Vec<Vec<u8>>,
    key_pkcs8: Vec<u8>,
}

/// Runs the peer's phases on the same CSRs: cfssl with TLS, client authentication
/// and its PostgreSQL certdb (keep-alive and new connection, as `--mode` says), then
/// plain cfssl (keep-alive).
async fn peer_phases(
    args: &RunArgs,
    dir: &Path,
    csrs: &[Csr],
    station: &Station,
) -> Result<Vec<(PeerPhase, PhaseResult)>> {
    let mut out = Vec::new();
    let limit = args.peer_requests.unwrap_or(3 * args.requests);
    let bodies: Vec<Vec<u8>> =
        csrs.iter().map(|c| serde_json::json!({ "certificate_request": c.pem }).to_string().into_bytes()).collect();
    let phase = |name: &str, host: &str, close: bool| Phase {
        name: name.to_string(),
        requests: bodies
            .iter()
            .map(|b| http::request("POST", "/api/v1/cfssl/sign", host, Some("application/json"), b, close))
            .collect(),
        limit,
        concurrency: args.concurrency,
        time_limit: Duration::from_secs(args.max_secs),
        check: Check::CfsslSuccess,
    };
    if args.peer == Peer::CfsslFull {
        let db = PgDb::create().await?;
        let r = async {
            let client_cas = station.chain[1..]
                .iter()
                .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())))
                .collect::<String>();
            let full = peer::Full { database_url: &db.url, client_ca_pem: &client_cas };
            let cfssl = peer::cfssl(dir, "cfssl-full", Some(full)).await?;
            let root = cfssl.tls_root_der.clone().ok_or_else(|| anyhow!("cfssl-full has no TLS root"))?;
            // The leaf only, as for our service.
            let tls = load::station_tls(root, station.chain[..1].to_vec(), station.key_pkcs8.clone(), args.resumption)?;
            let connector = TlsConnector::from(tls);
            let pid = cfssl.child.id().unwrap_or(0);
            progress(format_args!(
                "cfssl serve (TLS, client auth, PostgreSQL {}) pid {pid} on https://{}",
                db.name, cfssl.addr
            ));
            let host = cfssl.addr.to_string();
            let subjects = cpu::Subjects { server: Some(("cfssl", pid)), postgres: true };
            let mut results = Vec::new();
            for (mode, kind) in
                [(Mode::Keepalive, PeerPhase::FullKeepalive), (Mode::NewConnection, PeerPhase::FullNewConnection)]
            {
                if args.mode != Mode::Both && args.mode != mode {
                    continue;
                }
                let keep_alive = mode == Mode::Keepalive;
                let name = if keep_alive { "cfssl-full keep-alive" } else { "cfssl-full new-conn" };
                progress(format_args!(
                    "running {name}: {} clients, up to {limit} signatures or {} s …",
                    args.concurrency, args.max_secs
                ));
                let (connector, addr) = (connector.clone(), cfssl.addr);
                let before = subjects.sample();
                let r = load::run(phase(name, &host, !keep_alive), keep_alive, move || {
                    load::connect_tls(connector.clone(), addr)
                })
                .await;
                let r = with_cpu(r?, &subjects, &before);
                if r.errors > 0 {
                    eprintln!("last lines of the cfssl log:\n{}", cfssl.log_tail(10));
                }
                eprintln!("  {}", report::line(&r));
                results.push((kind, r));
            }
            cfssl.stop().await;
            anyhow::Ok(results)
        }
        .await;
        if let Err(e) = db.drop_database().await {
            eprintln!("warning: could not drop database {}: {e:#}", db.name);
        }
        out.extend(r?);
    }
    if matches!(args.peer, Peer::Cfssl | Peer::CfsslFull) {
        let cfssl = peer::cfssl(dir, "cfssl-plain", None).await?;
        let pid = cfssl.child.id().unwrap_or(0);
        progress(format_args!("cfssl serve (plain HTTP, no database) pid {pid} on http://{}", cfssl.addr));
        let host = cfssl.addr.to_string();
        let name = "cfssl-plain keep-alive";
        progress(format_args!(
            "running {name}: {} clients, up to {limit} signatures or {} s …",
            args.concurrency, args.max_secs
        ));
        let subjects = cpu::Subjects { server: Some(("cfssl", pid)), postgres: false };
        let before = subjects.sample();
        let addr = cfssl.addr;
        let r = load::run(phase(name, &host, false), true, move || http::connect(addr)).await;
        // Sampled while cfssl still runs.
        let r = r.map(|r| with_cpu(r, &subjects, &before));
        let log = cfssl.log_tail(10);
        cfssl.stop().await;
        let r = r?;
        if r.errors > 0 {
            eprintln!("last lines of the cfssl log:\n{log}");
        }
        eprintln!("  {}", report::line(&r));
        out.push((PeerPhase::PlainKeepalive, r));
    }
    Ok(out)
}

/// The phase's result with the CPU each process spent on it.
fn with_cpu(mut r: PhaseResult, subjects: &cpu::Subjects, before: &cpu::Sample) -> PhaseResult {
    r.cpu_us = subjects.since(before).per_op_us(r.successes);
    r
}

/// A progress message on stderr, with the time since the start.
fn progress(msg: impl std::fmt::Display) {
    static START: OnceLock<Instant> = OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[{t:6.1}s] {msg}");
}
