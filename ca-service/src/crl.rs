//! CRL publishing (RFC 5280 §5).
//!
//! A scheduled job signs each issuing CA's CRLs every `crl.regenerate_secs` (and at
//! once when this instance revokes something) and stores them; every instance
//! serves the newest stored one. On PostgreSQL the job runs under an advisory lock,
//! so with several instances exactly one signs per round, and CRL numbers come from
//! the database: monotonic across restarts and instances.
//!
//! What is published, per issuing CA:
//! * `/crl/{ca}.crl` — the complete CRL, re-signed every `crl.base_regenerate_secs`;
//! * `/crl/{ca}/delta.crl` — with `crl.delta_crls`, a delta CRL (critical Delta CRL
//!   Indicator naming its base) of what was revoked since that base; the base and
//!   the certificates carry freshestCRL pointing at it;
//! * `/crl/{ca}/{n}.crl` and `/crl/{ca}/{n}-delta.crl` — with `crl.shards` > 1, the
//!   CRL of shard n (a critical issuingDistributionPoint naming its URL, which is the
//!   cRLDistributionPoints of exactly the certificates assigned to shard n) and its
//!   delta.
//!
//! Roots keep their keys offline: `ca-service crl --ca <root>` signs their CRL in a
//! ceremony and stores it here for publishing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use revocation::crl::{build_crl, CrlKind, CrlParams, IssuingDistributionPoint, RevokedEntry};
use tokio::sync::Notify;
use x509_parser::prelude::FromDer;

use crate::audit::AuditEvent;
use crate::issuance::{unix, Pki};
use crate::profile::CrlScope;
use crate::store::{CrlHead, CrlStore, PublishedCrl, RevocationReader};

/// Deltas also list revocations this long before their base was signed: a
/// revocation committed while the base was being built is then in one or the other.
const DELTA_OVERLAP_SECS: i64 = 120;
/// How long a served CRL is kept in memory before the store is asked again.
const SERVE_CACHE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum CrlServeError {
    #[error("no such CA")]
    UnknownCa,
    #[error("this CA's key is offline; its CRL is signed with `ca-service crl`")]
    Offline,
    #[error("{0}")]
    Internal(String),
}

/// The published CRL's name for a scope: `full`, `delta`, `shard-N`, `shard-N-delta`.
fn crl_name(scope: CrlScope, delta: bool) -> String {
    let base = match scope {
        CrlScope::Full => "full".to_string(),
        CrlScope::Shard(n) => format!("shard-{n}"),
    };
    match (scope, delta) {
        (CrlScope::Full, true) => "delta".into(),
        (_, true) => format!("{base}-delta"),
        (_, false) => base,
    }
}

/// What to sign.
#[derive(Clone, Copy, Debug)]
pub enum CrlRequest {
    /// The complete CRL of a scope.
    Base(CrlScope),
    /// The delta updating the base numbered `base_number`, signed at `base_time`.
    Delta { scope: CrlScope, base_number: u64, base_time: i64 },
}

