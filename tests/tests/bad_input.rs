//! Bad input through the CLI: a non-zero exit (1, not a panic), an `error:` on stderr
//! naming the cause, and nothing half-written — no certificate stored, no audit
//! entry added, no output file.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use e2e_tests::{make_csr, openssl, sqlite_i64, Cli, Output, P256};

/// What a refused command must look like; returns a description of every deviation.
fn refused(out: &Output, needles: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    if out.status.code() != Some(1) {
        problems.push(format!("exit status {} (want 1)", out.status));
    }
    if !out.stderr.lines().any(|l| l.starts_with("error: ")) {
        problems.push("no `error: …` line on stderr".into());
    }
    for n in needles {
        if !out.stderr.contains(n) {
            problems.push(format!("stderr does not mention {n:?}"));
        }
    }
    if out.stderr.contains("panicked") {
        problems.push("the process panicked".into());
    }
    problems
}

/// A DER CSR whose subject was altered after signing (signature no longer verifies).
fn broken_signature_csr(d: &Path) -> Result<std::path::PathBuf> {
    make_csr(d, "tampered", P256, "/CN=SN-TAMPER", &[])?;
    openssl(d, &["req", "-in", "tampered.csr", "-outform", "DER", "-out", "tampered.der"])?.ok()?;
    let mut der = std::fs::read(d.join("tampered.der"))?;
    let at = der.windows(9).position(|w| w == b"SN-TAMPER").ok_or_else(|| anyhow!("CN not found in the DER"))?;
    der[at + 8] ^= 0x01; // "SN-TAMPER" → "SN-TAMPES": still a valid string, signature now wrong
    let path = d.join("tampered-bad.der");
    std::fs::write(&path, der)?;
    Ok(path)
}

#[test]
fn bad_requests_are_refused_without_side_effects() -> Result<()> {
    let dir = e2e_tests::workdir("bad-input")?;
    let d = dir.path();
    let cli = Cli::evaluation(d);
    cli.run_ok(&["init"])?;

    std::fs::write(d.join("garbage.csr"), b"this is not a certificate request\n\x00\xff")?;
    std::fs::write(d.join("empty.csr"), b"")?;
    // A certificate, not a request: right format, wrong PEM label.
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
            "-subj",
            "/CN=x",
            "-days",
            "1",
            "-keyout",
            "x.key",
            "-out",
            "cert.pem",
        ],
    )?
    .ok()?;
    let tampered = broken_signature_csr(d)?;
    let rsa1024 = make_csr(d, "rsa1024", &["-newkey", "rsa:1024"], "/CN=SN-RSA1024", &[])?;
    let sha1 = make_csr(d, "sha1", &["-newkey", "rsa:2048"], "/CN=SN-SHA1", &["-sha1"])?;
    let ca_true = make_csr(d, "catrue", P256, "/CN=SN-CA", &["-addext", "basicConstraints=critical,CA:TRUE"])?;
    let code_signing = make_csr(d, "codesign", P256, "/CN=SN-CODE", &["-addext", "extendedKeyUsage=codeSigning"])?;
    let good = make_csr(d, "good", P256, "/CN=SN-GOOD", &[])?;

    let p = |p: &Path| p.to_string_lossy().into_owned();
    let cases: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        (
            "garbage CSR",
            vec!["--profile".into(), "device".into(), "--csr".into(), "garbage.csr".into()],
            vec!["not a valid PEM or DER PKCS#10"],
        ),
        ("empty CSR", vec!["--profile".into(), "device".into(), "--csr".into(), "empty.csr".into()], vec!["empty"]),
        (
            "PEM with a wrong label",
            vec!["--profile".into(), "device".into(), "--csr".into(), "cert.pem".into()],
            vec!["CERTIFICATE", "expected 'CERTIFICATE REQUEST'"],
        ),
        (
            "broken CSR signature",
            vec!["--profile".into(), "device".into(), "--csr".into(), p(&tampered)],
            vec!["signature does not verify"],
        ),
        (
            "RSA-1024 key",
            vec!["--profile".into(), "device".into(), "--csr".into(), p(&rsa1024)],
            vec!["1024 bits is too small"],
        ),
        ("SHA-1 signature", vec!["--profile".into(), "device".into(), "--csr".into(), p(&sha1)], vec!["SHA-1"]),
        ("CSR asks CA:TRUE", vec!["--profile".into(), "device".into(), "--csr".into(), p(&ca_true)], vec!["CA:TRUE"]),
        (
            "CSR asks codeSigning on the device profile",
            vec!["--profile".into(), "device".into(), "--csr".into(), p(&code_signing)],
            vec!["1.3.6.1.5.5.7.3.3", "device"],
        ),
        (
            "unknown profile",
            vec!["--profile".into(), "nope".into(), "--csr".into(), p(&good)],
            vec!["unknown profile 'nope'"],
        ),
        (
            "invalid device id",
            vec!["--profile".into(), "device".into(), "--csr".into(), p(&good), "--device-id".into(), "a b".into()],
            vec!["invalid device id 'a b'"],
        ),
        (
            "unknown device model",
            vec!["--profile".into(), "device".into(), "--csr".into(), p(&good), "--model".into(), "nope".into()],
            vec!["unknown device model 'nope'"],
        ),
        (
            "missing CSR file",
            vec!["--profile".into(), "device".into(), "--csr".into(), "no-such.csr".into()],
            vec!["no-such.csr"],
        ),
    ];

    let audit_before = cli.audit_entries()?;
    let certs_before = sqlite_i64(d, "SELECT count(*) FROM certificates")?;
    let mut failures = Vec::new();
    for (name, args, needles) in &cases {
        let out_file = d.join("must-not-exist.pem");
        let mut argv = vec!["issue"];
        argv.extend(args.iter().map(String::as_str));
        argv.extend(["--out", "must-not-exist.pem"]);
        let out = cli.run(&argv)?;
        let mut problems = refused(&out, needles);
        if out_file.exists() {
            problems.push("an output file was written".into());
            std::fs::remove_file(&out_file)?;
        }
        let audit_now = cli.audit_entries()?;
        if audit_now != audit_before {
            problems.push(format!("audit log grew from {audit_before} to {audit_now} entries"));
        }
        let certs_now = sqlite_i64(d, "SELECT count(*) FROM certificates")?;
        if certs_now != certs_before {
            problems.push(format!("{} certificate(s) stored", certs_now - certs_before));
        }
        if !problems.is_empty() {
            failures.push(format!("[{name}] {}\n{}", problems.join("; "), out.describe()));
        }
    }

    // A second init refuses and leaves the hierarchy alone.
    let out = cli.run(&["init"])?;
    let problems = refused(&out, &["already exists"]);
    if !problems.is_empty() {
        failures.push(format!("[init twice] {}\n{}", problems.join("; "), out.describe()));
    }
    if cli.audit_entries()? != audit_before {
        failures.push("[init twice] the audit log changed".into());
    }

    // Control: the good CSR is accepted, so the refusals above were about the input.
    cli.run_ok(&["issue", "--profile", "device", "--csr", "good.csr", "--out", "good.pem"])?;
    assert_eq!(sqlite_i64(d, "SELECT count(*) FROM certificates")?, certs_before + 1);

    assert!(failures.is_empty(), "{} case(s) misbehaved:\n\n{}", failures.len(), failures.join("\n\n"));
    Ok(())
}

