//! The backup engine: piece and block-map formats, the one-pass block backup of a file
//! and the block-merging restore. Pure logic, no PyO3 types (see DESIGN.md "Layout");
//! the on-disk layout is specified in docs/FORMAT.md.

pub mod error;
pub mod piece;

pub use error::{Error, Result};
pub use piece::{BlockFault, IndexEntry, PieceReader, PieceSummary, PieceWriter};
