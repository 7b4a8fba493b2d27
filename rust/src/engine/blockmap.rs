//! Block maps: one record per block of every file of a set's state, saying which source
//! piece holds the block, where, and its digest (layout in docs/FORMAT.md). Records are
//! streamed in and out, so memory stays flat.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::piece::{decode_header, encode_header, HEADER_LEN};
use crate::scan::algorithm::{to_hex, Algorithm, Hasher};

/// First bytes of a block map.
pub const BLOCKMAP_MAGIC: &[u8; 8] = b"RBBMAP\0\0";
/// First bytes of its trailer.
pub const BLOCKMAP_END_MAGIC: &[u8; 8] = b"RBBMEND\0";
/// Trailer length.
pub const BLOCKMAP_TRAILER_LEN: u64 = 88;

/// Where one block lives and what it hashes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRecord {
    /// Index into the manifest's `sources` list.
    pub source: u32,
    /// Offset of the stored bytes in that source's piece.
    pub offset: u64,
    /// Bytes on disk.
    pub stored_len: u32,
    /// Bytes of the raw block.
    pub raw_len: u32,
    /// Bit 0: zstd.
    pub flags: u8,
    /// Digest of the raw block.
    pub digest: Vec<u8>,
}

impl BlockRecord {
    /// Encoded length for a digest of `digest_len` bytes.
    pub fn encoded_len(digest_len: usize) -> usize {
        21 + digest_len
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.source.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        out.push(self.flags);
        out.extend_from_slice(&self.digest);
    }

    fn decode(b: &[u8]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[4..12]);
        Self {
            source: u32_at(0),
            offset: u64::from_le_bytes(a),
            stored_len: u32_at(12),
            raw_len: u32_at(16),
            flags: b[20],
            digest: b[21..].to_vec(),
        }
    }
}

/// Writes a block map; `finish` appends the trailer and fsyncs.
pub struct BlockMapWriter {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Hasher,
    count: u64,
    scratch: Vec<u8>,
}

impl BlockMapWriter {
    /// Creates `path` (which must not exist).
    pub fn create(path: &Path, algorithm: Algorithm, block_size: u32) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let mut w = Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 18, file),
            hasher: algorithm.hasher(),
            count: 0,
            scratch: Vec::with_capacity(128),
        };
        let h = encode_header(BLOCKMAP_MAGIC, block_size, algorithm);
        w.put(&h)?;
        Ok(w)
    }

    fn put(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(data).map_err(|e| Error::io(&self.path, e))?;
        self.hasher.update(data);
        Ok(())
    }

    /// Appends the next block's record.
    pub fn push(&mut self, rec: &BlockRecord) -> Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        rec.encode(&mut scratch);
        let r = self.put(&scratch);
        self.scratch = scratch;
        self.count += 1;
        r
    }

    /// Records written so far (the next record's number).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Appends the trailer, fsyncs; returns (checksum, record count).
    pub fn finish(mut self) -> Result<(Vec<u8>, u64)> {
        let checksum = self.hasher.finalize();
        let mut t = Vec::with_capacity(BLOCKMAP_TRAILER_LEN as usize);
        t.extend_from_slice(BLOCKMAP_END_MAGIC);
        t.extend_from_slice(&self.count.to_le_bytes());
        t.push(checksum.len() as u8);
        t.extend_from_slice(&[0u8; 7]);
        t.extend_from_slice(&checksum);
        t.resize(BLOCKMAP_TRAILER_LEN as usize, 0);
        self.out.write_all(&t).map_err(|e| Error::io(&self.path, e))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        Ok((checksum, self.count))
    }
}

/// Reads a block map; header and trailer are checked on open.
pub struct BlockMapReader {
    path: PathBuf,
    file: File,
    block_size: u32,
    algorithm: Algorithm,
    count: u64,
    checksum: Vec<u8>,
    size: u64,
}

