//! The operator console in a real browser (Debian's chromium, headless, driven through
//! chromium-driver over WebDriver) and, for what a browser will not do on purpose —
//! forged forms, other sites' origins, a client certificate — with curl.
//!
//! The browser test signs in with API tokens, finds a device, reads its certificate in
//! words, revokes it and sees OCSP and the CRL carry it (checked again with openssl),
//! counts what revoking a batch would revoke, reads the audit trail and a report as an
//! auditor (who is shown no revoke button and is refused one anyway), and approves an
//! update-signing request as two approvers. It screenshots every page into
//! `target/console-screenshots/` (or `$CONSOLE_SCREENSHOTS`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e_tests::{curl, curl_reply, make_csr, openssl, path_str, ChildGuard, Cli, HttpReply, Service, P256};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

fn token(cli: &Cli, name: &str, role: &str) -> Result<String> {
    let out = cli.run_ok(&["tokens", "create", "--name", name, "--role", role])?;
    Ok(format!("{}{}", out.stdout, out.stderr)
        .split_whitespace()
        .find(|w| w.starts_with("pki_"))
        .context("no token printed")?
        .to_string())
}

/// A fleet: batch `line-7` (SN-C1, SN-C2 with certificates; SN-C3 never enrolled).
fn fleet(d: &Path) -> Result<Cli> {
    let cli = Cli::evaluation(d).env("CA_CRL__REGENERATE_SECS", "2");
    cli.run_ok(&["init"])?;
    std::fs::write(d.join("line-7.csv"), "device_id,model\nSN-C1,generic\nSN-C2,generic\nSN-C3,generic\n")?;
    cli.run_ok(&["devices", "import", "--batch", "line-7", "line-7.csv"])?;
    for dev in ["SN-C1", "SN-C2"] {
        let csr = make_csr(d, dev, P256, &format!("/CN={dev}"), &[])?;
        cli.run_ok(&["issue", "--profile", "device", "--csr", path_str(&csr)?, "--out", &format!("{dev}.pem")])?;
    }
    Ok(cli)
}

struct Browser {
    client: Client,
    _driver: ChildGuard,
    base: String,
    shots: PathBuf,
}

