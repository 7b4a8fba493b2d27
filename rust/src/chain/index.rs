//! An index over catalog rows: id lookup, parent links and chain roots, built in O(n).

use std::cell::OnceCell;
use std::cmp::Ordering;
use std::hash::Hasher;

use super::{BackupKind, ChainError, ChainRecord, SetState};

/// Where a row's parent link leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// No parent (FULL, ARCHIVE_LOG), or a parent that the chain rules ignore.
    None,
    /// A parent id that no row carries: the chain is broken (RMAN: a missing backup piece).
    Missing,
    /// The parent's row position.
    At(u32),
}

/// "No root": the row is an ARCHIVE_LOG or its chain does not reach a FULL.
pub const NO_ROOT: u32 = u32::MAX;
const UNKNOWN: u32 = NO_ROOT - 1;
const VISITING: u32 = NO_ROOT - 2;

/// Rows plus what every chain question needs: each row's parent link, and id lookup.
///
/// Parent links are resolved without hashing when the rows come in time order (either
/// direction), as a catalog query returns them: an INCREMENTAL's parent is the data row
/// just before it (or after it, newest first), a DIFFERENTIAL's the nearest FULL. Only a
/// parent found elsewhere builds the id map, once. Hashing 50,000 ids costs more than the
/// whole resolution, so the common case skips it.
pub struct ChainIndex<'r, R> {
    rows: &'r [R],
    by_id: OnceCell<IdTable>,
    parents: Vec<Link>,
}

impl<'r, R: ChainRecord> ChainIndex<'r, R> {
    /// Indexes `rows`. Ids are not checked for uniqueness here: see
    /// [`ChainIndex::check_unique`] and [`ChainIndex::check_all_unique`].
    pub fn new(rows: &'r [R]) -> Result<Self, ChainError> {
        if rows.len() >= VISITING as usize {
            return Err(ChainError::TooManySets(rows.len()));
        }
        let n = rows.len();
        // Nearest data row and nearest FULL after each position (for newest-first input).
        let mut next_data = vec![NO_ROOT; n];
        let mut next_full = vec![NO_ROOT; n];
        let (mut data, mut full) = (NO_ROOT, NO_ROOT);
        for i in (0..n).rev() {
            next_data[i] = data;
            next_full[i] = full;
            match rows[i].kind() {
                BackupKind::Full => (data, full) = (i as u32, i as u32),
                BackupKind::ArchiveLog => {}
                _ => data = i as u32,
            }
        }
        let mut index = Self {
            rows,
            by_id: OnceCell::new(),
            parents: Vec::with_capacity(n),
        };
        let (mut prev_data, mut prev_full) = (NO_ROOT, NO_ROOT);
        for (i, row) in rows.iter().enumerate() {
            let link = match (row.kind(), row.parent()) {
                // A FULL or ARCHIVE_LOG stands alone whatever its parent column says.
                (BackupKind::Full | BackupKind::ArchiveLog, _) | (_, None) => Link::None,
                (_, Some(p)) => [prev_data, prev_full, next_data[i], next_full[i]]
                    .into_iter()
                    .find(|&j| j != NO_ROOT && rows[j as usize].id() == p)
                    .or_else(|| index.position(p))
                    .map_or(Link::Missing, Link::At),
            };
            index.parents.push(link);
            match row.kind() {
                BackupKind::Full => (prev_data, prev_full) = (i as u32, i as u32),
                BackupKind::ArchiveLog => {}
                _ => prev_data = i as u32,
            }
        }
        Ok(index)
    }

    /// The id table, built on first use (first row wins on a repeated id).
    fn table(&self) -> &IdTable {
        self.by_id.get_or_init(|| {
            let mut table = IdTable::with_capacity(self.rows.len());
            for i in 0..self.rows.len() as u32 {
                table.insert(self.rows, i);
            }
            table
        })
    }

    /// Fails if an id of the rows at `positions` is carried by another row too: an answer
    /// naming it would be ambiguous. Compares precomputed hashes, so it reads no strings
    /// except on a hash match.
    pub fn check_unique(&self, positions: &[u32]) -> Result<(), ChainError> {
        let mut wanted = IdTable::with_capacity(positions.len());
        for &p in positions {
            wanted.insert(self.rows, p);
        }
        for (i, row) in self.rows.iter().enumerate() {
            if let Some(p) = wanted.find(self.rows, row.id_hash(), row.id()) {
                if p != i as u32 {
                    let (first, second) = (p.min(i as u32) as usize, p.max(i as u32) as usize);
                    return Err(ChainError::DuplicateId {
                        id: row.id().to_string(),
                        first,
                        second,
                    });
                }
            }
        }
        Ok(())
    }

    /// Fails if any two rows share an id (retention must never guess which one it deletes).
    pub fn check_all_unique(&self) -> Result<(), ChainError> {
        match self.table().duplicate {
            Some((first, second)) => Err(ChainError::DuplicateId {
                id: self.row(second).id().to_string(),
                first: first as usize,
                second: second as usize,
            }),
            None => Ok(()),
        }
    }

