//! The edge cache: objects cut into aligned slices, kept in memory (moka,
//! weighted by bytes) and on disk, filled from the origin one slice at a
//! time with one origin request per slice however many viewers wait for it.

mod bans;
mod disk;
mod fill;
mod freshness;
mod meta;
mod reader;
mod recent;
mod reserve;
mod slice;
mod stats;
mod upstream;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

pub use bans::unix_millis;
pub use disk::{DiskError, DiskTier, SliceFile};
pub use fill::{Fill, FillError, FillReader};
pub use freshness::{Freshness, freshness};
pub use meta::{ErrorBody, ObjectMeta, unix_now};
pub use reader::SliceReader;
pub use slice::{PIECE_BYTES, Slice};
pub use stats::CacheMetrics;
pub use upstream::ParentTier;

use self::reserve::{FillReserve, ReservedShare};
use crate::clock::Clock;
use crate::config::{CacheSettings, Ttl};
use crate::origin::{Failover, FetchError, Origin, OriginClient, OriginResponse};
use crate::range::{ByteRange, parse_content_range};

/// One slice of one version of one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SliceKey {
    /// The object: origin name and origin path.
    pub object: Arc<str>,
    /// The version's ETag.
    pub etag: Arc<str>,
    /// The size the version was cut in (bytes): bytes cut at another size
    /// are another slice, even with the same index.
    pub slice_size: u64,
    pub index: u64,
}

/// An object as a request names it, with how its behavior caches it.
#[derive(Clone, Debug)]
pub struct ObjectRef {
    /// Origin name and origin path, with the query its cache policy keys
    /// (never a signature) and the headers and cookies it keys (its
    /// variant): the cache key.
    pub key: Arc<str>,
    /// The routing table the object is served from: a distribution's id,
    /// or `-` for the config file's behaviors. Another node is asked for the
    /// object in that table, never by the viewer's Host.
    pub table: Arc<str>,
    /// The canonical request path and the key's query: what a parent
    /// keyfront is asked for (it maps it to the same origin path and key
    /// query through the same behaviors).
    pub path: String,
    /// Asked by a node of this site as the owner of its slices: never asks
    /// its site peers in turn.
    pub site_hop: bool,
    /// The origin's name in the config, for metrics.
    pub origin_name: Arc<str>,
    pub origin: Arc<Origin>,
    /// The origin path and the query sent (the key's, and what an origin
    /// request policy adds): what the origin is asked for.
    pub origin_path: String,
    pub ttl: Ttl,
    /// Slice size for versions fetched from now on (bytes).
    pub slice_size: u64,
    /// The viewer the request serves, whose part of the fill reserve its
    /// fills take (`FillReserve`); `None` for another node's request.
    pub viewer: Option<IpAddr>,
    /// An origin group's second origin, asked for `path` mapped there.
    pub failover: Option<Arc<Failover>>,
    /// What the behavior's policies send upstream beyond the key, if anything.
    pub sent: Option<Arc<Sent>>,
    /// How long an error status of the origin is remembered, by status
    /// (`Behavior::error_caching`); any other: the cache's `error_ttl`.
    pub error_caching: Arc<[(u16, Duration)]>,
}

/// What a behavior's policies send upstream beyond the cache key.
#[derive(Debug)]
pub struct Sent {
    /// The canonical path and the query sent: what a parent is asked for
    /// (it keys it, and sends it on, by the same behavior).
    pub target: String,
    /// The viewer's headers sent, a `Cookie` of the cookies sent among them.
    pub headers: Vec<(String, String)>,
}

