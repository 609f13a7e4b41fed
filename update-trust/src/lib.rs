//! Firmware-update signatures: the reference verifier and signer.
//!
//! An update is a firmware image plus a **detached CMS signature** (RFC 5652
//! `ContentInfo` of type `SignedData`, no encapsulated content). This crate is what
//! device teams port or link, what the OTA pipeline signs with, and what
//! `ca-service ota verify|sign` runs. [`sign_detached`] makes the signature through an
//! [`hsm::Signer`] (the key never leaves its store); [`verify_detached`] applies the
//! whole device-side policy in one call and returns who signed, or a [`VerifyError`]
//! that says which rule refused; [`verify_detached_logged`] also takes the tlog-proof
//! that the signer certificate's issuance was logged (rule 7).
//!
//! # What a device must check, and why
//!
//! 1. **The chain ends at the update root — only.** [`Policy::trust_anchors`] holds the
//!    Update Root CA certificate(s) and nothing else. The Identity Root and the online
//!    Device Issuing CA are a separate hierarchy (DESIGN §4): if a device also trusted
//!    them, a compromise of the online device CA could mint firmware-signing authority.
//!    Intermediates are taken from the signature's `certificates`; they are untrusted
//!    input, so only the anchors decide.
//! 2. **The signer certificate says codeSigning.** Its extendedKeyUsage must be present
//!    and contain `id-kp-codeSigning` ([`CODE_SIGNING`]); `anyExtendedKeyUsage` or no
//!    EKU at all is refused, so a TLS client or server certificate that happens to chain
//!    to the right root can never sign firmware. Intermediate CAs may omit EKU; if they
//!    carry one it must include codeSigning as well ("EKU chaining"). A keyUsage
//!    extension, when present, must include digitalSignature.
//! 3. **The signer is scoped to this device class.** Each device class has one policy
//!    OID ([`device_class_oid`]: a private arc plus the class number) and the Update
//!    Authority lists the classes a signing certificate may serve in its
//!    certificatePolicies. A device sets [`Policy::device_class`] to its own class, so a
//!    key that signs camera firmware cannot sign door-lock firmware. Only the signer
//!    certificate's own policies count (no RFC 5280 policy mapping, and `anyPolicy`
//!    matches nothing).
//! 4. **The signer is not revoked.** When [`Policy::crls`] is non-empty, the signer
//!    certificate's status *must* come from them: a CRL from the wrong issuer, a CRL
//!    whose signature does not verify, or a CRL whose nextUpdate has passed at the
//!    verification time all give [`VerifyError::RevocationUnknown`] — refusal, never a
//!    silent pass. Revocation is checked for the signer (end-entity) certificate;
//!    compromise of the Update Authority CA itself is handled by replacing the anchor.
//!    Complete CRLs only (webpki refuses delta CRLs). Of several CRLs with the same
//!    issuer and scope only the newest (thisUpdate) is used — webpki would believe
//!    whichever came first, letting an old CRL hide a new revocation. A revoked
//!    certificate is refused whatever its revocation date, also for signatures made
//!    before it.
//! 5. **The signature is checked at a chosen time** ([`VerifyTime`]). A device with a
//!    trustworthy clock uses [`VerifyTime::Now`]: certificates must be valid now, which
//!    is what makes short-lived signing certificates (and stale CRLs) expire. A device
//!    *without* a reliable clock (no RTC, no secure time source at boot) cannot do that;
//!    it may use [`VerifyTime::SigningTime`], which checks the chain at the CMS
//!    signingTime attribute. That time is asserted by the signer, so it only proves
//!    "valid at the moment the signer claims": a stolen key with an expired certificate
//!    can backdate. Such devices must therefore rely on revocation (CRLs shipped with or
//!    fetched for the update) and should reject updates older than the installed one
//!    (anti-rollback, a version counter — outside this crate). [`VerifyTime::At`] is for
//!    a time the caller trusts (e.g. from a secure time service, or audits).
//! 6. **The content matches.** The image is hashed streaming (it may be gigabytes) and
//!    compared with the signed messageDigest; the signature over the signed attributes
//!    is verified with the signer certificate's key; the signed contentType must be
//!    id-data. Exactly one SignerInfo is accepted.
//! 7. **The signer was logged.** When [`Policy::log`] is set, the signer certificate
//!    must come with a C2SP tlog-proof ([`verify_detached_logged`]) showing that its
//!    issuance is in the Update Authority's transparency log: the proof's `extra` is
//!    the log entry (the audit entry's canonical JSON) with action
//!    `certificate.issue` and `details.fingerprint` equal to the SHA-256 of the signer
//!    certificate's DER, and the RFC 6962 path from that entry's leaf hash leads to a
//!    checkpoint signed by one of [`LogPolicy::verifiers`], for the log named like the
//!    key (origin = verifier name). A missing, malformed or foreign proof gives
//!    [`VerifyError::NotLogged`]. This is what makes a certificate minted outside the
//!    two-person flow — e.g. with a stolen Update Authority key — useless: its
//!    issuance is not in the log, or the log shows it to every monitor. The check
//!    needs no clock and no storage; the proof ships next to the signature.
//!
//! The chain, EKU, validity and CRL checks are done by `rustls-webpki`; signatures and
//! digests by `aws-lc-rs`; the CMS structures are `cms`/`der`/`x509-cert` types. No
//! cryptography is implemented here.
//!
//! # Algorithms
//!
//! Signing digests follow the key: SHA-256 for P-256 and RSA (sha256WithRSAEncryption),
//! SHA-384 for P-384, **SHA-512 for Ed25519** (RFC 8419 §3.1 requires id-sha512 as the
//! digestAlgorithm of an Ed25519 SignerInfo with signed attributes; OpenSSL refuses any
//! other digest there). Verification accepts SHA-256/384/512 digests with ECDSA (P-256,
//! P-384), Ed25519 and RSA PKCS#1 v1.5 (2048-8192 bits), including OpenSSL's habit of
//! writing `rsaEncryption` as the signatureAlgorithm (the hash then comes from the
//! digestAlgorithm). SHA-1, RSA-PSS and anything else give
//! [`VerifyError::UnsupportedAlgorithm`].

