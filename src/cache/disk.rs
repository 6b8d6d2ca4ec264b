//! The disk tier: one file per slice under `objects/<object hash>/`, written
//! to a temporary name and renamed, checked by length and CRC32 when read.
//! Its index is rebuilt from the directory at start and kept under a byte
//! budget by moka, whose evictions delete the files.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use moka::notification::RemovalCause;
use sha2::{Digest, Sha256};

use super::CacheMetrics;
use super::SliceKey;
use super::meta::ObjectMeta;

const MAGIC: &[u8; 8] = b"KFSLICE1";
const SLICE_SUFFIX: &str = ".slice";
const META_FILE: &str = "meta.json";
const TEMP_SUFFIX: &str = ".tmp";

/// `meta.json`: the metadata and the key it belongs to (directory names are
/// hashes, so prefix invalidation reads the key from here).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredMeta {
    key: String,
    meta: ObjectMeta,
}

/// Why the disk tier could not open.
#[derive(Debug, thiserror::Error)]
#[error("disk cache {path}: {source}")]
pub struct DiskError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

pub struct DiskTier {
    root: PathBuf,
    metrics: CacheMetrics,
    /// File path -> size, weighted by size under the budget.
    index: moka::sync::Cache<PathBuf, u64>,
    /// Why the last write failed, while writes fail (cleared by the next
    /// write that succeeds): the tier is degraded, memory still serves.
    write_failure: std::sync::Mutex<Option<String>>,
    /// The object directories holding a metadata file: a cold miss learns
    /// that the disk has nothing without a trip to the blocking pool.
    with_meta: std::sync::Mutex<std::collections::HashSet<String>>,
}

fn hex_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..16].iter().map(|b| format!("{b:02x}")).collect()
}

impl DiskTier {
    /// Opens (creating) the tier at `root` with a budget of `budget` bytes,
    /// indexing the slices already there and removing leftover temporary files.
    pub fn open(root: &Path, budget: u64, metrics: CacheMetrics) -> Result<Self, DiskError> {
        let evictions = metrics.evictions.with_label_values(&["disk"]);
        let objects = root.join("objects");
        let fail = |source| DiskError {
            path: objects.clone(),
            source,
        };
        std::fs::create_dir_all(&objects).map_err(fail)?;
        let index = moka::sync::Cache::builder()
            .max_capacity(budget)
            .weigher(|_: &PathBuf, size: &u64| u32::try_from(*size).unwrap_or(u32::MAX))
            .support_invalidation_closures()
            .eviction_listener(move |path: std::sync::Arc<PathBuf>, _, cause| {
                if cause == RemovalCause::Size {
                    evictions.inc();
                    let _ = std::fs::remove_file(path.as_path());
                }
            })
            .build();
        let mut with_meta = std::collections::HashSet::new();
        for object_dir in std::fs::read_dir(&objects).map_err(fail)?.flatten() {
            if object_dir.path().join(META_FILE).exists() {
                with_meta.insert(object_dir.file_name().to_string_lossy().into_owned());
            }
            for file in std::fs::read_dir(object_dir.path()).into_iter().flatten().flatten() {
                let path = file.path();
                let name = file.file_name().to_string_lossy().into_owned();
                if name.ends_with(TEMP_SUFFIX) {
                    let _ = std::fs::remove_file(&path);
                } else if name.ends_with(SLICE_SUFFIX)
                    && let Ok(metadata) = file.metadata()
                {
                    index.insert(path, metadata.len());
                }
            }
        }
        Ok(Self {
            root: objects,
            metrics,
            index,
            write_failure: std::sync::Mutex::new(None),
            with_meta: std::sync::Mutex::new(with_meta),
        })
    }

    fn object_dir(&self, object: &str) -> PathBuf {
        self.root.join(hex_hash(object))
    }

    fn slice_path(&self, key: &SliceKey) -> PathBuf {
        self.object_dir(&key.object).join(format!(
            "{}-{}-{}{SLICE_SUFFIX}",
            &hex_hash(&key.etag)[..12],
            key.slice_size,
            key.index
        ))
    }

