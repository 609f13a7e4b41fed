//! `fleet-load`: fill a PostgreSQL database with a realistic fleet, measure the service
//! on it, or both on a throw-away database (`run`). See `loadtest/fleet/README.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use fleet_load::measure::MeasureSpec;
use fleet_load::FleetSpec;

#[derive(Parser)]
#[command(name = "fleet-load", about = "Fill PostgreSQL with a realistic device fleet and measure ca-service on it")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fill a database that `ca-service init` prepared (and that has no devices yet).
    Fill {
        #[arg(long)]
        database_url: String,
        /// The service's configuration (profile, models, URLs, CRL shards); default: built-in defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Measure the service on a filled database (the configuration's storage URL).
    Measure {
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        measure: MeasureArgs,
    },
    /// Create a database, `ca-service init`, fill, measure, drop the database.
    Run {
        #[command(flatten)]
        fleet: FleetArgs,
        #[command(flatten)]
        measure: MeasureArgs,
        /// A database to connect to for CREATE/DROP DATABASE.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")]
        admin_url: String,
        #[arg(long, default_value_t = 16)]
        crl_shards: u32,
        /// Keep the database and the directory (their names are printed).
        #[arg(long)]
        keep: bool,
    },
    /// (Used by `measure`.) Build and sign one CRL in this process; prints its cost as JSON.
    Crl {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value = "device")]
        ca: String,
        #[arg(long)]
        shard: Option<u32>,
    },
    /// Print a Markdown table of how each figure grows, from JSON lines of `run`/`measure`.
    Table { files: Vec<PathBuf> },
}

#[derive(Args)]
struct FleetArgs {
    #[arg(long)]
    devices: u64,
    /// Revoked certificates (default: a tenth of the devices).
    #[arg(long)]
    revoked: Option<u64>,
    /// Audit log entries (default: as many as devices).
    #[arg(long)]
    audit: Option<u64>,
    #[arg(long, default_value_t = 100_000)]
    batch_size: u64,
    /// Keep keys and indexes during the COPY (slower).
    #[arg(long)]
    keep_indexes: bool,
}

