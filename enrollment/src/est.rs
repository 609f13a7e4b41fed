//! EST (RFC 7030) message pieces: request body decoding, media-type checks, certs-only
//! CMS responses, `/csrattrs`, the `/serverkeygen` multipart response and the renewal
//! identity rule.
//!
//! Everything here is a pure function: no HTTP framework, no storage. The service maps
//! [`EstError`] and [`RenewalMismatch`] to HTTP statuses; their messages are short and
//! safe to show to a client.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
use const_oid::db::{rfc5911, rfc5912, rfc8410};
use const_oid::ObjectIdentifier;
use der::asn1::SetOfVec;
use der::{Any, Choice, Decode, Encode};
use x509_cert::attr::Attribute;
use x509_cert::Certificate;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::der_parser::asn1_rs::{self, Tag};
use x509_parser::extensions::X509Extension;
use x509_parser::oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};
use zeroize::Zeroizing;

use crate::ra::KeyType;

/// Largest EST request body accepted (base64 text).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Media type of a PKCS#10 request body (simpleenroll, simplereenroll, serverkeygen).
pub const CT_PKCS10: &str = "application/pkcs10";
/// Media type of a certs-only response (cacerts, simpleenroll, simplereenroll).
pub const CT_CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";
/// Media type of the csrattrs response.
pub const CT_CSRATTRS: &str = "application/csrattrs";
/// Media type of the serverkeygen private-key part.
pub const CT_PKCS8: &str = "application/pkcs8";

/// Why an EST request was refused or a response could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EstError {
    #[error("request body is empty")]
    Empty,
    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("request body is not base64: {0}")]
    NotBase64(String),
    #[error("Content-Type is '{got}', expected '{expected}'")]
    WrongContentType { got: String, expected: &'static str },
    /// Building a response failed (an internal error, not the client's).
    #[error("could not encode the response: {0}")]
    Encoding(String),
}

/// Standard alphabet; padding accepted whether present or not (RFC 8951 tolerance).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes an EST base64 body (RFC 7030 §4.2.1 / RFC 8951): standard alphabet, padding
/// optional-tolerant, ignoring ASCII whitespace anywhere (CR, LF, space, tab), so line-broken
/// bodies work. Size limit applies to the raw body before decoding. A body that decodes to
/// nothing is Empty. Works regardless of Content-Transfer-Encoding (the caller ignores that header).
pub fn decode_base64_body(body: &[u8]) -> Result<Vec<u8>, EstError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(EstError::TooLarge);
    }
    let compact: Vec<u8> = body.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(EstError::Empty);
    }
    let decoded = LENIENT.decode(&compact).map_err(|e| EstError::NotBase64(base64_error(&e)))?;
    if decoded.is_empty() {
        return Err(EstError::Empty);
    }
    Ok(decoded)
}

/// A short description of a base64 error without echoing the body (offsets count
/// non-whitespace characters).
fn base64_error(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(offset, byte) if byte.is_ascii_graphic() => {
            format!("invalid character '{}' at offset {offset}", char::from(*byte))
        }
        base64::DecodeError::InvalidByte(offset, byte) => format!("invalid byte 0x{byte:02x} at offset {offset}"),
        base64::DecodeError::InvalidLength(_) => "truncated (length is not a valid base64 length)".into(),
        base64::DecodeError::InvalidLastSymbol(offset, _) => format!("non-canonical last character at offset {offset}"),
        base64::DecodeError::InvalidPadding => "invalid padding".into(),
    }
}

/// Checks a Content-Type header value against the expected media type: case-insensitive type/subtype,
/// parameters ignored (e.g. "application/pkcs10; charset=utf-8" matches "application/pkcs10").
/// Missing header → WrongContentType { got: "(none)", … }.
pub fn check_content_type(header: Option<&str>, expected: &'static str) -> Result<(), EstError> {
    let Some(value) = header else {
        return Err(EstError::WrongContentType { got: "(none)".into(), expected });
    };
    let essence = |s: &str| s.split(';').next().unwrap_or_default().trim().to_string();
    if essence(value).eq_ignore_ascii_case(&essence(expected)) {
        Ok(())
    } else {
        Err(EstError::WrongContentType { got: printable_prefix(value, 80), expected })
    }
}

