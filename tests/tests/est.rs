//! EST (RFC 7030) end to end, with the clients a factory would use: curl for the
//! transport (mutual TLS with station and device certificates) and openssl for keys,
//! CSRs, the certs-only CMS answers and chain verification.
//!
//! The full enroll → renew flow runs on SQLite, PostgreSQL and PostgreSQL + SoftHSM.
//! Every refusal is checked for its status, its reason, its audit entry (exactly one
//! new entry: `denied: <reason>`) and its lack of effect (no certificate stored, no
//! device state changed). Each test has a deployment of its own (init + serve take a
//! fraction of a second on SQLite), so no test depends on another's leftovers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use e2e_tests::{
    curl, curl_reply, make_csr, openssl, pem_certificates, Cli, HttpReply, Service, SoftHsm, TestDb, P256,
};
use x509_parser::prelude::*;

const PIN: &str = "246810";
const SO_PIN: &str = "13579111";
const CAS: [&str; 5] = ["identity-root", "device", "station", "update-root", "update-authority"];

const PKCS10: &str = "application/pkcs10";
const CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";
/// Devices registered (batch `b1`, model `generic`) in every deployment.
const DEVICES: [&str; 6] = ["SN-1", "SN-2", "SN-3", "SN-4", "SN-5", "SN-6"];
/// Renewal right after enrollment (the default allows one certificate per hour).
const NO_RENEWAL_LIMIT: (&str, &str) = ("CA_EST__RENEWAL_MIN_INTERVAL_SECS", "0");

// ---------------------------------------------------------------------------------
// A deployment: store, CA hierarchy, registered devices, one station, the service
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// Evaluation mode: SQLite and software keys under ./pki-data.
    Sqlite,
    /// PostgreSQL and software keys.
    Postgres,
    /// PostgreSQL and every CA key on a SoftHSM token (config file).
    PostgresHsm,
}

enum Db {
    Sqlite(PathBuf),
    Postgres(Box<TestDb>),
}

impl Db {
    fn i64(&self, sql: &str) -> Result<i64> {
        match self {
            Db::Sqlite(w) => e2e_tests::sqlite_i64(w, sql),
            Db::Postgres(db) => db.query_i64(sql),
        }
    }

    fn strings(&self, sql: &str) -> Result<Vec<String>> {
        match self {
            Db::Sqlite(w) => e2e_tests::sqlite_strings(w, sql),
            Db::Postgres(db) => db.query_strings(sql),
        }
    }

    /// The single row's first column.
    fn string(&self, sql: &str) -> Result<String> {
        match self.strings(sql)?.as_slice() {
            [one] => Ok(one.clone()),
            other => bail!("{sql}: expected one row, got {other:?}"),
        }
    }

    fn execute(&self, sql: &str) -> Result<u64> {
        match self {
            Db::Sqlite(w) => Ok(e2e_tests::sqlite_execute(w, sql)? as u64),
            Db::Postgres(db) => db.execute(sql),
        }
    }

    fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }
}

/// What a refusal must leave untouched, and where its audit entry starts.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    certificates: i64,
    /// `id=state` of every device.
    devices: Vec<String>,
    audit_seq: i64,
}

/// Fields in declaration order are dropped in that order: the service stops first.
struct Est {
    svc: Service,
    db: Db,
    cli: Cli,
    _hsm: Option<SoftHsm>,
    dir: tempfile::TempDir,
}

fn hsm_config(hsm: &SoftHsm, db: &TestDb) -> String {
    let mut toml = format!(
        "[storage]\nurl = \"{}\"\n\n[key_stores.hsm]\ntype = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"pki\"\npin_env = \"TEST_HSM_PIN\"\n",
        db.url,
        hsm.module.display()
    );
    for ca in CAS {
        toml.push_str(&format!("\n[cas.{ca}]\nkey_store = \"hsm\"\n"));
    }
    toml
}

