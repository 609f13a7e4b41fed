//! Two `ca-service serve` instances on one PostgreSQL database (DESIGN invariant 6):
//! the scheduled CRL job runs on one of them (one `crl.publish` per round, all from the
//! same instance, as many as one instance alone would sign), CRL numbers only grow
//! across both, serials stay unique, a revocation through one instance is in the
//! other's OCSP within a second and in every complete CRL it serves soon after, and
//! when the instance running the job dies the other takes the job over.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e_tests::{curl, curl_reply, make_csr, openssl, path_str, Cli, Service, TestDb, P256};

/// `crl.publish` entries after `seq`: (seq, instance, trigger, [(CRL, number)]).
type Publication = (i64, String, String, Vec<(String, u64)>);

fn publications(db: &TestDb, after: i64) -> Result<Vec<Publication>> {
    let rows = db.query_strings(&format!(
        "SELECT seq::text || ' ' || details FROM audit_log WHERE action = 'crl.publish' AND seq > {after} ORDER BY seq"
    ))?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, details) = row.split_once(' ').context("seq and details")?;
        let details: serde_json::Value = serde_json::from_str(details)?;
        let crls = details["published"]
            .as_array()
            .context("published")?
            .iter()
            .filter_map(|c| {
                c.as_str()?.split_once(" #").and_then(|(n, k)| Some((n.to_string(), k.parse::<u64>().ok()?)))
            })
            .collect();
        out.push((
            seq.parse()?,
            details["instance"].as_str().unwrap_or("?").to_string(),
            details["trigger"].as_str().unwrap_or("?").to_string(),
            crls,
        ));
    }
    Ok(out)
}

fn last_seq(db: &TestDb) -> Result<i64> {
    db.query_i64("SELECT COALESCE(MAX(seq), 0) FROM audit_log")
}

/// The instance name a publisher records for a server (`<host>:<pid>`).
fn instance_of(svc: &Service) -> Result<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    Ok(format!("{}:{}", host.trim(), svc.pid().context("pid")?))
}

fn crl_number(dir: &std::path::Path, svc: &Service, path: &str) -> Result<u64> {
    let file = format!("n-{}.crl", svc.http.port());
    curl(dir, &["-f", "-o", &file, &format!("{}/crl/{path}", svc.base_url())])?.ok()?;
    let out = openssl(dir, &["crl", "-inform", "DER", "-in", &file, "-noout", "-crlnumber"])?.ok()?;
    let hex = out.stdout.trim().strip_prefix("crlNumber=0x").context("crlNumber line")?;
    Ok(u64::from_str_radix(hex, 16)?)
}