impl Browser {
    async fn start(d: &Path, svc: &Service) -> Result<Self> {
        let driver = e2e_tests::require_tool("chromedriver")?;
        let port = e2e_tests::free_port()?;
        let mut cmd = Command::new(driver);
        cmd.arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null());
        let driver = ChildGuard::spawn(&mut cmd, "chromedriver")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(Instant::now() < deadline, "chromedriver did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = d.join("chromium-profile");
        let caps = json!({
            "browserName": "chrome",
            // The console is under test here, not certificate path validation (curl and
            // openssl check the TLS chain in the other tests): the service's TLS
            // certificate chains to a root this browser profile does not know.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--no-first-run", format!("--user-data-dir={}", profile.display())],
            },
        });
        let caps = caps.as_object().cloned().context("capabilities")?;
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .context("starting headless chromium through chromedriver")?;
        let shots = std::env::var_os("CONSOLE_SCREENSHOTS")
            .map_or_else(|| e2e_tests::workspace_root().join("target/console-screenshots"), PathBuf::from);
        std::fs::create_dir_all(&shots)?;
        Ok(Browser { client, _driver: driver, base: format!("https://127.0.0.1:{}", svc.https.port()), shots })
    }

    async fn goto(&self, path: &str) -> Result<()> {
        self.client.goto(&format!("{}{path}", self.base)).await.with_context(|| format!("opening {path}"))
    }

    /// Path and query of the page shown.
    async fn at(&self) -> Result<String> {
        let url = self.client.current_url().await?;
        Ok(match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        })
    }

    async fn text(&self, css: &str) -> Result<String> {
        let page = self.at().await?;
        let e = self.client.find(Locator::Css(css)).await.with_context(|| format!("no '{css}' on {page}"))?;
        Ok(e.text().await?)
    }

    async fn has(&self, css: &str) -> Result<bool> {
        Ok(!self.client.find_all(Locator::Css(css)).await?.is_empty())
    }

    /// Clicks a link or a submit button and waits until the next page replaced this one
    /// (every click here navigates; the old page's elements go stale when it does).
    async fn click(&self, css: &str) -> Result<()> {
        let page = self.at().await?;
        let e = self.client.find(Locator::Css(css)).await.with_context(|| format!("no '{css}' on {page}"))?;
        let html = self.client.find(Locator::Css("html")).await?;
        e.click().await?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while html.tag_name().await.is_ok() {
            ensure!(Instant::now() < deadline, "clicking '{css}' on {page} did not leave the page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn fill(&self, css: &str, value: &str) -> Result<()> {
        let e = self.client.find(Locator::Css(css)).await.with_context(|| format!("no '{css}'"))?;
        e.clear().await?;
        e.send_keys(value).await?;
        Ok(())
    }

    async fn choose(&self, css: &str, value: &str) -> Result<()> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no '{css}'"))?
            .select_by_value(value)
            .await?;
        Ok(())
    }

    async fn shot(&self, name: &str) -> Result<()> {
        let png = self.client.screenshot().await?;
        ensure!(png.starts_with(b"\x89PNG"), "the screenshot of {name} is no PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png)?;
        Ok(())
    }

    async fn sign_in(&self, token: &str) -> Result<()> {
        self.goto("/console/sign-in").await?;
        self.fill("#token", token).await?;
        self.click("#token-sign-in button").await
    }

    async fn nav(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for a in self.client.find_all(Locator::Css("header nav a")).await? {
            out.push(a.text().await?);
        }
        Ok(out)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_an_auditor_and_two_approvers_in_a_browser() -> Result<()> {
    let tmp = e2e_tests::workdir("console")?;
    let d = tmp.path();
    let cli = fleet(d)?;
    let ops = token(&cli, "ops", "operator")?;
    let auditor = token(&cli, "ann", "auditor")?;
    let release = token(&cli, "rel", "release-manager")?;
    let (alice, bob) = (token(&cli, "alice", "update-approver")?, token(&cli, "bob", "update-approver")?);
    let svc = Service::start(&cli)?;
    let b = Browser::start(d, &svc).await?;

    // No session: every page sends the browser to sign in.
    b.goto("/console/search?kind=device&q=SN-C1").await?;
    ensure!(b.at().await? == "/console/sign-in", "not redirected: {}", b.at().await?);
    b.shot("01-sign-in").await?;
    // A wrong token is refused on the sign-in page.
    b.sign_in("pki_0123456789abcdef.wrong").await?;
    let problem = b.text("#problem").await?;
    ensure!(problem.contains("invalid or revoked API token"), "{problem}");

    // The operator: search, devices and reports; no audit trail, no update signing.
    b.sign_in(&ops).await?;
    ensure!(b.at().await? == "/console/search", "{}", b.at().await?);
    ensure!(b.text("#signed-in-as").await? == "ops · operator");
    ensure!(b.nav().await? == ["Search", "Reports"], "{:?}", b.nav().await?);
    b.choose("#kind", "device").await?;
    b.fill("#q", "SN-C1").await?;
    b.click("#search button").await?;
    ensure!(b.at().await? == "/console/devices/SN-C1", "{}: {}", b.at().await?, b.text("main").await?);
    ensure!(b.text("#device-id").await? == "SN-C1");
    let rows = b.client.find_all(Locator::Css("#certificates tbody tr")).await?;
    ensure!(rows.len() == 1 && rows[0].text().await?.contains("valid"), "one valid certificate");
    ensure!(!b.has("#audit").await?, "an operator is shown no audit entries");
    b.shot("02-device").await?;

    // Its certificate, in words.
    b.click("#certificates tbody a").await?;
    ensure!(b.at().await?.starts_with("/console/certificates/"), "{}", b.at().await?);
    ensure!(b.text("#subject").await?.contains("CN=SN-C1"), "{}", b.text("#subject").await?);
    ensure!(b.text("#status").await? == "valid");
    let serial = b.text("#serial").await?;
    b.shot("03-certificate").await?;

    // Revoke the device: the confirmation counts what it revokes; the result says when
    // OCSP and the CRL carry it.
    b.goto("/console/devices/SN-C1").await?;
    b.click("#revoke-device").await?;
    ensure!(b.text("#revoke-count").await? == "1 certificate", "{}", b.text("#revoke-summary").await?);
    b.shot("04-revoke-confirm").await?;
    b.choose("#reason", "keyCompromise").await?;
    b.click("#confirm-revoke").await?;
    ensure!(b.text("#revoke-result").await?.starts_with("Revoked 1 certificate"), "{}", b.text("main").await?);
    ensure!(b.text("#ocsp-result").await?.contains("answers revoked now"));
    let crl_line = b.text("#crl-result").await?;
    ensure!(crl_line.contains("listed in CRL number"), "{crl_line}");
    b.shot("05-revoked").await?;
    // openssl reads the CRL the page names and finds the serial in it.
    let crl_url = crl_line.split_whitespace().find(|w| w.starts_with("http://")).context("CRL URL")?;
    curl(d, &["-f", "-o", "device.crl", crl_url])?.ok()?;
    let listed = openssl(d, &["crl", "-inform", "DER", "-in", "device.crl", "-noout", "-text"])?.ok()?.stdout;
    ensure!(listed.contains(&serial.to_uppercase()), "serial {serial} not in the CRL:\n{listed}");
    b.goto(&format!("/console/search?kind=serial&q={serial}")).await?;
    ensure!(b.text("#status").await? == "revoked" && b.text("#crl-status").await?.contains("listed in CRL number"));

    // The batch: three devices; revoking it would revoke the one certificate left.
    b.goto("/console/search").await?;
    b.choose("#kind", "batch").await?;
    b.fill("#q", "line-7").await?;
    b.click("#search button").await?;
    ensure!(b.client.find_all(Locator::Css("#devices tbody tr")).await?.len() == 3);
    b.shot("06-batch").await?;
    b.click("#revoke-selection").await?;
    ensure!(b.text("#revoke-summary").await?.starts_with("This will revoke 1 certificate of 3 devices"));
    b.click("#sign-out").await?;
    ensure!(b.at().await? == "/console/sign-in");
    b.goto("/console/devices/SN-C2").await?;
    ensure!(b.at().await? == "/console/sign-in", "signed out for good");

    // The auditor: the audit trail and the reports, and no revoke button.
    b.sign_in(&auditor).await?;
    ensure!(b.nav().await? == ["Search", "Update signing", "Reports", "Audit trail"], "{:?}", b.nav().await?);
    b.goto("/console/devices/SN-C2").await?;
    ensure!(!b.has("#revoke-device").await?, "an auditor is shown no revoke button");
    b.goto("/console/devices/SN-C1").await?;
    ensure!(b.text("#audit").await?.contains("device.revoke"), "the device's page lists its revocation");
    b.goto("/console/audit?action=device.revoke").await?;
    let trail = b.text("#audit tbody").await?;
    ensure!(trail.contains("device:SN-C1") && trail.contains(":ops"), "{trail}");
    ensure!(trail.lines().count() == 1, "filtered to the one revocation: {trail}");
    b.shot("07-audit").await?;
    b.goto("/console/reports/expiring?within=3650d").await?;
    let report = b.text("#report tbody").await?;
    ensure!(report.contains("SN-C2") && !report.contains("SN-C1"), "only the valid one expires: {report}");
    b.shot("08-report").await?;
    // … and the server refuses what the page does not offer.
    b.goto("/console/revoke?what=device&id=SN-C2").await?;
    ensure!(b.text("#problem").await?.contains("role auditor may not revoke devices"), "{}", b.text("main").await?);
    b.click("#sign-out").await?;

    // Update signing: a release manager submits (API); two approvers approve here.
    let csr = make_csr(d, "ota", P256, "/CN=ota-release", &[])?;
    let body = json!({ "csr": std::fs::read_to_string(csr)?, "classes": ["generic"] }).to_string();
    let root = d.join("root.pem");
    curl(d, &["-f", "-o", path_str(&root)?, &format!("{}/ca/identity-root.pem", svc.base_url())])?.ok()?;
    let submitted = curl_reply(
        d,
        &[
            "--cacert",
            path_str(&root)?,
            "-H",
            &format!("Authorization: Bearer {release}"),
            "-H",
            "Content-Type: application/json",
            "--data-raw",
            &body,
            &format!("https://127.0.0.1:{}/api/v1/update-requests", svc.https.port()),
        ],
    )?;
    ensure!(submitted.status == 201, "{}", submitted.describe());
    let id = serde_json::from_slice::<serde_json::Value>(&submitted.body)?["id"].as_str().context("id")?.to_string();
    b.sign_in(&alice).await?;
    ensure!(b.at().await? == "/console/updates", "an approver starts at the queue: {}", b.at().await?);
    ensure!(b.nav().await? == ["Update signing"], "{:?}", b.nav().await?);
    b.shot("09-update-queue").await?;
    b.click(&format!("a[href='/console/updates/{id}']")).await?;
    b.click("#approve").await?;
    ensure!(b.text("#notice").await?.contains("needs another approver"));
    ensure!(b.text("#approvals").await?.starts_with("1 of 2"));
    ensure!(!b.has("#approve").await? && b.has("#already-approved").await?, "no second approval by alice");
    b.shot("10-update-approved-once").await?;
    b.click("#sign-out").await?;
    b.sign_in(&bob).await?;
    b.goto(&format!("/console/updates/{id}")).await?;
    b.click("#approve").await?;
    ensure!(b.text("#notice").await?.contains("certificate is issued"), "{}", b.text("main").await?);
    ensure!(b.text("#request-status").await? == "issued");
    ensure!(b.text("#issued-certificate").await?.contains("BEGIN CERTIFICATE"));
    b.shot("11-update-issued").await?;

    b.client.clone().close().await?;
    svc.stop();
    cli.run_ok(&["audit", "verify"])?;
    Ok(())
}

/// The console's cookie from a sign-in reply.
fn session_cookie(reply: &HttpReply) -> Result<String> {
    let set = reply
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("__Host-console="))
        .map(|(_, v)| v.clone())
        .with_context(|| format!("no session cookie:\n{}", reply.describe()))?;
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        ensure!(set.split("; ").any(|a| a == attribute), "cookie without {attribute}: {set}");
    }
    Ok(set.split(';').next().unwrap_or_default().to_string())
}

/// The CSRF token of the forms on a page.
fn csrf_of(page: &str) -> Result<String> {
    let at = page.find("name=\"csrf\" value=\"").context("no CSRF field on the page")?;
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    Ok(rest[..rest.find('"').context("unterminated")?].to_string())
}

struct Curl<'a> {
    d: &'a Path,
    https: u16,
    root: PathBuf,
}

