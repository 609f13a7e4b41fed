//! Evaluation mode (no configuration file): the software key store's passphrase is
//! generated on first use, so `init` and `serve` work out of the box.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};

use crate::config::{Config, KeyStoreConfig};

/// In evaluation mode (no config file) the software key store's passphrase is
/// generated on first use into a 0600 file. Anyone who can read that file can use
/// the CA keys: fine for trying the service, not for production.
pub(super) fn prepare_secret(config: &Config) -> anyhow::Result<()> {
    for ks in config.key_stores.values() {
        let KeyStoreConfig::Software { dir, passphrase_file: Some(path), passphrase_env: None, key_file: None } = ks
        else {
            continue;
        };
        // Never invent a passphrase for a store that already holds keys: that would
        // only hide the real problem (the passphrase file went missing).
        if path.exists() || dir.join("keystore.json").exists() {
            continue;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            // The data directory: the owner's only, whatever the umask.
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let secret = zeroize::Zeroizing::new(hex::encode(rand::random::<[u8; 32]>()));
        write_private_file(path, secret.as_bytes())?;
        eprintln!(
            "WARNING: evaluation mode. Generated the key-store passphrase into {} (mode 0600).\n\
             Anyone who can read it can use the CA keys. For production use a config file\n\
             with PKCS#11 or a passphrase from the environment (see README).",
            path.display()
        );
    }
    Ok(())
}

fn write_private_file(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data).and_then(|_| f.sync_all()).with_context(|| format!("writing {}", path.display()))?;
    if std::fs::metadata(path)?.len() != data.len() as u64 {
        bail!("short write to {}", path.display());
    }
    Ok(())
}
