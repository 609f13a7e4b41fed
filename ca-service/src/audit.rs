//! The audit log: one entry for every issuance, renewal, revocation, key operation,
//! privileged read and refusal, recorded in the transaction that makes the change
//! (DESIGN invariant 1).
//!
//! Entries are the leaves of a Merkle tree (RFC 6962; see [`crate::transparency`]): the
//! store assigns each entry its sequence number and its leaf hash — the hash of
//! [`AuditEntry::leaf_bytes`], its canonical encoding — in that same transaction.
//! Checkpoints signed with the audit log key commit to the tree, so an edit, a
//! truncation or a rewrite is caught by anyone who holds an earlier checkpoint. (The
//! hash chain this log used to be could be recomputed by anyone with write access to
//! the database; it was replaced by the tree, not kept beside it.)

use serde::Serialize;

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

/// The longest canonical encoding of an entry: entry bundles (C2SP tlog-tiles) carry
/// each entry behind a 16-bit length.
pub const MAX_LEAF_BYTES: usize = 65_535;

/// The longest actor, action, target or outcome kept whole; longer ones are cut.
const MAX_FIELD_BYTES: usize = 4096;

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

    /// The event cut to fit one leaf: long fields end in `…`, and details that would
    /// not fit are replaced by their length and SHA-256 (the facts stay checkable
    /// against a copy; the entry is never refused, or the change it records would be).
    fn bounded(mut self) -> Self {
        for field in [&mut self.actor, &mut self.action, &mut self.target, &mut self.outcome] {
            if field.len() > MAX_FIELD_BYTES {
                let mut end = MAX_FIELD_BYTES;
                while !field.is_char_boundary(end) {
                    end -= 1;
                }
                field.truncate(end);
                field.push('…');
            }
        }
        let fixed = self.actor.len() + self.action.len() + self.target.len() + self.outcome.len();
        // JSON escaping can at most sextuple a string (control characters as \u00XX).
        if fixed * 6 + self.details.len() * 6 + 256 > MAX_LEAF_BYTES {
            let probe = AuditEntry { seq: i64::MAX, time_us: i64::MAX, event: self.clone(), leaf_hash: None };
            if probe.leaf_bytes().len() > MAX_LEAF_BYTES {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.details.as_bytes());
                self.details = serde_json::json!({
                    "truncated": true,
                    "bytes": self.details.len(),
                    "sha256": hex::encode(digest.as_ref()),
                })
                .to_string();
            }
        }
        self
    }
}

/// An audit entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// 1, 2, 3, … with no gaps; the entry is leaf `seq - 1` of the tree.
    pub seq: i64,
    /// Unix time in microseconds.
    pub time_us: i64,
    pub event: AuditEvent,
    /// The leaf hash the store recorded with the entry (`None` only for entries
    /// written before the log became a tree, until the checkpoint job fills it in).
    pub leaf_hash: Option<tlog::Hash>,
}

/// The canonical encoding: a JSON object with the fields in this order, `details`
/// as the string it was stored as (so the bytes depend on nothing but the entry).
#[derive(Serialize)]
struct Leaf<'a> {
    seq: i64,
    time_us: i64,
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    outcome: &'a str,
    details: &'a str,
}

impl AuditEntry {
    /// The entry's index in the tree.
    pub fn index(&self) -> u64 {
        self.seq.saturating_sub(1).max(0) as u64
    }

    /// What the leaf hash covers and what entry bundles carry.
    pub fn leaf_bytes(&self) -> Vec<u8> {
        let e = &self.event;
        let leaf = Leaf {
            seq: self.seq,
            time_us: self.time_us,
            actor: &e.actor,
            action: &e.action,
            target: &e.target,
            outcome: &e.outcome,
            details: &e.details,
        };
        // Serialising borrowed strings and integers cannot fail.
        serde_json::to_vec(&leaf).unwrap_or_default()
    }

    /// The leaf hash of the entry's content (RFC 6962: SHA-256(0x00 ‖ bytes)).
    pub fn computed_leaf_hash(&self) -> tlog::Hash {
        tlog::leaf_hash(&self.leaf_bytes())
    }
}

/// The entries that follow `last_seq`, bounded to fit a leaf, with their leaf hashes.
pub fn entries_after(last_seq: i64, time_us: i64, events: impl IntoIterator<Item = AuditEvent>) -> Vec<AuditEntry> {
    let mut seq = last_seq;
    events
        .into_iter()
        .map(|event| {
            seq += 1;
            let mut entry = AuditEntry { seq, time_us, event: event.bounded(), leaf_hash: None };
            entry.leaf_hash = Some(entry.computed_leaf_hash());
            entry
        })
        .collect()
}

/// Where and why the stored log is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log broken at entry {seq}: {reason}")]
pub struct LogBreak {
    pub seq: i64,
    pub reason: String,
}

/// A walk over the log so far: the last entry seen and the Merkle frontier of all the
/// leaves up to it, from which the tree's root at that size follows.
#[derive(Clone, Debug, Default)]
pub struct LogHead {
    pub seq: i64,
    frontier: tlog::Frontier,
}

impl LogHead {
    /// The root of the tree of the entries walked so far.
    pub fn root(&self) -> tlog::Hash {
        self.frontier.root()
    }
}

