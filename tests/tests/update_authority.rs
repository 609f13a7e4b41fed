//! The Update Authority end to end: a release manager asks for an update-signing
//! certificate over the admin API, two distinct update approvers approve it, and the
//! certificate that comes back signs a real RAUC bundle that `rauc info` accepts with
//! the update root as its only trust anchor — while a device-identity certificate, a
//! revoked signer and an expired signer are refused, and no single person (nor a
//! rejected or expired request) ever gets a certificate. `ca-service ota verify` (the
//! reference verifier of detached CMS update signatures) is held to the same cases.
//!
//! # How RAUC 1.8 behaves here (observed on Debian 12, `rauc 1.8`, OpenSSL 3.0)
//!
//! - Packages: `rauc`, and `squashfs-tools` (required: `rauc bundle` runs `mksquashfs`);
//!   `faketime` for the expiry case. CI installs them in `.ci/install-deps`; a missing
//!   tool fails the test (never a skip).
//! - Bundles are `format=verity`: both building and `rauc info` work without root, loop
//!   devices or dm-verity, and verity `rauc info` runs no external tool and writes
//!   nothing. `rauc bundle` refuses to overwrite an existing output file, so every bundle
//!   gets a fresh name. **Without a keyring `rauc bundle` signs with anything** (device
//!   leaf, expired, revoked): that is how the negative bundles are built.
//! - Verification is `rauc info --conf system.conf bundle`; `system.conf` needs
//!   `[system] compatible` and `bootloader` (`noop`), and `[keyring] path`,
//!   `check-purpose=codesign`, `check-crl=true`. Never `--keyring` without a conf (the
//!   default purpose refuses codeSigning-only leaves), never `--no-verify` or
//!   `--no-check-time`. `rauc info` does not compare `compatible`.
//! - Exit code 0 and `Verified inline signature by '<subject>'` on stderr when the
//!   signature verifies; exit code 1 and a last line
//!   `signature verification failed: Verify error: <OpenSSL reason>` otherwise.
//! - CRLs: RAUC reads them only from the keyring PEM (never the CDP), and `check-crl`
//!   turns on `CRL_CHECK_ALL`, so **every certificate in the chain needs a current CRL
//!   from its issuer**: the keyring is update root + the update root's CRL (made
//!   offline with `ca-service crl --ca update-root --pem`) + the Update Authority CA's
//!   CRL (served at `/crl/update-authority.crl`, DER, converted to PEM here). Without
//!   the root's CRL even a good signer fails with `unable to get certificate CRL`.
//! - Reasons: device-identity leaf with only the update root trusted → `unable to get
//!   local issuer certificate`; with the identity root trusted as well → `Signer
//!   certificate does not specify extended key usage code signing` + `unsuitable
//!   certificate purpose`; revoked → `certificate revoked`; expired → `certificate has
//!   expired`.
//! - With CRLs in the keyring but `check-crl` unset, a revoked signer is *accepted*
//!   (only a `Detected CRL but CRL checking is disabled!` warning). Only PEM CRLs in
//!   the keyring file are read.
//! - `rauc info` honours libfaketime (`faketime '+200 days' rauc info …`). CRLs expire
//!   as well (`CRL has expired`), so under a moved clock both CRLs must still be current:
//!   the root CRL is made with `--days 400`, the Update Authority CRL's lifetime is
//!   `crl.validity_secs` (set to 40,000,000 s ≈ 463 days here).
//! - The image must not compress to 4 KiB or less (`squashfs size (4096) must be larger
//!   than 4096 bytes`): the test image is 64 KiB of pseudo-random bytes.
//! - Gotcha: verity `rauc info` checks only the signed manifest, not the payload; that
//!   is fine here, these tests are about who may sign. (`rauc extract` checks the
//!   payload but, like plain-format `rauc info`, takes an `F_SETLEASE` lease: as
//!   non-root the caller must own the bundle file.)
//! - OpenSSL 3.0's `verify` has no `codesign` purpose; RAUC checks the
//!   codeSigning EKU itself. The CAs carry no certificatePolicies, so
//!   `openssl verify -explicit_policy` fails by design: devices check the class policy
//!   on the signer certificate only (see `update_trust`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use e2e_tests::{
    curl, curl_reply, make_csr, openssl, path_str, pem_certificates, require_tool, run_with_timeout, sqlite_i64,
    to_pem, Cli, HttpReply, Output, Service, TestDb, P256,
};
use serde_json::{json, Value};

/// Longest one `rauc`/`faketime` invocation may take.
const RAUC_TIMEOUT: Duration = Duration::from_secs(60);
/// The Update Authority CRL's lifetime for these tests (seconds, ≈ 463 days): longer
/// than any clock shift below, so an expired CRL is never the reason for a refusal.
const UA_CRL_VALIDITY_SECS: &str = "40000000";
/// Validity every update-signing certificate here asks for, days.
const VALIDITY_DAYS: u64 = 30;
/// `compatible` of the bundles and the system config.
const COMPATIBLE: &str = "e2e-device";
/// The transparency log's origin (and its key's name) in these deployments.
const LOG_ORIGIN: &str = "e2e.example/update-authority-log";
/// How many update-signing certificates the store holds.
const UPDATE_CERTS: &str = "SELECT COUNT(*) FROM certificates WHERE profile = 'update-signing'";

// ---------------------------------------------------------------------------------
// A running deployment with its tokens
// ---------------------------------------------------------------------------------

/// The API tokens of one deployment. The two-person rule compares token *names*.
struct Tokens {
    /// Role release-manager, name "rel": submits requests.
    requester: String,
    /// Role update-approver, but the same name as the requester ("rel").
    requester_as_approver: String,
    /// Update approvers "alice", "bob", "carol".
    alice: String,
    bob: String,
    carol: String,
    /// A second update-approver token of "alice" (one person, two tokens).
    alice_again: String,
    admin: String,
    operator: String,
    auditor: String,
}

/// An initialised deployment with its service running (public HTTP + HTTPS admin API).
struct Lab {
    dir: PathBuf,
    cli: Cli,
    svc: Option<Service>,
    t: Tokens,
    /// The identity root (the HTTPS server's trust anchor, for curl).
    identity_root: PathBuf,
    /// The update root, fetched from `/ca/update-root.pem`.
    update_root: PathBuf,
}

/// An issued update-signing certificate and its files.
struct Signer {
    /// Subject commonName.
    cn: String,
    cert: PathBuf,
    /// The chain as the API returned it (the Update Authority CA).
    chain: PathBuf,
    key: PathBuf,
    serial: String,
    /// The issued request as JSON.
    request: Value,
}

impl Lab {
    /// `init`, tokens, and `serve` with CRLs regenerated every second and long-lived.
    fn start(cli: Cli) -> Result<Self> {
        // The log's origin is fixed: by default it follows the public base URL, which
        // only the service is started with, and the approvals now sign checkpoints
        // that `audit verify` and `log key` (run without it) must agree with.
        let cli = cli
            .env("CA_CRL__REGENERATE_SECS", "1")
            .env("CA_CRL__VALIDITY_SECS", UA_CRL_VALIDITY_SECS)
            .env("CA_LOG__ORIGIN", LOG_ORIGIN);
        let dir = cli.workdir.clone();
        cli.run_ok(&["init"])?;
        let token = |name: &str, role: &str| -> Result<String> {
            let out = cli.run_ok(&["tokens", "create", "--name", name, "--role", role])?;
            let t = out.stdout.trim().to_string();
            ensure!(t.starts_with("pki_"), "unexpected token output: {}", out.describe());
            Ok(t)
        };
        let t = Tokens {
            requester: token("rel", "release-manager")?,
            requester_as_approver: token("rel", "update-approver")?,
            alice: token("alice", "update-approver")?,
            bob: token("bob", "update-approver")?,
            carol: token("carol", "update-approver")?,
            alice_again: token("alice", "update-approver")?,
            admin: token("root-admin", "admin")?,
            operator: token("ops", "operator")?,
            auditor: token("audit", "auditor")?,
        };
        let svc = Service::start(&cli)?;
        let (identity_root, update_root) = (dir.join("identity-root.pem"), dir.join("update-root.pem"));
        let base = svc.base_url();
        curl(&dir, &["-f", "-o", path_str(&identity_root)?, &format!("{base}/ca/identity-root.pem")])?.ok()?;
        curl(&dir, &["-f", "-o", path_str(&update_root)?, &format!("{base}/ca/update-root.pem")])?.ok()?;
        Ok(Self { dir, cli, svc: Some(svc), t, identity_root, update_root })
    }

