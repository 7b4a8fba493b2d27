//! Stopping (budget deadline, cancel) and progress counters shared by the worker threads.
//! The counters are atomics the bindings poll from their own thread, so no worker ever
//! calls back into Python (STYLE.md 4.3 item 8).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Why a verification stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The `budget` deadline passed.
    Budget,
    /// The caller set the cancel flag (Ctrl-C, a closing scheduler).
    Cancelled,
}

/// Live progress, updated by the workers.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes read so far, all files together.
    pub bytes_read: AtomicU64,
    /// Files finished (whatever the outcome).
    pub items_done: AtomicU64,
}

/// How a run may be stopped, and where it reports progress.
#[derive(Debug, Default)]
pub struct Control {
    /// No file is started, and no file is continued, after this instant.
    pub deadline: Option<Instant>,
    /// Set from another thread to stop as soon as possible.
    pub cancel: AtomicBool,
    /// Progress.
    pub counters: Counters,
}

impl Control {
    /// A control with an optional deadline.
    pub fn new(deadline: Option<Instant>) -> Self {
        Self {
            deadline,
            ..Self::default()
        }
    }

    /// Whether the work must stop now, and why.
    pub fn stop(&self) -> Option<StopReason> {
        if self.cancel.load(Ordering::Relaxed) {
            return Some(StopReason::Cancelled);
        }
        match self.deadline {
            Some(d) if Instant::now() >= d => Some(StopReason::Budget),
            _ => None,
        }
    }

    pub(crate) fn add_bytes(&self, n: u64) {
        self.counters.bytes_read.fetch_add(n, Ordering::Relaxed);
    }
}
