//! The authorization matrix, as one table-driven test: every admin endpoint × every
//! role (API tokens, and an operator certificate) × missing, garbage, malformed,
//! revoked and expired credentials, checked against the README's role table (parsed
//! from README.md, so the document and the code cannot drift apart unnoticed).
//!
//! The bad token credentials come from one address: they stay under the per-address
//! failure limit (64, then one a second; `ca-service/src/abuse.rs`) — more endpoints
//! or bad tokens here need a pause, or they see 429.
//!
//! A role the table allows gets past authorization (any answer but 401/403: the targets
//! do not exist, so most answer 404 or 400 and nothing changes); a role it does not
//! allow gets 403, audited; bad or missing credentials get 401 alike.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e_tests::{curl_reply, make_csr, path_str, sqlite_i64, workspace_root, Cli, HttpReply, Service, P256};

const ROLES: [&str; 6] = ["admin", "operator", "auditor", "provisioning-station", "release-manager", "update-approver"];

/// An endpoint: method, path with made-up targets, body, and the text that finds its
/// row in the README's table.
struct Endpoint {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    readme: &'static str,
}

const REASON: Option<&str> = Some(r#"{"reason": "unspecified"}"#);

const ENDPOINTS: [Endpoint; 17] = [
    Endpoint {
        method: "POST",
        path: "/certificates/device/0badc0de/revoke",
        body: REASON,
        readme: "POST /api/v1/certificates/{issuer}/{serial}/revoke",
    },
    Endpoint {
        method: "POST",
        path: "/devices/NO-SUCH-DEVICE/revoke",
        body: REASON,
        readme: "POST /api/v1/devices/{id}/revoke",
    },
    Endpoint { method: "POST", path: "/batches/no-such-batch/revoke", body: REASON, readme: "/batches/{batch}/revoke" },
    Endpoint { method: "POST", path: "/models/no-such-model/revoke", body: REASON, readme: "/models/{model}/revoke" },
    Endpoint {
        method: "GET",
        path: "/certificates/device/0badc0de",
        body: None,
        readme: "GET /api/v1/certificates/{issuer}/{serial}`",
    },
    Endpoint {
        method: "GET",
        path: "/devices/NO-SUCH-DEVICE/certificates",
        body: None,
        readme: "GET /api/v1/devices/{id}/certificates",
    },
    Endpoint { method: "GET", path: "/audit?after=0&limit=1", body: None, readme: "GET /api/v1/audit" },
    Endpoint {
        method: "GET",
        path: "/reports/expiring?within=1d&limit=1",
        body: None,
        readme: "GET /api/v1/reports/{counts,expiring,stale,never-enrolled}",
    },
    Endpoint {
        method: "POST",
        path: "/update-requests",
        body: Some(r#"{"csr": "not a csr", "classes": ["x"], "validity_days": 1}"#),
        readme: "POST /api/v1/update-requests`",
    },
    Endpoint {
        method: "POST",
        path: "/update-requests/00ff/approve",
        body: None,
        readme: "update-requests/{id}/approve",
    },
    Endpoint {
        method: "POST",
        path: "/update-requests/00ff/reject",
        body: Some(r#"{"reason": "no"}"#),
        readme: "update-requests/{id}/approve",
    },
    Endpoint { method: "POST", path: "/update-requests/00ff/sign", body: None, readme: "update-requests/{id}/sign" },
    Endpoint { method: "GET", path: "/update-requests", body: None, readme: "GET /api/v1/update-requests[?status=]" },
    Endpoint {
        method: "POST",
        path: "/rotations",
        body: Some(r#"{"batch": "no-such-batch", "by": "7d"}"#),
        readme: "POST /api/v1/rotations",
    },
    Endpoint { method: "GET", path: "/rotations", body: None, readme: "GET /api/v1/rotations" },
    Endpoint { method: "GET", path: "/rotations/424242", body: None, readme: "GET /api/v1/rotations" },
    Endpoint { method: "GET", path: "/openapi.json", body: None, readme: "GET /api/v1/openapi.json" },
];

/// The README's role table: row text → the roles in its last column (`anyone` kept).
fn readme_roles() -> Result<Vec<(String, Vec<String>)>> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md"))?;
    let start = readme.find("| endpoint | roles |").context("the README's role table is gone")?;
    let rows = readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let roles = cells.last()?.split(',').map(|r| r.trim().to_string()).collect();
            Some((cells.first()?.to_string(), roles))
        })
        .collect::<Vec<_>>();
    ensure!(rows.len() >= 9, "the README's role table has {} rows", rows.len());
    Ok(rows)
}

/// Who calls.
enum Credential {
    None,
    Bearer(String),
    Header(&'static str),
    Certificate(&'static str),
}

fn call(dir: &Path, port: u16, e: &Endpoint, credential: &Credential) -> Result<HttpReply> {
    let url = format!("https://127.0.0.1:{port}/api/v1{}", e.path);
    let mut args: Vec<String> = ["--max-time", "10", "--cacert", "root.pem", "-X", e.method].map(String::from).to_vec();
    match credential {
        Credential::None => {}
        Credential::Bearer(token) => args.extend(["-H".into(), format!("Authorization: Bearer {token}")]),
        Credential::Header(value) => args.extend(["-H".into(), format!("Authorization: {value}")]),
        Credential::Certificate(name) => {
            args.extend(["--cert".into(), format!("{name}.pem"), "--key".into(), format!("{name}.key")])
        }
    }
    if let Some(body) = e.body {
        args.extend(["-H".into(), "Content-Type: application/json".into(), "--data-raw".into(), body.into()]);
    }
    args.push(url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl_reply(dir, &args)
}

fn token_of(output: &str) -> Result<String> {
    output.split_whitespace().find(|w| w.starts_with("pki_")).map(str::to_string).context("no token printed")
}

#[test]
fn every_endpoint_every_role_every_bad_credential() -> Result<()> {
    let tmp = e2e_tests::workdir("authz-matrix")?;
    let d = tmp.path();
    let cli = Cli::evaluation(d);
    cli.run_ok(&["init"])?;

    // One token per role; an operator certificate (role operator); and the bad ones.
    let mut callers: Vec<(String, Option<&str>, Credential)> = Vec::new();
    for role in ROLES {
        let out = cli.run_ok(&["tokens", "create", "--name", &format!("matrix-{role}"), "--role", role])?;
        let token = token_of(&format!("{}{}", out.stdout, out.stderr))?;
        callers.push((format!("token:{role}"), Some(role), Credential::Bearer(token)));
    }
    let operator = |name: &str, role: &str, cli: &Cli| -> Result<String> {
        let csr = make_csr(d, name, P256, &format!("/CN={name}"), &[])?;
        let out = cli.run_ok(&[
            "operators",
            "add",
            "--csr",
            path_str(&csr)?,
            "--role",
            role,
            "--out",
            &format!("{name}.pem"),
        ])?;
        let text = format!("{}{}", out.stdout, out.stderr);
        let serial = text.split_whitespace().skip_while(|w| *w != "serial").nth(1).map(str::to_string);
        Ok(serial.unwrap_or_default())
    };
    operator("op-alice", "operator", &cli)?;
    callers.push(("certificate:operator".into(), Some("operator"), Credential::Certificate("op-alice")));

    let revoked = cli.run_ok(&["tokens", "create", "--name", "matrix-revoked", "--role", "admin"])?;
    let revoked_token = token_of(&format!("{}{}", revoked.stdout, revoked.stderr))?;
    let revoked_id = revoked_token.trim_start_matches("pki_").split('.').next().unwrap_or_default().to_string();
    cli.run_ok(&["tokens", "revoke", "--id", &revoked_id])?;
    let revoked_cert_serial = operator("op-revoked", "admin", &cli)?;
    ensure!(!revoked_cert_serial.is_empty(), "operators add printed no serial");
    cli.run_ok(&["revoke", "--issuer", "station", "--serial", &revoked_cert_serial])?;
    // Valid for no time at all: expired a moment after issuance.
    operator("op-expired", "admin", &cli.clone().env("CA_PROFILES__OPERATOR__VALIDITY_DAYS", "0"))?;
    std::thread::sleep(std::time::Duration::from_millis(1100));

    for (name, credential) in [
        ("none", Credential::None),
        ("garbage token", Credential::Bearer("pki_0123456789abcdef.x".into())),
        ("malformed header", Credential::Header("Bearer")),
        ("other scheme", Credential::Header("Basic Zm9vOmJhcg==")),
        ("revoked token", Credential::Bearer(revoked_token)),
        ("revoked certificate", Credential::Certificate("op-revoked")),
        ("expired certificate", Credential::Certificate("op-expired")),
    ] {
        callers.push((name.into(), None, credential));
    }

    let svc = Service::start(&cli)?;
    let root = e2e_tests::curl(d, &["-f", &format!("{}/ca/identity-root.pem", svc.base_url())])?.ok()?;
    std::fs::write(d.join("root.pem"), root.stdout)?;
    let port = svc.https.port();
    let table = readme_roles()?;
    let denied = || sqlite_i64(d, "SELECT count(*) FROM audit_log WHERE outcome LIKE 'denied:%'");

    let mut deviations = Vec::new();
    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    for e in &ENDPOINTS {
        let (_, allowed) = table
            .iter()
            .find(|(row, _)| row.contains(e.readme))
            .with_context(|| format!("no README row for {}", e.readme))?;
        let anyone = allowed.iter().any(|r| r == "anyone");
        for (who, role, credential) in &callers {
            let before = denied()?;
            let mut reply = call(d, port, e, credential)?;
            // More endpoints × bad credentials than the address's failure burst: when the
            // limiter says wait (as it should), wait as told and ask again. Valid tokens
            // from the same address wait too (the limit is the address's, checked before
            // the token): with a fast server the bad ones use up the burst before the
            // refill catches up, and a role's request meets the 429 first.
            if reply.status == 429 {
                let secs: u64 = reply.header("retry-after").and_then(|s| s.parse().ok()).unwrap_or(1);
                std::thread::sleep(Duration::from_secs(secs.min(5)) + Duration::from_millis(100));
                reply = call(d, port, e, credential)?;
            }
            *counts.entry(reply.status).or_default() += 1;
            let ok = match (anyone, role) {
                (true, _) => reply.status == 200,
                (false, Some(role)) if allowed.iter().any(|r| r == role) => !matches!(reply.status, 401 | 403 | 500..),
                (false, Some(_)) => reply.status == 403 && denied()? == before + 1,
                (false, None) => reply.status == 401,
            };
            if !ok {
                deviations.push(format!(
                    "{} {} as {who}: HTTP {} {}",
                    e.method,
                    e.path,
                    reply.status,
                    reply.text().trim()
                ));
            }
        }
    }
    svc.stop();
    if !deviations.is_empty() {
        bail!("{} deviation(s) from the README's role table:\n{}", deviations.len(), deviations.join("\n"));
    }
    println!("authorization matrix: {} calls, statuses {counts:?}", ENDPOINTS.len() * callers.len());
    Ok(())
}
