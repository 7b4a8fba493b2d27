//! Unit tests on WALs built here byte by byte (the Python tests check against SQLite).

use super::*;
use crate::test_util::XorShift as Rng;

const PAGE: u32 = 512;

/// A WAL writer as SQLite's `walWriteHeader` / `walEncodeFrame` lay it out.
struct Builder {
    buf: Vec<u8>,
    big_endian: bool,
    salt: [u32; 2],
    sum: [u32; 2],
}

impl Builder {
    fn new(big_endian: bool, salt: [u32; 2]) -> Self {
        let mut buf = Vec::new();
        buf.extend_from_slice(&(if big_endian { 0x377f_0683u32 } else { 0x377f_0682 }).to_be_bytes());
        buf.extend_from_slice(&3_007_000u32.to_be_bytes());
        buf.extend_from_slice(&PAGE.to_be_bytes());
        buf.extend_from_slice(&7u32.to_be_bytes());
        buf.extend_from_slice(&salt[0].to_be_bytes());
        buf.extend_from_slice(&salt[1].to_be_bytes());
        let sum = checksum(&buf, big_endian, [0, 0]);
        buf.extend_from_slice(&sum[0].to_be_bytes());
        buf.extend_from_slice(&sum[1].to_be_bytes());
        Self {
            buf,
            big_endian,
            salt,
            sum,
        }
    }

    fn frame(&mut self, page: u32, commit: u32, fill: u8) -> &mut Self {
        let mut head = Vec::new();
        head.extend_from_slice(&page.to_be_bytes());
        head.extend_from_slice(&commit.to_be_bytes());
        let data = vec![fill; PAGE as usize];
        let s = checksum(&head, self.big_endian, self.sum);
        self.sum = checksum(&data, self.big_endian, s);
        head.extend_from_slice(&self.salt[0].to_be_bytes());
        head.extend_from_slice(&self.salt[1].to_be_bytes());
        head.extend_from_slice(&self.sum[0].to_be_bytes());
        head.extend_from_slice(&self.sum[1].to_be_bytes());
        self.buf.extend_from_slice(&head);
        self.buf.extend_from_slice(&data);
        self
    }
}

fn frame_at(index: u64) -> usize {
    HEADER_LEN + (index as usize - 1) * (FRAME_HEADER_LEN + PAGE as usize)
}

#[test]
fn scan_returns_frames_through_the_last_commit() {
    for be in [false, true] {
        let mut b = Builder::new(be, [1, 2]);
        b.frame(1, 0, 1)
            .frame(2, 2, 2)
            .frame(3, 0, 3)
            .frame(1, 3, 4)
            .frame(2, 0, 5);
        let s = scan(&b.buf, 1, None).unwrap();
        assert_eq!(s.header.big_endian, be);
        assert_eq!(s.last_commit(), Some(4));
        assert_eq!(s.frames.len(), 4);
        assert_eq!(s.uncommitted, 1);
        assert_eq!(s.stop, Stop::End);
        assert_eq!(s.checksum, s.frames[3].checksum);
        assert_eq!(s.committed_len(), frame_at(5));
    }
}

