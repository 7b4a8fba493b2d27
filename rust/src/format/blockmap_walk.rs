//! One map's own runs in file order, not resolved through its parents: what rewriting a
//! map record by record needs (a copy into another repository's keys moves every block,
//! so each stored record is rewritten and every other run is written again as it is).

use super::{BlockMapReader, Level};
use crate::format::blockmap::BlockRecord;
use crate::format::blockmap_runs::RunKind;
use crate::format::error::{Error, Result};
use crate::format::header::{Layout, HEADER_LEN};

/// Records decoded per read.
const STEP: u64 = 1024;

/// One step of a map's state, in order: what `BlockMapWriter` was asked to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnOp {
    /// A record stored in this map (`at`: its offset in the plain map, for messages).
    Record { at: u64, record: BlockRecord },
    /// `count` blocks that are the parent map's records from `first` on.
    Parent { first: u64, count: u64 },
    /// `count` hole blocks, the last `last_len` bytes.
    Holes { count: u64, last_len: u32 },
    /// `count` blocks that are this map's own records from `first` on.
    Copy { first: u64, count: u64 },
}

fn records(l: &Level, mut at: u64, mut left: u64, visit: &mut dyn FnMut(OwnOp) -> Result<()>) -> Result<()> {
    let rec = l.record_len();
    let mut buf = Vec::new();
    while left > 0 {
        let n = left.min(STEP);
        // n * rec <= STEP * (21 + 64) bytes.
        buf.resize((n * rec) as usize, 0);
        l.read_at(&mut buf, at)?;
        for b in buf.chunks_exact(rec as usize) {
            let record = BlockRecord::decode(l.header.layout, b, l.header.block_size)
                .map_err(|(field, m)| Error::damaged(&l.path, at + field, format!("record at {at}: {m}")))?;
            visit(OwnOp::Record { at, record })?;
            at += rec;
        }
        left -= n;
    }
    Ok(())
}

impl BlockMapReader {
    /// Calls `visit` with every step of the opened map's own state in order (stored
    /// records decoded and checked, other runs as they are), never reading a parent.
    /// Open it with `open_alone`, which has checked that the runs tile the map.
    pub fn walk_own(&self, visit: &mut dyn FnMut(OwnOp) -> Result<()>) -> Result<()> {
        let l = self.top();
        if l.header.layout == Layout::V1 {
            return records(l, HEADER_LEN, l.count, visit);
        }
        let mut v = 0;
        while v < l.count {
            let run = l.run_at(v)?;
            match run.kind {
                RunKind::Stored { at } => records(l, at, run.count, visit)?,
                RunKind::Parent { first } => visit(OwnOp::Parent {
                    first,
                    count: run.count,
                })?,
                RunKind::Hole { last_len } => visit(OwnOp::Holes {
                    count: run.count,
                    last_len,
                })?,
                RunKind::Copy { first } => visit(OwnOp::Copy {
                    first,
                    count: run.count,
                })?,
            }
            v = run.start + run.count;
        }
        Ok(())
    }
}
