//! OCSP (RFC 6960, RFC 5019 profile) encoding on x509-ocsp 0.2.1.
//!
//! * [`parse_request`] decodes an `OCSPRequest` (at most [`MAX_REQUEST_LEN`] bytes) into
//!   its CertIDs and nonce. Errors carry the `OCSPResponseStatus` to answer with
//!   ([`OcspError::status`]).
//! * [`IssuerKeys`] precomputes an issuing CA's name and key hashes (SHA-1, SHA-256) and
//!   matches CertIDs on hash algorithm + issuer name hash + issuer key hash; the serial
//!   is then looked up through [`StatusSource`].
//! * [`build_response`] signs a `BasicOCSPResponse` with a delegated OCSP signer
//!   (ResponderID byKey, signer certificate included, nonce echoed);
//!   [`error_response`] gives the unsigned error answers.
//!
//! Hash algorithms: CertIDs hashed with SHA-1 or SHA-256 are matched. Any other
//! algorithm is **not** an error: the CertID is returned with
//! [`HashAlgorithm::Unsupported`], never matches an issuer, and is answered `unknown`
//! (RFC 6960 §2.2: the responder cannot identify the issuer), so the other CertIDs of
//! the same request still get real answers.

use std::hash::{Hash, Hasher};
use std::time::SystemTime;

use aws_lc_rs::digest;
use const_oid::db::rfc5912::{ID_SHA_1, ID_SHA_256};
use const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE;
use const_oid::ObjectIdentifier;
use der::asn1::{BitString, Null, OctetString};
use der::{Decode, Encode};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoRef};
use x509_cert::ext::Extension;
use x509_cert::serial_number::SerialNumber;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, OcspGeneralizedTime, OcspRequest, OcspResponse, ResponderId, ResponseData, RevokedInfo,
    SingleResponse, Version,
};

pub use crate::Reason;

/// Largest request accepted by [`parse_request`] (RFC 5019 requests are ~100 bytes).
pub const MAX_REQUEST_LEN: usize = 16 * 1024;

/// Nonce length bounds of RFC 8954 §2.1 (the OCTET STRING inside extnValue).
const NONCE_LEN: std::ops::RangeInclusive<usize> = 1..=32;

/// The OCSPResponseStatus values of unsuccessful responses (RFC 6960 §4.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorStatus {
    /// malformedRequest (1): illegal confirmation request.
    MalformedRequest,
    /// internalError (2): internal error in issuer.
    InternalError,
    /// tryLater (3): try again later.
    TryLater,
    /// sigRequired (5): must sign the request.
    SigRequired,
    /// unauthorized (6): request unauthorized (e.g. no CertID names an issuer we serve).
    Unauthorized,
}

impl ErrorStatus {
    /// The ENUMERATED value.
    pub fn code(self) -> u8 {
        match self {
            ErrorStatus::MalformedRequest => 1,
            ErrorStatus::InternalError => 2,
            ErrorStatus::TryLater => 3,
            ErrorStatus::SigRequired => 5,
            ErrorStatus::Unauthorized => 6,
        }
    }
}

