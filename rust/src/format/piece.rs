//! Pieces: header, block data, a per-block index and a trailer checksum (docs/FORMAT.md).
//!
//! The writer spools index entries to a side file so memory stays flat however many
//! blocks a piece holds. The reader checks header and trailer against the file's size on
//! open, streams the index checking every entry, and reads blocks with positioned reads
//! (`read_exact_at`) bounded by the data area, so many threads can read one piece.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::block::{check_block, check_fields, decode_block, stored_mismatch, Field};
use super::blockmap::BlockRecord;
use super::error::{Error, Result};
use super::fast::{tree_of_file, FastTree};
use super::header::{check_block_size, u32_at, u64_at, Header, Kind, Layout, HEADER_LEN, MAX_DIGEST};
use super::read::{hash_prefix, open_framed, read_exact_at, Framed};
use super::writeback::BackgroundWriter;
use crate::scan::algorithm::{to_hex, Algorithm, Hasher};
use twox_hash::xxhash3_128::Hasher as Xxh3;

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
    fn encode(&self, layout: Layout, out: &mut Vec<u8>) {
        match layout {
            Layout::V1 | Layout::V2 | Layout::V3 | Layout::V4 => {
                out.extend_from_slice(&self.file_no.to_le_bytes());
                out.extend_from_slice(&self.block_index.to_le_bytes());
                out.extend_from_slice(&self.offset.to_le_bytes());
                out.extend_from_slice(&self.stored_len.to_le_bytes());
                out.extend_from_slice(&self.raw_len.to_le_bytes());
                out.push(self.flags);
                out.extend_from_slice(&self.digest);
            }
        }
    }

    /// Decodes one entry (`b` is exactly one entry long); Err is (field offset inside
    /// the entry, what is wrong) when it cannot describe a block of this piece.
    pub(crate) fn decode(
        layout: Layout,
        b: &[u8],
        block_size: u32,
        data_end: u64,
    ) -> std::result::Result<Self, (u64, String)> {
        let e = match layout {
            Layout::V1 | Layout::V2 | Layout::V3 | Layout::V4 => Self {
                file_no: u32_at(b, 0),
                block_index: u64_at(b, 4),
                offset: u64_at(b, 12),
                stored_len: u32_at(b, 20),
                raw_len: u32_at(b, 24),
                flags: b[28],
                digest: b[29..].to_vec(),
            },
        };
        check_fields(e.stored_len, e.raw_len, e.flags, block_size).map_err(|(field, m)| {
            let at = match (layout, field) {
                (Layout::V1 | Layout::V2 | Layout::V3 | Layout::V4, Field::StoredLen) => 20,
                (Layout::V1 | Layout::V2 | Layout::V3 | Layout::V4, Field::RawLen) => 24,
                (Layout::V1 | Layout::V2 | Layout::V3 | Layout::V4, Field::Flags) => 28,
            };
            (at, m)
        })?;
        let end = e.offset.checked_add(u64::from(e.stored_len));
        if e.offset < HEADER_LEN || end.is_none_or(|end| end > data_end) {
            return Err((
                12,
                format!(
                    "block at offset {} (+{}) lies outside the data area {HEADER_LEN}..{data_end}",
                    e.offset, e.stored_len
                ),
            ));
        }
        Ok(e)
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
    /// The XXH3-128 tree (`fast::FastTree`) of the same bytes, when the version records
    /// one (version 2 on).
    pub fast_checksum: Option<[u8; 16]>,
    /// Number of blocks (index entries).
    pub block_count: u64,
}

/// Writes a piece of the current version: header, blocks, index, trailer. Call `finish`
/// to make it durable.
pub struct PieceWriter {
    path: PathBuf,
    header: Header,
    /// Writes and checksums the piece's bytes on its own thread.
    out: BackgroundWriter,
    pos: u64,
    index_path: PathBuf,
    index: BufWriter<File>,
    entries: u64,
    scratch: Vec<u8>,
    /// XXH3-128s of the piece bytes and of the encoded index entries since the last
    /// `take_sums`: a checkpoint records them per file, so a resumed pass adopts only
    /// bytes that read back as written (`engine::resume`).
    range_sum: Xxh3,
    index_sum: Xxh3,
}

