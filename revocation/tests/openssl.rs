//! Interop with the real `openssl` binary: CRLs (full, delta, empty, sharded IDP) and
//! OCSP requests/responses. The CA, OCSP signer and leaves are made with rcgen, the CA
//! key signing through `hsm::Signer` like production.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use der::{Decode, Encode};
use hsm::KeyStore;
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use revocation::crl::{build_crl, CrlKind, CrlParams, IssuingDistributionPoint, Reason, RevokedEntry};
use revocation::ocsp::{
    build_response, error_response, parse_request, CertStatus, ErrorStatus, HashAlgorithm, IssuerKeys, OcspError,
    MAX_REQUEST_LEN,
};

const CRL_URL: &str = "http://pki.test/crl/device.crl";
const DELTA_URL: &str = "http://pki.test/crl/device-delta.crl";

#[derive(Debug)]
struct HsmKey {
    signer: Arc<dyn hsm::Signer>,
    bits: Vec<u8>,
}

impl HsmKey {
    fn new(signer: Arc<dyn hsm::Signer>) -> Self {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(signer.public_key_der()).unwrap();
        let bits = spki.subject_public_key.raw_bytes().to_vec();
        Self { signer, bits }
    }
}

impl rcgen::PublicKeyData for HsmKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for HsmKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.signer.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

struct Pki {
    dir: tempfile::TempDir,
    _store_dir: tempfile::TempDir,
    ca_key: Arc<dyn hsm::Signer>,
    ca_der: Vec<u8>,
    ocsp_key: Arc<dyn hsm::Signer>,
    ocsp_der: Vec<u8>,
    /// serial content octets of the leaves leaf1..leaf4
    serials: Vec<Vec<u8>>,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).unwrap();
        p
    }
    fn issuer_name_der(&self) -> Vec<u8> {
        let cert = x509_cert::Certificate::from_der(&self.ca_der).unwrap();
        cert.tbs_certificate.subject.to_der().unwrap()
    }
    fn ski(&self) -> Vec<u8> {
        let cert = x509_cert::Certificate::from_der(&self.ca_der).unwrap();
        let ext = cert
            .tbs_certificate
            .extensions
            .unwrap()
            .into_iter()
            .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER)
            .unwrap();
        der::asn1::OctetString::from_der(ext.extn_value.as_bytes()).unwrap().as_bytes().to_vec()
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    ::pem::encode(&::pem::Pem::new(label, der))
}

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("cannot run the `openssl` binary ({e}); install OpenSSL 3 to run the interop tests")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn setup() -> Pki {
    let (store, store_dir) = hsm::testing::software_store().unwrap();
    let ca_key = store.generate("ca", hsm::KeyAlgorithm::EcdsaP256).unwrap();
    let ocsp_key = store.generate("ocsp", hsm::KeyAlgorithm::EcdsaP256).unwrap();
    let ca_hsm = HsmKey::new(ca_key.clone());

    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "Test Device Issuing CA");
    ca.distinguished_name.push(DnType::OrganizationName, "Revocation Tests");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01]));
    let ca_cert = ca.self_signed(&ca_hsm).unwrap();
    let issuer = Issuer::new(ca, ca_hsm);

    let dir = tempfile::tempdir().unwrap();
    let mut ocsp = CertificateParams::new(Vec::<String>::new()).unwrap();
    ocsp.distinguished_name.push(DnType::CommonName, "OCSP Signer for Test Device Issuing CA");
    ocsp.is_ca = IsCa::ExplicitNoCa;
    ocsp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    ocsp.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
    ocsp.use_authority_key_identifier_extension = true;
    ocsp.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x02]));
    let ocsp_cert = ocsp.signed_by(&HsmKey::new(ocsp_key.clone()), &issuer).unwrap();

    let mut serials = Vec::new();
    for i in 1..=4u8 {
        let mut leaf = CertificateParams::new(vec![format!("leaf{i}.test")]).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, format!("leaf{i}"));
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf.use_authority_key_identifier_extension = true;
        leaf.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![CRL_URL.into()] }];
        // 0x9f… needs a leading zero octet: exercises sign handling end to end.
        let serial = vec![0x9f, 0x10, i, 0x55, 0xaa, 0x01, 0x02, 0x03, 0x04];
        leaf.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join(format!("leaf{i}.pem")), cert.pem()).unwrap();
        let parsed = x509_cert::Certificate::from_der(cert.der()).unwrap();
        serials.push(parsed.tbs_certificate.serial_number.as_bytes().to_vec());
    }
    assert_eq!(serials[0][0], 0x00, "serial content octets carry the sign byte");
    std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.path().join("ocsp.pem"), ocsp_cert.pem()).unwrap();
    Pki {
        dir,
        _store_dir: store_dir,
        ca_key,
        ca_der: ca_cert.der().to_vec(),
        ocsp_key,
        ocsp_der: ocsp_cert.der().to_vec(),
        serials,
    }
}

fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

fn entry(serial: &[u8], reason: Option<Reason>) -> RevokedEntry {
    RevokedEntry { serial: serial.to_vec(), revoked_at: ago(600), reason }
}

/// Writes the CRL as DER and PEM, checks `openssl crl` verifies its signature, and
/// returns `openssl crl -text`.
fn write_crl(pki: &Pki, name: &str, der: &[u8]) -> String {
    pki.write(&format!("{name}.der"), der);
    pki.write(&format!("{name}.pem"), pem("X509 CRL", der).as_bytes());
    let (ok, text) =
        openssl(pki.dir.path(), &["crl", "-inform", "DER", "-in", &format!("{name}.der"), "-text", "-noout"]);
    assert!(ok, "{text}");
    let (ok, verify) = openssl(
        pki.dir.path(),
        &["crl", "-inform", "DER", "-in", &format!("{name}.der"), "-CAfile", "ca.pem", "-noout"],
    );
    assert!(ok && verify.contains("verify OK"), "{verify}");
    text
}

fn verify_leaf(pki: &Pki, leaf: &str, crl_file: &str, deltas: bool) -> (bool, String) {
    let mut args = vec!["verify", "-crl_check", "-CAfile", "ca.pem", "-CRLfile", crl_file];
    if deltas {
        args.extend(["-use_deltas", "-extended_crl"]);
    }
    args.push(leaf);
    openssl(pki.dir.path(), &args)
}

fn base_params<'a>(pki_name: &'a [u8], ski: &'a [u8], entries: &'a [RevokedEntry]) -> CrlParams<'a> {
    CrlParams {
        issuer_name_der: pki_name,
        issuer_key_id: ski,
        crl_number: 10,
        this_update: ago(60),
        next_update: SystemTime::now() + Duration::from_secs(86_400),
        kind: CrlKind::Full,
        entries,
        freshest_crl_url: Some(DELTA_URL),
        distribution_point: Some(IssuingDistributionPoint {
            url: CRL_URL,
            only_contains_user_certs: true,
            only_contains_ca_certs: false,
        }),
    }
}

