//! The request's phases, each a function with one concern: route,
//! authenticate, then the cache (`cached`) or the origin (`passthrough`);
//! and the access-log line.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderName;
use pingora::http::ResponseHeader;
use pingora::prelude::*;

use super::access::{self, Access, Presented, request_host};
use super::cors;
use super::function_hooks::Next;
use super::respond::{
    self, BAD_REQUEST, CONTROL_PREFIX_REFUSED, CORS_REFUSED, DISTRIBUTION_DISABLED, FLEET_REFUSED, FOLDER_PATH, GEO_RESTRICTED,
    HEADERS_TOO_LARGE, HTTPS_REQUIRED, METHOD_NOT_ALLOWED, NOT_FOUND,
};
use super::{CacheStatus, EdgeState, RequestContext, Viewer};
use crate::accesslog::{AccessLog, AccessRecord};
use crate::auth::{SignedTarget, split_target};
use crate::cache::Sent;
use crate::config::CorsPolicy;
use crate::fleet::{FleetAuthError, SIGNATURE_HEADER, table_named};
use crate::request::{MAX_REQUEST_BYTES, with_query};
use crate::routing::{Behavior, Distribution, Routing, ViewerProtocol};

/// Serves one request: `route`, `authenticate`, then answer from the cache
/// (GET, HEAD) or pass it through to the origin. Every request is answered
/// here, refusals included; `Err` only when the viewer's connection broke.
pub async fn handle_request(state: &EdgeState, viewer: &mut Viewer<'_>, ctx: &mut RequestContext) -> Result<()> {
    // pingora keeps an HTTP/1.1 connection open forever between requests
    // (`Some(0)`); idle viewers are let go after `viewer_idle_timeout`
    // instead. A viewer that asked to close (`None`) is not kept.
    if viewer.get_keepalive() == Some(0) {
        viewer.set_keepalive(Some(state.viewer_idle_seconds));
    }
    // A viewer that stops reading would otherwise hold its connection (and
    // the slice it is being sent) for as long as it likes.
    viewer.set_send_timeout(state.viewer_send_timeout);
    let header = viewer.req_header();
    let Ok(raw_target) = std::str::from_utf8(header.raw_path()) else {
        return respond::write_error(viewer, BAD_REQUEST).await;
    };
    let header_bytes: usize = header
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes + raw_target.len() > MAX_REQUEST_BYTES {
        ctx.decision = "headers_too_large";
        return respond::write_error(viewer, HEADERS_TOO_LARGE).await;
    }
    let raw_target = raw_target.to_owned();
    // The one place the target is read: every later stage sees only the
    // canonical path (see `crate::request`).
    let target = match split_target(&raw_target) {
        Ok(target) => target,
        Err(refusal) => {
            ctx.decision = "refused_target";
            return respond::write_target_refusal(viewer, refusal).await;
        }
    };
    ctx.path = target.path().to_owned();
    ctx.query = target.query().map(str::to_owned);
    let Some((distribution, index)) = route(state, viewer, ctx).await? else {
        return Ok(());
    };
    let behavior = &distribution.behaviors[index];
    if !authenticate(state, viewer, ctx, &distribution, behavior, &target).await? {
        return Ok(());
    }
    // Another node's request runs no function: the node that served the
    // viewer ran them. Boxed: most behaviors have none, and their requests'
    // futures should not carry a function's state.
    if !ctx.from_node && !behavior.functions.is_empty() {
        match Box::pin(super::function_hooks::viewer_request(
            viewer,
            ctx,
            (&distribution, behavior),
            state.metrics.function_failures(),
        ))
        .await?
        {
            Next::Answered => return Ok(()),
            // The behavior stays the one the viewer's path chose, as CloudFront's does.
            Next::Continue(true) if !resolve_origin(state, viewer, ctx, behavior).await? => return Ok(()),
            Next::Continue(_) => {}
        }
    }
    // A folder path (`/docs/`) is for a viewer-request function to rewrite.
    // Left as it is, it names no object here: some origins answer it with
    // the object without its slash, which another behavior's rules cover.
    if ctx.path.len() > 1 && ctx.path.ends_with('/') {
        ctx.decision = "folder_path";
        return respond::write_error(viewer, FOLDER_PATH).await;
    }
    // Taken: nothing after this reads it from the context.
    let Some(origin_path) = ctx.origin_path.take() else {
        return respond::write_error(viewer, NOT_FOUND).await;
    };
    if matches!(viewer.req_header().method, http::Method::GET | http::Method::HEAD) {
        let sent = behavior
            .values
            .sends_more_than_the_key()
            .then(|| sent_values(behavior, ctx, viewer, &origin_path));
        let (path, origin_path) = (
            with_query(ctx.path.clone(), &ctx.key_query),
            with_query(origin_path, &ctx.key_query),
        );
        // A node's request carries many viewers': no one viewer's share.
        let asker = if ctx.from_node { None } else { client_ip(viewer) };
        let mut object = super::cached::object_ref(
            &distribution.id,
            behavior,
            (path, origin_path, &ctx.variant),
            ctx.fleet_site_hop,
            asker,
        );
        if let Some((origin_path, sent)) = sent {
            (object.origin_path, object.sent) = (origin_path, Some(Arc::new(sent)));
        }
        if ctx.fleet_not_before > 0 {
            let (cache, key, not_before) = (state.cache.clone(), object.key.clone(), ctx.fleet_not_before);
            let _ = tokio::task::spawn_blocking(move || cache.forget_if_fetched_before(&key, not_before)).await;
        }
        return super::cached::serve(state, viewer, ctx, behavior, object).await;
    }
    // Boxed: an upload's state is large, and every GET's future would
    // otherwise carry it.
    Box::pin(super::passthrough::forward(&state.passthrough, viewer, ctx, behavior, &origin_path)).await
}

