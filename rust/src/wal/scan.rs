//! Parsing: the header, then the frames' salts and cumulative checksums.

use super::WalError;

/// Bytes of the WAL header.
pub const HEADER_LEN: usize = 32;
/// Bytes of a frame header (the page follows).
pub const FRAME_HEADER_LEN: usize = 24;

const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
const VERSION: u32 = 3_007_000;

/// The WAL header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    /// Checksums read the content as big-endian words (magic `0x377f0683`).
    pub big_endian: bool,
    /// Bytes per page (a power of two, 512..=65536).
    pub page_size: u32,
    /// Incremented by every checkpoint that restarts the WAL.
    pub checkpoint_seq: u32,
    /// Salt-1 and salt-2: new on every WAL restart, copied into every frame.
    pub salt: [u32; 2],
    /// The header's own checksum, which seeds frame 1's.
    pub checksum: [u32; 2],
}

impl WalHeader {
    /// Bytes of one frame (header and page).
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + self.page_size as usize
    }
}

/// A valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// 1-based position in the WAL.
    pub index: u64,
    /// The database page the frame holds (1-based).
    pub page_number: u32,
    /// For a commit frame, the database's size in pages after the commit; else 0.
    pub commit_size: u32,
    /// Offset of the page's bytes in the scanned buffer.
    pub data_offset: usize,
    /// The cumulative checksum through this frame.
    pub checksum: [u32; 2],
}

/// Why the valid run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The buffer ended on a frame boundary.
    End,
    /// Frame `index` is cut short (being written, or a truncated copy).
    Partial { index: u64 },
    /// Frame `index` carries other salts (left over from an earlier generation).
    Salt { index: u64 },
    /// Frame `index` has the current salts but a wrong checksum (damage, or a frame
    /// being written).
    Checksum { index: u64 },
    /// Frame `index` names page 0, which no database has.
    PageZero { index: u64 },
}

impl Stop {
    /// A sentence for logs and set records.
    pub fn describe(&self) -> String {
        match self {
            Self::End => "end of the WAL".to_string(),
            Self::Partial { index } => format!("frame {index} is incomplete"),
            Self::Salt { index } => format!("frame {index} belongs to another WAL generation (salts differ)"),
            Self::Checksum { index } => format!("frame {index} fails its checksum"),
            Self::PageZero { index } => format!("frame {index} names page 0"),
        }
    }
}

/// The committed frames of a buffer, and where and why the valid run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The header the frames were checked against.
    pub header: WalHeader,
    /// Index of the buffer's first frame.
    pub first_index: u64,
    /// Valid frames up to and including the last commit frame.
    pub frames: Vec<Frame>,
    /// The cumulative checksum after the last committed frame (the seed if none).
    pub checksum: [u32; 2],
    /// Valid frames after the last commit (a transaction not yet committed).
    pub uncommitted: u64,
    /// Why the valid run ended.
    pub stop: Stop,
}

impl Scan {
    /// Index of the last commit frame, if any frame was committed.
    pub fn last_commit(&self) -> Option<u64> {
        self.frames.last().map(|f| f.index)
    }

    /// Bytes of the buffer that hold the header and the committed frames.
    pub fn committed_len(&self) -> usize {
        HEADER_LEN + self.frames.len() * self.header.frame_len()
    }
}

fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `seed`.
pub fn checksum(data: &[u8], big_endian: bool, seed: [u32; 2]) -> [u32; 2] {
    let [mut s0, mut s1] = seed;
    for pair in data.chunks_exact(8) {
        let (a, b) = if big_endian {
            (
                u32::from_be_bytes([pair[0], pair[1], pair[2], pair[3]]),
                u32::from_be_bytes([pair[4], pair[5], pair[6], pair[7]]),
            )
        } else {
            (
                u32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]),
                u32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]),
            )
        };
        s0 = s0.wrapping_add(a).wrapping_add(s1);
        s1 = s1.wrapping_add(b).wrapping_add(s0);
    }
    [s0, s1]
}

