//! Whole-file digests: one file (optionally memory-mapped) or many files in parallel.

use std::fs::File;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::algorithm::Algorithm;
use super::error::{ScanError, SizeChange};
use super::parallel;
use super::reader::{ChunkReader, DEFAULT_CHUNK};

/// How `hash_path` gets at the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `read(2)` in large chunks: safe on live files (a concurrent truncation is reported
    /// as `SizeChanged`). The backup path always reads.
    Read,
    /// Memory-map regular files of 16 KiB and more for BLAKE3, as `b3sum` and the blake3
    /// crate's `update_mmap_rayon` do: no copy through the page cache (other algorithms
    /// read). Opt-in only, as in blake3-py: a truncation under the map raises SIGBUS,
    /// which kills the process (the blake3 crate's `io.rs` says the same).
    Mmap,
}

/// Below this the map costs more than the copy (the blake3 crate's `MINIMUM_MMAP_SIZE`).
const MIN_MMAP: u64 = 16 * 1024;

/// The digest of the file at `path`.
pub fn hash_path(
    path: &Path,
    algorithm: Algorithm,
    access: Access,
    threads: Option<usize>,
) -> Result<Vec<u8>, ScanError> {
    // Only BLAKE3 gains from a map: it spreads over every core and a map saves the copy.
    // MD5/SHA are one sequential stream on one core, so a read overlapped with the hash on the
    // other core costs nothing in wall time, while mapping adds a page fault per 4 KiB.
    if access == Access::Mmap && algorithm == Algorithm::Blake3 {
        if let Some(digest) = hash_mapped(path, algorithm, threads)? {
            return Ok(digest);
        }
    }
    hash_read(ChunkReader::<File>::open(path)?, algorithm, threads)
}

/// Reads in chunks, reading the next chunk while hashing this one (two buffers, flat memory).
fn hash_read(
    mut reader: ChunkReader<File>,
    algorithm: Algorithm,
    threads: Option<usize>,
) -> Result<Vec<u8>, ScanError> {
    let pool = parallel::pool(threads)?;
    let mut hasher = algorithm.hasher();
    let mut cur = reader.buffer(DEFAULT_CHUNK, 64 * 1024);
    let mut next = vec![0u8; cur.len()];
    let mut n = reader.fill(&mut cur)?;
    while n > 0 {
        let data = &cur[..n];
        let (read, ()) = pool.install(|| rayon::join(|| reader.fill(&mut next), || hasher.update_parallel(data)));
        n = read?;
        std::mem::swap(&mut cur, &mut next);
    }
    Ok(hasher.finalize())
}

/// `Some(digest)` via a map, or `None` when the file is not worth or not able to be mapped.
fn hash_mapped(path: &Path, algorithm: Algorithm, threads: Option<usize>) -> Result<Option<Vec<u8>>, ScanError> {
    let file = File::open(path).map_err(|e| ScanError::io(e, path))?;
    let meta = file.metadata().map_err(|e| ScanError::io(e, path))?;
    if !meta.is_file() || meta.len() < MIN_MMAP {
        return Ok(None);
    }
    // SAFETY: the map is only read, and only while `map` lives in this function. Another
    // process could still modify or truncate the file: modification changes what we hash
    // (the caller chose the map knowing this; the size is re-checked below), truncation
    // raises SIGBUS. That is the documented contract of `Access::Mmap` (as in b3sum), and
    // why the backup path and `scan_file` never map.
    let map = match unsafe { memmap2::Mmap::map(&file) } {
        Ok(map) => map,
        // Some files (procfs, some FUSE mounts) refuse maps: read them instead.
        Err(_) => return Ok(None),
    };
    // No MADV_SEQUENTIAL: update_rayon walks the halves of the file on different cores, not
    // front to back, and the advice let the kernel drop pages behind us (2x slower on a
    // page-cached 2 GiB file). The blake3 crate's own mmap path gives no advice either.
    let mut hasher = algorithm.hasher();
    parallel::install(threads, || hasher.update_parallel(&map))?;
    let after = file.metadata().map_err(|e| ScanError::io(e, path))?.len();
    if after != map.len() as u64 {
        let found = if after < map.len() as u64 {
            SizeChange::Shrunk(after)
        } else {
            SizeChange::Grew
        };
        return Err(ScanError::SizeChanged {
            path: path.to_path_buf(),
            expected: map.len() as u64,
            found,
        });
    }
    Ok(Some(hasher.finalize()))
}