/// The side file a piece writer spools its index entries to until `finish`.
pub(crate) fn spool_path(piece: &Path) -> PathBuf {
    piece.with_extension("piece-index.tmp")
}

impl PieceWriter {
    /// Creates `path` (which must not exist) for blocks of `block_size` hashed with `algorithm`.
    pub fn create(path: &Path, algorithm: Algorithm, block_size: u32) -> Result<Self> {
        Self::create_layout(path, algorithm, block_size, Layout::written(Kind::Piece))
    }

    /// `create` in an older layout: the tests' way to write the files older releases
    /// wrote (mixed-version chains, mutation tests of every readable version).
    pub(crate) fn create_layout(path: &Path, algorithm: Algorithm, block_size: u32, layout: Layout) -> Result<Self> {
        let header = Header {
            layout,
            ..Header::new(Kind::Piece, block_size, algorithm)
        };
        check_block_size(block_size).map_err(|m| Error::io(path, io::Error::new(io::ErrorKind::InvalidInput, m)))?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let index_path = spool_path(path);
        let index_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&index_path)
            .map_err(|e| Error::io(&index_path, e))?;
        let mut w = Self {
            path: path.to_path_buf(),
            header,
            out: BackgroundWriter::new(path, file, algorithm.hasher())?,
            pos: 0,
            index_path,
            index: BufWriter::with_capacity(1 << 16, index_file),
            entries: 0,
            scratch: Vec::with_capacity(128),
            range_sum: Xxh3::new(),
            index_sum: Xxh3::new(),
        };
        w.put(&header.encode())?;
        Ok(w)
    }

    /// Reopens the piece a cut pass left at `path` to go on after its first `pos` bytes
    /// and `entries` index entries (whatever followed is cut off), so the finished piece
    /// is the one an uninterrupted pass writes. `hasher` and `tree` have seen exactly
    /// bytes `0..pos`; `engine::resume` re-reads and checks them before it calls this.
    pub fn resume(path: &Path, header: Header, pos: u64, entries: u64, hasher: Hasher, tree: FastTree) -> Result<Self> {
        let mut file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        file.set_len(pos).map_err(|e| Error::io(path, e))?;
        file.seek(SeekFrom::Start(pos)).map_err(|e| Error::io(path, e))?;
        let index_path = spool_path(path);
        let mut index_file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&index_path)
            .map_err(|e| Error::io(&index_path, e))?;
        let entry_len = header.layout.index_entry_len(header.digest_len());
        let index_len = entries
            .checked_mul(entry_len)
            .ok_or_else(|| Error::damaged(&index_path, 0, format!("{entries} index entries overflow")))?;
        index_file.set_len(index_len).map_err(|e| Error::io(&index_path, e))?;
        index_file
            .seek(SeekFrom::Start(index_len))
            .map_err(|e| Error::io(&index_path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            header,
            out: BackgroundWriter::resumed(path, file, hasher, tree, pos)?,
            pos,
            index_path,
            index: BufWriter::with_capacity(1 << 16, index_file),
            entries,
            scratch: Vec::with_capacity(128),
            range_sum: Xxh3::new(),
            index_sum: Xxh3::new(),
        })
    }

    /// Makes every byte and index entry written so far durable, the precondition of a
    /// checkpoint record; returns (bytes, index entries).
    pub fn sync(&mut self) -> Result<(u64, u64)> {
        self.out.sync()?;
        self.index.flush().map_err(|e| Error::io(&self.index_path, e))?;
        self.index
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io(&self.index_path, e))?;
        Ok((self.pos, self.entries))
    }

    /// The XXH3-128s (canonical) of the piece bytes and of the encoded index entries
    /// written since the last call.
    pub fn take_sums(&mut self) -> ([u8; 16], [u8; 16]) {
        let piece = std::mem::take(&mut self.range_sum).finish_128().to_be_bytes();
        let index = std::mem::take(&mut self.index_sum).finish_128().to_be_bytes();
        (piece, index)
    }

    /// Index entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
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
        self.range_sum.write(data);
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
        let invalid = |m: String| Error::io(&self.path, io::Error::new(io::ErrorKind::InvalidInput, m));
        let stored_len =
            u32::try_from(stored.len()).map_err(|_| invalid(format!("block {block_index} is larger than 4 GiB")))?;
        // What a reader would refuse is never written.
        check_fields(stored_len, raw_len, flags, self.header.block_size)
            .map_err(|(_, m)| invalid(format!("block {block_index}: {m}")))?;
        if digest.len() != self.header.digest_len() {
            return Err(invalid(format!(
                "block {block_index}: digest of {} bytes",
                digest.len()
            )));
        }
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
        entry.encode(self.header.layout, &mut self.scratch);
        self.index_sum.write(&self.scratch);
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
        let (mut file, hasher, fast) = self.out.finish()?;
        let checksum = hasher.finalize();
        let trailer = encode_trailer(self.header, index_off, self.entries, &checksum, &fast);
        file.write_all(&trailer).map_err(|e| Error::io(&self.path, e))?;
        self.pos += trailer.len() as u64;
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        fs::remove_file(&self.index_path).map_err(|e| Error::io(&self.index_path, e))?;
        Ok(PieceSummary {
            path: self.path,
            size: self.pos,
            checksum,
            fast_checksum: (self.header.layout != Layout::V1).then_some(fast),
            block_count: self.entries,
        })
    }
}

