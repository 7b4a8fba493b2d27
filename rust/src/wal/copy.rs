//! Copying the committed frames of a live WAL file into another file: what one SQLite
//! capture step stores. The WAL is read in large positioned reads and scanned chunk by
//! chunk (the checksum chain continues across chunks); the bytes written are the bytes
//! that were checked, never read again from the live file. Memory is one chunk (it grows
//! only while a single transaction is longer than the chunk).

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::scan::{parse_header, scan, Stop, WalHeader, HEADER_LEN};
use super::WalError;

/// A resume point: the salts of the WAL generation, a frame already copied, and the
/// cumulative checksum through it.
pub type Resume = ([u32; 2], u64, [u32; 2]);

/// Frames read by the first positioned read (256 KiB of 4 KiB pages). The WAL file keeps
/// its size across restarts, so what lies past the valid run is usually an older
/// generation's leftovers: a capturer that copies the few new frames every few
/// milliseconds must not read megabytes of them each time. Each read that was wholly
/// valid doubles the next, up to MAX_CHUNK_FRAMES (16 MiB).
const CHUNK_FRAMES: usize = 64;
const MAX_CHUNK_FRAMES: usize = 4096;
/// Reads of a WAL that a restart changed under them, before giving up.
const ATTEMPTS: usize = 50;

/// What [`copy_committed`] copied, and where and why the valid run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// The WAL's header as it was before and after the read.
    pub header: WalHeader,
    /// The first frame copied (1, or the one after the resume point).
    pub first_index: u64,
    /// Whether the copy continues the resume point (same salts).
    pub resumed: bool,
    /// Indexes of the commit frames copied.
    pub commits: Vec<u64>,
    /// Frames copied (all of them up to the last commit).
    pub frames: u64,
    /// The cumulative checksum after the last copied frame (the seed if none).
    pub checksum: [u32; 2],
    /// Valid frames after the last commit.
    pub uncommitted: u64,
    /// Why the valid run ended.
    pub stop: Stop,
    /// Bytes the file holds after the frame that ended the run (0 at a clean end).
    pub following_bytes: u64,
    /// Bytes written to the destination (the header and the frames; 0 when no frame was
    /// committed, and then the destination is not created).
    pub written: u64,
}

impl Copied {
    /// The last commit frame copied, if any.
    pub fn last_commit(&self) -> Option<u64> {
        self.commits.last().copied()
    }
}

fn io(path: &Path, source: std::io::Error) -> WalError {
    WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads into `buf` at `offset` until it is full or the file ends; returns the bytes read.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Copies the committed frames of the WAL file `wal` into a new file `dest` (the WAL's
/// header, then the frames), as the WAL is now. With `resume` = (salts, frame, checksum)
/// of a frame already copied and the same salts in the WAL, copies from the frame after
/// it (continuing the checksum chain from `checksum`); otherwise from frame 1.
///
/// `Ok(None)`: there is no WAL, or it holds no complete header yet. A header that changes
/// while the WAL is read (a restart) or does not parse is read again, up to 50 times,
/// before the last reason is returned. `dest` is created only when a frame is copied;
/// it is not synced (the caller stores it durably elsewhere).
pub fn copy_committed(wal: &Path, dest: &Path, resume: Option<Resume>) -> Result<Option<Copied>, WalError> {
    copy_committed_chunked(wal, dest, resume, CHUNK_FRAMES, Mode::Create)
}

/// Where the checked frames go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A new file: the header, then the frames.
    Create,
    /// The end of an existing file that holds this generation's frames through the resume
    /// point: only the frames after it. A capturer's spool grows one file per generation
    /// this way, a few frames at a time, without rewriting what it already holds.
    Append,
}

/// [`copy_committed`] appending to `dest` instead: when the WAL continues `resume` (same
/// salts), the committed frames after it are appended to `dest` (which must exist); when
/// it does not (a restart, or no resume point), nothing is written and `resumed` is false,
/// so the caller starts a file for the new generation with [`copy_committed`]. A read that
/// fails, or that a restart changed under it, leaves `dest` at its length before the call.
pub fn append_committed(wal: &Path, dest: &Path, resume: Option<Resume>) -> Result<Option<Copied>, WalError> {
    copy_committed_chunked(wal, dest, resume, CHUNK_FRAMES, Mode::Append)
}

/// [`copy_committed`] reading `chunk_frames` frames at first (the tests use small chunks
/// to cross chunk boundaries in every way).
pub(crate) fn copy_committed_chunked(
    wal: &Path,
    dest: &Path,
    resume: Option<Resume>,
    chunk_frames: usize,
    mode: Mode,
) -> Result<Option<Copied>, WalError> {
    let chunk_frames = chunk_frames.max(1);
    let mut sink = Sink::open(dest, mode)?;
    let mut last_problem = None;
    for _ in 0..ATTEMPTS {
        let file = match File::open(wal) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(wal, e)),
        };
        let mut head = [0u8; HEADER_LEN];
        if read_at(&file, &mut head, 0).map_err(|e| io(wal, e))? < HEADER_LEN {
            return Ok(None);
        }
        let header = match parse_header(&head) {
            Ok(h) => h,
            Err(e) => {
                // A header being rewritten by a restart parses on the next read.
                last_problem = Some(e);
                continue;
            }
        };
        let copied = match copy_run(&file, wal, &head, header, &mut sink, resume, chunk_frames) {
            Ok(c) => c,
            Err(e) => {
                sink.undo();
                return Err(e);
            }
        };
        let mut again = [0u8; HEADER_LEN];
        let n = read_at(&file, &mut again, 0).map_err(|e| io(wal, e));
        if matches!(n, Ok(n) if n == HEADER_LEN && again == head) {
            return Ok(Some(copied));
        }
        sink.undo();
        n?;
        last_problem = Some(WalError::Unsteady {
            path: wal.to_path_buf(),
        });
    }
    Err(last_problem.unwrap_or_else(|| WalError::Unsteady {
        path: wal.to_path_buf(),
    }))
}

