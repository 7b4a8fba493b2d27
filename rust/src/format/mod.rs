//! The one owner of bytes on disk: the only code that writes and parses pieces, block
//! maps, their headers, index entries, records and trailers (docs/FORMAT.md). Pure logic,
//! no PyO3 types.
//!
//! Versions: a header carries the format version; `header::Layout` says what each
//! version's bytes look like and every reader dispatches on it, so this build reads every
//! version ever written (`READ_VERSIONS`) and writes `WRITE_VERSION`. A format change is a
//! new `Layout` variant here, nowhere else.
//!
//! Readers trust nothing they read: every length, count and offset is checked against the
//! file's size (and every block length against the header's bounded block size) before
//! anything is allocated or read, and damage is an `Error::Damaged` naming the file and
//! the offset, never a panic.

pub mod block;
pub mod blockmap;
pub mod blockmap_read;
mod blockmap_runs;
pub mod checkpoint;
pub mod error;
pub mod fast;
pub mod file_table;
pub mod header;
pub mod manifest_files;
pub mod manifest_sum;
pub mod piece;
pub mod read;
pub mod sealed_map;
mod writeback;

pub use block::{
    check_block, check_block_keyed, decode_block, stored_mismatch, stored_mismatch_keyed, unseal_block, FLAG_BOUND,
    FLAG_GCM, FLAG_SEALED, FLAG_ZSTD, SEALED_OVERHEAD,
};
pub use blockmap::{BlockMapWriter, BlockRecord, ParentRef, HOLE_SOURCE};
pub use blockmap_read::{BlockMapReader, RecordIter};
pub use error::{Error, Result};
pub use header::{check_block_size, Header, Kind, Layout, HEADER_LEN, MAX_BLOCK_SIZE, READ_VERSIONS, WRITE_VERSION};
pub use piece::{BlockError, IndexEntry, IndexIter, PieceReader, PieceSummary, PieceWriter, Stored};

#[cfg(test)]
mod mutation;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_chain;
#[cfg(test)]
mod tests_holes;
#[cfg(test)]
mod tests_maps;
#[cfg(test)]
mod tests_sealed;
