//! [`verify_detached`]: parse the CMS structure, then chain + EKU + CRL + time
//! (webpki), the SignerInfo signature, the device class and finally the content digest.

use std::borrow::Cow;
use std::io::Read;
use std::time::{Duration, SystemTime};

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use const_oid::db::{rfc5280, rfc5911};
use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::{Decode, Encode};
use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, KeyUsage, OwnedCertRevocationList, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::{CertificatePolicies, ExtendedKeyUsage, SubjectKeyIdentifier};
use x509_cert::time::Time;
use x509_cert::Certificate;

use crate::alg::{verification_alg, DigestAlg};
use crate::{LogPolicy, Policy, Verified, VerifyError, VerifyTime, CODE_SIGNING, MAX_SIGNATURE_LEN};

/// Content octets of the id-kp-codeSigning OID, as webpki's `KeyUsage` wants them
/// (a test checks they equal [`CODE_SIGNING`]).
const CODE_SIGNING_OID_VALUE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// The log action that records a certificate's issuance.
const ISSUANCE_ACTION: &str = "certificate.issue";

/// PEM labels accepted for the signature: `CMS` (openssl cms -outform PEM) and `PKCS7`.
const PEM_LABELS: [&str; 2] = ["CMS", "PKCS7"];

/// Verifies a detached CMS signature over `content` against `policy`.
///
/// `signature` is a DER or PEM (`CMS` / `PKCS7` label) ContentInfo of type SignedData,
/// at most [`MAX_SIGNATURE_LEN`] bytes. `content` is read to the end, streaming, and only
/// after the signature, the chain and the policy have been accepted — a refused update
/// costs no hashing.
///
/// # Errors
/// One [`VerifyError`] variant per refused rule; see the [crate docs](crate) for the
/// rules.
pub fn verify_detached(signature: &[u8], content: impl Read, policy: &Policy<'_>) -> Result<Verified, VerifyError> {
    verify_detached_logged(signature, content, None, policy)
}

/// [`verify_detached`] with the tlog-proof of the signer certificate's issuance
/// (C2SP tlog-proof text), for a policy with [`Policy::log`] set (rule 7 of the
/// [crate docs](crate)). The proof is ignored when the policy sets no log.
///
/// # Errors
/// As [`verify_detached`]; [`VerifyError::NotLogged`] if the log is required and
/// `proof` is missing or does not prove the signer certificate's issuance.
pub fn verify_detached_logged(
    signature: &[u8],
    content: impl Read,
    proof: Option<&str>,
    policy: &Policy<'_>,
) -> Result<Verified, VerifyError> {
    if signature.len() > MAX_SIGNATURE_LEN {
        return Err(VerifyError::TooLarge { len: signature.len(), max: MAX_SIGNATURE_LEN });
    }
    let der = signature_der(signature)?;
    let parsed = Parsed::from_der(&der)?;

    let at = match policy.time {
        VerifyTime::Now => SystemTime::now(),
        VerifyTime::SigningTime => parsed.signing_time.ok_or(VerifyError::MissingSigningTime)?,
        VerifyTime::At(t) => t,
    };
    check_chain(&parsed, policy, at)?;
    check_signer_usage(&parsed.signer_cert)?;

    // The signature over the signed attributes, with the (now trusted) signer key.
    let alg = verification_alg(
        parsed.signature_algorithm,
        parsed.digest,
        &parsed.signer_cert.tbs_certificate.subject_public_key_info.algorithm,
    )?;
    let signer_der = CertificateDer::from(parsed.signer_der.as_slice());
    let ee = EndEntityCert::try_from(&signer_der).map_err(|e| chain_error(e, at))?;
    ee.verify_signature(alg, &parsed.signed_attrs_der, &parsed.signature).map_err(|e| match e {
        webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => VerifyError::UnsupportedAlgorithm(
            format!("signature algorithm {} does not fit the signer's key", parsed.signature_algorithm),
        ),
        _ => VerifyError::BadSignature,
    })?;

    let device_classes = certificate_policies(&parsed.signer_cert)?;
    if let Some(wanted) = policy.device_class {
        if !device_classes.contains(&wanted) {
            return Err(VerifyError::ClassNotInScope { wanted, have: device_classes });
        }
    }

    if let Some(log) = &policy.log {
        check_logged(&parsed.signer_der, proof, log)?;
    }

    // Last, the expensive part: the content.
    let digest = parsed.digest.digest_reader(content)?;
    if digest.as_ref() != parsed.message_digest.as_slice() {
        return Err(VerifyError::DigestMismatch);
    }

    let tbs = &parsed.signer_cert.tbs_certificate;
    Ok(Verified {
        signer_subject: tbs.subject.to_string(),
        signer_serial_hex: serial_hex(tbs.serial_number.as_bytes()),
        signing_time: parsed.signing_time,
        device_classes,
        not_after: tbs.validity.not_after.to_system_time(),
    })
}

