//! One origin fetch of one slice, shared by every request that needs it.
//! Readers see the metadata as soon as the origin's headers arrive and the
//! bytes as they arrive, not after the slice completes.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prometheus::IntGauge;
use tokio::sync::Notify;

use super::meta::{ErrorBody, ObjectMeta};
use super::reserve::ReservedShare;
use super::slice::Slice;

/// Why a fill did not produce its slice.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    /// The origin answered with an error status (404, 5xx, ...), and the
    /// body to replay, if it is one (see `ErrorBody`).
    #[error("the origin answered {0}")]
    OriginStatus(u16, Option<Arc<ErrorBody>>),
    /// The range starts past the end of the object.
    #[error("the requested range is past the end of the object")]
    Unsatisfiable,
    /// The object is not the version the cache expected (ETag or size changed).
    #[error("the object changed at the origin: {0}")]
    Changed(String),
    /// The origin could not be reached, timed out, or broke off.
    #[error("origin request failed: {0}")]
    Origin(String),
    /// The origin answered 200 without a Content-Length where the size was
    /// needed from the header alone (a HEAD): the object is to be fetched.
    #[error("the origin gave no Content-Length")]
    LengthUnknown,
    /// The origin took longer than the first-byte timeout.
    #[error("origin request timed out: {0}")]
    Timeout(String),
}

#[derive(Default)]
struct FillState {
    meta: Option<Arc<ObjectMeta>>,
    /// The bytes so far, as they arrived (until the slice is complete).
    chunks: Vec<Bytes>,
    /// The whole slice once complete, sharing its pieces with the tier that
    /// stored it: a slow reader of an ended fill pins no second copy.
    slice: Option<Slice>,
    /// Why the fill failed; it ended when this or `slice` is set.
    error: Option<FillError>,
    /// The share of the cache's fill reserve `chunks` may take, given back
    /// with them.
    reserved: Option<ReservedShare>,
}

/// A slice being fetched.
pub struct Fill {
    state: Mutex<FillState>,
    changed: Notify,
    /// Counts the bytes of `chunks`, which no tier's budget holds.
    held: IntGauge,
}

impl Fill {
    /// A fill whose arriving bytes are counted in `held`.
    pub fn new(held: IntGauge) -> Self {
        Self {
            state: Mutex::default(),
            changed: Notify::new(),
            held,
        }
    }

    fn update(&self, change: impl FnOnce(&mut FillState)) {
        // Also called while a panicking fill task unwinds: a poisoned lock
        // still holds a consistent state (every change is one assignment).
        change(&mut self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        self.changed.notify_waiters();
    }

    /// The origin's headers arrived: readers may now answer the viewer.
    pub fn publish_meta(&self, meta: Arc<ObjectMeta>) {
        self.update(|state| state.meta = Some(meta));
    }

    /// Holds `reserved` until the chunks are let go.
    pub fn reserve(&self, reserved: ReservedShare) {
        self.state.lock().expect("fill state lock").reserved = Some(reserved);
    }

    /// More of the slice arrived.
    pub fn publish_chunk(&self, chunk: Bytes) {
        self.held.add(chunk.len() as i64);
        self.update(|state| state.chunks.push(chunk));
    }

    /// The fill ended with the whole slice, `assembled` from its chunks:
    /// readers read on from it and the chunks are let go.
    pub fn complete(&self, slice: Slice) {
        let mut released = (Vec::new(), None);
        self.update(|state| {
            released = (std::mem::take(&mut state.chunks), state.reserved.take());
            state.slice = Some(slice);
        });
        let (released, _reserved) = released;
        self.held.sub(total_len(&released));
    }

    /// The fill failed: readers get the bytes that arrived, then `error`.
    pub fn fail(&self, error: FillError) {
        self.update(|state| state.error = Some(error));
    }

    /// Ends the fill with `error` unless it has ended already.
    pub fn finish_if_running(&self, error: FillError) {
        self.update(|state| {
            if state.slice.is_none() {
                state.error.get_or_insert(error);
            }
        });
    }

    /// Waits until `ready` finds something in the state.
    async fn wait_for<T>(&self, mut ready: impl FnMut(&FillState) -> Option<T>) -> T {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a change between the look and the
            // wait is not missed.
            notified.as_mut().enable();
            if let Some(found) = ready(&self.state.lock().expect("fill state lock")) {
                return found;
            }
            notified.await;
        }
    }

    /// The object's metadata, once the origin's headers are in.
    pub async fn meta(&self) -> Result<Arc<ObjectMeta>, FillError> {
        self.wait_for(|state| match (&state.meta, &state.error, &state.slice) {
            (Some(meta), _, _) => Some(Ok(meta.clone())),
            (None, Some(error), _) => Some(Err(error.clone())),
            (None, None, Some(_)) => Some(Err(FillError::Origin("the fill ended without metadata".into()))),
            (None, None, None) => None,
        })
        .await
    }

