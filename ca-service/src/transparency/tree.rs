//! The tree as the store holds it: tiles read from the store, the roots and proofs
//! computed from them, and the stored hashes above the leaves kept up to date.

use tlog::{Hash, TileHashes, TileId, TILE_WIDTH};

use crate::store::{LogStore, StoreError};

/// What can go wrong with the stored tree.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored tree lacks hashes of tile {0}: {1} of {2} present")]
    Incomplete(String, usize, usize),
    #[error(transparent)]
    Tlog(#[from] tlog::Error),
}

/// One tile's hashes, exactly as many as its width.
pub async fn read_tile(store: &dyn LogStore, tile: TileId) -> Result<Vec<Hash>, TreeError> {
    let start = tile.index * TILE_WIDTH;
    let width = u64::from(tile.width);
    let hashes = store.log_hashes(tile.level, start, start + width).await?;
    if hashes.len() as u64 != width {
        return Err(TreeError::Incomplete(tile.path(), hashes.len(), tile.width.into()));
    }
    Ok(hashes)
}

/// The tiles a computation needs, read from the store.
pub async fn read_tiles(store: &dyn LogStore, tiles: &[TileId]) -> Result<TileHashes, TreeError> {
    let mut out = TileHashes::default();
    for &tile in tiles {
        out.insert(tile, read_tile(store, tile).await?)?;
    }
    Ok(out)
}

/// The root of the stored tree at `size` (its hashes above the leaves must be
/// materialized up to `size`).
pub async fn root_at(store: &dyn LogStore, size: u64) -> Result<Hash, TreeError> {
    Ok(read_tiles(store, &tlog::tiles_for_root(size)).await?.root(size)?)
}

/// The inclusion proof of leaf `index` in the tree of `size`.
pub async fn inclusion_proof(store: &dyn LogStore, index: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
    Ok(read_tiles(store, &tlog::tiles_for_inclusion(index, size)).await?.inclusion_proof(index, size)?)
}

/// Hashes a read of the tree below is done in, so a first run over a large log
/// holds a bounded number of them at a time.
const CHUNK: u64 = 256 * TILE_WIDTH;

/// Stores the hashes at tile levels 1, 2, … of every complete subtree that the tree
/// of `to` has and the tree of `from` had not (those of `from` are stored already).
/// Idempotent: a node is a function of the leaves below it.
pub async fn materialize(store: &dyn LogStore, from: u64, to: u64) -> Result<(), TreeError> {
    for level in 1u8..=7 {
        let shift = 8 * u32::from(level);
        let (lo, hi) = (from >> shift, to >> shift);
        if hi == 0 {
            break;
        }
        let mut idx = lo;
        while idx < hi {
            let end = (idx + CHUNK / TILE_WIDTH).min(hi);
            let below = store.log_hashes(level - 1, idx * TILE_WIDTH, end * TILE_WIDTH).await?;
            let want = ((end - idx) * TILE_WIDTH) as usize;
            if below.len() != want {
                let tile = TileId { level: level - 1, index: idx, width: 256 };
                return Err(TreeError::Incomplete(tile.path(), below.len(), want));
            }
            let nodes: Vec<Hash> = below.chunks(TILE_WIDTH as usize).map(tlog::subtree_hash).collect();
            store.put_log_nodes(level, idx, &nodes).await?;
            idx = end;
        }
    }
    Ok(())
}
