//! CRL publishing (RFC 5280 §5).
//!
//! A scheduled job signs each issuing CA's CRLs every `crl.regenerate_secs` and stores
//! them; every instance serves the newest stored one. On PostgreSQL the job runs under
//! an advisory lock that the instance which takes it keeps across rounds, so with
//! several instances exactly one signs per round ([`CrlPublisher`]), and CRL numbers
//! come from the database: monotonic across restarts and instances.
//!
//! A revocation re-signs at once, in the process that made it, the complete CRLs it
//! changes (the full CRL and the certificate's shard) and their deltas
//! ([`publish_revoked`]): a relying party that reads only complete CRLs sees it as
//! soon as one that applies deltas. Should that fail, the next scheduled round
//! re-signs any complete CRL that misses a revocation made since it was signed.
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
//! Roots keep their keys offline: `ca-service init` signs their first CRLs as part of
//! the ceremony, and `ca-service crl --ca <root>` signs the next ones; both store them
//! here for publishing.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
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
use crate::store::{CrlStore, JobLock, PublishedCrl, RevocationReader};

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
    // The number first, then the revocations: a CRL numbered above another was read
    // after that one's number was taken, so it lists everything committed before —
    // above all, the revocation whose instance signs the lower-numbered CRL.
    let number = crls.next_crl_number(ca_name).await.map_err(|e| internal(e.to_string()))?;
    let revoked =
        revocations.revoked_for_crl(ca_name, now_secs, shard, since).await.map_err(|e| internal(e.to_string()))?;
    let entry_count = revoked.len();
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
    let name = crl_name(scope, matches!(kind, CrlKind::Delta { .. }));
    crate::telemetry::crl_signed(ca_name, &name, entry_count);
    Ok(PublishedCrl {
        ca: ca_name.to_string(),
        name,
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

/// The scopes every online CA publishes: the complete CRL and, with `crl.shards` > 1,
/// each shard's.
fn scopes(pki: &Pki) -> Vec<CrlScope> {
    let mut scopes = vec![CrlScope::Full];
    if pki.urls.crl_shards > 1 {
        scopes.extend((0..pki.urls.crl_shards).map(CrlScope::Shard));
    }
    scopes
}

/// (CA, CRL name) of every CRL this deployment publishes for its online CAs.
pub fn published_names(pki: &Pki) -> Vec<(String, String)> {
    let mut names = Vec::new();
    for ca in pki.cas().filter(|c| c.issuer().is_some()) {
        for scope in scopes(pki) {
            names.push((ca.record.name.clone(), crl_name(scope, false)));
            if pki.urls.delta_crls {
                names.push((ca.record.name.clone(), crl_name(scope, true)));
            }
        }
    }
    names
}

/// Signs the complete CRL of `scope` and, with `crl.delta_crls`, a delta on it.
async fn sign_base_and_delta(
    pki: &Pki,
    name: &str,
    signer: &Arc<dyn hsm::Signer>,
    scope: CrlScope,
    out: &mut Vec<PublishedCrl>,
) -> Result<(), CrlServeError> {
    let validity = Duration::from_secs(pki.config.crl.validity_secs);
    let base = sign_crl(pki, name, signer.clone(), validity, CrlRequest::Base(scope)).await?;
    let delta = CrlRequest::Delta { scope, base_number: base.number, base_time: base.this_update };
    out.push(base);
    if pki.urls.delta_crls {
        out.push(sign_crl(pki, name, signer.clone(), validity, delta).await?);
    }
    Ok(())
}

/// Stores what was signed, with one `crl.publish` audit entry naming this process
/// (`instance`: host and process id) and why (`trigger`).
async fn store_published(pki: &Pki, published: Vec<PublishedCrl>, trigger: &str) -> Result<usize, CrlServeError> {
    if published.is_empty() {
        return Ok(0);
    }
    let audit = AuditEvent::success("system:crl-publisher", "crl.publish", "crls").with_details(serde_json::json!({
        "published": published.iter().map(|c| format!("{}/{} #{}", c.ca, c.name, c.number)).collect::<Vec<_>>(),
        "trigger": trigger,
        "instance": instance_name(),
    }));
    let crls: &dyn CrlStore = pki.store.as_ref();
    crls.publish_crls(&published, audit).await.map_err(|e| CrlServeError::Internal(e.to_string()))?;
    // This process serves what it just published at once (other instances within
    // their cache's second).
    PUBLISHED_HERE.fetch_add(1, Ordering::Release);
    Ok(published.len())
}

/// How many times this process published CRLs: a served CRL cached before the last
/// publication is read again.
static PUBLISHED_HERE: AtomicU64 = AtomicU64::new(0);

/// This process, as the audit names a publisher: `<host>:<pid>`.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

/// One round of the scheduled job, under a job lock taken for this round only (the
/// start of `serve`: CRLs exist before the first request). Does nothing if another
/// instance holds the lock. Returns how many CRLs it published.
pub async fn publish_due(pki: &Pki) -> Result<usize, CrlServeError> {
    let crls: &dyn crate::store::JobStore = pki.store.as_ref();
    let Some(_lock) = crls.try_job_lock(JOB).await.map_err(|e| CrlServeError::Internal(e.to_string()))? else {
        return Ok(0);
    };
    scheduled_round(pki).await
}

/// The scheduled job's lock name.
const JOB: &str = "crl-publish";

/// One scheduled round, run by the instance holding the job lock: for every online
/// CA and scope, a new base when the last one is older than `crl.base_regenerate_secs`,
/// nears its nextUpdate, or misses a revocation made since it was signed (one whose
/// revoking process could not re-sign it), and a new delta.
async fn scheduled_round(pki: &Pki) -> Result<usize, CrlServeError> {
    let internal = |e: crate::store::StoreError| CrlServeError::Internal(e.to_string());
    let (crls, revocations): (&dyn CrlStore, &dyn RevocationReader) = (pki.store.as_ref(), pki.store.as_ref());
    let cfg = &pki.config.crl;
    let validity = Duration::from_secs(cfg.validity_secs);
    let every = i64::try_from(cfg.regenerate_secs.max(1)).unwrap_or(i64::MAX);
    let base_every = i64::try_from(cfg.base_regenerate_secs.unwrap_or(cfg.regenerate_secs).max(1)).unwrap_or(i64::MAX);
    let mut published = Vec::new();
    for ca in pki.cas() {
        let Some(signer) = ca.issuer().map(|i| i.key().signer().clone()) else { continue };
        let name = ca.record.name.as_str();
        for scope in scopes(pki) {
            let now = unix(SystemTime::now());
            let stored = crls.published_crl_head(name, &crl_name(scope, false)).await.map_err(internal)?;
            let current = match stored {
                Some(b) if now - b.this_update < base_every && b.next_update - now > 2 * every => {
                    let shard = match scope {
                        CrlScope::Full => None,
                        CrlScope::Shard(n) => Some(n),
                    };
                    // Revoked after the second it was signed in (a revocation in that
                    // second was re-signed by its own process, or waits for base_every).
                    let missed = revocations
                        .revoked_for_crl(name, now, shard, Some(b.this_update + 1))
                        .await
                        .map_err(internal)?;
                    missed.is_empty().then_some(b)
                }
                _ => None,
            };
            match current {
                Some(base) if pki.urls.delta_crls => {
                    let delta = CrlRequest::Delta { scope, base_number: base.number, base_time: base.this_update };
                    published.push(sign_crl(pki, name, signer.clone(), validity, delta).await?);
                }
                Some(_) => {}
                None => sign_base_and_delta(pki, name, &signer, scope, &mut published).await?,
            }
        }
    }
    store_published(pki, published, "schedule").await
}

/// Re-signs at once every CRL a revocation changed: for each (CA, shard) of a revoked
/// certificate whose CA this process signs for, the complete CRL and the shard's CRL,
/// and their deltas. Not under the job lock: CRL numbers come from the database and
/// are taken before the revocations are read, so a CRL numbered above this one was
/// read after this revocation committed, and a store never replaces a CRL with a
/// lower-numbered one; whichever instance signs last, the published CRL lists it.
pub async fn publish_revoked(pki: &Pki, changed: &BTreeSet<(String, u32)>) -> Result<usize, CrlServeError> {
    let mut published = Vec::new();
    let cas: BTreeSet<&str> = changed.iter().map(|(ca, _)| ca.as_str()).collect();
    for name in cas {
        let Some(signer) = pki.ca(name).and_then(|c| c.issuer()).map(|i| i.key().signer().clone()) else { continue };
        let mut scopes = vec![CrlScope::Full];
        if pki.urls.crl_shards > 1 {
            scopes.extend(
                changed
                    .iter()
                    .filter(|(ca, s)| ca == name && *s < pki.urls.crl_shards)
                    .map(|(_, s)| CrlScope::Shard(*s)),
            );
        }
        for scope in scopes {
            sign_base_and_delta(pki, name, &signer, scope, &mut published).await?;
        }
    }
    store_published(pki, published, "revocation").await
}

/// What a revocation changed: (issuer, CRL shard) of each certificate.
/// The published CRL that lists a revoked certificate — the CRL of its scope (its
/// shard's, or the complete one) — as its URL and head, once one signed after the
/// revocation is stored; `None` before that (and for a certificate not revoked). A
/// CRL signed in the very second of the revocation is read to see whether it lists it.
pub async fn listing(
    pki: &Pki,
    cert: &crate::store::RevokedCert,
) -> Result<Option<(String, crate::store::CrlHead)>, crate::store::StoreError> {
    let revoked_at = cert.revoked_at;
    let scope = pki.urls.scope_of(cert.crl_shard);
    let name = crl_name(scope, false);
    let Some(head) = pki.store.published_crl_head(&cert.issuer, &name).await? else { return Ok(None) };
    let listed = head.this_update > revoked_at
        || (head.this_update == revoked_at
            && pki.store.published_crl(&cert.issuer, &name).await?.is_some_and(|crl| lists(&crl.der, &cert.serial)));
    Ok(listed.then(|| (pki.urls.crl_of(&cert.issuer, scope).0, head)))
}

/// Whether a CRL (DER) lists `serial`.
fn lists(crl: &[u8], serial: &[u8]) -> bool {
    use x509_parser::prelude::FromDer;
    x509_parser::revocation_list::CertificateRevocationList::from_der(crl)
        .is_ok_and(|(_, crl)| crl.iter_revoked_certificates().any(|r| r.raw_serial() == serial))
}

pub fn changed_by(certificates: &[crate::store::RevokedCert]) -> BTreeSet<(String, u32)> {
    certificates.iter().map(|c| (c.issuer.clone(), c.crl_shard)).collect()
}

/// The CRL job of a serving instance: the scheduled rounds, and re-signing at once
/// what a revocation in this process changed.
///
/// With several instances on one PostgreSQL, the instance that gets the job lock
/// keeps it — the lock lives on a connection taken out of the pool, held across
/// rounds — and runs every scheduled round; the others only check, each round,
/// whether it became free (its holder died or lost its connection). A lock taken
/// and released per round would let every instance whose timer fires while the
/// lock is free sign its own round.
#[derive(Debug, Default)]
pub struct CrlPublisher {
    wake: Notify,
    /// (CA, shard) changed by revocations here and not yet re-signed.
    changed: Mutex<BTreeSet<(String, u32)>>,
}

impl CrlPublisher {
    /// A revocation here changed these certificates' CRLs: re-sign them now.
    pub fn revoked(&self, certificates: &[crate::store::RevokedCert]) {
        if certificates.is_empty() {
            return;
        }
        self.changed.lock().unwrap_or_else(|p| p.into_inner()).extend(changed_by(certificates));
        self.wake.notify_one();
    }

    /// Runs the job: a scheduled round every `crl.regenerate_secs` (when this
    /// instance holds the job lock), and the CRLs revocations changed at once.
    pub fn spawn(self: Arc<Self>, pki: Arc<Pki>) {
        let every = Duration::from_secs(pki.config.crl.regenerate_secs.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut lease: Option<JobLock> = None;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = self.scheduled(&pki, &mut lease).await {
                            tracing::error!(error = %e, "publishing CRLs failed");
                        }
                    }
                    _ = self.wake.notified() => {
                        let changed = std::mem::take(&mut *self.changed.lock().unwrap_or_else(|p| p.into_inner()));
                        if let Err(e) = publish_revoked(&pki, &changed).await {
                            tracing::error!(error = %e, "re-signing CRLs after a revocation failed");
                            // The next scheduled round carries it (it re-signs a base that misses one).
                        }
                    }
                }
            }
        });
    }

    /// A scheduled round if this instance holds (or now gets) the job lock.
    async fn scheduled(&self, pki: &Pki, lease: &mut Option<JobLock>) -> Result<usize, CrlServeError> {
        if let Some(held) = lease.as_ref() {
            if !held.still_held().await {
                tracing::warn!("lost the CRL job lock (its database connection closed); trying to take it again");
                *lease = None;
            }
        }
        if lease.is_none() {
            let crls: &dyn crate::store::JobStore = pki.store.as_ref();
            *lease = crls.try_job_lock(JOB).await.map_err(|e| CrlServeError::Internal(e.to_string()))?;
            if lease.is_some() {
                tracing::info!("this instance runs the CRL job");
            }
        }
        if lease.is_none() {
            return Ok(0);
        }
        let round = scheduled_round(pki).await;
        if round.is_err() {
            // Let another instance try.
            *lease = None;
        }
        round
    }
}

