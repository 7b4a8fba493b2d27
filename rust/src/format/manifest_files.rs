//! The `files` table of a set's `manifest.json` (docs/FORMAT.md, "Manifest"), read in
//! one pass without a Python object per JSON value. `manifest.py` stays the one owner of
//! the manifest and of its rules: this module accepts only entries that its fast path
//! accepts unchanged (the seven keys, plus a well-formed identity and owner), and hands
//! every other entry back as its exact JSON text, so the Python parser names what is
//! wrong with the same words and reads the rarer keys (xattrs, holes) itself. A document
//! this module cannot read the way Python's `json` does (not UTF-8, `NaN`, nesting past
//! serde's limit) is not split at all: the caller parses it whole, as before.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rayon::prelude::*;
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

/// `(uid, gid, user, group)` as `manifest.Owner` has them.
pub type OwnerRow = (u32, u32, Option<String>, Option<String>);

/// A file entry the fast rules accept, in `manifest.FileEntry`'s field order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRow {
    pub path: String,
    pub mode: u32,
    pub mtime_ns: i64,
    pub size: u64,
    pub digest: String,
    pub first_block: u64,
    pub block_count: u64,
    pub owner: Option<OwnerRow>,
    /// `(ctime_ns, ino, dev)`: all three or none.
    pub identity: Option<(i64, u64, u64)>,
}

/// One entry of `files`, in document order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    Row(FileRow),
    /// The entry's JSON text as written: for the Python parser (damage, xattrs, holes).
    Raw(String),
}

/// A manifest document split in two: its `files` entries, and the JSON text of the
/// top-level object without them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// None when the document has no `files` key or its value is not a list (the rest
    /// then keeps it, and the Python parser reports it).
    pub files: Option<Vec<Slot>>,
    /// Where the `files` list lies in the document (byte offsets), when it is one.
    pub files_at: Option<(usize, usize)>,
    /// The `files` list's text is byte for byte the `known` text `split_known` was
    /// given: it was not read again (`files` is None, `files_at` set).
    pub known: bool,
    pub rest: String,
}

/// Hex digits of each algorithm's digest (`manifest.DIGEST_HEX`).
pub fn digest_hex_len(algorithm: &str) -> Option<usize> {
    match algorithm {
        "md5" => Some(32),
        "sha1" => Some(40),
        "sha256" | "blake3" => Some(64),
        "sha512" => Some(128),
        _ => None,
    }
}

/// Splits `doc`; None when it is not a JSON object this module reads (see the module
/// comment): the caller then decodes the whole document itself.
pub fn split(doc: &[u8]) -> Option<Split> {
    split_known(doc, None)
}

/// `split`, except that a `files` list whose text is `known` (the text of a list this
/// reader read before) is not read again: the caller has its result.
pub fn split_known(doc: &[u8], known: Option<&[u8]>) -> Option<Split> {
    let text = std::str::from_utf8(doc).ok()?;
    // Last key wins, as in Python's json; the order of the rest does not matter to a
    // dict.
    let top: BTreeMap<String, &RawValue> = serde_json::from_str(text).ok()?;
    let hex = top
        .get("set")
        .and_then(|s| serde_json::from_str::<Map<String, Value>>(s.get()).ok())
        .and_then(|s| s.get("algorithm").and_then(Value::as_str).and_then(digest_hex_len));
    // The value's offsets in `text` (it borrows from it).
    let at = |raw: &RawValue| {
        let start = (raw.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        (start, start + raw.get().len())
    };
    let files_at = top.get("files").map(|raw| at(raw));
    let known = matches!((top.get("files"), known), (Some(raw), Some(k)) if raw.get().as_bytes() == k);
    let files = match top.get("files") {
        _ if known => None,
        Some(raw) => match serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
            // Entries are read on the pool (in order): the typed reads are most of a
            // manifest's parse, done for the parent and again for the check of the new one.
            Ok(list) => Some(crate::scan::parallel::in_pool(|| {
                list.into_par_iter().with_min_len(512).map(|e| slot(e, hex)).collect()
            })),
            Err(_) => None,
        },
        None => None,
    };
    let mut rest = String::with_capacity(text.len().min(1 << 16));
    rest.push('{');
    for (key, value) in &top {
        if (files.is_some() || known) && key == "files" {
            continue;
        }
        if rest.len() > 1 {
            rest.push(',');
        }
        // A String always serializes.
        rest.push_str(&serde_json::to_string(key).unwrap_or_default());
        rest.push(':');
        rest.push_str(value.get());
    }
    rest.push('}');
    let files_at = files_at.filter(|_| files.is_some() || known);
    Some(Split {
        files,
        files_at,
        known,
        rest,
    })
}

fn slot(raw: &RawValue, hex: Option<usize>) -> Slot {
    let row = hex.and_then(|n| {
        // Most entries read straight into a typed row; anything the typed reader refuses
        // or cannot tell apart (a duplicate key, a null, a missing identity part) takes
        // the general path below, which decides as before.
        if let Some(r) = fast_row(raw.get(), n) {
            return Some(r);
        }
        let o = serde_json::from_str::<Map<String, Value>>(raw.get()).ok()?;
        row(&o, n)
    });
    match row {
        Some(r) => Slot::Row(r),
        None => Slot::Raw(raw.get().to_string()),
    }
}

/// An entry with exactly the keys `row` accepts, borrowed from the document.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Typed<'a> {
    #[serde(borrow)]
    path: Cow<'a, str>,
    mode: u32,
    mtime_ns: i64,
    size: u64,
    #[serde(borrow)]
    digest: Cow<'a, str>,
    first_block: u64,
    block_count: u64,
    // Raw, because serde reads a struct from a JSON array too (`[0, 0]` as uid and
    // gid), which the Python parser refuses; the object check is done before parsing.
    #[serde(default, borrow)]
    owner: Option<&'a RawValue>,
    #[serde(default)]
    ctime_ns: Option<i64>,
    #[serde(default)]
    ino: Option<u64>,
    #[serde(default)]
    dev: Option<u64>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TypedOwner<'a> {
    uid: u32,
    gid: u32,
    #[serde(default, borrow)]
    user: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    group: Option<Cow<'a, str>>,
}