impl Est {
    /// `init`, registers [`DEVICES`] in batch `b1`, adds station `station-1` (any model,
    /// any batch; `station.pem`/`station.key`), starts `serve` with `env`, and fetches
    /// `root.pem` and `device-ca.pem` over plain HTTP.
    fn start(backend: Backend, prefix: &str, env: &[(&str, &str)]) -> Result<Self> {
        let dir = e2e_tests::workdir(prefix)?;
        let mut cli = Cli::evaluation(dir.path());
        let mut hsm = None;
        let db = match backend {
            Backend::Sqlite => Db::Sqlite(dir.path().to_path_buf()),
            Backend::Postgres => {
                let db = TestDb::create()?;
                cli = cli.env("CA_STORAGE__URL", db.url.clone());
                Db::Postgres(Box::new(db))
            }
            Backend::PostgresHsm => {
                let token = SoftHsm::new()?;
                token.init_token("pki", SO_PIN, PIN)?;
                let db = TestDb::create()?;
                let config = dir.path().join("pki.toml");
                std::fs::write(&config, hsm_config(&token, &db))?;
                cli = cli
                    .with_config(&config)
                    .env("SOFTHSM2_CONF", token.conf.to_string_lossy())
                    .env("TEST_HSM_PIN", PIN);
                hsm = Some(token);
                Db::Postgres(Box::new(db))
            }
        };
        for (k, v) in env {
            cli = cli.env(*k, *v);
        }
        let d = dir.path();
        cli.run_ok(&["init"])?;
        let mut csv = String::from("device_id,model,class,hardware_serial\n");
        for id in DEVICES {
            csv.push_str(&format!("{id},generic,default,HW-{id}\n"));
        }
        std::fs::write(d.join("devices.csv"), csv)?;
        cli.run_ok(&["devices", "import", "--batch", "b1", "--model", "generic", "devices.csv"])?;
        make_csr(d, "station", P256, "/CN=station-1", &[])?;
        cli.run_ok(&["stations", "add", "--csr", "station.csr", "--out", "station.pem"])?;
        let svc = Service::start(&cli)?;
        let base = svc.base_url();
        curl(d, &["-f", "-o", "root.pem", &format!("{base}/ca/identity-root.pem")])?.ok()?;
        curl(d, &["-f", "-o", "device-ca.pem", &format!("{base}/ca/device.pem")])?.ok()?;
        Ok(Self { svc, db, cli, _hsm: hsm, dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/.well-known/est/{path}", self.svc.https.port())
    }

    /// `GET /.well-known/est/<path>` without a client certificate.
    fn get(&self, path: &str) -> Result<HttpReply> {
        curl_reply(self.path(), &["--cacert", "root.pem", &self.url(path)])
    }

    /// `POST /.well-known/est/<path>` with `body`; `client` names `<client>.pem` and
    /// `<client>.key`; `content_type` None sends no Content-Type at all.
    fn post(
        &self,
        path: &str,
        client: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
        headers: &[&str],
    ) -> Result<HttpReply> {
        static N: AtomicU64 = AtomicU64::new(0);
        let file = format!("request-{}.body", N.fetch_add(1, Ordering::Relaxed));
        std::fs::write(self.path().join(&file), body)?;
        let (data, url) = (format!("@{file}"), self.url(path));
        let content_type = format!("Content-Type: {}", content_type.unwrap_or(""));
        let files = client.map(|c| (format!("{c}.pem"), format!("{c}.key")));
        let mut args = vec!["--cacert", "root.pem"];
        if let Some((cert, key)) = &files {
            args.extend_from_slice(&["--cert", cert, "--key", key]);
        }
        args.extend_from_slice(&["-H", &content_type]);
        for h in headers {
            args.extend_from_slice(&["-H", h]);
        }
        args.extend_from_slice(&["--data-binary", &data, &url]);
        curl_reply(self.path(), &args)
    }

    /// A new P-256 key `<name>.key` and a DER CSR `<name>.csr.der` from `openssl req`;
    /// returns the DER.
    fn csr(&self, name: &str, subject: &str, extra: &[&str]) -> Result<Vec<u8>> {
        let (key, der) = (format!("{name}.key"), format!("{name}.csr.der"));
        let mut args = vec!["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        args.extend_from_slice(&["-keyout", &key, "-subj", subject, "-outform", "DER", "-out", &der]);
        args.extend_from_slice(extra);
        openssl(self.path(), &args)?.ok()?;
        Ok(std::fs::read(self.path().join(&der))?)
    }

    /// `openssl base64` of `<name>.csr.der`: wrapped at 64 characters, or one line (`-A`).
    fn openssl_b64(&self, name: &str, wrapped: bool) -> Result<Vec<u8>> {
        let (der, b64) = (format!("{name}.csr.der"), format!("{name}.csr.b64"));
        let mut args = vec!["base64", "-in", &der, "-out", &b64];
        if !wrapped {
            args.push("-A");
        }
        openssl(self.path(), &args)?.ok()?;
        Ok(std::fs::read(self.path().join(&b64))?)
    }

    /// CSR for `device_id` with a new key `<name>.key`, base64 wrapped at 64.
    fn device_csr(&self, name: &str, device_id: &str) -> Result<Vec<u8>> {
        self.csr(name, &format!("/CN={device_id}"), &[])?;
        self.openssl_b64(name, true)
    }

    /// Decodes a base64 certs-only body the way a client would (`openssl base64 -d -A |
    /// openssl pkcs7 -inform DER -print_certs`) into `<name>.pem`; returns the DER
    /// certificates. The body must be one base64 line (RFC 8951; erratum 5904).
    fn decode_certs_only(&self, name: &str, body: &[u8]) -> Result<Vec<Vec<u8>>> {
        ensure!(one_base64_line(body), "{name}: the body is not one base64 line: {:?}", String::from_utf8_lossy(body));
        let (b64, p7, pem) = (format!("{name}.p7.b64"), format!("{name}.p7"), format!("{name}.pem"));
        std::fs::write(self.path().join(&b64), body)?;
        openssl(self.path(), &["base64", "-d", "-A", "-in", &b64, "-out", &p7])?.ok()?;
        openssl(self.path(), &["pkcs7", "-inform", "DER", "-in", &p7, "-print_certs", "-out", &pem])?.ok()?;
        pem_certificates(&std::fs::read_to_string(self.path().join(&pem))?)
    }

    /// An enrollment answer: 200, certs-only, base64, exactly the issued certificate,
    /// written to `<name>.pem`. Returns its DER.
    fn issued(&self, name: &str, reply: &HttpReply) -> Result<Vec<u8>> {
        ensure!(reply.status == 200, "expected 200 for {name}:\n{}", reply.describe());
        ensure!(
            reply.header("content-type") == Some(CERTS_ONLY),
            "Content-Type should be {CERTS_ONLY:?}:\n{}",
            reply.describe()
        );
        ensure!(
            reply.header("content-transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("base64")),
            "Content-Transfer-Encoding: base64 expected:\n{}",
            reply.describe()
        );
        let certs = self.decode_certs_only(name, &reply.body)?;
        ensure!(certs.len() == 1, "the answer should hold only the issued certificate, got {}", certs.len());
        Ok(certs.into_iter().next().unwrap_or_default())
    }

    /// Enrolls `device_id` through `simpleenroll` with the station's certificate:
    /// key `<name>.key`, certificate `<name>.pem`.
    fn enroll(&self, name: &str, device_id: &str) -> Result<Vec<u8>> {
        let body = self.device_csr(name, device_id)?;
        let reply = self.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
        self.issued(name, &reply)
    }

    /// A renewal CSR for `device_id` (the subject the device certificate carries) with a
    /// new key `<new>.key`, sent with the certificate `<current>.pem`.
    fn renew(&self, current: &str, new: &str, device_id: &str) -> Result<HttpReply> {
        self.csr(new, &renewal_subject(device_id), &[])?;
        let body = self.openssl_b64(new, true)?;
        self.post("simplereenroll", Some(current), Some(PKCS10), &body, &[])
    }

    /// `openssl verify -x509_strict -purpose sslclient` of `<name>.pem` against the
    /// root with the Device Issuing CA as intermediate.
    fn verify(&self, name: &str) -> Result<()> {
        let pem = format!("{name}.pem");
        let out = openssl(
            self.path(),
            &[
                "verify",
                "-x509_strict",
                "-purpose",
                "sslclient",
                "-CAfile",
                "root.pem",
                "-untrusted",
                "device-ca.pem",
                &pem,
            ],
        )?;
        ensure!(out.success() && out.stdout.contains(&format!("{pem}: OK")), "openssl verify:\n{}", out.describe());
        Ok(())
    }

    /// The SubjectPublicKeyInfo PEM of `<name>.pem` (`openssl x509 -pubkey`).
    fn cert_pubkey(&self, name: &str) -> Result<String> {
        Ok(openssl(self.path(), &["x509", "-in", &format!("{name}.pem"), "-noout", "-pubkey"])?.ok()?.stdout)
    }

    /// The public key of `<name>.key` (`openssl pkey -pubout`).
    fn key_pubkey(&self, name: &str) -> Result<String> {
        Ok(openssl(self.path(), &["pkey", "-in", &format!("{name}.key"), "-pubout"])?.ok()?.stdout)
    }

    /// Lower-case hex SHA-256 of `<name>.pem`'s (first) certificate, as the store keeps it.
    fn fingerprint(&self, name: &str) -> Result<String> {
        let fp = e2e_tests::openssl_fingerprint(self.path(), &self.path().join(format!("{name}.pem")))?;
        Ok(fp.replace(':', "").to_ascii_lowercase())
    }

    /// The stored status of `<name>.pem`.
    fn cert_status(&self, name: &str) -> Result<String> {
        let fp = self.fingerprint(name)?;
        self.db.string(&format!("SELECT status FROM certificates WHERE fingerprint = '{fp}'"))
    }

    fn device_state(&self, id: &str) -> Result<String> {
        self.db.string(&format!("SELECT state FROM devices WHERE device_id = '{id}'"))
    }

    fn device_certificates(&self, id: &str) -> Result<i64> {
        self.db.i64(&format!("SELECT count(*) FROM certificates WHERE device_id = '{id}'"))
    }

    /// Marks `<name>.pem` revoked directly in the store (there is no revocation API yet).
    fn revoke_in_db(&self, name: &str) -> Result<()> {
        let fp = self.fingerprint(name)?;
        let n = self.db.execute(&format!(
            "UPDATE certificates SET status = 'revoked', revoked_at = {}, revocation_reason = 1 \
             WHERE fingerprint = '{fp}'",
            now_secs()
        ))?;
        ensure!(n == 1, "revoking {name}: {n} rows changed");
        Ok(())
    }

    fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            certificates: self.db.i64("SELECT count(*) FROM certificates")?,
            devices: self.db.strings("SELECT device_id || '=' || state FROM devices ORDER BY device_id")?,
            audit_seq: self.db.i64("SELECT COALESCE(MAX(seq), 0) FROM audit_log")?,
        })
    }

    /// The reply is the refusal `status` with a text/plain reason containing `reason`;
    /// since `before`, exactly one audit entry was written (`action`, outcome `denied:
    /// <the reason sent>`, details with the status), no certificate was stored and no
    /// device changed state. Returns the audited actor.
    fn expect_refused(
        &self,
        before: &Snapshot,
        reply: &HttpReply,
        status: u16,
        reason: &str,
        action: &str,
    ) -> Result<String> {
        ensure!(reply.status == status, "expected HTTP {status} ({reason:?}), got:\n{}", reply.describe());
        let content_type = reply.header("content-type").unwrap_or_default();
        ensure!(content_type.starts_with("text/plain"), "a refusal's reason is text/plain:\n{}", reply.describe());
        let text = reply.text();
        let text = text.trim_end();
        ensure!(text.contains(reason), "the reason should contain {reason:?}:\n{}", reply.describe());
        let after = self.snapshot()?;
        ensure!(
            after.certificates == before.certificates,
            "a refused request stored {} certificate(s)",
            after.certificates - before.certificates
        );
        ensure!(after.devices == before.devices, "device states changed: {:?} → {:?}", before.devices, after.devices);
        let rows = self.db.strings(&format!(
            "SELECT action || ' | ' || outcome || ' | ' || details || ' | ' || actor FROM audit_log \
             WHERE seq > {} ORDER BY seq",
            before.audit_seq
        ))?;
        let expected = format!("{action} | denied: {text} | {{\"status\":{status}}} | ");
        match rows.as_slice() {
            [one] if one.starts_with(&expected) => Ok(one[expected.len()..].to_string()),
            _ => bail!("the refusal should be audited once as {expected:?}…; new audit entries: {rows:#?}"),
        }
    }

    /// `audit verify` passes and counts every entry.
    fn finish(self) -> Result<()> {
        let entries = self.cli.audit_entries()?;
        let rows = self.db.i64("SELECT count(*) FROM audit_log")?;
        ensure!(entries == rows as u64, "`audit verify` reports {entries} entries, the table has {rows}");
        Ok(())
    }
}

fn renewal_subject(device_id: &str) -> String {
    format!("/CN={device_id}/serialNumber={device_id}/O=Device PKI")
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| anyhow!("certificate does not parse: {e}"))?;
    ensure!(rest.is_empty(), "trailing bytes after the certificate");
    Ok(cert)
}

