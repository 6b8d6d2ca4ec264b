//! Methods other than GET and HEAD (uploads, multipart uploads, deletes):
//! the viewer's request, re-signed with keyfront's credentials, streamed
//! to the behavior's origin and the answer streamed back; never cached,
//! never held whole. Only the headers S3 needs go on; `x-amz-*` headers
//! come back only as the behavior allows.

use std::borrow::Cow;
use std::time::SystemTime;

use http::HeaderName;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::v1::common::is_expect_continue_req;

use super::respond::{self, BAD_GATEWAY, CREDENTIALS_REFUSED, EdgeError, GATEWAY_TIMEOUT};
use super::{RequestContext, Viewer};
use crate::origin::{FetchError, OriginClient};
use crate::routing::Behavior;

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

/// Why a passthrough stopped.
enum Failure {
    /// The origin failed or refused keyfront: the viewer gets this answer
    /// if no header was written yet.
    Origin(EdgeError, String),
    /// The viewer went away or sent a broken body: nothing to answer.
    Viewer(Box<Error>),
}

/// Passes the request on to `behavior`'s origin at `origin_path` and
/// streams the answer back. `Err` only when the viewer's connection broke
/// (it is not reused then); the origin's failures are answered 502 or 504.
pub async fn forward(
    client: &OriginClient,
    viewer: &mut Viewer<'_>,
    ctx: &mut RequestContext,
    behavior: &Behavior,
    origin_path: &str,
) -> Result<()> {
    match exchange(client, viewer, ctx, behavior, origin_path).await {
        Ok(()) => Ok(()),
        Err(Failure::Viewer(error)) => Err(error),
        Err(Failure::Origin(answer, cause)) => {
            tracing::error!(origin = %behavior.origin_name, path = %ctx.path, status = answer.status, %cause, "origin request failed");
            if viewer.response_written().is_some() {
                // Mid-body: the viewer sees the connection close early.
                return Error::e_explain(ErrorType::ConnectionClosed, "the origin broke off the body");
            }
            respond::write_error(viewer, answer).await
        }
    }
}

async fn exchange(
    client: &OriginClient,
    viewer: &mut Viewer<'_>,
    ctx: &mut RequestContext,
    behavior: &Behavior,
    origin_path: &str,
) -> Result<(), Failure> {
    let request = origin_request(behavior, viewer.req_header(), origin_path, ctx.query.as_deref())
        .map_err(|e| Failure::Origin(BAD_GATEWAY, e.to_string()))?;
    let from_origin = |error: FetchError| match error {
        FetchError::Timeout(cause) => Failure::Origin(GATEWAY_TIMEOUT, cause),
        FetchError::Failed(cause) => Failure::Origin(BAD_GATEWAY, cause),
    };
    let mut upload = client.open(&behavior.origin, request).await.map_err(from_origin)?;
    if is_expect_continue_req(viewer.req_header()) {
        // The viewer proved itself: its body may come at once, rather than
        // after its own wait for an answer (a second, for the AWS CLI).
        viewer.write_continue_response().await.map_err(Failure::Viewer)?;
    }
    while let Some(part) = viewer.read_request_body().await.map_err(Failure::Viewer)? {
        upload.write_body(part).await.map_err(from_origin)?;
    }
    let mut response = upload.response().await.map_err(from_origin)?;
    if response.status() == 403 && behavior.origin.is_signed() {
        // The viewer proved itself already; a 403 from S3 means the bucket
        // refused keyfront's own signature or credentials (a custom
        // origin's 403 is its answer to the viewer, passed on).
        return Err(Failure::Origin(BAD_GATEWAY, CREDENTIALS_REFUSED.to_owned()));
    }
    let header =
        viewer_response(&response.header, behavior.forward_metadata_headers).map_err(|e| Failure::Origin(BAD_GATEWAY, e.to_string()))?;
    viewer.write_response_header(Box::new(header)).await.map_err(Failure::Viewer)?;
    while let Some(part) = response.next_chunk().await.map_err(from_origin)? {
        viewer.write_response_body(Some(part), false).await.map_err(Failure::Viewer)?;
        // The origin's bytes go on as they come (an answer streamed over
        // minutes, say), not when 16 KiB of them have gathered.
        viewer.send_now().await.map_err(Failure::Viewer)?;
    }
    viewer.write_response_body(None, true).await.map_err(Failure::Viewer)
}

/// The viewer's request as the origin takes it: the origin path (S3 calls
/// such as `?uploads`, `?uploadId=` and `?partNumber=` live in the query),
/// the origin's `Host` (a custom origin's policies may send the viewer's),
/// only `FORWARDED_HEADERS`, the origin's custom
/// headers, and for an S3 origin a fresh SigV4 signature.
fn origin_request(behavior: &Behavior, viewer: &RequestHeader, origin_path: &str, query: Option<&str>) -> Result<RequestHeader> {
    let origin = &behavior.origin;
    let path = match query {
        Some(query) => Cow::Owned(format!("{origin_path}?{query}")),
        None => Cow::Borrowed(origin_path),
    };
    let mut request = RequestHeader::build(viewer.method.clone(), path.as_bytes(), Some(FORWARDED_HEADERS.len() + 6))?;
    for name in FORWARDED_HEADERS {
        for value in viewer.headers.get_all(name) {
            request.append_header(name, value.clone())?;
        }
    }
    // What the behavior's policies send (an API behind an origin request
    // policy gets its `Authorization`, cookies, `Accept`, ...), beside the
    // headers every upload needs.
    request.insert_header("host", &origin.host)?;
    let sent = behavior.values.sent(&viewer.headers, super::access::request_host(viewer));
    let taken = sent
        .iter()
        .filter(|(name, _)| !FORWARDED_HEADERS.contains(&name.as_str()) && origin.takes_viewer_header(name));
    for (name, value) in taken {
        // The viewer's `Host` replaces the origin's; other headers add to it.
        if name == "host" {
            request.insert_header(http::header::HOST, value.as_str())?;
        } else {
            request.append_header(name.clone(), value.as_str())?;
        }
    }
    for (name, value) in &origin.custom_headers {
        request.insert_header(name.clone(), value.as_str())?;
    }
    let signed = origin
        .sign(viewer.method.as_str(), &path, &[], SystemTime::now())
        .or_err(ErrorType::InternalError, "signing the origin request")?;
    for (name, value) in signed {
        request.insert_header(name, value)?;
    }
    Ok(request)
}

/// The origin's response header for the viewer: `x-amz-*` headers removed
/// (`x-amz-meta-*` kept where the behavior forwards metadata), and
/// `Accept-Ranges` on a whole or partial object.
fn viewer_response(origin: &ResponseHeader, forward_metadata: bool) -> Result<ResponseHeader> {
    let mut response = origin.clone();
    let internal: Vec<HeaderName> = response
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
    Ok(response)
}
