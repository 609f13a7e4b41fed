//! The load phases: `concurrency` clients taking requests from one shared list until
//! it is used up or the phase's time limit passes, each timing its requests.

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::http::{self, Conn, Response};

/// Longest a single request (connect and handshake included) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What counts as success.
#[derive(Clone, Copy, Debug)]
pub enum Check {
    /// HTTP 200 (EST).
    Status200,
    /// HTTP 200 and a JSON body with `"success": true` (cfssl API).
    CfsslSuccess,
}

impl Check {
    fn ok(self, r: &Response) -> bool {
        match self {
            Check::Status200 => r.status == 200,
            Check::CfsslSuccess => {
                r.status == 200
                    && serde_json::from_slice::<serde_json::Value>(&r.body)
                        .is_ok_and(|v| v["success"] == serde_json::Value::Bool(true))
            }
        }
    }
}

/// One phase's parameters.
pub struct Phase {
    pub name: String,
    /// Complete HTTP requests, used in turn (again from the start when `limit` is
    /// larger than their number).
    pub requests: Vec<Vec<u8>>,
    /// Requests to send at most.
    pub limit: usize,
    pub concurrency: usize,
    pub time_limit: Duration,
    pub check: Check,
}

struct Shared {
    name: String,
    requests: Vec<Vec<u8>>,
    limit: usize,
    next: AtomicUsize,
    deadline: Instant,
    check: Check,
    /// Failure kinds already printed (each is printed once per phase).
    reported: Mutex<HashSet<String>>,
}

impl Shared {
    fn report_once(&self, kind: String, detail: impl FnOnce() -> String) {
        let mut seen = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        if seen.insert(kind.clone()) {
            eprintln!("[{}] {kind}: {}", self.name, detail().trim_end());
        }
    }
}

#[derive(Default)]
struct ClientStats {
    successes: u64,
    errors: u64,
    /// Latency of each success, microseconds.
    latencies_us: Vec<u32>,
    connections: u64,
}

/// A phase's outcome.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub name: String,
    pub successes: u64,
    pub errors: u64,
    pub connections: u64,
    pub elapsed: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// CPU µs per successful request of each process, and "total" (filled in by
    /// the caller, which knows the processes).
    pub cpu_us: Vec<(String, f64)>,
}

impl PhaseResult {
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.successes as f64 / secs
        } else {
            0.0
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let r = |x: f64| (x * 100.0).round() / 100.0;
        serde_json::json!({
            "successes": self.successes,
            "errors": self.errors,
            "connections": self.connections,
            "seconds": r(self.elapsed.as_secs_f64()),
            "per_second": r(self.rate()),
            "p50_ms": r(self.p50_ms),
            "p99_ms": r(self.p99_ms),
            "max_ms": r(self.max_ms),
            "cpu_us_per_request": self.cpu_us.iter().map(|(n, v)| (n.clone(), serde_json::json!(r(*v)))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs a phase: `concurrency` clients, each connecting with `connect` whenever it has
/// no open connection; with `keep_alive` a connection serves requests until the
/// server closes it, otherwise each request gets a new connection.
pub async fn run<S, C, F>(phase: Phase, keep_alive: bool, connect: C) -> Result<PhaseResult>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: Fn() -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<S>> + Send + 'static,
{
    let started = Instant::now();
    let shared = Arc::new(Shared {
        name: phase.name.clone(),
        requests: phase.requests,
        limit: phase.limit,
        next: AtomicUsize::new(0),
        deadline: started + phase.time_limit,
        check: phase.check,
        reported: Mutex::new(HashSet::new()),
    });
    // A JoinSet, so the clients are aborted if the phase is (Ctrl-C).
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..phase.concurrency {
        tasks.spawn(client(shared.clone(), keep_alive, connect.clone()));
    }
    let mut total = ClientStats::default();
    while let Some(s) = tasks.join_next().await {
        let s = s.context("a load client failed")?;
        total.successes += s.successes;
        total.errors += s.errors;
        total.connections += s.connections;
        total.latencies_us.extend(s.latencies_us);
    }
    let elapsed = started.elapsed();
    total.latencies_us.sort_unstable();
    let ms = |us: u32| f64::from(us) / 1000.0;
    Ok(PhaseResult {
        name: phase.name,
        successes: total.successes,
        errors: total.errors,
        connections: total.connections,
        elapsed,
        p50_ms: ms(percentile(&total.latencies_us, 50.0)),
        p99_ms: ms(percentile(&total.latencies_us, 99.0)),
        max_ms: ms(total.latencies_us.last().copied().unwrap_or(0)),
        cpu_us: Vec::new(),
    })
}

async fn client<S, C, F>(shared: Arc<Shared>, keep_alive: bool, connect: C) -> ClientStats
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    C: Fn() -> F,
    F: Future<Output = Result<S>>,
{
    let mut stats = ClientStats::default();
    let mut conn: Option<Conn<S>> = None;
    loop {
        if Instant::now() >= shared.deadline {
            break;
        }
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= shared.limit || shared.requests.is_empty() {
            break;
        }
        let Some(request) = shared.requests.get(i % shared.requests.len()) else { break };
        let start = Instant::now();
        let attempt = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => {
                    stats.connections += 1;
                    conn.insert(Conn::new(connect().await?))
                }
            };
            c.send(request).await
        })
        .await
        .unwrap_or_else(|_| Err(anyhow!("no complete response within {REQUEST_TIMEOUT:?}")));
        let elapsed = start.elapsed();
        match attempt {
            Ok(response) => {
                if shared.check.ok(&response) {
                    stats.successes += 1;
                    stats.latencies_us.push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                } else {
                    stats.errors += 1;
                    shared.report_once(format!("HTTP {}", response.status), || {
                        String::from_utf8_lossy(&response.body).into_owned()
                    });
                }
                if !(keep_alive && response.keep_alive) {
                    if let Some(mut c) = conn.take() {
                        // close_notify / FIN, outside the timed part.
                        let _ = tokio::time::timeout(Duration::from_secs(1), c.stream.shutdown()).await;
                    }
                }
            }
            Err(e) => {
                stats.errors += 1;
                conn = None;
                shared.report_once("transport error".to_string(), || format!("{e:#}"));
            }
        }
    }
    stats
}

/// The TLS client configuration of a provisioning station: aws-lc-rs, our root as
/// the only trust anchor, the station certificate as client authentication. Without
/// `resume` every new connection is a full handshake, as for a new device; with it,
/// a reconnecting client resumes its TLS 1.3 session (PSK with a fresh ECDHE).
pub fn station_tls(
    root_der: Vec<u8>,
    chain: Vec<Vec<u8>>,
    key_pkcs8: Vec<u8>,
    resume: bool,
) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(root_der)).context("adding the identity root as trust anchor")?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            chain.into_iter().map(CertificateDer::from).collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8)),
        )
        .context("the station certificate and key")?;
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// A TCP + TLS connection to the HTTPS listener (certificate for IP 127.0.0.1).
pub async fn connect_tls(connector: TlsConnector, addr: SocketAddr) -> Result<TlsStream<tokio::net::TcpStream>> {
    let tcp = http::connect(addr).await?;
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    connector.connect(name, tcp).await.context("TLS handshake")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
