//! Resumed passes against uninterrupted ones: the piece and the block map must come out
//! byte for byte the same, whatever the cut point, and a changed file or a damaged staged
//! byte must be read again, never adopted.

use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::*;
use crate::format::checkpoint::map_log_path;
use crate::scan::algorithm::Algorithm;

fn tmpdir(name: &str) -> PathBuf {
    crate::test_util::tmpdir("resume", name)
}

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x =
        crate::test_util::XorShift(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1);
    (0..n)
        .map(|i| {
            let x = x.next_u64();
            // Half the bytes repeat, so zstd has something to shrink.
            if i % 4096 < 2048 {
                (i / 4096) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

/// A tree of `n` files of varied sizes (empty, partial blocks, several chunks).
fn tree(d: &Path, n: u64, seed: u64) -> Vec<FileJob> {
    let src = d.join("src");
    fs::create_dir_all(&src).unwrap();
    (0..n)
        .map(|i| {
            let p = src.join(format!("f{i:03}"));
            let len = [0, 1, 4095, 4096, 70_000, (4 << 20) + 5, 300_000][(i % 7) as usize];
            fs::write(&p, bytes(len, seed + i)).unwrap();
            FileJob {
                path: p,
                rel: format!("f{i:03}"),
                parent: None,
                reuse: None,
            }
        })
        .collect()
}

fn opts(zstd: bool) -> BackupOptions {
    BackupOptions {
        algorithm: Algorithm::Blake3,
        block_size: 4096,
        zstd_level: zstd.then_some(3),
        self_source: 0,
        seal: None,
        dedup: false,
    }
}

/// What a pass left: its piece and block map as bytes, and its outcome.
pub(super) struct Out {
    pub(super) piece: Vec<u8>,
    pub(super) map: Vec<u8>,
    pub(super) outcome: BackupOutcome,
}

fn pass(dir: &Path, jobs: &[FileJob], parent: Option<&Path>, o: &BackupOptions, cut: Option<usize>) -> Result<Out> {
    checkpointed_pass(dir, jobs, parent, o, Rule::Prefix, cut)
}

/// One pass into `dir` with checkpoints after every file under `rule`; cancelled at the
/// `cut`-th progress report when given.
pub(super) fn checkpointed_pass(
    dir: &Path,
    jobs: &[FileJob],
    parent: Option<&Path>,
    o: &BackupOptions,
    rule: Rule,
    cut: Option<usize>,
) -> Result<Out> {
    fs::create_dir_all(dir).unwrap();
    let ck = Checkpoint {
        journal: dir.join("checkpoint"),
        every: 0,
        rule,
    };
    let mut calls = 0usize;
    let out = backup_files_resumable(
        jobs,
        parent,
        &dir.join("data.piece"),
        &dir.join("blockmap"),
        o,
        Some(&ck),
        &mut |_| {
            calls += 1;
            if Some(calls) == cut {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )?;
    Ok(Out {
        piece: fs::read(dir.join("data.piece")).unwrap(),
        map: fs::read(dir.join("blockmap")).unwrap(),
        outcome: out,
    })
}

fn total(jobs: &[FileJob]) -> u64 {
    jobs.iter().map(|j| fs::metadata(&j.path).unwrap().len()).sum()
}

#[test]
fn every_cut_point_resumes_to_the_uninterrupted_piece_and_map() {
    let d = tmpdir("cuts");
    let jobs = tree(&d, 9, 1);
    for zstd in [false, true] {
        let o = opts(zstd);
        let fresh = pass(&d.join("fresh"), &jobs, None, &o, None).unwrap();
        // Nothing of the checkpoint is left once a pass finishes.
        assert!(!d.join("fresh/checkpoint").exists());
        assert!(!map_log_path(&d.join("fresh/checkpoint")).exists());
        // Every progress report in turn, until a pass makes fewer.
        for cut in 1.. {
            let dir = d.join(format!("cut-{zstd}-{cut}"));
            match pass(&dir, &jobs, None, &o, Some(cut)) {
                Err(Error::Cancelled) => {}
                Ok(_) => break,
                Err(e) => panic!("{e}"),
            }
            let again = pass(&dir, &jobs, None, &o, None).unwrap();
            assert_eq!(again.piece, fresh.piece, "cut {cut}");
            assert_eq!(again.map, fresh.map, "cut {cut}");
            assert_eq!(again.outcome.files, fresh.outcome.files, "cut {cut}");
            let r = &again.outcome.resumed;
            assert_eq!(r.source_bytes + again.outcome.bytes_read, total(&jobs), "cut {cut}");
            assert!(!dir.join("checkpoint").exists());
            fs::remove_dir_all(&dir).unwrap();
        }
    }
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_incremental_resumes_with_its_parent_references() {
    let d = tmpdir("incr");
    let mut jobs = tree(&d, 10, 7);
    let o = opts(true);
    let base = pass(&d.join("sets/base"), &jobs, None, &o, None).unwrap();
    // Change one block of every other file; the parent's ranges come from its outcome.
    for (i, j) in jobs.iter_mut().enumerate() {
        let f = &base.outcome.files[i];
        j.parent = Some((f.first_block, f.block_count));
        if i % 2 == 1 && f.size > 0 {
            let mut b = fs::read(&j.path).unwrap();
            b[0] ^= 0xFF;
            fs::write(&j.path, b).unwrap();
        }
    }
    let o = BackupOptions { self_source: 1, ..o };
    let parent = d.join("sets/base/blockmap");
    let fresh = pass(&d.join("sets/fresh"), &jobs, Some(&parent), &o, None).unwrap();
    for cut in [1, 2, 3, 5, 8] {
        let dir = d.join(format!("sets/cut{cut}"));
        assert!(matches!(
            pass(&dir, &jobs, Some(&parent), &o, Some(cut)),
            Err(Error::Cancelled)
        ));
        let again = pass(&dir, &jobs, Some(&parent), &o, None).unwrap();
        assert_eq!(
            (again.piece, again.map),
            (fresh.piece.clone(), fresh.map.clone()),
            "cut {cut}"
        );
        assert!(again.outcome.resumed.files > 0, "cut {cut}");
    }
    fs::remove_dir_all(&d).unwrap();
}

/// Cuts a pass after about half the files; returns the resumed pass's files adopted.
fn cut_half(dir: &Path, jobs: &[FileJob], o: &BackupOptions) {
    let mut done = 0;
    let mut calls = 0;
    // Find a cut that leaves at least 5 files finished.
    while done < 5 {
        calls += 1;
        let _ = fs::remove_dir_all(dir);
        assert!(matches!(pass(dir, jobs, None, o, Some(calls)), Err(Error::Cancelled)));
        done = crate::format::checkpoint::Journal::read(&dir.join("checkpoint"))
            .unwrap()
            .records
            .len();
    }
}

#[test]
fn a_file_changed_after_the_cut_and_every_file_after_it_are_read_again() {
    let d = tmpdir("changed");
    let jobs = tree(&d, 10, 3);
    let o = opts(false);
    let dir = d.join("cut");
    cut_half(&dir, &jobs, &o);
    // Same size, same mtime: only the ctime and the bytes say it changed.
    let victim = &jobs[2].path;
    let mtime = fs::metadata(victim).unwrap().modified().unwrap();
    let mut b = fs::read(victim).unwrap();
    b[0] ^= 1;
    fs::write(victim, &b).unwrap();
    fs::File::options()
        .write(true)
        .open(victim)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let again = pass(&dir, &jobs, None, &o, None).unwrap();
    let fresh = pass(&d.join("fresh"), &jobs, None, &o, None).unwrap();
    assert_eq!((&again.piece, &again.map), (&fresh.piece, &fresh.map));
    assert_eq!(again.outcome.resumed.files, 2);
    let note = again.outcome.resumed.note.clone().unwrap();
    assert!(note.contains("f002 changed since the cut"), "{note}");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_damaged_staged_byte_is_never_adopted() {
    let d = tmpdir("damaged");
    let jobs = tree(&d, 10, 5);
    let o = opts(true);
    let fresh = pass(&d.join("fresh"), &jobs, None, &o, None).unwrap();
    let dir = d.join("cut");
    cut_half(&dir, &jobs, &o);
    let journal = crate::format::checkpoint::Journal::read(&dir.join("checkpoint")).unwrap();
    let third = journal.records[3].clone();
    let staged: Vec<(PathBuf, u64, u64)> = vec![
        (dir.join("data.piece"), third.piece_start, third.piece_end),
        (
            dir.join("data.piece-index.tmp"),
            third.entries_start * 61,
            third.entries_end * 61,
        ),
        (map_log_path(&dir.join("checkpoint")), third.map_start, third.map_end),
    ];
    let keep = d.join("keep");
    fs::rename(&dir, &keep).unwrap();
    for (file, start, end) in staged {
        if start == end {
            continue;
        }
        for at in [start, (start + end) / 2, end - 1] {
            let _ = fs::remove_dir_all(&dir);
            copy_dir(&keep, &dir);
            let mut b = fs::read(&file).unwrap();
            b[at as usize] ^= 0x10;
            fs::write(&file, b).unwrap();
            let again = pass(&dir, &jobs, None, &o, None).unwrap();
            assert_eq!(
                (&again.piece, &again.map),
                (&fresh.piece, &fresh.map),
                "{} at {at}",
                file.display()
            );
            assert_eq!(again.outcome.resumed.files, 3, "{} at {at}", file.display());
            let note = again.outcome.resumed.note.clone().unwrap();
            assert!(note.contains("f003: "), "{note}");
        }
    }
    fs::remove_dir_all(&d).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn other_settings_start_over_and_say_why() {
    let d = tmpdir("settings");
    let jobs = tree(&d, 8, 9);
    let dir = d.join("cut");
    cut_half(&dir, &jobs, &opts(false));
    let again = pass(&dir, &jobs, None, &opts(true), None).unwrap();
    let fresh = pass(&d.join("fresh"), &jobs, None, &opts(true), None).unwrap();
    assert_eq!((&again.piece, &again.map), (&fresh.piece, &fresh.map));
    assert_eq!(again.outcome.resumed.files, 0);
    assert_eq!(again.outcome.bytes_read, total(&jobs));
    let note = again.outcome.resumed.note.clone().unwrap();
    assert!(note.contains("other settings"), "{note}");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_source_error_commits_the_checkpoint_before_it_fails() {
    let d = tmpdir("vanished");
    let mut jobs = tree(&d, 8, 11);
    jobs[5].path = d.join("src/missing");
    let o = opts(false);
    let dir = d.join("cut");
    let e = pass(&dir, &jobs, None, &o, None).err().unwrap();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    jobs.remove(5);
    let again = pass(&dir, &jobs, None, &o, None).unwrap();
    let fresh = pass(&d.join("fresh"), &jobs, None, &o, None).unwrap();
    assert_eq!((&again.piece, &again.map), (&fresh.piece, &fresh.map));
    assert_eq!(again.outcome.resumed.files, 5);
    fs::remove_dir_all(&d).unwrap();
}
