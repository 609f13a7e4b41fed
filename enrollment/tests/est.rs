//! EST message encodings, checked against the `cms`/`der` decoders, OpenSSL 3 and golden
//! vectors made by OpenSSL (`tests/data`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use base64::Engine;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::SignedData;
use const_oid::ObjectIdentifier;
use der::asn1::SetOfVec;
use der::{Any, Choice, Decode, Encode, Sequence};
use enrollment::est::{CT_CERTS_ONLY, CT_PKCS10};
use enrollment::ra::KeyType;
use enrollment::{
    base64_line, certs_only, check_content_type, check_renewal_identity, csr_attrs, decode_base64_body,
    serverkeygen_response, EstError, RenewalMismatch, MAX_BODY_BYTES,
};
use rcgen::string::{BmpString, PrintableString};
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, SanType};
use zeroize::Zeroizing;

// ---------------------------------------------------------------------------------------
// helpers

fn vector(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs `openssl` with `args`, feeding `stdin`; fails the test clearly if it is not installed.
fn openssl(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("these tests need the `openssl` binary (OpenSSL 3) on PATH: {e}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 3) as u8).collect()
}

fn wrap(text: &str, width: usize, eol: &str) -> String {
    text.as_bytes().chunks(width).map(|c| format!("{}{eol}", std::str::from_utf8(c).unwrap())).collect()
}

fn printable(s: &str) -> DnValue {
    DnValue::PrintableString(PrintableString::try_from(s).unwrap())
}

/// CN=SN-1, serialNumber=SN-1, O=Device PKI, all PrintableString.
fn device_dn() -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, printable("SN-1"));
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), printable("SN-1"));
    dn.push(DnType::OrganizationName, printable("Device PKI"));
    dn
}

fn params(dn: DistinguishedName, sans: Vec<SanType>) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn;
    p.subject_alt_names = sans;
    p
}

fn cert_der(p: &CertificateParams) -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    p.self_signed(&key).unwrap().der().to_vec()
}

fn csr_der(p: &CertificateParams) -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    p.serialize_request(&key).unwrap().der().to_vec()
}

fn cert_with_cn(cn: &str) -> Vec<u8> {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "Device PKI");
    cert_der(&params(dn, vec![]))
}

fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

// ---------------------------------------------------------------------------------------
// decode_base64_body

#[test]
fn decode_accepts_line_broken_bodies() {
    let data = payload(1000);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    for body in [b64.clone(), wrap(&b64, 64, "\n"), wrap(&b64, 76, "\r\n"), wrap(&b64, 64, "\r\n"), base64_line(&data)]
    {
        assert_eq!(decode_base64_body(body.as_bytes()).unwrap(), data, "body {:?}…", &body[..80]);
    }
}

#[test]
fn decode_ignores_spaces_and_tabs_anywhere() {
    let data = payload(100);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let spaced: String = b64.chars().enumerate().flat_map(|(i, c)| [c, [' ', '\t', '\r', '\n'][i % 4]]).collect();
    assert_eq!(decode_base64_body(format!("\t {spaced} \r\n").as_bytes()).unwrap(), data);
    // Whitespace inside the padding, too.
    assert_eq!(decode_base64_body(b"QQ= =\r\n").unwrap(), b"A");
}

#[test]
fn decode_tolerates_missing_padding() {
    for len in [1, 2, 4, 5, 301] {
        let data = payload(len);
        let padded = base64::engine::general_purpose::STANDARD.encode(&data);
        assert!(padded.ends_with('='), "length {len} should need padding");
        let unpadded = padded.trim_end_matches('=');
        assert_eq!(decode_base64_body(wrap(unpadded, 64, "\n").as_bytes()).unwrap(), data);
        assert_eq!(decode_base64_body(padded.as_bytes()).unwrap(), data);
    }
}

