//! What the phases do: one function per concern, so the trait impl stays short.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;

use super::cors::{self, CorsModule};
use super::respond::{
    self, BAD_GATEWAY, BAD_REQUEST, CONTROL_PREFIX_REFUSED, CORS_REFUSED, DISTRIBUTION_DISABLED, EdgeError, FLEET_REFUSED, GATEWAY_TIMEOUT,
    HEADERS_TOO_LARGE, METHOD_NOT_ALLOWED, NOT_FOUND,
};
use super::{CacheStatus, EdgeState, RequestContext};
use crate::accesslog::{AccessLog, AccessRecord};
use crate::auth::{CredentialSource, ViewerRequest, error_xml, split_target};
use crate::cache::ObjectRef;
use crate::config::CorsPolicy;
use crate::fleet::{FleetAuthError, SIGNATURE_HEADER, table_named};
use crate::origin::S3Origin;
use crate::request::MAX_REQUEST_BYTES;
use crate::routing::{Distribution, Routing};

/// Viewer headers that go on to S3; everything else (cookies, viewer
/// authorization, hop-by-hop headers) stays at the edge.
const FORWARDED_HEADERS: [&str; 10] = [
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "content-type",
    "content-length",
    "content-md5",
    "content-encoding",
    "cache-control",
];

