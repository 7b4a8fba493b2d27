//! Checks of a set's block map (docs/FORMAT.md "Block map"): without it a restore cannot
//! find any block, so STANDARD and FULL re-hash it like a piece. Parsing is `format`'s.

use std::io;
use std::ops::ControlFlow;

use super::control::Control;
use super::item::{IssueKind, Item, ItemReport};
use super::piece::{check_presence, compare_checksums, format_issue};
use crate::format::BlockMapReader;

/// Runs the STANDARD/FULL checks on a block map (QUICK is `check_presence`).
pub(crate) fn check_blockmap(item: &Item, ctl: &Control, report: &mut ItemReport) {
    if check_presence(item, "block map", report).is_none() {
        return;
    }
    let shown = item.path.display().to_string();
    // Its own bytes only: each map of a chain is an item of its own.
    let map = match BlockMapReader::open_alone(&item.path) {
        Ok(m) => m,
        Err(e) => {
            let kind = match &e {
                crate::format::Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                    IssueKind::Missing
                }
                _ => format_issue(&e),
            };
            report.issue(kind, format!("block map {e}"));
            return;
        }
    };
    match item.algorithm {
        Some(a) if a != map.algorithm() => report.issue(
            IssueKind::CatalogMismatch,
            format!(
                "block map {shown} is hashed with {} but the catalog recorded {}",
                map.algorithm().name(),
                a.name()
            ),
        ),
        _ => {}
    }
    match item.block_count {
        Some(n) if n != map.count() => report.issue(
            IssueKind::CatalogMismatch,
            format!(
                "block map {shown} has {} records but the manifest recorded {n}",
                map.count()
            ),
        ),
        _ => {}
    }
    let mut stopped = None;
    let hashed = map.checksum_with(&mut |n| {
        report.bytes_read += n;
        ctl.add_bytes(n);
        match ctl.stop() {
            Some(reason) => {
                stopped = Some(reason);
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    });
    let actual = match hashed {
        Ok(Some(a)) => a,
        Ok(None) => {
            if let Some(reason) = stopped {
                report.stop(reason);
            }
            return;
        }
        Err(e) => {
            report.issue(format_issue(&e), format!("block map {e}"));
            return;
        }
    };
    let tlen = map.trailer_len();
    report.bytes_read += tlen;
    ctl.add_bytes(tlen);
    compare_checksums(item, "block map", &actual, map.recorded_checksum(), report);
}