    fn svc(&self) -> Result<&Service> {
        self.svc.as_ref().context("the service is not running")
    }

    /// Stops the service and starts it again with one more environment setting.
    fn restart_with(&mut self, key: &str, value: &str) -> Result<()> {
        if let Some(svc) = self.svc.take() {
            svc.stop();
        }
        self.cli = self.cli.clone().env(key, value);
        self.svc = Some(Service::start(&self.cli)?);
        Ok(())
    }

    /// Stops the service; the audit chain must still verify.
    fn finish(mut self) -> Result<()> {
        if let Some(svc) = self.svc.take() {
            svc.stop();
        }
        self.cli.run_ok(&["audit", "verify"])?;
        Ok(())
    }

    /// One admin API call with curl over HTTPS, trusting the identity root.
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Result<HttpReply> {
        let url = format!("https://127.0.0.1:{}/api/v1{path}", self.svc()?.https.port());
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut args = vec!["--cacert", path_str(&self.identity_root)?, "-X", method];
        if let Some(a) = &auth {
            args.extend_from_slice(&["-H", a]);
        }
        if let Some(b) = body {
            args.extend_from_slice(&["-H", "Content-Type: application/json", "--data-raw", b]);
        }
        args.push(&url);
        curl_reply(&self.dir, &args)
    }

    fn submit(
        &self,
        token: Option<&str>,
        csr: &Path,
        classes: &[&str],
        validity_days: Option<u64>,
    ) -> Result<HttpReply> {
        let pem = std::fs::read_to_string(csr).with_context(|| format!("reading {}", csr.display()))?;
        let mut body = json!({ "csr": pem, "classes": classes });
        if let Some(v) = validity_days {
            body["validity_days"] = v.into();
        }
        self.call("POST", "/update-requests", token, Some(&body.to_string()))
    }

    fn approve(&self, token: &str, id: &str) -> Result<HttpReply> {
        self.call("POST", &format!("/update-requests/{id}/approve"), Some(token), None)
    }

    fn sign(&self, token: &str, id: &str) -> Result<HttpReply> {
        self.call("POST", &format!("/update-requests/{id}/sign"), Some(token), None)
    }

    fn reject(&self, token: &str, id: &str, reason: &str) -> Result<HttpReply> {
        let body = json!({ "reason": reason }).to_string();
        self.call("POST", &format!("/update-requests/{id}/reject"), Some(token), Some(&body))
    }

    /// `GET /update-requests/{id}` (as the auditor), which must answer 200.
    fn get(&self, id: &str) -> Result<Value> {
        let reply = self.call("GET", &format!("/update-requests/{id}"), Some(&self.t.auditor), None)?;
        ensure!(reply.status == 200, "GET update request: {}", reply.describe());
        body(&reply)
    }

    /// The whole audit log through the API (as the auditor).
    fn audit(&self) -> Result<Vec<Value>> {
        let reply = self.call("GET", "/audit?after=0&limit=1000", Some(&self.t.auditor), None)?;
        ensure!(reply.status == 200, "GET /audit: {}", reply.describe());
        let log = body(&reply)?;
        log["entries"].as_array().cloned().ok_or_else(|| anyhow!("no entries in {log}"))
    }

    /// Audit entries of `action` whose outcome is a refusal.
    fn denied(&self, action: &str) -> Result<Vec<Value>> {
        Ok(self
            .audit()?
            .into_iter()
            .filter(|e| e["action"] == action && e["outcome"].as_str().is_some_and(|o| o.starts_with("denied:")))
            .collect())
    }

    /// A P-256 key and CSR `/CN=<cn>` in the lab directory.
    fn csr(&self, cn: &str, extra: &[&str]) -> Result<PathBuf> {
        make_csr(&self.dir, cn, P256, &format!("/CN={cn}"), extra)
    }

    /// The happy path: "rel" submits, "alice" and "bob" approve; returns the signer.
    fn issue_signer(&self, cn: &str) -> Result<Signer> {
        let csr = self.csr(cn, &[])?;
        let created = self.submit(Some(&self.t.requester), &csr, &["generic"], Some(VALIDITY_DAYS))?;
        ensure!(created.status == 201, "submit: {}", created.describe());
        let id = id_of(&body(&created)?)?;
        let first = self.approve(&self.t.alice, &id)?;
        ensure!(first.status == 200, "first approval: {}", first.describe());
        let second = self.approve(&self.t.bob, &id)?;
        ensure!(second.status == 200, "second approval: {}", second.describe());
        self.signer_from(cn, &body(&second)?)
    }

    /// Writes the certificate and chain of an issued request next to the CSR's key.
    fn signer_from(&self, cn: &str, request: &Value) -> Result<Signer> {
        ensure!(request["status"] == "issued", "request not issued: {request}");
        let cert_pem = request["certificate"].as_str().ok_or_else(|| anyhow!("no certificate in {request}"))?;
        let chain_pem = request["chain"].as_str().ok_or_else(|| anyhow!("no chain in {request}"))?;
        let serial = request["serial"].as_str().ok_or_else(|| anyhow!("no serial in {request}"))?.to_string();
        let (cert, chain) = (self.dir.join(format!("{cn}.pem")), self.dir.join(format!("{cn}-chain.pem")));
        std::fs::write(&cert, cert_pem)?;
        std::fs::write(&chain, chain_pem)?;
        Ok(Signer {
            cn: cn.to_string(),
            cert,
            chain,
            key: self.dir.join(format!("{cn}.key")),
            serial,
            request: request.clone(),
        })
    }

    /// The update root's CRL, signed offline by `ca-service crl` (PEM).
    fn update_root_crl(&self, days: u32) -> Result<PathBuf> {
        let out = self.dir.join(format!("update-root-{days}d.crl.pem"));
        self.cli.run_ok(&[
            "crl",
            "--ca",
            "update-root",
            "--out",
            path_str(&out)?,
            "--pem",
            "--days",
            &days.to_string(),
        ])?;
        Ok(out)
    }

    /// The Update Authority CA's CRL as served now (DER), written as PEM.
    fn update_authority_crl(&self, name: &str) -> Result<(PathBuf, Vec<u8>)> {
        let der_path = self.dir.join(format!("{name}.crl"));
        let url = format!("{}/crl/update-authority.crl", self.svc()?.base_url());
        curl(&self.dir, &["-f", "-o", path_str(&der_path)?, &url])?.ok()?;
        let der = std::fs::read(&der_path)?;
        let pem_path = self.dir.join(format!("{name}.crl.pem"));
        std::fs::write(&pem_path, pem::encode(&pem::Pem::new("X509 CRL", der.clone())))?;
        Ok((pem_path, der))
    }

