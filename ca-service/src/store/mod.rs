//! Storage: one interface, two implementations — SQLite (the embedded default) and
//! PostgreSQL (production, several instances may share one database).
//!
//! Every write that matters is audited in the same transaction as the change it
//! records, and the audit chain is extended inside that transaction, so a certificate,
//! its record and its audit entry are durable together or not at all.
//!
//! The interface is one narrow trait per aggregate, so that a consumer names what it
//! reads and writes: [`Readiness`], [`CaStore`], [`CertificateReader`] and
//! [`RevocationReader`] (read-only; the OCSP responder and the CRL publisher need no
//! more), [`CertificateStore`] (issuance and revocation), [`RegistryStore`],
//! [`AuditStore`], [`CrlStore`] (with the publishing job's lock),
//! [`UpdateRequestStore`], [`TokenStore`] and [`ReportStore`]. [`Store`] is all of them; an
//! `Arc<dyn Store>` upcasts to any one.
//!
//! Layout: `types.rs` holds the records, `rows.rs` the column lists and row mappers
//! both dialects share, and `sqlite/` and `postgres/` one file per aggregate
//! (`cas`, `certificates`, `registry`, `audit`, `crls`, `updates`, `tokens`), with the
//! connections, migrations and transaction helpers in their `mod.rs`. The test
//! `suite/` follows the same split and runs every test on both.

use async_trait::async_trait;

use crate::audit::{AuditEntry, AuditEvent};

pub mod postgres;
mod report;
mod rotations;
mod rows;
pub use rows::DEFAULT_RENEWAL_PPM;
pub mod sqlite;
mod types;

pub use report::*;
pub use rotations::{AfterDeadline, NewRotation, RotationProgress, RotationRecord, RotationStore};
pub use types::*;

/// Whether the database answers. Its own trait so that the readiness probe needs
/// nothing else of the store.
#[async_trait]
pub trait Readiness: Send + Sync {
    /// Checks the database answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
    /// The connection pool's use, for a store that has one (PostgreSQL).
    fn pool(&self) -> Option<PoolUse> {
        None
    }
}

