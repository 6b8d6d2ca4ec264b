//! Requests the edge makes to the origin on its own (cache fills and
//! revalidations), over pingora's connector: the peer's connect and read
//! timeouts, streamed bodies; idle connections are kept by `pool`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v1::client::HttpSession as Http1Session;
use pingora::upstreams::peer::Peer;

use super::{Origin, pool};

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// How long an idle connection to another node of the fleet is kept.
const NODE_KEEPALIVE: Duration = Duration::from_secs(60);

/// How long an idle connection to `peer` is kept: its origin's keep-alive
/// (`super::peer` sets it), or a node's.
fn idle_timeout(peer: &HttpPeer) -> Duration {
    peer.options.idle_timeout.unwrap_or(NODE_KEEPALIVE)
}

/// Why an origin request failed before or while its body streamed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("origin timed out: {0}")]
    Timeout(String),
    #[error("origin request failed: {0}")]
    Failed(String),
}

impl FetchError {
    fn from_pingora(error: &Error) -> Self {
        match error.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => Self::Timeout(error.to_string()),
            _ => Self::Failed(error.to_string()),
        }
    }
}

/// Counters of the edge's own origin traffic.
#[derive(Debug, Default)]
pub struct OriginStats {
    /// Requests sent, to origins and to other nodes of the fleet.
    pub requests: AtomicU64,
    /// Body bytes read from origins.
    pub body_bytes: AtomicU64,
    /// Body bytes read from other nodes of the fleet (parents, site peers).
    pub fleet_body_bytes: AtomicU64,
}

/// The edge's client for its own origin requests.
pub struct OriginClient {
    connector: Connector,
    pub stats: OriginStats,
}

impl Default for OriginClient {
    fn default() -> Self {
        Self {
            connector: Connector::new(None),
            stats: OriginStats::default(),
        }
    }
}

/// An origin response whose body is read chunk by chunk; the connection goes
/// back to the pool when the body has been read to its end.
pub struct OriginResponse<'a> {
    client: &'a OriginClient,
    session: Option<HttpSession>,
    peer: HttpPeer,
    pub header: ResponseHeader,
    /// The answer came from the node that keeps this object for its site:
    /// the asker keeps its bytes only briefly.
    pub borrowed: bool,
    /// The node of the fleet that answered, when it was not an origin.
    fleet_node: Option<SocketAddr>,
}

impl OriginResponse<'_> {
    pub fn status(&self) -> u16 {
        self.header.status.as_u16()
    }

    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.header.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The node of the fleet that answered, when it was not an origin.
    pub fn fleet_node(&self) -> Option<SocketAddr> {
        self.fleet_node
    }

    /// The next part of the body, or `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
        let Some(session) = self.session.as_mut() else {
            return Ok(None);
        };
        match session.read_response_body().await {
            Ok(Some(chunk)) => {
                let counter = if self.fleet_node.is_some() {
                    &self.client.stats.fleet_body_bytes
                } else {
                    &self.client.stats.body_bytes
                };
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Ok(Some(chunk))
            }
            Ok(None) => {
                match self.session.take().expect("checked above") {
                    HttpSession::H1(mut session) => {
                        session.respect_keepalive();
                        if let Some(stream) = session.reuse().await {
                            pool::keep(self.peer.reuse_hash(), stream, idle_timeout(&self.peer));
                        }
                    }
                    session => {
                        self.client
                            .connector
                            .release_http_session(session, &self.peer, Some(idle_timeout(&self.peer)))
                            .await
                    }
                }
                Ok(None)
            }
            Err(error) => {
                self.session = None;
                Err(FetchError::from_pingora(&error))
            }
        }
    }
}

