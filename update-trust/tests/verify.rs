//! The device-side policy, rule by rule: each refusal test has a passing twin that
//! differs only in the one thing the rule is about, so it fails if the rule is gone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{self, Read};
use std::time::SystemTime;

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerInfos};
use common::*;
use der::asn1::SetOfVec;
use der::{Any, Decode, Encode};
use hsm::KeyAlgorithm;
use rcgen::ExtendedKeyUsagePurpose;
use update_trust::{sign_detached, verify_detached, Policy, SignError, VerifyError, VerifyTime, MAX_SIGNATURE_LEN};

const FIRMWARE: &[u8] = b"firmware image v1.2.3 \x00\x01\x02 for device class 7";

fn policy(anchors: &[Vec<u8>]) -> Policy<'_> {
    Policy { trust_anchors: anchors, crls: &[], device_class: None, time: VerifyTime::Now, log: None }
}

fn sign_with(key: &dyn hsm::Signer, cert: &[u8], chain: &[Vec<u8>], at: SystemTime) -> Vec<u8> {
    sign_detached(FIRMWARE, key, cert, chain, at).unwrap()
}

/// Decodes a signature, lets `edit` change the SignedData, re-encodes it.
fn edit_signed_data(sig: &[u8], edit: impl FnOnce(&mut SignedData)) -> Vec<u8> {
    let mut ci = ContentInfo::from_der(sig).unwrap();
    let mut sd: SignedData = ci.content.decode_as().unwrap();
    edit(&mut sd);
    ci.content = Any::encode_from(&sd).unwrap();
    ci.to_der().unwrap()
}

/// Replaces the signer's signed attributes (via `edit`) and re-signs them with `key`,
/// so the signature itself stays valid.
fn resign_attrs(sig: &[u8], key: &dyn hsm::Signer, edit: impl FnOnce(&mut Vec<x509_cert::attr::Attribute>)) -> Vec<u8> {
    edit_signed_data(sig, |sd| {
        let mut infos: Vec<_> = sd.signer_infos.0.iter().cloned().collect();
        let si = &mut infos[0];
        let mut attrs: Vec<_> = si.signed_attrs.take().unwrap().into_vec();
        edit(&mut attrs);
        let attrs = SetOfVec::try_from(attrs).unwrap();
        si.signature = der::asn1::OctetString::new(key.sign(&attrs.to_der().unwrap()).unwrap()).unwrap();
        si.signed_attrs = Some(attrs);
        sd.signer_infos = SignerInfos::try_from(infos).unwrap();
    })
}

#[test]
fn round_trip_accepts_and_reports_the_signer() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    let v = verify_detached(&sig, FIRMWARE, &Policy { device_class: Some(class(7)), ..policy(&anchors) }).unwrap();
    assert_eq!(v.signer_subject, "CN=Release Signer 1");
    let cert = x509_cert::Certificate::from_der(&pki.signer_cert).unwrap();
    assert_eq!(v.signer_serial_hex, hex::encode(cert.tbs_certificate.serial_number.as_bytes()));
    assert_eq!(v.device_classes, vec![class(7), class(8)]);
    assert_eq!(v.not_after, cert.tbs_certificate.validity.not_after.to_system_time());
    let st = v.signing_time.unwrap();
    assert!(st <= SystemTime::now() && st > ago(60), "signingTime is the signing moment");
}

#[test]
fn pem_signature_is_accepted() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pem("CMS", &pki.sign(FIRMWARE));
    verify_detached(sig.as_bytes(), FIRMWARE, &policy(&anchors)).unwrap();
}

#[test]
fn tampered_content_is_digest_mismatch() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    let mut tampered = FIRMWARE.to_vec();
    tampered[5] ^= 0x01;
    let err = verify_detached(&sig, &tampered[..], &policy(&anchors)).unwrap_err();
    assert!(matches!(err, VerifyError::DigestMismatch), "{err}");
    let err = verify_detached(&sig, &FIRMWARE[..FIRMWARE.len() - 1], &policy(&anchors)).unwrap_err();
    assert!(matches!(err, VerifyError::DigestMismatch), "truncated content: {err}");
}

