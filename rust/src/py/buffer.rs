//! The one place that turns a Python buffer into a Rust slice (blake3-py's pattern).

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;

/// Below this, releasing and re-taking the GIL costs more than hashing (blake3-py's
/// `GIL_MINSIZE`, CPython's `HASHLIB_GIL_MINSIZE` = 2048).
pub const GIL_MINSIZE: usize = 2048;

/// A C-contiguous buffer export held for as long as its bytes are borrowed.
pub struct ByteView {
    buffer: PyUntypedBuffer,
}

impl ByteView {
    /// Exports the buffer of `obj` (bytes, bytearray, memoryview, mmap, array, numpy...).
    /// Like hashlib, any item format is accepted and read as raw bytes.
    pub fn new(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let buffer = PyUntypedBuffer::get(obj)?;
        if !buffer.is_c_contiguous() {
            return Err(PyBufferError::new_err("the buffer must be C-contiguous"));
        }
        Ok(Self { buffer })
    }

    /// The bytes, borrowed from `self`, so they cannot outlive the export.
    pub fn as_slice(&self) -> &[u8] {
        let len = self.buffer.len_bytes();
        if len == 0 {
            return &[];
        }
        // SAFETY:
        // - `buf_ptr` points to `len_bytes` readable bytes: `PyObject_GetBuffer` succeeded,
        //   and a C-contiguous buffer is one run of `len_bytes` bytes from that pointer
        //   (checked in `new`). The empty case returns above, since the pointer may then be
        //   null or dangling.
        // - The memory stays valid for the returned lifetime: it is tied to `&self`, and the
        //   export lives in `self`. While exported, `bytearray` refuses to resize
        //   (BufferError), `mmap` refuses to close or resize, and the exporting object is
        //   kept alive by the view's reference, so nothing frees or moves the bytes, even
        //   with the GIL released (blake3-py commit 450362d ties the slice to the live buffer
        //   for this reason).
        // - The one thing an export does not stop is another Python thread writing into a
        //   writable buffer while we hash with the GIL released. As in blake3-py and hashlib,
        //   the caller then gets a digest of some mix of old and new bytes; the bytes are
        //   plain `u8` with no invalid values and we only read them, so no Rust invariant
        //   depends on their content.
        unsafe { std::slice::from_raw_parts(self.buffer.buf_ptr().cast::<u8>().cast_const(), len) }
    }
}
