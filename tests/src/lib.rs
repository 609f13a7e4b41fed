//! Helpers for the end-to-end tests: the real `ca-service` binary, its servers on free
//! ports, a throw-away PostgreSQL database, a throw-away SoftHSM token, and the
//! third-party clients (`openssl`, `curl`, `pkilint`).
//!
//! Every helper that starts a process owns it through a guard whose `Drop` kills it,
//! every wait is bounded, and a missing prerequisite (PostgreSQL, SoftHSM, openssl,
//! curl) is an error naming what is missing, never a silent skip.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};

/// Longest any single CLI command may run (key generation, Argon2, database).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a server may take to answer `/healthz` after start.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for messages.
    pub command: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Errors unless the command succeeded, with everything it printed.
    pub fn ok(self) -> Result<Self> {
        if self.success() {
            Ok(self)
        } else {
            bail!("{} failed: {}", self.command, self.describe())
        }
    }

    /// Exit status and both streams, for assertion messages.
    pub fn describe(&self) -> String {
        format!("{}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.status, self.stdout, self.stderr)
    }
}

/// A child process killed (and reaped) when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
}

impl ChildGuard {
    pub fn spawn(cmd: &mut Command, what: impl Into<String>) -> Result<Self> {
        let what = what.into();
        let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        Ok(Self { child: Some(child), what })
    }

    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has exited (and how).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait().with_context(|| format!("polling {}", self.what)),
            None => Ok(None),
        }
    }

    /// Kills the process and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit by itself, killing it after `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!("{} did not exit within {timeout:?}; killed", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn describe_command(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion with stdin closed, capturing its output; kills it
/// after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    run_with_input(cmd, None, timeout)
}

/// As [`run_with_timeout`], feeding `input` to stdin (then closing it).
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Result<Output> {
    let command = describe_command(cmd);
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(cmd, command.clone())?;
    let child = guard.child_mut().ok_or_else(|| anyhow!("{command}: no child"))?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let mut out = child.stdout.take().ok_or_else(|| anyhow!("{command}: no stdout"))?;
    let mut err = child.stderr.take().ok_or_else(|| anyhow!("{command}: no stderr"))?;
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let status = guard.wait_timeout(timeout).with_context(|| command.clone())?;
    let stdout = out_reader.join().map_err(|_| anyhow!("stdout reader panicked"))?;
    let stderr = err_reader.join().map_err(|_| anyhow!("stderr reader panicked"))?;
    Ok(Output {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        command,
    })
}

/// Errors unless `tool` is on the PATH (prerequisites fail loudly, never skip).
pub fn require_tool(tool: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "`{tool}` is required by the end-to-end tests but is not on the PATH; install it (e.g. apt-get install {tool})"
    )
}

// ---------------------------------------------------------------------------------
// The ca-service binary
// ---------------------------------------------------------------------------------

/// The workspace root (this package lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".."))
}

/// The `ca-service` binary under test.
///
/// `CARGO_BIN_EXE_*` only exists for binaries of the package under test, and a
/// dev-dependency on `ca-service` builds its library, not its binary. So the binary is
/// built here, once per test process, with `cargo build -p ca-service --bin
/// ca-service` (a no-op when it is fresh), and its path is taken from cargo's own
/// JSON artifact messages — that respects `CARGO_TARGET_DIR`, `build.target-dir`
/// and the profile without guessing. `CA_SERVICE_BIN` overrides all of this (CI
/// with a prebuilt binary).
pub fn ca_service_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build_ca_service().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
}

