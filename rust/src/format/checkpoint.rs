//! The checkpoint journal of a backup in progress (`staging/<id>/checkpoint`,
//! docs/FORMAT.md "Checkpoint"): which files the piece being written already holds in
//! full, where their bytes and index entries lie, and what the files looked like, so a
//! backup cut short (max_duration, a crash, a lost source) can be resumed without reading
//! them again. It is never published: a finished backup removes it.
//!
//! The journal only grows. A record is appended (and fsynced) only after the piece bytes
//! and index entries it describes are durable, so every record that reads back intact
//! describes bytes that were on disk when it was written. A record cut by a crash fails
//! its checksum and ends the journal there; nothing after it is read.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use twox_hash::xxhash3_128::Hasher as Xxh3;

use super::blockmap::BlockRecord;
use super::error::{Error, Result};
use super::header::{u32_at, u64_at, MAX_DIGEST};
use super::read::read_exact_at;
use crate::scan::algorithm::Algorithm;

/// First bytes of a journal.
const MAGIC: &[u8; 8] = b"RBCKPT\0\0";
/// The journal version this build writes and the only one it reads (a journal is never
/// older than the run that wrote it plus a few days; an unknown one is discarded).
pub const CHECKPOINT_VERSION: u32 = 1;
/// Header: magic, version, settings, the parent map's checksum, the header's XXH3-128.
pub const CHECKPOINT_HEADER_LEN: usize = 112;
/// Bound on one record's payload (a path is at most `MAX_PATH` bytes).
const MAX_RECORD: u32 = 1 << 16;
/// Longest file path a record holds (Linux's PATH_MAX is 4096).
pub const MAX_PATH: usize = 16 << 10;

/// What a resumed pass must share with the one that wrote the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Block digest algorithm.
    pub algorithm: Algorithm,
    /// Block size.
    pub block_size: u32,
    /// zstd level, if blocks are compressed.
    pub zstd_level: Option<i32>,
    /// The set's own index in its `sources`.
    pub self_source: u32,
    /// The parent block map's recorded checksum (None for a map without a parent).
    pub parent_sum: Option<Vec<u8>>,
}

/// What identifies an unchanged file: where it lives and when it last changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Inode change time (a `touch -d` back to the old mtime still moves it).
    pub ctime: (i64, i64),
}

