//! Round trips and hand-written damage of pieces and block maps.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::scan::algorithm::Algorithm;

pub(super) fn tmpdir(name: &str) -> PathBuf {
    crate::test_util::tmpdir("format", name)
}

/// Writes `blocks` (each at most `bs` bytes) as file 7's blocks, zstd when it shrinks them.
pub(super) fn write_piece(path: &Path, alg: Algorithm, bs: u32, blocks: &[Vec<u8>], zstd: bool) -> PieceSummary {
    crate::test_util::write_plain_piece(path, 7, alg, bs, blocks, zstd)
}

fn sample_blocks(n: u8, bs: usize) -> Vec<Vec<u8>> {
    crate::test_util::sample_blocks(n, |i| bs - usize::from(i % 3) * 7)
}

#[test]
fn pieces_round_trip_with_every_algorithm_with_and_without_zstd() {
    let d = tmpdir("rt");
    for alg in crate::scan::algorithm::ALL {
        for zstd in [false, true] {
            let p = d.join(format!("{zstd}-{}.piece", alg.name()));
            let blocks = sample_blocks(20, 512);
            let summary = write_piece(&p, alg, 512, &blocks, zstd);
            assert_eq!(summary.size, fs::metadata(&p).unwrap().len());
            assert!(!p.with_extension("piece-index.tmp").exists());
            let r = PieceReader::open(&p).unwrap();
            assert_eq!((r.block_count(), r.version(), r.algorithm()), (20, WRITE_VERSION, alg));
            assert_eq!(r.recorded_checksum(), summary.checksum.as_slice());
            r.verify_checksum().unwrap();
            for (i, e) in r.entries().unwrap().enumerate() {
                let e = e.unwrap();
                assert_eq!((e.file_no, e.block_index), (7, i as u64));
                assert_eq!(e.flags == FLAG_ZSTD, zstd && i % 2 == 0, "block {i}");
                assert_eq!(r.read_verified(&e, "f").unwrap(), blocks[i]);
            }
        }
    }
}

#[test]
fn block_maps_round_trip_and_stream_any_range() {
    let d = tmpdir("bm");
    let p = d.join("blockmap");
    let alg = Algorithm::Sha256;
    let mut w = BlockMapWriter::create(&p, alg, 4096).unwrap();
    let recs: Vec<BlockRecord> = (0..50u32)
        .map(|i| BlockRecord {
            source: i % 3,
            offset: 32 + u64::from(i) * 4096,
            stored_len: 4096 - i,
            raw_len: 4096 - i,
            flags: 0,
            digest: alg.digest(&i.to_le_bytes()),
        })
        .collect();
    for r in &recs {
        w.push(r).unwrap();
    }
    let (checksum, n) = w.finish().unwrap();
    assert_eq!(n, 50);
    let r = BlockMapReader::open(&p).unwrap();
    assert_eq!((r.count(), r.block_size(), r.algorithm()), (50, 4096, alg));
    assert_eq!(r.recorded_checksum(), checksum.as_slice());
    r.verify_checksum().unwrap();
    let got: Vec<BlockRecord> = r.range(10, 5).unwrap().map(Result::unwrap).collect();
    assert_eq!(got, recs[10..15]);
    assert_eq!(r.range(50, 0).unwrap().count(), 0);
    let msg = r.range(49, 2).err().unwrap().to_string();
    assert!(
        msg.contains("records 49..51 requested but the block map holds 50"),
        "{msg}"
    );
}

