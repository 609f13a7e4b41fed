//! Entry bundles (C2SP tlog-tiles): the entries of a level-0 tile, each behind a
//! big-endian 16-bit length.

use crate::{malformed, Error};

pub fn encode_entry_bundle(entries: &[&[u8]]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for e in entries {
        let len =
            u16::try_from(e.len()).map_err(|_| malformed("entry", format!("{} bytes do not fit a bundle", e.len())))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

pub fn decode_entry_bundle(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_at_checked(2).ok_or_else(|| malformed("entry bundle", "truncated length"))?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let (entry, rest) = rest.split_at_checked(len).ok_or_else(|| malformed("entry bundle", "truncated entry"))?;
        out.push(entry.to_vec());
        bytes = rest;
    }
    Ok(out)
}
