//! Long chains of version-2 block maps: resolution against states written out in full
//! (the oracle), memory that does not grow with the chain's runs, the merge's work
//! linear in the runs, and checksums checked as the chain is read.

use std::fs;
use std::path::{Path, PathBuf};

use super::blockmap_runs::{MAX_MARKS, WINDOW};
use super::tests::tmpdir;
use super::*;
use crate::scan::algorithm::Algorithm;
use crate::test_util::XorShift as Rng;

/// Heap bound of one map's run directory (window + marks of 24 bytes).
const PER_LEVEL: usize = WINDOW + MAX_MARKS * 24;

fn rec(k: u32, i: u64) -> BlockRecord {
    BlockRecord {
        source: k,
        offset: 32 + i * 512,
        stored_len: 100 + (i % 400) as u32,
        raw_len: 100 + (i % 400) as u32,
        flags: 0,
        digest: Algorithm::Blake3.digest(&[k as u8, (k >> 8) as u8, i as u8, (i >> 8) as u8, (i >> 16) as u8]),
    }
}

/// How a chain's states evolve.
#[derive(Clone, Copy)]
struct Shape {
    depth: u32,
    records: u64,
    /// Per mille of blocks changed in each state.
    change: u64,
    /// Per mille of references that jump anywhere in the parent (not the writer's order).
    jump: u64,
}

/// A chain written to `d/s<k>/blockmap`; the states it must resolve to, and its runs.
struct Chain {
    top: PathBuf,
    paths: Vec<PathBuf>,
    states: Vec<Vec<BlockRecord>>,
    runs: u64,
}

