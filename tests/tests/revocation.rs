//! Revocation from the command line, and the CRL relying parties fetch, checked with
//! openssl on both stores: the revoked certificate fails `openssl verify -crl_check`,
//! the good one passes, the CRL verifies against the issuing CA, its number only grows
//! (also across a restart), and every revocation is audited once.

use anyhow::{Context, Result};
use e2e_tests::{curl, make_csr, openssl, path_str, Cli, Service, TestDb, P256};

fn crl_number(dir: &std::path::Path, crl_der: &str) -> Result<u64> {
    let out = openssl(dir, &["crl", "-inform", "DER", "-in", crl_der, "-noout", "-crlnumber"])?.ok()?;
    let hex = out.stdout.trim().strip_prefix("crlNumber=0x").context("crlNumber line")?;
    Ok(u64::from_str_radix(hex, 16)?)
}

fn fetch_crl(dir: &std::path::Path, svc: &Service, out: &str) -> Result<u64> {
    curl(dir, &["-f", "-o", out, &format!("{}/crl/device.crl", svc.base_url())])?.ok()?;
    crl_number(dir, out)
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
    assert_eq!(cli.audit_entries()?, before + 1, "the revocation is audited");
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
    assert_eq!(cli.audit_entries()?, before + 1);

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

    let svc = Service::start(&cli.clone().env("CA_CRL__REGENERATE_SECS", "0"))?;
    for (ca, file) in [("identity-root", "root.pem"), ("device", "device-ca.pem")] {
        let pem = curl(d, &["-f", &format!("{}/ca/{ca}.pem", svc.base_url())])?.ok()?;
        std::fs::write(d.join(file), pem.stdout)?;
    }
    let first = fetch_crl(d, &svc, "device-1.crl")?;
    openssl(d, &["crl", "-inform", "DER", "-in", "device-1.crl", "-out", "device.crl.pem"])?.ok()?;
    let verified = openssl(d, &["crl", "-in", "device.crl.pem", "-noout", "-CAfile", "device-ca.pem", "-verify"])?;
    assert!(verified.stderr.contains("verify OK") || verified.stdout.contains("verify OK"), "{}", verified.describe());
    let text = openssl(d, &["crl", "-in", "device.crl.pem", "-noout", "-text"])?.ok()?.stdout;
    assert!(text.contains(&serials[0].to_uppercase()) && text.contains("Key Compromise"), "{text}");
    assert!(text.contains(&serials[2].to_uppercase()) && text.contains("Cessation Of Operation"), "{text}");
    assert!(!text.contains(&serials[1].to_uppercase()), "{text}");

    let chain = format!(
        "{}{}",
        std::fs::read_to_string(d.join("root.pem"))?,
        std::fs::read_to_string(d.join("device-ca.pem"))?
    );
    std::fs::write(d.join("chain.pem"), chain)?;
    let bad = openssl(d, &["verify", "-crl_check", "-CAfile", "chain.pem", "-CRLfile", "device.crl.pem", "SN-R1.pem"])?;
    let says_revoked = bad.stdout.contains("certificate revoked") || bad.stderr.contains("certificate revoked");
    assert!(!bad.success() && says_revoked, "{}", bad.describe());
    let good =
        openssl(d, &["verify", "-crl_check", "-CAfile", "chain.pem", "-CRLfile", "device.crl.pem", "SN-R2.pem"])?;
    assert!(good.success() && good.stdout.contains("SN-R2.pem: OK"), "{}", good.describe());

    // The number only grows: on every regeneration and across a restart.
    let second = fetch_crl(d, &svc, "device-2.crl")?;
    assert!(second > first, "{second} after {first}");
    svc.stop();
    let svc = Service::start(&cli.clone().env("CA_CRL__REGENERATE_SECS", "0"))?;
    let third = fetch_crl(d, &svc, "device-3.crl")?;
    assert!(third > second, "{third} after {second} across a restart");
    // Offline root: no CRL from the service, with a reason.
    let root = curl(d, &["-w", "\n%{http_code}", &format!("{}/crl/identity-root.crl", svc.base_url())])?.ok()?;
    assert!(root.stdout.ends_with("404") && root.stdout.contains("offline"), "{}", root.stdout);
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
