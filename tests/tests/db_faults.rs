//! Database faults under EST load (DESIGN invariant 8): the real binary on a PostgreSQL
//! cluster the test starts itself (never the shared server).
//!
//! - Outage: the cluster is stopped under load → only 503s, each within a bound; it is
//!   started again → enrollments succeed again, without restarting the service.
//! - Freeze: the postmaster and its backends are SIGSTOPped → EST requests and
//!   `/readyz` answer 503 within the deadlines; SIGCONT → the service recovers.
//!
//! Load: a few concurrent curl clients (mutual TLS with the station certificate), each
//! enrolling its own devices one after the other.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use e2e_tests::{curl_reply, http_get, make_csr, openssl, Cli, PgCluster, Service, P256};

const CLIENTS: usize = 4;
const DEVICES_PER_CLIENT: usize = 30;
/// The longest an EST request may take while the database is stopped (connection
/// refused: the answer is immediate; the bound leaves room for a loaded machine).
const OUTAGE_BOUND: Duration = Duration::from_secs(5);
/// The longest an EST request may take while the database is frozen: a request waits
/// on the store at most three times before it is answered (the lookup on a pooled
/// connection: silence 5 s; the audit of the refusal and one more on new connections:
/// open 3 s each), 11 s, and the bound leaves room for a loaded machine.
const FREEZE_BOUND: Duration = Duration::from_secs(15);
/// `/readyz` answers within 2 s (+ curl and scheduling).
const READY_BOUND: Duration = Duration::from_secs(3);
/// After the database is back, every client enrolls again within this long.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

/// A deployment on `pg` (declare the cluster first, so that it outlives the service).
struct Deployment {
    svc: Service,
    _cli: Cli,
    dir: tempfile::TempDir,
}