impl BlockMapReader {
    /// Opens and validates `path` (structure only; `verify_checksum` re-hashes it).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if size < HEADER_LEN + BLOCKMAP_TRAILER_LEN {
            return Err(Error::format(path, format!("truncated block map ({size} bytes)")));
        }
        let mut h = [0u8; 32];
        file.read_exact_at(&mut h, 0).map_err(|e| Error::io(path, e))?;
        let (block_size, algorithm) = decode_header(path, BLOCKMAP_MAGIC, &h)?;
        let mut t = [0u8; BLOCKMAP_TRAILER_LEN as usize];
        file.read_exact_at(&mut t, size - BLOCKMAP_TRAILER_LEN)
            .map_err(|e| Error::io(path, e))?;
        if &t[..8] != BLOCKMAP_END_MAGIC {
            return Err(Error::format(
                path,
                "bad block map trailer magic (truncated or overwritten)",
            ));
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(&t[8..16]);
        let count = u64::from_le_bytes(a);
        let clen = usize::from(t[16]);
        if clen != algorithm.digest_size() {
            return Err(Error::format(path, format!("trailer checksum length {clen} is wrong")));
        }
        let rec = BlockRecord::encoded_len(algorithm.digest_size()) as u64;
        if count
            .checked_mul(rec)
            .and_then(|n| n.checked_add(HEADER_LEN + BLOCKMAP_TRAILER_LEN))
            != Some(size)
        {
            return Err(Error::format(
                path,
                format!("{count} records do not fit a {size}-byte block map"),
            ));
        }
        let checksum = t[24..24 + clen].to_vec();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            block_size,
            algorithm,
            count,
            checksum,
            size,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Block size of the set.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }
    /// Digest algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    /// Number of records.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// Checksum recorded in the trailer.
    pub fn recorded_checksum(&self) -> &[u8] {
        &self.checksum
    }

    /// Re-hashes the records; `Error::Checksum` when they changed.
    pub fn verify_checksum(&self) -> Result<()> {
        let mut h = self.algorithm.hasher();
        let mut buf = vec![0u8; 1 << 20];
        let end = self.size - BLOCKMAP_TRAILER_LEN;
        let mut pos = 0u64;
        while pos < end {
            let n = buf.len().min((end - pos) as usize);
            self.file
                .read_exact_at(&mut buf[..n], pos)
                .map_err(|e| Error::io(&self.path, e))?;
            h.update(&buf[..n]);
            pos += n as u64;
        }
        let actual = h.finalize();
        if actual != self.checksum {
            return Err(Error::Checksum {
                path: self.path.clone(),
                expected: to_hex(&self.checksum),
                actual: to_hex(&actual),
            });
        }
        Ok(())
    }

    /// Streams records `first .. first + count`.
    pub fn range(&self, first: u64, count: u64) -> Result<RecordIter> {
        if first.checked_add(count).is_none_or(|end| end > self.count) {
            return Err(Error::format(
                &self.path,
                format!(
                    "records {first}..{} requested but the block map holds {}",
                    first.saturating_add(count),
                    self.count
                ),
            ));
        }
        let rec_len = BlockRecord::encoded_len(self.algorithm.digest_size());
        let mut f = self.file.try_clone().map_err(|e| Error::io(&self.path, e))?;
        f.seek(SeekFrom::Start(HEADER_LEN + first * rec_len as u64))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(RecordIter {
            reader: BufReader::with_capacity(1 << 16, f),
            remaining: count,
            rec_len,
            path: self.path.clone(),
        })
    }
}

/// Streams block records.
pub struct RecordIter {
    reader: BufReader<File>,
    remaining: u64,
    rec_len: usize,
    path: PathBuf,
}

impl RecordIter {
    /// Records not yet read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

impl Iterator for RecordIter {
    type Item = Result<BlockRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let mut buf = vec![0u8; self.rec_len];
        Some(match self.reader.read_exact(&mut buf) {
            Ok(()) => Ok(BlockRecord::decode(&buf)),
            Err(e) => Err(Error::io(&self.path, e)),
        })
    }
}