/// The CA hierarchy: the CAs' records, written by the ceremony (`init`, import,
/// renewal) and read at startup. Nothing on a request path writes here.
#[async_trait]
pub trait CaStore: Send + Sync {
    /// Records a new CA. `AlreadyExists` if the name is taken.
    async fn create_ca(&self, ca: &CaRecord, audit: AuditEvent) -> Result<(), StoreError> {
        self.create_hierarchy(&[(ca.clone(), audit)], &[]).await
    }
    /// Records CAs (parents first) and certificates they issued (the delegated OCSP
    /// signers) in ONE transaction: a ceremony is stored whole or not at all.
    /// `AlreadyExists` names the first CA whose name is taken; a certificate whose
    /// serial is taken fails the whole call.
    async fn create_hierarchy(
        &self,
        cas: &[(CaRecord, AuditEvent)],
        certificates: &[Issuance],
    ) -> Result<(), StoreError>;
    /// Replaces a CA's certificate and its parent (external signing, renewal).
    /// `NotFound` if absent.
    async fn update_ca_certificate(
        &self,
        name: &str,
        cert_der: &[u8],
        parent: Option<&str>,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
    /// Records that a CA generation's key was destroyed at `at` (unix seconds).
    /// `NotFound` if absent or already destroyed.
    async fn destroy_ca(&self, name: &str, at: i64, audit: AuditEvent) -> Result<(), StoreError>;
    /// The latest notAfter (unix seconds) of the certificates `issuer` issued under any
    /// profile but `except_profile` (its own OCSP signer's): until then its key must
    /// keep signing CRLs and OCSP answers.
    async fn last_expiry(&self, issuer: &str, except_profile: &str) -> Result<Option<i64>, StoreError>;
    async fn get_ca(&self, name: &str) -> Result<Option<CaRecord>, StoreError>;
    /// All CAs, in creation order.
    async fn list_cas(&self) -> Result<Vec<CaRecord>, StoreError>;
}

/// Reading issued certificates, one by its key or a device's or a page of all.
/// Read-only: the OCSP responder, the EST authenticator and the audit cross-check
/// need no more, and cannot change a certificate through it.
#[async_trait]
pub trait CertificateReader: Send + Sync {
    async fn get_certificate(&self, issuer: &str, serial: &[u8]) -> Result<Option<CertRecord>, StoreError>;
    /// The newest `valid` certificate of a profile from an issuer (e.g. the current
    /// delegated OCSP signer).
    async fn latest_valid_certificate(&self, issuer: &str, profile: &str) -> Result<Option<CertRecord>, StoreError>;
    /// The certificate with this SHA-256 fingerprint (lower-case hex), if we issued it.
    async fn certificate_by_fingerprint(&self, fingerprint: &str) -> Result<Option<CertRecord>, StoreError>;
    /// The newest certificate stored for this station request (its [`DeliveryKey`]),
    /// issued (notBefore) at or after `since`: what a repeated request is answered with.
    async fn delivered_certificate(&self, earlier: &EarlierDelivery) -> Result<Option<CertRecord>, StoreError>;
    /// Issuer and serial of stored certificates with row id > `after_id`, in id order,
    /// at most `limit` (the audit cross-check pages through all of them).
    async fn certificate_keys(&self, after_id: i64, limit: i64) -> Result<Vec<CertificateKey>, StoreError>;
    /// A device's certificates, newest first.
    async fn certificates_for_device(&self, device_id: &str) -> Result<Vec<CertRecord>, StoreError>;
    /// Whether a public key (SHA-256 of its SPKI, hex) was revoked for keyCompromise:
    /// such a key is never certified again.
    async fn public_key_compromised(&self, public_key_sha256: &str) -> Result<bool, StoreError>;
}

/// Reading what was revoked, set-wise: the CRL publisher builds CRLs from it and
/// every instance's OCSP responder learns of revocations made elsewhere. Read-only.
#[async_trait]
pub trait RevocationReader: Send + Sync {
    /// The issuer's revoked certificates that have not expired at `now` (unix
    /// seconds), for its CRL: (serial, revoked_at, reason), in serial order. Only
    /// those of one CRL shard when `shard` is given, and only those revoked at or
    /// after `since` (a delta CRL) when it is given.
    async fn revoked_for_crl(
        &self,
        issuer: &str,
        now: i64,
        shard: Option<u32>,
        since: Option<i64>,
    ) -> Result<Vec<(Vec<u8>, i64, Option<Reason>)>, StoreError>;
    /// (issuer, serial, revoked_at) of certificates revoked at or after `since` (unix
    /// seconds), oldest first: how every instance learns of revocations made elsewhere.
    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, Vec<u8>, i64)>, StoreError>;
}

