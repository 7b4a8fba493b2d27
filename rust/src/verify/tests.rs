//! Unit tests over pieces written with `format::PieceWriter`: every damage a disk,
//! an operator or a bad copy can do, and the findings each one must produce.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::*;
use crate::format::{BlockMapWriter, BlockRecord, Kind, Layout, PieceReader, PieceWriter, FLAG_ZSTD, HEADER_LEN};
use crate::scan::algorithm::{to_hex, Algorithm};
use crate::test_util::XorShift as Rng;

/// Trailer length of a piece of the version written (2).
const PIECE_TRAILER_LEN: u64 = 112;

fn tmpdir(name: &str) -> PathBuf {
    crate::test_util::tmpdir("verify", name)
}

/// Writes a piece of `n` blocks of `bs` bytes (the last one short) and returns its item.
fn write_piece(path: &Path, alg: Algorithm, bs: u32, n: u64, zstd: bool, rng: &mut Rng) -> Item {
    write_piece_in(path, alg, bs, n, zstd, rng, Layout::written(Kind::Piece))
}

/// `write_piece` in the piece layout of `layout`'s version.
fn write_piece_in(path: &Path, alg: Algorithm, bs: u32, n: u64, zstd: bool, rng: &mut Rng, layout: Layout) -> Item {
    let mut w = PieceWriter::create_layout(path, alg, bs, layout).unwrap();
    for i in 0..n {
        let len = if i + 1 == n { (bs / 2).max(1) } else { bs };
        // Half-compressible content, so zstd really stores some blocks compressed.
        let block: Vec<u8> = (0..len)
            .map(|j| if j % 2 == 0 { (rng.next_u64() & 0xff) as u8 } else { 7 })
            .collect();
        let d = alg.digest(&block);
        let (stored, flags) = match zstd.then(|| zstd::bulk::compress(&block, 3).unwrap()) {
            Some(c) if c.len() < block.len() => (c, FLAG_ZSTD),
            _ => (block.clone(), 0),
        };
        w.write_block((i % 3) as u32, i / 3, &stored, len, flags, &d).unwrap();
    }
    let s = w.finish().unwrap();
    Item {
        key: None,
        id: path.file_name().unwrap().to_string_lossy().into_owned(),
        set_id: "S1".into(),
        kind: ItemKind::Piece,
        path: path.to_path_buf(),
        size: Some(s.size),
        checksum: Some(to_hex(&s.checksum)),
        algorithm: Some(alg),
        block_count: Some(s.block_count),
    }
}

fn one(item: &Item, level: Level) -> ItemReport {
    verify_items(std::slice::from_ref(item), level, &Control::default()).remove(0)
}

fn kinds(r: &ItemReport) -> Vec<IssueKind> {
    r.issues.iter().map(|i| i.kind).collect()
}

/// (offset, stored_len) of every block, from the index (the oracle for where bits land).
fn layout(path: &Path) -> Vec<(u64, u32, u64)> {
    let r = PieceReader::open(path).unwrap();
    r.entries()
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.offset, e.stored_len, e.block_index))
        .collect()
}

#[test]
fn a_clean_piece_passes_every_level_and_full_reads_it_once() {
    let d = tmpdir("clean");
    let mut rng = Rng(1);
    for (k, alg) in [Algorithm::Blake3, Algorithm::Sha256, Algorithm::Md5]
        .into_iter()
        .enumerate()
    {
        let item = write_piece(&d.join(format!("{k}.piece")), alg, 512, 300, k == 1, &mut rng);
        for level in [Level::Quick, Level::Standard, Level::Full] {
            let r = one(&item, level);
            assert_eq!(r.outcome, Outcome::Ok, "{level:?} {:?}", r.issues);
            assert!(r.bad_blocks.is_empty());
        }
        assert_eq!(one(&item, Level::Quick).bytes_read, 0);
        assert_eq!(one(&item, Level::Standard).bytes_read, item.size.unwrap());
        assert_eq!(one(&item, Level::Full).bytes_read, item.size.unwrap());
    }
}