fn common_name(der: &[u8]) -> Result<String> {
    let cert = parse(der)?;
    let cn = cert.subject().iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or_default();
    Ok(cn.to_string())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Waits (bounded) until `<name>.pem` has expired, by `openssl x509 -checkend 0`.
fn wait_until_expired(dir: &Path, name: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let pem = format!("{name}.pem");
    while openssl(dir, &["x509", "-in", &pem, "-noout", "-checkend", "0"])?.success() {
        ensure!(Instant::now() < deadline, "{pem} did not expire within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // notAfter has second resolution: let the server's clock pass it too.
    std::thread::sleep(Duration::from_millis(1100));
    Ok(())
}

// ---------------------------------------------------------------------------------
// 1. The full flow, on every store
// ---------------------------------------------------------------------------------

/// cacerts → openssl req → simpleenroll (station mTLS) → openssl pkcs7 → openssl verify
/// → simplereenroll with the device certificate → verify → the old certificate is
/// refused. Four enrollments cover the body encodings (wrapped or one line, with or
/// without `Content-Transfer-Encoding: base64`).
fn full_flow(backend: Backend, prefix: &str) -> Result<()> {
    let est = Est::start(backend, prefix, &[NO_RENEWAL_LIMIT])?;
    let d = est.path();

    // cacerts: identity root and Device Issuing CA, the root the same we fetched.
    let reply = est.get("cacerts")?;
    ensure!(
        reply.status == 200 && reply.header("content-type") == Some("application/pkcs7-mime"),
        "cacerts:\n{}",
        reply.describe()
    );
    let cas = est.decode_certs_only("cacerts", &reply.body)?;
    let mut names = cas.iter().map(|c| common_name(c)).collect::<Result<Vec<_>>>()?;
    names.sort();
    ensure!(names == ["Device Issuing CA", "Identity Root CA"], "cacerts holds {names:?}");
    let root = pem_certificates(&std::fs::read_to_string(d.join("root.pem"))?)?;
    ensure!(cas.contains(&root[0]), "cacerts does not hold the identity root served at /ca/identity-root.pem");
    for c in &cas {
        if common_name(c)? == "Device Issuing CA" {
            e2e_tests::write_pem(&d.join("device-ca.pem"), c)?;
        }
    }

    // Enroll four devices, one per body encoding.
    let variants = [("SN-1", true, true), ("SN-2", false, false), ("SN-3", true, false), ("SN-4", false, true)];
    let mut serials = Vec::new();
    for (i, (id, wrapped, cte)) in variants.into_iter().enumerate() {
        let name = format!("dev{}", i + 1);
        est.csr(&name, &format!("/CN={id}"), &[])?;
        let body = est.openssl_b64(&name, wrapped)?;
        let lines = String::from_utf8_lossy(&body).lines().filter(|l| !l.is_empty()).count();
        ensure!(if wrapped { lines > 1 } else { lines == 1 }, "{name}: body has {lines} lines");
        let headers: &[&str] = if cte { &["Content-Transfer-Encoding: base64"] } else { &[] };
        let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, headers)?;
        let what = format!("{id} (wrapped: {wrapped}, Content-Transfer-Encoding: {cte})");
        let der = est.issued(&name, &reply).with_context(|| what.clone())?;
        est.verify(&name).with_context(|| what.clone())?;
        ensure!(common_name(&der)? == id, "{what}: issued for {}", common_name(&der)?);
        ensure!(est.cert_pubkey(&name)? == est.key_pubkey(&name)?, "{what}: not the CSR's key");
        ensure!(est.device_state(id)? == "active", "{what}: device state {}", est.device_state(id)?);
        ensure!(est.cert_status(&name)? == "valid", "{what}: stored as {}", est.cert_status(&name)?);
        serials.push(parse(&der)?.raw_serial().to_vec());
    }

    // Renewal: the device authenticates with its certificate; same subject, new key.
    let old = std::fs::read_to_string(d.join("dev1.pem"))?;
    let old = pem_certificates(&old)?.remove(0);
    let reply = est.renew("dev1", "dev1r", "SN-1")?;
    let new = est.issued("dev1r", &reply).context("renewal")?;
    est.verify("dev1r")?;
    ensure!(est.cert_pubkey("dev1r")? == est.key_pubkey("dev1r")?, "the renewed certificate is not for the new key");
    let (old_c, new_c) = (parse(&old)?, parse(&new)?);
    ensure!(old_c.subject().as_raw() == new_c.subject().as_raw(), "the renewal changed the subject");
    ensure!(!serials.contains(&new_c.raw_serial().to_vec()), "the renewal reused a serial number");
    ensure!(est.cert_status("dev1")? == "superseded", "old certificate is {}", est.cert_status("dev1")?);
    ensure!(est.cert_status("dev1r")? == "valid", "new certificate is {}", est.cert_status("dev1r")?);
    ensure!(est.device_state("SN-1")? == "active");

    // The replaced certificate no longer authenticates.
    let before = est.snapshot()?;
    let reply = est.renew("dev1", "dev1x", "SN-1")?;
    let actor = est.expect_refused(&before, &reply, 403, "replaced by a renewal", "est.simplereenroll")?;
    ensure!(actor.starts_with("device:SN-1:") || actor == "unauthenticated", "audited actor {actor:?}");

    // The renewed one renews again (one line, with Content-Transfer-Encoding).
    est.csr("dev1rr", &renewal_subject("SN-1"), &[])?;
    let body = est.openssl_b64("dev1rr", false)?;
    let reply =
        est.post("simplereenroll", Some("dev1r"), Some(PKCS10), &body, &["Content-Transfer-Encoding: base64"])?;
    est.issued("dev1rr", &reply).context("second renewal")?;
    est.verify("dev1rr")?;
    ensure!(est.cert_status("dev1r")? == "superseded" && est.cert_status("dev1rr")? == "valid");
    ensure!(est.device_certificates("SN-1")? == 3);
    est.finish()
}

#[test]
fn est_flow_sqlite_software_keys() -> Result<()> {
    full_flow(Backend::Sqlite, "est-flow-sqlite")
}

#[test]
fn est_flow_postgres_software_keys() -> Result<()> {
    full_flow(Backend::Postgres, "est-flow-pg")
}

#[test]
fn est_flow_postgres_softhsm() -> Result<()> {
    full_flow(Backend::PostgresHsm, "est-flow-hsm")
}

// ---------------------------------------------------------------------------------
// 2. csrattrs, cacerts, labels
// ---------------------------------------------------------------------------------

#[test]
fn csrattrs_cacerts_and_labels() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-discovery", &[("CA_EST__LABELS__FACTORY", "device")])?;
    let d = est.path();

    for prefix in ["", "factory/"] {
        let reply = est.get(&format!("{prefix}csrattrs"))?;
        ensure!(
            reply.status == 200 && reply.header("content-type") == Some("application/csrattrs"),
            "{prefix}csrattrs:\n{}",
            reply.describe()
        );
        ensure!(one_base64_line(&reply.body), "{prefix}csrattrs is not one base64 line");
        std::fs::write(d.join("csrattrs.b64"), &reply.body)?;
        openssl(d, &["base64", "-d", "-A", "-in", "csrattrs.b64", "-out", "csrattrs.der"])?.ok()?;
        let parsed = openssl(d, &["asn1parse", "-inform", "DER", "-in", "csrattrs.der"])?;
        ensure!(parsed.success(), "openssl asn1parse of {prefix}csrattrs:\n{}", parsed.describe());
        let first = parsed.stdout.lines().next().unwrap_or_default();
        ensure!(first.contains("d=0") && first.contains("SEQUENCE"), "CsrAttrs is a SEQUENCE:\n{}", parsed.stdout);
        for what in ["id-ecPublicKey", "prime256v1", "ecdsa-with-SHA256"] {
            ensure!(parsed.stdout.contains(what), "{prefix}csrattrs should name {what}:\n{}", parsed.stdout);
        }
    }

    let mut chains = Vec::new();
    for prefix in ["", "factory/"] {
        let reply = est.get(&format!("{prefix}cacerts"))?;
        ensure!(reply.status == 200, "{prefix}cacerts:\n{}", reply.describe());
        let mut certs = est.decode_certs_only("cacerts", &reply.body)?;
        let mut names = certs.iter().map(|c| common_name(c)).collect::<Result<Vec<_>>>()?;
        names.sort();
        ensure!(names == ["Device Issuing CA", "Identity Root CA"], "{prefix}cacerts holds {names:?}");
        certs.sort();
        chains.push(certs);
    }
    ensure!(chains[0] == chains[1], "the label (profile 'device') should answer the same CAs");

    // Enrollment through the label.
    let body = est.device_csr("lab", "SN-1")?;
    let reply = est.post("factory/simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    est.issued("lab", &reply).context("labeled simpleenroll")?;
    est.verify("lab")?;
    let fp = est.fingerprint("lab")?;
    ensure!(est.db.string(&format!("SELECT profile FROM certificates WHERE fingerprint = '{fp}'"))? == "device");
    ensure!(est.device_state("SN-1")? == "active");

    // An unknown label is not the default profile.
    let before = est.snapshot()?;
    let reply = est.get("nope/cacerts")?;
    est.expect_refused(&before, &reply, 404, "unknown EST label 'nope'", "est.cacerts")?;
    est.finish()
}

#[test]
fn unknown_label_is_404_on_every_endpoint() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-label", &[NO_RENEWAL_LIMIT])?;
    est.enroll("dev1", "SN-1")?;
    let reason = "unknown EST label 'nope'";
    for (path, action) in [("nope/cacerts", "est.cacerts"), ("nope/csrattrs", "est.csrattrs")] {
        let before = est.snapshot()?;
        let reply = est.get(path)?;
        est.expect_refused(&before, &reply, 404, reason, action)?;
    }
    let body = est.device_csr("dev2", "SN-2")?;
    for (path, action) in [("nope/simpleenroll", "est.simpleenroll"), ("nope/serverkeygen", "est.serverkeygen")] {
        let before = est.snapshot()?;
        let reply = est.post(path, Some("station"), Some(PKCS10), &body, &[])?;
        est.expect_refused(&before, &reply, 404, reason, action)?;
    }
    est.csr("dev1r", &renewal_subject("SN-1"), &[])?;
    let body = est.openssl_b64("dev1r", true)?;
    let before = est.snapshot()?;
    let reply = est.post("nope/simplereenroll", Some("dev1"), Some(PKCS10), &body, &[])?;
    est.expect_refused(&before, &reply, 404, reason, "est.simplereenroll")?;
    ensure!(est.cert_status("dev1")? == "valid");
    est.finish()
}

// ---------------------------------------------------------------------------------
// 3. serverkeygen
// ---------------------------------------------------------------------------------

/// One part of a multipart body: lower-cased headers and content.
type Part = (Vec<(String, String)>, String);

/// The parts of a multipart body.
fn multipart(body: &str, boundary: &str) -> Result<Vec<Part>> {
    let delimiter = format!("--{boundary}");
    let mut sections = body.split(delimiter.as_str());
    let preamble = sections.next().unwrap_or_default();
    ensure!(preamble.trim().is_empty(), "text before the first boundary: {preamble:?}");
    let mut parts = Vec::new();
    let mut closed = false;
    for section in sections {
        if section.starts_with("--") {
            closed = true;
            break;
        }
        let section = section.strip_prefix("\r\n").ok_or_else(|| anyhow!("boundary line not ended by CRLF"))?;
        let (head, content) =
            section.split_once("\r\n\r\n").ok_or_else(|| anyhow!("part without a blank line after its headers"))?;
        let headers = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        parts.push((headers, content.to_string()));
    }
    ensure!(closed, "no closing boundary");
    Ok(parts)
}

fn part_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The 32-byte private scalar of a P-256 PKCS#8 (ECPrivateKey: INTEGER 1, OCTET STRING (32)).
fn ec_private_scalar(pkcs8: &[u8]) -> Result<Vec<u8>> {
    let marker = [0x02, 0x01, 0x01, 0x04, 0x20];
    let at = pkcs8
        .windows(marker.len())
        .position(|w| w == marker)
        .ok_or_else(|| anyhow!("no ECPrivateKey in the PKCS#8"))?;
    pkcs8.get(at + marker.len()..at + marker.len() + 32).map(<[u8]>::to_vec).ok_or_else(|| anyhow!("short key"))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[test]
fn serverkeygen_returns_the_key_once_and_keeps_no_copy() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-skg", &[])?;
    let d = est.path();
    let body = est.device_csr("skgcsr", "SN-1")?;
    let reply = est.post("serverkeygen", Some("station"), Some(PKCS10), &body, &[])?;
    ensure!(reply.status == 200, "serverkeygen:\n{}", reply.describe());
    let content_type = reply.header("content-type").unwrap_or_default().to_string();
    let boundary = content_type
        .strip_prefix("multipart/mixed;")
        .and_then(|p| p.split(';').find_map(|p| p.trim().strip_prefix("boundary=")))
        .map(|b| b.trim_matches('"').to_string())
        .ok_or_else(|| anyhow!("not multipart/mixed with a boundary: {content_type}"))?;
    let text = reply.text();
    let parts = multipart(&text, &boundary)?;
    ensure!(parts.len() == 2, "expected a key part and a certificate part, got {}", parts.len());
    let find = |ct: &str| {
        parts
            .iter()
            .find(|(h, _)| part_header(h, "content-type").is_some_and(|v| v.starts_with(ct)))
            .ok_or_else(|| anyhow!("no {ct} part"))
    };
    let (key_headers, key_b64) = find("application/pkcs8")?;
    let (cert_headers, cert_b64) = find("application/pkcs7-mime")?;
    ensure!(part_header(cert_headers, "content-type") == Some(CERTS_ONLY), "certificate part: {cert_headers:?}");
    for h in [key_headers, cert_headers] {
        ensure!(part_header(h, "content-transfer-encoding") == Some("base64"), "part headers {h:?}");
    }
    let compact = |s: &str| s.chars().filter(|c| !c.is_ascii_whitespace()).collect::<String>();
    let key_der = STANDARD.decode(compact(key_b64)).context("key part is not base64")?;
    let cert_p7 = STANDARD.decode(compact(cert_b64)).context("certificate part is not base64")?;

    // openssl takes the key; its public key is the certificate's.
    std::fs::write(d.join("skg-key.der"), &key_der)?;
    let pubkey = openssl(d, &["pkey", "-inform", "DER", "-in", "skg-key.der", "-pubout"])?;
    ensure!(pubkey.success(), "openssl pkey -inform DER rejects the key:\n{}", pubkey.describe());
    std::fs::write(d.join("skg.p7"), &cert_p7)?;
    openssl(d, &["pkcs7", "-inform", "DER", "-in", "skg.p7", "-print_certs", "-out", "skg.pem"])?.ok()?;
    let certs = pem_certificates(&std::fs::read_to_string(d.join("skg.pem"))?)?;
    ensure!(certs.len() == 1, "the certificate part should hold only the issued certificate");
    est.verify("skg")?;
    ensure!(common_name(&certs[0])? == "SN-1");
    ensure!(est.cert_pubkey("skg")? == pubkey.stdout, "the certificate is not for the returned key");
    ensure!(est.cert_pubkey("skg")? != est.key_pubkey("skgcsr")?, "the key was not generated by the server");
    ensure!(est.device_state("SN-1")? == "active");
    ensure!(est.cert_status("skg")? == "valid");
    let audited =
        est.db.i64("SELECT count(*) FROM audit_log WHERE action = 'est.serverkeygen' AND outcome = 'success'")?;
    ensure!(audited == 1, "serverkeygen audited {audited} times");

    // No copy of the key in the database (main file, WAL) or the server log.
    let scalar = ec_private_scalar(&key_der)?;
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("PKCS#8 DER".into(), key_der.clone()),
        ("PKCS#8 base64".into(), STANDARD.encode(&key_der).into_bytes()),
        ("private scalar".into(), scalar.clone()),
        ("private scalar, hex".into(), hex::encode(&scalar).into_bytes()),
        ("private scalar, base64".into(), STANDARD.encode(&scalar).into_bytes()),
    ];
    for (i, line) in key_b64.lines().map(str::trim).filter(|l| l.len() >= 32).enumerate() {
        needles.push((format!("base64 line {}", i + 1), line.as_bytes().to_vec()));
    }
    let mut files = Vec::new();
    files_under(&d.join("pki-data"), &mut files)?;
    files.push(est.svc.log.clone());
    ensure!(files.iter().any(|f| f.ends_with("pki.db")), "no database file found in {files:?}");
    let mut found = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        for (what, needle) in &needles {
            if contains(&bytes, needle) {
                found.push(format!("{what} in {}", file.display()));
            }
        }
    }
    ensure!(found.is_empty(), "the server-generated private key was kept:\n{}", found.join("\n"));
    est.finish()
}

