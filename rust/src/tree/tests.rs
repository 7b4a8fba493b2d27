use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::*;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rb-tree-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn rels(w: &Walk) -> Vec<String> {
    let mut v: Vec<String> = w.entries.iter().map(|e| e.rel.to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn walks_every_kind_without_following_links() {
    let d = tmp("kinds");
    fs::create_dir_all(d.join("a/b")).unwrap();
    fs::write(d.join("a/b/f"), b"x").unwrap();
    fs::write(d.join("top"), b"").unwrap();
    std::os::unix::fs::symlink("/", d.join("a/up")).unwrap();
    let w = walk(&d, &Options::default()).unwrap();
    assert_eq!(rels(&w), ["a", "a/b", "a/b/f", "a/up", "top"]);
    let up = w.entries.iter().find(|e| e.rel.as_bytes() == b"a/up").unwrap();
    assert_eq!(up.kind, Kind::Symlink);
    assert_eq!(up.target.as_deref(), Some(std::ffi::OsStr::new("/")));
    let f = w.entries.iter().find(|e| e.rel.as_bytes() == b"a/b/f").unwrap();
    let md = fs::symlink_metadata(d.join("a/b/f")).unwrap();
    assert_eq!((f.kind, f.stat.size, f.stat.ino), (Kind::File, 1, md.ino()));
    assert_eq!(
        f.stat.mtime_ns,
        i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec())
    );
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn excluded_directories_are_counted_once_and_not_entered() {
    let d = tmp("excl");
    fs::create_dir_all(d.join("skip/deep")).unwrap();
    fs::write(d.join("skip/deep/f"), b"").unwrap();
    fs::write(d.join("keep.log"), b"").unwrap();
    fs::write(d.join("a.log"), b"").unwrap();
    let opts = Options {
        matcher: Some(PathMatcher::new(&["skip/", "*.log", "!keep.log"]).unwrap()),
        ..Options::default()
    };
    let w = walk(&d, &opts).unwrap();
    assert_eq!(rels(&w), ["keep.log"]);
    assert_eq!(w.excluded, 2);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_cache_directory_keeps_only_its_tag() {
    let d = tmp("cache");
    fs::create_dir_all(d.join("c/sub")).unwrap();
    fs::write(d.join("c/CACHEDIR.TAG"), [CACHEDIR_SIGNATURE, b"\n"].concat()).unwrap();
    fs::write(d.join("c/blob"), b"").unwrap();
    fs::create_dir_all(d.join("n")).unwrap();
    fs::write(d.join("n/CACHEDIR.TAG"), b"not the signature").unwrap();
    let opts = Options {
        exclude_caches: true,
        ..Options::default()
    };
    let w = walk(&d, &opts).unwrap();
    assert_eq!(rels(&w), ["c", "c/CACHEDIR.TAG", "n", "n/CACHEDIR.TAG"]);
    assert_eq!(w.excluded, 2);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn user_xattrs_are_read_sorted_and_a_missing_root_is_an_error() {
    let d = tmp("xattr");
    let f = d.join("f");
    fs::write(&f, b"").unwrap();
    let c = CString::new(f.as_os_str().as_bytes()).unwrap();
    let set = |name: &str, value: &[u8]| {
        let n = CString::new(name).unwrap();
        // SAFETY: NUL-terminated strings, `value` readable for its length.
        unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) }
    };
    let big = vec![7u8; 1000];
    if set("user.b", b"2") != 0 {
        return; // this file system has no user xattrs
    }
    assert_eq!(set("user.a", &big), 0);
    let (x, problems) = read_xattrs(&f);
    assert!(problems.is_empty());
    assert_eq!(x.len(), 2);
    assert_eq!((x[0].0.as_bytes(), &x[0].1[..]), (&b"user.a"[..], &big[..]));
    assert_eq!((x[1].0.as_bytes(), &x[1].1[..]), (&b"user.b"[..], &b"2"[..]));
    assert!(walk(Path::new(&d.join("missing")), &Options::default()).is_err());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_entry_that_vanishes_between_listing_and_lstat_is_skipped() {
    let d = tmp("vanish");
    fs::write(d.join("gone"), b"x").unwrap();
    fs::write(d.join("keep"), b"k").unwrap();
    let mut w = Walk::default();
    let names = list(&d, false, &mut w).unwrap();
    fs::remove_file(d.join("gone")).unwrap(); // listed, then deleted before its lstat
    let subdirs = visit(&d, b"d/", names, &Options::default(), 0, &mut w);
    assert!(subdirs.is_empty());
    assert_eq!(rels(&w), ["d/keep"]);
    let s = &w.skipped[..];
    assert_eq!(s.len(), 1);
    assert_eq!(
        (s[0].rel.as_bytes(), &s[0].reason[..]),
        (&b"d/gone"[..], "vanished during the backup")
    );
    assert!(s[0].vanished && !s[0].directory);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_directory_that_cannot_be_listed_is_reported_and_the_walk_goes_on() {
    let d = tmp("unlisted");
    fs::write(d.join("file"), b"").unwrap();
    fs::create_dir(d.join("ok")).unwrap();
    fs::write(d.join("ok/f"), b"").unwrap();
    let mut w = Walk::default();
    let dirs = vec![
        (d.join("gone"), b"gone/".to_vec()),
        (d.join("file"), b"file/".to_vec()),
        (d.join("ok"), b"ok/".to_vec()),
    ];
    descend(dirs, &Options::default(), 0, &mut w);
    assert_eq!(rels(&w), ["ok/f"]);
    let got: Vec<(String, String, bool, bool)> = w
        .skipped
        .iter()
        .map(|s| {
            (
                s.rel.to_string_lossy().into_owned(),
                s.reason.clone(),
                s.vanished,
                s.directory,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("gone".into(), "vanished during the backup".into(), true, true),
            (
                "file".into(),
                "directory cannot be read, its contents are not stored: Not a directory".into(),
                false,
                true
            ),
        ]
    );
    fs::remove_dir_all(&d).unwrap();
}
