//! Prometheus metrics, served at `GET /metrics` (`metrics.listen`: the public
//! listener, an address of its own, or off).
//!
//! Every metric is named and labelled here, by one function per event, so that the
//! label sets stay bounded: a label value is a configured name (CA, profile, key
//! store, CRL), a fixed word (an outcome, a refusal kind, a status), or a route
//! pattern — never a device id, a serial or a path the client chose. Names follow the
//! Prometheus conventions (`_total` counters, `_seconds` durations and
//! `_timestamp_seconds` times, base units), and `promtool check metrics` is clean
//! (the end-to-end test runs it).
//!
//! Counters and histograms are recorded where things happen; gauges about state
//! (certificates by status, expiry of CAs, CRLs, the pools, the log head) are set by
//! [`sampler`] from periodic reads, never by a scan per scrape. Without an installed
//! recorder (the CLI, unit tests) every call here is a no-op.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::HttpResponse;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub mod sampler;

/// Latency buckets, seconds: from a cached OCSP answer (tens of µs) to an HSM or a
/// database that is struggling.
const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle).
/// `None` if another recorder was installed first, e.g. by a test harness.
pub fn install() -> Option<&'static PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Some(h);
    }
    let builder = PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS);
    let recorder = match builder {
        Ok(b) => b.build_recorder(),
        Err(e) => {
            tracing::error!(error = %e, "metrics recorder");
            return None;
        }
    };
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        return HANDLE.get();
    }
    describe();
    gauge!("devicepki_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Some(HANDLE.get_or_init(|| handle))
}

/// `GET /metrics`: the Prometheus text exposition format.
pub async fn serve() -> HttpResponse {
    match HANDLE.get() {
        Some(h) => HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(h.render()),
        None => HttpResponse::NotFound().content_type("text/plain").body("metrics are off\n"),
    }
}

/// Keeps the histograms' windows rolling; the sampler calls it.
pub(crate) fn upkeep() {
    if let Some(h) = HANDLE.get() {
        h.run_upkeep();
    }
}

/// Every metric this service exports: name, type, help. `describe` registers them;
/// the tests check that the alert rules and the dashboard in `deploy/` use no other.
pub const METRICS: &[(&str, Kind, &str)] = &[
    ("devicepki_build_info", Kind::Gauge, "Always 1; the version of ca-service is a label."),
    ("devicepki_certificates_issued_total", Kind::Counter, "End-entity certificates issued (stored and audited), by profile and issuing CA."),
    ("devicepki_est_requests_total", Kind::Counter, "EST requests by endpoint and outcome (ok, pending, or the refusal's kind)."),
    ("devicepki_http_request_duration_seconds", Kind::Histogram, "Time to answer an HTTP request, by listener, route pattern and status class."),
    ("devicepki_ocsp_responses_total", Kind::Counter, "OCSP responses by certificate status (or error status) and source (cache, signed, none)."),
    ("devicepki_crl_this_update_timestamp_seconds", Kind::Gauge, "thisUpdate of the published CRL."),
    ("devicepki_crl_next_update_timestamp_seconds", Kind::Gauge, "nextUpdate of the published CRL."),
    ("devicepki_crl_number", Kind::Gauge, "cRLNumber of the published CRL."),
    ("devicepki_crl_entries", Kind::Gauge, "Entries of the last CRL this instance signed."),
    ("devicepki_crl_publish_period_seconds", Kind::Gauge, "How often CRLs of a kind are re-signed (crl.regenerate_secs, crl.base_regenerate_secs)."),
    ("devicepki_ca_not_after_timestamp_seconds", Kind::Gauge, "notAfter of a CA certificate (per CA, its newest key)."),
    ("devicepki_ca_restart_needed", Kind::Gauge, "1 while the store holds CA keys this process has not loaded (a rollover) or has destroyed one it holds: restart it."),
    ("devicepki_ocsp_signer_not_after_timestamp_seconds", Kind::Gauge, "notAfter of the delegated OCSP signer certificate an issuing CA's responder uses."),
    ("devicepki_tls_server_not_after_timestamp_seconds", Kind::Gauge, "notAfter of the HTTPS listener's server certificate."),
    ("devicepki_key_signatures_total", Kind::Counter, "Signatures by key store, key and outcome (ok, error)."),
    ("devicepki_key_signature_duration_seconds", Kind::Histogram, "Time a signature takes in its key store."),
    ("devicepki_hsm_sessions_in_use", Kind::Gauge, "PKCS#11 sessions checked out of a key store's pool."),
    ("devicepki_hsm_sessions_max", Kind::Gauge, "Size of a key store's PKCS#11 session pool."),
    ("devicepki_store_errors_total", Kind::Counter, "Storage errors by kind (unavailable, database, corrupt)."),
    ("devicepki_store_transaction_duration_seconds", Kind::Histogram, "Time of a storage transaction, by operation."),
    ("devicepki_store_pool_connections", Kind::Gauge, "Database connections of the pool, by state (idle, in_use)."),
    ("devicepki_store_pool_max_connections", Kind::Gauge, "Size of the database connection pool."),
    ("devicepki_store_pool_waiting", Kind::Gauge, "Callers waiting for a database connection."),
    ("devicepki_audit_log_entries", Kind::Gauge, "Entries of the audit log (the transparency log's tree size)."),
    ("devicepki_audit_log_checkpoint_size", Kind::Gauge, "Tree size of the newest signed checkpoint."),
    ("devicepki_audit_log_checkpoint_timestamp_seconds", Kind::Gauge, "When the newest signed checkpoint was signed."),
    ("devicepki_certificates", Kind::Gauge, "Stored certificates by issuer, profile and state (valid, expired, superseded, revoked), from a periodic count."),
    ("devicepki_rotation_devices", Kind::Gauge, "Active devices an open rotation covers, by rotation id and state (replaced, pending), from a periodic count; zero once the rotation closes."),
    ("devicepki_sampler_last_run_timestamp_seconds", Kind::Gauge, "When the gauges about stored state were last read successfully."),
];

