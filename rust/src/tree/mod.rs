//! The walk of a file tree for a backup, in one pass with no Python object per system
//! call: list each directory, `lstat` each entry through its directory (`fstatat`), read
//! each link's text and each entry's extended attributes, apply the selection rules
//! (`crate::select`, `--exclude-caches`, `--one-file-system`), and do not descend into
//! what is excluded. The Python side (`sources.walk`) turns the result into its entries;
//! what the walk cannot read is reported per entry, the walk goes on (tar and restic do
//! the same). Nothing is followed: links are data, attributes are read with the `l*`
//! calls.

use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::select::PathMatcher;

/// The name of a cache directory's tag and its required first bytes (the Cache
/// Directory Tagging Specification, bford.info/cachedir, as `selection.py` has them).
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
/// The signature a `CACHEDIR.TAG` starts with.
pub const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// An upper bound on one attribute value (the Linux VFS's `XATTR_SIZE_MAX`): a value the
/// kernel reports larger is not read.
const XATTR_SIZE_MAX: usize = 64 << 10;
/// An upper bound on an attribute name list (`XATTR_LIST_MAX`).
const XATTR_LIST_MAX: usize = 64 << 10;

/// What kind of entry the walk found (`lstat`'s file type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A FIFO, character or block device: recorded as a special file.
    Special,
    /// A socket or an unknown type: listed as skipped.
    Other,
}

/// An entry's `lstat`, in `os.stat_result`'s terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub mode: u32,
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime_ns: i128,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub blksize: u64,
    pub blocks: u64,
    pub rdev: u64,
}

impl Stat {
    fn of(m: &fs::Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            mode: m.mode(),
            ino: m.ino(),
            dev: m.dev(),
            nlink: m.nlink(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            atime_ns: ns(m.atime(), m.atime_nsec()),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
            blksize: m.blksize(),
            blocks: m.blocks(),
            rdev: m.rdev(),
        }
    }
}

/// One entry of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `/`-separated path relative to the root (raw bytes, as the file system has them).
    pub rel: OsString,
    pub kind: Kind,
    pub stat: Stat,
    /// A link's text.
    pub target: Option<OsString>,
    /// Extended attributes, sorted by name (not read for `Kind::Other`).
    pub xattrs: Vec<(OsString, Vec<u8>)>,
    /// Attributes that could not be read: the reason, as `fsmeta.read_xattrs` words it.
    pub xattr_problems: Vec<String>,
}

/// An entry the walk could not store, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub rel: OsString,
    pub reason: String,
    /// It vanished (ENOENT) between the listing and its `lstat` or listing.
    pub vanished: bool,
    /// A directory whose listing failed (the directory itself is kept).
    pub directory: bool,
}

/// Whether the regular file at `rel`, `lstat`ed as `stat`, is known to have no extended
/// attributes: its parent set's entry recorded none and it has not changed since (by the
/// rule that takes its data over unread). Setting or removing an attribute, an ACL
/// included, changes the inode's ctime, so its attributes are the parent's.
pub type KnownBare<'a> = &'a (dyn Fn(&[u8], &Stat) -> bool + Sync);

/// What to leave out.
#[derive(Clone, Default)]
pub struct Options<'a> {
    /// Exclude rules (gitignore lines); an excluded directory is not descended into.
    pub matcher: Option<PathMatcher>,
    /// `--exclude-caches`: of a tagged directory keep only the tag.
    pub exclude_caches: bool,
    /// `--one-file-system`: keep a mount point as an empty directory.
    pub one_file_system: bool,
    /// Files whose attributes are not listed again (`KnownBare`): on this VM the
    /// `llistxattr` of each file is a third of an unchanged tree's walk.
    pub known_bare: Option<KnownBare<'a>>,
}

/// The walk's result: entries in listing order (each directory's names sorted by bytes),
/// what it skipped, and how many entries the selection left out (an excluded directory
/// counts once).
#[derive(Clone, Debug, Default)]
pub struct Walk {
    pub entries: Vec<Entry>,
    pub skipped: Vec<Skipped>,
    pub excluded: u64,
}

