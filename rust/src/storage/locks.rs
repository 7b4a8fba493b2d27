//! Locks as objects, restic's model: `locks/<uuid>.json` names the host, pid and purpose of
//! the holder and when the lock expires. The holder rewrites it (a later expiry) every third
//! of its time to live from a background task; a lock whose expiry has passed is stale and
//! may be deleted by anyone who wants the repository, but a live one is never touched.
//!
//! Two processes that lock at the same moment both write their object, then list again;
//! whoever sees a conflicting live lock besides its own deletes its object and fails with
//! `Locked` (restic does the same). With strongly consistent listing (S3 since 2020,
//! SeaweedFS) at most one can miss the other: the later of the two writes completes before
//! the later list starts. Both may back off; neither then holds anything, and a retry
//! resolves it. Ordering by timestamps instead would let a slow writer with an older clock
//! reading win next to one that already holds the lock. Shared locks conflict only with
//! exclusive ones.
//!
//! Clocks: expiry is compared with this host's clock, as restic does; hosts whose clocks
//! differ by more than a lock's time to live can take each other's live locks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::error::{Result, StorageError};
use super::{runtime, Storage};

/// The folder of lock objects in a repository.
pub const LOCKS: &str = "locks";

/// What a lock is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Retention, cleanup, sweeping: nothing else may run.
    Exclusive,
    /// Backups, restores, verification: many at once, but no exclusive holder.
    Shared,
}

impl Purpose {
    /// The name stored in the object.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exclusive => "exclusive",
            Self::Shared => "shared",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "exclusive" => Some(Self::Exclusive),
            "shared" => Some(Self::Shared),
            _ => None,
        }
    }

    fn conflicts(self, other: Self) -> bool {
        self == Self::Exclusive || other == Self::Exclusive
    }
}

/// One lock object's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRecord {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub purpose: Purpose,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

impl LockRecord {
    /// The JSON stored at `locks/<id>.json`.
    pub fn to_json(&self) -> Vec<u8> {
        let v = json!({
            "version": 1,
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "purpose": self.purpose.as_str(),
            "created": self.created.to_rfc3339_opts(SecondsFormat::Micros, true),
            "expires": self.expires.to_rfc3339_opts(SecondsFormat::Micros, true),
        });
        v.to_string().into_bytes()
    }

    /// Parses a lock object; the error names the key and the field.
    pub fn from_json(key: &str, data: &[u8]) -> Result<Self> {
        let bad = |reason: String| StorageError::BadLock {
            key: key.to_string(),
            reason,
        };
        let v: Value = serde_json::from_slice(data).map_err(|e| bad(format!("not JSON: {e}")))?;
        let s = |f: &str| -> Result<String> {
            v.get(f)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| bad(format!("{f}: expected a string")))
        };
        let t = |f: &str| -> Result<DateTime<Utc>> {
            let text = s(f)?;
            DateTime::parse_from_rfc3339(&text)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|e| bad(format!("{f}: {text:?} is not an RFC 3339 time: {e}")))
        };
        if v.get("version").and_then(Value::as_u64) != Some(1) {
            return Err(bad("version: expected 1".into()));
        }
        let purpose_text = s("purpose")?;
        let purpose = Purpose::parse(&purpose_text)
            .ok_or_else(|| bad(format!("purpose: {purpose_text:?} is neither exclusive nor shared")))?;
        let pid = v
            .get("pid")
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| bad("pid: expected a non-negative 32-bit integer".into()))?;
        Ok(Self {
            id: s("id")?,
            host: s("host")?,
            pid,
            purpose,
            created: t("created")?,
            expires: t("expires")?,
        })
    }

    /// Whether the lock still holds at `now`.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        self.expires > now
    }

    /// For messages: who holds it and until when.
    pub fn describe(&self) -> String {
        format!(
            "{} lock {} held by {} pid {} since {}, expires {}",
            self.purpose.as_str(),
            self.id,
            self.host,
            self.pid,
            self.created.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.expires.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }
}

/// A lock object found in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEntry {
    pub key: String,
    pub record: LockRecord,
}

