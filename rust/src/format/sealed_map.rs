//! Sealed block maps (docs/FORMAT.md "Sealed block map"): in an encrypted repository a
//! set's `blockmap` is its plain map's bytes (any version) cut into frames of
//! `FRAME_LEN` bytes, each an XChaCha20-Poly1305 message whose associated data binds the
//! map's name (`<set id>/blockmap`), the frame's index and whether it is the last, so a
//! frame moved, dropped, swapped with another map's or cut off the end fails its tag.
//! Frames have one stored size (the last may be shorter), so a reader finds the frame of
//! any plain offset by arithmetic and keeps one frame decrypted per map: the run cursors
//! of `blockmap_runs` read the plain bytes as before, memory stays flat in the map's size.
//!
//! The container's own header and trailer are in the clear and its trailer checksum covers
//! every stored byte, so QUICK and STANDARD check a sealed map without any key.
//!
//! Keys: the Python side (`keys.py`) derives a set's map key from its manifest key (a
//! write-only host recovers that for its own sets, so its incrementals read their parent's
//! map) and hands it over once per process: `register_read_key` for reading (found by the
//! key id in the container's header, so two repositories in one process never mix keys)
//! and `set_write_key` for the set a backup is writing (found by its set id). A map is
//! sealed when, and only when, a write key is set for its set: unencrypted repositories
//! write exactly what they wrote before.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::error::{Error, Result};
use super::header::{algorithm_code, algorithm_from_code, MAX_DIGEST};
use super::read::read_exact_at;
use crate::crypto::{self, KEY_LEN, OVERHEAD};
use crate::scan::algorithm::{Algorithm, Hasher};

/// First bytes of a sealed map.
pub const MAGIC: &[u8; 8] = b"RBBMSEAL";
/// First bytes of its trailer.
pub const TRAILER_MAGIC: &[u8; 8] = b"RBBMSEND";
/// The container's version.
pub const VERSION: u32 = 1;
/// Header: magic, version u32, frame_len u32, algorithm u8, digest_len u8, 6 zero bytes,
/// key id (16), 8 zero bytes.
pub const SEALED_HEADER_LEN: u64 = 48;
/// Trailer: magic, plain_len u64, frame_count u64, checksum_len u8, 7 zero bytes,
/// checksum (64, zero-padded).
pub const SEALED_TRAILER_LEN: u64 = 96;
/// Plain bytes per frame: a map's run cursor reads 4 KiB windows and a record stream
/// 64 KiB steps, so 16 KiB frames cost 0.25% of the map in tags and nonces and one frame
/// of memory per map of a chain (3 MiB at 200 maps).
pub const FRAME_LEN: u32 = 16 << 10;
/// Largest frame a reader accepts (bounds its one allocation).
const MAX_FRAME_LEN: u32 = 1 << 20;
const KEY_ID_AT: usize = 24;
const AD_MAGIC: &[u8; 17] = b"rustybackup bmap1";
const KEY_ID_CONTEXT: &str = "rustybackup 2026-11 block map key id";

type Key = [u8; KEY_LEN];

fn read_keys() -> &'static Mutex<HashMap<[u8; 16], Key>> {
    static KEYS: OnceLock<Mutex<HashMap<[u8; 16], Key>>> = OnceLock::new();
    KEYS.get_or_init(Mutex::default)
}

fn write_keys() -> &'static Mutex<HashMap<String, Key>> {
    static KEYS: OnceLock<Mutex<HashMap<String, Key>>> = OnceLock::new();
    KEYS.get_or_init(Mutex::default)
}