#[test]
fn full_and_delta_crls_with_openssl() {
    let pki = setup();
    let (name, ski) = (pki.issuer_name_der(), pki.ski());
    let s = &pki.serials;
    // Base: leaf1 keyCompromise, leaf4 on hold, plus one entry per other reason.
    let mut base_entries = vec![entry(&s[0], Some(Reason::KeyCompromise)), entry(&s[3], Some(Reason::CertificateHold))];
    for (i, code) in [0u8, 2, 3, 4, 5, 9, 10].into_iter().enumerate() {
        base_entries.push(entry(&[0x70, i as u8 + 1], Reason::from_code(code)));
    }
    base_entries.push(entry(&[0x71], None));
    let base = build_crl(&base_params(&name, &ski, &base_entries), pki.ca_key.as_ref()).unwrap();
    let text = write_crl(&pki, "base", &base);
    for needle in [
        "Version 2 (0x1)",
        "X509v3 CRL Number: \n                10",
        "X509v3 Authority Key Identifier",
        "X509v3 Issuing Distribution Point: critical",
        "Only User Certificates",
        "X509v3 Freshest CRL:",
        DELTA_URL,
        "Key Compromise",
        "CA Compromise",
        "Affiliation Changed",
        "Superseded",
        "Cessation Of Operation",
        "Certificate Hold",
        "Privilege Withdrawn",
        "AA Compromise",
        "Signature Algorithm: ecdsa-with-SHA256",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    // unspecified and None: no reason extension at all (2 entries without one).
    assert_eq!(text.matches("X509v3 CRL Reason Code").count(), base_entries.len() - 2, "{text}");
    let leaf1_serial = hex::encode_upper(&s[0][1..]);
    assert!(text.contains(&format!("Serial Number: {leaf1_serial}")), "{text}");

    let (ok, out) = verify_leaf(&pki, "leaf1.pem", "base.pem", false);
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    let (ok, out) = verify_leaf(&pki, "leaf2.pem", "base.pem", false);
    assert!(ok && out.contains("leaf2.pem: OK"), "{out}");
    let (ok, out) = verify_leaf(&pki, "leaf4.pem", "base.pem", false);
    assert!(!ok && out.contains("revoked"), "held certificate: {out}");

    // Delta on top of base 10: leaf3 superseded, leaf4 released from hold.
    let delta_entries = [entry(&s[2], Some(Reason::Superseded)), entry(&s[3], Some(Reason::RemoveFromCrl))];
    let delta_params = CrlParams {
        crl_number: 11,
        kind: CrlKind::Delta { base_crl_number: 10 },
        freshest_crl_url: None,
        entries: &delta_entries,
        ..base_params(&name, &ski, &[])
    };
    let delta = build_crl(&delta_params, pki.ca_key.as_ref()).unwrap();
    let text = write_crl(&pki, "delta", &delta);
    for needle in ["X509v3 Delta CRL Indicator: critical", "X509v3 CRL Number: \n                11", "Remove From CRL"]
    {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains("Freshest CRL"), "{text}");
    let both = [
        std::fs::read_to_string(pki.path("base.pem")).unwrap(),
        std::fs::read_to_string(pki.path("delta.pem")).unwrap(),
    ]
    .concat();
    pki.write("both.pem", both.as_bytes());

    let (ok, out) = verify_leaf(&pki, "leaf3.pem", "both.pem", true);
    assert!(!ok && out.contains("certificate revoked"), "leaf3 revoked by the delta: {out}");
    let (ok, out) = verify_leaf(&pki, "leaf3.pem", "base.pem", true);
    assert!(ok, "leaf3 is good by the base alone: {out}");
    let (ok, out) = verify_leaf(&pki, "leaf4.pem", "both.pem", true);
    assert!(ok, "leaf4 released from hold by the delta: {out}");
    let (ok, out) = verify_leaf(&pki, "leaf1.pem", "both.pem", true);
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    let (ok, out) = verify_leaf(&pki, "leaf2.pem", "both.pem", true);
    assert!(ok, "{out}");
}

#[test]
fn empty_crl_with_openssl() {
    let pki = setup();
    let (name, ski) = (pki.issuer_name_der(), pki.ski());
    let params = CrlParams { freshest_crl_url: None, distribution_point: None, ..base_params(&name, &ski, &[]) };
    let der = build_crl(&params, pki.ca_key.as_ref()).unwrap();
    let text = write_crl(&pki, "empty", &der);
    assert!(text.contains("No Revoked Certificates."), "{text}");
    let (ok, asn1) = openssl(pki.dir.path(), &["asn1parse", "-inform", "DER", "-in", "empty.der"]);
    assert!(ok, "{asn1}");
    // TBS: version, sigalg(1 OID), issuer, 2 times, then [0] — no SEQUENCE in between.
    let lines: Vec<&str> = asn1.lines().collect();
    let utc: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| l.contains("UTCTIME")).map(|(i, _)| i).collect();
    assert_eq!(utc.len(), 2, "{asn1}");
    assert!(lines[utc[1] + 1].contains("cont [ 0 ]"), "{asn1}");
    let (ok, out) = verify_leaf(&pki, "leaf1.pem", "empty.pem", false);
    assert!(ok, "{out}");
}

