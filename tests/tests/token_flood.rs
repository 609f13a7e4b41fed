//! Abuse (issue 12, item 1): a flood of requests with a bogus API token —
//! `Authorization: Bearer pki_0123456789abcdef.x`, an id nobody has — from 16 curl
//! clients for 10 s, on 127.0.0.1 only. What the service may spend on it is bounded:
//!
//! - memory: RSS grows by less than [`RSS_BOUND_KIB`] (an Argon2id check per request
//!   took it from 197 MB to 2.4 GB);
//! - the audit log: a bounded number of entries, not one per request — the first
//!   refusal of each kind at once, the rest counted and written as one entry with the
//!   count when the window ends (or, as here, when the service stops);
//! - failed attempts: the address is answered 429 with `Retry-After` once it has used
//!   up its failures, and a valid token works again after that wait.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e_tests::{curl, curl_reply, sqlite_i64, ChildGuard, Cli, Service};

const CLIENTS: usize = 16;
const FLOOD: Duration = Duration::from_secs(10);
/// What the flood may add to the service's resident memory.
const RSS_BOUND_KIB: u64 = 64 * 1024;
/// The flood is cut short (and the test fails) well before it could hurt the machine.
const RSS_ABORT_KIB: u64 = 4 * RSS_BOUND_KIB;
/// Audit entries the flood may add while it runs (the first 401 and the first 429
/// of the one address, plus a window's flush should one end during the flood).
const AUDIT_BOUND: i64 = 8;
const BOGUS: &str = "Authorization: Bearer pki_0123456789abcdef.x";
/// One admin read; the certificate need not exist (authentication comes first).
const ACTION: &str = "api.certificate.read";

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    line.split_whitespace().nth(1).context("VmRSS value")?.parse().context("VmRSS value")
}

/// How many of each status the clients' outputs (one `%{http_code}` per line) hold.
fn tally(files: &[std::path::PathBuf]) -> Result<std::collections::BTreeMap<u16, u64>> {
    let mut counts = std::collections::BTreeMap::new();
    for f in files {
        for line in BufReader::new(std::fs::File::open(f)?).lines() {
            // The last line may be cut off by the kill.
            if let Ok(code) = line?.trim().parse::<u16>() {
                *counts.entry(code).or_insert(0) += 1;
            }
        }
    }
    Ok(counts)
}

