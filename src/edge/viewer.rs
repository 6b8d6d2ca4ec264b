//! The viewer's side of one request: pingora's server session, and the
//! headers every response to this request carries whoever writes it (the
//! cache, the edge's errors, the origin through a passthrough).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::{HttpTask, ServerSession};

use super::function_hooks::ResponseHook;
use crate::routing::HeaderRules;

pub struct Viewer<'s> {
    /// Borrowed, not moved: a session is a large value, and a hit should
    /// not copy it from frame to frame.
    session: &'s mut ServerSession,
    /// Added to the response header when it is written (CORS, chosen by
    /// the CORS phase); `Vary` is appended to, the others replace.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// The behavior's response headers policy, once routed: applied to
    /// every answer after `response_headers`.
    pub header_rules: Option<Arc<HeaderRules>>,
    /// The behavior's viewer-response function, run on the response header.
    pub response_hook: Option<ResponseHook>,
    /// The response header was replaced (a failed viewer-response function):
    /// the body written after it is not sent.
    discard_body: bool,
    /// When the response header was written, for the access log.
    pub answered_at: Option<Instant>,
    /// When the request's header was read.
    started: Instant,
    /// How long one write may wait for a viewer that reads nothing.
    send_timeout: Option<Duration>,
}

impl<'s> Viewer<'s> {
    /// The viewer of the request `session` read at `started`.
    pub fn new(session: &'s mut ServerSession, started: Instant) -> Self {
        Self {
            session,
            response_headers: Vec::new(),
            header_rules: None,
            response_hook: None,
            discard_body: false,
            answered_at: None,
            started,
            send_timeout: None,
        }
    }

    /// Bounds each write, and each `send_now`, by `timeout`: a viewer that
    /// stops reading is let go instead of holding its connection.
    pub fn set_send_timeout(&mut self, timeout: Duration) {
        self.send_timeout = Some(timeout);
        self.session.set_write_timeout(Some(timeout));
    }

    /// Writes the response header with `response_headers` laid over it. An
    /// answer without a body ends when the session is finished.
    pub async fn write_response_header(&mut self, mut header: Box<ResponseHeader>) -> Result<()> {
        for (name, value) in self.response_headers.drain(..) {
            if name == http::header::VARY {
                header.append_header(name, value)?;
            } else {
                header.insert_header(name, value)?;
            }
        }
        if let Some(rules) = &self.header_rules {
            for name in &rules.remove {
                header.remove_header(name);
            }
            for (name, value, replaces) in &rules.set {
                if *replaces || !header.headers.contains_key(name) {
                    header.insert_header(name.clone(), value.clone())?;
                }
            }
            if rules.server_timing_per_million > rand::random::<u32>() % 1_000_000 {
                let timing = server_timing(&header, self.started);
                header.append_header(SERVER_TIMING, timing)?;
            }
        }
        if let Some(hook) = self.response_hook.take() {
            self.discard_body = !hook.apply(&mut header);
        }
        self.answered_at = Some(Instant::now());
        self.session.write_response_header(header).await
    }

    /// Writes a part of the body (`None`: nothing more than the end mark).
    pub async fn write_response_body(&mut self, body: Option<Bytes>, end_of_stream: bool) -> Result<()> {
        if (body.is_none() || self.discard_body) && !end_of_stream {
            return Ok(());
        }
        let body = if self.discard_body {
            Bytes::new()
        } else {
            body.unwrap_or_default()
        };
        self.session.write_response_body(body, end_of_stream).await
    }

    /// Sends what the HTTP/1 writer holds now. Its buffer (the listener's
    /// 16 KiB, which lets a hit's header and body leave in one send) is
    /// otherwise sent only when full or at the body's end, so a streamed
    /// answer's first bytes would wait for 16 KiB more from the origin.
    /// pingora has no flush call for a body of known length: a `Failed`
    /// task after another one flushes the stream and hands its error back,
    /// and nothing else. HTTP/2 sends as it writes.
    pub async fn send_now(&mut self) -> Result<()> {
        let ServerSession::H1(http1) = &mut *self.session else {
            return Ok(());
        };
        let marker = Error::new(ErrorType::Custom(SEND_NOW));
        let flush = http1.response_duplex_vec(vec![HttpTask::Body(None, false), HttpTask::Failed(marker)]);
        // pingora times its writes, not this flush.
        let flushed = match self.send_timeout {
            Some(limit) => tokio::time::timeout(limit, flush)
                .await
                .or_else(|_| Error::e_explain(ErrorType::WriteTimedout, format!("sending the body, timeout: {limit:?}")))?,
            None => flush.await,
        };
        match flushed {
            Err(error) if error.etype() == &ErrorType::Custom(SEND_NOW) => Ok(()),
            Err(error) => Err(error),
            Ok(_) => Ok(()),
        }
    }
}

/// The error `send_now` hands pingora to have it flush.
const SEND_NOW: &str = "keyfront: send what is written";

const SERVER_TIMING: &str = "server-timing";

/// The edge's `Server-Timing` metrics for an answer with `header` to a
/// request read at `started`, named as CloudFront names them: how the cache
/// answered (from `X-Cache`) and the time to this header. Appended to the
/// origin's own, as CloudFront does.
fn server_timing(header: &ResponseHeader, started: Instant) -> String {
    let result = header.headers.get("x-cache").and_then(|value| value.to_str().ok());
    let cache = match result.and_then(|value| value.split(' ').next()) {
        Some("Hit") => "cdn-cache-hit,",
        Some("RefreshHit") => "cdn-cache-refresh,",
        Some("Miss") => "cdn-cache-miss,",
        _ => "",
    };
    format!("{cache}cdn-downstream-fbl;dur={}", started.elapsed().as_millis())
}

impl Deref for Viewer<'_> {
    type Target = ServerSession;

    fn deref(&self) -> &ServerSession {
        self.session
    }
}

impl DerefMut for Viewer<'_> {
    fn deref_mut(&mut self) -> &mut ServerSession {
        self.session
    }
}
