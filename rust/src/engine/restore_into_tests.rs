//! `restore_into` and `dump_file` against the plain backup pass: holes stay unallocated
//! only where the bytes are zero, a delta write touches only differing blocks, and a
//! damaged block is an error before anything of it is written.

use std::fs;
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::scan::algorithm::Algorithm;

const BS: u32 = 4096;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rb-into-{}-{}", name, std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Backs `data` up as one file; returns the restore description and the piece's path.
fn backed_up(dir: &Path, data: &[u8]) -> (RestoreFile, PathBuf) {
    let src = dir.join("src");
    fs::write(&src, data).unwrap();
    let jobs = [FileJob {
        path: src,
        rel: "f".into(),
        parent: None,
        reuse: None,
    }];
    let opts = BackupOptions {
        algorithm: Algorithm::Blake3,
        block_size: BS,
        zstd_level: None,
        self_source: 0,
        seal: None,
        dedup: false,
    };
    let piece = dir.join("p.piece");
    let out = backup_files(&jobs, None, &piece, &dir.join("p.bmap"), &opts, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let f = &out.files[0];
    let file = RestoreFile {
        rel: "f".into(),
        dest: dir.join("out"),
        first_block: f.first_block,
        block_count: f.block_count,
        size: f.size,
        digest: f.digest.clone(),
    };
    (file, piece)
}

fn into(dir: &Path, file: &RestoreFile, piece: &Path, holes: Vec<(u64, u64)>, delta: bool) -> Result<(u64, bool)> {
    let f = IntoFile {
        file: file.clone(),
        holes,
        delta,
    };
    let out = restore_into(&[f], &dir.join("p.bmap"), &[piece.to_path_buf()], &mut |_| {
        ControlFlow::Continue(())
    })?;
    Ok(out[0])
}

fn data_with_zero_middle() -> Vec<u8> {
    let mut d: Vec<u8> = (0..(64 * BS as usize)).map(|i| (i % 251 + 1) as u8).collect();
    d[8 * BS as usize..56 * BS as usize].fill(0);
    d
}

#[test]
fn holes_stay_unallocated_where_the_bytes_are_zero() {
    let dir = tmpdir("holes");
    let data = data_with_zero_middle();
    let (file, piece) = backed_up(&dir, &data);
    let hole = (8 * u64::from(BS), 48 * u64::from(BS));
    into(&dir, &file, &piece, vec![hole], false).unwrap();
    assert_eq!(fs::read(&file.dest).unwrap(), data);
    let m = fs::metadata(&file.dest).unwrap();
    // 16 blocks of data at most (file systems may round up a little), not 64.
    assert!(
        m.blocks() * 512 <= 20 * u64::from(BS),
        "{} blocks allocated",
        m.blocks()
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_wrong_hole_record_costs_space_never_data() {
    let dir = tmpdir("wronghole");
    let data: Vec<u8> = (0..(10 * BS as usize)).map(|i| (i % 7 + 1) as u8).collect();
    let (file, piece) = backed_up(&dir, &data);
    into(&dir, &file, &piece, vec![(0, 10 * u64::from(BS))], false).unwrap();
    assert_eq!(fs::read(&file.dest).unwrap(), data);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn delta_rewrites_only_differing_blocks_and_leaves_a_match_untouched() {
    let dir = tmpdir("delta");
    let data = data_with_zero_middle();
    let (file, piece) = backed_up(&dir, &data);
    fs::write(&file.dest, &data).unwrap();
    assert_eq!(into(&dir, &file, &piece, vec![], true).unwrap(), (0, false));
    let mut changed = data.clone();
    changed[3 * BS as usize + 10] ^= 0xFF;
    changed.extend_from_slice(b"tail to cut");
    fs::write(&file.dest, &changed).unwrap();
    let ino = fs::metadata(&file.dest).unwrap().ino();
    assert_eq!(into(&dir, &file, &piece, vec![], true).unwrap(), (u64::from(BS), true));
    assert_eq!(fs::read(&file.dest).unwrap(), data);
    assert_eq!(fs::metadata(&file.dest).unwrap().ino(), ino);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn without_delta_an_existing_file_or_link_is_refused() {
    let dir = tmpdir("exists");
    let (file, piece) = backed_up(&dir, b"abc");
    std::os::unix::fs::symlink(dir.join("elsewhere"), &file.dest).unwrap();
    assert!(into(&dir, &file, &piece, vec![], false).is_err());
    assert!(
        into(&dir, &file, &piece, vec![], true).is_err(),
        "a link is not opened even with delta"
    );
    assert!(!dir.join("elsewhere").exists());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn dump_streams_the_file_and_a_damaged_block_fails() {
    let dir = tmpdir("dump");
    let data: Vec<u8> = (0..(5 * BS as usize + 3)).map(|i| (i % 13) as u8).collect();
    let (file, piece) = backed_up(&dir, &data);
    let mut out = Vec::new();
    let n = dump_file(&file, &dir.join("p.bmap"), std::slice::from_ref(&piece), &mut out).unwrap();
    assert_eq!((n, out), (data.len() as u64, data.clone()));
    let mut bytes = fs::read(&piece).unwrap();
    // Inside the first block's stored bytes (right after the piece header).
    bytes[crate::format::HEADER_LEN as usize + 100] ^= 1;
    fs::write(&piece, &bytes).unwrap();
    let mut sink = Vec::new();
    let err = dump_file(&file, &dir.join("p.bmap"), &[piece], &mut sink).unwrap_err();
    assert!(matches!(err, Error::CorruptBlock { block_index: 0, .. }), "{err}");
    assert!(sink.is_empty());
    let _ = fs::remove_dir_all(&dir);
}
