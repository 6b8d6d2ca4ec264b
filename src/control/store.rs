//! The control plane's state: every resource with its ETag and times, its
//! configuration kept as the client sent it. Changes are made on a copy and
//! written (to a temporary file, synced, renamed) before they take effect,
//! so a crash leaves the old state or the new, never half of one.
//!
//! Each resource's last change has a version (Unix milliseconds, then its
//! ETag), deletions included: in a fleet, changes made through every node's
//! API travel through the control log, and each node keeps, of every
//! resource, the newest change it has seen, whatever order they arrive in.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::functions::FunctionRecord;
use super::kvs::KvsRecord;
use super::xml::Element;

/// A public key, key group or origin access control.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub etag: String,
    /// When it was created (`CreatedTime`), ISO 8601.
    pub created: String,
    /// When its configuration last changed (`LastModifiedTime`).
    pub modified: String,
    /// The configuration as the client sent it.
    pub config: Element,
}

/// A distribution: a resource with the names it answers to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistributionRecord {
    #[serde(flatten)]
    pub resource: Resource,
    pub domain_name: String,
    /// Unix milliseconds after which reads say `Deployed`.
    pub deployed_at: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InvalidationRecord {
    pub id: String,
    pub created: String,
    /// The `InvalidationBatch` as sent.
    pub batch: Element,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub public_keys: BTreeMap<String, Resource>,
    pub key_groups: BTreeMap<String, Resource>,
    pub origin_access_controls: BTreeMap<String, Resource>,
    /// Legacy origin access identities.
    #[serde(default)]
    pub origin_access_identities: BTreeMap<String, Resource>,
    /// The account's own cache policies (the managed ones are not stored).
    #[serde(default)]
    pub cache_policies: BTreeMap<String, Resource>,
    #[serde(default)]
    pub origin_request_policies: BTreeMap<String, Resource>,
    #[serde(default)]
    pub response_headers_policies: BTreeMap<String, Resource>,
    pub distributions: BTreeMap<String, DistributionRecord>,
    /// By distribution id, oldest first.
    pub invalidations: BTreeMap<String, Vec<InvalidationRecord>>,
    /// By resource ARN.
    pub tags: BTreeMap<String, Vec<(String, String)>>,
    /// By distribution id.
    #[serde(default)]
    pub monitoring_subscriptions: BTreeMap<String, Element>,
    /// CloudFront Functions, by name.
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionRecord>,
    /// Key value stores, by name.
    #[serde(default)]
    pub key_value_stores: BTreeMap<String, KvsRecord>,
    /// The version of each resource's last change (see the module's doc),
    /// by `<collection>/<id>`: deleted ones keep theirs, so an older change
    /// read late does not bring them back.
    #[serde(default)]
    pub versions: BTreeMap<String, (u64, String)>,
}

/// The collections a resource change names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Collection {
    PublicKeys,
    KeyGroups,
    OriginAccessControls,
    OriginAccessIdentities,
    CachePolicies,
    OriginRequestPolicies,
    ResponseHeadersPolicies,
    Distributions,
    /// A distribution's invalidation records, as one list.
    Invalidations,
    /// A resource's tags, by its ARN.
    Tags,
    MonitoringSubscriptions,
    Functions,
    KeyValueStores,
}

const COLLECTIONS: [Collection; 13] = [
    Collection::PublicKeys,
    Collection::KeyGroups,
    Collection::OriginAccessControls,
    Collection::OriginAccessIdentities,
    Collection::CachePolicies,
    Collection::OriginRequestPolicies,
    Collection::ResponseHeadersPolicies,
    Collection::Distributions,
    Collection::Invalidations,
    Collection::Tags,
    Collection::MonitoringSubscriptions,
    Collection::Functions,
    Collection::KeyValueStores,
];