/// Everything that stops a successful OCSP answer.
#[derive(Debug, thiserror::Error)]
pub enum OcspError {
    #[error("OCSP request of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed OCSP request: {0}")]
    Malformed(String),
    #[error("no CertID in the request names an issuer served here")]
    Unauthorized,
    #[error("revocation status unavailable: {0}")]
    StatusUnavailable(#[from] StatusUnavailable),
    #[error("invalid responder certificate or key: {0}")]
    Responder(String),
    #[error("invalid CertID: {0}")]
    InvalidCertId(String),
    #[error("DER encoding failed: {0}")]
    Der(#[from] der::Error),
    #[error("signing the OCSP response failed: {0}")]
    Signing(#[from] hsm::HsmError),
}

impl OcspError {
    /// The OCSPResponseStatus to answer with.
    pub fn status(&self) -> ErrorStatus {
        match self {
            OcspError::TooLarge { .. } | OcspError::Malformed(_) => ErrorStatus::MalformedRequest,
            OcspError::Unauthorized => ErrorStatus::Unauthorized,
            OcspError::StatusUnavailable(_) => ErrorStatus::TryLater,
            OcspError::Responder(_) | OcspError::InvalidCertId(_) | OcspError::Der(_) | OcspError::Signing(_) => {
                ErrorStatus::InternalError
            }
        }
    }
}

fn malformed(msg: impl Into<String>) -> OcspError {
    OcspError::Malformed(msg.into())
}

/// The hash algorithm of a CertID.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// id-sha1 (what RFC 5019 clients and OpenSSL send by default).
    Sha1,
    /// id-sha256.
    Sha256,
    /// Anything else: parsed, never matched, answered `unknown`.
    Unsupported(ObjectIdentifier),
}

impl HashAlgorithm {
    fn oid(&self) -> ObjectIdentifier {
        match self {
            HashAlgorithm::Sha1 => ID_SHA_1,
            HashAlgorithm::Sha256 => ID_SHA_256,
            HashAlgorithm::Unsupported(oid) => *oid,
        }
    }

    fn from_oid(oid: ObjectIdentifier) -> Self {
        match oid {
            ID_SHA_1 => HashAlgorithm::Sha1,
            ID_SHA_256 => HashAlgorithm::Sha256,
            other => HashAlgorithm::Unsupported(other),
        }
    }

    fn digest_len(&self) -> Option<usize> {
        match self {
            HashAlgorithm::Sha1 => Some(20),
            HashAlgorithm::Sha256 => Some(32),
            HashAlgorithm::Unsupported(_) => None,
        }
    }
}

/// A CertID (RFC 6960 §4.1.1). Keeps the exact encoding it was parsed from, so a
/// response echoes it unchanged; equality and hashing use hash algorithm OID + issuer
/// name hash + issuer key hash + serial (AlgorithmIdentifier parameters NULL vs absent
/// do not matter).
#[derive(Clone, Debug)]
pub struct CertId {
    inner: x509_ocsp::CertId,
    hash_algorithm: HashAlgorithm,
}

impl CertId {
    /// A CertID for a supported hash algorithm (parameters NULL, as OpenSSL sends).
    /// `serial` is DER INTEGER content octets.
    pub fn new(
        hash_algorithm: HashAlgorithm,
        issuer_name_hash: &[u8],
        issuer_key_hash: &[u8],
        serial: &[u8],
    ) -> Result<Self, OcspError> {
        let Some(len) = hash_algorithm.digest_len() else {
            return Err(OcspError::InvalidCertId("unsupported hash algorithm".into()));
        };
        if issuer_name_hash.len() != len || issuer_key_hash.len() != len {
            return Err(OcspError::InvalidCertId("hash length does not fit the algorithm".into()));
        }
        let inner = x509_ocsp::CertId {
            hash_algorithm: AlgorithmIdentifierOwned { oid: hash_algorithm.oid(), parameters: Some(Null.into()) },
            issuer_name_hash: OctetString::new(issuer_name_hash)?,
            issuer_key_hash: OctetString::new(issuer_key_hash)?,
            serial_number: serial_from_content(serial)
                .map_err(|e| OcspError::InvalidCertId(format!("serial number: {e}")))?,
        };
        Ok(Self { inner, hash_algorithm })
    }

    fn from_x509(inner: x509_ocsp::CertId) -> Result<Self, OcspError> {
        let hash_algorithm = HashAlgorithm::from_oid(inner.hash_algorithm.oid);
        if let Some(len) = hash_algorithm.digest_len() {
            match &inner.hash_algorithm.parameters {
                None => {}
                Some(p) if der::Tagged::tag(p) == der::Tag::Null && p.value().is_empty() => {}
                Some(_) => return Err(malformed("hash algorithm parameters must be NULL or absent")),
            }
            if inner.issuer_name_hash.as_bytes().len() != len || inner.issuer_key_hash.as_bytes().len() != len {
                return Err(malformed("CertID hash length does not fit its algorithm"));
            }
        }
        Ok(Self { inner, hash_algorithm })
    }

    /// The hash algorithm.
    pub fn hash_algorithm(&self) -> &HashAlgorithm {
        &self.hash_algorithm
    }
    /// issuerNameHash.
    pub fn issuer_name_hash(&self) -> &[u8] {
        self.inner.issuer_name_hash.as_bytes()
    }
    /// issuerKeyHash.
    pub fn issuer_key_hash(&self) -> &[u8] {
        self.inner.issuer_key_hash.as_bytes()
    }
    /// The serial number as DER INTEGER content octets (as sent; not normalised).
    pub fn serial(&self) -> &[u8] {
        self.inner.serial_number.as_bytes()
    }
    /// The x509-ocsp form.
    pub fn as_x509(&self) -> &x509_ocsp::CertId {
        &self.inner
    }
}

impl PartialEq for CertId {
    fn eq(&self, other: &Self) -> bool {
        self.inner.hash_algorithm.oid == other.inner.hash_algorithm.oid
            && self.issuer_name_hash() == other.issuer_name_hash()
            && self.issuer_key_hash() == other.issuer_key_hash()
            && self.serial() == other.serial()
    }
}

impl Eq for CertId {}

impl Hash for CertId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash_algorithm.oid.as_bytes().hash(state);
        self.issuer_name_hash().hash(state);
        self.issuer_key_hash().hash(state);
        self.serial().hash(state);
    }
}

