//! The disk tier: one file per slice under `objects/<object hash>/`, written
//! to a temporary name and renamed, checked by length when opened and by a
//! CRC32 per piece when each piece is read (a viewer reads a slice piece by
//! piece, never whole). Its index is rebuilt from the directory at start and
//! kept under a byte budget by moka, whose evictions delete the files.
//!
//! A slice file: `KFSLICE2`, the data's length (u64), the piece size (u32),
//! the identity's length (u32), the identity (object, ETag, slice size and
//! index), a CRC32 per piece (u32 each), the data. Integers little-endian.

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use moka::notification::RemovalCause;
use sha2::{Digest, Sha256};

use super::CacheMetrics;
use super::SliceKey;
use super::meta::ObjectMeta;
use super::slice::{PIECE_BYTES, Slice};

const MAGIC: &[u8; 8] = b"KFSLICE2";
/// Slice files of the format before pieces: read as misses and removed.
const OLD_MAGIC: &[u8; 8] = b"KFSLICE1";
const HEADER_BYTES: usize = MAGIC.len() + 8 + 4 + 4;
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
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
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

    /// Opens a slice file, checking its header and length (each piece is
    /// checked when read). A missing file is `None`; a truncated, foreign or
    /// damaged one is removed and counted, and is `None` too.
    pub fn open_slice(&self, key: &SliceKey) -> Option<SliceFile> {
        let path = self.slice_path(key);
        let mut file = std::fs::File::open(&path).ok()?;
        let mut header = [0u8; HEADER_BYTES];
        let opened = file.read_exact(&mut header).ok().and_then(|()| {
            let identity = Self::identity(key);
            let file_length = file.metadata().ok()?.len();
            SliceFile::parse(file, &header, &identity, file_length)
        });
        if opened.is_none() {
            if header.starts_with(OLD_MAGIC) {
                tracing::debug!(path = %path.display(), "disk cache: a slice file of an earlier format removed");
                let _ = self.remove_file(&path);
            } else {
                self.discard(key);
            }
        }
        opened
    }

    /// Piece `index` of `file` (the slice `key`) read into `buffer`; a piece
    /// that fails its check removes the file (`discard`) and is `None`.
    pub fn read_piece(&self, key: &SliceKey, file: &SliceFile, index: u64, buffer: Vec<u8>) -> Option<Bytes> {
        let piece = file.read_piece(index, buffer);
        if piece.is_none() {
            self.discard(key);
        }
        piece
    }

    /// Removes a slice file found damaged (a piece that fails its check),
    /// counting it once however many readers found it: the next request for
    /// it is a miss.
    pub fn discard(&self, key: &SliceKey) {
        let path = self.slice_path(key);
        if self
            .remove_file(&path)
            .is_err_and(|error| error.kind() == std::io::ErrorKind::NotFound)
        {
            return;
        }
        tracing::warn!(path = %path.display(), "disk cache: damaged slice file removed");
        self.count_error();
    }

    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.index.invalidate(path);
        std::fs::remove_file(path)
    }

    /// Writes a slice atomically (temporary file, then rename).
    pub fn write_slice(&self, key: &SliceKey, slice: &Slice) -> std::io::Result<()> {
        let path = self.slice_path(key);
        let identity = Self::identity(key);
        let mut head = Vec::with_capacity(HEADER_BYTES + identity.len() + 4 * slice.pieces().len());
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&slice.len().to_le_bytes());
        head.extend_from_slice(&(PIECE_BYTES as u32).to_le_bytes());
        head.extend_from_slice(&(identity.len() as u32).to_le_bytes());
        head.extend_from_slice(identity.as_bytes());
        for piece in slice.pieces() {
            head.extend_from_slice(&crc32fast::hash(piece).to_le_bytes());
        }
        let parts: Vec<&[u8]> = std::iter::once(&head[..])
            .chain(slice.pieces().iter().map(|piece| &piece[..]))
            .collect();
        self.record_write(write_atomically(&path, &parts))?;
        self.index.insert(path, head.len() as u64 + slice.len());
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
        write_atomically(&self.object_dir(object).join(META_FILE), &[&text]).inspect_err(|error| {
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
        write_atomically(&path, &[b"ok"])?;
        std::fs::remove_file(&path)
    }

    /// The tier's byte budget.
    pub fn budget(&self) -> u64 {
        self.index.policy().max_capacity().unwrap_or(0)
    }

    /// Bytes and files the tier holds.
    pub fn usage(&self) -> (u64, u64) {
        self.index.run_pending_tasks();
        (self.index.weighted_size(), self.index.entry_count())
    }
}

/// An open slice file whose header and length held: its pieces are read
/// (with `pread`, from the file as it was opened: a rename or an eviction
/// meanwhile changes nothing) and checked one at a time.
pub struct SliceFile {
    file: std::fs::File,
    data_start: u64,
    length: u64,
    checksums: Vec<u32>,
}