// ---------------------------------------------------------------------------------
// 4. Bad input: status, reason, audited, nothing issued
// ---------------------------------------------------------------------------------

#[test]
fn missing_client_certificate_is_401() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-nocert", &[NO_RENEWAL_LIMIT])?;
    let body = est.device_csr("dev", "SN-1")?;
    for (path, action) in [
        ("simpleenroll", "est.simpleenroll"),
        ("serverkeygen", "est.serverkeygen"),
        ("simplereenroll", "est.simplereenroll"),
    ] {
        let before = est.snapshot()?;
        let reply = est.post(path, None, Some(PKCS10), &body, &[])?;
        let actor = est
            .expect_refused(&before, &reply, 401, "a TLS client certificate is required", action)
            .with_context(|| path.to_string())?;
        ensure!(actor == "unauthenticated", "{path}: audited actor {actor:?}");
    }
    // The same request with the station's certificate is fine.
    let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    est.issued("dev", &reply)?;
    est.finish()
}

/// A certificate from a CA of our own making, named like our Station CA: the
/// service must refuse it as a 403 with a reason, and audit the attempt.
#[test]
fn foreign_client_certificate_is_403() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-foreign", &[NO_RENEWAL_LIMIT])?;
    let d = est.path();
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
            "foreign-ca.key",
            "-subj",
            "/CN=Station CA/O=Device PKI",
            "-days",
            "30",
            "-out",
            "foreign-ca.pem",
        ],
    )?
    .ok()?;
    // X.509 v3 like any real CA's (a v1 certificate is refused earlier, at the TLS
    // handshake: webpki will not parse it even to check the handshake signature).
    std::fs::write(d.join("leaf.ext"), "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n")?;
    for (name, cn) in [("foreign-station", "station-1"), ("foreign-device", "SN-1")] {
        make_csr(d, name, P256, &format!("/CN={cn}"), &[])?;
        let (csr, pem) = (format!("{name}.csr"), format!("{name}.pem"));
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "foreign-ca.pem",
                "-CAkey",
                "foreign-ca.key",
                "-set_serial",
                "4242",
                "-days",
                "30",
                "-extfile",
                "leaf.ext",
                "-out",
                &pem,
            ],
        )?
        .ok()?;
    }

    let body = est.device_csr("dev", "SN-1")?;
    let before = est.snapshot()?;
    let reply = est.post("simpleenroll", Some("foreign-station"), Some(PKCS10), &body, &[])?;
    est.expect_refused(&before, &reply, 403, "not issued by the station CA", "est.simpleenroll")
        .context("simpleenroll with a foreign certificate")?;

    est.csr("ren", &renewal_subject("SN-1"), &[])?;
    let body = est.openssl_b64("ren", true)?;
    let before = est.snapshot()?;
    let reply = est.post("simplereenroll", Some("foreign-device"), Some(PKCS10), &body, &[])?;
    est.expect_refused(&before, &reply, 403, "not issued by the device CA", "est.simplereenroll")
        .context("simplereenroll with a foreign certificate")?;
    est.finish()
}

