//! A manifest's `files` kept as one table in Rust (docs/FORMAT.md, "Manifest"): the
//! parent's rows a backup matches the walk against, and the new set's rows it writes,
//! without a Python object per unchanged file. `manifest.py` stays the owner of the
//! manifest and its rules: it parses every entry this table cannot hold (xattrs, holes,
//! damage) itself and puts the row of each back here, and it formats every error; this
//! module only reads rows `manifest_files` accepted, answers the consistency questions
//! that need every row (block ranges, paths), and writes rows as `manifest._entry` does.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use super::manifest_files::FileRow;
use super::manifest_sum;

/// What the walk saw of a regular file: restic's rule compares these with the parent's row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
}

/// The first row whose block range breaks the back-to-back rule (`_Consistency.blocks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockFault {
    /// `block_count` is not `ceil(size / block_size)`: the count expected.
    Count { index: usize, expected: u64 },
    /// `first_block` is not right after the previous file: the first block expected.
    First { index: usize, expected: u64 },
}

#[derive(Debug, Default)]
pub struct FileTable {
    rows: Vec<FileRow>,
    /// Path -> position, built on the first lookup (a restore never needs it).
    index: OnceLock<HashMap<String, usize>>,
}

impl FileTable {
    pub fn new(rows: Vec<FileRow>) -> Self {
        FileTable {
            rows,
            index: OnceLock::new(),
        }
    }

    pub fn rows(&self) -> &[FileRow] {
        &self.rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Replaces row `i` (an entry the Python parser read); false when out of range.
    pub fn put(&mut self, i: usize, row: FileRow) -> bool {
        match self.rows.get_mut(i) {
            Some(slot) => {
                *slot = row;
                self.index = OnceLock::new();
                true
            }
            None => false,
        }
    }

    /// The position of `path`; the last row wins, as in a dict built over the rows.
    pub fn position(&self, path: &str) -> Option<usize> {
        let index = self.index.get_or_init(|| {
            let mut m = HashMap::with_capacity(self.rows.len());
            for (i, r) in self.rows.iter().enumerate() {
                m.insert(r.path.clone(), i);
            }
            m
        });
        index.get(path).copied()
    }

    /// The parent's row of a file the walk saw unchanged (issue 17, restic's rule): size,
    /// mtime, ctime, inode and device all equal. A row without an identity (format 1, or
    /// a file that changed while it was read) never matches.
    pub fn unchanged(&self, path: &str, seen: &Seen) -> Option<(usize, &FileRow)> {
        let i = self.position(path)?;
        let r = &self.rows[i];
        let (ctime, ino, dev) = r.identity?;
        let same = r.size == seen.size
            && r.mtime_ns == seen.mtime_ns
            && ctime == seen.ctime_ns
            && ino == seen.ino
            && dev == seen.dev;
        same.then_some((i, r))
    }

    /// The blocks the rows hold in all, or the first row that does not hold
    /// `ceil(size / block_size)` blocks right after the previous one. `block_size` is at
    /// least 1 (the parser bounds it).
    pub fn check_blocks(&self, block_size: u64) -> Result<u64, BlockFault> {
        let bs = block_size.max(1);
        let mut at: u64 = 0;
        for (index, r) in self.rows.iter().enumerate() {
            let expected = r.size.div_ceil(bs);
            if r.block_count != expected {
                return Err(BlockFault::Count { index, expected });
            }
            if r.first_block != at {
                return Err(BlockFault::First { index, expected: at });
            }
            // Both are at most i64::MAX (the parser's bound), so the sum fits a u64.
            at = at.saturating_add(r.block_count);
        }
        Ok(at)
    }

    /// `check_paths` with this table as the files group, then `others` (dirs, symlinks,
    /// hardlinks, specials).
    pub fn check_paths(&self, others: &[Vec<String>]) -> Option<PathFault> {
        let mut groups: Vec<Vec<&str>> = Vec::with_capacity(others.len() + 1);
        groups.push(self.rows.iter().map(|r| r.path.as_str()).collect());
        groups.extend(others.iter().map(|g| g.iter().map(String::as_str).collect()));
        check_paths(&groups)
    }

    /// The `files` list as JSON text, each row as `manifest._entry` writes it; `extras`
    /// holds the JSON text of the rows Python writes itself (xattrs, holes), by position.
    pub fn to_json(&self, extras: &HashMap<usize, String>) -> String {
        let mut out = String::with_capacity(self.rows.len() * 200 + 2);
        self.push_json(&mut out, extras);
        out
    }

    /// A manifest document: `rest`, the one-line JSON object of its other keys, with
    /// this list as its last key `"files"` (a JSON object's key order carries nothing),
    /// and a newline, in one buffer: a 10,000-file manifest is 3.2 MB, and splicing it
    /// in Python cost three more copies (the list's text, the spliced text, its
    /// encoding). None when `rest` is not a JSON object's text.
    /// `sealed`: the document begins with its own checksum (manifest format 4,
    /// `manifest_sum`), written in the same buffer.
    pub fn document(&self, rest: &[u8], extras: &HashMap<usize, String>, sealed: bool) -> Option<Vec<u8>> {
        let body = std::str::from_utf8(rest).ok()?.trim_end().strip_suffix('}')?;
        let open = body.trim_end();
        if !open.starts_with('{') {
            return None;
        }
        let mut out = String::with_capacity(rest.len() + self.rows.len() * 200 + manifest_sum::HEAD.len() + 16);
        if sealed {
            // HEAD is ASCII; the object's own `{` is replaced by it and a comma.
            out.push_str(std::str::from_utf8(manifest_sum::HEAD).ok()?);
            out.push(',');
            out.push_str(&body[1..]);
            out.push_str(if open == "{" { "\"files\":" } else { ",\"files\":" });
        } else {
            out.push_str(body);
            out.push_str(if open == "{" { "\"files\":" } else { ",\"files\":" });
        }
        self.push_json(&mut out, extras);
        out.push_str("}\n");
        let mut doc = out.into_bytes();
        if sealed {
            manifest_sum::finish(&mut doc);
        }
        Some(doc)
    }

    fn push_json(&self, out: &mut String, extras: &HashMap<usize, String>) {
        out.push('[');
        for (i, r) in self.rows.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match extras.get(&i) {
                Some(text) => out.push_str(text),
                None => row_json(out, r),
            }
        }
        out.push(']');
    }
}

