//! The commit protocol without rename (docs/FORMAT.md, "Object storage layout"): a staged
//! set's pieces and block map go up first, in parallel; its manifest goes last, with a
//! conditional create. A set exists when its manifest exists, so a crash or a lost
//! connection before that leaves only objects no manifest refers to; `sweep` removes those
//! once they are older than a grace period, and `sweep_uploads` the multipart uploads that
//! were never completed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::multipart::MultipartStore;
use object_store::path::Path as StorePath;
use object_store::signer::{SignedUrlOptions, Signer};
use reqwest::Method;

use super::error::{Result, StorageError};
use super::{runtime, Backend, Storage};

/// The one file whose presence makes a set exist.
pub const MANIFEST: &str = "manifest.json";

/// What `upload_set` sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetUpload {
    /// Keys written, the manifest last.
    pub keys: Vec<String>,
    /// Bytes sent, the manifest included.
    pub bytes: u64,
    /// False when the manifest was already there with the same bytes (a retried upload).
    pub created: bool,
}

/// Regular files under `dir`, relative paths sorted; dot files are skipped (the local
/// staging `.lock` and editors' leftovers are not part of a set).
fn staged_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let entries = std::fs::read_dir(&abs).map_err(|source| StorageError::Io {
            path: abs.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| StorageError::Io {
                path: abs.clone(),
                source,
            })?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let ft = entry.file_type().map_err(|source| StorageError::Io {
                path: entry.path(),
                source,
            })?;
            if ft.is_dir() {
                stack.push(rel.join(&name));
            } else if ft.is_file() {
                out.push(rel.join(&name));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn key_of(prefix: &str, rel: &Path) -> Result<String> {
    let rel = rel.to_str().ok_or_else(|| StorageError::InvalidKey {
        key: rel.to_string_lossy().into_owned(),
        reason: "not UTF-8".into(),
    })?;
    let prefix = prefix.trim_matches('/');
    Ok(if prefix.is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    })
}

impl Storage {
    /// Uploads the staged set in `local_dir` under `prefix` (e.g. `sets/<id>`): every file
    /// but `manifest_name` first (parallel, multipart), then the manifest with a conditional
    /// create. If the manifest is already there with the same bytes the set was committed
    /// by an earlier try and this one succeeds (`created` false); with other bytes it fails
    /// with `AlreadyExists` and nothing visible changes.
    pub fn upload_set(&self, local_dir: &Path, prefix: &str, manifest_name: &str) -> Result<SetUpload> {
        self.upload_set_skipping(local_dir, prefix, manifest_name, &[])
    }

    /// `upload_set` of a set some of whose files are in the bucket already (`skip`,
    /// relative to `local_dir`: a piece sent by its tail upload, `tail.rs`); they count
    /// in `bytes` at their local size. The manifest is never skipped.
    pub fn upload_set_skipping(
        &self,
        local_dir: &Path,
        prefix: &str,
        manifest_name: &str,
        skip: &[PathBuf],
    ) -> Result<SetUpload> {
        runtime::block_on(self.upload_set_async(local_dir, prefix, manifest_name, skip))?
    }

    async fn upload_set_async(
        &self,
        local_dir: &Path,
        prefix: &str,
        manifest_name: &str,
        skip: &[PathBuf],
    ) -> Result<SetUpload> {
        let files = staged_files(local_dir)?;
        let manifest_rel = PathBuf::from(manifest_name);
        if !files.contains(&manifest_rel) {
            return Err(StorageError::Io {
                path: local_dir.join(manifest_name),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "the staged set has no manifest"),
            });
        }
        let manifest_key = key_of(prefix, &manifest_rel)?;
        let mut pieces = Vec::new();
        let mut skipped_bytes = 0u64;
        let mut skipped = Vec::new();
        for rel in files.iter().filter(|r| **r != manifest_rel) {
            if skip.contains(rel) {
                let path = local_dir.join(rel);
                skipped_bytes += std::fs::metadata(&path)
                    .map_err(|source| StorageError::Io { path, source })?
                    .len();
                skipped.push(key_of(prefix, rel)?);
                continue;
            }
            pieces.push((key_of(prefix, rel)?, local_dir.join(rel)));
        }
        let sizes = self.put_files_async(&pieces).await?;
        let manifest_path = local_dir.join(manifest_name);
        let manifest = std::fs::read(&manifest_path).map_err(|source| StorageError::Io {
            path: manifest_path.clone(),
            source,
        })?;
        let manifest_len = manifest.len() as u64;
        let created = self.put_bytes_if_absent_async(&manifest_key, manifest.clone()).await?;
        if !created {
            let there = self.get_bytes_async(&manifest_key).await?;
            if there != manifest {
                return Err(StorageError::AlreadyExists { key: manifest_key });
            }
        }
        let mut keys: Vec<String> = skipped;
        keys.extend(pieces.into_iter().map(|(k, _)| k));
        keys.push(manifest_key);
        Ok(SetUpload {
            keys,
            bytes: sizes.iter().sum::<u64>() + skipped_bytes + manifest_len,
            created,
        })
    }

    /// Deletes the objects under `prefix` (e.g. `sets`) that sit in a set directory
    /// (`prefix/<id>/...`) with no manifest and were last modified more than `grace` ago.
    /// Returns the keys deleted. Objects of sets that have a manifest are never touched, and
    /// the grace period protects uploads still in progress elsewhere.
    pub fn sweep(&self, prefix: &str, grace: Duration, now: DateTime<Utc>) -> Result<Vec<String>> {
        runtime::block_on(async {
            let objects = self.list_async(prefix).await?;
            let cutoff = now - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
            let strip = |k: &str| -> Option<(String, String)> {
                let p = prefix.trim_matches('/');
                let rest = if p.is_empty() {
                    k
                } else {
                    k.strip_prefix(p)?.strip_prefix('/')?
                };
                let (set, file) = rest.split_once('/')?;
                Some((set.to_string(), file.to_string()))
            };
            let committed: std::collections::BTreeSet<String> = objects
                .iter()
                .filter_map(|o| strip(&o.key))
                .filter(|(_, file)| file == MANIFEST)
                .map(|(set, _)| set)
                .collect();
            let mut deleted = Vec::new();
            for o in &objects {
                let Some((set, _)) = strip(&o.key) else { continue };
                if committed.contains(&set) || o.last_modified > cutoff {
                    continue;
                }
                self.delete_async(&o.key).await?;
                deleted.push(o.key.clone());
            }
            Ok(deleted)
        })?
    }

    /// Aborts the multipart uploads under `prefix` started more than `grace` ago (left by a
    /// process that died or lost the server mid-upload) and returns their keys. object_store
    /// has no call that lists multipart uploads, so the S3 `ListMultipartUploads` request is
    /// signed with object_store's own signer and sent here; the abort goes through
    /// object_store. A local repository has none (its multipart writes are temporary files
    /// that object_store removes when the upload is dropped).
    pub fn sweep_uploads(&self, prefix: &str, grace: Duration, now: DateTime<Utc>) -> Result<Vec<String>> {
        let Backend::S3 { s3, .. } = &self.backend else {
            return Ok(Vec::new());
        };
        runtime::block_on(async {
            let cutoff = now - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
            let store_prefix = match self.prefix_path(prefix)? {
                Some(p) => format!("{}/", p.as_ref()),
                None => String::new(),
            };
            let mut aborted = Vec::new();
            let mut markers: Option<(String, String)> = None;
            // Each page holds at most 1000 uploads; this bound keeps a misbehaving server from
            // looping us forever.
            for _ in 0..10_000 {
                let mut query = vec![("uploads".to_string(), String::new())];
                query.push(("prefix".to_string(), store_prefix.clone()));
                if let Some((k, u)) = &markers {
                    query.push(("key-marker".to_string(), k.clone()));
                    query.push(("upload-id-marker".to_string(), u.clone()));
                }
                let opts = SignedUrlOptions::new().with_query(query);
                let url = s3
                    .signed_url_opts(Method::GET, &StorePath::from(""), Duration::from_secs(300), &opts)
                    .await
                    .map_err(|e| self.err(e, "list_uploads", prefix))?;
                let body = http_get(url.as_str()).await.map_err(|detail| StorageError::Store {
                    op: "list_uploads",
                    key: prefix.to_string(),
                    detail,
                })?;
                let page = parse_uploads(&body);
                for up in &page.uploads {
                    if up.initiated.is_some_and(|t| t > cutoff) {
                        continue;
                    }
                    let loc = StorePath::from(up.key.as_str());
                    s3.abort_multipart(&loc, &up.upload_id)
                        .await
                        .map_err(|e| self.err(e, "abort_multipart", &up.key))?;
                    aborted.push(self.key_of(&loc));
                }
                match page.next {
                    Some(next) => markers = Some(next),
                    None => break,
                }
            }
            Ok(aborted)
        })?
    }
}

