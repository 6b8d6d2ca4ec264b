//! Composing a running edge from a validated config: the state the
//! request phases read (`edge::EdgeState`), the listeners, the admin and
//! control-plane apps and the fleet's background services, in one pingora
//! server. The CLI, the emulator and the tests start edges through here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{ListenerConfig, TcpSocketOptions};
use pingora::prelude::*;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;

use crate::accesslog::AccessLog;
use crate::admin::{AdminApp, EdgeHandle};
use crate::cache::{Cache, DiskError, ParentTier};
use crate::clock::Clock;
use crate::config::{AccessLogTarget, Config, ConfigError, ControlPlaneSettings, Secret, TlsListener};
use crate::control::{ApiCredentials, ApiSettings, ControlApp, ServingDefaults};
use crate::edge::{Edge, EdgeParts, EdgeState};
use crate::fleet::{ControlLog, Fleet, FleetSecret};
use crate::metrics::{MemberName, ScrapeFigures};
use crate::origin::Origin;
use crate::routing::{FileTable, KeyGroups, Routing};

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
    pub control_plane: Option<(ControlPlaneSettings, Arc<Origin>)>,
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

/// The edge's state for `config` (its keys, origins and behaviors compiled,
/// the disk tier opened, the fleet joined) and its listeners.
pub fn compose(config: Config) -> Result<(Arc<EdgeState>, Listeners), StartError> {
    let file = FileTable::compile(&config)?;
    let origin = |name: &str| file.origins[name].clone();
    let mut viewer = config.listen;
    for address in config.control_plane.iter().flat_map(|control| &control.distribution_addresses) {
        if !viewer.contains(address) {
            viewer.push(*address);
        }
    }
    let https_port = config.tls_listen.first().map(|tls| tls.address.port());
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
    let node_name = config.fleet.as_ref().map(|fleet| fleet.node.clone());
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
    let parents = fleet
        .clone()
        .filter(|fleet| fleet.asks_other_nodes())
        .map(|fleet| fleet as Arc<dyn ParentTier>);
    let cache = Arc::new(Cache::new(&config.cache, parents, Clock::default())?);
    let (format, location) = (config.access_log_format, node_name.as_deref().unwrap_or("keyfront"));
    let access_log = match config.access_log {
        None => None,
        Some(AccessLogTarget::Stdout) => Some(AccessLog::to_stdout(format, location)),
        Some(AccessLogTarget::File(path)) => {
            Some(AccessLog::to_file(&path, format, location).map_err(|source| StartError::AccessLog { path, source })?)
        }
    };
    let state = EdgeState::new(EdgeParts {
        routing: Routing::new(file.behaviors, config.public_base_url, file.key_groups, &KeyGroups::new()),
        config_source: config.source,
        config_modified_ms: config.modified_ms,
        cache,
        fleet,
        access_log,
        viewer_idle_timeout: config.viewer_idle_timeout,
        viewer_send_timeout: config.viewer_send_timeout,
        viewer_country_header: config.viewer_country_header,
        https_port,
    });
    Ok((state, listeners))
}

/// The control-plane app for `settings`, serving into `state`.
fn control_app(settings: &ControlPlaneSettings, s3: Arc<Origin>, state: Arc<EdgeState>) -> Result<ControlApp, StartError> {
    let custom_origin_networks: Arc<[ipnet::IpNet]> = Arc::from(settings.custom_origin_networks.clone());
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
        custom_origin_networks: custom_origin_networks.clone(),
        reset_endpoint: settings.reset_endpoint,
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
        custom_origin_networks: custom_origin_networks.clone(),
    };
    let app = ControlApp::start(settings.state_dir.clone(), api, credentials, defaults, state.clone())?;
    state.attach_control_plane(app.plane());
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
        let figures = ScrapeFigures {
            access_log_dropped: self.access_log.as_ref().map_or(0, AccessLog::dropped),
            control_log: self
                .fleet
                .as_ref()
                .and_then(|fleet| fleet.control.as_ref())
                .map(|control| (control.refused(), control.read_at_ms())),
            member_names: self
                .fleet
                .as_ref()
                .map(|fleet| fleet.member_names())
                .unwrap_or_default()
                .into_iter()
                .map(|(name, state)| MemberName {
                    name,
                    members: state.members.len(),
                    resolving: state.failing.is_none(),
                    failures: state.failures,
                })
                .collect(),
        };
        self.metrics.render(&self.cache, &figures)
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

/// Bytes a viewer connection reads ahead into: a usual request header in
/// one read (a longer one, up to `MAX_REQUEST_BYTES`, takes two). pingora's
/// default, 64 KiB, is 64 MiB held by a thousand keep-alive viewers.
pub const VIEWER_READ_BUFFER_BYTES: usize = 16 * 1024;

/// A viewer listener at `address` with keyfront's socket buffer sizes (the
/// benchmark's bare pingora responder uses it too, so both are measured
/// alike): a viewer that reads slowly holds at most `send_buffer` (doubled
/// by the kernel) of kernel memory, besides the piece it is being sent.
pub fn viewer_listener(address: &str, send_buffer: Option<usize>) -> ListenerConfig {
    let mut options = TcpSocketOptions::default();
    options.tcp_snd_buf = send_buffer;
    ListenerConfig::tcp(address)
        .l4_buffer(L4BufferSettings::new(VIEWER_READ_BUFFER_BYTES, VIEWER_WRITE_BUFFER_BYTES))
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
    // TLS first: pingora binds a service's listeners in order before it
    // accepts on any, so once a plain listener takes connections every TLS
    // one is bound (the emulator waits on its plain edge only: a probe of
    // a TLS port would log a failed handshake).
    for tls in &listeners.tls {
        let mut settings = TlsSettings::intermediate(&tls.certificate.to_string_lossy(), &tls.key.to_string_lossy())
            .map_err(|e| StartError::Tls(tls.address, e.to_string()))?;
        settings.enable_h2();
        service.add_listener(viewer_listener(&tls.address.to_string(), listeners.send_buffer).tls(settings));
    }
    for address in &listeners.viewer {
        service.add_listener(viewer_listener(&address.to_string(), listeners.send_buffer));
    }
    server.add_service(service);
    Ok(server)
}