#[test]
fn a_flipped_data_byte_is_found_by_block_and_checksum() {
    let d = tmpdir("flip");
    let p = d.join("a.piece");
    let blocks: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 512]).collect();
    write_piece(&p, Algorithm::Blake3, 512, &blocks, false);
    let mut bytes = fs::read(&p).unwrap();
    bytes[32 + 3 * 512 + 1] ^= 0xff;
    fs::write(&p, &bytes).unwrap();
    let r = PieceReader::open(&p).unwrap();
    assert!(matches!(r.verify_checksum(), Err(Error::Checksum { .. })));
    let e = r.entries().unwrap().nth(3).unwrap().unwrap();
    match r.read_verified(&e, "dir/x") {
        Err(BlockError::Corrupt {
            block_index,
            offset,
            file,
            ..
        }) => {
            assert_eq!((block_index, offset, file.as_str()), (3, 32 + 3 * 512, "dir/x"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn foreign_truncated_and_future_files_name_file_and_offset() {
    let d = tmpdir("trunc");
    let p = d.join("a.piece");
    write_piece(&p, Algorithm::Blake3, 512, &[vec![1; 512]], false);
    let bytes = fs::read(&p).unwrap();
    let shown = p.display().to_string();
    let err = |b: &[u8]| {
        fs::write(&p, b).unwrap();
        PieceReader::open(&p).err().unwrap().to_string()
    };
    let msg = err(&bytes[..bytes.len() - 5]);
    assert_eq!(
        msg,
        format!(
            "{shown}: bad trailer magic (truncated or overwritten piece) (at offset {})",
            bytes.len() - 5 - 112
        )
    );
    assert_eq!(
        err(&[0u8; 200]),
        format!("{shown}: not a piece file (bad magic) (at offset 0)")
    );
    assert_eq!(
        err(&bytes[..20]),
        format!("{shown}: truncated piece (20 bytes, no header) (at offset 20)")
    );
    let mut v = bytes.clone();
    v[8] = 3;
    assert_eq!(
        err(&v),
        format!("{shown}: piece version 3 is not supported (this build reads pieces of versions [1, 2]) (at offset 8)")
    );
    let mut v = bytes.clone();
    v[12..16].copy_from_slice(&0u32.to_le_bytes());
    assert!(err(&v).ends_with("header block_size 0 is out of range (1..=16777216 bytes) (at offset 12)"));
    let mut v = bytes.clone();
    v[30] = 1;
    assert!(err(&v).ends_with("reserved header byte is not zero (at offset 30)"));
}

#[test]
fn the_layout_of_every_readable_version_is_known() {
    for v in READ_VERSIONS {
        let layout = Layout::of(v).unwrap();
        assert_eq!(layout.version(), v);
    }
    assert_eq!(Layout::of(WRITE_VERSION), Some(Layout::V2));
    assert_eq!(Layout::written(Kind::Piece), Layout::V2);
    assert_eq!(Layout::of(0), None);
    // The sizes docs/FORMAT.md gives for version 2.
    assert_eq!(Layout::V2.trailer_len(Kind::Piece), 112);
    assert_eq!(Layout::V2.index_entry_len(32), 61);
    // The sizes docs/FORMAT.md gives for version 1.
    assert_eq!(Layout::V1.trailer_len(Kind::Piece), 96);
    assert_eq!(Layout::V1.trailer_len(Kind::BlockMap), 88);
    assert_eq!(Layout::V1.index_entry_len(32), 61);
    assert_eq!(Layout::V1.record_len(32), 53);
}

#[test]
fn writers_refuse_what_readers_would_refuse() {
    let d = tmpdir("refuse");
    let mut w = PieceWriter::create(&d.join("p"), Algorithm::Blake3, 512).unwrap();
    let digest = Algorithm::Blake3.digest(b"x");
    for (stored, raw_len, flags) in [
        (vec![0u8; 513], 513, 0),
        (vec![1u8; 10], 12, 0),
        (vec![0u8; 8], 8, 4),
        (vec![], 0, 0),
    ] {
        let msg = w
            .write_block(0, 0, &stored, raw_len, flags, &digest)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("block 0:"), "{msg}");
    }
    assert!(w.write_block(0, 0, b"abc", 3, 0, &digest[..4]).is_err());
}

#[test]
fn block_fields_are_checked_against_the_block_size() {
    assert_eq!(block::check_fields(512, 512, 0, 512), Ok(()));
    assert_eq!(block::check_fields(100, 512, FLAG_ZSTD, 512), Ok(()));
    assert!(block::check_fields(512, 512, FLAG_ZSTD, 512).is_err());
    assert!(block::check_fields(0, 512, FLAG_ZSTD, 512).is_err());
    assert!(block::check_fields(u32::MAX, u32::MAX, 0, 512).is_err());
    let (field, msg) = block::check_fields(1, 1, 0x10, 512).unwrap_err();
    assert_eq!((field, msg.as_str()), (block::Field::Flags, "unknown block flags 0x10"));
    // Bit 2 names the cipher (AES-256-GCM), bit 3 that the digest is in the tag: both
    // mean nothing on a block that is not sealed.
    for bit in [4, 8] {
        let (field, msg) = block::check_fields(1, 1, bit, 512).unwrap_err();
        assert_eq!(field, block::Field::Flags);
        assert!(msg.contains("not sealed"), "{msg}");
    }
    // A sealed block carries its nonce and tag beside what it seals.
    assert_eq!(
        block::check_fields(512 + SEALED_OVERHEAD, 512, FLAG_SEALED, 512),
        Ok(())
    );
    assert_eq!(
        block::check_fields(100 + SEALED_OVERHEAD, 512, FLAG_SEALED | FLAG_ZSTD, 512),
        Ok(())
    );
    assert!(block::check_fields(512, 512, FLAG_SEALED, 512).is_err());
    assert!(block::check_fields(SEALED_OVERHEAD, 512, FLAG_SEALED | FLAG_ZSTD, 512).is_err());
    assert!(block::check_fields(3, 2, FLAG_SEALED, 512).is_err());
    assert_eq!(block::check_fields(1, 600, 0, 512).unwrap_err().0, block::Field::RawLen);
    assert_eq!(
        block::check_fields(3, 2, 0, 512).unwrap_err().0,
        block::Field::StoredLen
    );
    // A zstd frame claiming more than raw_len is an error, not an allocation.
    let frame = zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap();
    assert!(decode_block(frame, 512, FLAG_ZSTD).is_err());
}

#[test]
fn a_bad_entry_or_record_field_is_named_at_its_own_offset() {
    let d = tmpdir("fields");
    let p = d.join("a.piece");
    write_piece(&p, Algorithm::Blake3, 512, &[vec![1; 512], vec![2; 512]], false);
    let orig = fs::read(&p).unwrap();
    let index_off = (orig.len() - 112 - 2 * 61) as u64;
    for (field_at, value) in [(20u64, 9u8), (24, 9), (28, 4)] {
        let mut v = orig.clone();
        let at = index_off + 61 + field_at;
        v[at as usize] ^= value;
        fs::write(&p, &v).unwrap();
        let r = PieceReader::open(&p).unwrap();
        let errs: Vec<String> = r
            .entries()
            .unwrap()
            .filter_map(|e| e.err())
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("index entry 1: ") && errs[0].ends_with(&format!("(at offset {at})")),
            "{}",
            errs[0]
        );
    }
    // Version 1: records follow the header; version 2: a 24-byte run header first.
    for (layout, first) in [(Layout::V1, 32u64), (Layout::V2, 56)] {
        a_bad_record_field_is_named_in(&d, layout, first);
    }
}

fn a_bad_record_field_is_named_in(d: &Path, layout: Layout, first: u64) {
    let m = d.join(format!("blockmap-v{}", layout.version()));
    let mut w = BlockMapWriter::create_layout(&m, Algorithm::Blake3, 512, None, layout).unwrap();
    let digest = Algorithm::Blake3.digest(b"x");
    w.push(&BlockRecord {
        source: 0,
        offset: 32,
        stored_len: 10,
        raw_len: 10,
        flags: 0,
        digest,
    })
    .unwrap();
    w.finish().unwrap();
    let orig = fs::read(&m).unwrap();
    // (byte changed, xor, offset of the field the error must name)
    for (byte, value, field) in [(12u64, 1u8, 12u64), (19, 1, 16), (20, 4, 20), (4, 0x20, 4)] {
        let mut v = orig.clone();
        v[(first + byte) as usize] ^= value;
        fs::write(&m, &v).unwrap();
        let e = BlockMapReader::open(&m)
            .unwrap()
            .range(0, 1)
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("record at {first}: ")) && e.ends_with(&format!("(at offset {})", first + field)),
            "{e}"
        );
    }
}

