//! Each thread's last objects, in front of the memory tier: a hot object
//! asked for again on the same thread is found with one hash and one key
//! comparison, where the tier's two lookups (metadata, then slice) each
//! pay moka's bookkeeping (its map's epoch, a clock read, its access
//! queue), more than the rest of a hit's cache work.
//!
//! An entry holds while its cache's metadata has not changed since it was
//! read (`Cache::meta_changes`: every store, invalidation and forgetting
//! moves it), so a thread never answers with a version the cache has
//! replaced or forgotten. A slice is kept with the very metadata it was
//! read for, and only a small one: the bytes a thread pins here are at
//! most `SLOTS` x `MAX_SLICE_BYTES` (2 MiB) beyond the memory budget.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::Arc;

use super::{ObjectMeta, Slice};

/// Objects a thread keeps.
const SLOTS: usize = 32;

/// The largest slice a thread keeps.
pub const MAX_SLICE_BYTES: u64 = 64 * 1024;

thread_local! {
    static RECENT: RefCell<Recent> = RefCell::new(Recent::default());
}

struct Recent {
    hasher: foldhash::fast::RandomState,
    slots: Vec<Option<Entry>>,
}

struct Entry {
    /// The cache that read it (`Cache::id`).
    cache: u64,
    /// That cache's `meta_changes` when its metadata was read.
    changes: u64,
    key: Arc<str>,
    meta: Arc<ObjectMeta>,
    /// Its slice last served, by index.
    slice: Option<(u64, Slice)>,
}

impl Default for Recent {
    fn default() -> Self {
        Self {
            hasher: foldhash::fast::RandomState::default(),
            slots: std::iter::repeat_with(|| None).take(SLOTS).collect(),
        }
    }
}

impl Recent {
    /// The slot `key` hashes to, and its entry if that is still `key`'s.
    fn entry(&mut self, cache: u64, changes: u64, key: &str) -> (usize, Option<&mut Entry>) {
        let slot = (self.hasher.hash_one(key) % SLOTS as u64) as usize;
        let found = self.slots[slot]
            .as_mut()
            .filter(|entry| entry.cache == cache && entry.changes == changes && &*entry.key == key);
        (slot, found)
    }
}

/// The metadata of `key` this thread read from cache `cache` while its
/// metadata changes stood at `changes`, if it still holds it.
pub fn meta(cache: u64, changes: u64, key: &str) -> Option<Arc<ObjectMeta>> {
    RECENT.with_borrow_mut(|recent| recent.entry(cache, changes, key).1.map(|entry| entry.meta.clone()))
}

/// Keeps `meta` as `key`'s, read from `cache` at `changes` (loaded before
/// the tier was read, so that a change in between leaves it stale).
pub fn keep_meta(cache: u64, changes: u64, key: &Arc<str>, meta: &Arc<ObjectMeta>) {
    RECENT.with_borrow_mut(|recent| {
        let (slot, found) = recent.entry(cache, changes, key);
        if found.is_some_and(|entry| Arc::ptr_eq(&entry.meta, meta)) {
            return;
        }
        recent.slots[slot] = Some(Entry {
            cache,
            changes,
            key: key.clone(),
            meta: meta.clone(),
            slice: None,
        });
    });
}

/// Slice `index` of the version `meta` of `key`, if this thread keeps it.
pub fn slice(cache: u64, changes: u64, key: &str, meta: &ObjectMeta, index: u64) -> Option<Slice> {
    RECENT.with_borrow_mut(|recent| {
        let entry = recent.entry(cache, changes, key).1?;
        let (kept, data) = entry.slice.as_ref().filter(|_| std::ptr::eq(Arc::as_ptr(&entry.meta), meta))?;
        (*kept == index).then(|| data.clone())
    })
}

/// Keeps `data` as slice `index` of the version `meta` of `key`, when this
/// thread keeps that version and the slice is small.
pub fn keep_slice(cache: u64, changes: u64, key: &str, meta: &ObjectMeta, index: u64, data: &Slice) {
    if data.len() > MAX_SLICE_BYTES {
        return;
    }
    RECENT.with_borrow_mut(|recent| {
        if let Some(entry) = recent.entry(cache, changes, key).1
            && std::ptr::eq(Arc::as_ptr(&entry.meta), meta)
        {
            entry.slice = Some((index, data.clone()));
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn version() -> Arc<ObjectMeta> {
        Arc::new(ObjectMeta::error(404, Duration::from_secs(10), 1_000))
    }

    fn slice_of(bytes: usize) -> Slice {
        Slice::from_pieces(vec![Bytes::from(vec![7u8; bytes])])
    }

    #[test]
    fn a_kept_version_holds_for_its_cache_key_and_changes_only() {
        let (key, kept): (Arc<str>, _) = ("o\n/kept".into(), version());
        keep_meta(1, 5, &key, &kept);
        assert!(meta_is(1, 5, "o\n/kept", &kept));
        assert!(meta(1, 6, "o\n/kept").is_none(), "the cache's metadata changed since");
        assert!(meta(2, 5, "o\n/kept").is_none(), "another cache");
        assert!(meta(1, 5, "o\n/kept2").is_none(), "another key");
        // Another thread keeps its own.
        std::thread::spawn(|| assert!(meta(1, 5, "o\n/kept").is_none())).join().unwrap();
    }

    fn meta_is(cache: u64, changes: u64, key: &str, expected: &Arc<ObjectMeta>) -> bool {
        meta(cache, changes, key).is_some_and(|found| Arc::ptr_eq(&found, expected))
    }

    #[test]
    fn a_slice_is_kept_with_the_version_it_was_read_for() {
        let (key, old, new): (Arc<str>, _, _) = ("o\n/sliced".into(), version(), version());
        keep_meta(1, 9, &key, &old);
        keep_slice(1, 9, &key, &old, 0, &slice_of(4096));
        assert_eq!(slice(1, 9, &key, &old, 0).map(|s| s.len()), Some(4096));
        assert!(slice(1, 9, &key, &old, 1).is_none(), "another index");
        assert!(slice(1, 9, &key, &new, 0).is_none(), "another version");
        assert!(slice(1, 10, &key, &old, 0).is_none(), "the metadata changed since");
        // A newer version read replaces the entry, and its slices with it.
        keep_meta(1, 9, &key, &new);
        assert!(meta_is(1, 9, &key, &new));
        assert!(slice(1, 9, &key, &old, 0).is_none() && slice(1, 9, &key, &new, 0).is_none());
        // A slice for a version this thread does not keep is not kept.
        keep_slice(1, 9, &key, &old, 0, &slice_of(10));
        assert!(slice(1, 9, &key, &old, 0).is_none());
    }

    #[test]
    fn a_large_slice_is_never_kept() {
        let (key, kept): (Arc<str>, _) = ("o\n/large".into(), version());
        keep_meta(3, 1, &key, &kept);
        keep_slice(3, 1, &key, &kept, 0, &slice_of(MAX_SLICE_BYTES as usize + 1));
        assert!(slice(3, 1, &key, &kept, 0).is_none());
        keep_slice(3, 1, &key, &kept, 0, &slice_of(MAX_SLICE_BYTES as usize));
        assert!(slice(3, 1, &key, &kept, 0).is_some());
    }
}
