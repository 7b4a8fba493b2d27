//! Pieces: block data, a per-block index and a trailer checksum (layout in docs/FORMAT.md).
//!
//! The writer spools index entries to a side file so memory stays flat however many
//! blocks a piece holds; the reader streams the index and reads blocks with positioned
//! reads (`read_exact_at`), so many threads can verify one piece at once.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::scan::parallel::in_pool;

use super::error::{Error, Result};
use super::writeback::BackgroundWriter;
use crate::scan::algorithm::{to_hex, Algorithm};

/// First bytes of every piece.
pub const PIECE_MAGIC: &[u8; 8] = b"RBPIECE\0";
/// First bytes of a piece trailer.
pub const TRAILER_MAGIC: &[u8; 8] = b"RBTRAIL\0";
/// The only piece version this code reads and writes.
pub const VERSION: u32 = 1;
/// Header length of pieces and block maps.
pub const HEADER_LEN: u64 = 32;
/// Trailer length of a piece.
pub const PIECE_TRAILER_LEN: u64 = 96;
/// Room for the largest digest (SHA-512) in trailers.
pub const MAX_DIGEST: usize = 64;
/// `flags` bit: the stored bytes are a zstd frame.
pub const FLAG_ZSTD: u8 = 1;

/// The code an algorithm has on disk.
pub fn algorithm_code(alg: Algorithm) -> u8 {
    match alg {
        Algorithm::Md5 => 1,
        Algorithm::Sha1 => 2,
        Algorithm::Sha256 => 3,
        Algorithm::Sha512 => 4,
        Algorithm::Blake3 => 5,
    }
}

/// The algorithm of an on-disk code.
pub fn algorithm_from_code(code: u8) -> Option<Algorithm> {
    match code {
        1 => Some(Algorithm::Md5),
        2 => Some(Algorithm::Sha1),
        3 => Some(Algorithm::Sha256),
        4 => Some(Algorithm::Sha512),
        5 => Some(Algorithm::Blake3),
        _ => None,
    }
}

/// The common 32-byte header of pieces and block maps.
pub(crate) fn encode_header(magic: &[u8; 8], block_size: u32, alg: Algorithm) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(magic);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&block_size.to_le_bytes());
    h[16] = algorithm_code(alg);
    // Digest sizes are at most 64, so the cast cannot truncate.
    h[17] = alg.digest_size() as u8;
    h
}

/// Parses a header, checking magic, version and algorithm; returns (block_size, algorithm).
pub(crate) fn decode_header(path: &Path, magic: &[u8; 8], h: &[u8; 32]) -> Result<(u32, Algorithm)> {
    if &h[..8] != magic {
        return Err(Error::format(
            path,
            format!("not a {} file (bad magic)", kind_name(magic)),
        ));
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != VERSION {
        return Err(Error::format(
            path,
            format!(
                "{} version {} is not supported (this build reads version {})",
                kind_name(magic),
                version,
                VERSION
            ),
        ));
    }
    let block_size = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    let alg = algorithm_from_code(h[16])
        .ok_or_else(|| Error::format(path, format!("unknown algorithm code {} in header", h[16])))?;
    if usize::from(h[17]) != alg.digest_size() {
        return Err(Error::format(
            path,
            format!("digest length {} does not match {}", h[17], alg.name()),
        ));
    }
    Ok((block_size, alg))
}

fn kind_name(magic: &[u8; 8]) -> &'static str {
    if magic == PIECE_MAGIC {
        "piece"
    } else {
        "block map"
    }
}

/// Turns stored bytes back into the raw block (decompressing when `flags` says so).
pub fn decode_block(stored: Vec<u8>, raw_len: u32, flags: u8) -> std::result::Result<Vec<u8>, String> {
    let raw = if flags & FLAG_ZSTD != 0 {
        zstd::bulk::decompress(&stored, raw_len as usize).map_err(|e| format!("zstd: {e}"))?
    } else {
        stored
    };
    if raw.len() != raw_len as usize {
        return Err(format!("length {} instead of {}", raw.len(), raw_len));
    }
    Ok(raw)
}

