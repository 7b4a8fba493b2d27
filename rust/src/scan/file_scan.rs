//! One pass over a file: the whole-file digest and every block's digest together.
//!
//! The file is read in block-aligned chunks (double-buffered: the next chunk is read while
//! the current one is hashed). Per chunk, the block digests run in parallel on the pool,
//! and the whole-file digest, which is sequential for MD5/SHA, runs beside them on the other
//! core(s) (`rayon::join`); BLAKE3's whole-file hasher spreads itself over the pool too.
//! Blocks are then handed to the caller's callback in order, on the calling thread, never
//! on a pool thread, so a binding may take the GIL there (check signals, report progress).
//!
//! Why BLAKE3 still hashes every byte twice. With blocks of 1 KiB·2^k each block is a
//! subtree of the file's BLAKE3 tree, but its standalone digest (`blake3(block)`) cannot
//! yield that subtree's chaining value: every chunk compression binds its chunk counter,
//! which starts at 0 for the block alone and at `offset / 1024` inside the file (see the
//! test `a_block_inside_the_file_is_not_hashed_like_a_standalone_block`). An earlier
//! version computed each block's in-file chaining value with a per-block
//! `Hasher::set_input_offset` and merged them; it measured 8% slower than this plain
//! stream at 8 KiB blocks (a per-block `Hasher` keeps its last chunk back and so fills only
//! half of the SIMD lanes), and no faster at 64 KiB or 1 MiB, so it was removed.

use std::fs::File;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::Path;

use super::algorithm::{Algorithm, Hasher};
use super::error::{BlockSize, ScanError};
use super::parallel;
use super::reader::{ChunkReader, DEFAULT_CHUNK};

/// One block as the callback sees it.
pub struct Block<'a> {
    /// 0-based block number.
    pub index: u64,
    /// Byte offset in the file (`index * block_size`).
    pub offset: u64,
    /// The block's bytes; only the last block may be shorter than the block size.
    pub data: &'a [u8],
    /// The block's standalone digest (`algorithm.digest(data)`).
    pub digest: &'a [u8],
}

/// What a scan found, without the per-block digests (the callback got those).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanSummary {
    /// The algorithm used.
    pub algorithm: Algorithm,
    /// The block size used.
    pub block_size: BlockSize,
    /// Bytes read.
    pub size: u64,
    /// Blocks seen (`size.div_ceil(block_size)`; 0 for an empty file).
    pub block_count: u64,
    /// The whole-file digest.
    pub digest: Vec<u8>,
}

/// A scan with every block digest kept, concatenated (`digest_size` bytes each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileScan {
    /// Size, block count and the whole-file digest.
    pub summary: ScanSummary,
    /// Raw block digests, block 0 first.
    pub block_digests: Vec<u8>,
}

/// Scan settings: algorithm, block size, threads, chunk size.
#[derive(Clone, Copy, Debug)]
pub struct Scanner {
    algorithm: Algorithm,
    block_size: BlockSize,
    threads: Option<usize>,
    chunk: usize,
}

impl Scanner {
    /// A scanner with all cores and 4 MiB chunks.
    pub fn new(algorithm: Algorithm, block_size: BlockSize) -> Self {
        Self {
            algorithm,
            block_size,
            threads: None,
            chunk: DEFAULT_CHUNK,
        }
    }

    /// Worker threads (`None`: every core).
    pub fn threads(mut self, threads: Option<usize>) -> Self {
        self.threads = threads;
        self
    }