#[test]
fn tampered_signature_value_is_bad_signature() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    let tampered = edit_signed_data(&sig, |sd| {
        let mut infos: Vec<_> = sd.signer_infos.0.iter().cloned().collect();
        let mut bytes = infos[0].signature.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        infos[0].signature = der::asn1::OctetString::new(bytes).unwrap();
        sd.signer_infos = SignerInfos::try_from(infos).unwrap();
    });
    let err = verify_detached(&tampered, FIRMWARE, &policy(&anchors)).unwrap_err();
    assert!(matches!(err, VerifyError::BadSignature), "{err}");
}

#[test]
fn tampered_signed_attribute_is_bad_signature() {
    // Moving the signingTime without re-signing must break the signature: the signed
    // attributes, not the content, are what the signature covers.
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    let tampered = edit_signed_data(&sig, |sd| {
        let mut infos: Vec<_> = sd.signer_infos.0.iter().cloned().collect();
        let mut attrs: Vec<_> = infos[0].signed_attrs.take().unwrap().into_vec();
        for a in &mut attrs {
            if a.oid == const_oid::db::rfc5911::ID_SIGNING_TIME {
                let t = x509_cert::time::Time::UtcTime(der::asn1::UtcTime::from_system_time(ago(7 * DAY)).unwrap());
                a.values = SetOfVec::try_from(vec![Any::encode_from(&t).unwrap()]).unwrap();
            }
        }
        infos[0].signed_attrs = Some(SetOfVec::try_from(attrs).unwrap());
        sd.signer_infos = SignerInfos::try_from(infos).unwrap();
    });
    let err = verify_detached(&tampered, FIRMWARE, &policy(&anchors)).unwrap_err();
    assert!(matches!(err, VerifyError::BadSignature), "{err}");
}

#[test]
fn code_signing_leaf_under_the_identity_root_is_untrusted_chain() {
    let pki = Pki::new();
    // Same profile as the real signer (codeSigning, classes), wrong hierarchy.
    let (key, cert) =
        pki.key_and_cert("rogue", KeyAlgorithm::EcdsaP256, &pki.device_ca, &LeafSpec::code_signing("Rogue Signer"));
    let sig = sign_with(key.as_ref(), &cert, std::slice::from_ref(&pki.device_ca.der), SystemTime::now());
    let anchors = pki.anchors();
    let err = verify_detached(&sig, FIRMWARE, &policy(&anchors)).unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedChain(_)), "{err}");
    // Twin: the same signature verifies when the identity root is (wrongly) trusted.
    let identity = vec![pki.identity_root.der.clone()];
    verify_detached(&sig, FIRMWARE, &policy(&identity)).unwrap();
}

#[test]
fn device_identity_certificate_cannot_sign_updates() {
    let pki = Pki::new();
    let spec = LeafSpec { ekus: vec![ExtendedKeyUsagePurpose::ClientAuth], ..LeafSpec::code_signing("SN-0001") };
    let (key, cert) = pki.key_and_cert("device", KeyAlgorithm::EcdsaP256, &pki.device_ca, &spec);
    let sig = sign_with(key.as_ref(), &cert, std::slice::from_ref(&pki.device_ca.der), SystemTime::now());
    let anchors = pki.anchors();
    let err = verify_detached(&sig, FIRMWARE, &policy(&anchors)).unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedChain(_) | VerifyError::NotCodeSigning(_)), "{err}");
}

#[test]
fn leaf_without_code_signing_eku_is_not_code_signing() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let chain = std::slice::from_ref(&pki.update_ca.der);
    let spec = LeafSpec { ekus: vec![ExtendedKeyUsagePurpose::ClientAuth], ..LeafSpec::code_signing("TLS client") };
    let (key, cert) = pki.key_and_cert("client", KeyAlgorithm::EcdsaP256, &pki.update_ca, &spec);
    let err = verify_detached(&sign_with(key.as_ref(), &cert, chain, SystemTime::now()), FIRMWARE, &policy(&anchors))
        .unwrap_err();
    assert!(matches!(err, VerifyError::NotCodeSigning(_)), "clientAuth only: {err}");

    // No EKU extension at all: webpki's chain rule lets it through; ours must not.
    let spec = LeafSpec { ekus: vec![], ..LeafSpec::code_signing("No EKU") };
    let (key, cert) = pki.key_and_cert("no-eku", KeyAlgorithm::EcdsaP256, &pki.update_ca, &spec);
    let err = verify_detached(&sign_with(key.as_ref(), &cert, chain, SystemTime::now()), FIRMWARE, &policy(&anchors))
        .unwrap_err();
    assert!(matches!(err, VerifyError::NotCodeSigning(_)), "no EKU: {err}");

    // anyExtendedKeyUsage is not codeSigning.
    let spec = LeafSpec { ekus: vec![ExtendedKeyUsagePurpose::Any], ..LeafSpec::code_signing("Any EKU") };
    let (key, cert) = pki.key_and_cert("any-eku", KeyAlgorithm::EcdsaP256, &pki.update_ca, &spec);
    let err = verify_detached(&sign_with(key.as_ref(), &cert, chain, SystemTime::now()), FIRMWARE, &policy(&anchors))
        .unwrap_err();
    assert!(matches!(err, VerifyError::NotCodeSigning(_)), "anyEKU: {err}");
}

