//! Certificate profiles: what goes into a certificate comes from here and from the
//! subject's identity, never from the request's extensions.
//!
//! One builder (rcgen, SHA-256 key identifiers) makes every certificate of the
//! hierarchy; mixing builders with different key-identifier methods breaks chain
//! building in OpenSSL (DESIGN §8).

use std::time::{Duration, SystemTime};

use const_oid::ObjectIdentifier;
use der::asn1::{Ia5String, Null, OctetString};
use der::{Encode, Sequence};
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType, SerialNumber,
};
use x509_cert::ext::pkix::certpolicy::PolicyInformation;
use x509_cert::ext::pkix::name::{GeneralName, OtherName};
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax, CertificatePolicies, SubjectAltName};

use crate::config::{CaConfig, ProfileConfig, ProfileKind};

/// Backdating of notBefore, so a device whose clock runs slightly behind accepts a
/// fresh certificate.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);

const OID_SAN: &[u64] = &[2, 5, 29, 17];
const OID_CERTIFICATE_POLICIES: &[u64] = &[2, 5, 29, 32];
const OID_FRESHEST_CRL: &[u64] = &[2, 5, 29, 46];
const OID_AIA: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
const OID_OCSP_NOCHECK: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5];
const OID_HARDWARE_MODULE_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.8.4");
const OID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
const OID_AD_CA_ISSUERS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");

/// Why a certificate cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("invalid subject '{0}': {1}")]
    Subject(String, String),
    #[error("invalid device id '{0}': use 1-64 characters of A-Z a-z 0-9 . : - starting with a letter or digit")]
    DeviceId(String),
    #[error("unknown device model '{0}'")]
    UnknownModel(String),
    #[error("{0}")]
    Encoding(String),
}

/// RFC 4108 HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER, hwSerialNum OCTET STRING }
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct HardwareModuleName {
    pub hw_type: ObjectIdentifier,
    pub hw_serial_num: OctetString,
}

/// Who a certificate is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A device: id (CN, serialNumber, HardwareModuleName.hwSerialNum) and model OID.
    Device { id: String, model_oid: ObjectIdentifier },
    /// A named entity (station, update signer, OCSP signer): the CN.
    Named(String),
    /// A TLS server: CN is the first name; every name goes into the SAN.
    Server(Vec<String>),
    /// An update signer (the OTA pipeline's key): the CN, and the device classes its
    /// updates are for, as certificate-policy OIDs.
    UpdateSigner { name: String, classes: Vec<ObjectIdentifier> },
    /// A person using the admin API: CN = name, OU = role.
    Operator { name: String, role: String },
}

impl From<enrollment::ra::Subject> for Subject {
    fn from(s: enrollment::ra::Subject) -> Self {
        match s {
            enrollment::ra::Subject::Device { id, model_oid } => Subject::Device { id, model_oid },
            enrollment::ra::Subject::Named(name) => Subject::Named(name),
            enrollment::ra::Subject::Server(names) => Subject::Server(names),
        }
    }
}

/// (CN, OU) of an operator certificate: who, and in which role.
pub fn operator_identity(der: &[u8]) -> Option<(String, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let ou = subject.iter_organizational_unit().next()?.as_str().ok()?.to_string();
    Some((cn, ou))
}

/// Where relying parties fetch CRLs, OCSP and issuer certificates, and how CRLs are
/// laid out (shards, deltas).
#[derive(Clone, Debug)]
pub struct PublicUrls {
    pub base: String,
    /// CRL shards per issuing CA (1 = not sharded).
    pub crl_shards: u32,
    /// Whether delta CRLs are published (certificates then carry freshestCRL).
    pub delta_crls: bool,
}

/// Which CRL a certificate's status is published in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrlScope {
    /// The issuer's complete CRL.
    Full,
    /// One shard: a partition by serial, with its own URL and IDP.
    Shard(u32),
}

impl PublicUrls {
    pub fn new(config: &crate::config::Config) -> Self {
        Self {
            base: config.public_base_url.clone(),
            crl_shards: config.crl.shards.max(1),
            delta_crls: config.crl.delta_crls,
        }
    }

    fn root(&self) -> &str {
        self.base.trim_end_matches('/')
    }

    /// The complete CRL of `ca` (also where CA certificates point).
    pub fn crl(&self, ca: &str) -> String {
        format!("{}/crl/{ca}.crl", self.root())
    }

