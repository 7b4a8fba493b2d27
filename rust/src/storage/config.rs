//! Repository URLs and storage options.
//!
//! `s3://bucket/prefix` is an S3 repository; `file:///dir` or a plain path is a local one.
//! S3 settings come, lowest priority first, from the AWS shared files (`~/.aws/credentials`,
//! `~/.aws/config`, profile `AWS_PROFILE`), the `AWS_*` environment variables (the names
//! object_store's `from_env` reads: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...), then the options passed in. object_store has no
//! reader for the shared files (the AWS SDK does), so the few static settings they hold are
//! read here: keys, session token, region and endpoint_url.
//!
//! Path-style addressing is used whenever a custom endpoint is set (DESIGN.md "Settled
//! details"): S3-compatible servers rarely have wildcard DNS for virtual-hosted buckets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{Result, StorageError};

/// Where a repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on this machine.
    Local(PathBuf),
    /// A bucket and a key prefix ("" for the bucket's root; no leading or trailing slash).
    S3 { bucket: String, prefix: String },
}

/// Parses a repository URL. An `s3://` URL is never taken for a local path.
pub fn parse_location(url: &str) -> Result<Location> {
    let bad = |reason: &str| StorageError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        validate_bucket(bucket).map_err(|r| bad(&r))?;
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            validate_key(prefix).map_err(|e| match e {
                StorageError::InvalidKey { reason, .. } => bad(&format!("prefix: {reason}")),
                other => other,
            })?;
        }
        return Ok(Location::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        });
    }
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(bad("a file:// URL needs an absolute path (file:///dir)"));
        }
        return Ok(Location::Local(PathBuf::from(path)));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
            return Err(bad(&format!("unsupported scheme {scheme:?} (s3:// or a local path)")));
        }
    }
    if url.is_empty() {
        return Err(bad("empty"));
    }
    Ok(Location::Local(PathBuf::from(url)))
}

/// S3 bucket naming rules (AWS "Bucket naming rules"): 3-63 characters, lowercase letters,
/// digits, dots and hyphens, starting and ending with a letter or digit.
fn validate_bucket(bucket: &str) -> std::result::Result<(), String> {
    if bucket.is_empty() {
        return Err("no bucket name (s3://bucket/prefix)".into());
    }
    if !(3..=63).contains(&bucket.len()) {
        return Err(format!("bucket name {bucket:?} must be 3 to 63 characters long"));
    }
    if let Some((i, c)) = bucket
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Err(format!(
            "bucket name {bucket:?} has {c:?} at position {i} (lowercase letters, digits, '.', '-')"
        ));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(bucket.chars().next()) || !edge_ok(bucket.chars().last()) {
        return Err(format!(
            "bucket name {bucket:?} must start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// A key relative to the repository root: `a/b/c`, no empty, `.` or `..` segment, no
/// leading slash, no control characters.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason: String| StorageError::InvalidKey {
        key: key.to_string(),
        reason,
    };
    if key.is_empty() {
        return Err(bad("empty".into()));
    }
    if key.starts_with('/') {
        return Err(bad("starts with '/'".into()));
    }
    for (i, seg) in key.split('/').enumerate() {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(bad(format!("segment {i} is {seg:?}")));
        }
    }
    if let Some(pos) = key.find(|c: char| c.is_control()) {
        return Err(bad(format!("control character at byte {pos}")));
    }
    Ok(())
}

/// Transfer settings that are ours, not object_store's.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    /// Bytes per multipart part (S3: at least 5 MiB, at most 5 GiB).
    pub part_size: usize,
    /// Parts of one upload in flight at once (memory is about part_size * parts_in_flight).
    pub parts_in_flight: usize,
    /// Files uploaded at once by `upload_set` and `put_files`.
    pub files_in_flight: usize,
    /// Total time one request may spend retrying before the operation fails.
    pub retry_timeout: Duration,
    /// Retries of one request before it fails.
    pub max_retries: usize,
}

