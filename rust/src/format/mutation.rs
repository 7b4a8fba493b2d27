//! Mutation tests: every truncation and every single-byte change of a small piece and
//! block map, the same changes re-sealed (trailer checksum recomputed, so the structural
//! checks are what must catch them), random multi-byte changes, and huge length and count
//! fields. Each must give a clean error naming the file (and, for damage, an offset inside
//! it) or exactly the original data: never a panic, never an allocation beyond the file.

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};

use super::tests::tmpdir;
use super::*;
use crate::scan::algorithm::Algorithm;

/// Wraps the system allocator to remember the largest allocation of the current thread.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: the slot may already be gone while the thread shuts down.
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract;
// `note` only touches a const-initialised thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same layout the caller gave us.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same layout the caller gave us.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: ptr was allocated by `System` (through us) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: ptr was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// The readers' fixed buffers (a 64 KiB `BufReader`) plus room; a length read from a
/// damaged field would ask for up to 4 GiB.
const ALLOC_LIMIT: usize = 1 << 17;

const BS: u32 = 512;
const ALG: Algorithm = Algorithm::Blake3;

/// A small set: three blocks (zstd, raw, short raw) in one piece and its block map.
struct Sample {
    dir: PathBuf,
    piece: Vec<u8>,
    map: Vec<u8>,
    blocks: Vec<Vec<u8>>,
}

fn sample(name: &str) -> Sample {
    sample_in(name, Layout::written(Kind::Piece))
}

/// `sample` with its piece written in `layout`.
fn sample_in(name: &str, layout: Layout) -> Sample {
    let dir = tmpdir(name);
    let blocks = vec![
        vec![7u8; BS as usize],
        (0..BS).map(|k| (k.wrapping_mul(2_654_435_761) >> 13) as u8).collect(),
        (0..100u32).map(|k| (k * 97 + 5) as u8).collect(),
    ];
    let (pp, mp) = (dir.join("orig.piece"), dir.join("orig.blockmap"));
    let mut piece = PieceWriter::create_layout(&pp, ALG, BS, layout).unwrap();
    let mut map = BlockMapWriter::create(&mp, ALG, BS).unwrap();
    for (i, b) in blocks.iter().enumerate() {
        let digest = ALG.digest(b);
        let (stored, flags) = crate::test_util::packed(b);
        let at = piece
            .write_block(0, i as u64, &stored, b.len() as u32, flags, &digest)
            .unwrap();
        map.push(&BlockRecord {
            source: 0,
            offset: at.offset,
            stored_len: at.stored_len,
            raw_len: b.len() as u32,
            flags: at.flags,
            digest,
        })
        .unwrap();
    }
    piece.finish().unwrap();
    map.finish().unwrap();
    let s = Sample {
        piece: fs::read(&pp).unwrap(),
        map: fs::read(&mp).unwrap(),
        dir,
        blocks,
    };
    assert!(s.piece[32 + 16] & FLAG_ZSTD == 0 || s.piece.len() < 2000);
    s
}

/// Recomputes the trailer checksum of a mutated file so that only structure checks remain.
fn reseal(bytes: &mut [u8], trailer_len: usize, checksum_at: usize) {
    let end = bytes.len() - trailer_len;
    let d = ALG.digest(&bytes[..end]);
    bytes[end + checksum_at..end + checksum_at + d.len()].copy_from_slice(&d);
}

/// Where a piece trailer of `layout` keeps its checksum, and (version 2) its XXH3-128.
fn piece_sums(layout: Layout) -> (usize, Option<usize>) {
    match layout {
        Layout::V1 => (32, None),
        Layout::V2 | Layout::V3 | Layout::V4 => (48, Some(32)),
    }
}

/// `reseal` for a piece of `layout`: both the checksum and the XXH3-128.
fn reseal_piece(bytes: &mut [u8], layout: Layout) {
    let tlen = layout.trailer_len(Kind::Piece) as usize;
    let (sum_at, fast_at) = piece_sums(layout);
    reseal(bytes, tlen, sum_at);
    if let Some(at) = fast_at {
        let end = bytes.len() - tlen;
        let mut tree = super::fast::FastTree::new();
        tree.update(&bytes[..end]);
        let f = tree.digest();
        bytes[end + at..end + at + 16].copy_from_slice(&f);
    }
}