impl SliceFile {
    /// The file whose first `HEADER_BYTES` are `header`, if it is a slice
    /// file of this format for `identity` and exactly as long as it says.
    fn parse(file: std::fs::File, header: &[u8; HEADER_BYTES], identity: &str, file_length: u64) -> Option<Self> {
        let rest = header.strip_prefix(MAGIC.as_slice())?;
        let length = u64::from_le_bytes(rest[..8].try_into().ok()?);
        let piece_bytes = u32::from_le_bytes(rest[8..12].try_into().ok()?);
        let identity_length = u32::from_le_bytes(rest[12..16].try_into().ok()?) as u64;
        // Another piece size is another keyfront's file; the identity's length
        // is checked before anything is allocated for it.
        if piece_bytes as usize != PIECE_BYTES || identity_length != identity.len() as u64 {
            return None;
        }
        let pieces = length.div_ceil(PIECE_BYTES as u64);
        let data_start = HEADER_BYTES as u64 + identity_length + 4 * pieces;
        if data_start.checked_add(length)? != file_length {
            return None;
        }
        let mut table = vec![0u8; (data_start - HEADER_BYTES as u64) as usize];
        file.read_exact_at(&mut table, HEADER_BYTES as u64).ok()?;
        let (stored_identity, checksums) = table.split_at(identity.len());
        if stored_identity != identity.as_bytes() {
            return None;
        }
        let checksums = checksums
            .chunks_exact(4)
            .map(|crc| u32::from_le_bytes(crc.try_into().expect("four bytes")))
            .collect();
        Some(Self {
            file,
            data_start,
            length,
            checksums,
        })
    }

    pub fn piece_count(&self) -> u64 {
        self.checksums.len() as u64
    }

    /// The length of piece `index` (0 past the end).
    pub fn piece_length(&self, index: u64) -> usize {
        self.length.saturating_sub(index * PIECE_BYTES as u64).min(PIECE_BYTES as u64) as usize
    }

    /// Piece `index` (the bytes from `index * PIECE_BYTES`), read into
    /// `buffer`, if it reads whole and matches its checksum.
    pub fn read_piece(&self, index: u64, mut buffer: Vec<u8>) -> Option<Bytes> {
        let checksum = *self.checksums.get(index as usize)?;
        buffer.resize(self.piece_length(index), 0);
        self.file
            .read_exact_at(&mut buffer, self.data_start + index * PIECE_BYTES as u64)
            .ok()?;
        (crc32fast::hash(&buffer) == checksum).then(|| Bytes::from(buffer))
    }
}

fn write_atomically(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache files live in a directory");
    std::fs::create_dir_all(dir)?;
    let temp = path.with_extension(format!("{}{TEMP_SUFFIX}", std::process::id()));
    let mut file = std::fs::File::create(&temp)?;
    let written = parts
        .iter()
        .try_for_each(|part| file.write_all(part))
        .and_then(|()| file.sync_data());
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

    fn key(index: u64) -> SliceKey {
        SliceKey {
            object: "origin\n/film".into(),
            etag: "\"v1\"".into(),
            slice_size: 1 << 20,
            index,
        }
    }

    /// Each piece is checked on its own: a damaged piece is refused while
    /// the others still read; a truncated file, another slice's file and a
    /// file of the earlier format never open (only damage is counted).
    #[test]
    fn pieces_are_checked_one_by_one_and_foreign_files_never_open() {
        let root = tempfile::tempdir().unwrap();
        let metrics = CacheMetrics::default();
        let tier = DiskTier::open(root.path(), 64 << 20, metrics.clone()).unwrap();
        let data: Vec<u8> = (0..PIECE_BYTES * 3 + 100).map(|i| (i % 253) as u8).collect();
        let slice = Slice::from_chunks(&[Bytes::from(data.clone())]);
        tier.write_slice(&key(0), &slice).unwrap();
        let file = tier.open_slice(&key(0)).unwrap();
        let pieces: Vec<Bytes> = (0..file.piece_count())
            .map(|index| file.read_piece(index, Vec::new()).unwrap())
            .collect();
        assert_eq!(Slice::from_pieces(pieces), slice);

        let path = tier.slice_path(&key(0));
        let mut bytes = std::fs::read(&path).unwrap();
        let piece_two = bytes.len() - 100 - PIECE_BYTES + 7;
        bytes[piece_two] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let file = tier.open_slice(&key(0)).expect("the header still holds");
        assert_eq!(file.piece_count(), 4);
        assert!(file.read_piece(2, Vec::new()).is_none(), "the damaged piece is refused");
        assert!(file.read_piece(0, Vec::new()).unwrap()[..] == data[..PIECE_BYTES]);
        assert!(file.read_piece(3, Vec::new()).unwrap()[..] == data[3 * PIECE_BYTES..]);
        assert!(file.read_piece(4, Vec::new()).is_none());
        tier.discard(&key(0));
        tier.discard(&key(0));
        assert!(!path.exists(), "a damaged file is removed");
        assert_eq!(metrics.disk_errors.get(), 1, "and counted once");

        tier.write_slice(&key(1), &slice).unwrap();
        std::fs::copy(tier.slice_path(&key(1)), tier.slice_path(&key(2))).unwrap();
        assert!(tier.open_slice(&key(2)).is_none(), "another slice's file");
        let bytes = std::fs::read(tier.slice_path(&key(1))).unwrap();
        std::fs::write(tier.slice_path(&key(1)), &bytes[..bytes.len() - 1]).unwrap();
        assert!(tier.open_slice(&key(1)).is_none(), "a truncated file");
        assert_eq!(metrics.disk_errors.get(), 3);

        let mut old = bytes.clone();
        old[..8].copy_from_slice(OLD_MAGIC);
        std::fs::write(tier.slice_path(&key(3)), &old).unwrap();
        assert!(tier.open_slice(&key(3)).is_none(), "a file of the earlier format");
        assert!(!tier.slice_path(&key(3)).exists(), "removed");
        assert_eq!(metrics.disk_errors.get(), 3, "an earlier format is no damage");
    }
}
