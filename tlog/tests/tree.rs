//! The tree, tiles, proofs and frontier against each other, for many sizes (powers of
//! two and not, partial tiles at every level that occurs). The independent
//! implementation they are checked against is `interop.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tlog::*;

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(format!("entry {i}").as_bytes())).collect()
}

/// The tiles of a tree of `size` over `leaves`, as a server stores them.
fn all_tiles(leaves: &[Hash], size: u64) -> TileHashes {
    let mut tiles = TileHashes::default();
    let mut level: Vec<Hash> = leaves[..size as usize].to_vec();
    let mut l = 0u8;
    while !level.is_empty() {
        for (i, chunk) in level.chunks(256).enumerate() {
            let tile = TileId { level: l, index: i as u64, width: chunk.len() as u16 };
            tiles.insert(tile, chunk.to_vec()).unwrap();
        }
        level = level.chunks_exact(256).map(subtree_hash).collect();
        l += 1;
    }
    tiles
}

fn sizes() -> Vec<u64> {
    let mut s: Vec<u64> = (1..=300).collect();
    s.extend([511, 512, 513, 1000, 1023, 1024, 1025, 65_535, 65_536, 65_537, 65_536 + 257, 70_000]);
    s
}

#[test]
fn roots_from_tiles_frontier_and_leaves_agree() {
    let all = leaves(70_000);
    let mut frontier = Frontier::new();
    let mut pushed = 0;
    for size in sizes() {
        while pushed < size {
            frontier.push(all[pushed as usize]);
            pushed += 1;
        }
        let expected = subtree_hash(&all[..size as usize]);
        assert_eq!(frontier.root(), expected, "frontier {size}");
        let tiles = all_tiles(&all, size);
        assert_eq!(tiles.root(size).unwrap(), expected, "tiles {size}");
        // Only the tiles the plan names are needed.
        let mut needed = TileHashes::default();
        for t in tiles_for_root(size) {
            let start = (t.index * 256) as usize;
            let hashes = level_hashes(&all, size, t.level)[start..start + usize::from(t.width)].to_vec();
            needed.insert(t, hashes).unwrap();
        }
        assert_eq!(needed.root(size).unwrap(), expected, "planned tiles {size}");
        assert_eq!(Frontier::from_bytes(&frontier.to_bytes()).unwrap(), frontier);
    }
    assert_eq!(Frontier::new().root(), EMPTY_ROOT);
}

/// The stored hashes at tile level `level` of a tree of `size`.
fn level_hashes(all: &[Hash], size: u64, level: u8) -> Vec<Hash> {
    let mut h: Vec<Hash> = all[..size as usize].to_vec();
    for _ in 0..level {
        h = h.chunks_exact(256).map(subtree_hash).collect();
    }
    h
}

#[test]
fn inclusion_proofs_verify_and_tampering_fails() {
    let all = leaves(70_000);
    let mut rng = 0x1234_5678_u64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for size in sizes() {
        let tiles = all_tiles(&all, size);
        let root = tiles.root(size).unwrap();
        for index in [0, size - 1, next(size), next(size)] {
            let proof = tiles.inclusion_proof(index, size).unwrap();
            let leaf = all[index as usize];
            verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
            assert!(tiles_for_inclusion(index, size).len() <= 2 * 3, "few tiles");
            if size > 1 {
                let other = (index + 1) % size;
                assert!(verify_inclusion(&leaf, other, size, &proof, &root).is_err(), "wrong index {index}/{size}");
                // (Another size can verify against the same root when the path's shape
                // is the same, e.g. leaf 0 in trees of 3 and 4; a checkpoint binds the
                // root to its size, so that is no forgery.)
                assert!(verify_inclusion(&leaf, index, 2 * size + 1, &proof, &root).is_err(), "wrong size");
                let mut flipped = proof.clone();
                flipped[0][0] ^= 1;
                assert!(verify_inclusion(&leaf, index, size, &flipped, &root).is_err());
                assert!(verify_inclusion(&leaf, index, size, &proof[1..], &root).is_err(), "missing hash");
                let mut extra = proof.clone();
                extra.push(root);
                assert!(verify_inclusion(&leaf, index, size, &extra, &root).is_err(), "extra hash");
            }
            assert!(
                verify_inclusion(&all[(index as usize + 1) % 70_000], index, size, &proof, &root).is_err() || size == 0
            );
        }
        assert!(tiles.inclusion_proof(size, size).is_err());
    }
}

#[test]
fn consistency_proofs_verify_and_tampering_fails() {
    let all = leaves(70_000);
    let sizes = sizes();
    for (i, &new) in sizes.iter().enumerate().step_by(7) {
        let tiles = all_tiles(&all, new);
        let new_root = tiles.root(new).unwrap();
        for &old in sizes[..=i].iter().step_by(11).chain([1, new].iter()) {
            if old > new {
                continue;
            }
            let old_root = subtree_hash(&all[..old as usize]);
            let proof = tiles.consistency_proof(old, new).unwrap();
            verify_consistency(old, new, &old_root, &new_root, &proof).unwrap_or_else(|e| panic!("{old}->{new}: {e}"));
            let mut wrong = old_root;
            wrong[5] ^= 1;
            assert!(verify_consistency(old, new, &wrong, &new_root, &proof).is_err(), "{old}->{new}");
            if !proof.is_empty() {
                let mut flipped = proof.clone();
                flipped[proof.len() - 1][0] ^= 1;
                assert!(verify_consistency(old, new, &old_root, &new_root, &flipped).is_err());
            }
            if old < new && old > 0 {
                // A forked tree: another entry at old-1.
                let mut forked = all[..new as usize].to_vec();
                forked[old as usize - 1] = leaf_hash(b"forged");
                let fork_root = subtree_hash(&forked);
                assert!(verify_consistency(old, new, &old_root, &fork_root, &proof).is_err());
            }
        }
    }
}

#[test]
fn missing_tiles_are_named() {
    let tiles = TileHashes::default();
    assert_eq!(tiles.root(5), Err(Error::MissingTile("tile/0/000.p/5".into())));
}

#[test]
fn entry_bundles_round_trip_and_refuse_garbage() {
    let entries: Vec<&[u8]> = vec![b"", b"a", &[7u8; 300]];
    let bundle = encode_entry_bundle(&entries).unwrap();
    assert_eq!(decode_entry_bundle(&bundle).unwrap(), entries.iter().map(|e| e.to_vec()).collect::<Vec<_>>());
    assert!(decode_entry_bundle(&bundle[..bundle.len() - 1]).is_err());
    assert!(decode_entry_bundle(&[0]).is_err());
    assert!(encode_entry_bundle(&[&vec![0u8; 65_536]]).is_err());
}
