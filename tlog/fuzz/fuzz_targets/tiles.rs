//! What a monitor fetches from a log it does not trust: entry bundles and hash tiles.
//! Never a panic; a bundle that decodes encodes back to the same bytes; a tile body is
//! accepted only at its exact width, and proofs computed from whatever was accepted
//! either fail cleanly or verify against the root computed from the same tiles.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlog::{decode_entry_bundle, encode_entry_bundle, verify_inclusion, Frontier, TileHashes, TileId};

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = decode_entry_bundle(data) {
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        assert_eq!(encode_entry_bundle(&refs).unwrap(), data);
    }
    if let Ok(f) = Frontier::from_bytes(data) {
        let _ = f.root();
        assert_eq!(Frontier::from_bytes(&f.to_bytes()).unwrap().size(), f.size());
    }
    // A level-0 tile of the width the first byte names, from the rest.
    let Some((&w, body)) = data.split_first() else { return };
    let width = u16::from(w) + 1;
    let mut tiles = TileHashes::default();
    let tile = TileId { level: 0, index: 0, width };
    match tiles.insert_bytes(tile, body) {
        Ok(()) => {
            assert_eq!(body.len(), usize::from(width) * 32);
            let size = u64::from(width);
            if let Ok(root) = tiles.root(size) {
                for index in [0, size / 2, size - 1] {
                    if let Ok(proof) = tiles.inclusion_proof(index, size) {
                        let leaf: [u8; 32] = body[index as usize * 32..][..32].try_into().unwrap();
                        verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
                    }
                }
            }
        }
        Err(_) => assert_ne!(body.len(), usize::from(width) * 32),
    }
});
