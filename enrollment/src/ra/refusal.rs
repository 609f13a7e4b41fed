//! Why the registration authority said no: one enum for every issuing path, with one
//! mapping to an HTTP status ([`Refusal::status`]). The messages are short, name what
//! was wrong, and are safe to show to the caller (and to audit).

use crate::csr::CsrError;
use crate::est::{EstError, RenewalMismatch};
use crate::ra::DeviceState;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    // --- 401: who are you? --------------------------------------------------------
    #[error("a TLS client certificate is required for this endpoint")]
    CertificateRequired,
    #[error("a TLS client certificate or station credentials are required")]
    CredentialsRequired,
    /// A malformed or wrong station credential (unknown station and wrong secret alike).
    #[error("{0}")]
    BadCredentials(&'static str),

    // --- 403: the caller is not one we accept ----------------------------------------
    #[error("the client certificate was not issued by the {0} CA")]
    ForeignCertificate(String),
    #[error("the client certificate has expired or is not yet valid")]
    CertificateOutOfValidity,
    #[error("the client certificate is not a {0} identity")]
    NotAnIdentity(String),
    #[error("the client certificate is revoked")]
    CertificateRevoked,
    #[error("the client certificate has been replaced by a renewal; use the current one")]
    CertificateSuperseded,
    #[error("the station certificate has no CN")]
    StationWithoutName,
    #[error("station '{0}' is not registered")]
    UnknownStation(String),
    #[error("station '{0}' is disabled")]
    StationDisabled(String),

    // --- 403: the caller may not have this ---------------------------------------------
    #[error("unknown device id '{0}': it is not in the device registry")]
    UnknownDevice(String),
    #[error("device '{0}' is not in the registry")]
    UnregisteredDevice(String),
    #[error("station '{station}' may not enroll model '{model}' of batch '{batch}'")]
    OutOfScope { station: String, model: String, batch: String },
    #[error("device '{0}' is already enrolled and its batch does not allow re-provisioning")]
    AlreadyEnrolled(String),
    #[error("device '{id}' is {state}")]
    DeviceNotEnrollable { id: String, state: DeviceState },
    #[error("device model '{0}' is not configured")]
    UnknownModel(String),
    #[error("profile '{0}' is no longer configured")]
    ProfileGone(String),
    #[error("request {0} was rejected by an operator")]
    Rejected(String),

    // --- 400: the request itself -------------------------------------------------------
    #[error(transparent)]
    Body(#[from] EstError),
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error("the request body could not be read")]
    UnreadableBody,
    /// A CSR an operator or a release manager handed in that does not check out.
    #[error("invalid request: {0}")]
    InvalidRequest(CsrError),
    /// A subject the profile cannot encode (too long, bad characters).
    #[error("{0}")]
    BadSubject(String),
    #[error("the CSR subject has no CN (device id)")]
    NoDeviceId,
    #[error("invalid device id '{0}': use 1-64 characters of A-Z a-z 0-9 . : - starting with a letter or digit")]
    InvalidDeviceId(String),
    /// The request asks for more than the profile grants, or a subject it cannot have.
    #[error("request refused: {0}")]
    Policy(String),
    #[error("unknown device model '{0}'")]
    UnknownModelName(String),
    #[error(transparent)]
    RenewalIdentity(#[from] RenewalMismatch),
    #[error("renewal must use a new key pair (same-key renewal is not allowed)")]
    SameKey,
    #[error("rotation {0} follows a suspected key exposure: renew with a new key pair")]
    SameKeyInRotation(i64),

    // --- 404 -----------------------------------------------------------------------------
    #[error("unknown EST label '{0}'")]
    UnknownLabel(String),
    #[error("EST profile '{0}' is not configured")]
    UnknownEstProfile(String),
    #[error("unknown profile '{0}'")]
    UnknownProfile(String),
    #[error("{0} not found")]
    NotFound(String),

    // --- 409: the state the decision relied on changed ----------------------------------
    #[error("request refused: {0}")]
    StateChanged(String),
    #[error("{0}")]
    Conflict(String),

    // --- 429 -----------------------------------------------------------------------------
    #[error("station rate limit of {limit}/minute reached")]
    StationRateLimited { limit: u32, retry_after: u64 },
    #[error("device '{device}' was issued a certificate less than {interval} s ago")]
    RenewalRateLimited { device: String, interval: u64, retry_after: u64 },

    // --- 5xx: ours, not the caller's (details go to the log, not the answer) -------------
    #[error("storage unavailable; try again later")]
    Unavailable,
    #[error("the certificate could not be issued; try again later")]
    IssuerUnavailable,
    #[error("the certificate could not be issued; try again later")]
    IssuanceFailed,
    #[error("internal error")]
    Internal,
}

/// Retry-After of a 503: when the store or the issuer is out, how long is unknown; the
/// store's deadlines answer within about 11 s, and a station that asks again every 5 s
/// resumes soon after the outage ends without flooding us during it.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

impl Refusal {
    /// The HTTP status this refusal is answered with: the one place it is chosen.
    pub fn status(&self) -> u16 {
        use Refusal::*;
        match self {
            CertificateRequired | CredentialsRequired | BadCredentials(_) => 401,
            ForeignCertificate(_)
            | CertificateOutOfValidity
            | NotAnIdentity(_)
            | CertificateRevoked
            | CertificateSuperseded
            | StationWithoutName
            | UnknownStation(_)
            | StationDisabled(_)
            | UnknownDevice(_)
            | UnregisteredDevice(_)
            | OutOfScope { .. }
            | AlreadyEnrolled(_)
            | DeviceNotEnrollable { .. }
            | UnknownModel(_)
            | ProfileGone(_)
            | Rejected(_) => 403,
            Body(EstError::TooLarge) | Csr(CsrError::TooLarge) => 413,
            Body(EstError::WrongContentType { .. }) => 415,
            Body(EstError::Encoding(_)) | Internal | IssuanceFailed => 500,
            Body(_) | Csr(_) | UnreadableBody | InvalidRequest(_) | BadSubject(_) | NoDeviceId | InvalidDeviceId(_)
            | Policy(_) | UnknownModelName(_) | RenewalIdentity(_) | SameKey | SameKeyInRotation(_) => 400,
            UnknownLabel(_) | UnknownEstProfile(_) | UnknownProfile(_) | NotFound(_) => 404,
            StateChanged(_) | Conflict(_) => 409,
            StationRateLimited { .. } | RenewalRateLimited { .. } => 429,
            Unavailable | IssuerUnavailable => 503,
        }
    }

    /// A short, fixed name of the refusal's kind (`unknown_device`, `rate_limited`, …):
    /// a bounded label for metrics and dashboards, where the message (which names
    /// devices and stations) would be an unbounded one.
    pub fn kind(&self) -> &'static str {
        use Refusal::*;
        match self {
            CertificateRequired => "certificate_required",
            CredentialsRequired => "credentials_required",
            BadCredentials(_) => "bad_credentials",
            ForeignCertificate(_) => "foreign_certificate",
            CertificateOutOfValidity => "certificate_out_of_validity",
            NotAnIdentity(_) => "not_an_identity",
            CertificateRevoked => "certificate_revoked",
            CertificateSuperseded => "certificate_superseded",
            StationWithoutName | UnknownStation(_) => "unknown_station",
            StationDisabled(_) => "station_disabled",
            UnknownDevice(_) | UnregisteredDevice(_) => "unknown_device",
            OutOfScope { .. } => "out_of_scope",
            AlreadyEnrolled(_) => "already_enrolled",
            DeviceNotEnrollable { .. } => "device_not_enrollable",
            UnknownModel(_) | UnknownModelName(_) => "unknown_model",
            ProfileGone(_) | UnknownLabel(_) | UnknownEstProfile(_) | UnknownProfile(_) => "unknown_profile",
            Rejected(_) => "rejected",
            Body(EstError::TooLarge) | Csr(CsrError::TooLarge) => "too_large",
            Body(EstError::WrongContentType { .. }) => "wrong_content_type",
            Body(_) | UnreadableBody => "bad_body",
            Csr(_) | InvalidRequest(_) => "bad_csr",
            BadSubject(_) | NoDeviceId | InvalidDeviceId(_) => "bad_subject",
            Policy(_) => "policy",
            RenewalIdentity(_) => "renewal_identity",
            SameKey | SameKeyInRotation(_) => "same_key",
            NotFound(_) => "not_found",
            StateChanged(_) | Conflict(_) => "conflict",
            StationRateLimited { .. } | RenewalRateLimited { .. } => "rate_limited",
            Unavailable => "storage_unavailable",
            IssuerUnavailable | IssuanceFailed => "issuer_unavailable",
            Internal => "internal",
        }
    }

    /// Seconds the caller should wait before asking again, where that is known (or,
    /// for an outage of ours, a short wait that keeps retries from piling up).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Refusal::StationRateLimited { retry_after, .. } | Refusal::RenewalRateLimited { retry_after, .. } => {
                Some(*retry_after)
            }
            Refusal::Unavailable | Refusal::IssuerUnavailable => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kinds are metric label values: fixed snake-case words that never carry the
    /// caller's input, whatever the message holds.
    #[test]
    fn kinds_are_bounded_words_without_the_input() {
        let hostile = "SN-1\"} 1\nevil{".to_string();
        let samples = [
            Refusal::UnknownDevice(hostile.clone()),
            Refusal::UnknownStation(hostile.clone()),
            Refusal::OutOfScope { station: hostile.clone(), model: hostile.clone(), batch: hostile.clone() },
            Refusal::RenewalRateLimited { device: hostile.clone(), interval: 1, retry_after: 1 },
            Refusal::Body(EstError::TooLarge),
            Refusal::Conflict(hostile.clone()),
            Refusal::CertificateRequired,
            Refusal::Internal,
        ];
        for r in &samples {
            let kind = r.kind();
            assert!(!kind.is_empty() && kind.len() <= 32, "{kind}");
            assert!(kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{kind}");
        }
        assert_eq!(samples[0].kind(), "unknown_device");
        assert_eq!(samples[3].kind(), "rate_limited");
        assert_eq!(samples[4].kind(), "too_large");
    }
}
