//! Applying committed frames to a database file: each page's newest version in the
//! range is written at `(page - 1) * page_size`, then the file takes the last commit's
//! size, as a checkpoint does.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{Scan, WalError};

/// What one [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyStats {
    /// Frames in the applied range.
    pub frames: u64,
    /// Pages written (each page once, however many frames held it).
    pub pages_written: u64,
    /// The database's size in pages after the last applied commit.
    pub db_pages: u32,
}

/// Applies the frames of `scan` (over `buf`) with `after < index <= through` to the
/// database file `db`. `through` must be a commit frame of the scan; the file ends up as
/// the database was right after that commit, given that it held the state after frame
/// `after` (or any earlier frame of the same generation: re-applying frames in order
/// converges to the same pages).
pub fn apply(db: &Path, buf: &[u8], scan: &Scan, after: u64, through: u64) -> Result<ApplyStats, WalError> {
    let page_size = scan.header.page_size as usize;
    let last = scan
        .frames
        .iter()
        .find(|f| f.index == through)
        .ok_or_else(|| WalError::Argument(format!("frame {through} is not a committed frame of this WAL run")))?;
    if last.commit_size == 0 {
        return Err(WalError::Argument(format!("frame {through} is not a commit frame")));
    }
    if through <= after {
        return Err(WalError::Argument(format!(
            "nothing to apply: frame {through} is not after frame {after}"
        )));
    }
    let db_pages = last.commit_size;
    let mut newest: HashMap<u32, usize> = HashMap::new();
    let mut frames = 0u64;
    for f in scan.frames.iter().filter(|f| f.index > after && f.index <= through) {
        frames += 1;
        if f.page_number <= db_pages {
            newest.insert(f.page_number, f.data_offset);
        }
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(db)
        .map_err(|e| WalError::Io {
            path: db.to_path_buf(),
            source: e,
        })?;
    check_page_size(&file, db, page_size)?;
    let mut pages: Vec<(u32, usize)> = newest.into_iter().collect();
    pages.sort_unstable();
    for &(page, offset) in &pages {
        let data = buf.get(offset..offset + page_size).ok_or_else(|| {
            WalError::Argument(format!("frame data at offset {offset} lies outside the scanned buffer"))
        })?;
        let at = u64::from(page - 1) * page_size as u64;
        file.write_all_at(data, at).map_err(|e| WalError::Io {
            path: db.to_path_buf(),
            source: e,
        })?;
    }
    file.set_len(u64::from(db_pages) * page_size as u64)
        .and_then(|()| file.sync_all())
        .map_err(|e| WalError::Io {
            path: db.to_path_buf(),
            source: e,
        })?;
    Ok(ApplyStats {
        frames,
        pages_written: pages.len() as u64,
        db_pages,
    })
}

/// A database file that already holds page 1 must use the WAL's page size (the database
/// header's big-endian u16 at offset 16, where 1 means 65536).
fn check_page_size(file: &File, db: &Path, page_size: usize) -> Result<(), WalError> {
    let len = file
        .metadata()
        .map_err(|e| WalError::Io {
            path: db.to_path_buf(),
            source: e,
        })?
        .len();
    if len < 100 {
        return Ok(());
    }
    let mut field = [0u8; 2];
    file.read_exact_at(&mut field, 16).map_err(|e| WalError::Io {
        path: db.to_path_buf(),
        source: e,
    })?;
    let stored = match u16::from_be_bytes(field) {
        1 => 65536,
        n => usize::from(n),
    };
    if stored != page_size {
        return Err(WalError::Database {
            path: db.to_path_buf(),
            detail: format!("the database's page size is {stored} bytes (header offset 16), the WAL's {page_size}"),
        });
    }
    Ok(())
}
