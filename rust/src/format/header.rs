//! The 32-byte header that pieces and block maps share, the format versions and what
//! each version's layout looks like, and the on-disk algorithm codes.
//!
//! A reader learns the version from the header and asks `Layout` for every size it then
//! needs (trailer, index entry, record), so a new version is a new `Layout` variant and
//! every reader keeps reading the old ones.

use std::path::Path;

use super::error::{Error, Result};
use crate::scan::algorithm::Algorithm;

/// Length of the header of every version.
pub const HEADER_LEN: u64 = 32;
/// The first format (rustybackup 0.1).
pub const VERSION_1: u32 = 1;
/// The second format: pieces carry an XXH3-128 of their bytes beside the cryptographic
/// checksum, block maps refer to their parent's records instead of copying them.
pub const VERSION_2: u32 = 2;
/// The third format, of block maps only: version 2 with hole runs (a run of blocks of a
/// sparse file that were never stored: one 24-byte run header however long the hole).
pub const VERSION_3: u32 = 3;
/// The fourth format, of block maps only: version 3 with copy runs (a run of blocks equal
/// to earlier records of the same map: a file copied inside the tree, one 24-byte header).
pub const VERSION_4: u32 = 4;
/// The version this build writes.
pub const WRITE_VERSION: u32 = VERSION_2;
/// Every version this build reads: every version ever written.
pub const READ_VERSIONS: [u32; 2] = [VERSION_1, VERSION_2];
/// Largest block size a header may carry (bounds every per-block allocation). The
/// engine's policy (`engine::backup::MIN_BLOCK_SIZE`) is narrower; the format only needs
/// a block to be non-empty and bounded.
pub const MAX_BLOCK_SIZE: u32 = 16 << 20;
/// Room for the largest digest (SHA-512) in trailers.
pub const MAX_DIGEST: usize = 64;

/// Which of the two file kinds a header starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `*.piece`: block data, index, trailer.
    Piece,
    /// `blockmap`: one record per block of the set's state, trailer.
    BlockMap,
}

impl Kind {
    /// The first eight bytes of a file of this kind.
    pub fn magic(self) -> &'static [u8; 8] {
        match self {
            Self::Piece => b"RBPIECE\0",
            Self::BlockMap => b"RBBMAP\0\0",
        }
    }

    /// The first eight bytes of its trailer.
    pub fn trailer_magic(self) -> &'static [u8; 8] {
        match self {
            Self::Piece => b"RBTRAIL\0",
            Self::BlockMap => b"RBBMEND\0",
        }
    }

    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Piece => "piece",
            Self::BlockMap => "block map",
        }
    }
}

/// The byte layout of one format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Version 1 (docs/FORMAT.md).
    V1,
    /// Version 2 (docs/FORMAT.md "Version 2").
    V2,
    /// Version 3, block maps only (docs/FORMAT.md "Block map version 3"): version 2's
    /// bytes, and hole runs.
    V3,
    /// Version 4, block maps only (docs/FORMAT.md "Block map version 4"): version 3's
    /// bytes, and copy runs.
    V4,
}

impl Layout {
    /// The layout of `version` for files of `kind`, if this build reads it (every
    /// version reads both kinds; a kind may some day skip a version).
    pub fn of_kind(version: u32, kind: Kind) -> Option<Self> {
        match (version, kind) {
            (VERSION_3, Kind::BlockMap) => Some(Self::V3),
            (VERSION_4, Kind::BlockMap) => Some(Self::V4),
            _ => Self::of(version),
        }
    }

    /// The layout of `version`, if this build reads it (for some kind of file).
    pub fn of(version: u32) -> Option<Self> {
        match version {
            VERSION_1 => Some(Self::V1),
            VERSION_2 => Some(Self::V2),
            _ => None,
        }
    }

    /// The layout this build writes for files of `kind`. Each file names its own
    /// version, so pieces and block maps move to a new version independently.
    pub fn written(kind: Kind) -> Self {
        match kind {
            Kind::Piece => Self::V2,
            Kind::BlockMap => Self::V4,
        }
    }

    /// The version number written in headers.
    pub fn version(self) -> u32 {
        match self {
            Self::V1 => VERSION_1,
            Self::V2 => VERSION_2,
            Self::V3 => VERSION_3,
            Self::V4 => VERSION_4,
        }
    }

    /// Length of a trailer of `kind`.
    pub fn trailer_len(self, kind: Kind) -> u64 {
        match (self, kind) {
            (Self::V1, Kind::Piece) => 96,
            (Self::V1, Kind::BlockMap) => 88,
            // V1's fields, then the XXH3-128 of [0, trailer), then the checksum.
            (Self::V2, Kind::Piece) => 112,
            // V1's fields, run and stored-record counts, the parent's checksum and path.
            (Self::V2 | Self::V3 | Self::V4, Kind::BlockMap) => 296,
            // No piece has version 3 or 4 (`of_kind` refuses them); the match must still be total.
            (Self::V3 | Self::V4, Kind::Piece) => 112,
        }
    }

