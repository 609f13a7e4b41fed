//! The `ca-service` command line.
//!
//! `args` declares the commands (clap); each command's code is in the module named
//! after it. `Ctx::open` prepares what they all share (configuration, logging, store,
//! key stores, audit actor) and [`run`] only dispatches. Helpers more than one command
//! uses are here, so a command module reads top to bottom on its own.

mod args;
mod audit;
mod ca;
mod crl;
mod devices;
mod est;
mod evaluation;
mod init;
mod issue;
mod log;
mod operators;
mod ota;
mod report;
mod revoke;
mod rotate;
mod serve;
mod stations;
mod tokens;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

pub use args::*;

use crate::config::{Config, ProfileConfig, ProfileKind};
use crate::hierarchy;
use crate::issuance::Pki;
use crate::keys::KeyStores;
use crate::store::{self, Store};

/// What every command starts from.
pub(crate) struct Ctx {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keys: Arc<KeyStores>,
    /// The audit actor: `cli:<user>`.
    pub(crate) actor: String,
    /// No configuration file: the embedded evaluation defaults.
    pub(crate) evaluation: bool,
    /// `serve` on SQLite: the lock that keeps a second server off the database, held
    /// until the process ends.
    pub(crate) serve_lock: Option<store::sqlite::ServeLock>,
}

impl Ctx {
    /// Loads the configuration (evaluation defaults without a file), starts logging,
    /// prepares the evaluation key-store passphrase for `init`/`serve`, and opens the
    /// store and the key stores.
    async fn open(config: Option<&Path>, command: &Command) -> anyhow::Result<Self> {
        let evaluation = config.is_none();
        let config = Arc::new(Config::load(config)?);
        // Commands print their results; only the server narrates what it does.
        let level = if matches!(command, Command::Serve) { "info" } else { "warn" };
        crate::init_logging(&config.server.log_format, level);
        if evaluation && matches!(command, Command::Init | Command::Serve) {
            evaluation::prepare_secret(&config)?;
        }
        config.check_secret_files()?;
        // One server per SQLite database; other commands are short and need no lock.
        let serve_lock = match store::sqlite_path(&config.storage.url) {
            Some(db) if matches!(command, Command::Serve) => Some(store::sqlite::ServeLock::acquire(&db)?),
            _ => None,
        };
        let store = store::open(&config.storage.url)
            .await
            .with_context(|| format!("opening storage {}", store::redact_url(&config.storage.url)))?;
        let keys = Arc::new(KeyStores::new(&config));
        let actor = format!("cli:{}", os_user());
        Ok(Self { config, store, keys, actor, evaluation, serve_lock })
    }

    /// Loads the CA hierarchy for issuing and signing.
    async fn pki(self) -> anyhow::Result<Pki> {
        Ok(Pki::load(self.config, self.store, self.keys).await?)
    }
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // The monitor runs anywhere: no configuration, no database, no keys.
    if let Command::Log { command: LogCommand::Monitor { url, key, state, token_file, ca_file } } = &cli.command {
        return log::monitor(url, key, state, token_file.as_deref(), ca_file.as_deref()).await;
    }
    let ctx = Ctx::open(cli.config.as_deref(), &cli.command).await?;
    match cli.command {
        Command::Init => init::run(ctx).await,
        Command::Serve => serve::run(ctx).await,
        Command::Issue { profile, csr, device_id, model, out } => {
            issue::run(ctx, profile, &csr, device_id, model, out.as_deref()).await
        }
        Command::Revoke { issuer, serial, device, batch, model, reason } => {
            revoke::run(ctx, issuer, serial, device, batch, model, &reason).await
        }
        Command::Rotate { device, batch, model, by, reason, after_deadline, key_exposure } => {
            let request = crate::rotation::Request { device, batch, model, by, reason, after_deadline, key_exposure };
            rotate::create(ctx, request).await
        }
        Command::Rotations { command } => rotate::rotations(ctx, command).await,
        Command::Crl { ca, days, out, pem } => crl::run(ctx, &ca, days, out.as_deref(), pem).await,
        Command::Ota { command } => ota::run(ctx, command).await,
        Command::Audit { command } => audit::run(ctx, command).await,
        Command::Report { report, within, group_by, profile, issuer, batch, model, after, limit, format } => {
            let params = crate::reports::ReportParams {
                within,
                group_by,
                profile,
                issuer,
                batch,
                model,
                after,
                limit,
                format: Some(format),
            };
            report::run(ctx, &report, params).await
        }
        Command::Log { command } => log::run(ctx, command).await,
        Command::Ca { command } => ca::run(ctx, command).await,
        Command::Devices { command } => devices::run(ctx, command).await,
        Command::Stations { command } => stations::run(ctx, command).await,
        Command::Operators { command } => operators::run(ctx, command).await,
        Command::Tokens { command } => tokens::run(ctx, command).await,
        Command::Est { command } => est::run(ctx, command).await,
    }
}

