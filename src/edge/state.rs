//! What every request reads and what changes it: the routing table (swapped
//! whole by a reload, a control-plane change or an adopted key group), the
//! cache, the fleet, the verifier, the logs. Composed by `crate::server`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::accesslog::AccessLog;
use crate::auth::Verifier;
use crate::cache::{Cache, ObjectRef, variant_prefix};
use crate::config::{Config, ConfigError};
use crate::control::{ControlPlane, ResourceChange, ServingHandle};
use crate::fleet::{ControlEntry, ControlGuard, ControlLog, Fleet};
use crate::metrics::Metrics;
use crate::origin::OriginClient;
use crate::request::canonical_pattern;
use crate::routing::KeyGroups;
use crate::routing::{Distribution, FILE_TABLE, FileTable, Routing, from_published, publish_form};

/// What every request needs, shared by all of pingora's threads.
pub struct EdgeState {
    /// Replaced whole by a reload; each request keeps the snapshot it began
    /// with. Read on every request without a lock (a `RwLock`'s reader count
    /// is one cache line every core writes to).
    routing: ArcSwap<Routing>,
    /// Held while the routing is read, changed and replaced, so that two
    /// changes at once cannot lose one.
    routing_update: Mutex<()>,
    /// Key groups adopted from the fleet's control log (another node's
    /// rotation or removal: then empty), laid over the file's until the file
    /// changes them.
    adopted_key_groups: Mutex<KeyGroups>,
    /// The config file, read again by `reload`.
    config_source: PathBuf,
    /// When the config in force (its file or a key file it names) was last
    /// modified (Unix milliseconds): a control-log entry older than it does
    /// not change the key groups the file defines, so a restart never
    /// brings back a key the file dropped.
    config_modified_ms: AtomicU64,
    /// The control plane on this node, if any: other nodes' API changes,
    /// read from the control log, are brought to it. Weak: the control
    /// plane serves into this state.
    control_plane: OnceLock<Weak<ControlPlane>>,
    /// The fleet's control log's part of its bucket: no viewer reaches it.
    pub control_guard: Option<ControlGuard>,
    pub verifier: Verifier,
    pub cache: Arc<Cache>,
    pub metrics: Metrics,
    /// The client of passthrough requests (uploads, deletes): the cache's
    /// own client counts only the cache's traffic.
    pub passthrough: OriginClient,
    pub access_log: Option<AccessLog>,
    /// Seconds an idle keep-alive viewer connection stays open.
    pub viewer_idle_seconds: u64,
    /// How long one write may wait for a viewer to read.
    pub viewer_send_timeout: std::time::Duration,
    /// The header holding the viewer's country, if a trusted proxy sets one.
    pub viewer_country_header: Option<http::HeaderName>,
    /// The port of this node's TLS listeners, if it has any: where a
    /// `redirect-to-https` behavior sends a plain-HTTP viewer. Without one,
    /// TLS ends in front of the node and every behavior allows HTTP.
    pub https_port: Option<u16>,
    /// This node's fleet, if it is in one: it checks other nodes' requests.
    pub fleet: Option<Arc<Fleet>>,
}

/// What an `EdgeState` is made of, composed from the config by `crate::server`.
pub struct EdgeParts {
    /// The config file's table (no distributions yet).
    pub routing: Routing,
    /// The config file, read again by `reload`.
    pub config_source: PathBuf,
    /// When the config in force (its file or a key file) was last modified.
    pub config_modified_ms: u64,
    pub cache: Arc<Cache>,
    pub fleet: Option<Arc<Fleet>>,
    pub access_log: Option<AccessLog>,
    pub viewer_idle_timeout: Duration,
    pub viewer_send_timeout: Duration,
    pub viewer_country_header: Option<http::HeaderName>,
    pub https_port: Option<u16>,
}