#[test]
fn full_names_exactly_the_flipped_blocks_over_many_random_trials() {
    let d = tmpdir("flips");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for trial in 0..60 {
        let zstd = trial % 3 == 0;
        let bs = [64u32, 256, 4096][trial % 3];
        let n = 1 + rng.below(200);
        let p = d.join(format!("t{trial}.piece"));
        let item = write_piece(&p, Algorithm::Blake3, bs, n, zstd, &mut rng);
        let blocks = layout(&p);
        let mut bytes = fs::read(&p).unwrap();
        let flips = 1 + rng.below(6);
        let mut hit = BTreeSet::new();
        for _ in 0..flips {
            let (off, len, _) = blocks[rng.below(blocks.len() as u64) as usize];
            if len == 0 {
                continue;
            }
            let at = off + rng.below(u64::from(len));
            bytes[at as usize] ^= 1 << rng.below(8);
            hit.insert(off);
        }
        // Two flips of the same bit cancel out: recompute what really changed.
        let orig = layout(&p);
        let pristine = fs::read(&p).unwrap();
        let changed: BTreeSet<u64> = orig
            .iter()
            .filter(|(o, l, _)| {
                pristine[*o as usize..(*o + u64::from(*l)) as usize]
                    != bytes[*o as usize..(*o + u64::from(*l)) as usize]
            })
            .map(|(o, _, _)| *o)
            .collect();
        assert!(changed.is_subset(&hit));
        fs::write(&p, &bytes).unwrap();
        let full = one(&item, Level::Full);
        let found: BTreeSet<u64> = full.bad_blocks.iter().map(|b| b.offset).collect();
        if zstd {
            // A flip in a zstd frame can, rarely, decode to the same bytes; never a false alarm.
            assert!(found.is_subset(&changed), "trial {trial}: {found:?} vs {changed:?}");
        } else {
            assert_eq!(found, changed, "trial {trial}");
        }
        for b in &full.bad_blocks {
            let (_, _, bi) = orig.iter().find(|(o, _, _)| *o == b.offset).copied().unwrap();
            assert_eq!(b.block_index, bi);
            assert_ne!(b.expected, b.actual);
        }
        if !changed.is_empty() {
            let std = one(&item, Level::Standard);
            assert_eq!(std.outcome, Outcome::Damaged);
            assert_eq!(kinds(&std), vec![IssueKind::BadChecksum], "trial {trial}");
            assert_eq!(full.outcome, Outcome::Damaged);
            assert!(kinds(&full).contains(&IssueKind::BadChecksum));
        }
    }
}

#[test]
fn quick_flags_deletion_and_truncation_but_reads_nothing() {
    let d = tmpdir("quick");
    let mut rng = Rng(5);
    let item = write_piece(&d.join("a.piece"), Algorithm::Blake3, 128, 20, false, &mut rng);
    let bytes = fs::read(&item.path).unwrap();
    fs::write(&item.path, &bytes[..bytes.len() - 10]).unwrap();
    let r = one(&item, Level::Quick);
    assert_eq!(kinds(&r), vec![IssueKind::WrongSize]);
    assert!(
        r.issues[0].message.contains("catalog recorded"),
        "{}",
        r.issues[0].message
    );
    fs::remove_file(&item.path).unwrap();
    let r = one(&item, Level::Quick);
    assert_eq!((r.outcome, kinds(&r)), (Outcome::Missing, vec![IssueKind::Missing]));
    assert!(r.issues[0].message.ends_with("a.piece is missing"));
}

#[test]
fn a_truncated_trailer_is_unreadable_at_standard_and_full() {
    let d = tmpdir("trailer");
    let item = write_piece(&d.join("a.piece"), Algorithm::Blake3, 128, 20, false, &mut Rng(9));
    let bytes = fs::read(&item.path).unwrap();
    fs::write(&item.path, &bytes[..bytes.len() - 40]).unwrap();
    for level in [Level::Standard, Level::Full] {
        let r = one(&item, level);
        assert_eq!(
            kinds(&r),
            vec![IssueKind::WrongSize, IssueKind::Unreadable],
            "{:?}",
            r.issues
        );
        assert!(r.issues[1].message.contains("trailer"), "{}", r.issues[1].message);
    }
}