/// `fast` is the XXH3-128 tree (`fast::FastTree`) of the bytes before the trailer.
fn encode_trailer(header: Header, index_off: u64, entries: u64, checksum: &[u8], fast: &[u8; 16]) -> Vec<u8> {
    let len = header.trailer_len() as usize;
    let mut t = Vec::with_capacity(len);
    t.extend_from_slice(Kind::Piece.trailer_magic());
    t.extend_from_slice(&index_off.to_le_bytes());
    t.extend_from_slice(&entries.to_le_bytes());
    // A digest is at most 64 bytes.
    t.push(checksum.len() as u8);
    t.extend_from_slice(&[0u8; 7]);
    match header.layout {
        Layout::V1 => t.extend_from_slice(checksum),
        Layout::V2 | Layout::V3 | Layout::V4 => {
            t.extend_from_slice(fast);
            t.extend_from_slice(checksum);
        }
    }
    t.resize(len, 0);
    t
}

/// Reads a finished piece of any version this build reads.
pub struct PieceReader {
    path: PathBuf,
    file: File,
    header: Header,
    size: u64,
    index_off: u64,
    entry_count: u64,
    checksum: Vec<u8>,
    fast: Option<[u8; 16]>,
}

impl PieceReader {
    /// Opens `path` and checks its header, its trailer and that the index the trailer
    /// describes fits exactly between the data and the trailer.
    pub fn open(path: &Path) -> Result<Self> {
        let Framed {
            file,
            size,
            header,
            trailer: t,
            trailer_at: at,
        } = open_framed(path, Kind::Piece)?;
        let (index_off, entry_count, checksum, fast) = decode_placed_trailer(path, header, &t, at, size)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            header,
            size,
            index_off,
            entry_count,
            checksum,
            fast,
        })
    }

    /// The piece's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The format version the piece was written with.
    pub fn version(&self) -> u32 {
        self.header.layout.version()
    }
    /// Block size the piece was written with.
    pub fn block_size(&self) -> u32 {
        self.header.block_size
    }
    /// Digest algorithm of blocks and trailer.
    pub fn algorithm(&self) -> Algorithm {
        self.header.algorithm
    }
    /// File size.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Number of blocks.
    pub fn block_count(&self) -> u64 {
        self.entry_count
    }
    /// Where the index starts: the end of the data area.
    pub fn index_offset(&self) -> u64 {
        self.index_off
    }
    /// Where the trailer starts: the end of the bytes the checksum covers.
    pub fn trailer_offset(&self) -> u64 {
        self.size - self.header.trailer_len()
    }
    /// Length of the trailer.
    pub fn trailer_len(&self) -> u64 {
        self.header.trailer_len()
    }
    /// The checksum recorded in the trailer.
    pub fn recorded_checksum(&self) -> &[u8] {
        &self.checksum
    }
    /// The XXH3-128 tree (`fast::FastTree`) the trailer records of the bytes before it;
    /// None for a version-1 piece, which has none.
    pub fn recorded_fast_checksum(&self) -> Option<&[u8; 16]> {
        self.fast.as_ref()
    }

    /// Streams the index entries in write order. An entry that cannot describe a block
    /// of this piece is an `Error::Damaged` naming its offset; the stream goes on after it.
    pub fn entries(&self) -> Result<IndexIter<'_>> {
        self.entries_from(0)
    }

    /// `entries` from entry number `first` on (none when it is past the last).
    pub fn entries_from(&self, first: u64) -> Result<IndexIter<'_>> {
        let first = first.min(self.entry_count);
        let mut f = self.file.try_clone().map_err(|e| Error::io(&self.path, e))?;
        let entry_len = self.header.layout.index_entry_len(self.header.digest_len());
        // open() checked index_off + entry_count * entry_len == the trailer's offset.
        f.seek(SeekFrom::Start(self.index_off + first * entry_len))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(IndexIter {
            reader: BufReader::with_capacity(1 << 16, f),
            piece: self,
            next: first,
            // At most 29 + 64 bytes.
            buf: vec![0u8; entry_len as usize],
        })
    }

    /// Reads the stored bytes at `offset` and decodes them (no digest check). The outer
    /// Err is an I/O error (or a file that shrank since `open`); the inner one says why
    /// the block cannot be had: a location outside the data area or fields a block never
    /// has (damage in whatever named the block), or bytes that do not decode.
    pub fn read_raw(
        &self,
        offset: u64,
        stored_len: u32,
        raw_len: u32,
        flags: u8,
    ) -> Result<std::result::Result<Vec<u8>, String>> {
        Ok(self
            .read_stored(offset, stored_len, raw_len, flags)?
            .and_then(|buf| decode_block(buf, raw_len, flags)))
    }

    /// The stored bytes of a block as they lie in the piece (still packed or sealed);
    /// a place outside the data area or fields a reader refuses are an inner Err.
    fn read_stored(
        &self,
        offset: u64,
        stored_len: u32,
        raw_len: u32,
        flags: u8,
    ) -> Result<std::result::Result<Vec<u8>, String>> {
        let end = offset.checked_add(u64::from(stored_len));
        if offset < HEADER_LEN || end.is_none_or(|e| e > self.index_off) {
            return Ok(Err(format!(
                "{stored_len} bytes at {offset} lie outside the data area {HEADER_LEN}..{} of the piece",
                self.index_off
            )));
        }
        if let Err((_, m)) = check_fields(stored_len, raw_len, flags, self.header.block_size) {
            return Ok(Err(m));
        }
        // check_fields bounds stored_len by the block size (plus the seal's overhead
        // when sealed): a bounded allocation.
        let mut buf = vec![0u8; stored_len as usize];
        read_exact_at(&self.file, &self.path, &mut buf, offset)?;
        Ok(Ok(buf))
    }

    /// `read_raw` of a block that may be sealed: opens it with `key` (the piece's keys,
    /// `crypto::BlockKey`) first. A failed tag is an inner Err, like bytes that do not
    /// decode.
    pub fn read_raw_keyed(
        &self,
        key: Option<&crate::crypto::BlockKey>,
        offset: u64,
        stored_len: u32,
        raw_len: u32,
        flags: u8,
        digest: &[u8],
    ) -> Result<std::result::Result<Vec<u8>, String>> {
        if flags & super::block::FLAG_SEALED == 0 {
            return self.read_raw(offset, stored_len, raw_len, flags);
        }
        Ok(self
            .read_stored(offset, stored_len, raw_len, flags)?
            .and_then(|buf| super::block::unseal_block(key, offset, buf, raw_len, flags, digest)))
    }

    /// Reads `recs`, blocks stored as they are (neither packed nor sealed) that lie back to
    /// back in this piece, into `buf` with one read of at most `max_len` bytes, and checks
    /// each against its digest. None when they do not qualify or anything is wrong with
    /// them (a place outside the data area, a field, a digest, a short file): the caller
    /// then reads them one by one, which names the block and what is wrong.
    pub fn read_plain_run(&self, recs: &[BlockRecord], max_len: u64, buf: &mut Vec<u8>) -> Option<()> {
        let first = recs.first()?;
        let mut end = first.offset;
        for r in recs {
            let plain = r.flags == 0 && r.source == first.source && r.offset == end;
            if !plain || check_fields(r.stored_len, r.raw_len, r.flags, self.header.block_size).is_err() {
                return None;
            }
            end = end.checked_add(u64::from(r.stored_len))?;
        }
        let len = end - first.offset;
        if first.offset < HEADER_LEN || end > self.index_off || len > max_len {
            return None;
        }
        // A reused buffer of this length is not filled again.
        buf.resize(usize::try_from(len).ok()?, 0);
        read_exact_at(&self.file, &self.path, buf, first.offset).ok()?;
        let mut at = 0usize;
        for r in recs {
            let block = &buf[at..at + r.stored_len as usize];
            at += block.len();
            if stored_mismatch(self.header.algorithm, block, r.raw_len, 0, &r.digest).is_some() {
                return None;
            }
        }
        Some(())
    }

    /// Lets the page cache drop `[offset, offset + len)`, read once and not again.
    pub fn drop_cached(&self, offset: u64, len: u64) {
        crate::io_hints::drop_read(&self.file, offset, len);
    }

    /// Reads one block and checks its digest; `file` names the block's file in errors.
    pub fn read_verified(&self, entry: &IndexEntry, file: &str) -> std::result::Result<Vec<u8>, BlockError> {
        let raw = self.read_raw(entry.offset, entry.stored_len, entry.raw_len, entry.flags)?;
        check_block(self.header.algorithm, raw, &entry.digest).map_err(|actual| BlockError::Corrupt {
            piece: self.path.clone(),
            file: file.to_string(),
            block_index: entry.block_index,
            offset: entry.offset,
            expected: to_hex(&entry.digest),
            actual,
        })
    }

    /// Re-hashes everything before the trailer; `on_chunk(n)` after each step, `Break`
    /// stops (`Ok(None)`).
    pub fn checksum_with(&self, on_chunk: &mut dyn FnMut(u64) -> ControlFlow<()>) -> Result<Option<Vec<u8>>> {
        hash_prefix(
            &self.file,
            &self.path,
            self.header.algorithm,
            self.trailer_offset(),
            on_chunk,
        )
    }

    /// Checks the trailer checksum; `Error::Checksum` when the bytes changed.
    pub fn verify_checksum(&self) -> Result<()> {
        let actual = self
            .checksum_with(&mut |_| ControlFlow::Continue(()))?
            .unwrap_or_default();
        if actual != self.checksum {
            return Err(Error::Checksum {
                path: self.path.clone(),
                covered: self.trailer_offset(),
                expected: to_hex(&self.checksum),
                actual: to_hex(&actual),
            });
        }
        self.verify_fast_checksum()
    }

    /// Checks the trailer's XXH3-128 (a version-2 piece; nothing to check in version 1);
    /// `Error::Checksum` when the bytes changed.
    pub fn verify_fast_checksum(&self) -> Result<()> {
        let Some(recorded) = self.fast else {
            return Ok(());
        };
        let end = self.trailer_offset();
        let actual = crate::scan::parallel::in_pool(|| {
            tree_of_file(&self.file, &self.path, end, &|_| ControlFlow::Continue(()))
        })?
        .unwrap_or_default();
        if actual != recorded {
            return Err(Error::Checksum {
                path: self.path.clone(),
                covered: end,
                expected: format!("xxh3-128:{}", to_hex(&recorded)),
                actual: format!("xxh3-128:{}", to_hex(&actual)),
            });
        }
        Ok(())
    }
}