/// What `behavior`'s policies send upstream beyond its key, for a request
/// whose origin path is `origin_path`: that path with the query they name
/// in place of the keyed one, and the viewer's headers and cookies they name.
fn sent_values(behavior: &Behavior, ctx: &RequestContext, viewer: &Viewer<'_>, origin_path: &str) -> (String, Sent) {
    let sent_query = behavior.values.sent_query.select_query(ctx.query.as_deref());
    let sent = Sent {
        target: with_query(ctx.path.clone(), &sent_query),
        headers: behavior
            .values
            .sent(&viewer.req_header().headers, request_host(viewer.req_header())),
    };
    (with_query(origin_path.to_owned(), &sent_query), sent)
}

/// Finds the request's distribution (by Host, or the table a node's request
/// names) and behavior, and what the behavior allows before any signature:
/// the distribution enabled, CORS preflights, the method, the control
/// prefix closed. `Ok(Some)`: the distribution and the behavior's index in
/// it, `ctx.origin_path` set; `Ok(None)`: the answer was written.
async fn route(state: &EdgeState, viewer: &mut Viewer<'_>, ctx: &mut RequestContext) -> Result<Option<(Arc<Distribution>, usize)>> {
    let routing = state.routing();
    let from_node = is_from_node(viewer);
    ctx.from_node = from_node;
    let distribution = if from_node {
        // Another node's request is served from the table it names and
        // signed for; its Host means nothing.
        match node_table(state, &routing, viewer) {
            Ok(distribution) => distribution,
            Err(refusal) => return refuse_node(viewer, ctx, refusal).await.map(|()| None),
        }
    } else {
        routing
            .distribution_for(request_host(viewer.req_header()).unwrap_or_default())
            .clone()
    };
    drop(routing);
    if !distribution.enabled {
        ctx.decision = "distribution_disabled";
        return respond::write_error(viewer, DISTRIBUTION_DISABLED).await.map(|()| None);
    }
    // The node that serves the viewer knows its country; another node's
    // request carries none.
    if !from_node && !distribution.geo_restriction.serves(viewer_country(state, viewer)) {
        ctx.decision = "geo_restricted";
        return respond::write_error(viewer, GEO_RESTRICTED).await.map(|()| None);
    }
    if ctx.path == "/"
        && let Some(root) = &distribution.default_root_object
    {
        ctx.path = root.clone();
    }
    ctx.distribution = Some(distribution.clone());
    let Some(index) = distribution.behaviors.iter().position(|b| b.matches(&ctx.path)) else {
        // Every behavior list ends with a `*` behavior: not reached.
        return respond::write_error(viewer, BAD_REQUEST).await.map(|()| None);
    };
    ctx.behavior = Some(index);
    let behavior = &distribution.behaviors[index];
    if !from_node {
        // A node's answer to another node is not a viewer's: the node that
        // serves the viewer lays the policy over it, as CloudFront's edges
        // do and its regional caches do not (a `Cache-Control: no-store`
        // meant for browsers would otherwise stop the asking node caching).
        viewer.header_rules.clone_from(&behavior.response_headers);
    }
    if !from_node && !over_tls(viewer) && !require_https(state, behavior.viewer_protocol, viewer, ctx).await? {
        return Ok(None);
    }
    if let Some(policy) = &behavior.cors
        && handle_cors(policy, viewer, ctx).await?
    {
        return Ok(None);
    }
    if !behavior.allowed_methods.allows(&viewer.req_header().method) {
        ctx.decision = "method_not_allowed";
        return respond::write_error(viewer, METHOD_NOT_ALLOWED).await.map(|()| None);
    }
    if !resolve_origin(state, viewer, ctx, behavior).await? {
        return Ok(None);
    }
    Ok(Some((distribution, index)))
}

