//! Key custody for the device PKI.
//!
//! Every CA and signer key lives behind [`KeyStore`]: keys are generated inside the
//! store under a label, found again by label, and used through [`Signer`], which hands
//! out public keys and signatures but never private key bytes. Two backends:
//!
//! * [`pkcs11::Pkcs11KeyStore`] — a PKCS#11 token (SoftHSM2 in tests, a real HSM in
//!   production), with a pool of logged-in sessions so signing scales across cores.
//! * [`software::SoftwareKeyStore`] — the embedded default: PKCS#8 keys encrypted at
//!   rest with AES-256-GCM under a key derived (Argon2id) from a passphrase or read
//!   from a key file. [`software::SoftwareSigner::from_pkcs8_pem_file`] also loads a
//!   single signer from an operator-held, unencrypted PKCS#8 PEM file (OTA signing
//!   tools), outside any store.
//!
//! All calls are blocking (PKCS#11 is a blocking C API); async callers must run them on
//! a blocking thread pool (`tokio::task::spawn_blocking`), never on the runtime itself.

use std::fmt;
use std::sync::Arc;

mod label;
pub mod pkcs11;
mod secret;
pub mod software;
#[cfg(feature = "testing")]
pub mod testing;

pub use secret::{check_secret_file, SecretBytes, SecretSource};

/// Key types a CA or signer may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256, signatures ecdsa-with-SHA256.
    EcdsaP256,
    /// ECDSA on NIST P-384, signatures ecdsa-with-SHA384.
    EcdsaP384,
    /// Ed25519 (RFC 8410).
    Ed25519,
    /// RSA 3072-bit, signatures sha256WithRSAEncryption (PKCS#1 v1.5).
    Rsa3072,
}

impl KeyAlgorithm {
    /// All supported algorithms, for tests and help texts.
    pub const ALL: [KeyAlgorithm; 4] =
        [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa3072];

    /// The DER encoding of the AlgorithmIdentifier of the signatures this key makes.
    pub fn signature_algorithm_der(self) -> &'static [u8] {
        match self {
            // SEQUENCE { OID ecdsa-with-SHA256 }
            KeyAlgorithm::EcdsaP256 => &[0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
            // SEQUENCE { OID ecdsa-with-SHA384 }
            KeyAlgorithm::EcdsaP384 => &[0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
            // SEQUENCE { OID id-Ed25519 }
            KeyAlgorithm::Ed25519 => &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70],
            // SEQUENCE { OID sha256WithRSAEncryption, NULL }
            KeyAlgorithm::Rsa3072 => {
                &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00]
            }
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
        })
    }
}

/// A private key held by a [`KeyStore`]. It signs; it never reveals itself.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The label the key was generated under.
    fn label(&self) -> &str;
    /// The key type.
    fn algorithm(&self) -> KeyAlgorithm;
    /// The public key as a DER SubjectPublicKeyInfo.
    fn public_key_der(&self) -> &[u8];
    /// Signs `message` (the whole message: hashing is done here or in the token) and
    /// returns the signature as it goes into a certificate's signatureValue: DER
    /// `Ecdsa-Sig-Value` for ECDSA, 64 raw bytes for Ed25519, PKCS#1 v1.5 for RSA.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, HsmError>;
    /// The DER AlgorithmIdentifier that goes with [`Signer::sign`]'s output.
    fn signature_algorithm_der(&self) -> &'static [u8] {
        self.algorithm().signature_algorithm_der()
    }
    /// Whether [`Signer::sign`] takes microseconds and never waits on a device, so a
    /// caller on an async runtime may sign in place instead of handing the work to a
    /// blocking thread (a hop that costs more than such a signature). `false` unless
    /// the implementation knows better: tokens and RSA take milliseconds.
    fn signs_in_microseconds(&self) -> bool {
        false
    }
}

/// Where keys live.
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// Generates a new key pair inside the store. Fails with [`HsmError::KeyExists`]
    /// if the label is taken: keys are never silently replaced.
    fn generate(&self, label: &str, algorithm: KeyAlgorithm) -> Result<Arc<dyn Signer>, HsmError>;
    /// Finds an existing key by label.
    fn find(&self, label: &str) -> Result<Arc<dyn Signer>, HsmError>;
    /// Destroys the key labelled `label` (both halves, in a token), for a retired CA
    /// key whose last certificate has expired. [`HsmError::KeyNotFound`] if absent.
    /// There is no undo: callers check and audit first.
    fn destroy(&self, label: &str) -> Result<(), HsmError>;
    /// Checks that the store is reachable and usable (for readiness probes).
    fn ping(&self) -> Result<(), HsmError>;
    /// How busy the store's session pool is, for stores that have one (a token's
    /// sessions are few and a signature waits for one); `None` for those that do not.
    fn sessions(&self) -> Option<SessionUse> {
        None
    }
}

/// A session pool's use at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionUse {
    /// Sessions checked out (signing, generating, or being opened).
    pub in_use: usize,
    /// Sessions open, idle ones included.
    pub open: usize,
    /// The pool's size: at most this many sessions are ever open.
    pub max: usize,
}

/// Everything that can go wrong in key custody. Messages name the cause and never
/// contain secret material.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error("no key labelled '{0}' in the key store")]
    KeyNotFound(String),
    #[error("a key labelled '{0}' already exists in the key store")]
    KeyExists(String),
    #[error("no PKCS#11 token labelled '{0}' (check the token label and the module path)")]
    TokenNotFound(String),
    #[error("the PIN was refused by the token")]
    WrongPin,
    #[error("the passphrase or key file does not decrypt the key store")]
    WrongPassphrase,
    #[error("secret not available: {0}")]
    SecretUnavailable(String),
    #[error("the key store does not support {0}")]
    Unsupported(String),
    #[error("PKCS#11 module error: {0}")]
    Pkcs11(String),
    #[error("key store I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key store data is corrupt: {0}")]
    Corrupt(String),
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
}
