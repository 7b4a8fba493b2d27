//! The restore target below its root, reached one component at a time with
//! `O_NOFOLLOW` (the rules of python/rustybackup/restore_target.py, in one GIL-free
//! pass): directories created and checked, and the metadata of restored entries (owner,
//! xattrs, mode, mtime to the nanosecond) applied through descriptors, never through a
//! link. What the system refuses (an owner as a non-root user, an xattr namespace the
//! file system lacks) is a [`Problem`] for the report, not an error.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use crate::tree::strerror;

/// What to set on one restored entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits with setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// `(uid, gid)` to give it; None: the set recorded no owner.
    pub owner: Option<(u32, u32)>,
    /// Extended attributes `(name, value)`.
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

/// How metadata is applied to a whole restore.
#[derive(Clone, Copy, Debug, Default)]
pub struct MetaOptions {
    /// Apply owners (restoring as root); otherwise an owner that differs is reported.
    pub chown: bool,
    /// The set recorded every xattr (manifest format 2): others found on the entry in
    /// the namespaces a backup reads are removed.
    pub exact_xattrs: bool,
    /// The entry was just created (`O_EXCL`) in a directory without a default ACL: it
    /// holds no attribute an exact restore would remove (user.* and trusted.* are never
    /// inherited, an access ACL only from a default one), so the listing is skipped when
    /// the set gives it no xattrs (a system call per restored file).
    pub fresh: bool,
}

/// Whether files created in the directory `dir` inherit an access ACL (it has a default
/// ACL). Unknown (any error but "none", "no ACLs here") counts as yes.
pub(crate) fn inherits_acl(dir: BorrowedFd<'_>) -> bool {
    // SAFETY: a NUL-terminated name; a size query (no buffer) on an open descriptor.
    let n = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            c"system.posix_acl_default".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    n >= 0
        || !matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ENODATA | libc::EOPNOTSUPP)
        )
}

/// One thing not restored as it was backed up: entry `index` of the batch, what
/// (`owner`, `mode`, `xattr NAME`) and why. An owner that differs as a non-root user is
/// `("owner", "not applied: restoring as non-root")`: the caller names the owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub index: usize,
    pub what: String,
    pub reason: String,
}

/// The namespaces whose attributes an exact restore removes when the set lacks them
/// (security.* labels the system sets itself are left alone).
const REMOVABLE: [&[u8]; 3] = [b"user.", b"trusted.", b"system.posix_acl_"];

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

pub(crate) fn cstr(name: &[u8], shown: &Path) -> Result<CString> {
    CString::new(name).map_err(|_| Error::Invalid(format!("path {:?} holds a NUL byte", shown.display())))
}

/// The components of `rel`, each one that stays in its directory (the manifest was
/// validated already; this is the last check before a name reaches a system call).
pub(crate) fn components<'a>(rel: &'a Path, root: &Path) -> Result<Vec<&'a [u8]>> {
    let bytes = rel.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&[u8]> = bytes.split(|&b| b == b'/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == b"." || *p == b"..") {
        return Err(Error::Invalid(format!(
            "path {:?} would leave the restore target {}",
            rel.display(),
            root.display()
        )));
    }
    Ok(parts)
}

/// The parent of `rel` and its last component.
pub(crate) fn split_parent(rel: &Path) -> (&[u8], &[u8]) {
    let bytes = rel.as_os_str().as_bytes();
    match bytes.iter().rposition(|&b| b == b'/') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (&[], bytes),
    }
}

fn check_fd(rc: RawFd) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

pub(crate) fn openat(
    dir: BorrowedFd<'_>,
    name: &CString,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a NUL-terminated string alive for the call; `dir` is open.
    check_fd(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, libc::c_uint::from(mode)) })
}

fn not_a_dir(e: &io::Error) -> bool {
    // A link opened with O_NOFOLLOW fails with ELOOP (ENOTDIR with O_DIRECTORY on some
    // kernels); a file where a directory belongs with ENOTDIR.
    matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR | libc::EMLINK))
}