fn build_ca_service() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("CA_SERVICE_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("CA_SERVICE_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args([
        "build",
        "--quiet",
        "-p",
        "ca-service",
        "--bin",
        "ca-service",
        "--message-format=json",
    ]);
    // Build the same profile as this test binary (target/<profile>/deps/<test>).
    let profile_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).and_then(Path::file_name).map(|n| n.to_os_string()));
    match profile_dir.as_ref().and_then(|p| p.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    // Building may wait for another cargo's lock on the target directory.
    let out = run_with_timeout(&mut cmd, Duration::from_secs(900))?.ok()?;
    for line in out.stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "ca-service" {
            if let Some(exe) = msg["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("cargo built ca-service but reported no executable:\n{}", out.describe())
}

/// How to invoke `ca-service` for one deployment: working directory, optional config
/// file, extra environment.
#[derive(Debug, Clone)]
pub struct Cli {
    pub workdir: PathBuf,
    pub config: Option<PathBuf>,
    pub envs: Vec<(String, String)>,
}

impl Cli {
    /// Evaluation mode (no config file) in `workdir`.
    pub fn evaluation(workdir: impl Into<PathBuf>) -> Self {
        Self { workdir: workdir.into(), config: None, envs: Vec::new() }
    }

    pub fn with_config(mut self, config: impl Into<PathBuf>) -> Self {
        self.config = Some(config.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The command, ready for more arguments. The environment is cleaned of any
    /// `CA_…` variables of the caller so only what the test sets applies.
    pub fn command(&self) -> Result<Command> {
        let mut cmd = Command::new(ca_service_bin()?);
        cmd.current_dir(&self.workdir);
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("CA_")) {
                cmd.env_remove(k);
            }
        }
        // Warnings only: tests read stderr for error messages.
        cmd.env("CA_LOG", "warn");
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        Ok(cmd)
    }

    /// Runs `ca-service <args>` to completion.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = self.command()?;
        cmd.args(args);
        run_with_timeout(&mut cmd, COMMAND_TIMEOUT)
    }

    /// Runs `ca-service <args>` and requires success.
    pub fn run_ok(&self, args: &[&str]) -> Result<Output> {
        self.run(args)?.ok()
    }

    /// `audit verify` must succeed; returns the number of entries it reports.
    pub fn audit_entries(&self) -> Result<u64> {
        let out = self.run_ok(&["audit", "verify"])?;
        parse_audit_count(&out.stdout).ok_or_else(|| anyhow!("unexpected `audit verify` output:\n{}", out.describe()))
    }
}

/// The `N` of "audit log intact: N entries".
pub fn parse_audit_count(stdout: &str) -> Option<u64> {
    let rest = stdout.split("audit log intact: ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A running `ca-service serve`, killed on drop.
#[derive(Debug)]
pub struct Service {
    child: ChildGuard,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub log: PathBuf,
}

impl Service {
    /// Starts `serve` on free ports (public base URL pointing at the HTTP port) and
    /// waits until `/healthz` answers 200 and the HTTPS port accepts connections.
    pub fn start(cli: &Cli) -> Result<Self> {
        // Both probes held at once, so the two ports differ.
        let probes = (TcpListener::bind("127.0.0.1:0")?, TcpListener::bind("127.0.0.1:0")?);
        let (http_port, https_port) = (probes.0.local_addr()?.port(), probes.1.local_addr()?.port());
        drop(probes);
        let http = SocketAddr::from(([127, 0, 0, 1], http_port));
        let https = SocketAddr::from(([127, 0, 0, 1], https_port));
        let log = cli.workdir.join(format!("serve-{http_port}.log"));
        let log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = cli.command()?;
        cmd.arg("serve")
            .env("CA_SERVER__HTTP", http.to_string())
            .env("CA_SERVER__HTTPS", https.to_string())
            .env("CA_PUBLIC_BASE_URL", format!("http://{http}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let child = ChildGuard::spawn(&mut cmd, "ca-service serve")?;
        let mut svc = Service { child, http, https, log };
        svc.wait_ready(START_TIMEOUT)?;
        Ok(svc)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("ca-service serve exited during start ({status}):\n{}", self.log_text());
            }
            let http_ok = matches!(http_get(self.http, "/healthz"), Ok((200, _)));
            if http_ok && TcpStream::connect_timeout(&self.https, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("ca-service serve did not become healthy within {timeout:?}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server at once (SIGKILL, as `kill -9` or a power cut would) and reaps
    /// it; start another with [`Service::start`].
    pub fn kill_now(&mut self) {
        self.child.kill();
    }

    /// Stops this server and starts `cli`'s in its place (on new ports): never two
    /// servers on one deployment at once.
    pub fn restart(&mut self, cli: &Cli) -> Result<()> {
        self.child.kill();
        *self = Service::start(cli)?;
        Ok(())
    }

    /// Waits (bounded) for the server to exit by itself — a crash the test injected —
    /// and returns how it ended.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.child.wait_timeout(timeout)
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The server's process id (`None` once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the server (SIGKILL: nothing in flight) and waits for it.
    pub fn stop(mut self) {
        self.child.kill();
    }
}

/// A minimal HTTP/1.0 GET against 127.0.0.1 (readiness polling only; the tests use
/// curl as the client under test). Returns status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| anyhow!("no HTTP header end"))?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line: {head}"))?;
    Ok((status, buf[head_end + 4..].to_vec()))
}

// ---------------------------------------------------------------------------------
// Third-party clients
// ---------------------------------------------------------------------------------

/// Runs `openssl <args>` in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) -> Result<Output> {
    require_tool("openssl")?;
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args);
    run_with_timeout(&mut cmd, COMMAND_TIMEOUT)
}

/// Runs `curl <args>` in `dir` (bounded by `--max-time` and our own timeout).
pub fn curl(dir: &Path, args: &[&str]) -> Result<Output> {
    require_tool("curl")?;
    let mut cmd = Command::new("curl");
    cmd.current_dir(dir).args(["--silent", "--show-error", "--max-time", "20"]).args(args);
    run_with_timeout(&mut cmd, Duration::from_secs(30))
}

/// Makes a key and a CSR with openssl: `key_args` are the `-newkey …` arguments
/// (e.g. `["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]`), `extra` any more
/// `openssl req` arguments (`-addext …`, `-sha1`, …). Returns the CSR path.
pub fn make_csr(dir: &Path, name: &str, key_args: &[&str], subject: &str, extra: &[&str]) -> Result<PathBuf> {
    let csr = dir.join(format!("{name}.csr"));
    let key = dir.join(format!("{name}.key"));
    let (csr_s, key_s) = (path_str(&csr)?, path_str(&key)?);
    let mut args = vec!["req", "-new", "-nodes", "-subj", subject, "-keyout", key_s, "-out", csr_s];
    args.extend_from_slice(key_args);
    args.extend_from_slice(extra);
    openssl(dir, &args)?.ok()?;
    Ok(csr)
}

/// `-newkey` arguments for a P-256 key.
pub const P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

pub fn path_str(p: &Path) -> Result<&str> {
    p.to_str().ok_or_else(|| anyhow!("non-UTF-8 path {}", p.display()))
}

/// The DER contents of every `CERTIFICATE` block in a PEM text.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>> {
    let blocks = pem::parse_many(text).context("parsing PEM")?;
    Ok(blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE").map(pem::Pem::into_contents).collect())
}

/// DER → PEM `CERTIFICATE`.
pub fn to_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// Uppercase colon-separated SHA-256 fingerprint, as `openssl x509 -fingerprint` and
/// `ca-service ca list` print it (computed by openssl).
pub fn openssl_fingerprint(dir: &Path, pem_file: &Path) -> Result<String> {
    let out = openssl(dir, &["x509", "-in", path_str(pem_file)?, "-noout", "-fingerprint", "-sha256"])?.ok()?;
    out.stdout
        .trim()
        .split_once('=')
        .map(|(_, f)| f.to_string())
        .ok_or_else(|| anyhow!("unexpected fingerprint output: {}", out.stdout))
}

/// One pkilint finding.
#[derive(Debug, Clone)]
pub struct LintFinding {
    pub severity: String,
    pub code: String,
    pub validator: String,
    pub node_path: String,
    pub message: Option<String>,
}

impl std::fmt::Display for LintFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({} @ {})", self.severity, self.code, self.validator, self.node_path)?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

/// Makes sure pkilint is importable, installing it with pip once if not.
pub fn ensure_pkilint() -> Result<()> {
    static READY: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let importable = || {
                let mut c = Command::new("python3");
                c.args(["-c", "import pkilint.bin.lint_pkix_cert"]);
                run_with_timeout(&mut c, COMMAND_TIMEOUT).map(|o| o.success()).unwrap_or(false)
            };
            if require_tool("python3").is_err() {
                return Err("python3 is required to run pkilint".to_string());
            }
            if importable() {
                return Ok(());
            }
            let mut pip = Command::new("python3");
            pip.args(["-m", "pip", "install", "--quiet", "pkilint"]);
            match run_with_timeout(&mut pip, Duration::from_secs(300)) {
                Ok(o) if o.success() && importable() => Ok(()),
                Ok(o) => Err(format!("installing pkilint failed: {}", o.describe())),
                Err(e) => Err(format!("installing pkilint failed: {e:#}")),
            }
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Lints a certificate (PEM or DER file) with pkilint's RFC 5280 linter
/// (`lint_pkix_cert`), returning every finding of severity NOTICE and above.
pub fn pkilint(cert_file: &Path) -> Result<Vec<LintFinding>> {
    ensure_pkilint()?;
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pkilint.bin.lint_pkix_cert", "lint", "-s", "NOTICE", "-f", "JSON", path_str(cert_file)?]);
    let out = run_with_timeout(&mut cmd, COMMAND_TIMEOUT)?;
    // Exit status is the number of findings at or above the threshold; the JSON says which.
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("pkilint output is not JSON: {}", out.describe()))?;
    let mut findings = Vec::new();
    for r in v["results"].as_array().into_iter().flatten() {
        for d in r["finding_descriptions"].as_array().into_iter().flatten() {
            findings.push(LintFinding {
                severity: d["severity"].as_str().unwrap_or("?").to_string(),
                code: d["code"].as_str().unwrap_or("?").to_string(),
                validator: r["validator"].as_str().unwrap_or("?").to_string(),
                node_path: r["node_path"].as_str().unwrap_or("?").to_string(),
                message: d["message"].as_str().map(str::to_string),
            });
        }
    }
    Ok(findings)
}

// ---------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------

/// The server the tests use: `DATABASE_URL`, or the local default.
pub fn postgres_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_string())
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, db: &str) -> Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").ok_or_else(|| anyhow!("not a URL: {url}"))? + 3;
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    Ok(match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    })
}

