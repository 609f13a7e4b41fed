//! The `ca-service` command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::audit;
use crate::config::{Config, KeyStoreConfig};
use crate::hierarchy;
use crate::issuance::{IssueRequest, Pki};
use crate::keys::KeyStores;
use crate::store::{self, Store};

#[derive(Debug, Parser)]
#[command(name = "ca-service", version, about = "Device PKI: CA hierarchy, issuance, audit")]
pub struct Cli {
    /// Configuration file (TOML). Without it the embedded evaluation defaults are used:
    /// SQLite and software keys under ./pki-data. Every key can be overridden by a
    /// CA_… environment variable (CA_STORAGE__URL, CA_SERVER__HTTP, …).
    #[arg(long, global = true, env = "CA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the CA hierarchy (keys in the configured key stores). Refuses to
    /// overwrite an existing one.
    Init,
    /// Run the HTTP (public) and HTTPS listeners.
    Serve,
    /// Issue one certificate from a CSR (batch/offline issuance); prints the PEM chain.
    Issue {
        #[arg(long)]
        profile: String,
        /// PKCS#10 request, PEM or DER.
        #[arg(long)]
        csr: PathBuf,
        /// Device id (device profile; default: the CSR's commonName).
        #[arg(long)]
        device_id: Option<String>,
        /// Device model (device profile; default: the profile's default model).
        #[arg(long)]
        model: Option<String>,
        /// Write the chain here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Audit log commands.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// CA commands.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain and name the first broken entry.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// List the CAs with subject and SHA-256 fingerprint.
    List,
    /// Write a CSR for a CA's key, to have it signed externally.
    Csr {
        #[arg(long)]
        ca: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Install an externally signed certificate for a CA (checked against its key).
    Import {
        #[arg(long)]
        ca: String,
        #[arg(long)]
        cert: PathBuf,
    },
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let evaluation = cli.config.is_none();
    let config = Arc::new(Config::load(cli.config.as_deref())?);
    // Commands print their results; only the server narrates what it does.
    let level = if matches!(cli.command, Command::Serve) { "info" } else { "warn" };
    crate::init_logging(&config.server.log_format, level);
    if evaluation && matches!(cli.command, Command::Init | Command::Serve) {
        prepare_evaluation_secret(&config)?;
    }
    let store = store::open(&config.storage.url)
        .await
        .with_context(|| format!("opening storage {}", store::redact_url(&config.storage.url)))?;
    let keys = Arc::new(KeyStores::new(&config));
    let actor = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));

    match cli.command {
        Command::Init => {
            let cas = hierarchy::init(config, store, keys, &actor).await?;
            println!("Created the CA hierarchy:");
            for ca in cas {
                println!("{ca}");
            }
        }
        Command::Serve => {
            if store.list_cas().await?.is_empty() {
                if !evaluation {
                    return Err(hierarchy::HierarchyError::Missing.into());
                }
                eprintln!("No CA hierarchy yet: creating the default one (evaluation mode).");
                for ca in hierarchy::init(config.clone(), store.clone(), keys.clone(), "system:first-start").await? {
                    eprintln!("{ca}");
                }
            }
            let pki = Arc::new(Pki::load(config, store, keys).await?);
            crate::server::serve(pki).await?;
        }
        Command::Issue { profile, csr, device_id, model, out } => {
            ensure_hierarchy(store.as_ref()).await?;
            let bytes = std::fs::read(&csr).with_context(|| format!("reading {}", csr.display()))?;
            let csr = enrollment::check_csr(&bytes).with_context(|| format!("{}", csr.display()))?;
            let pki = Pki::load(config, store, keys).await?;
            let issued = pki.issue(IssueRequest { profile, csr, device_id, model, actor }).await?;
            write_out(out.as_deref(), &issued.chain_pem())?;
            eprintln!(
                "issued serial {} ({}), SHA-256 {}",
                hex::encode(&issued.record.serial),
                issued.record.subject,
                issued.record.fingerprint
            );
        }
        Command::Audit { command: AuditCommand::Verify } => verify_audit(store.as_ref()).await?,
        Command::Ca { command } => match command {
            CaCommand::List => {
                ensure_hierarchy(store.as_ref()).await?;
                for ca in hierarchy::summaries(&store.list_cas().await?) {
                    println!("{ca}");
                }
            }
            CaCommand::Csr { ca, out } => {
                let pem = hierarchy::ca_csr(&config, store.as_ref(), keys, &ca).await?;
                write_out(out.as_deref(), &pem)?;
            }
            CaCommand::Import { ca, cert } => {
                let bytes = std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
                let summary = hierarchy::ca_import(&config, store.as_ref(), keys, &ca, &bytes, &actor).await?;
                println!("Installed:\n{summary}");
            }
        },
    }
    Ok(())
}

async fn ensure_hierarchy(store: &dyn Store) -> anyhow::Result<()> {
    if store.list_cas().await?.is_empty() {
        return Err(hierarchy::HierarchyError::Missing.into());
    }
    Ok(())
}

async fn verify_audit(store: &dyn Store) -> anyhow::Result<()> {
    let report = audit::verify_store(store).await?;
    println!(
        "audit log intact: {} entries, head {}; all {} certificates and every CA have their entries",
        report.entries,
        hex::encode(report.head),
        report.certificates
    );
    Ok(())
}

fn write_out(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match path {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => std::io::stdout().write_all(text.as_bytes()).context("writing to standard output"),
    }
}

/// In evaluation mode (no config file) the software key store's passphrase is
/// generated on first use into a 0600 file. Anyone who can read that file can use
/// the CA keys: fine for trying the service, not for production.
fn prepare_evaluation_secret(config: &Config) -> anyhow::Result<()> {
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
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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
