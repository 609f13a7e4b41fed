//! Device certificates of the service's own shape, made fast.
//!
//! One template per (model, CRL shard) is built by the service's issuance code
//! (`ca_service::issuance::EndEntity::sign`: the device profile, the configured URLs,
//! the real issuing CA's name and key identifier from table `cas`). A row's DER is a
//! copy of its template with the row's serial, device id and validity written over the
//! template's — the same lengths, so the DER stays well-formed and parses.
//!
//! The templates are signed by a throw-away key of the CA's algorithm, and rows differ
//! from their template after signing: **the signatures of filled rows are not valid**.
//! Sizes and every other byte are what the service issues.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING};
use ca_service::config::{Config, ProfileConfig, ProfileKind};
use ca_service::issuance::EndEntity;
use ca_service::keys::CaKey;
use ca_service::profile::{PublicUrls, Subject};
use const_oid::ObjectIdentifier;
use hsm::{HsmError, KeyAlgorithm};

/// The device-id placeholder's filler: never a digit, so it cannot be a row's id.
const PLACEHOLDER: char = 'Z';

/// A certificate as a filled row stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilledCert {
    pub der: Vec<u8>,
    pub subject: String,
    pub crl_shard: u32,
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of `der`, lower-case hex (what the service stores).
    pub fingerprint: String,
}

/// Where a template's variable fields are.
#[derive(Debug)]
struct Template {
    der: Vec<u8>,
    subject: String,
    serial_at: usize,
    id_at: Vec<usize>,
    not_before_at: usize,
    not_after_at: usize,
    not_before: i64,
    not_after: i64,
}

/// The templates of one issuing CA and device profile.
#[derive(Debug)]
pub struct Templates {
    by: HashMap<(usize, u32), Template>,
    urls: PublicUrls,
    placeholder: String,
    /// When the templates were issued (unix seconds): rows shift their validity by
    /// their own issue time minus this.
    issued_at: i64,
}

impl Templates {
    /// Builds them for `models` (index = position) under the CA `issuer` (its
    /// certificate DER) with the config's device profile; device ids have
    /// `id_len` characters.
    pub fn build(
        config: &Config,
        issuer: &str,
        ca_der: &[u8],
        models: &[ObjectIdentifier],
        id_len: usize,
    ) -> Result<Self> {
        let (profile_name, profile) = device_profile(config, issuer)?;
        let urls = PublicUrls::new(config);
        let (ca_not_after, algorithm) = ca_facts(ca_der)?;
        let key = CaKey::new(Arc::new(Throwaway::generate(algorithm)?)).map_err(|e| anyhow::anyhow!("{e}"))?;
        let ca = rcgen::Issuer::from_ca_cert_der(&ca_der.to_vec().into(), key).context("the CA certificate")?;
        let subject_key = Throwaway::generate(KeyAlgorithm::EcdsaP256)?;
        let placeholder = format!("SN-{}", PLACEHOLDER.to_string().repeat(id_len.saturating_sub(3).max(1)));
        let issued_at = ca_service::issuance::unix(SystemTime::now());
        let mut by = HashMap::new();
        for (m, model_oid) in models.iter().enumerate() {
            for shard in 0..urls.crl_shards.max(1) {
                let serial = serial_in_shard(&urls, shard);
                let subject = Subject::Device { id: placeholder.clone(), model_oid: *model_oid };
                let entity = EndEntity::new(profile_name, profile, subject, &subject_key.spki);
                let record = entity
                    .sign(issuer, &ca, ca_not_after, serial, &urls)
                    .map_err(|e| anyhow::anyhow!("building the template certificate: {e}"))?;
                by.insert((m, shard), Template::locate(record, &serial, &placeholder)?);
            }
        }
        Ok(Self { by, urls, placeholder, issued_at })
    }

