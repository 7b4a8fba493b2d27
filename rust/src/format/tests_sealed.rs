//! Sealed block maps: the plain bytes inside are exactly the plain map (opened here frame
//! by frame with the AEAD directly, the oracle), chains of sealed maps resolve to their
//! states, every changed stored byte is found with and without the key, and frames moved,
//! swapped or cut off fail their tags.

use std::fs;
use std::path::{Path, PathBuf};

use super::sealed_map::{self, SealedFile, FRAME_LEN, SEALED_HEADER_LEN, SEALED_TRAILER_LEN};
use super::tests::tmpdir;
use super::*;
use crate::crypto;
use crate::scan::algorithm::Algorithm;

fn rec(k: u32, i: u64) -> BlockRecord {
    BlockRecord {
        source: k,
        offset: 32 + i * 512,
        stored_len: 100 + (i % 400) as u32,
        raw_len: 100 + (i % 400) as u32,
        flags: 0,
        digest: Algorithm::Blake3.digest(&[k as u8, (k >> 8) as u8, i as u8, (i >> 8) as u8, 0x5e]),
    }
}

fn key(tag: u8) -> [u8; 32] {
    let mut k = crypto::derive_key("rustybackup tests sealed map", &[tag]);
    k[31] ^= tag;
    k
}