impl ObjectRef {
    /// The cache key of an object: its origin's name, its origin path (and
    /// keyed query), and its variant if any (see [`variant_prefix`]).
    pub fn cache_key(origin_name: &str, origin_path: &str, variant: &str) -> Arc<str> {
        thread_local! {
            /// Each thread's buffer the key is assembled in: one allocation
            /// per key (the `Arc`'s), where a `String` turned into an `Arc`
            /// would be two.
            static KEY_TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        KEY_TEXT.with_borrow_mut(|key| {
            key.clear();
            key.push_str(origin_name);
            key.push('\n');
            key.push_str(origin_path);
            if !variant.is_empty() {
                key.push('\n');
                key.push_str(variant);
            }
            Arc::from(key.as_str())
        })
    }
}

/// What every variant of `key` (a key without one) starts with: an
/// invalidation of a path removes the object under every header and
/// cookie value, as CloudFront's does.
pub fn variant_prefix(key: &str) -> String {
    [key, "\n"].concat()
}

/// Where a slice was found.
pub enum SliceSource {
    /// In memory (or held briefly after a fill or a borrow).
    Memory(Slice),
    /// On disk: its header checked, its pieces checked as they are read.
    Disk(Arc<SliceFile>),
    /// Arriving from upstream through a fill shared with other requests.
    Filling(FillReader),
}

impl SliceSource {
    /// Whether the bytes are already cached (a hit, for `X-Cache`).
    pub fn is_cached(&self) -> bool {
        !matches!(self, Self::Filling(_))
    }
}

/// The outcome of asking the origin whether a stale version is still current.
pub enum Revalidation {
    /// 304: the same version, fresh again; its slices stay.
    Unchanged(Arc<ObjectMeta>),
    /// Another version (or an error status) replaces it.
    Replaced(Arc<ObjectMeta>),
}

pub struct Cache {
    slices: moka::sync::Cache<SliceKey, Slice, KeyHasher>,
    metas: moka::sync::Cache<Arc<str>, Arc<ObjectMeta>, KeyHasher>,
    disk: Option<Arc<DiskTier>>,
    /// Slices filled but not yet on disk, readable while their write runs:
    /// the memory tier may decline a new slice (moka admits by popularity),
    /// and a viewer must not then fetch it from the origin a second time.
    unwritten: Arc<Mutex<HashMap<SliceKey, Slice>>>,
    in_flight: Mutex<HashMap<FillSlot, Arc<Fill>>>,
    /// Objects whose stale version is being revalidated in the background:
    /// one revalidation per object at a time, whatever the request rate.
    revalidating: Arc<Mutex<HashSet<Arc<str>>>>,
    pub client: OriginClient,
    error_ttl: Duration,
    /// Its figures, registered for export by `metrics`.
    pub metrics: CacheMetrics,
    /// The other nodes of the fleet (site peers, parents), asked before the
    /// origin when there are any.
    fleet: Option<Arc<dyn ParentTier>>,
    /// Slices another node of this site keeps, held here only for
    /// `BORROWED_SECONDS` while they are hot.
    borrowed: moka::sync::Cache<SliceKey, Slice, KeyHasher>,
    /// Slices being read whole from disk into memory (at most
    /// `MAX_PROMOTIONS` at once, whatever the number of viewers).
    promoting: Arc<Mutex<HashSet<SliceKey>>>,
    /// The bytes fills may hold before their slices are stored, in KiB
    /// (`FillReserve`).
    fill_reserve: FillReserve,
    /// Disk reads under way on the blocking pool, at most `DISK_READS_AT_ONCE`.
    disk_reads: tokio::sync::Semaphore,
    /// Recent invalidations, told to parents (see `bans`).
    bans: bans::Bans,
    /// What freshness and ages are measured by.
    pub clock: Clock,
    /// `cache.memory`: what the tiers' parts above add up to.
    memory_budget: u64,
    /// This cache's name in each thread's `recent` objects.
    id: u64,
    /// Moved after every change of the metadata (a version stored, an
    /// object forgotten or invalidated): what a thread keeps in `recent`
    /// holds only while it stands where it was when the thread read it.
    meta_changes: AtomicU64,
}

/// Names each cache, for `recent`.
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// How long a slice borrowed from its site's owner is kept: a hot object's
/// slices serve this node's viewers without a hop each, and the site still
/// stores each slice once.
const BORROWED_SECONDS: u64 = 10;

/// How many fleet nodes may break off one slice before its fill gives up
/// (each resume skips the nodes that broke off; the origin comes last).
const MAX_RESUMES: usize = 3;

/// Disk slices read into memory at once: what a promotion holds outside the
/// memory budget is this many slices, not one per viewer.
const MAX_PROMOTIONS: usize = 2;

/// Slice files opened or pieces read at once. Each takes a thread of tokio's
/// blocking pool, which grows to 512 threads on demand: 200 streaming viewers
/// had 327 threads and ~100 MiB of their stacks and allocator heaps
/// resident. Reads from the page cache take tens of microseconds, so 16
/// keep 2 cores streaming (bench/RESULTS.md, "Memory").
const DISK_READS_AT_ONCE: usize = 16;

/// Hashes cache keys on every hit: foldhash, several times faster than the
/// default SipHash over object paths, and seeded per process.
type KeyHasher = foldhash::quality::RandomState;

/// A slice being filled, named by object, slice size and index (any
/// version: a fill started without metadata learns the version from the
/// origin).
#[derive(Clone, PartialEq, Eq, Hash)]
struct FillSlot {
    object: Arc<str>,
    slice_size: u64,
    index: u64,
}

fn slice_key(object: &ObjectRef, meta: &ObjectMeta, index: u64) -> SliceKey {
    SliceKey {
        object: object.key.clone(),
        etag: meta.etag.clone(),
        slice_size: meta.slice_size,
        index,
    }
}

/// Ends a fill however its task ends: a task that panics or is dropped still
/// finishes its fill with an error (its readers never wait forever) and
/// releases its slot (the next request starts a new fill).
struct FillTask {
    cache: Arc<Cache>,
    slot: FillSlot,
    fill: Arc<Fill>,
}

/// Marks background work on `key` (a revalidation, a promotion) as running
/// until dropped, also when its task panics.
struct Running<K: Eq + std::hash::Hash> {
    set: Arc<Mutex<HashSet<K>>>,
    key: K,
}

impl<K: Eq + std::hash::Hash> Drop for Running<K> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.key);
    }
}

impl Drop for FillTask {
    fn drop(&mut self) {
        self.fill
            .finish_if_running(FillError::Origin("the fill stopped before its slice was complete".into()));
        let mut in_flight = self.cache.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if in_flight.get(&self.slot).is_some_and(|current| Arc::ptr_eq(current, &self.fill)) {
            in_flight.remove(&self.slot);
        }
    }
}

/// Origin statuses remembered for the error TTL, as CloudFront caches them.
const CACHED_ERRORS: [u16; 7] = [404, 414, 500, 501, 502, 503, 504];

fn fill_error(error: FetchError) -> FillError {
    match error {
        FetchError::Timeout(text) => FillError::Timeout(text),
        FetchError::Failed(text) => FillError::Origin(text),
    }
}

