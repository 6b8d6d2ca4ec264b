//! The fleet's control log: invalidations and key-group changes written as immutable,
//! time-ordered objects under a prefix of a bucket every node reads, and
//! applied in order by every node, which polls the prefix for keys after
//! the last it applied. S3's read-after-write consistency for PUT and LIST
//! is the only coordination: no consensus code of our own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::origin::{FetchError, OriginClient, S3Origin};

/// How far back a node starting up applies the log: entries older than this
/// were applied by the nodes running then, and a node's disk tier rarely
/// holds objects older than a day unaccounted for.
const REPLAY_MILLIS: u64 = 24 * 3600 * 1000;

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
    /// The last key applied; the next LIST starts after it.
    last_applied: Mutex<String>,
    apply: Mutex<Option<Apply>>,
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ControlLog {
    pub fn new(node: String, origin: Arc<S3Origin>, prefix: String, poll: Duration) -> Self {
        // Keys start with 16 digits of Unix milliseconds: starting after the
        // key of a day ago replays the last day.
        let start = format!("{prefix}{:016}", unix_millis().saturating_sub(REPLAY_MILLIS));
        ControlLog {
            node,
            origin,
            prefix,
            poll,
            client: OriginClient::default(),
            last_applied: Mutex::new(start),
            apply: Mutex::new(None),
        }
    }

    /// What polling does with each new entry (set once the cache exists).
    pub fn set_apply(&self, apply: Apply) {
        *self.apply.lock().expect("apply lock") = Some(apply);
    }

    /// How often the log is read.
    pub fn poll_interval(&self) -> Duration {
        self.poll
    }

    /// The last key applied.
    pub fn last_applied(&self) -> String {
        self.last_applied.lock().expect("last applied lock").clone()
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

    /// Reads the entries written since the last one applied and applies
    /// them in key (time) order. Returns how many were applied. An entry
    /// that cannot be read stops the round, to be retried at the next one:
    /// entries are never applied out of order or skipped.
    pub async fn poll_once(&self) -> Result<usize, FetchError> {
        let after = self.last_applied();
        let keys = self.client.list_keys(&self.origin, &self.prefix, &after).await?;
        let apply = self.apply.lock().expect("apply lock").clone();
        let mut applied = 0;
        for key in keys {
            let body = self.client.get_small(&self.origin, &key).await?;
            match serde_json::from_slice::<ControlEntry>(&body) {
                Ok(entry) => {
                    tracing::info!(from = %entry.node, paths = entry.invalidate.len(), groups = entry.key_groups.len(), "fleet control entry");
                    if let Some(apply) = apply.clone() {
                        // Invalidating removes files of the disk tier.
                        let _ = tokio::task::spawn_blocking(move || apply(&entry)).await;
                    }
                    applied += 1;
                }
                // Not ours to read (a stray object): skipped, never retried.
                Err(error) => tracing::warn!(%error, key, "fleet control log: an entry that is not one, skipped"),
            }
            *self.last_applied.lock().expect("last applied lock") = key;
        }
        Ok(applied)
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
