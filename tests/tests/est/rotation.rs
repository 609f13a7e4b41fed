//! Renewal recommendations (draft-ietf-lamps-est-renewal-info) and rotations on
//! command, end to end: curl as the device asking `renewal-info` and renewing, the
//! CLI as the operator, the deadline job revoking what a rotation says to.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

impl Est {
    /// `GET renewal-info/<id>` with `<client>.pem`; `id` defaults to that certificate's.
    fn renewal_info(&self, client: &str, id: Option<&str>) -> Result<HttpReply> {
        let own;
        let id = match id {
            Some(id) => id,
            None => {
                own = cert_id(&self.der(client)?)?;
                &own
            }
        };
        let (cert, key) = (format!("{client}.pem"), format!("{client}.key"));
        let url = self.url(&format!("renewal-info/{id}"));
        curl_reply(self.path(), &["--cacert", "root.pem", "--cert", &cert, "--key", &key, &url])
    }

    pub(super) fn der(&self, name: &str) -> Result<Vec<u8>> {
        Ok(pem_certificates(&std::fs::read_to_string(self.path().join(format!("{name}.pem")))?)?.remove(0))
    }

    /// The suggested window (unix seconds) and Retry-After of a 200 answer.
    fn window(&self, client: &str) -> Result<(i64, i64, u64)> {
        let reply = self.renewal_info(client, None)?;
        ensure!(reply.status == 200, "renewal-info for {client}:\n{}", reply.describe());
        ensure!(reply.header("content-type") == Some("application/json"), "{}", reply.describe());
        let v: Value = serde_json::from_slice(&reply.body)?;
        let at = |k: &str| -> Result<i64> {
            let s = v["suggestedWindow"][k].as_str().with_context(|| format!("no {k} in {v}"))?;
            Ok(::time::OffsetDateTime::parse(s, &::time::format_description::well_known::Rfc3339)?.unix_timestamp())
        };
        let retry = reply.header("retry-after").context("no Retry-After")?.parse()?;
        Ok((at("start")?, at("end")?, retry))
    }

    /// `ca-service rotations show ID` as JSON.
    fn rotation(&self, id: i64) -> Result<Value> {
        Ok(serde_json::from_str(&self.cli.run_ok(&["rotations", "show", &id.to_string()])?.stdout)?)
    }

    /// A renewal CSR reusing `<current>.key`.
    fn same_key_renewal(&self, current: &str, device_id: &str) -> Result<HttpReply> {
        let (key, der) = (format!("{current}.key"), format!("{current}-same.csr.der"));
        let subject = renewal_subject(device_id);
        openssl(self.path(), &["req", "-new", "-key", &key, "-subj", &subject, "-outform", "DER", "-out", &der])?
            .ok()?;
        let body = STANDARD.encode(std::fs::read(self.path().join(&der))?);
        self.post("simplereenroll", Some(current), Some(PKCS10), body.as_bytes(), &[])
    }
}

/// ARI's certificate ID (RFC 9773 §4.1), from the certificate as openssl's peers see it.
fn cert_id(der: &[u8]) -> Result<String> {
    let cert = parse(der)?;
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0.to_vec()),
            _ => None,
        })
        .context("no AKI")?;
    Ok(format!("{}.{}", URL_SAFE_NO_PAD.encode(aki), URL_SAFE_NO_PAD.encode(cert.raw_serial())))
}

fn rotate(est: &Est, args: &[&str]) -> Result<i64> {
    let mut all = vec!["rotate"];
    all.extend_from_slice(args);
    let out: Value = serde_json::from_str(&est.cli.run_ok(&all)?.stdout)?;
    out["id"].as_i64().with_context(|| format!("no id in {out}"))
}