/// Walks `entries` in order, continuing from `head`: each must follow the one before
/// (no gaps) and its content must match the leaf hash stored with it. Returns the new
/// head or the first broken entry. Call repeatedly over pages of a long log.
pub fn verify(mut head: LogHead, entries: &[AuditEntry]) -> Result<LogHead, LogBreak> {
    for e in entries {
        if e.seq != head.seq + 1 {
            return Err(LogBreak {
                seq: head.seq + 1,
                reason: format!("entry missing (next stored entry is {})", e.seq),
            });
        }
        let computed = e.computed_leaf_hash();
        if e.leaf_hash.is_some_and(|stored| stored != computed) {
            return Err(LogBreak { seq: e.seq, reason: "content does not match its leaf hash (entry edited)".into() });
        }
        head.frontier.push(computed);
        head.seq = e.seq;
    }
    Ok(head)
}

/// The result of checking a store's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReport {
    pub entries: i64,
    /// The root of the tree over all the entries.
    pub root: tlog::Hash,
    pub certificates: usize,
}

/// Why a store's audit log does not check out.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Broken(#[from] LogBreak),
    /// The entries verify but records are missing their entries: the newest entries
    /// were removed (truncation leaves a shorter log that is consistent in itself).
    #[error("audit log incomplete: {0} has no audit entry (entries after seq {1} may have been removed)")]
    Missing(String, i64),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Pages through the whole log, calling `each` with the head after every entry (the
/// checkpoint checks hook in there), then checks that every stored CA and certificate
/// has the audit entry that recorded it: each was committed with its entry, so a
/// record without one means entries were cut off.
pub async fn verify_store<S>(
    store: &S,
    mut each: impl FnMut(&LogHead) -> Result<(), LogBreak>,
) -> Result<LogReport, LogError>
where
    S: crate::store::AuditStore + crate::store::CaStore + crate::store::CertificateReader + ?Sized,
{
    const PAGE: i64 = 1000;
    let mut head = LogHead::default();
    let mut recorded = std::collections::HashSet::new();
    loop {
        let page = store.audit_entries(head.seq, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for e in &page {
            head = verify(head, std::slice::from_ref(e))?;
            each(&head)?;
        }
        for e in page {
            let created = matches!(e.event.action.as_str(), "certificate.issue" | "ca.create" | "ca.import")
                || (e.event.action == "ca.rollover" && e.event.outcome == "success");
            if created {
                recorded.insert(e.event.target);
            }
        }
    }
    for ca in store.list_cas().await? {
        let target = format!("ca:{}", ca.name);
        if !recorded.contains(&target) {
            return Err(LogError::Missing(target, head.seq));
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
                return Err(LogError::Missing(target, head.seq));
            }
        }
        certificates += page.len();
    }
    Ok(LogReport { entries: head.seq, root: head.root(), certificates })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u32) -> AuditEvent {
        AuditEvent::success("cli:test", "certificate.issue", format!("certificate:{n}"))
    }

    #[test]
    fn walk_verifies_and_detects_edits_and_deletions() {
        let entries = entries_after(0, 1_000, (0..5).map(ev));
        let head = verify(LogHead::default(), &entries).unwrap();
        assert_eq!(head.seq, 5);
        let leaves: Vec<tlog::Hash> = entries.iter().map(|e| e.leaf_hash.unwrap()).collect();
        assert_eq!(head.root(), tlog::subtree_hash(&leaves));

        let mut edited = entries.clone();
        edited[2].event.outcome = "denied".into();
        assert_eq!(verify(LogHead::default(), &edited).unwrap_err().seq, 3);

        let mut deleted = entries.clone();
        deleted.remove(1);
        assert_eq!(verify(LogHead::default(), &deleted).unwrap_err().seq, 2);

        // A consistent rewrite (content and leaf hash) passes the walk but changes the root.
        let mut rewritten = entries.clone();
        rewritten[2].event.outcome = "denied".into();
        rewritten[2].leaf_hash = Some(rewritten[2].computed_leaf_hash());
        assert_ne!(verify(LogHead::default(), &rewritten).unwrap().root(), head.root());
    }

    #[test]
    fn fields_are_not_ambiguous() {
        let a = entries_after(0, 0, [AuditEvent::success("ab", "c", "t")]);
        let b = entries_after(0, 0, [AuditEvent::success("a", "bc", "t")]);
        assert_ne!(a[0].leaf_hash, b[0].leaf_hash);
        let c = entries_after(0, 0, [AuditEvent::success("a\",\"action\":\"b", "c", "t")]);
        assert_ne!(a[0].leaf_hash, c[0].leaf_hash);
    }

    #[test]
    fn every_entry_fits_a_bundle() {
        let huge = AuditEvent::success("x".repeat(100_000), "a", "é".repeat(40_000))
            .with_details(serde_json::json!({ "csr": "\u{1}".repeat(70_000) }));
        let e = &entries_after(41, 7, [huge])[0];
        let bytes = e.leaf_bytes();
        assert!(bytes.len() <= MAX_LEAF_BYTES, "{}", bytes.len());
        assert!(e.event.actor.ends_with('…') && e.event.target.ends_with('…'));
        let details: serde_json::Value = serde_json::from_str(&e.event.details).unwrap();
        assert_eq!(details["truncated"], true);
        // An ordinary entry is untouched.
        let small = entries_after(0, 0, [ev(1).with_details(serde_json::json!({ "k": 1 }))]);
        assert_eq!(small[0].event, ev(1).with_details(serde_json::json!({ "k": 1 })));
    }
}