#[test]
fn an_unknown_token_flood_costs_bounded_memory_and_audit() -> Result<()> {
    let dir = e2e_tests::workdir("token-flood")?;
    let d = dir.path();
    let cli = Cli::evaluation(d);
    cli.run_ok(&["init"])?;
    let token = cli.run_ok(&["tokens", "create", "--name", "reader", "--role", "auditor"])?.stdout.trim().to_string();
    let svc = Service::start(&cli)?;
    let pid = svc.pid().context("the service's pid")?;
    let root = curl(d, &["-f", &format!("{}/ca/identity-root.pem", svc.base_url())])?.ok()?;
    std::fs::write(d.join("root.pem"), root.stdout)?;
    let base = format!("https://127.0.0.1:{}/api/v1/certificates/device/", svc.https.port());
    let valid = format!("Authorization: Bearer {token}");

    // Warm up (TLS, the worker threads, the store): a valid read and a bogus one.
    let ok = curl_reply(d, &["--cacert", "root.pem", "-H", &valid, &format!("{base}01")])?;
    ensure!(ok.status == 404, "a valid token reading an unknown certificate:\n{}", ok.describe());
    let bogus = curl_reply(d, &["--cacert", "root.pem", "-H", BOGUS, &format!("{base}01")])?;
    ensure!(bogus.status == 401, "the bogus token:\n{}", bogus.describe());
    let audit = || sqlite_i64(d, "SELECT count(*) FROM audit_log");
    let (rss_before, audit_before) = (rss_kib(pid)?, audit()?);

    // 16 clients, each one curl on one keep-alive connection asking again and again
    // (a URL range: /device/1, /device/2, …), until killed.
    let mut clients = Vec::new();
    let mut outputs = Vec::new();
    for i in 0..CLIENTS {
        let out = d.join(format!("flood-{i}.txt"));
        let mut cmd = Command::new("curl");
        // Statuses go to stderr, which is not buffered: a killed client loses none.
        cmd.current_dir(d)
            .args(["-s", "--cacert", "root.pem", "-H", BOGUS, "-o", "/dev/null", "-w", "%{stderr}%{http_code}\n"])
            .arg(format!("{base}[1-100000000]"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&out)?);
        clients.push(ChildGuard::spawn(&mut cmd, format!("flood client {i}"))?);
        outputs.push(out);
    }
    let started = Instant::now();
    let mut peak = rss_before;
    while started.elapsed() < FLOOD && peak - rss_before < RSS_ABORT_KIB {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss_kib(pid)?);
    }
    let flooded = started.elapsed();
    for c in &mut clients {
        c.kill();
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss_kib(pid)?;
    peak = peak.max(rss_after);
    let audit_after = audit()?;
    let statuses = tally(&outputs)?;
    let requests: u64 = statuses.values().sum();
    eprintln!(
        "flood: {requests} requests in {flooded:.1?} from {CLIENTS} clients, statuses {statuses:?}; RSS {} MiB → \
         peak {} MiB (+{} MiB), {} MiB after; audit entries +{}",
        rss_before / 1024,
        peak / 1024,
        (peak - rss_before) / 1024,
        rss_after / 1024,
        audit_after - audit_before
    );
    ensure!(
        peak - rss_before < RSS_BOUND_KIB,
        "RSS grew by {} MiB (bound {} MiB)",
        (peak - rss_before) / 1024,
        RSS_BOUND_KIB / 1024
    );
    ensure!(
        audit_after - audit_before <= AUDIT_BOUND,
        "{} audit entries for {requests} refusals (bound {AUDIT_BOUND})",
        audit_after - audit_before
    );
    ensure!(requests >= 500, "the flood made only {requests} requests");
    ensure!(
        statuses.keys().all(|s| [401, 429].contains(s)),
        "every bogus request is refused as 401 or 429: {statuses:?}"
    );
    ensure!(statuses.get(&429).is_some_and(|&n| n > 0), "the address was never rate-limited: {statuses:?}");

    // The address has used up its failed attempts: even a valid token waits, is told
    // how long, and then gets in.
    let mut extra_refusals = 0;
    let mut reply = curl_reply(d, &["--cacert", "root.pem", "-H", &valid, &format!("{base}01")])?;
    if reply.status == 429 {
        extra_refusals += 1;
        let wait: u64 = reply
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("429 without a numeric Retry-After:\n{}", reply.describe()))?;
        ensure!(wait <= 60, "Retry-After {wait}");
        std::thread::sleep(Duration::from_secs(wait) + Duration::from_millis(200));
        reply = curl_reply(d, &["--cacert", "root.pem", "-H", &valid, &format!("{base}01")])?;
    }
    ensure!(reply.status == 404, "the valid token after the wait:\n{}", reply.describe());

    // A graceful stop writes the counts of the window: every refusal is accounted for,
    // the first of each kind as an entry and the rest in `details.repeated`.
    let stopped = Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
    ensure!(stopped.success(), "kill -TERM {pid}");
    let mut svc = svc;
    let exit = svc.wait_exit(Duration::from_secs(45))?;
    ensure!(exit.success(), "serve after SIGTERM: {exit}\n{}", svc.log_text());
    // Only the bogus token's refusals (401, and 429 once the address is limited): the
    // valid token's reads of a certificate that does not exist are audited as denied
    // too (404), once before and once after the flood, and are not refusals to count.
    let denied = format!(
        "FROM audit_log WHERE action = '{ACTION}' AND outcome LIKE 'denied:%' \
         AND json_extract(details, '$.status') IN (401, 429)"
    );
    let written = sqlite_i64(d, &format!("SELECT count(*) {denied}"))?;
    let repeated = sqlite_i64(d, &format!("SELECT COALESCE(SUM(json_extract(details, '$.repeated')), 0) {denied}"))?;
    let aggregated =
        sqlite_i64(d, &format!("SELECT count(*) {denied} AND json_extract(details, '$.repeated') IS NOT NULL"))?;
    ensure!(aggregated >= 1, "no aggregated entry");
    // An aggregated entry stands for the repeats of a kind whose first has its own entry.
    let accounted = (written - aggregated + repeated) as u64;
    // The warm-up's bogus request and the valid token's 429 are refusals too; a
    // request in flight when its client was killed may be counted but not tallied.
    let sent = requests + 1 + extra_refusals;
    eprintln!("audit: {written} refusal entries standing for {accounted} refusals; {sent} were answered");
    if !(sent..=sent + CLIENTS as u64).contains(&accounted) {
        bail!("{accounted} refusals audited (entries + counts), {sent} answered");
    }
    cli.audit_entries()?;
    Ok(())
}
