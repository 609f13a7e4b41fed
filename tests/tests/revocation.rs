//! Revocation from the command line, and the CRLs relying parties fetch, checked with
//! openssl on both stores: the revoked certificate fails `openssl verify -crl_check`
//! (and `-crl_check_all` with the root's CRL, which `init` signs), the good one passes,
//! the CRL verifies against the issuing CA, its number only grows (also across a
//! restart), a revocation after the base CRL shows at once in a re-signed base and in
//! the delta (`-use_deltas -extended_crl`) even with hourly bases — from the CLI and
//! from the admin API —, sharded CRLs carry their IDP, and every revocation is audited
//! once.

use anyhow::{Context, Result};
use e2e_tests::{curl, make_csr, openssl, path_str, Cli, Service, TestDb, P256};

fn crl_number(dir: &std::path::Path, crl_der: &str) -> Result<u64> {
    let out = openssl(dir, &["crl", "-inform", "DER", "-in", crl_der, "-noout", "-crlnumber"])?.ok()?;
    let hex = out.stdout.trim().strip_prefix("crlNumber=0x").context("crlNumber line")?;
    Ok(u64::from_str_radix(hex, 16)?)
}

fn fetch_crl(dir: &std::path::Path, svc: &Service, out: &str) -> Result<u64> {
    fetch(dir, svc, "device.crl", out)
}

/// Fetches `/crl/{path}` (DER) into `out`; its CRL number.
fn fetch(dir: &std::path::Path, svc: &Service, path: &str, out: &str) -> Result<u64> {
    curl(dir, &["-f", "-o", out, &format!("{}/crl/{path}", svc.base_url())])?.ok()?;
    crl_number(dir, out)
}

