//! Recent invalidations (bans), remembered for a while with their times, so
//! that this node can tell a parent not to answer from a copy fetched before
//! them (the purge race between tiers: an edge purges, then refetches the
//! old copy from a shield that has not purged yet).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

/// How long a ban is remembered: far longer than an invalidation takes to
/// reach every node of a fleet (a poll interval and a second).
const BAN_WINDOW_MILLIS: u64 = 10 * 60 * 1000;
/// The most bans remembered; the oldest go first.
const MAX_BANS: usize = 10_000;

struct Ban {
    key: String,
    prefix: bool,
    at_ms: u64,
}

#[derive(Default)]
pub struct Bans(Mutex<VecDeque<Ban>>);

pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Bans {
    /// Remembers that `key` (or every key starting with it) was invalidated now.
    pub fn record(&self, key: &str, prefix: bool) {
        let now = unix_millis();
        let mut bans = self.0.lock().expect("bans lock");
        while bans.len() >= MAX_BANS || bans.front().is_some_and(|ban| ban.at_ms + BAN_WINDOW_MILLIS < now) {
            bans.pop_front();
        }
        bans.push_back(Ban {
            key: key.to_owned(),
            prefix,
            at_ms: now,
        });
    }

    /// The time (Unix milliseconds) of the latest remembered ban covering
    /// `key`, if any.
    pub fn latest_covering(&self, key: &str) -> Option<u64> {
        let now = unix_millis();
        let bans = self.0.lock().expect("bans lock");
        bans.iter()
            .rev()
            .filter(|ban| ban.at_ms + BAN_WINDOW_MILLIS >= now)
            .find(|ban| if ban.prefix { key.starts_with(&ban.key) } else { key == ban.key })
            .map(|ban| ban.at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_covering_ban_is_found() {
        let bans = Bans::default();
        assert_eq!(bans.latest_covering("s\n/media/a.mp4"), None);
        bans.record("s\n/media/", true);
        let first = bans.latest_covering("s\n/media/a.mp4").unwrap();
        assert_eq!(bans.latest_covering("s\n/other/a.mp4"), None);
        bans.record("s\n/media/b.mp4", false);
        assert_eq!(
            bans.latest_covering("s\n/media/a.mp4"),
            Some(first),
            "an exact ban covers its key only"
        );
        assert!(bans.latest_covering("s\n/media/b.mp4").unwrap() >= first);
    }

    #[test]
    fn bans_are_bounded() {
        let bans = Bans::default();
        for i in 0..MAX_BANS + 10 {
            bans.record(&format!("k{i}"), false);
        }
        assert_eq!(bans.0.lock().unwrap().len(), MAX_BANS);
        assert_eq!(bans.latest_covering("k0"), None, "the oldest went first");
    }
}