fn malformed(msg: impl Into<String>) -> VerifyError {
    VerifyError::Malformed(msg.into())
}

/// DER of the signature: PEM is decoded, anything else is taken as DER.
fn signature_der(input: &[u8]) -> Result<Cow<'_, [u8]>, VerifyError> {
    let trimmed = input.trim_ascii();
    if trimmed.is_empty() {
        return Err(malformed("the signature is empty"));
    }
    if !trimmed.starts_with(b"-----BEGIN") {
        return Ok(Cow::Borrowed(input));
    }
    let (label, der) = der::pem::decode_vec(trimmed).map_err(|e| malformed(format!("bad PEM: {e}")))?;
    if !PEM_LABELS.contains(&label) {
        return Err(malformed(format!("PEM label '{label}' is not CMS or PKCS7")));
    }
    Ok(Cow::Owned(der))
}

/// What the rest of verification needs from the CMS structure.
struct Parsed {
    /// DER of the signer's certificate.
    signer_der: Vec<u8>,
    signer_cert: Certificate,
    /// DER of the other certificates (candidate intermediates).
    other_certs: Vec<Vec<u8>>,
    digest: DigestAlg,
    signature_algorithm: ObjectIdentifier,
    signature: Vec<u8>,
    /// DER of the signed attributes as a SET OF (RFC 5652 §5.4: what is signed).
    signed_attrs_der: Vec<u8>,
    message_digest: Vec<u8>,
    signing_time: Option<SystemTime>,
}

impl Parsed {
    fn from_der(der: &[u8]) -> Result<Self, VerifyError> {
        let ci = ContentInfo::from_der(der).map_err(|e| malformed(format!("not a CMS ContentInfo: {e}")))?;
        if ci.content_type != rfc5911::ID_SIGNED_DATA {
            return Err(malformed(format!("content type {} is not signedData", ci.content_type)));
        }
        let sd: SignedData = ci.content.decode_as().map_err(|e| malformed(format!("bad SignedData: {e}")))?;
        if sd.encap_content_info.econtent_type != rfc5911::ID_DATA {
            return Err(VerifyError::WrongContentType(sd.encap_content_info.econtent_type));
        }
        if sd.encap_content_info.econtent.is_some() {
            return Err(malformed("the content is embedded; a detached signature is expected"));
        }
        let signer = match sd.signer_infos.0.as_slice() {
            [] => return Err(VerifyError::NoSigner),
            [one] => one,
            more => return Err(VerifyError::MultipleSigners(more.len())),
        };

        // Certificates: the signer's (found by the SignerInfo's sid), and the rest as
        // candidate intermediates, as DER for webpki. Certificates are re-encoded from
        // the parsed form: `der` decodes strict DER, so a DER certificate comes back
        // byte for byte; one that does not (e.g. an unsorted SET in a Name, which `der`
        // re-sorts) fails its signature check in webpki — a refusal, never a pass.
        let mut signer_found = None;
        let mut other_certs = Vec::new();
        for choice in sd.certificates.iter().flat_map(|set| set.0.iter()) {
            if let CertificateChoices::Certificate(cert) = choice {
                let der = cert.to_der().map_err(|e| malformed(format!("re-encoding a certificate: {e}")))?;
                if signer_found.is_none() && signer_matches(&signer.sid, cert) {
                    signer_found = Some((der, cert.clone()));
                } else {
                    other_certs.push(der);
                }
            }
        }
        let (signer_der, signer_cert) = signer_found.ok_or(VerifyError::SignerCertificateMissing)?;

        let digest = DigestAlg::from_oid(signer.digest_alg.oid)
            .ok_or_else(|| VerifyError::UnsupportedAlgorithm(format!("digest algorithm {}", signer.digest_alg.oid)))?;

        let attrs = signer.signed_attrs.as_ref().ok_or_else(|| {
            malformed("no signed attributes (a detached update signature must sign contentType and messageDigest)")
        })?;
        let mut content_type = None;
        let mut message_digest = None;
        let mut signing_time = None;
        for attr in attrs.iter() {
            let slot = match attr.oid {
                rfc5911::ID_CONTENT_TYPE => &mut content_type,
                rfc5911::ID_MESSAGE_DIGEST => &mut message_digest,
                rfc5911::ID_SIGNING_TIME => &mut signing_time,
                _ => continue,
            };
            let [value] = attr.values.as_slice() else {
                return Err(malformed(format!("attribute {} must have exactly one value", attr.oid)));
            };
            if slot.replace(value).is_some() {
                return Err(malformed(format!("attribute {} appears more than once", attr.oid)));
            }
        }
        let content_type: ObjectIdentifier = content_type
            .ok_or_else(|| malformed("the contentType signed attribute is missing"))?
            .decode_as()
            .map_err(|e| malformed(format!("contentType attribute: {e}")))?;
        if content_type != rfc5911::ID_DATA {
            return Err(VerifyError::WrongContentType(content_type));
        }
        let message_digest: OctetString = message_digest
            .ok_or_else(|| malformed("the messageDigest signed attribute is missing"))?
            .decode_as()
            .map_err(|e| malformed(format!("messageDigest attribute: {e}")))?;
        let signing_time = match signing_time {
            None => None,
            Some(any) => {
                // Time is a CHOICE: decode from the full TLV.
                let tlv = any.to_der().map_err(|e| malformed(format!("signingTime attribute: {e}")))?;
                let time = Time::from_der(&tlv).map_err(|e| malformed(format!("signingTime attribute: {e}")))?;
                Some(time.to_system_time())
            }
        };
        // The signed bytes are the attributes' DER with the SET OF tag (RFC 5652 §5.4),
        // not the [0] IMPLICIT form they have inside the SignerInfo. `der` decodes a SET
        // OF into sorted order, so this is the canonical DER — as OpenSSL re-encodes it.
        let signed_attrs_der = attrs.to_der().map_err(|e| malformed(format!("re-encoding signed attributes: {e}")))?;

        Ok(Parsed {
            signer_der,
            signer_cert,
            other_certs,
            digest,
            signature_algorithm: signer.signature_algorithm.oid,
            signature: signer.signature.as_bytes().to_vec(),
            signed_attrs_der,
            message_digest: message_digest.as_bytes().to_vec(),
            signing_time,
        })
    }
}