impl Identity {
    /// The identity of a file as `stat` sees it.
    pub fn of(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// One finished file of the piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// Its number in the pass (the piece index's `file_no`).
    pub file_no: u32,
    /// The path it was read from.
    pub path: PathBuf,
    /// Its identity after it was read.
    pub identity: Identity,
    /// The parent map's range for it, as the pass was told.
    pub parent: Option<(u64, u64)>,
    /// Bytes read.
    pub size: u64,
    /// Digest of the whole file.
    pub digest: Vec<u8>,
    /// Its first record in the block map.
    pub first_block: u64,
    /// Its number of blocks.
    pub block_count: u64,
    /// It changed while it was read (never adopted: a new read is a better copy).
    pub changed: bool,
    /// Its bytes in the piece: `piece_start..piece_end`.
    pub piece_start: u64,
    /// End of its bytes in the piece.
    pub piece_end: u64,
    /// Its index entries: `entries_start..entries_end` of the piece's index.
    pub entries_start: u64,
    /// End of its index entries.
    pub entries_end: u64,
    /// XXH3-128 of its piece bytes.
    pub piece_sum: [u8; 16],
    /// XXH3-128 of its encoded index entries.
    pub index_sum: [u8; 16],
    /// Its block-map operations: `map_start..map_end` of the map log (`MapLog`).
    pub map_start: u64,
    /// End of its block-map operations.
    pub map_end: u64,
    /// XXH3-128 of its block-map operations.
    pub map_sum: [u8; 16],
}

/// Fixed part of a record's payload, without path and digest.
const FIXED: usize = 4 + 4 + 7 * 8 + 1 + 16 + 24 + 1 + 32 + 32 + 16 + 16;

impl FileRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        let path = self.path.as_os_str().as_bytes();
        let start = out.len();
        out.extend_from_slice(&[0u8; 4]);
        out.extend_from_slice(&self.file_no.to_le_bytes());
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path);
        let id = &self.identity;
        for v in [id.dev, id.ino, id.size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [id.mtime.0, id.mtime.1, id.ctime.0, id.ctime.1] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let (has, first, count) = match self.parent {
            Some((f, c)) => (1u8, f, c),
            None => (0, 0, 0),
        };
        out.push(has);
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        for v in [self.size, self.first_block, self.block_count] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(u8::from(self.changed));
        out.extend_from_slice(&self.digest);
        for v in [self.piece_start, self.piece_end, self.entries_start, self.entries_end] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.piece_sum);
        out.extend_from_slice(&self.index_sum);
        out.extend_from_slice(&self.map_start.to_le_bytes());
        out.extend_from_slice(&self.map_end.to_le_bytes());
        out.extend_from_slice(&self.map_sum);
        // The caller bounded the path, so the payload fits a u32.
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        let sum = Xxh3::oneshot(&out[start..]).to_be_bytes();
        out.extend_from_slice(&sum);
    }

    /// Decodes a payload whose checksum matched; Err is (offset inside the payload, what).
    fn decode(p: &[u8], digest_len: usize) -> std::result::Result<Self, (usize, String)> {
        let short = |at: usize| (at, format!("record of {} bytes ends early", p.len()));
        if p.len() < 8 {
            return Err(short(0));
        }
        let file_no = u32_at(p, 0);
        let path_len = u32_at(p, 4) as usize;
        if path_len > MAX_PATH {
            return Err((4, format!("path of {path_len} bytes (at most {MAX_PATH})")));
        }
        if p.len() != FIXED + path_len + digest_len {
            return Err(short(4));
        }
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(&p[8..8 + path_len]));
        let mut at = 8 + path_len;
        let mut u = || {
            let v = u64_at(p, at);
            at += 8;
            v
        };
        let (dev, ino, size_at) = (u(), u(), u());
        let mtime = (u() as i64, u() as i64);
        let ctime = (u() as i64, u() as i64);
        let has = p[at];
        at += 1;
        let mut u = || {
            let v = u64_at(p, at);
            at += 8;
            v
        };
        let (first, count) = (u(), u());
        let (size, first_block, block_count) = (u(), u(), u());
        let parent = match has {
            0 => None,
            1 => Some((first, count)),
            b => return Err((at - 41, format!("parent flag {b} is neither 0 nor 1"))),
        };
        let changed = match p[at] {
            0 => false,
            1 => true,
            b => return Err((at, format!("changed flag {b} is neither 0 nor 1"))),
        };
        at += 1;
        let digest = p[at..at + digest_len].to_vec();
        at += digest_len;
        let mut u = || {
            let v = u64_at(p, at);
            at += 8;
            v
        };
        let (piece_start, piece_end, entries_start, entries_end) = (u(), u(), u(), u());
        let mut piece_sum = [0u8; 16];
        piece_sum.copy_from_slice(&p[at..at + 16]);
        let mut index_sum = [0u8; 16];
        index_sum.copy_from_slice(&p[at + 16..at + 32]);
        let (map_start, map_end) = (u64_at(p, at + 32), u64_at(p, at + 40));
        let mut map_sum = [0u8; 16];
        map_sum.copy_from_slice(&p[at + 48..at + 64]);
        if piece_end < piece_start || entries_end < entries_start || map_end < map_start {
            return Err((at - 32, "a range ends before it starts".into()));
        }
        Ok(Self {
            file_no,
            path,
            identity: Identity {
                dev,
                ino,
                size: size_at,
                mtime,
                ctime,
            },
            parent,
            size,
            digest,
            first_block,
            block_count,
            changed,
            piece_start,
            piece_end,
            entries_start,
            entries_end,
            piece_sum,
            index_sum,
            map_start,
            map_end,
            map_sum,
        })
    }
}

fn encode_header(s: &Settings) -> [u8; CHECKPOINT_HEADER_LEN] {
    let mut h = [0u8; CHECKPOINT_HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&s.block_size.to_le_bytes());
    h[16] = super::header::algorithm_code(s.algorithm);
    // Digest sizes are at most 64.
    h[17] = s.algorithm.digest_size() as u8;
    h[18] = u8::from(s.zstd_level.is_some());
    h[19] = u8::from(s.parent_sum.is_some());
    h[20..24].copy_from_slice(&s.zstd_level.unwrap_or(0).to_le_bytes());
    h[24..28].copy_from_slice(&s.self_source.to_le_bytes());
    if let Some(sum) = &s.parent_sum {
        let n = sum.len().min(MAX_DIGEST);
        h[32..32 + n].copy_from_slice(&sum[..n]);
    }
    let sum = Xxh3::oneshot(&h[..96]).to_be_bytes();
    h[96..].copy_from_slice(&sum);
    h
}

