//! Control bytes in path parameters, on both stores: a NUL, a line feed or an escape in
//! every admin path parameter and in an EST label is a 400 with a reason (never a 500,
//! never a store error), audited with the parameter escaped; none of them forges a line
//! in the text log. And CLI actions are audited with the operating-system user, not
//! `cli:unknown`, whatever the environment holds.

use std::time::Duration;

use anyhow::{Context, Result};
use e2e_tests::{curl, curl_reply, sqlite_strings, Cli, HttpReply, Service, TestDb};

/// The database as the test reads it: one column of text per row.
type Query<'a> = &'a dyn Fn(&str) -> Result<Vec<String>>;

const DENIED: &str = "SELECT target || ' | ' || outcome FROM audit_log WHERE outcome LIKE 'denied:%' ORDER BY seq";

fn flow(cli: Cli, query: Query<'_>) -> Result<()> {
    let d = cli.workdir.clone();
    let d = d.as_path();
    cli.run_ok(&["init"])?;
    let token = |role: &str| -> Result<String> {
        Ok(cli.run_ok(&["tokens", "create", "--name", role, "--role", role])?.stdout.trim().to_string())
    };
    let (admin, approver, release) = (token("admin")?, token("update-approver")?, token("release-manager")?);

    let svc = Service::start(&cli.clone().env("CA_LOG", "info"))?;
    curl(d, &["-f", "-o", "root.pem", &format!("{}/ca/identity-root.pem", svc.base_url())])?.ok()?;
    let call = |method: &str, path: &str, token: Option<&str>, body: Option<&str>| -> Result<HttpReply> {
        let url = format!("https://127.0.0.1:{}{path}", svc.https.port());
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut args = vec!["--cacert", "root.pem", "--path-as-is", "-X", method];
        if let Some(a) = &auth {
            args.extend_from_slice(&["-H", a]);
        }
        if let Some(b) = body {
            args.extend_from_slice(&["-H", "Content-Type: application/json", "--data-raw", b]);
        }
        args.push(&url);
        curl_reply(d, &args)
    };
    let reason = Some(r#"{"reason":"keyCompromise"}"#);
    let api = "/api/v1";
    let cases: Vec<(&str, String, &str, Option<&str>, &str)> = vec![
        ("POST", format!("{api}/certificates/%00/01/revoke"), admin.as_str(), reason, "issuer"),
        ("POST", format!("{api}/certificates/device/0%00/revoke"), admin.as_str(), reason, "serial"),
        ("GET", format!("{api}/certificates/dev%0Aice/01"), admin.as_str(), None, "issuer"),
        ("POST", format!("{api}/devices/SN%00-1/revoke"), admin.as_str(), reason, "device id"),
        ("GET", format!("{api}/devices/%1B%5B2J/certificates"), admin.as_str(), None, "device id"),
        ("POST", format!("{api}/batches/b%00/revoke"), admin.as_str(), reason, "batch"),
        ("POST", format!("{api}/models/%0D%0Am/revoke"), admin.as_str(), reason, "model"),
        ("GET", format!("{api}/update-requests/%00"), admin.as_str(), None, "update request id"),
        ("POST", format!("{api}/update-requests/%00/approve"), approver.as_str(), None, "update request id"),
        (
            "POST",
            format!("{api}/update-requests/%0A/reject"),
            approver.as_str(),
            Some(r#"{"reason":"x"}"#),
            "update request id",
        ),
        ("POST", format!("{api}/update-requests/%7F/sign"), release.as_str(), None, "update request id"),
    ];
    for (method, path, token, body, what) in &cases {
        let before = query(DENIED)?.len();
        let reply = call(method, path, Some(*token), *body)?;
        assert_eq!(reply.status, 400, "{method} {path}: {}", reply.describe());
        let json: serde_json::Value = serde_json::from_slice(&reply.body).with_context(|| reply.describe())?;
        let error = json["error"].as_str().unwrap_or_default();
        assert!(error.contains(&format!("the {what} contains a control character")), "{path}: {error}");
        let denied = query(DENIED)?;
        assert_eq!(denied.len(), before + 1, "{method} {path}: the refusal is audited: {denied:?}");
        let entry = denied.last().cloned().unwrap_or_default();
        assert!(entry.contains("\\u{") || entry.contains("\\n") || entry.contains("\\r"), "escaped target: {entry}");
        assert!(!entry.chars().any(char::is_control), "{entry:?}");
    }

    // EST labels: refused with a reason, audited; and the log has no forged line.
    let est = |label: &str| -> Result<HttpReply> {
        let url = format!("https://127.0.0.1:{}/.well-known/est/{label}/cacerts", svc.https.port());
        curl_reply(d, &["--cacert", "root.pem", "--path-as-is", &url])
    };
    for label in ["%00", "x%0AERROR%20forged%20line", "%1B%5B31m"] {
        let before = query(DENIED)?.len();
        let reply = est(label)?;
        assert_eq!(reply.status, 400, "{label}: {}", reply.describe());
        assert!(reply.text().contains("the EST label contains a control character"), "{}", reply.describe());
        assert_eq!(query(DENIED)?.len(), before + 1, "{label}: the refusal is audited");
    }
    assert_eq!(est("nope")?.status, 404, "an unknown label is still 404");
    // Every refusal reached the log (info) before we look.
    std::thread::sleep(Duration::from_millis(300));
    let log = svc.log_text();
    assert!(log.contains("request refused"), "{log}");
    assert!(!log.lines().any(|l| l.trim_start().starts_with("ERROR forged")), "a forged log line:\n{log}");
    assert!(!log.contains('\u{1b}') && !log.contains('\0') && !log.contains('\r'), "raw control bytes:\n{log}");
    svc.stop();
    cli.run_ok(&["audit", "verify"])?;
    Ok(())
}

/// Who ran the CLI: the operating-system user, even with USER and LOGNAME unset.
fn cli_actor(cli: Cli, query: Query<'_>) -> Result<()> {
    cli.run_ok(&["init"])?;
    let whoami = std::process::Command::new("id").arg("-un").output().context("id -un")?;
    let whoami = String::from_utf8(whoami.stdout)?.trim().to_string();
    let mut cmd = cli.command()?;
    cmd.env_remove("USER").env_remove("LOGNAME").args(["tokens", "create", "--name", "anon", "--role", "auditor"]);
    e2e_tests::run_with_timeout(&mut cmd, Duration::from_secs(60))?.ok()?;
    let actors = query("SELECT actor FROM audit_log WHERE action IN ('token.create', 'ca.create') ORDER BY seq")?;
    assert_eq!(actors.last().map(String::as_str), Some(format!("cli:{whoami}").as_str()), "{actors:?}");
    assert!(!actors.iter().any(|a| a == "cli:unknown"), "{actors:?}");
    Ok(())
}

#[test]
fn cli_actions_name_the_os_user_on_sqlite() -> Result<()> {
    let dir = e2e_tests::workdir("ctl-user-sqlite")?;
    let d = dir.path().to_path_buf();
    cli_actor(Cli::evaluation(dir.path()), &|sql| sqlite_strings(&d, sql))
}

#[test]
fn cli_actions_name_the_os_user_on_postgres() -> Result<()> {
    let db = TestDb::create()?;
    let dir = e2e_tests::workdir("ctl-user-pg")?;
    cli_actor(Cli::evaluation(dir.path()).env("CA_STORAGE__URL", &db.url), &|sql| db.query_strings(sql))
}

#[test]
fn control_bytes_on_sqlite() -> Result<()> {
    let dir = e2e_tests::workdir("ctl-sqlite")?;
    let d = dir.path().to_path_buf();
    flow(Cli::evaluation(dir.path()), &|sql| sqlite_strings(&d, sql))
}

#[test]
fn control_bytes_on_postgres() -> Result<()> {
    let db = TestDb::create()?;
    let dir = e2e_tests::workdir("ctl-pg")?;
    flow(Cli::evaluation(dir.path()).env("CA_STORAGE__URL", &db.url), &|sql| db.query_strings(sql))
}