/// Builds and signs one CRL of `ca_name` with `signer` (its key), valid for
/// `validity`, taking the next CRL number from the store.
pub async fn sign_crl(
    pki: &Pki,
    ca_name: &str,
    signer: Arc<dyn hsm::Signer>,
    validity: Duration,
    request: CrlRequest,
) -> Result<PublishedCrl, CrlServeError> {
    let internal = |e: String| CrlServeError::Internal(e);
    let ca = pki.ca(ca_name).ok_or(CrlServeError::UnknownCa)?.clone();
    // Whole seconds: what the CRL encodes, and what deltas are measured from.
    let now = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix(SystemTime::now())).unwrap_or(0));
    let now_secs = unix(now);
    let (scope, kind, since) = match request {
        CrlRequest::Base(scope) => (scope, CrlKind::Full, None),
        CrlRequest::Delta { scope, base_number, base_time } => {
            (scope, CrlKind::Delta { base_crl_number: base_number }, Some(base_time - DELTA_OVERLAP_SECS))
        }
    };
    let shard = match scope {
        CrlScope::Full => None,
        CrlScope::Shard(n) => Some(n),
    };
    // A CRL is built from what was revoked (read-only) and numbered by the CRL store.
    let (revocations, crls): (&dyn RevocationReader, &dyn CrlStore) = (pki.store.as_ref(), pki.store.as_ref());
    let revoked =
        revocations.revoked_for_crl(ca_name, now_secs, shard, since).await.map_err(|e| internal(e.to_string()))?;
    let number = crls.next_crl_number(ca_name).await.map_err(|e| internal(e.to_string()))?;
    let (scope_url, delta_url) = pki.urls.crl_of(ca_name, scope);
    // Deltas only for CAs the service signs for online; roots publish complete CRLs.
    let freshest = (pki.urls.delta_crls && ca.issuer().is_some() && matches!(kind, CrlKind::Full)).then_some(delta_url);
    let der = tokio::task::spawn_blocking(move || {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&ca.record.cert_der)
            .map_err(|e| internal(format!("CA certificate: {e}")))?;
        let ski = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .ok_or_else(|| internal("the CA certificate has no subjectKeyIdentifier".into()))?;
        let entries: Vec<RevokedEntry> = revoked
            .into_iter()
            .map(|(serial, at, reason)| RevokedEntry {
                serial,
                revoked_at: UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0)),
                reason,
            })
            .collect();
        let params = CrlParams {
            issuer_name_der: cert.subject().as_raw(),
            issuer_key_id: &ski,
            crl_number: number,
            this_update: now,
            next_update: now + validity,
            kind,
            entries: &entries,
            freshest_crl_url: freshest.as_deref(),
            distribution_point: matches!(scope, CrlScope::Shard(_)).then_some(IssuingDistributionPoint {
                url: &scope_url,
                only_contains_user_certs: true,
                only_contains_ca_certs: false,
            }),
        };
        build_crl(&params, signer.as_ref()).map_err(|e| internal(e.to_string()))
    })
    .await
    .map_err(|e| internal(e.to_string()))??;
    Ok(PublishedCrl {
        ca: ca_name.to_string(),
        name: crl_name(scope, matches!(kind, CrlKind::Delta { .. })),
        number,
        base_number: match kind {
            CrlKind::Delta { base_crl_number } => Some(base_crl_number),
            CrlKind::Full => None,
        },
        this_update: now_secs,
        next_update: unix(now + validity),
        der,
    })
}

/// One round of the scheduled job: for every issuing CA and scope, a new base when
/// the last one is older than `crl.base_regenerate_secs` (or nears its nextUpdate),
/// and a new delta. Does nothing if another instance holds the job lock. Returns
/// how many CRLs it published.
pub async fn publish_due(pki: &Pki) -> Result<usize, CrlServeError> {
    let internal = |e: crate::store::StoreError| CrlServeError::Internal(e.to_string());
    let crls: &dyn CrlStore = pki.store.as_ref();
    let Some(_lock) = crls.try_job_lock("crl-publish").await.map_err(internal)? else {
        return Ok(0);
    };
    let cfg = &pki.config.crl;
    let validity = Duration::from_secs(cfg.validity_secs);
    let every = i64::try_from(cfg.regenerate_secs.max(1)).unwrap_or(i64::MAX);
    let base_every = i64::try_from(cfg.base_regenerate_secs.unwrap_or(cfg.regenerate_secs).max(1)).unwrap_or(i64::MAX);
    let urls = &pki.urls;
    let mut scopes = vec![CrlScope::Full];
    if urls.crl_shards > 1 {
        scopes.extend((0..urls.crl_shards).map(CrlScope::Shard));
    }
    let mut published = Vec::new();
    for ca in pki.cas() {
        let Some(signer) = ca.issuer().map(|i| i.key().signer().clone()) else { continue };
        let name = ca.record.name.as_str();
        for &scope in &scopes {
            let now = unix(SystemTime::now());
            let stored = crls.published_crl_head(name, &crl_name(scope, false)).await.map_err(internal)?;
            let base = match stored {
                Some(b) if now - b.this_update < base_every && b.next_update - now > 2 * every => b,
                _ => {
                    let b = sign_crl(pki, name, signer.clone(), validity, CrlRequest::Base(scope)).await?;
                    let head = CrlHead { number: b.number, this_update: b.this_update, next_update: b.next_update };
                    published.push(b);
                    head
                }
            };
            if urls.delta_crls {
                let delta = CrlRequest::Delta { scope, base_number: base.number, base_time: base.this_update };
                published.push(sign_crl(pki, name, signer.clone(), validity, delta).await?);
            }
        }
    }
    if published.is_empty() {
        return Ok(0);
    }
    let audit = AuditEvent::success("system:crl-publisher", "crl.publish", "crls").with_details(serde_json::json!({
        "published": published.iter().map(|c| format!("{}/{} #{}", c.ca, c.name, c.number)).collect::<Vec<_>>(),
    }));
    crls.publish_crls(&published, audit).await.map_err(internal)?;
    Ok(published.len())
}