#[test]
fn decode_refuses_non_base64() {
    for body in [&b"MIIB!AAA"[..], b"MIIB-_AA", b"\xff\xfe", b"-----BEGIN CERTIFICATE REQUEST-----", b"A"] {
        let err = decode_base64_body(body).unwrap_err();
        assert!(matches!(err, EstError::NotBase64(_)), "{body:?} gave {err:?}");
        assert!(err.to_string().starts_with("request body is not base64: "), "{err}");
    }
    // The message names the offending character.
    assert!(decode_base64_body(b"MIIB!AAA").unwrap_err().to_string().contains("'!'"));
}

#[test]
fn decode_refuses_empty_and_whitespace_only() {
    for body in [&b""[..], b" ", b"\r\n", b" \t\r\n \n"] {
        assert_eq!(decode_base64_body(body).unwrap_err(), EstError::Empty, "{body:?}");
    }
    assert_eq!(EstError::Empty.to_string(), "request body is empty");
}

#[test]
fn decode_limit_applies_to_the_raw_body() {
    let at_limit = vec![b'A'; MAX_BODY_BYTES];
    assert_eq!(decode_base64_body(&at_limit).unwrap().len(), MAX_BODY_BYTES / 4 * 3);
    let over = vec![b'A'; MAX_BODY_BYTES + 1];
    assert_eq!(decode_base64_body(&over).unwrap_err(), EstError::TooLarge);
    // Whitespace counts: a small payload padded with line breaks beyond the limit is refused.
    let mut padded = b"QUJD".to_vec();
    padded.extend(std::iter::repeat_n(b'\n', MAX_BODY_BYTES));
    assert_eq!(decode_base64_body(&padded).unwrap_err(), EstError::TooLarge);
    assert_eq!(EstError::TooLarge.to_string(), "request body is larger than 65536 bytes");
}

// ---------------------------------------------------------------------------------------
// check_content_type

#[test]
fn content_type_matching() {
    assert_eq!(check_content_type(Some("application/pkcs10"), CT_PKCS10), Ok(()));
    assert_eq!(check_content_type(Some("application/pkcs10; charset=utf-8"), CT_PKCS10), Ok(()));
    assert_eq!(check_content_type(Some(" Application/PKCS10 ;foo=bar"), CT_PKCS10), Ok(()));
    assert_eq!(check_content_type(Some("APPLICATION/PKCS10"), "application/pkcs10"), Ok(()));
    assert_eq!(check_content_type(Some("application/pkcs7-mime"), CT_CERTS_ONLY), Ok(()));
}

#[test]
fn content_type_mismatch_and_missing() {
    let err = check_content_type(Some("application/json"), CT_PKCS10).unwrap_err();
    assert_eq!(err, EstError::WrongContentType { got: "application/json".into(), expected: CT_PKCS10 });
    assert_eq!(err.to_string(), "Content-Type is 'application/json', expected 'application/pkcs10'");
    for wrong in ["application/pkcs10x", "application/pkcs", "text/plain; x=application/pkcs10", ""] {
        assert!(check_content_type(Some(wrong), CT_PKCS10).is_err(), "{wrong}");
    }
    assert_eq!(
        check_content_type(None, CT_PKCS10).unwrap_err(),
        EstError::WrongContentType { got: "(none)".into(), expected: CT_PKCS10 }
    );
    // A hostile header is echoed shortened and without control characters.
    let long = format!("x/{}\r\ny", "a".repeat(500));
    let EstError::WrongContentType { got, .. } = check_content_type(Some(&long), CT_PKCS10).unwrap_err() else {
        panic!("wrong variant")
    };
    assert!(got.chars().count() <= 81 && !got.contains('\r'), "{got}");
}

// ---------------------------------------------------------------------------------------
// certs_only

fn test_certs() -> Vec<Vec<u8>> {
    ["Identity Root CA", "Device Issuing CA", "SN-0001"].iter().map(|cn| cert_with_cn(cn)).collect()
}

