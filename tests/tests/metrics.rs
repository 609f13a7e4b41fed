//! `GET /metrics` as Prometheus reads it: after a real enrollment over EST (curl with a
//! station certificate), a refused one, OCSP requests (`openssl ocsp`) and a CRL
//! fetch, the exposition passes `promtool check metrics` and every series the alert
//! rules and the dashboard in `deploy/` use is there with the value those requests
//! must have produced. On software keys (SQLite) and on a SoftHSM token (its session
//! pool is a metric). Also `metrics.listen`: `off`, and an address of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e_tests::{curl, curl_reply, make_csr, openssl, Cli, Service, SoftHsm, P256};

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (enough of it for our output: no escapes in
/// label values, which are configured names and fixed words).
fn parse(text: &str) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').with_context(|| format!("no value: {line}"))?;
        let value: f64 = value.parse().with_context(|| format!("bad value: {line}"))?;
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').with_context(|| format!("unclosed labels: {line}"))?;
                let mut labels = BTreeMap::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").with_context(|| format!("bad label: {line}"))?;
                    labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (name.to_string(), labels)
            }
        };
        out.push(Sample { name, labels, value });
    }
    Ok(out)
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.value),
        [] => bail!("no sample {name}{labels:?}"),
        many => bail!("{} samples {name}{labels:?}: {many:?}", many.len()),
    }
}

fn scrape(svc: &Service) -> Result<(String, Vec<Sample>)> {
    let (status, body) = e2e_tests::http_get(svc.http, "/metrics")?;
    ensure!(status == 200, "GET /metrics: {status}");
    let text = String::from_utf8(body)?;
    Ok((text.clone(), parse(&text)?))
}

/// `promtool check metrics` (the exposition's syntax and Prometheus' naming rules).
fn promtool_check(dir: &Path, text: &str) -> Result<()> {
    let promtool = e2e_tests::require_tool("promtool")?;
    let mut cmd = std::process::Command::new(promtool);
    cmd.current_dir(dir).args(["check", "metrics"]);
    let out = e2e_tests::run_with_input(&mut cmd, Some(text.as_bytes()), Duration::from_secs(30))?;
    ensure!(out.success(), "promtool check metrics:\n{}", out.describe());
    Ok(())
}

/// Registers SN-M1 and a station, starts the service; enrolls SN-M1 over EST, tries
/// an unregistered device, asks OCSP about SN-M1 twice without a nonce (signed, then
/// from the cache), fetches a CRL.
fn exercise(cli: &Cli) -> Result<Service> {
    let d = cli.workdir.as_path();
    cli.run_ok(&["init"])?;
    std::fs::write(d.join("devices.csv"), "device_id,model\nSN-M1,generic\n")?;
    cli.run_ok(&["devices", "import", "--batch", "m1", "devices.csv"])?;
    make_csr(d, "station", P256, "/CN=station-m", &[])?;
    cli.run_ok(&["stations", "add", "--csr", "station.csr", "--out", "station.pem"])?;
    let svc = Service::start(&cli.clone().env("CA_METRICS__SAMPLE_SECS", "1").env("CA_METRICS__COUNT_SECS", "1"))?;
    let base = svc.base_url();
    curl(d, &["-f", "-o", "root.pem", &format!("{base}/ca/identity-root.pem")])?.ok()?;
    curl(d, &["-f", "-o", "device-ca.pem", &format!("{base}/ca/device.pem")])?.ok()?;
    let enroll = |device: &str| -> Result<e2e_tests::HttpReply> {
        make_csr(d, device, P256, &format!("/CN={device}"), &["-outform", "DER"])?;
        openssl(d, &["base64", "-in", &format!("{device}.csr"), "-out", &format!("{device}.b64")])?.ok()?;
        let url = format!("https://127.0.0.1:{}/.well-known/est/simpleenroll", svc.https.port());
        let data = format!("@{device}.b64");
        curl_reply(
            d,
            &[
                "--cacert",
                "root.pem",
                "--cert",
                "station.pem",
                "--key",
                "station.key",
                "-H",
                "Content-Type: application/pkcs10",
                "--data-binary",
                &data,
                &url,
            ],
        )
    };
    let ok = enroll("SN-M1")?;
    ensure!(ok.status == 200, "enrollment:\n{}", ok.describe());
    std::fs::write(d.join("SN-M1.p7.b64"), &ok.body)?;
    openssl(d, &["base64", "-d", "-A", "-in", "SN-M1.p7.b64", "-out", "SN-M1.p7"])?.ok()?;
    openssl(d, &["pkcs7", "-inform", "DER", "-in", "SN-M1.p7", "-print_certs", "-out", "SN-M1.pem"])?.ok()?;
    let refused = enroll("SN-NOPE")?;
    ensure!(refused.status == 403, "an unregistered device:\n{}", refused.describe());

    let url = format!("{base}/ocsp");
    for _ in 0..2 {
        let out = openssl(
            d,
            &["ocsp", "-issuer", "device-ca.pem", "-cert", "SN-M1.pem", "-url", &url, "-no_nonce", "-noverify"],
        )?;
        ensure!(out.stdout.contains("SN-M1.pem: good"), "{}", out.describe());
    }
    curl(d, &["-f", "-o", "device.crl", &format!("{base}/crl/device.crl")])?.ok()?;
    Ok(svc)
}

