//! CA rollover end to end, with openssl as the device and as the relying party: enroll
//! under the Device Issuing CA's first key → `ca rollover --ca device` → the old
//! certificate still verifies, its OCSP answer and its key's CRL still answer → a
//! renewal with the old certificate returns one under the new key that verifies with
//! the same root → revoking an old-key certificate shows in the old key's CRL and OCSP
//! only → a root rollover's `cacerts` carries OldWithOld, NewWithNew, OldWithNew and
//! NewWithOld, and openssl verifies across them with either root → the retired key is
//! destroyed once its certificates have expired. Refusals carry a reason and are audited.

use super::*;

impl Est {
    /// `ca-service ca …`.
    fn ca_cli(&self, args: &[&str]) -> Result<e2e_tests::Output> {
        let mut all = vec!["ca"];
        all.extend_from_slice(args);
        self.cli.run(&all)
    }

    /// `cacerts` as a device fetches it when it renews, written to `<name>.pem`.
    fn cacerts(&self, name: &str) -> Result<Vec<Vec<u8>>> {
        let reply = self.get("cacerts")?;
        ensure!(reply.status == 200, "cacerts:\n{}", reply.describe());
        self.decode_certs_only(name, &reply.body)
    }

    /// `openssl verify -x509_strict` of `leaf` trusting only `anchor`, with `untrusted`
    /// as the intermediates offered; `extra` adds e.g. `-crl_check`.
    fn verify_across(&self, anchor: &str, untrusted: &str, leaf: &str, extra: &[&str]) -> Result<e2e_tests::Output> {
        let mut args = vec!["verify", "-x509_strict", "-CAfile", anchor, "-untrusted", untrusted];
        args.extend_from_slice(extra);
        args.push(leaf);
        openssl(self.path(), &args)
    }

    /// `GET /crl/<ca>.crl` as a relying party fetches it, as PEM in `<ca>.crl.pem`.
    fn fetch_crl(&self, ca: &str) -> Result<String> {
        let (der, pem) = (format!("{ca}.crl"), format!("{ca}.crl.pem"));
        curl(self.path(), &["-f", "-o", &der, &format!("{}/crl/{ca}.crl", self.svc.base_url())])?.ok()?;
        openssl(self.path(), &["crl", "-inform", "DER", "-in", &der, "-out", &pem])?.ok()?;
        Ok(pem)
    }

    /// The CRL number and the serials (openssl's hex) `<ca>.crl.pem` lists.
    fn crl_contents(&self, ca: &str) -> Result<(u64, String)> {
        let text = openssl(self.path(), &["crl", "-in", &format!("{ca}.crl.pem"), "-noout", "-text"])?.ok()?.stdout;
        let number = text
            .lines()
            .skip_while(|l| !l.contains("X509v3 CRL Number"))
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("no CRL number in\n{text}"))?;
        Ok((number, text))
    }

    /// `openssl ocsp` for `leaf` issued by `issuer`, the response verified against the
    /// root with `cacerts.pem` as the other certificates: `good`, `revoked`, ….
    fn ocsp_status(&self, issuer: &str, leaf: &str) -> Result<String> {
        let url = format!("{}/ocsp", self.svc.base_url());
        let args = [
            "ocsp",
            "-issuer",
            issuer,
            "-cert",
            leaf,
            "-url",
            &url,
            "-CAfile",
            "root.pem",
            "-verify_other",
            "cacerts.pem",
            "-no_nonce",
        ];
        let out = openssl(self.path(), &args)?;
        ensure!(out.success() && out.stderr.contains("Response verify OK"), "openssl ocsp:\n{}", out.describe());
        let line = out.stdout.lines().find(|l| l.starts_with(&format!("{leaf}: "))).context("no status line")?;
        Ok(line[leaf.len() + 2..].trim().to_string())
    }

    /// The serial of `<name>.pem` as openssl prints it (upper-case hex).
    fn serial(&self, name: &str) -> Result<String> {
        let out = openssl(self.path(), &["x509", "-in", &format!("{name}.pem"), "-noout", "-serial"])?.ok()?;
        Ok(out.stdout.trim().trim_start_matches("serial=").to_string())
    }

    /// A CLI command that must fail with `reason`, audited once as `action` `denied: …`.
    fn expect_cli_refused(&self, args: &[&str], reason: &str, action: &str) -> Result<()> {
        let seq = self.db.i64("SELECT COALESCE(MAX(seq), 0) FROM audit_log")?;
        let out = self.ca_cli(args)?;
        ensure!(
            !out.success() && out.stderr.contains(reason),
            "ca {args:?} should fail with {reason:?}:\n{}",
            out.describe()
        );
        // The server's own jobs (crl.publish) may write meanwhile: only this action counts.
        let rows = self.db.strings(&format!(
            "SELECT action || ' ' || outcome FROM audit_log WHERE seq > {seq} AND action LIKE 'ca.%'"
        ))?;
        ensure!(
            matches!(rows.as_slice(), [one] if one.starts_with(&format!("{action} denied: ")) && one.contains(reason)),
            "ca {args:?}: the refusal should be audited once as {action} denied: …{reason}…, got {rows:?}"
        );
        Ok(())
    }
}

