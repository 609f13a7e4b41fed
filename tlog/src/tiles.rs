//! C2SP tlog-tiles: the tree cut into tiles of height 8, and the proofs computed from
//! them.
//!
//! A tile at level `L`, index `N` holds the hashes at tree level `8L` with indexes
//! `256N .. 256N + width`. Any complete, aligned subtree of height `h = 8L + r`
//! (`r < 8`) is the MTH of `2^r` hashes of one tile at level `L`, so every root and
//! proof is a function of a few tiles. The proofs' *shape* depends only on indexes
//! and sizes, which is what lets [`tiles_for_inclusion`] and friends name the tiles
//! before any hash is read.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use crate::hash::{node_hash, split, subtree_hash, Hash, EMPTY_ROOT};
use crate::{malformed, Error};

/// Tile height: a tile spans 8 tree levels.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 256;

/// A tile, or the entry bundle at the same position of level 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    pub level: u8,
    pub index: u64,
    /// 1..=256; 256 is a full tile.
    pub width: u16,
}

impl TileId {
    /// `tile/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        format!("tile/{}/{}", self.level, self.tail())
    }

    /// `tile/entries/<N>[.p/<W>]`: the entries under the level-0 tile.
    pub fn entries_path(&self) -> String {
        format!("tile/entries/{}", self.tail())
    }

    fn tail(&self) -> String {
        let mut groups = Vec::new();
        let mut n = self.index;
        loop {
            groups.push(n % 1000);
            n /= 1000;
            if n == 0 {
                break;
            }
        }
        let mut out = String::new();
        for (i, g) in groups.iter().rev().enumerate() {
            if i + 1 < groups.len() {
                out.push_str(&format!("x{g:03}/"));
            } else {
                out.push_str(&format!("{g:03}"));
            }
        }
        if u64::from(self.width) < TILE_WIDTH {
            out.push_str(&format!(".p/{}", self.width));
        }
        out
    }
}

/// Parses `tile/<L>/<N>[.p/<W>]` (levels 0..=63).
pub fn parse_tile_path(path: &str) -> Result<TileId, Error> {
    let rest = path.strip_prefix("tile/").ok_or_else(|| malformed("tile path", "does not start with tile/"))?;
    let (level, rest) = rest.split_once('/').ok_or_else(|| malformed("tile path", "no level"))?;
    if level == "entries" {
        return Err(malformed("tile path", "an entry bundle path is not a tile path"));
    }
    let level = decimal(level, "tile level")?;
    if level > 63 {
        return Err(malformed("tile level", format!("{level} is above 63")));
    }
    let (index, width) = parse_tail(rest)?;
    Ok(TileId { level: level as u8, index, width })
}

/// Parses `tile/entries/<N>[.p/<W>]`.
pub fn parse_entries_path(path: &str) -> Result<TileId, Error> {
    let rest =
        path.strip_prefix("tile/entries/").ok_or_else(|| malformed("entry bundle path", "not tile/entries/…"))?;
    let (index, width) = parse_tail(rest)?;
    Ok(TileId { level: 0, index, width })
}

/// A decimal without sign or leading zeros, at most 20 digits.
fn decimal(s: &str, what: &'static str) -> Result<u64, Error> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return Err(malformed(what, format!("'{}' is not a decimal without leading zeros", s.escape_debug())));
    }
    s.parse().map_err(|_| malformed(what, "too large"))
}

fn parse_tail(s: &str) -> Result<(u64, u16), Error> {
    let (n, width) = match s.split_once(".p/") {
        Some((n, w)) => {
            let w = decimal(w, "partial tile width")?;
            if !(1..TILE_WIDTH).contains(&w) {
                return Err(malformed("partial tile width", format!("{w} is not 1..=255")));
            }
            (n, w as u16)
        }
        None => (s, TILE_WIDTH as u16),
    };
    let groups: Vec<&str> = n.split('/').collect();
    if groups.len() > 7 {
        return Err(malformed("tile index", "too many path elements"));
    }
    let mut index: u64 = 0;
    for (i, g) in groups.iter().enumerate() {
        let last = i + 1 == groups.len();
        let digits = if last {
            *g
        } else {
            g.strip_prefix('x')
                .ok_or_else(|| malformed("tile index", "an element other than the last lacks its 'x'"))?
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("tile index", format!("'{}' is not three digits", g.escape_debug())));
        }
        if i == 0 && !last && digits == "000" {
            return Err(malformed("tile index", "leading zero element"));
        }
        let v: u64 = digits.parse().map_err(|_| malformed("tile index", "not a number"))?;
        index = index
            .checked_mul(1000)
            .and_then(|x| x.checked_add(v))
            .ok_or_else(|| malformed("tile index", "too large"))?;
    }
    Ok((index, width))
}