impl OriginClient {
    /// Sends a body-less request for `path` with `headers` (such as `range`,
    /// `if-none-match`) and the origin's custom headers, SigV4-signed for an
    /// S3 origin, and reads the response header.
    pub async fn send(
        &self,
        origin: &Origin,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<OriginResponse<'_>, FetchError> {
        let failed = |error: Box<Error>| FetchError::from_pingora(&error);
        let peer = *super::peer(origin).await.map_err(failed)?;
        let mut request = request_header(method, path, &origin.host, headers)?;
        for (name, value) in &origin.custom_headers {
            request.insert_header(name.clone(), value.as_str()).map_err(failed)?;
        }
        let signature = origin
            .sign(method, path, &[], SystemTime::now())
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        for (name, value) in signature {
            request.insert_header(name, value).map_err(failed)?;
        }
        self.exchange(peer, request, None).await
    }

    /// PUTs `body` at `path` on `origin`, SigV4-signed.
    pub async fn put(&self, origin: &Origin, path: &str, headers: &[(&str, &str)], body: Bytes) -> Result<OriginResponse<'_>, FetchError> {
        let failed = |error: Box<Error>| FetchError::from_pingora(&error);
        let peer = *super::peer(origin).await.map_err(failed)?;
        let length = body.len().to_string();
        let mut all = headers.to_vec();
        all.push(("content-length", &length));
        let mut request = request_header("PUT", path, &origin.host, &all)?;
        let signature = origin
            .sign("PUT", path, &all, SystemTime::now())
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        for (name, value) in signature {
            request.insert_header(name, value).map_err(failed)?;
        }
        self.exchange(peer, request, Some(body)).await
    }

    /// Sends a body-less request for `path` to a fleet parent (a keyfront
    /// at `parent`, over plain HTTP), with `origin`'s timeouts: the parent
    /// may itself be waiting for that origin. `headers` carry the fleet's
    /// authentication.
    pub async fn send_to_parent(
        &self,
        parent: SocketAddr,
        origin: &Origin,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<OriginResponse<'_>, FetchError> {
        let mut peer = HttpPeer::new(parent, false, String::new());
        peer.options.connection_timeout = Some(origin.connect_timeout);
        peer.options.read_timeout = Some(origin.first_byte_timeout);
        peer.options.idle_timeout = Some(NODE_KEEPALIVE);
        let request = request_header(method, path, &parent.to_string(), headers)?;
        let mut response = self.exchange(peer, request, None).await?;
        response.fleet_node = Some(parent);
        Ok(response)
    }

    /// Sends `request` (its path, `Host` and signature set by the caller)
    /// on a new connection to `origin`, for the caller to stream its body
    /// through the returned `OriginUpload`. Never on a kept connection nor
    /// sent twice: a viewer's POST or DELETE is not idempotent.
    pub async fn open(&self, origin: &Origin, request: RequestHeader) -> Result<OriginUpload<'_>, FetchError> {
        let failed = |error: Box<Error>| FetchError::from_pingora(&error);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let peer = *super::peer(origin).await.map_err(failed)?;
        let (mut session, _reused) = self.connector.get_http_session(&peer).await.map_err(failed)?;
        session.set_read_timeout(peer.options.read_timeout);
        session.write_request_header(Box::new(request)).await.map_err(failed)?;
        Ok(OriginUpload {
            client: self,
            session,
            peer,
        })
    }

    /// Writes `request` (and `body`) to `peer` over a pooled connection and
    /// reads the response header. A kept connection that fails before the
    /// header (other than by a timeout) is one the peer closed as the request
    /// went out: the request goes once more, on a new connection. Every
    /// request the edge sends on its own is idempotent (GET, HEAD, PUT).
    ///
    /// Boxed: its state (sessions, the peer, the request) is about 13 KB,
    /// which every future that may ask the origin would otherwise hold and
    /// copy as it is created, a cache hit's included.
    fn exchange(
        &self,
        peer: HttpPeer,
        request: RequestHeader,
        body: Option<Bytes>,
    ) -> BoxFuture<'_, Result<OriginResponse<'_>, FetchError>> {
        Box::pin(self.exchange_unboxed(peer, request, body))
    }

    async fn exchange_unboxed(
        &self,
        peer: HttpPeer,
        request: RequestHeader,
        body: Option<Bytes>,
    ) -> Result<OriginResponse<'_>, FetchError> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut answered = None;
        if let Some(stream) = pool::take(peer.reuse_hash()) {
            let kept = HttpSession::H1(Http1Session::new_with_options(stream, &peer));
            match ask(kept, &peer, request.clone(), body.clone()).await {
                Err(FetchError::Failed(error)) => {
                    tracing::debug!(%error, "a kept origin connection was closed; asking on a new one");
                    self.stats.requests.fetch_add(1, Ordering::Relaxed);
                }
                kept => answered = Some(kept?),
            }
        }
        let (session, header) = match answered {
            Some(answered) => answered,
            None => {
                let (session, _reused) = self
                    .connector
                    .get_http_session(&peer)
                    .await
                    .map_err(|e| FetchError::from_pingora(&e))?;
                ask(session, &peer, request, body).await?
            }
        };
        Ok(OriginResponse {
            client: self,
            session: Some(session),
            peer,
            header,
            borrowed: false,
            fleet_node: None,
        })
    }
}

