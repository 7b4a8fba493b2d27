//! Pages checked by the backup pass on the bytes it reads (`engine::PageChecks`) against
//! `check_file`, which reads each file on its own: the same damaged blocks, per file.

use std::fs;
use std::ops::ControlFlow;
use std::path::Path;

use super::tests::Rng;
use super::*;
use crate::engine::{backup_files_checked, BackupOptions, FileJob, PageChecks};
use crate::scan::algorithm::Algorithm;

fn tmpdir(name: &str) -> std::path::PathBuf {
    crate::test_util::tmpdir("pgpage", name)
}

const PAGE: usize = 8192;
const START_LSN: u64 = 0x5_0000_0000;

/// A relation segment file of `pages` pages with valid checksums; the pages in `damaged`
/// get one flipped byte, those in `late` an LSN past the backup's start (not judged).
fn relation(rng: &mut Rng, segment: u64, pages: u64, damaged: &[u64], late: &[u64]) -> Vec<u8> {
    let per_segment = RELSEG_BYTES / PAGE as u64;
    let mut out = Vec::with_capacity(pages as usize * PAGE);
    for i in 0..pages {
        let mut page = rng.page(PAGE);
        let lsn = if late.contains(&i) { START_LSN + 1 } else { 0x100 + i };
        page[0..4].copy_from_slice(&((lsn >> 32) as u32).to_le_bytes());
        page[4..8].copy_from_slice(&(lsn as u32).to_le_bytes());
        page[14..16].copy_from_slice(&4000u16.to_le_bytes());
        let sum = checksum_page(&page, (segment * per_segment + i) as u32);
        page[8..10].copy_from_slice(&sum.to_le_bytes());
        if damaged.contains(&i) || late.contains(&i) {
            page[PAGE / 2] ^= 0x40;
        }
        out.extend_from_slice(&page);
    }
    out
}

/// The pages the pass finds bad; None when it left every chunk to the caller's check.
fn pass(dir: &Path, files: &[(&str, Option<u64>)], block_size: u32) -> Option<Vec<(u32, BadPage)>> {
    let jobs: Vec<FileJob> = files
        .iter()
        .map(|(name, _)| FileJob {
            path: dir.join(name),
            rel: (*name).into(),
            parent: None,
            reuse: None,
        })
        .collect();
    let opts = BackupOptions {
        algorithm: Algorithm::Blake3,
        block_size,
        zstd_level: None,
        self_source: 0,
        seal: None,
        dedup: false,
    };
    let checks = PageChecks {
        start_lsn: START_LSN,
        page_size: PAGE,
        segments: files.iter().map(|f| f.1).collect(),
    };
    let out = backup_files_checked(
        &jobs,
        None,
        &dir.join("p.piece"),
        &dir.join("p.bmap"),
        &opts,
        None,
        Some(&checks),
        &mut |_| ControlFlow::Continue(()),
    )
    .expect("backup pass");
    fs::remove_file(dir.join("p.piece")).expect("piece");
    fs::remove_file(dir.join("p.bmap")).expect("map");
    out.bad_pages
}

#[test]
fn the_pass_finds_what_a_separate_read_finds() {
    let dir = tmpdir("pass");
    let mut rng = Rng(0xC0FFEE);
    for round in 0..3u64 {
        // Large files cross several 4 MiB chunks (hashed on the pool), small ones are
        // read ahead and hashed inline; the trailing partial page is never judged.
        let specs: [(&str, Option<u64>, u64); 4] = [
            ("16384", Some(0), 520 + rng.next() % 200),
            ("16384.2", Some(2), 1 + rng.next() % 6),
            ("pg_filenode.map", None, 2),
            ("16385_fsm", Some(0), 3),
        ];
        let mut expected: Vec<Vec<u64>> = Vec::new();
        for (name, segment, pages) in specs {
            let damaged: Vec<u64> = (0..3).map(|_| rng.next() % pages).collect();
            let late = [rng.next() % pages];
            let mut data = relation(&mut rng, segment.unwrap_or(0), pages, &damaged, &late);
            if round % 2 == 1 {
                data.extend_from_slice(&[0xAB; 1000]);
            }
            fs::write(dir.join(name), &data).expect("write");
            expected.push(match segment {
                Some(s) => check_file(&dir.join(name), s, START_LSN, PAGE)
                    .expect("check")
                    .into_iter()
                    .map(|b| b.block)
                    .collect(),
                None => Vec::new(),
            });
        }
        assert!(!expected[0].is_empty(), "round {round}: the oracle found nothing");
        let files: Vec<(&str, Option<u64>)> = specs.iter().map(|s| (s.0, s.1)).collect();
        for block_size in [8192, 65536] {
            let found = pass(&dir, &files, block_size).expect("pages are checked in the pass");
            for (job, want) in expected.iter().enumerate() {
                let got: Vec<u64> = found
                    .iter()
                    .filter(|(j, _)| *j as usize == job)
                    .map(|(_, b)| b.block)
                    .collect();
                assert_eq!(&got, want, "round {round}, block size {block_size}, job {job}");
            }
        }
    }
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn chunks_that_are_not_whole_pages_leave_the_check_to_the_caller() {
    let dir = tmpdir("unaligned");
    let mut rng = Rng(5);
    fs::write(dir.join("16384"), relation(&mut rng, 0, 3, &[1], &[])).expect("write");
    assert!(pass(&dir, &[("16384", Some(0))], 3000).is_none());
    fs::remove_dir_all(&dir).expect("cleanup");
}