use std::fmt;
use std::time::SystemTime;

pub use const_oid::ObjectIdentifier;

mod alg;
mod sign;
mod verify;

pub use sign::{sign_detached, SignError};
pub use verify::{verify_detached, verify_detached_logged};

/// The transparency-log formats the proof of rule 7 is in (the `tlog` crate).
pub use tlog;

/// `id-kp-codeSigning` (1.3.6.1.5.5.7.3.3): the extended key usage an update-signing
/// certificate must carry.
pub const CODE_SIGNING: ObjectIdentifier = const_oid::db::rfc5280::ID_KP_CODE_SIGNING;

/// Largest signature [`verify_detached`] reads. A detached signature holds a few
/// certificates and one SignerInfo (a few KiB); the cap keeps hostile input from
/// making the parser allocate without bound.
pub const MAX_SIGNATURE_LEN: usize = 1024 * 1024;

/// The certificatePolicies OID of device class `number` under the operator's private
/// `arc`: `arc.number` (e.g. arc `1.3.6.1.4.1.55555.1.2`, class 7 →
/// `1.3.6.1.4.1.55555.1.2.7`).
///
/// One OID per device class: the Update Authority puts the OIDs of the classes a
/// signing certificate may serve in its certificatePolicies, and a device of class `n`
/// verifies with `Policy::device_class = Some(device_class_oid(arc, n)?)`.
///
/// # Errors
/// If the result is not a valid OID or exceeds what `const-oid` can hold (39 bytes of
/// encoding).
pub fn device_class_oid(arc: &ObjectIdentifier, number: u32) -> Result<ObjectIdentifier, const_oid::Error> {
    arc.push_arc(number)
}

/// The moment at which the chain (validity periods, CRL freshness) is checked. See the
/// [crate documentation](crate#what-a-device-must-check-and-why), point 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyTime {
    /// The system clock. For devices whose clock can be trusted.
    Now,
    /// The CMS signingTime signed attribute (signer-asserted); a signature without one
    /// is refused with [`VerifyError::MissingSigningTime`]. For devices without a
    /// reliable clock.
    SigningTime,
    /// A time the caller trusts.
    At(SystemTime),
}

/// What a valid update signature must satisfy.
#[derive(Clone, Debug)]
pub struct Policy<'a> {
    /// DER certificates of the **update root(s)** — never the identity root.
    pub trust_anchors: &'a [Vec<u8>],
    /// DER CRLs (complete, not delta). When non-empty, the signer certificate's status
    /// must be determined by them; unknown status is a refusal.
    pub crls: &'a [Vec<u8>],
    /// When set, the signer certificate's certificatePolicies must contain this device
    /// class OID (see [`device_class_oid`]).
    pub device_class: Option<ObjectIdentifier>,
    /// When the chain is checked.
    pub time: VerifyTime,
    /// When set, the signer certificate's issuance must be proven to be in this
    /// transparency log (rule 7); `None` skips the check.
    pub log: Option<LogPolicy<'a>>,
}

/// The transparency log a signer certificate's issuance must be in (rule 7).
#[derive(Clone, Copy, Debug)]
pub struct LogPolicy<'a> {
    /// The log's checkpoint keys (parse them with [`tlog::Verifier::parse`]); a
    /// checkpoint is accepted for the log whose origin is the key's name.
    pub verifiers: &'a [tlog::Verifier],
}

/// Who signed an accepted update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The signer certificate's subject (RFC 4514 string).
    pub signer_subject: String,
    /// The signer certificate's serial number, lowercase hex without a sign byte.
    pub signer_serial_hex: String,
    /// The signingTime attribute, if the signature has one.
    pub signing_time: Option<SystemTime>,
    /// All policy OIDs in the signer certificate's certificatePolicies (its device
    /// classes).
    pub device_classes: Vec<ObjectIdentifier>,
    /// The signer certificate's notAfter.
    pub not_after: SystemTime,
}