fn serial_from_content(content: &[u8]) -> der::Result<SerialNumber> {
    let mut tlv = Vec::with_capacity(content.len() + 2);
    crate::derw::push_header(&mut tlv, crate::derw::TAG_INTEGER, content.len());
    tlv.extend_from_slice(content);
    SerialNumber::from_der(&tlv)
}

/// A decoded OCSP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRequest {
    /// The CertIDs, in request order (at least one).
    pub cert_ids: Vec<CertId>,
    /// The id-pkix-ocsp-nonce extension's extnValue octets (normally an OCTET STRING
    /// of 1–32 bytes, RFC 8954), to be echoed verbatim via [`build_response`].
    pub nonce: Option<Vec<u8>>,
    /// Whether the request carried an (unverified, ignored) signature.
    pub signed: bool,
}

/// Decodes a DER `OCSPRequest`.
///
/// Refused with malformedRequest: more than [`MAX_REQUEST_LEN`] bytes
/// ([`OcspError::TooLarge`]), empty input, anything that is not exactly one DER
/// `OCSPRequest` (garbage, truncation, trailing bytes), a version other than v1, an
/// empty requestList, a SHA-1/SHA-256 CertID with non-NULL parameters or wrong hash
/// lengths, a repeated or out-of-bounds nonce, a critical extension we do not know.
/// Request signatures are not verified (this responder does not require them).
pub fn parse_request(der: &[u8]) -> Result<ParsedRequest, OcspError> {
    if der.len() > MAX_REQUEST_LEN {
        return Err(OcspError::TooLarge { size: der.len(), limit: MAX_REQUEST_LEN });
    }
    if der.is_empty() {
        return Err(malformed("empty request"));
    }
    let req = OcspRequest::from_der(der).map_err(|e| malformed(e.to_string()))?;
    let tbs = req.tbs_request;
    if tbs.version != Version::V1 {
        return Err(malformed("unsupported request version"));
    }
    if tbs.request_list.is_empty() {
        return Err(malformed("empty requestList"));
    }
    let mut nonce = None;
    for ext in tbs.request_extensions.iter().flatten() {
        if ext.extn_id == ID_PKIX_OCSP_NONCE {
            if nonce.is_some() {
                return Err(malformed("repeated nonce extension"));
            }
            let value = ext.extn_value.as_bytes();
            let inner = OctetString::from_der(value).map_err(|_| malformed("nonce is not an OCTET STRING"))?;
            if !NONCE_LEN.contains(&inner.as_bytes().len()) {
                return Err(malformed("nonce length outside 1..=32 bytes (RFC 8954)"));
            }
            nonce = Some(value.to_vec());
        } else if ext.critical {
            return Err(malformed(format!("unsupported critical request extension {}", ext.extn_id)));
        }
    }
    let mut cert_ids = Vec::with_capacity(tbs.request_list.len());
    for request in tbs.request_list {
        if let Some(ext) = request.single_request_extensions.iter().flatten().find(|e| e.critical) {
            return Err(malformed(format!("unsupported critical single request extension {}", ext.extn_id)));
        }
        cert_ids.push(CertId::from_x509(request.req_cert)?);
    }
    Ok(ParsedRequest { cert_ids, nonce, signed: req.optional_signature.is_some() })
}

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut out = [0u8; 20];
    out.copy_from_slice(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data).as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// One issuing CA's CertID hashes: of its subject Name DER and of its
