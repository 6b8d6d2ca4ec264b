//! The fleet's control log: invalidations and key-group changes written as immutable,
//! time-ordered objects under a prefix of a bucket every node reads, and
//! applied in order by every node, which polls the prefix for keys after
//! the last it applied. S3's read-after-write consistency for PUT and LIST
//! is the only coordination: no consensus code of our own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::cache::unix_millis;
use crate::origin::{FetchError, OriginClient, S3Origin};

/// How far back a node starting up applies the log: entries older than this
/// were applied by the nodes running then, and a node's disk tier rarely
/// holds objects older than a day unaccounted for.
const REPLAY_MILLIS: u64 = 24 * 3600 * 1000;

/// How far behind the newest entry applied each LIST starts, and how far
/// ahead of this node's clock an entry may be dated: nodes' clocks agree
/// within the fleet authentication's window, so an entry written a moment
/// after another by a node whose clock is behind is still found.
const CLOCK_SLACK_MILLIS: u64 = 30_000;

/// The time an entry's key names (`<prefix><16 digits>-<node>-<hex>.json`),
/// or `None` for a key that is not an entry.
fn entry_time(prefix: &str, key: &str) -> Option<u64> {
    let name = key.strip_prefix(prefix)?;
    let (digits, rest) = name.split_at_checked(16)?;
    let valid = digits.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with('-') && rest.ends_with(".json");
    valid.then(|| digits.parse().ok()).flatten()
}

/// One entry of the log.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ControlEntry {
    /// The node that wrote it.
    pub node: String,
    /// When, Unix milliseconds.
    pub time_ms: u64,
    /// Viewer paths to invalidate (`/videos/*` for a prefix), as the admin
    /// API takes them.
    #[serde(default)]
    pub invalidate: Vec<String>,
    /// Key groups the writing node's config changed: name -> (key id, PEM).
    #[serde(default)]
    pub key_groups: BTreeMap<String, Vec<(String, String)>>,
}

/// Applies an entry to this node (its cache, its key groups).
pub type Apply = Arc<dyn Fn(&ControlEntry) + Send + Sync>;

/// Where the log lives and how often it is read.
pub struct ControlLog {
    node: String,
    origin: Arc<S3Origin>,
    /// Bucket-relative key prefix, ending in `/`.
    prefix: String,
    poll: Duration,
    client: OriginClient,
    /// What has been applied: the newest entry's time and key, and the keys
    /// applied within `CLOCK_SLACK_MILLIS` of it (listed again, not applied again).
    applied: Mutex<Applied>,
    apply: Mutex<Option<Apply>>,
}

struct Applied {
    newest_ms: u64,
    newest_key: String,
    recent: BTreeMap<String, u64>,
}

impl ControlLog {
    pub fn new(node: String, origin: Arc<S3Origin>, prefix: String, poll: Duration) -> Self {
        // Keys start with 16 digits of Unix milliseconds: starting a day ago
        // replays the last day.
        let applied = Applied {
            newest_ms: unix_millis().saturating_sub(REPLAY_MILLIS),
            newest_key: String::new(),
            recent: BTreeMap::new(),
        };
        ControlLog {
            node,
            origin,
            prefix,
            poll,
            client: OriginClient::default(),
            applied: Mutex::new(applied),
            apply: Mutex::new(None),
        }
    }

    /// What polling does with each new entry (set once the cache exists).
    pub fn set_apply(&self, apply: Apply) {
        *self.apply.lock().expect("apply lock") = Some(apply);
    }

    /// The newest key applied (empty before the first).
    pub fn last_applied(&self) -> String {
        self.applied.lock().expect("applied lock").newest_key.clone()
    }

    /// Writes an invalidation of `paths` to the log for every node (this
    /// one applies it when it reads it back, as the others do).
    pub async fn publish_invalidation(&self, paths: Vec<String>) -> Result<(), FetchError> {
        self.publish(paths, BTreeMap::new()).await
    }

    /// Writes key groups this node's config changed (name -> (key id, PEM)).
    pub async fn publish_key_groups(&self, groups: BTreeMap<String, Vec<(String, String)>>) -> Result<(), FetchError> {
        self.publish(Vec::new(), groups).await
    }

