//! Offline inclusion proofs (C2SP tlog-proof) for single entries: what ships with an
//! update-signing certificate, so a device can check that its issuance was logged.
//!
//! The proof's `extra` carries the entry's canonical bytes: the device hashes them to
//! the leaf, reads the certificate's SHA-256 from them, and checks the path to a
//! checkpoint signed by the log key it trusts.

use std::time::Duration;

use super::{tree, LogError, TransparencyLog};
use crate::audit::AuditEntry;

/// How long an issuance waits for a checkpoint that covers its entry.
pub const COVER_WAIT: Duration = Duration::from_secs(5);

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

/// Whether `entry` records the issuance of the certificate with `fingerprint`.
pub fn is_issuance_of(entry: &AuditEntry, fingerprint: &str) -> bool {
    entry.event.action == "certificate.issue"
        && serde_json::from_str::<serde_json::Value>(&entry.event.details)
            .is_ok_and(|d| d["fingerprint"].as_str() == Some(fingerprint))
}