/// Opens directory `name` below `dir` (created first with `create`), refusing a link or
/// any non-directory there; `shown` is its path for messages.
fn step(dir: BorrowedFd<'_>, name: &[u8], shown: &Path, create: bool) -> Result<OwnedFd> {
    let c = cstr(name, shown)?;
    if create {
        // SAFETY: `c` is NUL-terminated and alive; `dir` is open.
        let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o777) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            // Something is there: the open below checks that it is a real directory.
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(Error::io(shown, e));
            }
        }
    }
    openat(dir, &c, DIR_FLAGS, 0).map_err(|e| {
        if not_a_dir(&e) {
            Error::Invalid(format!(
                "{} is a symlink or not a directory; refusing to write through it",
                shown.display()
            ))
        } else {
            Error::io(shown, e)
        }
    })
}

/// A descriptor of the existing directory `rel` below `root`, reached without links.
pub(crate) fn open_dir(root: BorrowedFd<'_>, root_path: &Path, rel: &[u8]) -> Result<OwnedFd> {
    let rel = Path::new(OsStr::from_bytes(rel));
    let parts = components(rel, root_path)?;
    // SAFETY: dup of an open descriptor; the copy is owned by the OwnedFd.
    let mut fd = check_fd(unsafe { libc::fcntl(root.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })
        .map_err(|e| Error::io(root_path, e))?;
    let mut shown = root_path.to_path_buf();
    for part in parts {
        shown.push(OsStr::from_bytes(part));
        fd = step(fd.as_fd(), part, &shown, false)?;
    }
    Ok(fd)
}

/// Creates every directory of `rels` and all their parents below `root`. Sorted by
/// components, each directory's parent is created (and checked) just before it, so the
/// walk keeps one descriptor per level instead of starting from the top for each.
pub fn make_dirs(root: BorrowedFd<'_>, root_path: &Path, rels: &[PathBuf]) -> Result<()> {
    let mut wanted: Vec<Vec<&[u8]>> = Vec::new();
    for rel in rels {
        let parts = components(rel, root_path)?;
        for depth in 1..=parts.len() {
            wanted.push(parts[..depth].to_vec());
        }
    }
    wanted.sort_unstable();
    wanted.dedup();
    let mut stack: Vec<(Vec<&[u8]>, OwnedFd)> = Vec::new();
    for parts in wanted {
        let Some((name, parent)) = parts.split_last() else {
            continue;
        };
        while stack.last().is_some_and(|(p, _)| p.as_slice() != parent) {
            stack.pop();
        }
        let shown: PathBuf = parts
            .iter()
            .fold(root_path.to_path_buf(), |p, c| p.join(OsStr::from_bytes(c)));
        let fd = match stack.last() {
            Some((_, fd)) => step(fd.as_fd(), name, &shown, true)?,
            None => step(root, name, &shown, true)?,
        };
        stack.push((parts, fd));
    }
    Ok(())
}

/// How metadata calls reach one entry: a regular descriptor (a file just written), or
/// the inode behind an `O_PATH` descriptor through its `/proc/self/fd` link (any kind of
/// entry, whatever its mode; the link resolves to that inode and nothing else).
pub(crate) enum Target {
    Fd(RawFd),
    Proc(CString),
}

fn rc(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn rcs(r: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

impl Target {
    fn stat(&self, fd: RawFd) -> io::Result<libc::stat> {
        // SAFETY: an all-zero stat is a valid value to be overwritten by fstat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is open (O_PATH descriptors can be fstat'ed); `st` is writable.
        rc(unsafe { libc::fstat(fd, &mut st) })?;
        Ok(st)
    }

    fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        // SAFETY: integer arguments and a NUL-terminated path alive for the call.
        rc(unsafe {
            match self {
                Self::Fd(fd) => libc::fchown(*fd, uid, gid),
                Self::Proc(p) => libc::chown(p.as_ptr(), uid, gid),
            }
        })
    }

    fn chmod(&self, mode: u32) -> io::Result<()> {
        // SAFETY: as above.
        rc(unsafe {
            match self {
                Self::Fd(fd) => libc::fchmod(*fd, mode),
                Self::Proc(p) => libc::chmod(p.as_ptr(), mode),
            }
        })
    }

    fn set_mtime(&self, ns: i64) -> io::Result<()> {
        let t = libc::timespec {
            tv_sec: ns.div_euclid(1_000_000_000),
            tv_nsec: ns.rem_euclid(1_000_000_000),
        };
        let times = [t, t];
        // SAFETY: `times` holds two timespecs; the path is NUL-terminated and alive.
        rc(unsafe {
            match self {
                Self::Fd(fd) => libc::futimens(*fd, times.as_ptr()),
                Self::Proc(p) => libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), 0),
            }
        })
    }

    fn list_xattrs(&self) -> io::Result<Vec<Vec<u8>>> {
        let mut buf = vec![0u8; 1024];
        loop {
            // SAFETY: `buf` is writable for its length; the path is NUL-terminated.
            let n = unsafe {
                match self {
                    Self::Fd(fd) => libc::flistxattr(*fd, buf.as_mut_ptr().cast(), buf.len()),
                    Self::Proc(p) => libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()),
                }
            };
            match rcs(n) {
                Ok(n) => {
                    return Ok(buf[..n]
                        .split(|&b| b == 0)
                        .filter(|s| !s.is_empty())
                        .map(<[u8]>::to_vec)
                        .collect())
                }
                // The list grew past the buffer: the kernel's limit is 64 KiB.
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) && buf.len() < (1 << 16) => {
                    buf.resize(1 << 16, 0);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn get_xattr(&self, name: &CString) -> io::Result<Vec<u8>> {
        // A value is at most 64 KiB (XATTR_SIZE_MAX).
        let mut buf = vec![0u8; 1 << 16];
        // SAFETY: `buf` is writable for its length; both strings are NUL-terminated.
        let n = unsafe {
            match self {
                Self::Fd(fd) => libc::fgetxattr(*fd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()),
                Self::Proc(p) => libc::getxattr(p.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()),
            }
        };
        buf.truncate(rcs(n)?);
        Ok(buf)
    }

    fn set_xattr(&self, name: &CString, value: &[u8]) -> io::Result<()> {
        // SAFETY: `value` is readable for its length; the strings are NUL-terminated.
        rc(unsafe {
            match self {
                Self::Fd(fd) => libc::fsetxattr(*fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0),
                Self::Proc(p) => libc::setxattr(p.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0),
            }
        })
    }

    fn remove_xattr(&self, name: &CString) -> io::Result<()> {
        // SAFETY: both strings are NUL-terminated and alive for the call.
        rc(unsafe {
            match self {
                Self::Fd(fd) => libc::fremovexattr(*fd, name.as_ptr()),
                Self::Proc(p) => libc::removexattr(p.as_ptr(), name.as_ptr()),
            }
        })
    }
}

fn permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

/// Sets owner, xattrs, mode and mtime of the entry open as `fd` (reached as `target`),
/// in that order (chown clears setuid/setgid and file capabilities, so mode and xattrs
/// come after it), each only if it differs: an entry already right keeps its ctime.
/// What the system refuses goes to `problems`. Returns whether anything changed.
pub(crate) fn apply(
    fd: RawFd,
    target: &Target,
    shown: &Path,
    index: usize,
    meta: &Meta,
    opts: MetaOptions,
    problems: &mut Vec<Problem>,
) -> Result<bool> {
    let io = |e: io::Error| Error::io(shown, e);
    let problem = |what: String, reason: String| Problem { index, what, reason };
    let mut st = target.stat(fd).map_err(io)?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(Error::Invalid(format!(
            "{} was replaced by a symlink; refusing to follow it",
            shown.display()
        )));
    }
    let mut changed = false;
    if let Some((uid, gid)) = meta.owner {
        if (st.st_uid, st.st_gid) != (uid, gid) {
            if !opts.chown {
                problems.push(problem("owner".into(), "not applied: restoring as non-root".into()));
            } else {
                match target.chown(uid, gid) {
                    Ok(()) => {
                        changed = true;
                        st = target.stat(fd).map_err(io)?;
                    }
                    Err(e) if permission(&e) => {
                        problems.push(problem(
                            "owner".into(),
                            format!("{uid}:{gid} not applied: {}", strerror(&e)),
                        ));
                    }
                    Err(e) => return Err(io(e)),
                }
            }
        }
    }
    changed |= xattrs(target, shown, meta, opts, &mut |what, reason| {
        problems.push(problem(what, reason))
    })?;
    if st.st_mode & 0o7777 != meta.mode {
        match target.chmod(meta.mode) {
            Ok(()) => changed = true,
            Err(e) if permission(&e) => {
                problems.push(problem(
                    "mode".into(),
                    format!("{:o} not applied: {}", meta.mode, strerror(&e)),
                ));
            }
            Err(e) => return Err(io(e)),
        }
    }
    let mtime = i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec);
    if changed || mtime != i128::from(meta.mtime_ns) {
        target.set_mtime(meta.mtime_ns).map_err(io)?;
        changed = true;
    }
    Ok(changed)
}