#[test]
fn station_certificate_cannot_renew_and_device_certificate_cannot_enroll() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-wrongcert", &[NO_RENEWAL_LIMIT])?;
    est.enroll("dev1", "SN-1")?;

    // A station certificate at simplereenroll.
    est.csr("ren", &renewal_subject("SN-1"), &[])?;
    let body = est.openssl_b64("ren", true)?;
    let before = est.snapshot()?;
    let reply = est.post("simplereenroll", Some("station"), Some(PKCS10), &body, &[])?;
    est.expect_refused(
        &before,
        &reply,
        403,
        "the client certificate was not issued by the device CA",
        "est.simplereenroll",
    )?;

    // A device certificate at simpleenroll and serverkeygen.
    let body = est.device_csr("dev2", "SN-2")?;
    for (path, action) in [("simpleenroll", "est.simpleenroll"), ("serverkeygen", "est.serverkeygen")] {
        let before = est.snapshot()?;
        let reply = est.post(path, Some("dev1"), Some(PKCS10), &body, &[])?;
        est.expect_refused(&before, &reply, 403, "the client certificate was not issued by the station CA", action)
            .with_context(|| path.to_string())?;
    }
    ensure!(est.cert_status("dev1")? == "valid" && est.device_state("SN-2")? == "expected");
    est.finish()
}

#[test]
fn expired_station_certificate_is_403() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-expired", &[])?;
    let d = est.path();
    make_csr(d, "old-station", P256, "/CN=station-old", &[])?;
    let short = est.cli.clone().env("CA_PROFILES__STATION__VALIDITY_DAYS", "0");
    short.run_ok(&["stations", "add", "--csr", "old-station.csr", "--out", "old-station.pem"])?;
    wait_until_expired(d, "old-station", Duration::from_secs(10))?;

    let body = est.device_csr("dev", "SN-1")?;
    let before = est.snapshot()?;
    let reply = est.post("simpleenroll", Some("old-station"), Some(PKCS10), &body, &[])?;
    est.expect_refused(&before, &reply, 403, "the client certificate has expired", "est.simpleenroll")?;
    // The device itself was enrollable.
    let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    est.issued("dev", &reply)?;
    est.finish()
}

#[test]
fn revoked_station_certificate_is_403_at_once() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-revstation", &[])?;
    est.enroll("dev1", "SN-1")?;
    est.revoke_in_db("station")?;
    // No restart: the next request is refused.
    let body = est.device_csr("dev2", "SN-2")?;
    for (path, action) in [("simpleenroll", "est.simpleenroll"), ("serverkeygen", "est.serverkeygen")] {
        let before = est.snapshot()?;
        let reply = est.post(path, Some("station"), Some(PKCS10), &body, &[])?;
        est.expect_refused(&before, &reply, 403, "the client certificate is revoked", action)
            .with_context(|| path.to_string())?;
    }
    ensure!(est.device_state("SN-2")? == "expected");
    est.finish()
}

#[test]
fn revoked_device_certificate_cannot_renew() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-revdevice", &[NO_RENEWAL_LIMIT])?;
    est.enroll("dev1", "SN-1")?;
    est.revoke_in_db("dev1")?;
    let before = est.snapshot()?;
    let reply = est.renew("dev1", "dev1r", "SN-1")?;
    est.expect_refused(&before, &reply, 403, "the client certificate is revoked", "est.simplereenroll")?;
    ensure!(est.cert_status("dev1")? == "revoked", "the revoked certificate is now {}", est.cert_status("dev1")?);
    ensure!(est.device_certificates("SN-1")? == 1);
    est.finish()
}

