//! The transparency log: the audit trail as an RFC 6962 Merkle tree whose
//! checkpoints are signed with the audit log key (docs/0010).
//!
//! * **Leaves** are the audit entries, written with their leaf hash in the
//!   transaction that records them ([`crate::audit`]).
//! * **The checkpoint job** ([`job`]), on one instance at a time, checks the entries
//!   added since the last checkpoint against their leaf hashes, stores the hashes of
//!   the newly complete subtrees, checks that the tree still has the root the last
//!   checkpoint signed, and signs a C2SP checkpoint for the new size — at most once
//!   per `log.checkpoint_interval_ms`, and on demand. A signed size never shrinks, and
//!   a tree that no longer extends the last checkpoint is never signed.
//! * **Tiles** ([`serve`]) are served as C2SP tlog-tiles under `/log/`.
//! * **Outside the database**, `ca-service log monitor` and `audit verify --checkpoint`
//!   ([`verify`], [`monitor`]) hold earlier checkpoints and prove the log only grew.
//!
//! What the log proves and what it does not: a rewrite, a truncation or a fork of the
//! stored log is caught by anyone holding an earlier checkpoint; the holder of the log
//! key could sign a fork, which only monitors comparing checkpoints catch.

pub mod job;
pub mod key;
pub mod monitor;
pub mod proof;
pub mod serve;
pub mod tree;
pub mod verify;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use crate::audit::AuditEvent;
use crate::config::Config;
use crate::keys::{KeyStoreError, KeyStores};
use crate::store::{Store, StoredCheckpoint};

pub use key::LogKey;