    /// The bytes that arrived, cut into pieces (copied once).
    pub fn assembled(&self) -> Slice {
        Slice::from_chunks(&self.state.lock().expect("fill state lock").chunks)
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.held.sub(total_len(&state.chunks));
    }
}

fn total_len(chunks: &[Bytes]) -> i64 {
    chunks.iter().map(|chunk| chunk.len() as i64).sum()
}

/// Reads a fill's bytes from the beginning, as they arrive.
pub struct FillReader {
    fill: Arc<Fill>,
    /// The next chunk to read while the fill runs, and the offset of the
    /// next byte (where reading goes on in the complete slice).
    next: usize,
    offset: u64,
}

impl FillReader {
    pub fn new(fill: Arc<Fill>) -> Self {
        Self { fill, next: 0, offset: 0 }
    }

    pub async fn meta(&self) -> Result<Arc<ObjectMeta>, FillError> {
        self.fill.meta().await
    }

    /// Whether the fill has ended with its whole slice.
    pub fn is_complete(&self) -> bool {
        self.fill.state.lock().expect("fill state lock").slice.is_some()
    }

    /// The next chunk (at most a piece once the slice is complete), `None`
    /// at the end of the slice, or the fill's error.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, FillError> {
        let (next, offset) = (self.next, self.offset);
        let found = self
            .fill
            .wait_for(|state| match (&state.slice, state.chunks.get(next), &state.error) {
                (Some(slice), _, _) => Some(Ok((offset < slice.len()).then(|| slice.part(offset, slice.len() - 1)))),
                (None, Some(chunk), _) => Some(Ok(Some(chunk.clone()))),
                (None, None, Some(error)) => Some(Err(error.clone())),
                (None, None, None) => None,
            })
            .await;
        if let Ok(Some(chunk)) = &found {
            self.next += 1;
            self.offset += chunk.len() as u64;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted() -> (Arc<Fill>, IntGauge) {
        let held = IntGauge::new("test_fill_bytes", "bytes held by a test fill").unwrap();
        (Arc::new(Fill::new(held.clone())), held)
    }

    #[tokio::test]
    async fn early_readers_get_chunks_as_they_come() {
        let (fill, _held) = counted();
        let mut early = FillReader::new(fill.clone());
        let producer = {
            let fill = fill.clone();
            tokio::spawn(async move {
                for i in 0..5u8 {
                    fill.publish_chunk(Bytes::from(vec![i; 3]));
                    tokio::task::yield_now().await;
                }
                fill.complete(fill.assembled());
            })
        };
        let mut seen = Vec::new();
        while let Some(chunk) = early.next_chunk().await.unwrap() {
            seen.extend_from_slice(&chunk);
        }
        producer.await.unwrap();
        assert_eq!(seen, (0..5u8).flat_map(|i| [i; 3]).collect::<Vec<_>>());
    }

    /// The chunks are let go when the slice is complete: a reader stopped
    /// mid-way and a late one read on from the slice, pinning no second copy.
    #[tokio::test]
    async fn a_complete_fill_serves_every_reader_from_its_slice_alone() {
        let (fill, held) = counted();
        let mut slow = FillReader::new(fill.clone());
        for i in 0..5u8 {
            fill.publish_chunk(Bytes::from(vec![i; 3]));
        }
        assert_eq!(held.get(), 15);
        let mut slow_seen = slow.next_chunk().await.unwrap().unwrap().to_vec();
        assert_eq!(slow_seen, [0, 0, 0]);
        assert!(!slow.is_complete());
        fill.complete(fill.assembled());
        assert_eq!(held.get(), 0);
        assert!(slow.is_complete());
        while let Some(chunk) = slow.next_chunk().await.unwrap() {
            slow_seen.extend_from_slice(&chunk);
        }
        let mut late = FillReader::new(fill.clone());
        let mut late_seen = Vec::new();
        while let Some(chunk) = late.next_chunk().await.unwrap() {
            late_seen.extend_from_slice(&chunk);
        }
        let expected: Vec<u8> = (0..5u8).flat_map(|i| [i; 3]).collect();
        assert_eq!(slow_seen, expected);
        assert_eq!(late_seen, expected);
    }

    #[tokio::test]
    async fn errors_reach_every_reader_and_a_dropped_fill_releases_its_bytes() {
        let (fill, held) = counted();
        fill.publish_chunk(Bytes::from_static(b"abc"));
        assert_eq!(held.get(), 3);
        fill.fail(FillError::Changed("etag".into()));
        fill.finish_if_running(FillError::Origin("too late".into()));
        let mut reader = FillReader::new(fill.clone());
        assert_eq!(reader.next_chunk().await.unwrap().unwrap(), Bytes::from_static(b"abc"));
        assert!(matches!(reader.next_chunk().await, Err(FillError::Changed(_))));
        assert!(matches!(fill.meta().await, Err(FillError::Changed(_))));
        drop((reader, fill));
        assert_eq!(held.get(), 0);
    }
}
