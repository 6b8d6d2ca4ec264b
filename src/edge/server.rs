//! Building the pingora server from a validated config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use arc_swap::ArcSwap;

use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{ListenerConfig, TcpSocketOptions};
use pingora::prelude::*;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;

use super::Edge;
use crate::accesslog::AccessLog;
use crate::admin::{AdminApp, EdgeHandle};
use crate::auth::Verifier;
use crate::cache::ObjectRef;
use crate::cache::{Cache, DiskError, ParentTier};
use crate::clock::Clock;
use crate::config::{AccessLogTarget, Config, ConfigError, ControlPlaneSettings, Secret, TlsListener};
use crate::control::{ApiCredentials, ApiSettings, ControlApp, ControlPlane, ResourceChange, ServingDefaults, ServingHandle};
use crate::fleet::{ControlEntry, ControlGuard, ControlLog, Fleet, FleetSecret};
use crate::metrics::Metrics;
use crate::origin::{OriginClient, S3Origin};
use crate::request::canonical_pattern;
use crate::routing::{Distribution, FILE_TABLE, FileTable, KeyGroups, Routing, from_published, publish_form};

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
    /// This node's fleet, if it is in one: it checks other nodes' requests.
    pub fleet: Option<Arc<Fleet>>,
}

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Disk(#[from] DiskError),
    #[error("access log {path}: {source}")]
    AccessLog { path: std::path::PathBuf, source: std::io::Error },
    #[error("TLS listener {0}: {1}")]
    Tls(SocketAddr, String),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("control plane: {0}")]
    ControlState(#[from] crate::control::StoreError),
    #[error("listening on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
}

/// Fails, naming the address, when any of `addresses` cannot be listened on.
/// pingora would wait 30 s for a busy port (it expects a graceful upgrade's
/// predecessor to let go) and then stop without saying which one.
pub fn ensure_free(addresses: impl IntoIterator<Item = SocketAddr>) -> Result<(), StartError> {
    for address in addresses {
        std::net::TcpListener::bind(address).map_err(|source| StartError::Listen { address, source })?;
    }
    Ok(())
}

/// Where the edge listens.
#[derive(Clone, Debug)]
pub struct Listeners {
    pub viewer: Vec<SocketAddr>,
    /// TLS listeners, HTTP/2 offered through ALPN.
    pub tls: Vec<TlsListener>,
    pub admin: Option<SocketAddr>,
    /// The bearer token of the admin listener's POST endpoints.
    pub admin_token: Option<Secret>,
    /// How long in-flight responses may run on after SIGTERM.
    pub drain_timeout: std::time::Duration,
    /// How long a viewer may take to send a request header.
    pub header_timeout: std::time::Duration,
    /// Each viewer connection's kernel send buffer (`None`: autotuned).
    pub send_buffer: Option<usize>,
    /// Where a graceful upgrade hands the listening sockets over.
    pub upgrade_socket: PathBuf,
    /// CloudFront's control-plane API, when it is on, and the origin its
    /// distributions' S3 origins are served from.
    pub control_plane: Option<(ControlPlaneSettings, Arc<S3Origin>)>,
}

impl Listeners {
    /// Every address the server listens on.
    pub fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.viewer
            .iter()
            .copied()
            .chain(self.tls.iter().map(|tls| tls.address))
            .chain(self.admin)
            .chain(self.control_plane.iter().map(|(control, _)| control.listen))
    }
}