    /// The certificate of `device_id` (as long as the placeholder) with `serial`,
    /// issued at `issued_at` (unix seconds), for model index `model`.
    pub fn cert(&self, model: usize, serial: &[u8; 16], device_id: &str, issued_at: i64) -> Result<FilledCert> {
        let crl_shard = self.urls.shard_for(serial);
        let t = self.by.get(&(model, crl_shard)).context("no template for this model and shard")?;
        if device_id.len() != self.placeholder.len() {
            bail!("device id {device_id} is not {} characters long", self.placeholder.len());
        }
        let shift = issued_at - self.issued_at;
        let (not_before, not_after) = (t.not_before + shift, t.not_after + shift);
        let mut der = t.der.clone();
        der[t.serial_at..t.serial_at + 16].copy_from_slice(serial);
        for &at in &t.id_at {
            der[at..at + device_id.len()].copy_from_slice(device_id.as_bytes());
        }
        der[t.not_before_at..t.not_before_at + 13].copy_from_slice(&utc_time(not_before)?);
        der[t.not_after_at..t.not_after_at + 13].copy_from_slice(&utc_time(not_after)?);
        Ok(FilledCert {
            fingerprint: ca_service::issuance::sha256_hex(&der),
            subject: t.subject.replace(&self.placeholder, device_id),
            der,
            crl_shard,
            not_before,
            not_after,
        })
    }

    /// The CRL shard the service assigns to `serial`.
    pub fn shard_for(&self, serial: &[u8]) -> u32 {
        self.urls.shard_for(serial)
    }
}

impl Template {
    fn locate(record: ca_service::store::CertRecord, serial: &[u8; 16], placeholder: &str) -> Result<Self> {
        let der = record.der;
        let one = |needle: &[u8], what: &str| -> Result<usize> {
            match find_all(&der, needle).as_slice() {
                [at] => Ok(*at),
                found => bail!("the template holds its {what} {} times, not once", found.len()),
            }
        };
        let serial_at = one(serial, "serial")?;
        let not_before_at = one(&[&[0x17, 0x0d][..], &utc_time(record.not_before)?].concat(), "notBefore")? + 2;
        let not_after_at = one(&[&[0x17, 0x0d][..], &utc_time(record.not_after)?].concat(), "notAfter")? + 2;
        let id_at = find_all(&der, placeholder.as_bytes());
        if id_at.is_empty() {
            bail!("the template does not carry its device id");
        }
        Ok(Self {
            subject: record.subject,
            serial_at,
            id_at,
            not_before_at,
            not_after_at,
            not_before: record.not_before,
            not_after: record.not_after,
            der,
        })
    }
}

/// The device profile issued by `issuer`: the one named `device`, else the first.
pub fn device_profile<'a>(config: &'a Config, issuer: &str) -> Result<(&'a str, &'a ProfileConfig)> {
    let mut found = config.profiles.iter().filter(|(_, p)| p.kind == ProfileKind::Device && p.issuer == issuer);
    let all: Vec<_> = found.by_ref().collect();
    all.iter()
        .find(|(n, _)| n.as_str() == "device")
        .or_else(|| all.first())
        .map(|(n, p)| (n.as_str(), *p))
        .with_context(|| format!("no device profile issued by CA '{issuer}' in the configuration"))
}

/// The CA certificate's notAfter and key algorithm.
fn ca_facts(ca_der: &[u8]) -> Result<(SystemTime, KeyAlgorithm)> {
    let (_, cert) = x509_parser::parse_x509_certificate(ca_der).context("parsing the CA certificate")?;
    let not_after = UNIX_EPOCH + Duration::from_secs(u64::try_from(cert.validity().not_after.timestamp())?);
    let curve = cert.public_key().algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
    let algorithm = match curve.as_deref() {
        Some("1.2.840.10045.3.1.7") => KeyAlgorithm::EcdsaP256,
        Some("1.3.132.0.34") => KeyAlgorithm::EcdsaP384,
        other => bail!("the CA key is not ECDSA P-256/P-384 ({other:?}); fleet-load makes ECDSA templates only"),
    };
    Ok((not_after, algorithm))
}

/// A random serial (the service's own generator) that the service puts in `shard`.
fn serial_in_shard(urls: &PublicUrls, shard: u32) -> [u8; 16] {
    loop {
        let serial = ca_service::profile::random_serial();
        if urls.shard_for(&serial) == shard {
            return serial;
        }
    }
}

/// UTCTime content (`YYMMDDHHMMSSZ`), what rcgen writes for years before 2050.
pub fn utc_time(unix: i64) -> Result<[u8; 13]> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix)?;
    if !(1950..2050).contains(&t.year()) {
        bail!("{unix} is outside UTCTime's years");
    }
    let s = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let mut out = [0u8; 13];
    out.copy_from_slice(s.as_bytes());
    Ok(out)
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect()
}

/// An in-memory ECDSA key that signs the templates (never a CA's key).
struct Throwaway {
    algorithm: KeyAlgorithm,
    key: EcdsaKeyPair,
    spki: Vec<u8>,
}