    /// Polls the Update Authority CRL until it lists `serial` (it is regenerated at
    /// most `crl.regenerate_secs` = 1 s after a revocation).
    fn update_authority_crl_listing(&self, name: &str, serial: &str) -> Result<PathBuf> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (pem_path, der) = self.update_authority_crl(name)?;
            if crl_serials(&der)?.iter().any(|s| same_serial(s, serial)) {
                return Ok(pem_path);
            }
            if Instant::now() >= deadline {
                bail!("/crl/update-authority.crl still does not list {serial} after 15 s");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn body(reply: &HttpReply) -> Result<Value> {
    serde_json::from_slice(&reply.body).with_context(|| reply.describe())
}

fn id_of(request: &Value) -> Result<String> {
    request["id"].as_str().map(str::to_string).ok_or_else(|| anyhow!("no id in {request}"))
}

/// A refusal: that status, and a JSON `error` containing `reason`.
fn refused(reply: &HttpReply, status: u16, reason: &str) -> Result<()> {
    assert_eq!(reply.status, status, "expected {status} '{reason}': {}", reply.describe());
    let error = body(reply)?["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains(reason), "expected '{reason}' in the error: {}", reply.describe());
    Ok(())
}

/// A request that has not (yet) produced a certificate.
fn assert_no_certificate(request: &Value) {
    for key in ["certificate", "chain", "serial"] {
        assert!(request.get(key).is_none_or(Value::is_null), "'{key}' present in an unissued request: {request}");
    }
}

/// The serial numbers (hex) a DER CRL lists.
fn crl_serials(der: &[u8]) -> Result<Vec<String>> {
    let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| anyhow!("CRL does not parse: {e}"))?;
    Ok(crl.iter_revoked_certificates().map(|r| hex::encode(r.raw_serial())).collect())
}

fn same_serial(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.replace(':', "").trim_start_matches('0').to_ascii_lowercase();
    norm(a) == norm(b)
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

// ---------------------------------------------------------------------------------
// RAUC
// ---------------------------------------------------------------------------------

/// A RAUC working area: bundle content (verity manifest + a 64 KiB image), keyrings,
/// system configs and bundles, all under `<dir>/rauc`.
struct Rauc {
    dir: PathBuf,
    content: PathBuf,
}

impl Rauc {
    fn new(dir: &Path) -> Result<Self> {
        for tool in ["rauc", "mksquashfs"] {
            require_tool(tool)?;
        }
        let dir = dir.join("rauc");
        let content = dir.join("content");
        std::fs::create_dir_all(&content)?;
        std::fs::write(
            content.join("manifest.raucm"),
            format!(
                "[update]\ncompatible={COMPATIBLE}\nversion=1.0.0\n\n[bundle]\nformat=verity\n\n\
                 [image.rootfs]\nfilename=rootfs.img\n"
            ),
        )?;
        // Incompressible (xorshift) bytes: RAUC refuses a squashfs of 4 KiB or less.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let image: Vec<u8> = (0..64 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        std::fs::write(content.join("rootfs.img"), image)?;
        Ok(Self { dir, content })
    }

    /// `rauc bundle` without keyring or conf (so it signs with anything); a fresh
    /// output file each time.
    fn bundle(&self, name: &str, cert: &Path, key: &Path, intermediate: &Path) -> Result<PathBuf> {
        static N: AtomicU32 = AtomicU32::new(0);
        let out = self.dir.join(format!("{name}-{}.raucb", N.fetch_add(1, Ordering::Relaxed)));
        let mut cmd = std::process::Command::new("rauc");
        cmd.current_dir(&self.dir)
            .arg("bundle")
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg("--intermediate")
            .arg(intermediate)
            .arg(&self.content)
            .arg(&out);
        run_with_timeout(&mut cmd, RAUC_TIMEOUT)?.ok()?;
        ensure!(out.is_file(), "rauc bundle wrote no {}", out.display());
        Ok(out)
    }

    /// A keyring (the PEM files concatenated) and a `system.conf` using it with
    /// `check-purpose=codesign` and `check-crl=true`; returns the conf.
    fn system_conf(&self, name: &str, keyring_parts: &[&Path]) -> Result<PathBuf> {
        let mut keyring = String::new();
        for p in keyring_parts {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            keyring.push_str(text.trim_end());
            keyring.push('\n');
        }
        let keyring_path = self.dir.join(format!("{name}.keyring.pem"));
        std::fs::write(&keyring_path, keyring)?;
        let conf = self.dir.join(format!("{name}.system.conf"));
        std::fs::write(
            &conf,
            format!(
                "[system]\ncompatible={COMPATIBLE}\nbootloader=noop\n\n[keyring]\npath={}\n\
                 check-purpose=codesign\ncheck-crl=true\n",
                keyring_path.display()
            ),
        )?;
        Ok(conf)
    }

    /// `rauc info --conf <conf> <bundle>`, optionally under `faketime <offset>`.
    fn info(&self, conf: &Path, bundle: &Path, faketime: Option<&str>) -> Result<Output> {
        let mut cmd = match faketime {
            Some(offset) => {
                require_tool("faketime")?;
                let mut c = std::process::Command::new("faketime");
                c.arg(offset).arg("rauc");
                c
            }
            None => std::process::Command::new("rauc"),
        };
        cmd.current_dir(&self.dir).arg("info").arg("--conf").arg(conf).arg(bundle);
        run_with_timeout(&mut cmd, RAUC_TIMEOUT)
    }
}

/// `rauc info` verified the signature of `signer_cn`.
fn assert_accepted(out: &Output, signer_cn: &str, what: &str) {
    let by = format!("Verified inline signature by 'CN = {signer_cn}, O = Device PKI'");
    assert!(
        out.status.code() == Some(0) && out.stderr.contains(&by),
        "{what}: RAUC should accept:\n{}",
        out.describe()
    );
}

/// `rauc info` refused the signature for `reason` (RAUC 1.8: exit code 1, last line
/// `signature verification failed: Verify error: <reason>`).
fn assert_refused(out: &Output, reason: &str, what: &str) {
    let last = out.stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        out.status.code() == Some(1)
            && last.contains("signature verification failed")
            && last.contains(&format!("Verify error: {reason}")),
        "{what}: RAUC should refuse with '{reason}':\n{}",
        out.describe()
    );
    assert!(!out.stderr.contains("Verified inline signature"), "{what}:\n{}", out.describe());
}

// ---------------------------------------------------------------------------------
// 1. The accept flow (SQLite and PostgreSQL)
// ---------------------------------------------------------------------------------

#[test]
fn two_approvals_then_rauc_accepts() -> Result<()> {
    let tmp = e2e_tests::workdir("update-accept")?;
    let cert = accept_flow(Cli::evaluation(tmp.path()))?;
    // The strict RFC 5280 linter (update-signing certificates exist only through two
    // approvals, so they are linted here rather than in lint.rs).
    let findings = e2e_tests::pkilint(&cert)?;
    let report: Vec<String> = findings.iter().map(ToString::to_string).collect();
    println!("pkilint findings (NOTICE and above):\n{}", report.join("\n"));
    let errors = findings.iter().filter(|f| matches!(f.severity.as_str(), "ERROR" | "FATAL")).count();
    assert_eq!(errors, 0, "pkilint reported ERROR/FATAL findings:\n{}", report.join("\n"));
    Ok(())
}

#[test]
fn two_approvals_then_rauc_accepts_on_postgres() -> Result<()> {
    let db = TestDb::create()?;
    let tmp = e2e_tests::workdir("update-accept-pg")?;
    accept_flow(Cli::evaluation(tmp.path()).env("CA_STORAGE__URL", &db.url))?;
    Ok(())
}

/// The accept flow; returns the issued certificate's PEM file.
fn accept_flow(cli: Cli) -> Result<PathBuf> {
    let lab = Lab::start(cli)?;
    let d = lab.dir.clone();
    let t = &lab.t;
    let csr = lab.csr("ota-release", &[])?;

    // Submitted: pending, nobody has approved, two approvals needed.
    let created = lab.submit(Some(&t.requester), &csr, &["generic"], Some(VALIDITY_DAYS))?;
    assert_eq!(created.status, 201, "{}", created.describe());
    let created = body(&created)?;
    let id = id_of(&created)?;
    assert_eq!(created["status"], "pending", "{created}");
    assert_eq!(created["approvals"], json!([]), "{created}");
    assert_eq!(created["approvals_required"], 2, "{created}");
    assert_eq!(created["requester"], "rel", "{created}");
    assert_eq!(created["classes"], json!(["generic"]), "{created}");
    let class_oid = created["class_policy_oids"][0].as_str().context("class_policy_oids")?.to_string();
    assert_no_certificate(&created);

    // The requester may not approve, even holding an update-approver token.
    refused(&lab.approve(&t.requester_as_approver, &id)?, 409, "cannot approve")?;
    // One approval: still pending, no certificate.
    let first = lab.approve(&t.alice, &id)?;
    assert_eq!(first.status, 200, "{}", first.describe());
    let first = body(&first)?;
    assert_eq!((first["status"].as_str(), &first["approvals"]), (Some("pending"), &json!(["alice"])), "{first}");
    assert_no_certificate(&first);
    assert_no_certificate(&lab.get(&id)?);
    // The same approver twice does not count twice.
    refused(&lab.approve(&t.alice, &id)?, 409, "already approved")?;
    // The second distinct approver: signed at once.
    let second = lab.approve(&t.bob, &id)?;
    assert_eq!(second.status, 200, "{}", second.describe());
    let issued = body(&second)?;
    assert_eq!(issued["status"], "issued", "{issued}");
    assert_eq!(issued["issuer"], "update-authority", "{issued}");
    assert_eq!(issued["approvals"], json!(["alice", "bob"]), "{issued}");
    let signer = lab.signer_from("ota-release", &issued)?;
    // Reading it back gives the same certificate.
    let stored = lab.get(&id)?;
    assert_eq!((&stored["certificate"], &stored["serial"]), (&issued["certificate"], &issued["serial"]), "{stored}");
    // Both carry the tlog-proof of the issuance (GET recomputes it).
    for answer in [&issued, &stored] {
        let proof = answer["tlog_proof"].as_str().with_context(|| format!("no tlog_proof in {answer}"))?;
        let proof = tlog::TlogProof::parse(proof)?;
        let entry: Value = serde_json::from_slice(proof.extra.as_deref().context("no entry in the proof")?)?;
        assert_eq!(entry["action"], "certificate.issue", "{entry}");
    }
    // Issued once: a further approval or sign is a conflict, and no second certificate.
    refused(&lab.approve(&t.carol, &id)?, 409, "already issued")?;
    refused(&lab.sign(&t.requester, &id)?, 409, "not approved")?;

    // The certificate, as openssl sees it.
    let cert = path_str(&signer.cert)?;
    let text = openssl(&d, &["x509", "-in", cert, "-noout", "-text"])?.ok()?.stdout;
    let eku = openssl(&d, &["x509", "-in", cert, "-noout", "-ext", "extendedKeyUsage"])?.ok()?.stdout;
    assert!(eku.contains("Code Signing"), "EKU codeSigning:\n{text}");
    assert!(!eku.contains("TLS Web") && !eku.contains("Any Extended"), "EKU codeSigning only:\n{text}");
    let policies = openssl(&d, &["x509", "-in", cert, "-noout", "-ext", "certificatePolicies"])?.ok()?.stdout;
    assert!(policies.contains(&format!("Policy: {class_oid}")), "policy {class_oid}:\n{text}");
    let bc = openssl(&d, &["x509", "-in", cert, "-noout", "-ext", "basicConstraints,keyUsage"])?.ok()?.stdout;
    assert!(bc.contains("CA:FALSE") && bc.contains("Digital Signature"), "{text}");
    let issuer = openssl(&d, &["x509", "-in", cert, "-noout", "-issuer"])?.ok()?.stdout;
    assert!(issuer.contains("CN = Update Authority CA"), "{issuer}");
    let chain = pem_certificates(&std::fs::read_to_string(&signer.chain)?)?;
    assert_eq!(chain.len(), 1, "the chain is the Update Authority CA (the root is the anchor)");
    let chain_subject = openssl(&d, &["x509", "-in", path_str(&signer.chain)?, "-noout", "-subject"])?.ok()?.stdout;
    assert!(chain_subject.contains("CN = Update Authority CA"), "{chain_subject}");
    // It chains to the update root (strictly, with both CRLs) and not to the identity root.
    let (update_root, chain_s) = (path_str(&lab.update_root)?, path_str(&signer.chain)?);
    let v = openssl(&d, &["verify", "-x509_strict", "-CAfile", update_root, "-untrusted", chain_s, cert])?;
    assert!(v.success() && v.stdout.contains(": OK"), "openssl verify against the update root:\n{}", v.describe());
    let root_crl = lab.update_root_crl(30)?;
    let (ua_crl, _) = lab.update_authority_crl("ua-now")?;
    let v = openssl(
        &d,
        &[
            "verify",
            "-x509_strict",
            "-crl_check_all",
            "-CRLfile",
            path_str(&root_crl)?,
            "-CRLfile",
            path_str(&ua_crl)?,
            "-CAfile",
            update_root,
            "-untrusted",
            chain_s,
            cert,
        ],
    )?;
    assert!(v.success(), "openssl verify -crl_check_all:\n{}", v.describe());
    let identity = path_str(&lab.identity_root)?;
    let v = openssl(&d, &["verify", "-CAfile", identity, "-untrusted", chain_s, cert])?;
    assert!(!v.success(), "an update-signing certificate verified against the identity root:\n{}", v.describe());

    // The published update trust bundle: the Update Authority CA, then the update root.
    let bundle_url = format!("{}/update-trust/bundle.pem", lab.svc()?.base_url());
    let trust = curl(&d, &["-f", &bundle_url])?.ok()?.stdout;
    let trust = pem_certificates(&trust)?;
    let root = pem_certificates(&std::fs::read_to_string(&lab.update_root)?)?;
    assert_eq!(
        trust,
        vec![chain[0].clone(), root[0].clone()],
        "update-trust bundle = [Update Authority CA, update root]"
    );

    // RAUC: a verity bundle signed with it verifies with the update root as the anchor.
    let rauc = Rauc::new(&d)?;
    let bundle = rauc.bundle("release", &signer.cert, &signer.key, &signer.chain)?;
    let conf = rauc.system_conf("device", &[&lab.update_root, &root_crl, &ua_crl])?;
    assert_accepted(&rauc.info(&conf, &bundle, None)?, &signer.cn, "the approved signer");

    // Audited: the submission and both approvals by name.
    let log = lab.audit()?;
    let target = format!("update-request:{id}");
    let ours: Vec<&Value> = log.iter().filter(|e| e["target"] == target.as_str()).collect();
    let ok = |action: &str| ours.iter().filter(|e| e["action"] == action && e["outcome"] == "success").count();
    assert_eq!((ok("update-request.submit"), ok("update-request.approve")), (1, 2), "{ours:#?}");
    let denied = ours.iter().filter(|e| e["outcome"].as_str().is_some_and(|o| o.starts_with("denied:"))).count();
    assert_eq!(denied, 4, "the requester's, the repeated, the late approval and the late sign: {ours:#?}");
    lab.finish()?;
    Ok(signer.cert)
}

// ---------------------------------------------------------------------------------
// 2-4. RAUC refuses the wrong signers
// ---------------------------------------------------------------------------------

#[test]
fn rauc_refuses_device_identity_signer() -> Result<()> {
    let tmp = e2e_tests::workdir("update-device-signer")?;
    let lab = Lab::start(Cli::evaluation(tmp.path()))?;
    let d = lab.dir.clone();
    let good = lab.issue_signer("ota-good")?;

    // A genuine device identity: key + certificate + Device Issuing CA, valid under the
    // identity root.
    let csr = lab.csr("SN-DEV-1", &[])?;
    let out = d.join("SN-DEV-1.chain.pem");
    lab.cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", path_str(&out)?])?;
    let certs = pem_certificates(&std::fs::read_to_string(&out)?)?;
    ensure!(certs.len() == 2, "expected device leaf + Device Issuing CA, got {}", certs.len());
    let (leaf, ca) = (d.join("SN-DEV-1.leaf.pem"), d.join("SN-DEV-1.ca.pem"));
    std::fs::write(&leaf, to_pem(&certs[0]))?;
    std::fs::write(&ca, to_pem(&certs[1]))?;
    let (identity, ca_s, leaf_s) = (path_str(&lab.identity_root)?, path_str(&ca)?, path_str(&leaf)?);
    let v = openssl(
        &d,
        &["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", identity, "-untrusted", ca_s, leaf_s],
    )?;
    assert!(v.success(), "the device certificate should be a valid identity:\n{}", v.describe());

    let rauc = Rauc::new(&d)?;
    let good_bundle = rauc.bundle("good", &good.cert, &good.key, &good.chain)?;
    let device_bundle = rauc.bundle("device-signed", &leaf, &d.join("SN-DEV-1.key"), &ca)?;
    let root_crl = lab.update_root_crl(30)?;
    let (ua_crl, _) = lab.update_authority_crl("ua")?;

    // The device keyring: the update root only.
    let conf = rauc.system_conf("device", &[&lab.update_root, &root_crl, &ua_crl])?;
    assert_accepted(&rauc.info(&conf, &good_bundle, None)?, &good.cn, "control: the approved signer");
    let out = rauc.info(&conf, &device_bundle, None)?;
    assert_refused(&out, "unable to get local issuer certificate", "device identity, update root only");

    // Even a device that wrongly trusts the identity root too refuses it: no codeSigning.
    let conf = rauc.system_conf("both-roots", &[&lab.update_root, &lab.identity_root, &root_crl, &ua_crl])?;
    let out = rauc.info(&conf, &device_bundle, None)?;
    assert_refused(&out, "unsuitable certificate purpose", "device identity, both roots");
    assert!(out.stderr.contains("does not specify extended key usage code signing"), "{}", out.describe());
    lab.finish()
}

#[test]
fn rauc_refuses_revoked_signer() -> Result<()> {
    let tmp = e2e_tests::workdir("update-revoked")?;
    let lab = Lab::start(Cli::evaluation(tmp.path()))?;
    let d = lab.dir.clone();
    let signer = lab.issue_signer("ota-doomed")?;
    let rauc = Rauc::new(&d)?;
    let bundle = rauc.bundle("doomed", &signer.cert, &signer.key, &signer.chain)?;
    let root_crl = lab.update_root_crl(30)?;

    // Before: the current CRLs do not list it, RAUC accepts.
    let (ua_before, der) = lab.update_authority_crl("ua-before")?;
    assert!(!crl_serials(&der)?.iter().any(|s| same_serial(s, &signer.serial)), "listed before revocation");
    let conf = rauc.system_conf("before", &[&lab.update_root, &root_crl, &ua_before])?;
    assert_accepted(&rauc.info(&conf, &bundle, None)?, &signer.cn, "before revocation");

    // Revoked through the admin API (an update approver may not; the operator may).
    let path = format!("/certificates/update-authority/{}/revoke", signer.serial);
    let reason = r#"{"reason":"keyCompromise"}"#;
    refused(&lab.call("POST", &path, Some(&lab.t.alice), Some(reason))?, 403, "may not")?;
    let revoked = lab.call("POST", &path, Some(&lab.t.operator), Some(reason))?;
    assert_eq!(revoked.status, 200, "{}", revoked.describe());
    let revoked = body(&revoked)?;
    assert_eq!(
        (revoked["status"].as_str(), revoked["revocation_reason"].as_str()),
        (Some("revoked"), Some("keyCompromise"))
    );

    // After: the served CRL lists it with reason keyCompromise; RAUC refuses.
    let ua_after = lab.update_authority_crl_listing("ua-after", &signer.serial)?;
    let crl_text = openssl(&d, &["crl", "-in", path_str(&ua_after)?, "-noout", "-text"])?.ok()?.stdout;
    assert!(crl_text.contains("Key Compromise"), "{crl_text}");
    let conf = rauc.system_conf("after", &[&lab.update_root, &root_crl, &ua_after])?;
    assert_refused(&rauc.info(&conf, &bundle, None)?, "certificate revoked", "revoked signer");

    // The compromised key is never certified again: refused at submission, before
    // anyone spends an approval on it.
    let csr = lab.dir.join("ota-doomed.csr");
    let again = lab.submit(Some(&lab.t.requester), &csr, &["generic"], Some(VALIDITY_DAYS))?;
    assert_eq!(again.status, 400, "{}", again.describe());
    assert!(String::from_utf8_lossy(&again.body).contains("key compromise"), "{}", again.describe());
    assert_eq!(sqlite_i64(&d, UPDATE_CERTS)?, 1, "the compromised key was certified again");
    lab.finish()
}

#[test]
fn rauc_refuses_expired_signer() -> Result<()> {
    require_tool("faketime")?;
    let tmp = e2e_tests::workdir("update-expired")?;
    let lab = Lab::start(Cli::evaluation(tmp.path()))?;
    let d = lab.dir.clone();
    let signer = lab.issue_signer("ota-shortlived")?;

    // It has the 30 days asked for (plus at most the backdating of notBefore).
    let der = pem_certificates(&std::fs::read_to_string(&signer.cert)?)?.remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow!("{e}"))?;
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    let days = i64::try_from(VALIDITY_DAYS)? * 86_400;
    assert!((days..=days + 3600).contains(&lifetime), "lifetime {lifetime} s, asked for {VALIDITY_DAYS} days");
    assert_eq!(signer.request["validity_days"], VALIDITY_DAYS, "{}", signer.request);

    let rauc = Rauc::new(&d)?;
    let bundle = rauc.bundle("shortlived", &signer.cert, &signer.key, &signer.chain)?;
    let root_crl = lab.update_root_crl(400)?;
    let (ua_crl, _) = lab.update_authority_crl("ua")?;
    let conf = rauc.system_conf("device", &[&lab.update_root, &root_crl, &ua_crl])?;
    assert_accepted(&rauc.info(&conf, &bundle, None)?, &signer.cn, "now");
    // Control: a moved clock alone (CRLs still current) is not a reason to refuse.
    assert_accepted(&rauc.info(&conf, &bundle, Some("+20 days"))?, &signer.cn, "in 20 days");
    // Past the 30 days asked for (a default 90-day certificate would still pass here).
    assert_refused(&rauc.info(&conf, &bundle, Some("+35 days"))?, "certificate has expired", "in 35 days");
    assert_refused(&rauc.info(&conf, &bundle, Some("+200 days"))?, "certificate has expired", "in 200 days");
    lab.finish()
}

// ---------------------------------------------------------------------------------
// 5-7. The request workflow's refusals
// ---------------------------------------------------------------------------------

#[test]
fn one_person_cannot_get_a_certificate() -> Result<()> {
    let tmp = e2e_tests::workdir("update-one-person")?;
    let d = tmp.path();
    let lab = Lab::start(Cli::evaluation(d))?;
    let t = &lab.t;
    let csr = lab.csr("ota-solo", &[])?;
    let created = lab.submit(Some(&t.requester), &csr, &["generic"], None)?;
    assert_eq!(created.status, 201, "{}", created.describe());
    let id = id_of(&body(&created)?)?;

    let first = lab.approve(&t.alice, &id)?;
    assert_eq!(first.status, 200, "{}", first.describe());
    let mut approve_refusals = 0;
    let mut refuse = |reply: HttpReply, status: u16, reason: &str| -> Result<()> {
        refused(&reply, status, reason)?;
        approve_refusals += 1;
        Ok(())
    };
    // Alice, again and again, and with her second token.
    for _ in 0..3 {
        refuse(lab.approve(&t.alice, &id)?, 409, "already approved")?;
    }
    refuse(lab.approve(&t.alice_again, &id)?, 409, "already approved")?;
    // The requester, with an approver token in the same name, and with their own.
    refuse(lab.approve(&t.requester_as_approver, &id)?, 409, "cannot approve")?;
    refuse(lab.approve(&t.requester, &id)?, 403, "role release-manager may not")?;
    // Roles that are not update-approver, however powerful.
    refuse(lab.approve(&t.admin, &id)?, 403, "role admin may not")?;
    refuse(lab.approve(&t.operator, &id)?, 403, "role operator may not")?;
    // Signing a request that is still pending.
    refused(&lab.sign(&t.requester, &id)?, 409, "not approved")?;
    refused(&lab.sign(&t.alice, &id)?, 409, "not approved")?;
    refused(&lab.sign(&t.admin, &id)?, 403, "may not")?;

    let now = lab.get(&id)?;
    assert_eq!((now["status"].as_str(), &now["approvals"]), (Some("pending"), &json!(["alice"])), "{now}");
    assert_no_certificate(&now);
    assert_eq!(sqlite_i64(d, UPDATE_CERTS)?, 0, "an update-signing certificate was stored");
    assert_eq!(lab.denied("update-request.approve")?.len(), approve_refusals, "every refused approval is audited");
    assert_eq!(lab.denied("update-request.sign")?.len(), 3, "every refused sign is audited");

    // The CLI is no way around it.
    let out = lab.cli.run(&["issue", "--profile", "update-signing", "--csr", path_str(&csr)?])?;
    assert!(!out.success(), "ca-service issue --profile update-signing must be refused:\n{}", out.describe());
    assert!(
        out.stderr.contains("update request") && out.stderr.contains("approv"),
        "the refusal should point to approved update requests:\n{}",
        out.describe()
    );
    assert!(!out.stdout.contains("BEGIN CERTIFICATE"), "{}", out.describe());
    assert_eq!(sqlite_i64(d, UPDATE_CERTS)?, 0, "the CLI stored an update-signing certificate");

    // Control: a second person makes it a valid request at once.
    let second = lab.approve(&t.bob, &id)?;
    assert_eq!(second.status, 200, "{}", second.describe());
    assert_eq!(body(&second)?["status"], "issued", "{}", second.describe());
    assert_eq!(sqlite_i64(d, UPDATE_CERTS)?, 1);
    lab.finish()
}

#[test]
fn rejected_and_expired_requests_are_never_signed() -> Result<()> {
    let tmp = e2e_tests::workdir("update-reject-expire")?;
    let d = tmp.path();
    let mut lab = Lab::start(Cli::evaluation(d))?;

    // Rejected: one approval, then a rejection; nothing makes it issuable again.
    let csr = lab.csr("ota-rejected", &[])?;
    let created = lab.submit(Some(&lab.t.requester), &csr, &["generic"], None)?;
    assert_eq!(created.status, 201, "{}", created.describe());
    let id = id_of(&body(&created)?)?;
    assert_eq!(lab.approve(&lab.t.alice, &id)?.status, 200);
    refused(&lab.reject(&lab.t.requester, &id, "changed my mind")?, 403, "may not")?;
    refused(&lab.reject(&lab.t.bob, &id, " ")?, 400, "reason")?;
    let rejected = lab.reject(&lab.t.bob, &id, "not this build")?;
    assert_eq!(rejected.status, 200, "{}", rejected.describe());
    let rejected = body(&rejected)?;
    assert_eq!(
        (rejected["status"].as_str(), rejected["rejected_by"].as_str(), rejected["reason"].as_str()),
        (Some("rejected"), Some("bob"), Some("not this build")),
        "{rejected}"
    );
    refused(&lab.approve(&lab.t.carol, &id)?, 409, "already rejected")?;
    refused(&lab.approve(&lab.t.bob, &id)?, 409, "already rejected")?;
    refused(&lab.sign(&lab.t.requester, &id)?, 409, "rejected")?;
    refused(&lab.sign(&lab.t.carol, &id)?, 409, "rejected")?;
    let now = lab.get(&id)?;
    assert_eq!(now["status"], "rejected", "{now}");
    assert_no_certificate(&now);

    // Expired: a short time-to-live, one approval in time, the second too late.
    lab.restart_with("CA_UPDATES__REQUEST_TTL_SECS", "3")?;
    let csr = lab.csr("ota-late", &[])?;
    let created = lab.submit(Some(&lab.t.requester), &csr, &["generic"], None)?;
    assert_eq!(created.status, 201, "{}", created.describe());
    let created = body(&created)?;
    let id = id_of(&created)?;
    let expires_at = created["expires_at"].as_i64().context("expires_at")?;
    let first = lab.approve(&lab.t.alice, &id)?;
    assert_eq!(first.status, 200, "the first approval, within the TTL: {}", first.describe());
    let wait = (expires_at + 1 - unix_now()).clamp(0, 10);
    std::thread::sleep(Duration::from_secs(u64::try_from(wait)?));
    refused(&lab.approve(&lab.t.bob, &id)?, 409, "has expired")?;
    refused(&lab.sign(&lab.t.requester, &id)?, 409, "not approved")?;
    refused(&lab.approve(&lab.t.carol, &id)?, 409, "has expired")?;
    let now = lab.get(&id)?;
    assert_eq!(now["expired"], true, "{now}");
    assert_ne!(now["status"], "issued", "{now}");
    assert_no_certificate(&now);

    assert_eq!(sqlite_i64(d, UPDATE_CERTS)?, 0, "an update-signing certificate was stored");
    lab.finish()
}

#[test]
fn bad_requests_are_refused_and_audited() -> Result<()> {
    let tmp = e2e_tests::workdir("update-bad-requests")?;
    let d = tmp.path();
    let lab = Lab::start(Cli::evaluation(d))?;
    let t = &lab.t;
    let good_csr = lab.csr("ota-ok", &[])?;
    let ca_csr = lab.csr("ota-ca", &["-addext", "basicConstraints=critical,CA:TRUE"])?;
    let garbage = d.join("garbage.csr");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")?;

    let mut expected = 0;
    let mut check = |reply: HttpReply, status: u16, reason: &str| -> Result<()> {
        refused(&reply, status, reason)?;
        expected += 1;
        let denied = lab.denied("update-request.submit")?;
        assert_eq!(denied.len(), expected, "refusal {expected} audited: {}\n{denied:#?}", reply.describe());
        let last = denied.last().context("audit entry")?;
        assert_eq!(last["details"]["status"], status, "{last}");
        assert!(last["outcome"].as_str().is_some_and(|o| o.contains(reason)), "{last}");
        Ok(())
    };
    check(lab.submit(Some(&t.requester), &ca_csr, &["generic"], None)?, 400, "CA:TRUE")?;
    check(lab.submit(Some(&t.requester), &good_csr, &["toaster"], None)?, 400, "unknown device class 'toaster'")?;
    check(lab.submit(Some(&t.requester), &good_csr, &[], None)?, 400, "device class")?;
    check(lab.submit(Some(&t.requester), &good_csr, &["generic"], Some(3650))?, 400, "validity_days")?;
    check(lab.submit(Some(&t.requester), &garbage, &["generic"], None)?, 400, "")?;
    check(lab.call("POST", "/update-requests", Some(&t.requester), Some("{not json"))?, 400, "")?;
    check(lab.submit(None, &good_csr, &["generic"], None)?, 401, "missing credential")?;
    check(lab.submit(Some("pki_0123456789abcdef.nope"), &good_csr, &["generic"], None)?, 401, "invalid")?;
    check(lab.submit(Some(&t.alice), &good_csr, &["generic"], None)?, 403, "role update-approver may not")?;
    check(lab.submit(Some(&t.admin), &good_csr, &["generic"], None)?, 403, "role admin may not")?;

    // Nothing was recorded, nothing signed.
    let list = lab.call("GET", "/update-requests", Some(&t.auditor), None)?;
    assert_eq!(list.status, 200, "{}", list.describe());
    assert_eq!(body(&list)?["requests"], json!([]), "{}", list.describe());
    assert_eq!(sqlite_i64(d, "SELECT COUNT(*) FROM update_requests")?, 0);
    assert_eq!(sqlite_i64(d, UPDATE_CERTS)?, 0);
    // Control: the same CSR, properly submitted, is accepted.
    let ok = lab.submit(Some(&t.requester), &good_csr, &["generic"], None)?;
    assert_eq!(ok.status, 201, "{}", ok.describe());
    lab.finish()
}

// ---------------------------------------------------------------------------------
// 8. The same rules through `ca-service ota sign|verify`
// ---------------------------------------------------------------------------------

/// What `ota verify` decided.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Exit 0 and this line starting `accepted`.
    Accepted(String),
    /// A nonzero exit and this line starting `refused:`.
    Refused(String),
}