impl Curl<'_> {
    fn call(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        form: Option<&str>,
        extra: &[&str],
    ) -> Result<HttpReply> {
        let url = format!("https://127.0.0.1:{}{path}", self.https);
        let mut args = vec!["--cacert", path_str(&self.root)?, "-X", method];
        if let Some(c) = cookie {
            args.extend_from_slice(&["-b", c]);
        }
        if let Some(f) = form {
            args.extend_from_slice(&["-H", "Content-Type: application/x-www-form-urlencoded", "--data-raw", f]);
        }
        args.extend_from_slice(extra);
        args.push(&url);
        curl_reply(self.d, &args)
    }

    fn sign_in(&self, token: &str) -> Result<String> {
        let reply = self.call("POST", "/console/sign-in", None, Some(&format!("token={token}")), &[])?;
        ensure!(
            reply.status == 303 && reply.header("location") == Some("/console/"),
            "{}\n{}",
            reply.describe(),
            reply.text()
        );
        session_cookie(&reply)
    }
}

fn strict_headers(reply: &HttpReply, what: &str) -> Result<()> {
    let csp = reply.header("content-security-policy").with_context(|| format!("{what}: no CSP"))?;
    for directive in ["default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"] {
        ensure!(csp.contains(directive), "{what}: CSP without {directive}: {csp}");
    }
    ensure!(!csp.contains("unsafe-inline") && !csp.contains("script-src"), "{what}: {csp}");
    ensure!(reply.header("x-frame-options") == Some("DENY"), "{what}: {}", reply.describe());
    ensure!(reply.header("cache-control") == Some("no-store"), "{what}");
    Ok(())
}

