//! Transparency logs in the form the field settled on: an RFC 6962/9162 Merkle tree,
//! served as C2SP tlog-tiles, committed to by C2SP tlog-checkpoints in signed notes,
//! with offline inclusion proofs in the C2SP tlog-proof format.
//!
//! Pure and storage-free, so that a server, a monitor and a device share one
//! implementation: no I/O, no async, no configuration; SHA-256 and signature checks
//! from `aws-lc-rs`. Every parser of untrusted input returns an [`Error`].
//!
//! Proofs are computed in two phases so a caller whose hashes are in a database or
//! behind HTTP can fetch first and compute second: [`tiles_for_root`],
//! [`tiles_for_inclusion`] and [`tiles_for_consistency`] name the tiles a computation
//! needs; [`TileHashes`], filled with them, computes it.

mod bundle;
mod checkpoint;
mod frontier;
mod hash;
mod note;
mod proof;
mod tiles;
mod tlog_proof;

pub use bundle::{decode_entry_bundle, encode_entry_bundle};
pub use checkpoint::Checkpoint;
pub use frontier::Frontier;
pub use hash::{leaf_hash, node_hash, subtree_hash, Hash, EMPTY_ROOT};
pub use note::{
    key_id_ecdsa, key_id_ed25519, open_note, sign_note, verifier_key, NoteSigner, SignError, Verifier, SIG_ECDSA,
    SIG_ED25519,
};
pub use proof::{verify_consistency, verify_inclusion};
pub use tiles::{
    parse_entries_path, parse_tile_path, tiles_for_consistency, tiles_for_inclusion, tiles_for_root, TileHashes,
    TileId, TILE_HEIGHT, TILE_WIDTH,
};
pub use tlog_proof::TlogProof;

/// Everything that can be wrong with a log's data or proofs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("index {index} is not in a tree of size {size}")]
    OutOfRange { index: u64, size: u64 },
    #[error("the hashes of tile {0} are needed but were not given")]
    MissingTile(String),
    #[error("inclusion proof does not lead to the root")]
    InclusionMismatch,
    #[error("consistency proof does not lead to both roots")]
    ConsistencyMismatch,
    #[error("the proof has {got} hashes where {want} are needed")]
    ProofLength { got: usize, want: usize },
    #[error("the note has no valid signature by a known key")]
    NoValidSignature,
    #[error("the note's signature by {0} does not verify")]
    BadSignature(String),
    #[error("the note is signed for log '{got}', not '{want}'")]
    WrongOrigin { got: String, want: String },
    #[error("signing failed: {0}")]
    Sign(String),
}

pub(crate) fn malformed(what: &'static str, why: impl Into<String>) -> Error {
    Error::Malformed { what, why: why.into() }
}
