//! The fleet's control log: invalidations, key-group changes and the
//! control plane's resources written as immutable, time-ordered objects
//! under a prefix of a bucket every node reads, and applied in order by
//! every node, which polls the prefix for keys after the last it applied.
//! S3's read-after-write consistency for PUT and LIST is the only
//! coordination: no consensus code of our own.
//!
//! Trust: whoever writes an entry grants signing keys and names what every
//! node serves, so an entry counts only if it carries an HMAC, under the
//! fleet's secret, over its key and its whole body; anything else under the
//! prefix (a stray, an unsigned or re-keyed entry, one too large) is
//! skipped, counted and logged once, and never stops the entries after it.
//! Viewers never reach the prefix through the edge (`ControlGuard`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use ring::hmac;

use super::auth::FleetSecret;
use crate::cache::unix_millis;
use crate::control::ResourceChange;
use crate::origin::{FetchError, Origin, OriginClient, SmallObject};

/// How far back a node starting up applies the log: entries older than this
/// were applied by the nodes running then, and a node's disk tier rarely
/// holds objects older than a day unaccounted for.
const REPLAY_MILLIS: u64 = 24 * 3600 * 1000;

/// How far behind the newest entry applied each LIST starts, and how far
/// ahead of this node's clock an entry may be dated: nodes' clocks agree
/// within the fleet authentication's window, so an entry written a moment
/// after another by a node whose clock is behind is still found.
const CLOCK_SLACK_MILLIS: u64 = 30_000;

/// The largest entry written (bytes): well below what readers accept (1 MiB),
/// so every entry written is read. Invalidations larger than this are split.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// The most listing pages one poll reads (100,000 keys): a bucket that
/// keeps answering with another page cannot hold the poller for ever.
const MAX_PAGES_PER_POLL: usize = 100;

/// The first line of a signed entry, before the MAC's hex.
const SIGNED_PREFIX: &str = "keyfront-control-v2 ";

/// The time an entry's key names (`<prefix><16 digits>-<node>-<hex>.json`),
/// or `None` for a key that is not an entry.
fn entry_time(prefix: &str, key: &str) -> Option<u64> {
    let name = key.strip_prefix(prefix)?;
    let (digits, rest) = name.split_at_checked(16)?;
    let valid = digits.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with('-') && rest.ends_with(".json");
    valid.then(|| digits.parse().ok()).flatten()
}

/// One entry of the log.
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ControlEntry {
    /// The node that wrote it.
    pub node: String,
    /// When, Unix milliseconds.
    pub time_ms: u64,
    /// Viewer paths to invalidate (`/videos/*` for a prefix), as the admin
    /// API takes them.
    #[serde(default)]
    pub invalidate: Vec<String>,
    /// The control-plane distribution whose objects `invalidate` names;
    /// none for the config file's behaviors.
    #[serde(default)]
    pub distribution: Option<String>,
    /// Key groups the writing node's config changed or added: name -> (key id, PEM).
    #[serde(default)]
    pub key_groups: BTreeMap<String, Vec<(String, String)>>,
    /// Key groups the writing node's config removed: a removal is
    /// published like a change, so no node keeps trusting them.
    #[serde(default)]
    pub removed_key_groups: Vec<String>,
    /// Control-plane resources created, changed or deleted through the
    /// writing node's API: every node with a control plane serves them.
    #[serde(default)]
    pub resources: Vec<ResourceChange>,
}

/// Why an entry was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("a control-log entry would be {0} bytes, over the limit of {MAX_ENTRY_BYTES}")]
    TooLarge(usize),
    #[error("{0}")]
    Write(#[from] FetchError),
}

/// Applies an entry to this node (its cache, its key groups, its control plane).
pub type Apply = Arc<dyn Fn(&ControlEntry) + Send + Sync>;

/// The part of a bucket that holds the control log, for the edge to keep
/// viewers out of it.
#[derive(Clone, Debug)]
pub struct ControlGuard {
    bucket: String,
    /// `/<prefix>`: the start of every entry's key, as a viewer path.
    key_start: String,
}