/// One presigned request outside object_store's API; (status, body).
async fn http_send(method: Method, url: &str) -> std::result::Result<(u16, String), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client.request(method, url).send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok((status, text))
}

async fn http_get(url: &str) -> std::result::Result<String, String> {
    let (status, text) = http_send(Method::GET, url).await?;
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status}: {}", text.chars().take(300).collect::<String>()));
    }
    Ok(text)
}

impl Storage {
    /// Creates the bucket of an S3 repository (only on request: `init --create-bucket`).
    /// A bucket that exists and is ours is fine; a local repository has none (no-op).
    pub fn create_bucket(&self) -> Result<()> {
        let Backend::S3 { s3, bucket, .. } = &self.backend else {
            return Ok(());
        };
        runtime::block_on(async {
            // CreateBucket is `PUT /<bucket>`: a presigned PUT of the empty key is exactly that
            // in path style; object_store has no call for it.
            let url = s3
                .signed_url(Method::PUT, &StorePath::from(""), Duration::from_secs(300))
                .await
                .map_err(|e| self.err(e, "create_bucket", bucket))?;
            let (status, body) =
                http_send(Method::PUT, url.as_str())
                    .await
                    .map_err(|detail| StorageError::Unreachable {
                        repo: self.url.clone(),
                        detail,
                    })?;
            if (200..300).contains(&status) || body.contains("BucketAlreadyOwnedByYou") {
                return Ok(());
            }
            let detail = format!("HTTP {status}: {}", body.chars().take(300).collect::<String>());
            if status == 403 || body.contains("InvalidAccessKeyId") || body.contains("SignatureDoesNotMatch") {
                return Err(StorageError::Auth {
                    repo: self.url.clone(),
                    detail,
                });
            }
            Err(StorageError::Store {
                op: "create_bucket",
                key: bucket.clone(),
                detail,
            })
        })?
    }
}

