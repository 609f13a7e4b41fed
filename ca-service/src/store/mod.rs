//! Storage: one interface, two implementations — SQLite (the embedded default) and
//! PostgreSQL (production, several instances may share one database).
//!
//! Every write that matters is audited in the same transaction as the change it
//! records, and the audit chain is extended inside that transaction, so a certificate,
//! its record and its audit entry are durable together or not at all.

use async_trait::async_trait;

use crate::audit::{AuditEntry, AuditEvent};

/// The registry's records are the registration authority's (`enrollment::ra`).
pub use enrollment::ra::{DeviceRecord, DeviceState, StationRecord};

impl From<enrollment::ra::UnknownDeviceState> for StoreError {
    fn from(e: enrollment::ra::UnknownDeviceState) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub mod postgres;
pub mod sqlite;

/// A CA of the hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaRecord {
    /// `identity-root`, `device`, `station`, `update-root`, `update-authority`.
    pub name: String,
    /// The CA's current certificate (DER).
    pub cert_der: Vec<u8>,
    /// The configured key store holding the CA key (a name from the config).
    pub key_store: String,
    /// The key's label inside that store.
    pub key_label: String,
    /// The issuing CA's name; `None` for roots and externally signed CAs.
    pub parent: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertStatus {
    Valid,
    Revoked,
    /// Replaced by a renewal; still valid cryptographically until it expires.
    Superseded,
}

impl CertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CertStatus::Valid => "valid",
            CertStatus::Revoked => "revoked",
            CertStatus::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "valid" => Ok(CertStatus::Valid),
            "revoked" => Ok(CertStatus::Revoked),
            "superseded" => Ok(CertStatus::Superseded),
            other => Err(StoreError::Corrupt(format!("unknown certificate status '{other}'"))),
        }
    }
}

/// An issued certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertRecord {
    /// The issuing CA's name.
    pub issuer: String,
    /// The serial number's content octets (positive, ≤ 20 octets).
    pub serial: Vec<u8>,
    /// The subject as an RFC 4514 string, for search and display.
    pub subject: String,
    pub device_id: Option<String>,
    pub profile: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub status: CertStatus,
    /// Unix seconds.
    pub revoked_at: Option<i64>,
    /// RFC 5280 CRLReason code.
    pub revocation_reason: Option<i32>,
    /// SHA-256 of the certificate DER, lower-case hex.
    pub fingerprint: String,
    /// SHA-256 of the SubjectPublicKeyInfo DER, lower-case hex (to refuse compromised keys).
    pub public_key_sha256: String,
    pub der: Vec<u8>,
    /// The CRL shard its cRLDistributionPoints names (0 when CRLs are not sharded).
    pub crl_shard: u32,
}

/// Where a stored certificate is, for walks over the whole table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateKey {
    pub id: i64,
    pub issuer: String,
    pub serial: Vec<u8>,
}

/// A certificate and the audit event that records its issuance.
#[derive(Clone, Debug)]
pub struct Issuance {
    pub cert: CertRecord,
    pub audit: AuditEvent,
    /// A state change that must happen in the same transaction, or the certificate
    /// is not stored (and so never released).
    pub effect: Option<IssuanceEffect>,
    /// The approved enrollment request this certificate fulfils: `approved` → `issued`
    /// in the same transaction (refused if it is no longer approved).
    pub fulfils_request: Option<String>,
    /// The station's request it answers, stored with it so that the same request
    /// repeated is answered with this certificate again (see `enrollment::ra`).
    pub delivery: Option<DeliveryKey>,
}

pub use enrollment::ra::{DeliveryKey, EarlierDelivery};

impl Issuance {
    pub fn new(cert: CertRecord, audit: AuditEvent) -> Self {
        Self { cert, audit, effect: None, fulfils_request: None, delivery: None }
    }
}

/// What an issuance changes besides adding the certificate. Each has a
/// precondition checked inside the storing transaction, so two racing enrollments
/// of one device, or a revocation racing a renewal, cannot both win.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssuanceEffect {
    /// First enrollment: device `expected` → `active` (also `active` → `active` when
    /// the device may be re-provisioned).
    ActivateDevice { device_id: String, allow_reprovision: bool },
    /// Renewal: the current certificate `valid` → `superseded`.
    Supersede { issuer: String, serial: Vec<u8> },
    /// An update-signing certificate: its request `approved` (and not expired) →
    /// `issued`, so a rejected or expired request can never be signed.
    FulfilUpdateRequest { id: String },
}

