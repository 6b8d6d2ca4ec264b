//! The control plane's state: every resource with its ETag and times, its
//! configuration kept as the client sent it. Changes are made on a copy and
//! written (to a temporary file, synced, renamed) before they take effect,
//! so a crash leaves the old state or the new, never half of one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::xml::Element;

/// A public key, key group or origin access control.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    pub distributions: BTreeMap<String, DistributionRecord>,
    /// By distribution id, oldest first.
    pub invalidations: BTreeMap<String, Vec<InvalidationRecord>>,
    /// By resource ARN.
    pub tags: BTreeMap<String, Vec<(String, String)>>,
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
}

const STATE_FILE: &str = "control-state.json";

impl Store {
    /// The state kept in `dir` (read if it is there), or only in memory.
    pub fn open(dir: Option<PathBuf>) -> Result<Store, StoreError> {
        let Some(dir) = dir else {
            return Ok(Store {
                state: Mutex::default(),
                file: None,
            });
        };
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io { path: dir.clone(), source })?;
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
        })
    }

    /// A copy of the state as it is now.
    pub fn snapshot(&self) -> State {
        self.state.lock().expect("control state lock").clone()
    }

    /// Applies `change` to a copy of the state; when it succeeds, the copy
    /// is written and becomes the state. Changes run one at a time.
    pub fn update<T, E: From<StoreError>>(&self, change: impl FnOnce(&mut State) -> Result<T, E>) -> Result<T, E> {
        let mut current = self.state.lock().expect("control state lock");
        let mut next = current.clone();
        let result = change(&mut next)?;
        if let Some(file) = &self.file {
            write_atomically(file, &next)?;
        }
        *current = next;
        Ok(result)
    }
}

fn write_atomically(file: &std::path::Path, state: &State) -> Result<(), StoreError> {
    use std::io::Write;
    let io = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| StoreError::Io { path, source }
    };
    let temporary = file.with_extension("json.tmp");
    let bytes = serde_json::to_vec(state).expect("the state serializes");
    let mut out = std::fs::File::create(&temporary).map_err(io(&temporary))?;
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
        assert_eq!(store.snapshot().public_keys.len(), 1, "the refused change left no trace");
        let reopened = Store::open(Some(dir.path().to_owned())).unwrap();
        assert_eq!(reopened.snapshot().public_keys["K1"].config.text, "one");
        assert!(!dir.path().join("control-state.json.tmp").exists());

        std::fs::write(dir.path().join(STATE_FILE), b"{half").unwrap();
        let error = Store::open(Some(dir.path().to_owned())).err().unwrap().to_string();
        assert!(error.contains("not a control-plane state"), "{error}");
    }
}