/// See `Edge::request_filter`.
pub async fn handle_request(state: &EdgeState, session: &mut Session, ctx: &mut RequestContext) -> Result<bool> {
    // pingora keeps an HTTP/1.1 connection open forever between requests;
    // idle viewers are let go after `viewer_idle_timeout` instead.
    if session.get_keepalive() == Some(0) {
        session.set_keepalive(Some(state.viewer_idle_seconds));
    }
    // A viewer that stops reading would otherwise hold its connection (and
    // the slice it is being sent) for as long as it likes.
    session.set_write_timeout(Some(state.viewer_send_timeout));
    let header = session.req_header();
    let Ok(raw_target) = std::str::from_utf8(header.raw_path()) else {
        respond::write_error(session, BAD_REQUEST).await?;
        return Ok(true);
    };
    let header_bytes: usize = header
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes + raw_target.len() > MAX_REQUEST_BYTES {
        ctx.decision = "headers_too_large";
        respond::write_error(session, HEADERS_TOO_LARGE).await?;
        return Ok(true);
    }
    let raw_target = raw_target.to_owned();
    ctx.started = Some(std::time::Instant::now());
    // The one place the target is read: every later stage sees only the
    // canonical path (see `crate::request`).
    let target = match split_target(&raw_target) {
        Ok(target) => target,
        Err(refusal) => {
            ctx.decision = "refused_target";
            respond::write_target_refusal(session, refusal).await?;
            return Ok(true);
        }
    };
    ctx.path = target.path().to_owned();
    ctx.query = target.query().map(str::to_owned);
    let routing = state.routing();
    let from_node = session.req_header().headers.contains_key(SIGNATURE_HEADER);
    let distribution = if from_node {
        // Another node's request is served from the table it names and
        // signed for; its Host means nothing.
        match node_table(state, &routing, session) {
            Ok(distribution) => distribution,
            Err(refusal) => return refuse_node(session, ctx, refusal).await,
        }
    } else {
        routing.distribution_for(request_host(session).unwrap_or_default()).clone()
    };
    drop(routing);
    if !distribution.enabled {
        ctx.decision = "distribution_disabled";
        respond::write_error(session, DISTRIBUTION_DISABLED).await?;
        return Ok(true);
    }
    if ctx.path == "/"
        && let Some(root) = &distribution.default_root_object
    {
        ctx.path = root.clone();
    }
    ctx.distribution = Some(distribution.clone());
    let behaviors = &distribution.behaviors;
    let Some(index) = behaviors.iter().position(|b| b.matches(&ctx.path)) else {
        // Every behavior list ends with a `*` behavior: not reached.
        respond::write_error(session, BAD_REQUEST).await?;
        return Ok(true);
    };
    ctx.behavior = Some(index);
    let behavior = &behaviors[index];
    if let Some(policy) = &behavior.cors
        && handle_cors(policy, session, ctx).await?
    {
        return Ok(true);
    }
    if !behavior.allowed_methods.allows(&session.req_header().method) {
        ctx.decision = "method_not_allowed";
        respond::write_error(session, METHOD_NOT_ALLOWED).await?;
        return Ok(true);
    }
    ctx.origin_path = behavior.origin.object_path(&ctx.path);
    if let (Some(guard), Some(origin_path)) = (&state.control_guard, &ctx.origin_path)
        && guard.covers(&behavior.origin, origin_path)
    {
        // The fleet's control log grants keys and names distributions: no
        // viewer reads or writes it through any behavior, whatever its methods.
        ctx.decision = "control_prefix";
        respond::write_error(session, CONTROL_PREFIX_REFUSED).await?;
        return Ok(true);
    }
    ctx.decision = "public";
    if from_node {
        let header = session.req_header();
        let range = header.headers.get(http::header::RANGE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let lookup = |name: &str| header.headers.get(name).and_then(|v| v.to_str().ok());
        let object = ctx
            .origin_path
            .as_deref()
            .map(|origin_path| ObjectRef::cache_key(&behavior.origin_name, origin_path));
        let verified = match (&state.fleet, object) {
            (Some(fleet), Some(object)) => fleet
                .verify(header.method.as_str(), &object, &ctx.path, range, lookup)
                .map(|verified| (verified.not_before, verified.site_hop)),
            _ => Err(FleetAuthError::Malformed),
        };
        match verified {
            Ok((not_before, site_hop)) => (ctx.fleet_not_before, ctx.fleet_site_hop) = (not_before, site_hop),
            Err(refusal) => return refuse_node(session, ctx, refusal).await,
        }
        ctx.decision = "fleet";
    } else if !behavior.trusted_key_groups.is_empty() {
        // A behavior naming key groups is signed even if its groups hold no
        // key (then nothing verifies): emptiness never opens it.
        let base_url = viewer_base_url(distribution.public_base_url.as_deref(), session);
        let cookies: Vec<&str> = session
            .req_header()
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let request = ViewerRequest {
            base_url: &base_url,
            target: &target,
            cookie_headers: &cookies,
            client_ip: client_ip(session),
            now: state.cache.clock.unix_seconds(),
        };
        match state.verifier.verify(&request, &behavior.trusted_keys) {
            Ok(grant) => {
                ctx.decision = match grant.source {
                    CredentialSource::SignedCookies => "signed_cookies",
                    _ => "signed_url",
                };
            }
            Err(rejection) => {
                ctx.decision = rejection.reason.label();
                ctx.rejection = Some(rejection.reason.error_code().code());
                respond::write_xml(session, rejection.reason.status(), rejection.reason.xml_body()).await?;
                return Ok(true);
            }
        }
    }
    let Some(origin_path) = ctx.origin_path.clone() else {
        respond::write_error(session, NOT_FOUND).await?;
        return Ok(true);
    };
    if matches!(session.req_header().method, http::Method::GET | http::Method::HEAD) {
        let object = super::cached::object_ref(&distribution.id, behavior, ctx.path.clone(), origin_path, ctx.fleet_site_hop);
        if ctx.fleet_not_before > 0 {
            let (cache, key, not_before) = (state.cache.clone(), object.key.clone(), ctx.fleet_not_before);
            let _ = tokio::task::spawn_blocking(move || cache.forget_if_fetched_before(&key, not_before)).await;
        }
        super::cached::serve(state, session, ctx, behavior, object).await?;
        return Ok(true);
    }
    Ok(false)
}

/// The distribution a node's request names, refusing what a node never
/// sends: a method other than GET or HEAD, a node request to a node outside
/// any fleet, or a table this node does not serve.
fn node_table(state: &EdgeState, routing: &Routing, session: &Session) -> Result<Arc<Distribution>, FleetAuthError> {
    let header = session.req_header();
    if state.fleet.is_none() || !matches!(header.method, http::Method::GET | http::Method::HEAD) {
        return Err(FleetAuthError::Malformed);
    }
    let id = table_named(|name| header.headers.get(name).and_then(|v| v.to_str().ok()))?;
    routing.distribution_by_id(id).cloned().ok_or(FleetAuthError::UnknownTable)
}

/// Refuses a node's request: 403, no byte of any object.
async fn refuse_node(session: &mut Session, ctx: &mut RequestContext, refusal: FleetAuthError) -> Result<bool> {
    tracing::debug!(%refusal, path = %ctx.path, "fleet request refused");
    ctx.decision = "fleet_refused";
    respond::write_error(session, FLEET_REFUSED).await?;
    Ok(true)
}

/// Answers a CORS preflight (`Ok(true)`: written, 204 or 403), or chooses the
/// CORS headers every response to an allowed origin carries (`Ok(false)`).
/// Preflights carry no signature, as browsers send none: they are answered
/// before the signature check and never reach the origin.
async fn handle_cors(policy: &CorsPolicy, session: &mut Session, ctx: &mut RequestContext) -> Result<bool> {
    let request = session.req_header();
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(origin) = header("origin") else {
        return Ok(false);
    };
    let preflight = (request.method == http::Method::OPTIONS)
        .then(|| header("access-control-request-method"))
        .flatten();
    let headers = match &preflight {
        Some(method) => cors::preflight_headers(policy, &origin, method, header("access-control-request-headers").as_deref()),
        None => cors::response_headers(policy, &origin),
    };
    if let (Some(headers), Some(module)) = (headers.clone(), session.downstream_modules_ctx.get_mut::<CorsModule>()) {
        module.headers = headers;
    }
    if preflight.is_none() {
        return Ok(false);
    }
    ctx.decision = "cors_preflight";
    match headers {
        Some(_) => {
            session
                .write_response_header(Box::new(ResponseHeader::build(204, Some(6))?), true)
                .await?
        }
        None => respond::write_error(session, CORS_REFUSED).await?,
    }
    Ok(true)
}

/// `public_base_url` if configured, else the scheme the viewer used (`https`
/// on a TLS listener) and its `Host` (the `:authority` on HTTP/2).
fn viewer_base_url(public_base_url: Option<&str>, session: &Session) -> String {
    if let Some(base) = public_base_url {
        return base.to_owned();
    }
    let tls = session.digest().is_some_and(|digest| digest.ssl_digest.is_some());
    format!(
        "{}://{}",
        if tls { "https" } else { "http" },
        request_host(session).unwrap_or_default()
    )
}

/// The host the viewer asked for: `Host`, or the authority of an absolute
/// target (HTTP/2's `:authority`).
fn request_host(session: &Session) -> Option<&str> {
    let header = session.req_header();
    header
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| header.uri.authority().map(|a| a.as_str()))
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
}