    /// Bytes read per chunk (rounded to whole blocks; at least one block).
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk = bytes.max(1);
        self
    }

    /// Scans `path`, calling `on_block` for each block in order; `Break` cancels.
    pub fn scan_path(
        &self,
        path: &Path,
        on_block: impl FnMut(Block<'_>) -> ControlFlow<()>,
    ) -> Result<ScanSummary, ScanError> {
        self.scan_reader(ChunkReader::<File>::open(path)?, on_block)
    }

    /// Scans `path` and keeps every block digest (what Python's `scan_file` returns).
    pub fn scan_path_collect(&self, path: &Path) -> Result<FileScan, ScanError> {
        self.scan_reader_collect(ChunkReader::<File>::open(path)?)
    }

    /// `scan_path_collect` for any reader.
    pub fn scan_reader_collect<R: Read + Send>(&self, reader: ChunkReader<R>) -> Result<FileScan, ScanError> {
        let ds = self.algorithm.digest_size();
        let blocks = reader
            .expected_len()
            .map_or(0, |n| n.div_ceil(self.block_size.get() as u64));
        let mut block_digests = Vec::with_capacity(usize::try_from(blocks).unwrap_or(0).saturating_mul(ds));
        let summary = self.scan_reader(reader, |b| {
            block_digests.extend_from_slice(b.digest);
            ControlFlow::Continue(())
        })?;
        Ok(FileScan { summary, block_digests })
    }

    /// The scan loop over any reader (the engine passes its own, e.g. a SQLite snapshot).
    pub fn scan_reader<R: Read + Send>(
        &self,
        mut reader: ChunkReader<R>,
        mut on_block: impl FnMut(Block<'_>) -> ControlFlow<()>,
    ) -> Result<ScanSummary, ScanError> {
        let alg = self.algorithm;
        let bs = self.block_size.get();
        let ds = alg.digest_size();
        let pool = parallel::pool(self.threads)?;
        let mut cur = reader.buffer(self.chunk, bs);
        let mut next = vec![0u8; cur.len()];
        let mut digests = vec![0u8; cur.len() / bs * ds];
        let mut whole = alg.hasher();
        let mut offset = 0u64;
        let mut index = 0u64;
        let mut n = reader.fill(&mut cur)?;
        while n > 0 {
            let data = &cur[..n];
            let blocks = n.div_ceil(bs);
            let out = &mut digests[..blocks * ds];
            let (read, ()) =
                pool.install(|| rayon::join(|| reader.fill(&mut next), || hash_chunk(alg, bs, data, out, &mut whole)));
            for (i, (block, digest)) in data.chunks(bs).zip(digests.chunks(ds)).enumerate() {
                let block_offset = offset + (i * bs) as u64;
                if on_block(Block {
                    index: index + i as u64,
                    offset: block_offset,
                    data: block,
                    digest,
                })
                .is_break()
                {
                    return Err(ScanError::Cancelled {
                        path: reader.path().to_path_buf(),
                        offset: block_offset,
                    });
                }
            }
            offset += n as u64;
            index += blocks as u64;
            n = read?;
            std::mem::swap(&mut cur, &mut next);
        }
        let digest = whole.finalize();
        Ok(ScanSummary {
            algorithm: alg,
            block_size: self.block_size,
            size: offset,
            block_count: index,
            digest,
        })
    }
}

/// Block digests of one chunk into `out`, and the chunk folded into the whole digest:
/// the sequential digest on one worker, the blocks spread over the rest.
fn hash_chunk(alg: Algorithm, bs: usize, data: &[u8], out: &mut [u8], whole: &mut Hasher) {
    rayon::join(
        || whole.update_parallel(data),
        || parallel::digest_blocks_into(alg, data, bs, out),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::algorithm::ALL;
    use std::io::Cursor;

    fn scan(data: &[u8], alg: Algorithm, bs: u64, chunk: usize) -> FileScan {
        let reader = ChunkReader::new(Cursor::new(data.to_vec()), Path::new("mem"), Some(data.len() as u64));
        Scanner::new(alg, BlockSize::new(bs).unwrap())
            .chunk_size(chunk)
            .scan_reader_collect(reader)
            .unwrap()
    }

    #[test]
    fn every_block_and_the_whole_match_independent_digests() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for alg in ALL {
            for bs in [512u64, 1024, 8192, 65536] {
                let b = bs as usize;
                for len in [0, 1, b - 1, b, b + 1, 5 * b + 17, data.len()] {
                    for chunk in [b, 3 * b, DEFAULT_CHUNK] {
                        let d = &data[..len.min(data.len())];
                        let s = scan(d, alg, bs, chunk);
                        assert_eq!(s.summary.digest, alg.digest(d), "{} bs {bs} len {len}", alg.name());
                        assert_eq!(s.summary.size, d.len() as u64);
                        assert_eq!(s.summary.block_count, d.len().div_ceil(b) as u64);
                        let want: Vec<u8> = d.chunks(b).flat_map(|c| alg.digest(c)).collect();
                        assert_eq!(s.block_digests, want, "{} bs {bs} len {len}", alg.name());
                    }
                }
            }
        }
    }

    #[test]
    fn blocks_arrive_in_order_with_offsets_and_can_cancel() {
        let data = vec![3u8; 10_000];
        let reader = ChunkReader::new(Cursor::new(data.clone()), Path::new("mem"), Some(10_000));
        let mut seen = Vec::new();
        let err = Scanner::new(Algorithm::Sha256, BlockSize::new(1024).unwrap())
            .chunk_size(2048)
            .scan_reader(reader, |b| {
                seen.push((b.index, b.offset, b.data.len()));
                if b.index == 4 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "scan of mem cancelled at byte 4096");
        assert_eq!(
            seen,
            vec![
                (0, 0, 1024),
                (1, 1024, 1024),
                (2, 2048, 1024),
                (3, 3072, 1024),
                (4, 4096, 1024)
            ]
        );
    }

    #[test]
    fn bad_block_sizes_name_the_value() {
        for bad in [0u64, 256, 1000, 32 * 1024 * 1024, 4097] {
            assert_eq!(
                BlockSize::new(bad).unwrap_err().to_string(),
                format!("invalid block_size {bad}: must be a power of two between 512 and 16777216 bytes (16 MiB)")
            );
        }
        assert!(BlockSize::new(512).is_ok() && BlockSize::new(16 * 1024 * 1024).is_ok());
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let err = Scanner::new(Algorithm::Md5, BlockSize::new(4096).unwrap())
            .scan_path_collect(Path::new("/nonexistent/x.db"))
            .unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/x.db: "), "{err}");
    }

    #[test]
    fn a_block_inside_the_file_is_not_hashed_like_a_standalone_block() {
        // Why the per-block digest costs a second pass over the data: the chunk counter.
        use blake3::hazmat::HasherExt;
        let block = vec![7u8; 4096];
        let mut standalone = blake3::Hasher::new();
        standalone.update(&block);
        let mut in_file = blake3::Hasher::new();
        in_file.set_input_offset(4096);
        in_file.update(&block);
        assert_ne!(standalone.finalize_non_root(), in_file.finalize_non_root());
        let mut at_zero = blake3::Hasher::new();
        at_zero.set_input_offset(0);
        at_zero.update(&block);
        assert_eq!(standalone.finalize_non_root(), at_zero.finalize_non_root());
    }
}