/// (CA, name) → when read from the store (and [`PUBLISHED_HERE`] then), the CRL.
type Served = HashMap<(String, String), (Instant, u64, Arc<PublishedCrl>)>;

/// Served CRLs, briefly kept in memory.
#[derive(Debug, Default)]
pub struct CrlCache {
    served: Mutex<Served>,
}

impl CrlCache {
    async fn get(&self, crls: &dyn CrlStore, ca: &str, name: &str) -> Result<Option<Arc<PublishedCrl>>, CrlServeError> {
        let internal = |e: crate::store::StoreError| CrlServeError::Internal(e.to_string());
        let key = (ca.to_string(), name.to_string());
        let generation = PUBLISHED_HERE.load(Ordering::Acquire);
        let cached = self.served.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        if let Some((read, seen, crl)) = &cached {
            if read.elapsed() < SERVE_CACHE && *seen == generation {
                return Ok(Some(crl.clone()));
            }
        }
        // Only the head is read to see whether a newer CRL exists; the bytes only when
        // one does.
        let Some(head) = crls.published_crl_head(ca, name).await.map_err(internal)? else { return Ok(None) };
        let crl = match cached {
            Some((_, _, crl)) if crl.number == head.number => crl,
            _ => match crls.published_crl(ca, name).await.map_err(internal)? {
                Some(crl) => Arc::new(crl),
                None => return Ok(None),
            },
        };
        self.served.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (Instant::now(), generation, crl.clone()));
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