/// Writing certificates: the issuance writer and revocation. Both change the
/// certificates together with other aggregates' rows (device state, update requests,
/// the audit chain) in one transaction, which is why they live together here.
#[async_trait]
pub trait CertificateStore: CertificateReader + RevocationReader {
    /// Stores a batch of certificates and their audit entries in ONE transaction,
    /// extending the audit chain in batch order. Items whose (issuer, serial) exists
    /// already are skipped (`SerialTaken`), and items whose public key was revoked for
    /// keyCompromise are refused (`KeyCompromised`), both without an audit entry; all
    /// others are durably committed (SQLite `synchronous=FULL`) before this returns.
    /// The compromised-key check runs here, in the storing transaction, so it is one
    /// statement per batch and no certificate slips past a revocation made while it
    /// was being signed.
    async fn store_certificates(&self, batch: &[Issuance]) -> Result<Vec<IssuanceOutcome>, StoreError>;
    /// Revokes a certificate (`valid` or `superseded` → `revoked`, with time and
    /// reason) and records the audit entry, in one transaction. `NotFound` if we never
    /// issued it; `Conflict` if it is already revoked. Returns the record as now
    /// stored.
    async fn revoke_certificate(
        &self,
        issuer: &str,
        serial: &[u8],
        reason: Reason,
        revoked_at: i64,
        audit: AuditEvent,
    ) -> Result<CertRecord, StoreError>;
    /// Revokes devices (one, a batch or a model): every certificate of them not yet
    /// revoked becomes revoked (time, reason) and the devices `revoked`, with the
    /// audit entry, in one transaction; they can no longer enroll or renew.
    /// `NotFound` if no device matches. Returns how many devices matched and the
    /// certificates it revoked (in the order they were issued).
    async fn revoke_devices(
        &self,
        which: &DeviceSelector,
        reason: Reason,
        revoked_at: i64,
        audit: AuditEvent,
    ) -> Result<(u64, Vec<RevokedCert>), StoreError>;
    /// [`CertificateStore::revoke_devices`] for one device.
    async fn revoke_device(
        &self,
        device_id: &str,
        reason: Reason,
        revoked_at: i64,
        audit: AuditEvent,
    ) -> Result<Vec<RevokedCert>, StoreError> {
        let which = DeviceSelector::Device(device_id.to_string());
        Ok(self.revoke_devices(&which, reason, revoked_at, audit).await?.1)
    }
}

/// The registration authority's registry: devices, provisioning stations and
/// enrollment requests awaiting approval — what the enrollment pipeline authorizes
/// against.
#[async_trait]
pub trait RegistryStore: Send + Sync {
    /// Adds devices (all or none); `AlreadyExists` names the first duplicate id.
    async fn add_devices(&self, devices: &[DeviceRecord], audit: AuditEvent) -> Result<(), StoreError>;
    async fn get_device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError>;

    /// Adds a station; `AlreadyExists` if the name is taken.
    async fn add_station(&self, station: &StationRecord, audit: AuditEvent) -> Result<(), StoreError>;
    async fn get_station(&self, name: &str) -> Result<Option<StationRecord>, StoreError>;
    /// All stations, by name.
    async fn list_stations(&self) -> Result<Vec<StationRecord>, StoreError>;

    /// For each lookup, the client certificate, station and device it names and the
    /// certificate delivered earlier for the same station request, in order. EST reads
    /// everything it decides on this way, for all requests waiting
    /// at that moment together: PostgreSQL answers a whole batch with one statement;
    /// SQLite asks `enrollment_contexts_one_by_one`.
    async fn enrollment_contexts(&self, lookups: &[EnrollmentLookup]) -> Result<Vec<EnrollmentContext>, StoreError>;