/// A record for block `i` of state `k` (distinct per (k, i)).
fn rec(k: u32, i: u64) -> BlockRecord {
    BlockRecord {
        source: k,
        offset: 32 + i * 512,
        stored_len: 100 + (i % 400) as u32,
        raw_len: 100 + (i % 400) as u32,
        flags: 0,
        digest: Algorithm::Blake3.digest(&[k as u8, i as u8, (i >> 8) as u8]),
    }
}

#[test]
fn a_chain_of_version_2_maps_resolves_to_the_materialised_states() {
    let d = tmpdir("chain");
    let mut x = crate::test_util::XorShift(0x2545_f491_4f6c_dd1d);
    let mut rand = move |n: u64| x.next_u64() % n;
    // The oracle: every state written out in full.
    let mut states: Vec<Vec<BlockRecord>> = Vec::new();
    let mut prev: Option<(PathBuf, Vec<u8>)> = None;
    for k in 0..6u32 {
        let dir = d.join(format!("s{k}"));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("blockmap");
        let mut w = match &prev {
            None => BlockMapWriter::create(&path, Algorithm::Blake3, 512).unwrap(),
            Some((_, sum)) => BlockMapWriter::create_child(
                &path,
                Algorithm::Blake3,
                512,
                ParentRef {
                    rel_path: format!("../s{}/blockmap", k - 1),
                    checksum: sum.clone(),
                },
            )
            .unwrap(),
        };
        let n = 300 + rand(5000);
        let mut state = Vec::new();
        for i in 0..n {
            let parent = states.last().filter(|p| !p.is_empty() && rand(10) > 2);
            match parent {
                Some(p) => {
                    // Mostly the same position (unchanged runs), sometimes anywhere.
                    let j = if rand(8) == 0 {
                        rand(p.len() as u64)
                    } else {
                        i % p.len() as u64
                    };
                    w.push_parent(j).unwrap();
                    state.push(p[j as usize].clone());
                }
                None => {
                    let r = rec(k, i);
                    w.push(&r).unwrap();
                    state.push(r);
                }
            }
        }
        let (sum, count) = w.finish().unwrap();
        assert_eq!(count, n);
        states.push(state);
        prev = Some((path, sum));
    }
    let (top, _) = prev.unwrap();
    let m = BlockMapReader::open(&top).unwrap();
    m.verify_checksum().unwrap();
    assert_eq!(
        (m.version(), m.chain_paths().count()),
        (Layout::written(Kind::BlockMap).version(), 6)
    );
    let want = states.last().unwrap();
    assert_eq!(m.count(), want.len() as u64);
    let all: Vec<BlockRecord> = m.range(0, m.count()).unwrap().map(Result::unwrap).collect();
    assert_eq!(&all, want);
    for _ in 0..200 {
        let first = rand(want.len() as u64);
        let count = rand(want.len() as u64 - first + 1);
        let got: Vec<BlockRecord> = m.range(first, count).unwrap().map(Result::unwrap).collect();
        assert_eq!(got, want[first as usize..(first + count) as usize]);
    }
}

