//! The parallel driver: files are started strictly in the given order (the caller puts
//! the least recently verified first, so a budget covers the oldest first) by a small
//! work queue on rayon's pool; each worker takes the next file until the list is done,
//! the deadline passes or the run is cancelled.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::blockmap::check_blockmap;
use super::control::Control;
use super::item::{Item, ItemKind, ItemReport, Level};
use super::piece::{check_piece, check_presence};

/// Verifies `items` at `level`; one report per item, in the items' order. Items not
/// started because of the deadline or a cancel come back as `NotChecked` with `stopped`.
pub fn verify_items(items: &[Item], level: Level, ctl: &Control) -> Vec<ItemReport> {
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<ItemReport>> = Mutex::new(Vec::with_capacity(items.len()));
    // In this process's pool, not rayon's global one (gone after fork()).
    crate::scan::parallel::in_pool(|| {
        let workers = rayon::current_num_threads().max(1).min(items.len().max(1));
        rayon::scope(|s| {
            for _ in 0..workers {
                s.spawn(|_| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let report = verify_one(i, item, level, ctl);
                    ctl.counters.items_done.fetch_add(1, Ordering::Relaxed);
                    // A poisoned lock only means another worker panicked; keep its results.
                    done.lock().unwrap_or_else(|p| p.into_inner()).push(report);
                });
            }
        });
    });
    let mut reports = done.into_inner().unwrap_or_else(|p| p.into_inner());
    reports.sort_by_key(|r| r.position);
    reports
}

/// Verifies one item.
pub fn verify_one(position: usize, item: &Item, level: Level, ctl: &Control) -> ItemReport {
    let started = Instant::now();
    let mut report = ItemReport::new(position);
    if let Some(reason) = ctl.stop() {
        report.stop(reason);
        return report;
    }
    match (level, item.kind) {
        (Level::Quick, _) => {
            let what = if item.kind == ItemKind::Piece {
                "piece"
            } else {
                "block map"
            };
            check_presence(item, what, &mut report);
        }
        (_, ItemKind::Piece) => check_piece(item, level == Level::Full, ctl, &mut report),
        (_, ItemKind::BlockMap) => check_blockmap(item, ctl, &mut report),
    }
    report.elapsed = started.elapsed();
    report
}
