//! [`sign_detached`]: a detached CMS SignedData built as typed `cms` structures and
//! signed through [`hsm::Signer`].
//!
//! (`cms`'s own builder wants RustCrypto signer traits; our keys live behind
//! `hsm::Signer`, so the SignedData is assembled here field by field.)

use std::io::Read;
use std::time::SystemTime;

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedAttributes, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::db::rfc5911;
use const_oid::ObjectIdentifier;
use der::asn1::{GeneralizedTime, OctetString, SetOfVec, UtcTime};
use der::{Any, Decode, Encode};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::attr::Attribute;
use x509_cert::time::Time;
use x509_cert::Certificate;

use crate::alg::digest_for_signature;

/// Why a signature could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The signer certificate or a chain certificate is not a DER X.509 certificate.
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    /// The key does not belong to the signer certificate.
    #[error("the signing key does not match the signer certificate's public key")]
    KeyMismatch,
    /// The key's signature algorithm has no CMS digest mapping here.
    #[error("unsupported signature algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The signing time cannot be encoded (before 1970).
    #[error("signing time cannot be encoded: {0}")]
    InvalidTime(String),
    /// The key store refused to sign.
    #[error("signing failed: {0}")]
    Hsm(#[from] hsm::HsmError),
    /// Reading the content failed.
    #[error("reading the content failed: {0}")]
    Io(#[from] std::io::Error),
    /// DER encoding failed.
    #[error("DER encoding failed: {0}")]
    Encoding(#[from] der::Error),
}

/// Signs `content` (read to the end, streaming) and returns a DER ContentInfo holding a
/// detached SignedData:
///
/// * one SignerInfo, sid = issuerAndSerialNumber of `signer_cert_der`;
/// * digest SHA-256 for P-256 and RSA, SHA-384 for P-384, SHA-512 for Ed25519 (the hash
///   implied by `signer.signature_algorithm_der()`; RFC 8419 for Ed25519);
/// * signed attributes contentType = id-data, signingTime (UTCTime before 2050,
///   GeneralizedTime after, whole seconds), messageDigest — the signature is over
///   their DER SET OF (RFC 5652 §5.4);
/// * `certificates` = the signer certificate plus `chain_der` (duplicates dropped; DER
///   SET OF order, i.e. sorted, not chain order — verifiers build the path themselves);
/// * eContentType id-data, eContent absent.
///
/// # Errors
/// [`SignError::KeyMismatch`] if `signer` is not the key of `signer_cert_der`; see
/// [`SignError`] for the rest.
pub fn sign_detached(
    content: impl Read,
    signer: &dyn hsm::Signer,
    signer_cert_der: &[u8],
    chain_der: &[Vec<u8>],
    signing_time: SystemTime,
) -> Result<Vec<u8>, SignError> {
    let signer_cert = Certificate::from_der(signer_cert_der)
        .map_err(|e| SignError::BadCertificate(format!("signer certificate: {e}")))?;
    let cert_spki = signer_cert.tbs_certificate.subject_public_key_info.to_der()?;
    let key_spki = SubjectPublicKeyInfoOwned::from_der(signer.public_key_der())
        .map_err(|e| SignError::BadCertificate(format!("the key store's public key is not an SPKI: {e}")))?
        .to_der()?;
    if cert_spki != key_spki {
        return Err(SignError::KeyMismatch);
    }

    let signature_algorithm = AlgorithmIdentifierOwned::from_der(signer.signature_algorithm_der())?;
    let digest_alg = digest_for_signature(signature_algorithm.oid)
        .ok_or_else(|| SignError::UnsupportedAlgorithm(signature_algorithm.oid.to_string()))?;
    let digest = digest_alg.digest_reader(content)?;

    let signed_attrs: SignedAttributes = SetOfVec::try_from(vec![
        attribute(rfc5911::ID_CONTENT_TYPE, Any::encode_from(&rfc5911::ID_DATA)?)?,
        attribute(rfc5911::ID_SIGNING_TIME, Any::encode_from(&cms_time(signing_time)?)?)?,
        attribute(rfc5911::ID_MESSAGE_DIGEST, Any::encode_from(&OctetString::new(digest.as_ref())?)?)?,
    ])?;
    let signature = signer.sign(&signed_attrs.to_der()?)?;

    let signer_info = SignerInfo {
        // v1: sid is issuerAndSerialNumber (RFC 5652 §5.3).
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: signer_cert.tbs_certificate.issuer.clone(),
            serial_number: signer_cert.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: digest_alg.identifier(),
        signed_attrs: Some(signed_attrs),
        signature_algorithm,
        signature: OctetString::new(signature)?,
        unsigned_attrs: None,
    };

    let mut cert_ders: Vec<&[u8]> = vec![signer_cert_der];
    for der in chain_der {
        if !cert_ders.contains(&der.as_slice()) {
            cert_ders.push(der);
        }
    }
    let mut certs = vec![CertificateChoices::Certificate(signer_cert)];
    for (i, der) in cert_ders.iter().enumerate().skip(1) {
        let cert = Certificate::from_der(der)
            .map_err(|e| SignError::BadCertificate(format!("chain certificate #{}: {e}", i - 1)))?;
        certs.push(CertificateChoices::Certificate(cert));
    }

    let signed_data = SignedData {
        // v1: only X.509 certificates, id-data content, v1 SignerInfos (RFC 5652 §5.1).
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![digest_alg.identifier()])?,
        encap_content_info: EncapsulatedContentInfo { econtent_type: rfc5911::ID_DATA, econtent: None },
        certificates: Some(CertificateSet::try_from(certs)?),
        crls: None,
        signer_infos: SignerInfos::try_from(vec![signer_info])?,
    };
    let content_info = ContentInfo { content_type: rfc5911::ID_SIGNED_DATA, content: Any::encode_from(&signed_data)? };
    Ok(content_info.to_der()?)
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, der::Error> {
    Ok(Attribute { oid, values: SetOfVec::try_from(vec![value])? })
}

/// RFC 5652 §11.3: UTCTime for 1950-2049, GeneralizedTime otherwise; whole seconds.
fn cms_time(t: SystemTime) -> Result<Time, SignError> {
    let secs =
        t.duration_since(SystemTime::UNIX_EPOCH).map_err(|_| SignError::InvalidTime("before 1970".into()))?.as_secs();
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    match UtcTime::from_system_time(t) {
        Ok(utc) => Ok(Time::UtcTime(utc)),
        Err(_) => GeneralizedTime::from_system_time(t)
            .map(Time::GeneralTime)
            .map_err(|e| SignError::InvalidTime(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn signing_time_is_utc_before_2050_and_generalized_after() {
        let t2030 = SystemTime::UNIX_EPOCH + Duration::from_millis(1_900_000_000_500);
        let Time::UtcTime(utc) = cms_time(t2030).unwrap() else { panic!("2030 must be UTCTime") };
        assert_eq!(utc.to_system_time(), SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000));
        let t2051 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_556_144_000); // 2051-01-01
        assert!(matches!(cms_time(t2051).unwrap(), Time::GeneralTime(_)));
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert!(matches!(cms_time(before), Err(SignError::InvalidTime(_))));
    }
}
