//! keyfront's own HTTP app on pingora's server (pingora keeps listeners,
//! TLS, HTTP/2, graceful upgrade and connectors): it reads each request and
//! runs the phases in `handlers` itself; there is no proxy framework
//! around them and one serving path for every method.

mod access;
mod cached;
mod context;
mod cors;
mod function_hooks;
mod handlers;
mod passthrough;
mod plan;
mod respond;
mod state;
mod viewer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

pub use cached::CacheStatus;
pub use context::RequestContext;
pub use state::{EdgeParts, EdgeState};
pub use viewer::Viewer;

use crate::metrics::RequestRecord;

/// Requests one HTTP/1.1 connection serves before it is closed (nginx's
/// `keepalive_requests` default). The count left also tells a connection's
/// first request from a later one, which pingora does not say otherwise.
const KEEPALIVE_REQUESTS: u32 = 1000;

/// pingora counts the reuses of a connection, after its first request.
const KEEPALIVE_REUSES: u32 = KEEPALIVE_REQUESTS - 1;

/// The edge's HTTP app: one per viewer listener service.
pub struct Edge {
    state: Arc<EdgeState>,
    /// How long a viewer may take to send a whole request header (plus, on
    /// a kept-alive connection, its idle time). pingora times each read of
    /// a header (60 s), not the header: a viewer sending one byte every
    /// 59 s (slow loris) would hold its connection, and up to 1 MiB of
    /// header buffer, for days. nginx's `client_header_timeout` is the same.
    header_timeout: Duration,
    options: HttpServerOptions,
}

impl Edge {
    pub fn new(state: Arc<EdgeState>, header_timeout: Duration) -> Self {
        let mut options = HttpServerOptions::default();
        options.keepalive_request_limit = Some(KEEPALIVE_REUSES);
        Self {
            state,
            header_timeout,
            options,
        }
    }

    /// Reads the next request header within its deadline. `false`: no
    /// request (the viewer left, was too slow, sent no HTTP, or the server
    /// is shutting down); the connection is to be closed without a
    /// response, as nginx does, except for a malformed header (400).
    async fn read_request(&self, session: &mut ServerSession, waits: &mut ConnectionWaits<'_>) -> bool {
        let reused = session.get_keepalive_reuses_remaining().is_some_and(|left| left < KEEPALIVE_REUSES);
        // A kept-alive connection first waits up to its idle timeout for
        // the next request to begin; the header's own time starts after that.
        let idle = if reused { session.get_keepalive().unwrap_or(0) } else { 0 };
        waits
            .deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + Duration::from_secs(idle) + self.header_timeout);
        let read = tokio::select! {
            biased;
            read = session.read_request() => read,
            () = waits.deadline.as_mut() => return false,
            () = waits.shutdown.as_mut() => return false,
        };
        match read {
            Ok(read) => read,
            Err(error) => {
                if matches!(error.etype(), ErrorType::InvalidHTTPHeader) {
                    let _ = session.respond_error(400).await;
                }
                session.shutdown().await;
                false
            }
        }
    }

    /// Reads and answers one request. `false`: there was none, or the
    /// connection broke, and it is closed; `true`: it may serve another.
    async fn serve_one(&self, session: &mut ServerSession, waits: &mut ConnectionWaits<'_>, shutdown: &ShutdownWatch) -> bool {
        if !self.read_request(session, waits).await {
            return false;
        }
        let started = std::time::Instant::now();
        let mut viewer = Viewer::new(session, started);
        let mut ctx = RequestContext {
            started: Some(started),
            now: self.state.cache.clock.unix_seconds(),
            ..RequestContext::default()
        };
        let outcome = handlers::handle_request(&self.state, &mut viewer, &mut ctx).await;
        if *shutdown.borrow() {
            // Draining: this answer is the connection's last.
            viewer.set_keepalive(None);
        }
        self.log(&viewer, &ctx, outcome.as_ref().err().map(|e| e.as_ref()));
        drop(viewer);
        if outcome.is_err() {
            session.shutdown().await;
            return false;
        }
        true
    }

    /// Metrics and the access-log line, errors included. The application
    /// log has a line per request only at `debug` (a synchronous stderr
    /// line per hit costs a quarter of a core's hits); failures are `warn`.
    /// The query string is never logged: it may hold signatures and policies.
    fn log(&self, viewer: &Viewer, ctx: &RequestContext, error: Option<&Error>) {
        let status = viewer.response_written().map_or(0, |r| r.status.as_u16());
        let method = viewer.req_header().method.as_str();
        let behavior = ctx.matched_behavior().map_or("-", |b| b.path_pattern.as_str());
        let cache = ctx.cache_status.map_or("-", CacheStatus::label);
        self.state.metrics.record(&RequestRecord {
            behavior,
            method,
            status,
            cache: ctx.cache_status.map_or("none", CacheStatus::label),
            body_bytes: viewer.body_bytes_sent() as u64,
            rejection: ctx.rejection,
        });
        if let Some(log) = &self.state.access_log {
            handlers::write_access_log(log, viewer, ctx, status, self.state.cache.clock.unix_seconds());
        }
        match error {
            Some(error) => {
                tracing::warn!(method, path = %ctx.path, status, behavior, decision = ctx.decision, cache, error = %error, "request")
            }
            None => tracing::debug!(method, path = %ctx.path, status, behavior, decision = ctx.decision, cache, "request"),
        }
    }
}

/// What a connection's reads of request headers wait on besides the
/// viewer, made once per connection: a timer moved forward for each request
/// and one registration for the shutdown, where a timer and a registration
/// made and dropped per request cost a lock of the runtime's timer wheel
/// and of the shutdown's waiters each.
struct ConnectionWaits<'w> {
    /// When the header being read is late.
    deadline: Pin<&'w mut tokio::time::Sleep>,
    /// The server shutting down.
    shutdown: Pin<&'w mut (dyn Future<Output = ()> + Send)>,
}

#[async_trait]
impl HttpServerApp for Edge {
    /// Serves the connection's requests one after another, for as long as
    /// it stays good, and then closes it (`None`). The keep-alive loop is
    /// this app's, not pingora's: pingora's would allocate and move this
    /// whole future again for every request on the connection.
    async fn process_new_http(self: &Arc<Self>, mut session: ServerSession, shutdown: &ShutdownWatch) -> Option<ReusedHttpStream> {
        // A request sent before the last answer was read (RFC 9112's
        // pipelining) is answered after it, in order, as nginx does; off, the
        // connection would close with it unanswered. The settings carry it on.
        session.set_pipelining_enabled(true);
        let mut stopping = shutdown.clone();
        let mut waits = ConnectionWaits {
            deadline: std::pin::pin!(tokio::time::sleep(self.header_timeout)),
            shutdown: std::pin::pin!(async move {
                let _ = stopping.wait_for(|stopping| *stopping).await;
            }),
        };
        loop {
            if !self.serve_one(&mut session, &mut waits, shutdown).await {
                return None;
            }
            let persistent = HttpPersistentSettings::for_session(&session);
            let stream = session.finish().await.ok().flatten()?;
            // As pingora's own loop does: the next request on the same
            // stream, with what the last one left (the requests left, the
            // idle timeout, bytes already read of a pipelined request).
            let (stream, persistent) = ReusedHttpStream::from_reusable_stream(stream, persistent).consume();
            session = ServerSession::new_http1(stream);
            if let Some(persistent) = persistent {
                persistent.apply_to_session(&mut session);
            }
        }
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}
