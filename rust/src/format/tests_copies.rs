//! Copy runs of version-4 block maps: random mixes of stored records, holes, parent
//! references and copies of earlier records resolve to the state written out in full
//! (the oracle), over any range; a copy is one header however long; writers refuse what
//! a reader would not accept; damaged copy runs are errors naming the map and offset.

use std::fs;
use std::path::{Path, PathBuf};

use crate::format::checkpoint::{read_map_ops, MapLog, MapOp};
use crate::format::tests::tmpdir;
use crate::format::tests_maps::{
    assert_restore_names, check_random_chains, damage_run, read_all, rec, restore_error, Rng, ALG, BS,
};
use crate::format::{BlockMapReader, BlockMapWriter, BlockRecord, Layout, Result};

/// Writes a random state with `w` (stored records, holes, parent references, and copies
/// of runs of earlier records, which may themselves be copies), returns the oracle.
fn fill(w: &mut BlockMapWriter, rng: &mut Rng, n: usize, parent: Option<&[BlockRecord]>) -> Vec<BlockRecord> {
    let mut want: Vec<BlockRecord> = Vec::new();
    while want.len() < n {
        match rng.below(4) {
            0 => {
                let count = 1 + rng.below(3);
                w.push_holes(count, BS).unwrap();
                want.extend((0..count).map(|_| BlockRecord::hole(BS)));
            }
            1 if parent.is_some() => {
                let p = parent.unwrap_or_default();
                // Any parent record, not only the one at this place (a copied file).
                let k = rng.below(p.len() as u64);
                let len = 1 + rng.below(p.len() as u64 - k).min(6);
                for j in k..k + len {
                    w.push_parent(j).unwrap();
                    want.push(p[j as usize].clone());
                }
            }
            2 if !want.is_empty() => {
                let k = rng.below(want.len() as u64);
                let len = 1 + rng.below(want.len() as u64 - k).min(8);
                for j in k..k + len {
                    w.push_copy(j).unwrap();
                    want.push(want[j as usize].clone());
                }
            }
            _ => {
                let r = rec(rng.below(1 << 20));
                w.push(&r).unwrap();
                want.push(r);
            }
        }
    }
    want
}

