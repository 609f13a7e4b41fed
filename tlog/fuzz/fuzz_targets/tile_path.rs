//! The tile and entry-bundle paths the public listener parses (`/log/tile/…`): never
//! a panic, and the parser is strict — a path it accepts is the one canonical path of
//! that tile, so two URLs never name one tile (caches, and a monitor comparing tiles).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlog::{parse_entries_path, parse_tile_path};

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    if let Ok(tile) = parse_tile_path(path) {
        assert_eq!(tile.path(), path);
        assert!(tile.level <= 63 && (1..=256).contains(&tile.width));
    }
    if let Ok(tile) = parse_entries_path(path) {
        assert_eq!(tile.entries_path(), path);
        assert!(tile.level == 0 && (1..=256).contains(&tile.width));
    }
});