/// `ota verify`'s verdict; anything else (a panic, a usage error, an exit code that
/// contradicts the line) is an error.
fn ota_verdict(out: &Output) -> Result<Verdict> {
    let all = format!("{}\n{}", out.stdout, out.stderr);
    ensure!(!all.contains("panicked"), "ota verify panicked:\n{}", out.describe());
    // The CLI reports failures as `error: <message>`, so the refusal line may carry
    // that prefix.
    let line = |prefix: &str| {
        all.lines().map(|l| l.trim().trim_start_matches("error: ")).find(|l| l.starts_with(prefix)).map(str::to_string)
    };
    match (out.success(), line("accepted"), line("refused:")) {
        (true, Some(l), None) => Ok(Verdict::Accepted(l)),
        (false, None, Some(l)) => Ok(Verdict::Refused(l)),
        _ => bail!("ota verify gave no clear verdict:\n{}", out.describe()),
    }
}

/// `ota verify --signature <sig> --trust <trust> [extra…] <file>`.
fn ota_verify(cli: &Cli, file: &Path, sig: &Path, trust: &Path, extra: &[&str]) -> Result<Output> {
    let mut args = vec!["ota", "verify", "--signature", path_str(sig)?, "--trust", path_str(trust)?];
    args.extend_from_slice(extra);
    args.push(path_str(file)?);
    cli.run(&args)
}

