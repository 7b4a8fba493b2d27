//! Backup-then-restore round trips of the pure engine.

use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::*;
use crate::scan::algorithm::Algorithm;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rb-engine-{}-{}", name, std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn run_backup(
    dir: &Path,
    name: &str,
    src: &Path,
    parent: Option<(&Path, (u64, u64))>,
    self_source: u32,
    zstd: bool,
) -> BackupOutcome {
    let jobs = [FileJob {
        path: src.to_path_buf(),
        rel: "f".into(),
        parent: parent.map(|p| p.1),
    }];
    let opts = BackupOptions {
        algorithm: Algorithm::Blake3,
        block_size: 4096,
        zstd_level: zstd.then_some(3),
        self_source,
    };
    backup_files(
        &jobs,
        parent.map(|p| p.0),
        &dir.join(format!("{name}.piece")),
        &dir.join(format!("{name}.bmap")),
        &opts,
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap()
}

fn restore_one(dir: &Path, name: &str, out: &FileOutcome, sources: &[PathBuf]) -> Result<Vec<u8>> {
    let dest = dir.join(format!("restored-{name}"));
    let _ = fs::remove_file(&dest);
    let files = [RestoreFile {
        rel: "f".into(),
        dest: dest.clone(),
        first_block: out.first_block,
        block_count: out.block_count,
        size: out.size,
        digest: out.digest.clone(),
    }];
    restore_files(&files, &dir.join(format!("{name}.bmap")), sources, &mut |_| {
        ControlFlow::Continue(())
    })?;
    Ok(fs::read(dest).unwrap())
}

#[test]
fn incremental_stores_only_changed_blocks_and_restores_the_merge() {
    for zstd in [false, true] {
        let d = tmpdir(&format!("incr-{zstd}"));
        let src = d.join("src");
        let mut data = pseudo_random(4096 * 40 + 100, 1);
        fs::write(&src, &data).unwrap();
        let full = run_backup(&d, "full", &src, None, 0, zstd);
        assert_eq!(full.blocks_stored, 41);
        data[4096 * 7 + 5] ^= 1;
        data.extend_from_slice(&pseudo_random(5000, 2));
        fs::write(&src, &data).unwrap();
        let f = &full.files[0];
        let incr = run_backup(
            &d,
            "incr",
            &src,
            Some((&d.join("full.bmap"), (f.first_block, f.block_count))),
            1,
            zstd,
        );
        // block 7, the old partial last block (now full), and the one new block.
        assert_eq!(incr.blocks_stored, 3);
        let sources = [d.join("full.piece"), d.join("incr.piece")];
        assert_eq!(restore_one(&d, "incr", &incr.files[0], &sources).unwrap(), data);
        let old = restore_one(&d, "full", f, &sources[..1]).unwrap();
        assert_eq!(old.len(), 4096 * 40 + 100);
    }
}

#[test]
fn a_corrupt_block_names_piece_file_and_block() {
    let d = tmpdir("corrupt");
    let src = d.join("src");
    fs::write(&src, pseudo_random(4096 * 3, 3)).unwrap();
    let full = run_backup(&d, "full", &src, None, 0, false);
    let piece = d.join("full.piece");
    let mut bytes = fs::read(&piece).unwrap();
    bytes[32 + 4096 + 10] ^= 0x40;
    fs::write(&piece, bytes).unwrap();
    let err = restore_one(&d, "full", &full.files[0], &[piece])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("corrupt block 1 of file \"f\" in piece"), "{err}");
    assert!(err.contains("full.piece at offset 4128"), "{err}");
}

#[test]
fn cancelling_stops_with_cancelled() {
    let d = tmpdir("cancel");
    let src = d.join("src");
    fs::write(&src, pseudo_random(10_000, 4)).unwrap();
    let jobs = [FileJob {
        path: src,
        rel: "f".into(),
        parent: None,
    }];
    let opts = BackupOptions {
        algorithm: Algorithm::Sha256,
        block_size: 4096,
        zstd_level: None,
        self_source: 0,
    };
    let r = backup_files(&jobs, None, &d.join("p"), &d.join("m"), &opts, &mut |_| {
        ControlFlow::Break(())
    });
    assert!(matches!(r, Err(Error::Cancelled)));
}

#[test]
fn bad_block_sizes_are_refused() {
    let err = backup::check_block_size(100).unwrap_err().to_string();
    assert_eq!(err, "block_size 100 is out of range (512..=16777216 bytes)");
}
