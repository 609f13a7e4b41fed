//! The admin API over HTTPS with curl: tokens made with the CLI, role checks, every
//! refusal answered with a JSON reason and audited, the audit chain intact afterwards.

use std::path::Path;

use anyhow::{Context, Result};
use e2e_tests::{curl, curl_reply, make_csr, openssl, path_str, sqlite_i64, Cli, HttpReply, Service, TestDb, P256};

struct Api<'a> {
    dir: &'a Path,
    port: u16,
}

impl Api<'_> {
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/api/v1{path}", self.port)
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Result<HttpReply> {
        let url = self.url(path);
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut args = vec!["--cacert", "root.pem", "-X", method];
        if let Some(a) = &auth {
            args.extend_from_slice(&["-H", a]);
        }
        if let Some(b) = body {
            args.extend_from_slice(&["-H", "Content-Type: application/json", "--data-raw", b]);
        }
        args.push(&url);
        curl_reply(self.dir, &args)
    }
}

fn json(reply: &HttpReply) -> Result<serde_json::Value> {
    serde_json::from_slice(&reply.body).with_context(|| reply.describe())
}

const DENIED: &str = "SELECT COUNT(*) FROM audit_log WHERE outcome LIKE 'denied:%'";

fn expect(reply: &HttpReply, status: u16, reason: &str) -> Result<()> {
    assert_eq!(reply.status, status, "{}", reply.describe());
    let body = json(reply)?;
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains(reason), "expected '{reason}': {}", reply.describe());
    Ok(())
}

#[test]
fn admin_api_on_sqlite() -> Result<()> {
    let tmp = e2e_tests::workdir("admin-api")?;
    let d = tmp.path();
    admin_api_flow(Cli::evaluation(d), &|| sqlite_i64(d, DENIED))
}

#[test]
fn admin_api_on_postgres() -> Result<()> {
    let db = TestDb::create()?;
    let tmp = e2e_tests::workdir("admin-api-pg")?;
    admin_api_flow(Cli::evaluation(tmp.path()).env("CA_STORAGE__URL", &db.url), &|| db.query_i64(DENIED))
}

