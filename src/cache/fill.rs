//! One origin fetch of one slice, shared by every request that needs it.
//! Readers see the metadata as soon as the origin's headers arrive and the
//! bytes as they arrive, not after the slice completes.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use super::meta::ObjectMeta;
use super::slice::Slice;

/// Why a fill did not produce its slice.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    /// The origin answered with an error status (404, 5xx, ...).
    #[error("the origin answered {0}")]
    OriginStatus(u16),
    /// The range starts past the end of the object.
    #[error("the requested range is past the end of the object")]
    Unsatisfiable,
    /// The object is not the version the cache expected (ETag or size changed).
    #[error("the object changed at the origin: {0}")]
    Changed(String),
    /// The origin could not be reached, timed out, or broke off.
    #[error("origin request failed: {0}")]
    Origin(String),
    /// The origin took longer than the first-byte timeout.
    #[error("origin request timed out: {0}")]
    Timeout(String),
}

#[derive(Default)]
struct FillState {
    meta: Option<Arc<ObjectMeta>>,
    chunks: Vec<Bytes>,
    outcome: Option<Result<(), FillError>>,
}

/// A slice being fetched.
#[derive(Default)]
pub struct Fill {
    state: Mutex<FillState>,
    changed: Notify,
}

impl Fill {
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

    /// More of the slice arrived.
    pub fn publish_chunk(&self, chunk: Bytes) {
        self.update(|state| state.chunks.push(chunk));
    }

    /// The fill ended, with the whole slice or an error.
    pub fn finish(&self, outcome: Result<(), FillError>) {
        self.update(|state| state.outcome = Some(outcome));
    }

    /// Ends the fill with `error` unless it has ended already.
    pub fn finish_if_running(&self, error: FillError) {
        self.update(|state| {
            state.outcome.get_or_insert(Err(error));
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
        self.wait_for(|state| match (&state.meta, &state.outcome) {
            (Some(meta), _) => Some(Ok(meta.clone())),
            (None, Some(Err(error))) => Some(Err(error.clone())),
            (None, Some(Ok(()))) => Some(Err(FillError::Origin("the fill ended without metadata".into()))),
            (None, None) => None,
        })
        .await
    }

    /// The slice, cut into pieces, when the fill succeeded.
    pub fn assembled(&self) -> Slice {
        Slice::from_chunks(&self.state.lock().expect("fill state lock").chunks)
    }
}

/// Reads a fill's bytes from the beginning, as they arrive.
pub struct FillReader {
    fill: Arc<Fill>,
    next: usize,
}

impl FillReader {
    pub fn new(fill: Arc<Fill>) -> Self {
        Self { fill, next: 0 }
    }

    pub async fn meta(&self) -> Result<Arc<ObjectMeta>, FillError> {
        self.fill.meta().await
    }

    /// Whether the fill has ended with its whole slice.
    pub fn is_complete(&self) -> bool {
        matches!(self.fill.state.lock().expect("fill state lock").outcome, Some(Ok(())))
    }

    /// The next chunk, `None` at the end of the slice, or the fill's error.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, FillError> {
        let next = self.next;
        let found = self
            .fill
            .wait_for(|state| match (state.chunks.get(next), &state.outcome) {
                (Some(chunk), _) => Some(Ok(Some(chunk.clone()))),
                (None, Some(Ok(()))) => Some(Ok(None)),
                (None, Some(Err(error))) => Some(Err(error.clone())),
                (None, None) => None,
            })
            .await;
        if matches!(found, Ok(Some(_))) {
            self.next += 1;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn late_readers_get_every_chunk_and_early_ones_get_them_as_they_come() {
        let fill = Arc::new(Fill::default());
        let mut early = FillReader::new(fill.clone());
        let producer = {
            let fill = fill.clone();
            tokio::spawn(async move {
                for i in 0..5u8 {
                    fill.publish_chunk(Bytes::from(vec![i; 3]));
                    tokio::task::yield_now().await;
                }
                fill.finish(Ok(()));
            })
        };
        let mut seen = Vec::new();
        while let Some(chunk) = early.next_chunk().await.unwrap() {
            seen.extend_from_slice(&chunk);
        }
        producer.await.unwrap();
        let mut late = FillReader::new(fill.clone());
        let mut late_seen = Vec::new();
        while let Some(chunk) = late.next_chunk().await.unwrap() {
            late_seen.extend_from_slice(&chunk);
        }
        assert_eq!(seen, late_seen);
        assert_eq!(seen.len(), 15);
        assert_eq!(fill.assembled().len(), 15);
    }

    #[tokio::test]
    async fn errors_reach_every_reader() {
        let fill = Arc::new(Fill::default());
        fill.publish_chunk(Bytes::from_static(b"abc"));
        fill.finish(Err(FillError::Changed("etag".into())));
        let mut reader = FillReader::new(fill.clone());
        assert_eq!(reader.next_chunk().await.unwrap().unwrap(), Bytes::from_static(b"abc"));
        assert!(matches!(reader.next_chunk().await, Err(FillError::Changed(_))));
        assert!(matches!(fill.meta().await, Err(FillError::Changed(_))));
    }
}
