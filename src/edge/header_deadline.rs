//! A deadline for a viewer's whole request header. pingora times each read
//! of a header (60 s), not the header: a viewer sending one byte every 59 s
//! (slow loris) would hold its connection, and up to 1 MiB of header buffer,
//! for days. nginx's `client_header_timeout` is the same bound.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::protocols::http::v2::server::H2Options;
use pingora::server::ShutdownWatch;

tokio::task_local! {
    /// Set once the request being served has its header: from then on the
    /// deadline no longer applies (a long download is not a slow header).
    static HEADER_READ: Cell<bool>;
}

/// Marks the current request's header as read; called by the first phase
/// pingora runs after parsing it. Outside a deadline's task it does nothing.
pub fn header_read() {
    let _ = HEADER_READ.try_with(|read| read.set(true));
}

/// Requests one HTTP/1.1 connection serves before it is closed (nginx's
/// `keepalive_requests` default). The count left also tells a connection's
/// first request from a later one, which pingora does not say otherwise.
const KEEPALIVE_REQUESTS: u32 = 1000;

/// An HTTP app whose connections are closed when a request header is not
/// read within `timeout` (plus, on a kept-alive connection, its idle time).
pub struct HeaderDeadline<A> {
    app: Arc<A>,
    timeout: Duration,
    options: HttpServerOptions,
}

impl<A: HttpServerApp> HeaderDeadline<A> {
    pub fn new(app: A, timeout: Duration) -> Self {
        let mut options = app.server_options().cloned().unwrap_or_default();
        options.keepalive_request_limit = Some(KEEPALIVE_REQUESTS);
        Self {
            app: Arc::new(app),
            timeout,
            options,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for HeaderDeadline<A> {
    /// The app's own answer, or `None` (the connection is closed without a
    /// response, as nginx does) when the header missed its deadline.
    async fn process_new_http(self: &Arc<Self>, session: ServerSession, shutdown: &ShutdownWatch) -> Option<ReusedHttpStream> {
        // A kept-alive connection first waits up to its idle timeout for the
        // next request to begin; the header's own time starts after that.
        let reused = session
            .get_keepalive_reuses_remaining()
            .is_some_and(|left| left < KEEPALIVE_REQUESTS);
        let idle = if reused { session.get_keepalive().unwrap_or(0) } else { 0 };
        let deadline = Duration::from_secs(idle) + self.timeout;
        HEADER_READ
            .scope(Cell::new(false), async {
                let serving = self.app.process_new_http(session, shutdown);
                tokio::pin!(serving);
                tokio::select! {
                    reused = &mut serving => return reused,
                    () = tokio::time::sleep(deadline) => {}
                }
                if HEADER_READ.with(Cell::get) { serving.await } else { None }
            })
            .await
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.app.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }

    async fn http_cleanup(&self) {
        self.app.http_cleanup().await;
    }
}
