//! The CA hierarchy (DESIGN §4): the key ceremony (`init`), external signing of a
//! CA (`ca csr` / `ca import`), and the delegated OCSP signers of the issuing CAs.

use std::sync::Arc;

use x509_parser::prelude::FromDer;

use crate::audit::AuditEvent;
use crate::config::Config;
use crate::issuance::{issuance_event, sha256_hex, EndEntity, IssueError};
use crate::keys::{CaKey, KeyStoreError, KeyStores};
use crate::profile::{self, PublicUrls, Subject};
use crate::store::{CaRecord, Issuance, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum HierarchyError {
    #[error("a CA hierarchy already exists ({0} CAs); refusing to overwrite it")]
    Exists(usize),
    #[error("no CA hierarchy in the database: run `ca-service init` first")]
    Missing,
    #[error(
        "key '{label}' already exists in key store '{store}': remove it or configure another key_label before init"
    )]
    KeyPresent { store: String, label: String },
    #[error("unknown CA '{0}'")]
    UnknownCa(String),
    #[error("certificate refused: {0}")]
    BadCertificate(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Key(#[from] KeyStoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error("building CA certificate: {0}")]
    Build(String),
}

/// One line of `ca list` / `init` output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaSummary {
    pub name: String,
    pub subject: String,
    pub sha256_fingerprint: String,
    pub parent: Option<String>,
    pub key: String,
}

impl std::fmt::Display for CaSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<18} {}\n{:<18} SHA-256 {}\n{:<18} issuer: {}, key: {}",
            self.name,
            self.subject,
            "",
            self.sha256_fingerprint,
            "",
            self.parent.as_deref().unwrap_or("(self-signed root)"),
            self.key
        )
    }
}

/// Summaries of the stored CAs, in creation order.
pub fn summaries(records: &[CaRecord]) -> Vec<CaSummary> {
    records
        .iter()
        .map(|r| CaSummary {
            name: r.name.clone(),
            subject: x509_parser::certificate::X509Certificate::from_der(&r.cert_der)
                .map(|(_, c)| c.subject().to_string())
                .unwrap_or_else(|_| "(unparseable certificate)".into()),
            sha256_fingerprint: colon_hex(&sha256_hex(&r.cert_der)),
            parent: r.parent.clone(),
            key: format!("{}:{}", r.key_store, r.key_label),
        })
        .collect()
}

fn colon_hex(hex: &str) -> String {
    hex.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).to_uppercase()).collect::<Vec<_>>().join(":")
}

/// The stored name of key generation `n` of the configured CA `ca`: `ca` itself for
/// its first key, `ca.n` for the keys that rollovers gave it. Configured CA names
/// have no '.' (the configuration refuses them), so the two never collide, and a
/// generation's CRL, OCSP signer and certificates are those of a CA of that name.
pub fn generation_name(ca: &str, n: u32) -> String {
    if n <= 1 {
        ca.to_string()
    } else {
        format!("{ca}.{n}")
    }
}

/// (configured CA, generation) of a stored CA name: the inverse of
/// [`generation_name`]. A name without a generation suffix is generation 1.
pub fn generation_of(name: &str) -> (&str, u32) {
    match name.rsplit_once('.') {
        Some((ca, n)) if !ca.is_empty() && !n.starts_with('0') => match n.parse::<u32>() {
            Ok(n) if n >= 2 => (ca, n),
            _ => (name, 1),
        },
        _ => (name, 1),
    }
}

/// The key label of generation `n` of a CA whose first key is `label`.
pub fn generation_label(label: &str, n: u32) -> String {
    if n <= 1 {
        label.to_string()
    } else {
        format!("{label}.{n}")
    }
}

/// Label of an issuing CA's OCSP-signer key.
pub fn ocsp_key_label(ca: &str) -> String {
    format!("ocsp-{ca}")
}