/// The first `max` characters of a client-supplied value, control characters replaced, so
/// an error message stays short and safe to echo.
fn printable_prefix(value: &str, max: usize) -> String {
    let mut out: String = value.chars().take(max).map(|c| if c.is_control() { '?' } else { c }).collect();
    if value.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// A degenerate certs-only CMS SignedData (RFC 5652 §5, RFC 7030 §4.1.3) holding `certs` (DER),
/// as the DER of a ContentInfo. No signers, no CRLs, version 1, encapContentInfo id-data without content.
///
/// The certificates are a DER `SET OF`, so they come out sorted by encoding, not in the given
/// order (clients build the chain themselves). Exact duplicates are sent once. Every input must
/// be a DER certificate that re-encodes to the very same bytes (a BER or non-canonical
/// certificate would otherwise be altered and its signature broken); an empty list is refused.
pub fn certs_only(certs: &[Vec<u8>]) -> Result<Vec<u8>, EstError> {
    if certs.is_empty() {
        return Err(EstError::Encoding("no certificates to send".into()));
    }
    let mut choices: Vec<CertificateChoices> = Vec::with_capacity(certs.len());
    for (i, der) in certs.iter().enumerate() {
        let cert = Certificate::from_der(der)
            .map_err(|e| EstError::Encoding(format!("certificate {i} does not parse: {e}")))?;
        let again = cert.to_der().map_err(|e| EstError::Encoding(format!("certificate {i}: {e}")))?;
        if again != *der {
            return Err(EstError::Encoding(format!("certificate {i} is not canonical DER")));
        }
        let choice = CertificateChoices::Certificate(cert);
        if !choices.contains(&choice) {
            choices.push(choice);
        }
    }
    let certificates = CertificateSet::try_from(choices).map_err(|e| EstError::Encoding(e.to_string()))?;
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo { econtent_type: rfc5911::ID_DATA, econtent: None },
        certificates: Some(certificates),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };
    let content = Any::encode_from(&signed_data).map_err(|e| EstError::Encoding(e.to_string()))?;
    ContentInfo { content_type: rfc5911::ID_SIGNED_DATA, content }
        .to_der()
        .map_err(|e| EstError::Encoding(e.to_string()))
}

/// Standard padded base64 on one line, without line breaks or a trailing newline, as EST
/// responses are sent (`Content-Transfer-Encoding: base64`). RFC 8951 dropped the MIME
/// line framing (RFC 4648 §3.1; erratum 5904 to RFC 7030), and some embedded EST
/// clients refuse wrapped lines; requests are still accepted either way.
pub fn base64_line(der: &[u8]) -> String {
    STANDARD.encode(der)
}

/// Appends the padded standard base64 of `data` to `out` on one line, then `eol`. The
/// encoding goes through a zeroized scratch buffer, so encoding a private key leaves
/// no copy behind; `out` must have room (no reallocation) for the same reason.
fn push_base64_line(out: &mut String, data: &[u8], eol: &str) {
    let mut line = Zeroizing::new(String::with_capacity(base64_len(data.len())));
    STANDARD.encode_string(data, &mut line);
    out.push_str(&line);
    out.push_str(eol);
}

/// Length of the padded base64 of `n` bytes.
fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// `AttrOrOID ::= CHOICE { oid OBJECT IDENTIFIER, attribute Attribute }` (RFC 7030 §4.5.2).
#[derive(Clone, Debug, PartialEq, Eq, Choice)]
enum AttrOrOid {
    Oid(ObjectIdentifier),
    Attribute(Attribute),
}

/// What a profile expects in a CSR (RFC 7030 §4.5 CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID,
/// AttrOrOID ::= CHOICE { oid OBJECT IDENTIFIER, attribute Attribute }), DER.
/// For each allowed key type: "ecdsa-p256" → Attribute { type: id-ecPublicKey, values: { secp256r1 OID } },
/// "ecdsa-p384" → same with secp384r1, "ed25519" → OID id-Ed25519, "rsa" → Attribute { type: rsaEncryption,
/// values: { INTEGER 2048 } } (RFC 8295 / RFC 9148 style). Then each OID of `request_oids` as a plain OID
/// (the caller passes e.g. ecdsa-with-SHA256 1.2.840.10045.4.3.2 and challengePassword if wanted).
/// Repeated entries are sent once.
pub fn csr_attrs(key_types: &[KeyType], request_oids: &[ObjectIdentifier]) -> Result<Vec<u8>, EstError> {
    let enc = |e: der::Error| EstError::Encoding(e.to_string());
    let attribute = |oid: ObjectIdentifier, value: Any| -> Result<AttrOrOid, EstError> {
        Ok(AttrOrOid::Attribute(Attribute { oid, values: SetOfVec::try_from(vec![value]).map_err(enc)? }))
    };
    let mut items: Vec<AttrOrOid> = Vec::with_capacity(key_types.len() + request_oids.len());
    for name in key_types {
        let item = match name {
            KeyType::EcdsaP256 => {
                attribute(rfc5912::ID_EC_PUBLIC_KEY, Any::encode_from(&rfc5912::SECP_256_R_1).map_err(enc)?)?
            }
            KeyType::EcdsaP384 => {
                attribute(rfc5912::ID_EC_PUBLIC_KEY, Any::encode_from(&rfc5912::SECP_384_R_1).map_err(enc)?)?
            }
            KeyType::Ed25519 => AttrOrOid::Oid(rfc8410::ID_ED_25519),
            KeyType::Rsa => attribute(rfc5912::RSA_ENCRYPTION, Any::encode_from(&2048u32).map_err(enc)?)?,
        };
        if !items.contains(&item) {
            items.push(item);
        }
    }
    for oid in request_oids {
        let item = AttrOrOid::Oid(*oid);
        if !items.contains(&item) {
            items.push(item);
        }
    }
    items.to_der().map_err(enc)
}