#[test]
fn a_zeroed_block_is_one_finding_with_the_zero_digest() {
    let d = tmpdir("zero");
    let item = write_piece(&d.join("a.piece"), Algorithm::Sha256, 256, 30, false, &mut Rng(3));
    let blocks = layout(&item.path);
    let (off, len, bi) = blocks[17];
    let mut bytes = fs::read(&item.path).unwrap();
    bytes[off as usize..(off + u64::from(len)) as usize].fill(0);
    fs::write(&item.path, &bytes).unwrap();
    let r = one(&item, Level::Full);
    assert_eq!(r.bad_blocks.len(), 1);
    assert_eq!((r.bad_blocks[0].block_index, r.bad_blocks[0].offset), (bi, off));
    assert_eq!(
        r.bad_blocks[0].actual,
        to_hex(&Algorithm::Sha256.digest(&vec![0u8; len as usize]))
    );
    assert_eq!(kinds(&r), vec![IssueKind::CorruptBlock, IssueKind::BadChecksum]);
}

#[test]
fn a_piece_swapped_in_from_another_set_is_a_catalog_mismatch() {
    let d = tmpdir("swap");
    let a = write_piece(&d.join("a.piece"), Algorithm::Blake3, 128, 20, false, &mut Rng(11));
    let b = write_piece(&d.join("b.piece"), Algorithm::Blake3, 128, 20, false, &mut Rng(12));
    fs::copy(&b.path, &a.path).unwrap();
    for level in [Level::Standard, Level::Full] {
        let r = one(&a, level);
        assert_eq!(kinds(&r), vec![IssueKind::CatalogMismatch], "{:?}", r.issues);
        assert!(r.issues[0].message.contains("swapped"));
    }
}

#[test]
fn a_corrupt_catalog_row_is_a_finding_not_a_crash() {
    let d = tmpdir("row");
    let mut a = write_piece(&d.join("a.piece"), Algorithm::Blake3, 128, 5, false, &mut Rng(13));
    a.size = None;
    a.checksum = None;
    a.algorithm = None;
    let r = one(&a, Level::Full);
    assert_eq!(kinds(&r), vec![IssueKind::BadCatalogRow; 3]);
    a.algorithm = Some(Algorithm::Sha256);
    a.block_count = Some(99);
    let r = one(&a, Level::Standard);
    assert!(kinds(&r).contains(&IssueKind::CatalogMismatch));
}

#[test]
fn an_index_entry_pointing_outside_the_data_is_reported_and_the_rest_still_checked() {
    let d = tmpdir("index");
    let item = write_piece(&d.join("a.piece"), Algorithm::Blake3, 64, 10, false, &mut Rng(17));
    let mut bytes = fs::read(&item.path).unwrap();
    let size = bytes.len() as u64;
    let entry_len = 29 + 32;
    let index_off = size - PIECE_TRAILER_LEN - 10 * entry_len;
    // Entry 4's offset field (bytes 12..20 of the entry) -> far past the data.
    let at = (index_off + 4 * entry_len + 12) as usize;
    bytes[at..at + 8].copy_from_slice(&(size * 2).to_le_bytes());
    // And block 7's data is damaged as well.
    let (off7, _, _) = layout(&item.path)[7];
    bytes[off7 as usize] ^= 0x40;
    fs::write(&item.path, &bytes).unwrap();
    let r = one(&item, Level::Full);
    assert_eq!(r.bad_blocks.iter().map(|b| b.offset).collect::<Vec<_>>(), vec![off7]);
    let k = kinds(&r);
    assert!(
        k.contains(&IssueKind::BadIndex) && k.contains(&IssueKind::BadChecksum),
        "{:?}",
        r.issues
    );
    let msg = &r.issues.iter().find(|i| i.kind == IssueKind::BadIndex).unwrap().message;
    let want = format!(
        "piece {}: index entry 4: block at offset {} (+64) lies outside the data area {HEADER_LEN}..{index_off} (at offset {})",
        item.path.display(),
        size * 2,
        index_off + 4 * entry_len + 12
    );
    assert_eq!(msg, &want);
}