/// Everything FULL verification reads of a piece: header, trailer, every index entry,
/// every block against its digest, the checksum.
fn read_piece(path: &Path) -> std::result::Result<Vec<Vec<u8>>, String> {
    let r = PieceReader::open(path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for e in r.entries().map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        let data = r
            .read_verified(&e, "f")
            .map_err(|e| crate::engine::Error::from(e).to_string())?;
        out.push(data);
    }
    r.verify_checksum().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Everything a restore reads through a block map: its checksum, every record, every
/// block from the piece, checked against the record's digest.
fn read_through_map(map: &Path, piece: &Path) -> std::result::Result<Vec<Vec<u8>>, String> {
    let m = BlockMapReader::open(map).map_err(|e| e.to_string())?;
    m.verify_checksum().map_err(|e| e.to_string())?;
    let p = PieceReader::open(piece).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for rec in m.range(0, m.count()).map_err(|e| e.to_string())? {
        let rec = rec.map_err(|e| e.to_string())?;
        if rec.source != 0 {
            return Err(format!("{}: record names source {}", map.display(), rec.source));
        }
        let raw = p
            .read_raw(rec.offset, rec.stored_len, rec.raw_len, rec.flags)
            .map_err(|e| e.to_string())?;
        let data = check_block(ALG, raw, &rec.digest).map_err(|a| format!("{}: digest {a}", piece.display()))?;
        out.push(data);
    }
    Ok(out)
}

/// Runs `read` on `bytes` written at `path`; checks the outcome is a clean error or the
/// original blocks, and that nothing large was allocated. Returns whether it was an error.
fn judge(
    s: &Sample,
    path: &Path,
    bytes: &[u8],
    what: &str,
    read: &dyn Fn() -> std::result::Result<Vec<Vec<u8>>, String>,
) -> bool {
    fs::write(path, bytes).unwrap();
    LARGEST.with(|c| c.set(0));
    let outcome = read();
    let largest = LARGEST.with(Cell::get);
    assert!(
        largest <= ALLOC_LIMIT,
        "{what}: allocated {largest} bytes for a {}-byte file",
        bytes.len()
    );
    match outcome {
        Ok(data) => {
            assert_eq!(data, s.blocks, "{what}: wrong data and no error");
            false
        }
        Err(msg) => {
            let shown = path.display().to_string();
            let other = s.dir.display().to_string();
            assert!(
                msg.contains(&shown) || msg.contains(&other),
                "{what}: message names no file: {msg}"
            );
            if let Some(i) = msg.rfind("(at offset ") {
                let n: u64 = msg[i + 11..msg.len() - 1].parse().unwrap_or(u64::MAX);
                assert!(n <= bytes.len() as u64, "{what}: offset {n} outside the file: {msg}");
            }
            true
        }
    }
}

const XORS: [u8; 3] = [0x01, 0x80, 0xff];

#[test]
fn the_allocation_probe_sees_a_large_allocation() {
    LARGEST.with(|c| c.set(0));
    let v = std::hint::black_box(vec![1u8; 4 * ALLOC_LIMIT]);
    assert!(LARGEST.with(Cell::get) >= v.len());
}

#[test]
fn every_truncation_and_byte_change_of_a_piece_is_caught() {
    for v in READ_VERSIONS {
        let layout = Layout::of(v).unwrap();
        every_truncation_and_byte_change_of_a_piece_in(layout);
    }
}

fn every_truncation_and_byte_change_of_a_piece_in(layout: Layout) {
    let s = sample_in(&format!("mut-piece-v{}", layout.version()), layout);
    let tlen = layout.trailer_len(Kind::Piece) as usize;
    let path = s.dir.join("m.piece");
    let read = || read_piece(&path);
    assert!(!judge(&s, &path, &s.piece, "original", &read));
    for len in 0..s.piece.len() {
        assert!(judge(&s, &path, &s.piece[..len], &format!("truncated to {len}"), &read));
    }
    let mut longer = s.piece.clone();
    longer.push(0);
    assert!(judge(&s, &path, &longer, "one byte appended", &read));
    for at in 0..s.piece.len() {
        for x in XORS {
            let mut v = s.piece.clone();
            v[at] ^= x;
            // The checksum covers everything before the trailer, the structure checks the rest.
            assert!(
                judge(&s, &path, &v, &format!("byte {at} ^ {x:#x}"), &read),
                "byte {at} ^ {x:#x} unnoticed"
            );
            if at < s.piece.len() - tlen {
                reseal_piece(&mut v, layout);
                judge(&s, &path, &v, &format!("byte {at} ^ {x:#x}, resealed"), &read);
            }
        }
    }
}

#[test]
fn every_truncation_and_byte_change_of_a_block_map_is_caught() {
    let s = sample("mut-map");
    let piece = s.dir.join("orig.piece");
    let path = s.dir.join("m.blockmap");
    let read = || read_through_map(&path, &piece);
    assert!(!judge(&s, &path, &s.map, "original", &read));
    for len in 0..s.map.len() {
        assert!(judge(&s, &path, &s.map[..len], &format!("truncated to {len}"), &read));
    }
    for at in 0..s.map.len() {
        for x in XORS {
            let mut v = s.map.clone();
            v[at] ^= x;
            assert!(
                judge(&s, &path, &v, &format!("byte {at} ^ {x:#x}"), &read),
                "byte {at} ^ {x:#x} unnoticed"
            );
            if at < s.map.len() - 296 {
                reseal(&mut v, 296, 232);
                judge(&s, &path, &v, &format!("byte {at} ^ {x:#x}, resealed"), &read);
            }
        }
    }
}

#[test]
fn random_multi_byte_changes_are_errors_or_the_data() {
    let s = sample("mut-random");
    let (pp, mp) = (s.dir.join("r.piece"), s.dir.join("r.blockmap"));
    let orig_piece = s.dir.join("orig.piece");
    let mut x = crate::test_util::XorShift(0x9e37_79b9_7f4a_7c15);
    let mut rand = move |n: usize| (x.next_u64() % n as u64) as usize;
    let layout = Layout::written(Kind::Piece);
    for round in 0..600 {
        let orig = if round % 2 == 0 { &s.piece } else { &s.map };
        let mut v = orig.clone();
        for _ in 0..1 + rand(6) {
            let i = rand(v.len());
            v[i] = rand(256) as u8;
        }
        if rand(2) == 0 {
            if round % 2 == 0 {
                reseal_piece(&mut v, layout);
            } else {
                reseal(&mut v, 296, 232);
            }
        }
        let what = format!("round {round}");
        if round % 2 == 0 {
            judge(&s, &pp, &v, &what, &|| read_piece(&pp));
        } else {
            judge(&s, &mp, &v, &what, &|| read_through_map(&mp, &orig_piece));
        }
    }
}

#[test]
fn huge_lengths_counts_and_offsets_are_errors_not_allocations() {
    for v in READ_VERSIONS {
        huge_lengths_in(Layout::of(v).unwrap());
    }
}

fn huge_lengths_in(layout: Layout) {
    let s = sample_in(&format!("mut-huge-v{}", layout.version()), layout);
    let pp = s.dir.join("h.piece");
    let mp = s.dir.join("h.blockmap");
    let orig_piece = s.dir.join("orig.piece");
    let (plen, mlen) = (s.piece.len(), s.map.len());
    // The trailer's fields: index offset, entry count, checksum length.
    let t = plen - layout.trailer_len(Kind::Piece) as usize;
    let index_off = u64::from_le_bytes(s.piece[t + 8..t + 16].try_into().unwrap()) as usize;
    let big64 = u64::MAX.to_le_bytes();
    let big32 = u32::MAX.to_le_bytes();
    let piece_edits: Vec<(&str, usize, &[u8])> = vec![
        ("block_size", 12, &big32),
        ("index_off", t + 8, &big64),
        ("index_off 0", t + 8, &[0u8; 8]),
        ("entry_count", t + 16, &big64),
        ("checksum_len", t + 24, &[255]),
        ("entry offset", index_off + 12, &big64),
        ("entry stored_len", index_off + 20, &big32),
        ("entry raw_len", index_off + 24, &big32),
    ];
    for (what, at, bytes) in piece_edits {
        let mut v = s.piece.clone();
        v[at..at + bytes.len()].copy_from_slice(bytes);
        reseal_piece(&mut v, layout);
        assert!(judge(&s, &pp, &v, what, &|| read_piece(&pp)), "{what} accepted");
    }
    let map_edits: Vec<(&str, usize, &[u8])> = vec![
        ("block_size", 12, &big32),
        // Version 2: trailer counts, the first run header, the first record after it.
        ("record_count", mlen - 296 + 8, &big64),
        ("run_count", mlen - 296 + 16, &big64),
        ("stored_count", mlen - 296 + 24, &big64),
        ("run length", 40, &big64),
        ("record source", 56, &big32),
        ("record offset", 60, &big64),
        ("record stored_len", 68, &big32),
        ("record raw_len", 72, &big32),
    ];
    for (what, at, bytes) in map_edits {
        let mut v = s.map.clone();
        v[at..at + bytes.len()].copy_from_slice(bytes);
        reseal(&mut v, 296, 232);
        assert!(
            judge(&s, &mp, &v, what, &|| read_through_map(&mp, &orig_piece)),
            "{what} accepted"
        );
    }
}

/// A version-2 child map over the sample: blocks 0 and 2 refer to the parent map (a copy
/// of the sample's, at `p/blockmap`), block 1 is stored again. Returns (child path, bytes).
fn child_map(s: &Sample) -> (PathBuf, Vec<u8>) {
    let (pdir, cdir) = (s.dir.join("p"), s.dir.join("c"));
    fs::create_dir_all(&pdir).unwrap();
    fs::create_dir_all(&cdir).unwrap();
    fs::write(pdir.join("blockmap"), &s.map).unwrap();
    let parent = BlockMapReader::open(&pdir.join("blockmap")).unwrap();
    let recs: Vec<BlockRecord> = parent.range(0, 3).unwrap().map(Result::unwrap).collect();
    let pref = ParentRef {
        rel_path: "../p/blockmap".into(),
        checksum: parent.recorded_checksum().to_vec(),
    };
    let path = cdir.join("orig");
    let mut w = BlockMapWriter::create_child(&path, ALG, BS, pref).unwrap();
    w.push_parent(0).unwrap();
    w.push(&recs[1]).unwrap();
    w.push_parent(2).unwrap();
    w.finish().unwrap();
    let bytes = fs::read(&path).unwrap();
    (cdir.join("m"), bytes)
}

#[test]
fn every_truncation_and_byte_change_of_a_child_block_map_is_caught() {
    let s = sample("mut-child");
    let piece = s.dir.join("orig.piece");
    let (path, orig) = child_map(&s);
    let read = || read_through_map(&path, &piece);
    let whole_file = || {
        read().and_then(|data| {
            if data == s.blocks {
                Ok(data)
            } else {
                Err(format!(
                    "{}: the restored file's digest is not the manifest's",
                    path.display()
                ))
            }
        })
    };
    assert!(!judge(&s, &path, &orig, "original", &read));
    for len in 0..orig.len() {
        assert!(judge(&s, &path, &orig[..len], &format!("truncated to {len}"), &read));
    }
    let tlen = Layout::V2.trailer_len(Kind::BlockMap) as usize;
    for at in 0..orig.len() {
        for x in XORS {
            let mut v = orig.clone();
            v[at] ^= x;
            // Bytes before the trailer: the checksum; the trailer: structure, the parent's
            // checksum and path (a changed path names another file, which is not there).
            assert!(
                judge(&s, &path, &v, &format!("byte {at} ^ {x:#x}"), &read),
                "byte {at} ^ {x:#x} unnoticed"
            );
            if at < orig.len() - tlen {
                // Resealed, a reference may name another parent record: a valid map of
                // other data, which restore's whole-file digest check refuses (as here).
                reseal(&mut v, tlen, 232);
                judge(&s, &path, &v, &format!("byte {at} ^ {x:#x}, resealed"), &whole_file);
            }
        }
    }
}