/// A random 64-bit value (std's per-instance random hasher keys; no extra crate).
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish()
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("building a tokio runtime")
}

async fn pg_connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) =
        tokio::time::timeout(Duration::from_secs(10), tokio_postgres::connect(url, tokio_postgres::NoTls))
            .await
            .map_err(|_| anyhow!("connecting to PostgreSQL timed out"))??;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A freshly created PostgreSQL database `e2e_<pid>_<rand>`, dropped (`WITH (FORCE)`)
/// on drop. PostgreSQL being unreachable is an error, not a skip.
pub struct TestDb {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb").field("name", &self.name).finish()
    }
}

impl TestDb {
    pub fn create() -> Result<Self> {
        let admin_url = postgres_admin_url();
        let name = format!("e2e_{}_{:012x}", std::process::id(), random_u64() & 0xffff_ffff_ffff);
        let url = with_database(&admin_url, &name)?;
        let rt = runtime()?;
        let client = rt.block_on(async {
            let admin = pg_connect(&admin_url).await.with_context(|| {
                format!(
                    "PostgreSQL is required by the end-to-end tests but is not reachable at {admin_url} \
                     (set DATABASE_URL to a server where the user may CREATE DATABASE)"
                )
            })?;
            admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.context("CREATE DATABASE")?;
            drop(admin);
            pg_connect(&url).await.with_context(|| format!("connecting to the new database {name}"))
        })?;
        Ok(Self { rt, client, admin_url, name, url })
    }