fn xattrs(
    target: &Target,
    shown: &Path,
    meta: &Meta,
    opts: MetaOptions,
    problem: &mut dyn FnMut(String, String),
) -> Result<bool> {
    let mut changed = false;
    // Unreadable lists count as empty, as the Python rules had them: every value is set.
    let present = if opts.fresh && meta.xattrs.is_empty() {
        Vec::new()
    } else if opts.exact_xattrs || !meta.xattrs.is_empty() {
        target.list_xattrs().unwrap_or_default()
    } else {
        Vec::new()
    };
    if opts.exact_xattrs {
        for name in &present {
            let wanted = meta.xattrs.iter().any(|(n, _)| n.as_bytes() == name.as_slice());
            if wanted || !REMOVABLE.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let shown_name = String::from_utf8_lossy(name);
            let c = cstr(name, shown)?;
            match target.remove_xattr(&c) {
                Ok(()) => changed = true,
                Err(e) => problem(format!("xattr {shown_name}"), format!("not removed: {}", strerror(&e))),
            }
        }
    }
    for (name, value) in &meta.xattrs {
        let c = cstr(name.as_bytes(), shown)?;
        if present.iter().any(|p| p.as_slice() == name.as_bytes()) && target.get_xattr(&c).is_ok_and(|v| v == *value) {
            continue;
        }
        if let Err(e) = target.set_xattr(&c, value) {
            // EPERM: trusted.* as non-root, user.* on a link or device; ENOTSUP: the
            // target file system has no such namespace. Reported, never fatal.
            problem(
                format!("xattr {}", name.to_string_lossy()),
                format!("not restored: {}", strerror(&e)),
            );
        } else {
            changed = true;
        }
    }
    Ok(changed)
}

