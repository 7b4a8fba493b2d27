use super::*;
use crate::format::manifest_files::{split, Slot};

const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn row(path: &str, size: u64, first: u64, count: u64) -> FileRow {
    FileRow {
        path: path.into(),
        mode: 0o644,
        mtime_ns: -7,
        size,
        digest: DIGEST.into(),
        first_block: first,
        block_count: count,
        owner: Some((0, 4_294_967_295, Some("r\"\u{e9}".into()), None)),
        identity: Some((9, u64::MAX, 2)),
    }
}

#[test]
fn rows_written_read_back_as_the_same_rows() {
    let mut plain = row("a/\u{1F600}\\x", 0, 0, 0);
    plain.owner = None;
    plain.identity = None;
    let t = FileTable::new(vec![row("a", 10, 0, 2), plain, row("b", 8, 2, 1)]);
    let text = t.to_json(&HashMap::new());
    let doc = format!(r#"{{"set":{{"algorithm":"sha256"}},"files":{text}}}"#);
    let slots = split(doc.as_bytes()).and_then(|s| s.files).expect("splits");
    let back: Vec<FileRow> = slots
        .into_iter()
        .map(|s| match s {
            Slot::Row(r) => r,
            Slot::Raw(t) => panic!("raw {t}"),
        })
        .collect();
    assert_eq!(back, t.rows());
}

#[test]
fn extras_are_spliced_in_place() {
    let t = FileTable::new(vec![row("a", 0, 0, 0), row("b", 0, 0, 0)]);
    let extras = HashMap::from([(1, "{\"x\":1}".to_string())]);
    assert!(t.to_json(&extras).ends_with(",{\"x\":1}]"));
}

#[test]
fn unchanged_needs_every_field_and_an_identity() {
    let mut t = FileTable::new(vec![row("a", 10, 0, 2), row("b", 10, 2, 2)]);
    let seen = Seen {
        size: 10,
        mtime_ns: -7,
        ctime_ns: 9,
        ino: u64::MAX,
        dev: 2,
    };
    assert_eq!(t.unchanged("a", &seen).map(|(i, _)| i), Some(0));
    assert!(t.unchanged("c", &seen).is_none());
    for other in [
        Seen { size: 11, ..seen },
        Seen { mtime_ns: 0, ..seen },
        Seen { ctime_ns: 0, ..seen },
        Seen { ino: 0, ..seen },
        Seen { dev: 0, ..seen },
    ] {
        assert!(t.unchanged("a", &other).is_none(), "{other:?}");
    }
    let mut b = row("b", 10, 2, 2);
    b.identity = None;
    assert!(t.put(1, b));
    assert!(t.unchanged("b", &seen).is_none());
    assert!(!t.put(2, row("c", 0, 0, 0)));
}

#[test]
fn block_ranges_are_checked_back_to_back() {
    let t = FileTable::new(vec![row("a", 10, 0, 3), row("b", 0, 3, 0), row("c", 5, 3, 2)]);
    assert_eq!(t.check_blocks(4), Ok(5));
    let t = FileTable::new(vec![row("a", 10, 0, 2)]);
    assert_eq!(t.check_blocks(4), Err(BlockFault::Count { index: 0, expected: 3 }));
    let t = FileTable::new(vec![row("a", 4, 0, 1), row("b", 4, 0, 1)]);
    assert_eq!(t.check_blocks(4), Err(BlockFault::First { index: 1, expected: 1 }));
}

#[test]
fn paths_twice_or_under_a_non_directory_are_found() {
    let g = |v: &[&'static str]| v.to_vec();
    assert_eq!(check_paths(&[g(&["a/b", "c"]), g(&["a"]), g(&["l"])]), None);
    assert_eq!(
        check_paths(&[g(&["a", "c"]), g(&["x"]), g(&["c"])]),
        Some(PathFault::Twice {
            at: (2, 0),
            seen: (0, 1)
        })
    );
    assert_eq!(
        check_paths(&[g(&["l/x/y"]), g(&["l/x"]), g(&["l"])]),
        Some(PathFault::Under {
            at: (0, 0),
            prefix: "l".into(),
            parent: (2, 0),
        })
    );
    let t = FileTable::new(vec![row("a", 0, 0, 0), row("a/b", 0, 0, 0)]);
    assert_eq!(
        t.check_paths(&[vec![], vec![]]),
        Some(PathFault::Under {
            at: (0, 1),
            prefix: "a".into(),
            parent: (0, 0),
        })
    );
}
