//! Test PKI: the update hierarchy (Update Root → Update Authority CA → code-signing
//! leaves) and the separate identity hierarchy (Identity Root → Device Issuing CA →
//! device leaves), built with rcgen; every CA key lives in an hsm software store (CRLs
//! are signed with `revocation::crl::build_crl` through `hsm::Signer`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use der::{Decode, Encode};
use hsm::{KeyAlgorithm, KeyStore, Signer};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose,
};
use revocation::crl::{build_crl, CrlKind, CrlParams, RevokedEntry};
use update_trust::{device_class_oid, ObjectIdentifier};
use x509_cert::ext::pkix::certpolicy::PolicyInformation;
use x509_cert::ext::pkix::CertificatePolicies;

pub const ARC: &str = "1.3.6.1.4.1.55555.1.2";

pub fn class(n: u32) -> ObjectIdentifier {
    device_class_oid(&ObjectIdentifier::new_unwrap(ARC), n).unwrap()
}

pub fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

pub fn ahead(secs: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(secs)
}

pub const DAY: u64 = 86_400;

/// An `hsm::Signer` as an rcgen signing key (CA keys sign through the key store).
#[derive(Debug)]
pub struct HsmKey {
    pub signer: Arc<dyn Signer>,
    bits: Vec<u8>,
}

impl HsmKey {
    pub fn new(signer: Arc<dyn Signer>) -> Self {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(signer.public_key_der()).unwrap();
        let bits = spki.subject_public_key.raw_bytes().to_vec();
        Self { signer, bits }
    }
}

fn rcgen_alg(a: KeyAlgorithm) -> &'static rcgen::SignatureAlgorithm {
    match a {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        KeyAlgorithm::Rsa3072 => &rcgen::PKCS_RSA_SHA256,
    }
}

impl rcgen::PublicKeyData for HsmKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        rcgen_alg(self.signer.algorithm())
    }
}

impl rcgen::SigningKey for HsmKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.signer.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// A CA: its certificate, its key (for issuing and for CRLs).
pub struct Ca {
    pub der: Vec<u8>,
    pub pem: String,
    pub issuer: Issuer<'static, HsmKey>,
    pub key: Arc<dyn Signer>,
}

impl Ca {
    /// A CRL of this CA listing `revoked` (DER certificates), valid `[this, next)`.
    pub fn crl(&self, revoked: &[&[u8]], this_update: SystemTime, next_update: SystemTime) -> Vec<u8> {
        let cert = x509_cert::Certificate::from_der(&self.der).unwrap();
        let name = cert.tbs_certificate.subject.to_der().unwrap();
        let ski = cert
            .tbs_certificate
            .extensions
            .unwrap()
            .into_iter()
            .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER)
            .unwrap();
        let ski = der::asn1::OctetString::from_der(ski.extn_value.as_bytes()).unwrap();
        let entries: Vec<RevokedEntry> = revoked
            .iter()
            .map(|c| RevokedEntry {
                serial: x509_cert::Certificate::from_der(c).unwrap().tbs_certificate.serial_number.as_bytes().to_vec(),
                revoked_at: ago(3600),
                reason: None,
            })
            .collect();
        let params = CrlParams {
            issuer_name_der: &name,
            issuer_key_id: ski.as_bytes(),
            crl_number: 1,
            this_update,
            next_update,
            kind: CrlKind::Full,
            entries: &entries,
            freshest_crl_url: None,
            distribution_point: None,
        };
        build_crl(&params, self.key.as_ref()).unwrap()
    }
}

fn next_serial() -> rcgen::SerialNumber {
    static N: AtomicU8 = AtomicU8::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    rcgen::SerialNumber::from_slice(&[0x5a, 0x10, n, 0x77, 0x01, 0x02, 0x03, 0x04, 0x05])
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name.push(DnType::OrganizationName, "Update Trust Tests");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p.serial_number = Some(next_serial());
    p.not_before = ago(365 * DAY).into();
    p.not_after = ahead(3650 * DAY).into();
    p
}

/// How a leaf (or intermediate) deviates from the normal update-signing profile.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    pub cn: String,
    pub ekus: Vec<ExtendedKeyUsagePurpose>,
    pub classes: Vec<ObjectIdentifier>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl LeafSpec {
    /// The normal update-signing certificate: codeSigning, classes 7 and 8, valid now.
    pub fn code_signing(cn: &str) -> Self {
        LeafSpec {
            cn: cn.into(),
            ekus: vec![ExtendedKeyUsagePurpose::CodeSigning],
            classes: vec![class(7), class(8)],
            not_before: ago(3600),
            not_after: ahead(30 * DAY),
        }
    }
}