#[test]
fn disabled_station_is_403() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-disabled", &[])?;
    est.enroll("dev1", "SN-1")?;
    let off = if est.db.is_postgres() { "false" } else { "0" };
    let n = est.db.execute(&format!("UPDATE stations SET enabled = {off} WHERE name = 'station-1'"))?;
    ensure!(n == 1);
    let list = est.cli.run_ok(&["stations", "list"])?;
    ensure!(list.stdout.contains("disabled"), "stations list:\n{}", list.stdout);
    let body = est.device_csr("dev2", "SN-2")?;
    for (path, action) in [("simpleenroll", "est.simpleenroll"), ("serverkeygen", "est.serverkeygen")] {
        let before = est.snapshot()?;
        let reply = est.post(path, Some("station"), Some(PKCS10), &body, &[])?;
        let actor = est
            .expect_refused(&before, &reply, 403, "station 'station-1' is disabled", action)
            .with_context(|| path.to_string())?;
        ensure!(actor.starts_with("station:station-1:"), "audited actor {actor:?}");
    }
    est.finish()
}

/// One enrollment request for SN-1 from the station with `body` must be refused.
fn refused_enrollment(prefix: &str, body: &[u8], content_type: Option<&str>, status: u16, reason: &str) -> Result<Est> {
    let est = Est::start(Backend::Sqlite, prefix, &[])?;
    let before = est.snapshot()?;
    let reply = est.post("simpleenroll", Some("station"), content_type, body, &[])?;
    est.expect_refused(&before, &reply, status, reason, "est.simpleenroll")?;
    ensure!(est.device_state("SN-1")? == "expected");
    Ok(est)
}

#[test]
fn garbage_body_is_400() -> Result<()> {
    let body = STANDARD.encode(b"this is not a PKCS#10 certification request at all");
    refused_enrollment("est-garbage", body.as_bytes(), Some(PKCS10), 400, "not a valid PEM or DER PKCS#10 CSR")?
        .finish()
}

#[test]
fn non_base64_body_is_400() -> Result<()> {
    refused_enrollment("est-nonb64", b"%%% not base64 %%%\n", Some(PKCS10), 400, "request body is not base64")?.finish()
}

#[test]
fn empty_body_is_400() -> Result<()> {
    let est = refused_enrollment("est-empty", b"", Some(PKCS10), 400, "request body is empty")?;
    let before = est.snapshot()?;
    let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), b"\r\n \t\n", &[])?;
    est.expect_refused(&before, &reply, 400, "request body is empty", "est.simpleenroll").context("whitespace only")?;
    est.finish()
}

/// The limit is 64 KiB of raw body: a CSR padded with line breaks to exactly 65536
/// bytes is accepted, one byte more is 413.
#[test]
fn oversized_body_is_413() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-big", &[])?;
    let pad = |mut b: Vec<u8>, len: usize| {
        b.resize(len, b'\n');
        b
    };
    let body = pad(est.device_csr("dev1", "SN-1")?, 64 * 1024 + 1);
    let before = est.snapshot()?;
    let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    est.expect_refused(&before, &reply, 413, "request body is larger than 65536 bytes", "est.simpleenroll")?;
    let body = pad(est.device_csr("dev2", "SN-2")?, 64 * 1024);
    let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    est.issued("dev2", &reply).context("a body of exactly 64 KiB")?;
    est.finish()
}

/// Far over the limit (beyond what the service reads into memory) is a 413 as well,
/// and audited like every other refusal.
#[test]
fn huge_body_is_413_and_audited() -> Result<()> {
    let body = vec![b'A'; 1024 * 1024];
    refused_enrollment("est-huge", &body, Some(PKCS10), 413, "larger than 65536 bytes")?.finish()
}

#[test]
fn wrong_content_type_is_415() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-ctype", &[])?;
    let body = est.device_csr("dev", "SN-1")?;
    for (ct, reason) in [
        (Some("text/plain"), "Content-Type is 'text/plain', expected 'application/pkcs10'"),
        (Some("application/x-www-form-urlencoded"), "expected 'application/pkcs10'"),
        (None, "Content-Type is '(none)'"),
    ] {
        let before = est.snapshot()?;
        let reply = est.post("simpleenroll", Some("station"), ct, &body, &[])?;
        est.expect_refused(&before, &reply, 415, reason, "est.simpleenroll").with_context(|| format!("{ct:?}"))?;
    }
    // Parameters and case do not matter.
    let reply = est.post("simpleenroll", Some("station"), Some("Application/PKCS10; charset=us-ascii"), &body, &[])?;
    est.issued("dev", &reply)?;
    est.finish()
}

#[test]
fn csr_with_broken_signature_is_400() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-badsig", &[])?;
    let mut der = est.csr("dev", "/CN=SN-1", &[])?;
    // The last byte is the end of the signature's s: still DER, no longer a signature.
    if let Some(last) = der.last_mut() {
        *last ^= 0x01;
    }
    let before = est.snapshot()?;
    let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), STANDARD.encode(&der).as_bytes(), &[])?;
    est.expect_refused(&before, &reply, 400, "CSR signature does not verify", "est.simpleenroll")?;
    est.finish()
}

#[test]
fn csr_asking_for_ca_true_is_400() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-catrue", &[])?;
    est.csr("dev", "/CN=SN-1", &["-addext", "basicConstraints=critical,CA:TRUE"])?;
    let body = est.openssl_b64("dev", true)?;
    let before = est.snapshot()?;
    let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    est.expect_refused(&before, &reply, 400, "asks for CA:TRUE", "est.simpleenroll")?;
    est.finish()
}

#[test]
fn csr_asking_for_code_signing_is_400() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-eku", &[])?;
    est.csr("dev", "/CN=SN-1", &["-addext", "extendedKeyUsage=codeSigning"])?;
    let body = est.openssl_b64("dev", true)?;
    let before = est.snapshot()?;
    let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    est.expect_refused(&before, &reply, 400, "extended key usage 1.3.6.1.5.5.7.3.3", "est.simpleenroll")?;
    est.finish()
}

#[test]
fn renewal_for_another_identity_is_400() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-otherid", &[NO_RENEWAL_LIMIT])?;
    est.enroll("dev1", "SN-1")?;
    est.enroll("dev2", "SN-2")?;
    let before = est.snapshot()?;
    // SN-1's certificate asking for SN-2's subject.
    let reply = est.renew("dev1", "steal", "SN-2")?;
    est.expect_refused(
        &before,
        &reply,
        400,
        "CSR subject differs from the current certificate's",
        "est.simplereenroll",
    )?;
    ensure!(est.cert_status("dev1")? == "valid" && est.cert_status("dev2")? == "valid");
    ensure!(est.device_certificates("SN-1")? == 1 && est.device_certificates("SN-2")? == 1);
    est.finish()
}

#[test]
fn same_key_renewal_is_400() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-samekey", &[NO_RENEWAL_LIMIT])?;
    let d = est.path();
    est.enroll("dev1", "SN-1")?;
    let subject = renewal_subject("SN-1");
    openssl(d, &["req", "-new", "-key", "dev1.key", "-subj", &subject, "-outform", "DER", "-out", "same.csr.der"])?
        .ok()?;
    let body = est.openssl_b64("same", true)?;
    let before = est.snapshot()?;
    let reply = est.post("simplereenroll", Some("dev1"), Some(PKCS10), &body, &[])?;
    est.expect_refused(&before, &reply, 400, "renewal must use a new key pair", "est.simplereenroll")?;
    ensure!(est.cert_status("dev1")? == "valid");
    est.finish()
}