/// A complete, aligned subtree: height `h`, covering leaves `i·2^h .. (i+1)·2^h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Subtree {
    height: u32,
    index: u64,
}

/// The maximal complete aligned subtrees that make up leaves `lo..hi`, left to right.
fn decompose(range: Range<u64>) -> Vec<Subtree> {
    let (mut lo, hi) = (range.start, range.end);
    let mut out = Vec::new();
    while lo < hi {
        let mut h = if lo == 0 { 63 } else { lo.trailing_zeros() };
        while h > 0 && (1u64 << h) > hi - lo {
            h -= 1;
        }
        out.push(Subtree { height: h, index: lo >> h });
        lo += 1 << h;
    }
    out
}

/// The tile holding the hashes `s` is computed from, at the width a tree of `size`
/// has it, and the positions of those hashes in it.
fn tile_of(s: Subtree, size: u64) -> (TileId, Range<usize>) {
    let level = s.height / TILE_HEIGHT;
    let r = s.height % TILE_HEIGHT;
    let first = s.index << r;
    let index = first / TILE_WIDTH;
    let available = size >> (TILE_HEIGHT * level);
    let width = (available - index * TILE_WIDTH).min(TILE_WIDTH) as u16;
    let pos = (first % TILE_WIDTH) as usize;
    (TileId { level: level as u8, index, width }, pos..pos + (1usize << r))
}

/// The ranges of leaves whose MTH make up the inclusion proof of `index` in a tree
/// of `size` (RFC 9162 §2.1.3.1), from the leaf's sibling up.
fn inclusion_ranges(index: u64, size: u64) -> Vec<Range<u64>> {
    fn path(m: u64, lo: u64, hi: u64, out: &mut Vec<Range<u64>>) {
        let n = hi - lo;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            path(m, lo, lo + k, out);
            out.push(lo + k..hi);
        } else {
            path(m - k, lo + k, hi, out);
            out.push(lo..lo + k);
        }
    }
    let mut out = Vec::new();
    path(index, 0, size, &mut out);
    out
}

/// The ranges of the consistency proof from `old` to `new` (RFC 9162 §2.1.4.1).
fn consistency_ranges(old: u64, new: u64) -> Vec<Range<u64>> {
    fn sub(m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<Range<u64>>) {
        let n = hi - lo;
        if m == n {
            if !whole {
                out.push(lo..hi);
            }
            return;
        }
        let k = split(n);
        if m <= k {
            sub(m, lo, lo + k, whole, out);
            out.push(lo + k..hi);
        } else {
            sub(m - k, lo + k, hi, false, out);
            out.push(lo..lo + k);
        }
    }
    let mut out = Vec::new();
    if old > 0 && old < new {
        sub(old, 0, new, true, &mut out);
    }
    out
}

fn tiles_for(ranges: &[Range<u64>], size: u64) -> Vec<TileId> {
    let set: BTreeSet<TileId> = ranges.iter().flat_map(|r| decompose(r.clone())).map(|s| tile_of(s, size).0).collect();
    set.into_iter().collect()
}

/// The tiles [`TileHashes::root`] needs for a tree of `size`.
pub fn tiles_for_root(size: u64) -> Vec<TileId> {
    tiles_for(std::slice::from_ref(&(0..size)), size)
}

/// The tiles [`TileHashes::inclusion_proof`] needs.
pub fn tiles_for_inclusion(index: u64, size: u64) -> Vec<TileId> {
    if index >= size {
        return Vec::new();
    }
    tiles_for(&inclusion_ranges(index, size), size)
}

/// The tiles [`TileHashes::consistency_proof`] needs.
pub fn tiles_for_consistency(old: u64, new: u64) -> Vec<TileId> {
    if old > new {
        return Vec::new();
    }
    tiles_for(&consistency_ranges(old, new), new)
}

/// Tiles' hashes, as read from a store or fetched, and what they prove.
#[derive(Clone, Debug, Default)]
pub struct TileHashes {
    tiles: HashMap<(u8, u64), Vec<Hash>>,
}

