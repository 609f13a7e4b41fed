//! `ca-service audit verify`: the log in the database against the checkpoints signed
//! for it — those stored beside it (each checked against the log key) and, with
//! `--checkpoint FILE`, one kept elsewhere. The entries are hashed from their content;
//! nothing stored in the tree is trusted.

use std::collections::BTreeMap;

use tlog::{Checkpoint, Hash, Verifier};

use crate::audit::{self, LogBreak, LogError, LogReport};
use crate::store::Store;

/// A checkpoint to hold the log to: its size, root, and where it came from.
#[derive(Debug, Clone)]
pub struct Commitment {
    pub size: u64,
    pub root: Hash,
    pub source: String,
}

/// Opens a signed checkpoint note with `verifier` and checks its origin.
pub fn open_checkpoint(note: &str, verifier: &Verifier, origin: &str) -> Result<Checkpoint, String> {
    let text = tlog::open_note(note, std::slice::from_ref(verifier)).map_err(|e| e.to_string())?;
    let cp = Checkpoint::parse(&text).map_err(|e| e.to_string())?;
    if cp.origin != origin {
        return Err(format!("it is for log '{}', not '{origin}'", cp.origin));
    }
    Ok(cp)
}

/// The stored checkpoints, each verified with the log key; one that does not verify
/// or does not say what its row says is an error (a forged or altered row).
pub async fn stored_commitments(
    store: &dyn Store,
    verifier: &Verifier,
    origin: &str,
) -> Result<Vec<Commitment>, LogError> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let page = store.checkpoints(after, 1000).await?;
        let Some(last) = page.last() else { return Ok(out) };
        after = last.size;
        for stored in page {
            let bad = |why: String| {
                LogError::Broken(LogBreak {
                    seq: i64::try_from(stored.size).unwrap_or(i64::MAX),
                    reason: format!("the stored checkpoint of size {} {why}", stored.size),
                })
            };
            let cp =
                open_checkpoint(&stored.note, verifier, origin).map_err(|e| bad(format!("does not verify: {e}")))?;
            if (cp.size, cp.root) != (stored.size, stored.root) {
                return Err(bad("says another size or root than its note".into()));
            }
            out.push(Commitment { size: cp.size, root: cp.root, source: format!("stored checkpoint {}", cp.size) });
        }
    }
}

/// Walks the whole log and holds it to `commitments`: at each committed size the root
/// of the entries so far must be the committed root. A mismatch names the first entry
/// after the last size that still matched, and the range the change is in; a
/// commitment beyond the log's end is a truncation.
pub async fn verify_against(store: &dyn Store, commitments: Vec<Commitment>) -> Result<LogReport, LogError> {
    let mut by_size: BTreeMap<u64, Vec<Commitment>> = BTreeMap::new();
    for c in commitments {
        by_size.entry(c.size).or_default().push(c);
    }
    let largest = by_size.keys().next_back().copied().unwrap_or(0);
    let mut good = 0u64;
    let walked = audit::verify_store(store, |head| {
        let size = u64::try_from(head.seq).unwrap_or(0);
        if let Some(cs) = by_size.get(&size) {
            let root = head.root();
            if let Some(c) = cs.iter().find(|c| c.root != root) {
                return Err(LogBreak {
                    seq: i64::try_from(good + 1).unwrap_or(i64::MAX),
                    reason: format!(
                        "entries {}..={size} do not have the root {} signed for size {size}: an entry in that range \
                         was edited or rewritten",
                        good + 1,
                        c.source
                    ),
                });
            }
            good = size;
        }
        Ok(())
    })
    .await;
    // A log shorter than a signed checkpoint is named as the truncation it is, before
    // the records whose entries went with it.
    let entries = match &walked {
        Ok(report) => report.entries,
        Err(LogError::Missing(_, seq)) => *seq,
        Err(_) => return walked,
    };
    let entries = u64::try_from(entries).unwrap_or(0);
    if largest > entries {
        let c = &by_size[&largest][0];
        return Err(LogError::Broken(LogBreak {
            seq: i64::try_from(entries + 1).unwrap_or(i64::MAX),
            reason: format!(
                "the log ends at entry {entries} but {} covers {largest} entries: entries {}..={largest} were removed",
                c.source,
                entries + 1
            ),
        }));
    }
    walked
}
