use super::*;

/// checksum_impl.h transcribed literally, as the oracle: copy the page, zero
/// pd_checksum, view it as `data[rows][N_SUMS]` words, run the lanes.
fn oracle(page: &[u8], blkno: u32) -> u16 {
    let mut copy = page.to_vec();
    copy[8] = 0;
    copy[9] = 0;
    let words: Vec<u32> = copy
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    let rows = page.len() / (4 * N_SUMS);
    let mut sums = CHECKSUM_BASE_OFFSETS;
    for i in 0..rows {
        for j in 0..N_SUMS {
            let tmp = sums[j] ^ words[i * N_SUMS + j];
            sums[j] = tmp.wrapping_mul(FNV_PRIME) ^ (tmp >> 17);
        }
    }
    for _ in 0..2 {
        for s in sums.iter_mut() {
            let tmp = *s;
            *s = tmp.wrapping_mul(FNV_PRIME) ^ (tmp >> 17);
        }
    }
    let mut result = 0u32;
    for s in sums {
        result ^= s;
    }
    ((result ^ blkno) % 65535 + 1) as u16
}

pub(super) struct Rng(pub(super) u64);
impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(super) fn page(&mut self, size: usize) -> Vec<u8> {
        (0..size).map(|_| self.next() as u8).collect()
    }
}

fn with_header(mut page: Vec<u8>, lsn: u64, blkno: u32) -> Vec<u8> {
    page[0..4].copy_from_slice(&((lsn >> 32) as u32).to_le_bytes());
    page[4..8].copy_from_slice(&(lsn as u32).to_le_bytes());
    page[14..16].copy_from_slice(&4000u16.to_le_bytes());
    let sum = checksum_page(&page, blkno);
    page[8..10].copy_from_slice(&sum.to_le_bytes());
    page
}

#[test]
fn matches_the_transcribed_algorithm_on_random_pages() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for size in [1024, 8192, 32768] {
        for _ in 0..200 {
            let page = rng.page(size);
            let blkno = rng.next() as u32;
            let sum = checksum_page(&page, blkno);
            assert_eq!(sum, oracle(&page, blkno));
            assert_ne!(sum, 0, "0 means 'no checksum' and is never produced");
        }
    }
}

#[test]
fn the_stored_checksum_does_not_take_part() {
    let mut rng = Rng(7);
    let mut page = rng.page(8192);
    let before = checksum_page(&page, 3);
    page[8] ^= 0xFF;
    page[9] ^= 0x0F;
    assert_eq!(checksum_page(&page, 3), before);
    page[10] ^= 1;
    assert_ne!(checksum_page(&page, 3), before);
}

#[test]
fn a_wrong_page_length_gives_zero_not_a_panic() {
    assert_eq!(checksum_page(&[1u8; 8191], 0), 0);
    assert_eq!(checksum_page(&[], 0), 0);
}

#[test]
fn pages_are_classified_as_pgbackrest_does() {
    let mut rng = Rng(11);
    let good = with_header(rng.page(8192), 0x1_0000_0100, 5);
    assert_eq!(check_page(&good, 5, 0x2_0000_0000), PageCheck::Valid);
    // The same page at another block number fails: the block number is mixed in.
    assert!(matches!(check_page(&good, 6, 0x2_0000_0000), PageCheck::Damaged { .. }));
    let mut flipped = good.clone();
    flipped[5000] ^= 0x10;
    assert!(matches!(
        check_page(&flipped, 5, 0x2_0000_0000),
        PageCheck::Damaged { .. }
    ));
    // Written after the backup started: replay rewrites it, so it is not judged.
    assert_eq!(check_page(&flipped, 5, 0x1_0000_0100), PageCheck::AfterStart);
    assert_eq!(check_page(&[0u8; 8192], 9, 1), PageCheck::New);
    let mut new_page = rng.page(8192);
    new_page[14] = 0;
    new_page[15] = 0;
    assert_eq!(check_page(&new_page, 9, 1), PageCheck::New);
}

#[test]
fn a_file_reports_damaged_blocks_with_their_relation_block_numbers() {
    let dir = std::env::temp_dir().join(format!("pgpage-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("16384.1");
    let per_segment = RELSEG_BYTES / 8192;
    let mut rng = Rng(99);
    let mut data = Vec::new();
    for i in 0..300u64 {
        let mut page = with_header(rng.page(8192), 0x100, (per_segment + i) as u32);
        if i == 7 || i == 200 {
            page[100] ^= 1;
        }
        data.extend_from_slice(&page);
    }
    // A partial page at the end (a file being extended) is left alone.
    data.extend_from_slice(&[0xAB; 1000]);
    std::fs::write(&path, &data).expect("write");
    let bad = check_file(&path, 1, 0x1000, 8192).expect("check");
    let blocks: Vec<u64> = bad.iter().map(|b| b.block).collect();
    assert_eq!(blocks, vec![per_segment + 7, per_segment + 200]);
    assert!(check_file(&path, 1, 0x1000, 1000).is_err());
    assert!(check_file(&dir.join("missing"), 0, 0, 8192).is_err());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