#[test]
fn station_outside_its_scope_is_403() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-scope", &[("CA_MODELS__GATEWAY__OID", "1.3.6.1.4.1.59999.9.9")])?;
    let d = est.path();
    std::fs::write(d.join("gw.csv"), "GW-1,gateway,,\nGW-2,gateway,,\n")?;
    est.cli.run_ok(&["devices", "import", "--batch", "gw", "gw.csv"])?;
    make_csr(d, "station2", P256, "/CN=station-2", &[])?;
    est.cli.run_ok(&["stations", "add", "--csr", "station2.csr", "--models", "gateway", "--out", "station2.pem"])?;
    make_csr(d, "station3", P256, "/CN=station-3", &[])?;
    est.cli.run_ok(&["stations", "add", "--csr", "station3.csr", "--batches", "other", "--out", "station3.pem"])?;
    let list = est.cli.run_ok(&["stations", "list"])?;
    ensure!(
        list.stdout.lines().any(|l| l.contains("station-2") && l.contains("models: gateway")),
        "stations list:\n{}",
        list.stdout
    );

    let body = est.device_csr("dev1", "SN-1")?;
    for (station, reason) in [
        ("station2", "station 'station-2' may not enroll model 'generic' of batch 'b1'"),
        ("station3", "station 'station-3' may not enroll model 'generic' of batch 'b1'"),
    ] {
        let before = est.snapshot()?;
        let reply = est.post("simpleenroll", Some(station), Some(PKCS10), &body, &[])?;
        est.expect_refused(&before, &reply, 403, reason, "est.simpleenroll").with_context(|| station.to_string())?;
    }
    let body = est.device_csr("gw1", "GW-1")?;
    let before = est.snapshot()?;
    let reply = est.post("simpleenroll", Some("station3"), Some(PKCS10), &body, &[])?;
    est.expect_refused(
        &before,
        &reply,
        403,
        "station 'station-3' may not enroll model 'gateway' of batch 'gw'",
        "est.simpleenroll",
    )?;

    // Within its scope the station enrolls, and the certificate names the model.
    let reply = est.post("simpleenroll", Some("station2"), Some(PKCS10), &body, &[])?;
    let der = est.issued("gw1", &reply)?;
    est.verify("gw1")?;
    let oid = der::asn1::ObjectIdentifier::new("1.3.6.1.4.1.59999.9.9").map_err(|e| anyhow!("{e}"))?;
    ensure!(contains(&der, oid.as_bytes()), "the gateway model OID is not in the certificate");
    ensure!(est.device_state("GW-1")? == "active" && est.device_state("SN-1")? == "expected");
    est.finish()
}

#[test]
fn unknown_device_is_403() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-unknown", &[])?;
    let body = est.device_csr("dev", "SN-999")?;
    let before = est.snapshot()?;
    let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    est.expect_refused(&before, &reply, 403, "unknown device id 'SN-999'", "est.simpleenroll")?;
    // No device id at all.
    est.csr("nocn", "/O=Device PKI", &[])?;
    let body = est.openssl_b64("nocn", true)?;
    let before = est.snapshot()?;
    let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    est.expect_refused(&before, &reply, 400, "the CSR subject has no CN", "est.simpleenroll")?;
    ensure!(est.db.i64("SELECT count(*) FROM devices WHERE device_id = 'SN-999'")? == 0);
    est.finish()
}

#[test]
fn second_enrollment_is_403_unless_the_batch_allows_reprovisioning() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-again", &[])?;
    let d = est.path();
    est.enroll("dev1", "SN-1")?;
    let body = est.device_csr("dev1b", "SN-1")?;
    let before = est.snapshot()?;
    let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    est.expect_refused(&before, &reply, 403, "device 'SN-1' is already enrolled", "est.simpleenroll")?;
    ensure!(est.cert_status("dev1")? == "valid" && est.device_certificates("SN-1")? == 1);

    std::fs::write(d.join("refurb.csv"), "RP-1\n")?;
    est.cli.run_ok(&[
        "devices",
        "import",
        "--batch",
        "refurb",
        "--model",
        "generic",
        "--allow-reprovision",
        "refurb.csv",
    ])?;
    est.enroll("rp1", "RP-1")?;
    est.enroll("rp1b", "RP-1").context("re-provisioning an active device of a re-provisioning batch")?;
    est.verify("rp1b")?;
    ensure!(est.device_state("RP-1")? == "active" && est.device_certificates("RP-1")? == 2);
    est.finish()
}

#[test]
fn renewal_rate_limit_is_429_with_retry_after() -> Result<()> {
    // Default configuration: one certificate per device per hour.
    let est = Est::start(Backend::Sqlite, "est-renewlimit", &[])?;
    est.enroll("dev1", "SN-1")?;
    let before = est.snapshot()?;
    let reply = est.renew("dev1", "dev1r", "SN-1")?;
    est.expect_refused(
        &before,
        &reply,
        429,
        "device 'SN-1' was issued a certificate less than 3600 s ago",
        "est.simplereenroll",
    )?;
    let retry: u64 = reply
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("429 without a numeric Retry-After:\n{}", reply.describe()))?;
    ensure!((3000..=3600).contains(&retry), "Retry-After {retry} s, expected just under 3600");
    ensure!(est.cert_status("dev1")? == "valid");
    est.finish()
}

#[test]
fn station_rate_limit_is_429_with_retry_after() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-stationlimit", &[("CA_EST__STATION_ENROLLMENTS_PER_MINUTE", "2")])?;
    // Fixed one-minute windows: keep the three requests inside one.
    let second = now_secs() % 60;
    if second >= 55 {
        std::thread::sleep(Duration::from_secs(61 - second));
    }
    est.enroll("dev1", "SN-1")?;
    est.enroll("dev2", "SN-2")?;
    let body = est.device_csr("dev3", "SN-3")?;
    let before = est.snapshot()?;
    let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    est.expect_refused(&before, &reply, 429, "station rate limit of 2/minute reached", "est.simpleenroll")?;
    let retry: u64 = reply
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("429 without a numeric Retry-After:\n{}", reply.describe()))?;
    ensure!((1..=60).contains(&retry), "Retry-After {retry} s");
    est.finish()
}

/// Simultaneous requests for one device: exactly one certificate, the others refused
/// (403 when they see the new state, 409 when it changed between check and store).
fn concurrent_requests_issue_once(backend: Backend, prefix: &str) -> Result<()> {
    const N: usize = 6;
    let est = Est::start(backend, prefix, &[NO_RENEWAL_LIMIT])?;
    let audit_before = est.snapshot()?.audit_seq;

    let bodies = (0..N).map(|i| est.device_csr(&format!("race{i}"), "SN-1")).collect::<Result<Vec<_>>>()?;
    let replies = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|b| s.spawn(|| est.post("simpleenroll", Some("station"), Some(PKCS10), b, &[])))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a client thread panicked"))?)
            .collect::<Result<Vec<_>>>()
    })?;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    eprintln!("{prefix}: simultaneous enrollments answered {statuses:?}");
    let winners: Vec<usize> = (0..N).filter(|i| replies[*i].status == 200).collect();
    ensure!(winners.len() == 1, "{} of {N} simultaneous enrollments succeeded", winners.len());
    for r in replies.iter().filter(|r| r.status != 200) {
        let ok = (r.status == 403 && r.text().contains("already enrolled"))
            || (r.status == 409 && r.text().contains("no longer in a state that may enroll"));
        ensure!(ok, "a losing enrollment should be 403 or 409 with a reason:\n{}", r.describe());
    }
    let winner = format!("race{}", winners[0]);
    est.issued(&winner, &replies[winners[0]])?;
    ensure!(est.device_certificates("SN-1")? == 1 && est.device_state("SN-1")? == "active");

    let bodies = (0..N)
        .map(|i| {
            let name = format!("renew{i}");
            est.csr(&name, &renewal_subject("SN-1"), &[])?;
            est.openssl_b64(&name, true)
        })
        .collect::<Result<Vec<_>>>()?;
    let replies = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|b| s.spawn(|| est.post("simplereenroll", Some(winner.as_str()), Some(PKCS10), b, &[])))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a client thread panicked"))?)
            .collect::<Result<Vec<_>>>()
    })?;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    eprintln!("{prefix}: simultaneous renewals answered {statuses:?}");
    let renewed = replies.iter().filter(|r| r.status == 200).count();
    ensure!(renewed == 1, "{renewed} of {N} simultaneous renewals with one certificate succeeded");
    for r in replies.iter().filter(|r| r.status != 200) {
        let ok = (r.status == 403 && r.text().contains("replaced by a renewal"))
            || (r.status == 409 && r.text().contains("no longer valid"));
        ensure!(ok, "a losing renewal should be 403 or 409 with a reason:\n{}", r.describe());
    }
    ensure!(est.device_certificates("SN-1")? == 2, "SN-1 has {} certificates", est.device_certificates("SN-1")?);
    let valid = est.db.i64("SELECT count(*) FROM certificates WHERE device_id = 'SN-1' AND status = 'valid'")?;
    ensure!(valid == 1, "SN-1 has {valid} valid certificates");
    let denied = est.db.i64(&format!(
        "SELECT count(*) FROM audit_log WHERE seq > {audit_before} AND outcome LIKE 'denied: %' \
         AND action IN ('est.simpleenroll', 'est.simplereenroll')"
    ))?;
    ensure!(denied == 2 * (N as i64 - 1), "{denied} refusals audited, expected {}", 2 * (N - 1));
    est.finish()
}