/// A request to the origin whose body is being streamed.
pub struct OriginUpload<'a> {
    client: &'a OriginClient,
    session: HttpSession,
    peer: HttpPeer,
}

impl<'a> OriginUpload<'a> {
    /// Sends the next part of the request body.
    pub async fn write_body(&mut self, part: Bytes) -> Result<(), FetchError> {
        self.session
            .write_request_body(part, false)
            .await
            .map_err(|e| FetchError::from_pingora(&e))
    }

    /// Ends the request body and reads the response header.
    pub async fn response(mut self) -> Result<OriginResponse<'a>, FetchError> {
        let failed = |error: Box<Error>| FetchError::from_pingora(&error);
        self.session.finish_request_body().await.map_err(failed)?;
        self.session.read_response_header().await.map_err(failed)?;
        let header = self
            .session
            .response_header()
            .cloned()
            .ok_or_else(|| FetchError::Failed("no response header".into()))?;
        Ok(OriginResponse {
            client: self.client,
            session: Some(self.session),
            peer: self.peer,
            header,
            borrowed: false,
            fleet_node: None,
        })
    }
}

/// Sends `request` (and `body`) on `session` and reads the response header.
async fn ask(
    mut session: HttpSession,
    peer: &HttpPeer,
    request: RequestHeader,
    body: Option<Bytes>,
) -> Result<(HttpSession, ResponseHeader), FetchError> {
    let failed = |error: Box<Error>| FetchError::from_pingora(&error);
    // The connector leaves the first-byte timeout to its caller, as pingora-proxy does.
    session.set_read_timeout(peer.options.read_timeout);
    session.write_request_header(Box::new(request)).await.map_err(failed)?;
    if let Some(body) = body {
        session.write_request_body(body, true).await.map_err(failed)?;
    }
    session.finish_request_body().await.map_err(failed)?;
    session.read_response_header().await.map_err(failed)?;
    let header = session
        .response_header()
        .cloned()
        .ok_or_else(|| FetchError::Failed("no response header".into()))?;
    Ok((session, header))
}

/// A request header for `method` and `path` to `host`, with `headers`.
fn request_header(method: &str, path: &str, host: &str, headers: &[(&str, &str)]) -> Result<RequestHeader, FetchError> {
    let failed = |error: Box<Error>| FetchError::from_pingora(&error);
    let mut request = RequestHeader::build(method, path.as_bytes(), Some(headers.len() + 5)).map_err(failed)?;
    request.insert_header("host", host).map_err(failed)?;
    for (name, value) in headers {
        request.insert_header(name.to_string(), *value).map_err(failed)?;
    }
    Ok(request)
}
