//! What a profile and the EST settings let the registration authority do: plain data,
//! built by the service from its configuration (this crate reads no configuration).

use std::collections::BTreeMap;

use const_oid::ObjectIdentifier;
use serde::{Deserialize, Serialize};

use crate::csr::{CheckedCsr, PublicKeyKind};
use crate::ra::Refusal;

/// The kind of certificate a profile issues.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileKind {
    /// Device identity: EKU clientAuth, device id in CN, serialNumber and a
    /// HardwareModuleName SAN.
    Device,
    /// Provisioning station: EKU clientAuth.
    Station,
    /// Firmware-update signing: EKU codeSigning.
    UpdateSigning,
    /// Delegated OCSP responder: EKU OCSPSigning + id-pkix-ocsp-nocheck.
    OcspSigner,
    /// HTTPS server: EKU serverAuth, DNS/IP SANs.
    TlsServer,
    /// A person using the admin API: EKU clientAuth, CN = name, OU = role.
    Operator,
}

impl ProfileKind {
    /// Dotted OIDs of the extended key usages a certificate of this kind carries; a
    /// request may ask for these and no others.
    pub fn granted_ekus(self) -> &'static [&'static str] {
        match self {
            ProfileKind::Device | ProfileKind::Station | ProfileKind::Operator => &["1.3.6.1.5.5.7.3.2"],
            ProfileKind::TlsServer => &["1.3.6.1.5.5.7.3.1"],
            ProfileKind::UpdateSigning => &["1.3.6.1.5.5.7.3.3"],
            ProfileKind::OcspSigner => &["1.3.6.1.5.5.7.3.9"],
        }
    }
}

/// Whether an EST enrollment under a profile needs an operator's approval.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Approval {
    #[default]
    Automatic,
    /// Enrollments wait (202 + Retry-After) until an operator approves them.
    Manual,
}

/// A key type a profile accepts in requests.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    /// RSA of at least 2048 bits (smaller keys are refused when the CSR is checked).
    Rsa,
}

impl KeyType {
    pub const ALL: [KeyType; 4] = [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Ed25519, KeyType::Rsa];

    /// The name used in configuration and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa => "rsa",
        }
    }
}

impl From<PublicKeyKind> for KeyType {
    fn from(kind: PublicKeyKind) -> Self {
        match kind {
            PublicKeyKind::EcdsaP256 => KeyType::EcdsaP256,
            PublicKeyKind::EcdsaP384 => KeyType::EcdsaP384,
            PublicKeyKind::Ed25519 => KeyType::Ed25519,
            PublicKeyKind::Rsa { .. } => KeyType::Rsa,
        }
    }
}

/// One profile, as the registration authority sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfilePolicy {
    pub kind: ProfileKind,
    pub key_types: Vec<KeyType>,
    pub approval: Approval,
    /// Stations may authenticate with their HTTP credential instead of a certificate.
    pub station_credentials: bool,
    /// Model assumed when an operator's request names none (device profiles).
    pub default_model: Option<String>,
    /// When its certificates should be renewed.
    pub renewal: crate::ra::RenewalPolicy,
}

impl ProfilePolicy {
    /// The key rules: a request never widens what the profile grants (no CA:TRUE, no
    /// extended key usage beyond the profile's), and its key type must be allowed.
    pub fn check_request(&self, name: &str, csr: &CheckedCsr) -> Result<(), Refusal> {
        if csr.requests_ca {
            return Err(Refusal::Policy(format!(
                "the CSR asks for CA:TRUE; profile '{name}' issues end-entity certificates only"
            )));
        }
        let granted = self.kind.granted_ekus();
        if let Some(eku) = csr.requested_ekus.iter().find(|e| !granted.contains(&e.as_str())) {
            return Err(Refusal::Policy(format!(
                "the CSR asks for extended key usage {eku}, which profile '{name}' does not grant"
            )));
        }
        let kind = KeyType::from(csr.key_kind);
        if !self.key_types.contains(&kind) {
            return Err(Refusal::Policy(format!("key type {} is not allowed by profile '{name}'", kind.as_str())));
        }
        Ok(())
    }
}

/// Everything the registration authority decides by, for all profiles.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub profiles: BTreeMap<String, ProfilePolicy>,
    /// Device models: name → HardwareModuleName hwType OID.
    pub models: BTreeMap<String, ObjectIdentifier>,
    /// Least time between two certificates of one device, seconds (0 = no limit).
    pub renewal_min_interval_secs: u64,
    /// A renewal may keep the current public key.
    pub allow_same_key_renewal: bool,
    /// Enrollments per station per minute (per process); 0 = unlimited.
    pub station_enrollments_per_minute: u32,
    /// How long a station that repeats an enrollment gets the certificate already
    /// issued for it, seconds.
    pub retry_window_secs: u64,
    /// How far certificates are backdated (their notBefore is this much before issuance).
    pub backdate_secs: u64,
}

/// Whether `id` is a well-formed device id: 1–64 characters of `A-Z a-z 0-9 . : -`,
/// starting with a letter or digit (it becomes the CN, the subject serialNumber and the
/// HardwareModuleName serial, and appears in paths and logs).
pub fn is_valid_device_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-'))
}