#[test]
fn certs_only_round_trips_through_cms() {
    let certs = test_certs();
    let der = certs_only(&certs).unwrap();
    let ci = ContentInfo::from_der(&der).unwrap();
    assert_eq!(ci.content_type, const_oid::db::rfc5911::ID_SIGNED_DATA);
    let sd: SignedData = ci.content.decode_as().unwrap();
    assert_eq!(sd.version, CmsVersion::V1);
    assert!(sd.digest_algorithms.is_empty());
    assert_eq!(sd.encap_content_info.econtent_type, const_oid::db::rfc5911::ID_DATA);
    assert!(sd.encap_content_info.econtent.is_none());
    assert!(sd.crls.is_none());
    assert!(sd.signer_infos.0.is_empty());
    // SET OF: sorted, so compare as sets.
    let got: BTreeSet<Vec<u8>> = sd.certificates.unwrap().0.iter().map(|c| c.to_der().unwrap()).collect();
    let want: BTreeSet<Vec<u8>> = certs.iter().cloned().collect();
    assert_eq!(got, want);
}

#[test]
fn certs_only_single_duplicate_and_bad_input() {
    let certs = test_certs();
    let one = certs_only(&certs[..1]).unwrap();
    let sd: SignedData = ContentInfo::from_der(&one).unwrap().content.decode_as().unwrap();
    assert_eq!(sd.certificates.unwrap().0.len(), 1);

    let dup = certs_only(&[certs[0].clone(), certs[0].clone()]).unwrap();
    assert_eq!(dup, one, "a duplicate is sent once");

    assert!(matches!(certs_only(&[]), Err(EstError::Encoding(_))));
    assert!(matches!(certs_only(&[vec![0x30, 0x03, 0x02, 0x01, 0x01]]), Err(EstError::Encoding(_))));
    let mut trailing = certs[0].clone();
    trailing.push(0);
    assert!(matches!(certs_only(&[trailing]), Err(EstError::Encoding(_))));
}