/// Sets where the request's path goes at `behavior`'s origin and what of
/// its query is keyed; `Ok(false)` when it names the fleet's control log,
/// which is refused (answered).
async fn resolve_origin(state: &EdgeState, viewer: &mut Viewer<'_>, ctx: &mut RequestContext, behavior: &Behavior) -> Result<bool> {
    ctx.origin_path = behavior.origin.object_path(&ctx.path);
    ctx.key_query = behavior.values.key_query.select_query(ctx.query.as_deref());
    ctx.variant = behavior.values.variant(&viewer.req_header().headers);
    // An origin group's second origin is asked for the same path: it is
    // guarded as the first is.
    let failover_path = behavior
        .failover
        .as_ref()
        .and_then(|failover| Some((&failover.origin, failover.origin.object_path(&ctx.path)?)));
    let guarded = |guard: &crate::fleet::ControlGuard| {
        ctx.origin_path.as_ref().is_some_and(|path| guard.covers(&behavior.origin, path))
            || failover_path.as_ref().is_some_and(|(origin, path)| guard.covers(origin, path))
    };
    if state.control_guard.as_ref().is_some_and(guarded) {
        // The fleet's control log grants keys and names distributions: no
        // viewer reads or writes it through any behavior, whatever its methods.
        ctx.decision = "control_prefix";
        return respond::write_error(viewer, CONTROL_PREFIX_REFUSED).await.map(|()| false);
    }
    Ok(true)
}

/// A plain-HTTP viewer request under `protocol`, on a node with a TLS
/// listener: `Ok(true)` to go on (allow-all, or no TLS listener here);
/// `Ok(false)` when answered, with a 301 to the same URL over HTTPS or a
/// 403 (https-only, or a Host no URL can be made of).
async fn require_https(state: &EdgeState, protocol: ViewerProtocol, viewer: &mut Viewer<'_>, ctx: &mut RequestContext) -> Result<bool> {
    let Some(port) = state.https_port.filter(|_| protocol != ViewerProtocol::AllowAll) else {
        return Ok(true);
    };
    let host = request_host(viewer.req_header()).and_then(host_name);
    match (protocol, host) {
        (ViewerProtocol::RedirectToHttps, Some(host)) => {
            let authority = if port == 443 { host.to_owned() } else { format!("{host}:{port}") };
            let location = format!("https://{authority}{}", String::from_utf8_lossy(viewer.req_header().raw_path()));
            ctx.decision = "redirect_to_https";
            let mut header = ResponseHeader::build(301, Some(3))?;
            header.insert_header(http::header::LOCATION, location)?;
            header.insert_header(http::header::CONTENT_LENGTH, "0")?;
            viewer.write_response_header(Box::new(header)).await?;
            viewer.write_response_body(None, true).await?;
        }
        _ => {
            ctx.decision = "https_only";
            respond::write_error(viewer, HTTPS_REQUIRED).await?;
        }
    }
    Ok(false)
}