#[test]
fn forged_forms_roles_credentials_and_headers() -> Result<()> {
    let tmp = e2e_tests::workdir("console-security")?;
    let d = tmp.path();
    let cli = fleet(d)?.env("CA_CONSOLE__IDLE_TIMEOUT_SECS", "4");
    let ops = token(&cli, "ops", "operator")?;
    let auditor = token(&cli, "ann", "auditor")?;
    let station = token(&cli, "st", "provisioning-station")?;
    let csr = make_csr(d, "alice", P256, "/CN=alice", &[])?;
    cli.run_ok(&["operators", "add", "--csr", path_str(&csr)?, "--role", "operator", "--out", "alice.pem"])?;
    let svc = Service::start(&cli)?;
    let root = d.join("root.pem");
    curl(d, &["-f", "-o", path_str(&root)?, &format!("{}/ca/identity-root.pem", svc.base_url())])?.ok()?;
    let c = Curl { d, https: svc.https.port(), root };

    // Strict headers on pages, redirects and errors alike.
    strict_headers(&c.call("GET", "/console/sign-in", None, None, &[])?, "sign-in")?;
    let no_session = c.call("GET", "/console/audit", None, None, &[])?;
    ensure!(no_session.status == 303 && no_session.header("location") == Some("/console/sign-in"));
    strict_headers(&no_session, "redirect")?;
    strict_headers(&c.call("GET", "/console/nothing-here", None, None, &[])?, "404")?;
    // Forms without a session act on nothing.
    let blind =
        c.call("POST", "/console/revoke", None, Some("what=device&id=SN-C2&reason=keyCompromise&csrf=x"), &[])?;
    ensure!(blind.status == 303, "{}", blind.describe());

    // A station's token has nothing to do here.
    let refused = c.call("POST", "/console/sign-in", None, Some(&format!("token={station}")), &[])?;
    ensure!(refused.status == 403 && refused.text().contains("nothing to do"), "{}", refused.describe());

    let session = c.sign_in(&ops)?;
    let page = c.call("GET", "/console/revoke?what=device&id=SN-C2", Some(&session), None, &[])?;
    ensure!(page.status == 200, "{}", page.describe());
    strict_headers(&page, "confirmation")?;
    let csrf = csrf_of(&page.text())?;
    let revoke = |csrf: Option<&str>, extra: &[&str]| {
        let mut form = "what=device&id=SN-C2&reason=keyCompromise".to_string();
        if let Some(t) = csrf {
            form.push_str(&format!("&csrf={t}"));
        }
        c.call("POST", "/console/revoke", Some(&session), Some(&form), extra)
    };
    let still_valid = || -> Result<bool> {
        let r = c.call("GET", "/console/devices/SN-C2", Some(&session), None, &[])?;
        Ok(r.status == 200 && !r.text().contains("badge revoked"))
    };
    // Missing, forged and another site's forms are refused, and change nothing.
    for (what, reply) in [
        ("missing CSRF token", revoke(None, &[])?),
        ("forged CSRF token", revoke(Some(&"0".repeat(64)), &[])?),
        ("another site's origin", revoke(Some(&csrf), &["-H", "Origin: https://evil.example"])?),
        ("a cross-site fetch", revoke(Some(&csrf), &["-H", "Sec-Fetch-Site: cross-site"])?),
    ] {
        ensure!(reply.status == 403, "{what}: {}", reply.describe());
        ensure!(still_valid()?, "{what} revoked the device");
    }
    // The auditor may look, not revoke, even with a valid form.
    let audit_session = c.sign_in(&auditor)?;
    let audit_page = c.call("GET", "/console/devices/SN-C2", Some(&audit_session), None, &[])?;
    let audit_csrf = csrf_of(&audit_page.text())?;
    let form = format!("what=device&id=SN-C2&reason=keyCompromise&csrf={audit_csrf}");
    let by_auditor = c.call("POST", "/console/revoke", Some(&audit_session), Some(&form), &[])?;
    ensure!(by_auditor.status == 403 && by_auditor.text().contains("may not revoke"), "{}", by_auditor.describe());
    ensure!(still_valid()?, "the auditor revoked the device");
    // The real form does.
    let done = revoke(Some(&csrf), &["-H", &format!("Origin: https://127.0.0.1:{}", c.https)])?;
    ensure!(
        done.status == 200 && done.text().contains("Revoked <strong>1 certificate</strong>"),
        "{}",
        done.describe()
    );
    ensure!(!still_valid()?);

    // An operator certificate signs in from the TLS handshake, and the session holds
    // only while that certificate comes with it.
    std::fs::write(
        d.join("alice-both.pem"),
        format!("{}{}", std::fs::read_to_string(d.join("alice.pem"))?, std::fs::read_to_string(d.join("alice.key"))?),
    )?;
    let cert = ["--cert", "alice-both.pem"];
    let reply = c.call("POST", "/console/sign-in", None, Some("method=certificate"), &cert)?;
    ensure!(reply.status == 303, "{}", reply.describe());
    let cert_session = session_cookie(&reply)?;
    let with_cert = c.call("GET", "/console/devices/SN-C1", Some(&cert_session), None, &cert)?;
    ensure!(with_cert.status == 200 && with_cert.text().contains("alice · operator"), "{}", with_cert.describe());
    let without = c.call("GET", "/console/devices/SN-C1", Some(&cert_session), None, &[])?;
    ensure!(without.status == 303, "a certificate session without the certificate: {}", without.describe());

    // Revoking the token ends its sessions at once.
    let ops_id = ops.trim_start_matches("pki_").split('.').next().context("token id")?;
    cli.run_ok(&["tokens", "revoke", "--id", ops_id])?;
    ensure!(c.call("GET", "/console/devices/SN-C1", Some(&session), None, &[])?.status == 303, "revoked token");

    // Idle for longer than console.idle_timeout_secs (4 s here): signed out.
    ensure!(c.call("GET", "/console/devices/SN-C1", Some(&audit_session), None, &[])?.status == 200);
    std::thread::sleep(Duration::from_secs(5));
    ensure!(c.call("GET", "/console/devices/SN-C1", Some(&audit_session), None, &[])?.status == 303, "idle session");

    // Sign-ins, refusals and the revocation are audited, by who did them.
    svc.stop();
    let count = |sql: &str| e2e_tests::sqlite_i64(d, sql);
    ensure!(count("SELECT count(*) FROM audit_log WHERE action = 'console.sign-in' AND outcome = 'success'")? == 3);
    let forged = "SELECT count(*) FROM audit_log WHERE action = 'device.revoke' AND outcome LIKE 'denied%' \
                  AND actor LIKE 'token:%:ops'";
    ensure!(count(forged)? >= 4, "the forged forms are audited against the operator");
    let done = "SELECT count(*) FROM audit_log WHERE action = 'device.revoke' AND outcome = 'success' \
                AND target = 'device:SN-C2' AND actor LIKE 'token:%:ops'";
    ensure!(count(done)? == 1);
    cli.run_ok(&["audit", "verify"])?;
    Ok(())
}