#[test]
fn intermediate_without_eku_is_fine_but_with_foreign_eku_is_not_code_signing() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    // The fixture's Update Authority CA has no EKU (like ca-service's CA profile) and
    // the round trip passes; a CA restricted to clientAuth must not pass codeSigning on.
    let tls_ca = pki.update_root.sub_ca(&pki.store, "tls-ca", "TLS-only CA", vec![ExtendedKeyUsagePurpose::ClientAuth]);
    let (key, cert) = pki.key_and_cert("under-tls-ca", KeyAlgorithm::EcdsaP256, &tls_ca, &LeafSpec::code_signing("X"));
    let sig = sign_with(key.as_ref(), &cert, std::slice::from_ref(&tls_ca.der), SystemTime::now());
    let err = verify_detached(&sig, FIRMWARE, &policy(&anchors)).unwrap_err();
    assert!(matches!(err, VerifyError::NotCodeSigning(_)), "{err}");

    let cs_ca =
        pki.update_root.sub_ca(&pki.store, "cs-ca", "Code-signing CA", vec![ExtendedKeyUsagePurpose::CodeSigning]);
    let (key, cert) = pki.key_and_cert("under-cs-ca", KeyAlgorithm::EcdsaP256, &cs_ca, &LeafSpec::code_signing("Y"));
    let sig = sign_with(key.as_ref(), &cert, std::slice::from_ref(&cs_ca.der), SystemTime::now());
    verify_detached(&sig, FIRMWARE, &policy(&anchors)).unwrap();
}

#[test]
fn revoked_in_crl_is_revoked_and_unlisted_is_accepted() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    let (other_key, other_cert) =
        pki.key_and_cert("other", KeyAlgorithm::EcdsaP256, &pki.update_ca, &LeafSpec::code_signing("Other"));
    let _ = other_key;

    let revoking = vec![pki.update_ca.crl(&[&pki.signer_cert], ago(60), ahead(DAY))];
    let err = verify_detached(&sig, FIRMWARE, &Policy { crls: &revoking, ..policy(&anchors) }).unwrap_err();
    assert!(matches!(err, VerifyError::Revoked), "{err}");

    let clean = vec![pki.update_ca.crl(&[&other_cert], ago(60), ahead(DAY))];
    verify_detached(&sig, FIRMWARE, &Policy { crls: &clean, ..policy(&anchors) }).unwrap();

    // A revoked certificate stays refused for signatures made before the revocation.
    let err =
        verify_detached(&sig, FIRMWARE, &Policy { crls: &revoking, time: VerifyTime::SigningTime, ..policy(&anchors) })
            .unwrap_err();
    assert!(matches!(err, VerifyError::Revoked), "{err}");
}

#[test]
fn an_older_crl_listed_first_cannot_hide_a_newer_revocation() {
    // webpki believes the first authoritative CRL; the verifier must pick the newest.
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    let old_clean = pki.update_ca.crl(&[], ago(2 * DAY), ahead(DAY));
    let new_revoking = pki.update_ca.crl(&[&pki.signer_cert], ago(60), ahead(DAY));
    for crls in [vec![old_clean.clone(), new_revoking.clone()], vec![new_revoking.clone(), old_clean.clone()]] {
        let err = verify_detached(&sig, FIRMWARE, &Policy { crls: &crls, ..policy(&anchors) }).unwrap_err();
        assert!(matches!(err, VerifyError::Revoked), "{err}");
    }
    // The same CRL twice is harmless.
    let twice = vec![old_clean.clone(), old_clean];
    verify_detached(&sig, FIRMWARE, &Policy { crls: &twice, ..policy(&anchors) }).unwrap();
}

