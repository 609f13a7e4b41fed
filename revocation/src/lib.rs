//! Revocation publishing for the device PKI: CRLs (full and delta, RFC 5280 §5) and
//! OCSP (RFC 6960, RFC 5019 profile) encoding.
//!
//! * [`crl::build_crl`] — one encoder for complete and delta CRLs (x509-cert
//!   `TbsCertList` field types; the revoked list is streamed so a million entries cost
//!   no per-entry heap allocation), signed through [`hsm::Signer`].
//! * [`ocsp`] — request parsing with a size limit, CertID matching against an issuing
//!   CA ([`ocsp::IssuerKeys`]), signed `BasicOCSPResponse`s from a delegated OCSP
//!   signer, unsigned error responses, and the [`ocsp::StatusSource`] port the service
//!   implements to answer status questions.
//!
//! The crate is pure: no storage, no HTTP, no clock except where documented. Signing
//! is blocking (it goes through `hsm`); async callers run it on a blocking pool.

pub mod crl;
mod derw;
pub mod ocsp;

/// CRLReason (RFC 5280 §5.3.1), shared by CRL entries and OCSP `RevokedInfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// unspecified (0). Encoders omit the reason code for it (RFC 5280 §5.3.1: the
    /// extension SHOULD be absent rather than carry `unspecified`).
    Unspecified,
    /// keyCompromise (1)
    KeyCompromise,
    /// cACompromise (2)
    CaCompromise,
    /// affiliationChanged (3)
    AffiliationChanged,
    /// superseded (4)
    Superseded,
    /// cessationOfOperation (5)
    CessationOfOperation,
    /// certificateHold (6)
    CertificateHold,
    /// removeFromCRL (8) — only meaningful in delta CRLs (RFC 5280 §5.3.1).
    RemoveFromCrl,
    /// privilegeWithdrawn (9)
    PrivilegeWithdrawn,
    /// aACompromise (10)
    AaCompromise,
}

impl Reason {
    /// The ENUMERATED value.
    pub fn code(self) -> u8 {
        match self {
            Reason::Unspecified => 0,
            Reason::KeyCompromise => 1,
            Reason::CaCompromise => 2,
            Reason::AffiliationChanged => 3,
            Reason::Superseded => 4,
            Reason::CessationOfOperation => 5,
            Reason::CertificateHold => 6,
            Reason::RemoveFromCrl => 8,
            Reason::PrivilegeWithdrawn => 9,
            Reason::AaCompromise => 10,
        }
    }

    /// The reason for an ENUMERATED value; `None` for 7 (unused) and out-of-range codes.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Reason::Unspecified,
            1 => Reason::KeyCompromise,
            2 => Reason::CaCompromise,
            3 => Reason::AffiliationChanged,
            4 => Reason::Superseded,
            5 => Reason::CessationOfOperation,
            6 => Reason::CertificateHold,
            8 => Reason::RemoveFromCrl,
            9 => Reason::PrivilegeWithdrawn,
            10 => Reason::AaCompromise,
            _ => return None,
        })
    }

    pub(crate) fn to_x509(self) -> x509_cert::ext::pkix::CrlReason {
        use x509_cert::ext::pkix::CrlReason as R;
        match self {
            Reason::Unspecified => R::Unspecified,
            Reason::KeyCompromise => R::KeyCompromise,
            Reason::CaCompromise => R::CaCompromise,
            Reason::AffiliationChanged => R::AffiliationChanged,
            Reason::Superseded => R::Superseded,
            Reason::CessationOfOperation => R::CessationOfOperation,
            Reason::CertificateHold => R::CertificateHold,
            Reason::RemoveFromCrl => R::RemoveFromCRL,
            Reason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
            Reason::AaCompromise => R::AaCompromise,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn reason_codes_round_trip() {
        for code in 0..=255u8 {
            match Reason::from_code(code) {
                Some(r) => {
                    assert_eq!(r.code(), code);
                    assert_eq!(r.to_x509() as u32, u32::from(code));
                }
                None => assert!(code == 7 || code > 10, "code {code}"),
            }
        }
    }
}
