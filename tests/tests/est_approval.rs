//! EST manual approval (a profile with `approval = "manual"`), driven with curl and
//! openssl against the real binary: 202 + Retry-After until an operator decides, the
//! retry of an approved request gets the certificate (the same one on every later
//! retry), a rejected request is refused for good, and every step is audited.

use anyhow::Result;
use e2e_tests::{curl, make_csr, openssl, path_str, sqlite_i64, Cli, Service, P256};

/// POSTs `body_file` to simpleenroll as the station; returns (status, headers+body).
fn enroll(dir: &std::path::Path, port: u16, body_file: &str) -> Result<(u16, String)> {
    let url = format!("https://127.0.0.1:{port}/.well-known/est/simpleenroll");
    let data = format!("@{body_file}");
    let out = curl(
        dir,
        &[
            "-i",
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
    )?
    .ok()?;
    let status = out
        .stdout
        .lines()
        .find(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, out.stdout))
}

/// The body of an HTTP response printed by `curl -i`.
fn body(response: &str) -> &str {
    response.split("\r\n\r\n").nth(1).unwrap_or("")
}

#[test]
fn manual_approval_holds_enrollment_until_an_operator_decides() -> Result<()> {
    let dir = e2e_tests::workdir("est-approval")?;
    let d = dir.path();
    let cli = Cli::evaluation(d).env("CA_PROFILES__DEVICE__APPROVAL", "manual");
    cli.run_ok(&["init"])?;
    std::fs::write(d.join("devices.csv"), "device_id,model\nSN-A1,generic\nSN-A2,generic\n")?;
    cli.run_ok(&["devices", "import", "--batch", "approval", "devices.csv"])?;
    let station_csr = make_csr(d, "station", P256, "/CN=line-7", &[])?;
    cli.run_ok(&["stations", "add", "--csr", path_str(&station_csr)?, "--out", "station.pem"])?;
    for dev in ["SN-A1", "SN-A2"] {
        let csr = make_csr(d, dev, P256, &format!("/CN={dev}"), &["-outform", "DER"])?;
        openssl(d, &["base64", "-in", path_str(&csr)?, "-out", &format!("{dev}.b64")])?.ok()?;
    }

    let svc = Service::start(&cli)?;
    let root = curl(d, &["-f", &format!("{}/ca/identity-root.pem", svc.base_url())])?.ok()?;
    std::fs::write(d.join("root.pem"), root.stdout)?;
    let port = svc.https.port();
    let certificates = || sqlite_i64(d, "SELECT count(*) FROM certificates WHERE profile = 'device'");

    // Both requests wait: 202 with Retry-After, nothing issued, device still expected.
    for dev in ["SN-A1", "SN-A2"] {
        let (status, response) = enroll(d, port, &format!("{dev}.b64"))?;
        assert_eq!(status, 202, "{response}");
        assert!(response.to_ascii_lowercase().contains("retry-after: 60"), "{response}");
        assert!(body(&response).contains("awaits an operator's approval"), "{response}");
    }
    // Asking again while pending changes nothing.
    assert_eq!(enroll(d, port, "SN-A1.b64")?.0, 202);
    assert_eq!(certificates()?, 0);
    assert_eq!(sqlite_i64(d, "SELECT count(*) FROM devices WHERE state = 'expected'")?, 2);

    let pending = cli.run_ok(&["est", "pending"])?.stdout;
    let id_of = |dev: &str| {
        pending.lines().find(|l| l.contains(dev)).and_then(|l| l.split_whitespace().next()).map(str::to_string)
    };
    let (a1, a2) = (id_of("SN-A1").expect("SN-A1 pending"), id_of("SN-A2").expect("SN-A2 pending"));
    assert_eq!(pending.lines().count(), 2, "{pending}");

    cli.run_ok(&["est", "approve", &a1])?;
    cli.run_ok(&["est", "reject", &a2])?;
    // Decisions are final.
    let again = cli.run(&["est", "approve", &a2])?;
    assert!(!again.success() && again.stderr.contains("already rejected"), "{}", again.describe());

    // The approved request's retry is issued, and a further retry gets the same certificate.
    let (status, first) = enroll(d, port, "SN-A1.b64")?;
    assert_eq!(status, 200, "{first}");
    let (status, second) = enroll(d, port, "SN-A1.b64")?;
    assert_eq!(status, 200, "{second}");
    assert_eq!(body(&first), body(&second), "a retry must return the certificate already issued");
    std::fs::write(d.join("a1.b64"), body(&first))?;
    openssl(d, &["base64", "-d", "-A", "-in", "a1.b64", "-out", "a1.p7"])?.ok()?;
    let printed = openssl(d, &["pkcs7", "-inform", "DER", "-in", "a1.p7", "-print_certs"])?.ok()?;
    assert!(printed.stdout.contains("CN = SN-A1") || printed.stdout.contains("CN=SN-A1"), "{}", printed.stdout);
    assert_eq!(certificates()?, 1, "one certificate for two successful answers");
    assert_eq!(sqlite_i64(d, "SELECT count(*) FROM devices WHERE device_id = 'SN-A1' AND state = 'active'")?, 1);

    // The rejected one is refused for good.
    let (status, response) = enroll(d, port, "SN-A2.b64")?;
    assert_eq!(status, 403, "{response}");
    assert!(body(&response).contains("rejected by an operator"), "{response}");
    assert_eq!(certificates()?, 1);

    let all = cli.run_ok(&["est", "pending", "--all"])?.stdout;
    assert!(all.lines().any(|l| l.starts_with(&a1) && l.contains("issued")), "{all}");
    assert!(all.lines().any(|l| l.starts_with(&a2) && l.contains("rejected")), "{all}");
    for action in ["est.request", "est.approve", "est.reject"] {
        let n = sqlite_i64(d, &format!("SELECT count(*) FROM audit_log WHERE action = '{action}'"))?;
        assert!(n >= 1, "{action} not audited");
    }
    svc.stop();
    cli.run_ok(&["audit", "verify"])?;
    Ok(())
}