/// Where the data area of a piece ends (its index starts), for a piece read by ranges
/// (an object in a bucket: storage/restore.rs) and known only by its checked `header`,
/// its `size` and the `trailer` bytes at its end; the checks of `PieceReader::open`.
pub fn data_area_end(path: &Path, header: Header, size: u64, trailer: &[u8]) -> Result<u64> {
    let tlen = header.trailer_len();
    if size < HEADER_LEN + tlen || trailer.len() as u64 != tlen {
        return Err(Error::damaged(
            path,
            size,
            format!("truncated piece ({size} bytes, no room for a {tlen}-byte trailer)"),
        ));
    }
    let at = size - tlen;
    let (index_off, _, _, _) = decode_placed_trailer(path, header, trailer, at, size)?;
    Ok(index_off)
}

/// What a trailer records: index offset, entry count, checksum, XXH3-128 (version 2 on).
type Trailer = (u64, u64, Vec<u8>, Option<[u8; 16]>);

/// `decode_trailer`, then the check that the index it describes fits exactly between
/// the data and the trailer at `at` of a `size`-byte piece.
fn decode_placed_trailer(path: &Path, header: Header, t: &[u8], at: u64, size: u64) -> Result<Trailer> {
    let trailer = decode_trailer(path, header, t, at)?;
    let (index_off, entry_count) = (trailer.0, trailer.1);
    let entry_len = header.layout.index_entry_len(header.digest_len());
    let index_end = entry_count
        .checked_mul(entry_len)
        .and_then(|n| n.checked_add(index_off));
    if index_off < HEADER_LEN || index_end != Some(at) {
        return Err(Error::damaged(
            path,
            at + 8,
            format!(
                "trailer places {entry_count} index entries at {index_off}, which does not fit a {size}-byte piece"
            ),
        ));
    }
    Ok(trailer)
}

