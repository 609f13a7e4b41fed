//! The HTTPS server certificate can come from files instead of the hierarchy
//! (`server.tls_cert_file` / `server.tls_key_file`), e.g. from a public CA.

use anyhow::Result;
use e2e_tests::{curl, openssl, Cli, Service};

#[test]
fn https_serves_a_configured_certificate() -> Result<()> {
    let dir = e2e_tests::workdir("tls-files")?;
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-subj",
            "/CN=pki.test.example",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-days",
            "2",
            "-out",
            "server.pem",
        ],
    )?
    .ok()?;
    let cli = Cli::evaluation(d)
        .env("CA_SERVER__TLS_CERT_FILE", d.join("server.pem").to_string_lossy())
        .env("CA_SERVER__TLS_KEY_FILE", d.join("server.key").to_string_lossy());
    let svc = Service::start(&cli)?;
    let url = format!("https://127.0.0.1:{}/healthz", svc.https.port());
    // Trusting only the configured certificate works; trusting only our own root does not.
    let ok = curl(d, &["-f", "--cacert", "server.pem", &url])?;
    assert!(ok.success() && ok.stdout.trim() == "ok", "{}", ok.describe());
    let root = curl(d, &["-f", &format!("{}/ca/identity-root.pem", svc.base_url())])?.ok()?;
    std::fs::write(d.join("root.pem"), root.stdout)?;
    let other = curl(d, &["-f", "--cacert", "root.pem", &url])?;
    assert!(!other.success(), "the hierarchy's server certificate must not be served:\n{}", other.describe());
    svc.stop();

    // Half a configuration is refused at start with a reason.
    let half = Cli::evaluation(d).env("CA_SERVER__TLS_CERT_FILE", d.join("server.pem").to_string_lossy());
    let out = half.run(&["serve"])?;
    assert!(!out.success() && out.stderr.contains("go together"), "{}", out.describe());
    Ok(())
}
