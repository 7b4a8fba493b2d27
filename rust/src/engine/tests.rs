//! Backup-then-restore round trips of the pure engine.

use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::*;
use crate::scan::algorithm::Algorithm;

fn tmpdir(name: &str) -> PathBuf {
    crate::test_util::tmpdir("engine", name)
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    crate::test_util::XorShift(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407)).bytes(n)
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
        reuse: None,
    }];
    let opts = BackupOptions {
        algorithm: Algorithm::Blake3,
        block_size: 4096,
        zstd_level: zstd.then_some(3),
        self_source,
        seal: None,
        dedup: false,
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
        reuse: None,
    }];
    let opts = BackupOptions {
        algorithm: Algorithm::Sha256,
        block_size: 4096,
        zstd_level: None,
        self_source: 0,
        seal: None,
        dedup: false,
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

fn opts() -> BackupOptions {
    BackupOptions {
        algorithm: Algorithm::Blake3,
        block_size: 4096,
        zstd_level: None,
        self_source: 0,
        seal: None,
        dedup: false,
    }
}

/// Backs up `src` as the only file while `during` runs once, after the first chunk.
fn backup_while(d: &Path, src: &Path, mut during: impl FnMut()) -> BackupOutcome {
    let jobs = [FileJob {
        path: src.to_path_buf(),
        rel: "live".into(),
        parent: None,
        reuse: None,
    }];
    let mut calls = 0;
    let out = backup_files(&jobs, None, &d.join("p"), &d.join("m"), &opts(), &mut |_| {
        calls += 1;
        if calls == 1 {
            during();
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(calls >= 2);
    out
}

#[test]
fn a_file_that_shrinks_while_read_is_stored_as_read_and_flagged() {
    let d = tmpdir("shrink");
    let src = d.join("src");
    let data = pseudo_random(backup::CHUNK_BYTES + 3 * 4096, 5);
    fs::write(&src, &data).unwrap();
    let keep = backup::CHUNK_BYTES + 100;
    let out = backup_while(&d, &src, || {
        fs::OpenOptions::new()
            .write(true)
            .open(&src)
            .unwrap()
            .set_len(keep as u64)
            .unwrap();
    });
    let f = &out.files[0];
    assert!(f.changed);
    assert_eq!(f.size, keep as u64);
    // restore_one reads "<name>.bmap".
    fs::copy(d.join("m"), d.join("shrunk.bmap")).unwrap();
    assert_eq!(restore_one(&d, "shrunk", f, &[d.join("p")]).unwrap(), data[..keep]);
}

#[test]
fn a_file_that_grows_while_read_keeps_its_size_at_open_and_is_flagged() {
    let d = tmpdir("grow");
    let src = d.join("src");
    let data = pseudo_random(backup::CHUNK_BYTES + 5000, 6);
    fs::write(&src, &data).unwrap();
    let out = backup_while(&d, &src, || {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(&src).unwrap();
        f.write_all(&[1u8; 9000]).unwrap();
    });
    let f = &out.files[0];
    assert!(f.changed);
    assert_eq!(f.size, data.len() as u64);
    fs::copy(d.join("m"), d.join("grown.bmap")).unwrap();
    assert_eq!(restore_one(&d, "grown", f, &[d.join("p")]).unwrap(), data);
}

#[test]
fn a_file_left_alone_is_not_flagged() {
    let d = tmpdir("still");
    let src = d.join("src");
    fs::write(&src, pseudo_random(backup::CHUNK_BYTES + 10, 7)).unwrap();
    let out = backup_while(&d, &src, || {});
    assert!(!out.files[0].changed);
}

#[test]
fn restore_never_writes_through_a_link_at_the_destination() {
    use std::os::unix::fs::symlink;
    let d = tmpdir("link");
    let src = d.join("src");
    fs::write(&src, pseudo_random(5000, 8)).unwrap();
    let full = run_backup(&d, "full", &src, None, 0, false);
    let victim = d.join("victim");
    for dangling in [false, true] {
        let _ = fs::remove_file(&victim);
        if !dangling {
            fs::write(&victim, b"keep me").unwrap();
        }
        let dest = d.join("restored-full");
        let _ = fs::remove_file(&dest);
        symlink(&victim, &dest).unwrap();
        let f = &full.files[0];
        let files = [RestoreFile {
            rel: "f".into(),
            dest: dest.clone(),
            first_block: f.first_block,
            block_count: f.block_count,
            size: f.size,
            digest: f.digest.clone(),
        }];
        let err = restore_files(&files, &d.join("full.bmap"), &[d.join("full.piece")], &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap_err();
        assert!(matches!(&err, Error::Io { path, .. } if path == &dest), "{err:?}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read(&victim).ok(), (!dangling).then(|| b"keep me".to_vec()));
        fs::remove_file(&dest).unwrap();
    }
}

#[test]
fn every_byte_change_of_block_map_or_piece_fails_the_restore_or_restores_the_data() {
    let d = tmpdir("mutate");
    let src = d.join("src");
    // Three 4 KiB blocks: one compressible, two not, the last short.
    let mut data = vec![0u8; 4096];
    data.extend(pseudo_random(4096 + 700, 9));
    fs::write(&src, &data).unwrap();
    let full = run_backup(&d, "full", &src, None, 0, true);
    let f = full.files[0].clone();
    let (map, piece) = (d.join("full.bmap"), d.join("full.piece"));
    let (map0, piece0) = (fs::read(&map).unwrap(), fs::read(&piece).unwrap());
    // Every byte of the block map; the piece's header, index and trailer, and a stride of its data.
    let data_end = piece0.len() - 96 - 3 * 61;
    let piece_positions = (0..piece0.len()).filter(|&i| i < 32 || i >= data_end || i % 61 == 0);
    let cases = (0..map0.len())
        .map(|i| (true, i))
        .chain(piece_positions.map(|i| (false, i)));
    for (in_map, at) in cases {
        let (path, orig) = if in_map { (&map, &map0) } else { (&piece, &piece0) };
        let mut v = orig.clone();
        v[at] ^= 0x5a;
        fs::write(path, &v).unwrap();
        match restore_one(&d, "full", &f, std::slice::from_ref(&piece)) {
            Ok(got) => assert_eq!(got, data, "{} byte {at}: wrong data, no error", path.display()),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(&d.display().to_string()), "byte {at}: {msg}");
            }
        }
        fs::write(path, orig).unwrap();
    }
}

#[test]
#[cfg(target_os = "linux")]
fn a_restore_lets_the_piece_leave_the_page_cache_behind_it() {
    let d = tmpdir("drop-read");
    let src = d.join("src");
    let data = pseudo_random(24 << 20, 9);
    fs::write(&src, &data).unwrap();
    let full = run_backup(&d, "full", &src, None, 0, false);
    let piece = d.join("full.piece");
    let file = fs::File::open(&piece).unwrap();
    if crate::test_util::on_tmpfs(&file) {
        return;
    }
    // Cached as a piece read just before would be (the backup dropped its own pages).
    let len = fs::metadata(&piece).unwrap().len() as usize;
    assert_eq!(fs::read(&piece).unwrap().len(), len);
    assert!(crate::test_util::resident_pages(&file, len) > len / 2);
    assert_eq!(
        restore_one(&d, "full", &full.files[0], std::slice::from_ref(&piece)).unwrap(),
        data
    );
    // What stays is the lag behind the last stretch (DROP_LAG plus alignment) and the
    // index and trailer after the data.
    let cached = crate::test_util::resident_pages(&file, len);
    assert!(cached <= 8 << 20, "{cached} of {len} bytes of the piece still cached");
}