/// The key ceremony: generates every CA key in its configured store, builds the
/// hierarchy, stores it with audit entries, then issues each issuing CA's delegated
/// OCSP signer. Refuses if any CA exists or any key label is taken, before creating
/// anything.
pub async fn init(
    config: Arc<Config>,
    store: Arc<dyn Store>,
    keys: Arc<KeyStores>,
    actor: &str,
) -> Result<Vec<CaSummary>, HierarchyError> {
    let existing = store.list_cas().await?;
    if !existing.is_empty() {
        return Err(HierarchyError::Exists(existing.len()));
    }
    let order = config.ca_creation_order().map_err(|e| HierarchyError::Build(e.to_string()))?;

    let mut labels = Vec::new();
    for name in &order {
        let ca = &config.cas[name];
        labels.push((ca.key_store.clone(), ca.key_label.clone()));
        if ca.issuing {
            labels.push((ca.key_store.clone(), ocsp_key_label(name)));
        }
    }
    {
        let (keys, labels) = (keys.clone(), labels.clone());
        blocking(move || {
            for (store, label) in labels {
                match keys.find(&store, &label) {
                    Ok(_) => return Err(HierarchyError::KeyPresent { store, label }),
                    Err(KeyStoreError::Hsm { cause: hsm::HsmError::KeyNotFound(_), .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })
        .await?;
    }

    let urls = PublicUrls::new(&config);
    let (config2, order2, actor2) = (config.clone(), order.clone(), actor.to_string());
    // Keys are generated and everything is signed first; the database sees the
    // whole ceremony in one transaction, or nothing.
    let (cas, certificates) = blocking(move || {
        let mut built: Vec<(CaRecord, CaKey)> = Vec::new();
        for name in &order2 {
            let ca_cfg = config2.cas[name].clone();
            let key = CaKey::new(keys.generate(&ca_cfg.key_store, &ca_cfg.key_label, ca_cfg.algorithm)?)?;
            let parent = ca_cfg.parent.as_ref().and_then(|p| built.iter().find(|(r, _)| &r.name == p));
            let window = profile::validity(
                ca_cfg.validity_days,
                match parent {
                    Some((p, _)) => Some(not_after(&p.cert_der)?),
                    None => None,
                },
            );
            let params = profile::ca_params(name, &ca_cfg, profile::random_serial(), window, &urls)
                .map_err(|e| HierarchyError::Build(e.to_string()))?;
            let cert = match parent {
                None => params.self_signed(&key),
                Some((p, pkey)) => params.signed_by(&key, &issuer_for(p, pkey.clone())?),
            }
            .map_err(|e| HierarchyError::Build(e.to_string()))?;
            let record = CaRecord {
                name: name.clone(),
                cert_der: cert.der().to_vec(),
                key_store: ca_cfg.key_store,
                key_label: ca_cfg.key_label,
                parent: ca_cfg.parent,
                ..CaRecord::default()
            };
            built.push((record, key));
        }

        // The delegated OCSP signer of each issuing CA.
        let mut certificates = Vec::new();
        for (record, key) in &built {
            let ca_cfg = &config2.cas[&record.name];
            let Some((profile_name, profile)) = config2.ocsp_profile_for(&record.name).filter(|_| ca_cfg.issuing)
            else {
                continue;
            };
            let signer =
                keys.generate(&ca_cfg.key_store, &ocsp_key_label(&record.name), hsm::KeyAlgorithm::EcdsaP256)?;
            let request = EndEntity {
                profile_name: profile_name.clone(),
                profile: profile.clone(),
                subject: Subject::Named(format!("OCSP Signer for {}", record.name)),
                public_key_der: signer.public_key_der().to_vec(),
            };
            let cert = request.sign(
                &record.name,
                &issuer_for(record, key.clone())?,
                not_after(&record.cert_der)?,
                profile::random_serial(),
                &urls,
            )?;
            let audit = issuance_event(&actor2, &cert);
            certificates.push(Issuance::new(cert, audit));
        }
        let cas: Vec<(CaRecord, AuditEvent)> = built
            .into_iter()
            .map(|(record, _)| {
                let audit = AuditEvent::success(&actor2, "ca.create", format!("ca:{}", record.name)).with_details(
                    serde_json::json!({
                        "subject": summaries(std::slice::from_ref(&record))[0].subject,
                        "sha256_fingerprint": sha256_hex(&record.cert_der),
                        "key": format!("{}:{}", record.key_store, record.key_label),
                        "parent": record.parent,
                    }),
                );
                (record, audit)
            })
            .collect();
        Ok((cas, certificates))
    })
    .await?;

    store.create_hierarchy(&cas, &certificates).await?;
    let records: Vec<CaRecord> = cas.into_iter().map(|(r, _)| r).collect();
    Ok(summaries(&records))
}

pub(crate) fn issuer_for(record: &CaRecord, key: CaKey) -> Result<rcgen::Issuer<'static, CaKey>, HierarchyError> {
    rcgen::Issuer::from_ca_cert_der(&record.cert_der.clone().into(), key)
        .map_err(|e| HierarchyError::Build(format!("CA '{}' cannot act as issuer: {e}", record.name)))
}

/// A CSR for a CA's existing key, to have it signed externally (e.g. by an offline
/// root on another system).
pub async fn ca_csr(
    config: &Config,
    store: &dyn Store,
    keys: Arc<KeyStores>,
    name: &str,
) -> Result<String, HierarchyError> {
    let (family, n) = generation_of(name);
    let ca_cfg = config.cas.get(family).ok_or_else(|| HierarchyError::UnknownCa(name.to_string()))?.clone();
    let (store_name, label) = match store.get_ca(name).await? {
        Some(r) => (r.key_store, r.key_label),
        None => (ca_cfg.key_store.clone(), generation_label(&ca_cfg.key_label, n)),
    };
    blocking(move || {
        let key = CaKey::new(keys.find(&store_name, &label)?)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name =
            profile::parse_subject(&ca_cfg.subject).map_err(|e| HierarchyError::Build(e.to_string()))?;
        let csr = params.serialize_request(&key).map_err(|e| HierarchyError::Build(e.to_string()))?;
        csr.pem().map_err(|e| HierarchyError::Build(e.to_string()))
    })
    .await
}

/// Installs an externally signed certificate for a CA (or for a key generation a
/// rollover left waiting for it, which then issues from `issues_from`, default now)
/// after checking that it certifies the CA's key, is a CA certificate, and is
/// currently valid. A refusal is audited with its reason.
pub async fn ca_import(
    config: &Config,
    store: &dyn Store,
    keys: Arc<KeyStores>,
    name: &str,
    cert_input: &[u8],
    issues_from: Option<i64>,
    actor: &str,
) -> Result<CaSummary, HierarchyError> {
    crate::rollover::audited(store, actor, "ca.import", &format!("ca:{name}"), async {
        let der = if cert_input.trim_ascii_start().starts_with(b"-----BEGIN") {
            pem::parse(cert_input).map_err(|e| HierarchyError::BadCertificate(e.to_string()))?.into_contents()
        } else {
            cert_input.to_vec()
        };
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)
            .map_err(|e| HierarchyError::BadCertificate(format!("does not parse: {e}")))?;
        if !cert.is_ca() {
            return Err(HierarchyError::BadCertificate(
                "not a CA certificate (basicConstraints cA is not TRUE)".into(),
            ));
        }
        if !cert.validity().is_valid() {
            return Err(HierarchyError::BadCertificate("not valid now (expired or not yet valid)".into()));
        }
        let (family, n) = generation_of(name);
        let ca_cfg = config.cas.get(family).ok_or_else(|| HierarchyError::UnknownCa(name.to_string()))?;
        let existing = store.get_ca(name).await?;
        let (store_name, label) = match &existing {
            Some(r) => (r.key_store.clone(), r.key_label.clone()),
            None => (ca_cfg.key_store.clone(), generation_label(&ca_cfg.key_label, n)),
        };
        let signer = {
            let (k, s, l) = (keys.clone(), store_name.clone(), label.clone());
            blocking(move || Ok(k.find(&s, &l)?)).await?
        };
        if signer.public_key_der() != cert.public_key().raw {
            return Err(HierarchyError::BadCertificate(format!(
                "it certifies a different public key than CA '{name}' holds in {store_name}:{label}"
            )));
        }
        // The parent is whichever stored CA actually signed it; an external issuer
        // (another organisation's or an offline root elsewhere) leaves it empty.
        let mut parent = None;
        for other in store.list_cas().await? {
            if other.name == name {
                continue;
            }
            if let Ok((_, o)) = x509_parser::certificate::X509Certificate::from_der(&other.cert_der) {
                if o.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(Some(o.public_key())).is_ok()
                {
                    parent = Some(other.name.clone());
                    break;
                }
            }
        }
        let audit = AuditEvent::success(actor, "ca.import", format!("ca:{name}")).with_details(serde_json::json!({
            "subject": cert.subject().to_string(),
            "issuer": cert.issuer().to_string(),
            "parent": parent,
            "sha256_fingerprint": sha256_hex(&der),
        }));
        let record = match existing {
            Some(mut r) => {
                store.update_ca_certificate(name, &der, parent.as_deref(), audit).await?;
                r.cert_der = der;
                r.parent = parent;
                r
            }
            None => {
                let r = CaRecord {
                    name: name.to_string(),
                    cert_der: der,
                    key_store: store_name,
                    key_label: label,
                    parent,
                    // A later generation takes over from its predecessor at a set time.
                    issues_from: (n > 1)
                        .then(|| issues_from.unwrap_or_else(|| crate::issuance::unix(std::time::SystemTime::now()))),
                    ..CaRecord::default()
                };
                store.create_ca(&r, audit).await?;
                r
            }
        };
        Ok(summaries(std::slice::from_ref(&record)).remove(0))
    })
    .await
}

pub(crate) fn not_after(der: &[u8]) -> Result<std::time::SystemTime, HierarchyError> {
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| HierarchyError::Build(format!("parent certificate: {e}")))?;
    let secs = u64::try_from(c.validity().not_after.timestamp()).unwrap_or(0);
    Ok(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// Runs key-store work on the blocking pool (PKCS#11 calls block).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HierarchyError> + Send + 'static,
) -> Result<T, HierarchyError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| HierarchyError::Build(format!("key store task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_names_round_trip_and_never_shadow_a_configured_name() {
        for (ca, n) in [("device", 1), ("device", 2), ("update-root", 17), ("a_b", 4_000_000)] {
            assert_eq!(generation_of(&generation_name(ca, n)), (ca, n));
        }
        assert_eq!(generation_name("device", 1), "device");
        assert_eq!(generation_label("ca-device", 3), "ca-device.3");
        // Not a generation suffix: the whole name is the CA's first key.
        for name in ["device.1", "device.0", "device.02", "device.x", ".2", "device.", "device.99999999999"] {
            assert_eq!(generation_of(name), (name, 1), "{name}");
        }
    }
}
