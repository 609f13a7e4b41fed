//! Offline inclusion proofs (C2SP tlog-proof) for single entries: what ships with an
//! update-signing certificate, so a device can check that its issuance was logged.
//!
//! The proof's `extra` carries the entry's canonical bytes: the device hashes them to
//! the leaf, reads the certificate's SHA-256 from them, and checks the path to a
//! checkpoint signed by the log key it trusts.

use std::time::Duration;

use super::{tree, LogError, TransparencyLog};
use crate::audit::AuditEntry;
use crate::store::Store;

/// How long an issuance waits for a checkpoint that covers its entry.
pub const COVER_WAIT: Duration = Duration::from_secs(5);

/// How far apart the clocks of the instances writing the log may be, for
/// [`TransparencyLog::issuance_proof_since`].
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

impl TransparencyLog {
    /// The tlog-proof of `entry` against a checkpoint that covers it (signed now if
    /// need be).
    pub async fn prove(&self, entry: &AuditEntry) -> Result<tlog::TlogProof, LogError> {
        let cp = self.checkpoint_covering(entry.seq, COVER_WAIT).await?;
        let hashes = tree::inclusion_proof(self.store.as_ref(), entry.index(), cp.size).await?;
        Ok(tlog::TlogProof {
            extra: Some(entry.leaf_bytes()),
            index: entry.index(),
            hashes,
            checkpoint: cp.note.clone(),
        })
    }

    /// The tlog-proof of the issuance of the certificate with this fingerprint, whose
    /// entry has `seq > after_seq`; `None` if there is no such entry.
    pub async fn issuance_proof(&self, after_seq: i64, fingerprint: &str) -> Result<Option<tlog::TlogProof>, LogError> {
        match self.issuance_entry(after_seq, fingerprint).await? {
            Some(entry) => Ok(Some(self.prove(&entry).await?)),
            None => Ok(None),
        }
    }

    /// The tlog-proof of the issuance of a certificate issued at or after `since_us`
    /// (Unix µs) — e.g. for an update request, its creation time.
    ///
    /// Entries are read from the last one written more than [`CLOCK_SKEW`] before
    /// `since_us` on, found by bisecting the log on entry times (O(log n) reads, not a
    /// scan of every certificate ever issued). Entry times come from the writing
    /// instance's clock, so they need not be monotonic: if the entry is not found from
    /// there, the whole log is searched — a slow answer, never a wrong one.
    pub async fn issuance_proof_since(
        &self,
        since_us: i64,
        fingerprint: &str,
    ) -> Result<Option<tlog::TlogProof>, LogError> {
        let bound = since_us.saturating_sub(i64::try_from(CLOCK_SKEW.as_micros()).unwrap_or(i64::MAX));
        let start = last_seq_before(self.store.as_ref(), bound).await?;
        if let Some(proof) = self.issuance_proof(start, fingerprint).await? {
            return Ok(Some(proof));
        }
        if start == 0 {
            return Ok(None);
        }
        self.issuance_proof(0, fingerprint).await
    }

    /// The entry that recorded the issuance of the certificate with this fingerprint
    /// (SHA-256 hex of its DER), searched from `after_seq` on.
    pub async fn issuance_entry(&self, after_seq: i64, fingerprint: &str) -> Result<Option<AuditEntry>, LogError> {
        let mut after = after_seq;
        loop {
            let page = self.store.audit_entries(after, 500).await?;
            let Some(last) = page.last() else { return Ok(None) };
            after = last.seq;
            if let Some(e) = page.into_iter().find(|e| is_issuance_of(e, fingerprint)) {
                return Ok(Some(e));
            }
        }
    }
}

/// The largest `seq` whose entry was written before `time_us` (0 if none), by
/// bisection (O(log n) reads), assuming entry times grow with `seq`.
async fn last_seq_before(store: &dyn Store, time_us: i64) -> Result<i64, LogError> {
    let size = i64::try_from(store.log_size().await?).unwrap_or(i64::MAX);
    // The answer is in lo..=hi; every seq ≤ lo is known to be before (0 trivially).
    let (mut lo, mut hi) = (0_i64, size);
    while lo < hi {
        let mid = lo + (hi - lo + 1) / 2;
        let before = store.audit_entries(mid - 1, 1).await?.first().is_some_and(|e| e.time_us < time_us);
        if before {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(lo)
}

/// Whether `entry` records the issuance of the certificate with `fingerprint`.
pub fn is_issuance_of(entry: &AuditEntry, fingerprint: &str) -> bool {
    entry.event.action == "certificate.issue"
        && serde_json::from_str::<serde_json::Value>(&entry.event.details)
            .is_ok_and(|d| d["fingerprint"].as_str() == Some(fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEvent;

    #[tokio::test]
    async fn last_seq_before_bisects_the_entry_times() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&format!("sqlite:{}", dir.path().join("pki.db").display())).await.unwrap();
        assert_eq!(last_seq_before(store.as_ref(), i64::MAX).await.unwrap(), 0, "empty log");
        for i in 0..37 {
            store.append_audit(&[AuditEvent::success("test", "test.entry", format!("n:{i}"))]).await.unwrap();
        }
        let entries = store.audit_entries(0, 100).await.unwrap();
        assert_eq!(entries.len(), 37);
        assert_eq!(last_seq_before(store.as_ref(), i64::MIN).await.unwrap(), 0, "before every entry");
        assert_eq!(last_seq_before(store.as_ref(), i64::MAX).await.unwrap(), 37, "after every entry");
        // Just after each entry's time: that entry, or a later one written in the
        // same microsecond.
        for e in &entries {
            let found = last_seq_before(store.as_ref(), e.time_us + 1).await.unwrap();
            assert!(found >= e.seq, "entry {} at {}: found {found}", e.seq, e.time_us);
            let next = entries.iter().find(|n| n.seq == found + 1);
            assert!(next.is_none_or(|n| n.time_us > e.time_us), "entry {}: found {found}, too early", e.seq);
            // At its own time: strictly before it.
            let found = last_seq_before(store.as_ref(), e.time_us).await.unwrap();
            assert!(found < e.seq, "entry {}: found {found} at its own time", e.seq);
        }
    }

    #[test]
    fn an_issuance_entry_is_recognised_by_action_and_fingerprint() {
        let entry = |action: &str, fp: &str| AuditEntry {
            seq: 1,
            time_us: 0,
            event: AuditEvent::success("test", action, "certificate:x/01")
                .with_details(serde_json::json!({ "fingerprint": fp })),
            leaf_hash: None,
        };
        assert!(is_issuance_of(&entry("certificate.issue", "ab12"), "ab12"));
        assert!(!is_issuance_of(&entry("certificate.issue", "ab12"), "ab13"));
        assert!(!is_issuance_of(&entry("certificate.revoke", "ab12"), "ab12"));
    }
}
