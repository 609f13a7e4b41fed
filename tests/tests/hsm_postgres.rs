//! The production shape: every CA key on a PKCS#11 token (SoftHSM2), storage on a
//! fresh PostgreSQL database, driven through a config file.

use std::path::{Path, PathBuf};

use anyhow::Result;
use e2e_tests::{curl, make_csr, openssl, Cli, Service, SoftHsm, TestDb, P256};

const PIN: &str = "246810";
const SO_PIN: &str = "13579111";
const CAS: [&str; 5] = ["identity-root", "device", "station", "update-root", "update-authority"];

struct Deployment {
    hsm: SoftHsm,
    db: TestDb,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Deployment {
    fn new(prefix: &str) -> Result<Self> {
        let hsm = SoftHsm::new()?;
        hsm.init_token("pki", SO_PIN, PIN)?;
        let db = TestDb::create()?;
        let dir = e2e_tests::workdir(prefix)?;
        let config = dir.path().join("pki.toml");
        write_config(&config, &hsm, &db, "")?;
        Ok(Self { hsm, db, dir, config })
    }

    /// The CLI with the token's SOFTHSM2_CONF and the given PIN.
    fn cli(&self, pin: &str) -> Cli {
        Cli::evaluation(self.dir.path())
            .with_config(&self.config)
            .env("SOFTHSM2_CONF", self.hsm.conf.to_string_lossy())
            .env("TEST_HSM_PIN", pin)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn write_config(path: &Path, hsm: &SoftHsm, db: &TestDb, extra: &str) -> Result<()> {
    let mut toml = format!(
        "[storage]\nurl = \"{}\"\n\n[key_stores.hsm]\ntype = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"pki\"\npin_env = \"TEST_HSM_PIN\"\n",
        db.url,
        hsm.module.display()
    );
    for ca in CAS {
        toml.push_str(&format!("\n[cas.{ca}]\nkey_store = \"hsm\"\n"));
    }
    // The audit log key on the token too: checkpoints are signed in the HSM (Ed25519).
    toml.push_str("\n[log]\nkey_store = \"hsm\"\n");
    toml.push_str(extra);
    std::fs::write(path, toml)?;
    Ok(())
}

/// A private key as `pkcs11-tool --list-objects` describes it.
#[derive(Debug)]
struct TokenKey {
    label: String,
    usage: Vec<String>,
    access: Vec<String>,
}

fn private_keys(dep: &Deployment) -> Result<Vec<TokenKey>> {
    let out = dep
        .hsm
        .pkcs11_tool(&["--token-label", "pki", "--login", "--pin", PIN, "--list-objects", "--type", "privkey"])?
        .ok()?;
    let mut keys: Vec<TokenKey> = Vec::new();
    let list = |v: &str| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect::<Vec<_>>();
    for line in out.stdout.lines() {
        let line = line.trim();
        if line.starts_with("Private Key Object") {
            keys.push(TokenKey { label: String::new(), usage: Vec::new(), access: Vec::new() });
        } else if let (Some(k), Some(v)) = (keys.last_mut(), line.split_once(':')) {
            match v.0.trim() {
                "label" => k.label = v.1.trim().to_string(),
                "Usage" => k.usage = list(v.1),
                "Access" => k.access = list(v.1),
                _ => {}
            }
        }
    }
    Ok(keys)
}

fn mentions_pin(stderr: &str) -> bool {
    stderr.lines().any(|l| l.starts_with("error: ") && l.contains("PIN"))
}

#[test]
fn softhsm_postgres_init_issue_serve() -> Result<()> {
    let dep = Deployment::new("hsm-pg")?;
    let d = dep.path();

    // Wrong PIN: init fails, saying so, and leaves nothing behind.
    let out = dep.cli("000000").run(&["init"])?;
    assert!(!out.success() && mentions_pin(&out.stderr), "init with a wrong PIN:\n{}", out.describe());
    assert_eq!(dep.db.query_i64("SELECT count(*) FROM cas")?, 0, "a failed init stored CAs");
    assert_eq!(dep.db.query_i64("SELECT count(*) FROM audit_log")?, 0, "a failed init wrote audit entries");

    // Right PIN: the hierarchy is created (on the token: no key may exist already,
    // so this also shows the failed attempt generated none).
    let cli = dep.cli(PIN);
    cli.run_ok(&["init"])?;
    let list = cli.run_ok(&["ca", "list"])?;
    let fingerprints: Vec<&str> =
        list.stdout.lines().filter_map(|l| l.trim().strip_prefix("SHA-256 ")).map(str::trim).collect();
    assert_eq!(fingerprints.len(), 5, "`ca list` should show 5 CAs:\n{}", list.stdout);
    for fp in &fingerprints {
        let pairs: Vec<&str> = fp.split(':').collect();
        assert!(
            pairs.len() == 32 && pairs.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit())),
            "not a SHA-256 fingerprint: {fp}"
        );
    }
    for ca in CAS {
        assert!(
            list.stdout.contains(&format!("key: hsm:ca-{ca}")),
            "{ca} should be keyed on the token:\n{}",
            list.stdout
        );
    }
    assert_eq!(dep.db.query_i64("SELECT count(*) FROM cas")?, 5, "the CAs are in PostgreSQL");
    // The token holds the private keys, sensitive and never extractable.
    let keys = private_keys(&dep)?;
    for ca in CAS {
        let label = format!("ca-{ca}");
        let key = keys.iter().find(|k| k.label == label);
        assert!(key.is_some(), "{label} is not on the token: {keys:?}");
        let access = key.map(|k| k.access.clone()).unwrap_or_default();
        assert!(
            access.iter().any(|a| a == "sensitive")
                && access.iter().any(|a| a == "never extractable")
                && !access.iter().any(|a| a == "extractable"),
            "{label} must be sensitive and never extractable: {access:?}"
        );
    }

    // serve works on this config.
    let svc = Service::start(&cli)?;
    let base = svc.base_url();
    let ready = curl(d, &["-f", &format!("{base}/readyz")])?.ok()?;
    let ready: serde_json::Value = serde_json::from_str(&ready.stdout)?;
    assert_eq!(ready["ready"], serde_json::Value::Bool(true), "readyz: {ready}");
    curl(d, &["-f", "-o", "root.pem", &format!("{base}/ca/identity-root.pem")])?.ok()?;
    let root_fp = e2e_tests::openssl_fingerprint(d, &d.join("root.pem"))?;
    assert!(fingerprints.contains(&root_fp.as_str()), "served root {root_fp} is not in `ca list`");
    let https = curl(d, &["-f", "--cacert", "root.pem", &format!("https://127.0.0.1:{}/healthz", svc.https.port())])?;
    assert!(https.success(), "HTTPS with the server key on the token:\n{}", https.describe());

    // Issue while the service runs (both processes use the token).
    let csr = make_csr(d, "dev", P256, "/CN=SN-HSM-1", &[])?;
    cli.run_ok(&["issue", "--profile", "device", "--csr", "dev.csr", "--out", "dev.chain.pem"])?;
    let leaf = e2e_tests::pem_certificates(&std::fs::read_to_string(d.join("dev.chain.pem"))?)?;
    e2e_tests::write_pem(&d.join("dev.pem"), &leaf[0])?;
    let v = openssl(d, &["verify", "-x509_strict", "-CAfile", "root.pem", "-untrusted", "dev.chain.pem", "dev.pem"])?;
    assert!(v.success() && v.stdout.contains("dev.pem: OK"), "openssl verify:\n{}", v.describe());
    // The audit log's checkpoints are signed by the Ed25519 key on the token, and
    // `audit verify` checks every one of them with it.
    let vkey = cli.run_ok(&["log", "key"])?.stdout.trim().to_string();
    assert!(vkey.contains("/audit-log+"), "{vkey}");
    let entries = dep.db.query_i64("SELECT count(*) FROM audit_log")?;
    let signed = cli.run_ok(&["log", "checkpoint"])?;
    let size: i64 = signed.stdout.lines().nth(1).and_then(|l| l.parse().ok()).unwrap_or(-1);
    assert!(size >= entries, "a checkpoint covering the {entries} entries: {}", signed.describe());
    let cp = curl(d, &["-f", &format!("{base}/log/checkpoint")])?.ok()?;
    assert!(cp.stdout.contains("\n\n\u{2014} "), "a signed note: {}", cp.stdout);
    let verified = cli.run_ok(&["audit", "verify"])?;
    assert!(verified.stdout.contains("signed checkpoints"), "{}", verified.describe());
    assert!(private_keys(&dep)?.iter().any(|k| k.label == "audit-log"), "the log key is on the token");
    svc.stop();

    // Wrong PIN at issue: refused, naming the PIN, nothing stored.
    let before = dep.db.query_i64("SELECT count(*) FROM certificates")?;
    let audit_before = dep.db.query_i64("SELECT count(*) FROM audit_log")?;
    let out = dep.cli("000000").run(&["issue", "--profile", "device", "--csr", e2e_tests::path_str(&csr)?])?;
    assert!(!out.success() && mentions_pin(&out.stderr), "issue with a wrong PIN:\n{}", out.describe());
    assert!(!out.stdout.contains("BEGIN CERTIFICATE"), "a certificate was printed:\n{}", out.stdout);
    assert_eq!(dep.db.query_i64("SELECT count(*) FROM certificates")?, before);
    assert_eq!(dep.db.query_i64("SELECT count(*) FROM audit_log")?, audit_before);
    Ok(())
}

#[test]
fn missing_ca_key_on_the_token_is_named() -> Result<()> {
    let dep = Deployment::new("hsm-missing")?;
    let cli = dep.cli(PIN);
    cli.run_ok(&["init"])?;
    make_csr(dep.path(), "dev", P256, "/CN=SN-HSM-2", &[])?;

    // The device CA's private key disappears from the token.
    dep.hsm
        .pkcs11_tool(&[
            "--token-label",
            "pki",
            "--login",
            "--pin",
            PIN,
            "--delete-object",
            "--type",
            "privkey",
            "--label",
            "ca-device",
        ])?
        .ok()?;
    let before = dep.db.query_i64("SELECT count(*) FROM certificates")?;
    let out = cli.run(&["issue", "--profile", "device", "--csr", "dev.csr"])?;
    assert!(!out.success(), "issued without the CA key:\n{}", out.describe());
    assert!(
        out.stderr.lines().any(|l| l.starts_with("error: ") && l.contains("ca-device")),
        "the error should name the missing key 'ca-device':\n{}",
        out.describe()
    );
    assert_eq!(dep.db.query_i64("SELECT count(*) FROM certificates")?, before);
    Ok(())
}

/// Pointing a CA at a key label that does not exist (after init) must not go
/// unnoticed: either the configured label is used (and found missing) or the
/// mismatch with the stored CA record is reported — silently signing with another
/// key than the configuration names is not acceptable.
#[test]
fn configured_key_label_that_does_not_exist_is_refused() -> Result<()> {
    let dep = Deployment::new("hsm-label")?;
    dep.cli(PIN).run_ok(&["init"])?;
    make_csr(dep.path(), "dev", P256, "/CN=SN-HSM-3", &[])?;

    let moved = dep.path().join("moved.toml");
    let base = std::fs::read_to_string(&dep.config)?;
    std::fs::write(
        &moved,
        base.replace(
            "[cas.device]\nkey_store = \"hsm\"\n",
            "[cas.device]\nkey_store = \"hsm\"\nkey_label = \"no-such-key\"\n",
        ),
    )?;
    assert!(std::fs::read_to_string(&moved)?.contains("no-such-key"));
    let cli = Cli { config: Some(moved), ..dep.cli(PIN) };
    let out = cli.run(&["issue", "--profile", "device", "--csr", "dev.csr"])?;
    assert!(
        !out.success() && out.stderr.contains("no-such-key"),
        "cas.device.key_label = \"no-such-key\" was ignored:\n{}",
        out.describe()
    );
    Ok(())
}

/// Least privilege on the token: a CA or OCSP signing key is generated for signing
/// only (CKA_DECRYPT, CKA_UNWRAP, CKA_DERIVE false), not with whatever the token
/// defaults to (SoftHSM: decrypt and unwrap allowed).
#[test]
fn ca_keys_on_the_token_may_only_sign() -> Result<()> {
    let dep = Deployment::new("hsm-usage")?;
    dep.cli(PIN).run_ok(&["init"])?;
    let keys = private_keys(&dep)?;
    assert!(keys.len() >= 8, "expected the CA and OCSP keys on the token: {keys:?}");
    let wide: Vec<String> =
        keys.iter().filter(|k| k.usage != ["sign"]).map(|k| format!("{}: {:?}", k.label, k.usage)).collect();
    assert!(wide.is_empty(), "keys usable for more than signing:\n{}", wide.join("\n"));
    Ok(())
}

/// What an operator reads: a successful command logs no ERROR lines (cryptoki logs
/// one per mechanism type it does not know while listing the token's mechanisms),
/// log lines going to a pipe or file carry no terminal colour codes, and a failure
/// states its cause once.
#[test]
fn hsm_command_output_is_clean() -> Result<()> {
    let dep = Deployment::new("hsm-output")?;
    let out = dep.cli(PIN).run_ok(&["init"])?;
    let error_lines: Vec<&str> = out.stderr.lines().filter(|l| l.contains("ERROR")).collect();
    let mut problems = Vec::new();
    if !error_lines.is_empty() {
        problems.push(format!(
            "a successful init logged {} ERROR line(s), e.g. {:?}",
            error_lines.len(),
            error_lines.first().copied().unwrap_or_default()
        ));
    }
    if out.stderr.contains('\u{1b}') {
        problems.push("log lines written to a pipe carry ANSI colour escapes".to_string());
    }
    let out = dep.cli("000000").run(&["ca", "csr", "--ca", "device"])?;
    let error = out.stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    let cause = "the PIN was refused by the token";
    if error.matches(cause).count() != 1 {
        problems.push(format!("the error should state {cause:?} exactly once: {error:?}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}
