//! Test data shared by the crate's unit tests: scratch directories and deterministic
//! bytes from xorshift64, a generator independent of anything the crate computes, so
//! the tests' oracles never lean on the code under test (and each test module does not
//! carry its own copy).

use std::fs;
use std::path::PathBuf;

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