impl Cache {
    pub fn new(settings: &CacheSettings, fleet: Option<Arc<dyn ParentTier>>, clock: Clock) -> Result<Self, DiskError> {
        let metrics = CacheMetrics::default();
        let disk = match &settings.disk {
            Some((path, budget)) => Some(Arc::new(DiskTier::open(path, *budget, metrics.clone())?)),
            None => None,
        };
        let memory_evictions = metrics.evictions.with_label_values(&["memory"]);
        // Metadata (remembered 404s included) takes an eighth of the memory
        // budget: a viewer asking for endless missing keys evicts old
        // metadata, never grows the process. Slices borrowed from a site
        // peer take a sixteenth, slices arriving an eighth; the rest is the
        // tier's own slices.
        let meta_budget = settings.memory_bytes / 8;
        let borrowed_budget = settings.memory_bytes / 16;
        let fill_budget = settings.memory_bytes / 8;
        Ok(Self {
            slices: moka::sync::Cache::builder()
                .max_capacity(settings.memory_bytes - meta_budget - borrowed_budget - fill_budget)
                .weigher(|_: &SliceKey, data: &Slice| u32::try_from(data.len()).unwrap_or(u32::MAX))
                .support_invalidation_closures()
                .eviction_listener(move |_, _, cause| {
                    if cause == moka::notification::RemovalCause::Size {
                        memory_evictions.inc();
                    }
                })
                .build_with_hasher(KeyHasher::default()),
            metas: moka::sync::Cache::builder()
                .max_capacity(meta_budget)
                .weigher(|key: &Arc<str>, meta: &Arc<ObjectMeta>| meta.weight().saturating_add(key.len() as u32))
                .support_invalidation_closures()
                .build_with_hasher(KeyHasher::default()),
            disk,
            unwritten: Arc::default(),
            in_flight: Mutex::new(HashMap::new()),
            revalidating: Arc::default(),
            client: OriginClient::default(),
            error_ttl: settings.error_ttl,
            metrics,
            fleet,
            borrowed: moka::sync::Cache::builder()
                .max_capacity(borrowed_budget)
                .weigher(|_: &SliceKey, data: &Slice| u32::try_from(data.len()).unwrap_or(u32::MAX))
                .time_to_live(Duration::from_secs(BORROWED_SECONDS))
                .build_with_hasher(KeyHasher::default()),
            bans: bans::Bans::default(),
            clock,
            promoting: Arc::default(),
            fill_reserve: FillReserve::new(fill_budget),
            memory_budget: settings.memory_bytes,
            disk_reads: tokio::sync::Semaphore::new(DISK_READS_AT_ONCE),
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            meta_changes: AtomicU64::new(0),
        })
    }

    /// Where `meta_changes` stands, read before the tiers are.
    fn meta_changes(&self) -> u64 {
        self.meta_changes.load(Ordering::Acquire)
    }

    /// Marks every version a thread keeps in `recent` as possibly changed;
    /// called after the change.
    fn metas_changed(&self) {
        self.meta_changes.fetch_add(1, Ordering::AcqRel);
    }

    /// The cached metadata of `object`: memory, then disk.
    pub async fn meta(&self, object: &ObjectRef) -> Option<Arc<ObjectMeta>> {
        let changes = self.meta_changes();
        if let Some(meta) = recent::meta(self.id, changes, &object.key) {
            return Some(meta);
        }
        if let Some(meta) = self.metas.get(&object.key) {
            recent::keep_meta(self.id, changes, &object.key, &meta);
            return Some(meta);
        }
        let disk = self.disk.clone().filter(|disk| disk.may_hold_meta(&object.key))?;
        let key = object.key.clone();
        let meta = Arc::new(self.on_disk(move || disk.read_meta(&key)).await?);
        self.metas.insert(object.key.clone(), meta.clone());
        Some(meta)
    }

    /// Remembers `meta` as the current version of `object`, in both tiers
    /// (a remembered origin error in memory only: it lives seconds, and a
    /// file per missing key would let viewers fill the disk).
    pub fn store_meta(&self, object: &ObjectRef, meta: Arc<ObjectMeta>) {
        self.metas.insert(object.key.clone(), meta.clone());
        self.metas_changed();
        if meta.status != 200 {
            return;
        }
        if let Some(disk) = self.disk.clone() {
            let key = object.key.clone();
            // A failure is counted, logged and reported by the tier itself.
            tokio::task::spawn_blocking(move || disk.write_meta(&key, &meta));
        }
    }

    /// Where slice `index` of the version `meta` describes is: memory, disk,
    /// or a fill shared with other requests (started if none runs).
    pub async fn slice(self: &Arc<Self>, object: &ObjectRef, meta: &Arc<ObjectMeta>, index: u64) -> SliceSource {
        if let Some(found) = self.cached_slice(object, meta, index).await {
            return found;
        }
        let key = slice_key(object, meta, index);
        {
            let mut in_flight = self.in_flight.lock().expect("in-flight lock");
            // A fill that ended while the disk was searched has stored its
            // slice (it does so before leaving `in_flight`), in memory or, once
            // written, on disk: look again before fetching.
            if let Some(data) = self.resident_slice(&key) {
                return SliceSource::Memory(data);
            }
            if !self.disk.as_ref().is_some_and(|disk| disk.contains(&key)) {
                return SliceSource::Filling(self.join_fill(&mut in_flight, object, Some(meta.clone()), index, None));
            }
        }
        match self.cached_slice(object, meta, index).await {
            Some(found) => found,
            None => SliceSource::Filling(self.start_fill(object, Some(meta.clone()), index)),
        }
    }

    /// The slice if memory holds it or its disk write is still running.
    fn resident_slice(&self, key: &SliceKey) -> Option<Slice> {
        self.slices
            .get(key)
            .or_else(|| self.unwritten.lock().expect("unwritten lock").get(key).cloned())
            .or_else(|| self.borrowed.get(key))
    }

    /// Slice `index` if memory or disk holds it. A disk slice of one piece
    /// is read and kept in memory at once; a larger one is read by pieces
    /// and promoted in the background.
    pub async fn cached_slice(self: &Arc<Self>, object: &ObjectRef, meta: &ObjectMeta, index: u64) -> Option<SliceSource> {
        let changes = self.meta_changes();
        if let Some(data) = recent::slice(self.id, changes, &object.key, meta, index) {
            return Some(SliceSource::Memory(data));
        }
        let key = slice_key(object, meta, index);
        if let Some(data) = self.resident_slice(&key) {
            recent::keep_slice(self.id, changes, &object.key, meta, index, &data);
            return Some(SliceSource::Memory(data));
        }
        // The index says what the disk holds without a trip to the blocking
        // pool: a cold seek no longer waits for two thread wake-ups to learn
        // that the slice is nowhere.
        let disk = self.disk.clone().filter(|disk| disk.contains(&key))?;
        let disk_key = key.clone();
        let length = meta.slice_length(index);
        let one_piece = length <= PIECE_BYTES as u64;
        // A slice of one piece is read in the same trip to the blocking pool.
        let buffer = Vec::with_capacity(if one_piece { length as usize } else { 0 });
        // The file, and a one-piece slice's only piece.
        let (file, piece) = self
            .on_disk(move || {
                let file = disk.open_slice(&disk_key)?;
                let piece = if one_piece {
                    Some(disk.read_piece(&disk_key, &file, 0, buffer)?)
                } else {
                    None
                };
                Some((file, piece))
            })
            .await?;
        if let Some(piece) = piece {
            let data = Slice::from_pieces(vec![piece]);
            self.slices.insert(key, data.clone());
            return Some(SliceSource::Memory(data));
        }
        let file = Arc::new(file);
        self.promote(key, file.clone(), length);
        Some(SliceSource::Disk(file))
    }

