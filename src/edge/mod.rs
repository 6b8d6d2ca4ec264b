//! The pingora side: the `ProxyHttp` implementation, whose phases stay thin
//! and hand each concern to the module that owns it.

mod cached;
mod context;
mod cors;
mod handlers;
mod header_deadline;
mod respond;
mod server;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;

pub use cached::CacheStatus;
pub use context::RequestContext;
pub use server::{EdgeState, Listeners, ServerMode, StartError, VIEWER_WRITE_BUFFER_BYTES, build_server, ensure_free, viewer_listener};

use crate::metrics::RequestRecord;

/// The edge: verifies, then proxies to the behavior's origin with SigV4.
pub struct Edge {
    state: Arc<EdgeState>,
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = RequestContext;

    fn new_ctx(&self) -> RequestContext {
        RequestContext::default()
    }

    /// Only the CORS module: pingora's default response compression is left
    /// out, as compressing ranged video would break byte offsets.
    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        modules.add_module(Box::new(cors::CorsModuleBuilder));
    }

    /// Ends the header deadline (`header_deadline`): the header is read.
    /// Never fails.
    async fn early_request_filter(&self, _session: &mut Session, _ctx: &mut RequestContext) -> Result<()> {
        header_deadline::header_read();
        Ok(())
    }

    /// Matches the behavior, checks the method and the signature, and maps the
    /// path to the origin's. `Ok(true)`: the response (a 403, 404 or 400) was
    /// already written and proxying stops; `Ok(false)`: go on to the origin.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestContext) -> Result<bool> {
        handlers::handle_request(&self.state, session, ctx).await
    }

    /// The behavior's origin, with its connect and first-byte timeouts.
    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestContext) -> Result<Box<HttpPeer>> {
        crate::origin::peer(&ctx.matched_behavior().expect("matched in request_filter").origin).await
    }

    /// Rewrites the request for S3: origin path, `Host`, only the headers S3
    /// needs, and a fresh SigV4 signature. Errors abort with 502.
    async fn upstream_request_filter(&self, _session: &mut Session, request: &mut RequestHeader, ctx: &mut RequestContext) -> Result<()> {
        handlers::sign_origin_request(&ctx.matched_behavior().expect("matched in request_filter").origin, request, ctx)
    }

    /// Removes `x-amz-*` headers (keeping `x-amz-meta-*` where configured) and
    /// turns an origin's refusal of keyfront's credentials into a 502.
    async fn response_filter(&self, _session: &mut Session, response: &mut ResponseHeader, ctx: &mut RequestContext) -> Result<()> {
        handlers::filter_origin_response(response, ctx)
    }

    /// Drops the origin's body where `response_filter` replaced it; passes it
    /// through, chunk by chunk, otherwise. Never delays (returns `None`).
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestContext,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(replacement) = &ctx.replacement_body {
            *body = end_of_stream.then(|| replacement.clone());
        }
        Ok(None)
    }

    /// The origin failed before a response started: 504 for timeouts, 502
    /// otherwise, as CloudFront-style XML, logged with the cause.
    async fn fail_to_proxy(&self, session: &mut Session, error: &Error, ctx: &mut RequestContext) -> FailToProxy {
        handlers::handle_proxy_failure(session, error, ctx).await
    }

    /// How pingora names the request in its own error lines: the method and
    /// the stripped path. pingora's default prints the whole URI, signatures
    /// included.
    fn request_summary(&self, session: &Session, ctx: &RequestContext) -> String {
        format!("{} {}", session.req_header().method, ctx.path)
    }

    /// Metrics and the access-log line, errors included. The application log
    /// has a line per request only at `debug` (a synchronous stderr line per
    /// hit costs a quarter of a core's hits); failures are `warn`. The query
    /// string is never logged: it may hold signatures and policies.
    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestContext) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let method = session.req_header().method.as_str();
        let behavior = ctx.matched_behavior().map_or("-", |b| b.path_pattern.as_str());
        let cache = ctx.cache_status.map_or("-", CacheStatus::label);
        self.state.metrics.record(&RequestRecord {
            behavior,
            method,
            status,
            cache: ctx.cache_status.map_or("none", CacheStatus::label),
            body_bytes: session.body_bytes_sent() as u64,
            rejection: ctx.rejection,
        });
        if let Some(log) = &self.state.access_log {
            handlers::write_access_log(log, session, ctx, status, self.state.cache.clock.unix_seconds());
        }
        match error {
            Some(error) => {
                tracing::warn!(method, path = %ctx.path, status, behavior, decision = ctx.decision, cache, error = ?error.etype(), "request")
            }
            None => tracing::debug!(method, path = %ctx.path, status, behavior, decision = ctx.decision, cache, "request"),
        }
    }
}
