//! The SQLite write-ahead log (<https://www.sqlite.org/fileformat2.html#walformat>):
//! parsing a WAL (or a captured run of its frames) and applying committed frames to a
//! database file. Pure: no PyO3 here; bindings are in `py/wal.rs`.
//!
//! A WAL is a 32-byte header and frames of a 24-byte header plus one page. Every frame
//! carries the header's salts and a checksum that folds in every byte before it, so the
//! valid frames are a prefix: the first frame with other salts or a wrong checksum ends
//! the run (an old generation's leftover, a frame still being written, or damage), and
//! only frames up to the last commit frame in that run are part of the database.

mod apply;
pub mod copy;
mod error;
mod scan;
#[cfg(test)]
mod tests;

pub use apply::{apply, ApplyStats};
pub use error::WalError;
pub use scan::{checksum, parse_header, scan, Frame, Scan, Stop, WalHeader, FRAME_HEADER_LEN, HEADER_LEN};