/// The host of a `Host` value without its port, if it is a DNS name, an
/// IPv4 address or a bracketed IPv6 address (nothing a URL could be bent by).
fn host_name(host: &str) -> Option<&str> {
    let name = match host.strip_prefix('[') {
        Some(rest) => &host[..rest.find(']')? + 2],
        None => host.split(':').next()?,
    };
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']');
    (!name.is_empty() && name.bytes().all(allowed) && !name.trim_matches(['[', ']']).contains(['[', ']'])).then_some(name)
}

fn over_tls(viewer: &Viewer<'_>) -> bool {
    viewer.digest().is_some_and(|digest| digest.ssl_digest.is_some())
}

/// The viewer's country code from `viewer_country_header`; `None` when
/// none is configured or its value is not two ASCII letters.
fn viewer_country<'v>(state: &EdgeState, viewer: &'v Viewer<'_>) -> Option<&'v str> {
    let value = viewer.req_header().headers.get(state.viewer_country_header.as_ref()?)?;
    let code = value.to_str().ok()?;
    (code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic())).then_some(code)
}

fn is_from_node(viewer: &Viewer<'_>) -> bool {
    viewer.req_header().headers.contains_key(FLEET_SIGNATURE)
}

/// Checks that the request may have what it asks for (`access::decide`)
/// and sets `ctx.decision`. `Ok(true)`: go on; `Ok(false)`: the refusal
/// (403) was written.
async fn authenticate(
    state: &EdgeState,
    viewer: &mut Viewer<'_>,
    ctx: &mut RequestContext,
    distribution: &Distribution,
    behavior: &Behavior,
    target: &SignedTarget<'_>,
) -> Result<bool> {
    let presented = Presented {
        header: viewer.req_header(),
        from_node: ctx.from_node,
        over_tls: over_tls(viewer),
        client_ip: client_ip(viewer),
        now: ctx.now,
    };
    let access = access::decide(
        state.fleet.as_deref(),
        &state.verifier,
        &presented,
        ctx,
        distribution.public_base_url.as_deref(),
        behavior,
        target,
    );
    ctx.decision = access.label();
    match access {
        Access::Public | Access::Signed(_) => Ok(true),
        Access::Node { not_before, site_hop } => {
            (ctx.fleet_not_before, ctx.fleet_site_hop) = (not_before, site_hop);
            Ok(true)
        }
        Access::NodeRefused(refusal) => refuse_node(viewer, ctx, refusal).await.map(|()| false),
        Access::Refused(rejection) => {
            ctx.rejection = Some(rejection.reason.error_code().code());
            respond::write_xml(viewer, rejection.reason.status(), rejection.reason.xml_body()).await?;
            Ok(false)
        }
    }
}

/// The distribution a node's request names, refusing what a node never
/// sends: a method other than GET or HEAD, a node request to a node outside
/// any fleet, or a table this node does not serve.
fn node_table(state: &EdgeState, routing: &Routing, viewer: &Viewer<'_>) -> Result<Arc<Distribution>, FleetAuthError> {
    let header = viewer.req_header();
    if state.fleet.is_none() || !matches!(header.method, http::Method::GET | http::Method::HEAD) {
        return Err(FleetAuthError::Malformed);
    }
    let id = table_named(|name| header.headers.get(name).and_then(|v| v.to_str().ok()))?;
    routing.distribution_by_id(id).cloned().ok_or(FleetAuthError::UnknownTable)
}

/// Refuses a node's request: 403, no byte of any object.
async fn refuse_node(viewer: &mut Viewer<'_>, ctx: &mut RequestContext, refusal: FleetAuthError) -> Result<()> {
    tracing::debug!(%refusal, path = %ctx.path, "fleet request refused");
    ctx.decision = "fleet_refused";
    respond::write_error(viewer, FLEET_REFUSED).await
}

