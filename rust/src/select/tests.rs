use super::PathMatcher;

fn m(patterns: &[&str]) -> PathMatcher {
    PathMatcher::new(patterns).expect("patterns parse")
}

#[test]
fn unanchored_name_matches_at_any_depth() {
    let p = m(&["*.log"]);
    assert!(p.matches("a.log", false));
    assert!(p.matches("x/y/a.log", false));
    assert!(!p.matches("a.logx", false));
}

#[test]
fn leading_slash_anchors_at_the_root() {
    let p = m(&["/build"]);
    assert!(p.matches("build", true));
    assert!(!p.matches("src/build", true));
}

#[test]
fn inner_slash_anchors_too() {
    let p = m(&["doc/*.txt"]);
    assert!(p.matches("doc/a.txt", false));
    assert!(!p.matches("x/doc/a.txt", false));
    assert!(!p.matches("doc/sub/a.txt", false));
}

#[test]
fn trailing_slash_matches_directories_only() {
    let p = m(&["cache/"]);
    assert!(p.matches("cache", true));
    assert!(p.matches("a/cache", true));
    assert!(!p.matches("cache", false));
}

#[test]
fn double_star_spans_directories() {
    let p = m(&["a/**/z"]);
    assert!(p.matches("a/z", false));
    assert!(p.matches("a/b/c/z", false));
    let q = m(&["logs/**"]);
    assert!(q.matches("logs/x", false));
    assert!(!q.matches("logs", true));
}

#[test]
fn last_match_wins_and_negation_reincludes() {
    let p = m(&["*.log", "!keep.log"]);
    assert!(p.matches("a.log", false));
    assert!(!p.matches("keep.log", false));
    let q = m(&["!keep.log", "*.log"]);
    assert!(q.matches("keep.log", false));
}

#[test]
fn nothing_below_an_excluded_directory_is_reincluded() {
    let p = m(&["tmp/", "!tmp/keep"]);
    assert!(!p.matches("tmp/keep", false));
    assert!(p.matches_path_or_parents("tmp/keep", false));
    assert!(p.matches_path_or_parents("tmp/a/b", false));
    assert!(!p.matches_path_or_parents("src/keep", false));
}

#[test]
fn comments_blank_lines_and_escapes() {
    let p = m(&["# a comment", "", "\\#hash", "\\!bang"]);
    assert!(!p.matches("# a comment", false));
    assert!(p.matches("#hash", false));
    assert!(p.matches("!bang", false));
    assert!(m(&["#only"]).is_empty());
}

#[test]
fn a_bad_pattern_is_named_with_its_position() {
    let err = PathMatcher::new(&["ok", "a\nb"]).unwrap_err();
    assert_eq!(err.index, 1);
    assert_eq!(err.pattern, "a\nb");
    assert!(err.to_string().contains("pattern 1"), "{err}");
}

#[test]
fn braces_are_literal_as_in_git() {
    let p = m(&["a{b,c}", "\\{x\\}"]);
    assert!(p.matches("a{b,c}", false));
    assert!(!p.matches("ab", false));
    assert!(p.matches("{x}", false));
}
