//! Storage errors: one variant per thing a user must tell apart (wrong credentials, missing
//! bucket, unreachable server, a key that is absent or already there), each naming the
//! repository, bucket or key it is about.

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;

use object_store::client::{HttpError, HttpErrorKind};

/// What went wrong in the storage layer.
#[derive(Debug)]
pub enum StorageError {
    /// The repository URL cannot be used (unknown scheme, no bucket, bad characters).
    InvalidUrl { url: String, reason: String },
    /// An option or AWS setting has a bad value (`key` names it).
    Config { key: String, reason: String },
    /// A key is empty, absolute, or contains `..` or an empty segment.
    InvalidKey { key: String, reason: String },
    /// The server refused our credentials (wrong key id or secret, or no permission).
    Auth { repo: String, detail: String },
    /// The bucket does not exist (we never create one implicitly).
    BucketNotFound { bucket: String, endpoint: String },
    /// The object does not exist.
    NotFound { key: String },
    /// A conditional create found the object already there.
    AlreadyExists { key: String },
    /// The server could not be reached, or kept failing, until the retry budget ran out.
    Unreachable { repo: String, detail: String },
    /// After an upload the stored object's size differs from what was sent.
    SizeMismatch { key: String, expected: u64, found: u64 },
    /// A local file could not be read or written.
    Io { path: PathBuf, source: std::io::Error },
    /// Any other error from the store, with the operation and key it happened on.
    Store {
        op: &'static str,
        key: String,
        detail: String,
    },
    /// A lock is held by someone else (`holder` describes it: host, pid, purpose, expiry).
    Locked { holder: String },
    /// A lock object in the bucket cannot be parsed (the key names it).
    BadLock { key: String, reason: String },
    /// The async runtime could not be created.
    Runtime(String),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl { url, reason } => write!(f, "invalid repository URL {url:?}: {reason}"),
            Self::Config { key, reason } => write!(f, "invalid storage option {key}: {reason}"),
            Self::InvalidKey { key, reason } => write!(f, "invalid object key {key:?}: {reason}"),
            Self::Auth { repo, detail } => write!(
                f,
                "{repo}: the server refused the credentials (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY): {detail}"
            ),
            Self::BucketNotFound { bucket, endpoint } => write!(
                f,
                "bucket {bucket:?} does not exist at {endpoint} (create it first; rustybackup never creates one implicitly)"
            ),
            Self::NotFound { key } => write!(f, "object {key} not found"),
            Self::AlreadyExists { key } => write!(f, "object {key} already exists"),
            Self::Unreachable { repo, detail } => {
                write!(f, "{repo}: the server could not be reached (gave up after retrying): {detail}")
            }
            Self::SizeMismatch { key, expected, found } => {
                write!(f, "object {key}: uploaded {expected} bytes but the store holds {found}")
            }
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Store { op, key, detail } => write!(f, "{op} {key}: {detail}"),
            Self::Locked { holder } => write!(f, "repository is locked: {holder}"),
            Self::BadLock { key, reason } => write!(f, "lock object {key} is damaged: {reason}"),
            Self::Runtime(detail) => write!(f, "storage runtime: {detail}"),
        }
    }
}

impl StdError for StorageError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Where an error from `object_store` happened, so it can be classified with context.
pub(crate) struct Context<'a> {
    pub repo: &'a str,
    pub bucket: Option<&'a str>,
    pub endpoint: &'a str,
}

/// The full chain of an error's messages, for details that would otherwise be lost.
pub(crate) fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cur = e.source();
    }
    text
}

/// True when some error in the chain is a connection-level failure (refused, reset, timed out,
/// cancelled on a dead pooled connection).
fn is_transport(err: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<HttpError>() {
            if matches!(
                h.kind(),
                HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Timeout | HttpErrorKind::Interrupted
            ) {
                return true;
            }
        }
        if e.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        // A server killed mid-upload leaves pooled connections that hyper cancels before
        // sending ("connection was not ready"); object_store calls that kind Unknown.
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_canceled() || h.is_closed() || h.is_incomplete_message() {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

impl StorageError {
    /// Classifies an `object_store` error on `op` of `key`.
    pub(crate) fn from_store(err: object_store::Error, op: &'static str, key: &str, ctx: &Context<'_>) -> Self {
        use object_store::Error as E;
        let text = chain_text(&err);
        // S3 error codes travel in the response body, which object_store keeps in the message.
        if text.contains("NoSuchBucket") {
            return Self::BucketNotFound {
                bucket: ctx.bucket.unwrap_or("").to_string(),
                endpoint: ctx.endpoint.to_string(),
            };
        }
        let auth_codes = [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "InvalidToken",
        ];
        match err {
            E::NotFound { .. } => Self::NotFound { key: key.to_string() },
            E::AlreadyExists { .. } | E::Precondition { .. } => Self::AlreadyExists { key: key.to_string() },
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => Self::Auth {
                repo: ctx.repo.to_string(),
                detail: text,
            },
            _ if auth_codes.iter().any(|c| text.contains(c)) => Self::Auth {
                repo: ctx.repo.to_string(),
                detail: text,
            },
            ref e if is_transport(e) => Self::Unreachable {
                repo: ctx.repo.to_string(),
                detail: text,
            },
            _ => Self::Store {
                op,
                key: key.to_string(),
                detail: text,
            },
        }
    }
}

/// Result of the storage layer.
pub type Result<T> = std::result::Result<T, StorageError>;