/// The public name of a map key: what a sealed map's header says it was sealed with
/// (a one-way derivation: it tells nothing of the key).
pub fn key_id(key: &Key) -> [u8; 16] {
    let d = crypto::derive_key(KEY_ID_CONTEXT, key);
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

/// Makes `key` available to every reader of this process.
pub fn register_read_key(key: Key) {
    let mut keys = read_keys().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    keys.insert(key_id(&key), key);
}

/// Seals the block map of set `set_id` written from now on under `key`; `None` stops.
pub fn set_write_key(set_id: &str, key: Option<Key>) {
    let mut keys = write_keys().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match key {
        Some(k) => {
            keys.insert(set_id.to_string(), k);
        }
        None => {
            keys.remove(set_id);
        }
    }
}

fn read_key(id: &[u8; 16]) -> Option<Key> {
    let keys = read_keys().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    keys.get(id).copied()
}

/// `<set id>/<file>`: the last two components of the map's path, the same in `staging/`,
/// `sets/` and a download cache that keeps the layout.
fn label(path: &Path) -> Option<String> {
    crypto::piece_label(path)
}

/// The write key of the map at `path`, if its set's maps are sealed.
pub(crate) fn write_key_for(path: &Path) -> Option<(Key, String)> {
    let label = label(path)?;
    let set = path.parent()?.file_name()?.to_str()?;
    let keys = write_keys().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    keys.get(set).map(|k| (*k, label))
}

fn frame_ad(label: &str, index: u64, last: bool) -> Vec<u8> {
    let mut ad = Vec::with_capacity(AD_MAGIC.len() + 8 + label.len() + 9);
    ad.extend_from_slice(AD_MAGIC);
    ad.extend_from_slice(&(label.len() as u64).to_le_bytes());
    ad.extend_from_slice(label.as_bytes());
    ad.extend_from_slice(&index.to_le_bytes());
    ad.push(u8::from(last));
    ad
}

/// Whether the file starts like a sealed map.
pub fn is_sealed(path: &Path) -> Result<bool> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut m = [0u8; 8];
    match std::os::unix::fs::FileExt::read_exact_at(&file, &mut m, 0) {
        Ok(()) => Ok(&m == MAGIC),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Streams a map's plain bytes into sealed frames (the `Write` that `BlockMapWriter`
/// writes through); `finish` seals the last frame and writes the trailer.
pub(crate) struct SealedWriter {
    file: File,
    path: PathBuf,
    key: Key,
    label: String,
    buf: Vec<u8>,
    frames: u64,
    plain_len: u64,
    hasher: Hasher,
}

impl SealedWriter {
    pub(crate) fn new(file: File, path: &Path, key: Key, label: String, algorithm: Algorithm) -> Result<Self> {
        let mut w = Self {
            file,
            path: path.to_path_buf(),
            key,
            label,
            buf: Vec::with_capacity(FRAME_LEN as usize),
            frames: 0,
            plain_len: 0,
            hasher: algorithm.hasher(),
        };
        let mut h = Vec::with_capacity(SEALED_HEADER_LEN as usize);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&FRAME_LEN.to_le_bytes());
        h.push(algorithm_code(algorithm));
        // A digest is at most 64 bytes.
        h.push(algorithm.digest_size() as u8);
        h.resize(KEY_ID_AT, 0);
        h.extend_from_slice(&key_id(&key));
        h.resize(SEALED_HEADER_LEN as usize, 0);
        w.emit(&h).map_err(|e| Error::io(path, e))?;
        Ok(w)
    }

    fn emit(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.hasher.update(data);
        Ok(())
    }

    fn seal_frame(&mut self, last: bool) -> io::Result<()> {
        let ad = frame_ad(&self.label, self.frames, last);
        let sealed = crypto::seal(&self.key, &ad, &self.buf).map_err(|e| io::Error::other(e.to_string()))?;
        self.emit(&sealed)?;
        self.plain_len += self.buf.len() as u64;
        self.buf.clear();
        self.frames += 1;
        Ok(())
    }

    /// Seals what is buffered as the last frame, writes the trailer; returns the file and
    /// the container's checksum (what the catalog and a child map's `parent_sum` record).
    pub(crate) fn finish(mut self) -> Result<(File, Vec<u8>)> {
        let path = self.path.clone();
        self.seal_frame(true).map_err(|e| Error::io(&path, e))?;
        let checksum = std::mem::replace(&mut self.hasher, Algorithm::Blake3.hasher()).finalize();
        let mut t = Vec::with_capacity(SEALED_TRAILER_LEN as usize);
        t.extend_from_slice(TRAILER_MAGIC);
        t.extend_from_slice(&self.plain_len.to_le_bytes());
        t.extend_from_slice(&self.frames.to_le_bytes());
        // A digest is at most 64 bytes.
        t.push(checksum.len() as u8);
        t.resize(32, 0);
        t.extend_from_slice(&checksum);
        t.resize(SEALED_TRAILER_LEN as usize, 0);
        self.file.write_all(&t).map_err(|e| Error::io(&path, e))?;
        Ok((self.file, checksum))
    }
}

impl Write for SealedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            // A full frame is sealed only once more bytes come: the last frame (full or
            // not) is sealed by `finish` with the last flag.
            if self.buf.len() == FRAME_LEN as usize {
                self.seal_frame(false)?;
            }
            let n = rest.len().min(FRAME_LEN as usize - self.buf.len());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A sealed map's container, checked against its size (no key needed).
pub struct SealedFile {
    /// The open file.
    pub file: File,
    /// Its size.
    pub size: u64,
    /// Algorithm of the container's checksum (the map's own).
    pub algorithm: Algorithm,
    /// Plain bytes per frame.
    pub frame_len: u32,
    /// Which key sealed it.
    pub key_id: [u8; 16],
    /// Length of the plain map.
    pub plain_len: u64,
    /// Number of frames.
    pub frames: u64,
    /// The trailer's checksum of every byte before the trailer.
    pub checksum: Vec<u8>,
}

impl SealedFile {
    /// Opens `path` and checks its header and trailer against its size.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if size < SEALED_HEADER_LEN + SEALED_TRAILER_LEN {
            return Err(Error::damaged(
                path,
                size,
                format!("truncated sealed block map ({size} bytes, no room for header and trailer)"),
            ));
        }
        let mut h = [0u8; SEALED_HEADER_LEN as usize];
        read_exact_at(&file, path, &mut h, 0)?;
        if &h[..8] != MAGIC {
            return Err(Error::damaged(path, 0, "not a sealed block map (bad magic)"));
        }
        let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        if version != VERSION {
            return Err(Error::damaged(
                path,
                8,
                format!("sealed block map version {version} is not one this build reads ({VERSION})"),
            ));
        }
        let frame_len = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        if frame_len == 0 || frame_len > MAX_FRAME_LEN {
            return Err(Error::damaged(
                path,
                12,
                format!("frame length {frame_len} is outside 1..={MAX_FRAME_LEN}"),
            ));
        }
        let algorithm = algorithm_from_code(h[16])
            .ok_or_else(|| Error::damaged(path, 16, format!("unknown digest algorithm code {}", h[16])))?;
        let dlen = usize::from(h[17]);
        if dlen != algorithm.digest_size() {
            return Err(Error::damaged(
                path,
                17,
                format!("digest length {dlen} is wrong for {}", algorithm.name()),
            ));
        }
        if let Some(i) = h[18..KEY_ID_AT]
            .iter()
            .chain(&h[KEY_ID_AT + 16..])
            .position(|&b| b != 0)
        {
            let at = if i < KEY_ID_AT - 18 {
                18 + i
            } else {
                KEY_ID_AT + 16 + i - (KEY_ID_AT - 18)
            };
            return Err(Error::damaged(path, at as u64, "reserved header byte is not zero"));
        }
        let mut key_id = [0u8; 16];
        key_id.copy_from_slice(&h[KEY_ID_AT..KEY_ID_AT + 16]);
        let at = size - SEALED_TRAILER_LEN;
        let mut t = [0u8; SEALED_TRAILER_LEN as usize];
        read_exact_at(&file, path, &mut t, at)?;
        if &t[..8] != TRAILER_MAGIC {
            return Err(Error::damaged(
                path,
                at,
                "bad sealed block map trailer magic (truncated or overwritten)",
            ));
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&t[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let plain_len = u64_at(8);
        let frames = u64_at(16);
        let clen = usize::from(t[24]);
        if clen != dlen {
            return Err(Error::damaged(
                path,
                at + 24,
                format!("trailer checksum length {clen} is wrong"),
            ));
        }
        if let Some(i) = t[25..32]
            .iter()
            .chain(&t[32 + clen..32 + MAX_DIGEST])
            .position(|&b| b != 0)
        {
            let off = if i < 7 { 25 + i } else { 32 + clen + i - 7 };
            return Err(Error::damaged(
                path,
                at + off as u64,
                "reserved trailer byte is not zero",
            ));
        }
        let want_frames = plain_len.div_ceil(u64::from(frame_len)).max(1);
        let fits = plain_len
            .checked_add(frames.saturating_mul(OVERHEAD as u64))
            .and_then(|n| n.checked_add(SEALED_HEADER_LEN + SEALED_TRAILER_LEN));
        if frames != want_frames || fits != Some(size) {
            return Err(Error::damaged(
                path,
                at + 8,
                format!("{plain_len} plain bytes in {frames} frames do not fit a {size}-byte sealed block map"),
            ));
        }
        Ok(Self {
            file,
            size,
            algorithm,
            frame_len,
            key_id,
            plain_len,
            frames,
            checksum: t[32..32 + clen].to_vec(),
        })
    }

    /// Where the trailer starts (the checksum covers everything before it).
    pub fn trailer_at(&self) -> u64 {
        self.size - SEALED_TRAILER_LEN
    }
}

/// The plain bytes of a sealed map, read frame by frame with its key; one frame is kept
/// decrypted (the cursors read forward).
pub(crate) struct SealedReader {
    sealed: SealedFile,
    path: PathBuf,
    key: Key,
    label: String,
    /// The frame decrypted last: (index, plain bytes).
    cache: RefCell<Option<(u64, Vec<u8>)>>,
}

impl SealedReader {
    /// Opens `path` with the key its header names; an error when this process has none.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let sealed = SealedFile::open(path)?;
        let key = read_key(&sealed.key_id).ok_or_else(|| {
            Error::damaged(
                path,
                KEY_ID_AT as u64,
                "the block map is sealed (encrypted repository) and no key that opens it is loaded; \
                 give the repository's passphrase or key file",
            )
        })?;
        let label = label(path)
            .ok_or_else(|| Error::damaged(path, 0, "a sealed block map's path has no set directory and file name"))?;
        Ok(Self {
            sealed,
            path: path.to_path_buf(),
            key,
            label,
            cache: RefCell::new(None),
        })
    }

    /// Length of the plain map.
    pub(crate) fn len(&self) -> u64 {
        self.sealed.plain_len
    }

    /// The stored container (for its checksum).
    pub(crate) fn container(&self) -> &SealedFile {
        &self.sealed
    }

    fn frame_span(&self, i: u64) -> (u64, usize) {
        let f = u64::from(self.sealed.frame_len);
        let plain = (self.sealed.plain_len - i * f).min(f);
        // plain <= frame_len <= 1 MiB.
        (SEALED_HEADER_LEN + i * (f + OVERHEAD as u64), plain as usize)
    }

    fn load(&self, i: u64) -> Result<()> {
        if matches!(&*self.cache.borrow(), Some((c, _)) if *c == i) {
            return Ok(());
        }
        let (at, plain) = self.frame_span(i);
        let mut buf = vec![0u8; plain + OVERHEAD];
        read_exact_at(&self.sealed.file, &self.path, &mut buf, at)?;
        let ad = frame_ad(&self.label, i, i + 1 == self.sealed.frames);
        let opened = crypto::open_owned(&self.key, &ad, buf)
            .map_err(|e| Error::damaged(&self.path, at, format!("sealed block map frame {i}: {e}")))?;
        *self.cache.borrow_mut() = Some((i, opened));
        Ok(())
    }

    /// Reads plain bytes `pos .. pos + buf.len()`.
    pub(crate) fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<()> {
        let end = pos.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.sealed.plain_len) {
            return Err(Error::damaged(
                &self.path,
                pos,
                format!(
                    "read of {} plain bytes past the sealed map's {}",
                    buf.len(),
                    self.sealed.plain_len
                ),
            ));
        }
        let f = u64::from(self.sealed.frame_len);
        let mut done = 0usize;
        while done < buf.len() {
            let p = pos + done as u64;
            let i = p / f;
            self.load(i)?;
            let cache = self.cache.borrow();
            let Some((_, frame)) = cache.as_ref() else {
                unreachable!("load filled the cache")
            };
            // p - i * f < f <= 1 MiB.
            let off = (p - i * f) as usize;
            let n = (frame.len() - off).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&frame[off..off + n]);
            done += n;
        }
        Ok(())
    }
}