    /// The rows, in input order.
    pub fn rows(&self) -> &'r [R] {
        self.rows
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: u32) -> &'r R {
        &self.rows[i as usize]
    }

    /// Position of the row with this id.
    pub fn position(&self, id: &str) -> Option<u32> {
        self.table().find(self.rows, fx_hash(id), id)
    }

    /// Row `i`'s parent link.
    pub fn parent(&self, i: u32) -> Link {
        self.parents[i as usize]
    }

    /// Newer-than order: by finish, then start, then id, so ties are decided the same way
    /// on every call and on every machine.
    pub fn cmp_age(&self, a: u32, b: u32) -> Ordering {
        let (x, y) = (self.row(a), self.row(b));
        (x.finished_us(), x.started_us(), x.id()).cmp(&(y.finished_us(), y.started_us(), y.id()))
    }

    /// For every row, the position of the FULL its parent chain leads to, or [`NO_ROOT`].
    /// With `usable_only`, every set on the way (the FULL included) must be AVAILABLE.
    /// The chain rules: a DIFFERENTIAL's parent is a FULL; an INCREMENTAL's parent is any
    /// data set; ARCHIVE_LOG sets are never part of a chain. Cycles resolve to NO_ROOT.
    pub fn roots(&self, usable_only: bool) -> Vec<u32> {
        let n = self.rows.len();
        let mut root = vec![UNKNOWN; n];
        let mut stack: Vec<u32> = Vec::new();
        for start in 0..n as u32 {
            if root[start as usize] != UNKNOWN {
                continue;
            }
            stack.push(start);
            while let Some(&top) = stack.last() {
                let row = self.row(top);
                let resolved = if usable_only && row.state() != SetState::Available {
                    Some(NO_ROOT)
                } else {
                    match row.kind() {
                        BackupKind::Full => Some(top),
                        BackupKind::ArchiveLog => Some(NO_ROOT),
                        kind => match self.parent(top) {
                            Link::None | Link::Missing => Some(NO_ROOT),
                            Link::At(p) => {
                                let parent_kind = self.row(p).kind();
                                let fits = match kind {
                                    BackupKind::Differential => parent_kind == BackupKind::Full,
                                    _ => parent_kind.is_data(),
                                };
                                match root[p as usize] {
                                    _ if !fits => Some(NO_ROOT),
                                    UNKNOWN => {
                                        root[top as usize] = VISITING;
                                        stack.push(p);
                                        None
                                    }
                                    VISITING => Some(NO_ROOT),
                                    r => Some(r),
                                }
                            }
                        },
                    }
                };
                if let Some(r) = resolved {
                    root[top as usize] = r;
                    stack.pop();
                }
            }
        }
        root
    }
}

/// Open addressing over row positions keyed by the rows' id hashes: 4 bytes a slot, and
/// a probe reads a string only when the 64-bit hashes agree.
struct IdTable {
    slots: Vec<u32>,
    hashes: Vec<u64>,
    mask: usize,
    /// The first repeated id met while inserting: (first row, second row).
    duplicate: Option<(u32, u32)>,
}

impl IdTable {
    fn with_capacity(n: usize) -> Self {
        let size = (n.max(4) * 2).next_power_of_two();
        Self {
            slots: vec![NO_ROOT; size],
            hashes: vec![0; size],
            mask: size - 1,
            duplicate: None,
        }
    }

    fn insert<R: ChainRecord>(&mut self, rows: &[R], i: u32) {
        let row = &rows[i as usize];
        let hash = row.id_hash();
        let mut at = hash as usize & self.mask;
        loop {
            let slot = self.slots[at];
            if slot == NO_ROOT {
                self.slots[at] = i;
                self.hashes[at] = hash;
                return;
            }
            if self.hashes[at] == hash && rows[slot as usize].id() == row.id() {
                self.duplicate.get_or_insert((slot, i));
                return;
            }
            at = (at + 1) & self.mask;
        }
    }

    fn find<R: ChainRecord>(&self, rows: &[R], hash: u64, id: &str) -> Option<u32> {
        let mut at = hash as usize & self.mask;
        loop {
            let slot = self.slots[at];
            if slot == NO_ROOT {
                return None;
            }
            if self.hashes[at] == hash && rows[slot as usize].id() == id {
                return Some(slot);
            }
            at = (at + 1) & self.mask;
        }
    }
}

/// The hash every id is indexed by.
pub fn fx_hash(id: &str) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(id.as_bytes());
    hasher.finish()
}

/// rustc's FxHash: set ids are short strings we generate ourselves, so HashDoS resistance
/// buys nothing here, and SipHash would cost a third of the 5 ms budget on 50,000 rows.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits weak and hashbrown picks buckets by them;
        // rustc-hash 2 rotates for the same reason.
        self.hash.rotate_left(26)
    }
}