impl Default for Transfer {
    fn default() -> Self {
        Self {
            part_size: 8 << 20,
            parts_in_flight: 4,
            files_in_flight: 4,
            retry_timeout: Duration::from_secs(120),
            max_retries: 10,
        }
    }
}

/// Our own option names; everything else must be an object_store AWS key.
pub const TRANSFER_KEYS: [&str; 5] = [
    "part_size",
    "parts_in_flight",
    "files_in_flight",
    "retry_timeout",
    "max_retries",
];

fn parse_num(key: &str, value: &str, lo: u64, hi: u64) -> Result<u64> {
    let n: u64 = value.trim().parse().map_err(|_| StorageError::Config {
        key: key.to_string(),
        reason: format!("{value:?} is not a whole number"),
    })?;
    if !(lo..=hi).contains(&n) {
        return Err(StorageError::Config {
            key: key.to_string(),
            reason: format!("{n} is outside {lo}..={hi}"),
        });
    }
    Ok(n)
}

impl Transfer {
    /// Applies one of `TRANSFER_KEYS`; returns false when `key` is not one of ours.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<bool> {
        match key {
            // S3's multipart limits: 5 MiB minimum part (except the last), 5 GiB maximum.
            "part_size" => self.part_size = parse_num(key, value, 5 << 20, 5 << 30)? as usize,
            "parts_in_flight" => self.parts_in_flight = parse_num(key, value, 1, 64)? as usize,
            "files_in_flight" => self.files_in_flight = parse_num(key, value, 1, 64)? as usize,
            "retry_timeout" => self.retry_timeout = Duration::from_secs(parse_num(key, value, 1, 3600)?),
            "max_retries" => self.max_retries = parse_num(key, value, 0, 100)? as usize,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// One parsed INI file: section -> key -> value (keys lowercased, values trimmed).
pub type Ini = BTreeMap<String, BTreeMap<String, String>>;

/// Parses the AWS shared-file dialect of INI: `[section]`, `key = value`, `#`/`;` comments.
/// Indented lines (nested `s3 =` blocks) are skipped: they configure the AWS CLI, not us.
pub fn parse_ini(text: &str) -> Ini {
    let mut out = Ini::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_string());
            continue;
        }
        if let (Some(sec), Some((k, v))) = (&section, line.split_once('=')) {
            out.entry(sec.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

/// The settings the AWS shared files give profile `profile`, as object_store config names.
/// In the credentials file a profile's section is `[name]`; in the config file it is
/// `[profile name]`, except `[default]` (AWS CLI "Configuration and credential file settings").
pub fn aws_file_settings(credentials: &Ini, config: &Ini, profile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let config_section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    if let Some(sec) = config.get(&config_section) {
        for (from, to) in [
            ("region", "aws_region"),
            ("endpoint_url", "aws_endpoint_url"),
            ("aws_access_key_id", "aws_access_key_id"),
            ("aws_secret_access_key", "aws_secret_access_key"),
            ("aws_session_token", "aws_session_token"),
        ] {
            if let Some(v) = sec.get(from) {
                out.push((to.to_string(), v.clone()));
            }
        }
    }
    // The credentials file wins over the config file for keys (AWS CLI precedence).
    if let Some(sec) = credentials.get(profile) {
        for key in ["aws_access_key_id", "aws_secret_access_key", "aws_session_token"] {
            if let Some(v) = sec.get(key) {
                out.push((key.to_string(), v.clone()));
            }
        }
    }
    out
}

fn read_ini(path: &Path) -> Ini {
    // A missing or unreadable shared file means "not configured there", as for the AWS CLI.
    std::fs::read_to_string(path).map(|t| parse_ini(&t)).unwrap_or_default()
}

/// The shared files' settings for this process (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE,
/// AWS_PROFILE, defaults under `~/.aws/`).
pub fn aws_files_from_env() -> Vec<(String, String)> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path_of = |var: &str, default: &str| -> Option<PathBuf> {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_string());
    let creds = path_of("AWS_SHARED_CREDENTIALS_FILE", "credentials")
        .map(|p| read_ini(&p))
        .unwrap_or_default();
    let config = path_of("AWS_CONFIG_FILE", "config")
        .map(|p| read_ini(&p))
        .unwrap_or_default();
    aws_file_settings(&creds, &config, &profile)
}

/// The `AWS_*` environment variables, lowercased (the names object_store's `from_env` takes).
pub fn aws_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_url_gives_bucket_and_trimmed_prefix() {
        assert_eq!(
            parse_location("s3://my-bucket/a/b/").unwrap(),
            Location::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            parse_location("s3://my-bucket").unwrap(),
            Location::S3 {
                bucket: "my-bucket".into(),
                prefix: "".into()
            }
        );
    }

    #[test]
    fn s3_url_is_never_a_local_path() {
        for bad in [
            "s3://",
            "s3:///x",
            "s3://UPPER/x",
            "s3://ab",
            "s3://-bucket/x",
            "s3://b_ucket",
        ] {
            assert!(
                matches!(parse_location(bad), Err(StorageError::InvalidUrl { .. })),
                "{bad} should be rejected"
            );
        }
        assert!(matches!(
            parse_location("s3://bucket/a//b"),
            Err(StorageError::InvalidUrl { .. })
        ));
        assert!(matches!(
            parse_location("s3://bucket/a/../b"),
            Err(StorageError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn other_schemes_are_refused_and_paths_are_local() {
        assert!(matches!(
            parse_location("gs://b/x"),
            Err(StorageError::InvalidUrl { .. })
        ));
        assert!(matches!(
            parse_location("file://relative"),
            Err(StorageError::InvalidUrl { .. })
        ));
        assert_eq!(
            parse_location("/srv/repo").unwrap(),
            Location::Local("/srv/repo".into())
        );
        assert_eq!(parse_location("repo").unwrap(), Location::Local("repo".into()));
        assert_eq!(
            parse_location("file:///srv/r").unwrap(),
            Location::Local("/srv/r".into())
        );
    }

    #[test]
    fn bucket_error_names_the_position() {
        let err = parse_location("s3://abc_d/x").unwrap_err().to_string();
        assert!(err.contains("position 3"), "{err}");
    }

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("sets/abc/manifest.json").is_ok());
        for bad in ["", "/a", "a//b", "a/./b", "../a", "a/", "a\nb"] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn transfer_options_are_bounded() {
        let mut t = Transfer::default();
        assert!(t.apply("part_size", "16777216").unwrap());
        assert_eq!(t.part_size, 16 << 20);
        assert!(t.apply("part_size", "1024").is_err());
        assert!(t.apply("parts_in_flight", "0").is_err());
        assert!(t.apply("retry_timeout", "x").is_err());
        assert!(!t.apply("aws_region", "x").unwrap());
    }

    #[test]
    fn shared_files_profiles_and_precedence() {
        let creds = parse_ini(
            "[default]\naws_access_key_id = AK1\naws_secret_access_key=SK1\n\n# c\n[work]\naws_access_key_id=AK2\n",
        );
        let config = parse_ini(
            "[default]\nregion = eu-west-1\ns3 =\n  addressing_style = path\n[profile work]\nregion=us-west-2\nendpoint_url = http://127.0.0.1:9000\naws_access_key_id = FROMCONFIG\n",
        );
        let d = aws_file_settings(&creds, &config, "default");
        assert!(d.contains(&("aws_region".into(), "eu-west-1".into())));
        assert!(d.contains(&("aws_access_key_id".into(), "AK1".into())));
        assert!(!d.iter().any(|(k, _)| k == "addressing_style"));
        let w = aws_file_settings(&creds, &config, "work");
        assert!(w.contains(&("aws_endpoint_url".into(), "http://127.0.0.1:9000".into())));
        // The credentials file comes after the config file, so its key wins when applied in order.
        let last_key = w.iter().rev().find(|(k, _)| k == "aws_access_key_id").unwrap();
        assert_eq!(last_key.1, "AK2");
    }
}