/// Where `BlockMapWriter` writes its bytes: the file itself, or frames sealed into it.
pub(crate) enum MapOut {
    Plain(File),
    // Boxed: the writer holds its frame buffer's header and keys (~370 bytes).
    Sealed(Box<SealedWriter>),
}

impl MapOut {
    /// The output for a new map at `path`: sealed when its set has a write key.
    pub(crate) fn new(file: File, path: &Path, algorithm: Algorithm) -> Result<Self> {
        Ok(match write_key_for(path) {
            Some((key, label)) => Self::Sealed(Box::new(SealedWriter::new(file, path, key, label, algorithm)?)),
            None => Self::Plain(file),
        })
    }

    /// Ends the output: the file, and a sealed map's container checksum (a plain map's
    /// checksum is its own trailer's).
    pub(crate) fn finish(self) -> Result<(File, Option<Vec<u8>>)> {
        match self {
            Self::Plain(f) => Ok((f, None)),
            Self::Sealed(w) => w.finish().map(|(f, sum)| (f, Some(sum))),
        }
    }
}

impl Write for MapOut {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(f) => f.write(data),
            Self::Sealed(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(f) => f.flush(),
            Self::Sealed(w) => w.flush(),
        }
    }
}

/// What a reader reads a map's (plain) bytes from.
pub(crate) enum MapSrc {
    Plain(File),
    Sealed(SealedReader),
}

impl MapSrc {
    pub(crate) fn read_at(&self, path: &Path, buf: &mut [u8], pos: u64) -> Result<()> {
        match self {
            Self::Plain(f) => read_exact_at(f, path, buf, pos),
            Self::Sealed(r) => r.read_at(buf, pos),
        }
    }
}

/// Whether this process holds the key the sealed map at `path` names (false for a plain
/// map or an unreadable file): a keyless check verifies only the container.
pub fn key_loaded(path: &Path) -> bool {
    SealedFile::open(path).is_ok_and(|s| read_key(&s.key_id).is_some())
}