    /// Records an enrollment request awaiting approval, or returns the stored one
    /// with the same id (the station's retry); audited only when new.
    async fn submit_enrollment_request(
        &self,
        request: &EnrollmentRequest,
        audit: AuditEvent,
    ) -> Result<EnrollmentRequest, StoreError>;
    async fn get_enrollment_request(&self, id: &str) -> Result<Option<EnrollmentRequest>, StoreError>;
    /// pending → approved / rejected. `NotFound` if absent; `Conflict` naming the
    /// status if it is not pending (decisions are final).
    async fn decide_enrollment_request(
        &self,
        id: &str,
        approve: bool,
        decided_by: &str,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
    /// Requests in a status (all when `None`), oldest first.
    async fn list_enrollment_requests(
        &self,
        status: Option<RequestStatus>,
    ) -> Result<Vec<EnrollmentRequest>, StoreError>;
}

/// [`RegistryStore::enrollment_contexts`] answered with one read per record, for a
/// store whose reads are cheap enough on their own (SQLite, in process).
pub(crate) async fn enrollment_contexts_one_by_one<S>(
    store: &S,
    lookups: &[EnrollmentLookup],
) -> Result<Vec<EnrollmentContext>, StoreError>
where
    S: RegistryStore + CertificateReader + ?Sized,
{
    let mut found = Vec::with_capacity(lookups.len());
    for lookup in lookups {
        found.push(EnrollmentContext {
            client: match &lookup.client_fingerprint {
                Some(fp) => store.certificate_by_fingerprint(fp).await?,
                None => None,
            },
            station: match &lookup.station {
                Some(name) => store.get_station(name).await?,
                None => None,
            },
            device: match &lookup.device_id {
                Some(id) => store.get_device(id).await?,
                None => None,
            },
            earlier: None,
        });
        // An earlier delivery can only be of an active device (a first enrollment,
        // the common case, has none to look for).
        if let (Some(ctx), Some(earlier)) = (found.last_mut(), &lookup.earlier) {
            if ctx.device.as_ref().is_some_and(|d| d.state == DeviceState::Active && d.device_id == earlier.device_id) {
                ctx.earlier = store.delivered_certificate(earlier).await?;
            }
        }
    }
    Ok(found)
}

/// The audit log: entries for actions that change nothing else, and reading the
/// chain. (Every other write appends its own entries in its own transaction.)
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends audit entries (for actions that change nothing else, such as refusals).
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
    /// Up to `limit` entries with `seq > after_seq`, in order.
    async fn audit_entries(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError>;
    /// Up to `limit` entries matching `query`, with `seq < before` (`None`: from the
    /// newest), newest first; each as [`AuditStore::audit_entries`] reads it.
    async fn find_audit(
        &self,
        query: &AuditQuery,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Published CRLs and their numbers: all the CRL publisher and the CRL server need
/// besides [`RevocationReader`].
#[async_trait]
pub trait CrlStore: Send + Sync {
    /// Stores newly signed CRLs, replacing older ones of the same CA and name; a
    /// CRL whose number is not above the stored one's is ignored (numbers only grow).
    async fn publish_crls(&self, crls: &[PublishedCrl], audit: AuditEvent) -> Result<(), StoreError>;
    async fn published_crl(&self, ca: &str, name: &str) -> Result<Option<PublishedCrl>, StoreError>;
    /// Number and times of the published CRL, without reading its bytes (a CRL of a
    /// million entries is 46 MB; the publisher and the servers ask every second).
    async fn published_crl_head(&self, ca: &str, name: &str) -> Result<Option<CrlHead>, StoreError>;
    /// The next cRLNumber for an issuer (1, 2, 3, …), incremented in the database.
    async fn next_crl_number(&self, issuer: &str) -> Result<u64, StoreError>;
}

/// The locks that make a scheduled job run on one instance at a time (the CRL
/// publisher, the checkpoint signer).
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Takes the lock of a scheduled job, or `None` if another instance holds it.
    /// Held until the returned value is dropped.
    async fn try_job_lock(&self, job: &str) -> Result<Option<JobLock>, StoreError>;
}

/// The transparency log's tree and checkpoints (its leaves are the audit entries,
/// written by every audited transaction; see [`crate::transparency`]).
///
/// Hashes are addressed as tiles are (C2SP tlog-tiles): tile level 0 holds the leaf
/// hashes, stored with the entries; tile level `L ≥ 1` holds the hashes of the complete
/// subtrees at tree level `8L`, written by the checkpoint job.
#[async_trait]
pub trait LogStore: Send + Sync {
    /// The number of entries: the tree's size.
    async fn log_size(&self) -> Result<u64, StoreError>;
    /// The stored hashes at tile level `level` with indexes in `start..end`, in order;
    /// fewer if not all are stored. A leaf without a stored hash ends the read.
    async fn log_hashes(&self, level: u8, start: u64, end: u64) -> Result<Vec<tlog::Hash>, StoreError>;
    /// Stores the hashes at tile level `level ≥ 1` from index `start` on (those
    /// already stored are kept: they are derived from the leaves, so equal).
    async fn put_log_nodes(&self, level: u8, start: u64, hashes: &[tlog::Hash]) -> Result<(), StoreError>;
    /// Fills in leaf hashes of entries that have none (written before the tree).
    async fn fill_leaf_hashes(&self, leaves: &[(i64, tlog::Hash)]) -> Result<(), StoreError>;
    /// The signed checkpoint with the largest size.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;
    /// Up to `limit` checkpoints with `size > after_size`, smallest first.
    async fn checkpoints(&self, after_size: u64, limit: i64) -> Result<Vec<StoredCheckpoint>, StoreError>;
    /// Records a signed checkpoint unless one of this size or larger exists (sizes
    /// only grow); `true` if it was recorded.
    async fn put_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<bool, StoreError>;
}

/// What operators and monitoring read about the fleet as a whole: counts and
/// lifecycle reports, answered from indexes (never a scan of certificate bodies).
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Certificates by issuer, profile and state at `now` (unix seconds), ordered by
    /// issuer, profile and the state's name.
    async fn certificate_counts(&self, now: i64) -> Result<Vec<CertificateCount>, StoreError>;
    /// Devices by registry state, ordered by the state's name.
    async fn device_counts(&self) -> Result<Vec<(DeviceState, u64)>, StoreError>;
    /// `valid` certificates with `from ≤ notAfter < to` that match `filter`, after
    /// `after` in (notAfter, issuer, serial) order, at most `limit`.
    async fn expiring_certificates(
        &self,
        from: i64,
        to: i64,
        filter: &ReportFilter,
        after: &CertCursor,
        limit: i64,
    ) -> Result<Vec<LifecycleRow>, StoreError>;
    /// The same certificates counted by `group_by`, ordered by its value (at most
    /// `limit` groups).
    async fn expiring_groups(
        &self,
        from: i64,
        to: i64,
        filter: &ReportFilter,
        group_by: GroupBy,
        limit: i64,
    ) -> Result<Vec<ExpiryGroup>, StoreError>;
    /// Stale identities: `valid` certificates of `active` devices, each its device's
    /// newest unrevoked one, whose renewal point (the centre of its profile's renewal
    /// window: `points`, profile → ppm of the way from notBefore to notAfter, others
    /// two thirds) is at or before `now`, matching `filter`; only those with notAfter
    /// ≤ `not_after_bound` are looked at (the caller's bound from the longest
    /// lifetime, which keeps the read to an index range). Paged as
    /// [`ReportStore::expiring_certificates`].
    async fn stale_certificates(
        &self,
        points: &[(String, i64)],
        now: i64,
        not_after_bound: i64,
        filter: &ReportFilter,
        after: &CertCursor,
        limit: i64,
    ) -> Result<Vec<LifecycleRow>, StoreError>;
    /// Devices registered and never enrolled (`expected`) of `filter`'s batch and
    /// model, with ids after `after`, in id order, at most `limit`.
    async fn never_enrolled(
        &self,
        filter: &ReportFilter,
        after: &str,
        limit: i64,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let query = DeviceQuery {
            batch: filter.batch.clone(),
            model: filter.model.clone(),
            state: Some(DeviceState::Expected),
        };
        self.find_devices(&query, after, limit).await
    }
    /// Devices matching `query`, with ids after `after` (`""`: from the start), in id
    /// order, at most `limit`.
    async fn find_devices(&self, query: &DeviceQuery, after: &str, limit: i64)
        -> Result<Vec<DeviceRecord>, StoreError>;
    /// What [`CertificateStore::revoke_devices`] with `which` would revoke if run now:
    /// the devices it matches and their certificates not yet revoked (superseded ones
    /// included), by the same predicates. Nothing matching is 0/0, not `NotFound`.
    async fn revocation_preview(&self, which: &DeviceSelector) -> Result<RevocationPreview, StoreError>;
}

/// Requests for update-signing certificates and their approvals (the two-person
/// rule). Issuing the certificate is [`CertificateStore::store_certificates`] with
/// [`IssuanceEffect::FulfilUpdateRequest`].
#[async_trait]
pub trait UpdateRequestStore: Send + Sync {
    /// Records a new update-signing request (status `pending`); `AlreadyExists` if the
    /// id is taken.
    async fn submit_update_request(&self, request: &UpdateRequest, audit: AuditEvent) -> Result<(), StoreError>;
    async fn get_update_request(&self, id: &str) -> Result<Option<UpdateRequest>, StoreError>;
    /// Requests in a status (all when `None`), oldest first.
    async fn list_update_requests(&self, status: Option<RequestStatus>) -> Result<Vec<UpdateRequest>, StoreError>;
    /// Adds `approver`'s approval to a pending, unexpired request; once `required`
    /// distinct approvers have approved, the request becomes `approved`. `NotFound`
    /// if absent; `Conflict` if it is not pending, has expired, `approver` is its
    /// requester, or `approver` already approved it. Returns the request as stored.
    async fn approve_update_request(
        &self,
        id: &str,
        approver: &str,
        required: usize,
        audit: AuditEvent,
    ) -> Result<UpdateRequest, StoreError>;
    /// pending → rejected (final). `NotFound` / `Conflict` as for approval.
    async fn reject_update_request(
        &self,
        id: &str,
        rejected_by: &str,
        reason: &str,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
}

/// Admin API tokens (only their secrets' hashes).
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Adds an API token; `AlreadyExists` if the id is taken.
    async fn add_api_token(&self, token: &ApiToken, audit: AuditEvent) -> Result<(), StoreError>;
    async fn get_api_token(&self, id: &str) -> Result<Option<ApiToken>, StoreError>;
    /// Marks a token revoked at `at`. `NotFound` if absent; `Conflict` if already revoked.
    async fn revoke_api_token(&self, id: &str, at: i64, audit: AuditEvent) -> Result<(), StoreError>;
    /// All API tokens, oldest first.
    async fn list_api_tokens(&self) -> Result<Vec<ApiToken>, StoreError>;
}

/// The whole storage interface: every aggregate's trait. Implementations must give
/// the same behaviour (DESIGN invariant 5); `tests` in this module's `suite` run
/// against both. Code that needs one aggregate takes that trait; `Arc<dyn Store>`
/// upcasts to any of them.
pub trait Store:
    Readiness
    + CaStore
    + CertificateStore
    + RegistryStore
    + AuditStore
    + CrlStore
    + JobStore
    + LogStore
    + UpdateRequestStore
    + TokenStore
    + ReportStore
    + RotationStore
    + Send
    + Sync
    + std::fmt::Debug
{
}

impl<T> Store for T where
    T: Readiness
        + CaStore
        + CertificateStore
        + RegistryStore
        + AuditStore
        + CrlStore
        + JobStore
        + LogStore
        + UpdateRequestStore
        + TokenStore
        + ReportStore
        + RotationStore
        + Send
        + Sync
        + std::fmt::Debug
        + ?Sized
{
}

/// One answer per request of a batch served by one store call: the call's own
/// answers, or its error for every request (also when it answered a different
/// number of them, which would be a bug in the store).
pub(crate) fn answer_each<R>(requests: usize, answers: Result<Vec<R>, StoreError>) -> Vec<Result<R, StoreError>> {
    let answers = answers.and_then(|a| {
        if a.len() == requests {
            Ok(a)
        } else {
            Err(StoreError::Database(format!("the store gave {} answers for {requests} requests", a.len())))
        }
    });
    match answers {
        Ok(a) => a.into_iter().map(Ok).collect(),
        Err(e) => (0..requests).map(|_| Err(e.clone())).collect(),
    }
}

/// Why an effect's precondition failed, in words for the refusal.
fn effect_refusal(effect: &IssuanceEffect) -> String {
    match effect {
        IssuanceEffect::ActivateDevice { device_id, .. } => {
            format!("device '{device_id}' is no longer in a state that may enroll")
        }
        IssuanceEffect::Supersede { .. } => "the certificate being renewed is no longer valid".to_string(),
        IssuanceEffect::FulfilUpdateRequest { id } => {
            format!("update request '{id}' is no longer approved and unexpired")
        }
    }
}

/// Why an issuance that fulfils an enrollment request was refused, in words.
fn fulfil_refusal(id: &str) -> String {
    format!("enrollment request '{id}' is no longer approved")
}

/// Why `approver` may not approve `request` at `now` (unix seconds), if they may not.
/// Both stores call this inside the approving transaction.
fn approval_conflict(request: &UpdateRequest, approver: &str, now: i64) -> Option<StoreError> {
    let id = &request.id;
    let why = if request.status != RequestStatus::Pending {
        format!("update request '{id}' is already {}; decisions are final", request.status.as_str())
    } else if now >= request.expires_at {
        format!("update request '{id}' has expired")
    } else if request.requester == approver {
        format!("'{approver}' submitted update request '{id}' and cannot approve it")
    } else if request.approvals.iter().any(|a| a == approver) {
        format!("'{approver}' already approved update request '{id}'; another approver is needed")
    } else {
        return None;
    };
    Some(StoreError::Conflict(why))
}

/// A stored `serial_hex` column → the serial's octets.
pub(crate) fn serial_from_hex(serial_hex: &str) -> Result<Vec<u8>, StoreError> {
    hex::decode(serial_hex).map_err(|_| StoreError::Corrupt(format!("serial '{serial_hex}' is not hex")))
}

/// The (issuer, serial) of a request's certificate, from stored columns.
pub(crate) fn issued_pair(
    issuer: Option<String>,
    serial_hex: Option<String>,
) -> Result<Option<(String, Vec<u8>)>, StoreError> {
    Ok(match (issuer, serial_hex) {
        (Some(i), Some(s)) => Some((i, serial_from_hex(&s)?)),
        _ => None,
    })
}

/// A stored comma-separated list.
fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect()
}

