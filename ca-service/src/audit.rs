//! The tamper-evident audit log.
//!
//! Entries form a hash chain: each entry's hash covers its own fields and the hash of
//! the entry before it, so editing, deleting or reordering any stored entry breaks the
//! chain from that point on. The store assigns sequence numbers and computes hashes
//! inside the same transaction that records the audited change (DESIGN invariant 1).

use aws_lc_rs::digest;

/// The hash that precedes the first entry.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

/// What happened, as the caller describes it; the store adds sequence, time and hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Who acted: `cli:<user>`, `station:<fingerprint>`, `system`, …
    pub actor: String,
    /// What was done: `ca.init`, `certificate.issue`, …
    pub action: String,
    /// What it was done to: `ca:device`, `certificate:device/<serial>`, …
    pub target: String,
    /// `success`, or `denied: <reason>` / `failed: <reason>`.
    pub outcome: String,
    /// Extra facts as a JSON object (never secrets, never full CSRs).
    pub details: String,
}

impl AuditEvent {
    pub fn success(actor: impl Into<String>, action: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            outcome: "success".into(),
            details: "{}".into(),
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details.to_string();
        self
    }

    pub fn with_outcome(mut self, outcome: impl Into<String>) -> Self {
        self.outcome = outcome.into();
        self
    }
}

/// An audit entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// 1, 2, 3, … with no gaps.
    pub seq: i64,
    /// Unix time in microseconds.
    pub time_us: i64,
    pub event: AuditEvent,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// Computes the hash of an entry. Every field is length-prefixed so that no two
/// different entries share an encoding.
pub fn entry_hash(prev_hash: &[u8; 32], seq: i64, time_us: i64, event: &AuditEvent) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"device-pki audit v1\0");
    ctx.update(prev_hash);
    ctx.update(&seq.to_be_bytes());
    ctx.update(&time_us.to_be_bytes());
    for field in [&event.actor, &event.action, &event.target, &event.outcome, &event.details] {
        ctx.update(&(field.len() as u64).to_be_bytes());
        ctx.update(field.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Extends a chain: given the current head (last seq and hash), returns the entries
/// for `events` in order.
pub fn chain(head: (i64, [u8; 32]), time_us: i64, events: impl IntoIterator<Item = AuditEvent>) -> Vec<AuditEntry> {
    let (mut seq, mut prev) = head;
    events
        .into_iter()
        .map(|event| {
            seq += 1;
            let hash = entry_hash(&prev, seq, time_us, &event);
            let entry = AuditEntry { seq, time_us, event, prev_hash: prev, hash };
            prev = hash;
            entry
        })
        .collect()
}

/// Where and why a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log broken at entry {seq}: {reason}")]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: String,
}

/// Walks entries in order, continuing from `head`, and returns the new head or the
/// first broken entry. Call repeatedly over pages of a long log.
pub fn verify(head: (i64, [u8; 32]), entries: &[AuditEntry]) -> Result<(i64, [u8; 32]), ChainBreak> {
    let (mut seq, mut prev) = head;
    for e in entries {
        if e.seq != seq + 1 {
            return Err(ChainBreak { seq: seq + 1, reason: format!("entry missing (next stored entry is {})", e.seq) });
        }
        if e.prev_hash != prev {
            return Err(ChainBreak { seq: e.seq, reason: "previous-hash link does not match".into() });
        }
        if entry_hash(&prev, e.seq, e.time_us, &e.event) != e.hash {
            return Err(ChainBreak { seq: e.seq, reason: "content does not match its hash (entry edited)".into() });
        }
        seq = e.seq;
        prev = e.hash;
    }
    Ok((seq, prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u32) -> AuditEvent {
        AuditEvent::success("cli:test", "certificate.issue", format!("certificate:{n}"))
    }

    #[test]
    fn chain_verifies_and_detects_edits_deletions_and_reordering() {
        let entries = chain((0, GENESIS_HASH), 1_000, (0..5).map(ev));
        assert_eq!(verify((0, GENESIS_HASH), &entries).map(|h| h.0), Ok(5));

        let mut edited = entries.clone();
        edited[2].event.outcome = "denied".into();
        assert_eq!(verify((0, GENESIS_HASH), &edited).unwrap_err().seq, 3);

        let mut deleted = entries.clone();
        deleted.remove(1);
        assert_eq!(verify((0, GENESIS_HASH), &deleted).unwrap_err().seq, 2);

        let mut swapped = entries.clone();
        swapped.swap(3, 4);
        assert_eq!(verify((0, GENESIS_HASH), &swapped).unwrap_err().seq, 4);
    }

    #[test]
    fn fields_are_not_ambiguous() {
        let a = AuditEvent::success("ab", "c", "t");
        let b = AuditEvent::success("a", "bc", "t");
        assert_ne!(entry_hash(&GENESIS_HASH, 1, 0, &a), entry_hash(&GENESIS_HASH, 1, 0, &b));
    }
}

/// The result of checking a store's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReport {
    pub entries: i64,
    pub head: [u8; 32],
    pub certificates: usize,
}

/// Why a store's audit log does not check out.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Broken(#[from] ChainBreak),
    /// The chain verifies but records are missing their entries: the newest entries
    /// were removed (truncation leaves a shorter chain that still links up).
    #[error("audit log incomplete: {0} has no audit entry (entries after seq {1} may have been removed)")]
    Missing(String, i64),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Walks the whole chain, then checks that every stored CA and certificate has the
/// audit entry that recorded it. The chain alone cannot notice its newest entries
/// being cut off; the records can, because each was committed with its entry.
pub async fn verify_store<S>(store: &S) -> Result<LogReport, LogError>
where
    S: crate::store::AuditStore + crate::store::CaStore + crate::store::CertificateReader + ?Sized,
{
    const PAGE: i64 = 1000;
    let mut head = (0, GENESIS_HASH);
    let mut recorded = std::collections::HashSet::new();
    loop {
        let page = store.audit_entries(head.0, PAGE).await?;
        if page.is_empty() {
            break;
        }
        head = verify(head, &page)?;
        for e in page {
            if matches!(e.event.action.as_str(), "certificate.issue" | "ca.create" | "ca.import") {
                recorded.insert(e.event.target);
            }
        }
    }
    for ca in store.list_cas().await? {
        let target = format!("ca:{}", ca.name);
        if !recorded.contains(&target) {
            return Err(LogError::Missing(target, head.0));
        }
    }
    let (mut after, mut certificates) = (0, 0);
    loop {
        let page = store.certificate_keys(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for k in &page {
            let target = format!("certificate:{}/{}", k.issuer, hex::encode(&k.serial));
            if !recorded.contains(&target) {
                return Err(LogError::Missing(target, head.0));
            }
        }
        certificates += page.len();
    }
    Ok(LogReport { entries: head.0, head: head.1, certificates })
}
