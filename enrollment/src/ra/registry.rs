//! The registry as the registration authority reads it: devices, stations, the
//! certificates callers present, and requests awaiting approval. The service stores
//! these; the types live here because the pipeline decides on them.

use crate::ra::ProfileKind;

/// Where a device is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// Registered, never enrolled.
    Expected,
    /// Enrolled: holds (or held) a certificate.
    Active,
    Revoked,
    Decommissioned,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Expected => "expected",
            DeviceState::Active => "active",
            DeviceState::Revoked => "revoked",
            DeviceState::Decommissioned => "decommissioned",
        }
    }

    /// The state a stored name means.
    pub fn parse(s: &str) -> Result<Self, UnknownDeviceState> {
        [DeviceState::Expected, DeviceState::Active, DeviceState::Revoked, DeviceState::Decommissioned]
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDeviceState(s.to_string()))
    }
}

/// A device state name that is none of ours (corrupt data).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown device state '{0}'")]
pub struct UnknownDeviceState(pub String);

impl std::fmt::Display for DeviceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device known to the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    pub device_id: String,
    pub model: String,
    pub class: String,
    pub batch: String,
    pub hardware_serial: Option<String>,
    pub state: DeviceState,
    /// An `active` device may be enrolled again (factory re-provisioning).
    pub reprovision: bool,
}

/// A provisioning station and what it may enroll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StationRecord {
    /// The station's certificate CN.
    pub name: String,
    pub enabled: bool,
    /// Models it may enroll; `*` = any.
    pub models: Vec<String>,
    /// Batches it may enroll; `*` = any.
    pub batches: Vec<String>,
    /// Hash of the station's HTTP credential, if it has one.
    pub secret_hash: Option<String>,
}

impl StationRecord {
    /// Whether this station may enroll `device`.
    pub fn may_enroll(&self, device: &DeviceRecord) -> bool {
        let allows = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        allows(&self.models, &device.model) && allows(&self.batches, &device.batch)
    }
}

/// A certificate's standing in our records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertState {
    Valid,
    Revoked,
    /// Replaced by a renewal.
    Superseded,
}

/// A certificate we issued, as far as the pipeline needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownCertificate {
    /// The issuing CA key's name: the CA itself, or one of its later key generations
    /// after a rollover. With `serial`, the certificate's key in the registry.
    pub issuer: String,
    /// The configured CA that issued it, whichever of its key generations signed: what
    /// a profile names, and what authentication checks.
    pub ca: String,
    pub serial: Vec<u8>,
    pub profile: String,
    /// The kind of its profile (`None`: the profile is no longer configured).
    pub kind: Option<ProfileKind>,
    pub device_id: Option<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub state: CertState,
    /// SHA-256 of the certificate DER, lower-case hex.
    pub fingerprint: String,
    /// SHA-256 of the SubjectPublicKeyInfo DER, lower-case hex.
    pub public_key_sha256: String,
    pub der: Vec<u8>,
}

/// Where a request that needs an operator's approval stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
    /// Approved, and this certificate was issued for it.
    Issued {
        issuer: String,
        serial: Vec<u8>,
    },
}

/// What a station's request reads before deciding, each by its key; absent keys are
/// not looked up. Read in one go (the service batches them across requests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lookup {
    /// SHA-256 fingerprint (lower-case hex) of the TLS client certificate.
    pub client_fingerprint: Option<String>,
    pub station: Option<String>,
    pub device_id: Option<String>,
    /// An earlier delivery of the same request: the certificate issued for the CSR with
    /// this SHA-256 to `station`, no earlier than `since` (unix seconds).
    pub earlier: Option<EarlierDelivery>,
}

/// The key of a request that may have been answered before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarlierDelivery {
    /// The device the CSR names (its CN): a delivery is looked up among that device's
    /// certificates, through the index the registry already has.
    pub device_id: String,
    /// SHA-256 of the CSR DER, lower-case hex.
    pub request_sha256: String,
    pub station: String,
    /// Unix seconds: issued at or after this.
    pub since: i64,
}

/// The records a [`Lookup`] found.
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub client: Option<KnownCertificate>,
    pub station: Option<StationRecord>,
    pub device: Option<DeviceRecord>,
    /// The newest certificate issued for the same request (see [`Lookup::earlier`]).
    pub earlier: Option<KnownCertificate>,
}