fn decode_header(path: &Path, h: &[u8; CHECKPOINT_HEADER_LEN]) -> Result<Settings> {
    let bad = |at: u64, m: String| Error::damaged(path, at, m);
    if &h[..8] != MAGIC {
        return Err(bad(0, "not a checkpoint journal (bad magic)".into()));
    }
    if Xxh3::oneshot(&h[..96]).to_be_bytes() != h[96..] {
        return Err(bad(96, "checkpoint header checksum mismatch".into()));
    }
    let version = u32_at(h, 8);
    if version != CHECKPOINT_VERSION {
        return Err(bad(
            8,
            format!("checkpoint version {version} is not supported (this build reads {CHECKPOINT_VERSION})"),
        ));
    }
    let algorithm = super::header::algorithm_from_code(h[16])
        .ok_or_else(|| bad(16, format!("unknown algorithm code {}", h[16])))?;
    let zstd_level = (h[18] == 1).then(|| u32_at(h, 20) as i32);
    let parent_sum = (h[19] == 1).then(|| h[32..32 + algorithm.digest_size()].to_vec());
    Ok(Settings {
        algorithm,
        block_size: u32_at(h, 12),
        zstd_level,
        self_source: u32_at(h, 24),
        parent_sum,
    })
}

/// A journal read back: its settings and the intact records, in order.
#[derive(Clone, Debug)]
pub struct Journal {
    /// What the pass that wrote it used.
    pub settings: Settings,
    /// The intact records, oldest first.
    pub records: Vec<FileRecord>,
    /// Journal length after each record (where an append after it goes).
    pub ends: Vec<u64>,
    /// Why reading stopped before the end of the file, if it did (a torn last record).
    pub stopped: Option<String>,
}

impl Journal {
    /// Reads `path`. A damaged header is an error; a damaged or torn record ends the
    /// journal there (`stopped` says where and why), since nothing after it can be trusted.
    pub fn read(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut r = BufReader::with_capacity(1 << 16, file);
        let mut h = [0u8; CHECKPOINT_HEADER_LEN];
        if size < CHECKPOINT_HEADER_LEN as u64 {
            return Err(Error::damaged(path, size, "checkpoint journal has no complete header"));
        }
        r.read_exact(&mut h).map_err(|e| Error::io(path, e))?;
        let settings = decode_header(path, &h)?;
        let digest_len = settings.algorithm.digest_size();
        let mut records = Vec::new();
        let mut ends = Vec::new();
        let mut pos = CHECKPOINT_HEADER_LEN as u64;
        let mut stopped = None;
        let mut buf = Vec::new();
        while pos < size {
            let left = size - pos;
            let mut len_b = [0u8; 4];
            if left < 4 + 16 {
                stopped = Some(format!("torn record at offset {pos}"));
                break;
            }
            r.read_exact(&mut len_b).map_err(|e| Error::io(path, e))?;
            let len = u32::from_le_bytes(len_b);
            // Bounded before anything is allocated.
            if len > MAX_RECORD || u64::from(len) + 4 + 16 > left {
                stopped = Some(format!("record length {len} at offset {pos} does not fit the journal"));
                break;
            }
            buf.clear();
            buf.extend_from_slice(&len_b);
            buf.resize(4 + len as usize + 16, 0);
            r.read_exact(&mut buf[4..]).map_err(|e| Error::io(path, e))?;
            let (body, sum) = buf.split_at(4 + len as usize);
            if Xxh3::oneshot(body).to_be_bytes() != sum {
                stopped = Some(format!("record at offset {pos}: checksum mismatch"));
                break;
            }
            match FileRecord::decode(&body[4..], digest_len) {
                Ok(rec) => records.push(rec),
                Err((at, m)) => {
                    stopped = Some(format!("record at offset {}: {m}", pos + 4 + at as u64));
                    break;
                }
            }
            pos += 4 + u64::from(len) + 16;
            ends.push(pos);
        }
        Ok(Self {
            settings,
            records,
            ends,
            stopped,
        })
    }
}

/// Appends records to a journal; `commit` makes the appended ones durable.
pub struct JournalWriter {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
    pending_n: usize,
}