/// A unique set directory under `d` (the registry is per process; tests run in parallel).
fn set_dir(d: &Path, name: &str) -> PathBuf {
    let dir = d.join(format!("{name}-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a map of `n` records at `dir/blockmap`, sealed under `k` when given.
fn write(dir: &Path, n: u64, k: Option<[u8; 32]>, parent: Option<(ParentRef, u64)>) -> (Vec<u8>, Vec<BlockRecord>) {
    let set = dir.file_name().unwrap().to_str().unwrap().to_string();
    if let Some(k) = k {
        sealed_map::set_write_key(&set, Some(k));
        sealed_map::register_read_key(k);
    }
    let path = dir.join("blockmap");
    let mut w = match &parent {
        None => BlockMapWriter::create(&path, Algorithm::Blake3, 512).unwrap(),
        Some((p, _)) => BlockMapWriter::create_child(&path, Algorithm::Blake3, 512, p.clone()).unwrap(),
    };
    let mut state = Vec::new();
    for i in 0..n {
        // Every third block refers to the parent's same record, when there is one.
        match &parent {
            Some((_, pn)) if i % 3 != 0 && i < *pn => {
                w.push_parent(i).unwrap();
                state.push(BlockRecord {
                    source: u32::MAX,
                    ..rec(0, i)
                });
            }
            _ => {
                let r = rec(set.len() as u32, i);
                w.push(&r).unwrap();
                state.push(r);
            }
        }
    }
    let (sum, count) = w.finish().unwrap();
    sealed_map::set_write_key(&set, None);
    assert_eq!(count, n);
    (sum, state)
}

/// The plain bytes of a sealed map, opened with the AEAD directly from the format's
/// description (docs/FORMAT.md "Sealed block map").
fn open_by_hand(path: &Path, k: &[u8; 32]) -> Vec<u8> {
    let b = fs::read(path).unwrap();
    let label = format!(
        "{}/blockmap",
        path.parent().unwrap().file_name().unwrap().to_str().unwrap()
    );
    let t = b.len() - SEALED_TRAILER_LEN as usize;
    let frames = u64::from_le_bytes(b[t + 16..t + 24].try_into().unwrap());
    let mut out = Vec::new();
    let mut at = SEALED_HEADER_LEN as usize;
    for i in 0..frames {
        let len = if i + 1 == frames {
            t - at
        } else {
            FRAME_LEN as usize + 40
        };
        let mut ad = b"rustybackup bmap1".to_vec();
        ad.extend_from_slice(&(label.len() as u64).to_le_bytes());
        ad.extend_from_slice(label.as_bytes());
        ad.extend_from_slice(&i.to_le_bytes());
        ad.push(u8::from(i + 1 == frames));
        out.extend(crypto::open(k, &ad, &b[at..at + len]).unwrap());
        at += len;
    }
    assert_eq!(at, t);
    out
}

fn read_all(path: &Path) -> Result<Vec<BlockRecord>> {
    let m = BlockMapReader::open(path)?;
    m.verify_checksum()?;
    m.range(0, m.count())?.collect()
}

#[test]
fn a_sealed_map_holds_exactly_the_plain_map_and_no_digest_in_the_clear() {
    let d = tmpdir("sealed-plain");
    let k = key(1);
    let plain = set_dir(&d, "p");
    let sealed = set_dir(&d, "s");
    // 2,000 records of 53 bytes: seven frames, the last one short.
    write(&plain, 2000, None, None);
    let (_, state) = write(&sealed, 2000, Some(k), None);
    let pb = fs::read(plain.join("blockmap")).unwrap();
    // Same records (the source number is the set name's length): same plain bytes.
    assert_eq!(open_by_hand(&sealed.join("blockmap"), &k), pb);
    let sb = fs::read(sealed.join("blockmap")).unwrap();
    assert_eq!(&sb[..8], b"RBBMSEAL");
    for r in &state {
        assert!(
            !sb.windows(32).any(|w| w == r.digest.as_slice()),
            "a digest in the clear"
        );
    }
    assert_eq!(read_all(&sealed.join("blockmap")).unwrap(), state);
    let c = SealedFile::open(&sealed.join("blockmap")).unwrap();
    assert_eq!(c.frames, (pb.len() as u64).div_ceil(u64::from(FRAME_LEN)));
}

#[test]
fn a_chain_of_sealed_maps_under_their_own_keys_resolves_and_checks() {
    let d = tmpdir("sealed-chain");
    let mut prev: Option<(ParentRef, Vec<BlockRecord>, String)> = None;
    let mut top = PathBuf::new();
    let mut want = Vec::new();
    for k in 0..4u8 {
        let dir = set_dir(&d, &format!("c{k}"));
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let parent = prev.as_ref().map(|(p, s, _)| (p.clone(), s.len() as u64));
        let (sum, state) = write(&dir, 1500 + u64::from(k) * 100, Some(key(10 + k)), parent);
        // What the references resolve to: the parent's state at the same index.
        let resolved: Vec<BlockRecord> = state
            .iter()
            .enumerate()
            .map(|(i, r)| match &prev {
                Some((_, ps, _)) if r.source == u32::MAX => ps[i].clone(),
                _ => r.clone(),
            })
            .collect();
        let m = BlockMapReader::open(&dir.join("blockmap")).unwrap();
        assert!(m.is_sealed());
        // The container's checksum is the map's: what the catalog and the child record.
        assert_eq!(m.recorded_checksum(), sum.as_slice());
        assert_eq!(
            m.checksum_with(&mut |_| std::ops::ControlFlow::Continue(())).unwrap(),
            Some(sum.clone())
        );
        prev = Some((
            ParentRef {
                rel_path: format!("../{name}/blockmap"),
                checksum: sum,
            },
            resolved.clone(),
            name,
        ));
        top = dir.join("blockmap");
        want = resolved;
    }
    assert_eq!(read_all(&top).unwrap(), want);
    let m = BlockMapReader::open(&top).unwrap();
    m.hash_as_read();
    let got: Vec<BlockRecord> = m.range(0, m.count()).unwrap().collect::<Result<_>>().unwrap();
    m.finish_checksums().unwrap();
    assert_eq!(got, want);
}

/// Whether a keyless check (container framing and checksum) finds the map damaged.
fn keyless_finds(path: &Path) -> bool {
    match SealedFile::open(path) {
        Err(_) => true,
        Ok(c) => {
            let h = read::hash_prefix(&c.file, path, c.algorithm, c.trailer_at(), &mut |_| {
                std::ops::ControlFlow::Continue(())
            });
            h.unwrap() != Some(c.checksum.clone())
        }
    }
}

#[test]
fn every_changed_byte_is_found_with_and_without_the_key() {
    let d = tmpdir("sealed-flip");
    let k = key(2);
    let dir = set_dir(&d, "f");
    write(&dir, 700, Some(k), None);
    let path = dir.join("blockmap");
    let good = fs::read(&path).unwrap();
    let t = good.len() - SEALED_TRAILER_LEN as usize;
    // Every byte of header and trailer, and a stride through the frames.
    let at: Vec<usize> = (0..SEALED_HEADER_LEN as usize)
        .chain((SEALED_HEADER_LEN as usize..t).step_by(61))
        .chain(t..good.len())
        .collect();
    for i in at {
        let mut b = good.clone();
        b[i] ^= 0x10;
        fs::write(&path, &b).unwrap();
        assert!(keyless_finds(&path), "byte {i} changed, keyless check passed");
        if i < SEALED_HEADER_LEN as usize || i >= t {
            continue;
        }
        // A frame byte: the keyed reader names the frame it is in.
        let frame = (i - SEALED_HEADER_LEN as usize) / (FRAME_LEN as usize + 40);
        let start = SEALED_HEADER_LEN + frame as u64 * (u64::from(FRAME_LEN) + 40);
        match read_all(&path) {
            Err(Error::Damaged { offset, detail, .. }) => {
                assert_eq!(offset, start, "byte {i}: {detail}");
                assert!(detail.contains(&format!("frame {frame}")), "{detail}");
            }
            other => panic!("byte {i} changed, read gave {other:?}"),
        }
    }
    fs::write(&path, &good).unwrap();
    read_all(&path).unwrap();
}

#[test]
fn frames_swapped_cut_off_or_taken_from_another_map_fail() {
    let d = tmpdir("sealed-move");
    let k = key(3);
    let (a, b) = (set_dir(&d, "ma"), set_dir(&d, "mb"));
    write(&a, 1200, Some(k), None);
    write(&b, 1200, Some(k), None);
    let pa = a.join("blockmap");
    let good = fs::read(&pa).unwrap();
    let f = FRAME_LEN as usize + 40;
    let h = SEALED_HEADER_LEN as usize;
    let reseal_sum = |bytes: &mut Vec<u8>| {
        // A writer could recompute the clear checksum: the tags must still refuse it.
        let t = bytes.len() - SEALED_TRAILER_LEN as usize;
        let sum = Algorithm::Blake3.digest(&bytes[..t]);
        bytes[t + 32..t + 64].copy_from_slice(&sum);
    };
    // Frames 0 and 1 swapped.
    let mut s = good.clone();
    s[h..h + f].copy_from_slice(&good[h + f..h + 2 * f]);
    s[h + f..h + 2 * f].copy_from_slice(&good[h..h + f]);
    reseal_sum(&mut s);
    fs::write(&pa, &s).unwrap();
    assert!(matches!(read_all(&pa), Err(Error::Damaged { offset, .. }) if offset == h as u64));
    // Frame 1 of the other map (same key, other name).
    let other = fs::read(b.join("blockmap")).unwrap();
    let mut s = good.clone();
    s[h + f..h + 2 * f].copy_from_slice(&other[h + f..h + 2 * f]);
    reseal_sum(&mut s);
    fs::write(&pa, &s).unwrap();
    assert!(matches!(read_all(&pa), Err(Error::Damaged { offset, .. }) if offset == (h + f) as u64));
    // The last frame cut off, the trailer's lengths made to fit: the new last frame was
    // not sealed as the last.
    let t = good.len() - SEALED_TRAILER_LEN as usize;
    let frames = u64::from_le_bytes(good[t + 16..t + 24].try_into().unwrap());
    let keep = h + (frames as usize - 1) * f;
    let mut s = good[..keep].to_vec();
    let mut trailer = good[t..].to_vec();
    let plain = (frames - 1) * u64::from(FRAME_LEN);
    trailer[8..16].copy_from_slice(&plain.to_le_bytes());
    trailer[16..24].copy_from_slice(&(frames - 1).to_le_bytes());
    s.extend_from_slice(&trailer);
    reseal_sum(&mut s);
    fs::write(&pa, &s).unwrap();
    assert!(SealedFile::open(&pa).is_ok());
    assert!(read_all(&pa).is_err());
}

#[test]
fn a_sealed_map_without_its_key_is_a_clear_error() {
    let d = tmpdir("sealed-nokey");
    let dir = set_dir(&d, "n");
    let set = dir.file_name().unwrap().to_str().unwrap().to_string();
    // Sealed under a key never registered for reading.
    let k = key(99);
    sealed_map::set_write_key(&set, Some(k));
    let mut w = BlockMapWriter::create(&dir.join("blockmap"), Algorithm::Blake3, 512).unwrap();
    w.push(&rec(0, 0)).unwrap();
    w.finish().unwrap();
    sealed_map::set_write_key(&set, None);
    match BlockMapReader::open(&dir.join("blockmap")) {
        Err(Error::Damaged { detail, .. }) => assert!(detail.contains("no key"), "{detail}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened without its key"),
    }
    assert!(!sealed_map::key_loaded(&dir.join("blockmap")));
    assert!(!keyless_finds(&dir.join("blockmap")));
}