/// A resource created, changed or deleted through one node's API, as the
/// fleet's control log carries it to the others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub collection: Collection,
    pub id: String,
    /// The change's version: Unix milliseconds, then the ETag it gave.
    pub version: (u64, String),
    /// The resource after the change (a `Resource`, a `DistributionRecord`,
    /// a list of invalidation records or of tags); `None` when deleted.
    pub record: Option<serde_json::Value>,
}

impl Collection {
    fn name(self) -> &'static str {
        match self {
            Collection::PublicKeys => "public-key",
            Collection::KeyGroups => "key-group",
            Collection::OriginAccessControls => "origin-access-control",
            Collection::OriginAccessIdentities => "origin-access-identity",
            Collection::CachePolicies => "cache-policy",
            Collection::OriginRequestPolicies => "origin-request-policy",
            Collection::ResponseHeadersPolicies => "response-headers-policy",
            Collection::Distributions => "distribution",
            Collection::Invalidations => "invalidations",
            Collection::Tags => "tags",
            Collection::MonitoringSubscriptions => "monitoring-subscription",
            Collection::Functions => "function",
            Collection::KeyValueStores => "key-value-store",
        }
    }

    /// Each resource of `state` in this collection, as it would travel.
    fn records(self, state: &State) -> BTreeMap<&String, serde_json::Value> {
        fn json<T: Serialize>(map: &BTreeMap<String, T>) -> BTreeMap<&String, serde_json::Value> {
            map.iter()
                .map(|(id, record)| (id, serde_json::to_value(record).expect("records serialize")))
                .collect()
        }
        match self {
            Collection::PublicKeys => json(&state.public_keys),
            Collection::KeyGroups => json(&state.key_groups),
            Collection::OriginAccessControls => json(&state.origin_access_controls),
            Collection::OriginAccessIdentities => json(&state.origin_access_identities),
            Collection::CachePolicies => json(&state.cache_policies),
            Collection::OriginRequestPolicies => json(&state.origin_request_policies),
            Collection::ResponseHeadersPolicies => json(&state.response_headers_policies),
            Collection::Distributions => json(&state.distributions),
            Collection::Invalidations => json(&state.invalidations),
            Collection::Tags => json(&state.tags),
            Collection::MonitoringSubscriptions => json(&state.monitoring_subscriptions),
            Collection::Functions => json(&state.functions),
            Collection::KeyValueStores => json(&state.key_value_stores),
        }
    }

    /// Puts `record` (or, for `None`, nothing) as resource `id` of `state`;
    /// false when the record is not one of this collection.
    fn put(self, state: &mut State, id: &str, record: Option<&serde_json::Value>) -> bool {
        fn set<T: serde::de::DeserializeOwned>(map: &mut BTreeMap<String, T>, id: &str, record: Option<&serde_json::Value>) -> bool {
            match record.map(|record| T::deserialize(record)) {
                None => {
                    map.remove(id);
                    true
                }
                Some(Ok(value)) => {
                    map.insert(id.to_owned(), value);
                    true
                }
                Some(Err(_)) => false,
            }
        }
        match self {
            Collection::PublicKeys => set(&mut state.public_keys, id, record),
            Collection::KeyGroups => set(&mut state.key_groups, id, record),
            Collection::OriginAccessControls => set(&mut state.origin_access_controls, id, record),
            Collection::OriginAccessIdentities => set(&mut state.origin_access_identities, id, record),
            Collection::CachePolicies => set(&mut state.cache_policies, id, record),
            Collection::OriginRequestPolicies => set(&mut state.origin_request_policies, id, record),
            Collection::ResponseHeadersPolicies => set(&mut state.response_headers_policies, id, record),
            Collection::Distributions => set(&mut state.distributions, id, record),
            Collection::Invalidations => set(&mut state.invalidations, id, record),
            Collection::Tags => set(&mut state.tags, id, record),
            Collection::MonitoringSubscriptions => set(&mut state.monitoring_subscriptions, id, record),
            Collection::Functions => set(&mut state.functions, id, record),
            Collection::KeyValueStores => set(&mut state.key_value_stores, id, record),
        }
    }
}