/// Waits until the sampler has counted the enrolled certificate.
fn scrape_after_sampling(svc: &Service) -> Result<(String, Vec<Sample>)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (text, samples) = scrape(svc)?;
        if value(&samples, "devicepki_certificates", &[("profile", "device"), ("state", "valid")])
            .is_ok_and(|v| v >= 1.0)
        {
            return Ok((text, samples));
        }
        ensure!(Instant::now() < deadline, "the sampler never counted the device certificate:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What every deployment must show after [`exercise`].
fn check_common(dir: &Path, text: &str, m: &[Sample], store: &str) -> Result<()> {
    promtool_check(dir, text)?;
    // Nothing exported that the table of metrics (what deploy/ is checked against) lacks.
    for s in m {
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|x| s.name.strip_suffix(x)).unwrap_or(&s.name);
        let known = |n: &str| ca_service::telemetry::METRICS.iter().any(|k| k.0 == n);
        ensure!(known(&s.name) || known(base), "{} is exported but not in telemetry::METRICS", s.name);
    }
    let v = |name: &str, labels: &[(&str, &str)]| value(m, name, labels);
    ensure!(v("devicepki_certificates_issued_total", &[("profile", "device"), ("issuer", "device")])? == 1.0);
    ensure!(v("devicepki_est_requests_total", &[("endpoint", "simpleenroll"), ("outcome", "ok")])? == 1.0);
    ensure!(v("devicepki_est_requests_total", &[("endpoint", "simpleenroll"), ("outcome", "unknown_device")])? == 1.0);
    // The first no-nonce request is signed, the second answered from the cache.
    ensure!(v("devicepki_ocsp_responses_total", &[("status", "good"), ("source", "signed")])? == 1.0);
    ensure!(v("devicepki_ocsp_responses_total", &[("status", "good"), ("source", "cache")])? == 1.0);
    let ocsp = [("listener", "public"), ("route", "/ocsp"), ("status", "2xx")];
    ensure!(v("devicepki_http_request_duration_seconds_count", &ocsp)? == 2.0, "OCSP latency by route");
    let est = [("listener", "https"), ("route", "/.well-known/est/simpleenroll"), ("status", "2xx")];
    ensure!(v("devicepki_http_request_duration_seconds_count", &est)? == 1.0, "EST latency by route");
    // Expiry and CRL times are real timestamps in the future.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    for (name, labels) in [
        ("devicepki_ca_not_after_timestamp_seconds", vec![("ca", "device")]),
        ("devicepki_ca_not_after_timestamp_seconds", vec![("ca", "identity-root")]),
        ("devicepki_ocsp_signer_not_after_timestamp_seconds", vec![("ca", "device")]),
        ("devicepki_tls_server_not_after_timestamp_seconds", vec![]),
        ("devicepki_crl_next_update_timestamp_seconds", vec![("ca", "device"), ("crl", "full")]),
    ] {
        let at = v(name, &labels)?;
        ensure!(at > now && at < now + 40.0 * 365.0 * 86400.0, "{name}{labels:?} = {at}");
    }
    ensure!(v("devicepki_crl_number", &[("ca", "device"), ("crl", "full")])? >= 1.0);
    ensure!(v("devicepki_crl_entries", &[("ca", "device"), ("crl", "full")])? == 0.0);
    ensure!(v("devicepki_crl_publish_period_seconds", &[("kind", "delta")])? == 60.0);
    // The device CA signed the certificate and the CRLs; the audit log key the checkpoints.
    ensure!(v("devicepki_key_signatures_total", &[("store", store), ("key", "ca-device"), ("outcome", "ok")])? >= 2.0);
    ensure!(v("devicepki_key_signatures_total", &[("store", store), ("key", "audit-log"), ("outcome", "ok")])? >= 1.0);
    ensure!(v("devicepki_audit_log_entries", &[])? >= 10.0);
    ensure!(v("devicepki_certificates", &[("profile", "device"), ("state", "valid")])? == 1.0);
    // No label carries a device id.
    ensure!(!text.contains("SN-M1") && !text.contains("SN-NOPE"), "a device id in a label:\n{text}");
    Ok(())
}