impl Deployment {
    fn start(prefix: &str, pg: &PgCluster) -> Result<Self> {
        let dir = e2e_tests::workdir(prefix)?;
        let d = dir.path();
        let cli = Cli::evaluation(d).env("CA_STORAGE__URL", pg.url());
        cli.run_ok(&["init"])?;
        let mut csv = String::from("device_id,model,class,hardware_serial\n");
        for c in 0..CLIENTS {
            for n in 0..DEVICES_PER_CLIENT {
                csv.push_str(&format!("SN-{c}-{n},generic,default,HW-{c}-{n}\n"));
            }
        }
        std::fs::write(d.join("devices.csv"), csv)?;
        cli.run_ok(&["devices", "import", "--batch", "b1", "--model", "generic", "devices.csv"])?;
        make_csr(d, "station", P256, "/CN=station-1", &[])?;
        cli.run_ok(&["stations", "add", "--csr", "station.csr", "--out", "station.pem"])?;
        let svc = Service::start(&cli)?;
        e2e_tests::curl(d, &["-f", "-o", "root.pem", &format!("{}/ca/identity-root.pem", svc.base_url())])?.ok()?;
        Ok(Self { svc, _cli: cli, dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Base64 CSR bodies for client `c`'s devices, as files in the work directory.
    fn bodies(&self, c: usize) -> Result<Vec<String>> {
        let mut files = Vec::new();
        for n in 0..DEVICES_PER_CLIENT {
            let name = format!("dev-{c}-{n}");
            let der = self.path().join(format!("{name}.csr.der"));
            openssl(
                self.path(),
                &[
                    "req",
                    "-new",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                    &format!("{name}.key"),
                    "-subj",
                    &format!("/CN=SN-{c}-{n}"),
                    "-outform",
                    "DER",
                    "-out",
                    e2e_tests::path_str(&der)?,
                ],
            )?
            .ok()?;
            let file = format!("{name}.csr.b64");
            std::fs::write(self.path().join(&file), STANDARD.encode(std::fs::read(&der)?))?;
            files.push(file);
        }
        Ok(files)
    }

    fn enroll_url(&self) -> String {
        format!("https://127.0.0.1:{}/.well-known/est/simpleenroll", self.svc.https.port())
    }

    /// `GET /readyz`: status, body and how long it took.
    fn readyz(&self) -> (u16, String, Duration) {
        let started = Instant::now();
        match http_get(self.svc.http, "/readyz") {
            Ok((status, body)) => (status, String::from_utf8_lossy(&body).into_owned(), started.elapsed()),
            Err(e) => (0, format!("{e:#}"), started.elapsed()),
        }
    }
}

/// One EST request as a client saw it.
#[derive(Debug, Clone)]
struct Record {
    client: usize,
    start: Instant,
    end: Instant,
    status: u16,
    /// The Retry-After header, if any.
    retry_after: Option<String>,
    body: String,
}

impl Record {
    fn latency(&self) -> Duration {
        self.end - self.start
    }
}

/// Runs the load until `stop`: each client enrolls its devices in turn (a device is
/// retried until it gets 200), a request every 100 ms.
fn run_load(dep: &Deployment, bodies: &[Vec<String>], stop: &AtomicBool, records: &Mutex<Vec<Record>>) -> Result<()> {
    let url = dep.enroll_url();
    std::thread::scope(|scope| {
        let handles: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(client, files)| {
                let url = url.clone();
                scope.spawn(move || -> Result<()> {
                    let mut next = 0;
                    while !stop.load(Ordering::Relaxed) && next < files.len() {
                        let data = format!("@{}", files[next]);
                        let start = Instant::now();
                        let reply = curl_reply(
                            dep.path(),
                            &[
                                "--cacert",
                                "root.pem",
                                "--cert",
                                "station.pem",
                                "--key",
                                "station.key",
                                "-H",
                                "Content-Type: application/pkcs10",
                                "--data-binary",
                                &data,
                                &url,
                            ],
                        )?;
                        let end = Instant::now();
                        if reply.status == 200 {
                            next += 1;
                        }
                        let retry_after = reply.header("retry-after").map(str::to_owned);
                        let record =
                            Record { client, start, end, status: reply.status, retry_after, body: reply.text() };
                        records.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(record);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a load client panicked"))??;
        }
        Ok(())
    })
}

/// Waits (bounded) until every client has had a 200 that started after `since`.
fn wait_recovered(records: &Mutex<Vec<Record>>, since: Instant) -> Result<Duration> {
    let deadline = Instant::now() + RECOVERY_BOUND;
    loop {
        let recovered = {
            let r = records.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            (0..CLIENTS).all(|c| r.iter().any(|x| x.client == c && x.status == 200 && x.start >= since))
        };
        if recovered {
            return Ok(since.elapsed());
        }
        ensure!(
            Instant::now() < deadline,
            "not every client enrolled within {RECOVERY_BOUND:?} of the database's return"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every request that started during the fault (`[from, to)`) was answered 503 within
/// `bound`, or was still waiting when the fault ended but not yet for longer than
/// `bound`. Returns how many were answered during the fault and the slowest of them.
fn all_503_within(records: &[Record], from: Instant, to: Instant, bound: Duration) -> Result<(usize, Duration)> {
    let mut answered = Vec::new();
    for r in records.iter().filter(|r| r.start >= from && r.start < to) {
        if r.end < to {
            ensure!(r.status == 503, "a request during the fault got {} (not 503): {:?}", r.status, r.body);
            ensure!(r.latency() <= bound, "a 503 took {:?} (bound {bound:?}): {:?}", r.latency(), r.body);
            ensure!(r.retry_after.as_deref() == Some("5"), "a 503 with Retry-After {:?}: {:?}", r.retry_after, r.body);
            answered.push(r.latency());
        } else {
            ensure!(
                to - r.start <= bound,
                "a request waited {:?} during the fault (bound {bound:?}), then got {} after {:?}: {:?}",
                to - r.start,
                r.status,
                r.latency(),
                r.body
            );
        }
    }
    ensure!(answered.len() >= CLIENTS, "too few requests answered during the fault: {}", answered.len());
    Ok((answered.len(), answered.iter().copied().max().unwrap_or_default()))
}

fn fault_test(prefix: &str, fault: Fault) -> Result<()> {
    let mut pg = PgCluster::start()?;
    let dep = Deployment::start(prefix, &pg)?;
    let bodies: Vec<Vec<String>> = (0..CLIENTS).map(|c| dep.bodies(c)).collect::<Result<_>>()?;
    let (stop, records) = (AtomicBool::new(false), Mutex::new(Vec::new()));
    let (ready_before, body, _) = dep.readyz();
    ensure!(ready_before == 200, "not ready before the fault: {body}");
    let outcome = std::thread::scope(|scope| -> Result<()> {
        let load = scope.spawn(|| run_load(&dep, &bodies, &stop, &records));
        let result = inject(prefix, fault, &mut pg, &dep, &records);
        stop.store(true, Ordering::Relaxed);
        let _ = pg.thaw();
        let loaded = load.join().map_err(|_| anyhow::anyhow!("the load panicked"))?;
        result.and(loaded)
    });
    outcome.with_context(|| format!("service log:\n{}", tail(&dep.svc.log_text())))?;
    Ok(())
}

/// Under the running load: the fault, `/readyz` during it, the end of the fault, the
/// recovery; then checks every request made during the fault.
fn inject(
    prefix: &str,
    fault: Fault,
    pg: &mut PgCluster,
    dep: &Deployment,
    records: &Mutex<Vec<Record>>,
) -> Result<()> {
    let (hold, bound) = match fault {
        Fault::Stop => (Duration::from_secs(6), OUTAGE_BOUND),
        Fault::Freeze => (Duration::from_secs(20), FREEZE_BOUND),
    };
    std::thread::sleep(Duration::from_millis(1500));
    match fault {
        Fault::Stop => pg.stop()?,
        Fault::Freeze => pg.freeze()?,
    }
    let from = Instant::now();
    std::thread::sleep(hold / 2);
    let (status, body, took) = dep.readyz();
    eprintln!("{prefix}: /readyz during the fault: {status} in {took:?}: {body}");
    ensure!(status == 503, "/readyz during the fault: {status} {body}");
    ensure!(body.contains("storage"), "/readyz should say the storage is not ready: {body}");
    ensure!(took <= READY_BOUND, "/readyz took {took:?} during the fault");
    std::thread::sleep(hold.saturating_sub(from.elapsed()));
    let to = Instant::now();
    match fault {
        Fault::Stop => pg.resume()?,
        Fault::Freeze => pg.thaw()?,
    }
    let recovered = wait_recovered(records, to)?;
    let records = records.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let (n, slowest) = all_503_within(&records, from, to, bound)?;
    let (status, body, _) = dep.readyz();
    ensure!(status == 200, "/readyz after recovery: {status} {body}");
    eprintln!(
        "{prefix}: {n} requests answered during the fault, all 503, slowest {slowest:?}; \
         every client enrolled again {recovered:?} after the database returned"
    );
    Ok(())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Stop,
    Freeze,
}

#[test]
fn database_outage_gives_fast_503s_and_recovers() -> Result<()> {
    fault_test("db-outage", Fault::Stop)
}

#[test]
fn frozen_database_gives_503s_within_the_deadline_and_recovers() -> Result<()> {
    fault_test("db-freeze", Fault::Freeze)
}
