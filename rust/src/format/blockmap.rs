//! Block maps: one record per block of every file of a set's state, saying which source
//! piece holds the block, where, and its digest (docs/FORMAT.md). Records are streamed in
//! and out, so memory stays flat; every record read is checked against the header.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::block::{check_fields, Field};
use super::error::{Error, Result};
use super::header::{check_block_size, u32_at, u64_at, Header, Kind, Layout, HEADER_LEN, MAX_DIGEST};
use super::piece::check_zero;
use super::read::{hash_prefix, read_exact_at};
use crate::scan::algorithm::{to_hex, Algorithm, Hasher};

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
    fn encode(&self, layout: Layout, out: &mut Vec<u8>) {
        // Header::decode refuses a version-2 block map (none is written yet).
        match layout {
            Layout::V1 | Layout::V2 => {
                out.extend_from_slice(&self.source.to_le_bytes());
                out.extend_from_slice(&self.offset.to_le_bytes());
                out.extend_from_slice(&self.stored_len.to_le_bytes());
                out.extend_from_slice(&self.raw_len.to_le_bytes());
                out.push(self.flags);
                out.extend_from_slice(&self.digest);
            }
        }
    }

    /// Decodes one record (`b` is exactly one record long); Err is (field offset inside
    /// the record, what is wrong).
    fn decode(layout: Layout, b: &[u8], block_size: u32) -> std::result::Result<Self, (u64, String)> {
        let r = match layout {
            Layout::V1 | Layout::V2 => Self {
                source: u32_at(b, 0),
                offset: u64_at(b, 4),
                stored_len: u32_at(b, 12),
                raw_len: u32_at(b, 16),
                flags: b[20],
                digest: b[21..].to_vec(),
            },
        };
        check_fields(r.stored_len, r.raw_len, r.flags, block_size).map_err(|(field, m)| {
            let at = match (layout, field) {
                (Layout::V1 | Layout::V2, Field::StoredLen) => 12,
                (Layout::V1 | Layout::V2, Field::RawLen) => 16,
                (Layout::V1 | Layout::V2, Field::Flags) => 20,
            };
            (at, m)
        })?;
        if r.offset < HEADER_LEN {
            return Err((4, format!("block offset {} lies inside a piece header", r.offset)));
        }
        Ok(r)
    }
}

/// Writes a block map of the current version; `finish` appends the trailer and fsyncs.
pub struct BlockMapWriter {
    path: PathBuf,
    header: Header,
    out: BufWriter<File>,
    hasher: Hasher,
    count: u64,
    scratch: Vec<u8>,
}

impl BlockMapWriter {
    /// Creates `path` (which must not exist).
    pub fn create(path: &Path, algorithm: Algorithm, block_size: u32) -> Result<Self> {
        let header = Header::new(Kind::BlockMap, block_size, algorithm);
        check_block_size(block_size).map_err(|m| Error::io(path, io::Error::new(io::ErrorKind::InvalidInput, m)))?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let mut w = Self {
            path: path.to_path_buf(),
            header,
            out: BufWriter::with_capacity(1 << 18, file),
            hasher: algorithm.hasher(),
            count: 0,
            scratch: Vec::with_capacity(128),
        };
        w.put(&header.encode())?;
        Ok(w)
    }

    fn put(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(data).map_err(|e| Error::io(&self.path, e))?;
        self.hasher.update(data);
        Ok(())
    }