/// Accepted; returns the `accepted: …` line.
fn assert_ota_accepted(out: &Output, what: &str) -> Result<String> {
    match ota_verdict(out)? {
        Verdict::Accepted(line) => Ok(line),
        Verdict::Refused(_) => bail!("{what}: ota verify should accept:\n{}", out.describe()),
    }
}

fn assert_ota_refused(out: &Output, reason: &str, what: &str) -> Result<()> {
    assert_ota_refused_any(out, &[reason], what)
}

/// Refused, for one of `reasons`.
fn assert_ota_refused_any(out: &Output, reasons: &[&str], what: &str) -> Result<()> {
    let verdict = ota_verdict(out)?;
    let refused = matches!(&verdict, Verdict::Refused(l) if reasons.iter().any(|r| l.contains(r)));
    assert!(refused, "{what}: ota verify should refuse with one of {reasons:?}:\n{}", out.describe());
    Ok(())
}

/// RFC 3339 UTC time of a Unix timestamp (civil-from-days, no date crate needed).
fn rfc3339(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[test]
fn rfc3339_formats_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
}

#[test]
fn ota_verify_applies_the_same_rules() -> Result<()> {
    let tmp = e2e_tests::workdir("update-ota")?;
    let d = tmp.path();
    // A second device class, so that class scoping can be seen refusing.
    let lab = Lab::start(Cli::evaluation(d).env("CA_UPDATES__CLASSES__CAMERA", "2"))?;
    let cli = lab.cli.clone();
    let signer = lab.issue_signer("ota-pipeline")?;
    let firmware = d.join("firmware.bin");
    std::fs::write(&firmware, (0..256 * 1024u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>())?;

    // Signed with the approved certificate by `ota sign`.
    let sig = d.join("firmware.sig");
    cli.run_ok(&[
        "ota",
        "sign",
        "--cert",
        path_str(&signer.cert)?,
        "--chain",
        path_str(&signer.chain)?,
        "--key-file",
        path_str(&signer.key)?,
        "--out",
        path_str(&sig)?,
        path_str(&firmware)?,
    ])?;
    let root_crl = lab.update_root_crl(30)?;
    let (_, ua_der) = lab.update_authority_crl("ua-before")?;
    let ua_crl = d.join("ua-before.crl");
    let (root, root_crl_s, ua_crl_s) = (lab.update_root.clone(), path_str(&root_crl)?, path_str(&ua_crl)?);
    assert!(crl_serials(&ua_der)?.is_empty());

    // Accepted: plain, for its class, and with current CRLs (PEM and DER).
    let line = assert_ota_accepted(&ota_verify(&cli, &firmware, &sig, &root, &[])?, "plain")?;
    assert!(line.contains(&signer.serial) && line.contains("CN=ota-pipeline"), "names the signer: {line}");
    // Without --trust the deployment's own update root is the anchor.
    let out = cli.run(&["ota", "verify", "--signature", path_str(&sig)?, path_str(&firmware)?])?;
    assert_ota_accepted(&out, "default trust")?;
    assert_ota_accepted(&ota_verify(&cli, &firmware, &sig, &root, &["--class", "generic"])?, "class generic")?;
    let crls = ["--crl", root_crl_s, "--crl", ua_crl_s];
    assert_ota_accepted(&ota_verify(&cli, &firmware, &sig, &root, &crls)?, "with CRLs")?;
    // Refused: another class, other content, the identity root as anchor.
    let out = ota_verify(&cli, &firmware, &sig, &root, &["--class", "camera"])?;
    assert_ota_refused(&out, "device class", "class camera")?;
    let tampered = d.join("tampered.bin");
    let mut bytes = std::fs::read(&firmware)?;
    bytes[1000] ^= 0xff;
    std::fs::write(&tampered, bytes)?;
    assert_ota_refused(&ota_verify(&cli, &tampered, &sig, &root, &[])?, "does not match", "tampered content")?;
    let out = ota_verify(&cli, &firmware, &sig, &lab.identity_root, &[])?;
    assert_ota_refused(&out, "does not chain", "identity root as the anchor")?;

    // A device identity signs (with openssl cms: a detached CMS signature of the same form).
    let dev_csr = lab.csr("SN-OTA-1", &[])?;
    let dev_chain = d.join("SN-OTA-1.chain.pem");
    cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&dev_csr)?, "--out", path_str(&dev_chain)?])?;
    let certs = pem_certificates(&std::fs::read_to_string(&dev_chain)?)?;
    ensure!(certs.len() == 2, "expected device leaf + Device Issuing CA");
    let (leaf, ca) = (d.join("SN-OTA-1.leaf.pem"), d.join("SN-OTA-1.ca.pem"));
    std::fs::write(&leaf, to_pem(&certs[0]))?;
    std::fs::write(&ca, to_pem(&certs[1]))?;
    let dev_sig = d.join("device.sig");
    openssl(
        d,
        &[
            "cms",
            "-sign",
            "-binary",
            "-md",
            "sha256",
            "-in",
            path_str(&firmware)?,
            "-signer",
            path_str(&leaf)?,
            "-inkey",
            path_str(&d.join("SN-OTA-1.key"))?,
            "-certfile",
            path_str(&ca)?,
            "-outform",
            "DER",
            "-out",
            path_str(&dev_sig)?,
        ],
    )?
    .ok()?;
    let out = ota_verify(&cli, &firmware, &dev_sig, &root, &[])?;
    // Either rule refuses it: the leaf lacks codeSigning and it does not chain here.
    assert_ota_refused_any(&out, &["does not chain", "code signing"], "device identity, update root")?;
    let out = ota_verify(&cli, &firmware, &dev_sig, &lab.identity_root, &[])?;
    assert_ota_refused(&out, "code signing", "device identity, identity root")?;
    // Control: openssl's own signature by the approved signer is accepted, so the form
    // of the device signature is not what was refused.
    let openssl_sig = d.join("openssl.sig");
    openssl(
        d,
        &[
            "cms",
            "-sign",
            "-binary",
            "-md",
            "sha256",
            "-in",
            path_str(&firmware)?,
            "-signer",
            path_str(&signer.cert)?,
            "-inkey",
            path_str(&signer.key)?,
            "-certfile",
            path_str(&signer.chain)?,
            "-outform",
            "DER",
            "-out",
            path_str(&openssl_sig)?,
        ],
    )?
    .ok()?;
    assert_ota_accepted(&ota_verify(&cli, &firmware, &openssl_sig, &root, &[])?, "openssl cms signature")?;

    // Expired: verified 200 days from now (a trusted time), and 20 days as the control.
    let at = |days: i64| rfc3339(unix_now() + days * 86_400);
    assert_ota_accepted(&ota_verify(&cli, &firmware, &sig, &root, &["--at", &at(20)])?, "in 20 days")?;
    let out = ota_verify(&cli, &firmware, &sig, &root, &["--at", &at(200)])?;
    assert_ota_refused(&out, "expired", "in 200 days")?;

    // Revoked: the fresh CRL refuses it; without CRLs it is still accepted (the CRL
    // makes the difference).
    let path = format!("/certificates/update-authority/{}/revoke", signer.serial);
    let revoked = lab.call("POST", &path, Some(&lab.t.operator), Some(r#"{"reason":"keyCompromise"}"#))?;
    assert_eq!(revoked.status, 200, "{}", revoked.describe());
    let ua_after_pem = lab.update_authority_crl_listing("ua-after", &signer.serial)?;
    let ua_after_der = d.join("ua-after.crl");
    for crl in [&ua_after_pem, &ua_after_der] {
        let out = ota_verify(&cli, &firmware, &sig, &root, &["--crl", root_crl_s, "--crl", path_str(crl)?])?;
        assert_ota_refused(&out, "revoked", &format!("revoked, CRL {}", crl.display()))?;
    }
    assert_ota_accepted(&ota_verify(&cli, &firmware, &sig, &root, &[])?, "revoked, but no CRL given")?;

    // Garbage signatures: a clear refusal, no panic.
    let garbage = d.join("garbage.sig");
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&garbage, noise)?;
    assert_ota_refused(&ota_verify(&cli, &firmware, &garbage, &root, &[])?, "malformed", "garbage signature")?;
    let empty = d.join("empty.sig");
    std::fs::write(&empty, b"")?;
    assert_ota_refused(&ota_verify(&cli, &firmware, &empty, &root, &[])?, "", "empty signature")?;
    let pem_garbage = d.join("garbage.pem.sig");
    std::fs::write(&pem_garbage, "-----BEGIN CMS-----\nnot base64 at all!\n-----END CMS-----\n")?;
    assert_ota_refused(&ota_verify(&cli, &firmware, &pem_garbage, &root, &[])?, "", "garbage PEM signature")?;

    // Every verification is audited: 7 accepted, 11 refused above.
    let ota = |outcome: &str| {
        sqlite_i64(
            d,
            &format!("SELECT COUNT(*) FROM audit_log WHERE action = 'ota.verify' AND outcome LIKE '{outcome}'"),
        )
    };
    assert_eq!((ota("success")?, ota("denied:%")?), (7, 11), "audited ota verify outcomes");
    lab.finish()
}