impl ControlGuard {
    /// Whether `origin_path`, a path sent to `origin`, names an object of
    /// the control log's bucket under its prefix.
    pub fn covers(&self, origin: &Origin, origin_path: &str) -> bool {
        if origin.bucket != self.bucket {
            return false;
        }
        let key = match origin.path_style {
            true => origin_path
                .strip_prefix('/')
                .and_then(|rest| rest.strip_prefix(origin.bucket.as_str())),
            false => Some(origin_path),
        };
        key.is_some_and(|key| key.starts_with(&self.key_start))
    }
}

/// Where the log lives, how often it is read, and the secret its entries
/// are signed with.
pub struct ControlLog {
    node: String,
    secret: FleetSecret,
    origin: Arc<Origin>,
    /// Bucket-relative key prefix, ending in `/`.
    prefix: String,
    poll: Duration,
    client: OriginClient,
    /// What has been applied: the newest entry's time and key, and the keys
    /// applied within `CLOCK_SLACK_MILLIS` of it (listed again, not applied again).
    applied: Mutex<Applied>,
    apply: Mutex<Option<Apply>>,
    /// Entries skipped unapplied (see the module's doc).
    refused: AtomicU64,
    /// When the log was last read whole (Unix milliseconds; 0 before then).
    read_at_ms: AtomicU64,
}

struct Applied {
    newest_ms: u64,
    newest_key: String,
    recent: BTreeMap<String, u64>,
}