#[test]
fn concurrent_requests_issue_once_sqlite() -> Result<()> {
    concurrent_requests_issue_once(Backend::Sqlite, "est-race-sqlite")
}

#[test]
fn concurrent_requests_issue_once_postgres() -> Result<()> {
    concurrent_requests_issue_once(Backend::Postgres, "est-race-pg")
}

/// Whether an EST body is base64 on one line: no line break anywhere (RFC 8951).
fn one_base64_line(body: &[u8]) -> bool {
    !body.is_empty() && body.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

// ---------------------------------------------------------------------------------
// Safe retries (invariant 7) and the approval gate on every path
// ---------------------------------------------------------------------------------

/// A station that lost the answer sends the same CSR again: it gets the certificate
/// already issued (same serial, nothing re-signed, audited as a re-delivery); a new
/// key for the same, now active, device is still refused.
fn repeated_enrollment_gets_the_same_certificate(backend: Backend, prefix: &str) -> Result<()> {
    let est = Est::start(backend, prefix, &[])?;
    let body = est.device_csr("first", "SN-1")?;
    let first = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    let issued = est.issued("first", &first)?;
    let again = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    let redelivered = est.issued("again", &again)?;
    ensure!(redelivered == issued, "the repeated request got another certificate, not the one issued for it");
    ensure!(est.device_certificates("SN-1")? == 1, "a repeated request must not be signed again");
    let audited = est.db.i64("SELECT count(*) FROM audit_log WHERE action = 'certificate.redeliver'")?;
    ensure!(audited == 1, "the re-delivery was audited {audited} times");

    let before = est.snapshot()?;
    let other = est.device_csr("other", "SN-1")?;
    let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), &other, &[])?;
    est.expect_refused(&before, &reply, 403, "already enrolled", "est.simpleenroll")?;
    est.finish()
}

#[test]
fn repeated_enrollment_gets_the_same_certificate_sqlite() -> Result<()> {
    repeated_enrollment_gets_the_same_certificate(Backend::Sqlite, "est-retry-sqlite")
}

#[test]
fn repeated_enrollment_gets_the_same_certificate_postgres() -> Result<()> {
    repeated_enrollment_gets_the_same_certificate(Backend::Postgres, "est-retry-pg")
}

/// The service dies after the certificate is stored and before the answer leaves
/// (a test-only fault point; `kill -9` at that moment): after a restart, the station's
/// retry gets that very certificate, and the device is not stranded. With manual
/// approval, the approved request is marked issued in the storing transaction, so the
/// crash leaves no request approved-but-not-issued behind.
fn crash_between_storing_and_answering(backend: Backend, prefix: &str, manual: bool) -> Result<()> {
    let env: &[(&str, &str)] = if manual { &[("CA_PROFILES__DEVICE__APPROVAL", "manual")] } else { &[] };
    let mut est = Est::start(backend, prefix, env)?;
    let body = est.device_csr("lost", "SN-2")?;
    if manual {
        let reply = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
        ensure!(reply.status == 202, "manual approval answers 202 first:\n{}", reply.describe());
        let id = est.db.string("SELECT id FROM enrollment_requests WHERE device_id = 'SN-2'")?;
        est.cli.run_ok(&["est", "approve", &id])?;
    }

    // Restart with the fault point armed, and lose the answer.
    let faulty = est.cli.clone().env("PKI_FAULT_POINT", "est-after-store");
    est.svc.restart(&faulty)?;
    let lost = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    ensure!(lost.status == 0, "the answer should have been lost in the crash:\n{}", lost.describe());
    let exit = est.svc.wait_exit(Duration::from_secs(10))?;
    ensure!(!exit.success(), "the service should have died at the fault point ({exit})");
    ensure!(est.device_certificates("SN-2")? == 1, "the certificate was stored before the crash");
    ensure!(est.device_state("SN-2")? == "active");
    if manual {
        let status = est.db.string("SELECT status FROM enrollment_requests WHERE device_id = 'SN-2'")?;
        ensure!(status == "issued", "the approved request is '{status}' after the crash, not 'issued'");
    }

    // Restart; the retry gets the stored certificate.
    let cli = est.cli.clone();
    est.svc.restart(&cli)?;
    let retry = est.post("simpleenroll", Some("station"), Some(PKCS10), &body, &[])?;
    est.issued("retry", &retry)?;
    let stored = est.db.string("SELECT fingerprint FROM certificates WHERE device_id = 'SN-2'")?;
    ensure!(est.fingerprint("retry")? == stored, "the retry did not get the stored certificate");
    ensure!(est.device_certificates("SN-2")? == 1, "the retry was signed again");
    est.verify("retry")?;
    est.finish()
}

#[test]
fn crash_after_storing_the_retry_gets_the_certificate_sqlite() -> Result<()> {
    crash_between_storing_and_answering(Backend::Sqlite, "est-crash-sqlite", false)
}

#[test]
fn crash_after_storing_the_retry_gets_the_certificate_postgres() -> Result<()> {
    crash_between_storing_and_answering(Backend::Postgres, "est-crash-pg", false)
}

#[test]
fn crash_after_storing_an_approved_request_still_yields_it_sqlite() -> Result<()> {
    crash_between_storing_and_answering(Backend::Sqlite, "est-crash-approved-sqlite", true)
}

#[test]
fn crash_after_storing_an_approved_request_still_yields_it_postgres() -> Result<()> {
    crash_between_storing_and_answering(Backend::Postgres, "est-crash-approved-pg", true)
}

/// serverkeygen goes through the same approval gate as simpleenroll: on a manual
/// profile it answers 202 and issues nothing (no certificate, no key) until approved.
#[test]
fn serverkeygen_waits_for_manual_approval() -> Result<()> {
    let est = Est::start(Backend::Sqlite, "est-skg-manual", &[("CA_PROFILES__DEVICE__APPROVAL", "manual")])?;
    let body = est.device_csr("skg", "SN-3")?;
    let before = est.snapshot()?;
    let reply = est.post("serverkeygen", Some("station"), Some(PKCS10), &body, &[])?;
    ensure!(reply.status == 202, "serverkeygen on a manual profile must wait for approval:\n{}", reply.describe());
    ensure!(reply.text().contains("awaits an operator's approval"), "{}", reply.describe());
    ensure!(est.snapshot()?.certificates == before.certificates, "a certificate was issued without approval");
    ensure!(est.device_state("SN-3")? == "expected");

    let id = est.db.string("SELECT id FROM enrollment_requests WHERE device_id = 'SN-3'")?;
    est.cli.run_ok(&["est", "approve", &id])?;
    let reply = est.post("serverkeygen", Some("station"), Some(PKCS10), &body, &[])?;
    ensure!(reply.status == 200, "the approved request is issued:\n{}", reply.describe());
    ensure!(
        reply.header("content-type").is_some_and(|v| v.starts_with("multipart/mixed")),
        "serverkeygen answers multipart:\n{}",
        reply.describe()
    );
    ensure!(est.device_certificates("SN-3")? == 1 && est.device_state("SN-3")? == "active");
    let status = est.db.string("SELECT status FROM enrollment_requests WHERE device_id = 'SN-3'")?;
    ensure!(status == "issued", "the request is '{status}'");
    est.finish()
}

#[path = "est/rollover.rs"]
mod rollover;
#[path = "est/rotation.rs"]
mod rotation;