/// A metric's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Rendered as `_bucket`, `_sum` and `_count` series.
    Histogram,
}

fn describe() {
    for &(name, kind, help) in METRICS {
        let unit = name.ends_with("_seconds").then_some(Unit::Seconds);
        match (kind, unit) {
            (Kind::Counter, _) => describe_counter!(name, help),
            (Kind::Gauge, Some(u)) => describe_gauge!(name, u, help),
            (Kind::Gauge, None) => describe_gauge!(name, help),
            (Kind::Histogram, Some(u)) => describe_histogram!(name, u, help),
            (Kind::Histogram, None) => describe_histogram!(name, help),
        }
    }
}

/// An end-entity certificate was stored and is about to be released.
pub fn certificate_issued(profile: &str, issuer: &str) {
    counter!("devicepki_certificates_issued_total", "profile" => profile.to_string(), "issuer" => issuer.to_string())
        .increment(1);
}

/// An EST request was answered: `endpoint` is the operation (`simpleenroll`, …),
/// `outcome` `ok`, `pending` or a refusal kind (`enrollment::ra::Refusal::kind`).
pub fn est_request(endpoint: &'static str, outcome: &'static str) {
    counter!("devicepki_est_requests_total", "endpoint" => endpoint, "outcome" => outcome).increment(1);
}

/// An HTTP request was answered. `route` is the matched route pattern (`None`: no
/// route matched, counted as `unmatched`, so unknown paths do not make new series).
pub fn http_request(listener: &'static str, route: Option<String>, status: u16, elapsed: Duration) {
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let route = route.unwrap_or_else(|| "unmatched".to_string());
    histogram!("devicepki_http_request_duration_seconds", "listener" => listener, "route" => route, "status" => class)
        .record(elapsed.as_secs_f64());
}

/// An OCSP response was sent: `status` the certificate's (`good`, `revoked`,
/// `unknown`; `mixed` for a multi-certificate answer) or the error status
/// (`malformed_request`, `unauthorized`, …); `source` `cache`, `signed` or `none`.
pub fn ocsp_response(status: &'static str, source: &'static str) {
    counter!("devicepki_ocsp_responses_total", "status" => status, "source" => source).increment(1);
}

