use super::{DedupIndex, Dup, DEFAULT_CAP};
use crate::format::BlockRecord;
use crate::scan::algorithm::Algorithm;

fn rec(source: u32, offset: u64, digest: &[u8]) -> BlockRecord {
    BlockRecord {
        source,
        offset,
        stored_len: 10,
        raw_len: 10,
        flags: 0,
        digest: digest.to_vec(),
    }
}

#[test]
fn weak_algorithms_are_not_indexed() {
    assert!(DedupIndex::new(Algorithm::Md5, None, DEFAULT_CAP).is_none());
    assert!(DedupIndex::new(Algorithm::Sha1, None, DEFAULT_CAP).is_none());
    assert!(DedupIndex::new(Algorithm::Blake3, None, DEFAULT_CAP).is_some());
}

#[test]
fn known_blocks_and_earlier_twins_are_not_stored() {
    let mut idx = DedupIndex::new(Algorithm::Blake3, None, DEFAULT_CAP).unwrap();
    let a = vec![1u8; 32];
    let b = vec![2u8; 32];
    idx.insert(&rec(0, 77, &a));
    let digests = vec![a.clone(), b.clone(), b.clone(), a.clone()];
    let mut store = vec![true, true, true, false];
    let plan = idx.plan(&digests, &[10, 10, 10, 10], &mut store).unwrap();
    assert_eq!(store, vec![false, true, false, false]);
    assert_eq!(plan[0], Some(Dup::Known(rec(0, 77, &a), None)));
    assert_eq!(plan[1], None);
    assert_eq!(plan[2], Some(Dup::Earlier(1)));
    // Not marked for storing (equal to the parent at its place): left alone.
    assert_eq!(plan[3], None);
    assert_eq!(idx.hits, 2);
}

#[test]
fn another_length_is_another_block() {
    let mut idx = DedupIndex::new(Algorithm::Blake3, None, DEFAULT_CAP).unwrap();
    let a = vec![1u8; 32];
    idx.insert(&rec(0, 0, &a));
    let mut store = vec![true];
    let plan = idx.plan(&[a], &[9], &mut store).unwrap();
    assert_eq!((plan[0].clone(), store[0]), (None, true));
}

#[test]
fn the_cap_bounds_the_index() {
    let mut idx = DedupIndex::new(Algorithm::Blake3, None, 2).unwrap();
    for i in 0..5u8 {
        idx.insert(&rec(0, u64::from(i), &[i; 32]));
    }
    let mut store = vec![true; 3];
    let plan = idx
        .plan(&[vec![0; 32], vec![1; 32], vec![4; 32]], &[10; 3], &mut store)
        .unwrap();
    assert!(plan[0].is_some() && plan[1].is_some() && plan[2].is_none());
}