/// The serverkeygen response body (RFC 7030 §4.4.2): `multipart/mixed` with two parts, first the
/// private key (`Content-Type: application/pkcs8`, `Content-Transfer-Encoding: base64`), then the
/// certificate (`Content-Type: application/pkcs7-mime; smime-type=certs-only`,
/// `Content-Transfer-Encoding: base64`, the DER of a [`certs_only`] message). Returns the full
/// Content-Type header value (with the boundary) and the body.
///
/// The MIME structure uses CRLF line ends; each part's base64 is one line (as
/// [`base64_line`]), ended by the CRLF that precedes the next delimiter. The boundary is
/// `est-` and the hex of 16 random bytes: `-` is not a base64 character, so it cannot occur in
/// a part.
///
/// **The body contains the private key in the clear: the caller must not log it, must send it
/// only over the authenticated TLS connection, and should zeroize it when done.** No other copy
/// of the key is left behind here: the body is allocated once at its final size and the
/// base64 scratch buffers are zeroized.
pub fn serverkeygen_response(
    pkcs8_der: &Zeroizing<Vec<u8>>,
    certs_only_der: &[u8],
) -> Result<(String, Vec<u8>), EstError> {
    let mut random = [0u8; 16];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| EstError::Encoding("no randomness for the MIME boundary".into()))?;
    let boundary: String =
        std::iter::once("est-".to_string()).chain(random.iter().map(|b| format!("{b:02x}"))).collect();
    let content_type = format!("multipart/mixed; boundary={boundary}");

    let delimiter = format!("--{boundary}\r\n");
    let key_headers = format!("Content-Type: {CT_PKCS8}\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    let cert_headers = format!("Content-Type: {CT_CERTS_ONLY}\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    let close = format!("--{boundary}--\r\n");
    let total = 2 * delimiter.len()
        + key_headers.len()
        + base64_len(pkcs8_der.len())
        + 2
        + cert_headers.len()
        + base64_len(certs_only_der.len())
        + 2
        + close.len();

    // Exactly `total` bytes: no reallocation ever copies the key into memory we cannot wipe.
    let mut body = String::with_capacity(total);
    body.push_str(&delimiter);
    body.push_str(&key_headers);
    // The CRLF ending the base64 line doubles as the CRLF that precedes the next delimiter.
    push_base64_line(&mut body, pkcs8_der, "\r\n");
    body.push_str(&delimiter);
    body.push_str(&cert_headers);
    push_base64_line(&mut body, certs_only_der, "\r\n");
    body.push_str(&close);
    Ok((content_type, body.into_bytes()))
}

/// The renewal request does not carry the current identity. The message names what differs
/// and is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenewalMismatch(pub String);

