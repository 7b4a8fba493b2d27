//! The committed format-1 repository (tests/fixtures/format1, written by rustybackup 0.1)
//! read by this build's `format` module: every piece and block map opens as version 1,
//! matches its trailer checksum, and every indexed block decodes to its digest. The
//! Python test next to the fixture restores it byte for byte; this one pins the reader.

use std::fs;
use std::path::PathBuf;

use _core::format::{BlockMapReader, PieceReader};

fn sets() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1/repo/sets");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_piece_and_block_map_of_the_format1_fixture_reads_back() {
    let dirs = sets();
    assert!(!dirs.is_empty());
    let mut blocks = 0;
    for dir in dirs {
        let piece = PieceReader::open(&dir.join("data.piece")).unwrap();
        assert_eq!(piece.version(), 1);
        piece.verify_checksum().unwrap();
        for e in piece.entries().unwrap() {
            let e = e.unwrap();
            piece
                .read_verified(&e, "fixture")
                .map_err(|e| format!("{e:?}"))
                .unwrap();
            blocks += 1;
        }
        let map = BlockMapReader::open(&dir.join("blockmap")).unwrap();
        assert_eq!(
            (map.version(), map.algorithm(), map.block_size()),
            (1, piece.algorithm(), piece.block_size())
        );
        map.verify_checksum().unwrap();
        assert_eq!(map.range(0, map.count()).unwrap().filter(Result::is_err).count(), 0);
    }
    assert!(blocks > 0);
}