#[test]
fn two_instances_share_one_postgres() -> Result<()> {
    const ROUND_SECS: u64 = 1;
    const WINDOW_SECS: u64 = 6;
    let db = TestDb::create()?;
    let dir = e2e_tests::workdir("two-instances")?;
    let d = dir.path();
    let cli = Cli::evaluation(d).env("CA_STORAGE__URL", &db.url);
    cli.run_ok(&["init"])?;
    let csr = make_csr(d, "SN-T1", P256, "/CN=SN-T1", &[])?;
    cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", "SN-T1-chain.pem"])?;
    openssl(d, &["x509", "-in", "SN-T1-chain.pem", "-out", "SN-T1.pem"])?.ok()?;
    let serial = openssl(d, &["x509", "-in", "SN-T1.pem", "-noout", "-serial"])?.ok()?;
    let serial = serial.stdout.trim().trim_start_matches("serial=").to_string();
    let token = cli.run_ok(&["tokens", "create", "--name", "ops", "--role", "operator"])?.stdout.trim().to_string();

    let svc_cli = cli.clone().env("CA_CRL__REGENERATE_SECS", ROUND_SECS.to_string());
    let a = Service::start(&svc_cli)?;
    let b = Service::start(&svc_cli)?;
    let instances = [instance_of(&a)?, instance_of(&b)?];
    // Both are up and past their first round.
    std::thread::sleep(Duration::from_millis(2500));

    // One signer per round: as many scheduled publications as rounds, all by one
    // instance (with a lock taken per round, both instances signed every round).
    let window = Instant::now();
    let seq0 = last_seq(&db)?;
    let mut numbers: BTreeMap<u16, u64> = BTreeMap::new();
    while window.elapsed() < Duration::from_secs(WINDOW_SECS) {
        // What each instance serves only grows.
        for svc in [&a, &b] {
            let n = crl_number(d, svc, "device/delta.crl")?;
            let previous = numbers.insert(svc.http.port(), n).unwrap_or(0);
            assert!(n >= previous, "instance {} served CRL #{n} after #{previous}", svc.http.port());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // Nothing is revoked meanwhile: every publication is a scheduled one.
    let scheduled = publications(&db, seq0)?;
    let elapsed = window.elapsed().as_secs_f64();
    let signers: std::collections::BTreeSet<&str> = scheduled.iter().map(|(_, i, _, _)| i.as_str()).collect();
    eprintln!("{} crl.publish entries in {WINDOW_SECS} s, by {signers:?}", scheduled.len());
    // Rounds that can fall into the window, as long as it really lasted.
    let rounds = (elapsed / ROUND_SECS as f64).ceil() as usize;
    let at_least = usize::try_from(WINDOW_SECS / ROUND_SECS)? - 2;
    assert!(
        (at_least..=rounds + 1).contains(&scheduled.len()),
        "{} scheduled publications in {elapsed:.1} s of {ROUND_SECS} s rounds: {scheduled:?}",
        scheduled.len()
    );
    assert!(scheduled.iter().all(|(_, _, trigger, _)| trigger == "schedule"), "{scheduled:?}");
    assert_eq!(signers.len(), 1, "more than one instance ran the CRL job: {scheduled:?}");
    let leader = signers.iter().next().map(|s| s.to_string()).unwrap_or_default();
    assert!(instances.contains(&leader), "{leader} is neither of {instances:?}");

    // A revocation through the instance that does not run the job: in the other's
    // OCSP within a second, and in the complete CRL both serve.
    let (revoker, other) = if leader == instances[0] { (&b, &a) } else { (&a, &b) };
    e2e_tests::save_device_chain(d, revoker)?;
    let before = crl_number(d, other, "device.crl")?;
    let url = format!("https://127.0.0.1:{}/api/v1/certificates/device/{serial}/revoke", revoker.https.port());
    let auth = format!("Authorization: Bearer {token}");
    let body = r#"{"reason":"keyCompromise"}"#;
    let args = ["--cacert", "root.pem", "-X", "POST", "-H", auth.as_str(), "-H", "Content-Type: application/json"];
    let mut args = args.to_vec();
    args.extend(["--data-raw", body, url.as_str()]);
    let reply = curl_reply(d, &args)?;
    assert_eq!(reply.status, 200, "{}", reply.describe());
    let revoked = Instant::now();
    let ocsp_url = format!("{}/ocsp", other.base_url());
    let ocsp =
        ["ocsp", "-issuer", "device-ca.pem", "-cert", "SN-T1.pem", "-url", ocsp_url.as_str(), "-no_nonce", "-noverify"];
    loop {
        let out = openssl(d, &ocsp)?.ok()?;
        if out.stdout.contains("SN-T1.pem: revoked") {
            break;
        }
        assert!(out.stdout.contains("SN-T1.pem: good"), "{}", out.describe());
        anyhow::ensure!(
            revoked.elapsed() < Duration::from_secs(1),
            "not revoked in the other instance's OCSP within 1 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("revoked through one instance -> the other's OCSP after {:?}", revoked.elapsed());
    loop {
        let n = crl_number(d, other, "device.crl")?;
        let text =
            openssl(d, &["crl", "-inform", "DER", "-in", &format!("n-{}.crl", other.http.port()), "-noout", "-text"])?
                .ok()?
                .stdout;
        if n > before && text.contains(&serial.to_uppercase()) {
            break;
        }
        anyhow::ensure!(revoked.elapsed() < Duration::from_secs(3), "the other's complete CRL never listed it: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("revoked through one instance -> the other's complete CRL after {:?}", revoked.elapsed());

    // CRL numbers come from one sequence per CA, whoever signed: never one twice (and
    // what each instance served only grew, above); serials are unique.
    let all = publications(&db, 0)?;
    let mut used: BTreeMap<(String, u64), String> = BTreeMap::new();
    for (seq, instance, _, crls) in &all {
        for (crl, n) in crls {
            let ca = crl.split('/').next().unwrap_or_default().to_string();
            let first = used.insert((ca.clone(), *n), format!("{crl} (seq {seq}, {instance})"));
            assert!(first.is_none(), "CRL number {n} of {ca} used twice: {first:?} and {crl} (seq {seq}, {instance})");
        }
    }
    assert!(
        all.iter().any(|(_, i, t, _)| t == "revocation" && i != &leader),
        "the revoker re-signed the CRLs: {all:?}"
    );
    let duplicates = db.query_i64(
        "SELECT COUNT(*) FROM (SELECT issuer, serial_hex FROM certificates GROUP BY issuer, serial_hex HAVING COUNT(*) > 1) d",
    )?;
    assert_eq!(duplicates, 0, "duplicate serials");
    let served = db.query_i64("SELECT COUNT(*) FROM certificates WHERE profile = 'tls-server'")?;
    assert!(served >= 2, "each instance issued its own server certificate ({served})");

    // The instance running the job dies: the other takes it over.
    let (survivor, dead) = if leader == instances[0] { (b, a) } else { (a, b) };
    let survivor_name = instance_of(&survivor)?;
    dead.stop();
    let seq1 = last_seq(&db)?;
    let takeover = Instant::now();
    loop {
        let by_survivor =
            publications(&db, seq1)?.into_iter().filter(|(_, i, t, _)| t == "schedule" && i == &survivor_name).count();
        if by_survivor >= 2 {
            break;
        }
        anyhow::ensure!(takeover.elapsed() < Duration::from_secs(10), "the surviving instance never ran the job");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("the other instance took the CRL job over after {:?}", takeover.elapsed());
    survivor.stop();
    cli.run_ok(&["audit", "verify"])?;
    Ok(())
}