fn decode_trailer(path: &Path, header: Header, t: &[u8], at: u64) -> Result<Trailer> {
    if &t[..8] != Kind::Piece.trailer_magic() {
        return Err(Error::damaged(
            path,
            at,
            "bad trailer magic (truncated or overwritten piece)",
        ));
    }
    let index_off = u64_at(t, 8);
    let entry_count = u64_at(t, 16);
    let clen = usize::from(t[24]);
    if clen != header.digest_len() {
        return Err(Error::damaged(
            path,
            at + 24,
            format!("trailer checksum length {clen} is wrong"),
        ));
    }
    check_zero(path, t, 25..32, at)?;
    // Where the checksum starts: version 2 puts the XXH3-128 first.
    let (sum_at, fast) = match header.layout {
        Layout::V1 => (32, None),
        Layout::V2 | Layout::V3 | Layout::V4 => {
            let mut f = [0u8; 16];
            f.copy_from_slice(&t[32..48]);
            (48, Some(f))
        }
    };
    check_zero(path, t, sum_at + clen..sum_at + MAX_DIGEST, at)?;
    Ok((index_off, entry_count, t[sum_at..sum_at + clen].to_vec(), fast))
}

/// Padding must stay zero: anything else is damage (or a version this build does not know).
pub(crate) fn check_zero(path: &Path, t: &[u8], range: std::ops::Range<usize>, at: u64) -> Result<()> {
    let start = range.start;
    match t.get(range).and_then(|r| r.iter().position(|&b| b != 0)) {
        Some(i) => Err(Error::damaged(
            path,
            at + (start + i) as u64,
            "trailer padding byte is not zero",
        )),
        None => Ok(()),
    }
}