    fn identity(key: &SliceKey) -> String {
        format!("{}\n{}\n{}\n{}", key.object, key.etag, key.slice_size, key.index)
    }

    /// Whether the index knows the slice (the file may still turn out damaged).
    pub fn contains(&self, key: &SliceKey) -> bool {
        self.index.contains_key(&self.slice_path(key))
    }

    /// Reads a slice; a missing, truncated, foreign or corrupt file is a miss,
    /// and a damaged one is removed.
    pub fn read_slice(&self, key: &SliceKey) -> Option<Bytes> {
        let path = self.slice_path(key);
        let mut file = std::fs::File::open(&path).ok()?;
        let mut contents = Vec::new();
        let intact = file.read_to_end(&mut contents).is_ok() && Self::decode(&contents, &Self::identity(key)).is_some();
        if !intact {
            tracing::warn!(path = %path.display(), "disk cache: damaged slice file removed");
            self.count_error();
            self.index.invalidate(&path);
            let _ = std::fs::remove_file(&path);
            return None;
        }
        let identity_length = Self::identity(key).len();
        let data_start = MAGIC.len() + 4 + 8 + 4 + identity_length;
        Some(Bytes::from(contents).slice(data_start..))
    }

    /// The data of an encoded slice file, if its header, length and checksum hold.
    fn decode<'a>(contents: &'a [u8], identity: &str) -> Option<&'a [u8]> {
        let rest = contents.strip_prefix(MAGIC.as_slice())?;
        let checksum = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
        let length = u64::from_le_bytes(rest.get(4..12)?.try_into().ok()?);
        let identity_length = u32::from_le_bytes(rest.get(12..16)?.try_into().ok()?) as usize;
        let stored_identity = rest.get(16..16 + identity_length)?;
        let data = rest.get(16 + identity_length..)?;
        (stored_identity == identity.as_bytes() && data.len() as u64 == length && crc32fast::hash(data) == checksum).then_some(data)
    }

    /// Writes a slice atomically (temporary file, then rename).
    pub fn write_slice(&self, key: &SliceKey, data: &[u8]) -> std::io::Result<()> {
        let path = self.slice_path(key);
        let identity = Self::identity(key);
        let mut encoded = Vec::with_capacity(MAGIC.len() + 16 + identity.len() + data.len());
        encoded.extend_from_slice(MAGIC);
        encoded.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        encoded.extend_from_slice(&(data.len() as u64).to_le_bytes());
        encoded.extend_from_slice(&(identity.len() as u32).to_le_bytes());
        encoded.extend_from_slice(identity.as_bytes());
        encoded.extend_from_slice(data);
        self.record_write(write_atomically(&path, &encoded))?;
        self.index.insert(path, encoded.len() as u64);
        Ok(())
    }

    /// Whether the tier may hold `object`'s metadata: `false` only when it
    /// surely does not (no file was found at start or written since).
    pub fn may_hold_meta(&self, object: &str) -> bool {
        self.with_meta.lock().expect("metadata set lock").contains(&hex_hash(object))
    }

    pub fn read_meta(&self, object: &str) -> Option<ObjectMeta> {
        let text = std::fs::read(self.object_dir(object).join(META_FILE)).ok()?;
        let stored: StoredMeta = serde_json::from_slice(&text).ok()?;
        (stored.key == object).then_some(stored.meta)
    }

    pub fn write_meta(&self, object: &str, meta: &ObjectMeta) -> std::io::Result<()> {
        let stored = StoredMeta {
            key: object.to_owned(),
            meta: meta.clone(),
        };
        let text = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
        // Only slice writes decide whether the tier is degraded: under a
        // file-size limit small metadata files are written while slices fail.
        // Marked before the write: "may hold" is never wrong the safe way round.
        self.with_meta.lock().expect("metadata set lock").insert(hex_hash(object));
        write_atomically(&self.object_dir(object).join(META_FILE), &text).inspect_err(|error| {
            self.count_error();
            tracing::debug!(%error, "disk cache: writing metadata failed");
        })
    }

    /// Counts a failed slice write and marks the tier degraded until a slice
    /// write succeeds (a full disk, a file-size limit, a read-only remount).
    fn record_write(&self, outcome: std::io::Result<()>) -> std::io::Result<()> {
        let mut failure = self.write_failure.lock().expect("write failure lock");
        match (&outcome, failure.is_some()) {
            (Ok(()), true) => tracing::info!("disk cache: writes succeed again"),
            (Err(error), false) => tracing::warn!(%error, "disk cache degraded: writes fail, memory still serves"),
            (Err(error), true) => tracing::debug!(%error, "disk cache: a write failed"),
            (Ok(()), false) => {}
        }
        if outcome.is_err() {
            self.count_error();
        }
        *failure = outcome.as_ref().err().map(ToString::to_string);
        self.metrics.disk_degraded.set(i64::from(failure.is_some()));
        outcome
    }

    /// Why writes fail, while they do.
    pub fn write_failure(&self) -> Option<String> {
        self.write_failure.lock().expect("write failure lock").clone()
    }

    /// Forgets every object whose key starts with `prefix`, found through the
    /// keys their metadata files record. Returns how many were removed.
    pub fn remove_objects_with_prefix(&self, prefix: &str) -> usize {
        let mut removed = 0;
        for dir in std::fs::read_dir(&self.root).into_iter().flatten().flatten() {
            let stored = std::fs::read(dir.path().join(META_FILE))
                .ok()
                .and_then(|text| serde_json::from_slice::<StoredMeta>(&text).ok());
            if let Some(stored) = stored
                && stored.key.starts_with(prefix)
            {
                self.remove_object(&stored.key);
                removed += 1;
            }
        }
        removed
    }

    /// Forgets an object: its metadata and every slice of every version.
    pub fn remove_object(&self, object: &str) {
        let dir = self.object_dir(object);
        self.with_meta.lock().expect("metadata set lock").remove(&hex_hash(object));
        let prefix = dir.clone();
        let _ = self.index.invalidate_entries_if(move |path, _| path.starts_with(&prefix));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Counts a disk tier failure (`keyfront_disk_errors_total`).
    pub fn count_error(&self) {
        self.metrics.disk_errors.inc();
    }

    /// Writes and removes a small file, as a readiness check.
    pub fn probe(&self) -> std::io::Result<()> {
        let path = self.root.join(format!("readiness-probe-{}{TEMP_SUFFIX}", std::process::id()));
        write_atomically(&path, b"ok")?;
        std::fs::remove_file(&path)
    }

    /// Bytes and files the tier holds.
    pub fn usage(&self) -> (u64, u64) {
        self.index.run_pending_tasks();
        (self.index.weighted_size(), self.index.entry_count())
    }
}

fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache files live in a directory");
    std::fs::create_dir_all(dir)?;
    let temp = path.with_extension(format!("{}{TEMP_SUFFIX}", std::process::id()));
    let mut file = std::fs::File::create(&temp)?;
    let written = file.write_all(contents).and_then(|()| file.sync_data());
    if let Err(error) = written.and_then(|()| std::fs::rename(&temp, path)) {
        let _ = std::fs::remove_file(&temp);
        return Err(error);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the tier says it may hold agrees with its files: after a write,
    /// after a restart, after a removal.
    #[test]
    fn the_tier_knows_which_objects_have_metadata_without_reading_files() {
        let root = tempfile::tempdir().unwrap();
        let meta = ObjectMeta::error(200, std::time::Duration::from_secs(60), 0);
        let tier = DiskTier::open(root.path(), 1 << 20, CacheMetrics::default()).unwrap();
        assert!(!tier.may_hold_meta("origin\n/a"));
        tier.write_meta("origin\n/a", &meta).unwrap();
        assert!(tier.may_hold_meta("origin\n/a") && !tier.may_hold_meta("origin\n/b"));
        drop(tier);
        let reopened = DiskTier::open(root.path(), 1 << 20, CacheMetrics::default()).unwrap();
        assert!(reopened.may_hold_meta("origin\n/a"), "found again at start");
        assert_eq!(reopened.read_meta("origin\n/a"), Some(meta));
        reopened.remove_object("origin\n/a");
        assert!(!reopened.may_hold_meta("origin\n/a"));
        assert_eq!(reopened.read_meta("origin\n/a"), None);
    }
}