#[test]
fn certs_only_is_read_by_openssl() {
    let certs = test_certs();
    let text = base64_line(&certs_only(&certs).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cacerts.b64");
    std::fs::write(&file, &text).unwrap();
    // One line: openssl needs -A to read base64 that is not broken into lines.
    let decoded = openssl(&["base64", "-d", "-A", "-in", file.to_str().unwrap()], b"");
    let printed = openssl(&["pkcs7", "-inform", "DER", "-print_certs", "-noout"], &decoded.stdout);
    let printed = String::from_utf8(printed.stdout).unwrap();
    for cn in ["Identity Root CA", "Device Issuing CA", "SN-0001"] {
        assert!(printed.contains(&format!("subject=CN = {cn}, O = Device PKI")), "{cn} missing from:\n{printed}");
    }
    assert_eq!(printed.matches("subject=").count(), 3, "{printed}");
}

#[test]
fn base64_line_has_no_line_breaks() {
    // RFC 8951 / erratum 5904: base64 per RFC 4648, no MIME line framing.
    for len in [0, 1, 47, 48, 49, 48 * 3 + 5, 4096] {
        let data = payload(len);
        let text = base64_line(&data);
        assert!(!text.contains('\n') && !text.contains('\r'), "{len} bytes: line break in {text:?}");
        assert_eq!(text, base64::engine::general_purpose::STANDARD.encode(&data));
        assert_eq!(decode_base64_body(text.as_bytes()).unwrap_or_default(), data);
    }
}

// ---------------------------------------------------------------------------------------
// csr_attrs

#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
struct TestAttribute {
    oid: ObjectIdentifier,
    values: SetOfVec<Any>,
}

#[derive(Clone, Debug, PartialEq, Eq, Choice)]
enum TestAttrOrOid {
    Oid(ObjectIdentifier),
    Attribute(TestAttribute),
}

type TestCsrAttrs = Vec<TestAttrOrOid>;

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const CHALLENGE_PASSWORD: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.7");

fn all_key_types() -> Vec<KeyType> {
    KeyType::ALL.to_vec()
}

#[test]
fn csr_attrs_decodes_to_the_expected_items() {
    let der = csr_attrs(&all_key_types(), &[ECDSA_WITH_SHA256, CHALLENGE_PASSWORD]).unwrap();
    let items = TestCsrAttrs::from_der(&der).unwrap();
    let ec = |curve: &str| {
        TestAttrOrOid::Attribute(TestAttribute {
            oid: ObjectIdentifier::new_unwrap("1.2.840.10045.2.1"),
            values: SetOfVec::try_from(vec![Any::encode_from(&ObjectIdentifier::new_unwrap(curve)).unwrap()]).unwrap(),
        })
    };
    let rsa = TestAttrOrOid::Attribute(TestAttribute {
        oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1"),
        values: SetOfVec::try_from(vec![Any::encode_from(&2048u32).unwrap()]).unwrap(),
    });
    assert_eq!(
        items,
        vec![
            ec("1.2.840.10045.3.1.7"),
            ec("1.3.132.0.34"),
            TestAttrOrOid::Oid(ObjectIdentifier::new_unwrap("1.3.101.112")),
            rsa,
            TestAttrOrOid::Oid(ECDSA_WITH_SHA256),
            TestAttrOrOid::Oid(CHALLENGE_PASSWORD),
        ]
    );
}

#[test]
fn csr_attrs_matches_the_openssl_golden_vector() {
    // tests/data/csrattrs-all-keytypes.der was made by `openssl asn1parse -genconf`
    // (an independent encoder) from the RFC 7030 §4.5.2 structure.
    let der = csr_attrs(&all_key_types(), &[ECDSA_WITH_SHA256, CHALLENGE_PASSWORD]).unwrap();
    assert_eq!(der, vector("csrattrs-all-keytypes.der"));
    let parsed = String::from_utf8(openssl(&["asn1parse", "-inform", "DER"], &der).stdout).unwrap();
    for name in ["id-ecPublicKey", "prime256v1", "secp384r1", "ED25519", "rsaEncryption", ":0800", "challengePassword"]
    {
        assert!(parsed.contains(name), "{name} missing from:\n{parsed}");
    }
}

#[test]
fn csr_attrs_edge_cases() {
    // Nothing to say is an empty SEQUENCE.
    assert_eq!(csr_attrs(&[], &[]).unwrap(), vec![0x30, 0x00]);
    // Only OIDs.
    let only = TestCsrAttrs::from_der(&csr_attrs(&[], &[ECDSA_WITH_SHA256]).unwrap()).unwrap();
    assert_eq!(only, vec![TestAttrOrOid::Oid(ECDSA_WITH_SHA256)]);
    // Repeats are sent once.
    let twice = csr_attrs(&[KeyType::Ed25519, KeyType::Ed25519], &[ECDSA_WITH_SHA256, ECDSA_WITH_SHA256]).unwrap();
    assert_eq!(TestCsrAttrs::from_der(&twice).unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------
// serverkeygen_response

struct Part {
    headers: Vec<(String, String)>,
    body: String,
}

/// A minimal multipart parser, strict about CRLF.
fn parse_multipart(content_type: &str, body: &[u8]) -> Vec<Part> {
    let (media, params) = content_type.split_once(';').unwrap();
    assert_eq!(media.trim(), "multipart/mixed");
    let boundary = params.trim().strip_prefix("boundary=").unwrap();
    let body = std::str::from_utf8(body).unwrap();
    let mut rest = body.strip_prefix(&format!("--{boundary}\r\n")).expect("body starts with the first delimiter");
    let delimiter = format!("\r\n--{boundary}");
    let mut parts = Vec::new();
    loop {
        let end = rest.find(&delimiter).expect("every part is closed by a delimiter");
        let (part, after) = (&rest[..end], &rest[end + delimiter.len()..]);
        let (head, content) = part.split_once("\r\n\r\n").expect("headers end with an empty line");
        let headers = head
            .split("\r\n")
            .map(|h| {
                let (k, v) = h.split_once(':').unwrap();
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        parts.push(Part { headers, body: content.to_string() });
        if after == "--\r\n" {
            return parts;
        }
        rest = after.strip_prefix("\r\n").expect("delimiter line ends with CRLF");
    }
}

fn header<'a>(part: &'a Part, name: &str) -> &'a str {
    part.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn serverkeygen_response_is_a_two_part_multipart() {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pkcs8 = Zeroizing::new(doc.as_ref().to_vec());
    let cms_der = certs_only(&test_certs()[2..]).unwrap();

    let (content_type, body) = serverkeygen_response(&pkcs8, &cms_der).unwrap();
    assert_eq!(body.len(), body.capacity(), "the body is allocated once, at its final size");
    let text = std::str::from_utf8(&body).unwrap();
    assert!(!text.replace("\r\n", "").contains('\n'), "bare LF in the MIME body");

    let parts = parse_multipart(&content_type, &body);
    assert_eq!(parts.len(), 2);
    assert_eq!(header(&parts[0], "content-type"), "application/pkcs8");
    assert_eq!(header(&parts[0], "content-transfer-encoding"), "base64");
    assert_eq!(header(&parts[1], "content-type"), "application/pkcs7-mime; smime-type=certs-only");
    assert_eq!(header(&parts[1], "content-transfer-encoding"), "base64");
    for part in &parts {
        assert_eq!(part.headers.len(), 2);
        let lines: Vec<&str> = part.body.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), 1, "each part's base64 is one line: {:?}", part.body);
    }

    let key = decode_base64_body(parts[0].body.as_bytes()).unwrap();
    assert_eq!(key, *pkcs8);
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key).unwrap();
    assert_eq!(
        pair.public_key().as_ref(),
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8).unwrap().public_key().as_ref()
    );
    let certs = decode_base64_body(parts[1].body.as_bytes()).unwrap();
    assert_eq!(certs, cms_der);
    ContentInfo::from_der(&certs).unwrap();
}

