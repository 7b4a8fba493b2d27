//! Hole runs of version-3 block maps: random mixes of stored records, holes and parent
//! references resolve to the state written out in full (the oracle), over any range;
//! a hole run is one header whatever its length; damaged hole runs are errors naming the
//! map and the offset.

use std::fs;
use std::path::Path;

use super::tests::tmpdir;
use super::tests_maps::{assert_restore_names, check_random_chains, damage_run, rec, restore_error, Rng, ALG, BS};
use super::*;

/// Writes a random state (stored records and holes) with `w`, returns the oracle.
fn fill(w: &mut BlockMapWriter, rng: &mut Rng, n: usize, parent: Option<&[BlockRecord]>) -> Vec<BlockRecord> {
    let mut want = Vec::new();
    while want.len() < n {
        match rng.below(3) {
            0 => {
                let count = 1 + rng.below(5);
                let last = if rng.below(2) == 0 {
                    BS
                } else {
                    1 + rng.below(u64::from(BS)) as u32
                };
                w.push_holes(count, last).unwrap();
                want.extend((1..count).map(|_| BlockRecord::hole(BS)));
                want.push(BlockRecord::hole(last));
            }
            1 if parent.is_some_and(|p| want.len() < p.len()) => {
                let p = parent.unwrap_or_default();
                w.push_parent(want.len() as u64).unwrap();
                want.push(p[want.len()].clone());
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
fn random_maps_with_holes_resolve_to_their_states_over_any_range() {
    let d = tmpdir("holes-random");
    // Version 3's runs, in whatever version this build writes (4: copy runs too).
    check_random_chains(
        &d,
        0x9e37_79b9_7f4a_7c15,
        fill,
        Layout::written(Kind::BlockMap).version(),
    );
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_hole_run_is_one_header_however_long() {
    let d = tmpdir("holes-long");
    let p = d.join("blockmap");
    let mut w = BlockMapWriter::create(&p, ALG, BS).unwrap();
    w.push(&rec(1)).unwrap();
    // 2^40 blocks of holes in three pushes joined into one run (whole last blocks).
    w.push_holes(1 << 39, BS).unwrap();
    w.push_holes(1 << 39, BS).unwrap();
    w.push_holes(1, 17).unwrap();
    w.push(&rec(2)).unwrap();
    let (_, count) = w.finish().unwrap();
    assert_eq!(count, (1 << 40) + 3);
    let r = BlockMapReader::open(&p).unwrap();
    let rec_len = r.record_len();
    // Header, a stored run of one, one hole run, a stored run of one, the trailer.
    assert_eq!(r.size(), 32 + 3 * 24 + 2 * rec_len + r.trailer_len());
    let tail: Vec<BlockRecord> = r.range(1 << 40, 3).unwrap().map(Result::unwrap).collect();
    assert_eq!(tail, vec![BlockRecord::hole(BS), BlockRecord::hole(17), rec(2)]);
    // A hole record names no source a set can have.
    let it = r.range(1, 1).unwrap().limit_sources(1);
    assert_eq!(it.map(Result::unwrap).collect::<Vec<_>>(), vec![BlockRecord::hole(BS)]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn writers_refuse_holes_they_cannot_write() {
    let d = tmpdir("holes-refuse");
    let mut w = BlockMapWriter::create_layout(&d.join("v2"), ALG, BS, None, Layout::V2).unwrap();
    assert!(w
        .push_holes(1, BS)
        .unwrap_err()
        .to_string()
        .contains("version-2 block map has no hole runs"));
    let mut w = BlockMapWriter::create(&d.join("v3"), ALG, BS).unwrap();
    for (count, last) in [(0, BS), (1, 0), (1, BS + 1)] {
        let e = w.push_holes(count, last).unwrap_err().to_string();
        assert!(e.contains("a hole of"), "{e}");
    }
    assert!(w.push(&BlockRecord::hole(BS)).is_err());
    fs::remove_dir_all(&d).unwrap();
}

/// A map of [stored, hole x3 (last 100 bytes), stored] with `edit` applied to the hole
/// run header (at offset 32 + 24 + record) and the checksum recomputed.
fn damaged(d: &Path, name: &str, layout: Layout, edit: &dyn Fn(&mut [u8])) -> (std::path::PathBuf, u64) {
    let p = d.join(name);
    let mut w = BlockMapWriter::create_layout(&p, ALG, BS, None, Layout::V3).unwrap();
    w.push(&rec(1)).unwrap();
    w.push_holes(3, 100).unwrap();
    w.push(&rec(2)).unwrap();
    w.finish().unwrap();
    let at = 32 + 24 + 21 + 32;
    damage_run(&p, layout.version(), at, edit);
    (p, at as u64)
}

#[test]
fn damaged_hole_runs_are_errors_naming_the_map_and_offset() {
    let d = tmpdir("holes-damaged");
    type Edit = fn(&mut [u8]);
    let cases: [(&str, Layout, Edit, u64, &str); 5] = [
        (
            "zero-last",
            Layout::V3,
            |h| h[16..24].copy_from_slice(&0u64.to_le_bytes()),
            16,
            "last block of 0 bytes",
        ),
        (
            "long-last",
            Layout::V3,
            |h| h[16..24].copy_from_slice(&4097u64.to_le_bytes()),
            16,
            "last block of 4097 bytes",
        ),
        (
            "overrun",
            Layout::V3,
            |h| h[8..16].copy_from_slice(&u64::MAX.to_le_bytes()),
            8,
            "overruns the block map",
        ),
        (
            "empty",
            Layout::V3,
            |h| h[8..16].copy_from_slice(&0u64.to_le_bytes()),
            8,
            "is empty",
        ),
        ("in-v2", Layout::V2, |_| {}, 0, "unknown kind 3"),
    ];
    for (name, layout, edit, field, what) in cases {
        let (p, at) = damaged(&d, name, layout, &edit);
        assert_restore_names(&p, what, at + field, name);
        // The structure check of verification finds it too.
        let e = BlockMapReader::open(&p)
            .unwrap()
            .verify_checksum()
            .unwrap_err()
            .to_string();
        assert!(e.contains(what), "{name}: {e}");
    }
    // A longer hole run overlapping the next run: the runs no longer tile the map.
    let (p, _) = damaged(&d, "overlap", Layout::V3, &|h| {
        h[8..16].copy_from_slice(&4u64.to_le_bytes())
    });
    let e = restore_error(&p);
    assert!(e.contains(&p.display().to_string()) && e.contains("records"), "{e}");
    fs::remove_dir_all(&d).unwrap();
}
