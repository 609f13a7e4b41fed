//! Certificate revocation lists (RFC 5280 §5): one encoder for complete ("full") and
//! delta CRLs.
//!
//! The encoding follows x509-cert's `TbsCertList` field by field — the header fields
//! and the CRL extensions are x509-cert/der types — while `revokedCertificates` is
//! streamed straight into the output buffer (sized exactly in a first pass), so a CRL of
//! a million entries needs no per-entry allocation and one buffer of its own size. The
//! tests check the bytes against `TbsCertList::to_der()`.
//!
//! RFC 5280 choices made here:
//! * version v2; `signature` is the signer's AlgorithmIdentifier;
//! * times: UTCTime before 2050, GeneralizedTime from 2050 (§5.1.2.4), whole seconds;
//! * `revokedCertificates` is omitted when there are no entries (§5.1.2.6);
//! * entry extension reasonCode only for reasons other than `unspecified` (§5.3.1);
//!   `removeFromCRL` only in delta CRLs;
//! * CRL extensions, in this order: authorityKeyIdentifier (keyIdentifier), cRLNumber,
//!   deltaCRLIndicator (critical, delta only), issuingDistributionPoint (critical, when
//!   given), freshestCRL (complete CRLs only, when given).

use std::time::SystemTime;

use const_oid::db::rfc5280::{
    ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_CRL_DISTRIBUTION_POINTS, ID_CE_CRL_NUMBER, ID_CE_DELTA_CRL_INDICATOR,
    ID_CE_FRESHEST_CRL, ID_CE_ISSUING_DISTRIBUTION_POINT,
};
use const_oid::ObjectIdentifier;
use der::asn1::{Ia5String, OctetString, Uint};
use der::{Decode, Encode};
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::AuthorityKeyIdentifier;
use x509_cert::ext::Extension;
use x509_cert::name::Name;

use crate::derw::{self, push_header, TAG_BIT_STRING, TAG_INTEGER, TAG_SEQUENCE};
pub use crate::Reason;

/// Largest CRL this encoder produces (what `der` 0.7 can decode again: 256 MiB).
pub const MAX_CRL_LEN: usize = 0x0fff_ffff;

/// One revoked certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The serial number as DER INTEGER content octets (positive, minimal, at most 20
    /// octets of magnitude — one more octet allowed for a leading 0x00 sign byte).
    pub serial: Vec<u8>,
    /// When the certificate was revoked (whole seconds are encoded).
    pub revoked_at: SystemTime,
    /// The reason; `None` and `Some(Reason::Unspecified)` both encode no reasonCode.
    pub reason: Option<Reason>,
}

/// Complete or delta CRL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrlKind {
    /// A complete CRL (may point to its deltas with `freshest_crl_url`).
    Full,
    /// A delta CRL: carries the critical deltaCRLIndicator naming the complete CRL it
    /// updates. Entries are the changes since that base (`RemoveFromCrl` to un-hold).
    Delta {
        /// The cRLNumber of the complete CRL this delta applies to.
        base_crl_number: u64,
    },
}

/// The issuingDistributionPoint extension of a partitioned (sharded) CRL, always
/// encoded critical (RFC 5280 §5.2.5). A delta CRL must carry the same IDP as its base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IssuingDistributionPoint<'a> {
    /// The URI this CRL is published at (the `fullName` of the distribution point; the
    /// certificates it covers name the same URI in their cRLDistributionPoints).
    pub url: &'a str,
    /// onlyContainsUserCerts: the CRL covers end-entity certificates only.
    pub only_contains_user_certs: bool,
    /// onlyContainsCACerts: the CRL covers CA certificates only.
    pub only_contains_ca_certs: bool,
}

/// Everything a CRL says besides its signature.
#[derive(Clone, Copy, Debug)]
pub struct CrlParams<'a> {
    /// The issuing CA certificate's subject Name, DER (becomes the CRL issuer).
    pub issuer_name_der: &'a [u8],
    /// The issuing CA certificate's subjectKeyIdentifier (becomes the AKI keyIdentifier).
    pub issuer_key_id: &'a [u8],
    /// cRLNumber: monotonic per issuer, shared by complete and delta CRLs.
    pub crl_number: u64,
    /// thisUpdate.
    pub this_update: SystemTime,
    /// nextUpdate (must be after thisUpdate).
    pub next_update: SystemTime,
    /// Complete or delta.
    pub kind: CrlKind,
    /// The revoked certificates (order is kept; the caller de-duplicates).
    pub entries: &'a [RevokedEntry],
    /// freshestCRL (where the deltas are published); complete CRLs only (§5.2.6).
    pub freshest_crl_url: Option<&'a str>,
    /// issuingDistributionPoint for a partitioned CRL.
    pub distribution_point: Option<IssuingDistributionPoint<'a>>,
}

