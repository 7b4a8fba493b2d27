//! Block checksum scanning and digests: pure logic, no PyO3 types.
//!
//! The reusable API for the backup engine and the verifier:
//!
//! - [`Algorithm`] / [`Hasher`] / [`to_hex`]: the five digests (MD5, SHA-1, SHA-256,
//!   SHA-512, BLAKE3), hardware-accelerated where the CPU allows (SHA-NI, AVX2/AVX-512).
//! - [`Scanner`]: one pass over a live file or any `Read` ([`ChunkReader`]) giving the
//!   whole-file digest and each block's digest; `scan_path(path, |block| ...)` calls back
//!   per [`Block`] (index, offset, bytes, digest) in order on the calling thread, so the
//!   engine can compare against the previous backup's digest and write the block while the
//!   data is in hand; returning `ControlFlow::Break` cancels ([`ScanError::Cancelled`]).
//!   `scan_path_collect` keeps all block digests ([`FileScan`]).
//! - [`hash_path`] (read or mmap, see [`Access`]) and [`hash_paths`] (many files in
//!   parallel, one `Result` per file).
//! - [`parallel::install`] runs any closure in the fork-safe pool.
//!
//! Files being backed up are never memory-mapped (a truncation under a map is SIGBUS);
//! they are read in block-aligned chunks and a size change during the read is an error
//! ([`ScanError::SizeChanged`]), never a silently wrong digest. Memory stays two chunk
//! buffers per scan, whatever the file size.

pub mod algorithm;
pub mod error;
pub mod file_scan;
pub mod parallel;
pub mod reader;
pub mod whole_file;

pub use algorithm::{to_hex, Algorithm, Hasher, UnknownAlgorithm};
pub use error::{BlockSize, ScanError, SizeChange};
pub use file_scan::{Block, FileScan, ScanSummary, Scanner};
pub use reader::ChunkReader;
pub use whole_file::{hash_path, hash_paths, Access};