fn lock_key(id: &str) -> String {
    format!("{LOCKS}/{id}.json")
}

fn chrono_ttl(ttl: Duration) -> chrono::Duration {
    chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

impl Storage {
    /// Every lock object (live or stale), sorted by key. A damaged one is an error naming it.
    pub fn list_locks(&self) -> Result<Vec<LockEntry>> {
        runtime::block_on(self.list_locks_async())?
    }

    async fn list_locks_async(&self) -> Result<Vec<LockEntry>> {
        let mut out = Vec::new();
        for o in self.list_async(LOCKS).await? {
            // Probe objects of conditional_create_supported and other non-lock names.
            if !o.key.ends_with(".json") {
                continue;
            }
            let data = match self.get_bytes_async(&o.key).await {
                Ok(d) => d,
                // Released between our list and get.
                Err(StorageError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            out.push(LockEntry {
                record: LockRecord::from_json(&o.key, &data)?,
                key: o.key,
            });
        }
        Ok(out)
    }

    /// Takes a lock for `purpose` valid for `ttl` and keeps it alive from a background task
    /// until `LockHandle::release` (or the handle is dropped, which stops the refresher; the
    /// object then expires). Stale conflicting locks are deleted first; a live one fails with
    /// `Locked` naming its holder.
    pub fn acquire_lock(self: &Arc<Self>, purpose: Purpose, ttl: Duration, host: &str, pid: u32) -> Result<LockHandle> {
        if ttl < Duration::from_secs(1) {
            return Err(StorageError::Config {
                key: "ttl".into(),
                reason: "a lock must live at least one second".into(),
            });
        }
        let this = Arc::clone(self);
        let host = host.to_string();
        runtime::block_on(async move {
            let now = Utc::now();
            for e in this.list_locks_async().await? {
                if !e.record.purpose.conflicts(purpose) {
                    continue;
                }
                if e.record.live(now) {
                    return Err(StorageError::Locked {
                        holder: e.record.describe(),
                    });
                }
                // Expired: taken over. Its holder is gone or stopped refreshing long enough.
                this.delete_async(&e.key).await?;
            }
            let record = LockRecord {
                id: uuid::Uuid::new_v4().to_string(),
                host,
                pid,
                purpose,
                created: now,
                expires: now + chrono_ttl(ttl),
            };
            let key = lock_key(&record.id);
            this.put_bytes_async(&key, record.to_json()).await?;
            // The race check: anyone who locked at the same moment is now visible.
            let after = Utc::now();
            let mut rivals = this.list_locks_async().await?;
            rivals.retain(|e| e.record.id != record.id && e.record.live(after) && e.record.purpose.conflicts(purpose));
            if let Some(rival) = rivals.first() {
                this.delete_async(&key).await?;
                return Err(StorageError::Locked {
                    holder: rival.record.describe(),
                });
            }
            Ok(LockHandle::start(Arc::clone(&this), key, record, ttl))
        })?
    }
}

/// A held lock. `refresh` extends it; a background task does so every third of its time to
/// live; `release` deletes it.
#[derive(Debug)]
pub struct LockHandle {
    storage: Arc<Storage>,
    key: String,
    ttl: Duration,
    state: Arc<Mutex<HandleState>>,
    stop: Arc<Notify>,
}

#[derive(Debug)]
struct HandleState {
    record: LockRecord,
    /// The last refresh failure, if the lock could not be kept (gone or unreachable).
    lost: Option<String>,
    released: bool,
}

impl LockHandle {
    fn start(storage: Arc<Storage>, key: String, record: LockRecord, ttl: Duration) -> Self {
        let handle = Self {
            storage,
            key,
            ttl,
            state: Arc::new(Mutex::new(HandleState {
                record,
                lost: None,
                released: false,
            })),
            stop: Arc::new(Notify::new()),
        };
        handle.spawn_refresher();
        handle
    }

    fn spawn_refresher(&self) {
        let Ok(rt) = runtime::runtime() else { return };
        let storage = Arc::clone(&self.storage);
        let key = self.key.clone();
        let state = Arc::clone(&self.state);
        let stop = Arc::clone(&self.stop);
        let ttl = self.ttl;
        rt.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.notified() => return,
                    () = tokio::time::sleep(ttl / 3) => {}
                }
                if let Err(e) = refresh_once(&storage, &key, &state, ttl).await {
                    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                    st.lost = Some(e.to_string());
                }
            }
        });
    }

    /// The lock's key (`locks/<id>.json`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The current content of the lock (expiry as last written).
    pub fn record(&self) -> LockRecord {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).record.clone()
    }

    /// Why the lock may have been lost (a refresh failed), or None while it is held.
    pub fn lost(&self) -> Option<String> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).lost.clone()
    }

    /// Extends the lock to now + ttl. Fails (and marks the lock lost) if its object is gone:
    /// someone took it over after it expired, so whatever it protected is unprotected.
    pub fn refresh(&self) -> Result<()> {
        let r = runtime::block_on(refresh_once(&self.storage, &self.key, &self.state, self.ttl))?;
        if let Err(e) = &r {
            self.state.lock().unwrap_or_else(|p| p.into_inner()).lost = Some(e.to_string());
        }
        r
    }

    /// Stops the refresher and deletes the lock object.
    pub fn release(&self) -> Result<()> {
        self.stop.notify_one();
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.released {
                return Ok(());
            }
            st.released = true;
        }
        self.storage.delete(&self.key)
    }
}