    /// Length of one piece index entry.
    pub fn index_entry_len(self, digest_len: usize) -> u64 {
        match self {
            Self::V1 | Self::V2 | Self::V3 | Self::V4 => 29 + digest_len as u64,
        }
    }

    /// Length of one block-map record.
    pub fn record_len(self, digest_len: usize) -> u64 {
        match self {
            Self::V1 | Self::V2 | Self::V3 | Self::V4 => 21 + digest_len as u64,
        }
    }

    /// Whether a block map of this layout may hold hole runs (version 3 on).
    pub fn has_holes(self) -> bool {
        matches!(self, Self::V3 | Self::V4)
    }

    /// Whether a block map of this layout may hold copy runs (version 4 on).
    pub fn has_copies(self) -> bool {
        matches!(self, Self::V4)
    }
}

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

/// Whether a block size is one a header may carry; Err says why not.
pub fn check_block_size(block_size: u32) -> std::result::Result<(), String> {
    if (1..=MAX_BLOCK_SIZE).contains(&block_size) {
        Ok(())
    } else {
        Err(format!(
            "block_size {block_size} is out of range (1..={MAX_BLOCK_SIZE} bytes)"
        ))
    }
}

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Piece or block map.
    pub kind: Kind,
    /// The version's layout.
    pub layout: Layout,
    /// Block size of the set.
    pub block_size: u32,
    /// Digest algorithm of blocks and trailer.
    pub algorithm: Algorithm,
}

impl Header {
    /// A header of the version this build writes for `kind`.
    pub fn new(kind: Kind, block_size: u32, algorithm: Algorithm) -> Self {
        Self {
            kind,
            layout: Layout::written(kind),
            block_size,
            algorithm,
        }
    }

    /// Length of a digest (block digests and the trailer checksum).
    pub fn digest_len(&self) -> usize {
        self.algorithm.digest_size()
    }

    /// Length of this file's trailer.
    pub fn trailer_len(&self) -> u64 {
        self.layout.trailer_len(self.kind)
    }

    /// The 32 header bytes.
    pub fn encode(&self) -> [u8; 32] {
        let mut h = [0u8; 32];
        h[..8].copy_from_slice(self.kind.magic());
        h[8..12].copy_from_slice(&self.layout.version().to_le_bytes());
        h[12..16].copy_from_slice(&self.block_size.to_le_bytes());
        h[16] = algorithm_code(self.algorithm);
        // Digest sizes are at most 64, so the cast cannot truncate.
        h[17] = self.digest_len() as u8;
        h
    }

    /// Parses and checks the first 32 bytes of `path`, which must be a file of `kind`.
    pub fn decode(path: &Path, kind: Kind, h: &[u8; 32]) -> Result<Self> {
        let name = kind.name();
        if &h[..8] != kind.magic() {
            return Err(Error::damaged(path, 0, format!("not a {name} file (bad magic)")));
        }
        let version = u32_at(h, 8);
        let layout = Layout::of_kind(version, kind).ok_or_else(|| {
            Error::damaged(
                path,
                8,
                format!(
                    "{name} version {version} is not supported (this build reads {name}s of versions {:?})",
                    READ_VERSIONS
                        .into_iter()
                        .chain([VERSION_3, VERSION_4])
                        .filter(|&v| Layout::of_kind(v, kind).is_some())
                        .collect::<Vec<_>>()
                ),
            )
        })?;
        let block_size = u32_at(h, 12);
        check_block_size(block_size).map_err(|m| Error::damaged(path, 12, format!("header {m}")))?;
        let algorithm = algorithm_from_code(h[16])
            .ok_or_else(|| Error::damaged(path, 16, format!("unknown algorithm code {} in header", h[16])))?;
        if usize::from(h[17]) != algorithm.digest_size() {
            return Err(Error::damaged(
                path,
                17,
                format!("digest length {} does not match {}", h[17], algorithm.name()),
            ));
        }
        if let Some(i) = h[18..].iter().position(|&b| b != 0) {
            return Err(Error::damaged(path, 18 + i as u64, "reserved header byte is not zero"));
        }
        Ok(Self {
            kind,
            layout,
            block_size,
            algorithm,
        })
    }
}

/// Little-endian u32 at `i` of `b` (the caller's slice is long enough).
pub(crate) fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(a)
}

/// Little-endian u64 at `i` of `b` (the caller's slice is long enough).
pub(crate) fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}