    /// The CRL for a scope, and the delta CRL that updates it.
    pub fn crl_of(&self, ca: &str, scope: CrlScope) -> (String, String) {
        match scope {
            CrlScope::Full => (self.crl(ca), format!("{}/crl/{ca}/delta.crl", self.root())),
            CrlScope::Shard(n) => {
                (format!("{}/crl/{ca}/{n}.crl", self.root()), format!("{}/crl/{ca}/{n}-delta.crl", self.root()))
            }
        }
    }

    /// The shard a new certificate with `serial` goes to (serials are random, so the
    /// shards fill evenly); 0 when not sharded.
    pub fn shard_for(&self, serial: &[u8]) -> u32 {
        let tail = serial.iter().rev().take(4).enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (8 * i)));
        tail % self.crl_shards.max(1)
    }

    /// The CRL scope of a certificate in `shard`.
    pub fn scope_of(&self, shard: u32) -> CrlScope {
        if self.crl_shards > 1 {
            CrlScope::Shard(shard)
        } else {
            CrlScope::Full
        }
    }
    pub fn ocsp(&self) -> String {
        format!("{}/ocsp", self.base.trim_end_matches('/'))
    }
    pub fn ca_cert(&self, ca: &str) -> String {
        format!("{}/ca/{ca}.crt", self.base.trim_end_matches('/'))
    }
}

/// Checks a device id: it goes into a PrintableString (serialNumber) and a URL path.
pub fn validate_device_id(id: &str) -> Result<(), ProfileError> {
    if enrollment::ra::is_valid_device_id(id) {
        Ok(())
    } else {
        Err(ProfileError::DeviceId(id.to_string()))
    }
}

/// A fresh serial number: 16 CSPRNG bytes, first bit cleared and second set so the
/// INTEGER is positive and always exactly 16 octets (126 random bits).
pub fn random_serial() -> [u8; 16] {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    bytes
}

/// Parses a simple RFC 4514-style subject (`CN=…,O=…`). Commas inside values are not
/// supported; attribute types: CN, O, OU, C, L, ST, serialNumber.
pub fn parse_subject(s: &str) -> Result<DistinguishedName, ProfileError> {
    let err = |m: &str| ProfileError::Subject(s.to_string(), m.to_string());
    let mut dn = DistinguishedName::new();
    for part in s.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| err("expected TYPE=value"))?;
        let v = v.trim();
        if v.is_empty() {
            return Err(err("empty value"));
        }
        let ty = match k.trim() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "C" => DnType::CountryName,
            "L" => DnType::LocalityName,
            "ST" => DnType::StateOrProvinceName,
            "serialNumber" => DnType::CustomDnType(vec![2, 5, 4, 5]),
            other => return Err(err(&format!("unsupported attribute type '{other}'"))),
        };
        dn.push(ty, v);
    }
    if dn.iter().next().is_none() {
        return Err(err("empty subject"));
    }
    Ok(dn)
}

fn printable(s: &str) -> Result<rcgen::DnValue, ProfileError> {
    rcgen::string::PrintableString::try_from(s)
        .map(rcgen::DnValue::PrintableString)
        .map_err(|_| ProfileError::Subject(s.to_string(), "not a PrintableString".into()))
}

/// The validity window: from now (backdated) for `days`, never past the issuer's
/// own notAfter.
pub fn validity(days: u32, issuer_not_after: Option<SystemTime>) -> (SystemTime, SystemTime) {
    let now = SystemTime::now();
    let not_before = now - BACKDATE;
    let mut not_after = now + Duration::from_secs(u64::from(days) * 86_400);
    if let Some(limit) = issuer_not_after {
        not_after = not_after.min(limit);
    }
    (not_before, not_after)
}

/// Parameters for a CA certificate (root or intermediate).
pub fn ca_params(
    name: &str,
    ca: &CaConfig,
    serial: [u8; 16],
    window: (SystemTime, SystemTime),
    urls: &PublicUrls,
) -> Result<CertificateParams, ProfileError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = parse_subject(&ca.subject)?;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.not_before = window.0.into();
    p.not_after = window.1.into();
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(ca.path_len));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    if let Some(parent) = &ca.parent {
        p.use_authority_key_identifier_extension = true;
        p.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![urls.crl(parent)] }];
        p.custom_extensions.push(aia(None, &urls.ca_cert(parent))?);
    }
    let _ = name;
    Ok(p)
}