/// Whatever a signed-in browser sends the console's parsers — a query, a path, a form
/// — comes back as a 4xx naming what is wrong, and the console keeps serving.
#[test]
fn garbage_gets_a_reason_and_the_console_keeps_serving() -> Result<()> {
    let tmp = e2e_tests::workdir("console-garbage")?;
    let d = tmp.path();
    let cli = fleet(d)?;
    let ops = token(&cli, "ops", "operator")?;
    let auditor = token(&cli, "ann", "auditor")?;
    let svc = Service::start(&cli)?;
    let root = d.join("root.pem");
    curl(d, &["-f", "-o", path_str(&root)?, &format!("{}/ca/identity-root.pem", svc.base_url())])?.ok()?;
    let c = Curl { d, https: svc.https.port(), root };
    let session = c.sign_in(&ops)?;
    let reading = c.sign_in(&auditor)?;
    for path in ["/console/audit?before=minus-one", "/console/audit?actor=x&nope=1"] {
        let reply = c.call("GET", path, Some(&reading), None, &[])?;
        ensure!(reply.status == 400, "GET {path}: {}\n{}", reply.describe(), reply.text());
    }
    let csrf = csrf_of(&c.call("GET", "/console/revoke?what=device&id=SN-C2", Some(&session), None, &[])?.text())?;

    let gets: &[(&str, u16, &str)] = &[
        ("/console/search?kind=device&state=bogus", 400, "unknown state"),
        ("/console/search?no_such_field=1", 400, ""),
        // Not UTF-8: decoded lossily (U+FFFD), which names no device.
        ("/console/search?q=%FF%FE", 200, "\u{FFFD}"),
        ("/console/devices/bad%20id%00", 400, ""),
        ("/console/revoke?what=planet&id=earth", 400, ""),
        ("/console/reports/no-such-report", 404, ""),
    ];
    for (path, status, says) in gets {
        let reply = c.call("GET", path, Some(&session), None, &[])?;
        ensure!(reply.status == *status, "GET {path}: {}\n{}", reply.describe(), reply.text());
        ensure!(reply.text().contains(says), "GET {path}: no '{says}' in\n{}", reply.text());
        strict_headers(&reply, path)?;
    }

    let big = d.join("big.form");
    std::fs::write(&big, format!("csrf={csrf}&what=device&id={}", "A".repeat(40 * 1024)))?;
    let binary = d.join("binary.form");
    std::fs::write(&binary, [b"csrf=".as_slice(), csrf.as_bytes(), b"&what=device&id=\xff\xfe".as_slice()].concat())?;
    let (big, binary) = (format!("@{}", path_str(&big)?), format!("@{}", path_str(&binary)?));
    let form = "Content-Type: application/x-www-form-urlencoded";
    let posts: &[(&[&str], u16, &str)] = &[
        (&["-H", "Content-Type: text/plain", "--data-raw", "csrf=x"], 415, "x-www-form-urlencoded"),
        (&["-H", form, "--data-binary", &big], 413, "larger than"),
        (&["-H", form, "--data-binary", &binary], 400, "UTF-8"),
        (&["-H", form, "--data-raw", &format!("csrf={csrf}&what=device&id=SN-C2&reason=sunspots")], 400, ""),
    ];
    for (extra, status, says) in posts {
        let reply = c.call("POST", "/console/revoke", Some(&session), None, extra)?;
        ensure!(reply.status == *status, "POST {extra:?}: {}\n{}", reply.describe(), reply.text());
        ensure!(reply.text().contains(says), "POST: no '{says}' in\n{}", reply.text());
    }

    // Nothing was revoked, and the console still answers.
    let device = c.call("GET", "/console/devices/SN-C2", Some(&session), None, &[])?;
    ensure!(device.status == 200 && !device.text().contains(">revoked<"), "{}", device.text());
    svc.stop();
    Ok(())
}