/// `strerror` of an I/O error: its text without std's " (os error N)".
pub fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Walks the directory `root` (followed if `root` itself is a link, as `Path.stat`
/// does). Only a failure to list `root` itself is an error.
pub fn walk(root: &Path, opts: &Options<'_>) -> io::Result<Walk> {
    let root_dev = fs::metadata(root)?.dev();
    let mut out = Walk::default();
    let names = list(root, opts.exclude_caches, &mut out)?;
    let subdirs = visit(root, b"", names, opts, root_dev, &mut out);
    // The root's subdirectories are walked on the pool, each into its own result, joined
    // in their order: the same entries in the same order as one depth-first walk. The walk
    // is system calls on paths (getdents, fstatat, llistxattr), so on two cores it takes
    // about half the wall time; deeper levels stay serial (no recursion on the pool for a
    // PATH_MAX-deep chain of directories).
    // In this process's pool, never rayon's global one: a fork()ed child (multiprocessing)
    // has none of the global pool's threads and would wait for them forever.
    let parts: Vec<Walk> = crate::scan::parallel::in_pool(|| {
        subdirs
            .into_par_iter()
            .map(|d| {
                let mut part = Walk::default();
                descend(vec![d], opts, root_dev, &mut part);
                part
            })
            .collect()
    });
    for part in parts {
        out.entries.extend(part.entries);
        out.skipped.extend(part.skipped);
        out.excluded += part.excluded;
    }
    Ok(out)
}

/// Lists and visits `dirs` (`(path, "rel/")`, in order) and everything below them, depth
/// first. A directory that cannot be listed is kept (it was recorded by its parent's
/// visit) and its contents are listed as skipped.
fn descend(dirs: Vec<(PathBuf, Vec<u8>)>, opts: &Options<'_>, root_dev: u64, out: &mut Walk) {
    let mut stack: Vec<(PathBuf, Vec<u8>)> = dirs.into_iter().rev().collect();
    while let Some((dir, prefix)) = stack.pop() {
        match list(&dir, opts.exclude_caches, out) {
            Ok(names) => {
                let subdirs = visit(&dir, &prefix, names, opts, root_dev, out);
                // Pushed in reverse so that the first name is listed next (in order).
                stack.extend(subdirs.into_iter().rev());
            }
            Err(e) => {
                let rel = OsString::from_vec(prefix[..prefix.len().saturating_sub(1)].to_vec());
                out.skipped.push(skip(rel, &e, true));
            }
        }
    }
}

/// Records the entries `names` of `dir` (whose relative path is `prefix`, "" or ending
/// in `/`), each `lstat`ed now; returns the subdirectories to descend into.
fn visit(
    dir: &Path,
    prefix: &[u8],
    names: Vec<fs::DirEntry>,
    opts: &Options<'_>,
    root_dev: u64,
    out: &mut Walk,
) -> Vec<(PathBuf, Vec<u8>)> {
    let mut subdirs = Vec::new();
    for e in names {
        let name = e.file_name();
        let mut rel = prefix.to_vec();
        rel.extend_from_slice(name.as_bytes());
        let rel = OsString::from_vec(rel);
        // `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)` on the listed directory.
        let md = match e.metadata() {
            Ok(m) => m,
            Err(err) => {
                out.skipped.push(skip(rel, &err, false));
                continue;
            }
        };
        let ft = md.file_type();
        if let Some(m) = &opts.matcher {
            // A name that is not UTF-8 is matched as shown, with replacement characters.
            if m.matches(&rel.to_string_lossy(), ft.is_dir()) {
                out.excluded += 1;
                continue;
            }
        }
        let path = dir.join(&name);
        let kind = if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            Kind::Special
        } else {
            Kind::Other
        };
        let target = if kind == Kind::Symlink {
            match fs::read_link(&path) {
                Ok(t) => Some(t.into_os_string()),
                Err(err) => {
                    out.skipped.push(skip(rel, &err, false));
                    continue;
                }
            }
        } else {
            None
        };
        let stat = Stat::of(&md);
        let bare = kind == Kind::File && opts.known_bare.is_some_and(|known| known(rel.as_bytes(), &stat));
        let (xattrs, xattr_problems) = if kind == Kind::Other || bare {
            (Vec::new(), Vec::new())
        } else {
            read_xattrs(&path)
        };
        if kind == Kind::Dir && (!opts.one_file_system || md.dev() == root_dev) {
            let mut p = rel.as_bytes().to_vec();
            p.push(b'/');
            subdirs.push((path, p));
        }
        out.entries.push(Entry {
            rel,
            kind,
            stat,
            target,
            xattrs,
            xattr_problems,
        });
    }
    subdirs
}