#[test]
fn crl_from_another_issuer_is_revocation_unknown() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    // Revokes nothing, but is the Device Issuing CA's: says nothing about the signer.
    let foreign = vec![pki.device_ca.crl(&[], ago(60), ahead(DAY))];
    let err = verify_detached(&sig, FIRMWARE, &Policy { crls: &foreign, ..policy(&anchors) }).unwrap_err();
    assert!(matches!(err, VerifyError::RevocationUnknown(_)), "{err}");
    // With the right issuer's CRL added, the status is known.
    let both = vec![foreign[0].clone(), pki.update_ca.crl(&[], ago(60), ahead(DAY))];
    verify_detached(&sig, FIRMWARE, &Policy { crls: &both, ..policy(&anchors) }).unwrap();
}

#[test]
fn stale_crl_is_revocation_unknown() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let spec = LeafSpec { not_before: ago(10 * DAY), ..LeafSpec::code_signing("Signer") };
    let (key, cert) = pki.key_and_cert("signer", KeyAlgorithm::EcdsaP256, &pki.update_ca, &spec);
    let sig = sign_with(key.as_ref(), &cert, std::slice::from_ref(&pki.update_ca.der), SystemTime::now());
    let stale = vec![pki.update_ca.crl(&[], ago(3 * DAY), ago(DAY))];
    let err = verify_detached(&sig, FIRMWARE, &Policy { crls: &stale, ..policy(&anchors) }).unwrap_err();
    assert!(matches!(err, VerifyError::RevocationUnknown(_)), "{err}");
    // At a time before its nextUpdate the same CRL is fresh.
    verify_detached(&sig, FIRMWARE, &Policy { crls: &stale, time: VerifyTime::At(ago(2 * DAY)), ..policy(&anchors) })
        .unwrap();
}

#[test]
fn crl_signed_by_the_wrong_key_is_revocation_unknown() {
    // A CRL naming the Update Authority as issuer but signed by another key: its
    // status must not be believed.
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    let forged_ca = Ca {
        der: pki.update_ca.der.clone(),
        pem: String::new(),
        issuer: rcgen::Issuer::new(rcgen::CertificateParams::default(), HsmKey::new(pki.device_ca.key.clone())),
        key: pki.device_ca.key.clone(),
    };
    let forged = vec![forged_ca.crl(&[], ago(60), ahead(DAY))];
    let err = verify_detached(&sig, FIRMWARE, &Policy { crls: &forged, ..policy(&anchors) }).unwrap_err();
    assert!(matches!(err, VerifyError::RevocationUnknown(_)), "{err}");
}

#[test]
fn garbage_crl_in_policy_is_invalid_crl() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    let junk = vec![b"not a crl".to_vec()];
    let err = verify_detached(&sig, FIRMWARE, &Policy { crls: &junk, ..policy(&anchors) }).unwrap_err();
    assert!(matches!(err, VerifyError::InvalidCrl(_)), "{err}");
}

#[test]
fn expired_leaf_is_expired_now_but_accepted_inside_its_validity() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let spec = LeafSpec { not_before: ago(60 * DAY), not_after: ago(30 * DAY), ..LeafSpec::code_signing("Old Signer") };
    let (key, cert) = pki.key_and_cert("old", KeyAlgorithm::EcdsaP256, &pki.update_ca, &spec);
    // Signed while the certificate was valid.
    let sig = sign_with(key.as_ref(), &cert, std::slice::from_ref(&pki.update_ca.der), ago(45 * DAY));

    let err = verify_detached(&sig, FIRMWARE, &policy(&anchors)).unwrap_err();
    match err {
        VerifyError::Expired { not_after, .. } => {
            let expect = x509_cert::Certificate::from_der(&cert).unwrap().tbs_certificate.validity.not_after;
            assert_eq!(not_after, expect.to_system_time());
        }
        other => panic!("expected Expired, got {other}"),
    }
    verify_detached(&sig, FIRMWARE, &Policy { time: VerifyTime::At(ago(40 * DAY)), ..policy(&anchors) }).unwrap();
    verify_detached(&sig, FIRMWARE, &Policy { time: VerifyTime::SigningTime, ..policy(&anchors) }).unwrap();

    let err = verify_detached(&sig, FIRMWARE, &Policy { time: VerifyTime::At(ago(90 * DAY)), ..policy(&anchors) })
        .unwrap_err();
    assert!(matches!(err, VerifyError::NotYetValid { .. }), "{err}");
}

