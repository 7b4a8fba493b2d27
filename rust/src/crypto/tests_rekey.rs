//! `reseal::rekey_piece` (copy into another repository's keys): pieces written plain,
//! re-keyed under one key, then another, then back to plain; every stored block is read
//! back through the piece reader and checked against the raw blocks it was written from
//! (the oracle), its digest against the new keys' digest of those raw bytes.

use std::fs;
use std::path::{Path, PathBuf};

use super::reseal::{rekey_piece, Moved};
use super::{BlockKey, Cipher};
use crate::format::block::decode_block;
use crate::format::read::read_exact_at;
use crate::format::{PieceReader, FLAG_BOUND, FLAG_GCM, FLAG_SEALED};
use crate::scan::algorithm::Algorithm;

const BS: u32 = 512;
const SET: &str = "20260101T000000000000Z-0000abcd";

fn dir(name: &str) -> PathBuf {
    let d = crate::test_util::tmpdir("rekey", name);
    fs::create_dir_all(d.join(SET)).unwrap();
    d
}

fn blocks() -> Vec<Vec<u8>> {
    crate::test_util::sample_blocks(9, |i| BS as usize - usize::from(i % 4) * 13)
}

fn write_plain(path: &Path, raw: &[Vec<u8>]) {
    crate::test_util::write_plain_piece(path, 3, Algorithm::Blake3, BS, raw, true);
}

/// Reads every block of `path` back (opened with `key` when sealed) and checks it is
/// `raw`'s, its digest the expected one, and `moved` names its place and digest.
fn check(path: &Path, key: Option<&BlockKey>, raw: &[Vec<u8>], moved: &[Moved]) {
    let reader = PieceReader::open(path).unwrap();
    let file = fs::File::open(path).unwrap();
    let label = format!("{SET}/{}", path.file_name().unwrap().to_str().unwrap());
    let entries: Vec<_> = reader.entries().unwrap().map(Result::unwrap).collect();
    assert_eq!(entries.len(), raw.len());
    assert_eq!(moved.len(), raw.len());
    for (i, e) in entries.iter().enumerate() {
        assert_eq!((e.file_no, e.block_index), (3, i as u64));
        let m = &moved[i];
        assert_eq!(
            (m.new_offset, m.stored_len, m.flags, &m.digest),
            (e.offset, e.stored_len, e.flags, &e.digest)
        );
        let mut stored = vec![0u8; e.stored_len as usize];
        read_exact_at(&file, path, &mut stored, e.offset).unwrap();
        let inner = match key {
            Some(k) => {
                assert_eq!(e.flags & (FLAG_SEALED | FLAG_BOUND), FLAG_SEALED | FLAG_BOUND);
                k.for_piece(&label)
                    .open(e.offset, e.raw_len, e.flags, &e.digest, &stored)
                    .unwrap()
            }
            None => {
                assert_eq!(e.flags & (FLAG_SEALED | FLAG_GCM | FLAG_BOUND), 0);
                stored
            }
        };
        let back = decode_block(inner, e.raw_len, e.flags & !(FLAG_SEALED | FLAG_GCM | FLAG_BOUND)).unwrap();
        assert_eq!(back, raw[i]);
        let want = key.map_or_else(|| Algorithm::Blake3.digest(&raw[i]), |k| k.digest(&raw[i]));
        assert_eq!(e.digest, want);
    }
}

#[test]
fn plain_to_a_to_b_to_plain() {
    let d = dir("chain");
    let raw = blocks();
    let p0 = d.join(SET).join("p0.piece");
    write_plain(&p0, &raw);
    let a = BlockKey::new([1; 32], [2; 32], "");
    let b = BlockKey::new([3; 32], [4; 32], "").sealing_with(Cipher::Aes256Gcm);
    let p1 = d.join(SET).join("p1.piece");
    let (_, m1) = rekey_piece(&p0, &p1, None, Some(&a)).unwrap();
    check(&p1, Some(&a), &raw, &m1);
    // The seal's overhead moves every block after the first.
    assert!(m1.iter().skip(1).all(|m| m.new_offset > m.old_offset));
    let p2 = d.join(SET).join("p2.piece");
    let (_, m2) = rekey_piece(&p1, &p2, Some(&a), Some(&b)).unwrap();
    check(&p2, Some(&b), &raw, &m2);
    // A's keys open none of B's blocks and B's none of A's.
    let p_wrong = d.join(SET).join("wrong.piece");
    let err = rekey_piece(&p2, &p_wrong, Some(&a), None).unwrap_err().to_string();
    assert!(
        err.contains("file #3 block 0") && err.contains("wrong key or damaged block"),
        "{err}"
    );
    fs::remove_file(&p_wrong).unwrap();
    assert!(rekey_piece(&p1, &p_wrong, Some(&b), None).is_err());
    fs::remove_file(&p_wrong).unwrap();
    // A sealed piece read as plain, or a plain one with a key, is refused.
    assert!(rekey_piece(&p1, &p_wrong, None, None)
        .unwrap_err()
        .to_string()
        .contains("no key"));
    fs::remove_file(&p_wrong).unwrap();
    assert!(rekey_piece(&p0, &p_wrong, Some(&a), None)
        .unwrap_err()
        .to_string()
        .contains("not sealed"));
    fs::remove_file(&p_wrong).unwrap();
    let p3 = d.join(SET).join("p3.piece");
    let (_, m3) = rekey_piece(&p2, &p3, Some(&b), None).unwrap();
    check(&p3, None, &raw, &m3);
    // Back to plain: the same blocks at the same places as the piece first written.
    assert!(m3.iter().zip(&m1).all(|(x, y)| x.new_offset == y.old_offset));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn damaged_block_is_named_and_nothing_resealed() {
    let d = dir("damage");
    let raw = blocks();
    let p0 = d.join(SET).join("p0.piece");
    write_plain(&p0, &raw);
    let a = BlockKey::new([1; 32], [2; 32], "");
    let p1 = d.join(SET).join("p1.piece");
    let (_, m1) = rekey_piece(&p0, &p1, None, Some(&a)).unwrap();
    let mut bytes = fs::read(&p1).unwrap();
    let at = m1[4].new_offset as usize + 20;
    bytes[at] ^= 0x40;
    fs::write(&p1, &bytes).unwrap();
    let b = BlockKey::new([3; 32], [4; 32], "");
    let err = rekey_piece(&p1, &d.join(SET).join("p2.piece"), Some(&a), Some(&b))
        .unwrap_err()
        .to_string();
    assert!(err.contains("file #3 block 4"), "{err}");
    assert!(err.contains(&m1[4].new_offset.to_string()), "{err}");
    // A plain block whose bytes differ from its digest is refused too.
    let mut plain = fs::read(&p0).unwrap();
    let e = PieceReader::open(&p0)
        .unwrap()
        .entries()
        .unwrap()
        .nth(1)
        .unwrap()
        .unwrap();
    plain[e.offset as usize] ^= 1;
    fs::write(&p0, &plain).unwrap();
    let err = rekey_piece(&p0, &d.join(SET).join("p3.piece"), None, Some(&b))
        .unwrap_err()
        .to_string();
    assert!(err.contains("file #3 block 1"), "{err}");
    fs::remove_dir_all(&d).unwrap();
}
