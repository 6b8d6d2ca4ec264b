//! A slice's bytes as the cache holds them: pieces of at most `PIECE_BYTES`,
//! each its own allocation. A viewer sending a slice holds the piece it is
//! sending, never the whole slice: a slow viewer of a slice the cache has
//! since evicted keeps 32 KiB alive, not up to 64 MiB. Pieces are small
//! because a full socket holds one per viewer: at 256 KiB, 1,000 viewers
//! pinned about 190 KiB each (bench/RESULTS.md, "Memory per viewer"); the
//! price is more socket writes per byte on large ranges.

use std::sync::Arc;

use bytes::Bytes;

/// The most a viewer holds of a slice at once (bytes), in memory, read from
/// disk (each piece is checked on its own) or on its way to the socket.
pub const PIECE_BYTES: usize = 32 << 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    pieces: Arc<[Bytes]>,
    len: u64,
}

impl Slice {
    /// The slice made of `pieces`, every one `PIECE_BYTES` long but the last.
    pub fn from_pieces(pieces: Vec<Bytes>) -> Self {
        debug_assert!(pieces.iter().rev().skip(1).all(|piece| piece.len() == PIECE_BYTES));
        let len = pieces.iter().map(|piece| piece.len() as u64).sum();
        Self {
            pieces: pieces.into(),
            len,
        }
    }

    /// The bytes of `chunks`, in order, cut again into pieces (copied once).
    pub fn from_chunks(chunks: &[Bytes]) -> Self {
        let mut left: usize = chunks.iter().map(Bytes::len).sum();
        let mut pieces = Vec::with_capacity(left.div_ceil(PIECE_BYTES));
        let mut piece = Vec::new();
        for chunk in chunks {
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                if piece.is_empty() {
                    piece.reserve_exact(left.min(PIECE_BYTES));
                }
                let taken = rest.len().min(PIECE_BYTES - piece.len());
                piece.extend_from_slice(&rest[..taken]);
                rest = &rest[taken..];
                left -= taken;
                if piece.len() == PIECE_BYTES || left == 0 {
                    pieces.push(Bytes::from(std::mem::take(&mut piece)));
                }
            }
        }
        Self::from_pieces(pieces)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// Bytes `from..=to` (offsets in the slice) that lie in the piece
    /// holding `from`: the next part to send, sharing that piece only.
    pub fn part(&self, from: u64, to: u64) -> Bytes {
        let piece_start = from - from % PIECE_BYTES as u64;
        let piece = &self.pieces[(from / PIECE_BYTES as u64) as usize];
        let last = to.min(piece_start + piece.len() as u64 - 1);
        piece.slice((from - piece_start) as usize..=(last - piece_start) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_of_any_size_become_whole_pieces_and_parts_stay_within_one() {
        let data: Vec<u8> = (0..PIECE_BYTES * 2 + 1000).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<Bytes> = data.chunks(70_001).map(Bytes::copy_from_slice).collect();
        let slice = Slice::from_chunks(&chunks);
        let lengths: Vec<usize> = slice.pieces().iter().map(Bytes::len).collect();
        assert_eq!(lengths, [PIECE_BYTES, PIECE_BYTES, 1000]);
        assert_eq!(slice.len(), data.len() as u64);
        let mut sent = Vec::new();
        let (mut from, to) = (5u64, data.len() as u64 - 3);
        while from <= to {
            let part = slice.part(from, to);
            assert!(part.len() <= PIECE_BYTES);
            from += part.len() as u64;
            sent.extend_from_slice(&part);
        }
        assert!(sent == data[5..=data.len() - 3]);
        assert_eq!(
            &slice.part(PIECE_BYTES as u64 - 1, PIECE_BYTES as u64)[..],
            &data[PIECE_BYTES - 1..PIECE_BYTES]
        );
        assert!(Slice::from_chunks(&[]).is_empty());
    }
}