#[test]
fn metrics_on_sqlite_and_software_keys_pass_promtool() -> Result<()> {
    let dir = e2e_tests::workdir("metrics")?;
    let cli = Cli::evaluation(dir.path());
    let svc = exercise(&cli)?;
    let (text, samples) = scrape_after_sampling(&svc)?;
    check_common(dir.path(), &text, &samples, "default")?;
    // SQLite has no connection pool to report.
    ensure!(value(&samples, "devicepki_store_pool_max_connections", &[]).is_err());
    Ok(())
}

#[test]
fn metrics_on_softhsm_report_the_session_pool() -> Result<()> {
    let dir = e2e_tests::workdir("metrics-hsm")?;
    let token = SoftHsm::new()?;
    token.init_token("pki", "13579111", "246810")?;
    let mut toml = format!(
        "[key_stores.hsm]\ntype = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"pki\"\npin_env = \"TEST_HSM_PIN\"\nsessions = 3\n",
        token.module.display()
    );
    for ca in ["identity-root", "device", "station", "update-root", "update-authority"] {
        toml.push_str(&format!("\n[cas.{ca}]\nkey_store = \"hsm\"\n"));
    }
    let config = dir.path().join("pki.toml");
    std::fs::write(&config, toml)?;
    let cli = Cli::evaluation(dir.path())
        .with_config(&config)
        .env("SOFTHSM2_CONF", token.conf.to_string_lossy())
        .env("TEST_HSM_PIN", "246810");
    let svc = exercise(&cli)?;
    let (text, samples) = scrape_after_sampling(&svc)?;
    check_common(dir.path(), &text, &samples, "hsm")?;
    ensure!(value(&samples, "devicepki_hsm_sessions_max", &[("store", "hsm")])? == 3.0, "{text}");
    let in_use = value(&samples, "devicepki_hsm_sessions_in_use", &[("store", "hsm")])?;
    ensure!((0.0..=3.0).contains(&in_use), "{in_use}");
    Ok(())
}

#[test]
fn metrics_can_be_off_or_on_an_address_of_their_own() -> Result<()> {
    let dir = e2e_tests::workdir("metrics-listen")?;
    let cli = Cli::evaluation(dir.path());
    cli.run_ok(&["init"])?;
    let svc = Service::start(&cli.clone().env("CA_METRICS__LISTEN", "off"))?;
    ensure!(e2e_tests::http_get(svc.http, "/metrics")?.0 == 404, "metrics are off");
    svc.stop();

    let port = e2e_tests::free_port()?;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let svc = Service::start(&cli.clone().env("CA_METRICS__LISTEN", addr.to_string()))?;
    ensure!(e2e_tests::http_get(svc.http, "/metrics")?.0 == 404, "not on the public listener");
    let (status, body) = e2e_tests::http_get(addr, "/metrics")?;
    ensure!(status == 200, "GET {addr}/metrics: {status}");
    let text = String::from_utf8(body)?;
    ensure!(text.contains("devicepki_build_info"), "{text}");
    ensure!(e2e_tests::http_get(addr, "/healthz")?.0 == 404, "only /metrics on the metrics address");
    svc.stop();

    let out = cli.clone().env("CA_METRICS__LISTEN", "everywhere").run(&["serve"])?;
    ensure!(!out.success() && out.stderr.contains("metrics.listen"), "a bad value is an error:\n{}", out.describe());
    Ok(())
}