    /// Runs SQL statements (no results).
    pub fn execute(&self, sql: &str) -> Result<u64> {
        self.rt.block_on(self.client.execute(sql, &[])).with_context(|| format!("executing {sql}"))
    }

    /// The first column of the first row as an i64 (e.g. `SELECT count(*) …`).
    pub fn query_i64(&self, sql: &str) -> Result<i64> {
        let row = self.rt.block_on(self.client.query_one(sql, &[])).with_context(|| format!("querying {sql}"))?;
        row.try_get::<_, i64>(0).with_context(|| format!("reading the result of {sql}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = self.rt.block_on(async move {
            let admin = pg_connect(&admin_url).await?;
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
            anyhow::Ok(())
        });
    }
}

// ---------------------------------------------------------------------------------
// SoftHSM
// ---------------------------------------------------------------------------------

/// The SoftHSM2 PKCS#11 module (`SOFTHSM2_MODULE` overrides the search).
pub fn softhsm_module() -> Result<PathBuf> {
    if let Some(m) = std::env::var_os("SOFTHSM2_MODULE") {
        return Ok(PathBuf::from(m));
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
        "/usr/lib64/pkcs11/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .ok_or_else(|| anyhow!("libsofthsm2.so not found (install softhsm2 or set SOFTHSM2_MODULE)"))
}

/// A SoftHSM2 token store of its own (own `SOFTHSM2_CONF`, own token directory).
#[derive(Debug)]
pub struct SoftHsm {
    dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub module: PathBuf,
}

impl SoftHsm {
    pub fn new() -> Result<Self> {
        require_tool("softhsm2-util")?;
        let module = softhsm_module()?;
        let dir = tempfile::Builder::new().prefix("e2e-softhsm-").tempdir()?;
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens)?;
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
        )?;
        Ok(Self { dir, conf, module })
    }

    /// Initializes a token in the first free slot.
    pub fn init_token(&self, label: &str, so_pin: &str, pin: &str) -> Result<()> {
        let mut cmd = Command::new("softhsm2-util");
        cmd.env("SOFTHSM2_CONF", &self.conf).args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            so_pin,
            "--pin",
            pin,
        ]);
        run_with_timeout(&mut cmd, COMMAND_TIMEOUT)?.ok()?;
        Ok(())
    }

    /// Runs `pkcs11-tool` against this token store.
    pub fn pkcs11_tool(&self, args: &[&str]) -> Result<Output> {
        require_tool("pkcs11-tool")?;
        let mut cmd = Command::new("pkcs11-tool");
        cmd.env("SOFTHSM2_CONF", &self.conf).arg("--module").arg(&self.module).args(args);
        run_with_timeout(&mut cmd, COMMAND_TIMEOUT)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

// ---------------------------------------------------------------------------------
// The evaluation-mode SQLite database (read and tampered with directly)
// ---------------------------------------------------------------------------------

/// The SQLite database of an evaluation deployment in `workdir`.
pub fn sqlite_path(workdir: &Path) -> PathBuf {
    workdir.join("pki-data").join("pki.db")
}

fn sqlite_open(workdir: &Path) -> Result<rusqlite::Connection> {
    let path = sqlite_path(workdir);
    if !path.is_file() {
        bail!("no database at {}", path.display());
    }
    let conn = rusqlite::Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// The first column of the first row as an i64 (e.g. `SELECT count(*) …`).
pub fn sqlite_i64(workdir: &Path, sql: &str) -> Result<i64> {
    sqlite_open(workdir)?.query_row(sql, [], |r| r.get(0)).with_context(|| format!("querying {sql}"))
}

/// Executes one statement; returns the number of rows changed.
pub fn sqlite_execute(workdir: &Path, sql: &str) -> Result<usize> {
    sqlite_open(workdir)?.execute(sql, []).with_context(|| format!("executing {sql}"))
}

/// The first column of every row as bytes (e.g. `SELECT der FROM certificates`).
pub fn sqlite_blobs(workdir: &Path, sql: &str) -> Result<Vec<Vec<u8>>> {
    let conn = sqlite_open(workdir)?;
    let mut stmt = conn.prepare(sql).with_context(|| format!("preparing {sql}"))?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    rows.collect::<std::result::Result<Vec<_>, _>>().with_context(|| format!("querying {sql}"))
}

/// A CA's current certificate (DER) from the evaluation database.
pub fn sqlite_ca_der(workdir: &Path, name: &str) -> Result<Vec<u8>> {
    let conn = sqlite_open(workdir)?;
    conn.query_row("SELECT cert_der FROM cas WHERE name = ?1", [name], |r| r.get(0))
        .with_context(|| format!("reading CA '{name}' from the database"))
}

/// Writes a DER certificate as a PEM file and returns its path.
pub fn write_pem(path: &Path, der: &[u8]) -> Result<PathBuf> {
    std::fs::write(path, to_pem(der)).with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// A temporary working directory for one deployment.
pub fn workdir(prefix: &str) -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix(&format!("e2e-{prefix}-")).tempdir()?)
}

/// Every row's first column as text (e.g. `SELECT state FROM devices ORDER BY device_id`).
pub fn sqlite_strings(workdir: &Path, sql: &str) -> Result<Vec<String>> {
    let conn = sqlite_open(workdir)?;
    let mut stmt = conn.prepare(sql).with_context(|| format!("preparing {sql}"))?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect::<std::result::Result<Vec<_>, _>>().with_context(|| format!("querying {sql}"))
}

impl TestDb {
    /// Every row's first column as text (e.g. `SELECT state FROM devices ORDER BY device_id`).
    pub fn query_strings(&self, sql: &str) -> Result<Vec<String>> {
        let rows = self.rt.block_on(self.client.query(sql, &[])).with_context(|| format!("querying {sql}"))?;
        rows.iter().map(|r| r.try_get::<_, String>(0).with_context(|| format!("reading the result of {sql}"))).collect()
    }
}

// ---------------------------------------------------------------------------------
// HTTP replies as curl received them
// ---------------------------------------------------------------------------------

/// The final response curl received: status (0 when there was no HTTP response, e.g.
/// the TLS handshake failed; see `curl`), headers, body.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// curl's own exit status and messages.
    pub curl: Output,
}

