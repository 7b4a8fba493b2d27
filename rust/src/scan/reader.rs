//! Block-aligned reads of a live file in large chunks, with size-change detection.
//!
//! Backup sources are live, so they are never memory-mapped: a mapped file truncated by
//! another process raises SIGBUS and kills the interpreter (the blake3 crate's `io.rs`
//! warns of the same). Instead every chunk is `read(2)` into a reused buffer whose length
//! is a multiple of the block size, so a block never straddles two chunks.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::error::{ScanError, SizeChange};

/// The default chunk: big enough that syscall and thread hand-off costs vanish, small
/// enough that two of them (double buffering) stay in a few MiB of RAM for any file size.
pub const DEFAULT_CHUNK: usize = 4 * 1024 * 1024;

/// Reads a source front to back in chunks, failing if the size differs from the size
/// seen at open time (shorter: truncated under us; longer: appended to).
pub struct ChunkReader<R> {
    inner: R,
    path: PathBuf,
    expected: Option<u64>,
    consumed: u64,
    done: bool,
}

impl ChunkReader<File> {
    /// Opens `path`; the size recorded now is the one the scan must see to the end.
    pub fn open(path: &Path) -> Result<Self, ScanError> {
        let file = File::open(path).map_err(|e| ScanError::io(e, path))?;
        let meta = file.metadata().map_err(|e| ScanError::io(e, path))?;
        if meta.is_dir() {
            return Err(ScanError::io(is_a_directory(), path));
        }
        // Pipes and character devices have no meaningful size: read them to EOF.
        let expected = meta.is_file().then_some(meta.len());
        Ok(Self::new(file, path, expected))
    }
}

/// `EISDIR` with its errno, so Python gets `IsADirectoryError` with `.errno` set.
fn is_a_directory() -> io::Error {
    #[cfg(target_os = "linux")]
    {
        io::Error::from_raw_os_error(21)
    }
    #[cfg(not(target_os = "linux"))]
    {
        io::Error::new(io::ErrorKind::IsADirectory, "Is a directory")
    }
}

impl<R: Read> ChunkReader<R> {
    /// Wraps any reader; `path` only labels errors, `expected` is the size to insist on.
    pub fn new(inner: R, path: &Path, expected: Option<u64>) -> Self {
        Self {
            inner,
            path: path.to_path_buf(),
            expected,
            consumed: 0,
            done: false,
        }
    }

    /// The size the scan expects, when the source has one.
    pub fn expected_len(&self) -> Option<u64> {
        self.expected
    }

    /// Bytes handed out so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The path errors name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A buffer for `fill`: `chunk` rounded to a multiple of `block`, but no larger than
    /// the file needs (a 10-byte file does not get a 4 MiB allocation).
    pub fn buffer(&self, chunk: usize, block: usize) -> Vec<u8> {
        let block = block.max(1);
        let mut len = chunk.max(block) / block * block;
        if let Some(expected) = self.expected {
            let need = usize::try_from(expected).unwrap_or(usize::MAX).div_ceil(block).max(1) * block;
            len = len.min(need);
        }
        vec![0; len]
    }

    /// Fills `buf` as far as the data goes and returns the byte count; 0 means the end,
    /// which is only reported once the size is confirmed unchanged.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ScanError> {
        if self.done {
            return Ok(0);
        }
        let want = match self.expected {
            Some(expected) => {
                let left = expected - self.consumed;
                buf.len().min(usize::try_from(left).unwrap_or(usize::MAX))
            }
            None => buf.len(),
        };
        let mut got = 0;
        while got < want {
            match self.inner.read(&mut buf[got..want]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ScanError::io(e, &self.path)),
            }
        }
        self.consumed += got as u64;
        if got < want {
            if let Some(expected) = self.expected {
                return Err(ScanError::SizeChanged {
                    path: self.path.clone(),
                    expected,
                    found: SizeChange::Shrunk(self.consumed),
                });
            }
            // An unsized stream: a short read at EOF is simply the end.
            if got == 0 {
                self.done = true;
            }
            return Ok(got);
        }
        if let Some(expected) = self.expected {
            if self.consumed == expected {
                self.check_at_end(expected)?;
            }
        }
        Ok(got)
    }

    /// At the expected end, one more byte must be impossible to read.
    fn check_at_end(&mut self, expected: u64) -> Result<(), ScanError> {
        let mut probe = [0u8; 1];
        loop {
            match self.inner.read(&mut probe) {
                Ok(0) => {
                    self.done = true;
                    return Ok(());
                }
                Ok(_) => {
                    return Err(ScanError::SizeChanged {
                        path: self.path.clone(),
                        expected,
                        found: SizeChange::Grew,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ScanError::io(e, &self.path)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn reads_whole_chunks_then_reports_the_end() {
        let data: Vec<u8> = (0..10u8).collect();
        let mut r = ChunkReader::new(Cursor::new(data.clone()), Path::new("x"), Some(10));
        let mut buf = [0u8; 4];
        assert_eq!(r.fill(&mut buf).unwrap(), 4);
        assert_eq!(r.fill(&mut buf).unwrap(), 4);
        assert_eq!(r.fill(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], &data[8..]);
        assert_eq!(r.fill(&mut buf).unwrap(), 0);
    }

    #[test]
    fn a_shorter_file_than_announced_is_an_error() {
        let mut r = ChunkReader::new(Cursor::new(vec![1u8; 5]), Path::new("live.db"), Some(8));
        let mut buf = [0u8; 8];
        let err = r.fill(&mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "file changed size while being read: live.db (was 8 bytes at open, end of file after 5)"
        );
    }

    #[test]
    fn a_longer_file_than_announced_is_an_error() {
        let mut r = ChunkReader::new(Cursor::new(vec![1u8; 9]), Path::new("live.db"), Some(8));
        let mut buf = [0u8; 16];
        let err = r.fill(&mut buf).unwrap_err();
        assert!(
            matches!(
                err,
                ScanError::SizeChanged {
                    found: SizeChange::Grew,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn buffers_are_block_multiples_and_no_bigger_than_the_file() {
        let r = ChunkReader::new(Cursor::new(vec![0u8; 10]), Path::new("x"), Some(10));
        assert_eq!(r.buffer(DEFAULT_CHUNK, 4096).len(), 4096);
        let r = ChunkReader::new(Cursor::new(vec![]), Path::new("x"), None);
        assert_eq!(r.buffer(10_000, 4096).len(), 8192);
    }
}