/// Wakes the publisher early (after a revocation in this process).
#[derive(Debug, Default)]
pub struct CrlPublisher {
    wake: Notify,
}

impl CrlPublisher {
    pub fn revoked(&self) {
        self.wake.notify_one();
    }

    /// Runs the job every `crl.regenerate_secs`, and soon after a revocation here.
    pub fn spawn(self: Arc<Self>, pki: Arc<Pki>) {
        let every = Duration::from_secs(pki.config.crl.regenerate_secs.max(1));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = self.wake.notified() => {}
                }
                if let Err(e) = publish_due(&pki).await {
                    tracing::error!(error = %e, "publishing CRLs failed");
                }
            }
        });
    }
}

/// (CA, name) → when read from the store, the CRL.
type Served = HashMap<(String, String), (Instant, Arc<PublishedCrl>)>;

/// Served CRLs, briefly kept in memory.
#[derive(Debug, Default)]
pub struct CrlCache {
    served: Mutex<Served>,
}

impl CrlCache {
    async fn get(&self, crls: &dyn CrlStore, ca: &str, name: &str) -> Result<Option<Arc<PublishedCrl>>, CrlServeError> {
        let internal = |e: crate::store::StoreError| CrlServeError::Internal(e.to_string());
        let key = (ca.to_string(), name.to_string());
        let cached = self.served.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        if let Some((read, crl)) = &cached {
            if read.elapsed() < SERVE_CACHE {
                return Ok(Some(crl.clone()));
            }
        }
        // Only the head is read to see whether a newer CRL exists; the bytes only when
        // one does.
        let Some(head) = crls.published_crl_head(ca, name).await.map_err(internal)? else { return Ok(None) };
        let crl = match cached {
            Some((_, crl)) if crl.number == head.number => crl,
            _ => match crls.published_crl(ca, name).await.map_err(internal)? {
                Some(crl) => Arc::new(crl),
                None => return Ok(None),
            },
        };
        self.served.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (Instant::now(), crl.clone()));
        Ok(Some(crl))
    }
}

/// `{ca}.crl`, `{ca}/delta.crl`, `{ca}/{n}.crl`, `{ca}/{n}-delta.crl` → (CA, scope,
/// delta?). Only the layout's shape: whether such a CRL exists is [`published_here`].
fn parse_crl_path(path: &str) -> Option<(&str, CrlScope, bool)> {
    let stem = path.strip_suffix(".crl")?;
    let (ca, rest) = match stem.split_once('/') {
        None => return Some((stem, CrlScope::Full, false)),
        Some((ca, "delta")) => return Some((ca, CrlScope::Full, true)),
        Some(split) => split,
    };
    let (n, delta) = match rest.strip_suffix("-delta") {
        Some(n) => (n, true),
        None => (rest, false),
    };
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((ca, CrlScope::Shard(n.parse().ok()?), delta))
}

/// Whether this configuration publishes that CRL of `ca`: roots only their complete
/// CRL; deltas only with `crl.delta_crls`; shards only below `crl.shards`.
fn published_here(pki: &Pki, ca: &crate::issuance::Ca, scope: CrlScope, delta: bool) -> bool {
    let online = ca.issuer().is_some();
    let scope_ok = match scope {
        CrlScope::Full => true,
        CrlScope::Shard(n) => online && pki.urls.crl_shards > 1 && n < pki.urls.crl_shards,
    };
    scope_ok && (!delta || (online && pki.urls.delta_crls))
}

