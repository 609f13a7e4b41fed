//! PKCS#10 (RFC 2986) requests: decode, verify the self-signature (proof of
//! possession), classify the key, and report what the requester asked for.
//!
//! Nothing here decides what goes into a certificate: profiles do. The CSR only
//! contributes its public key and identity, and what it *asks* for (CA:TRUE, extended
//! key usages) is surfaced so the caller can refuse it rather than silently drop it.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::der_parser::oid;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// Requests larger than this are refused before parsing.
pub const MAX_CSR_BYTES: usize = 64 * 1024;

/// Smallest RSA modulus accepted.
pub const MIN_RSA_BITS: usize = 2048;

/// Why a request was refused. Each message is safe to show to the requester.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("request is empty")]
    Empty,
    #[error("request is larger than {MAX_CSR_BYTES} bytes")]
    TooLarge,
    #[error("request is not a valid PEM or DER PKCS#10 CSR: {0}")]
    Malformed(String),
    #[error("CSR signature does not verify (no proof of possession)")]
    BadSignature,
    #[error("CSR signature algorithm {0} is not accepted (SHA-1 and MD5 are refused)")]
    WeakSignatureAlgorithm(String),
    #[error("CSR public key type {0} is not supported")]
    UnsupportedKey(String),
    #[error("RSA key of {0} bits is too small (minimum {MIN_RSA_BITS})")]
    WeakKey(usize),
}

/// The public key type of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKeyKind {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa { bits: usize },
}

impl PublicKeyKind {
    /// The name used in profile configuration (`key_types`).
    pub fn config_name(self) -> &'static str {
        match self {
            PublicKeyKind::EcdsaP256 => "ecdsa-p256",
            PublicKeyKind::EcdsaP384 => "ecdsa-p384",
            PublicKeyKind::Ed25519 => "ed25519",
            PublicKeyKind::Rsa { .. } => "rsa",
        }
    }
}

/// A request whose signature verified and whose crypto meets policy.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    /// The request's DER encoding.
    pub der: Vec<u8>,
    /// The subject's commonName, if any (UTF-8).
    pub common_name: Option<String>,
    /// The subject's serialNumber attribute, if any.
    pub subject_serial_number: Option<String>,
    /// The SubjectPublicKeyInfo DER.
    pub public_key_der: Vec<u8>,
    pub key_kind: PublicKeyKind,
    /// The request asks for basicConstraints cA=TRUE.
    pub requests_ca: bool,
    /// Dotted OIDs of requested extended key usages.
    pub requested_ekus: Vec<String>,
    /// Dotted OIDs of every requested extension.
    pub requested_extensions: Vec<String>,
}

/// Signature algorithms accepted on requests. Anything else (SHA-1, MD5, unknown)
/// is refused by policy, even where the parser could verify it.
const ACCEPTED_SIGNATURES: &[Oid<'static>] = &[
    oid!(1.2.840 .10045 .4 .3 .2),   // ecdsa-with-SHA256
    oid!(1.2.840 .10045 .4 .3 .3),   // ecdsa-with-SHA384
    oid!(1.2.840 .10045 .4 .3 .4),   // ecdsa-with-SHA512
    oid!(1.3.101 .112),              // Ed25519
    oid!(1.2.840 .113549 .1 .1 .11), // sha256WithRSAEncryption
    oid!(1.2.840 .113549 .1 .1 .12), // sha384WithRSAEncryption
    oid!(1.2.840 .113549 .1 .1 .13), // sha512WithRSAEncryption
    oid!(1.2.840 .113549 .1 .1 .10), // RSASSA-PSS (hash checked by the verifier)
];

const OID_EC_PUBLIC_KEY: Oid<'static> = oid!(1.2.840 .10045 .2 .1);
const OID_P256: Oid<'static> = oid!(1.2.840 .10045 .3 .1 .7);
const OID_P384: Oid<'static> = oid!(1.3.132 .0 .34);
const OID_ED25519: Oid<'static> = oid!(1.3.101 .112);
const OID_RSA: Oid<'static> = oid!(1.2.840 .113549 .1 .1 .1);
const OID_CN: Oid<'static> = oid!(2.5.4 .3);
const OID_SERIAL_NUMBER: Oid<'static> = oid!(2.5.4 .5);

