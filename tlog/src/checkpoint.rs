//! C2SP tlog-checkpoint: the note text a log signs — origin, size, root, extensions.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::hash::Hash;
use crate::{malformed, Error};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Further non-empty lines (log-specific extensions).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text, ending in a newline.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root));
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
    }

    /// Parses a checkpoint's note text (the signatures already checked and removed).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let body = text.strip_suffix('\n').ok_or_else(|| malformed("checkpoint", "does not end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| malformed("checkpoint", "no origin"))?;
        let size = lines.next().ok_or_else(|| malformed("checkpoint", "no size"))?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(malformed("checkpoint", "the size is not a decimal without leading zeros"));
        }
        let size: u64 = size.parse().map_err(|_| malformed("checkpoint", "the size is too large"))?;
        let root = lines.next().ok_or_else(|| malformed("checkpoint", "no root hash"))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| malformed("checkpoint", "the root is not base64 of 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(malformed("checkpoint", "empty extension line"));
        }
        Ok(Self { origin: origin.to_string(), size, root, extensions })
    }
}