#[test]
fn signing_time_outside_validity_is_refused_at_signing_time() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    // Claimed signing time after the certificate expired.
    let spec = LeafSpec { not_before: ago(60 * DAY), not_after: ago(30 * DAY), ..LeafSpec::code_signing("Old Signer") };
    let (key, cert) = pki.key_and_cert("old", KeyAlgorithm::EcdsaP256, &pki.update_ca, &spec);
    let sig = sign_with(key.as_ref(), &cert, std::slice::from_ref(&pki.update_ca.der), ago(DAY));
    let err =
        verify_detached(&sig, FIRMWARE, &Policy { time: VerifyTime::SigningTime, ..policy(&anchors) }).unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
}

#[test]
fn missing_signing_time_is_refused_only_when_the_policy_needs_it() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = resign_attrs(&pki.sign(FIRMWARE), pki.signer.as_ref(), |attrs| {
        attrs.retain(|a| a.oid != const_oid::db::rfc5911::ID_SIGNING_TIME)
    });
    let v = verify_detached(&sig, FIRMWARE, &policy(&anchors)).unwrap();
    assert_eq!(v.signing_time, None);
    let err =
        verify_detached(&sig, FIRMWARE, &Policy { time: VerifyTime::SigningTime, ..policy(&anchors) }).unwrap_err();
    assert!(matches!(err, VerifyError::MissingSigningTime), "{err}");
}

#[test]
fn wrong_signed_content_type_is_refused() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = resign_attrs(&pki.sign(FIRMWARE), pki.signer.as_ref(), |attrs| {
        for a in attrs.iter_mut() {
            if a.oid == const_oid::db::rfc5911::ID_CONTENT_TYPE {
                let oid = const_oid::db::rfc5911::ID_SIGNED_DATA;
                a.values = SetOfVec::try_from(vec![Any::encode_from(&oid).unwrap()]).unwrap();
            }
        }
    });
    let err = verify_detached(&sig, FIRMWARE, &policy(&anchors)).unwrap_err();
    assert!(matches!(err, VerifyError::WrongContentType(_)), "{err}");
}

#[test]
fn class_not_in_scope_is_refused() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    verify_detached(&sig, FIRMWARE, &Policy { device_class: Some(class(8)), ..policy(&anchors) }).unwrap();
    let err =
        verify_detached(&sig, FIRMWARE, &Policy { device_class: Some(class(9)), ..policy(&anchors) }).unwrap_err();
    match err {
        VerifyError::ClassNotInScope { wanted, have } => {
            assert_eq!(wanted, class(9));
            assert_eq!(have, vec![class(7), class(8)]);
        }
        other => panic!("expected ClassNotInScope, got {other}"),
    }
    // A signer certificate without certificatePolicies is in no class.
    let spec = LeafSpec { classes: vec![], ..LeafSpec::code_signing("Unscoped") };
    let (key, cert) = pki.key_and_cert("unscoped", KeyAlgorithm::EcdsaP256, &pki.update_ca, &spec);
    let sig = sign_with(key.as_ref(), &cert, std::slice::from_ref(&pki.update_ca.der), SystemTime::now());
    let err =
        verify_detached(&sig, FIRMWARE, &Policy { device_class: Some(class(7)), ..policy(&anchors) }).unwrap_err();
    assert!(matches!(err, VerifyError::ClassNotInScope { .. }), "{err}");
}

