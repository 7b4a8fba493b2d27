//! The fast checksum of a version-2 piece: a one-level tree of XXH3-128 (docs/FORMAT.md,
//! "Piece, version 2"). The bytes before the trailer are cut into `TREE_CHUNK` chunks
//! (the last may be short); the trailer records the XXH3-128 of the chunks' XXH3-128s
//! (canonical, big-endian), concatenated. One XXH3 stream runs on one core; chunks hash
//! independently, so STANDARD verification spreads one piece over every core.

use std::fs::File;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;
use twox_hash::xxhash3_128::Hasher as Xxh3;

use super::error::Result;
use super::read::read_exact_at;
use crate::io_hints;

/// Bytes per chunk of the tree; fixed by format version 2.
pub const TREE_CHUNK: u64 = 8 << 20;
/// Bytes read per step inside a chunk: the hash reads the buffer from cache rather than
/// memory. 256 KiB (inside a 512 KiB L2) measured the same within noise
/// (benches/README.md), so the step stays at 1 MiB, fewer system calls.
const STEP: u64 = 1 << 20;

/// The tree fed as a stream, in pieces of any size (the writer's batches, FULL's chunks).
#[derive(Clone)]
pub struct FastTree {
    chunk: Xxh3,
    in_chunk: u64,
    digests: Xxh3,
}

impl Default for FastTree {
    fn default() -> Self {
        Self::new()
    }
}

impl FastTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self {
            chunk: Xxh3::new(),
            in_chunk: 0,
            digests: Xxh3::new(),
        }
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            // room <= TREE_CHUNK, so the cast is exact.
            let take = ((TREE_CHUNK - self.in_chunk) as usize).min(data.len());
            self.chunk.write(&data[..take]);
            self.in_chunk += take as u64;
            data = &data[take..];
            if self.in_chunk == TREE_CHUNK {
                self.close_chunk();
            }
        }
    }

    fn close_chunk(&mut self) {
        let done = std::mem::take(&mut self.chunk);
        self.digests.write(&done.finish_128().to_be_bytes());
        self.in_chunk = 0;
    }

    /// The tree's root, canonical (big-endian) bytes.
    pub fn digest(mut self) -> [u8; 16] {
        if self.in_chunk > 0 {
            self.close_chunk();
        }
        self.digests.finish_128().to_be_bytes()
    }
}

/// Chunks one worker hashed: (chunk number, digest).
type Hashed = Vec<(u64, [u8; 16])>;

/// The root of the tree over `chunks` (each chunk's digest, in order).
fn root(chunks: &[[u8; 16]]) -> [u8; 16] {
    Xxh3::oneshot(chunks.as_flattened()).to_be_bytes()
}

/// The tree over bytes `[0, end)` of `file` (named `path`), chunks hashed on the current
/// rayon pool. Workers take chunks in file order from a shared counter (so a disk sees
/// near-sequential reads, not one stream per half of the file), and each prefetches the
/// chunk after the next. `on_bytes(n)` runs (on any worker) after each step of `n` bytes;
/// `Break` stops the pass (`Ok(None)`).
pub fn tree_of_file(
    file: &File,
    path: &Path,
    end: u64,
    on_bytes: &(dyn Fn(u64) -> ControlFlow<()> + Sync),
) -> Result<Option<[u8; 16]>> {
    let chunks = end.div_ceil(TREE_CHUNK);
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let workers = rayon::current_num_threads().max(1);
    let per_worker: Vec<Result<Hashed>> = (0..workers)
        .into_par_iter()
        .map(|_| {
            let mut done = Vec::new();
            let mut buf = vec![0u8; STEP as usize];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= chunks || stop.load(Ordering::Relaxed) {
                    return Ok(done);
                }
                let (start, stop_at) = (i * TREE_CHUNK, ((i + 1) * TREE_CHUNK).min(end));
                io_hints::prefetch(file, stop_at + TREE_CHUNK, TREE_CHUNK);
                let mut h = Xxh3::new();
                let mut pos = start;
                while pos < stop_at {
                    // n <= STEP, so the cast is exact.
                    let n = STEP.min(stop_at - pos) as usize;
                    if let Err(e) = read_exact_at(file, path, &mut buf[..n], pos) {
                        // The pass has failed: the other workers need not read on.
                        stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                    h.write(&buf[..n]);
                    pos += n as u64;
                    if on_bytes(n as u64).is_break() {
                        stop.store(true, Ordering::Relaxed);
                        return Ok(done);
                    }
                }
                done.push((i, h.finish_128().to_be_bytes()));
            }
        })
        .collect();
    let mut digests = Vec::new();
    for part in per_worker {
        digests.extend(part?);
    }
    if stop.load(Ordering::Relaxed) {
        return Ok(None);
    }
    digests.sort_unstable_by_key(|&(i, _)| i);
    let ordered: Vec<[u8; 16]> = digests.into_iter().map(|(_, d)| d).collect();
    Ok(Some(root(&ordered)))
}

#[cfg(test)]
mod tests {
    use super::*;
    // xxhash-rust: another implementation than the one under test.
    use xxhash_rust::xxh3::xxh3_128;

    /// The definition, written out: each chunk hashed alone, then the digests.
    fn oracle(data: &[u8]) -> [u8; 16] {
        let sums: Vec<[u8; 16]> = data
            .chunks(TREE_CHUNK as usize)
            .map(|c| xxh3_128(c).to_be_bytes())
            .collect();
        xxh3_128(sums.as_flattened()).to_be_bytes()
    }

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        crate::test_util::XorShift(seed | 1).bytes(n)
    }

    #[test]
    fn stream_file_and_definition_agree_at_every_chunk_boundary() {
        let c = TREE_CHUNK as usize;
        let dir = std::env::temp_dir().join(format!("rb-fast-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (k, len) in [1, 32, c - 1, c, c + 1, 2 * c, 2 * c + 12_345].into_iter().enumerate() {
            let data = bytes(len, k as u64);
            let want = oracle(&data);
            // Odd step sizes cross chunk boundaries mid-update.
            for step in [1usize << 20, 999_983, c + 7] {
                let mut t = FastTree::new();
                data.chunks(step).for_each(|s| t.update(s));
                assert_eq!(t.digest(), want, "stream, len {len}, step {step}");
            }
            let path = dir.join(format!("f{k}"));
            std::fs::write(&path, &data).unwrap();
            let f = File::open(&path).unwrap();
            let got = crate::scan::parallel::in_pool(|| {
                tree_of_file(&f, &path, len as u64, &|_| ControlFlow::Continue(())).unwrap()
            });
            assert_eq!(got, Some(want), "file, len {len}");
        }
        // A single chunk is not its own XXH3: the root always hashes the digests.
        assert_ne!(oracle(b"abc"), xxh3_128(b"abc").to_be_bytes());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stop_request_ends_the_pass_and_a_short_file_is_damage() {
        let dir = std::env::temp_dir().join(format!("rb-fast-stop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, bytes(3 << 20, 9)).unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(
            tree_of_file(&f, &path, 3 << 20, &|_| ControlFlow::Break(())).unwrap(),
            None
        );
        // The structure said more bytes than the file holds (it shrank since it was opened).
        let err = tree_of_file(&f, &path, TREE_CHUNK + 5, &|_| ControlFlow::Continue(())).unwrap_err();
        assert!(err.to_string().contains("file ends inside"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
