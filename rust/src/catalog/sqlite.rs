//! The SQLite C API of the library Python's `sqlite3` module already uses, reached with
//! `dlopen(RTLD_NOLOAD)` on `_sqlite3`'s shared object and `dlsym`.
//!
//! Why not a SQLite of our own (rusqlite, bundled or linked): two copies of SQLite in one
//! process that open the same file break each other's POSIX locks (closing a descriptor
//! drops every fcntl lock the process holds on that file), which SQLite documents as a
//! way to corrupt a database. Looking the symbols up through `_sqlite3`'s own handle
//! yields exactly the copy Python uses, whether it links `libsqlite3.so` or embeds
//! SQLite; when that copy cannot be reached (no `dlopen`, a built-in `_sqlite3`, hidden
//! symbols) [`Api::load`] says so and the caller keeps its Python path.

use std::ffi::{c_char, c_int, c_void, CStr, CString};

use crate::loaded::Loaded;
use std::path::Path;
use std::ptr;

type Db = c_void;
type Stmt = c_void;

type OpenV2 = unsafe extern "C" fn(*const c_char, *mut *mut Db, c_int, *const c_char) -> c_int;
type CloseV2 = unsafe extern "C" fn(*mut Db) -> c_int;
type BusyTimeout = unsafe extern "C" fn(*mut Db, c_int) -> c_int;
type PrepareV2 = unsafe extern "C" fn(*mut Db, *const c_char, c_int, *mut *mut Stmt, *mut *const c_char) -> c_int;
type BindText = unsafe extern "C" fn(*mut Stmt, c_int, *const c_char, c_int, *const c_void) -> c_int;
type Step = unsafe extern "C" fn(*mut Stmt) -> c_int;
type ColumnType = unsafe extern "C" fn(*mut Stmt, c_int) -> c_int;
type ColumnText = unsafe extern "C" fn(*mut Stmt, c_int) -> *const u8;
type ColumnBytes = unsafe extern "C" fn(*mut Stmt, c_int) -> c_int;
type ColumnInt64 = unsafe extern "C" fn(*mut Stmt, c_int) -> i64;
type Finalize = unsafe extern "C" fn(*mut Stmt) -> c_int;
type ErrMsg = unsafe extern "C" fn(*mut Db) -> *const c_char;

const SQLITE_OK: c_int = 0;
/// `sqlite3_step`: a row is ready.
pub const SQLITE_ROW: c_int = 100;
/// `sqlite3_step`: the statement has finished.
pub const SQLITE_DONE: c_int = 101;
/// `sqlite3_column_type` of an INTEGER value.
pub const SQLITE_INTEGER: c_int = 1;
/// `sqlite3_column_type` of a TEXT value.
pub const SQLITE_TEXT: c_int = 3;
/// `sqlite3_column_type` of NULL.
pub const SQLITE_NULL: c_int = 5;
const SQLITE_OPEN_READONLY: c_int = 0x0000_0001;
/// Multi-thread mode for this connection: no mutex around each call. A third of a
/// 50,000-row read went into locking it; the connection never leaves its one thread.
const SQLITE_OPEN_NOMUTEX: c_int = 0x0000_8000;

/// The functions this crate calls, with the C signatures SQLite documents (stable since
/// 3.7.14, which added `sqlite3_close_v2`).
pub struct Api {
    /// Keeps the object, hence every function pointer below, mapped.
    _library: Loaded,
    open_v2: OpenV2,
    close_v2: CloseV2,
    busy_timeout: BusyTimeout,
    prepare_v2: PrepareV2,
    bind_text: BindText,
    step: Step,
    column_type: ColumnType,
    column_text: ColumnText,
    column_bytes: ColumnBytes,
    column_int64: ColumnInt64,
    finalize: Finalize,
    errmsg: ErrMsg,
}

impl Api {
    /// The SQLite of the already-loaded shared object `module` (Python's `_sqlite3`), or
    /// None when it is not loaded or does not expose every function needed.
    pub fn load(module: &Path) -> Option<Self> {
        let library = Loaded::open(module)?;
        // SAFETY (every `function` call): each type alias is the signature sqlite3.h
        // declares for that name, and `_library` keeps the pointers valid.
        unsafe {
            Some(Self {
                open_v2: library.function(c"sqlite3_open_v2")?,
                close_v2: library.function(c"sqlite3_close_v2")?,
                busy_timeout: library.function(c"sqlite3_busy_timeout")?,
                prepare_v2: library.function(c"sqlite3_prepare_v2")?,
                bind_text: library.function(c"sqlite3_bind_text")?,
                step: library.function(c"sqlite3_step")?,
                column_type: library.function(c"sqlite3_column_type")?,
                column_text: library.function(c"sqlite3_column_text")?,
                column_bytes: library.function(c"sqlite3_column_bytes")?,
                column_int64: library.function(c"sqlite3_column_int64")?,
                finalize: library.function(c"sqlite3_finalize")?,
                errmsg: library.function(c"sqlite3_errmsg")?,
                _library: library,
            })
        }
    }
}

/// A read-only connection; closed on drop.
pub struct Connection<'a> {
    api: &'a Api,
    db: *mut Db,
}