/// Subject key identifier of a certificate (DER).
fn ski(der: &[u8]) -> Result<Vec<u8>> {
    parse(der)?
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .context("no SKI")
}

fn aki(der: &[u8]) -> Result<Vec<u8>> {
    parse(der)?
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0.to_vec()),
            _ => None,
        })
        .context("no AKI")
}

fn subject(der: &[u8]) -> Result<String> {
    Ok(parse(der)?.subject().to_string())
}

fn rollover_flow(backend: Backend, prefix: &str) -> Result<()> {
    let env = [NO_RENEWAL_LIMIT, ("CA_CRL__REGENERATE_SECS", "1"), ("CA_METRICS__SAMPLE_SECS", "1")];
    let mut est = Est::start(backend, prefix, &env)?;
    est.enroll("dev1", "SN-1")?;
    est.enroll("dev2", "SN-2")?;
    let old_ca = est.der("device-ca")?;
    let root = est.der("root")?;

    // Bad orders first: refused with a reason, audited, nothing created.
    est.expect_cli_refused(&["rollover", "--ca", "nope"], "unknown CA 'nope'", "ca.rollover")?;
    est.expect_cli_refused(&["rollover", "--ca", "device", "--at", "yesterday"], "neither RFC 3339", "ca.rollover")?;
    est.expect_cli_refused(&["rollover", "--ca", "identity-root", "--external"], "is a root", "ca.rollover")?;
    est.expect_cli_refused(&["destroy", "--ca", "device"], "roll 'device' over first", "ca.destroy")?;
    est.expect_cli_refused(&["destroy", "--ca", "device.7"], "unknown CA 'device.7'", "ca.destroy")?;
    ensure!(est.db.i64("SELECT count(*) FROM cas")? == 5, "a refused rollover stored a CA");

    // The rollover: a new key, certified by the root, issuing at once. The running
    // instance has not loaded it, and says so until it is restarted.
    let restart_needed = |est: &Est, want: u8| -> Result<()> {
        let line = format!("devicepki_ca_restart_needed {want}");
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, body) = e2e_tests::http_get(est.svc.http, "/metrics")?;
            if String::from_utf8_lossy(&body).lines().any(|l| l == line) {
                return Ok(());
            }
            ensure!(Instant::now() < until, "/metrics never showed {line}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    restart_needed(&est, 0)?;
    let out = est.ca_cli(&["rollover", "--ca", "device"])?;
    ensure!(out.success() && out.stdout.contains("device.2"), "rollover:\n{}", out.describe());
    restart_needed(&est, 1)?;
    est.svc.restart(&est.cli)?;
    restart_needed(&est, 0)?;
    let list = est.ca_cli(&["list"])?.ok()?.stdout;
    ensure!(list.contains("retired") && list.contains("(by device.2)") && list.contains("current"), "ca list:\n{list}");

    // cacerts: both issuing CAs (same subject, new key identifier) and the root.
    let cas = est.cacerts("cacerts")?;
    ensure!(cas.len() == 3 && cas.contains(&old_ca) && cas.contains(&root), "cacerts holds {} certificates", cas.len());
    let new_ca = cas.iter().find(|c| **c != old_ca && **c != root).context("no new issuing CA")?.clone();
    ensure!(subject(&new_ca)? == subject(&old_ca)? && ski(&new_ca)? != ski(&old_ca)?, "same subject, new key id");
    ensure!(aki(&new_ca)? == ski(&root)?, "the new issuing CA is certified by the same root");
    e2e_tests::write_pem(&est.path().join("device-ca-2.pem"), &new_ca)?;

    // The old certificate still verifies; its OCSP and its key's CRL still answer.
    est.verify("dev1")?;
    ensure!(est.ocsp_status("device-ca.pem", "dev1.pem")? == "good");
    est.fetch_crl("device")?;
    let crl = ["-crl_check", "-CRLfile", "device.crl.pem"];
    let out = est.verify_across("root.pem", "device-ca.pem", "dev1.pem", &crl)?;
    ensure!(out.stdout.contains("dev1.pem: OK"), "old certificate against the old key's CRL:\n{}", out.describe());

    // A renewal with the old-key certificate returns one under the new key, which
    // verifies with the same root and the fetched cacerts.
    let reply = est.renew("dev1", "dev1r", "SN-1")?;
    let renewed = est.issued("dev1r", &reply)?;
    ensure!(aki(&renewed)? == ski(&new_ca)?, "the renewal was not issued under the new key");
    let out = est.verify_across("root.pem", "cacerts.pem", "dev1r.pem", &["-purpose", "sslclient"])?;
    ensure!(out.stdout.contains("dev1r.pem: OK"), "renewed certificate:\n{}", out.describe());
    ensure!(est.ocsp_status("device-ca-2.pem", "dev1r.pem")? == "good");
    // A new enrollment too.
    let enrolled = est.enroll("dev3", "SN-3")?;
    ensure!(aki(&enrolled)? == ski(&new_ca)?, "a new enrollment was not issued under the new key");

    // Revoking an old-key certificate: in the old key's CRL and OCSP, not the new one's.
    let (old_number, _) = {
        est.fetch_crl("device")?;
        est.crl_contents("device")?
    };
    est.cli.run_ok(&["revoke", "--issuer", "device", "--serial", &est.serial("dev2")?, "--reason", "keyCompromise"])?;
    let until = Instant::now() + Duration::from_secs(20);
    while est.ocsp_status("device-ca.pem", "dev2.pem")? == "good" {
        ensure!(Instant::now() < until, "OCSP still says good for the revoked old-key certificate");
        std::thread::sleep(Duration::from_millis(250));
    }
    ensure!(est.ocsp_status("device-ca.pem", "dev2.pem")? == "revoked");
    // The CLI re-signed the CRLs it changed; the server serves them within a second.
    let number = loop {
        est.fetch_crl("device")?;
        let (number, text) = est.crl_contents("device")?;
        if text.contains(&est.serial("dev2")?) {
            break number;
        }
        ensure!(Instant::now() < until, "the old key's CRL #{number} does not list dev2:\n{text}");
        std::thread::sleep(Duration::from_millis(250));
    };
    ensure!(number > old_number, "CRL #{number} listing dev2 is not newer than #{old_number}");
    let out = est.verify_across("root.pem", "device-ca.pem", "dev2.pem", &crl)?;
    ensure!(
        !out.success() && out.describe().contains("certificate revoked"),
        "dev2 against its CRL:\n{}",
        out.describe()
    );
    est.fetch_crl("device.2")?;
    let (new_number, new_text) = est.crl_contents("device.2")?;
    ensure!(!new_text.contains(&est.serial("dev2")?), "the new key's CRL lists an old-key certificate");
    ensure!(new_number < number, "each key numbers its own CRLs: device.2 #{new_number}, device #{number}");
    let out = openssl(est.path(), &["crl", "-in", "device.2.crl.pem", "-CAfile", "device-ca-2.pem", "-noout"])?;
    ensure!(out.describe().contains("verify OK"), "the new key's CRL is signed by it:\n{}", out.describe());
    let crl2 = ["-crl_check", "-CRLfile", "device.2.crl.pem"];
    let out = est.verify_across("root.pem", "cacerts.pem", "dev1r.pem", &crl2)?;
    ensure!(out.stdout.contains("dev1r.pem: OK"), "new certificate against the new key's CRL:\n{}", out.describe());

    // The retired key is not destroyed while a certificate it signed is valid.
    est.expect_cli_refused(&["destroy", "--ca", "device"], "valid until", "ca.destroy")?;
    est.expect_cli_refused(&["destroy", "--ca", "device.2"], "is the current key of CA 'device'", "ca.destroy")?;

    // A root rollover: NewWithNew, and the two keys certify each other.
    let out = est.ca_cli(&["rollover", "--ca", "identity-root"])?;
    ensure!(out.success() && out.stdout.contains("identity-root.2"), "root rollover:\n{}", out.describe());
    ensure!(out.stdout.contains("Signed the first CRL of identity-root.2"), "{}", out.describe());
    // Its children roll over under the new root, here at a chosen time: a few seconds on.
    let out = est.ca_cli(&["rollover", "--ca", "device", "--at", "4s"])?;
    let takeover = now_secs() + 4;
    ensure!(out.success() && out.stdout.contains("device.3"), "rollover under the new root:\n{}", out.describe());
    est.svc.restart(&est.cli)?;
    let list = est.ca_cli(&["list"])?.ok()?.stdout;
    ensure!(list.contains("issues from"), "ca list before the takeover:\n{list}");
    // The new root's first CRL is published (where its children's CRL distribution point is).
    est.fetch_crl("identity-root.2")?;
    let reply = est.renew("dev1r", "dev1r-early", "SN-1")?;
    ensure!(aki(&est.issued("dev1r-early", &reply)?)? == ski(&new_ca)?, "issued under device.3 before its time");
    while now_secs() <= takeover {
        std::thread::sleep(Duration::from_millis(200));
    }
    let cas = est.cacerts("cacerts")?;
    let root_subject = subject(&root)?;
    let roots: Vec<Vec<u8>> = cas.iter().filter(|c| subject(c).ok().as_ref() == Some(&root_subject)).cloned().collect();
    ensure!(
        roots.len() == 4,
        "cacerts should carry OldWithOld, NewWithNew, OldWithNew and NewWithOld, has {}",
        roots.len()
    );
    // Self-signed: signed by the key it certifies (no AKI, or the AKI is its SKI).
    let self_signed: Vec<Vec<u8>> =
        roots.iter().filter(|c| aki(c).ok().is_none_or(|a| Some(a) == ski(c).ok())).cloned().collect();
    ensure!(self_signed.len() == 2 && roots.contains(&root), "OldWithOld and NewWithNew are self-signed");
    let new_root = self_signed.iter().find(|c| **c != root).context("no NewWithNew")?.clone();
    e2e_tests::write_pem(&est.path().join("root-2.pem"), &new_root)?;
    let out = openssl(est.path(), &["crl", "-in", "identity-root.2.crl.pem", "-CAfile", "root-2.pem", "-noout"])?;
    ensure!(out.describe().contains("verify OK"), "the new root's CRL:\n{}", out.describe());
    ensure!(cas.len() == 4 + 3, "and the three live issuing CA keys, has {}", cas.len());

    let reply = est.renew("dev1r-early", "dev1rr", "SN-1")?;
    let renewed = est.issued("dev1rr", &reply)?;
    let device3 = cas.iter().find(|c| ski(c).ok() == aki(&renewed).ok()).context("issuer of the renewal")?;
    ensure!(aki(device3)? == ski(&new_root)?, "device.3 is certified by the new root");
    // The links: NewWithOld is signed by the old root's key, OldWithNew by the new one's.
    let link = |signer: &[u8]| -> Result<Vec<u8>> {
        let want = ski(signer)?;
        roots.iter().find(|c| !self_signed.contains(c) && aki(c).ok() == Some(want.clone())).cloned().context("no link")
    };
    let (new_with_old, old_with_new) = (link(&root)?, link(&new_root)?);
    ensure!(
        ski(&new_with_old)? == ski(&new_root)? && ski(&old_with_new)? == ski(&root)?,
        "links certify the other key"
    );
    // The device's step: it trusts the new root's key because NewWithOld, which carries
    // it, verifies under the root it already trusts.
    e2e_tests::write_pem(&est.path().join("new-with-old.pem"), &new_with_old)?;
    e2e_tests::write_pem(&est.path().join("old-with-new.pem"), &old_with_new)?;
    let out = est.verify_across("root.pem", "root.pem", "new-with-old.pem", &[])?;
    ensure!(out.stdout.contains("new-with-old.pem: OK"), "NewWithOld under the old root:\n{}", out.describe());
    // A relying party that holds only the old root verifies a new chain across
    // NewWithOld; one that holds only the new root verifies an old chain across OldWithNew.
    let bundle = |name: &str, certs: &[&Vec<u8>]| -> Result<()> {
        std::fs::write(est.path().join(name), certs.iter().map(|c| e2e_tests::to_pem(c)).collect::<String>())?;
        Ok(())
    };
    bundle("across-old.pem", &[device3, &new_with_old])?;
    bundle("across-new.pem", &[&new_ca, &old_with_new])?;
    for (anchor, untrusted, leaf) in
        [("root.pem", "across-old.pem", "dev1rr.pem"), ("root-2.pem", "across-new.pem", "dev1r.pem")]
    {
        let out = est.verify_across(anchor, untrusted, leaf, &["-purpose", "sslclient"])?;
        ensure!(out.stdout.contains(&format!("{leaf}: OK")), "{leaf} trusting only {anchor}:\n{}", out.describe());
    }
    // And the served TLS chain reaches the old root too (curl trusts only root.pem).
    ensure!(est.get("cacerts")?.status == 200);

    // After the first key's last certificate expired (simulated: its certificates'
    // notAfter moved into the past), it is destroyed, and a destroyed key is gone.
    let past = now_secs() as i64 - 10;
    est.db.execute(&format!(
        "UPDATE certificates SET not_after = {past} WHERE issuer = 'device' AND profile NOT LIKE 'ocsp-signer-%'"
    ))?;
    let out = est.ca_cli(&["destroy", "--ca", "device"])?;
    ensure!(out.success(), "destroy:\n{}", out.describe());
    ensure!(est.db.i64("SELECT count(*) FROM audit_log WHERE action = 'ca.destroy' AND outcome = 'success'")? == 1);
    let out = est.ca_cli(&["csr", "--ca", "device"])?;
    ensure!(
        !out.success() && out.stderr.contains("no key labelled"),
        "the destroyed key still signs:\n{}",
        out.describe()
    );
    est.expect_cli_refused(&["destroy", "--ca", "device"], "was destroyed at", "ca.destroy")?;
    est.svc.restart(&est.cli)?;
    let list = est.ca_cli(&["list"])?.ok()?.stdout;
    ensure!(list.contains("destroyed"), "ca list:\n{list}");
    let cas = est.cacerts("cacerts")?;
    ensure!(!cas.contains(&old_ca), "cacerts still serves the destroyed key's CA");
    // Its last CRL stays published (without dev2 by now if the job re-signed it after
    // the simulated expiry: an expired certificate leaves the CRL).
    est.fetch_crl("device")?;
    let out = openssl(est.path(), &["crl", "-in", "device.crl.pem", "-CAfile", "device-ca.pem", "-noout"])?;
    ensure!(out.describe().contains("verify OK"), "the destroyed key's last CRL:\n{}", out.describe());
    est.finish()
}

#[test]
fn ca_rollover_sqlite() -> Result<()> {
    rollover_flow(Backend::Sqlite, "rollover-sqlite")
}

#[test]
fn ca_rollover_postgres() -> Result<()> {
    rollover_flow(Backend::Postgres, "rollover-pg")
}

#[test]
fn ca_rollover_postgres_softhsm() -> Result<()> {
    rollover_flow(Backend::PostgresHsm, "rollover-hsm")
}
