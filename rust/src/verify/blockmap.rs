//! Checks of a set's block map (docs/FORMAT.md "Block map"): without it a restore cannot
//! find any block, so STANDARD and FULL re-hash it like a piece. Parsing is `format`'s.

use std::io;
use std::ops::ControlFlow;

use super::control::Control;
use super::item::{IssueKind, Item, ItemReport};
use super::piece::{check_presence, compare_checksums, format_issue};
use crate::format::read::hash_prefix;
use crate::format::{sealed_map, BlockMapReader};

/// Runs the STANDARD/FULL checks on a block map (QUICK is `check_presence`).
pub(crate) fn check_blockmap(item: &Item, ctl: &Control, report: &mut ItemReport) {
    if check_presence(item, "block map", report).is_none() {
        return;
    }
    if matches!(sealed_map::is_sealed(&item.path), Ok(true)) && !sealed_map::key_loaded(&item.path) {
        check_sealed_container(item, ctl, report);
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
    let hashed = hash_reporting(ctl, report, &mut |on| map.checksum_with(on));
    finish(item, ctl, report, hashed, map.trailer_len(), map.recorded_checksum());
}

/// A sealed map checked without its key (docs/FORMAT.md "Sealed block map"): its
/// container's header and trailer against its size, and its checksum over every stored
/// byte; the records inside need the key (FULL, or STANDARD with the key, check them).
fn check_sealed_container(item: &Item, ctl: &Control, report: &mut ItemReport) {
    let shown = item.path.display().to_string();
    let sealed = match sealed_map::SealedFile::open(&item.path) {
        Ok(s) => s,
        Err(e) => {
            report.issue(format_issue(&e), format!("block map {e}"));
            return;
        }
    };
    if let Some(a) = item.algorithm.filter(|a| *a != sealed.algorithm) {
        report.issue(
            IssueKind::CatalogMismatch,
            format!(
                "block map {shown} is hashed with {} but the catalog recorded {}",
                sealed.algorithm.name(),
                a.name()
            ),
        );
    }
    let hashed = hash_reporting(ctl, report, &mut |on| {
        hash_prefix(&sealed.file, &item.path, sealed.algorithm, sealed.trailer_at(), on)
    });
    finish(
        item,
        ctl,
        report,
        hashed,
        sealed_map::SEALED_TRAILER_LEN,
        &sealed.checksum,
    );
}

/// A checksum pass over a map's bytes, given what to call after each step.
type ChecksumPass<'a> =
    dyn FnMut(&mut dyn FnMut(u64) -> ControlFlow<()>) -> crate::format::Result<Option<Vec<u8>>> + 'a;

type Hashed = (
    crate::format::Result<Option<Vec<u8>>>,
    Option<super::control::StopReason>,
);

/// Runs a checksum pass, counting its bytes and honouring a stop request.
fn hash_reporting(ctl: &Control, report: &mut ItemReport, pass: &mut ChecksumPass<'_>) -> Hashed {
    let mut stopped = None;
    let hashed = pass(&mut |n| {
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
    (hashed, stopped)
}

fn finish(item: &Item, ctl: &Control, report: &mut ItemReport, hashed: Hashed, tlen: u64, recorded: &[u8]) {
    let (hashed, stopped) = hashed;
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
    report.bytes_read += tlen;
    ctl.add_bytes(tlen);
    compare_checksums(item, "block map", &actual, recorded, report);
}
