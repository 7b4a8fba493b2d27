//! Path selection with gitignore semantics: which entries of a tree a backup leaves out
//! (`--exclude`, `--exclude-file`) and which a partial restore takes (`--include`).
//!
//! The patterns are gitignore lines (gitignore(5)): `#` comments and blank lines are
//! ignored, `!` re-includes, a trailing `/` matches directories only, a leading or inner
//! `/` anchors the pattern at the root of the tree, `**` spans directories, and the last
//! matching line wins. Matching is delegated to the `ignore` crate's gitignore matcher
//! (ripgrep's, tested against git); this module adds git's rule that nothing below an
//! excluded directory can be re-included, and errors that name the bad pattern.

use std::fmt;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;

/// A pattern that does not parse, with its position in the list given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    /// Index of the pattern in the list given to [`PathMatcher::new`].
    pub index: usize,
    /// The pattern as given.
    pub pattern: String,
    /// Why it does not parse.
    pub reason: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pattern {} ({:?}) is invalid: {}",
            self.index, self.pattern, self.reason
        )
    }
}

impl std::error::Error for PatternError {}

/// A compiled list of gitignore patterns, matched against `/`-separated paths relative to
/// the root of the tree (never starting with `/` or `./`).
#[derive(Clone, Debug)]
pub struct PathMatcher {
    patterns: Vec<String>,
    inner: Gitignore,
}

impl PathMatcher {
    /// Compiles `patterns` (gitignore lines, in order; the last match wins).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        // Root "." means: strip nothing from the relative paths we are given.
        let mut builder = GitignoreBuilder::new(".");
        for (index, p) in patterns.iter().enumerate() {
            let p = p.as_ref();
            if p.contains('\n') || p.contains('\r') || p.contains('\0') {
                return Err(PatternError {
                    index,
                    pattern: p.to_string(),
                    reason: "a pattern is one line (no newline or NUL)".into(),
                });
            }
            builder.add_line(None, &literal_braces(p)).map_err(|e| PatternError {
                index,
                pattern: p.to_string(),
                reason: e.to_string(),
            })?;
        }
        let inner = builder.build().map_err(|e| PatternError {
            index: patterns.len().saturating_sub(1),
            pattern: patterns.last().map(|p| p.as_ref().to_string()).unwrap_or_default(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            patterns: patterns.iter().map(|p| p.as_ref().to_string()).collect(),
            inner,
        })
    }

    /// The patterns as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether no pattern can match anything (only comments and blank lines, or none).
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Whether the last pattern matching `path` itself excludes it (a `!` pattern that
    /// matches last re-includes it). Parents are not looked at: this is the test of a
    /// walk that does not descend into excluded directories.
    pub fn matches(&self, path: &str, is_dir: bool) -> bool {
        matches!(self.inner.matched(path, is_dir), Match::Ignore(_))
    }

    /// Whether `path` or one of its parent directories is excluded, as git decides it: a
    /// path below an excluded directory stays excluded whatever a later `!` pattern says
    /// (gitignore(5): "It is not possible to re-include a file if a parent directory of
    /// that file is excluded").
    pub fn matches_path_or_parents(&self, path: &str, is_dir: bool) -> bool {
        let trimmed = path.trim_end_matches('/');
        let mut start = 0;
        while let Some(i) = trimmed[start..].find('/') {
            let end = start + i;
            if end > 0 && self.matches(&trimmed[..end], true) {
                return true;
            }
            start = end + 1;
        }
        self.matches(trimmed, is_dir)
    }
}

/// Escapes `{` and `}`: git's wildmatch has no `{a,b}` alternation (they are literal
/// characters there), while globset would read them as one.
fn literal_braces(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut escaped = false;
    for c in pattern.chars() {
        if !escaped && (c == '{' || c == '}') {
            out.push('\\');
        }
        escaped = !escaped && c == '\\';
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
