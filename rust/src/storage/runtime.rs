//! The one tokio runtime of the storage layer, created on first use. object_store is async;
//! callers here are synchronous (the Python bindings, the engine), so every operation runs
//! through `block_on`. Two worker threads are enough to keep several uploads in flight: the
//! work is network-bound and hashing happens in the HTTP client's request path.
//!
//! A runtime does not survive `fork()` (its worker threads are gone in the child), so it is
//! keyed by process id, as the rayon pool of the scan module is.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::runtime::{Builder, Runtime};

use super::error::{Result, StorageError};

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// The process's storage runtime (a new one in a forked child).
pub fn runtime() -> Result<Arc<Runtime>> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, rt)) = slot.as_ref() {
        if *owner == pid {
            return Ok(Arc::clone(rt));
        }
    }
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rustybackup-storage")
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| StorageError::Runtime(e.to_string()))?;
    let rt = Arc::new(rt);
    if let Some((_, old)) = slot.take() {
        // The parent's runtime has no threads in this child; dropping it would try to join
        // them, so it is leaked on purpose.
        std::mem::forget(old);
    }
    *slot = Some((pid, Arc::clone(&rt)));
    Ok(rt)
}

/// Runs `fut` to completion on the storage runtime.
pub fn block_on<F: Future>(fut: F) -> Result<F::Output> {
    let rt = runtime()?;
    Ok(rt.block_on(fut))
}