impl HttpReply {
    /// The first header of that (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Status, headers, the start of the body and curl's messages, for assertion messages.
    pub fn describe(&self) -> String {
        let mut body = self.text();
        if body.len() > 2000 {
            let mut end = 2000;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
            body.push('…');
        }
        let headers: Vec<String> = self.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!(
            "HTTP {}\n{}\n\n{}\n--- curl ({}) ---\n{}",
            self.status,
            headers.join("\n"),
            body,
            self.curl.status,
            self.curl.stderr.trim()
        )
    }
}

/// Runs `curl <args>` in `dir` (as [`curl`]) and returns the final response: status,
/// headers (of the last response when there were several, e.g. after `100 Continue`)
/// and body. A transfer that got no HTTP response is status 0, not an error.
pub fn curl_reply(dir: &Path, args: &[&str]) -> Result<HttpReply> {
    static N: AtomicU64 = AtomicU64::new(0);
    let stem = format!(".curl-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let (head_file, body_file) = (dir.join(format!("{stem}.head")), dir.join(format!("{stem}.body")));
    let mut all = vec!["-D", path_str(&head_file)?, "-o", path_str(&body_file)?, "-w", "%{http_code}"];
    all.extend_from_slice(args);
    let out = curl(dir, &all)?;
    let head = std::fs::read_to_string(&head_file).unwrap_or_default();
    let body = std::fs::read(&body_file).unwrap_or_default();
    let _ = std::fs::remove_file(&head_file);
    let _ = std::fs::remove_file(&body_file);
    let status = out.stdout.trim().parse().unwrap_or(0);
    let last = head.rsplit_once("\r\nHTTP/").map(|(_, h)| h).unwrap_or(&head);
    let headers = last
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpReply { status, headers, body, curl: out })
}