fn admin_api_flow(cli: Cli, denied: &dyn Fn() -> Result<i64>) -> Result<()> {
    let d = cli.workdir.clone();
    let d = d.as_path();
    cli.run_ok(&["init"])?;
    let csr = make_csr(d, "SN-A1", P256, "/CN=SN-A1", &[])?;
    cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", "SN-A1-chain.pem"])?;
    let serial = openssl(d, &["x509", "-in", "SN-A1-chain.pem", "-noout", "-serial"])?.ok()?;
    let serial = serial.stdout.trim().trim_start_matches("serial=").to_ascii_lowercase();

    let create = |name: &str, role: &str| -> Result<String> {
        let out = cli.run_ok(&["tokens", "create", "--name", name, "--role", role])?;
        assert!(out.stderr.contains("only once"), "{}", out.describe());
        Ok(out.stdout.trim().to_string())
    };
    let operator = create("ops", "operator")?;
    let auditor = create("audit", "auditor")?;
    let doomed = create("old", "admin")?;
    assert!(operator.starts_with("pki_") && operator.contains('.'), "{operator}");
    let listed = cli.run_ok(&["tokens", "list"])?.stdout;
    assert!(listed.contains("operator") && listed.contains("auditor"), "{listed}");
    let secret = operator.split_once('.').map(|(_, s)| s).unwrap_or_default();
    assert!(!listed.contains(secret), "the secret is never listed");
    let bad = cli.run(&["tokens", "create", "--name", "x", "--role", "superuser"])?;
    assert!(!bad.success() && bad.stderr.contains("unknown role"), "{}", bad.describe());

    let svc = Service::start(&cli)?;
    curl(d, &["-f", "-o", "root.pem", &format!("{}/ca/identity-root.pem", svc.base_url())])?.ok()?;
    let api = Api { dir: d, port: svc.https.port() };
    let cert_path = format!("/certificates/device/{serial}");
    let revoke_path = format!("{cert_path}/revoke");
    let key_compromise = r#"{"reason":"keyCompromise"}"#;

    // OpenAPI document, for anyone.
    let doc = api.call("GET", "/openapi.json", None, None)?;
    assert_eq!(doc.status, 200, "{}", doc.describe());
    let doc = json(&doc)?;
    let paths = doc["paths"].as_object().context("paths")?;
    for p in ["/certificates/{issuer}/{serial}/revoke", "/certificates/{issuer}/{serial}", "/audit"] {
        assert!(paths.contains_key(p), "{p} in {doc}");
    }

    let mut refusals = denied()?;
    let mut refused = |reply: HttpReply, status: u16, reason: &str| -> Result<()> {
        expect(&reply, status, reason)?;
        refusals += 1;
        assert_eq!(denied()?, refusals, "refusal audited: {}", reply.describe());
        Ok(())
    };

    // Authentication and authorization refusals.
    refused(api.call("POST", &revoke_path, None, Some(key_compromise))?, 401, "missing credential")?;
    let (id, _) = operator.split_once('.').context("token shape")?;
    let wrong = format!("{id}.00000000000000000000000000000000");
    refused(api.call("POST", &revoke_path, Some(&wrong), Some(key_compromise))?, 401, "invalid or revoked")?;
    refused(
        api.call("POST", &revoke_path, Some("pki_ffffffffffffffff.abc"), Some(key_compromise))?,
        401,
        "invalid or revoked",
    )?;
    refused(api.call("POST", &revoke_path, Some(&auditor), Some(key_compromise))?, 403, "role auditor may not")?;
    // Bad input.
    refused(api.call("POST", &revoke_path, Some(&operator), Some(r#"{"reason":"bogus"}"#))?, 400, "unknown")?;
    refused(api.call("POST", &revoke_path, Some(&operator), Some("{not json"))?, 400, "malformed JSON")?;
    refused(
        api.call("POST", "/certificates/device/0badc0de/revoke", Some(&operator), Some(key_compromise))?,
        404,
        "not found",
    )?;

    // A relying party holds a pre-signed "good" answer (no nonce) for the certificate.
    curl(d, &["-f", "-o", "device-ca.pem", &format!("{}/ca/device.pem", svc.base_url())])?.ok()?;
    openssl(d, &["x509", "-in", "SN-A1-chain.pem", "-out", "SN-A1.pem"])?.ok()?;
    let ocsp_url = format!("{}/ocsp", svc.base_url());
    let ocsp_args =
        ["ocsp", "-issuer", "device-ca.pem", "-cert", "SN-A1.pem", "-url", &ocsp_url, "-no_nonce", "-noverify"];
    let before = openssl(d, &ocsp_args)?.ok()?;
    assert!(before.stdout.contains("SN-A1.pem: good"), "{}", before.describe());

    // The operator revokes; the record shows it; a second time is a conflict.
    let ok = api.call("POST", &revoke_path, Some(&operator), Some(key_compromise))?;
    assert_eq!(ok.status, 200, "{}", ok.describe());
    // The pre-signed answer was re-signed before the API answered.
    let after = openssl(d, &ocsp_args)?.ok()?;
    assert!(after.stdout.contains("SN-A1.pem: revoked"), "{}", after.describe());
    assert_eq!(json(&ok)?["status"], "revoked");
    let got = api.call("GET", &cert_path, Some(&auditor), None)?;
    assert_eq!(got.status, 200, "{}", got.describe());
    let got = json(&got)?;
    assert_eq!((got["status"].as_str(), got["revocation_reason"].as_str()), (Some("revoked"), Some("keyCompromise")));
    assert_eq!(got["serial"].as_str(), Some(serial.as_str()));
    refused(api.call("POST", &revoke_path, Some(&operator), Some(key_compromise))?, 409, "already revoked")?;

    // The auditor reads the log and finds the revocation by the operator's token.
    let log = api.call("GET", "/audit?after=0&limit=1000", Some(&auditor), None)?;
    assert_eq!(log.status, 200, "{}", log.describe());
    let log = json(&log)?;
    let entries = log["entries"].as_array().context("entries")?;
    let actor = format!("token:{}:ops", id.trim_start_matches("pki_"));
    assert!(
        entries.iter().any(|e| e["action"] == "certificate.revoke" && e["outcome"] == "success" && e["actor"] == actor),
        "{log}"
    );
    assert!(entries.iter().all(|e| e["leaf_hash"].as_str().is_some_and(|h| h.len() == 64)));
    refused(api.call("GET", "/audit?limit=5000", Some(&auditor), None)?, 400, "limit")?;
    refused(api.call("GET", "/audit", Some(&operator), None)?, 403, "role operator may not")?;

    // A revoked token stops working at once, with the same answer as a wrong one.
    let doomed_id = doomed.trim_start_matches("pki_").split_once('.').map(|(i, _)| i).context("id")?;
    assert_eq!(api.call("GET", &cert_path, Some(&doomed), None)?.status, 200);
    cli.run_ok(&["tokens", "revoke", "--id", doomed_id])?;
    assert!(cli.run_ok(&["tokens", "list"])?.stdout.contains("revoked"));
    refused(api.call("GET", &cert_path, Some(&doomed), None)?, 401, "invalid or revoked API token")?;

    // A whole device: listed, revoked, listed again.
    let csr = make_csr(d, "SN-A2", P256, "/CN=SN-A2", &[])?;
    cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", "SN-A2-chain.pem"])?;
    std::fs::write(d.join("devices.csv"), "SN-A2,generic\n")?;
    cli.run_ok(&["devices", "import", "--batch", "a", "devices.csv"])?;
    let listed = api.call("GET", "/devices/SN-A2/certificates", Some(&auditor), None)?;
    assert_eq!(listed.status, 200, "{}", listed.describe());
    assert_eq!(json(&listed)?["certificates"][0]["status"], "valid", "{}", listed.describe());
    // Its pre-signed OCSP answer is cached ("good") before the device is revoked.
    openssl(d, &["x509", "-in", "SN-A2-chain.pem", "-out", "SN-A2.pem"])?.ok()?;
    let a2_ocsp =
        ["ocsp", "-issuer", "device-ca.pem", "-cert", "SN-A2.pem", "-url", &ocsp_url, "-no_nonce", "-noverify"];
    let before = openssl(d, &a2_ocsp)?.ok()?;
    assert!(before.stdout.contains("SN-A2.pem: good"), "{}", before.describe());
    let cessation = r#"{"reason":"cessationOfOperation"}"#;
    refused(api.call("POST", "/devices/SN-A2/revoke", Some(&auditor), Some(cessation))?, 403, "may not")?;
    refused(api.call("POST", "/devices/SN-NOPE/revoke", Some(&operator), Some(cessation))?, 404, "not found")?;
    let gone = api.call("POST", "/devices/SN-A2/revoke", Some(&operator), Some(cessation))?;
    assert_eq!(gone.status, 200, "{}", gone.describe());
    assert_eq!(json(&gone)?["revoked_certificates"].as_array().map(Vec::len), Some(1), "{}", gone.describe());
    let listed = json(&api.call("GET", "/devices/SN-A2/certificates", Some(&operator), None)?)?;
    assert_eq!(listed["certificates"][0]["revocation_reason"], "cessationOfOperation", "{listed}");
    // Re-signed from what the revocation returned (no store read): status, time and reason.
    let after = openssl(d, &a2_ocsp)?.ok()?;
    assert!(
        after.stdout.contains("SN-A2.pem: revoked")
            && after.stdout.contains("Reason: cessationOfOperation")
            && after.stdout.contains("Revocation Time:"),
        "{}",
        after.describe()
    );
    // Bodies over 16 KiB are refused.
    let big = format!(r#"{{"reason":"{}"}}"#, "x".repeat(20 * 1024));
    refused(api.call("POST", "/devices/SN-A2/revoke", Some(&operator), Some(&big))?, 413, "larger than")?;

    // A whole batch, in one call: exactly its devices, every certificate of them.
    std::fs::write(d.join("batch-b.csv"), "SN-B1,generic\nSN-B2,generic\n")?;
    cli.run_ok(&["devices", "import", "--batch", "b", "batch-b.csv"])?;
    std::fs::write(d.join("batch-c.csv"), "SN-C1,generic\n")?;
    cli.run_ok(&["devices", "import", "--batch", "c", "batch-c.csv"])?;
    let mut serial_of = std::collections::HashMap::new();
    for dev in ["SN-B1", "SN-B2", "SN-C1"] {
        let csr = make_csr(d, dev, P256, &format!("/CN={dev}"), &[])?;
        let out = format!("{dev}-chain.pem");
        cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", &out])?;
        let s = openssl(d, &["x509", "-in", &out, "-noout", "-serial"])?.ok()?;
        serial_of.insert(dev, s.stdout.trim().trim_start_matches("serial=").to_ascii_lowercase());
    }
    refused(api.call("POST", "/batches/b/revoke", Some(&auditor), Some(cessation))?, 403, "may not")?;
    refused(api.call("POST", "/batches/nope/revoke", Some(&operator), Some(cessation))?, 404, "not found")?;
    let batch = api.call("POST", "/batches/b/revoke", Some(&operator), Some(key_compromise))?;
    assert_eq!(batch.status, 200, "{}", batch.describe());
    let batch = json(&batch)?;
    assert_eq!((batch["revoked_devices"].as_u64(), batch["batch"].as_str()), (Some(2), Some("b")), "{batch}");
    assert_eq!(batch["revoked_certificates"].as_array().map(Vec::len), Some(2), "{batch}");
    for (dev, status) in [("SN-B1", "revoked"), ("SN-B2", "revoked"), ("SN-C1", "valid")] {
        let got = json(&api.call("GET", &format!("/certificates/device/{}", serial_of[dev]), Some(&auditor), None)?)?;
        assert_eq!(got["status"], status, "{dev}: {got}");
    }
    // And a whole model (SN-C1 and every other device of `generic`).
    let model = json(&api.call("POST", "/models/generic/revoke", Some(&operator), Some(cessation))?)?;
    assert_eq!(model["model"], "generic", "{model}");
    let got = json(&api.call("GET", &format!("/certificates/device/{}", serial_of["SN-C1"]), Some(&auditor), None)?)?;
    assert_eq!(got["status"], "revoked", "{got}");

    svc.stop();
    cli.run_ok(&["audit", "verify"])?;
    Ok(())
}

/// People authenticate with an operator certificate (CN = name, OU = role): the role
/// in it is enforced, and revoking it withdraws the access at once.
#[test]
fn operator_certificates_authenticate_people() -> Result<()> {
    let tmp = e2e_tests::workdir("admin-operator")?;
    let d = tmp.path();
    let cli = Cli::evaluation(d);
    cli.run_ok(&["init"])?;
    let csr = make_csr(d, "SN-OP1", P256, "/CN=SN-OP1", &[])?;
    cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", "SN-OP1-chain.pem"])?;
    let serial = openssl(d, &["x509", "-in", "SN-OP1-chain.pem", "-noout", "-serial"])?.ok()?;
    let serial = serial.stdout.trim().trim_start_matches("serial=").to_ascii_lowercase();
    for (who, role) in [("alice", "operator"), ("bob", "auditor")] {
        let csr = make_csr(d, who, P256, &format!("/CN={who}/OU=admin"), &[])?;
        let out = format!("{who}-chain.pem");
        cli.run_ok(&["operators", "add", "--csr", path_str(&csr)?, "--role", role, "--out", &out])?;
        let subject = openssl(d, &["x509", "-in", &out, "-noout", "-subject"])?.ok()?.stdout;
        assert!(subject.contains(&format!("OU = {role}")) && !subject.contains("OU = admin"), "{subject}");
    }
    let bad = cli.run(&["operators", "add", "--csr", "alice.csr", "--role", "superuser"])?;
    assert!(!bad.success() && bad.stderr.contains("unknown role"), "{}", bad.describe());
    // The generic path cannot mint a role.
    let generic = cli.run(&["issue", "--profile", "operator", "--csr", "alice.csr"])?;
    assert!(!generic.success() && generic.stderr.contains("operators add"), "{}", generic.describe());

    let svc = Service::start(&cli)?;
    curl(d, &["-f", "-o", "root.pem", &format!("{}/ca/identity-root.pem", svc.base_url())])?.ok()?;
    let url = |path: &str| format!("https://127.0.0.1:{}/api/v1{path}", svc.https.port());
    let call = |who: &str, method: &str, path: &str, body: Option<&str>| -> Result<HttpReply> {
        let (cert, key) = (format!("{who}-chain.pem"), format!("{who}.key"));
        let mut args = vec!["--cacert", "root.pem", "--cert", &cert, "--key", &key, "-X", method];
        if let Some(b) = body {
            args.extend_from_slice(&["-H", "Content-Type: application/json", "--data-raw", b]);
        }
        let u = url(path);
        args.push(&u);
        curl_reply(d, &args)
    };
    let cert_path = format!("/certificates/device/{serial}");
    let read = call("alice", "GET", &cert_path, None)?;
    assert_eq!(read.status, 200, "{}", read.describe());
    expect(
        &call("bob", "POST", &format!("{cert_path}/revoke"), Some(r#"{"reason":"superseded"}"#))?,
        403,
        "role auditor",
    )?;
    let audit = call("bob", "GET", "/audit?limit=1000", None)?;
    assert_eq!(audit.status, 200, "{}", audit.describe());
    let entries = json(&audit)?;
    let actors: Vec<&str> =
        entries["entries"].as_array().context("entries")?.iter().filter_map(|e| e["actor"].as_str()).collect();
    assert!(actors.iter().any(|a| a.starts_with("operator:alice:")), "{actors:?}");

    // Alice's certificate revoked: her next call is refused.
    let alice = openssl(d, &["x509", "-in", "alice-chain.pem", "-noout", "-serial"])?.ok()?;
    let alice = alice.stdout.trim().trim_start_matches("serial=").to_string();
    cli.run_ok(&["revoke", "--issuer", "station", "--serial", &alice, "--reason", "affiliationChanged"])?;
    // A revoked credential: 401, like a revoked token (README), not 403.
    expect(&call("alice", "GET", &cert_path, None)?, 401, "revoked")?;
    svc.stop();
    cli.run_ok(&["audit", "verify"])?;
    Ok(())
}