#[test]
fn an_unchanged_state_costs_one_run_header_and_a_trailer() {
    let d = tmpdir("unchanged");
    for s in ["a", "b"] {
        fs::create_dir_all(d.join(s)).unwrap();
    }
    let (pa, pb) = (d.join("a/blockmap"), d.join("b/blockmap"));
    let mut w = BlockMapWriter::create(&pa, Algorithm::Blake3, 512).unwrap();
    for i in 0..10_000 {
        w.push(&rec(0, i)).unwrap();
    }
    let (sum, _) = w.finish().unwrap();
    let parent = ParentRef {
        rel_path: "../a/blockmap".into(),
        checksum: sum,
    };
    let mut w = BlockMapWriter::create_child(&pb, Algorithm::Blake3, 512, parent).unwrap();
    for i in 0..10_000 {
        w.push_parent(i).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(fs::metadata(&pb).unwrap().len(), 32 + 24 + 296);
    let m = BlockMapReader::open(&pb).unwrap();
    assert_eq!(
        m.range(9_990, 10).unwrap().map(Result::unwrap).collect::<Vec<_>>(),
        (9_990..10_000).map(|i| rec(0, i)).collect::<Vec<_>>()
    );
}

#[test]
fn a_missing_swapped_or_looping_parent_is_named() {
    let d = tmpdir("parents");
    for s in ["a", "b", "c"] {
        fs::create_dir_all(d.join(s)).unwrap();
    }
    let write = |path: &Path, parent: Option<(&str, Vec<u8>)>, k: u32| {
        let mut w = match parent {
            None => BlockMapWriter::create(path, Algorithm::Blake3, 512).unwrap(),
            Some((rel, checksum)) => BlockMapWriter::create_child(
                path,
                Algorithm::Blake3,
                512,
                ParentRef {
                    rel_path: rel.into(),
                    checksum,
                },
            )
            .unwrap(),
        };
        w.push(&rec(k, 0)).unwrap();
        w.push_parent(0).unwrap();
        w.finish().unwrap().0
    };
    let (pa, pb, pc) = (d.join("a/blockmap"), d.join("b/blockmap"), d.join("c/blockmap"));
    let mut w = BlockMapWriter::create(&pa, Algorithm::Blake3, 512).unwrap();
    w.push(&rec(0, 0)).unwrap();
    let sa = w.finish().unwrap().0;
    let sb = write(&pb, Some(("../a/blockmap", sa.clone())), 1);
    write(&pc, Some(("../b/blockmap", sb)), 1);
    assert_eq!(BlockMapReader::open(&pc).unwrap().chain_paths().count(), 3);
    // Another map in the parent's place: its checksum is not the one recorded.
    fs::rename(&pb, d.join("b/keep")).unwrap();
    write(&pb, Some(("../a/blockmap", sa)), 2);
    let e = BlockMapReader::open(&pc).err().unwrap().to_string();
    assert!(
        e.contains("this map was written against") && e.contains(&pc.display().to_string()),
        "{e}"
    );
    fs::remove_file(&pb).unwrap();
    let e = BlockMapReader::open(&pc).err().unwrap().to_string();
    assert!(
        e.contains(&pb.display().to_string()) && e.contains("No such file"),
        "{e}"
    );
    // A map whose parent is itself (crafted: the checksum matches, the path loops).
    let pl = d.join("c/loop");
    let mut w = BlockMapWriter::create_child(
        &pl,
        Algorithm::Blake3,
        512,
        ParentRef {
            rel_path: "../c/loop".into(),
            checksum: vec![0; 32],
        },
    )
    .unwrap();
    w.push(&rec(2, 0)).unwrap();
    let sum = w.finish().unwrap().0;
    let mut bytes = fs::read(&pl).unwrap();
    let t = bytes.len() - 296;
    bytes[t + 40..t + 72].copy_from_slice(&sum);
    fs::write(&pl, &bytes).unwrap();
    let e = BlockMapReader::open(&pl).err().unwrap().to_string();
    assert!(e.contains("loops back"), "{e}");
    // A parent path that climbs out of the sets directory is refused by writer and reader.
    for bad in ["../../x/blockmap", "/etc/passwd", "../a/../a/blockmap", "a/blockmap"] {
        let p = ParentRef {
            rel_path: bad.into(),
            checksum: vec![0; 32],
        };
        assert!(
            BlockMapWriter::create_child(&d.join("c/bad"), Algorithm::Blake3, 512, p).is_err(),
            "{bad}"
        );
    }
}