#[test]
fn random_maps_with_copies_resolve_to_their_states_over_any_range() {
    let d = tmpdir("copies-random");
    check_random_chains(&d, 0x2545_f491_4f6c_dd1d, fill, 4);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_copied_run_is_one_header_however_long() {
    let d = tmpdir("copies-long");
    let p = d.join("blockmap");
    let mut w = BlockMapWriter::create(&p, ALG, BS).unwrap();
    let n = 10_000u64;
    for i in 0..n {
        w.push(&rec(i)).unwrap();
    }
    // The whole file again, then its second half: two copy runs.
    for i in 0..n {
        w.push_copy(i).unwrap();
    }
    for i in n / 2..n {
        w.push_copy(i).unwrap();
    }
    let (_, count) = w.finish().unwrap();
    assert_eq!(count, n * 2 + n / 2);
    let r = BlockMapReader::open(&p).unwrap();
    let runs = n.div_ceil(4096);
    assert_eq!(r.size(), 32 + (runs + 2) * 24 + n * r.record_len() + r.trailer_len());
    let got: Vec<BlockRecord> = r.range(n - 2, 4).unwrap().map(Result::unwrap).collect();
    assert_eq!(got, vec![rec(n - 2), rec(n - 1), rec(0), rec(1)]);
    assert_eq!(read_all(&p, 2 * n, n / 2), (n / 2..n).map(rec).collect::<Vec<_>>());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn writers_refuse_copies_a_reader_would_not_accept() {
    let d = tmpdir("copies-refuse");
    let mut w = BlockMapWriter::create_layout(&d.join("v3"), ALG, BS, None, Layout::V3).unwrap();
    w.push(&rec(0)).unwrap();
    let e = w.push_copy(0).unwrap_err().to_string();
    assert!(e.contains("version-3 block map has no copy runs"), "{e}");
    let p = d.join("v4");
    let mut w = BlockMapWriter::create(&p, ALG, BS).unwrap();
    let e = w.push_copy(0).unwrap_err().to_string();
    assert!(
        e.contains("record 0: a copy of record 0, which is not written yet"),
        "{e}"
    );
    w.push(&rec(0)).unwrap();
    // Each copy names the record just before it: a run would reach its own records,
    // so every one is a run of its own (a copy of a copy), and resolves.
    for k in 0..5 {
        w.push_copy(k).unwrap();
    }
    assert!(w.push_copy(6).is_err());
    w.finish().unwrap();
    assert_eq!(read_all(&p, 0, 6), vec![rec(0); 6]);
    fs::remove_dir_all(&d).unwrap();
}

/// A map of copies of copies `depth` deep (each record a copy of the one before).
fn nested(d: &Path, depth: u64) -> PathBuf {
    let p = d.join(format!("nested{depth}"));
    let mut w = BlockMapWriter::create(&p, ALG, BS).unwrap();
    w.push(&rec(7)).unwrap();
    for k in 0..depth {
        w.push_copy(k).unwrap();
    }
    w.finish().unwrap();
    p
}

#[test]
fn copies_of_copies_are_bounded() {
    let d = tmpdir("copies-nested");
    let p = nested(&d, 60);
    assert_eq!(read_all(&p, 60, 1), vec![rec(7)]);
    let p = nested(&d, 200);
    let r = BlockMapReader::open(&p).unwrap();
    r.verify_checksum().unwrap();
    let e = r.range(200, 1).unwrap().next().unwrap().unwrap_err().to_string();
    assert!(
        e.contains(&p.display().to_string()) && e.contains("nested more than 64 deep"),
        "{e}"
    );
    fs::remove_dir_all(&d).unwrap();
}

/// A map [stored x3, copy of 0..3, stored] with `edit` applied to the copy run's header
/// (at offset 32 + 24 + 3 records), the version set to `version` and the checksum
/// recomputed.
fn damaged(d: &Path, name: &str, version: u32, edit: &dyn Fn(&mut [u8])) -> (PathBuf, u64) {
    let p = d.join(name);
    let mut w = BlockMapWriter::create(&p, ALG, BS).unwrap();
    for i in 0..3 {
        w.push(&rec(i)).unwrap();
    }
    for i in 0..3 {
        w.push_copy(i).unwrap();
    }
    w.push(&rec(9)).unwrap();
    w.finish().unwrap();
    let at = 32 + 24 + 3 * (21 + 32);
    damage_run(&p, version, at, &|h: &mut [u8]| {
        assert_eq!(h[0], 4, "not the copy run's header");
        edit(h)
    });
    (p, at as u64)
}

#[test]
fn damaged_copy_runs_are_errors_naming_the_map_and_offset() {
    let d = tmpdir("copies-damaged");
    type Edit = fn(&mut [u8]);
    let set = |h: &mut [u8], at: usize, v: u64| h[at..at + 8].copy_from_slice(&v.to_le_bytes());
    let cases: [(&str, u32, Edit, u64, &str); 5] = [
        (
            "forward",
            4,
            |h| h[16..24].copy_from_slice(&1u64.to_le_bytes()),
            16,
            "copy of records 1..4 does not lie before the run's first record 3",
        ),
        (
            "wraps",
            4,
            |h| h[16..24].copy_from_slice(&u64::MAX.to_le_bytes()),
            16,
            "copy of records 18446744073709551615..18446744073709551615",
        ),
        (
            "long",
            4,
            |h| h[8..16].copy_from_slice(&u64::MAX.to_le_bytes()),
            16,
            "does not lie before",
        ),
        (
            "empty",
            4,
            |h| h[8..16].copy_from_slice(&0u64.to_le_bytes()),
            8,
            "is empty",
        ),
        ("in-v3", 3, |_| {}, 0, "unknown kind 4"),
    ];
    for (name, version, edit, field, what) in cases {
        let (p, at) = damaged(&d, name, version, &edit);
        assert_restore_names(&p, what, at + field, name);
        let e = BlockMapReader::open_alone(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(what), "{name}: {e}");
    }
    // A shorter copy: the runs no longer cover the trailer's count.
    let (p, _) = damaged(&d, "short", 4, &|h| set(h, 8, 2));
    let e = restore_error(&p);
    assert!(
        e.contains(&p.display().to_string()) && e.contains("the runs cover 6 records"),
        "{e}"
    );
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_map_log_joins_copies_and_reads_them_back() {
    let d = tmpdir("copies-log");
    let p = d.join("maplog");
    let mut log = MapLog::create(&p).unwrap();
    for n in [3, 4, 5] {
        log.copy(n).unwrap();
    }
    log.parent(6).unwrap();
    log.parent(7).unwrap();
    log.copy(8).unwrap();
    log.copy(2).unwrap();
    let (end, _) = log.mark().unwrap();
    log.sync().unwrap();
    let file = fs::File::open(&p).unwrap();
    let mut ops = Vec::new();
    read_map_ops(&file, &p, (0, end), 32, BS, |op| {
        ops.push(match op {
            MapOp::Copy { first, count } => ('c', first, count),
            MapOp::Parent { first, count } => ('p', first, count),
            _ => ('?', 0, 0),
        });
        Ok(())
    })
    .unwrap();
    assert_eq!(ops, vec![('c', 3, 3), ('p', 6, 2), ('c', 8, 1), ('c', 2, 1)]);
    fs::remove_dir_all(&d).unwrap();
}
