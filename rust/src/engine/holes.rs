//! Where a sparse file's holes are, in blocks: found with `SEEK_DATA`/`SEEK_HOLE` on the
//! open file, so the backup never reads (nor hashes) the zeros of a hole. Only blocks a
//! hole covers entirely become hole blocks; a block that is partly data is read whole.
//! The last block of a file may be short: it is a hole block when the hole runs to the
//! end of the file.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

/// A run of hole blocks: `first` and `count` in the file's blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HoleRun {
    pub first: u64,
    pub count: u64,
}

fn seek(file: &File, pos: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let Ok(off) = libc::off_t::try_from(pos) else {
        return Ok(None);
    };
    // SAFETY: lseek only reads its integer arguments; the descriptor is owned by `file`,
    // open for the whole call.
    let r = unsafe { libc::lseek(file.as_raw_fd(), off, whence) };
    if r >= 0 {
        return Ok(u64::try_from(r).ok());
    }
    let e = io::Error::last_os_error();
    // ENXIO: no data (SEEK_DATA) or no hole (SEEK_HOLE) at or after `pos`.
    if e.raw_os_error() == Some(libc::ENXIO) {
        return Ok(None);
    }
    Err(e)
}

/// The byte ranges `[start, end)` of `file`'s holes below `size`, in order. A file system
/// that does not report holes (EINVAL) has none: the file is read whole. The seeks move
/// the file's offset: it is put back at 0, where the backup's reads start.
pub(crate) fn hole_ranges(file: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let found = find_ranges(file, size);
    seek(file, 0, libc::SEEK_SET)?;
    found
}

fn find_ranges(file: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let data = match seek(file, pos, libc::SEEK_DATA) {
            Ok(d) => d.unwrap_or(size).min(size),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        if data > pos {
            out.push((pos, data));
        }
        if data >= size {
            break;
        }
        // A file always has a hole at its end (SEEK_HOLE finds `size` at worst); a file
        // shrunk meanwhile may give nothing: the rest is data, as read.
        let hole = seek(file, data, libc::SEEK_HOLE)?.unwrap_or(size);
        if hole <= data {
            break;
        }
        pos = hole;
    }
    Ok(out)
}

/// Whether `[start, start + len)` of `file` holds any allocated data (a delta restore
/// punches only what is not a hole already). A file system that cannot say: yes.
pub(crate) fn data_in(file: &File, start: u64, len: u64) -> io::Result<bool> {
    match seek(file, start, libc::SEEK_DATA) {
        Ok(Some(d)) => Ok(d < start.saturating_add(len)),
        Ok(None) => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(true),
        Err(e) => Err(e),
    }
}

/// The runs of blocks of `block_size` bytes that lie entirely in `holes` (byte ranges,
/// sorted, below `size`); the short last block of a file counts when the hole reaches
/// the end.
pub(crate) fn hole_blocks(holes: &[(u64, u64)], size: u64, block_size: u32) -> Vec<HoleRun> {
    let bs = u64::from(block_size);
    let blocks = size.div_ceil(bs);
    let mut out: Vec<HoleRun> = Vec::new();
    for &(start, end) in holes {
        let first = start.div_ceil(bs);
        let last = if end >= size { blocks } else { end / bs };
        if last <= first {
            continue;
        }
        match out.last_mut() {
            Some(r) if r.first + r.count == first => r.count += last - first,
            _ => out.push(HoleRun {
                first,
                count: last - first,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blocks_a_hole_covers_whole_are_hole_blocks() {
        // 10 blocks of 8 KiB, the last 100 bytes short.
        let size = 9 * 8192 + 100;
        let holes = [(4096, 3 * 8192), (5 * 8192, size)];
        let runs = hole_blocks(&holes, size, 8192);
        assert_eq!(
            runs,
            vec![HoleRun { first: 1, count: 2 }, HoleRun { first: 5, count: 5 }]
        );
        // A hole inside one block is no hole block; adjacent holes join.
        assert!(hole_blocks(&[(100, 8000)], size, 8192).is_empty());
        assert_eq!(
            hole_blocks(&[(0, 8192), (8192, 16384)], size, 8192),
            vec![HoleRun { first: 0, count: 2 }]
        );
    }

    #[test]
    fn holes_of_a_real_sparse_file_are_found() {
        let p = std::env::temp_dir().join(format!("rb-holes-{}", std::process::id()));
        let f = std::fs::File::create(&p).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&[1u8; 4096], 1 << 20).unwrap();
        f.set_len(4 << 20).unwrap();
        let holes = hole_ranges(&f, 4 << 20).unwrap();
        std::fs::remove_file(&p).unwrap();
        // A file system without holes reports none; with them, data lies only near 1 MiB.
        if !holes.is_empty() {
            assert_eq!(holes.first().map(|h| h.0), Some(0));
            assert!(holes.iter().all(|&(s, e)| e <= 1 << 20 || s >= (1 << 20) + 4096));
            assert_eq!(holes.last().map(|h| h.1), Some(4 << 20));
        }
    }
}
