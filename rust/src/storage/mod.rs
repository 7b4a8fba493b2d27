//! The storage layer under repositories: one `Storage` type with two implementations, the
//! local filesystem and S3-compatible object storage, both through the `object_store` crate
//! (Apache Arrow), so every caller (the Python remote repository, `copy`, mirrors) talks to
//! one interface.
//!
//! Keys are relative to the repository root (`sets/<id>/manifest.json`, `locks/<uuid>.json`);
//! the S3 prefix of `s3://bucket/prefix` is added here and nowhere else.
//!
//! Map of the module:
//! - `config`: repository URLs, options, the AWS shared files;
//! - `error`: the errors, classified (credentials, missing bucket, unreachable, ...);
//! - `runtime`: the one tokio runtime, created lazily;
//! - `transfer`: streamed multipart upload of a file, streamed download, bandwidth limit;
//! - `commit`: uploading a staged set with the manifest last, and sweeping leftovers;
//! - `locks`: lock objects (restic's model) with a background refresher.
//! - `restore`: restoring files from pieces in the bucket by ranged GETs, no local copy.
//! - `tail`: uploading a piece while the backup still writes it.
//!
//! Pure: no PyO3 types (bindings in `py/storage.rs`).

pub mod commit;
pub mod config;
pub mod error;
pub mod locks;
pub mod restore;
pub mod runtime;
pub mod tail;
pub mod transfer;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, Checksum};
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig};

pub use config::{parse_location, Location, Transfer};
use error::Context;
pub use error::{Result, StorageError};
use transfer::Limiter;

/// One object as listed: key relative to the repository root, size, last modification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    pub e_tag: Option<String>,
}

/// Which implementation a `Storage` uses.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A directory (object_store's `LocalFileSystem`, fsync on).
    Local { root: PathBuf },
    /// A bucket on an S3-compatible server.
    S3 {
        bucket: String,
        endpoint: String,
        s3: Arc<AmazonS3>,
    },
}

/// A repository's storage: a local directory or an S3 bucket and prefix.
#[derive(Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    backend: Backend,
    url: String,
    prefix: String,
    transfer: Transfer,
    limiter: Arc<Limiter>,
    conditional: OnceLock<bool>,
}

/// The endpoint AWS itself uses when none is configured, for error messages.
const AWS_DEFAULT_ENDPOINT: &str = "https://s3.amazonaws.com";