/// Renewal identity rule (RFC 7030 §4.2.2): the CSR's subject must equal the current certificate's
/// subject (compared attribute-wise: the same sequence of RDNs with the same attribute types and
/// equal string values, tolerant of string-type differences such as PrintableString vs
/// UTF8String; attributes of a multi-valued RDN compared as a set), and if the CSR requests a
/// subjectAltName extension it must be identical (DER of the GeneralNames) to the certificate's.
/// A CSR without SAN is accepted (the issuer takes the identity from the current certificate).
///
/// This does not verify the CSR signature: run [`crate::check_csr`] for that.
pub fn check_renewal_identity(csr_der: &[u8], current_cert_der: &[u8]) -> Result<(), RenewalMismatch> {
    let mismatch = |s: &str| RenewalMismatch(s.to_string());
    let csr = match X509CertificationRequest::from_der(csr_der) {
        Ok(([], csr)) => csr,
        _ => return Err(mismatch("CSR is not a valid DER PKCS#10 request")),
    };
    let cert = match X509Certificate::from_der(current_cert_der) {
        Ok(([], cert)) => cert,
        _ => return Err(mismatch("current certificate is not a valid DER certificate")),
    };

    let info = &csr.certification_request_info;
    compare_names(&info.subject, cert.subject())
        .map_err(|what| RenewalMismatch(format!("CSR subject differs from the current certificate's: {what}")))?;

    let mut csr_sans = Vec::new();
    for attr in info.iter_attributes() {
        if let ParsedCriAttribute::ExtensionRequest(req) = attr.parsed_attribute() {
            csr_sans.extend(req.extensions.iter().filter(|e| e.oid == OID_X509_EXT_SUBJECT_ALT_NAME).map(|e| e.value));
        }
    }
    let requested = match csr_sans.as_slice() {
        [] => return Ok(()),
        [one] => *one,
        _ => return Err(mismatch("CSR requests subjectAltName more than once")),
    };
    let current: Vec<&X509Extension<'_>> =
        cert.extensions().iter().filter(|e| e.oid == OID_X509_EXT_SUBJECT_ALT_NAME).collect();
    match current.as_slice() {
        [] => Err(mismatch("CSR requests a subjectAltName but the current certificate has none")),
        [ext] if ext.value == requested => Ok(()),
        [_] => Err(mismatch("CSR subjectAltName differs from the current certificate's")),
        _ => Err(mismatch("current certificate has more than one subjectAltName")),
    }
}

/// `Ok` if both names hold the same RDNs in the same order; otherwise what differs.
fn compare_names(csr: &X509Name<'_>, cert: &X509Name<'_>) -> Result<(), String> {
    let (a, b): (Vec<_>, Vec<_>) = (csr.iter().collect(), cert.iter().collect());
    if a.len() != b.len() {
        return Err(format!("{} RDNs instead of {}", a.len(), b.len()));
    }
    for (i, (ra, rb)) in a.iter().zip(&b).enumerate() {
        let (va, vb): (Vec<_>, Vec<_>) = (ra.iter().collect(), rb.iter().collect());
        let same = va.len() == vb.len()
            && va.iter().all(|x| vb.iter().any(|y| same_attribute(x, y)))
            && vb.iter().all(|y| va.iter().any(|x| same_attribute(x, y)));
        if !same {
            let types = |v: &[&AttributeTypeAndValue<'_>]| {
                v.iter().map(|t| t.attr_type().to_id_string()).collect::<Vec<_>>().join("+")
            };
            let (ta, tb) = (types(&va), types(&vb));
            return Err(if ta == tb {
                format!("value of RDN {} ({ta}) differs", i + 1)
            } else {
                format!("RDN {} is {ta} instead of {tb}", i + 1)
            });
        }
    }
    Ok(())
}

fn same_attribute(a: &AttributeTypeAndValue<'_>, b: &AttributeTypeAndValue<'_>) -> bool {
    if a.attr_type() != b.attr_type() {
        return false;
    }
    let (va, vb) = (a.attr_value(), b.attr_value());
    match (directory_string(va), directory_string(vb)) {
        (Some(sa), Some(sb)) => sa == sb,
        // Not a (known) string type on either side: the encodings must be identical.
        _ => va.class() == vb.class() && va.tag() == vb.tag() && va.data == vb.data,
    }
}

/// The text of a universal string-typed value, whichever string type encodes it.
/// TeletexString (T.61) is not decoded: such values compare by encoding.
fn directory_string(v: &asn1_rs::Any<'_>) -> Option<String> {
    if v.class() != asn1_rs::Class::Universal {
        return None;
    }
    match v.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString | Tag::VisibleString => {
            std::str::from_utf8(v.data).ok().map(str::to_string)
        }
        Tag::BmpString => {
            if !v.data.len().is_multiple_of(2) {
                return None;
            }
            let units = v.data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units).collect::<Result<String, _>>().ok()
        }
        Tag::UniversalString => {
            if !v.data.len().is_multiple_of(4) {
                return None;
            }
            v.data.chunks_exact(4).map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))).collect()
        }
        _ => None,
    }
}
