//! The CA hierarchy (DESIGN §4): the key ceremony (`init`), external signing of a
//! CA (`ca csr` / `ca import`), and the delegated OCSP signers of the issuing CAs.

use std::sync::Arc;

use x509_parser::prelude::FromDer;

use crate::audit::AuditEvent;
use crate::config::Config;
use crate::issuance::{sha256_hex, IssueError, Pki};
use crate::keys::{CaKey, KeyStoreError, KeyStores};
use crate::profile::{self, PublicUrls, Subject};
use crate::store::{CaRecord, Store, StoreError};

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

    let urls = PublicUrls { base: config.public_base_url.clone() };
    let mut records: Vec<CaRecord> = Vec::new();
    for name in &order {
        let ca_cfg = config.cas[name].clone();
        let parent = ca_cfg.parent.as_ref().and_then(|p| records.iter().find(|r| &r.name == p)).cloned();
        let (keys2, name2, urls2) = (keys.clone(), name.clone(), urls.clone());
        let record = blocking(move || -> Result<CaRecord, HierarchyError> {
            let key = CaKey::new(keys2.generate(&ca_cfg.key_store, &ca_cfg.key_label, ca_cfg.algorithm)?)?;
            let parent_limit = match &parent {
                Some(p) => Some(not_after(&p.cert_der)?),
                None => None,
            };
            let window = profile::validity(ca_cfg.validity_days, parent_limit);
            let params = profile::ca_params(&name2, &ca_cfg, profile::random_serial(), window, &urls2)
                .map_err(|e| HierarchyError::Build(e.to_string()))?;
            let cert = match &parent {
                None => params.self_signed(&key),
                Some(p) => {
                    let pkey = CaKey::new(keys2.find(&p.key_store, &p.key_label)?)?;
                    let issuer = rcgen::Issuer::from_ca_cert_der(&p.cert_der.clone().into(), pkey)
                        .map_err(|e| HierarchyError::Build(e.to_string()))?;
                    params.signed_by(&key, &issuer)
                }
            }
            .map_err(|e| HierarchyError::Build(e.to_string()))?;
            Ok(CaRecord {
                name: name2,
                cert_der: cert.der().to_vec(),
                key_store: ca_cfg.key_store,
                key_label: ca_cfg.key_label,
                parent: ca_cfg.parent,
            })
        })
        .await?;
        let audit = AuditEvent::success(actor, "ca.create", format!("ca:{name}")).with_details(serde_json::json!({
            "subject": summaries(std::slice::from_ref(&record))[0].subject,
            "sha256_fingerprint": sha256_hex(&record.cert_der),
            "key": format!("{}:{}", record.key_store, record.key_label),
            "parent": record.parent,
        }));
        store.create_ca(&record, audit).await?;
        records.push(record);
    }

    issue_ocsp_signers(config, store, keys, actor).await?;
    Ok(summaries(&records))
}

/// Generates and certifies the delegated OCSP signer of each issuing CA.
async fn issue_ocsp_signers(
    config: Arc<Config>,
    store: Arc<dyn Store>,
    keys: Arc<KeyStores>,
    actor: &str,
) -> Result<(), HierarchyError> {
    let pki = Pki::load(config.clone(), store, keys.clone()).await?;
    for (name, ca) in &config.cas {
        if !ca.issuing {
            continue;
        }
        let Some((profile_name, profile)) = config.ocsp_profile_for(name) else {
            continue;
        };
        let (keys2, store_name, label) = (keys.clone(), ca.key_store.clone(), ocsp_key_label(name));
        let signer = blocking(move || Ok(keys2.generate(&store_name, &label, hsm::KeyAlgorithm::EcdsaP256)?)).await?;
        let subject = Subject::Named(format!("OCSP Signer for {name}"));
        pki.issue_checked(profile_name, profile, subject, signer.public_key_der(), actor).await?;
    }
    Ok(())
}

/// A CSR for a CA's existing key, to have it signed externally (e.g. by an offline
/// root on another system).
pub async fn ca_csr(
    config: &Config,
    store: &dyn Store,
    keys: Arc<KeyStores>,
    name: &str,
) -> Result<String, HierarchyError> {
    let ca_cfg = config.cas.get(name).ok_or_else(|| HierarchyError::UnknownCa(name.to_string()))?.clone();
    let (store_name, label) = match store.get_ca(name).await? {
        Some(r) => (r.key_store, r.key_label),
        None => (ca_cfg.key_store.clone(), ca_cfg.key_label.clone()),
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

/// Installs an externally signed certificate for a CA after checking that it
/// certifies the CA's key, is a CA certificate, and is currently valid.
pub async fn ca_import(
    config: &Config,
    store: &dyn Store,
    keys: Arc<KeyStores>,
    name: &str,
    cert_input: &[u8],
    actor: &str,
) -> Result<CaSummary, HierarchyError> {
    let der = if cert_input.trim_ascii_start().starts_with(b"-----BEGIN") {
        pem::parse(cert_input).map_err(|e| HierarchyError::BadCertificate(e.to_string()))?.into_contents()
    } else {
        cert_input.to_vec()
    };
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)
        .map_err(|e| HierarchyError::BadCertificate(format!("does not parse: {e}")))?;
    if !cert.is_ca() {
        return Err(HierarchyError::BadCertificate("not a CA certificate (basicConstraints cA is not TRUE)".into()));
    }
    if !cert.validity().is_valid() {
        return Err(HierarchyError::BadCertificate("not valid now (expired or not yet valid)".into()));
    }
    let ca_cfg = config.cas.get(name).ok_or_else(|| HierarchyError::UnknownCa(name.to_string()))?;
    let existing = store.get_ca(name).await?;
    let (store_name, label) = match &existing {
        Some(r) => (r.key_store.clone(), r.key_label.clone()),
        None => (ca_cfg.key_store.clone(), ca_cfg.key_label.clone()),
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
            if o.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(Some(o.public_key())).is_ok() {
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
            let r = CaRecord { name: name.to_string(), cert_der: der, key_store: store_name, key_label: label, parent };
            store.create_ca(&r, audit).await?;
            r
        }
    };
    Ok(summaries(std::slice::from_ref(&record)).remove(0))
}

fn not_after(der: &[u8]) -> Result<std::time::SystemTime, HierarchyError> {
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| HierarchyError::Build(format!("parent certificate: {e}")))?;
    let secs = u64::try_from(c.validity().not_after.timestamp()).unwrap_or(0);
    Ok(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// Runs key-store work on the blocking pool (PKCS#11 calls block).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HierarchyError> + Send + 'static,
) -> Result<T, HierarchyError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| HierarchyError::Build(format!("key store task: {e}")))?
}
