//! Functions of a shared object the process has already loaded (Python's `_sqlite3` and
//! `_hashlib`), reached without loading anything: `dlopen(RTLD_NOLOAD)` + `dlsym`.
//!
//! Looking symbols up through that object's own handle yields exactly the library copy
//! Python uses (its dependencies are searched too), which is the point: a second SQLite
//! in the process would break the first one's file locks, and hashlib's OpenSSL is the
//! implementation to match. When the object is not loaded, hides its symbols, or another
//! copy of a symbol is visible in the global scope (which the object's own calls would
//! bind to first), the caller gets None and keeps its own route.

use std::ffi::{c_void, CStr};
use std::path::Path;

/// A reference to an already-loaded shared object; released on drop.
pub struct Loaded {
    handle: *mut c_void,
}

// SAFETY: the handle is an opaque token of the dynamic loader; dlsym and dlclose may be
// called with it from any thread (glibc and macOS serialise them internally).
unsafe impl Send for Loaded {}
// SAFETY: as for `Send`; `Loaded` has no interior state besides the token.
unsafe impl Sync for Loaded {}

impl Loaded {
    /// The object at `path` if this process has it mapped already, else None.
    #[cfg(unix)]
    pub fn open(path: &Path) -> Option<Self> {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: `name` is NUL-terminated; RTLD_NOLOAD never loads (so runs no
        // initialisers): it only returns a new reference to an object already mapped.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
        // Not `then_some`: that builds (and drops, so dlcloses) a `Loaded` even for null.
        if handle.is_null() {
            None
        } else {
            Some(Self { handle })
        }
    }

    /// Without `dlopen` nothing can be reached.
    #[cfg(not(unix))]
    pub fn open(_path: &Path) -> Option<Self> {
        None
    }

    /// The function `name` as the function-pointer type `F`, or None if absent.
    ///
    /// # Safety
    /// `F` must be an `unsafe extern "C" fn` type whose signature is the C declaration
    /// of `name` in the library's header; the pointer must not be called after `self`
    /// is dropped.
    #[cfg(unix)]
    pub unsafe fn function<F: Copy>(&self, name: &CStr) -> Option<F> {
        assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
        // SAFETY: `handle` is live (owned by `self`); `name` is NUL-terminated.
        let p = unsafe { libc::dlsym(self.handle, name.as_ptr()) };
        // A definition in the global scope (the executable, LD_PRELOAD, an RTLD_GLOBAL
        // library) is what the object's own calls bind to first; if it is a different
        // copy, which one Python uses is not certain, so none is used.
        // SAFETY: RTLD_DEFAULT is a valid pseudo-handle; `name` is NUL-terminated.
        let global = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        if p.is_null() || !(global.is_null() || global == p) {
            return None;
        }
        // SAFETY: `p` is the address of the function `name`; the caller guarantees `F`
        // is its pointer type, and the sizes match (asserted above).
        Some(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
    }

    /// See the unix version; never reached (`open` returns None).
    ///
    /// # Safety
    /// As for the unix version.
    #[cfg(not(unix))]
    pub unsafe fn function<F: Copy>(&self, _name: &CStr) -> Option<F> {
        None
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: `handle` is the reference `open` took, released once; callers hold no
        // function pointer beyond the owner's lifetime (the `function` contract).
        unsafe {
            libc::dlclose(self.handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects_already_loaded_are_opened() {
        assert!(Loaded::open(Path::new("/nonexistent/lib.so")).is_none());
        assert!(Loaded::open(Path::new("bad\0name")).is_none());
    }
}
