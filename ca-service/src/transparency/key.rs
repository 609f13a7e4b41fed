//! The audit log key as a signed-note signer: the key stays in its key store, which
//! signs each checkpoint; this only names it the way C2SP signed-note does.

use std::sync::Arc;

use hsm::{KeyAlgorithm, Signer};

/// Ed25519 SubjectPublicKeyInfo: a fixed 12-byte prefix, then the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The log's signing key with its note name and key ID.
#[derive(Debug, Clone)]
pub struct LogKey {
    signer: Arc<dyn Signer>,
    name: String,
    key_id: u32,
    verifier_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LogKeyError {
    #[error("the audit log key must be ed25519 or ecdsa-p256, not {0}")]
    Algorithm(KeyAlgorithm),
    #[error("the audit log key's public key is not a well-formed Ed25519 key")]
    PublicKey,
}

impl LogKey {
    /// `name` is the log's origin: checkpoints and the verifier key carry it.
    pub fn new(signer: Arc<dyn Signer>, name: &str) -> Result<Self, LogKeyError> {
        let spki = signer.public_key_der();
        let (key_id, verifier_key) = match signer.algorithm() {
            KeyAlgorithm::Ed25519 => {
                let raw = spki
                    .strip_prefix(&ED25519_SPKI_PREFIX[..])
                    .filter(|k| k.len() == 32)
                    .ok_or(LogKeyError::PublicKey)?;
                (tlog::key_id_ed25519(name, raw), tlog::verifier_key(name, tlog::SIG_ED25519, raw))
            }
            KeyAlgorithm::EcdsaP256 => (tlog::key_id_ecdsa(spki), tlog::verifier_key(name, tlog::SIG_ECDSA, spki)),
            other => return Err(LogKeyError::Algorithm(other)),
        };
        Ok(Self { signer, name: name.to_string(), key_id, verifier_key })
    }

    /// The verifier key (`name+keyid+key`) monitors and devices are configured with.
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    pub fn verifier(&self) -> Result<tlog::Verifier, tlog::Error> {
        tlog::Verifier::parse(&self.verifier_key)
    }

    pub fn is_slow(&self) -> bool {
        !self.signer.signs_in_microseconds()
    }
}

impl tlog::NoteSigner for LogKey {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Ed25519 signs the text itself; ECDSA P-256 signs its SHA-256 and returns the
    /// DER `Ecdsa-Sig-Value`, which is what note type 0x02 carries.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, tlog::SignError> {
        self.signer.sign(message).map_err(|e| tlog::SignError::from(e.to_string()))
    }
}