/// One index entry of a piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Number of the file in the manifest's `files` list.
    pub file_no: u32,
    /// Block number inside that file.
    pub block_index: u64,
    /// Offset of the stored bytes in the piece.
    pub offset: u64,
    /// Bytes on disk.
    pub stored_len: u32,
    /// Bytes after decompression.
    pub raw_len: u32,
    /// Bit 0: zstd.
    pub flags: u8,
    /// Digest of the raw block.
    pub digest: Vec<u8>,
}

impl IndexEntry {
    /// Encoded length of an entry for a digest of `digest_len` bytes.
    pub fn encoded_len(digest_len: usize) -> usize {
        29 + digest_len
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.file_no.to_le_bytes());
        out.extend_from_slice(&self.block_index.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        out.push(self.flags);
        out.extend_from_slice(&self.digest);
    }

    fn decode(b: &[u8]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        Self {
            file_no: u32_at(0),
            block_index: u64_at(4),
            offset: u64_at(12),
            stored_len: u32_at(20),
            raw_len: u32_at(24),
            flags: b[28],
            digest: b[29..].to_vec(),
        }
    }
}

/// Where a written block landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Offset in the piece.
    pub offset: u64,
    /// Bytes on disk.
    pub stored_len: u32,
    /// Bit 0: zstd.
    pub flags: u8,
}

/// What a finished piece looks like (for the catalog's `pieces` row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieceSummary {
    /// The piece file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The trailer checksum (digest of everything before the trailer).
    pub checksum: Vec<u8>,
    /// Number of blocks (index entries).
    pub block_count: u64,
}

/// Writes a piece: header, blocks, index, trailer. Call `finish` to make it durable.
pub struct PieceWriter {
    path: PathBuf,
    /// Writes and checksums the piece's bytes on its own thread.
    out: BackgroundWriter,
    pos: u64,
    index_path: PathBuf,
    index: BufWriter<File>,
    entries: u64,
    scratch: Vec<u8>,
}

impl PieceWriter {
    /// Creates `path` (which must not exist) for blocks of `block_size` hashed with `algorithm`.
    pub fn create(path: &Path, algorithm: Algorithm, block_size: u32) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let index_path = path.with_extension("piece-index.tmp");
        let index_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&index_path)
            .map_err(|e| Error::io(&index_path, e))?;
        let mut w = Self {
            path: path.to_path_buf(),
            out: BackgroundWriter::new(path, file, algorithm.hasher())?,
            pos: 0,
            index_path,
            index: BufWriter::with_capacity(1 << 16, index_file),
            entries: 0,
            scratch: Vec::with_capacity(128),
        };
        let header = encode_header(PIECE_MAGIC, block_size, algorithm);
        w.put(&header)?;
        Ok(w)
    }

    /// The piece's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn put(&mut self, data: &[u8]) -> Result<()> {
        self.out.write(data)?;
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Appends one block's stored bytes and records it in the index. `digest` is the
    /// digest of the raw block, `raw_len` its length; `flags` says how `stored` encodes it.
    pub fn write_block(
        &mut self,
        file_no: u32,
        block_index: u64,
        stored: &[u8],
        raw_len: u32,
        flags: u8,
        digest: &[u8],
    ) -> Result<Stored> {
        let offset = self.pos;
        let stored_len = u32::try_from(stored.len())
            .map_err(|_| Error::Invalid(format!("block {block_index} is larger than 4 GiB")))?;
        self.put(stored)?;
        let entry = IndexEntry {
            file_no,
            block_index,
            offset,
            stored_len,
            raw_len,
            flags,
            digest: digest.to_vec(),
        };
        self.scratch.clear();
        entry.encode(&mut self.scratch);
        self.index
            .write_all(&self.scratch)
            .map_err(|e| Error::io(&self.index_path, e))?;
        self.entries += 1;
        Ok(Stored {
            offset,
            stored_len,
            flags,
        })
    }

    /// Appends the index and trailer, fsyncs the piece and removes the index spool file.
    pub fn finish(mut self) -> Result<PieceSummary> {
        let index_off = self.pos;
        let mut spool = self
            .index
            .into_inner()
            .map_err(|e| Error::io(&self.index_path, e.into_error()))?;
        spool
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(&self.index_path, e))?;
        let mut reader = BufReader::with_capacity(1 << 16, spool);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).map_err(|e| Error::io(&self.index_path, e))?;
            if n == 0 {
                break;
            }
            self.out.write(&buf[..n])?;
            self.pos += n as u64;
        }
        drop(reader);
        let (mut file, hasher) = self.out.finish()?;
        let checksum = hasher.finalize();
        let mut trailer = Vec::with_capacity(PIECE_TRAILER_LEN as usize);
        trailer.extend_from_slice(TRAILER_MAGIC);
        trailer.extend_from_slice(&index_off.to_le_bytes());
        trailer.extend_from_slice(&self.entries.to_le_bytes());
        trailer.push(checksum.len() as u8);
        trailer.extend_from_slice(&[0u8; 7]);
        trailer.extend_from_slice(&checksum);
        trailer.resize(PIECE_TRAILER_LEN as usize, 0);
        file.write_all(&trailer).map_err(|e| Error::io(&self.path, e))?;
        self.pos += PIECE_TRAILER_LEN;
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        fs::remove_file(&self.index_path).map_err(|e| Error::io(&self.index_path, e))?;
        Ok(PieceSummary {
            path: self.path,
            size: self.pos,
            checksum,
            block_count: self.entries,
        })
    }
}