impl JournalWriter {
    /// Creates (or replaces) the journal at `path` with `settings`, durably.
    pub fn create(path: &Path, settings: &Settings) -> Result<Self> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        file.write_all(&encode_header(settings))
            .map_err(|e| Error::io(path, e))?;
        file.sync_data().map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            pending: Vec::new(),
            pending_n: 0,
        })
    }

    /// Reopens a journal read with `Journal::read` to append after its first `len`
    /// bytes (what follows them, a torn record or records no longer adopted, goes).
    pub fn append_at(path: &Path, len: u64) -> Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        file.set_len(len).map_err(|e| Error::io(path, e))?;
        file.sync_data().map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            pending: Vec::new(),
            pending_n: 0,
        })
    }

    /// Queues a record; it is written by the next `commit`.
    pub fn add(&mut self, rec: &FileRecord) -> Result<()> {
        if rec.path.as_os_str().len() > MAX_PATH {
            // Not journaled: the files after it cannot be adopted either, which is safe.
            return Err(Error::io(
                &self.path,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("path {} is longer than {MAX_PATH} bytes", rec.path.display()),
                ),
            ));
        }
        rec.encode(&mut self.pending);
        self.pending_n += 1;
        Ok(())
    }

    /// Records queued since the last commit.
    pub fn pending(&self) -> usize {
        self.pending_n
    }

    /// Bytes of the records queued since the last commit.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Writes the queued records and fsyncs. Call only once the piece bytes and index
    /// entries they describe are durable.
    pub fn commit(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(&self.pending)
            .map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))?;
        self.pending.clear();
        self.pending_n = 0;
        Ok(())
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The map log of a journal (`<journal>.maplog`).
pub fn map_log_path(journal: &Path) -> PathBuf {
    journal.with_extension("maplog")
}

/// One step of building a block map: `count` parent records from `first`, or a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    /// The parent map's records `first .. first + count`, in order.
    Parent {
        /// The first.
        first: u64,
        /// How many.
        count: u64,
    },
    /// One record (a block stored by this set, or a reference to a stored one).
    Record(BlockRecord),
    /// `count` blocks of a hole, the last `last_len` bytes long (a version-3 map).
    Holes {
        /// How many.
        count: u64,
        /// Raw length of the last.
        last_len: u32,
    },
    /// This map's own records `first .. first + count`, in order (a version-4 copy run).
    Copy {
        /// The first.
        first: u64,
        /// How many.
        count: u64,
    },
}

const OP_RECORD: u8 = 1;
const OP_PARENT: u8 = 2;
const OP_HOLES: u8 = 3;
const OP_COPY: u8 = 4;

/// The operations a pass applies to its block map, logged so that a resumed pass can
/// apply the adopted files' operations again and get the same map (whatever decided
/// them: the parent's digests, an unchanged file, a duplicate block). Tag 1: a record
/// (source u32, offset u64, stored_len u32, raw_len u32, flags u8, digest); tag 2: a
/// run of parent records (first u64, count u64), consecutive ones joined; tag 3: blocks
/// of a hole (count u64, raw length of the last u32); tag 4: a run of this map's own
/// earlier records (first u64, count u64), consecutive ones joined.
pub struct MapLog {
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    sum: Xxh3,
    /// The run being joined: (tag, first, count), tag `OP_PARENT` or `OP_COPY`.
    run: Option<(u8, u64, u64)>,
}

impl MapLog {
    /// Creates (or empties) the log at `path`.
    pub fn create(path: &Path) -> Result<Self> {
        Self::open_at(path, 0)
    }