/// subjectPublicKey BIT STRING content, under SHA-1 and SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerKeys {
    sha1_name: [u8; 20],
    sha1_key: [u8; 20],
    sha256_name: [u8; 32],
    sha256_key: [u8; 32],
}

impl IssuerKeys {
    /// From the issuing CA's certificate (DER).
    pub fn from_ca_cert_der(ca_cert_der: &[u8]) -> Result<Self, OcspError> {
        let cert = Certificate::from_der(ca_cert_der)
            .map_err(|e| OcspError::InvalidCertId(format!("CA certificate does not parse: {e}")))?;
        let tbs = cert.tbs_certificate;
        let key = tbs.subject_public_key_info.subject_public_key.raw_bytes();
        Ok(Self::from_parts(&tbs.subject.to_der()?, key))
    }

    /// From the CA's subject Name DER and subjectPublicKey bits.
    pub fn from_parts(subject_name_der: &[u8], subject_public_key: &[u8]) -> Self {
        Self {
            sha1_name: sha1(subject_name_der),
            sha1_key: sha1(subject_public_key),
            sha256_name: sha256(subject_name_der),
            sha256_key: sha256(subject_public_key),
        }
    }

    /// Whether `id` names this issuer (hash algorithm + name hash + key hash; the
    /// serial is the caller's to look up). Unsupported algorithms never match.
    pub fn matches(&self, id: &CertId) -> bool {
        match id.hash_algorithm() {
            HashAlgorithm::Sha1 => id.issuer_name_hash() == self.sha1_name && id.issuer_key_hash() == self.sha1_key,
            HashAlgorithm::Sha256 => {
                id.issuer_name_hash() == self.sha256_name && id.issuer_key_hash() == self.sha256_key
            }
            HashAlgorithm::Unsupported(_) => false,
        }
    }

    /// The CertID of serial `serial` (content octets) under this issuer — for
    /// pre-signing responses before anyone asks.
    pub fn cert_id(&self, hash_algorithm: HashAlgorithm, serial: &[u8]) -> Result<CertId, OcspError> {
        match hash_algorithm {
            HashAlgorithm::Sha1 => CertId::new(hash_algorithm, &self.sha1_name, &self.sha1_key, serial),
            HashAlgorithm::Sha256 => CertId::new(hash_algorithm, &self.sha256_name, &self.sha256_key, serial),
            HashAlgorithm::Unsupported(_) => Err(OcspError::InvalidCertId("unsupported hash algorithm".into())),
        }
    }
}

/// The status of one certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertStatus {
    /// Issued by this CA and not revoked.
    Good,
    /// Revoked at `at` (whole seconds) for `reason` (`Unspecified` is encoded as no reason).
    Revoked { at: SystemTime, reason: Option<Reason> },
    /// Not known to this responder (unknown issuer, unsupported hash, never issued).
    Unknown,
}

/// The status lookup is temporarily impossible (storage down…): answer tryLater.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StatusUnavailable(pub String);