impl Storage {
    /// Opens the repository at `url` (`s3://bucket/prefix`, `file:///dir` or a path).
    /// `options` are object_store AWS keys (`aws_access_key_id`, `aws_endpoint_url`,
    /// `aws_allow_http`, ...) or ours (`config::TRANSFER_KEYS`); they override the
    /// environment and the AWS shared files. Nothing is sent to the server here.
    pub fn open(url: &str, options: &[(String, String)]) -> Result<Self> {
        let location = parse_location(url)?;
        let mut transfer = Transfer::default();
        let mut store_opts = Vec::new();
        for (k, v) in options {
            let key = k.to_ascii_lowercase();
            if !transfer.apply(&key, v)? {
                store_opts.push((key, v.clone()));
            }
        }
        match location {
            Location::Local(root) => {
                if let Some((k, _)) = store_opts.first() {
                    return Err(StorageError::Config {
                        key: k.clone(),
                        reason: "not an option of a local repository".into(),
                    });
                }
                let fs = LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| StorageError::Io {
                        path: root.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::NotFound, error::chain_text(&e)),
                    })?
                    .with_fsync(true)
                    .with_automatic_cleanup(true);
                Ok(Self::new(
                    Arc::new(fs),
                    Backend::Local { root },
                    url,
                    String::new(),
                    transfer,
                ))
            }
            Location::S3 { bucket, prefix } => {
                let mut settings = config::aws_files_from_env();
                settings.extend(config::aws_env());
                settings.extend(store_opts.iter().cloned());
                let s3 = build_s3(&bucket, &settings, &transfer)?;
                let endpoint = settings
                    .iter()
                    .rev()
                    .find(|(k, _)| {
                        matches!(
                            k.as_str(),
                            "aws_endpoint_url" | "aws_endpoint" | "endpoint_url" | "endpoint"
                        )
                    })
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| AWS_DEFAULT_ENDPOINT.to_string());
                let s3 = Arc::new(s3);
                let store: Arc<dyn ObjectStore> = s3.clone();
                Ok(Self::new(
                    store,
                    Backend::S3 { bucket, endpoint, s3 },
                    url,
                    prefix,
                    transfer,
                ))
            }
        }
    }

    fn new(store: Arc<dyn ObjectStore>, backend: Backend, url: &str, prefix: String, transfer: Transfer) -> Self {
        Self {
            store,
            backend,
            url: url.to_string(),
            prefix,
            transfer,
            limiter: Arc::new(Limiter::default()),
            conditional: OnceLock::new(),
        }
    }

    /// The URL this storage was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The backend in use.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The transfer settings in force.
    pub fn transfer(&self) -> &Transfer {
        &self.transfer
    }

    /// Limits uploads to `bytes_per_second` (0: unlimited), for every upload of this storage
    /// from now on (parts already sent are not recalled).
    pub fn set_upload_limit(&self, bytes_per_second: u64) {
        self.limiter.set_rate(bytes_per_second);
    }

    /// The upload limit in bytes per second (0: unlimited).
    pub fn upload_limit(&self) -> u64 {
        self.limiter.rate()
    }

    pub(crate) fn ctx(&self) -> Context<'_> {
        match &self.backend {
            Backend::Local { .. } => Context {
                repo: &self.url,
                bucket: None,
                endpoint: "local filesystem",
            },
            Backend::S3 { bucket, endpoint, .. } => Context {
                repo: &self.url,
                bucket: Some(bucket),
                endpoint,
            },
        }
    }

    pub(crate) fn err(&self, e: object_store::Error, op: &'static str, key: &str) -> StorageError {
        StorageError::from_store(e, op, key, &self.ctx())
    }

    /// The store path of a repository key.
    pub(crate) fn path(&self, key: &str) -> Result<StorePath> {
        config::validate_key(key)?;
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        StorePath::parse(&full).map_err(|e| StorageError::InvalidKey {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }

    /// The store path of a listing prefix ("" for the whole repository).
    fn prefix_path(&self, prefix: &str) -> Result<Option<StorePath>> {
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            if self.prefix.is_empty() {
                return Ok(None);
            }
            return Ok(Some(StorePath::from_iter(self.prefix.split('/'))));
        }
        self.path(prefix).map(Some)
    }

    /// The repository key of a store path (the inverse of `path`).
    fn key_of(&self, location: &StorePath) -> String {
        let s = location.as_ref();
        if self.prefix.is_empty() {
            return s.to_string();
        }
        s.strip_prefix(&self.prefix)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(s)
            .to_string()
    }

    fn info(&self, m: object_store::ObjectMeta) -> ObjectInfo {
        ObjectInfo {
            key: self.key_of(&m.location),
            size: m.size,
            last_modified: m.last_modified,
            e_tag: m.e_tag,
        }
    }

    /// Stores `data` at `key`, replacing any object there.
    pub fn put_bytes(&self, key: &str, data: Vec<u8>) -> Result<()> {
        runtime::block_on(self.put_bytes_async(key, data))?
    }

    pub(crate) async fn put_bytes_async(&self, key: &str, data: Vec<u8>) -> Result<()> {
        let loc = self.path(key)?;
        self.limiter.acquire(data.len() as u64).await;
        self.store
            .put(&loc, PutPayload::from(data))
            .await
            .map_err(|e| self.err(e, "put", key))?;
        Ok(())
    }

    /// Creates `key` with `data` only if no object is there; true when this call created it.
    /// With a server that honours `If-None-Match: *` (see `conditional_create_supported`) of
    /// two concurrent callers exactly one gets true. Otherwise the best available: look, write,
    /// then read back after a pause and keep the result only if the bytes are still ours.
    pub fn put_bytes_if_absent(&self, key: &str, data: Vec<u8>) -> Result<bool> {
        runtime::block_on(self.put_bytes_if_absent_async(key, data))?
    }

    pub(crate) async fn put_bytes_if_absent_async(&self, key: &str, data: Vec<u8>) -> Result<bool> {
        if self.conditional_create_supported_async().await? {
            return self.create_async(key, data).await;
        }
        let loc = self.path(key)?;
        if self.head_async(key).await?.is_some() {
            return Ok(false);
        }
        self.put_bytes_async(key, data.clone()).await?;
        // Another writer that looked at the same moment overwrote us or will: the last
        // write wins on S3, so wait out a request's round trip and see whose bytes stayed.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = self.store.get(&loc).await.map_err(|e| self.err(e, "get", key))?;
        let now = now.bytes().await.map_err(|e| self.err(e, "get", key))?;
        Ok(now.as_ref() == data.as_slice())
    }

    /// `PutMode::Create`: `If-None-Match: *` on S3, an atomic no-clobber link on a filesystem.
    async fn create_async(&self, key: &str, data: Vec<u8>) -> Result<bool> {
        let loc = self.path(key)?;
        self.limiter.acquire(data.len() as u64).await;
        let opts = PutOptions::from(PutMode::Create);
        match self.store.put_opts(&loc, PutPayload::from(data), opts).await {
            Ok(_) => Ok(true),
            Err(e) => match self.err(e, "create", key) {
                StorageError::AlreadyExists { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Whether the server refuses a second create of one key (found out once, by trying it
    /// on a probe key under `locks/`, then remembered). A filesystem always does.
    pub fn conditional_create_supported(&self) -> Result<bool> {
        runtime::block_on(self.conditional_create_supported_async())?
    }

    async fn conditional_create_supported_async(&self) -> Result<bool> {
        if let Some(v) = self.conditional.get() {
            return Ok(*v);
        }
        let supported = match self.backend {
            Backend::Local { .. } => true,
            Backend::S3 { .. } => {
                let key = format!("locks/probe-{}.tmp", uuid::Uuid::new_v4());
                let first = self.create_async(&key, b"1".to_vec()).await;
                let second = match first {
                    Ok(true) => self.create_async(&key, b"2".to_vec()).await,
                    Ok(false) => Ok(true),
                    Err(e) => Err(e),
                };
                // The probe is ours alone (a fresh uuid); remove it whatever happened.
                let _ = self.delete_async(&key).await;
                !second?
            }
        };
        Ok(*self.conditional.get_or_init(|| supported))
    }

    /// The whole object at `key`.
    pub fn get_bytes(&self, key: &str) -> Result<Vec<u8>> {
        runtime::block_on(self.get_bytes_async(key))?
    }

    pub(crate) async fn get_bytes_async(&self, key: &str) -> Result<Vec<u8>> {
        let loc = self.path(key)?;
        let got = self.store.get(&loc).await.map_err(|e| self.err(e, "get", key))?;
        let bytes = got.bytes().await.map_err(|e| self.err(e, "get", key))?;
        Ok(bytes.to_vec())
    }

    /// Bytes `start..end` of the object at `key` (an error if the range runs past its end).
    pub fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        if start > end {
            return Err(StorageError::Store {
                op: "get_range",
                key: key.to_string(),
                detail: format!("start {start} is after end {end}"),
            });
        }
        runtime::block_on(async {
            let loc = self.path(key)?;
            if start == end {
                // A zero-length range is not expressible in HTTP; check the object exists.
                return match self.head_async(key).await? {
                    Some(m) if m.size >= end => Ok(Vec::new()),
                    Some(m) => Err(StorageError::Store {
                        op: "get_range",
                        key: key.to_string(),
                        detail: format!("range {start}..{end} is past the end ({} bytes)", m.size),
                    }),
                    None => Err(StorageError::NotFound { key: key.to_string() }),
                };
            }
            let bytes = self
                .store
                .get_range(&loc, start..end)
                .await
                .map_err(|e| self.err(e, "get_range", key))?;
            if bytes.len() as u64 != end - start {
                return Err(StorageError::Store {
                    op: "get_range",
                    key: key.to_string(),
                    detail: format!("asked for {} bytes at {start}, got {}", end - start, bytes.len()),
                });
            }
            Ok(bytes.to_vec())
        })?
    }

    /// The object's size and time, or None when there is none.
    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        runtime::block_on(self.head_async(key))?
    }

    pub(crate) async fn head_async(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let loc = self.path(key)?;
        match self.store.head(&loc).await {
            Ok(m) => Ok(Some(self.info(m))),
            Err(e) => match self.err(e, "head", key) {
                StorageError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Every object under `prefix` (a directory-like prefix: `sets/x` lists `sets/x/...`,
    /// not `sets/xy`), sorted by key.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        runtime::block_on(self.list_async(prefix))?
    }

    pub(crate) async fn list_async(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let p = self.prefix_path(prefix)?;
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(p.as_ref())
            .try_collect()
            .await
            .map_err(|e| self.err(e, "list", prefix))?;
        let mut out: Vec<ObjectInfo> = metas.into_iter().map(|m| self.info(m)).collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Deletes `key`; deleting what is not there is not an error (S3's own semantics).
    pub fn delete(&self, key: &str) -> Result<()> {
        runtime::block_on(self.delete_async(key))?
    }

    pub(crate) async fn delete_async(&self, key: &str) -> Result<()> {
        let loc = self.path(key)?;
        match self.store.delete(&loc).await {
            Ok(()) => Ok(()),
            Err(e) => match self.err(e, "delete", key) {
                StorageError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Checks that the repository can be reached with these credentials: lists one page of
    /// the root. A missing bucket or refused credentials give their own error.
    pub fn check(&self) -> Result<()> {
        runtime::block_on(async {
            let p = self.prefix_path("")?;
            let mut s = self.store.list(p.as_ref());
            match s.try_next().await {
                Ok(_) => Ok(()),
                Err(e) => Err(self.err(e, "list", "")),
            }
        })?
    }
}

/// Builds the S3 client from the merged settings (later entries win).
fn build_s3(bucket: &str, settings: &[(String, String)], transfer: &Transfer) -> Result<AmazonS3> {
    install_crypto_provider();
    let mut b = AmazonS3Builder::new().with_bucket_name(bucket);
    let mut has_region = false;
    let mut has_checksum = false;
    // Bounded waits: a dead server fails an operation after retry_timeout, not never.
    for (k, v) in [
        ("connect_timeout", "5s"),
        ("timeout", "300s"),
        ("pool_idle_timeout", "30s"),
    ] {
        let key: AmazonS3ConfigKey = k.parse().map_err(|e: object_store::Error| StorageError::Config {
            key: k.to_string(),
            reason: e.to_string(),
        })?;
        b = b.with_config(key, v);
    }
    for (k, v) in settings {
        // Settings object_store does not know (AWS_PROFILE, AWS_CONFIG_FILE, ...) are the AWS
        // tools' own, read by config.rs or meant for other programs; from_env skips them too.
        let Ok(key) = k.parse::<AmazonS3ConfigKey>() else {
            continue;
        };
        has_region |= matches!(key, AmazonS3ConfigKey::Region | AmazonS3ConfigKey::DefaultRegion);
        has_checksum |= matches!(key, AmazonS3ConfigKey::Checksum);
        b = b.with_config(key, v);
    }
    if !has_region {
        // The AWS SDKs' fallback; S3-compatible servers accept any region in the signature scope.
        b = b.with_region("us-east-1");
    }
    if !has_checksum {
        // x-amz-checksum-sha256 on every PUT and part: the server recomputes it and refuses a
        // body damaged in transit (SeaweedFS 4.x does: BadDigest, tests/test_storage_faults.py).
        b = b.with_checksum_algorithm(Checksum::SHA256);
    }
    b = b.with_retry(RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: transfer.max_retries,
        retry_timeout: transfer.retry_timeout,
    });
    b.build().map_err(|e| StorageError::Config {
        key: "s3".into(),
        reason: error::chain_text(&e),
    })
}

/// rustls needs one process-wide crypto provider; we ship ring (see Cargo.toml).
fn install_crypto_provider() {
    // Err means one is installed already (by us or by another library): either is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