#[test]
fn signer_count_must_be_one() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    let none = edit_signed_data(&sig, |sd| sd.signer_infos = SignerInfos::try_from(vec![]).unwrap());
    assert!(matches!(verify_detached(&none, FIRMWARE, &policy(&anchors)), Err(VerifyError::NoSigner)));

    let other = sign_detached(FIRMWARE, pki.signer.as_ref(), &pki.signer_cert, &[], ago(3600)).unwrap();
    let other_si = {
        let ci = ContentInfo::from_der(&other).unwrap();
        let sd: SignedData = ci.content.decode_as().unwrap();
        sd.signer_infos.0.as_slice()[0].clone()
    };
    let two = edit_signed_data(&sig, |sd| {
        let mut infos: Vec<_> = sd.signer_infos.0.iter().cloned().collect();
        infos.push(other_si);
        sd.signer_infos = SignerInfos::try_from(infos).unwrap();
    });
    assert!(matches!(verify_detached(&two, FIRMWARE, &policy(&anchors)), Err(VerifyError::MultipleSigners(2))));
}

#[test]
fn missing_signer_certificate_is_reported() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    let leaf = x509_cert::Certificate::from_der(&pki.signer_cert).unwrap();
    let stripped = edit_signed_data(&sig, |sd| {
        let kept: Vec<_> = sd
            .certificates
            .take()
            .unwrap()
            .0
            .into_vec()
            .into_iter()
            .filter(|c| !matches!(c, cms::cert::CertificateChoices::Certificate(x) if *x == leaf))
            .collect();
        sd.certificates = Some(cms::signed_data::CertificateSet::try_from(kept).unwrap());
    });
    let err = verify_detached(&stripped, FIRMWARE, &policy(&anchors)).unwrap_err();
    assert!(matches!(err, VerifyError::SignerCertificateMissing), "{err}");
}

#[test]
fn malformed_inputs_are_malformed_not_panics() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    let p = policy(&anchors);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("whitespace", b" \n\t".to_vec()),
        ("garbage", b"this is not DER at all".to_vec()),
        ("truncated", sig[..sig.len() / 2].to_vec()),
        ("one byte short", sig[..sig.len() - 1].to_vec()),
        ("trailing byte", [sig.as_slice(), &[0]].concat()),
        ("PEM junk", b"-----BEGIN CMS-----\n!!!! not base64 !!!!\n-----END CMS-----\n".to_vec()),
        ("PEM wrong label", pem("CERTIFICATE", &pki.signer_cert).into_bytes()),
        ("a certificate", pki.signer_cert.clone()),
        ("huge length", vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x06]),
    ];
    for (name, input) in cases {
        match verify_detached(&input, FIRMWARE, &p) {
            Err(VerifyError::Malformed(_)) => {}
            other => panic!("{name}: expected Malformed, got {other:?}"),
        }
    }
    // Every truncation of a valid signature is refused cleanly.
    for n in 0..sig.len() {
        assert!(verify_detached(&sig[..n], FIRMWARE, &p).is_err(), "truncated to {n}");
    }
}

#[test]
fn embedded_content_is_not_a_detached_signature() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = edit_signed_data(&pki.sign(FIRMWARE), |sd| {
        sd.encap_content_info.econtent =
            Some(Any::encode_from(&der::asn1::OctetString::new(FIRMWARE).unwrap()).unwrap());
    });
    let err = verify_detached(&sig, FIRMWARE, &policy(&anchors)).unwrap_err();
    assert!(matches!(err, VerifyError::Malformed(ref m) if m.contains("detached")), "{err}");
}

#[test]
fn oversized_signature_is_too_large() {
    let anchors = vec![];
    let big = vec![0x30; MAX_SIGNATURE_LEN + 1];
    let err = verify_detached(&big, FIRMWARE, &policy(&anchors)).unwrap_err();
    assert!(matches!(err, VerifyError::TooLarge { len, .. } if len == MAX_SIGNATURE_LEN + 1), "{err}");
}

#[test]
fn no_or_bad_trust_anchor_is_a_policy_error() {
    let pki = Pki::new();
    let sig = pki.sign(FIRMWARE);
    let err = verify_detached(&sig, FIRMWARE, &policy(&[])).unwrap_err();
    assert!(matches!(err, VerifyError::InvalidTrustAnchor(_)), "{err}");
    let junk = vec![b"junk".to_vec()];
    let err = verify_detached(&sig, FIRMWARE, &policy(&junk)).unwrap_err();
    assert!(matches!(err, VerifyError::InvalidTrustAnchor(_)), "{err}");
}

