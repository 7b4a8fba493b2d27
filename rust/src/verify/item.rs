//! What to verify (an `Item`: a piece or a block map, with what the catalog recorded for
//! it) and what was found (an `ItemReport`).

use std::path::PathBuf;
use std::time::Duration;

use super::control::StopReason;
use crate::scan::algorithm::Algorithm;

/// How deep a verification reads; RESTORE_TEST is orchestrated by Python on top of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// Exists with the recorded size (metadata only, no data read).
    Quick,
    /// The whole file re-hashed once and compared with its trailer and the catalog.
    Standard,
    /// STANDARD plus every block decoded and re-hashed against the index, in the same pass.
    Full,
}

impl Level {
    /// Parses the lower-case name Python's `VerificationType` uses.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "quick" => Some(Self::Quick),
            "standard" => Some(Self::Standard),
            "full" => Some(Self::Full),
            _ => None,
        }
    }

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Quick => "quick",
            Self::Standard => "standard",
            Self::Full => "full",
        }
    }
}

/// The two kinds of stored file a set has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// A `*.piece` (block data + index + trailer).
    Piece,
    /// A set's `blockmap`.
    BlockMap,
}

/// One file to verify, with what the catalog says about it. Every recorded field is
/// optional: a catalog row can be damaged too, and that is a finding, not a crash.
#[derive(Clone, Debug)]
pub struct Item {
    /// The catalog id of the piece (or `<set>/blockmap`).
    pub id: String,
    /// The set the file belongs to.
    pub set_id: String,
    /// Piece or block map.
    pub kind: ItemKind,
    /// Absolute path of the file.
    pub path: PathBuf,
    /// Size recorded in the catalog.
    pub size: Option<u64>,
    /// Hex checksum recorded in the catalog.
    pub checksum: Option<String>,
    /// Algorithm recorded in the catalog.
    pub algorithm: Option<Algorithm>,
    /// Number of blocks (or block-map records) recorded in the catalog.
    pub block_count: Option<u64>,
    /// The keys of an encrypted set's sealed blocks (FULL opens and checks each one);
    /// QUICK and STANDARD never need them.
    pub key: Option<crate::crypto::BlockKey>,
}

/// What kind of problem an `Issue` is; the names reach Python as lower-case strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IssueKind {
    /// The file does not exist (RMAN: EXPIRED piece).
    Missing,
    /// The file's size differs from the catalog's (truncated, extended or replaced).
    WrongSize,
    /// Header or trailer unreadable: not this format, truncated, overwritten.
    Unreadable,
    /// The bytes no longer hash to the trailer checksum.
    BadChecksum,
    /// The file is intact but is not the one the catalog recorded (other checksum,
    /// algorithm or block count): a piece swapped in from another set, or a bad catalog row.
    CatalogMismatch,
    /// The catalog row itself cannot be used (no size, unknown algorithm, ...).
    BadCatalogRow,
    /// One block does not hash to its indexed digest (or does not decompress).
    CorruptBlock,
    /// An index entry points outside the data area or out of order.
    BadIndex,
    /// An operating-system error other than "not found" while reading.
    Io,
}

impl IssueKind {
    /// The lower-case name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::WrongSize => "wrong_size",
            Self::Unreadable => "unreadable",
            Self::BadChecksum => "bad_checksum",
            Self::CatalogMismatch => "catalog_mismatch",
            Self::BadCatalogRow => "bad_catalog_row",
            Self::CorruptBlock => "corrupt_block",
            Self::BadIndex => "bad_index",
            Self::Io => "io_error",
        }
    }
}

/// One problem with one file; `message` names the file and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// The category.
    pub kind: IssueKind,
    /// Human-readable, names the file (and the block when there is one).
    pub message: String,
}

/// A block whose stored bytes do not match its indexed digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadBlock {
    /// Number of the file in the owning set's manifest `files` list.
    pub file_no: u32,
    /// Block number inside that file.
    pub block_index: u64,
    /// Offset of the stored bytes in the piece.
    pub offset: u64,
    /// Hex digest recorded in the index.
    pub expected: String,
    /// Hex digest of what was read, or why it could not be decoded ("zstd: ...").
    pub actual: String,
}

/// How a file came out, worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Every check at the requested level passed.
    Ok,
    /// The file is gone.
    Missing,
    /// Present but damaged or not what the catalog recorded.
    Damaged,
    /// Not (fully) checked: the budget ran out or the caller cancelled.
    NotChecked,
}

impl Outcome {
    /// The lower-case name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Missing => "missing",
            Self::Damaged => "damaged",
            Self::NotChecked => "not_checked",
        }
    }
}

/// Everything found about one `Item`.
#[derive(Clone, Debug)]
pub struct ItemReport {
    /// Index of the item in the list given to `verify_items`.
    pub position: usize,
    /// The overall result.
    pub outcome: Outcome,
    /// Every problem found, in the order found.
    pub issues: Vec<Issue>,
    /// Every bad block (FULL only), in index order.
    pub bad_blocks: Vec<BadBlock>,
    /// Bytes read from the file.
    pub bytes_read: u64,
    /// Wall time spent on this file.
    pub elapsed: Duration,
    /// Set when the check stopped before the end (the file is then not verified).
    pub stopped: Option<StopReason>,
}

impl ItemReport {
    pub(crate) fn new(position: usize) -> Self {
        Self {
            position,
            outcome: Outcome::Ok,
            issues: Vec::new(),
            bad_blocks: Vec::new(),
            bytes_read: 0,
            elapsed: Duration::ZERO,
            stopped: None,
        }
    }

    /// Marks the check as cut short; damage already found stays reported.
    pub(crate) fn stop(&mut self, reason: StopReason) {
        self.stopped = Some(reason);
        if self.outcome == Outcome::Ok {
            self.outcome = Outcome::NotChecked;
        }
    }

    pub(crate) fn issue(&mut self, kind: IssueKind, message: String) {
        self.issues.push(Issue { kind, message });
        let outcome = if kind == IssueKind::Missing {
            Outcome::Missing
        } else {
            Outcome::Damaged
        };
        if self.outcome == Outcome::Ok {
            self.outcome = outcome;
        }
    }
}
