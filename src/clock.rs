//! The wall clock the cache and the edge read: the system's, plus an
//! offset tests move forward to let a TTL pass without sleeping through
//! it. Only a node's own decisions read it (freshness, ages, signature
//! expiry, its access log); times it exchanges with other nodes (the fleet
//! MAC, the control log, bans) stay on the system clock, which every node
//! shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A handle on one clock; clones read and move the same one.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// How far this clock runs ahead of the system's, in milliseconds.
    ahead_ms: Arc<AtomicU64>,
}

impl Clock {
    /// The time now.
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_millis(self.ahead_ms.load(Ordering::Relaxed))
    }

    /// Whole seconds since the Unix epoch (0 before it).
    pub fn unix_seconds(&self) -> u64 {
        self.now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    /// Moves this clock `by` forward, for every holder of it. Never back:
    /// ages and freshness only grow.
    pub fn advance(&self, by: Duration) {
        self.ahead_ms.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_move_together_and_only_forward() {
        let clock = Clock::default();
        let held = clock.clone();
        let before = held.unix_seconds();
        clock.advance(Duration::from_secs(3600));
        let after = held.unix_seconds();
        assert!((3600..3602).contains(&(after - before)), "{before} -> {after}");
        assert!(held.now() > SystemTime::now() + Duration::from_secs(3599));
    }
}
