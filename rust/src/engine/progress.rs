//! Progress reports and the cancellation hook shared by backup and restore.

use std::ops::ControlFlow;

/// How far a pass has come; sent after every chunk (a few MiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Source bytes read (backup) or restored bytes written (restore).
    pub bytes_read: u64,
    /// Bytes written into the piece (backup) or read from pieces (restore).
    pub bytes_written: u64,
    /// Files finished.
    pub files_done: u64,
}

/// The hook: return `ControlFlow::Break(())` to stop; the pass then ends with
/// `Error::Cancelled` and the caller discards its partial output.
pub type ProgressHook<'a> = &'a mut dyn FnMut(Progress) -> ControlFlow<()>;