/// Why a block could not be returned: the piece is damaged there, or its bytes do not
/// hash to the recorded digest.
#[derive(Debug)]
pub enum BlockError {
    /// Structure or I/O (the block lies outside the data area, the file is unreadable).
    Format(Error),
    /// The block's bytes do not decode or do not hash to the recorded digest.
    Corrupt {
        /// The piece.
        piece: PathBuf,
        /// The block's file (relative path).
        file: String,
        /// Block number in that file.
        block_index: u64,
        /// Offset of the stored bytes.
        offset: u64,
        /// Hex digest recorded.
        expected: String,
        /// Hex digest of what was read, or why it did not decode.
        actual: String,
    },
}

impl From<Error> for BlockError {
    fn from(e: Error) -> Self {
        Self::Format(e)
    }
}

/// Streams a piece's index entries, checking each.
pub struct IndexIter<'a> {
    reader: BufReader<File>,
    piece: &'a PieceReader,
    next: u64,
    buf: Vec<u8>,
}

impl Iterator for IndexIter<'_> {
    type Item = Result<IndexEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        let p = self.piece;
        if self.next >= p.entry_count {
            return None;
        }
        // open() checked index_off + entry_count * entry_len == trailer offset.
        let at = p.index_off + self.next * self.buf.len() as u64;
        self.next += 1;
        if let Err(e) = self.reader.read_exact(&mut self.buf) {
            // The file shrank since open(): nothing after this entry can be read either.
            self.next = p.entry_count;
            return Some(Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::damaged(&p.path, at, "index ends early (the piece changed while read?)")
            } else {
                Error::io(&p.path, e)
            }));
        }
        Some(
            IndexEntry::decode(p.header.layout, &self.buf, p.header.block_size, p.index_off).map_err(|(field, m)| {
                Error::damaged(&p.path, at + field, format!("index entry {}: {m}", self.next - 1))
            }),
        )
    }
}
