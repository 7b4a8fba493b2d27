//! Positioned reads shared by the readers: errors name the file, and a file that is
//! shorter than its structure said (it changed after it was opened) is damage at the
//! offset where it ends, not a bare "unexpected end of file".

use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::error::{Error, Result};
use super::header::{Header, Kind, HEADER_LEN};
use crate::scan::algorithm::Algorithm;

/// Bytes hashed per step of a checksum pass: large enough for BLAKE3's widest path and
/// sequential throughput, small enough that a stop request is seen within milliseconds.
const CHECKSUM_CHUNK: u64 = 4 << 20;

/// Reads exactly `buf.len()` bytes at `pos` of `file` (named `path`).
pub fn read_exact_at(file: &File, path: &Path, buf: &mut [u8], pos: u64) -> Result<()> {
    file.read_exact_at(buf, pos).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::damaged(
                path,
                pos,
                format!(
                    "file ends inside the {} bytes read here (changed while read?)",
                    buf.len()
                ),
            )
        } else {
            Error::io(path, e)
        }
    })
}

/// A piece or block map opened and framed: its checked header and its trailer's bytes.
pub struct Framed {
    pub file: File,
    pub size: u64,
    pub header: Header,
    /// The trailer's bytes (`header.trailer_len()` of them), read from `trailer_at`.
    pub trailer: Vec<u8>,
    pub trailer_at: u64,
}

/// Opens `path`, checks that it starts with a header of `kind` and has room for the
/// trailer that header's version defines, and reads both. Every reader starts here, so
/// the size checks come before any allocation a damaged file could size.
pub fn open_framed(path: &Path, kind: Kind) -> Result<Framed> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let name = kind.name();
    if size < HEADER_LEN {
        return Err(Error::damaged(
            path,
            size,
            format!("truncated {name} ({size} bytes, no header)"),
        ));
    }
    let mut h = [0u8; HEADER_LEN as usize];
    read_exact_at(&file, path, &mut h, 0)?;
    let header = Header::decode(path, kind, &h)?;
    let tlen = header.trailer_len();
    if size < HEADER_LEN + tlen {
        return Err(Error::damaged(
            path,
            size,
            format!("truncated {name} ({size} bytes, no room for a {tlen}-byte trailer)"),
        ));
    }
    let trailer_at = size - tlen;
    let mut trailer = vec![0u8; tlen as usize];
    read_exact_at(&file, path, &mut trailer, trailer_at)?;
    Ok(Framed {
        file,
        size,
        header,
        trailer,
        trailer_at,
    })
}

/// Hashes bytes `[0, end)` of `file` with `alg`. `on_chunk(n)` runs after each step of
/// `n` bytes; `Break` stops the pass (`Ok(None)`).
pub fn hash_prefix(
    file: &File,
    path: &Path,
    alg: Algorithm,
    end: u64,
    on_chunk: &mut dyn FnMut(u64) -> ControlFlow<()>,
) -> Result<Option<Vec<u8>>> {
    let mut h = alg.hasher();
    let mut buf = Vec::new();
    let mut pos = 0u64;
    while pos < end {
        let n = CHECKSUM_CHUNK.min(end - pos);
        // n <= CHECKSUM_CHUNK, so the cast is exact.
        buf.resize(n as usize, 0);
        read_exact_at(file, path, &mut buf, pos)?;
        h.update_parallel(&buf);
        pos += n;
        // Reported even for the last step; a stop asked for then is moot, the pass is done.
        if on_chunk(n).is_break() && pos < end {
            return Ok(None);
        }
    }
    Ok(Some(h.finalize()))
}