/// The entries of `dir` sorted by name (not yet `lstat`ed); of a cache directory only
/// its tag, the others counted in `out.excluded`.
fn list(dir: &Path, exclude_caches: bool, out: &mut Walk) -> io::Result<Vec<fs::DirEntry>> {
    let mut names = fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
    // OsString orders by bytes on Unix.
    names.sort_by_cached_key(fs::DirEntry::file_name);
    if exclude_caches && is_cache_dir(dir) {
        let before = names.len();
        names.retain(|e| e.file_name().as_bytes() == CACHEDIR_TAG.as_bytes());
        out.excluded += (before - names.len()) as u64;
    }
    Ok(names)
}

/// Whether `dir` holds a `CACHEDIR.TAG` that starts with the signature (a link so named
/// is not opened).
pub fn is_cache_dir(dir: &Path) -> bool {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut f) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.join(CACHEDIR_TAG))
    else {
        return false;
    };
    let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    &head[..got] == CACHEDIR_SIGNATURE
}

fn skip(rel: OsString, e: &io::Error, directory: bool) -> Skipped {
    let vanished = e.kind() == io::ErrorKind::NotFound;
    let reason = if vanished {
        "vanished during the backup".to_string()
    } else if directory {
        format!("directory cannot be read, its contents are not stored: {}", strerror(e))
    } else {
        format!("cannot be read: {}", strerror(e))
    };
    Skipped {
        rel,
        reason,
        vanished,
        directory,
    }
}

/// No attributes here: not a problem (as `fsmeta._NO_XATTRS`; ENOENT: the entry vanished
/// since it was listed, which the pass that reads it reports once).
fn no_xattrs(errno: i32) -> bool {
    errno == libc::ENOTSUP || errno == libc::EOPNOTSUPP || errno == libc::ENODATA || errno == libc::ENOENT
}

/// Every extended attribute of `path` (not followed), sorted by name, and the problems
/// reading them, worded as `fsmeta.read_xattrs` words them.
pub fn read_xattrs(path: &Path) -> (Vec<(OsString, Vec<u8>)>, Vec<String>) {
    let mut problems = Vec::new();
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return (Vec::new(), problems);
    };
    let names = match list_xattrs(&c) {
        Ok(n) => n,
        Err(e) => {
            if !e.raw_os_error().is_some_and(no_xattrs) {
                problems.push(format!("extended attributes cannot be listed: {}", strerror(&e)));
            }
            return (Vec::new(), problems);
        }
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let Ok(cname) = CString::new(name.as_bytes()) else {
            continue;
        };
        match get_xattr(&c, &cname) {
            Ok(v) => out.push((name, v)),
            // Removed (or the entry vanished) between list and read.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::ENOENT)) => {}
            Err(e) => problems.push(format!(
                "extended attribute {} cannot be read: {}",
                name.to_string_lossy(),
                strerror(&e)
            )),
        }
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    (out, problems)
}

/// `llistxattr`, growing the buffer when the list grew between the size query and the read.
fn list_xattrs(path: &CString) -> io::Result<Vec<OsString>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: `path` is NUL-terminated and `buf` is writable for `buf.len()` bytes.
        let n = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            let n = n as usize;
            return Ok(buf[..n]
                .split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| OsStr::from_bytes(s).to_os_string())
                .collect());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() >= XATTR_LIST_MAX {
            return Err(e);
        }
        // SAFETY: as above; a null buffer of length 0 asks for the size.
        let want = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
        if want < 0 {
            return Err(io::Error::last_os_error());
        }
        buf = vec![0u8; (want as usize).max(buf.len() * 2).min(XATTR_LIST_MAX)];
    }
}

/// `lgetxattr`, growing the buffer up to the kernel's bound.
fn get_xattr(path: &CString, name: &CString) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: both strings are NUL-terminated, `buf` is writable for `buf.len()` bytes.
        let n = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() >= XATTR_SIZE_MAX {
            return Err(e);
        }
        // SAFETY: as above; a null buffer of length 0 asks for the size.
        let want = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
        if want < 0 {
            return Err(io::Error::last_os_error());
        }
        buf = vec![0u8; (want as usize).max(buf.len() * 2).min(XATTR_SIZE_MAX)];
    }
}

#[cfg(test)]
mod tests;
