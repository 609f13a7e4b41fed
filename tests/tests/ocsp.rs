//! The OCSP responder with `openssl ocsp` as the client, on both stores: good,
//! revoked (time + reason) and unknown; POST with a nonce and GET with RFC 5019
//! caching headers; the delegated signer's response verifies against our root; a
//! revocation made while the service runs is visible in OCSP and in the CRL; bad
//! requests get the RFC 6960 error statuses, and methods OCSP has not 405.

use anyhow::{Context, Result};
use e2e_tests::{curl, make_csr, openssl, path_str, Cli, Output, Service, TestDb, P256};

fn ocsp(d: &std::path::Path, args: &[&str]) -> Result<Output> {
    let mut full = vec!["ocsp"];
    full.extend_from_slice(args);
    openssl(d, &full)
}

fn text(o: &Output) -> String {
    format!("{}{}", o.stdout, o.stderr)
}

fn responder_flow(cli: Cli) -> Result<()> {
    let d = cli.workdir.clone();
    let d = d.as_path();
    cli.run_ok(&["init"])?;
    let mut serials = Vec::new();
    for dev in ["SN-O1", "SN-O2"] {
        let csr = make_csr(d, dev, P256, &format!("/CN={dev}"), &[])?;
        cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", &format!("{dev}-chain.pem")])?;
        openssl(d, &["x509", "-in", &format!("{dev}-chain.pem"), "-out", &format!("{dev}.pem")])?.ok()?;
        let s = openssl(d, &["x509", "-in", &format!("{dev}.pem"), "-noout", "-serial"])?.ok()?;
        serials.push(s.stdout.trim().trim_start_matches("serial=").to_string());
    }
    let svc = Service::start(&cli.clone().env("CA_CRL__REGENERATE_SECS", "1"))?;
    e2e_tests::save_device_chain(d, &svc)?;
    let url = format!("{}/ocsp", svc.base_url());
    let base = ["-issuer", "device-ca.pem", "-url", url.as_str(), "-CAfile", "chain.pem"];

    // Both good, POST with a nonce (openssl's default), response verified.
    let mut args = base.to_vec();
    args.extend(["-cert", "SN-O1.pem", "-cert", "SN-O2.pem"]);
    let out = ocsp(d, &args)?;
    let t = text(&out);
    assert!(t.contains("Response verify OK") && t.contains("SN-O1.pem: good") && t.contains("SN-O2.pem: good"), "{t}");

    // Revoked while the service runs: visible at once in OCSP and in the CRL.
    cli.run_ok(&["revoke", "--issuer", "device", "--serial", &serials[0], "--reason", "keyCompromise"])?;
    let out = ocsp(d, &args)?;
    let t = text(&out);
    assert!(t.contains("Response verify OK"), "{t}");
    assert!(t.contains("SN-O1.pem: revoked") && t.contains("keyCompromise"), "{t}");
    assert!(t.contains("SN-O2.pem: good"), "{t}");
    // And in the CRLs within the publishing round (1 s here).
    let start = std::time::Instant::now();
    loop {
        curl(d, &["-f", "-o", "device.crl", &format!("{}/crl/device/delta.crl", svc.base_url())])?.ok()?;
        let crl = openssl(d, &["crl", "-inform", "DER", "-in", "device.crl", "-noout", "-text"])?.ok()?;
        if crl.stdout.contains(&serials[0].to_uppercase()) {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "not in the delta CRL: {}", crl.stdout);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    eprintln!("CLI revoke -> delta CRL after {:?}", start.elapsed());

    // Never issued → unknown (SHA-256 CertID, no nonce).
    let mut args = vec!["-issuer", "device-ca.pem", "-sha256", "-serial", "0x0123456789"];
    args.extend(["-url", url.as_str(), "-CAfile", "chain.pem", "-no_nonce"]);
    let t = text(&ocsp(d, &args)?);
    assert!(t.contains("Response verify OK") && t.contains("0x0123456789: unknown"), "{t}");

    // GET (RFC 6960 Appendix A) with RFC 5019 caching headers.
    ocsp(d, &["-issuer", "device-ca.pem", "-cert", "SN-O2.pem", "-no_nonce", "-reqout", "req.der"])?.ok()?;
    let b64 = openssl(d, &["base64", "-A", "-in", "req.der"])?.ok()?.stdout;
    let encoded: String = b64
        .trim()
        .bytes()
        .map(|b| match b {
            b'+' => "%2B".to_string(),
            b'/' => "%2F".to_string(),
            b'=' => "%3D".to_string(),
            _ => (b as char).to_string(),
        })
        .collect();
    let get = curl(d, &["-f", "-D", "-", "-o", "resp.der", &format!("{url}/{encoded}")])?.ok()?;
    let headers = get.stdout.to_ascii_lowercase();
    for h in
        ["content-type: application/ocsp-response", "cache-control: max-age=", "last-modified:", "etag:", "expires:"]
    {
        assert!(headers.contains(h), "missing {h}:\n{headers}");
    }
    let t = text(&ocsp(
        d,
        &[
            "-respin",
            "resp.der",
            "-reqin",
            "req.der",
            "-issuer",
            "device-ca.pem",
            "-cert",
            "SN-O2.pem",
            "-CAfile",
            "chain.pem",
        ],
    )?);
    assert!(t.contains("Response verify OK") && t.contains("SN-O2.pem: good"), "{t}");

    // Bad requests.
    let error_status = |body_file: &str, content_type: &str| -> Result<String> {
        let out = curl(
            d,
            &[
                "-o",
                "err.der",
                "-w",
                "%{http_code}",
                "-H",
                &format!("Content-Type: {content_type}"),
                "--data-binary",
                &format!("@{body_file}"),
                &url,
            ],
        )?
        .ok()?;
        if out.stdout.trim() != "200" {
            return Ok(format!("HTTP {}", out.stdout.trim()));
        }
        let t = text(&ocsp(d, &["-respin", "err.der", "-resp_text", "-noverify"])?);
        Ok(t.lines().find(|l| l.contains("Responder Error")).context("no responder error")?.to_string())
    };
    std::fs::write(d.join("garbage.der"), b"\x30\x03\x02\x01\x01garbage")?;
    assert!(error_status("garbage.der", "application/ocsp-request")?.contains("malformedrequest"));
    // A declared length over the 16 KiB limit is refused before the body is read.
    std::fs::write(d.join("big.der"), vec![0x30u8; 17 * 1024])?;
    assert_eq!(error_status("big.der", "application/ocsp-request")?, "HTTP 413");
    assert_eq!(error_status("req.der", "text/plain")?, "HTTP 415");
    // An issuer we do not serve.
    ocsp(d, &["-issuer", "root.pem", "-cert", "device-ca.pem", "-reqout", "foreign.der"])?.ok()?;
    assert!(error_status("foreign.der", "application/ocsp-request")?.contains("unauthorized"));
    // Methods OCSP does not have: 405 naming the ones it has.
    for (method, path) in [("PUT", "/ocsp"), ("DELETE", "/ocsp"), ("PATCH", "/ocsp/MAA="), ("PUT", "/ocsp/MAA=")] {
        let target = format!("{}{path}", svc.base_url());
        let reply = e2e_tests::curl_reply(d, &["-X", method, "--data-binary", "@req.der", &target])?;
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.describe());
        assert_eq!(reply.header("allow"), Some("GET, POST"), "{}", reply.describe());
    }

    // Pre-signed answers (no nonce) learn of a revocation made by another process (the
    // CLI here) through the store watch, not after the response's validity.
    let no_nonce =
        ["-issuer", "device-ca.pem", "-cert", "SN-O2.pem", "-url", &url, "-CAfile", "chain.pem", "-no_nonce"];
    let t = text(&ocsp(d, &no_nonce)?);
    assert!(t.contains("Response verify OK") && t.contains("SN-O2.pem: good"), "{t}");
    cli.run_ok(&["revoke", "--issuer", "device", "--serial", &serials[1], "--reason", "superseded"])?;
    let revoked_at = std::time::Instant::now();
    loop {
        let t = text(&ocsp(d, &no_nonce)?);
        if t.contains("SN-O2.pem: revoked") {
            assert!(t.contains("Response verify OK") && t.contains("superseded"), "{t}");
            break;
        }
        assert!(revoked_at.elapsed() < std::time::Duration::from_secs(10), "still not revoked after 10 s: {t}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("CLI revoke -> pre-signed OCSP answer revoked after {:?}", revoked_at.elapsed());
    svc.stop();
    cli.run_ok(&["audit", "verify"])?;
    Ok(())
}

#[test]
fn ocsp_responder_on_sqlite() -> Result<()> {
    let dir = e2e_tests::workdir("ocsp-sqlite")?;
    responder_flow(Cli::evaluation(dir.path()))
}

#[test]
fn ocsp_responder_on_postgres() -> Result<()> {
    let db = TestDb::create()?;
    let dir = e2e_tests::workdir("ocsp-pg")?;
    responder_flow(Cli::evaluation(dir.path()).env("CA_STORAGE__URL", &db.url))
}

/// `serve` renews a delegated OCSP signer certificate that is within a third of its
/// lifetime of expiring (here: the profile's lifetime is raised to 300 days, so the
/// 30-day certificate from init counts as nearly expired), and answers with the new one.
#[test]
fn ocsp_signer_certificate_is_renewed_at_start() -> Result<()> {
    let dir = e2e_tests::workdir("ocsp-renew")?;
    let d = dir.path();
    let cli = Cli::evaluation(d);
    cli.run_ok(&["init"])?;
    let signers = || e2e_tests::sqlite_i64(d, "SELECT count(*) FROM certificates WHERE profile = 'ocsp-signer-device'");
    assert_eq!(signers()?, 1);
    let svc = Service::start(&cli)?;
    assert_eq!(signers()?, 1, "a fresh signer certificate is kept");
    svc.stop();
    let svc = Service::start(&cli.clone().env("CA_PROFILES__OCSP-SIGNER-DEVICE__VALIDITY_DAYS", "300"))?;
    assert_eq!(signers()?, 2, "the nearly expired signer certificate is renewed");
    let csr = make_csr(d, "SN-X", P256, "/CN=SN-X", &[])?;
    cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", "x-chain.pem"])?;
    openssl(d, &["x509", "-in", "x-chain.pem", "-out", "x.pem"])?.ok()?;
    e2e_tests::save_device_chain(d, &svc)?;
    let url = format!("{}/ocsp", svc.base_url());
    let out =
        ocsp(d, &["-issuer", "device-ca.pem", "-cert", "x.pem", "-url", &url, "-CAfile", "chain.pem", "-resp_text"])?;
    let t = text(&out);
    assert!(t.contains("Response verify OK") && t.contains("x.pem: good"), "{t}");
    assert!(t.contains("Not After"), "the responder certificate is included: {t}");
    svc.stop();
    Ok(())
}