impl<'a> Connection<'a> {
    /// Opens `path` read-only, waiting up to `busy_ms` on a locked database.
    pub fn open_read_only(api: &'a Api, path: &Path, busy_ms: i32) -> Result<Self, String> {
        let name = path_c_string(path)?;
        let mut db: *mut Db = ptr::null_mut();
        // SAFETY: `name` is NUL-terminated; `db` is a valid out-pointer; a null VFS name
        // selects the default VFS.
        let rc = unsafe {
            (api.open_v2)(
                name.as_ptr(),
                &mut db,
                SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                ptr::null(),
            )
        };
        // Even a failed open may allocate a handle; wrapping it first closes it either way.
        let conn = Self { api, db };
        if rc != SQLITE_OK {
            return Err(conn.message(rc));
        }
        // SAFETY: `conn.db` is an open connection.
        unsafe { (api.busy_timeout)(conn.db, busy_ms) };
        Ok(conn)
    }

    /// Compiles `sql` (one statement).
    pub fn prepare(&self, sql: &CStr) -> Result<Statement<'_>, String> {
        let mut stmt: *mut Stmt = ptr::null_mut();
        // SAFETY: `self.db` is open; `sql` is NUL-terminated (length -1 reads to the NUL);
        // `stmt` is a valid out-pointer; the tail pointer is not wanted.
        let rc = unsafe { (self.api.prepare_v2)(self.db, sql.as_ptr(), -1, &mut stmt, ptr::null_mut()) };
        let statement = Statement { conn: self, stmt };
        if rc != SQLITE_OK {
            return Err(self.message(rc));
        }
        Ok(statement)
    }

    fn message(&self, rc: c_int) -> String {
        if self.db.is_null() {
            return format!("SQLite error {rc}");
        }
        // SAFETY: `self.db` is a connection handle (open or failed-open, both allowed);
        // the returned text is NUL-terminated and valid until the next call on `db`,
        // and it is copied before that.
        let text = unsafe { CStr::from_ptr((self.api.errmsg)(self.db)) };
        text.to_string_lossy().into_owned()
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        // SAFETY: `db` came from `open_v2` (null is a no-op for close_v2); every
        // `Statement` borrows this connection, so all are finalized before this runs.
        unsafe { (self.api.close_v2)(self.db) };
    }
}

/// A prepared statement; finalized on drop. Column reads refer to the current row.
pub struct Statement<'c> {
    conn: &'c Connection<'c>,
    stmt: *mut Stmt,
}

impl<'c> Statement<'c> {
    /// Binds `value` to parameter `index` (1-based). `value` must outlive the statement's
    /// execution, which the borrow enforces: SQLite does not copy it (SQLITE_STATIC).
    pub fn bind_text(&mut self, index: i32, value: &'c str) -> Result<(), String> {
        let len = c_int::try_from(value.len()).map_err(|_| "parameter too long".to_string())?;
        // SAFETY: `stmt` is a live statement; `value` points at `len` bytes that outlive
        // it (the borrow above); a null destructor is SQLITE_STATIC (no copy, no free).
        let rc = unsafe { (self.conn.api.bind_text)(self.stmt, index, value.as_ptr().cast(), len, ptr::null()) };
        if rc != SQLITE_OK {
            return Err(self.conn.message(rc));
        }
        Ok(())
    }

    /// Advances to the next row: `Ok(true)` when one is ready, `Ok(false)` at the end.
    pub fn step(&mut self) -> Result<bool, String> {
        // SAFETY: `stmt` is a live prepared statement.
        match unsafe { (self.conn.api.step)(self.stmt) } {
            SQLITE_ROW => Ok(true),
            SQLITE_DONE => Ok(false),
            rc => Err(self.conn.message(rc)),
        }
    }

    /// The current row's column `col` type code (SQLITE_INTEGER, SQLITE_TEXT, SQLITE_NULL...).
    pub fn column_type(&self, col: i32) -> c_int {
        // SAFETY: called only after `step` returned a row; SQLite bounds-checks `col`.
        unsafe { (self.conn.api.column_type)(self.stmt, col) }
    }

    /// The current row's column `col` as an integer.
    pub fn column_i64(&self, col: i32) -> i64 {
        // SAFETY: as for `column_type`.
        unsafe { (self.conn.api.column_int64)(self.stmt, col) }
    }

    /// The current row's column `col` as UTF-8 bytes (numbers converted to text), None
    /// for NULL. Valid until the next `step`, which the borrow of `self` enforces.
    pub fn column_text(&self, col: i32) -> Option<&[u8]> {
        // SAFETY: after a row, `column_text` then `column_bytes` (in that order, as the
        // SQLite docs require) give a pointer to, and the length of, the value's UTF-8
        // text, valid until the next step/finalize (both need `&mut self` or drop).
        unsafe {
            let p = (self.conn.api.column_text)(self.stmt, col);
            if p.is_null() {
                return None;
            }
            let n = (self.conn.api.column_bytes)(self.stmt, col);
            Some(std::slice::from_raw_parts(p, usize::try_from(n).unwrap_or(0)))
        }
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: `stmt` came from `prepare_v2` (null is a no-op) and is not used again.
        unsafe { (self.conn.api.finalize)(self.stmt) };
    }
}

fn path_c_string(path: &Path) -> Result<CString, String> {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = path.to_string_lossy().into_owned().into_bytes();
    CString::new(bytes).map_err(|_| format!("path {} contains a NUL byte", path.display()))
}