/// The changes between `before` and `after`, versioned `now_ms`.
fn changes_between(before: &State, after: &State, now_ms: u64) -> Vec<ResourceChange> {
    let mut changes = Vec::new();
    for collection in COLLECTIONS {
        let (old, new) = (collection.records(before), collection.records(after));
        let ids: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).copied().collect();
        for id in ids {
            let record = new.get(id);
            if old.get(id) == record {
                continue;
            }
            let etag = record.and_then(|r| r.get("etag")).and_then(|e| e.as_str()).unwrap_or("").to_owned();
            changes.push(ResourceChange {
                collection,
                id: id.clone(),
                version: (now_ms, etag),
                record: record.cloned(),
            });
        }
    }
    changes
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a control-plane state: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
}

/// The state, in memory and (when a directory is given) on disk.
pub struct Store {
    state: Mutex<State>,
    file: Option<PathBuf>,
    /// Changes made through this node's API, not yet handed to the fleet.
    outbox: Mutex<Vec<ResourceChange>>,
}

const STATE_FILE: &str = "control-state.json";

impl Store {
    /// The state kept in `dir` (read if it is there), or only in memory.
    pub fn open(dir: Option<PathBuf>) -> Result<Store, StoreError> {
        let Some(dir) = dir else {
            return Ok(Store {
                state: Mutex::default(),
                file: None,
                outbox: Mutex::default(),
            });
        };
        crate::private_fs::private_dir(&dir).map_err(|source| StoreError::Io { path: dir.clone(), source })?;
        let file = dir.join(STATE_FILE);
        let state = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                path: file.clone(),
                source,
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(source) => return Err(StoreError::Io { path: file, source }),
        };
        Ok(Store {
            state: Mutex::new(state),
            file: Some(file),
            outbox: Mutex::default(),
        })
    }

    /// What `read` makes of the state as it is now; changes wait for it,
    /// so what it makes is never older than what another call made before.
    pub fn read<T>(&self, read: impl FnOnce(&State) -> T) -> T {
        read(&self.state.lock().expect("control state lock"))
    }

    /// Applies `change` to a copy of the state; when it succeeds, the copy
    /// is written and becomes the state, and the resources it changed wait
    /// in the outbox (`take_changes`). Changes run one at a time.
    pub fn update<T, E: From<StoreError>>(&self, change: impl FnOnce(&mut State) -> Result<T, E>) -> Result<T, E> {
        let mut current = self.state.lock().expect("control state lock");
        let mut next = current.clone();
        let result = change(&mut next)?;
        let changes = changes_between(&current, &next, crate::cache::unix_millis());
        for change in &changes {
            next.versions.insert(version_key(change), change.version.clone());
        }
        if let Some(file) = &self.file {
            write_atomically(file, &next)?;
        }
        *current = next;
        self.outbox.lock().expect("outbox lock").extend(changes);
        Ok(result)
    }

    /// The changes made through this node's API since the last call.
    pub fn take_changes(&self) -> Vec<ResourceChange> {
        std::mem::take(&mut *self.outbox.lock().expect("outbox lock"))
    }

    /// Takes in changes made through other nodes, each only if it is newer
    /// than the resource's last change here (deletions included); returns
    /// whether anything changed. A change whose record does not fit its
    /// collection is passed over.
    pub fn adopt(&self, changes: &[ResourceChange]) -> Result<bool, StoreError> {
        let mut current = self.state.lock().expect("control state lock");
        let mut next = current.clone();
        let mut adopted = false;
        for change in changes {
            let key = version_key(change);
            if next.versions.get(&key).is_some_and(|version| *version >= change.version) {
                continue;
            }
            if change.collection.put(&mut next, &change.id, change.record.as_ref()) {
                next.versions.insert(key, change.version.clone());
                adopted = true;
            } else {
                tracing::warn!(id = %change.id, "a published resource that is not one; ignored");
            }
        }
        if !adopted {
            return Ok(false);
        }
        if let Some(file) = &self.file {
            write_atomically(file, &next)?;
        }
        *current = next;
        Ok(true)
    }
}

