//! Station HTTP credentials (Basic/Bearer) where a profile allows them, with curl:
//! accepted instead of a client certificate only there, wrong or unknown credentials
//! refused alike (401) and audited, and the secret never stored in clear.

use anyhow::{Context, Result};
use e2e_tests::{curl, make_csr, openssl, path_str, sqlite_execute, sqlite_i64, Cli, Service, P256};

fn post(dir: &std::path::Path, port: u16, auth: &[&str], body_file: &str) -> Result<(u16, String)> {
    let url = format!("https://127.0.0.1:{port}/.well-known/est/simpleenroll");
    let data = format!("@{body_file}");
    let mut args = vec!["-w", "\n%{http_code}", "--cacert", "root.pem", "-H", "Content-Type: application/pkcs10"];
    args.extend_from_slice(auth);
    args.extend_from_slice(&["--data-binary", &data, &url]);
    let out = curl(dir, &args)?.ok()?;
    let (body, code) = out.stdout.rsplit_once('\n').context("no status line")?;
    Ok((code.trim().parse()?, body.to_string()))
}

fn device_csr(dir: &std::path::Path, dev: &str) -> Result<String> {
    let csr = make_csr(dir, dev, P256, &format!("/CN={dev}"), &["-outform", "DER"])?;
    let b64 = format!("{dev}.b64");
    openssl(dir, &["base64", "-in", path_str(&csr)?, "-out", &b64])?.ok()?;
    Ok(b64)
}

#[test]
fn station_credentials_work_only_where_the_profile_allows_them() -> Result<()> {
    let dir = e2e_tests::workdir("est-credentials")?;
    let d = dir.path();
    // The unlabeled path (device profile) allows credentials; label 'strict' uses a
    // copy of the device profile that does not.
    let cli = Cli::evaluation(d)
        .env("CA_PROFILES__DEVICE__STATION_CREDENTIALS", "true")
        .env("CA_PROFILES__STRICT__KIND", "device")
        .env("CA_PROFILES__STRICT__ISSUER", "device")
        .env("CA_PROFILES__STRICT__VALIDITY_DAYS", "365")
        .env("CA_PROFILES__STRICT__KEY_TYPES", "[ecdsa-p256]")
        .env("CA_PROFILES__STRICT__DEFAULT_MODEL", "generic")
        .env("CA_EST__LABELS__STRICT", "strict");
    cli.run_ok(&["init"])?;
    std::fs::write(d.join("devices.csv"), "SN-C1\nSN-C2\nSN-C3\nSN-C4\n")?;
    cli.run_ok(&["devices", "import", "--batch", "cred", "--model", "generic", "devices.csv"])?;
    let station_csr = make_csr(d, "station", P256, "/CN=line-9", &[])?;
    let added =
        cli.run_ok(&["stations", "add", "--csr", path_str(&station_csr)?, "--with-secret", "--out", "st.pem"])?;
    let secret = added
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("station secret (shown once, store it now): "))
        .context("the secret is printed once")?
        .trim()
        .to_string();
    assert_eq!(secret.len(), 32, "{}", added.stderr);
    // Only its HMAC under the credential key is stored; the key is private to its owner.
    let db = std::fs::read(e2e_tests::sqlite_path(d))?;
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret is stored in clear");
    assert_eq!(sqlite_i64(d, "SELECT count(*) FROM stations WHERE secret_hash LIKE 'hmac-sha256$%'")?, 1);
    let key = std::fs::metadata(d.join("pki-data/credential-hmac.key")).context("the credential key")?;
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777, 0o600);

    let svc = Service::start(&cli)?;
    let root = curl(d, &["-f", &format!("{}/ca/identity-root.pem", svc.base_url())])?.ok()?;
    std::fs::write(d.join("root.pem"), root.stdout)?;
    let port = svc.https.port();
    let issued = || sqlite_i64(d, "SELECT count(*) FROM certificates WHERE profile IN ('device', 'strict')");
    let denied = || sqlite_i64(d, "SELECT count(*) FROM audit_log WHERE outcome LIKE 'denied:%'");

    let basic = format!("line-9:{secret}");
    let (code, body) = post(d, port, &["-u", &basic], &device_csr(d, "SN-C1")?)?;
    assert_eq!(code, 200, "Basic credentials: {body}");
    let bearer = format!("Authorization: Bearer line-9.{secret}");
    let (code, body) = post(d, port, &["-H", &bearer], &device_csr(d, "SN-C2")?)?;
    assert_eq!(code, 200, "Bearer credentials: {body}");
    assert_eq!(issued()?, 2);

    // Wrong secret and unknown station look the same, and nothing is issued.
    let before = denied()?;
    let c3 = device_csr(d, "SN-C3")?;
    for auth in ["line-9:00000000000000000000000000000000", &format!("line-404:{secret}")] {
        let (code, body) = post(d, port, &["-u", auth], &c3)?;
        assert_eq!(code, 401, "{body}");
        assert!(body.contains("station credentials are not valid"), "{body}");
    }
    assert_eq!(denied()?, before + 2, "both refusals audited");

    // A profile that does not allow credentials wants the client certificate.
    let strict = format!("https://127.0.0.1:{port}/.well-known/est/strict/simpleenroll");
    let out = curl(
        d,
        &[
            "-w",
            "\n%{http_code}",
            "--cacert",
            "root.pem",
            "-u",
            &basic,
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &format!("@{c3}"),
            &strict,
        ],
    )?
    .ok()?;
    assert!(out.stdout.ends_with("401"), "{}", out.stdout);
    assert!(out.stdout.contains("client certificate is required"), "{}", out.stdout);
    assert_eq!(issued()?, 2);

    // A secret hashed by an earlier version (Argon2id) is refused unchecked, and the log
    // tells the operator why.
    let legacy = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    sqlite_execute(d, &format!("UPDATE stations SET secret_hash = '{legacy}' WHERE name = 'line-9'"))?;
    let (code, body) = post(d, port, &["-u", &basic], &c3)?;
    assert_eq!(code, 401, "{body}");
    assert!(svc.log_text().contains("Argon2id hash from an earlier version"), "{}", svc.log_text());
    assert_eq!(issued()?, 2);
    svc.stop();
    Ok(())
}