/// Why an update signature was refused. Each variant names one rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The signature input exceeds [`MAX_SIGNATURE_LEN`].
    #[error("the signature is {len} bytes, more than the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    /// Not a well-formed detached CMS SignedData (DER or PEM).
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// The SignedData has no SignerInfo.
    #[error("the signature has no signer")]
    NoSigner,
    /// More than one SignerInfo: ambiguous, refused.
    #[error("the signature has {0} signers; exactly one is accepted")]
    MultipleSigners(usize),
    /// The certificate named by the SignerInfo is not in the signature's certificates.
    #[error("the signer's certificate is not included in the signature")]
    SignerCertificateMissing,
    /// The signed content type (eContentType / contentType attribute) is not id-data.
    #[error("the signed content type is {0}, not id-data")]
    WrongContentType(ObjectIdentifier),
    /// A digest or signature algorithm outside the accepted set.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// [`VerifyTime::SigningTime`] was asked for, but the signature has no signingTime.
    #[error("the signature has no signingTime attribute, but the policy verifies at the signing time")]
    MissingSigningTime,
    /// A [`Policy::trust_anchors`] entry is unusable (caller configuration).
    #[error("invalid trust anchor: {0}")]
    InvalidTrustAnchor(String),
    /// A [`Policy::crls`] entry is unusable (caller configuration).
    #[error("invalid CRL in the policy: {0}")]
    InvalidCrl(String),
    /// No valid path from the signer certificate to an update trust anchor.
    #[error("the signer certificate does not chain to an update trust anchor: {0}")]
    UntrustedChain(String),
    /// The signer certificate (or an intermediate) is not authorized for code signing.
    #[error("the signer certificate is not authorized for code signing: {0}")]
    NotCodeSigning(String),
    /// A certificate of the chain had expired at the verification time.
    #[error("certificate expired at {} (verification time {})", fmt_time(*.not_after), fmt_time(*.at))]
    Expired { not_after: SystemTime, at: SystemTime },
    /// A certificate of the chain was not yet valid at the verification time.
    #[error("certificate not valid before {} (verification time {})", fmt_time(*.not_before), fmt_time(*.at))]
    NotYetValid { not_before: SystemTime, at: SystemTime },
    /// The signer certificate is listed in a CRL.
    #[error("the signer certificate is revoked")]
    Revoked,
    /// CRLs were given but none determines the signer certificate's status.
    #[error("revocation status unknown: {0}")]
    RevocationUnknown(String),
    /// The signature over the signed attributes does not verify with the signer's key.
    #[error("the signature does not verify with the signer certificate's key")]
    BadSignature,
    /// The content's digest differs from the signed messageDigest.
    #[error("the content does not match the signed digest")]
    DigestMismatch,
    /// The signer certificate is not scoped to the required device class.
    #[error("the signer certificate is not scoped to device class {wanted} (it has: {})", fmt_oids(.have))]
    ClassNotInScope { wanted: ObjectIdentifier, have: Vec<ObjectIdentifier> },
    /// [`Policy::log`] is set and the signer certificate's issuance is not proven to
    /// be in that log; the message names the check that failed.
    #[error("the signer certificate is not proven to be logged: {0}")]
    NotLogged(String),
    /// Reading the content failed.
    #[error("reading the content failed: {0}")]
    Io(#[from] std::io::Error),
}

fn fmt_time(t: SystemTime) -> String {
    match der::DateTime::from_system_time(t) {
        Ok(dt) => dt.to_string(),
        Err(_) => format!("{t:?}"),
    }
}

fn fmt_oids(oids: &[ObjectIdentifier]) -> String {
    struct Joined<'a>(&'a [ObjectIdentifier]);
    impl fmt::Display for Joined<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if self.0.is_empty() {
                return f.write_str("none");
            }
            for (i, oid) in self.0.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{oid}")?;
            }
            Ok(())
        }
    }
    Joined(oids).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_class_oid_appends_the_class_number() {
        let arc = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.55555.1.2");
        assert_eq!(device_class_oid(&arc, 7).unwrap(), ObjectIdentifier::new_unwrap("1.3.6.1.4.1.55555.1.2.7"));
        assert_ne!(device_class_oid(&arc, 7).unwrap(), device_class_oid(&arc, 8).unwrap());
    }

    #[test]
    fn error_messages_name_the_rule() {
        let e = VerifyError::ClassNotInScope {
            wanted: ObjectIdentifier::new_unwrap("1.2.3.4"),
            have: vec![ObjectIdentifier::new_unwrap("1.2.3.5"), ObjectIdentifier::new_unwrap("1.2.3.6")],
        };
        assert_eq!(
            e.to_string(),
            "the signer certificate is not scoped to device class 1.2.3.4 (it has: 1.2.3.5, 1.2.3.6)"
        );
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let e = VerifyError::Expired { not_after: t, at: t };
        assert_eq!(
            e.to_string(),
            "certificate expired at 2023-11-14T22:13:20Z (verification time 2023-11-14T22:13:20Z)"
        );
    }
}
