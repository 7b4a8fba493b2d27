//! The backup engine: the one-pass block backup of a list of files and the
//! block-merging restore. Pure logic, no PyO3 types (see DESIGN.md "Layout"); every byte
//! on disk is written and parsed by `crate::format`.

pub mod backup;
pub mod error;
pub(crate) mod holes;
mod prefetch;
pub mod progress;
pub mod restore;
pub mod restore_into;
mod restore_parallel;
pub mod restore_tree;
pub mod resume;
pub mod resume_move;
pub mod tree_meta;

pub use backup::{
    backup_files, backup_files_checked, backup_files_resumable, BackupOptions, BackupOutcome, FileJob, FileOutcome,
    PageChecks, Reused,
};
pub use error::{Error, Result};
pub use progress::{Progress, ProgressHook};
pub use restore::{restore_files, restore_files_keyed, RestoreFile};
pub use restore_into::{dump_file, dump_file_keyed, restore_into, restore_into_keyed, IntoFile};
pub use restore_tree::{restore_tree, TreeFile, TreeOutcome};
pub use resume::{Checkpoint, Resumed, Rule};
pub use tree_meta::{apply_meta, make_dirs, Meta, MetaOptions, Problem};

#[cfg(test)]
mod prefetch_tests;
#[cfg(test)]
mod restore_into_tests;
#[cfg(test)]
mod resume_move_tests;
#[cfg(test)]
mod resume_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tree_meta_tests;