/// A block whose digest does not match (FULL verification).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockFault {
    /// The index entry of the block.
    pub entry: IndexEntry,
    /// Hex of the recorded digest.
    pub expected: String,
    /// Hex of the digest of what was read, or why it could not be decoded.
    pub actual: String,
}

/// Reads a finished piece: header and trailer are checked on open.
pub struct PieceReader {
    path: PathBuf,
    file: File,
    block_size: u32,
    algorithm: Algorithm,
    size: u64,
    index_off: u64,
    entry_count: u64,
    checksum: Vec<u8>,
}

impl PieceReader {
    /// Opens `path` and validates its header and trailer.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if size < HEADER_LEN + PIECE_TRAILER_LEN {
            return Err(Error::format(path, format!("truncated piece ({size} bytes)")));
        }
        let mut header = [0u8; 32];
        file.read_exact_at(&mut header, 0).map_err(|e| Error::io(path, e))?;
        let (block_size, algorithm) = decode_header(path, PIECE_MAGIC, &header)?;
        let mut t = [0u8; PIECE_TRAILER_LEN as usize];
        file.read_exact_at(&mut t, size - PIECE_TRAILER_LEN)
            .map_err(|e| Error::io(path, e))?;
        if &t[..8] != TRAILER_MAGIC {
            return Err(Error::format(
                path,
                "bad trailer magic (truncated or overwritten piece)",
            ));
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(&t[8..16]);
        let index_off = u64::from_le_bytes(a);
        a.copy_from_slice(&t[16..24]);
        let entry_count = u64::from_le_bytes(a);
        let checksum_len = usize::from(t[24]);
        if checksum_len != algorithm.digest_size() {
            return Err(Error::format(
                path,
                format!("trailer checksum length {checksum_len} is wrong"),
            ));
        }
        let checksum = t[32..32 + checksum_len].to_vec();
        let entry_len = IndexEntry::encoded_len(algorithm.digest_size()) as u64;
        let index_end = entry_count
            .checked_mul(entry_len)
            .and_then(|n| n.checked_add(index_off));
        if index_off < HEADER_LEN || index_end != Some(size - PIECE_TRAILER_LEN) {
            return Err(Error::format(
                path,
                format!("index at {index_off} with {entry_count} entries does not fit a {size}-byte piece"),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            block_size,
            algorithm,
            size,
            index_off,
            entry_count,
            checksum,
        })
    }

    /// The piece's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Block size the piece was written with.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }
    /// Digest algorithm of blocks and trailer.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    /// File size.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Number of blocks.
    pub fn block_count(&self) -> u64 {
        self.entry_count
    }
    /// The checksum recorded in the trailer.
    pub fn recorded_checksum(&self) -> &[u8] {
        &self.checksum
    }

    /// Streams the index entries in write order.
    pub fn entries(&self) -> Result<IndexIter<'_>> {
        let mut f = self.file.try_clone().map_err(|e| Error::io(&self.path, e))?;
        f.seek(SeekFrom::Start(self.index_off))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(IndexIter {
            reader: BufReader::with_capacity(1 << 16, f),
            remaining: self.entry_count,
            entry_len: IndexEntry::encoded_len(self.algorithm.digest_size()),
            path: &self.path,
        })
    }

    /// Reads the stored bytes at `offset` and decodes them (no digest check).
    pub fn read_raw(
        &self,
        offset: u64,
        stored_len: u32,
        raw_len: u32,
        flags: u8,
    ) -> Result<std::result::Result<Vec<u8>, String>> {
        let end = offset.checked_add(u64::from(stored_len));
        if offset < HEADER_LEN || end.is_none_or(|e| e > self.index_off) {
            return Err(Error::format(
                &self.path,
                format!("block at offset {offset} (+{stored_len}) lies outside the data area"),
            ));
        }
        let mut buf = vec![0u8; stored_len as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(decode_block(buf, raw_len, flags))
    }

    /// Reads one block and checks its digest; `file` names the block's file in errors.
    pub fn read_verified(&self, entry: &IndexEntry, file: &str) -> Result<Vec<u8>> {
        let raw = self.read_raw(entry.offset, entry.stored_len, entry.raw_len, entry.flags)?;
        match check_block(self.algorithm, raw, &entry.digest) {
            Ok(data) => Ok(data),
            Err(actual) => Err(Error::CorruptBlock {
                piece: self.path.clone(),
                file: file.to_string(),
                block_index: entry.block_index,
                offset: entry.offset,
                expected: to_hex(&entry.digest),
                actual,
            }),
        }
    }

    /// Re-hashes everything before the trailer; returns that digest (compare with
    /// `recorded_checksum` and with the catalog).
    pub fn compute_checksum(&self) -> Result<Vec<u8>> {
        let mut h = self.algorithm.hasher();
        let mut buf = vec![0u8; 1 << 20];
        let end = self.size - PIECE_TRAILER_LEN;
        let mut pos = 0u64;
        while pos < end {
            let n = buf.len().min((end - pos) as usize);
            self.file
                .read_exact_at(&mut buf[..n], pos)
                .map_err(|e| Error::io(&self.path, e))?;
            h.update(&buf[..n]);
            pos += n as u64;
        }
        Ok(h.finalize())
    }

    /// Checks the trailer checksum; `Error::Checksum` when the bytes changed.
    pub fn verify_checksum(&self) -> Result<()> {
        let actual = self.compute_checksum()?;
        if actual != self.checksum {
            return Err(Error::Checksum {
                path: self.path.clone(),
                expected: to_hex(&self.checksum),
                actual: to_hex(&actual),
            });
        }
        Ok(())
    }

    /// Re-hashes every block in parallel (rayon; call it with the GIL released) and
    /// returns the blocks whose digest does not match, in index order. The index is
    /// streamed in batches, so memory stays flat.
    pub fn verify_blocks(&self) -> Result<Vec<BlockFault>> {
        const BATCH: usize = 4096;
        let mut faults = Vec::new();
        let mut iter = self.entries()?;
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            for e in iter.by_ref().take(BATCH) {
                batch.push(e?);
            }
            if batch.is_empty() {
                break;
            }
            let results: Vec<Result<Option<BlockFault>>> = in_pool(|| {
                batch
                .into_par_iter()
                .map(|entry| {
                    let raw = self.read_raw(entry.offset, entry.stored_len, entry.raw_len, entry.flags)?;
                    Ok(match check_block(self.algorithm, raw, &entry.digest) {
                        Ok(_) => None,
                        Err(actual) => Some(BlockFault {
                            expected: to_hex(&entry.digest),
                            actual,
                            entry,
                        }),
                    })
                })
                .collect()
            });
            for r in results {
                if let Some(f) = r? {
                    faults.push(f);
                }
            }
        }
        Ok(faults)
    }
}

