//! `rekey_map`: a two-set chain (FULL, then a child with parent runs, a record naming the
//! FULL's piece, its own records, holes and a copy run) under per-set source keys,
//! re-keyed into a target's keys. Every record of the target's child map, resolved
//! through the chain, must lead to the raw block the source state had there (the oracle:
//! the blocks the test wrote), with the target's digest; places derived from the source
//! piece alone must equal those read from the target's copy of it.

use std::fs;
use std::path::{Path, PathBuf};

use super::super::{rekey_piece, Moved};
use super::{rekey_map, SourcePiece, Target};
use crate::crypto::{BlockKey, Cipher};
use crate::format::block::decode_block;
use crate::format::blockmap_read::OwnOp;
use crate::format::read::read_exact_at;
use crate::format::sealed_map;
use crate::format::{BlockMapReader, BlockMapWriter, BlockRecord, ParentRef, FLAG_BOUND, FLAG_GCM, FLAG_SEALED};
use crate::scan::algorithm::Algorithm;

const BS: u32 = 512;
const S0: &str = "20260102T000000000000Z-0000ab00";
const S1: &str = "20260102T010000000000Z-0000ab01";

fn root(name: &str) -> PathBuf {
    let d = crate::test_util::tmpdir("rekey-map", name);
    for side in ["plain", "src", "dst", "dst2"] {
        for set in [S0, S1] {
            fs::create_dir_all(d.join(side).join(set)).unwrap();
        }
    }
    d
}

fn raw_blocks(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut x = crate::test_util::XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    (0..n)
        .map(|i| {
            let len = BS as usize - (i % 3) * 7;
            if i % 2 == 0 {
                vec![(seed as u8).wrapping_add(i as u8); len]
            } else {
                x.bytes(len)
            }
        })
        .collect()
}

/// The piece of `raw`, sealed under `key` as a backup into the source would leave it.
fn source_piece(d: &Path, set: &str, raw: &[Vec<u8>], key: &BlockKey) -> (PathBuf, Vec<Moved>) {
    let plain = d.join("plain").join(set).join("data.piece");
    crate::test_util::write_plain_piece(&plain, 1, Algorithm::Blake3, BS, raw, true);
    let src = d.join("src").join(set).join("data.piece");
    let (_, moved) = rekey_piece(&plain, &src, None, Some(key)).unwrap();
    (src, moved)
}

fn record(m: &Moved, source: u32, raw_len: usize) -> BlockRecord {
    BlockRecord {
        source,
        offset: m.new_offset,
        stored_len: m.stored_len,
        raw_len: raw_len as u32,
        flags: m.flags,
        digest: m.digest.clone(),
    }
}

/// The raw block a resolved record of the target leads to, checked against its digest.
fn read_back(pieces: &[PathBuf], key: &BlockKey, r: &BlockRecord) -> Vec<u8> {
    let path = &pieces[r.source as usize];
    let file = fs::File::open(path).unwrap();
    let mut stored = vec![0u8; r.stored_len as usize];
    read_exact_at(&file, path, &mut stored, r.offset).unwrap();
    let set = path.parent().unwrap().file_name().unwrap().to_str().unwrap();
    assert_eq!(
        r.flags & (FLAG_SEALED | FLAG_GCM | FLAG_BOUND),
        FLAG_SEALED | FLAG_GCM | FLAG_BOUND
    );
    let inner = key
        .for_piece(&format!("{set}/data.piece"))
        .open(r.offset, r.raw_len, r.flags, &r.digest, &stored)
        .unwrap();
    let raw = decode_block(inner, r.raw_len, r.flags & !(FLAG_SEALED | FLAG_GCM | FLAG_BOUND)).unwrap();
    assert_eq!(key.digest(&raw), r.digest);
    raw
}

