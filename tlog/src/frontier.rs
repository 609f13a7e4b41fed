//! The compact range of a tree: the roots of its complete subtrees, left to right.
//! What a monitor keeps to extend a verified tree with new leaves and recompute the
//! root, without the leaves it has already seen.

use crate::hash::{node_hash, Hash, EMPTY_ROOT};
use crate::{malformed, Error};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, largest subtree first.
    hashes: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        // Each trailing one bit of the old size is a subtree of the new leaf's height.
        let mut merges = self.size.trailing_ones();
        while merges > 0 {
            let left = self.hashes.pop().unwrap_or(EMPTY_ROOT);
            h = node_hash(&left, &h);
            merges -= 1;
        }
        self.hashes.push(h);
        self.size += 1;
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        let Some(mut acc) = iter.next().copied() else { return EMPTY_ROOT };
        for left in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }

    /// Size (8 bytes, big-endian) then the hashes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.size.to_be_bytes().to_vec();
        for h in &self.hashes {
            out.extend_from_slice(h);
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (size, rest) = bytes.split_at_checked(8).ok_or_else(|| malformed("frontier", "shorter than 8 bytes"))?;
        let size = u64::from_be_bytes(size.try_into().map_err(|_| malformed("frontier", "size"))?);
        if rest.len() != size.count_ones() as usize * 32 {
            return Err(malformed("frontier", format!("{} bytes of hashes for size {size}", rest.len())));
        }
        let hashes = rest.chunks_exact(32).map(|c| c.try_into().unwrap_or(EMPTY_ROOT)).collect();
        Ok(Self { size, hashes })
    }
}