impl ControlLog {
    pub fn new(node: String, secret: FleetSecret, origin: Arc<Origin>, prefix: String, poll: Duration) -> Self {
        // Keys start with 16 digits of Unix milliseconds: starting a day ago
        // replays the last day.
        let applied = Applied {
            newest_ms: unix_millis().saturating_sub(REPLAY_MILLIS),
            newest_key: String::new(),
            recent: BTreeMap::new(),
        };
        ControlLog {
            node,
            secret,
            origin,
            prefix,
            poll,
            client: OriginClient::default(),
            applied: Mutex::new(applied),
            apply: Mutex::new(None),
            refused: AtomicU64::new(0),
            read_at_ms: AtomicU64::new(0),
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

    /// How many entries were skipped unapplied.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// When the log was last read whole (Unix milliseconds; 0 before then).
    pub fn read_at_ms(&self) -> u64 {
        self.read_at_ms.load(Ordering::Relaxed)
    }

    /// What keeps viewers out of the log.
    pub fn guard(&self) -> ControlGuard {
        ControlGuard {
            bucket: self.origin.bucket.clone(),
            key_start: format!("{}/{}", self.origin.key_prefix, self.prefix),
        }
    }

    /// Writes an invalidation of `paths` (of distribution `distribution`, or
    /// of the config file's behaviors) to the log for every node (this one
    /// applies it when it reads it back, as the others do), in as many
    /// entries as keep each within `MAX_ENTRY_BYTES`.
    pub async fn publish_invalidation(&self, distribution: Option<String>, paths: Vec<String>) -> Result<(), PublishError> {
        let mut batches: Vec<Vec<String>> = vec![Vec::new()];
        let mut size = 0;
        // JSON text of a path is at most six bytes a byte (`\u00XX`).
        let budget = MAX_ENTRY_BYTES / 2;
        for path in paths {
            let cost = path.len() * 6 + 3;
            if size + cost > budget && !batches.last().is_some_and(Vec::is_empty) {
                batches.push(Vec::new());
                size = 0;
            }
            size += cost;
            batches.last_mut().expect("one batch at least").push(path);
        }
        for invalidate in batches {
            self.publish(ControlEntry {
                invalidate,
                distribution: distribution.clone(),
                ..ControlEntry::default()
            })
            .await?;
        }
        Ok(())
    }

    /// Writes key groups this node's config changed (name -> (key id, PEM))
    /// and those it removed.
    pub async fn publish_key_groups(
        &self,
        groups: BTreeMap<String, Vec<(String, String)>>,
        removed: Vec<String>,
    ) -> Result<(), PublishError> {
        self.publish(ControlEntry {
            key_groups: groups,
            removed_key_groups: removed,
            ..ControlEntry::default()
        })
        .await
    }

    /// Writes changes of the control plane's resources, one entry each.
    pub async fn publish_resources(&self, changes: Vec<ResourceChange>) -> Result<(), PublishError> {
        for change in changes {
            self.publish(ControlEntry {
                resources: vec![change],
                ..ControlEntry::default()
            })
            .await?;
        }
        Ok(())
    }

    async fn publish(&self, entry: ControlEntry) -> Result<(), PublishError> {
        let entry = ControlEntry {
            node: self.node.clone(),
            time_ms: unix_millis(),
            ..entry
        };
        let name = format!("{:016}-{}-{:08x}.json", entry.time_ms, entry.node, rand::random::<u32>());
        let json = serde_json::to_vec(&entry).map_err(|e| FetchError::Failed(e.to_string()))?;
        let body = signed_entry(&self.secret, &name, &json);
        if body.len() > MAX_ENTRY_BYTES {
            return Err(PublishError::TooLarge(body.len()));
        }
        let key = format!("{}{name}", self.prefix);
        Ok(self.client.put_small(&self.origin, &key, "application/json", body.into()).await?)
    }

    /// Reads the entries written since the newest one applied (less the
    /// clock slack), every page of the listing, and applies, in key (time)
    /// order, those not applied yet. Returns how many it applied. A failure
    /// to reach the bucket stops the round, to be retried at the next: no
    /// entry is lost to an outage. An entry that is not one (unsigned, badly
    /// signed, malformed, too large, gone) is skipped and counted; keys that
    /// are not entries, and entries dated ahead of this node's clock by more
    /// than the slack, are passed over without moving the log on.
    pub async fn poll_once(&self) -> Result<usize, FetchError> {
        let after = {
            let applied = self.applied.lock().expect("applied lock");
            format!("{}{:016}", self.prefix, applied.newest_ms.saturating_sub(CLOCK_SLACK_MILLIS))
        };
        let apply = self.apply.lock().expect("apply lock").clone();
        let mut count = 0;
        let mut continuation = None;
        for _ in 0..MAX_PAGES_PER_POLL {
            let page = self
                .client
                .list_keys(&self.origin, &self.prefix, &after, continuation.as_deref())
                .await?;
            for key in page.keys {
                count += self.read_and_apply(key, apply.as_ref()).await?;
            }
            match page.next {
                Some(next) => continuation = Some(next),
                None => break,
            }
        }
        self.read_at_ms.store(unix_millis(), Ordering::Relaxed);
        Ok(count)
    }

    /// Reads the entry at `key` and applies it unless it was, or is refused;
    /// 1 if applied.
    async fn read_and_apply(&self, key: String, apply: Option<&Apply>) -> Result<usize, FetchError> {
        let horizon = unix_millis() + CLOCK_SLACK_MILLIS;
        let Some(time) = entry_time(&self.prefix, &key).filter(|time| *time <= horizon) else {
            return Ok(0);
        };
        if self.applied.lock().expect("applied lock").recent.contains_key(&key) {
            return Ok(0);
        }
        let name = &key[self.prefix.len()..];
        let entry = match self.client.get_small(&self.origin, &key).await? {
            SmallObject::Found(body) => verified_entry(&self.secret, name, &body),
            SmallObject::Unusable(why) => Err(why),
        };
        let applied = match entry {
            Ok(entry) => {
                tracing::info!(
                    from = %entry.node,
                    paths = entry.invalidate.len(),
                    groups = entry.key_groups.len() + entry.removed_key_groups.len(),
                    resources = entry.resources.len(),
                    "fleet control entry"
                );
                if let Some(apply) = apply.cloned() {
                    // Invalidating removes files of the disk tier.
                    let _ = tokio::task::spawn_blocking(move || apply(&entry)).await;
                }
                1
            }
            Err(why) => {
                // Read once: it is remembered below as passed, like an applied one.
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key, why, "fleet control log: an entry refused, not applied");
                0
            }
        };
        let mut state = self.applied.lock().expect("applied lock");
        if time >= state.newest_ms {
            state.newest_ms = time;
            state.newest_key = key.clone();
        }
        state.recent.insert(key, time);
        let oldest = state.newest_ms.saturating_sub(CLOCK_SLACK_MILLIS);
        state.recent.retain(|_, time| *time >= oldest);
        Ok(applied)
    }
}

/// An entry's body: its MAC, under `secret`, over its name (key less the
/// prefix) and its JSON, then the JSON. The name is signed so that an entry
/// copied to another key (a later time, to outlive a revocation) fails.
pub fn signed_entry(secret: &FleetSecret, name: &str, json: &[u8]) -> Vec<u8> {
    let tag = hmac::sign(secret.key(), &entry_message(name, json));
    let mut body = format!("{SIGNED_PREFIX}{}\n", hex::encode(tag.as_ref())).into_bytes();
    body.extend_from_slice(json);
    body
}

fn entry_message(name: &str, json: &[u8]) -> Vec<u8> {
    // The name's length first: no other name and body make this message.
    let mut message = format!("keyfront-control-v2\n{}:{name}\n", name.len()).into_bytes();
    message.extend_from_slice(json);
    message
}

/// The entry in `body`, if it is signed with `secret` for `name` (its key
/// less the prefix) and parses; else why not.
pub fn verified_entry(secret: &FleetSecret, name: &str, body: &[u8]) -> Result<ControlEntry, String> {
    let newline = body.iter().position(|b| *b == b'\n').ok_or("not signed")?;
    let (first, json) = (&body[..newline], &body[newline + 1..]);
    let tag = std::str::from_utf8(first)
        .ok()
        .and_then(|line| line.strip_prefix(SIGNED_PREFIX))
        .filter(|tag| tag.len() == 64)
        .and_then(|tag| hex::decode(tag).ok())
        .ok_or("not signed")?;
    hmac::verify(secret.key(), &entry_message(name, json), &tag).map_err(|_| "its signature does not verify")?;
    serde_json::from_slice(json).map_err(|error| format!("signed but malformed: {error}"))
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
    use super::*;

    fn secret(fill: u8) -> FleetSecret {
        FleetSecret::new(&[fill; 32]).unwrap()
    }

    #[test]
    fn only_entries_signed_for_their_own_name_with_the_secret_count() {
        let name = "0001764259200000-fra-1-0a1b2c3d.json";
        let entry = ControlEntry {
            node: "fra-1".into(),
            time_ms: 1_764_259_200_000,
            invalidate: vec!["/a".into()],
            ..ControlEntry::default()
        };
        let json = serde_json::to_vec(&entry).unwrap();
        let body = signed_entry(&secret(7), name, &json);
        assert_eq!(verified_entry(&secret(7), name, &body), Ok(entry));
        let refused = |body: &[u8], name: &str| verified_entry(&secret(7), name, body).unwrap_err();
        assert_eq!(refused(&json, name), "not signed");
        assert_eq!(
            refused(&signed_entry(&secret(8), name, &json), name),
            "its signature does not verify"
        );
        let later = "0009999999999999-fra-1-0a1b2c3d.json";
        assert_eq!(refused(&body, later), "its signature does not verify", "moved to another key");
        let mut tampered = body.clone();
        *tampered.last_mut().unwrap() = b' ';
        assert_eq!(refused(&tampered, name), "its signature does not verify");
        let garbage = signed_entry(&secret(7), name, b"{ not json");
        assert!(refused(&garbage, name).starts_with("signed but malformed"));
        assert_eq!(refused(b"keyfront-control-v2 zz\n{}", name), "not signed");
    }

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
