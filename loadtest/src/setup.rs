//! The service under test and its peer, each fresh in a temporary directory: the
//! `ca-service` release binary, a throw-away PostgreSQL database, a throw-away
//! SoftHSM token, the service's CLI and server (the peer is in `peer`).
//!
//! Every process is started with `kill_on_drop`, every wait is bounded, and nothing
//! but 127.0.0.1 is contacted (PostgreSQL: wherever `DATABASE_URL` points).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::{Child, Command};

use crate::http;

/// Longest a setup command may run (key generation, registering many devices).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest a server may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Environment variable carrying the SoftHSM user PIN to the service.
const PIN_ENV: &str = "EST_LOAD_HSM_PIN";
const HSM_PIN: &str = "246810";
const HSM_SO_PIN: &str = "13579111";
const HSM_LABEL: &str = "est-load";
/// The CAs of the default hierarchy, all put on the token with `--keys softhsm`.
const CAS: [&str; 5] = ["identity-root", "device", "station", "update-root", "update-authority"];

/// A random 64-bit value (std's randomly keyed hasher; no extra crate).
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish()
}

/// Runs a command to completion (stdin closed), requiring success; returns stdout.
pub async fn run(cmd: &mut Command, what: &str) -> Result<String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let out = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow!("{what}: no result within {COMMAND_TIMEOUT:?}"))?
        .with_context(|| format!("starting {what}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("{what} failed ({}):\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(stdout)
}

/// `tool` on the PATH.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// Two distinct free ports on 127.0.0.1 (probes held together, then released).
pub fn free_ports() -> Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// The `ca-service` release binary: `CA_SERVICE_BIN`, or built with cargo (a no-op
/// when fresh) and located through cargo's JSON artifact messages, which respect
/// `CARGO_TARGET_DIR`; `<target>/release/ca-service` as the fallback.
pub async fn ca_service_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("CA_SERVICE_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("CA_SERVICE_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = workspace_root();
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "ca-service",
        "--bin",
        "ca-service",
        "--message-format=json",
    ]);
    let stdout = run(&mut cmd, "cargo build --release -p ca-service").await?;
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "ca-service" {
            if let Some(exe) = msg["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let fallback = target.join("release").join("ca-service");
    if fallback.is_file() {
        return Ok(fallback);
    }
    bail!("cargo built ca-service but reported no executable, and {} does not exist", fallback.display())
}

// ---------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------

/// A freshly created database on the `DATABASE_URL` server; [`PgDb::drop_database`]
/// must be called at the end (also after errors).
#[derive(Debug)]
pub struct PgDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

/// `url` with its database name replaced.
fn with_database(url: &str, db: &str) -> Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").ok_or_else(|| anyhow!("DATABASE_URL is not a URL: {url}"))? + 3;
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    Ok(match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    })
}

pub async fn pg_connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) =
        tokio::time::timeout(Duration::from_secs(10), tokio_postgres::connect(url, tokio_postgres::NoTls))
            .await
            .map_err(|_| anyhow!("connecting to PostgreSQL timed out"))??;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

impl PgDb {
    pub async fn create() -> Result<Self> {
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_string());
        let name = format!("est_load_{}_{:08x}", std::process::id(), random_u64() & 0xffff_ffff);
        let url = with_database(&admin_url, &name)?;
        let admin = pg_connect(&admin_url)
            .await
            .context("PostgreSQL is not reachable at DATABASE_URL (the user must be allowed to CREATE DATABASE)")?;
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.context("CREATE DATABASE")?;
        Ok(Self { admin_url, name, url })
    }

    pub async fn drop_database(&self) -> Result<()> {
        let admin = pg_connect(&self.admin_url).await?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
            .await
            .with_context(|| format!("DROP DATABASE {}", self.name))
    }
}

// ---------------------------------------------------------------------------------
// SoftHSM
// ---------------------------------------------------------------------------------

/// The SoftHSM2 module (`SOFTHSM2_MODULE` overrides).
fn softhsm_module() -> Result<PathBuf> {
    if let Some(m) = std::env::var_os("SOFTHSM2_MODULE") {
        return Ok(PathBuf::from(m));
    }
    ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("libsofthsm2.so not found: install softhsm2 (or set SOFTHSM2_MODULE)"))
}

/// A token store of its own under `dir`, one initialized token; returns the
/// `SOFTHSM2_CONF` path and the module.
pub async fn softhsm(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    if find_tool("softhsm2-util").is_none() {
        bail!("softhsm2-util is not on the PATH: install softhsm2 (apt-get install -y softhsm2)");
    }
    let module = softhsm_module()?;
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
    )?;
    let mut cmd = Command::new("softhsm2-util");
    cmd.env("SOFTHSM2_CONF", &conf).args([
        "--init-token",
        "--free",
        "--label",
        HSM_LABEL,
        "--so-pin",
        HSM_SO_PIN,
        "--pin",
        HSM_PIN,
    ]);
    run(&mut cmd, "softhsm2-util --init-token").await?;
    Ok((conf, module))
}

