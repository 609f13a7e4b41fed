//! C2SP tlog-proof: an offline proof that an entry is in a log — its index, the
//! inclusion path, and the signed checkpoint the path leads to.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::checkpoint::Checkpoint;
use crate::hash::Hash;
use crate::note::{open_note, Verifier};
use crate::proof::verify_inclusion;
use crate::{malformed, Error};

const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Longest proof [`TlogProof::parse`] reads.
const MAX_PROOF_BYTES: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Unauthenticated data to rebuild the entry with (here: the entry itself).
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    /// From the leaf's sibling up to the root's child.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: String,
}

impl TlogProof {
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", STANDARD.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            out.push_str(&STANDARD.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_PROOF_BYTES {
            return Err(malformed("tlog-proof", "too large"));
        }
        let (head, checkpoint) =
            text.split_once("\n\n").ok_or_else(|| malformed("tlog-proof", "no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(malformed("tlog-proof", format!("does not start with {HEADER}")));
        }
        let mut line = lines.next().ok_or_else(|| malformed("tlog-proof", "no index"))?;
        let extra = match line.strip_prefix("extra ") {
            Some(b64) => {
                let extra = STANDARD.decode(b64).map_err(|_| malformed("tlog-proof", "extra is not base64"))?;
                line = lines.next().ok_or_else(|| malformed("tlog-proof", "no index"))?;
                Some(extra)
            }
            None => None,
        };
        let index = line.strip_prefix("index ").ok_or_else(|| malformed("tlog-proof", "no index line"))?;
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) || (index.len() > 1 && index.starts_with('0'))
        {
            return Err(malformed("tlog-proof", "the index is not a decimal without leading zeros"));
        }
        let index = index.parse().map_err(|_| malformed("tlog-proof", "the index is too large"))?;
        let hashes = lines
            .map(|l| STANDARD.decode(l).ok().and_then(|h| h.try_into().ok()))
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| malformed("tlog-proof", "a proof line is not base64 of 32 bytes"))?;
        if hashes.len() > 64 {
            return Err(malformed("tlog-proof", "more than 64 proof hashes"));
        }
        Ok(Self { extra, index, hashes, checkpoint: checkpoint.to_string() })
    }

    /// Checks the proof for the entry whose leaf hash is `leaf`: the checkpoint is
    /// signed by one of `verifiers`, is for log `origin`, and the path leads from the
    /// leaf at the index to its root. Returns the checkpoint.
    pub fn verify(&self, leaf: &Hash, verifiers: &[Verifier], origin: &str) -> Result<Checkpoint, Error> {
        let text = open_note(&self.checkpoint, verifiers)?;
        let cp = Checkpoint::parse(&text)?;
        if cp.origin != origin {
            return Err(Error::WrongOrigin { got: cp.origin, want: origin.to_string() });
        }
        verify_inclusion(leaf, self.index, cp.size, &self.hashes, &cp.root)?;
        Ok(cp)
    }
}