/// A provisioning station's EST `simpleenroll` on `port`, as the factory's client does
/// it: curl with `station.pem`/`station.key`, trusting `root.pem` (all in `dir`), posting
/// the base64 PKCS#10 in `dir/body_file`; `extra` goes before the URL (e.g. a deadline).
pub fn station_enroll(dir: &Path, port: u16, body_file: &str, extra: &[&str]) -> Result<HttpReply> {
    let url = format!("https://127.0.0.1:{port}/.well-known/est/simpleenroll");
    let data = format!("@{body_file}");
    let mut args = vec!["--cacert", "root.pem", "--cert", "station.pem", "--key", "station.key"];
    args.extend_from_slice(&["-H", "Content-Type: application/pkcs10", "--data-binary", &data]);
    args.extend_from_slice(extra);
    args.push(&url);
    curl_reply(dir, &args)
}

/// Saves the identity root and the Device Issuing CA as served by `svc` into `dir`:
/// `root.pem`, `device-ca.pem`, and both in `chain.pem` (what openssl's `-CAfile` takes).
pub fn save_device_chain(dir: &Path, svc: &Service) -> Result<()> {
    let mut chain = String::new();
    for (ca, file) in [("identity-root", "root.pem"), ("device", "device-ca.pem")] {
        let pem = curl(dir, &["-f", &format!("{}/ca/{ca}.pem", svc.base_url())])?.ok()?;
        std::fs::write(dir.join(file), &pem.stdout)?;
        chain.push_str(&pem.stdout);
    }
    std::fs::write(dir.join("chain.pem"), chain)?;
    Ok(())
}

// ---------------------------------------------------------------------------------
// A PostgreSQL cluster of the test's own (fault tests stop and freeze it)
// ---------------------------------------------------------------------------------