/// `row` for the common entry, without a `Value` per field; None when the general path
/// must decide (it gives the same answer for everything this accepts).
fn fast_row(text: &str, hex: usize) -> Option<FileRow> {
    let object = |raw: &str| raw.trim_start().starts_with('{');
    if !object(text) {
        return None;
    }
    let t: Typed<'_> = serde_json::from_str(text).ok()?;
    // serde reads a key given as null like a missing one; `row` does not.
    let absent = |key: &str| !text.contains(key);
    let identity = match (t.ctime_ns, t.ino, t.dev) {
        (Some(c), Some(i), Some(d)) => Some((c, i, d)),
        (None, None, None) if absent("\"ctime_ns\"") && absent("\"ino\"") && absent("\"dev\"") => None,
        _ => return None,
    };
    if t.owner.is_none() && !absent("\"owner\"") {
        return None;
    }
    let owner = match t.owner {
        None => None,
        Some(raw) => {
            if !object(raw.get()) {
                return None;
            }
            let o: TypedOwner<'_> = serde_json::from_str(raw.get()).ok()?;
            let name = |n: Option<Cow<'_, str>>| -> Option<Option<String>> {
                match n {
                    None => Some(None),
                    Some(s) if !s.is_empty() && !s.contains('\0') => Some(Some(s.into_owned())),
                    Some(_) => None,
                }
            };
            Some((o.uid, o.gid, name(o.user)?, name(o.group)?))
        }
    };
    let digest_ok = t.digest.len() == hex
        && t.digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let ok = rel_path_ok(&t.path)
        && t.mode <= 0o7777
        && t.size <= I64_MAX
        && t.first_block <= I64_MAX
        && t.block_count <= I64_MAX
        && digest_ok;
    ok.then(|| FileRow {
        path: t.path.into_owned(),
        mode: t.mode,
        mtime_ns: t.mtime_ns,
        size: t.size,
        digest: t.digest.into_owned(),
        first_block: t.first_block,
        block_count: t.block_count,
        owner,
        identity,
    })
}

const BASE: [&str; 7] = [
    "path",
    "mode",
    "mtime_ns",
    "size",
    "digest",
    "first_block",
    "block_count",
];
const I64_MAX: u64 = i64::MAX as u64;

/// `manifest._Parser.file`'s fast path: the entry as a row when it is well-formed and
/// has no key beyond the seven, the identity and the owner; None sends it to the Python
/// parser.
fn row(o: &Map<String, Value>, hex: usize) -> Option<FileRow> {
    let path = o.get("path")?.as_str()?;
    if !rel_path_ok(path) {
        return None;
    }
    let mode = uint(o.get("mode")?, 0o7777)?;
    let mtime_ns = int(o.get("mtime_ns")?)?;
    let size = uint(o.get("size")?, I64_MAX)?;
    let digest = o.get("digest")?.as_str()?;
    if digest.len() != hex || !digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let first_block = uint(o.get("first_block")?, I64_MAX)?;
    let block_count = uint(o.get("block_count")?, I64_MAX)?;
    let identity = match (o.get("ctime_ns"), o.get("ino"), o.get("dev")) {
        (Some(c), Some(i), Some(d)) => (|| Some((int(c)?, uint(i, u64::MAX)?, uint(d, u64::MAX)?)))(),
        _ => None,
    };
    let owner = o.get("owner").and_then(owner);
    let expected = BASE.len() + if identity.is_some() { 3 } else { 0 } + usize::from(owner.is_some());
    if o.len() != expected {
        return None;
    }
    Some(FileRow {
        path: path.to_string(),
        mode: u32::try_from(mode).ok()?,
        mtime_ns,
        size,
        digest: digest.to_string(),
        first_block,
        block_count,
        owner,
        identity,
    })
}

/// `manifest._owner_ok`.
fn owner(v: &Value) -> Option<OwnerRow> {
    let o = v.as_object()?;
    if !o.keys().all(|k| matches!(k.as_str(), "uid" | "gid" | "user" | "group")) {
        return None;
    }
    let uid = u32::try_from(uint(o.get("uid")?, u64::from(u32::MAX))?).ok()?;
    let gid = u32::try_from(uint(o.get("gid")?, u64::from(u32::MAX))?).ok()?;
    let name = |key: &str| -> Option<Option<String>> {
        match o.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) if !s.is_empty() && !s.contains('\0') => Some(Some(s.clone())),
            Some(_) => None,
        }
    };
    Some((uid, gid, name("user")?, name("group")?))
}

/// An integer (never a float or a bool) in `0..=hi`.
fn uint(v: &Value, hi: u64) -> Option<u64> {
    match v {
        Value::Number(n) if is_int(n) => n.as_u64().filter(|x| *x <= hi),
        _ => None,
    }
}

/// An integer in i64's range.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) if is_int(n) => n.as_i64(),
        _ => None,
    }
}

fn is_int(n: &Number) -> bool {
    n.is_i64() || n.is_u64()
}

/// `manifest._Parser.rel_path`: non-empty, no NUL, and no empty, `.` or `..` component
/// (which also rules out an absolute path).
pub fn rel_path_ok(path: &str) -> bool {
    !path.is_empty() && !path.contains('\0') && path.split('/').all(|c| !matches!(c, "" | "." | ".."))
}

#[cfg(test)]
mod tests;