/// The port the OCSP responder needs from the service: the revocation status of a
/// serial under one issuing CA. Implemented by `ca-service` over its store.
///
/// * `issuer` is the service's name of the issuing CA whose [`IssuerKeys`] matched the
///   CertID; `serial` is DER INTEGER content octets as the client sent them.
/// * Return [`CertStatus::Unknown`] for serials this CA never issued (RFC 6960 §2.2),
///   not `Good` — "good" claims the certificate exists and is not revoked.
/// * Blocking: call it from a blocking context. Errors become `tryLater`.
pub trait StatusSource: Send + Sync {
    /// Looks up one certificate.
    fn status(&self, issuer: &str, serial: &[u8]) -> Result<CertStatus, StatusUnavailable>;
}

fn ocsp_time(t: SystemTime) -> Result<OcspGeneralizedTime, OcspError> {
    Ok(OcspGeneralizedTime::try_from(t)?)
}

fn x509_status(status: &CertStatus) -> Result<x509_ocsp::CertStatus, OcspError> {
    Ok(match status {
        CertStatus::Good => x509_ocsp::CertStatus::good(),
        CertStatus::Unknown => x509_ocsp::CertStatus::unknown(),
        CertStatus::Revoked { at, reason } => x509_ocsp::CertStatus::revoked(RevokedInfo {
            revocation_time: ocsp_time(*at)?,
            revocation_reason: reason.filter(|r| *r != Reason::Unspecified).map(Reason::to_x509),
        }),
    })
}

/// Builds and signs an `OCSPResponse` (successful, `id-pkix-ocsp-basic`).
///
/// * `responses`: one SingleResponse per entry, in order, with the CertID echoed as
///   given; `this_update`/`next_update` apply to all (`next_update: None` means
///   "newer information is always available", RFC 6960 §4.2.2.1).
/// * `producedAt` is the current time.
/// * `nonce`: the request's nonce extnValue ([`ParsedRequest::nonce`]), echoed as is.
/// * `responder_cert_der`: the delegated OCSP signer certificate (EKU OCSPSigning,
///   issued by the CA whose certificates are answered for); it is put in `certs`, and
///   its key must be `signer`'s. ResponderID is byKey: SHA-1 of its subjectPublicKey.
pub fn build_response(
    responses: &[(CertId, CertStatus)],
    this_update: SystemTime,
    next_update: Option<SystemTime>,
    nonce: Option<&[u8]>,
    responder_cert_der: &[u8],
    signer: &dyn hsm::Signer,
) -> Result<Vec<u8>, OcspError> {
    build_response_at(responses, SystemTime::now(), this_update, next_update, nonce, responder_cert_der, signer)
}

/// [`build_response`] with an explicit producedAt.
pub fn build_response_at(
    responses: &[(CertId, CertStatus)],
    produced_at: SystemTime,
    this_update: SystemTime,
    next_update: Option<SystemTime>,
    nonce: Option<&[u8]>,
    responder_cert_der: &[u8],
    signer: &dyn hsm::Signer,
) -> Result<Vec<u8>, OcspError> {
    if responses.is_empty() {
        return Err(OcspError::InvalidCertId("no responses to sign".into()));
    }
    if next_update.is_some_and(|n| n <= this_update) {
        return Err(OcspError::Responder("nextUpdate must be after thisUpdate".into()));
    }
    let cert = Certificate::from_der(responder_cert_der)
        .map_err(|e| OcspError::Responder(format!("responder certificate does not parse: {e}")))?;
    let cert_key = cert.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
    let signer_spki = SubjectPublicKeyInfoRef::from_der(signer.public_key_der())
        .map_err(|e| OcspError::Responder(format!("signer public key does not parse: {e}")))?;
    if signer_spki.subject_public_key.raw_bytes() != cert_key {
        return Err(OcspError::Responder("the signer's key is not the responder certificate's key".into()));
    }
    let responder_id = ResponderId::ByKey(OctetString::new(sha1(cert_key).to_vec())?);

    let this_update = ocsp_time(this_update)?;
    let next_update = next_update.map(ocsp_time).transpose()?;
    let mut singles = Vec::with_capacity(responses.len());
    for (id, status) in responses {
        singles.push(SingleResponse {
            cert_id: id.inner.clone(),
            cert_status: x509_status(status)?,
            this_update,
            next_update,
            single_extensions: None,
        });
    }
    let response_extensions = match nonce {
        Some(value) => {
            Some(vec![Extension { extn_id: ID_PKIX_OCSP_NONCE, critical: false, extn_value: OctetString::new(value)? }])
        }
        None => None,
    };
    let tbs = ResponseData {
        version: Version::V1,
        responder_id,
        produced_at: ocsp_time(produced_at)?,
        responses: singles,
        response_extensions,
    };
    let signature = signer.sign(&tbs.to_der()?)?;
    let basic = BasicOcspResponse {
        tbs_response_data: tbs,
        signature_algorithm: AlgorithmIdentifierOwned::from_der(signer.signature_algorithm_der())?,
        signature: BitString::from_bytes(&signature)?,
        certs: Some(vec![cert]),
    };
    Ok(OcspResponse::successful(basic)?.to_der()?)
}