#[test]
fn content_read_error_is_io() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    let pki = Pki::new();
    let anchors = pki.anchors();
    let sig = pki.sign(FIRMWARE);
    let err = verify_detached(&sig, Failing, &policy(&anchors)).unwrap_err();
    assert!(matches!(err, VerifyError::Io(_)), "{err}");
}

#[test]
fn large_content_is_streamed() {
    // 64 MiB generated on the fly: signing and verifying never hold it in memory.
    let pki = Pki::new();
    let anchors = pki.anchors();
    let len = 64 * 1024 * 1024;
    let image = || io::repeat(0xa5).take(len);
    let sig = sign_detached(
        image(),
        pki.signer.as_ref(),
        &pki.signer_cert,
        std::slice::from_ref(&pki.update_ca.der),
        SystemTime::now(),
    )
    .unwrap();
    verify_detached(&sig, image(), &policy(&anchors)).unwrap();
    let err = verify_detached(&sig, io::repeat(0xa5).take(len - 1), &policy(&anchors)).unwrap_err();
    assert!(matches!(err, VerifyError::DigestMismatch), "{err}");
}

#[test]
fn p384_and_ed25519_and_rsa_signers_round_trip() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    let chain = std::slice::from_ref(&pki.update_ca.der);
    for (label, alg, digest) in [
        ("p384", KeyAlgorithm::EcdsaP384, const_oid::db::rfc5912::ID_SHA_384),
        ("ed25519", KeyAlgorithm::Ed25519, const_oid::db::rfc5912::ID_SHA_512),
        ("rsa", KeyAlgorithm::Rsa3072, const_oid::db::rfc5912::ID_SHA_256),
    ] {
        let (key, cert) = pki.key_and_cert(label, alg, &pki.update_ca, &LeafSpec::code_signing(label));
        let sig = sign_with(key.as_ref(), &cert, chain, SystemTime::now());
        let ci = ContentInfo::from_der(&sig).unwrap();
        let sd: SignedData = ci.content.decode_as().unwrap();
        assert_eq!(sd.signer_infos.0.as_slice()[0].digest_alg.oid, digest, "{label}");
        verify_detached(&sig, FIRMWARE, &policy(&anchors)).unwrap_or_else(|e| panic!("{label}: {e}"));
        let err = verify_detached(&sig, &b"other"[..], &policy(&anchors)).unwrap_err();
        assert!(matches!(err, VerifyError::DigestMismatch), "{label}: {err}");
    }
}

#[test]
fn signing_with_a_key_that_is_not_the_certificates_is_refused() {
    let pki = Pki::new();
    let (other, _) = pki.key_and_cert("other", KeyAlgorithm::EcdsaP256, &pki.update_ca, &LeafSpec::code_signing("O"));
    let err = sign_detached(FIRMWARE, other.as_ref(), &pki.signer_cert, &[], SystemTime::now()).unwrap_err();
    assert!(matches!(err, SignError::KeyMismatch), "{err}");
    let err = sign_detached(FIRMWARE, pki.signer.as_ref(), b"junk", &[], SystemTime::now()).unwrap_err();
    assert!(matches!(err, SignError::BadCertificate(_)), "{err}");
}

#[test]
fn chain_order_and_duplicates_do_not_matter() {
    let pki = Pki::new();
    let anchors = pki.anchors();
    // Chain given with the leaf and root repeated: deduplicated, still verifies.
    let chain = vec![
        pki.update_ca.der.clone(),
        pki.signer_cert.clone(),
        pki.update_root.der.clone(),
        pki.update_ca.der.clone(),
    ];
    let sig = sign_with(pki.signer.as_ref(), &pki.signer_cert, &chain, SystemTime::now());
    let ci = ContentInfo::from_der(&sig).unwrap();
    let sd: SignedData = ci.content.decode_as().unwrap();
    assert_eq!(sd.certificates.unwrap().0.len(), 3);
    verify_detached(&sig, FIRMWARE, &policy(&anchors)).unwrap();
    // Without the intermediate the chain cannot be built.
    let sig = sign_with(pki.signer.as_ref(), &pki.signer_cert, &[], SystemTime::now());
    let err = verify_detached(&sig, FIRMWARE, &policy(&anchors)).unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedChain(_)), "{err}");
}