/// Polls `/crl/{path}` until its number exceeds `after` (the job publishes every
/// second in these tests).
fn fetch_newer(dir: &std::path::Path, svc: &Service, path: &str, out: &str, after: u64) -> Result<u64> {
    let start = std::time::Instant::now();
    loop {
        let n = fetch(dir, svc, path, out)?;
        if n > after {
            return Ok(n);
        }
        anyhow::ensure!(start.elapsed() < std::time::Duration::from_secs(10), "{path} stuck at CRL number {n}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The base CRL number a delta names (`openssl crl -text`: the line after "Delta CRL
/// Indicator").
fn delta_base(text: &str) -> Option<u64> {
    let mut lines = text.lines().skip_while(|l| !l.contains("Delta CRL Indicator"));
    lines.next()?;
    lines.next()?.trim().parse().ok()
}

fn to_pem(dir: &std::path::Path, der: &str, pem: &str) -> Result<()> {
    openssl(dir, &["crl", "-inform", "DER", "-in", der, "-out", pem])?.ok()?;
    Ok(())
}

fn says_revoked(o: &e2e_tests::Output) -> bool {
    o.stdout.contains("certificate revoked") || o.stderr.contains("certificate revoked")
}

fn revocation_flow(cli: Cli) -> Result<()> {
    let d = cli.workdir.clone();
    let d = d.as_path();
    cli.run_ok(&["init"])?;
    let mut serials = Vec::new();
    for dev in ["SN-R1", "SN-R2", "SN-R3"] {
        let csr = make_csr(d, dev, P256, &format!("/CN={dev}"), &[])?;
        cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", &format!("{dev}-chain.pem")])?;
        openssl(d, &["x509", "-in", &format!("{dev}-chain.pem"), "-out", &format!("{dev}.pem")])?.ok()?;
        let serial = openssl(d, &["x509", "-in", &format!("{dev}.pem"), "-noout", "-serial"])?.ok()?;
        serials.push(serial.stdout.trim().trim_start_matches("serial=").to_string());
    }
    let before = cli.audit_entries()?;
    let revoked =
        cli.run_ok(&["revoke", "--issuer", "device", "--serial", &serials[0], "--reason", "keyCompromise"])?;
    assert!(revoked.stdout.contains("SN-R1"), "{}", revoked.describe());
    // The revocation, and the CRLs it re-signed (crl.publish).
    assert_eq!(cli.audit_entries()?, before + 2, "the revocation is audited");
    // Refusals, with the cause named and nothing changed.
    for (args, cause) in [
        (vec!["--serial", serials[0].as_str(), "--reason", "keyCompromise"], "already revoked"),
        (vec!["--serial", "0badc0de", "--reason", "keyCompromise"], "not found"),
        (vec!["--serial", serials[1].as_str(), "--reason", "bogus"], "unknown revocation reason"),
        (vec!["--serial", "xyz", "--reason", "keyCompromise"], "not hex"),
    ] {
        let mut full = vec!["revoke", "--issuer", "device"];
        full.extend(args);
        let out = cli.run(&full)?;
        assert!(!out.success() && out.stderr.contains(cause), "{cause}: {}", out.describe());
    }
    assert_eq!(cli.audit_entries()?, before + 2);

    // keyCompromise: that public key is never certified again.
    let again = cli.run(&["issue", "--profile", "device", "--csr", "SN-R1.csr", "--out", "again.pem"])?;
    assert!(!again.success() && again.stderr.contains("key compromise"), "{}", again.describe());

    // A whole device: its certificates revoked, the device marked revoked.
    std::fs::write(d.join("devices.csv"), "SN-R3,generic\n")?;
    cli.run_ok(&["devices", "import", "--batch", "r", "devices.csv"])?;
    let out = cli.run_ok(&["revoke", "--device", "SN-R3", "--reason", "cessationOfOperation"])?;
    assert!(
        out.stdout.contains("1 certificate(s)") && out.stdout.contains(&serials[2].to_lowercase()),
        "{}",
        out.stdout
    );
    let missing = cli.run(&["revoke", "--device", "SN-NOPE"])?;
    assert!(!missing.success() && missing.stderr.contains("not found"), "{}", missing.describe());
    let neither = cli.run(&["revoke", "--reason", "keyCompromise"])?;
    assert!(!neither.success(), "{}", neither.describe());

    // The job publishes every second; complete CRLs only every hour, so later
    // revocations reach relying parties through the delta.
    let svc_cli = cli.clone().env("CA_CRL__REGENERATE_SECS", "1").env("CA_CRL__BASE_REGENERATE_SECS", "3600");
    let svc = Service::start(&svc_cli)?;
    e2e_tests::save_device_chain(d, &svc)?;
    let first = fetch_crl(d, &svc, "device-1.crl")?;
    to_pem(d, "device-1.crl", "device.crl.pem")?;
    let verified = openssl(d, &["crl", "-in", "device.crl.pem", "-noout", "-CAfile", "device-ca.pem", "-verify"])?;
    assert!(verified.stderr.contains("verify OK") || verified.stdout.contains("verify OK"), "{}", verified.describe());
    let text = openssl(d, &["crl", "-in", "device.crl.pem", "-noout", "-text"])?.ok()?.stdout;
    assert!(text.contains(&serials[0].to_uppercase()) && text.contains("Key Compromise"), "{text}");
    assert!(text.contains(&serials[2].to_uppercase()) && text.contains("Cessation Of Operation"), "{text}");
    assert!(!text.contains(&serials[1].to_uppercase()), "{text}");

    let bad = openssl(d, &["verify", "-crl_check", "-CAfile", "chain.pem", "-CRLfile", "device.crl.pem", "SN-R1.pem"])?;
    assert!(!bad.success() && says_revoked(&bad), "{}", bad.describe());
    let good =
        openssl(d, &["verify", "-crl_check", "-CAfile", "chain.pem", "-CRLfile", "device.crl.pem", "SN-R2.pem"])?;
    assert!(good.success() && good.stdout.contains("SN-R2.pem: OK"), "{}", good.describe());

    assert!(text.contains("Freshest CRL") && text.contains("/crl/device/delta.crl"), "base names its delta: {text}");

    // Revoked after the base was published: the CLI re-signs the complete CRL and its
    // delta before it returns, so even with complete CRLs re-signed hourly every CRL
    // lists it as soon as the service's CRL cache (1 s) lets it through.
    let before = crl_number(d, "device-1.crl")?;
    cli.run_ok(&["revoke", "--issuer", "device", "--serial", &serials[1], "--reason", "superseded"])?;
    let start = std::time::Instant::now();
    let base_number = loop {
        let n = fetch(d, &svc, "device.crl", "device-r.crl")?;
        let t = openssl(d, &["crl", "-inform", "DER", "-in", "device-r.crl", "-noout", "-text"])?.ok()?.stdout;
        if n > before && t.contains(&serials[1].to_uppercase()) {
            break n;
        }
        anyhow::ensure!(start.elapsed() < std::time::Duration::from_secs(3), "the complete CRL never listed it: {t}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    eprintln!("CLI revoke -> complete CRL lists it after {:?}", start.elapsed());
    let t = loop {
        fetch(d, &svc, "device/delta.crl", "delta.crl")?;
        let t = openssl(d, &["crl", "-inform", "DER", "-in", "delta.crl", "-noout", "-text"])?.ok()?.stdout;
        if t.contains(&serials[1].to_uppercase()) && delta_base(&t) == Some(base_number) {
            break t;
        }
        anyhow::ensure!(start.elapsed() < std::time::Duration::from_secs(10), "the delta never listed it: {t}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(t.contains("Delta CRL Indicator"), "{t}");
    to_pem(d, "delta.crl", "delta.crl.pem")?;
    to_pem(d, "device-r.crl", "device-r.crl.pem")?;
    let old_base =
        openssl(d, &["verify", "-crl_check", "-CAfile", "chain.pem", "-CRLfile", "device.crl.pem", "SN-R2.pem"])?;
    assert!(old_base.success(), "the base from before does not know: {}", old_base.describe());
    let new_base =
        openssl(d, &["verify", "-crl_check", "-CAfile", "chain.pem", "-CRLfile", "device-r.crl.pem", "SN-R2.pem"])?;
    assert!(!new_base.success() && says_revoked(&new_base), "{}", new_base.describe());
    let with_delta = openssl(
        d,
        &[
            "verify",
            "-crl_check",
            "-use_deltas",
            "-extended_crl",
            "-CAfile",
            "chain.pem",
            "-CRLfile",
            "device-r.crl.pem",
            "-CRLfile",
            "delta.crl.pem",
            "SN-R2.pem",
        ],
    )?;
    assert!(!with_delta.success() && says_revoked(&with_delta), "{}", with_delta.describe());

    // The whole chain (-crl_check_all) needs the root's CRL: signed in a ceremony
    // with its offline key, then published by the service.
    // `init` signed the first one; `ca-service crl` signs the next.
    let first_root = fetch(d, &svc, "identity-root.crl", "root.crl")?;
    cli.run_ok(&["crl", "--ca", "identity-root", "--days", "30"])?;
    let start = std::time::Instant::now();
    while fetch(d, &svc, "identity-root.crl", "root.crl")? <= first_root {
        anyhow::ensure!(start.elapsed() < std::time::Duration::from_secs(5), "the new root CRL is not served");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    to_pem(d, "root.crl", "root.crl.pem")?;
    let verified = openssl(d, &["crl", "-in", "root.crl.pem", "-noout", "-CAfile", "root.pem", "-verify"])?;
    assert!(verified.stderr.contains("verify OK") || verified.stdout.contains("verify OK"), "{}", verified.describe());
    let all = |cert: &str| {
        openssl(
            d,
            &[
                "verify",
                "-crl_check_all",
                "-CAfile",
                "root.pem",
                "-untrusted",
                "device-ca.pem",
                "-CRLfile",
                "device.crl.pem",
                "-CRLfile",
                "root.crl.pem",
                cert,
            ],
        )
    };
    let missing_root_crl =
        openssl(d, &["verify", "-crl_check_all", "-CAfile", "chain.pem", "-CRLfile", "device.crl.pem", "SN-R2.pem"])?;
    assert!(!missing_root_crl.success(), "-crl_check_all without the root CRL: {}", missing_root_crl.describe());
    let ok = all("SN-R2.pem")?;
    assert!(ok.success(), "{}", ok.describe());
    let bad = all("SN-R1.pem")?;
    assert!(!bad.success() && says_revoked(&bad), "{}", bad.describe());

    // The number only grows: on every round and across a restart.
    let second = fetch_newer(d, &svc, "device/delta.crl", "device-2.crl", first)?;
    assert!(second > first, "{second} after {first}");
    svc.stop();
    let svc = Service::start(&svc_cli)?;
    let third = fetch_newer(d, &svc, "device/delta.crl", "device-3.crl", second)?;
    assert!(third > second, "{third} after {second} across a restart");
    svc.stop();
    cli.run_ok(&["audit", "verify"])?;
    Ok(())
}

#[test]
fn revoke_and_crl_on_sqlite() -> Result<()> {
    let dir = e2e_tests::workdir("revoke-sqlite")?;
    revocation_flow(Cli::evaluation(dir.path()))
}

#[test]
fn revoke_and_crl_on_postgres() -> Result<()> {
    let db = TestDb::create()?;
    let dir = e2e_tests::workdir("revoke-pg")?;
    revocation_flow(Cli::evaluation(dir.path()).env("CA_STORAGE__URL", &db.url))
}

/// The cRLDistributionPoints URL of a certificate (PEM file).
fn cdp(dir: &std::path::Path, cert: &str) -> Result<String> {
    let text = openssl(dir, &["x509", "-in", cert, "-noout", "-ext", "crlDistributionPoints"])?.ok()?.stdout;
    let url = text.lines().find_map(|l| l.trim().strip_prefix("URI:")).context("no CDP URI")?;
    Ok(url.to_string())
}

#[test]
fn sharded_crls_carry_their_distribution_point() -> Result<()> {
    let dir = e2e_tests::workdir("crl-shards")?;
    let d = dir.path();
    let cli = Cli::evaluation(d).env("CA_CRL__SHARDS", "4").env("CA_CRL__REGENERATE_SECS", "1");
    cli.run_ok(&["init"])?;
    let svc = Service::start(&cli)?;
    // Issued with the URLs the service publishes at, as in production.
    let cli = cli.env("CA_PUBLIC_BASE_URL", svc.base_url());
    // Certificates until two land in different shards (each has a 1/4 chance per draw).
    let mut by_shard: std::collections::BTreeMap<String, String> = Default::default();
    for i in 0..40 {
        let dev = format!("SN-S{i}");
        let csr = make_csr(d, &dev, P256, &format!("/CN={dev}"), &[])?;
        let chain = format!("{dev}-chain.pem");
        cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", &chain])?;
        openssl(d, &["x509", "-in", &chain, "-out", &format!("{dev}.pem")])?.ok()?;
        let url = cdp(d, &format!("{dev}.pem"))?;
        assert!(url.contains("/crl/device/") && url.ends_with(".crl"), "{url}");
        by_shard.entry(url).or_insert(dev);
        if by_shard.len() == 2 {
            break;
        }
    }
    let [(shard_url, victim), (other_url, bystander)]: [(String, String); 2] =
        by_shard.into_iter().collect::<Vec<_>>().try_into().map_err(|_| anyhow::anyhow!("all in one shard"))?;
    let serial = openssl(d, &["x509", "-in", &format!("{victim}.pem"), "-noout", "-serial"])?.ok()?;
    let serial = serial.stdout.trim().trim_start_matches("serial=").to_string();
    cli.run_ok(&["revoke", "--issuer", "device", "--serial", &serial, "--reason", "keyCompromise"])?;

    e2e_tests::save_device_chain(d, &svc)?;
    let path = |url: &str| url.split("/crl/").nth(1).unwrap_or_default().to_string();
    let start = std::time::Instant::now();
    let text = loop {
        fetch(d, &svc, &path(&shard_url), "shard.crl")?;
        let text = openssl(d, &["crl", "-inform", "DER", "-in", "shard.crl", "-noout", "-text"])?.ok()?.stdout;
        if text.contains(&serial.to_uppercase()) || start.elapsed() > std::time::Duration::from_secs(10) {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    fetch(d, &svc, &path(&other_url), "other.crl")?;
    assert!(text.contains("Issuing Distribution Point: critical") && text.contains(&shard_url), "{text}");
    assert!(text.contains("Only User Certificates") && text.contains(&serial.to_uppercase()), "{text}");
    let other = openssl(d, &["crl", "-inform", "DER", "-in", "other.crl", "-noout", "-text"])?.ok()?.stdout;
    assert!(!other.contains(&serial.to_uppercase()) && other.contains(&other_url), "{other}");
    to_pem(d, "shard.crl", "shard.crl.pem")?;
    to_pem(d, "other.crl", "other.crl.pem")?;
    let verify = |crl: &str, cert: &str| {
        openssl(d, &["verify", "-crl_check", "-CAfile", "chain.pem", "-CRLfile", crl, &format!("{cert}.pem")])
    };
    let revoked = verify("shard.crl.pem", &victim)?;
    assert!(!revoked.success() && says_revoked(&revoked), "{}", revoked.describe());
    let good = verify("other.crl.pem", &bystander)?;
    assert!(good.success(), "{}", good.describe());
    // A shard's CRL says nothing about another shard's certificates.
    let wrong_scope = verify("other.crl.pem", &victim)?;
    assert!(!wrong_scope.success() && !says_revoked(&wrong_scope), "{}", wrong_scope.describe());
    // Shards outside the layout, and garbage, are 404 with a reason (never 503).
    for bad in ["device/4.crl", "device/4-delta.crl", "device/x.crl", "identity-root/delta.crl", "nope.crl"] {
        let out = curl(d, &["-s", "-w", "\n%{http_code}", &format!("{}/crl/{bad}", svc.base_url())])?.ok()?;
        assert!(out.stdout.ends_with("404"), "{bad}: {}", out.stdout);
    }
    // The complete CRL still lists every revocation.
    fetch(d, &svc, "device.crl", "full.crl")?;
    let full = openssl(d, &["crl", "-inform", "DER", "-in", "full.crl", "-noout", "-text"])?.ok()?.stdout;
    assert!(full.contains(&serial.to_uppercase()) && !full.contains("Issuing Distribution Point"), "{full}");
    svc.stop();
    Ok(())
}

/// An admin API revocation re-signs the complete CRL at once: with complete CRLs due
/// only hourly and the job's period a minute, `openssl crl` of `/crl/device.crl` from
/// the revoking instance lists the serial within a second. And `init` signed the roots'
/// first CRLs: they are served from the start and verify against their roots.
fn api_revocation_flow(cli: Cli) -> Result<()> {
    let d = cli.workdir.clone();
    let d = d.as_path();
    cli.run_ok(&["init"])?;
    let csr = make_csr(d, "SN-API1", P256, "/CN=SN-API1", &[])?;
    cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", "SN-API1-chain.pem"])?;
    let serial = openssl(d, &["x509", "-in", "SN-API1-chain.pem", "-noout", "-serial"])?.ok()?;
    let serial = serial.stdout.trim().trim_start_matches("serial=").to_string();
    let token = cli.run_ok(&["tokens", "create", "--name", "ops", "--role", "operator"])?.stdout.trim().to_string();
    let svc_cli = cli.clone().env("CA_CRL__REGENERATE_SECS", "60").env("CA_CRL__BASE_REGENERATE_SECS", "3600");
    let svc = Service::start(&svc_cli)?;
    e2e_tests::save_device_chain(d, &svc)?;

    for root in ["identity-root", "update-root"] {
        curl(d, &["-f", "-o", &format!("{root}.pem"), &format!("{}/ca/{root}.pem", svc.base_url())])?.ok()?;
        fetch(d, &svc, &format!("{root}.crl"), &format!("{root}.crl"))?;
        to_pem(d, &format!("{root}.crl"), &format!("{root}.crl.pem"))?;
        let verified = openssl(
            d,
            &["crl", "-in", &format!("{root}.crl.pem"), "-noout", "-CAfile", &format!("{root}.pem"), "-verify"],
        )?;
        let said = format!("{}{}", verified.stdout, verified.stderr);
        assert!(verified.success() && said.contains("verify OK"), "{root}: {}", verified.describe());
    }

    let before = fetch(d, &svc, "device.crl", "before.crl")?;
    let url = format!("https://127.0.0.1:{}/api/v1/certificates/device/{serial}/revoke", svc.https.port());
    let auth = format!("Authorization: Bearer {token}");
    let start = std::time::Instant::now();
    let reply = e2e_tests::curl_reply(
        d,
        &[
            "--cacert",
            "root.pem",
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "--data-raw",
            r#"{"reason":"keyCompromise"}"#,
            &url,
        ],
    )?;
    assert_eq!(reply.status, 200, "{}", reply.describe());
    let text = loop {
        let n = fetch(d, &svc, "device.crl", "after.crl")?;
        let text = openssl(d, &["crl", "-inform", "DER", "-in", "after.crl", "-noout", "-text"])?.ok()?.stdout;
        if n > before && text.contains(&serial.to_uppercase()) {
            break text;
        }
        anyhow::ensure!(
            start.elapsed() < std::time::Duration::from_secs(1),
            "the complete CRL did not list the revocation within 1 s: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    eprintln!("API revoke -> complete CRL lists it after {:?}", start.elapsed());
    assert!(text.contains("Key Compromise") && !text.contains("Delta CRL Indicator"), "{text}");
    to_pem(d, "after.crl", "after.crl.pem")?;
    let chain = format!("{}-chain.pem", "SN-API1");
    openssl(d, &["x509", "-in", &chain, "-out", "SN-API1.pem"])?.ok()?;
    let bad =
        openssl(d, &["verify", "-crl_check", "-CAfile", "chain.pem", "-CRLfile", "after.crl.pem", "SN-API1.pem"])?;
    assert!(!bad.success() && says_revoked(&bad), "{}", bad.describe());
    // The delta was re-signed with it, naming the new base.
    fetch(d, &svc, "device/delta.crl", "delta.crl")?;
    let delta = openssl(d, &["crl", "-inform", "DER", "-in", "delta.crl", "-noout", "-text"])?.ok()?.stdout;
    assert!(delta.contains(&serial.to_uppercase()), "{delta}");
    svc.stop();
    cli.run_ok(&["audit", "verify"])?;
    Ok(())
}

#[test]
fn api_revocation_reaches_complete_crls_on_sqlite() -> Result<()> {
    let dir = e2e_tests::workdir("api-revoke-sqlite")?;
    api_revocation_flow(Cli::evaluation(dir.path()))
}

#[test]
fn api_revocation_reaches_complete_crls_on_postgres() -> Result<()> {
    let db = TestDb::create()?;
    let dir = e2e_tests::workdir("api-revoke-pg")?;
    api_revocation_flow(Cli::evaluation(dir.path()).env("CA_STORAGE__URL", &db.url))
}
