//! What the block-map run tests share (tests_holes.rs, tests_copies.rs): a small
//! deterministic generator, stored records that differ by index, a whole-range read,
//! random parent/child maps checked against their oracle, the trailer checksum rewritten
//! after a deliberate edit of a run header, and the error a restore meets.

use std::fs;
use std::path::Path;

use super::{BlockMapReader, BlockMapWriter, BlockRecord, ParentRef, Result};
use crate::scan::algorithm::Algorithm;

pub(super) const BS: u32 = 4096;
pub(super) const ALG: Algorithm = Algorithm::Blake3;

pub(super) use crate::test_util::XorShift as Rng;

/// A stored record of source 0 whose place, lengths and digest all follow from `i`.
pub(super) fn rec(i: u64) -> BlockRecord {
    BlockRecord {
        source: 0,
        offset: 32 + i * 512,
        stored_len: 100 + (i % 400) as u32,
        raw_len: 100 + (i % 400) as u32,
        flags: 0,
        digest: ALG.digest(&i.to_le_bytes()),
    }
}

pub(super) fn read_all(path: &Path, first: u64, count: u64) -> Vec<BlockRecord> {
    let r = BlockMapReader::open(path).unwrap();
    r.range(first, count).unwrap().map(Result::unwrap).collect()
}

/// Writes a random state of `n` records with the writer (a child's given its parent's
/// records) and returns it written out in full: the oracle.
pub(super) type Fill = fn(&mut BlockMapWriter, &mut Rng, usize, Option<&[BlockRecord]>) -> Vec<BlockRecord>;

/// 40 random parent/child map pairs written by `fill` below `d`: each opens at `version`,
/// passes its checksum and structure checks, and reads back as its oracle whole and over
/// 8 random ranges.
pub(super) fn check_random_chains(d: &Path, seed: u64, fill: Fill, version: u32) {
    let mut rng = Rng(seed);
    for case in 0..40 {
        let pdir = d.join(format!("p{case}"));
        let cdir = d.join(format!("c{case}"));
        fs::create_dir_all(&pdir).unwrap();
        fs::create_dir_all(&cdir).unwrap();
        let mut w = BlockMapWriter::create(&pdir.join("blockmap"), ALG, BS).unwrap();
        let n = 1 + rng.below(60) as usize;
        let parent = fill(&mut w, &mut rng, n, None);
        let (sum, count) = w.finish().unwrap();
        assert_eq!(count, parent.len() as u64);
        let pref = ParentRef {
            rel_path: format!("../p{case}/blockmap"),
            checksum: sum,
        };
        let mut w = BlockMapWriter::create_child(&cdir.join("blockmap"), ALG, BS, pref).unwrap();
        let n = 1 + rng.below(80) as usize;
        let child = fill(&mut w, &mut rng, n, Some(&parent));
        w.finish().unwrap();
        for (path, want) in [(pdir.join("blockmap"), &parent), (cdir.join("blockmap"), &child)] {
            let r = BlockMapReader::open(&path).unwrap();
            assert_eq!(r.version(), version);
            r.verify_checksum().unwrap();
            BlockMapReader::open_alone(&path).unwrap();
            assert_eq!(&read_all(&path, 0, want.len() as u64), want, "case {case}");
            for _ in 0..8 {
                let a = rng.below(want.len() as u64);
                let n = rng.below(want.len() as u64 - a + 1);
                let got = read_all(&path, a, n);
                assert_eq!(got[..], want[a as usize..(a + n) as usize], "case {case} range {a}+{n}");
            }
        }
    }
}

/// Rewrites the map at `p` with its version set to `version` and `edit` applied to the
/// 24-byte run header at offset `at`, the trailer's checksum recomputed.
pub(super) fn damage_run(p: &Path, version: u32, at: usize, edit: &dyn Fn(&mut [u8])) {
    let mut b = fs::read(p).unwrap();
    b[8..12].copy_from_slice(&version.to_le_bytes());
    edit(&mut b[at..at + 24]);
    reseal_trailer(&mut b);
    fs::write(p, &b).unwrap();
}

/// Recomputes the trailer's checksum over the edited body, so that the damage under test
/// is what a reader meets, not a checksum mismatch.
pub(super) fn reseal_trailer(b: &mut [u8]) {
    let end = b.len() - 296;
    let sum = ALG.digest(&b[..end]);
    b[end + 232..end + 264].copy_from_slice(&sum);
}

/// The error a restore of `p` meets names the map, says `what` and the offset `at`
/// (`case` labels a failure).
pub(super) fn assert_restore_names(p: &Path, what: &str, at: u64, case: &str) {
    let e = restore_error(p);
    let want_at = format!("at offset {at}");
    assert!(
        e.contains(&p.display().to_string()) && e.contains(what) && e.contains(&want_at),
        "{case}: {e}"
    );
}

/// What a restore meets: the map opened, its checksum and tiling checked, its records read.
pub(super) fn restore_error(p: &Path) -> String {
    let r = match BlockMapReader::open(p) {
        Ok(r) => r,
        Err(e) => return e.to_string(),
    };
    if let Err(e) = r.verify_checksum() {
        return e.to_string();
    }
    match r.range(0, r.count()) {
        Ok(it) => match it.collect::<Result<Vec<_>>>() {
            Ok(v) => format!("read {} records", v.len()),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    }
}
