//! The framework's ceiling: a pingora server with keyfront's thread count,
//! an HTTP app of its own as keyfront's edge is, that answers the
//! benchmark's objects straight from memory and does nothing else (no
//! signature, no cache lookup, no metrics). What keyfront loses against it
//! is keyfront's own work; what it loses against nginx beyond that is
//! pingora's.

use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;

use crate::objects::{self, HOT_SIZE, RANGES_KEY, RANGES_SIZE};

struct Ceiling {
    hot: Bytes,
    ranges: Bytes,
}

/// `bytes=first-last` within `size`, the only form the benchmark sends.
fn requested_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let (first, last) = value.strip_prefix("bytes=")?.split_once('-')?;
    let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
    (first <= last && last < size).then_some((first, last))
}

impl Ceiling {
    /// The answer to the request `session` has read.
    async fn answer(&self, session: &mut ServerSession) -> Result<()> {
        let path = session.req_header().uri.path();
        let range = session
            .req_header()
            .headers
            .get("range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| requested_range(v, RANGES_SIZE));
        let (status, body, content_range) = if path.starts_with("/hot/") {
            (200, self.hot.clone(), None)
        } else if path == RANGES_KEY {
            match range {
                Some((first, last)) => (
                    206,
                    self.ranges.slice(first as usize..=last as usize),
                    Some(format!("bytes {first}-{last}/{RANGES_SIZE}")),
                ),
                None => (200, self.ranges.clone(), None),
            }
        } else {
            (404, Bytes::new(), None)
        };
        let mut header = ResponseHeader::build_no_case(status, Some(4))?;
        header.insert_header("content-type", "application/octet-stream")?;
        header.insert_header("content-length", body.len().to_string())?;
        if let Some(content_range) = content_range {
            header.insert_header("content-range", content_range)?;
        }
        session.write_response_header(Box::new(header)).await?;
        session.write_response_body(body, true).await
    }
}

#[async_trait]
impl HttpServerApp for Ceiling {
    /// Reads a request, answers it, and keeps the connection.
    async fn process_new_http(self: &Arc<Self>, mut session: ServerSession, _shutdown: &ShutdownWatch) -> Option<ReusedHttpStream> {
        if !session.read_request().await.ok()? {
            return None;
        }
        self.answer(&mut session).await.ok()?;
        let persistent = HttpPersistentSettings::for_session(&session);
        let stream = session.finish().await.ok().flatten()?;
        Some(ReusedHttpStream::from_reusable_stream(stream, persistent))
    }
}

/// `ceiling --listen ADDRESS --threads N`: serves until killed.
pub fn run(args: &[String]) -> ExitCode {
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let (Some(listen), Some(Ok(threads))) = (value("--listen"), value("--threads").map(|t| t.parse())) else {
        eprintln!("usage: ceiling --listen ADDRESS --threads N");
        return ExitCode::from(2);
    };
    let ceiling = Ceiling {
        hot: Bytes::from(objects::content(&objects::hot_key(0), HOT_SIZE)),
        ranges: Bytes::from(objects::content(RANGES_KEY, RANGES_SIZE)),
    };
    let mut server = Server::new_with_opt_and_conf(
        None,
        ServerConf {
            threads,
            // keyfront's setting (src/edge/server.rs), so that the ceiling is
            // the framework at its best, not at its defaults.
            work_stealing: false,
            // SIGTERM stops it at once; its listener uses SO_REUSEPORT, and a
            // ceiling still draining would share the port with the next one.
            grace_period_seconds: Some(0),
            graceful_shutdown_timeout_seconds: Some(0),
            ..ServerConf::default()
        },
    );
    server.bootstrap();
    let mut service = Service::new("ceiling".to_owned(), ceiling);
    service.add_listener(keyfront::server::viewer_listener(
        listen,
        Some(keyfront::config::DEFAULT_VIEWER_SEND_BUFFER),
    ));
    server.add_service(service);
    server.run_forever()
}