#[test]
fn a_passed_deadline_checks_nothing_and_says_so() {
    let d = tmpdir("budget");
    let item = write_piece(&d.join("a.piece"), Algorithm::Blake3, 64, 10, false, &mut Rng(19));
    let ctl = Control::new(Some(Instant::now()));
    let r = verify_items(&[item.clone(), item], Level::Full, &ctl);
    assert!(r
        .iter()
        .all(|r| r.outcome == Outcome::NotChecked && r.stopped == Some(StopReason::Budget)));
    assert_eq!(ctl.counters.items_done.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[test]
fn many_pieces_are_checked_in_parallel_and_reported_in_order() {
    let d = tmpdir("many");
    let mut rng = Rng(23);
    let mut items: Vec<Item> = (0..12)
        .map(|i| {
            write_piece(
                &d.join(format!("{i}.piece")),
                Algorithm::Blake3,
                256,
                40,
                i % 2 == 0,
                &mut rng,
            )
        })
        .collect();
    fs::remove_file(&items[3].path).unwrap();
    items[5].checksum = Some("00".repeat(32));
    let ctl = Control::default();
    let r = verify_items(&items, Level::Full, &ctl);
    assert_eq!(
        r.iter().map(|r| r.position).collect::<Vec<_>>(),
        (0..12).collect::<Vec<_>>()
    );
    let outcomes: Vec<Outcome> = r.iter().map(|r| r.outcome).collect();
    for (i, o) in outcomes.iter().enumerate() {
        let want = match i {
            3 => Outcome::Missing,
            5 => Outcome::Damaged,
            _ => Outcome::Ok,
        };
        assert_eq!(*o, want, "piece {i}");
    }
    let total: u64 = r.iter().map(|r| r.bytes_read).sum();
    assert_eq!(
        ctl.counters.bytes_read.load(std::sync::atomic::Ordering::Relaxed),
        total
    );
}

/// A block map for `piece`'s blocks, with `edit` applied to record `k` before it is written.
fn write_map(path: &Path, piece: &Path, k: usize, edit: impl Fn(&mut BlockRecord)) {
    let r = PieceReader::open(piece).unwrap();
    let mut w = BlockMapWriter::create(path, r.algorithm(), r.block_size()).unwrap();
    let mut n = 0;
    for (i, e) in r.entries().unwrap().enumerate() {
        let e = e.unwrap();
        let mut rec = BlockRecord {
            source: 0,
            offset: e.offset,
            stored_len: e.stored_len,
            raw_len: e.raw_len,
            flags: e.flags,
            digest: e.digest,
        };
        if i == k {
            edit(&mut rec);
        }
        w.push(&rec).unwrap();
        n += 1;
    }
    assert_eq!(w.finish().unwrap().1, n);
}

#[test]
fn mapped_blocks_outside_their_piece_are_faults_not_allocations() {
    let d = tmpdir("mapped");
    let piece = d.join("a.piece");
    write_piece(&piece, Algorithm::Blake3, 64, 6, false, &mut Rng(29));
    let map = d.join("blockmap");
    write_map(&map, &piece, usize::MAX, |_| {});
    assert_eq!(
        restored::check_mapped_blocks(&map, std::slice::from_ref(&piece)),
        Ok(vec![])
    );
    fs::remove_file(&map).unwrap();
    // An offset far past the end (the old reader sized a buffer from the record alone).
    write_map(&map, &piece, 2, |r| r.offset = u64::MAX - 10);
    let faults = restored::check_mapped_blocks(&map, std::slice::from_ref(&piece)).unwrap();
    assert_eq!(faults.len(), 1);
    assert_eq!((faults[0].record, faults[0].offset), (2, u64::MAX - 10));
    assert!(
        faults[0].actual.contains("lie outside the data area"),
        "{}",
        faults[0].actual
    );
    // A source the manifest does not have, and a piece that is not there.
    fs::remove_file(&map).unwrap();
    write_map(&map, &piece, 4, |r| r.source = 1);
    let faults = restored::check_mapped_blocks(&map, &[piece.clone(), d.join("gone.piece")]).unwrap();
    assert_eq!(faults.len(), 1);
    assert!(faults[0].actual.starts_with("64 bytes at "), "{}", faults[0].actual);
    let faults = restored::check_mapped_blocks(&map, std::slice::from_ref(&piece)).unwrap();
    assert_eq!(faults[0].actual, "source 1 is not in the manifest's sources");
}

/// Flips one byte of `path` at `at`.
fn flip(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x40;
    fs::write(path, &bytes).unwrap();
}

#[test]
fn standard_finds_a_changed_byte_of_a_version_2_piece_by_its_xxh3_and_of_version_1_by_its_checksum() {
    let d = tmpdir("fast");
    for (k, layout) in [Layout::V1, Layout::V2].into_iter().enumerate() {
        let mut rng = Rng(40 + k as u64);
        let item = write_piece_in(
            &d.join(format!("{k}.piece")),
            Algorithm::Blake3,
            512,
            40,
            true,
            &mut rng,
            layout,
        );
        let size = item.size.unwrap();
        // Data and index: what only a checksum can vouch for.
        // (A header byte is structure: every reader refuses it, tested elsewhere.)
        for at in [HEADER_LEN + 700, size - PIECE_TRAILER_LEN - 3] {
            let at = if layout == Layout::V1 {
                at.min(size - 96 - 3)
            } else {
                at
            };
            flip(&item.path, at);
            for level in [Level::Standard, Level::Full] {
                let r = one(&item, level);
                assert_ne!(r.outcome, Outcome::Ok, "{layout:?} byte {at} at {level:?}");
                let bad = r.issues.iter().find(|i| i.kind == IssueKind::BadChecksum);
                let msg = bad.map(|i| i.message.as_str()).unwrap_or_default();
                // STANDARD of version 2 checks the XXH3 only; FULL and version 1 the checksum.
                let fast = layout == Layout::V2 && level == Level::Standard;
                assert_eq!(msg.contains("XXH3-128"), fast, "{layout:?} {level:?}: {:?}", r.issues);
            }
            flip(&item.path, at);
            assert_eq!(one(&item, Level::Standard).outcome, Outcome::Ok);
        }
    }
}

#[test]
fn a_changed_xxh3_or_checksum_field_of_a_version_2_trailer_is_found_by_standard_and_full() {
    let d = tmpdir("fast-trailer");
    let item = write_piece(&d.join("a.piece"), Algorithm::Sha256, 256, 12, false, &mut Rng(50));
    let t = item.size.unwrap() - PIECE_TRAILER_LEN;
    // The XXH3-128 (trailer bytes 32..48): the bytes are intact, the record is not.
    flip(&item.path, t + 40);
    for level in [Level::Standard, Level::Full] {
        let r = one(&item, level);
        assert_eq!(kinds(&r), vec![IssueKind::BadChecksum], "{level:?} {:?}", r.issues);
        assert!(r.issues[0].message.contains("XXH3-128"), "{}", r.issues[0].message);
    }
    flip(&item.path, t + 40);
    // The checksum (48..): STANDARD sees it differ from the catalog's, FULL also re-hashes.
    flip(&item.path, t + 50);
    assert_eq!(kinds(&one(&item, Level::Standard)), vec![IssueKind::CatalogMismatch]);
    assert_eq!(
        kinds(&one(&item, Level::Full)),
        vec![IssueKind::BadChecksum, IssueKind::CatalogMismatch]
    );
}