fn text(status: actix_web::http::StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain").body(body)
}

/// `GET /crl/…` (see the module doc): DER, `application/pkix-crl`.
pub async fn serve_crl(pki: web::Data<Pki>, cache: web::Data<CrlCache>, req: HttpRequest) -> HttpResponse {
    use actix_web::http::StatusCode;
    let path = req.match_info().get("path").unwrap_or_default();
    let Some((ca, scope, delta)) = parse_crl_path(path) else {
        return text(StatusCode::NOT_FOUND, "use /crl/{ca}.crl, /crl/{ca}/delta.crl or /crl/{ca}/{shard}.crl\n".into());
    };
    let Some(ca_record) = pki.ca(ca) else {
        return text(StatusCode::NOT_FOUND, format!("{}\n", CrlServeError::UnknownCa));
    };
    if !published_here(&pki, ca_record, scope, delta) {
        return text(StatusCode::NOT_FOUND, format!("no such CRL is published for {ca}\n"));
    }
    match cache.get(pki.store.as_ref(), ca, &crl_name(scope, delta)).await {
        Ok(Some(crl)) => {
            let now = unix(SystemTime::now());
            let max_age = (crl.next_update - now).clamp(0, i64::try_from(pki.config.crl.regenerate_secs).unwrap_or(0));
            let last_modified = UNIX_EPOCH + Duration::from_secs(u64::try_from(crl.this_update).unwrap_or(0));
            HttpResponse::Ok()
                .content_type("application/pkix-crl")
                .insert_header((header::CACHE_CONTROL, format!("public, max-age={max_age}")))
                .insert_header((header::LAST_MODIFIED, header::HttpDate::from(last_modified).to_string()))
                .body(crl.der.clone())
        }
        Ok(None) if pki.ca(ca).is_some_and(|c| c.issuer().is_none()) => {
            text(StatusCode::NOT_FOUND, format!("{}\n", CrlServeError::Offline))
        }
        Ok(None) => HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, pki.config.crl.regenerate_secs.max(1).to_string()))
            .content_type("text/plain")
            .body("this CRL has not been published yet; retry shortly\n"),
        Err(e) => {
            tracing::error!(ca, error = %e, "reading the published CRL failed");
            text(StatusCode::SERVICE_UNAVAILABLE, "the CRL is unavailable; retry later\n".into())
        }
    }
}

/// A certificate serial as operators type it (hex, colons allowed) → content octets.
pub fn parse_serial(serial: &str) -> Result<Vec<u8>, String> {
    hex::decode(serial.replace(':', "").to_ascii_lowercase())
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 20)
        .ok_or_else(|| format!("serial '{serial}' is not hex of 1 to 20 octets"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crl_paths_parse_and_garbage_does_not() {
        assert_eq!(parse_crl_path("device.crl"), Some(("device", CrlScope::Full, false)));
        assert_eq!(parse_crl_path("device/delta.crl"), Some(("device", CrlScope::Full, true)));
        assert_eq!(parse_crl_path("device/7.crl"), Some(("device", CrlScope::Shard(7), false)));
        assert_eq!(parse_crl_path("device/7-delta.crl"), Some(("device", CrlScope::Shard(7), true)));
        for garbage in [
            "device",
            "device/x.crl",
            "device/-1.crl",
            "device/+1.crl",
            "device/.crl",
            "device/-delta.crl",
            "",
            ".crl/",
        ] {
            assert_eq!(parse_crl_path(garbage), None, "{garbage:?}");
        }
        assert_eq!(parse_crl_path("device/99999999999999999999.crl"), None, "overflow");
        // Names round-trip to what the publisher stores.
        assert_eq!(crl_name(CrlScope::Shard(7), true), "shard-7-delta");
        assert_eq!(crl_name(CrlScope::Full, true), "delta");
    }
}