/// Parameters for an end-entity certificate of `profile`, issued by CA `issuer`,
/// whose status is published in the CRL of `scope`.
pub fn end_entity_params(
    profile: &ProfileConfig,
    issuer: &str,
    subject: &Subject,
    serial: [u8; 16],
    window: (SystemTime, SystemTime),
    urls: &PublicUrls,
    scope: CrlScope,
) -> Result<CertificateParams, ProfileError> {
    let mut p = CertificateParams::default();
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.not_before = window.0.into();
    p.not_after = window.1.into();
    p.is_ca = IsCa::ExplicitNoCa;
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let (crl_url, delta_url) = urls.crl_of(issuer, scope);
    p.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![crl_url] }];
    if urls.delta_crls {
        p.custom_extensions.push(freshest_crl(&delta_url)?);
    }
    let ocsp_url = urls.ocsp();
    p.custom_extensions.push(aia(Some(&ocsp_url), &urls.ca_cert(issuer))?);

    let mut dn = DistinguishedName::new();
    match subject {
        Subject::Device { id, model_oid } => {
            validate_device_id(id)?;
            dn.push(DnType::CommonName, id.as_str());
            dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), printable(id)?);
            p.custom_extensions.push(hardware_module_san(*model_oid, id.as_bytes())?);
        }
        Subject::Named(cn) => dn.push(DnType::CommonName, common_name(cn)?),
        Subject::Operator { name, role } => {
            if profile.kind != ProfileKind::Operator {
                return Err(ProfileError::Subject(name.clone(), "an operator needs an operator profile".into()));
            }
            dn.push(DnType::CommonName, common_name(name)?);
            dn.push(DnType::OrganizationalUnitName, common_name(role)?);
        }
        Subject::UpdateSigner { name, classes } => {
            if profile.kind != ProfileKind::UpdateSigning {
                return Err(ProfileError::Subject(
                    name.clone(),
                    "an update signer needs an update-signing profile".into(),
                ));
            }
            dn.push(DnType::CommonName, common_name(name)?);
            p.custom_extensions.push(device_class_policies(classes)?);
        }
        Subject::Server(names) => {
            let first = names.first().ok_or_else(|| ProfileError::Subject(String::new(), "no server names".into()))?;
            dn.push(DnType::CommonName, first.as_str());
            for n in names {
                p.subject_alt_names.push(match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(
                        n.clone().try_into().map_err(|_| ProfileError::Subject(n.clone(), "not a DNS name".into()))?,
                    ),
                });
            }
        }
    }
    if let Some(org) = &profile.organization {
        dn.push(DnType::OrganizationName, org.as_str());
    }
    p.distinguished_name = dn;

    if profile.kind == ProfileKind::Operator && !matches!(subject, Subject::Operator { .. }) {
        return Err(ProfileError::Subject(format!("{subject:?}"), "operator certificates name a role".into()));
    }
    if profile.kind == ProfileKind::UpdateSigning && !matches!(subject, Subject::UpdateSigner { .. }) {
        // Without class policies a device could not tell what the update is for.
        return Err(ProfileError::Subject(
            format!("{subject:?}"),
            "update-signing certificates are made only for update signers with device classes".into(),
        ));
    }
    match profile.kind {
        ProfileKind::Device | ProfileKind::Station | ProfileKind::Operator => {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        ProfileKind::TlsServer => p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth],
        ProfileKind::UpdateSigning => p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning],
        ProfileKind::OcspSigner => {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
            let null = Null.to_der().map_err(|e| ProfileError::Encoding(e.to_string()))?;
            p.custom_extensions.push(CustomExtension::from_oid_content(OID_OCSP_NOCHECK, null));
        }
    }
    Ok(p)
}

/// The extended key usages a profile grants, as dotted OIDs (requests may ask for a
/// subset, never more).
pub fn granted_ekus(kind: ProfileKind) -> &'static [&'static str] {
    kind.granted_ekus()
}

fn common_name(cn: &str) -> Result<&str, ProfileError> {
    if cn.is_empty() || cn.len() > 64 {
        return Err(ProfileError::Subject(cn.to_string(), "common name must be 1-64 characters".into()));
    }
    Ok(cn)
}