/// Decodes a PEM (`CERTIFICATE REQUEST` / `NEW CERTIFICATE REQUEST`) or DER request
/// and checks it.
pub fn check_csr(input: &[u8]) -> Result<CheckedCsr, CsrError> {
    if input.is_empty() {
        return Err(CsrError::Empty);
    }
    if input.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge);
    }
    let der = if input.trim_ascii_start().starts_with(b"-----BEGIN") {
        let block = pem::parse(input).map_err(|e| CsrError::Malformed(e.to_string()))?;
        if !matches!(block.tag(), "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST") {
            return Err(CsrError::Malformed(format!("PEM block is '{}', expected 'CERTIFICATE REQUEST'", block.tag())));
        }
        block.into_contents()
    } else {
        input.to_vec()
    };
    check_csr_der(der)
}

fn check_csr_der(der: Vec<u8>) -> Result<CheckedCsr, CsrError> {
    let (rest, csr) = X509CertificationRequest::from_der(&der).map_err(|e| CsrError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed("trailing bytes after the request".into()));
    }

    let sig_alg = &csr.signature_algorithm.algorithm;
    if !ACCEPTED_SIGNATURES.contains(sig_alg) {
        return Err(CsrError::WeakSignatureAlgorithm(sig_alg.to_id_string()));
    }

    let info = &csr.certification_request_info;
    let key_kind = classify_key(info)?;
    csr.verify_signature().map_err(|_| CsrError::BadSignature)?;

    let mut requests_ca = false;
    let mut requested_ekus = Vec::new();
    let mut requested_extensions = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            match ext {
                ParsedExtension::BasicConstraints(bc) => {
                    requested_extensions.push("2.5.29.19".to_string());
                    requests_ca |= bc.ca;
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    requested_extensions.push("2.5.29.37".to_string());
                    let named = [
                        (eku.any, "2.5.29.37.0"),
                        (eku.server_auth, "1.3.6.1.5.5.7.3.1"),
                        (eku.client_auth, "1.3.6.1.5.5.7.3.2"),
                        (eku.code_signing, "1.3.6.1.5.5.7.3.3"),
                        (eku.email_protection, "1.3.6.1.5.5.7.3.4"),
                        (eku.time_stamping, "1.3.6.1.5.5.7.3.8"),
                        (eku.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
                    ];
                    requested_ekus.extend(named.iter().filter(|(set, _)| *set).map(|(_, o)| o.to_string()));
                    requested_ekus.extend(eku.other.iter().map(|o| o.to_id_string()));
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    requested_extensions.push("2.5.29.17".to_string());
                    // Names are taken from the registry/profile, not from here; parse
                    // only to make sure the extension is well-formed.
                    let _ = san.general_names.iter().filter(|n| matches!(n, GeneralName::OtherName(..))).count();
                }
                ParsedExtension::UnsupportedExtension { .. } | ParsedExtension::ParseError { .. } => {
                    return Err(CsrError::Malformed("a requested extension could not be parsed".into()));
                }
                _ => requested_extensions.push("other".to_string()),
            }
        }
    }

    let common_name = first_attribute(&info.subject, &OID_CN)?;
    let subject_serial_number = first_attribute(&info.subject, &OID_SERIAL_NUMBER)?;
    Ok(CheckedCsr {
        common_name,
        subject_serial_number,
        public_key_der: info.subject_pki.raw.to_vec(),
        key_kind,
        requests_ca,
        requested_ekus,
        requested_extensions,
        der,
    })
}

fn classify_key(
    info: &x509_parser::certification_request::X509CertificationRequestInfo<'_>,
) -> Result<PublicKeyKind, CsrError> {
    let spki = &info.subject_pki;
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| CsrError::UnsupportedKey("EC key without a named curve".into()))?;
        if curve == OID_P256 {
            Ok(PublicKeyKind::EcdsaP256)
        } else if curve == OID_P384 {
            Ok(PublicKeyKind::EcdsaP384)
        } else {
            Err(CsrError::UnsupportedKey(format!("EC curve {}", curve.to_id_string())))
        }
    } else if *alg == OID_ED25519 {
        Ok(PublicKeyKind::Ed25519)
    } else if *alg == OID_RSA {
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => {
                let bits = rsa.key_size();
                if bits < MIN_RSA_BITS {
                    Err(CsrError::WeakKey(bits))
                } else {
                    Ok(PublicKeyKind::Rsa { bits })
                }
            }
            _ => Err(CsrError::Malformed("RSA public key does not parse".into())),
        }
    } else {
        Err(CsrError::UnsupportedKey(alg.to_id_string()))
    }
}