impl EdgeState {
    /// The state made of `parts`, applying the fleet's control log (if
    /// any) from now on.
    pub fn new(parts: EdgeParts) -> Arc<Self> {
        let control_guard = parts
            .fleet
            .as_ref()
            .and_then(|fleet| fleet.control.as_ref())
            .map(|control| control.guard());
        let state = Arc::new(Self {
            metrics: Metrics::new(&parts.cache, control_guard.is_some()),
            passthrough: OriginClient::default(),
            cache: parts.cache,
            fleet: parts.fleet,
            control_guard,
            config_modified_ms: AtomicU64::new(parts.config_modified_ms),
            control_plane: OnceLock::new(),
            config_source: parts.config_source,
            routing: ArcSwap::from_pointee(parts.routing),
            routing_update: Mutex::default(),
            adopted_key_groups: Mutex::default(),
            verifier: Verifier::default(),
            viewer_idle_seconds: parts.viewer_idle_timeout.as_secs(),
            viewer_send_timeout: parts.viewer_send_timeout,
            viewer_country_header: parts.viewer_country_header,
            https_port: parts.https_port,
            access_log: parts.access_log,
        });
        if let Some(control) = state.fleet.as_ref().and_then(|fleet| fleet.control.as_ref()) {
            // Weak: the log's poller must not keep the state alive.
            let edge = Arc::downgrade(&state);
            control.set_apply(Arc::new(move |entry: &ControlEntry| {
                if let Some(state) = edge.upgrade() {
                    state.apply_control_entry(entry);
                }
            }));
        }
        state
    }

    /// The control plane on this node: other nodes' API changes, read from
    /// the control log, are brought to it.
    pub fn attach_control_plane(&self, plane: &Arc<ControlPlane>) {
        let _ = self.control_plane.set(Arc::downgrade(plane));
    }

    /// Tells the fleet (if it keeps a control log) of key groups this
    /// node's file changed, so that every node honours a rotation. Runs on
    /// the caller's runtime, off the reload.
    fn publish_key_groups(&self, rotated: &KeyGroups, removed: Vec<String>) {
        if rotated.is_empty() && removed.is_empty() {
            return;
        }
        let published = publish_form(rotated);
        self.publish_to_fleet("key groups changed", move |control| async move {
            control.publish_key_groups(published, removed).await
        });
    }

    /// Runs `publish` on the fleet's control log, if this node has one, on
    /// the caller's runtime; a failure is logged as `what`, not published.
    fn publish_to_fleet<F>(&self, what: &'static str, publish: impl FnOnce(Arc<ControlLog>) -> F)
    where
        F: std::future::Future<Output = Result<(), crate::fleet::PublishError>> + Send + 'static,
    {
        let Some(control) = self.fleet.as_ref().and_then(|fleet| fleet.control.clone()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return tracing::warn!(what, "not published to the fleet: no runtime");
        };
        let publishing = publish(control);
        runtime.spawn(async move {
            if let Err(error) = publishing.await {
                tracing::error!(%error, what, "not published to the fleet");
            }
        });
    }

    /// Applies an entry of the fleet's control log: its invalidations, the
    /// key groups another node rotated or removed, the control-plane
    /// resources changed through another node's API. Blocking (disk).
    pub fn apply_control_entry(&self, entry: &ControlEntry) {
        self.invalidate_distribution(entry.distribution.as_deref().unwrap_or(FILE_TABLE), &entry.invalidate);
        if !entry.resources.is_empty() {
            match self.control_plane.get().and_then(Weak::upgrade) {
                Some(plane) => plane.adopt(&entry.resources),
                None => tracing::debug!(from = %entry.node, "control-plane resources in the fleet's log; this node runs no control plane"),
            }
        }
        self.adopt_key_groups(entry);
    }

    /// Lays the key groups of `entry` over the file's, except where the
    /// file was modified after the entry was written: the file in force is
    /// authoritative for the groups it defines unless a newer entry says
    /// otherwise.
    fn adopt_key_groups(&self, entry: &ControlEntry) {
        let mut groups = from_published(&entry.key_groups);
        groups.extend(entry.removed_key_groups.iter().map(|name| (name.clone(), Vec::new())));
        let file_is_newer = entry.time_ms <= self.config_modified_ms.load(Ordering::Acquire);
        let file_groups = &self.routing().file_key_groups;
        groups.retain(|name, _| !(file_is_newer && file_groups.contains_key(name)));
        if groups.is_empty() {
            return;
        }
        let mut adopted = self.adopted_key_groups.lock().expect("adopted key groups lock");
        adopted.extend(groups);
        let _update = self.routing_update.lock().expect("routing update lock");
        let routing = self.routing();
        self.routing
            .store(Arc::new(routing.with_default_behaviors(routing.with_groups(&adopted))));
        tracing::info!(from = %entry.node, groups = adopted.len(), "fleet key groups adopted");
    }

    /// Removes every object `paths` name (`/videos/*`: a prefix) from both
    /// cache tiers, under every behavior's origin. Blocking (disk).
    pub fn invalidate(&self, paths: &[String]) {
        self.invalidate_distribution(FILE_TABLE, paths);
    }

    /// As `invalidate`, for the objects of distribution `id`.
    pub fn invalidate_distribution(&self, id: &str, paths: &[String]) {
        let Some(distribution) = self.routing().distribution_by_id(id).cloned() else {
            return;
        };
        for path in paths {
            let (viewer_path, prefix) = match path.strip_suffix('*') {
                Some(stem) => (stem, true),
                None => (path.as_str(), false),
            };
            for behavior in &distribution.behaviors {
                let origin_path = behavior.origin.origin_path_for(&canonical_pattern(viewer_path));
                let key = ObjectRef::cache_key(&behavior.origin_name, &origin_path, "");
                self.cache.invalidate(&key, prefix);
                // A prefix covers the variants already; an exact path
                // removes the object under every header and cookie value.
                if !prefix && behavior.values.varies() {
                    self.cache.invalidate(&variant_prefix(&key), true);
                }
            }
        }
    }

    /// Serves `distributions` (the control plane's, compiled) from now on,
    /// in place of the ones before.
    pub fn set_distributions(&self, distributions: Vec<Distribution>) {
        let _update = self.routing_update.lock().expect("routing update lock");
        self.routing.store(Arc::new(self.routing().with_distributions(distributions)));
    }

    /// The current routing, for a request to keep to its end.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.load_full()
    }