// ---------------------------------------------------------------------------------
// ca-service
// ---------------------------------------------------------------------------------

/// Where the keys live.
pub enum KeySetup {
    /// The software key store in the temp dir, passphrase from a 0600 file.
    Software,
    /// Every CA (and the HTTPS key) on a SoftHSM token.
    SoftHsm { conf: PathBuf, module: PathBuf },
}

/// One deployment of the service: binary, working directory, config file.
pub struct Deployment {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub config: PathBuf,
    envs: Vec<(String, String)>,
}

impl Deployment {
    /// Writes the config file (and the key-store passphrase file) into `dir`.
    pub fn new(bin: PathBuf, dir: &Path, storage_url: &str, keys: &KeySetup) -> Result<Self> {
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let mut toml = format!(
            "data_dir = {}\n\n[storage]\nurl = {:?}\n\n[key_stores.default]\ntype = \"software\"\ndir = {}\n\
             passphrase_file = {}\n",
            q(&dir.join("pki-data")),
            storage_url,
            q(&dir.join("keys")),
            q(&dir.join("keystore.pass")),
        );
        let mut envs = vec![("CA_LOG".to_string(), "warn".to_string())];
        match keys {
            KeySetup::Software => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let secret = format!("{:016x}{:016x}", random_u64(), random_u64());
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(dir.join("keystore.pass"))
                    .context("creating the key-store passphrase file")?;
                f.write_all(secret.as_bytes())?;
            }
            KeySetup::SoftHsm { conf, module } => {
                toml.push_str(&format!(
                    "\n[key_stores.hsm]\ntype = \"pkcs11\"\nmodule = {}\ntoken_label = \"{HSM_LABEL}\"\npin_env = \"{PIN_ENV}\"\n",
                    q(module)
                ));
                for ca in CAS {
                    toml.push_str(&format!("\n[cas.{ca}]\nkey_store = \"hsm\"\n"));
                }
                envs.push(("SOFTHSM2_CONF".into(), conf.display().to_string()));
                envs.push((PIN_ENV.into(), HSM_PIN.into()));
            }
        }
        let config = dir.join("ca-service.toml");
        std::fs::write(&config, toml).context("writing the service config")?;
        Ok(Self { bin, dir: dir.to_path_buf(), config, envs })
    }

    /// `ca-service --config … <args>`, with the caller's `CA_…` variables removed.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(&self.dir);
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("CA_")) {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v))).arg("--config").arg(&self.config).args(args);
        cmd
    }

    /// Runs a CLI command to completion.
    pub async fn cli(&self, args: &[&str]) -> Result<String> {
        run(&mut self.command(args), &format!("ca-service {}", args.join(" "))).await
    }

    /// Starts `serve` on free ports and waits until `/healthz` answers and the HTTPS
    /// port accepts connections; with `ready`, until `/readyz` answers 200 too (the
    /// issuing CAs' CRLs are signed), so a first start over a filled store does not
    /// sign them during the first phase.
    pub async fn serve(&self, ready: bool) -> Result<Server> {
        let (http_port, https_port) = free_ports()?;
        let http = SocketAddr::from(([127, 0, 0, 1], http_port));
        let https = SocketAddr::from(([127, 0, 0, 1], https_port));
        let log = self.dir.join("serve.log");
        let file = std::fs::File::create(&log).context("creating the server log")?;
        let mut cmd = self.command(&["serve"]);
        cmd.env("CA_SERVER__HTTP", http.to_string())
            .env("CA_SERVER__HTTPS", https.to_string())
            .env("CA_PUBLIC_BASE_URL", format!("http://{http}"))
            .env("CA_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        let child = cmd.spawn().context("starting ca-service serve")?;
        let mut server = Server { child, http, https, log };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!("ca-service serve exited during start ({status}):\n{}", server.log_tail(40));
            }
            let probe = if ready { "/readyz" } else { "/healthz" };
            let healthy = matches!(http::get(http, probe, Duration::from_secs(2)).await, Ok(r) if r.status == 200);
            if healthy && tokio::net::TcpStream::connect(https).await.is_ok() {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                bail!("ca-service serve not ready within {START_TIMEOUT:?}:\n{}", server.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running `ca-service serve` (killed on drop).
pub struct Server {
    pub child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub log: PathBuf,
}

impl Server {
    /// The last `n` lines the server logged.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_replaced() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/postgres?sslmode=disable", "x").unwrap(),
            "postgres://u@127.0.0.1:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x").unwrap(), "postgres://u@h/x");
    }
}