    /// Piece `index` of an open disk slice, read on the blocking pool into a
    /// buffer allocated here, on the worker that will free it (mimalloc
    /// keeps memory freed by another thread than its allocator's resident
    /// for longer: 40 MiB more in `tests/memory.rs`). A piece that fails its
    /// check removes the file and is `None`.
    async fn read_piece(&self, file: &Arc<SliceFile>, key: &SliceKey, index: u64) -> Option<Bytes> {
        let buffer = Vec::with_capacity(file.piece_length(index));
        let (file, disk, key) = (file.clone(), self.disk.clone()?, key.clone());
        self.on_disk(move || disk.read_piece(&key, &file, index, buffer)).await
    }

    /// Runs a disk read on the blocking pool, waiting for one of the
    /// `DISK_READS_AT_ONCE` turns.
    async fn on_disk<T: Send + 'static>(&self, read: impl FnOnce() -> Option<T> + Send + 'static) -> Option<T> {
        let _turn = self.disk_reads.acquire().await.ok()?;
        tokio::task::spawn_blocking(read).await.ok().flatten()
    }

    /// Every piece of an open disk slice, or `None` if one fails its check.
    async fn read_whole(&self, file: &Arc<SliceFile>, key: &SliceKey) -> Option<Slice> {
        let mut pieces = Vec::with_capacity(file.piece_count() as usize);
        for index in 0..file.piece_count() {
            pieces.push(self.read_piece(file, key, index).await?);
        }
        Some(Slice::from_pieces(pieces))
    }

    /// Reads a disk slice whole into memory, off the request path, unless
    /// `MAX_PROMOTIONS` already run, this one does, or memory could never
    /// hold it.
    fn promote(self: &Arc<Self>, key: SliceKey, file: Arc<SliceFile>, length: u64) {
        if self.slices.policy().max_capacity().is_some_and(|budget| length > budget) {
            return;
        }
        {
            let mut promoting = self.promoting.lock().expect("promoting lock");
            if promoting.len() >= MAX_PROMOTIONS || !promoting.insert(key.clone()) {
                return;
            }
        }
        let running = Running {
            set: self.promoting.clone(),
            key,
        };
        let cache = self.clone();
        tokio::spawn(async move {
            if let Some(data) = cache.read_whole(&file, &running.key).await {
                cache.slices.insert(running.key.clone(), data);
            }
        });
    }

    /// Starts fetching slice `index` unless it is cached or already arriving.
    pub fn prefetch(self: &Arc<Self>, object: &ObjectRef, meta: &Arc<ObjectMeta>, index: u64) {
        if index >= meta.slice_count() {
            return;
        }
        let key = slice_key(object, meta, index);
        // A resident slice (a hit's usual case) needs no lock: nothing to
        // fetch. What is not resident is checked again under the lock a fill
        // leaves `in_flight` by, after storing.
        if self.slices.contains_key(&key) || self.borrowed.contains_key(&key) {
            return;
        }
        let mut in_flight = self.in_flight.lock().expect("in-flight lock");
        let on_disk = self.disk.as_ref().is_some_and(|disk| disk.contains(&key));
        let unwritten = self.unwritten.lock().expect("unwritten lock").contains_key(&key);
        if !on_disk && !unwritten && !self.slices.contains_key(&key) && !self.borrowed.contains_key(&key) {
            let Some(reserved) = self.fill_reserve.try_take(object.viewer, meta.slice_length(index)) else {
                return;
            };
            drop(self.join_fill(&mut in_flight, object, Some(meta.clone()), index, Some(reserved)));
        }
    }

    /// Joins the fill of slice `index`, starting it if none runs. With
    /// `expected`, the origin must still hold that version; without it, the
    /// fill's response also brings the object's metadata.
    pub fn start_fill(self: &Arc<Self>, object: &ObjectRef, expected: Option<Arc<ObjectMeta>>, index: u64) -> FillReader {
        let mut in_flight = self.in_flight.lock().expect("in-flight lock");
        self.join_fill(&mut in_flight, object, expected, index, None)
    }

    /// `reserved`: the fill's share of the fill reserve, if taken already.
    fn join_fill(
        self: &Arc<Self>,
        in_flight: &mut HashMap<FillSlot, Arc<Fill>>,
        object: &ObjectRef,
        expected: Option<Arc<ObjectMeta>>,
        index: u64,
        reserved: Option<ReservedShare>,
    ) -> FillReader {
        let slice_size = expected.as_ref().map_or(object.slice_size, |meta| meta.slice_size);
        let slot = FillSlot {
            object: object.key.clone(),
            slice_size,
            index,
        };
        if let Some(fill) = in_flight.get(&slot) {
            self.metrics.coalesced_waits.inc();
            return FillReader::new(fill.clone());
        }
        let fill = Arc::new(Fill::new(self.metrics.filling_bytes.clone()));
        in_flight.insert(slot.clone(), fill.clone());
        let task = FillTask {
            cache: self.clone(),
            slot,
            fill: fill.clone(),
        };
        let object = object.clone();
        // A task of its own: the slice is finished and stored even if every
        // viewer that wanted it has gone.
        tokio::spawn(async move {
            let length = expected.as_ref().map_or(slice_size, |meta| meta.slice_length(index));
            let reserved = match reserved {
                Some(reserved) => Ok(reserved),
                None => {
                    let patience = object.origin.first_byte_timeout;
                    let reserve = &task.cache.fill_reserve;
                    reserve.take(object.viewer, length, patience).await.ok_or_else(|| {
                        FillError::Timeout(format!(
                            "{} MiB of slices (or this viewer's half of them) were arriving from upstream for {patience:?}",
                            reserve.mib()
                        ))
                    })
                }
            };
            match reserved {
                Ok(reserved) => task.fill.reserve(reserved),
                Err(error) => return task.fill.fail(error),
            }
            match task.cache.run_fill(&object, expected, index, &task.fill).await {
                Ok((meta, borrowed)) => {
                    let slice = task.fill.assembled();
                    match (meta.storable, borrowed) {
                        (true, false) => task.cache.store_slice(slice_key(&object, &meta, index), slice.clone()),
                        (true, true) => task.cache.borrowed.insert(slice_key(&object, &meta, index), slice.clone()),
                        (false, _) => {}
                    }
                    task.fill.complete(slice);
                }
                Err(error) => {
                    // Readers learn of the change only once the old version is
                    // gone, so none of them starts over from it.
                    if matches!(error, FillError::Changed(_)) {
                        task.cache.forget_object(&object.key).await;
                    }
                    task.fill.fail(error);
                }
            }
        });
        FillReader::new(fill)
    }

    /// Forgets every version of the object `key` names, its metadata and its
    /// slices, in memory at once and on disk before returning: called when a
    /// fill finds that the origin's object is no longer the cached version.
    async fn forget_object(self: &Arc<Self>, key: &Arc<str>) {
        self.metas.invalidate(key);
        self.metas_changed();
        let (cache, key) = (self.clone(), key.clone());
        if tokio::task::spawn_blocking(move || cache.invalidate(&key, false)).await.is_err() {
            tracing::warn!("forgetting a changed object's slices failed");
        }
    }

    fn store_slice(&self, key: SliceKey, data: Slice) {
        self.slices.insert(key.clone(), data.clone());
        if let Some(disk) = self.disk.clone() {
            self.unwritten.lock().expect("unwritten lock").insert(key.clone(), data.clone());
            let (unwritten, counted) = (self.unwritten.clone(), self.metrics.unwritten_bytes.clone());
            counted.add(data.len() as i64);
            tokio::task::spawn_blocking(move || {
                // A failure is counted, logged and reported by the tier itself.
                let _ = disk.write_slice(&key, &data);
                unwritten.lock().expect("unwritten lock").remove(&key);
                counted.sub(data.len() as i64);
            });
        }
    }

    /// Fetches slice `index` into `fill`; returns the version's metadata
    /// and whether the bytes are borrowed from the node of this site that
    /// keeps them (to be held only briefly).
    async fn run_fill(
        &self,
        object: &ObjectRef,
        expected: Option<Arc<ObjectMeta>>,
        index: u64,
        fill: &Fill,
    ) -> Result<(Arc<ObjectMeta>, bool), FillError> {
        let slice_size = expected.as_ref().map_or(object.slice_size, |meta| meta.slice_size);
        let start = index * slice_size;
        let range = format!("bytes={start}-{}", start + slice_size - 1);
        let mut headers = vec![("range", range.as_str())];
        if let Some(etag) = expected.as_ref().and_then(|meta| meta.origin_etag()) {
            headers.push(("if-match", etag));
        }
        let mut response = self.send(object, "GET", &headers).await.map_err(fill_error)?;
        let now = self.clock.unix_seconds();
        let (meta, mut skip) = match response.status() {
            206 => {
                let (ByteRange { start: first, end: last }, total) =
                    response
                        .header_value("content-range")
                        .and_then(parse_content_range)
                        .ok_or_else(|| FillError::Origin("a 206 without a usable Content-Range".into()))?;
                let meta = self.meta_from(object, &response, total, slice_size, now);
                if first != start || last != start + meta.slice_length(index) - 1 {
                    return Err(FillError::Changed(format!("asked for {range}, got bytes {first}-{last}/{total}")));
                }
                (meta, 0)
            }
            200 => {
                // The origin ignores Range: the slice is cut out of the whole body.
                let Some(total) = content_length(&response) else {
                    return self
                        .fill_unsized(object, expected.as_deref(), response, index, slice_size, fill)
                        .await;
                };
                if start >= total {
                    return Err(FillError::Unsatisfiable);
                }
                (self.meta_from(object, &response, total, slice_size, now), start)
            }
            416 if expected.is_none() => return Err(FillError::Unsatisfiable),
            412 | 416 => {
                return Err(FillError::Changed(format!("the origin answered {}", response.status())));
            }
            status => {
                let body = error_body(object, &mut response).await;
                self.remember_error(object, status, body.clone(), now);
                return Err(FillError::OriginStatus(status, body));
            }
        };
        if let Some(expected) = &expected
            && !expected.same_version(&meta)
        {
            return Err(FillError::Changed(format!(
                "ETag {} / {} bytes, expected {} / {}",
                meta.etag, meta.size, expected.etag, expected.size
            )));
        }
        let meta = Arc::new(meta);
        if expected.is_none() && meta.storable {
            self.store_meta(object, meta.clone());
        }
        fill.publish_meta(meta.clone());
        let borrowed = response.borrowed;
        let slice_end = start + meta.slice_length(index) - 1;
        let mut remaining = meta.slice_length(index);
        let mut failed_nodes = Vec::new();
        while remaining > 0 {
            let read = match response.next_chunk().await {
                Ok(Some(chunk)) => Ok(chunk),
                Ok(None) => Err(FetchError::Failed(format!("the body ended {remaining} bytes early"))),
                Err(error) => Err(error),
            };
            let mut chunk = match (read, response.fleet_node()) {
                (Ok(chunk), _) => chunk,
                // A node of the fleet that dies mid-slice costs its askers
                // nothing: the rest comes from the next source.
                (Err(error), Some(node)) if skip == 0 && failed_nodes.len() < MAX_RESUMES => {
                    tracing::warn!(%node, %error, "a fleet node broke off a slice; resuming from the next source");
                    failed_nodes.push(node);
                    response = self
                        .resume(object, &meta, slice_end + 1 - remaining, slice_end, &failed_nodes)
                        .await?;
                    continue;
                }
                (Err(error), _) => return Err(fill_error(error)),
            };
            if skip > 0 {
                let dropped = skip.min(chunk.len() as u64);
                chunk = chunk.slice(dropped as usize..);
                skip -= dropped;
            }
            let kept = remaining.min(chunk.len() as u64);
            if kept > 0 {
                fill.publish_chunk(chunk.slice(..kept as usize));
                remaining -= kept;
                // The viewers reading this fill usually share its thread; when
                // the origin's bytes are already waiting, reading them never
                // yields, and the viewers would get nothing until tokio's
                // budget ran out (about 2 ms for a 1 MiB slice).
                tokio::task::yield_now().await;
            }
        }
        if response.status() == 206 {
            // Reading the (empty) end of the body hands the connection back
            // to the pool; a whole-object 200 is dropped mid-body instead.
            let _ = response.next_chunk().await;
        }
        Ok((meta, borrowed))
    }

    /// Fills from a 200 of unknown length (chunked, or ended by closing: a
    /// custom origin's dynamic page). It is read whole, up to one slice, as
    /// the object then fits in slice 0; a longer one is refused, never held.
    async fn fill_unsized(
        &self,
        object: &ObjectRef,
        expected: Option<&ObjectMeta>,
        mut response: OriginResponse<'_>,
        index: u64,
        slice_size: u64,
        fill: &Fill,
    ) -> Result<(Arc<ObjectMeta>, bool), FillError> {
        let mut chunks = Vec::new();
        let mut total = 0;
        while let Some(chunk) = response.next_chunk().await.map_err(fill_error)? {
            total += chunk.len() as u64;
            if total > slice_size {
                return Err(FillError::Origin(format!(
                    "a body of unknown length longer than one slice ({slice_size} bytes)"
                )));
            }
            chunks.push(chunk);
        }
        if index * slice_size >= total {
            return Err(FillError::Unsatisfiable);
        }
        let meta = self.meta_from(object, &response, total, slice_size, self.clock.unix_seconds());
        if expected.is_some_and(|expected| !expected.same_version(&meta)) {
            return Err(FillError::Changed("the object changed at the origin".into()));
        }
        let meta = Arc::new(meta);
        if expected.is_none() && meta.storable {
            self.store_meta(object, meta.clone());
        }
        fill.publish_meta(meta.clone());
        for chunk in chunks {
            fill.publish_chunk(chunk);
        }
        Ok((meta, response.borrowed))
    }

    /// Asks for bytes `from..=to` of `meta`'s version (and no other) from
    /// the next source upstream, none of the `failed` nodes.
    async fn resume(
        &self,
        object: &ObjectRef,
        meta: &ObjectMeta,
        from: u64,
        to: u64,
        failed: &[SocketAddr],
    ) -> Result<OriginResponse<'_>, FillError> {
        let range = format!("bytes={from}-{to}");
        let etag = meta
            .origin_etag()
            .ok_or_else(|| FillError::Changed(format!("resuming {range}: the version has no ETag to ask for")))?;
        let headers = [("range", range.as_str()), ("if-match", etag)];
        let response = self.send_avoiding(object, "GET", &headers, failed).await.map_err(fill_error)?;
        let expected = format!("bytes {from}-{to}/{}", meta.size);
        match response.status() {
            206 if response.header_value("content-range") == Some(&expected) && response.header_value("etag") == Some(etag) => Ok(response),
            206 | 412 => Err(FillError::Changed(format!("resuming {range}: another version answered"))),
            status => Err(FillError::Origin(format!("resuming {range}: the answer was {status}"))),
        }
    }

    /// For an object not cached yet: asks the origin for bytes `start..=end`
    /// (within one slice) and takes the version's metadata from the answer's
    /// header, remembering it. `None` unless the origin answered 206 with
    /// exactly those bytes, an ETag and the total size (an error, a 200 or
    /// a short range is left to the aligned fill, which handles each).
    pub async fn seek_cold(&self, object: &ObjectRef, start: u64, end: u64) -> Option<(Arc<ObjectMeta>, OriginResponse<'_>)> {
        let range = format!("bytes={start}-{end}");
        let response = self.send(object, "GET", &[("range", &range)]).await.ok()?;
        let (got, total) = response.header_value("content-range").and_then(parse_content_range)?;
        let whole = got.start == start && got.end == end.min(total - 1);
        if response.status() != 206 || !whole || response.header_value("etag").is_none() {
            return None;
        }
        let meta = Arc::new(self.meta_from(object, &response, total, object.slice_size, self.clock.unix_seconds()));
        if meta.storable {
            self.store_meta(object, meta.clone());
        }
        Some((meta, response))
    }

    fn meta_from(&self, object: &ObjectRef, response: &OriginResponse<'_>, size: u64, slice_size: u64, now: u64) -> ObjectMeta {
        let fresh = freshness(
            &object.ttl,
            response.header_value("cache-control"),
            response.header_value("expires"),
            self.clock.now(),
        );
        ObjectMeta::from_origin(&response.header, size, fresh, slice_size, now)
    }

    fn remember_error(&self, object: &ObjectRef, status: u16, body: Option<Arc<ErrorBody>>, now: u64) -> Arc<ObjectMeta> {
        let ttl = object
            .error_caching
            .iter()
            .find(|(code, _)| *code == status)
            .map_or(self.error_ttl, |(_, ttl)| *ttl);
        let mut meta = ObjectMeta::error(status, ttl, now);
        meta.error_body = body;
        let meta = Arc::new(meta);
        // A zero `ErrorCachingMinTTL` asks the origin again every time.
        if CACHED_ERRORS.contains(&status) && !ttl.is_zero() {
            self.store_meta(object, meta.clone());
        }
        meta
    }

    /// Asks the origin for `object`'s metadata with HEAD (for HEAD requests
    /// and suffix ranges that arrive before any slice is cached). An error
    /// status comes back as metadata with that status.
    pub async fn fetch_meta(&self, object: &ObjectRef) -> Result<Arc<ObjectMeta>, FillError> {
        let response = self.send(object, "HEAD", &[]).await.map_err(fill_error)?;
        let now = self.clock.unix_seconds();
        match response.status() {
            200 => {
                let size = content_length(&response).ok_or(FillError::LengthUnknown)?;
                let meta = Arc::new(self.meta_from(object, &response, size, object.slice_size, now));
                if meta.storable {
                    self.store_meta(object, meta.clone());
                }
                Ok(meta)
            }
            status => Ok(self.remember_error(object, status, None, now)),
        }
    }

    /// Revalidates `stale` off the request path (stale-while-revalidate),
    /// unless a revalidation of the object already runs.
    pub fn revalidate_in_background(self: &Arc<Self>, object: &ObjectRef, stale: Arc<ObjectMeta>) {
        if !self.revalidating.lock().expect("revalidating lock").insert(object.key.clone()) {
            return;
        }
        let running = Running {
            set: self.revalidating.clone(),
            key: object.key.clone(),
        };
        let (cache, object) = (self.clone(), object.clone());
        tokio::spawn(async move {
            let _running = running;
            if let Err(error) = cache.revalidate(&object, &stale).await {
                tracing::warn!(%error, "background revalidation (stale-while-revalidate) failed");
            }
        });
    }

    /// Asks the origin whether `stale` is still current (HEAD with
    /// `If-None-Match`). A 304 refreshes it and keeps its slices.
    pub async fn revalidate(&self, object: &ObjectRef, stale: &ObjectMeta) -> Result<Revalidation, FillError> {
        let validator = stale.origin_etag().map(|etag| ("if-none-match", etag));
        let response = self.send(object, "HEAD", validator.as_slice()).await.map_err(fill_error)?;
        let now = self.clock.unix_seconds();
        match response.status() {
            304 => {
                let fresh = freshness(
                    &object.ttl,
                    response.header_value("cache-control").or(stale.header("cache-control")),
                    response.header_value("expires"),
                    self.clock.now(),
                );
                let refreshed = Arc::new(ObjectMeta {
                    validated_at: now,
                    fresh_for: fresh.ttl.as_secs(),
                    ..stale.clone()
                });
                self.store_meta(object, refreshed.clone());
                Ok(Revalidation::Unchanged(refreshed))
            }
            200 => {
                let size = content_length(&response).ok_or(FillError::LengthUnknown)?;
                let current = self.meta_from(object, &response, size, stale.slice_size, now);
                // Origins that ignore If-None-Match on HEAD answer 200 for an
                // unchanged object: the same version keeps the slices.
                let unchanged = stale.same_version(&current);
                let meta = Arc::new(current);
                self.store_meta(object, meta.clone());
                Ok(if unchanged {
                    Revalidation::Unchanged(meta)
                } else {
                    Revalidation::Replaced(meta)
                })
            }
            status if status >= 500 => Err(FillError::OriginStatus(status, None)),
            status => Ok(Revalidation::Replaced(self.remember_error(object, status, None, now))),
        }
    }

    /// Forgets every object whose key is `key` (or starts with it, for a
    /// prefix), in memory and on disk: the next request goes to the origin.
    /// Blocking (disk I/O): call it off the request path.
    pub fn invalidate(&self, key: &str, prefix: bool) {
        self.bans.record(key, prefix);
        let covers = {
            let key = key.to_owned();
            move |object: &str| if prefix { object.starts_with(&key) } else { object == key }
        };
        let for_slices = covers.clone();
        let _ = self.metas.invalidate_entries_if(move |object, _| covers(object));
        self.unwritten
            .lock()
            .expect("unwritten lock")
            .retain(|slice, _| !for_slices(&slice.object));
        let _ = self.slices.invalidate_entries_if(move |slice, _| for_slices(&slice.object));
        self.metas_changed();
        if let Some(disk) = &self.disk {
            if prefix {
                disk.remove_objects_with_prefix(key);
            } else {
                disk.remove_object(key);
            }
        }
    }

    /// Forgets `key` if its cached version was fetched or last validated
    /// before `not_before` (Unix milliseconds): a fleet node asking for it
    /// has invalidated it since. Blocking (disk I/O).
    pub fn forget_if_fetched_before(&self, key: &str, not_before: u64) {
        let cached = self
            .metas
            .get(key)
            .or_else(|| self.disk.as_ref().and_then(|disk| disk.read_meta(key)).map(Arc::new));
        if cached.is_some_and(|meta| meta.validated_at.saturating_mul(1000) < not_before) {
            self.invalidate(key, false);
        }
    }

    /// Why the disk tier is degraded, if it is: it cannot write a file
    /// (checked now), or its recent writes failed (a full disk, a file-size
    /// limit: small files may still be written while slices are not). Blocking.
    pub fn disk_degradation(&self) -> Option<String> {
        let disk = self.disk.as_ref()?;
        match disk.probe() {
            Err(error) => Some(format!("not writable: {error}")),
            Ok(()) => disk.write_failure().map(|error| format!("writes fail: {error}")),
        }
    }

    /// Weighted bytes and entries of the metadata (origin errors included),
    /// which takes an eighth of the memory budget.
    pub fn metadata_usage(&self) -> (u64, u64) {
        self.metas.run_pending_tasks();
        (self.metas.weighted_size(), self.metas.entry_count())
    }

    /// The memory budget (`cache.memory`) and the disk tier's, if any.
    pub fn budgets(&self) -> (u64, Option<u64>) {
        (self.memory_budget, self.disk.as_ref().map(|disk| disk.budget()))
    }

    /// Bytes and entries in memory, and on disk if there is a disk tier.
    pub fn usage(&self) -> ((u64, u64), Option<(u64, u64)>) {
        self.slices.run_pending_tasks();
        (
            (self.slices.weighted_size(), self.slices.entry_count()),
            self.disk.as_ref().map(|d| d.usage()),
        )
    }
}