/// Why a CRL could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    #[error("invalid CRL parameters: {0}")]
    InvalidParams(String),
    #[error("revoked entry {index}: {problem}")]
    InvalidEntry { index: usize, problem: &'static str },
    #[error("the CRL would be {0} bytes, more than the {MAX_CRL_LEN}-byte limit")]
    TooLarge(usize),
    #[error("DER encoding failed: {0}")]
    Der(#[from] der::Error),
    #[error("signing the CRL failed: {0}")]
    Signing(#[from] hsm::HsmError),
}

fn invalid(msg: impl Into<String>) -> CrlError {
    CrlError::InvalidParams(msg.into())
}

/// Extensions field of an entry carrying a reasonCode: SEQUENCE OF { SEQUENCE {
/// OID 2.5.29.21, OCTET STRING { ENUMERATED code } } }; the last byte is the code.
const REASON_EXTENSIONS: [u8; 14] =
    [0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, 0x00];

fn check_serial(serial: &[u8]) -> Result<(), &'static str> {
    match serial {
        [] => Err("empty serial number"),
        [first, ..] if first & 0x80 != 0 => Err("negative serial number"),
        [0] => Err("serial number zero"),
        [0, second, ..] if second & 0x80 == 0 => Err("serial number not minimally encoded"),
        s if s.len() > 21 || (s.len() == 21 && s[0] != 0) => Err("serial number longer than 20 octets"),
        _ => Ok(()),
    }
}

/// The reason code to encode for an entry, or `None` for no reasonCode extension.
fn entry_reason(entry: &RevokedEntry, kind: CrlKind) -> Result<Option<u8>, &'static str> {
    match entry.reason {
        None | Some(Reason::Unspecified) => Ok(None),
        Some(Reason::RemoveFromCrl) if kind == CrlKind::Full => Err("removeFromCRL is only allowed in delta CRLs"),
        Some(r) => Ok(Some(r.code())),
    }
}

/// Content length of one revokedCertificates element.
fn entry_content_len(entry: &RevokedEntry, reason: Option<u8>) -> usize {
    let serial = 1 + 1 + entry.serial.len();
    serial + derw::time_len(entry.revoked_at) + if reason.is_some() { REASON_EXTENSIONS.len() } else { 0 }
}

fn uri(url: &str) -> Result<GeneralName, CrlError> {
    Ok(GeneralName::UniformResourceIdentifier(
        Ia5String::new(url).map_err(|e| invalid(format!("URL {url:?} is not IA5: {e}")))?,
    ))
}

fn distribution_points_der(url: &str) -> Result<Vec<u8>, CrlError> {
    let dp = DistributionPoint {
        distribution_point: Some(DistributionPointName::FullName(vec![uri(url)?])),
        reasons: None,
        crl_issuer: None,
    };
    Ok(vec![dp].to_der()?)
}

/// The extnValue content of a freshestCRL extension (OID [`ID_CE_FRESHEST_CRL`],
/// non-critical) naming one URI — for certificate builders (rcgen custom extensions)
/// that want relying parties to find delta CRLs from the certificate itself.
pub fn freshest_crl_extension_der(url: &str) -> Result<Vec<u8>, CrlError> {
    distribution_points_der(url)
}

/// The extnValue content of a cRLDistributionPoints extension (OID
/// [`ID_CE_CRL_DISTRIBUTION_POINTS`], non-critical) naming one URI, e.g. a CRL shard.
pub fn crl_distribution_point_der(url: &str) -> Result<Vec<u8>, CrlError> {
    distribution_points_der(url)
}

/// OIDs of the extensions built by [`freshest_crl_extension_der`] and
/// [`crl_distribution_point_der`], for callers that add them as custom extensions.
pub const FRESHEST_CRL_OID: ObjectIdentifier = ID_CE_FRESHEST_CRL;
/// See [`FRESHEST_CRL_OID`].
pub const CRL_DISTRIBUTION_POINTS_OID: ObjectIdentifier = ID_CE_CRL_DISTRIBUTION_POINTS;