    /// Reopens the log at `path` to append after its first `len` bytes.
    pub fn open_at(path: &Path, len: u64) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(len == 0)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        file.set_len(len).map_err(|e| Error::io(path, e))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        io::Seek::seek(&mut out, io::SeekFrom::Start(len)).map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            out,
            pos: len,
            sum: Xxh3::new(),
            run: None,
        })
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b).map_err(|e| Error::io(&self.path, e))?;
        self.sum.write(b);
        self.pos += b.len() as u64;
        Ok(())
    }

    fn close_run(&mut self) -> Result<()> {
        if let Some((tag, first, count)) = self.run.take() {
            let mut b = [0u8; 17];
            b[0] = tag;
            b[1..9].copy_from_slice(&first.to_le_bytes());
            b[9..].copy_from_slice(&count.to_le_bytes());
            self.put(&b)?;
        }
        Ok(())
    }

    /// Logs a record.
    pub fn record(&mut self, r: &BlockRecord) -> Result<()> {
        self.close_run()?;
        let mut b = Vec::with_capacity(22 + r.digest.len());
        b.push(OP_RECORD);
        b.extend_from_slice(&r.source.to_le_bytes());
        b.extend_from_slice(&r.offset.to_le_bytes());
        b.extend_from_slice(&r.stored_len.to_le_bytes());
        b.extend_from_slice(&r.raw_len.to_le_bytes());
        b.push(r.flags);
        b.extend_from_slice(&r.digest);
        self.put(&b)
    }

    /// Logs `count` blocks of a hole, the last `last_len` bytes long.
    pub fn holes(&mut self, count: u64, last_len: u32) -> Result<()> {
        self.close_run()?;
        let mut b = [0u8; 13];
        b[0] = OP_HOLES;
        b[1..9].copy_from_slice(&count.to_le_bytes());
        b[9..].copy_from_slice(&last_len.to_le_bytes());
        self.put(&b)
    }

    /// Logs the parent's record `n`.
    pub fn parent(&mut self, n: u64) -> Result<()> {
        self.join(OP_PARENT, n)
    }

    /// Logs this map's own record `n` (a copy).
    pub fn copy(&mut self, n: u64) -> Result<()> {
        self.join(OP_COPY, n)
    }

    fn join(&mut self, op: u8, n: u64) -> Result<()> {
        match &mut self.run {
            Some((tag, first, count)) if *tag == op && first.checked_add(*count) == Some(n) => *count += 1,
            _ => {
                self.close_run()?;
                self.run = Some((op, n, 1));
            }
        }
        Ok(())
    }

    /// Ends a file's operations: returns where the log ends and the XXH3-128 of what was
    /// logged since the previous mark.
    pub fn mark(&mut self) -> Result<(u64, [u8; 16])> {
        self.close_run()?;
        Ok((self.pos, std::mem::take(&mut self.sum).finish_128().to_be_bytes()))
    }

    /// Makes everything logged so far durable.
    pub fn sync(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))?;
        self.out.get_ref().sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