/// What happened to one issuance of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssuanceOutcome {
    /// Stored together with its audit entry (and its effect applied).
    Stored,
    /// The issuer already has a certificate with this serial: nothing was stored for
    /// this item; re-sign with a fresh serial.
    SerialTaken,
    /// The effect's precondition no longer held (the device is not in a state that
    /// may enroll, the certificate being renewed is no longer valid): nothing stored.
    Refused(String),
    /// The public key was revoked for keyCompromise: it is never certified again.
    KeyCompromised,
}

/// A CRL as the scheduled job published it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedCrl {
    pub ca: String,
    /// `full`, `delta`, `shard-N` or `shard-N-delta`.
    pub name: String,
    pub number: u64,
    /// For a delta: the cRLNumber of the complete CRL it updates.
    pub base_number: Option<u64>,
    /// Unix seconds.
    pub this_update: i64,
    pub next_update: i64,
    pub der: Vec<u8>,
}

/// Which CRL is published and when, without its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrlHead {
    pub number: u64,
    /// Unix seconds.
    pub this_update: i64,
    pub next_update: i64,
}

/// A held scheduled-job lock; released when dropped.
pub struct JobLock {
    _held: Option<Box<dyn Send + Sync>>,
}

impl JobLock {
    /// A lock that needs no holding (one process owns the store).
    pub fn exclusive() -> Self {
        Self { _held: None }
    }

    pub fn holding(resource: impl Send + Sync + 'static) -> Self {
        Self { _held: Some(Box::new(resource)) }
    }
}

impl std::fmt::Debug for JobLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobLock")
    }
}

/// Which devices a revocation is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSelector {
    Device(String),
    /// Every device registered in a batch.
    Batch(String),
    /// Every device of a model.
    Model(String),
}

impl DeviceSelector {
    /// The `devices` column it matches on (a fixed name, never input) and the value.
    fn column_and_value(&self) -> (&'static str, &str) {
        match self {
            DeviceSelector::Device(v) => ("device_id", v),
            DeviceSelector::Batch(v) => ("batch", v),
            DeviceSelector::Model(v) => ("model", v),
        }
    }
}

impl std::fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSelector::Device(v) => write!(f, "device:{v}"),
            DeviceSelector::Batch(v) => write!(f, "batch:{v}"),
            DeviceSelector::Model(v) => write!(f, "model:{v}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestStatus {
    Pending,
    Approved,
    Rejected,
    /// Approved and the certificate issued (`issuer`, `serial` set).
    Issued,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Issued => "issued",
        }
    }

    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(RequestStatus::Pending),
            "approved" => Ok(RequestStatus::Approved),
            "rejected" => Ok(RequestStatus::Rejected),
            "issued" => Ok(RequestStatus::Issued),
            other => Err(StoreError::Corrupt(format!("unknown request status '{other}'"))),
        }
    }
}

/// An enrollment waiting for (or past) an operator's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollmentRequest {
    /// SHA-256 of the CSR DER, lower-case hex.
    pub id: String,
    pub profile: String,
    pub device_id: String,
    /// Who asked (the station actor).
    pub requester: String,
    pub status: RequestStatus,
    pub decided_by: Option<String>,
    /// The certificate issued for it, once `Issued`.
    pub issued: Option<(String, Vec<u8>)>,
}

/// What an EST request reads before deciding, each by its key; absent keys are not
/// looked up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnrollmentLookup {
    /// SHA-256 fingerprint (lower-case hex) of the TLS client certificate.
    pub client_fingerprint: Option<String>,
    pub station: Option<String>,
    pub device_id: Option<String>,
    /// An earlier answer to the same station request (see [`Issuance::delivery`]).
    pub earlier: Option<EarlierDelivery>,
}

/// The records an [`EnrollmentLookup`] found.
#[derive(Clone, Debug, Default)]
pub struct EnrollmentContext {
    pub client: Option<CertRecord>,
    pub station: Option<StationRecord>,
    pub device: Option<DeviceRecord>,
    /// The newest certificate stored for [`EnrollmentLookup::earlier`].
    pub earlier: Option<CertRecord>,
}

/// A request for an update-signing certificate (two-person rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateRequest {
    /// 16 random bytes, lower-case hex.
    pub id: String,
    pub profile: String,
    /// The release manager's PKCS#10 request (already checked when submitted).
    pub csr_der: Vec<u8>,
    /// Device classes the certificate is for (names from `[updates.classes]`).
    pub classes: Vec<String>,
    pub validity_days: u32,
    /// The principal who submitted it (token name or certificate CN).
    pub requester: String,
    pub status: RequestStatus,
    /// Distinct approvers so far, in order.
    pub approvals: Vec<String>,
    pub rejected_by: Option<String>,
    pub reason: Option<String>,
    /// The certificate issued for it, once `Issued`.
    pub issued: Option<(String, Vec<u8>)>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; at and after it the request can be neither approved nor signed.
    pub expires_at: i64,
}