#[test]
fn a_chain_is_rewritten_into_the_targets_keys() {
    let d = root("chain");
    let (a0, a1) = (BlockKey::new([1; 32], [9; 32], ""), BlockKey::new([2; 32], [9; 32], ""));
    let b = BlockKey::new([3; 32], [4; 32], "").sealing_with(Cipher::Aes256Gcm);
    let (raw0, raw1) = (raw_blocks(1, 7), raw_blocks(2, 3));
    let (p0, m0) = source_piece(&d, S0, &raw0, &a0);
    let (p1, m1) = source_piece(&d, S1, &raw1, &a1);
    // The source maps: the FULL's records, then the child's runs of every kind.
    let map0 = d.join("src").join(S0).join("blockmap");
    let mut w = BlockMapWriter::create(&map0, Algorithm::Blake3, BS).unwrap();
    for (m, r) in m0.iter().zip(&raw0) {
        w.push(&record(m, 0, r.len())).unwrap();
    }
    let (sum0, _) = w.finish().unwrap();
    let map1 = d.join("src").join(S1).join("blockmap");
    let parent = ParentRef {
        rel_path: format!("../{S0}/blockmap"),
        checksum: sum0,
    };
    let mut w = BlockMapWriter::create_child(&map1, Algorithm::Blake3, BS, parent).unwrap();
    let mut want: Vec<Option<Vec<u8>>> = Vec::new();
    for r in 0..3 {
        w.push_parent(r).unwrap();
        want.push(Some(raw0[r as usize].clone()));
    }
    // A record naming the FULL's piece (what older writers left for a distant twin).
    w.push(&record(&m0[5], 0, raw0[5].len())).unwrap();
    want.push(Some(raw0[5].clone()));
    for (m, r) in m1.iter().zip(&raw1) {
        w.push(&record(m, 1, r.len())).unwrap();
        want.push(Some(r.clone()));
    }
    w.push_holes(2, 100).unwrap();
    want.extend([None, None]);
    w.push_copy(3).unwrap();
    w.push_copy(4).unwrap();
    want.push(Some(raw0[5].clone()));
    want.push(Some(raw1[0].clone()));
    w.finish().unwrap();

    // The target: pieces re-keyed, then the maps, sealed under new map keys.
    let dst = |side: &str, set: &str, f: &str| d.join(side).join(set).join(f);
    rekey_piece(&p0, &dst("dst", S0, "data.piece"), Some(&a0), Some(&b)).unwrap();
    rekey_piece(&p1, &dst("dst", S1, "data.piece"), Some(&a1), Some(&b)).unwrap();
    let (k0, k1) = ([5u8; 32], [6u8; 32]);
    let src0 = |copied: bool| SourcePiece {
        path: p0.clone(),
        key: Some(a0.clone()),
        copied: copied.then(|| dst("dst", S0, "data.piece")),
    };
    let src1 = SourcePiece {
        path: p1.clone(),
        key: Some(a1.clone()),
        copied: Some(dst("dst", S1, "data.piece")),
    };
    let target = |key: Option<[u8; 32]>, parent: Option<ParentRef>| Target {
        map_key: key,
        blocks: Some(&b),
        parent,
    };
    let (new0, n0) = rekey_map(
        &map0,
        &dst("dst", S0, "blockmap"),
        None,
        &[src0(true)],
        target(Some(k0), None),
    )
    .unwrap();
    assert_eq!(n0, 7);
    let parent = ParentRef {
        rel_path: format!("../{S0}/blockmap"),
        checksum: new0.clone(),
    };
    // The FULL's piece by derivation (a remote target: its copy is not at hand).
    let sources = [src0(false), src1];
    let (_, n1) = rekey_map(
        &map1,
        &dst("dst", S1, "blockmap"),
        None,
        &sources,
        target(Some(k1), Some(parent.clone())),
    )
    .unwrap();
    assert_eq!(n1 as usize, want.len());
    sealed_map::register_read_key(k0);
    sealed_map::register_read_key(k1);
    let reader = BlockMapReader::open(&dst("dst", S1, "blockmap")).unwrap();
    assert!(reader.is_sealed());
    reader.verify_checksum().unwrap();
    let pieces = [dst("dst", S0, "data.piece"), dst("dst", S1, "data.piece")];
    let got: Vec<Option<Vec<u8>>> = reader
        .range(0, n1)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (!r.is_hole()).then(|| read_back(&pieces, &b, &r))
        })
        .collect();
    assert_eq!(got, want);

    // Derived places equal the ones read from the target's copy of the piece.
    let sources = [
        src0(true),
        SourcePiece {
            path: p1.clone(),
            key: Some(a1.clone()),
            copied: None,
        },
    ];
    rekey_map(
        &map1,
        &dst("dst2", S1, "blockmap"),
        None,
        &sources,
        target(None, Some(parent)),
    )
    .unwrap();
    let ops = |path: &Path| {
        let mut out = Vec::new();
        BlockMapReader::open_alone(path)
            .unwrap()
            .walk_own(&mut |op: OwnOp| {
                out.push(op);
                Ok(())
            })
            .unwrap();
        out
    };
    let (sealed, plain) = (ops(&dst("dst", S1, "blockmap")), ops(&dst("dst2", S1, "blockmap")));
    let strip = |v: Vec<OwnOp>| -> Vec<OwnOp> {
        v.into_iter()
            .map(|op| match op {
                OwnOp::Record { record, .. } => OwnOp::Record { at: 0, record },
                other => other,
            })
            .collect()
    };
    assert_eq!(strip(sealed), strip(plain));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_record_that_is_not_its_pieces_block_is_named() {
    let d = root("bad");
    let a0 = BlockKey::new([1; 32], [9; 32], "");
    let raw0 = raw_blocks(3, 3);
    let (p0, m0) = source_piece(&d, S0, &raw0, &a0);
    let map0 = d.join("src").join(S0).join("blockmap");
    let mut w = BlockMapWriter::create(&map0, Algorithm::Blake3, BS).unwrap();
    w.push(&record(&m0[0], 0, raw0[0].len())).unwrap();
    let mut off = record(&m0[1], 0, raw0[1].len());
    off.offset += 1;
    w.push(&off).unwrap();
    w.finish().unwrap();
    let src = [SourcePiece {
        path: p0,
        key: Some(a0),
        copied: None,
    }];
    let target = Target {
        map_key: None,
        blocks: None,
        parent: None,
    };
    let err = rekey_map(&map0, &d.join("dst").join(S0).join("blockmap"), None, &src, target)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("where no block starts") && err.contains("record at"),
        "{err}"
    );
    fs::remove_dir_all(&d).unwrap();
}