#[test]
fn serverkeygen_boundary_is_random_and_not_base64() {
    let key = Zeroizing::new(payload(138));
    let (a, body_a) = serverkeygen_response(&key, &payload(500)).unwrap();
    let (b, _) = serverkeygen_response(&key, &payload(500)).unwrap();
    assert_ne!(a, b);
    let boundary = a.split_once("boundary=").unwrap().1;
    assert!(boundary.len() > 32 && boundary.len() <= 70, "{boundary}");
    assert!(boundary.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=')));
    assert!(boundary.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "no quoting needed: {boundary}");
    // Delimiter lines only where expected: two openings and one close.
    let text = String::from_utf8(body_a).unwrap();
    assert_eq!(text.matches(boundary).count(), 3);
}

// ---------------------------------------------------------------------------------------
// check_renewal_identity

#[test]
fn renewal_same_subject_is_accepted() {
    let cert = cert_der(&params(device_dn(), vec![]));
    assert_eq!(check_renewal_identity(&csr_der(&params(device_dn(), vec![])), &cert), Ok(()));
}

#[test]
fn renewal_tolerates_string_types_openssl_csr() {
    let csr = vector("openssl-sn1-p256.csr");
    // The vector really uses UTF8String for CN and O (tag 0x0c), while the certificate
    // below uses PrintableString (0x13) throughout.
    assert!(csr.windows(6).any(|w| w == b"\x0c\x04SN-1"));
    assert!(csr.windows(12).any(|w| w == b"\x0c\x0aDevice PKI"));
    let cert = cert_der(&params(device_dn(), vec![]));
    assert!(cert.windows(12).any(|w| w == b"\x13\x0aDevice PKI"));
    assert_eq!(check_renewal_identity(&csr, &cert), Ok(()));
}

#[test]
fn renewal_tolerates_bmp_string() {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, DnValue::BmpString(BmpString::try_from("SN-1").unwrap()));
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), printable("SN-1"));
    dn.push(DnType::OrganizationName, "Device PKI");
    let cert = cert_der(&params(device_dn(), vec![]));
    assert_eq!(check_renewal_identity(&csr_der(&params(dn, vec![])), &cert), Ok(()));
}

#[test]
fn renewal_different_cn_is_refused() {
    let cert = cert_der(&params(device_dn(), vec![]));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, printable("SN-2"));
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), printable("SN-1"));
    dn.push(DnType::OrganizationName, printable("Device PKI"));
    let RenewalMismatch(msg) = check_renewal_identity(&csr_der(&params(dn, vec![])), &cert).unwrap_err();
    assert!(msg.contains("subject") && msg.contains("2.5.4.3"), "{msg}");
    // Case matters: identity values are compared exactly.
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, printable("sn-1"));
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), printable("SN-1"));
    dn.push(DnType::OrganizationName, printable("Device PKI"));
    assert!(check_renewal_identity(&csr_der(&params(dn, vec![])), &cert).is_err());
}