/// An unsigned `OCSPResponse` with an error status and no responseBytes.
pub fn error_response(status: ErrorStatus) -> Vec<u8> {
    // SEQUENCE { ENUMERATED status }
    vec![0x30, 0x03, 0x0a, 0x01, status.code()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_decode() {
        use x509_ocsp::OcspResponseStatus as S;
        for (status, expected) in [
            (ErrorStatus::MalformedRequest, S::MalformedRequest),
            (ErrorStatus::InternalError, S::InternalError),
            (ErrorStatus::TryLater, S::TryLater),
            (ErrorStatus::SigRequired, S::SigRequired),
            (ErrorStatus::Unauthorized, S::Unauthorized),
        ] {
            let r = OcspResponse::from_der(&error_response(status)).unwrap();
            assert_eq!(r.response_status, expected);
            assert!(r.response_bytes.is_none());
        }
    }

    #[test]
    fn cert_id_equality_ignores_null_parameters() {
        let a = CertId::new(HashAlgorithm::Sha1, &[1; 20], &[2; 20], &[5]).unwrap();
        let mut inner = a.inner.clone();
        inner.hash_algorithm.parameters = None;
        let b = CertId::from_x509(inner).unwrap();
        assert_eq!(a, b);
        let c = CertId::new(HashAlgorithm::Sha1, &[1; 20], &[2; 20], &[6]).unwrap();
        assert_ne!(a, c);
        assert!(CertId::new(HashAlgorithm::Sha256, &[1; 20], &[2; 20], &[5]).is_err());
        assert!(CertId::new(HashAlgorithm::Unsupported(ID_PKIX_OCSP_NONCE), &[1; 20], &[2; 20], &[5]).is_err());
    }

    #[test]
    fn issuer_keys_match_only_own_hashes() {
        let keys = IssuerKeys::from_parts(b"name", b"key");
        for alg in [HashAlgorithm::Sha1, HashAlgorithm::Sha256] {
            let id = keys.cert_id(alg.clone(), &[1, 2]).unwrap();
            assert!(keys.matches(&id));
            let other = IssuerKeys::from_parts(b"name", b"other key");
            assert!(!other.matches(&id));
            let other = IssuerKeys::from_parts(b"other name", b"key");
            assert!(!other.matches(&id));
        }
        // Same hashes under the wrong algorithm label do not match.
        let sha1 = keys.cert_id(HashAlgorithm::Sha1, &[1]).unwrap();
        let mut inner = sha1.inner.clone();
        inner.hash_algorithm.oid = const_oid::db::rfc5912::ID_SHA_512;
        assert!(!keys.matches(&CertId::from_x509(inner).unwrap()));
    }

    #[test]
    fn status_mapping() {
        assert_eq!(malformed("x").status(), ErrorStatus::MalformedRequest);
        assert_eq!(OcspError::TooLarge { size: 1, limit: 0 }.status(), ErrorStatus::MalformedRequest);
        assert_eq!(OcspError::Unauthorized.status(), ErrorStatus::Unauthorized);
        assert_eq!(OcspError::from(StatusUnavailable("db".into())).status(), ErrorStatus::TryLater);
        assert_eq!(OcspError::Responder("x".into()).status(), ErrorStatus::InternalError);
    }
}