/// Applies `entries[i] = (rel, meta)` to entries that exist below `root` (directories,
/// files written elsewhere, special files; not links), each reached through an
/// `O_PATH | O_NOFOLLOW` descriptor of its parent chain. With `deepest_first` the
/// entries are visited deepest first (directories: a parent's mtime is not undone by
/// touching a child). Returns what could not be applied.
pub fn apply_meta(
    root: BorrowedFd<'_>,
    root_path: &Path,
    entries: &[(PathBuf, Meta)],
    opts: MetaOptions,
    deepest_first: bool,
) -> Result<Vec<Problem>> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    if deepest_first {
        let depth = |i: &usize| {
            entries[*i]
                .0
                .as_os_str()
                .as_bytes()
                .iter()
                .filter(|&&b| b == b'/')
                .count()
        };
        order.sort_by_key(|i| std::cmp::Reverse(depth(i)));
    }
    let mut problems = Vec::new();
    let mut parent: Option<(Vec<u8>, OwnedFd)> = None;
    for i in order {
        let (rel, meta) = &entries[i];
        let shown = root_path.join(rel);
        let (dir, name) = split_parent(rel);
        components(rel, root_path)?;
        // The empty path is the target directory itself (a manifest's `root`).
        let name: &[u8] = if name.is_empty() { b"." } else { name };
        if parent.as_ref().is_none_or(|(p, _)| p.as_slice() != dir) {
            parent = Some((dir.to_vec(), open_dir(root, root_path, dir)?));
        }
        let Some((_, pfd)) = &parent else { continue };
        let fd = openat(
            pfd.as_fd(),
            &cstr(name, &shown)?,
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
        )
        .map_err(|e| Error::io(&shown, e))?;
        let at = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|_| Error::Invalid("internal: descriptor path".into()))?;
        apply(fd.as_raw_fd(), &Target::Proc(at), &shown, i, meta, opts, &mut problems)?;
    }
    problems.sort_by_key(|p| p.index);
    Ok(problems)
}