impl std::fmt::Debug for Throwaway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throwaway").field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl Throwaway {
    fn generate(algorithm: KeyAlgorithm) -> Result<Self> {
        let alg = match algorithm {
            KeyAlgorithm::EcdsaP256 => &ECDSA_P256_SHA256_ASN1_SIGNING,
            KeyAlgorithm::EcdsaP384 => &ECDSA_P384_SHA384_ASN1_SIGNING,
            other => bail!("no throw-away key for {other}"),
        };
        let key = EcdsaKeyPair::generate(alg).map_err(|_| anyhow::anyhow!("generating a key"))?;
        let spki = key.public_key().as_der().map_err(|_| anyhow::anyhow!("encoding a public key"))?.as_ref().to_vec();
        Ok(Self { algorithm, key, spki })
    }
}

impl hsm::Signer for Throwaway {
    fn label(&self) -> &str {
        "fleet-load-throwaway"
    }
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key.sign(&rng, message).map(|s| s.as_ref().to_vec()).map_err(|_| HsmError::Crypto("signing".into()))
    }
    fn signs_in_microseconds(&self) -> bool {
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};

    /// Templates under a stand-in CA, for the default model, 11-character ids.
    pub(crate) fn templates(config: &Config) -> Templates {
        let oid = ObjectIdentifier::new("1.3.6.1.4.1.59999.1.1").unwrap();
        Templates::build(config, "device", &ca_der(), &[oid], 11).unwrap()
    }

    /// A stand-in for the `device` CA's certificate (what table `cas` holds).
    fn ca_der() -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "Device Issuing CA");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        p.not_after = (SystemTime::now() + Duration::from_secs(3652 * 86_400)).into();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    /// A filled row's DER parses, carries the row's serial, device id and validity,
    /// and names the CRL shard the service's own function assigns to its serial.
    #[test]
    fn filled_certificates_carry_their_row() {
        let mut config = Config::default();
        config.crl.shards = 16;
        let ca = ca_der();
        let oid = ObjectIdentifier::new("1.3.6.1.4.1.59999.1.1").unwrap();
        let templates = Templates::build(&config, "device", &ca, &[oid], 11).unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca).unwrap();
        let urls = PublicUrls::new(&config);
        let issued = templates.issued_at - 400 * 86_400;
        for n in 0..64 {
            let serial = ca_service::profile::random_serial();
            let id = format!("SN-{n:08}");
            let row = templates.cert(0, &serial, &id, issued).unwrap();
            assert_eq!(row.fingerprint, ca_service::issuance::sha256_hex(&row.der));
            assert_eq!(row.crl_shard, urls.shard_for(&serial));
            let (rest, cert) = x509_parser::parse_x509_certificate(&row.der).unwrap();
            assert!(rest.is_empty());
            assert_eq!(cert.raw_serial(), serial);
            assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
            assert_eq!(cert.subject().iter_common_name().next().unwrap().as_str().unwrap(), id);
            assert!(row.subject.contains(&id) && !row.subject.contains("ZZZ"), "{}", row.subject);
            assert_eq!(find_all(&row.der, id.as_bytes()).len(), find_all(&row.der, b"SN-").len());
            assert_eq!(cert.validity().not_before.timestamp(), row.not_before);
            assert_eq!(cert.validity().not_after.timestamp(), row.not_after);
            assert_eq!(
                row.not_after - row.not_before,
                templates.by[&(0, 0)].not_after - templates.by[&(0, 0)].not_before
            );
            let dp = cert.extensions().iter().find_map(|e| match e.parsed_extension() {
                ParsedExtension::CRLDistributionPoints(points) => {
                    points.points.first().and_then(|p| match &p.distribution_point {
                        Some(DistributionPointName::FullName(names)) => names.iter().find_map(|g| match g {
                            GeneralName::URI(u) => Some(u.to_string()),
                            _ => None,
                        }),
                        _ => None,
                    })
                }
                _ => None,
            });
            assert_eq!(dp.unwrap(), urls.crl_of("device", urls.scope_of(row.crl_shard)).0);
        }
    }

    #[test]
    fn utc_time_is_what_der_encodes() {
        assert_eq!(&utc_time(0).unwrap(), b"700101000000Z");
        assert_eq!(&utc_time(1_764_880_245).unwrap(), b"251204203045Z");
        assert!(utc_time(2_524_608_000).is_err()); // 2050: GeneralizedTime
    }
}