/// A role an admin API principal carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Operator,
    Auditor,
    ProvisioningStation,
    /// Submits update-signing certificate requests.
    ReleaseManager,
    /// Approves or rejects update-signing certificate requests.
    UpdateApprover,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Operator,
        Role::Auditor,
        Role::ProvisioningStation,
        Role::ReleaseManager,
        Role::UpdateApprover,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::ProvisioningStation => "provisioning-station",
            Role::ReleaseManager => "release-manager",
            Role::UpdateApprover => "update-approver",
        }
    }

    pub fn parse(s: &str) -> Result<Self, StoreError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role '{s}'")))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An admin API token (`pki_<id>.<secret>`); only the secret's hash is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    /// 16 lower-case hex digits.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Argon2id PHC string of the secret.
    pub secret_hash: String,
    /// Unix microseconds.
    pub created_at: i64,
    /// Unix microseconds, once revoked.
    pub revoked_at: Option<i64>,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("database unreachable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The stored state does not allow the change (e.g. a decision already made).
    #[error("{0}")]
    Conflict(String),
}

/// The storage interface. Implementations must give the same behaviour (DESIGN
/// invariant 5); `tests` in this module's `suite` run against both.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Checks the database answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

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
    async fn get_ca(&self, name: &str) -> Result<Option<CaRecord>, StoreError>;
    /// All CAs, in creation order.
    async fn list_cas(&self) -> Result<Vec<CaRecord>, StoreError>;

    /// Stores a batch of certificates and their audit entries in ONE transaction,
    /// extending the audit chain in batch order. Items whose (issuer, serial) exists
    /// already are skipped (`SerialTaken`), and items whose public key was revoked for
    /// keyCompromise are refused (`KeyCompromised`), both without an audit entry; all
    /// others are durably committed (SQLite `synchronous=FULL`) before this returns.
    /// The compromised-key check runs here, in the storing transaction, so it is one
    /// statement per batch and no certificate slips past a revocation made while it
    /// was being signed.
    async fn store_certificates(&self, batch: &[Issuance]) -> Result<Vec<IssuanceOutcome>, StoreError>;
    async fn get_certificate(&self, issuer: &str, serial: &[u8]) -> Result<Option<CertRecord>, StoreError>;
    /// The newest `valid` certificate of a profile from an issuer (e.g. the current
    /// delegated OCSP signer).
    async fn latest_valid_certificate(&self, issuer: &str, profile: &str) -> Result<Option<CertRecord>, StoreError>;
    /// The certificate with this SHA-256 fingerprint (lower-case hex), if we issued it.
    async fn certificate_by_fingerprint(&self, fingerprint: &str) -> Result<Option<CertRecord>, StoreError>;
    /// Issuer and serial of stored certificates with row id > `after_id`, in id order,
    /// at most `limit` (the audit cross-check pages through all of them).
    async fn certificate_keys(&self, after_id: i64, limit: i64) -> Result<Vec<CertificateKey>, StoreError>;
    /// Revokes a certificate (`valid` or `superseded` → `revoked`, with time and RFC
    /// 5280 reason code) and records the audit entry, in one transaction. `NotFound` if
    /// we never issued it; `Conflict` if it is already revoked. Returns the record as
    /// now stored.
    async fn revoke_certificate(
        &self,
        issuer: &str,
        serial: &[u8],
        reason: i32,
        revoked_at: i64,
        audit: AuditEvent,
    ) -> Result<CertRecord, StoreError>;
    /// Revokes devices (one, a batch or a model): every certificate of them not yet
    /// revoked becomes revoked (time, reason) and the devices `revoked`, with the
    /// audit entry, in one transaction; they can no longer enroll or renew.
    /// `NotFound` if no device matches. Returns how many devices matched and the
    /// certificates it revoked.
    async fn revoke_devices(
        &self,
        which: &DeviceSelector,
        reason: i32,
        revoked_at: i64,
        audit: AuditEvent,
    ) -> Result<(u64, Vec<CertRecord>), StoreError>;
    /// [`Store::revoke_devices`] for one device.
    async fn revoke_device(
        &self,
        device_id: &str,
        reason: i32,
        revoked_at: i64,
        audit: AuditEvent,
    ) -> Result<Vec<CertRecord>, StoreError> {
        let which = DeviceSelector::Device(device_id.to_string());
        Ok(self.revoke_devices(&which, reason, revoked_at, audit).await?.1)
    }
    /// Whether a public key (SHA-256 of its SPKI, hex) was revoked for keyCompromise:
    /// such a key is never certified again.
    async fn public_key_compromised(&self, public_key_sha256: &str) -> Result<bool, StoreError>;
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
    ) -> Result<Vec<(Vec<u8>, i64, Option<i32>)>, StoreError>;
    /// Stores newly signed CRLs, replacing older ones of the same CA and name; a
    /// CRL whose number is not above the stored one's is ignored (numbers only grow).
    async fn publish_crls(&self, crls: &[PublishedCrl], audit: AuditEvent) -> Result<(), StoreError>;
    async fn published_crl(&self, ca: &str, name: &str) -> Result<Option<PublishedCrl>, StoreError>;
    /// Number and times of the published CRL, without reading its bytes (a CRL of a
    /// million entries is 46 MB; the publisher and the servers ask every second).
    async fn published_crl_head(&self, ca: &str, name: &str) -> Result<Option<CrlHead>, StoreError>;
    /// Takes the lock of a scheduled job, or `None` if another instance holds it.
    /// Held until the returned value is dropped.
    async fn try_job_lock(&self, job: &str) -> Result<Option<JobLock>, StoreError>;
    /// The next cRLNumber for an issuer (1, 2, 3, …), incremented in the database.
    async fn next_crl_number(&self, issuer: &str) -> Result<u64, StoreError>;
    /// (issuer, serial, revoked_at) of certificates revoked at or after `since` (unix
    /// seconds), oldest first: how every instance learns of revocations made elsewhere.
    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, Vec<u8>, i64)>, StoreError>;
    /// A device's certificates, newest first.
    async fn certificates_for_device(&self, device_id: &str) -> Result<Vec<CertRecord>, StoreError>;

    /// Adds devices (all or none); `AlreadyExists` names the first duplicate id.
    async fn add_devices(&self, devices: &[DeviceRecord], audit: AuditEvent) -> Result<(), StoreError>;
    async fn get_device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError>;

    /// Adds a station; `AlreadyExists` if the name is taken.
    async fn add_station(&self, station: &StationRecord, audit: AuditEvent) -> Result<(), StoreError>;
    async fn get_station(&self, name: &str) -> Result<Option<StationRecord>, StoreError>;
    /// All stations, by name.
    async fn list_stations(&self) -> Result<Vec<StationRecord>, StoreError>;

    /// For each lookup, the client certificate, station and device it names, in
    /// order. EST reads everything it decides on this way, for all requests waiting
    /// at that moment together: PostgreSQL answers a whole batch with one statement.
    async fn enrollment_contexts(&self, lookups: &[EnrollmentLookup]) -> Result<Vec<EnrollmentContext>, StoreError> {
        let mut found = Vec::with_capacity(lookups.len());
        for lookup in lookups {
            found.push(EnrollmentContext {
                client: match &lookup.client_fingerprint {
                    Some(fp) => self.certificate_by_fingerprint(fp).await?,
                    None => None,
                },
                station: match &lookup.station {
                    Some(name) => self.get_station(name).await?,
                    None => None,
                },
                device: match &lookup.device_id {
                    Some(id) => self.get_device(id).await?,
                    None => None,
                },
                earlier: None,
            });
        }
        Ok(found)
    }

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
    /// approved → issued, recording the certificate.
    async fn mark_enrollment_request_issued(&self, id: &str, issuer: &str, serial: &[u8]) -> Result<(), StoreError>;
    /// Requests in a status (all when `None`), oldest first.
    async fn list_enrollment_requests(
        &self,
        status: Option<RequestStatus>,
    ) -> Result<Vec<EnrollmentRequest>, StoreError>;

    /// Adds an API token; `AlreadyExists` if the id is taken.
    async fn add_api_token(&self, token: &ApiToken, audit: AuditEvent) -> Result<(), StoreError>;
    async fn get_api_token(&self, id: &str) -> Result<Option<ApiToken>, StoreError>;
    /// Marks a token revoked at `at`. `NotFound` if absent; `Conflict` if already revoked.
    async fn revoke_api_token(&self, id: &str, at: i64, audit: AuditEvent) -> Result<(), StoreError>;
    /// All API tokens, oldest first.
    async fn list_api_tokens(&self) -> Result<Vec<ApiToken>, StoreError>;

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

    /// Appends audit entries (for actions that change nothing else, such as refusals).
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
    /// Up to `limit` entries with `seq > after_seq`, in order.
    async fn audit_entries(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError>;
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
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let path = std::path::PathBuf::from(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
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