/// Answers a CORS preflight (`Ok(true)`: written, 204 or 403), or chooses the
/// CORS headers every response to an allowed origin carries (`Ok(false)`).
/// Preflights carry no signature, as browsers send none: they are answered
/// before the signature check and never reach the origin.
async fn handle_cors(policy: &CorsPolicy, viewer: &mut Viewer<'_>, ctx: &mut RequestContext) -> Result<bool> {
    let request = viewer.req_header();
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
    if let Some(headers) = headers.clone() {
        viewer.response_headers = headers;
    }
    if preflight.is_none() {
        return Ok(false);
    }
    ctx.decision = "cors_preflight";
    match headers {
        Some(_) => viewer.write_response_header(Box::new(ResponseHeader::build(204, Some(6))?)).await?,
        None => respond::write_error(viewer, CORS_REFUSED).await?,
    }
    Ok(true)
}

fn client_ip(viewer: &Viewer<'_>) -> Option<IpAddr> {
    viewer.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
}

/// Parsed once, as `http`'s own header names are: a name given as text is
/// parsed again on every lookup, and every request asks for these.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FLEET_SIGNATURE: HeaderName = HeaderName::from_static(SIGNATURE_HEADER);

/// Writes the request's access-log line (CloudFront's standard format),
/// dated `unix_seconds`.
pub fn write_access_log(log: &AccessLog, viewer: &Viewer<'_>, ctx: &RequestContext, status: u16, unix_seconds: u64) {
    use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HOST, REFERER, USER_AGENT};
    // Named by `http`'s constants: a name given as text is parsed per lookup.
    let request = viewer.req_header();
    let header = |name: HeaderName| request.headers.get(name).and_then(|v| v.to_str().ok());
    let response = viewer.response_written();
    let response_header = |name: HeaderName| response.and_then(|r| r.headers.get(name)).and_then(|v| v.to_str().ok());
    let range = Some(status)
        .filter(|status| *status == 206)
        .and_then(|_| response_header(CONTENT_RANGE))
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
        client: viewer.client_addr().and_then(|a| a.as_inet()).copied(),
        method: request.method.as_str(),
        host: header(HOST),
        path: &ctx.path,
        query: ctx.query.as_deref(),
        status,
        referer: header(REFERER),
        user_agent: header(USER_AGENT),
        forwarded_for: header(X_FORWARDED_FOR),
        result,
        detailed_result: if detailed.is_empty() { "-" } else { detailed },
        request_id: rand::random(),
        protocol_version: version,
        body_bytes: viewer.body_bytes_sent() as u64,
        time_taken: ctx.started.map_or(std::time::Duration::ZERO, |t| t.elapsed()),
        content_type: response_header(CONTENT_TYPE),
        content_length: response_header(CONTENT_LENGTH),
        range,
        tls: viewer
            .digest()
            .and_then(|digest| digest.ssl_digest.as_deref())
            .map(|tls| (&*tls.version, &*tls.cipher)),
        time_to_first_byte: ctx.started.zip(viewer.answered_at).map(|(started, answered)| answered - started),
        request_bytes: viewer
            .as_http1()
            .map(|http1| (http1.get_headers_raw_bytes().len() + viewer.body_bytes_read()) as u64),
    });
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn only_a_host_a_url_cannot_be_bent_by_is_redirected_to() {
        for (host, name) in [
            ("media.example.com", "media.example.com"),
            ("media.example.com:8080", "media.example.com"),
            ("127.0.0.2:8580", "127.0.0.2"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
        ] {
            assert_eq!(host_name(host), Some(name), "{host}");
        }
        for host in [
            "",
            ":80",
            "evil.com/path",
            "evil.com@x",
            "a b",
            "[::1",
            "a[b]",
            "x\\y",
            "evil.com?x",
            "evil.com#x",
        ] {
            assert_eq!(host_name(host), None, "{host}");
        }
    }
}
