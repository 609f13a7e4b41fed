//! The certificate identifier of renewal information (draft-ietf-lamps-est-renewal-info,
//! which takes it from ACME ARI, RFC 9773 §4.1): the base64url of the certificate's
//! Authority Key Identifier keyIdentifier, a `.`, and the base64url of its serial
//! number's DER content octets, both without padding.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

/// Longest certificate ID accepted (a 20-octet serial and a 64-octet key id fit).
pub const MAX_CERT_ID_CHARS: usize = 256;

/// A certificate ID, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertId {
    pub key_id: Vec<u8>,
    /// The serial's DER content octets (a leading 0x00 kept where DER has one).
    pub serial: Vec<u8>,
}

impl CertId {
    /// The textual form.
    pub fn encode(&self) -> String {
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&self.key_id), URL_SAFE_NO_PAD.encode(&self.serial))
    }
}

/// Why a certificate ID is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertIdError {
    #[error("the certificate ID is longer than {MAX_CERT_ID_CHARS} characters")]
    TooLong,
    #[error("the certificate ID must be base64url(AKI keyIdentifier) '.' base64url(serial), unpadded")]
    Malformed,
}

/// Parses `keyid.serial`.
pub fn parse_cert_id(s: &str) -> Result<CertId, CertIdError> {
    if s.len() > MAX_CERT_ID_CHARS {
        return Err(CertIdError::TooLong);
    }
    let (key_id, serial) = s.split_once('.').ok_or(CertIdError::Malformed)?;
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).ok().filter(|b: &Vec<u8>| !b.is_empty());
    match (decode(key_id), decode(serial)) {
        (Some(key_id), Some(serial)) => Ok(CertId { key_id, serial }),
        _ => Err(CertIdError::Malformed),
    }
}

/// The ID of a certificate (DER); `None` if it does not parse or has no AKI key id.
pub fn cert_id_of(der: &[u8]) -> Option<CertId> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let key_id = cert.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|k| k.0.to_vec()),
        _ => None,
    })?;
    Some(CertId { key_id, serial: cert.raw_serial().to_vec() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_rfc_9773_example_round_trips() {
        // RFC 9773 §4.1: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
        // serial 00:87:65:43:21 → "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".
        let id = parse_cert_id("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE").unwrap();
        assert_eq!(id.serial, vec![0x00, 0x87, 0x65, 0x43, 0x21]);
        assert_eq!(id.key_id[..3], [0x69, 0x88, 0x5b]);
        assert_eq!(id.encode(), "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in ["", "abc", ".", "a.", ".b", "a+b.c", "aYhb.AId=", "x.y.z"] {
            assert!(parse_cert_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_cert_id(&"a".repeat(300)), Err(CertIdError::TooLong));
    }
}