impl EdgeState {
    /// The state for `config` (opening the disk tier) and its listeners.
    pub fn from_config(config: Config) -> Result<(Arc<Self>, Listeners), StartError> {
        let file = FileTable::compile(&config)?;
        let origin = |name: &str| file.origins[name].clone();
        let mut viewer = config.listen;
        for address in config.control_plane.iter().flat_map(|control| &control.distribution_addresses) {
            if !viewer.contains(address) {
                viewer.push(*address);
            }
        }
        let listeners = Listeners {
            viewer,
            tls: config.tls_listen,
            admin: config.admin_listen,
            admin_token: config.admin_token,
            drain_timeout: config.drain_timeout,
            header_timeout: config.viewer_header_timeout,
            send_buffer: config.viewer_send_buffer,
            upgrade_socket: config.upgrade_socket,
            control_plane: config.control_plane.map(|control| {
                let s3 = origin(&control.s3_origin);
                (control, s3)
            }),
        };
        let fleet = config.fleet.map(|fleet| {
            let secret = FleetSecret::new(fleet.secret.expose().as_bytes()).expect("the config checked the secret's length");
            let control = fleet.control.map(|control| {
                ControlLog::new(
                    fleet.node.clone(),
                    secret.clone(),
                    origin(&control.origin),
                    control.prefix,
                    control.poll,
                )
            });
            Fleet::new(fleet.node, secret, &fleet.tiers, fleet.go_direct, control)
        });
        let control_guard = fleet
            .as_ref()
            .and_then(|fleet| fleet.control.as_ref())
            .map(|control| control.guard());
        let parents = fleet
            .clone()
            .filter(|fleet| fleet.asks_other_nodes())
            .map(|fleet| fleet as Arc<dyn ParentTier>);
        let cache = Arc::new(Cache::new(&config.cache, parents, Clock::default())?);
        let state = Self {
            metrics: Metrics::new(&cache),
            passthrough: OriginClient::default(),
            cache,
            fleet,
            control_guard,
            config_modified_ms: AtomicU64::new(config.modified_ms),
            control_plane: OnceLock::new(),
            config_source: config.source,
            routing: ArcSwap::from_pointee(Routing::new(
                file.behaviors,
                config.public_base_url,
                file.key_groups,
                &KeyGroups::new(),
            )),
            routing_update: Mutex::default(),
            adopted_key_groups: Mutex::default(),
            verifier: Verifier::default(),
            viewer_idle_seconds: config.viewer_idle_timeout.as_secs(),
            viewer_send_timeout: config.viewer_send_timeout,
            access_log: match config.access_log {
                None => None,
                Some(AccessLogTarget::Stdout) => Some(AccessLog::to_stdout()),
                Some(AccessLogTarget::File(path)) => {
                    Some(AccessLog::to_file(&path).map_err(|source| StartError::AccessLog { path, source })?)
                }
            },
        };
        let state = Arc::new(state);
        if let Some(control) = state.fleet.as_ref().and_then(|fleet| fleet.control.as_ref()) {
            // Weak: the log's poller must not keep the state alive.
            let edge = Arc::downgrade(&state);
            control.set_apply(Arc::new(move |entry: &ControlEntry| {
                if let Some(state) = edge.upgrade() {
                    state.apply_control_entry(entry);
                }
            }));
        }
        Ok((state, listeners))
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
                self.cache
                    .invalidate(&ObjectRef::cache_key(&behavior.origin_name, &origin_path), prefix);
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

/// The control-plane app for `settings`, serving into `state`.
fn control_app(settings: &ControlPlaneSettings, s3: Arc<S3Origin>, state: Arc<EdgeState>) -> Result<ControlApp, StartError> {
    let api = ApiSettings {
        domain_pool: settings
            .distribution_addresses
            .iter()
            .map(|address| match address.port() {
                80 => address.ip().to_string(),
                _ => address.to_string(),
            })
            .collect(),
        domain_suffix: settings.domain_suffix.clone(),
        deploy_delay_ms: settings.deploy_delay.as_millis() as u64,
    };
    let credentials = match settings.accept_any_credentials {
        true => ApiCredentials::AcceptAny,
        false => ApiCredentials::Keys(
            settings
                .credentials
                .iter()
                .map(|(id, secret)| (id.clone(), secret.expose().to_owned()))
                .collect(),
        ),
    };
    let defaults = ServingDefaults {
        s3,
        slice_size: settings.slice_size,
    };
    let app = ControlApp::start(settings.state_dir.clone(), api, credentials, defaults, state.clone())?;
    let _ = state.control_plane.set(Arc::downgrade(app.plane()));
    Ok(app)
}

impl EdgeHandle for EdgeState {
    fn reload(&self) -> Result<usize, ConfigError> {
        EdgeState::reload(self)
    }

    fn invalidate(&self, paths: &[String]) {
        EdgeState::invalidate(self, paths);
    }

    fn metrics_text(&self) -> String {
        let refused = self
            .fleet
            .as_ref()
            .and_then(|fleet| fleet.control.as_ref())
            .map_or(0, |control| control.refused());
        self.metrics
            .render(&self.cache, self.access_log.as_ref().map_or(0, AccessLog::dropped), refused)
    }

    fn disk_degradation(&self) -> Option<String> {
        self.cache.disk_degradation()
    }

    fn fleet(&self) -> Option<&Arc<Fleet>> {
        self.fleet.as_ref()
    }
}

/// Bytes a viewer connection gathers before it writes to the socket. pingora's
/// default, 1,460 (one TCP segment), splits a 4 KiB hit into a `sendto` for
/// its header and more for its body; 16 KiB takes a hit's header and body of
/// up to ~15 KiB in one write, while longer bodies (ranges, whole objects)
/// bypass the buffer and are written straight from the cached slices. Chosen
/// by measurement: bench/RESULTS.md, "Listener write buffer".
pub const VIEWER_WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// A viewer listener at `address` with keyfront's socket buffer sizes (the
/// benchmark's bare pingora responder uses it too, so both are measured
/// alike): a viewer that reads slowly holds at most `send_buffer` (doubled
/// by the kernel) of kernel memory, besides the piece it is being sent.
pub fn viewer_listener(address: &str, send_buffer: Option<usize>) -> ListenerConfig {
    let mut options = TcpSocketOptions::default();
    options.tcp_snd_buf = send_buffer;
    ListenerConfig::tcp(address)
        .l4_buffer(L4BufferSettings::default().write(VIEWER_WRITE_BUFFER_BYTES))
        .tcp_socket_options(options)
}

/// How the pingora server runs.
#[derive(Clone, Copy, Debug)]
pub struct ServerMode {
    /// Worker threads of each service.
    pub threads: usize,
    /// Take the listening sockets over from a running process.
    pub upgrade: bool,
    /// pingora's runtime per thread, faster; but its threads keep their
    /// runtime in a thread-local that outlives a stopped server, so a server
    /// started after another stopped in the same process (the emulator in a
    /// test suite) must use tokio's shared runtime instead.
    pub one_runtime_per_thread: bool,
}

impl ServerMode {
    /// A server that is the process's only one, for its whole life.
    pub fn serving(threads: usize, upgrade: bool) -> ServerMode {
        ServerMode {
            threads,
            upgrade,
            one_runtime_per_thread: true,
        }
    }
}

/// A pingora server with the edge on every viewer listener and the admin app
/// on the admin listener. Run it with `run_forever`, which handles signals
/// and graceful shutdown. With `upgrade`, `bootstrap` waits (up to five
/// seconds) for the process being replaced to send its listening sockets
/// on `upgrade_socket`, which that process does on SIGQUIT. Without it,
/// every address must be free.
pub fn build_server(state: Arc<EdgeState>, listeners: &Listeners, mode: ServerMode) -> Result<Server, StartError> {
    if !mode.upgrade {
        ensure_free(listeners.addresses())?;
    }
    let conf = ServerConf {
        threads: mode.threads,
        // One runtime per thread, as nginx runs one process per core: no
        // wake-ups of the other thread and no task migration. Hot hits: +10%
        // requests per second (bench/RESULTS.md, "pingora settings").
        work_stealing: !mode.one_runtime_per_thread,
        // SIGTERM: the listeners close, in-flight responses run on for
        // `drain_timeout` (pingora's grace period), then the runtimes stop,
        // cancelling what is left (its final step, for which a second is
        // plenty: only blocking tasks wait for it). SIGINT exits at once.
        grace_period_seconds: Some(listeners.drain_timeout.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: listeners.upgrade_socket.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let options = Opt {
        upgrade: mode.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(options), conf);
    server.bootstrap();
    if let Some(address) = listeners.admin {
        let app = AdminApp::new(state.clone(), listeners.admin_token.as_ref().map(|token| token.expose().to_owned()));
        let mut admin = Service::new("keyfront admin".to_owned(), app);
        admin.add_tcp(&address.to_string());
        server.add_service(admin);
    }
    if let Some((settings, s3)) = &listeners.control_plane {
        let mut control = Service::new(
            "keyfront control plane".to_owned(),
            control_app(settings, s3.clone(), state.clone())?,
        );
        control.add_tcp(&settings.listen.to_string());
        server.add_service(control);
    }
    if let Some(fleet) = &state.fleet {
        for health_checks in fleet.health_checks() {
            server.add_service(health_checks);
        }
        if let Some(polling) = fleet.control_polling() {
            server.add_service(polling);
        }
    }
    let edge = Edge::new(state, listeners.header_timeout);
    let mut service = Service::new("keyfront edge".to_owned(), edge);
    for address in &listeners.viewer {
        service.add_listener(viewer_listener(&address.to_string(), listeners.send_buffer));
    }
    for tls in &listeners.tls {
        let mut settings = TlsSettings::intermediate(&tls.certificate.to_string_lossy(), &tls.key.to_string_lossy())
            .map_err(|e| StartError::Tls(tls.address, e.to_string()))?;
        settings.enable_h2();
        service.add_listener(viewer_listener(&tls.address.to_string(), listeners.send_buffer).tls(settings));
    }
    server.add_service(service);
    Ok(server)
}