impl Drop for LockHandle {
    fn drop(&mut self) {
        // No network from Drop (it may run inside the runtime); the object just expires.
        self.stop.notify_one();
    }
}

async fn refresh_once(storage: &Storage, key: &str, state: &Mutex<HandleState>, ttl: Duration) -> Result<()> {
    let mut record = {
        let st = state.lock().unwrap_or_else(|p| p.into_inner());
        if st.released {
            return Ok(());
        }
        st.record.clone()
    };
    if storage.head_async(key).await?.is_none() {
        return Err(StorageError::Locked {
            holder: format!("our lock {key} was removed (it expired and was taken over)"),
        });
    }
    record.expires = Utc::now() + chrono_ttl(ttl);
    storage.put_bytes_async(key, record.to_json()).await?;
    state.lock().unwrap_or_else(|p| p.into_inner()).record = record;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> LockRecord {
        let t = DateTime::parse_from_rfc3339("2026-11-30T12:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        LockRecord {
            id: "abc".into(),
            host: "h1".into(),
            pid: 42,
            purpose: Purpose::Shared,
            created: t,
            expires: t + chrono::Duration::seconds(30),
        }
    }

    #[test]
    fn lock_json_round_trips() {
        let r = rec();
        assert_eq!(LockRecord::from_json("locks/abc.json", &r.to_json()).unwrap(), r);
    }

    #[test]
    fn damaged_lock_names_key_and_field() {
        let mut v: Value = serde_json::from_slice(&rec().to_json()).unwrap();
        v["expires"] = json!("yesterday");
        let err = LockRecord::from_json("locks/x.json", v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("locks/x.json") && err.contains("expires"), "{err}");
        v["purpose"] = json!("both");
        let err = LockRecord::from_json("locks/x.json", v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("purpose"), "{err}");
        let err = LockRecord::from_json("locks/x.json", b"{").unwrap_err().to_string();
        assert!(err.contains("not JSON"), "{err}");
    }

    #[test]
    fn only_exclusive_conflicts() {
        assert!(!Purpose::Shared.conflicts(Purpose::Shared));
        assert!(Purpose::Shared.conflicts(Purpose::Exclusive));
        assert!(Purpose::Exclusive.conflicts(Purpose::Shared));
        assert!(Purpose::Exclusive.conflicts(Purpose::Exclusive));
    }

    #[test]
    fn liveness_is_strictly_before_expiry() {
        let r = rec();
        assert!(r.live(r.expires - chrono::Duration::microseconds(1)));
        assert!(!r.live(r.expires));
    }
}