fn write_chain(d: &Path, shape: Shape, rng: &mut Rng) -> Chain {
    let mut states: Vec<Vec<BlockRecord>> = Vec::new();
    let mut prev: Option<Vec<u8>> = None;
    let mut paths = Vec::new();
    let mut runs = 0;
    for k in 0..shape.depth {
        let dir = d.join(format!("s{k}"));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("blockmap");
        let mut w = match &prev {
            None => BlockMapWriter::create(&path, Algorithm::Blake3, 512).unwrap(),
            Some(sum) => BlockMapWriter::create_child(
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
        let mut state = Vec::new();
        let parent = states.last();
        // Files removed (parent records skipped) and added (records with no parent) move
        // the state's numbering against the parent's; references stay ascending.
        let mut p = 0u64;
        let mut i = 0u64;
        while i < shape.records {
            let plen = parent.map_or(0, |s| s.len() as u64);
            let roll = rng.below(1000);
            if roll < 3 {
                p += rng.below(40);
            }
            let new = parent.is_none() || p >= plen || roll < shape.change || (3..6).contains(&roll);
            if new {
                let r = rec(k, i);
                w.push(&r).unwrap();
                state.push(r);
                if !(3..6).contains(&roll) {
                    p += 1;
                }
            } else {
                let j = if rng.below(1000) < shape.jump {
                    rng.below(plen)
                } else {
                    p
                };
                w.push_parent(j).unwrap();
                state.push(parent.unwrap()[j as usize].clone());
                p += 1;
            }
            i += 1;
        }
        let (sum, count) = w.finish().unwrap();
        assert_eq!(count, state.len() as u64);
        let bytes = fs::read(&path).unwrap();
        let t = bytes.len() - 296;
        runs += u64::from_le_bytes(bytes[t + 16..t + 24].try_into().unwrap());
        states.push(state);
        paths.push(path);
        prev = Some(sum);
    }
    Chain {
        top: paths.last().unwrap().clone(),
        paths,
        states,
        runs,
    }
}

#[test]
fn a_chain_of_200_maps_resolves_to_its_states_in_memory_flat_in_its_runs() {
    let d = tmpdir("long-chain");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Few and many runs a map: the run directory's memory is the same bound for both.
    for (name, change) in [("sparse", 5), ("dense", 300)] {
        let shape = Shape {
            depth: 200,
            records: 3000,
            change,
            jump: 0,
        };
        let c = write_chain(&d.join(name), shape, &mut rng);
        let m = BlockMapReader::open(&c.top).unwrap();
        m.verify_checksum().unwrap();
        // The check scans every header once.
        assert_eq!(m.run_headers_read(), c.runs);
        assert_eq!(m.chain_paths().count(), 200);
        let want = c.states.last().unwrap();
        let all: Vec<BlockRecord> = m.range(0, m.count()).unwrap().map(Result::unwrap).collect();
        assert_eq!(&all, want, "{name}");
        // In order, each run header of the chain is decoded at most once: the merge is
        // linear in the chain's runs.
        let merge = m.run_headers_read() - c.runs;
        assert!(merge <= c.runs, "{name}: {merge} > {}", c.runs);
        assert!(
            m.run_directory_bytes() <= 200 * PER_LEVEL,
            "{name}: {} bytes for {} runs",
            m.run_directory_bytes(),
            c.runs
        );
        for _ in 0..50 {
            let first = rng.below(want.len() as u64);
            let count = rng.below(want.len() as u64 - first + 1);
            let got: Vec<BlockRecord> = m.range(first, count).unwrap().map(Result::unwrap).collect();
            assert_eq!(got, want[first as usize..(first + count) as usize], "{name}");
        }
        assert!(m.run_directory_bytes() <= 200 * PER_LEVEL);
        // Every state of the chain, from its own top.
        for k in [0usize, 1, 99, 198] {
            let m = BlockMapReader::open(&c.paths[k]).unwrap();
            let got: Vec<BlockRecord> = m.range(0, m.count()).unwrap().map(Result::unwrap).collect();
            assert_eq!(got, c.states[k], "{name} state {k}");
        }
    }
}

#[test]
fn references_in_any_order_resolve_and_jumps_back_rescan_a_bounded_stretch() {
    let d = tmpdir("jumps");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let shape = Shape {
        depth: 12,
        records: 20_000,
        change: 200,
        jump: 100,
    };
    let c = write_chain(&d, shape, &mut rng);
    let m = BlockMapReader::open(&c.top).unwrap();
    let want = c.states.last().unwrap();
    let all: Vec<BlockRecord> = m.range(0, m.count()).unwrap().map(Result::unwrap).collect();
    assert_eq!(&all, want);
    assert!(m.run_directory_bytes() <= 12 * PER_LEVEL);
    // One map of many runs: once scanned, a lookup anywhere rescans at most the stretch
    // between two marks (runs / MAX_MARKS, doubled when the marks were thinned).
    let top = BlockMapReader::open_alone(&c.top).unwrap();
    let runs = top.run_headers_read();
    assert!(runs > 10 * MAX_MARKS as u64, "{runs} runs");
    let lookups = 300;
    let before = top.run_headers_read();
    for _ in 0..lookups {
        let v = rng.below(top.count());
        // A stored record resolves in the map alone; a reference cannot (no parent open).
        let _ = top.range(v, 1).unwrap().next();
    }
    let per = (top.run_headers_read() - before) / lookups;
    assert!(
        per <= 2 * runs / MAX_MARKS as u64 + 2,
        "{per} headers per lookup of {runs} runs"
    );
}

#[test]
fn a_chain_hashed_as_read_checks_every_map_in_one_pass() {
    let d = tmpdir("hash-as-read");
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let shape = Shape {
        depth: 6,
        records: 4000,
        change: 50,
        jump: 0,
    };
    let c = write_chain(&d, shape, &mut rng);
    let want = c.states.last().unwrap();
    // Whole, in pieces with gaps (files removed since), and not read at all.
    let plans: [&[(u64, u64)]; 3] = [&[(0, 4000)], &[(10, 300), (900, 5), (2500, 1400)], &[]];
    for plan in plans {
        let m = BlockMapReader::open(&c.top).unwrap();
        m.hash_as_read();
        for &(first, count) in plan {
            let got: Vec<BlockRecord> = m.range(first, count).unwrap().map(Result::unwrap).collect();
            assert_eq!(got, want[first as usize..(first + count) as usize]);
        }
        m.finish_checksums().unwrap();
    }
    // One byte changed anywhere before a trailer, in any map: an error naming that map.
    for _ in 0..120 {
        let level = rng.below(c.paths.len() as u64) as usize;
        let path = &c.paths[level];
        let orig = fs::read(path).unwrap();
        let at = rng.below(orig.len() as u64 - 296) as usize;
        let mut v = orig.clone();
        v[at] ^= 1 << rng.below(8);
        fs::write(path, &v).unwrap();
        let outcome = BlockMapReader::open(&c.top).and_then(|m| {
            m.hash_as_read();
            for r in m.range(0, m.count())? {
                r?;
            }
            m.finish_checksums()
        });
        fs::write(path, &orig).unwrap();
        let e = outcome.expect_err("a changed byte went unnoticed").to_string();
        assert!(e.contains(&path.display().to_string()), "byte {at} of map {level}: {e}");
    }
}
