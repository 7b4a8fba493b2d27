//! The read-ahead of small files (engine::prefetch), alone and inside the backup pass:
//! what it hands over equals what a plain read gives, in job order; what it must not take
//! (large files, files with holes, FIFOs) goes back to the pass; an error is handed over for
//! its own file only; and a pass over many small files (with failures and files taken
//! over unread in between) stores exactly the files' bytes.

use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::prefetch::{Fetched, Prefetcher, MAX_FILE};
use super::*;
use crate::scan::algorithm::Algorithm;

fn tmpdir(name: &str) -> PathBuf {
    crate::test_util::tmpdir("prefetch", name)
}

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    crate::test_util::XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1).bytes(n)
}

fn ready(f: Option<Fetched>) -> Option<Vec<u8>> {
    match f {
        Some(Fetched::Ready(r)) => {
            assert_eq!(r.at_open.len(), r.data.len() as u64);
            assert_eq!(r.after.len(), r.data.len() as u64);
            Some(r.data)
        }
        _ => None,
    }
}

#[test]
fn hands_over_small_files_in_order_and_leaves_the_rest_to_the_pass() {
    let d = tmpdir("order");
    let mut files = Vec::new();
    let mut want = Vec::new();
    // 100 files across several batches, sizes 0..9000, some skipped (taken over unread).
    for i in 0..100usize {
        let data = bytes((i * 89) % 9000, i as u64);
        let p = d.join(format!("f{i:03}"));
        fs::write(&p, &data).unwrap();
        if i % 7 != 3 {
            files.push((i, p));
        }
        want.push(data);
    }
    let big = d.join("big");
    fs::write(&big, bytes(MAX_FILE as usize + 1, 9)).unwrap();
    files.push((100, big));
    let sparse = d.join("sparse");
    {
        let f = fs::File::create(&sparse).unwrap();
        f.set_len(64 << 10).unwrap(); // all hole
    }
    files.push((101, sparse));
    let missing = d.join("missing");
    files.push((102, missing));
    let fifo = d.join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    files.push((103, fifo));
    let last = d.join("last");
    fs::write(&last, b"end").unwrap();
    files.push((104, last));

    let mut ahead = Prefetcher::start(files, true);
    for (i, data) in want.iter().enumerate() {
        let got = ready(ahead.take(i));
        if i % 7 == 3 {
            assert!(got.is_none(), "file {i} was not asked for");
        } else {
            assert_eq!(got.as_deref(), Some(&data[..]), "file {i}");
        }
    }
    assert!(ahead.take(100).is_none(), "a file above MAX_FILE is the pass's");
    assert!(ahead.take(101).is_none(), "a file with holes is the pass's");
    match ahead.take(102) {
        Some(Fetched::Failed(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        _ => panic!("a missing file is handed over as its error"),
    }
    assert!(ahead.take(103).is_none(), "a FIFO is the pass's (and did not block)");
    assert_eq!(ready(ahead.take(104)).as_deref(), Some(&b"end"[..]));
    assert!(ahead.take(105).is_none());
}

#[test]
fn dropping_it_early_stops_the_reading_thread() {
    let d = tmpdir("drop");
    let files: Vec<(usize, PathBuf)> = (0..500)
        .map(|i| {
            let p = d.join(format!("f{i}"));
            fs::write(&p, bytes(4000, i)).unwrap();
            (i as usize, p)
        })
        .collect();
    let mut ahead = Prefetcher::start(files, false);
    assert!(ready(ahead.take(0)).is_some());
    drop(ahead); // joins the thread: returns once it saw the receiver gone
}

fn pass(d: &Path, jobs: &[FileJob]) -> Result<BackupOutcome> {
    let opts = BackupOptions {
        algorithm: Algorithm::Blake3,
        block_size: 4096,
        zstd_level: None,
        self_source: 0,
        seal: None,
        dedup: true,
    };
    backup_files(jobs, None, &d.join("piece"), &d.join("bmap"), &opts, &mut |_| {
        ControlFlow::Continue(())
    })
}

#[test]
fn a_pass_over_many_small_files_stores_their_bytes_and_fails_on_the_right_one() {
    let d = tmpdir("pass");
    let src = d.join("src");
    fs::create_dir_all(&src).unwrap();
    let mut datas = Vec::new();
    let mut jobs = Vec::new();
    for i in 0..300usize {
        // Duplicates too (every 10th equals file 0): copy records must point right.
        let data = if i % 10 == 9 {
            bytes(3000, 0)
        } else {
            bytes((i * 131) % 20_000, i as u64 + 1)
        };
        let p = src.join(format!("f{i}"));
        fs::write(&p, &data).unwrap();
        jobs.push(FileJob {
            path: p,
            rel: format!("f{i}"),
            parent: None,
            reuse: None,
        });
        datas.push(data);
    }
    let out = pass(&d, &jobs).unwrap();
    assert_eq!(out.files.len(), datas.len());
    let piece = d.join("piece");
    for (i, (f, data)) in out.files.iter().zip(&datas).enumerate() {
        assert_eq!(f.size, data.len() as u64, "file {i}");
        assert!(!f.changed, "file {i}");
        let back = restore_files(
            &[RestoreFile {
                rel: format!("f{i}"),
                dest: d.join(format!("out{i}")),
                first_block: f.first_block,
                block_count: f.block_count,
                size: f.size,
                digest: f.digest.clone(),
            }],
            &d.join("bmap"),
            std::slice::from_ref(&piece),
            &mut |_| ControlFlow::Continue(()),
        );
        back.unwrap_or_else(|e| panic!("restore of file {i}: {e}"));
        assert_eq!(fs::read(d.join(format!("out{i}"))).unwrap(), *data, "file {i}");
    }

    // A file gone between the walk and the pass fails the pass naming that file, even
    // though the read-ahead met it before the pass finished the files in front of it.
    fs::remove_file(&jobs[250].path).unwrap();
    let d2 = tmpdir("pass-missing");
    match pass(&d2, &jobs) {
        Err(Error::Io { path, .. }) => assert_eq!(path, jobs[250].path),
        other => panic!("expected the missing file's error, got {other:?}"),
    }
}