#[test]
fn sharded_crl_scope_is_enforced_by_openssl() {
    // A CRL whose IDP names another shard does not cover our leaves (CDP = CRL_URL).
    let pki = setup();
    let (name, ski) = (pki.issuer_name_der(), pki.ski());
    let entries = [entry(&pki.serials[0], Some(Reason::KeyCompromise))];
    let mut params = base_params(&name, &ski, &entries);
    params.freshest_crl_url = None;
    params.distribution_point = Some(IssuingDistributionPoint {
        url: "http://pki.test/crl/other-shard.crl",
        ..params.distribution_point.unwrap()
    });
    let der = build_crl(&params, pki.ca_key.as_ref()).unwrap();
    write_crl(&pki, "shard", &der);
    let (ok, out) = verify_leaf(&pki, "leaf1.pem", "shard.pem", false);
    assert!(!ok && out.contains("different CRL scope"), "{out}");
}

// ---------------------------------------------------------------- OCSP

fn ocsp_request(pki: &Pki, name: &str, leaves: &[&str], extra: &[&str]) -> Vec<u8> {
    // openssl wants the digest before -cert/-serial.
    let mut args = vec!["ocsp", "-issuer", "ca.pem"];
    args.extend(extra);
    for l in leaves {
        args.extend(["-cert", l]);
    }
    args.extend(["-reqout", name]);
    let (ok, out) = openssl(pki.dir.path(), &args);
    assert!(ok, "{out}");
    std::fs::read(pki.path(name)).unwrap()
}

/// The responder logic the service will run: match issuer, look up the serial.
fn answer(pki: &Pki, req: &[u8], revoked: &[(usize, Option<Reason>)]) -> Vec<u8> {
    let parsed = parse_request(req).unwrap();
    let keys = IssuerKeys::from_ca_cert_der(&pki.ca_der).unwrap();
    let responses: Vec<_> = parsed
        .cert_ids
        .iter()
        .map(|id| {
            let status = if !keys.matches(id) {
                CertStatus::Unknown
            } else if let Some((_, reason)) = revoked.iter().find(|(i, _)| pki.serials[*i] == id.serial()) {
                CertStatus::Revoked { at: ago(3600), reason: *reason }
            } else if pki.serials.iter().any(|s| s == id.serial()) {
                CertStatus::Good
            } else {
                CertStatus::Unknown
            };
            (id.clone(), status)
        })
        .collect();
    build_response(
        &responses,
        ago(60),
        Some(SystemTime::now() + Duration::from_secs(3600)),
        parsed.nonce.as_deref(),
        &pki.ocsp_der,
        pki.ocsp_key.as_ref(),
    )
    .unwrap()
}

/// `openssl ocsp -respin` status check (its own request from -cert, no nonce).
fn check_status(pki: &Pki, resp: &str, leaves: &[&str], extra: &[&str]) -> String {
    let mut args = vec!["ocsp", "-respin", resp, "-issuer", "ca.pem", "-CAfile", "ca.pem", "-no_nonce"];
    args.extend(extra);
    for l in leaves {
        args.extend(["-cert", l]);
    }
    let (ok, out) = openssl(pki.dir.path(), &args);
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    out
}

