//! One answer's bytes of one slice, part by part (a part never crosses a
//! piece), each taken from wherever the slice is when it is sent: memory,
//! disk, or a fill. A viewer holds the part it is sending and nothing more:
//! a slice evicted from memory meanwhile is read on from disk, a disk piece
//! that fails its check from the origin (the fill asks for the same version
//! by ETag, so bytes of two versions are never joined).

use std::sync::Arc;

use bytes::Bytes;

use super::disk::SliceFile;
use super::fill::{FillError, FillReader};
use super::meta::ObjectMeta;
use super::slice::{PIECE_BYTES, Slice};
use super::{Cache, ObjectRef, SliceKey, SliceSource, slice_key};

/// How many times a reader may find its slice gone from where it was
/// (evicted, damaged) before a part: each move is to a tier further down.
const MAX_MOVES: usize = 3;

enum Source {
    /// The slice as last found in memory, held only until a part is cut from
    /// it; then looked up again for each part.
    Memory(Option<Slice>),
    Disk(Arc<SliceFile>),
    /// `at`: the offset in the slice of the reader's next chunk; `looked`:
    /// whether the cache was searched once the fill had ended.
    Filling {
        reader: FillReader,
        at: u64,
        looked: bool,
    },
}

/// What reading the current source gave.
enum Read {
    Part(Bytes),
    /// The slice is no longer there: found elsewhere, or to be looked up.
    Moved(Option<SliceSource>),
}

pub struct SliceReader<'a> {
    cache: &'a Arc<Cache>,
    object: &'a ObjectRef,
    meta: &'a Arc<ObjectMeta>,
    key: SliceKey,
    /// Offsets in the slice: the next byte to give and the last one wanted.
    next: u64,
    last: u64,
    source: Source,
    /// The first part of a cached slice, read before the answer's header goes out.
    first: Option<Bytes>,
    cached: bool,
}

impl<'a> SliceReader<'a> {
    /// Bytes `from..=last` of slice `index` (offsets in the slice), from
    /// `found` or from wherever the cache finds the slice now. Returns once
    /// a failure before the first byte would be known (an object changed at
    /// the origin): for a fill, when the origin's header is in; for a cached
    /// slice, when its first part is read (a damaged piece is fetched again
    /// from the origin meanwhile).
    pub async fn start(
        cache: &'a Arc<Cache>,
        object: &'a ObjectRef,
        meta: &'a Arc<ObjectMeta>,
        index: u64,
        (from, last): (u64, u64),
        found: Option<SliceSource>,
    ) -> Result<Self, FillError> {
        let found = match found {
            Some(found) => found,
            None => cache.slice(object, meta, index).await,
        };
        let cached = found.is_cached();
        if let SliceSource::Filling(fill) = &found {
            fill.meta().await?;
        }
        let mut reader = Self {
            cache,
            object,
            meta,
            key: slice_key(object, meta, index),
            next: from,
            last,
            cached,
            source: Source::Memory(None),
            first: None,
        };
        reader.switch_to(found);
        if cached {
            reader.first = reader.next_part().await?;
        }
        Ok(reader)
    }

    /// Whether the slice was in memory or on disk when the answer started.
    pub fn is_hit(&self) -> bool {
        self.cached
    }

    /// The next part (at most one piece, or one chunk of a fill), `None`
    /// once `last` was given.
    pub async fn next_part(&mut self) -> Result<Option<Bytes>, FillError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        let mut moves = 0;
        while self.next <= self.last {
            match self.read().await? {
                Read::Part(part) => {
                    self.next += part.len() as u64;
                    return Ok(Some(part));
                }
                Read::Moved(_) if moves == MAX_MOVES => {
                    return Err(FillError::Origin(format!("slice {} kept moving between tiers", self.key.index)));
                }
                Read::Moved(found) => {
                    moves += 1;
                    let found = match found {
                        Some(found) => found,
                        None => self.cache.slice(self.object, self.meta, self.key.index).await,
                    };
                    self.switch_to(found);
                }
            }
        }
        Ok(None)
    }

    fn switch_to(&mut self, found: SliceSource) {
        self.source = match found {
            SliceSource::Memory(slice) => Source::Memory(Some(slice)),
            SliceSource::Disk(file) => Source::Disk(file),
            SliceSource::Filling(reader) => Source::Filling {
                reader,
                at: 0,
                looked: false,
            },
        };
    }

    async fn read(&mut self) -> Result<Read, FillError> {
        let (next, last) = (self.next, self.last);
        match &mut self.source {
            Source::Memory(held) => Ok(match held.take().or_else(|| self.cache.resident_slice(&self.key)) {
                Some(slice) => Read::Part(slice.part(next, last)),
                None => Read::Moved(None),
            }),
            Source::Disk(file) => {
                let piece_index = next / PIECE_BYTES as u64;
                Ok(match self.cache.read_piece(file, &self.key, piece_index).await {
                    Some(piece) => {
                        let piece_start = piece_index * PIECE_BYTES as u64;
                        let end = last.min(piece_start + piece.len() as u64 - 1);
                        Read::Part(piece.slice((next - piece_start) as usize..=(end - piece_start) as usize))
                    }
                    None => Read::Moved(None),
                })
            }
            Source::Filling { reader, at, looked } => loop {
                // A fill that has ended stored its slice: read on from the
                // cache and let the fill's chunks go with its other readers.
                if !*looked && reader.is_complete() {
                    *looked = true;
                    if let Some(found) = self.cache.cached_slice(self.object, self.meta, self.key.index).await {
                        return Ok(Read::Moved(Some(found)));
                    }
                }
                let chunk = reader
                    .next_chunk()
                    .await?
                    .ok_or_else(|| FillError::Origin("the slice ended early".into()))?;
                let chunk_start = *at;
                *at += chunk.len() as u64;
                if *at > next {
                    let end = last.min(*at - 1);
                    return Ok(Read::Part(
                        chunk.slice((next - chunk_start) as usize..=(end - chunk_start) as usize),
                    ));
                }
            },
        }
    }
}
