use super::*;

const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn doc(files: &str) -> String {
    format!(r#"{{"format":2,"set":{{"algorithm":"sha256"}},"files":[{files}],"dirs":[]}}"#)
}

fn entry(extra: &str) -> String {
    format!(
        r#"{{"path":"a/b","mode":420,"mtime_ns":-5,"size":3,"digest":"{DIGEST}","first_block":0,"block_count":1{extra}}}"#
    )
}

#[test]
fn a_plain_entry_is_a_row_and_the_rest_keeps_every_other_key() {
    let s = split(doc(&entry("")).as_bytes()).expect("splits");
    let files = s.files.expect("a list");
    assert_eq!(files.len(), 1);
    match &files[0] {
        Slot::Row(r) => {
            assert_eq!((r.path.as_str(), r.mode, r.mtime_ns, r.size), ("a/b", 420, -5, 3));
            assert_eq!((r.owner.clone(), r.identity), (None, None));
        }
        Slot::Raw(t) => panic!("raw {t}"),
    }
    let rest: Map<String, Value> = serde_json::from_str(&s.rest).expect("json");
    assert_eq!(rest.keys().collect::<Vec<_>>(), ["dirs", "format", "set"]);
}

#[test]
fn identity_and_owner_are_read_and_anything_else_is_raw_text() {
    let full = entry(
        r#","ctime_ns":7,"ino":18446744073709551615,"dev":2,"owner":{"uid":0,"gid":4294967295,"user":"r","group":null}"#,
    );
    let s = split(doc(&full).as_bytes()).expect("splits");
    match &s.files.expect("list")[0] {
        Slot::Row(r) => {
            assert_eq!(r.identity, Some((7, u64::MAX, 2)));
            assert_eq!(r.owner, Some((0, u32::MAX, Some("r".into()), None)));
        }
        Slot::Raw(t) => panic!("raw {t}"),
    }
    for extra in [
        r#","holes":[[0,1]]"#,
        r#","ctime_ns":7,"ino":1"#,
        r#","ctime_ns":7,"ino":1,"dev":1.0"#,
        r#","owner":null"#,
        r#","owner":{"uid":-1,"gid":0}"#,
        r#","owner":{"uid":0,"gid":0,"user":""}"#,
        r#","owner":{"uid":0,"gid":0,"x":1}"#,
        // serde would read a struct from an array; the Python parser wants an object.
        r#","owner":[0,0]"#,
        r#","owner":[0,0,"r","g"]"#,
        r#","ino":1"#,
    ] {
        let e = entry(extra);
        let s = split(doc(&e).as_bytes()).expect("splits");
        assert_eq!(s.files.expect("list"), vec![Slot::Raw(e.clone())], "{extra}");
    }
}

#[test]
fn damaged_fields_are_handed_back_as_written() {
    for bad in [
        r#"{"path":"../x","mode":420,"mtime_ns":0,"size":3,"digest":"DIG","first_block":0,"block_count":1}"#,
        r#"{"path":"a//b","mode":420,"mtime_ns":0,"size":3,"digest":"DIG","first_block":0,"block_count":1}"#,
        r#"{"path":"/a","mode":420,"mtime_ns":0,"size":3,"digest":"DIG","first_block":0,"block_count":1}"#,
        r#"{"path":"a","mode":4096,"mtime_ns":0,"size":3,"digest":"DIG","first_block":0,"block_count":1}"#,
        r#"{"path":"a","mode":true,"mtime_ns":0,"size":3,"digest":"DIG","first_block":0,"block_count":1}"#,
        r#"{"path":"a","mode":1,"mtime_ns":9223372036854775808,"size":3,"digest":"DIG","first_block":0,"block_count":1}"#,
        r#"{"path":"a","mode":1,"mtime_ns":0,"size":9223372036854775808,"digest":"DIG","first_block":0,"block_count":1}"#,
        r#"{"path":"a","mode":1,"mtime_ns":0,"size":1e3,"digest":"DIG","first_block":0,"block_count":1}"#,
        r#"{"path":"a","mode":1,"mtime_ns":0,"size":3,"digest":"DIG","first_block":0}"#,
        r#"{"path":"a","mode":1,"mtime_ns":0,"size":3,"digest":"DIGx","first_block":0,"block_count":1}"#,
        r#"[1,2]"#,
        r#"null"#,
        r#"["a",420,0,3,"DIG",0,1]"#,
    ] {
        let bad = bad.replace("DIG", DIGEST);
        let s = split(doc(&bad).as_bytes()).expect("splits");
        assert_eq!(s.files.expect("list"), vec![Slot::Raw(bad.clone())], "{bad}");
    }
}

#[test]
fn an_unknown_algorithm_sends_every_entry_to_the_parser() {
    let d = doc(&entry("")).replace("sha256", "crc");
    let s = split(d.as_bytes()).expect("splits");
    assert!(matches!(s.files.expect("list")[0], Slot::Raw(_)));
}

#[test]
fn what_python_reads_differently_is_not_split() {
    for d in [&b"[1]"[..], b"{\"files\":[NaN]}", b"\xff{}", b"{\"a\":1,}", b"{"] {
        assert_eq!(split(d), None, "{}", String::from_utf8_lossy(d));
    }
    // Nesting inside an entry is the Python decoder's to judge: the entry goes back as text.
    let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let s = split(format!("{{\"files\":[{nested}]}}").as_bytes()).expect("splits");
    assert_eq!(s.files, Some(vec![Slot::Raw(nested)]));
}

#[test]
fn files_not_a_list_stays_in_the_rest_and_the_last_duplicate_key_wins() {
    let s = split(br#"{"files":{"a":1}}"#).expect("splits");
    assert_eq!((s.files, s.rest.as_str()), (None, r#"{"files":{"a":1}}"#));
    let s = split(br#"{"files":7,"files":[]}"#).expect("splits");
    assert_eq!((s.files, s.rest.as_str()), (Some(vec![]), "{}"));
}

#[test]
fn the_list_offsets_are_its_text_and_a_known_text_is_not_read_again() {
    let parent = doc(&format!("{},{}", entry(""), entry(r#","ctime_ns":7,"ino":1,"dev":2"#)));
    let s = split(parent.as_bytes()).expect("splits");
    let (a, b) = s.files_at.expect("a list");
    let list = &parent[a..b];
    assert!(list.starts_with("[{") && list.ends_with("}]") && !s.known);
    // Another document (the keys in another order) with the same list text: not read.
    let child = format!(r#"{{"files":{list},"format":2,"set":{{"algorithm":"sha256"}},"dirs":[1]}}"#);
    let k = split_known(child.as_bytes(), Some(list.as_bytes())).expect("splits");
    assert!(k.known && k.files.is_none());
    let (c, d) = k.files_at.expect("offsets");
    assert_eq!(&child[c..d], list);
    let rest: Map<String, Value> = serde_json::from_str(&k.rest).expect("json");
    assert_eq!(rest.keys().collect::<Vec<_>>(), ["dirs", "format", "set"]);
    // One byte different, a list that is not the last `files` key, or no list: read as before.
    let other = child.replacen("\"size\":3", "\"size\":4", 1);
    let o = split_known(other.as_bytes(), Some(list.as_bytes())).expect("splits");
    assert!(!o.known && o.files.expect("read").len() == 2);
    let twice = format!(r#"{{"files":{list},"files":[],"set":{{"algorithm":"sha256"}}}}"#);
    let t = split_known(twice.as_bytes(), Some(list.as_bytes())).expect("splits");
    assert!(!t.known && t.files.expect("read").is_empty());
    let none = split_known(br#"{"files":7}"#, Some(list.as_bytes())).expect("splits");
    assert!(!none.known && none.files.is_none() && none.files_at.is_none());
}