    /// Appends the next block's record.
    pub fn push(&mut self, rec: &BlockRecord) -> Result<()> {
        if let Err((_, m)) = check_fields(rec.stored_len, rec.raw_len, rec.flags, self.header.block_size) {
            let m = format!("record {}: {m}", self.count);
            return Err(Error::io(&self.path, io::Error::new(io::ErrorKind::InvalidInput, m)));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        rec.encode(self.header.layout, &mut scratch);
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
        let len = self.header.trailer_len() as usize;
        let mut t = Vec::with_capacity(len);
        match self.header.layout {
            Layout::V1 | Layout::V2 => {
                t.extend_from_slice(Kind::BlockMap.trailer_magic());
                t.extend_from_slice(&self.count.to_le_bytes());
                // A digest is at most 64 bytes.
                t.push(checksum.len() as u8);
                t.extend_from_slice(&[0u8; 7]);
                t.extend_from_slice(&checksum);
            }
        }
        t.resize(len, 0);
        self.out.write_all(&t).map_err(|e| Error::io(&self.path, e))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        Ok((checksum, self.count))
    }
}

/// Reads a block map of any version this build reads.
pub struct BlockMapReader {
    path: PathBuf,
    file: File,
    header: Header,
    count: u64,
    checksum: Vec<u8>,
    size: u64,
}

impl BlockMapReader {
    /// Opens `path` and checks header and trailer against its size (structure only;
    /// `verify_checksum` re-hashes it).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if size < HEADER_LEN {
            return Err(Error::damaged(
                path,
                size,
                format!("truncated block map ({size} bytes, no header)"),
            ));
        }
        let mut h = [0u8; HEADER_LEN as usize];
        read_exact_at(&file, path, &mut h, 0)?;
        let header = Header::decode(path, Kind::BlockMap, &h)?;
        let tlen = header.trailer_len();
        if size < HEADER_LEN + tlen {
            return Err(Error::damaged(
                path,
                size,
                format!("truncated block map ({size} bytes, no room for a {tlen}-byte trailer)"),
            ));
        }
        let at = size - tlen;
        let mut t = vec![0u8; tlen as usize];
        read_exact_at(&file, path, &mut t, at)?;
        let (count, checksum) = match header.layout {
            Layout::V1 | Layout::V2 => {
                if &t[..8] != Kind::BlockMap.trailer_magic() {
                    return Err(Error::damaged(
                        path,
                        at,
                        "bad block map trailer magic (truncated or overwritten)",
                    ));
                }
                let count = u64_at(&t, 8);
                let clen = usize::from(t[16]);
                if clen != header.digest_len() {
                    return Err(Error::damaged(
                        path,
                        at + 16,
                        format!("trailer checksum length {clen} is wrong"),
                    ));
                }
                check_zero(path, &t, 17..24, at)?;
                check_zero(path, &t, 24 + clen..24 + MAX_DIGEST, at)?;
                (count, t[24..24 + clen].to_vec())
            }
        };
        let rec = header.layout.record_len(header.digest_len());
        if count.checked_mul(rec).and_then(|n| n.checked_add(HEADER_LEN + tlen)) != Some(size) {
            return Err(Error::damaged(
                path,
                at + 8,
                format!("{count} records do not fit a {size}-byte block map"),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            header,
            count,
            checksum,
            size,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The format version it was written with.
    pub fn version(&self) -> u32 {
        self.header.layout.version()
    }
    /// Block size of the set.
    pub fn block_size(&self) -> u32 {
        self.header.block_size
    }
    /// Digest algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.header.algorithm
    }
    /// Number of records.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// File size.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Length of the trailer.
    pub fn trailer_len(&self) -> u64 {
        self.header.trailer_len()
    }
    /// Length of one record.
    pub fn record_len(&self) -> u64 {
        self.header.layout.record_len(self.header.digest_len())
    }
    /// Checksum recorded in the trailer.
    pub fn recorded_checksum(&self) -> &[u8] {
        &self.checksum
    }

    /// Re-hashes everything before the trailer; `on_chunk(n)` after each step, `Break`
    /// stops (`Ok(None)`).
    pub fn checksum_with(&self, on_chunk: &mut dyn FnMut(u64) -> ControlFlow<()>) -> Result<Option<Vec<u8>>> {
        let end = self.size - self.header.trailer_len();
        hash_prefix(&self.file, &self.path, self.header.algorithm, end, on_chunk)
    }

    /// Re-hashes the records; `Error::Checksum` when they changed.
    pub fn verify_checksum(&self) -> Result<()> {
        let actual = self
            .checksum_with(&mut |_| ControlFlow::Continue(()))?
            .unwrap_or_default();
        if actual != self.checksum {
            return Err(Error::Checksum {
                path: self.path.clone(),
                covered: self.size - self.header.trailer_len(),
                expected: to_hex(&self.checksum),
                actual: to_hex(&actual),
            });
        }
        Ok(())
    }

    /// Streams records `first .. first + count`. A record that cannot describe a block is
    /// an `Error::Damaged` naming its offset; the stream goes on after it.
    pub fn range(&self, first: u64, count: u64) -> Result<RecordIter> {
        if first.checked_add(count).is_none_or(|end| end > self.count) {
            return Err(Error::damaged(
                &self.path,
                self.size - self.header.trailer_len(),
                format!(
                    "records {first}..{} requested but the block map holds {}",
                    first.saturating_add(count),
                    self.count
                ),
            ));
        }
        let rec_len = self.header.layout.record_len(self.header.digest_len());
        // first < self.count here (or count == 0), so the offset lies inside the file.
        let start = HEADER_LEN + first * rec_len;
        let mut f = self.file.try_clone().map_err(|e| Error::io(&self.path, e))?;
        f.seek(SeekFrom::Start(start)).map_err(|e| Error::io(&self.path, e))?;
        Ok(RecordIter {
            reader: BufReader::with_capacity(1 << 16, f),
            path: self.path.clone(),
            header: self.header,
            at: start,
            next: first,
            remaining: count,
            // At most 21 + 64 bytes.
            buf: vec![0u8; rec_len as usize],
        })
    }
}

/// Streams block records, checking each.
pub struct RecordIter {
    reader: BufReader<File>,
    path: PathBuf,
    header: Header,
    at: u64,
    next: u64,
    remaining: u64,
    buf: Vec<u8>,
}

impl Iterator for RecordIter {
    type Item = Result<BlockRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let (at, n) = (self.at, self.next);
        self.at += self.buf.len() as u64;
        self.next += 1;
        if let Err(e) = self.reader.read_exact(&mut self.buf) {
            self.remaining = 0;
            return Some(Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::damaged(&self.path, at, "records end early (the block map changed while read?)")
            } else {
                Error::io(&self.path, e)
            }));
        }
        Some(
            BlockRecord::decode(self.header.layout, &self.buf, self.header.block_size)
                .map_err(|(field, m)| Error::damaged(&self.path, at + field, format!("record {n}: {m}"))),
        )
    }
}