fn first_attribute(name: &x509_parser::x509::X509Name<'_>, oid: &Oid<'_>) -> Result<Option<String>, CsrError> {
    match name.iter_by_oid(oid).next() {
        None => Ok(None),
        Some(attr) => attr
            .as_str()
            .map(|s| Some(s.to_string()))
            .map_err(|_| CsrError::Malformed("subject attribute is not a string".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, PublicKeyData};

    fn csr_with(params: CertificateParams, key: &KeyPair) -> Vec<u8> {
        params.serialize_request(key).unwrap().der().to_vec()
    }

    fn params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p
    }

    #[test]
    fn accepts_each_supported_key_type_pem_and_der() {
        for (alg, kind) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, PublicKeyKind::EcdsaP256),
            (&rcgen::PKCS_ECDSA_P384_SHA384, PublicKeyKind::EcdsaP384),
            (&rcgen::PKCS_ED25519, PublicKeyKind::Ed25519),
        ] {
            let key = KeyPair::generate_for(alg).unwrap();
            let req = params("dev-1").serialize_request(&key).unwrap();
            let from_pem = check_csr(req.pem().unwrap().as_bytes()).unwrap();
            let from_der = check_csr(req.der()).unwrap();
            assert_eq!(from_pem.key_kind, kind);
            assert_eq!(from_der.common_name.as_deref(), Some("dev-1"));
            assert_eq!(from_der.public_key_der, key.subject_public_key_info());
        }
    }

    #[test]
    fn broken_signature_is_refused() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut der = csr_with(params("dev-1"), &key);
        // The CN value sits inside the signed info: flip one of its letters.
        let pos = der.windows(5).position(|w| w == b"dev-1").unwrap();
        der[pos] = b'x';
        assert_eq!(check_csr(&der).unwrap_err(), CsrError::BadSignature);
    }

    #[test]
    fn garbage_empty_oversized_and_wrong_pem_are_refused() {
        assert_eq!(check_csr(b"").unwrap_err(), CsrError::Empty);
        assert!(matches!(check_csr(b"\x30\x03\x02\x01").unwrap_err(), CsrError::Malformed(_)));
        assert!(matches!(
            check_csr(b"-----BEGIN CERTIFICATE REQUEST-----\n!!!\n-----END CERTIFICATE REQUEST-----\n").unwrap_err(),
            CsrError::Malformed(_)
        ));
        assert_eq!(check_csr(&vec![0x30; MAX_CSR_BYTES + 1]).unwrap_err(), CsrError::TooLarge);
        let wrong = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        assert!(
            matches!(check_csr(wrong.as_bytes()).unwrap_err(), CsrError::Malformed(m) if m.contains("CERTIFICATE"))
        );
    }

    #[test]
    fn requested_ca_and_ekus_are_reported() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = params("dev-1");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        let checked = check_csr(&csr_with(p, &key)).unwrap();
        assert!(checked.requests_ca);
        assert_eq!(checked.requested_ekus, vec!["1.3.6.1.5.5.7.3.3".to_string()]);
    }
}

#[cfg(test)]
mod golden {
    //! Requests made with OpenSSL 3 (`openssl req -new`), kept as files so the
    //! weak-crypto refusals are tested against another implementation's encoding.
    use super::*;

    fn vector(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn openssl_rsa_2048_sha256_is_accepted() {
        let csr = check_csr(&vector("rsa2048.csr")).unwrap();
        assert_eq!(csr.key_kind, PublicKeyKind::Rsa { bits: 2048 });
        assert_eq!(csr.common_name.as_deref(), Some("good-rsa"));
    }

    #[test]
    fn sha1_signature_is_refused() {
        assert_eq!(
            check_csr(&vector("sha1-rsa2048.csr")).unwrap_err(),
            CsrError::WeakSignatureAlgorithm("1.2.840.113549.1.1.5".into())
        );
    }

    #[test]
    fn rsa_1024_is_refused() {
        assert_eq!(check_csr(&vector("rsa1024.csr")).unwrap_err(), CsrError::WeakKey(1024));
    }

    #[test]
    fn unsupported_curve_is_refused() {
        assert!(
            matches!(check_csr(&vector("secp256k1.csr")).unwrap_err(), CsrError::UnsupportedKey(c) if c.contains("1.3.132.0.10"))
        );
    }
}