/// The first path that breaks `_Consistency.paths`'s rules, over the groups in order
/// (files, dirs, symlinks, hardlinks, specials): `(group, position)` of the entry and of
/// the one it clashes with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathFault {
    /// The path is listed twice: the other listing.
    Twice { at: (usize, usize), seen: (usize, usize) },
    /// The path lies under `prefix`, an entry that is not a directory.
    Under {
        at: (usize, usize),
        prefix: String,
        parent: (usize, usize),
    },
}

/// The group of directories in `check_paths`' order.
pub const DIRS: usize = 1;

/// No path twice, and no entry below one that is not a directory (group `DIRS`).
pub fn check_paths(groups: &[Vec<&str>]) -> Option<PathFault> {
    let total = groups.iter().map(Vec::len).sum();
    let mut where_: HashMap<&str, (usize, usize)> = HashMap::with_capacity(total);
    for (g, paths) in groups.iter().enumerate() {
        for (i, p) in paths.iter().enumerate() {
            let seen = *where_.entry(p).or_insert((g, i));
            if seen != (g, i) {
                return Some(PathFault::Twice { at: (g, i), seen });
            }
        }
    }
    for (g, paths) in groups.iter().enumerate() {
        for (i, p) in paths.iter().enumerate() {
            for (cut, _) in p.match_indices('/') {
                let prefix = &p[..cut];
                if let Some(&parent) = where_.get(prefix) {
                    if parent.0 != DIRS {
                        return Some(PathFault::Under {
                            at: (g, i),
                            prefix: prefix.to_string(),
                            parent,
                        });
                    }
                }
            }
        }
    }
    None
}

fn quoted(out: &mut String, s: &str) {
    // A &str always serializes.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn row_json(out: &mut String, r: &FileRow) {
    // Writing to a String cannot fail.
    out.push_str("{\"path\":");
    quoted(out, &r.path);
    let _ = write!(
        out,
        ",\"mode\":{},\"mtime_ns\":{},\"size\":{},\"digest\":",
        r.mode, r.mtime_ns, r.size
    );
    quoted(out, &r.digest);
    let _ = write!(
        out,
        ",\"first_block\":{},\"block_count\":{}",
        r.first_block, r.block_count
    );
    if let Some((uid, gid, user, group)) = &r.owner {
        let _ = write!(out, ",\"owner\":{{\"uid\":{uid},\"gid\":{gid},\"user\":");
        match user {
            Some(u) => quoted(out, u),
            None => out.push_str("null"),
        }
        out.push_str(",\"group\":");
        match group {
            Some(g) => quoted(out, g),
            None => out.push_str("null"),
        }
        out.push('}');
    }
    if let Some((ctime, ino, dev)) = r.identity {
        let _ = write!(out, ",\"ctime_ns\":{ctime},\"ino\":{ino},\"dev\":{dev}");
    }
    out.push('}');
}

#[cfg(test)]
mod tests;