#[test]
fn ocsp_sha1_with_nonce_several_cert_ids() {
    let pki = setup();
    let req = ocsp_request(&pki, "req.der", &["leaf1.pem", "leaf2.pem", "leaf3.pem"], &[]);
    let parsed = parse_request(&req).unwrap();
    assert_eq!(parsed.cert_ids.len(), 3);
    let keys = IssuerKeys::from_ca_cert_der(&pki.ca_der).unwrap();
    for (i, id) in parsed.cert_ids.iter().enumerate() {
        assert_eq!(id.hash_algorithm(), &HashAlgorithm::Sha1);
        assert!(keys.matches(id));
        assert_eq!(id.serial(), pki.serials[i]);
        assert_eq!(id, &keys.cert_id(HashAlgorithm::Sha1, &pki.serials[i]).unwrap());
    }
    // The nonce is the extnValue openssl shows (OCTET STRING of 16 bytes).
    let nonce = parsed.nonce.clone().expect("openssl sends a nonce by default");
    let (ok, text) = openssl(pki.dir.path(), &["ocsp", "-reqin", "req.der", "-req_text", "-noverify"]);
    assert!(ok, "{text}");
    assert_eq!(nonce.len(), 18);
    assert!(text.replace([' ', '\n', ':'], "").to_uppercase().contains(&hex::encode_upper(&nonce)), "{text}");

    let resp = answer(&pki, &req, &[(0, Some(Reason::KeyCompromise))]);
    pki.write("resp.der", &resp);
    let out = check_status(&pki, "resp.der", &["leaf1.pem", "leaf2.pem", "leaf3.pem"], &[]);
    assert!(out.contains("leaf1.pem: revoked"), "{out}");
    assert!(out.contains("Reason: keyCompromise"), "{out}");
    assert!(out.contains("leaf2.pem: good"), "{out}");
    assert!(out.contains("leaf3.pem: good"), "{out}");

    // Nonce echoed: openssl compares it with the request's.
    let (ok, out) = openssl(pki.dir.path(), &["ocsp", "-respin", "resp.der", "-reqin", "req.der", "-CAfile", "ca.pem"]);
    assert!(ok && out.contains("Response verify OK"), "{out}");
    assert!(!out.contains("nonce"), "{out}");
    // ...and a response to a different request's nonce is refused.
    ocsp_request(&pki, "req2.der", &["leaf1.pem"], &[]);
    let (ok, out) =
        openssl(pki.dir.path(), &["ocsp", "-respin", "resp.der", "-reqin", "req2.der", "-CAfile", "ca.pem"]);
    assert!(!ok && out.contains("Nonce Verify error"), "{out}");

    // ResponderID byKey and the signer certificate in `certs`.
    let (ok, text) = openssl(pki.dir.path(), &["ocsp", "-respin", "resp.der", "-resp_text", "-noverify"]);
    assert!(ok, "{text}");
    assert!(text.contains("Responder Id: ") && !text.contains("Responder Id: CN"), "{text}");
    assert!(text.contains("OCSP Signer for Test Device Issuing CA"), "{text}");
    assert!(text.contains("OCSP Nonce"), "{text}");
}

#[test]
fn ocsp_sha256_without_nonce_revoked_and_unknown() {
    let pki = setup();
    let req = ocsp_request(&pki, "req.der", &["leaf2.pem", "leaf4.pem"], &["-no_nonce", "-sha256"]);
    let parsed = parse_request(&req).unwrap();
    assert!(parsed.nonce.is_none());
    assert!(parsed.cert_ids.iter().all(|id| id.hash_algorithm() == &HashAlgorithm::Sha256));
    let keys = IssuerKeys::from_ca_cert_der(&pki.ca_der).unwrap();
    assert!(parsed.cert_ids.iter().all(|id| keys.matches(id)));

    let resp = answer(&pki, &req, &[(3, None)]);
    pki.write("resp.der", &resp);
    let out = check_status(&pki, "resp.der", &["leaf2.pem", "leaf4.pem"], &["-sha256"]);
    assert!(out.contains("leaf2.pem: good"), "{out}");
    assert!(out.contains("leaf4.pem: revoked"), "{out}");
    assert!(!out.contains("Reason:"), "no reason was given: {out}");

    // A serial this CA never issued is `unknown`.
    let req = ocsp_request(&pki, "req3.der", &[], &["-no_nonce", "-serial", "0x0123456789"]);
    pki.write("resp3.der", &answer(&pki, &req, &[]));
    let out = check_status(&pki, "resp3.der", &[], &["-serial", "0x0123456789"]);
    assert!(out.contains("0x0123456789: unknown"), "{out}");

    // A CertID naming another issuer does not match.
    let wrong_issuer = IssuerKeys::from_parts(b"\x30\x00", b"other key");
    let id = wrong_issuer.cert_id(HashAlgorithm::Sha1, &pki.serials[1]).unwrap();
    assert!(!keys.matches(&id));
}

#[test]
fn ocsp_unsupported_hash_is_unknown() {
    let pki = setup();
    let req = ocsp_request(&pki, "req.der", &["leaf2.pem"], &["-no_nonce", "-sha512"]);
    let parsed = parse_request(&req).unwrap();
    assert_eq!(parsed.cert_ids[0].hash_algorithm(), &HashAlgorithm::Unsupported(const_oid::db::rfc5912::ID_SHA_512));
    let keys = IssuerKeys::from_ca_cert_der(&pki.ca_der).unwrap();
    assert!(!keys.matches(&parsed.cert_ids[0]));
    pki.write("resp.der", &answer(&pki, &req, &[]));
    let out = check_status(&pki, "resp.der", &["leaf2.pem"], &["-sha512"]);
    assert!(out.contains("leaf2.pem: unknown"), "{out}");
}

