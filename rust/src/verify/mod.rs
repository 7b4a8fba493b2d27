//! Verification of a repository's stored data (DESIGN.md "Verification"): QUICK (exists,
//! size; RMAN's CROSSCHECK), STANDARD (whole-file checksum against the trailer and the
//! catalog; RMAN's VALIDATE), FULL (every block re-hashed against the piece index, every
//! bad block reported; `restic check --read-data`), and the Rust half of RESTORE_TEST
//! (restored files against the manifest and the block map).
//!
//! Pure logic, no PyO3 types. The caller (the bindings) passes what the catalog recorded;
//! this module only reads files and reports what it found: it never stops at the first
//! problem and never turns a damaged file into an error, because a damaged repository is
//! exactly what it exists to describe.

pub mod blockmap;
pub mod control;
pub mod item;
pub mod piece;
pub mod restored;
pub mod run;

#[cfg(test)]
mod tests;

pub use control::{Control, Counters, StopReason};
pub use item::{BadBlock, Issue, IssueKind, Item, ItemKind, ItemReport, Level, Outcome};
pub use restored::{check_restored_file, RestoredFileReport};
pub use run::verify_items;