    async fn publish(&self, invalidate: Vec<String>, key_groups: BTreeMap<String, Vec<(String, String)>>) -> Result<(), FetchError> {
        let entry = ControlEntry {
            node: self.node.clone(),
            time_ms: unix_millis(),
            invalidate,
            key_groups,
        };
        let key = format!(
            "{}{:016}-{}-{:08x}.json",
            self.prefix,
            entry.time_ms,
            entry.node,
            rand::random::<u32>()
        );
        let body = serde_json::to_vec(&entry).map_err(|e| FetchError::Failed(e.to_string()))?;
        self.client.put_small(&self.origin, &key, "application/json", body.into()).await
    }

    /// Reads the entries written since the newest one applied (less the
    /// clock slack) and applies, in key (time) order, those not applied yet.
    /// Returns how many it applied. An entry that cannot be read stops the
    /// round, to be retried at the next: none is skipped. Objects that are
    /// not entries, and entries dated ahead of this node's clock by more than
    /// the slack, are passed over without moving the log on.
    pub async fn poll_once(&self) -> Result<usize, FetchError> {
        let after = {
            let applied = self.applied.lock().expect("applied lock");
            format!("{}{:016}", self.prefix, applied.newest_ms.saturating_sub(CLOCK_SLACK_MILLIS))
        };
        let keys = self.client.list_keys(&self.origin, &self.prefix, &after).await?;
        let apply = self.apply.lock().expect("apply lock").clone();
        let horizon = unix_millis() + CLOCK_SLACK_MILLIS;
        let mut count = 0;
        for key in keys {
            let Some(time) = entry_time(&self.prefix, &key).filter(|time| *time <= horizon) else {
                continue;
            };
            if self.applied.lock().expect("applied lock").recent.contains_key(&key) {
                continue;
            }
            let body = self.client.get_small(&self.origin, &key).await?;
            match serde_json::from_slice::<ControlEntry>(&body) {
                Ok(entry) => {
                    tracing::info!(from = %entry.node, paths = entry.invalidate.len(), groups = entry.key_groups.len(), "fleet control entry");
                    if let Some(apply) = apply.clone() {
                        // Invalidating removes files of the disk tier.
                        let _ = tokio::task::spawn_blocking(move || apply(&entry)).await;
                    }
                    count += 1;
                }
                // Named like an entry, not one: passed over, never retried.
                Err(error) => tracing::warn!(%error, key, "fleet control log: an entry that is not one, skipped"),
            }
            let mut applied = self.applied.lock().expect("applied lock");
            if time >= applied.newest_ms {
                applied.newest_ms = time;
                applied.newest_key = key.clone();
            }
            applied.recent.insert(key, time);
            let oldest = applied.newest_ms.saturating_sub(CLOCK_SLACK_MILLIS);
            applied.recent.retain(|_, time| *time >= oldest);
        }
        Ok(count)
    }
}

#[async_trait]
impl BackgroundService for ControlLog {
    /// Polls every `poll` until shutdown; a failed round is logged and
    /// retried at the next.
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            if let Err(error) = self.poll_once().await {
                tracing::warn!(%error, "fleet control log: reading failed; retrying");
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::entry_time;

    #[test]
    fn only_keys_shaped_like_entries_are_entries() {
        let prefix = "_keyfront/control/";
        assert_eq!(
            entry_time(prefix, "_keyfront/control/0001764259200000-fra-1-0a1b2c3d.json"),
            Some(1_764_259_200_000)
        );
        for stray in [
            "_keyfront/control/zzz",
            "_keyfront/control/0001764259200000.json",
            "_keyfront/control/000176425920000x-fra-1-0a1b2c3d.json",
            "_keyfront/control/0001764259200000-fra-1-0a1b2c3d.txt",
            "_keyfront/control/17642",
            "other/0001764259200000-fra-1-0a1b2c3d.json",
            "_keyfront/control/é001764259200000-fra-1-0a1b2c3d.json",
        ] {
            assert_eq!(entry_time(prefix, stray), None, "{stray}");
        }
    }
}
