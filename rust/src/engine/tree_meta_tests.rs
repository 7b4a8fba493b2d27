//! The target walker of the tree restore: names that would leave the target and links
//! planted on the way are refused; metadata already right is not touched.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::tree_meta::{apply_meta, components, make_dirs, Meta, MetaOptions};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rb-tree-meta-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn names_that_leave_the_target_are_refused() {
    let root = Path::new("/r");
    for bad in ["..", "a/../b", "a//b", "./a", "a/."] {
        assert!(components(Path::new(bad), root).is_err(), "{bad}");
    }
    assert_eq!(components(Path::new("a/b"), root).unwrap(), vec![&b"a"[..], &b"b"[..]]);
}

#[test]
fn make_dirs_creates_parents_and_refuses_a_planted_link() {
    let d = tmp("mk");
    let root = fs::File::open(&d).unwrap();
    make_dirs(root.as_fd(), &d, &[PathBuf::from("a/b/c"), PathBuf::from("a/x")]).unwrap();
    assert!(d.join("a/b/c").is_dir() && d.join("a/x").is_dir());
    let outside = tmp("mk-outside");
    std::os::unix::fs::symlink(&outside, d.join("l")).unwrap();
    let err = make_dirs(root.as_fd(), &d, &[PathBuf::from("l/y")]).unwrap_err();
    assert!(err.to_string().contains("is a symlink or not a directory"), "{err}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn apply_meta_sets_what_differs_and_leaves_the_rest() {
    let d = tmp("apply");
    fs::create_dir(d.join("s")).unwrap();
    fs::write(d.join("s/f"), b"x").unwrap();
    let root = fs::File::open(&d).unwrap();
    let meta = Meta {
        mode: 0o640,
        mtime_ns: 1_500_000_000_123_456_789,
        owner: None,
        xattrs: Vec::new(),
    };
    let entries = vec![(PathBuf::from("s/f"), meta)];
    let opts = MetaOptions::default();
    assert!(apply_meta(root.as_fd(), &d, &entries, opts, false).unwrap().is_empty());
    let st = fs::symlink_metadata(d.join("s/f")).unwrap();
    assert_eq!(st.permissions().mode() & 0o7777, 0o640);
    assert_eq!((st.mtime(), st.mtime_nsec()), (1_500_000_000, 123_456_789));
    let ctime = (st.ctime(), st.ctime_nsec());
    std::thread::sleep(std::time::Duration::from_millis(20));
    apply_meta(root.as_fd(), &d, &entries, opts, false).unwrap();
    let again = fs::symlink_metadata(d.join("s/f")).unwrap();
    assert_eq!((again.ctime(), again.ctime_nsec()), ctime);
    // A link where an entry is expected is never followed.
    std::os::unix::fs::symlink(d.join("s/f"), d.join("s/l")).unwrap();
    let link = vec![(PathBuf::from("s/l"), entries[0].1.clone())];
    assert!(apply_meta(root.as_fd(), &d, &link, opts, false).is_err());
}
