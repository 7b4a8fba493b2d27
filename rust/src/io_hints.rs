//! Hints to the kernel's page cache about files we stream (Linux; no-ops elsewhere).
//! Only hints: a failure changes timing, never results, so errors are ignored here and
//! any I/O error of the data itself surfaces from the read, write or fsync that follows.

use std::fs::File;

/// Starts writing `[offset, offset + len)` of `file` to disk now, without waiting, so a
/// later fsync finds it mostly written (`sync_file_range(SYNC_FILE_RANGE_WRITE)`).
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    if let Some((fd, offset, len)) = args(file, offset, len) {
        // SAFETY: `fd` belongs to `file`, open for the whole call; the call reads its
        // integer arguments only and touches no memory of ours.
        unsafe {
            libc::sync_file_range(fd, offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Waits until `[offset, offset + len)` of `file` is written to disk (its writeback was
/// started earlier) and lets the page cache drop it (`sync_file_range` with both waits,
/// then `posix_fadvise(POSIX_FADV_DONTNEED)`). Not a durability point: the fsync that
/// follows is.
pub fn drop_written(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    if let Some((fd, offset, len)) = args(file, offset, len) {
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: as in `start_writeback`.
        unsafe {
            libc::sync_file_range(fd, offset, len, flags);
            libc::posix_fadvise(fd, offset, len, libc::POSIX_FADV_DONTNEED);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Lets the page cache drop `[offset, offset + len)` of `file`, read and not wanted
/// again (`posix_fadvise(POSIX_FADV_DONTNEED)`; clean pages go at once).
pub fn drop_read(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    fadvise(file, offset, len, libc::POSIX_FADV_DONTNEED);
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Starts reading `[offset, offset + len)` of `file` into the page cache now, so it is
/// there when asked for (`posix_fadvise(POSIX_FADV_WILLNEED)`); cached pages cost a lookup.
pub fn prefetch(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    fadvise(file, offset, len, libc::POSIX_FADV_WILLNEED);
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

#[cfg(target_os = "linux")]
fn fadvise(file: &File, offset: u64, len: u64, advice: libc::c_int) {
    if let Some((fd, offset, len)) = args(file, offset, len) {
        // SAFETY: as in `start_writeback`.
        unsafe {
            libc::posix_fadvise(fd, offset, len, advice);
        }
    }
}

#[cfg(target_os = "linux")]
fn args(file: &File, offset: u64, len: u64) -> Option<(i32, i64, i64)> {
    use std::os::unix::io::AsRawFd;
    Some((file.as_raw_fd(), i64::try_from(offset).ok()?, i64::try_from(len).ok()?))
}