fn version_key(change: &ResourceChange) -> String {
    format!("{}/{}", change.collection.name(), change.id)
}

fn write_atomically(file: &std::path::Path, state: &State) -> Result<(), StoreError> {
    use std::io::Write;
    let io = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| StoreError::Io { path, source }
    };
    let temporary = file.with_extension("json.tmp");
    let bytes = serde_json::to_vec(state).expect("the state serializes");
    let mut out = crate::private_fs::private_file(&temporary).map_err(io(&temporary))?;
    out.write_all(&bytes).map_err(io(&temporary))?;
    out.sync_all().map_err(io(&temporary))?;
    std::fs::rename(&temporary, file).map_err(io(file))?;
    if let Some(dir) = file.parent() {
        // The rename itself is durable once its directory is synced.
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(name: &str) -> Resource {
        Resource {
            etag: "E1".into(),
            created: "t".into(),
            modified: "t".into(),
            config: Element::leaf("Name", name),
        }
    }

    #[test]
    fn a_failed_change_changes_nothing_and_a_reopened_store_has_the_last_good_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Some(dir.path().to_owned())).unwrap();
        store
            .update(|state| {
                state.public_keys.insert("K1".into(), resource("one"));
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let failed: Result<(), StoreError> = store.update(|state| {
            state.public_keys.clear();
            Err(StoreError::Io {
                path: "refused".into(),
                source: std::io::Error::other("refused"),
            })
        });
        assert!(failed.is_err());
        assert_eq!(store.read(|state| state.public_keys.len()), 1, "the refused change left no trace");
        let reopened = Store::open(Some(dir.path().to_owned())).unwrap();
        assert_eq!(reopened.read(|state| state.public_keys["K1"].config.text.clone()), "one");
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join(STATE_FILE)), 0o600, "the state is its owner's alone");
        assert!(!dir.path().join("control-state.json.tmp").exists());

        std::fs::write(dir.path().join(STATE_FILE), b"{half").unwrap();
        let error = Store::open(Some(dir.path().to_owned())).err().unwrap().to_string();
        assert!(error.contains("not a control-plane state"), "{error}");
    }

    #[test]
    fn the_newest_change_of_each_resource_wins_in_any_order_deletions_included() {
        let origin = Store::open(None).unwrap();
        origin
            .update(|state| {
                state.public_keys.insert("K1".into(), resource("one"));
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let created = origin.take_changes();
        assert_eq!(created.len(), 1);
        assert!(origin.take_changes().is_empty(), "handed out once");
        std::thread::sleep(std::time::Duration::from_millis(2));
        origin
            .update(|state| {
                state.public_keys.remove("K1");
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let deleted = origin.take_changes();
        assert_eq!(deleted[0].record, None);

        let other = Store::open(None).unwrap();
        assert!(other.adopt(&deleted).unwrap());
        assert!(
            !other.adopt(&created).unwrap(),
            "the older creation, read late, does not undo the deletion"
        );
        assert!(other.read(|state| state.public_keys.is_empty()));
        let fresh = Store::open(None).unwrap();
        assert!(fresh.adopt(&created).unwrap());
        assert!(!fresh.adopt(&created).unwrap(), "the same change twice changes nothing");
        assert_eq!(fresh.read(|state| state.public_keys["K1"].config.text.clone()), "one");
        assert!(fresh.take_changes().is_empty(), "adopted changes are not published again");
        let mut foreign = created[0].clone();
        foreign.version.0 += 10;
        foreign.record = Some(serde_json::json!({"not": "a resource"}));
        assert!(!fresh.adopt(&[foreign]).unwrap(), "a record that is not one is passed over");
    }
}
