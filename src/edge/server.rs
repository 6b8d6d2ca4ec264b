//! Building the pingora server from a validated config.

use std::net::SocketAddr;
use std::sync::Arc;

use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;

use super::{Edge, RequestContext};
use crate::accesslog::AccessLog;
use crate::admin::AdminApp;
use crate::auth::Verifier;
use crate::cache::{Cache, DiskError};
use crate::config::{AccessLogTarget, Behavior, Config};
use crate::metrics::Metrics;
use crate::origin::S3Origin;

/// What every request needs, shared by all of pingora's threads.
pub struct EdgeState {
    pub behaviors: Vec<Behavior>,
    pub verifier: Verifier,
    /// `scheme://host` used to rebuild signed URLs, when configured.
    pub public_base_url: Option<String>,
    pub cache: Arc<Cache>,
    pub metrics: Metrics,
    pub access_log: Option<AccessLog>,
}

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Disk(#[from] DiskError),
    #[error("access log {path}: {source}")]
    AccessLog { path: std::path::PathBuf, source: std::io::Error },
}

/// Where the edge listens.
#[derive(Clone, Debug)]
pub struct Listeners {
    pub viewer: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// The bearer token of the admin listener's POST endpoints.
    pub admin_token: Option<String>,
}

impl EdgeState {
    /// The state for `config` (opening the disk tier) and its listeners.
    pub fn from_config(config: Config) -> Result<(Arc<Self>, Listeners), StartError> {
        let listeners = Listeners {
            viewer: config.listen,
            admin: config.admin_listen,
            admin_token: config.admin_token,
        };
        let state = Self {
            cache: Arc::new(Cache::new(&config.cache)?),
            behaviors: config.behaviors,
            verifier: Verifier::default(),
            public_base_url: config.public_base_url,
            metrics: Metrics::default(),
            access_log: match config.access_log {
                None => None,
                Some(AccessLogTarget::Stdout) => Some(AccessLog::to_stdout()),
                Some(AccessLogTarget::File(path)) => {
                    Some(AccessLog::to_file(&path).map_err(|source| StartError::AccessLog { path, source })?)
                }
            },
        };
        Ok((Arc::new(state), listeners))
    }

    /// The origin of the request's behavior. Only called after `request_filter`
    /// matched one, which every request reaching the origin has.
    pub fn origin(&self, ctx: &RequestContext) -> &S3Origin {
        let index = ctx.behavior.expect("request_filter matched a behavior before proxying");
        &self.behaviors[index].origin
    }
}

/// A pingora server with the edge on every viewer listener and the admin app
/// on the admin listener. Run it with `run_forever`, which handles signals
/// and graceful shutdown.
pub fn build_server(state: Arc<EdgeState>, listeners: &Listeners, threads: usize) -> Server {
    let conf = ServerConf {
        threads,
        // Ctrl-C / SIGTERM: stop taking connections, give in-flight ones a moment.
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    if let Some(address) = listeners.admin {
        let app = AdminApp::new(state.clone(), listeners.admin_token.clone());
        let mut admin = Service::new("keyfront admin".to_owned(), app);
        admin.add_tcp(&address.to_string());
        server.add_service(admin);
    }
    let mut service = http_proxy_service(&server.configuration, Edge { state });
    for address in &listeners.viewer {
        service.add_tcp(&address.to_string());
    }
    server.add_service(service);
    server
}
