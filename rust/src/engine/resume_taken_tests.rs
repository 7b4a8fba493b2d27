//! A file taken over from the parent unread is journaled with its identity but brings
//! no commit forward: commits are paid for bytes read, and an unchanged tree reads none.
//! Only the bound on records waiting in memory commits a pass of such files.

use std::fs::{self, Metadata};
use std::path::PathBuf;

use super::*;
use crate::engine::backup::Reused;
use crate::scan::algorithm::Algorithm;

/// A fresh checkpointed pass in a scratch directory (committing every `every` bytes
/// read), and one file of `size` bytes with its job (taken over unread) and outcome.
struct Pass {
    dir: PathBuf,
    journal: PathBuf,
    piece: PieceWriter,
    map: BlockMapWriter,
    ck: Checkpointer,
    now: Metadata,
    job: FileJob,
    out: FileOutcome,
}

fn pass(name: &str, every: u64, size: u64) -> Pass {
    let dir = std::env::temp_dir().join(format!("rb-resume-taken-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let settings = Settings {
        algorithm: Algorithm::Blake3,
        block_size: 4096,
        zstd_level: None,
        self_source: 1,
        parent_sum: None,
    };
    let ck = Checkpoint {
        journal: dir.join("checkpoint"),
        every,
        rule: Rule::Prefix,
    };
    let mut piece = PieceWriter::create(&dir.join("data.piece"), settings.algorithm, settings.block_size).unwrap();
    let mut map = BlockMapWriter::create(&dir.join("blockmap"), settings.algorithm, settings.block_size).unwrap();
    map.log_to(MapLog::create(&map_log_path(&ck.journal)).unwrap());
    let c = Checkpointer::fresh(&ck.journal, &settings, &mut piece, &ck).unwrap();
    let src = dir.join("f");
    fs::write(&src, vec![7u8; size as usize]).unwrap();
    let now = fs::symlink_metadata(&src).unwrap();
    let blocks = size.div_ceil(4096);
    let job = FileJob {
        path: src,
        rel: "f".into(),
        parent: Some((0, blocks)),
        reuse: Some(Reused {
            size,
            digest: vec![1; 32],
            identity: Identity::of(&now),
        }),
    };
    let out = FileOutcome {
        size,
        digest: vec![1; 32],
        first_block: 0,
        block_count: blocks,
        changed: false,
    };
    Pass {
        dir,
        journal: ck.journal,
        piece,
        map,
        ck: c,
        now,
        job,
        out,
    }
}

impl Pass {
    fn take_over(&mut self, file_no: u32) {
        let identity = Identity::of(&self.now);
        self.ck
            .taken_over(&mut self.piece, &mut self.map, file_no, &self.job, identity, &self.out)
            .unwrap();
    }

    fn pending(&self) -> (usize, usize) {
        self.ck
            .journal
            .as_ref()
            .map_or((0, 0), |j| (j.pending(), j.pending_bytes()))
    }
}

#[test]
fn a_file_taken_over_unread_is_journaled_without_a_commit_and_a_read_one_commits() {
    let mut p = pass("commit", 10, 5000);
    // 5,000 bytes against `every` 10: a read file commits, one taken over does not.
    for k in 1..=3 {
        p.take_over(k - 1);
        assert_eq!(p.pending().0, k as usize);
    }
    p.ck.file_done(&mut p.piece, &mut p.map, 3, &p.job, &p.now, &p.out)
        .unwrap();
    assert_eq!(p.pending().0, 0);
    let journal = Journal::read(&p.journal).unwrap();
    assert_eq!(journal.records.len(), 4);
    for r in &journal.records {
        assert_eq!(r.identity, Identity::of(&p.now));
        assert!(!r.changed);
    }
    let _ = fs::remove_dir_all(&p.dir);
}

#[test]
fn an_unchanged_pass_commits_when_its_records_fill_the_bound() {
    let mut p = pass("bound", u64::MAX, 10);
    let header = fs::metadata(&p.journal).unwrap().len();
    let (mut most, mut n) = (0, 0u32);
    // Taken over unread only, `every` never reached: the bound alone commits.
    while n < 200_000 && fs::metadata(&p.journal).unwrap().len() == header {
        p.take_over(n);
        most = most.max(p.pending().1);
        n += 1;
    }
    let written = fs::metadata(&p.journal).unwrap().len();
    assert!(written > MAX_PENDING as u64, "no commit after {n} records");
    assert!(most < MAX_PENDING + 4096 && p.pending().1 < 4096, "{most} bytes held");
    assert_eq!(Journal::read(&p.journal).unwrap().records.len(), n as usize);
    let _ = fs::remove_dir_all(&p.dir);
}