/// The directory of PostgreSQL's server programs (`PG_BIN` overrides the search):
/// the newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and `pg_ctl`.
pub fn pg_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL server programs are required (apt-get install postgresql) or set PG_BIN")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| anyhow!("no /usr/lib/postgresql/*/bin with initdb and pg_ctl"))
}

fn id_of(args: &[&str]) -> Result<u32> {
    let out = run_with_timeout(Command::new("id").args(args), COMMAND_TIMEOUT)?.ok()?;
    out.stdout.trim().parse().with_context(|| format!("`id {}` printed {:?}", args.join(" "), out.stdout))
}

/// A PostgreSQL cluster in a temporary directory on a free port of 127.0.0.1, started
/// with `initdb` + `pg_ctl` (as user `postgres` when the test runs as root, since
/// initdb refuses root); never the shared server. Dropping it thaws, stops (immediate)
/// and deletes it.
#[derive(Debug)]
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
    frozen: Vec<u32>,
}

impl PgCluster {
    /// initdb (trust authentication, user `postgres`, fsync off) and start.
    pub fn start() -> Result<Self> {
        let bin = pg_bin_dir()?;
        let dir = tempfile::Builder::new().prefix("e2e-pg-").tempdir()?;
        let as_postgres = id_of(&["-u"])? == 0;
        if as_postgres {
            let (uid, gid) = (id_of(&["-u", "postgres"])?, id_of(&["-g", "postgres"])?);
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("handing the cluster directory to postgres")?;
        }
        let mut cluster = Self { dir, bin, port: free_port()?, as_postgres, frozen: Vec::new() };
        let data = cluster.data_dir();
        cluster
            .run(
                "initdb",
                &[
                    "-D",
                    path_str(&data)?,
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--no-instructions",
                ],
            )?
            .ok()?;
        cluster.resume()?;
        Ok(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<Output> {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(args).current_dir(self.dir.path());
        run_with_timeout(&mut cmd, COMMAND_TIMEOUT)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres?sslmode=disable`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", self.port)
    }

    /// Starts the (stopped) cluster on its port and waits until it accepts connections.
    pub fn resume(&mut self) -> Result<()> {
        let (data, log, sockets) = (self.data_dir(), self.dir.path().join("postgres.log"), self.dir.path());
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off -c max_connections=100",
            self.port,
            path_str(sockets)?
        );
        let out = self.run(
            "pg_ctl",
            &["-D", path_str(&data)?, "-l", path_str(&log)?, "-w", "-t", "30", "-o", &options, "start"],
        )?;
        if !out.success() {
            bail!(
                "pg_ctl start failed: {}\n--- log ---\n{}",
                out.describe(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Stops the cluster (`pg_ctl stop -m fast`: sessions are disconnected) and waits.
    pub fn stop(&mut self) -> Result<()> {
        self.run("pg_ctl", &["-D", path_str(&self.data_dir())?, "-m", "fast", "-w", "-t", "30", "stop"])?.ok()?;
        Ok(())
    }

    /// The postmaster's pid (first line of `postmaster.pid`).
    fn postmaster_pid(&self) -> Result<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).context("reading postmaster.pid")?;
        text.lines().next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| anyhow!("bad postmaster.pid: {text:?}"))
    }

    /// The postmaster and every process it started (backends, checkpointer, …).
    fn server_pids(&self) -> Result<Vec<u32>> {
        let postmaster = self.postmaster_pid()?;
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc")?.filter_map(|e| e.ok()) {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // pid (comm) state ppid …; comm may hold spaces and parentheses.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        Ok(pids)
    }

    fn signal(pids: &[u32], signal: &str) -> Result<()> {
        let mut cmd = Command::new("kill");
        cmd.arg(format!("-{signal}")).args(pids.iter().map(u32::to_string));
        run_with_timeout(&mut cmd, COMMAND_TIMEOUT)?.ok()?;
        Ok(())
    }

    /// SIGSTOP to the postmaster and all its processes: connections stay open, nothing
    /// answers (a hung host, as the service sees it).
    pub fn freeze(&mut self) -> Result<()> {
        let pids = self.server_pids()?;
        Self::signal(&pids, "STOP")?;
        self.frozen = pids;
        Ok(())
    }

    /// SIGCONT to what [`freeze`](Self::freeze) stopped.
    pub fn thaw(&mut self) -> Result<()> {
        if !self.frozen.is_empty() {
            Self::signal(&self.frozen, "CONT")?;
            self.frozen.clear();
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.thaw();
        let stopped = path_str(&self.data_dir())
            .ok()
            .and_then(|data| self.run("pg_ctl", &["-D", data, "-m", "immediate", "-w", "-t", "10", "stop"]).ok())
            .is_some_and(|o| o.success());
        if !stopped {
            // Only a postgres process of that pid (postmaster.pid may be stale).
            if let Ok(pid) = self.postmaster_pid() {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "postgres" {
                    let _ = Self::signal(&[pid], "KILL");
                }
            }
        }
    }
}
