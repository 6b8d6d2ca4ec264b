//! The part of the memory budget that slices arriving from upstream may
//! hold, and each viewer's part of it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a viewer's count is kept after its last fill began: longer than
/// any fill runs, so a viewer's share is never forgotten while it holds it.
const VIEWER_IDLE: Duration = Duration::from_secs(600);

/// Viewers whose counts are kept at once; past it the least recent go.
const VIEWERS_KEPT: u64 = 100_000;

/// The bytes fills may hold before their slices are stored, in KiB: a fill
/// waits for its slice's share before it asks upstream (a prefetch that
/// would wait is skipped). A slice larger than a quarter of the reserve
/// takes a quarter, so four of any size can arrive. 1,000 viewers warming a
/// tier held 358 MiB in fills over a 512 MiB budget without it
/// (bench/RESULTS.md, "Memory per viewer").
///
/// The fills one viewer (one IP address) starts hold at most half of it,
/// so that a viewer missing many cold slices of a slow origin waits for its
/// own part instead of holding the whole reserve while every other viewer's
/// miss waits for it (then answers 504); half, not less, because many
/// viewers may share one address (behind a NAT or a proxy). Fills that
/// other nodes of the fleet ask for, which carry many viewers', count in
/// the reserve only.
pub(super) struct FillReserve {
    permits: Arc<Semaphore>,
    /// The most one slice takes, KiB: a quarter of the reserve.
    share_limit: u32,
    /// The most one viewer's fills hold, KiB: half of the reserve.
    viewer_limit: u32,
    viewers: moka::sync::Cache<IpAddr, Arc<Semaphore>>,
}

/// A fill's share of the reserve (and of its viewer's part), given back
/// when dropped.
pub struct ReservedShare {
    _fill: OwnedSemaphorePermit,
    _viewer: Option<OwnedSemaphorePermit>,
}

impl FillReserve {
    pub(super) fn new(bytes: u64) -> Self {
        let kib = u32::try_from(bytes >> 10).unwrap_or(u32::MAX).max(4);
        Self {
            permits: Arc::new(Semaphore::new(kib as usize)),
            share_limit: kib / 4,
            viewer_limit: kib / 2,
            viewers: moka::sync::Cache::builder()
                .max_capacity(VIEWERS_KEPT)
                .time_to_idle(VIEWER_IDLE)
                .build(),
        }
    }

    pub(super) fn share(&self, slice_length: u64) -> u32 {
        u32::try_from(slice_length.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.share_limit)
    }

    fn viewer_part(&self, viewer: IpAddr) -> Arc<Semaphore> {
        self.viewers
            .get_with(viewer, || Arc::new(Semaphore::new(self.viewer_limit as usize)))
    }

    /// The share of a slice of `slice_length` bytes for `viewer` (`None`:
    /// another node's request), if it is free now.
    pub(super) fn try_take(&self, viewer: Option<IpAddr>, slice_length: u64) -> Option<ReservedShare> {
        let share = self.share(slice_length);
        let viewer = match viewer {
            Some(viewer) => Some(self.viewer_part(viewer).try_acquire_many_owned(share).ok()?),
            None => None,
        };
        let fill = self.permits.clone().try_acquire_many_owned(share).ok()?;
        Some(ReservedShare {
            _fill: fill,
            _viewer: viewer,
        })
    }

    /// Waits up to `patience` for the share of a slice of `slice_length`
    /// bytes for `viewer`: its own part first, so that a viewer over its
    /// part holds nothing of the rest while it waits. `None` once
    /// `patience` has passed.
    pub(super) async fn take(&self, viewer: Option<IpAddr>, slice_length: u64, patience: Duration) -> Option<ReservedShare> {
        let share = self.share(slice_length);
        let taken = tokio::time::timeout(patience, async {
            let viewer = match viewer {
                Some(viewer) => Some(self.viewer_part(viewer).acquire_many_owned(share).await.ok()?),
                None => None,
            };
            let fill = self.permits.clone().acquire_many_owned(share).await.ok()?;
            Some(ReservedShare {
                _fill: fill,
                _viewer: viewer,
            })
        })
        .await;
        taken.ok().flatten()
    }

    /// The whole reserve, MiB.
    pub(super) fn mib(&self) -> u64 {
        (self.share_limit as u64 * 4) >> 10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slice's share is its length in KiB, at most a quarter of the
    /// reserve; a fill that cannot get its share in time gets none (a 504
    /// to its viewers), and a share given back is free again.
    #[tokio::test]
    async fn the_fill_reserve_shares_out_its_bytes_and_refuses_after_waiting() {
        let reserve = FillReserve::new(1 << 20);
        assert_eq!(reserve.share(1), 1);
        assert_eq!(reserve.share(100 << 10), 100);
        assert_eq!(reserve.share(64 << 20), 256, "a large slice takes a quarter");
        let held: Vec<_> = (0..4).map(|_| reserve.try_take(None, 64 << 20).expect("four quarters")).collect();
        assert!(reserve.try_take(None, 1).is_none(), "nothing is left for a prefetch");
        assert!(
            reserve.take(None, 1, Duration::from_millis(20)).await.is_none(),
            "nor after waiting"
        );
        drop(held);
        assert!(reserve.take(None, 1 << 20, Duration::from_millis(20)).await.is_some());
    }

    /// One viewer's fills hold at most half of the reserve: past it the
    /// viewer waits (and times out) while another viewer, and the fleet,
    /// still get their shares; the viewer's part comes back with its fills.
    #[tokio::test]
    async fn a_viewer_holds_at_most_half_of_the_reserve() {
        let reserve = FillReserve::new(1 << 20);
        let (greedy, other): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let held: Vec<_> = (0..8)
            .map(|_| reserve.try_take(Some(greedy), 64 << 10).expect("eight slices of 64 KiB"))
            .collect();
        assert!(reserve.try_take(Some(greedy), 64 << 10).is_none(), "a ninth is over its part");
        assert!(
            reserve.take(Some(greedy), 64 << 10, Duration::from_millis(20)).await.is_none(),
            "nor after waiting"
        );
        assert!(reserve.try_take(Some(other), 64 << 10).is_some(), "another viewer is served");
        assert!(reserve.try_take(None, 64 << 10).is_some(), "and the fleet");
        assert_eq!(reserve.permits.available_permits(), 1024 - 8 * 64, "the waits held nothing");
        drop(held);
        assert!(reserve.take(Some(greedy), 64 << 10, Duration::from_millis(20)).await.is_some());
    }
}
