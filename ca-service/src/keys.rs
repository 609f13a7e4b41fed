//! The configured key stores, opened on first use (a root's offline token need not
//! be present while the service runs), and the adapter that lets rcgen sign with a
//! key it never sees.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use der::Decode;
use hsm::pkcs11::{Pkcs11Config, Pkcs11KeyStore};
use hsm::software::{SoftwareConfig, SoftwareKeyStore, SoftwareSecret};
use hsm::{HsmError, KeyAlgorithm, KeyStore, Signer};

use crate::config::{Config, KeyStoreConfig};

/// Key stores by configured name, opened lazily and then kept.
#[derive(Debug)]
pub struct KeyStores {
    configs: BTreeMap<String, KeyStoreConfig>,
    open: Mutex<BTreeMap<String, Arc<dyn KeyStore>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("no key store named '{0}' in the configuration")]
    Unknown(String),
    // The cause is part of the message and deliberately not a `source` (thiserror
    // treats a field named so as one), so `{:#}` error chains print it once.
    #[error("key store '{store}': {cause}")]
    Hsm { store: String, cause: HsmError },
    #[error("key store '{store}': {message}")]
    Config { store: String, message: String },
}

impl KeyStores {
    pub fn new(config: &Config) -> Self {
        Self { configs: config.key_stores.clone(), open: Mutex::new(BTreeMap::new()) }
    }

    /// The named store, opening it (reading its PIN or passphrase) on first use.
    pub fn get(&self, name: &str) -> Result<Arc<dyn KeyStore>, KeyStoreError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = open.get(name) {
            return Ok(store.clone());
        }
        let cfg = self.configs.get(name).ok_or_else(|| KeyStoreError::Unknown(name.to_string()))?;
        let secret = cfg
            .secret_source()
            .map_err(|e| KeyStoreError::Config { store: name.to_string(), message: e.to_string() })?;
        let hsm_err = |source| KeyStoreError::Hsm { store: name.to_string(), cause: source };
        let store: Arc<dyn KeyStore> = match cfg {
            KeyStoreConfig::Software { dir, key_file, .. } => {
                let secret = if key_file.is_some() {
                    SoftwareSecret::KeyFile(secret)
                } else {
                    SoftwareSecret::Passphrase(secret)
                };
                Arc::new(SoftwareKeyStore::open(&SoftwareConfig::new(dir.clone(), secret)).map_err(hsm_err)?)
            }
            KeyStoreConfig::Pkcs11 { module, token_label, sessions, .. } => {
                let cfg = Pkcs11Config {
                    module: module.clone(),
                    token_label: token_label.clone(),
                    pin: secret,
                    sessions: sessions.unwrap_or_else(default_sessions),
                };
                Arc::new(Pkcs11KeyStore::open(&cfg).map_err(hsm_err)?)
            }
        };
        open.insert(name.to_string(), store.clone());
        Ok(store)
    }

    /// The stores opened so far, by name.
    pub fn opened(&self) -> Vec<(String, Arc<dyn KeyStore>)> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.iter().map(|(name, store)| (name.clone(), store.clone())).collect()
    }

    /// Finds a key, naming the store in the error. Its signatures are counted and
    /// timed (`crate::telemetry::signature`).
    pub fn find(&self, store: &str, label: &str) -> Result<Arc<dyn Signer>, KeyStoreError> {
        let key = self
            .get(store)?
            .find(label)
            .map_err(|source| KeyStoreError::Hsm { store: store.to_string(), cause: source })?;
        Ok(Metered::wrap(store, key))
    }

    /// Generates a key, naming the store in the error.
    pub fn generate(&self, store: &str, label: &str, alg: KeyAlgorithm) -> Result<Arc<dyn Signer>, KeyStoreError> {
        let key = self
            .get(store)?
            .generate(label, alg)
            .map_err(|source| KeyStoreError::Hsm { store: store.to_string(), cause: source })?;
        Ok(Metered::wrap(store, key))
    }
}

/// A key whose signatures are counted and timed, by store and label.
#[derive(Debug)]
struct Metered {
    store: String,
    key: Arc<dyn Signer>,
}

impl Metered {
    fn wrap(store: &str, key: Arc<dyn Signer>) -> Arc<dyn Signer> {
        Arc::new(Metered { store: store.to_string(), key })
    }
}

impl Signer for Metered {
    fn label(&self) -> &str {
        self.key.label()
    }
    fn algorithm(&self) -> KeyAlgorithm {
        self.key.algorithm()
    }
    fn public_key_der(&self) -> &[u8] {
        self.key.public_key_der()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        let started = std::time::Instant::now();
        let signed = self.key.sign(message);
        crate::telemetry::signature(&self.store, self.key.label(), signed.is_ok(), started.elapsed());
        signed
    }
    fn signature_algorithm_der(&self) -> &'static [u8] {
        self.key.signature_algorithm_der()
    }
    fn signs_in_microseconds(&self) -> bool {
        self.key.signs_in_microseconds()
    }
}

fn default_sessions() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// An HSM/software key presented to rcgen as a signing key.
#[derive(Debug, Clone)]
pub struct CaKey {
    signer: Arc<dyn Signer>,
    public_key_bits: Vec<u8>,
    algorithm: &'static rcgen::SignatureAlgorithm,
}

impl CaKey {
    pub fn new(signer: Arc<dyn Signer>) -> Result<Self, KeyStoreError> {
        let bad = |m: String| KeyStoreError::Config { store: signer.label().to_string(), message: m };
        let spki = spki::SubjectPublicKeyInfoRef::from_der(signer.public_key_der())
            .map_err(|e| bad(format!("public key does not parse: {e}")))?;
        let public_key_bits =
            spki.subject_public_key.as_bytes().ok_or_else(|| bad("public key has unused bits".into()))?.to_vec();
        Ok(Self { algorithm: rcgen_algorithm(signer.algorithm()), public_key_bits, signer })
    }

    pub fn signer(&self) -> &Arc<dyn Signer> {
        &self.signer
    }
}

/// The rcgen algorithm matching a key type (the signature schemes of `hsm` agree).
pub fn rcgen_algorithm(alg: KeyAlgorithm) -> &'static rcgen::SignatureAlgorithm {
    match alg {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        KeyAlgorithm::Rsa3072 => &rcgen::PKCS_RSA_SHA256,
    }
}

impl rcgen::PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key_bits
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

impl rcgen::SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.signer.sign(msg).map_err(|e| {
            tracing::error!(key = self.signer.label(), error = %e, "signing failed");
            rcgen::Error::RemoteKeyError
        })
    }
}