#[test]
fn renewal_extra_missing_or_reordered_rdn_is_refused() {
    let cert = cert_der(&params(device_dn(), vec![]));
    let mut missing = DistinguishedName::new();
    missing.push(DnType::CommonName, printable("SN-1"));
    missing.push(DnType::CustomDnType(vec![2, 5, 4, 5]), printable("SN-1"));
    let RenewalMismatch(msg) = check_renewal_identity(&csr_der(&params(missing, vec![])), &cert).unwrap_err();
    assert!(msg.contains("subject") && msg.contains("2 RDNs instead of 3"), "{msg}");

    let mut extra = device_dn();
    extra.push(DnType::CountryName, printable("DE"));
    let RenewalMismatch(msg) = check_renewal_identity(&csr_der(&params(extra, vec![])), &cert).unwrap_err();
    assert!(msg.contains("subject") && msg.contains("4 RDNs instead of 3"), "{msg}");

    let mut reordered = DistinguishedName::new();
    reordered.push(DnType::CustomDnType(vec![2, 5, 4, 5]), printable("SN-1"));
    reordered.push(DnType::CommonName, printable("SN-1"));
    reordered.push(DnType::OrganizationName, printable("Device PKI"));
    let RenewalMismatch(msg) = check_renewal_identity(&csr_der(&params(reordered, vec![])), &cert).unwrap_err();
    assert!(msg.contains("subject") && msg.contains("RDN 1 is 2.5.4.5 instead of 2.5.4.3"), "{msg}");
}

#[test]
fn renewal_san_rules() {
    let cert = cert_der(&params(device_dn(), vec![dns("sn-1.devices.example"), dns("sn-1.local")]));
    // Identical SAN.
    let same = csr_der(&params(device_dn(), vec![dns("sn-1.devices.example"), dns("sn-1.local")]));
    assert_eq!(check_renewal_identity(&same, &cert), Ok(()));
    // No SAN in the CSR.
    assert_eq!(check_renewal_identity(&csr_der(&params(device_dn(), vec![])), &cert), Ok(()));
    // Different, fewer, reordered SANs.
    for sans in [
        vec![dns("sn-2.devices.example"), dns("sn-1.local")],
        vec![dns("sn-1.devices.example")],
        vec![dns("sn-1.local"), dns("sn-1.devices.example")],
    ] {
        let RenewalMismatch(msg) = check_renewal_identity(&csr_der(&params(device_dn(), sans)), &cert).unwrap_err();
        assert!(msg.contains("subjectAltName"), "{msg}");
    }
    // The certificate has no SAN but the CSR asks for one.
    let bare = cert_der(&params(device_dn(), vec![]));
    let RenewalMismatch(msg) = check_renewal_identity(&same, &bare).unwrap_err();
    assert!(msg.contains("subjectAltName"), "{msg}");
}

#[test]
fn renewal_garbage_is_refused_without_panic() {
    let cert = cert_der(&params(device_dn(), vec![]));
    let csr = csr_der(&params(device_dn(), vec![]));
    let mut csr_trailing = csr.clone();
    csr_trailing.push(0);
    for bad in [&b""[..], b"\x30", b"\x30\x03\x02\x01\x00", b"garbage", &csr[..csr.len() / 2], &csr_trailing, &cert] {
        let RenewalMismatch(msg) = check_renewal_identity(bad, &cert).unwrap_err();
        assert!(msg.contains("CSR"), "{msg}");
    }
    for bad in [&b""[..], b"\x30\x00", &cert[..cert.len() - 1], &csr] {
        let RenewalMismatch(msg) = check_renewal_identity(&csr, bad).unwrap_err();
        assert!(msg.contains("certificate"), "{msg}");
    }
}
