//! Evaluation mode (no config file): the first `serve` creates the hierarchy in
//! `./pki-data`, serves health and CA certificates over HTTP, HTTPS with a
//! device-CA-issued server certificate (TLS 1.2+ only), keeps its secrets 0600, and
//! a restart reuses what it created.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use e2e_tests::{curl, free_port, openssl, require_tool, ChildGuard, Cli, Service};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
}

/// `openssl s_client` against 127.0.0.1:port with stdin closed (connect, handshake, quit).
fn s_client(dir: &Path, port: u16, args: &[&str]) -> Result<e2e_tests::Output> {
    let connect = format!("127.0.0.1:{port}");
    let mut all = vec!["s_client", "-connect", connect.as_str()];
    all.extend_from_slice(args);
    openssl(dir, &all)
}

/// Proves the local openssl client can still negotiate TLS 1.1 at all (against an
/// `openssl s_server` that allows it) — otherwise "TLS 1.1 refused" would pass
/// vacuously.
fn assert_client_speaks_tls11(dir: &Path) -> Result<()> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
            "-keyout",
            "ctl.key",
            "-out",
            "ctl.pem",
        ],
    )?
    .ok()?;
    let port = free_port()?;
    let accept = format!("127.0.0.1:{port}");
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir)
        .args(["s_server", "-accept", &accept, "-cert", "ctl.pem", "-key", "ctl.key", "-tls1_1"])
        .args(["-cipher", "DEFAULT:@SECLEVEL=0", "-quiet"])
        // s_server stops when its stdin closes: keep the pipe open while it runs.
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _server = ChildGuard::spawn(&mut cmd, "openssl s_server")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = s_client(dir, port, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])?;
        if out.success() && out.stdout.contains("Protocol  : TLSv1.1") {
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "control failed: this openssl cannot negotiate TLS 1.1 even with a server that allows it, \
             so the TLS 1.1 refusal check would be vacuous:\n{}",
            out.describe()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn first_start_serves_health_ca_certificates_and_tls() -> Result<()> {
    require_tool("curl")?;
    require_tool("openssl")?;
    let dir = e2e_tests::workdir("eval")?;
    let d = dir.path();
    let cli = Cli::evaluation(d);
    assert!(!d.join("pki-data").exists());

    let svc = Service::start(&cli)?;
    let base = svc.base_url();
    assert!(
        svc.log_text().contains("creating the default one"),
        "first start should announce that it creates the hierarchy:\n{}",
        svc.log_text()
    );

    // Health and readiness, with curl -f (fails on HTTP errors).
    let health = curl(d, &["-f", &format!("{base}/healthz")])?.ok()?;
    assert_eq!(health.stdout.trim(), "ok");
    let ready = curl(d, &["-f", &format!("{base}/readyz")])?.ok()?;
    let ready: serde_json::Value = serde_json::from_str(&ready.stdout)?;
    assert_eq!(ready["ready"], serde_json::Value::Bool(true), "readyz: {ready}");

    // The identity root: PEM, self-signed, a CA, signature valid.
    curl(d, &["-f", "-o", "root.pem", &format!("{base}/ca/identity-root.pem")])?.ok()?;
    let names = openssl(d, &["x509", "-in", "root.pem", "-noout", "-subject", "-issuer"])?.ok()?;
    let mut lines = names.stdout.lines();
    let subject = lines.next().unwrap_or_default().trim_start_matches("subject=").trim().to_string();
    let issuer = lines.next().unwrap_or_default().trim_start_matches("issuer=").trim().to_string();
    assert!(subject.contains("Identity Root CA"), "root subject: {subject}");
    assert_eq!(subject, issuer, "the root must be self-issued");
    let bc = openssl(d, &["x509", "-in", "root.pem", "-noout", "-ext", "basicConstraints"])?.ok()?;
    assert!(bc.stdout.contains("critical") && bc.stdout.contains("CA:TRUE"), "root basicConstraints: {}", bc.stdout);
    openssl(d, &["verify", "-x509_strict", "-CAfile", "root.pem", "root.pem"])?.ok()?;

    // The device CA as DER (the AIA caIssuers form), chaining to the root.
    let dev = curl(d, &["-f", "-o", "device.crt", "-w", "%{content_type}", &format!("{base}/ca/device.crt")])?.ok()?;
    assert_eq!(dev.stdout.trim(), "application/pkix-cert");
    let der = std::fs::read(d.join("device.crt"))?;
    assert_eq!(der.first(), Some(&0x30), "device.crt must be DER (a SEQUENCE), not PEM");
    openssl(d, &["x509", "-inform", "DER", "-in", "device.crt", "-out", "device.pem"])?.ok()?;
    let v = openssl(d, &["verify", "-x509_strict", "-CAfile", "root.pem", "device.pem"])?;
    assert!(v.success() && v.stdout.contains("device.pem: OK"), "device CA does not chain:\n{}", v.describe());

    // Unknown CA → 404 (and curl -f fails).
    let code = curl(d, &["-o", "/dev/null", "-w", "%{http_code}", &format!("{base}/ca/nope.pem")])?.ok()?;
    assert_eq!(code.stdout.trim(), "404");
    assert!(!curl(d, &["-f", "-o", "/dev/null", &format!("{base}/ca/nope.pem")])?.success());

    // HTTPS: server certificate for 127.0.0.1 (an IP SAN: a single-label dNSName such
    // as "localhost" fails strict RFC 5280 linting), chaining to the identity root.
    let port = svc.https.port();
    let https = curl(d, &["-f", "--cacert", "root.pem", &format!("https://127.0.0.1:{port}/healthz")])?;
    assert!(https.success() && https.stdout.trim() == "ok", "HTTPS by IP address:\n{}", https.describe());
    // Hostname verification is on: a name the certificate does not carry is refused.
    let resolve = format!("pki.invalid:{port}:127.0.0.1");
    let wrong_name = curl(
        d,
        &["-f", "--cacert", "root.pem", "--resolve", &resolve, &format!("https://pki.invalid:{port}/healthz")],
    )?;
    assert!(!wrong_name.success(), "a name not in the certificate must fail verification:\n{}", wrong_name.describe());

    // TLS 1.2 accepted (and verified), TLS 1.1 refused.
    let t12 =
        s_client(d, port, &["-tls1_2", "-CAfile", "root.pem", "-verify_return_error", "-verify_ip", "127.0.0.1"])?;
    assert!(t12.success() && t12.stdout.contains("Protocol  : TLSv1.2"), "TLS 1.2 handshake:\n{}", t12.describe());
    assert_client_speaks_tls11(d)?;
    let t11 = s_client(d, port, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])?;
    assert!(!t11.success() && !t11.stdout.contains("Cipher is ECDHE"), "TLS 1.1 must be refused:\n{}", t11.describe());

    // Secrets on disk are private.
    let pass = d.join("pki-data/keystore.pass");
    assert!(pass.is_file(), "evaluation mode must generate {}", pass.display());
    assert_eq!(mode(&pass), 0o600, "keystore.pass mode");
    let keys = d.join("pki-data/keys");
    let mut key_files = 0;
    for e in std::fs::read_dir(&keys)? {
        let p = e?.path();
        assert_eq!(mode(&p), 0o600, "{} mode is {:o}", p.display(), mode(&p));
        key_files += 1;
    }
    // 5 CA keys + 3 OCSP-signer keys + the TLS key, at least.
    assert!(key_files >= 9, "expected the CA, OCSP and TLS keys in {}, found {key_files} files", keys.display());
    assert_eq!(mode(&keys) & 0o077, 0, "{} must not be accessible to group/others", keys.display());

    // Restart on the same directory: same hierarchy, not a new one.
    let root_before = std::fs::read(d.join("root.pem"))?;
    let device_before = der;
    svc.stop();
    let svc = Service::start(&cli)?;
    assert!(
        !svc.log_text().contains("creating the default one"),
        "restart must not create a new hierarchy:\n{}",
        svc.log_text()
    );
    let base = svc.base_url();
    curl(d, &["-f", "-o", "root2.pem", &format!("{base}/ca/identity-root.pem")])?.ok()?;
    curl(d, &["-f", "-o", "device2.crt", &format!("{base}/ca/device.crt")])?.ok()?;
    assert_eq!(
        e2e_tests::openssl_fingerprint(d, &d.join("root2.pem"))?,
        e2e_tests::openssl_fingerprint(d, &d.join("root.pem"))?,
        "root fingerprint changed across restart"
    );
    assert_eq!(std::fs::read(d.join("root2.pem"))?, root_before);
    assert_eq!(std::fs::read(d.join("device2.crt"))?, device_before);
    // The restarted HTTPS server still chains to the same root.
    let port = svc.https.port();
    let again = curl(d, &["-f", "--cacert", "root.pem", &format!("https://127.0.0.1:{port}/healthz")])?;
    assert!(again.success(), "HTTPS after restart:\n{}", again.describe());
    Ok(())
}
