//! The `ca-service` binary as a child: CLI commands and `serve`, every wait bounded,
//! every child killed on drop; memory read from `/proc/PID/status`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::{Child, Command};

use crate::http;

/// The service as configured for a measurement.
#[derive(Clone, Debug)]
pub struct Service {
    pub bin: PathBuf,
    pub config: PathBuf,
    pub http: SocketAddr,
    pub https: SocketAddr,
    /// Where `serve`'s output goes (`serve-N.log`).
    pub log_dir: PathBuf,
}

/// VmRSS and VmHWM of a process, KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss_kb: u64,
    pub hwm_kb: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Self {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Self { rss_kb: field("VmRSS:"), hwm_kb: field("VmHWM:") }
    }

    pub fn own() -> Self {
        Self::of(std::process::id())
    }
}

impl Service {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config").arg(&self.config).args(args).stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// Runs a CLI command to completion within `timeout`; its stdout and wall time.
    pub async fn run(&self, args: &[&str], timeout: Duration) -> Result<(String, Duration)> {
        let started = Instant::now();
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = tokio::time::timeout(timeout, cmd.output())
            .await
            .map_err(|_| anyhow!("ca-service {}: no result within {timeout:?}", args.join(" ")))??;
        let elapsed = started.elapsed();
        if !out.status.success() {
            bail!(
                "ca-service {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((String::from_utf8_lossy(&out.stdout).into_owned(), elapsed))
    }

    /// A new API token of `role`.
    pub async fn token(&self, role: &str) -> Result<String> {
        let (out, _) =
            self.run(&["tokens", "create", "--name", &format!("fleet-{role}"), "--role", role], TIMEOUT).await?;
        out.lines().find(|l| l.starts_with("pki_")).map(str::to_string).context("no token printed")
    }

    /// Starts `serve` and waits (at most `timeout`) for `/readyz` to answer 200.
    pub async fn start(&self, n: usize, timeout: Duration) -> Result<Running> {
        let log = std::fs::File::create(self.log_dir.join(format!("serve-{n}.log")))?;
        let mut cmd = self.command(&["serve"]);
        cmd.stdout(log.try_clone()?).stderr(log);
        let started = Instant::now();
        let mut child = cmd.spawn().context("starting ca-service serve")?;
        let pid = child.id().context("no pid")?;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("ca-service serve exited ({status}) before it was ready; see {}", self.log_dir.display());
            }
            if ready(self.http).await {
                return Ok(Running { child, pid, ready_after: started.elapsed() });
            }
            if started.elapsed() > timeout {
                bail!("ca-service serve was not ready within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Ordinary CLI commands' bound.
pub const TIMEOUT: Duration = Duration::from_secs(120);

async fn ready(addr: SocketAddr) -> bool {
    let Ok(mut conn) = http::connect_plain(addr).await else { return false };
    let answer = tokio::time::timeout(Duration::from_secs(3), conn.request("GET", "/readyz", &[], b"")).await;
    matches!(answer, Ok(Ok(r)) if r.status == 200)
}

/// A running `serve`.
pub struct Running {
    child: Child,
    pub pid: u32,
    pub ready_after: Duration,
}

impl Running {
    pub fn memory(&self) -> Memory {
        Memory::of(self.pid)
    }

    /// SIGTERM, then SIGKILL after 15 s.
    pub async fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status().await;
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.is_err() {
            self.child.start_kill()?;
            self.child.wait().await?;
        }
        Ok(())
    }
}