/// Digests of many files, in parallel across files, one result per path in order: a bad
/// file is an `Err` in its slot and never stops the batch. Files are read, not mapped:
/// a batch usually walks a live tree.
pub fn hash_paths(
    paths: &[PathBuf],
    algorithm: Algorithm,
    threads: Option<usize>,
) -> Result<Vec<Result<Vec<u8>, ScanError>>, ScanError> {
    parallel::install(threads, || {
        paths
            .par_iter()
            .with_max_len(1)
            .map(|path| hash_one_sequential(path, algorithm))
            .collect()
    })
}

/// One file on the current worker: 1 MiB reads into a reused buffer, no nested fork-join
/// (the parallelism is across files; BLAKE3 still spreads a large file over idle workers).
fn hash_one_sequential(path: &Path, algorithm: Algorithm) -> Result<Vec<u8>, ScanError> {
    hash_sequential(ChunkReader::<File>::open(path)?, algorithm)
}

fn hash_sequential<R: std::io::Read>(mut reader: ChunkReader<R>, algorithm: Algorithm) -> Result<Vec<u8>, ScanError> {
    let mut buf = reader.buffer(1024 * 1024, 64 * 1024);
    let mut hasher = algorithm.hasher();
    loop {
        let n = reader.fill(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update_parallel(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::algorithm::ALL;
    use std::io::Write;

    fn temp_file(name: &str, data: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rb-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        File::create(&path).unwrap().write_all(data).unwrap();
        path
    }

    #[test]
    fn read_and_map_agree_with_the_in_memory_digest() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i ^ (i >> 9)) as u8).collect();
        for len in [0usize, 1, 16 * 1024 - 1, 16 * 1024, 5_000_000] {
            let path = temp_file(&format!("f{len}"), &data[..len]);
            for alg in ALL {
                let want = alg.digest(&data[..len]);
                assert_eq!(hash_path(&path, alg, Access::Read, None).unwrap(), want);
                assert_eq!(hash_path(&path, alg, Access::Mmap, Some(2)).unwrap(), want);
            }
        }
    }

    /// The file changes between the size taken at open and the read: every whole-file
    /// route reports it (errno EIO in Python) instead of a digest of no real version.
    #[test]
    fn a_file_that_shrinks_or_grows_after_open_is_a_size_change() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        for (name, new_len, want) in [
            ("shrinks", 1_000_000usize, SizeChange::Shrunk(1_000_000)),
            ("grows", 3_500_000, SizeChange::Grew),
        ] {
            let path = temp_file(name, &data);
            // The same bytes as far as both go: only the length differs.
            let change = |path: &Path| {
                let other: Vec<u8> = (0..new_len).map(|i| (i % 251) as u8).collect();
                std::fs::write(path, other).unwrap();
            };
            for alg in [Algorithm::Blake3, Algorithm::Sha512] {
                std::fs::write(&path, &data).unwrap();
                let reader = ChunkReader::<File>::open(&path).unwrap();
                change(&path);
                let err = hash_read(reader, alg, Some(2)).unwrap_err();
                assert!(
                    matches!(&err, ScanError::SizeChanged { expected: 3_000_000, found, .. } if *found == want),
                    "{name} {}: {err}",
                    alg.name()
                );
                std::fs::write(&path, &data).unwrap();
                let reader = ChunkReader::<File>::open(&path).unwrap();
                change(&path);
                let err = hash_sequential(reader, alg).unwrap_err();
                assert!(
                    matches!(&err, ScanError::SizeChanged { found, .. } if *found == want),
                    "{err}"
                );
                assert!(err.to_string().contains(&path.display().to_string()), "{err}");
            }
        }
    }

    #[test]
    fn a_batch_keeps_going_past_bad_files() {
        let good = temp_file("good", b"abc");
        let paths = vec![
            good.clone(),
            PathBuf::from("/nonexistent/file"),
            std::env::temp_dir(),
            good,
        ];
        let got = hash_paths(&paths, Algorithm::Sha256, Some(2)).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].as_ref().unwrap(), &Algorithm::Sha256.digest(b"abc"));
        assert!(matches!(&got[1], Err(ScanError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound));
        assert!(matches!(&got[2], Err(ScanError::Io { source, .. }) if source.raw_os_error() == Some(21)));
        assert!(got[3].is_ok());
    }
}
