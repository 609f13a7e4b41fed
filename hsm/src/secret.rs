//! Secrets (PINs, passphrases, key-encryption keys) come from the environment or a
//! file, never from the TOML configuration, and are zeroized when dropped. A secret
//! file that group or others may access is refused, as ssh refuses such a private key.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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
                let mut bytes = read_secret_file(path)?;
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

/// Reads a whole secret file, refusing it if group or others may access it (checked on
/// the open file, so the file read is the file checked).
pub(crate) fn read_secret_file(path: &Path) -> Result<Vec<u8>, HsmError> {
    let cannot = |e: std::io::Error| HsmError::SecretUnavailable(format!("cannot read {}: {e}", path.display()));
    let mut file = File::open(path).map_err(cannot)?;
    refuse_open_mode(path, &file.metadata().map_err(cannot)?)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(cannot)?;
    Ok(bytes)
}

/// Checks that a secret file is accessible by its owner only (mode `0600` or `0400`;
/// no bit of `0077`). The error names the file and its mode.
pub fn check_secret_file(path: &Path) -> Result<(), HsmError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| HsmError::SecretUnavailable(format!("cannot read {}: {e}", path.display())))?;
    refuse_open_mode(path, &meta)
}

fn refuse_open_mode(path: &Path, meta: &Metadata) -> Result<(), HsmError> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(HsmError::SecretUnavailable(format!(
            "{} is accessible by group or others (mode {mode:04o}); a secret file must be readable by its owner \
             only (chmod 600 {})",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn secret_files_others_can_read_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "1234\n").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = SecretSource::File(path.clone()).load().unwrap_err().to_string();
            assert!(err.contains(&format!("mode {mode:04o}")) && err.contains(&path.display().to_string()), "{err}");
            assert!(check_secret_file(&path).is_err());
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(&*SecretSource::File(path.clone()).load().unwrap(), b"1234");
            check_secret_file(&path).unwrap();
        }
    }
}