#[test]
fn scanning_from_an_offset_needs_and_uses_the_seed() {
    let mut b = Builder::new(false, [9, 9]);
    b.frame(1, 1, 1).frame(1, 1, 2).frame(2, 2, 3);
    let whole = scan(&b.buf, 1, None).unwrap();
    let mut tail = b.buf[..HEADER_LEN].to_vec();
    tail.extend_from_slice(&b.buf[frame_at(2)..]);
    assert!(matches!(scan(&tail, 2, None), Err(WalError::Argument(_))));
    let part = scan(&tail, 2, Some(whole.frames[0].checksum)).unwrap();
    assert_eq!(part.frames.iter().map(|f| f.index).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(part.checksum, whole.checksum);
    // A wrong seed ends the run at once.
    let bad = scan(&tail, 2, Some([0, 0])).unwrap();
    assert_eq!(bad.stop, Stop::Checksum { index: 2 });
    assert!(bad.frames.is_empty());
}

#[test]
fn damage_ends_the_valid_run_and_says_where() {
    let mut b = Builder::new(false, [5, 6]);
    b.frame(1, 1, 1).frame(2, 2, 2).frame(3, 3, 3);
    // A flipped page byte in frame 2.
    let mut flipped = b.buf.clone();
    flipped[frame_at(2) + FRAME_HEADER_LEN + 10] ^= 1;
    let s = scan(&flipped, 1, None).unwrap();
    assert_eq!((s.last_commit(), s.stop), (Some(1), Stop::Checksum { index: 2 }));
    // Other salts in frame 3: a leftover of an older generation.
    let mut salted = b.buf.clone();
    salted[frame_at(3) + 8] ^= 0x80;
    let s = scan(&salted, 1, None).unwrap();
    assert_eq!((s.last_commit(), s.stop), (Some(2), Stop::Salt { index: 3 }));
    // Truncated inside frame 3, and at every length.
    for len in HEADER_LEN..b.buf.len() {
        let s = scan(&b.buf[..len], 1, None).unwrap();
        let whole = (len - HEADER_LEN) / (FRAME_HEADER_LEN + PAGE as usize);
        assert_eq!(s.frames.len(), whole);
        if (len - HEADER_LEN) % (FRAME_HEADER_LEN + PAGE as usize) != 0 {
            assert_eq!(
                s.stop,
                Stop::Partial {
                    index: whole as u64 + 1
                }
            );
        }
    }
}

#[test]
fn every_single_byte_change_is_caught_or_harmless() {
    let mut b = Builder::new(true, [3, 4]);
    b.frame(1, 0, 1).frame(2, 2, 2);
    let good = scan(&b.buf, 1, None).unwrap();
    for at in 0..b.buf.len() {
        let mut d = b.buf.clone();
        d[at] ^= 0x41;
        match scan(&d, 1, None) {
            Err(WalError::Header { .. }) => assert!(at < HEADER_LEN),
            Err(e) => panic!("unexpected error {e}"),
            Ok(s) => assert!(s.frames.len() < good.frames.len(), "change at {at} went unnoticed"),
        }
    }
}

#[test]
fn bad_headers_name_the_field() {
    let b = Builder::new(false, [1, 1]);
    let cases: [(usize, u64); 4] = [(0, 0), (5, 4), (10, 8), (17, 24)];
    for (byte, offset) in cases {
        let mut d = b.buf.clone();
        d[byte] ^= 0x10;
        match parse_header(&d) {
            Err(WalError::Header { offset: o, .. }) => assert_eq!(o, offset, "byte {byte}"),
            other => panic!("byte {byte}: {other:?}"),
        }
    }
    assert!(matches!(
        parse_header(&b.buf[..31]),
        Err(WalError::Header { offset: 31, .. })
    ));
}

#[test]
fn apply_writes_newest_pages_and_takes_the_commit_size() {
    let dir = std::env::temp_dir().join(format!("rb-wal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("a.db");
    let mut image = vec![0xEEu8; 4 * PAGE as usize];
    image[16..18].copy_from_slice(&(PAGE as u16).to_be_bytes());
    std::fs::write(&db, image).unwrap();
    let mut b = Builder::new(false, [1, 2]);
    b.frame(2, 0, 1)
        .frame(2, 0, 2)
        .frame(5, 5, 3)
        .frame(3, 2, 4)
        .frame(3, 0, 9);
    let s = scan(&b.buf, 1, None).unwrap();
    let stats = apply(&db, &b.buf, &s, 0, 3).unwrap();
    assert_eq!((stats.frames, stats.pages_written, stats.db_pages), (3, 2, 5));
    let data = std::fs::read(&db).unwrap();
    assert_eq!(data.len(), 5 * PAGE as usize);
    assert!(data[PAGE as usize..2 * PAGE as usize].iter().all(|&x| x == 2));
    assert!(data[4 * PAGE as usize..].iter().all(|&x| x == 3));
    assert!(data[2 * PAGE as usize..3 * PAGE as usize].iter().all(|&x| x == 0xEE));
    // Frame 4 commits a shrink to 2 pages.
    let stats = apply(&db, &b.buf, &s, 3, 4).unwrap();
    assert_eq!(stats.db_pages, 2);
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 2 * u64::from(PAGE));
    // Not a commit frame, or an empty range.
    assert!(matches!(apply(&db, &b.buf, &s, 0, 2), Err(WalError::Argument(_))));
    assert!(matches!(apply(&db, &b.buf, &s, 4, 4), Err(WalError::Argument(_))));
    assert!(matches!(apply(&db, &b.buf, &s, 0, 5), Err(WalError::Argument(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn apply_refuses_a_database_with_another_page_size() {
    let dir = std::env::temp_dir().join(format!("rb-wal-ps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("b.db");
    let mut page1 = vec![0u8; 4096];
    page1[16..18].copy_from_slice(&4096u16.to_be_bytes());
    std::fs::write(&db, &page1).unwrap();
    let mut b = Builder::new(false, [1, 2]);
    b.frame(1, 1, 1);
    let s = scan(&b.buf, 1, None).unwrap();
    assert!(matches!(apply(&db, &b.buf, &s, 0, 1), Err(WalError::Database { .. })));
    assert_eq!(std::fs::read(&db).unwrap(), page1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn copy_matches_a_whole_buffer_scan_across_chunk_boundaries() {
    let dir = std::env::temp_dir().join(format!("rb-wal-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (wal, dest) = (dir.join("x.db-wal"), dir.join("copy"));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..300 {
        let mut b = Builder::new(case % 2 == 0, [case as u32, 77]);
        let frames = rng.below(24);
        for i in 0..frames {
            let commit = if rng.below(3) == 0 { 3 } else { 0 };
            b.frame(1 + rng.below(4) as u32, commit, i as u8);
        }
        let mut bytes = b.buf.clone();
        match rng.below(4) {
            0 if bytes.len() > HEADER_LEN => {
                bytes.truncate(HEADER_LEN + rng.below((bytes.len() - HEADER_LEN) as u64) as usize)
            }
            1 if bytes.len() > HEADER_LEN => {
                let at = HEADER_LEN + rng.below((bytes.len() - HEADER_LEN) as u64) as usize;
                bytes[at] ^= 0x20;
            }
            // Leftovers of an older generation after the valid run.
            2 => bytes.extend_from_slice(&Builder::new(false, [1, 1]).frame(1, 1, 1).buf[HEADER_LEN..]),
            _ => {}
        }
        std::fs::write(&wal, &bytes).unwrap();
        let whole = scan(&bytes, 1, None).unwrap();
        let chunk = 1 + rng.below(5) as usize;
        let got = copy::copy_committed_chunked(&wal, &dest, None, chunk, copy::Mode::Create)
            .unwrap()
            .unwrap();
        let want_commits: Vec<u64> = whole
            .frames
            .iter()
            .filter(|f| f.commit_size != 0)
            .map(|f| f.index)
            .collect();
        assert_eq!(got.commits, want_commits, "case {case} chunk {chunk}");
        assert_eq!(got.checksum, whole.checksum, "case {case}");
        assert_eq!(got.frames, whole.frames.len() as u64);
        if whole.frames.is_empty() {
            assert!(!dest.exists(), "case {case}: nothing committed, nothing written");
        } else {
            assert_eq!(
                std::fs::read(&dest).unwrap(),
                bytes[..whole.committed_len()],
                "case {case}"
            );
        }
        // The frames after the valid run's last commit are uncommitted or ended it.
        if whole.stop != Stop::End {
            assert_eq!(got.stop, whole.stop, "case {case} chunk {chunk}");
        }
        // Resuming after the first commit copies the rest, chained from its checksum.
        if let Some(first) = whole.frames.iter().find(|f| f.commit_size != 0) {
            let again = copy::copy_committed_chunked(
                &wal,
                &dest,
                Some(([case as u32, 77], first.index, first.checksum)),
                chunk,
                copy::Mode::Create,
            )
            .unwrap()
            .unwrap();
            assert!(again.resumed);
            assert_eq!(again.first_index, first.index + 1);
            assert_eq!(again.checksum, whole.checksum);
            assert_eq!(again.commits, want_commits[1..]);
            if want_commits.len() > 1 {
                let mut expect = bytes[..HEADER_LEN].to_vec();
                expect.extend_from_slice(&bytes[frame_at(first.index + 1)..whole.committed_len()]);
                assert_eq!(std::fs::read(&dest).unwrap(), expect);
            } else {
                assert!(!dest.exists());
            }
            // Other salts: not a continuation, so the copy starts at frame 1.
            let other = copy::copy_committed_chunked(
                &wal,
                &dest,
                Some(([1, 2], first.index, first.checksum)),
                chunk,
                copy::Mode::Create,
            )
            .unwrap()
            .unwrap();
            assert!(!other.resumed);
            assert_eq!(other.commits, want_commits);
            // Appending after the first commit to a file holding the run through it gives
            // the file a single copy would have written; other salts append nothing.
            let through_first = &bytes[..frame_at(first.index + 1)];
            std::fs::write(&dest, through_first).unwrap();
            let stranger = copy::copy_committed_chunked(
                &wal,
                &dest,
                Some(([1, 2], first.index, first.checksum)),
                chunk,
                copy::Mode::Append,
            )
            .unwrap()
            .unwrap();
            assert!(!stranger.resumed && stranger.written == 0 && stranger.commits.is_empty());
            assert_eq!(std::fs::read(&dest).unwrap(), through_first, "case {case}");
            let appended = copy::copy_committed_chunked(
                &wal,
                &dest,
                Some(([case as u32, 77], first.index, first.checksum)),
                chunk,
                copy::Mode::Append,
            )
            .unwrap()
            .unwrap();
            assert!(appended.resumed);
            assert_eq!(appended.commits, want_commits[1..]);
            assert_eq!(appended.checksum, whole.checksum);
            assert_eq!(
                std::fs::read(&dest).unwrap(),
                bytes[..whole.committed_len()],
                "case {case}"
            );
        }
        let _ = std::fs::remove_file(&dest);
    }
    // Appending to a file that does not exist: an error naming it, nothing created.
    let missing = dir.join("missing");
    assert!(matches!(
        copy::append_committed(&wal, &missing, None),
        Err(WalError::Io { .. })
    ));
    assert!(!missing.exists());
    // No WAL, and a WAL shorter than its header: nothing to copy.
    std::fs::remove_file(&wal).unwrap();
    assert_eq!(copy::copy_committed(&wal, &dest, None).unwrap(), None);
    std::fs::write(&wal, [0u8; 20]).unwrap();
    assert_eq!(copy::copy_committed(&wal, &dest, None).unwrap(), None);
    // A header that never parses: the error names the field.
    std::fs::write(&wal, [0u8; 64]).unwrap();
    assert!(matches!(
        copy::copy_committed(&wal, &dest, None),
        Err(WalError::Header { offset: 0, .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