/// The published CRL `name` of `ca` as the store has it.
pub fn crl_published(ca: &str, name: &str, number: u64, this_update: i64, next_update: i64) {
    let labels = [("ca", ca.to_string()), ("crl", name.to_string()), ("kind", crl_kind(name).to_string())];
    gauge!("devicepki_crl_this_update_timestamp_seconds", &labels).set(this_update as f64);
    gauge!("devicepki_crl_next_update_timestamp_seconds", &labels).set(next_update as f64);
    gauge!("devicepki_crl_number", &labels).set(number as f64);
}

/// This instance signed CRL `name` of `ca` with `entries` entries.
pub fn crl_signed(ca: &str, name: &str, entries: usize) {
    let labels = [("ca", ca.to_string()), ("crl", name.to_string()), ("kind", crl_kind(name).to_string())];
    gauge!("devicepki_crl_entries", &labels).set(entries as f64);
}

/// How often CRLs of `kind` (`full`, `delta`) are re-signed.
pub fn crl_period(kind: &'static str, secs: u64) {
    gauge!("devicepki_crl_publish_period_seconds", "kind" => kind).set(secs as f64);
}

/// `full` or `delta`, from a published CRL's name (`full`, `delta`, `shard-N`, `shard-N-delta`).
fn crl_kind(name: &str) -> &'static str {
    if name == "delta" || name.ends_with("-delta") {
        "delta"
    } else {
        "full"
    }
}

