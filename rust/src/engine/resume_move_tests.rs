//! Resumed base backups (`Rule::BaseBackup`) against uninterrupted passes in the same
//! order: the adopted files are moved, never read, and the set is byte for byte the
//! one the uninterrupted pass writes; a same-tick, changed, damaged or always-fresh
//! file is read again.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::resume::{same_tick, TICK};
use super::resume_move::{adoptable, never_adopted};
use super::resume_tests::{checkpointed_pass, Out};
use super::*;
use crate::format::checkpoint::Journal;
use crate::scan::algorithm::Algorithm;

fn tmpdir(name: &str) -> PathBuf {
    crate::test_util::tmpdir("resume-move", name)
}

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = crate::test_util::XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    (0..n)
        .map(|i| {
            let x = x.next_u64();
            if i % 8192 < 4096 {
                (i / 8192) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

/// Sets `p`'s mtime an hour back: read now, it is well outside the same-tick window.
fn age(p: &Path) {
    let f = File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();
}

/// A data directory of `n` files (one of them `global/pg_control`), aged.
fn cluster(d: &Path, n: u64) -> Vec<FileJob> {
    let src = d.join("pgdata");
    fs::create_dir_all(src.join("base/5")).unwrap();
    fs::create_dir_all(src.join("global")).unwrap();
    (0..n)
        .map(|i| {
            let rel = if i == 3 {
                "global/pg_control".to_string()
            } else {
                format!("base/5/{}", 16384 + i)
            };
            let p = src.join(&rel);
            let len = [8192, 0, 70_000, 8192, 300_000, 1, 24_576][(i % 7) as usize];
            fs::write(&p, bytes(len, i + 11)).unwrap();
            age(&p);
            FileJob {
                path: p,
                rel,
                parent: None,
                reuse: None,
            }
        })
        .collect()
}

fn opts() -> BackupOptions {
    BackupOptions {
        algorithm: Algorithm::Blake3,
        block_size: 8192,
        zstd_level: Some(3),
        self_source: 0,
        seal: None,
        dedup: false,
    }
}

fn pass(dir: &Path, jobs: &[FileJob], cut: Option<usize>) -> Result<Out> {
    checkpointed_pass(dir, jobs, None, &opts(), Rule::BaseBackup, cut)
}

/// Cuts a pass once at least `want` files are journaled.
fn cut_after(dir: &Path, jobs: &[FileJob], want: usize) {
    for calls in 1.. {
        let _ = fs::remove_dir_all(dir);
        assert!(matches!(pass(dir, jobs, Some(calls)), Err(Error::Cancelled)));
        if Journal::read(&dir.join("checkpoint")).unwrap().records.len() >= want {
            return;
        }
    }
}

/// The caller's order: the adoptable files first, in the journal's order, then the rest.
fn ordered(jobs: &[FileJob], first: &[PathBuf]) -> Vec<FileJob> {
    let mut out: Vec<FileJob> = first
        .iter()
        .filter_map(|p| jobs.iter().find(|j| &j.path == p).cloned())
        .collect();
    out.extend(jobs.iter().filter(|j| !first.contains(&j.path)).cloned());
    out
}

fn total(jobs: &[FileJob]) -> u64 {
    jobs.iter().map(|j| fs::metadata(&j.path).unwrap().len()).sum()
}

#[test]
fn same_tick_is_within_one_tick_before_the_read_or_after_it() {
    let read = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let at = |d: Duration| {
        let t = read.duration_since(UNIX_EPOCH).unwrap();
        let m = t.checked_sub(d).unwrap();
        (m.as_secs() as i64, i64::from(m.subsec_nanos()))
    };
    // Written well before the read: an unchanged mtime later proves no write since.
    assert!(!same_tick(at(Duration::from_secs(5)), read, TICK));
    assert!(!same_tick(at(TICK + Duration::from_nanos(1)), read, TICK));
    // Within one tick before the read: a later write in that tick leaves mtime alone.
    assert!(same_tick(at(TICK), read, TICK));
    assert!(same_tick(at(Duration::from_millis(1)), read, TICK));
    assert!(same_tick(at(Duration::ZERO), read, TICK));
    // After the read began (written while read, or a clock step).
    assert!(same_tick((1_700_000_003, 0), read, TICK));
    // Before 1970: never recent; a read at the epoch itself: everything is.
    assert!(!same_tick((-5, 0), read, TICK));
    assert!(same_tick((0, 0), UNIX_EPOCH, TICK));
}

#[test]
fn pg_control_backup_label_and_tablespace_map_are_never_adopted() {
    assert!(never_adopted(Path::new("/d/pgdata/global/pg_control")));
    assert!(never_adopted(Path::new("/d/pgdata/backup_label")));
    assert!(never_adopted(Path::new("/d/pgdata/tablespace_map")));
    assert!(!never_adopted(Path::new("/d/pgdata/global/1262")));
    assert!(!never_adopted(Path::new("/d/pgdata/pg_control")));
    assert!(!never_adopted(Path::new("/d/pgdata/base/5/backup_label_x")));
}

#[test]
fn a_resumed_base_backup_moves_unchanged_files_and_reads_the_rest() {
    let d = tmpdir("moves");
    let jobs = cluster(&d, 12);
    let dir = d.join("cut");
    cut_after(&dir, &jobs, 9);
    let journaled: Vec<PathBuf> = Journal::read(&dir.join("checkpoint"))
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.path)
        .collect();
    // After the cut: file 1 rewritten (aged again: only ctime, size and bytes differ);
    // file 2 written now, within the tick of the next read.
    let changed = &jobs[1].path;
    fs::write(changed, bytes(16_384, 99)).unwrap();
    age(changed);
    fs::write(&jobs[2].path, bytes(70_000, 98)).unwrap();
    let first = adoptable(&dir.join("checkpoint")).unwrap();
    let expect: Vec<PathBuf> = journaled
        .iter()
        .filter(|p| *p != changed && **p != jobs[2].path && !p.ends_with("global/pg_control"))
        .cloned()
        .collect();
    assert_eq!(first, expect);
    let order = ordered(&jobs, &first);
    let fresh = pass(&d.join("fresh"), &order, None).unwrap();
    let again = pass(&dir, &order, None).unwrap();
    assert_eq!((&again.piece, &again.map), (&fresh.piece, &fresh.map));
    assert_eq!(again.outcome.files, fresh.outcome.files);
    let r = &again.outcome.resumed;
    assert_eq!(r.files, first.len() as u64);
    assert_eq!(r.source_bytes + again.outcome.bytes_read, total(&jobs));
    assert!(r.source_bytes > 0);
    // Nothing of the cut pass is left beside the finished set.
    let left: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter().all(|n| !n.ends_with(".cut") && n != "checkpoint"),
        "{left:?}"
    );
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_file_read_within_the_tick_of_its_write_is_journaled_as_changed() {
    let d = tmpdir("tick");
    let jobs = cluster(&d, 6);
    // Written just now: its read falls in the same tick.
    fs::write(&jobs[4].path, bytes(300_000, 5)).unwrap();
    let dir = d.join("cut");
    cut_after(&dir, &jobs, 5);
    let j = Journal::read(&dir.join("checkpoint")).unwrap();
    let rec = j.records.iter().find(|r| r.path == jobs[4].path).unwrap();
    assert!(rec.changed);
    assert!(j.records.iter().filter(|r| r.path != jobs[4].path).all(|r| !r.changed));
    assert!(!adoptable(&dir.join("checkpoint")).unwrap().contains(&jobs[4].path));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_damaged_staged_file_is_read_again_with_every_file_after_it() {
    let d = tmpdir("damaged");
    let jobs = cluster(&d, 10);
    let dir = d.join("cut");
    cut_after(&dir, &jobs, 8);
    let j = Journal::read(&dir.join("checkpoint")).unwrap();
    let first = adoptable(&dir.join("checkpoint")).unwrap();
    // Flip a byte of the third adoptable file's staged bytes.
    let victim = j
        .records
        .iter()
        .filter(|r| first.contains(&r.path) && r.piece_end > r.piece_start)
        .nth(2)
        .unwrap()
        .clone();
    let mut piece = fs::read(dir.join("data.piece")).unwrap();
    piece[victim.piece_start as usize] ^= 1;
    fs::write(dir.join("data.piece"), piece).unwrap();
    let order = ordered(&jobs, &first);
    let fresh = pass(&d.join("fresh"), &order, None).unwrap();
    let again = pass(&dir, &order, None).unwrap();
    assert_eq!((&again.piece, &again.map), (&fresh.piece, &fresh.map));
    let at = order.iter().position(|j| j.path == victim.path).unwrap();
    assert_eq!(again.outcome.resumed.files, at as u64);
    let note = again.outcome.resumed.note.clone().unwrap();
    assert!(note.contains("damaged"), "{note}");
    fs::remove_dir_all(&d).unwrap();
}