fn signer_matches(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    let tbs = &cert.tbs_certificate;
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            ias.issuer == tbs.issuer && ias.serial_number.as_bytes() == tbs.serial_number.as_bytes()
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => tbs
            .extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id == rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER)
            .any(|e| SubjectKeyIdentifier::from_der(e.extn_value.as_bytes()).is_ok_and(|own| own == *ski)),
    }
}

fn unix_time(t: SystemTime) -> UnixTime {
    // Before 1970 no certificate is valid: time zero gives NotYetValid.
    UnixTime::since_unix_epoch(t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO))
}

fn system_time(t: UnixTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.as_secs())
}

/// Chain to an anchor, validity at `at`, EKU, revocation — webpki.
fn check_chain(parsed: &Parsed, policy: &Policy<'_>, at: SystemTime) -> Result<(), VerifyError> {
    if policy.trust_anchors.is_empty() {
        return Err(VerifyError::InvalidTrustAnchor("the policy has no trust anchors".into()));
    }
    let anchor_ders: Vec<CertificateDer<'_>> =
        policy.trust_anchors.iter().map(|d| CertificateDer::from(d.as_slice())).collect();
    let anchors = anchor_ders
        .iter()
        .enumerate()
        .map(|(i, d)| {
            webpki::anchor_from_trusted_cert(d)
                .map_err(|e| VerifyError::InvalidTrustAnchor(format!("trust anchor #{i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let crls = newest_crls(policy.crls)?
        .into_iter()
        .map(|(i, d)| {
            OwnedCertRevocationList::from_der(d)
                .map(CertRevocationList::from)
                .map_err(|e| VerifyError::InvalidCrl(format!("CRL #{i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
    let revocation = match RevocationOptionsBuilder::new(&crl_refs) {
        // No CRLs in the policy: no revocation checking.
        Err(_) => None,
        Ok(builder) => Some(
            builder
                .with_depth(RevocationCheckDepth::EndEntity)
                .with_status_policy(UnknownStatusPolicy::Deny)
                .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                .build(),
        ),
    };

    let intermediates: Vec<CertificateDer<'_>> =
        parsed.other_certs.iter().map(|d| CertificateDer::from(d.as_slice())).collect();
    let signer_der = CertificateDer::from(parsed.signer_der.as_slice());
    let ee = EndEntityCert::try_from(&signer_der).map_err(|e| chain_error(e, at))?;
    // webpki applies the EKU rule to every certificate of the path, intermediates
    // included: `required` would refuse an Update Authority CA without EKU, so the
    // chain uses `required_if_present` and the signer's EKU is required explicitly in
    // `check_signer_usage`.
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        unix_time(at),
        KeyUsage::required_if_present(CODE_SIGNING_OID_VALUE),
        revocation,
        None,
    )
    .map(|_| ())
    .map_err(|e| chain_error(e, at))
}

/// The newest CRL (by thisUpdate) per issuer and issuingDistributionPoint, with its
/// index in the policy.
///
/// webpki uses the *first* CRL that is authoritative for a certificate. Handed an old
/// and a new CRL of the same issuer, it would believe the old one if it came first —
/// so whoever assembles the CRL list (an update bundle, a cache) could hide a fresh
/// revocation behind an older, still unexpired CRL. Only the newest one is passed on.
fn newest_crls(crls: &[Vec<u8>]) -> Result<Vec<(usize, &[u8])>, VerifyError> {
    struct Chosen<'a> {
        /// issuer Name DER ‖ IDP extnValue (the Name is a TLV, so this is unambiguous).
        scope: Vec<u8>,
        this_update: SystemTime,
        index: usize,
        der: &'a [u8],
    }
    let mut chosen: Vec<Chosen<'_>> = Vec::new();
    for (index, der) in crls.iter().enumerate() {
        let invalid = |e: der::Error| VerifyError::InvalidCrl(format!("CRL #{index}: {e}"));
        let crl = CertificateList::from_der(der).map_err(invalid)?;
        let tbs = &crl.tbs_cert_list;
        let mut scope = tbs.issuer.to_der().map_err(invalid)?;
        if let Some(idp) =
            tbs.crl_extensions.iter().flatten().find(|e| e.extn_id == rfc5280::ID_CE_ISSUING_DISTRIBUTION_POINT)
        {
            scope.extend_from_slice(idp.extn_value.as_bytes());
        }
        let this_update = tbs.this_update.to_system_time();
        match chosen.iter_mut().find(|c| c.scope == scope) {
            None => chosen.push(Chosen { scope, this_update, index, der }),
            Some(c) if this_update > c.this_update => {
                c.this_update = this_update;
                c.index = index;
                c.der = der;
            }
            Some(c) if this_update == c.this_update && c.der != der.as_slice() => {
                return Err(VerifyError::InvalidCrl(format!(
                    "CRLs #{} and #{index} differ but have the same issuer, scope and thisUpdate",
                    c.index
                )))
            }
            Some(_) => {}
        }
    }
    Ok(chosen.into_iter().map(|c| (c.index, c.der)).collect())
}

/// One webpki error → the rule it broke.
// The deprecated unit variants are still produced by webpki's CRL code paths.
#[allow(deprecated)]
fn chain_error(e: webpki::Error, at: SystemTime) -> VerifyError {
    use webpki::Error as W;
    match e {
        W::CertExpired { not_after, .. } => VerifyError::Expired { not_after: system_time(not_after), at },
        W::CertNotValidYet { not_before, .. } => VerifyError::NotYetValid { not_before: system_time(not_before), at },
        W::CertRevoked => VerifyError::Revoked,
        W::UnknownRevocationStatus => {
            VerifyError::RevocationUnknown("no CRL in the policy is from the signer certificate's issuer".into())
        }
        W::CrlExpired { next_update, .. } => VerifyError::RevocationUnknown(format!(
            "the issuer's CRL is stale (nextUpdate {})",
            crate::fmt_time(system_time(next_update))
        )),
        W::InvalidCrlSignatureForPublicKey
        | W::UnsupportedCrlSignatureAlgorithm
        | W::UnsupportedCrlSignatureAlgorithmContext(_)
        | W::UnsupportedCrlSignatureAlgorithmForPublicKey
        | W::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_)
        | W::IssuerNotCrlSigner => VerifyError::RevocationUnknown(format!("the issuer's CRL is not usable: {e}")),
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) | W::EmptyEkuExtension => {
            VerifyError::NotCodeSigning(format!("a certificate of the chain has no codeSigning EKU ({e})"))
        }
        other => VerifyError::UntrustedChain(other.to_string()),
    }
}

/// The signer certificate must name codeSigning explicitly (webpki's chain rule lets a
/// certificate without EKU through) and, if it has keyUsage, allow digitalSignature.
fn check_signer_usage(cert: &Certificate) -> Result<(), VerifyError> {
    let exts = cert.tbs_certificate.extensions.as_deref().unwrap_or_default();
    let eku = exts
        .iter()
        .find(|e| e.extn_id == rfc5280::ID_CE_EXT_KEY_USAGE)
        .ok_or_else(|| VerifyError::NotCodeSigning("the signer certificate has no extendedKeyUsage".into()))?;
    let eku = ExtendedKeyUsage::from_der(eku.extn_value.as_bytes())
        .map_err(|e| malformed(format!("signer certificate extendedKeyUsage: {e}")))?;
    if !eku.0.contains(&CODE_SIGNING) {
        return Err(VerifyError::NotCodeSigning("codeSigning is not in the signer's extendedKeyUsage".into()));
    }
    if let Some(ku) = exts.iter().find(|e| e.extn_id == rfc5280::ID_CE_KEY_USAGE) {
        let ku = x509_cert::ext::pkix::KeyUsage::from_der(ku.extn_value.as_bytes())
            .map_err(|e| malformed(format!("signer certificate keyUsage: {e}")))?;
        if !ku.digital_signature() {
            return Err(VerifyError::NotCodeSigning("the signer's keyUsage lacks digitalSignature".into()));
        }
    }
    Ok(())
}

/// The policy OIDs of the signer certificate (its device classes).
fn certificate_policies(cert: &Certificate) -> Result<Vec<ObjectIdentifier>, VerifyError> {
    let mut out = Vec::new();
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        if ext.extn_id == rfc5280::ID_CE_CERTIFICATE_POLICIES {
            let policies = CertificatePolicies::from_der(ext.extn_value.as_bytes())
                .map_err(|e| malformed(format!("signer certificate certificatePolicies: {e}")))?;
            out.extend(policies.0.into_iter().map(|p| p.policy_identifier));
        }
    }
    Ok(out)
}

/// Rule 7: `proof` shows the issuance of the certificate `signer_der` in the log.
fn check_logged(signer_der: &[u8], proof: Option<&str>, log: &LogPolicy<'_>) -> Result<(), VerifyError> {
    let not_logged = |why: String| VerifyError::NotLogged(why);
    let text = proof.ok_or_else(|| not_logged("no tlog-proof was given".into()))?;
    let proof = tlog::TlogProof::parse(text).map_err(|e| not_logged(format!("the tlog-proof does not parse: {e}")))?;
    let extra =
        proof.extra.as_deref().ok_or_else(|| not_logged("the tlog-proof carries no log entry (extra)".into()))?;
    let entry: serde_json::Value = serde_json::from_slice(extra)
        .map_err(|e| not_logged(format!("the proof's log entry is not a JSON audit entry: {e}")))?;
    if entry["action"].as_str() != Some(ISSUANCE_ACTION) {
        return Err(not_logged(format!("the proof's log entry is not a {ISSUANCE_ACTION} entry")));
    }
    // `details` is the JSON object as the string it was logged as.
    let details: serde_json::Value = entry["details"]
        .as_str()
        .and_then(|d| serde_json::from_str(d).ok())
        .ok_or_else(|| not_logged("the proof's log entry has no JSON details".into()))?;
    let fingerprint = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, signer_der));
    if details["fingerprint"].as_str() != Some(fingerprint.as_str()) {
        return Err(not_logged("the proof's log entry is for another certificate".into()));
    }
    if log.verifiers.is_empty() {
        return Err(not_logged("the policy trusts no log key".into()));
    }
    let leaf = tlog::leaf_hash(extra);
    // The origin is the key's name: each key vouches only for its own log.
    let mut last = None;
    for v in log.verifiers {
        match proof.verify(&leaf, std::slice::from_ref(v), v.name()) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    let e = last.map_or_else(String::new, |e| e.to_string());
    Err(not_logged(format!("the inclusion proof does not verify under a trusted log key: {e}")))
}

/// Serial as lowercase hex without the DER sign byte.
fn serial_hex(serial: &[u8]) -> String {
    match serial {
        [0, rest @ ..] if !rest.is_empty() => hex::encode(rest),
        s => hex::encode(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_signing_value_matches_the_oid() {
        assert_eq!(CODE_SIGNING_OID_VALUE, CODE_SIGNING.as_bytes());
    }

    #[test]
    fn serial_hex_drops_only_the_sign_byte() {
        assert_eq!(serial_hex(&[0x00, 0x9f, 0x01]), "9f01");
        assert_eq!(serial_hex(&[0x01, 0x02]), "0102");
        assert_eq!(serial_hex(&[0x00]), "00");
    }
}