/// certificatePolicies (non-critical) with one policy OID per device class and no
/// qualifiers: a device accepts an update only if its own class OID is listed.
fn device_class_policies(classes: &[ObjectIdentifier]) -> Result<CustomExtension, ProfileError> {
    if classes.is_empty() {
        return Err(ProfileError::Encoding("an update signer needs at least one device class".into()));
    }
    let policies = CertificatePolicies(
        classes.iter().map(|oid| PolicyInformation { policy_identifier: *oid, policy_qualifiers: None }).collect(),
    );
    let der = policies.to_der().map_err(|e| ProfileError::Encoding(format!("encoding certificatePolicies: {e}")))?;
    Ok(CustomExtension::from_oid_content(OID_CERTIFICATE_POLICIES, der))
}

/// subjectAltName with one RFC 4108 HardwareModuleName otherName. rcgen's otherName
/// support is UTF8String-only, so the extension is encoded here with x509-cert types.
fn hardware_module_san(model: ObjectIdentifier, serial: &[u8]) -> Result<CustomExtension, ProfileError> {
    let enc = |e: der::Error| ProfileError::Encoding(format!("encoding subjectAltName: {e}"));
    let hmn = HardwareModuleName { hw_type: model, hw_serial_num: OctetString::new(serial).map_err(enc)? };
    let other = OtherName { type_id: OID_HARDWARE_MODULE_NAME, value: der::Any::encode_from(&hmn).map_err(enc)? };
    let san = SubjectAltName(vec![GeneralName::OtherName(other)]);
    Ok(CustomExtension::from_oid_content(OID_SAN, san.to_der().map_err(enc)?))
}

/// freshestCRL (RFC 5280 §4.2.1.15, non-critical): where the delta CRLs that update
/// the certificate's CRL are published. Same syntax as cRLDistributionPoints.
fn freshest_crl(url: &str) -> Result<CustomExtension, ProfileError> {
    use x509_cert::ext::pkix::crl::dp::DistributionPoint;
    use x509_cert::ext::pkix::name::DistributionPointName;
    let uri = Ia5String::new(url).map_err(|e| ProfileError::Encoding(format!("URL '{url}': {e}")))?;
    let dp = DistributionPoint {
        distribution_point: Some(DistributionPointName::FullName(vec![GeneralName::UniformResourceIdentifier(uri)])),
        reasons: None,
        crl_issuer: None,
    };
    let der = x509_cert::ext::pkix::FreshestCrl(vec![dp])
        .to_der()
        .map_err(|e| ProfileError::Encoding(format!("encoding freshestCRL: {e}")))?;
    Ok(CustomExtension::from_oid_content(OID_FRESHEST_CRL, der))
}

/// authorityInfoAccess: OCSP responder (end entities) and caIssuers.
fn aia(ocsp: Option<&str>, ca_issuers: &str) -> Result<CustomExtension, ProfileError> {
    let uri = |s: &str| {
        Ia5String::new(s)
            .map(GeneralName::UniformResourceIdentifier)
            .map_err(|e| ProfileError::Encoding(format!("URL '{s}': {e}")))
    };
    let mut descs = Vec::new();
    if let Some(o) = ocsp {
        descs.push(AccessDescription { access_method: OID_AD_OCSP, access_location: uri(o)? });
    }
    descs.push(AccessDescription { access_method: OID_AD_CA_ISSUERS, access_location: uri(ca_issuers)? });
    let der = AuthorityInfoAccessSyntax(descs)
        .to_der()
        .map_err(|e| ProfileError::Encoding(format!("encoding authorityInfoAccess: {e}")))?;
    Ok(CustomExtension::from_oid_content(OID_AIA, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_positive_16_octets_and_distinct() {
        let a = random_serial();
        let b = random_serial();
        assert_ne!(a, b);
        for s in [a, b] {
            assert_eq!(s[0] & 0xc0, 0x40, "top bit clear, next bit set: positive and minimal");
        }
    }

    #[test]
    fn device_ids_are_validated() {
        for ok in ["SN-0001", "a", "dev.1:2"] {
            validate_device_id(ok).unwrap();
        }
        for bad in ["", "-x", "a b", "x/../y", "ü", &"x".repeat(65), "a_b"] {
            assert!(validate_device_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn subjects_parse_and_bad_ones_are_refused() {
        let dn = parse_subject("CN=Device Issuing CA,O=Example,C=DE").unwrap();
        assert_eq!(dn.iter().count(), 3);
        assert!(parse_subject("CN").is_err());
        assert!(parse_subject("XX=1").is_err());
        assert!(parse_subject("CN=").is_err());
    }
}