#[derive(Args)]
struct MeasureArgs {
    #[arg(long, default_value = "target/release/ca-service")]
    bin: PathBuf,
    /// Concurrent OCSP clients (each one keep-alive connection).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    #[arg(long, default_value_t = 20)]
    ocsp_secs: u64,
    #[arg(long, default_value_t = 300_000)]
    ocsp_serials: usize,
    /// Bound of each phase that waits on the service, seconds.
    #[arg(long, default_value_t = 900)]
    phase_timeout: u64,
    /// Append the JSON line here too.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

impl FleetArgs {
    fn spec(&self, config: ca_service::config::Config) -> FleetSpec {
        let mut spec = FleetSpec::new(self.devices, Arc::new(config));
        (spec.revoked, spec.audit, spec.batch_size) = (self.revoked, self.audit, self.batch_size);
        spec.keep_indexes = self.keep_indexes;
        spec
    }
}

impl MeasureArgs {
    fn spec(&self, config: &Path, log_dir: &Path) -> Result<MeasureSpec> {
        if !self.bin.is_file() {
            bail!("{} is not a file: cargo build --release -p ca-service (or --bin)", self.bin.display());
        }
        Ok(MeasureSpec {
            config: config.to_path_buf(),
            bin: self.bin.canonicalize()?,
            log_dir: log_dir.to_path_buf(),
            issuer: "device".into(),
            clients: self.clients,
            ocsp_secs: self.ocsp_secs,
            ocsp_serials: self.ocsp_serials,
            phase_timeout: Duration::from_secs(self.phase_timeout),
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Fill { database_url, config, fleet } => {
            let config = ca_service::config::Config::load(config.as_deref())?;
            let report = fleet_load::fill(&database_url, &fleet.spec(config)).await?;
            println!("filled:\n{report}");
            println!("{}", serde_json::json!({ "fill": report.json() }));
        }
        Cmd::Measure { config, measure } => {
            let dir = config.parent().unwrap_or(Path::new(".")).to_path_buf();
            let result = fleet_load::measure::measure(&measure.spec(&config, &dir)?).await?;
            emit(&result, measure.json_out.as_deref())?;
        }
        Cmd::Run { fleet, measure, admin_url, crl_shards, keep } => {
            run(fleet, measure, &admin_url, crl_shards, keep).await?
        }
        Cmd::Crl { config, ca, shard } => println!("{}", fleet_load::crl::run(&config, &ca, shard).await?),
        Cmd::Table { files } => print!("{}", fleet_load::measure::table(&files)?),
    }
    Ok(())
}

fn emit(result: &serde_json::Value, out: Option<&Path>) -> Result<()> {
    println!("{result}");
    if let Some(path) = out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(f, "{result}")?;
    }
    Ok(())
}

async fn run(fleet: FleetArgs, measure: MeasureArgs, admin_url: &str, shards: u32, keep: bool) -> Result<()> {
    let name = format!("fleet_{}_{:08x}", fleet.devices, rand::random::<u32>());
    let dir = std::env::temp_dir().join(name.replace('_', "-"));
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let admin = fleet_load::connect(admin_url).await?;
    admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.context("CREATE DATABASE")?;
    println!("database {name}, directory {}", dir.display());
    let result = run_in(&fleet, &measure, &name, &dir, admin_url, shards).await;
    if keep {
        println!("kept: database {name}, directory {}", dir.display());
    } else {
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
        std::fs::remove_dir_all(&dir)?;
    }
    let result = result?;
    emit(&result, measure.json_out.as_deref())
}

async fn run_in(
    fleet: &FleetArgs,
    measure: &MeasureArgs,
    db: &str,
    dir: &Path,
    admin_url: &str,
    shards: u32,
) -> Result<serde_json::Value> {
    let url = database_url(admin_url, db)?;
    let config_path = write_config(dir, &url, shards)?;
    let spec = measure.spec(&config_path, dir)?;
    let svc = fleet_load::serve::Service {
        bin: spec.bin.clone(),
        config: config_path.clone(),
        http: "127.0.0.1:0".parse()?,
        https: "127.0.0.1:0".parse()?,
        log_dir: dir.to_path_buf(),
    };
    svc.run(&["init"], Duration::from_secs(300)).await?;
    let config = ca_service::config::Config::load(Some(&config_path))?;
    println!("fill ({} devices)", fleet.devices);
    let report = fleet_load::fill(&url, &fleet.spec(config)).await?;
    println!("{report}");
    let mut result = fleet_load::measure::measure(&spec).await?;
    if let Some(map) = result.as_object_mut() {
        for (k, v) in report.json().as_object().into_iter().flatten() {
            match v.as_object() {
                Some(table) => map.extend(table.iter().map(|(sub, v)| (format!("fill_{k}_{sub}"), v.clone()))),
                None => drop(map.insert(format!("fill_{k}"), v.clone())),
            }
        }
    }
    Ok(result)
}

/// The admin URL with its database name replaced by `db`.
fn database_url(admin_url: &str, db: &str) -> Result<String> {
    let (base, query) = admin_url.split_once('?').map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let Some(slash) = base.rfind('/').filter(|&i| i > "postgres://".len()) else { bail!("no database in {admin_url}") };
    Ok(format!("{}/{db}{}", &base[..slash], query.map(|q| format!("?{q}")).unwrap_or_default()))
}

/// A configuration like `deploy/production.toml`'s CRL layout, on loopback ports,
/// software keys under `dir` (the key-encryption key in a file).
fn write_config(dir: &Path, url: &str, shards: u32) -> Result<PathBuf> {
    let port = || -> Result<u16> { Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
    let (http, https) = (port()?, port()?);
    if http == https {
        bail!("got the same free port twice");
    }
    let kek = dir.join("kek");
    std::fs::write(&kek, rand::random::<[u8; 32]>())?;
    std::fs::set_permissions(&kek, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let d = dir.display();
    let toml = format!(
        r#"data_dir = "{d}"
public_base_url = "http://127.0.0.1:{http}"
[server]
http = "127.0.0.1:{http}"
https = "127.0.0.1:{https}"
tls_names = ["127.0.0.1"]
[storage]
url = "{url}"
[key_stores.default]
type = "software"
dir = "{d}/keys"
key_file = "{d}/kek"
[models.gateway-v1]
oid = "1.3.6.1.4.1.59999.1.2"
[crl]
validity_secs = 86400
regenerate_secs = 60
base_regenerate_secs = 3600
delta_crls = true
shards = {shards}
"#
    );
    let path = dir.join("ca.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}