// ---------------------------------------------------------------------------------
// The signer was logged: tlog-proofs from the two-person flow
// ---------------------------------------------------------------------------------

/// `ota sign` of `firmware` by `signer`, with `--proof` if given.
fn ota_sign(cli: &Cli, signer: &Signer, firmware: &Path, out: &Path, proof: Option<&Path>) -> Result<Output> {
    let mut args = vec![
        "ota",
        "sign",
        "--cert",
        path_str(&signer.cert)?,
        "--chain",
        path_str(&signer.chain)?,
        "--key-file",
        path_str(&signer.key)?,
        "--out",
        path_str(out)?,
    ];
    if let Some(p) = proof {
        args.extend_from_slice(&["--proof", path_str(p)?]);
    }
    args.push(path_str(firmware)?);
    cli.run(&args)
}

#[test]
fn ota_verify_with_a_log_key_requires_the_signers_tlog_proof() -> Result<()> {
    let tmp = e2e_tests::workdir("update-tlog")?;
    let d = tmp.path();
    let lab = Lab::start(Cli::evaluation(d))?;
    let cli = lab.cli.clone();
    let log_key = cli.run_ok(&["log", "key"])?.stdout.trim().to_string();
    ensure!(log_key.starts_with(&format!("{LOG_ORIGIN}+")), "log key {log_key}");
    let key_file = d.join("log.vkey");
    std::fs::write(&key_file, format!("{log_key}\n"))?;

    // The answer of the approval that signs carries the proof of the issuance.
    let signer = lab.issue_signer("ota-logged")?;
    let proof_text = signer.request["tlog_proof"].as_str().context("no tlog_proof in the approve answer")?;
    assert!(proof_text.starts_with("c2sp.org/tlog-proof@v1\n"), "{proof_text}");
    let proof = tlog::TlogProof::parse(proof_text)?;
    let entry: Value = serde_json::from_slice(proof.extra.as_deref().context("no extra")?)?;
    assert_eq!(entry["action"], "certificate.issue", "{entry}");
    let proof_file = d.join("ota-logged.tlog-proof");
    std::fs::write(&proof_file, proof_text)?;
    // GET recomputes it (nothing is stored): also a valid proof for the signer.
    let stored = lab.get(&id_of(&signer.request)?)?;
    let stored_proof = d.join("stored.tlog-proof");
    std::fs::write(&stored_proof, stored["tlog_proof"].as_str().context("no tlog_proof in GET")?)?;
    assert!(stored.get("tlog_proof_error").is_none(), "{stored}");
    // Lists do not carry it.
    let list = body(&lab.call("GET", "/update-requests", Some(&lab.t.auditor), None)?)?;
    assert!(list["requests"][0].get("tlog_proof").is_none(), "{list}");

    let firmware = d.join("firmware.bin");
    std::fs::write(&firmware, (0..64 * 1024u32).map(|i| (i % 241) as u8).collect::<Vec<u8>>())?;
    let root = lab.update_root.clone();

    // `ota sign --proof` writes it next to the signature; `ota verify --log-key` finds
    // it there and accepts (the key as a string or as a file).
    let sig = d.join("firmware.sig");
    ota_sign(&cli, &signer, &firmware, &sig, Some(&proof_file))?.ok()?;
    let shipped = d.join("firmware.sig.tlog-proof");
    assert_eq!(std::fs::read_to_string(&shipped)?, proof_text, "the proof ships as <signature>.tlog-proof");
    assert_ota_accepted(&ota_verify(&cli, &firmware, &sig, &root, &["--log-key", &log_key])?, "logged signer")?;
    let out = ota_verify(&cli, &firmware, &sig, &root, &["--log-key", path_str(&key_file)?])?;
    assert_ota_accepted(&out, "log key from a file")?;
    let out = ota_verify(&cli, &firmware, &sig, &root, &["--log-key", &log_key, "--proof", path_str(&stored_proof)?])?;
    assert_ota_accepted(&out, "the proof GET answered")?;

    // Without the proof: accepted without --log-key, refused with it.
    let bare = d.join("bare.sig");
    ota_sign(&cli, &signer, &firmware, &bare, None)?.ok()?;
    ensure!(!d.join("bare.sig.tlog-proof").exists(), "no proof given, none written");
    assert_ota_accepted(&ota_verify(&cli, &firmware, &bare, &root, &[])?, "no log required")?;
    let out = ota_verify(&cli, &firmware, &bare, &root, &["--log-key", &log_key])?;
    assert_ota_refused(&out, "no tlog-proof", "no proof")?;

    // Another approved signer's proof does not vouch for this signer: `ota sign`
    // refuses to ship it, and `ota verify` refuses it.
    let other = lab.issue_signer("ota-other")?;
    let other_proof = d.join("ota-other.tlog-proof");
    std::fs::write(&other_proof, other.request["tlog_proof"].as_str().context("no tlog_proof")?)?;
    let out = ota_sign(&cli, &signer, &firmware, &d.join("mixed.sig"), Some(&other_proof))?;
    ensure!(!out.success() && out.stderr.contains("not of the issuance of --cert"), "{}", out.describe());
    let out = ota_verify(&cli, &firmware, &bare, &root, &["--log-key", &log_key, "--proof", path_str(&other_proof)?])?;
    assert_ota_refused(&out, "another certificate", "another signer's proof")?;

    // The right proof under a key that is not the log's (same log name): refused.
    let name = log_key.split('+').next().context("verifier key name")?;
    let foreign = tlog::verifier_key(name, tlog::SIG_ED25519, &[7; 32]);
    let out = ota_verify(&cli, &firmware, &sig, &root, &["--log-key", &foreign])?;
    assert_ota_refused(&out, "does not verify under a trusted log key", "foreign log key")?;
    // A tampered proof (the entry edited): refused.
    let mut edited = proof.clone();
    let mut extra = entry.clone();
    extra["actor"] = "someone-else".into();
    edited.extra = Some(serde_json::to_vec(&extra)?);
    let edited_file = d.join("edited.tlog-proof");
    std::fs::write(&edited_file, edited.to_text())?;
    let out = ota_verify(&cli, &firmware, &sig, &root, &["--log-key", &log_key, "--proof", path_str(&edited_file)?])?;
    assert_ota_refused(&out, "does not verify", "edited entry")?;
    lab.finish()
}