/// Waits (bounded) until the deadline job closed rotation `id`.
fn wait_closed(est: &Est, id: i64) -> Result<Value> {
    let until = Instant::now() + Duration::from_secs(40);
    loop {
        let r = est.rotation(id)?;
        if r["state"] == "closed" {
            return Ok(r);
        }
        ensure!(Instant::now() < until, "rotation {id} was not closed after its deadline: {r}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn rotation_flow(backend: Backend, prefix: &str) -> Result<()> {
    // The default renewal limit: one certificate per device per hour.
    let est = Est::start(backend, prefix, &[])?;
    for (i, id) in ["SN-1", "SN-2", "SN-3"].into_iter().enumerate() {
        est.enroll(&format!("dev{}", i + 1), id)?;
    }
    let now = now_secs() as i64;

    // The scheduled window: centred near 2/3 of the 825-day lifetime, a tenth wide.
    let (start, end, retry) = est.window("dev1")?;
    let life = 825 * 86_400;
    ensure!(retry == 86_400, "Retry-After {retry}");
    ensure!((end - start - life / 10).abs() <= 60, "window {start}..{end} is not a tenth of the lifetime");
    ensure!(((start + end) / 2 - (now + life * 2 / 3)).abs() <= life / 20 + 600, "window not near 2/3: {start}");
    ensure!(est.window("dev1")? == (start, end, retry), "the same certificate must get the same window");
    let (start2, ..) = est.window("dev2")?;
    ensure!(start2 != start, "two certificates of one minute got the same window (no jitter)");

    // Before the window, a renewal is held to the rate limit.
    let before = est.snapshot()?;
    let reply = est.renew("dev1", "dev1-early", "SN-1")?;
    est.expect_refused(&before, &reply, 429, "less than 3600 s ago", "est.simplereenroll")?;

    // Bad certificate IDs and another device's ID: refused with a reason, audited.
    let before = est.snapshot()?;
    let reply = est.renewal_info("dev1", Some("not-an-id"))?;
    est.expect_refused(&before, &reply, 400, "base64url(AKI keyIdentifier)", "est.renewal-info")?;
    let before = est.snapshot()?;
    let other = cert_id(&est.der("dev2")?)?;
    let reply = est.renewal_info("dev1", Some(&other))?;
    est.expect_refused(&before, &reply, 403, "does not name the client certificate", "est.renewal-info")?;

    // A rotation whose deadline does nothing: the device's window opens now and ends
    // at the deadline; after it, the certificate stays valid and the window is past.
    let keep = rotate(&est, &["--device", "SN-3", "--by", "3s", "--reason", "test: nothing at the deadline"])?;
    let (s3, e3, _) = est.window("dev3")?;
    let t = now_secs() as i64;
    ensure!(
        s3 <= t + 1 && e3 > t && e3 <= t + 4,
        "SN-3's window should be now (the next second) … +3 s, is {s3}..{e3} at {t}"
    );
    let closed = wait_closed(&est, keep)?;
    ensure!(closed["revoked_at_deadline"] == 0 && closed["pending_devices"] == serde_json::json!(["SN-3"]), "{closed}");
    ensure!(est.cert_status("dev3")? == "valid", "a rotation that does nothing revoked {}", est.cert_status("dev3")?);
    let (_, e3, _) = est.window("dev3")?;
    ensure!(e3 <= now_secs() as i64, "after the deadline the window is past (renew now)");

    // A key-exposure rotation of the batch that revokes at the deadline.
    let id = rotate(
        &est,
        &["--batch", "b1", "--by", "8s", "--after-deadline", "revoke", "--key-exposure", "--reason", "test: exposure"],
    )?;
    // A certificate issued in the second the rotation opened is one to replace, not a
    // replacement (times are whole seconds): renew from the next second on.
    std::thread::sleep(Duration::from_millis(1100));
    let r = est.rotation(id)?;
    ensure!(r["devices"] == 3 && r["replaced"] == 0 && r["pending"] == 3, "{r}");
    // The same key is refused inside it, though the rate limit would not apply.
    let before = est.snapshot()?;
    let reply = est.same_key_renewal("dev1", "SN-1")?;
    est.expect_refused(
        &before,
        &reply,
        400,
        &format!("rotation {id} follows a suspected key exposure"),
        "est.simplereenroll",
    )?;
    // A new key inside the window: renewed, exempt from the one-per-hour limit.
    let reply = est.renew("dev1", "dev1r", "SN-1")?;
    est.issued("dev1r", &reply).context("renewal inside the rotation")?;
    est.verify("dev1r")?;
    let r = est.rotation(id)?;
    ensure!(r["replaced"] == 1 && r["pending"] == 2, "{r}");
    ensure!(r["pending_devices"] == serde_json::json!(["SN-2", "SN-3"]), "{r}");
    // The replacement's window is its own schedule again.
    let (s1r, ..) = est.window("dev1r")?;
    ensure!(s1r > now_secs() as i64 + 86_400, "the replacement is still told to renew now: {s1r}");

    // At the deadline: the certificates not replaced are revoked as superseded.
    let closed = wait_closed(&est, id)?;
    ensure!(closed["revoked_at_deadline"] == 2, "{closed}");
    for name in ["dev2", "dev3"] {
        ensure!(est.cert_status(name)? == "revoked", "{name} is {}", est.cert_status(name)?);
        let fp = est.fingerprint(name)?;
        let reason = est
            .db
            .i64(&format!("SELECT CAST(revocation_reason AS BIGINT) FROM certificates WHERE fingerprint = '{fp}'"))?;
        ensure!(reason == 4, "{name} revoked for reason {reason}, not superseded (4)");
    }
    // The certificate dev1r replaced was revoked at the renewal (reason superseded):
    // after a key exposure its key may be in other hands.
    ensure!(est.cert_status("dev1r")? == "valid" && est.cert_status("dev1")? == "revoked");
    let fp = est.fingerprint("dev1")?;
    let reason = est
        .db
        .i64(&format!("SELECT CAST(revocation_reason AS BIGINT) FROM certificates WHERE fingerprint = '{fp}'"))?;
    ensure!(reason == 4, "dev1 revoked for reason {reason}, not superseded (4)");
    let audited = est.db.i64(&format!(
        "SELECT count(*) FROM audit_log WHERE action = 'rotation.deadline' AND target = 'rotation:{id}'"
    ))?;
    ensure!(audited == 1, "the deadline was audited {audited} times");

    // Bad orders are refused with a reason and audited.
    let audit = est.db.i64("SELECT count(*) FROM audit_log WHERE action = 'rotation.create'")?;
    for (args, reason) in [
        (vec!["--batch", "b1", "--by", "yesterday"], "neither RFC 3339"),
        (vec!["--batch", "b1", "--by", "2020-01-01T00:00:00Z"], "not in the future"),
        (vec!["--batch", "nope", "--by", "1d"], "batch:nope"),
        (vec!["--batch", "b1", "--by", "1d", "--after-deadline", "explode"], "'nothing' or 'revoke'"),
    ] {
        let mut all = vec!["rotate"];
        all.extend_from_slice(&args);
        let out = est.cli.run(&all)?;
        ensure!(!out.success() && out.stderr.contains(reason), "{args:?}: {}", out.describe());
    }
    let denied =
        est.db.i64("SELECT count(*) FROM audit_log WHERE action = 'rotation.create' AND outcome LIKE 'denied: %'")?;
    let now_audit = est.db.i64("SELECT count(*) FROM audit_log WHERE action = 'rotation.create'")?;
    ensure!(denied == 4 && now_audit == audit + 4, "refusals audited: {denied} of {}", now_audit - audit);
    est.finish()
}

#[test]
fn renewal_windows_and_rotations_sqlite() -> Result<()> {
    rotation_flow(Backend::Sqlite, "rotation-sqlite")
}

#[test]
fn renewal_windows_and_rotations_postgres() -> Result<()> {
    rotation_flow(Backend::Postgres, "rotation-pg")
}
