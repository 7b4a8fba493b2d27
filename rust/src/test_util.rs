//! Test data shared by the crate's unit tests: scratch directories and deterministic
//! bytes from xorshift64, a generator independent of anything the crate computes, so
//! the tests' oracles never lean on the code under test (and each test module does not
//! carry its own copy).

use std::fs;
use std::path::{Path, PathBuf};

use crate::format::{PieceSummary, PieceWriter, FLAG_ZSTD};
use crate::scan::algorithm::Algorithm;

/// A fresh, empty `rb-<prefix>-<name>-<pid>` under the system's temporary directory
/// (what an earlier run of the same test left there is removed first).
pub(crate) fn tmpdir(prefix: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rb-{}-{}-{}", prefix, name, std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// xorshift64 (shifts 13, 7, 17) from the state given; a zero state stays zero, so
/// callers seed it odd.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// The next state modulo `n` (a zero `n` counts as 1).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// The low byte of each of the next `n` states.
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// `n` blocks as the format and crypto tests write them: block `i` is `len(i)` bytes,
/// an even one the byte `i` repeated (zstd shrinks it), an odd one xorshift bytes
/// seeded by `i` (zstd does not).
pub(crate) fn sample_blocks(n: u8, len: impl Fn(u8) -> usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                vec![i; len(i)]
            } else {
                XorShift(u64::from(i) * 0x9e37_79b9 + 1).bytes(len(i))
            }
        })
        .collect()
}

/// `b` as a backup stores it: zstd (level 3) when that shrinks it, else as it is; with
/// the block flags that say which.
pub(crate) fn packed(b: &[u8]) -> (Vec<u8>, u8) {
    let z = zstd::bulk::compress(b, 3).unwrap();
    if z.len() < b.len() {
        (z, FLAG_ZSTD)
    } else {
        (b.to_vec(), 0)
    }
}

/// Writes `blocks` (each at most `bs` bytes) as file `file_no`'s blocks into a new plain
/// piece at `path`, each zstd-packed when `zstd` and that shrinks it.
pub(crate) fn write_plain_piece(
    path: &Path,
    file_no: u32,
    alg: Algorithm,
    bs: u32,
    blocks: &[Vec<u8>],
    zstd: bool,
) -> PieceSummary {
    let mut w = PieceWriter::create(path, alg, bs).unwrap();
    for (i, b) in blocks.iter().enumerate() {
        let (stored, flags) = if zstd { packed(b) } else { (b.clone(), 0) };
        w.write_block(file_no, i as u64, &stored, b.len() as u32, flags, &alg.digest(b))
            .unwrap();
    }
    w.finish().unwrap()
}

/// Pages of `file`'s first `len` bytes in the page cache (`mincore` over a mapping).
#[cfg(target_os = "linux")]
pub(crate) fn resident_pages(file: &fs::File, len: usize) -> usize {
    use std::os::unix::io::AsRawFd;
    let page = 4096usize;
    let mut flags = vec![0u8; len.div_ceil(page)];
    // SAFETY: a fresh read-only shared mapping of `len` bytes of a file we hold open;
    // it is only passed to mincore (never dereferenced) and unmapped before returning;
    // `flags` holds one byte per page of the mapping, as mincore requires.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(addr, libc::MAP_FAILED);
        assert_eq!(libc::mincore(addr, len, flags.as_mut_ptr()), 0);
        libc::munmap(addr, len);
    }
    flags.iter().filter(|f| *f & 1 == 1).count() * page
}

/// Whether `file` lies on tmpfs, where the page cache is the storage and nothing leaves it.
#[cfg(target_os = "linux")]
pub(crate) fn on_tmpfs(file: &fs::File) -> bool {
    use std::os::unix::io::AsRawFd;
    // SAFETY: statfs fills the zeroed struct it is given; `file` is open.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::fstatfs(file.as_raw_fd(), &mut st) == 0 && st.f_type == libc::TMPFS_MAGIC
    }
}