/// See `Edge::upstream_request_filter`.
pub fn sign_origin_request(origin: &S3Origin, request: &mut RequestHeader, ctx: &RequestContext) -> Result<()> {
    let origin_path = ctx.origin_path.as_deref().expect("request_filter set the origin path");
    // S3 calls such as `?uploads`, `?uploadId=` and `?partNumber=` live in the query.
    let path = match &ctx.query {
        Some(query) => Cow::Owned(format!("{origin_path}?{query}")),
        None => Cow::Borrowed(origin_path),
    };
    let uri: http::Uri = path.parse().or_err(ErrorType::InternalError, "origin path is not a URI")?;
    request.set_uri(uri);
    let dropped: Vec<http::HeaderName> = request
        .headers
        .keys()
        .filter(|name| !FORWARDED_HEADERS.contains(&name.as_str()))
        .cloned()
        .collect();
    for name in dropped {
        request.remove_header(&name);
    }
    request.insert_header("host", &origin.host)?;
    let signed = origin
        .sign(request.method.as_str(), &path, &[], SystemTime::now())
        .or_err(ErrorType::InternalError, "signing the origin request")?;
    for (name, value) in signed {
        request.insert_header(name, value)?;
    }
    Ok(())
}

/// See `Edge::response_filter`.
pub fn filter_origin_response(response: &mut ResponseHeader, ctx: &mut RequestContext) -> Result<()> {
    let behavior = ctx.matched_behavior().expect("matched in request_filter");
    let (origin_name, forward_metadata) = (behavior.origin_name.clone(), behavior.forward_metadata_headers);
    if response.status == 403 {
        // The viewer proved itself already; a 403 from S3 means the bucket
        // refused keyfront's own signature or credentials.
        tracing::error!(origin = %origin_name, path = %ctx.path, "origin refused keyfront's credentials (HTTP 403): check the origin's access_key_id, secret_access_key and region");
        return replace_with_error(response, ctx, BAD_GATEWAY);
    }
    let internal: Vec<http::HeaderName> = response
        .headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.starts_with("x-amz-") && !(forward_metadata && name.starts_with("x-amz-meta-"))
        })
        .cloned()
        .collect();
    for name in internal {
        response.remove_header(&name);
    }
    if matches!(response.status.as_u16(), 200 | 206) && response.headers.get("accept-ranges").is_none() {
        response.insert_header("accept-ranges", "bytes")?;
    }
    Ok(())
}