/// The destination of one call: a file created on the first committed frame, or an
/// existing one appended to. Either way `undo` puts it back as it was before the call.
struct Sink<'a> {
    dest: &'a Path,
    mode: Mode,
    out: Option<File>,
    /// Append: the file's length before the call.
    start: u64,
}

impl<'a> Sink<'a> {
    fn open(dest: &'a Path, mode: Mode) -> Result<Self, WalError> {
        let (out, start) = match mode {
            Mode::Create => {
                // Only a committed frame creates the file: an older one must not stay.
                match std::fs::remove_file(dest) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io(dest, e)),
                }
                (None, 0)
            }
            Mode::Append => {
                let f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(dest)
                    .map_err(|e| io(dest, e))?;
                let len = f.metadata().map_err(|e| io(dest, e))?.len();
                (Some(f), len)
            }
        };
        Ok(Self { dest, mode, out, start })
    }

    /// Writes `body`, preceded by the WAL header `head` when a new file starts.
    fn write(&mut self, head: &[u8; HEADER_LEN], body: &[u8]) -> Result<u64, WalError> {
        let mut written = 0;
        let f = match self.out.as_mut() {
            Some(f) => f,
            None => {
                let mut f = File::create(self.dest).map_err(|e| io(self.dest, e))?;
                f.write_all(head).map_err(|e| io(self.dest, e))?;
                written += HEADER_LEN as u64;
                self.out.insert(f)
            }
        };
        f.write_all(body).map_err(|e| io(self.dest, e))?;
        Ok(written + body.len() as u64)
    }

    /// Back to the state before the call: a created file removed, an appended one cut.
    fn undo(&mut self) {
        match self.mode {
            Mode::Create => {
                self.out = None;
                let _ = std::fs::remove_file(self.dest);
            }
            Mode::Append => {
                if let Some(f) = self.out.as_mut() {
                    // Best effort on a path that already failed; the caller sees that error.
                    // (O_APPEND: the next write goes to the new end.)
                    let _ = f.set_len(self.start);
                }
            }
        }
    }
}

/// One pass over the valid run of `file` (whose header is `head`), writing committed
/// frames to the sink (an appending sink only when the WAL continues the resume point).
fn copy_run(
    file: &File,
    wal: &Path,
    head: &[u8; HEADER_LEN],
    header: WalHeader,
    sink: &mut Sink<'_>,
    resume: Option<Resume>,
    chunk_frames: usize,
) -> Result<Copied, WalError> {
    let frame_len = header.frame_len();
    let resumed = matches!(resume, Some((salt, _, _)) if salt == header.salt);
    let (first_index, mut seed) = match resume {
        Some((_, frame, sum)) if resumed => (frame + 1, Some(sum)),
        _ => (1, None),
    };
    let mut copied = Copied {
        header,
        first_index,
        resumed,
        commits: Vec::new(),
        frames: 0,
        checksum: seed.unwrap_or(header.checksum),
        uncommitted: 0,
        stop: Stop::End,
        following_bytes: 0,
        written: 0,
    };
    if sink.mode == Mode::Append && !resumed {
        return Ok(copied); // another generation: it goes to a file of its own
    }
    let size = file.metadata().map_err(|e| io(wal, e))?.len();
    let mut at = first_index;
    let mut chunk_frames = chunk_frames;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let offset = HEADER_LEN as u64 + (at - 1) * frame_len as u64;
        // Never more than the file holds: the buffer is bounded by the file's size.
        let want = (chunk_frames * frame_len).min(size.saturating_sub(offset) as usize);
        buf.clear();
        buf.extend_from_slice(head);
        buf.resize(HEADER_LEN + want, 0);
        let got = read_at(file, &mut buf[HEADER_LEN..], offset).map_err(|e| io(wal, e))?;
        buf.truncate(HEADER_LEN + got);
        let s = scan(&buf, at, seed)?;
        if let Some(last) = s.last_commit() {
            copied.written += sink.write(head, &buf[HEADER_LEN..s.committed_len()])?;
            copied.frames += s.frames.len() as u64;
            copied
                .commits
                .extend(s.frames.iter().filter(|fr| fr.commit_size != 0).map(|fr| fr.index));
            copied.checksum = s.checksum;
            seed = Some(s.checksum);
            at = last + 1;
        }
        copied.uncommitted = s.uncommitted;
        copied.stop = s.stop;
        let full = got == chunk_frames * frame_len;
        if s.stop != Stop::End || !full {
            break;
        }
        if s.last_commit().is_none() || chunk_frames < MAX_CHUNK_FRAMES {
            // A long valid run (or one transaction longer than the chunk): read more at once.
            chunk_frames *= 2;
        }
    }
    let stop_frame = match copied.stop {
        Stop::End => None,
        Stop::Partial { index } | Stop::Salt { index } | Stop::Checksum { index } | Stop::PageZero { index } => {
            Some(index)
        }
    };
    if let Some(index) = stop_frame {
        let end = HEADER_LEN as u64 + index * frame_len as u64;
        copied.following_bytes = size.saturating_sub(end);
    }
    Ok(copied)
}
