//! The process-local rayon pool, and parallel digests of many byte ranges.
//!
//! rayon's global pool does not survive `fork()`: the child inherits the pool's state but
//! not its threads, so the first parallel call in a `multiprocessing` worker or a gunicorn
//! `--preload` child blocks forever (RyanCodrai/turbovec#147, granne/granne#18). We never
//! touch the global pool; every parallel section runs inside a pool that belongs to the
//! current process id, rebuilt on first use after a fork.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};

use super::algorithm::Algorithm;
use super::error::ScanError;

struct Pools {
    pid: u32,
    by_threads: Vec<(usize, Arc<ThreadPool>)>,
}

static POOLS: Mutex<Option<Pools>> = Mutex::new(None);

/// The number of threads `None` means: every core the OS lets us use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// The pool of `threads` workers (all cores for `None`) for this process.
pub fn pool(threads: Option<usize>) -> Result<Arc<ThreadPool>, ScanError> {
    let threads = threads.unwrap_or_else(default_threads).max(1);
    let pid = std::process::id();
    let mut guard = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    if guard.as_ref().is_some_and(|p| p.pid != pid) {
        // Forked: the parent's worker threads do not exist here. Dropping the pools would
        // wake and join threads that are gone, and their locks may have been held at fork
        // time, so they are leaked on purpose (a few hundred bytes per fork).
        if let Some(old) = guard.take() {
            std::mem::forget(old.by_threads);
        }
    }
    let pools = guard.get_or_insert_with(|| Pools {
        pid,
        by_threads: Vec::new(),
    });
    if let Some((_, p)) = pools.by_threads.iter().find(|(n, _)| *n == threads) {
        return Ok(Arc::clone(p));
    }
    let built = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("rustybackup-hash-{i}"))
        .build()
        .map_err(|e| ScanError::ThreadPool(e.to_string()))?;
    let built = Arc::new(built);
    pools.by_threads.push((threads, Arc::clone(&built)));
    Ok(built)
}

/// Runs `f` in this process's default pool (one worker per core). Every parallel step of
/// the engine and the verifier goes through here, never through rayon's global pool:
/// that pool's threads do not exist in a `fork()`ed child (multiprocessing), where the
/// first `par_iter` would wait for them forever. If no pool can be built (threads cannot
/// be spawned), `f` runs on the calling thread.
pub fn in_pool<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match pool(None) {
        Ok(p) => p.install(f),
        Err(_) => f(),
    }
}

/// Runs `f` inside this process's pool of `threads` workers.
pub fn install<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> Result<T, ScanError> {
    Ok(pool(threads)?.install(f))
}

/// Writes the digest of every `block_size` slice of `data` (the last may be short) into
/// `out`, concatenated. Call it inside a pool (`install`); `out` must hold exactly
/// `data.len().div_ceil(block_size) * digest_size` bytes.
pub fn digest_blocks_into(algorithm: Algorithm, data: &[u8], block_size: usize, out: &mut [u8]) {
    let ds = algorithm.digest_size();
    debug_assert_eq!(out.len(), data.len().div_ceil(block_size) * ds);
    out.par_chunks_mut(ds)
        .zip(data.par_chunks(block_size))
        .for_each(|(slot, block)| {
            slot.copy_from_slice(&algorithm.digest(block));
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_pool_is_reused_per_thread_count() {
        let a = pool(Some(2)).unwrap();
        let b = pool(Some(2)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(pool(Some(1)).unwrap().current_num_threads(), 1);
    }
}
