//! A file taken over from the parent unread is journaled with its identity but brings
//! no commit forward: commits are paid for bytes read, and an unchanged tree reads none.

use std::fs;
use std::path::PathBuf;

use super::*;
use crate::engine::backup::Reused;
use crate::scan::algorithm::Algorithm;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rb-resume-taken-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_file_taken_over_unread_is_journaled_without_a_commit_and_a_read_one_commits() {
    let d = tmpdir("commit");
    let settings = Settings {
        algorithm: Algorithm::Blake3,
        block_size: 4096,
        zstd_level: None,
        self_source: 1,
        parent_sum: None,
    };
    let ck = Checkpoint {
        journal: d.join("checkpoint"),
        every: 10,
        rule: Rule::Prefix,
    };
    let mut piece = PieceWriter::create(&d.join("data.piece"), settings.algorithm, settings.block_size).unwrap();
    let mut map = BlockMapWriter::create(&d.join("blockmap"), settings.algorithm, settings.block_size).unwrap();
    map.log_to(MapLog::create(&map_log_path(&ck.journal)).unwrap());
    let mut c = Checkpointer::fresh(&ck.journal, &settings, &mut piece, &ck).unwrap();
    let src = d.join("f");
    fs::write(&src, vec![7u8; 5000]).unwrap();
    let now = fs::symlink_metadata(&src).unwrap();
    let job = FileJob {
        path: src.clone(),
        rel: "f".into(),
        parent: Some((0, 2)),
        reuse: Some(Reused {
            size: 5000,
            digest: vec![1; 32],
            identity: Identity::of(&now),
        }),
    };
    let out = FileOutcome {
        size: 5000,
        digest: vec![1; 32],
        first_block: 0,
        block_count: 2,
        changed: false,
    };
    let pending = |c: &Checkpointer| c.journal.as_ref().map(|j| j.pending());
    // 5,000 bytes against `every` 10: a read file commits, one taken over does not.
    for k in 1..=3 {
        c.taken_over(&mut piece, &mut map, k - 1, &job, Identity::of(&now), &out)
            .unwrap();
        assert_eq!(pending(&c), Some(k as usize));
    }
    c.file_done(&mut piece, &mut map, 3, &job, &now, &out).unwrap();
    assert_eq!(pending(&c), Some(0));
    let journal = Journal::read(&ck.journal).unwrap();
    assert_eq!(journal.records.len(), 4);
    for r in &journal.records {
        assert_eq!(r.identity, Identity::of(&now));
        assert!(!r.changed);
    }
}

#[test]
fn an_unchanged_pass_commits_when_its_records_fill_the_bound() {
    let d = tmpdir("bound");
    let settings = Settings {
        algorithm: Algorithm::Blake3,
        block_size: 4096,
        zstd_level: None,
        self_source: 1,
        parent_sum: None,
    };
    let ck = Checkpoint {
        journal: d.join("checkpoint"),
        every: u64::MAX,
        rule: Rule::Prefix,
    };
    let mut piece = PieceWriter::create(&d.join("data.piece"), settings.algorithm, settings.block_size).unwrap();
    let mut map = BlockMapWriter::create(&d.join("blockmap"), settings.algorithm, settings.block_size).unwrap();
    map.log_to(MapLog::create(&map_log_path(&ck.journal)).unwrap());
    let mut c = Checkpointer::fresh(&ck.journal, &settings, &mut piece, &ck).unwrap();
    let src = d.join("f");
    fs::write(&src, vec![7u8; 10]).unwrap();
    let now = fs::symlink_metadata(&src).unwrap();
    let job = FileJob {
        path: src.clone(),
        rel: "f".into(),
        parent: Some((0, 1)),
        reuse: Some(Reused {
            size: 10,
            digest: vec![1; 32],
            identity: Identity::of(&now),
        }),
    };
    let out = FileOutcome {
        size: 10,
        digest: vec![1; 32],
        first_block: 0,
        block_count: 1,
        changed: false,
    };
    let bytes = |c: &Checkpointer| c.journal.as_ref().map_or(0, |j| j.pending_bytes());
    let mut most = 0;
    let mut n = 0u32;
    // Taken over unread only, `every` never reached: the bound alone commits.
    let header = fs::metadata(&ck.journal).unwrap().len();
    while n < 200_000 && fs::metadata(&ck.journal).unwrap().len() == header {
        c.taken_over(&mut piece, &mut map, n, &job, Identity::of(&now), &out)
            .unwrap();
        most = most.max(bytes(&c));
        n += 1;
    }
    assert!(
        fs::metadata(&ck.journal).unwrap().len() > MAX_PENDING as u64,
        "no commit after {n} records"
    );
    assert!(most < MAX_PENDING + 4096 && bytes(&c) < 4096, "{most} bytes held");
    let journal = Journal::read(&ck.journal).unwrap();
    assert_eq!(journal.records.len(), n as usize);
    let _ = fs::remove_dir_all(&d);
}
