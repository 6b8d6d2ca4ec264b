//! Building the pingora server from a validated config.

use std::sync::Arc;

use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

use super::{Edge, RequestContext};
use crate::auth::Verifier;
use crate::cache::{Cache, DiskError};
use crate::config::{Behavior, Config};
use crate::origin::S3Origin;

/// What every request needs, shared by all of pingora's threads.
pub struct EdgeState {
    pub behaviors: Vec<Behavior>,
    pub verifier: Verifier,
    /// `scheme://host` used to rebuild signed URLs, when configured.
    pub public_base_url: Option<String>,
    pub cache: Arc<Cache>,
}

impl EdgeState {
    /// The state for `config` (opening the disk tier) and the addresses to listen on.
    pub fn from_config(
        config: Config,
    ) -> Result<(Arc<Self>, Vec<std::net::SocketAddr>), DiskError> {
        let state = Self {
            cache: Arc::new(Cache::new(&config.cache)?),
            behaviors: config.behaviors,
            verifier: Verifier::default(),
            public_base_url: config.public_base_url,
        };
        Ok((Arc::new(state), config.listen))
    }

    /// The origin of the request's behavior. Only called after `request_filter`
    /// matched one, which every request reaching the origin has.
    pub fn origin(&self, ctx: &RequestContext) -> &S3Origin {
        let index = ctx
            .behavior
            .expect("request_filter matched a behavior before proxying");
        &self.behaviors[index].origin
    }
}

/// A pingora server with the edge on every configured listener. Run it with
/// `run_forever`, which handles signals and graceful shutdown.
pub fn build_server(
    state: Arc<EdgeState>,
    listen: &[std::net::SocketAddr],
    threads: usize,
) -> Server {
    let conf = ServerConf {
        threads,
        // Ctrl-C / SIGTERM: stop taking connections, give in-flight ones a moment.
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = http_proxy_service(&server.configuration, Edge { state });
    for address in listen {
        service.add_tcp(&address.to_string());
    }
    server.add_service(service);
    server
}
