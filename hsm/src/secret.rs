//! Secrets (PINs, passphrases, key-encryption keys) come from the environment or a
//! file, never from the TOML configuration, and are zeroized when dropped.

use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::HsmError;

/// Secret bytes that are wiped from memory when dropped.
pub type SecretBytes = Zeroizing<Vec<u8>>;

/// Where a secret is read from: an environment variable or a file (the file's
/// contents, with one trailing newline removed).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// The name of an environment variable holding the secret.
    Env(String),
    /// A file holding the secret.
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret now.
    pub fn load(&self) -> Result<SecretBytes, HsmError> {
        match self {
            SecretSource::Env(var) => match std::env::var_os(var) {
                Some(v) => Ok(Zeroizing::new(v.into_encoded_bytes())),
                None => Err(HsmError::SecretUnavailable(format!("environment variable {var} is not set"))),
            },
            SecretSource::File(path) => {
                let mut bytes = std::fs::read(path)
                    .map_err(|e| HsmError::SecretUnavailable(format!("cannot read {}: {e}", path.display())))?;
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                    if bytes.last() == Some(&b'\r') {
                        bytes.pop();
                    }
                }
                Ok(Zeroizing::new(bytes))
            }
        }
    }
}