/// The transparency log of one service instance.
#[derive(Debug)]
pub struct TransparencyLog {
    store: Arc<dyn Store>,
    key: LogKey,
    origin: String,
    /// Where this instance keeps the newest checkpoint it has seen, outside the
    /// database: a database whose checkpoints were deleted cannot make it sign a fork.
    local: PathBuf,
    latest: RwLock<Option<Arc<StoredCheckpoint>>>,
    /// Wakes the job for an on-demand checkpoint.
    wake: Notify,
    /// Signals a new checkpoint to on-demand waiters.
    signed: Notify,
    interval: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Key(#[from] KeyStoreError),
    #[error(transparent)]
    LogKey(#[from] key::LogKeyError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Tree(#[from] tree::TreeError),
    #[error(transparent)]
    Tlog(#[from] tlog::Error),
    #[error("the audit log key is missing from key store '{0}' but the log has signed checkpoints: restore the key (a new key would be a new log, and every monitor would refuse it)")]
    KeyLost(String),
    /// The stored log no longer extends a checkpoint that was signed: entries were
    /// deleted, edited or rewritten. Nothing is signed until someone looks.
    #[error("the audit log does not extend checkpoint {size}: {why}; no checkpoint will be signed (run `ca-service audit verify`)")]
    Inconsistent { size: u64, why: String },
    #[error("the signing task failed: {0}")]
    Task(String),
    #[error("log.origin is '{configured}' but the log's checkpoints are signed as '{signed}'; monitors pin the origin, so it cannot change")]
    Origin { configured: String, signed: String },
    #[error("no checkpoint covers entry {0} yet")]
    NotYet(u64),
}

impl TransparencyLog {
    /// Opens the log with its key (which must exist: `init` creates it, `serve`
    /// creates it for a log that never had one).
    pub async fn open(config: &Config, store: Arc<dyn Store>, keys: &Arc<KeyStores>) -> Result<Arc<Self>, LogError> {
        let (ks, label) = (config.log_key_store(), config.log.key_label.clone());
        let keys = keys.clone();
        let signer = tokio::task::spawn_blocking(move || keys.find(&ks, &label))
            .await
            .map_err(|e| LogError::Task(e.to_string()))??;
        let latest = store.latest_checkpoint().await?.map(Arc::new);
        let origin = pinned_origin(config, latest.as_deref())?;
        let key = LogKey::new(signer, &origin)?;
        Ok(Arc::new(Self {
            store,
            key,
            origin,
            local: config.data_dir.join("log-checkpoint"),
            latest: RwLock::new(latest),
            wake: Notify::new(),
            signed: Notify::new(),
            interval: std::time::Duration::from_millis(config.log.checkpoint_interval_ms),
        }))
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn verifier_key(&self) -> &str {
        self.key.verifier_key()
    }

    /// The newest checkpoint this instance knows of.
    pub fn latest(&self) -> Option<Arc<StoredCheckpoint>> {
        self.latest.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The newest checkpoint in the store (another instance may have signed it).
    pub async fn refresh(&self) -> Result<Option<Arc<StoredCheckpoint>>, LogError> {
        if let Some(stored) = self.store.latest_checkpoint().await? {
            self.observe(stored);
        }
        Ok(self.latest())
    }

    fn observe(&self, cp: StoredCheckpoint) {
        let mut latest = self.latest.write().unwrap_or_else(|p| p.into_inner());
        if latest.as_ref().is_none_or(|l| l.size < cp.size) {
            *latest = Some(Arc::new(cp));
        }
    }

    /// A checkpoint whose tree contains entry `seq`, signing one now if need be (on
    /// this instance if it can take the job lock, else by waiting for the instance
    /// that holds it), within `wait`.
    pub async fn checkpoint_covering(
        &self,
        seq: i64,
        wait: std::time::Duration,
    ) -> Result<Arc<StoredCheckpoint>, LogError> {
        let need = u64::try_from(seq).unwrap_or(0);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(cp) = self.refresh().await?.filter(|cp| cp.size >= need) {
                return Ok(cp);
            }
            if let Some(lock) = self.store.try_job_lock(job::JOB).await? {
                job::round(self).await?;
                drop(lock);
                continue;
            }
            let signed = self.signed.notified();
            self.wake.notify_one();
            if tokio::time::timeout_at(deadline, signed).await.is_err() {
                // One last look: another instance may have signed it.
                return self.refresh().await?.filter(|cp| cp.size >= need).ok_or(LogError::NotYet(need));
            }
        }
    }
}

/// The log's origin: the one its first checkpoint was signed under (monitors pin it,
/// so a changed `public_base_url` must not change it), else the configured one.
fn pinned_origin(config: &Config, latest: Option<&StoredCheckpoint>) -> Result<String, LogError> {
    let Some(cp) = latest else { return Ok(config.log_origin()) };
    let signed = cp.note.split('\n').next().unwrap_or_default().to_string();
    match &config.log.origin {
        Some(configured) if *configured != signed => Err(LogError::Origin { configured: configured.clone(), signed }),
        _ => Ok(signed),
    }
}

/// Finds the audit log key or, for a log that has never signed a checkpoint (a new
/// hierarchy, or one from before the log was a tree), creates it and records that in
/// the log. Returns the verifier key.
pub async fn ensure_key(
    config: &Config,
    store: &dyn Store,
    keys: &Arc<KeyStores>,
    actor: &str,
) -> Result<String, LogError> {
    let (ks, label, alg) = (config.log_key_store(), config.log.key_label.clone(), config.log.algorithm);
    let signed_before = store.latest_checkpoint().await?.is_some();
    let keys2 = keys.clone();
    let (signer, created) = tokio::task::spawn_blocking(move || match keys2.find(&ks, &label) {
        Ok(k) => Ok((k, false)),
        Err(KeyStoreError::Hsm { cause: hsm::HsmError::KeyNotFound(_), .. }) if signed_before => {
            Err(LogError::KeyLost(ks))
        }
        Err(KeyStoreError::Hsm { cause: hsm::HsmError::KeyNotFound(_), .. }) => {
            Ok((keys2.generate(&ks, &label, alg)?, true))
        }
        Err(e) => Err(e.into()),
    })
    .await
    .map_err(|e| LogError::Task(e.to_string()))??;
    let latest = store.latest_checkpoint().await?;
    let origin = pinned_origin(config, latest.as_ref())?;
    let key = LogKey::new(signer, &origin)?;
    if created {
        let event = AuditEvent::success(
            actor,
            "log.key.create",
            format!("key:{}:{}", config.log_key_store(), config.log.key_label),
        )
        .with_details(serde_json::json!({
            "algorithm": config.log.algorithm.to_string(),
            "origin": config.log_origin(),
            "verifier_key": key.verifier_key(),
        }));
        store.append_audit(&[event]).await?;
        tracing::info!(verifier_key = key.verifier_key(), "created the audit log key");
    }
    Ok(key.verifier_key().to_string())
}
