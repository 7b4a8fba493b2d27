//! Why a chain question could not be answered.

use std::fmt;

/// Errors of the chain logic. Each message names the set (and position) it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// Two rows carry the same set id: the catalog is inconsistent, and guessing which row
    /// is meant could delete or restore the wrong data.
    DuplicateId {
        /// The repeated id.
        id: String,
        /// Position of its first row.
        first: usize,
        /// Position of the second row.
        second: usize,
    },
    /// `recovery_chain` was asked about a set that is not among the rows.
    UnknownSet(String),
    /// A set's parent is not among the rows (deleted, or never registered).
    MissingParent {
        /// The set whose parent is missing.
        id: String,
        /// The missing parent's id.
        parent: String,
    },
    /// Following parent links from this set comes back to it: the catalog is corrupt.
    ParentCycle(String),
    /// More rows than the index can number (about 4 billion).
    TooManySets(usize),
    /// No chain of usable sets reaches the requested point; the text says why.
    NoRecoveryPath(String),
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateId { id, first, second } => {
                write!(
                    f,
                    "set id {id:?} appears twice among the sets (positions {first} and {second})"
                )
            }
            Self::UnknownSet(id) => write!(f, "unknown backup set {id:?}"),
            Self::MissingParent { id, parent } => {
                write!(f, "the parent {parent:?} of backup set {id:?} is not in the catalog")
            }
            Self::ParentCycle(id) => write!(f, "the parent links of backup set {id:?} form a cycle"),
            Self::TooManySets(n) => write!(f, "{n} sets are more than the chain logic can index"),
            Self::NoRecoveryPath(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for ChainError {}