/// The operating-system user running this command (the audit actor is `cli:<user>`):
/// the name of the process's real uid in `/etc/passwd`; without an entry there (a
/// container's arbitrary uid), `$USER` or `$LOGNAME`; else `uid<N>`.
pub(crate) fn os_user() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").map(str::to_string)))
        .and_then(|ids| ids.split_whitespace().next().and_then(|u| u.parse::<u32>().ok()));
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let env = ["USER", "LOGNAME"].iter().find_map(|v| std::env::var(v).ok());
    user_name(uid, &passwd, env)
}

/// [`os_user`] from what it read: the uid, `/etc/passwd`'s text, `$USER`/`$LOGNAME`.
fn user_name(uid: Option<u32>, passwd: &str, env: Option<String>) -> String {
    let printable = |n: &str| !n.is_empty() && n.len() <= 64 && !n.chars().any(|c| c.is_control() || c == ':');
    let from_passwd = uid.and_then(|uid| {
        passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            let (name, _, id) = (fields.next()?, fields.next()?, fields.next()?);
            (id.parse::<u32>().ok() == Some(uid) && printable(name)).then(|| name.to_string())
        })
    });
    from_passwd
        .or_else(|| env.filter(|n| printable(n)))
        .or_else(|| uid.map(|u| format!("uid{u}")))
        .unwrap_or_else(|| "unknown".into())
}

/// Refuses commands that need the CA hierarchy before `init` made it.
async fn ensure_hierarchy(store: &dyn Store) -> anyhow::Result<()> {
    if store.list_cas().await?.is_empty() {
        return Err(hierarchy::HierarchyError::Missing.into());
    }
    Ok(())
}

/// Reads and checks a PKCS#10 request (PEM or DER), proof of possession included.
fn read_csr(path: &Path) -> anyhow::Result<enrollment::CheckedCsr> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    enrollment::check_csr(&bytes).with_context(|| format!("{}", path.display()))
}

/// The configured profile of a kind (the operator or the station profile).
fn profile_of_kind(config: &Config, kind: ProfileKind) -> Option<(&String, &ProfileConfig)> {
    config.profiles.iter().find(|(_, p)| p.kind == kind)
}

/// The credential key of the data directory, made now if there is none (tokens and
/// station secrets are hashed with it; `crate::credentials`).
fn credential_key(config: &Config) -> anyhow::Result<crate::credentials::CredentialKey> {
    let (key, created) = crate::credentials::CredentialKey::load_or_create(&config.data_dir)?;
    if created {
        eprintln!(
            "Created the credential key {} (mode 0600). Every instance that shares this database needs \
             the same file.",
            crate::credentials::CredentialKey::path(&config.data_dir).display()
        );
    }
    Ok(key)
}

/// Writes `text` to `path`, or to standard output without one.
fn write_out(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match path {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => std::io::stdout().write_all(text.as_bytes()).context("writing to standard output"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_actor_is_the_operating_system_user() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(user_name(Some(1000), passwd, Some("mallory".into())), "alice", "the uid decides");
        assert_eq!(user_name(Some(0), passwd, None), "root");
        assert_eq!(user_name(Some(4242), passwd, Some("bob".into())), "bob", "no passwd entry: the environment");
        assert_eq!(user_name(Some(4242), passwd, Some("a\nb".into())), "uid4242", "never a control character");
        assert_eq!(user_name(Some(4242), passwd, None), "uid4242");
        assert_eq!(user_name(None, "", None), "unknown");
        // This process: never `unknown` on Linux, whatever the environment says.
        assert_ne!(os_user(), "unknown");
    }
}
