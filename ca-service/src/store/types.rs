//! The records the stores keep, and the store error.

pub use revocation::Reason;

/// The registry's records, and the key an enrollment is stored under, are the
/// registration authority's (`enrollment::ra`).
pub use enrollment::ra::{DeliveryKey, DeviceRecord, DeviceState, EarlierDelivery, StationRecord};

impl From<enrollment::ra::UnknownDeviceState> for StoreError {
    fn from(e: enrollment::ra::UnknownDeviceState) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

use crate::audit::AuditEvent;

/// A CA of the hierarchy: one key generation of a configured CA (see
/// [`crate::hierarchy::generation_name`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// From when this key generation issues (unix seconds); `None`: since it was
    /// stored. A later generation of the same CA takes over from this time (rollover).
    pub issues_from: Option<i64>,
    /// When this generation's key was destroyed (unix seconds): it signs nothing more.
    pub destroyed_at: Option<i64>,
    /// A root's later generation: its old key certified by the new one (OldWithNew)
    /// and its new key certified by the old one (NewWithOld), RFC 4210 §4.4.
    pub old_with_new: Option<Vec<u8>>,
    pub new_with_old: Option<Vec<u8>>,
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

/// Where a stored certificate is in its life: its status, with a `valid` one past its
/// notAfter counted as `expired`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CertState {
    Valid,
    Expired,
    Superseded,
    Revoked,
}

impl CertState {
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Valid => "valid",
            CertState::Expired => "expired",
            CertState::Superseded => "superseded",
            CertState::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "expired" => Ok(CertState::Expired),
            other => Ok(match CertStatus::parse(other)? {
                CertStatus::Valid => CertState::Valid,
                CertStatus::Superseded => CertState::Superseded,
                CertStatus::Revoked => CertState::Revoked,
            }),
        }
    }
}

impl std::fmt::Display for CertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many stored certificates of one issuer and profile are in one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateCount {
    pub issuer: String,
    pub profile: String,
    pub state: CertState,
    pub count: u64,
}

/// A database connection pool's use at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUse {
    pub idle: usize,
    pub in_use: usize,
    pub max: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
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
    /// Why it was revoked (stored as its RFC 5280 CRLReason code).
    pub revocation_reason: Option<Reason>,
    /// SHA-256 of the certificate DER, lower-case hex.
    pub fingerprint: String,
    /// SHA-256 of the SubjectPublicKeyInfo DER, lower-case hex (to refuse compromised keys).
    pub public_key_sha256: String,
    pub der: Vec<u8>,
    /// The CRL shard its cRLDistributionPoints names (0 when CRLs are not sharded).
    pub crl_shard: u32,
}

/// A certificate a revocation of devices revoked: what publishing it needs (the OCSP
/// answers and the CRL shard to re-sign) and what an answer names. Not the whole
/// record: a batch may hold a fleet, and 100k records with their DER were 33.5 MB
/// read back from PostgreSQL to say which serials changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedCert {
    pub issuer: String,
    pub serial: Vec<u8>,
    pub device_id: Option<String>,
    pub profile: String,
    /// Unix seconds.
    pub not_after: i64,
    /// Unix seconds.
    pub revoked_at: i64,
    pub reason: Option<Reason>,
    pub crl_shard: u32,
}

impl From<&CertRecord> for RevokedCert {
    fn from(c: &CertRecord) -> Self {
        RevokedCert {
            issuer: c.issuer.clone(),
            serial: c.serial.clone(),
            device_id: c.device_id.clone(),
            profile: c.profile.clone(),
            not_after: c.not_after,
            revoked_at: c.revoked_at.unwrap_or_default(),
            reason: c.revocation_reason,
            crl_shard: c.crl_shard,
        }
    }
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
    /// Renewal: the current certificate `valid` → `superseded`, or with `revoke` →
    /// `revoked` (reason superseded, at the time of the renewal).
    Supersede { issuer: String, serial: Vec<u8>, revoke: bool },
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

/// A signed checkpoint as stored: the tree size and root it commits to, and the
/// signed note (C2SP tlog-checkpoint) as served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: tlog::Hash,
    pub note: String,
    /// Unix seconds.
    pub signed_at: i64,
}

/// What holds a scheduled-job lock (for PostgreSQL, the connection whose session
/// took the advisory lock).
#[async_trait::async_trait]
pub trait LockHolder: Send + Sync {
    /// Whether the lock is still held: the session that took it still answers.
    async fn still_held(&self) -> bool;
}

/// A held scheduled-job lock; released when dropped.
pub struct JobLock {
    held: Option<Box<dyn LockHolder>>,
}

impl JobLock {
    /// A lock that needs no holding (one process owns the store).
    pub fn exclusive() -> Self {
        Self { held: None }
    }

    pub fn holding(holder: impl LockHolder + 'static) -> Self {
        Self { held: Some(Box::new(holder)) }
    }

    /// Whether the lock is still held (a job that keeps it across rounds asks before
    /// each round: a lost connection released it, and another instance may hold it now).
    pub async fn still_held(&self) -> bool {
        match &self.held {
            None => true,
            Some(h) => h.still_held().await,
        }
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
    pub(crate) fn column_and_value(&self) -> (&'static str, &str) {
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
    /// The secret's stored hash (`crate::credentials`: `hmac-sha256$<key id>$<tag>`).
    pub secret_hash: String,
    /// Unix microseconds.
    pub created_at: i64,
    /// Unix microseconds, once revoked.
    pub revoked_at: Option<i64>,
}

/// A stored `revocation_reason` column → the reason; a code RFC 5280 does not define
/// is `Corrupt` (the stores only ever write [`Reason::code`]).
pub(crate) fn reason_from_code(code: Option<i32>) -> Result<Option<Reason>, StoreError> {
    code.map(|c| {
        u8::try_from(c)
            .ok()
            .and_then(Reason::from_code)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown revocation reason code {c}")))
    })
    .transpose()
}

/// A reason → the `revocation_reason` column's value (its RFC 5280 code).
pub(crate) fn reason_to_code(reason: Option<Reason>) -> Option<i32> {
    reason.map(|r| i32::from(r.code()))
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The stored state does not allow the change (e.g. a decision already made).
    #[error("{0}")]
    Conflict(String),
}