/// Opens the store named by a URL: `sqlite:PATH` (or `sqlite://PATH`) or
/// `postgres://…` / `postgresql://…`. Migrations are applied on open.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if let Some(path) = sqlite_path(url) {
        if let Some(dir) = path.parent() {
            sqlite::create_private_dir(dir)?;
        }
        let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(path))
            .await
            .map_err(|e| StoreError::Database(e.to_string()))??;
        Ok(std::sync::Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(postgres::PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::Unavailable(format!(
            "unsupported storage URL (expected sqlite:PATH or postgres://…): {}",
            redact_url(url)
        )))
    }
}

/// The database file of a `sqlite:PATH` (or `sqlite://PATH`) URL.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).map(std::path::PathBuf::from)
}

/// A URL with any password removed, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s && url[s + 3..at].contains(':') => {
            let user = url[s + 3..at].split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod suite;

#[cfg(test)]
mod url_tests {
    #[test]
    fn passwords_are_redacted_and_nothing_else() {
        assert_eq!(super::redact_url("postgres://pki:s3cret@db:5432/pki"), "postgres://pki:***@db:5432/pki");
        assert_eq!(super::redact_url("postgres://pki@db/pki"), "postgres://pki@db/pki");
        assert_eq!(super::redact_url("sqlite:./x.db"), "sqlite:./x.db");
    }
}

#[cfg(test)]
mod answer_each_tests {
    use super::*;

    #[test]
    fn each_request_gets_its_answer_or_the_error() {
        assert_eq!(answer_each(2, Ok(vec![1, 2])).into_iter().map(Result::ok).collect::<Vec<_>>(), [Some(1), Some(2)]);
        let failed = answer_each::<u8>(3, Err(StoreError::Unavailable("down".into())));
        assert_eq!(failed.len(), 3);
        assert!(failed.iter().all(|r| matches!(r, Err(StoreError::Unavailable(_)))), "the error keeps its kind");
        // A store answering another number of requests fails them all, never shifts answers.
        let short = answer_each(3, Ok(vec![1, 2]));
        assert_eq!(short.len(), 3);
        assert!(short.iter().all(|r| matches!(r, Err(StoreError::Database(_)))));
    }
}