#[test]
fn ocsp_bad_requests() {
    let pki = setup();
    let req = ocsp_request(&pki, "req.der", &["leaf1.pem"], &[]);
    let status = |der: &[u8]| parse_request(der).map(|_| ()).map_err(|e| e.status());
    assert_eq!(status(&req), Ok(()));
    assert_eq!(status(&[]), Err(ErrorStatus::MalformedRequest));
    assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), Err(ErrorStatus::MalformedRequest));
    for cut in [1, 2, req.len() / 2, req.len() - 1] {
        assert_eq!(status(&req[..cut]), Err(ErrorStatus::MalformedRequest), "truncated at {cut}");
    }
    let trailing = [&req[..], &[0u8]].concat();
    assert_eq!(status(&trailing), Err(ErrorStatus::MalformedRequest));
    let doubled = [&req[..], &req[..]].concat();
    assert_eq!(status(&doubled), Err(ErrorStatus::MalformedRequest));
    let huge = vec![0x30; MAX_REQUEST_LEN + 1];
    assert!(matches!(parse_request(&huge), Err(OcspError::TooLarge { .. })));
    assert_eq!(status(&huge), Err(ErrorStatus::MalformedRequest));

    // Empty requestList: a well-formed OCSPRequest otherwise.
    let empty = x509_ocsp::OcspRequest {
        tbs_request: x509_ocsp::TbsRequest {
            version: x509_ocsp::Version::V1,
            requestor_name: None,
            request_list: vec![],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()
    .unwrap();
    assert_eq!(empty, [0x30, 0x04, 0x30, 0x02, 0x30, 0x00]);
    assert_eq!(status(&empty), Err(ErrorStatus::MalformedRequest));

    // SHA-1 CertID with a truncated hash.
    let mut decoded = x509_ocsp::OcspRequest::from_der(&req).unwrap();
    decoded.tbs_request.request_list[0].req_cert.issuer_name_hash = der::asn1::OctetString::new(vec![1; 19]).unwrap();
    assert_eq!(status(&decoded.to_der().unwrap()), Err(ErrorStatus::MalformedRequest));

    // Oversized nonce (RFC 8954: at most 32 bytes).
    let big_nonce = ocsp_request(&pki, "req_big.der", &["leaf1.pem"], &["-no_nonce"]);
    let mut decoded = x509_ocsp::OcspRequest::from_der(&big_nonce).unwrap();
    decoded.tbs_request.request_extensions = Some(vec![x509_cert::ext::Extension {
        extn_id: const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE,
        critical: false,
        extn_value: der::asn1::OctetString::new(der::asn1::OctetString::new(vec![7; 33]).unwrap().to_der().unwrap())
            .unwrap(),
    }]);
    assert_eq!(status(&decoded.to_der().unwrap()), Err(ErrorStatus::MalformedRequest));

    // The error responses are what openssl expects.
    for (status, text) in [
        (ErrorStatus::MalformedRequest, "malformedrequest (1)"),
        (ErrorStatus::InternalError, "internalerror (2)"),
        (ErrorStatus::TryLater, "trylater (3)"),
        (ErrorStatus::Unauthorized, "unauthorized (6)"),
    ] {
        pki.write("err.der", &error_response(status));
        let (_, out) = openssl(pki.dir.path(), &["ocsp", "-respin", "err.der", "-resp_text", "-noverify"]);
        assert!(out.to_lowercase().contains(text), "{out}");
    }
}

#[test]
fn ocsp_responder_key_must_match_certificate() {
    let pki = setup();
    let keys = IssuerKeys::from_ca_cert_der(&pki.ca_der).unwrap();
    let id = keys.cert_id(HashAlgorithm::Sha1, &pki.serials[0]).unwrap();
    let err =
        build_response(&[(id, CertStatus::Good)], ago(1), None, None, &pki.ocsp_der, pki.ca_key.as_ref()).unwrap_err();
    assert_eq!(err.status(), ErrorStatus::InternalError);
}