/// One upload in a ListMultipartUploads page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<DateTime<Utc>>,
}

/// A parsed ListMultipartUploads page and the markers of the next one, if truncated.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UploadsPage {
    pub uploads: Vec<PendingUpload>,
    pub next: Option<(String, String)>,
}

/// The text of the first `<tag>...</tag>` in `s`, XML entities decoded.
fn tag<'a>(s: &'a str, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = s.find(&open)? + open.len();
    let end = start + s[start..].find(&close)?;
    Some(unescape(&s[start..end]))
}

fn unescape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('&') {
        return s.into();
    }
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
        .into()
}

/// Parses a ListMultipartUploadsResult body (AWS S3 API reference). Only the fields we use;
/// an upload without a key or id is skipped rather than guessed at.
pub fn parse_uploads(body: &str) -> UploadsPage {
    let mut page = UploadsPage::default();
    let mut rest = body;
    while let Some(i) = rest.find("<Upload>") {
        let after = &rest[i + "<Upload>".len()..];
        let Some(j) = after.find("</Upload>") else { break };
        let item = &after[..j];
        if let (Some(key), Some(id)) = (tag(item, "Key"), tag(item, "UploadId")) {
            let initiated = tag(item, "Initiated")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc));
            page.uploads.push(PendingUpload {
                key: key.into_owned(),
                upload_id: id.into_owned(),
                initiated,
            });
        }
        rest = &after[j..];
    }
    let truncated = tag(body, "IsTruncated").is_some_and(|t| t.trim() == "true");
    if truncated {
        if let (Some(k), Some(u)) = (tag(body, "NextKeyMarker"), tag(body, "NextUploadIdMarker")) {
            page.next = Some((k.into_owned(), u.into_owned()));
        }
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_page_is_parsed_with_markers() {
        let body = r#"<?xml version="1.0"?><ListMultipartUploadsResult><Bucket>b</Bucket>
<IsTruncated>true</IsTruncated><NextKeyMarker>sets/b/data.piece</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>
<Upload><Key>sets/a/data.piece</Key><UploadId>u1</UploadId><Initiated>2026-11-30T10:00:00.000Z</Initiated></Upload>
<Upload><Key>sets/a&amp;b/x</Key><UploadId>u2</UploadId></Upload>
<Upload><UploadId>nokey</UploadId></Upload></ListMultipartUploadsResult>"#;
        let page = parse_uploads(body);
        assert_eq!(page.uploads.len(), 2);
        assert_eq!(page.uploads[0].key, "sets/a/data.piece");
        assert_eq!(
            page.uploads[0].initiated.map(|t| t.to_rfc3339()),
            Some("2026-11-30T10:00:00+00:00".to_string())
        );
        assert_eq!(page.uploads[1].key, "sets/a&b/x");
        assert_eq!(page.uploads[1].initiated, None);
        assert_eq!(page.next, Some(("sets/b/data.piece".into(), "u2".into())));
    }

    /// Seeded random pages rendered the way S3 escapes XML text, parsed back: the generator
    /// is the oracle (keys with every character XML must escape, missing Initiated, pages
    /// truncated or not).
    #[test]
    fn random_pages_round_trip() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet: Vec<char> = "ab/&<>\"'.-_é".chars().collect();
        let escape = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&apos;")
        };
        for _ in 0..500 {
            let n = (next() % 5) as usize;
            let mut want = Vec::new();
            let mut xml = String::from("<ListMultipartUploadsResult>");
            for i in 0..n {
                let len = 1 + (next() % 12) as usize;
                let key: String = (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect();
                let id = format!("id{i}-{}", next() % 1000);
                let initiated = (next() % 2 == 0)
                    .then(|| DateTime::from_timestamp((next() % 2_000_000_000) as i64, 0).unwrap_or_default());
                xml.push_str(&format!("<Upload><Key>{}</Key><UploadId>{id}</UploadId>", escape(&key)));
                if let Some(t) = initiated {
                    xml.push_str(&format!("<Initiated>{}</Initiated>", t.to_rfc3339()));
                }
                xml.push_str("</Upload>");
                want.push(PendingUpload {
                    key,
                    upload_id: id,
                    initiated,
                });
            }
            let truncated = next() % 2 == 0;
            xml.push_str(&format!(
                "<IsTruncated>{truncated}</IsTruncated><NextKeyMarker>k&amp;1</NextKeyMarker><NextUploadIdMarker>u</NextUploadIdMarker></ListMultipartUploadsResult>"
            ));
            let page = parse_uploads(&xml);
            assert_eq!(page.uploads, want, "{xml}");
            assert_eq!(page.next, truncated.then(|| ("k&1".to_string(), "u".to_string())));
        }
    }

    #[test]
    fn an_untruncated_page_has_no_next() {
        let page = parse_uploads("<IsTruncated>false</IsTruncated><NextKeyMarker>x</NextKeyMarker>");
        assert_eq!(page, UploadsPage::default());
    }
}
