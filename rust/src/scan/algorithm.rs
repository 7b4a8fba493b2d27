//! The five digest algorithms behind one streaming interface.

use std::fmt;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

/// A checksum algorithm; the names match Python's `ChecksumAlgorithm` values and hashlib.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (128-bit), for compatibility with older manifests only.
    Md5,
    /// SHA-1 (160-bit).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
    /// BLAKE3 (256-bit), the default: fastest and tree-shaped.
    Blake3,
}

/// Every algorithm, in the order error messages list them.
pub const ALL: [Algorithm; 5] = [
    Algorithm::Md5,
    Algorithm::Sha1,
    Algorithm::Sha256,
    Algorithm::Sha512,
    Algorithm::Blake3,
];

/// An algorithm name nobody knows; the message lists the valid ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownAlgorithm(pub String);

impl fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = ALL.iter().map(|a| a.name()).collect();
        write!(
            f,
            "unknown checksum algorithm {:?}; valid names: {}",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownAlgorithm {}

impl Algorithm {
    /// Parses a name case-insensitively (`"SHA256"`, `"sha256"`, `"blake3"`).
    pub fn from_name(name: &str) -> Result<Self, UnknownAlgorithm> {
        match name.to_ascii_lowercase().as_str() {
            "md5" => Ok(Self::Md5),
            "sha1" => Ok(Self::Sha1),
            "sha256" => Ok(Self::Sha256),
            "sha512" => Ok(Self::Sha512),
            "blake3" => Ok(Self::Blake3),
            _ => Err(UnknownAlgorithm(name.to_string())),
        }
    }

    /// The lower-case name, as hashlib and the catalog spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
            Self::Blake3 => "blake3",
        }
    }

    /// Digest length in bytes.
    pub fn digest_size(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
            Self::Blake3 => 32,
        }
    }

    /// A fresh streaming hasher (RustCrypto for MD5/SHA, the `blake3` crate for BLAKE3).
    pub fn hasher(self) -> Hasher {
        match self {
            Self::Md5 => Hasher::Md5(Md5::new()),
            Self::Sha1 => Hasher::Sha1(Sha1::new()),
            Self::Sha256 => Hasher::Sha256(Sha256::new()),
            Self::Sha512 => Hasher::Sha512(Sha512::new()),
            Self::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
        }
    }

    /// The digest of one buffer, single-threaded (callers parallelise across buffers).
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Blake3 => blake3::hash(data).as_bytes().to_vec(),
            _ => {
                let mut h = self.hasher();
                h.update(data);
                h.finalize()
            }
        }
    }
}

/// From this many bytes, one BLAKE3 buffer is worth spreading over the pool (blake3-py's
/// `max_threads` pays off from about 128 KiB; below, one core's SIMD beats the hand-off).
pub const PARALLEL_MIN: usize = 1 << 20;

/// A streaming hasher of any algorithm.
#[derive(Clone)]
pub enum Hasher {
    /// MD5 state.
    Md5(Md5),
    /// SHA-1 state.
    Sha1(Sha1),
    /// SHA-256 state.
    Sha256(Sha256),
    /// SHA-512 state.
    Sha512(Sha512),
    /// BLAKE3 state (boxed: it is ~2 KiB).
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Md5(h) => h.update(data),
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
            Self::Blake3(h) => {
                h.update(data);
            }
        }
    }

    /// Feeds bytes, spreading BLAKE3 over the current rayon pool (its tree mode) for
    /// buffers of 1 MiB and more, where that pays; the other algorithms are sequential
    /// by nature. Call it inside the pool the work should run in (`parallel::install`).
    pub fn update_parallel(&mut self, data: &[u8]) {
        match self {
            Self::Blake3(h) if data.len() >= PARALLEL_MIN => {
                h.update_rayon(data);
            }
            other => other.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finalize(self) -> Vec<u8> {
        match self {
            Self::Md5(h) => h.finalize().to_vec(),
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Sha512(h) => h.finalize().to_vec(),
            Self::Blake3(h) => h.finalize().as_bytes().to_vec(),
        }
    }
}

/// Lower-case hex of a digest.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_of_abc() {
        let cases = [
            (Algorithm::Md5, "900150983cd24fb0d6963f7d28e17f72"),
            (Algorithm::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                Algorithm::Sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                Algorithm::Sha512,
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                 2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
            (
                Algorithm::Blake3,
                "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
            ),
        ];
        for (alg, hex) in cases {
            assert_eq!(to_hex(&alg.digest(b"abc")), hex, "{}", alg.name());
            let mut h = alg.hasher();
            h.update(b"a");
            h.update(b"bc");
            assert_eq!(to_hex(&h.finalize()), hex);
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = Algorithm::from_name("crc32").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown checksum algorithm \"crc32\"; valid names: md5, sha1, sha256, sha512, blake3"
        );
        assert_eq!(Algorithm::from_name("SHA256"), Ok(Algorithm::Sha256));
    }
}
