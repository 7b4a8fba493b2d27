//! The backup engine: piece and block-map formats, the one-pass block backup of a file
//! and the block-merging restore. Pure logic, no PyO3 types (see DESIGN.md "Layout");
//! the on-disk layout is specified in docs/FORMAT.md.

pub mod backup;
pub mod blockmap;
pub mod error;
pub mod piece;
pub mod progress;
pub mod restore;
mod writeback;

pub use backup::{backup_files, BackupOptions, BackupOutcome, FileJob, FileOutcome};
pub use blockmap::{BlockMapReader, BlockMapWriter, BlockRecord};
pub use error::{Error, Result};
pub use piece::{BlockFault, IndexEntry, PieceReader, PieceSummary, PieceWriter};
pub use progress::{Progress, ProgressHook};
pub use restore::{restore_files, RestoreFile};

#[cfg(test)]
mod tests;