/// Checks a decoded block against its digest; Err carries the actual digest (hex) or reason.
pub(crate) fn check_block(
    alg: Algorithm,
    raw: std::result::Result<Vec<u8>, String>,
    digest: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    let data = raw?;
    let actual = alg.digest(&data);
    if actual == digest {
        Ok(data)
    } else {
        Err(to_hex(&actual))
    }
}

/// Streams a piece's index entries.
pub struct IndexIter<'a> {
    reader: BufReader<File>,
    remaining: u64,
    entry_len: usize,
    path: &'a Path,
}

impl Iterator for IndexIter<'_> {
    type Item = Result<IndexEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let mut buf = vec![0u8; self.entry_len];
        Some(match self.reader.read_exact(&mut buf) {
            Ok(()) => Ok(IndexEntry::decode(&buf)),
            Err(e) => Err(Error::io(self.path, e)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rb-piece-{}-{}", name, std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_sample(path: &Path, alg: Algorithm, blocks: &[Vec<u8>], zstd: bool) -> PieceSummary {
        let mut w = PieceWriter::create(path, alg, 8).unwrap();
        for (i, b) in blocks.iter().enumerate() {
            let d = alg.digest(b);
            let (stored, flags) = if zstd {
                (zstd::bulk::compress(b, 3).unwrap(), FLAG_ZSTD)
            } else {
                (b.clone(), 0)
            };
            w.write_block(7, i as u64, &stored, b.len() as u32, flags, &d).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_with_and_without_zstd() {
        let d = tmpdir("rt");
        for (zstd, alg) in [
            (false, Algorithm::Blake3),
            (true, Algorithm::Sha512),
            (false, Algorithm::Md5),
        ] {
            let p = d.join(format!("{zstd}-{}.piece", alg.name()));
            let blocks: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 8 - usize::from(i % 3)]).collect();
            let summary = write_sample(&p, alg, &blocks, zstd);
            assert_eq!(summary.size, fs::metadata(&p).unwrap().len());
            assert!(!p.with_extension("piece-index.tmp").exists());
            let r = PieceReader::open(&p).unwrap();
            assert_eq!(r.block_count(), 50);
            assert_eq!(r.recorded_checksum(), summary.checksum.as_slice());
            r.verify_checksum().unwrap();
            for (i, e) in r.entries().unwrap().enumerate() {
                let e = e.unwrap();
                assert_eq!((e.file_no, e.block_index), (7, i as u64));
                assert_eq!(r.read_verified(&e, "f").unwrap(), blocks[i]);
            }
            assert!(r.verify_blocks().unwrap().is_empty());
        }
    }

    #[test]
    fn a_flipped_byte_is_found_by_block_and_checksum() {
        let d = tmpdir("flip");
        let p = d.join("a.piece");
        let blocks: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 8]).collect();
        write_sample(&p, Algorithm::Blake3, &blocks, false);
        let mut bytes = fs::read(&p).unwrap();
        bytes[32 + 3 * 8 + 1] ^= 0xff;
        fs::write(&p, &bytes).unwrap();
        let r = PieceReader::open(&p).unwrap();
        assert!(matches!(r.verify_checksum(), Err(Error::Checksum { .. })));
        let faults = r.verify_blocks().unwrap();
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].entry.block_index, 3);
        assert_eq!(faults[0].entry.offset, 32 + 24);
        let e = r.entries().unwrap().nth(3).unwrap().unwrap();
        let msg = r.read_verified(&e, "dir/x").unwrap_err().to_string();
        assert!(msg.starts_with("corrupt block 3 of file \"dir/x\" in piece"), "{msg}");
    }

    #[test]
    fn truncated_and_foreign_files_are_format_errors() {
        let d = tmpdir("trunc");
        let p = d.join("a.piece");
        write_sample(&p, Algorithm::Blake3, &[vec![1; 8]], false);
        let bytes = fs::read(&p).unwrap();
        fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        assert!(matches!(PieceReader::open(&p), Err(Error::Format { .. })));
        fs::write(&p, vec![0u8; 200]).unwrap();
        let msg = PieceReader::open(&p).err().unwrap().to_string();
        assert!(msg.ends_with("not a piece file (bad magic)"), "{msg}");
        let mut v = bytes.clone();
        v[8] = 9;
        fs::write(&p, &v).unwrap();
        let msg = PieceReader::open(&p).err().unwrap().to_string();
        assert!(
            msg.ends_with("piece version 9 is not supported (this build reads version 1)"),
            "{msg}"
        );
    }
}