fn replace_with_error(response: &mut ResponseHeader, ctx: &mut RequestContext, error: EdgeError) -> Result<()> {
    let body = Bytes::from(error_xml(error.code, error.message));
    let mut replaced = ResponseHeader::build(error.status, Some(3))?;
    replaced.insert_header("content-type", "text/xml")?;
    replaced.insert_header("content-length", body.len().to_string())?;
    *response = replaced;
    ctx.replacement_body = Some(body);
    Ok(())
}

/// See `Edge::fail_to_proxy`.
pub async fn handle_proxy_failure(session: &mut Session, error: &Error, ctx: &mut RequestContext) -> FailToProxy {
    let from_origin = matches!(error.esource(), ErrorSource::Upstream)
        || matches!(
            error.etype(),
            ErrorType::ConnectTimedout | ErrorType::ConnectRefused | ErrorType::ConnectNoRoute | ErrorType::ConnectError
        );
    let edge_error = match error.etype() {
        _ if !from_origin => None,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => Some(GATEWAY_TIMEOUT),
        _ => Some(BAD_GATEWAY),
    };
    let Some(edge_error) = edge_error else {
        // The viewer's side failed (it went away, or sent garbage): nothing to tell the origin about.
        let status = if matches!(
            error.etype(),
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed
        ) {
            0
        } else {
            400
        };
        if status > 0 {
            let _ = respond::write_error(session, BAD_REQUEST).await;
        }
        return FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        };
    };
    let origin = ctx.matched_behavior().map_or("-", |b| &*b.origin_name);
    tracing::error!(origin, path = %ctx.path, status = edge_error.status, cause = %error, "origin request failed");
    if session.response_written().is_none() {
        let _ = respond::write_error(session, edge_error).await;
    }
    FailToProxy {
        error_code: edge_error.status,
        can_reuse_downstream: false,
    }
}

/// Writes the request's access-log line (CloudFront's standard format),
/// dated `unix_seconds`.
pub fn write_access_log(log: &AccessLog, session: &Session, ctx: &RequestContext, status: u16, unix_seconds: u64) {
    let request = session.req_header();
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
    let response = session.response_written();
    let response_header = |name: &str| response.and_then(|r| r.headers.get(name)).and_then(|v| v.to_str().ok());
    let range = response_header("content-range")
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.split_once('-'))
        .and_then(|(start, end)| Some((start.parse().ok()?, end.parse().ok()?)));
    let result = match ctx.cache_status {
        _ if status >= 400 || status == 0 => "Error",
        Some(CacheStatus::Hit) => "Hit",
        Some(CacheStatus::RefreshHit) => "RefreshHit",
        _ => "Miss",
    };
    let detailed = match ctx.cache_status {
        Some(status) => status.label(),
        None => ctx.decision,
    };
    let version = match request.version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    };
    log.write(&AccessRecord {
        unix_seconds,
        client: session.client_addr().and_then(|a| a.as_inet()).copied(),
        method: request.method.as_str(),
        host: header("host"),
        path: &ctx.path,
        query: ctx.query.as_deref(),
        status,
        referer: header("referer"),
        user_agent: header("user-agent"),
        forwarded_for: header("x-forwarded-for"),
        result,
        detailed_result: if detailed.is_empty() { "-" } else { detailed },
        request_id: rand::random(),
        protocol_version: version,
        body_bytes: session.body_bytes_sent() as u64,
        time_taken: ctx.started.map_or(std::time::Duration::ZERO, |t| t.elapsed()),
        content_type: response_header("content-type"),
        content_length: response_header("content-length"),
        range,
    });
}