/// A certificate whose expiry is watched.
#[derive(Clone, Copy, Debug)]
pub enum Expiry<'a> {
    Ca(&'a str),
    OcspSigner(&'a str),
    TlsServer,
}

/// The notAfter (unix seconds) of a watched certificate.
pub fn not_after(what: Expiry<'_>, not_after: i64) {
    let at = not_after as f64;
    match what {
        Expiry::Ca(ca) => gauge!("devicepki_ca_not_after_timestamp_seconds", "ca" => ca.to_string()).set(at),
        Expiry::OcspSigner(ca) => {
            gauge!("devicepki_ocsp_signer_not_after_timestamp_seconds", "ca" => ca.to_string()).set(at)
        }
        Expiry::TlsServer => gauge!("devicepki_tls_server_not_after_timestamp_seconds").set(at),
    }
}

/// A key store signed (or failed to).
pub fn signature(store: &str, key: &str, ok: bool, elapsed: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    counter!("devicepki_key_signatures_total", "store" => store.to_string(), "key" => key.to_string(), "outcome" => outcome)
        .increment(1);
    histogram!("devicepki_key_signature_duration_seconds", "store" => store.to_string(), "key" => key.to_string())
        .record(elapsed.as_secs_f64());
}

/// A key store's session pool, sampled.
pub fn hsm_sessions(store: &str, usage: hsm::SessionUse) {
    gauge!("devicepki_hsm_sessions_in_use", "store" => store.to_string()).set(usage.in_use as f64);
    gauge!("devicepki_hsm_sessions_max", "store" => store.to_string()).set(usage.max as f64);
}

/// A storage error reached a caller.
pub fn store_error(e: &crate::store::StoreError) {
    use crate::store::StoreError::*;
    let kind = match e {
        Unavailable(_) => "unavailable",
        Database(_) => "database",
        Corrupt(_) => "corrupt",
        // The caller's, not the store's: not counted.
        AlreadyExists(_) | NotFound(_) | Conflict(_) => return,
    };
    counter!("devicepki_store_errors_total", "kind" => kind).increment(1);
}

/// A storage transaction of `operation` took `elapsed`.
pub fn store_transaction(operation: &'static str, elapsed: Duration) {
    histogram!("devicepki_store_transaction_duration_seconds", "operation" => operation).record(elapsed.as_secs_f64());
}

/// CA key generations stored or destroyed since this process loaded the hierarchy
/// (`changed`): 1 until it restarts, with a warning when the set changes.
pub fn restart_needed(changed: &[String]) {
    use std::sync::Mutex;
    static WARNED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if !changed.is_empty() && *warned != changed {
        tracing::warn!(cas = ?changed, "the CA hierarchy changed in the store (a rollover or a destroyed key): restart this instance to load it");
    }
    changed.clone_into(&mut warned);
    gauge!("devicepki_ca_restart_needed").set(if changed.is_empty() { 0.0 } else { 1.0 });
}

/// The database connection pool, sampled.
pub fn store_pool(pool: crate::store::PoolUse) {
    gauge!("devicepki_store_pool_connections", "state" => "idle").set(pool.idle as f64);
    gauge!("devicepki_store_pool_connections", "state" => "in_use").set(pool.in_use as f64);
    gauge!("devicepki_store_pool_max_connections").set(pool.max as f64);
    gauge!("devicepki_store_pool_waiting").set(pool.waiting as f64);
}

/// The audit log's head: its size and the newest checkpoint (size, signed at).
pub fn log_head(entries: u64, checkpoint: Option<(u64, i64)>) {
    gauge!("devicepki_audit_log_entries").set(entries as f64);
    if let Some((size, at)) = checkpoint {
        gauge!("devicepki_audit_log_checkpoint_size").set(size as f64);
        gauge!("devicepki_audit_log_checkpoint_timestamp_seconds").set(at as f64);
    }
}

/// Stored certificates by issuer, profile and state, as counted. A group counted
/// before and absent now (its last certificate expired) is set to 0, not left at its
/// old value.
pub fn certificate_counts(counts: &[crate::store::CertificateCount]) {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static SEEN: Mutex<BTreeSet<(String, String, &'static str)>> = Mutex::new(BTreeSet::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let now: BTreeSet<_> = counts.iter().map(|c| (c.issuer.clone(), c.profile.clone(), c.state.as_str())).collect();
    let gone: Vec<_> = seen.difference(&now).cloned().collect();
    for (issuer, profile, state) in gone {
        gauge!("devicepki_certificates", "issuer" => issuer, "profile" => profile, "state" => state).set(0.0);
    }
    for c in counts {
        let (issuer, profile, state) = (c.issuer.clone(), c.profile.clone(), c.state.as_str());
        gauge!("devicepki_certificates", "issuer" => issuer, "profile" => profile, "state" => state)
            .set(c.count as f64);
    }
    seen.extend(now);
}

/// The open rotations' progress (at most 100 rotations, two series each); a rotation
/// no longer open is set to 0 rather than left at its last count.
pub fn rotation_progress(open: &[(i64, crate::store::RotationProgress)]) {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static SEEN: Mutex<BTreeSet<i64>> = Mutex::new(BTreeSet::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let now: BTreeSet<i64> = open.iter().map(|(id, _)| *id).collect();
    let set = |id: i64, replaced: u64, pending: u64| {
        gauge!("devicepki_rotation_devices", "rotation" => id.to_string(), "state" => "replaced").set(replaced as f64);
        gauge!("devicepki_rotation_devices", "rotation" => id.to_string(), "state" => "pending").set(pending as f64);
    };
    for id in seen.difference(&now).copied().collect::<Vec<_>>() {
        set(id, 0, 0);
    }
    for (id, p) in open {
        set(*id, p.replaced, p.pending);
    }
    *seen = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_rotations_are_counted_and_closed_ones_zeroed() {
        let p = crate::store::RotationProgress { devices: 5, replaced: 3, pending: 2 };
        let text = rendered(|| {
            rotation_progress(&[(7, p)]);
        });
        assert!(text.contains("devicepki_rotation_devices{rotation=\"7\",state=\"pending\"} 2"), "{text}");
        assert!(text.contains("devicepki_rotation_devices{rotation=\"7\",state=\"replaced\"} 3"), "{text}");
        let text = rendered(|| {
            rotation_progress(&[(7, p)]);
            rotation_progress(&[]);
        });
        assert!(text.contains("devicepki_rotation_devices{rotation=\"7\",state=\"pending\"} 0"), "{text}");
    }

    fn rendered(f: impl FnOnce()) -> String {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, f);
        handle.render()
    }

    #[test]
    fn durations_are_histograms_and_labels_bounded() {
        let text = rendered(|| {
            http_request("public", Some("/ocsp".into()), 200, Duration::from_micros(80));
            http_request("public", None, 404, Duration::from_micros(10));
            est_request("simpleenroll", "unknown_device");
        });
        assert!(text.contains("devicepki_http_request_duration_seconds_bucket{listener=\"public\",route=\"/ocsp\",status=\"2xx\",le=\"0.0001\"} 1"), "{text}");
        assert!(text.contains("route=\"unmatched\",status=\"4xx\""), "{text}");
        assert!(
            text.contains("devicepki_est_requests_total{endpoint=\"simpleenroll\",outcome=\"unknown_device\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn crl_kinds_follow_the_published_names() {
        assert_eq!(crl_kind("full"), "full");
        assert_eq!(crl_kind("shard-3"), "full");
        assert_eq!(crl_kind("delta"), "delta");
        assert_eq!(crl_kind("shard-3-delta"), "delta");
        let text = rendered(|| crl_published("device", "shard-3-delta", 7, 100, 200));
        assert!(text.contains("devicepki_crl_number{ca=\"device\",crl=\"shard-3-delta\",kind=\"delta\"} 7"), "{text}");
    }

    /// The names in `text` that look like ours, with a histogram's series suffixes off.
    fn our_names(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("devicepki_") {
            let tail = &rest[at..];
            let end =
                tail.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
            let name = &tail[..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s).filter(|b| METRICS.iter().any(|m| m.0 == *b && m.1 == Kind::Histogram))
                })
                .unwrap_or(name);
            names.insert(base.to_string());
            rest = &tail[end..];
        }
        names
    }

    /// An alert or a panel on a metric we do not export would never fire or show.
    #[test]
    fn deploy_rules_and_dashboard_use_only_exported_metrics() {
        let files = [
            ("alerts.yml", include_str!("../../../deploy/prometheus/alerts.yml")),
            ("alerts.test.yml", include_str!("../../../deploy/prometheus/alerts.test.yml")),
            ("device-pki.json", include_str!("../../../deploy/grafana/device-pki.json")),
        ];
        for (file, text) in files {
            let names = our_names(text);
            assert!(names.len() >= 8, "{file}: {names:?}");
            for name in names {
                assert!(METRICS.iter().any(|m| m.0 == name), "{file} uses {name}, which is not exported");
            }
        }
        let dashboard: serde_json::Value = serde_json::from_str(files[2].1).unwrap();
        let panels = dashboard["panels"].as_array().unwrap();
        let exprs: Vec<&str> = panels
            .iter()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .filter_map(|t| t["expr"].as_str())
            .collect();
        assert!(exprs.len() >= 15 && exprs.iter().all(|e| e.contains("devicepki_")), "{exprs:?}");
        // Every counter and histogram is graphed somewhere (gauges may be alert-only).
        let graphed = our_names(files[2].1);
        for (name, kind, _) in METRICS {
            if *kind != Kind::Gauge {
                assert!(graphed.contains(*name), "the dashboard does not show {name}");
            }
        }
    }

    #[test]
    fn names_follow_the_conventions() {
        for (name, kind, help) in METRICS {
            assert!(name.starts_with("devicepki_") && !help.is_empty(), "{name}");
            assert_eq!(*kind == Kind::Counter, name.ends_with("_total"), "{name}: only counters end in _total");
            if *kind == Kind::Histogram {
                assert!(name.ends_with("_seconds"), "{name}: histograms here are durations in seconds");
            }
        }
    }

    #[test]
    fn caller_errors_are_not_storage_errors() {
        use crate::store::StoreError;
        let text = rendered(|| {
            store_error(&StoreError::NotFound("device x".into()));
            store_error(&StoreError::Unavailable("down".into()));
        });
        assert!(text.contains("devicepki_store_errors_total{kind=\"unavailable\"} 1"), "{text}");
        assert!(!text.contains("not_found") && !text.contains("device x"), "{text}");
    }
}