#[test]
fn bad_setup_is_reported() -> Result<()> {
    let dir = e2e_tests::workdir("bad-setup")?;
    let d = dir.path();
    let csr = make_csr(d, "dev", P256, "/CN=SN-0001", &[])?;
    let csr = csr.to_string_lossy().into_owned();
    let mut failures = Vec::new();

    // `issue` with a config file before any `init`.
    let config = d.join("pki.toml");
    std::fs::write(&config, "# all defaults\n[storage]\nurl = \"sqlite:./pre-init.db\"\n")?;
    let cli = Cli::evaluation(d).with_config(&config);
    let out = cli.run(&["issue", "--profile", "device", "--csr", &csr, "--out", "x.pem"])?;
    let problems = refused(&out, &["run `ca-service init` first"]);
    if !problems.is_empty() || d.join("x.pem").exists() {
        failures.push(format!("[issue before init] {problems:?}\n{}", out.describe()));
    }

    // An unreachable database: refused quickly, saying so.
    let unreachable = Cli::evaluation(d).env("CA_STORAGE__URL", "postgres://postgres@127.0.0.1:1/x?sslmode=disable");
    for args in [&["init"][..], &["issue", "--profile", "device", "--csr", &csr][..], &["audit", "verify"][..]] {
        let started = Instant::now();
        let out = unreachable.run(args)?;
        let took = started.elapsed();
        let mut problems = refused(&out, &["cannot connect"]);
        if took > Duration::from_secs(10) {
            problems.push(format!("took {took:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!("[unreachable database: {args:?}] {}\n{}", problems.join("; "), out.describe()));
        }
    }

    // A config file that does not exist.
    let missing = Cli::evaluation(d).with_config(d.join("nope.toml"));
    let out = missing.run(&["ca", "list"])?;
    let problems = refused(&out, &["nope.toml", "does not exist"]);
    if !problems.is_empty() {
        failures.push(format!("[missing config file] {}\n{}", problems.join("; "), out.describe()));
    }

    // A config file that is not valid TOML / names an unknown key store.
    std::fs::write(d.join("broken.toml"), "[cas.device]\nkey_store = \"ghost\"\n")?;
    let out = Cli::evaluation(d).with_config(d.join("broken.toml")).run(&["ca", "list"])?;
    let problems = refused(&out, &["unknown key store 'ghost'"]);
    if !problems.is_empty() {
        failures.push(format!("[config naming an unknown key store] {}\n{}", problems.join("; "), out.describe()));
    }

    assert!(failures.is_empty(), "{} case(s) misbehaved:\n\n{}", failures.len(), failures.join("\n\n"));
    Ok(())
}