impl TileHashes {
    /// Adds a tile; `hashes` must be exactly its width. A wider copy of a tile already
    /// present replaces a narrower one (its prefix is the same tree).
    pub fn insert(&mut self, tile: TileId, hashes: Vec<Hash>) -> Result<(), Error> {
        if hashes.len() != usize::from(tile.width) || tile.width == 0 || u64::from(tile.width) > TILE_WIDTH {
            return Err(malformed("tile", format!("{} holds {} hashes", tile.path(), hashes.len())));
        }
        let slot = self.tiles.entry((tile.level, tile.index)).or_default();
        if slot.len() < hashes.len() {
            *slot = hashes;
        }
        Ok(())
    }

    /// Parses a served tile body (concatenated 32-byte hashes) and adds it.
    pub fn insert_bytes(&mut self, tile: TileId, body: &[u8]) -> Result<(), Error> {
        if body.len() != usize::from(tile.width) * 32 {
            return Err(malformed(
                "tile",
                format!("{} is {} bytes, not {}", tile.path(), body.len(), usize::from(tile.width) * 32),
            ));
        }
        let hashes = body.chunks_exact(32).map(|c| c.try_into().unwrap_or([0u8; 32])).collect();
        self.insert(tile, hashes)
    }

    fn subtree(&self, s: Subtree, size: u64) -> Result<Hash, Error> {
        let (tile, pos) = tile_of(s, size);
        let hashes = self
            .tiles
            .get(&(tile.level, tile.index))
            .and_then(|t| t.get(pos))
            .ok_or_else(|| Error::MissingTile(tile.path()))?;
        Ok(subtree_hash(hashes))
    }

    fn range(&self, r: Range<u64>, size: u64) -> Result<Hash, Error> {
        let parts = decompose(r).into_iter().map(|s| self.subtree(s, size)).collect::<Result<Vec<_>, _>>()?;
        let mut iter = parts.into_iter().rev();
        let Some(mut acc) = iter.next() else { return Ok(EMPTY_ROOT) };
        for left in iter {
            acc = node_hash(&left, &acc);
        }
        Ok(acc)
    }

    /// The root of the tree of `size`.
    pub fn root(&self, size: u64) -> Result<Hash, Error> {
        self.range(0..size, size)
    }

    /// The inclusion proof of leaf `index` in the tree of `size`, from the leaf's
    /// sibling up (RFC 9162 order).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        if index >= size {
            return Err(Error::OutOfRange { index, size });
        }
        inclusion_ranges(index, size).into_iter().map(|r| self.range(r, size)).collect()
    }

    /// The consistency proof from the tree of `old` to the tree of `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
        if old > new {
            return Err(Error::OutOfRange { index: old, size: new });
        }
        consistency_ranges(old, new).into_iter().map(|r| self.range(r, new)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_spec() {
        let t = |level, index, width| TileId { level, index, width };
        assert_eq!(t(0, 0, 256).path(), "tile/0/000");
        assert_eq!(t(1, 1_234_067, 256).path(), "tile/1/x001/x234/067");
        assert_eq!(t(2, 5, 17).path(), "tile/2/005.p/17");
        assert_eq!(t(0, 1000, 256).entries_path(), "tile/entries/x001/000");
        for tile in [t(0, 0, 256), t(1, 1_234_067, 256), t(2, 5, 17), t(63, u64::MAX / 2, 1)] {
            assert_eq!(parse_tile_path(&tile.path()), Ok(tile));
            assert_eq!(
                parse_entries_path(&tile.entries_path()).map(|e| (e.index, e.width)),
                Ok((tile.index, tile.width))
            );
        }
    }

    #[test]
    fn bad_paths_are_refused() {
        for p in [
            "tile/0/1",
            "tile/00/000",
            "tile/64/000",
            "tile/0/x000/001",
            "tile/0/001/002",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/01",
            "tile/0/0a0",
            "tile/entries/000",
            "tile/-1/000",
            "tile/0/",
            "tile/0/x001",
            "tile/0/000.p/",
            "tile//000",
            "tile/0/x01/000",
        ] {
            assert!(parse_tile_path(p).is_err(), "{p}");
        }
        assert!(parse_entries_path("tile/entries/000.p/300").is_err());
        assert!(parse_entries_path("tile/0/000").is_err());
    }

    #[test]
    fn decomposition_covers_the_range_with_aligned_subtrees() {
        for (lo, hi) in [(0u64, 1u64), (0, 7), (0, 1000), (4, 7), (256, 600), (512, 513)] {
            let parts = decompose(lo..hi);
            let mut at = lo;
            for s in parts {
                assert_eq!(s.index << s.height, at);
                at += 1 << s.height;
            }
            assert_eq!(at, hi);
        }
    }
}