/// Parses and checks the 32-byte header at the start of `buf`.
pub fn parse_header(buf: &[u8]) -> Result<WalHeader, WalError> {
    if buf.len() < HEADER_LEN {
        return Err(WalError::Header {
            offset: buf.len() as u64,
            detail: format!(
                "the WAL is {} bytes, shorter than its {HEADER_LEN}-byte header",
                buf.len()
            ),
        });
    }
    let big_endian = match be32(buf, 0) {
        MAGIC_BE => true,
        MAGIC_LE => false,
        other => {
            return Err(WalError::Header {
                offset: 0,
                detail: format!("magic {other:#010x} is neither {MAGIC_LE:#010x} nor {MAGIC_BE:#010x}"),
            })
        }
    };
    let version = be32(buf, 4);
    if version != VERSION {
        return Err(WalError::Header {
            offset: 4,
            detail: format!("format version {version} is not {VERSION}"),
        });
    }
    let page_size = be32(buf, 8);
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(WalError::Header {
            offset: 8,
            detail: format!("page size {page_size} is not a power of two in 512..=65536"),
        });
    }
    let stored = [be32(buf, 24), be32(buf, 28)];
    let computed = checksum(&buf[..24], big_endian, [0, 0]);
    if stored != computed {
        return Err(WalError::Header {
            offset: 24,
            detail: format!(
                "header checksum {:08x}{:08x} does not match its bytes ({:08x}{:08x})",
                stored[0], stored[1], computed[0], computed[1]
            ),
        });
    }
    Ok(WalHeader {
        big_endian,
        page_size,
        checkpoint_seq: be32(buf, 12),
        salt: [be32(buf, 16), be32(buf, 20)],
        checksum: stored,
    })
}

/// Scans `buf`: a WAL header followed by frames numbered from `first_index` (1 for a
/// whole WAL). `seed` is the cumulative checksum of frame `first_index - 1`; it must be
/// given when `first_index > 1` and is the header's own checksum for frame 1.
///
/// Never fails on frame content: the valid run simply ends, and [`Scan::stop`] says why.
pub fn scan(buf: &[u8], first_index: u64, seed: Option<[u32; 2]>) -> Result<Scan, WalError> {
    let header = parse_header(buf)?;
    let seed = match (first_index, seed) {
        (0, _) => return Err(WalError::Argument("frame indexes start at 1".to_string())),
        (1, None) => header.checksum,
        (1, Some(s)) if s != header.checksum => {
            return Err(WalError::Argument(format!(
                "the seed for frame 1 must be the header checksum {:08x}{:08x}",
                header.checksum[0], header.checksum[1]
            )))
        }
        (_, Some(s)) => s,
        (n, None) => {
            return Err(WalError::Argument(format!(
                "scanning from frame {n} needs the cumulative checksum of frame {}",
                n - 1
            )))
        }
    };
    let frame_len = header.frame_len();
    let body = &buf[HEADER_LEN..];
    // Bounded by the buffer: no allocation beyond one entry per whole frame present.
    let mut frames = Vec::with_capacity(body.len() / frame_len);
    let mut committed = 0usize;
    let mut sum = seed;
    let mut committed_sum = seed;
    let mut stop = Stop::End;
    let mut at = 0usize;
    let mut index = first_index;
    while at < body.len() {
        let Some(frame) = body.get(at..at + frame_len) else {
            stop = Stop::Partial { index };
            break;
        };
        if [be32(frame, 8), be32(frame, 12)] != header.salt {
            stop = Stop::Salt { index };
            break;
        }
        let with_header = checksum(&frame[..8], header.big_endian, sum);
        let next = checksum(&frame[FRAME_HEADER_LEN..], header.big_endian, with_header);
        if next != [be32(frame, 16), be32(frame, 20)] {
            stop = Stop::Checksum { index };
            break;
        }
        let page_number = be32(frame, 0);
        if page_number == 0 {
            stop = Stop::PageZero { index };
            break;
        }
        sum = next;
        let commit_size = be32(frame, 4);
        frames.push(Frame {
            index,
            page_number,
            commit_size,
            data_offset: HEADER_LEN + at + FRAME_HEADER_LEN,
            checksum: next,
        });
        if commit_size != 0 {
            committed = frames.len();
            committed_sum = next;
        }
        at += frame_len;
        index += 1;
    }
    let uncommitted = (frames.len() - committed) as u64;
    frames.truncate(committed);
    Ok(Scan {
        header,
        first_index,
        frames,
        checksum: committed_sum,
        uncommitted,
        stop,
    })
}