pub fn policies_extension(classes: &[ObjectIdentifier]) -> CustomExtension {
    let cp = CertificatePolicies(
        classes.iter().map(|oid| PolicyInformation { policy_identifier: *oid, policy_qualifiers: None }).collect(),
    );
    CustomExtension::from_oid_content(&[2, 5, 29, 32], cp.to_der().unwrap())
}

impl Ca {
    /// A leaf for the public key `key` (anything rcgen can read a public key from).
    pub fn issue(&self, spec: &LeafSpec, key: &impl rcgen::PublicKeyData) -> Vec<u8> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, spec.cn.as_str());
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = spec.ekus.clone();
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(next_serial());
        p.not_before = spec.not_before.into();
        p.not_after = spec.not_after.into();
        if !spec.classes.is_empty() {
            p.custom_extensions.push(policies_extension(&spec.classes));
        }
        p.signed_by(key, &self.issuer).unwrap().der().to_vec()
    }

    /// A subordinate CA, optionally with an EKU extension.
    pub fn sub_ca(&self, store: &dyn KeyStore, label: &str, cn: &str, ekus: Vec<ExtendedKeyUsagePurpose>) -> Ca {
        let key = store.generate(label, KeyAlgorithm::EcdsaP256).unwrap();
        let mut p = ca_params(cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.use_authority_key_identifier_extension = true;
        p.extended_key_usages = ekus;
        let cert = p.signed_by(&HsmKey::new(key.clone()), &self.issuer).unwrap();
        Ca { der: cert.der().to_vec(), pem: cert.pem(), issuer: Issuer::new(p, HsmKey::new(key.clone())), key }
    }
}

pub fn root(store: &dyn KeyStore, label: &str, cn: &str) -> Ca {
    let key = store.generate(label, KeyAlgorithm::EcdsaP256).unwrap();
    let p = ca_params(cn);
    let cert = p.self_signed(&HsmKey::new(key.clone())).unwrap();
    Ca { der: cert.der().to_vec(), pem: cert.pem(), issuer: Issuer::new(p, HsmKey::new(key.clone())), key }
}

/// rcgen's view of a DER SPKI (to certify keys rcgen does not hold).
pub fn spki_key(spki_der: &[u8]) -> rcgen::SubjectPublicKeyInfo {
    rcgen::SubjectPublicKeyInfo::from_der(spki_der).unwrap()
}

/// The whole test PKI.
pub struct Pki {
    pub store: hsm::software::SoftwareKeyStore,
    _store_dir: tempfile::TempDir,
    pub update_root: Ca,
    pub update_ca: Ca,
    pub identity_root: Ca,
    pub device_ca: Ca,
    /// The normal signer: P-256 key in the store, codeSigning, classes 7+8.
    pub signer: Arc<dyn Signer>,
    pub signer_cert: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let (store, store_dir) = hsm::testing::software_store().unwrap();
        let update_root = root(&store, "update-root", "Test Update Root CA");
        let update_ca = update_root.sub_ca(&store, "update-ca", "Test Update Authority CA", vec![]);
        let identity_root = root(&store, "identity-root", "Test Identity Root CA");
        let device_ca = identity_root.sub_ca(&store, "device-ca", "Test Device Issuing CA", vec![]);
        let signer = store.generate("release-signer", KeyAlgorithm::EcdsaP256).unwrap();
        let signer_cert = update_ca.issue(&LeafSpec::code_signing("Release Signer 1"), &HsmKey::new(signer.clone()));
        Pki { store, _store_dir: store_dir, update_root, update_ca, identity_root, device_ca, signer, signer_cert }
    }

    /// A fresh key of `alg` in the store, with a certificate issued by `ca` per `spec`.
    pub fn key_and_cert(&self, label: &str, alg: KeyAlgorithm, ca: &Ca, spec: &LeafSpec) -> (Arc<dyn Signer>, Vec<u8>) {
        let key = self.store.generate(label, alg).unwrap();
        let cert = ca.issue(spec, &HsmKey::new(key.clone()));
        (key, cert)
    }

    pub fn anchors(&self) -> Vec<Vec<u8>> {
        vec![self.update_root.der.clone()]
    }

    /// Signs `content` with the normal signer, chain = the Update Authority CA.
    pub fn sign(&self, content: &[u8]) -> Vec<u8> {
        update_trust::sign_detached(
            content,
            self.signer.as_ref(),
            &self.signer_cert,
            std::slice::from_ref(&self.update_ca.der),
            SystemTime::now(),
        )
        .unwrap()
    }
}

pub fn pem(label: &str, der: &[u8]) -> String {
    ::pem::encode(&::pem::Pem::new(label, der))
}

pub fn write(dir: &Path, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Runs the `openssl` binary in `dir`; returns (success, stdout+stderr).
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("cannot run the `openssl` binary ({e}); install OpenSSL 3 to run the interop tests")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