/// An error answer's body to replay to viewers: a custom origin's (an S3
/// origin's error names its bucket and key, and viewers get keyfront's own
/// page), whole within `MAX_ERROR_BODY_BYTES`; `None` past it or when the
/// body breaks off.
async fn error_body(object: &ObjectRef, response: &mut OriginResponse<'_>) -> Option<Arc<ErrorBody>> {
    if object.origin.is_signed() {
        return None;
    }
    let content_type = response.header_value("content-type").map(str::to_owned);
    let mut bytes = Vec::new();
    while let Some(chunk) = response.next_chunk().await.ok()? {
        if bytes.len() + chunk.len() > meta::MAX_ERROR_BODY_BYTES {
            return None;
        }
        bytes.extend_from_slice(&chunk);
    }
    Some(Arc::new(ErrorBody {
        content_type,
        bytes: bytes.into(),
    }))
}

/// The response's body length from its `Content-Length`, if it has one.
fn content_length(response: &OriginResponse<'_>) -> Option<u64> {
    response.header_value("content-length").and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_its_parts_and_nothing_of_the_last_key_built() {
        let long = ObjectRef::cache_key("origin-with-a-long-name", "/a/long/path?k=v", "h:x-variant=1");
        assert_eq!(&*long, "origin-with-a-long-name\n/a/long/path?k=v\nh:x-variant=1");
        assert_eq!(&*ObjectRef::cache_key("o", "/p", ""), "o\n/p");
    }

    /// A cache of 1 MiB in memory alone.
    fn memory_cache() -> Arc<Cache> {
        let settings = CacheSettings {
            memory_bytes: 1 << 20,
            disk: None,
            error_ttl: Duration::from_secs(1),
        };
        Arc::new(Cache::new(&settings, None, Clock::default()).unwrap())
    }

    /// What a thread keeps in front of the memory tier (`recent`) never
    /// outlives the version: a version stored in its place, and an
    /// invalidation, are seen by the next lookup on the same thread.
    #[tokio::test]
    async fn a_thread_never_answers_with_a_version_the_cache_replaced_or_forgot() {
        let cache = memory_cache();
        let object = ObjectRef {
            key: ObjectRef::cache_key("o", "/kept", ""),
            table: "-".into(),
            path: "/kept".into(),
            site_hop: false,
            origin_name: "o".into(),
            origin: Arc::new(Origin::custom("127.0.0.1", 9, false, "", Arc::from([]))),
            origin_path: "/kept".into(),
            ttl: Ttl {
                min: Duration::ZERO,
                default: Duration::from_secs(60),
                max: Duration::from_secs(60),
            },
            slice_size: 1 << 16,
            viewer: None,
            failover: None,
            sent: None,
            error_caching: Arc::from([]),
        };
        let version = |status| Arc::new(ObjectMeta::error(status, Duration::from_secs(60), 1));
        let is = |found: Option<Arc<ObjectMeta>>, expected: &Arc<ObjectMeta>| found.is_some_and(|f| Arc::ptr_eq(&f, expected));
        let first = version(404);
        cache.store_meta(&object, first.clone());
        assert!(is(cache.meta(&object).await, &first), "read from the tier, kept by this thread");
        assert!(is(cache.meta(&object).await, &first), "read again, from this thread's");
        let second = version(403);
        cache.store_meta(&object, second.clone());
        assert!(is(cache.meta(&object).await, &second), "a version stored in its place");
        assert!(is(cache.meta(&object).await, &second));
        cache.invalidate(&object.key, false);
        assert!(cache.meta(&object).await.is_none(), "invalidated");
        cache.store_meta(&object, first.clone());
        assert!(is(cache.meta(&object).await, &first));
        cache.forget_object(&object.key).await;
        assert!(cache.meta(&object).await.is_none(), "forgotten");
    }

    /// A fill task that panics still ends its fill (readers get an error,
    /// never wait forever) and frees its slot for the next request.
    #[tokio::test]
    async fn a_fill_task_that_panics_ends_its_fill_and_frees_its_slot() {
        let cache = memory_cache();
        let slot = FillSlot {
            object: "origin\n/bucket/key".into(),
            slice_size: 1 << 16,
            index: 3,
        };
        let fill = Arc::new(Fill::new(cache.metrics.filling_bytes.clone()));
        cache.in_flight.lock().unwrap().insert(slot.clone(), fill.clone());
        let mut reader = FillReader::new(fill.clone());
        fill.publish_chunk(Bytes::from_static(b"first bytes"));
        let task = FillTask {
            cache: cache.clone(),
            slot: slot.clone(),
            fill,
        };
        let crashed = tokio::spawn(async move {
            let _task = task;
            panic!("a bug in a fill");
        })
        .await;
        assert!(crashed.is_err_and(|e| e.is_panic()));
        assert_eq!(reader.next_chunk().await.unwrap().unwrap(), Bytes::from_static(b"first bytes"));
        let ended = tokio::time::timeout(Duration::from_secs(1), reader.next_chunk()).await;
        assert!(matches!(ended, Ok(Err(FillError::Origin(_)))), "{ended:?}");
        assert!(!cache.in_flight.lock().unwrap().contains_key(&slot), "the slot is free");
    }
}