fn extension(oid: ObjectIdentifier, critical: bool, value: Vec<u8>) -> Result<Extension, CrlError> {
    Ok(Extension { extn_id: oid, critical, extn_value: OctetString::new(value)? })
}

fn crl_extensions(params: &CrlParams<'_>) -> Result<Vec<Extension>, CrlError> {
    let aki = AuthorityKeyIdentifier {
        key_identifier: Some(OctetString::new(params.issuer_key_id)?),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    let mut exts = vec![
        extension(ID_CE_AUTHORITY_KEY_IDENTIFIER, false, aki.to_der()?)?,
        extension(ID_CE_CRL_NUMBER, false, Uint::new(&params.crl_number.to_be_bytes())?.to_der()?)?,
    ];
    if let CrlKind::Delta { base_crl_number } = params.kind {
        exts.push(extension(ID_CE_DELTA_CRL_INDICATOR, true, Uint::new(&base_crl_number.to_be_bytes())?.to_der()?)?);
    }
    if let Some(idp) = &params.distribution_point {
        if idp.only_contains_user_certs && idp.only_contains_ca_certs {
            return Err(invalid("an IDP cannot be limited to both user and CA certificates"));
        }
        let value = x509_cert::ext::pkix::crl::dp::IssuingDistributionPoint {
            distribution_point: Some(DistributionPointName::FullName(vec![uri(idp.url)?])),
            only_contains_user_certs: idp.only_contains_user_certs,
            only_contains_ca_certs: idp.only_contains_ca_certs,
            only_some_reasons: None,
            indirect_crl: false,
            only_contains_attribute_certs: false,
        };
        // Not `AsExtension`: x509-cert 0.2.5 gives IssuingDistributionPoint the OID of
        // subjectInfoAccess (1.3.6.1.5.5.7.1.11); the right one is 2.5.29.28.
        exts.push(extension(ID_CE_ISSUING_DISTRIBUTION_POINT, true, value.to_der()?)?);
    }
    if let Some(url) = params.freshest_crl_url {
        exts.push(extension(ID_CE_FRESHEST_CRL, false, distribution_points_der(url)?)?);
    }
    Ok(exts)
}

/// The TbsCertList fields before `revokedCertificates`: version, signature, issuer,
/// thisUpdate, nextUpdate.
fn tbs_prefix(params: &CrlParams<'_>, signature_algorithm: &[u8]) -> Result<Vec<u8>, CrlError> {
    // Validate (the bytes are copied as given, so they must be a DER Name).
    let name = Name::from_der(params.issuer_name_der).map_err(|e| invalid(format!("issuer name: {e}")))?;
    if name.0.is_empty() {
        return Err(invalid("issuer name is empty"));
    }
    let mut out = Vec::with_capacity(64 + params.issuer_name_der.len());
    x509_cert::Version::V2.encode_to_vec(&mut out)?;
    out.extend_from_slice(signature_algorithm);
    out.extend_from_slice(params.issuer_name_der);
    derw::x509_time(params.this_update)?.encode_to_vec(&mut out)?;
    derw::x509_time(params.next_update)?.encode_to_vec(&mut out)?;
    Ok(out)
}

fn check_params(params: &CrlParams<'_>) -> Result<(), CrlError> {
    if params.next_update <= params.this_update {
        return Err(invalid("nextUpdate must be after thisUpdate"));
    }
    if params.issuer_key_id.is_empty() {
        return Err(invalid("issuer key identifier is empty"));
    }
    if let CrlKind::Delta { base_crl_number } = params.kind {
        if base_crl_number >= params.crl_number {
            return Err(invalid("a delta CRL's number must be greater than its base CRL number"));
        }
        if params.freshest_crl_url.is_some() {
            return Err(invalid("freshestCRL must not appear in a delta CRL (RFC 5280 §5.2.6)"));
        }
    }
    Ok(())
}

/// Builds and signs a complete or delta CRL; returns the DER `CertificateList`.
///
/// Memory: one buffer the size of the CRL (plus a few hundred bytes); time: two passes
/// over `entries` and one signature over the TBS.
pub fn build_crl(params: &CrlParams<'_>, signer: &dyn hsm::Signer) -> Result<Vec<u8>, CrlError> {
    check_params(params)?;
    let sig_alg = signer.signature_algorithm_der();
    let prefix = tbs_prefix(params, sig_alg)?;
    let mut suffix = Vec::new();
    let exts = crl_extensions(params)?.to_der()?;
    push_header(&mut suffix, 0xa0, exts.len());
    suffix.extend_from_slice(&exts);

    // Pass 1: validate the entries and size the revoked list.
    let mut revoked_len = 0usize;
    for (index, entry) in params.entries.iter().enumerate() {
        check_serial(&entry.serial).map_err(|problem| CrlError::InvalidEntry { index, problem })?;
        let reason = entry_reason(entry, params.kind).map_err(|problem| CrlError::InvalidEntry { index, problem })?;
        let len = entry_content_len(entry, reason);
        revoked_len = revoked_len.saturating_add(derw::header_len(len) + len);
    }
    let revoked_total = if params.entries.is_empty() { 0 } else { derw::header_len(revoked_len) + revoked_len };
    let tbs_len = prefix.len() + revoked_total + suffix.len();
    let tbs_total = derw::header_len(tbs_len) + tbs_len;
    // Room for the outer SEQUENCE header in front and the signature behind.
    const HEAD_ROOM: usize = 6;
    let tail_room = sig_alg.len() + 16 + 1024;
    let total_bound = HEAD_ROOM + tbs_total + tail_room;
    if total_bound > MAX_CRL_LEN {
        return Err(CrlError::TooLarge(total_bound));
    }

    // Pass 2: write.
    let mut out = Vec::with_capacity(total_bound);
    out.resize(HEAD_ROOM, 0);
    push_header(&mut out, TAG_SEQUENCE, tbs_len);
    out.extend_from_slice(&prefix);
    if !params.entries.is_empty() {
        push_header(&mut out, TAG_SEQUENCE, revoked_len);
        for (index, entry) in params.entries.iter().enumerate() {
            let reason =
                entry_reason(entry, params.kind).map_err(|problem| CrlError::InvalidEntry { index, problem })?;
            push_header(&mut out, TAG_SEQUENCE, entry_content_len(entry, reason));
            push_header(&mut out, TAG_INTEGER, entry.serial.len());
            out.extend_from_slice(&entry.serial);
            derw::push_time(&mut out, entry.revoked_at)?;
            if let Some(code) = reason {
                out.extend_from_slice(&REASON_EXTENSIONS[..REASON_EXTENSIONS.len() - 1]);
                out.push(code);
            }
        }
    }
    out.extend_from_slice(&suffix);
    if out.len() != HEAD_ROOM + tbs_total {
        return Err(CrlError::Der(der::ErrorKind::Length { tag: der::Tag::Sequence }.into()));
    }

    let signature = signer.sign(&out[HEAD_ROOM..])?;
    out.extend_from_slice(sig_alg);
    push_header(&mut out, TAG_BIT_STRING, signature.len() + 1);
    out.push(0);
    out.extend_from_slice(&signature);

    let body_len = out.len() - HEAD_ROOM;
    let mut head = Vec::with_capacity(HEAD_ROOM);
    push_header(&mut head, TAG_SEQUENCE, body_len);
    let start = HEAD_ROOM - head.len();
    out[start..HEAD_ROOM].copy_from_slice(&head);
    out.copy_within(start.., 0);
    out.truncate(out.len() - start);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use der::Decode;
    use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
    use x509_cert::serial_number::SerialNumber;

    use super::*;
    use const_oid::db::rfc5280::ID_CE_CRL_REASONS;

    fn signer() -> (std::sync::Arc<dyn hsm::Signer>, tempfile::TempDir) {
        use hsm::KeyStore;
        let (store, dir) = hsm::testing::software_store().unwrap();
        (store.generate("crl", hsm::KeyAlgorithm::EcdsaP256).unwrap(), dir)
    }

    fn name_der() -> Vec<u8> {
        use std::str::FromStr;
        Name::from_str("CN=Device Issuing CA,O=Example").unwrap().to_der().unwrap()
    }

    fn entries() -> Vec<RevokedEntry> {
        let reasons = [
            None,
            Some(Reason::Unspecified),
            Some(Reason::KeyCompromise),
            Some(Reason::CaCompromise),
            Some(Reason::AffiliationChanged),
            Some(Reason::Superseded),
            Some(Reason::CessationOfOperation),
            Some(Reason::CertificateHold),
            Some(Reason::RemoveFromCrl),
            Some(Reason::PrivilegeWithdrawn),
            Some(Reason::AaCompromise),
        ];
        let mut out = Vec::new();
        for (i, reason) in reasons.iter().enumerate() {
            let mut serial = vec![0x00, 0x80 | i as u8];
            serial.extend_from_slice(&[0x5a; 19]);
            out.push(RevokedEntry {
                serial,
                // Both sides of the UTCTime/GeneralizedTime boundary.
                revoked_at: UNIX_EPOCH + Duration::from_secs(2_524_607_990 + 2 * i as u64),
                reason: *reason,
            });
            out.push(RevokedEntry {
                serial: vec![i as u8 + 1],
                revoked_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i as u64),
                reason: *reason,
            });
        }
        out
    }

    fn params<'a>(name: &'a [u8], entries: &'a [RevokedEntry], kind: CrlKind) -> CrlParams<'a> {
        CrlParams {
            issuer_name_der: name,
            issuer_key_id: &[1, 2, 3, 4],
            crl_number: 0x1234_5678_9abc,
            this_update: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            next_update: UNIX_EPOCH + Duration::from_secs(2_600_000_000),
            kind,
            entries,
            freshest_crl_url: None,
            distribution_point: Some(IssuingDistributionPoint {
                url: "http://pki.example/crl/device-1.crl",
                only_contains_user_certs: true,
                only_contains_ca_certs: false,
            }),
        }
    }

    /// The streamed encoding is byte-identical to x509-cert's `TbsCertList` encoder.
    #[test]
    fn streamed_tbs_equals_x509_cert_encoding() {
        let (signer, _dir) = signer();
        let name = name_der();
        let entries = entries();
        for (kind, list) in [
            (CrlKind::Delta { base_crl_number: 7 }, &entries[..]),
            (CrlKind::Full, &[][..]),
            (CrlKind::Full, &entries[..2]),
        ] {
            let mut p = params(&name, list, kind);
            if kind == CrlKind::Full {
                p.freshest_crl_url = Some("http://pki.example/crl/device-delta.crl");
            }
            let der = build_crl(&p, signer.as_ref()).unwrap();
            let crl = CertificateList::from_der(&der).unwrap();
            let revoked: Vec<RevokedCert> = list
                .iter()
                .map(|e| RevokedCert {
                    serial_number: SerialNumber::from_der(&[&[0x02, e.serial.len() as u8][..], &e.serial].concat())
                        .unwrap(),
                    revocation_date: derw::x509_time(e.revoked_at).unwrap(),
                    crl_entry_extensions: entry_reason(e, kind)
                        .unwrap()
                        .map(|c| vec![extension(ID_CE_CRL_REASONS, false, vec![0x0a, 0x01, c]).unwrap()]),
                })
                .collect();
            let expected = TbsCertList {
                version: x509_cert::Version::V2,
                signature: spki::AlgorithmIdentifierOwned::from_der(signer.signature_algorithm_der()).unwrap(),
                issuer: Name::from_der(&name).unwrap(),
                this_update: derw::x509_time(p.this_update).unwrap(),
                next_update: Some(derw::x509_time(p.next_update).unwrap()),
                revoked_certificates: if revoked.is_empty() { None } else { Some(revoked) },
                crl_extensions: Some(crl_extensions(&p).unwrap()),
            };
            assert_eq!(crl.tbs_cert_list, expected);
            assert_eq!(crl.tbs_cert_list.to_der().unwrap(), expected.to_der().unwrap());
            let tbs = crl.tbs_cert_list.to_der().unwrap();
            hsm::testing::verify_signature(
                signer.public_key_der(),
                signer.algorithm(),
                &tbs,
                crl.signature.as_bytes().unwrap(),
            )
            .unwrap();
            assert_eq!(crl.to_der().unwrap(), der);
        }
    }

    #[test]
    fn extensions_and_criticality() {
        let (signer, _dir) = signer();
        let name = name_der();
        let der = build_crl(&params(&name, &[], CrlKind::Delta { base_crl_number: 9 }), signer.as_ref()).unwrap();
        let crl = CertificateList::from_der(&der).unwrap();
        let exts = crl.tbs_cert_list.crl_extensions.unwrap();
        let ids: Vec<_> = exts.iter().map(|e| (e.extn_id, e.critical)).collect();
        assert_eq!(
            ids,
            [
                (ID_CE_AUTHORITY_KEY_IDENTIFIER, false),
                (ID_CE_CRL_NUMBER, false),
                (ID_CE_DELTA_CRL_INDICATOR, true),
                (ID_CE_ISSUING_DISTRIBUTION_POINT, true)
            ]
        );
        assert_eq!(exts[1].extn_value.as_bytes(), [0x02, 0x06, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc]);
        assert_eq!(exts[2].extn_value.as_bytes(), [0x02, 0x01, 0x09]);
        assert!(crl.tbs_cert_list.revoked_certificates.is_none());
        // No empty SEQUENCE OF between nextUpdate and the [0] extensions.
        let next = derw::x509_time(UNIX_EPOCH + Duration::from_secs(2_600_000_000)).unwrap().to_der().unwrap();
        let at = der.windows(next.len()).position(|w| w == next).unwrap() + next.len();
        assert_eq!(der[at], 0xa0);
    }

    #[test]
    fn rejects_bad_input() {
        let (signer, _dir) = signer();
        let name = name_der();
        let entry = |serial: &[u8], reason| RevokedEntry { serial: serial.to_vec(), revoked_at: UNIX_EPOCH, reason };
        for (serial, problem) in [
            (&[][..], "empty"),
            (&[0x80][..], "negative"),
            (&[0x00][..], "zero"),
            (&[0x00, 0x01][..], "minimal"),
            (&[0x01; 21][..], "20 octets"),
        ] {
            let e = [entry(serial, None)];
            let err = build_crl(&params(&name, &e, CrlKind::Full), signer.as_ref()).unwrap_err();
            assert!(err.to_string().contains(problem), "{err}");
        }
        let ok21 = [entry(&[&[0u8][..], &[0x80; 20]].concat(), None)];
        build_crl(&params(&name, &ok21, CrlKind::Full), signer.as_ref()).unwrap();
        let remove = [entry(&[1], Some(Reason::RemoveFromCrl))];
        assert!(build_crl(&params(&name, &remove, CrlKind::Full), signer.as_ref()).is_err());
        build_crl(&params(&name, &remove, CrlKind::Delta { base_crl_number: 1 }), signer.as_ref()).unwrap();

        let mut p = params(&name, &[], CrlKind::Delta { base_crl_number: 0x1234_5678_9abc });
        assert!(build_crl(&p, signer.as_ref()).is_err(), "base must be older than the delta");
        p.kind = CrlKind::Delta { base_crl_number: 1 };
        p.freshest_crl_url = Some("http://x/");
        assert!(build_crl(&p, signer.as_ref()).is_err(), "no freshestCRL in a delta");
        let mut p = params(&name, &[], CrlKind::Full);
        p.next_update = p.this_update;
        assert!(build_crl(&p, signer.as_ref()).is_err());
        let p = CrlParams { issuer_name_der: &[0x30, 0x03, 0x02], ..params(&name, &[], CrlKind::Full) };
        assert!(build_crl(&p, signer.as_ref()).is_err());
        let p = CrlParams { issuer_key_id: &[], ..params(&name, &[], CrlKind::Full) };
        assert!(build_crl(&p, signer.as_ref()).is_err());
        let mut p = params(&name, &[], CrlKind::Full);
        p.distribution_point = Some(IssuingDistributionPoint {
            url: "http://x/",
            only_contains_user_certs: true,
            only_contains_ca_certs: true,
        });
        assert!(build_crl(&p, signer.as_ref()).is_err());
        let mut p = params(&name, &[], CrlKind::Full);
        p.freshest_crl_url = Some("http://ü/");
        assert!(build_crl(&p, signer.as_ref()).is_err());
    }

    #[test]
    fn distribution_point_helpers() {
        let der = crl_distribution_point_der("http://pki.example/crl/a.crl").unwrap();
        let parsed = x509_cert::ext::pkix::CrlDistributionPoints::from_der(&der).unwrap();
        assert_eq!(parsed.0.len(), 1);
        assert_eq!(freshest_crl_extension_der("http://pki.example/crl/a.crl").unwrap(), der);
    }
}
