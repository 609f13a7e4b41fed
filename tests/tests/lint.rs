//! Every kind of certificate the service makes passes pkilint's strict RFC 5280
//! linter (`lint_pkix_cert`) with no ERROR or FATAL finding (DESIGN §5).

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use e2e_tests::{
    make_csr, openssl, pem_certificates, pkilint, sqlite_blobs, sqlite_ca_der, write_pem, Cli, Service, P256,
};

#[test]
fn every_certificate_kind_lints_clean() -> Result<()> {
    e2e_tests::ensure_pkilint()?;
    let dir = e2e_tests::workdir("lint")?;
    let d = dir.path();
    let cli = Cli::evaluation(d);
    cli.run_ok(&["init"])?;

    let mut certs: Vec<(String, PathBuf)> = Vec::new();
    for ca in ["identity-root", "update-root", "device", "station", "update-authority"] {
        certs.push((format!("CA {ca}"), write_pem(&d.join(format!("ca-{ca}.pem")), &sqlite_ca_der(d, ca)?)?));
    }
    // Update-signing certificates exist only through two approvals: linted in
    // update_authority.rs.
    for (profile, subject) in [("device", "/CN=SN-LINT-1"), ("station", "/CN=station-lint")] {
        let csr = make_csr(d, profile, P256, subject, &[])?;
        let out = d.join(format!("{profile}.chain.pem"));
        cli.run_ok(&[
            "issue",
            "--profile",
            profile,
            "--csr",
            e2e_tests::path_str(&csr)?,
            "--out",
            e2e_tests::path_str(&out)?,
        ])?;
        let leaf =
            pem_certificates(&std::fs::read_to_string(&out)?)?.into_iter().next().ok_or_else(|| anyhow!("no cert"))?;
        certs.push((format!("{profile} certificate"), write_pem(&d.join(format!("{profile}.pem")), &leaf)?));
    }
    let ocsp = sqlite_blobs(d, "SELECT der FROM certificates WHERE profile LIKE 'ocsp-signer-%' ORDER BY issuer")?;
    assert_eq!(ocsp.len(), 3, "init must issue one OCSP signer per issuing CA");
    for (i, der) in ocsp.iter().enumerate() {
        certs.push((format!("OCSP signer #{i}"), write_pem(&d.join(format!("ocsp-{i}.pem")), der)?));
    }

    // The HTTPS server certificate, as a TLS client receives it.
    let svc = Service::start(&cli)?;
    let connect = format!("127.0.0.1:{}", svc.https.port());
    let shown = openssl(d, &["s_client", "-connect", &connect, "-showcerts"])?.ok()?;
    svc.stop();
    let served = pem_certificates(&shown.stdout)?;
    assert!(served.len() >= 2, "the server should send its certificate and the device CA:\n{}", shown.stdout);
    certs.push(("HTTPS server certificate".into(), write_pem(&d.join("tls-server.pem"), &served[0])?));

    // Lint them all (in parallel: each pkilint run is a Python start-up).
    let results: Vec<(String, Result<Vec<e2e_tests::LintFinding>>)> = std::thread::scope(|s| {
        let handles: Vec<_> = certs.iter().map(|(name, path)| (name.clone(), s.spawn(move || pkilint(path)))).collect();
        handles
            .into_iter()
            .map(|(name, h)| (name, h.join().unwrap_or_else(|_| Err(anyhow!("pkilint thread panicked")))))
            .collect()
    });
    let mut report = String::new();
    let mut errors = 0;
    for (name, result) in results {
        let findings = result?;
        for f in &findings {
            report.push_str(&format!("{name}: {f}\n"));
            if matches!(f.severity.as_str(), "ERROR" | "FATAL") {
                errors += 1;
            }
        }
    }
    // Shown with --nocapture, and in the failure message.
    println!("pkilint findings (NOTICE and above):\n{report}");
    assert_eq!(errors, 0, "pkilint reported ERROR/FATAL findings:\n{report}");
    Ok(())
}