/// Calls `f` with each operation logged in `start..end` of the map log `file` (named
/// `path`), records checked against `block_size`; returns the XXH3-128 of the range.
pub fn read_map_ops(
    file: &File,
    path: &Path,
    (start, end): (u64, u64),
    digest_len: usize,
    block_size: u32,
    mut f: impl FnMut(MapOp) -> std::result::Result<(), String>,
) -> std::result::Result<[u8; 16], String> {
    const STEP: u64 = 1 << 20;
    let rec_len = 21 + digest_len;
    let mut sum = Xxh3::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut at = start;
    let mut used = 0usize;
    while at < end || used < buf.len() {
        // Keep at least one whole operation in the buffer.
        if buf.len() - used < 1 + rec_len && at < end {
            buf.drain(..used);
            used = 0;
            let n = (end - at).min(STEP) as usize;
            let old = buf.len();
            buf.resize(old + n, 0);
            read_exact_at(file, path, &mut buf[old..], at).map_err(|e| e.to_string())?;
            sum.write(&buf[old..]);
            at += n as u64;
        }
        let b = &buf[used..];
        let here = at - (buf.len() - used) as u64;
        let (op, len) = match b[0] {
            OP_PARENT if b.len() >= 17 => (
                MapOp::Parent {
                    first: u64_at(b, 1),
                    count: u64_at(b, 9),
                },
                17,
            ),
            OP_COPY if b.len() >= 17 => (
                MapOp::Copy {
                    first: u64_at(b, 1),
                    count: u64_at(b, 9),
                },
                17,
            ),
            OP_HOLES if b.len() >= 13 => (
                MapOp::Holes {
                    count: u64_at(b, 1),
                    last_len: u32::from_le_bytes([b[9], b[10], b[11], b[12]]),
                },
                13,
            ),
            OP_RECORD if b.len() > rec_len => {
                let r = BlockRecord::decode(super::header::Layout::V1, &b[1..=rec_len], block_size)
                    .map_err(|(off, m)| format!("{}: {m} (at offset {})", path.display(), here + 1 + off))?;
                (MapOp::Record(r), 1 + rec_len)
            }
            t => {
                return Err(format!(
                    "{}: map log operation {t} cut short or unknown (at offset {here})",
                    path.display()
                ))
            }
        };
        used += len;
        f(op)?;
    }
    Ok(sum.finish_128().to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("rb-ckpt-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    fn settings() -> Settings {
        Settings {
            algorithm: Algorithm::Blake3,
            block_size: 4096,
            zstd_level: Some(3),
            self_source: 2,
            parent_sum: Some(vec![7u8; 32]),
        }
    }

    fn record(i: u32) -> FileRecord {
        FileRecord {
            file_no: i,
            path: PathBuf::from(format!("/src/dir/file-{i}")),
            identity: Identity {
                dev: 1,
                ino: 100 + u64::from(i),
                size: 5000,
                mtime: (1_700_000_000, 123),
                ctime: (-5, 999_999_999),
            },
            parent: (i % 2 == 0).then_some((u64::from(i) * 2, 2)),
            size: 5000,
            digest: vec![i as u8; 32],
            first_block: u64::from(i) * 2,
            block_count: 2,
            changed: i == 3,
            piece_start: 32 + u64::from(i) * 10,
            piece_end: 42 + u64::from(i) * 10,
            entries_start: u64::from(i),
            entries_end: u64::from(i) + 1,
            piece_sum: [i as u8; 16],
            index_sum: [0xA5; 16],
            map_start: u64::from(i) * 40,
            map_end: u64::from(i) * 40 + 40,
            map_sum: [0x5A; 16],
        }
    }

    #[test]
    fn records_round_trip_and_only_committed_ones_are_read() {
        let p = temp("roundtrip");
        let mut w = JournalWriter::create(&p, &settings()).unwrap();
        for i in 0..5 {
            w.add(&record(i)).unwrap();
        }
        w.commit().unwrap();
        w.add(&record(5)).unwrap();
        drop(w); // never committed
        let j = Journal::read(&p).unwrap();
        assert_eq!(j.settings, settings());
        assert_eq!(j.records, (0..5).map(record).collect::<Vec<_>>());
        assert_eq!(j.stopped, None);
        assert_eq!(*j.ends.last().unwrap(), std::fs::metadata(&p).unwrap().len());
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn every_torn_or_flipped_tail_ends_the_journal_at_the_last_intact_record() {
        let p = temp("torn");
        let mut w = JournalWriter::create(&p, &settings()).unwrap();
        for i in 0..3 {
            w.add(&record(i)).unwrap();
        }
        w.commit().unwrap();
        let whole = std::fs::read(&p).unwrap();
        let j = Journal::read(&p).unwrap();
        let (e0, e1) = (j.ends[0] as usize, j.ends[1] as usize);
        // Every cut inside the third record keeps two.
        for cut in e1..whole.len() {
            std::fs::write(&p, &whole[..cut]).unwrap();
            let j = Journal::read(&p).unwrap();
            assert_eq!(j.records.len(), 2, "cut at {cut}");
            assert_eq!(j.stopped.is_some(), cut > e1, "cut at {cut}");
        }
        // Every flipped byte of the second record ends the journal after the first.
        for at in e0..e1 {
            let mut b = whole.clone();
            b[at] ^= 0x40;
            std::fs::write(&p, &b).unwrap();
            let j = Journal::read(&p).unwrap();
            assert_eq!(j.records.len(), 1, "flip at {at}");
            assert!(j.stopped.is_some());
        }
        // A flipped header byte is an error naming the file.
        for at in 0..CHECKPOINT_HEADER_LEN {
            let mut b = whole.clone();
            b[at] ^= 1;
            std::fs::write(&p, &b).unwrap();
            let e = Journal::read(&p).unwrap_err().to_string();
            assert!(e.contains(&p.display().to_string()), "{e}");
        }
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn appending_after_a_prefix_drops_what_followed() {
        let p = temp("append");
        let mut w = JournalWriter::create(&p, &settings()).unwrap();
        for i in 0..4 {
            w.add(&record(i)).unwrap();
        }
        w.commit().unwrap();
        let j = Journal::read(&p).unwrap();
        let mut w = JournalWriter::append_at(&p, j.ends[1]).unwrap();
        w.add(&record(9)).unwrap();
        w.commit().unwrap();
        let j = Journal::read(&p).unwrap();
        assert_eq!(j.records, vec![record(0), record(1), record(9)]);
        std::fs::remove_file(&p).unwrap();
    }
}