    /// Reads the config file again and, if it validates, replaces the routing:
    /// key groups, behaviors, origins, TTLs, public base URL. The cache and
    /// connections stay. Listeners, cache sizes, the admin listener and the
    /// access log change only with a restart. A config that fails validation
    /// changes nothing. Returns the number of behaviors now in force.
    pub fn reload(&self) -> Result<usize, ConfigError> {
        let loaded = Config::load(&self.config_source).and_then(|config| Ok((FileTable::compile(&config)?, config)));
        let (file, config) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!(%error, "config reload refused; the previous config keeps serving");
                self.metrics.record_reload(false);
                return Err(error);
            }
        };
        let behaviors = config.behaviors.len();
        tracing::info!(behaviors, source = %self.config_source.display(), "config reloaded");
        self.metrics.record_reload(true);
        let rotated = self.routing().changed_groups(&file.key_groups);
        let removed: Vec<String> = self
            .routing()
            .file_key_groups
            .keys()
            .filter(|name| !file.key_groups.contains_key(*name))
            .cloned()
            .collect();
        self.config_modified_ms.store(config.modified_ms, Ordering::Release);
        let adopted = {
            // The file's own change of a group wins over what was adopted.
            let mut adopted = self.adopted_key_groups.lock().expect("adopted key groups lock");
            adopted.retain(|name, _| !rotated.contains_key(name) && !removed.contains(name));
            adopted.clone()
        };
        let routing = Routing::new(file.behaviors, config.public_base_url, file.key_groups, &adopted);
        let update = self.routing_update.lock().expect("routing update lock");
        // The control plane's distributions are not the file's to change.
        self.routing.store(Arc::new(self.routing().with_file(routing)));
        drop(update);
        self.publish_key_groups(&rotated, removed);
        Ok(behaviors)
    }
}

impl ServingHandle for EdgeState {
    fn set_distributions(&self, distributions: Vec<Distribution>) {
        EdgeState::set_distributions(self, distributions);
    }

    fn invalidate_distribution(&self, id: &str, paths: &[String]) {
        EdgeState::invalidate_distribution(self, id, paths);
    }

    fn publish_resources(&self, changes: Vec<ResourceChange>) {
        if changes.is_empty() {
            return;
        }
        self.publish_to_fleet("control-plane changes", move |control| async move {
            control.publish_resources(changes).await
        });
    }

    fn publish_invalidation(&self, id: &str, paths: Vec<String>) {
        let id = id.to_owned();
        self.publish_to_fleet("a distribution's invalidation", move |control| async move {
            control.publish_invalidation(Some(id), paths).await
        });
    }
}
