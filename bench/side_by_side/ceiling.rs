//! The framework's ceiling: a pingora server with keyfront's thread count
//! that answers the benchmark's objects straight from memory and does nothing
//! else (no signature, no cache lookup, no metrics). What keyfront loses
//! against it is keyfront's own work; what it loses against nginx beyond
//! that is pingora's.

use std::process::ExitCode;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

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

#[async_trait]
impl ProxyHttp for Ceiling {
    type CTX = ();

    fn new_ctx(&self) {}

    /// None: pingora's default adds a (disabled) compression module.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    /// Always answers here (`Ok(true)`): the ceiling has no upstream.
    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
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
        session.write_response_header(Box::new(header), false).await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Err(Error::new(ErrorType::InternalError))
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
    let mut service = http_proxy_service(&server.configuration, ceiling);
    service.add_listener(keyfront::edge::viewer_listener(
        listen,
        Some(keyfront::config::DEFAULT_VIEWER_SEND_BUFFER),
    ));
    server.add_service(service);
    server.run_forever()
}
