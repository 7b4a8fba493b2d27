//! Chain logic over catalog records: recovery paths (`recovery`, which owns the rules),
//! the instants they can reach (`recoverable`) and retention (`retention`), over rows the
//! caller passes ([`ChainRows`] when Python handed them over once). Pure: the caller
//! queried the records; nothing here does I/O.

/// What a backup set holds; mirrors Python's `BackupType` (same lower-case names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackupKind {
    /// Every block.
    Full,
    /// Blocks changed since the previous set of any type in the chain.
    Incremental,
    /// Blocks changed since the last FULL.
    Differential,
    /// New files of the database's archive directory (WAL / redo logs).
    ArchiveLog,
}

impl BackupKind {
    /// Parses the lower-case name Python's `BackupType` uses.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "full" => Some(Self::Full),
            "incremental" => Some(Self::Incremental),
            "differential" => Some(Self::Differential),
            "archive_log" => Some(Self::ArchiveLog),
            _ => None,
        }
    }

    /// The lower-case name, as stored in the catalog.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incremental",
            Self::Differential => "differential",
            Self::ArchiveLog => "archive_log",
        }
    }
}

/// A set's standing; mirrors Python's `SetStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetState {
    /// Usable for recovery.
    Available,
    /// Verification found damage; recovery paths avoid it.
    Corrupt,
    /// Its pieces are gone (crosscheck); recovery paths avoid it.
    Expired,
}

impl SetState {
    /// Parses the lower-case name Python's `SetStatus` uses.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "available" => Some(Self::Available),
            "corrupt" => Some(Self::Corrupt),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }

    /// The lower-case name, as stored in the catalog.
    pub fn name(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Corrupt => "corrupt",
            Self::Expired => "expired",
        }
    }
}

/// One catalog row as the chain logic needs it. Times are microseconds since the Unix
/// epoch (UTC), so comparisons are exact and zone-free.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetRecord {
    /// The set id.
    pub id: String,
    /// Its backup type.
    pub kind: BackupKind,
    /// The set it was taken against (None for FULL and ARCHIVE_LOG).
    pub parent: Option<String>,
    /// When the backup started.
    pub started_us: i64,
    /// When it finished; `until` compares with this.
    pub finished_us: i64,
    /// Its standing.
    pub state: SetState,
}

impl BackupKind {
    /// FULL, INCREMENTAL and DIFFERENTIAL hold blocks and form chains; ARCHIVE_LOG does not.
    pub fn is_data(self) -> bool {
        !matches!(self, Self::ArchiveLog)
    }

    /// The upper-case name used in messages ("needed by INCREMENTAL x"), as RMAN prints levels.
    pub fn label(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Incremental => "INCREMENTAL",
            Self::Differential => "DIFFERENTIAL",
            Self::ArchiveLog => "ARCHIVE_LOG",
        }
    }
}

impl SetState {
    /// The upper-case name used in messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Available => "AVAILABLE",
            Self::Corrupt => "CORRUPT",
            Self::Expired => "EXPIRED",
        }
    }
}

/// Read access to one catalog row. The chain logic is generic over it, so the bindings can
/// hand in rows that borrow the caller's strings ([`SetRef`]) and the engine can use owned
/// [`SetRecord`]s, without copying either into the other.
pub trait ChainRecord {
    /// The set id.
    fn id(&self) -> &str;
    /// Its backup type.
    fn kind(&self) -> BackupKind;
    /// The id of the set it was taken against, if any.
    fn parent(&self) -> Option<&str>;
    /// Start, µs since the epoch (UTC).
    fn started_us(&self) -> i64;
    /// Finish, µs since the epoch (UTC).
    fn finished_us(&self) -> i64;
    /// Its standing.
    fn state(&self) -> SetState;
    /// `index::fx_hash(self.id())`; rows that cache it save re-reading the id string.
    fn id_hash(&self) -> u64 {
        index::fx_hash(self.id())
    }
}

impl ChainRecord for SetRecord {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> BackupKind {
        self.kind
    }
    fn parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }
    fn started_us(&self) -> i64 {
        self.started_us
    }
    fn finished_us(&self) -> i64 {
        self.finished_us
    }
    fn state(&self) -> SetState {
        self.state
    }
}

/// A catalog row that borrows its strings (from Python objects kept alive by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetRef<'a> {
    /// The set id.
    pub id: &'a str,
    /// Its backup type.
    pub kind: BackupKind,
    /// The set it was taken against.
    pub parent: Option<&'a str>,
    /// Start, µs since the epoch (UTC).
    pub started_us: i64,
    /// Finish, µs since the epoch (UTC).
    pub finished_us: i64,
    /// Its standing.
    pub state: SetState,
    /// `fx_hash(id)`, computed while the id is in cache (see [`SetRef::new`]).
    pub id_hash: u64,
}

impl<'a> SetRef<'a> {
    /// A row; hashes its id now, while the caller has the string in cache.
    pub fn new(
        id: &'a str,
        kind: BackupKind,
        parent: Option<&'a str>,
        started_us: i64,
        finished_us: i64,
        state: SetState,
    ) -> Self {
        Self {
            id,
            kind,
            parent,
            started_us,
            finished_us,
            state,
            id_hash: index::fx_hash(id),
        }
    }
}

impl ChainRecord for SetRef<'_> {
    fn id_hash(&self) -> u64 {
        self.id_hash
    }
    fn id(&self) -> &str {
        self.id
    }
    fn kind(&self) -> BackupKind {
        self.kind
    }
    fn parent(&self) -> Option<&str> {
        self.parent
    }
    fn started_us(&self) -> i64 {
        self.started_us
    }
    fn finished_us(&self) -> i64 {
        self.finished_us
    }
    fn state(&self) -> SetState {
        self.state
    }
}

mod error;
mod index;
pub mod recoverable;
pub mod recovery;
pub mod retention;
mod rows;
mod time;

pub use error::ChainError;
pub use index::{fx_hash, ChainIndex};
pub use rows::ChainRows;
