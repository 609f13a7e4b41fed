//! The checkpoint job: on the instance that holds its lock, every
//! `log.checkpoint_interval_ms` (and when woken for an on-demand checkpoint), sign a
//! checkpoint if the tree has grown — after checking that it still extends the last
//! one.

use std::sync::Arc;

use tlog::Checkpoint;

use super::{tree, LogError, TransparencyLog};
use crate::store::{JobLock, StoredCheckpoint};

/// The job's lock name.
pub const JOB: &str = "log-checkpoint";

/// Entries read per page while checking new leaves.
const PAGE: i64 = 2000;

/// Runs the job for the life of the process.
pub fn spawn(log: Arc<TransparencyLog>) {
    tokio::spawn(async move {
        let mut lease: Option<JobLock> = None;
        let mut ticker = tokio::time::interval(log.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = log.wake.notified() => {}
            }
            if let Some(held) = lease.as_ref() {
                if !held.still_held().await {
                    tracing::warn!("lost the checkpoint job lock; trying to take it again");
                    lease = None;
                }
            }
            if lease.is_none() {
                match log.store.try_job_lock(JOB).await {
                    Ok(Some(l)) => {
                        tracing::info!("this instance signs the audit log's checkpoints");
                        lease = Some(l);
                    }
                    Ok(None) => {
                        // Another instance signs; keep serving what it signed.
                        let _ = log.refresh().await;
                        log.signed.notify_waiters();
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take the checkpoint job lock");
                        continue;
                    }
                }
            }
            if let Err(e) = round(&log).await {
                tracing::error!(error = %e, "signing an audit log checkpoint failed");
                if !matches!(e, LogError::Inconsistent { .. }) {
                    lease = None;
                }
            }
        }
    });
}

/// One round (the caller holds the job lock): sign a checkpoint for the current size
/// if the tree has grown. Returns the newest checkpoint.
pub async fn round(log: &TransparencyLog) -> Result<Arc<StoredCheckpoint>, LogError> {
    let store = log.store.as_ref();
    let last = newest_known(log).await?;
    let size = store.log_size().await?;
    let from = last.as_ref().map_or(0, |c| c.size);
    if size < from {
        return Err(LogError::Inconsistent {
            size: from,
            why: format!("the log has {size} entries; entries {size} and later were removed"),
        });
    }
    if let Some(last) = last.as_ref().filter(|c| c.size == size) {
        return Ok(last.clone());
    }
    check_new_leaves(log, from, size).await?;
    tree::materialize(store, from, size).await?;
    if let Some(last) = &last {
        let root = tree::root_at(store, last.size).await?;
        if root != last.root {
            return Err(LogError::Inconsistent {
                size: last.size,
                why: "the stored tree at that size has another root (entries were rewritten)".into(),
            });
        }
    }
    let root = tree::root_at(store, size).await?;
    let text = Checkpoint { origin: log.origin.clone(), size, root, extensions: vec![] }.to_text();
    let key = log.key.clone();
    let note = if key.is_slow() {
        tokio::task::spawn_blocking(move || tlog::sign_note(&text, &[&key]))
            .await
            .map_err(|e| LogError::Task(e.to_string()))??
    } else {
        tlog::sign_note(&text, &[&key])?
    };
    let signed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let cp = StoredCheckpoint { size, root, note, signed_at };
    if !store.put_checkpoint(&cp).await? {
        // Another instance signed this size or a larger one meanwhile (same tree).
        tracing::debug!(size, "a checkpoint of this size or larger exists already");
    }
    save_local(log, &cp).await;
    log.observe(cp);
    log.signed.notify_waiters();
    log.latest().ok_or(LogError::NotYet(size))
}

/// The newest checkpoint of the store and of this instance's own copy; the store's
/// must not be older than the copy (deleted checkpoints would let a fork be signed).
async fn newest_known(log: &TransparencyLog) -> Result<Option<Arc<StoredCheckpoint>>, LogError> {
    let stored = log.store.latest_checkpoint().await?;
    let local = load_local(log).await;
    match (stored, local) {
        (Some(s), Some(l)) if s.size < l.size => Err(LogError::Inconsistent {
            size: l.size,
            why: format!("the database's newest checkpoint has size {}, older than this instance signed", s.size),
        }),
        (None, Some(l)) => Err(LogError::Inconsistent {
            size: l.size,
            why: "the database has no checkpoints, but this instance signed one".into(),
        }),
        (Some(s), Some(l)) if s.size == l.size && s.root != l.root => Err(LogError::Inconsistent {
            size: l.size,
            why: "the database's checkpoint has another root than the one this instance signed".into(),
        }),
        (Some(s), _) => {
            log.observe(s.clone());
            Ok(Some(Arc::new(s)))
        }
        (None, None) => Ok(None),
    }
}

/// Checks the entries after `from` against their stored leaf hashes (a row edited
/// before it was ever checkpointed must not be signed) and fills in those that have
/// none (entries from before the log was a tree).
async fn check_new_leaves(log: &TransparencyLog, from: u64, to: u64) -> Result<(), LogError> {
    let store = log.store.as_ref();
    let mut after = i64::try_from(from).unwrap_or(i64::MAX);
    let end = i64::try_from(to).unwrap_or(i64::MAX);
    while after < end {
        let page = store.audit_entries(after, PAGE.min(end - after)).await?;
        let mut missing = Vec::new();
        for e in &page {
            if e.seq != after + 1 {
                return Err(LogError::Inconsistent { size: from, why: format!("entry {} is missing", after + 1) });
            }
            let computed = e.computed_leaf_hash();
            match e.leaf_hash {
                Some(h) if h != computed => {
                    return Err(LogError::Inconsistent {
                        size: from,
                        why: format!("entry {} does not match its leaf hash (edited)", e.seq),
                    })
                }
                Some(_) => {}
                None => missing.push((e.seq, computed)),
            }
            after = e.seq;
        }
        if page.is_empty() {
            return Err(LogError::Inconsistent { size: from, why: format!("entry {} is missing", after + 1) });
        }
        store.fill_leaf_hashes(&missing).await?;
    }
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Local {
    size: u64,
    root: String,
}

async fn load_local(log: &TransparencyLog) -> Option<StoredCheckpoint> {
    let text = tokio::fs::read_to_string(&log.local).await.ok()?;
    let local: Local = serde_json::from_str(&text).ok()?;
    let mut root = [0u8; 32];
    hex::decode_to_slice(&local.root, &mut root).ok()?;
    Some(StoredCheckpoint { size: local.size, root, note: String::new(), signed_at: 0 })
}

async fn save_local(log: &TransparencyLog, cp: &StoredCheckpoint) {
    let body = serde_json::json!({ "size": cp.size, "root": hex::encode(cp.root) }).to_string();
    let tmp = log.local.with_extension("tmp");
    let written = async {
        tokio::fs::write(&tmp, body).await?;
        tokio::fs::rename(&tmp, &log.local).await
    };
    if let Err(e) = written.await {
        tracing::warn!(path = %log.local.display(), error = %e, "cannot keep a local copy of the newest checkpoint");
    }
}
